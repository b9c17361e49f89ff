"""crawler_sim message conversions: quaternions, clouds with per-point time, scans, fixes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crawler_sim import conversions
from navigation.bag_io import quaternion_from_rotation
from sim_worlds.simulator.lidar import LidarScan
from sim_worlds.simulator.sdf import rotation_from_rpy
from sim_worlds.simulator.simulation import GnssFix, RadioFix


@pytest.mark.parametrize("rpy", [(0.0, 0.0, 0.0), (0.1, -0.2, 3.0), (math.pi, 0.0, 0.0),
                                 (0.0, math.pi / 2 - 1e-6, 0.3), (0.0, 0.0, -math.pi + 1e-3)])
def test_quaternion_reproduces_the_rotation(rpy: tuple[float, float, float]) -> None:
    R = rotation_from_rpy(*rpy)
    x, y, z, w = quaternion_from_rotation(R)
    assert math.isclose(x * x + y * y + z * z + w * w, 1.0, rel_tol=1e-9)
    back = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    np.testing.assert_allclose(back, R, atol=1e-9)


def _scan() -> LidarScan:
    points = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    offsets = np.array([-0.1, -0.05], dtype=np.float32)
    ranges = np.array([[1.0, np.inf, 2.0]], dtype=np.float32)
    azimuths = np.array([-0.1, 0.0, 0.1])
    return LidarScan(1_500_000_000, ranges, azimuths, np.zeros(1), points, offsets)


def test_cloud_carries_xyz_and_time_offsets() -> None:
    msg = conversions.cloud_msg(_scan(), "lidar_link")
    assert [f.name for f in msg.fields] == ["x", "y", "z", "t"]
    assert msg.point_step == 16 and msg.width == 2 and msg.row_step == 32
    data = np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(data[:, :3], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(data[:, 3], [-0.1, -0.05])
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1, 500_000_000)


def test_laser_scan_keeps_no_returns_as_infinity() -> None:
    msg = conversions.laser_scan_msg(_scan(), 0.1, 30.0, 0.1, "lidar_link")
    assert msg.angle_min == pytest.approx(-0.1) and msg.angle_increment == pytest.approx(0.1)
    assert msg.ranges[0] == 1.0 and math.isinf(msg.ranges[1])


def test_fixes_carry_their_covariance() -> None:
    gnss = conversions.navsat_msg(GnssFix(0, 30.5, 114.3, 20.0, 1.5, 3.0, False), "gnss_link")
    assert gnss.position_covariance[0] == pytest.approx(2.25)
    assert gnss.position_covariance[8] == pytest.approx(9.0)
    radio = conversions.radio_msg(RadioFix(0, np.array([1.0, 2.0, 3.0]), 0.5, False), "map")
    assert radio.pose.pose.position.y == 2.0
    assert radio.pose.covariance[0] == pytest.approx(0.25)
    assert radio.pose.covariance[35] >= 1e5  # orientation unknown
