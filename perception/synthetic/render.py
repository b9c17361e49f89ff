"""Labelled training images rendered in the simulated worlds (YOLO detection format).

Each *look* (one integer seed) repaints every surface texture of the world with a randomised
version (``textures.py``), dims or brightens the lamp, and then photographs the defects from
random crawler poses: a random distance before the defect, off the pipe's axis, with the camera
rolled and tilted as a crawler on a slippery invert is. Labels come from the ray caster, not
from projected outlines: a pixel belongs to a defect when its ray hits that defect's geometry
(or, for joint defects, the pipe wall within a band of the joint), so occlusion and the image
border are exact. Each frame is then degraded like a real inspection camera's (defocus, motion
blur, sensor noise, JPEG).

Close-ups (``RenderSettings.close_up_fraction``): a share of the frames turn the camera on its
pan-tilt head towards a target (or, a third of them, towards plain surface) and zoom so that a
metre or two of surface fills the view, as the crawler does when it looks closer at a
suspected defect (``perception.close_up``).

Splits draw their looks from disjoint seed ranges, so a test set never shares a look with the
training set.

Worlds: a pipe world's targets are its pipe defects (``truth.pipe``); a tunnel world's are its
surface features (``truth.tunnel``: cracks, seepage, standing water), each at the route
distance where the route first comes nearest to it. A stretch of the route can be held out
(``RenderSettings.exclude_route_m``): its features are no targets and no camera is posed where
it could see them, so a mission over that stretch is scored on features the model never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from numpy.typing import NDArray

from navigation.path import Polyline
from perception.close_up import aim_head
from perception.errors import DatasetError
from perception.findings import JOINT_CODES
from perception.synthetic.textures import TEXTURES, random_texture, wall_style
from sim_worlds.simulator.body import BodyState
from sim_worlds.simulator.camera import Camera, CameraHead, TextureCache, focal_px
from sim_worlds.simulator.sdf import rotation_from_rpy
from sim_worlds.simulator.simulation import SimConfig, Simulation
from sim_worlds.worldgen.truth import PipeDefect, SurfaceFeature, TunnelTruth

# Classes the camera detector learns, in model index order. BX (deformation) is measured from
# the lidar, not seen: a ring squeezed by 10 % looks round to a camera.
# JS (积水) is standing water on a floor: an observation, not a CJJ 181 defect; appended last so
# the indices of the older classes (and older datasets) stay valid.
DETECTOR_CLASSES: tuple[str, ...] = (
    "PL", "FS", "SL", "SG", "JG", "ZW", "CJ", "AJ", "TJ", "CK", "JS")
# Class of each tunnel surface-feature kind: a crack is 破裂 (PL; grade 1 is a hairline crack),
# a damp patch is 渗漏 (SL), standing water on the floor is 积水 (JS).
SURFACE_FEATURE_CODES: dict[str, str] = {"crack": "PL", "seepage": "SL", "floor_water": "JS"}
# Geometry name prefix of the tunnel's feature patches and water boxes
# (sim_worlds/worldgen/tunnel.py: add_surface_features), followed by the feature id.
FEATURE_GEOMETRY_PREFIX = "surface_features::patches::"
# A camera this far before a held-out stretch could see features inside it.
HELD_OUT_VIEW_MARGIN_M = 12.0
SPLIT_SEED_BASE = {"train": 100_000, "val": 500_000, "test": 900_000}
LABEL_STEP_PX = 2  # labels are cast on a grid of 2 x 2 pixel blocks
JOINT_BAND_M = 0.12  # wall within this distance of a joint plane belongs to a CK/TJ label

ImageBGR = NDArray[np.uint8]


@dataclass(frozen=True)
class Box:
    """One labelled object: class index and pixel box (x_min, y_min, x_max, y_max)."""

    class_index: int
    xyxy_px: tuple[float, float, float, float]


@dataclass(frozen=True)
class LabelledFrame:
    """A rendered, degraded image and its boxes."""

    image_bgr: ImageBGR
    boxes: tuple[Box, ...]
    route_distance_m: float


@dataclass(frozen=True)
class RenderSettings:
    """How frames are posed and labelled."""

    frames_per_look: int = 60
    defect_view_fraction: float = 0.8  # the rest: anywhere along the route (mostly no defect)
    distance_before_defect_m: tuple[float, float] = (0.5, 4.0)
    lateral_offset_m: float = 0.12
    roll_rad: float = math.radians(25.0)
    tilt_rad: float = math.radians(6.0)
    min_label_px: int = 250  # fewer visible pixels than this: too small to label
    min_box_side_px: float = 10.0
    distractors: bool = True  # stains, seams and scuffs on the plain wall (not defects)
    # Relative odds of picking each class's defects as the view's target (default 1 each):
    # more views of a hard class (thin cracks) without rendering more of the others.
    class_weights: tuple[tuple[str, float], ...] = ()
    yaw_sigma_rad: float = 0.05  # heading jitter of the crawler against the route
    # Ambient light per frame (tunnel lighting) drawn from this range, plus daylight under open
    # shafts; None: the lamp is the only light (a pipe).
    ambient_light: tuple[float, float] | None = None
    # Route stretch (m) held out: its features are no targets, no camera looks into it.
    exclude_route_m: tuple[float, float] | None = None
    # Distance before a feature on this surface (tunnel: ceiling, floor, ...), where it differs
    # from distance_before_defect_m: a ceiling comes into view only from farther away.
    surface_distance_m: tuple[tuple[str, tuple[float, float]], ...] = ()
    # Crack and seepage patches take the look's wall concrete (``textures.WallStyle``) instead
    # of a tone of their own: no tell-tale rectangle around a defect.
    matched_wall: bool = False
    # Per class, how far from the camera a defect's pixels are still labelled: a hairline
    # crack is finer than a pixel beyond a few metres, and a label on plain-looking wall
    # teaches the detector nothing but noise.
    label_range_m: tuple[tuple[str, float], ...] = ()
    # The world's own textures in every look (only the lamp, the light and the poses vary):
    # the site's real look, as images of its other sections would show it, instead of
    # repainted walls (domain randomisation alone left the benchmark tunnel's standing water
    # at confidence 0.5).
    world_look: bool = False
    # Share of frames that are close-ups: the camera on its pan-tilt head aimed at a target's
    # centre (off by up to ``close_up_aim_m``), or in a third of them at plain surface, and
    # zoomed so that ``close_up_field_m`` of surface spans the view's width; the crawler stands
    # ``close_up_before_m`` before the target.
    close_up_fraction: float = 0.0
    close_up_field_m: tuple[float, float] = (0.6, 2.5)
    close_up_before_m: tuple[float, float] = (-1.0, 5.0)
    close_up_aim_m: float = 0.3


# Utility tunnel: wall and ceiling features sit 1.2-3.5 m up, so a camera 0.2 m above the floor
# sees them from 2-10 m before; the gallery is 3.2 m wide and flat (little roll). The main
# gallery's first 150 m (CR1, SP1, W1: the benchmark mission's stretch) is held out.
TUNNEL_SETTINGS = RenderSettings(
    distance_before_defect_m=(1.5, 8.5),
    surface_distance_m=(("ceiling", (4.5, 10.5)), ("floor", (0.5, 9.0))),
    lateral_offset_m=0.55,
    roll_rad=math.radians(5.0),
    tilt_rad=math.radians(6.0),
    yaw_sigma_rad=0.12,
    ambient_light=(0.0, 0.5),
    exclude_route_m=(0.0, 150.0),
    matched_wall=True,
    label_range_m=(("PL", 5.0),),  # a 2-7 mm crack is under 1 px beyond ~4 m at 640 x 480
)
WORLD_SETTINGS: dict[str, RenderSettings] = {"utility_tunnel": TUNNEL_SETTINGS}


def default_settings(world: str) -> RenderSettings:
    """The render settings made for ``world`` (a shipped name or an .sdf path)."""
    return WORLD_SETTINGS.get(Path(world).stem, RenderSettings())


@dataclass(frozen=True)
class _Target:
    ident: str
    code: str
    class_index: int
    route_distance_m: float
    geometry_key: str  # geometries whose name (+ "::") holds this belong to the target
    joint_centre_m: NDArray[np.float64] | None = None  # a point on the joint plane (joints)
    joint_normal: NDArray[np.float64] | None = None
    surface: str = ""  # a tunnel feature's surface (ceiling, floor, right_wall, ...)
    centre_m: NDArray[np.float64] | None = None  # where a close-up aims (tunnel features)


class DatasetRenderer:
    """Renders labelled frames of one world; build once, then ``frames(seed)`` per look."""

    def __init__(self, world: str = "sewer_dn1000", settings: RenderSettings | None = None
                 ) -> None:
        self.settings = settings or default_settings(world)
        self.sim = Simulation(world, SimConfig(lidar=False, camera=True))
        camera = self.sim.camera
        pipe, tunnel = self.sim.truth.pipe, self.sim.truth.tunnel
        if camera is None:
            raise DatasetError(f"world '{world}' needs a camera on the crawler")
        self._camera = camera
        if pipe is not None:
            self._datum_m = pipe.datum_route_distance_m
            targets = [self._target(d) for d in pipe.defects if d.code in DETECTOR_CLASSES]
        elif tunnel is not None:
            targets = self._feature_targets(tunnel)
        else:
            raise DatasetError(f"world '{world}' has neither a pipe nor a tunnel truth")
        self._targets = [t for t in targets if not self._held_out(t.route_distance_m)]
        self.held_out_ids = tuple(t.ident for t in targets if self._held_out(t.route_distance_m))
        """Features (defects) inside ``settings.exclude_route_m``: never targets."""
        self._owner = self._geometry_owners()
        if tunnel is not None:
            self._check_feature_geometries(world)
        self._ring = np.array(["::ring_" in g.name for g in self.sim.scene.geometries] + [False])
        self._texture_paths = sorted({
            g.material.albedo_map for g in self.sim.scene.geometries
            if g.material.albedo_map is not None and _family(g.material.albedo_map) in TEXTURES
        })
        self._label_rays = self._label_directions(camera.spec.horizontal_fov_rad)
        self._wide_fov_rad = camera.spec.horizontal_fov_rad

    @property
    def target_ids(self) -> tuple[str, ...]:
        """Ids of the defects (features) that frames are posed at and labelled."""
        return tuple(t.ident for t in self._targets)

    def frames(self, seed: int) -> Iterator[LabelledFrame]:
        """``frames_per_look`` labelled frames of the look ``seed``."""
        rng = np.random.default_rng(seed)
        camera = self._look(rng, seed)
        for _ in range(self.settings.frames_per_look):
            yield self._frame(camera, rng)

    def view(self, target_id: str, distance_before_m: float, seed: int = 0) -> LabelledFrame:
        """One labelled frame of the look ``seed``, ``distance_before_m`` before a target."""
        target = next((t for t in self._targets if t.ident == target_id), None)
        if target is None:
            raise DatasetError(f"'{target_id}' is no target (targets: "
                               f"{', '.join(self.target_ids)})")
        rng = np.random.default_rng(seed)
        camera = self._look(rng, seed)
        return self._shoot(camera, target.route_distance_m - distance_before_m, rng)

    # --- one look ----------------------------------------------------------------------------

    def _look(self, rng: np.random.Generator, seed: int) -> Camera:
        """A camera whose texture cache holds this look's repainted textures and lamp."""
        cache = TextureCache()
        style = wall_style(rng) if self.settings.matched_wall else None
        for path in self._texture_paths if not self.settings.world_look else ():
            cache.put(path, random_texture(_family(path), rng, self.settings.distractors, style))
        lamp = replace(self._camera.lamp,
                       intensity=self._camera.lamp.intensity * float(rng.uniform(0.6, 1.4)))
        return Camera(self._camera.spec, lamp, seed=seed, textures=cache,
                      texture_tile_m=self._camera.texture_tile_m)

    def _frame(self, camera: Camera, rng: np.random.Generator) -> LabelledFrame:
        s = self.settings
        if s.close_up_fraction > 0.0 and rng.random() < s.close_up_fraction:
            return self._close_up(camera, rng)
        # Pose the crawler before a defect (or anywhere) and jitter the camera
        if self._targets and rng.random() < s.defect_view_fraction:
            target = self._targets[self._pick_target(rng)]
            before_m = dict(s.surface_distance_m).get(target.surface, s.distance_before_defect_m)
            along_m = target.route_distance_m - float(rng.uniform(*before_m))
        else:
            along_m = self._anywhere_m(rng)
        return self._shoot(camera, along_m, rng)

    def _shoot(self, camera: Camera, along_m: float, rng: np.random.Generator
               ) -> LabelledFrame:
        """Pose the crawler at ``along_m`` with jitter, render, label and degrade the frame."""
        route = self.sim.route
        along_m = self._outside_held_out(min(max(along_m, 0.5), route.length_m - 0.5))
        camera.zoom_to(self._wide_fov_rad)
        return self._develop(camera, self._camera_pose(along_m, rng), along_m, rng)

    def _close_up(self, camera: Camera, rng: np.random.Generator) -> LabelledFrame:
        """The camera on its head aimed at a target (or plain surface) and zoomed in."""
        s = self.settings
        target = (self._targets[self._pick_target(rng)] if self._targets
                  and rng.random() < 2 / 3 else None)
        if target is not None and target.centre_m is None:
            target = None  # no centre to aim at (pipe defects): plain surface instead
        along_m = (target.route_distance_m - float(rng.uniform(*s.close_up_before_m))
                   if target is not None else self._anywhere_m(rng))
        along_m = self._outside_held_out(min(max(along_m, 0.5), self.sim.route.length_m - 0.5))
        T_world_mount = self._camera_pose(along_m, rng)
        if target is not None and target.centre_m is not None:
            point = target.centre_m + rng.uniform(-s.close_up_aim_m, s.close_up_aim_m, 3)
        else:  # plain surface: wherever a random direction of the head meets it
            pan, tilt = float(rng.uniform(-1.7, 1.7)), float(rng.uniform(-0.7, 1.2))
            direction = T_world_mount[:3, :3] @ CameraHead(pan, tilt).T_mount_camera()[:3, 0]
            hit = self.sim.scene.cast(T_world_mount[None, :3, 3].astype(np.float32),
                                      direction[None].astype(np.float32), 15.0)
            if not bool(hit.hit[0]):
                return self._shoot(camera, along_m, rng)
            point = hit.point_m[0].astype(np.float64)
        aim = aim_head(T_world_mount, point, float(rng.uniform(*s.close_up_field_m)),
                       self._wide_fov_rad)
        head = CameraHead(aim.pan_rad, aim.tilt_rad, aim.horizontal_fov_rad)
        camera.zoom_to(aim.horizontal_fov_rad)
        return self._develop(camera, T_world_mount @ head.T_mount_camera(), along_m, rng)

    def _develop(self, camera: Camera, T_world_camera: NDArray[np.float64], along_m: float,
                 rng: np.random.Generator) -> LabelledFrame:
        """Render (twice: auto-exposure settles on the second), label and degrade a frame."""
        lamp_fraction = float(rng.uniform(0.5, 1.0))
        ambient = self._ambient(T_world_camera, rng)
        camera.render(self.sim.scene, T_world_camera, lamp_fraction, ambient)
        image = camera.render(self.sim.scene, T_world_camera, lamp_fraction, ambient)
        boxes = self._labels(T_world_camera, camera.spec.horizontal_fov_rad)
        # Degrade like a real inspection camera
        return LabelledFrame(degrade(image, rng), boxes, along_m)

    def _held_out(self, route_distance_m: float) -> bool:
        stretch = self.settings.exclude_route_m
        return stretch is not None and stretch[0] <= route_distance_m <= stretch[1]

    def _blind_stretch_m(self) -> tuple[float, float] | None:
        """Route stretch where a camera would stand in, or look into, the held-out stretch."""
        stretch = self.settings.exclude_route_m
        return None if stretch is None else (stretch[0] - HELD_OUT_VIEW_MARGIN_M, stretch[1])

    def _anywhere_m(self, rng: np.random.Generator) -> float:
        """A uniformly random route distance where the camera sees nothing held out."""
        length_m = self.sim.route.length_m
        blind = self._blind_stretch_m()
        if blind is None:
            return float(rng.uniform(1.0, length_m - 1.0))
        before = (1.0, min(blind[0], length_m - 1.0))
        after = (max(blind[1], 1.0), length_m - 1.0)
        before_m, after_m = max(before[1] - before[0], 0.0), max(after[1] - after[0], 0.0)
        if before_m + after_m <= 0.0:
            raise DatasetError(f"held-out stretch {self.settings.exclude_route_m} m leaves no "
                               "route to pose a camera on")
        draw_m = float(rng.uniform(0.0, before_m + after_m))
        return before[0] + draw_m if draw_m < before_m else after[0] + draw_m - before_m

    def _outside_held_out(self, along_m: float) -> float:
        """``along_m``, or the end of the held-out stretch where it lies inside it (the
        target, not held out, then lies beyond that end)."""
        stretch = self.settings.exclude_route_m
        if stretch is not None and stretch[0] < along_m < stretch[1]:
            return min(stretch[1], self.sim.route.length_m - 0.5)
        return along_m

    def _ambient(self, T_world_camera: NDArray[np.float64], rng: np.random.Generator) -> float:
        """Ambient light of a frame: tunnel lighting at random, daylight under open shafts."""
        lights = self.settings.ambient_light
        if lights is None:
            return 0.0
        open_sky = self.sim.under_open_sky(T_world_camera[:3, 3])
        daylight = self.sim.config.daylight_ambient if open_sky else 0.0
        return daylight + float(rng.uniform(*lights))

    def _pick_target(self, rng: np.random.Generator) -> int:
        weights = dict(self.settings.class_weights)
        if not weights:
            return int(rng.integers(len(self._targets)))
        odds = np.array([weights.get(t.code, 1.0) for t in self._targets])
        return int(rng.choice(len(self._targets), p=odds / odds.sum()))

    def _camera_pose(self, along_m: float, rng: np.random.Generator) -> NDArray[np.float64]:
        s = self.settings
        route = self.sim.route
        heading = route.heading_at(along_m)
        point = route.point_at(along_m)
        offset = float(rng.uniform(-s.lateral_offset_m, s.lateral_offset_m))
        x = float(point[0]) - offset * math.sin(heading)
        y = float(point[1]) + offset * math.cos(heading)
        yaw = heading + float(rng.normal(0.0, s.yaw_sigma_rad))
        self.sim.body.state = BodyState(x, y, float(point[2]) + 0.3, yaw_rad=yaw)
        self.sim.body.settle()
        jitter = np.eye(4)
        jitter[:3, :3] = rotation_from_rpy(float(rng.uniform(-s.roll_rad, s.roll_rad)),
                                           float(rng.uniform(-s.tilt_rad, s.tilt_rad)),
                                           float(rng.uniform(-s.tilt_rad, s.tilt_rad)))
        T_world_camera: NDArray[np.float64] = (
            self.sim.T_world_base() @ self.sim.T_base_camera @ jitter)
        return T_world_camera

    # --- labels ------------------------------------------------------------------------------

    def _labels(self, T_world_camera: NDArray[np.float64], horizontal_fov_rad: float
                ) -> tuple[Box, ...]:
        spec = self._camera.spec
        zoom = 1.0
        if horizontal_fov_rad == self._wide_fov_rad:
            rows, cols, directions_camera = self._label_rays
        else:
            rows, cols, directions_camera = self._label_directions(horizontal_fov_rad)
            zoom = math.tan(0.5 * self._wide_fov_rad) / math.tan(0.5 * horizontal_fov_rad)
        R = T_world_camera[:3, :3]
        directions = directions_camera @ R.T
        origins = np.broadcast_to(T_world_camera[:3, 3], directions.shape)
        hits = self.sim.scene.cast(np.ascontiguousarray(origins, dtype=np.float32),
                                   np.ascontiguousarray(directions, dtype=np.float32),
                                   spec.far_clip_m)
        index = np.where(hits.geometry_index >= 0, hits.geometry_index, len(self._owner) - 1)
        owner = self._owner[index]
        boxes = []
        min_rays = self.settings.min_label_px / LABEL_STEP_PX**2
        ranges = dict(self.settings.label_range_m)
        range_m = np.linalg.norm(hits.point_m - T_world_camera[:3, 3], axis=1)
        for target_id, target in enumerate(self._targets):
            on = owner == target_id
            if target.code in ranges:  # a zoom resolves fine detail from farther
                on &= range_m <= ranges[target.code] * zoom
            if target.joint_centre_m is not None and target.joint_normal is not None:
                along = (hits.point_m - target.joint_centre_m) @ target.joint_normal
                on |= self._ring[index] & (np.abs(along) < JOINT_BAND_M)
            if np.count_nonzero(on) < min_rays:
                continue
            r, c = rows[on], cols[on]
            box = (float(c.min()) * LABEL_STEP_PX, float(r.min()) * LABEL_STEP_PX,
                   float(c.max() + 1) * LABEL_STEP_PX, float(r.max() + 1) * LABEL_STEP_PX)
            box = (box[0], box[1], min(box[2], spec.width_px), min(box[3], spec.height_px))
            if min(box[2] - box[0], box[3] - box[1]) >= self.settings.min_box_side_px:
                boxes.append(Box(target.class_index, box))
        return tuple(boxes)

    def _label_directions(self, horizontal_fov_rad: float
                          ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        spec = replace(self._camera.spec, horizontal_fov_rad=horizontal_fov_rad)
        f = focal_px(spec)
        rows, cols = np.mgrid[0:spec.height_px // LABEL_STEP_PX, 0:spec.width_px // LABEL_STEP_PX]
        u = (cols + 0.5) * LABEL_STEP_PX
        v = (rows + 0.5) * LABEL_STEP_PX
        directions = np.stack([np.full(u.shape, f), 0.5 * spec.width_px - u,
                               0.5 * spec.height_px - v], axis=-1).reshape(-1, 3)
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        return rows.ravel(), cols.ravel(), directions

    def _geometry_owners(self) -> NDArray[np.int64]:
        """Target index of each geometry's defect link (-1: none); one extra row for misses."""
        ids = {t.geometry_key: i for i, t in enumerate(self._targets)}
        owners = np.full(len(self.sim.scene.geometries) + 1, -1, dtype=np.int64)
        for index, geometry in enumerate(self.sim.scene.geometries):
            for key, target in ids.items():
                if key in f"{geometry.name}::":
                    owners[index] = target
        return owners

    def _check_feature_geometries(self, world: str) -> None:
        """Every feature target has geometry to label (the world's names are as expected)."""
        owned = set(self._owner[self._owner >= 0].tolist())
        missing = [t.ident for i, t in enumerate(self._targets) if i not in owned]
        if missing:
            raise DatasetError(f"world '{world}': no geometry named '{FEATURE_GEOMETRY_PREFIX}"
                               f"<id>' for features {', '.join(missing)}")

    def _target(self, defect: PipeDefect) -> _Target:
        route = self.sim.route
        start_m = defect.distance_m + self._datum_m
        centre_m = start_m + 0.5 * defect.extent_length_m
        key = f"::defect_{defect.id}::"
        index = DETECTOR_CLASSES.index(defect.code)
        if defect.code not in JOINT_CODES:
            return _Target(defect.id, defect.code, index, start_m, key)
        before, after = route.point_at(centre_m - 0.05), route.point_at(centre_m + 0.05)
        normal = (after - before) / np.linalg.norm(after - before)
        centre = route.point_at(centre_m)
        return _Target(defect.id, defect.code, index, start_m, key, centre, normal)

    def _feature_targets(self, tunnel: TunnelTruth) -> list[_Target]:
        return [self._feature_target(f) for f in tunnel.surface_features
                if f.kind in SURFACE_FEATURE_CODES]

    def _feature_target(self, feature: SurfaceFeature) -> _Target:
        code = SURFACE_FEATURE_CODES[feature.kind]
        return _Target(feature.id, code, DETECTOR_CLASSES.index(code),
                       approach_distance_m(self.sim.route, feature.centre_m),
                       f"{FEATURE_GEOMETRY_PREFIX}{feature.id}::", surface=feature.surface,
                       centre_m=np.asarray(feature.centre_m, dtype=np.float64))


def _family(texture: Path) -> str:
    """The kind of a world texture: ``crack_b`` (another crack) is a ``crack``."""
    return texture.stem.partition("_")[0]


def approach_distance_m(route: Polyline, point_m: Sequence[float]) -> float:
    """Route distance of ``point_m`` projected onto the route, on the leg that approaches it.

    Where the route doubles back (down a branch and out again) two legs are equally near; the
    earlier one is the leg that approaches the point, with the point ahead of the crawler.
    """
    point = np.asarray(point_m, dtype=np.float64)
    starts, steps = route.points_m[:-1], np.diff(route.points_m, axis=0)
    lengths_m = np.linalg.norm(steps, axis=1)
    t = np.clip(np.einsum("ij,ij->i", point - starts, steps) / lengths_m**2, 0.0, 1.0)
    gaps_m = np.linalg.norm(starts + t[:, None] * steps - point, axis=1)
    leg = int(np.flatnonzero(gaps_m <= gaps_m.min() + 1e-6)[0])
    return float(lengths_m[:leg].sum() + t[leg] * lengths_m[leg])


def degrade(image_bgr: ImageBGR, rng: np.random.Generator) -> ImageBGR:
    """Defocus, motion blur, gain, sensor noise and JPEG artefacts, each at random."""
    image: NDArray[np.float32] = image_bgr.astype(np.float32)
    if rng.random() < 0.5:  # defocus
        image = np.asarray(cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 1.4))),
                           dtype=np.float32)
    if rng.random() < 0.2:  # motion blur along a random direction
        length = int(rng.integers(3, 10))
        kernel = np.zeros((length, length), dtype=np.float32)
        kernel[length // 2, :] = 1.0
        centre = ((length - 1) / 2.0, (length - 1) / 2.0)
        rotation = cv2.getRotationMatrix2D(centre, float(rng.uniform(0, 180)), 1.0)
        kernel = np.asarray(cv2.warpAffine(kernel, rotation, (length, length)), dtype=np.float32)
        kernel /= max(float(kernel.sum()), 1e-6)
        image = np.asarray(cv2.filter2D(image, -1, kernel), dtype=np.float32)
    image *= np.float32(rng.uniform(0.75, 1.25))  # gain
    image += rng.normal(0.0, float(rng.uniform(0.0, 6.0)), image.shape).astype(np.float32)
    out: ImageBGR = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:  # JPEG at a random quality
        quality = int(rng.integers(35, 95))
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = np.ascontiguousarray(decoded, dtype=np.uint8)
    return out


def split_seeds(split: str, looks: int, first: int = 0) -> list[int]:
    """Seeds of a split's looks; the splits' ranges never overlap."""
    if split not in SPLIT_SEED_BASE:
        raise DatasetError(f"unknown split '{split}': use one of {sorted(SPLIT_SEED_BASE)}")
    base = SPLIT_SEED_BASE[split] + first
    return list(range(base, base + looks))


Progress = Callable[[str, int, int], None]


def write_dataset(out_dir: Path, looks: dict[str, int], world: str = "sewer_dn1000",
                  settings: RenderSettings | None = None, progress: Progress | None = None,
                  first_look: int = 0) -> Path:
    """Render every split into ``out_dir`` (YOLO layout) and return its ``data.yaml``.

    ``looks`` maps a split name (train, val, test) to its number of looks; each look gives
    ``settings.frames_per_look`` images; ``first_look`` skips that many seeds of each split's
    range (a second batch of new looks). ``progress(split, done, total)`` is called per image.
    """
    renderer = DatasetRenderer(world, settings)
    frames_per_look = renderer.settings.frames_per_look
    seeds: dict[str, list[int]] = {}
    for split, count in looks.items():
        seeds[split] = split_seeds(split, count, first_look)
        image_dir, label_dir = out_dir / "images" / split, out_dir / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        total, done = count * frames_per_look, 0
        for seed in seeds[split]:
            for index, frame in enumerate(renderer.frames(seed)):
                stem = f"{world}_{seed}_{index:03d}"
                _write_frame(image_dir / f"{stem}.jpg", label_dir / f"{stem}.txt", frame)
                done += 1
                if progress is not None:
                    progress(split, done, total)
    data_yaml = out_dir / "data.yaml"
    spec = renderer.settings
    data = {
        "path": str(out_dir.resolve()),
        **{split: f"images/{split}" for split in looks},
        "names": dict(enumerate(DETECTOR_CLASSES)),
        "rendered": {"world": world, "frames_per_look": frames_per_look,
                     "seeds": {k: [v[0], v[-1]] for k, v in seeds.items() if v},
                     "roll_deg": round(math.degrees(spec.roll_rad), 1),
                     "distractors": spec.distractors,
                     "class_weights": dict(spec.class_weights),
                     "held_out_route_m": (list(spec.exclude_route_m)
                                          if spec.exclude_route_m is not None else None),
                     "held_out_features": list(renderer.held_out_ids),
                     "matched_wall": spec.matched_wall,
                     "world_look": spec.world_look,
                     "label_range_m": dict(spec.label_range_m),
                     "close_up_fraction": spec.close_up_fraction,
                     "close_up_field_m": list(spec.close_up_field_m),
                     "git_commit": _git_commit()},
    }
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return data_yaml


def _git_commit() -> str | None:
    """The renderer's code version (the same seeds render the same images only with it)."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _write_frame(image_path: Path, label_path: Path, frame: LabelledFrame) -> None:
    height, width = frame.image_bgr.shape[:2]
    if not cv2.imwrite(str(image_path), frame.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise DatasetError(f"{image_path}: cannot write image")
    lines = []
    for box in frame.boxes:
        x0, y0, x1, y1 = box.xyxy_px
        lines.append(f"{box.class_index} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                     f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    label_path.write_text("".join(f"{line}\n" for line in lines))


def boxes_of(frames: Sequence[LabelledFrame]) -> dict[str, int]:
    """How many boxes of each class a set of frames holds (for progress and reports)."""
    counts = dict.fromkeys(DETECTOR_CLASSES, 0)
    for frame in frames:
        for box in frame.boxes:
            counts[DETECTOR_CLASSES[box.class_index]] += 1
    return counts
