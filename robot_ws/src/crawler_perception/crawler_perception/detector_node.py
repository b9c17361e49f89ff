"""``defect_detector``: the configured defect detector on every camera image it can keep up with.

Subscribes ``/camera/image_raw`` (``sensor_msgs/Image`` bgr8, rgb8 or mono8) with sensor-data
QoS of depth 1: while the detector is busy, newer frames replace older ones instead of
queueing, so the detections stay current. Publishes ``/defects/detections`` (``std_msgs/String``,
the JSON of ``conversions.DetectionFrame``) for every processed image, and once a second
``/diagnostics`` with the counts of images, detections and skipped (corrupt) frames and the mean
time per image. The detector comes from ``perception.detector`` (a spec string); a missing or
unreadable model makes the node fail at construction, before it subscribes to anything.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from crawler.config import CrawlerConfig
from crawler_navigation.common import declare_config, read_config, stamp_ns
from crawler_perception.common import exit_on_error, spin_node
from crawler_perception.conversions import DetectionFrame, image_to_bgr
from perception.detectors import DetectorOptions, load_detector
from perception.errors import ImageError

IMAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.BEST_EFFORT)
"""Sensor data, depth 1: a busy detector drops frames instead of falling behind."""
DETECTIONS_QOS = QoSProfile(depth=10)
STATUS_QOS = QoSProfile(depth=10)
STATUS_PERIOD_S = 1.0
WARN_THROTTLE_S = 5.0


class DefectDetectorNode(Node):
    """Thin adapter: Image -> ``Detector.detect`` -> detections JSON."""

    def __init__(self, config: CrawlerConfig | None = None, **kwargs: Any) -> None:
        super().__init__("defect_detector", **kwargs)
        declare_config(self, config)
        self.config = read_config(self)
        p = self.config.perception
        # Raises ModelLoadError / DetectorSpecError: the node never starts without a model.
        self.detector = load_detector(p.detector, DetectorOptions(
            p.confidence_threshold, p.iou_threshold, p.image_size_px))
        self.images = 0
        self.detections = 0
        self.skipped = 0
        self._detect_s = 0.0
        self._last_skip = ""
        self._skipped_reported = 0
        self.detections_publisher = self.create_publisher(String, "/defects/detections",
                                                          DETECTIONS_QOS)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", STATUS_QOS)
        self.create_subscription(Image, "/camera/image_raw", self._on_image, IMAGE_QOS)
        self.create_timer(STATUS_PERIOD_S, self._publish_status)
        classes = ", ".join(self.detector.classes)
        self.get_logger().info(f"detector '{p.detector}': classes {classes}")

    @property
    def ms_per_image(self) -> float:
        """Mean detector wall time per processed image (0 before the first)."""
        return 1000.0 * self._detect_s / self.images if self.images else 0.0

    def _on_image(self, msg: Image) -> None:
        # Convert; a corrupt frame is counted and skipped
        try:
            image = image_to_bgr(msg)
        except ImageError as err:
            self._skip(f"/camera/image_raw frame skipped: {err}")
            return
        # Detect and time it
        stamp = stamp_ns(msg.header.stamp)
        t0 = time.perf_counter()
        try:
            detections = self.detector.detect(image, stamp)
        except ImageError as err:
            self._skip(f"/camera/image_raw frame rejected by the detector: {err}")
            return
        elapsed_s = time.perf_counter() - t0
        self.images += 1
        self.detections += len(detections)
        self._detect_s += elapsed_s
        # Publish
        frame = DetectionFrame(stamp, msg.header.frame_id, image.shape[1], image.shape[0],
                               tuple(detections), 1000.0 * elapsed_s)
        self.detections_publisher.publish(String(data=frame.to_json()))

    def _skip(self, reason: str) -> None:
        self.skipped += 1
        self._last_skip = reason
        self.get_logger().warning(f"{reason} ({self.skipped} skipped so far)",
                                  throttle_duration_sec=WARN_THROTTLE_S)

    def _publish_status(self) -> None:
        # WARN while frames are being skipped; OK again after a clean period
        fresh = self.skipped > self._skipped_reported
        self._skipped_reported = self.skipped
        level = DiagnosticStatus.WARN if fresh else DiagnosticStatus.OK
        values = {"detector": self.config.perception.detector, "images": self.images,
                  "detections": self.detections, "skipped": self.skipped,
                  "ms_per_image": round(self.ms_per_image, 2)}
        status = DiagnosticStatus(
            level=level, name="defect_detector", hardware_id="camera",
            message=self._last_skip if fresh else "ok",
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)


def run(config: CrawlerConfig | None = None, args: list[str] | None = None) -> None:
    """Run the detector node until Ctrl-C.

    Raises ``ModelLoadError`` / ``DetectorSpecError`` (perception.errors) for a missing or bad
    model and ``ConfigError`` for invalid parameters, after shutting rclpy down.
    """
    spin_node(lambda: DefectDetectorNode(config), args)


def main(args: list[str] | None = None) -> None:
    """``ros2 run crawler_perception defect_detector --ros-args -p perception.detector:=SPEC``."""
    exit_on_error("defect_detector", lambda: run(args=args))
