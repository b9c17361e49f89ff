"""The localization pipeline: lidar odometry feeding the fused smoother, with site landmarks.

One object takes the robot's measurements in time order, whichever way they arrive (the
``slam`` / ``localizer`` nodes, an offline bag, the benchmark) and keeps the estimate:

1. wheel odometry is buffered; it predicts the lidar's motion between scans and chains
   the smoother's key poses;
2. each scan is registered by lidar odometry, which reports the directions it constrains;
3. the smoother (``FusedLocalizer``) weighs lidar only along those, and adds the tether,
   5G / BeiDou fixes behind robust kernels, and site landmarks;
4. a BeiDou fix means open sky overhead: the nearest manhole or shaft of the site file
   within reach becomes a landmark observation;
5. in a tunnel gallery the walls run along the site axis: their direction in a key pose's
   scan is the crawler's absolute heading (``tunnel_features.wall_heading``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from navigation.deskew import deskew, so3_log
from navigation.fusion import FusedLocalizer, FusionConfig, LocalizationEstimate
from navigation.lidar_odometry import LidarOdometry, LidarOdometryConfig, se3_exp, twist
from navigation.loop_closure import LoopCloser, LoopClosureConfig
from navigation.pipe_features import PipeCentre, PipeCentreConfig, pipe_centre
from navigation.records import (
    FixSource,
    LaserScan2D,
    LidarOdometryResult,
    LidarScan3D,
    OdometrySample,
    PositionFix,
)
from navigation.site import LandmarkKind, Site, SiteType
from navigation.tunnel_features import WallHeadingConfig, wall_heading

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
    pipe_centre: bool = True
    """3D scans: the crawler's lateral offset from the axis is measured from the bore's
    centre in the wall ahead (``pipe_features``), so a crawler that wanders off the invert
    is seen to (and steered back); no round wall fitted: on the axis, as above."""
    pipe_centre_fit: PipeCentreConfig = field(default_factory=PipeCentreConfig)
    pipe_centre_sigma_m: float = 0.02
    pipe_centre_vertical_sigma_m: float | None = 0.03
    """The crawler's height above the invert from the same circle (fitted radius minus the
    centre's height over base_link), within this sigma: on a deposit it rides 0.25 m up, and
    "on the invert" pulled the pose, and every lidar point mapped from it, 0.2 m down. None:
    the riding assumption's height."""
    pipe_centre_vertical_radius_tolerance_m: float = 0.01
    pipe_centre_vertical_residual_ratio: float = 1.5
    """... only from a round bore: the fitted radius within this of the median of the
    fits so far, and a scatter at most this times theirs. A deformed (BX) ring fits 4 cm too
    wide and its centre sits 8 cm off; on a deposit's ramp the crawler pitches within the
    slice and the scatter doubles."""
    pipe_centre_history: int = 200
    """Fits the median radius and scatter are taken over."""
    loop_closure: bool = True
    """Register scans against earlier keyframes when back near them (not in pipes: a pipe
    looks the same everywhere along its axis)."""
    wall_heading: bool = True
    """In a tunnel, the direction of the gallery's walls in each key pose's scan (3D) against
    the nearest axis's direction is an absolute heading measurement."""
    wall_heading_max_turn_rad: float = 0.02
    """Not from a scan that turned more than this, by lidar or by the wheels (a sweep bent
    by a fast turn; lidar odometry may have missed it)."""
    wall_heading_min_fitness: float = 0.5
    """Not from a scan lidar odometry registered poorly (its deskewing motion is doubtful)."""
    wall_heading_max_axis_gap_m: float = 3.0
    """Only within this distance of an axis (inside its gallery), and not where a second
    axis is that close too (a junction: both galleries' walls are in view, 90 degrees apart,
    and an estimate lagging a turn would pick the wrong family)."""
    walls: WallHeadingConfig = field(default_factory=WallHeadingConfig)
    shelter_lidar_information_scale: float = 0.2
    """In shelters (rooms and corridors, where lidar odometry carries the estimate between loop
    closures) its information is scaled by this (``FusionConfig.lidar_information_scale``,
    when that is left at 1): the ICP Hessian treats every point's residual as independent,
    and scan-to-map errors are not; the shelter's lidar steps were about 6x more confident
    than their errors against the truth. Full shelter route, fused ATE: 0.104 m at 1.0, 0.064 at
    0.3, 0.061 at 0.2, 0.068 at 0.1, 0.092 at 0.05. Not in tunnels (0.071 -> 0.105 m at 0.2)
    nor pipes (no change)."""
    shelter_local_map_max_age_keyframes: int = 150
    """In shelters the local map forgets voxels that none of the last this many keyframes saw
    (``LidarOdometryConfig.local_map_max_age_keyframes``, when that is left at its default):
    back in a room after a loop, the first visit's voxels sit where the drift of that time put
    them, and registering against both visits pulls the scan between them; loop closure ties
    the visits together instead. Full shelter route, fused ATE (drives of seed 1 / seed 2):
    never forgotten 0.060 / 0.094 m, 300 keyframes 0.033 / 0.087, 150 0.030 / 0.067, 100
    0.032 / 0.099, 60 0.102 on seed 1."""
    wall_lidar_turn_sigma_rad_per_rad: float = 0.15
    """Where the walls give the heading, lidar odometry's turns are not taken at face value:
    rotation noise per radian a scan turned (``FusionConfig.lidar_turn_sigma_rad_per_rad``,
    when that is left None)."""


