"""Simulator records to ROS messages."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from numpy.typing import NDArray
from sensor_msgs.msg import (
    CameraInfo,
    Image,
    LaserScan,
    NavSatFix,
    NavSatStatus,
    PointCloud2,
    PointField,
)

from navigation.bag_io import quaternion_from_rotation
from sim_worlds.simulator.camera import focal_px
from sim_worlds.simulator.lidar import LidarScan
from sim_worlds.simulator.sdf import CameraSpec
from sim_worlds.simulator.simulation import GnssFix, RadioFix

UNKNOWN_VAR = 1e6


def stamp_msg(stamp_ns: int) -> Time:
    """``builtin_interfaces/Time`` of integer nanoseconds."""
    return Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def cloud_msg(scan: LidarScan, frame_id: str) -> PointCloud2:
    """Unorganised cloud of float32 x, y, z and t (firing time relative to the stamp, s).

    Raw points as a spinning lidar driver gives them: each in the sensor frame at its own
    firing time; ``t`` (<= 0) lets a consumer undo the motion distortion.
    """
    points_m = scan.points_m
    msg = PointCloud2()
    msg.header.stamp = stamp_msg(scan.stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = 1, len(points_m)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(("x", "y", "z", "t"))]
    msg.is_bigendian, msg.point_step = False, 16
    msg.row_step = 16 * len(points_m)
    packed = np.empty((len(points_m), 4), dtype=np.float32)
    packed[:, :3] = points_m
    packed[:, 3] = scan.point_time_offsets_s
    msg.data = packed.tobytes()
    msg.is_dense = True
    return msg


def laser_scan_msg(scan: LidarScan, range_min_m: float, range_max_m: float, period_s: float,
                   frame_id: str) -> LaserScan:
    """2D scan; no return is +inf (REP-117)."""
    msg = LaserScan()
    msg.header.stamp = stamp_msg(scan.stamp_ns)
    msg.header.frame_id = frame_id
    azimuths = scan.azimuths_rad
    msg.angle_min, msg.angle_max = float(azimuths[0]), float(azimuths[-1])
    msg.angle_increment = float(azimuths[1] - azimuths[0]) if len(azimuths) > 1 else 0.0
    msg.scan_time = period_s
    msg.time_increment = 0.0  # the simulator casts a planar scan's beams all at once
    msg.range_min, msg.range_max = range_min_m, range_max_m
    msg.ranges = scan.ranges_m[0].astype(np.float32).tolist()
    return msg


def image_msg(image_bgr: NDArray[np.uint8], stamp_ns: int, frame_id: str) -> Image:
    """``bgr8`` image."""
    msg = Image()
    msg.header.stamp = stamp_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = image_bgr.shape[:2]
    msg.encoding, msg.is_bigendian, msg.step = "bgr8", 0, 3 * image_bgr.shape[1]
    msg.data = image_bgr.tobytes()
    return msg


def camera_info_msg(spec: CameraSpec, stamp_ns: int, frame_id: str) -> CameraInfo:
    """Pinhole intrinsics, no distortion (optical frame convention: z forward, x right)."""
    f = focal_px(spec)
    cx, cy = 0.5 * spec.width_px, 0.5 * spec.height_px
    msg = CameraInfo()
    msg.header.stamp = stamp_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.width, msg.height = spec.width_px, spec.height_px
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def navsat_msg(fix: GnssFix, frame_id: str) -> NavSatFix:
    """BeiDou fix (``SERVICE_COMPASS`` is BeiDou in NavSatStatus)."""
    msg = NavSatFix()
    msg.header.stamp = stamp_msg(fix.stamp_ns)
    msg.header.frame_id = frame_id
    msg.status.status = NavSatStatus.STATUS_FIX
    msg.status.service = NavSatStatus.SERVICE_COMPASS
    msg.latitude, msg.longitude, msg.altitude = fix.latitude_deg, fix.longitude_deg, fix.height_m
    h2, v2 = fix.sigma_horizontal_m**2, fix.sigma_vertical_m**2
    msg.position_covariance = [h2, 0.0, 0.0, 0.0, h2, 0.0, 0.0, 0.0, v2]
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_DIAGONAL_KNOWN
    return msg


def radio_msg(fix: RadioFix, frame_id: str) -> PoseWithCovarianceStamped:
    """5G position fix in the site (map) frame; orientation unknown."""
    msg = PoseWithCovarianceStamped()
    msg.header.stamp = stamp_msg(fix.stamp_ns)
    msg.header.frame_id = frame_id
    x, y, z = (float(v) for v in fix.position_m)
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = x, y, z
    s2 = fix.sigma_m**2
    cov = np.diag([s2, s2, 4.0 * s2, UNKNOWN_VAR, UNKNOWN_VAR, UNKNOWN_VAR])
    msg.pose.covariance = [float(v) for v in cov.ravel()]
    return msg


def truth_msg(T_world_base: NDArray[np.float64], stamp_ns: int, speed_mps: float,
              frame_id: str, child_frame_id: str) -> Odometry:
    """Ground-truth pose as ``nav_msgs/Odometry`` (zero covariance)."""
    msg = Odometry()
    msg.header.stamp = stamp_msg(stamp_ns)
    msg.header.frame_id, msg.child_frame_id = frame_id, child_frame_id
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = (float(v) for v in T_world_base[:3, 3])
    qx, qy, qz, qw = quaternion_from_rotation(T_world_base[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = qx, qy, qz, qw
    msg.twist.twist.linear.x = speed_mps
    return msg
