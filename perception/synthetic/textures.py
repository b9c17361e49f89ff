"""Randomised looks of the worlds' surface textures, for rendering training data.

Each function draws one texture with numpy's generator ``rng``: the same kind of surface as the
world's own texture (``sim_worlds/worldgen/textures.py``) with a different layout, contrast and
colour each time, so that a detector learns the defect and not one picture of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from sim_worlds.worldgen.textures import fbm

FloatImage = NDArray[np.float64]
ImageBGR = NDArray[np.uint8]
SIZE_PX = 256


def _noise(rng: np.random.Generator, cells: tuple[int, ...] = (64, 32, 16, 8, 4)) -> FloatImage:
    return fbm(SIZE_PX, int(rng.integers(0, 2**30)), cells)


@dataclass(frozen=True)
class WallStyle:
    """One look's plain concrete, shared by the defect patches painted on that wall.

    Without it every texture draws its own tone and colour, and a crack or seepage patch
    shows as a rectangle of different concrete: a detector then learns the rectangle. On a
    real wall (and in the worlds' own textures) the concrete around a crack is the wall's.
    """

    offset: float
    amplitude: float
    pore_threshold: float
    tint: tuple[float, float, float]
    light_scale: float


# Textures drawn on a wall's own concrete (they take the look's ``WallStyle``)
WALL_TEXTURES = frozenset({"concrete", "crack", "seepage"})


def wall_style(rng: np.random.Generator) -> WallStyle:
    """A random concrete look for one rendered look."""
    tint = rng.normal(1.0, 0.04, 3)
    return WallStyle(float(rng.uniform(0.25, 0.45)), float(rng.uniform(0.3, 0.55)),
                     float(rng.uniform(0.97, 0.995)),
                     (float(tint[0]), float(tint[1]), float(tint[2])),
                     float(rng.uniform(0.8, 1.1)))


def _concrete(rng: np.random.Generator, style: WallStyle | None = None) -> FloatImage:
    if style is None:
        base = rng.uniform(0.25, 0.45) + rng.uniform(0.3, 0.55) * _noise(rng)
        pores = rng.random((SIZE_PX, SIZE_PX)) > rng.uniform(0.97, 0.995)
    else:  # the wall's tone, with this patch's own noise
        base = style.offset + style.amplitude * _noise(rng)
        pores = rng.random((SIZE_PX, SIZE_PX)) > style.pore_threshold
    base[pores] *= 0.45
    return base


def _wander(rng: np.random.Generator, start: NDArray[np.float64], heading: float,
            steps: int, step_px: float) -> NDArray[np.int32]:
    """Points of a crack-like random walk with persistent heading."""
    points = [start]
    for _ in range(steps):
        heading += rng.normal(0.0, 0.35)
        points.append(points[-1] + step_px * np.array([np.cos(heading), np.sin(heading)]))
    return np.round(np.array(points)).astype(np.int32)


def crack(rng: np.random.Generator, style: WallStyle | None = None) -> FloatImage:
    """Concrete with a main crack across the patch and a few thinner branches."""
    image = _concrete(rng, style)
    heading = rng.uniform(-0.4, 0.4) + (np.pi / 2 if rng.random() < 0.3 else 0.0)
    start = np.array([0.0, SIZE_PX * rng.uniform(0.3, 0.7)])
    if heading > 1.0:
        start = start[::-1]
    main = _wander(rng, start, heading, 40, SIZE_PX / 34)
    # A third are hairlines: one texel wide and not as dark (a sub-millimetre crack)
    hairline = rng.random() < 1 / 3
    width = 1 if hairline else int(rng.integers(2, 6))
    darkness = float(rng.uniform(0.0, 0.3) if hairline else rng.uniform(0.0, 0.1))
    cv2.polylines(image, [main], False, darkness, width, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):
        origin = main[int(rng.integers(5, len(main) - 5))].astype(np.float64)
        branch = _wander(rng, origin, heading + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.2),
                         int(rng.integers(6, 18)), SIZE_PX / 40)
        cv2.polylines(image, [branch], False, float(rng.uniform(0.05, 0.2)), 1, cv2.LINE_AA)
    return image


def corrosion(rng: np.random.Generator) -> FloatImage:
    """Pitted paste with exposed aggregate."""
    paste = rng.uniform(0.1, 0.3) + rng.uniform(0.3, 0.6) * _noise(rng, (32, 16, 8, 4, 2))
    aggregate = _noise(rng, (16, 8)) > rng.uniform(0.55, 0.7)
    paste[aggregate] = rng.uniform(0.6, 0.8) + 0.2 * _noise(rng, (8, 4))[aggregate]
    pits = rng.random((SIZE_PX, SIZE_PX)) > rng.uniform(0.93, 0.98)
    paste[pits] = 0.05
    return paste


def leakage(rng: np.random.Generator) -> FloatImage:
    """Wet streaks running down the wall with pale mineral deposits."""
    base = rng.uniform(0.35, 0.55) + 0.25 * _noise(rng)
    strength = _noise(rng, (16, 8, 4))[0]
    rows = np.arange(SIZE_PX, dtype=np.float64)[:, None] / SIZE_PX
    wet = (strength[None, :] > rng.uniform(0.45, 0.6)) & (rows < 0.2 + 0.8 * strength[None, :])
    base[wet] *= rng.uniform(0.2, 0.5)
    deposit = wet & (_noise(rng, (8, 4, 2)) > rng.uniform(0.7, 0.85))
    base[deposit] = rng.uniform(0.8, 1.0)
    return base


def roots(rng: np.random.Generator) -> FloatImage:
    """A mat of fibrous roots over dark soil."""
    image = rng.uniform(0.05, 0.15) + 0.15 * _noise(rng, (16, 8, 4))
    for _ in range(int(rng.integers(8, 24))):
        start = np.array([rng.uniform(0, SIZE_PX), 0.0])
        strand = _wander(rng, start, np.pi / 2 + rng.normal(0, 0.3), 30, SIZE_PX / 28)
        cv2.polylines(image, [strand], False, float(rng.uniform(0.55, 0.9)),
                      int(rng.integers(1, 3)), cv2.LINE_AA)
    return image


def scale(rng: np.random.Generator) -> FloatImage:
    """Hard, crusty mineral scale."""
    return rng.uniform(0.2, 0.4) + rng.uniform(0.5, 0.8) * _noise(rng, (32, 8, 4, 2))


def sediment(rng: np.random.Generator) -> FloatImage:
    """Silt and grit."""
    mud = rng.uniform(0.15, 0.3) + rng.uniform(0.4, 0.6) * _noise(rng, (64, 16, 4))
    grit = rng.random((SIZE_PX, SIZE_PX)) > rng.uniform(0.85, 0.95)
    mud[grit] = rng.uniform(0.7, 0.95)
    return mud


def seepage(rng: np.random.Generator, style: WallStyle | None = None) -> FloatImage:
    """A damp patch, darkest at its centre."""
    base = _concrete(rng, style)
    coords = (np.arange(SIZE_PX, dtype=np.float64) - SIZE_PX / 2.0) / (SIZE_PX / 2.0)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    distance = np.sqrt(xx * xx + yy * yy) + 0.35 * _noise(rng, (32, 16, 8))
    damp = distance < rng.uniform(0.8, 1.0)
    base[damp] *= 0.25 + 0.5 * np.clip(distance[damp], 0.0, 1.0)
    return base


Colour = tuple[float, float, float]
# Two end colours (RGB, dark and light) per texture, jittered per sample.
_COLOURS: dict[str, tuple[Colour, Colour]] = {
    "concrete": ((40, 40, 38), (196, 192, 184)),
    "crack": ((40, 40, 38), (196, 192, 184)),
    "corrosion": ((45, 32, 24), (214, 206, 188)),
    "leakage": ((22, 26, 28), (238, 236, 226)),
    "roots": ((24, 18, 12), (196, 160, 112)),
    "scale": ((120, 112, 88), (236, 230, 208)),
    "sediment": ((38, 30, 22), (180, 170, 150)),
    "seepage": ((40, 40, 38), (196, 192, 184)),
}

TEXTURES: dict[str, Callable[[np.random.Generator], FloatImage]] = {
    "concrete": _concrete,
    "crack": crack,
    "corrosion": corrosion,
    "leakage": leakage,
    "roots": roots,
    "scale": scale,
    "sediment": sediment,
    "seepage": seepage,
}


_WALL_DRAW: dict[str, Callable[[np.random.Generator, WallStyle], FloatImage]] = {
    "concrete": _concrete, "crack": crack, "seepage": seepage}


def colourise(name: str, intensity: FloatImage, rng: np.random.Generator,
              style: WallStyle | None = None) -> ImageBGR:
    """Map an intensity image to BGR between the texture's jittered dark and light colours
    (``style``: the wall's colours instead of a jitter of its own)."""
    dark, light = (np.asarray(c, dtype=np.float64) for c in _COLOURS[name])
    if style is None:
        tint = rng.normal(1.0, 0.04, 3)
        light_scale = rng.uniform(0.8, 1.1)
    else:
        tint, light_scale = np.asarray(style.tint), style.light_scale
    dark = np.clip(dark * tint, 0, 255)
    light = np.clip(light * tint * light_scale, 0, 255)
    t = np.clip(intensity, 0.0, 1.0)[:, :, None]
    rgb = dark + (light - dark) * t
    return np.ascontiguousarray(rgb[:, :, ::-1].round().astype(np.uint8))


def with_distractors(intensity: FloatImage, rng: np.random.Generator) -> FloatImage:
    """Marks that are not defects: soft stains, formwork seams, scuffs (a copy)."""
    image = intensity.copy()
    coords = np.arange(SIZE_PX, dtype=np.float64)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    for _ in range(int(rng.integers(0, 4))):  # stains: soft, irregular, a little darker
        cy, cx = rng.uniform(0, SIZE_PX, 2)
        ry, rx = rng.uniform(15, 70, 2)
        edge = 0.35 * _noise(rng, (32, 16))
        inside = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) + edge < 1.0
        image[inside] *= rng.uniform(0.7, 0.9)
    if rng.random() < 0.4:  # a straight formwork seam: thin, faint, ruler-straight
        y0, y1 = rng.uniform(0, SIZE_PX, 2)
        cv2.line(image, (0, int(y0)), (SIZE_PX - 1, int(y1)),
                 float(np.median(image) * rng.uniform(0.75, 0.9)), 1, cv2.LINE_AA)
    if rng.random() < 0.3:  # pale scuffs
        for _ in range(int(rng.integers(1, 4))):
            x, y = (int(v) for v in rng.uniform(0, SIZE_PX, 2))
            cv2.ellipse(image, (x, y), (int(rng.integers(4, 20)), int(rng.integers(2, 6))),
                        float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.6, 0.8)), -1)
    return image


def random_texture(name: str, rng: np.random.Generator, distractors: bool = False,
                   style: WallStyle | None = None) -> ImageBGR:
    """One randomised BGR texture of kind ``name`` (a key of ``TEXTURES``).

    ``distractors`` adds stains, seams and scuffs to plain concrete (not to defect patches),
    so a detector learns that a dark mark is not by itself a leak or a crack. ``style``: the
    look's wall, which concrete and the patches on it (``WALL_TEXTURES``) share.
    """
    wall = style if name in WALL_TEXTURES else None
    intensity = _WALL_DRAW[name](rng, wall) if wall is not None else TEXTURES[name](rng)
    if distractors and name == "concrete":
        intensity = with_distractors(intensity, rng)
    return colourise(name, intensity, rng, wall)
