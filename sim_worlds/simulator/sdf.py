"""Load an SDF world into typed, world-frame records for the headless simulator.

Only what the simulator needs is read: models (nested and included), links, their visual or
collision geometry and material, lights, sensors and the world's geodetic origin. Joints,
plugins and physics are ignored. Every pose is composed at load time into a 4x4 homogeneous
transform ``T_world_<thing>`` (float64, metres), so a consumer never walks the SDF tree.

Frames: a ``<pose>`` without ``relative_to`` is relative to its parent (the world for a
top-level model, the enclosing model for links and nested models, the link for visuals,
collisions, sensors and lights). ``relative_to`` may name that parent, ``__model__`` (the
enclosing model) or ``world``; any other frame is refused. Rotations are fixed-axis
roll, pitch, yaw (``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``) or, with
``rotation_format="quat_xyzw"``, a quaternion.

Every error is an :class:`SdfError` whose message starts with ``file:line:`` of the offending
element.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar
from xml.parsers import expat

import numpy as np
from numpy.typing import NDArray

from sim_worlds.simulator.errors import SdfError

Transform = NDArray[np.float64]
"""A 4x4 homogeneous rigid transform, float64, translation in metres."""
Rgba = tuple[float, float, float, float]
"""Colour as red, green, blue, alpha in [0, 1]."""
Vec3 = tuple[float, float, float]
"""Three floats: x, y, z."""

MIN_SDF_VERSION = (1, 6)
"""Oldest SDF version accepted (frames and relative_to semantics of 1.7+ are assumed)."""
MESH_SUFFIXES = frozenset({".obj", ".stl", ".ply", ".off"})
"""Mesh file types read (with Open3D); COLLADA (.dae) and others are refused."""
RESOURCE_PATH_VARIABLES = ("GZ_SIM_RESOURCE_PATH", "IGN_GAZEBO_RESOURCE_PATH", "SDF_PATH")
"""Environment variables whose colon-separated directories hold ``model://`` models."""

_BLACK: Rgba = (0.0, 0.0, 0.0, 1.0)
_DEFAULT_GREY: Rgba = (0.7, 0.7, 0.7, 1.0)
_LIDAR_TYPES = frozenset({"gpu_lidar", "lidar", "gpu_ray", "ray"})


# ---------------------------------------------------------------------------------------------
# Output records
# ---------------------------------------------------------------------------------------------


class ShapeKind(Enum):
    """Kind of an SDF geometry shape."""

    BOX = "box"
    CYLINDER = "cylinder"
    SPHERE = "sphere"
    PLANE = "plane"
    MESH = "mesh"
    CAPSULE = "capsule"
    ELLIPSOID = "ellipsoid"


@dataclass(frozen=True)
class Box:
    """Box centred on its frame; ``size_m`` are the full edge lengths along x, y, z."""

    size_m: Vec3
    kind: ClassVar[ShapeKind] = ShapeKind.BOX


@dataclass(frozen=True)
class Cylinder:
    """Solid cylinder centred on its frame, axis along local z."""

    radius_m: float
    length_m: float
    kind: ClassVar[ShapeKind] = ShapeKind.CYLINDER


@dataclass(frozen=True)
class Sphere:
    """Sphere centred on its frame."""

    radius_m: float
    kind: ClassVar[ShapeKind] = ShapeKind.SPHERE


