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

    def project(self, point_m: ArrayLike) -> Projection:
        """Nearest point of the path to ``point_m`` (3D distance)."""
        p = np.asarray(point_m, dtype=np.float64)
        t = np.einsum("ij,ij->i", p - self.points_m[:-1], self._seg) / self._seg_len**2
        t = np.clip(t, 0.0, 1.0)
        feet = self.points_m[:-1] + t[:, None] * self._seg
        i = int(np.argmin(np.linalg.norm(feet - p, axis=1)))
        along = self._seg[i] / self._seg_len[i]
        rel = p - feet[i]
        offset = along[0] * rel[1] - along[1] * rel[0]
        norm_xy = math.hypot(along[0], along[1])
        return Projection(float(self._cum[i] + t[i] * self._seg_len[i]),
                          float(offset / norm_xy) if norm_xy > 0 else 0.0, i)


def pure_pursuit(path: Polyline, x_m: float, y_m: float, yaw_rad: float, lookahead_m: float,
                 speed_mps: float, max_angular_radps: float = 1.0) -> tuple[float, float]:
    """Body twist (linear, angular) that steers onto ``path`` (Coulter 1992).

    The goal is the path point ``lookahead_m`` ahead of the robot's projection; the curvature
    of the arc through it is 2 y / L^2 with y the goal's lateral offset in the body frame.
    """
    here = path.project((x_m, y_m, path.point_at(0.0)[2]))
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
