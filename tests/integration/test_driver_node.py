"""crawler_driver in its own process against the MCU emulator over a real pty."""

from __future__ import annotations

import math
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import BatteryState, Imu
from std_msgs.msg import Float32MultiArray, Float64
from std_srvs.srv import SetBool

from firmware_bridge.emulator import McuModel, PtyEmulator
from tests.integration.ros_harness import (
    DISCOVERY_TIMEOUT_S,
    RosProbe,
    spawn_crawler,
    stop_process,
    wait_until,
)

pytestmark = pytest.mark.ros


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[PtyEmulator]:
    """The MCU emulator behind tmp_path/mcu."""
    with PtyEmulator(tmp_path / "mcu", McuModel(seed=1)) as emu:
        yield emu


@pytest.fixture
def driver(tmp_path: Path, emulator: PtyEmulator) -> Iterator[subprocess.Popen[bytes]]:
    """``crawler driver`` in its own process on the emulator's port."""
    proc = spawn_crawler("driver", "--port", str(emulator.link_path), log=tmp_path / "driver.log")
    yield proc
    stop_process(proc)


def _connect(probe: RosProbe) -> object:
    """Subscribe to the driver's topics and wait until it is up; return a /cmd_vel publisher."""
    probe.record(Odometry, "/odom/wheel")
    probe.record(DiagnosticArray, "/diagnostics")
    cmd_vel = probe.node.create_publisher(Twist, "/cmd_vel", 10)
    wait_until(lambda: cmd_vel.get_subscription_count() > 0, DISCOVERY_TIMEOUT_S,
               "crawler_driver to subscribe to /cmd_vel")
    wait_until(lambda: probe.count("/odom/wheel") > 0, DISCOVERY_TIMEOUT_S, "wheel odometry")
    return cmd_vel


def _drive(cmd_vel: object, linear_mps: float, angular_radps: float, duration_s: float) -> None:
    msg = Twist()
    msg.linear.x, msg.angular.z = linear_mps, angular_radps
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        cmd_vel.publish(msg)  # type: ignore[attr-defined]
        time.sleep(0.05)


def _settled(emulator: PtyEmulator) -> bool:
    return not emulator.model.moving


def test_commanded_motion_produces_matching_odometry(
    probe: RosProbe, emulator: PtyEmulator, driver: subprocess.Popen[bytes]
) -> None:
    cmd_vel = _connect(probe)
    start = probe.last("/odom/wheel").pose.pose.position.x
    _drive(cmd_vel, 0.3, 0.0, 2.0)
    _drive(cmd_vel, 0.0, 0.0, 0.3)
    wait_until(lambda: _settled(emulator), 3.0, "the tracks to stop")
    time.sleep(0.2)  # a few more encoder samples after the stop
    odom = probe.last("/odom/wheel")
    travelled_true_m = sum(emulator.model.track_pos_m) / 2
    travelled_odom_m = odom.pose.pose.position.x - start
    assert travelled_true_m > 0.4, "the robot did not move as commanded"
    assert travelled_odom_m == pytest.approx(travelled_true_m, abs=0.005)
    assert abs(odom.pose.pose.position.y) < 0.005
    assert odom.header.frame_id == "odom" and odom.child_frame_id == "base_link"
    # Covariance grows with distance, and what wheels cannot see is reported as unknown.
    assert odom.pose.covariance[0] > 0.0
    assert odom.pose.covariance[14] >= 1e5


def test_turning_in_place_integrates_heading(
    probe: RosProbe, emulator: PtyEmulator, driver: subprocess.Popen[bytes]
) -> None:
    cmd_vel = _connect(probe)
    _drive(cmd_vel, 0.0, 0.5, 1.5)
    _drive(cmd_vel, 0.0, 0.0, 0.3)
    wait_until(lambda: _settled(emulator), 3.0, "the tracks to stop")
    time.sleep(0.2)
    q = probe.last("/odom/wheel").pose.pose.orientation
    yaw_odom = 2.0 * math.atan2(q.z, q.w)
    assert emulator.model.yaw_rad > 0.4
    assert yaw_odom == pytest.approx(emulator.model.yaw_rad, abs=0.01)


