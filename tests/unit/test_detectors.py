"""Every detector plugin loads through its spec string and reports detections the same way.

The Ultralytics and ONNX tests share one tiny, untrained YOLO11n built from its yaml (no
download), with CJJ codes as class names and its class-0 bias raised so that it does report
boxes; it is saved as ``.pt`` and exported to a 64 px ONNX model once per module.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.detectors import (
    Detection,
    DetectorOptions,
    StagedDetector,
    load_detector,
)
from perception.detectors.base import ImageBGR
from perception.detectors.letterbox import letterbox, nms, to_blob, unletterbox_boxes
from perception.errors import DetectorSpecError, ImageError, ModelLoadError

pytestmark = [
    # torch's legacy ONNX exporter, which Ultralytics calls, announces its own deprecation.
    pytest.mark.filterwarnings(
        "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"
    ),
    pytest.mark.filterwarnings(
        "ignore:The feature will be removed. Please remove usage of this function"
        ":DeprecationWarning"
    ),
    # torch.jit's TracerWarning, raised while the export traces the detect head.
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean might cause"),
]

NAMES = ("PL", "SL", "FS")
EXPORT_SIZE_PX = 64
OPTIONS = DetectorOptions(confidence_threshold=0.25, iou_threshold=0.5, image_size_px=64)


class TinyDetector:
    """A researcher's detector: any class with ``classes`` and ``detect``."""

    def __init__(self, options: DetectorOptions) -> None:
        self.options = options

    @property
    def classes(self) -> tuple[str, ...]:
        """Reports cracks only."""
        return ("PL",)

    def detect(self, image_bgr: ImageBGR, stamp_ns: int) -> list[Detection]:
        """One crack over the whole image."""
        h, w = image_bgr.shape[:2]
        return [Detection("PL", (0.0, 0.0, float(w), float(h)), 0.5)]


class NotADetector:
    """Lacks ``detect``."""


@pytest.fixture(scope="module")
def yolo_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.pt, model.onnx): an untrained 3-class YOLO11n that fires on class 0 (PL)."""
    yaml = pytest.importorskip("yaml")
    ultralytics = pytest.importorskip("ultralytics")
    from ultralytics.utils import ROOT

    folder = tmp_path_factory.mktemp("yolo")
    config = yaml.safe_load((ROOT / "cfg/models/11/yolo11.yaml").read_text())
    config.update(nc=len(NAMES), scale="n")
    config_path = folder / "yolo11n-cjj.yaml"
    config_path.write_text(yaml.safe_dump(config))
    model = ultralytics.YOLO(str(config_path))
    model.model.names = dict(enumerate(NAMES))
    head = model.model.model[-1]
    for branch in head.cv3:  # class logits: PL likely everywhere (0.95)
        branch[-1].bias.data[0] = 3.0
    for branch in head.cv2:  # box sides 1 stride from each anchor: IoU < 0.5, NMS keeps all
        branch[-1].weight.data.zero_()
        branch[-1].bias.data.zero_()
        branch[-1].bias.data[1 :: head.reg_max] = 10.0
    pt_path = folder / "cjj.pt"
    model.save(str(pt_path))
    onnx_path = Path(
        ultralytics.YOLO(str(pt_path)).export(format="onnx", imgsz=EXPORT_SIZE_PX, verbose=False)
    )
    return pt_path, onnx_path


@pytest.fixture(scope="module")
def yolo_seg_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.pt, model.onnx): an untrained 2-class YOLO11n-seg whose masks fill its boxes."""
    yaml = pytest.importorskip("yaml")
    ultralytics = pytest.importorskip("ultralytics")
    from ultralytics.utils import ROOT

    folder = tmp_path_factory.mktemp("yolo_seg")
    config = yaml.safe_load((ROOT / "cfg/models/11/yolo11-seg.yaml").read_text())
    config.update(nc=2, scale="n")
    config_path = folder / "yolo11n-seg-cjj.yaml"
    config_path.write_text(yaml.safe_dump(config))
    model = ultralytics.YOLO(str(config_path))
    model.model.names = {0: "SL", 1: "FS"}
    head = model.model.model[-1]
    for branch in head.cv3:
        branch[-1].bias.data[0] = 3.0
    for branch in head.cv2:
        branch[-1].weight.data.zero_()
        branch[-1].bias.data.zero_()
        branch[-1].bias.data[1 :: head.reg_max] = 10.0
    for branch in head.cv4:  # mask coefficients: all weight on prototype 0
        branch[-1].weight.data.zero_()
        branch[-1].bias.data.zero_()
        branch[-1].bias.data[0] = 50.0
    head.proto.cv3.bn.bias.data[0] = 1.0  # prototype 0: about 0.73 everywhere
    pt_path = folder / "seg.pt"
    model.save(str(pt_path))
    onnx_path = Path(
        ultralytics.YOLO(str(pt_path)).export(format="onnx", imgsz=EXPORT_SIZE_PX, verbose=False)
    )
    return pt_path, onnx_path


