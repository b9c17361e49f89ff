"""The detector interface: an image and its timestamp in, detections out.

Every backend (Ultralytics, ONNX Runtime, classical OpenCV, a researcher's own class) follows
the preprocess -> infer -> postprocess template of ``StagedDetector`` and times each stage.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from perception.errors import ImageError, ModelLoadError

ImageBGR = NDArray[np.uint8]  # (H, W, 3) BGR, as OpenCV and sensor_msgs/Image bgr8
Mask = NDArray[np.bool_]  # (H, W) True on the defect


@dataclass(frozen=True)
class Detection:
    """One defect seen in one image.

    ``box_xyxy_px`` is (x_min, y_min, x_max, y_max) in pixels of the input image;
    ``mask``, when the backend segments, has the image's height and width.
    """

    code: str  # CJJ 181 class code, e.g. "PL"
    box_xyxy_px: tuple[float, float, float, float]
    confidence: float
    mask: Mask | None = None

    @property
    def area_px(self) -> float:
        """Area of the box in square pixels."""
        x0, y0, x1, y1 = self.box_xyxy_px
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


@dataclass
class StageTimes:
    """Cumulative wall time per stage, in seconds, and the number of images."""

    preprocess_s: float = 0.0
    infer_s: float = 0.0
    postprocess_s: float = 0.0
    images: int = 0

    @property
    def ms_per_image(self) -> float:
        """Mean end-to-end milliseconds per image (0 before the first image)."""
        total = self.preprocess_s + self.infer_s + self.postprocess_s
        return 1000.0 * total / self.images if self.images else 0.0


@runtime_checkable
class Detector(Protocol):
    """What the rest of the stack needs from a detector."""

    @property
    def classes(self) -> tuple[str, ...]:
        """CJJ 181 codes this detector can report."""
        ...

    def detect(self, image_bgr: ImageBGR, stamp_ns: int) -> list[Detection]:
        """Detections in one BGR image taken at ``stamp_ns`` (ns since the epoch)."""
        ...


Prepared = TypeVar("Prepared")
Raw = TypeVar("Raw")


@dataclass
class _Context:
    """Per-image values the postprocess step needs (original size, letterbox)."""

    shape_hw: tuple[int, int]
    extras: dict[str, Any] = field(default_factory=dict)


class StagedDetector(ABC, Generic[Prepared, Raw]):
    """Template: ``detect`` = check -> preprocess -> infer -> postprocess, each timed."""

    def __init__(self, classes: tuple[str, ...], confidence_threshold: float) -> None:
        self._classes = classes
        self.confidence_threshold = confidence_threshold
        self.times = StageTimes()

    @property
    def classes(self) -> tuple[str, ...]:
        """CJJ 181 codes this detector can report."""
        return self._classes

    def detect(self, image_bgr: ImageBGR, stamp_ns: int) -> list[Detection]:
        """Detections in one BGR image; raises ImageError for an image of the wrong form."""
        check_image(image_bgr)
        context = _Context(shape_hw=(int(image_bgr.shape[0]), int(image_bgr.shape[1])))
        t0 = time.perf_counter()
        prepared = self._preprocess(image_bgr, context)
        t1 = time.perf_counter()
        raw = self._infer(prepared)
        t2 = time.perf_counter()
        detections = self._postprocess(raw, context)
        t3 = time.perf_counter()
        self.times.preprocess_s += t1 - t0
        self.times.infer_s += t2 - t1
        self.times.postprocess_s += t3 - t2
        self.times.images += 1
        return [d for d in detections if d.confidence >= self.confidence_threshold]

    @abstractmethod
    def _preprocess(self, image_bgr: ImageBGR, context: _Context) -> Prepared:
        """Image -> the backend's input (resize, letterbox, normalise)."""

    @abstractmethod
    def _infer(self, prepared: Prepared) -> Raw:
        """Run the model."""

    @abstractmethod
    def _postprocess(self, raw: Raw, context: _Context) -> list[Detection]:
        """Backend output -> detections in the original image's pixels."""


def require_model_file(path: Path, kind: str) -> Path:
    """``path`` if it is a non-empty file; otherwise ModelLoadError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: empty file, not {kind}")
    return path


def check_image(image_bgr: object) -> None:
    """Raise ImageError unless ``image_bgr`` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image_bgr, np.ndarray):
        raise ImageError(f"image is a {type(image_bgr).__name__}, not a numpy array")
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ImageError(
            f"image must be (H, W, 3) uint8 BGR, got {image_bgr.shape} {image_bgr.dtype}"
        )
    if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
        raise ImageError(f"image is empty: {image_bgr.shape}")