@dataclass(frozen=True)
class Capsule:
    """Cylinder of ``length_m`` along local z capped by two hemispheres of ``radius_m``."""

    radius_m: float
    length_m: float
    kind: ClassVar[ShapeKind] = ShapeKind.CAPSULE


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid centred on its frame with semi-axes ``radii_m`` along local x, y, z."""

    radii_m: Vec3
    kind: ClassVar[ShapeKind] = ShapeKind.ELLIPSOID


@dataclass(frozen=True)
class Plane:
    """Finite zero-thickness rectangle through the frame origin, facing ``normal``.

    As in Gazebo, the rectangle's x/y extent ``size_m`` is measured along the local x/y axes
    turned by the shortest rotation that takes +z onto ``normal``.
    """

    normal: Vec3
    size_m: tuple[float, float]
    kind: ClassVar[ShapeKind] = ShapeKind.PLANE


@dataclass(frozen=True, eq=False)
class Mesh:
    """Triangle mesh read from a file, already scaled, in the geometry's local frame.

    ``vertices_m`` is (V, 3) float64, ``triangles`` (T, 3) int32 and ``triangle_uvs`` the
    file's texture coordinates per triangle corner, (T, 3, 2) float32, or None.
    """

    path: Path
    scale: Vec3
    vertices_m: NDArray[np.float64]
    triangles: NDArray[np.int32]
    triangle_uvs: NDArray[np.float32] | None
    kind: ClassVar[ShapeKind] = ShapeKind.MESH


Shape = Box | Cylinder | Sphere | Capsule | Ellipsoid | Plane | Mesh
"""Any supported geometry shape."""


@dataclass(frozen=True)
class Material:
    """Surface look of a visual: classic colours and an optional PBR albedo texture file."""

    diffuse_rgba: Rgba = _DEFAULT_GREY
    ambient_rgba: Rgba = _DEFAULT_GREY
    specular_rgba: Rgba = _BLACK
    emissive_rgba: Rgba = _BLACK
    albedo_map: Path | None = None


DEFAULT_MATERIAL = Material()
"""What a visual without ``<material>`` (or a collision) looks like: plain light grey."""


@dataclass(frozen=True, eq=False)
class Geometry:
    """One visual (or collision, for links without visuals) placed in the world."""

    name: str
    """Scoped name ``model::link::visual`` (nested models add ``outer::inner::``)."""
    model: str
    """Scoped name of the model that owns the link."""
    shape: Shape
    T_world_geom: Transform
    material: Material
    transparency: float
    laser_retro: float | None
    source: str
    """``file:line`` of the ``<visual>`` or ``<collision>`` element."""

    @property
    def kind(self) -> ShapeKind:
        """Shape kind of this geometry."""
        return self.shape.kind


class LightKind(Enum):
    """SDF light type."""

    POINT = "point"
    SPOT = "spot"
    DIRECTIONAL = "directional"


@dataclass(frozen=True, eq=False)
class Light:
    """A light source; ``attached_to`` is the scoped link name when it rides on a link."""

    name: str
    kind: LightKind
    T_world_light: Transform
    direction_world: NDArray[np.float64]
    """Unit (3,) direction the light points to (spot, directional), world frame at load time."""
    diffuse_rgba: Rgba
    specular_rgba: Rgba
    intensity: float
    range_m: float
    attenuation_constant: float
    attenuation_linear: float
    attenuation_quadratic: float
    spot_inner_angle_rad: float
    spot_outer_angle_rad: float
    spot_falloff: float
    cast_shadows: bool
    attached_to: str | None
    source: str


@dataclass(frozen=True)
class LidarSpec:
    """Scan pattern, range and noise of a ``lidar`` / ``gpu_lidar`` sensor."""

    horizontal_samples: int
    horizontal_min_angle_rad: float
    horizontal_max_angle_rad: float
    vertical_samples: int
    vertical_min_angle_rad: float
    vertical_max_angle_rad: float
    range_min_m: float
    range_max_m: float
    range_resolution_m: float
    noise_stddev_m: float


@dataclass(frozen=True)
class CameraSpec:
    """Optics and image size of a camera (also depth / rgbd cameras)."""

    horizontal_fov_rad: float
    width_px: int
    height_px: int
    pixel_format: str
    near_clip_m: float
    far_clip_m: float
    noise_stddev: float


@dataclass(frozen=True)
class ImuSpec:
    """Gaussian noise of an IMU, per axis x, y, z."""

    angular_velocity_noise_stddev_rad_s: Vec3
    linear_acceleration_noise_stddev_m_s2: Vec3


@dataclass(frozen=True)
class NavSatSpec:
    """Gaussian position noise of a navsat (GNSS) sensor."""

    horizontal_position_noise_stddev_m: float
    vertical_position_noise_stddev_m: float


@dataclass(frozen=True, eq=False)
class SensorSpec:
    """A ``<sensor>`` of a link: where it sits and its typed configuration."""

    name: str
    """Scoped name ``model::link::sensor``."""
    sensor_type: str
    model: str
    link: str
    """Scoped name of the link it is attached to."""
    update_rate_hz: float
    always_on: bool
    topic: str | None
    T_world_sensor: Transform
    """Pose at load time."""
    T_link_sensor: Transform
    lidar: LidarSpec | None
    camera: CameraSpec | None
    imu: ImuSpec | None
    navsat: NavSatSpec | None
    raw: Mapping[str, str]
    """Text of every leaf element below ``<sensor>`` by relative path, e.g. ``lidar/range/max``."""
    source: str


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """A model of the world (nested ones too) and its pose at load time."""

    name: str
    """Scoped name, ``outer::inner`` for nested models."""
    static: bool
    excluded: bool
    """True when named (or inside a model named) in ``exclude_models``."""
    T_world_model: Transform
    source: str


@dataclass(frozen=True, eq=False)
class LinkInfo:
    """A link and its pose at load time."""

    name: str
    """Scoped name ``model::link``."""
    model: str
    T_world_link: Transform
    source: str


@dataclass(frozen=True)
class SphericalCoordinates:
    """Geodetic position of the world origin (for navsat sensors)."""

    surface_model: str
    latitude_deg: float
    longitude_deg: float
    elevation_m: float
    heading_deg: float


@dataclass(frozen=True, eq=False)
class SdfWorld:
    """Everything the simulator needs from one SDF world file."""

    name: str
    path: Path
    sdf_version: str
    geometries: tuple[Geometry, ...]
    """Static scene geometry, without the excluded models."""
    lights: tuple[Light, ...]
    models: tuple[ModelInfo, ...]
    links: tuple[LinkInfo, ...]
    sensors: tuple[SensorSpec, ...]
    spherical_coordinates: SphericalCoordinates | None

    def model(self, name: str) -> ModelInfo:
        """The model with this scoped name; KeyError if there is none."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def sensors_of(self, model: str) -> tuple[SensorSpec, ...]:
        """Sensors of this model and of the models nested in it."""
        prefix = model + "::"
        return tuple(s for s in self.sensors if s.model == model or s.model.startswith(prefix))


# ---------------------------------------------------------------------------------------------
# Rotations
# ---------------------------------------------------------------------------------------------


