"""``crawler bench perception``: detectors on a held-out test set, findings on a sewer drive.

1. Detectors. A test split is rendered from look seeds the training never used
   (``perception.synthetic.render.split_seeds("test", ...)``); the shipped ONNX model, the same
   model through the Ultralytics (torch) path, and the classical OpenCV detector are scored on
   it in the same run: ``map50``, ``map50_95``, per-class AP, precision, recall, speed on the
   test images (``ms_per_image``) and on the same images stretched to 640 x 640
   (``ms_per_image_640x640``, the size of the speed target) on this machine's cores.
2. Findings. The crawler drives the whole 120 m of ``sewer_dn1000`` with camera (5 Hz) and
   lidar; our fused localization places it, the shipped detector looks at every frame, the
   ``DefectMapper`` turns detections and the localized lidar into graded findings. Against the
   world's ground truth: ``finding_recall`` (defects found with the right class and their
   start within ``MATCH_DISTANCE_M``), ``false_findings_per_100m`` and ``grade_exact`` (of the
   found defects, the share graded exactly as the truth).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from benchmarks.nav import Estimator, OursFused, drive_world
from crawler.config import CrawlerConfig
from navigation.pose_history import PoseHistory
from navigation.site import site_from_truth
from perception.detectors import SHIPPED_MODEL, Detection, Detector, load_detector
from perception.findings import PinholeCamera, PipeModel
from perception.grading import SiteFactors
from perception.mapper import DefectMapper, SegmentMap
from perception.synthetic.render import RenderSettings, write_dataset
from sim_worlds.simulator.camera import focal_px
from sim_worlds.simulator.sdf import rotation_from_rpy
from sim_worlds.simulator.simulation import (
    CameraFrame,
    LidarFrame,
    SimConfig,
    SimEvent,
    Simulation,
)
from sim_worlds.worldgen.truth import PipeDefect

FloatArray = NDArray[np.float64]
WORLD = "sewer_dn1000"
MATCH_DISTANCE_M = 0.3
DRIVE_SPEED_MPS = 0.5
CAMERA_RATE_HZ = 5.0
TEST_LOOKS, TEST_FRAMES_PER_LOOK = 8, 50
SHIPPED_PT = SHIPPED_MODEL.with_suffix(".pt")
SPEED_IMAGES = 40


def run(quick: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole benchmark; ``quick`` renders fewer test images and drives 30 m."""
    from benchmarks.detect import run_detect_bench

    say = progress or (lambda line: None)
    with tempfile.TemporaryDirectory(prefix="bench_perception_") as tmp:
        data_yaml = render_test_set(Path(tmp), 2 if quick else TEST_LOOKS,
                                    10 if quick else TEST_FRAMES_PER_LOOK, say)
        detectors = {
            "onnx": f"onnx:{SHIPPED_MODEL}",
            "ultralytics": f"ultralytics:{SHIPPED_PT}",
            "classical": "classical",
        }
        scores: dict[str, Any] = {}
        squares = square_images(data_yaml, SPEED_IMAGES)
        for name, spec in detectors.items():
            say(f"detector {name}: {spec}")
            scores[name] = run_detect_bench(spec, data_yaml, split="test")
            scores[name]["ms_per_image_640x640"] = ms_per_image(load_detector(spec), squares)
            say(f"  map50 {scores[name]['map50']:.3f}, "
                f"{scores[name]['ms_per_image_640x640']:.1f} ms at 640 x 640")
    speedup = (scores["ultralytics"]["ms_per_image_640x640"]
               / max(scores["onnx"]["ms_per_image_640x640"], 1e-9))
    findings = findings_on_drive(f"onnx:{SHIPPED_MODEL}", say, max_sim_s=70.0 if quick else None)
    return {"detectors": scores, "onnx_speedup_vs_ultralytics": round(speedup, 2),
            "findings": findings, "cores": os.cpu_count()}


def square_images(data_yaml: Path, count: int) -> list[NDArray[np.uint8]]:
    """``count`` test images stretched to 640 x 640, the speed target's input size."""
    from perception.yolo_dataset import load_split

    images = []
    for item in load_split(data_yaml, "test")[:count]:
        image = cv2.imread(str(item.path), cv2.IMREAD_COLOR)
        if image is not None:
            images.append(np.ascontiguousarray(cv2.resize(image, (640, 640)), dtype=np.uint8))
    return images


