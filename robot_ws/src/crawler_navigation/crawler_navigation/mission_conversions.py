"""Plain-value edges of the ``mission_executor`` node (no rclpy: tested without a ROS graph).

The node takes the numbers out of its messages and hands them here: ``MissionInputs`` keeps
what was last heard and when (node clock, integer nanoseconds) and turns it into the
executor's ``RobotReadings``; the parsers turn the defect mapper's finding JSON, the MCU
bridge's gas array and diagnostics key-values, and a pose covariance into typed values; the
record helpers build the ``/mission/status`` documents the executor does not (before the
start, after a crew abort).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from crawler.json_text import to_json as to_json
from navigation.mission.executor import ExecutorConfig, FindingNotice, RobotReadings
from navigation.mission.plan import EndBehaviour, MissionPlan, PhotographAt, Scan360
from navigation.mission.safety import GasReadings

FloatArray = NDArray[np.float64]
_NS = 1_000_000_000
GAS_FIELDS = ("o2_pct", "ch4_pct_vol", "h2s_ppm", "co_ppm")
"""The MCU bridge's ``/gas`` array order (its ``layout.dim[0].label`` joins them with ``|``)."""
MCU_DIAGNOSTIC = "crawler_driver: MCU"
"""The bridge's ``/diagnostics`` status that carries the MCU's ``estop_latched``."""
WAITING = "waiting"
"""``state`` of ``/mission/status`` before ``/mission/start``."""
_UNKNOWN_GAS = GasReadings(math.nan, math.nan, math.nan, math.nan)


class MessageError(ValueError):
    """A message whose content cannot be used (malformed JSON, wrong array size)."""


# --- parsers ---------------------------------------------------------------------------------


def finding_notice(text: str) -> FindingNotice:
    """A ``/defects/findings`` JSON document as the executor's notice (``start_m`` = chainage).

    Raises MessageError naming what is missing or malformed.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise MessageError(f"not JSON: {err.msg} at character {err.pos}") from err
    if not isinstance(doc, dict):
        raise MessageError("expected a JSON object")
    missing = [key for key in ("id", "code", "start_m") if key not in doc]
    if missing:
        raise MessageError(f"missing {', '.join(missing)}")
    start_m = doc["start_m"]
    if isinstance(start_m, bool) or not isinstance(start_m, int | float) \
            or not math.isfinite(start_m):
        raise MessageError(f"start_m must be a finite number, got {start_m!r}")
    if not isinstance(doc["id"], str) or not doc["id"]:
        raise MessageError(f"id must be a non-empty string, got {doc['id']!r}")
    return FindingNotice(doc["id"], str(doc["code"]), float(start_m))


def gas_readings(values: Sequence[float], label: str = "") -> GasReadings:
    """The gas head's readings from the bridge's ``/gas`` array.

    ``label`` (``layout.dim[0].label``) gives the order as ``o2_pct|ch4_pct_vol|...``; empty:
    the bridge's order ``GAS_FIELDS``. Raises MessageError for a wrong size or unknown names.
    """
    names = tuple(label.split("|")) if label else GAS_FIELDS
    if sorted(names) != sorted(GAS_FIELDS):
        raise MessageError(f"gas labels {label!r} are not {'|'.join(GAS_FIELDS)}")
    if len(values) != len(names):
        raise MessageError(f"expected {len(names)} gas values, got {len(values)}")
    by_name = {name: float(value) for name, value in zip(names, values, strict=True)}
    return GasReadings(**by_name)


def battery_pct(percentage: float) -> float:
    """``sensor_msgs/BatteryState.percentage`` (0 to 1; NaN unknown) as percent (0 to 100)."""
    return 100.0 * float(percentage)


def mcu_estop(statuses: Iterable[tuple[str, Mapping[str, str]]]) -> bool | None:
    """``estop_latched`` of the bridge's MCU status among (name, key-values); None: absent."""
    for name, values in statuses:
        if name == MCU_DIAGNOSTIC and "estop_latched" in values:
            return values["estop_latched"].strip().lower() in ("true", "1")
    return None


def position_sigma_m(covariance: Sequence[float]) -> float:
    """Horizontal 1-sigma of a row-major 6x6 pose covariance: sqrt of the larger x/y eigenvalue.

    A covariance that is not finite gives infinity (the supervisor then stops the robot).
    """
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.size != 36:
        raise MessageError(f"expected a 6x6 covariance (36 values), got {cov.size}")
    xy = cov.reshape(6, 6)[:2, :2]
    if not np.isfinite(xy).all():
        return math.inf
    largest = float(np.max(np.linalg.eigvalsh(0.5 * (xy + xy.T))))
    return math.sqrt(max(largest, 0.0))


# --- what the node has heard -----------------------------------------------------------------


T = TypeVar("T")


@dataclass(frozen=True)
class _Heard(Generic[T]):
    value: T
    rx_ns: int


