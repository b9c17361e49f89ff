"""Geometric sewer defects measured from lidar points: deformation, joint offset, sediment.

CJJ 181-2012 grades some defects by a size, not by their look: deformation BX by the ovality
(loss of the smallest inner diameter, % of the nominal D), sediment CJ by its depth (% of D),
offset joint CK by the radial step between two rings (as a multiple of the wall thickness).
These are measured here from accumulated lidar points, not guessed from pixels.

Pipe coordinates: ``s`` is the chainage along the pipe axis (m, the site axis's distances),
``lateral`` and ``vertical`` span the cross-section plane normal to the axis, measured from
the pipe centre line: lateral positive to the left looking downstream, vertical up. A clock
position (crown 12, looking downstream, clockwise) of a point at angle phi on a ring is
(lateral, vertical) = (-r sin phi, r cos phi), as the world generator and CJJ 181 use.

What the lidar cannot see: water in the invert returns from its surface, so the invert under
it is unseen and a deposit under water cannot be told from the water. The fits therefore
exclude everything up to the bed surface (water or deposit top), and the invert is recovered
from the ring fitted to the wall above it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.errors import PerceptionError

if TYPE_CHECKING:
    from navigation.site import Axis

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_SECTORS = 24
"""Angular sectors of a ring for coverage tests (15 degrees each)."""
_S_CELLS_PER_CHUNK = 64
"""Voxel layers along s per storage chunk."""
_TUKEY_C = 4.685
_MAD_TO_SIGMA = 1.4826
_SIGMA_START_M = 0.05
_SIGMA_SHRINK = 0.7


class PipeGeometryError(PerceptionError):
    """An axis or argument the pipe-geometry measurements cannot work with."""


class InsufficientPointsError(PipeGeometryError):
    """Too few lidar points in a chainage range to fit a ring there."""


# --- pipe coordinates ------------------------------------------------------------------------


@dataclass(frozen=True)
class PipePoints:
    """Points in pipe coordinates, sorted by ``s_m`` (one entry per voxel: its mean)."""

    s_m: FloatArray
    lateral_m: FloatArray
    vertical_m: FloatArray
    hits: IntArray
    """Lidar returns averaged into each point."""

    def __len__(self) -> int:
        return int(self.s_m.size)

    def between(self, s_start_m: float, s_end_m: float) -> PipePoints:
        """The points with s in [s_start_m, s_end_m)."""
        lo, hi = np.searchsorted(self.s_m, [s_start_m, s_end_m])
        return PipePoints(self.s_m[lo:hi], self.lateral_m[lo:hi], self.vertical_m[lo:hi],
                          self.hits[lo:hi])

    def select(self, mask: NDArray[np.bool_]) -> PipePoints:
        """The points where ``mask`` is True."""
        return PipePoints(self.s_m[mask], self.lateral_m[mask], self.vertical_m[mask],
                          self.hits[mask])


@dataclass
class _Chunk:
    """Voxels of one stretch of pipe: sorted keys, summed coordinates, hit counts."""

    keys: IntArray = field(default_factory=lambda: np.empty(0, np.int64))
    sums: FloatArray = field(default_factory=lambda: np.empty((0, 3)))
    hits: IntArray = field(default_factory=lambda: np.empty(0, np.int64))

    def merge(self, keys: IntArray, coordinates: FloatArray) -> None:
        """Add points (their voxel keys and (s, lateral, vertical)) into the voxels."""
        unique, inverse = np.unique(keys, return_inverse=True)
        sums = np.column_stack([np.bincount(inverse, coordinates[:, k], unique.size)
                                for k in range(3)])
        hits = np.bincount(inverse, minlength=unique.size).astype(np.int64)
        position = np.searchsorted(self.keys, unique)
        known = position < self.keys.size
        known[known] = self.keys[position[known]] == unique[known]
        self.sums[position[known]] += sums[known]
        self.hits[position[known]] += hits[known]
        new = ~known
        self.keys = np.insert(self.keys, position[new], unique[new])
        self.sums = np.insert(self.sums, position[new], sums[new], axis=0)
        self.hits = np.insert(self.hits, position[new], hits[new])


class PipeCloud:
    """Lidar points accumulated in pipe coordinates about a pipe axis polyline.

    Points arrive in the site (map) frame, each scan already placed by the localization pose.
    They are projected onto the axis (chainage, cross-section coordinates) and averaged into
    ``voxel_m`` cubes of pipe coordinates, so memory grows with the pipe surface seen, not
    with the number of scans (a DN1000 pipe: about 20 000 voxels per metre at 2 cm).
    """

    def __init__(self, axis_waypoints_m: ArrayLike, start_distance_m: float = 0.0,
                 centre_above_axis_m: float = 0.0, voxel_m: float = 0.02,
                 max_radius_m: float = 2.0, max_range_m: float | None = 4.0) -> None:
        """Axis through ``axis_waypoints_m`` (N, 3, site frame) with chainage
        ``start_distance_m`` at its first waypoint; the pipe centre line lies
        ``centre_above_axis_m`` above it (the pipe radius when the axis is the invert line).
        Points farther than ``max_radius_m`` from the centre line, or than ``max_range_m``
        from the sensor (when ``add_scan`` is given its position), are dropped.
        """
        waypoints = np.asarray(axis_waypoints_m, dtype=np.float64)
        if waypoints.ndim != 2 or waypoints.shape[1] != 3 or len(waypoints) < 2:
            raise PipeGeometryError(f"a pipe axis needs (N >= 2, 3) waypoints, got shape "
                                    f"{waypoints.shape}")
        if not (voxel_m > 0.0 and max_radius_m > voxel_m):
            raise PipeGeometryError(f"need 0 < voxel_m < max_radius_m, got voxel_m={voxel_m}, "
                                    f"max_radius_m={max_radius_m}")
        # Centre line and one frame per segment: tangent, lateral (horizontal, left), vertical
        self._points = waypoints + np.array([0.0, 0.0, centre_above_axis_m])
        segments = np.diff(self._points, axis=0)
        lengths = np.linalg.norm(segments, axis=1)
        horizontal = np.hypot(segments[:, 0], segments[:, 1])
        if np.any(lengths <= 0.0) or np.any(horizontal < 1e-6 * np.maximum(lengths, 1e-12)):
            raise PipeGeometryError("a pipe axis needs distinct waypoints and no vertical "
                                    "segment")
        self._tangent = segments / lengths[:, None]
        self._lateral = np.column_stack([-segments[:, 1], segments[:, 0],
                                         np.zeros(len(segments))]) / horizontal[:, None]
        self._vertical = np.cross(self._tangent, self._lateral)
        self._lengths = lengths
        self._chainage = start_distance_m + np.concatenate([[0.0], np.cumsum(lengths)])
        self.voxel_m = voxel_m
        self.max_radius_m = max_radius_m
        self.max_range_m = max_range_m
        self._cells_across = math.ceil(2.0 * max_radius_m / voxel_m) + 1
        self._chunks: dict[int, _Chunk] = {}
        self._cache: PipePoints | None = None

    @classmethod
    def from_site_axis(cls, axis: Axis, inner_diameter_m: float, axis_is_invert: bool = True,
                       voxel_m: float = 0.02, max_radius_m: float = 2.0,
                       max_range_m: float | None = 4.0) -> PipeCloud:
        """A cloud about a site file's pipe axis (the invert line, as ``site_from_truth``)."""
        centre_above = inner_diameter_m / 2.0 if axis_is_invert else 0.0
        return cls(axis.waypoints_m, axis.start_distance_m, centre_above, voxel_m,
                   max_radius_m, max_range_m)

    def __len__(self) -> int:
        """Number of occupied voxels."""
        return sum(chunk.keys.size for chunk in self._chunks.values())

    @property
    def hits(self) -> int:
        """Number of lidar returns accumulated."""
        return sum(int(chunk.hits.sum()) for chunk in self._chunks.values())

    def to_pipe(self, points_m: ArrayLike) -> FloatArray:
        """(N, 3) site points -> (N, 3) pipe coordinates (s, lateral, vertical)."""
        p = np.asarray(points_m, dtype=np.float64).reshape(-1, 3)
        if p.size == 0:
            return np.empty((0, 3))
        # Candidate segments: those whose box grown by the max radius meets the points' box
        a, b = self._points[:-1], self._points[1:]
        reach = self.max_radius_m
        near = np.all((np.minimum(a, b) - reach <= p.max(axis=0))
                      & (np.maximum(a, b) + reach >= p.min(axis=0)), axis=1)
        candidates = np.flatnonzero(near)
        if candidates.size == 0:
            candidates = np.arange(len(a))
        # Nearest segment of each point (3D distance to the clamped foot)
        rel = p[:, None, :] - a[candidates][None, :, :]
        along = np.einsum("nmk,mk->nm", rel, self._tangent[candidates])
        along_clamped = np.clip(along, 0.0, self._lengths[candidates])
        gap = rel - along_clamped[..., None] * self._tangent[candidates][None]
        best = np.argmin(np.einsum("nmk,nmk->nm", gap, gap), axis=1)
        rows = np.arange(len(p))
        segment = candidates[best]
        offset = rel[rows, best]
        s = self._chainage[segment] + along_clamped[rows, best]
        lateral = np.einsum("nk,nk->n", offset, self._lateral[segment])
        vertical = np.einsum("nk,nk->n", offset, self._vertical[segment])
        return np.column_stack([s, lateral, vertical])

    def add_scan(self, points_m: ArrayLike, sensor_m: ArrayLike | None = None) -> int:
        """Add one scan's site-frame points (N, 3); returns how many were kept.

        ``sensor_m``: the sensor's site position, to drop returns beyond ``max_range_m``.
        """
        p = np.asarray(points_m, dtype=np.float64).reshape(-1, 3)
        p = p[np.all(np.isfinite(p), axis=1)]
        # Range gate
        if sensor_m is not None and self.max_range_m is not None:
            sensor = np.asarray(sensor_m, dtype=np.float64).reshape(3)
            p = p[np.linalg.norm(p - sensor, axis=1) <= self.max_range_m]
        # Pipe coordinates, inside the radius of interest
        pipe = self.to_pipe(p)
        pipe = pipe[np.hypot(pipe[:, 1], pipe[:, 2]) < self.max_radius_m]
        if pipe.size == 0:
            return 0
        # Voxel keys, chunked along s
        s_cell = np.floor(pipe[:, 0] / self.voxel_m).astype(np.int64)
        across = np.floor((pipe[:, 1:] + self.max_radius_m) / self.voxel_m).astype(np.int64)
        chunk_ids = s_cell // _S_CELLS_PER_CHUNK
        n = self._cells_across
        keys = ((s_cell % _S_CELLS_PER_CHUNK) * n + across[:, 0]) * n + across[:, 1]
        order = np.argsort(chunk_ids, kind="stable")
        ids, starts = np.unique(chunk_ids[order], return_index=True)
        for chunk_id, rows in zip(ids.tolist(), np.split(order, starts[1:]), strict=True):
            self._chunks.setdefault(chunk_id, _Chunk()).merge(keys[rows], pipe[rows])
        self._cache = None
        return len(pipe)

    def points(self, s_start_m: float = -math.inf, s_end_m: float = math.inf) -> PipePoints:
        """Voxel means with s in [s_start_m, s_end_m), sorted by s."""
        if self._cache is None:
            chunks = [self._chunks[k] for k in sorted(self._chunks)]
            if chunks:
                sums = np.concatenate([c.sums for c in chunks])
                hits = np.concatenate([c.hits for c in chunks])
            else:
                sums, hits = np.empty((0, 3)), np.empty(0, np.int64)
            means = sums / np.maximum(hits, 1)[:, None]
            order = np.argsort(means[:, 0], kind="stable")
            self._cache = PipePoints(means[order, 0], means[order, 1], means[order, 2],
                                     hits[order])
        return self._cache.between(s_start_m, s_end_m)


