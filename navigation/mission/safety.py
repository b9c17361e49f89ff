"""The safety supervisor: what the robot may do now, and why, from what it knows now.

``SafetySupervisor.update(status)`` is pure and time-stepped: the caller (the mission
executor, a test, a replay of a recording) passes a ``RobotStatus`` stamped in integer
nanoseconds, and gets a ``SafetyDecision``: the worst action any active rule asks for, the
speed limit that goes with it, and every active reason with the measured value, its limit and
since when it holds. Each change of the action or of the set of reasons is appended to
``events`` for the mission record.

Actions, mildest first (the worst one wins):

- CONTINUE: carry on with the plan at its speed.
- SLOW: carry on at the localization policy's slow speed.
- STOP: hold position (speed limit 0); no further forward motion. Driving back to the entry
  is still allowed: a RETURN from another rule, or from the crew, overrides a STOP.
- RETURN: drive back to the entry now.
- ESTOP: no motion at all until the e-stop is reset.

Rules (thresholds from ``SafetyPolicy``):

- e-stop from the MCU or the laptop: ESTOP, latched until ``reset_estop()`` with both released.
- gas (O2 low, CH4 / H2S / CO high): STOP for ``gas.stop_s`` (alert), then RETURN (retreat);
  the alarm holds until every reading has been within its limit for ``gas.clear_s``.
- battery: RETURN, latched for the rest of the mission, once the energy left is less than
  the way back needs (distance to entry x consumption x (1 + reserve)), or the charge is at
  or below ``battery.min_pct``.
- localization: position sigma above ``slow_sigma_m``: SLOW; above ``stop_sigma_m``: STOP.
- tether: paid out within ``margin_m`` of ``max_length_m``: STOP (RETURN allowed).
- obstacle in the direction of travel closer than ``stop_distance_m``: STOP; still there
  after ``wait_s``: RETURN, latched for the rest of the mission; gone before: CONTINUE.
- laptop link silent for longer than ``link.timeout_s``: CONTINUE or RETURN per the plan
  (a reason either way, so the record shows it); released when the link is back.

A reading that is not a number (NaN) counts as out of limits: the supervisor fails safe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from navigation.mission.errors import SafetyError
from navigation.mission.plan import PIPE_MAX_MPS, LinkLossBehaviour, MissionPlan, SafetyPolicy

_NS_PER_S = 1_000_000_000


class SafetyAction(enum.Enum):
    """What the supervisor allows; members are declared from the mildest to the worst."""

    CONTINUE = "continue"
    SLOW = "slow"
    STOP = "stop"
    RETURN = "return"
    ESTOP = "estop"

    @property
    def severity(self) -> int:
        """Rank of the action: the highest rank among active reasons wins."""
        return _ORDER.index(self)


_ORDER = tuple(SafetyAction)


class ReasonCode(enum.Enum):
    """Which rule a reason comes from (declared in the order reasons of equal action are listed)."""

    ESTOP = "estop"
    GAS = "gas"
    BATTERY = "battery"
    OBSTACLE = "obstacle"
    TETHER = "tether"
    LOCALIZATION = "localization"
    LINK_LOST = "link_lost"


_CODES = tuple(ReasonCode)


@dataclass(frozen=True)
class GasReadings:
    """The gas head's readings (defaults: clean air)."""

    o2_pct: float = 20.9
    ch4_pct_vol: float = 0.0
    h2s_ppm: float = 0.0
    co_ppm: float = 0.0


@dataclass(frozen=True)
class RobotStatus:
    """What the robot knows at ``stamp_ns``: the supervisor's only input."""

    stamp_ns: int
    route_distance_m: float
    """Distance travelled along the route from its start."""
    distance_to_entry_m: float
    """Distance the robot has to drive to get back to the entry."""
    speed_mps: float
    battery_pct: float
    """State of charge, 0 to 100 (the MCU's battery percent)."""
    gas: GasReadings
    position_sigma_m: float
    """Horizontal position uncertainty of the localizer, 1 sigma."""
    tether_paid_out_m: float | None = None
    """Cable counter reading; None: the robot is not tethered."""
    obstacle_range_m: float | None = None
    """Range to the nearest obstacle in the direction of travel; None: nothing seen."""
    estop_mcu: bool = False
    """The MCU reports its e-stop latched (its button, or a latch command)."""
    estop_laptop: bool = False
    """The crew pressed e-stop on the laptop."""
    link_silence_s: float = 0.0
    """Seconds since the laptop link was last heard."""


