"""mission_executor over real ROS 2: a fake crawler closes the loop on its /cmd_vel.

The fake crawler (a timer in the test's probe node) integrates the commanded twist as a
unicycle and publishes what the real graph would: the localized pose, the MCU bridge's
battery, gas and tether, and the laptop's heartbeat. The plan is the sewer_dn1000 mission
(its simulated world's site), with a 1 s gas alert before the retreat so the tests stay short.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped, Twist
from rclpy.utilities import ok
from sensor_msgs.msg import BatteryState
from std_msgs.msg import Bool, Float32MultiArray, Float64, Header, MultiArrayDimension, String
from std_srvs.srv import Trigger

from crawler_navigation import mission_executor_node
from crawler_navigation.mission_executor_node import (
    EVENTS_QOS,
    STATUS_QOS,
    MissionExecutorNode,
)
from tests.integration.ros_harness import DISCOVERY_TIMEOUT_S, RosProbe, SpunNodes, wait_until

pytestmark = [pytest.mark.ros]

PLAN = """\
name: node test
site_file: world:sewer_dn1000
asset: {kind: pipe, segment_id: MH-A/MH-B, from_manhole: MH-A, to_manhole: MH-B,
        dn_mm: 1000, material: reinforced concrete, length_m: 120.0}
direction: downstream
route: {axis: MH-A/MH-B, from_m: 0.0, to_m: 20.0}
speed: {max_mps: 0.15}
end: {then: return, max_duration_s: 600.0}
detector: classical
safety:
  gas: {h2s_max_ppm: 10.0, stop_s: 1.0, clear_s: 30.0}
"""
START_XYZ_M = (0.599, 0.0, -4.0)  # the route's start (chainage 0) in the world's site frame
FAKE_PERIOD_S = 0.05
CLEAN_AIR = (20.9, 0.0, 0.0, 0.0)
WAIT_S = 5.0


@dataclass
class FakeCrawler:
    """A unicycle that executes /cmd_vel exactly, with the MCU's telemetry and a laptop."""

    x_m: float = START_XYZ_M[0]
    y_m: float = START_XYZ_M[1]
    yaw_rad: float = 0.0
    twist: tuple[float, float] = (0.0, 0.0)
    gas: tuple[float, float, float, float] = CLEAN_AIR
    publishing: bool = True
    twists: list[tuple[float, float]] = field(default_factory=list)

    def attach(self, probe: RosProbe) -> None:
        """Publishers, the /cmd_vel subscription and the 20 Hz timer on the probe's node."""
        node = probe.node
        self.pub_pose = node.create_publisher(PoseWithCovarianceStamped, "/localization/pose",
                                              10)
        self.pub_battery = node.create_publisher(BatteryState, "/battery", 10)
        self.pub_gas = node.create_publisher(Float32MultiArray, "/gas", 10)
        self.pub_tether = node.create_publisher(Float64, "/tether/length", 10)
        self.pub_heartbeat = node.create_publisher(Header, "/ground_station/heartbeat", 10)
        node.create_subscription(Twist, "/cmd_vel", self._on_cmd_vel, 10)
        node.create_timer(FAKE_PERIOD_S, self._tick)

    def _on_cmd_vel(self, msg: Twist) -> None:
        self.twist = (msg.linear.x, msg.angular.z)
        self.twists.append(self.twist)

    def _tick(self) -> None:
        linear, angular = self.twist
        self.yaw_rad += angular * FAKE_PERIOD_S
        self.x_m += linear * math.cos(self.yaw_rad) * FAKE_PERIOD_S
        self.y_m += linear * math.sin(self.yaw_rad) * FAKE_PERIOD_S
        if not self.publishing:
            return
        pose = PoseWithCovarianceStamped()
        pose.header.frame_id = "map"
        pose.pose.pose.position.x, pose.pose.pose.position.y = self.x_m, self.y_m
        pose.pose.pose.position.z = START_XYZ_M[2]
        pose.pose.pose.orientation.z = math.sin(0.5 * self.yaw_rad)
        pose.pose.pose.orientation.w = math.cos(0.5 * self.yaw_rad)
        covariance = [0.0] * 36
        covariance[0] = covariance[7] = 0.01  # 0.1 m sigma
        pose.pose.covariance = covariance
        self.pub_pose.publish(pose)
        self.pub_battery.publish(BatteryState(percentage=0.9))
        gas = Float32MultiArray(data=list(self.gas))
        gas.layout.dim = [MultiArrayDimension(label="o2_pct|ch4_pct_vol|h2s_ppm|co_ppm",
                                              size=4, stride=4)]
        self.pub_gas.publish(gas)
        self.pub_tether.publish(Float64(data=self.x_m))
        self.pub_heartbeat.publish(Header(frame_id="laptop"))


