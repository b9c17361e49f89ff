"""``mission_executor``: drives a mission plan, a thin adapter over ``navigation.mission``.

Parameters: ``plan`` (a mission plan YAML, ``docs/mission_plan.md``; its ``site_file`` names
the site), ``auto_start`` (false: wait for ``/mission/start``), ``control_period_s``,
``pose_timeout_s``, ``telemetry_timeout_s``. The plan is loaded and checked against its site
in the constructor, before any publisher exists: a bad plan raises ``PlanError``
(``FILE:LINE: FIELD: REASON``) and ``main`` prints it as one line and exits 1.

Subscribes ``/localization/pose`` (site frame; position sigma from its covariance), the MCU
bridge's ``/battery``, ``/gas``, ``/tether/length`` and ``/diagnostics`` (the MCU's
``estop_latched``), ``/defects/findings`` (the defect mapper's JSON), ``/mission/estop``
(Bool, the laptop's e-stop) and ``/ground_station/heartbeat`` (Header; its silence is the
plan's link-loss input). Every ``control_period_s`` it calls ``MissionExecutor.step`` and
publishes ``/cmd_vel``, ``/mission/status`` and ``/mission/events``. Services (Trigger):
``/mission/start``, ``/mission/abort``, ``/mission/reset_estop``.

Every wait has a timeout: no pose for ``pose_timeout_s`` stops the robot (the supervisor gets
an infinite position sigma, and the status says why); telemetry silent for
``telemetry_timeout_s`` reaches the supervisor as NaN, which it treats as out of limits.
The laptop link is only an input: the mission carries on without it, as the plan's
``safety.link`` says.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped, Twist
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import ok, try_shutdown
from sensor_msgs.msg import BatteryState
from std_msgs.msg import Bool, Float32MultiArray, Float64, Header, String
from std_srvs.srv import Trigger

from crawler.errors import ConfigError, CrawlerError
from crawler_navigation.common import pose_of
from crawler_navigation.mission_conversions import (
    MessageError,
    MissionInputs,
    aborted_record,
    battery_pct,
    finding_notice,
    gas_readings,
    mcu_estop,
    position_sigma_m,
    to_json,
    waiting_record,
)
from navigation.mission import MissionError, PlanError, load_plan, load_plan_site
from navigation.mission.executor import (
    ExecutorConfig,
    ExecutorOutput,
    FindingNotice,
    MissionExecutor,
    route_polyline,
)

COMMAND_QOS = QoSProfile(depth=10)
INPUT_QOS = QoSProfile(depth=10)
FINDINGS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
"""Volatile: findings replayed from before this node's start are not news to the mission."""
HEARTBEAT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
"""Best effort: matches a laptop publishing either way."""
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The latest status for a laptop that joins late."""
EVENTS_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""The last 100 events for a laptop that joins late."""
WAITING_STATUS_PERIOD_S = 1.0
STOP_REPEAT_S = 1.0
"""After the mission ends, a zero twist is still published for this long."""
LOG_THROTTLE_S = 5.0
_NS = 1_000_000_000


class Phase(enum.Enum):
    """Where the node is with its one mission."""

    WAITING = "waiting"
    RUNNING = "running"
    OVER = "over"


