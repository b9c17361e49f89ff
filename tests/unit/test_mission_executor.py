"""Mission executor on a trivial kinematic model (a unicycle with perfect localization)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from navigation.mission import GasReadings, MissionPlan
from navigation.mission.executor import (
    ExecutorOutput,
    FindingNotice,
    MissionExecutor,
    MissionState,
    RobotReadings,
    SuspectNotice,
)
from navigation.path import Polyline

NS = 1_000_000_000
DT_S = 0.1
ROUTE = Polyline([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 2.0, 0.0]])


def make_plan(**changes: Any) -> MissionPlan:
    """A 20 m pipe plan (site checks are not run here)."""
    document: dict[str, Any] = {
        "site_file": "world:sewer_dn1000",
        "asset": {"kind": "pipe", "segment_id": "A/B", "from_manhole": "A", "to_manhole": "B",
                  "dn_mm": 1000, "material": "concrete", "length_m": 20.2},
        "direction": "downstream",
        "route": {"axis": "A/B", "from_m": 0.0, "to_m": ROUTE.length_m},
        "speed": {"max_mps": 0.5, "approach_mps": 0.1},
        "end": {"then": "stop", "max_duration_s": 600.0},
        "detector": "classical",
    }
    document.update(changes)
    return MissionPlan.model_validate(document)


@dataclass
class Robot:
    """Unicycle that executes the commanded twist exactly (plus a first-order lag)."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    v: float = 0.0
    w: float = 0.0
    outputs: list[ExecutorOutput] = field(default_factory=list)
    t_ns: int = 0

    def pose(self) -> np.ndarray:
        T = np.eye(4)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        T[:2, :2] = [[c, -s], [s, c]]
        T[:2, 3] = self.x, self.y
        return T

    def run(self, executor: MissionExecutor, max_s: float = 2000.0,
            readings: Callable[[float, Robot], RobotReadings] | None = None,
            findings: Callable[[float, Robot], list[FindingNotice]] | None = None,
            sigma: Callable[[float], float] | None = None,
            suspects: Callable[[Robot], list[SuspectNotice]] | None = None) -> ExecutorOutput:
        while self.t_ns < max_s * NS:
            t_s = self.t_ns / NS
            out = executor.step(self.t_ns, self.pose(), sigma(t_s) if sigma else 0.05,
                                readings(t_s, self) if readings else RobotReadings(),
                                findings(t_s, self) if findings else [],
                                suspects(self) if suspects else [])
            self.outputs.append(out)
            if out.done:
                return out
            alpha = 1.0 - math.exp(-DT_S / 0.1)
            self.v += alpha * (out.linear_mps - self.v)
            self.w += alpha * (out.angular_radps - self.w)
            self.yaw += self.w * DT_S
            self.x += self.v * math.cos(self.yaw) * DT_S
            self.y += self.v * math.sin(self.yaw) * DT_S
            self.t_ns += round(DT_S * NS)
        raise AssertionError(f"mission not over after {max_s} s: {self.outputs[-1].status}")

    def events(self, kind: str) -> list[dict[str, object]]:
        return [e.as_record() for o in self.outputs for e in o.events if e.kind == kind]

    def states(self) -> list[str]:
        return [str(e["state"]) for e in self.events("state")]


def test_completes_the_route_and_stops_at_its_end() -> None:
    """then: stop: drives the whole route, ends completed at its end, state changes recorded."""
    robot = Robot()
    last = robot.run(MissionExecutor(make_plan(), ROUTE))
    assert last.status.state is MissionState.COMPLETED
    assert ROUTE.project((robot.x, robot.y, 0.0)).distance_m == pytest.approx(ROUTE.length_m,
                                                                               abs=0.1)
    assert abs(ROUTE.project((robot.x, robot.y, 0.0)).offset_m) < 0.1
    assert robot.states() == ["driving", "completed"]
    assert last.status.distance_left_m == 0.0
    assert last.status.distance_done_m == pytest.approx(ROUTE.length_m, abs=0.1)
    # Never faster than the plan's top speed; slow on the last metre
    speeds = [o.linear_mps for o in robot.outputs]
    assert max(speeds) <= 0.5 + 1e-9
    near_end = [o.linear_mps for o in robot.outputs
                if ROUTE.length_m - o.status.route_distance_m < 0.9]
    assert near_end and max(near_end) <= 0.1 + 1e-9


