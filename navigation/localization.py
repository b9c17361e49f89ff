"""The localization pipeline: lidar odometry feeding the fused smoother, with site landmarks.

One object takes the robot's measurements in time order, whichever way they arrive (the
``slam`` / ``localizer`` nodes, an offline bag, the benchmark) and keeps the estimate:

1. wheel odometry is buffered; it predicts the lidar's motion between scans and chains
   the smoother's key poses;
2. each scan is registered by lidar odometry, which reports the directions it constrains;
3. the smoother (``FusedLocalizer``) weighs lidar only along those, and adds the tether,
   5G / BeiDou fixes behind robust kernels, and site landmarks;
4. a BeiDou fix means open sky overhead: the nearest manhole or shaft of the site file
   within reach becomes a landmark observation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from navigation.fusion import FusedLocalizer, FusionConfig, LocalizationEstimate
from navigation.lidar_odometry import LidarOdometry, LidarOdometryConfig
from navigation.records import (
    FixSource,
    LaserScan2D,
    LidarOdometryResult,
    LidarScan3D,
    OdometrySample,
    PositionFix,
)
from navigation.site import LandmarkKind, Site, SiteType

FloatArray = NDArray[np.float64]
SKY_LANDMARKS = (LandmarkKind.MANHOLE, LandmarkKind.SHAFT)
ODOMETRY_BUFFER = 512


@dataclass(frozen=True)
class PipelineConfig:
    """How the pieces are tied together."""

    sky_landmark_reach_m: float = 8.0
    """A BeiDou fix names the sky landmark nearest the estimate, if within this distance."""
    sky_landmark_sigma_m: float = 0.5
    landmark_repeat_s: float = 10.0
    """The same landmark is not observed again within this time."""
    pipe_axis_every_n_scans: int = 5
    """In a pipe the crawler rides the invert: every n scans, "on the axis" within sigmas."""
    pipe_axis_sigma_lateral_m: float = 0.05
    pipe_axis_sigma_vertical_m: float = 0.03
    pipe_axis_vertical_offset_m: float = 0.02
    """base_link above the invert line (the tracks straddle the invert)."""


class MotionPredictor:
    """Predicts the lidar's motion between scans from buffered wheel odometry."""

    def __init__(self, T_base_lidar: FloatArray) -> None:
        self.T_base_lidar = np.asarray(T_base_lidar, dtype=np.float64)
        self._T_lidar_base = np.linalg.inv(self.T_base_lidar)
        self._odometry: deque[OdometrySample] = deque(maxlen=ODOMETRY_BUFFER)
        self._last_scan_odometry: FloatArray | None = None

    def add(self, sample: OdometrySample) -> None:
        """Buffer a wheel-odometry sample."""
        self._odometry.append(sample)

    def motion_to(self, stamp_ns: int) -> FloatArray | None:
        """Lidar motion from the previous call's time to ``stamp_ns`` (None: no odometry)."""
        T_odom_base = self._odometry_at(stamp_ns)
        guess = None
        if T_odom_base is not None and self._last_scan_odometry is not None:
            T_prev_curr_base = np.linalg.inv(self._last_scan_odometry) @ T_odom_base
            guess = self._T_lidar_base @ T_prev_curr_base @ self.T_base_lidar
        self._last_scan_odometry = T_odom_base
        return guess

    def _odometry_at(self, stamp_ns: int) -> FloatArray | None:
        """Wheel-odometry pose at ``stamp_ns``: the nearest sample (they come at 50 Hz)."""
        if not self._odometry:
            return None
        nearest = min(self._odometry, key=lambda s: abs(s.stamp_ns - stamp_ns))
        return nearest.T_odom_base