def rotation_from_rpy(roll_rad: float, pitch_rad: float, yaw_rad: float) -> NDArray[np.float64]:
    """3x3 rotation of fixed-axis roll, pitch, yaw: ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    cr, sr = math.cos(roll_rad), math.sin(roll_rad)
    cp, sp = math.cos(pitch_rad), math.sin(pitch_rad)
    cy, sy = math.cos(yaw_rad), math.sin(yaw_rad)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> NDArray[np.float64]:
    """3x3 rotation of a quaternion given as x, y, z, w (normalised here)."""
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if norm == 0.0:
        raise ValueError("zero quaternion")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def pose_matrix(xyz_m: Vec3, rotation: NDArray[np.float64]) -> Transform:
    """4x4 homogeneous transform from a translation and a 3x3 rotation."""
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = xyz_m
    return transform


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


# ---------------------------------------------------------------------------------------------
# XML with line numbers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Source:
    """A parsed XML file: its root and the source line of every element."""

    path: Path
    root: ET.Element
    lines: Mapping[int, int]  # id(element) -> line; the root keeps every element alive

    def at(self, element: ET.Element) -> str:
        """``file:line`` of an element of this file."""
        return f"{self.path}:{self.lines.get(id(element), 0)}"

    def error(self, element: ET.Element, message: str) -> SdfError:
        """An SdfError located at an element."""
        return SdfError(f"{self.at(element)}: {message}")


def _parse_xml(path: Path) -> _Source:
    """Parse an XML file, recording the line number of every element."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SdfError(f"{path}:0: cannot read file: {err.strerror or err}") from err
    builder = ET.TreeBuilder()
    lines: dict[int, int] = {}
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = builder.start(tag, attrs)
        lines[id(element)] = parser.CurrentLineNumber

    def end(tag: str) -> None:
        builder.end(tag)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        reason = expat.ErrorString(err.code) if err.code is not None else str(err)
        raise SdfError(
            f"{path}:{err.lineno}: malformed XML: {reason} (column {err.offset})"
        ) from err
    return _Source(path=path, root=builder.close(), lines=lines)


def _sdf_version(source: _Source) -> str:
    """The version attribute of an ``<sdf>`` root, checked to be at least 1.6."""
    root = source.root
    if root.tag != "sdf":
        raise source.error(root, f"root element is <{root.tag}>, expected <sdf>")
    text = root.get("version")
    if text is None:
        raise source.error(root, "<sdf> has no version attribute")
    try:
        version = tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        raise source.error(root, f"<sdf version='{text}'> is not a version number") from None
    if version < MIN_SDF_VERSION:
        raise source.error(root, f"SDF version {text} is older than 1.6, which this loader needs")
    return text.strip()


# ---------------------------------------------------------------------------------------------
# Typed reading of element text
# ---------------------------------------------------------------------------------------------


def _numbers(source: _Source, element: ET.Element, count: int | tuple[int, ...]) -> list[float]:
    counts = (count,) if isinstance(count, int) else count
    text = (element.text or "").strip()
    try:
        values = [float(part) for part in text.split()]
    except ValueError:
        values = []
    wanted = " or ".join(str(c) for c in counts)
    if len(values) not in counts or not all(math.isfinite(v) for v in values):
        raise source.error(element, f"<{element.tag}> needs {wanted} numbers, got '{text}'")
    return values


def _child_numbers(
    source: _Source, parent: ET.Element | None, tag: str, default: list[float], count: int
) -> list[float]:
    element = None if parent is None else parent.find(tag)
    return default if element is None else _numbers(source, element, count)


def _child_float(source: _Source, parent: ET.Element | None, tag: str, default: float) -> float:
    return _child_numbers(source, parent, tag, [default], 1)[0]


def _child_int(source: _Source, parent: ET.Element | None, tag: str, default: int) -> int:
    element = None if parent is None else parent.find(tag)
    if element is None:
        return default
    value = _numbers(source, element, 1)[0]
    if value != int(value):
        raise source.error(element, f"<{tag}> must be an integer, got {value}")
    return int(value)


def _positive(source: _Source, element: ET.Element, what: str, value: float) -> float:
    if value <= 0.0:
        raise source.error(element, f"{what} must be positive, got {value}")
    return value


def _parse_bool(source: _Source, element: ET.Element) -> bool:
    text = (element.text or "").strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise source.error(element, f"<{element.tag}> must be true or false, got '{text}'")


def _child_bool(source: _Source, parent: ET.Element, tag: str, default: bool) -> bool:
    element = parent.find(tag)
    return default if element is None else _parse_bool(source, element)


def _rgba(source: _Source, parent: ET.Element, tag: str, default: Rgba) -> Rgba:
    element = parent.find(tag)
    if element is None:
        return default
    values = _numbers(source, element, (3, 4))
    if len(values) == 3:
        values.append(1.0)
    return (values[0], values[1], values[2], values[3])


def _parse_pose(source: _Source, element: ET.Element) -> Transform:
    """T_frame_child of a ``<pose>`` (euler_rpy in radians or degrees, or quat_xyzw)."""
    if not (element.text or "").strip():
        return np.eye(4)
    rotation_format = element.get("rotation_format", "euler_rpy")
    if rotation_format == "euler_rpy":
        values = _numbers(source, element, 6)
        degrees = element.get("degrees", "false").strip().lower()
        if degrees not in ("true", "false", "1", "0"):
            raise source.error(element, f"<pose degrees='{degrees}'> must be true or false")
        angles = values[3:]
        if degrees in ("true", "1"):
            angles = [math.radians(a) for a in angles]
        rotation = rotation_from_rpy(angles[0], angles[1], angles[2])
    elif rotation_format == "quat_xyzw":
        values = _numbers(source, element, 7)
        try:
            rotation = rotation_from_quaternion(values[3], values[4], values[5], values[6])
        except ValueError:
            raise source.error(element, "<pose> quaternion is all zeros") from None
    else:
        raise source.error(
            element, f"<pose rotation_format='{rotation_format}'> is not euler_rpy or quat_xyzw"
        )
    return pose_matrix((values[0], values[1], values[2]), rotation)


