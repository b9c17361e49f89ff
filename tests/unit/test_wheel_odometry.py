"""Wheel odometry: kinematics, counter wrap, covariance growth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from navigation.wheel_odometry import WheelOdometry, ticks_delta

TICKS_PER_M = 1000.0
TRACK_M = 0.5


def _drive(odom: WheelOdometry, left_m: float, right_m: float, steps: int = 100,
           start_ticks: tuple[int, int] = (0, 0)) -> None:
    odom.update(0, *start_ticks)
    for i in range(1, steps + 1):
        left = start_ticks[0] + round(left_m * TICKS_PER_M * i / steps)
        right = start_ticks[1] + round(right_m * TICKS_PER_M * i / steps)
        odom.update(i * 10_000_000, left, right)


def test_straight_line_moves_along_x() -> None:
    odom = WheelOdometry(TICKS_PER_M, TRACK_M)
    _drive(odom, 2.0, 2.0)
    state = odom.state(0)
    assert state.x_m == pytest.approx(2.0)
    assert state.y_m == pytest.approx(0.0)
    assert state.yaw_rad == pytest.approx(0.0)
    assert state.distance_m == pytest.approx(2.0)
    assert state.linear_mps == pytest.approx(0.02 / 0.01)


def test_quarter_circle_ends_on_the_arc() -> None:
    radius_m = 1.0
    arc = math.pi / 2
    odom = WheelOdometry(TICKS_PER_M, TRACK_M)
    _drive(odom, (radius_m - TRACK_M / 2) * arc, (radius_m + TRACK_M / 2) * arc, steps=400)
    state = odom.state(0)
    assert state.yaw_rad == pytest.approx(arc, abs=2e-3)
    assert state.x_m == pytest.approx(radius_m, abs=5e-3)
    assert state.y_m == pytest.approx(radius_m, abs=5e-3)


def test_turn_in_place_does_not_translate() -> None:
    odom = WheelOdometry(TICKS_PER_M, TRACK_M)
    _drive(odom, -0.25, 0.25)
    state = odom.state(0)
    assert state.yaw_rad == pytest.approx(1.0, abs=1e-3)
    assert math.hypot(state.x_m, state.y_m) < 1e-9


def test_counter_wrap_is_a_small_step() -> None:
    assert ticks_delta(-(2**31) + 5, 2**31 - 5) == 10
    assert ticks_delta(2**31 - 5, -(2**31) + 5) == -10
    odom = WheelOdometry(TICKS_PER_M, TRACK_M)
    _drive(odom, 1.0, 1.0, start_ticks=(2**31 - 300, 2**31 - 300))
    assert odom.state(0).x_m == pytest.approx(1.0)


def test_covariance_grows_with_distance_and_stays_symmetric() -> None:
    odom = WheelOdometry(TICKS_PER_M, TRACK_M, var_m2_per_m=1e-3, var_rad2_per_m=1e-3)
    _drive(odom, 1.0, 1.0)
    cov_1m = odom.state(0).covariance_xyyaw
    _drive(odom, 1.0, 1.0, start_ticks=(1000, 1000))
    cov_2m = odom.state(0).covariance_xyyaw
    np.testing.assert_allclose(cov_2m, cov_2m.T)
    assert np.all(np.linalg.eigvalsh(cov_2m) >= -1e-15)
    assert cov_2m[0, 0] == pytest.approx(2 * cov_1m[0, 0], rel=1e-6)  # along-track: linear
    assert cov_2m[1, 1] > 4 * cov_1m[1, 1]  # cross-track: heading error grows it faster
    assert cov_2m[2, 2] == pytest.approx(2e-3, rel=1e-6)


def test_reset_reference_ignores_a_rebooted_counter() -> None:
    odom = WheelOdometry(TICKS_PER_M, TRACK_M)
    _drive(odom, 1.0, 1.0)
    odom.reset_reference()
    odom.update(2_000_000_000, 0, 0)  # the MCU restarted its counters at zero
    odom.update(2_010_000_000, 500, 500)
    assert odom.state(0).x_m == pytest.approx(1.5)