class MissionInputs:
    """The latest battery, gas, tether, e-stops, laptop contact and pose, with receipt times.

    All times are the node clock in integer nanoseconds. Telemetry not heard for longer than
    ``telemetry_timeout_s`` (or never) is unknown and goes to the supervisor as NaN, which it
    treats as out of limits (it fails safe): gas -> stop then retreat, battery -> return,
    tether (tethered sites only) -> no further forward.
    """

    def __init__(self, start_ns: int, telemetry_timeout_s: float, pose_timeout_s: float,
                 tethered: bool) -> None:
        if not telemetry_timeout_s > 0.0 or not pose_timeout_s > 0.0:
            raise ValueError("timeouts must be > 0 s")
        self.telemetry_timeout_ns = round(telemetry_timeout_s * _NS)
        self.pose_timeout_ns = round(pose_timeout_s * _NS)
        self.tethered = tethered
        self._battery: _Heard[float] | None = None
        self._gas: _Heard[GasReadings] | None = None
        self._tether: _Heard[float] | None = None
        self._pose: _Heard[tuple[FloatArray, float]] | None = None
        self.estop_mcu = False
        self.estop_laptop = False
        """The laptop's e-stop input (``/mission/estop``); the supervisor latches it."""
        self.laptop_heard_ns = start_ns
        """Last contact with the laptop (heartbeat, e-stop, a service call), or the mission's
        start if later (the node's start before either)."""

    # --- inputs ---------------------------------------------------------------------------

    def battery(self, pct: float, rx_ns: int) -> None:
        """A battery state of charge (percent)."""
        self._battery = _Heard(float(pct), rx_ns)

    def gas(self, readings: GasReadings, rx_ns: int) -> None:
        """A gas head reading."""
        self._gas = _Heard(readings, rx_ns)

    def tether(self, paid_out_m: float, rx_ns: int) -> None:
        """A cable counter reading."""
        self._tether = _Heard(float(paid_out_m), rx_ns)

    def pose(self, T_site_base: FloatArray, sigma_m: float, rx_ns: int) -> None:
        """A localized pose (4x4, site frame) and its horizontal 1-sigma."""
        self._pose = _Heard((T_site_base, float(sigma_m)), rx_ns)

    def laptop(self, rx_ns: int) -> None:
        """The laptop was heard from."""
        self.laptop_heard_ns = max(self.laptop_heard_ns, rx_ns)

    # --- outputs --------------------------------------------------------------------------

    def latest_pose(self) -> tuple[FloatArray, float] | None:
        """The last pose and sigma, however old."""
        return None if self._pose is None else self._pose.value

    def pose_age_s(self, now_ns: int) -> float | None:
        """Seconds since the last pose; None before the first."""
        return None if self._pose is None else max(now_ns - self._pose.rx_ns, 0) / _NS

    def pose_stale(self, now_ns: int) -> bool:
        """No pose yet, or none for longer than the pose timeout."""
        return self._pose is None or now_ns - self._pose.rx_ns > self.pose_timeout_ns

    def link_silence_s(self, now_ns: int) -> float:
        """Seconds since the laptop was last heard."""
        return max(now_ns - self.laptop_heard_ns, 0) / _NS

    def readings(self, now_ns: int) -> RobotReadings:
        """The supervisor's inputs now; stale or missing telemetry is NaN (fails safe)."""
        battery = self._fresh(self._battery, now_ns)
        gas = self._fresh(self._gas, now_ns)
        tether = self._fresh(self._tether, now_ns)
        return RobotReadings(
            battery_pct=math.nan if battery is None else battery,
            gas=_UNKNOWN_GAS if gas is None else gas,
            tether_paid_out_m=(math.nan if tether is None else tether) if self.tethered
            else None,
            estop_mcu=self.estop_mcu, estop_laptop=self.estop_laptop,
            link_silence_s=self.link_silence_s(now_ns))

    def missing(self, now_ns: int) -> list[str]:
        """What the start waits for: topics not heard, or not for too long."""
        wanted: list[tuple[str, int | None, int]] = [
            ("/localization/pose", _rx(self._pose), self.pose_timeout_ns),
            ("/battery", _rx(self._battery), self.telemetry_timeout_ns),
            ("/gas", _rx(self._gas), self.telemetry_timeout_ns)]
        if self.tethered:
            wanted.append(("/tether/length", _rx(self._tether), self.telemetry_timeout_ns))
        out = []
        for topic, rx_ns, timeout_ns in wanted:
            if rx_ns is None:
                out.append(f"no {topic} yet")
            elif now_ns - rx_ns > timeout_ns:
                out.append(f"no {topic} for {(now_ns - rx_ns) / _NS:.1f} s")
        return out

    def _fresh(self, heard: _Heard[T] | None, now_ns: int) -> T | None:
        if heard is None or now_ns - heard.rx_ns > self.telemetry_timeout_ns:
            return None
        return heard.value


def _rx(heard: _Heard[Any] | None) -> int | None:
    return None if heard is None else heard.rx_ns


# --- status records the executor does not write ----------------------------------------------


def waiting_record(stamp_ns: int, plan: MissionPlan, end_m: float,
                   config: ExecutorConfig, reasons: Sequence[str]) -> dict[str, object]:
    """``/mission/status`` before the start: the keys of ``MissionStatus.as_record()``.

    ``end_m``: where the outbound drive ends along the route (``MissionExecutor.end_m``);
    ``reasons``: what the start waits for.
    """
    left_m = end_m * (2.0 if plan.end.then is EndBehaviour.RETURN else 1.0)
    dwell_s = sum(config.photo_dwell_s if isinstance(a, PhotographAt) else config.scan_dwell_s
                  for a in plan.actions if isinstance(a, PhotographAt | Scan360))
    return {"stamp_ns": stamp_ns, "state": WAITING, "route_distance_m": 0.0,
            "distance_done_m": 0.0, "distance_left_m": round(left_m, 3),
            "eta_s": round(left_m / plan.speed.max_mps + dwell_s, 1), "speed_mps": 0.0,
            "elapsed_s": 0.0, "safety": "continue", "reasons": list(reasons),
            "last_event": None, "end_reason": None}


def aborted_record(stamp_ns: int, last: Mapping[str, object], reason: str,
                   event: Mapping[str, object]) -> dict[str, object]:
    """``/mission/status`` once the crew aborted: the last record published, state
    ``aborted``, nothing left to drive."""
    return {**last, "stamp_ns": stamp_ns, "state": "aborted", "distance_left_m": 0.0,
            "eta_s": 0.0, "speed_mps": 0.0, "last_event": dict(event), "end_reason": reason}
