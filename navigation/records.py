"""Typed records that flow between the localization components (no ROS types here).

Conventions: timestamps are integer nanoseconds (``stamp_ns``); poses are 4x4 float64
homogeneous transforms named ``T_<to>_<from>`` (``T_map_base`` maps base_link coordinates into
the map frame); 6-vectors and 6x6 covariance / information matrices are ordered
(x, y, z, roll, pitch, yaw) as in ROS messages; SI units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LidarScan3D:
    """One sweep of a 3D lidar as the driver gives it, in the sensor frame.

    ``point_time_offsets_s`` (optional) is each point's firing time relative to ``stamp_ns``;
    a consumer uses it to undo the motion during the sweep. None: all points at ``stamp_ns``.
    """

    stamp_ns: int
    points_m: NDArray[np.float32]
    point_time_offsets_s: NDArray[np.float32] | None = None
    frame_id: str = "lidar_link"


@dataclass(frozen=True)
class LaserScan2D:
    """A planar scan: ranges at ``angle_min_rad + i * angle_increment_rad``.

    Ranges outside [range_min_m, range_max_m], inf or NaN are no-returns (real scanners
    report max range or 0 for them). Timing as ``sensor_msgs/LaserScan``: the stamp is the
    first beam's, and beam i fires ``i * time_increment_s`` later (0: all at once);
    ``scan_time_s`` is the scanner's period.
    """

    stamp_ns: int
    ranges_m: NDArray[np.float32]
    angle_min_rad: float
    angle_increment_rad: float
    range_min_m: float
    range_max_m: float
    scan_time_s: float = 0.0
    frame_id: str = "laser"
    time_increment_s: float = 0.0

    def points_m(self) -> NDArray[np.float32]:
        """(M, 3) valid returns in the scanner frame (z = 0)."""
        r = self.ranges_m.astype(np.float64)
        angles = self.angle_min_rad + self.angle_increment_rad * np.arange(r.size)
        valid = np.isfinite(r) & (r > self.range_min_m) & (r < self.range_max_m)
        return np.column_stack([r[valid] * np.cos(angles[valid]), r[valid] * np.sin(angles[valid]),
                                np.zeros(int(valid.sum()))]).astype(np.float32)


@dataclass(frozen=True)
class OdometrySample:
    """Wheel odometry: pose of base_link in the odom frame, and its covariance (6x6)."""

    stamp_ns: int
    T_odom_base: FloatArray
    covariance: FloatArray = field(default_factory=lambda: np.diag([1e-4] * 6))


class FixSource(Enum):
    """Where an absolute position fix comes from."""

    RADIO_5G = "5g"
    BEIDOU = "beidou"


@dataclass(frozen=True)
class PositionFix:
    """An absolute position in the site frame with its claimed covariance (3x3)."""

    stamp_ns: int
    position_m: FloatArray
    covariance: FloatArray
    source: FixSource


@dataclass(frozen=True)
class LidarOdometryResult:
    """What lidar odometry concludes from one scan.

    ``T_prev_curr`` is the sensor's motion since the previous scan; ``information`` is the
    6x6 information matrix of that estimate (the registration's Hessian over the noise, in the
    current sensor frame), whose small eigenvalues are the directions the scan does not
    constrain. ``degenerate_directions`` holds those eigenvectors (k, 6), empty when the scan
    constrains all six.
    """

    stamp_ns: int
    T_map_sensor: FloatArray
    T_prev_curr: FloatArray
    information: FloatArray
    degenerate_directions: FloatArray
    fitness: float
    """Fraction of the scan's points that matched the local map."""

    @property
    def degenerate(self) -> bool:
        """Whether some direction is unconstrained (a pipe or a featureless corridor)."""
        return len(self.degenerate_directions) > 0
