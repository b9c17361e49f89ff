"""Lidar odometry on synthetic scans: a box room, a long pipe, a corridor, a moving lidar."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

from navigation.deskew import deskew, so3_exp, so3_log
from navigation.lidar_odometry import (
    LidarOdometry,
    LidarOdometryConfig,
    VoxelPlaneMap,
    planar_config,
    se3_exp,
    transform,
    twist,
    voxel_downsample,
)
from navigation.records import LaserScan2D, LidarScan3D

FloatArray = NDArray[np.float64]
Caster = Callable[[FloatArray, FloatArray], FloatArray]
"""(origins (N, 3), unit directions (N, 3)) -> ranges (N,) in the world, inf for no hit."""

ROOM_LO_M = np.array([-4.0, -3.0, -1.0])
ROOM_HI_M = np.array([6.0, 5.0, 2.0])
PIPE_RADIUS_M = 0.5
SCAN_PERIOD_S = 0.1
STEP_NS = 100_000_000


def pose(x_m: float = 0.0, y_m: float = 0.0, z_m: float = 0.0, roll_rad: float = 0.0,
         pitch_rad: float = 0.0, yaw_rad: float = 0.0) -> FloatArray:
    """4x4 pose from a translation and a rotation vector (small angles: roll, pitch, yaw)."""
    return se3_exp(np.array([x_m, y_m, z_m, roll_rad, pitch_rad, yaw_rad]))


def cast_box(origins: FloatArray, directions: FloatArray) -> FloatArray:
    """Ranges from inside the room to its walls."""
    with np.errstate(divide="ignore"):
        t_hi = (ROOM_HI_M - origins) / directions
        t_lo = (ROOM_LO_M - origins) / directions
    t = np.where(t_hi > 0, t_hi, np.inf)
    t = np.minimum(t, np.where(t_lo > 0, t_lo, np.inf))
    ranges: FloatArray = t.min(axis=1)
    return ranges


def cast_pipe(origins: FloatArray, directions: FloatArray) -> FloatArray:
    """Ranges from inside an endless pipe along x to its wall."""
    o, d = origins[:, 1:], directions[:, 1:]
    a = np.sum(d * d, axis=1)
    b = 2.0 * np.sum(o * d, axis=1)
    c = np.sum(o * o, axis=1) - PIPE_RADIUS_M**2
    with np.errstate(divide="ignore", invalid="ignore"):
        ranges: FloatArray = (-b + np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)
    return np.where(a > 1e-12, ranges, np.inf)


def spin(caster: Caster, T_world_end: FloatArray, T_world_start: FloatArray | None = None,
         beams: int = 16, columns: int = 900, fov_rad: float = math.radians(30.0),
         max_range_m: float = 30.0) -> tuple[FloatArray, FloatArray]:
    """A spinning lidar's raw sweep: points (each in the sensor frame at its firing time) and
    time offsets (<= 0) from the end of the sweep; the sensor moves at constant velocity
    from ``T_world_start`` to ``T_world_end``."""
    start = T_world_end if T_world_start is None else T_world_start
    elevation = np.linspace(-0.5 * fov_rad, 0.5 * fov_rad, beams)
    azimuth = np.linspace(-math.pi, math.pi, columns, endpoint=False)
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    dirs = dirs.reshape(-1, 3)
    fraction = np.broadcast_to(np.arange(columns) / (columns - 1), el.shape).reshape(-1)
    # Pose of each ray: translation linear, rotation at a constant rate
    rotvec = so3_log(start[:3, :3].T @ T_world_end[:3, :3])
    R = np.stack([start[:3, :3] @ so3_exp(f * rotvec) for f in np.unique(fraction)])
    column = np.searchsorted(np.unique(fraction), fraction)
    origins = start[:3, 3] + fraction[:, None] * (T_world_end[:3, 3] - start[:3, 3])
    world_dirs = np.einsum("nij,nj->ni", R[column], dirs)
    ranges = caster(origins, world_dirs)
    valid = np.isfinite(ranges) & (ranges < max_range_m)
    points = dirs[valid] * ranges[valid, None]
    offsets = (fraction[valid] - 1.0) * SCAN_PERIOD_S
    return points, offsets


def surface_samples(kind: str, count: int, seed: int = 0, lo_m: FloatArray = ROOM_LO_M,
                    hi_m: FloatArray = ROOM_HI_M) -> FloatArray:
    """Points spread uniformly over a room's walls (between corners ``lo_m`` and ``hi_m``)
    or the pipe's wall (world frame)."""
    rng = np.random.default_rng(seed)
    if kind == "room":
        size = hi_m - lo_m
        areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]])
        axis = rng.choice(3, count, p=areas / areas.sum())
        points = lo_m + rng.random((count, 3)) * size
        side = rng.random(count) < 0.5
        points[np.arange(count), axis] = np.where(side, lo_m[axis], hi_m[axis])
        return points
    angle = rng.uniform(-math.pi, math.pi, count)
    x = rng.uniform(-25.0, 25.0, count)
    return np.column_stack([x, PIPE_RADIUS_M * np.cos(angle), PIPE_RADIUS_M * np.sin(angle)])


