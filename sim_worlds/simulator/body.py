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
FloorHeight = Callable[[float, float, float], float | None]
"""(x_m, y_m, z_hint_m) -> height of the supporting floor under that point, or None."""


@dataclass(frozen=True)
class BodyParams:
    """Geometry of the crawler body."""

    track_width_m: float = 0.42
    track_length_m: float = 0.5
    turn_resistance: float = 1.15
    base_height_m: float = 0.1
    """Height of base_link above the floor contact."""


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

    def __init__(self, params: BodyParams, start: BodyState, floor: FloorHeight | None = None
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
        z_hint = s.z_m - p.base_height_m + 0.3
        heights = [
            self._floor(s.x_m + dx * c - dy * si, s.y_m + dx * si + dy * c, z_hint)
            for dx, dy in ((half_l, 0.0), (-half_l, 0.0), (0.0, half_w), (0.0, -half_w))
        ]
        front, rear, left, right = heights
        if front is not None and rear is not None:
            s.pitch_rad = math.atan2(rear - front, 2 * half_l)
        if left is not None and right is not None:
            s.roll_rad = math.atan2(left - right, 2 * half_w)
        known = [h for h in heights if h is not None]
        if known:
            s.z_m = sum(known) / len(known) + p.base_height_m
