"""``make demo`` until the simulator lands: drive the emulated crawler through the real stack.

The MCU emulator serves a pty, the real ``crawler_driver`` node talks to it, and an operator
node drives a short scripted route over ``/cmd_vel`` while printing live telemetry. Then it
shows the e-stop latching and the driver riding out a vanished serial port.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.utilities import try_shutdown
from sensor_msgs.msg import BatteryState
from std_msgs.msg import Float32MultiArray, Float64
from std_srvs.srv import SetBool

from crawler.config import BridgeConfig, CrawlerConfig
from crawler_driver.driver_node import CrawlerDriver
from firmware_bridge.emulator import McuModel, PtyEmulator


@dataclass(frozen=True)
class Leg:
    """One piece of the scripted route."""

    label: str
    linear_mps: float
    angular_radps: float
    duration_s: float


ROUTE = (
    Leg("forward 1.8 m", 0.3, 0.0, 6.0),
    Leg("turn left 90 deg", 0.0, 0.5, math.pi / 2 / 0.5),
    Leg("forward 1.2 m", 0.3, 0.0, 4.0),
    Leg("stop", 0.0, 0.0, 1.0),
)


class Operator(Node):
    """Publishes /cmd_vel and keeps the latest telemetry for the live line."""

    def __init__(self) -> None:
        super().__init__("demo_operator")
        self.cmd_vel = self.create_publisher(Twist, "/cmd_vel", 10)
        self.estop = self.create_client(SetBool, "/set_estop")
        self.odom: Odometry | None = None
        self.path_m = 0.0
        self.battery: BatteryState | None = None
        self.tether_m = 0.0
        self.gas: list[float] = []
        self.link = "?"
        self.create_subscription(Odometry, "/odom/wheel", self._on_odom, 10)
        self.create_subscription(BatteryState, "/battery", self._on_battery, 10)
        self.create_subscription(Float64, "/tether/length", self._on_tether, 10)
        self.create_subscription(Float32MultiArray, "/gas", self._on_gas, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_odom(self, msg: Odometry) -> None:
        if self.odom is not None:
            a, b = self.odom.pose.pose.position, msg.pose.pose.position
            self.path_m += math.hypot(b.x - a.x, b.y - a.y)
        self.odom = msg

    def _on_battery(self, msg: BatteryState) -> None:
        self.battery = msg

    def _on_tether(self, msg: Float64) -> None:
        self.tether_m = msg.data

    def _on_gas(self, msg: Float32MultiArray) -> None:
        self.gas = list(msg.data)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("serial link"):
                self.link = status.message

    def drive(self, linear_mps: float, angular_radps: float) -> None:
        """Publish one velocity command."""
        msg = Twist()
        msg.linear.x, msg.angular.z = linear_mps, angular_radps
        self.cmd_vel.publish(msg)

    def line(self) -> str:
        """One line of live telemetry."""
        if self.odom is None:
            return "waiting for odometry..."
        pose, twist = self.odom.pose.pose, self.odom.twist.twist
        yaw_deg = math.degrees(2.0 * math.atan2(pose.orientation.z, pose.orientation.w))
        sigma_m = math.sqrt(max(self.odom.pose.covariance[0], 0.0))
        battery = f"{self.battery.percentage * 100:5.1f}%" if self.battery else "  ?  "
        gas = ("O2 {:4.1f}% CH4 {:4.2f}% H2S {:3.1f} CO {:3.1f}".format(*self.gas)
               if len(self.gas) == 4 else "gas ?")
        return (f"x {pose.position.x:6.2f} m  y {pose.position.y:6.2f} m  yaw {yaw_deg:6.1f} deg"
                f"  (sigma {sigma_m * 100:4.1f} cm)  v {twist.linear.x:5.2f} m/s  "
                f"tether {self.tether_m:5.2f} m  battery {battery}  {gas}  link: {self.link}")


def _run_for(operator: Operator, duration_s: float, linear: float, angular: float,
             label: str) -> None:
    end = time.monotonic() + duration_s
    next_print = 0.0
    while time.monotonic() < end:
        operator.drive(linear, angular)
        if time.monotonic() >= next_print:
            print(f"  [{label:>18}] {operator.line()}", flush=True)
            next_print = time.monotonic() + 0.5
        time.sleep(0.05)


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def run_bridge_demo(duration_scale: float = 1.0) -> int:
    """Run the demo; return the exit status."""
    with tempfile.TemporaryDirectory(prefix="crawler-demo-") as tmp:
        link = Path(tmp) / "mcu"
        emulator = PtyEmulator(link, McuModel(seed=7))
        emulator.start()
        config = CrawlerConfig(bridge=BridgeConfig(port=str(link)))
        rclpy.init()
        driver = CrawlerDriver(config)
        operator = Operator()
        # One thread: rclpy's MultiThreadedExecutor busy-waits and starves the serial threads
        # of the GIL on a 2-core machine (seen as 0.5 s gaps in /cmd_vel).
        executor = SingleThreadedExecutor()
        executor.add_node(driver)
        executor.add_node(operator)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        try:
            driver.trigger_configure()
            driver.trigger_activate()
            spinner.start()
            return _script(operator, emulator, duration_scale)
        finally:
            driver.shutdown_hardware()
            executor.shutdown(timeout_sec=2.0)
            driver.destroy_node()
            operator.destroy_node()
            try_shutdown()
            emulator.close()


def _script(operator: Operator, emulator: PtyEmulator, scale: float) -> int:
    print(f"crawler demo: MCU emulator on {emulator.link_path}, crawler_driver node running")
    if not _wait(lambda: operator.odom is not None, 10.0):
        print("crawler demo: no odometry from the driver within 10 s")
        return 1
    print("1. scripted route over /cmd_vel, live telemetry from the driver:")
    for leg in ROUTE:
        _run_for(operator, leg.duration_s / scale, leg.linear_mps, leg.angular_radps, leg.label)

    print("2. e-stop: latch through /set_estop, then try to drive")
    operator.estop.wait_for_service(timeout_sec=5.0)
    response = operator.estop.call(SetBool.Request(data=True), timeout_sec=5.0)
    print(f"  /set_estop true -> {response.message if response else 'no answer'}")
    _run_for(operator, 1.0, 0.3, 0.0, "drive (latched)")
    print(f"  motors moving while latched: {emulator.model.moving}")
    response = operator.estop.call(SetBool.Request(data=False), timeout_sec=5.0)
    print(f"  /set_estop false -> {response.message if response else 'no answer'}")

    print("3. the serial port vanishes for 2 s and comes back")
    emulator.unplug()
    _run_for(operator, 2.0, 0.0, 0.0, "port unplugged")
    emulator.replug()
    _run_for(operator, 2.5 / scale, 0.2, 0.0, "port back, forward")
    _run_for(operator, 1.0, 0.0, 0.0, "stop")

    truth_m = sum(emulator.model.track_pos_m) / 2
    odom = operator.odom
    assert odom is not None
    print("result:")
    print(f"  track distance (MCU)     {truth_m:6.2f} m")
    print(f"  odometry path length     {operator.path_m:6.2f} m")
    print(f"  odometry position        x {odom.pose.pose.position.x:.2f} m, "
          f"y {odom.pose.pose.position.y:.2f} m")
    print(f"  tether paid out          {operator.tether_m:6.2f} m")
    print(f"  MCU commands received    {emulator.commands_received}")
    print("  next: `make test`; `crawler bench firmware --json` for the link's figures")
    return 0
