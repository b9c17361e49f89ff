"""``crawler bench nav``: four estimators on the same simulated drive of each world.

Each world's route is driven in the headless simulator (pure pursuit on ground truth, at
``SPEED_MPS``); every sensor event is handed, in the same order, to:

- ``fused``: our lidar odometry + wheel odometry + tether + 5G/BeiDou + site landmarks,
  smoothed in a factor graph;
- ``lidar_only``: our lidar odometry alone;
- ``kiss_icp``: the ``kiss-icp`` package on the same raw scans (its own deskewing);
- ``wheel_odometry``: the driver's encoder odometry.

All start from the true start pose (a crew starts at a surveyed manhole); nothing is aligned
afterwards: errors are in the site frame. Per world and estimator: ``ate_rmse_m``,
``final_error_m``, ``drift_pct`` (final error / distance travelled); for ours also
``ms_per_scan`` and ``real_time_factor`` (scan period / time per scan, one core).

``scans_2d``: a robot with a 2D scanner instead (180 degrees at 1 degree, 20 m, 10 Hz) and
drifting odometry, recorded as a real robot's bag would be (jittered stamps, late and dropped
messages: ``record_realistic_2d``) in the shelter, run through ``crawler slam run``'s code
(``run_offline_slam``): ours against the bag's own wheel odometry, errors in the start frame.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from firmware_bridge.messages import Imu, SetTwist
from navigation.bag_io import BagReader, SensorRole
from navigation.map_export import read_tum
from navigation.offline import run_offline_slam
from navigation.path import PathFollower
from navigation.records import FixSource, LidarScan3D, OdometrySample, PositionFix
from navigation.wheel_odometry import WheelOdometry
from sim_worlds.simulator.simulation import (
    GnssFix,
    LidarFrame,
    RadioFix,
    SimConfig,
    SimEvent,
    Simulation,
)

FloatArray = NDArray[np.float64]
SPEED_MPS = 0.8
COMMAND_PERIOD_STEPS = 20
ODOMETRY_PERIOD_STEPS = 4  # 50 Hz encoder telemetry at the 200 Hz physics step
TETHER_PERIOD_STEPS = 20  # 10 Hz cable counter
END_DWELL_S = 3.0  # the crew stops under the end manhole or shaft before recovering the robot
PLANAR_WORLD = "civil_defence_shelter"
PLANAR_DRIVE_S = 380.0  # the shelter's upper level: its rooms and the corridor loop, back to
# the entry (the ramp down follows; a 2D scanner tilted on it sees the floor)
PLANAR_SPEED_MPS = 0.5


OURS = ("fused", "lidar_only")


@dataclass(frozen=True)
class Extrinsics:
    """Mounting of the lidar on the robot."""

    T_base_lidar: FloatArray


class Estimator(Protocol):
    """What the benchmark feeds and reads back; every method takes ground-truth-free data."""

    name: str
    seconds: float
    """Wall time spent inside the estimator."""

    def on_scan(self, scan: LidarScan3D) -> None:
        """A raw lidar sweep."""

    def on_odometry(self, sample: OdometrySample) -> None:
        """A wheel-odometry sample."""

    def on_fix(self, fix: PositionFix) -> None:
        """A 5G or BeiDou position fix."""

    def on_tether(self, stamp_ns: int, length_m: float) -> None:
        """A cable-counter reading."""

    def on_tilt(self, stamp_ns: int, roll_rad: float, pitch_rad: float) -> None:
        """Roll and pitch from the MCU's AHRS."""

    def trajectory(self) -> list[tuple[int, FloatArray]]:
        """(stamp_ns, T_site_base) estimates, in time order."""


class _Listens:
    """No-op inputs: an estimator overrides the ones it uses."""

    def on_scan(self, scan: LidarScan3D) -> None:
        """Not used."""

    def on_odometry(self, sample: OdometrySample) -> None:
        """Not used."""

    def on_fix(self, fix: PositionFix) -> None:
        """Not used."""

    def on_tether(self, stamp_ns: int, length_m: float) -> None:
        """Not used."""

    def on_tilt(self, stamp_ns: int, roll_rad: float, pitch_rad: float) -> None:
        """Not used."""


