"""Object-detection metrics as COCO defines them: AP per class at IoU 0.50 and 0.50:0.95.

Definitions (those of ``pycocotools``, which Ultralytics' ``ap_per_class`` approximates):

- **Matching**, per image and IoU threshold ``t``: predictions are taken best confidence
  first; each one claims the still-unclaimed ground-truth box *of its class* that it overlaps
  most, if that overlap is at least ``t``. A claimed prediction is a true positive, any other
  prediction a false positive; each ground-truth box is claimed at most once.
- **AP** of a class at ``t``: all its predictions over the dataset, sorted by confidence,
  give a precision/recall curve; its envelope (precision made non-increasing in recall) is
  sampled at the 101 recalls 0, 0.01, ..., 1 and averaged. A perfect detector scores 1.0.
  (Ultralytics integrates the same envelope with the trapezoid rule and ends it at precision 0
  at recall 1, so it reports 0.995 for a perfect detector; otherwise the two agree closely.)
- **map50** is the mean AP at IoU 0.50 and **map50_95** the mean of AP averaged over IoU
  0.50, 0.55, ..., 0.95, both over the classes that have ground truth. Predictions of a class
  absent from the ground truth do not enter the means. With no ground truth at all both are 0.
- **precision / recall**: at IoU 0.50 and one confidence threshold, each class's precision
  (TP / predictions) and recall (TP / ground truth), averaged over the classes with ground
  truth (as Ultralytics reports them). The threshold is the one that maximises the mean F1
  over those classes unless one is given; a class with no prediction above it counts
  precision 0.

COCO's area ranges, crowd boxes and 100-detections-per-image cap are not applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from perception.detectors.base import Detection
from perception.detectors.letterbox import box_iou

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""0.50, 0.55, ..., 0.95 as in COCO."""
RECALL_POINTS: FloatArray = np.linspace(0.0, 1.0, 101)


def match_detections(
    gt_boxes_xyxy: NDArray[np.floating],
    gt_codes: Sequence[str],
    pred_boxes_xyxy: NDArray[np.floating],
    pred_codes: Sequence[str],
    pred_confidences: NDArray[np.floating],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> BoolArray:
    """(n_pred, n_thresholds) True where a prediction of one image is a true positive.

    Greedy matching in confidence order, one ground-truth box per prediction, same class only.
    """
    n_pred, n_thr = len(pred_codes), len(iou_thresholds)
    tp = np.zeros((n_pred, n_thr), dtype=bool)
    if n_pred == 0 or len(gt_codes) == 0:
        return tp
    iou = box_iou(pred_boxes_xyxy, gt_boxes_xyxy)
    same_class = (
        np.asarray(pred_codes, dtype=object)[:, None] == np.asarray(gt_codes, dtype=object)[None, :]
    )
    iou = np.where(same_class, iou, -1.0)
    order = np.argsort(-np.asarray(pred_confidences, dtype=np.float64), kind="stable")
    for j, threshold in enumerate(iou_thresholds):
        claimed = np.zeros(len(gt_codes), dtype=bool)
        for p in order:
            candidates = np.where(claimed, -1.0, iou[p])
            best = int(np.argmax(candidates))
            if candidates[best] >= threshold:
                claimed[best] = True
                tp[p, j] = True
    return tp


def average_precision(recall: NDArray[np.floating], precision: NDArray[np.floating]) -> float:
    """COCO's 101-point AP of one precision/recall curve (points in confidence order)."""
    recall = np.asarray(recall, dtype=np.float64)
    if recall.size == 0:
        return 0.0
    # Envelope: the best precision reachable at this recall or any higher one.
    envelope = np.maximum.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < recall.size, envelope[np.minimum(index, recall.size - 1)], 0.0)
    return float(sampled.mean())


@dataclass(frozen=True)
class DetectionMetrics:
    """Dataset-level detection figures; see the module docstring for the definitions."""

    map50: float
    map50_95: float
    per_class_ap50: dict[str, float]
    per_class_ap50_95: dict[str, float]
    precision: float
    recall: float
    f1: float
    confidence_threshold: float  # where precision and recall were read
    ground_truth_per_class: dict[str, int]
    iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS
    per_class_ap: dict[str, tuple[float, ...]] = field(default_factory=dict)
    """AP of each class at each of ``iou_thresholds``."""

    def map_at(self, iou_threshold: float) -> float:
        """Mean AP over the classes with ground truth at one of ``iou_thresholds``."""
        j = int(np.argmin(np.abs(np.asarray(self.iou_thresholds) - iou_threshold)))
        if abs(self.iou_thresholds[j] - iou_threshold) > 1e-9:
            msg = f"IoU {iou_threshold} is not one of {self.iou_thresholds}"
            raise ValueError(msg)
        values = [ap[j] for ap in self.per_class_ap.values()]
        return float(np.mean(values)) if values else 0.0


