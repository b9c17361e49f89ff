"""Poses at arbitrary times from a time-ordered list of poses (linear + slerp interpolation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation, Slerp

FloatArray = NDArray[np.float64]


class PoseHistory:
    """``(stamp_ns, T)`` samples, strictly increasing in time; ``at(stamp_ns)`` interpolates.

    Outside the covered span ``at`` returns None rather than extrapolating, unless the stamp
    is within ``tolerance_ns`` of an end, where the end pose is returned.
    """

    def __init__(self, samples: Sequence[tuple[int, FloatArray]], tolerance_ns: int = 0) -> None:
        ordered = sorted(samples, key=lambda sample: sample[0])
        stamps = [stamp for stamp, _ in ordered]
        keep = [i for i in range(len(stamps)) if i == 0 or stamps[i] > stamps[i - 1]]
        self._stamps = np.array([stamps[i] for i in keep], dtype=np.int64)
        poses = np.array([ordered[i][1] for i in keep], dtype=np.float64).reshape(-1, 4, 4)
        self._positions = poses[:, :3, 3]
        self._rotations = poses[:, :3, :3]
        self._slerp = (
            Slerp(self._stamps.astype(np.float64), Rotation.from_matrix(self._rotations))
            if len(keep) >= 2 else None)
        self.tolerance_ns = tolerance_ns

    def __len__(self) -> int:
        return len(self._stamps)

    def at(self, stamp_ns: int) -> FloatArray | None:
        """The 4x4 pose at ``stamp_ns``, or None outside the history."""
        if len(self._stamps) == 0:
            return None
        first, last = int(self._stamps[0]), int(self._stamps[-1])
        if stamp_ns < first - self.tolerance_ns or stamp_ns > last + self.tolerance_ns:
            return None
        T = np.eye(4)
        if self._slerp is None or stamp_ns <= first or stamp_ns >= last:
            index = 0 if stamp_ns <= first else len(self._stamps) - 1
            T[:3, :3] = self._rotations[index]
            T[:3, 3] = self._positions[index]
            return T
        i = int(np.searchsorted(self._stamps, stamp_ns))
        t0, t1 = int(self._stamps[i - 1]), int(self._stamps[i])
        w = (stamp_ns - t0) / (t1 - t0)
        T[:3, 3] = (1.0 - w) * self._positions[i - 1] + w * self._positions[i]
        T[:3, :3] = self._slerp([float(stamp_ns)]).as_matrix()[0]
        return T