@dataclass
class WheelOnly(_Listens):
    """Dead reckoning from the encoders, anchored at the start pose."""

    T_site_start: FloatArray
    name: str = "wheel_odometry"
    seconds: float = 0.0
    _poses: list[tuple[int, FloatArray]] = field(default_factory=list)

    def on_odometry(self, sample: OdometrySample) -> None:
        """Chain the odometry pose onto the start pose."""
        self._poses.append((sample.stamp_ns, self.T_site_start @ sample.T_odom_base))

    def trajectory(self) -> list[tuple[int, FloatArray]]:
        """The chained poses."""
        return self._poses


class KissIcpBaseline(_Listens):
    """KISS-ICP (Vizzo et al., RA-L 2023) on the raw scans, from the true start pose."""

    name = "kiss_icp"

    def __init__(self, T_site_start: FloatArray, extrinsics: Extrinsics, max_range_m: float,
                 sweep_s: float) -> None:
        from kiss_icp.config import KISSConfig
        from kiss_icp.kiss_icp import KissICP

        config = KISSConfig()
        config.data.max_range = max_range_m
        config.data.min_range = 0.3
        config.mapping.voxel_size = max_range_m / 100.0  # KISS-ICP's own default rule
        self._icp = KissICP(config)
        self._T_site_lidar0 = T_site_start @ extrinsics.T_base_lidar
        self._T_lidar_base = np.linalg.inv(extrinsics.T_base_lidar)
        self._sweep_s = sweep_s
        self._poses: list[tuple[int, FloatArray]] = []
        self.seconds = 0.0

    def on_scan(self, scan: LidarScan3D) -> None:
        """Register the sweep; KISS-ICP deskews to mid-sweep, so that is the pose's time."""
        started = time.perf_counter()
        offsets = scan.point_time_offsets_s
        fraction = (np.zeros(len(scan.points_m)) if offsets is None
                    else np.clip(offsets / self._sweep_s + 1.0, 0.0, 1.0))
        self._icp.register_frame(scan.points_m.astype(np.float64), fraction.astype(np.float64))
        T_site_base = self._T_site_lidar0 @ self._icp.last_pose @ self._T_lidar_base
        self._poses.append((scan.stamp_ns - round(self._sweep_s * 5e8), T_site_base))
        self.seconds += time.perf_counter() - started

    def trajectory(self) -> list[tuple[int, FloatArray]]:
        """Its poses."""
        return self._poses


class OursFused:
    """Our pipeline: lidar odometry + wheel + tether + 5G/BeiDou + landmarks, smoothed."""

    name = "fused"

    def __init__(self, sim: Simulation, extrinsics: Extrinsics) -> None:
        from navigation.localization import LocalizationPipeline
        from navigation.site import site_from_truth

        site = site_from_truth(sim.truth)
        if site.tether is not None:
            # The cable counter is calibrated before a mission (against a tape), to 0.1 %.
            site = dataclasses.replace(site, tether=dataclasses.replace(
                site.tether, stretch_nominal=sim.config.tether_stretch, stretch_sigma=0.001))
        self.pipeline = LocalizationPipeline(site, extrinsics.T_base_lidar)
        self.pipeline.initialize(sim.T_world_base(), sim.now_ns)
        self.seconds = 0.0
        self.lidar_seconds = 0.0

    def on_scan(self, scan: LidarScan3D) -> None:
        """Lidar odometry, then the smoother."""
        started = time.perf_counter()
        self.pipeline.on_scan(scan)
        self.seconds += time.perf_counter() - started

    def on_odometry(self, sample: OdometrySample) -> None:
        """Wheel odometry into the smoother."""
        started = time.perf_counter()
        self.pipeline.on_odometry(sample)
        self.seconds += time.perf_counter() - started

    def on_fix(self, fix: PositionFix) -> None:
        """A 5G or BeiDou fix."""
        started = time.perf_counter()
        self.pipeline.on_fix(fix)
        self.seconds += time.perf_counter() - started

    def on_tether(self, stamp_ns: int, length_m: float) -> None:
        """The cable counter."""
        started = time.perf_counter()
        self.pipeline.on_tether(stamp_ns, length_m)
        self.seconds += time.perf_counter() - started

    def on_tilt(self, stamp_ns: int, roll_rad: float, pitch_rad: float) -> None:
        """The AHRS's roll and pitch."""
        started = time.perf_counter()
        self.pipeline.localizer.add_imu_tilt(stamp_ns, roll_rad, pitch_rad)
        self.seconds += time.perf_counter() - started

    def trajectory(self) -> list[tuple[int, FloatArray]]:
        """The smoothed key poses (offline smoothing at the end, as the offline command does)."""
        return self.pipeline.localizer.smooth()


