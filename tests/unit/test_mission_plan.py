"""Mission plans: the sample loads, defaults, and every bad input is rejected naming its line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from navigation.mission import (
    OPEN_SPACE_MAX_MPS,
    PIPE_MAX_MPS,
    Direction,
    EndBehaviour,
    LinkLossBehaviour,
    MissionPlan,
    PauseOnFinding,
    PhotographAt,
    PipeAsset,
    PlanError,
    Scan360,
    check_plan_against_site,
    dump_plan,
    load_plan,
    load_plan_site,
)
from navigation.site import dump_site, site_from_truth
from sim_worlds.worldgen.truth import load_truth

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "navigation" / "mission" / "examples" / "sewer_dn1000.yaml"
SAMPLE_TEXT = SAMPLE.read_text(encoding="utf-8")

MINIMAL_PIPE = """\
site_file: world:sewer_dn1000
asset:
  kind: pipe
  segment_id: MH-A/MH-B
  from_manhole: MH-A
  to_manhole: MH-B
  dn_mm: 1000
  material: reinforced concrete
  length_m: 120.0
direction: downstream
route:
  axis: MH-A/MH-B
  from_m: 0.0
  to_m: 120.0
"""

TUNNEL = """\
site_file: world:utility_tunnel
asset: {kind: tunnel, section_id: T-main-branch, gallery: main, from_m: 0.0, to_m: 300.0}
direction: forward
route:
  legs:
  - {axis: main, from_m: 0.0, to_m: 300.0}
  - {axis: branch, from_m: -1.6, to_m: 50.0}
