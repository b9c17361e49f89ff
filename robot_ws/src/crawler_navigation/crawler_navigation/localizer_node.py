"""``localizer``: the fused pose in the site frame, latitude/longitude and the pipe counter.

Subscribes ``/odom/wheel``, ``/slam/odometry`` (its covariance tells which directions the
scans constrained), ``/imu`` (gyro yaw rate, AHRS roll and pitch), ``/gnss/fix`` (BeiDou),
``/radio/fix`` (5G), ``/tether/length``; measurements wait 0.3 s in a queue so that they
reach the smoother in stamp order (topics arrive interleaved); it publishes at
``localization.pose_publish_period_s``: ``/localization/pose``
(PoseWithCovarianceStamped in ``map``, the site frame), ``/localization/geo`` (NavSatFix,
CGCS2000), ``/localization/axis_distance`` (Float64: distance along the current pipe or
gallery, the counter a crew reads) with ``/localization/axis`` (String: its name), and
``/localization/map_to_odom`` (TransformStamped: the ``map -> odom`` transform; tf itself
needs ``tf2_msgs``, which has no PyPI wheel).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Imu, NavSatFix, NavSatStatus
from std_msgs.msg import Float64, String

from crawler.config import CrawlerConfig
from crawler.errors import ConfigError
from crawler_navigation.common import (
    declare_config,
    fill_pose,
    information_from_covariance,
    lidar_mount,
    pose_of,
    read_config,
    spin,
    stamp_msg,
    stamp_ns,
)
from navigation.bag_io import ConversionError, navsat_from_msg, odometry_from_msg, radio_from_msg
from navigation.fusion import FusedLocalizer
from navigation.localization import PipelineConfig, SkyLandmarks
from navigation.records import FixSource, LidarOdometryResult, PositionFix
from navigation.site import SiteFileError, load_site

QOS = QoSProfile(depth=10)
REORDER_DELAY_NS = 300_000_000
"""Measurements wait this long (node clock) so they reach the smoother in stamp order."""


class LocalizerNode(Node):
    """Thin adapter: messages -> ``FusedLocalizer`` -> messages."""

    def __init__(self, config: CrawlerConfig | None = None, **kwargs: Any) -> None:
        super().__init__("localizer", **kwargs)
        declare_config(self, config)
        self.config = read_config(self)
        site_file = self.config.localization.site_file
        if not site_file:
            raise ConfigError("localizer: set localization.site_file (docs/site_file.md)")
        try:
            self.site = load_site(Path(site_file))
        except SiteFileError as err:
            raise ConfigError(str(err)) from err
        self.T_base_lidar = lidar_mount(self.config)
        self._T_lidar_base = np.linalg.inv(self.T_base_lidar)
        self.localizer = FusedLocalizer(self.site)
        self._sky = SkyLandmarks(self.site, PipelineConfig())
        self._last_slam: tuple[int, np.ndarray] | None = None
        self._queue: list[tuple[int, int, Callable[[], object]]] = []
        self._sequence = itertools.count()
        self._pub_pose = self.create_publisher(PoseWithCovarianceStamped, "/localization/pose",
                                               QOS)
        self._pub_geo = self.create_publisher(NavSatFix, "/localization/geo", QOS)
        self._pub_axis_distance = self.create_publisher(Float64, "/localization/axis_distance",
                                                        QOS)
        self._pub_axis = self.create_publisher(String, "/localization/axis", QOS)
        self._pub_map_odom = self.create_publisher(TransformStamped,
                                                   "/localization/map_to_odom", QOS)
        self.create_subscription(Odometry, "/odom/wheel", self._on_wheel, QOS)
        self.create_subscription(Odometry, "/slam/odometry", self._on_slam, QOS)
        self.create_subscription(NavSatFix, "/gnss/fix", self._on_gnss, QOS)
        self.create_subscription(PoseWithCovarianceStamped, "/radio/fix", self._on_radio, QOS)
        self.create_subscription(Float64, "/tether/length", self._on_tether, QOS)
        self.create_subscription(Imu, "/imu", self._on_imu, qos_profile_sensor_data)
        self.create_timer(self.config.localization.pose_publish_period_s, self._publish)
        self.create_timer(0.05, self._drain)

    def _later(self, stamp_ns: int, deliver: Callable[[], object]) -> None:
        """Queue a measurement; ``_drain`` hands it over once older ones cannot still come."""
        heapq.heappush(self._queue, (stamp_ns, next(self._sequence), deliver))

    def _drain(self) -> None:
        horizon = self._now_ns() - REORDER_DELAY_NS
        while self._queue and self._queue[0][0] <= horizon:
            heapq.heappop(self._queue)[2]()

    def _now_ns(self) -> int:
        now: int = self.get_clock().now().nanoseconds
        return now

    def _on_wheel(self, msg: Odometry) -> None:
        sample = odometry_from_msg(msg, self._now_ns())
        if not self.localizer.initialized:
            # Start at the entry of the site's first axis (manhole A, the tunnel portal).
            entry = self.site.axes[0]
            self.localizer.initialize(entry.pose_at(entry.start_distance_m), sample.stamp_ns)
        self._later(sample.stamp_ns, lambda: self.localizer.add_wheel_odometry(sample))

    def _on_slam(self, msg: Odometry) -> None:
        stamp = stamp_ns(msg.header.stamp)
        T_map_base = pose_of(msg.pose.pose)
        previous, self._last_slam = self._last_slam, (stamp, T_map_base)
        if previous is None:
            return
        # Rebuild the scan's motion and what it constrained from the slam node's covariance
        T_prev_curr = (self._T_lidar_base @ np.linalg.inv(previous[1]) @ T_map_base
                       @ self.T_base_lidar)
        information, degenerate = information_from_covariance(
            np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6))
        result = LidarOdometryResult(stamp, T_map_base @ self.T_base_lidar, T_prev_curr,
                                     information, degenerate, 1.0)
        self._later(stamp, lambda: self.localizer.add_lidar_odometry(result, self.T_base_lidar))

    def _on_gnss(self, msg: NavSatFix) -> None:
        if msg.status.status < NavSatStatus.STATUS_FIX:
            return
        try:
            fix = navsat_from_msg(msg, self._now_ns())
        except ConversionError as err:
            self.get_logger().warning(f"/gnss/fix skipped: {err}")
            return
        position = self.site.frame().to_site([fix.latitude_deg, fix.longitude_deg,
                                              fix.altitude_m])[0]
        beidou = PositionFix(fix.stamp_ns, position, np.asarray(fix.covariance_m2),
                             FixSource.BEIDOU)

        def deliver() -> None:
            self.localizer.add_position_fix(beidou)
            self._sky.observe(self.localizer, beidou.stamp_ns)

        self._later(fix.stamp_ns, deliver)

    def _on_radio(self, msg: PoseWithCovarianceStamped) -> None:
        try:
            fix = radio_from_msg(msg, self._now_ns())
        except ConversionError as err:
            self.get_logger().warning(f"/radio/fix skipped: {err}")
            return
        self._later(fix.stamp_ns, lambda: self.localizer.add_position_fix(fix))

    def _on_imu(self, msg: Imu) -> None:
        stamp = stamp_ns(msg.header.stamp)
        q = msg.orientation
        roll = math.atan2(2 * (q.w * q.x + q.y * q.z), 1 - 2 * (q.x * q.x + q.y * q.y))
        pitch = math.asin(max(-1.0, min(1.0, 2 * (q.w * q.y - q.z * q.x))))
        yaw_rate = float(msg.angular_velocity.z)

        def deliver() -> None:
            self.localizer.add_imu_yaw_rate(stamp, yaw_rate)
            self.localizer.add_imu_tilt(stamp, roll, pitch)

        self._later(stamp, deliver)

    def _on_tether(self, msg: Float64) -> None:
        if self.site.tether is not None:
            stamp, length_m = self._now_ns(), float(msg.data)
            self._later(stamp, lambda: self.localizer.add_tether(stamp, length_m))

    def _publish(self) -> None:
        if not self.localizer.initialized:
            return
        estimate = self.localizer.estimate()
        stamp = stamp_msg(estimate.stamp_ns)
        pose = PoseWithCovarianceStamped()
        pose.header.stamp, pose.header.frame_id = stamp, "map"
        fill_pose(pose.pose.pose, estimate.T_site_base)
        pose.pose.covariance = [float(v) for v in estimate.covariance.ravel()]
        self._pub_pose.publish(pose)
        geo = NavSatFix()
        geo.header.stamp, geo.header.frame_id = stamp, self.config.frames.base
        geo.status.status = NavSatStatus.STATUS_FIX
        geo.latitude, geo.longitude = estimate.latitude_deg, estimate.longitude_deg
        geo.altitude = estimate.height_m
        position_cov = estimate.covariance[:3, :3]
        geo.position_covariance = [float(v) for v in position_cov.ravel()]
        geo.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
        self._pub_geo.publish(geo)
        if estimate.distance_m is not None:
            self._pub_axis_distance.publish(Float64(data=float(estimate.distance_m)))
            self._pub_axis.publish(String(data=estimate.axis))
        if estimate.T_map_odom is not None:
            tf = TransformStamped()
            tf.header.stamp, tf.header.frame_id = stamp, "map"
            tf.child_frame_id = self.config.frames.odom
            T = estimate.T_map_odom
            tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (
                float(v) for v in T[:3, 3])
            carrier = PoseWithCovarianceStamped().pose.pose
            fill_pose(carrier, T)
            tf.transform.rotation = carrier.orientation
            self._pub_map_odom.publish(tf)


def main(args: list[str] | None = None) -> None:
    """``ros2 run crawler_navigation localizer_node --ros-args -p localization.site_file:=F``."""
    spin(LocalizerNode, args)
