"""``crawler bench sim``: real-time factor of the headless simulator in every world.

Each world runs with its robot's 16 x 1800 lidar and 640 x 480 camera at 10 Hz, driving its
route (pure pursuit on ground truth, commands straight into the MCU model, as the driver
would send them). Figures per world: ``real_time_factor`` (simulated / wall seconds),
``lidar_rays_per_s`` and ``camera_fps`` (throughput of each sensor model while running).
Baselines in the same run: the same drive with sensors off (the ceiling set by physics),
and Open3D's bare ray casting of one camera frame's rays (the floor under the camera).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from firmware_bridge.messages import SetTwist
from navigation.path import pure_pursuit
from sim_worlds.simulator.simulation import SimConfig, Simulation, available_worlds

TARGETS = {"real_time_factor": 3.0}
COMMAND_PERIOD_STEPS = 20  # 10 Hz of commands at the 200 Hz physics step


def drive(sim: Simulation, sim_seconds: float, speed_mps: float = 0.5) -> float:
    """Drive the route for ``sim_seconds``; return the wall time it took."""
    steps = round(sim_seconds / sim.config.step_s)
    started = time.perf_counter()
    for i in range(steps):
        if i % COMMAND_PERIOD_STEPS == 0:
            s = sim.body.state
            linear, angular = pure_pursuit(sim.route, s.x_m, s.y_m, s.yaw_rad, 0.8, speed_mps)
            sim.mcu.handle(SetTwist(linear, angular))
        sim.step()
    return time.perf_counter() - started


def open3d_cast_rate(sim: Simulation) -> float:
    """Rays per second of one camera frame cast straight through the scene (no shading)."""
    camera = sim.camera
    if camera is None:
        return 0.0
    spec = camera.spec
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(spec.width_px * spec.height_px, 3))
    directions[:, 0] = np.abs(directions[:, 0]) + 2.0  # a forward cone, as a camera sees
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    T = sim.T_world_base() @ sim.T_base_camera
    directions = directions @ T[:3, :3].T
    origins = np.broadcast_to(T[:3, 3], directions.shape).copy()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sim.scene.cast(origins, directions, spec.far_clip_m)
        best = min(best, time.perf_counter() - started)
    return len(directions) / best


def run(quick: bool = False, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark and return its JSON-ready result."""
    sim_seconds = 4.0 if quick else 20.0
    worlds: dict[str, Any] = {}
    for world in available_worlds():
        progress(f"{world}: {sim_seconds:.0f} s simulated with lidar + camera at 10 Hz")
        sim = Simulation(world, SimConfig(seed=1))
        sim.step()  # first frame warms the texture cache
        sim.timing_s = dict.fromkeys(sim.timing_s, 0.0)
        sim.counts = dict.fromkeys(sim.counts, 0)
        wall_s = drive(sim, sim_seconds)
        lidar_rays = sim.counts["lidar"] * (sim.lidar.spec.horizontal_samples
                                            * sim.lidar.spec.vertical_samples if sim.lidar else 0)
        bare = Simulation(world, SimConfig(seed=1, lidar=False, camera=False))
        bare_wall_s = drive(bare, sim_seconds)
        worlds[world] = {
            "real_time_factor": round(sim_seconds / wall_s, 2),
            "lidar_rays_per_s": round(lidar_rays / max(sim.timing_s["lidar"], 1e-9)),
            "camera_fps": round(sim.counts["camera"] / max(sim.timing_s["camera"], 1e-9), 1),
            "camera_ms_per_frame": round(1e3 * sim.timing_s["camera"]
                                         / max(sim.counts["camera"], 1), 1),
            "lidar_ms_per_scan": round(1e3 * sim.timing_s["lidar"]
                                       / max(sim.counts["lidar"], 1), 2),
            "sim_seconds": sim_seconds,
            "wall_seconds": round(wall_s, 2),
            "baseline": {
                "sensors_off_real_time_factor": round(sim_seconds / bare_wall_s, 1),
                "open3d_cast_rays_per_s": round(open3d_cast_rate(sim)),
            },
        }
        progress(f"{world}: x{worlds[world]['real_time_factor']} real time, camera "
                 f"{worlds[world]['camera_ms_per_frame']} ms/frame, lidar "
                 f"{worlds[world]['lidar_ms_per_scan']} ms/scan")
    met = all(w["real_time_factor"] >= TARGETS["real_time_factor"] for w in worlds.values())
    return {"benchmark": "sim", "worlds": worlds, "targets": TARGETS, "targets_met": met,
            "cores": os.cpu_count()}