"""


def _write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def load_plan_text(text: str) -> MissionPlan:
    """Validate plan text without the site checks (defaults do not depend on the site)."""
    return MissionPlan.model_validate(yaml.safe_load(text))


def test_sample_plan_loads() -> None:
    """The shipped sewer plan is valid and means what it says."""
    plan = load_plan(SAMPLE)
    assert plan.site_file == "world:sewer_dn1000"
    assert isinstance(plan.asset, PipeAsset)
    assert (plan.asset.from_manhole, plan.asset.to_manhole, plan.asset.dn_mm) == ("MH-A", "MH-B",
                                                                                 1000)
    assert plan.direction is Direction.DOWNSTREAM
    assert plan.route.length_m == 120.0
    assert [type(a) for a in plan.actions] == [PauseOnFinding, PhotographAt, Scan360,
                                               PhotographAt]
    assert plan.speed.max_mps == 0.15
    assert plan.safety.link.on_loss is LinkLossBehaviour.RETURN
    site = load_plan_site(plan)
    assert site.axis("MH-A/MH-B").end_distance_m == pytest.approx(120.6, abs=1e-3)


def test_defaults() -> None:
    """A minimal pipe plan gets the documented defaults."""
    plan = load_plan_text(MINIMAL_PIPE)
    assert (plan.speed.max_mps, plan.speed.approach_mps) == (PIPE_MAX_MPS, 0.05)
    assert plan.actions == ()
    assert plan.detector == "shipped"
    assert (plan.end.at_distance_m, plan.end.max_duration_s, plan.end.then) == (
        None, 7200.0, EndBehaviour.RETURN)
    gas = plan.safety.gas
    assert (gas.o2_min_pct, gas.ch4_max_pct_vol, gas.h2s_max_ppm, gas.co_max_ppm) == (
        19.5, 1.0, 10.0, 24.0)
    assert (gas.stop_s, gas.clear_s) == (5.0, 30.0)
    battery = plan.safety.battery
    assert (battery.capacity_wh, battery.consumption_wh_per_m, battery.reserve_fraction,
            battery.min_pct) == (480.0, 0.1, 0.3, 10.0)
    assert battery.consumption_pct_per_m == pytest.approx(0.1 / 480.0 * 100.0)
    loc = plan.safety.localization
    assert (loc.slow_sigma_m, loc.stop_sigma_m, loc.slow_mps) == (0.5, 1.5, 0.05)
    assert (plan.safety.tether.max_length_m, plan.safety.tether.margin_m) == (200.0, 5.0)
    assert (plan.safety.obstacle.stop_distance_m, plan.safety.obstacle.wait_s) == (0.5, 30.0)
    assert (plan.safety.link.timeout_s, plan.safety.link.on_loss) == (10.0,
                                                                       LinkLossBehaviour.RETURN)


def test_tunnel_and_shelter_default_to_a_faster_top_speed() -> None:
    """0.3 m/s in tunnels and shelters unless the plan says otherwise."""
    tunnel = load_plan_text(TUNNEL)
    assert tunnel.speed.max_mps == OPEN_SPACE_MAX_MPS
    assert load_plan_text(TUNNEL + "speed: {max_mps: 0.2}\n").speed.max_mps == 0.2
    shelter = load_plan_text("site_file: world:civil_defence_shelter\n"
                             "asset: {kind: shelter, name: Shelter 7, level: B1}\n"
                             "direction: forward\n"
                             "route: {waypoints_m: [[1.0, 1.0, 0.0], [20.0, 1.0, 0.0]]}\n")
    assert shelter.speed.max_mps == OPEN_SPACE_MAX_MPS
    assert shelter.route.length_m == 19.0


def test_tunnel_route_over_two_galleries(tmp_path: Path) -> None:
    """Legs main 0-300 m then branch: they meet at the junction, so the plan is valid."""
    plan = load_plan(_write(tmp_path, TUNNEL))
    assert plan.route.length_m == pytest.approx(351.6)


# (replace old -> new in the sample, needle on the line the error must name, message part)
BAD_SAMPLE_EDITS = {
    "malformed YAML": ("  dn_mm: 1000", "  dn_mm: [1000", "material:",
                       "malformed YAML: expected ',' or ']', but got ':' (while parsing a flow "
                       "sequence at line 14)"),
    "unknown key": ("  max_mps: 0.15", "  max_speed: 0.15", "max_speed",
                    "speed.max_speed: unknown field (expected: max_mps, approach_mps)"),
    "unknown top-level key": ("detector: shipped", "detectors: shipped", "detectors:",
                              "detectors: unknown field (expected: plan_version,"),
    "wrong type": ("  dn_mm: 1000", "  dn_mm: big", "dn_mm",
                   "asset.dn_mm: Input should be a valid integer, got 'big'"),
    "number as string": ("  max_mps: 0.15", "  max_mps: '0.15'", "max_mps",
                         "speed.max_mps: Input should be a valid number"),
    "bool as number": ("    wait_s: 30.0", "    wait_s: yes", "wait_s",
                       "safety.obstacle.wait_s: Input should be a valid number, got True"),
    "out of range": ("    ch4_max_pct_vol: 1.0", "    ch4_max_pct_vol: -1.0", "ch4_max_pct_vol",
                     "safety.gas.ch4_max_pct_vol: Input should be greater than 0"),
    "not finite": ("    stop_distance_m: 0.5", "    stop_distance_m: .inf", "stop_distance_m",
                   "safety.obstacle.stop_distance_m: Input should be a finite number"),
    "bad enum": ("    on_loss: return", "    on_loss: panic", "on_loss",
                 "safety.link.on_loss: Input should be 'continue' or 'return'"),
    "unknown asset kind": ("  kind: pipe", "  kind: culvert", "kind: culvert",
                           "asset.kind: expected one of 'pipe', 'tunnel', 'shelter'"),
    "missing asset field": ("  material: reinforced concrete\n", "", "asset:",
                            "asset.material: missing required field"),
    "unknown action": ("- kind: scan_360", "- kind: scan_180", "scan_180",
                       "actions[2].kind: expected one of"),
    "unknown action field": ("  close_up: true", "  close_up: true\n  zoom: 3", "zoom",
                             "actions[0].zoom: unknown field (expected: kind, seconds, close_up)"),
    "action beyond route": ("  distance_m: 50.0", "  distance_m: 150.0", "distance_m: 150.0",
                            "actions[2].distance_m: 150.0 m is beyond the end of the route"),
    "two pauses": ("- kind: photograph_at  # the lateral L1\n  distance_m: 47.0",
                   "- kind: pause_on_finding  # again", "# again",
                   "actions[1]: pause_on_finding is given twice"),
    "two looks closer": ("- kind: photograph_at  # the lateral L1\n  distance_m: 47.0",
                         "- kind: look_closer\n- kind: look_closer  # again", "# again",
                         "actions[2]: look_closer is given twice"),
    "look closer sure of everything": ("- kind: photograph_at  # the lateral L1\n"
                                       "  distance_m: 47.0",
                                       "- kind: look_closer\n  min_confidence: 1.0", "1.0",
                                       "actions[1].min_confidence: Input should be less than 1"),
    "end beyond route": ("  max_duration_s: 5400.0", "  at_distance_m: 121.0", "at_distance_m",
                         "end.at_distance_m: 121.0 m is beyond the end of the route"),
    "approach faster than max": ("  approach_mps: 0.05", "  approach_mps: 0.2", "approach_mps",
                                 "speed.approach_mps: 0.2 m/s is faster than max_mps"),
    "sigma levels swapped": ("    stop_sigma_m: 1.5", "    stop_sigma_m: 0.4", "stop_sigma_m",
                             "must be larger than slow_sigma_m"),
    "direction of another asset": ("direction: downstream", "direction: forward", "direction:",
                                   "direction: a pipe is inspected downstream or upstream"),
    "direction against the route": ("direction: downstream", "direction: upstream", "direction:",
                                    "that is downstream (MH-A at -0.599 m, MH-B at 120.6 m)"),
    "unknown detector": ("detector: shipped", "detector: yolo", "detector:",
                         "detector: unknown detector 'yolo'"),
    "missing model file": ("detector: shipped", "detector: onnx:models/none.onnx", "detector:",
                           "detector: model file not found"),
    "duplicate key": ("  max_mps: 0.15", "  max_mps: 0.15\n  max_mps: 0.5", "max_mps: 0.5",
                      "speed.max_mps: duplicate key"),
    "route outside axis (end)": ("  to_m: 120.0", "  to_m: 130.0", "to_m: 130.0",
                                 "route.to_m: chainage 130.0 m is outside axis 'MH-A/MH-B' "
                                 "(-0.599 m to 120.600 m)"),
    "route outside axis (start)": ("  from_m: 0.0", "  from_m: -5.0", "from_m: -5.0",
                                   "route.from_m: chainage -5.0 m is outside axis"),
    "unknown axis": ("  axis: MH-A/MH-B", "  axis: MH-X", "axis: MH-X",
                     "route.axis: site 'sewer_dn1000' has no axis 'MH-X' (axes: MH-A/MH-B)"),
    "two route forms": ("  from_m: 0.0\n", "  from_m: 0.0\n  waypoints_m: [[0, 0, 0], [1, 0, 0]]\n",
                        "route:", "route: give exactly one of"),
    "incomplete route": ("  from_m: 0.0\n", "", "route:", "route.from_m: missing"),
    "unknown manhole": ("  to_manhole: MH-B", "  to_manhole: MH-C", "to_manhole",
                        "asset.to_manhole: site 'sewer_dn1000' has no manhole 'MH-C'"),
    "asset of another site type": ("  kind: pipe\n  segment_id: MH-A/MH-B\n  from_manhole: MH-A\n"
                                   "  to_manhole: MH-B\n  dn_mm: 1000\n"
                                   "  material: reinforced concrete\n  length_m: 120.0\n"
                                   "  depth_m: 4.0\n  wall_thickness_m: 0.1\n"
                                   "direction: downstream",
                                   "  kind: shelter\n  name: S\ndirection: forward",
                                   "kind: shelter",
                                   "asset.kind: a shelter asset on a pipe site"),
    "tether too short": ("    max_length_m: 200.0", "    max_length_m: 100.0", "route:",
                         "route: drives 120.0 m from the entry, the tether allows 95.0 m"),
    "battery too small": ("    capacity_wh: 480.0", "    capacity_wh: 20.0", "route:",
                          "route: needs 31.2 Wh (240.0 m at 0.1 Wh/m + 30% reserve)"),
    "unknown world": ("site_file: world:sewer_dn1000", "site_file: world:sewer_dn2000",
                      "site_file: world", "site_file: unknown world 'sewer_dn2000' (worlds: "),
    "missing site file": ("site_file: world:sewer_dn1000", "site_file: sites/none.yaml",
                          "site_file: sites/none", "site_file: site file not found: "),
}


@pytest.mark.parametrize("case", list(BAD_SAMPLE_EDITS), ids=list(BAD_SAMPLE_EDITS))
def test_bad_plan_is_rejected_naming_its_line(tmp_path: Path, case: str) -> None:
    """Each kind of bad input: PlanError 'FILE:LINE: FIELD: REASON' with the right line."""
    old, new, needle, part = BAD_SAMPLE_EDITS[case]
    assert old in SAMPLE_TEXT
    text = SAMPLE_TEXT.replace(old, new, 1)
    path = _write(tmp_path, text)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    line = _line_of(text, needle)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert part in message, message
    assert "\n" not in message
    assert caught.value.line == line


@pytest.mark.parametrize(("text", "line", "part"), [
    ("", 1, "empty file"),
    ("- a\n- b\n", 1, "expected a mapping at the top level"),
    ("asset: {kind: pipe\n", 2, "malformed YAML"),
    ("site_file: world:sewer_dn1000\n", 1, "asset: missing required field"),
])
def test_degenerate_files(tmp_path: Path, text: str, line: int, part: str) -> None:
    """Empty, non-mapping and truncated files name a line too."""
    path = _write(tmp_path, text)
    with pytest.raises(PlanError, match=part) as caught:
        load_plan(path)
    assert caught.value.line == line


def test_unreadable_plan(tmp_path: Path) -> None:
    """A missing plan file is a PlanError naming it."""
    with pytest.raises(PlanError, match=r"none\.yaml: cannot read"):
        load_plan(tmp_path / "none.yaml")


def test_site_file_relative_to_the_plan(tmp_path: Path) -> None:
    """A site file path is resolved against the plan's folder, and made absolute."""
    site = site_from_truth(load_truth(REPO / "sim_worlds" / "worlds" / "sewer_dn1000.truth.yaml"))
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "jiefang.yaml").write_text(dump_site(site), encoding="utf-8")
    (tmp_path / "plans").mkdir()
    text = MINIMAL_PIPE.replace("world:sewer_dn1000", "../sites/jiefang.yaml")
    plan = load_plan(_write(tmp_path / "plans", text))
    assert Path(plan.site_file) == (tmp_path / "sites" / "jiefang.yaml").resolve()
    assert load_plan_site(plan) == site


