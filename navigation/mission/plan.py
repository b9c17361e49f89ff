"""The mission plan: what the crew asks the robot to do, validated before it moves.

A plan (YAML, format in ``docs/mission_plan.md``) names a site file, the asset to inspect (a
pipe segment between two manholes, a tunnel section, a shelter), the direction and route,
speed limits, actions along the way, end conditions, the defect detector and the safety
policy the supervisor (``navigation.mission.safety``) enforces. Every section is a frozen
pydantic model with defaults; ``load_plan`` reads a file, checks the plan against its site
(axes, chainage ranges, manholes, tether length) and reports the first problem as one line
``FILE:LINE: FIELD: REASON``.

Distances of actions and end conditions are metres travelled along the route from its start;
route chainages are the site axis's distance values (``docs/site_file.md``).
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from navigation.mission.errors import PlanError
from navigation.site import Axis, LandmarkKind, Site, SiteFileError, load_site, site_from_truth

PLAN_VERSION = 1
WORLD_PREFIX = "world:"
"""``site_file: world:NAME``: the site file derived from simulated world NAME's ground truth."""

PIPE_MAX_MPS = 0.15
"""Default top speed in pipes: the camera needs overlapping frames of the wall (CJJ 181)."""
OPEN_SPACE_MAX_MPS = 0.3
"""Default top speed in tunnels and shelters: flat wide floors, larger field of view."""
APPROACH_MPS = 0.05
"""Default speed for the last metre before a photo point, a scan point or the route's end."""
LEG_JOIN_TOLERANCE_M = 1.0
"""How far apart (site frame) the end of one route leg and the start of the next may be."""
CHAINAGE_TOLERANCE_M = 1e-6

Vec3 = tuple[StrictFloat, StrictFloat, StrictFloat]
Loc = tuple[str | int, ...]


def _field_error(field_path: str, reason: str) -> PydanticCustomError:
    """A validation error on a sub-field of the model being validated (for its line number)."""
    return PydanticCustomError("plan_field", "{reason}", {"field": field_path, "reason": reason})


class _Section(BaseModel):
    # Numbers are never strings and ids may be YAML numbers (manhole 7), as in site files.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False,
                              coerce_numbers_to_str=True)


# --- asset ---------------------------------------------------------------------------------


class PipeAsset(_Section):
    """A pipe segment between two manholes (written upstream -> downstream, as in CJJ 181)."""

    kind: Literal["pipe"]
    segment_id: str = Field(min_length=1)
    from_manhole: str = Field(min_length=1)  # upstream manhole
    to_manhole: str = Field(min_length=1)  # downstream manhole
    dn_mm: StrictInt = Field(ge=100, le=4000)  # nominal (inner) diameter
    material: str = Field(min_length=1)
    length_m: StrictFloat = Field(gt=0.0)  # manhole to manhole, as the GIS gives it
    depth_m: StrictFloat | None = Field(None, ge=0.0)  # invert depth below ground at from_manhole
    wall_thickness_m: StrictFloat | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _two_manholes(self) -> PipeAsset:
        if self.from_manhole == self.to_manhole:
            raise _field_error("to_manhole", f"is the same manhole as from_manhole "
                               f"('{self.to_manhole}')")
        return self


class TunnelAsset(_Section):
    """A section of a utility tunnel gallery between two chainages."""

    kind: Literal["tunnel"]
    section_id: str = Field(min_length=1)
    gallery: str = Field(min_length=1)  # the site axis of the gallery
    from_m: StrictFloat
    to_m: StrictFloat
    # Clear section (walls to walls, floor to ceiling): camera findings are placed on it
    width_m: StrictFloat | None = Field(None, gt=0.0, le=20.0)
    height_m: StrictFloat | None = Field(None, gt=0.0, le=20.0)

    @model_validator(mode="after")
    def _not_empty(self) -> TunnelAsset:
        if self.from_m == self.to_m:
            raise _field_error("to_m", "equals from_m: the section is empty")
        return self


