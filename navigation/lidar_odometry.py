"""Lidar odometry that knows when a pipe or a tunnel leaves it blind along the axis.

Per scan (``LidarOdometry.register``): predict the motion (wheel odometry, else constant
velocity), downsample the raw sweep, undo the motion during the sweep (deskew), register the
sweep against a local map with point-to-plane ICP (Gauss-Newton, Geman-McClure kernel), and
insert it into the map at keyframes. A pipe or a featureless gallery looks the same at every
metre, so the registration's Hessian has (near) zero eigenvalues along the axis (and, in a
round pipe, about it). Those directions are found by eigen-decomposition of the Hessian; the
Gauss-Newton step is solved only in the well-constrained subspace, so that the estimate along
the degenerate directions stays at the motion guess ("solution remapping": Zhang, Kaess and
Singh, "On degeneracy of optimization-based state estimation problems", ICRA 2016); and the
result reports them, so that the fusion back end takes from lidar only what it sees.

The local map (``VoxelPlaneMap``) keeps running point moments per voxel at two scales and
fits a plane to each; fine voxels on a flat coarse voxel take the coarse normal. Keyframes
and coarse normals are both there for one reason: a 16-beam lidar lays rings centimetres
apart from one scan to the next, so a plane fitted across consecutive scans is tilted by their
relative pose error many times over, and the odometry then follows its own bent map.

Frames and conventions: ``T_map_sensor`` is the sensor pose in the odometry map frame (the
first scan's sensor frame); increments are right perturbations ``T <- T @ Exp(delta)`` in the
current sensor frame, ``delta = (x, y, z, roll, pitch, yaw)`` (metres, radians; to first order
the rotation vector equals roll, pitch, yaw increments), which is the frame and order of
``LidarOdometryResult.information``. A ``T_prev_curr_guess`` is the *sensor's* motion (wheel
odometry moved into the sensor frame by the caller).

Planar mode (``LidarOdometryConfig.planar``, for ``LaserScan2D``): the problem has three
degrees of freedom, x, y and yaw. The map fits lines in the x-y plane; the rows and columns of
``information`` for z, roll and pitch are zero because those are outside the problem (not
because the scan failed), and they are never listed in ``degenerate_directions``: a planar
result lists degenerate directions only within span(x, y, yaw), as 6-vectors with zeros at
z, roll and pitch. A 3D guess is reduced to x, y, yaw. A ``LaserScan2D`` is timed as ROS's
LaserScan: stamped at its first beam, beam i firing ``i * time_increment_s`` later (a
``LidarScan3D`` carries its own offsets, ending at its stamp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from navigation.deskew import deskew, so3_exp, so3_log
from navigation.records import LaserScan2D, LidarOdometryResult, LidarScan3D

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DOF_SPATIAL = (0, 1, 2, 3, 4, 5)
"""Indices of (x, y, z, roll, pitch, yaw) estimated from a 3D scan."""
DOF_PLANAR = (0, 1, 5)
"""Indices of (x, y, yaw): the degrees of freedom of a planar scan."""

_KEY_BITS = 21
_KEY_OFFSET = 1 << (_KEY_BITS - 1)
_NS = 1e-9
_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # moments kept per voxel


@dataclass(frozen=True)
class LidarOdometryConfig:
    """Parameters of the lidar odometry (SI units in the names; validated on construction).

    Degeneracy rule: with ``H = sum_i w_i J_i^T J_i`` the robust-weighted Hessian over the
    matched points (J_i the 1x6 point-to-plane Jacobian, w_i in (0, 1]), an eigen-direction
    ``v`` with eigenvalue ``lambda`` is degenerate when ``lambda < degeneracy_threshold *
    sum_i w_i``: the mean square of ``J_i v`` over the matches, i.e. how much a unit step along
    ``v`` moves the average point off its plane (metres per metre for translations, metres
    per radian for rotations, i.e. the displacement at 1 m), is below the threshold. It scales
    with the number of points, so it does not change with voxel size or scan density: 0.03
    means "fewer than about 3 % of the points face this direction". A registration with fewer
    than ``min_correspondences`` matches is degenerate in every direction.
    """

    planar: bool = False
    """True: a 2D scanner (``LaserScan2D``), estimate x, y, yaw only."""
    min_range_m: float = 0.3
    """Closer returns are dropped (the robot's own body, dust on the window)."""
    max_range_m: float = 30.0
    voxel_size_m: float = 0.25
    """Voxel of the downsampled sweep that is registered."""
    map_voxel_size_m: float = 0.25
    """Voxel of the local map; each holds one plane (line in planar mode)."""
    map_insert_voxel_size_m: float = 0.1
    """A keyframe goes into the map downsampled to this voxel."""
    coarse_voxel_size_m: float = 1.0
    """Voxel of the coarse map level: where it is flat, its normal serves the fine voxels."""
    coarse_plane_max_thickness_ratio: float = 0.1
    """A coarse voxel is flat when its thinnest spread is below this fraction of the middle."""
    max_points_per_voxel: int = 40
    """Beyond this count a voxel's moments are scaled down: older points fade out."""
    plane_min_points: int = 5
    """A voxel fits a plane from at least this many points..."""
    plane_max_thickness_ratio: float = 0.3
    """...when its thinnest spread is below this fraction of the middle one..."""
    plane_min_width_ratio: float = 0.1
    """...and its middle spread (std) exceeds this fraction of the voxel: not a lone line."""
    plane_min_view_cosine: float = 0.1
    """...and the sensor did not see it edge-on: |normal . mean viewing ray| at least this.
    Edge-on, range noise lies along the surface, and one beam's ring crossing an edge looks
    planar too, though that plane is the cone of the scan pattern, not a surface."""
    coarse_support_min_points: int = 2
    """A fine voxel on a flat coarse voxel takes the coarse normal from this many points."""
    coarse_support_max_offset_m: float = 0.06
    """...if its centroid lies this close to the coarse plane (else: an object on it)."""
    keyframe_distance_m: float = 0.25
    keyframe_angle_rad: float = 0.15
    """A registered scan joins the map after the sensor moved or turned this much since the
    last one that did."""
    local_map_radius_m: float = 40.0
    """Voxels farther than this from the sensor are dropped from the map."""
    local_map_max_age_keyframes: int = 100000
    """... and those that none of the last this many keyframes saw."""
    max_iterations: int = 20
    convergence_translation_m: float = 1e-4
    convergence_rotation_rad: float = 1e-4
    """Gauss-Newton stops when a step is below both."""
    max_correspondence_distance_m: float = 0.6
    """Search radius from a point to the centroid of a map plane."""
    plane_patch_radius_m: float = 0.25
    """A point matches a plane only if it projects within this distance of its centroid."""
    plane_candidates: int = 1
    """Nearest planes considered per point; the closest to the point wins."""
    kernel_scale_m: float = 0.05
    """Geman-McClure scale: residuals well beyond it barely count."""
    point_sigma_m: float = 0.02
    """Lower bound of the point-to-plane noise that scales the information matrix (the
    weighted RMS residual is used when larger). Points are taken as independent, so the
    information is optimistic: the fusion back end should inflate it."""
    degeneracy_threshold: float = 0.03
    """See the degeneracy rule above."""
    min_correspondences: int = 50
    """Fewer matched points (or map planes): no registration, the guess stands."""
    deskew_tolerance_m: float = 0.01
    deskew_tolerance_rad: float = 0.003
    max_deskew_passes: int = 3
    """A scan whose registered motion is this far off the motion it was deskewed with is
    deskewed again with the registered one and registered again, up to this many passes (a
    robot starting off, a turn beginning: the constant-velocity guess is worst where the
    sweep is most bent)."""
    velocity_smoothing_s: float = 0.3
    """Time constant of the constant-velocity model's smoothing."""
    max_scan_gap_s: float = 1.0
    """Longer gaps between scans: no deskew, no constant-velocity prediction."""
    max_failed_scans: int = 5
    """After this many scans in a row that could not be registered (lost, or a long gap
    that moved the robot off the map), the map restarts around the predicted pose."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "planar" and not value > 0:
                raise ValueError(f"lidar odometry: {f.name} must be positive, got {value}")
        if self.min_range_m >= self.max_range_m:
            raise ValueError(f"lidar odometry: min_range_m {self.min_range_m} must be below "
                             f"max_range_m {self.max_range_m}")


def planar_config(**overrides: Any) -> LidarOdometryConfig:
    """Lidar odometry for a 2D scanner: finer voxels and fewer matches than in 3D.

    A 180-degree scan at 1 degree holds ~180 points; at a 2 x 3 m room's end its walls are
    ~8 m of line, 30 voxels of 0.25 m: with the 3D defaults (0.25 m voxels, 50 matches)
    nothing registered there, and a U-turn in a shelter room followed the wheels' 30-degree
    over-read. Offline SLAM on real-data-like shelter bags (``record_realistic_2d``), ATE
    with the 3D defaults -> these: 45 s seed 4: 2.70 -> 0.35 m; 30 s seed 1: 0.46 -> 0.47 m;
    150 s seed 2: 4.38 -> 0.89 m. The ideal 360-degree, 720-sample simulated scanner lost
    some (40 s: 0.13 -> 0.35 m). Results swing with these settings (0.15 m map voxels: 0.13,
    0.22, 2.47 m): 2D registration through in-place turns near walls is the weak point.
    """
    settings: dict[str, Any] = {"voxel_size_m": 0.1, "map_voxel_size_m": 0.2,
                                "min_correspondences": 20}
    return LidarOdometryConfig(planar=True, **(settings | overrides))


class Registration(NamedTuple):
    """Outcome of one point-to-plane registration."""

    T_map_sensor: FloatArray
    information: FloatArray
    """6x6, in the sensor frame, ordered (x, y, z, roll, pitch, yaw)."""
    degenerate_directions: FloatArray
    """(k, 6) unit eigenvectors of ``information`` below the degeneracy threshold."""
    fitness: float
    correspondences: int
    iterations: int


class NormalEquations(NamedTuple):
    """Gauss-Newton system of the point-to-plane residuals at one linearization point."""

    H: FloatArray
    """6x6 ``sum w J^T J``."""
    g: FloatArray
    """6 ``sum w J^T r``."""
    weight_sum: float
    weighted_square_sum_m2: float
    correspondences: int
    inliers: int
    """Matches with a residual below the kernel scale."""


def voxel_keys(points_m: FloatArray, voxel_size_m: float) -> IntArray:
    """One int64 per point naming its voxel (21 bits per axis: +-2^20 voxels)."""
    ijk = np.floor(points_m / voxel_size_m).astype(np.int64) + _KEY_OFFSET
    keys: IntArray = (ijk[:, 0] << (2 * _KEY_BITS)) | (ijk[:, 1] << _KEY_BITS) | ijk[:, 2]
    return keys


def voxel_subsample(points_m: FloatArray, voxel_size_m: float) -> IntArray:
    """Indices of the first point in each occupied voxel."""
    _, first = np.unique(voxel_keys(points_m, voxel_size_m), return_index=True)
    return first


def voxel_downsample(points_m: FloatArray, voxel_size_m: float) -> FloatArray:
    """The first point of each occupied voxel (N, 3)."""
    return points_m[voxel_subsample(points_m, voxel_size_m)]


def transform(points_m: FloatArray, T_a_b: FloatArray) -> FloatArray:
    """Points (N, 3) in frame b expressed in frame a."""
    result: FloatArray = points_m @ T_a_b[:3, :3].T + T_a_b[:3, 3]
    return result


def twist(T: FloatArray) -> FloatArray:
    """6-vector (translation, rotation vector) of a 4x4 motion; ``se3_exp`` inverts it."""
    return np.concatenate([T[:3, 3], so3_log(T[:3, :3])])


def se3_exp(delta: FloatArray) -> FloatArray:
    """4x4 motion ``[Exp(rotation vector), translation]`` of a 6-vector (x, y, z, rotation
    vector): the decoupled exponential that ``twist`` inverts."""
    T = np.eye(4)
    T[:3, :3] = so3_exp(delta[3:])
    T[:3, 3] = delta[:3]
    return T


class PlaneFit(NamedTuple):
    """Planes fitted to voxel moments (one row per voxel)."""

    centroid_m: FloatArray
    normal: FloatArray
    """Unit normals; in planar mode they lie in the x-y plane."""
    thickness_ratio: FloatArray
    """sqrt(thinnest / middle eigenvalue) of the scatter: 0 for a perfect plane."""
    width_m: FloatArray
    """sqrt(middle eigenvalue): the spread (std) along the patch's narrower in-plane axis."""
    view_cosine: FloatArray
    """|normal . mean viewing ray|: near 0 when the sensor saw the patch edge-on."""
    num_points: FloatArray


class MomentGrid:
    """Voxel hash (sorted int64 keys) of running moments of the points that fell in each voxel.

    Per voxel: count, sum, sum of outer products and sum of unit viewing rays, and the
    insertion that last touched it. Moments make insertion and plane fitting vectorized; old
    points fade out once a voxel is full.
    """

    def __init__(self, voxel_size_m: float, max_points_per_voxel: float) -> None:
        self.voxel_size_m = voxel_size_m
        self.max_points_per_voxel = max_points_per_voxel
        self.keys: IntArray = np.empty(0, np.int64)
        self.insertions = 0
        """Calls of ``add`` so far."""
        self.last_insertion: IntArray = np.empty(0, np.int64)
        """Per voxel: the value of ``insertions`` when points last fell into it."""
        self._count = np.empty(0)
        self._sum_m = np.empty((0, 3))
        self._outer_m2 = np.empty((0, 6))
        self._view_sum = np.empty((0, 3))

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, points_m: FloatArray, rays: FloatArray) -> tuple[IntArray, IntArray]:
        """Accumulate points (and their unit viewing rays); returns ``order``, how the old and
        new voxels were re-sorted (index into old voxels then new ones), and the indices
        (after re-sorting) of the voxels that changed."""
        keys, inverse = np.unique(voxel_keys(points_m, self.voxel_size_m), return_inverse=True)
        count = np.bincount(inverse).astype(np.float64)
        sums = np.column_stack([np.bincount(inverse, points_m[:, i]) for i in range(3)])
        outers = np.column_stack([np.bincount(inverse, points_m[:, i] * points_m[:, j])
                                  for i, j in _UPPER])
        views = np.column_stack([np.bincount(inverse, rays[:, i]) for i in range(3)])
        # Accumulate into voxels we have, append the others (keys stay sorted)
        at = self.lookup(keys)
        known = at >= 0
        self._count[at[known]] += count[known]
        self._sum_m[at[known]] += sums[known]
        self._outer_m2[at[known]] += outers[known]
        self._view_sum[at[known]] += views[known]
        fresh = ~known
        changed = np.zeros(len(self.keys) + int(fresh.sum()), bool)
        changed[at[known]] = True
        changed[len(self.keys):] = True
        order = np.argsort(np.concatenate([self.keys, keys[fresh]]), kind="stable")
        self.keys = np.concatenate([self.keys, keys[fresh]])[order]
        self.insertions += 1
        last = np.concatenate([self.last_insertion, np.zeros(int(fresh.sum()), np.int64)])
        last[changed] = self.insertions
        self.last_insertion = last[order]
        self._count = np.concatenate([self._count, count[fresh]])[order]
        self._sum_m = np.concatenate([self._sum_m, sums[fresh]])[order]
        self._outer_m2 = np.concatenate([self._outer_m2, outers[fresh]])[order]
        self._view_sum = np.concatenate([self._view_sum, views[fresh]])[order]
        # Fade out old points in full voxels
        full = self._count > self.max_points_per_voxel
        scale = self.max_points_per_voxel / self._count[full]
        self._count[full] *= scale
        self._sum_m[full] *= scale[:, None]
        self._outer_m2[full] *= scale[:, None]
        self._view_sum[full] *= scale[:, None]
        return order, np.flatnonzero(changed[order])

    def lookup(self, keys: IntArray) -> IntArray:
        """Index of each key's voxel, -1 where there is none."""
        at = np.searchsorted(self.keys, keys)
        found = at < len(self.keys)
        found[found] = self.keys[at[found]] == keys[found]
        return np.where(found, at, -1)

    def keep(self, mask: BoolArray) -> None:
        """Drop the voxels where ``mask`` is False."""
        self.keys = self.keys[mask]
        self.last_insertion = self.last_insertion[mask]
        self._count = self._count[mask]
        self._sum_m = self._sum_m[mask]
        self._outer_m2 = self._outer_m2[mask]
        self._view_sum = self._view_sum[mask]

    def fit(self, voxels: IntArray, planar: bool) -> PlaneFit:
        """Plane (line in planar mode) of each voxel in ``voxels`` from its moments."""
        n = self._count[voxels]
        mean = self._sum_m[voxels] / n[:, None]
        o = self._outer_m2[voxels] / n[:, None]
        scatter = np.empty((len(voxels), 3, 3))
        for column, (i, j) in enumerate(_UPPER):
            scatter[:, i, j] = scatter[:, j, i] = o[:, column] - mean[:, i] * mean[:, j]
        if planar:  # a line in the x-y plane, its normal in that plane
            eigenvalues, eigenvectors = np.linalg.eigh(scatter[:, :2, :2])
            normal = np.zeros((len(voxels), 3))
            normal[:, :2] = eigenvectors[:, :, 0]
        else:
            eigenvalues, eigenvectors = np.linalg.eigh(scatter)
            normal = eigenvectors[:, :, 0]
        thinnest, middle = np.maximum(eigenvalues[:, 0], 0.0), np.maximum(eigenvalues[:, 1], 0.0)
        view = self._view_sum[voxels]
        view_cosine = np.abs(np.einsum("ij,ij->i", normal, view)) / np.maximum(
            np.linalg.norm(view, axis=1), 1e-12)
        return PlaneFit(mean, normal, np.sqrt(thinnest / np.maximum(middle, 1e-18)),
                        np.sqrt(middle), view_cosine, n)


