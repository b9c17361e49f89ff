"""The mission executor: drives a plan's route, runs its actions, obeys the safety supervisor.

``MissionExecutor.step`` is pure and time-stepped (no ROS, no simulator): the caller passes
the time, the localized pose (site frame) with its position sigma, what the robot measures
(battery, gas, tether, e-stops, obstacle range, link silence) and the findings the defect
mapper confirmed since the last step; it gets back the body twist to command and the mission
status, plus the events (every state change) and photo requests of this step.

Behaviour:

- Driving: pure pursuit (``navigation.path.pure_pursuit``) along the route polyline at the
  plan's top speed, at ``approach_mps`` for the last metre before a photo or scan point and
  the route's end, and never faster than the supervisor's speed limit.
- ``photograph_at``: stop at the distance, settle, request a ``photo``, dwell ~2 s.
- ``pause_on_finding``: on each new finding stop for the plan's seconds and request a
  close-up photo of it (findings confirmed during a pause share it; later ones get their own).
- ``look_closer``: at each suspect the runner reports (a detection too weak to trust, see
  ``perception.close_up``), once it lies within the action's ``stand_off_m`` ahead, stop for
  the plan's seconds while the runner aims and zooms the camera at it (``looking_at``), and
  request a close-up photo of it near the end.
- ``scan_360``: turn in place a full circle where the asset allows it (tunnels, shelters);
  in a pipe stop and dwell ``scan_dwell_s`` (the crawler cannot turn in a pipe).
- End: at the route's end (or ``end.at_distance_m``, or after ``end.max_duration_s``) the
  robot returns to the entry (``then: return``) or stops there (``then: stop``).
- Safety (``SafetySupervisor``): SLOW caps the speed; STOP holds the robot (a STOP only for
  the tether does not hold a return); RETURN drives back along the route to the entry (in a
  pipe in reverse, elsewhere turning on the spot first) and the mission ends ``aborted`` there
  with the reason; ESTOP commands zero and holds until the supervisor's latch is reset.

Distances: ``route_distance_m`` is the robot's progress along the route (0 at its start);
``distance_done_m`` counts every metre of the mission path driven (out and back);
``distance_left_m`` what remains of it (including the way back when the plan returns).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from navigation.mission.plan import (
    EndBehaviour,
    LookCloser,
    MissionPlan,
    PauseOnFinding,
    PhotographAt,
    PipeAsset,
    Scan360,
)
from navigation.mission.safety import (
    GasReadings,
    ReasonCode,
    RobotStatus,
    SafetyAction,
    SafetyDecision,
    SafetySupervisor,
    supervisor_for_plan,
)
from navigation.path import Polyline, pure_pursuit
from navigation.site import Site

FloatArray = NDArray[np.float64]
_NS = 1_000_000_000


class MissionState(enum.Enum):
    """What the executor is doing."""

    STARTING = "starting"
    DRIVING = "driving"
    PAUSED = "paused"
    """Stopped at a new finding (close-up)."""
    LOOKING = "looking"
    """Stopped at a suspected defect, the camera turned and zoomed at it (look_closer)."""
    PHOTOGRAPHING = "photographing"
    SCANNING = "scanning"
    """A scan_360 action: turning in place, or dwelling in a pipe."""
    RETURNING = "returning"
    STOPPED = "stopped"
    """Held by the safety supervisor (stop or e-stop); resumes when released."""
    COMPLETED = "completed"
    ABORTED = "aborted"

    @property
    def terminal(self) -> bool:
        """Whether the mission is over."""
        return self in (MissionState.COMPLETED, MissionState.ABORTED)


@dataclass(frozen=True)
class ExecutorConfig:
    """Tuning of the executor (the plan gives speeds, distances and durations)."""

    lookahead_m: float = 0.8
    arrive_tolerance_m: float = 0.05
    approach_zone_m: float = 1.0
    """Drive at the plan's approach speed this close to a stop point."""
    settle_s: float = 0.7
    """Stopped this long before a photo is requested (the motors spin down)."""
    photo_dwell_s: float = 2.0
    scan_dwell_s: float = 5.0
    """scan_360 in a pipe: stop and dwell this long (the lidar sweeps, the camera records)."""
    scan_rate_radps: float = 0.4
    scan_timeout_factor: float = 3.0
    """A turn in place that takes this many times its nominal time is given up (slipping)."""
    max_angular_radps: float = 0.6
    reverse_return: bool | None = None
    """Drive back in reverse; None: in pipes only (elsewhere turn on the spot and drive)."""
    speed_smoothing: float = 0.3
    """Weight of the newest pose difference in the measured speed (exponential average)."""


