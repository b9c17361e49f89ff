"""YOLO datasets: reading, checking and importing under CJJ 181 codes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from perception.errors import DatasetError
from perception.yolo_dataset import (
    image_size_hw,
    import_dataset,
    label_path,
    load_split,
    read_data_yaml,
)


def write_image(path: Path, h: int = 60, w: int = 80) -> Path:
    """A small grey image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 128, dtype=np.uint8))
    return path


def write_labels(image: Path, lines: list[str]) -> None:
    """The label file of ``image`` with these lines."""
    path = label_path(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A three-split dataset with a researcher's class names; returns its data.yaml."""
    root = tmp_path / "src"
    a = write_image(root / "images/train/a.jpg")
    b = write_image(root / "images/train/sub/b.png", h=100, w=50)
    c = write_image(root / "images/val/c.png")
    write_image(root / "images/test/d.png")  # no label file: background
    write_labels(a, ["0 0.5 0.5 0.5 0.5", "2 0.25 0.25 0.1 0.2"])
    write_labels(b, ["", "1 0.1 0.1 0.3 0.1 0.2 0.3"])  # blank line, then a polygon
    write_labels(c, ["0 0.5 0.5 1 1"])
    data = {
        "path": ".",
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "names": {0: "crack", 1: "root", 2: "debris"},
    }
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root / "data.yaml"


def test_load_split_gives_boxes_in_pixels(dataset: Path) -> None:
    """Normalised centre/size lines become pixel corner boxes with class names."""
    images = load_split(dataset, "train")
    assert [i.path.name for i in images] == ["a.jpg", "b.png"]
    a, b = images
    assert a.size_hw == (60, 80)
    assert a.codes == ("crack", "debris")
    np.testing.assert_allclose(a.boxes_xyxy_px, [[20, 15, 60, 45], [16, 9, 24, 21]])
    # The polygon (0.1,0.1) (0.3,0.1) (0.2,0.3) on a 50x100 image: its bounding box.
    assert b.size_hw == (100, 50)
    np.testing.assert_allclose(b.boxes_xyxy_px, [[5, 10, 15, 30]])
    (d,) = load_split(dataset, "test")
    assert d.boxes_xyxy_px.shape == (0, 4) and d.codes == ()


def test_names_as_list_and_split_as_list_file(tmp_path: Path) -> None:
    """``names`` may be a list; a split may be a .txt list of images relative to it."""
    image = write_image(tmp_path / "images/x.png")
    write_labels(image, ["1 0.5 0.5 0.2 0.2"])
    (tmp_path / "val.txt").write_text("./images/x.png\n\n")
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "val.txt", "val": ["val.txt"], "names": ["PL", "SL"]})
    )
    config = read_data_yaml(tmp_path)  # a folder means its data.yaml
    assert config.names == ("PL", "SL") and config.root == tmp_path.resolve()
    (loaded,) = load_split(tmp_path / "data.yaml", "val")
    assert loaded.codes == ("SL",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
        ("3 0.5 0.5 0.2 0.2", "class 3 is not one of 0..2"),
        ("0 0.5 0.5 1.2 0.2", "coordinates must be normalised"),
        ("0 0.5 nan 0.2 0.2", "coordinates must be normalised"),
        ("x 0.5 0.5 0.2 0.2", "not a number"),
        ("0 0.5 0.5 0 0.2", "box width and height must be positive"),
    ],
)
def test_corrupt_label_line_names_file_and_line(dataset: Path, line: str, message: str) -> None:
    """A bad line is a DatasetError naming ``file:line``."""
    image = dataset.parent / "images/val/c.png"
    write_labels(image, ["0 0.5 0.5 1 1", line])
    with pytest.raises(DatasetError, match=f"{label_path(image)}:2: {message}"):
        load_split(dataset, "val")


def test_corrupt_image_is_reported_or_raised(dataset: Path) -> None:
    """An unreadable image raises, or goes to the callback and is left out."""
    bad = dataset.parent / "images/val/bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(DatasetError, match=r"bad\.jpg"):
        load_split(dataset, "val")
    corrupt: list[tuple[Path, str]] = []
    images = load_split(dataset, "val", on_corrupt_image=lambda p, why: corrupt.append((p, why)))
    assert [i.path.name for i in images] == ["c.png"]
    assert [p.name for p, _ in corrupt] == ["bad.jpg"]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_image_size_from_header(tmp_path: Path, suffix: str) -> None:
    """Header reading (or decoding) agrees with OpenCV."""
    path = write_image(tmp_path / f"i{suffix}", h=37, w=91)
    assert image_size_hw(path) == (37, 91)


