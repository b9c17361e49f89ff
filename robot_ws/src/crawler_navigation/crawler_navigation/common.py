"""Shared pieces of the localization nodes: configuration from parameters, message helpers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from numpy.typing import NDArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.utilities import try_shutdown

from crawler.config import CrawlerConfig, flatten, from_flat
from navigation.bag_io import pose_matrix, quaternion_from_rotation
from navigation.records import LidarOdometryResult

FloatArray = NDArray[np.float64]
UNOBSERVED_VAR = 1e6
"""Variance published for a direction that carries no information."""
SLAM_FRAME = "slam_map"
"""Frame of ``/slam/odometry``: base_link at the first scan."""


def spin(make_node: Callable[[], Node], args: list[str] | None) -> None:
    """Init rclpy, spin the node until Ctrl-C or shutdown, clean up."""
    rclpy.init(args=args)
    node = make_node()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        try_shutdown()


def declare_config(node: Node, config: CrawlerConfig | None) -> None:
    """Declare the whole config tree as dotted parameters (typing left to the tree)."""
    loose = ParameterDescriptor(dynamic_typing=True)
    for name, value in flatten(config or CrawlerConfig()).items():
        node.declare_parameter(name, value, loose)


def read_config(node: Node) -> CrawlerConfig:
    """Validate the parameters into the config tree (raises ConfigError naming the key)."""
    names = flatten(CrawlerConfig()).keys()
    values: dict[str, Any] = {}
    for name in names:
        value = node.get_parameter(name).value
        values[name] = list(value) if isinstance(value, tuple | np.ndarray) else value
    return from_flat(values, CrawlerConfig)


def lidar_mount(config: CrawlerConfig) -> FloatArray:
    """T_base_lidar from the config's mount."""
    roll, pitch, yaw = config.mounts.lidar_rpy_rad
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    R = np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                  [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                  [-sp, cp * sr, cp * cr]])
    x, y, z = config.mounts.lidar_xyz_m
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, (x, y, z)
    return T


def stamp_msg(stamp_ns: int) -> Time:
    """``builtin_interfaces/Time`` of integer nanoseconds."""
    return Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def stamp_ns(stamp: Time) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def fill_pose(pose: Any, T: FloatArray) -> None:
    """Write a 4x4 transform into a ``geometry_msgs/Pose``."""
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    qx, qy, qz, qw = quaternion_from_rotation(T[:3, :3])
    pose.orientation.x, pose.orientation.y = qx, qy
    pose.orientation.z, pose.orientation.w = qz, qw


def pose_of(pose: Any) -> FloatArray:
    """4x4 transform of a ``geometry_msgs/Pose``."""
    p, q = pose.position, pose.orientation
    return pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))


def covariance_from_information(information: FloatArray, degenerate: FloatArray) -> FloatArray:
    """6x6 covariance of an information matrix; unconstrained directions get UNOBSERVED_VAR."""
    values, vectors = np.linalg.eigh(0.5 * (information + information.T))
    variances = np.where(values > 1e-9, 1.0 / np.maximum(values, 1e-9), UNOBSERVED_VAR)
    for direction in degenerate:
        overlap = np.abs(vectors.T @ direction)
        variances[int(np.argmax(overlap))] = UNOBSERVED_VAR
    covariance: FloatArray = (vectors * np.minimum(variances, UNOBSERVED_VAR)) @ vectors.T
    return covariance


def information_from_covariance(covariance: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Inverse of ``covariance_from_information``: (information, degenerate directions)."""
    values, vectors = np.linalg.eigh(0.5 * (covariance + covariance.T))
    degenerate = values >= 0.5 * UNOBSERVED_VAR
    inverse = np.where(degenerate, 0.0, 1.0 / np.maximum(values, 1e-12))
    information: FloatArray = (vectors * inverse) @ vectors.T
    return information, vectors[:, degenerate].T.copy()


def slam_odometry_msg(result: LidarOdometryResult, T_base_lidar: FloatArray,
                      base_frame: str) -> Odometry:
    """``/slam/odometry`` of a registered scan: base_link in ``slam_map``; the directions the
    scan did not constrain get variance ``UNOBSERVED_VAR``."""
    T_map_base = T_base_lidar @ result.T_map_sensor @ np.linalg.inv(T_base_lidar)
    msg = Odometry()
    msg.header.stamp = stamp_msg(result.stamp_ns)
    msg.header.frame_id, msg.child_frame_id = SLAM_FRAME, base_frame
    fill_pose(msg.pose.pose, T_map_base)
    covariance = covariance_from_information(result.information, result.degenerate_directions)
    msg.pose.covariance = [float(v) for v in covariance.ravel()]
    return msg
