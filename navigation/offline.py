"""``crawler slam run BAG --out DIR``: lidar SLAM on a recorded ROS 2 bag.

Without a site file the map frame is the first scan's base_link. With one (``--site``), the
robot starts at the entry of the site's first axis (manhole A, the tunnel portal), heading
along it, and the trajectory is in the site frame, fused with BeiDou, 5G and the tether.

Reads LaserScan or PointCloud2 (a 3D cloud is preferred when both are there), optional wheel
odometry, and with a site file also BeiDou, 5G and the tether; writes ``trajectory.tum`` (one
line per scan, ``timestamp x y z qx qy qz qw``, base_link in the map / site frame), the 2D
occupancy map (``map.pgm`` + ``map.yaml``) and, for 3D clouds, ``cloud.ply``. Outputs are
written under temporary names and moved into place only when everything succeeded, so a
failed run never leaves files that look complete.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from navigation.bag_io import BagReader, GeodeticFix, SensorRole, TetherLength
from navigation.lidar_odometry import LidarOdometry, LidarOdometryConfig, planar_config
from navigation.localization import LocalizationPipeline, MotionPredictor
from navigation.map_export import VoxelCloud, write_tum
from navigation.occupancy import OccupancyGrid, write_map
from navigation.records import (
    FixSource,
    LaserScan2D,
    LidarScan3D,
    OdometrySample,
    PositionFix,
)
from navigation.site import Site

FloatArray = NDArray[np.float64]
_LOG = logging.getLogger(__name__)
MAP_EVERY_N_SCANS = 5


@dataclass(frozen=True)
class OfflineResult:
    """What an offline run produced."""

    scans: int
    distance_m: float
    files: tuple[Path, ...]
    skipped_messages: int
    slam_seconds: float = 0.0
    """Wall time spent registering, fusing and drawing the maps (not reading the bag)."""
    scan_period_s: float = float("nan")
    """Median interval between the scans' stamps."""


def run_offline_slam(bag: Path, out: Path, site: Site | None = None,
                     progress: Callable[[str], None] = _LOG.info) -> OfflineResult:
    """Run lidar SLAM over ``bag`` and write the outputs into ``out``."""
    with BagReader(bag) as reader:
        planar = SensorRole.CLOUD_3D not in reader.roles
        scan_role = SensorRole.SCAN_2D if planar else SensorRole.CLOUD_3D
        T_base_lidar = _lidar_mount(reader, scan_role)
        config = planar_config() if planar else LidarOdometryConfig()
        pipeline = (LocalizationPipeline(site, T_base_lidar, lidar=config) if site is not None
                    else None)
        odometry = LidarOdometry(config) if pipeline is None else pipeline.lidar_odometry
        predictor = MotionPredictor(T_base_lidar) if pipeline is None else pipeline.predictor
        grid = OccupancyGrid()
        cloud = VoxelCloud(0.1) if not planar else None
        trajectory: list[tuple[int, FloatArray]] = []
        scans = 0
        slam_seconds = 0.0
        # Replay the bag in time order
        for record in reader.records():
            data = record.data
            if pipeline is not None and not pipeline.localizer.initialized:
                # With a site file the robot starts at the entry of its first axis.
                entry = pipeline.site.axes[0]
                pipeline.initialize(entry.pose_at(entry.start_distance_m), record.stamp_ns)
            if record.role is SensorRole.GROUND_TRUTH:
                continue  # a simulator's truth, for scoring: never an input
            started = time.perf_counter()
            if isinstance(data, OdometrySample):
                if pipeline is not None:
                    pipeline.on_odometry(data)
                else:
                    predictor.add(data)
            elif isinstance(data, LaserScan2D | LidarScan3D) and record.role is scan_role:
                # Register the scan; keep its pose for the trajectory and maps
                if pipeline is not None:
                    result = pipeline.on_scan(data)
                else:
                    result = odometry.register(data, predictor.motion_to(data.stamp_ns))
                    if isinstance(data, LidarScan3D):  # learn the encoders' turn over-read
                        predictor.observe(result)
                if pipeline is not None:
                    T_map_base = pipeline.estimate().T_site_base
                else:
                    # Lidar odometry's map is the first scan's sensor frame; ours: its base_link.
                    T_map_base = T_base_lidar @ result.T_map_sensor @ np.linalg.inv(T_base_lidar)
                trajectory.append((data.stamp_ns, T_map_base))
                if scans % MAP_EVERY_N_SCANS == 0:
                    _add_to_maps(grid, cloud, data, T_map_base @ T_base_lidar)
                scans += 1
                if scans % 500 == 0:
                    progress(f"{scans} scans")
            elif pipeline is not None:
                _fuse_other(pipeline, site, data, record.stamp_ns)
            slam_seconds += time.perf_counter() - started
        skipped = len(reader.skipped)
    # The smoothed trajectory replaces odometry's where the site gave absolute information
    if pipeline is not None:
        started = time.perf_counter()
        trajectory = _resample(pipeline.localizer.smooth(), [s for s, _ in trajectory])
        slam_seconds += time.perf_counter() - started
    written = _write_outputs(out, trajectory, grid, cloud, scans, skipped)
    stamps_ns = np.array([stamp for stamp, _ in trajectory])
    period_s = float(np.median(np.diff(stamps_ns))) * 1e-9 if len(stamps_ns) > 1 else math.nan
    return replace(written, slam_seconds=slam_seconds, scan_period_s=period_s)


