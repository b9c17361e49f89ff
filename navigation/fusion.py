"""Fused localization: a factor-graph smoother over the crawler's poses (gtsam, iSAM2).

States: the pose ``X(k)`` = T_site_base of base_link at key times (a new key once the wheels
moved ``key_max_distance_m`` or ``key_max_interval_s`` passed; at a lidar scan while lidar
odometry flows, else at a wheel-odometry sample or another measurement), the
wheel-odometry scale ``K(k)`` (slip makes the encoders over-read: a slowly varying factor,
a random walk per metre driven), and the tether stretch ``S(k)`` (a random walk too: a
mission-wide constant would tie every key to one variable and make each update O(keys)).

Factors (noise models in ``FusionConfig``):

- prior on ``X(0)`` (``initialize``), on ``K(0)``, and on ``S`` at the first tether reading
  (the site file's calibration); random walks K(k-1) -> K(k), S(k-1) -> S(k) per metre;
- wheel odometry between consecutive keys, its translation divided by ``K``; sigmas grow
  linearly with the distance driven (along-track: slip), or a weak constant-position prior
  between keys that no odometry covers;
- lidar odometry between consecutive keys (the scans in between composed), weighted by the
  registrations' information matrices with their degenerate directions floored to ~zero
  weight;
- gyro yaw rate integrated between consecutive keys (yaw only), and the AHRS's roll and
  pitch (gravity's direction in the body) at each key;
- tether: paid out = (1 + S) * (distance along the axis - counter zero), on the pose's
  projection onto the site axis (a Python ``CustomFactor``);
- 5G and BeiDou position fixes on the antenna's position, and landmarks ("the robot is at
  manhole MH-B now") on base_link's position, both behind a robust (Cauchy) kernel so an NLOS
  fix 20 m off barely moves the estimate.
- absolute heading (``add_heading``: a gallery's walls run along its known axis), yaw
  only, behind a Huber kernel (see ``FusionConfig.heading_kernel``).

A measurement makes a new key at its stamp when one is due; otherwise it attaches to the
nearest key through the wheel odometry between the two stamps.

Frames and conventions: gtsam's Pose3 tangent is (rotation, translation) in the body frame
(right perturbation); records and ``LocalizationEstimate.covariance`` use ROS's order
(x, y, z, roll, pitch, yaw). The reported covariance is the marginal of the latest key pose
(iSAM2's Bayes tree, not a guess), carried to the latest odometry sample and rotated into the
site axes: position in metres along site x, y, z, small rotations about site x, y, z.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass

import gtsam
import numpy as np
from numpy.typing import NDArray

from navigation.records import FixSource, LidarOdometryResult, OdometrySample, PositionFix
from navigation.site import Axis, Site, TetherCalibration

FloatArray = NDArray[np.float64]
_NS = 1_000_000_000

X = gtsam.symbol_shorthand.X
"""Pose T_site_base at key k."""
K = gtsam.symbol_shorthand.K
"""Wheel-odometry scale (encoder distance / true distance) at key k."""
S = gtsam.symbol_shorthand.S
"""Tether stretch (paid out / distance along the axis - 1) at key k, from the first reading on."""

_WALK_FLOOR = 1e-5
"""Sigma of a scale's or the stretch's change between keys at standstill."""

# Reorders a 6-vector between ROS (x, y, z, roll, pitch, yaw) and gtsam (rot, trans) order.
_SWAP = np.block([[np.zeros((3, 3)), np.eye(3)], [np.eye(3), np.zeros((3, 3))]])


class RobustKernel(enum.Enum):
    """M-estimator behind absolute measurements."""

    CAUCHY = "cauchy"
    HUBER = "huber"


class LocalizerNotInitializedError(RuntimeError):
    """The localizer has no start pose yet (call ``initialize``)."""


@dataclass(frozen=True)
class FusionConfig:
    """Every sigma, kernel and schedule of the smoother (SI units, 1 sigma)."""

    # Key poses
    key_max_interval_s: float = 1.0
    key_max_distance_m: float = 0.2
    """A new key pose once the wheels moved this far or that long passed since the last one;
    measurements in between attach to the nearest key through the wheel odometry."""
    key_min_interval_s: float = 0.05
    """Without wheel odometry to bridge the gap, a measurement this much newer makes a key."""
    odometry_buffer_s: float = 60.0
    odometry_max_extrapolation_s: float = 0.25
    # Start
    initial_position_sigma_m: float = 0.1
    initial_rotation_sigma_rad: float = 0.02
    # Wheel odometry: sigma = per-metre figure * distance driven + floor
    wheel_along_sigma_per_m: float = 0.03
    """Along-track slip not explained by the scale state, as a fraction of the distance."""
    wheel_cross_sigma_per_m: float = 0.02
    wheel_vertical_sigma_per_m: float = 0.05
    """Planar encoders say nothing about slopes: loose."""
    wheel_tilt_sigma_rad_per_m: float = 0.02
    """Encoders measure track travel, not how the ground tilts the body: this is the flat-
    ground assumption, the only tilt information where no AHRS reading reaches the key."""
    wheel_tilt_sigma_with_ahrs_rad_per_m: float = 0.2
    """... and where the AHRS gives the tilt at the key. At a ramp's foot the pitch changes
    10.6 degrees within 0.5 m (0.37 rad/m); at 0.02 the wheels fought lidar and the AHRS
    there (a shelter's ramp: pitch 2 degrees off, height and side 5 cm off, carried on
    through the lower level)."""
    wheel_yaw_sigma_rad_per_m: float = 0.01
    wheel_yaw_sigma_rad_per_rad: float = 0.2
    """Skid steering: the tracks slide sideways in a turn and the encoders over-read it by
    15-20 % (the effective track width exceeds the geometric one), a bias, not noise."""
    wheel_translation_floor_m: float = 0.001
    wheel_rotation_floor_rad: float = 0.001
    estimate_wheel_scale: bool = True
    wheel_scale_prior_sigma: float = 0.1
    wheel_scale_walk_sigma_per_sqrt_m: float = 0.005
    """How fast the slip changes with the ground."""
    # Keys that no odometry covers
    motion_prior_speed_mps: float = 2.0
    motion_prior_turn_rate_radps: float = 1.0
    # Lidar odometry
    lidar_information_scale: float = 1.0
    """Multiplies the registration's information (< 1 when its Hessian is overconfident)."""
    lidar_information_floor: float = 1e-6
    """Eigenvalues of the information below this (degenerate directions) are set to it."""
    lidar_min_fitness: float = 0.3
    lidar_max_gap_s: float = 0.5
    lidar_turn_sigma_rad_per_rad: float | None = None
    """Rotation noise added to a scan's motion per radian it turned. While the crawler turns
    fast, deskewing and registration err by 30-100 % of each scan's turn (a pivot near a
    gallery's end wall: 16 degrees over a U-turn) while the Hessian claims 0.004 degrees:
    the smoother then holds that turn against everything else. None: 0, unless the pipeline
    sets it (in tunnels, where the walls give an absolute heading)."""
    lidar_turn_sigma_m_per_rad: float = 0.0
    """... and translation noise (m) per radian turned (with the one above)."""
    # Gyro yaw rate
    imu_yaw_rate_noise_rad_per_sqrt_s: float = 0.0005
    imu_yaw_rate_bias_sigma_radps: float = 0.0005
    """An uncalibrated MEMS gyro's bias (about 100 deg/h), not estimated: added per second."""
    imu_max_gap_s: float = 0.1
    imu_tilt_sigma_rad: float = 0.01
    """Roll / pitch from the AHRS's gravity reference."""
    # Tether (stretch prior from the site file; these when it has no calibration)
    tether_counter_sigma_m: float = 0.02
    tether_sigma_per_m: float = 0.0005
    tether_stretch_nominal: float = 0.0
    tether_stretch_sigma: float = 0.01
    tether_stretch_walk_sigma_per_sqrt_m: float = 0.00005
    """How fast the stretch changes along the run (tension, friction): 0.05 % per 100 m. A
    pipe's friction raises a tether's strain by a few 0.01 % per 100 m; 0.0002 (0.2 % per
    100 m) forgot a 0.1 % calibration after 25 m, and the end manhole's burst of BeiDou fixes
    (1.5 m each, their mean 0.8 m short in one drive) and its landmark then set the distance:
    sewer drift 0.134 % -> 0.026 % (seed 1; seeds 2 and 3: 0.027 -> 0.036, 0.058 -> 0.020)."""
    # Absolute positions
    fix_kernel: RobustKernel = RobustKernel.CAUCHY
    fix_kernel_width: float = 2.5
    """In sigmas of the claimed covariance (Cauchy: weight 1/2 at this many sigmas)."""
    fix_min_sigma_m: float = 0.05
    fix_5g_sigma_scale: float = 1.0
    fix_beidou_sigma_scale: float = 1.0
    antenna_5g_in_base_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    antenna_beidou_in_base_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    landmark_kernel_width: float = 3.0
    heading_kernel: RobustKernel = RobustKernel.HUBER
    """Absolute heading (a gallery's walls): Huber, not Cauchy. After a turn lidar odometry
    got wrong, the estimate is confidently off by 15 degrees, 30 sigmas of a wall heading:
    Cauchy weighs each of them ~0.01 and the smoother stays where lidar put it; Huber's
    pull stays constant (weight k/r), and a few hundred of them win."""
    heading_kernel_width: float = 3.0
    """In sigmas of the heading measurement."""
    # Solver
    isam_relinearize_pose_threshold: float = 0.05
    """Relinearize a pose when its update exceeds this (rad, m)."""
    isam_relinearize_scalar_threshold: float = 0.01
    """... a wheel scale or the tether stretch (their factors are nearly linear in them)."""
    isam_relinearize_skip: int = 1
    isam_wildfire_threshold: float = 0.01
    """Back-substitution stops where updates fall below this: the newest keys are exact, old
    ones lag by less (``trajectory`` back-substitutes fully)."""
    axis_hysteresis_m: float = 0.5