@dataclass(frozen=True)
class Reason:
    """One active rule: the action it asks for, what was measured against which limit."""

    code: ReasonCode
    action: SafetyAction
    message: str
    since_ns: int
    """Stamp of the status on which this reason became active (and has been since)."""

    def as_record(self) -> dict[str, object]:
        """Plain values for the mission record (JSON, YAML)."""
        return {"code": self.code.value, "action": self.action.value, "message": self.message,
                "since_ns": self.since_ns}


@dataclass(frozen=True)
class SafetyDecision:
    """The supervisor's answer to one status."""

    stamp_ns: int
    action: SafetyAction
    speed_limit_mps: float
    reasons: tuple[Reason, ...]
    """Every active reason, worst action first."""

    def reason(self, code: ReasonCode) -> Reason | None:
        """The active reason with ``code``, if any."""
        return next((r for r in self.reasons if r.code is code), None)


@dataclass(frozen=True)
class SafetyEvent:
    """A change of the supervisor's action or of its set of reasons."""

    stamp_ns: int
    action: SafetyAction
    previous: SafetyAction
    reasons: tuple[Reason, ...]

    def as_record(self) -> dict[str, object]:
        """Plain values for the mission record (JSON, YAML)."""
        return {"stamp_ns": self.stamp_ns, "action": self.action.value,
                "previous": self.previous.value,
                "reasons": [reason.as_record() for reason in self.reasons]}


@dataclass
class _Latches:
    """The supervisor's memory between statuses."""

    estop: bool = False
    estop_sources: list[str] = field(default_factory=list)
    estop_inputs_active: bool = False
    gas_onset_ns: int | None = None
    gas_clear_since_ns: int | None = None
    gas_detail: str = ""
    battery_message: str | None = None
    obstacle_since_ns: int | None = None
    obstacle_message: str | None = None


_Finding = tuple[ReasonCode, SafetyAction, str]