class ShelterAsset(_Section):
    """A civil-defence shelter (or one of its levels)."""

    kind: Literal["shelter"]
    name: str = Field(min_length=1)
    level: str | None = None  # e.g. "B1"; None: every level the route reaches


Asset = Annotated[PipeAsset | TunnelAsset | ShelterAsset, Field(discriminator="kind")]


class Direction(enum.Enum):
    """Travel direction: relative to the flow in pipes, to the chainage elsewhere."""

    DOWNSTREAM = "downstream"
    """Pipes: from ``from_manhole`` towards ``to_manhole``."""
    UPSTREAM = "upstream"
    """Pipes: from ``to_manhole`` towards ``from_manhole``."""
    FORWARD = "forward"
    """Tunnels and shelters: increasing chainage."""
    REVERSE = "reverse"
    """Tunnels and shelters: decreasing chainage."""


_DIRECTIONS = {"pipe": (Direction.DOWNSTREAM, Direction.UPSTREAM),
               "tunnel": (Direction.FORWARD, Direction.REVERSE),
               "shelter": (Direction.FORWARD, Direction.REVERSE)}


# --- route ---------------------------------------------------------------------------------


class RouteLeg(_Section):
    """A stretch along one site axis, from one chainage to another."""

    axis: str = Field(min_length=1)
    from_m: StrictFloat
    to_m: StrictFloat

    @model_validator(mode="after")
    def _moves(self) -> RouteLeg:
        if self.from_m == self.to_m:
            raise _field_error("to_m", "equals from_m: a leg must move")
        return self

    @property
    def length_m(self) -> float:
        """Distance driven along the leg."""
        return abs(self.to_m - self.from_m)


class Route(_Section):
    """Where the robot drives: one axis stretch, legs over the site's axis graph, or waypoints.

    Exactly one form: ``axis`` + ``from_m`` + ``to_m`` (a pipe, one gallery), ``legs`` (a path
    over several galleries or corridors, each leg starting where the previous one ends), or
    ``waypoints_m`` (site points, for rooms that no axis covers).
    """

    axis: str | None = Field(None, min_length=1)
    from_m: StrictFloat | None = None
    to_m: StrictFloat | None = None
    legs: tuple[RouteLeg, ...] | None = None
    waypoints_m: tuple[Vec3, ...] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Route:
        single = (self.axis, self.from_m, self.to_m)
        forms = [name for name, given in (("axis", any(v is not None for v in single)),
                                          ("legs", self.legs is not None),
                                          ("waypoints_m", self.waypoints_m is not None)) if given]
        if len(forms) != 1:
            raise _field_error("", "give exactly one of: axis + from_m + to_m, legs, waypoints_m"
                               + (f" (got {' and '.join(forms)})" if forms else ""))
        if forms == ["axis"]:
            for name, value in zip(("axis", "from_m", "to_m"), single, strict=True):
                if value is None:
                    raise _field_error(name, "missing (a single-axis route needs axis, from_m "
                                       "and to_m)")
            if self.from_m == self.to_m:
                raise _field_error("to_m", "equals from_m: the route must move")
        if self.legs is not None and not self.legs:
            raise _field_error("legs", "needs at least one leg")
        if self.waypoints_m is not None:
            if len(self.waypoints_m) < 2:
                raise _field_error("waypoints_m", "needs at least two waypoints")
            for i in range(1, len(self.waypoints_m)):
                if self.waypoints_m[i] == self.waypoints_m[i - 1]:
                    raise _field_error(f"waypoints_m.{i}", "repeats the previous waypoint")
        return self

    def path_legs(self) -> tuple[RouteLeg, ...]:
        """The route as legs along axes (empty for a waypoint route)."""
        if self.legs is not None:
            return self.legs
        if self.axis is not None and self.from_m is not None and self.to_m is not None:
            return (RouteLeg(axis=self.axis, from_m=self.from_m, to_m=self.to_m),)
        return ()

    @property
    def length_m(self) -> float:
        """Distance driven from the route's start to its end."""
        if self.waypoints_m is not None:
            return sum(math.dist(a, b) for a, b in zip(self.waypoints_m, self.waypoints_m[1:],
                                                       strict=False))
        return sum(leg.length_m for leg in self.path_legs())


