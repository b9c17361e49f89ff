"""Detection metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from perception.detectors.base import Detection
from perception.metrics import (
    DetectionEvaluator,
    average_precision,
    match_detections,
)

BOXES = np.array(
    [[10, 10, 50, 40], [100, 80, 160, 200], [300, 20, 340, 300], [5, 200, 90, 230]],
    dtype=np.float64,
)


def test_perfect_detector_scores_one() -> None:
    """Every object found with its exact box and no false positive: everything is 1."""
    evaluator = DetectionEvaluator()
    codes = ["PL", "SL", "PL", "FS"]
    for _ in range(3):
        evaluator.add_image(BOXES, codes, BOXES, codes, np.array([0.9, 0.8, 0.7, 0.6]))
    result = evaluator.result()
    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(1.0)
    assert result.per_class_ap50 == {"FS": 1.0, "PL": 1.0, "SL": 1.0}
    assert result.precision == pytest.approx(1.0)
    assert result.recall == pytest.approx(1.0)
    assert result.ground_truth_per_class == {"FS": 3, "PL": 6, "SL": 3}


def test_missing_half_the_objects() -> None:
    """Half the cracks found, all correctly: recall 0.5 and AP = 51/101 (recalls 0..0.50)."""
    evaluator = DetectionEvaluator()
    codes = ["PL"] * 4
    evaluator.add_image(BOXES, codes, BOXES[:2], codes[:2], np.array([0.9, 0.8]))
    result = evaluator.result()
    assert result.recall == pytest.approx(0.5)
    assert result.precision == pytest.approx(1.0)
    assert result.map50 == pytest.approx(51 / 101)
    assert result.map50_95 == pytest.approx(51 / 101)


def test_shifted_boxes_count_at_iou_50_not_75() -> None:
    """Boxes overlapping their object by IoU 0.6 are hits up to IoU 0.60 and misses above."""
    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], dtype=np.float64)
    pred = np.array([[0, 0, 10, 6], [20, 20, 40, 32]], dtype=np.float64)  # IoU 60/100, 240/400
    evaluator = DetectionEvaluator()
    evaluator.add_image(gt, ["PL", "PL"], pred, ["PL", "PL"], np.array([0.9, 0.8]))
    result = evaluator.result()
    assert result.map50 == pytest.approx(1.0)
    assert result.map_at(0.75) == pytest.approx(0.0)
    assert result.per_class_ap["PL"] == pytest.approx((1.0, 1.0, 1.0) + (0.0,) * 7)
    assert result.map50_95 == pytest.approx(0.3)


def test_false_positives_lower_precision_and_ap() -> None:
    """TP, FP, TP, FP in confidence order over two objects, worked by hand."""
    gt = BOXES[:2]
    far = np.array([[500, 500, 520, 520], [600, 600, 640, 640]], dtype=np.float64)
    pred = np.concatenate([gt[:1], far[:1], gt[1:], far[1:]])
    evaluator = DetectionEvaluator()
    evaluator.add_image(gt, ["PL", "PL"], pred, ["PL"] * 4, np.array([0.9, 0.8, 0.7, 0.6]))
    # Precision 1, 1/2, 2/3, 1/2 at recall .5, .5, 1, 1; envelope 1 up to recall .5, then 2/3.
    result = evaluator.result()
    assert result.map50 == pytest.approx((51 + 50 * 2 / 3) / 101)
    # F1 per threshold: .9 -> 2/3, .8 -> 1/2, .7 -> 4/5, .6 -> 2/3: best at 0.7.
    assert result.confidence_threshold == pytest.approx(0.7)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(1.0)
    assert result.f1 == pytest.approx(0.8)
    at_06 = evaluator.result(confidence_threshold=0.6)
    assert at_06.precision == pytest.approx(0.5)
    assert at_06.recall == pytest.approx(1.0)
    at_095 = evaluator.result(confidence_threshold=0.95)
    assert (at_095.precision, at_095.recall) == (0.0, 0.0)


def test_wrong_class_and_duplicates_are_false_positives() -> None:
    """A box on the right place with the wrong code, or a second box on a claimed object, is FP."""
    gt = BOXES[:1]
    pred = np.concatenate([gt, gt, gt])
    tp = match_detections(gt, ["PL"], pred, ["PL", "PL", "SL"], np.array([0.5, 0.9, 0.99]))
    # The most confident PL claims the object; the other PL and the SL are false positives.
    assert tp[:, 0].tolist() == [False, True, False]


def test_classes_without_ground_truth_stay_out_of_the_means() -> None:
    """mAP averages over classes with ground truth; a class with GT but no prediction adds 0."""
    evaluator = DetectionEvaluator()
    evaluator.add_image(BOXES[:2], ["PL", "SL"], BOXES[:1], ["PL"], np.array([0.9]))
    evaluator.add_image(np.zeros((0, 4)), [], BOXES[2:3], ["SG"], np.array([0.95]))
    result = evaluator.result()
    assert result.per_class_ap50 == {"PL": 1.0, "SL": 0.0}
    assert result.map50 == pytest.approx(0.5)
    assert result.precision == pytest.approx(0.5)  # PL 1, SL 0 (no prediction)
    assert result.recall == pytest.approx(0.5)


def test_detections_are_accepted_directly() -> None:
    """``add_detections`` takes a detector's output."""
    evaluator = DetectionEvaluator()
    detections = [Detection("PL", (10.0, 10.0, 50.0, 40.0), 0.8)]
    evaluator.add_detections(BOXES[:1], ["PL"], detections)
    assert evaluator.result().map50 == pytest.approx(1.0)


def test_empty_evaluator_is_zero() -> None:
    """No images at all: zeros, not NaN (JSON-friendly)."""
    result = DetectionEvaluator().result()
    assert (result.map50, result.map50_95, result.precision, result.recall) == (0, 0, 0, 0)


def test_average_precision_of_an_empty_curve_is_zero() -> None:
    """A class with ground truth and no prediction has AP 0."""
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_mismatched_lengths_are_rejected() -> None:
    """Predictions whose arrays differ in length are a caller error."""
    with pytest.raises(ValueError, match="differ in length"):
        DetectionEvaluator().add_image(BOXES, ["PL"] * 4, BOXES, ["PL"], np.array([0.5]))