class OursLidarOnly(_Listens):
    """Our lidar odometry alone, from the true start pose."""

    name = "lidar_only"

    def __init__(self, T_site_start: FloatArray, extrinsics: Extrinsics) -> None:
        from navigation.lidar_odometry import LidarOdometry

        self._odometry = LidarOdometry()
        self._T_site_lidar0 = T_site_start @ extrinsics.T_base_lidar
        self._T_lidar_base = np.linalg.inv(extrinsics.T_base_lidar)
        self._poses: list[tuple[int, FloatArray]] = []
        self.seconds = 0.0

    def on_scan(self, scan: LidarScan3D) -> None:
        """Register the scan."""
        started = time.perf_counter()
        result = self._odometry.register(scan)
        self._poses.append((scan.stamp_ns,
                            self._T_site_lidar0 @ result.T_map_sensor @ self._T_lidar_base))
        self.seconds += time.perf_counter() - started

    def trajectory(self) -> list[tuple[int, FloatArray]]:
        """Its poses."""
        return self._poses


@dataclass
class Drive:
    """Ground truth of a drive, for scoring."""

    truth_stamps_ns: list[int] = field(default_factory=list)
    truth_positions_m: list[FloatArray] = field(default_factory=list)
    distance_m: float = 0.0
    scans: int = 0
    sim_seconds: float = 0.0
    _stamps: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def position_at(self, stamp_ns: int) -> FloatArray:
        """True position at ``stamp_ns`` (linear interpolation)."""
        if len(self._stamps) != len(self.truth_stamps_ns):  # arrays made once, not per call
            self._stamps = np.asarray(self.truth_stamps_ns)
        stamps = self._stamps
        i = int(np.clip(np.searchsorted(stamps, stamp_ns), 1, len(stamps) - 1))
        t0, t1 = stamps[i - 1], stamps[i]
        w = 0.0 if t1 == t0 else float(np.clip((stamp_ns - t0) / (t1 - t0), 0.0, 1.0))
        return (1 - w) * self.truth_positions_m[i - 1] + w * self.truth_positions_m[i]