def scan_of(points_world_m: FloatArray, T_world_sensor: FloatArray, stamp_ns: int,
            noise_m: float = 0.003, seed: int = 1) -> LidarScan3D:
    """A static scan (no time offsets) of world points seen from ``T_world_sensor``."""
    rng = np.random.default_rng(seed)
    points = transform(points_world_m, np.linalg.inv(T_world_sensor).astype(np.float64))
    points += rng.normal(0.0, noise_m, points.shape)
    return LidarScan3D(stamp_ns, points.astype(np.float32))


def in_span(directions: FloatArray, axis: int) -> float:
    """Length of the projection of unit axis ``axis`` onto the span of ``directions``."""
    if len(directions) == 0:
        return 0.0
    basis, _ = np.linalg.qr(directions.T)
    return float(np.linalg.norm(basis.T @ np.eye(6)[axis]))


def rotation_error_deg(T_a: FloatArray, T_b: FloatArray) -> float:
    """Angle of the rotation between two poses."""
    return math.degrees(float(np.linalg.norm(so3_log(T_a[:3, :3].T @ T_b[:3, :3]))))


# --- registration ------------------------------------------------------------------------


def test_box_room_known_displacement_is_recovered_without_degeneracy() -> None:
    room = surface_samples("room", 40_000)
    T_world_0, T_world_1 = pose(), pose(0.25, -0.15, 0.02, yaw_rad=math.radians(5.0))
    odometry = LidarOdometry()
    first = odometry.register(scan_of(room, T_world_0, 0))
    result = odometry.register(scan_of(room, T_world_1, STEP_NS, seed=2))
    true_motion = np.linalg.inv(T_world_0) @ T_world_1
    assert first.degenerate  # nothing to register the first scan against
    assert np.linalg.norm(result.T_prev_curr[:3, 3] - true_motion[:3, 3]) < 0.01
    assert rotation_error_deg(result.T_prev_curr, true_motion) < 0.1
    assert not result.degenerate
    assert result.fitness > 0.8
    eigenvalues = np.linalg.eigvalsh(result.information)
    assert eigenvalues.min() > 0.0


def test_long_pipe_is_degenerate_along_and_about_its_axis() -> None:
    pipe = surface_samples("pipe", 30_000)
    T_world_0 = pose(z_m=-0.1)  # the sensor rides below the axis, as on a crawler
    T_world_1 = T_world_0 @ pose(0.5, 0.02, 0.01, yaw_rad=math.radians(1.0))
    odometry = LidarOdometry()
    odometry.register(scan_of(pipe, T_world_0, 0))
    result = odometry.register(scan_of(pipe, T_world_1, STEP_NS, seed=2))
    assert result.degenerate
    assert in_span(result.degenerate_directions, 0) > 0.99  # along the axis
    assert in_span(result.degenerate_directions, 3) > 0.95  # about it
    assert len(result.degenerate_directions) == 2
    # The directions the pipe does constrain are found (y, z, yaw)
    true_motion = np.linalg.inv(T_world_0) @ T_world_1
    assert result.T_prev_curr[1:3, 3] == pytest.approx(true_motion[1:3, 3], abs=0.01)
    yaw_error = twist(np.linalg.inv(true_motion) @ result.T_prev_curr)[5]
    assert abs(math.degrees(yaw_error)) < 0.2


