"""Assembly of the 'sewer_dn1000' world: pipe, lateral, manholes, robot and ground truth."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from sim_worlds.worldgen.crawler import crawler_model
from sim_worlds.worldgen.geometry import Pose, Vec3, rot_z, rounded, rounded_vec, translation
from sim_worlds.worldgen.rings import (
    Bore,
    Plate,
    RingWall,
    add_plate_with_opening,
    add_ring_wall,
    bore_polygon,
)
from sim_worlds.worldgen.scene import CONCRETE, SOIL, add_daylight, new_world
from sim_worlds.worldgen.sdf import Surface, add_box, add_link, static_model
from sim_worlds.worldgen.sewer import (
    BEND_FIRST_SECTION,
    CHAMBER_HALF_M,
    CHAMBER_WALL_M,
    INVERT_A_Z_M,
    LAYOUT,
    NECK_DEPTH_M,
    NECK_HALF_M,
    NECK_WALL_M,
    ORIGIN,
    RADIUS_M,
    ROOF_M,
    SECTION_M,
    SLOPE,
    SPAWN_CLEARANCE_M,
    STAVES,
    WALL_M,
    WATER_DEPTH_M,
    WORLD_NAME,
    Section,
    add_defects,
    add_pipe,
    build_sections,
    frame_at,
    invert_point,
    ring_pieces,
    wall_point,
)
from sim_worlds.worldgen.truth import (
    SCHEMA_VERSION,
    Box3,
    PipeFeature,
    PipeTruth,
    RobotStart,
    Route,
    SiteType,
    SkyZone,
    WorldTruth,
)

GROUND_Z_M = 0.0
LATERAL_RADIUS_M = 0.15
LATERAL_WALL_M = 0.05
LATERAL_LENGTH_M = 3.0
LATERAL_STAVES = 12
_CONCRETE_SURFACE = Surface(CONCRETE)


def add_lateral(model: ET.Element, sections: tuple[Section, ...]) -> PipeFeature:
    """A DN300 lateral joining at 3 o'clock, with a collar that closes the hole's corners."""
    s0, s1 = LAYOUT.lateral_s
    s_mid = (s0 + s1) / 2.0
    frame = frame_at(sections, s_mid).compose(Pose(rot=rot_z(-math.pi / 2.0)))
    link = add_link(model, "lateral_L1", frame)
    start = RADIUS_M
    ring = RingWall(Bore.circle(LATERAL_RADIUS_M), LATERAL_WALL_M, LATERAL_STAVES, LATERAL_LENGTH_M)
    add_ring_wall(
        link, ring, translation(start + LATERAL_LENGTH_M / 2.0, 0.0, 0.0), _CONCRETE_SURFACE
    )
    inner = bore_polygon(Bore.circle(LATERAL_RADIUS_M), LATERAL_STAVES)
    outer = bore_polygon(Bore.circle(LATERAL_RADIUS_M + LATERAL_WALL_M), LATERAL_STAVES)
    collar = Plate(RADIUS_M + WALL_M + 0.02, 0.02, (-0.3, 0.3), (-0.3, 0.3))
    add_plate_with_opening(link, "collar", collar, inner, outer, Pose(), _CONCRETE_SURFACE, 0.025)
    cap = translation(start + LATERAL_LENGTH_M + 0.01, 0.0, 0.0)
    add_box(link, "end_cap", (0.02, 0.5, 0.5), cap, Surface(SOIL))
    return PipeFeature(
        id="L1",
        kind="lateral_connection",
        distance_m=rounded(s0, 3),
        clock_h=3.0,
        position_m=rounded_vec(wall_point(sections, s_mid, 3.0), 3),
        description="DN300 concrete lateral, proper connection (not a defect)",
    )


def _inscribed_half(half_m: float, yaw_rad: float) -> float:
    """Half size of the largest axis-aligned square inside a square rotated by yaw."""
    return half_m / (abs(math.cos(yaw_rad)) + abs(math.sin(yaw_rad)))


def add_manhole(
    world: ET.Element, name: str, floor_centre_m: Vec3, yaw_rad: float, pipe_side: float
) -> SkyZone:
    """A square chamber with a neck to the surface; the pipe enters on local +x or -x."""
    model = static_model(world, name, Pose(floor_centre_m, rot_z(yaw_rad)))
    link = add_link(model, "chamber")
    depth = GROUND_Z_M - floor_centre_m[2]
    wall_top = depth - NECK_DEPTH_M - ROOF_M
    outer = CHAMBER_HALF_M + CHAMBER_WALL_M
    mid_wall = CHAMBER_HALF_M + CHAMBER_WALL_M / 2.0
    add_box(
        link, "floor", (2 * outer, 2 * outer, 0.2), translation(0.0, 0.0, -0.1), _CONCRETE_SURFACE
    )
    for sign in (-1.0, 1.0):
        size: Vec3 = (2 * CHAMBER_HALF_M, CHAMBER_WALL_M, wall_top)
        add_box(
            link,
            f"side_{int(sign):+d}",
            size,
            translation(0.0, sign * mid_wall, wall_top / 2.0),
            _CONCRETE_SURFACE,
        )
    back = translation(-pipe_side * mid_wall, 0.0, wall_top / 2.0)
    add_box(link, "back", (CHAMBER_WALL_M, 2 * outer, wall_top), back, _CONCRETE_SURFACE)
    axis = Bore(RADIUS_M, RADIUS_M, (0.0, RADIUS_M))
    plate = Plate(pipe_side * mid_wall, CHAMBER_WALL_M, (-outer, outer), (0.0, wall_top))
    inner_poly = bore_polygon(axis, STAVES)
    outer_poly = bore_polygon(axis.grown(WALL_M), STAVES)
    add_plate_with_opening(
        link, "pipe_wall", plate, inner_poly, outer_poly, Pose(), _CONCRETE_SURFACE
    )
    _add_roof_and_neck(link, wall_top, depth, outer)
    top = (floor_centre_m[0], floor_centre_m[1], GROUND_Z_M + 1.0)
    add_daylight(world, f"{name}_daylight", top, NECK_HALF_M, depth + 1.0)
    half = _inscribed_half(NECK_HALF_M, yaw_rad)
    x, y, z = floor_centre_m
    return SkyZone(
        f"{name}_sky",
        "manhole_neck",
        Box3(
            rounded_vec((x - half, y - half, z), 3),
            rounded_vec((x + half, y + half, GROUND_Z_M), 3),
        ),
    )


def _add_roof_and_neck(link: ET.Element, wall_top: float, depth: float, outer: float) -> None:
    roof_z = wall_top + ROOF_M / 2.0
    band = outer - NECK_HALF_M
    for sign in (-1.0, 1.0):
        y_mid = sign * (NECK_HALF_M + band / 2.0)
        add_box(
            link,
            f"roof_y{int(sign):+d}",
            (2 * outer, band, ROOF_M),
            translation(0.0, y_mid, roof_z),
            _CONCRETE_SURFACE,
        )
        add_box(
            link,
            f"roof_x{int(sign):+d}",
            (band, 2 * NECK_HALF_M, ROOF_M),
            translation(y_mid, 0.0, roof_z),
            _CONCRETE_SURFACE,
        )
    neck_bottom = wall_top + ROOF_M
    neck_h = depth - neck_bottom
    neck_z = neck_bottom + neck_h / 2.0
    mid = NECK_HALF_M + NECK_WALL_M / 2.0
    for sign in (-1.0, 1.0):
        size_y: Vec3 = (2 * (NECK_HALF_M + NECK_WALL_M), NECK_WALL_M, neck_h)
        add_box(
            link,
            f"neck_y{int(sign):+d}",
            size_y,
            translation(0.0, sign * mid, neck_z),
            _CONCRETE_SURFACE,
        )
        size_x: Vec3 = (NECK_WALL_M, 2 * NECK_HALF_M, neck_h)
        add_box(
            link,
            f"neck_x{int(sign):+d}",
            size_x,
            translation(sign * mid, 0.0, neck_z),
            _CONCRETE_SURFACE,
        )


def _route(sections: tuple[Section, ...], chamber_b: Vec3) -> Route:
    points: list[Vec3] = [(0.0, 0.0, INVERT_A_Z_M), invert_point(sections, 0.0)]
    for section in sections[1:]:
        if section.turn_in_rad != 0.0 or section.index % 10 == 0:
            points.append(invert_point(sections, section.s_start_m))
    points.append(invert_point(sections, sections[-1].s_end_m))
    points.append(chamber_b)
    return Route("floor", tuple(rounded_vec(p, 3) for p in points))


def _chamber_b_floor(sections: tuple[Section, ...]) -> tuple[Vec3, float]:
    last = sections[-1]
    end_invert = invert_point(sections, last.s_end_m)
    heading = last.heading_rad
    x = end_invert[0] + CHAMBER_HALF_M * math.cos(heading)
    y = end_invert[1] + CHAMBER_HALF_M * math.sin(heading)
    return (x, y, end_invert[2]), heading


def _manhole_feature(ident: str, distance_m: float, position: Vec3, text: str) -> PipeFeature:
    return PipeFeature(
        ident, "manhole", rounded(distance_m, 3), 12.0, rounded_vec(position, 3), text
    )


def build_sewer_world() -> tuple[ET.Element, WorldTruth]:
    """The SDF document and ground truth of the sewer world."""
    sections = build_sections()
    root, world = new_world(WORLD_NAME, ORIGIN)
    model = static_model(world, "sewer_pipe")
    add_pipe(model, ring_pieces(sections))
    defects = add_defects(model, sections)
    lateral = add_lateral(model, sections)
    chamber_b, heading_b = _chamber_b_floor(sections)
    sky_a = add_manhole(world, "manhole_A", (0.0, 0.0, INVERT_A_Z_M), 0.0, 1.0)
    sky_b = add_manhole(world, "manhole_B", chamber_b, heading_b, -1.0)
    start = RobotStart(0.0, 0.0, INVERT_A_Z_M + SPAWN_CLEARANCE_M, 0.0)
    world.append(crawler_model(Pose((start.x_m, start.y_m, start.z_m), rot_z(start.yaw_rad))))
    length = sections[-1].s_end_m
    route = _route(sections, chamber_b)
    bend_start = sections[BEND_FIRST_SECTION].s_start_m
    features = (
        _manhole_feature(
            "MH-A", 0.0, (0.0, 0.0, INVERT_A_Z_M), "start manhole, 1.2 m square chamber"
        ),
        lateral,
        PipeFeature(
            "BEND",
            "bend",
            rounded(bend_start, 3),
            12.0,
            rounded_vec(wall_point(sections, bend_start, 12.0), 3),
            "20 deg left bend over 20 m, 2 deg per joint",
        ),
        _manhole_feature("MH-B", length, chamber_b, "end manhole, 1.2 m square chamber"),
    )
    pipe = PipeTruth(
        segment_id="MH-A/MH-B",
        material="reinforced concrete",
        inner_diameter_m=2.0 * RADIUS_M,
        wall_thickness_m=WALL_M,
        length_m=rounded(length, 3),
        section_length_m=SECTION_M,
        slope=SLOPE,
        water_depth_m=WATER_DEPTH_M,
        staves_per_ring=STAVES,
        distance_datum="pipe axis, from the inner wall of manhole A (pipe entrance)",
        datum_route_distance_m=rounded(math.dist(route.waypoints_m[0], route.waypoints_m[1]), 3),
        features=features,
        defects=tuple(defects),
    )
    truth = WorldTruth(
        schema_version=SCHEMA_VERSION,
        world=WORLD_NAME,
        site_type=SiteType.PIPE,
        sdf_file=f"{WORLD_NAME}.sdf",
        geodetic_origin=ORIGIN,
        robot_start=start,
        route=route,
        sky_zones=(sky_a, sky_b),
        pipe=pipe,
        notes=(
            "Site origin: ground level above the centre of manhole A; z up.",
            "Clock positions looking downstream (from MH-A towards MH-B).",
            "CJJ 181 grade bands are from DEFECT_STANDARDS.md and are unverified against the PDF.",
        ),
    )
    return root, truth
