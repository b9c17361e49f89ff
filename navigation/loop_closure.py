"""Loop closure: the crawler back near an earlier key pose registers its scan against it.

Every ``keyframe_spacing_m`` of travel the scan at a key pose (deskewed, in base_link,
downsampled to ``keyframe_voxel_m``) is kept: a bounded store (``max_keyframes``, the oldest
dropped first). At each later key-pose scan, a stored keyframe whose key is within
``search_radius_m`` of the current estimate but at least ``min_trajectory_gap_m`` back along
the trajectory is a candidate. The current scan is registered against a submap of the
candidate and its neighbours (in the candidate key's frame, placed by the current
estimates) with lidar odometry's point-to-plane ICP, from the estimated relative pose. It is
accepted when enough of the scan matches (``min_fitness``), the correction stays plausible
(``max_correction_m`` / ``max_correction_rad``) and at least ``min_constrained_directions``
are constrained; the smoother then gets a between factor behind a Cauchy kernel, weighted by
the registration's information (scaled down: ICP's Hessian treats every point as
independent) with the degenerate directions floored, like lidar odometry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from navigation.lidar_odometry import (
    LidarOdometryConfig,
    VoxelPlaneMap,
    register_point_to_plane,
    transform,
    twist,
    voxel_downsample,
)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LoopClosureConfig:
    """When to keep a keyframe, when to try a closure and when to believe it."""

    keyframe_spacing_m: float = 1.0
    keyframe_voxel_m: float = 0.15
    max_keyframes: int = 1000
    """Bounded memory: about 1 km of route at the default spacing."""
    search_radius_m: float = 3.0
    min_trajectory_gap_m: float = 20.0
    """Only keyframes this far back along the path: recent ones are lidar odometry's job."""
    attempt_spacing_m: float = 0.5
    """At most one attempt per this much travel."""
    submap_neighbours: int = 2
    """Keyframes on either side of the candidate that join its submap."""
    min_fitness: float = 0.6
    max_correction_m: float = 1.5
    max_correction_rad: float = 0.3
    min_constrained_directions: int = 5
    information_scale: float = 0.05
    information_floor: float = 1e-6
    kernel_width: float = 3.0
    """Cauchy kernel width, in sigmas of the (scaled) registration."""


@dataclass(frozen=True)
class Keyframe:
    """A stored scan: base_link points at a key pose, and the lidar's position in base_link."""

    key_index: int
    points_base_m: NDArray[np.float32]
    sensor_base_m: FloatArray
    distance_m: float
    """Travel along the trajectory when it was taken."""


@dataclass(frozen=True)
class LoopClosure:
    """An accepted registration between an old key and the current one."""

    old_key: int
    new_key: int
    T_old_new: FloatArray
    information: FloatArray
    """6x6 over a right perturbation of ``T_old_new``, gtsam order (rotation, translation)."""
    fitness: float


