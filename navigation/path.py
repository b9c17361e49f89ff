"""A 3D polyline path: arc length, projection of a point, pure-pursuit steering along it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Projection:
    """Where a point projects onto a path."""

    distance_m: float
    """Arc length from the path's start to the foot of the perpendicular."""
    offset_m: float
    """Horizontal distance from the path (positive: left of the direction of travel)."""
    segment: int


class Polyline:
    """Waypoints (N, 3) joined by straight segments."""

    def __init__(self, waypoints_m: ArrayLike) -> None:
        points = np.asarray(waypoints_m, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
            raise ValueError(f"a path needs (N >= 2, 3) waypoints, got shape {points.shape}")
        self.points_m = points
        self._seg = np.diff(points, axis=0)
        self._seg_len = np.linalg.norm(self._seg, axis=1)
        if np.any(self._seg_len <= 0.0):
            raise ValueError("a path has two identical consecutive waypoints")
        self._cum = np.concatenate([[0.0], np.cumsum(self._seg_len)])

    @property
    def length_m(self) -> float:
        """Total arc length."""
        return float(self._cum[-1])

    def point_at(self, distance_m: float) -> FloatArray:
        """The point at arc length ``distance_m`` (clamped to the ends)."""
        d = min(max(distance_m, 0.0), self.length_m)
        i = min(int(np.searchsorted(self._cum, d, side="right")) - 1, len(self._seg) - 1)
        t = (d - self._cum[i]) / self._seg_len[i]
        point: FloatArray = self.points_m[i] + t * self._seg[i]
        return point

    def heading_at(self, distance_m: float) -> float:
        """Horizontal heading [rad] of the path at arc length ``distance_m``."""
        d = min(max(distance_m, 0.0), self.length_m)
        i = min(int(np.searchsorted(self._cum, d, side="right")) - 1, len(self._seg) - 1)
        return math.atan2(self._seg[i, 1], self._seg[i, 0])

    def project(self, point_m: ArrayLike, near_m: float | None = None,
                window_m: float = 3.0) -> Projection:
        """Nearest point of the path to ``point_m`` (3D distance).

        ``near_m``: only segments within ``window_m`` of that arc length count, so a path that
        doubles back on itself (into a branch and out again) is followed, not confused.
        """
        p = np.asarray(point_m, dtype=np.float64)
        t = np.einsum("ij,ij->i", p - self.points_m[:-1], self._seg) / self._seg_len**2
        t = np.clip(t, 0.0, 1.0)
        feet = self.points_m[:-1] + t[:, None] * self._seg
        gaps = np.linalg.norm(feet - p, axis=1)
        if near_m is not None:
            outside = (self._cum[1:] < near_m - window_m) | (self._cum[:-1] > near_m + window_m)
            gaps[outside] = np.inf
            # Where the path doubles back, two segments are equally near: prefer going on.
            behind_m = np.maximum(0.0, near_m - (self._cum[:-1] + t * self._seg_len))
            gaps = gaps + 0.1 * behind_m
        i = int(np.argmin(gaps))
        along = self._seg[i] / self._seg_len[i]
        rel = p - feet[i]
        offset = along[0] * rel[1] - along[1] * rel[0]
        norm_xy = math.hypot(along[0], along[1])
        return Projection(float(self._cum[i] + t[i] * self._seg_len[i]),
                          float(offset / norm_xy) if norm_xy > 0 else 0.0, i)


def pure_pursuit(path: Polyline, x_m: float, y_m: float, yaw_rad: float, lookahead_m: float,
                 speed_mps: float, max_angular_radps: float = 1.0,
                 progress_m: float | None = None) -> tuple[float, float]:
    """Body twist (linear, angular) that steers onto ``path`` (Coulter 1992).

    The goal is the path point ``lookahead_m`` ahead of the robot's projection (near
    ``progress_m`` when given, see ``Polyline.project``); the curvature of the arc through it
    is 2 y / L^2 with y the goal's lateral offset in the body frame.
    """
    # The robot is on the path's floor: project at the path's height where it is, not at the
    # start's (a ramp down to another level would otherwise pull the projection back up).
    z_m = path.point_at(0.0 if progress_m is None else progress_m)[2]
    here = path.project((x_m, y_m, z_m), progress_m)
    goal = path.point_at(here.distance_m + lookahead_m)
    dx, dy = goal[0] - x_m, goal[1] - y_m
    lateral = -math.sin(yaw_rad) * dx + math.cos(yaw_rad) * dy
    distance = math.hypot(dx, dy)
    if distance < 1e-6:
        return 0.0, 0.0
    curvature = 2.0 * lateral / distance**2
    angular = max(-max_angular_radps, min(max_angular_radps, speed_mps * curvature))
    ahead = math.cos(yaw_rad) * dx + math.sin(yaw_rad) * dy
    if ahead < 0.0:  # goal behind: turn on the spot towards it
        return 0.0, math.copysign(max_angular_radps, lateral or 1.0)
    return speed_mps, angular


class PathFollower:
    """Pure pursuit that remembers how far along the path it is (paths may double back)."""

    def __init__(self, path: Polyline, lookahead_m: float, speed_mps: float) -> None:
        self.path = path
        self.lookahead_m = lookahead_m
        self.speed_mps = speed_mps
        self.progress_m = 0.0

    def command(self, x_m: float, y_m: float, yaw_rad: float) -> tuple[float, float]:
        """Twist towards the path ahead; updates ``progress_m``."""
        here = self.path.project((x_m, y_m, self.path.point_at(self.progress_m)[2]),
                                 self.progress_m)
        self.progress_m = max(self.progress_m, here.distance_m)
        return pure_pursuit(self.path, x_m, y_m, yaw_rad, self.lookahead_m, self.speed_mps,
                            progress_m=self.progress_m)
