"""World 'sewer_dn1000': a DN1000 concrete sewer between two manholes, with CJJ 181 defects.

The pipe runs 120 m from manhole A (site origin, ground level z = 0) to manhole B, falling at
2 per mille, with a 20 degree left bend made of 2 m sections. Distances are measured along the
axis from the inner wall of manhole A. Structural defects (BX, CK, TJ, AJ) and the functional
ones with volume (CJ, SG, ZW, JG) are real geometry; PL, FS and SL are textured wall patches.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from sim_worlds.worldgen import cjj181
from sim_worlds.worldgen.geometry import (
    Pose,
    Vec3,
    rot_y,
    rot_z,
    rounded,
    rounded_vec,
    translation,
    vadd,
    vscale,
)
from sim_worlds.worldgen.rings import (
    Bore,
    RingWall,
    add_lining,
    add_ring_wall,
    clock_point,
    rad_to_clock,
    staves_in_arc,
)
from sim_worlds.worldgen.scene import (
    CONCRETE,
    SOIL,
    WATER,
    WATER_TRANSPARENCY,
)
from sim_worlds.worldgen.sdf import Material, Surface, add_box, add_link
from sim_worlds.worldgen.textures import texture_path
from sim_worlds.worldgen.truth import (
    GeodeticOrigin,
    PipeDefect,
)

WORLD_NAME = "sewer_dn1000"
ORIGIN = GeodeticOrigin("CGCS2000", 30.5928, 114.3055, 23.5, 90.0)  # Wuhan, ground at MH-A

RADIUS_M = 0.5
WALL_M = 0.1
STAVES = 24
SECTION_M = 2.0
SECTIONS = 60
SLOPE = 0.002
INVERT_A_Z_M = -4.0
WATER_DEPTH_M = 0.1
BEND_FIRST_SECTION = 25
BEND_SECTIONS = 10
BEND_STEP_RAD = math.radians(2.0)
CHAMBER_HALF_M = 0.6
CHAMBER_WALL_M = 0.2
NECK_HALF_M = 0.35
NECK_WALL_M = 0.15
ROOF_M = 0.2
NECK_DEPTH_M = 0.8
SPAWN_CLEARANCE_M = 0.02

PIPE_SURFACE = Surface(CONCRETE)
WATER_SURFACE = Surface(WATER, collision=False, transparency=WATER_TRANSPARENCY)


def _textured(name: str, roughness: float = 0.9) -> Material:
    return Material((1.0, 1.0, 1.0, 1.0), albedo_map=texture_path(name), roughness=roughness)


def _patch(name: str) -> Surface:
    return Surface(_textured(name), collision=False)


# --- centreline ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One straight 2 m pipe section: where it starts, which way it points, turns at its ends."""

    index: int
    s_start_m: float
    length_m: float
    start_m: Vec3
    heading_rad: float
    pitch_rad: float
    turn_in_rad: float
    turn_out_rad: float

    @property
    def s_end_m(self) -> float:
        """Distance of the section's downstream end."""
        return self.s_start_m + self.length_m

    def frame(self, s_m: float) -> Pose:
        """Ring frame on the axis at distance s (x downstream, z up in the pipe cross-section)."""
        rotation = Pose(rot=rot_z(self.heading_rad)).compose(Pose(rot=rot_y(self.pitch_rad)))
        along = rotation.rotate((s_m - self.s_start_m, 0.0, 0.0))
        return Pose(vadd(self.start_m, along), rotation.rot)


def _headings() -> list[float]:
    headings = []
    for k in range(SECTIONS):
        steps = min(max(k - BEND_FIRST_SECTION + 1, 0), BEND_SECTIONS)
        headings.append(steps * BEND_STEP_RAD)
    return headings


def build_sections() -> tuple[Section, ...]:
    """The 60 sections of the pipe from manhole A to manhole B."""
    headings = _headings()
    pitch = math.atan(SLOPE)
    start: Vec3 = (CHAMBER_HALF_M, 0.0, INVERT_A_Z_M + RADIUS_M)
    sections = []
    for k, heading in enumerate(headings):
        turn_in = heading - headings[k - 1] if k > 0 else 0.0
        turn_out = headings[k + 1] - heading if k + 1 < SECTIONS else 0.0
        section = Section(k, k * SECTION_M, SECTION_M, start, heading, pitch, turn_in, turn_out)
        sections.append(section)
        start = section.frame(section.s_end_m).xyz
    return tuple(sections)


