"""Ray-traced camera lit by the robot's own lamp, the only light underground.

A pinhole camera looking along its link's +x axis (Gazebo's convention). Hits are shaded by
the lamp (an SDF spot light riding on the robot: Gazebo's constant/linear/quadratic
attenuation and range, cosine of incidence, spot cone), plus ambient daylight where the world
has it (under an open shaft). Surfaces show their material colour or their albedo texture, so
painted-on defects appear where the geometry puts them. Auto-exposure, gamma and sensor noise
finish the frame, returned as 8-bit BGR.

Speed (a 640 x 480 frame in 15-20 ms on two cores, about a third of it in Embree) comes from
casting one ray per 2 x 2 pixel block. The lamp light of each ray is smooth, so it is
interpolated to full resolution; texture coordinates are interpolated only between rays that
hit the same face of the same geometry (nearest ray elsewhere), and every pixel then looks up
its own texel, so thin cracks keep full-resolution detail. Object outlines are resolved to
2 pixels. Texels come from rip-maps (textures halved in width and height separately), picked
per ray from how many texels lie between neighbouring rays, so distant and stretched textures
neither shimmer nor blur more than they must.

Colour arithmetic: albedo maps and material colours are sRGB (gamma-encoded: a diffuse of 0.5
looks like a texel of 128), light is linear. Since gamma is a power law,
``(albedo * light) ** (1 / 2.2)`` is ``texel * light ** (1 / 2.2)``, so the full-resolution
work is one fixed-point multiply per pixel.

Texture scale: the worlds stretch uv (0..1) over each face. Albedo maps of surface materials
(concrete, corrosion, ...) are painted for a patch of a given size (``DEFAULT_TEXTURE_TILE_M``)
and repeat at that physical scale, each face starting at its own place in the texture; any
other map (a crack, a leak, a damp patch: one feature per image) is stretched once over its
face, the defect patch that carries it.

Water: a geometry with ``<transparency>`` > 0 (sewage in the invert, puddles) is murky water.
Its colour mixes its own dark diffuse colour with the bottom beneath (seen through the
surface, dimmed and tinted by the murk) by the transparency, plus a Fresnel reflection of
what lies above it; ripples drawn on the surface give it texture. The refracted and reflected
rays are cast for every 4th water ray in each direction and interpolated: murk and ripples
blur them anyway.

Zoom and aim: ``Camera.zoom_to`` narrows the lens's field of view (the image size stays) and
``CameraHead`` turns the camera on a pan-tilt head, as on an inspection crawler's zoom camera.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.scene import RaycastScene, RayHits
from sim_worlds.simulator.sdf import (
    Box,
    CameraSpec,
    Capsule,
    Cylinder,
    Ellipsoid,
    Geometry,
    Light,
    Material,
    Mesh,
    Plane,
    Sphere,
)

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
Image = NDArray[np.uint8]


@dataclass(frozen=True)
class Lamp:
    """The robot's spot lamp, in the camera's frame."""

    position_camera_m: tuple[float, float, float]
    intensity: float
    attenuation: tuple[float, float, float]
    """Constant, linear, quadratic terms: irradiance ~ 1 / (c + l d + q d^2)."""
    cone_inner_rad: float
    cone_outer_rad: float
    direction_camera: tuple[float, float, float] = (1.0, 0.0, 0.0)
    """Unit axis of the spot cone in the camera frame (default: the optical axis)."""
    range_m: float = math.inf
    """No light beyond this distance (SDF ``<attenuation><range>``)."""

    @classmethod
    def from_light(cls, light: Light, T_world_camera: FloatArray) -> Lamp:
        """The SDF ``light`` (posed at load time, like the camera) seen from the camera."""
        T_camera_light = np.linalg.inv(T_world_camera) @ light.T_world_light
        x, y, z = (float(v) for v in T_camera_light[:3, 3])
        axis = T_world_camera[:3, :3].T @ np.asarray(light.direction_world, dtype=np.float64)
        norm = float(np.linalg.norm(axis))
        ax, ay, az = (float(v) for v in axis / norm) if norm > 0.0 else (1.0, 0.0, 0.0)
        outer = light.spot_outer_angle_rad or math.radians(60.0)
        return cls(
            (x, y, z),
            light.intensity,
            (light.attenuation_constant, light.attenuation_linear, light.attenuation_quadratic),
            min(light.spot_inner_angle_rad, outer),
            outer,
            (ax, ay, az),
            light.range_m if light.range_m > 0.0 else math.inf,
        )


DEFAULT_LAMP = Lamp(
    (0.0, 0.0, 0.05), 1.0, (0.3, 0.02, 0.02), math.radians(35.0), math.radians(60.0)
)
EXPOSURE_GAIN = 2.5
"""Brightness of a unit irradiance on a white surface, before gamma: the fixed gain without
auto-exposure, and where auto-exposure starts."""
GAMMA = 2.2
AUTO_EXPOSURE_RATE = 0.6
"""Fraction of the (log) way to the metered gain the exposure moves each frame: 94 % in 3."""
AUTO_EXPOSURE_MID = 0.18
"""Target mean linear brightness of the frame (mid grey)."""
AUTO_EXPOSURE_HIGH = 0.8
"""Target linear brightness of the frame's 99th percentile: the lit wall is not blown out."""
AUTO_EXPOSURE_GAIN_RANGE = (1e-3, 100.0)
"""Least and most gain auto-exposure uses (shortest exposure; longest exposure times the
highest analogue gain)."""
DEFAULT_TEXTURE_TILE_M: Mapping[str, float] = {
    "concrete": 0.6,
    "corrosion": 0.4,
    "scale": 0.5,
    "sediment": 0.5,
    "roots": 0.6,
}
"""Physical size (m) of one repeat of the albedo maps (by file stem) that tile."""
WATER_REFRACTIVE_INDEX = 1.33
WATER_RIPPLE_TILE_M = 0.5
"""Size (m) of one repeat of the ripples and scum drawn on water surfaces."""
WATER_MURK_M = 0.15
"""Light path in the water that dims the bottom beneath it by 1/e, in the colour channel the
water's diffuse colour has most of; shorter in the others (sewage is murky)."""
_WATER_RAY_STEP = 4  # refracted / reflected rays for every 4th water ray in each direction
_FRESNEL_F0 = ((WATER_REFRACTIVE_INDEX - 1.0) / (WATER_REFRACTIVE_INDEX + 1.0)) ** 2
_EXPOSURE_SCALE = 32768.0  # 16-bit light of 32768 leaves a texel as it is (headroom: 2x)
_TEXTURE_PHASE_SEED = 7  # where in its texture each tiled face starts: fixed, frames repeat
_RIPPLE_PX = 256
_MAX_RIP_LEVEL = 6  # coarsest rip-map: 64 texels per pixel
_NOISE_MARGIN_PX = 256  # the noise bank is this much larger than a frame, for random offsets
_LUMINANCE_BGR = np.array([0.0722, 0.7152, 0.2126], dtype=np.float32)


