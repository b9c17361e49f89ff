"""Placing detections on the pipe wall and tracking them into findings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from navigation.site import Axis
from perception.detectors.base import Detection
from perception.findings import FindingTracker, GalleryModel, PinholeCamera, PipeModel

RADIUS_M = 0.5
CAMERA = PinholeCamera(640, 480, 380.0)
# A straight DN1000 along +x: the axis is the invert line at z = 0, chainage = x.
PIPE = PipeModel(Axis("A-B", ((0.0, 0.0, 0.0), (100.0, 0.0, 0.0))), RADIUS_M)


def camera_at(x_m: float, z_m: float = 0.5) -> np.ndarray:
    """Camera on the pipe's centre line at chainage x, looking down the pipe."""
    T = np.eye(4)
    T[:3, 3] = (x_m, 0.0, z_m)
    return T


def project(point_m: np.ndarray, T_map_camera: np.ndarray) -> tuple[float, float]:
    """Pixel of a map point (the simulator's pinhole convention: x forward, y left, z up)."""
    p = np.linalg.inv(T_map_camera) @ np.append(point_m, 1.0)
    x, y, z = p[:3]
    return (0.5 * CAMERA.width_px - CAMERA.focal_px * y / x,
            0.5 * CAMERA.height_px - CAMERA.focal_px * z / x)


def wall_point(x_m: float, clock_h: float) -> np.ndarray:
    phi = clock_h / 12.0 * 2.0 * math.pi
    return np.array([x_m, -RADIUS_M * math.sin(phi), RADIUS_M + RADIUS_M * math.cos(phi)])


def patch_box(x0_m: float, x1_m: float, clock_h: float, arc_h: float,
              T_map_camera: np.ndarray) -> tuple[float, float, float, float]:
    """Image box of a wall patch (distance range x clock arc) seen from the camera."""
    pixels = [project(wall_point(x, c), T_map_camera)
              for x in np.linspace(x0_m, x1_m, 5)
              for c in np.linspace(clock_h - arc_h / 2, clock_h + arc_h / 2, 5)]
    us, vs = zip(*pixels, strict=True)
    return (min(us), min(vs), max(us), max(vs))


@pytest.mark.parametrize(("direction", "distance_m", "clock_h"), [
    ((0.0, 0.0, 1.0), 0.0, 12.0),  # straight up: the crown above
    ((1.0, 0.0, 1.0), 0.5, 12.0),  # up and ahead at 45 degrees
    ((0.0, -1.0, 0.0), 0.0, 3.0),  # to the right, looking down the pipe
    ((0.0, 1.0, 0.0), 0.0, 9.0),
    ((0.0, 0.0, -1.0), 0.0, 6.0),
])
def test_wall_hit_distance_and_clock(direction: tuple[float, float, float], distance_m: float,
                                     clock_h: float) -> None:
    d = np.array(direction) / np.linalg.norm(direction)
    hit = PIPE.wall_hit(np.array([0.0, 0.0, 0.5]), d)
    assert hit is not None
    assert hit.distance_m == pytest.approx(distance_m, abs=1e-9)
    assert hit.clock_h == pytest.approx(clock_h, abs=1e-6)
    centre = np.array([hit.point_m[0], 0.0, RADIUS_M])
    assert np.linalg.norm(hit.point_m - centre) == pytest.approx(RADIUS_M)


def test_ray_along_the_bore_misses_the_wall() -> None:
    assert PIPE.wall_hit(np.array([0.0, 0.0, 0.5]), np.array([1.0, 0.0, 0.0])) is None


def drive_past(tracker: FindingTracker, patches: list[tuple[str, float, float, float, float]],
               x_from_m: float, x_to_m: float, frames: int) -> list:
    """Camera frames at even steps; each patch detected while it is ahead and in view."""
    findings = []
    for i, x in enumerate(np.linspace(x_from_m, x_to_m, frames)):
        T = camera_at(float(x))
        detections = []
        for code, x0, x1, clock, arc in patches:
            if x0 - x < 0.6 or x0 - x > 6.0:
                continue
            box = patch_box(x0, x1, clock, arc, T)
            if box[0] < 0 or box[1] < 0 or box[2] > CAMERA.width_px or box[3] > CAMERA.height_px:
                continue
            detections.append(Detection(code, box, 0.8))
        findings += tracker.update(i * 100_000_000, detections, T)
    return findings + tracker.flush()


def test_a_defect_seen_in_30_frames_is_one_finding_in_the_right_place() -> None:
    tracker = FindingTracker(PIPE, CAMERA)
    findings = drive_past(tracker, [("PL", 10.0, 11.2, 12.0, 1.0)], 4.0, 9.4, 30)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.code == "PL"
    assert finding.frames >= 20
    assert finding.start_m == pytest.approx(10.0, abs=0.1)
    assert finding.end_m == pytest.approx(11.2, abs=0.3)
    assert min(abs(finding.clock_h - 12.0), finding.clock_h) < 0.3


