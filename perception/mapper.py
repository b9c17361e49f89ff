"""The defect map of one pipe segment or tunnel section: camera findings, lidar measurements,
CJJ 181 grades.

``DefectMapper`` is what the ``defect_mapper`` node and the benchmarks drive:

1. camera frames' detections go through the ``FindingTracker`` (one finding per defect);
2. localized lidar scans accumulate in a ``PipeCloud``;
3. at the end, geometric classes are measured from the cloud (BX from the ring's ovality, CJ
   from the bed height, CK from the step between rings, TJ from the open joint, intrusions of
   roots / obstacles / laterals from the bore profile), joined to the camera findings of the
   same place, and every finding is graded from its measurement where there is one, or from
   its visible extent by the rules in ``VISUAL_GRADE_RULES`` (marked as heuristics);
4. the segment is evaluated by the standard's tables (S, F, S_M, RI, MI ...).

In a utility tunnel (a ``GalleryModel`` instead of a ``PipeModel``) there is no bore to
measure: step 2 keeps no cloud and every finding is graded by its visible extent. Standing
water (JS) is recorded as an observation without a CJJ 181 score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from perception.detectors.base import Detection
from perception.errors import GradingError
from perception.findings import (
    JOINT_CODES,
    Finding,
    FindingTracker,
    PinholeCamera,
    PipeModel,
    WallModel,
)
from perception.grading import (
    DefectRecord,
    SegmentEvaluation,
    SiteFactors,
    Standard,
    default_standard,
    evaluate_segment,
)
from perception.pipe_geometry import (
    INTRUSION,
    GeometricDefect,
    PipeCloud,
    PipeGeometryError,
    find_geometric_defects,
)

FloatArray = NDArray[np.float64]

# Lidar-found classes a camera finding of the same class and place takes its measurement from.
LIDAR_CODES = frozenset({"BX", "CK", "TJ", "CJ"})
# Camera classes whose size the lidar sees as something intruding into the bore.
INTRUDING_CODES = frozenset({"SG", "ZW", "AJ", "CQ", "CR"})
CAMERA_CONFIRMED_CODES = frozenset({INTRUSION, "TJ"})  # lidar alone does not report these
JOIN_GAP_M = 0.6  # a camera finding and a lidar defect this close along the pipe are one
DUPLICATE_GAP_M = 0.5  # camera findings of one class this close are one defect seen twice
# Defects of one joint (JOINT_CODES): two findings further apart than JOINT_DUPLICATE_GAP_M lie
# at two joints (pipe sections are 1-2.5 m long), and merging them would hide one
JOINT_DUPLICATE_GAP_M = 0.3
END_MARGIN_M = 0.5  # lidar-only findings this close to a manhole are its wall, not a defect
LIDAR_REACH_M = 1.0
"""Lidar-only findings count where the sensor passed within this distance: wall seen only
from afar (beyond where a mission turned back) is grazed, thin and smeared."""


@dataclass(frozen=True)
class VisualRule:
    """Grade by longitudinal extent: the grade of the first limit the length is under."""

    upper_lengths_m: tuple[float, ...]
    grades: tuple[int, ...]
    note: str


# Heuristics, not the standard: CJJ 181 grades these by appearance (crack width, aggregate
# showing, drip vs stream), which a detector box does not measure. Reported as such.
VISUAL_GRADE_RULES: dict[str, VisualRule] = {
    "PL": VisualRule((0.3,), (1, 2), "crack < 0.3 m long: 裂痕 (1); longer: 裂口 (2)"),
    "FS": VisualRule((0.5,), (1, 2), "corroded < 0.5 m: light (1); longer: aggregate (2)"),
    "SL": VisualRule((0.2,), (1, 2), "wet < 0.2 m: drip 滴漏 (1); longer: stream 线漏 (2)"),
    "JG": VisualRule((math.inf,), (1,), "scale too thin for the lidar: grade 1"),
    "TL": VisualRule((math.inf,), (1,), "sealing material visible: grade 1"),
    "FZ": VisualRule((math.inf,), (1,), "scum recorded, not scored"),
    "JS": VisualRule((math.inf,), (1,), "standing water (积水) recorded, not scored"),
    "SG": VisualRule((math.inf,), (1,), "no lidar size: grade 1"),
    "ZW": VisualRule((math.inf,), (1,), "no lidar size: grade 1"),
    "AJ": VisualRule((math.inf,), (1,), "no lidar size: grade 1"),
    "CQ": VisualRule((math.inf,), (1,), "no lidar size: grade 1"),
    "CR": VisualRule((math.inf,), (1,), "no lidar size: grade 1"),
    "QF": VisualRule((math.inf,), (1,), "no lidar size: grade 1"),
    # Geometric classes the lidar did not cover: the lowest grade, to be measured on site
    "CK": VisualRule((math.inf,), (1,), "no lidar measurement: grade 1, measure on site"),
    "TJ": VisualRule((math.inf,), (1,), "no lidar measurement: grade 1, measure on site"),
    "CJ": VisualRule((math.inf,), (1,), "no lidar measurement: grade 1, measure on site"),
    "BX": VisualRule((math.inf,), (1,), "no lidar measurement: grade 1, measure on site"),
}


@dataclass(frozen=True)
class GradedFinding:
    """A finding with its grade, score and how the grade was obtained."""

    finding: Finding
    grade: int
    score: float | None
    grade_basis: str  # "lidar: ovality_pct_of_d=9.9" or "extent heuristic: ..."
    measured: dict[str, float] = field(default_factory=dict)
    unverified: tuple[str, ...] = ()

    def record(self) -> DefectRecord:
        """The finding as the segment evaluation takes it."""
        return DefectRecord(self.finding.code, self.grade, self.finding.start_m,
                            self.finding.end_m)


@dataclass(frozen=True)
class SegmentMap:
    """Everything the mapper concluded about the segment."""

    findings: tuple[GradedFinding, ...]
    evaluation: SegmentEvaluation | None
    """The CJJ 181 segment evaluation; None for a tunnel section (the standard's segment
    indices are defined for drainage pipes)."""
    lidar_defects: tuple[GeometricDefect, ...]
    ungraded: tuple[str, ...]  # findings not graded or rejected by the lidar, with the reason


class DefectMapper:
    """Findings, lidar measurements and grades of one pipe segment or tunnel section (see
    module docstring)."""

    def __init__(self, surface: WallModel, camera: PinholeCamera, wall_thickness_m: float,
                 standard: Standard | None = None, tracker: FindingTracker | None = None,
                 voxel_m: float = 0.02) -> None:
        self.surface = surface
        self.pipe = surface if isinstance(surface, PipeModel) else None
        """The pipe the lidar measures; None in a tunnel (camera findings only)."""
        self.wall_thickness_m = wall_thickness_m
        self.standard = standard or default_standard()
        self.tracker = tracker or FindingTracker(surface, camera)
        self.cloud = (None if self.pipe is None else PipeCloud.from_site_axis(
            self.pipe.axis, 2.0 * self.pipe.radius_m, voxel_m=voxel_m))
        self.camera_findings: list[Finding] = []
        self._sensor_span_m: tuple[float, float] | None = None
        """Chainages between which the lidar passed (None: no sensor positions given)."""

    def add_frame(self, stamp_ns: int, detections: list[Detection],
                  T_map_camera: FloatArray, camera: PinholeCamera | None = None
                  ) -> list[Finding]:
        """One camera frame's detections (``camera``: a zoomed frame's intrinsics); returns
        the camera findings it confirmed."""
        confirmed = self.tracker.update(stamp_ns, detections, T_map_camera, camera)
        self.camera_findings.extend(confirmed)
        return confirmed

    def add_scan(self, points_map_m: FloatArray, sensor_map_m: FloatArray | None = None) -> None:
        """One localized lidar scan (points already in the map/site frame); ignored in a
        tunnel, where nothing is measured from the lidar."""
        if self.cloud is not None:
            self.cloud.add_scan(points_map_m, sensor_map_m)
        if self.pipe is not None and sensor_map_m is not None:
            s_m, _ = self.pipe.axis.chainage_and_direction(np.asarray(sensor_map_m, float))
            span = self._sensor_span_m or (s_m, s_m)
            self._sensor_span_m = (min(span[0], s_m), max(span[1], s_m))

    def finish(self, factors: SiteFactors | None, segment_length_m: float) -> SegmentMap:
        """Close all tracks, measure, join, grade and evaluate the segment (``factors``
        None: no segment evaluation, as for a tunnel section)."""
        self.camera_findings.extend(self.tracker.flush())
        lidar = self._lidar_defects()
        camera = merge_duplicates(self.camera_findings, DUPLICATE_GAP_M)
        findings, ungraded = self._join_and_grade(camera, lidar, segment_length_m)
        # The segment runs from 0 to its length; findings in the manholes are not scored
        records = [_clipped(f.record(), segment_length_m) for f in findings
                   if f.score is not None]
        evaluation = None if factors is None else evaluate_segment(
            [r for r in records if r is not None], segment_length_m, factors, self.standard)
        return SegmentMap(tuple(findings), evaluation, tuple(lidar), tuple(ungraded))

    # --- steps -------------------------------------------------------------------------------

    def _lidar_defects(self) -> list[GeometricDefect]:
        if self.cloud is None or self.pipe is None or len(self.cloud) == 0:
            return []
        try:
            return find_geometric_defects(self.cloud, 2.0 * self.pipe.radius_m,
                                          self.wall_thickness_m)
        except PipeGeometryError:
            return []

    def _join_and_grade(self, camera: Sequence[Finding], lidar: Sequence[GeometricDefect],
                        length_m: float) -> tuple[list[GradedFinding], list[str]]:
        graded: list[GradedFinding] = []
        ungraded: list[str] = []
        camera = sorted(camera, key=lambda f: f.start_m)
        matches = self._pairs(camera, lidar)
        used = set(matches.values())
        for number, finding in enumerate(camera):
            match = matches.get(number)
            measured: dict[str, float] = {}
            if (match is None and finding.code in LIDAR_CODES and self.cloud is not None
                    and self._lidar_saw(self.cloud, finding)):
                # The lidar measures these; where it saw the wall and found nothing, the camera
                # saw a sound joint or a shadow
                ungraded.append(f"{finding.id} {finding.code} at {finding.start_m:.2f} m: "
                                "rejected, the lidar measured no such defect there")
                continue
            if match is not None:
                defect = lidar[match]
                measured = dict(defect.measured)
                if finding.code in LIDAR_CODES:  # the lidar places ring defects best
                    finding = replace(finding, start_m=round(defect.s_start_m, 3),
                                      end_m=round(defect.s_end_m, 3), source="camera+lidar")
                else:
                    finding = replace(finding, source="camera+lidar")
            self._grade_into(finding, measured, graded, ungraded)
        # Lidar-only ring defects (BX never shows in the camera; others the camera missed).
        # An open joint (TJ) needs the camera too: pose errors and deposits also open the
        # ring's outline where the lidar looks through it.
        for index, defect in enumerate(lidar):
            if (index in used or defect.code in CAMERA_CONFIRMED_CODES
                    or not self._inside(defect, length_m) or not self._passed(defect)):
                continue
            assert self.pipe is not None  # only a pipe has lidar defects
            finding = _lidar_finding(defect, self.pipe, len(graded) + 1)
            self._grade_into(finding, dict(defect.measured), graded, ungraded)
        graded.sort(key=lambda g: g.finding.start_m)
        return graded, ungraded

    @staticmethod
    def _lidar_saw(cloud: PipeCloud, finding: Finding, min_points: int = 200) -> bool:
        """Whether the cloud holds enough wall around the finding to have measured it."""
        return len(cloud.points(finding.start_m - 0.3, finding.end_m + 0.3)) >= min_points

    def _passed(self, defect: GeometricDefect) -> bool:
        """Whether the lidar passed near the defect (a mission may turn back early)."""
        span = self._sensor_span_m
        return span is None or (defect.s_end_m >= span[0] - LIDAR_REACH_M
                                and defect.s_start_m <= span[1] + LIDAR_REACH_M)

    @staticmethod
    def _inside(defect: GeometricDefect, segment_length_m: float) -> bool:
        """Clear of the segment's ends, where the pipe meets a manhole (not a joint)."""
        return defect.s_start_m > END_MARGIN_M and defect.s_end_m < segment_length_m - END_MARGIN_M

    @staticmethod
    def _pairs(camera: Sequence[Finding], lidar: Sequence[GeometricDefect]) -> dict[int, int]:
        """Camera finding -> lidar defect of the same kind within ``JOIN_GAP_M``, closest pairs
        first (a finding near two joints must not take the other finding's joint)."""
        candidates = []
        for i, finding in enumerate(camera):
            for j, defect in enumerate(lidar):
                same = defect.code == finding.code or (
                    defect.code == INTRUSION and finding.code in INTRUDING_CODES)
                gap = max(defect.s_start_m - finding.end_m, finding.start_m - defect.s_end_m,
                          0.0)
                if same and gap <= JOIN_GAP_M:
                    # Ties (overlaps): the nearer middle
                    middle = abs((defect.s_start_m + defect.s_end_m) / 2.0
                                 - (finding.start_m + finding.end_m) / 2.0)
                    candidates.append((gap, middle, i, j))
        pairs: dict[int, int] = {}
        for _, _, i, j in sorted(candidates):
            if i not in pairs and j not in pairs.values():
                pairs[i] = j
        return pairs

    def _grade_into(self, finding: Finding, measured: dict[str, float],
                    graded: list[GradedFinding], ungraded: list[str]) -> None:
        if self.pipe is not None:
            measured = _with_area_loss(finding.code, measured, self.pipe.radius_m)
        try:
            result = self.standard.grade_from_measurement(finding.code, measured)
        except GradingError as err:
            rule = VISUAL_GRADE_RULES.get(finding.code)
            if rule is None:
                ungraded.append(f"{finding.id} {finding.code}: {err}")
                return
            grade = _visual_grade(rule, finding.length_m)
            try:
                score = self.standard.score(finding.code, grade)
            except GradingError:
                score = None
            graded.append(GradedFinding(
                replace(finding, measured=measured), grade, score,
                f"extent heuristic: {rule.note}", measured,
                (f"visual grade rule {finding.code} [heuristic]",)))
            return
        basis = f"{finding.source}: {result.quantity}={result.value:.3g}"
        graded.append(GradedFinding(replace(finding, measured=measured), result.grade,
                                    result.score, basis, measured, result.unverified))