class NodeUnderTest(SpunNodes):
    """The mission_executor in a context of its own, spun in a background thread."""

    def __init__(self, plan: Path) -> None:
        super().__init__()
        self.node = MissionExecutorNode(str(plan), context=self.context)
        self.spin(self.node)


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    """The test plan on disk."""
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN, encoding="utf-8")
    return path


@pytest.fixture
def executor_node(plan_file: Path) -> Iterator[NodeUnderTest]:
    """The node on the test plan, waiting for /mission/start."""
    under_test = NodeUnderTest(plan_file)
    yield under_test
    under_test.close()


@pytest.fixture
def crawler(probe: RosProbe, executor_node: NodeUnderTest) -> FakeCrawler:
    """The fake crawler, recording /mission/status and /mission/events, all discovered."""
    fake = FakeCrawler()
    fake.attach(probe)
    probe.record(String, "/mission/status", STATUS_QOS)
    probe.record(String, "/mission/events", EVENTS_QOS)
    wait_until(lambda: fake.pub_pose.get_subscription_count() > 0
               and fake.pub_gas.get_subscription_count() > 0
               and probe.count("/mission/status") > 0,
               DISCOVERY_TIMEOUT_S, "the mission_executor to be discovered")
    return fake


def status(probe: RosProbe) -> dict[str, Any]:
    """The newest /mission/status document."""
    doc: dict[str, Any] = json.loads(probe.last("/mission/status").data)
    return doc


def call(probe: RosProbe, service: str) -> Trigger.Response:
    """Call a Trigger service of the node; fails the test after a bounded wait."""
    client = probe.node.create_client(Trigger, service)
    assert client.wait_for_service(timeout_sec=DISCOVERY_TIMEOUT_S), service
    future = client.call_async(Trigger.Request())
    wait_until(future.done, WAIT_S, f"the {service} response")
    response = future.result()  # type: ignore[no-untyped-call]
    assert response is not None
    return response


def start_and_drive(probe: RosProbe, crawler: FakeCrawler, distance_m: float) -> None:
    """Start the mission and wait until the robot has driven ``distance_m``."""
    wait_until(lambda: "waiting for /mission/start" in status(probe)["reasons"], WAIT_S,
               "the node to be ready")
    response = call(probe, "/mission/start")
    assert response.success, response.message
    wait_until(lambda: status(probe)["distance_done_m"] >= distance_m, WAIT_S + distance_m / 0.1,
               f"{distance_m} m driven")


def test_drives_the_route_and_reports_progress(executor_node: NodeUnderTest,
                                               crawler: FakeCrawler, probe: RosProbe) -> None:
    """Waiting, then forward at the plan's speed, status with growing distance, events."""
    # Waiting: the status says why and nothing is commanded
    waiting = status(probe)
    assert waiting["state"] == "waiting" and waiting["distance_done_m"] == 0.0
    assert waiting["distance_left_m"] == pytest.approx(40.0)  # 20 m out and back
    assert crawler.twists == []
    start_and_drive(probe, crawler, 0.1)
    first = status(probe)
    wait_until(lambda: status(probe)["distance_done_m"] > first["distance_done_m"] + 0.05,
               WAIT_S, "more distance")
    now = status(probe)
    assert now["state"] == "driving" and now["safety"] == "continue"
    assert now["distance_left_m"] < waiting["distance_left_m"]
    assert now["eta_s"] > 0.0 and now["elapsed_s"] > 0.0 and now["pose_age_s"] < 1.0
    assert now["link_silence_s"] < 1.0 and now["plan"].endswith("plan.yaml")
    linear, angular = crawler.twist
    assert linear == pytest.approx(0.15, abs=0.01) and abs(angular) < 0.05
    # Events: started, then driving
    events = [json.loads(m.data) for m in probe.received["/mission/events"]]
    assert [e["kind"] for e in events[:2]] == ["started", "state"]
    assert events[1]["state"] == "driving"
    # A second start is refused; the laptop link is healthy throughout
    assert not call(probe, "/mission/start").success