class DetectionEvaluator:
    """Accumulates matched predictions image by image; ``result()`` gives the metrics."""

    def __init__(self, iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> None:
        if not iou_thresholds or abs(iou_thresholds[0] - 0.5) > 1e-9:
            msg = f"IoU thresholds must start at 0.5 (map50 reads the first): {iou_thresholds}"
            raise ValueError(msg)
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self._tp: list[BoolArray] = []
        self._conf: list[FloatArray] = []
        self._codes: list[str] = []
        self._gt_count: dict[str, int] = {}
        self.images = 0

    def add_image(
        self,
        gt_boxes_xyxy: NDArray[np.floating],
        gt_codes: Sequence[str],
        pred_boxes_xyxy: NDArray[np.floating],
        pred_codes: Sequence[str],
        pred_confidences: NDArray[np.floating],
    ) -> None:
        """One image's ground truth and predictions (boxes in the same pixel frame)."""
        conf = np.asarray(pred_confidences, dtype=np.float64).reshape(-1)
        if not len(pred_codes) == len(conf) == len(np.asarray(pred_boxes_xyxy).reshape(-1, 4)):
            msg = "pred_boxes_xyxy, pred_codes and pred_confidences differ in length"
            raise ValueError(msg)
        self._tp.append(
            match_detections(
                gt_boxes_xyxy, gt_codes, pred_boxes_xyxy, pred_codes, conf, self.iou_thresholds
            )
        )
        self._conf.append(conf)
        self._codes.extend(pred_codes)
        for code in gt_codes:
            self._gt_count[code] = self._gt_count.get(code, 0) + 1
        self.images += 1

    def add_detections(
        self,
        gt_boxes_xyxy: NDArray[np.floating],
        gt_codes: Sequence[str],
        detections: Sequence[Detection],
    ) -> None:
        """``add_image`` with the predictions as a detector's ``Detection`` list."""
        boxes = np.array([d.box_xyxy_px for d in detections], dtype=np.float64).reshape(-1, 4)
        self.add_image(
            gt_boxes_xyxy,
            gt_codes,
            boxes,
            [d.code for d in detections],
            np.array([d.confidence for d in detections], dtype=np.float64),
        )

    def result(self, confidence_threshold: float | None = None) -> DetectionMetrics:
        """The metrics so far; precision/recall at ``confidence_threshold`` or at best F1."""
        n_thr = len(self.iou_thresholds)
        tp = np.concatenate(self._tp) if self._tp else np.zeros((0, n_thr), dtype=bool)
        conf = np.concatenate(self._conf) if self._conf else np.zeros(0)
        codes = np.asarray(self._codes, dtype=object)
        classes = sorted(self._gt_count)

        per_class_ap: dict[str, tuple[float, ...]] = {}
        curves: list[tuple[FloatArray, FloatArray, int]] = []  # (conf desc, cum TP@0.5, n_gt)
        for code in classes:
            n_gt = self._gt_count[code]
            mine = np.flatnonzero(codes == code)
            order = mine[np.argsort(-conf[mine], kind="stable")]
            tp_cum = np.cumsum(tp[order], axis=0, dtype=np.float64)
            n_pred = np.arange(1, len(order) + 1, dtype=np.float64)[:, None]
            recall = tp_cum / n_gt
            precision = tp_cum / n_pred
            per_class_ap[code] = tuple(
                average_precision(recall[:, j], precision[:, j]) for j in range(n_thr)
            )
            curves.append((conf[order], tp_cum[:, 0], n_gt))

        ap = np.array([per_class_ap[c] for c in classes], dtype=np.float64).reshape(-1, n_thr)
        threshold, precision_mean, recall_mean, f1_mean = _operating_point(
            curves, conf, confidence_threshold
        )
        return DetectionMetrics(
            map50=float(ap[:, 0].mean()) if len(classes) else 0.0,
            map50_95=float(ap.mean()) if len(classes) else 0.0,
            per_class_ap50={c: float(ap[i, 0]) for i, c in enumerate(classes)},
            per_class_ap50_95={c: float(ap[i].mean()) for i, c in enumerate(classes)},
            precision=precision_mean,
            recall=recall_mean,
            f1=f1_mean,
            confidence_threshold=threshold,
            ground_truth_per_class=dict(sorted(self._gt_count.items())),
            iou_thresholds=self.iou_thresholds,
            per_class_ap=per_class_ap,
        )


def _operating_point(
    curves: list[tuple[FloatArray, FloatArray, int]],
    all_confidences: FloatArray,
    confidence_threshold: float | None,
) -> tuple[float, float, float, float]:
    """(threshold, mean precision, mean recall, mean F1) over classes, at IoU 0.50."""
    if not curves:
        return (confidence_threshold or 0.0), 0.0, 0.0, 0.0
    if confidence_threshold is None:
        candidates = np.unique(all_confidences)[::-1]  # best first: ties go to the higher one
        if candidates.size == 0:
            return 0.0, 0.0, 0.0, 0.0
    else:
        candidates = np.array([confidence_threshold], dtype=np.float64)
    precision = np.zeros((len(curves), candidates.size))
    recall = np.zeros_like(precision)
    for i, (conf_desc, tp_cum, n_gt) in enumerate(curves):
        # Number of this class's predictions at or above each candidate threshold.
        kept = np.searchsorted(-conf_desc, -candidates, side="right")
        tp_at = np.where(kept > 0, tp_cum[np.maximum(kept - 1, 0)] if len(tp_cum) else 0.0, 0.0)
        precision[i] = np.divide(tp_at, kept, out=np.zeros(candidates.size), where=kept > 0)
        recall[i] = tp_at / n_gt
    denominator = precision + recall
    f1 = np.divide(
        2.0 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    best = int(np.argmax(f1.mean(axis=0)))
    return (
        float(candidates[best]),
        float(precision[:, best].mean()),
        float(recall[:, best].mean()),
        float(f1[:, best].mean()),
    )