def test_along_a_degenerate_axis_the_estimate_stays_at_the_guess() -> None:
    # A pipe with one shallow groove: enough for plain ICP to slide somewhere, too little
    # to constrain the axis.
    pipe = surface_samples("pipe", 30_000)
    rng = np.random.default_rng(3)
    angle = rng.uniform(-math.pi, math.pi, 300)
    radius = rng.uniform(PIPE_RADIUS_M, PIPE_RADIUS_M + 0.03, 300)
    groove = np.column_stack([np.full(300, 3.0), radius * np.cos(angle),
                              radius * np.sin(angle)])
    world = np.vstack([pipe, groove])
    T_world_0, T_world_1 = pose(), pose(0.5, 0.02)
    guess = pose(0.2)  # wheel odometry that slipped: 0.3 m short
    remapped = LidarOdometry()
    remapped.register(scan_of(world, T_world_0, 0))
    result = remapped.register(scan_of(world, T_world_1, STEP_NS, seed=2), guess)
    assert in_span(result.degenerate_directions, 0) > 0.99
    assert result.T_prev_curr[0, 3] == pytest.approx(0.2, abs=1e-3)
    assert result.T_prev_curr[1, 3] == pytest.approx(0.02, abs=0.01)
    # Without the remapping the groove drags the estimate off the guess.
    plain = LidarOdometry(LidarOdometryConfig(degeneracy_threshold=1e-12))
    plain.register(scan_of(world, T_world_0, 0))
    slid = plain.register(scan_of(world, T_world_1, STEP_NS, seed=2), guess)
    assert abs(slid.T_prev_curr[0, 3] - 0.2) > 0.01


def test_degenerate_directions_are_in_the_current_sensor_frame() -> None:
    # After a 20 degree turn inside a pipe along the map's x axis, the unconstrained
    # direction is the pipe's axis as the turned sensor sees it.
    pipe = surface_samples("pipe", 30_000)
    yaw_rad = math.radians(20.0)
    T_world_1 = pose(0.3, 0.05, yaw_rad=yaw_rad)
    odometry = LidarOdometry()
    odometry.register(scan_of(pipe, pose(), 0))
    result = odometry.register(scan_of(pipe, T_world_1, STEP_NS, seed=2), T_world_1)
    axis_in_sensor = np.array([math.cos(yaw_rad), -math.sin(yaw_rad), 0.0, 0.0, 0.0, 0.0])
    assert np.linalg.norm(result.degenerate_directions @ axis_in_sensor) > 0.99
    assert axis_in_sensor @ result.information @ axis_in_sensor < 1e-2 * np.trace(
        result.information[:3, :3])


# --- deskew ------------------------------------------------------------------------------


def test_deskew_undoes_the_motion_during_the_sweep() -> None:
    T_world_end = pose(1.0, 0.5, 0.2, yaw_rad=0.3)
    # 1 m/s forward while turning at 2 rad/s, over one 0.1 s sweep
    T_start_end = pose(0.1, yaw_rad=0.2)
    T_world_start = T_world_end @ np.linalg.inv(T_start_end)
    raw, offsets = spin(cast_box, T_world_end, T_world_start)
    static, _ = spin(cast_box, T_world_end)

    def off_wall_m(points_sensor_m: FloatArray) -> FloatArray:
        p = transform(points_sensor_m, T_world_end)
        gap: FloatArray = np.minimum(np.abs(p - ROOM_LO_M), np.abs(p - ROOM_HI_M)).min(axis=1)
        return gap

    undistorted = deskew(raw, offsets, T_start_end, SCAN_PERIOD_S)
    assert np.percentile(off_wall_m(raw), 90) > 0.05
    assert off_wall_m(undistorted).max() < 1e-6
    assert off_wall_m(static).max() < 1e-6


