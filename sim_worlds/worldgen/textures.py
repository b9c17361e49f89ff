"""Procedural surface textures written as indexed-colour PNG files.

Everything here is integer hashing plus IEEE-exact float arithmetic (no sin/exp, no random
generator streams) and the PNG stream is stored uncompressed, so the bytes are identical on
every machine and numpy / zlib version.
"""

from __future__ import annotations

import functools
import itertools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatImage = NDArray[np.float64]
Palette = tuple[tuple[int, int, int], ...]
ColourStop = tuple[float, tuple[int, int, int]]

TEXTURE_SIZE_PX = 256
_MASK32 = 0xFFFFFFFF
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STORED_BLOCK_MAX = 65535


@dataclass(frozen=True)
class Texture:
    """A named texture: file name under textures/ and its PNG bytes."""

    name: str
    png: bytes

    @property
    def file_name(self) -> str:
        """File name of the PNG."""
        return f"{self.name}.png"


def _hash01(ix: NDArray[np.int64], iy: NDArray[np.int64], seed: int) -> FloatImage:
    h = (ix * 374761393 + iy * 668265263 + seed * 144665 + 1013904223) & _MASK32
    h = ((h ^ (h >> 13)) * 1274126177) & _MASK32
    h = h ^ (h >> 16)
    return h.astype(np.float64) / 4294967296.0


def _value_noise(size_px: int, cell_px: int, seed: int) -> FloatImage:
    """Tileable smooth value noise in [0, 1) on a size x size grid."""
    cells = size_px // cell_px
    coords = np.arange(size_px, dtype=np.float64) / cell_px
    i0 = np.floor(coords).astype(np.int64)
    f = coords - i0
    f = f * f * (3.0 - 2.0 * f)
    i1 = (i0 + 1) % cells
    i0 = i0 % cells
    iy0, ix0 = np.meshgrid(i0, i0, indexing="ij")
    iy1, ix1 = np.meshgrid(i1, i1, indexing="ij")
    fy, fx = np.meshgrid(f, f, indexing="ij")
    top = _hash01(ix0, iy0, seed) * (1.0 - fx) + _hash01(ix1, iy0, seed) * fx
    bottom = _hash01(ix0, iy1, seed) * (1.0 - fx) + _hash01(ix1, iy1, seed) * fx
    result: FloatImage = top * (1.0 - fy) + bottom * fy
    return result


def fbm(size_px: int, seed: int, cells_px: tuple[int, ...] = (64, 32, 16, 8, 4)) -> FloatImage:
    """Fractal sum of value-noise octaves normalised to [0, 1]."""
    total = np.zeros((size_px, size_px), dtype=np.float64)
    weight_sum = 0.0
    weight = 1.0
    for octave, cell in enumerate(cells_px):
        total += weight * _value_noise(size_px, cell, seed + 97 * octave)
        weight_sum += weight
        weight *= 0.55
    return _normalise(total / weight_sum)


def _normalise(image: FloatImage) -> FloatImage:
    low = float(image.min())
    high = float(image.max())
    if high - low < 1e-12:
        return np.zeros_like(image)
    result: FloatImage = (image - low) / (high - low)
    return result


def _pixel_hash(size_px: int, seed: int) -> FloatImage:
    iy, ix = np.meshgrid(
        np.arange(size_px, dtype=np.int64), np.arange(size_px, dtype=np.int64), indexing="ij"
    )
    return _hash01(ix, iy, seed)


def _random_walk(size_px: int, seed: int, start_px: tuple[int, int], vertical: bool) -> list[int]:
    """Cross-track offsets of a wandering line, one per pixel along its main direction."""
    steps = _hash01(np.arange(size_px, dtype=np.int64), np.full(size_px, seed, np.int64), seed)
    offsets: list[int] = []
    position = start_px[0] if vertical else start_px[1]
    drift = 0
    for value in steps.tolist():
        drift = max(-1, min(1, drift + (1 if value > 0.66 else -1 if value < 0.34 else 0)))
        position = (position + drift) % size_px
        offsets.append(position)
    return offsets