def test_invalid_site_file_is_reported_on_the_site_file_line(tmp_path: Path) -> None:
    """A broken site file: the plan's site_file line, and the site file's own line."""
    (tmp_path / "site.yaml").write_text("site_file_version: 1\nname: [x\n", encoding="utf-8")
    text = "name: broken site\n" + MINIMAL_PIPE.replace("world:sewer_dn1000", "site.yaml")
    with pytest.raises(PlanError, match=r"plan.yaml:2: site_file: invalid site file: .*site.yaml:"):
        load_plan(_write(tmp_path, text))


def test_tunnel_legs_must_join(tmp_path: Path) -> None:
    """The branch starts at main 300 m: a first leg that stops at 200 m leaves a 100 m gap."""
    text = TUNNEL.replace("to_m: 300.0}\n  -", "to_m: 200.0}\n  -")
    with pytest.raises(PlanError) as caught:
        load_plan(_write(tmp_path, text))
    assert caught.value.line == _line_of(text, "axis: branch")
    assert caught.value.field_path == "route.legs[1].from_m"
    assert "starts 100.00 m away from where leg 0 ends" in caught.value.reason


def test_tunnel_direction_must_match_the_gallery_legs(tmp_path: Path) -> None:
    """'reverse' on a route that drives main 0 -> 300 m is rejected at that leg."""
    text = TUNNEL.replace("direction: forward", "direction: reverse")
    with pytest.raises(PlanError, match=r"route\.legs\[0\]\.to_m: drives forward along 'main'"):
        load_plan(_write(tmp_path, text))