# --- robust ring fits ------------------------------------------------------------------------


@dataclass(frozen=True)
class CircleFit:
    """A circle in the cross-section plane (pipe coordinates)."""

    centre_lateral_m: float
    centre_vertical_m: float
    radius_m: float
    residual_m: float
    """Robust standard deviation (1.4826 MAD) of the radial residuals."""
    inliers: int


@dataclass(frozen=True)
class EllipseFit:
    """An ellipse in the cross-section plane; ``angle_rad`` of the major axis from lateral."""

    centre_lateral_m: float
    centre_vertical_m: float
    semi_major_m: float
    semi_minor_m: float
    angle_rad: float
    residual_m: float
    inliers: int

    @property
    def vertical_half_extent_m(self) -> float:
        """Half the ellipse's vertical extent (centre to its lowest point)."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        return math.hypot(self.semi_major_m * s, self.semi_minor_m * c)


def _robust_gauss_newton(residuals: Callable[[FloatArray], FloatArray],
                         jacobian: Callable[[FloatArray, FloatArray], FloatArray],
                         params: FloatArray, min_sigma_m: float, max_sigma_m: float,
                         iterations: int = 40) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Iteratively reweighted Gauss-Newton (Tukey biweight, MAD scale, light damping).

    The scale is the residuals' MAD, kept within [min_sigma_m, cap]; the cap starts at
    ``_SIGMA_START_M`` and shrinks to ``max_sigma_m``, so that returns from behind the wall
    (a lateral's bore, soil in an open joint) lose their weight even when they are many.

    Returns the parameters, the final residuals and the final weights.
    """
    p = params.copy()
    for iteration in range(iterations):
        r = residuals(p)
        # Weights: Tukey biweight on a MAD scale (outliers beyond ~4.7 sigma get none), the
        # scale capped by a bound that shrinks (graduated: wide basin first, then sharp)
        cap = max(max_sigma_m, _SIGMA_START_M * _SIGMA_SHRINK**iteration)
        w = _tukey_weights(r, min_sigma_m, cap)
        # Damped normal equations
        J = jacobian(p, r)
        JTW = J.T * w
        H = JTW @ J
        H += np.diag(1e-6 * np.diag(H) + 1e-12)
        step = np.linalg.solve(H, -(JTW @ r))
        p += step
        if cap <= max_sigma_m and float(np.max(np.abs(step))) < 1e-7:
            break
    r = residuals(p)
    return p, r, _tukey_weights(r, min_sigma_m, max_sigma_m)