def test_laptop_estop_stops_and_latches(executor_node: NodeUnderTest, crawler: FakeCrawler,
                                        probe: RosProbe) -> None:
    """/mission/estop: zero twist with the reason, held after release until a reset."""
    start_and_drive(probe, crawler, 0.05)
    estop = probe.node.create_publisher(Bool, "/mission/estop", 10)
    wait_until(lambda: estop.get_subscription_count() > 0, DISCOVERY_TIMEOUT_S, "the e-stop")
    estop.publish(Bool(data=True))
    wait_until(lambda: status(probe)["state"] == "stopped", WAIT_S, "the e-stop to stop it")
    wait_until(lambda: crawler.twist == (0.0, 0.0), 1.0, "a zero twist")
    assert status(probe)["safety"] == "estop"
    assert status(probe)["reasons"] == ["estop: e-stop from the laptop"]
    # Released on the laptop: still held (latched), and a reset is refused while pressed
    assert not call(probe, "/mission/reset_estop").success
    estop.publish(Bool(data=False))
    wait_until(lambda: "waiting for a reset" in status(probe)["reasons"][0], WAIT_S,
               "the released e-stop")
    held_at_m = status(probe)["distance_done_m"]
    count = len(crawler.twists)
    wait_until(lambda: len(crawler.twists) >= count + 5, WAIT_S, "more commands")
    assert all(t == (0.0, 0.0) for t in crawler.twists[count:])
    assert status(probe)["state"] == "stopped"
    assert status(probe)["distance_done_m"] == pytest.approx(held_at_m, abs=0.01)
    # The reset lets it drive on
    assert call(probe, "/mission/reset_estop").success
    wait_until(lambda: crawler.twist[0] > 0.1, WAIT_S, "driving again after the reset")
    assert status(probe)["state"] == "driving"


def test_gas_alarm_stops_then_retreats(executor_node: NodeUnderTest, crawler: FakeCrawler,
                                       probe: RosProbe) -> None:
    """H2S above its limit: stop with the reason, then retreat (in reverse, in a pipe)."""
    start_and_drive(probe, crawler, 0.2)
    crawler.gas = (20.9, 0.0, 25.0, 0.0)
    wait_until(lambda: status(probe)["state"] == "stopped", WAIT_S, "the gas stop")
    wait_until(lambda: crawler.twist == (0.0, 0.0), 1.0, "a zero twist")
    reasons = status(probe)["reasons"]
    assert reasons[0].startswith("gas: gas alarm: H2S 25.0 ppm >= 10.0 ppm; stopped")
    # After the plan's 1 s alert: retreat to the entry
    wait_until(lambda: status(probe)["state"] == "returning", WAIT_S, "the retreat")
    wait_until(lambda: crawler.twist[0] < -0.01, WAIT_S, "reversing")
    now = status(probe)
    assert now["safety"] == "return"
    assert now["end_reason"].startswith("safety return: gas: gas alarm: H2S 25.0 ppm")


def test_lost_pose_stops_the_robot(executor_node: NodeUnderTest, crawler: FakeCrawler,
                                   probe: RosProbe) -> None:
    """No /localization/pose for more than 1 s: zero twist with the reason; resumes after."""
    start_and_drive(probe, crawler, 0.05)
    crawler.publishing = False
    wait_until(lambda: any(r.startswith("pose_timeout: no /localization/pose for")
                           for r in status(probe)["reasons"]), WAIT_S, "the pose timeout")
    wait_until(lambda: crawler.twist == (0.0, 0.0), 1.0, "a zero twist")
    assert status(probe)["state"] == "stopped"
    count = len(crawler.twists)
    wait_until(lambda: len(crawler.twists) >= count + 5, WAIT_S, "more commands")
    assert all(t == (0.0, 0.0) for t in crawler.twists[count:])
    # The pose is back: it drives on
    crawler.publishing = True
    wait_until(lambda: crawler.twist[0] > 0.1, WAIT_S, "driving again with a pose")


def test_abort_stops_and_ends_the_mission(executor_node: NodeUnderTest, crawler: FakeCrawler,
                                          probe: RosProbe) -> None:
    """/mission/abort: zero twist, state aborted with the reason, no restart."""
    start_and_drive(probe, crawler, 0.05)
    assert call(probe, "/mission/abort").success
    wait_until(lambda: status(probe)["state"] == "aborted", WAIT_S, "the aborted status")
    wait_until(lambda: crawler.twist == (0.0, 0.0), 1.0, "a zero twist")
    assert status(probe)["end_reason"] == "aborted by the crew (/mission/abort)"
    assert not call(probe, "/mission/start").success


BAD_PLANS: dict[str, tuple[str | None, str]] = {
    "malformed": (PLAN.replace("route: {", "route: [{"), r"plan\.yaml:7: malformed YAML: "),
    "unknown manhole": (PLAN.replace("to_manhole: MH-B", "to_manhole: MH-Z"),
                        r"plan\.yaml:3: asset\.to_manhole: site 'sewer_dn1000' has no manhole "
                        r"'MH-Z'"),
    "missing": (None, r"plan\.yaml: cannot read: "),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_invalid_plan_fails_with_one_line_naming_the_file(
        case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad plan: one line on stderr naming the file and line, exit status 1, nothing runs."""
    text, pattern = BAD_PLANS[case]
    path = tmp_path / "plan.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        mission_executor_node.main(["mission_executor", "--ros-args", "-p", f"plan:={path}"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"mission_executor: {path}:")
    assert re.search(pattern, err[0]), err[0]
    assert not ok()