# ---------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Scope:
    """The frame a child element's pose is relative to by default."""

    T_world_parent: Transform
    parent_names: frozenset[str]
    """Names ``relative_to`` may use for the parent frame."""
    T_world_model: Transform | None
    """Frame ``__model__`` refers to; None at world level."""
    prefix: str
    """Scoped name of the parent ("" at world level)."""
    excluded: bool
    static: bool


def _scoped(prefix: str, name: str) -> str:
    return f"{prefix}::{name}" if prefix else name


def _required_name(source: _Source, element: ET.Element) -> str:
    name = element.get("name")
    if not name:
        raise source.error(element, f"<{element.tag}> has no name attribute")
    return name


def _resolve_pose(source: _Source, pose: ET.Element | None, scope: _Scope, what: str) -> Transform:
    """T_world_child of an element whose ``<pose>`` is ``pose`` (None: the parent frame)."""
    if pose is None:
        return scope.T_world_parent
    T_ref_child = _parse_pose(source, pose)
    relative_to = pose.get("relative_to")
    if relative_to is None or relative_to == "" or relative_to in scope.parent_names:
        T_world_ref = scope.T_world_parent
    elif relative_to == "world":
        T_world_ref = np.eye(4)
    elif relative_to == "__model__" and scope.T_world_model is not None:
        T_world_ref = scope.T_world_model
    else:
        allowed = sorted(
            {*scope.parent_names, "world"}
            | ({"__model__"} if scope.T_world_model is not None else set())
        )
        raise source.error(
            pose,
            f"<pose relative_to='{relative_to}'> of {what} names a frame this loader does not "
            f"resolve; use one of {', '.join(repr(a) for a in allowed)}",
        )
    result: Transform = T_world_ref @ T_ref_child
    return result


def _resource_dirs(world_dir: Path) -> list[Path]:
    """Directories searched for ``model://NAME``, in order."""
    dirs = [world_dir, world_dir / "models"]
    for variable in RESOURCE_PATH_VARIABLES:
        for entry in os.environ.get(variable, "").split(os.pathsep):
            if entry:
                dirs.append(Path(entry))
    return dirs


def _model_sdf_file(model_dir: Path) -> Path:
    """The SDF file of a model directory: model.config's ``<sdf>`` (newest), else model.sdf."""
    config_path = model_dir / "model.config"
    if config_path.is_file():
        config = _parse_xml(config_path)
        best: tuple[tuple[int, ...], str] | None = None
        for element in config.root.iter("sdf"):
            name = (element.text or "").strip()
            if not name:
                continue
            try:
                version = tuple(int(p) for p in element.get("version", "0").split("."))
            except ValueError:
                version = (0,)
            if best is None or version > best[0]:
                best = (version, name)
        if best is not None:
            return model_dir / best[1]
    return model_dir / "model.sdf"


def _read_mesh(
    path: Path,
) -> tuple[NDArray[np.float64], NDArray[np.int32], NDArray[np.float32] | None]:
    """Vertices, triangles and per-corner uvs of a mesh file (open3d reader)."""
    import open3d  # slow import (0.7 s): only when a world has meshes

    mesh = open3d.io.read_triangle_mesh(path)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.int32)
    uvs: NDArray[np.float32] | None = None
    if mesh.has_triangle_uvs():
        uvs = np.asarray(mesh.triangle_uvs, dtype=np.float32).reshape(-1, 3, 2)
        if uvs.shape[0] != triangles.shape[0]:
            uvs = None
    return vertices, triangles, uvs


