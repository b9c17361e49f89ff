"""Ground-truth schema of the simulation worlds, its YAML writer and a validating loader.

Conventions (all files):
- Site frame: right-handed, metres, z up; x, y, z of every item are site-frame coordinates.
- The site frame is tied to CGCS2000 by ``geodetic_origin``: the geodetic position of the
  site origin and the azimuth of the site +x axis (degrees clockwise from north, so 90 means
  the site frame is East-North-Up).
- Pipes: ``distance_m`` runs along the pipe axis from the start manhole's inner wall;
  clock positions are hours seen looking downstream (12 crown, 3 right, 6 invert, 9 left).
- Route waypoints are on the floor under the robot (the invert in a pipe).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_VERSION = 1

Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]


class TruthFormatError(ValueError):
    """A ground-truth file is missing, malformed or inconsistent; names the file and field."""

    def __init__(self, path: str | Path, field_path: str, reason: str) -> None:
        self.path = str(path)
        self.field_path = field_path
        self.reason = reason
        super().__init__(f"{self.path}: field '{field_path}': {reason}")


class SiteType(enum.Enum):
    """Kind of site a world models."""

    PIPE = "pipe"
    TUNNEL = "tunnel"
    SHELTER = "shelter"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class GeodeticOrigin:
    """CGCS2000 position of the site origin and azimuth of the site x axis."""

    datum: str
    latitude_deg: float
    longitude_deg: float
    height_m: float
    x_axis_azimuth_deg: float

    def __post_init__(self) -> None:
        _require(-90.0 <= self.latitude_deg <= 90.0, "latitude_deg outside [-90, 90]")
        _require(-180.0 <= self.longitude_deg <= 180.0, "longitude_deg outside [-180, 180]")
        _require(0.0 <= self.x_axis_azimuth_deg < 360.0, "x_axis_azimuth_deg outside [0, 360)")

    def site_to_enu(self, x_m: float, y_m: float) -> Vec2:
        """East and north offsets (m) from the origin of a site-frame point."""
        azimuth = math.radians(self.x_axis_azimuth_deg)
        east = x_m * math.sin(azimuth) - y_m * math.cos(azimuth)
        north = x_m * math.cos(azimuth) + y_m * math.sin(azimuth)
        return (east, north)


@dataclass(frozen=True)
class RobotStart:
    """Spawn pose of the robot's base_link (origin on the floor between the wheels)."""

    x_m: float
    y_m: float
    z_m: float
    yaw_rad: float


@dataclass(frozen=True)
class Route:
    """Drivable centreline from start to end; z is the floor height under the robot."""

    reference: str
    waypoints_m: tuple[Vec3, ...]

    def __post_init__(self) -> None:
        _require(len(self.waypoints_m) >= 2, "a route needs at least two waypoints")

    def length_m(self) -> float:
        """Total length of the polyline."""
        return sum(math.dist(a, b) for a, b in itertools.pairwise(self.waypoints_m))


@dataclass(frozen=True)
class Box3:
    """Axis-aligned box in the site frame."""

    min_m: Vec3
    max_m: Vec3

    def __post_init__(self) -> None:
        _require(
            all(a < b for a, b in zip(self.min_m, self.max_m, strict=True)), "min_m must be < max_m"
        )

    def contains(self, point: Vec3) -> bool:
        """Whether a site-frame point lies inside the box (inclusive)."""
        return all(a <= p <= b for a, p, b in zip(self.min_m, point, self.max_m, strict=True))


@dataclass(frozen=True)
class SkyZone:
    """A volume with open sky above it (satellite positioning works inside)."""

    id: str
    kind: str
    box: Box3


@dataclass(frozen=True)
class PipeFeature:
    """A non-defect observation along a pipe (manhole, lateral, bend)."""

    id: str
    kind: str
    distance_m: float
    clock_h: float
    position_m: Vec3
    description: str


@dataclass(frozen=True)
class PipeDefect:
    """One CJJ 181-2012 defect: class code, grade, location and extent on the pipe.

    distance_m is the upstream end of the defect along the axis and extent_length_m runs
    downstream from there (0 for a joint defect); clock_h is the centre of the affected arc and
    extent_arc_h its width in hours (12 = the whole circumference). position_m is the site
    point at the defect's centre on the inner wall (for volume defects, on their exposed face).
    measured holds the quantities the grade follows from (e.g. ovality_pct_of_d for BX).
    """

    id: str
    code: str
    grade: int
    distance_m: float
    clock_h: float
    extent_length_m: float
    extent_arc_h: float
    position_m: Vec3
    measured: dict[str, float]
    description: str

    def __post_init__(self) -> None:
        _require(1 <= self.grade <= 4, "grade must be 1..4")
        _require(0.0 < self.clock_h <= 12.0, "clock_h must be in (0, 12]")
        _require(0.0 < self.extent_arc_h <= 12.0, "extent_arc_h must be in (0, 12]")
        _require(self.extent_length_m >= 0.0, "extent_length_m must be >= 0")
        _require(self.distance_m >= 0.0, "distance_m must be >= 0")


