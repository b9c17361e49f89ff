"""One world, one crawler, stepped in simulated time: MCU motors -> body -> sensors.

Each step advances the MCU model (motors, encoders, IMU, battery: the firmware emulator),
moves the body with the tracks' speeds less the slip of the ground under it, settles it on
the floor, feeds the true motion and the world's gas back to the MCU, and fires the
exteroceptive sensors that have come due: lidar, camera, BeiDou (under open sky only) and
5G indoor positioning (from antenna geometry, with NLOS outliers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from firmware_bridge.emulator import McuModel
from navigation.geodesy import GeodeticOrigin, SiteFrame
from navigation.path import Polyline
from sim_worlds.simulator.body import BodyParams, BodyState, CrawlerBody
from sim_worlds.simulator.camera import Camera, CameraHead, Lamp
from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.lidar import Lidar, LidarScan, planar_spec
from sim_worlds.simulator.scene import RaycastScene
from sim_worlds.simulator.sdf import SdfWorld, SensorSpec, load_world
from sim_worlds.worldgen.truth import WorldTruth, load_truth

FloatArray = NDArray[np.float64]
WORLDS_DIR = Path(__file__).resolve().parents[1] / "worlds"
_NS = 1_000_000_000


def available_worlds() -> list[str]:
    """Names of the worlds shipped in ``sim_worlds/worlds``."""
    return sorted(p.stem for p in WORLDS_DIR.glob("*.sdf"))


def world_path(name_or_path: str | Path) -> Path:
    """The SDF file of a shipped world name, or the given path; ``SimError`` if neither."""
    path = Path(name_or_path)
    if path.suffix == ".sdf":
        if not path.is_file():
            raise SimError(f"{path}: no such world file")
        return path
    candidate = WORLDS_DIR / f"{name_or_path}.sdf"
    if not candidate.is_file():
        raise SimError(f"unknown world '{name_or_path}' (available: "
                       f"{', '.join(available_worlds())})")
    return candidate


@dataclass(frozen=True)
class SimConfig:
    """Rates and error models of the simulation (sensor geometry comes from the SDF)."""

    step_s: float = 0.005
    seed: int = 0
    robot_model: str = "crawler"
    lidar: bool = True
    camera: bool = True
    lidar_rate_hz: float | None = None
    """None: the SDF sensor's update_rate."""
    camera_rate_hz: float | None = None
    lidar_dropout_probability: float = 0.002
    planar_scan_samples: int = 0
    """> 0: also a 2D 360-degree scan with this many samples at the lidar, at its rate."""
    slip_dry: float = 0.02
    slip_wet: float = 0.06
    slip_sediment: float = 0.18
    tether_stretch: float = 0.004
    radio_rate_hz: float = 1.0
    radio_sigma_m: float = 0.47
    """Per-axis sigma: 90 % of line-of-sight fixes within 1 m horizontally."""
    radio_range_m: float = 60.0
    radio_nlos_probability: float = 0.05
    gnss_outlier_probability: float = 0.02
    daylight_ambient: float = 0.4


@dataclass(frozen=True)
class LidarFrame:
    """A lidar sweep and where the sensor was at its end."""

    stamp_ns: int
    scan: LidarScan
    T_world_sensor: FloatArray


@dataclass(frozen=True)
class PlanarScanFrame:
    """A 2D scan in the lidar's horizontal plane (``scan.ranges_m`` has one row)."""

    stamp_ns: int
    scan: LidarScan


@dataclass(frozen=True)
class CameraFrame:
    """A camera image (8-bit BGR), the camera pose, the lens's horizontal field of view and
    the pan-tilt head's state (``T_world_camera`` includes the head's turn)."""

    stamp_ns: int
    image_bgr: NDArray[np.uint8]
    T_world_camera: FloatArray
    horizontal_fov_rad: float = 0.0
    head: CameraHead = field(default_factory=CameraHead)


