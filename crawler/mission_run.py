"""``crawler mission run PLAN``: an autonomous mission in the simulator, in one process.

No ROS: the simulator (``sim_worlds.simulator.Simulation``) of the plan's world steps the
crawler; its MCU model takes the executor's twist; our fused localization
(``navigation.localization.LocalizationPipeline``) places the robot from the lidar, the
encoders, the cable counter and the fixes; the plan's detector looks at camera frames and
the ``DefectMapper`` turns detections and localized lidar into findings; the safety
supervisor (inside the ``MissionExecutor``) sees battery, gas, tether and e-stop from the MCU
model and the localization's uncertainty; the ``MissionFolder`` is written as it goes.

Processing rates (chosen so the 120 m sewer mission, there and back, runs in minutes on two
cores; all in ``RunConfig``): the sim renders the camera at ``camera_rate_hz`` (2 Hz: at
0.15 m/s a frame every 7.5 cm, denser than the perception benchmark's 10 cm) and the detector
runs on a frame only when the robot moved ``detect_spacing_m`` since the last one (so not
while it stands for photos and pauses); no camera on the way back (the inspection is done;
the lidar still localizes); 1 Hz for the recording only where nothing is inspected. The
lidar runs at ``lidar_rate_hz`` (5 Hz, half the world's 10 Hz: at 0.15 m/s a scan every
3 cm, and it halves the two largest costs, ray casting and scan matching); every scan feeds
localization, one every ``mapper_period_s`` (2.5 Hz) the defect mapper's cloud, one every
``map_period_s`` the occupancy map and the point cloud written at the end. The physics steps
at ``step_s`` (10 ms: at 20 ms the simulated IMU and wheels lead the localization's height
astray after the sewer's bend: 2.7 m off at 70 m, against 0.14 m at 10 ms).
Recorded: ``/odom/wheel``, ``/imu`` and ``/localization/pose`` at 10 Hz, ``/points`` (every
``point_stride``-th point) and the JPEG camera frame once per ``record_period_s`` of
simulated time, ``/defects/findings`` per finding, ``/mission/status`` at 1 Hz.

Looking closer (the plan's ``look_closer`` action): the detector then reports down to the
action's ``min_confidence`` (the tracker still takes only detections of at least
``TRACK_MIN_CONFIDENCE``); a weak detection within zoom range becomes a suspect
(``perception.close_up.SuspectFinder``), the executor stops for it, and while it looks the
camera head is aimed and zoomed at the suspect's spot every control step (the simulated head
turns at once) and every frame is detected, placed with the zoomed focal length. A zoomed
detection of the suspect's class proposes the next aim (``AimClimb``: the aim follows while
the views get surer, then holds the best); only the suspect's class goes to the tracker from
a look's frames.

Findings reach ``findings.sqlite`` the moment the tracker confirms them, with a provisional
grade (the visual extent rule; ``grade_basis`` says so); when the mission ends the mapper
joins them with the lidar measurements, grades them by CJJ 181 and the final rows (and
lidar-only findings) replace the provisional ones, with the segment evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from crawler.config import CrawlerConfig
from firmware_bridge.messages import Imu, SetTwist
from navigation.bag_io import ImuReading
from navigation.geodesy import SiteFrame
from navigation.localization import LocalizationPipeline
from navigation.map_export import VoxelCloud
from navigation.mission.executor import (
    ExecutorOutput,
    FindingNotice,
    MissionExecutor,
    MissionState,
    PhotoRequest,
    RobotReadings,
    SuspectNotice,
    route_polyline,
)
from navigation.mission.folder import MissionFolder, encode_jpeg
from navigation.mission.plan import (
    WORLD_PREFIX,
    LookCloser,
    MissionPlan,
    PipeAsset,
    TunnelAsset,
    load_plan,
    load_plan_site,
)
from navigation.mission.safety import GasReadings
from navigation.occupancy import OccupancyGrid
from navigation.path import Polyline
from navigation.records import FixSource, LidarScan3D, OdometrySample, PositionFix
from navigation.site import Axis, Site
from navigation.wheel_odometry import WheelOdometry
from perception.close_up import AimClimb, SuspectFinder, aim_head, zoomed
from perception.detectors import Detection, Detector, DetectorOptions, load_detector
from perception.errors import GradingError
from perception.findings import Finding, GalleryModel, PinholeCamera, PipeModel, WallModel
from perception.grading import SiteFactors, default_standard
from perception.mapper import VISUAL_GRADE_RULES, DefectMapper, GradedFinding, SegmentMap
from perception.synthetic.render import SURFACE_FEATURE_CODES
from sim_worlds.simulator.camera import CameraHead, focal_px
from sim_worlds.simulator.sdf import rotation_from_rpy
from sim_worlds.simulator.simulation import (
    CameraFrame,
    GnssFix,
    LidarFrame,
    RadioFix,
    SimConfig,
    Simulation,
)
from sim_worlds.worldgen.truth import PipeDefect, WorldTruth

FloatArray = NDArray[np.float64]
_NS = 1_000_000_000
TRACK_MIN_CONFIDENCE = DetectorOptions().confidence_threshold
"""Detections the finding tracker takes (weaker ones only make suspects to look closer at)."""


class MissionRunError(Exception):
    """The mission cannot be run in the simulator (no world, bad plan)."""


@dataclass(frozen=True)
class RunConfig:
    """Rates and options of the simulated mission (see the module docstring)."""

    step_s: float = 0.01
    control_period_s: float = 0.1
    odometry_period_s: float = 0.02
    tether_period_s: float = 0.1
    camera_rate_hz: float = 2.0
    detect_spacing_m: float = 0.04
    camera_on_return: bool = False
    lidar_rate_hz: float | None = 5.0
    """None: the world's lidar rate (10 Hz)."""
    mapper_period_s: float = 0.4
    """A scan for the defect mapper's cloud this often."""
    map_period_s: float = 3.0
    """A scan for the occupancy map and point cloud (the end products) this often."""
    record_period_s: float = 1.0
    record_pose_period_s: float = 0.1
    point_stride: int = 8
    photo_history_s: float = 60.0
    seed: int = 3
    max_sim_s: float | None = None
    """Stop the mission (aborted) after this much simulated time; None: 2 x the plan's
    max duration."""
    gas: Callable[[float, FloatArray], GasReadings | None] | None = None
    """Test hook: the gas the MCU reads at (sim time s, true position); None: the world's."""
    estop_at_s: float | None = None
    """Test hook: latch the MCU's e-stop at this simulated time."""
    merge_recording: bool = True
    perception: bool = True
    """Run the detector and the defect mapper (pipes); False: drive, localize and record only."""