def projection(spec: CameraSpec, point_camera_m: FloatArray) -> tuple[float, float] | None:
    """Pixel (u, v) of a point in the camera link frame (x forward), or None behind it."""
    x, y, z = (float(v) for v in point_camera_m)
    if x <= 0.0:
        return None
    f = focal_px(spec)
    return 0.5 * spec.width_px - f * y / x, 0.5 * spec.height_px - f * z / x


def focal_px(spec: CameraSpec) -> float:
    """Focal length in pixels."""
    return 0.5 * spec.width_px / math.tan(0.5 * spec.horizontal_fov_rad)


ZOOM_FOV_LIMITS_RAD = (math.radians(4.0), math.radians(120.0))
"""Narrowest and widest horizontal field of view ``Camera.zoom_to`` accepts."""


@dataclass(frozen=True)
class CameraHead:
    """Pan-tilt-zoom state of the camera on its head, relative to its mount.

    Pan turns left (about the mount's z, up), tilt looks up (about the panned y, left), both
    in radians; ``horizontal_fov_rad`` None is the lens's widest setting (the SDF's field).
    """

    pan_rad: float = 0.0
    tilt_rad: float = 0.0
    horizontal_fov_rad: float | None = None

    @property
    def home(self) -> bool:
        """Looking straight ahead at the widest field."""
        return self.pan_rad == 0.0 and self.tilt_rad == 0.0 and self.horizontal_fov_rad is None

    def T_mount_camera(self) -> FloatArray:
        """The camera's pose in its mount's frame (the head turns it in place)."""
        cp, sp = math.cos(self.pan_rad), math.sin(self.pan_rad)
        ct, st = math.cos(self.tilt_rad), math.sin(self.tilt_rad)
        T = np.eye(4)
        # Rz(pan) @ Ry(-tilt): x forward turned left by pan, then raised by tilt
        T[:3, :3] = np.array([[cp * ct, -sp, -cp * st],
                              [sp * ct, cp, -sp * st],
                              [st, 0.0, ct]])
        return T


class TextureCache:
    """Albedo textures by path, loaded once."""

    def __init__(self) -> None:
        self._images: dict[Path, NDArray[np.float32]] = {}
        self._bgr8: dict[Path, Image] = {}

    def get(self, path: Path) -> NDArray[np.float32]:
        """The texture at ``path`` as float32 RGB in [0, 1]; ``SimError`` if unreadable."""
        image = self._images.get(path)
        if image is None:
            image = np.ascontiguousarray(self.bgr8(path)[:, :, ::-1], dtype=np.float32) / 255.0
            self._images[path] = image
        return image

    def put(self, path: Path, image_bgr: Image) -> None:
        """Use ``image_bgr`` (8-bit BGR) for ``path`` instead of the file (randomised looks)."""
        self._images.pop(path, None)
        self._bgr8[path] = np.ascontiguousarray(image_bgr, dtype=np.uint8)

    def bgr8(self, path: Path) -> Image:
        """The texture at ``path`` as 8-bit BGR; raises ``SimError`` naming it if unreadable."""
        image = self._bgr8.get(path)
        if image is None:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SimError(f"{path}: cannot read texture image")
            image = np.ascontiguousarray(bgr, dtype=np.uint8)
            self._bgr8[path] = image
        return image


@dataclass(frozen=True, eq=False)
class _SceneLook:
    """What a scene's geometries look like, as lookup tables built once per scene.

    Geometry tables have one extra last row for misses (geometry index -1); so do material
    tables. Texels are BGRA packed in uint32: each texture (slot 0 white, 1 water ripples)
    ``size_px`` square, with its rip-maps: every combination of halving its width ``lu`` and
    height ``lv`` times, up to ``levels``.
    """

    material_of_geometry: NDArray[np.int32]  # (G + 1,)
    axes_yz_world: Float32Array  # (G + 1, 6): each geometry's local y and z axes, world
    texel_scale: Float32Array  # ((G + 1) * 3, 2): texels per unit u, v on faces normal to x/y/z
    texel_offset: Float32Array  # ((G + 1) * 3, 2): texels added, so repeats differ per face
    atlas_base: NDArray[np.int32]  # ((M + 1) * (levels + 1)^2,): by material, lu, lv: the
    # flat index of the rip-map's texel (last row, column 0)
    tint_gamma: Float32Array  # (M + 1, 4) BGR0 colour, gamma-encoded
    mean_linear: Float32Array  # (M + 1, 3) BGR mean albedo (colour x texture), linear
    luminance: Float32Array  # (M + 1,) luminance of ``mean_linear``
    transparency: Float32Array  # (M + 1,)
    atlas: NDArray[np.uint32]
    size_px: int
    levels: int
    ripple_mean: float  # mean of the water ripple texels, in [0, 1]


