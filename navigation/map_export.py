"""Mission outputs besides the grid: the voxel-downsampled point cloud and the trajectory.

``VoxelCloud`` accumulates scans at their poses into one point per voxel (the centroid of the
points that fell in it) and writes ``cloud.ply`` through Open3D. ``write_tum`` writes a
trajectory in the TUM RGB-D format (``timestamp x y z qx qy qz qw``, one pose per line,
timestamps in seconds with all nine nanosecond digits); ``read_tum`` reads one back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from navigation.bag_io import pose_matrix, quaternion_from_rotation
from navigation.records import FloatArray

_NS = 1_000_000_000


class ExportError(Exception):
    """An output file cannot be written or read; the one-line message starts with its path."""


_KEY_BITS = 21
_KEY_OFFSET = 1 << (_KEY_BITS - 1)
"""Voxel indices are packed into one int64 key, 21 bits per axis: +-2**20 voxels around 0."""


class VoxelCloud:
    """Points accumulated in the map frame, one (centroid) point per ``voxel_m`` cube.

    New points are merged into the voxels lazily (when the pending batch is as large as the
    cloud), so adding a scan costs time proportional to the scan, not to the whole map.
    The map may extend 2**20 voxels from the origin on each axis (52 km at 5 cm).
    """

    def __init__(self, voxel_m: float = 0.05) -> None:
        if voxel_m <= 0.0:
            raise ValueError(f"voxel size must be positive, got {voxel_m} m")
        self.voxel_m = voxel_m
        self._keys: NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._sums: FloatArray = np.zeros((0, 3))
        self._counts: FloatArray = np.zeros(0)
        self._pending: list[FloatArray] = []
        self._pending_size = 0

    def add(self, points_sensor_m: NDArray[np.floating], T_map_sensor: FloatArray) -> None:
        """Add a scan's points (sensor frame, (N, 3)) taken at ``T_map_sensor``."""
        points = np.asarray(points_sensor_m, dtype=np.float64).reshape(-1, 3)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points) == 0:
            return
        points_map = points @ T_map_sensor[:3, :3].T + T_map_sensor[:3, 3]
        if np.abs(points_map).max() / self.voxel_m >= _KEY_OFFSET:
            raise ValueError(f"points beyond {_KEY_OFFSET * self.voxel_m:.0f} m from the origin")
        self._pending.append(points_map)
        self._pending_size += len(points)
        if self._pending_size >= max(len(self._counts), 100_000):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        points = np.concatenate(self._pending)
        self._pending, self._pending_size = [], 0
        cells = np.floor(points / self.voxel_m).astype(np.int64) + _KEY_OFFSET
        keys = (cells[:, 0] << (2 * _KEY_BITS)) | (cells[:, 1] << _KEY_BITS) | cells[:, 2]
        all_keys = np.concatenate([self._keys, keys])
        all_sums = np.concatenate([self._sums, points])
        all_counts = np.concatenate([self._counts, np.ones(len(points))])
        unique, inverse = np.unique(all_keys, return_inverse=True)
        sums = np.zeros((len(unique), 3))
        for axis in range(3):
            sums[:, axis] = np.bincount(inverse, weights=all_sums[:, axis],
                                        minlength=len(unique))
        self._keys, self._sums = unique, sums
        self._counts = np.bincount(inverse, weights=all_counts,
                                   minlength=len(unique)).astype(np.float64)

    def __len__(self) -> int:
        self._merge()
        return len(self._counts)

    def points_m(self) -> NDArray[np.float32]:
        """(M, 3) voxel centroids in the map frame."""
        self._merge()
        return (self._sums / self._counts[:, None]).astype(np.float32)

    def write_ply(self, path: str | Path) -> Path:
        """Write the cloud as a binary PLY (``cloud.ply``); return the path."""
        return write_ply(self.points_m(), path)


def write_ply(points_m: NDArray[np.floating], path: str | Path) -> Path:
    """Write (N, 3) points as a binary PLY through Open3D, renamed into place when complete."""
    import open3d as o3d  # heavy: only the writers need it

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(np.asarray(points_m, dtype=np.float64))
    try:
        if not o3d.io.write_point_cloud(tmp, cloud, write_ascii=False):
            raise ExportError(f"{target}: Open3D could not write the point cloud")
        tmp.replace(target)
    except OSError as err:
        raise ExportError(f"{target}: cannot write: {err.strerror}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def format_stamp_s(stamp_ns: int) -> str:
    """Integer nanoseconds as seconds with nine decimals, exactly (no float rounding)."""
    sign = "-" if stamp_ns < 0 else ""
    seconds, nanoseconds = divmod(abs(stamp_ns), _NS)
    return f"{sign}{seconds}.{nanoseconds:09d}"


def parse_stamp_ns(text: str) -> int:
    """Seconds as written by ``format_stamp_s`` (or any decimal) to integer nanoseconds."""
    sign = -1 if text.startswith("-") else 1
    whole, _, fraction = text.lstrip("+-").partition(".")
    if not (whole or fraction) or not (whole or "0").isdigit() or not (fraction or "0").isdigit():
        raise ValueError(f"not a timestamp: {text!r}")
    nanoseconds = int((fraction + "000000000")[:9])
    return sign * (int(whole or "0") * _NS + nanoseconds)


def write_tum(path: str | Path, trajectory: Iterable[tuple[int, FloatArray]]) -> Path:
    """Write (stamp_ns, T_map_base) poses as a TUM trajectory; return the path.

    Lines: ``timestamp x y z qx qy qz qw`` (seconds, metres, unit quaternion with w >= 0).
    Written aside and renamed into place when complete.
    """
    target = Path(path)
    lines = []
    for stamp_ns, T in trajectory:
        x, y, z = (float(v) for v in T[:3, 3])
        qx, qy, qz, qw = quaternion_from_rotation(np.asarray(T[:3, :3], dtype=np.float64))
        if not all(math.isfinite(v) for v in (x, y, z, qx, qy, qz, qw)):
            raise ExportError(f"{target}: pose at {format_stamp_s(stamp_ns)} s is not finite")
        lines.append(f"{format_stamp_s(stamp_ns)} {x:.6f} {y:.6f} {z:.6f} "
                     f"{qx:.9f} {qy:.9f} {qz:.9f} {qw:.9f}\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        tmp.write_text("".join(lines), encoding="ascii")
        tmp.replace(target)
    except OSError as err:
        raise ExportError(f"{target}: cannot write: {err.strerror}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_tum(path: str | Path) -> list[tuple[int, FloatArray]]:
    """(stamp_ns, T) poses of a TUM trajectory; ``#`` comments and blank lines are skipped."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise ExportError(f"{source}: cannot read: {err.strerror}") from err
    poses: list[tuple[int, FloatArray]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            if len(fields) != 8:
                raise ValueError(f"expected 8 fields, got {len(fields)}")
            x, y, z, qx, qy, qz, qw = (float(v) for v in fields[1:])
            poses.append((parse_stamp_ns(fields[0]), pose_matrix((x, y, z), (qx, qy, qz, qw))))
        except ValueError as err:
            raise ExportError(f"{source}:{number}: {err}") from err
    return poses
