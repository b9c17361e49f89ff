"""``localizer``: the fused pose in the site frame, latitude/longitude and the pipe counter.

It runs ``navigation.localization.LocalizationPipeline``, the object ``crawler slam run
--site``, ``crawler mission run`` and ``crawler bench nav`` run offline: lidar odometry with
the learned encoder turn ratio, the factor-graph smoother, the sky landmarks of BeiDou fixes,
the invert line in pipes, wall headings in tunnel galleries and loop closure.
``localization.source`` says where the lidar comes from:

- ``pipeline`` (default): ``/points`` (PointCloud2, raw, per-point time ``t``) goes to
  ``LocalizationPipeline.on_scan``; each registered scan is published on ``/slam/odometry``
  (Odometry of base_link in ``slam_map``; covariance 1e6 in the directions the scan did not
  constrain), from which the ``slam`` node draws ``/map``.
- ``slam_topic``: the ``slam`` node registers the scans (``/points`` or a 2D ``/scan``) and
  this node fuses its ``/slam/odometry`` (the covariance tells which directions the scans
  constrained); no wall headings, loop closure or invert line then.

Either way ``/odom/wheel`` goes to ``on_odometry``, ``/gnss/fix`` (BeiDou) and ``/radio/fix``
(5G) to ``on_fix``, ``/tether/length`` to ``on_tether`` (sites with a tether), ``/imu`` to the
smoother's gyro yaw rate and AHRS roll and pitch. The robot starts at the entry of the site's
first axis (manhole A, the tunnel portal) at the first wheel-odometry sample.

Callbacks only convert and queue: measurements wait ``REORDER_DELAY_NS`` (node clock) so that
they reach the pipeline in stamp order (topics arrive interleaved; at equal stamps odometry
first, see ``Rank``), and a worker thread of the node takes them from there, so a scan's
registration never holds up the executor. When the worker falls behind the lidar, only the
newest of the scans due is registered; the others are dropped and counted (``stats``, and a
warning). The worker publishes every ``localization.pose_publish_period_s``:
``/localization/pose`` (PoseWithCovarianceStamped in ``map``, the site frame),
``/localization/geo`` (NavSatFix, CGCS2000), ``/localization/axis_distance`` (Float64:
distance along the current pipe or gallery, the counter a crew reads) with
``/localization/axis`` (String: its name), and ``map -> odom`` on ``/tf`` (tf2_msgs/TFMessage;
PyPI has no tf2_msgs wheel, so ``make`` builds the message from rosidl:
robot_ws/pypi_interfaces).
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Imu, NavSatFix, NavSatStatus, PointCloud2
from std_msgs.msg import Float64, String
from tf2_msgs.msg import TFMessage

from crawler.config import CrawlerConfig
from crawler.errors import ConfigError
from crawler_navigation.common import (
    declare_config,
    fill_pose,
    information_from_covariance,
    lidar_mount,
    pose_of,
    read_config,
    slam_odometry_msg,
    spin,
    stamp_msg,
    stamp_ns,
)
from navigation.bag_io import (
    ConversionError,
    cloud_from_msg,
    navsat_from_msg,
    odometry_from_msg,
    radio_from_msg,
)
from navigation.fusion import LocalizationEstimate, LocalizerNotInitializedError
from navigation.localization import LocalizationPipeline, PipelineConfig
from navigation.records import FixSource, LidarOdometryResult, OdometrySample, PositionFix
from navigation.site import SiteFileError, load_site

QOS = QoSProfile(depth=10)
TF_QOS = QoSProfile(depth=100)  # tf2_ros's TransformBroadcaster: reliable, volatile, depth 100
REORDER_DELAY_NS = 300_000_000
"""Measurements wait this long (node clock) so they reach the pipeline in stamp order."""
WORKER_IDLE_S = 0.02
"""The worker looks for due measurements this often (wall time) when it has nothing to do."""
WORKER_JOIN_TIMEOUT_S = 2.0
MAX_QUEUED_SCANS = 20
"""Scans held at most (2 s at 10 Hz); beyond, the oldest is dropped (no clock, a stall)."""
DROP_WARNING_PERIOD_S = 5.0


class Rank(IntEnum):
    """Order of measurements with equal stamps: proprioception first, so that a scan finds
    the wheel odometry of its own instant (the order the simulator's recordings have)."""

    WHEEL = 0
    IMU = 1
    TETHER = 2
    LIDAR = 3
    FIX = 4


Work = Callable[[], object]


class _Entry:
    """A queued measurement; ``work`` is None once dropped."""

    __slots__ = ("droppable", "key", "work")

    def __init__(self, key: tuple[int, int, int], work: Work, droppable: bool) -> None:
        self.key, self.droppable = key, droppable
        self.work: Work | None = work

    def __lt__(self, other: _Entry) -> bool:
        return self.key < other.key


class MeasurementQueue:
    """Measurements in (stamp, rank, arrival) order, released once due; thread-safe.

    ROS callbacks ``put``, the worker ``take_due``. Of the droppable entries (raw scans) due
    at one take only the newest is released: the worker fell behind the lidar, and an old scan
    would only put it further behind. At most ``max_droppable`` wait; more drop the oldest.
    """

    def __init__(self, max_droppable: int = MAX_QUEUED_SCANS) -> None:
        self.max_droppable = max_droppable
        self._heap: list[_Entry] = []
        self._droppable: list[_Entry] = []  # waiting, in arrival order
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self.queued = 0
        """Entries put so far."""
        self.dropped = 0

    def put(self, stamp_ns: int, rank: Rank, work: Work, droppable: bool = False) -> None:
        """Queue ``work`` for when measurements older than ``stamp_ns`` cannot still come."""
        entry = _Entry((stamp_ns, int(rank), next(self._sequence)), work, droppable)
        with self._lock:
            heapq.heappush(self._heap, entry)
            self.queued += 1
            if droppable:
                self._droppable.append(entry)
                if len(self._droppable) > self.max_droppable:
                    self._drop(min(self._droppable))

    def take_due(self, horizon_ns: int) -> list[Work]:
        """The work of every entry stamped up to ``horizon_ns``, in order (see the class)."""
        with self._lock:
            due: list[_Entry] = []
            while self._heap and self._heap[0].key[0] <= horizon_ns:
                entry = heapq.heappop(self._heap)
                if entry.work is not None:
                    due.append(entry)
            scans = [e for e in due if e.droppable]
            for entry in scans[:-1]:
                self._drop(entry)
            for entry in scans[-1:]:
                self._droppable.remove(entry)
            return [e.work for e in due if e.work is not None]

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for e in self._heap if e.work is not None)

    def _drop(self, entry: _Entry) -> None:
        entry.work = None
        self._droppable.remove(entry)
        self.dropped += 1