@dataclass(frozen=True)
class PipeTruth:
    """Pipe segment geometry plus its features and defects.

    datum_route_distance_m is how far along the route polyline the defect distance datum
    (distance_m = 0, the pipe entrance) lies, since the route starts in the manhole.
    """

    segment_id: str
    material: str
    inner_diameter_m: float
    wall_thickness_m: float
    length_m: float
    section_length_m: float
    slope: float
    water_depth_m: float
    staves_per_ring: int
    distance_datum: str
    datum_route_distance_m: float
    features: tuple[PipeFeature, ...]
    defects: tuple[PipeDefect, ...]

    def __post_init__(self) -> None:
        _require(self.inner_diameter_m > 0.0, "inner_diameter_m must be > 0")
        _require(self.length_m > 0.0, "length_m must be > 0")
        ids = [d.id for d in self.defects]
        _require(len(ids) == len(set(ids)), "defect ids must be unique")


@dataclass(frozen=True)
class Antenna:
    """A 5G indoor distributed-antenna head on the ceiling."""

    id: str
    gallery: str
    position_m: Vec3


@dataclass(frozen=True)
class Shaft:
    """A ventilation or hoist shaft open to the sky."""

    id: str
    kind: str
    opening: Box3
    sky_zone_id: str


@dataclass(frozen=True)
class FireDoor:
    """A fire wall across a gallery with an open doorway; position is the doorway floor centre."""

    id: str
    position_m: Vec3
    doorway_width_m: float
    doorway_height_m: float


@dataclass(frozen=True)
class SurfaceFeature:
    """A crack, seepage patch or floor water, with its centre and size on the surface.

    size_m is (horizontal extent along the wall, vertical extent) on walls and (x, y) extents
    on the ceiling and floor.
    """

    id: str
    kind: str
    surface: str
    centre_m: Vec3
    size_m: Vec2
    measured: dict[str, float]


@dataclass(frozen=True)
class GasZone:
    """A box of abnormal atmosphere, concentrations uniform inside."""

    id: str
    box: Box3
    ch4_pct_vol: float
    o2_pct_vol: float
    h2s_ppm: float
    co_ppm: float

    def __post_init__(self) -> None:
        _require(0.0 <= self.ch4_pct_vol <= 100.0, "ch4_pct_vol outside [0, 100]")
        _require(0.0 <= self.o2_pct_vol <= 100.0, "o2_pct_vol outside [0, 100]")


@dataclass(frozen=True)
class Gallery:
    """A straight rectangular gallery between two floor-centreline points."""

    id: str
    start_m: Vec3
    end_m: Vec3
    width_m: float
    height_m: float


@dataclass(frozen=True)
class TunnelTruth:
    """Utility tunnel (综合管廊) galleries and equipment."""

    galleries: tuple[Gallery, ...]
    antenna_spacing_m: float
    antennas: tuple[Antenna, ...]
    shafts: tuple[Shaft, ...]
    fire_doors: tuple[FireDoor, ...]
    surface_features: tuple[SurfaceFeature, ...]
    ambient_gas: GasZone
    gas_zones: tuple[GasZone, ...]


@dataclass(frozen=True)
class Level:
    """A storey of a shelter."""

    name: str
    floor_z_m: float


@dataclass(frozen=True)
class Room:
    """A room with exact clear floor polygon, clear height and volume."""

    id: str
    name: str
    level: str
    floor_z_m: float
    polygon_m: tuple[Vec2, ...]
    area_m2: float
    clear_height_m: float
    volume_m3: float
    doors: tuple[str, ...]

    def __post_init__(self) -> None:
        _require(len(self.polygon_m) >= 3, "polygon_m needs at least three vertices")
        _require(self.area_m2 > 0.0 and self.clear_height_m > 0.0, "area and height must be > 0")


@dataclass(frozen=True)
class Corridor:
    """A corridor space (clear polygon and height)."""

    id: str
    level: str
    floor_z_m: float
    polygon_m: tuple[Vec2, ...]
    clear_height_m: float


@dataclass(frozen=True)
class Ramp:
    """A ramp joining two levels; start and end are floor-centreline points."""

    id: str
    start_m: Vec3
    end_m: Vec3
    width_m: float
    slope_deg: float
    clear_height_m: float


@dataclass(frozen=True)
class Door:
    """A doorway between two spaces; position is the floor centre of the opening."""

    id: str
    between: tuple[str, str]
    position_m: Vec3
    width_m: float
    height_m: float


