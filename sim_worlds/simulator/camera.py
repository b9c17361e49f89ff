"""Ray-traced camera lit by the robot's own lamp, the only light underground.

A pinhole camera looking along its link's +x axis (Gazebo's convention). Each pixel's ray is
cast into the scene and the hit shaded by the lamp (an SDF spot light riding on the robot:
Gazebo's constant/linear/quadratic attenuation, cosine of incidence, spot cone), plus ambient
daylight where the world has it (under an open shaft). Surfaces show their material colour
or their albedo texture at the hit's texture coordinates, so painted-on defects appear where
the geometry puts them. Sensor noise and gamma finish the frame, returned as 8-bit BGR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.scene import RaycastScene
from sim_worlds.simulator.sdf import CameraSpec, Light

FloatArray = NDArray[np.float64]
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

    @classmethod
    def from_light(cls, light: Light, T_world_camera: FloatArray) -> Lamp:
        """The SDF ``light`` (posed at load time, like the camera) seen from the camera."""
        T_camera_light = np.linalg.inv(T_world_camera) @ light.T_world_light
        x, y, z = (float(v) for v in T_camera_light[:3, 3])
        outer = light.spot_outer_angle_rad or math.radians(60.0)
        return cls((x, y, z), light.intensity, (light.attenuation_constant,
                   light.attenuation_linear, light.attenuation_quadratic),
                   min(light.spot_inner_angle_rad, outer), outer)


DEFAULT_LAMP = Lamp((0.0, 0.0, 0.05), 1.0, (0.3, 0.02, 0.02), math.radians(35.0),
                    math.radians(60.0))
EXPOSURE_GAIN = 2.5
"""Brightness of a unit irradiance on a white surface, before gamma (auto-exposure stand-in)."""


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


class TextureCache:
    """Albedo textures by path, loaded once, as float32 RGB in [0, 1]."""

    def __init__(self) -> None:
        self._images: dict[Path, NDArray[np.float32]] = {}

    def get(self, path: Path) -> NDArray[np.float32]:
        """The texture at ``path``; raises ``SimError`` naming it if unreadable."""
        image = self._images.get(path)
        if image is None:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SimError(f"{path}: cannot read texture image")
            image = np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.float32) / 255.0
            self._images[path] = image
        return image


class Camera:
    """Renders frames of a ``RaycastScene`` for one SDF ``CameraSpec``."""

    def __init__(self, spec: CameraSpec, lamp: Lamp = DEFAULT_LAMP, seed: int = 0,
                 textures: TextureCache | None = None) -> None:
        self.spec = spec
        self.lamp = lamp
        self.textures = textures or TextureCache()
        self._rng = np.random.default_rng(seed)
        f = focal_px(spec)
        u, v = np.meshgrid(np.arange(spec.width_px) + 0.5, np.arange(spec.height_px) + 0.5)
        dirs = np.stack([np.full(u.shape, f), 0.5 * spec.width_px - u,
                         0.5 * spec.height_px - v], axis=-1).reshape(-1, 3)
        self._dirs_camera = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)

    def render(self, scene: RaycastScene, T_world_camera: FloatArray, lamp_fraction: float = 1.0,
               ambient: float = 0.0) -> Image:
        """One frame from ``T_world_camera``; the lamp at ``lamp_fraction`` of full power."""
        spec = self.spec
        # Cast one ray per pixel
        directions = self._dirs_camera @ T_world_camera[:3, :3].T
        origins = np.broadcast_to(T_world_camera[:3, 3], directions.shape)
        hits = scene.cast(np.ascontiguousarray(origins), np.ascontiguousarray(directions),
                          spec.far_clip_m)
        hit = hits.hit
        # Surface colour at each hit
        albedo = self._albedo(scene, hits.geometry_index[hit], hits.uv[hit])
        # Lamp light arriving at each hit
        irradiance = lamp_fraction * self._lamp_irradiance(
            hits.point_m[hit], hits.normal[hit], T_world_camera)
        radiance = np.zeros((directions.shape[0], 3), dtype=np.float32)
        radiance[hit] = albedo * (irradiance + ambient)[:, None]
        # Sensor: exposure, gamma, read noise
        signal = np.clip(radiance * EXPOSURE_GAIN, 0.0, 1.0) ** (1.0 / 2.2)
        signal += self._rng.normal(0.0, spec.noise_stddev, signal.shape).astype(np.float32)
        rgb = (np.clip(signal, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return np.ascontiguousarray(rgb.reshape(spec.height_px, spec.width_px, 3)[:, :, ::-1])

    def _lamp_irradiance(self, points_m: NDArray[np.floating], normals: NDArray[np.floating],
                         T_world_camera: FloatArray) -> NDArray[np.float32]:
        lamp = self.lamp
        lamp_world = T_world_camera[:3, :3] @ np.asarray(lamp.position_camera_m) \
            + T_world_camera[:3, 3]
        to_point = points_m - lamp_world
        distance_m = np.linalg.norm(to_point, axis=1)
        to_point /= np.maximum(distance_m, 1e-6)[:, None]
        # Spot cone around the camera's optical axis, smooth between inner and outer angle
        cos_axis = to_point @ T_world_camera[:3, 0]
        cos_in, cos_out = math.cos(lamp.cone_inner_rad), math.cos(lamp.cone_outer_rad)
        cone = np.clip((cos_axis - cos_out) / max(cos_in - cos_out, 1e-6), 0.0, 1.0)
        incidence = np.abs(np.einsum("ij,ij->i", normals, to_point))
        c, lin, q = lamp.attenuation
        falloff = 1.0 / (c + lin * distance_m + q * distance_m**2)
        irradiance: NDArray[np.float32] = (lamp.intensity * cone * incidence * falloff).astype(
            np.float32)
        return irradiance

    def _albedo(self, scene: RaycastScene, geometry_index: NDArray[np.int32],
                uv: NDArray[np.float32]) -> NDArray[np.float32]:
        albedo = np.empty((geometry_index.size, 3), dtype=np.float32)
        order = np.argsort(geometry_index, kind="stable")
        sorted_index = geometry_index[order]
        starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
        ends = np.r_[starts[1:], sorted_index.size]
        for start, end in zip(starts, ends, strict=True):
            rows = order[start:end]
            material = scene.material(int(sorted_index[start]))
            colour = np.asarray(material.diffuse_rgba[:3], dtype=np.float32)
            if material.albedo_map is None:
                albedo[rows] = colour
                continue
            texture = self.textures.get(material.albedo_map)
            h, w = texture.shape[:2]
            tex_uv = np.nan_to_num(uv[rows])
            cols = np.clip((tex_uv[:, 0] % 1.0) * w, 0, w - 1).astype(np.intp)
            lines = np.clip((1.0 - tex_uv[:, 1] % 1.0) * h, 0, h - 1).astype(np.intp)
            albedo[rows] = texture[lines, cols] * colour
        return albedo