def frame_at(sections: tuple[Section, ...], s_m: float) -> Pose:
    """Ring frame at a distance along the axis."""
    index = min(max(int(s_m // SECTION_M), 0), len(sections) - 1)
    return sections[index].frame(s_m)


def wall_point(sections: tuple[Section, ...], s_m: float, clock_h: float) -> Vec3:
    """Site position of the nominal inner wall at a distance and clock position."""
    y, z = clock_point(RADIUS_M, clock_h)
    return frame_at(sections, s_m).apply((0.0, y, z))


def invert_point(sections: tuple[Section, ...], s_m: float) -> Vec3:
    """Site position of the invert (floor) at a distance."""
    return frame_at(sections, s_m).apply((0.0, 0.0, -RADIUS_M))


# --- rings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RingPiece:
    """A length of pipe wall in one section (a whole section or part of one)."""

    name: str
    section: Section
    s_start_m: float
    s_end_m: float
    bore: Bore
    omit: frozenset[int] = frozenset()

    def wall(self) -> RingWall:
        """Stave layout of the piece, with mitres where it meets a turned neighbour."""
        at_start = abs(self.s_start_m - self.section.s_start_m) < 1e-9
        at_end = abs(self.s_end_m - self.section.s_end_m) < 1e-9
        return RingWall(
            bore=self.bore,
            thickness_m=WALL_M,
            staves=STAVES,
            length_m=self.s_end_m - self.s_start_m,
            omit=self.omit,
            turn_start_rad=self.section.turn_in_rad if at_start else 0.0,
            turn_end_rad=self.section.turn_out_rad if at_end else 0.0,
        )

    def frame(self) -> Pose:
        """Ring frame at the middle of the piece."""
        return self.section.frame((self.s_start_m + self.s_end_m) / 2.0)


@dataclass(frozen=True)
class Layout:
    """Where each defect sits (distances in m from manhole A's inner wall)."""

    pl_s: tuple[float, float] = (14.0, 15.2)
    bx_section: int = 11
    bx_ovality: float = 0.10
    fs_s: tuple[float, float] = (30.0, 33.0)
    ck_section: int = 19
    ck_offset_m: float = 0.06
    tj_section: int = 21
    tj_gap_m: float = 0.04
    lateral_s: tuple[float, float] = (47.0, 47.4)
    lateral_staves: frozenset[int] = frozenset({5, 6, 7})
    sl_s: tuple[float, float] = (56.1, 56.9)
    cj_s: tuple[float, float] = (74.0, 78.0)
    cj_depth_m: float = 0.25
    cj_ramp_m: float = 1.0
    sg_s: tuple[float, float] = (83.7, 84.3)
    sg_bottom_z_m: float = 0.22
    zw_s: tuple[float, float] = (90.0, 90.5)
    zw_box_yz_m: tuple[float, float, float, float] = (-0.58, -0.28, -0.58, 0.10)
    jg_s: tuple[float, float] = (96.0, 99.0)
    jg_thickness_m: float = 0.02
    aj_s: tuple[float, float] = (104.4, 104.6)
    aj_stave: int = 20
    aj_intrusion_m: float = 0.15
    aj_inner_radius_m: float = 0.075
    aj_wall_m: float = 0.025


LAYOUT = Layout()


def _bx_bore(layout: Layout) -> Bore:
    """Deformed bore: crown pushed down by ovality x D, invert kept, sides bulged out."""
    drop = layout.bx_ovality * 2.0 * RADIUS_M
    half_height = RADIUS_M - drop / 2.0
    return Bore(RADIUS_M + drop / 2.0, half_height, (0.0, -drop / 2.0))


def _split(piece: RingPiece, s_range: tuple[float, float], omit: frozenset[int]) -> list[RingPiece]:
    """Cut a piece into before / hole / after pieces."""
    s0, s1 = s_range
    return [
        replace(piece, name=f"{piece.name}a", s_end_m=s0),
        replace(piece, name=f"{piece.name}b", s_start_m=s0, s_end_m=s1, omit=omit),
        replace(piece, name=f"{piece.name}c", s_start_m=s1),
    ]


def ring_pieces(sections: tuple[Section, ...], layout: Layout = LAYOUT) -> list[RingPiece]:
    """All wall pieces of the pipe, with the geometric defects built in."""
    lateral_section = int(layout.lateral_s[0] // SECTION_M)
    aj_section = int(layout.aj_s[0] // SECTION_M)
    pieces: list[RingPiece] = []
    for section in sections:
        k = section.index
        piece = RingPiece(
            f"ring_{k:03d}", section, section.s_start_m, section.s_end_m, Bore.circle(RADIUS_M)
        )
        if k == layout.bx_section:
            piece = replace(piece, name=f"{piece.name}_D02", bore=_bx_bore(layout))
        if k == layout.ck_section:
            piece = replace(
                piece,
                name=f"{piece.name}_D04_D05",
                bore=Bore(RADIUS_M, RADIUS_M, (-layout.ck_offset_m, 0.0)),
            )
        if k == layout.tj_section:
            piece = replace(
                piece, name=f"{piece.name}_D06", s_end_m=section.s_end_m - layout.tj_gap_m
            )
        if k == lateral_section:
            pieces.extend(_split(piece, layout.lateral_s, layout.lateral_staves))
        elif k == aj_section:
            pieces.extend(_split(piece, layout.aj_s, frozenset({layout.aj_stave})))
        else:
            pieces.append(piece)
    return pieces


def _water_box(link: ET.Element, piece: RingPiece) -> None:
    bore = piece.bore
    cy, cz = bore.centre_yz_m
    invert_z = cz - bore.half_height_m
    level_z = invert_z + WATER_DEPTH_M
    ratio = (level_z - cz) / bore.half_height_m
    half_width = bore.half_width_m * math.sqrt(1.0 - ratio * ratio) + 0.01
    bottom_z = invert_z - 0.02
    size: Vec3 = (piece.s_end_m - piece.s_start_m, 2.0 * half_width, level_z - bottom_z)
    add_box(link, "water", size, Pose((0.0, cy, (level_z + bottom_z) / 2.0)), WATER_SURFACE)


def add_pipe(model: ET.Element, pieces: list[RingPiece]) -> None:
    """One link per ring piece: staves plus the water in the invert."""
    for piece in pieces:
        link = add_link(model, piece.name, piece.frame())
        add_ring_wall(link, piece.wall(), Pose(), PIPE_SURFACE)
        _water_box(link, piece)


# --- defects ---------------------------------------------------------------------------------


def _section_parts(s0: float, s1: float) -> list[tuple[float, float]]:
    """Split a distance range at section joints."""
    parts = []
    start = s0
    while start < s1 - 1e-9:
        joint = (math.floor(start / SECTION_M + 1e-9) + 1) * SECTION_M
        end = min(joint, s1)
        parts.append((start, end))
        start = end
    return parts


def _defect_link(model: ET.Element, defect_id: str, frame: Pose) -> ET.Element:
    return add_link(model, f"defect_{defect_id}", frame)


def _wall_layer(
    model: ET.Element,
    sections: tuple[Section, ...],
    defect_id: str,
    s_range: tuple[float, float],
    arc: tuple[float, float],
    layer: tuple[float, float, Surface],
) -> None:
    """Patches or a lining on the wall staves over a distance range and clock arc."""
    clock_h, arc_h = arc
    inset, thickness, surface = layer
    centre_frame = frame_at(sections, (s_range[0] + s_range[1]) / 2.0)
    link = _defect_link(model, defect_id, centre_frame)
    to_link = centre_frame.inverse()
    indices = staves_in_arc(STAVES, clock_h, arc_h)
    for part, (s0, s1) in enumerate(_section_parts(*s_range)):
        frame = to_link.compose(frame_at(sections, (s0 + s1) / 2.0))
        add_lining(
            link,
            f"p{part}",
            Bore.circle(RADIUS_M),
            STAVES,
            indices,
            frame,
            s1 - s0,
            inset,
            thickness,
            surface,
        )


def _record(
    sections: tuple[Section, ...],
    ident: tuple[str, str, int],
    s_range: tuple[float, float],
    arc: tuple[float, float],
    measured: dict[str, float],
    description: str,
    position: Vec3 | None = None,
) -> PipeDefect:
    defect_id, code, grade = ident
    clock_h, arc_h = arc
    s_mid = (s_range[0] + s_range[1]) / 2.0
    where = position if position is not None else wall_point(sections, s_mid, clock_h)
    expected = cjj181.grade_for(code, measured)
    if expected is not None and expected != grade:
        raise ValueError(
            f"{defect_id}: grade {grade} disagrees with measured {measured} ({expected})"
        )
    return PipeDefect(
        id=defect_id,
        code=code,
        grade=grade,
        distance_m=rounded(s_range[0], 3),
        clock_h=rounded(clock_h, 2),
        extent_length_m=rounded(s_range[1] - s_range[0], 3),
        extent_arc_h=rounded(arc_h, 2),
        position_m=rounded_vec(where, 3),
        measured={k: rounded(v, 3) for k, v in measured.items()},
        description=description,
    )


def _circle_area_below(depth_from_edge_m: float) -> float:
    """Area of a circular segment of the bore with a given height from the wall."""
    d = RADIUS_M - depth_from_edge_m
    return RADIUS_M * RADIUS_M * math.acos(d / RADIUS_M) - d * math.sqrt(
        RADIUS_M * RADIUS_M - d * d
    )


def disc_rect_area(
    radius_m: float, y_range: tuple[float, float], z_range: tuple[float, float], steps: int = 4000
) -> float:
    """Area of a disc centred at the origin intersected with an axis-aligned rectangle."""
    z0 = max(z_range[0], -radius_m)
    z1 = min(z_range[1], radius_m)
    if z1 <= z0:
        return 0.0
    dz = (z1 - z0) / steps
    total = 0.0
    for i in range(steps):
        z = z0 + (i + 0.5) * dz
        half = math.sqrt(max(radius_m * radius_m - z * z, 0.0))
        total += max(0.0, min(half, y_range[1]) - max(-half, y_range[0])) * dz
    return total


def add_defects(
    model: ET.Element, sections: tuple[Section, ...], layout: Layout = LAYOUT
) -> list[PipeDefect]:
    """Build every defect's geometry and return the ground-truth records."""
    return [
        _pl_crack(model, sections, layout),
        _bx_deformation(sections, layout),
        _fs_corrosion(model, sections, layout),
        *_ck_offsets(sections, layout),
        _tj_gap(model, sections, layout),
        _sl_leak(model, sections, layout),
        _cj_sediment(model, sections, layout),
        _sg_roots(model, sections, layout),
        _zw_obstacle(model, sections, layout),
        _jg_scale(model, sections, layout),
        _aj_hidden_lateral(model, sections, layout),
    ]


def _pl_crack(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    arc = (12.0, 1.5)
    _wall_layer(model, sections, "D01", layout.pl_s, arc, (0.002, 0.003, _patch("crack")))
    return _record(
        sections,
        ("D01", "PL", 2),
        layout.pl_s,
        arc,
        {"crack_width_mm": 3.0},
        "open longitudinal crack at the crown (裂口)",
    )


def _bx_deformation(sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    section = sections[layout.bx_section]
    bore = _bx_bore(layout)
    s_range = (section.s_start_m, section.s_end_m)
    crown = section.frame((s_range[0] + s_range[1]) / 2.0).apply(
        (0.0, 0.0, bore.centre_yz_m[1] + bore.half_height_m)
    )
    vertical_d = 2.0 * bore.half_height_m
    measured = {
        "ovality_pct_of_d": (1.0 - vertical_d / (2.0 * RADIUS_M)) * 100.0,
        "min_inner_diameter_m": vertical_d,
        "max_inner_diameter_m": 2.0 * bore.half_width_m,
    }
    return _record(
        sections,
        ("D02", "BX", 2),
        s_range,
        (12.0, 12.0),
        measured,
        "ring deformed: crown pushed down, sides bulged (变形)",
        crown,
    )


def _fs_corrosion(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    arc = (12.0, 3.5)
    _wall_layer(model, sections, "D03", layout.fs_s, arc, (0.002, 0.003, _patch("corrosion")))
    return _record(
        sections,
        ("D03", "FS", 2),
        layout.fs_s,
        arc,
        {},
        "H2S corrosion of the crown, aggregate showing (腐蚀)",
    )


def _ck_offsets(sections: tuple[Section, ...], layout: Layout) -> list[PipeDefect]:
    section = sections[layout.ck_section]
    measured = {"offset_m": layout.ck_offset_m, "offset_ratio_of_wall": layout.ck_offset_m / WALL_M}
    records = []
    for defect_id, s_joint in (("D04", section.s_start_m), ("D05", section.s_end_m)):
        position = wall_point(sections, s_joint, 3.0)
        records.append(
            _record(
                sections,
                (defect_id, "CK", 2),
                (s_joint, s_joint),
                (3.0, 12.0),
                measured,
                "joint offset: section displaced towards 3 o'clock (错口)",
                position,
            )
        )
    return records


def _tj_gap(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    section = sections[layout.tj_section]
    s_range = (section.s_end_m - layout.tj_gap_m, section.s_end_m)
    frame = frame_at(sections, (s_range[0] + s_range[1]) / 2.0)
    link = _defect_link(model, "D06", frame)
    soil = RingWall(Bore.circle(RADIUS_M + WALL_M), 0.1, STAVES, 0.3)
    add_ring_wall(link, soil, Pose(), Surface(SOIL))
    measured = {"gap_mm": layout.tj_gap_m * 1000.0}
    return _record(
        sections,
        ("D06", "TJ", 3),
        s_range,
        (12.0, 12.0),
        measured,
        "separated joint, soil visible in the gap (脱节)",
    )


def _sl_leak(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    arc = (2.0, 1.5)
    _wall_layer(model, sections, "D07", layout.sl_s, arc, (0.002, 0.003, _patch("leakage")))
    return _record(
        sections,
        ("D07", "SL", 2),
        layout.sl_s,
        arc,
        {},
        "line leak running down from 2 o'clock (线漏)",
    )


def _ramp_box(
    link: ET.Element,
    name: str,
    top_from: tuple[float, float],
    top_to: tuple[float, float],
    width_m: float,
    surface: Surface,
) -> None:
    """A box whose top face runs between two (x, z) points, 0.2 m thick."""
    (x0, z0), (x1, z1) = top_from, top_to
    length = math.hypot(x1 - x0, z1 - z0)
    pitch = -math.atan2(z1 - z0, x1 - x0)
    rotation = Pose(rot=rot_y(pitch))
    centre = vadd(((x0 + x1) / 2.0, 0.0, (z0 + z1) / 2.0), rotation.rotate((0.0, 0.0, -0.1)))
    add_box(link, name, (length, width_m, 0.2), Pose(centre, rotation.rot), surface)


def _cj_sediment(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    s0, s1 = layout.cj_s
    frame = frame_at(sections, (s0 + s1) / 2.0)
    link = _defect_link(model, "D08", frame)
    surface = Surface(_textured("sediment", 1.0))
    top_z = -RADIUS_M + layout.cj_depth_m
    half_chord = math.sqrt(RADIUS_M * RADIUS_M - top_z * top_z)
    width = 2.0 * half_chord + 0.02
    flat = (s1 - s0) / 2.0 - layout.cj_ramp_m
    bottom_z = -RADIUS_M - 0.1
    add_box(
        link,
        "flat",
        (2.0 * flat, width, top_z - bottom_z),
        Pose((0.0, 0.0, (top_z + bottom_z) / 2.0)),
        surface,
    )
    half = (s1 - s0) / 2.0
    _ramp_box(link, "ramp_up", (-half, -RADIUS_M), (-flat, top_z), width, surface)
    _ramp_box(link, "ramp_down", (flat, top_z), (half, -RADIUS_M), width, surface)
    arc_h = rad_to_clock(2.0 * math.acos(-top_z / RADIUS_M))
    measured = {
        "depth_m": layout.cj_depth_m,
        "depth_pct_of_d": layout.cj_depth_m / (2.0 * RADIUS_M) * 100.0,
    }
    position = frame.apply((0.0, 0.0, top_z))
    return _record(
        sections,
        ("D08", "CJ", 1),
        layout.cj_s,
        (6.0, arc_h),
        measured,
        "silt bank on the invert, 1 m ramps at both ends (沉积)",
        position,
    )


def _sg_roots(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    s0, s1 = layout.sg_s
    frame = frame_at(sections, (s0 + s1) / 2.0)
    link = _defect_link(model, "D09", frame)
    bottom = layout.sg_bottom_z_m
    half_chord = math.sqrt(RADIUS_M * RADIUS_M - bottom * bottom)
    top = RADIUS_M + WALL_M / 2.0
    size: Vec3 = (s1 - s0, 2.0 * half_chord + 0.02, top - bottom)
    add_box(
        link,
        "root_mass",
        size,
        Pose((0.0, 0.0, (top + bottom) / 2.0)),
        Surface(_textured("roots", 1.0)),
    )
    area = _circle_area_below(RADIUS_M - bottom)
    measured = {
        "area_loss_pct": area / (math.pi * RADIUS_M * RADIUS_M) * 100.0,
        "hang_depth_m": RADIUS_M - bottom,
    }
    arc_h = rad_to_clock(2.0 * math.acos(bottom / RADIUS_M))
    position = frame.apply((0.0, 0.0, bottom))
    return _record(
        sections,
        ("D09", "SG", 2),
        layout.sg_s,
        (12.0, arc_h),
        measured,
        "root mass hanging from the crown at a joint (树根)",
        position,
    )


def _zw_obstacle(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    s0, s1 = layout.zw_s
    frame = frame_at(sections, (s0 + s1) / 2.0)
    link = _defect_link(model, "D10", frame)
    y0, y1, z0, z1 = layout.zw_box_yz_m
    rubble = Material((0.42, 0.4, 0.37, 1.0), roughness=1.0)
    add_box(
        link,
        "rubble",
        (s1 - s0, y1 - y0, z1 - z0),
        Pose((0.0, (y0 + y1) / 2.0, (z0 + z1) / 2.0)),
        Surface(rubble),
    )
    area = disc_rect_area(RADIUS_M, (y0, y1), (z0, z1))
    low = math.atan2(-y1, -math.sqrt(RADIUS_M * RADIUS_M - y1 * y1))  # wall meets inner face
    high = math.atan2(math.sqrt(RADIUS_M * RADIUS_M - z1 * z1), z1)  # wall meets top face
    clock_from, clock_to = rad_to_clock(high), rad_to_clock(low % (2.0 * math.pi))
    measured = {"area_loss_pct": area / (math.pi * RADIUS_M * RADIUS_M) * 100.0}
    arc = ((clock_from + clock_to) / 2.0, clock_to - clock_from)
    position = frame.apply((0.0, y1, (max(z0, -math.sqrt(RADIUS_M**2 - y1 * y1)) + z1) / 2.0))
    return _record(
        sections,
        ("D10", "ZW", 1),
        layout.zw_s,
        arc,
        measured,
        "concrete rubble lodged against the wall (障碍物)",
        position,
    )


def _jg_scale(model: ET.Element, sections: tuple[Section, ...], layout: Layout) -> PipeDefect:
    arc = (9.0, 2.5)
    surface = Surface(_textured("scale", 0.8))
    _wall_layer(model, sections, "D11", layout.jg_s, arc, (0.0, layout.jg_thickness_m, surface))
    r_in = RADIUS_M - layout.jg_thickness_m
    area = (arc[1] / 12.0 * 2.0 * math.pi) * (RADIUS_M * RADIUS_M - r_in * r_in) / 2.0
    measured = {
        "thickness_m": layout.jg_thickness_m,
        "area_loss_pct": area / (math.pi * RADIUS_M * RADIUS_M) * 100.0,
    }
    return _record(
        sections,
        ("D11", "JG", 1),
        layout.jg_s,
        arc,
        measured,
        "hard mineral scale on the left wall (结垢)",
    )


def _aj_hidden_lateral(
    model: ET.Element, sections: tuple[Section, ...], layout: Layout
) -> PipeDefect:
    s0, s1 = layout.aj_s
    clock_h = layout.aj_stave * 12.0 / STAVES
    frame = frame_at(sections, (s0 + s1) / 2.0)
    phi = clock_h / 12.0 * 2.0 * math.pi
    # Stub frame: x along the stub, pointing out of the pipe through the clock position.
    stub_rot = Pose.from_xyz_rpy(0.0, 0.0, 0.0, phi).compose(Pose(rot=rot_y(-math.pi / 2.0)))
    link = _defect_link(model, "D12", frame)
    tip_m = RADIUS_M - layout.aj_intrusion_m
    end_m = RADIUS_M + WALL_M + 0.03
    stub = RingWall(Bore.circle(layout.aj_inner_radius_m), layout.aj_wall_m, 8, end_m - tip_m)
    add_ring_wall(
        link,
        stub,
        stub_rot.compose(translation((tip_m + end_m) / 2.0, 0.0, 0.0)),
        Surface(CONCRETE),
    )
    cap = stub_rot.compose(translation(end_m + 0.01, 0.0, 0.0))
    add_box(link, "cap", (0.02, 0.4, 0.4), cap, Surface(SOIL))
    measured = {
        "intrusion_m": layout.aj_intrusion_m,
        "intrusion_pct_of_d": layout.aj_intrusion_m / (2.0 * RADIUS_M) * 100.0,
    }
    arc_h = rad_to_clock(2.0 * math.atan2(layout.aj_inner_radius_m + layout.aj_wall_m, RADIUS_M))
    position = frame.apply(vscale((0.0, *clock_point(1.0, clock_h)), tip_m))
    return _record(
        sections,
        ("D12", "AJ", 2),
        layout.aj_s,
        (clock_h, arc_h),
        measured,
        "DN150 lateral broken in, protruding into the bore (支管暗接)",
        position,
    )