def test_deskew_without_motion_or_time_changes_nothing() -> None:
    points = np.random.default_rng(0).normal(size=(50, 3))
    offsets = np.linspace(-0.1, 0.0, 50)
    assert np.array_equal(deskew(points, offsets, np.eye(4), 0.1), points)
    assert np.array_equal(deskew(points, offsets, pose(1.0), 0.0), points)


def test_moving_lidar_in_a_room_is_tracked_by_constant_velocity() -> None:
    # 1 m/s forward and 0.5 rad/s of yaw; lidar only, raw sweeps with time offsets.
    odometry = LidarOdometry()
    T_world_0 = pose(-2.0, 0.0, 0.3)
    T_world_prev = T_world = T_world_0
    for i in range(15):
        if i >= 3:  # from rest, then at once 1 m/s and 0.5 rad/s: the worst guess there is
            T_world = T_world @ pose(0.1, yaw_rad=0.05)
        points, offsets = spin(cast_box, T_world, T_world_prev, beams=32,
                               fov_rad=math.radians(60.0))
        result = odometry.register(LidarScan3D(i * STEP_NS, points.astype(np.float32),
                                               offsets.astype(np.float32)))
        T_world_prev = T_world
    T_true = np.linalg.inv(T_world_0) @ T_world
    assert np.linalg.norm(result.T_map_sensor[:3, 3] - T_true[:3, 3]) < 0.01
    assert rotation_error_deg(result.T_map_sensor, T_true) < 0.1


def test_voxel_downsample_keeps_one_point_per_voxel() -> None:
    points = np.array([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [0.3, 0.0, 0.0],
                       [-0.01, 0.0, 0.0]])
    kept = voxel_downsample(points, 0.25)
    assert len(kept) == 3


def test_so3_log_inverts_exp_up_to_a_half_turn() -> None:
    for rotvec in ([0.0, 0.0, 0.0], [1e-10, 0.0, 0.0], [0.3, -0.2, 0.1],
                   [0.0, 0.0, math.pi], [math.pi - 1e-9, 0.0, 0.0]):
        R = so3_exp(np.array(rotvec))
        assert so3_exp(so3_log(R)) == pytest.approx(R, abs=1e-6)


# --- planar scans ------------------------------------------------------------------------


def planar_scan(caster: Caster, T_world_sensor: FloatArray, stamp_ns: int,
                beams: int = 360) -> LaserScan2D:
    """A 2D scan in the sensor's x-y plane."""
    angles = np.linspace(-math.pi, math.pi, beams, endpoint=False)
    dirs = np.column_stack([np.cos(angles), np.sin(angles), np.zeros(beams)])
    origins = np.broadcast_to(T_world_sensor[:3, 3], dirs.shape)
    ranges = caster(origins, dirs @ T_world_sensor[:3, :3].T)
    noise = np.random.default_rng(stamp_ns % 97).normal(0.0, 0.003, beams)
    return LaserScan2D(stamp_ns, (ranges + noise).astype(np.float32), -math.pi,
                       2 * math.pi / beams, 0.1, 30.0)


def cast_corridor(origins: FloatArray, directions: FloatArray) -> FloatArray:
    """Ranges to two endless parallel walls at y = -1 and y = 1.5."""
    with np.errstate(divide="ignore"):
        t = np.where(directions[:, 1] > 0, (1.5 - origins[:, 1]) / directions[:, 1],
                     (-1.0 - origins[:, 1]) / directions[:, 1])
    ranges: FloatArray = np.where(np.isfinite(t) & (t > 0), t, np.inf)
    return ranges


