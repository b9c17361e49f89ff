"""World 'civil_defence_shelter': a two-level 人防 shelter of rooms off corridors.

Level B1 (floor z = 0) has a ring of corridors (a loop for loop closure) with eight rooms
inside and around it; a 10.6 degree ramp leads down to level B2 (floor z = -4.5 m) with four
more rooms. Every space is an axis-aligned clear rectangle; each space builds half of every
wall around it (0.15 m), so neighbours separated by 0.3 m share a 0.3 m wall, and doorways are
cut through both halves. Rooms have flat ceilings: volume = floor area x clear height exactly.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sim_worlds.worldgen.crawler import crawler_model
from sim_worlds.worldgen.geometry import Pose, Vec2, Vec3, rot_y, rot_z, rounded, vadd
from sim_worlds.worldgen.scene import CONCRETE, new_world
from sim_worlds.worldgen.sdf import Surface, add_box, add_link, static_model
from sim_worlds.worldgen.truth import (
    SCHEMA_VERSION,
    Corridor,
    Door,
    GeodeticOrigin,
    Level,
    Ramp,
    RobotStart,
    Room,
    Route,
    ShelterTruth,
    SiteType,
    WorldTruth,
)

WORLD_NAME = "civil_defence_shelter"
ORIGIN = GeodeticOrigin("CGCS2000", 29.563, 106.5516, 231.0, 90.0)  # Chongqing, B1 floor

HALF_WALL_M = 0.15
SLAB_M = 0.2
DOOR_WIDTH_M = 1.2
DOOR_HEIGHT_M = 2.1
CORRIDOR_HEIGHT_M = 2.6
LEVELS = (Level("B1", 0.0), Level("B2", -4.5))
SPAWN_CLEARANCE_M = 0.02
SIDES = ("S", "E", "N", "W")
OPPOSITE = {"S": "N", "N": "S", "E": "W", "W": "E"}
_CONCRETE = Surface(CONCRETE)


@dataclass(frozen=True)
class Space:
    """A clear rectangle with a floor and a flat (or, for a ramp, sloping) ceiling."""

    ident: str
    name: str
    kind: str
    level: str
    x_range_m: Vec2
    y_range_m: Vec2
    floor_z_m: float
    height_m: float
    drop_m: float = 0.0

    @property
    def area_m2(self) -> float:
        """Clear floor area."""
        return (self.x_range_m[1] - self.x_range_m[0]) * (self.y_range_m[1] - self.y_range_m[0])

    @property
    def centre_m(self) -> Vec3:
        """Floor centre (for a ramp: mid-way down)."""
        return (
            (self.x_range_m[0] + self.x_range_m[1]) / 2.0,
            (self.y_range_m[0] + self.y_range_m[1]) / 2.0,
            self.floor_z_m - self.drop_m / 2.0,
        )

    def polygon(self) -> tuple[Vec2, ...]:
        """Clear floor polygon, counter-clockwise."""
        (x0, x1), (y0, y1) = self.x_range_m, self.y_range_m
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))

    def side_span(self, side: str) -> Vec2:
        """Extent of a side along its own direction (x for S/N, y for E/W)."""
        return self.x_range_m if side in ("S", "N") else self.y_range_m

    def side_coordinate(self, side: str) -> float:
        """Coordinate of the clear face of a side (y for S/N, x for E/W)."""
        return {
            "S": self.y_range_m[0],
            "N": self.y_range_m[1],
            "W": self.x_range_m[0],
            "E": self.x_range_m[1],
        }[side]


@dataclass(frozen=True)
class Opening:
    """A doorway (height set) or a full open side (height None) between spaces a and b."""

    ident: str
    a: str
    side_a: str
    b: str
    interval_m: Vec2
    height_m: float | None = DOOR_HEIGHT_M


LEVEL_FLOOR_Z_M = {level.name: level.floor_z_m for level in LEVELS}


def _room(ident: str, name: str, level: str, x: Vec2, y: Vec2, height: float) -> Space:
    return Space(ident, name, "room", level, x, y, LEVEL_FLOOR_Z_M[level], height)


SPACES = (
    Space(
        "C-S", "south corridor", "corridor", "B1", (0.0, 32.0), (0.0, 2.0), 0.0, CORRIDOR_HEIGHT_M
    ),
    Space(
        "C-E", "east corridor", "corridor", "B1", (30.0, 32.0), (2.0, 14.3), 0.0, CORRIDOR_HEIGHT_M
    ),
    Space(
        "C-N", "north corridor", "corridor", "B1", (0.0, 32.0), (14.3, 16.3), 0.0, CORRIDOR_HEIGHT_M
    ),
    Space(
        "C-W", "west corridor", "corridor", "B1", (0.0, 2.0), (2.0, 14.3), 0.0, CORRIDOR_HEIGHT_M
    ),
    Space(
        "RAMP", "ramp B1-B2", "ramp", "B1", (32.0, 56.0), (0.0, 2.0), 0.0, CORRIDOR_HEIGHT_M, 4.5
    ),
    Space(
        "C-B2", "B2 corridor", "corridor", "B2", (56.0, 86.0), (0.0, 2.0), -4.5, CORRIDOR_HEIGHT_M
    ),
    _room("R01", "command room", "B1", (2.3, 12.3), (2.3, 14.0), 3.0),
    _room("R02", "communications room", "B1", (12.6, 21.0), (2.3, 14.0), 2.8),
    _room("R03", "decontamination room", "B1", (21.3, 29.7), (2.3, 7.3), 2.8),
    _room("R04", "medical station", "B1", (21.3, 29.7), (7.6, 14.0), 3.2),
    _room("R05", "filter and ventilation room", "B1", (0.0, 6.0), (-6.3, -0.3), 2.7),
    _room("R06", "dormitory", "B1", (6.3, 18.3), (-5.3, -0.3), 3.2),
    _room("R07", "water tank room", "B1", (0.0, 9.0), (16.6, 23.6), 2.9),
    _room("R08", "storage", "B1", (9.3, 20.0), (16.6, 21.6), 2.7),
    _room("R09", "supply store", "B2", (56.0, 66.0), (2.3, 10.3), 3.3),
    _room("R10", "toilets", "B2", (66.3, 74.3), (2.3, 8.3), 3.0),
    _room("R11", "assembly hall", "B2", (74.6, 86.0), (2.3, 12.3), 3.5),
    _room("R12", "generator room", "B2", (60.0, 70.0), (-5.3, -0.3), 2.8),
)

OPENINGS = (
    Opening("O-SW", "C-S", "N", "C-W", (0.0, 2.0), None),
    Opening("O-SE", "C-S", "N", "C-E", (30.0, 32.0), None),
    Opening("O-NW", "C-N", "S", "C-W", (0.0, 2.0), None),
    Opening("O-NE", "C-N", "S", "C-E", (30.0, 32.0), None),
    Opening("O-RAMP-TOP", "C-S", "E", "RAMP", (0.0, 2.0), None),
    Opening("O-RAMP-FOOT", "RAMP", "E", "C-B2", (0.0, 2.0), None),
    Opening("D-R01", "C-S", "N", "R01", (6.7, 7.9)),
    Opening("D-R02", "C-N", "S", "R02", (16.2, 17.4)),
    Opening("D-R03", "C-E", "W", "R03", (4.2, 5.4)),
    Opening("D-R04", "C-N", "S", "R04", (24.9, 26.1)),
    Opening("D-R05", "C-S", "S", "R05", (2.4, 3.6)),
    Opening("D-R06", "C-S", "S", "R06", (11.7, 12.9)),
    Opening("D-R07", "C-N", "N", "R07", (3.9, 5.1)),
    Opening("D-R08", "C-N", "N", "R08", (14.05, 15.25)),
    Opening("D-R09", "C-B2", "N", "R09", (60.4, 61.6)),
    Opening("D-R10", "C-B2", "N", "R10", (69.7, 70.9)),
    Opening("D-R11", "C-B2", "N", "R11", (79.7, 80.9)),
    Opening("D-R12", "C-B2", "S", "R12", (64.4, 65.6)),
)

LOOP = ("C-S", "C-E", "C-N", "C-W")


def space_by_id(ident: str) -> Space:
    """Look a space up by its id."""
    for space in SPACES:
        if space.ident == ident:
            return space
    raise KeyError(ident)


def openings_on(space: Space, side: str) -> list[Opening]:
    """Openings through a given side of a space."""
    result = []
    for opening in OPENINGS:
        if (opening.a == space.ident and opening.side_a == side) or (
            opening.b == space.ident and OPPOSITE[opening.side_a] == side
        ):
            result.append(opening)
    return result


def _side_is_open_at(space: Space, side: str, coordinate: float) -> bool:
    """Whether a side has a full-height opening reaching a coordinate along it."""
    return any(
        o.height_m is None and o.interval_m[0] - 1e-9 <= coordinate <= o.interval_m[1] + 1e-9
        for o in openings_on(space, side)
    )


def _fully_open(space: Space, side: str) -> bool:
    span = space.side_span(side)
    return any(
        o.height_m is None
        and o.interval_m[0] <= span[0] + 1e-9
        and o.interval_m[1] >= span[1] - 1e-9
        for o in openings_on(space, side)
    )


def _wall_span(space: Space, side: str) -> Vec2:
    """Extent of a side's wall, lengthened by a half wall where the neighbour side has a wall."""
    lo, hi = space.side_span(side)
    low_side, high_side = ("W", "E") if side in ("S", "N") else ("S", "N")
    face = space.side_coordinate(side)
    if not _side_is_open_at(space, low_side, face):
        lo -= HALF_WALL_M
    if not _side_is_open_at(space, high_side, face):
        hi += HALF_WALL_M
    return lo, hi


