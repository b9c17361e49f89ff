"""``crawler_sim``: the headless simulator as a ROS 2 node.

A thread steps a ``Simulation`` in simulated time (as fast as allowed by ``rtf``, the target
real-time factor; 0 runs unpaced), publishes ``/clock`` and the sensor topics, and serves the
MCU emulator on a pty so that the real ``crawler_driver`` talks to the simulated crawler.

Topics: ``/clock``, ``/points`` (PointCloud2, sensor frame ``lidar_link``), ``/scan``
(LaserScan, with ``SimConfig.planar_scan_samples``),
``/camera/image_raw`` + ``/camera/camera_info`` (``camera_link``), ``/gnss/fix`` (NavSatFix,
only under open sky), ``/radio/fix`` (PoseWithCovarianceStamped in ``map``), and
``/sim/ground_truth`` (Odometry ``map`` -> ``base_link``, for tests and scoring only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.utilities import try_shutdown
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, LaserScan, NavSatFix, PointCloud2

from crawler_sim import conversions
from firmware_bridge.emulator import PtyEmulator
from sim_worlds.simulator.simulation import (
    CameraFrame,
    GnssFix,
    LidarFrame,
    PlanarScanFrame,
    RadioFix,
    SimConfig,
    SimEvent,
    Simulation,
)

STATE_QOS = QoSProfile(depth=10)
CLOCK_PERIOD_NS = 10_000_000  # publish /clock at 100 Hz of simulated time
TRUTH_PERIOD_NS = 20_000_000  # ground truth at 50 Hz
SimListener = Callable[[Simulation, list[SimEvent]], None]


class SimNode(Node):
    """Owns a ``Simulation`` and its MCU pty; call ``start()`` to run, ``stop()`` to end."""

    def __init__(self, world: str, link_path: Path, rtf: float = 1.0,
                 config: SimConfig | None = None, **kwargs: Any) -> None:
        super().__init__("crawler_sim", **kwargs)
        self.sim = Simulation(world, config)
        self.rtf = rtf
        self.emulator = PtyEmulator(link_path, self.sim.mcu, external_clock=True)
        self.sim.step_mcu = self.emulator.step
        self.listeners: list[SimListener] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crawler_sim", daemon=True)
        self._pub_clock = self.create_publisher(Clock, "/clock", STATE_QOS)
        self._pub_points = self.create_publisher(PointCloud2, "/points", qos_profile_sensor_data)
        self._pub_scan = self.create_publisher(LaserScan, "/scan", qos_profile_sensor_data)
        self._pub_image = self.create_publisher(Image, "/camera/image_raw",
                                                qos_profile_sensor_data)
        self._pub_info = self.create_publisher(CameraInfo, "/camera/camera_info",
                                               qos_profile_sensor_data)
        self._pub_gnss = self.create_publisher(NavSatFix, "/gnss/fix", STATE_QOS)
        self._pub_radio = self.create_publisher(PoseWithCovarianceStamped, "/radio/fix",
                                                STATE_QOS)
        self._pub_truth = self.create_publisher(Odometry, "/sim/ground_truth", STATE_QOS)

    @property
    def link_path(self) -> Path:
        """Path of the MCU emulator's pty: give it to crawler_driver as its port."""
        return self.emulator.link_path

    def start(self) -> None:
        """Open the MCU pty and start stepping."""
        self.emulator.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop stepping and close the pty."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self.emulator.close()

    @property
    def running(self) -> bool:
        """Whether the simulation thread is stepping."""
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as err:  # noqa: BLE001  (reported to the owner, who exits with it)
            self.error = err
            self.get_logger().error(f"simulation stopped: {err}")

    def _loop(self) -> None:
        sim = self.sim
        wall_start, sim_start = time.monotonic(), sim.now_ns
        next_clock = next_truth = 0
        while not self._stop.is_set():
            events = sim.step()
            if sim.now_ns >= next_clock:
                self._pub_clock.publish(Clock(clock=conversions.stamp_msg(sim.now_ns)))
                next_clock = sim.now_ns + CLOCK_PERIOD_NS
            if sim.now_ns >= next_truth:
                state = sim.body.state
                self._pub_truth.publish(conversions.truth_msg(
                    sim.T_world_base(), sim.now_ns, state.speed_mps, "map", "base_link"))
                next_truth = sim.now_ns + TRUTH_PERIOD_NS
            for event in events:
                self._publish(event)
            for listener in self.listeners:
                listener(sim, events)
            if self.rtf > 0.0:
                # Pace: simulated time may run ahead of wall time only by the factor asked.
                ahead_s = (sim.now_ns - sim_start) * 1e-9 / self.rtf - (
                    time.monotonic() - wall_start)
                if ahead_s > 0.0:
                    self._stop.wait(ahead_s)

    def _publish(self, event: SimEvent) -> None:
        match event:
            case LidarFrame(_, scan, _):
                self._pub_points.publish(conversions.cloud_msg(scan, "lidar_link"))
            case PlanarScanFrame(_, scan):
                planar = self.sim.planar
                if planar is not None:
                    self._pub_scan.publish(conversions.laser_scan_msg(
                        scan, planar.spec.range_min_m, planar.spec.range_max_m, 0.1,
                        "lidar_link"))
            case CameraFrame(stamp_ns, image, _):
                self._pub_image.publish(conversions.image_msg(image, stamp_ns, "camera_link"))
                camera = self.sim.camera
                if camera is not None:
                    self._pub_info.publish(conversions.camera_info_msg(camera.spec, stamp_ns,
                                                                       "camera_link"))
            case GnssFix():
                self._pub_gnss.publish(conversions.navsat_msg(event, "gnss_link"))
            case RadioFix():
                self._pub_radio.publish(conversions.radio_msg(event, "map"))


def main(args: list[str] | None = None) -> None:
    """``ros2 run crawler_sim sim_node --ros-args -p world:=sewer_dn1000 -p link:=/tmp/mcu``."""
    rclpy.init(args=args)
    probe = rclpy.create_node("crawler_sim_params")
    world = probe.declare_parameter("world", "sewer_dn1000").value
    link = probe.declare_parameter("link", "/tmp/crawler_mcu").value
    rtf = probe.declare_parameter("rtf", 1.0).value
    probe.destroy_node()
    node = SimNode(str(world), Path(str(link)), float(rtf))
    node.start()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        node.destroy_node()
        try_shutdown()