def test_returns_to_the_entry_in_reverse_in_a_pipe() -> None:
    """then: return: back along the route in reverse gear (a pipe), completed at the entry."""
    robot = Robot()
    last = robot.run(MissionExecutor(make_plan(end={"then": "return"}), ROUTE))
    assert last.status.state is MissionState.COMPLETED
    assert math.hypot(robot.x, robot.y) < 0.15
    assert robot.states() == ["driving", "returning", "completed"]
    returning = [o for o in robot.outputs if o.status.state is MissionState.RETURNING]
    assert returning and all(o.linear_mps <= 0.0 for o in returning)
    assert last.status.distance_done_m == pytest.approx(2 * ROUTE.length_m, abs=0.3)
    # ETA counts down
    etas = [o.status.eta_s for o in robot.outputs[::50]]
    assert etas == sorted(etas, reverse=True)


def test_at_distance_ends_early() -> None:
    """end.at_distance_m: the outbound drive ends there."""
    robot = Robot()
    robot.run(MissionExecutor(make_plan(end={"then": "stop", "at_distance_m": 6.0}), ROUTE))
    assert robot.x == pytest.approx(6.0, abs=0.1)
    assert robot.events("end")[0]["reason"] == "end distance 6.0 m reached"


def test_max_duration_ends_the_outbound_drive() -> None:
    """end.max_duration_s: after that long the robot stops (then: stop)."""
    robot = Robot()
    last = robot.run(MissionExecutor(make_plan(end={"then": "stop", "max_duration_s": 10.0}),
                                     ROUTE))
    assert last.status.state is MissionState.COMPLETED
    assert "max duration" in str(last.status.end_reason)
    assert robot.t_ns == pytest.approx(10 * NS, abs=0.2 * NS)


def test_photos_at_the_plan_distances() -> None:
    """photograph_at: stopped at each distance, a photo request there, then on."""
    plan = make_plan(actions=[{"kind": "photograph_at", "distance_m": 12.5},
                              {"kind": "photograph_at", "distance_m": 4.0}])
    robot = Robot()
    robot.run(MissionExecutor(plan, ROUTE))
    photos = [p for o in robot.outputs for p in o.photos]
    assert [p.action_distance_m for p in photos] == [4.0, 12.5]
    for photo in photos:
        assert photo.kind == "photograph_at"
        assert photo.route_distance_m == pytest.approx(photo.action_distance_m, abs=0.08)
        # The robot is standing still when the photo is taken
        at = next(o for o in robot.outputs if photo in o.photos)
        assert at.status.speed_mps < 0.02
    assert robot.states().count("photographing") == 2
    assert len(robot.events("photo")) == 2


def test_scan_360_dwells_in_a_pipe_and_turns_in_a_tunnel() -> None:
    """scan_360: a pipe dwells (no turn); a tunnel turns a full circle in place."""
    robot = Robot()
    robot.run(MissionExecutor(make_plan(actions=[{"kind": "scan_360", "distance_m": 5.0}]),
                              ROUTE))
    scanning = [o for o in robot.outputs if o.status.state is MissionState.SCANNING]
    assert scanning and all(o.angular_radps == 0.0 and o.linear_mps == 0.0 for o in scanning)
    assert len(scanning) * DT_S == pytest.approx(5.0, abs=0.3)

    tunnel = make_plan(asset={"kind": "tunnel", "section_id": "T", "gallery": "main",
                              "from_m": 0.0, "to_m": 20.2},
                       direction="forward", route={"axis": "main", "from_m": 0.0, "to_m": 20.2},
                       actions=[{"kind": "scan_360", "distance_m": 5.0}])
    robot = Robot()
    robot.run(MissionExecutor(tunnel, ROUTE))
    scanning = [o for o in robot.outputs if o.status.state is MissionState.SCANNING]
    turned = sum(o.angular_radps for o in scanning) * DT_S
    assert turned == pytest.approx(2 * math.pi, abs=0.3)
    assert all(o.linear_mps == 0.0 for o in scanning)
    assert not robot.events("scan_incomplete")


