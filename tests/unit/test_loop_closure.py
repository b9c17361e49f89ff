"""Loop closure in a synthetic box room: back near an earlier key, the scan registration
recovers the true relative pose despite drift; the fused smoother pulls the drift out."""

from __future__ import annotations

import math

import gtsam
import numpy as np
from numpy.typing import NDArray

from navigation.fusion import FusedLocalizer, X
from navigation.geodesy import GeodeticOrigin
from navigation.lidar_odometry import twist
from navigation.loop_closure import LoopCloser, LoopClosureConfig
from navigation.site import Axis, Site, SiteType
from tests.unit.test_lidar_odometry import cast_box, pose, spin

FloatArray = NDArray[np.float64]
T_BASE_LIDAR = pose(0.12, 0.0, 0.39)
CONFIG = LoopClosureConfig(keyframe_spacing_m=0.5, min_trajectory_gap_m=4.0,
                           search_radius_m=1.0)


def _circle(n: int = 40, radius_m: float = 1.2) -> list[FloatArray]:
    """True base poses around a circle in the room (one lap and a bit), floor at z = -0.6."""
    poses = []
    for i in range(n):
        angle = 2 * math.pi * i / 32
        poses.append(pose(radius_m * math.sin(angle), radius_m * (1 - math.cos(angle)), -0.6,
                          yaw_rad=angle))
    return poses


def _drifted(T: FloatArray, i: int) -> FloatArray:
    """The estimate: 1.5 cm and 0.3 degrees of drift per key."""
    drift: FloatArray = pose(0.015 * i, 0.0, 0.0, yaw_rad=math.radians(0.3) * i) @ T
    return drift


def _scan_base(T_site_base: FloatArray) -> FloatArray:
    points, _ = spin(cast_box, T_site_base @ T_BASE_LIDAR)
    return points @ T_BASE_LIDAR[:3, :3].T + T_BASE_LIDAR[:3, 3]


def _drive(closer: LoopCloser) -> list[tuple[int, int, FloatArray]]:
    truth = _circle()
    estimates = {i: _drifted(T, i) for i, T in enumerate(truth)}
    found = []
    for i, T in enumerate(truth):
        closure = closer.on_key_scan(i, _scan_base(T), estimates[i],
                                     lambda keys: {k: estimates[k] for k in keys})
        if closure is not None:
            found.append((closure.old_key, closure.new_key, closure.T_old_new))
    return found


def test_back_near_an_old_key_the_registration_recovers_the_true_relative_pose() -> None:
    closer = LoopCloser(T_BASE_LIDAR, CONFIG)
    found = _drive(closer)
    truth = _circle()
    assert found, "no loop closed"
    for old, new, T_old_new in found:
        true = np.linalg.inv(truth[old]) @ truth[new]
        error = twist(np.linalg.inv(true) @ T_old_new)
        guess = twist(np.linalg.inv(true) @ np.linalg.inv(_drifted(truth[old], old))
                      @ _drifted(truth[new], new))
        # The submap's neighbours are placed by drifted estimates too: a few mm, mrad left
        assert np.linalg.norm(error[:3]) < 0.03 and np.linalg.norm(error[3:]) < 0.01
        assert np.linalg.norm(error[:3]) < 0.2 * np.linalg.norm(guess[:3])
    assert len(closer.keyframes) <= 40 * 0.25 / 0.5 + 20  # bounded: ~one per spacing


def test_keyframe_store_is_bounded_and_near_keys_are_not_candidates() -> None:
    closer = LoopCloser(T_BASE_LIDAR, LoopClosureConfig(keyframe_spacing_m=0.5, max_keyframes=5,
                                                        min_trajectory_gap_m=100.0))
    assert _drive(closer) == []  # never far enough along the path
    assert len(closer.keyframes) == 5
    assert closer.attempts == 0


def test_a_closure_pulls_the_drift_out_of_the_smoother() -> None:
    truth = _circle()
    site = Site("room", SiteType.SHELTER, GeodeticOrigin(30.5, 114.3, 20.0, 90.0),
                (Axis("C", ((0.0, 0.0, 0.0), (10.0, 0.0, 0.0)), 0.0),))
    localizer = FusedLocalizer(site)
    localizer.initialize(truth[0], 0)
    # Odometry between keys with the drift in it (a between chain), loose
    noise = gtsam.noiseModel.Isotropic.Sigma(6, 0.05)
    for i in range(1, len(truth)):
        localizer._add_key(i * 100_000_000, gtsam.Pose3(_drifted(truth[i], i)))
        measured = np.linalg.inv(_drifted(truth[i - 1], i - 1)) @ _drifted(truth[i], i)
        localizer._add_factor(gtsam.BetweenFactorPose3(X(i - 1), X(i), gtsam.Pose3(measured),
                                                       noise))
        localizer._update()
    before = np.linalg.norm(localizer.key_poses([39])[39][:3, 3] - truth[39][:3, 3])
    closer = LoopCloser(T_BASE_LIDAR, CONFIG)
    for i, T in enumerate(truth):
        closure = closer.on_key_scan(i, _scan_base(T), localizer.key_poses([i])[i],
                                     localizer.key_poses)
        if closure is not None:
            assert localizer.add_loop_closure(closure.old_key, closure.new_key,
                                              closure.T_old_new, closure.information)
    after = np.linalg.norm(localizer.key_poses([39])[39][:3, 3] - truth[39][:3, 3])
    assert closer.closures
    assert before > 0.3 and after < 0.5 * before