def _z_range(space: Space) -> Vec2:
    if space.drop_m > 0.0:
        return (space.floor_z_m - space.drop_m - SLAB_M, space.floor_z_m + space.height_m + SLAB_M)
    return (space.floor_z_m, space.floor_z_m + space.height_m)


def _wall_box(link: ET.Element, name: str, space: Space, side: str, along: Vec2, z: Vec2) -> None:
    face = space.side_coordinate(side)
    outward = 1.0 if side in ("N", "E") else -1.0
    across = face + outward * HALF_WALL_M / 2.0
    length = along[1] - along[0]
    mid = (along[0] + along[1]) / 2.0
    if side in ("S", "N"):
        centre: Vec3 = (mid, across, (z[0] + z[1]) / 2.0)
        size: Vec3 = (length, HALF_WALL_M, z[1] - z[0])
    else:
        centre = (across, mid, (z[0] + z[1]) / 2.0)
        size = (HALF_WALL_M, length, z[1] - z[0])
    add_box(link, name, size, Pose(centre), _CONCRETE)


def _add_side(link: ET.Element, space: Space, side: str) -> None:
    if _fully_open(space, side):
        return
    z = _z_range(space)
    pieces = [_wall_span(space, side)]
    for opening in sorted(openings_on(space, side), key=lambda o: o.interval_m):
        o0, o1 = opening.interval_m
        next_pieces = []
        for a, b in pieces:
            if o1 <= a or o0 >= b:
                next_pieces.append((a, b))
                continue
            if o0 > a:
                next_pieces.append((a, o0))
            if o1 < b:
                next_pieces.append((o1, b))
        pieces = next_pieces
        if opening.height_m is not None:
            lintel = (space.floor_z_m + opening.height_m, z[1])
            _wall_box(link, f"lintel_{opening.ident}", space, side, opening.interval_m, lintel)
    for index, along in enumerate(pieces):
        _wall_box(link, f"wall_{side}{index}", space, side, along, z)