class _Loader:
    """Walks one world file (and what it includes), collecting world-frame records."""

    def __init__(self, world_path: Path, exclude_models: Collection[str]) -> None:
        self.model_dirs = _resource_dirs(world_path.parent)
        self.exclude = frozenset(exclude_models)
        self.excluded_found: set[str] = set()
        self.include_stack: list[Path] = [world_path.resolve()]
        self.geometries: list[Geometry] = []
        self.lights: list[Light] = []
        self.models: list[ModelInfo] = []
        self.links: list[LinkInfo] = []
        self.sensors: list[SensorSpec] = []

    # -- resources -----------------------------------------------------------------------------

    def resolve_uri(self, source: _Source, element: ET.Element, uri: str, what: str) -> Path:
        """Path a URI names: model://NAME/..., file://..., absolute or relative to the file."""
        if uri.startswith(("http://", "https://")):
            raise source.error(
                element, f"{what} uri '{uri}' needs the network (Gazebo Fuel); use a local copy"
            )
        if uri.startswith("model://"):
            name, _, rest = uri[len("model://") :].partition("/")
            candidates = [directory / name for directory in self.model_dirs]
            for candidate in candidates:
                if candidate.is_dir():
                    return candidate / rest if rest else candidate
            searched = ", ".join(str(c) for c in candidates)
            raise source.error(element, f"{what} uri '{uri}' not found; searched: {searched}")
        path = Path(uri[len("file://") :] if uri.startswith("file://") else uri)
        return path if path.is_absolute() else source.path.parent / path

    def resolve_file(self, source: _Source, element: ET.Element, what: str) -> Path:
        """Existing file named by the text of ``element`` (a URI)."""
        uri = (element.text or "").strip()
        if not uri:
            raise source.error(element, f"{what} <{element.tag}> is empty")
        path = self.resolve_uri(source, element, uri, what)
        if not path.is_file():
            raise source.error(element, f"{what} file '{uri}' not found (looked at {path})")
        return path

    # -- world ---------------------------------------------------------------------------------

    def world(self, source: _Source, world: ET.Element) -> None:
        """Collect the models, includes and lights of a ``<world>``."""
        scope = _Scope(
            T_world_parent=np.eye(4),
            parent_names=frozenset({"world"}),
            T_world_model=None,
            prefix="",
            excluded=False,
            static=False,
        )
        for child in world:
            if child.tag == "model":
                self.model(source, child, scope)
            elif child.tag == "include":
                self.include(source, child, scope)
            elif child.tag == "light":
                self.light(source, child, scope, attached_to=None)

    def include(self, source: _Source, include: ET.Element, scope: _Scope) -> None:
        """Load the model an ``<include>`` names, with its name/pose/static overrides."""
        uri_element = include.find("uri")
        if uri_element is None or not (uri_element.text or "").strip():
            raise source.error(include, "<include> has no <uri>")
        uri = (uri_element.text or "").strip()
        target = self.resolve_uri(source, uri_element, uri, "<include>")
        sdf_path = _model_sdf_file(target) if target.is_dir() else target
        if not sdf_path.is_file():
            raise source.error(
                uri_element, f"<include> uri '{uri}' resolves to {sdf_path}, which does not exist"
            )
        if sdf_path.resolve() in self.include_stack:
            raise source.error(uri_element, f"<include> uri '{uri}' includes itself ({sdf_path})")
        included = _parse_xml(sdf_path)
        _sdf_version(included)
        model = included.root.find("model")
        if model is None:
            raise included.error(
                included.root, f"has no <model> (included from {source.at(include)})"
            )
        name = (include.findtext("name") or "").strip() or None
        pose = include.find("pose")
        static = include.find("static")
        self.include_stack.append(sdf_path.resolve())
        try:
            self.model(
                included,
                model,
                scope,
                name_override=name,
                pose_override=None if pose is None else (source, pose),
                static_override=None if static is None else _parse_bool(source, static),
            )
        finally:
            self.include_stack.pop()

    def model(
        self,
        source: _Source,
        model: ET.Element,
        scope: _Scope,
        *,
        name_override: str | None = None,
        pose_override: tuple[_Source, ET.Element] | None = None,
        static_override: bool | None = None,
    ) -> None:
        """Collect a model: its links, nested models and includes."""
        local_name = name_override or _required_name(source, model)
        name = _scoped(scope.prefix, local_name)
        what = f"model '{name}'"
        if pose_override is not None:
            T_world_model = _resolve_pose(pose_override[0], pose_override[1], scope, what)
        else:
            T_world_model = _resolve_pose(source, model.find("pose"), scope, what)
        excluded = scope.excluded or name in self.exclude
        if name in self.exclude:
            self.excluded_found.add(name)
        if static_override is not None:
            static = scope.static or static_override
        else:
            static = scope.static or _child_bool(source, model, "static", False)
        self.models.append(
            ModelInfo(
                name=name,
                static=static,
                excluded=excluded,
                T_world_model=_frozen(T_world_model),
                source=source.at(model),
            )
        )
        inner = _Scope(
            T_world_parent=T_world_model,
            parent_names=frozenset({"__model__", local_name}),
            T_world_model=T_world_model,
            prefix=name,
            excluded=excluded,
            static=static,
        )
        for child in model:
            if child.tag == "link":
                self.link(source, child, inner)
            elif child.tag == "model":
                self.model(source, child, inner)
            elif child.tag == "include":
                self.include(source, child, inner)

    def link(self, source: _Source, link: ET.Element, scope: _Scope) -> None:
        """Collect a link's geometry (visuals, else collisions), lights and sensors."""
        local_name = _required_name(source, link)
        name = _scoped(scope.prefix, local_name)
        T_world_link = _resolve_pose(source, link.find("pose"), scope, f"link '{name}'")
        self.links.append(
            LinkInfo(
                name=name,
                model=scope.prefix,
                T_world_link=_frozen(T_world_link),
                source=source.at(link),
            )
        )
        inner = _Scope(
            T_world_parent=T_world_link,
            parent_names=frozenset({local_name}),
            T_world_model=scope.T_world_model,
            prefix=name,
            excluded=scope.excluded,
            static=scope.static,
        )
        if not scope.excluded:
            elements = link.findall("visual") or link.findall("collision")
            for element in elements:
                self.geometry(source, element, inner, scope.prefix, local_name)
        for sensor in link.findall("sensor"):
            self.sensor(source, sensor, inner, scope.prefix)
        for light in link.findall("light"):
            self.light(source, light, inner, attached_to=name)

    # -- geometry ------------------------------------------------------------------------------

    def geometry(
        self, source: _Source, element: ET.Element, scope: _Scope, model: str, link: str
    ) -> None:
        """Collect one ``<visual>`` or ``<collision>``."""
        name = _scoped(scope.prefix, _required_name(source, element))
        T_world_geom = _resolve_pose(
            source, element.find("pose"), scope, f"<{element.tag}> '{name}'"
        )
        geometry = element.find("geometry")
        if geometry is None:
            raise source.error(element, f"<{element.tag}> of link '{link}' has no <geometry>")
        shape = self.shape(source, geometry, link)
        if shape is None:
            return
        material_element = element.find("material") if element.tag == "visual" else None
        material = (
            DEFAULT_MATERIAL
            if material_element is None
            else self.material(source, material_element)
        )
        transparency = _child_float(source, element, "transparency", 0.0)
        laser_retro_element = element.find("laser_retro")
        self.geometries.append(
            Geometry(
                name=name,
                model=model,
                shape=shape,
                T_world_geom=_frozen(T_world_geom),
                material=material,
                transparency=transparency,
                laser_retro=None
                if laser_retro_element is None
                else _numbers(source, laser_retro_element, 1)[0],
                source=source.at(element),
            )
        )

    def shape(self, source: _Source, geometry: ET.Element, link: str) -> Shape | None:
        """The shape inside a ``<geometry>``; None for ``<empty>``."""
        children = list(geometry)
        if not children:
            raise source.error(geometry, f"<geometry> of link '{link}' is empty")
        element = children[0]
        if element.tag == "empty":
            return None
        builder = _SHAPE_BUILDERS.get(element.tag)
        if builder is None:
            raise source.error(
                element, f"<geometry> of link '{link}' has unsupported <{element.tag}>"
            )
        return builder(self, source, element)

    def material(self, source: _Source, element: ET.Element) -> Material:
        """Colours and albedo texture of a ``<material>``."""
        diffuse = element.find("diffuse")
        ambient_default = _DEFAULT_GREY
        diffuse_rgba = _rgba(source, element, "diffuse", _DEFAULT_GREY)
        if diffuse is not None:
            ambient_default = diffuse_rgba
        ambient_rgba = _rgba(source, element, "ambient", ambient_default)
        if diffuse is None and element.find("ambient") is not None:
            diffuse_rgba = ambient_rgba
        albedo_map: Path | None = None
        for workflow in ("metal", "specular"):
            albedo = element.find(f"pbr/{workflow}/albedo_map")
            if albedo is not None and (albedo.text or "").strip():
                albedo_map = self.resolve_file(source, albedo, "texture")
                break
        return Material(
            diffuse_rgba=diffuse_rgba,
            ambient_rgba=ambient_rgba,
            specular_rgba=_rgba(source, element, "specular", _BLACK),
            emissive_rgba=_rgba(source, element, "emissive", _BLACK),
            albedo_map=albedo_map,
        )

    # -- lights and sensors --------------------------------------------------------------------

    def light(
        self, source: _Source, element: ET.Element, scope: _Scope, attached_to: str | None
    ) -> None:
        """Collect a ``<light>`` of the world or of a link."""
        name = _scoped(scope.prefix, _required_name(source, element))
        kind_text = element.get("type", "point")
        try:
            kind = LightKind(kind_text)
        except ValueError:
            raise source.error(
                element, f"<light> '{name}' has unknown type '{kind_text}'"
            ) from None
        T_world_light = _resolve_pose(source, element.find("pose"), scope, f"light '{name}'")
        direction = np.array(_child_numbers(source, element, "direction", [0.0, 0.0, -1.0], 3))
        direction_world = T_world_light[:3, :3] @ direction
        norm = float(np.linalg.norm(direction_world))
        if norm == 0.0:
            raise source.error(element, f"<direction> of light '{name}' is the zero vector")
        attenuation = element.find("attenuation")
        spot = element.find("spot")
        self.lights.append(
            Light(
                name=name,
                kind=kind,
                T_world_light=_frozen(T_world_light),
                direction_world=_frozen(direction_world / norm),
                diffuse_rgba=_rgba(source, element, "diffuse", (1.0, 1.0, 1.0, 1.0)),
                specular_rgba=_rgba(source, element, "specular", (0.1, 0.1, 0.1, 1.0)),
                intensity=_child_float(source, element, "intensity", 1.0),
                range_m=_child_float(source, attenuation, "range", 10.0),
                attenuation_constant=_child_float(source, attenuation, "constant", 1.0),
                attenuation_linear=_child_float(source, attenuation, "linear", 1.0),
                attenuation_quadratic=_child_float(source, attenuation, "quadratic", 0.0),
                spot_inner_angle_rad=_child_float(source, spot, "inner_angle", 0.0),
                spot_outer_angle_rad=_child_float(source, spot, "outer_angle", 0.0),
                spot_falloff=_child_float(source, spot, "falloff", 0.0),
                cast_shadows=_child_bool(source, element, "cast_shadows", False),
                attached_to=attached_to,
                source=source.at(element),
            )
        )

    def sensor(self, source: _Source, element: ET.Element, scope: _Scope, model: str) -> None:
        """Collect a ``<sensor>`` of a link with its typed configuration."""
        name = _scoped(scope.prefix, _required_name(source, element))
        sensor_type = element.get("type", "")
        if not sensor_type:
            raise source.error(element, f"<sensor> '{name}' has no type attribute")
        T_world_sensor = _resolve_pose(source, element.find("pose"), scope, f"sensor '{name}'")
        T_link_sensor = np.linalg.inv(scope.T_world_parent) @ T_world_sensor
        lidar_element = element.find("lidar")
        if lidar_element is None:
            lidar_element = element.find("ray")
        camera_element = element.find("camera")
        imu_element = element.find("imu")
        navsat_element = element.find("navsat")
        if sensor_type in _LIDAR_TYPES and lidar_element is None:
            raise source.error(element, f"{sensor_type} sensor '{name}' has no <lidar> element")
        topic = (element.findtext("topic") or "").strip() or None
        self.sensors.append(
            SensorSpec(
                name=name,
                sensor_type=sensor_type,
                model=model,
                link=scope.prefix,
                update_rate_hz=_child_float(source, element, "update_rate", 0.0),
                always_on=_child_bool(source, element, "always_on", False),
                topic=topic,
                T_world_sensor=_frozen(T_world_sensor),
                T_link_sensor=_frozen(T_link_sensor),
                lidar=None if lidar_element is None else _lidar_spec(source, lidar_element, name),
                camera=None if camera_element is None else _camera_spec(source, camera_element),
                imu=None if imu_element is None else _imu_spec(source, imu_element),
                navsat=None if navsat_element is None else _navsat_spec(source, navsat_element),
                raw=MappingProxyType(_leaf_texts(element)),
                source=source.at(element),
            )
        )


# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------


def _box(loader: _Loader, source: _Source, element: ET.Element) -> Shape:
    size = _child_numbers(source, element, "size", [1.0, 1.0, 1.0], 3)
    for value in size:
        _positive(source, element, "<box> <size>", value)
    return Box(size_m=(size[0], size[1], size[2]))


def _radius_length(
    source: _Source, element: ET.Element, default_radius: float
) -> tuple[float, float]:
    radius = _child_float(source, element, "radius", default_radius)
    length = _child_float(source, element, "length", 1.0)
    _positive(source, element, f"<{element.tag}> <radius>", radius)
    _positive(source, element, f"<{element.tag}> <length>", length)
    return radius, length


def _cylinder(loader: _Loader, source: _Source, element: ET.Element) -> Shape:
    radius, length = _radius_length(source, element, 1.0)
    return Cylinder(radius_m=radius, length_m=length)


def _capsule(loader: _Loader, source: _Source, element: ET.Element) -> Shape:
    radius, length = _radius_length(source, element, 0.5)
    return Capsule(radius_m=radius, length_m=length)


def _sphere(loader: _Loader, source: _Source, element: ET.Element) -> Shape:
    radius = _child_float(source, element, "radius", 1.0)
    return Sphere(radius_m=_positive(source, element, "<sphere> <radius>", radius))


