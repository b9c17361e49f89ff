"""Record a drive through a simulated world into a ROS 2 bag (MCAP), without ROS.

``record_drive`` runs the headless simulator along its world's route (pure pursuit on the
true pose, commands straight into the MCU model as the driver would send them) and writes
what the robot would record: the lidar (``/points`` with per-point time ``t``, and ``/scan``),
wheel odometry integrated from the MCU's encoder ticks exactly as the driver does
(``/odom/wheel``), ``/imu``, ``/tether/length``, BeiDou (``/gnss/fix``) and 5G (``/radio/fix``)
fixes, the true pose (``/sim/ground_truth``, 50 Hz) and the sensor mounts (``/tf_static``).
Stamps are simulated time. The camera is off: its frames would dwarf everything else.

``record_realistic_2d`` writes what a real 2D-lidar crawler bag looks like, for testing the
offline SLAM command against something harder than the simulator's clean topics: a 180-degree
scanner at 1-degree steps that reports no-returns as ``range_max`` (as SICK and Hokuyo do),
wheel odometry with drift (a slowly wandering scale error and a heading bias per metre),
jittered stamps on an epoch clock, receive delays, and a few per cent of scans and odometry
messages lost.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from firmware_bridge.messages import Encoders, Imu, SetTwist, Tether
from navigation.bag_io import BagWriter, GeodeticFix, ImuReading, TetherLength
from navigation.path import PathFollower
from navigation.records import FixSource, LaserScan2D, LidarScan3D, OdometrySample, PositionFix
from navigation.wheel_odometry import OdometryState, WheelOdometry
from sim_worlds.simulator.lidar import Lidar, LidarScan
from sim_worlds.simulator.sdf import LidarSpec
from sim_worlds.simulator.simulation import (
    GnssFix,
    LidarFrame,
    PlanarScanFrame,
    RadioFix,
    SimConfig,
    Simulation,
)

FloatArray = NDArray[np.float64]
_NS = 1_000_000_000
COMMAND_PERIOD_STEPS = 20
"""10 Hz of velocity commands at the 200 Hz physics step, as ``benchmarks.sim.drive``."""
LOOKAHEAD_M = 0.8
ROUTE_END_MARGIN_M = 1.0
"""``duration_s=None`` drives until this close to the end of the route."""
UNOBSERVED_VAR = 1e6
"""Variance for what wheel odometry does not observe (z, roll, pitch), as the driver writes."""
IMU_TILT_NOISE_RAD = 0.01
IMU_YAW_NOISE_RAD = 0.1
"""Orientation noise reported on /imu, as the driver's defaults (crawler.config.ImuConfig)."""
REALISTIC_EPOCH_NS = 1_700_000_000_000_000_000
"""Clock of ``record_realistic_2d``: stamps are wall-clock-like, not simulated time."""

ProgressCallback = Callable[["RecordingProgress"], None]


@dataclass(frozen=True)
class RecordingProgress:
    """Reported about once per simulated second."""

    sim_s: float
    duration_s: float | None
    """The requested duration; None: driving to the end of the route."""
    distance_m: float
    messages: int


@dataclass(frozen=True)
class RecordingSummary:
    """What a recording run wrote."""

    bag_path: Path
    world: str
    sim_s: float
    wall_s: float
    true_distance_m: float
    """Distance the body actually moved (ground truth)."""
    odometry_distance_m: float
    """Distance the recorded wheel odometry claims (includes slip and any injected drift)."""
    message_counts: dict[str, int]
    bag_bytes: int
    drift: dict[str, float] = field(default_factory=dict)
    """``record_realistic_2d``: the odometry error parameters drawn for this run."""

    @property
    def bytes_per_minute(self) -> float:
        """Bag size per minute of simulated time."""
        return self.bag_bytes / max(self.sim_s / 60.0, 1e-9)


# --- conversions (simulator and MCU records -> bag records) --------------------------------


def odometry_sample(state: OdometryState) -> OdometrySample:
    """The driver's wheel odometry as a 6x6-covariance pose, as ``crawler_driver`` fills it."""
    T = np.eye(4)
    c, s = math.cos(state.yaw_rad), math.sin(state.yaw_rad)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = state.x_m, state.y_m
    covariance = np.diag([0.0, 0.0, UNOBSERVED_VAR, UNOBSERVED_VAR, UNOBSERVED_VAR, 0.0])
    index = [0, 1, 5]
    covariance[np.ix_(index, index)] = state.covariance_xyyaw
    return OdometrySample(state.stamp_ns, T, covariance)