def _tukey_weights(r: FloatArray, min_sigma_m: float, max_sigma_m: float) -> FloatArray:
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(r - np.median(r))))
    u = r / (_TUKEY_C * min(max(sigma, min_sigma_m), max_sigma_m))
    w: FloatArray = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
    return w


def _robust_sigma(r: FloatArray, w: FloatArray) -> float:
    inl = r[w > 0.0]
    if inl.size == 0:
        return math.nan
    return _MAD_TO_SIGMA * float(np.median(np.abs(inl - np.median(inl))))


def fit_circle(lateral_m: ArrayLike, vertical_m: ArrayLike, radius_guess_m: float,
               centre_guess_m: tuple[float, float] = (0.0, 0.0),
               min_sigma_m: float = 0.003, max_sigma_m: float = 0.01) -> CircleFit:
    """Robust geometric circle fit, started from a guess (the nominal ring).

    Starting from the nominal ring rather than an algebraic fit makes the fit follow the wall
    even when a third of the points are something else (soil in a gap, a lateral's bore).
    """
    y = np.asarray(lateral_m, dtype=np.float64)
    z = np.asarray(vertical_m, dtype=np.float64)
    if y.size < 5:
        raise InsufficientPointsError(f"a circle fit needs at least 5 points, got {y.size}")

    def residuals(p: FloatArray) -> FloatArray:
        r: FloatArray = np.hypot(y - p[0], z - p[1]) - p[2]
        return r

    def jacobian(p: FloatArray, _: FloatArray) -> FloatArray:
        d = np.maximum(np.hypot(y - p[0], z - p[1]), 1e-12)
        return np.column_stack([-(y - p[0]) / d, -(z - p[1]) / d, -np.ones_like(d)])

    start = np.array([centre_guess_m[0], centre_guess_m[1], radius_guess_m])
    p, r, w = _robust_gauss_newton(residuals, jacobian, start, min_sigma_m, max_sigma_m)
    return CircleFit(float(p[0]), float(p[1]), abs(float(p[2])), _robust_sigma(r, w),
                     int(np.count_nonzero(w)))


def _ellipse_residuals(y: FloatArray, z: FloatArray, p: FloatArray) -> FloatArray:
    """Approximate normal distance: sqrt(ab) (sqrt((u/a)^2 + (v/b)^2) - 1)."""
    c, s = math.cos(p[4]), math.sin(p[4])
    dy, dz = y - p[0], z - p[1]
    u, v = c * dy + s * dz, -s * dy + c * dz
    a, b = abs(float(p[2])), abs(float(p[3]))
    r: FloatArray = math.sqrt(a * b) * (np.hypot(u / a, v / b) - 1.0)
    return r