def merge_duplicates(findings: Sequence[Finding], gap_m: float) -> list[Finding]:
    """One finding per defect: a track that lost and regained a defect made two findings of
    one class whose extents overlap or nearly touch (joint defects: closer); keep the one seen
    in more frames, spanning both (clock positions are not compared: the two views placed the
    same defect)."""
    merged: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.code, f.start_m)):
        last = merged[-1] if merged else None
        allowed_m = min(gap_m, JOINT_DUPLICATE_GAP_M) if finding.code in JOINT_CODES else gap_m
        if (last is None or last.code != finding.code
                or finding.start_m - last.end_m > allowed_m):
            merged.append(finding)
            continue
        keep = last if last.frames >= finding.frames else finding
        merged[-1] = replace(keep, start_m=min(last.start_m, finding.start_m),
                             end_m=max(last.end_m, finding.end_m),
                             frames=last.frames + finding.frames,
                             first_stamp_ns=min(last.first_stamp_ns, finding.first_stamp_ns),
                             last_stamp_ns=max(last.last_stamp_ns, finding.last_stamp_ns))
    return sorted(merged, key=lambda f: f.start_m)


def _clipped(record: DefectRecord, length_m: float) -> DefectRecord | None:
    start, end = max(record.start_m, 0.0), min(record.end_m, length_m)
    if start > length_m or end < 0.0:
        return None
    return replace(record, start_m=min(start, end), end_m=max(start, end))