def imu_reading(sample: Imu, gyro_noise_radps: float, accel_noise_mps2: float) -> ImuReading:
    """An MCU IMU sample with the covariances the driver reports."""
    tilt2, yaw2 = IMU_TILT_NOISE_RAD**2, IMU_YAW_NOISE_RAD**2
    return ImuReading(
        sample.stamp_us * 1000,
        np.array([sample.quat_x, sample.quat_y, sample.quat_z, sample.quat_w]),
        np.array([sample.gyro_x_radps, sample.gyro_y_radps, sample.gyro_z_radps]),
        np.array([sample.accel_x_mps2, sample.accel_y_mps2, sample.accel_z_mps2]),
        np.diag([tilt2, tilt2, yaw2]), np.eye(3) * gyro_noise_radps**2,
        np.eye(3) * accel_noise_mps2**2)


def geodetic_fix(fix: GnssFix) -> GeodeticFix:
    """A simulated BeiDou fix with its diagonal covariance."""
    h2, v2 = fix.sigma_horizontal_m**2, fix.sigma_vertical_m**2
    return GeodeticFix(fix.stamp_ns, fix.latitude_deg, fix.longitude_deg, fix.height_m,
                       np.diag([h2, h2, v2]))


def radio_fix(fix: RadioFix) -> PositionFix:
    """A simulated 5G fix (vertical variance 4 sigma^2, as the sim node reports)."""
    s2 = fix.sigma_m**2
    return PositionFix(fix.stamp_ns, fix.position_m.copy(), np.diag([s2, s2, 4.0 * s2]),
                       FixSource.RADIO_5G)


def planar_scan(scan: LidarScan, spec: LidarSpec, period_s: float,
                frame_id: str = "lidar_link") -> LaserScan2D:
    """A one-row simulated scan as a LaserScan (no return: +inf, REP-117)."""
    azimuths = scan.azimuths_rad
    increment = float(azimuths[1] - azimuths[0]) if len(azimuths) > 1 else 0.0
    return LaserScan2D(scan.stamp_ns, scan.ranges_m[0].astype(np.float32), float(azimuths[0]),
                       increment, spec.range_min_m, spec.range_max_m, period_s, frame_id)


def cloud_scan(scan: LidarScan, voxel_m: float | None,
               frame_id: str = "lidar_link") -> LidarScan3D:
    """Raw points with their time offsets; ``voxel_m`` keeps the first point of each voxel.

    Keeping a raw point (not a centroid) keeps each point paired with its own firing time.
    """
    points, offsets = scan.points_m, scan.point_time_offsets_s
    if voxel_m is not None and len(points):
        cells = np.floor(points / voxel_m).astype(np.int64)
        cells -= cells.min(axis=0)
        keys = (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]  # < 2**21 voxels per axis
        _, first = np.unique(keys, return_index=True)
        keep = np.sort(first)
        points, offsets = points[keep], offsets[keep]
    return LidarScan3D(scan.stamp_ns, points, offsets, frame_id)


def _static_transforms(sim: Simulation) -> dict[tuple[str, str], FloatArray]:
    transforms: dict[tuple[str, str], FloatArray] = {("base_link", "imu_link"): np.eye(4)}
    if hasattr(sim, "T_base_lidar"):
        transforms[("base_link", "lidar_link")] = sim.T_base_lidar
    if sim.navsat is not None:
        transforms[("base_link", "gnss_link")] = sim.T_base_navsat
    return transforms


def _command(sim: Simulation, follower: PathFollower) -> None:
    """Pure pursuit that remembers its progress: a route into a room and back out doubles
    back, and a follower without memory circles at the dead end."""
    s = sim.body.state
    sim.mcu.handle(SetTwist(*follower.command(s.x_m, s.y_m, s.yaw_rad)))


def _finished(follower: PathFollower, step: int, max_steps: int, to_route_end: bool) -> bool:
    if step >= max_steps:
        return True
    return to_route_end and follower.progress_m >= follower.path.length_m - ROUTE_END_MARGIN_M


def _max_steps(sim: Simulation, duration_s: float | None, speed_mps: float) -> int:
    if duration_s is not None:
        return round(duration_s / sim.config.step_s)
    if speed_mps <= 0.0:
        raise ValueError("driving to the end of the route needs a positive speed")
    # Twice the time the route takes at speed, plus the start-up: a stuck robot still stops.
    return round((2.0 * sim.route.length_m / speed_mps + 30.0) / sim.config.step_s)


