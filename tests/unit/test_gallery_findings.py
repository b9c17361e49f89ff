"""Findings in a utility tunnel: detections placed on the gallery's walls, floor and ceiling."""

from __future__ import annotations

import numpy as np
import pytest

from navigation.site import Axis
from perception.detectors.base import Detection
from perception.findings import FindingTracker, GalleryModel, PinholeCamera
from perception.mapper import DefectMapper
from tests.unit.test_findings import CAMERA, project

WIDTH_M, HEIGHT_M = 3.2, 3.5
# A straight gallery along +x: the axis is the floor centreline at z = 0, chainage = x.
GALLERY = GalleryModel(Axis("main", ((0.0, 0.0, 0.0), (200.0, 0.0, 0.0))), WIDTH_M, HEIGHT_M)
CAMERA_HEIGHT_M = 0.2


def camera_at(x_m: float, y_m: float = 0.0) -> np.ndarray:
    """The crawler's camera low over the floor, looking along the gallery."""
    T = np.eye(4)
    T[:3, 3] = (x_m, y_m, CAMERA_HEIGHT_M)
    return T


@pytest.mark.parametrize(("direction", "point", "clock_h"), [
    # Clock about the section's middle (1.75 m up): a low right-wall point reads 4.5 h
    ((0.0, -1.0, 0.0), (10.0, -1.6, 0.2), 4.47),  # right wall, low
    ((0.0, 1.0, 0.0), (10.0, 1.6, 0.2), 7.53),  # left wall
    ((0.0, 0.0, 1.0), (10.0, 0.0, 3.5), 12.0),  # ceiling straight above
    ((1.0, 0.0, -0.2), (11.0, 0.0, 0.0), 6.0),  # floor ahead
    ((1.0, -1.0, 1.0), (11.6, -1.6, 1.8), None),  # right wall up ahead
])
def test_rays_meet_the_nearest_surface(direction: tuple[float, float, float],
                                       point: tuple[float, float, float],
                                       clock_h: float | None) -> None:
    d = np.array(direction) / np.linalg.norm(direction)
    hit = GALLERY.wall_hit(np.array([10.0, 0.0, CAMERA_HEIGHT_M]), d)
    assert hit is not None
    assert hit.point_m == pytest.approx(np.array(point), abs=1e-9)
    assert hit.distance_m == pytest.approx(point[0], abs=1e-9)
    if clock_h is not None:
        assert hit.clock_h == pytest.approx(clock_h, abs=0.01)


def test_right_wall_points_read_between_noon_and_six() -> None:
    high = GALLERY.wall_hit(np.array([0.0, 0.0, 3.0]), np.array([0.0, -1.0, 0.0]))
    low = GALLERY.wall_hit(np.array([0.0, 0.0, 0.5]), np.array([0.0, -1.0, 0.0]))
    assert high is not None and low is not None
    assert 1.0 < high.clock_h < 3.0 < low.clock_h < 5.0


def test_a_ray_along_the_gallery_meets_nothing() -> None:
    origin = np.array([10.0, 0.0, CAMERA_HEIGHT_M])
    assert GALLERY.wall_hit(origin, np.array([1.0, 0.0, 0.0])) is None
    assert GALLERY.wall_hit(origin, np.array([1.0, 0.0, 0.01])) is None  # beyond 50 m


def wall_patch_box(x0_m: float, x1_m: float, z0_m: float, z1_m: float, T: np.ndarray
                   ) -> tuple[float, float, float, float]:
    """Image box of a patch on the right wall (chainage range x height range)."""
    corners = [project(np.array([x, -0.5 * WIDTH_M, z]), T)
               for x in (x0_m, x1_m) for z in (z0_m, z1_m)]
    us, vs = zip(*corners, strict=True)
    return (min(us), min(vs), max(us), max(vs))