class SkyLandmarks:
    """A BeiDou fix means open sky: the robot is under the manhole or shaft nearest its estimate."""

    def __init__(self, site: Site, config: PipelineConfig) -> None:
        self.config = config
        self._candidates = [lm for lm in site.landmarks if lm.kind in SKY_LANDMARKS]
        self._seen_ns: dict[str, int] = {}

    def observe(self, localizer: FusedLocalizer, stamp_ns: int) -> str | None:
        """Add the landmark observation to ``localizer``; return its id (None: none near)."""
        if not localizer.initialized or not self._candidates:
            return None
        cfg = self.config
        here = localizer.estimate().position_m[:2]
        nearest = min(self._candidates,
                      key=lambda lm: float(np.linalg.norm(np.asarray(lm.position_m)[:2] - here)))
        distance = float(np.linalg.norm(np.asarray(nearest.position_m)[:2] - here))
        last = self._seen_ns.get(nearest.id)
        if distance > cfg.sky_landmark_reach_m or (
                last is not None and stamp_ns - last < cfg.landmark_repeat_s * 1e9):
            return None
        self._seen_ns[nearest.id] = stamp_ns
        localizer.add_landmark(stamp_ns, nearest.id, cfg.sky_landmark_sigma_m)
        return nearest.id


class LocalizationPipeline:
    """Lidar odometry + fused smoother + landmark detection for one robot on one site."""

    def __init__(self, site: Site, T_base_lidar: FloatArray,
                 lidar: LidarOdometryConfig | None = None, fusion: FusionConfig | None = None,
                 config: PipelineConfig | None = None) -> None:
        self.site = site
        self.T_base_lidar = np.asarray(T_base_lidar, dtype=np.float64)
        self.config = config or PipelineConfig()
        self.lidar_odometry = LidarOdometry(lidar)
        self.localizer = FusedLocalizer(site, fusion)
        self.predictor = MotionPredictor(self.T_base_lidar)
        self.sky_landmarks = SkyLandmarks(site, self.config)
        self._scans = 0
        self.last_lidar: LidarOdometryResult | None = None

    def initialize(self, T_site_base: FloatArray, stamp_ns: int,
                   covariance: FloatArray | None = None) -> None:
        """Start at a known pose (the entry manhole)."""
        self.localizer.initialize(T_site_base, stamp_ns, covariance)

    def on_odometry(self, sample: OdometrySample) -> None:
        """A wheel-odometry sample."""
        self.predictor.add(sample)
        self.localizer.add_wheel_odometry(sample)

    def on_scan(self, scan: LidarScan3D | LaserScan2D) -> LidarOdometryResult:
        """Register a scan and hand its constrained motion to the smoother."""
        # Wheel odometry predicts the lidar's motion since the last scan
        guess = self.predictor.motion_to(scan.stamp_ns)
        # Scan to local map, with degeneracy
        result = self.lidar_odometry.register(scan, guess)
        # Smoother: lidar along its constrained directions only
        self.localizer.add_lidar_odometry(result, self.T_base_lidar)
        # In a pipe the crawler rides the invert line of the site's axis
        self._scans += 1
        cfg = self.config
        if self.site.site_type is SiteType.PIPE and self._scans % cfg.pipe_axis_every_n_scans == 0:
            self.localizer.add_axis_offset(scan.stamp_ns, cfg.pipe_axis_sigma_lateral_m,
                                           cfg.pipe_axis_sigma_vertical_m,
                                           cfg.pipe_axis_vertical_offset_m)
        self.last_lidar = result
        return result

    def on_fix(self, fix: PositionFix) -> None:
        """A 5G or BeiDou fix; BeiDou also says there is open sky above."""
        self.localizer.add_position_fix(fix)
        if fix.source is FixSource.BEIDOU:
            self.sky_landmarks.observe(self.localizer, fix.stamp_ns)

    def on_tether(self, stamp_ns: int, length_m: float) -> None:
        """A cable-counter reading."""
        self.localizer.add_tether(stamp_ns, length_m)

    def estimate(self) -> LocalizationEstimate:
        """The latest fused estimate."""
        return self.localizer.estimate()

    def trajectory(self) -> list[tuple[int, FloatArray]]:
        """(stamp_ns, T_site_base) of every key pose, as smoothed so far."""
        return self.localizer.trajectory()