# --- recording the simulator's topics --------------------------------------------------------


def record_drive(world: str | Path, out_bag: str | Path, duration_s: float | None = None,
                 speed_mps: float = 0.5, planar_scan_samples: int = 720, seed: int = 0,
                 lidar_3d: bool = True, cloud_voxel_m: float | None = None,
                 progress: ProgressCallback | None = None,
                 overwrite: bool = False) -> RecordingSummary:
    """Drive ``world``'s route for ``duration_s`` (None: to its end) and record a bag.

    ``planar_scan_samples`` > 0 adds a 360-degree ``/scan`` at the lidar; ``lidar_3d=False``
    leaves ``/points`` out (a 3D scan is about 460 KB raw); ``cloud_voxel_m`` thins it.
    The bag appears at ``out_bag`` only once complete (``.mcap``: one file; else a folder).
    """
    if planar_scan_samples <= 0 and not lidar_3d:
        raise ValueError("no lidar to record: give planar_scan_samples > 0 or lidar_3d=True")
    started = time.perf_counter()
    sim = Simulation(world, SimConfig(seed=seed, camera=False,
                                      planar_scan_samples=planar_scan_samples))
    mcu = sim.mcu.params
    odometry = WheelOdometry(mcu.ticks_per_m, mcu.track_width_m)
    lidar_period_s = _lidar_period_s(sim)
    max_steps = _max_steps(sim, duration_s, speed_mps)
    follower = PathFollower(sim.route, LOOKAHEAD_M, speed_mps)
    next_report_ns = _NS
    start_distance_m = sim.body.state.distance_m
    with BagWriter(out_bag, overwrite=overwrite) as bag:
        bag.write_static_transforms(0, _static_transforms(sim))
        step = 0
        while not _finished(follower, step, max_steps, duration_s is None):
            # Command: pure pursuit on the true pose, straight into the MCU
            if step % COMMAND_PERIOD_STEPS == 0:
                _command(sim, follower)
            events = sim.step()
            step += 1
            # Proprioception: the MCU's telemetry as the driver turns it into topics
            for message in sim.mcu.due_telemetry():
                match message:
                    case Encoders(stamp_us, left_ticks, right_ticks):
                        state = odometry.update(stamp_us * 1000, left_ticks, right_ticks)
                        bag.write_odometry(odometry_sample(state), linear_mps=state.linear_mps,
                                           angular_radps=state.angular_radps)
                        bag.write_ground_truth(stamp_us * 1000, sim.T_world_base(),
                                               speed_mps=sim.body.state.speed_mps)
                    case Imu():
                        bag.write_imu(imu_reading(message, mcu.gyro_noise_radps,
                                                  mcu.accel_noise_mps2))
                    case Tether(stamp_us, length_m):
                        bag.write_tether(TetherLength(stamp_us * 1000, length_m))
                    case _:
                        pass
            # Exteroception: the simulator's sensor events
            for event in events:
                match event:
                    case LidarFrame() if lidar_3d:
                        bag.write_cloud(cloud_scan(event.scan, cloud_voxel_m))
                    case PlanarScanFrame() if sim.planar is not None:
                        bag.write_scan_2d(planar_scan(event.scan, sim.planar.spec,
                                                      lidar_period_s))
                    case GnssFix():
                        bag.write_navsat(geodetic_fix(event))
                    case RadioFix():
                        bag.write_position_fix(radio_fix(event))
                    case _:
                        pass
            if progress is not None and sim.now_ns >= next_report_ns:
                next_report_ns += _NS
                progress(RecordingProgress(sim.now_ns / _NS, duration_s,
                                           sim.body.state.distance_m - start_distance_m,
                                           bag.message_count))
        counts = dict(bag.counts)
    return RecordingSummary(
        Path(out_bag), str(world), sim.now_ns / _NS, time.perf_counter() - started,
        sim.body.state.distance_m - start_distance_m,
        odometry.state(sim.now_ns).distance_m, counts, _size_bytes(Path(out_bag)))


def _lidar_period_s(sim: Simulation) -> float:
    rate = sim.config.lidar_rate_hz
    if rate is None:
        spec = next((s for s in sim.world.sensors_of(sim.config.robot_model)
                     if s.sensor_type in ("gpu_lidar", "lidar")), None)
        rate = spec.update_rate_hz if spec is not None else 10.0
    return 1.0 / rate


def _size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


