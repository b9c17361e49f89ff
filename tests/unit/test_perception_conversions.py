"""The perception nodes' edge conversions: images, clouds, poses, mounts and JSON documents."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sensor_msgs.msg import Image, PointCloud2, PointField

from crawler.config import CrawlerConfig, MountsConfig
from crawler_navigation.common import lidar_mount
from crawler_perception.conversions import (
    DetectionFrame,
    MessageError,
    PoseBuffer,
    camera_for_image,
    camera_from_info,
    cloud_points,
    image_to_bgr,
    mount_transform,
    segment_summary,
    segment_to_dict,
    to_json,
)
from navigation.bag_io import ConversionError
from navigation.site import Axis
from perception.detectors import Detection
from perception.errors import ImageError
from perception.findings import PinholeCamera, PipeModel
from perception.grading import SiteFactors
from perception.mapper import DefectMapper

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)


def image(encoding: str, pixels: np.ndarray, pad: int = 0) -> Image:
    """An Image message of ``pixels`` (H, W, C) with ``pad`` bytes of row padding."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=padded.shape[1],
                 data=padded.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
def test_bgr8_image_comes_through_unchanged(pad: int) -> None:
    """bgr8 is the detector's own layout; row padding is cut."""
    out = image_to_bgr_checked(image("bgr8", BGR, pad))
    np.testing.assert_array_equal(out, BGR)


def test_rgb8_image_is_swapped_to_bgr() -> None:
    """rgb8 channels are reversed."""
    out = image_to_bgr_checked(image("rgb8", BGR[:, :, ::-1].copy()))
    np.testing.assert_array_equal(out, BGR)


def test_mono8_image_is_repeated_into_three_channels() -> None:
    """mono8 becomes a grey BGR image."""
    grey = BGR[:, :, :1].copy()
    out = image_to_bgr_checked(image("mono8", grey, pad=1))
    np.testing.assert_array_equal(out, np.repeat(grey, 3, axis=2))


def image_to_bgr_checked(msg: Image) -> np.ndarray:
    """Convert and check the detector's contract: contiguous (H, W, 3) uint8."""
    out = image_to_bgr(msg)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.flags["C_CONTIGUOUS"]
    return out


@pytest.mark.parametrize(("change", "match"), [
    ({"encoding": "32FC1"}, "unsupported encoding '32FC1'"),
    ({"encoding": "bgra8"}, "unsupported encoding"),
    ({"data": bytes(59)}, "data is 59 bytes, step 15 x height 4 needs 60"),
    ({"step": 14, "data": bytes(56)}, "step 14 is shorter than a row"),
    ({"height": 0, "data": b""}, "empty image"),
])
def test_corrupt_images_raise_image_error(change: dict[str, object], match: str) -> None:
    """Unknown encodings and inconsistent sizes are rejected with the reason."""
    msg = image("bgr8", BGR)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=match):
        image_to_bgr(msg)


def cloud(points: np.ndarray) -> PointCloud2:
    """Unorganised float32 x, y, z, t cloud as the simulator publishes it."""
    msg = PointCloud2(height=1, width=len(points), is_bigendian=False, point_step=16,
                      row_step=16 * len(points), is_dense=False)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate("xyzt")]
    packed = np.zeros((len(points), 4), np.float32)
    packed[:, :3] = points
    msg.data = packed.tobytes()
    return msg


def test_cloud_points_drops_invalid_points_and_thins() -> None:
    """NaN and no-return (0, 0, 0) points go; a long cloud is thinned by stride."""
    points = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 0.25]])
    out = cloud_points(cloud(points), max_points=100)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]])
    many = RNG.uniform(1.0, 2.0, size=(1000, 3))
    thinned = cloud_points(cloud(many), max_points=300)
    assert 200 <= len(thinned) <= 300
    np.testing.assert_allclose(thinned[1], many[4], rtol=1e-6)  # stride 4


def test_cloud_without_xyz_raises() -> None:
    """A cloud without float x/y/z fields is a conversion error."""
    msg = cloud(np.ones((2, 3)))
    msg.fields = msg.fields[1:]
    with pytest.raises(ConversionError, match="no field x"):
        cloud_points(msg, 100)