# --- speed, actions, end -------------------------------------------------------------------


class SpeedLimits(_Section):
    """Speed limits; ``max_mps`` defaults by asset: 0.15 in pipes, 0.3 in tunnels and shelters."""

    max_mps: StrictFloat = Field(PIPE_MAX_MPS, gt=0.0, le=1.0)  # 1.0: the crawler's track limit
    approach_mps: StrictFloat = Field(APPROACH_MPS, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _approach_not_faster(self) -> SpeedLimits:
        if self.approach_mps > self.max_mps:
            raise _field_error("approach_mps", f"{self.approach_mps} m/s is faster than "
                               f"max_mps ({self.max_mps} m/s)")
        return self


def _checked_spec(spec: str) -> str:
    """A detector spec that names known kinds of detector."""
    from perception.detectors import spec_parts
    from perception.errors import DetectorSpecError

    try:
        spec_parts(spec)
    except DetectorSpecError as err:
        raise _field_error("", str(err)) from err
    return spec


class PhotographAt(_Section):
    """Stop at ``distance_m`` along the route and take a still photo."""

    kind: Literal["photograph_at"]
    distance_m: StrictFloat = Field(ge=0.0)


class PauseOnFinding(_Section):
    """Pause at each new finding for ``seconds`` (zooming and lighting for a close-up)."""

    kind: Literal["pause_on_finding"]
    seconds: StrictFloat = Field(10.0, gt=0.0, le=600.0)
    close_up: StrictBool = True


class LookCloser(_Section):
    """Stop at each suspected defect (a detection too weak to be trusted), turn the camera on
    its pan-tilt head towards it, zoom until ``field_m`` of surface fills the view, and look
    for ``seconds`` (``perception.close_up``). A suspect seen from farther than
    ``stand_off_m`` is driven up to first: from 6 m a crack on a gallery wall is seen at a
    grazing angle, compressed to a sliver even when zoomed."""

    kind: Literal["look_closer"]
    min_confidence: StrictFloat = Field(0.15, gt=0.0, lt=1.0)
    seconds: StrictFloat = Field(6.0, gt=0.0, le=120.0)
    field_m: StrictFloat = Field(1.2, gt=0.0, le=10.0)
    max_range_m: StrictFloat = Field(6.0, gt=0.0, le=30.0)
    stand_off_m: StrictFloat = Field(5.0, gt=0.0, le=30.0)
    detector: str | None = None
    """The detector for zoomed frames (a model trained on close-ups); None: the plan's."""

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, spec: str | None) -> str | None:
        return None if spec is None else _checked_spec(spec)


class Scan360(_Section):
    """Stop at ``distance_m`` along the route and turn the camera/lidar head a full circle."""

    kind: Literal["scan_360"]
    distance_m: StrictFloat = Field(ge=0.0)


Action = Annotated[PhotographAt | PauseOnFinding | LookCloser | Scan360,
                   Field(discriminator="kind")]


class EndBehaviour(enum.Enum):
    """What the robot does when an end condition is met."""

    RETURN = "return"
    """Drive back to the route's start (the entry) and stop there."""
    STOP = "stop"
    """Stop where it is (the crew retrieves it at the far manhole or door)."""


class EndConditions(_Section):
    """When the mission ends (whichever comes first)."""

    at_distance_m: StrictFloat | None = Field(None, gt=0.0)  # along the route; None: its end
    max_duration_s: StrictFloat = Field(7200.0, gt=0.0)
    then: EndBehaviour = EndBehaviour.RETURN


# --- safety policy -------------------------------------------------------------------------