def ms_per_image(detector: Detector, images: list[NDArray[np.uint8]], warmup: int = 3) -> float:
    """Mean wall time of ``detect`` per image (after ``warmup`` untimed calls)."""
    for image in images[:warmup]:
        detector.detect(image, 0)
    started = time.perf_counter()
    for index, image in enumerate(images):
        detector.detect(image, index)
    return round(1000.0 * (time.perf_counter() - started) / max(len(images), 1), 2)


def render_test_set(out_dir: Path, looks: int, frames_per_look: int,
                    say: Callable[[str], None]) -> Path:
    """Render the held-out test split (seeds never used for training) into ``out_dir``."""
    say(f"rendering the held-out test set: {looks} looks x {frames_per_look} frames")
    return write_dataset(out_dir, {"test": looks}, world=WORLD,
                         settings=RenderSettings(frames_per_look=frames_per_look))


def findings_on_drive(detector_spec: str, say: Callable[[str], None],
                      max_sim_s: float | None = None) -> dict[str, Any]:
    """Drive the sewer, map its defects, score them against the truth."""
    started = time.perf_counter()
    detector = load_detector(detector_spec)
    recorder = _DriveRecorder(detector)
    drive, estimators = drive_world(
        WORLD, recorder.estimators_for, say, max_sim_s=max_sim_s,
        config=SimConfig(camera=True, camera_rate_hz=CAMERA_RATE_HZ, seed=3),
        speed_mps=DRIVE_SPEED_MPS, on_events=recorder.on_events)
    say(f"drove {drive.distance_m:.0f} m, {len(recorder.frames)} frames; placing findings")
    segment = recorder.finish(estimators[0].trajectory())
    truth = recorder.truth_defects(drive.distance_m)
    scores = score_findings(segment, truth, drive.distance_m)
    evaluation = segment.evaluation
    assert evaluation is not None  # a pipe segment is always evaluated
    scores.update(
        distance_m=round(drive.distance_m, 1), frames=len(recorder.frames),
        wall_time_s=round(time.perf_counter() - started, 1),
        detector_ms_per_image=round(recorder.detect_seconds / max(len(recorder.frames), 1)
                                    * 1000.0, 1),
        segment={"S": round(evaluation.S, 3), "F": round(evaluation.F, 3),
                 "Y": round(evaluation.Y, 3), "G": round(evaluation.G, 3),
                 "RI": round(evaluation.RI, 3), "MI": round(evaluation.MI, 3)})
    return scores