def fit_ellipse(lateral_m: ArrayLike, vertical_m: ArrayLike, start: CircleFit,
                min_sigma_m: float = 0.003, max_sigma_m: float = 0.01) -> EllipseFit:
    """Robust ellipse fit (centre, semi-axes, orientation), started from a circle fit."""
    y = np.asarray(lateral_m, dtype=np.float64)
    z = np.asarray(vertical_m, dtype=np.float64)
    if y.size < 8:
        raise InsufficientPointsError(f"an ellipse fit needs at least 8 points, got {y.size}")

    def residuals(p: FloatArray) -> FloatArray:
        return _ellipse_residuals(y, z, p)

    def jacobian(p: FloatArray, r: FloatArray) -> FloatArray:
        # Forward differences: five cheap vectorised evaluations
        columns = []
        for k in range(5):
            h = 1e-7 if k < 4 else 1e-6
            q = p.copy()
            q[k] += h
            columns.append((residuals(q) - r) / h)
        return np.column_stack(columns)

    # Start slightly elongated so that the orientation is observable from the first step
    p0 = np.array([start.centre_lateral_m, start.centre_vertical_m, start.radius_m * 1.001,
                   start.radius_m / 1.001, 0.0])
    p, r, w = _robust_gauss_newton(residuals, jacobian, p0, min_sigma_m, max_sigma_m)
    a, b, angle = abs(float(p[2])), abs(float(p[3])), float(p[4])
    if b > a:
        a, b, angle = b, a, angle + math.pi / 2.0
    angle = math.remainder(angle, math.pi)
    return EllipseFit(float(p[0]), float(p[1]), a, b, angle, _robust_sigma(r, w),
                      int(np.count_nonzero(w)))


# --- the bed: water surface or deposit top ---------------------------------------------------

_ROW = 13
"""Values per bin of a ring profile (see ``_ring_row``)."""
INTRUSION_M = 0.05
"""Returns this far inside the fitted wall belong to something in the bore."""
_BEHIND_WALL_M = 0.05
"""Returns this far beyond the fitted wall come from behind it (an open joint's gap)."""
OPEN_SHARE = 0.15
"""Share of a sector's returns beyond the wall that makes it open (see ``RingProfile``)."""
BED_MARGIN_M = 0.03
"""Wall points must lie this far above the bed surface to be fitted."""
MIN_RING_POINTS = 60
_RAMP_DIP_M = 0.02
"""A deposit's ramp ends where its surface falls this far below its highest point so far."""


def _bed_level(points: PipePoints, radius_m: float) -> float | None:
    """Height of the bed surface (water or deposit top) in the invert, None if none seen.

    The lowest visible surface in a central band of the lower half: the invert wall in a dry
    pipe, the water surface or the top of a deposit otherwise.
    """
    band = (np.abs(points.lateral_m) < 0.4 * radius_m) & (points.vertical_m < 0.0)
    if np.count_nonzero(band) < 5:
        return None
    return float(np.median(points.vertical_m[band]))


def _wall(points: PipePoints, radius_m: float) -> tuple[PipePoints, float | None]:
    """The points above the bed surface, and the bed level."""
    bed = _bed_level(points, radius_m)
    if bed is None:
        return points, None
    return points.select(points.vertical_m > bed + BED_MARGIN_M), bed


def _check_range(s_start_m: float, s_end_m: float, nominal_diameter_m: float) -> None:
    if not s_end_m > s_start_m:
        raise PipeGeometryError(f"empty chainage range [{s_start_m}, {s_end_m})")
    if not nominal_diameter_m > 0.0:
        raise PipeGeometryError(f"nominal diameter must be > 0, got {nominal_diameter_m}")


def _ring_points(cloud: PipeCloud | PipePoints, s_start_m: float,
                 s_end_m: float) -> PipePoints:
    points = (cloud.points(s_start_m, s_end_m) if isinstance(cloud, PipeCloud)
              else cloud.between(s_start_m, s_end_m))
    if len(points) < MIN_RING_POINTS:
        raise InsufficientPointsError(f"{len(points)} points in s [{s_start_m:.2f}, "
                                      f"{s_end_m:.2f}) m, need {MIN_RING_POINTS}")
    return points


# --- measurements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OvalityMeasurement:
    """Deformation of a ring (BX): ovality = 1 - smallest inner diameter / nominal D."""

    min_d_m: float
    max_d_m: float
    ovality_pct_of_d: float
    points: int
    residual_m: float
    ellipse: EllipseFit


def measure_ovality(cloud: PipeCloud, s_start_m: float, s_end_m: float,
                    nominal_diameter_m: float) -> OvalityMeasurement:
    """Fit an ellipse to the wall between two chainages (bed and water surface excluded)."""
    _check_range(s_start_m, s_end_m, nominal_diameter_m)
    radius = nominal_diameter_m / 2.0
    # Wall points above the bed
    wall, _ = _wall(_ring_points(cloud, s_start_m, s_end_m), radius)
    # Circle, then ellipse
    circle = fit_circle(wall.lateral_m, wall.vertical_m, radius)
    ellipse = fit_ellipse(wall.lateral_m, wall.vertical_m, circle)
    min_d, max_d = 2.0 * ellipse.semi_minor_m, 2.0 * ellipse.semi_major_m
    return OvalityMeasurement(min_d, max_d, (1.0 - min_d / nominal_diameter_m) * 100.0,
                              len(wall), ellipse.residual_m, ellipse)


@dataclass(frozen=True)
class SedimentMeasurement:
    """Deposit in the invert (CJ): bed surface height above the invert of the fitted ring.

    Where water covers the invert the lidar sees its surface: a deposit lower than the water
    reads as the water depth, and ``depth_m`` is then the water depth.
    """

    depth_m: float
    depth_pct_of_d: float
    bed_vertical_m: float
    invert_vertical_m: float
    wall: CircleFit
    bed_points: int


def measure_sediment(cloud: PipeCloud, s_start_m: float, s_end_m: float,
                     nominal_diameter_m: float) -> SedimentMeasurement:
    """Depth of the bed surface above the invert of the circle fitted to the wall above it."""
    _check_range(s_start_m, s_end_m, nominal_diameter_m)
    radius = nominal_diameter_m / 2.0
    points = _ring_points(cloud, s_start_m, s_end_m)
    # Bed surface
    bed = _bed_level(points, radius)
    if bed is None:
        raise InsufficientPointsError(f"no bed points in s [{s_start_m:.2f}, {s_end_m:.2f}) m")
    # Ring fitted to the wall above it gives the invert
    wall = points.select(points.vertical_m > bed + BED_MARGIN_M)
    circle = fit_circle(wall.lateral_m, wall.vertical_m, radius)
    invert = circle.centre_vertical_m - circle.radius_m
    # Bed points: the surface across the middle of the ring, around the median level
    band = ((np.abs(points.lateral_m - circle.centre_lateral_m) < 0.4 * circle.radius_m)
            & (np.abs(points.vertical_m - bed) < BED_MARGIN_M))
    if not band.any():  # the fitted ring's middle misses the bed (a scrambled cloud)
        raise InsufficientPointsError(f"no bed points under the fitted ring's middle in s "
                                      f"[{s_start_m:.2f}, {s_end_m:.2f}) m")
    bed_level = float(np.median(points.vertical_m[band]))
    depth = bed_level - invert
    return SedimentMeasurement(depth, depth / nominal_diameter_m * 100.0, bed_level, invert,
                               circle, int(np.count_nonzero(band)))


