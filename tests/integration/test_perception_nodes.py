"""defect_detector and defect_mapper on a synthetic drive down a straight DN1000 pipe.

The test renders what the camera would see of a 0.2 m crack on the crown between 4.9 and
5.1 m (a white rectangle: the projection of its corners through the pinhole), and its
detector (``CrownCrackDetector``, loaded through a ``python:`` spec) boxes the white pixels.
Poses march along the site axis at stamps between the frames, so every detection takes an
interpolated pose. The finding must come out at the crack's distance and at 12 o'clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from crawler.config import CrawlerConfig, LocalizationConfig, PerceptionConfig
from crawler_perception import detector_node
from crawler_perception.detector_node import DefectDetectorNode
from crawler_perception.mapper_node import FINDINGS_QOS, LATCHED_QOS, DefectMapperNode
from navigation.geodesy import GeodeticOrigin
from navigation.site import Axis, Site, SiteType, dump_site
from perception.detectors import Detection
from perception.detectors.base import ImageBGR
from tests.integration.ros_harness import DISCOVERY_TIMEOUT_S, RosProbe, SpunNodes, wait_until

pytestmark = [pytest.mark.ros]

WIDTH_PX, HEIGHT_PX = 320, 240
HFOV_RAD = 1.2  # not the mapper's 1.047 rad fallback: placement needs camera_info
FOCAL_PX = 0.5 * WIDTH_PX / math.tan(0.5 * HFOV_RAD)
RADIUS_M = 0.5
CRACK_M = (4.9, 5.1)  # along the axis, on the crown
CRACK_HALF_WIDTH_M = 0.05
CAMERA_XYZ_M = (0.31, 0.0, 0.215)  # mounts.camera_xyz_m (default config)
LIDAR_XYZ_M = (0.12, 0.0, 0.39)  # mounts.lidar_xyz_m (default config)
STEP_M = 0.2
FRAMES = 31  # 0 .. 6 m: the camera passes the crack's end by 0.5 m, which closes its track
PERIOD_NS = 100_000_000
T0_NS = 1_000 * 1_000_000_000
CORRUPT_AFTER = 3  # frame index after which a corrupt image is sent


class CrownCrackDetector:
    """Test detector: one crack (PL) boxing the white pixels of the image."""

    @property
    def classes(self) -> tuple[str, ...]:
        """Cracks only."""
        return ("PL",)

    def detect(self, image_bgr: ImageBGR, stamp_ns: int) -> list[Detection]:
        """The bounding box of the pixels brighter than 200, if any."""
        rows, cols = np.nonzero(image_bgr[:, :, 0] > 200)
        if rows.size == 0:
            return []
        box = (float(cols.min()), float(rows.min()), float(cols.max() + 1),
               float(rows.max() + 1))
        return [Detection("PL", box, 0.9)]


def render(distance_m: float) -> np.ndarray | None:
    """Camera image at robot chainage ``distance_m``; None while the crack is not wholly in view."""
    cx, _, cz = distance_m + CAMERA_XYZ_M[0], CAMERA_XYZ_M[1], CAMERA_XYZ_M[2]
    crown_z = RADIUS_M + math.sqrt(RADIUS_M**2 - CRACK_HALF_WIDTH_M**2)
    corners = [(s - cx, y, crown_z - cz) for s in CRACK_M
               for y in (-CRACK_HALF_WIDTH_M, CRACK_HALF_WIDTH_M)]
    u = [0.5 * WIDTH_PX - FOCAL_PX * y / x for x, y, _ in corners]
    v = [0.5 * HEIGHT_PX - FOCAL_PX * z / x for x, _, z in corners]
    if min(v) < 0.0 or min(x for x, _, _ in corners) <= 0.0:
        return None
    image = np.full((HEIGHT_PX, WIDTH_PX, 3), 60, np.uint8)
    image[math.floor(min(v)):math.ceil(max(v)), math.floor(min(u)):math.ceil(max(u))] = 255
    return image


def image_msg(image: np.ndarray, stamp_ns: int, encoding: str) -> Image:
    """``image`` (BGR) as bgr8, rgb8 or mono8."""
    pixels = {"bgr8": image, "rgb8": image[:, :, ::-1], "mono8": image[:, :, :1]}[encoding]
    msg = Image(height=HEIGHT_PX, width=WIDTH_PX, encoding=encoding,
                step=WIDTH_PX * pixels.shape[2], data=np.ascontiguousarray(pixels).tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera_link"
    return msg


def camera_info_msg() -> CameraInfo:
    """Intrinsics of the rendering pinhole."""
    msg = CameraInfo(width=WIDTH_PX, height=HEIGHT_PX, distortion_model="plumb_bob")
    msg.k = [FOCAL_PX, 0.0, 0.5 * WIDTH_PX, 0.0, FOCAL_PX, 0.5 * HEIGHT_PX, 0.0, 0.0, 1.0]
    return msg


def pose_msg(distance_m: float, stamp_ns: int) -> PoseWithCovarianceStamped:
    """The robot on the invert at ``distance_m``, facing down the pipe (+x)."""
    msg = PoseWithCovarianceStamped()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "map"
    msg.pose.pose.position.x = distance_m
    msg.pose.pose.orientation.w = 1.0
    return msg


def ring_cloud(stamp_ns: int) -> PointCloud2:
    """Lidar points of the pipe wall 0.5-2 m ahead, in the lidar frame (the same everywhere)."""
    s, angle = np.meshgrid(np.linspace(0.5, 2.0, 16), np.linspace(0.0, 2 * np.pi, 90))
    points = np.column_stack([s.ravel() - LIDAR_XYZ_M[0], RADIUS_M * np.sin(angle.ravel()),
                              RADIUS_M * (1.0 + np.cos(angle.ravel())) - LIDAR_XYZ_M[2]])
    msg = PointCloud2(height=1, width=len(points), point_step=12, row_step=12 * len(points),
                      is_dense=True)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate("xyz")]
    msg.data = points.astype(np.float32).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "lidar_link"
    return msg


class NodesUnderTest(SpunNodes):
    """The two nodes in a context of their own, spun by one SingleThreadedExecutor."""

    def __init__(self, config: CrawlerConfig) -> None:
        super().__init__()
        self.detector = DefectDetectorNode(config, context=self.context)
        self.mapper = DefectMapperNode(config, context=self.context)
        self.spin(self.detector, self.mapper)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[NodesUnderTest]:
    """Both nodes on a 20 m straight pipe site, with the test's detector."""
    site = Site("test_pipe", SiteType.PIPE, GeodeticOrigin(30.0, 120.0, 10.0),
                (Axis("pipe", ((0.0, 0.0, 0.0), (20.0, 0.0, 0.0))),))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(dump_site(site))
    config = CrawlerConfig(
        perception=PerceptionConfig(detector=f"python:{__name__}:CrownCrackDetector",
                                    pipe_inner_diameter_m=2 * RADIUS_M),
        localization=LocalizationConfig(site_file=str(site_file)))
    under_test = NodesUnderTest(config)
    yield under_test
    under_test.close()


