"""Safety supervisor: each behaviour in a short scripted scenario of statuses over time."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from navigation.mission import (
    BatteryPolicy,
    GasLimits,
    GasReadings,
    LinkLossBehaviour,
    LinkPolicy,
    MissionPlan,
    ObstaclePolicy,
    ReasonCode,
    RobotStatus,
    SafetyAction,
    SafetyDecision,
    SafetyError,
    SafetyPolicy,
    SafetySupervisor,
    supervisor_for_plan,
)

NS = 1_000_000_000
MAX_MPS = 0.15
CLEAN = RobotStatus(stamp_ns=0, route_distance_m=10.0, distance_to_entry_m=10.0,
                    speed_mps=0.15, battery_pct=90.0, gas=GasReadings(), position_sigma_m=0.1,
                    tether_paid_out_m=10.0)

A = SafetyAction


def at(t_s: float, **changes: Any) -> RobotStatus:
    """The clean status at ``t_s`` seconds with some fields changed."""
    return dataclasses.replace(CLEAN, stamp_ns=round(t_s * NS), **changes)


def run(supervisor: SafetySupervisor, *statuses: RobotStatus) -> list[SafetyDecision]:
    """Feed statuses in order; the decisions."""
    return [supervisor.update(status) for status in statuses]


def codes(decision: SafetyDecision) -> list[ReasonCode]:
    """The decision's reason codes, in its order."""
    return [reason.code for reason in decision.reasons]


def test_clean_status_continues_at_plan_speed_without_events() -> None:
    """Nothing wrong: CONTINUE at the top speed, no reasons, nothing recorded."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    decisions = run(supervisor, at(0.0), at(1.0), at(2.0))
    assert all(d.action is A.CONTINUE and d.speed_limit_mps == MAX_MPS and not d.reasons
               for d in decisions)
    assert supervisor.events == ()


def test_gas_ch4_stops_then_retreats_and_clears_only_after_clear_time() -> None:
    """CH4 1.2 %: STOP for stop_s, then RETURN; released after clear_s of clean readings."""
    policy = SafetyPolicy(gas=GasLimits(stop_s=5.0, clear_s=30.0))
    supervisor = SafetySupervisor(policy, MAX_MPS)
    methane = GasReadings(ch4_pct_vol=1.2)
    onset, stopped, retreat, clear, relapse = run(
        supervisor, at(100.0, gas=methane), at(104.9, gas=methane), at(105.0, gas=methane),
        at(110.0), at(120.0, gas=methane))
    assert (onset.action, onset.speed_limit_mps) == (A.STOP, 0.0)
    assert "CH4 1.20 %vol >= 1.0 %vol" in onset.reasons[0].message
    assert stopped.action is A.STOP
    assert retreat.action is A.RETURN
    assert clear.action is A.RETURN  # clean for 0 s: the alarm holds
    assert relapse.action is A.RETURN
    # Clean from 121 s: still returning at 150.9 s, released at 151 s (30 s clean).
    holding, released = run(supervisor, at(121.0), at(150.9))[-1], supervisor.update(at(151.0))
    assert holding.action is A.RETURN and "clear for 29.9 s of 30.0 s" in holding.reasons[0].message
    assert released.action is A.CONTINUE and not released.reasons
    assert [(e.stamp_ns, e.action) for e in supervisor.events] == [
        (100 * NS, A.STOP), (105 * NS, A.RETURN), (151 * NS, A.CONTINUE)]
    assert all(r.since_ns == 100 * NS for e in supervisor.events for r in e.reasons)


@pytest.mark.parametrize(("gas", "alarm"), [
    (GasReadings(o2_pct=19.4), True), (GasReadings(o2_pct=19.5), False),
    (GasReadings(ch4_pct_vol=1.0), True), (GasReadings(ch4_pct_vol=0.99), False),
    (GasReadings(h2s_ppm=10.0), True), (GasReadings(h2s_ppm=9.9), False),
    (GasReadings(co_ppm=24.0), True), (GasReadings(co_ppm=23.9), False),
    (GasReadings(co_ppm=math.nan), True),
])
def test_gas_default_thresholds(gas: GasReadings, alarm: bool) -> None:
    """O2 < 19.5 %, CH4 >= 1 %vol, H2S >= 10 ppm, CO >= 24 ppm alarm; NaN fails safe."""
    decision = SafetySupervisor(SafetyPolicy(), MAX_MPS).update(at(0.0, gas=gas))
    assert (decision.reason(ReasonCode.GAS) is not None) is alarm
    assert decision.action is (A.STOP if alarm else A.CONTINUE)


def test_estop_latches_until_reset_after_release() -> None:
    """Laptop e-stop: ESTOP stays after release until reset; reset refused while pressed."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    pressed = supervisor.update(at(1.0, estop_laptop=True))
    assert (pressed.action, pressed.speed_limit_mps) == (A.ESTOP, 0.0)
    assert pressed.reasons[0].message == "e-stop from the laptop"
    assert supervisor.reset_estop() is False  # still pressed
    released = supervisor.update(at(2.0))
    assert released.action is A.ESTOP and "waiting for a reset" in released.reasons[0].message
    assert supervisor.update(at(30.0)).action is A.ESTOP
    assert supervisor.reset_estop() is True
    assert supervisor.update(at(31.0)).action is A.CONTINUE
    assert [e.action for e in supervisor.events] == [A.ESTOP, A.CONTINUE]


