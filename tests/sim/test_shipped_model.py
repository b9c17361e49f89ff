"""The detector the project ships: loads by its spec, is small, says how it was made, works."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.close_up import aim_head
from perception.detectors import SHIPPED_MODELS, load_detector
from perception.detectors.letterbox import box_iou
from perception.synthetic.render import (
    DETECTOR_CLASSES,
    DatasetRenderer,
    RenderSettings,
    default_settings,
)
from sim_worlds.simulator.body import BodyState
from sim_worlds.simulator.camera import CameraHead
from sim_worlds.simulator.simulation import SimConfig, Simulation


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



@pytest.mark.slow
def test_the_look_model_is_sure_of_the_held_out_standing_water_when_looking_closer() -> None:
    """W1 (held out: a 3 x 1.2 m pool, 1 cm deep, beside the right wall from 120 m) as a look
    sees it: the crawler 2-6 m before its near edge, the head aimed 0.6 m into the pool with
    1.2 m of floor across the view. The look model is sure of the water in every view (the
    tracker confirms at 0.6); the wide tunnel model, trained on two pools, is not in any."""
    look, wide = load_detector("shipped:tunnel_look"), load_detector("shipped:tunnel")
    sim = Simulation("utility_tunnel", SimConfig(lidar=False))
    assert sim.camera is not None
    looked, seen = [], []
    for before_m in (2.0, 3.0, 4.0, 5.0, 6.0):
        sim.body.state = BodyState(120.0 - before_m, 0.0, 0.3)
        sim.body.settle()
        T_site_mount = sim.T_world_base() @ sim.T_base_camera
        aim = aim_head(T_site_mount, np.array([120.6, -1.0, 0.0]), 1.2, sim.wide_fov_rad)
        sim.set_camera_head(CameraHead(aim.pan_rad, aim.tilt_rad, aim.horizontal_fov_rad))
        image = sim.camera.render(sim.scene, T_site_mount @ sim.camera_head.T_mount_camera())
        looked.append(max((d.confidence for d in look.detect(image, 0) if d.code == "JS"),
                          default=0.0))
        seen.append(max((d.confidence for d in wide.detect(image, 0) if d.code == "JS"),
                        default=0.0))
    assert min(looked) >= 0.55 and np.mean(looked) >= 0.6, looked
    assert max(seen) < 0.5, seen