@dataclass(frozen=True)
class RobotReadings:
    """What the robot measures besides its pose (the supervisor's other inputs)."""

    battery_pct: float = 100.0
    gas: GasReadings = field(default_factory=GasReadings)
    tether_paid_out_m: float | None = None
    obstacle_range_m: float | None = None
    estop_mcu: bool = False
    estop_laptop: bool = False
    link_silence_s: float = 0.0


@dataclass(frozen=True)
class FindingNotice:
    """A finding the defect mapper has just confirmed."""

    id: str
    code: str
    distance_m: float
    """Where it starts along the asset's axis (chainage), for the record."""


@dataclass(frozen=True)
class SuspectNotice:
    """A suspected defect to look closer at (``perception.close_up.Suspect``)."""

    id: str
    code: str
    distance_m: float
    """Where it was placed along the asset's axis (chainage)."""


@dataclass(frozen=True)
class MissionEvent:
    """One entry of the mission record: a state change, a photo, a finding, a safety change."""

    stamp_ns: int
    kind: str
    details: dict[str, object] = field(default_factory=dict)

    def as_record(self) -> dict[str, object]:
        """Plain values for mission.yaml: ``{stamp_ns, kind, **details}``."""
        return {"stamp_ns": self.stamp_ns, "kind": self.kind, **self.details}


@dataclass(frozen=True)
class PhotoRequest:
    """Take a still photo now (the runner saves the camera's current frame)."""

    stamp_ns: int
    kind: str
    """``photograph_at``, ``close_up`` or ``scan_360``."""
    route_distance_m: float
    finding_id: str | None = None
    action_distance_m: float | None = None
    """The plan's distance of a photograph_at / scan_360 action (for the file name)."""


@dataclass(frozen=True)
class MissionStatus:
    """Where the mission stands (the progress line, ``/mission/status``, mission.yaml)."""

    stamp_ns: int
    state: MissionState
    route_distance_m: float
    distance_done_m: float
    distance_left_m: float
    eta_s: float
    speed_mps: float
    elapsed_s: float
    safety_action: SafetyAction
    reasons: tuple[str, ...]
    """Active safety reasons, worst first, as ``code: message``."""
    last_event: MissionEvent | None
    end_reason: str | None = None

    def as_record(self) -> dict[str, object]:
        """Plain values (JSON)."""
        return {
            "stamp_ns": self.stamp_ns, "state": self.state.value,
            "route_distance_m": round(self.route_distance_m, 3),
            "distance_done_m": round(self.distance_done_m, 3),
            "distance_left_m": round(self.distance_left_m, 3),
            "eta_s": round(self.eta_s, 1), "speed_mps": round(self.speed_mps, 3),
            "elapsed_s": round(self.elapsed_s, 2), "safety": self.safety_action.value,
            "reasons": list(self.reasons),
            "last_event": None if self.last_event is None else self.last_event.as_record(),
            "end_reason": self.end_reason,
        }


@dataclass(frozen=True)
class ExecutorOutput:
    """The answer to one step."""

    linear_mps: float
    angular_radps: float
    status: MissionStatus
    events: tuple[MissionEvent, ...] = ()
    """Events of this step, oldest first."""
    photos: tuple[PhotoRequest, ...] = ()
    decision: SafetyDecision | None = None

    @property
    def done(self) -> bool:
        """Whether the mission is over (completed or aborted)."""
        return self.status.state.terminal


