"""Message <-> library conversions of the perception nodes, and the JSON schemas they publish.

Everything here is a plain function or value type, testable without a running ROS graph:
``sensor_msgs/Image`` -> BGR array, ``PointCloud2`` -> (N, 3) points, the rolling pose buffer
that interpolates ``T_map_base`` at a stamp, sensor mounts, and the JSON documents of
``/defects/detections``, ``/defects/findings`` and ``/defects/segment`` (docs/ros_interfaces.md).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crawler.json_text import to_json as to_json
from navigation.bag_io import cloud_from_msg
from navigation.pose_history import PoseHistory
from perception.detectors import Detection, ImageBGR
from perception.errors import ImageError
from perception.findings import Finding, PinholeCamera
from perception.grading.segment import KindScore, SegmentEvaluation
from perception.grading.tables import Level
from perception.mapper import GradedFinding, SegmentMap

FloatArray = NDArray[np.float64]

IMAGE_CHANNELS = {"bgr8": 3, "rgb8": 3, "mono8": 1}
"""Image encodings the detector node accepts, with their channel counts (8 bits each)."""


class MessageError(ValueError):
    """A message whose content cannot be converted (malformed JSON, inconsistent sizes)."""


# --- images ---------------------------------------------------------------------------------


def image_to_bgr(msg: Any) -> ImageBGR:
    """``sensor_msgs/Image`` (bgr8, rgb8 or mono8) as a contiguous (H, W, 3) uint8 BGR array.

    Raises ImageError for another encoding, an empty image, a ``step`` shorter than a row, or
    ``data`` whose length is not ``step * height``. Row padding (step > width * channels) is cut.
    """
    encoding = str(msg.encoding)
    channels = IMAGE_CHANNELS.get(encoding)
    if channels is None:
        known = ", ".join(IMAGE_CHANNELS)
        raise ImageError(f"unsupported encoding '{encoding}' (accepted: {known})")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"empty image: {width} x {height}")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageError(f"step {step} is shorter than a row of {width} {encoding} pixels "
                         f"({row_bytes} bytes)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageError(f"data is {data.size} bytes, step {step} x height {height} needs "
                         f"{step * height}")
    pixels = data.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))


# --- /defects/detections --------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionFrame:
    """One image's detections as ``/defects/detections`` carries them."""

    stamp_ns: int
    frame_id: str
    width: int
    height: int
    detections: tuple[Detection, ...]
    ms: float  # detector wall time for this image

    def to_json(self) -> str:
        """The JSON document (schema in docs/ros_interfaces.md); masks are not sent."""
        return json.dumps({
            "stamp_ns": self.stamp_ns, "frame_id": self.frame_id,
            "width": self.width, "height": self.height,
            "detections": [{"code": d.code,
                            "box_xyxy_px": [round(float(v), 2) for v in d.box_xyxy_px],
                            "confidence": round(float(d.confidence), 4)}
                           for d in self.detections],
            "ms": round(self.ms, 3),
        })

    @classmethod
    def from_json(cls, text: str) -> DetectionFrame:
        """Parse and check a document; MessageError names what is wrong."""
        try:
            doc = json.loads(text)
            detections = tuple(
                Detection(str(d["code"]), _box(d["box_xyxy_px"]), _finite(d["confidence"]))
                for d in doc["detections"])
            frame = cls(int(doc["stamp_ns"]), str(doc.get("frame_id", "")), int(doc["width"]),
                        int(doc["height"]), detections, float(doc.get("ms", 0.0)))
        except (ValueError, TypeError, KeyError) as err:
            raise MessageError(f"malformed detections document: {err!r}") from err
        if frame.width <= 0 or frame.height <= 0:
            raise MessageError(f"image size {frame.width} x {frame.height} is not positive")
        return frame


def _finite(value: Any) -> float:
    number = float(value)  # ValueError/TypeError: caught by the caller
    if not math.isfinite(number):
        raise ValueError(f"{value} is not finite")
    return number


def _box(values: Sequence[Any]) -> tuple[float, float, float, float]:
    if len(values) != 4:
        raise ValueError(f"box_xyxy_px needs 4 numbers, got {len(values)}")
    x0, y0, x1, y1 = (_finite(v) for v in values)
    return (x0, y0, x1, y1)