class VoxelPlaneMap:
    """Local map of planes at two scales, for point-to-plane registration.

    Points go into a fine and a coarse ``MomentGrid``. Where a coarse voxel is flat (a floor,
    a wall), every fine voxel on it takes the coarse normal; elsewhere (a pipe wall, clutter)
    a fine voxel is a plane only if its own points are. Why two scales: a 16-beam lidar lays
    rings a few decimetres apart, so a fine voxel's second in-plane direction often comes
    only from rings of different scans, and then a millimetre of error between their poses
    tilts the voxel's normal by a degree; a metre-wide patch holds several rings of one scan
    and is tilted a quarter as much by the same error.
    """

    def __init__(self, voxel_size_m: float, coarse_voxel_size_m: float,
                 max_points_per_voxel: int, plane_min_points: int,
                 plane_max_thickness_ratio: float, coarse_plane_max_thickness_ratio: float,
                 plane_min_width_ratio: float, plane_min_view_cosine: float,
                 support_min_points: int, support_max_offset_m: float, planar: bool) -> None:
        self.fine = MomentGrid(voxel_size_m, max_points_per_voxel)
        scale = (coarse_voxel_size_m / voxel_size_m) ** (1 if planar else 2)
        self.coarse = MomentGrid(coarse_voxel_size_m, max_points_per_voxel * scale)
        self.plane_min_points = plane_min_points
        self.plane_max_thickness_ratio = plane_max_thickness_ratio
        self.coarse_plane_max_thickness_ratio = coarse_plane_max_thickness_ratio
        self.plane_min_width_ratio = plane_min_width_ratio
        self.plane_min_view_cosine = plane_min_view_cosine
        self.support_min_points = support_min_points
        self.support_max_offset_m = support_max_offset_m
        self.planar = planar
        self._fine_centroid_m = np.empty((0, 3))
        self._fine_normal = np.empty((0, 3))
        self._fine_count = np.empty(0)
        self._fine_is_plane: BoolArray = np.empty(0, bool)
        self._coarse_centroid_m = np.empty((0, 3))
        self._coarse_normal = np.empty((0, 3))
        self._coarse_is_plane: BoolArray = np.empty(0, bool)
        self._plane_centroid_m = np.empty((0, 3))
        self._plane_normal = np.empty((0, 3))
        self._tree: cKDTree | None = None

    @property
    def num_voxels(self) -> int:
        """Occupied fine voxels."""
        return len(self.fine)

    @property
    def num_planes(self) -> int:
        """Fine voxels with a plane (usable for registration)."""
        return len(self._plane_centroid_m)

    def planes(self) -> tuple[FloatArray, FloatArray]:
        """Centroids (P, 3) and unit normals (P, 3) of the map's planes, in the map frame."""
        return self._plane_centroid_m, self._plane_normal

    def insert(self, points_map_m: FloatArray, sensor_m: FloatArray, radius_m: float,
               max_age: int | None = None) -> None:
        """Add points (map frame) seen from ``sensor_m``, then drop voxels farther than
        ``radius_m`` from it, and those no insertion touched in the last ``max_age`` ones."""
        if len(points_map_m) == 0:
            return
        rays = points_map_m - sensor_m
        rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-9)
        # Fine voxels: accumulate and refit those that changed
        order, changed = self.fine.add(points_map_m, rays)
        grow = len(order) - len(self._fine_count)
        self._fine_centroid_m = np.concatenate([self._fine_centroid_m, np.zeros((grow, 3))])[
            order]
        self._fine_normal = np.concatenate([self._fine_normal, np.zeros((grow, 3))])[order]
        self._fine_count = np.concatenate([self._fine_count, np.zeros(grow)])[order]
        self._fine_is_plane = np.concatenate([self._fine_is_plane, np.zeros(grow, bool)])[order]
        fit = self.fine.fit(changed, self.planar)
        self._fine_centroid_m[changed] = fit.centroid_m
        self._fine_normal[changed] = fit.normal
        self._fine_count[changed] = fit.num_points
        self._fine_is_plane[changed] = self._is_plane(fit, self.plane_max_thickness_ratio,
                                                      self.fine.voxel_size_m)
        # Coarse voxels: the same
        order, changed = self.coarse.add(points_map_m, rays)
        grow = len(order) - len(self._coarse_is_plane)
        self._coarse_centroid_m = np.concatenate([self._coarse_centroid_m,
                                                  np.zeros((grow, 3))])[order]
        self._coarse_normal = np.concatenate([self._coarse_normal, np.zeros((grow, 3))])[order]
        self._coarse_is_plane = np.concatenate([self._coarse_is_plane,
                                                np.zeros(grow, bool)])[order]
        fit = self.coarse.fit(changed, self.planar)
        self._coarse_centroid_m[changed] = fit.centroid_m
        self._coarse_normal[changed] = fit.normal
        self._coarse_is_plane[changed] = self._is_plane(
            fit, self.coarse_plane_max_thickness_ratio, self.coarse.voxel_size_m)
        # Keep the neighbourhood of the sensor
        self._keep_near(sensor_m, radius_m, max_age)
        # Planes for registration: coarse normals where flat, fine ones elsewhere
        self._select_planes()

    def _is_plane(self, fit: PlaneFit, max_thickness_ratio: float,
                  voxel_size_m: float) -> BoolArray:
        mask: BoolArray = ((fit.num_points >= self.plane_min_points)
                           & (fit.view_cosine >= self.plane_min_view_cosine)
                           & (fit.thickness_ratio <= max_thickness_ratio)
                           & (fit.width_m >= self.plane_min_width_ratio * voxel_size_m))
        return mask

    def _keep_near(self, sensor_m: FloatArray, radius_m: float, max_age: int | None) -> None:
        near = np.sum((self._fine_centroid_m - sensor_m) ** 2, axis=1) <= radius_m**2
        if max_age is not None:
            near &= self.fine.insertions - self.fine.last_insertion <= max_age
        if not near.all():
            self.fine.keep(near)
            self._fine_centroid_m = self._fine_centroid_m[near]
            self._fine_normal = self._fine_normal[near]
            self._fine_count = self._fine_count[near]
            self._fine_is_plane = self._fine_is_plane[near]
        reach_m = radius_m + self.coarse.voxel_size_m
        near = np.sum((self._coarse_centroid_m - sensor_m) ** 2, axis=1) <= reach_m**2
        if max_age is not None:
            near &= self.coarse.insertions - self.coarse.last_insertion <= max_age
        if not near.all():
            self.coarse.keep(near)
            self._coarse_centroid_m = self._coarse_centroid_m[near]
            self._coarse_normal = self._coarse_normal[near]
            self._coarse_is_plane = self._coarse_is_plane[near]

    def _select_planes(self) -> None:
        parent = self.coarse.lookup(voxel_keys(self._fine_centroid_m, self.coarse.voxel_size_m))
        on_flat = parent >= 0
        on_flat[on_flat] = self._coarse_is_plane[parent[on_flat]]
        normal = self._fine_normal.copy()
        normal[on_flat] = self._coarse_normal[parent[on_flat]]
        # A fine voxel off its coarse plane (an object on the floor) keeps its own fit.
        offset_m = np.abs(np.einsum("ij,ij->i", normal[on_flat], self._fine_centroid_m[on_flat]
                                    - self._coarse_centroid_m[parent[on_flat]]))
        on_flat[on_flat] = offset_m <= self.support_max_offset_m
        normal[~on_flat] = self._fine_normal[~on_flat]
        use = (on_flat & (self._fine_count >= self.support_min_points)) | self._fine_is_plane
        self._plane_centroid_m = self._fine_centroid_m[use]
        self._plane_normal = normal[use]
        self._tree = (cKDTree(self._plane_centroid_m, balanced_tree=False, compact_nodes=False)
                      if self.num_planes else None)

    def nearest_planes(self, points_map_m: FloatArray, max_distance_m: float,
                       patch_radius_m: float, candidates: int
                       ) -> tuple[IntArray, FloatArray, FloatArray]:
        """For each point, the plane that explains it best among nearby ones.

        Of the ``candidates`` planes with the nearest centroids within ``max_distance_m``,
        those whose patch (a disc of ``patch_radius_m`` around the centroid) the point
        projects into, the one with the smallest point-to-plane distance. Returns the indices
        of the points that found one, and those planes' centroids and normals (map frame).
        """
        if self._tree is None or len(points_map_m) == 0:
            return np.empty(0, np.int64), np.empty((0, 3)), np.empty((0, 3))
        distance_m, index = self._tree.query(points_map_m, k=candidates,
                                             distance_upper_bound=max_distance_m)
        distance_m, index = distance_m.reshape(len(points_map_m), -1), index.reshape(
            len(points_map_m), -1)
        found = np.isfinite(distance_m)
        index = np.where(found, index, 0)
        offset_m = points_map_m[:, None, :] - self._plane_centroid_m[index]
        residual_m = np.abs(np.einsum("nkj,nkj->nk", offset_m, self._plane_normal[index]))
        in_patch = distance_m**2 - residual_m**2 <= patch_radius_m**2
        score = np.where(found & in_patch, residual_m, np.inf)
        best = np.argmin(score, axis=1)
        matched = np.flatnonzero(np.isfinite(score[np.arange(len(best)), best]))
        plane = index[matched, best[matched]]
        return matched, self._plane_centroid_m[plane], self._plane_normal[plane]