def route_polyline(plan: MissionPlan, site: Site) -> Polyline:
    """The plan's route in the site frame: its legs along the site axes, or its waypoints."""
    if plan.route.waypoints_m is not None:
        return Polyline(np.asarray(plan.route.waypoints_m, dtype=np.float64))
    axes = {axis.name: axis for axis in site.axes}
    points: list[FloatArray] = []
    for leg in plan.route.path_legs():
        axis = axes[leg.axis]
        vertices = np.asarray(axis.waypoints_m, dtype=np.float64)
        chainages = axis.start_distance_m + np.concatenate(
            [[0.0], np.cumsum(np.linalg.norm(np.diff(vertices, axis=0), axis=1))])
        low, high = sorted((leg.from_m, leg.to_m))
        inner = [float(c) for c in chainages if low < c < high]
        stations = [leg.from_m, *(inner if leg.to_m > leg.from_m else inner[::-1]), leg.to_m]
        points.extend(np.asarray(axis.point_at(s), dtype=np.float64) for s in stations)
    kept = [points[0]]
    for point in points[1:]:
        if float(np.linalg.norm(point - kept[-1])) > 1e-6:
            kept.append(point)
    return Polyline(np.array(kept))


@dataclass
class _Follower:
    """Pure pursuit along a polyline, remembering progress; optionally in reverse gear."""

    path: Polyline
    lookahead_m: float
    reverse: bool
    max_angular_radps: float
    progress_m: float = 0.0

    def update(self, x_m: float, y_m: float) -> float:
        z_m = float(self.path.point_at(self.progress_m)[2])
        here = self.path.project((x_m, y_m, z_m), self.progress_m)
        self.progress_m = max(self.progress_m, here.distance_m)
        return self.progress_m

    def command(self, x_m: float, y_m: float, yaw_rad: float, speed_mps: float
                ) -> tuple[float, float]:
        if speed_mps <= 0.0:
            return 0.0, 0.0
        heading = yaw_rad + math.pi if self.reverse else yaw_rad
        linear, angular = pure_pursuit(self.path, x_m, y_m, heading, self.lookahead_m,
                                       speed_mps, self.max_angular_radps, self.progress_m)
        return (-linear if self.reverse else linear), angular


@dataclass
class _Stop:
    """A timed stop: photo, scan or pause."""

    state: MissionState
    started_ns: int
    dwell_s: float
    kind: str
    action_distance_m: float | None = None
    findings: list[FindingNotice] = field(default_factory=list)
    suspect: SuspectNotice | None = None
    photographed: bool = False
    turn_rad: float = 0.0
    turning: bool = False


