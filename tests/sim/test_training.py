"""Training a detector on rendered data, offline, and loading what it exported."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perception.detectors import load_detector
from perception.errors import DatasetError, ModelLoadError
from perception.synthetic.render import DETECTOR_CLASSES, RenderSettings, write_dataset
from perception.training import TrainSettings, train_detector

pytestmark = [
    pytest.mark.slow,
    # torch's legacy ONNX exporter and tracing warn about their own deprecations
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*TracerWarning.*"),
    pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean"),
]


def test_train_export_and_load_a_detector(tmp_path: Path) -> None:
    data_yaml = write_dataset(tmp_path / "data", {"train": 1, "val": 1},
                              settings=RenderSettings(frames_per_look=4))
    lines: list[str] = []
    result = train_detector(
        data_yaml, tmp_path / "run",
        TrainSettings(epochs=1, image_size_px=64, export_size_px=96, batch=4, workers=0),
        command="crawler train detector (test)", log=lines.append)
    assert result.weights_pt.is_file() and result.model_onnx.is_file()
    assert any(line.startswith("epoch 1/1") for line in lines)  # progress per epoch
    card = yaml.safe_load(result.model_card.read_text())
    assert card["command"] == "crawler train detector (test)"
    assert card["dataset"]["rendered"]["seeds"]["train"] == [100000, 100000]
    assert card["settings"]["epochs"] == 1
    detector = load_detector(f"onnx:{result.model_onnx}")
    assert detector.classes == DETECTOR_CLASSES


def test_bad_inputs_fail_before_training(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset file not found"):
        train_detector(tmp_path / "absent.yaml", tmp_path / "run")
    bad = tmp_path / "data.yaml"
    bad.write_text("names: [PL]\n")
    with pytest.raises(DatasetError, match="needs 'train' and 'names'"):
        train_detector(bad, tmp_path / "run")
    bad.write_text("train: images/train\nnames: [PL]\n")
    with pytest.raises(ModelLoadError, match="initial weights not found"):
        train_detector(bad, tmp_path / "run", init_weights=tmp_path / "none.pt")


def test_widening_the_classes_keeps_what_the_model_knows(tmp_path: Path) -> None:
    import torch
    from ultralytics.nn.tasks import load_checkpoint

    from perception.detectors import SHIPPED_MODEL
    from perception.training import TrainingError, widen_classes

    shipped_pt = SHIPPED_MODEL.with_suffix(".pt")
    old, _ = load_checkpoint(str(shipped_pt))
    names = (*old.names.values(), "XX")
    widened_pt = widen_classes(shipped_pt, names, tmp_path / "widened.pt")
    new, _ = load_checkpoint(str(widened_pt))
    assert tuple(new.names.values()) == names
    image = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        before, after = old(image)[0], new(image)[0]
    # Boxes and the old classes' scores unchanged; one more score row for the new class
    assert after.shape[1] == before.shape[1] + 1
    assert torch.allclose(after[:, : before.shape[1]], before, atol=1e-5)
    assert widen_classes(shipped_pt, tuple(old.names.values()), tmp_path / "same.pt") \
        == shipped_pt
    with pytest.raises(TrainingError, match="only appending works"):
        widen_classes(shipped_pt, ("XX", *old.names.values()), tmp_path / "bad.pt")