class GasLimits(_Section):
    """Alarm thresholds of the gas head (defaults: GBZ 2.1 / OSHA confined-space practice)."""

    o2_min_pct: StrictFloat = Field(19.5, gt=0.0, le=21.0)  # alarm when O2 < this
    ch4_max_pct_vol: StrictFloat = Field(1.0, gt=0.0, le=5.0)  # alarm when CH4 >= this (LEL 5 %)
    h2s_max_ppm: StrictFloat = Field(10.0, gt=0.0)  # alarm when H2S >= this
    co_max_ppm: StrictFloat = Field(24.0, gt=0.0)  # alarm when CO >= this
    stop_s: StrictFloat = Field(5.0, ge=0.0)  # stop and alert this long, then retreat
    clear_s: StrictFloat = Field(30.0, ge=0.0)  # readings clear this long release the alarm


class BatteryPolicy(_Section):
    """Return to the entry while the energy for the way back (plus a reserve) is left."""

    capacity_wh: StrictFloat = Field(480.0, gt=0.0)  # emulated crawler: 20 Ah x 24 V
    consumption_wh_per_m: StrictFloat = Field(0.1, gt=0.0)  # at 0.15 m/s, idle load included
    reserve_fraction: StrictFloat = Field(0.3, ge=0.0, le=3.0)  # on top of the way back
    min_pct: StrictFloat = Field(10.0, ge=0.0, lt=100.0)  # return at or below, whatever the way

    @property
    def consumption_pct_per_m(self) -> float:
        """The consumption as percent of a full charge per metre."""
        return 100.0 * self.consumption_wh_per_m / self.capacity_wh