def clock_of(lateral_m: float, vertical_m: float) -> float:
    """Clock position (hours in (0, 12], crown 12, clockwise looking downstream) of a vector."""
    hours = (math.atan2(-lateral_m, vertical_m) / (2.0 * math.pi) * 12.0) % 12.0
    return 12.0 if hours < 1e-9 else hours


@dataclass(frozen=True)
class JointOffsetMeasurement:
    """Offset joint (CK): the step between the rings on both sides of a joint.

    ``offset_m`` is the largest radial step around the circumference, |centre shift| +
    |radius change|; ``direction_clock_h`` is where the downstream ring is displaced to.
    """

    s_joint_m: float
    offset_m: float
    centre_shift_m: float
    radius_change_m: float
    direction_clock_h: float
    before: CircleFit
    after: CircleFit


def measure_joint_offset(cloud: PipeCloud, s_joint_m: float, nominal_diameter_m: float,
                         window_m: float = 0.3, gap_m: float = 0.03) -> JointOffsetMeasurement:
    """Fit circles to the rings ``window_m`` before and after a joint (``gap_m`` left out)."""
    _check_range(s_joint_m, s_joint_m + window_m, nominal_diameter_m)
    radius = nominal_diameter_m / 2.0
    # One ring on each side
    fits = []
    for s0 in (s_joint_m - gap_m - window_m, s_joint_m + gap_m):
        wall, _ = _wall(_ring_points(cloud, s0, s0 + window_m), radius)
        fits.append(fit_circle(wall.lateral_m, wall.vertical_m, radius))
    before, after = fits
    # Step between them
    dy = after.centre_lateral_m - before.centre_lateral_m
    dz = after.centre_vertical_m - before.centre_vertical_m
    shift = math.hypot(dy, dz)
    change = after.radius_m - before.radius_m
    return JointOffsetMeasurement(s_joint_m, shift + abs(change), shift, change,
                                  clock_of(dy, dz), before, after)


# --- scanning along the pipe -----------------------------------------------------------------


@dataclass(frozen=True)
class RingProfile:
    """Per-bin ring fits along the pipe (NaN where a bin has too few points).

    ``bed_height_m``: bed surface (water or deposit top) above the invert of the fitted
    ellipse. ``open_right_sectors`` / ``open_left_sectors``: 15-degree sectors on the right
    (clock 0:30 to 5:30) and left (6:30 to 11:30) where at least ``OPEN_SHARE`` of the returns
    lie more than ``gap_threshold_m`` beyond the fitted ring: an open joint shows on both
    sides, a lateral connection or an offset joint's step on one.
    ``intruded_sectors``: sectors where at least ``OPEN_SHARE`` of the returns lie more than
    ``INTRUSION_M`` inside the fitted ellipse (something occupies the bore there), with
    ``intrusion_m`` (90th percentile of how far inside) and ``intrusion_clock_h`` (centre);
    ``intrusion_area_m2``: the bore area the intruded sectors lose, integrated in polar
    coordinates about the fitted centre (per sector, the mean of (r^2 - rho^2) / 2 over its
    returns at distance rho, times the sector's angle), so an object's shape counts, not only
    its depth.
    """

    s_start_m: FloatArray
    step_m: float
    points: IntArray
    centre_lateral_m: FloatArray
    centre_vertical_m: FloatArray
    radius_m: FloatArray
    residual_m: FloatArray
    min_d_m: FloatArray
    max_d_m: FloatArray
    ovality_pct_of_d: FloatArray
    bed_height_m: FloatArray
    open_right_sectors: FloatArray
    open_left_sectors: FloatArray
    intruded_sectors: FloatArray
    intrusion_m: FloatArray
    intrusion_clock_h: FloatArray
    intrusion_area_m2: FloatArray

    @property
    def s_mid_m(self) -> FloatArray:
        """Chainage of each bin's middle."""
        mid: FloatArray = self.s_start_m + self.step_m / 2.0
        return mid

    def __len__(self) -> int:
        return int(self.s_start_m.size)


def ring_profile(cloud: PipeCloud, step_m: float, nominal_diameter_m: float,
                 s_start_m: float | None = None, s_end_m: float | None = None,
                 gap_threshold_m: float = 0.03) -> RingProfile:
    """Fit a ring every ``step_m`` along the cloud (bins start at multiples of ``step_m``)."""
    if not step_m > 0.0:
        raise PipeGeometryError(f"step must be > 0, got {step_m}")
    radius = nominal_diameter_m / 2.0
    everything = cloud.points()
    if len(everything) == 0:
        raise InsufficientPointsError("the cloud is empty")
    first = everything.s_m[0] if s_start_m is None else s_start_m
    last = everything.s_m[-1] if s_end_m is None else s_end_m
    starts = np.arange(math.floor(first / step_m), math.ceil(last / step_m)) * step_m
    rows = np.full((len(starts), _ROW), np.nan)
    counts = np.zeros(len(starts), np.int64)
    for i, s0 in enumerate(starts.tolist()):
        points = everything.between(s0, s0 + step_m)
        counts[i] = len(points)
        if len(points) < MIN_RING_POINTS:
            continue
        rows[i] = _ring_row(points, radius, gap_threshold_m)
    ovality = (1.0 - rows[:, 4] / nominal_diameter_m) * 100.0
    return RingProfile(starts, step_m, counts, rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3],
                       rows[:, 4], rows[:, 5], ovality, *rows[:, 6:].T)