class SafetySupervisor:
    """Time-stepped safety rules over ``RobotStatus``; see the module docstring."""

    def __init__(self, policy: SafetyPolicy, max_speed_mps: float = PIPE_MAX_MPS) -> None:
        if not max_speed_mps > 0.0:
            raise ValueError(f"max_speed_mps must be > 0, got {max_speed_mps}")
        self.policy = policy
        self.max_speed_mps = max_speed_mps
        self._latches = _Latches()
        self._since_ns: dict[ReasonCode, int] = {}
        self._last_stamp_ns: int | None = None
        self._last_key: tuple[object, ...] = (SafetyAction.CONTINUE, ())
        self._last_action = SafetyAction.CONTINUE
        self._events: list[SafetyEvent] = []

    @property
    def events(self) -> tuple[SafetyEvent, ...]:
        """Every transition so far, oldest first."""
        return tuple(self._events)

    @property
    def estop_latched(self) -> bool:
        """Whether an e-stop is latched."""
        return self._latches.estop

    def reset_estop(self) -> bool:
        """Release a latched e-stop; refused (False) while the last status still showed one."""
        if self._latches.estop_inputs_active:
            return False
        self._latches.estop = False
        self._latches.estop_sources = []
        return True

    def update(self, status: RobotStatus) -> SafetyDecision:
        """Evaluate every rule on ``status`` and record a transition if the outcome changed."""
        t = status.stamp_ns
        if self._last_stamp_ns is not None and t < self._last_stamp_ns:
            raise SafetyError(f"status stamp {t} ns is earlier than the previous one "
                              f"({self._last_stamp_ns} ns)")
        self._last_stamp_ns = t
        # Evaluate the rules
        findings = [finding for finding in (self._estop(status), self._gas(status),
                                            self._battery(status), self._obstacle(status),
                                            self._tether(status), self._localization(status),
                                            self._link(status)) if finding is not None]
        # Track since when each reason holds
        active = {code for code, _, _ in findings}
        self._since_ns = {c: s for c, s in self._since_ns.items() if c in active}
        reasons = tuple(sorted(
            (Reason(code, action, message, self._since_ns.setdefault(code, t))
             for code, action, message in findings),
            key=lambda r: (-r.action.severity, _CODES.index(r.code))))
        # Worst action wins
        action = reasons[0].action if reasons else SafetyAction.CONTINUE
        decision = SafetyDecision(t, action, self._speed_limit(action, reasons), reasons)
        # Record transitions
        key = (action, tuple((r.code, r.action) for r in reasons))
        if key != self._last_key:
            self._events.append(SafetyEvent(t, action, self._last_action, reasons))
            self._last_key = key
            self._last_action = action
        return decision

    def _speed_limit(self, action: SafetyAction, reasons: tuple[Reason, ...]) -> float:
        if action in (SafetyAction.STOP, SafetyAction.ESTOP):
            return 0.0
        limit = self.max_speed_mps
        if any(r.code is ReasonCode.LOCALIZATION for r in reasons):
            limit = min(limit, self.policy.localization.slow_mps)
        return limit

    # --- the rules ---------------------------------------------------------------------------

    def _estop(self, status: RobotStatus) -> _Finding | None:
        latches = self._latches
        sources = [name for name, on in (("MCU", status.estop_mcu),
                                         ("laptop", status.estop_laptop)) if on]
        latches.estop_inputs_active = bool(sources)
        if sources:
            latches.estop = True
            latches.estop_sources += [s for s in sources if s not in latches.estop_sources]
        if not latches.estop:
            return None
        if sources:
            message = f"e-stop from the {' and the '.join(sources)}"
        else:
            message = (f"e-stop latched (from the {' and the '.join(latches.estop_sources)}), "
                       "released: waiting for a reset")
        return ReasonCode.ESTOP, SafetyAction.ESTOP, message

    def _gas(self, status: RobotStatus) -> _Finding | None:
        limits = self.policy.gas
        gas = status.gas
        t = status.stamp_ns
        over = []
        if not gas.o2_pct >= limits.o2_min_pct:
            over.append(f"O2 {gas.o2_pct:.1f} % < {limits.o2_min_pct} %")
        if not gas.ch4_pct_vol < limits.ch4_max_pct_vol:
            over.append(f"CH4 {gas.ch4_pct_vol:.2f} %vol >= {limits.ch4_max_pct_vol} %vol")
        if not gas.h2s_ppm < limits.h2s_max_ppm:
            over.append(f"H2S {gas.h2s_ppm:.1f} ppm >= {limits.h2s_max_ppm} ppm")
        if not gas.co_ppm < limits.co_max_ppm:
            over.append(f"CO {gas.co_ppm:.1f} ppm >= {limits.co_max_ppm} ppm")
        latches = self._latches
        if over:
            if latches.gas_onset_ns is None:
                latches.gas_onset_ns = t
            latches.gas_clear_since_ns = None
            latches.gas_detail = ", ".join(over)
        elif latches.gas_onset_ns is not None:
            if latches.gas_clear_since_ns is None:
                latches.gas_clear_since_ns = t
            if t - latches.gas_clear_since_ns >= _ns(limits.clear_s):
                latches.gas_onset_ns = latches.gas_clear_since_ns = None
        if latches.gas_onset_ns is None:
            return None
        if latches.gas_clear_since_ns is None:
            message = f"gas alarm: {latches.gas_detail}"
        else:
            clear_s = (t - latches.gas_clear_since_ns) / _NS_PER_S
            message = (f"gas alarm ({latches.gas_detail}): readings clear for {clear_s:.1f} s "
                       f"of {limits.clear_s} s")
        alarm_s = (t - latches.gas_onset_ns) / _NS_PER_S
        if t - latches.gas_onset_ns < _ns(limits.stop_s):
            return (ReasonCode.GAS, SafetyAction.STOP,
                    f"{message}; stopped, retreating in {limits.stop_s - alarm_s:.1f} s")
        return ReasonCode.GAS, SafetyAction.RETURN, f"{message}; retreating"

    def _battery(self, status: RobotStatus) -> _Finding | None:
        policy = self.policy.battery
        latches = self._latches
        if latches.battery_message is None:
            pct = status.battery_pct
            left_wh = pct / 100.0 * policy.capacity_wh
            needed_wh = (status.distance_to_entry_m * policy.consumption_wh_per_m
                         * (1.0 + policy.reserve_fraction))
            if not pct > policy.min_pct:
                latches.battery_message = (f"battery {pct:.1f} % at or below its "
                                           f"{policy.min_pct} % floor: returning")
            elif not left_wh >= needed_wh:
                latches.battery_message = (
                    f"battery {left_wh:.1f} Wh left ({pct:.1f} %), the way back needs "
                    f"{needed_wh:.1f} Wh ({status.distance_to_entry_m:.1f} m x "
                    f"{policy.consumption_wh_per_m} Wh/m + {policy.reserve_fraction:.0%} "
                    "reserve): returning")
        if latches.battery_message is None:
            return None
        return ReasonCode.BATTERY, SafetyAction.RETURN, latches.battery_message

    def _obstacle(self, status: RobotStatus) -> _Finding | None:
        policy = self.policy.obstacle
        latches = self._latches
        if latches.obstacle_message is not None:
            return ReasonCode.OBSTACLE, SafetyAction.RETURN, latches.obstacle_message
        range_m = status.obstacle_range_m
        if range_m is None or range_m >= policy.stop_distance_m:
            latches.obstacle_since_ns = None
            return None
        t = status.stamp_ns
        if latches.obstacle_since_ns is None:
            latches.obstacle_since_ns = t
        waited_s = (t - latches.obstacle_since_ns) / _NS_PER_S
        seen = f"obstacle at {range_m:.2f} m (< {policy.stop_distance_m} m)"
        if t - latches.obstacle_since_ns >= _ns(policy.wait_s):
            latches.obstacle_message = (f"{seen} still there after {waited_s:.1f} s "
                                        f"(wait {policy.wait_s} s): returning")
            return ReasonCode.OBSTACLE, SafetyAction.RETURN, latches.obstacle_message
        return (ReasonCode.OBSTACLE, SafetyAction.STOP,
                f"{seen}: waiting {waited_s:.1f} s of {policy.wait_s} s")

    def _tether(self, status: RobotStatus) -> _Finding | None:
        policy = self.policy.tether
        paid_m = status.tether_paid_out_m
        if paid_m is None or paid_m < policy.usable_m:
            return None
        return (ReasonCode.TETHER, SafetyAction.STOP,
                f"tether {paid_m:.1f} m paid out, within {policy.margin_m} m of its "
                f"{policy.max_length_m} m: no further forward")

    def _localization(self, status: RobotStatus) -> _Finding | None:
        policy = self.policy.localization
        sigma_m = status.position_sigma_m
        if not sigma_m <= policy.stop_sigma_m:
            return (ReasonCode.LOCALIZATION, SafetyAction.STOP,
                    f"position sigma {sigma_m:.2f} m > stop level {policy.stop_sigma_m} m")
        if sigma_m > policy.slow_sigma_m:
            return (ReasonCode.LOCALIZATION, SafetyAction.SLOW,
                    f"position sigma {sigma_m:.2f} m > slow level {policy.slow_sigma_m} m: "
                    f"{policy.slow_mps} m/s")
        return None

    def _link(self, status: RobotStatus) -> _Finding | None:
        policy = self.policy.link
        silence_s = status.link_silence_s
        if silence_s <= policy.timeout_s:
            return None
        returning = policy.on_loss is LinkLossBehaviour.RETURN
        return (ReasonCode.LINK_LOST,
                SafetyAction.RETURN if returning else SafetyAction.CONTINUE,
                f"laptop link silent for {silence_s:.1f} s (> {policy.timeout_s} s): "
                f"{'returning' if returning else 'continuing'} per plan")


def supervisor_for_plan(plan: MissionPlan) -> SafetySupervisor:
    """The supervisor of a mission: the plan's safety policy and top speed."""
    return SafetySupervisor(plan.safety, plan.speed.max_mps)


def _ns(seconds: float) -> int:
    return round(seconds * _NS_PER_S)