def yawed(x: float, yaw: float) -> np.ndarray:
    """Pose at (x, 0, 0) turned ``yaw`` about z."""
    T = np.eye(4)
    T[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    T[0, 3] = x
    return T


def found(pose: np.ndarray | None) -> np.ndarray:
    """The pose, which must be there."""
    assert pose is not None
    return pose


def test_pose_buffer_interpolates_within_and_refuses_outside() -> None:
    """Between poses: interpolated; before the oldest: None; after the newest: only if allowed."""
    history = PoseBuffer(span_ns=2_000)
    history.add(2_000, yawed(2.0, 0.2))
    history.add(1_000, yawed(1.0, 0.0))  # out of order: sorted in
    np.testing.assert_allclose(found(history.at(1_500)), yawed(1.5, 0.1), atol=1e-12)
    np.testing.assert_allclose(found(history.at(1_000)), yawed(1.0, 0.0))
    assert history.at(999) is None
    assert history.at(2_100) is None
    np.testing.assert_allclose(found(history.at(2_100, max_extrapolation_ns=200)),
                               yawed(2.0, 0.2))
    history.add(4_000, yawed(4.0, 0.0))  # 1_000 is now older than the 2 us span
    assert len(history) == 2 and history.oldest_ns == 2_000 and history.newest_ns == 4_000
    assert history.at(1_900, max_extrapolation_ns=200) is None  # never back in time
    np.testing.assert_allclose(found(history.at(3_000)), yawed(3.0, 0.1), atol=1e-12)
    # across +-pi the shorter way round
    history.add(5_000, yawed(0.0, 3.0))
    history.add(6_000, yawed(0.0, -3.0))
    T = found(history.at(5_500))
    assert abs(math.atan2(T[1, 0], T[0, 0])) == pytest.approx(math.pi, abs=1e-9)


def test_mount_transform_matches_the_navigation_lidar_mount() -> None:
    """Same convention as crawler_navigation's lidar mount (R = Rz Ry Rx)."""
    mounts = MountsConfig(lidar_xyz_m=(0.1, -0.2, 0.3), lidar_rpy_rad=(0.1, -0.2, 0.7))
    np.testing.assert_allclose(mount_transform(mounts.lidar_xyz_m, mounts.lidar_rpy_rad),
                               lidar_mount(CrawlerConfig(mounts=mounts)), atol=1e-15)


def test_detection_frame_round_trips_through_json() -> None:
    """The /defects/detections document keeps every field (masks are not sent)."""
    frame = DetectionFrame(123, "camera_link", 640, 480,
                           (Detection("PL", (1.0, 2.5, 30.0, 40.25), 0.875),), 12.5)
    doc = json.loads(frame.to_json())
    assert set(doc) == {"stamp_ns", "frame_id", "width", "height", "detections", "ms"}
    assert doc["detections"] == [{"code": "PL", "box_xyxy_px": [1.0, 2.5, 30.0, 40.25],
                                  "confidence": 0.875}]
    assert DetectionFrame.from_json(frame.to_json()) == frame


@pytest.mark.parametrize("text", [
    "not json",
    '{"stamp_ns": 1, "width": 2, "height": 2}',
    '{"stamp_ns": 1, "width": 2, "height": 2, "detections": [{"code": "PL", '
    '"box_xyxy_px": [0, 0, 1], "confidence": 0.5}]}',
    '{"stamp_ns": 1, "width": 2, "height": 2, "detections": [{"code": "PL", '
    '"box_xyxy_px": [0, 0, 1, 1], "confidence": NaN}]}',
    '{"stamp_ns": 1, "width": 0, "height": 2, "detections": []}',
])
def test_malformed_detection_documents_raise(text: str) -> None:
    """Missing keys, short boxes, NaN and empty images are MessageErrors."""
    with pytest.raises(MessageError):
        DetectionFrame.from_json(text)


def test_camera_from_info_and_the_fallback() -> None:
    """camera_info's fx, scaled to the image; without it a 60 deg pinhole."""
    info = camera_from_info(640, 480, [500.0, 0, 320, 0, 500, 240, 0, 0, 1])
    assert info == PinholeCamera(640, 480, 500.0)
    assert camera_from_info(640, 480, [0.0] * 9) is None
    assert camera_for_image(info, 320, 240, 1.0) == PinholeCamera(320, 240, 250.0)
    fallback = camera_for_image(None, 200, 100, math.radians(90.0))
    assert fallback.focal_px == pytest.approx(100.0)


def test_to_json_writes_non_finite_numbers_as_null() -> None:
    """NaN is not JSON: it becomes null; numpy scalars become numbers."""
    assert json.loads(to_json({"a": math.nan, "b": [np.float32(1.5), math.inf], "c": 2})) == {
        "a": None, "b": [1.5, None], "c": 2}


def test_segment_document_of_an_empty_segment() -> None:
    """A segment without findings still evaluates: F, RI and the labels are there."""
    axis = Axis("pipe", ((0.0, 0.0, 0.0), (30.0, 0.0, 0.0)))
    pipe = PipeModel(axis, 0.5)
    mapper = DefectMapper(pipe, PinholeCamera(64, 48, 50.0), 0.1)
    segment = mapper.finish(SiteFactors(dn_mm=1000.0), axis.length_m)
    doc = json.loads(to_json(segment_to_dict(segment, "pipe", 1000.0)))
    assert doc["findings"] == [] and doc["axis"] == "pipe"
    assert doc["evaluation"]["F"] == 0.0 and doc["evaluation"]["RI"] >= 0.0
    assert doc["evaluation"]["length_m"] == 30.0
    assert "F=0.00" in segment_summary(segment, "pipe")
