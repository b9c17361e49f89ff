"""Ultralytics YOLO ``.pt`` models (detect or segment) through the ``ultralytics`` package.

This backend runs what training produced, unchanged, so it is the reference the ONNX export
is checked against; it needs torch and is slower on the robot's CPU than ``onnx:``.

Ultralytics does its own letterbox and NMS inside ``predict``, so here ``preprocess`` is the
identity, ``infer`` is the whole ``predict`` call and ``postprocess`` only converts its
``Results`` into ``Detection`` values (with masks at image resolution for a segment model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.detectors.base import (
    Detection,
    ImageBGR,
    StagedDetector,
    _Context,
    require_model_file,
)
from perception.errors import ModelLoadError

if TYPE_CHECKING:
    from perception.detectors import DetectorOptions

SUPPORTED_TASKS = ("detect", "segment")
MAX_DETECTIONS = 300  # per image


class UltralyticsDetector(StagedDetector[ImageBGR, list[Any]]):
    """A YOLO detect or segment model run with ``YOLO.predict`` on the CPU."""

    def __init__(self, model: Any, classes: tuple[str, ...], options: DetectorOptions) -> None:
        super().__init__(classes, options.confidence_threshold)
        self._model = model
        self.task: str = str(model.task)
        self.iou_threshold = options.iou_threshold
        self.image_size_px = options.image_size_px

    @classmethod
    def from_file(cls, path: Path, options: DetectorOptions) -> UltralyticsDetector:
        """Load ``path``; raises ModelLoadError naming it if it is not a YOLO checkpoint."""
        # Checked here, before Ultralytics sees the name: it would try to download a missing
        # file whose name matches one of its released weights (yolo11n.pt).
        path = require_model_file(path, "a PyTorch checkpoint")
        from ultralytics.models import YOLO

        try:
            model = YOLO(str(path))
        except Exception as err:  # torch.load and Ultralytics raise many types
            reason = " ".join(str(err).split()) or type(err).__name__
            raise ModelLoadError(f"{path}: not a loadable Ultralytics model: {reason}") from err
        if model.task not in SUPPORTED_TASKS:
            supported = " and ".join(SUPPORTED_TASKS)
            raise ModelLoadError(f"{path}: a '{model.task}' model; only {supported} are supported")
        names: dict[int, str] = dict(model.names)
        classes = tuple(str(names[i]) for i in sorted(names))
        return cls(model, classes, options)

    def _preprocess(self, image_bgr: ImageBGR, context: _Context) -> ImageBGR:
        """Nothing: Ultralytics letterboxes inside ``predict``."""
        return image_bgr

    def _infer(self, prepared: ImageBGR) -> list[Any]:
        """``YOLO.predict`` on the CPU, with its own NMS."""
        results: list[Any] = self._model.predict(
            prepared,
            device="cpu",
            verbose=False,
            imgsz=self.image_size_px,
            conf=self.confidence_threshold,
            iou=self.iou_threshold,
            max_det=MAX_DETECTIONS,
            retina_masks=True,  # masks at the image's resolution
            save=False,
        )
        return results

    def _postprocess(self, raw: list[Any], context: _Context) -> list[Detection]:
        """``Results`` -> detections (and masks, for a segment model)."""
        result = raw[0]
        if result.boxes is None or len(result.boxes) == 0:
            return []
        boxes = result.boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = result.boxes.conf.cpu().numpy().astype(np.float64)
        class_ids = result.boxes.cls.cpu().numpy().astype(np.intp)
        masks: list[np.ndarray[Any, np.dtype[np.bool_]] | None] = [None] * len(boxes)
        if result.masks is not None:
            data = result.masks.data.cpu().numpy()
            if data.shape[1:] == context.shape_hw:
                masks = [m > 0.5 for m in data]
        return [
            Detection(
                code=self.classes[int(c)],
                box_xyxy_px=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                confidence=float(s),
                mask=m,
            )
            for b, s, c, m in zip(boxes, scores, class_ids, masks, strict=True)
        ]