class MissionExecutorNode(Node):
    """Thin adapter: messages -> ``MissionExecutor.step`` -> twist, status and events."""

    def __init__(self, plan: str = "", auto_start: bool = False, **kwargs: Any) -> None:
        super().__init__("mission_executor", **kwargs)
        plan_path = str(self.declare_parameter("plan", plan).value)
        self.auto_start = bool(self.declare_parameter("auto_start", auto_start).value)
        period_s = float(self.declare_parameter("control_period_s", 0.1).value)
        pose_timeout_s = float(self.declare_parameter("pose_timeout_s", 1.0).value)
        telemetry_timeout_s = float(self.declare_parameter("telemetry_timeout_s", 10.0).value)
        for name, value in (("control_period_s", period_s), ("pose_timeout_s", pose_timeout_s),
                            ("telemetry_timeout_s", telemetry_timeout_s)):
            if not value > 0.0:
                raise ConfigError(f"{name} must be > 0 s, got {value}")
        if not plan_path:
            raise ConfigError("set the 'plan' parameter to a mission plan file "
                              "(docs/mission_plan.md)")
        # The plan, its site and route: all checked before anything can move
        self.plan = load_plan(plan_path)
        try:
            site = load_plan_site(self.plan)
        except PlanError as err:  # the site file changed since load_plan read it
            raise PlanError(plan_path, err.reason, err.field_path) from err
        self.mission = MissionExecutor(self.plan, route_polyline(self.plan, site),
                                        ExecutorConfig())
        self.plan_path = str(Path(plan_path).resolve())
        self.inputs = MissionInputs(self._now_ns(), telemetry_timeout_s, pose_timeout_s,
                                    tethered=site.tether is not None)
        self.phase = Phase.WAITING
        self.last_output: ExecutorOutput | None = None
        self.last_record = waiting_record(0, self.plan, self.mission.end_m,
                                          self.mission.config, [])
        self._findings: list[FindingNotice] = []
        self._finding_ids: set[str] = set()
        self._last_stamp_ns = 0
        self._over_ns: int | None = None
        self._next_waiting_ns = 0
        # ROS interfaces
        self._pub_cmd = self.create_publisher(Twist, "/cmd_vel", COMMAND_QOS)
        self._pub_status = self.create_publisher(String, "/mission/status", STATUS_QOS)
        self._pub_events = self.create_publisher(String, "/mission/events", EVENTS_QOS)
        self.create_subscription(PoseWithCovarianceStamped, "/localization/pose", self._on_pose,
                                 INPUT_QOS)
        self.create_subscription(BatteryState, "/battery", self._on_battery, INPUT_QOS)
        self.create_subscription(Float32MultiArray, "/gas", self._on_gas, INPUT_QOS)
        self.create_subscription(Float64, "/tether/length", self._on_tether, INPUT_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 INPUT_QOS)
        self.create_subscription(String, "/defects/findings", self._on_finding, FINDINGS_QOS)
        self.create_subscription(Bool, "/mission/estop", self._on_estop, COMMAND_QOS)
        self.create_subscription(Header, "/ground_station/heartbeat", self._on_heartbeat,
                                 HEARTBEAT_QOS)
        self.create_service(Trigger, "/mission/start", self._on_start)
        self.create_service(Trigger, "/mission/abort", self._on_abort)
        self.create_service(Trigger, "/mission/reset_estop", self._on_reset_estop)
        self.create_timer(period_s, self._control)
        self.get_logger().info(
            f"plan {self.plan_path} ({self.plan.name or 'unnamed'}): route "
            f"{self.mission.route.length_m:.1f} m, "
            f"{'starting when ready' if self.auto_start else 'waiting for /mission/start'}")
        if any(action.kind == "look_closer" for action in self.plan.actions):
            self.get_logger().warning(
                "look_closer: no camera head driver or suspect topic in the ROS graph yet; "
                "this node drives on without looking closer (the simulated mission runner "
                "does it: crawler mission run)")

    # --- inputs ----------------------------------------------------------------------------

    def _now_ns(self) -> int:
        # The node clock: simulated time under /clock, so the timeouts scale with the sim.
        now: int = self.get_clock().now().nanoseconds
        return now

    def _on_pose(self, msg: PoseWithCovarianceStamped) -> None:
        T_site_base = pose_of(msg.pose.pose)
        if not np.isfinite(T_site_base).all():
            self._warn("/localization/pose skipped: not finite")
            return
        try:
            sigma_m = position_sigma_m(list(msg.pose.covariance))
        except MessageError as err:
            self._warn(f"/localization/pose skipped: {err}")
            return
        self.inputs.pose(T_site_base, sigma_m, self._now_ns())

    def _on_battery(self, msg: BatteryState) -> None:
        self.inputs.battery(battery_pct(msg.percentage), self._now_ns())

    def _on_gas(self, msg: Float32MultiArray) -> None:
        label = msg.layout.dim[0].label if msg.layout.dim else ""
        try:
            self.inputs.gas(gas_readings(list(msg.data), label), self._now_ns())
        except MessageError as err:
            self._warn(f"/gas skipped: {err}")

    def _on_tether(self, msg: Float64) -> None:
        self.inputs.tether(float(msg.data), self._now_ns())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        latched = mcu_estop((s.name, {kv.key: kv.value for kv in s.values}) for s in msg.status)
        if latched is not None:
            self.inputs.estop_mcu = latched

    def _on_finding(self, msg: String) -> None:
        try:
            notice = finding_notice(msg.data)
        except MessageError as err:
            self._warn(f"/defects/findings skipped: {err}")
            return
        # Only findings of this mission, each once
        if self.phase is Phase.RUNNING and notice.id not in self._finding_ids:
            self._finding_ids.add(notice.id)
            self._findings.append(notice)

    def _on_estop(self, msg: Bool) -> None:
        pressed = bool(msg.data)
        self.inputs.laptop(self._now_ns())
        if pressed != self.inputs.estop_laptop:
            self.get_logger().warning(f"laptop e-stop {'pressed' if pressed else 'released'}")
        self.inputs.estop_laptop = pressed
        if pressed:
            self._command(0.0, 0.0)  # at once, not at the next step

    def _on_heartbeat(self, msg: Header) -> None:
        self.inputs.laptop(self._now_ns())

    def _warn(self, text: str) -> None:
        self.get_logger().warning(text, throttle_duration_sec=LOG_THROTTLE_S)

    # --- services --------------------------------------------------------------------------

    def _on_start(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        now = self._now_ns()
        self.inputs.laptop(now)
        response.success, response.message = self.start(now)
        return response

    def start(self, now_ns: int) -> tuple[bool, str]:
        """Start the mission if the robot is ready; (started, why)."""
        if self.phase is Phase.RUNNING:
            return False, "the mission is already running"
        if self.phase is Phase.OVER:
            return False, (f"the mission is over ({self.last_record.get('state')}); "
                           "restart the node for another")
        missing = self.inputs.missing(now_ns)
        if missing:
            return False, f"not ready: {'; '.join(missing)}"
        self.phase = Phase.RUNNING
        # The link's silence counts from the start at the latest (auto_start: no laptop yet)
        self.inputs.laptop(now_ns)
        text = (f"mission started: {self.plan.name or self.plan_path}, "
                f"{self.mission.end_m:.1f} m out")
        self.get_logger().info(text)
        return True, text

    def _on_abort(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        now = self._now_ns()
        self.inputs.laptop(now)
        if self.phase is Phase.OVER:
            response.success = False
            response.message = f"the mission is already over ({self.last_record.get('state')})"
            return response
        self.abort(now, "aborted by the crew (/mission/abort)")
        response.success, response.message = True, "mission aborted: robot stopped"
        return response

    def abort(self, now_ns: int, reason: str) -> None:
        """Stop the robot and end the mission now (``aborted``)."""
        stamp = self._stamp(now_ns)
        self._command(0.0, 0.0)
        event: dict[str, object] = {"stamp_ns": stamp, "kind": "state", "state": "aborted",
                                    "previous": str(self.last_record.get("state", "waiting")),
                                    "reason": reason}
        self._pub_events.publish(String(data=to_json(event)))
        self._publish_status(aborted_record(stamp, self.last_record, reason, event))
        self._end(now_ns)
        self.get_logger().warning(reason)

    def _on_reset_estop(self, request: Trigger.Request, response: Trigger.Response
                        ) -> Trigger.Response:
        self.inputs.laptop(self._now_ns())
        supervisor = self.mission.supervisor
        if not supervisor.estop_latched:
            response.success, response.message = True, "no e-stop latched"
        elif supervisor.reset_estop():
            response.success, response.message = True, "e-stop reset"
            self.get_logger().warning("e-stop reset by the crew")
        else:
            response.success = False
            response.message = ("refused: an e-stop is still pressed (laptop /mission/estop, "
                                "or the MCU's latch)")
        return response

    # --- control ---------------------------------------------------------------------------

    def _control(self) -> None:
        now = self._now_ns()
        if self.phase is Phase.WAITING:
            self._wait(now)
        elif self.phase is Phase.RUNNING:
            self._step(now)
        elif self._over_ns is not None and now - self._over_ns <= STOP_REPEAT_S * _NS:
            self._command(0.0, 0.0)

    def _wait(self, now_ns: int) -> None:
        missing = self.inputs.missing(now_ns)
        if self.auto_start and not missing:
            self.start(now_ns)
            self._step(now_ns)
            return
        if now_ns < self._next_waiting_ns:
            return
        self._next_waiting_ns = now_ns + round(WAITING_STATUS_PERIOD_S * _NS)
        reasons = missing or ["waiting for /mission/start"]
        self._publish_status(waiting_record(self._stamp(now_ns), self.plan, self.mission.end_m,
                                            self.mission.config, reasons)
                             | self._extras(now_ns))

    def _step(self, now_ns: int) -> None:
        stamp = self._stamp(now_ns)
        latest = self.inputs.latest_pose()
        if latest is None:  # (the start needs a pose: defensive only)
            self._command(0.0, 0.0)
            return
        T_site_base, sigma_m = latest
        # No pose for too long: the supervisor sees an unknown position and stops the robot
        stale = self.inputs.pose_stale(now_ns)
        if stale:
            sigma_m = float("inf")
        out = self.mission.step(stamp, T_site_base, sigma_m, self.inputs.readings(now_ns),
                                 self._findings)
        self._findings = []
        self.last_output = out
        linear, angular = (0.0, 0.0) if stale else (out.linear_mps, out.angular_radps)
        self._command(linear, angular)
        record = out.status.as_record() | self._extras(now_ns)
        if stale:
            age_s = self.inputs.pose_age_s(now_ns) or 0.0
            record["reasons"] = [f"pose_timeout: no /localization/pose for {age_s:.1f} s "
                                 f"(> {self.inputs.pose_timeout_ns / _NS:g} s): stopped",
                                 *out.status.reasons]
        self._publish_status(record)
        for event in out.events:
            self._pub_events.publish(String(data=to_json(event.as_record())))
            self._log_event(event.kind, event.details)
        if out.done:
            self.get_logger().info(f"mission {out.status.state.value}: "
                                   f"{out.status.end_reason}")
            self._end(now_ns)

    def _extras(self, now_ns: int) -> dict[str, object]:
        age_s = self.inputs.pose_age_s(now_ns)
        return {"pose_age_s": None if age_s is None else round(age_s, 2),
                "link_silence_s": round(self.inputs.link_silence_s(now_ns), 1),
                "plan": self.plan_path}

    def _stamp(self, now_ns: int) -> int:
        """The step stamp: the node clock, never earlier than the previous one."""
        self._last_stamp_ns = max(now_ns, self._last_stamp_ns)
        return self._last_stamp_ns

    def _end(self, now_ns: int) -> None:
        self.phase = Phase.OVER
        self._over_ns = now_ns

    def _command(self, linear_mps: float, angular_radps: float) -> None:
        twist = Twist()
        twist.linear.x, twist.angular.z = float(linear_mps), float(angular_radps)
        self._pub_cmd.publish(twist)

    def _publish_status(self, record: dict[str, object]) -> None:
        self.last_record = record
        self._pub_status.publish(String(data=to_json(record)))

    def _log_event(self, kind: str, details: dict[str, object]) -> None:
        if kind == "state":
            self.get_logger().info(f"{details.get('state')}: {details.get('reason')}")
        elif kind == "safety":
            reasons = details.get("reasons")
            why = "; ".join(f"{r.get('code')}: {r.get('message')}" for r in reasons
                            if isinstance(r, dict)) if isinstance(reasons, list) else ""
            self.get_logger().warning(f"safety {details.get('action')}: {why or 'all clear'}")

    def stop_motion(self) -> None:
        """Command zero now (at shutdown, while a mission is running)."""
        if self.phase is Phase.RUNNING and ok(context=self.context):
            self._command(0.0, 0.0)


def run(plan: str = "", args: list[str] | None = None) -> None:
    """Run the node until Ctrl-C (a zero twist at the end while a mission runs).

    Raises ``PlanError`` for a bad plan and ``ConfigError`` for bad parameters, after rclpy
    is shut down.
    """
    # Ctrl-C arrives as KeyboardInterrupt (not rclpy's handler): the node can still publish
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = MissionExecutorNode(plan)
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            node.stop_motion()
            node.destroy_node()
    finally:
        try_shutdown()


def main(args: list[str] | None = None) -> None:
    """``ros2 run crawler_navigation mission_executor_node --ros-args -p plan:=PLAN.yaml``.

    A bad plan or parameter: one line on stderr (``mission_executor: FILE:LINE: FIELD:
    REASON``) and exit status 1.
    """
    try:
        run(args=args)
    except (MissionError, CrawlerError) as err:
        sys.stderr.write(f"mission_executor: {err}\n")
        raise SystemExit(1) from err