def test_telemetry_topics_carry_mcu_readings(
    probe: RosProbe, emulator: PtyEmulator, driver: subprocess.Popen[bytes]
) -> None:
    probe.record(Imu, "/imu", qos_profile_sensor_data)
    probe.record(BatteryState, "/battery")
    probe.record(Float64, "/tether/length")
    probe.record(Float32MultiArray, "/gas")
    emulator.model.env.ch4_pct_vol = 1.2
    _connect(probe)
    for topic in ("/imu", "/battery", "/tether/length", "/gas"):
        wait_until(lambda t=topic: probe.count(t) > 0, 5.0, f"a message on {topic}")
    assert probe.last("/imu").linear_acceleration.z == pytest.approx(9.81, abs=0.2)
    battery = probe.last("/battery")
    assert 0.9 <= battery.percentage <= 1.0 and battery.voltage > 24.0
    gas = probe.last("/gas")
    assert gas.layout.dim[0].label == "o2_pct|ch4_pct_vol|h2s_ppm|co_ppm"
    assert gas.data[0] == pytest.approx(20.9, abs=0.2)
    assert gas.data[1] == pytest.approx(1.2, abs=0.05)
    diag = wait_until(lambda: probe.last("/diagnostics"), 3.0, "diagnostics")
    assert {s.name for s in diag.status} == {"crawler_driver: serial link", "crawler_driver: MCU"}


def test_estop_service_latches_until_released(
    probe: RosProbe, emulator: PtyEmulator, driver: subprocess.Popen[bytes]
) -> None:
    cmd_vel = _connect(probe)
    client = probe.node.create_client(SetBool, "/set_estop")
    assert client.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT_S)
    response = client.call(SetBool.Request(data=True), timeout_sec=5.0)
    assert response is not None and response.success, response
    assert emulator.model.estop_latched
    _drive(cmd_vel, 0.3, 0.0, 0.6)
    assert not emulator.model.moving, "motors ran while the e-stop was latched"
    response = client.call(SetBool.Request(data=False), timeout_sec=5.0)
    assert response is not None and response.success
    _drive(cmd_vel, 0.3, 0.0, 0.6)
    assert emulator.model.moving


def test_killing_the_driver_stops_the_motors_by_watchdog(
    probe: RosProbe, emulator: PtyEmulator, driver: subprocess.Popen[bytes]
) -> None:
    cmd_vel = _connect(probe)
    _drive(cmd_vel, 0.4, 0.0, 0.8)
    assert emulator.model.moving
    driver.send_signal(signal.SIGKILL)
    driver.wait(5.0)
    killed_at = time.monotonic()
    wait_until(lambda: emulator.model.watchdog_tripped, 1.0, "the MCU watchdog")
    assert time.monotonic() - killed_at < 0.6
    assert emulator.model.target_mps == [0.0, 0.0]
    wait_until(lambda: _settled(emulator), 2.0, "the tracks to stop")


def _link_level(probe: RosProbe) -> bytes | None:
    diag = probe.last("/diagnostics")
    if diag is None:
        return None
    return next(s.level for s in diag.status if s.name == "crawler_driver: serial link")


def test_driver_survives_the_port_vanishing_and_returning(
    probe: RosProbe, emulator: PtyEmulator, driver: subprocess.Popen[bytes]
) -> None:
    cmd_vel = _connect(probe)
    emulator.unplug()
    wait_until(lambda: _link_level(probe) == DiagnosticStatus.ERROR, 4.0,
               "diagnostics to report the lost port")
    emulator.replug()
    wait_until(lambda: _link_level(probe) == DiagnosticStatus.OK, 6.0,
               "diagnostics to report the link back up")
    before = probe.last("/odom/wheel").pose.pose.position.x
    _drive(cmd_vel, 0.3, 0.0, 1.0)
    wait_until(lambda: probe.last("/odom/wheel").pose.pose.position.x > before + 0.1, 3.0,
               "odometry to advance after the reconnect")
    assert driver.poll() is None, "the driver process exited"
