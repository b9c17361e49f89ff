"""``defect_mapper``: detections placed on the pipe, tracked into findings, graded at the end.

Subscribes ``/defects/detections`` (the detector's JSON), ``/localization/pose``
(PoseWithCovarianceStamped in ``map``, the site frame), ``/camera/camera_info`` and ``/points``
(PointCloud2 in the lidar frame). Detections and scans wait until a pose at or after their stamp
has arrived (at most ``MAX_WAIT_S``), then take the pose interpolated at their stamp from a
``POSE_HISTORY_S`` history; those older than the history, or with no pose at all, are dropped
and counted. ``T_map_camera = T_map_base @ T_base_camera`` (``mounts.camera_*``); scans go
through ``mounts.lidar_*`` into ``DefectMapper.add_scan``.

Publishes each newly confirmed finding on ``/defects/findings`` (String JSON, reliable +
transient_local, depth 100: a late-joining laptop gets them all), all findings as
``/defects/markers`` (MarkerArray: a sphere and a label each), and ``/diagnostics`` once a
second. The ``/defects/finish`` service (std_srvs/Trigger) closes the open tracks, measures and
grades the segment (CJJ 181-2012) and publishes it on ``/defects/segment`` (String JSON,
transient_local); the node does the same at Ctrl-C when it has not been done since the last
data. Without camera_info the camera model is a pinhole of the image's size with a horizontal
field of view of ``FALLBACK_HFOV_RAD`` (the SDF default, that of the simulated camera).
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from crawler.config import CrawlerConfig
from crawler.errors import ConfigError
from crawler_navigation.common import declare_config, pose_of, read_config, stamp_ns
from crawler_perception.common import exit_on_error, spin_node
from crawler_perception.conversions import (
    DetectionFrame,
    FloatArray,
    MessageError,
    PoseBuffer,
    camera_for_image,
    camera_from_info,
    cloud_points,
    finding_to_dict,
    marker_labels,
    mount_transform,
    segment_summary,
    segment_to_dict,
    to_json,
)
from navigation.bag_io import ConversionError
from navigation.site import Axis, SiteFileError, load_site
from perception.errors import PerceptionError
from perception.findings import Finding, FindingTracker, PinholeCamera, PipeModel
from perception.grading import SiteFactors
from perception.mapper import DefectMapper, SegmentMap

INPUT_QOS = QoSProfile(depth=10)
FINDINGS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Every finding of the mission, replayed to a subscriber that joins late."""
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The latest marker array / segment evaluation for a late joiner."""
POSE_HISTORY_S = 10.0
MAX_WAIT_S = 1.0
"""How long (wall time) a detection or scan waits for a pose at or after its stamp."""
MAX_EXTRAPOLATION_S = 0.2
"""After that wait, the newest pose still serves a stamp up to this much later."""
MAX_SCAN_POINTS = 10_000
FALLBACK_HFOV_RAD = 1.047
DRAIN_PERIOD_S = 0.05
STATUS_PERIOD_S = 1.0
MARKER_DIAMETER_M = 0.15

Apply = Callable[[FloatArray], None]


class DefectMapperNode(Node):
    """Thin adapter: detections, poses, scans -> ``DefectMapper`` -> findings and segment."""

    def __init__(self, config: CrawlerConfig | None = None, **kwargs: Any) -> None:
        super().__init__("defect_mapper", **kwargs)
        declare_config(self, config)
        self.config = read_config(self)
        p = self.config.perception
        # The pipe the findings are placed on: a site axis and the pipe's bore
        self.axis = _site_axis(self.config)
        self.pipe = PipeModel(self.axis, 0.5 * p.pipe_inner_diameter_m)
        self.segment_length_m = self.axis.end_distance_m - max(self.axis.start_distance_m, 0.0)
        self.site_factors = SiteFactors(dn_mm=1000.0 * p.pipe_inner_diameter_m)
        mounts = self.config.mounts
        self.T_base_camera = mount_transform(mounts.camera_xyz_m, mounts.camera_rpy_rad)
        self.T_base_lidar = mount_transform(mounts.lidar_xyz_m, mounts.lidar_rpy_rad)
        # The library: camera model replaced per frame once the image size is known
        placeholder = camera_for_image(None, 640, 480, FALLBACK_HFOV_RAD)
        tracker = FindingTracker(self.pipe, placeholder, min_frames=p.min_frames,
                                 min_confidence=p.min_confidence)
        self.mapper = DefectMapper(self.pipe, placeholder, p.pipe_wall_thickness_m,
                                   tracker=tracker)
        self.poses = PoseBuffer(round(POSE_HISTORY_S * 1e9))
        self.camera_info: PinholeCamera | None = None
        self.findings: dict[str, Finding] = {}  # published, by id, latest version
        self.segment: SegmentMap | None = None
        self.counts = {"frames": 0, "scans": 0, "dropped_no_pose": 0, "malformed": 0}
        self._finished = True  # nothing to finish before the first data
        self._warned_fallback = False
        self._pending: list[tuple[int, int, float, Apply]] = []
        self._sequence = itertools.count()
        # ROS interfaces
        self._pub_findings = self.create_publisher(String, "/defects/findings", FINDINGS_QOS)
        self._pub_markers = self.create_publisher(MarkerArray, "/defects/markers", LATCHED_QOS)
        self._pub_segment = self.create_publisher(String, "/defects/segment", LATCHED_QOS)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", INPUT_QOS)
        self.create_subscription(String, "/defects/detections", self._on_detections, INPUT_QOS)
        self.create_subscription(PoseWithCovarianceStamped, "/localization/pose", self._on_pose,
                                 INPUT_QOS)
        self.create_subscription(CameraInfo, "/camera/camera_info", self._on_camera_info,
                                 qos_profile_sensor_data)
        self.create_subscription(PointCloud2, "/points", self._on_points, qos_profile_sensor_data)
        self.create_service(Trigger, "/defects/finish", self._on_finish)
        self.create_timer(DRAIN_PERIOD_S, self._drain)
        self.create_timer(STATUS_PERIOD_S, self._publish_status)

    # --- inputs ----------------------------------------------------------------------------

    def _on_detections(self, msg: String) -> None:
        try:
            frame = DetectionFrame.from_json(msg.data)
        except MessageError as err:
            self._malformed(f"/defects/detections skipped: {err}")
            return
        self._later(frame.stamp_ns, lambda T_map_base: self._add_frame(frame, T_map_base))

    def _on_pose(self, msg: PoseWithCovarianceStamped) -> None:
        T_map_base = pose_of(msg.pose.pose)
        if not np.isfinite(T_map_base).all():
            self._malformed("/localization/pose skipped: not finite")
            return
        self.poses.add(stamp_ns(msg.header.stamp), T_map_base)
        self._drain()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = camera_from_info(int(msg.width), int(msg.height), list(msg.k))

    def _on_points(self, msg: PointCloud2) -> None:
        try:
            points_lidar = cloud_points(msg, MAX_SCAN_POINTS)
        except ConversionError as err:
            self._malformed(f"/points skipped: {err}")
            return
        if len(points_lidar):
            self._later(stamp_ns(msg.header.stamp),
                        lambda T_map_base: self._add_scan(points_lidar, T_map_base))

    def _malformed(self, reason: str) -> None:
        self.counts["malformed"] += 1
        self.get_logger().warning(reason, throttle_duration_sec=5.0)

    # --- stamp order and poses -------------------------------------------------------------

    def _later(self, stamp: int, apply: Apply) -> None:
        """Queue a stamped input until the pose history covers its stamp."""
        heapq.heappush(self._pending, (stamp, next(self._sequence), time.monotonic(), apply))
        self._drain()

    def _drain(self, force: bool = False) -> None:
        """Hand queued inputs their pose, oldest first; drop those no pose can serve."""
        now = time.monotonic()
        newest = self.poses.newest_ns
        while self._pending:
            stamp, _, arrived, apply = self._pending[0]
            covered = newest is not None and stamp <= newest
            if not (covered or force or now - arrived >= MAX_WAIT_S):
                break
            heapq.heappop(self._pending)
            T_map_base = self.poses.at(stamp, round(MAX_EXTRAPOLATION_S * 1e9))
            if T_map_base is None:
                self.counts["dropped_no_pose"] += 1
                continue
            apply(T_map_base)

    # --- library calls ---------------------------------------------------------------------

    def _add_frame(self, frame: DetectionFrame, T_map_base: FloatArray) -> None:
        self.mapper.tracker.camera = self._camera(frame.width, frame.height)
        confirmed = self.mapper.add_frame(frame.stamp_ns, list(frame.detections),
                                          T_map_base @ self.T_base_camera)
        self.counts["frames"] += 1
        self._finished = False
        if confirmed:
            self._publish_findings(confirmed)

    def _add_scan(self, points_lidar: FloatArray, T_map_base: FloatArray) -> None:
        T_map_lidar = T_map_base @ self.T_base_lidar
        points_map = points_lidar @ T_map_lidar[:3, :3].T + T_map_lidar[:3, 3]
        self.mapper.add_scan(points_map, T_map_lidar[:3, 3].copy())
        self.counts["scans"] += 1
        self._finished = False

    def _camera(self, width_px: int, height_px: int) -> PinholeCamera:
        if self.camera_info is None and not self._warned_fallback:
            self._warned_fallback = True
            self.get_logger().warning(
                f"no /camera/camera_info yet: assuming a pinhole of {width_px} x {height_px} px "
                f"with a {math.degrees(FALLBACK_HFOV_RAD):.0f} deg horizontal field of view")
        return camera_for_image(self.camera_info, width_px, height_px, FALLBACK_HFOV_RAD)

    def finish(self) -> str:
        """Grade the segment now, publish it on ``/defects/segment``; returns a summary line.

        Raises PerceptionError (e.g. GradingError) when the segment cannot be evaluated.
        """
        self._drain(force=True)
        segment = self.mapper.finish(self.site_factors, self.segment_length_m)
        self.segment = segment
        self._finished = True
        new = [g.finding for g in segment.findings if g.finding.id not in self.findings]
        if new:
            self._publish_findings(new)
        self.findings.update((g.finding.id, g.finding) for g in segment.findings)
        self._publish_markers()
        doc = segment_to_dict(segment, self.axis.name, self.site_factors.dn_mm)
        self._pub_segment.publish(String(data=to_json(doc)))
        summary = segment_summary(segment, self.axis.name)
        self.get_logger().info(summary)
        return summary

    def finish_if_needed(self) -> None:
        """At shutdown: grade the segment unless that was done since the last data."""
        if self._finished:
            return
        try:
            self.finish()
        except PerceptionError as err:
            self.get_logger().error(f"segment not graded: {err}")
            return
        # Let the subscribers that are there now receive the segment before the node goes.
        self._pub_segment.wait_for_all_acked(Duration(seconds=1.0))

    # --- outputs ---------------------------------------------------------------------------

    def _on_finish(self, request: Trigger.Request, response: Trigger.Response
                   ) -> Trigger.Response:
        try:
            response.message = self.finish()
            response.success = True
        except PerceptionError as err:
            response.success, response.message = False, f"segment not graded: {err}"
            self.get_logger().error(response.message)
        return response

    def _publish_findings(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.findings[finding.id] = finding
            doc = finding_to_dict(finding, self.axis.name)
            self._pub_findings.publish(String(data=to_json(doc)))
            self.get_logger().info(
                f"finding {finding.id} {finding.code} at {finding.start_m:.2f}-"
                f"{finding.end_m:.2f} m, {finding.clock_h:g} o'clock ({finding.frames} frames)")
        self._publish_markers()

    def _publish_markers(self) -> None:
        stamp = self.get_clock().now().to_msg()
        array = MarkerArray()
        for index, (text, position) in enumerate(marker_labels(self.findings.values())):
            sphere = Marker(ns="defects", id=2 * index, type=Marker.SPHERE, action=Marker.ADD)
            label = Marker(ns="defects", id=2 * index + 1, type=Marker.TEXT_VIEW_FACING,
                           action=Marker.ADD, text=text)
            for marker in (sphere, label):
                marker.header.frame_id, marker.header.stamp = "map", stamp
                marker.pose.position.x, marker.pose.position.y = position[0], position[1]
                marker.pose.position.z = position[2]
                marker.pose.orientation.w = 1.0
            sphere.scale.x = sphere.scale.y = sphere.scale.z = MARKER_DIAMETER_M
            sphere.color.r, sphere.color.g, sphere.color.b, sphere.color.a = 1.0, 0.2, 0.1, 0.9
            label.pose.position.z += MARKER_DIAMETER_M
            label.scale.z = 0.1  # text height
            label.color.r = label.color.g = label.color.b = label.color.a = 1.0
            array.markers += [sphere, label]
        self._pub_markers.publish(array)

    def _publish_status(self) -> None:
        values: dict[str, object] = dict(self.counts)
        values |= {"findings": len(self.findings), "pending": len(self._pending),
                   "poses": len(self.poses), "axis": self.axis.name,
                   "camera": "camera_info" if self.camera_info is not None else
                   f"fallback hfov {FALLBACK_HFOV_RAD} rad"}
        level = DiagnosticStatus.OK if len(self.poses) else DiagnosticStatus.WARN
        status = DiagnosticStatus(
            level=level, name="defect_mapper", hardware_id="perception",
            message="ok" if level == DiagnosticStatus.OK else "no /localization/pose yet",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)


def _site_axis(config: CrawlerConfig) -> Axis:
    """The site axis of ``perception.pipe_axis`` (empty: the site's first); ConfigError."""
    site_file = config.localization.site_file
    if not site_file:
        raise ConfigError("defect_mapper: set localization.site_file (docs/site_file.md)")
    try:
        site = load_site(Path(site_file))
    except SiteFileError as err:
        raise ConfigError(str(err)) from err
    name = config.perception.pipe_axis or site.axes[0].name
    try:
        return site.axis(name)
    except KeyError as err:
        raise ConfigError(f"perception.pipe_axis: {err.args[0]}") from err


def run(config: CrawlerConfig | None = None, args: list[str] | None = None) -> None:
    """Run the mapper node until Ctrl-C; grades the segment at Ctrl-C if not done yet.

    Raises ``ConfigError`` for invalid parameters or an unreadable site file.
    """
    spin_node(lambda: DefectMapperNode(config), args, DefectMapperNode.finish_if_needed)


def main(args: list[str] | None = None) -> None:
    """``ros2 run crawler_perception defect_mapper --ros-args -p localization.site_file:=F``."""
    exit_on_error("defect_mapper", lambda: run(args=args))