def _image(seed: int = 0, shape: tuple[int, int] = (96, 128)) -> ImageBGR:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)


def _check_detections(detections: list[Detection], shape_hw: tuple[int, int]) -> None:
    assert detections
    h, w = shape_hw
    for d in detections:
        assert d.code in NAMES
        x0, y0, x1, y1 = d.box_xyxy_px
        assert 0.0 <= x0 <= x1 <= w and 0.0 <= y0 <= y1 <= h
        assert OPTIONS.confidence_threshold <= d.confidence <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ultralytics", "onnx"])
def test_yolo_backends_load_from_spec_and_detect(kind: str, yolo_models: tuple[Path, Path]) -> None:
    """``ultralytics:x.pt`` and ``onnx:x.onnx`` load, name CJJ classes and time each stage."""
    path = yolo_models[0] if kind == "ultralytics" else yolo_models[1]
    detector = load_detector(f"{kind}:{path}", OPTIONS)
    assert detector.classes == NAMES
    image = _image()
    detections = detector.detect(image, stamp_ns=1)
    _check_detections(detections, image.shape[:2])
    assert {d.code for d in detections} == {"PL"}
    assert isinstance(detector, StagedDetector)
    assert detector.times.images == 1
    assert detector.times.infer_s > 0.0


@pytest.mark.slow
def test_onnx_agrees_with_ultralytics(yolo_models: tuple[Path, Path]) -> None:
    """The exported model, decoded here, finds the boxes Ultralytics finds from the .pt."""
    reference = load_detector(f"ultralytics:{yolo_models[0]}", OPTIONS)
    exported = load_detector(f"onnx:{yolo_models[1]}", OPTIONS)
    image = _image(seed=3, shape=(96, 128))
    expected = sorted(reference.detect(image, stamp_ns=0), key=lambda d: d.box_xyxy_px)
    got = sorted(exported.detect(image, stamp_ns=0), key=lambda d: d.box_xyxy_px)
    assert len(got) == len(expected) == 8 * 8 + 4 * 4 + 2 * 2  # one box per anchor
    assert {d.code for d in got} == {"PL"}
    np.testing.assert_allclose(
        [d.confidence for d in got], [d.confidence for d in expected], atol=1e-3
    )
    np.testing.assert_allclose(
        [d.box_xyxy_px for d in got], [d.box_xyxy_px for d in expected], atol=0.05
    )


@pytest.mark.slow
def test_onnx_exported_with_nms_agrees(yolo_models: tuple[Path, Path], tmp_path: Path) -> None:
    """A model exported with ``nms=True`` (rows of corners, score, class) decodes the same."""
    ultralytics = pytest.importorskip("ultralytics")
    pt_copy = tmp_path / "with_nms.pt"
    pt_copy.write_bytes(yolo_models[0].read_bytes())
    exported_path = ultralytics.YOLO(str(pt_copy)).export(
        format="onnx", imgsz=EXPORT_SIZE_PX, nms=True, verbose=False
    )
    image = _image(seed=5, shape=(96, 128))
    expected = load_detector(f"ultralytics:{yolo_models[0]}", OPTIONS).detect(image, stamp_ns=0)
    got = load_detector(f"onnx:{exported_path}", OPTIONS).detect(image, stamp_ns=0)
    expected.sort(key=lambda d: d.box_xyxy_px)
    got.sort(key=lambda d: d.box_xyxy_px)
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(
        [d.box_xyxy_px for d in got], [d.box_xyxy_px for d in expected], atol=0.05
    )
    np.testing.assert_allclose(
        [d.confidence for d in got], [d.confidence for d in expected], atol=1e-3
    )