@dataclass(frozen=True)
class LocalizationEstimate:
    """The pose now (latest odometry sample), with what the crew and the tf tree need."""

    stamp_ns: int
    T_site_base: FloatArray
    covariance: FloatArray
    """6x6 marginal over (x, y, z, roll, pitch, yaw), about the site axes (see the module)."""
    latitude_deg: float
    longitude_deg: float
    height_m: float
    """CGCS2000 ellipsoidal height of base_link."""
    axis: str | None
    distance_m: float | None
    """Chainage along ``axis``: the counter the crew reads."""
    offset_m: float | None
    T_map_odom: FloatArray | None
    """T_site_base @ inv(T_odom_base) at the key, for tf ``map -> odom``; None without odometry."""
    wheel_scale: float | None
    tether_stretch: float | None

    @property
    def position_m(self) -> FloatArray:
        """Site position of base_link."""
        position: FloatArray = self.T_site_base[:3, 3].copy()
        return position


@dataclass(frozen=True)
class _Key:
    index: int
    stamp_ns: int
    T_odom_base: FloatArray | None


@dataclass(frozen=True)
class _Attachment:
    """A measurement's key and the pose at the measurement's stamp in that key's frame."""

    index: int
    T_key_at: FloatArray


class _LidarChain:
    """Scans since the anchor key: base_link's composed motion and its covariance.

    The covariance is over a right perturbation of T_anchor_last in gtsam order, in
    base_link at the last scan: composing T_ab with T_bc gives
    Sigma_ac = Ad(T_bc^-1) Sigma_ab Ad(T_bc^-1)^T + Sigma_bc. Degenerate directions carry the
    variance 1 / floor, so they stay (almost) free through the composition.
    """

    def __init__(self, stamp_ns: int, anchor: _Attachment) -> None:
        self.stamp_ns = stamp_ns
        self.anchor = anchor
        self.T_anchor_last = np.eye(4)
        self.covariance = np.zeros((6, 6))

    def append(self, result: LidarOdometryResult, T_base_sensor: FloatArray, floor: float,
               scale: float, turn_sigmas: tuple[float, float] = (0.0, 0.0)) -> None:
        """Compose one scan-to-scan result; ``turn_sigmas`` (rad, m per radian the scan
        turned) add rotation and translation noise."""
        T_base_sensor = np.asarray(T_base_sensor, dtype=np.float64)
        T_step = T_base_sensor @ result.T_prev_curr @ np.linalg.inv(T_base_sensor)
        covariance_step = np.linalg.inv(lidar_information_in_base(result, T_base_sensor, floor,
                                                                  scale))
        turned = float(np.linalg.norm(gtsam.Rot3.Logmap(gtsam.Rot3(T_step[:3, :3]))))
        if turned > 0.0 and (turn_sigmas[0] > 0.0 or turn_sigmas[1] > 0.0):
            covariance_step = covariance_step + np.diag(
                [(turn_sigmas[0] * turned) ** 2] * 3 + [(turn_sigmas[1] * turned) ** 2] * 3)
        Ad = _pose(T_step).inverse().AdjointMap()
        self.covariance = Ad @ self.covariance @ Ad.T + covariance_step
        self.T_anchor_last = self.T_anchor_last @ T_step
        self.stamp_ns = result.stamp_ns

    def factor(self, here: _Attachment, floor: float) -> gtsam.NonlinearFactor:
        """Between factor from the anchor key to ``here``'s key (the last scan is there)."""
        T_key_at = _pose(here.T_key_at)
        measured = self.anchor.T_key_at @ self.T_anchor_last @ np.linalg.inv(here.T_key_at)
        # The last scan's frame is T_key_at in the key's frame: carry the covariance there.
        Ad = T_key_at.AdjointMap()
        covariance = Ad @ self.covariance @ Ad.T
        info = np.linalg.inv(0.5 * (covariance + covariance.T))
        eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (info + info.T))
        info = eigenvectors @ np.diag(np.maximum(eigenvalues, floor)) @ eigenvectors.T
        return gtsam.BetweenFactorPose3(X(self.anchor.index), X(here.index), _pose(measured),
                                        gtsam.noiseModel.Gaussian.Information(info))