class LocalizationPolicy(_Section):
    """Position uncertainty (1 sigma, horizontal) at which the robot slows, then stops."""

    slow_sigma_m: StrictFloat = Field(0.5, gt=0.0)
    stop_sigma_m: StrictFloat = Field(1.5, gt=0.0)
    slow_mps: StrictFloat = Field(0.05, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> LocalizationPolicy:
        if self.stop_sigma_m <= self.slow_sigma_m:
            raise _field_error("stop_sigma_m", f"{self.stop_sigma_m} m must be larger than "
                               f"slow_sigma_m ({self.slow_sigma_m} m)")
        return self


class TetherPolicy(_Section):
    """Cable drum limit; applies when the robot reports a cable counter."""

    max_length_m: StrictFloat = Field(200.0, gt=0.0)
    margin_m: StrictFloat = Field(5.0, ge=0.0)  # stop forward motion this far before the end

    @model_validator(mode="after")
    def _margin_fits(self) -> TetherPolicy:
        if self.margin_m >= self.max_length_m:
            raise _field_error("margin_m", f"{self.margin_m} m leaves no usable tether "
                               f"(max_length_m {self.max_length_m} m)")
        return self

    @property
    def usable_m(self) -> float:
        """Cable that may be paid out before forward motion stops."""
        return self.max_length_m - self.margin_m


class ObstaclePolicy(_Section):
    """An obstacle ahead closer than ``stop_distance_m``: stop, wait, then return."""

    stop_distance_m: StrictFloat = Field(0.5, gt=0.0)
    wait_s: StrictFloat = Field(30.0, ge=0.0)


class LinkLossBehaviour(enum.Enum):
    """What the robot does when the laptop link is lost for longer than the timeout."""

    CONTINUE = "continue"
    RETURN = "return"


class LinkPolicy(_Section):
    """Laptop link supervision."""

    timeout_s: StrictFloat = Field(10.0, gt=0.0)
    on_loss: LinkLossBehaviour = LinkLossBehaviour.RETURN


class SafetyPolicy(_Section):
    """Every threshold of the safety supervisor."""

    gas: GasLimits = GasLimits()
    battery: BatteryPolicy = BatteryPolicy()
    localization: LocalizationPolicy = LocalizationPolicy()
    tether: TetherPolicy = TetherPolicy()
    obstacle: ObstaclePolicy = ObstaclePolicy()
    link: LinkPolicy = LinkPolicy()


# --- the plan ------------------------------------------------------------------------------


class MissionPlan(_Section):
    """A whole mission plan."""

    plan_version: Literal[1] = 1  # PLAN_VERSION
    name: str = ""
    description: str = ""
    site_file: str = Field(min_length=1)  # path (relative to the plan file) or world:NAME
    asset: Asset
    direction: Direction
    route: Route
    speed: SpeedLimits = SpeedLimits()
    actions: tuple[Action, ...] = ()
    end: EndConditions = EndConditions()
    detector: str = "shipped"  # perception detector spec (docs/perception.md)
    safety: SafetyPolicy = SafetyPolicy()

    @model_validator(mode="before")
    @classmethod
    def _speed_default_by_asset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        asset = data.get("asset")
        kind = asset.get("kind") if isinstance(asset, dict) else getattr(asset, "kind", None)
        speed = data.get("speed", {})
        if kind in ("tunnel", "shelter") and isinstance(speed, dict) and "max_mps" not in speed:
            data = {**data, "speed": {**speed, "max_mps": OPEN_SPACE_MAX_MPS}}
        return data

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, spec: str) -> str:
        return _checked_spec(spec)

    @model_validator(mode="after")
    def _consistent(self) -> MissionPlan:
        allowed = _DIRECTIONS[self.asset.kind]
        if self.direction not in allowed:
            raise _field_error("direction", f"a {self.asset.kind} is inspected "
                               f"{' or '.join(d.value for d in allowed)}, "
                               f"got '{self.direction.value}'")
        length_m = self.route.length_m
        once: set[str] = set()
        for i, action in enumerate(self.actions):
            if isinstance(action, PauseOnFinding | LookCloser):
                if action.kind in once:
                    raise _field_error(f"actions.{i}", f"{action.kind} is given twice")
                once.add(action.kind)
            elif action.distance_m > length_m + CHAINAGE_TOLERANCE_M:
                raise _field_error(f"actions.{i}.distance_m", f"{action.distance_m} m is beyond "
                                   f"the end of the route ({length_m:.3f} m long)")
        at = self.end.at_distance_m
        if at is not None and at > length_m + CHAINAGE_TOLERANCE_M:
            raise _field_error("end.at_distance_m", f"{at} m is beyond the end of the route "
                               f"({length_m:.3f} m long)")
        # On a full charge, the route must fit (there and back when it ends with a return).
        battery = self.safety.battery
        travel_m = self.driven_one_way_m * (2 if self.end.then is EndBehaviour.RETURN else 1)
        needed_wh = travel_m * battery.consumption_wh_per_m * (1.0 + battery.reserve_fraction)
        usable_wh = battery.capacity_wh * (1.0 - battery.min_pct / 100.0)
        if needed_wh > usable_wh:
            raise _field_error("route", f"needs {needed_wh:.1f} Wh ({travel_m:.1f} m at "
                               f"{battery.consumption_wh_per_m} Wh/m + "
                               f"{battery.reserve_fraction:.0%} reserve), the battery holds "
                               f"{usable_wh:.1f} Wh above its {battery.min_pct} % floor")
        return self

    @property
    def driven_one_way_m(self) -> float:
        """Distance driven from the start to where the mission ends."""
        at = self.end.at_distance_m
        return self.route.length_m if at is None else min(at, self.route.length_m)


# --- loading -------------------------------------------------------------------------------