def _draw_line(image: FloatImage, offsets: list[int], half_width_px: int, value: float) -> None:
    """Darken or lighten a horizontal wandering line of given half-width (in place)."""
    size = image.shape[0]
    for x, y in enumerate(offsets):
        for dy in range(-half_width_px, half_width_px + 1):
            image[(y + dy) % size, x] = value


def _palette(stops: tuple[ColourStop, ...]) -> Palette:
    """A 256-entry palette interpolated linearly between colour stops."""
    entries: list[tuple[int, int, int]] = []
    for index in range(256):
        t = index / 255.0
        for (t0, c0), (t1, c1) in itertools.pairwise(stops):
            if t0 <= t <= t1:
                k = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                entries.append(
                    (
                        int(c0[0] + (c1[0] - c0[0]) * k + 0.5),
                        int(c0[1] + (c1[1] - c0[1]) * k + 0.5),
                        int(c0[2] + (c1[2] - c0[2]) * k + 0.5),
                    )
                )
                break
    return tuple(entries)


def _zlib_stored(data: bytes) -> bytes:
    """A zlib stream made of stored (uncompressed) deflate blocks."""
    parts = [b"\x78\x01"]
    for start in range(0, max(len(data), 1), _STORED_BLOCK_MAX):
        block = data[start : start + _STORED_BLOCK_MAX]
        final = 1 if start + _STORED_BLOCK_MAX >= len(data) else 0
        parts.append(bytes([final]) + struct.pack("<HH", len(block), len(block) ^ 0xFFFF))
        parts.append(block)
    parts.append(struct.pack(">I", zlib.adler32(data) & _MASK32))
    return b"".join(parts)


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(tag + payload) & _MASK32
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def indexed_png(indices: NDArray[np.uint8], palette: Palette) -> bytes:
    """PNG bytes of an 8-bit palette image (colour type 3)."""
    height, width = indices.shape
    raw = b"".join(b"\x00" + indices[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    plte = b"".join(bytes(colour) for colour in palette)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"PLTE", plte)
        + _png_chunk(b"IDAT", _zlib_stored(raw))
        + _png_chunk(b"IEND", b"")
    )


def _to_indices(image: FloatImage) -> NDArray[np.uint8]:
    clipped = np.clip(image, 0.0, 1.0) * 255.0 + 0.5
    return np.floor(clipped).astype(np.uint8)


def _concrete_intensity(size: int, seed: int) -> FloatImage:
    base = 0.35 + 0.45 * fbm(size, seed)
    pores = _pixel_hash(size, seed + 5) > 0.985
    base[pores] = base[pores] * 0.45
    return base


def concrete_image(size: int) -> FloatImage:
    """Grey concrete with pores."""
    return _concrete_intensity(size, 11)