# --- a bag that looks like real 2D-lidar data ------------------------------------------------


@dataclass(frozen=True)
class _Pending:
    """A message waiting to be written in receive-time order."""

    log_time_ns: int
    sequence: int
    record: LaserScan2D | OdometrySample
    twist: tuple[float, float] = (0.0, 0.0)


def record_realistic_2d(world: str | Path, out_bag: str | Path,
                        duration_s: float | None = 60.0, speed_mps: float = 0.5,
                        seed: int = 0, fov_deg: float = 180.0, resolution_deg: float = 1.0,
                        range_max_m: float = 20.0, range_noise_m: float = 0.015,
                        scan_rate_hz: float = 10.0, drop_probability: float = 0.03,
                        stamp_jitter_s: float = 0.003, receive_delay_s: float = 0.02,
                        scale_error: float = 0.03, scale_wander: float = 0.015,
                        heading_bias_rad_per_m: float = 0.004,
                        progress: ProgressCallback | None = None,
                        overwrite: bool = False) -> RecordingSummary:
    """Drive ``world``'s route and record a 2D bag with a real robot's imperfections.

    Topics: ``/scan`` (LaserScan, ``fov_deg`` at ``resolution_deg``, no return =
    ``range_max_m``), ``/odom/wheel`` (50 Hz), ``/sim/ground_truth`` (50 Hz, exact stamps)
    and ``/tf_static``. Odometry error on top of the track slip: the distance is scaled by
    ``1 + scale_error + scale_wander * sin(2 pi t / 45 s + phase)`` and the heading drifts by
    ``heading_bias_rad_per_m`` (random sign) per metre driven. Header stamps are off by
    ``N(0, stamp_jitter_s)``, scan periods vary by 0.5 %, messages arrive 0 to
    ``receive_delay_s`` late, and each scan or odometry message is lost with
    ``drop_probability``. All stamps are on an epoch clock from ``REALISTIC_EPOCH_NS``. The
    scanner spins: its beams sweep the field of view in ``fov_deg / 360`` of a period while
    the robot moves, and each scan is stamped at its first beam with the beams'
    ``time_increment``, as ROS drivers do.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed + 1000)
    sim = Simulation(world, SimConfig(seed=seed, camera=False, planar_scan_samples=0))
    sim.lidar = None  # the 3D lidar is not part of this robot; its mount holds the 2D one
    T_base_laser = sim.T_base_lidar
    half_fov = math.radians(fov_deg) / 2.0
    samples = round(fov_deg / resolution_deg) + 1
    scanner = Lidar(LidarSpec(samples, -half_fov, half_fov, 1, 0.0, 0.0, 0.05, range_max_m,
                              0.0, range_noise_m), dropout_probability=0.003, seed=seed + 7)
    mcu = sim.mcu.params
    odometry = WheelOdometry(mcu.ticks_per_m, mcu.track_width_m)
    drift = {"scale_error": scale_error, "scale_wander": scale_wander,
             "scale_phase_rad": float(rng.uniform(0.0, math.tau)),
             "heading_bias_rad_per_m": heading_bias_rad_per_m * float(rng.choice([-1.0, 1.0]))}
    track_m = [0.0, 0.0]  # drifted track positions behind the odometry's ticks
    last_ticks: tuple[int, int] | None = None
    pending: list[_Pending] = []
    truth: list[tuple[int, FloatArray, float]] = []
    scan_period_s = (1.0 / scan_rate_hz) * (1.0 + rng.normal(0.0, 0.005))
    next_scan_ns = round(scan_period_s * _NS)
    sweep_s = scan_period_s * fov_deg / 360.0
    laser_poses: deque[tuple[int, FloatArray]] = deque(
        maxlen=round(2.0 * sweep_s / sim.config.step_s) + 2)
    max_steps = _max_steps(sim, duration_s, speed_mps)
    follower = PathFollower(sim.route, LOOKAHEAD_M, speed_mps)
    start_distance_m = sim.body.state.distance_m
    next_report_ns = _NS
    step = 0

    def stamp_and_receive(true_ns: int) -> tuple[int, int]:
        stamp = REALISTIC_EPOCH_NS + true_ns + round(rng.normal(0.0, stamp_jitter_s) * _NS)
        return stamp, stamp + round(rng.uniform(0.0, receive_delay_s) * _NS)

    while not _finished(follower, step, max_steps, duration_s is None):
        if step % COMMAND_PERIOD_STEPS == 0:
            _command(sim, follower)
        sim.step()
        step += 1
        laser_poses.append((sim.now_ns, sim.T_world_base() @ T_base_laser))
        for message in sim.mcu.due_telemetry():
            if not isinstance(message, Encoders):
                continue
            truth.append((REALISTIC_EPOCH_NS + sim.now_ns, sim.T_world_base(),
                          sim.body.state.speed_mps))
            # Drift: scale the distance, bend the heading, as worn tracks and a soft floor do
            ticks = (message.left_ticks, message.right_ticks)
            if last_ticks is not None:
                d_left = (ticks[0] - last_ticks[0]) / mcu.ticks_per_m
                d_right = (ticks[1] - last_ticks[1]) / mcu.ticks_per_m
                t_s = sim.now_ns / _NS
                scale = 1.0 + scale_error + scale_wander * math.sin(
                    math.tau * t_s / 45.0 + drift["scale_phase_rad"])
                bend = (0.5 * drift["heading_bias_rad_per_m"] * abs(0.5 * (d_left + d_right))
                        * mcu.track_width_m)
                track_m[0] += scale * d_left - bend
                track_m[1] += scale * d_right + bend
            last_ticks = ticks
            state = odometry.update(sim.now_ns, round(track_m[0] * mcu.ticks_per_m),
                                    round(track_m[1] * mcu.ticks_per_m))
            if rng.random() < drop_probability:
                continue
            stamp, received = stamp_and_receive(sim.now_ns)
            sample = odometry_sample(state)
            pending.append(_Pending(received, len(pending),
                                    OdometrySample(stamp, sample.T_odom_base, sample.covariance),
                                    (state.linear_mps, state.angular_radps)))
        if sim.now_ns >= next_scan_ns:
            next_scan_ns += round(scan_period_s * _NS * (1.0 + rng.normal(0.0, 0.005)))
            # The sweep: from where the laser was when its first beam fired to now
            first_ns = sim.now_ns - round(sweep_s * _NS)
            _, T_world_first = min(laser_poses, key=lambda pose: abs(pose[0] - first_ns))
            raw = scanner.scan(sim.scene, sim.now_ns, laser_poses[-1][1], T_world_first, sweep_s)
            if rng.random() >= drop_probability:
                ranges = raw.ranges_m[0].astype(np.float32)
                ranges[~np.isfinite(ranges)] = range_max_m  # no return reads as max range
                stamp, received = stamp_and_receive(sim.now_ns)  # sent once the sweep ends
                stamp -= sim.now_ns - first_ns
                scan = LaserScan2D(stamp, ranges, -half_fov, math.radians(resolution_deg), 0.05,
                                   range_max_m, 1.0 / scan_rate_hz, "laser",
                                   sweep_s / max(samples - 1, 1))
                pending.append(_Pending(received, len(pending), scan))
        if progress is not None and sim.now_ns >= next_report_ns:
            next_report_ns += _NS
            progress(RecordingProgress(sim.now_ns / _NS, duration_s,
                                       sim.body.state.distance_m - start_distance_m,
                                       len(pending)))
    # Write in receive order, as a recorder would
    pending.sort(key=lambda p: (p.log_time_ns, p.sequence))
    with BagWriter(out_bag, overwrite=overwrite) as bag:
        bag.write_static_transforms(REALISTIC_EPOCH_NS, {("base_link", "laser"): T_base_laser})
        truth_iter = iter(truth)
        next_truth = next(truth_iter, None)
        for item in pending:
            while next_truth is not None and next_truth[0] <= item.log_time_ns:
                bag.write_ground_truth(next_truth[0], next_truth[1], speed_mps=next_truth[2])
                next_truth = next(truth_iter, None)
            if isinstance(item.record, LaserScan2D):
                bag.write_scan_2d(item.record, log_time_ns=item.log_time_ns)
            else:
                bag.write_odometry(item.record, linear_mps=item.twist[0],
                                   angular_radps=item.twist[1], log_time_ns=item.log_time_ns)
        while next_truth is not None:
            bag.write_ground_truth(next_truth[0], next_truth[1], speed_mps=next_truth[2])
            next_truth = next(truth_iter, None)
        counts = dict(bag.counts)
    return RecordingSummary(
        Path(out_bag), str(world), sim.now_ns / _NS, time.perf_counter() - started,
        sim.body.state.distance_m - start_distance_m, odometry.state(sim.now_ns).distance_m,
        counts, _size_bytes(Path(out_bag)), drift)