def test_planar_room_displacement_is_recovered() -> None:
    odometry = LidarOdometry(LidarOdometryConfig(planar=True))
    T_world_0, T_world_1 = pose(), pose(0.3, 0.1, yaw_rad=math.radians(5.0))
    odometry.register(planar_scan(cast_box, T_world_0, 0))
    result = odometry.register(planar_scan(cast_box, T_world_1, STEP_NS))
    assert np.linalg.norm(result.T_prev_curr[:3, 3] - T_world_1[:3, 3]) < 0.01
    assert rotation_error_deg(result.T_prev_curr, T_world_1) < 0.1
    assert not result.degenerate
    # z, roll and pitch are outside the planar problem: no information, not "degenerate"
    assert np.all(result.information[2:5, :] == 0.0)
    assert np.all(result.information[:, 2:5] == 0.0)
    assert np.linalg.eigvalsh(result.information[np.ix_([0, 1, 5], [0, 1, 5])]).min() > 0


def test_a_planar_sweep_is_timed_from_its_first_beam_as_in_ros() -> None:
    # A 180-degree scanner spinning at 10 Hz (beams over 0.05 s from the stamp) on a robot
    # turning at 1.5 rad/s and driving 0.4 m/s: each beam fires from its own pose
    step = np.array([0.04, 0.0, 0.0, 0.0, 0.0, 0.15])  # per 0.1 s scan period
    beams, sweep_s = 181, 0.05

    def at(t_s: float) -> FloatArray:
        """The pose at ``t_s``: the same motion every period, steady within it."""
        periods, fraction = divmod(t_s / 0.1, 1.0)
        return (np.linalg.matrix_power(se3_exp(step), int(periods))
                @ se3_exp(fraction * step))

    def swept(t0_s: float, increment_s: float) -> LaserScan2D:
        angles = np.linspace(-0.5 * math.pi, 0.5 * math.pi, beams)
        ranges = np.empty(beams)
        for i, angle in enumerate(angles):
            T = at(t0_s + i * sweep_s / (beams - 1) if t0_s > 0.0 else 0.0)  # the first: still
            ray = T[:3, :3] @ np.array([math.cos(angle), math.sin(angle), 0.0])
            ranges[i] = cast_box(T[None, :3, 3], ray[None])[0]
        return LaserScan2D(round(t0_s * 1e9), ranges.astype(np.float32), -0.5 * math.pi,
                           math.pi / (beams - 1), 0.1, 30.0, 0.1, "laser", increment_s)

    def error_m(increment_s: float) -> float:
        odometry = LidarOdometry(planar_config())
        for k in range(6):
            result = odometry.register(swept(0.1 * k, increment_s),
                                       None if k == 0 else at(0.1))
        truth = np.linalg.inv(at(0.0)) @ at(0.5)
        return float(np.linalg.norm(result.T_map_sensor[:3, 3] - truth[:3, 3]))

    assert error_m(sweep_s / (beams - 1)) < 0.005
    assert error_m(0.0) > 0.015  # the same beams taken as fired all at once


def max_range_for_no_return(scan: LaserScan2D) -> LaserScan2D:
    """The scan from a 20 m scanner whose driver reports a beam that saw nothing within its
    range as ``range_max``."""
    range_max_m = 20.0
    ranges = np.where(np.isfinite(scan.ranges_m) & (scan.ranges_m < range_max_m),
                      scan.ranges_m, range_max_m)
    return dataclasses.replace(scan, ranges_m=ranges.astype(np.float32), range_max_m=range_max_m)


@pytest.mark.parametrize("no_return", [lambda scan: scan, max_range_for_no_return])
def test_planar_corridor_is_degenerate_along_its_axis_only(
        no_return: Callable[[LaserScan2D], LaserScan2D]) -> None:
    # Beams along the corridor see nothing: inf, or range_max (not a wall 30 m away that
    # moves along with the robot and holds it still)
    odometry = LidarOdometry(LidarOdometryConfig(planar=True))
    odometry.register(no_return(planar_scan(cast_corridor, pose(), 0, beams=720)))
    result = odometry.register(
        no_return(planar_scan(cast_corridor, pose(0.2, 0.05), STEP_NS, beams=720)), pose(0.15))
    assert len(result.degenerate_directions) == 1
    assert abs(result.degenerate_directions[0, 0]) > 0.99
    assert np.all(result.degenerate_directions[:, 2:5] == 0.0)
    assert result.T_prev_curr[0, 3] == pytest.approx(0.15, abs=1e-3)
    assert result.T_prev_curr[1, 3] == pytest.approx(0.05, abs=0.01)