def drive_world(world: str, estimators_for: Callable[[Simulation], list[Estimator]],
                progress: Callable[[str], None], max_sim_s: float | None = None,
                seed: int = 1, config: SimConfig | None = None, speed_mps: float = SPEED_MPS,
                on_events: Callable[[Simulation, list[SimEvent]], None] | None = None,
                ) -> tuple[Drive, list[Estimator]]:
    """Drive the whole route once, feeding every estimator the same events.

    ``config`` replaces the simulation settings (default: no camera); ``on_events`` sees every
    step's sensor events after the estimators have (the perception benchmark's hook).
    """
    sim = Simulation(world, config or SimConfig(camera=False, seed=seed))
    estimators = estimators_for(sim)
    mcu = sim.mcu
    odometry = WheelOdometry(mcu.params.ticks_per_m, mcu.params.track_width_m)
    drive = Drive()
    route_end = sim.route.length_m - 0.1  # stop under the end manhole (or shaft), not short of it
    tethered = sim.truth.pipe is not None  # crawlers are tethered in pipes only
    step = 0
    last_report = time.monotonic()
    arrived_ns: int | None = None
    follower = PathFollower(sim.route, 0.8, speed_mps)
    while max_sim_s is None or sim.now_ns * 1e-9 < max_sim_s:
        if arrived_ns is None and follower.progress_m >= route_end:
            arrived_ns = sim.now_ns
        if arrived_ns is not None and sim.now_ns - arrived_ns > END_DWELL_S * 1e9:
            break
        if step % COMMAND_PERIOD_STEPS == 0:
            s = sim.body.state
            twist = ((0.0, 0.0) if arrived_ns is not None else
                     follower.command(s.x_m, s.y_m, s.yaw_rad))
            mcu.handle(SetTwist(*twist))
        events = sim.step()
        step += 1
        T_true = sim.T_world_base()
        drive.truth_stamps_ns.append(sim.now_ns)
        drive.truth_positions_m.append(T_true[:3, 3].copy())
        if step % ODOMETRY_PERIOD_STEPS == 0:
            left, right = (round(p * mcu.params.ticks_per_m) for p in mcu.track_pos_m)
            state = odometry.update(sim.now_ns, left, right)
            sample = OdometrySample(sim.now_ns, _planar_pose(state.x_m, state.y_m,
                                                             state.yaw_rad))
            for estimator in estimators:
                estimator.on_odometry(sample)
        if step % TETHER_PERIOD_STEPS == 0:
            roll, pitch = _tilt(mcu.imu_sample())
            for estimator in estimators:
                estimator.on_tilt(sim.now_ns, roll, pitch)
        if tethered and step % TETHER_PERIOD_STEPS == 0:
            for estimator in estimators:
                estimator.on_tether(sim.now_ns, mcu.tether_m)
        for event in events:
            fix = _as_fix(sim, event)
            if fix is not None:
                for estimator in estimators:
                    estimator.on_fix(fix)
            if isinstance(event, LidarFrame):
                scan = LidarScan3D(event.stamp_ns, event.scan.points_m,
                                   event.scan.point_time_offsets_s)
                drive.scans += 1
                for estimator in estimators:
                    estimator.on_scan(scan)
        if on_events is not None and events:
            on_events(sim, events)
        if time.monotonic() - last_report > 10.0:
            last_report = time.monotonic()
            progress(f"{world}: {follower.progress_m:.0f} / {sim.route.length_m:.0f} m")
    drive.distance_m = sim.body.state.distance_m
    drive.sim_seconds = sim.now_ns * 1e-9
    return drive, estimators


def _tilt(sample: Imu) -> tuple[float, float]:
    """Roll and pitch of the AHRS quaternion."""
    x, y, z, w = sample.quat_x, sample.quat_y, sample.quat_z, sample.quat_w
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    return roll, pitch


def _as_fix(sim: Simulation, event: object) -> PositionFix | None:
    """A simulator fix as the robot receives it (the outlier flags stay hidden)."""
    if isinstance(event, RadioFix):
        return PositionFix(event.stamp_ns, event.position_m,
                           np.diag([event.sigma_m**2, event.sigma_m**2, 4 * event.sigma_m**2]),
                           FixSource.RADIO_5G)
    if isinstance(event, GnssFix):
        position = sim.site.to_site([event.latitude_deg, event.longitude_deg, event.height_m])[0]
        h2, v2 = event.sigma_horizontal_m**2, event.sigma_vertical_m**2
        return PositionFix(event.stamp_ns, position, np.diag([h2, h2, v2]), FixSource.BEIDOU)
    return None


def _planar_pose(x_m: float, y_m: float, yaw_rad: float) -> FloatArray:
    T = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = x_m, y_m
    return T


def figures_of(errors: FloatArray, distance_m: float) -> dict[str, float]:
    """ATE RMSE, final error and drift (final error / distance) of position errors in time
    order."""
    return {"ate_rmse_m": round(float(np.sqrt(np.mean(errors**2))), 3),
            "final_error_m": round(float(errors[-1]), 3),
            "drift_pct": round(100.0 * float(errors[-1]) / max(distance_m, 1e-9), 3)}


def score(drive: Drive, estimator: Estimator) -> dict[str, float]:
    """ATE RMSE, final error and drift of ``estimator``'s trajectory against the truth."""
    trajectory = estimator.trajectory()
    if not trajectory:
        return {"ate_rmse_m": math.nan, "final_error_m": math.nan, "drift_pct": math.nan}
    errors = np.array([np.linalg.norm(T[:3, 3] - drive.position_at(stamp))
                       for stamp, T in trajectory])
    return figures_of(errors, drive.distance_m)


