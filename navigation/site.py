"""The site file: what a crew knows about a site before the robot goes in.

A site file (YAML, format in ``docs/site_file.md``) ties the site frame to CGCS2000, lists
the axes along which distances are counted (the pipe axis from manhole A to manhole B, the
galleries of a tunnel, the corridors of a shelter) and the landmarks the robot can recognise
(manholes, shafts, fire doors, junctions, laterals, doorways), and optionally calibrates the
tether. It comes from GIS and drawings, never from a run of the robot: ``site_from_truth``
derives one from a simulated world's ground truth with exactly that rule.

Distances along an axis are *chainages*: an axis's ``start_distance_m`` is the distance value
at its first waypoint, so a pipe axis that starts at the centre of manhole A with its datum
(distance 0, CJJ 181-2012) at the pipe entrance 0.6 m further has ``start_distance_m: -0.6``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import numpy as np
import yaml
from numpy.typing import ArrayLike, NDArray

from navigation.file_errors import LocatedFileError
from navigation.geodesy import GeodeticOrigin, SiteFrame
from navigation.path import Polyline

if TYPE_CHECKING:
    from sim_worlds.worldgen.truth import WorldTruth

FloatArray = NDArray[np.float64]
Vec3 = tuple[float, float, float]

_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")

SITE_FILE_VERSION = 1
DATUM = "CGCS2000"


class SiteFileError(LocatedFileError):
    """A site file is unreadable, malformed or inconsistent; names the file, line and field."""


class SiteFieldError(ValueError):
    """An invalid value in a site description, with the dotted path of its field."""

    def __init__(self, field_path: str, reason: str) -> None:
        self.field_path = field_path
        self.reason = reason
        super().__init__(f"{field_path}: {reason}")


def _check(condition: bool, field_path: str, reason: str) -> None:
    if not condition:
        raise SiteFieldError(field_path, reason)


class SiteType(enum.Enum):
    """Kind of site."""

    PIPE = "pipe"
    TUNNEL = "tunnel"
    SHELTER = "shelter"


class LandmarkKind(enum.Enum):
    """What a landmark is (how the robot recognises it is up to the detector)."""

    MANHOLE = "manhole"
    SHAFT = "shaft"
    FIRE_DOOR = "fire_door"
    JUNCTION = "junction"
    LATERAL = "lateral"
    DOOR = "door"
    """A doorway between spaces of a shelter."""


@dataclass(frozen=True)
class AxisPosition:
    """Where a point lies relative to an axis."""

    distance_m: float
    """Chainage of the foot of the perpendicular (clamped to the axis's ends)."""
    offset_m: float
    """Horizontal offset from the axis, positive to the left of its direction."""
    gap_m: float
    """3D distance from the point to the axis."""


@dataclass(frozen=True)
class Axis:
    """A named polyline in the site frame along which distances are counted."""

    name: str
    waypoints_m: tuple[Vec3, ...]
    start_distance_m: float = 0.0
    """Chainage (distance value) at the first waypoint."""
    description: str = ""
    _polyline: Polyline = field(init=False, repr=False, compare=False)
    _cumulative_m: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(bool(self.name), "name", "must not be empty")
        _check(len(self.waypoints_m) >= 2, "waypoints_m", "an axis needs at least two waypoints")
        _check(all(math.isfinite(c) for p in self.waypoints_m for c in p), "waypoints_m",
               "waypoints must be finite")
        for i in range(1, len(self.waypoints_m)):
            _check(self.waypoints_m[i] != self.waypoints_m[i - 1], f"waypoints_m[{i}]",
                   "repeats the previous waypoint")
        _check(math.isfinite(self.start_distance_m), "start_distance_m", "must be finite")
        polyline = Polyline(self.waypoints_m)
        lengths = np.linalg.norm(np.diff(polyline.points_m, axis=0), axis=1)
        object.__setattr__(self, "_polyline", polyline)
        object.__setattr__(self, "_cumulative_m", np.concatenate([[0.0], np.cumsum(lengths)]))

    @property
    def length_m(self) -> float:
        """Arc length of the axis."""
        return self._polyline.length_m

    @property
    def end_distance_m(self) -> float:
        """Chainage at the last waypoint."""
        return self.start_distance_m + self.length_m

    def project(self, point_m: ArrayLike) -> AxisPosition:
        """Chainage, lateral offset and distance of a site point from the axis."""
        p = np.asarray(point_m, dtype=np.float64)
        foot = self._polyline.project(p)
        gap = float(np.linalg.norm(p - self._polyline.point_at(foot.distance_m)))
        return AxisPosition(self.start_distance_m + foot.distance_m, foot.offset_m, gap)

    def point_at(self, distance_m: float) -> FloatArray:
        """Site point at chainage ``distance_m`` (clamped to the ends)."""
        return self._polyline.point_at(distance_m - self.start_distance_m)

    def pose_at(self, distance_m: float) -> FloatArray:
        """T_site_base of a robot at chainage ``distance_m`` on the axis, facing along it."""
        yaw = self._polyline.heading_at(distance_m - self.start_distance_m)
        T = np.eye(4)
        T[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
        T[:3, 3] = self.point_at(distance_m)
        return T

    def chainage_and_direction(self, point_m: ArrayLike) -> tuple[float, FloatArray]:
        """Chainage of a point on its nearest segment, not clamped, and that segment's unit vector.

        Unlike ``project`` the chainage keeps growing past the axis's ends (the first and
        last segments extend as lines), so its derivative along the returned direction is 1
        everywhere: what a factor graph needs to linearize a distance along the axis.
        """
        p = np.asarray(point_m, dtype=np.float64)
        i = self._polyline.project(p).segment
        a, b = self._polyline.points_m[i], self._polyline.points_m[i + 1]
        direction: FloatArray = (b - a) / (self._cumulative_m[i + 1] - self._cumulative_m[i])
        along = float(direction @ (p - a))
        return self.start_distance_m + float(self._cumulative_m[i]) + along, direction


@dataclass(frozen=True)
class Landmark:
    """A recognisable place: where the robot stands when it is at the landmark."""

    id: str
    kind: LandmarkKind
    position_m: Vec3
    """Site point where the robot's base_link is when at the landmark (on the floor)."""
    detection_radius_m: float
    """How close the robot must be to count as "at" the landmark."""
    axis: str | None = None
    distance_m: float | None = None
    """Chainage along ``axis``, as the crew's drawings give it."""
    description: str = ""

    def __post_init__(self) -> None:
        _check(bool(self.id), "id", "must not be empty")
        _check(all(math.isfinite(c) for c in self.position_m), "position_m", "must be finite")
        _check(self.detection_radius_m > 0.0, "detection_radius_m", "must be > 0")
        _check(self.distance_m is None or self.axis is not None, "distance_m",
               "needs an axis to be measured along")


@dataclass(frozen=True)
class TetherCalibration:
    """How the cable counter relates to the distance along an axis.

    paid_out_m = (1 + stretch) * (distance_m - zero_distance_m), where ``stretch`` lumps
    cable elongation, sag and snaking; the localizer estimates it, starting from
    ``stretch_nominal`` with standard deviation ``stretch_sigma``.
    """

    axis: str
    zero_distance_m: float = 0.0
    """Chainage at which the counter reads zero (where the robot enters)."""
    stretch_nominal: float = 0.0
    stretch_sigma: float = 0.005

    def __post_init__(self) -> None:
        _check(math.isfinite(self.zero_distance_m), "zero_distance_m", "must be finite")
        _check(-0.5 < self.stretch_nominal < 0.5, "stretch_nominal", "must be in (-0.5, 0.5)")
        _check(self.stretch_sigma > 0.0, "stretch_sigma", "must be > 0")


@dataclass(frozen=True)
class Site:
    """Everything the localizer knows about a site in advance."""

    name: str
    site_type: SiteType
    origin: GeodeticOrigin
    axes: tuple[Axis, ...]
    landmarks: tuple[Landmark, ...] = ()
    tether: TetherCalibration | None = None
    description: str = ""

    def __post_init__(self) -> None:
        o = self.origin
        _check(-90.0 <= o.latitude_deg <= 90.0, "origin.latitude_deg", "outside [-90, 90]")
        _check(-180.0 <= o.longitude_deg <= 180.0, "origin.longitude_deg", "outside [-180, 180]")
        _check(0.0 <= o.x_axis_azimuth_deg < 360.0, "origin.x_axis_azimuth_deg",
               "outside [0, 360)")
        _check(len(self.axes) >= 1, "axes", "a site needs at least one axis")
        names = [a.name for a in self.axes]
        for i, name in enumerate(names):
            _check(name not in names[:i], f"axes[{i}].name", f"duplicate axis '{name}'")
        ids = [m.id for m in self.landmarks]
        for i, landmark in enumerate(self.landmarks):
            _check(landmark.id not in ids[:i], f"landmarks[{i}].id",
                   f"duplicate landmark '{landmark.id}'")
            _check(landmark.axis is None or landmark.axis in names, f"landmarks[{i}].axis",
                   f"unknown axis '{landmark.axis}' (axes: {', '.join(names)})")
        if self.tether is not None:
            _check(self.tether.axis in names, "tether.axis",
                   f"unknown axis '{self.tether.axis}' (axes: {', '.join(names)})")

    def axis(self, name: str) -> Axis:
        """The axis called ``name``; KeyError naming the known ones otherwise."""
        for axis in self.axes:
            if axis.name == name:
                return axis
        raise KeyError(f"site '{self.name}' has no axis '{name}' "
                       f"(axes: {', '.join(a.name for a in self.axes)})")

    def landmark(self, landmark_id: str) -> Landmark:
        """The landmark with id ``landmark_id``; KeyError otherwise."""
        for landmark in self.landmarks:
            if landmark.id == landmark_id:
                return landmark
        raise KeyError(f"site '{self.name}' has no landmark '{landmark_id}'")

    def frame(self) -> SiteFrame:
        """Converter between this site's frame and CGCS2000."""
        return SiteFrame(self.origin)

    def locate(self, point_m: ArrayLike, prefer: str | None = None,
               hysteresis_m: float = 0.5) -> tuple[Axis, AxisPosition]:
        """The axis nearest to a point and the point's position along it.

        ``prefer`` (the axis the robot was on) wins unless another axis is more than
        ``hysteresis_m`` closer, so the counter does not flicker at a junction.
        """
        located = [(axis, axis.project(point_m)) for axis in self.axes]
        best = min(located, key=lambda item: item[1].gap_m)
        for axis, position in located:
            if axis.name == prefer and position.gap_m <= best[1].gap_m + hysteresis_m:
                return axis, position
        return best


# --- from a simulated world's ground truth -------------------------------------------------

_MANHOLE_RADIUS_M = 0.6
_LATERAL_RADIUS_M = 0.5
_FIRE_DOOR_RADIUS_M = 1.0
_JUNCTION_RADIUS_M = 1.5


def site_from_truth(truth: WorldTruth) -> Site:
    """The site file a crew would have for a simulated world.

    Only what GIS and drawings give: the pipe axis (the invert line from manhole to manhole)
    with its manholes and laterals, tunnel galleries with their shafts, fire doors and
    junctions, shelter corridors and the ramp with their doorways. Never defects, surface
    features, gas, antennas or anything about the robot's drive.
    """
    origin = GeodeticOrigin(truth.geodetic_origin.latitude_deg,
                            truth.geodetic_origin.longitude_deg,
                            truth.geodetic_origin.height_m,
                            truth.geodetic_origin.x_axis_azimuth_deg)
    site_type = SiteType(truth.site_type.value)
    axes: tuple[Axis, ...]
    landmarks: list[Landmark] = []
    tether: TetherCalibration | None = None
    if truth.pipe is not None:
        pipe = truth.pipe
        axis = Axis(pipe.segment_id, tuple(truth.route.waypoints_m),
                    start_distance_m=-pipe.datum_route_distance_m,
                    description=(f"DN{round(pipe.inner_diameter_m * 1000)} {pipe.material}, "
                                 f"invert line; distance datum: {pipe.distance_datum}"))
        axes = (axis,)
        for feature in pipe.features:
            if feature.kind == "manhole":
                position = _vec3(feature.position_m)
                landmarks.append(Landmark(feature.id, LandmarkKind.MANHOLE, position,
                                          _MANHOLE_RADIUS_M, axis.name,
                                          _round(axis.project(position).distance_m),
                                          feature.description))
            elif feature.kind.startswith("lateral"):
                # The robot passes a lateral on the invert, beside it.
                position = _vec3(axis.point_at(feature.distance_m))
                landmarks.append(Landmark(feature.id, LandmarkKind.LATERAL, position,
                                          _LATERAL_RADIUS_M, axis.name, feature.distance_m,
                                          feature.description))
        entry = next((m for m in landmarks if m.kind is LandmarkKind.MANHOLE), None)
        zero = entry.distance_m if entry is not None and entry.distance_m is not None else 0.0
        tether = TetherCalibration(axis.name, zero_distance_m=zero)
    elif truth.tunnel is not None:
        axes, landmarks = _tunnel_axes_and_landmarks(truth)
    elif truth.shelter is not None:
        axes, landmarks = _shelter_axes_and_landmarks(truth)
    else:  # pragma: no cover - WorldTruth guarantees one section
        raise ValueError(f"world '{truth.world}' has no pipe, tunnel or shelter section")
    return Site(truth.world, site_type, origin, axes, tuple(landmarks), tether,
                description=f"derived from the ground truth of simulation world '{truth.world}'")


def _round(value: float) -> float:
    return round(float(value), 3)


def _vec3(values: ArrayLike) -> Vec3:
    x, y, z = (float(v) for v in np.asarray(values, dtype=np.float64))
    return (_round(x), _round(y), _round(z))


def _on_nearest_axis(axes: Sequence[Axis], point_m: ArrayLike) -> tuple[Axis, AxisPosition]:
    located = [(axis, axis.project(point_m)) for axis in axes]
    return min(located, key=lambda item: item[1].gap_m)


def _tunnel_axes_and_landmarks(truth: WorldTruth) -> tuple[tuple[Axis, ...], list[Landmark]]:
    assert truth.tunnel is not None
    galleries = truth.tunnel.galleries
    centrelines = {g.id: Polyline([g.start_m, g.end_m]) for g in galleries}
    axes: list[Axis] = []
    landmarks: list[Landmark] = []
    for gallery in galleries:
        waypoints = [_vec3(gallery.start_m), _vec3(gallery.end_m)]
        start_distance = 0.0
        # A gallery that opens from another one's wall: its axis starts on that one's centreline.
        for other in galleries:
            if other.id == gallery.id:
                continue
            line = centrelines[other.id]
            foot = line.project(gallery.start_m)
            join = line.point_at(foot.distance_m)
            if 0.0 < math.dist(join, gallery.start_m) <= 0.5 * other.width_m + 0.5:
                waypoints.insert(0, _vec3(join))
                start_distance = -_round(math.dist(join, gallery.start_m))
                landmarks.append(Landmark(f"J-{other.id}-{gallery.id}", LandmarkKind.JUNCTION,
                                          _vec3(join), _JUNCTION_RADIUS_M, other.id,
                                          _round(foot.distance_m),
                                          f"gallery '{gallery.id}' branches off '{other.id}'"))
        axes.append(Axis(gallery.id, tuple(waypoints), start_distance,
                         f"gallery {gallery.width_m} m x {gallery.height_m} m, floor centreline"))
    for shaft in truth.tunnel.shafts:
        centre = [0.5 * (a + b) for a, b in zip(shaft.opening.min_m, shaft.opening.max_m,
                                                strict=True)]
        axis, where = _on_nearest_axis(axes, centre)
        radius = 0.5 * max(b - a for a, b in zip(shaft.opening.min_m[:2],
                                                 shaft.opening.max_m[:2], strict=True))
        landmarks.append(Landmark(shaft.id, LandmarkKind.SHAFT,
                                  _vec3(axis.point_at(where.distance_m)), max(radius, 0.5),
                                  axis.name, _round(where.distance_m),
                                  f"{shaft.kind} shaft, open to the sky"))
    for door in truth.tunnel.fire_doors:
        axis, where = _on_nearest_axis(axes, door.position_m)
        landmarks.append(Landmark(door.id, LandmarkKind.FIRE_DOOR, _vec3(door.position_m),
                                  _FIRE_DOOR_RADIUS_M, axis.name, _round(where.distance_m),
                                  f"fire door, doorway {door.doorway_width_m} m wide"))
    return tuple(axes), landmarks


def _shelter_axes_and_landmarks(truth: WorldTruth) -> tuple[tuple[Axis, ...], list[Landmark]]:
    assert truth.shelter is not None
    axes: list[Axis] = []
    for corridor in truth.shelter.corridors:
        # Rectangular corridors: the centreline of the bounding box along its long side.
        xs = [p[0] for p in corridor.polygon_m]
        ys = [p[1] for p in corridor.polygon_m]
        z = corridor.floor_z_m
        if max(xs) - min(xs) >= max(ys) - min(ys):
            y = 0.5 * (min(ys) + max(ys))
            ends = ((min(xs), y, z), (max(xs), y, z))
        else:
            x = 0.5 * (min(xs) + max(xs))
            ends = ((x, min(ys), z), (x, max(ys), z))
        axes.append(Axis(corridor.id, (_vec3(ends[0]), _vec3(ends[1])), 0.0,
                         f"corridor, level {corridor.level}, floor centreline"))
    for ramp in truth.shelter.ramps:
        axes.append(Axis(ramp.id, (_vec3(ramp.start_m), _vec3(ramp.end_m)), 0.0,
                         f"ramp, {ramp.slope_deg} deg"))
    names = {a.name for a in axes}
    landmarks: list[Landmark] = []
    for door in truth.shelter.doors:
        on_axis = [name for name in door.between if name in names]
        if on_axis:
            axis = next(a for a in axes if a.name == on_axis[0])
            where = axis.project(door.position_m)
        else:
            axis, where = _on_nearest_axis(axes, door.position_m)
        landmarks.append(Landmark(door.id, LandmarkKind.DOOR, _vec3(door.position_m),
                                  max(0.5 * door.width_m, 0.3), axis.name,
                                  _round(where.distance_m),
                                  f"doorway {door.between[0]} / {door.between[1]}"))
    return tuple(axes), landmarks


# --- writing --------------------------------------------------------------------------------


def site_to_document(site: Site) -> dict[str, object]:
    """The YAML document (plain dicts and lists) of a site."""
    o = site.origin
    document: dict[str, object] = {
        "site_file_version": SITE_FILE_VERSION,
        "name": site.name,
        "site_type": site.site_type.value,
    }
    if site.description:
        document["description"] = site.description
    document["origin"] = {"datum": DATUM, "latitude_deg": o.latitude_deg,
                          "longitude_deg": o.longitude_deg, "height_m": o.height_m,
                          "x_axis_azimuth_deg": o.x_axis_azimuth_deg}
    axes: list[dict[str, object]] = []
    for axis in site.axes:
        entry: dict[str, object] = {"name": axis.name}
        if axis.description:
            entry["description"] = axis.description
        entry["start_distance_m"] = axis.start_distance_m
        entry["waypoints_m"] = [list(p) for p in axis.waypoints_m]
        axes.append(entry)
    document["axes"] = axes
    landmarks: list[dict[str, object]] = []
    for landmark in site.landmarks:
        item: dict[str, object] = {"id": landmark.id, "kind": landmark.kind.value,
                                   "position_m": list(landmark.position_m),
                                   "detection_radius_m": landmark.detection_radius_m}
        if landmark.axis is not None:
            item["axis"] = landmark.axis
        if landmark.distance_m is not None:
            item["distance_m"] = landmark.distance_m
        if landmark.description:
            item["description"] = landmark.description
        landmarks.append(item)
    document["landmarks"] = landmarks
    if site.tether is not None:
        t = site.tether
        document["tether"] = {"axis": t.axis, "zero_distance_m": t.zero_distance_m,
                              "stretch_nominal": t.stretch_nominal,
                              "stretch_sigma": t.stretch_sigma}
    return document


class _SiteDumper(yaml.SafeDumper):
    """Writes coordinate lists on one line and everything else as blocks."""


def _represent_list(dumper: yaml.SafeDumper, data: list[object]) -> yaml.Node:
    flow = bool(data) and all(isinstance(v, int | float) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_SiteDumper.add_representer(list, _represent_list)


def dump_site(site: Site) -> str:
    """YAML text of a site file (``load_site`` reads it back to an equal Site)."""
    header = (f"# Site file of '{site.name}' (format: docs/site_file.md).\n"
              "# Frames: site x/y/z in metres, z up; distances are chainages along an axis.\n")
    body = yaml.dump(site_to_document(site), Dumper=_SiteDumper, sort_keys=False,
                     allow_unicode=True, width=100)
    return header + body


# --- loading --------------------------------------------------------------------------------


def _record_lines(node: yaml.Node, where: str, lines: dict[str, int]) -> None:
    """Remember the 1-based line of every field path in a composed YAML tree."""
    lines[where] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = str(key_node.value)
            child = f"{where}.{name}" if where else name
            _record_lines(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, f"{where}[{i}]", lines)


class _Reader:
    """Typed access to a parsed YAML document, raising SiteFileError with file and line."""

    def __init__(self, source: str | Path, lines: Mapping[str, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, where: str, reason: str) -> NoReturn:
        """Raise the error for field ``where`` at its line (or its nearest parent's)."""
        probe = where
        while probe and probe not in self.lines:
            probe = _parent(probe)
        line = self.lines.get(probe)
        raise SiteFileError(self.source, reason, where or "<document>", line)

    def mapping(self, value: object, where: str, required: Sequence[str],
                optional: Sequence[str] = ()) -> dict[str, object]:
        """A mapping with exactly these keys (unknown keys are errors: typos never pass)."""
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {_show(value)}")
        for key in value:
            if key not in required and key not in optional:
                self.fail(_join(where, str(key)), "unknown field "
                          f"(expected: {', '.join([*required, *optional])})")
        for key in required:
            if key not in value:
                self.fail(_join(where, key), "missing required field")
        return {str(k): v for k, v in value.items()}

    def number(self, value: object, where: str) -> float:
        """A finite number."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            self.fail(where, "expected a finite number")
        return float(value)

    def text(self, value: object, where: str) -> str:
        """A non-empty string (YAML numbers are accepted as ids: ``id: 7``)."""
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(where, f"expected a string, got {_show(value)}")
        if value == "":
            self.fail(where, "must not be empty")
        return str(value)

    def vec3(self, value: object, where: str) -> Vec3:
        """Three numbers [x, y, z]."""
        if not isinstance(value, list) or len(value) != 3:
            self.fail(where, f"expected [x, y, z], got {_show(value)}")
        x, y, z = (self.number(v, f"{where}[{i}]") for i, v in enumerate(value))
        return (x, y, z)

    def items(self, value: object, where: str) -> list[object]:
        """A list."""
        if not isinstance(value, list):
            self.fail(where, f"expected a list, got {_show(value)}")
        return value

    def choice(self, value: object, enum_type: type[_E], where: str) -> _E:
        """One of an enum's values."""
        try:
            return enum_type(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in enum_type)
            self.fail(where, f"expected one of {choices}, got {_show(value)}")

    def build(self, where: str, factory: type[_T], **kwargs: Any) -> _T:
        """Construct a record, turning its validation errors into file errors."""
        try:
            return factory(**kwargs)
        except SiteFieldError as err:
            self.fail(_join(where, err.field_path), err.reason)
        except ValueError as err:
            self.fail(where, str(err))


def _parent(field_path: str) -> str:
    if field_path.endswith("]"):
        return field_path[: field_path.rfind("[")]
    return field_path.rsplit(".", 1)[0] if "." in field_path else ""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_axis(r: _Reader, value: object, where: str) -> Axis:
    m = r.mapping(value, where, ("name", "waypoints_m"), ("start_distance_m", "description"))
    waypoints = tuple(r.vec3(p, f"{where}.waypoints_m[{i}]")
                      for i, p in enumerate(r.items(m["waypoints_m"], f"{where}.waypoints_m")))
    return r.build(where, Axis, name=r.text(m["name"], f"{where}.name"), waypoints_m=waypoints,
                   start_distance_m=r.number(m.get("start_distance_m", 0.0),
                                             f"{where}.start_distance_m"),
                   description=str(m.get("description", "")))


def _read_landmark(r: _Reader, value: object, where: str) -> Landmark:
    m = r.mapping(value, where, ("id", "kind", "position_m", "detection_radius_m"),
                  ("axis", "distance_m", "description"))
    axis = m.get("axis")
    distance = m.get("distance_m")
    return r.build(
        where, Landmark, id=r.text(m["id"], f"{where}.id"),
        kind=r.choice(m["kind"], LandmarkKind, f"{where}.kind"),
        position_m=r.vec3(m["position_m"], f"{where}.position_m"),
        detection_radius_m=r.number(m["detection_radius_m"], f"{where}.detection_radius_m"),
        axis=None if axis is None else r.text(axis, f"{where}.axis"),
        distance_m=None if distance is None else r.number(distance, f"{where}.distance_m"),
        description=str(m.get("description", "")))


def _read_tether(r: _Reader, value: object, where: str) -> TetherCalibration:
    m = r.mapping(value, where, ("axis",), ("zero_distance_m", "stretch_nominal",
                                           "stretch_sigma"))
    defaults = TetherCalibration("-")
    return r.build(
        where, TetherCalibration, axis=r.text(m["axis"], f"{where}.axis"),
        zero_distance_m=r.number(m.get("zero_distance_m", defaults.zero_distance_m),
                                 f"{where}.zero_distance_m"),
        stretch_nominal=r.number(m.get("stretch_nominal", defaults.stretch_nominal),
                                 f"{where}.stretch_nominal"),
        stretch_sigma=r.number(m.get("stretch_sigma", defaults.stretch_sigma),
                               f"{where}.stretch_sigma"))


def parse_site(document: object, source: str | Path = "<memory>",
               lines: Mapping[str, int] | None = None) -> Site:
    """Validate a parsed YAML document as a Site (``lines``: field path -> line, for errors)."""
    r = _Reader(source, lines or {})
    m = r.mapping(document, "", ("site_file_version", "name", "site_type", "origin", "axes"),
                  ("description", "landmarks", "tether"))
    if m["site_file_version"] != SITE_FILE_VERSION:
        r.fail("site_file_version", f"expected {SITE_FILE_VERSION}, got "
               f"{_show(m['site_file_version'])}")
    o = r.mapping(m["origin"], "origin",
                  ("datum", "latitude_deg", "longitude_deg", "height_m", "x_axis_azimuth_deg"))
    if o["datum"] != DATUM:
        r.fail("origin.datum", f"expected {DATUM}, got {_show(o['datum'])}")
    origin = GeodeticOrigin(*(r.number(o[k], f"origin.{k}") for k in
                              ("latitude_deg", "longitude_deg", "height_m",
                               "x_axis_azimuth_deg")))
    axes = tuple(_read_axis(r, a, f"axes[{i}]")
                 for i, a in enumerate(r.items(m["axes"], "axes")))
    landmarks = tuple(_read_landmark(r, a, f"landmarks[{i}]")
                      for i, a in enumerate(r.items(m.get("landmarks", []), "landmarks")))
    tether = None if m.get("tether") is None else _read_tether(r, m["tether"], "tether")
    return r.build("", Site, name=r.text(m["name"], "name"),
                   site_type=r.choice(m["site_type"], SiteType, "site_type"), origin=origin,
                   axes=axes, landmarks=landmarks, tether=tether,
                   description=str(m.get("description", "")))


def load_site(path: str | Path) -> Site:
    """Read and validate a site file; SiteFileError names the file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SiteFileError(path, f"cannot read: {err}") from err
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise SiteFileError(path, f"malformed YAML: {problem}",
                            line=None if mark is None else mark.line + 1) from err
    if root is None:
        raise SiteFileError(path, "empty file")
    lines: dict[str, int] = {}
    _record_lines(root, "", lines)
    return parse_site(document, path, lines)

