"""Training a defect detector with Ultralytics from a model .yaml, and exporting it to ONNX.

Nothing is downloaded: the network is built from ``perception/models/*.yaml`` (never hub
weights), plotting (which would fetch a font) is off, and Ultralytics is told it is offline.
The result folder holds ``best.pt``, ``best.onnx`` and ``model_card.yaml`` with the exact
command, the dataset's render seeds and the validation figures.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from perception.errors import DatasetError, ModelLoadError, PerceptionError

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL_YAML = MODELS_DIR / "crawler_yolo_p.yaml"


class TrainingError(PerceptionError):
    """Training or export failed; the message names the stage and the file."""


@dataclass(frozen=True)
class TrainSettings:
    """What ``crawler train detector`` passes to Ultralytics."""

    epochs: int = 30
    image_size_px: int = 512
    export_size_px: int = 640
    batch: int = 16
    seed: int = 0
    workers: int = 2
    patience: int = 100
    threads: int = 0  # torch threads; 0: all cores
    fliplr: float = 0.5
    mosaic: float = 1.0
    close_mosaic: int = 5


@dataclass(frozen=True)
class TrainResult:
    """Where the trained and exported model went and how it validated."""

    weights_pt: Path
    model_onnx: Path
    model_card: Path
    metrics: dict[str, float]
    wall_time_s: float


def offline_ultralytics() -> None:
    """Tell Ultralytics there is no network before it is imported (no hub, fonts, checks)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")


def train_detector(data_yaml: Path, out_dir: Path, settings: TrainSettings | None = None,
                   model_yaml: Path = DEFAULT_MODEL_YAML, command: str = "",
                   log: Callable[[str], None] | None = None,
                   init_weights: Path | None = None) -> TrainResult:
    """Train ``model_yaml`` on ``data_yaml`` on the CPU, export ONNX, write a model card.

    ``init_weights``: start from a .pt this project trained (fine-tuning on more data)
    instead of random weights; never hub weights.
    """
    settings = settings or TrainSettings()
    _check_inputs(data_yaml, model_yaml)
    if init_weights is not None and not init_weights.is_file():
        raise ModelLoadError(f"initial weights not found: {init_weights}")
    offline_ultralytics()
    import torch
    from ultralytics.models.yolo.model import YOLO

    torch.set_num_threads(settings.threads or (os.cpu_count() or 1))
    started = time.perf_counter()
    if init_weights is not None:  # the dataset may add classes after the model's own
        init_weights = widen_classes(init_weights, _dataset_names(data_yaml),
                                     out_dir / "init_widened.pt")
    model = YOLO(str(init_weights or model_yaml), task="detect")
    if log is not None:
        model.add_callback("on_fit_epoch_end", _epoch_logger(log, settings.epochs, started))
    # Train (CPU, no plots, no pretrained weights, reproducible seed)
    try:
        model.train(
            data=str(data_yaml), epochs=settings.epochs, imgsz=settings.image_size_px,
            batch=settings.batch, device="cpu", workers=settings.workers, seed=settings.seed,
            # pretrained: keep the weights of init_weights (False would discard them)
            deterministic=True, pretrained=init_weights is not None, amp=False, plots=False,
            exist_ok=True,
            project=str(out_dir.resolve()), name="run", patience=settings.patience,
            fliplr=settings.fliplr, mosaic=settings.mosaic, close_mosaic=settings.close_mosaic,
            # No warm-up when fine-tuning: its bias learning rate (0.1) wrecks trained weights
            warmup_epochs=0.0 if init_weights is not None else 3.0,
            verbose=False,
        )
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        raise TrainingError(f"training on {data_yaml} failed: {err}") from err
    run_dir = out_dir / "run"
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise TrainingError(f"training wrote no {best}")
    # Export the best weights to ONNX at the inference size
    onnx_path = export_onnx(best, settings.export_size_px)
    weights_pt, model_onnx = out_dir / "best.pt", out_dir / "best.onnx"
    shutil.copyfile(best, weights_pt)
    shutil.copyfile(onnx_path, model_onnx)
    metrics = _validation_metrics(model)
    wall_time_s = time.perf_counter() - started
    card = write_model_card(out_dir / "model_card.yaml", data_yaml, model_yaml, settings,
                            metrics, wall_time_s, command, init_weights)
    if log is not None:
        log(f"trained in {wall_time_s / 60:.1f} min: {model_onnx} "
            f"({model_onnx.stat().st_size / 1e6:.1f} MB), val {metrics}")
    return TrainResult(weights_pt, model_onnx, card, metrics, wall_time_s)