@pytest.mark.slow
def test_segment_masks_agree_between_backends(yolo_seg_models: tuple[Path, Path]) -> None:
    """A segment model's masks, decoded here from the ONNX outputs, equal Ultralytics' own."""
    reference = load_detector(f"ultralytics:{yolo_seg_models[0]}", OPTIONS)
    exported = load_detector(f"onnx:{yolo_seg_models[1]}", OPTIONS)
    image = _image(seed=4, shape=(96, 128))
    expected = sorted(reference.detect(image, stamp_ns=0), key=lambda d: d.box_xyxy_px)
    got = sorted(exported.detect(image, stamp_ns=0), key=lambda d: d.box_xyxy_px)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        assert a.mask is not None and b.mask is not None
        assert a.mask.shape == b.mask.shape == (96, 128)
        assert (a.mask != b.mask).sum() <= 0.01 * max(int(b.mask.sum()), 100)


@pytest.mark.slow
def test_confidence_threshold_applies_after_loading(yolo_models: tuple[Path, Path]) -> None:
    """Raising the threshold on a loaded detector drops the weaker boxes."""
    detector = load_detector(f"onnx:{yolo_models[1]}", OPTIONS)
    assert isinstance(detector, StagedDetector)
    detector.confidence_threshold = 0.999
    assert detector.detect(_image(), stamp_ns=0) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ultralytics", "onnx"])
def test_yolo_backends_reject_a_bad_image(kind: str, yolo_models: tuple[Path, Path]) -> None:
    """A float or grey image is an ImageError, before the model sees it."""
    path = yolo_models[0] if kind == "ultralytics" else yolo_models[1]
    detector = load_detector(f"{kind}:{path}", OPTIONS)
    with pytest.raises(ImageError, match="uint8"):
        detector.detect(np.zeros((32, 32, 3), dtype=np.float32), stamp_ns=0)
    with pytest.raises(ImageError, match=r"\(32, 32\)"):
        detector.detect(np.zeros((32, 32), dtype=np.uint8), stamp_ns=0)


@pytest.mark.parametrize(("kind", "suffix"), [("ultralytics", ".pt"), ("onnx", ".onnx")])
def test_missing_model_file_names_the_path(kind: str, suffix: str, tmp_path: Path) -> None:
    """A missing model is a ModelLoadError with the path in its message."""
    path = tmp_path / f"absent{suffix}"
    with pytest.raises(ModelLoadError, match=str(path)):
        load_detector(f"{kind}:{path}")


def test_corrupt_onnx_names_the_file(tmp_path: Path) -> None:
    """Random bytes or an empty file are a one-line ModelLoadError naming the file."""
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelLoadError, match=str(corrupt)) as info:
        load_detector(f"onnx:{corrupt}")
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=f"{empty}: empty file"):
        load_detector(f"onnx:{empty}")


@pytest.mark.slow
def test_corrupt_pt_names_the_file(tmp_path: Path) -> None:
    """A .pt that is not a checkpoint is a one-line ModelLoadError naming the file."""
    pytest.importorskip("ultralytics")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ModelLoadError, match=str(corrupt)) as info:
        load_detector(f"ultralytics:{corrupt}")
    assert "\n" not in str(info.value)