def test_pause_on_each_new_finding_with_a_close_up() -> None:
    """pause_on_finding: stop for its seconds at a new finding, request a close-up photo."""
    plan = make_plan(actions=[{"kind": "pause_on_finding", "seconds": 4.0}])
    given: set[str] = set()

    def findings(t_s: float, robot: Robot) -> list[FindingNotice]:
        for name, at_m in (("F001", 3.0), ("F002", 9.0)):
            if robot.x >= at_m and name not in given:
                given.add(name)
                return [FindingNotice(name, "PL", at_m - 1.0)]
        return []

    robot = Robot()
    robot.run(MissionExecutor(plan, ROUTE), findings=findings)
    photos = [p for o in robot.outputs for p in o.photos]
    assert [(p.kind, p.finding_id) for p in photos] == [("close_up", "F001"),
                                                        ("close_up", "F002")]
    paused = [o for o in robot.outputs if o.status.state is MissionState.PAUSED]
    assert len(paused) * DT_S == pytest.approx(8.0, abs=0.4)
    assert all(o.linear_mps == 0.0 for o in paused)
    assert [e["id"] for e in robot.events("finding")] == ["F001", "F002"]


def test_look_closer_stops_at_each_suspect_and_says_which() -> None:
    """look_closer: a stop of its seconds per suspect, ``looking_at`` names it meanwhile, a
    close-up photo near its end; none on the way back, none without the action."""
    given: set[str] = set()

    def suspects(robot: Robot) -> list[SuspectNotice]:
        new = [SuspectNotice(name, "PL", at_m + 2.0) for name, at_m in
               (("S001", 4.0), ("S002", 12.0)) if robot.x >= at_m and name not in given]
        given.update(s.id for s in new)
        if robot.x < 1.0 and given >= {"S001", "S002"}:  # on the way back: ignored
            new.append(SuspectNotice("S003", "JS", 0.5))
        return new

    plan = make_plan(actions=[{"kind": "look_closer", "seconds": 3.0}],
                     end={"then": "return", "max_duration_s": 600.0})
    executor = MissionExecutor(plan, ROUTE)
    robot = Robot()
    looked: list[str | None] = []

    def watch(t_s: float, robot: Robot) -> RobotReadings:
        looked.append(None if executor.looking_at is None else executor.looking_at.id)
        return RobotReadings()

    last = robot.run(executor, readings=watch, suspects=suspects)
    assert last.status.state is MissionState.COMPLETED
    looking = [o for o in robot.outputs if o.status.state is MissionState.LOOKING]
    assert len(looking) * DT_S == pytest.approx(6.0, abs=0.4)
    assert all(o.linear_mps == 0.0 and o.angular_radps == 0.0 for o in looking)
    assert [k for k, _ in itertools.groupby(x for x in looked if x)] == ["S001", "S002"]
    photos = [(p.kind, p.finding_id, p.stamp_ns) for o in robot.outputs for p in o.photos]
    assert [(k, i) for k, i, _ in photos] == [("close_up", "S001"), ("close_up", "S002")]
    first_look_ns = next(o.status.stamp_ns for o in looking)
    assert (photos[0][2] - first_look_ns) / NS >= 2.0  # near the end: the head has aimed
    given.clear()
    plain = Robot()
    plain.run(MissionExecutor(make_plan(), ROUTE), suspects=suspects)
    assert not any(o.status.state is MissionState.LOOKING for o in plain.outputs)