@dataclass(frozen=True)
class ShelterTruth:
    """Civil-defence shelter (人防工程) levels, rooms, corridors, ramps and loops."""

    wall_thickness_m: float
    levels: tuple[Level, ...]
    rooms: tuple[Room, ...]
    corridors: tuple[Corridor, ...]
    ramps: tuple[Ramp, ...]
    doors: tuple[Door, ...]
    loops: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class WorldTruth:
    """Everything known about one world; exactly one of pipe / tunnel / shelter is set."""

    schema_version: int
    world: str
    site_type: SiteType
    sdf_file: str
    geodetic_origin: GeodeticOrigin
    robot_start: RobotStart
    route: Route
    sky_zones: tuple[SkyZone, ...] = ()
    pipe: PipeTruth | None = None
    tunnel: TunnelTruth | None = None
    shelter: ShelterTruth | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _require(self.schema_version == SCHEMA_VERSION, f"schema_version must be {SCHEMA_VERSION}")
        sections = {
            SiteType.PIPE: self.pipe,
            SiteType.TUNNEL: self.tunnel,
            SiteType.SHELTER: self.shelter,
        }
        _require(
            sections[self.site_type] is not None,
            f"site_type {self.site_type.value} needs a '{self.site_type.value}' section",
        )


# --- writing ---------------------------------------------------------------------------------


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def dump_truth(truth: WorldTruth) -> str:
    """YAML text of a ground truth (deterministic key order and number formatting)."""
    header = (
        f"# Ground truth of the '{truth.world}' simulation world, schema version"
        f" {truth.schema_version}.\n# Generated by `python -m sim_worlds.worldgen`;"
        " do not edit by hand. Schema: sim_worlds/worldgen/truth.py\n"
    )
    body = yaml.dump(
        _plain(truth), Dumper=_TruthDumper, sort_keys=False, allow_unicode=True, width=100
    )
    return header + body


class _TruthDumper(yaml.SafeDumper):
    """Safe dumper writing scalar-only lists and mappings on one line, the rest as blocks."""


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _represent_list(dumper: yaml.SafeDumper, data: list[object]) -> yaml.Node:
    flow = bool(data) and all(isinstance(v, int | float) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, object]) -> yaml.Node:
    flow = all(_is_scalar(v) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_TruthDumper.add_representer(list, _represent_list)
_TruthDumper.add_representer(dict, _represent_dict)


# --- loading ---------------------------------------------------------------------------------


class _FieldError(Exception):
    def __init__(self, field_path: str, reason: str) -> None:
        super().__init__(reason)
        self.field_path = field_path
        self.reason = reason


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _parse_scalar(value: object, hint: object, where: str) -> object:
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _FieldError(where, f"expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise _FieldError(where, "expected a finite number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _FieldError(where, f"expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise _FieldError(where, f"expected a string, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _FieldError(where, f"expected true/false, got {value!r}")
        return value
    raise _FieldError(where, f"unsupported schema type {hint!r}")


def _parse_tuple(value: object, args: tuple[Any, ...], where: str) -> tuple[object, ...]:
    if not isinstance(value, list):
        raise _FieldError(where, f"expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_parse(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
    if len(value) != len(args):
        raise _FieldError(where, f"expected {len(args)} items, got {len(value)}")
    return tuple(
        _parse(item, hint, f"{where}[{i}]")
        for i, (item, hint) in enumerate(zip(value, args, strict=True))
    )


def _parse(value: object, hint: Any, where: str) -> object:
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _parse(value, options[0], where)
    if origin is tuple:
        return _parse_tuple(value, typing.get_args(hint), where)
    if origin is dict:
        if not isinstance(value, dict):
            raise _FieldError(where, f"expected a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint)
        return {
            _parse(k, key_hint, where): _parse(v, value_hint, _join(where, str(k)))
            for k, v in value.items()
        }
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in hint)
            raise _FieldError(where, f"expected one of {choices}, got {value!r}") from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _parse_dataclass(value, hint, where)
    return _parse_scalar(value, hint, where)


def _parse_dataclass(value: object, cls: type[Any], where: str) -> object:
    if not isinstance(value, dict):
        raise _FieldError(where or "<document>", f"expected a mapping, got {value!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise _FieldError(_join(where, unknown[0]), "unknown field")
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        path = _join(where, f.name)
        if f.name not in value:
            has_default = f.default is not dataclasses.MISSING
            if has_default or f.default_factory is not dataclasses.MISSING:
                continue
            raise _FieldError(path, "missing required field")
        kwargs[f.name] = _parse(value[f.name], hints[f.name], path)
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise _FieldError(where or "<document>", str(err)) from err


def parse_truth(document: object, source: str | Path = "<memory>") -> WorldTruth:
    """Validate an already-parsed YAML document as a WorldTruth."""
    try:
        result = _parse_dataclass(document, WorldTruth, "")
    except _FieldError as err:
        raise TruthFormatError(source, err.field_path, err.reason) from err
    if not isinstance(result, WorldTruth):
        raise TypeError("schema parser returned a non-WorldTruth object")
    return result


def load_truth(path: str | Path) -> WorldTruth:
    """Read and validate a ground-truth YAML file; raises TruthFormatError naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TruthFormatError(path, "<file>", f"cannot read: {err.strerror}") from err
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"<document> line {mark.line + 1}" if mark is not None else "<document>"
        raise TruthFormatError(path, where, f"malformed YAML: {err}") from err
    return parse_truth(document, path)