def test_mcu_estop_outranks_every_other_reason() -> None:
    """An MCU e-stop with a gas alarm and a low battery: ESTOP, all three reasons listed."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    decision = supervisor.update(at(0.0, estop_mcu=True, gas=GasReadings(h2s_ppm=15.0),
                                    battery_pct=5.0))
    assert decision.action is A.ESTOP
    assert codes(decision) == [ReasonCode.ESTOP, ReasonCode.BATTERY, ReasonCode.GAS]


def test_battery_return_point_hand_computed() -> None:
    """100 Wh, 0.5 Wh/m, 50 % reserve, draining 0.5 Wh/m: the robot turns back after 80 m.

    At d metres out: left = 100 - 0.5 d Wh, way back = 0.5 d x 1.5 = 0.75 d Wh; they meet at
    d = 80 m (60 Wh each): still CONTINUE there (not exceeded), RETURN at the next step.
    """
    policy = SafetyPolicy(battery=BatteryPolicy(capacity_wh=100.0, consumption_wh_per_m=0.5,
                                                reserve_fraction=0.5, min_pct=5.0))
    supervisor = SafetySupervisor(policy, MAX_MPS)
    turned_at = None
    for step in range(0, 400):
        d = 0.5 * step
        decision = supervisor.update(at(float(step), route_distance_m=d, distance_to_entry_m=d,
                                        battery_pct=100.0 - 0.5 * d))
        if decision.action is A.RETURN:
            turned_at = d
            break
    assert turned_at == 80.5
    message = decision.reasons[0].message
    assert "59.8 Wh left" in message and "needs 60.4 Wh" in message
    # Latched: nearer the entry the way back is cheap, but the robot keeps returning.
    assert supervisor.update(at(500.0, distance_to_entry_m=1.0, battery_pct=59.0)).action \
        is A.RETURN


@pytest.mark.parametrize(("pct", "action"), [(10.0, A.RETURN), (10.1, A.CONTINUE),
                                             (math.nan, A.RETURN)])
def test_battery_floor(pct: float, action: SafetyAction) -> None:
    """At the entry the way back costs nothing, but the 10 % floor still sends it back."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    assert supervisor.update(at(0.0, distance_to_entry_m=0.0, battery_pct=pct)).action is action


