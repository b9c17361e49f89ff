"""Ultralytics YOLO models exported to ONNX, run on the CPU with ONNX Runtime.

This is the fast path on the robot: no torch, one ``InferenceSession`` using every core.
Models come from ``yolo export format=onnx`` (``YOLO(...).export(format="onnx")``), which
writes the class names, task and input size into the model's metadata. Supported heads:

- ``detect``: one output (1, 4 + nc, N): box centre, size (input pixels) and nc class scores;
- ``segment``: the same with 32 mask coefficients after the scores, and a second output
  (1, 32, H/4, W/4) of mask prototypes; detections then carry masks;
- end-to-end exports (``end2end`` in the metadata, or exported with ``nms=True``): one output
  (1, K, 6 [+ 32]) of x_min, y_min, x_max, y_max, score, class index, already suppressed.

Class names are reported as the model names them. Our models are trained with CJJ 181 codes
as names, but a researcher's model may use its own (``crack``, ``0``); such names pass
through unchanged, and grading, which needs CJJ codes, will refuse them later.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from perception.detectors.base import (
    Detection,
    ImageBGR,
    StagedDetector,
    _Context,
    require_model_file,
)
from perception.detectors.letterbox import (
    Letterbox,
    cxcywh_to_xyxy,
    letterbox,
    nms,
    to_blob,
    unletterbox_boxes,
)
from perception.errors import ModelLoadError

if TYPE_CHECKING:
    from perception.detectors import DetectorOptions

FloatArray = NDArray[np.float32]
MAX_CANDIDATES = 30000  # boxes entering NMS at most, best first (as Ultralytics)
MAX_DETECTIONS = 300  # per image, after NMS
MASK_COEFFICIENTS = 32  # Ultralytics' segment head


@dataclass(frozen=True)
class OnnxModelInfo:
    """What the exported model's metadata and signature say about it."""

    names: tuple[str, ...]
    task: str  # "detect" or "segment"
    input_name: str
    input_hw: tuple[int, int]
    input_dtype: type[np.floating[Any]]
    end_to_end: bool  # the model runs NMS itself


class OnnxDetector(StagedDetector[FloatArray, list[NDArray[np.float32]]]):
    """A YOLO detect or segment model in ONNX form, on ONNX Runtime's CPU provider."""

    def __init__(self, session: Any, info: OnnxModelInfo, options: DetectorOptions) -> None:
        super().__init__(info.names, options.confidence_threshold)
        self._session = session
        self.info = info
        self.iou_threshold = options.iou_threshold

    @classmethod
    def from_file(cls, path: Path, options: DetectorOptions) -> OnnxDetector:
        """Open ``path``; raises ModelLoadError naming it if it is not a usable YOLO export."""
        import onnxruntime as ort

        path = require_model_file(path, "an ONNX model")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = os.cpu_count() or 0  # 0: ONNX Runtime decides
        session_options.inter_op_num_threads = 1
        # No busy-waiting between operators: the robot's CPU is shared with SLAM and ROS, and
        # spinning threads cost more than they save there (on 2 loaded cores, 75 vs 120 ms).
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session_options.log_severity_level = 3  # errors only: no stderr chatter in the node
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ONNX Runtime's errors derive from Exception directly
            reason = " ".join(str(err).split())
            raise ModelLoadError(f"{path}: not a loadable ONNX model: {reason}") from err
        info = _model_info(path, session, options.image_size_px)
        return cls(session, info, options)

    def _preprocess(self, image_bgr: ImageBGR, context: _Context) -> FloatArray:
        """Letterbox, BGR -> RGB, HWC -> NCHW, 0..1."""
        padded, placement = letterbox(image_bgr, self.info.input_hw)
        context.extras["letterbox"] = placement
        return to_blob(padded, self.info.input_dtype)

    def _infer(self, prepared: FloatArray) -> list[NDArray[np.float32]]:
        """One session run."""
        outputs = self._session.run(None, {self.info.input_name: prepared})
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def _postprocess(self, raw: list[NDArray[np.float32]], context: _Context) -> list[Detection]:
        """Decode, suppress, map back to the image; masks for a segment model."""
        placement: Letterbox = context.extras["letterbox"]
        nc = len(self.classes)
        if self.info.end_to_end:
            rows = raw[0][0]
            rows = rows[rows[:, 4] >= self.confidence_threshold]
            boxes_in, scores = rows[:, :4].astype(np.float64), rows[:, 4].astype(np.float64)
            class_ids = rows[:, 5].astype(np.intp)
            coefficients = rows[:, 6:]
        else:
            rows = raw[0][0].T  # (N, 4 + nc [+ 32])
            class_scores = rows[:, 4 : 4 + nc]
            class_ids = class_scores.argmax(axis=1)
            scores = class_scores[np.arange(len(rows)), class_ids].astype(np.float64)
            candidates = np.flatnonzero(scores >= self.confidence_threshold)
            if candidates.size > MAX_CANDIDATES:
                candidates = candidates[np.argsort(-scores[candidates])[:MAX_CANDIDATES]]
            candidate_boxes = cxcywh_to_xyxy(rows[candidates, :4])
            kept = nms(
                candidate_boxes,
                scores[candidates],
                class_ids[candidates],
                self.iou_threshold,
                MAX_DETECTIONS,
            )
            keep = candidates[kept]
            boxes_in = candidate_boxes[kept]
            scores, class_ids, coefficients = scores[keep], class_ids[keep], rows[keep, 4 + nc :]
        class_ids = class_ids.clip(0, nc - 1)
        boxes = unletterbox_boxes(boxes_in, placement)
        masks: list[NDArray[np.bool_] | None] = [None] * len(boxes)
        if self.info.task == "segment" and len(raw) > 1 and len(boxes):
            masks = list(_decode_masks(coefficients, raw[1][0], boxes, placement))
        return [
            Detection(
                code=self.classes[int(c)],
                box_xyxy_px=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                confidence=float(s),
                mask=m,
            )
            for b, s, c, m in zip(boxes, scores, class_ids, masks, strict=True)
            if m is None or m.any()  # as Ultralytics: a segment without pixels is dropped
        ]


