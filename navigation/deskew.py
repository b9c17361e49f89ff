"""Undo the motion of a spinning lidar during its sweep (constant velocity within the sweep).

A spinning lidar fires its columns one after the other while the robot moves, so each raw
point is in the sensor frame *of its own firing time*. Given the sensor's motion between the
previous scan and this one, ``T_prev_curr``, over ``dt_s`` seconds, and assuming constant
linear and angular velocity over that interval, the sensor pose at time offset ``tau <= 0``
(relative to the scan stamp, the end of the sweep) expressed in the current frame is

    T_curr_tau = ( Exp(s * Log(R_curr_prev)),  s * t_curr_prev ),   s = -tau / dt_s,

a straight-line translation and a constant-rate rotation (the decoupled interpolation a
spinning lidar driver and our simulator use), and the undistorted point is
``p_curr = T_curr_tau @ p_tau``. SO(3) helpers used by the odometry live here too.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def skew(v: FloatArray) -> FloatArray:
    """The 3x3 matrix ``[v]x`` with ``[v]x @ u == cross(v, u)``."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def so3_exp(rotvec_rad: FloatArray) -> FloatArray:
    """Rotation matrix of a rotation vector (axis times angle, Rodrigues' formula)."""
    angle = float(np.linalg.norm(rotvec_rad))
    K = skew(rotvec_rad)
    if angle < 1e-9:
        return np.eye(3) + K
    R: FloatArray = (np.eye(3) + (math.sin(angle) / angle) * K
                     + ((1.0 - math.cos(angle)) / angle**2) * (K @ K))
    return R


def so3_log(R: FloatArray) -> FloatArray:
    """Rotation vector (axis times angle, angle in [0, pi]) of a rotation matrix."""
    cos_angle = max(-1.0, min(1.0, 0.5 * (float(np.trace(R)) - 1.0)))
    angle = math.acos(cos_angle)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if angle < 1e-9:
        return 0.5 * w
    if math.pi - angle < 1e-6:
        # Near a half turn the antisymmetric part vanishes; read the axis from R + I.
        column = int(np.argmax(np.diag(R)))
        axis = (R[:, column] + np.eye(3)[:, column])
        return angle * axis / float(np.linalg.norm(axis))
    rotvec: FloatArray = (angle / (2.0 * math.sin(angle))) * w
    return rotvec


def deskew(points_m: FloatArray, time_offsets_s: FloatArray, T_prev_curr: FloatArray,
           dt_s: float) -> FloatArray:
    """Points (N, 3), each in the sensor frame at its firing time, moved into the frame at
    the scan stamp.

    ``time_offsets_s`` (N,) are the firing times relative to the stamp: <= 0 for a sweep
    stamped at its end (ours), >= 0 for one stamped at its first beam (ROS's LaserScan, many
    3D drivers); ``T_prev_curr`` is the sensor's motion over the ``dt_s`` seconds before the
    stamp, continued at the same rate past it.
    """
    if dt_s <= 0.0 or len(points_m) == 0:
        return points_m
    return undistort(points_m, -time_offsets_s / dt_s, T_prev_curr)


def undistort(points_m: FloatArray, age_fraction: FloatArray,
              T_prev_curr: FloatArray) -> FloatArray:
    """Points moved into the frame at the stamp, each fired ``age_fraction`` (N,) of the
    interval ``T_prev_curr`` before it (0: at the stamp, 1: at the previous stamp)."""
    if len(points_m) == 0:
        return points_m
    fraction = age_fraction[:, None]
    R_curr_prev = T_prev_curr[:3, :3].T
    t_curr_prev = -R_curr_prev @ T_prev_curr[:3, 3]
    rotvec = so3_log(R_curr_prev)
    angle_rad = float(np.linalg.norm(rotvec))
    translated = fraction * t_curr_prev
    if angle_rad < 1e-12:
        moved: FloatArray = points_m + translated
        return moved
    # Rodrigues per point: one axis, an angle proportional to the point's age
    axis = rotvec / angle_rad
    angles = fraction * angle_rad
    cos_a, sin_a = np.cos(angles), np.sin(angles)
    rotated = (points_m * cos_a + np.cross(axis, points_m) * sin_a
               + (points_m @ axis)[:, None] * axis * (1.0 - cos_a))
    result: FloatArray = rotated + translated
    return result
