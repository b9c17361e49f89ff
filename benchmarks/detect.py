"""``crawler bench detect``: accuracy and speed of one detector on one split of a YOLO dataset.

The detector is named by its spec string (``onnx:model.onnx``, ``ultralytics:model.pt``,
``classical``, ``python:module:Class``) and run image by image, as on the robot, on every
image of the split. Figures:

- ``map50``, ``map50_95``, ``per_class_ap50`` (code -> AP), and ``precision``, ``recall`` at
  the confidence threshold that maximises F1 (reported as ``confidence_threshold``); see
  ``perception.metrics`` for the exact definitions (COCO's);
- ``ms_per_image`` and ``images_per_s``: wall time of ``detect()`` alone (decoding the file is
  not counted), after ``warmup`` untimed calls; ``stage_ms`` splits it into preprocess, infer
  and postprocess for detectors built on ``StagedDetector``; ``cores`` is ``os.cpu_count()``.

The detector runs with a confidence threshold of 0.001 unless options say otherwise: AP needs
the low-confidence tail of the precision/recall curve (``yolo val`` does the same). An image
that cannot be decoded is skipped and counted in ``corrupt_images_skipped``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.detectors import DetectorOptions, StagedDetector, StageTimes, load_detector
from perception.detectors.base import ImageBGR
from perception.errors import DatasetError
from perception.metrics import DetectionEvaluator
from perception.yolo_dataset import LabelledImage, load_split, read_data_yaml

Progress = Callable[[str], None]
BENCH_OPTIONS = DetectorOptions(confidence_threshold=0.001)
PROGRESS_EVERY_S = 5.0


def run_detect_bench(
    spec: str,
    data_yaml: Path | str,
    split: str = "test",
    warmup: int = 3,
    options: DetectorOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``spec`` over ``split`` of the dataset; the figures as a JSON-ready dict.

    Raises DatasetError for a malformed dataset or one without a readable image, and the
    detector's own errors (DetectorSpecError, ModelLoadError) if it cannot be loaded.
    """
    report = progress or _silent
    config = read_data_yaml(Path(data_yaml))
    corrupt: list[str] = []
    images = load_split(
        config.data_yaml, split, on_corrupt_image=lambda path, why: corrupt.append(why)
    )
    report(f"{len(images)} images in {config.data_yaml} [{split}]; loading {spec}")
    detector = load_detector(spec, options or BENCH_OPTIONS)

    first = next(((item, img) for item in images if (img := _decode(item)) is not None), None)
    if first is None:
        raise DatasetError(f"{config.data_yaml}: no readable image in split '{split}'")
    for _ in range(max(warmup, 0)):
        detector.detect(first[1], stamp_ns=0)
    if isinstance(detector, StagedDetector):
        detector.times = StageTimes()

    evaluator = DetectionEvaluator()
    detect_s = 0.0
    last_report = time.monotonic()
    for index, item in enumerate(images):
        image = _decode(item)
        if image is None:
            corrupt.append(f"{item.path}: not a decodable image of {item.size_hw}")
            continue
        t0 = time.perf_counter()
        detections = detector.detect(image, stamp_ns=index)
        detect_s += time.perf_counter() - t0
        evaluator.add_detections(item.boxes_xyxy_px, item.codes, detections)
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            last_report = time.monotonic()
            report(f"{index + 1}/{len(images)} images, {1000 * detect_s / evaluator.images:.1f} ms")
    for reason in corrupt:
        report(f"skipped {reason}")

    metrics = evaluator.result()
    n = evaluator.images
    result: dict[str, Any] = {
        "detector": spec,
        "data": str(config.data_yaml),
        "split": split,
        "images": n,
        "corrupt_images_skipped": len(corrupt),
        "map50": metrics.map50,
        "map50_95": metrics.map50_95,
        "per_class_ap50": metrics.per_class_ap50,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "f1": metrics.f1,
        "confidence_threshold": metrics.confidence_threshold,
        "ground_truth_per_class": metrics.ground_truth_per_class,
        "classes_not_in_detector": sorted(set(config.names) - set(detector.classes)),
        "ms_per_image": 1000.0 * detect_s / n if n else 0.0,
        "images_per_s": n / detect_s if detect_s > 0 else 0.0,
        "cores": os.cpu_count(),
    }
    if isinstance(detector, StagedDetector) and detector.times.images:
        times = detector.times
        result["stage_ms"] = {
            "preprocess": 1000.0 * times.preprocess_s / times.images,
            "infer": 1000.0 * times.infer_s / times.images,
            "postprocess": 1000.0 * times.postprocess_s / times.images,
        }
    report(
        f"mAP50 {metrics.map50:.3f}, mAP50-95 {metrics.map50_95:.3f}, "
        f"{result['ms_per_image']:.1f} ms/image"
    )
    return result


def _decode(item: LabelledImage) -> ImageBGR | None:
    """The image as BGR uint8, or None if it does not decode to the size its header gave."""
    image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
    if image is None or tuple(image.shape[:2]) != item.size_hw:
        return None
    return np.ascontiguousarray(image, dtype=np.uint8)


def _silent(line: str) -> None:
    """No progress output."""