@dataclass(frozen=True)
class RunProgress:
    """One progress report (once per wall second)."""

    wall_s: float
    sim_s: float
    state: str
    route_distance_m: float
    distance_done_m: float
    distance_left_m: float
    eta_s: float
    speed_mps: float
    findings: int
    reasons: tuple[str, ...]

    def line(self) -> str:
        """The live progress line."""
        eta = f"{self.eta_s / 60:.0f} min" if self.eta_s >= 90 else f"{self.eta_s:.0f} s"
        text = (f"{self.state:<13} at {self.route_distance_m:6.1f} m"
                f"  done {self.distance_done_m:6.1f} m  left {self.distance_left_m:6.1f} m"
                f"  ETA {eta:>6}  {self.speed_mps:.2f} m/s  findings {self.findings:2d}"
                f"  sim {self.sim_s:5.0f} s  wall {self.wall_s:4.0f} s")
        if self.reasons:
            text += f"  [{self.reasons[0]}]"
        return text


@dataclass(frozen=True)
class MissionResult:
    """What a simulated mission did."""

    folder: Path
    state: str
    """completed or aborted."""
    reason: str | None
    world: str
    distance_done_m: float
    sim_time_s: float
    wall_time_s: float
    cpu_time_s: float
    """CPU time of this process (all threads): the wall time on an otherwise idle machine is
    about this, less what threads ran in parallel."""
    findings: int
    segment: SegmentMap | None
    truth_defects: tuple[TruthDefect, ...]
    """Ground-truth defects the robot passed (for scoring)."""
    outbound_m: float
    """How far along the route the robot got."""
    distance_error_m: float | None
    """|estimated - true| chainage where the outbound drive ended (the end manhole)."""
    position_error_m: float | None
    """|estimated - true| position (3D) there."""
    timing_s: dict[str, float] = field(default_factory=dict)


def _pose(xyz: tuple[float, float, float], rpy: tuple[float, float, float]) -> FloatArray:
    T = np.eye(4)
    T[:3, :3] = rotation_from_rpy(*rpy)
    T[:3, 3] = xyz
    return T


def _planar(x_m: float, y_m: float, yaw_rad: float) -> FloatArray:
    T = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = x_m, y_m
    return T


def _tilt(sample: Imu) -> tuple[float, float]:
    x, y, z, w = sample.quat_x, sample.quat_y, sample.quat_z, sample.quat_w
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    return roll, pitch


def _imu_reading(sample: Imu, stamp_ns: int) -> ImuReading:
    eye = np.eye(3)
    return ImuReading(stamp_ns, np.array([sample.quat_x, sample.quat_y, sample.quat_z,
                                          sample.quat_w]),
                      np.array([sample.gyro_x_radps, sample.gyro_y_radps, sample.gyro_z_radps]),
                      np.array([sample.accel_x_mps2, sample.accel_y_mps2, sample.accel_z_mps2]),
                      eye * 1e-3, eye * 4e-6, eye * 4e-4)


@dataclass(frozen=True)
class SurfaceDefect:
    """A tunnel surface feature as a defect to find: its detector class and where it starts
    along the gallery's axis (``grade`` None: the truth does not grade it)."""

    id: str
    code: str
    distance_m: float
    grade: int | None = None


TruthDefect = PipeDefect | SurfaceDefect