def _slab_extent(space: Space) -> tuple[Vec2, Vec2]:
    """Clear rectangle grown by a half wall on every side that is not open over its length."""
    (x0, x1), (y0, y1) = space.x_range_m, space.y_range_m
    grow = {side: 0.0 if _fully_open(space, side) else HALF_WALL_M for side in SIDES}
    return (x0 - grow["W"], x1 + grow["E"]), (y0 - grow["S"], y1 + grow["N"])


def _add_flat_slabs(link: ET.Element, space: Space) -> None:
    (x0, x1), (y0, y1) = _slab_extent(space)
    centre_xy = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    size: Vec3 = (x1 - x0, y1 - y0, SLAB_M)
    floor_z = space.floor_z_m - SLAB_M / 2.0
    ceiling_z = space.floor_z_m + space.height_m + SLAB_M / 2.0
    add_box(link, "floor", size, Pose((*centre_xy, floor_z)), _CONCRETE)
    add_box(link, "ceiling", size, Pose((*centre_xy, ceiling_z)), _CONCRETE)


def _add_ramp_slabs(link: ET.Element, space: Space) -> None:
    (x0, x1), (y0, y1) = space.x_range_m, space.y_range_m
    run = x1 - x0
    pitch = math.atan2(space.drop_m, run)
    length = math.hypot(run, space.drop_m)
    rotation = Pose(rot=rot_y(pitch))
    top_mid: Vec3 = ((x0 + x1) / 2.0, (y0 + y1) / 2.0, space.floor_z_m - space.drop_m / 2.0)
    width = y1 - y0 + 2.0 * HALF_WALL_M
    below = rotation.rotate((0.0, 0.0, -SLAB_M / 2.0))
    add_box(
        link, "floor", (length, width, SLAB_M), Pose(vadd(top_mid, below), rotation.rot), _CONCRETE
    )
    ceiling_mid = vadd(top_mid, (0.0, 0.0, space.height_m))
    above = rotation.rotate((0.0, 0.0, SLAB_M / 2.0))
    add_box(
        link,
        "ceiling",
        (length, width, SLAB_M),
        Pose(vadd(ceiling_mid, above), rotation.rot),
        _CONCRETE,
    )