def test_tunnel_section_outside_gallery(tmp_path: Path) -> None:
    """The asset's section must lie on its gallery."""
    text = TUNNEL.replace("to_m: 300.0}\ndirection", "to_m: 700.0}\ndirection")
    with pytest.raises(PlanError, match=r"plan.yaml:2: asset.to_m: chainage 700.0 m is outside "
                                        r"axis 'main' \(0.000 m to 600.000 m\)"):
        load_plan(_write(tmp_path, text))


def test_detector_model_path_relative_to_the_plan(tmp_path: Path) -> None:
    """onnx:/ultralytics: model paths are resolved against the plan's folder."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.onnx").write_bytes(b"onnx")
    plan = load_plan(_write(tmp_path, MINIMAL_PIPE + "detector: onnx:models/mine.onnx\n"))
    assert plan.detector == f"onnx:{(tmp_path / 'models' / 'mine.onnx').resolve()}"
    pooled = load_plan(_write(tmp_path, MINIMAL_PIPE +
                              "detector: classical:close_up+onnx:models/mine.onnx\n"))
    assert pooled.detector == f"classical:close_up+{plan.detector}"
    with pytest.raises(PlanError, match=r"detector: model file not found: .*none\.onnx"):
        load_plan(_write(tmp_path, MINIMAL_PIPE + "detector: classical+onnx:models/none.onnx\n"))


def test_dump_plan_round_trip(tmp_path: Path) -> None:
    """The plan as run (dump_plan) reads back to an equal plan."""
    plan = load_plan(SAMPLE)
    assert load_plan(_write(tmp_path, dump_plan(plan), "mission.yaml")) == plan


def test_check_plan_against_another_site() -> None:
    """A valid plan checked against a different site: PlanError naming the field."""
    plan = load_plan(SAMPLE)
    tunnel = site_from_truth(load_truth(REPO / "sim_worlds" / "worlds" /
                                        "utility_tunnel.truth.yaml"))
    with pytest.raises(PlanError, match=r"asset\.kind: a pipe asset on a tunnel site"):
        check_plan_against_site(plan, tunnel)


def test_docs_show_the_sample_plan() -> None:
    """docs/mission_plan.md's first example is the shipped sample, verbatim."""
    docs = (REPO / "docs" / "mission_plan.md").read_text(encoding="utf-8")
    first_yaml = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert first_yaml == SAMPLE_TEXT