def test_onnx_model_without_yolo_metadata_is_refused(tmp_path: Path) -> None:
    """A valid ONNX graph that is not a YOLO export says what is missing."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    path = tmp_path / "identity.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match=f"{path}: no class names"):
        load_detector(f"onnx:{path}")


def test_python_plugin_loads_a_class_of_this_module() -> None:
    """``python:module:Class`` builds the class with the options and checks the protocol."""
    options = DetectorOptions(confidence_threshold=0.4)
    detector = load_detector(f"python:{__name__}:TinyDetector", options)
    assert isinstance(detector, TinyDetector)
    assert detector.options is options
    assert detector.detect(_image(), stamp_ns=0)[0].code == "PL"
    with pytest.raises(DetectorSpecError, match="lacks 'classes'"):
        load_detector(f"python:{__name__}:NotADetector")


def test_classical_plugin_loads_and_rejects_bad_images() -> None:
    """``classical`` needs no file; a wrongly typed image is an ImageError."""
    detector = load_detector("classical")
    assert "PL" in detector.classes
    assert isinstance(detector.detect(_image(shape=(120, 160)), stamp_ns=0), list)
    with pytest.raises(ImageError):
        detector.detect(np.zeros((10, 10, 4), dtype=np.uint8), stamp_ns=0)
    with pytest.raises(ImageError, match="not a numpy array"):
        detector.detect([[0, 0, 0]], stamp_ns=0)  # type: ignore[arg-type]


class FixedDetector:
    """Reports the detections it was made with, whatever the image."""

    def __init__(self, *detections: Detection) -> None:
        self.detections = list(detections)

    @property
    def classes(self) -> tuple[str, ...]:
        """The codes of its detections."""
        return tuple(dict.fromkeys(d.code for d in self.detections))

    def detect(self, image_bgr: ImageBGR, stamp_ns: int) -> list[Detection]:
        """The fixed detections."""
        return list(self.detections)


def test_a_union_pools_its_members_and_merges_same_class_overlaps() -> None:
    """Two detectors on one image: the more confident of two overlapping cracks is kept; a
    crack beside a seepage box it overlaps, and a crack elsewhere, stay."""
    from perception.detectors.union import UnionDetector

    crack, faint_crack = (Detection("PL", (10.0, 10.0, 50.0, 200.0), 0.7),
                          Detection("PL", (12.0, 12.0, 52.0, 198.0), 0.4))
    seepage = Detection("SL", (10.0, 10.0, 50.0, 200.0), 0.5)
    other_crack = Detection("PL", (300.0, 10.0, 320.0, 200.0), 0.3)
    union = UnionDetector([FixedDetector(faint_crack, seepage), FixedDetector(crack, other_crack)])
    assert union.classes == ("PL", "SL")
    assert union.detect(_image(), stamp_ns=0) == [crack, seepage, other_crack]
    assert UnionDetector([FixedDetector(), FixedDetector()]).detect(_image(), 0) == []
    with pytest.raises(DetectorSpecError, match="two detectors or more"):
        UnionDetector([FixedDetector(crack)])


def test_specs_joined_by_plus_load_a_union() -> None:
    """``A+B`` loads both (each part checked, its error naming it); one spec loads itself."""
    from perception.detectors import spec_parts
    from perception.detectors.classical import ClassicalDetector
    from perception.detectors.union import UnionDetector

    detector = load_detector(f"classical:close_up+python:{__name__}:TinyDetector")
    assert isinstance(detector, UnionDetector)
    first, second = detector.detectors
    assert isinstance(first, ClassicalDetector) and first.params.crack_min_contrast == 0.25
    assert isinstance(second, TinyDetector)
    assert [d.code for d in detector.detect(_image(), stamp_ns=0)] == ["PL"]
    assert [p.kind for p in spec_parts("shipped:tunnel+classical")] == ["shipped", "classical"]
    assert isinstance(load_detector("classical"), ClassicalDetector)
    with pytest.raises(DetectorSpecError, match="'classical:wide'"):
        spec_parts("shipped+classical:wide")
    with pytest.raises(DetectorSpecError, match="empty part"):
        spec_parts("shipped+")


def test_unknown_kind_is_a_spec_error() -> None:
    """A misspelt plugin name lists the known ones."""
    with pytest.raises(DetectorSpecError, match="'onnx'"):
        load_detector("onx:model.onnx")


def test_shipped_models_are_named_by_kind_of_site() -> None:
    """``shipped`` is the pipe model; ``shipped:tunnel`` the tunnel's; others list them."""
    from perception.detectors import SHIPPED_MODELS, parse_spec

    assert parse_spec("shipped").argument == ""
    assert parse_spec("shipped:tunnel").argument == "tunnel"
    assert all(path.is_file() for path in SHIPPED_MODELS.values())
    with pytest.raises(DetectorSpecError, match="'shipped:tunnel'"):
        parse_spec("shipped:sewr")


