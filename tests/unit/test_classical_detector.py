"""The classical detector on synthetic sewer walls lit by one lamp.

Each image is concrete-like texture (aggregate blotches, pores, grain) times a lamp pattern
(bright centre, strong fall-off and vignetting towards the corners), with a warm tint and
sensor noise; defects are drawn into the wall before the light is applied, as in reality.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from perception.detectors import DetectorOptions, load_detector
from perception.detectors.base import Detection, ImageBGR
from perception.detectors.classical import CLASSICAL_PRESETS, ClassicalDetector, ClassicalParams
from perception.detectors.letterbox import box_iou
from perception.errors import DetectorSpecError

H, W = 480, 640
Reflectance = NDArray[np.float32]  # (H, W, 3) BGR albedo in 0..1


def concrete(seed: int, shape: tuple[int, int] = (H, W)) -> Reflectance:
    """Grey concrete: blotchy aggregate, grain and dark pores."""
    rng = np.random.default_rng(seed)
    h, w = shape
    blotches = np.asarray(
        cv2.GaussianBlur(rng.normal(0.0, 1.0, (h, w)).astype(np.float32), (0, 0), 6.0), np.float32
    )
    blotches = blotches / blotches.std()
    grain = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    albedo = 0.55 + 0.05 * blotches + 0.04 * grain
    for _ in range(h * w // 400):  # pores: small dark pits
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        cv2.circle(albedo, (x, y), int(rng.integers(1, 3)), float(rng.uniform(0.3, 0.45)), -1)
    return np.repeat(np.clip(albedo, 0.02, 1.0)[:, :, None], 3, axis=2)


def lit(albedo: Reflectance, seed: int = 0) -> ImageBGR:
    """The wall as the camera sees it: one lamp at the centre, vignetting, warm tint, noise."""
    h, w = albedo.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    lamp = np.exp(-r2 / 0.9) * (1.0 / (1.0 + 0.3 * r2)) ** 2  # centre 1, corners ~0.08
    tint = np.array([0.85, 1.0, 1.1], dtype=np.float32)  # halogen: warm
    signal = 255.0 * albedo * lamp[:, :, None] * tint[None, None, :]
    noise = np.random.default_rng(seed + 1000).normal(0.0, 2.5, signal.shape)
    image: ImageBGR = np.clip(signal + noise, 0, 255).astype(np.uint8)
    return image


def draw_crack(albedo: Reflectance, seed: int) -> tuple[float, float, float, float]:
    """A jagged dark crack, 2 px wide, across the lit middle; returns its bounding box."""
    rng = np.random.default_rng(seed)
    h, w = albedo.shape[:2]
    start, end = np.array([0.25 * w, 0.35 * h]), np.array([0.72 * w, 0.62 * h])
    t = np.linspace(0.0, 1.0, 40)[:, None]
    points = start + t * (end - start)
    points += np.cumsum(rng.normal(0.0, 1.6, points.shape), axis=0)
    polyline = points.astype(np.int32).reshape(-1, 1, 2)
    layer = np.ones(albedo.shape[:2], dtype=np.float32)
    cv2.polylines(layer, [polyline], isClosed=False, color=0.35, thickness=2)
    albedo *= layer[:, :, None]
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def draw_wet_patch(albedo: Reflectance, centre: tuple[int, int], axes: tuple[int, int]) -> None:
    """A seepage stain: darker and smoother (the film fills the pores)."""
    mask = np.zeros(albedo.shape[:2], dtype=np.float32)
    cv2.ellipse(mask, centre, axes, 20.0, 0.0, 360.0, 1.0, -1)
    soft = np.asarray(cv2.GaussianBlur(mask, (0, 0), 3.0), np.float32)[:, :, None]
    smooth = cv2.GaussianBlur(albedo, (0, 0), 2.5)
    albedo[:] = (1.0 - soft) * albedo + soft * 0.55 * smooth


def draw_rust(albedo: Reflectance, box: tuple[int, int, int, int], seed: int) -> None:
    """Corroded concrete: rough, orange-brown."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = box
    patch = albedo[y0:y1, x0:x1]
    roughness = 1.0 + 0.25 * rng.normal(0.0, 1.0, patch.shape[:2]).astype(np.float32)
    brown = np.array([0.18, 0.33, 0.6], dtype=np.float32)  # BGR
    patch[:] = np.clip(brown[None, None, :] * roughness[:, :, None], 0.0, 1.0)


