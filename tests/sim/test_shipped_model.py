"""The detector the project ships: loads by its spec, is small, says how it was made, works."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.detectors import SHIPPED_MODELS, load_detector
from perception.detectors.letterbox import box_iou
from perception.synthetic.render import (
    DETECTOR_CLASSES,
    DatasetRenderer,
    RenderSettings,
    default_settings,
)


@pytest.mark.parametrize("model", sorted(SHIPPED_MODELS.values()), ids=lambda p: p.stem)
def test_the_shipped_models_are_small_and_documented(model: Path) -> None:
    assert model.stat().st_size <= 15e6
    assert model.with_suffix(".pt").is_file()
    card = yaml.safe_load(model.with_suffix(".card.yaml").read_text())
    assert all(step["command"].startswith("crawler train detector") for step in card["training"])
    assert all("seeds" in data["rendered"] for data in card["datasets"])
    assert card["test_split_seeds"][0] >= 900_000  # held out: never in a training split


@pytest.mark.slow
def test_the_shipped_model_finds_defects_in_unseen_looks() -> None:
    detector = load_detector("shipped")
    # The pipe model knows the classes before JS (standing water, tunnels only)
    assert detector.classes == DETECTOR_CLASSES[: DETECTOR_CLASSES.index("JS")]
    # Looks from the test range (never trained on), posed 1-3 m before a defect
    renderer = DatasetRenderer(settings=RenderSettings(
        frames_per_look=12, defect_view_fraction=1.0, distance_before_defect_m=(1.0, 3.0)))
    hits = labelled = 0
    for frame in renderer.frames(987_654):
        if not frame.boxes:
            continue
        labelled += 1
        detections = detector.detect(frame.image_bgr, 0)
        for box in frame.boxes:
            code = DETECTOR_CLASSES[box.class_index]
            same = [d.box_xyxy_px for d in detections if d.code == code]
            if same and box_iou(np.array([box.xyxy_px]), np.array(same)).max() >= 0.5:
                hits += 1
                break
    assert labelled >= 8
    assert hits >= 0.6 * labelled


@pytest.mark.slow
def test_the_tunnel_model_finds_the_held_out_seepage() -> None:
    """SP1 lies in the main gallery's first 150 m, which training never saw. (The crack CR1
    and the standing water W1 there are not asserted: the model finds hairline cracks and
    water seldom yet, see its card.)"""
    detector = load_detector("shipped:tunnel")
    assert detector.classes == DETECTOR_CLASSES
    renderer = DatasetRenderer("utility_tunnel", replace(
        default_settings("utility_tunnel"), exclude_route_m=None))
    wanted = {"SP1": "SL"}
    found = dict.fromkeys(wanted, 0)
    for feature, code in wanted.items():
        for seed, distance_m in enumerate((1.5, 2.5, 3.5, 4.5, 5.5, 6.5) * 3):
            frame = renderer.view(feature, distance_m, seed=990_000 + seed)
            labels = [b.xyxy_px for b in frame.boxes if DETECTOR_CLASSES[b.class_index] == code]
            same = [d.box_xyxy_px for d in detector.detect(frame.image_bgr, 0) if d.code == code]
            if labels and same and box_iou(np.array(labels), np.array(same)).max() >= 0.3:
                found[feature] += 1
    assert found["SP1"] >= 6, found  # a third of 18 views (it is out of view in the nearest 3)

