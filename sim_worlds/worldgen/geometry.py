"""Rigid transforms for SDF poses, in pure Python so generated numbers are reproducible.

SDF writes a rotation as fixed-axis roll, pitch, yaw: R = Rz(yaw) @ Ry(pitch) @ Rx(roll).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]

IDENTITY: Mat3 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
_GIMBAL_EPS = 1e-9


def vadd(a: Vec3, b: Vec3) -> Vec3:
    """Sum of two vectors."""
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def vsub(a: Vec3, b: Vec3) -> Vec3:
    """Difference a - b of two vectors."""
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def vscale(a: Vec3, k: float) -> Vec3:
    """Vector a scaled by k."""
    return (a[0] * k, a[1] * k, a[2] * k)


def vdot(a: Vec3, b: Vec3) -> float:
    """Dot product."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def vnorm(a: Vec3) -> float:
    """Euclidean length."""
    return math.sqrt(vdot(a, a))


def rot_x(angle_rad: float) -> Mat3:
    """Rotation about x."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return ((1.0, 0.0, 0.0), (0.0, c, -s), (0.0, s, c))


def rot_y(angle_rad: float) -> Mat3:
    """Rotation about y."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return ((c, 0.0, s), (0.0, 1.0, 0.0), (-s, 0.0, c))


def rot_z(angle_rad: float) -> Mat3:
    """Rotation about z."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return ((c, -s, 0.0), (s, c, 0.0), (0.0, 0.0, 1.0))


def mat_mul(a: Mat3, b: Mat3) -> Mat3:
    """Matrix product a @ b."""
    rows = []
    for i in range(3):
        rows.append(
            (
                a[i][0] * b[0][0] + a[i][1] * b[1][0] + a[i][2] * b[2][0],
                a[i][0] * b[0][1] + a[i][1] * b[1][1] + a[i][2] * b[2][1],
                a[i][0] * b[0][2] + a[i][1] * b[1][2] + a[i][2] * b[2][2],
            )
        )
    return (rows[0], rows[1], rows[2])


def mat_vec(m: Mat3, v: Vec3) -> Vec3:
    """Matrix-vector product m @ v."""
    return (vdot(m[0], v), vdot(m[1], v), vdot(m[2], v))


def rpy_to_mat(roll_rad: float, pitch_rad: float, yaw_rad: float) -> Mat3:
    """Rotation matrix of SDF fixed-axis roll, pitch, yaw."""
    return mat_mul(rot_z(yaw_rad), mat_mul(rot_y(pitch_rad), rot_x(roll_rad)))


def mat_to_rpy(m: Mat3) -> Vec3:
    """SDF roll, pitch, yaw of a rotation matrix (roll = 0 at gimbal lock)."""
    sin_pitch = max(-1.0, min(1.0, -m[2][0]))
    pitch = math.asin(sin_pitch)
    if abs(abs(sin_pitch) - 1.0) < _GIMBAL_EPS:
        return (0.0, pitch, math.atan2(-m[0][1], m[1][1]))
    return (math.atan2(m[2][1], m[2][2]), pitch, math.atan2(m[1][0], m[0][0]))


@dataclass(frozen=True)
class Pose:
    """A rigid transform: position (m) and rotation matrix, mapping child to parent frame."""

    xyz: Vec3 = (0.0, 0.0, 0.0)
    rot: Mat3 = IDENTITY

    @staticmethod
    def from_xyz_rpy(
        x_m: float,
        y_m: float,
        z_m: float,
        roll_rad: float = 0.0,
        pitch_rad: float = 0.0,
        yaw_rad: float = 0.0,
    ) -> Pose:
        """Pose from a position and SDF roll, pitch, yaw."""
        return Pose((x_m, y_m, z_m), rpy_to_mat(roll_rad, pitch_rad, yaw_rad))

    def compose(self, child: Pose) -> Pose:
        """This pose followed by a child pose expressed in this frame."""
        return Pose(vadd(self.xyz, mat_vec(self.rot, child.xyz)), mat_mul(self.rot, child.rot))

    def apply(self, point: Vec3) -> Vec3:
        """A point given in this frame, expressed in the parent frame."""
        return vadd(self.xyz, mat_vec(self.rot, point))

    def rotate(self, vector: Vec3) -> Vec3:
        """A direction given in this frame, expressed in the parent frame."""
        return mat_vec(self.rot, vector)

    def rpy(self) -> Vec3:
        """SDF roll, pitch, yaw of the rotation."""
        return mat_to_rpy(self.rot)

    def inverse(self) -> Pose:
        """The inverse transform."""
        rt: Mat3 = (
            (self.rot[0][0], self.rot[1][0], self.rot[2][0]),
            (self.rot[0][1], self.rot[1][1], self.rot[2][1]),
            (self.rot[0][2], self.rot[1][2], self.rot[2][2]),
        )
        return Pose(vscale(mat_vec(rt, self.xyz), -1.0), rt)


def translation(x_m: float, y_m: float, z_m: float) -> Pose:
    """A pure translation."""
    return Pose((x_m, y_m, z_m))


def fmt_num(value: float, digits: int = 6) -> str:
    """A float as short, deterministic text (no exponent, no negative zero)."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_vec(values: tuple[float, ...], digits: int = 6) -> str:
    """Space-separated numbers as SDF writes them."""
    return " ".join(fmt_num(v, digits) for v in values)


def pose_text(pose: Pose) -> str:
    """The six numbers of an SDF <pose> element."""
    return fmt_vec(pose.xyz + pose.rpy())


def rounded(value: float, digits: int = 4) -> float:
    """A float rounded for ground-truth files, without negative zero."""
    result = round(value, digits)
    return 0.0 if result == 0.0 else result


def rounded_vec(v: Vec3, digits: int = 4) -> Vec3:
    """A vector rounded for ground-truth files."""
    return (rounded(v[0], digits), rounded(v[1], digits), rounded(v[2], digits))
