"""Lidar odometry in the simulated worlds: blind along a pipe, not in a room, little drift.

Each world is driven once (pure pursuit on the true pose, commands straight into the MCU
model, as ``benchmarks/sim.py`` does) and its raw lidar sweeps are fed to the odometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray

from firmware_bridge.messages import SetTwist
from navigation.lidar_odometry import LidarOdometry, LidarOdometryConfig, twist
from navigation.path import Polyline, pure_pursuit
from navigation.records import LaserScan2D, LidarOdometryResult, LidarScan3D
from sim_worlds.simulator.simulation import LidarFrame, PlanarScanFrame, SimConfig, Simulation

FloatArray = NDArray[np.float64]
COMMAND_PERIOD_STEPS = 20  # 10 Hz of commands at the 200 Hz physics step


@dataclass(frozen=True)
class Drive:
    """What the sensors saw on one drive, and where the lidar truly was."""

    scans: list[LidarScan3D]
    planar_scans: list[LaserScan2D]
    T_world_sensor: list[FloatArray]

    def distance_m(self) -> float:
        """Path length of the lidar."""
        positions = np.array([T[:3, 3] for T in self.T_world_sensor])
        return float(np.linalg.norm(np.diff(positions, axis=0), axis=1).sum())

    def T_first_sensor(self, index: int) -> FloatArray:
        """True pose of the lidar at scan ``index`` in the frame of the first scan."""
        pose: FloatArray = np.linalg.inv(self.T_world_sensor[0]) @ self.T_world_sensor[index]
        return pose


def drive(world: str, distance_m: float, speed_mps: float,
          waypoints_m: list[tuple[float, float, float]] | None = None) -> Drive:
    """Drive ``distance_m`` along the world's route (or the given waypoints)."""
    sim = Simulation(world, SimConfig(camera=False, planar_scan_samples=360, seed=2))
    route = sim.route if waypoints_m is None else Polyline(waypoints_m)
    scans: list[LidarScan3D] = []
    planar: list[LaserScan2D] = []
    poses: list[FloatArray] = []
    travelled_m, step = 0.0, 0
    while travelled_m < distance_m:
        assert step < 200_000, "the robot did not get there"
        if step % COMMAND_PERIOD_STEPS == 0:
            s = sim.body.state
            linear, angular = pure_pursuit(route, s.x_m, s.y_m, s.yaw_rad, 0.8, speed_mps)
            sim.mcu.handle(SetTwist(linear, angular))
        for event in sim.step():
            if isinstance(event, LidarFrame):
                scans.append(LidarScan3D(event.stamp_ns, event.scan.points_m,
                                         event.scan.point_time_offsets_s))
                if poses:
                    travelled_m += float(np.linalg.norm(event.T_world_sensor[:3, 3]
                                                        - poses[-1][:3, 3]))
                poses.append(event.T_world_sensor)
            elif isinstance(event, PlanarScanFrame):
                ranges = event.scan.ranges_m[0]
                planar.append(LaserScan2D(
                    event.stamp_ns, ranges, float(event.scan.azimuths_rad[0]),
                    float(event.scan.azimuths_rad[1] - event.scan.azimuths_rad[0]), 0.1, 30.0))
        step += 1
    return Drive(scans, planar, poses)


def final_drift(results: list[LidarOdometryResult], run: Drive) -> float:
    """Position error at the end over the distance driven."""
    error_m = np.linalg.norm(results[-1].T_map_sensor[:3, 3]
                             - run.T_first_sensor(len(results) - 1)[:3, 3])
    return float(error_m / run.distance_m())


def in_span(directions: FloatArray, axis: int) -> float:
    """Length of the projection of unit axis ``axis`` onto the span of ``directions``."""
    if len(directions) == 0:
        return 0.0
    basis, _ = np.linalg.qr(directions.T)
    return float(np.linalg.norm(basis.T @ np.eye(6)[axis]))


@pytest.fixture(scope="module")
def sewer() -> Drive:
    """The sewer's straight first 14 m."""
    return drive("sewer_dn1000", 14.0, 0.8)


