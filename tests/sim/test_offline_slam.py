"""``crawler slam run`` on recorded bags: simulated 2D/3D, real-data-like 2D, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.nav import bag_odometry, errors_in_start_frame
from navigation.bag_io import BagReader, BagWriter, SensorRole
from navigation.map_export import read_tum
from navigation.occupancy import read_map
from navigation.offline import run_offline_slam
from navigation.records import OdometrySample
from sim_worlds.simulator.recording import record_drive, record_realistic_2d


def _errors_against_truth(bag: Path, trajectory_file: Path) -> np.ndarray:
    """Position errors of the trajectory, in the frame of the robot's start pose."""
    return errors_in_start_frame(bag, read_tum(trajectory_file))[0]


def _odometry_errors(bag: Path) -> float:
    """Final position error of the bag's own wheel odometry (what SLAM must beat)."""
    return float(errors_in_start_frame(bag, bag_odometry(bag))[0][-1])


@pytest.fixture(scope="module")
def shelter_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bag = tmp_path_factory.mktemp("bags") / "shelter_2d.mcap"
    record_drive("civil_defence_shelter", bag, duration_s=40.0, lidar_3d=False,
                 planar_scan_samples=720, seed=2)
    return bag


def test_simulated_2d_bag_gives_one_pose_per_scan_and_a_map(shelter_2d: Path,
                                                             tmp_path: Path) -> None:
    result = run_offline_slam(shelter_2d, tmp_path / "out")
    lines = (tmp_path / "out" / "trajectory.tum").read_text().splitlines()
    with BagReader(shelter_2d) as reader:
        assert len(lines) == reader.topic_counts[reader.roles[SensorRole.SCAN_2D]]
    assert len(lines[0].split()) == 8
    errors = _errors_against_truth(shelter_2d, tmp_path / "out" / "trajectory.tum")
    # 0.002 m over 19 m (its odometry ends 3.2 m off); 0.35 m while readings at range_max
    # were taken for walls (arcs that moved along with the robot)
    assert float(np.sqrt(np.mean(errors**2))) < 0.05
    grid = read_map(tmp_path / "out" / "map.yaml")
    assert (grid.cells == 100).sum() > 500 and (grid.cells == 0).sum() > 5000
    assert result.scans == len(lines)


def test_real_data_like_2d_bag_beats_its_odometry(tmp_path: Path) -> None:
    bag = tmp_path / "real.mcap"
    record_realistic_2d("civil_defence_shelter", bag, duration_s=45.0, seed=4)
    run_offline_slam(bag, tmp_path / "out")
    errors = _errors_against_truth(bag, tmp_path / "out" / "trajectory.tum")
    # 0.04 m over 21 m (ATE 0.02 m), its odometry 4.3 m; ATE 0.35 m while readings at
    # range_max were taken for walls
    assert errors[-1] < 0.05 * _odometry_errors(bag)
    assert float(np.sqrt(np.mean(errors**2))) < 0.1


def test_empty_bag_fails_with_one_line(tmp_path: Path) -> None:
    bag = tmp_path / "empty.mcap"
    with BagWriter(bag) as writer:
        writer.write_odometry(OdometrySample(1, np.eye(4)))
    result = subprocess.run([sys.executable, "-m", "crawler", "slam", "run", str(bag), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(bag) in result.stderr
    assert not (tmp_path / "out" / "trajectory.tum").exists()


def test_malformed_bag_fails_with_one_line(tmp_path: Path) -> None:
    bag = tmp_path / "garbage.mcap"
    bag.write_bytes(bytes(range(256)) * 10)
    result = subprocess.run([sys.executable, "-m", "crawler", "slam", "run", str(bag), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"crawler: error: {bag}")
    assert len(result.stderr.strip().splitlines()) == 1