@dataclass
class ScanStats:
    """What became of the scans (pipeline source)."""

    received: int = 0
    registered: int = 0
    dropped: int = 0
    """Not registered: the worker was behind (a newer scan was due too) or too many waited."""
    late: int = 0
    """Not registered: stamped at or before a scan already registered."""
    skipped: int = 0
    """Not registered: the message did not convert (corrupt)."""
    seconds: float = 0.0
    """Time spent registering (wall, in the worker)."""

    @property
    def ms_per_scan(self) -> float:
        """Mean registration time."""
        return 1000.0 * self.seconds / max(self.registered, 1)


class LatestEstimate:
    """The newest published estimate, readable from any thread (the worker owns the pipeline).

    Named like ``FusedLocalizer`` where callers read it (``initialized``, ``estimate()``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._estimate: LocalizationEstimate | None = None

    @property
    def initialized(self) -> bool:
        """Whether an estimate was published."""
        with self._lock:
            return self._estimate is not None

    def estimate(self) -> LocalizationEstimate:
        """The newest published estimate (``LocalizerNotInitializedError`` before the first)."""
        with self._lock:
            if self._estimate is None:
                raise LocalizerNotInitializedError("no estimate published yet")
            return self._estimate

    def set(self, estimate: LocalizationEstimate) -> None:
        """Replace the estimate (the worker, at each publication)."""
        with self._lock:
            self._estimate = estimate


class LocalizerNode(Node):
    """Thin adapter: messages -> ``LocalizationPipeline`` (in a worker thread) -> messages."""

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
        self._site_frame = self.site.frame()
        self.T_base_lidar = lidar_mount(self.config)
        self._T_lidar_base = np.linalg.inv(self.T_base_lidar)
        self.source = self.config.localization.source
        # The pipeline of the offline tools; fed only by the worker thread
        pipeline_config = (PipelineConfig() if self.source == "pipeline" else
                           PipelineConfig(wall_heading=False, loop_closure=False))
        self.pipeline = LocalizationPipeline(self.site, self.T_base_lidar,
                                             config=pipeline_config)
        self.localizer = LatestEstimate()
        self.stats = ScanStats()
        self.queue = MeasurementQueue()
        self._last_slam: tuple[int, np.ndarray] | None = None
        self._last_scan_ns: int | None = None
        self._publish_period_ns = round(self.config.localization.pose_publish_period_s * 1e9)
        self._next_publish_ns = 0
        # ROS interfaces
        self._pub_pose = self.create_publisher(PoseWithCovarianceStamped, "/localization/pose",
                                               QOS)
        self._pub_geo = self.create_publisher(NavSatFix, "/localization/geo", QOS)
        self._pub_axis_distance = self.create_publisher(Float64, "/localization/axis_distance",
                                                        QOS)
        self._pub_axis = self.create_publisher(String, "/localization/axis", QOS)
        self._pub_tf = self.create_publisher(TFMessage, "/tf", TF_QOS)
        self.create_subscription(Odometry, "/odom/wheel", self._on_wheel, QOS)
        if self.source == "pipeline":
            self._pub_slam = self.create_publisher(Odometry, "/slam/odometry", QOS)
            self.create_subscription(PointCloud2, "/points", self._on_points,
                                     qos_profile_sensor_data)
        else:
            self.create_subscription(Odometry, "/slam/odometry", self._on_slam, QOS)
        self.create_subscription(NavSatFix, "/gnss/fix", self._on_gnss, QOS)
        self.create_subscription(PoseWithCovarianceStamped, "/radio/fix", self._on_radio, QOS)
        self.create_subscription(Float64, "/tether/length", self._on_tether, QOS)
        self.create_subscription(Imu, "/imu", self._on_imu, qos_profile_sensor_data)
        # The worker: due measurements into the pipeline, the estimate out
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="localizer-pipeline",
                                        daemon=True)
        self._worker.start()

    def destroy_node(self) -> None:
        """Stop the worker (bounded wait), then destroy the node."""
        self._stop.set()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(WORKER_JOIN_TIMEOUT_S)
        super().destroy_node()

    def _now_ns(self) -> int:
        now: int = self.get_clock().now().nanoseconds
        return now

    # --- callbacks (executor): convert, queue ----------------------------------------------

    def _on_wheel(self, msg: Odometry) -> None:
        try:
            sample = odometry_from_msg(msg, self._now_ns())
        except ConversionError as err:
            self.get_logger().warning(f"/odom/wheel skipped: {err}")
            return
        self.queue.put(sample.stamp_ns, Rank.WHEEL, lambda: self._odometry(sample))

    def _on_points(self, msg: PointCloud2) -> None:
        self.stats.received += 1
        stamp = stamp_ns(msg.header.stamp) or self._now_ns()
        self.queue.put(stamp, Rank.LIDAR, lambda: self._register(msg, stamp), droppable=True)

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
        self.queue.put(stamp, Rank.LIDAR, lambda: self.pipeline.localizer.add_lidar_odometry(
            result, self.T_base_lidar))

    def _on_gnss(self, msg: NavSatFix) -> None:
        if msg.status.status < NavSatStatus.STATUS_FIX:
            return
        try:
            fix = navsat_from_msg(msg, self._now_ns())
        except ConversionError as err:
            self.get_logger().warning(f"/gnss/fix skipped: {err}")
            return
        position = self._site_frame.to_site([fix.latitude_deg, fix.longitude_deg,
                                             fix.altitude_m])[0]
        beidou = PositionFix(fix.stamp_ns, position, np.asarray(fix.covariance_m2),
                             FixSource.BEIDOU)
        self.queue.put(fix.stamp_ns, Rank.FIX, lambda: self.pipeline.on_fix(beidou))

    def _on_radio(self, msg: PoseWithCovarianceStamped) -> None:
        try:
            fix = radio_from_msg(msg, self._now_ns())
        except ConversionError as err:
            self.get_logger().warning(f"/radio/fix skipped: {err}")
            return
        self.queue.put(fix.stamp_ns, Rank.FIX, lambda: self.pipeline.on_fix(fix))

    def _on_imu(self, msg: Imu) -> None:
        stamp = stamp_ns(msg.header.stamp) or self._now_ns()
        q = msg.orientation
        roll = math.atan2(2 * (q.w * q.x + q.y * q.z), 1 - 2 * (q.x * q.x + q.y * q.y))
        pitch = math.asin(max(-1.0, min(1.0, 2 * (q.w * q.y - q.z * q.x))))
        yaw_rate = float(msg.angular_velocity.z)

        def deliver() -> None:
            self.pipeline.localizer.add_imu_yaw_rate(stamp, yaw_rate)
            self.pipeline.localizer.add_imu_tilt(stamp, roll, pitch)

        self.queue.put(stamp, Rank.IMU, deliver)

    def _on_tether(self, msg: Float64) -> None:
        if self.site.tether is None:
            return
        stamp, length_m = self._now_ns(), float(msg.data)  # Float64 has no header
        self.queue.put(stamp, Rank.TETHER, lambda: self.pipeline.on_tether(stamp, length_m))

    # --- the worker thread: the pipeline -----------------------------------------------------

    def _work(self) -> None:
        """Until stopped: take what is due, feed it to the pipeline, publish when it is time."""
        try:
            while not self._stop.is_set() and self.context.ok():
                if not self._step():
                    self._stop.wait(WORKER_IDLE_S)
        except Exception as err:
            self.get_logger().fatal(f"localization stopped: {type(err).__name__}: {err}")
            raise

    def _step(self) -> bool:
        """One round; False when there was nothing to do."""
        now_ns = self._now_ns()
        work = self.queue.take_due(now_ns - REORDER_DELAY_NS)
        # Measurements in stamp order
        for deliver in work:
            if self._stop.is_set():
                return True
            deliver()
        self._count_drops()
        # The estimate, at the publication period (and again after a clock reset)
        due = now_ns >= self._next_publish_ns or now_ns < self._next_publish_ns - (
            2 * self._publish_period_ns)
        if due and self.pipeline.localizer.initialized:
            self._next_publish_ns = now_ns + self._publish_period_ns
            self._publish(self.pipeline.estimate())
            return True
        return bool(work)

    def _odometry(self, sample: OdometrySample) -> None:
        if not self.pipeline.localizer.initialized:
            # Start at the entry of the site's first axis (manhole A, the tunnel portal).
            entry = self.site.axes[0]
            self.pipeline.initialize(entry.pose_at(entry.start_distance_m), sample.stamp_ns)
        self.pipeline.on_odometry(sample)

    def _register(self, msg: PointCloud2, stamp: int) -> None:
        """A scan into the pipeline; its lidar odometry out on ``/slam/odometry``."""
        try:
            scan = cloud_from_msg(msg, stamp)
        except ConversionError as err:
            self.stats.skipped += 1
            self.get_logger().warning(f"/points skipped ({self.stats.skipped} so far): {err}")
            return
        if self._last_scan_ns is not None and scan.stamp_ns <= self._last_scan_ns:
            self.stats.late += 1
            return
        self._last_scan_ns = scan.stamp_ns
        started = time.perf_counter()
        result = self.pipeline.on_scan(scan)
        self.stats.seconds += time.perf_counter() - started
        self.stats.registered += 1
        self._pub_slam.publish(slam_odometry_msg(result, self.T_base_lidar,
                                                 self.config.frames.base))

    def _count_drops(self) -> None:
        dropped = self.queue.dropped
        if dropped == self.stats.dropped:
            return
        self.stats.dropped = dropped
        s = self.stats
        self.get_logger().warning(
            f"scans dropped: {s.dropped} of {s.received} (behind the lidar: the newest due scan "
            f"is registered; {s.ms_per_scan:.0f} ms per scan)",
            throttle_duration_sec=DROP_WARNING_PERIOD_S)

    def _publish(self, estimate: LocalizationEstimate) -> None:
        self.localizer.set(estimate)
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
            self._pub_tf.publish(TFMessage(transforms=[tf]))


def main(args: list[str] | None = None) -> None:
    """``ros2 run crawler_navigation localizer_node --ros-args -p localization.site_file:=F``."""
    spin(LocalizerNode, args)
