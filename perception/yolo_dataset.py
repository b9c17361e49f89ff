"""YOLO-format datasets: read and check them, and import outside ones under CJJ 181 codes.

Layout (the one Ultralytics trains from)::

    data.yaml              path: <root>, train: images/train, val: images/val,
                           test: images/test (optional), names: [PL, SL, ...] or {0: PL, ...}
    images/<split>/*.jpg   the images
    labels/<split>/*.txt   one line per object: ``class cx cy w h``, normalised to 0..1
                           (or ``class x1 y1 x2 y2 ...``, a polygon, whose bounding box is used)

A split is a folder of images (searched recursively), a ``.txt`` file listing image paths,
or a list of either. Each image's label file is found by replacing the last ``/images/`` in
its path with ``/labels/`` and its suffix with ``.txt``; an image without one shows no object.

Differences from Ultralytics: a relative ``path`` is taken relative to the yaml file's folder
(Ultralytics takes it relative to its settings' ``datasets_dir``); ``import_dataset`` writes
an absolute ``path`` so the result reads the same in both.
"""

from __future__ import annotations

import math
import os
import shutil
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from perception.codes import ALL_CODES
from perception.errors import DatasetError

IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}
)
SPLITS = ("train", "val", "test")

CorruptImageCallback = Callable[[Path, str], None]
"""Called with an unreadable image's path and the reason, instead of raising."""


@dataclass(frozen=True)
class DatasetConfig:
    """A parsed ``data.yaml``: root folder, the sources of each split, class names."""

    data_yaml: Path
    root: Path
    splits: dict[str, tuple[Path, ...]]  # split -> image folders or list files (absolute)
    names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class LabelledImage:
    """One image and its ground-truth boxes in pixels."""

    path: Path
    size_hw: tuple[int, int]
    boxes_xyxy_px: NDArray[np.float64]  # (N, 4) x_min, y_min, x_max, y_max
    codes: tuple[str, ...]  # class name of each box


@dataclass(frozen=True)
class LabelRow:
    """One parsed label line: class index, normalised box, and the line's coordinate text."""

    class_id: int
    box_cxcywh: tuple[float, float, float, float]  # normalised 0..1
    coordinates: str  # the numbers after the class index, as written


@dataclass
class ImportReport:
    """What ``import_dataset`` copied, renamed and dropped."""

    destination: Path
    names: tuple[str, ...]  # the new dataset's classes (CJJ codes)
    images: dict[str, int] = field(default_factory=dict)  # per split
    images_without_boxes: dict[str, int] = field(default_factory=dict)  # per split, after mapping
    boxes_kept: dict[str, int] = field(default_factory=dict)  # per CJJ code
    boxes_dropped: dict[str, int] = field(default_factory=dict)  # per unmapped source class


def read_data_yaml(data_yaml: Path) -> DatasetConfig:
    """Parse and check ``data.yaml``; raises DatasetError naming the file and the problem."""
    data_yaml = Path(data_yaml)
    if data_yaml.is_dir():
        data_yaml = data_yaml / "data.yaml"
    try:
        content = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except OSError as err:
        raise DatasetError(f"{data_yaml}: cannot read: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise DatasetError(f"{data_yaml}: not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(content, dict):
        raise DatasetError(f"{data_yaml}: expected a mapping with path, train, val and names")
    names = _names(data_yaml, content.get("names"))
    if "nc" in content and content["nc"] != len(names):
        raise DatasetError(f"{data_yaml}: nc is {content['nc']} but names lists {len(names)}")
    root = Path(str(content.get("path") or ".")).expanduser()
    if not root.is_absolute():
        root = (data_yaml.parent / root).resolve()
    splits: dict[str, tuple[Path, ...]] = {}
    for split in SPLITS:
        value = content.get(split)
        if value is None or value == "":
            continue
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, str) for e in entries):
            raise DatasetError(f"{data_yaml}: '{split}' must be a path or a list of paths")
        splits[split] = tuple(
            p if p.is_absolute() else root / p for p in (Path(e).expanduser() for e in entries)
        )
    if not splits:  # a test-only set is fine for benchmarks; training checks 'train' itself
        raise DatasetError(f"{data_yaml}: names no split ({', '.join(SPLITS)})")
    return DatasetConfig(data_yaml, root, splits, names)


