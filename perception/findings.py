"""From per-frame detections to findings: one per physical defect, placed on the wall.

Each detection is placed by casting rays from the localized camera through points of its box
(the centre and the midpoints of the four edges) onto a wall model: in a pipe, a cylinder of
the pipe's radius around the site axis (the invert line raised by the radius); in a utility
tunnel, the gallery's rectangular section (walls, ceiling and floor) around its floor
centreline. The nearest and farthest
of those wall points give the observation's start and end distance along the pipe, the centre
its clock position. Observations of the same class that overlap along the pipe and lie within
a few clock hours join one track; a track becomes a finding when it was seen in enough frames,
and is closed once the camera has driven past it. Single-frame flukes never become findings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from navigation.site import Axis
from perception.detectors.base import Detection

FloatArray = NDArray[np.float64]

# CJJ 181 continuous (longitudinal) defects: reported with a start and an end.
CONTINUOUS_CODES = frozenset({"FS", "CJ", "JG"})
# Ring defects at a pipe joint: the box spans the whole ring; the ring's distance is the median.
JOINT_CODES = frozenset({"CK", "TJ"})
JOINT_MARGIN_FRAC = 0.015
"""A joint's box this close to the border (fraction of the image's longer side) is cut."""
CONFIRM_WITHIN_RADII = 5.0
"""In a pipe a finding needs a view from at most this many radii before its start."""


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole camera looking along its frame's +x (y left, z up), as the simulator's."""

    width_px: int
    height_px: int
    focal_px: float

    def ray(self, u_px: float, v_px: float) -> FloatArray:
        """Unit direction in the camera frame through pixel (u, v)."""
        d = np.array([self.focal_px, 0.5 * self.width_px - u_px, 0.5 * self.height_px - v_px])
        unit: FloatArray = d / np.linalg.norm(d)
        return unit



@dataclass(frozen=True)
class WallPoint:
    """A point of the wall: distance along the axis, clock position, site coordinates."""

    distance_m: float
    clock_h: float
    point_m: FloatArray


class WallModel(Protocol):
    """Where camera rays meet the inspected surface, measured along a site axis."""

    @property
    def axis(self) -> Axis:
        """The site axis distances are measured along."""
        ...

    def wall_hit(self, origin_m: FloatArray, direction: FloatArray) -> WallPoint | None:
        """Where a ray from inside meets the surface (None: it leaves along the bore)."""
        ...


def _clock_hours(lateral_left_m: float, up_m: float) -> float:
    """Clock position of a section point (12 at the crown, 3 on the right looking along)."""
    hours = (math.atan2(-lateral_left_m, up_m) / (2.0 * math.pi) * 12.0) % 12.0
    return 12.0 if hours < 1e-6 else hours