# --- point clouds, mounts, poses ------------------------------------------------------------


def cloud_points(msg: Any, max_points: int) -> FloatArray:
    """(N, 3) finite, non-zero points of a ``PointCloud2`` in its own frame, at most ``max_points``.

    Thinned by an even stride (the mapper voxelizes anyway). Raises navigation's
    ``ConversionError`` for a cloud without float x/y/z or with inconsistent sizes.
    """
    points = cloud_from_msg(msg, 0).points_m.astype(np.float64)
    if len(points) > max_points > 0:
        points = points[:: math.ceil(len(points) / max_points)]
    return points


def mount_transform(xyz_m: Sequence[float], rpy_rad: Sequence[float]) -> FloatArray:
    """T_base_sensor of a mount: translation and roll-pitch-yaw (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    roll, pitch, yaw = (float(v) for v in rpy_rad)
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                 [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                 [-sp, cp * sr, cp * cr]]
    T[:3, 3] = [float(v) for v in xyz_m]
    return T


class PoseBuffer:
    """The last ``span_ns`` of a stream of stamped poses, interpolated by navigation's
    ``PoseHistory`` (linear position, slerp rotation).
    """

    def __init__(self, span_ns: int) -> None:
        self.span_ns = span_ns
        self._stamps: list[int] = []
        self._poses: list[FloatArray] = []
        self._history: PoseHistory | None = None  # built on demand, dropped on every add

    def __len__(self) -> int:
        """Number of poses held."""
        return len(self._stamps)

    @property
    def oldest_ns(self) -> int | None:
        """Stamp of the oldest pose held (None: empty)."""
        return self._stamps[0] if self._stamps else None

    @property
    def newest_ns(self) -> int | None:
        """Stamp of the newest pose held (None: empty)."""
        return self._stamps[-1] if self._stamps else None

    def add(self, stamp_ns: int, T: FloatArray) -> None:
        """Insert a pose in stamp order (a repeated stamp replaces); forget the too old."""
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            self._poses[i] = T
        else:
            self._stamps.insert(i, stamp_ns)
            self._poses.insert(i, T)
        drop = bisect.bisect_left(self._stamps, self._stamps[-1] - self.span_ns)
        if drop:
            del self._stamps[:drop], self._poses[:drop]
        self._history = None

    def at(self, stamp_ns: int, max_extrapolation_ns: int = 0) -> FloatArray | None:
        """The pose at ``stamp_ns``, or None outside the buffer.

        Between two poses: interpolated. Up to ``max_extrapolation_ns`` past the newest pose:
        the newest pose. Older than the oldest pose: None (never extrapolated back).
        """
        if not self._stamps or stamp_ns < self._stamps[0]:
            return None
        if stamp_ns > self._stamps[-1] + max_extrapolation_ns:
            return None
        if self._history is None:
            self._history = PoseHistory(list(zip(self._stamps, self._poses, strict=True)),
                                        tolerance_ns=max_extrapolation_ns)
        self._history.tolerance_ns = max_extrapolation_ns
        return self._history.at(stamp_ns)


# --- camera ---------------------------------------------------------------------------------


def camera_from_info(width_px: int, height_px: int, k: Sequence[float]) -> PinholeCamera | None:
    """PinholeCamera of ``sensor_msgs/CameraInfo`` fields (None: uncalibrated, K all zero)."""
    focal_px = float(k[0]) if len(k) >= 1 else 0.0
    if width_px <= 0 or height_px <= 0 or not (math.isfinite(focal_px) and focal_px > 0.0):
        return None
    return PinholeCamera(int(width_px), int(height_px), focal_px)


def camera_for_image(info: PinholeCamera | None, width_px: int, height_px: int,
                     fallback_hfov_rad: float) -> PinholeCamera:
    """The camera model of an image of ``width_px`` x ``height_px``.

    From ``camera_info`` when there is one (its focal length scaled to the image's width, in
    case the detector saw a resized image); otherwise a pinhole with ``fallback_hfov_rad``.
    """
    if info is not None:
        return PinholeCamera(width_px, height_px, info.focal_px * width_px / info.width_px)
    return PinholeCamera(width_px, height_px, 0.5 * width_px / math.tan(0.5 * fallback_hfov_rad))


# --- /defects/findings and /defects/segment -------------------------------------------------


def finding_to_dict(finding: Finding, axis: str) -> dict[str, Any]:
    """The JSON object of one finding (``/defects/findings``, ``findings`` of the segment)."""
    return {
        "id": finding.id, "code": finding.code, "axis": axis,
        "start_m": finding.start_m, "end_m": finding.end_m, "clock_h": finding.clock_h,
        "position_m": [round(float(v), 3) for v in finding.position_m],
        "confidence": finding.confidence, "frames": finding.frames,
        "first_stamp_ns": finding.first_stamp_ns, "last_stamp_ns": finding.last_stamp_ns,
        "best_stamp_ns": finding.best_stamp_ns,
        "best_box_xyxy_px": [round(float(v), 1) for v in finding.best_box_xyxy_px],
        "continuous": finding.continuous, "source": finding.source,
        "measured": dict(finding.measured),
    }


def graded_to_dict(graded: GradedFinding, axis: str) -> dict[str, Any]:
    """A finding with its grade, score and how the grade was obtained."""
    return finding_to_dict(graded.finding, axis) | {
        "grade": graded.grade, "score": graded.score, "grade_basis": graded.grade_basis,
        "measured": dict(graded.measured), "unverified": list(graded.unverified),
    }


def _level(level: Level | None) -> dict[str, str] | None:
    if level is None:
        return None
    return {"label": level.label, "en": level.text_en, "zh": level.text_zh}


def _kind(score: KindScore) -> dict[str, Any]:
    return {"n": score.n, "n1": score.n1, "n2": score.n2, "grade": _level(score.grade),
            "density_type": _level(score.density_type)}


def evaluation_to_dict(evaluation: SegmentEvaluation) -> dict[str, Any]:
    """The segment figures of CJJ 181-2012 (S, Smax, F, S_M, Y, Ymax, G, Y_M, K, E, T, RI, MI)."""
    e = evaluation
    return {
        "standard": e.standard_id, "length_m": e.length_m,
        "S": e.S, "S_max": e.S_max, "F": e.F, "S_M": e.S_M,
        "Y": e.Y, "Y_max": e.Y_max, "G": e.G, "Y_M": e.Y_M,
        "K": e.K, "E": e.E, "T": e.T, "E_ri": e.E_ri, "T_ri": e.T_ri, "RI": e.RI, "MI": e.MI,
        "structural": _kind(e.structural), "functional": _kind(e.functional),
        "repair": _level(e.repair), "maintenance": _level(e.maintenance),
        "repair_scope": e.repair_scope.value,
        "not_scored": [r.code for r in e.not_scored],
        "unverified": list(e.unverified),
    }


def segment_to_dict(segment: SegmentMap, axis: str, dn_mm: float) -> dict[str, Any]:
    """The ``/defects/segment`` document: graded findings, lidar defects, evaluation."""
    return {
        "axis": axis, "dn_mm": dn_mm,
        "findings": [graded_to_dict(g, axis) for g in segment.findings],
        "lidar_defects": [{"code": d.code, "start_m": round(d.s_start_m, 3),
                           "end_m": round(d.s_end_m, 3), "clock_h": d.clock_h,
                           "measured": dict(d.measured)} for d in segment.lidar_defects],
        "ungraded": list(segment.ungraded),
        "evaluation": (None if segment.evaluation is None
                       else evaluation_to_dict(segment.evaluation)),
    }


def segment_summary(segment: SegmentMap, axis: str) -> str:
    """One line for the service response and the log."""
    e = segment.evaluation
    if e is None:
        return f"section {axis}: {len(segment.findings)} findings (no segment evaluation)"
    return (f"segment {axis} ({e.length_m:.1f} m): {len(segment.findings)} findings, "
            f"F={e.F:.2f} ({e.structural.grade.label}), G={e.G:.2f} "
            f"({e.functional.grade.label}), RI={e.RI:.2f} ({e.repair.text_en}), "
            f"MI={e.MI:.2f} ({e.maintenance.text_en})")


def marker_labels(findings: Iterable[Finding]) -> list[tuple[str, tuple[float, float, float]]]:
    """Text and site position of each finding's marker: 'F001 PL 12.3 m @12h'."""
    return [(f"{f.id} {f.code} {f.start_m:.1f} m @{f.clock_h:g}h", f.position_m)
            for f in findings]
