"""What a gallery's lidar scan says about the crawler's pose: the direction of its walls.

A utility-tunnel gallery is a long box: its side walls, cable trays and pipes run parallel to
the gallery's axis, which the site file gives. In a scan projected onto the horizontal plane
they are lines; the direction of those lines in base_link, set against the axis's direction
in the site frame, is the crawler's absolute heading (modulo 180 degrees, resolved by the
current estimate). Lidar odometry only ever measures heading *changes*: a turn it gets wrong
(a pivot in place close to an end wall: few matches, a fast turn inside each sweep) leaves a
permanent heading offset that no fix corrects quickly, and at 0.8 m/s an offset of 15 degrees
walks the estimate sideways by 0.2 m per second of driving. The wall direction bounds it.

``wall_heading`` finds the direction: the horizontal points (floor and ceiling cut off by
height) are projected onto the normal of each candidate direction near the predicted one;
at the right direction the walls collapse into narrow peaks of the histogram of those
projections (the score is the sum of squared bin counts). The best direction of a coarse and
a fine search is then refined by a pooled line fit (principal direction of the points of the
peaks, each peak centred on its own mean), which also gives its uncertainty. A scan without
long parallel lines (a junction's open space, a room, a round pipe) gives no peaks and no
heading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class WallHeadingConfig:
    """Which points count as walls, how the direction is searched and when it is believed."""

    min_height_m: float = 0.2
    """Points at most this high above base_link are floor (and the crawler's own tracks)."""
    max_height_m: float = 3.0
    """... and at least this high, ceiling (a gallery is about 3.5 m high)."""
    min_range_m: float = 0.5
    max_range_m: float = 12.0
    """Far points: sparse, and a small angle error spreads them over several bins."""
    max_points: int = 4000
    """Evenly thinned to this many (the search is O(points x angles))."""
    coarse_points: int = 1000
    """... and to this many for the coarse search."""
    search_rad: float = math.radians(40.0)
    """Half-width of the window around the predicted direction (< 45 degrees: the cross
    walls, 90 degrees off, stay out of it)."""
    coarse_step_rad: float = math.radians(1.0)
    coarse_bin_m: float = 0.1
    fine_step_rad: float = math.radians(0.1)
    bin_m: float = 0.05
    peak_min_fraction: float = 0.02
    """A histogram bin with at least this fraction of the points is part of a wall line."""
    min_inlier_fraction: float = 0.3
    """At least this fraction of the points on the wall lines, or no heading."""
    min_extent_m: float = 4.0
    """The wall lines' points span at least this much along the direction."""
    sigma_floor_rad: float = math.radians(0.5)
    """Walls are not perfectly straight or parallel (construction tolerance, deskewing):
    the fit's own sigma (hundredths of a degree) is floored to this."""


@dataclass(frozen=True)
class WallHeading:
    """The crawler's heading in the site frame, from the walls of the gallery it is in."""

    yaw_rad: float
    """Yaw of base_link in the site frame (ZYX convention), near the predicted one."""
    sigma_rad: float
    wall_angle_rad: float
    """Direction of the walls in the levelled base_link frame."""
    inlier_fraction: float


def yaw_of(R: FloatArray) -> float:
    """ZYX yaw of a rotation matrix."""
    return math.atan2(float(R[1, 0]), float(R[0, 0]))


def wrap_half_turn(angle_rad: float) -> float:
    """An angle modulo 180 degrees, in [-90, 90) degrees."""
    return (angle_rad + 0.5 * math.pi) % math.pi - 0.5 * math.pi


def _score(xy: FloatArray, angles_rad: FloatArray, bin_m: float) -> FloatArray:
    """Sum of squared counts of the histogram of the projections on each angle's normal."""
    normals = np.stack([-np.sin(angles_rad), np.cos(angles_rad)])  # (2, A)
    bins = np.floor(xy @ normals / bin_m).astype(np.int64)  # (N, A)
    bins -= bins.min(axis=0)
    width = int(bins.max()) + 1
    flat = bins + width * np.arange(len(angles_rad))[None, :]
    counts = np.bincount(flat.ravel(), minlength=width * len(angles_rad)).astype(np.float64)
    scores: FloatArray = np.sum(counts.reshape(len(angles_rad), width) ** 2, axis=1)
    return scores


def wall_direction(points_base_m: FloatArray, R_level: FloatArray, predicted_rad: float,
                   config: WallHeadingConfig | None = None
                   ) -> tuple[float, float, float] | None:
    """Direction of the dominant parallel wall lines in the levelled base frame.

    ``points_base_m`` (N, 3) in base_link; ``R_level`` rotates base_link into the levelled
    frame (roll and pitch removed, yaw kept); ``predicted_rad`` is the expected direction
    (modulo 180 degrees). Returns (angle, sigma, inlier fraction), the angle within the
    search window of the prediction, or None when the scan shows no such walls.
    """
    c = config or WallHeadingConfig()
    points = np.asarray(points_base_m, dtype=np.float64).reshape(-1, 3)
    points = points[::max(1, len(points) // (3 * c.max_points))]  # about half are kept below
    points = points[np.isfinite(points).all(axis=1)] @ np.asarray(R_level, dtype=np.float64).T
    horizontal = np.hypot(points[:, 0], points[:, 1])
    keep = ((points[:, 2] > c.min_height_m) & (points[:, 2] < c.max_height_m)
            & (horizontal > c.min_range_m) & (horizontal < c.max_range_m))
    xy = points[keep, :2]
    if len(xy) > c.max_points:
        xy = xy[np.linspace(0, len(xy) - 1, c.max_points).astype(np.int64)]
    if len(xy) < 100:
        return None
    # Coarse, then fine search of the sharpest histogram
    coarse = predicted_rad + np.arange(-c.search_rad, c.search_rad + 1e-9, c.coarse_step_rad)
    few = xy[np.linspace(0, len(xy) - 1, min(len(xy), c.coarse_points)).astype(np.int64)]
    best = float(coarse[int(np.argmax(_score(few, coarse, c.coarse_bin_m)))])
    fine = best + np.arange(-c.coarse_step_rad, c.coarse_step_rad + 1e-9, c.fine_step_rad)
    best = float(fine[int(np.argmax(_score(xy, fine, c.bin_m)))])
    # Wall lines: runs of histogram bins holding enough points
    offsets = xy @ np.array([-math.sin(best), math.cos(best)])
    bins = np.floor(offsets / c.bin_m).astype(np.int64)
    bins -= bins.min()
    counts = np.bincount(bins)
    peak = counts >= max(c.peak_min_fraction * len(xy), 10)
    if not peak.any():
        return None
    runs = np.cumsum(np.diff(np.concatenate([[0], peak.astype(np.int64)])) == 1)
    label = np.where(peak, runs, 0)[bins]  # 0: not on a wall line
    inliers = label > 0
    fraction = float(inliers.mean())
    if fraction < c.min_inlier_fraction:
        return None
    # Pooled line fit: every line centred on its own mean, one shared direction
    groups = label[inliers]
    centred = xy[inliers].copy()
    for g in np.unique(groups):
        members = groups == g
        centred[members] -= centred[members].mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    direction = eigenvectors[:, 1]
    along = centred @ direction
    if float(np.percentile(along, 95) - np.percentile(along, 5)) < c.min_extent_m:
        return None
    angle = best + wrap_half_turn(math.atan2(direction[1], direction[0]) - best)
    if abs(angle - best) > c.coarse_step_rad:
        return None  # the fit left the peak: not one family of parallel lines
    sigma_fit = math.sqrt(max(float(eigenvalues[0]), 0.0) / len(centred)
                          / max(float(eigenvalues[1]), 1e-12))
    return angle, math.hypot(sigma_fit, c.sigma_floor_rad), fraction


def wall_heading(points_base_m: FloatArray, R_site_base: FloatArray, axis_yaw_rad: float,
                 config: WallHeadingConfig | None = None) -> WallHeading | None:
    """Heading of base_link in the site frame, from walls parallel to an axis of yaw
    ``axis_yaw_rad``; ``R_site_base`` is the current estimate (levels the scan and resolves
    the 180-degree ambiguity)."""
    R = np.asarray(R_site_base, dtype=np.float64)
    yaw = yaw_of(R)
    c, s = math.cos(yaw), math.sin(yaw)
    R_level = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ R  # Rz(-yaw) R
    predicted = wrap_half_turn(axis_yaw_rad - yaw)
    found = wall_direction(points_base_m, R_level, predicted, config)
    if found is None:
        return None
    angle, sigma, fraction = found
    heading = axis_yaw_rad - angle
    heading = yaw + wrap_half_turn(heading - yaw)  # the walls' direction is modulo 180 degrees
    heading = math.atan2(math.sin(heading), math.cos(heading))
    return WallHeading(heading, sigma, angle, fraction)
