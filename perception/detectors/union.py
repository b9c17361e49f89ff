"""Several detectors on one image, their detections pooled: the spec ``A+B``.

Each backend sees what it is good at: a trained model the classes it learned, a model-free cue
a defect whose look it does not depend on (``shipped:tunnel_look+classical:close_up`` reads a
zoomed frame with the tunnel look model and with the classical crack cue for close-ups). Boxes of
one class that overlap by more than ``iou_threshold`` are one defect: the most confident is
kept (class-aware non-maximum suppression, as within one backend).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception.detectors.base import Detection, Detector, ImageBGR
from perception.detectors.letterbox import nms
from perception.errors import DetectorSpecError


class UnionDetector:
    """The pooled detections of ``detectors`` (at least two), duplicates merged."""

    def __init__(self, detectors: Sequence[Detector], iou_threshold: float = 0.5) -> None:
        if len(detectors) < 2:
            raise DetectorSpecError(f"a union needs two detectors or more, got {len(detectors)}")
        self.detectors = tuple(detectors)
        self.iou_threshold = iou_threshold
        self._classes = tuple(dict.fromkeys(c for d in self.detectors for c in d.classes))

    @property
    def classes(self) -> tuple[str, ...]:
        """Every member's classes, in the order they first appear."""
        return self._classes

    def detect(self, image_bgr: ImageBGR, stamp_ns: int) -> list[Detection]:
        """Every member's detections, best first; same-class overlaps merged."""
        pooled = [d for detector in self.detectors for d in detector.detect(image_bgr, stamp_ns)]
        if not pooled:
            return []
        class_ids = {code: i for i, code in enumerate(dict.fromkeys(d.code for d in pooled))}
        kept = nms(np.array([d.box_xyxy_px for d in pooled]),
                   np.array([d.confidence for d in pooled]),
                   np.array([class_ids[d.code] for d in pooled]),
                   self.iou_threshold, max_detections=len(pooled))
        return [pooled[i] for i in kept]