class _OdometryBuffer:
    """Recent wheel-odometry poses, interpolated (and briefly extrapolated) on SE(3)."""

    def __init__(self, keep_ns: int) -> None:
        self.keep_ns = keep_ns
        self.stamps_ns: list[int] = []
        self.poses: list[gtsam.Pose3] = []

    def add(self, sample: OdometrySample) -> None:
        """Append a sample (out-of-order or duplicate stamps are ignored)."""
        if self.stamps_ns and sample.stamp_ns <= self.stamps_ns[-1]:
            return
        self.stamps_ns.append(sample.stamp_ns)
        self.poses.append(gtsam.Pose3(np.asarray(sample.T_odom_base, dtype=np.float64)))
        if sample.stamp_ns - self.stamps_ns[0] > 2 * self.keep_ns:
            cut = bisect.bisect_left(self.stamps_ns, sample.stamp_ns - self.keep_ns)
            del self.stamps_ns[:cut], self.poses[:cut]

    def pose_at(self, stamp_ns: int, max_extrapolation_ns: int) -> gtsam.Pose3 | None:
        """T_odom_base at ``stamp_ns``; None outside the buffer (+ extrapolation margin).

        Before the first sample the first pose is held; after the last, the last two are
        extrapolated at constant velocity.
        """
        stamps = self.stamps_ns
        if (not stamps or stamp_ns < stamps[0] - max_extrapolation_ns
                or stamp_ns > stamps[-1] + max_extrapolation_ns):
            return None
        if len(stamps) == 1 or stamp_ns <= stamps[0]:
            return self.poses[0]
        i = min(max(bisect.bisect_right(stamps, stamp_ns), 1), len(stamps) - 1)
        t0, t1 = stamps[i - 1], stamps[i]
        a, b = self.poses[i - 1], self.poses[i]
        w = (stamp_ns - t0) / (t1 - t0)  # > 1: constant-velocity extrapolation
        return a.compose(gtsam.Pose3.Expmap(w * gtsam.Pose3.Logmap(a.between(b))))


def _pose(T: FloatArray) -> gtsam.Pose3:
    return gtsam.Pose3(np.asarray(T, dtype=np.float64))


def _site_rotation(pose: gtsam.Pose3) -> FloatArray:
    """Maps a gtsam body-tangent vector (rot, trans) to ROS order about the site axes."""
    R = pose.rotation().matrix()
    M = np.zeros((6, 6))
    M[:3, 3:] = R
    M[3:, :3] = R
    return M


def covariance_to_site(pose: gtsam.Pose3, covariance_gtsam: FloatArray) -> FloatArray:
    """gtsam marginal (body tangent, rot first) -> 6x6 (x, y, z, roll, pitch, yaw) in site axes."""
    M = _site_rotation(pose)
    covariance: FloatArray = M @ covariance_gtsam @ M.T
    return covariance


def covariance_from_site(pose: gtsam.Pose3, covariance_site: FloatArray) -> FloatArray:
    """Inverse of ``covariance_to_site``."""
    M = _site_rotation(pose)
    covariance: FloatArray = M.T @ np.asarray(covariance_site, dtype=np.float64) @ M
    return covariance


def lidar_information_in_base(result: LidarOdometryResult, T_base_sensor: FloatArray,
                              floor: float, scale: float = 1.0) -> FloatArray:
    """The scan's information about base_link's motion, gtsam order, degenerate parts floored.

    The record's information is over a right perturbation of T_prev_curr in the current
    sensor frame, ROS order. Flagged degenerate directions are projected out first, then
    every eigenvalue below ``floor`` is raised to it; finally the perturbation is carried to
    base_link: xi_base = Ad(T_base_sensor) xi_sensor, so I_base = Ad^-T I_sensor Ad^-1.
    """
    info = _SWAP @ (scale * np.asarray(result.information, dtype=np.float64)) @ _SWAP.T
    info = 0.5 * (info + info.T)
    directions = np.asarray(result.degenerate_directions, dtype=np.float64).reshape(-1, 6)
    if len(directions):
        basis, _ = np.linalg.qr((directions @ _SWAP.T).T)  # orthonormal, gtsam order
        keep = np.eye(6) - basis @ basis.T
        info = keep @ info @ keep
    eigenvalues, eigenvectors = np.linalg.eigh(info)
    info = eigenvectors @ np.diag(np.maximum(eigenvalues, floor)) @ eigenvectors.T
    Ad_inv = _pose(T_base_sensor).inverse().AdjointMap()
    info_base: FloatArray = Ad_inv.T @ info @ Ad_inv
    return 0.5 * (info_base + info_base.T)


def wheel_odometry_sigmas(T_prev_curr: gtsam.Pose3, config: FusionConfig,
                          ahrs: bool = False) -> FloatArray:
    """Sigmas (roll, pitch, yaw, along, cross, vertical) of one odometry increment.

    Linear in the distance driven: slip makes the along-track error proportional to it.
    ``ahrs``: the AHRS gives the tilt at the increment's end (the looser tilt sigma).
    """
    c = config
    distance = float(np.linalg.norm(T_prev_curr.translation()))
    turned = abs(T_prev_curr.rotation().yaw())
    tilt = c.wheel_tilt_sigma_with_ahrs_rad_per_m if ahrs else c.wheel_tilt_sigma_rad_per_m
    return np.array([
        tilt * distance + c.wheel_rotation_floor_rad,
        tilt * distance + c.wheel_rotation_floor_rad,
        c.wheel_yaw_sigma_rad_per_m * distance + c.wheel_yaw_sigma_rad_per_rad * turned
        + c.wheel_rotation_floor_rad,
        c.wheel_along_sigma_per_m * distance + c.wheel_translation_floor_m,
        c.wheel_cross_sigma_per_m * distance + c.wheel_translation_floor_m,
        c.wheel_vertical_sigma_per_m * distance + c.wheel_translation_floor_m,
    ])


ErrorFunction = Callable[[gtsam.CustomFactor, gtsam.Values, list[FloatArray] | None], FloatArray]