def _model_info(path: Path, session: Any, default_size_px: int) -> OnnxModelInfo:
    """Names, task and input geometry from the session; ModelLoadError if they do not fit."""
    metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
    names = _parse_names(path, metadata.get("names"))
    task = metadata.get("task", "detect")
    if task not in ("detect", "segment"):
        raise ModelLoadError(f"{path}: a '{task}' model; only detect and segment are supported")
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelLoadError(f"{path}: expected one (1, 3, H, W) image input")
    _, _, height, width = inputs[0].shape
    input_hw = (
        (height, width)
        if isinstance(height, int) and isinstance(width, int)
        else (default_size_px, default_size_px)
    )
    input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
    args = _literal(metadata.get("args", "{}"))
    end_to_end = metadata.get("end2end") == "True" or (
        isinstance(args, dict) and bool(args.get("nms"))
    )
    extra = MASK_COEFFICIENTS if task == "segment" else 0
    channels = outputs[0].shape[-1 if end_to_end else 1] if len(outputs[0].shape) == 3 else None
    expected = (6 if end_to_end else 4 + len(names)) + extra
    if isinstance(channels, int) and channels != expected:
        raise ModelLoadError(
            f"{path}: output {outputs[0].name} has {channels} channels, expected {expected} "
            f"for a YOLO {task} head with {len(names)} classes"
        )
    return OnnxModelInfo(names, task, inputs[0].name, input_hw, input_dtype, end_to_end)


def _parse_names(path: Path, text: str | None) -> tuple[str, ...]:
    """Ultralytics writes ``names`` as a dict literal, ``{0: 'PL', 1: 'SL'}``."""
    if text is None:
        raise ModelLoadError(
            f"{path}: no class names in the model metadata (export it with Ultralytics)"
        )
    value = _literal(text)
    if isinstance(value, dict) and sorted(value) == list(range(len(value))):
        return tuple(str(value[i]) for i in range(len(value)))
    if isinstance(value, list | tuple) and value:
        return tuple(str(v) for v in value)
    raise ModelLoadError(f"{path}: unreadable class names in the metadata: {text[:80]!r}")


def _literal(text: str) -> object:
    """A Python literal, or None if the text is not one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _decode_masks(
    coefficients: NDArray[np.float32],
    protos: NDArray[np.float32],
    boxes_xyxy: NDArray[np.float64],
    placement: Letterbox,
) -> list[NDArray[np.bool_]]:
    """Instance masks in image pixels: sigmoid(coefficients @ prototypes), cut to the box."""
    n_protos, proto_h, proto_w = protos.shape
    logits = coefficients[:, :n_protos] @ protos.reshape(n_protos, -1)
    h, w = placement.shape_hw
    # The part of the prototypes that covers the image (not the padding), rounded as
    # Ultralytics' scale_masks does.
    gain = min(proto_h / h, proto_w / w)
    pad_y, pad_x = (proto_h - h * gain) / 2.0, (proto_w - w * gain) / 2.0
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    bottom, right = proto_h - round(pad_y + 0.1), proto_w - round(pad_x + 0.1)
    crop = (slice(top, max(bottom, top + 1)), slice(left, max(right, left + 1)))
    masks: list[NDArray[np.bool_]] = []
    for logit, box in zip(logits.reshape(-1, proto_h, proto_w), boxes_xyxy, strict=True):
        image_logit = cv2.resize(
            np.ascontiguousarray(logit[crop]), (w, h), interpolation=cv2.INTER_LINEAR
        )
        mask = np.asarray(image_logit, dtype=np.float32) > 0.0  # sigmoid > 0.5
        inside = np.zeros_like(mask)
        # Pixel columns c with x_min <= c < x_max (and rows likewise), as Ultralytics crops.
        bx0, by0, bx1, by1 = (int(np.ceil(v)) for v in box)
        inside[by0:by1, bx0:bx1] = True
        masks.append(mask & inside)
    return masks