def test_jpeg_exif_rotation_swaps_sides(tmp_path: Path) -> None:
    """A JPEG tagged 'rotate 90' is as tall as it is shown, as OpenCV decodes it."""
    path = write_image(tmp_path / "r.jpg", h=30, w=70)
    data = path.read_bytes()
    # APP1 Exif, little-endian TIFF, one IFD entry: Orientation (0x0112), SHORT, 1, value 6.
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00"
    tiff += b"\x06\x00\x00\x00" + b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    path.write_bytes(data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:])
    decoded = cv2.imread(str(path))
    assert decoded is not None
    assert image_size_hw(path) == decoded.shape[:2] == (70, 30)


def test_data_yaml_errors(tmp_path: Path) -> None:
    """Missing file, missing split, bad names and an absent split folder are named."""
    with pytest.raises(DatasetError, match="cannot read"):
        read_data_yaml(tmp_path / "absent.yaml")
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump({"path": ".", "names": ["PL"]}))
    with pytest.raises(DatasetError, match="names no split"):
        read_data_yaml(path)
    path.write_text(yaml.safe_dump({"test": "a", "names": ["PL"]}))  # a test-only set is fine
    assert list(read_data_yaml(path).splits) == ["test"]
    path.write_text(yaml.safe_dump({"train": "a", "val": "b", "names": {0: "PL", 2: "SL"}}))
    with pytest.raises(DatasetError, match="names keys"):
        read_data_yaml(path)
    path.write_text(yaml.safe_dump({"train": "a", "val": "b", "names": ["PL"], "nc": 2}))
    with pytest.raises(DatasetError, match="nc is 2"):
        read_data_yaml(path)
    path.write_text(yaml.safe_dump({"train": "a", "val": "b", "names": ["PL"]}))
    with pytest.raises(DatasetError, match="source not found"):
        load_split(path, "val")
    with pytest.raises(DatasetError, match="no 'test' split"):
        load_split(path, "test")


def test_import_renames_classes_and_drops_unmapped(dataset: Path, tmp_path: Path) -> None:
    """crack -> PL, root -> SG, debris dropped; counts reported; the result loads back."""
    dst = tmp_path / "cjj"
    report = import_dataset(dataset, dst, {"crack": "PL", "root": "SG"})
    assert report.names == ("PL", "SG")
    assert report.images == {"train": 2, "val": 1, "test": 1}
    assert report.boxes_kept == {"PL": 2, "SG": 1}
    assert report.boxes_dropped == {"debris": 1}
    assert report.images_without_boxes == {"train": 0, "val": 0, "test": 1}
    train = load_split(dst / "data.yaml", "train")
    assert [(i.path.name, i.codes) for i in train] == [("a.jpg", ("PL",)), ("b.png", ("SG",))]
    np.testing.assert_allclose(train[1].boxes_xyxy_px, [[5, 10, 15, 30]])  # polygon kept
    assert (dst / "labels/train/b.txt").read_text() == "1 0.1 0.1 0.3 0.1 0.2 0.3\n"
    assert read_data_yaml(dst / "data.yaml").root == dst.resolve()


def test_import_can_link_and_refuses_bad_maps(dataset: Path, tmp_path: Path) -> None:
    """Symlinked images; unknown source classes, non-CJJ targets, a used folder are errors."""
    dst = tmp_path / "linked"
    import_dataset(dataset, dst, {"crack": "PL"}, link=True)
    assert (dst / "images/val/c.png").is_symlink()
    with pytest.raises(DatasetError, match="lacks: crak"):
        import_dataset(dataset, tmp_path / "x", {"crak": "PL"})
    with pytest.raises(DatasetError, match="not CJJ 181 codes: CRACK"):
        import_dataset(dataset, tmp_path / "y", {"crack": "CRACK"})
    with pytest.raises(DatasetError, match="not empty"):
        import_dataset(dataset, dst, {"crack": "PL"})
