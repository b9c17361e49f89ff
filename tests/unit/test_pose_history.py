"""Pose interpolation between time-stamped poses."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from navigation.pose_history import PoseHistory


def pose(x_m: float, yaw_deg: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    T[:3, 3] = (x_m, 0.0, 0.0)
    return T


def test_interpolates_position_linearly_and_rotation_by_slerp() -> None:
    history = PoseHistory([(0, pose(0.0, 0.0)), (1_000, pose(2.0, 90.0))])
    T = history.at(250)
    assert T is not None
    assert T[0, 3] == pytest.approx(0.5)
    yaw = Rotation.from_matrix(T[:3, :3]).as_euler("zyx", degrees=True)[0]
    assert yaw == pytest.approx(22.5)


def test_outside_the_span_is_none_unless_within_tolerance() -> None:
    samples = [(1_000, pose(1.0, 0.0)), (2_000, pose(2.0, 0.0))]
    assert PoseHistory(samples).at(999) is None
    end = PoseHistory(samples, tolerance_ns=10).at(2_005)
    assert end is not None and end[0, 3] == pytest.approx(2.0)
    assert PoseHistory([]).at(0) is None


def test_unordered_and_repeated_stamps_are_sorted_and_deduplicated() -> None:
    history = PoseHistory([(2_000, pose(2.0, 0.0)), (0, pose(0.0, 0.0)), (2_000, pose(9.0, 0.0))])
    assert len(history) == 2
    T = history.at(1_000)
    assert T is not None and T[0, 3] == pytest.approx(1.0)
