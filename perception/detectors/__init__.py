"""Defect detectors behind one interface, chosen by a spec string.

Specs: ``ultralytics:PATH.pt``, ``onnx:PATH.onnx``, ``classical[:PRESET]`` (``default``, or
``close_up`` for zoomed frames), ``python:module:Class``, and
``shipped[:SITE]``: an ONNX model trained by the project, one per kind of site:
``shipped`` / ``shipped:pipe`` (``perception/models/crawler_defects.onnx``, sewer and drainage
pipes), ``shipped:tunnel`` (``crawler_tunnel.onnx``, utility-tunnel walls, ceiling and floor) and
``shipped:tunnel_look`` (``crawler_tunnel_look.onnx``, the tunnel model fine-tuned on more
standing water and on close-ups, for a look's zoomed frames).
Backends import lazily (Ultralytics pulls in torch), so naming one never loads the others.
Specs joined by ``+`` run together on each image, their detections pooled
(``union.UnionDetector``): ``shipped:tunnel+classical:close_up``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perception.detectors.base import Detection, Detector, ImageBGR, StagedDetector, StageTimes
from perception.errors import DetectorSpecError, ModelLoadError

__all__ = [
    "DETECTOR_PLUGINS",
    "SHIPPED_MODEL",
    "SHIPPED_MODELS",
    "UNION_SEPARATOR",
    "Detection",
    "Detector",
    "DetectorOptions",
    "ImageBGR",
    "StageTimes",
    "StagedDetector",
    "load_detector",
    "parse_spec",
    "spec_parts",
]

UNION_SEPARATOR = "+"
"""Joins the specs of detectors that run together (a path holding it cannot be named)."""


@dataclass(frozen=True)
class DetectorOptions:
    """Settings every backend understands."""

    confidence_threshold: float = 0.25
    iou_threshold: float = 0.5  # non-maximum suppression
    image_size_px: int = 640  # network input side (letterboxed square)


@dataclass(frozen=True)
class DetectorSpec:
    """A parsed spec string: plugin name and its argument (a path or module:Class)."""

    kind: str
    argument: str


Factory = Callable[[str, DetectorOptions], Detector]

_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
SHIPPED_MODEL = _MODELS_DIR / "crawler_defects.onnx"
SHIPPED_MODELS: dict[str, Path] = {"pipe": SHIPPED_MODEL,
                                   "tunnel": _MODELS_DIR / "crawler_tunnel.onnx",
                                   "tunnel_look": _MODELS_DIR / "crawler_tunnel_look.onnx"}
"""The shipped model of each kind of site (``shipped:KIND``)."""


def _ultralytics(argument: str, options: DetectorOptions) -> Detector:
    from perception.detectors.ultralytics_detector import UltralyticsDetector

    return UltralyticsDetector.from_file(_model_file(argument, ".pt"), options)


def _onnx(argument: str, options: DetectorOptions) -> Detector:
    from perception.detectors.onnx_detector import OnnxDetector

    return OnnxDetector.from_file(_model_file(argument, ".onnx"), options)


def _shipped(argument: str, options: DetectorOptions) -> Detector:
    return _onnx(str(SHIPPED_MODELS[argument or "pipe"]), options)  # parse_spec checked it


def _classical(argument: str, options: DetectorOptions) -> Detector:
    from perception.detectors.classical import ClassicalDetector

    return ClassicalDetector.from_options(options, argument or "default")


def _python(argument: str, options: DetectorOptions) -> Detector:
    module_name, _, class_name = argument.rpartition(":")
    if not module_name or not class_name:
        raise DetectorSpecError(f"'python:{argument}' must be python:module.path:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise DetectorSpecError(f"python:{argument}: cannot import '{module_name}': {err}") from err
    cls = getattr(module, class_name, None)
    if cls is None:
        raise DetectorSpecError(f"python:{argument}: '{module_name}' has no '{class_name}'")
    detector = cls(options) if _takes_options(cls) else cls()
    if not isinstance(detector, Detector):
        raise DetectorSpecError(
            f"python:{argument}: {class_name} lacks 'classes' and 'detect(image_bgr, stamp_ns)'"
        )
    return detector


def _takes_options(cls: type) -> bool:
    from inspect import signature

    try:
        return len(signature(cls).parameters) >= 1
    except (TypeError, ValueError):
        return False


DETECTOR_PLUGINS: dict[str, Factory] = {
    "ultralytics": _ultralytics,
    "onnx": _onnx,
    "classical": _classical,
    "python": _python,
    "shipped": _shipped,
}


def parse_spec(spec: str) -> DetectorSpec:
    """Split ``kind:argument``; raises DetectorSpecError for an unknown kind."""
    kind, _, argument = spec.strip().partition(":")
    if kind not in DETECTOR_PLUGINS:
        known = ", ".join(f"'{name}'" for name in DETECTOR_PLUGINS)
        raise DetectorSpecError(f"unknown detector '{spec}': use one of {known}")
    if kind in ("ultralytics", "onnx", "python") and not argument:
        raise DetectorSpecError(f"detector '{spec}' needs an argument: {kind}:...")
    if kind == "shipped" and argument and argument not in SHIPPED_MODELS:
        kinds = ", ".join(f"'shipped:{name}'" for name in SHIPPED_MODELS)
        raise DetectorSpecError(f"no shipped model '{spec}': use 'shipped' or {kinds}")
    if kind == "classical" and argument:
        from perception.detectors.classical import preset_params

        preset_params(argument)
    return DetectorSpec(kind, argument)


def spec_parts(spec: str) -> tuple[DetectorSpec, ...]:
    """Each detector of a spec (several when joined by ``+``), every one checked."""
    parts = spec.split(UNION_SEPARATOR)
    if any(not part.strip() for part in parts):
        raise DetectorSpecError(f"detector '{spec}' has an empty part: join specs as A+B")
    return tuple(parse_spec(part) for part in parts)


def load_detector(spec: str, options: DetectorOptions | None = None) -> Detector:
    """The detector a spec string names, loaded and ready (several pooled for ``A+B``)."""
    options = options or DetectorOptions()
    detectors = [DETECTOR_PLUGINS[p.kind](p.argument, options) for p in spec_parts(spec)]
    if len(detectors) == 1:
        return detectors[0]
    from perception.detectors.union import UnionDetector

    return UnionDetector(detectors, options.iou_threshold)


def _model_file(argument: str, suffix: str) -> Path:
    path = Path(argument).expanduser()
    if not path.is_file():  # the backends check content; the spec its kind
        raise ModelLoadError(f"model file not found: {path}")
    if path.suffix.lower() != suffix:
        raise ModelLoadError(f"{path}: expected a {suffix} file")
    return path
