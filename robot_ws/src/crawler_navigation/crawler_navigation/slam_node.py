"""``slam``: lidar odometry with degeneracy detection, and the occupancy map.

Subscribes ``/points`` (PointCloud2, raw with per-point time ``t``) or ``/scan`` (LaserScan)
and ``/odom/wheel`` (the motion guess); publishes ``/slam/odometry`` (Odometry of base_link in
``slam_map``: the base_link frame at the first scan) whose pose covariance marks the
directions the scans did not constrain with variance 1e6, and ``/map`` (OccupancyGrid).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import LaserScan, PointCloud2

from crawler.config import CrawlerConfig
from crawler_navigation.common import (
    covariance_from_information,
    declare_config,
    fill_pose,
    lidar_mount,
    read_config,
    spin,
    stamp_msg,
)
from navigation.bag_io import ConversionError, cloud_from_msg, odometry_from_msg, scan_from_msg
from navigation.lidar_odometry import LidarOdometry, LidarOdometryConfig
from navigation.localization import MotionPredictor
from navigation.occupancy import OccupancyGrid
from navigation.records import LaserScan2D, LidarScan3D

MAP_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATE_QOS = QoSProfile(depth=10)
MAP_EVERY_N_SCANS = 5


class SlamNode(Node):
    """Thin adapter: messages -> ``LidarOdometry`` -> messages."""

    def __init__(self, config: CrawlerConfig | None = None, **kwargs: Any) -> None:
        super().__init__("slam", **kwargs)
        declare_config(self, config)
        self.config = read_config(self)
        self.T_base_lidar = lidar_mount(self.config)
        self._T_lidar_base = np.linalg.inv(self.T_base_lidar)
        self._odometry: dict[bool, LidarOdometry] = {}
        self._predictor = MotionPredictor(self.T_base_lidar)
        self._grid = OccupancyGrid()
        self._scans = 0
        self.skipped = 0
        self._pub_odom = self.create_publisher(Odometry, "/slam/odometry", STATE_QOS)
        self._pub_map = self.create_publisher(OccupancyGridMsg, "/map", MAP_QOS)
        self.create_subscription(PointCloud2, "/points", self._on_cloud, qos_profile_sensor_data)
        self.create_subscription(LaserScan, "/scan", self._on_scan, qos_profile_sensor_data)
        self.create_subscription(Odometry, "/odom/wheel", self._on_wheel, STATE_QOS)
        self.create_timer(self.config.localization.map_publish_period_s, self._publish_map)

    def _on_wheel(self, msg: Odometry) -> None:
        self._predictor.add(odometry_from_msg(msg, 0))

    def _on_cloud(self, msg: PointCloud2) -> None:
        try:
            self._register(cloud_from_msg(msg, 0))
        except ConversionError as err:
            self._skip(f"/points: {err}")

    def _on_scan(self, msg: LaserScan) -> None:
        if self._odometry.get(False) is not None:
            return  # a 3D lidar is running: the 2D scan is not needed
        try:
            self._register(scan_from_msg(msg, 0))
        except ConversionError as err:
            self._skip(f"/scan: {err}")

    def _skip(self, why: str) -> None:
        self.skipped += 1
        self.get_logger().warning(f"skipped a corrupt message ({self.skipped} so far): {why}")

    def _register(self, scan: LidarScan3D | LaserScan2D) -> None:
        planar = isinstance(scan, LaserScan2D)
        odometry = self._odometry.setdefault(planar, LidarOdometry(LidarOdometryConfig(
            planar=planar)))
        # Register against the local map, guessed from the wheels
        result = odometry.register(scan, self._predictor.motion_to(scan.stamp_ns))
        if not planar:  # learn the encoders' turn over-read (3D only, as the pipeline)
            self._predictor.observe(result)
        T_map_base = self.T_base_lidar @ result.T_map_sensor @ self._T_lidar_base
        # Publish the pose; unconstrained directions as unknown
        msg = Odometry()
        msg.header.stamp = stamp_msg(scan.stamp_ns)
        msg.header.frame_id, msg.child_frame_id = "slam_map", self.config.frames.base
        fill_pose(msg.pose.pose, T_map_base)
        covariance = covariance_from_information(result.information,
                                                 result.degenerate_directions)
        msg.pose.covariance = [float(v) for v in covariance.ravel()]
        self._pub_odom.publish(msg)
        # Map every few scans
        if self._scans % MAP_EVERY_N_SCANS == 0:
            T_map_sensor = T_map_base @ self.T_base_lidar
            if isinstance(scan, LaserScan2D):
                self._grid.insert_scan_2d(scan, T_map_sensor)
            else:
                self._grid.insert_cloud_slice(scan, T_map_sensor)
        self._scans += 1

    def _publish_map(self) -> None:
        if self._scans == 0:
            return
        grid = self._grid.to_map()
        msg = OccupancyGridMsg()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "slam_map"
        msg.info.resolution = float(grid.resolution_m)
        msg.info.height, msg.info.width = grid.cells.shape
        msg.info.origin.position.x, msg.info.origin.position.y = (float(v) for v in
                                                                  grid.origin_xy_m)
        msg.info.origin.orientation.w = 1.0
        msg.data = grid.cells.astype(np.int8).ravel().tolist()
        self._pub_map.publish(msg)


def main(args: list[str] | None = None) -> None:
    """``ros2 run crawler_navigation slam_node``."""
    spin(SlamNode, args)
