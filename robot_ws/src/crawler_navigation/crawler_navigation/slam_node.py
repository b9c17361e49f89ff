"""``slam``: lidar odometry with degeneracy detection, and the occupancy map.

What it does depends on ``localization.source``:

- ``slam_topic``: it registers the scans. Subscribes ``/points`` (PointCloud2, raw with
  per-point time ``t``) or ``/scan`` (LaserScan) and ``/odom/wheel`` (the motion guess);
  publishes ``/slam/odometry`` (Odometry of base_link in ``slam_map``: the base_link frame at
  the first scan) whose pose covariance marks the directions the scans did not constrain with
  variance 1e6, for the localizer to fuse.
- ``pipeline`` (default): the localizer registers ``/points`` in its pipeline and publishes
  ``/slam/odometry`` itself; this node registers nothing (that would be the same work twice)
  and only draws the map from those poses and the clouds of the same stamps.

Either way it publishes ``/map`` (OccupancyGrid in ``slam_map``) every
``localization.map_publish_period_s``, from every ``MAP_EVERY_N_SCANS``-th scan.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from nav_msgs.msg import OccupancyGrid as OccupancyGridMsg
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import LaserScan, PointCloud2

from crawler.config import CrawlerConfig
from crawler_navigation.common import (
    SLAM_FRAME,
    declare_config,
    lidar_mount,
    pose_of,
    read_config,
    slam_odometry_msg,
    spin,
    stamp_ns,
)
from navigation.bag_io import ConversionError, cloud_from_msg, odometry_from_msg, scan_from_msg
from navigation.lidar_odometry import LidarOdometry, LidarOdometryConfig, planar_config
from navigation.localization import MotionPredictor
from navigation.occupancy import OccupancyGrid
from navigation.records import LaserScan2D, LidarScan3D

MAP_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATE_QOS = QoSProfile(depth=10)
MAP_EVERY_N_SCANS = 5
CLOUDS_KEPT = 30
"""Pipeline source: clouds kept until the localizer's pose of their stamp comes (3 s)."""


class SlamNode(Node):
    """Thin adapter: messages -> ``LidarOdometry`` (or the localizer's poses) -> the map."""

    def __init__(self, config: CrawlerConfig | None = None, **kwargs: Any) -> None:
        super().__init__("slam", **kwargs)
        declare_config(self, config)
        self.config = read_config(self)
        self.T_base_lidar = lidar_mount(self.config)
        self._odometry: dict[bool, LidarOdometry] = {}
        self._predictor = MotionPredictor(self.T_base_lidar)
        self._grid = OccupancyGrid()
        self._scans = 0
        self._clouds: deque[PointCloud2] = deque(maxlen=CLOUDS_KEPT)
        self.skipped = 0
        self.unmatched = 0
        """Pipeline source: poses whose cloud was no longer (or never) here."""
        self._pub_map = self.create_publisher(OccupancyGridMsg, "/map", MAP_QOS)
        if self.config.localization.source == "slam_topic":
            self._pub_odom = self.create_publisher(Odometry, "/slam/odometry", STATE_QOS)
            self.create_subscription(PointCloud2, "/points", self._on_cloud,
                                     qos_profile_sensor_data)
            self.create_subscription(LaserScan, "/scan", self._on_scan, qos_profile_sensor_data)
            self.create_subscription(Odometry, "/odom/wheel", self._on_wheel, STATE_QOS)
        else:
            self.get_logger().info("localization.source is pipeline: the localizer registers "
                                   "the scans; this node draws /map from its /slam/odometry")
            self.create_subscription(PointCloud2, "/points", self._keep_cloud,
                                     qos_profile_sensor_data)
            self.create_subscription(Odometry, "/slam/odometry", self._on_pose, STATE_QOS)
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
        odometry = self._odometry.setdefault(planar, LidarOdometry(
            planar_config() if planar else LidarOdometryConfig()))
        # Register against the local map, guessed from the wheels
        result = odometry.register(scan, self._predictor.motion_to(scan.stamp_ns))
        if not planar:  # learn the encoders' turn over-read (3D only, as the pipeline)
            self._predictor.observe(result)
        # Publish the pose; unconstrained directions as unknown
        self._pub_odom.publish(slam_odometry_msg(result, self.T_base_lidar,
                                                 self.config.frames.base))
        # Map every few scans
        if self._scans % MAP_EVERY_N_SCANS == 0:
            self._insert(scan, self.T_base_lidar @ result.T_map_sensor)  # slam_map: base_link
        self._scans += 1

    def _keep_cloud(self, msg: PointCloud2) -> None:
        self._clouds.append(msg)

    def _on_pose(self, msg: Odometry) -> None:
        """Pipeline source: the localizer's lidar odometry of a scan; map every few."""
        index, self._scans = self._scans, self._scans + 1
        if index % MAP_EVERY_N_SCANS != 0:
            return
        stamp = stamp_ns(msg.header.stamp)
        cloud = next((c for c in reversed(self._clouds) if stamp_ns(c.header.stamp) == stamp),
                     None)
        if cloud is None:
            self.unmatched += 1
            return
        try:
            scan = cloud_from_msg(cloud, stamp)
        except ConversionError as err:
            self._skip(f"/points: {err}")
            return
        self._insert(scan, pose_of(msg.pose.pose) @ self.T_base_lidar)

    def _insert(self, scan: LidarScan3D | LaserScan2D, T_map_sensor: np.ndarray) -> None:
        if isinstance(scan, LaserScan2D):
            self._grid.insert_scan_2d(scan, T_map_sensor)
        else:
            self._grid.insert_cloud_slice(scan, T_map_sensor)

    def _publish_map(self) -> None:
        if self._scans == 0:
            return
        grid = self._grid.to_map()
        msg = OccupancyGridMsg()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = SLAM_FRAME
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