class LoopCloser:
    """Keeps keyframes and finds closures (see the module)."""

    def __init__(self, T_base_lidar: FloatArray, config: LoopClosureConfig | None = None,
                 lidar: LidarOdometryConfig | None = None) -> None:
        self.config = config or LoopClosureConfig()
        self.lidar = lidar or LidarOdometryConfig()
        self.sensor_base_m = np.asarray(T_base_lidar, dtype=np.float64)[:3, 3].copy()
        self.keyframes: deque[Keyframe] = deque(maxlen=self.config.max_keyframes)
        self.closures: list[LoopClosure] = []
        self.attempts = 0
        self._distance_m = 0.0
        self._last_position: FloatArray | None = None
        self._last_attempt_m = -np.inf

    def on_key_scan(self, key_index: int, points_base_m: FloatArray, T_site_key: FloatArray,
                    poses: Callable[[list[int]], dict[int, FloatArray]]) -> LoopClosure | None:
        """A deskewed scan (base_link frame) taken at key ``key_index`` whose estimate is
        ``T_site_key``; ``poses`` gives the current estimates of keys (asked only when an
        attempt is due). Returns an accepted closure, if any."""
        cfg = self.config
        position = np.asarray(T_site_key, dtype=np.float64)[:3, 3]
        if self._last_position is not None:
            self._distance_m += float(np.linalg.norm(position - self._last_position))
        self._last_position = position.copy()
        closure = None
        old = [f.key_index for f in self.keyframes
               if self._distance_m - f.distance_m >= cfg.min_trajectory_gap_m]
        if old and self._distance_m - self._last_attempt_m >= cfg.attempt_spacing_m:
            closure = self._try_closure(key_index, points_base_m, T_site_key, poses(old))
        if not self.keyframes or (self._distance_m - self.keyframes[-1].distance_m
                                  >= cfg.keyframe_spacing_m):
            points = voxel_downsample(np.asarray(points_base_m, dtype=np.float64),
                                      cfg.keyframe_voxel_m).astype(np.float32)
            self.keyframes.append(Keyframe(key_index, points, self.sensor_base_m,
                                           self._distance_m))
        return closure

    def _try_closure(self, key_index: int, points_base_m: FloatArray, T_site_key: FloatArray,
                     pose_of: dict[int, FloatArray]) -> LoopClosure | None:
        cfg = self.config
        position = T_site_key[:3, 3]
        frames = list(self.keyframes)
        best, best_distance = None, cfg.search_radius_m
        for i, frame in enumerate(frames):
            if self._distance_m - frame.distance_m < cfg.min_trajectory_gap_m:
                break  # the rest are more recent
            T = pose_of.get(frame.key_index)
            if T is None:
                continue
            distance = float(np.linalg.norm(T[:3, 3] - position))
            if distance < best_distance:
                best, best_distance = i, distance
        if best is None:
            return None
        self._last_attempt_m = self._distance_m
        self.attempts += 1
        old = frames[best]
        T_site_old = pose_of[old.key_index]
        T_old_site = np.linalg.inv(T_site_old)
        # Submap of the candidate and its neighbours, in the candidate key's frame
        submap = self._new_map()
        for frame in frames[max(0, best - cfg.submap_neighbours):best + cfg.submap_neighbours + 1]:
            T_site_frame = pose_of.get(frame.key_index)
            if T_site_frame is None:
                continue
            T_old_frame = T_old_site @ T_site_frame
            submap.insert(transform(frame.points_base_m.astype(np.float64), T_old_frame),
                          T_old_frame[:3, :3] @ frame.sensor_base_m + T_old_frame[:3, 3],
                          self.lidar.local_map_radius_m)
        if submap.num_planes < self.lidar.min_correspondences:
            return None
        source = voxel_downsample(np.asarray(points_base_m, dtype=np.float64),
                                  self.lidar.voxel_size_m)
        T_guess = T_old_site @ T_site_key
        registration = register_point_to_plane(source, submap, T_guess, self.lidar)
        if registration is None or registration.fitness < cfg.min_fitness:
            return None
        correction = twist(np.linalg.inv(T_guess) @ registration.T_map_sensor)
        if (np.linalg.norm(correction[:3]) > cfg.max_correction_m
                or np.linalg.norm(correction[3:]) > cfg.max_correction_rad
                or 6 - len(registration.degenerate_directions) < cfg.min_constrained_directions):
            return None
        information = _information_gtsam(registration.information,
                                         registration.degenerate_directions,
                                         cfg.information_scale, cfg.information_floor)
        closure = LoopClosure(old.key_index, key_index, registration.T_map_sensor, information,
                              registration.fitness)
        self.closures.append(closure)
        return closure

    def _new_map(self) -> VoxelPlaneMap:
        c = self.lidar
        return VoxelPlaneMap(c.map_voxel_size_m, c.coarse_voxel_size_m, c.max_points_per_voxel,
                             c.plane_min_points, c.plane_max_thickness_ratio,
                             c.coarse_plane_max_thickness_ratio, c.plane_min_width_ratio,
                             c.plane_min_view_cosine, c.coarse_support_min_points,
                             c.coarse_support_max_offset_m, c.planar)


_SWAP = np.block([[np.zeros((3, 3)), np.eye(3)], [np.eye(3), np.zeros((3, 3))]])


def _information_gtsam(information_ros: FloatArray, degenerate: FloatArray, scale: float,
                       floor: float) -> FloatArray:
    """ROS-order information -> gtsam order, scaled, degenerate directions floored."""
    info = _SWAP @ (scale * np.asarray(information_ros, dtype=np.float64)) @ _SWAP.T
    info = 0.5 * (info + info.T)
    directions = np.asarray(degenerate, dtype=np.float64).reshape(-1, 6)
    if len(directions):
        basis, _ = np.linalg.qr((directions @ _SWAP.T).T)
        keep = np.eye(6) - basis @ basis.T
        info = keep @ info @ keep
    eigenvalues, eigenvectors = np.linalg.eigh(info)
    floored: FloatArray = eigenvectors @ np.diag(np.maximum(eigenvalues, floor)) @ eigenvectors.T
    return 0.5 * (floored + floored.T)