def _face_sizes_m(geometry: Geometry) -> FloatArray | None:
    """(3, 2) metres spanned by u and v on faces whose normal is local x, y, z; None: as is."""
    shape = geometry.shape
    if isinstance(shape, Box):
        sx, sy, sz = shape.size_m
        return np.array([[sy, sz], [sx, sz], [sx, sy]])
    if isinstance(shape, Cylinder):
        side = [2.0 * math.pi * shape.radius_m, shape.length_m]
        return np.array([side, side, [2.0 * shape.radius_m] * 2])
    if isinstance(shape, Capsule):
        around = [2.0 * math.pi * shape.radius_m, shape.length_m + 2.0 * shape.radius_m]
        return np.array([around] * 3)
    if isinstance(shape, Sphere):
        return np.array([[2.0 * math.pi * shape.radius_m, math.pi * shape.radius_m]] * 3)
    if isinstance(shape, Ellipsoid):
        a, b, c = shape.radii_m
        return np.array([[2.0 * math.pi * max(a, b), math.pi * c]] * 3)
    if isinstance(shape, Plane):
        return np.array([shape.size_m] * 3, dtype=np.float64)
    if isinstance(shape, Mesh) and shape.triangle_uvs is None:
        extent = shape.vertices_m[:, :2].max(axis=0) - shape.vertices_m[:, :2].min(axis=0)
        return np.array([extent] * 3)
    return None


def _ripple_texture(size: int) -> Image:
    """Tileable grey streaks along u (the flow in the worlds' water boxes), mean about 0.8."""
    white = np.random.default_rng(_TEXTURE_PHASE_SEED).standard_normal((size, size))
    along_v = np.fft.fftfreq(size)[:, None]
    along_u = np.fft.rfftfreq(size)[None, :]
    spectrum = np.fft.rfft2(white) * np.exp(-((along_u / 0.015) ** 2) - (along_v / 0.06) ** 2)
    field = np.fft.irfft2(spectrum, s=(size, size))
    field /= max(float(field.std()), 1e-12)
    texture: Image = np.clip(255.0 * (0.8 + 0.1 * field), 0.0, 255.0).astype(np.uint8)
    return texture


def _build_look(
    geometries: tuple[Geometry, ...], textures: TextureCache, tile_m: Mapping[str, float]
) -> _SceneLook:
    """Lookup tables of a scene: materials, texture atlas, face scales."""
    count = len(geometries)
    materials: dict[tuple[Material, float], int] = {}
    material_of_geometry = np.empty(count + 1, dtype=np.int32)
    for index, geometry in enumerate(geometries):
        key = (geometry.material, float(geometry.transparency))
        material_of_geometry[index] = materials.setdefault(key, len(materials))
    material_of_geometry[count] = len(materials)
    # Texture atlas: slot 0 white (untextured), 1 water ripples, then one per albedo map
    paths = sorted({m.albedo_map for m, _ in materials if m.albedo_map is not None})
    images = [textures.bgr8(path) for path in paths]
    largest = max((max(image.shape[:2]) for image in images), default=_RIPPLE_PX)
    size = min(1 << max(math.ceil(math.log2(largest)), 0), 1024)
    textures_bgr = np.zeros((len(paths) + 2, size, size, 3), dtype=np.uint8)
    textures_bgr[0] = 255
    textures_bgr[1] = _ripple_texture(size)[:, :, None]
    ripple_mean = float(textures_bgr[1].mean()) / 255.0
    for slot, image in enumerate(images, start=2):
        interpolation = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_LINEAR
        textures_bgr[slot] = cv2.resize(image, (size, size), interpolation=interpolation)
    texture_mean = ((textures_bgr / 255.0) ** GAMMA).mean(axis=(1, 2))
    slot_of_path = {path: slot for slot, path in enumerate(paths, start=2)}
    levels = min(int(math.log2(size)), _MAX_RIP_LEVEL)
    atlas, slot_base = _rip_maps(textures_bgr, levels)
    # Per material (one extra for misses: black)
    rows = len(materials) + 1
    atlas_base = np.empty((rows, levels + 1, levels + 1), dtype=np.int32)
    atlas_base[-1] = slot_base[0]
    tint_gamma = np.zeros((rows, 4), dtype=np.float32)
    mean_linear = np.zeros((rows, 3), dtype=np.float32)
    transparency = np.zeros(rows, dtype=np.float32)
    tiles = np.zeros(rows)  # repeat size in m, 0: stretched over each face
    for (material, clarity), index in materials.items():
        tint = np.clip(np.array(material.diffuse_rgba[2::-1], dtype=np.float64), 0.0, 1.0)
        slot = slot_of_path.get(material.albedo_map, 0) if material.albedo_map else 0
        if slot and material.albedo_map is not None:
            tiles[index] = tile_m.get(material.albedo_map.stem, 0.0)
        if clarity > 0.0:  # water: shaded as a whole, its surface rippled
            slot, tiles[index] = 1, WATER_RIPPLE_TILE_M
        atlas_base[index] = slot_base[slot]
        tint_gamma[index, :3] = tint
        mean_linear[index] = tint**GAMMA * texture_mean[slot]
        transparency[index] = min(clarity, 1.0)
    # Per geometry: local axes, texels per unit uv on each face
    axes_yz_world = np.zeros((count + 1, 6), dtype=np.float32)
    texel_scale = np.full((count + 1, 3, 2), float(size), dtype=np.float32)
    texel_offset = np.zeros((count + 1, 3, 2), dtype=np.float32)
    phases = np.random.default_rng(_TEXTURE_PHASE_SEED).uniform(0.0, size, (count, 3, 2))
    for index, geometry in enumerate(geometries):
        axes_yz_world[index] = geometry.T_world_geom[:3, 1:3].T.ravel()
        tile = tiles[material_of_geometry[index]]
        sizes = _face_sizes_m(geometry) if tile > 0.0 else None
        if sizes is not None:
            texel_scale[index] = size * sizes / tile
            texel_offset[index] = phases[index]
    return _SceneLook(
        material_of_geometry=material_of_geometry,
        axes_yz_world=axes_yz_world,
        texel_scale=texel_scale.reshape(-1, 2),
        texel_offset=texel_offset.reshape(-1, 2),
        atlas_base=atlas_base.ravel(),
        tint_gamma=tint_gamma,
        mean_linear=mean_linear,
        luminance=(mean_linear @ _LUMINANCE_BGR).astype(np.float32),
        transparency=transparency,
        atlas=atlas,
        ripple_mean=ripple_mean,
        size_px=size,
        levels=levels,
    )


