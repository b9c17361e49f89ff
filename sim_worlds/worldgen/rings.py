"""Pipe walls made of flat staves, and plates with a pipe-shaped opening.

Cross-sections live in a ring frame: x along the pipe axis, y to the left and z up when looking
downstream. Clock positions are measured clockwise from the crown looking downstream, so a
point at clock angle phi on a circle of radius r is (y, z) = (-r sin phi, r cos phi).
The wall polygon circumscribes the nominal ellipse: every stave face touches it at its middle.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sim_worlds.worldgen.geometry import Pose, Vec2, Vec3
from sim_worlds.worldgen.sdf import Surface, add_box

STAVE_OVERLAP_M = 0.002


@dataclass(frozen=True)
class Bore:
    """Elliptic bore of a ring: semi-axes (m) and the centre offset in the ring frame."""

    half_width_m: float
    half_height_m: float
    centre_yz_m: Vec2 = (0.0, 0.0)

    @staticmethod
    def circle(radius_m: float) -> Bore:
        """A round bore centred on the axis."""
        return Bore(radius_m, radius_m)

    def grown(self, thickness_m: float) -> Bore:
        """The bore offset outwards by a wall thickness (approximately, for ellipses)."""
        return Bore(
            self.half_width_m + thickness_m, self.half_height_m + thickness_m, self.centre_yz_m
        )


@dataclass(frozen=True)
class StaveGeometry:
    """One flat stave: inner-face middle, outward normal, face width and roll of the box."""

    index: int
    face_mid_yz_m: Vec2
    normal_yz: Vec2
    face_width_m: float
    roll_rad: float


def clock_to_rad(clock_h: float) -> float:
    """Clock hours to the clock angle in radians (12 -> 0, 3 -> pi/2)."""
    return (clock_h % 12.0) / 12.0 * 2.0 * math.pi


def rad_to_clock(angle_rad: float) -> float:
    """Clock angle in radians to hours in (0, 12]."""
    hours = (angle_rad / (2.0 * math.pi) * 12.0) % 12.0
    return 12.0 if hours < 1e-9 else hours


def clock_point(radius_m: float, clock_h: float) -> Vec2:
    """(y, z) of a point on a circle at a clock position."""
    phi = clock_to_rad(clock_h)
    return (-radius_m * math.sin(phi), radius_m * math.cos(phi))


def polygon_vertex(bore: Bore, angle_rad: float, staves: int) -> Vec2:
    """Vertex of the circumscribed wall polygon at a clock angle (a stave edge)."""
    half_step = math.pi / staves
    k = 1.0 / math.cos(half_step)
    cy, cz = bore.centre_yz_m
    return (
        cy - bore.half_width_m * math.sin(angle_rad) * k,
        cz + bore.half_height_m * math.cos(angle_rad) * k,
    )


def bore_polygon(bore: Bore, staves: int) -> tuple[Vec2, ...]:
    """Vertices of the inner wall polygon, stave edges in clock order from 12."""
    step = 2.0 * math.pi / staves
    return tuple(polygon_vertex(bore, (j - 0.5) * step, staves) for j in range(staves))


def stave_geometry(bore: Bore, staves: int, index: int) -> StaveGeometry:
    """Geometry of stave `index` (centred at clock angle index * 360 / staves degrees)."""
    step = 2.0 * math.pi / staves
    y1, z1 = polygon_vertex(bore, (index - 0.5) * step, staves)
    y2, z2 = polygon_vertex(bore, (index + 0.5) * step, staves)
    width = math.hypot(y2 - y1, z2 - z1)
    normal = ((z2 - z1) / width, -(y2 - y1) / width)
    return StaveGeometry(
        index=index,
        face_mid_yz_m=((y1 + y2) / 2.0, (z1 + z2) / 2.0),
        normal_yz=normal,
        face_width_m=width,
        roll_rad=math.atan2(-normal[0], normal[1]),
    )


def _stave_lateral_extent(stave: StaveGeometry, thickness_m: float) -> tuple[float, float]:
    my, _ = stave.face_mid_yz_m
    ny, nz = stave.normal_yz
    ty = -nz  # tangent direction's y component (tangent = (-nz, ny))
    half = stave.face_width_m / 2.0
    ys = [
        my + sign * ty * half + depth * ny for sign in (-1.0, 1.0) for depth in (0.0, thickness_m)
    ]
    return min(ys), max(ys)


def mitre_extension_m(stave: StaveGeometry, thickness_m: float, turn_rad: float) -> float:
    """How far a stave must run past a joint so a heading change opens no gap on the outside."""
    if turn_rad == 0.0:
        return 0.0
    y_min, y_max = _stave_lateral_extent(stave, thickness_m)
    outer = max(-y_min, -y_max) if turn_rad > 0.0 else max(y_min, y_max)
    extension = outer * math.tan(abs(turn_rad) / 2.0)
    return extension + 0.003 if extension > 0.0 else 0.0


@dataclass(frozen=True)
class RingWall:
    """A pipe ring: bore, wall, staves to leave out, and heading changes at its two ends."""

    bore: Bore
    thickness_m: float
    staves: int
    length_m: float
    omit: frozenset[int] = frozenset()
    turn_start_rad: float = 0.0
    turn_end_rad: float = 0.0


def add_ring_wall(link: ET.Element, ring: RingWall, frame: Pose, surface: Surface) -> None:
    """Append the stave boxes of a ring centred on `frame` (ring frame in the link frame)."""
    for index in range(ring.staves):
        if index in ring.omit:
            continue
        stave = stave_geometry(ring.bore, ring.staves, index)
        start_ext = mitre_extension_m(stave, ring.thickness_m, ring.turn_start_rad)
        end_ext = mitre_extension_m(stave, ring.thickness_m, ring.turn_end_rad)
        offset_x = (end_ext - start_ext) / 2.0
        centre_y = stave.face_mid_yz_m[0] + stave.normal_yz[0] * ring.thickness_m / 2.0
        centre_z = stave.face_mid_yz_m[1] + stave.normal_yz[1] * ring.thickness_m / 2.0
        local = Pose.from_xyz_rpy(offset_x, centre_y, centre_z, stave.roll_rad)
        size: Vec3 = (
            ring.length_m + start_ext + end_ext,
            stave.face_width_m + STAVE_OVERLAP_M,
            ring.thickness_m,
        )
        add_box(link, f"s{index:02d}", size, frame.compose(local), surface)


def add_lining(
    link: ET.Element,
    name: str,
    bore: Bore,
    staves: int,
    indices: tuple[int, ...],
    frame: Pose,
    size_x_m: float,
    inset_m: float,
    thickness_m: float,
    surface: Surface,
) -> None:
    """Thin boxes lying on the inner faces of chosen staves (defect patches, scale layers)."""
    for index in indices:
        stave = stave_geometry(bore, staves, index)
        depth = inset_m + thickness_m / 2.0
        centre_y = stave.face_mid_yz_m[0] - stave.normal_yz[0] * depth
        centre_z = stave.face_mid_yz_m[1] - stave.normal_yz[1] * depth
        local = Pose.from_xyz_rpy(0.0, centre_y, centre_z, stave.roll_rad)
        size: Vec3 = (size_x_m, stave.face_width_m, thickness_m)
        add_box(link, f"{name}_{index:02d}", size, frame.compose(local), surface)


def staves_in_arc(staves: int, clock_h: float, arc_h: float) -> tuple[int, ...]:
    """Indices of the staves whose centres lie within an arc (clock hours) around a clock."""
    hours_per_stave = 12.0 / staves
    chosen = []
    for index in range(staves):
        centre = index * hours_per_stave
        delta = abs((centre - clock_h + 6.0) % 12.0 - 6.0)
        if delta <= arc_h / 2.0 - hours_per_stave / 2.0 + 1e-9:
            chosen.append(index)
    return tuple(chosen)


def span_at(polygon: tuple[Vec2, ...], z_m: float) -> tuple[float, float] | None:
    """Horizontal extent (y_min, y_max) of a convex polygon at height z, or None outside it."""
    ys: list[float] = []
    count = len(polygon)
    for i in range(count):
        (y1, z1), (y2, z2) = polygon[i], polygon[(i + 1) % count]
        low, high = min(z1, z2), max(z1, z2)
        if low - 1e-12 <= z_m <= high + 1e-12:
            if abs(z2 - z1) < 1e-12:
                ys.extend((y1, y2))
            else:
                ys.append(y1 + (y2 - y1) * (z_m - z1) / (z2 - z1))
    return (min(ys), max(ys)) if ys else None


def _strip_edges(
    inner: tuple[Vec2, ...], outer: tuple[Vec2, ...], z0_m: float, z1_m: float
) -> tuple[float, float] | None:
    """Plate edges (y_left_edge, y_right_edge) for a strip, or None where the strip is solid."""
    heights = [z0_m, z1_m] + [z for _, z in inner + outer if z0_m < z < z1_m]
    inner_spans = [s for s in (span_at(inner, z) for z in heights) if s is not None]
    if not inner_spans:
        return None
    outer_spans = [span_at(outer, z) for z in heights]
    if any(s is None for s in outer_spans):
        raise ValueError(f"strip {z0_m:.3f}..{z1_m:.3f} leaves the wall polygon")
    outer_min = max(s[0] for s in outer_spans if s is not None)
    outer_max = min(s[1] for s in outer_spans if s is not None)
    inner_min = min(s[0] for s in inner_spans)
    inner_max = max(s[1] for s in inner_spans)
    if outer_min > inner_min or outer_max < inner_max:
        raise ValueError(f"strip {z0_m:.3f}..{z1_m:.3f} too tall for the wall thickness")
    return ((outer_min + inner_min) / 2.0, (outer_max + inner_max) / 2.0)


@dataclass(frozen=True)
class Plate:
    """A flat plate in a ring frame's y-z plane at x, with half extents and a thickness."""

    x_m: float
    thickness_m: float
    y_range_m: Vec2
    z_range_m: Vec2