def status(probe: RosProbe, name: str) -> dict[str, str] | None:
    """Key-values of the newest /diagnostics status called ``name``."""
    for array in reversed(list(probe.received["/diagnostics"])):
        for item in array.status:
            if item.name == name:
                return {kv.key: kv.value for kv in item.values}
    return None


def test_detections_findings_and_segment(nodes: NodesUnderTest, probe: RosProbe) -> None:
    """A drive past one crown crack: detections, one finding where it is, a graded segment."""
    node = probe.node
    pub_image = node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
    pub_pose = node.create_publisher(PoseWithCovarianceStamped, "/localization/pose", 10)
    pub_points = node.create_publisher(PointCloud2, "/points", qos_profile_sensor_data)
    probe.record(String, "/defects/detections")
    probe.record(String, "/defects/findings", FINDINGS_QOS)
    probe.record(MarkerArray, "/defects/markers", LATCHED_QOS)
    probe.record(String, "/defects/segment", LATCHED_QOS)
    probe.record(DiagnosticArray, "/diagnostics")
    publishers: list[Any] = [pub_image, pub_info, pub_pose, pub_points]
    wait_until(lambda: all(p.get_subscription_count() > 0 for p in publishers)
               and nodes.detector.detections_publisher.get_subscription_count() == 2,
               DISCOVERY_TIMEOUT_S, "the perception nodes to be discovered")

    encodings = ("bgr8", "rgb8", "mono8")
    resent = 0
    for k in range(FRAMES):
        distance_m, stamp = k * STEP_M, T0_NS + k * PERIOD_NS
        image = render(distance_m)
        if image is None:
            image = np.full((HEIGHT_PX, WIDTH_PX, 3), 60, np.uint8)
        # The image (re-sent if the best-effort sample was lost), then the pose after it
        before = probe.count("/defects/detections")
        for attempt in range(3):
            resent += attempt > 0
            pub_info.publish(camera_info_msg())
            pub_image.publish(image_msg(image, stamp, encodings[k % 3]))
            try:
                wait_until(lambda n=before: probe.count("/defects/detections") > n, 2.0,
                           f"detections of frame {k}")
                break
            except AssertionError:
                continue
        pub_points.publish(ring_cloud(stamp + PERIOD_NS // 4))
        pub_pose.publish(pose_msg(distance_m + 0.5 * STEP_M, stamp + PERIOD_NS // 2))
        if k == CORRUPT_AFTER:
            corrupt = image_msg(image, stamp + 1, "bgr8")
            corrupt.data = corrupt.data[:-1]  # one byte short of step * height
            for _ in range(3):  # (a depth-1 queue: the next image would replace it)
                pub_image.publish(corrupt)
                try:
                    wait_until(lambda: nodes.detector.skipped > 0, 2.0, "the corrupt frame")
                    break
                except AssertionError:
                    continue

    # Detections: the documented schema, one crack while the crack was in view
    docs = [json.loads(m.data) for m in probe.received["/defects/detections"]]
    assert len(docs) == FRAMES + resent
    assert set(docs[0]) == {"stamp_ns", "frame_id", "width", "height", "detections", "ms"}
    assert (docs[0]["stamp_ns"], docs[0]["frame_id"]) == (T0_NS, "camera_link")
    assert (docs[0]["width"], docs[0]["height"]) == (WIDTH_PX, HEIGHT_PX)
    first = docs[0]["detections"][0]
    assert first["code"] == "PL" and first["confidence"] == pytest.approx(0.9)
    assert len(first["box_xyxy_px"]) == 4 and all(isinstance(v, float)
                                                  for v in first["box_xyxy_px"])
    assert sum(1 for d in docs if d["detections"]) >= 10

    # One finding, where the crack is, at 12 o'clock
    wait_until(lambda: probe.count("/defects/findings") > 0, 5.0, "a finding")
    findings = [json.loads(m.data) for m in probe.received["/defects/findings"]]
    assert len(findings) == 1
    finding = findings[0]
    assert finding["code"] == "PL" and finding["axis"] == "pipe"
    # (how start and end are estimated from the views is the tracker's business: loose here)
    assert finding["start_m"] == pytest.approx(CRACK_M[0], abs=0.15)
    assert finding["end_m"] == pytest.approx(CRACK_M[1], abs=0.15)
    assert 0.5 * (finding["start_m"] + finding["end_m"]) == pytest.approx(5.0, abs=0.08)
    assert min(abs(finding["clock_h"] - 12.0), finding["clock_h"]) < 0.3
    assert finding["position_m"] == pytest.approx([5.0, 0.0, 2 * RADIUS_M], abs=0.1)
    assert finding["frames"] >= 10 and finding["source"] == "camera"
    for key in ("id", "confidence", "best_stamp_ns"):
        assert key in finding
    wait_until(lambda: probe.count("/defects/markers") > 0, 5.0, "markers")
    markers = probe.last("/defects/markers").markers
    assert [m.type for m in markers] == [2, 9]  # SPHERE, TEXT_VIEW_FACING
    assert markers[0].pose.position.x == pytest.approx(5.0, abs=0.1)

    # The corrupt frame was skipped and counted; frame 0 and its cloud came before the first
    # pose (dropped); the other clouds went into the map
    wait_until(lambda: int((status(probe, "defect_detector") or {}).get("images", 0))
               >= FRAMES + resent, 5.0, "the detector's status after the drive")
    wait_until(lambda: sum(int((status(probe, "defect_mapper") or {}).get(key, 0))
                           for key in ("frames", "dropped_no_pose")) >= FRAMES + 1,
               5.0, "the mapper's status after the drive")
    detector_status = status(probe, "defect_detector")
    mapper_status = status(probe, "defect_mapper")
    assert detector_status is not None and mapper_status is not None
    assert detector_status["images"] == str(FRAMES + resent)
    assert detector_status["skipped"] == "1"
    assert float(detector_status["ms_per_image"]) > 0.0
    # frame 0 and the cloud after it (twice each if frame 0 was re-sent)
    assert int(mapper_status["dropped_no_pose"]) >= 2
    assert int(mapper_status["scans"]) > 0
    assert mapper_status["camera"] == "camera_info"

    # A laptop that joins late still gets every finding (transient local)
    late: list[String] = []
    node.create_subscription(String, "/defects/findings", late.append, FINDINGS_QOS)
    wait_until(lambda: len(late) == 1, DISCOVERY_TIMEOUT_S, "the finding for a late joiner")

    # Finish: the graded segment
    client = node.create_client(Trigger, "/defects/finish")
    assert client.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT_S)
    future = client.call_async(Trigger.Request())
    wait_until(future.done, 20.0, "the /defects/finish response")
    response = future.result()
    assert response is not None and response.success, response
    assert "F=" in response.message and "RI=" in response.message
    wait_until(lambda: probe.count("/defects/segment") > 0, 5.0, "the segment")
    segment = json.loads(probe.last("/defects/segment").data)
    evaluation = segment["evaluation"]
    assert {"S", "F", "S_M", "G", "RI", "MI"} <= set(evaluation)
    assert evaluation["length_m"] == pytest.approx(20.0)
    graded = [f for f in segment["findings"] if f["id"] == finding["id"]]
    assert len(graded) == 1
    assert graded[0]["grade"] >= 1 and "grade_basis" in graded[0] and "unverified" in graded[0]
    assert evaluation["F"] > 0.0  # a crack is a structural defect
    assert nodes.mapper.context.ok()


def test_detector_without_its_model_fails_at_startup(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """A missing model file: one line on stderr and exit status 1."""
    args = ["defect_detector", "--ros-args", "-p",
            "perception.detector:=onnx:/nonexistent/crawler_defects.onnx"]
    with pytest.raises(SystemExit) as exit_info:
        detector_node.main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["defect_detector: model file not found: /nonexistent/crawler_defects.onnx"]
    assert not rclpy.ok()