def _rip_maps(textures_bgr: Image, levels: int) -> tuple[NDArray[np.uint32], NDArray[np.int32]]:
    """Flat BGRA atlas of (T, S, S, 3) textures and all their rip-maps up to ``levels``.

    Returns the atlas and, per texture and (lu, lv), the flat index of the rip-map's last row
    (texture rows run top to bottom, v bottom to top). Rip-maps average linear light.
    """
    count, size = textures_bgr.shape[:2]
    linear = (textures_bgr / 255.0).astype(np.float32) ** GAMMA
    blocks: list[NDArray[np.uint32]] = []
    base = np.zeros((count, levels + 1, levels + 1), dtype=np.int32)
    offset = 0
    for slot in range(count):
        for lu in range(levels + 1):
            for lv in range(levels + 1):
                width, height = size >> lu, size >> lv
                small = cv2.resize(linear[slot], (width, height), interpolation=cv2.INTER_AREA)
                bgra = np.zeros((height, width, 4), dtype=np.uint8)
                bgra[:, :, :3] = np.clip(255.0 * small ** (1.0 / GAMMA) + 0.5, 0.0, 255.0)
                blocks.append(bgra.reshape(-1, 4).view(np.uint32).ravel())
                base[slot, lu, lv] = offset + (height - 1) * width
                offset += width * height
    return np.concatenate(blocks), base


@dataclass(frozen=True, eq=False)
class _RayGrid:
    """Camera-frame rays, one per 2 x 2 pixel block, and lamp terms constant per ray."""

    shape: tuple[int, int]  # (rows, columns) of the ray grid
    directions_camera: Float32Array  # (N, 3) unit
    along_lamp_axis: Float32Array  # (N,) direction . lamp axis
    towards_lamp: Float32Array  # (N,) direction . lamp position