def test_a_far_suspect_is_driven_up_to_before_the_look() -> None:
    """A suspect reported 6 m ahead is looked at from its stand-off (2.5 m before it), not
    from where it was seen; one already within the stand-off is looked at at once."""
    reported: set[str] = set()

    def suspects(robot: Robot) -> list[SuspectNotice]:
        new = [SuspectNotice(name, "PL", at_m + ahead_m) for name, at_m, ahead_m in
               (("S001", 3.0, 6.0), ("S002", 14.0, 1.0)) if robot.x >= at_m
               and name not in reported]
        reported.update(s.id for s in new)
        return new

    plan = make_plan(actions=[{"kind": "look_closer", "seconds": 2.0, "stand_off_m": 2.5}])
    executor = MissionExecutor(plan, ROUTE)
    robot = Robot()
    looked_from: dict[str, float] = {}

    def watch(t_s: float, robot: Robot) -> RobotReadings:
        if executor.looking_at is not None:
            looked_from.setdefault(executor.looking_at.id, robot.x)
        return RobotReadings()

    robot.run(executor, readings=watch, suspects=suspects)
    assert looked_from["S001"] == pytest.approx(9.0 - 2.5, abs=0.2)
    assert looked_from["S002"] == pytest.approx(14.0, abs=0.2)


def test_safety_stop_holds_then_resumes() -> None:
    """A localization STOP holds the robot; when released, the drive goes on."""
    robot = Robot()
    last = robot.run(MissionExecutor(make_plan(), ROUTE),
                     sigma=lambda t_s: 2.0 if 5.0 <= t_s < 10.0 else 0.05)
    assert last.status.state is MissionState.COMPLETED
    held = [o for o in robot.outputs if 5.0 <= o.status.stamp_ns / NS < 10.0]
    assert all(o.linear_mps == 0.0 and o.status.state is MissionState.STOPPED for o in held)
    assert "localization" in held[0].status.reasons[0]
    assert robot.states()[:3] == ["driving", "stopped", "driving"]
    assert any(e["action"] == "stop" for e in robot.events("safety"))


def test_gas_alarm_stops_then_returns_and_aborts_at_the_entry() -> None:
    """Gas: STOP for stop_s, then RETURN to the entry; the mission ends aborted with the reason."""
    def readings(t_s: float, robot: Robot) -> RobotReadings:
        return RobotReadings(gas=GasReadings(ch4_pct_vol=2.0) if robot.x > 8.0 or t_s > 30
                             else GasReadings())

    robot = Robot()
    last = robot.run(MissionExecutor(make_plan(), ROUTE), readings=readings)
    assert last.status.state is MissionState.ABORTED
    assert "gas" in str(last.status.end_reason) and "CH4" in str(last.status.end_reason)
    assert math.hypot(robot.x, robot.y) < 0.15
    assert robot.states() == ["driving", "stopped", "returning", "aborted"]
    stopped = [o for o in robot.outputs if o.status.state is MissionState.STOPPED]
    assert len(stopped) * DT_S == pytest.approx(5.0, abs=0.3)


def test_estop_holds_everything_until_reset() -> None:
    """ESTOP: zero command, latched after the input is released, resumes after a reset."""
    executor = MissionExecutor(make_plan(), ROUTE)

    def readings(t_s: float, robot: Robot) -> RobotReadings:
        if t_s == pytest.approx(15.0, abs=0.01):
            assert executor.supervisor.reset_estop()
        return RobotReadings(estop_laptop=3.0 <= t_s < 4.0)

    robot = Robot()
    last = robot.run(executor, readings=readings)
    assert last.status.state is MissionState.COMPLETED
    held = [o for o in robot.outputs if 3.0 <= o.status.stamp_ns / NS < 15.0]
    assert all(o.linear_mps == 0.0 and o.angular_radps == 0.0 for o in held)
    assert all(o.status.safety_action.value == "estop" for o in held)
    assert robot.states()[:3] == ["driving", "stopped", "driving"]