@dataclass(frozen=True)
class PredictorConfig:
    """How wheel odometry's turns are rescaled for lidar odometry's motion guess."""

    turn_ratio_prior_weight_rad2: float = 0.01
    """Weight of the prior ratio 1, as the squared wheel turn it is worth (0.1 rad: 2-3 scans
    of a brisk turn)."""
    turn_ratio_forgetting: float = 0.98
    """Per turning scan: the ratio follows the floor over the last ~50 of them."""
    turn_ratio_min_turn_rad: float = 0.01
    """Scans whose wheels turned less teach nothing (noise over signal)."""
    turn_ratio_max_disagreement: float = 0.6
    """A lidar turn this far off the wheels' (relative) is a failed registration: ignored."""
    turn_ratio_limits: tuple[float, float] = (0.5, 1.2)
    max_gap_s: float = 1.0
    """Lidar rates older than this are not carried on."""


class MotionPredictor:
    """Predicts the lidar's motion between scans from wheel odometry, its turns rescaled.

    A skid-steered crawler's encoders over-read its turns by 15-20 % (the tracks slide
    sideways: the effective track width exceeds the geometric one; more on slippery floors).
    Handed to lidar odometry as is, that guess deskews every sweep with the wrong turn rate;
    the registration of a sweep bent that way is biased, the re-deskew with the registered
    motion feeds the previous scan's error back, and the pose oscillates from scan to scan
    by decimetres and degrees during turns (docs/localization.md). The predictor therefore
    learns the ratio of the turn lidar odometry measured to the turn the wheels reported
    (``observe``, on scans that constrain yaw and turned enough, with forgetting) and scales
    the wheels' rotation by it. Translation stays the wheels': along a pipe or a featureless
    corridor lidar odometry keeps the guess, and there the encoders are all there is.
    """

    def __init__(self, T_base_lidar: FloatArray, config: PredictorConfig | None = None) -> None:
        self.T_base_lidar = np.asarray(T_base_lidar, dtype=np.float64)
        self._T_lidar_base = np.linalg.inv(self.T_base_lidar)
        self.config = config or PredictorConfig()
        self._odometry: deque[OdometrySample] = deque(maxlen=ODOMETRY_BUFFER)
        self._last_scan_odometry: FloatArray | None = None
        self._last_stamp_ns: int | None = None
        self._pending_turn_rad: float | None = None
        """The wheels' yaw over the interval of the last guess (awaiting the lidar's)."""
        self.last_wheel_turn_rad: float | None = None
        """The wheels' yaw over the interval of the last guess (None: no odometry)."""
        self.max_gap_ns = round(self.config.max_gap_s * 1e9)
        self._lidar_stamp_ns: int | None = None
        self._lidar_rate: FloatArray | None = None
        """Lidar odometry's last motion per second, base_link, (x, y, z, rotation vector)."""
        weight = self.config.turn_ratio_prior_weight_rad2
        self._turn_sums = [weight, weight]  # sum(lidar * wheel), sum(wheel^2)

    @property
    def turn_ratio(self) -> float:
        """Turn measured by lidar / turn reported by the wheels (learned, clipped)."""
        low, high = self.config.turn_ratio_limits
        return min(max(self._turn_sums[0] / self._turn_sums[1], low), high)

    def add(self, sample: OdometrySample) -> None:
        """Buffer a wheel-odometry sample."""
        self._odometry.append(sample)

    def observe(self, result: LidarOdometryResult) -> None:
        """Lidar odometry's result for the scan last predicted: its rates and the turn ratio."""
        wheel_rad, self._pending_turn_rad = self._pending_turn_rad, None
        previous_ns, self._lidar_stamp_ns = self._lidar_stamp_ns, result.stamp_ns
        directions = np.asarray(result.degenerate_directions, dtype=np.float64).reshape(-1, 6)
        # The rates of what planar encoders do not see (climb, roll, pitch), where lidar saw
        self._lidar_rate = None
        if (previous_ns is not None and 0 < result.stamp_ns - previous_ns <= self.max_gap_ns
                and len(directions) < 6):
            motion = twist(result.T_prev_curr)
            if len(directions):
                basis, _ = np.linalg.qr(directions.T)
                motion -= basis @ (basis.T @ motion)
            T_base = self.T_base_lidar @ se3_exp(motion) @ self._T_lidar_base
            self._lidar_rate = twist(T_base) / ((result.stamp_ns - previous_ns) * 1e-9)
        # The turn ratio, from scans that saw the turn
        cfg = self.config
        if wheel_rad is None or abs(wheel_rad) < cfg.turn_ratio_min_turn_rad:
            return
        if len(directions) and float(np.max(np.abs(directions[:, 5]))) > 0.5:
            return  # lidar did not see the turn
        T_base = self.T_base_lidar @ result.T_prev_curr @ self._T_lidar_base
        lidar_rad = float(so3_log(T_base[:3, :3])[2])
        if abs(lidar_rad - wheel_rad) > cfg.turn_ratio_max_disagreement * abs(wheel_rad):
            return  # a failed registration, not slip
        forget = cfg.turn_ratio_forgetting
        self._turn_sums = [forget * self._turn_sums[0] + lidar_rad * wheel_rad,
                           forget * self._turn_sums[1] + wheel_rad**2]

    def motion_to(self, stamp_ns: int) -> FloatArray | None:
        """Lidar motion from the previous call's time to ``stamp_ns`` (None: no odometry)."""
        T_odom_base = self._odometry_at(stamp_ns)
        guess = None
        self._pending_turn_rad = self.last_wheel_turn_rad = None
        last_ns, self._last_stamp_ns = self._last_stamp_ns, stamp_ns
        if T_odom_base is not None and self._last_scan_odometry is not None:
            wheel = twist(np.linalg.inv(self._last_scan_odometry) @ T_odom_base)
            self._pending_turn_rad = float(wheel[5])
            self.last_wheel_turn_rad = float(wheel[5])
            motion = wheel.copy()
            motion[3:] *= self.turn_ratio  # the encoders' turn, rescaled
            if (self._lidar_rate is not None and last_ns is not None
                    and self._lidar_stamp_ns == last_ns):
                # Climb, roll and pitch at lidar's last rates: planar encoders know nothing of them
                rate = self._lidar_rate * ((stamp_ns - last_ns) * 1e-9)
                motion[2:5] = rate[2:5]
            guess = self._T_lidar_base @ se3_exp(motion) @ self.T_base_lidar
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
                 config: PipelineConfig | None = None,
                 loop_closure: LoopClosureConfig | None = None) -> None:
        self.site = site
        self.T_base_lidar = np.asarray(T_base_lidar, dtype=np.float64)
        self.config = config or PipelineConfig()
        lidar = lidar or LidarOdometryConfig()
        if (site.site_type is SiteType.SHELTER and lidar.local_map_max_age_keyframes
                == LidarOdometryConfig.local_map_max_age_keyframes):
            lidar = replace(lidar, local_map_max_age_keyframes=(
                self.config.shelter_local_map_max_age_keyframes))
        self.lidar_odometry = LidarOdometry(lidar)
        self._walls = (self.config.wall_heading and site.site_type is SiteType.TUNNEL
                       and not self.lidar_odometry.config.planar)
        fusion = fusion or FusionConfig()
        if self._walls and fusion.lidar_turn_sigma_rad_per_rad is None:
            fusion = replace(fusion, lidar_turn_sigma_rad_per_rad=(
                self.config.wall_lidar_turn_sigma_rad_per_rad))
        if site.site_type is SiteType.SHELTER and fusion.lidar_information_scale == 1.0:
            fusion = replace(fusion, lidar_information_scale=(
                self.config.shelter_lidar_information_scale))
        self.localizer = FusedLocalizer(site, fusion)
        self.predictor = MotionPredictor(self.T_base_lidar)
        self.sky_landmarks = SkyLandmarks(site, self.config)
        self._scans = 0
        self.pipe_centres = 0
        """Pipe-axis factors placed by the measured bore centre (the rest: on the invert)."""
        self._bore_fits: deque[tuple[float, float]] = deque(maxlen=self.config.pipe_centre_history)
        """Radius and scatter of the latest bore fits (what the usual round bore is)."""
        self.last_lidar: LidarOdometryResult | None = None
        self.wall_headings = 0
        """Heading measurements from the walls handed to the smoother."""
        self.loop_closer = (LoopCloser(self.T_base_lidar, loop_closure, lidar)
                            if self.config.loop_closure and site.site_type is not SiteType.PIPE
                            and not self.lidar_odometry.config.planar else None)

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
        if isinstance(scan, LidarScan3D):  # 2D: not validated (worse on real-like 2D bags)
            self.predictor.observe(result)
        # Smoother: lidar along its constrained directions only
        self.localizer.add_lidar_odometry(result, self.T_base_lidar)
        # In a pipe: the crawler rides the invert line, as far sideways from it as the bore's
        # centre ahead says (no round wall in view: on it)
        self._scans += 1
        cfg = self.config
        if self.site.site_type is SiteType.PIPE and self._scans % cfg.pipe_axis_every_n_scans == 0:
            self._observe_pipe(scan, result)
        # At a key pose's scan: the walls' direction, loop closure
        key = self.localizer.key_at(scan.stamp_ns)
        if (isinstance(scan, LidarScan3D) and key is not None and self.last_lidar is not None
                and (self.loop_closer is not None or self._walls)):
            points_base = self._key_scan_points(scan, result)
            if self._walls:
                self._observe_walls(scan.stamp_ns, key, result, points_base)
            if self.loop_closer is not None:
                self._close_loops(key, points_base)
        self.last_lidar = result
        return result

    def _observe_pipe(self, scan: LidarScan3D | LaserScan2D, result: LidarOdometryResult
                      ) -> None:
        """Where the crawler sits across the bore: an absolute lateral position."""
        cfg = self.config
        lateral_m, sigma_m = 0.0, cfg.pipe_axis_sigma_lateral_m
        height_m, sigma_height_m = cfg.pipe_axis_vertical_offset_m, cfg.pipe_axis_sigma_vertical_m
        if (cfg.pipe_centre and isinstance(scan, LidarScan3D) and self.last_lidar is not None
                and result.fitness >= cfg.wall_heading_min_fitness):
            centre = pipe_centre(self._key_scan_points(scan, result), cfg.pipe_centre_fit)
            if centre is not None:
                lateral_m, up_m = self._offsets_of(centre)
                sigma_m = cfg.pipe_centre_sigma_m
                if cfg.pipe_centre_vertical_sigma_m is not None and self._round_bore(centre):
                    height_m = centre.radius_m - up_m
                    sigma_height_m = cfg.pipe_centre_vertical_sigma_m
                self.pipe_centres += 1
        self.localizer.add_axis_offset(scan.stamp_ns, sigma_m, sigma_height_m, height_m,
                                       lateral_offset_m=lateral_m)

    def _round_bore(self, centre: PipeCentre) -> bool:
        """Remember this fit; whether it is the pipe's usual round bore (see
        ``PipelineConfig``): the median of the fits so far is the usual one."""
        cfg = self.config
        fits = self._bore_fits
        fits.append((centre.radius_m, centre.residual_m))
        if len(fits) < 10:
            return False
        radius_m, residual_m = np.median(np.array(fits), axis=0)
        return bool(abs(centre.radius_m - radius_m) <= cfg.pipe_centre_vertical_radius_tolerance_m
                    and centre.residual_m <= cfg.pipe_centre_vertical_residual_ratio * residual_m)

    def _offsets_of(self, centre: PipeCentre) -> tuple[float, float]:
        """base_link's offset to the left of the axis, and the bore centre's height above
        base_link, in the pipe's cross-section."""
        T_site_base = self.localizer.estimate().T_site_base
        axis, _ = self.site.locate(T_site_base[:3, 3])
        _, direction = axis.chainage_and_direction(T_site_base[:3, 3])
        left = np.cross([0.0, 0.0, 1.0], direction)
        left /= max(float(np.linalg.norm(left)), 1e-9)
        up = np.cross(direction, left)
        to_centre = T_site_base[:3, :3] @ centre.point_base_m
        return -float(left @ to_centre), float(up @ to_centre)

    def _key_scan_points(self, scan: LidarScan3D, result: LidarOdometryResult) -> FloatArray:
        """The scan deskewed by its registered motion, in base_link at its stamp."""
        assert self.last_lidar is not None
        points = np.asarray(scan.points_m, dtype=np.float64)
        offsets = (np.zeros(len(points)) if scan.point_time_offsets_s is None
                   else np.asarray(scan.point_time_offsets_s, dtype=np.float64))
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(points).all(axis=1) & (np.linalg.norm(points, axis=1) > 0.3)
        dt_s = (scan.stamp_ns - self.last_lidar.stamp_ns) * 1e-9
        points = deskew(points[valid], offsets[valid], result.T_prev_curr, dt_s)
        points_base: FloatArray = points @ self.T_base_lidar[:3, :3].T + self.T_base_lidar[:3, 3]
        return points_base

    def _observe_walls(self, stamp_ns: int, key: int, result: LidarOdometryResult,
                       points_base: FloatArray) -> None:
        """The gallery's walls in the key's scan: an absolute heading for the smoother."""
        cfg = self.config
        turned = max(float(np.linalg.norm(so3_log(result.T_prev_curr[:3, :3]))),
                     abs(self.predictor.last_wheel_turn_rad or 0.0))
        if turned > cfg.wall_heading_max_turn_rad or result.fitness < cfg.wall_heading_min_fitness:
            return
        T_site_key = self.localizer.key_poses([key])[key]
        position = T_site_key[:3, 3]
        near = sorted((a.project(position).gap_m, i) for i, a in enumerate(self.site.axes))
        if near[0][0] > cfg.wall_heading_max_axis_gap_m or (
                len(near) > 1 and near[1][0] <= cfg.wall_heading_max_axis_gap_m):
            return  # outside every gallery, or at a junction
        axis = self.site.axes[near[0][1]]
        _, direction = axis.chainage_and_direction(position)
        if math.hypot(direction[0], direction[1]) < 0.5:
            return  # a steep axis (a shaft): its walls give no heading
        heading = wall_heading(points_base, T_site_key[:3, :3],
                               math.atan2(direction[1], direction[0]), cfg.walls)
        if heading is not None:
            self.localizer.add_heading(stamp_ns, heading.yaw_rad, heading.sigma_rad)
            self.wall_headings += 1

    def _close_loops(self, key: int, points_base: FloatArray) -> None:
        """At a key pose's scan: keep a keyframe, and try to close a loop."""
        closer, localizer = self.loop_closer, self.localizer
        if closer is None:
            return
        T_site_key = localizer.key_poses([key])[key]
        closure = closer.on_key_scan(key, points_base, T_site_key, localizer.key_poses)
        if closure is not None:
            localizer.add_loop_closure(closure.old_key, closure.new_key, closure.T_old_new,
                                       closure.information, closer.config.kernel_width)

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