def test_planar_mode_keeps_a_3d_guess_in_the_plane() -> None:
    odometry = LidarOdometry(LidarOdometryConfig(planar=True))
    odometry.register(planar_scan(cast_box, pose(), 0))
    guess = pose(0.1, 0.0, 0.05, roll_rad=0.02, pitch_rad=-0.03)
    result = odometry.register(planar_scan(cast_box, pose(0.1), STEP_NS), guess)
    assert result.T_map_sensor[2, 3] == 0.0
    assert result.T_map_sensor[2, 2] == pytest.approx(1.0)


# --- bad input ---------------------------------------------------------------------------


ROOM = surface_samples("room", 30_000)


def test_the_local_map_forgets_what_no_recent_keyframe_saw() -> None:
    # Back at a place mapped long ago, the old voxels carry the drift accumulated since; a
    # scan that sees mostly them would snap onto them (a jump of the whole drift in one
    # scan, claimed at millimetres). Closing loops is the smoother's job: they age out.
    cfg = LidarOdometryConfig()
    local_map = VoxelPlaneMap(cfg.map_voxel_size_m, cfg.coarse_voxel_size_m,
                              cfg.max_points_per_voxel, cfg.plane_min_points,
                              cfg.plane_max_thickness_ratio, cfg.coarse_plane_max_thickness_ratio,
                              cfg.plane_min_width_ratio, cfg.plane_min_view_cosine,
                              cfg.coarse_support_min_points, cfg.coarse_support_max_offset_m,
                              False)
    old_room = surface_samples("room", 5000)
    here = surface_samples("room", 5000, lo_m=np.array([8.0, -3.0, -1.0]),
                           hi_m=np.array([14.0, 5.0, 2.0]))
    local_map.insert(old_room, np.zeros(3), 40.0, max_age=3)
    for _ in range(3):  # within reach and within age: kept
        local_map.insert(here, np.array([11.0, 1.0, 0.0]), 40.0, max_age=3)
    centroids, _ = local_map.planes()
    assert np.any(centroids[:, 0] < 6.5)
    local_map.insert(here, np.array([11.0, 1.0, 0.0]), 40.0, max_age=3)
    centroids, _ = local_map.planes()
    assert np.all(centroids[:, 0] > 7.5)
    assert local_map.num_planes > 100  # what the keyframes keep seeing stays


def room_scan(stamp_ns: int, T_world_sensor: FloatArray | None = None) -> LidarScan3D:
    """A static scan of the box room."""
    return scan_of(ROOM, pose() if T_world_sensor is None else T_world_sensor, stamp_ns,
                   seed=stamp_ns % 1000)


def started_odometry() -> LidarOdometry:
    """Odometry that has seen three scans of the room at rest."""
    odometry = LidarOdometry()
    for i in range(3):
        odometry.register(room_scan(i * STEP_NS))
    return odometry


@pytest.mark.parametrize("points", [np.empty((0, 3), np.float32), np.empty(0, np.float32),
                                    np.full((500, 3), np.nan, np.float32),
                                    np.full((10, 3), 1.0, np.float32)])
def test_an_empty_scan_is_fully_degenerate_and_keeps_the_guess(
        points: NDArray[np.float32]) -> None:
    odometry = started_odometry()
    guess = pose(0.05, yaw_rad=0.01)
    result = odometry.register(LidarScan3D(3 * STEP_NS, points), guess)
    assert result.T_prev_curr == pytest.approx(guess)
    assert len(result.degenerate_directions) == 6
    assert np.all(result.information == 0.0)
    assert result.fitness == 0.0
    # and the next good scan registers again
    after = odometry.register(room_scan(4 * STEP_NS, pose(0.05, yaw_rad=0.01)))
    assert not after.degenerate
    assert np.linalg.norm(after.T_map_sensor[:3, 3] - [0.05, 0.0, 0.0]) < 0.01