def add_spaces(world: ET.Element) -> None:
    """One link per space: floor, ceiling, half walls with doorways."""
    model = static_model(world, "shelter")
    for space in SPACES:
        link = add_link(model, space.ident)
        if space.drop_m > 0.0:
            _add_ramp_slabs(link, space)
        else:
            _add_flat_slabs(link, space)
        for side in SIDES:
            _add_side(link, space, side)


def _door_centre(opening: Opening) -> Vec3:
    space = space_by_id(opening.a)
    across = space.side_coordinate(opening.side_a)
    outward = 1.0 if opening.side_a in ("N", "E") else -1.0
    middle = across + outward * HALF_WALL_M
    along = (opening.interval_m[0] + opening.interval_m[1]) / 2.0
    if opening.side_a in ("S", "N"):
        return (along, middle, space.floor_z_m)
    return (middle, along, space.floor_z_m)


def _corridor_point(opening: Opening) -> Vec3:
    """Point on the corridor centreline in front of a door."""
    corridor = space_by_id(opening.a)
    cx, cy, cz = corridor.centre_m
    x, y, _ = _door_centre(opening)
    return (x, cy, cz) if opening.side_a in ("S", "N") else (cx, y, cz)


def _visit(door_id: str) -> list[Vec3]:
    opening = next(o for o in OPENINGS if o.ident == door_id)
    room = space_by_id(opening.b)
    front = _corridor_point(opening)
    door = _door_centre(opening)
    return [front, door, room.centre_m, door, front]