@pytest.mark.parametrize("shape_hw", [(480, 640), (640, 480), (100, 100), (1080, 1920)])
def test_letterbox_round_trip(shape_hw: tuple[int, int]) -> None:
    """A box placed by the letterbox maps back onto itself; the padding is grey 114."""
    image = np.full((*shape_hw, 3), 200, dtype=np.uint8)
    padded, placement = letterbox(image, (320, 320))
    assert padded.shape == (320, 320, 3)
    h, w = shape_hw
    box = np.array([[0.1 * w, 0.2 * h, 0.7 * w, 0.9 * h]])
    placed = box * placement.gain + [placement.pad_x_px, placement.pad_y_px] * 2
    np.testing.assert_allclose(unletterbox_boxes(placed, placement), box, atol=1e-9)
    if h < w:  # padded above and below
        assert padded[0, 160].tolist() == padded[-1, 160].tolist() == [114] * 3
    elif h > w:  # padded left and right
        assert padded[160, 0].tolist() == padded[160, -1].tolist() == [114] * 3


def test_nms_is_class_aware() -> None:
    """Overlapping boxes suppress each other only within one class."""
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, iou_threshold=0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, classes, iou_threshold=0.5, max_detections=2).tolist() == [0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).size == 0


def test_onnx_names_parsing_accepts_researcher_names() -> None:
    """Names need not be CJJ codes: a dict literal or a list passes through unchanged."""
    from perception.detectors.onnx_detector import _parse_names

    path = Path("m.onnx")
    assert _parse_names(path, "{0: 'crack', 1: 'root'}") == ("crack", "root")
    assert _parse_names(path, "['PL', 'SG']") == ("PL", "SG")
    with pytest.raises(ModelLoadError, match="unreadable class names"):
        _parse_names(path, "{0: 'a', 2: 'b'}")


def _bench_dataset(folder: Path) -> Path:
    """Three noise images labelled PL over the whole frame, one corrupt JPEG; its data.yaml."""
    import cv2
    import yaml

    (folder / "images/test").mkdir(parents=True)
    (folder / "labels/test").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"images/test/{i}.png"), _image(i))
        (folder / f"labels/test/{i}.txt").write_text("0 0.5 0.5 1 1\n")
    (folder / "images/test/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    data = {"train": "images/test", "val": "images/test", "test": "images/test"}
    (folder / "data.yaml").write_text(yaml.safe_dump({**data, "names": ["PL", "SL"]}))
    return folder / "data.yaml"


def test_detect_bench_scores_and_skips_corrupt_images(tmp_path: Path) -> None:
    """The bench runs a spec over a split: a whole-image detector on whole-image labels is
    perfect; a corrupt image is skipped and counted."""
    from benchmarks.detect import run_detect_bench

    lines: list[str] = []
    result = run_detect_bench(
        f"python:{__name__}:TinyDetector",
        _bench_dataset(tmp_path),
        warmup=1,
        progress=lines.append,
    )
    assert result["images"] == 3
    assert result["corrupt_images_skipped"] == 1
    assert result["map50"] == pytest.approx(1.0)
    assert result["map50_95"] == pytest.approx(1.0)
    assert result["per_class_ap50"] == {"PL": 1.0}
    assert (result["precision"], result["recall"]) == (1.0, 1.0)
    assert result["classes_not_in_detector"] == ["SL"]
    assert result["ms_per_image"] > 0.0 and result["images_per_s"] > 0.0
    assert result["cores"] >= 1
    assert any("broken.jpg" in line for line in lines)


@pytest.mark.slow
def test_detect_bench_times_the_stages_of_an_onnx_model(
    tmp_path: Path, yolo_models: tuple[Path, Path]
) -> None:
    """A staged backend also reports per-stage milliseconds."""
    from benchmarks.detect import run_detect_bench

    result = run_detect_bench(f"onnx:{yolo_models[1]}", _bench_dataset(tmp_path), warmup=1)
    assert result["images"] == 3 and result["corrupt_images_skipped"] == 1
    assert set(result["stage_ms"]) == {"preprocess", "infer", "postprocess"}
    assert 0.0 <= result["map50"] <= 1.0
    assert result["classes_not_in_detector"] == []


def test_the_network_input_is_rgb_nchw_in_0_to_1() -> None:
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    blob = to_blob(image)
    assert blob.shape == (1, 3, 48, 64) and blob.dtype == np.float32
    reference = cv2.dnn.blobFromImage(image, scalefactor=1.0 / 255.0, swapRB=True)
    assert np.array_equal(blob, reference)
    assert blob[0, 0, 5, 7] == np.float32(image[5, 7, 2] / 255.0)  # R comes from BGR's last
    half = to_blob(image, np.float16)
    assert half.dtype == np.float16 and float(np.abs(half - blob).max()) < 1e-3