def test_non_finite_points_are_ignored() -> None:
    clean = room_scan(3 * STEP_NS, pose(0.1))
    dirty_points = np.vstack([clean.points_m, np.full((100, 3), np.nan, np.float32),
                              np.full((100, 3), np.inf, np.float32),
                              np.array([[0.0, 0.0, 0.0], [1e6, 0.0, 0.0]], np.float32)])
    offsets = np.concatenate([np.zeros(len(clean.points_m)), np.full(202, np.nan)])
    dirty = LidarScan3D(clean.stamp_ns, dirty_points, offsets.astype(np.float32))
    expected = started_odometry().register(clean)
    result = started_odometry().register(dirty)
    assert result.T_map_sensor == pytest.approx(expected.T_map_sensor, abs=1e-9)


def test_first_scan_starts_the_map_at_the_origin() -> None:
    result = LidarOdometry().register(room_scan(0))
    assert np.array_equal(result.T_map_sensor, np.eye(4))
    assert len(result.degenerate_directions) == 6


def test_a_long_gap_drops_the_velocity_and_a_stamp_going_back_is_survived() -> None:
    odometry = LidarOdometry()
    for i in range(4):  # moving at 0.5 m/s
        odometry.register(room_scan(i * STEP_NS, pose(0.05 * i)))
    # 60 s later the robot stands 0.2 m further on: constant velocity would guess 30 m
    late = odometry.register(room_scan(63 * 10 * STEP_NS, pose(0.35)))
    assert late.T_map_sensor[0, 3] == pytest.approx(0.35, abs=0.01)
    early = odometry.register(room_scan(5 * STEP_NS, pose(0.35)))
    assert early.T_map_sensor[0, 3] == pytest.approx(0.35, abs=0.01)


def test_lost_odometry_restarts_its_map() -> None:
    # Carried off into another room: nothing of the old map in reach.
    odometry = started_odometry()
    other_room = surface_samples("room", 20_000, lo_m=np.array([-2.0, -1.5, -0.3]),
                                 hi_m=np.array([2.5, 1.8, 0.9]))
    failures = [odometry.register(scan_of(other_room, pose(), (3 + i) * STEP_NS, seed=i))
                for i in range(LidarOdometryConfig().max_failed_scans)]
    assert all(len(r.degenerate_directions) == 6 for r in failures)
    # The last failure started a new map, the next scans register against it
    resumed = odometry.register(scan_of(other_room, pose(0.1), 10 * STEP_NS, seed=10))
    assert not resumed.degenerate
    assert resumed.T_prev_curr[0, 3] == pytest.approx(0.1, abs=0.01)


def test_bad_shapes_and_modes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"points_m must be \(N, 3\)"):
        LidarOdometry().register(LidarScan3D(0, np.zeros((10, 2), np.float32)))
    with pytest.raises(ValueError, match="3 time offsets for 10 points"):
        LidarOdometry().register(LidarScan3D(0, np.zeros((10, 3), np.float32),
                                             np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="planar=True got a LidarScan3D"):
        LidarOdometry(LidarOdometryConfig(planar=True)).register(room_scan(0))
    with pytest.raises(ValueError, match="planar=False got a LaserScan2D"):
        LidarOdometry().register(planar_scan(cast_box, pose(), 0))


@pytest.mark.parametrize("field", ["voxel_size_m", "max_iterations", "degeneracy_threshold"])
def test_config_rejects_non_positive_values(field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be positive"):
        dataclasses.replace(LidarOdometryConfig(), **{field: 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"min_range_m 5\.0 must be below"):
        LidarOdometryConfig(min_range_m=5.0, max_range_m=2.0)
