"""``crawler sim WORLD``: the simulator, the real driver node and a driver in one process.

The simulated crawler's MCU is served on a pty; ``crawler_driver`` opens it like real
hardware and runs on simulated time. The crawler is driven along the world's route (pure
pursuit on ground truth), by keyboard, or not at all (another process publishes /cmd_vel).
With ``--out`` the run leaves camera frames (every few metres and at each ground-truth
defect), a top-down lidar map, the true trajectory and a summary in that folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import rclpy
from numpy.typing import NDArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.utilities import try_shutdown

from crawler.config import BridgeConfig, CrawlerConfig, LocalizationConfig, MountsConfig
from crawler.errors import CrawlerError
from crawler.teleop import HELP, Teleop, raw_terminal, read_key
from crawler_driver.driver_node import CrawlerDriver
from crawler_navigation.localizer_node import LocalizerNode
from crawler_navigation.slam_node import SlamNode
from crawler_sim.route_driver import RouteDriver
from crawler_sim.sim_node import SimNode
from navigation.site import dump_site, site_from_truth
from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.simulation import (
    CameraFrame,
    LidarFrame,
    SimConfig,
    SimEvent,
    Simulation,
)

MAP_RESOLUTION_M = 0.05
MAP_SLICE_HALF_M = 0.15


@dataclass
class SimOptions:
    """What ``crawler sim`` was asked to do."""

    world: str
    drive: str = "route"
    speed_mps: float = 0.3
    rtf: float = 0.0
    duration_s: float | None = None
    out: Path | None = None
    camera: bool = True
    lidar: bool = True
    seed: int = 0
    frame_every_m: float = 10.0
    planar_scan_samples: int = 0
    localize: bool = False


@dataclass
class RunOutputs:
    """Collects what a run shows: frames, a lidar map, the true trajectory."""

    out: Path
    frame_every_m: float
    defect_distances_m: dict[str, float] = field(default_factory=dict)
    frames_saved: list[str] = field(default_factory=list)
    _next_frame_m: float = 0.0
    _pending_defects: dict[str, float] = field(default_factory=dict)
    _cloud: list[NDArray[np.float32]] = field(default_factory=list)
    _trajectory: list[str] = field(default_factory=list)
    _scans: int = 0

    def __post_init__(self) -> None:
        (self.out / "frames").mkdir(parents=True, exist_ok=True)
        # A defect is photographed from 1.2 m before it, as a crew's camera would see it.
        self._pending_defects = {k: d - 1.2 for k, d in self.defect_distances_m.items()}

    def __call__(self, sim: Simulation, events: list[SimEvent]) -> None:
        """Listener of ``SimNode``: keep what is worth keeping from this step."""
        distance = None
        for event in events:
            if isinstance(event, LidarFrame):
                self._scans += 1
                if self._scans % 5 == 0:
                    # A slice around the sensor's height: walls, not floor and ceiling.
                    T = event.T_world_sensor
                    points = event.scan.points_m @ T[:3, :3].T.astype(np.float32) + T[:3, 3]
                    wall = np.abs(points[:, 2] - T[2, 3]) < MAP_SLICE_HALF_M
                    self._cloud.append(points[wall].astype(np.float32))
                t = sim.T_world_base()[:3, 3]
                self._trajectory.append(f"{event.stamp_ns * 1e-9:.3f} {t[0]:.4f} {t[1]:.4f} "
                                        f"{t[2]:.4f} 0 0 0 1")
            elif isinstance(event, CameraFrame):
                distance = sim.route_distance_m() if distance is None else distance
                self._maybe_save(event, distance)

    def _maybe_save(self, frame: CameraFrame, distance_m: float) -> None:
        names = [f"at_{distance_m:06.1f}m"] if distance_m >= self._next_frame_m else []
        if names:
            self._next_frame_m = distance_m + self.frame_every_m
        for defect, at_m in list(self._pending_defects.items()):
            if distance_m >= at_m:
                names.append(f"defect_{defect}_at_{distance_m:06.1f}m")
                del self._pending_defects[defect]
        for name in names:
            cv2.imwrite(str(self.out / "frames" / f"{name}.png"), frame.image_bgr)
            self.frames_saved.append(f"frames/{name}.png")

    def finish(self, sim: Simulation, wall_s: float) -> dict[str, object]:
        """Write the lidar map, trajectory and summary; return the summary."""
        (self.out / "trajectory_truth.tum").write_text("\n".join(self._trajectory) + "\n")
        map_file = self._write_map()
        sheet = self._write_contact_sheet()
        summary: dict[str, object] = {
            "world": sim.world.name, "sim_time_s": round(sim.now_ns * 1e-9, 2),
            "wall_time_s": round(wall_s, 2),
            "real_time_factor": round(sim.now_ns * 1e-9 / max(wall_s, 1e-9), 2),
            "route_distance_m": round(sim.route_distance_m(), 2),
            "route_length_m": round(sim.route.length_m, 2),
            "body_distance_m": round(sim.body.state.distance_m, 2),
            "track_distance_m": round(sum(sim.mcu.track_pos_m) / 2, 2),
            "tether_m": round(sim.mcu.tether_m, 2),
            "frames": self.frames_saved, "lidar_map": map_file, "contact_sheet": sheet,
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _write_contact_sheet(self) -> str | None:
        """The defect frames side by side, labelled, in one picture."""
        frames = [f for f in self.frames_saved if "/defect_" in f]
        if not frames:
            return None
        tiles = []
        for name in frames:
            image = cv2.imread(str(self.out / name))
            if image is None:
                continue
            tile = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
            label = Path(name).stem.removeprefix("defect_").replace("_at_", " @ ")
            cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1,
                        cv2.LINE_AA)
            tiles.append(tile)
        columns = 4
        while len(tiles) % columns:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
        cv2.imwrite(str(self.out / "contact_sheet.png"), np.vstack(rows))
        return "contact_sheet.png"

    def _write_map(self) -> str | None:
        if not self._cloud:
            return None
        points = np.concatenate(self._cloud)
        lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        size = np.ceil((hi - lo) / MAP_RESOLUTION_M).astype(int) + 1
        cells = ((points[:, :2] - lo) / MAP_RESOLUTION_M).astype(int)
        counts = np.zeros((size[1], size[0]), dtype=np.float32)
        np.add.at(counts, (size[1] - 1 - cells[:, 1], cells[:, 0]), 1.0)
        image = (255 * (1.0 - np.clip(np.log1p(counts) / 3.0, 0, 1))).astype(np.uint8)
        cv2.imwrite(str(self.out / "lidar_map.png"), image)
        return "lidar_map.png"


def _defects(sim: Simulation) -> dict[str, float]:
    """Route distance of each ground-truth pipe defect."""
    pipe = sim.truth.pipe
    if pipe is None:
        return {}
    return {f"{d.id}_{d.code}": d.distance_m + pipe.datum_route_distance_m for d in pipe.defects}


def run_sim(options: SimOptions, progress: bool = True) -> dict[str, object]:
    """Run ``crawler sim``; return its summary (empty without ``out``)."""
    config = SimConfig(seed=options.seed, camera=options.camera, lidar=options.lidar,
                       planar_scan_samples=options.planar_scan_samples)
    with tempfile.TemporaryDirectory(prefix="crawler-sim-") as tmp:
        rclpy.init()
        nodes: list[rclpy.node.Node] = []
        sim_node: SimNode | None = None
        driver: CrawlerDriver | None = None
        executor = SingleThreadedExecutor()
        spinner = threading.Thread(target=executor.spin, daemon=True)
        try:
            try:
                sim_node = SimNode(options.world, Path(tmp) / "mcu", options.rtf, config)
            except SimError as err:
                raise CrawlerError(str(err)) from err
            sim = sim_node.sim
            outputs = None
            if options.out is not None:
                outputs = RunOutputs(options.out, options.frame_every_m, _defects(sim))
                sim_node.listeners.append(outputs)
            sim_time = [Parameter("use_sim_time", value=True)]
            driver = CrawlerDriver(CrawlerConfig(bridge=BridgeConfig(port=str(sim_node.link_path))),
                                   parameter_overrides=sim_time)
            nodes = [sim_node, driver]
            localizer = None
            if options.localize:
                localizer = _localization_nodes(sim, Path(tmp), sim_time, nodes)
            route_driver = None
            teleop = None
            if options.drive == "teleop":
                teleop = Teleop(parameter_overrides=sim_time)
                nodes.append(teleop)
            if options.drive == "route":
                route_driver = RouteDriver(sim.route, options.speed_mps,
                                           parameter_overrides=sim_time)
                nodes.append(route_driver)
            for node in nodes:
                executor.add_node(node)
            sim_node.start()
            driver.trigger_configure()
            driver.trigger_activate()
            spinner.start()
            wall_start = time.monotonic()
            if teleop is not None:
                _teleop(sim_node, teleop, options)
            else:
                _wait(sim_node, route_driver, options, progress, wall_start, localizer)
            wall_s = time.monotonic() - wall_start
            if sim_node.error is not None:
                raise CrawlerError(f"simulation failed: {sim_node.error}")
            return outputs.finish(sim, wall_s) if outputs is not None else {}
        finally:
            executor.shutdown(timeout_sec=2.0)
            if spinner.is_alive():
                spinner.join(2.0)
            if driver is not None:
                driver.shutdown_hardware()
            if sim_node is not None:
                sim_node.stop()
            for node in nodes:
                node.destroy_node()
            try_shutdown()


def _teleop(sim_node: SimNode, teleop: Teleop, options: SimOptions) -> None:
    print(HELP, flush=True)
    sim = sim_node.sim
    with raw_terminal():
        while sim_node.running:
            key = read_key(0.2)
            if key is not None and not teleop.key(key):
                break
            if options.duration_s is not None and sim.now_ns * 1e-9 >= options.duration_s:
                break
            s = sim.body.state
            print(f"\r  cmd {teleop.linear_mps:+.2f} m/s {teleop.angular_radps:+.1f} rad/s  "
                  f"route {sim.route_distance_m():6.1f} m  pose ({s.x_m:7.2f}, {s.y_m:6.2f})  ",
                  end="", flush=True)
    print()


def _localization_nodes(sim: Simulation, tmp: Path, sim_time: list[Parameter],
                        nodes: list[rclpy.node.Node]) -> LocalizerNode:
    """The slam and localizer nodes, on a site file derived from the world's ground truth."""
    site = site_from_truth(sim.truth)
    if site.tether is not None:  # the cable counter is calibrated before a mission
        site = dataclasses.replace(site, tether=dataclasses.replace(
            site.tether, stretch_nominal=sim.config.tether_stretch, stretch_sigma=0.001))
    site_file = tmp / "site.yaml"
    site_file.write_text(dump_site(site))
    mounts = MountsConfig(lidar_xyz_m=tuple(float(v) for v in sim.T_base_lidar[:3, 3]))
    config = CrawlerConfig(mounts=mounts,
                           localization=LocalizationConfig(site_file=str(site_file)))
    slam = SlamNode(config, parameter_overrides=sim_time)
    localizer = LocalizerNode(config, parameter_overrides=sim_time)
    nodes += [slam, localizer]
    return localizer