def detect(image: ImageBGR) -> list[Detection]:
    """Run the default classical detector through its spec."""
    return load_detector("classical").detect(image, stamp_ns=0)


def overlap(detection: Detection, box: tuple[float, float, float, float]) -> float:
    """IoU of a detection with a box."""
    return float(box_iou(np.array([detection.box_xyxy_px]), np.array([box]))[0, 0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_plain_wall_gives_no_detection(seed: int) -> None:
    """Texture, pores, lamp fall-off and noise alone fire nothing."""
    assert detect(lit(concrete(seed), seed)) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crack_is_found_where_it_was_drawn(seed: int) -> None:
    """A dark crack on textured concrete under the lamp is one PL box over it."""
    albedo = concrete(seed)
    crack_box = draw_crack(albedo, seed)
    detections = detect(lit(albedo, seed))
    assert [d.code for d in detections] == ["PL"]
    assert overlap(detections[0], crack_box) > 0.6
    assert 0.0 <= detections[0].confidence <= 1.0
    mask = detections[0].mask
    assert mask is not None and mask.shape == (H, W) and mask.sum() > 100


def test_faint_crack_in_the_dim_corner_is_still_found() -> None:
    """Local normalisation: the crack is found where the lamp gives a third of its light."""
    albedo = concrete(5)
    layer = np.ones((H, W), dtype=np.float32)
    cv2.line(layer, (40, 330), (200, 440), 0.3, 2)
    albedo *= layer[:, :, None]
    detections = detect(lit(albedo, 5))
    assert [d.code for d in detections] == ["PL"]
    assert overlap(detections[0], (40, 330, 200, 440)) > 0.5


def test_wet_patch_is_seepage() -> None:
    """A darker, smoother stain is SL."""
    albedo = concrete(7)
    draw_wet_patch(albedo, (400, 250), (60, 40))
    detections = detect(lit(albedo, 7))
    assert [d.code for d in detections] == ["SL"]
    assert overlap(detections[0], (340, 210, 460, 290)) > 0.4


def test_brown_rough_patch_is_corrosion() -> None:
    """An orange-brown rough patch is FS, though the lamp itself is warm."""
    albedo = concrete(11)
    draw_rust(albedo, (230, 180, 330, 280), seed=11)
    detections = detect(lit(albedo, 11))
    assert [d.code for d in detections] == ["FS"]
    assert overlap(detections[0], (230, 180, 330, 280)) > 0.6


def test_large_image_is_processed_at_working_size() -> None:
    """A 1920x1080 frame gives boxes and masks in its own pixels."""
    albedo = concrete(3, (1080, 1920))
    layer = np.ones((1080, 1920), dtype=np.float32)
    cv2.line(layer, (600, 400), (1300, 700), 0.3, 5)
    albedo *= layer[:, :, None]
    detections = detect(lit(albedo, 3))
    assert [d.code for d in detections] == ["PL"]
    assert overlap(detections[0], (600, 400, 1300, 700)) > 0.6
    assert detections[0].mask is not None and detections[0].mask.shape == (1080, 1920)


def test_dark_void_is_not_seepage() -> None:
    """A black opening (a lateral, the pipe's far end) is not a wet patch."""
    albedo = concrete(4)
    cv2.circle(albedo, (400, 220), 50, (0.03, 0.03, 0.03), -1)
    assert detect(lit(albedo, 4)) == []


def test_black_frame_gives_nothing() -> None:
    """Lamp off: nothing is lit enough to judge."""
    assert detect(np.full((H, W, 3), 3, dtype=np.uint8)) == []


def test_options_reach_the_detector() -> None:
    """``from_options`` takes the image size and confidence threshold."""
    detector = ClassicalDetector.from_options(
        DetectorOptions(confidence_threshold=0.9, image_size_px=320)
    )
    assert detector.params == ClassicalParams(work_size_px=320)
    assert detector.confidence_threshold == 0.9
    close_up = ClassicalDetector.from_options(DetectorOptions(image_size_px=320), "close_up")
    assert close_up.params == replace(CLASSICAL_PRESETS["close_up"], work_size_px=320)
    with pytest.raises(DetectorSpecError, match="'classical:close_up'"):
        ClassicalDetector.from_options(DetectorOptions(), "closeup")