def load_plan(path: str | Path) -> MissionPlan:
    """Read, validate and check a plan against its site; PlanError names file, line and field.

    The returned plan has ``site_file`` (unless ``world:NAME``) and detector model paths made
    absolute, so it can be written to a mission folder as the plan as run.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PlanError(path, f"cannot read: {getattr(err, 'strerror', None) or err}") from err
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
        if context and context_mark is not None:
            problem += f" ({context} at line {context_mark.line + 1})"
        raise PlanError(path, f"malformed YAML: {problem}",
                        line=None if mark is None else mark.line + 1) from err
    if root is None:
        raise PlanError(path, "empty file", line=1)
    if not isinstance(document, dict):
        raise PlanError(path, "expected a mapping at the top level", line=1)
    _reject_duplicate_keys(path, root, ())

    def fail(loc: Loc, reason: str) -> PlanError:
        line, field_path = _locate(root, loc)
        return PlanError(path, reason, field_path or None, line)

    try:
        plan = MissionPlan.model_validate(document)
    except ValidationError as err:
        loc, reason = _describe(err.errors()[0])
        raise fail(loc, reason) from err
    base = path.resolve().parent
    site_file = plan.site_file
    if not site_file.startswith(WORLD_PREFIX):
        site_file = str((base / Path(site_file).expanduser()).resolve())
    actions = tuple(
        action.model_copy(update={"detector": _resolve_detector(
            action.detector, base, fail, ("actions", i, "detector"))})
        if isinstance(action, LookCloser) and action.detector is not None else action
        for i, action in enumerate(plan.actions))
    plan = plan.model_copy(update={"site_file": site_file, "actions": actions,
                                   "detector": _resolve_detector(plan.detector, base, fail)})
    try:
        site = load_plan_site(plan)
    except PlanError as err:
        raise fail(("site_file",), err.reason) from err
    problem = _site_problem(plan, site)
    if problem is not None:
        raise fail(*problem)
    return plan


def load_plan_site(plan: MissionPlan) -> Site:
    """The site a plan names: a site file, or ``world:NAME`` for a simulated world."""
    if plan.site_file.startswith(WORLD_PREFIX):
        return _world_site(plan.site_file.removeprefix(WORLD_PREFIX))
    site_path = Path(plan.site_file)
    if not site_path.is_file():
        raise PlanError("<plan>", f"site file not found: {site_path}", "site_file")
    try:
        return load_site(site_path)
    except SiteFileError as err:
        raise PlanError("<plan>", f"invalid site file: {err}", "site_file") from err


def check_plan_against_site(plan: MissionPlan, site: Site) -> None:
    """Raise PlanError (no file, no line) if the plan does not fit ``site``."""
    problem = _site_problem(plan, site)
    if problem is not None:
        loc, reason = problem
        raise PlanError("<plan>", reason, _format_loc(loc))


def dump_plan(plan: MissionPlan) -> str:
    """YAML text of a plan (``load_plan`` reads it back to an equal plan)."""
    document = plan.model_dump(mode="json", exclude_none=True)
    header = "# Mission plan (format: docs/mission_plan.md).\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def _world_site(world: str) -> Site:
    from sim_worlds.worldgen import WORLDS_DIR
    from sim_worlds.worldgen.truth import TruthFormatError, load_truth

    truth_path = WORLDS_DIR / f"{world}.truth.yaml"
    if not truth_path.is_file():
        known = sorted(p.name.removesuffix(".truth.yaml") for p in
                       WORLDS_DIR.glob("*.truth.yaml"))
        raise PlanError("<plan>", f"unknown world '{world}' (worlds: {', '.join(known)})",
                        "site_file")
    try:
        return site_from_truth(load_truth(truth_path))
    except TruthFormatError as err:  # pragma: no cover - shipped worlds are tested
        raise PlanError("<plan>", f"invalid world truth: {err}", "site_file") from err


def _resolve_detector(spec: str, base: Path, fail: Callable[[Loc, str], PlanError],
                      loc: Loc = ("detector",)) -> str:
    """Model paths of ``onnx:``/``ultralytics:`` specs (each part of ``A+B``), relative to
    the plan, must exist."""
    from perception.detectors import UNION_SEPARATOR, spec_parts

    parts = []
    for part in spec_parts(spec):  # checked by the model already
        argument = part.argument
        if part.kind in ("onnx", "ultralytics"):
            model = (base / Path(argument).expanduser()).resolve()
            if not model.is_file():
                raise fail(loc, f"model file not found: {model}")
            argument = str(model)
        parts.append(f"{part.kind}:{argument}" if argument else part.kind)
    return UNION_SEPARATOR.join(parts)


# --- checks against the site ---------------------------------------------------------------


def _site_problem(plan: MissionPlan, site: Site) -> tuple[Loc, str] | None:
    """The first way in which the plan does not fit the site, as (field location, reason)."""
    asset = plan.asset
    if site.site_type.value != asset.kind:
        return ("asset", "kind"), (f"a {asset.kind} asset on a {site.site_type.value} site "
                                   f"('{site.name}')")
    axes = {axis.name: axis for axis in site.axes}
    legs = plan.route.path_legs()
    single = plan.route.legs is None
    for i, leg in enumerate(legs):
        at: Loc = ("route",) if single else ("route", "legs", i)
        axis = axes.get(leg.axis)
        if axis is None:
            return (*at, "axis"), (f"site '{site.name}' has no axis '{leg.axis}' "
                                   f"(axes: {', '.join(axes)})")
        for name, value in (("from_m", leg.from_m), ("to_m", leg.to_m)):
            if not _on_axis(axis, value):
                return (*at, name), _outside(value, axis)
        if i > 0:
            previous = legs[i - 1]
            gap_m = math.dist(axes[previous.axis].point_at(previous.to_m),
                              axis.point_at(leg.from_m))
            if gap_m > LEG_JOIN_TOLERANCE_M:
                return (*at, "from_m"), (f"starts {gap_m:.2f} m away from where leg {i - 1} "
                                         f"ends (tolerance {LEG_JOIN_TOLERANCE_M} m)")
    if isinstance(asset, PipeAsset):
        problem = _pipe_problem(plan, asset, site, legs)
    elif isinstance(asset, TunnelAsset):
        problem = _tunnel_problem(plan, asset, axes, legs)
    else:
        problem = None
    if problem is not None:
        return problem
    tether = plan.safety.tether
    if site.tether is not None and plan.driven_one_way_m > tether.usable_m:
        return ("route",), (f"drives {plan.driven_one_way_m:.1f} m from the entry, the tether "
                            f"allows {tether.usable_m:.1f} m ({tether.max_length_m} m - "
                            f"{tether.margin_m} m margin)")
    return None


def _pipe_problem(plan: MissionPlan, asset: PipeAsset, site: Site,
                  legs: tuple[RouteLeg, ...]) -> tuple[Loc, str] | None:
    chainages: dict[str, tuple[str | None, float | None]] = {}
    for name in ("from_manhole", "to_manhole"):
        landmark_id = getattr(asset, name)
        landmark = next((m for m in site.landmarks if m.id == landmark_id), None)
        if landmark is None or landmark.kind is not LandmarkKind.MANHOLE:
            manholes = [m.id for m in site.landmarks if m.kind is LandmarkKind.MANHOLE]
            return ("asset", name), (f"site '{site.name}' has no manhole '{landmark_id}' "
                                     f"(manholes: {', '.join(manholes) or 'none'})")
        chainages[name] = (landmark.axis, landmark.distance_m)
    if len(legs) > 1:
        return ("route", "legs"), "a pipe route runs along one axis (give axis, from_m, to_m)"
    (a_axis, a_m), (b_axis, b_m) = chainages["from_manhole"], chainages["to_manhole"]
    if legs and a_m is not None and b_m is not None and a_axis == b_axis == legs[0].axis:
        downstream = (legs[0].to_m - legs[0].from_m) * (b_m - a_m) > 0.0
        if downstream != (plan.direction is Direction.DOWNSTREAM):
            return ("direction",), (f"the route drives from {legs[0].from_m} m to "
                                    f"{legs[0].to_m} m, that is "
                                    f"{'downstream' if downstream else 'upstream'} "
                                    f"({asset.from_manhole} at {a_m} m, {asset.to_manhole} at "
                                    f"{b_m} m), not {plan.direction.value}")
    return None


def _tunnel_problem(plan: MissionPlan, asset: TunnelAsset, axes: dict[str, Axis],
                    legs: tuple[RouteLeg, ...]) -> tuple[Loc, str] | None:
    gallery = axes.get(asset.gallery)
    if gallery is None:
        return ("asset", "gallery"), (f"the site has no axis '{asset.gallery}' "
                                      f"(axes: {', '.join(axes)})")
    for name, value in (("from_m", asset.from_m), ("to_m", asset.to_m)):
        if not _on_axis(gallery, value):
            return ("asset", name), _outside(value, gallery)
    forward = plan.direction is Direction.FORWARD
    for i, leg in enumerate(legs):
        if leg.axis == asset.gallery and (leg.to_m > leg.from_m) != forward:
            at: Loc = ("route",) if plan.route.legs is None else ("route", "legs", i)
            drives = "forward" if leg.to_m > leg.from_m else "in reverse"
            return (*at, "to_m"), (f"drives {drives} along "
                                   f"'{leg.axis}' ({leg.from_m} m to {leg.to_m} m), the plan "
                                   f"says {plan.direction.value}")
    return None


def _on_axis(axis: Axis, chainage_m: float) -> bool:
    return (axis.start_distance_m - CHAINAGE_TOLERANCE_M <= chainage_m
            <= axis.end_distance_m + CHAINAGE_TOLERANCE_M)


def _outside(chainage_m: float, axis: Axis) -> str:
    return (f"chainage {chainage_m} m is outside axis '{axis.name}' "
            f"({axis.start_distance_m:.3f} m to {axis.end_distance_m:.3f} m)")


# --- error messages with lines -------------------------------------------------------------


def _describe(error: Any) -> tuple[Loc, str]:
    """Field location and one-line reason of a pydantic error."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "plan_field":
        extra = str(error["ctx"]["field"])
        if extra:
            loc += tuple(int(p) if p.isdigit() else p for p in extra.split("."))
        return loc, message
    if kind == "missing":
        return loc, "missing required field"
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        expected = f" (expected: {', '.join(fields)})" if fields else ""
        return loc, f"unknown field{expected}"
    if kind == "union_tag_not_found":
        return (*loc, "kind"), "missing required field (it selects the type)"
    if kind == "union_tag_invalid":
        return (*loc, "kind"), (f"expected one of {error['ctx']['expected_tags']}, "
                                f"got {_show(error['ctx']['tag'])}")
    return loc, f"{message}, got {_show(error.get('input'))}"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _union_tags() -> frozenset[str]:
    tags: set[str] = set()
    for union in (Asset, Action):
        for member in get_args(get_args(union)[0]):
            tags.update(get_args(member.model_fields["kind"].annotation))
    return frozenset(tags)