def _ellipsoid(loader: _Loader, source: _Source, element: ET.Element) -> Shape:
    radii = _child_numbers(source, element, "radii", [1.0, 1.0, 1.0], 3)
    for value in radii:
        _positive(source, element, "<ellipsoid> <radii>", value)
    return Ellipsoid(radii_m=(radii[0], radii[1], radii[2]))


def _plane(loader: _Loader, source: _Source, element: ET.Element) -> Shape:
    normal = np.array(_child_numbers(source, element, "normal", [0.0, 0.0, 1.0], 3))
    norm = float(np.linalg.norm(normal))
    if norm == 0.0:
        raise source.error(element, "<plane> <normal> is the zero vector")
    size = _child_numbers(source, element, "size", [1.0, 1.0], 2)
    for value in size:
        _positive(source, element, "<plane> <size>", value)
    unit = normal / norm
    return Plane(normal=(float(unit[0]), float(unit[1]), float(unit[2])), size_m=(size[0], size[1]))


def _mesh(loader: _Loader, source: _Source, element: ET.Element) -> Shape:
    if element.find("submesh") is not None:
        raise source.error(element, "<mesh> <submesh> is not supported; export the part alone")
    uri = element.find("uri")
    if uri is None:
        raise source.error(element, "<mesh> has no <uri>")
    path = loader.resolve_file(source, uri, "mesh")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise source.error(
            uri,
            f"mesh file {path} has unsupported format '{path.suffix}'; "
            f"convert it to one of {', '.join(sorted(MESH_SUFFIXES))}",
        )
    scale = _child_numbers(source, element, "scale", [1.0, 1.0, 1.0], 3)
    if any(value == 0.0 for value in scale):
        raise source.error(element, f"<mesh> <scale> has a zero component: {scale}")
    vertices, triangles, uvs = _read_mesh(path)
    if triangles.shape[0] == 0:
        raise source.error(uri, f"mesh file {path} has no triangles (unreadable or empty)")
    vertices = vertices * np.array(scale)
    return Mesh(
        path=path,
        scale=(scale[0], scale[1], scale[2]),
        vertices_m=_frozen(vertices),
        triangles=_frozen(triangles),
        triangle_uvs=None if uvs is None else _frozen(uvs),
    )


_SHAPE_BUILDERS: Mapping[str, Callable[[_Loader, _Source, ET.Element], Shape]] = {
    "box": _box,
    "cylinder": _cylinder,
    "sphere": _sphere,
    "capsule": _capsule,
    "ellipsoid": _ellipsoid,
    "plane": _plane,
    "mesh": _mesh,
}


# ---------------------------------------------------------------------------------------------
# Sensor configuration
# ---------------------------------------------------------------------------------------------