def test_localization_slows_then_stops() -> None:
    """Sigma above 0.5 m: SLOW at 0.05 m/s; above 1.5 m (or NaN): STOP; back below: CONTINUE."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    sigmas = [0.5, 0.6, 1.5, 1.6, math.nan, 0.3]
    decisions = run(supervisor, *(at(float(i), position_sigma_m=s) for i, s in enumerate(sigmas)))
    assert [(d.action, d.speed_limit_mps) for d in decisions] == [
        (A.CONTINUE, MAX_MPS), (A.SLOW, 0.05), (A.SLOW, 0.05), (A.STOP, 0.0), (A.STOP, 0.0),
        (A.CONTINUE, MAX_MPS)]
    assert decisions[3].reasons[0].message == "position sigma 1.60 m > stop level 1.5 m"
    assert decisions[3].reasons[0].since_ns == 1 * NS  # localization reason since it slowed
    assert [e.action for e in supervisor.events] == [A.SLOW, A.STOP, A.CONTINUE]


def test_tether_limit_stops_forward_but_allows_return() -> None:
    """200 m drum, 5 m margin: STOP at 195 m paid out; a battery RETURN still wins."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    before, limit = run(supervisor, at(0.0, tether_paid_out_m=194.9),
                        at(1.0, tether_paid_out_m=195.0))
    assert before.action is A.CONTINUE
    assert (limit.action, codes(limit)) == (A.STOP, [ReasonCode.TETHER])
    back = supervisor.update(at(2.0, tether_paid_out_m=196.0, distance_to_entry_m=196.0,
                                battery_pct=10.0))
    assert (back.action, codes(back)) == (A.RETURN, [ReasonCode.BATTERY, ReasonCode.TETHER])
    assert back.speed_limit_mps == MAX_MPS
    untethered = SafetySupervisor(SafetyPolicy(), MAX_MPS).update(at(0.0, tether_paid_out_m=None))
    assert untethered.action is A.CONTINUE


def test_obstacle_that_stays_makes_the_robot_return() -> None:
    """Obstacle at 0.3 m: STOP, wait 30 s, still there: RETURN (latched, reason 'obstacle')."""
    policy = SafetyPolicy(obstacle=ObstaclePolicy(stop_distance_m=0.5, wait_s=30.0))
    supervisor = SafetySupervisor(policy, MAX_MPS)
    seen, waiting, gives_up, reversing = run(
        supervisor, at(10.0, obstacle_range_m=0.3), at(39.9, obstacle_range_m=0.3),
        at(40.0, obstacle_range_m=0.3), at(45.0, obstacle_range_m=None))
    assert seen.action is A.STOP and waiting.action is A.STOP
    assert "waiting 29.9 s of 30.0 s" in waiting.reasons[0].message
    assert gives_up.action is A.RETURN
    assert gives_up.reasons[0].code is ReasonCode.OBSTACLE
    assert gives_up.reasons[0].code.value == "obstacle"
    assert reversing.action is A.RETURN  # driving away, the obstacle is out of range
    assert [(e.stamp_ns, e.action) for e in supervisor.events] == [
        (10 * NS, A.STOP), (40 * NS, A.RETURN)]


def test_obstacle_that_clears_in_time_lets_the_robot_continue() -> None:
    """The obstacle goes after 10 s: CONTINUE; when it comes back the wait starts over."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    decisions = run(supervisor, at(0.0, obstacle_range_m=0.2), at(9.0, obstacle_range_m=0.4),
                    at(10.0, obstacle_range_m=0.5), at(20.0, obstacle_range_m=0.3),
                    at(49.0, obstacle_range_m=0.3), at(50.0, obstacle_range_m=0.3))
    assert [d.action for d in decisions] == [A.STOP, A.STOP, A.CONTINUE, A.STOP, A.STOP,
                                             A.RETURN]
    assert decisions[3].reasons[0].since_ns == 20 * NS


@pytest.mark.parametrize(("on_loss", "action"), [(LinkLossBehaviour.CONTINUE, A.CONTINUE),
                                                 (LinkLossBehaviour.RETURN, A.RETURN)])
def test_link_lost_continue_or_return_per_plan(on_loss: LinkLossBehaviour,
                                               action: SafetyAction) -> None:
    """Silent for more than 10 s: the plan's behaviour, with a reason either way."""
    policy = SafetyPolicy(link=LinkPolicy(timeout_s=10.0, on_loss=on_loss))
    supervisor = SafetySupervisor(policy, MAX_MPS)
    quiet, lost, back = run(supervisor, at(0.0, link_silence_s=10.0),
                            at(1.0, link_silence_s=11.0), at(2.0, link_silence_s=0.1))
    assert quiet.action is A.CONTINUE and not quiet.reasons
    assert (lost.action, codes(lost)) == (action, [ReasonCode.LINK_LOST])
    assert "silent for 11.0 s (> 10.0 s)" in lost.reasons[0].message
    assert back.action is A.CONTINUE and not back.reasons
    assert [e.action for e in supervisor.events] == [action, A.CONTINUE]