def test_estop_latched_to_max_duration_aborts() -> None:
    """A latch nobody resets: the mission aborts at its max duration."""
    robot = Robot()
    last = robot.run(MissionExecutor(make_plan(end={"then": "stop", "max_duration_s": 20.0}),
                                     ROUTE),
                     readings=lambda t_s, r: RobotReadings(estop_mcu=t_s >= 2.0))
    assert last.status.state is MissionState.ABORTED
    assert "e-stop" in str(last.status.end_reason)


def test_tether_stop_does_not_hold_the_return() -> None:
    """At the tether limit forward motion stops, but the way back is allowed."""
    plan = make_plan(end={"then": "return"},
                     safety={"tether": {"max_length_m": 12.0, "margin_m": 2.0}})

    def readings(t_s: float, robot: Robot) -> RobotReadings:
        return RobotReadings(tether_paid_out_m=robot.x, battery_pct=90.0)

    robot = Robot()
    executor = MissionExecutor(plan, ROUTE)
    with pytest.raises(AssertionError, match="not over"):
        robot.run(executor, max_s=60.0, readings=readings)
    # Held at the tether limit (10 m): the crew decides (the plan's route is too long)
    assert robot.x == pytest.approx(10.0, abs=0.2)
    assert executor.state is MissionState.STOPPED
    # A RETURN (e.g. battery) is not held by the tether stop
    low = make_plan(end={"then": "stop"},
                    safety={"tether": {"max_length_m": 12.0, "margin_m": 2.0}})
    robot = Robot()
    last = robot.run(MissionExecutor(low, ROUTE), readings=lambda t_s, r: RobotReadings(
        tether_paid_out_m=r.x, battery_pct=90.0 if r.x < 10.0 - 0.1 else 5.0))
    assert last.status.state is MissionState.ABORTED
    assert "battery" in str(last.status.end_reason)
    assert math.hypot(robot.x, robot.y) < 0.15


def test_events_are_plain_records() -> None:
    """Every event has stamp_ns and kind; the status serializes to plain values."""
    robot = Robot()
    last = robot.run(MissionExecutor(make_plan(actions=[
        {"kind": "photograph_at", "distance_m": 2.0}]), ROUTE))

    for output in robot.outputs:
        for event in output.events:
            record = event.as_record()
            assert isinstance(record["stamp_ns"], int) and isinstance(record["kind"], str)
            json.dumps(record)
    json.dumps(last.status.as_record())
    assert last.status.as_record()["state"] == "completed"


def test_route_polyline_follows_the_legs_over_the_site_axes() -> None:
    """Legs main 0-300 m then branch -1.6-50 m: one polyline through the junction."""
    from navigation.mission import load_plan_site, route_polyline

    plan = make_plan(site_file="world:utility_tunnel",
                     asset={"kind": "tunnel", "section_id": "T", "gallery": "main",
                            "from_m": 0.0, "to_m": 300.0},
                     direction="forward",
                     route={"legs": [{"axis": "main", "from_m": 0.0, "to_m": 300.0},
                                     {"axis": "branch", "from_m": -1.6, "to_m": 50.0}]})
    site = load_plan_site(plan)
    route = route_polyline(plan, site)
    assert route.length_m == pytest.approx(300.0 + 51.6, abs=0.05)
    assert route.points_m[0] == pytest.approx([0.0, 0.0, 0.0])
    junction = route.point_at(300.0)
    assert junction[:2] == pytest.approx([300.0, 0.0], abs=0.05)
    assert route.point_at(route.length_m)[1] < -45.0