def _ring_row(points: PipePoints, radius_m: float, gap_threshold_m: float) -> FloatArray:
    """cy, cz, r, residual, min_d, max_d, bed height, open right / left sectors, intruded
    sectors, intrusion depth and clock of one bin."""
    wall, bed = _wall(points, radius_m)
    if len(wall) < MIN_RING_POINTS:
        return np.full(_ROW, np.nan)
    circle = fit_circle(wall.lateral_m, wall.vertical_m, radius_m)
    ellipse = fit_ellipse(wall.lateral_m, wall.vertical_m, circle)
    invert = ellipse.centre_vertical_m - ellipse.vertical_half_extent_m
    bed_height = math.nan if bed is None else bed - invert
    # Coverage of returns beyond the wall, per sector
    dy = wall.lateral_m - circle.centre_lateral_m
    dz = wall.vertical_m - circle.centre_vertical_m
    sector = (np.floor((np.arctan2(-dy, dz) % (2.0 * np.pi)) / (2.0 * np.pi) * _SECTORS)
              .astype(np.int64) % _SECTORS)
    seen = np.bincount(sector, minlength=_SECTORS)
    beyond = np.bincount(sector[np.hypot(dy, dz) - circle.radius_m > gap_threshold_m],
                         minlength=_SECTORS)
    open_ = (beyond >= 3) & (beyond >= OPEN_SHARE * seen)
    half = _SECTORS // 2
    # Returns well inside the fitted ellipse, per sector
    inside = -_ellipse_residuals(wall.lateral_m, wall.vertical_m, np.array([
        ellipse.centre_lateral_m, ellipse.centre_vertical_m, ellipse.semi_major_m,
        ellipse.semi_minor_m, ellipse.angle_rad]))
    intruding = inside > INTRUSION_M
    intruded = np.bincount(sector[intruding], minlength=_SECTORS)
    intruded_ = (intruded >= 3) & (intruded >= OPEN_SHARE * seen)
    depth = clock = math.nan
    area = 0.0
    if intruded_.any():
        depth = float(np.percentile(inside[intruding & intruded_[sector]], 90.0))
        angles = (np.flatnonzero(intruded_) + 0.5) * 2.0 * math.pi / _SECTORS
        clock = clock_of(-float(np.sin(angles).sum()), float(np.cos(angles).sum()))
        # Area lost: polar integration of the intruded sectors about the fitted centre
        in_sector = intruded_[sector]
        lost = np.maximum(circle.radius_m**2 - (dy * dy + dz * dz), 0.0)[in_sector] / 2.0
        per_sector = (np.bincount(sector[in_sector], lost, _SECTORS)
                      / np.maximum(seen, 1))
        area = float(per_sector.sum()) * 2.0 * math.pi / _SECTORS
    return np.array([circle.centre_lateral_m, circle.centre_vertical_m, circle.radius_m,
                     circle.residual_m, 2.0 * ellipse.semi_minor_m, 2.0 * ellipse.semi_major_m,
                     bed_height, np.count_nonzero(open_[1:half]),
                     np.count_nonzero(open_[half + 1:]), np.count_nonzero(intruded_), depth,
                     clock, area])


# --- finding defects -------------------------------------------------------------------------


INTRUSION = "intrusion"
"""Not a CJJ 181 code: something occupies part of the bore. The lidar sees its size and
place but not what it is (an obstacle ZW, roots SG, a protruding lateral AJ, scale JG);
the camera names it."""


@dataclass(frozen=True)
class GeometricDefect:
    """A defect found from the pipe's shape; ``measured`` uses the truth file's keys."""

    code: str
    s_start_m: float
    s_end_m: float
    measured: dict[str, float]
    clock_h: float | None = None


@dataclass(frozen=True)
class DefectThresholds:
    """When a profile anomaly becomes a finding."""

    ovality_pct_of_d: float = 5.0
    """BX: CJJ 181 grade 1 ends at 5 %."""
    centre_step_m: float = 0.02
    """CK: shift of the ring centre across a joint."""
    bed_pct_of_d: float = 20.0
    """CJ: bed surface above the invert, % of D (the seed of a deposit)."""
    bed_rise_m: float = 0.02
    """CJ: a deposit extends while the bed stands this much above the pipe's usual level."""
    open_sectors_per_side: int = 2
    """TJ: open sectors needed on each side (see ``RingProfile``)."""
    max_joint_gap_m: float = 0.2
    """TJ: a wider 'gap' is no separated joint (CJJ 181's worst grade starts at 50 mm) but
    scans smeared by a pose error, or a missing section."""
    window_bins: int = 3
    """Bins on each side of a joint compared for CK."""
    step_intrusion_margin_m: float = 0.03
    """CK: intrusions next to a step up to twice the step plus this are the step's edge."""


def find_geometric_defects(cloud: PipeCloud, nominal_diameter_m: float,
                           wall_thickness_m: float, step_m: float = 0.1,
                           s_start_m: float | None = None, s_end_m: float | None = None,
                           thresholds: DefectThresholds | None = None) -> list[GeometricDefect]:
    """BX, CK, CJ, TJ (an open joint) and intrusions found along the cloud, by chainage.

    Classification rules: a ring deformed next to round ones also shifts its centre and its
    crown stands inside theirs; such steps and intrusions are part of the BX, never CK or
    ``INTRUSION``. Something in the bore pulls the ellipse fit; bins with an intrusion are not
    BX but ``INTRUSION`` (measured: intrusion_m, intrusion_pct_of_d, arc_h; the camera says
    whether it is ZW, SG, AJ or JG). A lateral connection (an opening on one side) is not a
    defect and not reported.
    """
    limits = thresholds or DefectThresholds()
    profile = ring_profile(cloud, step_m, nominal_diameter_m, s_start_m, s_end_m)
    found = [
        *_find_deformations(cloud, profile, nominal_diameter_m, limits),
        *_find_offset_joints(cloud, profile, nominal_diameter_m, wall_thickness_m, limits),
        *_find_deposits(cloud, profile, nominal_diameter_m, limits),
        *_find_open_joints(cloud, profile, nominal_diameter_m, limits),
        *_find_intrusions(profile, nominal_diameter_m, limits),
    ]
    return sorted(found, key=lambda d: (d.s_start_m, d.code))


