"""A model-free baseline: OpenCV heuristics for cracks (PL), seepage (SL) and corrosion (FS).

It needs no training data and runs anywhere, so it is the fallback when no model fits the pipe
material yet, and the floor a trained model must beat in ``crawler bench detect``. It is tuned
for what a crawler camera sees: a wall lit by one lamp, bright in the middle, dark at the
edges (fall-off and vignetting), with concrete's pores and aggregate as texture.

Every cue is measured against the local background, not in absolute grey levels:

1. **Illumination**: on a small copy of the image, in log grey levels, a smooth surface
   fitted robustly (outliers such as pores, cracks, stains and voids get no weight) plus a
   wide median of what remains estimates the lamp's light on the bare wall. Dividing by it
   gives ``norm``, close to 1 on plain wall wherever the lamp reaches. Pixels the lamp barely
   reaches are left out altogether: noise there would otherwise be amplified into detections.
2. **Cracks (PL)**: a black-hat (closing minus image) picks thin structures darker than
   their surroundings; its threshold is a multiple of the black-hat's own robust spread over
   the image (so rough concrete raises it) and never below a fixed relative contrast. Strong
   pixels seed, weaker ones extend them (hysteresis); a component is a crack when it is long,
   thin and elongated.
3. **Seepage / wet patches (SL)**: compact regions clearly darker than the background but
   not black (a black hole is the pipe's far end or a lateral), wider than a crack, and
   smoother than the wall around them (a water film fills the pores).
4. **Corrosion (FS)**: after grey-world white balance (the lamp's tint removed), saturated
   orange-brown regions whose texture is at least as rough as the wall's.

Known limits: cracks must be about 2 px wide at the working size (640 px) to stand out of
concrete's grain; a straight pipe joint or a long shadow line can pass as a crack; a wall
mostly covered in rust defeats the grey-world balance.

Confidence is a heuristic score in [0, 1] built from each cue's contrast and shape; it ranks
detections but is not a calibrated probability.

Presets (``CLASSICAL_PRESETS``, the spec ``classical:NAME``): ``default`` for the wide camera;
``close_up`` for zoomed frames of a suspect (``perception.close_up``). Zoomed in, a crack is a
resolved line, its core a quarter or more darker than the wall and tens of pixels long, while
concrete's mottling, magnified, forms long faint streaks that the wide settings take for
hairlines: the close-up preset asks seeds for twice the contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray

from perception.detectors.base import Detection, ImageBGR, StagedDetector, _Context
from perception.errors import DetectorSpecError

if TYPE_CHECKING:
    from perception.detectors import DetectorOptions

Float32Array = NDArray[np.float32]
BoolArray = NDArray[np.bool_]

CLASSES: tuple[str, ...] = ("PL", "SL", "FS")


@dataclass(frozen=True)
class ClassicalParams:
    """Thresholds of the heuristics; lengths are in pixels of the working image."""

    work_size_px: int = 640  # the longer side of the working image
    min_illumination: float = 25.0  # grey level (0..255) below which the wall is too dark
    illumination_window_frac: float = 0.25  # median window, as a fraction of the longer side
    # Cracks (PL)
    crack_max_width_px: int = 7
    crack_seed_sigmas: float = 6.0  # black-hat seed threshold, in robust sigmas
    crack_grow_sigmas: float = 3.0  # hysteresis: weaker pixels joined to seeded components
    crack_min_contrast: float = 0.12  # seed pixels at least 12 % darker than their surroundings
    crack_min_length_px: float = 40.0
    crack_min_elongation: float = 8.0  # length / mean width
    # Wet patches (SL)
    wet_min_darkening: float = 0.2  # at least 20 % darker than the lit wall around
    wet_max_darkening: float = 0.75  # darker than this is a void (pipe end, lateral), not a patch
    wet_max_texture_ratio: float = 0.8  # smoother than the wall: texture / wall texture
    wet_min_area_frac: float = 0.004  # of the working image
    # Corrosion (FS)
    rust_hue_range: tuple[float, float] = (4.0, 26.0)  # OpenCV hue (0..180): orange to brown
    rust_min_saturation: float = 0.3
    rust_min_texture_ratio: float = 0.9
    rust_min_area_frac: float = 0.003
    max_detections: int = 50


CLASSICAL_PRESETS: dict[str, ClassicalParams] = {
    "default": ClassicalParams(),
    # Zoomed frames (1-2 m of wall across 640 px): a crack's core is >= 25 % darker than the
    # wall around it; magnified mottling reaches 15-22 % (measured on the simulated tunnel's
    # close-ups: the held-out crack CR1 0.35-0.38, a panel seam 0.28 at one point, streaks
    # 0.14-0.22).
    "close_up": ClassicalParams(crack_min_contrast=0.25, crack_min_length_px=60.0),
}
"""Named settings, chosen by the spec ``classical:NAME`` (``classical`` alone: ``default``)."""


def preset_params(name: str) -> ClassicalParams:
    """The settings of a preset; DetectorSpecError naming the known ones otherwise."""
    if name not in CLASSICAL_PRESETS:
        known = ", ".join(f"'classical:{preset}'" for preset in CLASSICAL_PRESETS)
        raise DetectorSpecError(f"no classical preset 'classical:{name}': use {known}")
    return CLASSICAL_PRESETS[name]


@dataclass
class _Prepared:
    """The working image and its lamp-independent views."""

    bgr: Float32Array  # (h, w, 3) 0..255 at working size
    norm: Float32Array  # grey / illumination: 1 on bare lit wall
    valid: BoolArray  # where the lamp lights the wall enough to judge
    texture: Float32Array  # local relative roughness
    scale: float  # original pixels per working pixel


@dataclass(frozen=True)
class _Blob:
    """One candidate region in working pixels."""

    code: str
    mask: BoolArray  # (h, w) working size
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)
    confidence: float


class ClassicalDetector(StagedDetector[_Prepared, list[_Blob]]):
    """Cracks, wet patches and corrosion from image statistics alone (no model file)."""

    def __init__(self, params: ClassicalParams, confidence_threshold: float) -> None:
        super().__init__(CLASSES, confidence_threshold)
        self.params = params

    @classmethod
    def from_options(cls, options: DetectorOptions, preset: str = "default"
                     ) -> ClassicalDetector:
        """A preset's heuristics (``CLASSICAL_PRESETS``) at the options' image size and
        confidence threshold."""
        params = replace(preset_params(preset), work_size_px=options.image_size_px)
        return cls(params, options.confidence_threshold)

    def _preprocess(self, image_bgr: ImageBGR, context: _Context) -> _Prepared:
        """Working size, illumination estimate, normalised grey and texture."""
        p = self.params
        h, w = context.shape_hw
        scale = max(h, w) / p.work_size_px if max(h, w) > p.work_size_px else 1.0
        size = (max(round(w / scale), 1), max(round(h / scale), 1))
        small = (
            cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA) if scale > 1 else image_bgr
        )
        bgr = small.astype(np.float32)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        illumination = _illumination(grey, p.illumination_window_frac)
        norm = _f32(grey / np.maximum(illumination, 1.0))
        valid = illumination >= p.min_illumination
        return _Prepared(bgr, norm, valid, _relative_texture(norm), scale)

    def _infer(self, prepared: _Prepared) -> list[_Blob]:
        """The three cues, each a list of scored regions."""
        if not prepared.valid.any():
            return []
        blobs = [*self._cracks(prepared), *self._wet_patches(prepared), *self._corrosion(prepared)]
        blobs.sort(key=lambda b: -b.confidence)
        return blobs[: self.params.max_detections]

    def _postprocess(self, raw: list[_Blob], context: _Context) -> list[Detection]:
        """Working pixels -> image pixels, masks at the image's size."""
        h, w = context.shape_hw
        detections = []
        for blob in raw:
            work_h, work_w = blob.mask.shape
            sx, sy = w / work_w, h / work_h
            mask = blob.mask
            if (work_h, work_w) != (h, w):
                resized = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
                mask = resized.astype(bool)
            x0, y0, x1, y1 = blob.box
            box = (x0 * sx, y0 * sy, min(x1 * sx, float(w)), min(y1 * sy, float(h)))
            detections.append(Detection(blob.code, box, blob.confidence, mask))
        return detections

    # The cues ---------------------------------------------------------------------------------

    def _cracks(self, prepared: _Prepared) -> list[_Blob]:
        """Long, thin, dark ridges: black-hat, hysteresis threshold, shape test."""
        p = self.params
        smooth = _blur(prepared.norm, 1.0)
        size = 2 * p.crack_max_width_px + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        black_hat = _f32(cv2.morphologyEx(smooth, cv2.MORPH_BLACKHAT, kernel))
        black_hat[~prepared.valid] = 0.0
        level, sigma = _robust_level(black_hat[prepared.valid])
        seed = black_hat >= max(level + p.crack_seed_sigmas * sigma, p.crack_min_contrast)
        grow = black_hat >= max(level + p.crack_grow_sigmas * sigma, 0.5 * p.crack_min_contrast)
        grown = _hysteresis(seed, grow)
        # Bridge one-pixel gaps so a crack broken by a bright grain stays one component.
        grown = cv2.morphologyEx(
            grown.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)
        ).astype(bool)
        blobs = []
        for mask, box, area in _components(grown, min_area=int(p.crack_min_length_px)):
            ys, xs = np.nonzero(mask)
            (_, _), (side_a, side_b), _ = cv2.minAreaRect(
                np.column_stack([xs, ys]).astype(np.float32)
            )
            length = max(side_a, side_b, 1.0)
            width = area / length
            if length < p.crack_min_length_px or width > p.crack_max_width_px:
                continue
            if length / max(width, 1.0) < p.crack_min_elongation:
                continue
            contrast = float(black_hat[mask].mean())
            snr = (contrast - level) / max(sigma, 1e-6)
            s_contrast = _ramp(snr, p.crack_grow_sigmas, 4.0 * p.crack_seed_sigmas)
            s_length = _ramp(length, p.crack_min_length_px, 4.0 * p.crack_min_length_px)
            confidence = 0.3 + 0.45 * s_contrast + 0.25 * s_length
            blobs.append(_Blob("PL", mask, box, float(np.clip(confidence, 0.0, 1.0))))
        return blobs

    def _wet_patches(self, prepared: _Prepared) -> list[_Blob]:
        """Compact, clearly darker, smoother-than-wall regions that are not voids."""
        p = self.params
        h, w = prepared.norm.shape
        smooth = _blur(prepared.norm, 3.0)
        darkening = 1.0 - smooth
        candidate = (darkening >= p.wet_min_darkening) & (darkening <= p.wet_max_darkening)
        candidate &= prepared.valid
        # Opening by a disc wider than any crack: cracks and joints drop out.
        radius = p.crack_max_width_px
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        candidate = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, disc).astype(bool)
        wall_texture = _wall_level(prepared.texture, prepared.valid)
        blobs = []
        for mask, box, area in _components(candidate, min_area=int(p.wet_min_area_frac * h * w)):
            bw, bh = box[2] - box[0], box[3] - box[1]
            if max(bw, bh) > 6 * min(bw, bh):
                continue  # a long dark band is a joint or a shadow, not a patch
            texture_ratio = float(np.median(prepared.texture[mask])) / wall_texture
            if texture_ratio > p.wet_max_texture_ratio:
                continue
            # Darker than the wall right around it, not only than the light estimate (which
            # is least certain where the light changes fastest, towards the dark edges).
            depth = 1.0 - float(smooth[mask].mean()) / _ring_level(smooth, mask, prepared.valid)
            if depth < p.wet_min_darkening:
                continue
            s_dark = _ramp(depth, p.wet_min_darkening, 2.0 * p.wet_min_darkening)
            s_smooth = _ramp(1.0 - texture_ratio, 1.0 - p.wet_max_texture_ratio, 0.7)
            s_area = _ramp(area / (h * w), p.wet_min_area_frac, 10.0 * p.wet_min_area_frac)
            confidence = 0.25 + 0.3 * s_dark + 0.3 * s_smooth + 0.15 * s_area
            blobs.append(_Blob("SL", mask, box, float(np.clip(confidence, 0.0, 1.0))))
        return blobs

    def _corrosion(self, prepared: _Prepared) -> list[_Blob]:
        """Saturated orange-brown, at least as rough as the wall, after white balance."""
        p = self.params
        h, w = prepared.norm.shape
        balanced = _grey_world(prepared.bgr, prepared.valid)
        balanced = _blur(balanced, 2.0)
        hsv = cv2.cvtColor(np.clip(balanced / 255.0, 0.0, 1.0), cv2.COLOR_BGR2HSV)
        hue = hsv[:, :, 0] / 2.0  # OpenCV's float HSV has hue in degrees; use the 0..180 scale
        saturation = hsv[:, :, 1]
        low, high = p.rust_hue_range
        candidate = (hue >= low) & (hue <= high) & (saturation >= p.rust_min_saturation)
        candidate &= prepared.valid
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
        candidate = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, disc)
        candidate = cv2.morphologyEx(candidate, cv2.MORPH_CLOSE, disc).astype(bool)
        wall_texture = _wall_level(prepared.texture, prepared.valid)
        blobs = []
        for mask, box, area in _components(candidate, min_area=int(p.rust_min_area_frac * h * w)):
            texture_ratio = float(np.median(prepared.texture[mask])) / wall_texture
            if texture_ratio < p.rust_min_texture_ratio:
                continue  # a smooth brown film is a stain or deposit, not corroded concrete
            s_colour = _ramp(float(saturation[mask].mean()), p.rust_min_saturation, 0.7)
            s_rough = _ramp(texture_ratio, p.rust_min_texture_ratio, 2.0)
            s_area = _ramp(area / (h * w), p.rust_min_area_frac, 10.0 * p.rust_min_area_frac)
            confidence = 0.3 + 0.35 * s_colour + 0.2 * s_rough + 0.15 * s_area
            blobs.append(_Blob("FS", mask, box, float(np.clip(confidence, 0.0, 1.0))))
        return blobs


