"""The simulator's world step on the shipped worlds: lidar geometry, motion, slip, fixes, gas."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from firmware_bridge.messages import SetWheelSpeeds
from sim_worlds.simulator.body import BodyParams, BodyState, CrawlerBody
from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.lidar import Lidar
from sim_worlds.simulator.sdf import pose_matrix, rotation_from_rpy
from sim_worlds.simulator.simulation import (
    GnssFix,
    PlanarScanFrame,
    RadioFix,
    SimConfig,
    Simulation,
    available_worlds,
    world_path,
)

NO_CAMERA = SimConfig(camera=False)


@pytest.fixture(scope="module")
def sewer() -> Iterator[Simulation]:
    yield Simulation("sewer_dn1000", NO_CAMERA)


@pytest.fixture(scope="module")
def tunnel() -> Iterator[Simulation]:
    yield Simulation("utility_tunnel", SimConfig(camera=False, lidar=False))


def test_shipped_worlds_are_found_and_unknown_ones_named() -> None:
    assert {"sewer_dn1000", "utility_tunnel", "civil_defence_shelter"} <= set(available_worlds())
    with pytest.raises(SimError, match="unknown world 'atlantis' \\(available: "):
        world_path("atlantis")


def test_lidar_ranges_in_the_dn1000_pipe_match_the_wall(sewer: Simulation) -> None:
    assert sewer.lidar is not None and sewer.truth.pipe is not None
    radius_m = sewer.truth.pipe.inner_diameter_m / 2
    # On the pipe axis in the straight first 40 m, clear of defects (D01 is at 14 m).
    axis = sewer.route.point_at(8.0) + np.array([0.0, 0.0, radius_m])
    heading = sewer.route.heading_at(8.0)
    pitch = math.atan2(sewer.route.point_at(7.0)[2] - sewer.route.point_at(9.0)[2], 2.0)
    T_world_sensor = pose_matrix(tuple(axis), rotation_from_rpy(0.0, pitch, heading))
    lidar = Lidar(sewer.lidar.spec, dropout_probability=0.0, seed=5)
    scan = lidar.scan(sewer.scene, 0, T_world_sensor)
    el, az = np.meshgrid(scan.elevations_rad, scan.azimuths_rad, indexing="ij")
    # A ray leaves the axis at (cos e cos a, cos e sin a, sin e); the wall is where its
    # radial part reaches the radius. Keep rays that meet the wall within 3 m and above
    # the water in the invert.
    radial = np.hypot(np.cos(el) * np.sin(az), np.sin(el))
    expected = radius_m / np.maximum(radial, 1e-9)
    wall_z = expected * np.sin(el)
    water_top = -radius_m + sewer.truth.pipe.water_depth_m
    usable = (expected < 3.0) & (wall_z > water_top + 0.02) & np.isfinite(scan.ranges_m)
    assert usable.sum() > 10_000
    error = scan.ranges_m[usable] - expected[usable]
    sigma = sewer.lidar.spec.noise_stddev_m
    assert abs(float(np.median(error))) < 0.2 * sigma + 0.002  # the wall is where it should be
    assert float(np.std(error)) == pytest.approx(sigma, rel=0.2)  # and the noise is the spec's


def test_body_slips_by_the_given_fraction() -> None:
    body = CrawlerBody(BodyParams(track_width_m=0.4), BodyState())
    for _ in range(1000):
        body.step(0.01, 0.5, 0.5, slip=0.1)
    assert body.state.x_m == pytest.approx(0.5 * 10.0 * 0.9)
    assert body.state.y_m == pytest.approx(0.0)


def test_skid_steer_turns_less_than_an_ideal_differential_drive() -> None:
    params = BodyParams(track_width_m=0.4, turn_resistance=1.25)
    body = CrawlerBody(params, BodyState())
    for _ in range(100):
        body.step(0.01, -0.2, 0.2, slip=0.0)
    ideal_rad = 0.4 / 0.4 * 1.0
    assert body.state.yaw_rad == pytest.approx(ideal_rad / 1.25)


def test_body_settles_on_a_slope() -> None:
    def ramp(points_xy: np.ndarray, z_hint_m: float) -> np.ndarray:
        return 0.1 * points_xy[:, 0]  # rises 10 cm per metre along x

    body = CrawlerBody(BodyParams(), BodyState(x_m=2.0), floor=ramp)
    body.settle()
    assert body.state.z_m == pytest.approx(0.2)
    assert body.state.pitch_rad == pytest.approx(-math.atan(0.1))  # nose up is negative pitch
    assert body.state.roll_rad == pytest.approx(0.0)


def _drive(sim: Simulation, speed_mps: float, seconds: float) -> list[object]:
    events: list[object] = []
    for i in range(round(seconds / sim.config.step_s)):
        if i % 20 == 0:  # the host's 10 Hz command stream, as crawler_driver sends it
            sim.mcu.handle(SetWheelSpeeds(speed_mps, speed_mps))
        events += sim.step()
    return events


def test_driving_the_sewer_slips_on_wet_invert_and_tether_follows_the_body() -> None:
    sim = Simulation("sewer_dn1000", SimConfig(camera=False, lidar=False))
    _drive(sim, 0.5, 20.0)
    track_m = sum(sim.mcu.track_pos_m) / 2
    body_m = sim.body.state.distance_m
    assert body_m == pytest.approx(track_m * (1 - sim.config.slip_wet), rel=1e-3)
    assert sim.mcu.tether_m == pytest.approx(body_m * (1 + sim.config.tether_stretch), rel=1e-3)
    # The body stays on the invert: z follows the floor, the nose follows the 0.2 % fall.
    assert sim.body.state.z_m == pytest.approx(sim.route.project(
        sim.T_world_base()[:3, 3]).distance_m * -0.002 - 4.0, abs=0.03)


def test_beidou_fixes_only_under_the_open_manhole(sewer: Simulation) -> None:
    sim = Simulation("sewer_dn1000", SimConfig(camera=False, lidar=False, seed=3))
    events = _drive(sim, 0.5, 12.0)
    fixes = [e for e in events if isinstance(e, GnssFix)]
    assert fixes, "no fix at the start manhole"
    last_fix_s = max(f.stamp_ns for f in fixes) * 1e-9
    assert last_fix_s < 4.0  # the robot left the manhole after ~1 m, the sky with it
    origin = sim.truth.geodetic_origin
    good = [f for f in fixes if not f.outlier]
    assert good and all(abs(f.latitude_deg - origin.latitude_deg) < 1e-4 for f in good)


def test_5g_fixes_are_metre_level_with_rare_outliers(tunnel: Simulation) -> None:
    sim = tunnel
    fixes: list[RadioFix] = []
    truth_xy: list[np.ndarray] = []
    for i in range(round(200.0 / sim.config.step_s)):
        if i % 20 == 0:
            sim.mcu.handle(SetWheelSpeeds(1.0, 1.0))
        for event in sim.step():
            if isinstance(event, RadioFix):
                fixes.append(event)
                truth_xy.append(sim.T_world_base()[:2, 3].copy())
    assert len(fixes) >= 150
    errors = np.array([np.linalg.norm(f.position_m[:2] - t) for f, t in
                       zip(fixes, truth_xy, strict=True)])
    los = np.array([not f.nlos for f in fixes])
    assert np.quantile(errors[los], 0.9) < 1.1  # about 1 m at 90 %
    assert 0 < (~los).sum() < 0.2 * len(fixes)
    assert np.median(errors[~los]) > 3.0  # NLOS outliers are metres off


def test_gas_zone_readings(tunnel: Simulation) -> None:
    assert tunnel.truth.tunnel is not None
    zone = tunnel.truth.tunnel.gas_zones[0]
    inside = np.array([(lo + hi) / 2 for lo, hi in zip(zone.box.min_m, zone.box.max_m,
                                                       strict=True)])
    o2, ch4, _, _ = tunnel.gas_at(inside)
    assert (o2, ch4) == (zone.o2_pct_vol, zone.ch4_pct_vol)
    ambient = tunnel.truth.tunnel.ambient_gas
    assert tunnel.gas_at(np.array([-1000.0, 0.0, 0.0]))[1] == ambient.ch4_pct_vol


def test_planar_scan_sees_the_tunnel_walls_at_half_its_width() -> None:
    sim = Simulation("utility_tunnel", SimConfig(camera=False, planar_scan_samples=360))
    assert sim.planar is not None and sim.truth.tunnel is not None
    gallery = sim.truth.tunnel.galleries[0]
    # Somewhere clear of doors and shafts, on the centreline, heading along the gallery.
    sim.body.state.x_m = 100.0
    sim.body.settle()
    scan = next(e for e in _drive(sim, 0.0, 0.2) if isinstance(e, PlanarScanFrame)).scan
    left = scan.ranges_m[0][np.argmin(np.abs(scan.azimuths_rad - math.pi / 2))]
    right = scan.ranges_m[0][np.argmin(np.abs(scan.azimuths_rad + math.pi / 2))]
    # Cable trays and pipes hang on one wall: that side reads shorter, never longer.
    assert min(left, right) <= gallery.width_m / 2 + 0.05
    assert max(left, right) == pytest.approx(gallery.width_m / 2, abs=0.05)
    assert len(scan.ranges_m[0]) == 360
