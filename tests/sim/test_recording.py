"""Simulated drives recorded into bags: topics, rates, and odometry against ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from navigation.bag_io import BagReader, BagRecord, ImuReading, SensorRole, TetherLength
from navigation.records import LaserScan2D, LidarScan3D, OdometrySample
from sim_worlds.simulator.recording import (
    REALISTIC_EPOCH_NS,
    RecordingProgress,
    RecordingSummary,
    record_drive,
    record_realistic_2d,
)
from sim_worlds.simulator.simulation import SimConfig

S = 1_000_000_000
Recorded = tuple[RecordingSummary, list[BagRecord], dict[SensorRole, str]]


def by_role(records: list[BagRecord], role: SensorRole) -> list[BagRecord]:
    return [r for r in records if r.role is role]


def poses(records: list[BagRecord]) -> np.ndarray:
    return np.array([r.data.T_odom_base for r in records if isinstance(r.data, OdometrySample)])


def path_length_m(T: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(T[:, :3, 3], axis=0), axis=1).sum())


def yaw_rad(T: np.ndarray) -> float:
    return math.atan2(T[1, 0], T[0, 0])


@pytest.fixture(scope="module")
def sewer_2d(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    path = tmp_path_factory.mktemp("rec") / "sewer.mcap"
    reports: list[RecordingProgress] = []
    summary = record_drive("sewer_dn1000", path, duration_s=5.0, lidar_3d=False, seed=3,
                           progress=reports.append)
    assert [round(r.sim_s) for r in reports] == [1, 2, 3, 4, 5]
    assert reports[-1].distance_m > reports[0].distance_m
    with BagReader(path) as bag:
        records = list(bag.records())
        assert bag.skipped == []
    return summary, records, dict(bag.roles)


def test_short_sewer_recording_has_every_topic_at_its_rate(
        sewer_2d: Recorded) -> None:
    summary, records, roles = sewer_2d
    assert summary.bag_path.is_file() and summary.bag_bytes == summary.bag_path.stat().st_size
    assert summary.sim_s == pytest.approx(5.0)
    assert set(roles) == {SensorRole.SCAN_2D, SensorRole.ODOMETRY, SensorRole.GROUND_TRUTH,
                              SensorRole.IMU, SensorRole.TETHER, SensorRole.GNSS}
    assert "/points" not in summary.message_counts  # 2D only
    counts = {role: len(by_role(records, role)) for role in roles}
    assert counts[SensorRole.SCAN_2D] == pytest.approx(50, abs=1)  # 10 Hz
    assert counts[SensorRole.ODOMETRY] == pytest.approx(250, abs=1)  # 50 Hz
    assert counts[SensorRole.GROUND_TRUTH] == counts[SensorRole.ODOMETRY]
    assert counts[SensorRole.IMU] == pytest.approx(500, abs=1)  # 100 Hz
    assert counts[SensorRole.TETHER] == pytest.approx(50, abs=1)  # 10 Hz
    scans = [r.data for r in by_role(records, SensorRole.SCAN_2D)]
    assert all(isinstance(s, LaserScan2D) and s.ranges_m.size == 720
               and s.frame_id == "lidar_link" for s in scans)
    stamps = np.array([s.stamp_ns for s in scans])
    # The first sweep fires at the first 5 ms step, then every 100 ms of simulated time.
    assert stamps[0] == 5_000_000
    np.testing.assert_array_equal(np.diff(stamps[1:]), 100_000_000)
    # Out of the manhole, in the DN1000 pipe, the wall is a chord of 0.49 m to either side
    # at the lidar's height (0.39 m above the tracks on the invert).
    last = scans[-1]
    assert isinstance(last, LaserScan2D)
    angles = last.angle_min_rad + last.angle_increment_rad * np.arange(720)
    for side_rad in (-math.pi / 2, math.pi / 2):
        side_m = last.ranges_m[np.argmin(np.abs(angles - side_rad))]
        assert side_m == pytest.approx(0.49, abs=0.03)
    imu = by_role(records, SensorRole.IMU)[-1].data
    assert isinstance(imu, ImuReading)
    assert imu.linear_acceleration_mps2[2] == pytest.approx(9.8, abs=0.2)


def test_odometry_overshoots_the_true_distance_by_the_slip(
        sewer_2d: Recorded) -> None:
    summary, records, _ = sewer_2d
    truth = poses(by_role(records, SensorRole.GROUND_TRUTH))
    odometry = poses(by_role(records, SensorRole.ODOMETRY))
    true_m, odom_m = path_length_m(truth), path_length_m(odometry)
    assert true_m > 1.5  # it did drive
    assert true_m == pytest.approx(summary.true_distance_m, rel=0.01)
    assert odom_m == pytest.approx(summary.odometry_distance_m, rel=0.01)
    # Wheel odometry counts track motion; the body moves (1 - slip) of it in a wet pipe.
    slip = SimConfig().slip_wet
    assert true_m / odom_m == pytest.approx(1.0 - slip, abs=0.01)
    # Same direction of travel: odometry starts at the origin facing +x of the start pose.
    true_step = np.linalg.inv(truth[0]) @ truth[-1]
    odom_step = np.linalg.inv(odometry[0]) @ odometry[-1]
    assert math.atan2(odom_step[1, 3], odom_step[0, 3]) == pytest.approx(
        math.atan2(true_step[1, 3], true_step[0, 3]), abs=0.02)
    assert yaw_rad(odom_step) == pytest.approx(yaw_rad(true_step), abs=0.02)
    # The cable counter follows the body (plus its stretch), not the tracks.
    tether = by_role(records, SensorRole.TETHER)[-1].data
    assert isinstance(tether, TetherLength)
    assert tether.length_m == pytest.approx(summary.true_distance_m, rel=0.02)


def test_recording_holds_the_lidar_mount(tmp_path: Path) -> None:
    path = tmp_path / "mount"
    record_drive("sewer_dn1000", path, duration_s=0.3, planar_scan_samples=360,
                 lidar_3d=True, cloud_voxel_m=0.1)
    assert (path / "metadata.yaml").is_file()  # a rosbag2 folder when not named .mcap
    with BagReader(path) as bag:
        T_base_lidar = bag.static_transforms()[("base_link", "lidar_link")]
        clouds = [r.data for r in bag.records({SensorRole.CLOUD_3D})]
    assert T_base_lidar[2, 3] == pytest.approx(0.39)
    assert len(clouds) == 4  # at 5, 100, 200 and 300 ms
    for cloud in clouds:
        assert isinstance(cloud, LidarScan3D) and cloud.point_time_offsets_s is not None
        assert 1_000 < len(cloud.points_m) < 16 * 1800 // 2  # thinned to one point per voxel
        keys = np.floor(cloud.points_m / 0.1).astype(np.int64)
        assert len(np.unique(keys, axis=0)) == len(keys)
        assert cloud.point_time_offsets_s.min() >= -0.1 - 1e-6
        assert cloud.point_time_offsets_s.max() <= 0.0


def test_a_recording_without_any_lidar_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no lidar to record"):
        record_drive("sewer_dn1000", tmp_path / "b.mcap", 1.0, planar_scan_samples=0,
                     lidar_3d=False)
    assert list(tmp_path.iterdir()) == []


# --- real-data-like 2D bags ----------------------------------------------------------------


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[RecordingSummary,
                                                                 list[BagRecord]]:
    path = tmp_path_factory.mktemp("real") / "tunnel.mcap"
    summary = record_realistic_2d("utility_tunnel", path, duration_s=20.0, seed=5,
                                  drop_probability=0.03)
    with BagReader(path) as bag:
        records = list(bag.records())
        assert bag.skipped == []
        assert ("base_link", "laser") in bag.static_transforms()
    return summary, records


def test_realistic_scans_are_half_circle_with_max_range_no_returns(
        realistic: tuple[RecordingSummary, list[BagRecord]]) -> None:
    _, records = realistic
    scans = [r.data for r in by_role(records, SensorRole.SCAN_2D)]
    assert all(isinstance(s, LaserScan2D) for s in scans)
    first = scans[0]
    assert isinstance(first, LaserScan2D)
    assert first.ranges_m.size == 181
    assert first.angle_min_rad == pytest.approx(-math.pi / 2)
    assert first.angle_increment_rad == pytest.approx(math.radians(1.0))
    ranges = np.stack([s.ranges_m for s in scans if isinstance(s, LaserScan2D)])
    assert np.isfinite(ranges).all()  # no inf: a no return reads as range_max
    at_max = ranges == first.range_max_m
    assert 0.02 < at_max.mean() < 0.5  # down the gallery nothing comes back within 20 m
    assert len(first.points_m()) == int((~at_max[0]).sum())


def test_realistic_timing_is_jittered_and_lossy(
        realistic: tuple[RecordingSummary, list[BagRecord]]) -> None:
    summary, records = realistic
    scans = by_role(records, SensorRole.SCAN_2D)
    odometry = by_role(records, SensorRole.ODOMETRY)
    assert 180 <= len(scans) < 200  # 10 Hz for 20 s, a few per cent lost
    assert 930 <= len(odometry) < 1000  # 50 Hz
    assert summary.message_counts["/sim/ground_truth"] == pytest.approx(1000, abs=1)
    stamps = np.array([r.stamp_ns for r in scans])
    assert stamps.min() > REALISTIC_EPOCH_NS
    periods_s = np.diff(stamps) / S
    assert periods_s.min() > 0.08
    assert (periods_s > 0.15).any()  # a lost scan leaves a gap
    regular = periods_s[periods_s < 0.15]
    assert 0.002 < regular.std() < 0.01  # jittered stamps, not a perfect clock
    # Sent once measured, up to 20 ms late; a scan is stamped at its first beam, and its
    # 180-degree sweep ends 0.05 s later
    delays_s = np.array([r.log_time_ns - r.stamp_ns for r in odometry]) / S
    assert delays_s.min() > -0.015 and delays_s.max() < 0.035
    delays_s = np.array([r.log_time_ns - r.stamp_ns for r in scans]) / S - 0.05
    assert delays_s.min() > -0.015 and delays_s.max() < 0.035


def test_realistic_odometry_drifts_beyond_the_slip(
        realistic: tuple[RecordingSummary, list[BagRecord]]) -> None:
    summary, records = realistic
    truth = poses(by_role(records, SensorRole.GROUND_TRUTH))
    odometry = poses(by_role(records, SensorRole.ODOMETRY))
    true_m, odom_m = path_length_m(truth), path_length_m(odometry)
    assert true_m > 8.0
    # Dry tunnel floor: 2 % slip, then a 3 +- 1.5 % scale error on top.
    ratio = odom_m / true_m
    assert 1.02 + 0.03 - 0.02 < ratio < 1.02 + 0.03 + 0.025
    # The heading wanders off by the injected bias per metre.
    true_step = np.linalg.inv(truth[0]) @ truth[-1]
    odom_step = np.linalg.inv(odometry[0]) @ odometry[-1]
    heading_error = math.remainder(yaw_rad(odom_step) - yaw_rad(true_step), math.tau)
    expected = summary.drift["heading_bias_rad_per_m"] * odom_m
    assert heading_error == pytest.approx(expected, rel=0.2)
