"""Box geometry shared by the network backends: letterbox, its inverse, IoU and NMS.

Letterboxing fits an image into the network's input rectangle without distorting it: scale by
``gain = min(H_in / h, W_in / w)``, centre it and pad the rest with grey 114, as Ultralytics
does when it trains and exports. Boxes the network reports in the input's pixels go back to
the original image with ``unletterbox_boxes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from perception.detectors.base import ImageBGR

BoxesXYXY = NDArray[np.float64]  # (N, 4) x_min, y_min, x_max, y_max in pixels
PAD_VALUE = 114  # Ultralytics' padding grey


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``shape_hw`` was placed in the network input: ``x_in = gain * x + pad``."""

    shape_hw: tuple[int, int]  # original image
    gain: float
    pad_x_px: float  # left padding in input pixels
    pad_y_px: float  # top padding in input pixels


def letterbox(image_bgr: ImageBGR, input_hw: tuple[int, int]) -> tuple[ImageBGR, Letterbox]:
    """The image resized (aspect kept) and padded with grey 114 to ``input_hw``; and the mapping.

    The rounding follows Ultralytics' ``LetterBox`` so an exported model sees the same pixels
    it saw in validation.
    """
    h, w = int(image_bgr.shape[0]), int(image_bgr.shape[1])
    in_h, in_w = input_hw
    gain = min(in_h / h, in_w / w)
    new_w, new_h = round(w * gain), round(h * gain)
    pad_x, pad_y = (in_w - new_w) / 2.0, (in_h - new_h) / 2.0
    if (new_w, new_h) != (w, h):
        image_bgr = np.asarray(
            cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR), dtype=np.uint8
        )
    top, bottom = round(pad_y - 0.1), round(pad_y + 0.1)
    left, right = round(pad_x - 0.1), round(pad_x + 0.1)
    padded = cv2.copyMakeBorder(
        image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return np.ascontiguousarray(padded), Letterbox((h, w), gain, float(left), float(top))


def to_blob(image_bgr: ImageBGR, dtype: type[np.floating[Any]] = np.float32
            ) -> NDArray[np.floating[Any]]:
    """BGR -> RGB, HWC -> NCHW (N = 1), 0..1: the network input.

    The same values as ``cv2.dnn.blobFromImage(image, 1 / 255, swapRB=True)`` in a fifth of
    its time at 640 x 640 (0.5 against 2.8 ms on these cores: a tenth of the inference).
    """
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    blob = np.empty((1, 3, *rgb.shape[:2]), dtype=dtype)
    np.multiply(rgb.transpose(2, 0, 1), dtype(1.0 / 255.0), out=blob[0], casting="unsafe")
    return blob


def unletterbox_boxes(boxes_xyxy: BoxesXYXY, placement: Letterbox) -> BoxesXYXY:
    """Boxes in network-input pixels -> boxes in original-image pixels, clipped to the image."""
    out = np.array(boxes_xyxy, dtype=np.float64, copy=True).reshape(-1, 4)
    out[:, [0, 2]] = (out[:, [0, 2]] - placement.pad_x_px) / placement.gain
    out[:, [1, 3]] = (out[:, [1, 3]] - placement.pad_y_px) / placement.gain
    h, w = placement.shape_hw
    out[:, [0, 2]] = out[:, [0, 2]].clip(0.0, float(w))
    out[:, [1, 3]] = out[:, [1, 3]].clip(0.0, float(h))
    return out


def cxcywh_to_xyxy(boxes_cxcywh: NDArray[np.floating]) -> BoxesXYXY:
    """(cx, cy, w, h) rows -> (x_min, y_min, x_max, y_max) rows."""
    b = np.asarray(boxes_cxcywh, dtype=np.float64).reshape(-1, 4)
    half = b[:, 2:4] / 2.0
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def box_iou(a_xyxy: NDArray[np.floating], b_xyxy: NDArray[np.floating]) -> NDArray[np.float64]:
    """(N, M) intersection over union of every box in ``a`` with every box in ``b``."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod((bottom_right - top_left).clip(min=0.0), axis=2)
    area_a = np.prod((a[:, 2:] - a[:, :2]).clip(min=0.0), axis=1)
    area_b = np.prod((b[:, 2:] - b[:, :2]).clip(min=0.0), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou: NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
    return iou


def nms(
    boxes_xyxy: NDArray[np.floating],
    scores: NDArray[np.floating],
    class_ids: NDArray[np.integer],
    iou_threshold: float,
    max_detections: int = 300,
) -> NDArray[np.intp]:
    """Indices of the boxes kept by greedy, class-aware non-maximum suppression, best first.

    A box is dropped when it overlaps a better-scored box *of the same class* by more than
    ``iou_threshold``; boxes of different classes never suppress each other (a crack inside a
    leak stays reported). At most ``max_detections`` indices are returned.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    class_ids = np.asarray(class_ids).reshape(-1)
    if not len(boxes):
        return np.zeros(0, dtype=np.intp)
    # Shift each class to its own region of the plane: one pass then suppresses per class.
    offset = (class_ids.astype(np.float64) * (float(np.abs(boxes).max()) + 1.0))[:, None]
    shifted = boxes + offset
    areas = np.prod((shifted[:, 2:] - shifted[:, :2]).clip(min=0.0), axis=1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        top_left = np.maximum(shifted[best, :2], shifted[rest, :2])
        bottom_right = np.minimum(shifted[best, 2:], shifted[rest, 2:])
        inter = np.prod((bottom_right - top_left).clip(min=0.0), axis=1)
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)
