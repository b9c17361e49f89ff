"""Labelled training images rendered in the simulated worlds (YOLO detection format).

Each *look* (one integer seed) repaints every surface texture of the world with a randomised
version (``textures.py``), dims or brightens the lamp, and then photographs the defects from
random crawler poses: a random distance before the defect, off the pipe's axis, with the camera
rolled and tilted as a crawler on a slippery invert is. Labels come from the ray caster, not
from projected outlines: a pixel belongs to a defect when its ray hits that defect's geometry
(or, for joint defects, the pipe wall within a band of the joint), so occlusion and the image
border are exact. Each frame is then degraded like a real inspection camera's (defocus, motion
blur, sensor noise, JPEG).

Splits draw their looks from disjoint seed ranges, so a test set never shares a look with the
training set.
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

from perception.errors import DatasetError
from perception.synthetic.textures import TEXTURES, random_texture
from sim_worlds.simulator.body import BodyState
from sim_worlds.simulator.camera import Camera, TextureCache, focal_px
from sim_worlds.simulator.sdf import rotation_from_rpy
from sim_worlds.simulator.simulation import SimConfig, Simulation
from sim_worlds.worldgen.truth import PipeDefect

# Classes the camera detector learns, in model index order. BX (deformation) is measured from
# the lidar, not seen: a ring squeezed by 10 % looks round to a camera.
DETECTOR_CLASSES: tuple[str, ...] = ("PL", "FS", "SL", "SG", "JG", "ZW", "CJ", "AJ", "TJ", "CK")
JOINT_CODES = frozenset({"CK", "TJ"})
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


@dataclass(frozen=True)
class _Target:
    code: str
    class_index: int
    route_distance_m: float
    joint_centre_m: NDArray[np.float64] | None  # a point on the joint plane (joint defects)
    joint_normal: NDArray[np.float64] | None


class DatasetRenderer:
    """Renders labelled frames of one world; build once, then ``frames(seed)`` per look."""

    def __init__(self, world: str = "sewer_dn1000", settings: RenderSettings | None = None
                 ) -> None:
        self.settings = settings or RenderSettings()
        self.sim = Simulation(world, SimConfig(lidar=False, camera=True))
        camera = self.sim.camera
        pipe = self.sim.truth.pipe
        if camera is None or pipe is None:
            raise DatasetError(f"world '{world}' needs a camera on the crawler and a pipe truth")
        self._camera = camera
        self._datum_m = pipe.datum_route_distance_m
        self._targets = [self._target(d) for d in pipe.defects if d.code in DETECTOR_CLASSES]
        self._owner = self._geometry_owners()
        self._ring = np.array(["::ring_" in g.name for g in self.sim.scene.geometries] + [False])
        self._texture_paths = sorted({
            g.material.albedo_map for g in self.sim.scene.geometries
            if g.material.albedo_map is not None and g.material.albedo_map.stem in TEXTURES
        })
        self._label_rays = self._label_directions()

    def frames(self, seed: int) -> Iterator[LabelledFrame]:
        """``frames_per_look`` labelled frames of the look ``seed``."""
        rng = np.random.default_rng(seed)
        camera = self._look(rng, seed)
        for _ in range(self.settings.frames_per_look):
            yield self._frame(camera, rng)

    # --- one look ----------------------------------------------------------------------------

    def _look(self, rng: np.random.Generator, seed: int) -> Camera:
        """A camera whose texture cache holds this look's repainted textures and lamp."""
        cache = TextureCache()
        for path in self._texture_paths:
            cache.put(path, random_texture(path.stem, rng, self.settings.distractors))
        lamp = replace(self._camera.lamp,
                       intensity=self._camera.lamp.intensity * float(rng.uniform(0.6, 1.4)))
        return Camera(self._camera.spec, lamp, seed=seed, textures=cache,
                      texture_tile_m=self._camera.texture_tile_m)

    def _frame(self, camera: Camera, rng: np.random.Generator) -> LabelledFrame:
        s = self.settings
        # Pose the crawler before a defect (or anywhere) and jitter the camera
        route = self.sim.route
        if self._targets and rng.random() < s.defect_view_fraction:
            target = self._targets[self._pick_target(rng)]
            along_m = target.route_distance_m - float(rng.uniform(*s.distance_before_defect_m))
        else:
            along_m = float(rng.uniform(1.0, route.length_m - 1.0))
        along_m = min(max(along_m, 0.5), route.length_m - 0.5)
        T_world_camera = self._camera_pose(along_m, rng)
        # Render (twice: auto-exposure settles on the second) and label
        lamp_fraction = float(rng.uniform(0.5, 1.0))
        camera.render(self.sim.scene, T_world_camera, lamp_fraction)
        image = camera.render(self.sim.scene, T_world_camera, lamp_fraction)
        boxes = self._labels(T_world_camera)
        # Degrade like a real inspection camera
        return LabelledFrame(degrade(image, rng), boxes, along_m)

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
        yaw = heading + float(rng.normal(0.0, 0.05))
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

    def _labels(self, T_world_camera: NDArray[np.float64]) -> tuple[Box, ...]:
        spec = self._camera.spec
        rows, cols, directions_camera = self._label_rays
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
        for target_id, target in enumerate(self._targets):
            on = owner == target_id
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

    def _label_directions(self) -> tuple[NDArray[np.int64], NDArray[np.int64],
                                         NDArray[np.float64]]:
        spec = self._camera.spec
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
        ids = {f"::defect_{d}::": i for i, d in enumerate(self._defect_ids())}
        owners = np.full(len(self.sim.scene.geometries) + 1, -1, dtype=np.int64)
        for index, geometry in enumerate(self.sim.scene.geometries):
            for key, target in ids.items():
                if key in f"{geometry.name}::":
                    owners[index] = target
        return owners

    def _defect_ids(self) -> list[str]:
        pipe = self.sim.truth.pipe
        assert pipe is not None  # checked in __init__
        return [d.id for d in pipe.defects if d.code in DETECTOR_CLASSES]

    def _target(self, defect: PipeDefect) -> _Target:
        route = self.sim.route
        start_m = defect.distance_m + self._datum_m
        centre_m = start_m + 0.5 * defect.extent_length_m
        if defect.code not in JOINT_CODES:
            return _Target(defect.code, DETECTOR_CLASSES.index(defect.code), start_m, None, None)
        before, after = route.point_at(centre_m - 0.05), route.point_at(centre_m + 0.05)
        normal = (after - before) / np.linalg.norm(after - before)
        centre = route.point_at(centre_m)
        return _Target(defect.code, DETECTOR_CLASSES.index(defect.code), start_m, centre, normal)


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