def crack_image(size: int, variant: int = 0) -> FloatImage:
    """Concrete with one open crack and two hairline branches (``variant``: another crack)."""
    seed = 200 * variant
    image = _concrete_intensity(size, 23 + seed)
    _draw_line(image, _random_walk(size, 3 + seed, (0, size // 2), vertical=False), 2, 0.02)
    _draw_line(image, _random_walk(size, 7 + seed, (0, size // 3), vertical=False), 0, 0.08)
    _draw_line(image, _random_walk(size, 9 + seed, (0, 2 * size // 3), vertical=False), 0, 0.1)
    return image


CRACK_VARIANTS = ("crack_b", "crack_c", "crack_d", "crack_e")
"""Textures of further cracks (each its own crack, as on a real site): ``crack`` and these."""


def corrosion_image(size: int) -> FloatImage:
    """Corroded concrete: pitted paste with exposed aggregate."""
    paste = 0.2 + 0.5 * fbm(size, 31, (32, 16, 8, 4, 2))
    aggregate = fbm(size, 37, (16, 8)) > 0.62
    paste[aggregate] = 0.75 + 0.2 * fbm(size, 41, (8, 4))[aggregate]
    pits = _pixel_hash(size, 43) > 0.96
    paste[pits] = 0.05
    return paste


def leakage_image(size: int) -> FloatImage:
    """Wet streaks running down a wall with pale mineral deposits."""
    base = 0.45 + 0.25 * fbm(size, 53)
    streak_strength = fbm(size, 59, (16, 8, 4))[0]
    rows = np.arange(size, dtype=np.float64)[:, None] / size
    wet = (streak_strength[None, :] > 0.55) & (rows < 0.25 + 0.75 * streak_strength[None, :])
    base[wet] = base[wet] * 0.35
    deposit = wet & (fbm(size, 61, (8, 4, 2)) > 0.8)
    base[deposit] = 0.95
    return base


def roots_image(size: int) -> FloatImage:
    """A mat of fibrous roots over dark soil."""
    image = 0.1 + 0.15 * fbm(size, 71, (16, 8, 4))
    for strand in range(14):
        offsets = _random_walk(size, 100 + strand, (0, (strand * 37) % size), vertical=False)
        _draw_line(image, offsets, 1 if strand % 3 == 0 else 0, 0.7 + 0.02 * (strand % 10))
    return image


def scale_image(size: int) -> FloatImage:
    """Hard, crusty mineral scale."""
    crust = fbm(size, 83, (32, 8, 4, 2))
    return 0.3 + 0.7 * crust


def sediment_image(size: int) -> FloatImage:
    """Silt and grit on the invert."""
    mud = 0.25 + 0.55 * fbm(size, 89, (64, 16, 4))
    grit = _pixel_hash(size, 97) > 0.9
    mud[grit] = 0.9
    return mud


def seepage_image(size: int) -> FloatImage:
    """A damp patch on a tunnel wall, darkest at its centre."""
    base = _concrete_intensity(size, 101)
    coords = (np.arange(size, dtype=np.float64) - size / 2.0) / (size / 2.0)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    distance = np.sqrt(xx * xx + yy * yy) + 0.35 * fbm(size, 103, (32, 16, 8))
    damp = distance < 0.95
    base[damp] = base[damp] * (0.3 + 0.5 * np.clip(distance[damp], 0.0, 1.0))
    return base


_CONCRETE_STOPS: tuple[ColourStop, ...] = ((0.0, (40, 40, 38)), (1.0, (196, 192, 184)))

_TEXTURE_SPECS: tuple[tuple[str, Callable[[int], FloatImage], tuple[ColourStop, ...]], ...] = (
    ("concrete", concrete_image, _CONCRETE_STOPS),
    ("crack", crack_image, _CONCRETE_STOPS),
    *((name, functools.partial(crack_image, variant=i + 1), _CONCRETE_STOPS)
      for i, name in enumerate(CRACK_VARIANTS)),
    (
        "corrosion",
        corrosion_image,
        ((0.0, (45, 32, 24)), (0.5, (140, 118, 92)), (1.0, (214, 206, 188))),
    ),
    (
        "leakage",
        leakage_image,
        ((0.0, (22, 26, 28)), (0.6, (150, 150, 146)), (1.0, (238, 236, 226))),
    ),
    ("roots", roots_image, ((0.0, (24, 18, 12)), (0.6, (128, 92, 56)), (1.0, (196, 160, 112)))),
    ("scale", scale_image, ((0.0, (120, 112, 88)), (1.0, (236, 230, 208)))),
    (
        "sediment",
        sediment_image,
        ((0.0, (38, 30, 22)), (0.8, (112, 94, 70)), (1.0, (180, 170, 150))),
    ),
    ("seepage", seepage_image, _CONCRETE_STOPS),
)


def all_textures(size_px: int = TEXTURE_SIZE_PX) -> tuple[Texture, ...]:
    """Every texture the worlds reference, rendered at size x size pixels."""
    return tuple(
        Texture(name, indexed_png(_to_indices(render(size_px)), _palette(stops)))
        for name, render, stops in _TEXTURE_SPECS
    )


def texture_path(name: str) -> str:
    """Path of a texture relative to the world files, as written in <albedo_map>."""
    return f"textures/{name}.png"