def point_to_plane_system(source_m: FloatArray, T_map_sensor: FloatArray,
                          local_map: VoxelPlaneMap, config: LidarOdometryConfig,
                          kernel_scale_m: float) -> NormalEquations:
    """Linearize the robust point-to-plane cost of ``source_m`` (sensor frame) at a pose.

    Residual of point q matched to the plane (c, n): ``r = n . (R q + t - c)``. With the right
    perturbation ``T @ Exp(delta)`` and m = R^T n (the normal in the sensor frame), the
    Jacobian is ``J = [m^T, (q x m)^T]``. Geman-McClure IRLS weight:
    ``w = (k^2 / (k^2 + r^2))^2``.
    """
    points_map_m = transform(source_m, T_map_sensor)
    matched, centroid_m, normal = local_map.nearest_planes(
        points_map_m, config.max_correspondence_distance_m, config.plane_patch_radius_m,
        config.plane_candidates)
    residual_m = np.einsum("ij,ij->i", normal, points_map_m[matched] - centroid_m)
    m = normal @ T_map_sensor[:3, :3]
    J = np.hstack([m, np.cross(source_m[matched], m)])
    k2 = kernel_scale_m**2
    weight = (k2 / (k2 + residual_m**2)) ** 2
    Jw = J * weight[:, None]
    return NormalEquations(
        H=Jw.T @ J, g=Jw.T @ residual_m, weight_sum=float(weight.sum()),
        weighted_square_sum_m2=float(weight @ residual_m**2), correspondences=len(matched),
        inliers=int(np.count_nonzero(np.abs(residual_m) < config.kernel_scale_m)))