def test_worst_action_wins_and_all_reasons_are_reported() -> None:
    """Slow localization + tether limit + link lost (continue): STOP, worst reason first."""
    policy = SafetyPolicy(link=LinkPolicy(on_loss=LinkLossBehaviour.CONTINUE))
    supervisor = SafetySupervisor(policy, MAX_MPS)
    decision = supervisor.update(at(0.0, position_sigma_m=0.8, tether_paid_out_m=199.0,
                                    link_silence_s=60.0))
    assert decision.action is A.STOP and decision.speed_limit_mps == 0.0
    assert [(r.code, r.action) for r in decision.reasons] == [
        (ReasonCode.TETHER, A.STOP), (ReasonCode.LOCALIZATION, A.SLOW),
        (ReasonCode.LINK_LOST, A.CONTINUE)]
    # A gas alarm on top, past its stop time: RETURN, at the slow speed (localization).
    supervisor.update(at(1.0, gas=GasReadings(o2_pct=18.0), position_sigma_m=0.8))
    retreat = supervisor.update(at(7.0, gas=GasReadings(o2_pct=18.0), position_sigma_m=0.8))
    assert retreat.action is A.RETURN and retreat.speed_limit_mps == 0.05
    assert codes(retreat) == [ReasonCode.GAS, ReasonCode.LOCALIZATION]


def test_events_record_only_transitions() -> None:
    """Changing messages (sigma values) are no transition; a new reason is, and serializes."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    run(supervisor, at(0.0, position_sigma_m=0.6), at(1.0, position_sigma_m=0.7),
        at(2.0, position_sigma_m=0.7, link_silence_s=20.0))
    events = supervisor.events
    assert [(e.stamp_ns, e.previous, e.action) for e in events] == [
        (0, A.CONTINUE, A.SLOW), (2 * NS, A.SLOW, A.RETURN)]
    record = json.loads(json.dumps([e.as_record() for e in events]))
    assert record[1]["reasons"][0] == {
        "code": "link_lost", "action": "return", "since_ns": 2 * NS,
        "message": "laptop link silent for 20.0 s (> 10.0 s): returning per plan"}


def test_stamp_going_backwards_is_an_error() -> None:
    """Statuses must come in time order."""
    supervisor = SafetySupervisor(SafetyPolicy(), MAX_MPS)
    supervisor.update(at(2.0))
    with pytest.raises(SafetyError, match="earlier than the previous one"):
        supervisor.update(at(1.0))


def test_supervisor_for_plan_uses_the_plan_policy_and_speed() -> None:
    """A tunnel plan: top speed 0.3 m/s; the plan's gas limits."""
    plan = MissionPlan.model_validate({
        "site_file": "world:utility_tunnel", "direction": "forward",
        "asset": {"kind": "tunnel", "section_id": "T1", "gallery": "main", "from_m": 0.0,
                  "to_m": 100.0},
        "route": {"axis": "main", "from_m": 0.0, "to_m": 100.0},
        "safety": {"gas": {"co_max_ppm": 50.0}}})
    supervisor = supervisor_for_plan(plan)
    assert supervisor.update(at(0.0, gas=GasReadings(co_ppm=30.0))).speed_limit_mps == 0.3