def tunnel_truth(truth: WorldTruth, axis: Axis) -> list[SurfaceDefect]:
    """The world's surface features on ``axis``'s gallery (cracks, seepage, standing water)
    as the findings the detector should make, with their near end's chainage."""
    if truth.tunnel is None:
        return []
    gallery = next((g for g in truth.tunnel.galleries if g.id == axis.name), None)
    if gallery is None:
        return []
    defects = []
    for feature in truth.tunnel.surface_features:
        code = SURFACE_FEATURE_CODES.get(feature.kind)
        where = axis.project(feature.centre_m)
        if code is None or abs(where.offset_m) > 0.5 * gallery.width_m + 0.1:
            continue
        # A wall feature's first size runs along the wall; floor and ceiling: x and y extents
        length_m = feature.size_m[0]
        if feature.surface in ("floor", "ceiling"):
            _, along = axis.chainage_and_direction(feature.centre_m)
            length_m = abs(along[0]) * feature.size_m[0] + abs(along[1]) * feature.size_m[1]
        defects.append(SurfaceDefect(feature.id, code,
                                     round(where.distance_m - 0.5 * length_m, 3)))
    return sorted(defects, key=lambda d: d.distance_m)


def gallery_model(axis: Axis, asset: TunnelAsset, truth: WorldTruth) -> GalleryModel:
    """The gallery's section from the plan, else from the simulated world's truth."""
    width_m, height_m = asset.width_m, asset.height_m
    if width_m is None or height_m is None:
        gallery = next((g for g in truth.tunnel.galleries if g.id == axis.name), None) \
            if truth.tunnel is not None else None
        if gallery is None:
            raise MissionRunError(f"the plan gives no width_m/height_m for gallery "
                                  f"'{axis.name}' and the world has no such gallery")
        width_m = width_m or gallery.width_m
        height_m = height_m or gallery.height_m
    return GalleryModel(axis, width_m, height_m)


def detector_spec(plan: MissionPlan) -> str:
    """The plan's detector; plain ``shipped`` is the shipped model made for the asset's kind
    of site (a tunnel's walls look nothing like a pipe's)."""
    if plan.detector.strip() == "shipped" and isinstance(plan.asset, TunnelAsset):
        return "shipped:tunnel"
    return plan.detector


def zoom_detector_spec(plan: MissionPlan) -> str:
    """The detector for zoomed frames: the look_closer action's, else the plan's."""
    look = next((a for a in plan.actions if isinstance(a, LookCloser)), None)
    if look is not None and look.detector is not None:
        return look.detector
    return detector_spec(plan)


def plan_world(plan: MissionPlan, world: str | None) -> str:
    """The simulated world a plan runs in: ``world`` if given, else its ``world:NAME`` site."""
    if world is not None:
        return world
    if plan.site_file.startswith(WORLD_PREFIX):
        return plan.site_file.removeprefix(WORLD_PREFIX)
    raise MissionRunError("the plan's site is a site file, not a simulated world: "
                          "give the world to run it in")


def provisional_grade(finding: Finding) -> GradedFinding:
    """A grade at confirmation time, before any lidar measurement: the extent rule."""
    standard = default_standard()
    rule = VISUAL_GRADE_RULES.get(finding.code)
    grade = 1
    note = "no rule: grade 1"
    if rule is not None:
        note = rule.note
        grade = rule.grades[-1]
        for limit, value in zip(rule.upper_lengths_m, rule.grades, strict=False):
            if finding.length_m < limit:
                grade = value
                break
    try:
        score: float | None = standard.score(finding.code, grade)
    except GradingError:  # a code the standard records without a score
        score = None
    return GradedFinding(finding, grade, score,
                         f"provisional (camera extent; graded at the end of the mission): "
                         f"{note}", dict(finding.measured), ("provisional grade",))


