"""Lamp-lit camera: where things appear, lamp falloff and cone, exposure, water, textures."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from numpy.typing import NDArray

from sim_worlds.simulator.camera import DEFAULT_LAMP, Camera, Lamp, projection
from sim_worlds.simulator.scene import RaycastScene
from sim_worlds.simulator.sdf import CameraSpec, load_world, rotation_from_rpy

WORLDS_DIR = Path(__file__).resolve().parents[2] / "sim_worlds" / "worlds"
SPEC = CameraSpec(
    horizontal_fov_rad=1.396263,
    width_px=640,
    height_px=480,
    pixel_format="R8G8B8",
    near_clip_m=0.05,
    far_clip_m=60.0,
    noise_stddev=0.0,
)
NOISY_SPEC = replace(SPEC, noise_stddev=0.007)

# Grey room: interior x in [-2, 2], y in [-1.5, 1.5], z in [0, 2.5]; walls 0.2 m thick.
ROOM = """
<model name="room"><static>true</static><link name="shell">
  <visual name="floor"><pose>0 0 -0.1 0 0 0</pose>
    <geometry><box><size>4.4 3.4 0.2</size></box></geometry></visual>
  <visual name="ceiling"><pose>0 0 2.6 0 0 0</pose>
    <geometry><box><size>4.4 3.4 0.2</size></box></geometry></visual>
  <visual name="east"><pose>2.1 0 1.25 0 0 0</pose>
    <geometry><box><size>0.2 3 2.5</size></box></geometry></visual>
  <visual name="west"><pose>-2.1 0 1.25 0 0 0</pose>
    <geometry><box><size>0.2 3 2.5</size></box></geometry></visual>
  <visual name="north"><pose>0 1.6 1.25 0 0 0</pose>
    <geometry><box><size>4 0.2 2.5</size></box></geometry></visual>
  <visual name="south"><pose>0 -1.6 1.25 0 0 0</pose>
    <geometry><box><size>4 0.2 2.5</size></box></geometry></visual>
</link></model>"""

# A red-textured patch on the east wall: y in [0.1, 0.7], z in [1.3, 1.7], front face x = 1.99.
PATCH_CORNERS_M = [(1.99, y, z) for y in (0.1, 0.7) for z in (1.3, 1.7)]
PATCH = """
<model name="patch"><static>true</static><link name="l">
  <visual name="paint"><pose>1.995 0.4 1.5 0 0 0</pose>
    <geometry><box><size>0.01 0.6 0.4</size></box></geometry>
    <material><diffuse>1 1 1 1</diffuse>
      <pbr><metal><albedo_map>red.png</albedo_map></metal></pbr></material></visual>