_UNION_TAGS = _union_tags()


def _locate(root: yaml.Node, loc: Loc) -> tuple[int, str]:
    """1-based line of the deepest YAML node on ``loc`` that exists, and the field's path.

    Discriminated-union tags that pydantic puts in error locations are skipped.
    """
    node: yaml.Node | None = root
    line = root.start_mark.line + 1
    shown: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in _UNION_TAGS and i < len(loc) - 1:
            continue
        shown.append(part)
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is not None:
                line = match[0].start_mark.line + 1
                node = match[1]
                continue
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(node.value)):
            node = node.value[part]
            line = node.start_mark.line + 1
            continue
        node = None
    return line, _format_loc(tuple(shown))


def _format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part:
            text += f".{part}" if text else part
    return text


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional from a type annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _fields_at(loc: Loc) -> list[str]:
    """Field names of the model at ``loc`` (with union tags) inside MissionPlan, if known."""
    current: Any = MissionPlan
    for part in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if isinstance(part, int):
            if origin is not tuple:
                return []
            current = get_args(current)[0]
        elif origin in (Union, types.UnionType):
            current = next((m for m in get_args(current)
                            if part in get_args(m.model_fields["kind"].annotation)), None)
        elif isinstance(current, type) and issubclass(current, BaseModel) \
                and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _reject_duplicate_keys(path: Path, node: yaml.Node, loc: Loc) -> None:
    """PyYAML keeps the last of two equal keys; a plan with one is ambiguous, so reject it."""
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            if key_node.value in seen:
                field_path = _format_loc((*loc, key_node.value))
                raise PlanError(path, "duplicate key", field_path, key_node.start_mark.line + 1)
            seen.add(key_node.value)
            _reject_duplicate_keys(path, value_node, (*loc, key_node.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(path, item, (*loc, i))