def _leaf_texts(element: ET.Element) -> dict[str, str]:
    """Text of every leaf below ``element`` keyed by its slash-separated relative path."""
    texts: dict[str, str] = {}

    def walk(node: ET.Element, path: str) -> None:
        children = list(node)
        if not children:
            texts.setdefault(path, (node.text or "").strip())
        for child in children:
            walk(child, f"{path}/{child.tag}" if path else child.tag)

    for child in element:
        walk(child, child.tag)
    return texts


def _text(parent: ET.Element | None, tag: str) -> str:
    text = None if parent is None else parent.findtext(tag)
    return (text or "").strip()


def _noise_stddev(source: _Source, parent: ET.Element | None) -> float:
    noise = None if parent is None else parent.find("noise")
    return _child_float(source, noise, "stddev", 0.0)


def _lidar_spec(source: _Source, element: ET.Element, name: str) -> LidarSpec:
    horizontal = element.find("scan/horizontal")
    vertical = element.find("scan/vertical")
    range_element = element.find("range")
    if range_element is None or range_element.find("max") is None:
        raise source.error(element, f"lidar of sensor '{name}' has no <range><max>")
    return LidarSpec(
        horizontal_samples=_child_int(source, horizontal, "samples", 640),
        horizontal_min_angle_rad=_child_float(source, horizontal, "min_angle", 0.0),
        horizontal_max_angle_rad=_child_float(source, horizontal, "max_angle", 0.0),
        vertical_samples=_child_int(source, vertical, "samples", 1),
        vertical_min_angle_rad=_child_float(source, vertical, "min_angle", 0.0),
        vertical_max_angle_rad=_child_float(source, vertical, "max_angle", 0.0),
        range_min_m=_child_float(source, range_element, "min", 0.0),
        range_max_m=_child_float(source, range_element, "max", 0.0),
        range_resolution_m=_child_float(source, range_element, "resolution", 0.0),
        noise_stddev_m=_noise_stddev(source, element),
    )


def _camera_spec(source: _Source, element: ET.Element) -> CameraSpec:
    image = element.find("image")
    clip = element.find("clip")
    return CameraSpec(
        horizontal_fov_rad=_child_float(source, element, "horizontal_fov", 1.047),
        width_px=_child_int(source, image, "width", 320),
        height_px=_child_int(source, image, "height", 240),
        pixel_format=_text(image, "format") or "R8G8B8",
        near_clip_m=_child_float(source, clip, "near", 0.1),
        far_clip_m=_child_float(source, clip, "far", 100.0),
        noise_stddev=_noise_stddev(source, element),
    )


def _axis_noise(source: _Source, parent: ET.Element | None) -> Vec3:
    values = tuple(
        _noise_stddev(source, None if parent is None else parent.find(axis))
        for axis in ("x", "y", "z")
    )
    return (values[0], values[1], values[2])


def _imu_spec(source: _Source, element: ET.Element) -> ImuSpec:
    return ImuSpec(
        angular_velocity_noise_stddev_rad_s=_axis_noise(source, element.find("angular_velocity")),
        linear_acceleration_noise_stddev_m_s2=_axis_noise(
            source, element.find("linear_acceleration")
        ),
    )


def _navsat_spec(source: _Source, element: ET.Element) -> NavSatSpec:
    return NavSatSpec(
        horizontal_position_noise_stddev_m=_noise_stddev(
            source, element.find("position_sensing/horizontal")
        ),
        vertical_position_noise_stddev_m=_noise_stddev(
            source, element.find("position_sensing/vertical")
        ),
    )


def _spherical_coordinates(source: _Source, world: ET.Element) -> SphericalCoordinates | None:
    element = world.find("spherical_coordinates")
    if element is None:
        return None
    return SphericalCoordinates(
        surface_model=(element.findtext("surface_model") or "EARTH_WGS84").strip(),
        latitude_deg=_child_float(source, element, "latitude_deg", 0.0),
        longitude_deg=_child_float(source, element, "longitude_deg", 0.0),
        elevation_m=_child_float(source, element, "elevation", 0.0),
        heading_deg=_child_float(source, element, "heading_deg", 0.0),
    )


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def load_world(path: Path, exclude_models: Collection[str] = ()) -> SdfWorld:
    """Load an SDF world file; models in ``exclude_models`` give sensors but no geometry.

    ``model://NAME`` URIs are looked up in the world file's directory, its ``models``
    subdirectory, then the directories of ``GZ_SIM_RESOURCE_PATH``, ``IGN_GAZEBO_RESOURCE_PATH``
    and ``SDF_PATH``. A name in ``exclude_models`` that is no model of the world is an error.
    """
    source = _parse_xml(path)
    version = _sdf_version(source)
    world = source.root.find("world")
    if world is None:
        raise source.error(source.root, "<sdf> has no <world>")
    loader = _Loader(path, exclude_models)
    loader.world(source, world)
    missing = sorted(loader.exclude - loader.excluded_found)
    if missing:
        known = ", ".join(model.name for model in loader.models) or "none"
        raise SdfError(
            f"{path}:{source.lines.get(id(world), 0)}: exclude_models names "
            f"{', '.join(repr(m) for m in missing)}, which the world does not have "
            f"(models: {known})"
        )
    return SdfWorld(
        name=world.get("name", path.stem),
        path=path,
        sdf_version=version,
        geometries=tuple(loader.geometries),
        lights=tuple(loader.lights),
        models=tuple(loader.models),
        links=tuple(loader.links),
        sensors=tuple(loader.sensors),
        spherical_coordinates=_spherical_coordinates(source, world),
    )