def _runs(flags: NDArray[np.bool_], max_gap: int = 1, min_length: int = 2) -> list[tuple[int, int]]:
    """Index ranges [first, last] of True runs, bridging gaps of up to ``max_gap`` bins."""
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(flags).tolist():
        if runs and i - runs[-1][1] <= max_gap + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return [(a, b) for a, b in runs if b - a + 1 >= min_length]


def _oval(profile: RingProfile, limits: DefectThresholds) -> NDArray[np.bool_]:
    """Bins whose ring is deformed (and not just pulled by something in the bore)."""
    oval = np.nan_to_num(profile.ovality_pct_of_d, nan=0.0) > limits.ovality_pct_of_d
    intruded = np.nan_to_num(profile.intruded_sectors, nan=0.0) > 0
    flags: NDArray[np.bool_] = oval & ~intruded
    return flags


def _next_to(flags: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Bins that are flagged or next to a flagged one."""
    grown = flags.copy()
    grown[1:] |= flags[:-1]
    grown[:-1] |= flags[1:]
    return grown


def _find_deformations(cloud: PipeCloud, profile: RingProfile, nominal_d: float,
                       limits: DefectThresholds) -> list[GeometricDefect]:
    oval = _oval(profile, limits)
    found = []
    for first, last in _runs(oval):
        s0 = float(profile.s_start_m[first])
        s1 = float(profile.s_start_m[last]) + profile.step_m
        # Measure away from the ends, where bins straddle the neighbouring round rings
        inner = (s0 + profile.step_m, s1 - profile.step_m) if last - first >= 3 else (s0, s1)
        m = measure_ovality(cloud, *inner, nominal_d)
        if m.ovality_pct_of_d <= limits.ovality_pct_of_d:
            continue
        found.append(GeometricDefect("BX", s0, s1, {
            "ovality_pct_of_d": m.ovality_pct_of_d, "min_inner_diameter_m": m.min_d_m,
            "max_inner_diameter_m": m.max_d_m}, 12.0))
    return found


def _find_offset_joints(cloud: PipeCloud, profile: RingProfile, nominal_d: float,
                        wall_m: float, limits: DefectThresholds) -> list[GeometricDefect]:
    k = limits.window_bins
    centres = np.column_stack([profile.centre_lateral_m, profile.centre_vertical_m])
    oval = _oval(profile, limits)
    intrusion_m = np.nan_to_num(profile.intrusion_m, nan=0.0)
    # Step of the median centre across each bin boundary
    steps = np.zeros(len(profile))
    for i in range(k, len(profile) - k + 1):
        before, after = centres[i - k:i], centres[i:i + k]
        if np.isnan(before).any() or np.isnan(after).any() or oval[i - k:i + k].any():
            continue
        step = float(np.linalg.norm(np.median(after, axis=0) - np.median(before, axis=0)))
        # The shifted ring's own edge reads as an intrusion about as deep as the step; a
        # deeper one is something in the bore, which may have pulled the fitted centres
        if intrusion_m[i - k:i + k].max() > 2.0 * step + limits.step_intrusion_margin_m:
            continue
        steps[i] = step
    # Local maxima above the threshold, measured at their boundary
    found = []
    for i in np.flatnonzero(steps > limits.centre_step_m).tolist():
        if steps[i] < steps[max(i - k, 0):i + k + 1].max():
            continue
        s_joint = float(profile.s_start_m[i])
        try:
            m = measure_joint_offset(cloud, s_joint, nominal_d)
        except InsufficientPointsError:
            continue
        if m.centre_shift_m <= limits.centre_step_m:
            continue
        found.append(GeometricDefect("CK", s_joint, s_joint, {
            "offset_m": m.offset_m, "offset_ratio_of_wall": m.offset_m / wall_m},
            m.direction_clock_h))
    return found


def _toe(s_m: FloatArray, height_m: FloatArray, low_m: float, high_m: float) -> float | None:
    """Chainage where a line through the ramp's visible part reaches height 0.

    The ramp is the rising run of bins from the first one (``s_m[0]``, where the deposit leaves
    the water) up to the first bin at ``high_m`` or above, or the first that falls back
    (``_RAMP_DIP_M`` below the highest so far): later bins belong to the deposit's uneven top,
    which would flatten the fitted slope.
    """
    h = np.nan_to_num(height_m, nan=-np.inf)
    ended = np.flatnonzero((h >= high_m) | (h < np.maximum.accumulate(h) - _RAMP_DIP_M))
    run = slice(0, int(ended[0]) if ended.size else height_m.size)
    s_run, h_run = s_m[run], height_m[run]
    on_ramp = (h_run >= low_m) & (h_run <= high_m)
    if np.count_nonzero(on_ramp) < 2:
        return None
    slope, intercept = np.polyfit(s_run[on_ramp], h_run[on_ramp], 1)
    if abs(slope) < 0.02:
        return None
    return float(-intercept / slope)


def _find_deposits(cloud: PipeCloud, profile: RingProfile, nominal_d: float,
                   limits: DefectThresholds) -> list[GeometricDefect]:
    height = profile.bed_height_m
    known = ~np.isnan(height)
    if not known.any():
        return []
    usual = float(np.median(height[known]))
    raised = np.nan_to_num(height, nan=usual) > usual + limits.bed_rise_m
    deep = np.nan_to_num(height, nan=0.0) > limits.bed_pct_of_d / 100.0 * nominal_d
    found = []
    for first, last in _runs(raised):
        if not deep[first:last + 1].any():
            continue
        s = profile.s_mid_m[first:last + 1]
        h = height[first:last + 1]
        peak = float(np.nanmax(h))
        # Ends: the visible ramps extrapolated to the invert (under water they are unseen)
        s0 = float(profile.s_start_m[first])
        s1 = float(profile.s_start_m[last]) + profile.step_m
        mid = int(np.nanargmax(h))
        low, high = usual + limits.bed_rise_m, usual + 0.8 * (peak - usual)
        toe_up = _toe(s[:mid + 1], h[:mid + 1], low, high)
        toe_down = _toe(s[mid:][::-1], h[mid:][::-1], low, high)
        if toe_up is not None and s0 - 2.0 < toe_up < s0:
            s0 = toe_up
        if toe_down is not None and s1 < toe_down < s1 + 2.0:
            s1 = toe_down
        # Depth where the deposit is deepest (bins above 90 % of the peak)
        top = np.flatnonzero(np.nan_to_num(h, nan=0.0) >= usual + 0.9 * (peak - usual))
        top_s0 = float(profile.s_start_m[first + top[0]])
        top_s1 = float(profile.s_start_m[first + top[-1]]) + profile.step_m
        try:
            m = measure_sediment(cloud, top_s0, top_s1, nominal_d)
        except InsufficientPointsError:
            continue
        found.append(GeometricDefect("CJ", s0, s1, {"depth_m": m.depth_m,
                                                    "depth_pct_of_d": m.depth_pct_of_d}, 6.0))
    return found


def _find_open_joints(cloud: PipeCloud, profile: RingProfile, nominal_d: float,
                      limits: DefectThresholds) -> list[GeometricDefect]:
    need = limits.open_sectors_per_side
    both_sides = ((np.nan_to_num(profile.open_right_sectors, nan=0.0) >= need)
                  & (np.nan_to_num(profile.open_left_sectors, nan=0.0) >= need))
    # A deformed ring bulges beyond its round neighbours on both sides: not a gap
    near_oval = _next_to(_oval(profile, limits))
    found = []
    both_count = np.minimum(np.nan_to_num(profile.open_right_sectors, nan=0.0),
                            np.nan_to_num(profile.open_left_sectors, nan=0.0))
    for first, last in _runs(both_sides & ~near_oval, max_gap=0, min_length=1):
        # The joint is where the ring is most open: a section beyond it that sits a few
        # centimetres off the fitted circle keeps the run going for metres (2 sectors a side
        # against the joint's 3), and a gap measured over all of it is no joint's
        peak = np.flatnonzero(both_count[first:last + 1] == both_count[first:last + 1].max())
        first, last = first + int(peak[0]), first + int(peak[-1])
        s0 = float(profile.s_start_m[first]) - profile.step_m
        s1 = float(profile.s_start_m[last]) + 2.0 * profile.step_m
        gap = _gap_at_sides(cloud.points(s0, s1), nominal_d / 2.0)
        if gap is None:
            continue
        start, end = gap
        # Returns are averaged into voxel cells: their centres spread one cell wider than the gap
        width_m = max(end - start - cloud.voxel_m, 0.0)
        if width_m > limits.max_joint_gap_m:
            continue
        found.append(GeometricDefect("TJ", start, end, {"gap_mm": width_m * 1000.0},
                                     12.0))
    return found


def _gap_at_sides(points: PipePoints, radius_m: float) -> tuple[float, float] | None:
    """Chainages where an open joint starts and ends: returns from behind the wall at the sides.

    The lidar looks through an open joint only where its beams meet the wall nearly square
    on (at 3 and 9 o'clock); a ray that gets through hits what lies behind the joint within
    its width. The hit-weighted 5th and 95th percentiles of those returns bound the gap
    (range noise widens it by about a centimetre).
    """
    wall, _ = _wall(points, radius_m)
    if len(wall) < MIN_RING_POINTS:
        return None
    circle = fit_circle(wall.lateral_m, wall.vertical_m, radius_m)
    dy = wall.lateral_m - circle.centre_lateral_m
    dz = wall.vertical_m - circle.centre_vertical_m
    behind = (np.hypot(dy, dz) - circle.radius_m > _BEHIND_WALL_M) & (
        np.abs(dz) < 0.5 * circle.radius_m)
    if np.count_nonzero(behind) < 10:
        return None
    order = np.argsort(wall.s_m[behind])
    s = wall.s_m[behind][order]
    share = np.cumsum(wall.hits[behind][order]) / float(wall.hits[behind].sum())
    start, end = s[np.searchsorted(share, [0.05, 0.95])]
    return float(start), float(end)


def _find_intrusions(profile: RingProfile, nominal_d: float,
                     limits: DefectThresholds) -> list[GeometricDefect]:
    intruded = np.nan_to_num(profile.intruded_sectors, nan=0.0) > 0
    # A deformed ring's crown stands inside its round neighbours: part of the BX
    near_oval = _next_to(_oval(profile, limits))
    found = []
    for first, last in _runs(intruded, max_gap=1, min_length=2):
        if near_oval[first:last + 1].any():
            continue
        depth = profile.intrusion_m[first:last + 1]
        deepest = first + int(np.nanargmax(depth))
        # The worst cross-section (90th percentile of the bins: one bin may be a stray fit)
        area_m2 = float(np.nanpercentile(profile.intrusion_area_m2[first:last + 1], 90.0))
        found.append(GeometricDefect(
            INTRUSION, float(profile.s_start_m[first]),
            float(profile.s_start_m[last]) + profile.step_m,
            {"intrusion_m": float(np.nanmax(depth)),
             "intrusion_pct_of_d": float(np.nanmax(depth)) / nominal_d * 100.0,
             "area_loss_pct": area_m2 / (math.pi * nominal_d**2 / 4.0) * 100.0,
             "arc_h": float(np.nanmax(profile.intruded_sectors[first:last + 1]))
             * 12.0 / _SECTORS},
            float(profile.intrusion_clock_h[deepest])))
    return found