class _DriveRecorder:
    """Collects detections per frame and localized lidar while ``drive_world`` runs."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.frames: list[tuple[int, list[Detection]]] = []
        self.detect_seconds = 0.0
        self._fused: OursFused | None = None
        self._mapper: DefectMapper | None = None
        self._sim: Simulation | None = None
        mounts = CrawlerConfig().mounts
        self.T_base_camera = _pose(mounts.camera_xyz_m, mounts.camera_rpy_rad)
        self.T_base_lidar = _pose(mounts.lidar_xyz_m, mounts.lidar_rpy_rad)

    def estimators_for(self, sim: Simulation) -> list[Estimator]:
        from benchmarks.nav import Extrinsics

        self._sim = sim
        self._fused = OursFused(sim, Extrinsics(self.T_base_lidar))
        pipe = sim.truth.pipe
        if pipe is None or sim.camera is None:
            raise ValueError(f"{WORLD} has no pipe truth or no camera")
        site = site_from_truth(sim.truth)
        spec = sim.camera.spec
        self._mapper = DefectMapper(
            PipeModel(site.axes[0], pipe.inner_diameter_m / 2.0),
            PinholeCamera(spec.width_px, spec.height_px, focal_px(spec)),
            pipe.wall_thickness_m)
        return [self._fused]

    def on_events(self, sim: Simulation, events: list[SimEvent]) -> None:
        assert self._fused is not None and self._mapper is not None
        for event in events:
            if isinstance(event, CameraFrame):
                started = time.perf_counter()
                detections = self.detector.detect(event.image_bgr, event.stamp_ns)
                self.detect_seconds += time.perf_counter() - started
                self.frames.append((event.stamp_ns, detections))
            elif isinstance(event, LidarFrame):
                # The online estimate places each scan, as the robot's mapper node does
                T_site_lidar = self._fused.pipeline.estimate().T_site_base @ self.T_base_lidar
                points = event.scan.points_m @ T_site_lidar[:3, :3].T + T_site_lidar[:3, 3]
                self._mapper.add_scan(points, T_site_lidar[:3, 3])

    def finish(self, trajectory: list[tuple[int, FloatArray]]) -> SegmentMap:
        """Place every frame's detections with the smoothed trajectory; grade the segment."""
        assert self._mapper is not None and self._sim is not None
        history = PoseHistory(trajectory, tolerance_ns=200_000_000)
        for stamp_ns, detections in self.frames:
            T_site_base = history.at(stamp_ns)
            if T_site_base is not None:
                self._mapper.add_frame(stamp_ns, detections, T_site_base @ self.T_base_camera)
        pipe = self._sim.truth.pipe
        assert pipe is not None
        return self._mapper.finish(SiteFactors(dn_mm=pipe.inner_diameter_m * 1000.0),
                                   pipe.length_m)

    def truth_defects(self, driven_m: float) -> list[PipeDefect]:
        """Ground-truth defects the drive passed (all of them on a full drive)."""
        assert self._sim is not None and self._sim.truth.pipe is not None
        pipe = self._sim.truth.pipe
        reach_m = driven_m - pipe.datum_route_distance_m - 1.0
        return [d for d in pipe.defects if d.distance_m <= reach_m]


class TruthDefect(Protocol):
    """A ground-truth defect as scoring needs it (``PipeDefect``, a tunnel's surface feature)."""

    @property
    def id(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def distance_m(self) -> float: ...
    @property
    def grade(self) -> int | None: ...


def score_findings(segment: SegmentMap, truth: Sequence[TruthDefect], distance_m: float
                   ) -> dict[str, Any]:
    """Match findings to truth defects (same class, start within ``MATCH_DISTANCE_M``);
    ``grade_exact`` over the matched truth that has a grade."""
    unmatched = list(segment.findings)
    matched: list[dict[str, Any]] = []
    missed: list[str] = []
    for defect in sorted(truth, key=lambda d: d.distance_m):
        candidates = [g for g in unmatched if g.finding.code == defect.code
                      and abs(g.finding.start_m - defect.distance_m) <= MATCH_DISTANCE_M]
        if not candidates:
            missed.append(f"{defect.id} {defect.code} @ {defect.distance_m} m")
            continue
        best = min(candidates, key=lambda g: abs(g.finding.start_m - defect.distance_m))
        unmatched.remove(best)
        matched.append({"truth": defect.id, "code": defect.code,
                        "distance_error_m": round(best.finding.start_m - defect.distance_m, 3),
                        "grade": best.grade, "truth_grade": defect.grade,
                        "source": best.finding.source, "basis": best.grade_basis})
    recall = len(matched) / len(truth) if truth else math.nan
    graded = [m for m in matched if m["truth_grade"] is not None]
    grade_exact = (sum(m["grade"] == m["truth_grade"] for m in graded) / len(graded)
                   if graded else math.nan)
    return {
        "finding_recall": round(recall, 3),
        "false_findings_per_100m": round(100.0 * len(unmatched) / max(distance_m, 1e-9), 2),
        "grade_exact": round(grade_exact, 3),
        "truth_defects": len(truth),
        "findings": len(segment.findings),
        "matched": matched,
        "missed": missed,
        "false": [f"{g.finding.id} {g.finding.code} @ {g.finding.start_m} m ({g.finding.source})"
                  for g in unmatched],
    }


def _pose(xyz: tuple[float, float, float], rpy: tuple[float, float, float]) -> FloatArray:
    T = np.eye(4)
    T[:3, :3] = rotation_from_rpy(*rpy)
    T[:3, 3] = xyz
    return T