@pytest.fixture(scope="module")
def shelter() -> Drive:
    """20 m through the south corridor and into the command room R01."""
    return drive("civil_defence_shelter", 20.0, 0.8,
                 [(1.0, 1.0, 0.0), (7.3, 1.0, 0.0), (7.3, 10.0, 0.0), (4.0, 12.0, 0.0),
                  (3.0, 12.0, 0.0)])


@pytest.fixture(scope="module")
def tunnel() -> Drive:
    """20 m down the utility tunnel's main gallery."""
    return drive("utility_tunnel", 20.0, 0.8)


def test_straight_sewer_is_degenerate_along_and_about_its_axis(sewer: Drive) -> None:
    # With wheel odometry that slips 5 %, as it does on the wet invert
    odometry = LidarOdometry()
    results, guesses = [], []
    for i, scan in enumerate(sewer.scans):
        true_motion = np.linalg.inv(sewer.T_world_sensor[i - 1]) @ sewer.T_world_sensor[i]
        guess = true_motion.copy()
        guess[:3, 3] *= 0.95
        guesses.append(guess)
        results.append(odometry.register(scan, guess if i else None))
    x_m = np.array([T[0, 3] for T in sewer.T_world_sensor])
    # Closer to the start manhole, its chamber (behind, within range) still pins the axis.
    straight = np.flatnonzero((x_m > 9.0) & (x_m < 13.0)).tolist()
    along = np.array([in_span(results[i].degenerate_directions, 0) for i in straight])
    about = np.array([in_span(results[i].degenerate_directions, 3) for i in straight])
    assert np.mean(along > 0.95) > 0.9
    assert np.mean(about > 0.9) > 0.9
    # Along the unconstrained directions the motion is the guess, in the others the scan's
    for i in straight:
        directions = results[i].degenerate_directions
        difference = twist(np.linalg.inv(guesses[i]) @ results[i].T_prev_curr)
        assert np.abs(directions @ difference).max(initial=0.0) < 1e-3
    # and nothing else: the cross-section pins y, z, pitch and yaw
    for i in straight:
        assert len(results[i].degenerate_directions) <= 2
        for axis in (1, 2, 4, 5):
            assert in_span(results[i].degenerate_directions, axis) < 0.2


def test_shelter_room_is_not_degenerate_and_lidar_alone_drifts_little(shelter: Drive) -> None:
    odometry = LidarOdometry()
    results = [odometry.register(scan) for scan in shelter.scans]
    in_room = [i for i, T in enumerate(shelter.T_world_sensor)
               if 2.8 < T[0, 3] < 11.8 and 3.0 < T[1, 3] < 13.5]
    assert len(in_room) > 50
    assert not any(results[i].degenerate for i in in_room)
    assert shelter.distance_m() > 19.5
    assert final_drift(results, shelter) < 0.01
    heading_error_rad = np.linalg.norm(twist(np.linalg.inv(
        shelter.T_first_sensor(len(results) - 1)) @ results[-1].T_map_sensor)[3:])
    assert math.degrees(heading_error_rad) < 1.0


def test_shelter_planar_scans_drift_little(shelter: Drive) -> None:
    odometry = LidarOdometry(LidarOdometryConfig(planar=True))
    results = [odometry.register(scan) for scan in shelter.planar_scans]
    assert final_drift(results, shelter) < 0.01


def test_tunnel_lidar_alone_drifts_little_through_bad_scans(tunnel: Drive) -> None:
    odometry = LidarOdometry()
    results = []
    for i, scan in enumerate(tunnel.scans):
        if i == 100:  # a scan that lost all its returns
            scan = LidarScan3D(scan.stamp_ns, np.empty((0, 3), np.float32))
        elif i == 150:  # a scan with a third of its points NaN
            points = scan.points_m.copy()
            points[::3] = np.nan
            scan = LidarScan3D(scan.stamp_ns, points, scan.point_time_offsets_s)
        results.append(odometry.register(scan))
    assert len(results[100].degenerate_directions) == 6
    assert not results[150].degenerate or results[150].fitness > 0.5
    assert tunnel.distance_m() > 19.5
    assert final_drift(results, tunnel) < 0.01