def _visual_grade(rule: VisualRule, length_m: float) -> int:
    for limit, grade in zip(rule.upper_lengths_m, rule.grades, strict=False):
        if length_m < limit:
            return grade
    return rule.grades[-1]


def _with_area_loss(code: str, measured: dict[str, float], radius_m: float
                    ) -> dict[str, float]:
    """Bore area lost to an intrusion: as the lidar measured it, else (a depth only) the
    circular segment that depth cuts off."""
    if (code not in ("SG", "ZW", "CQ", "JG") or "intrusion_m" not in measured
            or "area_loss_pct" in measured):
        return measured
    h = min(max(measured["intrusion_m"], 0.0), 2.0 * radius_m)
    d = radius_m - h
    segment = radius_m**2 * math.acos(d / radius_m) - d * math.sqrt(max(radius_m**2 - d * d, 0.0))
    return measured | {"area_loss_pct": 100.0 * segment / (math.pi * radius_m**2)}


def _lidar_finding(defect: GeometricDefect, pipe: PipeModel, number: int) -> Finding:
    middle = 0.5 * (defect.s_start_m + defect.s_end_m)
    point = pipe.axis.point_at(middle) + np.array([0.0, 0.0, pipe.radius_m])
    return Finding(
        id=f"L{number:03d}", code=defect.code, start_m=round(defect.s_start_m, 3),
        end_m=round(defect.s_end_m, 3), clock_h=round(defect.clock_h or 12.0, 1),
        position_m=(float(point[0]), float(point[1]), float(point[2])), confidence=1.0,
        frames=0, first_stamp_ns=0, last_stamp_ns=0, best_stamp_ns=0,
        best_box_xyxy_px=(0.0, 0.0, 0.0, 0.0), continuous=defect.code == "CJ", source="lidar",
        measured=dict(defect.measured))