def test_a_crack_high_on_the_right_wall_becomes_one_finding_where_it_is() -> None:
    tracker = FindingTracker(GALLERY, CAMERA)
    crack = (62.85, 63.15, 1.1, 2.5)  # CR1 of the simulated tunnel: 0.3 m wide, 1.4 m tall
    findings = []
    for i, x in enumerate(np.arange(53.0, 66.0, 0.1)):
        T = camera_at(float(x))
        box = wall_patch_box(*crack, T)
        in_view = (crack[0] - x > 1.0 and box[0] >= 0 and box[1] >= 0
                   and box[2] <= CAMERA.width_px and box[3] <= CAMERA.height_px)
        detections = [Detection("PL", box, 0.8)] if in_view else []
        findings += tracker.update(i * 100_000_000, detections, T)
    findings += tracker.flush()
    assert len(findings) == 1
    finding = findings[0]
    assert finding.code == "PL"
    assert finding.start_m == pytest.approx(62.85, abs=0.15)
    assert finding.position_m[1] == pytest.approx(-0.5 * WIDTH_M, abs=1e-6)  # on the wall
    assert 2.0 < finding.clock_h < 4.0  # the right wall


def test_the_gallery_mapper_grades_by_extent_and_records_standing_water_unscored() -> None:
    mapper = DefectMapper(GALLERY, CAMERA, wall_thickness_m=0.3)
    mapper.add_scan(np.zeros((10, 3)), np.zeros(3))  # nothing is measured from the lidar
    for i, x in enumerate(np.arange(110.0, 119.0, 0.1)):
        T = camera_at(float(x))
        water = [project(np.array([px, py, 0.0]), T) for px in (120.0, 123.0)
                 for py in (-1.6, -0.4)]
        us, vs = zip(*water, strict=True)
        box = (max(min(us), 0.0), min(vs), min(max(us), 640.0), max(vs))
        mapper.add_frame(i * 10**8, [Detection("JS", box, 0.9)], T)
    segment = mapper.finish(None, 150.0)
    assert segment.evaluation is None
    (graded,) = segment.findings
    assert graded.finding.code == "JS"
    assert graded.score is None
    assert graded.finding.start_m == pytest.approx(120.0, abs=0.3)


def test_a_view_cut_by_the_border_only_beyond_its_near_end_still_places_the_start() -> None:
    """A pool beside the right wall (W1 of the simulated tunnel), zoomed in on from 1.9 m
    before it, runs out of the view towards the wall: its box touches the right border, but
    that side lands well beyond the pool's near edge (the box's bottom), so the view still
    places the start. A crack on the right wall cut by the border of the wide view is cut at
    its near end: that view does not."""
    tracker = FindingTracker(GALLERY, CAMERA)
    zoom = PinholeCamera(640, 480, 1200.0)  # about 30 degrees across
    T_zoomed = camera_at(118.1)
    yaw, pitch = -0.3, 0.06  # panned right, towards the pool
    T_zoomed[:3, :3] = (np.array([[np.cos(yaw), -np.sin(yaw), 0.0],
                                  [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
                        @ np.array([[np.cos(pitch), 0.0, np.sin(pitch)], [0.0, 1.0, 0.0],
                                    [-np.sin(pitch), 0.0, np.cos(pitch)]]))

    def box_of(corners_m: list[np.ndarray], T: np.ndarray, camera: PinholeCamera
               ) -> tuple[float, float, float, float]:
        x, y, z = (T[:3, :3].T @ (np.array(corners_m) - T[:3, 3]).T)  # in the camera frame
        us = 0.5 * camera.width_px - camera.focal_px * y / x
        vs = 0.5 * camera.height_px - camera.focal_px * z / x
        return (max(float(us.min()), 0.0), max(float(vs.min()), 0.0),
                min(float(us.max()), 640.0), min(float(vs.max()), 480.0))

    pool = box_of([np.array([x, y, 0.0]) for x in (120.0, 123.0) for y in (-1.6, -0.4)],
                  T_zoomed, zoom)
    seen = tracker.place(0, Detection("JS", pool, 0.7), T_zoomed, 118.1, zoom)
    assert seen is not None and pool[0] > 0.0 and pool[2] == 640.0  # cut on the right only
    assert not seen.clipped and seen.start_m == pytest.approx(120.0, abs=0.1)
    T_wide = camera_at(118.1)
    crack = box_of([np.array([x, -0.5 * WIDTH_M, z]) for x in (119.0, 120.0)
                    for z in (0.3, 1.0)], T_wide, CAMERA)
    seen = tracker.place(0, Detection("PL", crack, 0.7), T_wide, 118.1)
    assert seen is not None and crack[2] == 640.0 and seen.clipped