class _Mission:
    """The state of one simulated mission run."""

    def __init__(self, plan: MissionPlan, site: Site, world: str, folder: MissionFolder,
                 config: RunConfig) -> None:
        self.plan, self.site, self.world, self.folder, self.config = (plan, site, world, folder,
                                                                       config)
        cfg = config
        inspects = cfg.perception and isinstance(plan.asset, PipeAsset | TunnelAsset)
        # Without perception the camera only feeds the recording
        camera_hz = cfg.camera_rate_hz if inspects else 1.0 / cfg.record_period_s
        self.sim = Simulation(world, SimConfig(step_s=cfg.step_s, seed=cfg.seed,
                                               camera_rate_hz=camera_hz,
                                               lidar_rate_hz=cfg.lidar_rate_hz))
        sim = self.sim
        mounts = CrawlerConfig().mounts
        self.T_base_lidar = _pose(mounts.lidar_xyz_m, mounts.lidar_rpy_rad)
        self.T_base_camera = _pose(mounts.camera_xyz_m, mounts.camera_rpy_rad)
        loc_site = site
        if site.tether is not None:  # the cable counter is calibrated before a mission
            loc_site = dataclasses.replace(site, tether=dataclasses.replace(
                site.tether, stretch_nominal=sim.config.tether_stretch, stretch_sigma=0.001))
        self.pipeline = LocalizationPipeline(loc_site, self.T_base_lidar)
        self.pipeline.initialize(sim.T_world_base(), sim.now_ns)
        self.site_frame = SiteFrame(site.origin)
        self.route = route_polyline(plan, site)
        self.executor = MissionExecutor(plan, self.route)
        self.odometry = WheelOdometry(sim.mcu.params.ticks_per_m, sim.mcu.params.track_width_m)
        self.tethered = site.tether is not None
        # Perception: findings are placed on the pipe wall, or a tunnel's walls and ceiling
        self.detector: Detector | None = None
        self.zoom_detector: Detector | None = None
        """The detector for zoomed frames (``zoom_detector_spec``)."""
        self.mapper: DefectMapper | None = None
        asset = plan.asset
        self.axis = None
        self.look = next((a for a in plan.actions if isinstance(a, LookCloser)), None)
        self.suspects: SuspectFinder | None = None
        if inspects and sim.camera is not None:
            floor = min(TRACK_MIN_CONFIDENCE, self.look.min_confidence) if self.look \
                else TRACK_MIN_CONFIDENCE
            options = DetectorOptions(confidence_threshold=floor)
            self.detector = load_detector(detector_spec(plan), options)
            zoom_spec = zoom_detector_spec(plan)
            self.zoom_detector = (self.detector if self.look is None or zoom_spec ==
                                  detector_spec(plan) else load_detector(zoom_spec, options))
            legs = plan.route.path_legs()
            self.axis = next(a for a in site.axes if a.name == legs[0].axis)
            spec = sim.camera.spec
            surface: WallModel
            if isinstance(asset, PipeAsset):
                surface = PipeModel(self.axis, asset.dn_mm / 2000.0)
            else:
                assert isinstance(asset, TunnelAsset)  # ``inspects``
                surface = gallery_model(self.axis, asset, sim.truth)
            self.mapper = DefectMapper(
                surface, PinholeCamera(spec.width_px, spec.height_px, focal_px(spec)),
                asset.wall_thickness_m if isinstance(asset, PipeAsset)
                and asset.wall_thickness_m else 0.1)
            if self.look is not None:
                self.suspects = SuspectFinder(self.mapper.tracker, self.look.min_confidence,
                                              max_range_m=self.look.max_range_m)
        self.grid = OccupancyGrid(0.05)
        self.cloud = VoxelCloud(0.1)
        # Bookkeeping
        self.photos: deque[tuple[int, bytes]] = deque()
        self.last_frame: CameraFrame | None = None
        self.last_detect_xy: FloatArray | None = None
        self.pending: list[FindingNotice] = []
        self.pending_suspects: list[SuspectNotice] = []
        self.aims: dict[str, AimClimb] = {}
        """Where the head aims for each suspect (moved by the zoomed detections)."""
        self.looking: SuspectNotice | None = None
        self.findings: dict[str, Finding] = {}
        self.scans = 0
        self.frames_detected = 0
        self.timing = {"sim": 0.0, "localization": 0.0, "detector": 0.0, "mapper": 0.0,
                       "record": 0.0, "executor": 0.0}
        self.output: ExecutorOutput | None = None
        self.outbound_m = 0.0
        self.distance_error_m: float | None = None
        self.position_error_m: float | None = None
        self.returning = False
        self._due_ns: dict[str, int] = {}

    # --- sensors -----------------------------------------------------------------------------

    def on_events(self, events: list[Any]) -> None:
        sim = self.sim
        for event in events:
            if isinstance(event, LidarFrame):
                self._on_scan(event)
            elif isinstance(event, CameraFrame):
                self._on_frame(event)
            elif isinstance(event, RadioFix):
                fix = PositionFix(event.stamp_ns, event.position_m,
                                  np.diag([event.sigma_m**2, event.sigma_m**2,
                                           4 * event.sigma_m**2]), FixSource.RADIO_5G)
                self._timed("localization", self.pipeline.on_fix, fix)
            elif isinstance(event, GnssFix):
                position = sim.site.to_site([event.latitude_deg, event.longitude_deg,
                                             event.height_m])[0]
                h2, v2 = event.sigma_horizontal_m**2, event.sigma_vertical_m**2
                fix = PositionFix(event.stamp_ns, position, np.diag([h2, h2, v2]),
                                  FixSource.BEIDOU)
                self._timed("localization", self.pipeline.on_fix, fix)

    def _timed(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timing[name] += time.perf_counter() - started

    def _on_scan(self, event: LidarFrame) -> None:
        cfg = self.config
        scan = LidarScan3D(event.stamp_ns, event.scan.points_m, event.scan.point_time_offsets_s)
        self._timed("localization", self.pipeline.on_scan, scan)
        self.scans += 1
        T_site_lidar = None
        if self.mapper is not None and not self.returning \
                and self._record_due("mapper", event.stamp_ns, cfg.mapper_period_s):
            started = time.perf_counter()
            T_site_lidar = self.pipeline.estimate().T_site_base @ self.T_base_lidar
            points = event.scan.points_m @ T_site_lidar[:3, :3].T + T_site_lidar[:3, 3]
            self.mapper.add_scan(points, T_site_lidar[:3, 3])
            self.timing["mapper"] += time.perf_counter() - started
        if self._record_due("map", event.stamp_ns, cfg.map_period_s):
            started = time.perf_counter()
            if T_site_lidar is None:
                T_site_lidar = self.pipeline.estimate().T_site_base @ self.T_base_lidar
            self.grid.insert_cloud_slice(scan, T_site_lidar, max_range_m=15.0)
            self.cloud.add(scan.points_m[:: max(cfg.point_stride // 2, 1)], T_site_lidar)
            self.timing["mapper"] += time.perf_counter() - started
        if self._record_due("points", event.stamp_ns, cfg.record_period_s):
            started = time.perf_counter()
            self.folder.recording.cloud(LidarScan3D(
                scan.stamp_ns, scan.points_m[:: cfg.point_stride],
                None if scan.point_time_offsets_s is None
                else scan.point_time_offsets_s[:: cfg.point_stride]))
            self.timing["record"] += time.perf_counter() - started

    def _record_due(self, name: str, stamp_ns: int, period_s: float) -> bool:
        due = self._due_ns
        if stamp_ns < due.get(name, 0):
            return False
        due[name] = stamp_ns + round(period_s * _NS)
        return True

    def _on_frame(self, frame: CameraFrame) -> None:
        cfg = self.config
        self.last_frame = frame
        if self._record_due("image", frame.stamp_ns, cfg.record_period_s):
            started = time.perf_counter()
            self.folder.recording.image(frame.stamp_ns, encode_jpeg(frame.image_bgr, 80))
            self.timing["record"] += time.perf_counter() - started
        if self.detector is None or self.mapper is None or self.returning:
            return
        estimate = self.pipeline.estimate()
        xy = estimate.T_site_base[:2, 3].copy()
        looking = self.looking
        if looking is None and self.last_detect_xy is not None and \
                float(np.linalg.norm(xy - self.last_detect_xy)) < cfg.detect_spacing_m:
            return  # every frame while looking closer, else one per detect_spacing_m
        self.last_detect_xy = xy
        zoomed_in = bool(frame.horizontal_fov_rad) and not math.isclose(
            frame.horizontal_fov_rad, self.sim.wide_fov_rad)
        detector = self.zoom_detector if zoomed_in and self.zoom_detector else self.detector
        started = time.perf_counter()
        detections: list[Detection] = detector.detect(frame.image_bgr, frame.stamp_ns)
        self.timing["detector"] += time.perf_counter() - started
        self.frames_detected += 1
        if detections:
            # Keep the frame for the findings' best photos
            self.photos.append((frame.stamp_ns, encode_jpeg(self._annotated(
                frame.image_bgr, detections), 85)))
        horizon = frame.stamp_ns - round(cfg.photo_history_s * _NS)
        while self.photos and self.photos[0][0] < horizon:
            self.photos.popleft()
        started = time.perf_counter()
        T_site_camera = estimate.T_site_base @ self.T_base_camera @ frame.head.T_mount_camera()
        camera = self.mapper.tracker.camera
        if zoomed_in:
            camera = zoomed(camera, frame.horizontal_fov_rad)
        tracked = [d for d in detections if d.confidence >= TRACK_MIN_CONFIDENCE]
        if looking is not None:
            # A look answers one question, is the suspect real: a zoom detector may be a
            # specialist (the classical close-up cue takes a straight water edge for a crack)
            tracked = [d for d in tracked if d.code == looking.code]
        confirmed = self.mapper.add_frame(frame.stamp_ns, tracked, T_site_camera, camera)
        if looking is not None:
            self._climb(looking, frame.stamp_ns, detections, T_site_camera, camera)
        elif self.suspects is not None:
            self._suspect(frame.stamp_ns, detections, T_site_camera)
        self.timing["mapper"] += time.perf_counter() - started
        for finding in confirmed:
            self._confirmed(finding, frame.stamp_ns)

    @staticmethod
    def _annotated(image: NDArray[np.uint8], detections: list[Detection]) -> NDArray[np.uint8]:
        out = image.copy()
        for detection in detections:
            x0, y0, x1, y1 = (round(v) for v in detection.box_xyxy_px)
            cv2.rectangle(out, (x0, y0), (x1, y1), (0, 255, 255), 2)
            cv2.putText(out, f"{detection.code} {detection.confidence:.2f}",
                        (x0, max(y0 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
        return out

    def _suspect(self, stamp_ns: int, detections: list[Detection], T_site_camera: FloatArray
                 ) -> None:
        """A new suspect among a wide frame's detections: queued for the executor."""
        assert self.suspects is not None and self.look is not None
        suspect = self.suspects.consider(stamp_ns, detections, T_site_camera)
        if suspect is None:
            return
        self.aims[suspect.id] = AimClimb(suspect.point_m, reach_m=self.look.field_m)
        self.pending_suspects.append(SuspectNotice(suspect.id, suspect.code, suspect.distance_m))

    def _climb(self, looking: SuspectNotice, stamp_ns: int, detections: list[Detection],
                  T_site_camera: FloatArray, camera: PinholeCamera) -> None:
        """The look's aim after a zoomed frame (``AimClimb``): its most confident detection of
        the suspect's class, one the tracker takes, proposes the next."""
        assert self.mapper is not None
        same = [d for d in detections
                if d.code == looking.code and d.confidence >= TRACK_MIN_CONFIDENCE]
        best = max(same, key=lambda d: d.confidence, default=None)
        placed = None
        if best is not None:
            camera_m, _ = self.mapper.tracker.surface.axis.chainage_and_direction(
                T_site_camera[:3, 3])
            placed = self.mapper.tracker.place(stamp_ns, best, T_site_camera, camera_m, camera)
        self.aims[looking.id].observe(best.confidence if best is not None else 0.0,
                                      placed.point_m if placed is not None else None)

    def _aim_camera(self, T_site_base: FloatArray) -> None:
        """Turn and zoom the camera at the suspect being looked at, or home it."""
        sim, looking = self.sim, self.executor.looking_at
        self.looking = looking
        if looking is not None and self.look is not None and sim.camera is not None:
            aim = aim_head(T_site_base @ self.T_base_camera, self.aims[looking.id].aim_m,
                           self.look.field_m, sim.wide_fov_rad)
            sim.set_camera_head(CameraHead(aim.pan_rad, aim.tilt_rad, aim.horizontal_fov_rad))
        elif not sim.camera_head.home and sim.camera is not None:
            sim.set_camera_head(CameraHead())

    def _confirmed(self, finding: Finding, stamp_ns: int) -> None:
        """A newly confirmed finding: straight into the folder, the bag and the executor."""
        self.findings[finding.id] = finding
        lat, lon, _ = self.site_frame.to_geodetic(np.array([finding.position_m]))[0]
        photo = None
        best = min(self.photos, key=lambda p: abs(p[0] - finding.best_stamp_ns), default=None)
        if best is not None:
            photo = self.folder.add_photo(f"{finding.id}.jpg", best[1], best[0],
                                          finding.start_m, "finding")
        self.folder.add_finding(provisional_grade(finding), float(lat), float(lon), photo,
                                stamp_ns=stamp_ns)
        self.folder.recording.string("/defects/findings", {
            "id": finding.id, "code": finding.code, "start_m": finding.start_m,
            "end_m": finding.end_m, "clock_h": finding.clock_h,
            "position_m": list(finding.position_m), "confidence": finding.confidence,
            "frames": finding.frames, "source": finding.source,
            "latitude_deg": float(lat), "longitude_deg": float(lon)}, stamp_ns)
        self.pending.append(FindingNotice(finding.id, finding.code, finding.start_m))
        if self.suspects is not None:
            self.suspects.confirmed(finding.code, np.asarray(finding.position_m))

    # --- control -----------------------------------------------------------------------------

    def control(self) -> ExecutorOutput:
        sim = self.sim
        mcu = sim.mcu
        stamp = sim.now_ns
        started = time.perf_counter()
        estimate = self.pipeline.estimate()
        self.timing["localization"] += time.perf_counter() - started
        cov = np.asarray(estimate.covariance, dtype=np.float64)
        sigma = math.sqrt(max(float(np.max(np.linalg.eigvalsh(cov[:2, :2]))), 0.0))
        env = mcu.env
        readings = RobotReadings(
            battery_pct=float(mcu.battery_percent),
            gas=GasReadings(env.o2_pct, env.ch4_pct_vol, env.h2s_ppm, env.co_ppm),
            tether_paid_out_m=mcu.tether_m if self.tethered else None,
            estop_mcu=mcu.estop_latched)
        started = time.perf_counter()
        out = self.executor.step(stamp, estimate.T_site_base, sigma, readings, self.pending,
                                 self.pending_suspects)
        self.timing["executor"] += time.perf_counter() - started
        self.pending, self.pending_suspects = [], []
        self._aim_camera(estimate.T_site_base)
        mcu.handle(SetTwist(out.linear_mps, out.angular_radps))
        if self.executor.state is MissionState.RETURNING and not self.returning:
            self._begin_return(estimate.T_site_base)
        if not self.returning:
            self.outbound_m = max(self.outbound_m, out.status.route_distance_m)
        for event in out.events:
            if event.kind == "end" and self.distance_error_m is None:
                self.distance_error_m = self._chainage_error(estimate.T_site_base)
        started = time.perf_counter()
        for photo in out.photos:
            self._photo(photo)
        self.folder.add_pose(stamp, estimate.T_site_base)
        self.folder.recording.pose(stamp, estimate.T_site_base, cov)
        self.folder.write_status(out.status.distance_done_m, out.status.distance_left_m,
                                 stamp / _NS, events=[e.as_record() for e in out.events])
        if self._record_due("status", stamp, 1.0) or out.events:
            self.folder.recording.string("/mission/status", out.status.as_record(), stamp)
        self.timing["record"] += time.perf_counter() - started
        self.output = out
        return out

    def _begin_return(self, T_site_base: FloatArray) -> None:
        self.returning = True
        if self.distance_error_m is None:  # a safety return: the error where it turned
            self.distance_error_m = self._chainage_error(T_site_base)
        if not self.config.camera_on_return:
            self.sim.camera = None  # nothing more to inspect: no more rendering

    def _chainage_error(self, T_site_base: FloatArray) -> float | None:
        """|estimated - true| chainage (horizontal projection onto the route's first axis);
        also keeps the 3D position error."""
        true_m = self.sim.T_world_base()[:3, 3]
        self.position_error_m = float(np.linalg.norm(T_site_base[:3, 3] - true_m))
        axis = self.axis or (self.site.axes[0] if self.site.axes else None)
        if axis is None:
            return None
        flat = np.asarray(axis.waypoints_m, dtype=np.float64).copy()
        flat[:, 2] = 0.0
        line = Polyline(flat)
        estimated = line.project((T_site_base[0, 3], T_site_base[1, 3], 0.0)).distance_m
        true = line.project((true_m[0], true_m[1], 0.0)).distance_m
        return abs(estimated - true)

    def _photo(self, request: PhotoRequest) -> None:
        frame = self.last_frame
        if frame is None:
            return
        if request.kind == "close_up" and request.finding_id is not None:
            name = f"{request.finding_id}_closeup.jpg"
        else:
            distance = (request.action_distance_m if request.action_distance_m is not None
                        else request.route_distance_m)
            prefix = "photo" if request.kind == "photograph_at" else "scan"
            name = f"{prefix}_{distance:06.1f}m.jpg"
        self.folder.add_photo(name, frame.image_bgr, frame.stamp_ns, request.route_distance_m,
                              request.kind)

    # --- the loop ----------------------------------------------------------------------------

    def run(self, progress: Callable[[RunProgress], None] | None) -> None:
        sim, cfg = self.sim, self.config
        mcu = sim.mcu
        steps_per = {name: max(1, round(period / cfg.step_s)) for name, period in (
            ("control", cfg.control_period_s), ("odometry", cfg.odometry_period_s),
            ("tether", cfg.tether_period_s), ("record", 0.1))}
        max_sim_s = cfg.max_sim_s or 2.0 * self.plan.end.max_duration_s
        wall0 = time.perf_counter()
        next_report = wall0 + 1.0
        step = 0
        while True:
            if step % steps_per["control"] == 0:
                out = self.control()
                if out.done:
                    break
                if sim.now_ns / _NS >= max_sim_s:
                    raise _AbortError(f"simulated time limit {max_sim_s:.0f} s reached")
            if cfg.estop_at_s is not None and sim.now_ns >= cfg.estop_at_s * _NS:
                mcu.estop_latched = True
                mcu.target_mps = [0.0, 0.0]
            started = time.perf_counter()
            events = sim.step()
            self.timing["sim"] += time.perf_counter() - started
            if cfg.gas is not None:
                gas = cfg.gas(sim.now_ns / _NS, sim.T_world_base()[:3, 3])
                if gas is not None:
                    env = mcu.env
                    env.o2_pct, env.ch4_pct_vol, env.h2s_ppm, env.co_ppm = (
                        gas.o2_pct, gas.ch4_pct_vol, gas.h2s_ppm, gas.co_ppm)
            step += 1
            if step % steps_per["odometry"] == 0:
                left, right = (round(p * mcu.params.ticks_per_m) for p in mcu.track_pos_m)
                state = self.odometry.update(sim.now_ns, left, right)
                sample = OdometrySample(sim.now_ns, _planar(state.x_m, state.y_m,
                                                            state.yaw_rad))
                self._timed("localization", self.pipeline.on_odometry, sample)
                if step % steps_per["record"] == 0:
                    self.folder.recording.odometry(sample, 0.5 * sum(mcu.track_mps))
            if step % steps_per["tether"] == 0:
                imu = mcu.imu_sample()
                roll, pitch = _tilt(imu)
                self._timed("localization", self.pipeline.localizer.add_imu_tilt, sim.now_ns,
                            roll, pitch)
                if self.tethered:
                    self._timed("localization", self.pipeline.on_tether, sim.now_ns,
                                mcu.tether_m)
                if step % steps_per["record"] == 0:
                    self.folder.recording.imu(_imu_reading(imu, sim.now_ns))
            if events:
                self.on_events(events)
            if progress is not None and time.perf_counter() >= next_report:
                next_report = time.perf_counter() + 1.0
                progress(self.report(time.perf_counter() - wall0))

    def report(self, wall_s: float) -> RunProgress:
        out = self.output
        if out is None:
            return RunProgress(wall_s, self.sim.now_ns / _NS, "starting", 0.0, 0.0, 0.0, 0.0,
                               0.0, 0, ())
        status = out.status
        return RunProgress(wall_s, self.sim.now_ns / _NS, status.state.value,
                           status.route_distance_m, status.distance_done_m,
                           status.distance_left_m, status.eta_s, status.speed_mps,
                           len(self.findings), status.reasons)

    def finish(self) -> SegmentMap | None:
        """Grade the segment and write the final findings, segment, map and cloud."""
        mapper, folder, asset = self.mapper, self.folder, self.plan.asset
        segment = None
        if mapper is not None and isinstance(asset, PipeAsset | TunnelAsset):
            started = time.perf_counter()
            if isinstance(asset, PipeAsset):
                segment = mapper.finish(SiteFactors(dn_mm=float(asset.dn_mm)), asset.length_m)
            else:  # CJJ 181's segment indices are for drainage pipes: findings only
                segment = mapper.finish(None, abs(asset.to_m - asset.from_m))
            self.timing["mapper"] += time.perf_counter() - started
            for graded in segment.findings:
                f = graded.finding
                lat, lon, _ = self.site_frame.to_geodetic(np.array([f.position_m]))[0]
                photo = None
                if f.id not in self.findings and f.best_stamp_ns:  # flushed at the end
                    best = min(self.photos, key=lambda p: abs(p[0] - f.best_stamp_ns),
                               default=None)
                    if best is not None:
                        photo = folder.add_photo(f"{f.id}.jpg", best[1], best[0], f.start_m,
                                                 "finding")
                folder.add_finding(graded, float(lat), float(lon), photo,
                                   stamp_ns=f.last_stamp_ns or self.sim.now_ns)
            # Confirmed on the way but not in the final map: rejected by the lidar, or merged
            final_ids = {g.finding.id for g in segment.findings}
            rejected = {line.split(" ", 1)[0] for line in segment.ungraded}
            for finding_id in self.findings.keys() - final_ids:
                folder.set_finding_status(finding_id,
                                          "rejected" if finding_id in rejected else "merged")
            if segment.evaluation is not None:
                folder.set_segment(segment.evaluation)
        if self.scans:
            with contextlib.suppress(Exception):
                folder.write_map(self.grid)
            if len(self.cloud):
                with contextlib.suppress(Exception):
                    folder.write_cloud(self.cloud.points_m())
        return segment


class _AbortError(Exception):
    """End the mission early (aborted) with this reason."""


def run_simulated_mission(plan_path: str | Path, out_dir: str | Path, world: str | None = None,
                          progress: Callable[[RunProgress], None] | None = None,
                          config: RunConfig | None = None,
                          plan: MissionPlan | None = None) -> MissionResult:
    """Run the plan in the simulator, writing the mission folder ``out_dir``.

    ``plan``: an already loaded (possibly modified) plan instead of reading ``plan_path``.
    """
    config = config or RunConfig()
    plan = plan or load_plan(plan_path)
    world_name = plan_world(plan, world)
    site = load_plan_site(plan)
    folder = MissionFolder.create(out_dir, plan, world=world_name)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    state = "aborted"
    reason: str | None = "the runner failed"
    mission: _Mission | None = None
    segment = None
    try:
        mission = _Mission(plan, site, world_name, folder, config)
        try:
            mission.run(progress)
            out = mission.output
            assert out is not None
            state = "completed" if out.status.state is MissionState.COMPLETED else "aborted"
            reason = out.status.end_reason
        except _AbortError as err:
            state, reason = "aborted", str(err)
        segment = mission.finish()
    except KeyboardInterrupt:
        state, reason = "interrupted", "stopped by the operator (Ctrl-C)"
        raise
    except Exception as err:
        state, reason = "aborted", f"runner error: {type(err).__name__}: {err}"
        raise
    finally:
        folder.add_events([{"stamp_ns": mission.sim.now_ns if mission else 0, "kind": "closed",
                            "state": state, "reason": reason}])
        folder.close(state, reason, merge=config.merge_recording)
    assert mission is not None
    sim = mission.sim
    truth: tuple[TruthDefect, ...] = ()
    leg = plan.route.path_legs()[0]
    reached_m = leg.from_m + math.copysign(mission.outbound_m, leg.to_m - leg.from_m)
    if sim.truth.pipe is not None:
        truth = tuple(d for d in sim.truth.pipe.defects if d.distance_m <= reached_m - 1.0)
    elif sim.truth.tunnel is not None and mission.axis is not None:
        truth = tuple(d for d in tunnel_truth(sim.truth, mission.axis)
                      if d.distance_m <= reached_m - 1.0)
    out = mission.output
    return MissionResult(
        folder=Path(out_dir), state=state, reason=reason, world=world_name,
        distance_done_m=out.status.distance_done_m if out else 0.0,
        sim_time_s=sim.now_ns / _NS, wall_time_s=time.perf_counter() - wall0,
        cpu_time_s=time.process_time() - cpu0,
        findings=len(segment.findings) if segment is not None else len(mission.findings),
        segment=segment, truth_defects=truth, outbound_m=mission.outbound_m,
        distance_error_m=mission.distance_error_m, position_error_m=mission.position_error_m,
        timing_s={k: round(v, 2) for k, v in mission.timing.items()}
        | {"lidar_sim": round(sim.timing_s["lidar"], 2),
           "camera_sim": round(sim.timing_s["camera"], 2),
           "frames_detected": float(mission.frames_detected)})


def result_summary(result: MissionResult) -> dict[str, Any]:
    """JSON-ready summary of a result (``crawler mission run`` prints it)."""
    return {"folder": str(result.folder), "state": result.state, "reason": result.reason,
            "world": result.world, "distance_done_m": round(result.distance_done_m, 2),
            "outbound_m": round(result.outbound_m, 2), "findings": result.findings,
            "sim_time_s": round(result.sim_time_s, 1),
            "wall_time_s": round(result.wall_time_s, 1),
            "cpu_time_s": round(result.cpu_time_s, 1),
            "distance_error_m": None if result.distance_error_m is None
            else round(result.distance_error_m, 3),
            "position_error_m": None if result.position_error_m is None
            else round(result.position_error_m, 3), "timing_s": result.timing_s}


def main_json(result: MissionResult) -> str:
    """The summary as one JSON line."""
    return json.dumps(result_summary(result))