def image_files(config: DatasetConfig, split: str) -> list[Path]:
    """The images of a split, sorted; raises DatasetError if the split or a source is missing."""
    if split not in config.splits:
        known = ", ".join(config.splits)
        raise DatasetError(f"{config.data_yaml}: no '{split}' split (it has {known})")
    files: list[Path] = []
    for source in config.splits[split]:
        if source.is_dir():
            files.extend(
                p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        elif source.is_file() and source.suffix == ".txt":
            for line in source.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    listed = Path(line)
                    files.append(listed if listed.is_absolute() else source.parent / listed)
        else:
            raise DatasetError(f"{config.data_yaml}: '{split}' source not found: {source}")
    return sorted(set(files))


def label_path(image_path: Path) -> Path:
    """The label file of an image: last ``/images/`` -> ``/labels/``, suffix -> ``.txt``."""
    text = str(image_path)
    marker = f"{os.sep}images{os.sep}"
    if marker in text:
        head, tail = text.rsplit(marker, 1)
        text = f"{head}{os.sep}labels{os.sep}{tail}"
    return Path(text).with_suffix(".txt")


def read_label_file(path: Path, n_classes: int) -> list[LabelRow]:
    """Parse one label file; a malformed line raises DatasetError naming ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read labels: {err}") from err
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if tokens:
            rows.append(_parse_label_line(tokens, n_classes, f"{path}:{number}"))
    return rows


def load_split(
    data_yaml: Path, split: str, on_corrupt_image: CorruptImageCallback | None = None
) -> list[LabelledImage]:
    """Every image of a split with its boxes in pixels.

    Image sizes come from the file headers (PNG, JPEG with its EXIF orientation, BMP), or from
    decoding for other formats. An image whose size cannot be read raises DatasetError, or,
    with ``on_corrupt_image``, is reported to it and left out. A malformed label line always
    raises DatasetError naming ``file:line``.
    """
    config = read_data_yaml(data_yaml)
    images = []
    for image_path in image_files(config, split):
        rows = read_label_file(label_path(image_path), len(config.names))
        try:
            h, w = image_size_hw(image_path)
        except DatasetError as err:
            if on_corrupt_image is None:
                raise
            on_corrupt_image(image_path, str(err))
            continue
        boxes = np.array([r.box_cxcywh for r in rows], dtype=np.float64).reshape(-1, 4)
        half = boxes[:, 2:] / 2.0
        xyxy = np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1) * [w, h, w, h]
        codes = tuple(config.names[r.class_id] for r in rows)
        images.append(LabelledImage(image_path, (h, w), xyxy, codes))
    return images


def image_size_hw(path: Path) -> tuple[int, int]:
    """(height, width) as displayed, from the header; DatasetError if unreadable."""
    try:
        with path.open("rb") as f:
            head = f.read(32)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
                width, height = struct.unpack(">II", head[16:24])
                return _checked(path, height, width)
            if head.startswith(b"BM") and len(head) >= 26:
                width, height = struct.unpack("<ii", head[18:26])
                return _checked(path, abs(height), width)
            if head.startswith(b"\xff\xd8"):
                f.seek(2)
                return _jpeg_size_hw(path, f)
    except OSError as err:
        raise DatasetError(f"{path}: cannot read image: {err.strerror or err}") from err
    except struct.error as err:
        raise DatasetError(f"{path}: truncated image header") from err
    return _decoded_size_hw(path)


def import_dataset(
    src_data_yaml: Path,
    dst_dir: Path,
    class_map: Mapping[str, str],
    *,
    link: bool = False,
) -> ImportReport:
    """Copy (or symlink, with ``link``) a YOLO dataset into ``dst_dir`` with CJJ class names.

    ``class_map`` maps source class names to CJJ 181 codes (several may map to one code);
    boxes of unmapped classes are dropped and counted, their images kept (as background where
    nothing is left). Label lines keep their coordinates as written (polygons stay polygons).
    ``dst_dir`` must be new or empty. Raises DatasetError for an unknown source class in the
    map, a target that is not a CJJ code, or a malformed source label line.
    """
    config = read_data_yaml(src_data_yaml)
    unknown = sorted(set(class_map) - set(config.names))
    if unknown:
        raise DatasetError(
            f"{config.data_yaml}: class_map names classes the dataset lacks: {', '.join(unknown)}"
            f" (it has {', '.join(config.names)})"
        )
    not_cjj = sorted({code for code in class_map.values() if code not in ALL_CODES})
    if not_cjj:
        raise DatasetError(f"class_map targets are not CJJ 181 codes: {', '.join(not_cjj)}")
    dst_dir = Path(dst_dir).resolve()
    if dst_dir.exists() and any(dst_dir.iterdir()):
        raise DatasetError(f"{dst_dir}: destination exists and is not empty")
    names = tuple(code for code in ALL_CODES if code in set(class_map.values()))
    new_index = {source: names.index(code) for source, code in class_map.items()}
    report = ImportReport(destination=dst_dir, names=names)
    for split in config.splits:
        images_dir, labels_dir = dst_dir / "images" / split, dst_dir / "labels" / split
        images_dir.mkdir(parents=True, exist_ok=True)
        labels_dir.mkdir(parents=True, exist_ok=True)
        taken: set[str] = set()
        report.images[split] = report.images_without_boxes[split] = 0
        for source_image in image_files(config, split):
            rows = read_label_file(label_path(source_image), len(config.names))
            name = _unique_name(source_image.name, taken)
            target = images_dir / name
            if link:
                target.symlink_to(source_image.resolve())
            else:
                shutil.copy2(source_image, target)
            lines = []
            for row in rows:
                source_name = config.names[row.class_id]
                if source_name in new_index:
                    lines.append(f"{new_index[source_name]} {row.coordinates}\n")
                    code = class_map[source_name]
                    report.boxes_kept[code] = report.boxes_kept.get(code, 0) + 1
                else:
                    report.boxes_dropped[source_name] = report.boxes_dropped.get(source_name, 0) + 1
            (labels_dir / Path(name).with_suffix(".txt")).write_text("".join(lines))
            report.images[split] += 1
            report.images_without_boxes[split] += not lines
    data: dict[str, Any] = {"path": str(dst_dir)}
    data.update({split: f"images/{split}" for split in config.splits})
    data["names"] = dict(enumerate(names))
    (dst_dir / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return report


def _names(data_yaml: Path, value: object) -> tuple[str, ...]:
    """``names`` as a list, or a dict whose keys are 0..n-1."""
    if isinstance(value, list) and value:
        return tuple(str(v) for v in value)
    if isinstance(value, dict) and value:
        keys = sorted(value)
        if keys != list(range(len(keys))):
            raise DatasetError(f"{data_yaml}: names keys must be 0..{len(keys) - 1}, got {keys}")
        return tuple(str(value[k]) for k in keys)
    raise DatasetError(f"{data_yaml}: 'names' must be a non-empty list or dict of class names")


def _parse_label_line(tokens: list[str], n_classes: int, where: str) -> LabelRow:
    """One ``class cx cy w h`` (or polygon) line; DatasetError naming ``where`` otherwise."""
    if len(tokens) != 5 and (len(tokens) < 7 or len(tokens) % 2 == 0):
        raise DatasetError(
            f"{where}: expected 'class cx cy w h' or a polygon, got {len(tokens)} fields"
        )
    try:
        class_value = float(tokens[0])
        numbers = [float(t) for t in tokens[1:]]
    except ValueError as err:
        raise DatasetError(f"{where}: not a number: {err}") from err
    if not class_value.is_integer() or not 0 <= class_value < n_classes:
        raise DatasetError(f"{where}: class {tokens[0]} is not one of 0..{n_classes - 1}")
    if not all(math.isfinite(v) and -1e-6 <= v <= 1.0 + 1e-6 for v in numbers):
        raise DatasetError(f"{where}: coordinates must be normalised to 0..1")
    if len(numbers) == 4:
        cx, cy, w, h = numbers
        if w <= 0.0 or h <= 0.0:
            raise DatasetError(f"{where}: box width and height must be positive")
    else:
        xs, ys = numbers[0::2], numbers[1::2]
        cx, cy = (min(xs) + max(xs)) / 2.0, (min(ys) + max(ys)) / 2.0
        w, h = max(xs) - min(xs), max(ys) - min(ys)
    return LabelRow(int(class_value), (cx, cy, w, h), " ".join(tokens[1:]))


def _jpeg_size_hw(path: Path, f: Any) -> tuple[int, int]:
    """Walk the JPEG markers to the frame header; swap sides for a rotated EXIF orientation."""
    orientation = 1
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise DatasetError(f"{path}: corrupt JPEG (no frame header)")
        while marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + f.read(1)
        kind = marker[1]
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
            continue  # markers without a length
        (length,) = struct.unpack(">H", f.read(2))
        if kind == 0xE1:
            orientation = _exif_orientation(f.read(length - 2)) or orientation
            continue
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            _, height, width = struct.unpack(">BHH", f.read(5))
            if orientation in (5, 6, 7, 8):
                height, width = width, height
            return _checked(path, height, width)
        f.seek(length - 2, 1)


def _exif_orientation(app1: bytes) -> int | None:
    """The EXIF orientation tag (1..8) of an APP1 segment, or None."""
    if not app1.startswith(b"Exif\x00\x00") or len(app1) < 14:
        return None
    tiff = app1[6:]
    endian = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if endian is None:
        return None
    (ifd,) = struct.unpack(f"{endian}I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(f"{endian}H", tiff[ifd : ifd + 2])
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            return None
        tag, _, _, value = struct.unpack(f"{endian}HHIH", entry[:10])
        if tag == 0x0112:
            return int(value)
    return None


def _decoded_size_hw(path: Path) -> tuple[int, int]:
    """Size by decoding (formats whose header is not parsed here)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    return _checked(path, int(image.shape[0]), int(image.shape[1]))


def _checked(path: Path, height: int, width: int) -> tuple[int, int]:
    if height <= 0 or width <= 0:
        raise DatasetError(f"{path}: image header gives size {width}x{height}")
    return height, width


def _unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name`` with a numeric prefix if another image of the split has it."""
    candidate, number = name, 1
    while candidate in taken:
        candidate, number = f"{number}_{name}", number + 1
    taken.add(candidate)
    return candidate
