"""The direction of a gallery's walls in a scan: the crawler's absolute heading."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from navigation.geodesy import GeodeticOrigin
from navigation.localization import LocalizationPipeline
from navigation.records import LidarOdometryResult
from navigation.site import Axis, Site, SiteType
from navigation.tunnel_features import wall_direction, wall_heading, wrap_half_turn, yaw_of

FloatArray = NDArray[np.float64]


def _rotation(roll: float, pitch: float, yaw: float) -> FloatArray:
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch),
                              math.cos(yaw), math.sin(yaw))
    Rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    Ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    Rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    R: FloatArray = Rz @ Ry @ Rx
    return R


def _gallery_points(rng: np.random.Generator, axis_yaw: float = 0.0) -> FloatArray:
    """Site points of a 3.2 m x 3.5 m gallery along ``axis_yaw`` through the origin: side
    walls, floor, ceiling, cable trays along the left wall, cross posts every 3 m."""
    n = 6000
    along = rng.uniform(-25.0, 25.0, (7, n))
    parts = [
        np.column_stack([along[0], np.full(n, -1.6), rng.uniform(0.0, 3.5, n)]),  # right wall
        np.column_stack([along[1], np.full(n, 1.6), rng.uniform(0.0, 3.5, n)]),  # left wall
        np.column_stack([along[2], rng.uniform(-1.6, 1.6, n), np.zeros(n)]),  # floor
        np.column_stack([along[3], rng.uniform(-1.6, 1.6, n), np.full(n, 3.5)]),  # ceiling
        np.column_stack([along[4], np.full(n, 1.15), rng.choice([1.45, 2.05, 2.65], n)]),  # trays
    ]
    posts = 3.0 * rng.integers(-8, 9, n // 4) + 1.5
    parts.append(np.column_stack([posts, rng.uniform(1.15, 1.6, n // 4),
                                  rng.uniform(0.0, 2.9, n // 4)]))
    points = np.vstack(parts)
    points += rng.normal(0.0, 0.01, points.shape)  # range noise
    c, s = math.cos(axis_yaw), math.sin(axis_yaw)
    points[:, :2] = points[:, :2] @ np.array([[c, -s], [s, c]]).T
    return points


def _in_base(points_site: FloatArray, R_site_base: FloatArray, position: FloatArray
             ) -> FloatArray:
    result: FloatArray = (points_site - position) @ R_site_base  # R^T (p - t), row-wise
    return result


@pytest.mark.parametrize("true_yaw_deg, estimate_error_deg, axis_yaw_deg", [
    (0.0, 0.0, 0.0), (3.0, -20.0, 0.0), (-7.0, 30.0, 0.0),  # along the gallery, any error
    (178.0, 15.0, 0.0),  # driving back: the walls alone cannot tell, the estimate does
    (-92.0, -25.0, -90.0), (120.0, 8.0, 30.0),  # other axes (a branch gallery)
])
def test_wall_heading_recovers_the_heading_from_a_wrong_estimate(
        true_yaw_deg: float, estimate_error_deg: float, axis_yaw_deg: float) -> None:
    rng = np.random.default_rng(3)
    axis_yaw = math.radians(axis_yaw_deg)
    points = _gallery_points(rng, axis_yaw)
    R_true = _rotation(0.02, -0.03, math.radians(true_yaw_deg))  # tilted crawler
    position = np.array([0.3 * math.cos(axis_yaw), 0.3 * math.sin(axis_yaw), 0.0])
    scan = _in_base(points, R_true, position + np.array([0.0, 0.0, 0.02]))
    R_estimate = _rotation(0.02, -0.03, math.radians(true_yaw_deg + estimate_error_deg))
    heading = wall_heading(scan, R_estimate, axis_yaw)
    assert heading is not None
    error = math.degrees(math.remainder(heading.yaw_rad - math.radians(true_yaw_deg), math.tau))
    assert abs(error) < 0.1
    assert math.radians(0.4) < heading.sigma_rad < math.radians(1.0)  # floored, not the fit's
    assert heading.inlier_fraction > 0.3


def test_no_heading_without_long_parallel_walls() -> None:
    rng = np.random.default_rng(4)
    clutter = rng.uniform([-10.0, -10.0, 0.0], [10.0, 10.0, 3.0], (20000, 3))
    assert wall_direction(clutter, np.eye(3), 0.0) is None  # an open hall full of clutter
    assert wall_direction(clutter[:50], np.eye(3), 0.0) is None  # too few points
    # Only a short stub of wall (a doorway's jamb): not enough extent to trust a direction
    stub = np.column_stack([rng.uniform(0.5, 1.5, 5000), np.full(5000, 1.0),
                            rng.uniform(0.3, 2.0, 5000)])
    assert wall_direction(stub, np.eye(3), 0.0) is None


def test_a_tilted_scan_is_levelled_before_projecting() -> None:
    # Pitched 10 degrees and rolled 8 (a ramp, a kerb): the wall lines stay lines once
    # levelled; without levelling the wall direction comes out biased.
    rng = np.random.default_rng(5)
    points = _gallery_points(rng)
    R_true = _rotation(math.radians(8.0), math.radians(10.0), math.radians(25.0))
    scan = _in_base(points, R_true, np.array([0.0, 0.0, 0.02]))
    heading = wall_heading(scan, R_true, 0.0)
    assert heading is not None
    assert abs(math.degrees(heading.yaw_rad) - 25.0) < 0.1
    found = wall_direction(scan, np.eye(3), math.radians(-25.0))
    assert found is None or abs(math.degrees(found[0]) + 25.0) > 0.3


def test_angle_helpers() -> None:
    assert wrap_half_turn(math.radians(100.0)) == pytest.approx(math.radians(-80.0))
    assert wrap_half_turn(math.radians(-90.0)) == pytest.approx(math.radians(-90.0))
    assert yaw_of(_rotation(0.1, -0.2, 2.5)) == pytest.approx(2.5)


def test_the_pipeline_takes_no_wall_heading_at_a_junction() -> None:
    # A T junction: the branch's axis starts on the main gallery's centreline. There both
    # galleries' walls are in view, 90 degrees apart: an estimate lagging a turn would take
    # the wrong family (in the simulated tunnel: a heading 90 degrees off, then divergence).
    site = Site("T", SiteType.TUNNEL, GeodeticOrigin(22.5, 114.0, 2.0, 90.0),
                (Axis("main", ((0.0, 0.0, 0.0), (100.0, 0.0, 0.0))),
                 Axis("branch", ((50.0, 0.0, 0.0), (50.0, -1.6, 0.0), (50.0, -30.0, 0.0)))))
    rng = np.random.default_rng(6)
    scan = _in_base(_gallery_points(rng), np.eye(3), np.zeros(3))  # main gallery's walls
    still = LidarOdometryResult(0, np.eye(4), np.eye(4), np.eye(6), np.zeros((0, 6)), 0.9)
    counts = []
    for x in (50.5, 60.0):  # at the junction, 10 m past it
        pipeline = LocalizationPipeline(site, np.eye(4))
        start = np.eye(4)
        start[0, 3] = x
        pipeline.initialize(start, 0)
        pipeline._observe_walls(0, 0, still, scan)
        counts.append(pipeline.wall_headings)
    assert counts == [0, 1]

