"""``crawler_driver``: the lifecycle node between ROS 2 and the crawler's microcontroller.

Subscribes ``/cmd_vel`` (Twist) and ``/estop`` (Bool); serves ``/set_estop`` (SetBool);
publishes ``/odom/wheel``, ``/imu``, ``/battery``, ``/tether/length``, ``/gas`` and
``/diagnostics``. Telemetry is converted and published from the serial reader thread as it
arrives; commands and diagnostics run in the executor. When the port vanishes the node keeps
running, reports the fault in diagnostics and resumes when the port returns.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.utilities import try_shutdown
from sensor_msgs.msg import BatteryState, Imu
from std_msgs.msg import Bool, Float32MultiArray, Float64, MultiArrayDimension
from std_srvs.srv import SetBool

from crawler.config import CrawlerConfig, flatten, from_flat
from crawler.errors import ConfigError
from crawler_driver import conversions
from firmware_bridge.client import BridgeClient
from firmware_bridge.errors import BridgeError, TransportClosedError
from firmware_bridge.messages import (
    Ack,
    AckResult,
    Battery,
    Encoders,
    EstopLatch,
    EstopRelease,
    Fault,
    Gas,
    Heartbeat,
    Motors,
    SetWheelSpeeds,
    Status,
    Telemetry,
    Tether,
)
from firmware_bridge.messages import Imu as ImuSample
from firmware_bridge.transport import LinkState
from navigation.wheel_odometry import WheelOdometry

COMMAND_QOS = QoSProfile(depth=10)
STATE_QOS = QoSProfile(depth=10)
GAS_LABELS = ("o2_pct", "ch4_pct_vol", "h2s_ppm", "co_ppm")
_RESEND_TARGET_NS = 1_000_000_000  # keep re-sending a changed target for 1 s


def track_speeds(linear_mps: float, angular_radps: float, track_width_m: float,
                 limit_mps: float) -> tuple[float, float]:
    """Skid-steer inverse kinematics, scaled down together so neither track exceeds the limit."""
    left = linear_mps - 0.5 * angular_radps * track_width_m
    right = linear_mps + 0.5 * angular_radps * track_width_m
    peak = max(abs(left), abs(right))
    if peak > limit_mps:
        left, right = left * limit_mps / peak, right * limit_mps / peak
    return left, right


class CrawlerDriver(LifecycleNode):
    """Lifecycle node owning the serial link; configure opens it, cleanup closes it."""

    def __init__(self, config: CrawlerConfig | None = None, **kwargs: Any) -> None:
        super().__init__("crawler_driver", **kwargs)
        # Typing is left to the config tree, which validates (and coerces 1 to 1.0) once.
        loose = ParameterDescriptor(dynamic_typing=True)
        for name, value in flatten(config or CrawlerConfig()).items():
            self.declare_parameter(name, value, loose)
        self.config = config or CrawlerConfig()
        self._client: BridgeClient | None = None
        self._odometry: WheelOdometry | None = None
        self._lock = threading.Lock()
        self._active = False
        self._target_mps = (0.0, 0.0)
        self._target_set_ns = 0
        self._last_cmd_ns = 0
        self._estop = False
        self._link_detail = "not configured"
        self._status: Status | None = None
        self._motors: Motors | None = None
        self._rejected = 0
        self.configure_error: ConfigError | None = None
        self._entities: list[Any] = []
        self._lifecycle_pubs: list[Any] = []

    # --- lifecycle -------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read parameters, create the ROS interfaces and open the serial link."""
        names = flatten(CrawlerConfig()).keys()
        try:
            self.config = from_flat({n: self.get_parameter(n).value for n in names},
                                    CrawlerConfig)
        except ConfigError as err:
            self.configure_error = err
            self.get_logger().error(f"configure failed: {err}")
            return TransitionCallbackReturn.FAILURE
        robot, bridge = self.config.robot, self.config.bridge
        self._odometry = WheelOdometry(
            robot.ticks_per_m, robot.track_width_m, robot.odom_var_m2_per_m,
            robot.odom_var_rad2_per_m, robot.odom_var_rad2_per_rad,
        )
        self._pub_odom = self.create_lifecycle_publisher(Odometry, "/odom/wheel", STATE_QOS)
        self._pub_imu = self.create_lifecycle_publisher(Imu, "/imu", qos_profile_sensor_data)
        self._pub_battery = self.create_lifecycle_publisher(BatteryState, "/battery", STATE_QOS)
        self._pub_tether = self.create_lifecycle_publisher(Float64, "/tether/length", STATE_QOS)
        self._pub_gas = self.create_lifecycle_publisher(Float32MultiArray, "/gas", STATE_QOS)
        self._pub_diag = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics",
                                                         STATE_QOS)
        self._lifecycle_pubs = [self._pub_odom, self._pub_imu, self._pub_battery,
                                self._pub_tether, self._pub_gas, self._pub_diag]
        self._entities = [
            self.create_subscription(Twist, "/cmd_vel", self._on_cmd_vel, COMMAND_QOS),
            self.create_subscription(Bool, "/estop", self._on_estop_topic, COMMAND_QOS),
            self.create_service(SetBool, "/set_estop", self._on_set_estop),
            self.create_timer(bridge.heartbeat_period_s, self._on_heartbeat),
            self.create_timer(1.0, self._publish_diagnostics),
        ]
        self._client = BridgeClient(bridge.port, bridge.baudrate, on_state=self._on_link_state,
                                    backoff_max_s=bridge.reconnect_backoff_max_s)
        self._client.subscribe(self._on_telemetry)
        self._client.start()
        self.get_logger().info(f"configured: MCU on {bridge.port}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start publishing telemetry and accepting commands."""
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the motors and stop publishing."""
        self._active = False
        self._set_target(0.0, 0.0)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Close the serial link and drop the ROS interfaces."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the motors and close the link."""
        self.shutdown_hardware()
        return TransitionCallbackReturn.SUCCESS

    def shutdown_hardware(self) -> None:
        """Command zero speed and close the link; safe to call more than once."""
        self._active = False
        if self._client is not None:
            self._set_target(0.0, 0.0)
            self._release()

    def _release(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None
        for entity in self._entities:
            entity.destroy()
        for pub in self._lifecycle_pubs:
            self.destroy_lifecycle_publisher(pub)
        self._entities, self._lifecycle_pubs = [], []

    # --- commands (executor thread) --------------------------------------------------------

    def _on_cmd_vel(self, msg: Twist) -> None:
        if not self._active:
            return
        robot = self.config.robot
        left, right = track_speeds(msg.linear.x, msg.angular.z, robot.track_width_m,
                                   robot.max_track_speed_mps)
        self._last_cmd_ns = self._now_ns()
        self._set_target(left, right)

    def _on_heartbeat(self) -> None:
        # Re-send a fresh target for a while: it feeds the MCU watchdog and repairs a lost
        # frame (a lost "stop" must not leave the robot driving). Otherwise a heartbeat.
        now_ns = self._now_ns()
        if (self._target_mps != (0.0, 0.0)
                and now_ns - self._last_cmd_ns > self.config.robot.cmd_vel_timeout_s * 1e9):
            self.get_logger().warning(
                f"no /cmd_vel for {self.config.robot.cmd_vel_timeout_s:.1f} s: stopping")
            self._set_target(0.0, 0.0)
            return
        fresh = now_ns - self._target_set_ns < _RESEND_TARGET_NS
        if self._active and not self._estop and (fresh or self._target_mps != (0.0, 0.0)):
            self._send(SetWheelSpeeds(*self._target_mps))
        else:
            self._send(Heartbeat(_ms_clock()))

    def _set_target(self, left_mps: float, right_mps: float) -> None:
        self._target_mps = (left_mps, right_mps)
        self._target_set_ns = self._now_ns()
        self._send(SetWheelSpeeds(left_mps, right_mps))

    def _now_ns(self) -> int:
        # The node's clock: simulated time under /clock, so timeouts scale with the sim.
        stamp: int = self.get_clock().now().nanoseconds
        return stamp

    def _send(self, command: SetWheelSpeeds | Heartbeat) -> None:
        if self._client is None:
            return
        # A closed port is reported in diagnostics; the next heartbeat retries.
        with contextlib.suppress(TransportClosedError):
            self._client.send(command)

    def _on_estop_topic(self, msg: Bool) -> None:
        self._apply_estop(bool(msg.data))

    def _on_set_estop(self, request: SetBool.Request,
                      response: SetBool.Response) -> SetBool.Response:
        response.success, response.message = self._apply_estop(bool(request.data))
        return response

    def _apply_estop(self, latch: bool) -> tuple[bool, str]:
        self._target_mps = (0.0, 0.0)
        self._estop = latch
        if self._client is None:
            return False, "driver not configured"
        command = EstopLatch() if latch else EstopRelease()
        try:
            self._client.command(command, timeout_s=self.config.bridge.ack_timeout_s)
        except BridgeError as err:
            self.get_logger().error(f"e-stop {'latch' if latch else 'release'} failed: {err}")
            return False, str(err)
        text = "e-stop latched" if latch else "e-stop released"
        self.get_logger().warning(text)
        return True, text

    # --- telemetry (serial reader thread) --------------------------------------------------

    def _on_link_state(self, state: LinkState, detail: str) -> None:
        self._link_detail = detail
        if state is LinkState.CONNECTED:
            self.get_logger().info(detail)
            if self._odometry is not None:
                self._odometry.reset_reference()
        elif state is LinkState.DISCONNECTED:
            self.get_logger().error(f"serial link lost: {detail}; reconnecting")

    def _on_telemetry(self, message: Telemetry, rx_ns: int) -> None:
        if not self._active:
            return
        stamp = self.get_clock().now().to_msg()
        match message:
            case Encoders(stamp_us, left_ticks, right_ticks) if self._odometry is not None:
                odom = self._odometry.update(stamp_us * 1000, left_ticks, right_ticks)
                self._pub_odom.publish(conversions.odometry_msg(odom, stamp, self.config))
            case ImuSample():
                self._pub_imu.publish(conversions.imu_msg(message, stamp, self.config))
            case Battery():
                self._pub_battery.publish(conversions.battery_msg(message, stamp))
            case Tether(_, length_m):
                self._pub_tether.publish(Float64(data=float(length_m)))
            case Gas():
                self._pub_gas.publish(_gas_msg(message))
            case Motors():
                self._motors = message
            case Status():
                self._status = message
                self._estop = bool(message.estop_latched)
            case Ack(_, result) if result == AckResult.REJECTED_ESTOP:
                self._rejected += 1

    # --- diagnostics (executor thread) -----------------------------------------------------

    def _publish_diagnostics(self) -> None:
        if not self._active or self._client is None:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self._link_diagnostic(self._client), self._mcu_diagnostic()]
        self._pub_diag.publish(msg)

    def _link_diagnostic(self, client: BridgeClient) -> DiagnosticStatus:
        stats, link = client.decoder_stats, client.link
        silent_s = (time.monotonic_ns() - link.last_rx_ns) * 1e-9 if link.last_rx_ns else None
        if not client.connected:
            level, text = DiagnosticStatus.ERROR, "port lost, reconnecting"
        elif silent_s is None or silent_s > 0.5:
            level, text = DiagnosticStatus.ERROR, "port open but the MCU is silent"
        else:
            level, text = DiagnosticStatus.OK, "link up"
        return _status(level, "crawler_driver: serial link", text, {
            "port": client.transport.url, "frames": stats.frames, "crc_errors": stats.crc_errors,
            "rejected_frames": stats.rejected, "lost": link.lost, "duplicates": link.duplicates,
            "opens": client.transport.opens, "detail": self._link_detail,
        })

    def _mcu_diagnostic(self) -> DiagnosticStatus:
        status, motors = self._status, self._motors
        if status is None:
            return _status(DiagnosticStatus.STALE, "crawler_driver: MCU", "no status yet", {})
        faults = Fault(status.fault_flags)
        names = [f.name for f in Fault if f and f in faults and f.name is not None]
        level = DiagnosticStatus.OK
        if faults & (Fault.ESTOP | Fault.WATCHDOG | Fault.BATTERY_LOW | Fault.RX_ERRORS):
            level = DiagnosticStatus.WARN
        if faults & (Fault.MOTOR_OVERCURRENT | Fault.MOTOR_OVERTEMP | Fault.IMU_FAULT):
            level = DiagnosticStatus.ERROR
        values: dict[str, object] = {
            "faults": ",".join(names) or "none", "estop_latched": bool(status.estop_latched),
            "firmware": f"{status.firmware_version >> 8}.{status.firmware_version & 0xFF}",
            "roll_rad": round(status.roll_rad, 4), "pitch_rad": round(status.pitch_rad, 4),
            "rejected_commands": self._rejected,
        }
        if motors is not None:
            values |= {"left_temp_c": round(motors.left_temp_c, 1),
                       "right_temp_c": round(motors.right_temp_c, 1)}
        return _status(level, "crawler_driver: MCU", ", ".join(names) or "ok", values)


def _status(level: bytes, name: str, message: str, values: dict[str, object]) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id="crawler_mcu",
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def _gas_msg(gas: Gas) -> Float32MultiArray:
    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="|".join(GAS_LABELS), size=4, stride=4)]
    msg.data = [float(gas.o2_pct), float(gas.ch4_pct_vol), float(gas.h2s_ppm), float(gas.co_ppm)]
    return msg


def _ms_clock() -> int:
    return (time.monotonic_ns() // 1_000_000) & 0xFFFFFFFF


def run(config: CrawlerConfig | None = None, args: list[str] | None = None) -> None:
    """Run the driver alone: configure, activate, spin until shutdown.

    Raises ``ConfigError`` if the parameters do not validate.
    """
    rclpy.init(args=args)
    node = CrawlerDriver(config)
    try:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise node.configure_error or ConfigError("crawler_driver failed to configure")
        node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown_hardware()
        node.destroy_node()
        try_shutdown()


def main(args: list[str] | None = None) -> None:
    """Console entry point for ``ros2 run crawler_driver driver_node``."""
    run(args=args)
