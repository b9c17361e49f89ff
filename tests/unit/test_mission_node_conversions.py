"""The mission_executor node's plain-value edges: parsers, staleness, status records (no ROS)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from crawler_navigation.mission_conversions import (
    GAS_FIELDS,
    MCU_DIAGNOSTIC,
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
from navigation.mission import GasReadings, load_plan
from navigation.mission.executor import ExecutorConfig, FindingNotice, MissionStatus

NS = 1_000_000_000
SAMPLE_PLAN = (Path(__file__).resolve().parents[2] / "navigation" / "mission" / "examples"
               / "sewer_dn1000.yaml")


def test_finding_notice_from_the_mappers_json() -> None:
    """The mapper's document: id, code and start_m (the chainage) make the notice."""
    text = json.dumps({"id": "F001", "code": "PL", "axis": "pipe", "start_m": 4.894,
                       "end_m": 5.131, "clock_h": 12.0})
    assert finding_notice(text) == FindingNotice("F001", "PL", 4.894)


@pytest.mark.parametrize(("text", "match"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"id": "F1", "code": "PL"}', "missing start_m"),
    ('{"id": "F1", "code": "PL", "start_m": "4"}', "start_m must be a finite number"),
    ('{"id": "F1", "code": "PL", "start_m": NaN}', "start_m must be a finite number"),
    ('{"id": "", "code": "PL", "start_m": 1.0}', "id must be a non-empty string"),
])
def test_malformed_finding_is_rejected(text: str, match: str) -> None:
    """Malformed findings raise MessageError saying what is wrong."""
    with pytest.raises(MessageError, match=match):
        finding_notice(text)


def test_gas_readings_follow_the_label_order() -> None:
    """The bridge's order by default; a label reorders; wrong sizes or names are errors."""
    assert gas_readings([20.9, 0.1, 2.0, 3.0]) == GasReadings(20.9, 0.1, 2.0, 3.0)
    assert gas_readings([2.0, 20.9, 3.0, 0.1], "h2s_ppm|o2_pct|co_ppm|ch4_pct_vol") == \
        GasReadings(20.9, 0.1, 2.0, 3.0)
    with pytest.raises(MessageError, match="expected 4 gas values, got 3"):
        gas_readings([20.9, 0.0, 0.0], "|".join(GAS_FIELDS))
    with pytest.raises(MessageError, match="gas labels"):
        gas_readings([20.9, 0.0, 0.0, 0.0], "o2|ch4|h2s|co")


def test_battery_and_mcu_estop() -> None:
    """BatteryState's 0-1 fraction is percent; the MCU status carries the e-stop latch."""
    assert battery_pct(0.42) == pytest.approx(42.0)
    assert math.isnan(battery_pct(math.nan))
    link = ("crawler_driver: serial link", {"frames": "10"})
    assert mcu_estop([link, (MCU_DIAGNOSTIC, {"estop_latched": "True"})]) is True
    assert mcu_estop([(MCU_DIAGNOSTIC, {"estop_latched": "False"})]) is False
    assert mcu_estop([link]) is None


def test_position_sigma_is_the_larger_horizontal_axis() -> None:
    """sqrt of the larger eigenvalue of the x/y block; not finite: infinite."""
    cov = np.zeros((6, 6))
    cov[:2, :2] = [[0.04, 0.0], [0.0, 0.09]]
    cov[2, 2] = 100.0  # height does not count
    assert position_sigma_m(list(cov.ravel())) == pytest.approx(0.3)
    cov[0, 0] = math.nan
    assert position_sigma_m(list(cov.ravel())) == math.inf
    with pytest.raises(MessageError, match="36 values"):
        position_sigma_m([0.0] * 9)


def test_inputs_fail_safe_when_telemetry_is_stale() -> None:
    """Fresh telemetry passes as heard; stale or missing becomes NaN for the supervisor."""
    inputs = MissionInputs(0, telemetry_timeout_s=5.0, pose_timeout_s=1.0, tethered=True)
    assert inputs.missing(0) == ["no /localization/pose yet", "no /battery yet", "no /gas yet",
                                 "no /tether/length yet"]
    inputs.battery(80.0, 1 * NS)
    inputs.gas(GasReadings(20.0, 0.0, 1.0, 2.0), 1 * NS)
    inputs.tether(12.5, 1 * NS)
    inputs.pose(np.eye(4), 0.1, 1 * NS)
    inputs.laptop(2 * NS)
    now = 3 * NS
    readings = inputs.readings(now)
    assert (readings.battery_pct, readings.tether_paid_out_m) == (80.0, 12.5)
    assert readings.gas == GasReadings(20.0, 0.0, 1.0, 2.0)
    assert readings.link_silence_s == pytest.approx(1.0)
    assert inputs.missing(now) == ["no /localization/pose for 2.0 s"]
    assert inputs.pose_stale(now) and inputs.pose_age_s(now) == pytest.approx(2.0)
    # 7 s later nothing has been heard for 9 s: unknown
    late = inputs.readings(10 * NS)
    assert math.isnan(late.battery_pct) and math.isnan(late.gas.h2s_ppm)
    assert late.tether_paid_out_m is not None and math.isnan(late.tether_paid_out_m)


def test_untethered_inputs_have_no_tether() -> None:
    """Off a tether the cable counter is neither awaited nor reported."""
    inputs = MissionInputs(0, 5.0, 1.0, tethered=False)
    inputs.tether(3.0, 0)
    assert inputs.readings(0).tether_paid_out_m is None
    assert "no /tether/length yet" not in inputs.missing(0)
    with pytest.raises(ValueError, match="timeouts"):
        MissionInputs(0, 0.0, 1.0, tethered=False)


def test_waiting_and_aborted_records_have_the_status_keys() -> None:
    """The node's own records carry every key of MissionStatus.as_record()."""
    plan = load_plan(SAMPLE_PLAN)
    keys = set(MissionStatus.__dataclass_fields__) - {"safety_action"} | {"safety"}
    waiting = waiting_record(5, plan, 120.0, ExecutorConfig(), ["no /gas yet"])
    assert set(waiting) == keys
    assert waiting["state"] == "waiting" and waiting["reasons"] == ["no /gas yet"]
    assert waiting["distance_left_m"] == pytest.approx(240.0)  # out and back
    # 240 m at 0.15 m/s, two photos (2 s) and one scan in a pipe (5 s)
    assert waiting["eta_s"] == pytest.approx(240.0 / 0.15 + 9.0)
    event: dict[str, object] = {"kind": "state", "state": "aborted"}
    aborted = aborted_record(9, waiting, "aborted by the crew", event)
    assert set(aborted) == keys
    assert (aborted["state"], aborted["end_reason"]) == ("aborted", "aborted by the crew")
    assert aborted["distance_left_m"] == 0.0 and aborted["last_event"] == event


def test_to_json_writes_non_finite_numbers_as_null() -> None:
    """JSON has no NaN: it becomes null, also nested."""
    assert json.loads(to_json({"a": math.nan, "b": [math.inf, 1.5], "c": (1, "x")})) == {
        "a": None, "b": [None, 1.5], "c": [1, "x"]}
