"""Skid-steer body motion with track slip, following the floor under the tracks.

The tracks' surface speeds come from the MCU's motors; the body moves with them less the
slip of the surface it is on (higher on sediment and wet floors). Skid steering also needs
more track speed difference to turn than an ideal differential drive: the effective track
width is larger than the geometric one by ``turn_resistance``. Height, pitch and roll come
from the floor sampled under the front, rear and both sides of the body.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim_worlds.simulator.sdf import pose_matrix, rotation_from_rpy

FloatArray = NDArray[np.float64]
FloorHeights = Callable[[FloatArray, float], FloatArray]
"""((N, 2) x, y points, z_hint_m) -> (N,) heights of the supporting floor, NaN where none."""


@dataclass(frozen=True)
class BodyParams:
    """Geometry of the crawler body."""

    track_width_m: float = 0.42
    track_length_m: float = 0.5
    turn_resistance: float = 1.15
    base_height_m: float = 0.0
    """Height of base_link above the floor contact (0: base_link on the floor, as in SDF)."""


@dataclass
class BodyState:
    """Pose of base_link in the world and distance driven."""

    x_m: float = 0.0
    y_m: float = 0.0
    z_m: float = 0.0
    roll_rad: float = 0.0
    pitch_rad: float = 0.0
    yaw_rad: float = 0.0
    distance_m: float = 0.0
    speed_mps: float = 0.0

    def T_world_base(self) -> FloatArray:
        """4x4 pose of base_link in the world (ZYX Euler: yaw, pitch, roll)."""
        rotation = rotation_from_rpy(self.roll_rad, self.pitch_rad, self.yaw_rad)
        return pose_matrix((self.x_m, self.y_m, self.z_m), rotation)


class CrawlerBody:
    """Integrates track speeds into a body pose on the floor."""

    def __init__(self, params: BodyParams, start: BodyState, floor: FloorHeights | None = None
                 ) -> None:
        self.params = params
        self.state = start
        self._floor = floor

    def step(self, dt_s: float, left_mps: float, right_mps: float, slip: float) -> None:
        """Advance ``dt_s`` with the given track surface speeds and slip fraction (0..1)."""
        p, s = self.params, self.state
        grip = 1.0 - min(max(slip, 0.0), 1.0)
        # Body twist from the tracks, less slip
        v_mps = 0.5 * (left_mps + right_mps) * grip
        w_radps = (right_mps - left_mps) / (p.track_width_m * p.turn_resistance) * grip
        # Integrate along the floor at the mid heading
        ds_m = v_mps * dt_s
        mid_yaw = s.yaw_rad + 0.5 * w_radps * dt_s
        horizontal = ds_m * math.cos(s.pitch_rad)
        s.x_m += horizontal * math.cos(mid_yaw)
        s.y_m += horizontal * math.sin(mid_yaw)
        s.yaw_rad = math.remainder(s.yaw_rad + w_radps * dt_s, math.tau)
        s.distance_m += abs(ds_m)
        s.speed_mps = v_mps
        # Settle on the floor
        self.settle()

    def settle(self) -> None:
        """Set height, pitch and roll from the floor under the tracks (if a floor is known)."""
        if self._floor is None:
            return
        p, s = self.params, self.state
        c, si = math.cos(s.yaw_rad), math.sin(s.yaw_rad)
        half_l, half_w = 0.5 * p.track_length_m, 0.5 * p.track_width_m
        offsets = np.array([[half_l, 0.0], [-half_l, 0.0], [0.0, half_w], [0.0, -half_w]])
        points = np.column_stack([s.x_m + offsets[:, 0] * c - offsets[:, 1] * si,
                                  s.y_m + offsets[:, 0] * si + offsets[:, 1] * c])
        front, rear, left, right = self._floor(points, s.z_m - p.base_height_m + 0.3)
        if math.isfinite(front) and math.isfinite(rear):
            s.pitch_rad = math.atan2(rear - front, 2 * half_l)
        if math.isfinite(left) and math.isfinite(right):
            s.roll_rad = math.atan2(left - right, 2 * half_w)
        known = [h for h in (front, rear, left, right) if math.isfinite(h)]
        if known:
            s.z_m = sum(known) / len(known) + p.base_height_m
