"""Ray-cast lidar: 3D multi-beam (16 x 1800 by default) or 2D, with noise, dropouts, max range.

Each column of a spinning lidar fires at its own time within the sweep, so a moving robot
sees the world from a pose that changes along the scan, as a real spinning lidar does. Like
a real driver's output, each point is given in the sensor frame at its own firing time (raw,
not motion-compensated) with its time offset from the scan stamp (the end of the sweep):
undoing the distortion is the consumer's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim_worlds.simulator.scene import RaycastScene
from sim_worlds.simulator.sdf import LidarSpec

FloatArray = NDArray[np.float64]


def planar_spec(samples: int = 360, range_max_m: float = 30.0,
                noise_stddev_m: float = 0.01) -> LidarSpec:
    """A 2D 360-degree scanner in the sensor's x-y plane."""
    step = 2 * math.pi / samples
    return LidarSpec(
        horizontal_samples=samples, horizontal_min_angle_rad=-math.pi,
        horizontal_max_angle_rad=math.pi - step, vertical_samples=1, vertical_min_angle_rad=0.0,
        vertical_max_angle_rad=0.0, range_min_m=0.1, range_max_m=range_max_m,
        range_resolution_m=0.0, noise_stddev_m=noise_stddev_m,
    )


@dataclass(frozen=True)
class LidarScan:
    """One sweep: ranges per (beam, column) and the valid points, both in the sensor frame."""

    stamp_ns: int
    ranges_m: NDArray[np.float32]
    """(vertical, horizontal); ``inf`` where nothing returned (no hit, beyond range, dropout)."""
    azimuths_rad: FloatArray
    elevations_rad: FloatArray
    points_m: NDArray[np.float32]
    """(M, 3) returns, each in the sensor frame at its own firing time."""
    point_time_offsets_s: NDArray[np.float32]
    """(M,) firing time of each point relative to ``stamp_ns`` (<= 0: the sweep ends there)."""


class Lidar:
    """Casts the rays of an SDF ``LidarSpec`` into a ``RaycastScene``."""

    def __init__(self, spec: LidarSpec, dropout_probability: float = 0.002,
                 seed: int = 0) -> None:
        self.spec = spec
        self.dropout_probability = dropout_probability
        self._rng = np.random.default_rng(seed)
        self.azimuths_rad = np.linspace(spec.horizontal_min_angle_rad,
                                        spec.horizontal_max_angle_rad, spec.horizontal_samples)
        self.elevations_rad = (np.linspace(spec.vertical_min_angle_rad,
                                           spec.vertical_max_angle_rad, spec.vertical_samples)
                               if spec.vertical_samples > 1 else np.zeros(1))
        el, az = np.meshgrid(self.elevations_rad, self.azimuths_rad, indexing="ij")
        self._dirs_grid = np.stack(
            [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1
        )
        """(vertical, horizontal, 3) unit ray directions in the sensor frame."""
        # Column firing time as a fraction of the sweep.
        self._column_fraction = (np.arange(spec.horizontal_samples)
                                 / max(spec.horizontal_samples - 1, 1))
        self._time_fraction = np.broadcast_to(self._column_fraction, el.shape).reshape(-1)

    def scan(self, scene: RaycastScene, stamp_ns: int, T_world_sensor_end: FloatArray,
             T_world_sensor_start: FloatArray | None = None, sweep_s: float = 0.1) -> LidarScan:
        """Sweep from ``T_world_sensor_start`` (default: no motion) to ``T_world_sensor_end``.

        ``sweep_s`` is the time the sweep takes (the scan period of a spinning lidar).
        """
        spec = self.spec
        start = T_world_sensor_end if T_world_sensor_start is None else T_world_sensor_start
        # Pose of each column along the sweep (one rotation per column, shared by its beams)
        origins_col, rotations = _interpolate_poses(start, T_world_sensor_end,
                                                    self._column_fraction)
        directions = np.einsum("hij,vhj->vhi", rotations, self._dirs_grid).reshape(-1, 3)
        origins = np.broadcast_to(origins_col[None], self._dirs_grid.shape).reshape(-1, 3)
        # Cast and apply the error model
        ranges = scene.cast_ranges(origins, directions, spec.range_max_m)
        ranges += self._rng.standard_normal(ranges.shape, dtype=np.float32) * np.float32(
            spec.noise_stddev_m)
        invalid = ((ranges < spec.range_min_m) | ~(ranges <= spec.range_max_m)
                   | (self._rng.random(ranges.shape, dtype=np.float32)
                      < self.dropout_probability))
        ranges[invalid] = np.inf
        # Raw points: each in the sensor frame of its own firing time
        valid = ~invalid
        points = self._dirs_grid.reshape(-1, 3)[valid] * ranges[valid, None]
        offsets = self._time_fraction[valid] * np.float32(sweep_s) - np.float32(sweep_s)
        shape = (spec.vertical_samples, spec.horizontal_samples)
        return LidarScan(stamp_ns, ranges.reshape(shape), self.azimuths_rad,
                         self.elevations_rad, points.astype(np.float32),
                         offsets.astype(np.float32))


def _interpolate_poses(T_start: FloatArray, T_end: FloatArray,
                       fraction: NDArray[np.float64]) -> tuple[FloatArray, FloatArray]:
    """Per-ray origins (N,3) and rotations (N,3,3) between two poses (linear, axis-angle)."""
    origins = T_start[:3, 3] + fraction[:, None] * (T_end[:3, 3] - T_start[:3, 3])
    R_delta = T_start[:3, :3].T @ T_end[:3, :3]
    angle = math.acos(max(-1.0, min(1.0, (np.trace(R_delta) - 1.0) / 2.0)))
    if angle < 1e-9:
        rotations = np.broadcast_to(T_end[:3, :3], (fraction.size, 3, 3))
        return origins, rotations
    axis = np.array([R_delta[2, 1] - R_delta[1, 2], R_delta[0, 2] - R_delta[2, 0],
                     R_delta[1, 0] - R_delta[0, 1]]) / (2.0 * math.sin(angle))
    rotations = T_start[:3, :3] @ _rodrigues(axis, fraction * angle)
    return origins, rotations


def _rodrigues(axis: FloatArray, angles: FloatArray) -> FloatArray:
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    s, c = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    rotations: FloatArray = np.eye(3) + s * K + (1 - c) * (K @ K)
    return rotations