class Camera:
    """Renders frames of a ``RaycastScene`` for one SDF ``CameraSpec``.

    ``auto_exposure`` adapts the gain to each frame (converging over about 3 frames, state
    kept across ``render`` calls); without it the gain is ``EXPOSURE_GAIN``.
    ``texture_tile_m`` maps albedo map file stems to the size of one repeat in metres.
    """

    def __init__(
        self,
        spec: CameraSpec,
        lamp: Lamp = DEFAULT_LAMP,
        seed: int = 0,
        textures: TextureCache | None = None,
        auto_exposure: bool = True,
        texture_tile_m: Mapping[str, float] | None = None,
    ) -> None:
        self.spec = spec
        self.lamp = lamp
        self.textures = textures or TextureCache()
        self.auto_exposure = auto_exposure
        self.texture_tile_m = dict(
            DEFAULT_TEXTURE_TILE_M if texture_tile_m is None else texture_tile_m
        )
        self._rng = np.random.default_rng(seed)
        self._log_gain = math.log(EXPOSURE_GAIN)
        self._looks: weakref.WeakKeyDictionary[RaycastScene, _SceneLook] = (
            weakref.WeakKeyDictionary()
        )
        self._grid = _ray_grid(spec, lamp)
        self._grid_lamp = lamp
        self._noise = self._noise_bank()

    @property
    def exposure_gain(self) -> float:
        """Gain of the next frame (linear brightness of a unit irradiance on white)."""
        return math.exp(self._log_gain)

    def zoom_to(self, horizontal_fov_rad: float) -> None:
        """Set the lens's horizontal field of view (same image size: a longer focal length)."""
        low, high = ZOOM_FOV_LIMITS_RAD
        if not low <= horizontal_fov_rad <= high:
            raise SimError(f"zoom: horizontal field of view {math.degrees(horizontal_fov_rad):.1f}"
                           f" deg outside {math.degrees(low):.0f}-{math.degrees(high):.0f} deg")
        if horizontal_fov_rad == self.spec.horizontal_fov_rad:
            return
        self.spec = replace(self.spec, horizontal_fov_rad=horizontal_fov_rad)
        self._grid = _ray_grid(self.spec, self.lamp)
        self._grid_lamp = self.lamp

    def reset_exposure(self) -> None:
        """Forget the auto-exposure state (as after power-up)."""
        self._log_gain = math.log(EXPOSURE_GAIN)

    def render(
        self,
        scene: RaycastScene,
        T_world_camera: FloatArray,
        lamp_fraction: float = 1.0,
        ambient: float = 0.0,
    ) -> Image:
        """One frame from ``T_world_camera``; the lamp at ``lamp_fraction`` of full power."""
        look = self._look(scene)
        if self._grid_lamp is not self.lamp:  # the lamp was swapped: its terms per ray
            self._grid, self._grid_lamp = _ray_grid(self.spec, self.lamp), self.lamp
        grid = self._grid
        R_world_camera = np.asarray(T_world_camera[:3, :3], dtype=np.float32)
        # Cast one ray per 2 x 2 pixel block
        directions = _rotate(R_world_camera, grid.directions_camera)
        hits = self._cast(scene, T_world_camera, directions)
        hit = hits.geometry_index >= 0
        range_m = np.where(hit, hits.range_m, np.float32(0.0)) + np.float32(self.spec.near_clip_m)
        normal = np.nan_to_num(hits.normal, copy=False)
        material = np.take(look.material_of_geometry, hits.geometry_index)
        # Lamp light arriving at each hit
        cos_view = _dot(normal, directions)
        lamp_world = R_world_camera @ self._lamp_position()
        irradiance = self._lamp_irradiance(grid, range_m, cos_view, _dot(normal, lamp_world))
        irradiance *= np.float32(lamp_fraction)
        irradiance += np.float32(ambient)
        irradiance *= hit
        # Linear brightness of each ray: albedo times light, or murky water
        luminance = irradiance * np.take(look.luminance, material)
        water = np.flatnonzero(np.take(look.transparency, material) > 0.0)
        water_radiance: Float32Array | None = None
        if water.size:
            water_radiance = self._water(
                scene,
                look,
                hits,
                material,
                water,
                cos_view,
                irradiance,
                T_world_camera,
                lamp_fraction,
                ambient,
            )
            luminance[water] = _dot(water_radiance, _LUMINANCE_BGR)
        # Exposure from this frame's light
        gain = np.float32(self._expose(luminance) * _EXPOSURE_SCALE**GAMMA)
        # Light per ray, gamma-encoded, in 16-bit fixed point
        light = np.take(look.tint_gamma, material, axis=0)
        light *= np.power(irradiance * gain, np.float32(1.0 / GAMMA))[:, None]
        if water_radiance is not None:
            light[water, :3] = np.power(
                water_radiance * gain, np.float32(1.0 / GAMMA)
            ) / np.float32(look.ripple_mean)
        # Full-resolution texels and image
        texels = self._texels(look, hits, material, normal)
        return self._develop(texels, light)

    # -- per-frame steps ----------------------------------------------------------------------

    def _cast(
        self, scene: RaycastScene, T_world_camera: FloatArray, directions: Float32Array
    ) -> RayHits:
        """First hits of the grid's rays, starting at the near clip plane."""
        near = self.spec.near_clip_m
        origins = (
            np.asarray(T_world_camera[:3, 3], dtype=np.float32) + np.float32(near) * directions
        )
        return scene.cast(origins, directions, max(self.spec.far_clip_m - near, 0.0))

    def _lamp_irradiance(
        self,
        grid: _RayGrid,
        range_m: Float32Array,
        cos_view: Float32Array,
        normal_dot_lamp: Float32Array,
    ) -> Float32Array:
        """Irradiance from the full lamp at hits ``range_m`` along the grid's rays.

        The hit is p = r d in the camera frame and the lamp sits at a, so the lamp-to-hit
        distance is |r d - a| = sqrt(r^2 - 2 r (d . a) + |a|^2) and the cosine to the lamp
        axis e is (r (d . e) - a . e) / |r d - a|: only r varies per frame. ``cos_view`` is
        n . d and ``normal_dot_lamp`` n . a, for the surface normal n.
        """
        lamp = self.lamp
        position = np.asarray(lamp.position_camera_m, dtype=np.float32)
        axis = np.asarray(lamp.direction_camera, dtype=np.float32)
        distance_sq = range_m * (range_m - 2.0 * grid.towards_lamp) + float(position @ position)
        distance_m = np.sqrt(np.maximum(distance_sq, np.float32(1e-12)))
        inverse = np.float32(1.0) / distance_m
        # Spot cone around the lamp axis, linear between inner and outer angle
        cos_in, cos_out = math.cos(lamp.cone_inner_rad), math.cos(lamp.cone_outer_rad)
        cos_axis = (range_m * grid.along_lamp_axis - float(position @ axis)) * inverse
        cone = np.clip(
            (cos_axis - np.float32(cos_out)) * np.float32(1.0 / max(cos_in - cos_out, 1e-6)),
            0.0,
            1.0,
        )
        # Cosine of incidence: n . (p - a) / |p - a|
        incidence = np.abs(range_m * cos_view - normal_dot_lamp) * inverse
        c, lin, q = lamp.attenuation
        falloff = np.float32(lamp.intensity) / (
            np.float32(c) + np.float32(lin) * distance_m + np.float32(q) * distance_sq
        )
        falloff *= distance_m <= lamp.range_m
        irradiance: Float32Array = cone * incidence * falloff
        return irradiance

    def _lamp_position(self) -> Float32Array:
        return np.asarray(self.lamp.position_camera_m, dtype=np.float32)

    def _water(
        self,
        scene: RaycastScene,
        look: _SceneLook,
        hits: RayHits,
        material: NDArray[np.int32],
        water: NDArray[np.intp],
        cos_view: Float32Array,
        irradiance: Float32Array,
        T_world_camera: FloatArray,
        lamp_fraction: float,
        ambient: float,
    ) -> Float32Array:
        """Linear BGR radiance of the ``water`` rays: surface, murky bottom, reflection."""
        rows, cols = self._grid.shape
        step = _WATER_RAY_STEP
        # Refracted and reflected rays of every step-th water ray in each direction
        sample_rows = np.minimum(np.arange((rows + step - 1) // step) * step + 1, rows - 1)
        sample_cols = np.minimum(np.arange((cols + step - 1) // step) * step + 1, cols - 1)
        is_water = np.zeros(rows * cols, dtype=np.bool_)
        is_water[water] = True
        sparse = is_water.reshape(rows, cols)[np.ix_(sample_rows, sample_cols)]
        sub_rows, sub_cols = np.nonzero(sparse)
        chosen = sample_rows[sub_rows] * cols + sample_cols[sub_cols]
        count = chosen.size
        above = below = np.zeros((0, 3), dtype=np.float32)
        if count:
            normal = hits.normal[chosen]
            incoming = hits.point_m[chosen] - np.asarray(T_world_camera[:3, 3], np.float32)
            incoming /= np.linalg.norm(incoming, axis=1, keepdims=True)
            cos_in = np.clip(-_dot(normal, incoming), 0.0, 1.0)[:, None]
            eta = 1.0 / WATER_REFRACTIVE_INDEX
            cos_out = np.sqrt(1.0 - eta * eta * (1.0 - cos_in * cos_in))
            directions = np.concatenate(
                [
                    incoming + 2.0 * cos_in * normal,
                    eta * incoming + (eta * cos_in - cos_out) * normal,
                ]
            )
            directions = directions.astype(np.float32)
            origins = np.concatenate([hits.point_m[chosen]] * 2) + np.float32(1e-3) * directions
            second = scene.cast(origins, directions, self.spec.far_clip_m)
            radiance = self._plain_radiance(look, second, T_world_camera, lamp_fraction, ambient)
            above, below = radiance[:count], radiance[count:]
            # The bottom is seen through murk, down and back up, which absorbs the colours
            # the water lacks; nothing is seen through more water
            bottom = np.take(look.material_of_geometry, second.geometry_index[count:])
            path_m = np.nan_to_num(second.range_m[count:], posinf=0.0)
            tint = np.take(look.tint_gamma, material[chosen], axis=0)[:, :3]
            reach_m = WATER_MURK_M * tint / np.maximum(tint.max(axis=1, keepdims=True), 1e-3)
            below *= np.exp(-2.0 * path_m[:, None] / np.maximum(reach_m, 1e-3))
            below *= (np.take(look.transparency, bottom) == 0.0)[:, None]
        # Spread them over all water rays (normalised bilinear interpolation)
        sparse_values = np.zeros((*sparse.shape, 7), dtype=np.float32)
        sparse_values[sub_rows, sub_cols, :3] = above
        sparse_values[sub_rows, sub_cols, 3:6] = below
        sparse_values[sub_rows, sub_cols, 6] = 1.0
        size = (step * sparse.shape[1], step * sparse.shape[0])
        dense = np.asarray(
            cv2.resize(sparse_values, size, interpolation=cv2.INTER_LINEAR), dtype=np.float32
        )[:rows, :cols].reshape(-1, 7)[water]
        weight = dense[:, 6:7]
        dense[:, :6] /= np.where(weight > 1e-3, weight, np.inf)
        # Fresnel mix of the reflection and the water body over the bottom
        cos_ray = np.clip(-cos_view[water], 0.0, 1.0)[:, None]
        fresnel = _FRESNEL_F0 + (1.0 - _FRESNEL_F0) * (1.0 - cos_ray) ** 5
        clarity = np.take(look.transparency, material[water])[:, None]
        body = np.take(look.mean_linear, material[water], axis=0) * irradiance[water, None]
        result: Float32Array = (
            fresnel * dense[:, :3]
            + (1.0 - fresnel) * ((1.0 - clarity) * body + clarity * dense[:, 3:6])
        ).astype(np.float32)
        return result

    def _plain_radiance(
        self,
        look: _SceneLook,
        hits: RayHits,
        T_world_camera: FloatArray,
        lamp_fraction: float,
        ambient: float,
    ) -> Float32Array:
        """Linear BGR radiance of any world-frame hits, with mean albedo (no texture)."""
        lamp = self.lamp
        lamp_world = (
            T_world_camera[:3, :3] @ np.asarray(lamp.position_camera_m) + T_world_camera[:3, 3]
        )
        axis_world = T_world_camera[:3, :3] @ np.asarray(lamp.direction_camera)
        to_point = np.nan_to_num(hits.point_m) - lamp_world.astype(np.float32)
        distance_m = np.maximum(np.linalg.norm(to_point, axis=1), 1e-6)
        to_point /= distance_m[:, None]
        cos_in, cos_out = math.cos(lamp.cone_inner_rad), math.cos(lamp.cone_outer_rad)
        cone = np.clip(
            (_dot(to_point, axis_world.astype(np.float32)) - cos_out) / max(cos_in - cos_out, 1e-6),
            0.0,
            1.0,
        )
        incidence = np.abs(_dot(np.nan_to_num(hits.normal), to_point))
        c, lin, q = lamp.attenuation
        falloff = lamp.intensity / (c + lin * distance_m + q * distance_m**2)
        falloff *= distance_m <= lamp.range_m
        irradiance = lamp_fraction * cone * incidence * falloff + ambient
        irradiance *= hits.geometry_index >= 0
        material = np.take(look.material_of_geometry, hits.geometry_index)
        radiance: Float32Array = (
            np.take(look.mean_linear, material, axis=0) * irradiance[:, None]
        ).astype(np.float32)
        return radiance

    def _expose(self, luminance: Float32Array) -> float:
        """Gain for this frame, set from the last one; meter this one for the next.

        Like a real camera's auto-exposure, a frame is exposed as the previous frames asked
        for; the gain then moves part of the (log) way to the one metered on this frame's
        linear ``luminance``: it brings the mean to mid grey unless that would push the 99th
        percentile (the lit wall next to the robot) past ``AUTO_EXPOSURE_HIGH``.
        """
        if not self.auto_exposure:
            self._log_gain = math.log(EXPOSURE_GAIN)
            return EXPOSURE_GAIN
        gain = math.exp(self._log_gain)
        sample = luminance[::3]
        rank = int(0.99 * (sample.size - 1))
        high = float(np.partition(sample, rank)[rank])
        mean = float(sample.mean())
        low_gain, high_gain = AUTO_EXPOSURE_GAIN_RANGE
        target = min(
            AUTO_EXPOSURE_MID / mean if mean > 0.0 else high_gain,
            AUTO_EXPOSURE_HIGH / high if high > 0.0 else high_gain,
        )
        target = min(max(target, low_gain), high_gain)
        self._log_gain += AUTO_EXPOSURE_RATE * (math.log(target) - self._log_gain)
        return gain

    def _texels(
        self, look: _SceneLook, hits: RayHits, material: NDArray[np.int32], normal: Float32Array
    ) -> Image:
        """(2 rows, 2 cols, 4) BGRA albedo texel of every pixel (white where untextured)."""
        rows, cols = self._grid.shape
        # Which face of its geometry each ray hit: the local axis along its normal
        g = hits.geometry_index
        axes = np.take(look.axes_yz_world, g, axis=0)
        on_y = (
            np.abs(
                axes[:, 0] * normal[:, 0] + axes[:, 1] * normal[:, 1] + axes[:, 2] * normal[:, 2]
            )
            > 0.5
        )
        on_z = (
            np.abs(
                axes[:, 3] * normal[:, 0] + axes[:, 4] * normal[:, 1] + axes[:, 5] * normal[:, 2]
            )
            > 0.5
        )
        face = 3 * g
        face += np.where(on_z, 2, on_y)
        # Texture coordinates in texels (unwrapped, so they interpolate across tile seams)
        texel_uv = hits.uv * np.take(look.texel_scale, face, axis=0)
        texel_uv += np.take(look.texel_offset, face, axis=0)
        np.nan_to_num(texel_uv, copy=False)
        full_uv = _upsample_within_faces(texel_uv.reshape(rows, cols, 2), face.reshape(rows, cols))
        # Rip-map level along u and v: at most 2 texels per pixel, from texels between rays
        level = _rip_levels(
            texel_uv.reshape(rows, cols, 2), face.reshape(rows, cols), look.levels
        ).reshape(-1, 2)
        base = np.take(
            look.atlas_base,
            (material * (look.levels + 1) + level[:, 0]) * (look.levels + 1) + level[:, 1],
        )
        # Each pixel takes the level and rip-map of its nearest ray
        size = (2 * cols, 2 * rows)
        full_base = cv2.resize(base.reshape(rows, cols), size, interpolation=cv2.INTER_NEAREST)
        full_level = cv2.resize(level.reshape(rows, cols, 2), size, interpolation=cv2.INTER_NEAREST)
        level_u, level_v = full_level[:, :, 0], full_level[:, :, 1]
        # Wrap into the texture, then into the rip-map: flat index of (row, column)
        mask = look.size_px - 1
        column = full_uv[:, :, 0].astype(np.int32)
        np.bitwise_and(column, mask, out=column)
        np.right_shift(column, level_u, out=column)
        line = full_uv[:, :, 1].astype(np.int32)
        np.bitwise_and(line, mask, out=line)
        np.right_shift(line, level_v, out=line)
        np.left_shift(line, int(math.log2(look.size_px)) - level_u, out=line)  # x rip width
        np.subtract(full_base, line, out=line)
        line += column
        texels = np.take(look.atlas, line).view(np.uint8).reshape(*line.shape, 4)
        return texels

    def _develop(self, texels: Image, light: Float32Array) -> Image:
        """Texels times interpolated light, sensor noise, cropped to the frame, as BGR."""
        rows, cols = self._grid.shape
        light16 = np.clip(light.reshape(rows, cols, 4) + 0.5, 0.0, 65535.0).astype(np.uint16)
        full_light = cv2.resize(light16, (2 * cols, 2 * rows), interpolation=cv2.INTER_LINEAR)
        image = cv2.multiply(texels, full_light, scale=1.0 / _EXPOSURE_SCALE, dtype=cv2.CV_8U)
        height, width = self.spec.height_px, self.spec.width_px
        image = image[:height, :width]
        if self._noise is not None:
            up, down = self._noise
            r0, c0 = (int(v) for v in self._rng.integers(0, _NOISE_MARGIN_PX + 1, 2))
            image = cv2.add(image, up[r0 : r0 + height, c0 : c0 + width])
            image = cv2.subtract(image, down[r0 : r0 + height, c0 : c0 + width])
        bgr = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
        return bgr

    # -- set-up -------------------------------------------------------------------------------

    def _look(self, scene: RaycastScene) -> _SceneLook:
        look = self._looks.get(scene)
        if look is None:
            look = _build_look(scene.geometries, self.textures, self.texture_tile_m)
            self._looks[scene] = look
        return look

    def _noise_bank(self) -> tuple[Image, Image] | None:
        """Read noise in 8-bit steps, positive and negative parts, larger than a frame."""
        stddev = self.spec.noise_stddev * 255.0
        if stddev <= 0.0:
            return None
        shape = (self.spec.height_px + _NOISE_MARGIN_PX, self.spec.width_px + _NOISE_MARGIN_PX, 4)
        noise = np.rint(self._rng.standard_normal(shape, dtype=np.float32) * np.float32(stddev))
        return (
            np.clip(noise, 0.0, 255.0).astype(np.uint8),
            np.clip(-noise, 0.0, 255.0).astype(np.uint8),
        )


def _ray_grid(spec: CameraSpec, lamp: Lamp) -> _RayGrid:
    """Rays through the centres of the 2 x 2 pixel blocks, with their lamp terms."""
    rows, cols = (spec.height_px + 1) // 2, (spec.width_px + 1) // 2
    f = focal_px(spec)
    u, v = np.meshgrid(2.0 * np.arange(cols) + 1.0, 2.0 * np.arange(rows) + 1.0)
    directions = np.stack(
        [np.full(u.shape, f), 0.5 * spec.width_px - u, 0.5 * spec.height_px - v], axis=-1
    ).reshape(-1, 3)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return _RayGrid(
        shape=(rows, cols),
        directions_camera=directions.astype(np.float32),
        along_lamp_axis=(directions @ np.asarray(lamp.direction_camera)).astype(np.float32),
        towards_lamp=(directions @ np.asarray(lamp.position_camera_m)).astype(np.float32),
    )


def _rotate(rotation: Float32Array, vectors: Float32Array) -> Float32Array:
    """(N, 3) ``vectors`` turned by a 3 x 3 ``rotation`` (no BLAS: its threads fight Embree's)."""
    turned = np.asarray(cv2.transform(vectors.reshape(-1, 1, 3), rotation), dtype=np.float32)
    return turned.reshape(-1, 3)


def _dot(vectors: Float32Array, other: Float32Array) -> Float32Array:
    """Row-wise dot products of (N, 3) ``vectors`` with (N, 3) or (3,) ``other``."""
    if other.ndim == 1:
        a, b, c = (np.float32(v) for v in other)
        along: Float32Array = vectors[:, 0] * a + vectors[:, 1] * b + vectors[:, 2] * c
        return along
    result: Float32Array = (
        vectors[:, 0] * other[:, 0] + vectors[:, 1] * other[:, 1] + vectors[:, 2] * other[:, 2]
    )
    return result


def _rip_levels(texel_uv: Float32Array, key: NDArray[np.int32], levels: int) -> NDArray[np.int32]:
    """(h, w, 2) rip-map levels along u and v for rays (h, w) with ``texel_uv`` (h, w, 2).

    The texels a pixel spans along u (v) are the largest change of u (v) to a neighbouring ray
    on the same face (``key``), halved (rays are 2 px apart); the level is floor(log2) of it,
    so a pixel spans at most 2 texels of its rip-map.
    """
    span = np.zeros_like(texel_uv)
    across = np.abs(texel_uv[:, 1:] - texel_uv[:, :-1])
    across *= (key[:, 1:] == key[:, :-1])[:, :, None]
    np.maximum(span[:, 1:], across, out=span[:, 1:])
    np.maximum(span[:, :-1], across, out=span[:, :-1])
    down = np.abs(texel_uv[1:] - texel_uv[:-1])
    down *= (key[1:] == key[:-1])[:, :, None]
    np.maximum(span[1:], down, out=span[1:])
    np.maximum(span[:-1], down, out=span[:-1])
    span *= np.float32(0.5)
    level = np.frexp(span)[1]
    level -= 1
    np.clip(level, 0, levels, out=level)
    return level


def _upsample_within_faces(values: Float32Array, key: NDArray[np.int32]) -> Float32Array:
    """Bilinear 2x upsampling of (h, w, C) ``values`` that only mixes rays with equal ``key``.

    A full-resolution pixel lies between four rays; where they do not all share a key (an
    object outline, a box edge) it takes the value of its nearest ray instead.
    """
    rows, cols = key.shape
    size = (2 * cols, 2 * rows)
    smooth = np.asarray(cv2.resize(values, size, interpolation=cv2.INTER_LINEAR), np.float32)
    padded = np.empty((rows + 2, cols + 2), dtype=key.dtype)
    padded[1:-1, 1:-1] = key
    padded[0, 1:-1], padded[-1, 1:-1] = key[0], key[-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    corner = padded[:-1, :-1]
    mixed = (corner != padded[:-1, 1:]) | (corner != padded[1:, :-1]) | (corner != padded[1:, 1:])
    # Pixel (y, x) lies between rays (y - 1) // 2 and (y + 1) // 2: corner (y + 1) // 2
    mixed_px = cv2.resize(
        mixed.view(np.uint8), (2 * cols + 2, 2 * rows + 2), interpolation=cv2.INTER_NEAREST
    )[1 : 2 * rows + 1, 1 : 2 * cols + 1]
    nearest = cv2.resize(values, size, interpolation=cv2.INTER_NEAREST)
    cv2.copyTo(nearest, mixed_px, smooth)  # in place, where mixed
    return smooth
