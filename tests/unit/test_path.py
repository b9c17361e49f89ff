"""Polyline arc length and projection; pure pursuit converges onto the path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from navigation.path import PathFollower, Polyline, pure_pursuit

L_PATH = Polyline([[0, 0, 0], [10, 0, 0], [10, 5, 0]])


def test_length_and_points() -> None:
    assert L_PATH.length_m == pytest.approx(15.0)
    np.testing.assert_allclose(L_PATH.point_at(12.0), [10, 2, 0])
    np.testing.assert_allclose(L_PATH.point_at(99.0), [10, 5, 0])
    assert L_PATH.heading_at(3.0) == pytest.approx(0.0)
    assert L_PATH.heading_at(11.0) == pytest.approx(math.pi / 2)


def test_projection_gives_distance_and_signed_offset() -> None:
    left = L_PATH.project([4.0, 0.7, 0.0])
    assert left.distance_m == pytest.approx(4.0) and left.offset_m == pytest.approx(0.7)
    right = L_PATH.project([4.0, -0.3, 0.0])
    assert right.offset_m == pytest.approx(-0.3)
    corner = L_PATH.project([10.5, 3.0, 0.0])
    assert corner.distance_m == pytest.approx(13.0) and corner.offset_m == pytest.approx(-0.5)


def test_degenerate_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        Polyline([[0, 0, 0]])
    with pytest.raises(ValueError, match="identical"):
        Polyline([[0, 0, 0], [0, 0, 0]])


def test_pure_pursuit_drives_onto_and_along_the_path() -> None:
    x, y, yaw, dt = 0.0, 1.0, 0.3, 0.05  # start off the path, heading away from it
    for _ in range(600):
        v, w = pure_pursuit(L_PATH, x, y, yaw, lookahead_m=1.0, speed_mps=0.5)
        x += v * math.cos(yaw) * dt
        y += v * math.sin(yaw) * dt
        yaw += w * dt
    end = L_PATH.project([x, y, 0.0])
    assert end.distance_m > 12.0  # it went round the corner
    assert abs(end.offset_m) < 0.1


def test_follower_goes_into_a_branch_and_back_out() -> None:
    # Main line, a dead-end branch driven in and out, then on along the main line.
    path = Polyline([[0, 0, 0], [10, 0, 0], [10, -5, 0], [10, 0, 0], [20, 0, 0]])
    follower = PathFollower(path, lookahead_m=0.8, speed_mps=0.5)
    x, y, yaw, dt = 0.0, 0.0, 0.0, 0.05
    reached_branch_end = False
    for _ in range(4000):
        v, w = follower.command(x, y, yaw)
        x += v * math.cos(yaw) * dt
        y += v * math.sin(yaw) * dt
        yaw += w * dt
        reached_branch_end |= y < -4.5
        if follower.progress_m >= path.length_m - 0.3:
            break
    assert reached_branch_end
    assert follower.progress_m >= path.length_m - 0.3  # it came back out and drove on
    assert x > 19.0 and abs(y) < 0.2