def scaled_odometry_error(T_prev_curr: gtsam.Pose3) -> ErrorFunction:
    """Error of a wheel increment whose translation over-reads by the scale K.

    keys (X_i, X_j, K_j): e = Log( D(K)^-1 * X_i^-1 X_j ), D(K) = (R, t / K). As a right
    perturbation of D, dD/dK = (0, -R^T t / K^2).
    """
    R = T_prev_curr.rotation()
    t = T_prev_curr.translation()
    R_T_t = R.matrix().T @ t

    def error(this: gtsam.CustomFactor, values: gtsam.Values,
              jacobians: list[FloatArray] | None) -> FloatArray:
        keys = this.keys()
        X_i, X_j = values.atPose3(keys[0]), values.atPose3(keys[1])
        scale = values.atDouble(keys[2])
        D = gtsam.Pose3(R, t / scale)
        H_i, H_j = np.zeros((6, 6), order="F"), np.zeros((6, 6), order="F")
        relative = X_i.between(X_j, H_i, H_j)
        H_D, H_rel = np.zeros((6, 6), order="F"), np.zeros((6, 6), order="F")
        E = D.between(relative, H_D, H_rel)
        H_log = np.zeros((6, 6), order="F")
        e: FloatArray = gtsam.Pose3.Logmap(E, H_log)
        if jacobians is not None:
            dD_dK = np.concatenate([np.zeros(3), -R_T_t / scale**2])
            jacobians[0] = H_log @ H_rel @ H_i
            jacobians[1] = H_log @ H_rel @ H_j
            jacobians[2] = (H_log @ H_D @ dD_dK).reshape(6, 1)
        return e

    return error


def tether_error(axis: Axis, zero_distance_m: float, length_m: float,
                 point_in_key_m: FloatArray) -> ErrorFunction:
    """Error of a cable-counter reading: (1 + S) (d(X p) - d0) - L, keys (X, S).

    d is the chainage of the point ``point_in_key_m`` of the key frame (base_link at the
    reading's stamp) on its nearest axis segment, extended past the axis's ends; its gradient
    is that segment's direction.
    """

    def error(this: gtsam.CustomFactor, values: gtsam.Values,
              jacobians: list[FloatArray] | None) -> FloatArray:
        keys = this.keys()
        pose = values.atPose3(keys[0])
        stretch = values.atDouble(keys[1])
        H_point = np.zeros((3, 6), order="F")
        point = pose.transformFrom(point_in_key_m, H_point)
        distance, direction = axis.chainage_and_direction(point)
        along = distance - zero_distance_m
        if jacobians is not None:
            jacobians[0] = ((1.0 + stretch) * direction @ H_point).reshape(1, 6)
            jacobians[1] = np.array([[along]])
        return np.array([(1.0 + stretch) * along - length_m])

    return error


def heading_error(yaw_rad: float, R_key_at: FloatArray) -> ErrorFunction:
    """Error of "base_link's yaw at the measurement is ``yaw_rad``", key (X,).

    The measured frame is X's rotation R composed with ``R_key_at`` (the wheel odometry from
    the key to the measurement): e = wrap(yaw(R R_ka) - yaw_rad), yaw the ZYX one,
    atan2(M10, M00). For a right perturbation w of R, M = R R_ka becomes M Exp(R_ka^T w),
    and d(M[i, 0]) = M[i, 1] u_z - M[i, 2] u_y with u = R_ka^T w.
    """
    R_ka = np.asarray(R_key_at, dtype=np.float64)

    def error(this: gtsam.CustomFactor, values: gtsam.Values,
              jacobians: list[FloatArray] | None) -> FloatArray:
        M = values.atPose3(this.keys()[0]).rotation().matrix() @ R_ka
        yaw = math.atan2(M[1, 0], M[0, 0])
        if jacobians is not None:
            norm = max(M[0, 0] ** 2 + M[1, 0] ** 2, 1e-12)
            d_u = np.array([0.0, -(M[0, 0] * M[1, 2] - M[1, 0] * M[0, 2]),
                            M[0, 0] * M[1, 1] - M[1, 0] * M[0, 1]]) / norm
            jacobians[0] = np.concatenate([d_u @ R_ka.T, np.zeros(3)]).reshape(1, 6)
        return np.array([math.remainder(yaw - yaw_rad, math.tau)])

    return error


def axis_offset_error(axis: Axis, point_in_key_m: FloatArray, vertical_offset_m: float,
                      lateral_offset_m: float = 0.0) -> ErrorFunction:
    """Error of "this point of the key frame is at (lateral, vertical) offsets from the axis".

    With d the unit direction of the nearest axis segment through a, the lateral axis is
    n1 = z x d (normalised) and the vertical one n2 = d x n1; the error is
    (n1 . (X p - a) - lateral_offset_m, n2 . (X p - a) - vertical_offset_m).
    """

    def error(this: gtsam.CustomFactor, values: gtsam.Values,
              jacobians: list[FloatArray] | None) -> FloatArray:
        pose = values.atPose3(this.keys()[0])
        H_point = np.zeros((3, 6), order="F")
        point = pose.transformFrom(point_in_key_m, H_point)
        chainage, direction = axis.chainage_and_direction(point)
        foot = axis.point_at(chainage)
        lateral = np.cross([0.0, 0.0, 1.0], direction)
        lateral /= max(float(np.linalg.norm(lateral)), 1e-9)
        vertical = np.cross(direction, lateral)
        basis = np.vstack([lateral, vertical])
        if jacobians is not None:
            jacobians[0] = basis @ H_point
        residual: FloatArray = basis @ (point - foot) - np.array([lateral_offset_m,
                                                                  vertical_offset_m])
        return residual

    return error