def add_plate_with_opening(
    link: ET.Element,
    name: str,
    plate: Plate,
    inner: tuple[Vec2, ...],
    outer: tuple[Vec2, ...],
    frame: Pose,
    surface: Surface,
    strip_m: float = 0.05,
) -> None:
    """A plate whose hole hugs a pipe: horizontal strips whose edges lie inside the pipe wall."""
    z_low, z_high = plate.z_range_m
    y_low, y_high = plate.y_range_m
    bottom = min(z for _, z in outer)
    top = max(z for _, z in outer)
    count = 0
    spans: list[tuple[float, float, tuple[float, float] | None]] = []
    z = max(z_low, bottom)
    if z > z_low:
        spans.append((z_low, z, None))
    while z < min(z_high, top) - 1e-9:
        z_next = min(z + strip_m, top, z_high)
        spans.append((z, z_next, _strip_edges(inner, outer, z, z_next)))
        z = z_next
    if z < z_high:
        spans.append((z, z_high, None))
    for za, zb, edges in spans:
        pieces = [(y_low, y_high)] if edges is None else [(y_low, edges[0]), (edges[1], y_high)]
        for ya, yb in pieces:
            if yb - ya <= 1e-6:
                continue
            centre = Pose((plate.x_m, (ya + yb) / 2.0, (za + zb) / 2.0))
            size: Vec3 = (plate.thickness_m, yb - ya, zb - za)
            add_box(link, f"{name}_{count:02d}", size, frame.compose(centre), surface)
            count += 1