def _lidar_mount(reader: BagReader, role: SensorRole) -> FloatArray:
    """base_link -> scanner from /tf_static, else identity (scanner at base_link)."""
    frames = {child: T for (parent, child), T in reader.static_transforms().items()
              if parent in ("base_link", "base_footprint")}
    topic_frame = reader.roles.get(role, "")
    for child, T in frames.items():
        if child in ("lidar_link", "laser", "lidar", topic_frame) or "lidar" in child:
            return T
    return np.eye(4)


def _fuse_other(pipeline: LocalizationPipeline, site: Site | None, data: object,
                stamp_ns: int) -> None:
    if isinstance(data, PositionFix):
        pipeline.on_fix(data)
    elif isinstance(data, GeodeticFix) and site is not None:
        position = site.frame().to_site([data.latitude_deg, data.longitude_deg,
                                         data.altitude_m])[0]
        pipeline.on_fix(PositionFix(stamp_ns, position, np.asarray(data.covariance_m2),
                                    FixSource.BEIDOU))
    elif isinstance(data, TetherLength):
        pipeline.on_tether(stamp_ns, data.length_m)


def _add_to_maps(grid: OccupancyGrid, cloud: VoxelCloud | None,
                 scan: LaserScan2D | LidarScan3D, T_map_sensor: FloatArray) -> None:
    if isinstance(scan, LaserScan2D):
        grid.insert_scan_2d(scan, T_map_sensor)
    else:
        grid.insert_cloud_slice(scan, T_map_sensor)
        if cloud is not None:
            cloud.add(scan.points_m, T_map_sensor)


def _resample(keys: list[tuple[int, FloatArray]], stamps_ns: list[int]
              ) -> list[tuple[int, FloatArray]]:
    """Smoothed poses at each scan stamp: the nearest key's (keys are made at scans)."""
    if not keys:
        return []
    key_stamps = np.array([s for s, _ in keys])
    out = []
    for stamp in stamps_ns:
        i = int(np.argmin(np.abs(key_stamps - stamp)))
        out.append((stamp, keys[i][1]))
    return out


def _write_outputs(out: Path, trajectory: list[tuple[int, FloatArray]], grid: OccupancyGrid,
                   cloud: VoxelCloud | None, scans: int, skipped: int) -> OfflineResult:
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".partial"
    staging.mkdir(exist_ok=True)
    # Everything into a staging folder first, then moved: no half-written output
    written = [write_tum(staging / "trajectory.tum", trajectory)]
    written += list(write_map(grid, staging, name="map"))
    if cloud is not None:
        written.append(cloud.write_ply(staging / "cloud.ply"))
    final = []
    for path in written:
        target = out / Path(path).name
        Path(path).replace(target)
        final.append(target)
    staging.rmdir()
    positions = np.array([T[:3, 3] for _, T in trajectory]) if trajectory else np.zeros((1, 3))
    distance = float(np.sum(np.linalg.norm(np.diff(positions, axis=0), axis=1)))
    return OfflineResult(scans, distance, tuple(final), skipped)