class FusedLocalizer:
    """Smooths wheel and lidar odometry, gyro, tether, 5G, BeiDou and landmarks (iSAM2).

    Every ``add_*`` returns whether the measurement entered the graph; before
    ``initialize`` only odometry and gyro samples are kept (to be used once it is called).
    """

    def __init__(self, site: Site, config: FusionConfig | None = None) -> None:
        self.site = site
        self.config = config or FusionConfig()
        self._frame = site.frame()
        self._tether = site.tether or TetherCalibration(
            site.axes[0].name, site.axes[0].start_distance_m,
            self.config.tether_stretch_nominal, self.config.tether_stretch_sigma)
        params = gtsam.ISAM2Params()
        thresholds = gtsam.ISAM2ThresholdMap()
        thresholds.insert(("x", np.full(6, self.config.isam_relinearize_pose_threshold)))
        for symbol in ("k", "s"):
            thresholds.insert((symbol, np.array([self.config.isam_relinearize_scalar_threshold])))
        params.setRelinearizeThreshold(thresholds)
        params.relinearizeSkip = self.config.isam_relinearize_skip
        # QR, not Cholesky: long dead-reckoning chains (marginal sigmas of metres against
        # millimetre steps) make Cholesky report an indeterminate system; QR costs the same.
        params.setFactorization("QR")
        # Check relinearization only where the update reached (top of the tree): O(changed),
        # not O(keys), per update.
        params.enablePartialRelinearizationCheck = True
        params.setOptimizationParams(
            gtsam.ISAM2GaussNewtonParams(self.config.isam_wildfire_threshold))
        self._isam = gtsam.ISAM2(params)
        self._graph = gtsam.NonlinearFactorGraph()
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        self._keys: list[_Key] = []
        self._key_stamps_ns: list[int] = []
        self._odometry = _OdometryBuffer(round(self.config.odometry_buffer_s * _NS))
        self._tilt: tuple[int, float, float] | None = None
        self._yaw_rate_stamps_ns: list[int] = []
        self._yaw_rates_radps: list[float] = []
        self._lidar: _LidarChain | None = None
        self._stretch_from: int | None = None
        self._tether_keys: set[int] = set()
        self._axis_name: str | None = None
        self._T_map_odom: FloatArray | None = None
        self._latest_pose = gtsam.Pose3()
        self._latest_scale = 1.0
        self._latest_stretch = 0.0

    @property
    def initialized(self) -> bool:
        """Whether a start pose was given."""
        return bool(self._keys)

    # --- inputs -----------------------------------------------------------------------------

    def initialize(self, T_site_base: FloatArray, stamp_ns: int,
                   covariance: FloatArray | None = None) -> None:
        """Start at ``T_site_base`` (e.g. the entry manhole); covariance 6x6 in site axes."""
        if self.initialized:
            raise RuntimeError("the localizer is already initialized")
        c = self.config
        if covariance is None:
            covariance = np.diag([c.initial_position_sigma_m**2] * 3
                                 + [c.initial_rotation_sigma_rad**2] * 3)
        pose = _pose(T_site_base)
        # Start pose and its uncertainty
        self._add_key(stamp_ns, pose)
        prior = gtsam.noiseModel.Gaussian.Covariance(covariance_from_site(pose, covariance))
        self._add_factor(gtsam.PriorFactorPose3(X(0), pose, prior))
        # Wheel scale: nominally 1
        if c.estimate_wheel_scale:
            self._add_factor(gtsam.PriorFactorDouble(
                K(0), 1.0, gtsam.noiseModel.Isotropic.Sigma(1, c.wheel_scale_prior_sigma)))
        self._update()

    def add_wheel_odometry(self, sample: OdometrySample) -> bool:
        """Buffer a wheel-odometry pose; make a key pose when enough time or distance passed."""
        self._odometry.add(sample)
        if not self.initialized or self._lidar_active(sample.stamp_ns):
            return False  # while lidar flows, keys are made at scans
        if not self._key_due(sample.stamp_ns):
            return False
        # New key pose, chained to the previous one by the odometry
        self._make_key(sample.stamp_ns)
        self._update()
        return True

    def add_lidar_odometry(self, result: LidarOdometryResult, T_base_sensor: FloatArray) -> bool:
        """Scan-to-scan motion from lidar odometry, weighted by its information matrix.

        Scans between key poses are chained (motions composed, covariances propagated); the
        chain becomes one between factor when it reaches a newer key.
        """
        if not self.initialized or result.stamp_ns < self._key_stamps_ns[0]:
            return False
        c = self.config
        chain = self._lidar
        usable = (chain is not None and result.fitness >= c.lidar_min_fitness
                  and 0 < result.stamp_ns - chain.stamp_ns <= c.lidar_max_gap_s * _NS)
        # Key pose at the scan, if one is due
        here = self._attach(result.stamp_ns)
        if not usable or chain is None:
            self._lidar = _LidarChain(result.stamp_ns, here)
            self._update()
            return False
        # Compose this scan's motion onto the chain (constrained directions only)
        chain.append(result, T_base_sensor, c.lidar_information_floor, c.lidar_information_scale,
                     (c.lidar_turn_sigma_rad_per_rad or 0.0, c.lidar_turn_sigma_m_per_rad))
        # One between factor once the chain reaches a newer key
        if here.index != chain.anchor.index:
            self._add_factor(chain.factor(here, c.lidar_information_floor))
            self._lidar = _LidarChain(result.stamp_ns, here)
        self._update()
        return True

    def add_imu_yaw_rate(self, stamp_ns: int, yaw_rate_radps: float) -> None:
        """A gyro sample (rate about base_link z); integrated between consecutive keys."""
        if self._yaw_rate_stamps_ns and stamp_ns <= self._yaw_rate_stamps_ns[-1]:
            return
        self._yaw_rate_stamps_ns.append(stamp_ns)
        self._yaw_rates_radps.append(yaw_rate_radps)
        if len(self._yaw_rate_stamps_ns) > 8192:
            del self._yaw_rate_stamps_ns[:4096], self._yaw_rates_radps[:4096]

    def add_imu_tilt(self, stamp_ns: int, roll_rad: float, pitch_rad: float) -> None:
        """Roll and pitch of base_link from the AHRS (gravity); used at the next key pose."""
        self._tilt = (stamp_ns, roll_rad, pitch_rad)

    def add_tether(self, stamp_ns: int, length_m: float) -> bool:
        """Cable paid out = (1 + stretch) * distance along the tether's axis from the entry."""
        if not self.initialized or stamp_ns < self._key_stamps_ns[0]:
            return False
        # Key pose at the reading (one reading per key: more add Python factors, not information)
        at = self._attach(stamp_ns)
        if at.index in self._tether_keys or at.index < (self._stretch_from or 0):
            self._update()
            return False
        self._tether_keys.add(at.index)
        # Stretch variables from here on, starting from the site file's calibration
        self._start_stretch(at.index)
        # Counter factor on the projection onto the axis
        c = self.config
        sigma = math.hypot(c.tether_counter_sigma_m, c.tether_sigma_per_m * length_m)
        error = tether_error(self.site.axis(self._tether.axis), self._tether.zero_distance_m,
                             length_m, at.T_key_at[:3, 3].copy())
        self._add_factor(gtsam.CustomFactor(gtsam.noiseModel.Isotropic.Sigma(1, sigma),
                                            [X(at.index), S(at.index)], error))
        self._update()
        return True

    def add_position_fix(self, fix: PositionFix) -> bool:
        """A 5G or BeiDou position of the antenna, behind a robust kernel."""
        if not self.initialized or fix.stamp_ns < self._key_stamps_ns[0]:
            return False
        c = self.config
        if fix.source is FixSource.RADIO_5G:
            antenna_m, sigma_scale = c.antenna_5g_in_base_m, c.fix_5g_sigma_scale
        else:
            antenna_m, sigma_scale = c.antenna_beidou_in_base_m, c.fix_beidou_sigma_scale
        # Key pose at the fix
        at = self._attach(fix.stamp_ns)
        lever_m = at.T_key_at[:3, :3] @ np.asarray(antenna_m) + at.T_key_at[:3, 3]
        # Position factor, robust to NLOS and wrong fixes
        covariance = sigma_scale**2 * np.asarray(fix.covariance, dtype=np.float64)
        covariance = covariance + c.fix_min_sigma_m**2 * np.eye(3)
        noise = self._robust(gtsam.noiseModel.Gaussian.Covariance(covariance), c.fix_kernel_width)
        self._add_factor(gtsam.GPSFactorArm(X(at.index), np.asarray(fix.position_m, dtype=float),
                                            lever_m, noise))
        self._update()
        return True

    def add_landmark(self, stamp_ns: int, landmark_id: str, sigma_m: float) -> bool:
        """The robot is at a site-file landmark now (within ``sigma_m``)."""
        landmark = self.site.landmark(landmark_id)
        if not self.initialized or stamp_ns < self._key_stamps_ns[0]:
            return False
        # Key pose at the detection
        at = self._attach(stamp_ns)
        # Position factor at the landmark
        noise = self._robust(gtsam.noiseModel.Isotropic.Sigma(3, sigma_m),
                             self.config.landmark_kernel_width)
        self._add_factor(gtsam.GPSFactorArm(X(at.index), np.asarray(landmark.position_m),
                                            at.T_key_at[:3, 3].copy(), noise))
        self._update()
        return True

    def add_axis_offset(self, stamp_ns: int, sigma_lateral_m: float, sigma_vertical_m: float,
                        vertical_offset_m: float = 0.0, axis_name: str | None = None,
                        lateral_offset_m: float = 0.0) -> bool:
        """The robot is on the axis now (a crawler on a pipe's invert line), within sigmas,
        ``vertical_offset_m`` above it and ``lateral_offset_m`` to its left (measured)."""
        if not self.initialized or stamp_ns < self._key_stamps_ns[0]:
            return False
        # Key pose at the stamp
        at = self._attach(stamp_ns)
        point = at.T_key_at[:3, 3].copy()
        T_site_point = self._latest_pose.matrix()
        axis, _ = self.site.locate(T_site_point[:3, 3], axis_name or self._axis_name)
        # Offset factor from the axis, robust (a lateral connection or a bend can mislead)
        noise = self._robust(gtsam.noiseModel.Diagonal.Sigmas(
            np.array([sigma_lateral_m, sigma_vertical_m])), self.config.landmark_kernel_width)
        self._add_factor(gtsam.CustomFactor(noise, [X(at.index)],
                                            axis_offset_error(axis, point, vertical_offset_m,
                                                              lateral_offset_m)))
        self._update()
        return True

    def add_heading(self, stamp_ns: int, yaw_rad: float, sigma_rad: float) -> bool:
        """base_link's yaw in the site frame now (e.g. from a gallery's walls, which run along
        a known axis), within ``sigma_rad``, behind a robust kernel."""
        if not self.initialized or stamp_ns < self._key_stamps_ns[0]:
            return False
        # Key pose at the stamp
        at = self._attach(stamp_ns)
        # Yaw factor, robust (a wrong wall line, an unexpected turn)
        noise = self._robust(gtsam.noiseModel.Isotropic.Sigma(1, sigma_rad),
                             self.config.heading_kernel_width, self.config.heading_kernel)
        self._add_factor(gtsam.CustomFactor(noise, [X(at.index)],
                                            heading_error(yaw_rad, at.T_key_at[:3, :3].copy())))
        self._update()
        return True

    def add_loop_closure(self, old_key: int, new_key: int, T_old_new: FloatArray,
                         information: FloatArray, kernel_width: float = 3.0) -> bool:
        """A registration of key ``new_key``'s scan against key ``old_key``'s: between factor
        behind a Cauchy kernel (information over a right perturbation, gtsam order)."""
        if not (0 <= old_key < new_key < len(self._keys)):
            return False
        noise = gtsam.noiseModel.Robust.Create(
            gtsam.noiseModel.mEstimator.Cauchy.Create(kernel_width),
            gtsam.noiseModel.Gaussian.Information(np.asarray(information, dtype=np.float64)))
        self._add_factor(gtsam.BetweenFactorPose3(X(old_key), X(new_key), _pose(T_old_new),
                                                  noise))
        self._update()
        return True

    def key_at(self, stamp_ns: int) -> int | None:
        """The latest key's index if it was made at ``stamp_ns`` (e.g. at this scan)."""
        if self._keys and self._keys[-1].stamp_ns == stamp_ns:
            return self._keys[-1].index
        return None

    def key_poses(self, indices: list[int]) -> dict[int, FloatArray]:
        """Current estimates T_site_base of the given keys (those that exist)."""
        return {i: self._isam.calculateEstimatePose3(X(i)).matrix() for i in indices
                if 0 <= i < len(self._keys) and self._isam.valueExists(X(i))}

    # --- outputs ----------------------------------------------------------------------------

    def estimate(self) -> LocalizationEstimate:
        """The smoothed pose now, with its covariance, geodetic and axis position.

        "Now" is the latest wheel-odometry sample when it is newer than the latest key: the
        key's smoothed pose carried forward by the (scale-corrected) odometry, its covariance
        grown by that odometry step's noise.
        """
        if not self.initialized:
            raise LocalizerNotInitializedError("initialize() the localizer first")
        key = self._resolve_odometry(self._keys[-1])
        # Smoothed latest key and its marginal
        key_pose = self._isam.calculateEstimatePose3(X(key.index))
        covariance_key = self._isam.marginalCovariance(X(key.index))
        scale = (float(self._isam.calculateEstimateDouble(K(key.index)))
                 if self.config.estimate_wheel_scale else None)
        # Carried forward to the latest odometry sample
        stamp_ns = max(key.stamp_ns, self._odometry.stamps_ns[-1] if self._odometry.stamps_ns
                       else key.stamp_ns)
        step = _pose(self._odometry_offset(key, stamp_ns, scale or 1.0))
        pose = key_pose.compose(step)
        Ad = step.inverse().AdjointMap()
        step_sigmas = wheel_odometry_sigmas(step, self.config)
        covariance = covariance_to_site(pose, Ad @ covariance_key @ Ad.T
                                        + np.diag(step_sigmas**2) * (stamp_ns > key.stamp_ns))
        T_site_base = pose.matrix()
        # Geodetic position, and the counter along the current axis
        latitude, longitude, height = self._frame.to_geodetic(T_site_base[:3, 3])[0]
        axis, where = self.site.locate(T_site_base[:3, 3], self._axis_name,
                                       self.config.axis_hysteresis_m)
        self._axis_name = axis.name
        # tf map -> odom from the key (where both poses are known)
        if key.T_odom_base is not None:
            self._T_map_odom = key_pose.matrix() @ np.linalg.inv(key.T_odom_base)
        stretch = (float(self._isam.calculateEstimateDouble(S(key.index)))
                   if self._stretch_from is not None else None)
        return LocalizationEstimate(stamp_ns, T_site_base, covariance, float(latitude),
                                    float(longitude), float(height), axis.name,
                                    where.distance_m, where.offset_m, self._T_map_odom,
                                    scale, stretch)

    def trajectory(self) -> list[tuple[int, FloatArray]]:
        """(stamp_ns, T_site_base) of every key, as smoothed so far."""
        return self._trajectory_from(self._isam.calculateBestEstimate())

    def smooth(self) -> list[tuple[int, FloatArray]]:
        """Batch Levenberg-Marquardt over the whole graph (offline), from iSAM2's estimate."""
        if not self.initialized:
            return []
        optimizer = gtsam.LevenbergMarquardtOptimizer(self._graph,
                                                      self._isam.calculateBestEstimate())
        return self._trajectory_from(optimizer.optimize())

    # --- key poses --------------------------------------------------------------------------

    def _lidar_active(self, stamp_ns: int) -> bool:
        return (self._lidar is not None
                and stamp_ns - self._lidar.stamp_ns <= self.config.lidar_max_gap_s * _NS)

    def _key_due(self, stamp_ns: int) -> bool:
        """Whether a measurement at ``stamp_ns`` should make a new key pose."""
        c = self.config
        last = self._resolve_odometry(self._keys[-1])
        dt_ns = stamp_ns - last.stamp_ns
        at = self._odometry_pose(stamp_ns)
        if last.T_odom_base is None or at is None:
            return dt_ns >= c.key_min_interval_s * _NS  # nothing to bridge the gap with
        if dt_ns >= c.key_max_interval_s * _NS:
            return True
        moved = float(np.linalg.norm(at.translation() - last.T_odom_base[:3, 3]))
        return moved >= c.key_max_distance_m and dt_ns >= c.key_min_interval_s * _NS

    def _attach(self, stamp_ns: int) -> _Attachment:
        """The key a measurement at ``stamp_ns`` goes to, making a new one if one is due."""
        if stamp_ns > self._key_stamps_ns[-1] and self._key_due(stamp_ns):
            return _Attachment(self._make_key(stamp_ns), np.eye(4))
        i = bisect.bisect_left(self._key_stamps_ns, stamp_ns)
        nearest = min((j for j in (i - 1, i) if 0 <= j < len(self._keys)),
                      key=lambda j: abs(self._key_stamps_ns[j] - stamp_ns))
        key = self._resolve_odometry(self._keys[nearest])
        scale = 1.0
        if self.config.estimate_wheel_scale:
            scale = (self._latest_scale if nearest == self._keys[-1].index
                     else float(self._isam.calculateEstimateDouble(K(nearest))))
        return _Attachment(nearest, self._odometry_offset(key, stamp_ns, scale))

    def _odometry_offset(self, key: _Key, stamp_ns: int, scale: float) -> FloatArray:
        """T_key_at: base_link at ``stamp_ns`` in the key's frame, from the wheel odometry
        with its translation divided by the wheel scale (identity without odometry)."""
        at = self._odometry_pose(stamp_ns)
        if key.T_odom_base is None or at is None:
            return np.eye(4)
        step = _pose(key.T_odom_base).between(at)
        return gtsam.Pose3(step.rotation(), step.translation() / scale).matrix()

    def _make_key(self, stamp_ns: int) -> int:
        """A new key at ``stamp_ns`` (newer than the latest), chained to the latest."""
        c = self.config
        previous = self._resolve_odometry(self._keys[-1])
        T_odom_base = self._odometry_pose(stamp_ns)
        have_odometry = T_odom_base is not None and previous.T_odom_base is not None
        increment = gtsam.Pose3()
        if T_odom_base is not None and previous.T_odom_base is not None:
            increment = _pose(previous.T_odom_base).between(T_odom_base)
        scale = self._scale_estimate(previous.index) if c.estimate_wheel_scale else 1.0
        guess = self._pose_estimate(previous.index).compose(
            gtsam.Pose3(increment.rotation(), increment.translation() / scale))
        index = self._add_key(stamp_ns, guess, T_odom_base)
        # Wheel odometry, or a weak motion prior where no odometry covers the interval
        if have_odometry:
            self._add_wheel_factor(previous.index, index, increment,
                                   self._tilt_near(stamp_ns) is not None)
        else:
            self._add_motion_prior(previous.index, index, (stamp_ns - previous.stamp_ns) / _NS)
        # Slip and stretch drift slowly with the distance driven
        distance = float(np.linalg.norm(increment.translation()))
        if c.estimate_wheel_scale:
            self._add_random_walk(K, previous.index, index,
                                  c.wheel_scale_walk_sigma_per_sqrt_m, distance)
        if self._stretch_from is not None:
            self._new_values.insert(S(index), self._latest_stretch)
            self._add_random_walk(S, previous.index, index,
                                  c.tether_stretch_walk_sigma_per_sqrt_m, distance)
        # Gyro yaw between the keys, gravity's direction at the new one
        self._add_yaw_rate_factor(previous, self._keys[-1])
        self._add_tilt_factor(self._keys[-1])
        return index

    def _resolve_odometry(self, key: _Key) -> _Key:
        """Fill in a key's odometry pose once samples around its stamp have arrived."""
        if key.T_odom_base is not None:
            return key
        T_odom_base = self._odometry_pose(key.stamp_ns)
        if T_odom_base is None:
            return key
        resolved = _Key(key.index, key.stamp_ns, T_odom_base.matrix())
        self._keys[key.index] = resolved
        return resolved

    def _add_key(self, stamp_ns: int, guess: gtsam.Pose3,
                 T_odom_base: gtsam.Pose3 | None = None) -> int:
        index = len(self._keys)
        odom = None if T_odom_base is None else T_odom_base.matrix()
        self._keys.append(_Key(index, stamp_ns, odom))
        self._key_stamps_ns.append(stamp_ns)
        self._new_values.insert(X(index), guess)
        if self.config.estimate_wheel_scale:
            scale = 1.0 if index == 0 else self._scale_estimate(index - 1)
            self._new_values.insert(K(index), scale)
        return index

    # --- factors ----------------------------------------------------------------------------

    def _add_wheel_factor(self, i: int, j: int, increment: gtsam.Pose3, ahrs: bool) -> None:
        c = self.config
        noise = gtsam.noiseModel.Diagonal.Sigmas(wheel_odometry_sigmas(increment, c, ahrs))
        if not c.estimate_wheel_scale:
            self._add_factor(gtsam.BetweenFactorPose3(X(i), X(j), increment, noise))
            return
        self._add_factor(gtsam.CustomFactor(noise, [X(i), X(j), K(j)],
                                            scaled_odometry_error(increment)))

    def _add_random_walk(self, symbol: Callable[[int], int], i: int, j: int,
                         sigma_per_sqrt_m: float, distance_m: float) -> None:
        sigma = math.hypot(sigma_per_sqrt_m * math.sqrt(distance_m), _WALK_FLOOR)
        self._add_factor(gtsam.BetweenFactorDouble(symbol(i), symbol(j), 0.0,
                                                   gtsam.noiseModel.Isotropic.Sigma(1, sigma)))

    def _add_motion_prior(self, i: int, j: int, dt_s: float) -> None:
        c = self.config
        translation = c.motion_prior_speed_mps * dt_s + 0.01
        rotation = c.motion_prior_turn_rate_radps * dt_s + 0.01
        noise = gtsam.noiseModel.Diagonal.Sigmas(np.array([rotation] * 3 + [translation] * 3))
        self._add_factor(gtsam.BetweenFactorPose3(X(i), X(j), gtsam.Pose3(), noise))

    def _add_yaw_rate_factor(self, previous: _Key, current: _Key) -> None:
        """Integrated gyro yaw between two keys (trapezoid), if the samples cover the interval."""
        c = self.config
        t0, t1 = previous.stamp_ns, current.stamp_ns
        first = bisect.bisect_left(self._yaw_rate_stamps_ns, t0)
        last = bisect.bisect_right(self._yaw_rate_stamps_ns, t1)
        stamps_ns, rates_radps = (self._yaw_rate_stamps_ns[first:last],
                                  self._yaw_rates_radps[first:last])
        gap_ns = c.imu_max_gap_s * _NS
        if not stamps_ns or stamps_ns[0] - t0 > gap_ns or t1 - stamps_ns[-1] > gap_ns:
            return
        stamps = np.array([t0, *stamps_ns, t1], dtype=np.float64)
        rates = np.array([rates_radps[0], *rates_radps, rates_radps[-1]])
        dt_s = np.diff(stamps) / _NS
        yaw = float(np.sum(0.5 * (rates[1:] + rates[:-1]) * dt_s))
        duration_s = (t1 - t0) / _NS
        sigma = (c.imu_yaw_rate_noise_rad_per_sqrt_s * math.sqrt(duration_s)
                 + c.imu_yaw_rate_bias_sigma_radps * duration_s + 1e-6)
        loose = 1e3  # everything but yaw: no information
        noise = gtsam.noiseModel.Diagonal.Sigmas(np.array([loose, loose, sigma] + [loose] * 3))
        self._add_factor(gtsam.BetweenFactorPose3(
            X(previous.index), X(current.index), gtsam.Pose3(gtsam.Rot3.Yaw(yaw),
                                                             np.zeros(3)), noise))

    def _tilt_near(self, stamp_ns: int) -> tuple[float, float] | None:
        """The AHRS's (roll, pitch) if its latest reading is close enough to ``stamp_ns``."""
        if self._tilt is None or abs(self._tilt[0] - stamp_ns) > self.config.imu_max_gap_s * _NS:
            return None
        return self._tilt[1], self._tilt[2]

    def _add_tilt_factor(self, key: _Key) -> None:
        """Gravity seen in the body: constrains roll and pitch, not yaw."""
        tilt = self._tilt_near(key.stamp_ns)
        if tilt is None:
            return
        roll, pitch = tilt
        down_site = np.array([0.0, 0.0, -1.0])
        down_base = gtsam.Rot3.RzRyRx(roll, pitch, 0.0).unrotate(down_site)
        noise = gtsam.noiseModel.Isotropic.Sigma(2, self.config.imu_tilt_sigma_rad)
        self._add_factor(gtsam.AttitudeFactorPose3(X(key.index), gtsam.Unit3(down_site), noise,
                                                   gtsam.Unit3(down_base)))

    def _start_stretch(self, index: int) -> None:
        """Stretch variables S(index) .. S(latest), the calibration as prior on the first."""
        if self._stretch_from is not None:
            return
        self._stretch_from = index
        self._latest_stretch = self._tether.stretch_nominal
        for k in range(index, len(self._keys)):
            self._new_values.insert(S(k), self._tether.stretch_nominal)
            if k > index:
                self._add_random_walk(S, k - 1, k, self.config.tether_stretch_walk_sigma_per_sqrt_m,
                                      self._odometry_distance_m(k - 1, k))
        self._add_factor(gtsam.PriorFactorDouble(
            S(index), self._tether.stretch_nominal,
            gtsam.noiseModel.Isotropic.Sigma(1, self._tether.stretch_sigma)))

    def _odometry_distance_m(self, i: int, j: int) -> float:
        a, b = self._keys[i].T_odom_base, self._keys[j].T_odom_base
        return 0.0 if a is None or b is None else float(np.linalg.norm(b[:3, 3] - a[:3, 3]))

    def _robust(self, noise: gtsam.noiseModel.Base, width: float,
                kind: RobustKernel | None = None) -> gtsam.noiseModel.Base:
        kind = kind or self.config.fix_kernel
        kernel: gtsam.noiseModel.mEstimator.Base = (
            gtsam.noiseModel.mEstimator.Huber.Create(width) if kind is RobustKernel.HUBER
            else gtsam.noiseModel.mEstimator.Cauchy.Create(width))
        return gtsam.noiseModel.Robust.Create(kernel, noise)

    # --- plumbing ---------------------------------------------------------------------------

    def _add_factor(self, factor: gtsam.NonlinearFactor) -> None:
        self._new_factors.push_back(factor)
        self._graph.push_back(factor)

    def _update(self) -> None:
        """Hand the new factors and keys to iSAM2 (one incremental step)."""
        if self._new_factors.size() == 0 and self._new_values.size() == 0:
            return
        self._isam.update(self._new_factors, self._new_values)
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        # The latest key's estimate seeds the next key's initial guess
        latest = self._keys[-1].index
        self._latest_pose = self._isam.calculateEstimatePose3(X(latest))
        if self.config.estimate_wheel_scale:
            self._latest_scale = float(self._isam.calculateEstimateDouble(K(latest)))
        if self._stretch_from is not None:
            self._latest_stretch = float(self._isam.calculateEstimateDouble(S(latest)))

    def _odometry_pose(self, stamp_ns: int) -> gtsam.Pose3 | None:
        return self._odometry.pose_at(
            stamp_ns, round(self.config.odometry_max_extrapolation_s * _NS))

    def _pose_estimate(self, index: int) -> gtsam.Pose3:
        """Current estimate of key ``index``, which is the latest key (pending or updated)."""
        if self._new_values.exists(X(index)):
            return self._new_values.atPose3(X(index))
        return self._latest_pose

    def _scale_estimate(self, index: int) -> float:
        """Current wheel-scale estimate at key ``index``, the latest key."""
        if self._new_values.exists(K(index)):
            return float(self._new_values.atDouble(K(index)))
        return self._latest_scale

    def _trajectory_from(self, values: gtsam.Values) -> list[tuple[int, FloatArray]]:
        return [(key.stamp_ns, values.atPose3(X(key.index)).matrix()) for key in self._keys
                if values.exists(X(key.index))]