@dataclass(frozen=True)
class GnssFix:
    """A BeiDou fix in CGCS2000; ``outlier`` is ground truth for scoring only."""

    stamp_ns: int
    latitude_deg: float
    longitude_deg: float
    height_m: float
    sigma_horizontal_m: float
    sigma_vertical_m: float
    outlier: bool


@dataclass(frozen=True)
class RadioFix:
    """A 5G indoor position fix in the site frame; ``nlos`` is ground truth for scoring only."""

    stamp_ns: int
    position_m: FloatArray
    sigma_m: float
    nlos: bool


SimEvent = LidarFrame | PlanarScanFrame | CameraFrame | GnssFix | RadioFix


class Simulation:
    """A world and a crawler stepped together; ``step()`` returns the sensor events due."""

    def __init__(self, world: str | Path, config: SimConfig | None = None,
                 mcu: McuModel | None = None) -> None:
        self.config = config or SimConfig()
        cfg = self.config
        path = world_path(world)
        self.world: SdfWorld = load_world(path, exclude_models=(cfg.robot_model,))
        self.truth: WorldTruth = load_truth(path.with_name(f"{path.stem}.truth.yaml"))
        self.scene = RaycastScene.from_world(self.world)
        self.mcu = mcu or McuModel(seed=cfg.seed)
        self.step_mcu: Callable[[int], None] = self.mcu.step
        """Advances the MCU to a time in us; a node swaps in its pty emulator's step."""
        self.now_ns = 0
        self._rng = np.random.default_rng(cfg.seed)
        self._transparent = np.array([g.transparency > 0.0 for g in self.world.geometries])
        o = self.truth.geodetic_origin
        self.site = SiteFrame(GeodeticOrigin(o.latitude_deg, o.longitude_deg, o.height_m,
                                             o.x_axis_azimuth_deg))
        self.route = Polyline(self.truth.route.waypoints_m)
        start = self.truth.robot_start
        self.body = CrawlerBody(BodyParams(track_width_m=self.mcu.params.track_width_m),
                                BodyState(start.x_m, start.y_m, start.z_m, yaw_rad=start.yaw_rad),
                                floor=self.floor_heights)
        self.body.settle()
        self._signed_distance_m = 0.0
        self.timing_s = {"lidar": 0.0, "camera": 0.0}
        """Wall time spent in each sensor model, for benchmarks and progress output."""
        self.counts = {"lidar": 0, "camera": 0}
        self._setup_sensors()

    # --- setup -------------------------------------------------------------------------------

    def _setup_sensors(self) -> None:
        cfg = self.config
        sensors = self.world.sensors_of(cfg.robot_model)
        base = next((link for link in self.world.links
                     if link.model == cfg.robot_model and link.name.endswith("::base_link")), None)
        if base is None:
            raise SimError(f"{self.world.path}: robot '{cfg.robot_model}' has no base_link")
        T_base_world = np.linalg.inv(base.T_world_link)

        def mount(kinds: tuple[str, ...]) -> SensorSpec | None:
            return next((s for s in sensors if s.sensor_type in kinds), None)

        lidar, camera = mount(("gpu_lidar", "lidar")), mount(("camera",))
        navsat = mount(("navsat", "gps"))
        self.lidar: Lidar | None = None
        self.camera: Camera | None = None
        self.wide_fov_rad = 0.0
        """The camera lens's widest horizontal field of view (the SDF's)."""
        self.camera_head = CameraHead()
        """Where the camera's pan-tilt head points and its zoom (``set_camera_head``)."""
        self._period_ns: dict[str, int] = {"radio": round(_NS / cfg.radio_rate_hz)}
        if cfg.lidar and lidar is not None and lidar.lidar is not None:
            self.lidar = Lidar(lidar.lidar, cfg.lidar_dropout_probability, seed=cfg.seed + 1)
            self.T_base_lidar = T_base_world @ lidar.T_world_sensor
            self._period_ns["lidar"] = round(_NS / (cfg.lidar_rate_hz or lidar.update_rate_hz))
        self.planar: Lidar | None = None
        if cfg.planar_scan_samples > 0 and lidar is not None and lidar.lidar is not None:
            spec = planar_spec(cfg.planar_scan_samples, lidar.lidar.range_max_m,
                               lidar.lidar.noise_stddev_m)
            self.planar = Lidar(spec, cfg.lidar_dropout_probability, seed=cfg.seed + 3)
        if cfg.camera and camera is not None and camera.camera is not None:
            lamp_light = next((light for light in self.world.lights
                               if light.attached_to and light.attached_to.startswith(
                                   f"{cfg.robot_model}::")), None)
            lamp = Lamp.from_light(lamp_light, camera.T_world_sensor) if lamp_light else None
            self.camera = (Camera(camera.camera, lamp, seed=cfg.seed + 2) if lamp
                           else Camera(camera.camera, seed=cfg.seed + 2))
            self.T_base_camera = T_base_world @ camera.T_world_sensor
            self.wide_fov_rad = camera.camera.horizontal_fov_rad
            self._period_ns["camera"] = round(_NS / (cfg.camera_rate_hz or camera.update_rate_hz))
        self.navsat = navsat
        if navsat is not None:
            self.T_base_navsat = T_base_world @ navsat.T_world_sensor
            self._period_ns["gnss"] = round(_NS / navsat.update_rate_hz)
        self._next_due_ns = dict.fromkeys(self._period_ns, 0)
        self._T_world_lidar_last: FloatArray | None = None

    def set_camera_head(self, head: CameraHead) -> None:
        """Turn and zoom the camera (takes effect from the next frame); ``SimError`` for a
        zoom the lens cannot do."""
        if self.camera is None:
            raise SimError("set_camera_head: this simulation has no camera")
        self.camera.zoom_to(head.horizontal_fov_rad or self.wide_fov_rad)
        self.camera_head = head

    # --- world queries -----------------------------------------------------------------------

    def floor_heights(self, points_xy: FloatArray, z_hint_m: float) -> FloatArray:
        """Height of the supporting floor under each (x, y); water is not a floor."""
        n = len(points_xy)
        origins = np.column_stack([points_xy, np.full(n, z_hint_m)])
        down = np.tile([0.0, 0.0, -1.0], (n, 1))
        heights = np.full(n, np.nan)
        pending = np.arange(n)
        for _ in range(3):  # look through up to two transparent layers (water)
            hits = self.scene.cast(origins[pending], down[pending], 2.0)
            solid = hits.hit & ~self._transparent[np.maximum(hits.geometry_index, 0)]
            heights[pending[solid]] = hits.point_m[solid, 2]
            through = hits.hit & ~solid
            origins[pending[through]] = hits.point_m[through] - [0.0, 0.0, 1e-3]
            pending = pending[through]
            if pending.size == 0:
                break
        return heights

    def slip_at(self, position_m: FloatArray) -> float:
        """Fraction of track motion lost to slip on the ground at ``position_m``."""
        cfg, truth = self.config, self.truth
        if truth.pipe is not None:
            distance = self.route.project(position_m).distance_m - truth.pipe.datum_route_distance_m
            for defect in truth.pipe.defects:
                # A defect's distance is its upstream start; it extends downstream.
                end_m = defect.distance_m + defect.extent_length_m
                if defect.code == "CJ" and defect.distance_m <= distance <= end_m:
                    return cfg.slip_sediment
            return cfg.slip_wet if truth.pipe.water_depth_m > 0.0 else cfg.slip_dry
        if truth.tunnel is not None:
            for feature in truth.tunnel.surface_features:
                if "water" in feature.kind and feature.surface == "floor":
                    reach = 0.5 * max(feature.size_m)
                    if math.dist(feature.centre_m[:2], position_m[:2]) <= reach:
                        return cfg.slip_wet
        return cfg.slip_dry

    def gas_at(self, position_m: FloatArray) -> tuple[float, float, float, float]:
        """(O2 %, CH4 %vol, H2S ppm, CO ppm) at ``position_m``."""
        tunnel = self.truth.tunnel
        if tunnel is None:
            return 20.9, 0.0, 0.0, 0.0
        point = (float(position_m[0]), float(position_m[1]), float(position_m[2]))
        zone = next((z for z in tunnel.gas_zones if z.box.contains(point)), tunnel.ambient_gas)
        return zone.o2_pct_vol, zone.ch4_pct_vol, zone.h2s_ppm, zone.co_ppm

    def under_open_sky(self, position_m: FloatArray) -> bool:
        """Whether ``position_m`` is below a shaft or manhole open to the sky."""
        x, y, z = (float(v) for v in position_m)
        for zone in self.truth.sky_zones:
            lo, hi = zone.box.min_m, zone.box.max_m
            if lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1] and lo[2] - 0.5 <= z <= hi[2]:
                return True
        return False

    def T_world_base(self) -> FloatArray:
        """True pose of base_link."""
        return self.body.state.T_world_base()

    def route_distance_m(self) -> float:
        """True distance along the route (the pipe/tunnel axis) of base_link."""
        return self.route.project(self.T_world_base()[:3, 3]).distance_m

    # --- stepping ----------------------------------------------------------------------------

    def step(self) -> list[SimEvent]:
        """Advance one step of ``config.step_s``; return the sensor events that came due."""
        dt_s = self.config.step_s
        self.now_ns += round(dt_s * _NS)
        # Motors: the MCU integrates its track speeds
        self.step_mcu(self.now_ns // 1000)
        left_mps, right_mps = self.mcu.track_mps
        # Body: tracks less slip, settled on the floor
        state = self.body.state
        yaw_before, speed_before = state.yaw_rad, state.speed_mps
        slip = self.slip_at(np.array([state.x_m, state.y_m, state.z_m]))
        self.body.step(dt_s, left_mps, right_mps, slip)
        self._signed_distance_m += state.speed_mps * dt_s
        # World back into the MCU: true motion, attitude, cable, gas
        self._feed_mcu(dt_s, yaw_before, speed_before)
        # Exteroceptive sensors that are due
        return self._sensors_due()

    def _feed_mcu(self, dt_s: float, yaw_before: float, speed_before: float) -> None:
        state, env = self.body.state, self.mcu.env
        env.body_yaw_rate_radps = math.remainder(state.yaw_rad - yaw_before, math.tau) / dt_s
        env.body_accel_mps2 = (state.speed_mps - speed_before) / dt_s
        env.roll_rad, env.pitch_rad = state.roll_rad, state.pitch_rad
        env.tether_paid_out_m = max(0.0, self._signed_distance_m)
        env.tether_stretch = self.config.tether_stretch
        o2, ch4, h2s, co = self.gas_at(np.array([state.x_m, state.y_m, state.z_m]))
        env.o2_pct, env.ch4_pct_vol, env.h2s_ppm, env.co_ppm = o2, ch4, h2s, co

    def _due(self, name: str) -> bool:
        if name not in self._next_due_ns or self.now_ns < self._next_due_ns[name]:
            return False
        self._next_due_ns[name] += self._period_ns[name]
        return True

    def _sensors_due(self) -> list[SimEvent]:
        events: list[SimEvent] = []
        T_world_base = self.T_world_base()
        if self.lidar is not None and self._due("lidar"):
            started = time.perf_counter()
            T_world_lidar = T_world_base @ self.T_base_lidar
            scan = self.lidar.scan(self.scene, self.now_ns, T_world_lidar,
                                   self._T_world_lidar_last, self._period_ns["lidar"] * 1e-9)
            self._T_world_lidar_last = T_world_lidar
            events.append(LidarFrame(self.now_ns, scan, T_world_lidar))
            if self.planar is not None:
                planar = self.planar.scan(self.scene, self.now_ns, T_world_lidar)
                events.append(PlanarScanFrame(self.now_ns, planar))
            self._account("lidar", started)
        if self.camera is not None and self._due("camera"):
            started = time.perf_counter()
            T_world_camera = T_world_base @ self.T_base_camera
            if not self.camera_head.home:
                T_world_camera = T_world_camera @ self.camera_head.T_mount_camera()
            ambient = (self.config.daylight_ambient
                       if self.under_open_sky(T_world_camera[:3, 3]) else 0.0)
            # The MCU's lamp setting dims the lamp; at 0 (never set) it is on full.
            lamp = self.mcu.lamp_pct / 100.0 if self.mcu.lamp_pct else 1.0
            image = self.camera.render(self.scene, T_world_camera, lamp, ambient)
            events.append(CameraFrame(self.now_ns, image, T_world_camera,
                                      self.camera.spec.horizontal_fov_rad, self.camera_head))
            self._account("camera", started)
        if self.navsat is not None and self._due("gnss"):
            fix = self._gnss_fix((T_world_base @ self.T_base_navsat)[:3, 3])
            if fix is not None:
                events.append(fix)
        if self._due("radio"):
            radio = self._radio_fix(T_world_base[:3, 3])
            if radio is not None:
                events.append(radio)
        return events

    def _account(self, sensor: str, started: float) -> None:
        self.timing_s[sensor] += time.perf_counter() - started
        self.counts[sensor] += 1

    def _gnss_fix(self, antenna_m: FloatArray) -> GnssFix | None:
        if self.navsat is None or self.navsat.navsat is None or not self.under_open_sky(
                antenna_m):
            return None
        spec = self.navsat.navsat
        sigma_h, sigma_v = (spec.horizontal_position_noise_stddev_m,
                            spec.vertical_position_noise_stddev_m)
        error = self._rng.normal(0.0, 1.0, 3) * (sigma_h, sigma_h, sigma_v)
        outlier = bool(self._rng.random() < self.config.gnss_outlier_probability)
        if outlier:  # multipath off the shaft walls: a confident fix metres away
            angle = self._rng.uniform(0.0, math.tau)
            error[:2] += self._rng.uniform(8.0, 20.0) * np.array([math.cos(angle),
                                                                 math.sin(angle)])
        lat, lon, h = self.site.to_geodetic(antenna_m + error)[0]
        return GnssFix(self.now_ns, float(lat), float(lon), float(h), sigma_h, sigma_v, outlier)

    def _radio_fix(self, position_m: FloatArray) -> RadioFix | None:
        tunnel, cfg = self.truth.tunnel, self.config
        if tunnel is None or not tunnel.antennas:
            return None
        antennas = np.array([a.position_m for a in tunnel.antennas])
        offsets = antennas - position_m
        distances = np.linalg.norm(offsets, axis=1)
        nearest = int(np.argmin(distances))
        if distances[nearest] > cfg.radio_range_m:
            return None
        # Line of sight to the nearest antenna head
        origin = position_m + np.array([0.0, 0.0, 0.3])
        direction = antennas[nearest] - origin
        length = float(np.linalg.norm(direction))
        hit = self.scene.cast(origin[None], (direction / length)[None], length)
        los = not bool(hit.hit[0]) or float(hit.range_m[0]) >= length - 0.3
        nlos = (not los) or bool(self._rng.random() < cfg.radio_nlos_probability)
        error = self._rng.normal(0.0, cfg.radio_sigma_m, 3) * (1.0, 1.0, 0.5)
        if nlos:  # a reflected path: the fix is pulled metres along the gallery
            heading = self.route.heading_at(self.route.project(position_m).distance_m)
            error[:2] += self._rng.choice([-1.0, 1.0]) * self._rng.uniform(4.0, 20.0) * np.array(
                [math.cos(heading), math.sin(heading)])
        return RadioFix(self.now_ns, position_m + error, cfg.radio_sigma_m, nlos)
