"""Dead reckoning from the two track encoders of a skid-steer crawler.

Each update integrates the arc driven since the previous encoder sample (midpoint rule) and
propagates the pose covariance with the textbook odometry error model: distance and heading
increments are independent, with variances that grow with the distance and the angle driven
(Siegwart & Nourbakhsh, Introduction to Autonomous Mobile Robots, section 5.2.4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_I32 = 2**32


def ticks_delta(current: int, previous: int) -> int:
    """Signed tick difference of a 32-bit counter that may have wrapped."""
    return (current - previous + 2**31) % _I32 - 2**31


@dataclass(frozen=True)
class OdometryState:
    """Pose in the odom frame, body velocity and pose covariance over (x, y, yaw)."""

    stamp_ns: int
    x_m: float
    y_m: float
    yaw_rad: float
    linear_mps: float
    angular_radps: float
    distance_m: float
    covariance_xyyaw: FloatArray


class WheelOdometry:
    """Integrates cumulative encoder ticks into a pose with an honest covariance."""

    def __init__(
        self,
        ticks_per_m: float,
        track_width_m: float,
        var_m2_per_m: float = 1e-4,
        var_rad2_per_m: float = 4e-4,
        var_rad2_per_rad: float = 1e-3,
    ) -> None:
        self.ticks_per_m = ticks_per_m
        self.track_width_m = track_width_m
        self.var_m2_per_m = var_m2_per_m
        self.var_rad2_per_m = var_rad2_per_m
        self.var_rad2_per_rad = var_rad2_per_rad
        self._last: tuple[int, int, int] | None = None
        self._x_m = self._y_m = self._yaw_rad = 0.0
        self._distance_m = 0.0
        self._linear_mps = self._angular_radps = 0.0
        self._cov: FloatArray = np.zeros((3, 3))

    def update(self, stamp_ns: int, left_ticks: int, right_ticks: int) -> OdometryState:
        """Integrate one encoder sample (cumulative ticks) taken at ``stamp_ns``."""
        if self._last is None:
            self._last = (stamp_ns, left_ticks, right_ticks)
            return self.state(stamp_ns)
        last_ns, last_left, last_right = self._last
        self._last = (stamp_ns, left_ticks, right_ticks)
        # Track distances since the last sample
        d_left_m = ticks_delta(left_ticks, last_left) / self.ticks_per_m
        d_right_m = ticks_delta(right_ticks, last_right) / self.ticks_per_m
        ds_m = 0.5 * (d_left_m + d_right_m)
        dyaw_rad = (d_right_m - d_left_m) / self.track_width_m
        # Propagate covariance through the motion Jacobians
        self._propagate_covariance(ds_m, dyaw_rad)
        # Integrate the arc at its mid heading
        mid_yaw = self._yaw_rad + 0.5 * dyaw_rad
        self._x_m += ds_m * math.cos(mid_yaw)
        self._y_m += ds_m * math.sin(mid_yaw)
        self._yaw_rad = math.remainder(self._yaw_rad + dyaw_rad, math.tau)
        self._distance_m += abs(ds_m)
        # Velocities over the sample interval
        dt_s = (stamp_ns - last_ns) * 1e-9
        if dt_s > 0.0:
            self._linear_mps = ds_m / dt_s
            self._angular_radps = dyaw_rad / dt_s
        return self.state(stamp_ns)

    def reset_reference(self) -> None:
        """Forget the last encoder sample (the MCU rebooted); keep the pose."""
        self._last = None

    def state(self, stamp_ns: int) -> OdometryState:
        """The current estimate, stamped ``stamp_ns``."""
        return OdometryState(stamp_ns, self._x_m, self._y_m, self._yaw_rad, self._linear_mps,
                             self._angular_radps, self._distance_m, self._cov.copy())

    def _propagate_covariance(self, ds_m: float, dyaw_rad: float) -> None:
        mid_yaw = self._yaw_rad + 0.5 * dyaw_rad
        c, s = math.cos(mid_yaw), math.sin(mid_yaw)
        # Jacobian of the new pose w.r.t. the old pose (F) and the increments (G).
        jac_pose = np.array([[1.0, 0.0, -ds_m * s], [0.0, 1.0, ds_m * c], [0.0, 0.0, 1.0]])
        jac_inc = np.array([[c, -0.5 * ds_m * s], [s, 0.5 * ds_m * c], [0.0, 1.0]])
        noise = np.diag([
            self.var_m2_per_m * abs(ds_m),
            self.var_rad2_per_m * abs(ds_m) + self.var_rad2_per_rad * abs(dyaw_rad),
        ])
        self._cov = jac_pose @ self._cov @ jac_pose.T + jac_inc @ noise @ jac_inc.T