</link></model>"""


def write_world(tmp_path: Path, body: str, name: str = "world.sdf") -> Path:
    """Write a world holding ``body``; return its path."""
    path = tmp_path / name
    path.write_text(
        f'<?xml version="1.0"?>\n<sdf version="1.9"><world name="t">{body}</world></sdf>'
    )
    return path


def scene_of(tmp_path: Path, body: str, name: str = "world.sdf") -> RaycastScene:
    """The ray-cast scene of a world holding ``body``."""
    return RaycastScene.from_world(load_world(write_world(tmp_path, body, name)))


def write_texture(path: Path, bgr: NDArray[np.uint8]) -> None:
    """Save an 8-bit BGR image."""
    assert cv2.imwrite(str(path), bgr)


def pose(
    xyz: tuple[float, float, float], yaw_rad: float = 0.0, pitch_rad: float = 0.0
) -> NDArray[np.float64]:
    """T_world_camera at ``xyz``, turned by yaw then pitched (positive: looking down)."""
    T = np.eye(4)
    T[:3, :3] = rotation_from_rpy(0.0, pitch_rad, yaw_rad)
    T[:3, 3] = xyz
    return T


def pixel_box(
    T_world_camera: NDArray[np.float64], corners_m: list[tuple[float, float, float]]
) -> tuple[int, int, int, int]:
    """Image bounding box (u0, v0, u1, v1) of world points, via ``projection``."""
    T_camera_world = np.linalg.inv(T_world_camera)
    pixels = []
    for corner in corners_m:
        uv = projection(SPEC, (T_camera_world @ np.array([*corner, 1.0]))[:3])
        assert uv is not None
        pixels.append(uv)
    us, vs = zip(*pixels, strict=True)
    return int(min(us)), int(min(vs)), int(max(us)), int(max(vs))


def redness(image: NDArray[np.uint8]) -> float:
    """Mean red minus mean blue of a BGR region."""
    return float(image[..., 2].astype(np.float64).mean() - image[..., 0].mean())


@pytest.fixture
def room_with_patch(tmp_path: Path) -> RaycastScene:
    """The grey room with a red patch on its east wall."""
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[:, :, 2] = 220
    write_texture(tmp_path / "red.png", red)
    return scene_of(tmp_path, ROOM + PATCH)


def test_frame_is_bgr_uint8_and_the_patch_is_where_projection_puts_it(
    room_with_patch: RaycastScene,
) -> None:
    T = pose((-1.5, 0.0, 1.25))
    camera = Camera(SPEC)
    for _ in range(4):  # let auto-exposure settle
        frame = camera.render(room_with_patch, T)

    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert 60 < frame.mean() < 200 and (frame == 255).mean() < 0.01
    u0, v0, u1, v1 = pixel_box(T, PATCH_CORNERS_M)
    assert 40 < u1 - u0 < 90 and 30 < v1 - v0 < 60  # about 65 x 45 px
    inside = frame[v0 + 3 : v1 - 2, u0 + 3 : u1 - 2]
    ring = np.ones(frame.shape[:2], dtype=bool)
    ring[v0 - 4 : v1 + 5, u0 - 4 : u1 + 5] = False
    ring[: v0 - 15] = ring[v1 + 16 :] = False
    ring[:, : u0 - 15] = ring[:, u1 + 16 :] = False
    assert redness(inside) > 60.0  # red: the texture in BGR order
    assert abs(redness(frame[ring])) < 5.0  # grey wall all around
    # The outline is sharp to a few pixels: just inside red, just outside grey
    assert redness(frame[v0 + 3 : v1 - 2, u0 + 3 : u0 + 5]) > 50.0
    assert abs(redness(frame[v0 + 3 : v1 - 2, u0 - 5 : u0 - 3])) < 10.0


def test_texture_detail_is_sampled_at_full_resolution(tmp_path: Path) -> None:
    # 1 mm texels on a patch 0.4 m away: a texel is about one pixel. One-texel dark lines
    # every 8 texels must show as separate lines, which rays every 2 px could not resolve.
    lines = np.full((256, 256, 3), 230, dtype=np.uint8)
    lines[:, ::8] = 20
    write_texture(tmp_path / "lines.png", lines)
    patch = PATCH.replace("0.01 0.6 0.4", "0.01 0.256 0.256").replace("red.png", "lines.png")
    scene = scene_of(tmp_path, ROOM + patch)
    frame = Camera(SPEC).render(scene, pose((1.59, 0.4, 1.5)))
    row = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[240, 200:440].astype(np.float64)

    dark = row < 0.6 * np.median(row)
    starts = np.flatnonzero(dark[1:] & ~dark[:-1])
    assert 20 <= starts.size <= 40  # about 240 px / 8 px per line
    assert 5.0 < np.median(np.diff(starts)) < 12.0


def test_a_farther_wall_is_darker(room_with_patch: RaycastScene) -> None:
    camera = Camera(SPEC, replace(DEFAULT_LAMP, intensity=0.15), auto_exposure=False)
    near = camera.render(room_with_patch, pose((0.5, -0.5, 1.0)))
    far = camera.render(room_with_patch, pose((-1.5, -0.5, 1.0)))
    centre = np.s_[200:280, 280:360]

    assert near[centre].mean() > far[centre].mean() + 20.0


def test_surfaces_outside_the_lamp_cone_are_black(room_with_patch: RaycastScene) -> None:
    narrow = replace(
        DEFAULT_LAMP, cone_inner_rad=math.radians(8.0), cone_outer_rad=math.radians(12.0)
    )
    frame = Camera(SPEC, narrow).render(room_with_patch, pose((-1.5, -0.5, 1.0)))

    assert frame[220:260, 300:340].mean() > 60.0  # on the axis
    assert frame[:100].max() == 0 and frame[:, :150].max() == 0  # far off the axis


def test_with_the_lamp_off_the_frame_is_black_but_for_noise(
    room_with_patch: RaycastScene,
) -> None:
    camera = Camera(NOISY_SPEC)
    for _ in range(4):  # auto-exposure turns the gain all the way up: still nothing to see
        frame = camera.render(room_with_patch, pose((-1.5, 0.0, 1.25)), lamp_fraction=0.0)

    assert frame.mean() < 2.0 and np.percentile(frame, 99.9) <= 8
    assert (frame > 0).mean() > 0.2  # read noise


def test_auto_exposure_brings_too_bright_and_too_dark_frames_into_range(
    room_with_patch: RaycastScene,
) -> None:
    T = pose((-1.5, -0.5, 1.0))
    runs = {}
    for intensity in (30.0, 0.01):  # 3000 times apart
        camera = Camera(SPEC, replace(DEFAULT_LAMP, intensity=intensity))
        frames, gains = [], []
        for _ in range(8):
            frames.append(camera.render(room_with_patch, T))
            gains.append(camera.exposure_gain)
        runs[intensity] = frames, gains

    (bright, bright_gains), (dark, dark_gains) = runs[30.0], runs[0.01]
    assert (bright[0] == 255).mean() > 0.5  # the first frame, at the start-up gain
    assert np.percentile(dark[0], 99) < 100
    for frames, gains in (runs[30.0], runs[0.01]):
        settled = frames[4]
        assert (settled == 255).mean() < 0.01
        assert 100 <= np.percentile(settled, 99) < 255 and 40 < settled.mean() < 200
        assert abs(math.log(gains[5] / gains[4])) < 0.1  # hardly moves any more
    # Same scene, lamps 3000 times apart: soon the pictures agree
    assert np.abs(bright[7].astype(np.int16) - dark[7]).mean() < 3.0
    assert bright_gains[7] * 3000.0 == pytest.approx(dark_gains[7], rel=0.1)


def test_same_seed_renders_the_same_frames(room_with_patch: RaycastScene) -> None:
    T = pose((-1.5, 0.0, 1.25))
    first, again, other = (
        Camera(NOISY_SPEC, seed=4),
        Camera(NOISY_SPEC, seed=4),
        Camera(NOISY_SPEC, seed=5),
    )
    for _ in range(2):
        a, b, c = (cam.render(room_with_patch, T) for cam in (first, again, other))
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


def floor_with_water(tmp_path: Path, floor_rgb: str, water: bool, name: str) -> RaycastScene:
    """A floor plate of one colour, optionally with a 3 cm pool on its x > 0 half."""
    pool = (
        """<visual name="pool"><pose>1.5 0 0.015 0 0 0</pose>
      <geometry><box><size>3 4 0.03</size></box></geometry>
      <transparency>0.45</transparency>
      <material><diffuse>0.12 0.22 0.26 1</diffuse><specular>0.6 0.6 0.6 1</specular>
      </material></visual>"""
        if water
        else ""
    )
    return scene_of(
        tmp_path,
        f"""<model name="m"><static>true</static><link name="l">
      <visual name="floor"><pose>0 0 -0.05 0 0 0</pose>
        <geometry><box><size>6 4 0.1</size></box></geometry>
        <material><diffuse>{floor_rgb} 1</diffuse></material></visual>{pool}
      </link></model>""",
        name,
    )


def test_water_is_dark_and_shows_what_lies_beneath(tmp_path: Path) -> None:
    # Looking down at the pool's edge: left/right halves of the frame are dry floor / water
    T = pose((0.0, 0.0, 0.6), yaw_rad=math.pi / 2.0, pitch_rad=math.radians(70.0))
    dry, wet = np.s_[150:330, 40:200], np.s_[150:330, 440:600]
    camera = Camera(SPEC, replace(DEFAULT_LAMP, intensity=0.1), auto_exposure=False)
    grey = camera.render(floor_with_water(tmp_path, "0.6 0.6 0.6", True, "a.sdf"), T)
    bare = camera.render(floor_with_water(tmp_path, "0.6 0.6 0.6", False, "b.sdf"), T)
    white = camera.render(floor_with_water(tmp_path, "1 1 1", True, "c.sdf"), T)
    black = camera.render(floor_with_water(tmp_path, "0 0 0", True, "d.sdf"), T)

    assert abs(grey[dry].mean() - bare[dry].mean()) < 2.0
    assert grey[wet].mean() < 0.7 * bare[wet].mean()  # murky water: darker than the floor
    assert grey[wet][..., 0].mean() > grey[wet][..., 2].mean() + 5.0  # and blue-green (BGR)
    assert white[wet].mean() > black[wet].mean() + 10.0  # the bottom shows through


def test_surface_textures_repeat_at_their_physical_size(tmp_path: Path) -> None:
    half = np.zeros((64, 64, 3), dtype=np.uint8)
    half[:, 32:] = 255
    write_texture(tmp_path / "stripes.png", half)
    scene = scene_of(
        tmp_path,
        """<model name="m"><static>true</static><link name="l">
      <visual name="wall"><pose>2.1 0 1.25 0 0 0</pose>
        <geometry><box><size>0.2 4 2.5</size></box></geometry>
        <material><pbr><metal><albedo_map>stripes.png</albedo_map></metal></pbr></material>
      </visual></link></model>""",
    )
    T = pose((0.0, 0.0, 1.25))

    def transitions(tile_m: dict[str, float]) -> int:
        frame = Camera(SPEC, texture_tile_m=tile_m).render(scene, T)
        bright = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[240, 120:520] > 40
        return int(np.count_nonzero(bright[1:] != bright[:-1]))

    # 400 px at 2.1 m span 2.2 m of wall: 4.4 repeats of 0.5 m, two edges each
    assert 7 <= transitions({"stripes": 0.5}) <= 10
    assert transitions({}) <= 1  # a patch texture: once over the whole 4 m face


def test_a_sewer_defect_shows_at_its_ground_truth_position() -> None:
    world_path = WORLDS_DIR / "sewer_dn1000.sdf"
    truth = yaml.safe_load((WORLDS_DIR / "sewer_dn1000.truth.yaml").read_text())
    corrosion = next(d for d in truth["pipe"]["defects"] if d["code"] == "FS")
    scene = RaycastScene.from_world(load_world(world_path, exclude_models=("crawler",)))
    # On the pipe axis (0.5 m below the crown) 1.2 m before the defect, looking downstream
    crown_m = np.array(corrosion["position_m"], dtype=np.float64)
    ahead_m = 0.5 * corrosion["extent_length_m"] + 1.2
    T = pose((crown_m[0] - ahead_m, crown_m[1], crown_m[2] - 0.5))
    camera = Camera(NOISY_SPEC, Lamp((0.0, 0.0, 0.055), 1.0, (0.3, 0.02, 0.004), 0.7, 1.1))
    for _ in range(3):
        frame = camera.render(scene, T)

    uv = projection(SPEC, (np.linalg.inv(T) @ np.array([*crown_m, 1.0]))[:3])
    assert uv is not None
    u, v = int(uv[0]), int(uv[1])
    defect = frame[v - 20 : v + 20, u - 40 : u + 40]
    concrete = frame[v - 20 : v + 20, 20:100]  # the wall to the left, as far away
    assert redness(defect) > redness(concrete) + 15.0  # brown corrosion on grey concrete
    assert abs(redness(concrete)) < 12.0