class MissionExecutor:
    """Runs one mission plan step by step; see the module docstring."""

    def __init__(self, plan: MissionPlan, route: Polyline,
                 config: ExecutorConfig | None = None,
                 supervisor: SafetySupervisor | None = None) -> None:
        self.plan = plan
        self.route = route
        self.config = cfg = config or ExecutorConfig()
        self.supervisor = supervisor or supervisor_for_plan(plan)
        pipe = isinstance(plan.asset, PipeAsset)
        self.in_pipe = pipe
        self.reverse_return = pipe if cfg.reverse_return is None else cfg.reverse_return
        self.end_m = min(plan.driven_one_way_m, route.length_m)
        self._forward = _Follower(route, cfg.lookahead_m, False, cfg.max_angular_radps)
        self._back: _Follower | None = None
        self._return_from_m = 0.0
        self._returns = plan.end.then is EndBehaviour.RETURN
        self._actions: list[PhotographAt | Scan360] = sorted(
            (a for a in plan.actions if isinstance(a, PhotographAt | Scan360)),
            key=lambda a: a.distance_m)
        self._pause = next((a for a in plan.actions if isinstance(a, PauseOnFinding)), None)
        self._queued: list[FindingNotice] = []
        self._look = next((a for a in plan.actions if isinstance(a, LookCloser)), None)
        self._suspects: list[SuspectNotice] = []
        self._stop: _Stop | None = None
        self.state = MissionState.STARTING
        self._held_state: MissionState | None = None
        self._start_ns: int | None = None
        self._last_ns: int | None = None
        self._last_xy: tuple[float, float] | None = None
        self._last_yaw: float | None = None
        self._speed_mps = 0.0
        self._route_m = 0.0
        self._done_m = 0.0
        self._end_reason: str | None = None
        self._safety_return = False
        self._safety_events_seen = 0
        self.events: list[MissionEvent] = []
        """Every event so far, oldest first."""
        self._step_events: list[MissionEvent] = []
        self._step_photos: list[PhotoRequest] = []

    # --- the step ----------------------------------------------------------------------------

    def step(self, stamp_ns: int, T_site_base: FloatArray, position_sigma_m: float,
             readings: RobotReadings | None = None,
             new_findings: Sequence[FindingNotice] = (),
             suspects: Sequence[SuspectNotice] = ()) -> ExecutorOutput:
        """One control step: the twist to command now and the mission status."""
        readings = readings or RobotReadings()
        self._step_events, self._step_photos = [], []
        T = np.asarray(T_site_base, dtype=np.float64)
        x, y = float(T[0, 3]), float(T[1, 3])
        yaw = math.atan2(T[1, 0], T[0, 0])
        self._measure(stamp_ns, x, y, yaw)
        if self._start_ns is None:
            self._start_ns = stamp_ns
            self._event(stamp_ns, "started", route_m=round(self.route.length_m, 3),
                        end_m=round(self.end_m, 3), returns=self._returns)
        # Progress along the route (or back along it)
        if self._back is None:
            self._route_m = self._forward.update(x, y)
        else:
            back_m = self._back.update(x, y)
            self._route_m = max(self._return_from_m - back_m, 0.0)
        if self._pause is not None and not self.state.terminal:
            self._queued.extend(f for f in new_findings if f.id not in
                                {q.id for q in self._queued})
        for finding in new_findings:
            self._event(stamp_ns, "finding", id=finding.id, code=finding.code,
                        distance_m=round(finding.distance_m, 3))
        if self._look is not None and self._back is None and not self.state.terminal:
            self._suspects.extend(suspects)
        # Safety
        decision = self.supervisor.update(RobotStatus(
            stamp_ns, self._route_m, self._route_m, self._speed_mps, readings.battery_pct,
            readings.gas, position_sigma_m, readings.tether_paid_out_m,
            readings.obstacle_range_m, readings.estop_mcu, readings.estop_laptop,
            readings.link_silence_s))
        events = self.supervisor.events
        for event in events[self._safety_events_seen:]:
            record = event.as_record()
            record.pop("stamp_ns", None)
            self._event(event.stamp_ns, "safety", **record)
        self._safety_events_seen = len(events)
        linear, angular = self._decide(stamp_ns, x, y, yaw, decision)
        return ExecutorOutput(linear, angular, self._status(stamp_ns, decision),
                              tuple(self._step_events), tuple(self._step_photos), decision)

    # --- decisions ---------------------------------------------------------------------------

    def _decide(self, stamp_ns: int, x: float, y: float, yaw: float,
                decision: SafetyDecision) -> tuple[float, float]:
        if self.state.terminal:
            return 0.0, 0.0
        action = decision.action
        elapsed_s = self._elapsed_s(stamp_ns)
        # A safety return starts now, whatever the robot was doing
        if action is SafetyAction.RETURN and self._back is None:
            reasons = "; ".join(f"{r.code.value}: {r.message}" for r in decision.reasons
                                if r.action is SafetyAction.RETURN)
            self._safety_return = True
            self._end_reason = f"safety return: {reasons}"
            self._begin_return(stamp_ns, self._end_reason)
        # Held by the supervisor
        if self._held(decision):
            if self.state is not MissionState.STOPPED:
                self._held_state = self.state
                why = "; ".join(f"{r.code.value}: {r.message}" for r in decision.reasons)
                self._set_state(stamp_ns, MissionState.STOPPED, f"{action.value}: {why}")
            if (action is SafetyAction.ESTOP and self._back is None
                    and elapsed_s >= self.plan.end.max_duration_s):
                self._finish(stamp_ns, MissionState.ABORTED,
                             f"e-stop latched at the end of the mission's "
                             f"{self.plan.end.max_duration_s} s")
            return 0.0, 0.0
        if self.state is MissionState.STOPPED:
            resumed = self._held_state or MissionState.DRIVING
            if self._back is not None:
                resumed = MissionState.RETURNING
            self._held_state = None
            self._set_state(stamp_ns, resumed, "safety released")
            if self._stop is not None:  # restart the interrupted stop's clock
                self._stop.started_ns = stamp_ns
        if self.state is MissionState.STARTING:
            self._set_state(stamp_ns, MissionState.DRIVING, "mission started")
        limit = min(decision.speed_limit_mps, self.plan.speed.max_mps)
        if self._back is not None:
            return self._returning(stamp_ns, x, y, yaw, limit)
        # Outbound: the end conditions first
        if elapsed_s >= self.plan.end.max_duration_s:
            self._end_outbound(stamp_ns, f"max duration {self.plan.end.max_duration_s} s "
                               "reached")
            return self._returning(stamp_ns, x, y, yaw, limit) if self._back else (0.0, 0.0)
        if self._stop is not None:
            return self._stopped(stamp_ns, yaw)
        if self._route_m >= self.end_m - self.config.arrive_tolerance_m and not self._actions_due():
            at = self.plan.end.at_distance_m
            self._end_outbound(stamp_ns, "end of the route reached" if at is None else
                               f"end distance {at} m reached")
            return self._returning(stamp_ns, x, y, yaw, limit) if self._back else (0.0, 0.0)
        # Actions and pauses
        if self._queued:
            self._begin_stop(stamp_ns, _Stop(MissionState.PAUSED, stamp_ns, self._pause_s(),
                                             "close_up", findings=self._queued))
            self._queued = []
            return 0.0, 0.0
        suspect = self._due_suspect()
        if suspect is not None and self._look is not None:
            self._begin_stop(stamp_ns, _Stop(MissionState.LOOKING, stamp_ns, self._look.seconds,
                                             "look_closer", suspect=suspect))
            return 0.0, 0.0
        if self._actions_due():
            action_ = self._actions.pop(0)
            if isinstance(action_, PhotographAt):
                stop = _Stop(MissionState.PHOTOGRAPHING, stamp_ns, self.config.photo_dwell_s,
                             "photograph_at", action_.distance_m)
            else:
                stop = _Stop(MissionState.SCANNING, stamp_ns, self.config.scan_dwell_s,
                             "scan_360", action_.distance_m, turning=not self.in_pipe)
            self._begin_stop(stamp_ns, stop)
            return 0.0, 0.0
        # Drive on
        speed = limit
        next_stop_m = min([self.end_m, *(a.distance_m for a in self._actions)])
        if next_stop_m - self._route_m < self.config.approach_zone_m:
            speed = min(speed, self.plan.speed.approach_mps)
        return self._forward.command(x, y, yaw, speed)

    def _due_suspect(self) -> SuspectNotice | None:
        """The first queued suspect within the look's stand-off ahead (or already passed)."""
        if self._look is None:
            return None
        for i, suspect in enumerate(self._suspects):
            if self._route_m >= suspect.distance_m - self._look.stand_off_m:
                return self._suspects.pop(i)
        return None

    def _held(self, decision: SafetyDecision) -> bool:
        if decision.action is SafetyAction.ESTOP:
            return True
        if decision.action is not SafetyAction.STOP:
            return False
        if self._back is None:
            return True
        # Returning: only a stop for something else than the tether holds the way back
        return any(r.action is SafetyAction.STOP and r.code is not ReasonCode.TETHER
                   for r in decision.reasons)

    def _actions_due(self) -> bool:
        return bool(self._actions) and (
            self._route_m >= self._actions[0].distance_m - self.config.arrive_tolerance_m)

    def _pause_s(self) -> float:
        return self._pause.seconds if self._pause is not None else 0.0

    @property
    def looking_at(self) -> SuspectNotice | None:
        """The suspect the robot has stopped to look closer at, if it has."""
        stop = self._stop
        return stop.suspect if stop is not None and self.state is MissionState.LOOKING else None

    def _begin_stop(self, stamp_ns: int, stop: _Stop) -> None:
        self._stop = stop
        if stop.suspect is not None:
            s = stop.suspect
            what = f"look closer at suspect {s.id} ({s.code} at {s.distance_m:.1f} m)"
        elif stop.action_distance_m is not None:
            what = f"{stop.kind} at {stop.action_distance_m} m"
        else:
            what = f"new finding {', '.join(f.id for f in stop.findings)}"
        self._set_state(stamp_ns, stop.state, what)

    def _stopped(self, stamp_ns: int, yaw: float) -> tuple[float, float]:
        stop = self._stop
        assert stop is not None
        cfg = self.config
        if stop.turning:
            if self._last_yaw is not None:
                stop.turn_rad += abs(math.remainder(yaw - self._last_yaw, math.tau))
            nominal_s = math.tau / cfg.scan_rate_radps
            waited_s = (stamp_ns - stop.started_ns) / _NS
            if stop.turn_rad < math.tau and waited_s < cfg.scan_timeout_factor * nominal_s:
                self._last_yaw = yaw
                return 0.0, cfg.scan_rate_radps
            if stop.turn_rad < math.tau:
                self._event(stamp_ns, "scan_incomplete", turned_deg=round(
                    math.degrees(stop.turn_rad), 1))
            stop.turning = False
            stop.started_ns = stamp_ns  # then settle and dwell as in a pipe
            stop.dwell_s = cfg.settle_s + 0.5
        self._last_yaw = yaw
        waited_s = (stamp_ns - stop.started_ns) / _NS
        # A look closer photographs its last view (the camera has aimed and zoomed by then)
        photo_s = (max(stop.dwell_s - cfg.settle_s, 0.5 * stop.dwell_s) if stop.suspect
                   else min(cfg.settle_s, 0.5 * stop.dwell_s))
        if not stop.photographed and waited_s >= photo_s:
            stop.photographed = True
            self._photos_of(stamp_ns, stop)
        if waited_s >= stop.dwell_s:
            self._stop = None
            self._set_state(stamp_ns, MissionState.DRIVING, f"{stop.kind} done")
        return 0.0, 0.0

    def _photos_of(self, stamp_ns: int, stop: _Stop) -> None:
        if stop.kind == "close_up":
            if self._pause is not None and not self._pause.close_up:
                return
            for finding in stop.findings:
                self._photo(PhotoRequest(stamp_ns, "close_up", self._route_m, finding.id))
        elif stop.suspect is not None:
            self._photo(PhotoRequest(stamp_ns, "close_up", self._route_m, stop.suspect.id))
        else:
            self._photo(PhotoRequest(stamp_ns, stop.kind, self._route_m,
                                     action_distance_m=stop.action_distance_m))

    def _photo(self, request: PhotoRequest) -> None:
        self._step_photos.append(request)
        self._event(request.stamp_ns, "photo", photo_kind=request.kind,
                    route_distance_m=round(request.route_distance_m, 3),
                    finding_id=request.finding_id, action_distance_m=request.action_distance_m)

    def _end_outbound(self, stamp_ns: int, why: str) -> None:
        self._stop = None
        self._event(stamp_ns, "end", reason=why, route_distance_m=round(self._route_m, 3))
        if self._returns:
            self._end_reason = why
            self._begin_return(stamp_ns, f"{why}: returning to the entry")
        else:
            self._finish(stamp_ns, MissionState.COMPLETED, f"{why}: stopped there")

    def _begin_return(self, stamp_ns: int, why: str) -> None:
        self._stop = None
        self._queued = []
        self._suspects = []
        self._return_from_m = self._route_m
        cfg = self.config
        if self._route_m <= cfg.arrive_tolerance_m:
            back_points = None
        else:
            start = self._route_m
            # The way back: the route from here to its start, reversed
            stations = [start, *[float(c) for c in self._vertex_distances() if c < start][::-1]]
            stations.append(0.0)
            points = [self.route.point_at(s) for s in stations]
            kept = [points[0]]
            for point in points[1:]:
                if float(np.linalg.norm(point - kept[-1])) > 1e-6:
                    kept.append(point)
            back_points = np.array(kept) if len(kept) >= 2 else None
        if back_points is None:
            self._back = _Follower(Polyline(np.array([[0.0, 0.0, 0.0], [1e-3, 0.0, 0.0]])),
                                   cfg.lookahead_m,
                                   self.reverse_return, cfg.max_angular_radps, 1e-3)
        else:
            self._back = _Follower(Polyline(back_points), cfg.lookahead_m, self.reverse_return,
                                   cfg.max_angular_radps)
        self._set_state(stamp_ns, MissionState.RETURNING, why)

    def _vertex_distances(self) -> list[float]:
        seg = np.linalg.norm(np.diff(self.route.points_m, axis=0), axis=1)
        return [float(v) for v in np.cumsum(seg)[:-1]]

    def _returning(self, stamp_ns: int, x: float, y: float, yaw: float, limit: float
                   ) -> tuple[float, float]:
        back = self._back
        assert back is not None
        if self.state is not MissionState.RETURNING:
            self._set_state(stamp_ns, MissionState.RETURNING, "returning")
        left_m = back.path.length_m - back.progress_m
        if left_m <= self.config.arrive_tolerance_m:
            if self._safety_return:
                self._finish(stamp_ns, MissionState.ABORTED,
                             f"{self._end_reason}; back at the entry")
            else:
                self._finish(stamp_ns, MissionState.COMPLETED,
                             f"{self._end_reason or 'mission done'}; back at the entry")
            return 0.0, 0.0
        speed = limit
        if left_m < self.config.approach_zone_m:
            speed = min(speed, self.plan.speed.approach_mps)
        return back.command(x, y, yaw, speed)

    def _finish(self, stamp_ns: int, state: MissionState, why: str) -> None:
        self._end_reason = why
        self._stop = None
        self._set_state(stamp_ns, state, why)

    # --- bookkeeping -------------------------------------------------------------------------

    def _measure(self, stamp_ns: int, x: float, y: float, yaw: float) -> None:
        if self._last_ns is not None and self._last_xy is not None and stamp_ns > self._last_ns:
            moved = math.hypot(x - self._last_xy[0], y - self._last_xy[1])
            speed = moved / ((stamp_ns - self._last_ns) / _NS)
            w = self.config.speed_smoothing
            self._speed_mps = (1.0 - w) * self._speed_mps + w * speed
        self._last_ns = stamp_ns
        self._last_xy = (x, y)
        if self._stop is None or not self._stop.turning:
            self._last_yaw = yaw

    def _elapsed_s(self, stamp_ns: int) -> float:
        return 0.0 if self._start_ns is None else (stamp_ns - self._start_ns) / _NS

    def _set_state(self, stamp_ns: int, state: MissionState, why: str) -> None:
        if state is self.state:
            return
        previous, self.state = self.state, state
        self._event(stamp_ns, "state", state=state.value, previous=previous.value, reason=why)

    def _event(self, stamp_ns: int, kind: str, **details: object) -> None:
        event = MissionEvent(stamp_ns, kind, dict(details))
        self.events.append(event)
        self._step_events.append(event)

    def _status(self, stamp_ns: int, decision: SafetyDecision) -> MissionStatus:
        out_m = self._return_from_m if self._back is not None else self._route_m
        back_m = self._back.progress_m if self._back is not None else 0.0
        done = out_m + back_m
        if self._back is not None:
            left = max(self._back.path.length_m - back_m, 0.0)
        else:
            left = max(self.end_m - self._route_m, 0.0) + (self.end_m if self._returns else 0.0)
        if self.state.terminal:
            left = 0.0
        self._done_m = done
        speed = self.plan.speed.max_mps
        dwell_s = 0.0
        if self._back is None and not self.state.terminal:
            dwell_s += sum(self.config.photo_dwell_s if isinstance(a, PhotographAt)
                           else self.config.scan_dwell_s for a in self._actions)
            if self._stop is not None:
                dwell_s += max(self._stop.dwell_s - (stamp_ns - self._stop.started_ns) / _NS,
                               0.0)
        eta = left / speed + dwell_s
        return MissionStatus(
            stamp_ns, self.state, self._route_m, done, left, eta, self._speed_mps,
            self._elapsed_s(stamp_ns), decision.action,
            tuple(f"{r.code.value}: {r.message}" for r in decision.reasons),
            self.events[-1] if self.events else None, self._end_reason)
