"""Synthetic training data: labels come from the ray caster, looks are random, splits disjoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.errors import DatasetError
from perception.synthetic.render import (
    DETECTOR_CLASSES,
    DatasetRenderer,
    RenderSettings,
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