def _illumination(grey: Float32Array, window_frac: float) -> Float32Array:
    """The lamp's light on the bare wall, estimated on a small copy of the image.

    Two steps, both in log grey levels (where the lamp's fall-off is close to a paraboloid):

    1. a smooth surface (a 2-D polynomial of degree 4) fitted by iteratively reweighted least
       squares, so pores, cracks, stains and dark voids, which lie far off it, get no weight;
    2. a wide median filter of what is left, for the light's finer structure. Filtering after
       the light's curvature is removed keeps the median unbiased, and a median ignores any
       patch smaller than half its window.
    """
    h, w = grey.shape
    factor = max(1, max(h, w) // 64)
    size = (max(w // factor, 1), max(h // factor, 1))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    log_small = np.log1p(np.maximum(small, 0.0)).astype(np.float64)
    surface = _robust_surface(log_small, weights=(small >= 2.0).astype(np.float64))
    # Residual median: medianBlur takes large kernels only for 8-bit images, so the residual
    # is coded as 128 + 64 * ln-ratio (1.6 % steps, +-2 in ln).
    k = max(3, int(window_frac * max(small.shape)) | 1)
    coded = np.clip(128.0 + 64.0 * (log_small - surface), 0, 255).astype(np.uint8)
    residual = (cv2.medianBlur(coded, k).astype(np.float32) - 128.0) / 64.0
    residual = _blur(residual, k / 4.0)
    light = np.expm1(surface + residual).astype(np.float32)
    return _f32(cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR))


def _robust_surface(
    values: NDArray[np.float64], weights: NDArray[np.float64], degree: int = 4, passes: int = 4
) -> NDArray[np.float64]:
    """A 2-D polynomial fitted to ``values`` with Tukey reweighting of the outliers."""
    h, w = values.shape
    y, x = np.mgrid[0:h, 0:w]
    u, v = (2.0 * x / max(w - 1, 1) - 1.0).ravel(), (2.0 * y / max(h - 1, 1) - 1.0).ravel()
    design = np.column_stack(
        [u**i * v**j for i in range(degree + 1) for j in range(degree + 1 - i)]
    )
    target, base = values.ravel(), weights.ravel()
    weight = base.copy()
    fit = np.full_like(target, float(np.median(target)))
    for _ in range(passes):
        if weight.sum() < design.shape[1] * 4:
            break
        weighted = design * weight[:, None]  # normal equations: 15 unknowns, fast
        normal = weighted.T @ design + 1e-9 * np.eye(design.shape[1])
        coefficients = np.linalg.solve(normal, weighted.T @ target)
        fit = design @ coefficients
        residual = target - fit
        scale = max(4.685 * 1.4826 * float(np.median(np.abs(residual[base > 0]))), 0.05)
        weight = base * np.clip(1.0 - (residual / scale) ** 2, 0.0, None) ** 2
    surface: NDArray[np.float64] = fit.reshape(h, w)
    return surface


def _blur(image: NDArray[np.floating[Any]], sigma: float) -> Float32Array:
    """Gaussian blur of a float image, as float32."""
    return _f32(cv2.GaussianBlur(image, (0, 0), sigma))


def _f32(array: NDArray[Any]) -> Float32Array:
    """``array`` as float32 (OpenCV's stubs type its results loosely)."""
    return np.asarray(array, dtype=np.float32)


def _relative_texture(norm: Float32Array) -> Float32Array:
    """Local roughness: RMS of the fine detail of ``norm``, relative to the local level."""
    local = _blur(norm, 2.0)
    detail = norm - local
    rms = np.sqrt(_blur(detail * detail, 5.0))
    level = _blur(norm, 5.0)
    return _f32(rms / np.maximum(level, 0.05))


def _ring_level(values: Float32Array, mask: BoolArray, valid: BoolArray) -> float:
    """Median of ``values`` in a band around ``mask`` (as wide as a tenth of its size)."""
    ys, xs = np.nonzero(mask)
    width = max(5, int(0.1 * max(np.ptp(ys), np.ptp(xs))))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    ring = cv2.dilate(mask.astype(np.uint8), disc).astype(bool) & ~mask & valid
    return max(float(np.median(values[ring])), 1e-3) if ring.any() else 1.0


def _robust_level(values: Float32Array) -> tuple[float, float]:
    """Median and MAD-based sigma of a sample."""
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    return median, max(sigma, 1e-4)


def _wall_level(texture: Float32Array, valid: BoolArray) -> float:
    """Typical texture of the lit wall."""
    return max(float(np.median(texture[valid])), 1e-4)


def _grey_world(bgr: Float32Array, valid: BoolArray) -> Float32Array:
    """Channels scaled so their medians over the lit wall agree (removes the lamp's tint)."""
    medians = np.array([np.median(bgr[:, :, c][valid]) for c in range(3)], dtype=np.float32)
    gains = medians.mean() / np.maximum(medians, 1.0)
    balanced: Float32Array = bgr * gains[None, None, :]
    return balanced


def _hysteresis(seed: BoolArray, grow: BoolArray) -> BoolArray:
    """Components of ``grow`` that contain at least one ``seed`` pixel."""
    count, labels = cv2.connectedComponents(grow.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(grow)
    seeded = np.zeros(count, dtype=bool)
    seeded[np.unique(labels[seed & grow])] = True
    seeded[0] = False
    result: BoolArray = seeded[labels]
    return result


def _components(
    mask: BoolArray, min_area: int
) -> list[tuple[BoolArray, tuple[int, int, int, int], int]]:
    """(mask, box x0 y0 x1 y1, area) of each 8-connected component of at least ``min_area``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    found = []
    for label in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[label])
        if area < max(min_area, 1):
            continue
        found.append((labels == label, (x, y, x + bw, y + bh), area))
    return found


def _ramp(value: float, start: float, end: float) -> float:
    """0 at ``start``, 1 at ``end``, linear in between."""
    if math.isclose(end, start):
        return 1.0 if value >= end else 0.0
    return float(np.clip((value - start) / (end - start), 0.0, 1.0))