def test_two_defects_make_two_findings_and_the_camera_passing_closes_them() -> None:
    tracker = FindingTracker(PIPE, CAMERA)
    patches = [("PL", 10.0, 10.5, 2.0, 1.0), ("FS", 10.2, 12.0, 10.0, 2.0)]
    closed_early = []
    for i, x in enumerate(np.linspace(4.0, 13.0, 60)):
        T = camera_at(float(x))
        detections = [Detection(code, patch_box(x0, x1, c, a, T), 0.9)
                      for code, x0, x1, c, a in patches if 0.6 < x0 - x < 6.0]
        closed_early += tracker.update(i * 10**8, detections, T)
    assert sorted(f.code for f in closed_early) == ["FS", "PL"]  # closed as the camera passed
    assert tracker.flush() == []
    fs = next(f for f in closed_early if f.code == "FS")
    assert fs.continuous and fs.start_m == pytest.approx(10.2, abs=0.15)
    assert fs.clock_h == pytest.approx(10.0, abs=0.5)


def test_a_fluke_in_two_frames_is_not_a_finding() -> None:
    tracker = FindingTracker(PIPE, CAMERA, min_frames=3)
    assert drive_past(tracker, [("SL", 10.0, 10.3, 3.0, 1.0)], 7.0, 7.1, 2) == []


def test_low_confidence_tracks_are_dropped() -> None:
    tracker = FindingTracker(PIPE, CAMERA, min_confidence=0.5)
    T = camera_at(6.0)
    box = patch_box(8.0, 8.5, 12.0, 1.0, T)
    for i in range(10):
        tracker.update(i, [Detection("PL", box, 0.3)], T)
    assert tracker.flush() == []


def test_a_defect_weak_from_afar_and_strong_close_up_is_confirmed_a_stain_is_not() -> None:
    tracker = FindingTracker(PIPE, CAMERA)  # min_confidence 0.6 of the better half of views
    findings = []
    for i, x in enumerate(np.linspace(4.0, 9.4, 30)):
        T = camera_at(float(x))
        detections = []
        near = 10.0 - x < 3.0  # the crack: 0.3 from afar (20 views), 0.75 close up (10)
        detections.append(Detection("PL", patch_box(10.0, 10.6, 12.0, 1.0, T),
                                    0.75 if near else 0.3))
        detections.append(Detection("SL", patch_box(10.0, 10.4, 3.0, 1.0, T), 0.45))  # a stain
        findings += tracker.update(i * 100_000_000, detections, T)
    findings += tracker.flush()
    assert [f.code for f in findings] == ["PL"]  # the mean of all its views is below 0.6
    assert findings[0].confidence > 0.6


def ring_box(x_ring_m: float, T_map_camera: np.ndarray, inset_px: float = 4.0
             ) -> tuple[float, float, float, float]:
    """A joint's box as the detector draws it: the ring's outline, kept a few pixels inside
    the image when the ring is wider than the view."""
    rim = [project(wall_point(x_ring_m, c), T_map_camera) for c in np.linspace(0.0, 12.0, 49)]
    us, vs = zip(*rim, strict=True)
    return (max(min(us), inset_px), max(min(vs), inset_px),
            min(max(us), CAMERA.width_px - inset_px), min(max(vs), CAMERA.height_px - inset_px))


def test_a_joint_is_placed_from_whole_views_of_its_ring_and_has_no_length() -> None:
    # An open joint (TJ) at 20 m seen from 6 m away up to 0.3 m before it: close up the ring
    # fills the view, its box stops 4 px inside the border and its rays land past the joint
    tracker = FindingTracker(PIPE, CAMERA)
    findings = []
    for i, x in enumerate(np.arange(14.0, 19.7, 0.07)):
        T = camera_at(float(x))
        findings += tracker.update(i * 10**8, [Detection("TJ", ring_box(20.0, T), 0.9)], T)
    findings += tracker.flush()
    assert len(findings) == 1
    joint = findings[0]
    assert joint.start_m == pytest.approx(20.0, abs=0.1)
    assert joint.end_m == joint.start_m  # a ring, not a stretch of pipe


def test_in_a_pipe_a_defect_seen_only_from_afar_is_no_finding() -> None:
    # The camera stops 4 m before the roots: 20 confident far views, none from close up
    far = drive_past(FindingTracker(PIPE, CAMERA), [("SG", 20.0, 20.6, 12.0, 2.0)],
                     10.0, 16.0, 30)
    assert far == []
    near = drive_past(FindingTracker(PIPE, CAMERA), [("SG", 20.0, 20.6, 12.0, 2.0)],
                      10.0, 19.0, 45)
    assert [f.code for f in near] == ["SG"]
    # A gallery's ceiling is seen only from afar: no such rule there
    assert FindingTracker(GalleryModel(PIPE.axis, 3.2, 3.5), CAMERA).confirm_within_m == math.inf
