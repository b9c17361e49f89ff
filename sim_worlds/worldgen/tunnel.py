"""World 'utility_tunnel': a 600 m 综合管廊 gallery with a T branch, fire doors, open shafts,
5G antennas, cable trays and a water main on supports, wall defects, floor water and a gas zone.

Site frame: x along the main gallery from its west end wall, y to the left (north), z = 0 on
the gallery floor. The branch leaves the right-hand (south) wall at x = 300 m.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sim_worlds.worldgen.crawler import crawler_model
from sim_worlds.worldgen.geometry import Pose, Vec2, Vec3, rot_y, rot_z, rounded, rounded_vec
from sim_worlds.worldgen.scene import (
    ANTENNA_WHITE,
    CONCRETE,
    FIRE_DOOR_RED,
    GALVANISED,
    STEEL,
    WATER,
    WATER_TRANSPARENCY,
    add_daylight,
    new_world,
)
from sim_worlds.worldgen.sdf import Material, Surface, add_box, add_cylinder, add_link, static_model
from sim_worlds.worldgen.textures import CRACK_VARIANTS, texture_path
from sim_worlds.worldgen.truth import (
    SCHEMA_VERSION,
    Antenna,
    Box3,
    FireDoor,
    Gallery,
    GasZone,
    GeodeticOrigin,
    RobotStart,
    Route,
    Shaft,
    SiteType,
    SkyZone,
    SurfaceFeature,
    TunnelTruth,
    WorldTruth,
)

WORLD_NAME = "utility_tunnel"
ORIGIN = GeodeticOrigin("CGCS2000", 22.5431, 114.0579, 2.0, 90.0)  # Shenzhen, gallery floor

LENGTH_M = 600.0
HALF_WIDTH_M = 1.6
HEIGHT_M = 3.5
WALL_M = 0.3
GROUND_Z_M = 6.0
TILE_M = 25.0
BRANCH_X_M = 300.0
BRANCH_LENGTH_M = 50.0
FIRE_DOOR_XS_M = (200.0, 400.0)
DOORWAY_HALF_WIDTH_M = 0.6
DOORWAY_HEIGHT_M = 2.1
ANTENNA_SPACING_M = 50.0
ANTENNA_SIZE_M: Vec3 = (0.2, 0.2, 0.1)
SUPPORT_SPACING_M = 3.0
TRAY_LEVELS_M = (1.4, 2.0, 2.6)
TRAY_Y_M = (1.15, 1.6)
PIPE_RADIUS_M = 0.15
PIPE_CENTRE_YZ_M: Vec2 = (1.35, 0.5)
SPAWN_CLEARANCE_M = 0.02
PATCH_M = 0.003


@dataclass(frozen=True)
class ShaftSpec:
    """A rectangular ceiling opening running up to the ground."""

    ident: str
    kind: str
    x_range_m: Vec2
    y_range_m: Vec2 = (-1.0, 1.0)


SHAFTS = (
    ShaftSpec("SH1", "ventilation", (99.0, 101.0)),
    ShaftSpec("SH2", "hoist", (348.5, 351.5)),
    ShaftSpec("SH3", "ventilation", (549.0, 551.0)),
)

_CONCRETE = Surface(CONCRETE)


def tiles(start_m: float, end_m: float, tile_m: float = TILE_M) -> list[Vec2]:
    """Split a span into pieces no longer than tile_m."""
    count = max(1, math.ceil((end_m - start_m) / tile_m - 1e-9))
    step = (end_m - start_m) / count
    return [(start_m + i * step, start_m + (i + 1) * step) for i in range(count)]


def subtract(span: Vec2, holes: list[Vec2]) -> list[Vec2]:
    """The parts of a span not covered by the holes."""
    parts = [span]
    for h0, h1 in sorted(holes):
        next_parts = []
        for a, b in parts:
            if h1 <= a or h0 >= b:
                next_parts.append((a, b))
                continue
            if h0 > a:
                next_parts.append((a, h0))
            if h1 < b:
                next_parts.append((h1, b))
        parts = next_parts
    return parts


def _slab(
    link: ET.Element, name: str, x: Vec2, y: Vec2, z: Vec2, surface: Surface = _CONCRETE
) -> None:
    """An axis-aligned box from ranges."""
    size: Vec3 = (x[1] - x[0], y[1] - y[0], z[1] - z[0])
    centre = Pose(((x[0] + x[1]) / 2.0, (y[0] + y[1]) / 2.0, (z[0] + z[1]) / 2.0))
    add_box(link, name, size, centre, surface)


def _along_x(
    link: ET.Element, name: str, x: Vec2, y: Vec2, z: Vec2, holes: list[Vec2] | None = None
) -> None:
    for i, (a, b) in enumerate(p for part in subtract(x, holes or []) for p in tiles(*part)):
        _slab(link, f"{name}_{i:02d}", (a, b), y, z)


def _along_y(link: ET.Element, name: str, x: Vec2, y: Vec2, z: Vec2) -> None:
    for i, (a, b) in enumerate(tiles(*y)):
        _slab(link, f"{name}_{i:02d}", x, (a, b), z)


def add_structure(world: ET.Element) -> None:
    """Floors, walls, ceilings, end walls and shafts of both galleries."""
    model = static_model(world, "gallery")
    link = add_link(model, "structure")
    outer = HALF_WIDTH_M + WALL_M
    x_all = (-WALL_M, LENGTH_M + WALL_M)
    branch_x = (BRANCH_X_M - HALF_WIDTH_M, BRANCH_X_M + HALF_WIDTH_M)
    branch_outer_x = (branch_x[0] - WALL_M, branch_x[1] + WALL_M)
    branch_y = (-HALF_WIDTH_M - BRANCH_LENGTH_M, -HALF_WIDTH_M)
    floor_z, wall_z, roof_z = (-WALL_M, 0.0), (0.0, HEIGHT_M), (HEIGHT_M, HEIGHT_M + WALL_M)
    _along_x(link, "floor", x_all, (-outer, outer), floor_z)
    _along_y(link, "branch_floor", branch_outer_x, (branch_y[0] - WALL_M, -outer), floor_z)
    shaft_holes = [s.x_range_m for s in SHAFTS]
    _along_x(link, "ceiling", x_all, (-outer, outer), roof_z, shaft_holes)
    for shaft in SHAFTS:
        _slab(
            link, f"{shaft.ident}_ceiling_r", shaft.x_range_m, (-outer, shaft.y_range_m[0]), roof_z
        )
        _slab(
            link, f"{shaft.ident}_ceiling_l", shaft.x_range_m, (shaft.y_range_m[1], outer), roof_z
        )
        _add_shaft_walls(link, shaft)
    _along_y(link, "branch_ceiling", branch_outer_x, (branch_y[0] - WALL_M, -outer), roof_z)
    _along_x(link, "wall_left", x_all, (HALF_WIDTH_M, outer), wall_z)
    _along_x(link, "wall_right", x_all, (-outer, -HALF_WIDTH_M), wall_z, [branch_x])
    _slab(link, "end_west", (-WALL_M, 0.0), (-HALF_WIDTH_M, HALF_WIDTH_M), wall_z)
    _slab(link, "end_east", (LENGTH_M, LENGTH_M + WALL_M), (-HALF_WIDTH_M, HALF_WIDTH_M), wall_z)
    _along_y(
        link,
        "branch_wall_west",
        (branch_outer_x[0], branch_x[0]),
        (branch_y[0] - WALL_M, -HALF_WIDTH_M),
        wall_z,
    )
    _along_y(
        link,
        "branch_wall_east",
        (branch_x[1], branch_outer_x[1]),
        (branch_y[0] - WALL_M, -HALF_WIDTH_M),
        wall_z,
    )
    _slab(link, "branch_end", branch_x, (branch_y[0] - WALL_M, branch_y[0]), wall_z)


def _add_shaft_walls(link: ET.Element, shaft: ShaftSpec) -> None:
    (x0, x1), (y0, y1) = shaft.x_range_m, shaft.y_range_m
    z = (HEIGHT_M + WALL_M, GROUND_Z_M)
    name = shaft.ident
    _slab(link, f"{name}_wall_r", (x0 - WALL_M, x1 + WALL_M), (y0 - WALL_M, y0), z)
    _slab(link, f"{name}_wall_l", (x0 - WALL_M, x1 + WALL_M), (y1, y1 + WALL_M), z)
    _slab(link, f"{name}_wall_w", (x0 - WALL_M, x0), (y0, y1), z)
    _slab(link, f"{name}_wall_e", (x1, x1 + WALL_M), (y0, y1), z)


def add_fire_doors(world: ET.Element) -> list[FireDoor]:
    """Fire walls with an open doorway and the door leaf swung open against the wall."""
    doors = []
    for index, x in enumerate(FIRE_DOOR_XS_M, start=1):
        ident = f"FD{index}"
        model = static_model(world, f"fire_wall_{ident}")
        link = add_link(model, "wall")
        wx = (x - 0.15, x + 0.15)
        half = DOORWAY_HALF_WIDTH_M
        _slab(link, "right", wx, (-HALF_WIDTH_M, -half), (0.0, HEIGHT_M))
        _slab(link, "left", wx, (half, HALF_WIDTH_M), (0.0, HEIGHT_M))
        _slab(link, "lintel", wx, (-half, half), (DOORWAY_HEIGHT_M, HEIGHT_M))
        leaf = (wx[1], wx[1] + 2.0 * half)
        _slab(
            link,
            "door_leaf",
            leaf,
            (-half - 0.05, -half),
            (0.01, DOORWAY_HEIGHT_M - 0.02),
            Surface(FIRE_DOOR_RED),
        )
        doors.append(FireDoor(ident, (x, 0.0, 0.0), 2.0 * half, DOORWAY_HEIGHT_M))
    return doors


def add_antennas(world: ET.Element) -> list[Antenna]:
    """5G indoor antennas on the ceiling centreline every 50 m."""
    model = static_model(world, "antennas_5g")
    link = add_link(model, "heads")
    antennas = []
    count = int(LENGTH_M // ANTENNA_SPACING_M)
    for k in range(count):
        x = ANTENNA_SPACING_M / 2.0 + k * ANTENNA_SPACING_M
        centre: Vec3 = (x, 0.0, HEIGHT_M - ANTENNA_SIZE_M[2] / 2.0)
        add_box(link, f"ant_{k + 1:02d}", ANTENNA_SIZE_M, Pose(centre), Surface(ANTENNA_WHITE))
        antennas.append(Antenna(f"5G-{k + 1:02d}", "main", rounded_vec(centre, 3)))
    return antennas


def add_services(world: ET.Element) -> None:
    """Cable trays on three levels and a DN300 water main, on supports along the left wall."""
    model = static_model(world, "services")
    link = add_link(model, "trays_and_pipe")
    tray_y = TRAY_Y_M
    steel = Surface(GALVANISED)
    for level_index, z in enumerate(TRAY_LEVELS_M):
        for i, (a, b) in enumerate(tiles(0.5, LENGTH_M - 0.5)):
            _slab(link, f"tray{level_index}_{i:02d}", (a, b), tray_y, (z, z + 0.1), steel)
    pipe_y, pipe_z = PIPE_CENTRE_YZ_M
    for i, (a, b) in enumerate(tiles(0.5, LENGTH_M - 0.5)):
        pose = Pose(((a + b) / 2.0, pipe_y, pipe_z), rot_y(math.pi / 2.0))
        add_cylinder(link, f"pipe_{i:02d}", PIPE_RADIUS_M, b - a, pose, Surface(STEEL))
    count = int(LENGTH_M // SUPPORT_SPACING_M)
    for k in range(count):
        x = SUPPORT_SPACING_M / 2.0 + k * SUPPORT_SPACING_M
        _slab(link, f"post_{k:03d}", (x - 0.03, x + 0.03), (1.54, HALF_WIDTH_M), (0.0, 2.9), steel)
        for level_index, z in enumerate(TRAY_LEVELS_M):
            _slab(
                link,
                f"arm_{k:03d}_{level_index}",
                (x - 0.025, x + 0.025),
                tray_y,
                (z - 0.05, z),
                steel,
            )
        saddle_top = pipe_z - PIPE_RADIUS_M
        _slab(
            link,
            f"saddle_{k:03d}",
            (x - 0.05, x + 0.05),
            (pipe_y - 0.15, pipe_y + 0.15),
            (0.0, saddle_top),
            steel,
        )


@dataclass(frozen=True)
class PatchSpec:
    """A textured patch: which surface, its centre, size along the surface and texture."""

    ident: str
    kind: str
    surface: str
    centre_m: Vec3
    size_m: Vec2
    texture: str
    measured: tuple[tuple[str, float], ...]
    vertical_texture: bool = False


WALL_FACE_Y_M = -HALF_WIDTH_M
# Each crack has its own texture (CR1 the worlds' common ``crack``), as each crack on a site has
# its own course: a detector trained on the others' looks has not seen CR1's.
PATCHES = (
    PatchSpec(
        "CR1",
        "crack",
        "right_wall",
        (63.0, WALL_FACE_Y_M, 1.8),
        (0.3, 1.4),
        "crack",
        (("length_m", 1.4), ("width_mm", 0.4)),
        True,
    ),
    PatchSpec(
        "CR2",
        "crack",
        "right_wall",
        (188.0, WALL_FACE_Y_M, 1.2),
        (2.0, 0.3),
        CRACK_VARIANTS[0],
        (("length_m", 2.0), ("width_mm", 1.2)),
    ),
    PatchSpec(
        "CR3",
        "crack",
        "right_wall",
        (337.5, WALL_FACE_Y_M, 1.7),
        (0.3, 1.8),
        CRACK_VARIANTS[1],
        (("length_m", 1.8), ("width_mm", 2.0)),
        True,
    ),
    PatchSpec(
        "CR4",
        "crack",
        "ceiling",
        (472.0, 0.0, HEIGHT_M),
        (0.3, 2.4),
        CRACK_VARIANTS[2],
        (("length_m", 2.4), ("width_mm", 0.8)),
        True,
    ),
    PatchSpec(
        "CR5",
        "crack",
        "branch_wall_west",
        (BRANCH_X_M - HALF_WIDTH_M, -30.0, 1.5),
        (0.3, 1.6),
        CRACK_VARIANTS[3],
        (("length_m", 1.6), ("width_mm", 0.6)),
        True,
    ),
    PatchSpec(
        "SP1",
        "seepage",
        "right_wall",
        (121.0, WALL_FACE_Y_M, 2.2),
        (1.2, 1.6),
        "seepage",
        (("area_m2", 1.92),),
    ),
    PatchSpec(
        "SP2",
        "seepage",
        "ceiling",
        (455.0, 0.0, HEIGHT_M),
        (2.0, 1.5),
        "seepage",
        (("area_m2", 3.0),),
    ),
    PatchSpec(
        "SP3",
        "seepage",
        "right_wall",
        (512.0, WALL_FACE_Y_M, 1.8),
        (1.0, 2.0),
        "seepage",
        (("area_m2", 2.0),),
    ),
    PatchSpec(
        "SP4",
        "seepage",
        "branch_end_wall",
        (BRANCH_X_M, -HALF_WIDTH_M - BRANCH_LENGTH_M, 1.6),
        (1.5, 1.5),
        "seepage",
        (("area_m2", 2.25),),
    ),
)

# (ident, centre x, centre y, size x, size y, depth). Beyond the main gallery's first 150 m
# (held out from training, see perception.synthetic.render), standing water comes in several
# sizes and places, as on a site: under a seepage (W6 below SP3, as W1 lies below SP1), along
# either wall, small puddles and wide pools.
FLOOR_WATER = (
    ("W1", 121.5, -1.0, 3.0, 1.2, 0.01),
    ("W2", 455.0, 0.0, 6.0, 2.2, 0.02),
    ("W3", BRANCH_X_M, -49.0, 3.0, 4.0, 0.03),
    ("W4", 172.0, -1.0, 2.5, 1.2, 0.01),
    ("W5", 246.0, 0.9, 1.6, 1.0, 0.01),
    ("W6", 512.5, -1.0, 3.0, 1.1, 0.015),
    ("W7", 352.0, -0.5, 1.2, 0.8, 0.01),
    ("W8", 565.0, 0.2, 4.0, 2.0, 0.02),
    ("W9", BRANCH_X_M, -18.0, 2.0, 1.4, 0.01),
)


def _patch_pose(spec: PatchSpec) -> tuple[Pose, Vec3]:
    """Pose and box size of a patch just in front of its surface (texture u along the long side)."""
    x, y, z = spec.centre_m
    width, height = spec.size_m
    if spec.surface == "ceiling":
        centre: Vec3 = (x, y, z - PATCH_M / 2.0 - 0.001)
        yaw = math.pi / 2.0 if spec.vertical_texture else 0.0
        size: Vec3 = (height, width, PATCH_M) if spec.vertical_texture else (width, height, PATCH_M)
        return Pose(centre, rot_z(yaw)), size
    if spec.surface == "branch_wall_west":
        base = Pose((x + PATCH_M / 2.0 + 0.001, y, z), rot_z(math.pi / 2.0))
    elif spec.surface == "branch_end_wall":
        base = Pose((x, y + PATCH_M / 2.0 + 0.001, z))
    else:
        base = Pose((x, y + PATCH_M / 2.0 + 0.001, z))
    if spec.vertical_texture:
        return base.compose(Pose(rot=rot_y(math.pi / 2.0))), (height, PATCH_M, width)
    return base, (width, PATCH_M, height)


def add_surface_features(world: ET.Element) -> list[SurfaceFeature]:
    """Crack and seepage patches on walls and ceiling, and standing water on the floor."""
    model = static_model(world, "surface_features")
    link = add_link(model, "patches")
    features = []
    for spec in PATCHES:
        pose, size = _patch_pose(spec)
        material = Material((1.0, 1.0, 1.0, 1.0), albedo_map=texture_path(spec.texture))
        add_box(link, spec.ident, size, pose, Surface(material, collision=False))
        features.append(
            SurfaceFeature(
                spec.ident,
                spec.kind,
                spec.surface,
                rounded_vec(spec.centre_m, 3),
                spec.size_m,
                dict(spec.measured),
            )
        )
    water = Surface(WATER, collision=False, transparency=WATER_TRANSPARENCY)
    for ident, x, y, sx, sy, depth in FLOOR_WATER:
        add_box(link, ident, (sx, sy, depth), Pose((x, y, depth / 2.0)), water)
        measured = {"depth_m": depth, "area_m2": rounded(sx * sy, 3)}
        features.append(
            SurfaceFeature(ident, "floor_water", "floor", (x, y, 0.0), (sx, sy), measured)
        )
    return features


def _shaft_truth(world: ET.Element) -> tuple[list[Shaft], list[SkyZone]]:
    shafts, zones = [], []
    for spec in SHAFTS:
        (x0, x1), (y0, y1) = spec.x_range_m, spec.y_range_m
        zone = SkyZone(
            f"{spec.ident}_sky", f"{spec.kind}_shaft", Box3((x0, y0, 0.0), (x1, y1, GROUND_Z_M))
        )
        opening = Box3((x0, y0, HEIGHT_M), (x1, y1, HEIGHT_M + WALL_M))
        shafts.append(Shaft(spec.ident, spec.kind, opening, zone.id))
        zones.append(zone)
        radius = min(x1 - x0, y1 - y0) / 2.0
        top: Vec3 = ((x0 + x1) / 2.0, (y0 + y1) / 2.0, GROUND_Z_M + 1.0)
        add_daylight(world, f"{spec.ident}_daylight", top, radius, GROUND_Z_M + 1.0)
    return shafts, zones


def build_tunnel_world() -> tuple[ET.Element, WorldTruth]:
    """The SDF document and ground truth of the utility tunnel world."""
    root, world = new_world(WORLD_NAME, ORIGIN)
    add_structure(world)
    fire_doors = add_fire_doors(world)
    antennas = add_antennas(world)
    add_services(world)
    features = add_surface_features(world)
    shafts, zones = _shaft_truth(world)
    start = RobotStart(2.0, 0.0, SPAWN_CLEARANCE_M, 0.0)
    world.append(crawler_model(Pose((start.x_m, start.y_m, start.z_m), rot_z(start.yaw_rad))))
    branch_end_y = -HALF_WIDTH_M - BRANCH_LENGTH_M
    route = Route(
        "floor",
        (
            (2.0, 0.0, 0.0),
            (BRANCH_X_M, 0.0, 0.0),
            (BRANCH_X_M, branch_end_y + 1.6, 0.0),
            (BRANCH_X_M, 0.0, 0.0),
            (LENGTH_M - 2.0, 0.0, 0.0),
        ),
    )
    everywhere = Box3(
        (-WALL_M, branch_end_y - WALL_M, 0.0), (LENGTH_M + WALL_M, HALF_WIDTH_M, HEIGHT_M)
    )
    tunnel = TunnelTruth(
        galleries=(
            Gallery("main", (0.0, 0.0, 0.0), (LENGTH_M, 0.0, 0.0), 2.0 * HALF_WIDTH_M, HEIGHT_M),
            Gallery(
                "branch",
                (BRANCH_X_M, -HALF_WIDTH_M, 0.0),
                (BRANCH_X_M, branch_end_y, 0.0),
                2.0 * HALF_WIDTH_M,
                HEIGHT_M,
            ),
        ),
        antenna_spacing_m=ANTENNA_SPACING_M,
        antennas=tuple(antennas),
        shafts=tuple(shafts),
        fire_doors=tuple(fire_doors),
        surface_features=tuple(features),
        ambient_gas=GasZone("ambient", everywhere, 0.0, 20.9, 0.0, 0.0),
        gas_zones=(
            GasZone(
                "G1",
                Box3((430.0, -HALF_WIDTH_M, 0.0), (480.0, HALF_WIDTH_M, HEIGHT_M)),
                1.2,
                19.0,
                2.0,
                0.0,
            ),
        ),
    )
    truth = WorldTruth(
        schema_version=SCHEMA_VERSION,
        world=WORLD_NAME,
        site_type=SiteType.TUNNEL,
        sdf_file=f"{WORLD_NAME}.sdf",
        geodetic_origin=ORIGIN,
        robot_start=start,
        route=route,
        sky_zones=tuple(zones),
        tunnel=tunnel,
        notes=(
            "Site origin: floor at the west end wall on the gallery centreline; ground at z = 6 m.",
            "Gas concentrations are uniform inside each zone; ambient_gas applies elsewhere.",
        ),
    )
    return root, truth