def _wait(sim_node: SimNode, route_driver: RouteDriver | None, options: SimOptions,
          progress: bool, wall_start: float, localizer: LocalizerNode | None = None) -> None:
    sim = sim_node.sim
    last_print = 0.0
    while sim_node.running:
        time.sleep(0.2)
        sim_s = sim.now_ns * 1e-9
        if options.duration_s is not None and sim_s >= options.duration_s:
            break
        if route_driver is not None and route_driver.done.is_set():
            break
        wall = time.monotonic() - wall_start
        if progress and wall - last_print >= 2.0:
            last_print = wall
            s = sim.body.state
            print(f"  sim {sim_s:7.1f} s  x{sim_s / max(wall, 1e-9):4.1f} real time  "
                  f"route {sim.route_distance_m():6.1f}/{sim.route.length_m:.0f} m  "
                  f"pose ({s.x_m:7.2f}, {s.y_m:6.2f}, {s.z_m:5.2f}) "
                  f"yaw {math.degrees(s.yaw_rad):6.1f} deg  tether {sim.mcu.tether_m:6.1f} m"
                  + _localization_line(sim, localizer), flush=True)


def _localization_line(sim: Simulation, localizer: LocalizerNode | None) -> str:
    if localizer is None or not localizer.localizer.initialized:
        return ""
    estimate = localizer.localizer.estimate()
    error_m = float(np.linalg.norm(estimate.position_m - sim.T_world_base()[:3, 3]))
    sigma_m = math.sqrt(max(float(np.trace(estimate.covariance[:2, :2])), 0.0))
    return (f"  localized: {estimate.axis} {estimate.distance_m or 0.0:6.2f} m, "
            f"error {error_m:.2f} m (sigma {sigma_m:.2f})")
