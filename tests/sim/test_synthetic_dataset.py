"""Synthetic training data: labels come from the ray caster, looks are random, splits disjoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from navigation.path import Polyline
from perception.errors import DatasetError
from perception.synthetic.render import (
    DETECTOR_CLASSES,
    HELD_OUT_VIEW_MARGIN_M,
    SURFACE_FEATURE_CODES,
    TUNNEL_SETTINGS,
    DatasetRenderer,
    LabelledFrame,
    RenderSettings,
    approach_distance_m,
    default_settings,
    split_seeds,
    write_dataset,
)
from perception.synthetic.textures import TEXTURES, random_texture

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def renderer() -> DatasetRenderer:
    return DatasetRenderer(settings=RenderSettings(frames_per_look=6, defect_view_fraction=1.0))


def test_every_frame_near_a_defect_is_labelled_inside_the_image(renderer: DatasetRenderer
                                                                ) -> None:
    frames = list(renderer.frames(7))
    assert len(frames) == 6
    labelled = [f for f in frames if f.boxes]
    assert len(labelled) >= 4  # posed 0.5-4 m before a defect: most show it
    for frame in frames:
        assert frame.image_bgr.shape == (480, 640, 3)
        for box in frame.boxes:
            x0, y0, x1, y1 = box.xyxy_px
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
            assert 0 <= box.class_index < len(DETECTOR_CLASSES)


def test_labels_sit_where_the_defects_are() -> None:
    # Camera level, on the axis, 1.5 m before a defect: the crown crack (PL, D01 at 14.0 m)
    # is labelled in the upper half, the invert sediment (CJ, D08 at 74 m) in the lower half.
    still = RenderSettings(frames_per_look=40, defect_view_fraction=1.0,
                           distance_before_defect_m=(1.5, 1.5), lateral_offset_m=0.0,
                           roll_rad=0.0, tilt_rad=0.0)
    frames = list(DatasetRenderer(settings=still).frames(5))
    datum_m = 0.599  # route distance of the pipe's distance datum (sewer_dn1000 truth)
    checked = set()
    for frame in frames:
        target_m = frame.route_distance_m + 1.5 - datum_m
        codes = {DETECTOR_CLASSES[b.class_index]: b.xyxy_px for b in frame.boxes}
        for code, distance_m, upper in (("PL", 14.0, True), ("CJ", 74.0, False)):
            if abs(target_m - distance_m) < 1e-6:
                assert code in codes
                y_centre = 0.5 * (codes[code][1] + codes[code][3])
                assert (y_centre < 240) == upper
                checked.add(code)
    assert checked == {"PL", "CJ"}


def test_the_same_seed_renders_the_same_frames_and_another_seed_differs(
        renderer: DatasetRenderer) -> None:
    a = next(iter(renderer.frames(3)))
    b = next(iter(renderer.frames(3)))
    c = next(iter(renderer.frames(4)))
    assert np.array_equal(a.image_bgr, b.image_bgr) and a.boxes == b.boxes
    assert not np.array_equal(a.image_bgr, c.image_bgr)


def test_random_textures_differ_per_draw() -> None:
    for name in TEXTURES:
        first = random_texture(name, np.random.default_rng(1))
        second = random_texture(name, np.random.default_rng(2))
        assert first.shape == (256, 256, 3) and first.dtype == np.uint8
        assert np.abs(first.astype(int) - second.astype(int)).mean() > 2.0


def test_split_seeds_never_overlap() -> None:
    train, val, test = (set(split_seeds(s, 10_000)) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        split_seeds("dev", 1)


def test_write_dataset_makes_a_yolo_layout(tmp_path: Path) -> None:
    data_yaml = write_dataset(tmp_path, {"train": 1, "test": 1},
                              settings=RenderSettings(frames_per_look=3))
    data = yaml.safe_load(data_yaml.read_text())
    assert data["names"] == dict(enumerate(DETECTOR_CLASSES))
    assert data["rendered"]["seeds"]["test"][0] == split_seeds("test", 1)[0]
    images = sorted((tmp_path / "images" / "train").glob("*.jpg"))
    labels = sorted((tmp_path / "labels" / "train").glob("*.txt"))
    assert len(images) == len(labels) == 3
    for label in labels:
        for line in label.read_text().splitlines():
            cls, *xywh = line.split()
            assert int(cls) in range(len(DETECTOR_CLASSES))
            assert all(0.0 <= float(v) <= 1.0 for v in xywh)


# --- utility tunnel: surface features -------------------------------------------------------

TUNNEL_ROUTE = Polyline([(2.0, 0.0, 0.0), (300.0, 0.0, 0.0), (300.0, -50.0, 0.0),
                         (300.0, 0.0, 0.0), (598.0, 0.0, 0.0)])


@pytest.fixture(scope="module")
def tunnel() -> DatasetRenderer:
    return DatasetRenderer("utility_tunnel",
                           replace(TUNNEL_SETTINGS, frames_per_look=8, defect_view_fraction=0.5))


def test_js_is_appended_last_and_tunnel_features_map_to_classes() -> None:
    assert len(DETECTOR_CLASSES) == 11 and DETECTOR_CLASSES[:2] == ("PL", "FS")
    assert DETECTOR_CLASSES.index("CK") == 9 and DETECTOR_CLASSES[-1] == "JS"
    assert SURFACE_FEATURE_CODES == {"crack": "PL", "seepage": "SL", "floor_water": "JS"}
    assert default_settings("utility_tunnel") == TUNNEL_SETTINGS
    assert default_settings("sewer_dn1000") == RenderSettings()


def test_a_branch_feature_lies_on_the_leg_that_approaches_it() -> None:
    # Main gallery after the branch: the return leg; branch wall, water and end wall: the way in
    assert approach_distance_m(TUNNEL_ROUTE, (63.0, -1.6, 1.8)) == pytest.approx(61.0)
    assert approach_distance_m(TUNNEL_ROUTE, (337.5, -1.6, 1.7)) == pytest.approx(435.5)
    assert approach_distance_m(TUNNEL_ROUTE, (298.4, -30.0, 1.5)) == pytest.approx(328.0)
    assert approach_distance_m(TUNNEL_ROUTE, (300.0, -49.0, 0.0)) == pytest.approx(347.0)
    assert approach_distance_m(TUNNEL_ROUTE, (300.0, -51.6, 1.6)) == pytest.approx(348.0)


@pytest.mark.parametrize(("feature", "before_m", "code", "where"), [
    ("CR3", 4.0, "PL", "right"),   # vertical crack on the right wall
    ("CR5", 4.0, "PL", "right"),   # crack on the branch's west wall (right on the way in)
    ("SP3", 4.0, "SL", "right"),   # seepage on the right wall
    ("SP2", 7.0, "SL", "upper"),   # seepage on the ceiling
    ("W2", 4.0, "JS", "lower"),    # standing water on the floor
    ("W3", 3.0, "JS", "lower"),    # standing water at the branch's end
])
def test_a_tunnel_frame_before_a_feature_labels_it_where_it_is(
        tunnel: DatasetRenderer, feature: str, before_m: float, code: str, where: str) -> None:
    frame = tunnel.view(feature, before_m, seed=3)
    boxes = [b.xyxy_px for b in frame.boxes if DETECTOR_CLASSES[b.class_index] == code]
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    centre_x, centre_y = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    assert {"right": centre_x > 320, "upper": centre_y < 240, "lower": centre_y > 240}[where]


def test_a_crack_too_far_to_resolve_is_not_labelled(tunnel: DatasetRenderer) -> None:
    """Beyond its label range (5 m from the camera) a hairline crack is sub-pixel: no box."""
    def cracks(before_m: float) -> list[tuple[float, float, float, float]]:
        frame = tunnel.view("CR3", before_m, seed=4)
        return [b.xyxy_px for b in frame.boxes if DETECTOR_CLASSES[b.class_index] == "PL"]

    assert len(cracks(3.5)) == 1
    assert cracks(6.0) == []
    wide = replace(TUNNEL_SETTINGS, label_range_m=())
    far = DatasetRenderer("utility_tunnel", wide).view("CR3", 6.0, seed=4)
    assert any(DETECTOR_CLASSES[b.class_index] == "PL" for b in far.boxes)


def test_the_held_out_stretch_has_no_targets_and_no_camera_looks_into_it(
        tunnel: DatasetRenderer) -> None:
    assert tunnel.held_out_ids == ("CR1", "SP1", "W1")  # the benchmark mission's stretch
    assert not set(tunnel.target_ids) & set(tunnel.held_out_ids)
    assert {"CR2", "SP4", "W3"} <= set(tunnel.target_ids)
    with pytest.raises(DatasetError, match="'CR1' is no target"):
        tunnel.view("CR1", 3.0)
    start_m, end_m = TUNNEL_SETTINGS.exclude_route_m or (0.0, 0.0)
    frames = [f for seed in (1, 2) for f in tunnel.frames(seed)]
    assert len(frames) == 16 and any(f.boxes for f in frames)
    assert all(not start_m - HELD_OUT_VIEW_MARGIN_M < f.route_distance_m < end_m
               for f in frames)


def test_a_tunnel_dataset_has_11_classes_and_names_its_held_out_stretch(tmp_path: Path
                                                                        ) -> None:
    data_yaml = write_dataset(tmp_path, {"val": 1}, world="utility_tunnel",
                              settings=replace(TUNNEL_SETTINGS, frames_per_look=2))
    data = yaml.safe_load(data_yaml.read_text())
    assert list(data["names"].values()) == list(DETECTOR_CLASSES)
    assert len(data["names"]) == 11 and data["names"][10] == "JS"
    assert data["rendered"]["world"] == "utility_tunnel"
    assert data["rendered"]["held_out_route_m"] == [0.0, 150.0]
    assert data["rendered"]["held_out_features"] == ["CR1", "SP1", "W1"]
    assert len(list((tmp_path / "images" / "val").glob("utility_tunnel_*.jpg"))) == 2


def test_a_world_look_keeps_the_world_s_own_textures(tunnel: DatasetRenderer) -> None:
    world = DatasetRenderer("utility_tunnel", replace(TUNNEL_SETTINGS, world_look=True))
    for renderer, own in ((world, True), (tunnel, False)):
        camera = renderer._look(np.random.default_rng(5), 5)
        for path in renderer._texture_paths:
            from_file = cv2.imread(str(path), cv2.IMREAD_COLOR)
            assert np.array_equal(camera.textures.bgr8(path), from_file) == own, path


def test_close_ups_zoom_in_on_features_and_on_plain_surface() -> None:
    """Close-ups aimed (without jitter) at a feature have it under the image's centre; a third
    of them look at plain surface; a crack is labelled from farther than in a wide view."""
    close = DatasetRenderer("utility_tunnel", replace(
        TUNNEL_SETTINGS, frames_per_look=15, close_up_fraction=1.0, close_up_aim_m=0.0,
        class_weights=(("PL", 2.0),)))  # the world has eight pools and four cracks in reach
    frames = list(close.frames(11))

    def centred(frame: LabelledFrame) -> bool:
        return any(b.xyxy_px[0] <= 320 <= b.xyxy_px[2] and b.xyxy_px[1] <= 240 <= b.xyxy_px[3]
                   for b in frame.boxes)

    aimed = [f for f in frames if centred(f)]
    assert 6 <= len(aimed) <= 14
    assert any(not f.boxes for f in frames)
    assert all(not f.boxes or centred(f) for f in frames)  # only the aimed-at feature shows
    assert any(DETECTOR_CLASSES[b.class_index] == "PL" for f in aimed for b in f.boxes)