def tour() -> Route:
    """Start in the SW corner, visit every room, close the B1 loop, descend, visit B2 rooms."""
    points: list[Vec3] = [(1.0, 1.0, 0.0)]
    for door in ("D-R05", "D-R01", "D-R06"):
        points += _visit(door)
    points.append((31.0, 1.0, 0.0))
    points += _visit("D-R03")
    points.append((31.0, 15.3, 0.0))
    for door in ("D-R04", "D-R02", "D-R08", "D-R07"):
        points += _visit(door)
    points += [(1.0, 15.3, 0.0), (1.0, 1.0, 0.0), (32.0, 1.0, 0.0), (56.0, 1.0, -4.5)]
    for door in ("D-R09", "D-R12", "D-R10", "D-R11"):
        points += _visit(door)
    points.append((85.0, 1.0, -4.5))
    deduplicated = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    return Route(
        "floor", tuple((rounded(x, 3), rounded(y, 3), rounded(z, 3)) for x, y, z in deduplicated)
    )


def _truth_rooms() -> tuple[Room, ...]:
    rooms = []
    for space in SPACES:
        if space.kind != "room":
            continue
        area = round(space.area_m2, 6)
        doors = tuple(o.ident for o in OPENINGS if space.ident in (o.a, o.b))
        rooms.append(
            Room(
                space.ident,
                space.name,
                space.level,
                space.floor_z_m,
                space.polygon(),
                area,
                space.height_m,
                round(area * space.height_m, 6),
                doors,
            )
        )
    return tuple(rooms)


def _truth_doors() -> tuple[Door, ...]:
    return tuple(
        Door(
            o.ident,
            (o.a, o.b),
            _door_centre(o),
            round(o.interval_m[1] - o.interval_m[0], 6),
            o.height_m,
        )
        for o in OPENINGS
        if o.height_m is not None
    )


def build_shelter_world() -> tuple[ET.Element, WorldTruth]:
    """The SDF document and ground truth of the shelter world."""
    root, world = new_world(WORLD_NAME, ORIGIN)
    add_spaces(world)
    start = RobotStart(1.0, 1.0, SPAWN_CLEARANCE_M, 0.0)
    world.append(crawler_model(Pose((start.x_m, start.y_m, start.z_m), rot_z(start.yaw_rad))))
    ramp = space_by_id("RAMP")
    (rx0, rx1), (ry0, ry1) = ramp.x_range_m, ramp.y_range_m
    ramp_truth = Ramp(
        "RAMP",
        (rx0, (ry0 + ry1) / 2.0, ramp.floor_z_m),
        (rx1, (ry0 + ry1) / 2.0, ramp.floor_z_m - ramp.drop_m),
        ry1 - ry0,
        rounded(math.degrees(math.atan2(ramp.drop_m, rx1 - rx0)), 3),
        ramp.height_m,
    )
    corridors = tuple(
        Corridor(s.ident, s.level, s.floor_z_m, s.polygon(), s.height_m)
        for s in SPACES
        if s.kind == "corridor"
    )
    shelter = ShelterTruth(
        wall_thickness_m=2.0 * HALF_WALL_M,
        levels=LEVELS,
        rooms=_truth_rooms(),
        corridors=corridors,
        ramps=(ramp_truth,),
        doors=_truth_doors(),
        loops=(LOOP,),
    )
    truth = WorldTruth(
        schema_version=SCHEMA_VERSION,
        world=WORLD_NAME,
        site_type=SiteType.SHELTER,
        sdf_file=f"{WORLD_NAME}.sdf",
        geodetic_origin=ORIGIN,
        robot_start=start,
        route=tour(),
        shelter=shelter,
        notes=(
            "Site origin: B1 floor level at the south-west inner corner of the south corridor.",
            "Room polygons are clear (wall-face to wall-face) floor outlines; ceilings are flat.",
            "No light and no radio inside: the robot lamp is the only light source.",
        ),
    )
    return root, truth