def _section_frame(along: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Left and up unit vectors of the cross-section normal to ``along``."""
    left = np.cross(np.array([0.0, 0.0, 1.0]), along)
    left /= np.linalg.norm(left)
    return left, np.cross(along, left)


@dataclass(frozen=True)
class PipeModel:
    """A round pipe: the site axis (its invert line) and the inner radius."""

    axis: Axis
    radius_m: float

    def wall_hit(self, origin_m: FloatArray, direction: FloatArray) -> WallPoint | None:
        """Where a ray from inside the pipe meets the wall (None: it leaves along the bore)."""
        # Local straight pipe: the axis segment nearest the ray's origin, raised to the centre
        chainage, along = self.axis.chainage_and_direction(origin_m)
        centre = self.axis.point_at(chainage) + np.array([0.0, 0.0, self.radius_m])
        # |(o + t d - c) minus its component along the pipe| = R, solved for t > 0
        rel = origin_m - centre
        d_perp = direction - (direction @ along) * along
        r_perp = rel - (rel @ along) * along
        a = float(d_perp @ d_perp)
        b = 2.0 * float(d_perp @ r_perp)
        c = float(r_perp @ r_perp) - self.radius_m**2
        if a < 1e-9:
            return None
        disc = b * b - 4.0 * a * c
        if disc < 0.0:
            return None
        t = (-b + math.sqrt(disc)) / (2.0 * a)
        if t <= 0.0 or t > 50.0:
            return None
        point = origin_m + t * direction
        distance_m, _ = self.axis.chainage_and_direction(point)
        return WallPoint(distance_m, self.clock_of(point, distance_m), point)

    def clock_of(self, point_m: FloatArray, distance_m: float) -> float:
        """Clock position (hours, 12 at the crown, 3 on the right looking down the axis)."""
        _, along = self.axis.chainage_and_direction(point_m)
        centre = self.axis.point_at(distance_m) + np.array([0.0, 0.0, self.radius_m])
        rel = point_m - centre
        # Cross-section axes: left of the direction, and up (rings.clock_point's y and z)
        left, up = _section_frame(along)
        return _clock_hours(float(rel @ left), float(rel @ up))


@dataclass(frozen=True)
class GalleryModel:
    """A utility-tunnel gallery: its floor centreline (a site axis) and a rectangular section.

    Rays meet the nearest of the two walls (``width_m`` apart), the floor and the ceiling
    (``height_m`` up); clock positions are taken about the middle of the section, so 3 o'clock
    is the right wall half way up and 6 the floor's centre line.
    """

    axis: Axis
    width_m: float
    height_m: float
    max_range_m: float = 50.0

    def wall_hit(self, origin_m: FloatArray, direction: FloatArray) -> WallPoint | None:
        """Where a ray from inside the gallery meets a wall, the floor or the ceiling."""
        chainage, along = self.axis.chainage_and_direction(origin_m)
        left, up = _section_frame(along)
        rel = origin_m - self.axis.point_at(chainage)
        # Distance to each of the four planes along the ray; the nearest in front wins
        y0, z0 = float(rel @ left), float(rel @ up)
        dy, dz = float(direction @ left), float(direction @ up)
        half = 0.5 * self.width_m
        candidates = []
        if abs(dy) > 1e-9:
            candidates += [(half - y0) / dy, (-half - y0) / dy]
        if abs(dz) > 1e-9:
            candidates += [(0.0 - z0) / dz, (self.height_m - z0) / dz]
        ahead = [t for t in candidates if t > 1e-6]
        if not ahead:
            return None
        t = min(ahead)
        if t > self.max_range_m:
            return None
        point = origin_m + t * direction
        distance_m, _ = self.axis.chainage_and_direction(point)
        y, z = y0 + t * dy, z0 + t * dz
        return WallPoint(distance_m, _clock_hours(y, z - 0.5 * self.height_m), point)


@dataclass(frozen=True)
class Observation:
    """One detection placed on the pipe."""

    stamp_ns: int
    code: str
    confidence: float
    start_m: float
    end_m: float
    centre_m: float
    clock_h: float
    point_m: FloatArray
    box_xyxy_px: tuple[float, float, float, float]
    camera_distance_m: float  # camera chainage when seen
    clipped: bool = False  # the near end may be out of view (``FindingTracker._clipped``)


@dataclass(frozen=True)
class Finding:
    """A confirmed defect: class, where it is along the pipe and around it, best view."""

    id: str
    code: str
    start_m: float
    end_m: float
    clock_h: float
    position_m: tuple[float, float, float]
    confidence: float
    frames: int
    first_stamp_ns: int
    last_stamp_ns: int
    best_stamp_ns: int
    best_box_xyxy_px: tuple[float, float, float, float]
    continuous: bool
    source: str = "camera"  # camera, lidar, or camera+lidar
    measured: dict[str, float] = field(default_factory=dict)

    @property
    def length_m(self) -> float:
        """Longitudinal extent along the pipe."""
        return self.end_m - self.start_m


def _clock_gap_h(a: float, b: float) -> float:
    gap = abs(a - b) % 12.0
    return min(gap, 12.0 - gap)


@dataclass
class _Track:
    code: str
    observations: list[Observation]


    def clock_h(self) -> float:
        angles = np.array([o.clock_h for o in self.observations]) / 12.0 * 2.0 * math.pi
        weights = np.array([o.confidence for o in self.observations])
        mean = math.atan2(float(weights @ np.sin(angles)), float(weights @ np.cos(angles)))
        hours = (mean / (2.0 * math.pi) * 12.0) % 12.0
        return 12.0 if hours < 1e-6 else hours


class FindingTracker:
    """Joins placed detections into findings as the crawler drives along one site axis.

    ``min_frames`` observations confirm a track if the better half of them has a mean
    confidence of at least ``min_confidence`` (a defect is seen weakly from afar and strongly
    close up: the mean of all views punishes a long approach; a stain stays weak throughout);
    it is reported once the camera is ``close_after_m`` past its end, or at ``flush()``. The
    start is the median of the starts of the ``near_views`` observations nearest to it, among
    the views of its near end (starts within ``gate_m`` of the 25th percentile: a view of a
    long defect's far part alone starts later); the end, the median of the ends seen from
    within ``far_view_m`` (rays to a far end graze the wall), or the farthest near edge seen
    if that reaches farther.

    In a pipe a track is confirmed only if the camera came within ``confirm_within_m`` of its
    start (default: 5 radii, 2.5 m in a DN1000). The wall stays in view until about a metre
    before a defect, and views from farther meet the wall at a grazing angle: a pitch error
    of 1.5 degrees on a deposit's ramp put a crown hit 6 m ahead 2 m short, and such views
    alone made a second, misplaced track of a defect tracked well from up close. In a gallery
    the ceiling is seen only from afar: there the default sets no limit.
    """

    def __init__(self, surface: WallModel, camera: PinholeCamera, *, min_frames: int = 3,
                 min_confidence: float = 0.6, gate_m: float = 0.5, clock_gate_h: float = 2.5,
                 close_after_m: float = 0.5, near_views: int = 5, far_view_m: float = 3.0,
                 confirm_within_m: float | None = None, id_prefix: str = "F") -> None:
        self.surface = surface
        self.camera = camera
        self.min_frames = min_frames
        self.min_confidence = min_confidence
        self.gate_m = gate_m
        self.clock_gate_h = clock_gate_h
        self.close_after_m = close_after_m
        self.near_views = near_views
        self.far_view_m = far_view_m
        self.confirm_within_m = confirm_within_m if confirm_within_m is not None else (
            CONFIRM_WITHIN_RADII * surface.radius_m if isinstance(surface, PipeModel)
            else math.inf)
        self._prefix = id_prefix
        self._tracks: list[_Track] = []
        self._count = 0
        self.unplaced = 0  # detections whose rays missed the wall model

    def update(self, stamp_ns: int, detections: list[Detection], T_map_camera: FloatArray,
               camera: PinholeCamera | None = None) -> list[Finding]:
        """Add one frame's detections (taken with ``camera``, default the tracker's: a zoomed
        frame has its own); return the findings that closed with it."""
        camera_m, _ = self.surface.axis.chainage_and_direction(T_map_camera[:3, 3])
        for detection in detections:
            observation = self.place(stamp_ns, detection, T_map_camera, camera_m, camera)
            if observation is None:
                self.unplaced += 1
                continue
            self._associate(observation)
        return self._close(
            lambda track: camera_m > self._extent(track)[1] + self.close_after_m)

    def flush(self) -> list[Finding]:
        """Close every open track (end of the mission)."""
        return self._close(lambda track: True)

    def place(self, stamp_ns: int, detection: Detection, T_map_camera: FloatArray,
              camera_m: float, camera: PinholeCamera | None = None) -> Observation | None:
        """A detection placed on the wall, or None when its rays miss the wall model."""
        camera = camera or self.camera
        x0, y0, x1, y1 = detection.box_xyxy_px
        xm, ym = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        pixels = [(xm, ym), (xm, y0), (xm, y1), (x0, ym), (x1, ym)]
        R, origin = T_map_camera[:3, :3], T_map_camera[:3, 3]
        hits = [self.surface.wall_hit(origin, R @ camera.ray(u, v)) for u, v in pixels]
        placed = [h for h in hits if h is not None]
        # A joint ring's box is centred on the bore (its centre ray runs down the pipe)
        anchor = hits[0] if hits[0] is not None else (
            placed[0] if placed and detection.code in JOINT_CODES else None)
        if anchor is None:
            return None
        distances = [h.distance_m for h in placed]
        if detection.code in JOINT_CODES:
            middle = float(np.median(distances))
            start_m = end_m = middle
        else:
            start_m, end_m = min(distances), max(distances)
        side_m = [h.distance_m if h is not None else None for h in hits[1:]]
        return Observation(stamp_ns, detection.code, detection.confidence, start_m, end_m,
                           anchor.distance_m, anchor.clock_h, anchor.point_m,
                           detection.box_xyxy_px, camera_m,
                           self._clipped(detection, camera, start_m, side_m))

    # --- internals ---------------------------------------------------------------------------

    def _clipped(self, detection: Detection, camera: PinholeCamera, start_m: float,
                 side_m: list[float | None]) -> bool:
        """Whether the defect's near end may lie outside the view: the box touches the image
        border on a side (top, bottom, left, right; ``side_m`` where each side's middle lands)
        that reaches within ``gate_m`` of the box's start. A side that runs away from the
        camera hides only the far part: a pool on the floor beside the wall, zoomed in on,
        fills the view towards the wall, 0.8 m beyond its near edge at the bottom."""
        x0, y0, x1, y1 = detection.box_xyxy_px
        # A ring seen up close fills the view: boxes stop a few pixels short of the border
        # (y 3-5 px of 480) and their rays land up to 0.7 m past the joint
        margin_px = (JOINT_MARGIN_FRAC * max(camera.width_px, camera.height_px)
                     if detection.code in JOINT_CODES else 2.0)
        touching = (y0 <= margin_px, y1 >= camera.height_px - margin_px, x0 <= margin_px,
                    x1 >= camera.width_px - margin_px)
        if detection.code in JOINT_CODES:
            return any(touching)
        return any(touches and (at_m is None or at_m - start_m <= self.gate_m)
                   for touches, at_m in zip(touching, side_m, strict=True))

    def _associate(self, observation: Observation) -> None:
        best: _Track | None = None
        best_gap = math.inf
        for track in self._tracks:
            if track.code != observation.code:
                continue
            start_m, end_m = self._extent(track)
            gap = max(start_m - observation.end_m, observation.start_m - end_m, 0.0)
            if gap > self.gate_m:
                continue
            if (observation.code not in JOINT_CODES
                    and _clock_gap_h(track.clock_h(), observation.clock_h) > self.clock_gate_h):
                continue
            if gap < best_gap:
                best, best_gap = track, gap
        if best is None:
            self._tracks.append(_Track(observation.code, [observation]))
        else:
            best.observations.append(observation)

    def _close(self, done: object) -> list[Finding]:
        assert callable(done)
        closed = [t for t in self._tracks if done(t)]
        self._tracks = [t for t in self._tracks if not done(t)]
        findings = []
        for track in closed:
            finding = self._finding(track)
            if finding is not None:
                findings.append(finding)
        return findings

    def _extent(self, track: _Track) -> tuple[float, float]:
        """Nearest start and robust far end of a track so far (for gating and closing)."""
        start_m = min(o.start_m for o in track.observations)
        return start_m, max(self._far_end(track.observations), start_m)

    def _far_end(self, observations: list[Observation]) -> float:
        return _far_end_of(observations, self.far_view_m)

    def _finding(self, track: _Track) -> Finding | None:
        observations = track.observations
        confidences = sorted(o.confidence for o in observations)
        confidence = float(np.mean(confidences[len(confidences) // 2:]))
        if len(observations) < self.min_frames or confidence < self.min_confidence:
            return None
        if min(o.start_m - o.camera_distance_m for o in observations) > self.confirm_within_m:
            return None  # seen from afar only
        # Nearest whole views of the near end place it best (a box cut by the image border is
        # not whole; a box around a long defect's far part alone starts late)
        whole = [o for o in observations if not o.clipped] or observations
        first_m = float(np.percentile([o.start_m for o in whole], 25.0))
        near_end = [o for o in whole if o.start_m <= first_m + self.gate_m]
        near = sorted(near_end, key=lambda o: abs(o.start_m - o.camera_distance_m))
        near = near[: self.near_views]
        start_m = float(np.median([o.start_m for o in near]))
        # A joint is a ring: no length (its views' spread is not its extent)
        end_m = start_m if track.code in JOINT_CODES else max(self._far_end(observations),
                                                               start_m)
        best = max(observations, key=lambda o: o.confidence * math.sqrt(_area(o.box_xyxy_px)))
        position = np.median(np.array([o.point_m for o in near]), axis=0)
        self._count += 1
        return Finding(
            id=f"{self._prefix}{self._count:03d}", code=track.code, start_m=round(start_m, 3),
            end_m=round(end_m, 3), clock_h=round(track.clock_h(), 1),
            position_m=(float(position[0]), float(position[1]), float(position[2])),
            confidence=round(confidence, 3), frames=len(observations),
            first_stamp_ns=min(o.stamp_ns for o in observations),
            last_stamp_ns=max(o.stamp_ns for o in observations),
            best_stamp_ns=best.stamp_ns, best_box_xyxy_px=best.box_xyxy_px,
            continuous=track.code in CONTINUOUS_CODES,
        )


def _far_end_of(observations: list[Observation], close_m: float) -> float:
    """Far end of a track: rays to a far end graze the wall, so only views from within
    ``close_m`` of it count; and the defect reaches at least as far as any near edge seen."""
    nearest_edge = max(o.start_m for o in observations)
    close = [o.end_m for o in observations if o.end_m - o.camera_distance_m < close_m]
    return max(nearest_edge, float(np.median(close))) if close else nearest_edge


def _area(box: tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