def widen_classes(weights_pt: Path, names: tuple[str, ...], out_pt: Path) -> Path:
    """``weights_pt`` with its class list extended to ``names``; ``weights_pt`` if it has them.

    The new classes must come after the model's own, in the same order (a dataset renderer
    only ever appends classes). Every weight is kept; the classification convolutions of the
    head get rows for the new classes, initialised as the mean of the trained rows, so a
    fine-tune starts from a detector that still knows its old classes instead of a head
    Ultralytics would re-initialise from scratch because its shape changed.
    """
    offline_ultralytics()
    import torch
    from ultralytics.nn import tasks

    load_checkpoint: Any = tasks.load_checkpoint  # untyped
    detection_model: Any = tasks.DetectionModel
    try:
        old, checkpoint = load_checkpoint(str(weights_pt))
    except (OSError, RuntimeError, TypeError) as err:
        raise ModelLoadError(f"{weights_pt}: cannot load the weights: {err}") from err
    old_names = tuple(dict(old.names).values())
    if names == old_names:
        return weights_pt
    if names[: len(old_names)] != old_names:
        raise TrainingError(f"{weights_pt}: its classes {list(old_names)} are not the first "
                            f"classes of the dataset's {list(names)}; only appending works")
    definition = {**old.yaml, "nc": len(names)}
    definition.setdefault("scale", next(iter(definition.get("scales") or {}), None))
    widened = detection_model(definition, nc=len(names), verbose=False)
    state = widened.state_dict()
    for key, old_value in old.state_dict().items():
        new_value = state.get(key)
        if new_value is None:
            continue
        if new_value.shape == old_value.shape:
            state[key] = old_value
        elif new_value.shape[1:] == old_value.shape[1:] and len(old_names) == old_value.shape[0]:
            rows = old_value.shape[0]  # a classification layer: one row per class
            grown = old_value.mean(dim=0, keepdim=True).expand_as(new_value).clone()
            grown[:rows] = old_value
            state[key] = grown
        else:
            raise TrainingError(f"{weights_pt}: layer {key} has shape {tuple(old_value.shape)}, "
                                f"the widened model {tuple(new_value.shape)}")
    widened.load_state_dict(state)
    widened.names = dict(enumerate(names))
    widened.args = getattr(old, "args", {})
    out_pt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": widened, "train_args": checkpoint.get("train_args", {})}, out_pt)
    return out_pt


def export_onnx(weights_pt: Path, image_size_px: int) -> Path:
    """Export a .pt detector to ONNX (static input, simplified); returns the .onnx path."""
    offline_ultralytics()
    from ultralytics.models.yolo.model import YOLO

    try:
        exported = YOLO(str(weights_pt)).export(format="onnx", imgsz=image_size_px,
                                                simplify=True, dynamic=False, device="cpu")
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        raise ModelLoadError(f"{weights_pt}: ONNX export failed: {err}") from err
    return Path(exported)


def write_model_card(path: Path, data_yaml: Path, model_yaml: Path, settings: TrainSettings,
                     metrics: dict[str, float], wall_time_s: float, command: str,
                     init_weights: Path | None = None) -> Path:
    """The provenance of a trained model: command, data seeds, settings, figures."""
    data = yaml.safe_load(data_yaml.read_text()) or {}
    card: dict[str, Any] = {
        "command": command,
        "git_commit": _git_commit(),
        "model_yaml": model_yaml.name,
        "init_weights": str(init_weights) if init_weights else None,
        "dataset": {"data_yaml": str(data_yaml), "names": data.get("names"),
                    "rendered": data.get("rendered")},
        "settings": asdict(settings),
        "validation": metrics,
        "wall_time_min": round(wall_time_s / 60.0, 1),
        "device": "cpu",
        "cores": os.cpu_count(),
    }
    path.write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True))
    return path


def _git_commit() -> str | None:
    """The checkout's commit (the dataset renderer's code version), if this is a git tree."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=MODELS_DIR, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _epoch_logger(log: Callable[[str], None], epochs: int, started: float
                  ) -> Callable[[Any], None]:
    """One progress line per epoch: validation figures and the time left."""

    def on_epoch_end(trainer: Any) -> None:
        done = int(trainer.epoch) + 1
        elapsed = time.perf_counter() - started
        figures = _figures(getattr(trainer, "metrics", None) or {})
        if done > epochs:  # the trainer's last call: the best weights validated once more
            log(f"best weights: {figures}")
            return
        left_min = elapsed / done * (epochs - done) / 60.0
        log(f"epoch {done}/{epochs}: {figures}; about {left_min:.0f} min left")

    return on_epoch_end


def _validation_metrics(model: Any) -> dict[str, float]:
    return _figures(getattr(getattr(model, "trainer", None), "metrics", None) or {})


def _figures(metrics: dict[str, Any]) -> dict[str, float]:
    wanted = {"metrics/mAP50(B)": "map50", "metrics/mAP50-95(B)": "map50_95",
              "metrics/precision(B)": "precision", "metrics/recall(B)": "recall"}
    return {name: round(float(metrics[key]), 4) for key, name in wanted.items() if key in metrics}


def _dataset_names(data_yaml: Path) -> tuple[str, ...]:
    """Class names of a YOLO data.yaml, in index order."""
    names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names")
    if isinstance(names, dict):
        return tuple(str(names[index]) for index in sorted(names))
    if isinstance(names, list):
        return tuple(str(name) for name in names)
    raise DatasetError(f"{data_yaml}: 'names' must be a list or an index -> name mapping")


def _check_inputs(data_yaml: Path, model_yaml: Path) -> None:
    if not data_yaml.is_file():
        raise DatasetError(f"dataset file not found: {data_yaml}")
    try:
        data = yaml.safe_load(data_yaml.read_text())
    except yaml.YAMLError as err:
        raise DatasetError(f"{data_yaml}: not valid YAML: {err}") from err
    if not isinstance(data, dict) or "train" not in data or "names" not in data:
        raise DatasetError(f"{data_yaml}: a YOLO data.yaml needs 'train' and 'names'")
    if not model_yaml.is_file():
        raise ModelLoadError(f"model definition not found: {model_yaml}")