def errors_in_start_frame(bag: Path, trajectory: list[tuple[int, FloatArray]]
                          ) -> tuple[FloatArray, float]:
    """Position errors of ``trajectory`` against the bag's ground truth, both in the frame of
    the robot's start pose, and the distance the robot truly drove."""
    with BagReader(bag) as reader:
        truth = [(r.stamp_ns, r.data.T_odom_base)  # type: ignore[union-attr]
                 for r in reader.records([SensorRole.GROUND_TRUTH])]
    stamps = np.array([s for s, _ in truth])
    T_start_world = np.linalg.inv(truth[0][1])
    positions = np.array([(T_start_world @ T)[:3, 3] for _, T in truth])
    errors = []
    for stamp, T in trajectory:
        i = int(np.argmin(np.abs(stamps - stamp)))
        errors.append(float(np.linalg.norm(T[:3, 3] - positions[i])))
    distance = float(np.sum(np.linalg.norm(np.diff(positions, axis=0), axis=1)))
    return np.array(errors), distance


def bag_odometry(bag: Path) -> list[tuple[int, FloatArray]]:
    """The bag's wheel odometry, chained from its first sample (dead reckoning)."""
    with BagReader(bag) as reader:
        odometry = [(r.stamp_ns, r.data.T_odom_base)  # type: ignore[union-attr]
                    for r in reader.records([SensorRole.ODOMETRY])]
    T_first = np.linalg.inv(odometry[0][1])
    return [(stamp, T_first @ T) for stamp, T in odometry]


def run_planar(quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """Our offline SLAM on a real-data-like 2D bag, against the bag's wheel odometry."""
    from sim_worlds.simulator.recording import record_realistic_2d

    with tempfile.TemporaryDirectory(prefix="bench_nav_2d_") as tmp:
        bag = Path(tmp) / "scan_2d.mcap"
        progress(f"{PLANAR_WORLD} (2D scanner): recording a real-data-like bag")
        record_realistic_2d(PLANAR_WORLD, bag, duration_s=30.0 if quick else PLANAR_DRIVE_S,
                            speed_mps=PLANAR_SPEED_MPS, seed=1)
        progress(f"{PLANAR_WORLD} (2D scanner): offline SLAM")
        result = run_offline_slam(bag, Path(tmp) / "out", progress=progress)
        errors, distance = errors_in_start_frame(bag, read_tum(Path(tmp) / "out"
                                                               / "trajectory.tum"))
        odometry_errors, _ = errors_in_start_frame(bag, bag_odometry(bag))
    ms = 1e3 * result.slam_seconds / max(result.scans, 1)
    ours = figures_of(errors, distance) | {
        "ms_per_scan": round(ms, 2),
        "real_time_factor": round(1e3 * result.scan_period_s / max(ms, 1e-9), 2)}
    return {"distance_m": round(distance, 1), "scans": result.scans,
            "scan_period_s": round(result.scan_period_s, 4), "ours": ours,
            "wheel_odometry": figures_of(odometry_errors, distance)}


def run(quick: bool = False, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark and return its JSON-ready result."""
    worlds: dict[str, Any] = {}
    for world in ("sewer_dn1000", "utility_tunnel", "civil_defence_shelter"):

        def estimators_for(sim: Simulation) -> list[Estimator]:
            T_start = sim.T_world_base()
            assert sim.lidar is not None
            extrinsics = Extrinsics(sim.T_base_lidar)
            return [OursFused(sim, extrinsics), OursLidarOnly(T_start, extrinsics),
                    KissIcpBaseline(T_start, extrinsics, sim.lidar.spec.range_max_m, 0.1),
                    WheelOnly(T_start)]

        progress(f"{world}: driving the route at {SPEED_MPS} m/s")
        drive, estimators = drive_world(world, estimators_for, progress,
                                        max_sim_s=30.0 if quick else None)
        result: dict[str, Any] = {"distance_m": round(drive.distance_m, 1), "scans": drive.scans}
        for estimator in estimators:
            figures: dict[str, Any] = score(drive, estimator)
            if drive.scans and estimator.name in OURS:
                ms = 1e3 * estimator.seconds / drive.scans
                figures["ms_per_scan"] = round(ms, 2)
                figures["real_time_factor"] = round(100.0 / max(ms, 1e-9), 2)
            result[estimator.name] = figures
        worlds[world] = result
        progress(f"{world}: {result}")
    planar = {PLANAR_WORLD: run_planar(quick, progress)}
    progress(f"2D: {planar}")
    return {"benchmark": "nav", "worlds": worlds, "scans_2d": planar, "cores": os.cpu_count()}