def degenerate_subspace(H: FloatArray, weight_sum: float, threshold: float
                        ) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Eigenvalues, eigenvectors (columns) of ``H`` and which are degenerate.

    Degenerate: ``eigenvalue < threshold * weight_sum`` (see ``LidarOdometryConfig``).
    """
    eigenvalues, eigenvectors = np.linalg.eigh(H)
    return eigenvalues, eigenvectors, eigenvalues < threshold * weight_sum


def well_constrained_step(eigenvalues: FloatArray, eigenvectors: FloatArray,
                          degenerate: BoolArray, g: FloatArray) -> FloatArray:
    """Gauss-Newton step ``-H^-1 g`` restricted to the well-constrained eigen-directions.

    Zhang et al.'s solution remapping: the step has no component along the degenerate
    directions, so the estimate there stays where the iteration started (the motion guess).
    """
    V = eigenvectors[:, ~degenerate]
    step: FloatArray = -V @ ((V.T @ g) / eigenvalues[~degenerate])
    return step


def register_point_to_plane(source_m: FloatArray, local_map: VoxelPlaneMap,
                            T_map_guess: FloatArray, config: LidarOdometryConfig,
                            dof: tuple[int, ...] = DOF_SPATIAL,
                            T_map_init: FloatArray | None = None) -> Registration | None:
    """Degeneracy-aware Gauss-Newton point-to-plane ICP.

    Starts from ``T_map_init`` (default: the guess) and estimates only the degrees of freedom
    in ``dof``. Each step is solved in the well-constrained subspace; at the end, the
    estimate along the final degenerate directions is put back at ``T_map_guess`` (early
    iterations, with a wider kernel, may have seen a direction that the converged problem
    does not constrain). Starting from the guess, the kernel starts wide (half the
    correspondence distance) and halves each iteration down to ``kernel_scale_m``, so that
    a guess some decimetres off still pulls in. None when fewer than
    ``config.min_correspondences`` points match the map.
    """
    cfg = config
    active = np.asarray(dof)
    T = (T_map_guess if T_map_init is None else T_map_init).copy()
    kernel_m = cfg.kernel_scale_m
    if T_map_init is None:  # graduated: from wide to the configured kernel
        kernel_m = max(kernel_m, 0.5 * cfg.max_correspondence_distance_m)
    iterations = 0
    while iterations < cfg.max_iterations:
        iterations += 1
        # Linearize at the current estimate
        system = point_to_plane_system(source_m, T, local_map, cfg, kernel_m)
        if system.correspondences < cfg.min_correspondences:
            return None
        # Step in the well-constrained subspace only
        H = system.H[np.ix_(active, active)]
        eigenvalues, eigenvectors, degenerate = degenerate_subspace(
            H, system.weight_sum, cfg.degeneracy_threshold)
        delta = np.zeros(6)
        delta[active] = well_constrained_step(eigenvalues, eigenvectors, degenerate,
                                              system.g[active])
        T = T @ se3_exp(delta)
        if (kernel_m <= cfg.kernel_scale_m
                and np.linalg.norm(delta[:3]) < cfg.convergence_translation_m
                and np.linalg.norm(delta[3:]) < cfg.convergence_rotation_rad):
            break
        kernel_m = max(cfg.kernel_scale_m, 0.5 * kernel_m)
    # Along the degenerate directions, the guess (Zhang et al.'s solution remapping)
    if degenerate.any():
        D = eigenvectors[:, degenerate]
        increment = twist(np.linalg.inv(T_map_guess) @ T)
        increment[active] -= D @ (D.T @ increment[active])
        T = T_map_guess @ se3_exp(increment)
    # Information and degenerate directions of the final linearization
    sigma2_m2 = max(cfg.point_sigma_m**2, system.weighted_square_sum_m2 / system.weight_sum)
    information = np.zeros((6, 6))
    information[np.ix_(active, active)] = H / sigma2_m2
    directions = np.zeros((int(degenerate.sum()), 6))
    directions[:, active] = eigenvectors[:, degenerate].T
    return Registration(T, information, directions, system.inliers / len(source_m),
                        system.correspondences, iterations)


def without_rotation_along(T_prev_curr: FloatArray, directions: FloatArray) -> FloatArray:
    """The motion with its rotation along unit tangent ``directions`` (k, 6) removed.

    The constant-velocity model carries translation along a degenerate direction on to the
    next scan (a crawler keeps driving down a pipe) but not rotation: any leak of the
    constrained directions into an unconstrained roll would otherwise build up, scan after
    scan, into a steady spin.
    """
    if len(directions) == 0:
        return T_prev_curr
    motion = twist(T_prev_curr)
    rotation_share = np.sum(directions[:, 3:] ** 2, axis=1)
    motion -= directions.T @ ((directions @ motion) * rotation_share)
    return se3_exp(motion)


class LidarOdometry:
    """Scan-to-local-map lidar odometry with degeneracy detection (3D or planar)."""

    def __init__(self, config: LidarOdometryConfig | None = None) -> None:
        self.config = config or LidarOdometryConfig()
        self.dof = DOF_PLANAR if self.config.planar else DOF_SPATIAL
        self.reset()

    def reset(self) -> None:
        """Forget the map and the motion: the next scan starts a new map at the origin."""
        self.local_map = self._new_map()
        self.T_map_sensor = np.eye(4)
        self._T_map_keyframe: FloatArray | None = None
        self._velocity: FloatArray | None = None
        """Smoothed twist rate (m/s, rad/s) of the sensor, in its own frame; None: unknown."""
        self._last_velocity: FloatArray | None = None
        """The last scan's twist rate, unsmoothed."""
        self._last_stamp_ns: int | None = None
        self._failed_scans = 0

    def _new_map(self) -> VoxelPlaneMap:
        """An empty local map as configured."""
        cfg = self.config
        return VoxelPlaneMap(
            cfg.map_voxel_size_m, cfg.coarse_voxel_size_m, cfg.max_points_per_voxel,
            cfg.plane_min_points, cfg.plane_max_thickness_ratio,
            cfg.coarse_plane_max_thickness_ratio, cfg.plane_min_width_ratio,
            cfg.plane_min_view_cosine, cfg.coarse_support_min_points,
            cfg.coarse_support_max_offset_m, cfg.planar)

    def register(self, scan: LidarScan3D | LaserScan2D,
                 T_prev_curr_guess: FloatArray | None = None) -> LidarOdometryResult:
        """Register one scan; ``T_prev_curr_guess`` is the sensor motion since the previous
        scan from wheel odometry, None: constant velocity."""
        cfg = self.config
        points_m, time_offsets_s = self._valid_points(scan)
        # Predict the motion since the previous scan
        dt_s = self._time_since_last_scan_s(scan.stamp_ns)
        T_prev_curr_guess, T_prev_curr_deskew = self._predict_motion(dt_s, T_prev_curr_guess)
        T_map_guess = self.T_map_sensor @ T_prev_curr_guess
        # Downsample (voxels of the raw sweep: it moves a few cm at most within one)
        source = voxel_subsample(points_m, cfg.voxel_size_m)
        T_map_start = T_map_guess
        registration = None
        for _ in range(cfg.max_deskew_passes):  # again while the motion bends the sweep anew
            # Undo the motion during the sweep
            source_m = self._deskew(points_m[source], time_offsets_s[source], T_prev_curr_deskew,
                                    dt_s)
            # Register against the local map
            again = self._register(source_m, T_map_guess,
                                   None if T_map_start is T_map_guess else T_map_start)
            if again is None:  # keep the previous pass's registration, if any
                break
            registration = again
            if not self._moved_off(T_prev_curr_deskew, registration):
                break
            T_map_start = registration.T_map_sensor  # along degenerate directions: the guess
            T_prev_curr_deskew = np.linalg.inv(self.T_map_sensor) @ T_map_start
        T_map_sensor = T_map_guess if registration is None else registration.T_map_sensor
        # Update the map at keyframes (start it over when lost)
        self._count_failure(registration, len(source))
        self._update_map(points_m, time_offsets_s, dt_s, T_map_sensor, registration,
                         len(source))
        return self._advance(scan.stamp_ns, dt_s, T_map_sensor, registration)

    def _count_failure(self, registration: Registration | None, num_source_points: int) -> None:
        """Count scans in a row that had points and a map but did not register."""
        if registration is not None:
            self._failed_scans = 0
        elif (num_source_points >= self.config.min_correspondences
              and self.local_map.num_planes >= self.config.min_correspondences):
            self._failed_scans += 1

    def _deskew(self, raw_points_m: FloatArray, time_offsets_s: FloatArray,
                T_prev_curr: FloatArray, dt_s: float) -> FloatArray:
        """Points moved to the sensor frame at the stamp (unchanged after a long gap)."""
        if 0.0 < dt_s <= self.config.max_scan_gap_s:
            return deskew(raw_points_m, time_offsets_s, T_prev_curr, dt_s)
        return raw_points_m

    def _moved_off(self, T_prev_curr_deskew: FloatArray, registration: Registration) -> bool:
        """Whether the registered motion is off the one used to deskew by a tolerance."""
        T_prev_curr = np.linalg.inv(self.T_map_sensor) @ registration.T_map_sensor
        error = twist(np.linalg.inv(T_prev_curr_deskew) @ T_prev_curr)
        return bool(np.linalg.norm(error[:3]) > self.config.deskew_tolerance_m
                    or np.linalg.norm(error[3:]) > self.config.deskew_tolerance_rad)

    def _register(self, source_m: FloatArray, T_map_guess: FloatArray,
                  T_map_init: FloatArray | None) -> Registration | None:
        """Point-to-plane registration; None when the scan or the map is too thin."""
        cfg = self.config
        if self.local_map.num_planes < cfg.min_correspondences:
            return None
        return register_point_to_plane(source_m, self.local_map, T_map_guess, cfg, self.dof,
                                       T_map_init)

    def _update_map(self, points_m: FloatArray, time_offsets_s: FloatArray, dt_s: float,
                    T_map_sensor: FloatArray, registration: Registration | None,
                    num_source_points: int) -> None:
        """Insert a keyframe: the first scans (while the map is too thin to register
        against), then a registered scan once the sensor moved or turned far enough from the
        last keyframe. Inserting every scan would let each scan's pose error tilt the planes
        it shares with the previous scans, so that the map bends along with the estimate.
        After ``max_failed_scans`` failures in a row the map starts over from here. The
        keyframe is deskewed with the motion just estimated."""
        cfg = self.config
        if num_source_points < cfg.min_correspondences:
            return
        if self._failed_scans >= cfg.max_failed_scans:
            self.local_map, self._failed_scans = self._new_map(), 0
        if self.local_map.num_planes >= cfg.min_correspondences:
            if registration is None or self._T_map_keyframe is None:
                return
            T_key_sensor = np.linalg.inv(self._T_map_keyframe) @ T_map_sensor
            if (np.linalg.norm(T_key_sensor[:3, 3]) < cfg.keyframe_distance_m
                    and np.linalg.norm(so3_log(T_key_sensor[:3, :3])) < cfg.keyframe_angle_rad):
                return
        self._T_map_keyframe = T_map_sensor
        kept = voxel_subsample(points_m, cfg.map_insert_voxel_size_m)
        T_prev_curr = np.linalg.inv(self.T_map_sensor) @ T_map_sensor
        points_map_m = transform(self._deskew(points_m[kept], time_offsets_s[kept], T_prev_curr,
                                              dt_s), T_map_sensor)
        self.local_map.insert(points_map_m, T_map_sensor[:3, 3], cfg.local_map_radius_m,
                              cfg.local_map_max_age_keyframes)

    def _valid_points(self, scan: LidarScan3D | LaserScan2D) -> tuple[FloatArray, FloatArray]:
        """Finite points within range (sensor frame) and their firing-time offsets."""
        cfg = self.config
        if isinstance(scan, LaserScan2D) != cfg.planar:
            raise ValueError(f"lidar odometry configured planar={cfg.planar} got a "
                             f"{type(scan).__name__}")
        if isinstance(scan, LaserScan2D):
            ranges_m = np.asarray(scan.ranges_m, np.float64).reshape(-1)
            beams = np.arange(ranges_m.size)
            # A reading at range_max is a beam that saw nothing (as many drivers report it),
            # not a wall that moves along with the robot
            with np.errstate(invalid="ignore"):
                returned = np.isfinite(ranges_m) & (ranges_m < scan.range_max_m)
            angles_rad = scan.angle_min_rad + scan.angle_increment_rad * beams[returned]
            points_m = np.column_stack([ranges_m[returned] * np.cos(angles_rad),
                                        ranges_m[returned] * np.sin(angles_rad),
                                        np.zeros(angles_rad.size)])
            # Beam i fires i * time_increment_s after the stamp (the first beam's, as in ROS)
            offsets_s = beams[returned] * scan.time_increment_s
            low_m, high_m = max(cfg.min_range_m, scan.range_min_m), min(cfg.max_range_m,
                                                                        scan.range_max_m)
        else:
            points_m = np.asarray(scan.points_m, np.float64)
            if points_m.size == 0:
                points_m = points_m.reshape(0, 3)
            if points_m.ndim != 2 or points_m.shape[1] != 3:
                raise ValueError(f"lidar scan at {scan.stamp_ns} ns: points_m must be (N, 3), "
                                 f"got {points_m.shape}")
            offsets_s = (np.zeros(len(points_m)) if scan.point_time_offsets_s is None
                         else np.asarray(scan.point_time_offsets_s, np.float64).reshape(-1))
            if len(offsets_s) != len(points_m):
                raise ValueError(f"lidar scan at {scan.stamp_ns} ns: {len(offsets_s)} time "
                                 f"offsets for {len(points_m)} points")
            low_m, high_m = cfg.min_range_m, cfg.max_range_m
        with np.errstate(invalid="ignore", over="ignore"):
            range_m = np.linalg.norm(points_m, axis=1)
            valid = np.isfinite(range_m) & np.isfinite(offsets_s) & (range_m >= low_m) & (
                range_m <= high_m)
        return points_m[valid], offsets_s[valid]

    def _time_since_last_scan_s(self, stamp_ns: int) -> float:
        """Seconds since the previous scan; 0 for the first one or a stamp not after it."""
        if self._last_stamp_ns is None:
            return 0.0
        return max(0.0, (stamp_ns - self._last_stamp_ns) * _NS)

    def _predict_motion(self, dt_s: float, T_prev_curr_guess: FloatArray | None
                        ) -> tuple[FloatArray, FloatArray]:
        """The motion guess and the motion to deskew the sweep with.

        Given a guess (reduced to x, y, yaw in planar mode), both are that. Else constant
        velocity: the smoothed one for the guess (which stands along degenerate directions),
        the last scan's for the deskew (a sweep bends with the motion of the moment); both
        identity for the first scan and after a long gap.
        """
        if T_prev_curr_guess is not None:
            guess = np.asarray(T_prev_curr_guess, np.float64)
            if self.config.planar:
                yaw_rad = math.atan2(guess[1, 0], guess[0, 0])
                guess = se3_exp(np.array([guess[0, 3], guess[1, 3], 0.0, 0.0, 0.0, yaw_rad]))
            return guess, guess
        if (self._velocity is None or self._last_velocity is None
                or not 0.0 < dt_s <= self.config.max_scan_gap_s):
            return np.eye(4), np.eye(4)
        return se3_exp(self._velocity * dt_s), se3_exp(self._last_velocity * dt_s)

    def _update_velocity(self, T_prev_curr: FloatArray, dt_s: float,
                         registration: Registration | None) -> None:
        """Blend this scan's motion into the constant-velocity model (exponential smoothing
        over ``velocity_smoothing_s``: along a degenerate direction the estimate is the
        prediction, so the velocity carried there is that of the last scans that saw it)."""
        if registration is not None:
            T_prev_curr = without_rotation_along(T_prev_curr, registration.degenerate_directions)
        measured = twist(T_prev_curr) / dt_s
        self._last_velocity = measured
        if self._velocity is None:
            self._velocity = measured
        else:
            gain = min(1.0, dt_s / self.config.velocity_smoothing_s)
            self._velocity = self._velocity + gain * (measured - self._velocity)

    def _advance(self, stamp_ns: int, dt_s: float, T_map_sensor: FloatArray,
                 registration: Registration | None) -> LidarOdometryResult:
        """Remember the pose and the motion; the result of this scan."""
        T_prev_curr = np.linalg.inv(self.T_map_sensor) @ T_map_sensor
        self.T_map_sensor = T_map_sensor
        self._last_stamp_ns = stamp_ns if self._last_stamp_ns is None else max(
            stamp_ns, self._last_stamp_ns)
        if 0.0 < dt_s <= self.config.max_scan_gap_s:
            self._update_velocity(T_prev_curr, dt_s, registration)
        elif dt_s > 0.0:
            self._velocity = self._last_velocity = None
        if registration is None:  # nothing measured: degenerate in every direction
            directions = np.eye(6)[list(self.dof)]
            return LidarOdometryResult(stamp_ns, T_map_sensor.copy(), T_prev_curr,
                                       np.zeros((6, 6)), directions, 0.0)
        return LidarOdometryResult(stamp_ns, T_map_sensor.copy(), T_prev_curr,
                                   registration.information, registration.degenerate_directions,
                                   registration.fitness)
