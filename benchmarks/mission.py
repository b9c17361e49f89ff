"""``crawler bench mission``: whole autonomous missions in the simulator, scored.

Each sample plan (``navigation/mission/examples``) runs end to end through
``crawler.mission_run.run_simulated_mission`` (simulator, MCU model, our fused localization,
the plan's detector and the defect mapper, the safety supervisor and the executor, the mission
folder written as it goes), in one process on this machine's cores. Per mission:

- ``completed``: the mission ended ``completed`` (not aborted by safety, a limit or an error);
  ``state`` and ``reason`` say how it ended;
- ``finding_recall`` / ``false_findings_per_100m``: the graded findings against the world's
  ground truth, matched as ``benchmarks.perception.score_findings`` does (same class, start
  within 0.3 m), over the defects the robot drove past: the pipe's CJJ 181 defects; in a
  tunnel, the gallery's surface features (crack -> PL, seepage -> SL, standing water -> JS,
  ``crawler.mission_run.tunnel_truth``); None where the mission makes no findings (a
  shelter);
- ``distance_error_m``: |estimated - true| chainage (horizontal) where the outbound drive
  ended (at the end manhole for the sewer); ``position_error_m`` the 3D position error there;
- ``wall_time_s``, ``sim_time_s``: the mission's wall-clock and simulated durations;
  ``cpu_time_s`` the CPU time the process used (on a machine shared with other work the wall
  time exceeds it).

``quick`` cuts each mission to its first 20 m (then back), for a smoke run.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.perception import score_findings
from crawler.mission_run import RunProgress, run_simulated_mission
from navigation.mission import LookCloser, MissionPlan, PauseOnFinding, load_plan

EXAMPLES = Path(__file__).resolve().parents[1] / "navigation" / "mission" / "examples"
MISSIONS = {"sewer_dn1000": EXAMPLES / "sewer_dn1000.yaml",
            "utility_tunnel": EXAMPLES / "utility_tunnel.yaml"}
QUICK_DISTANCE_M = 20.0


def quick_plan(plan: MissionPlan, distance_m: float = QUICK_DISTANCE_M) -> MissionPlan:
    """The plan cut to its first ``distance_m`` (actions beyond dropped)."""
    actions = tuple(a for a in plan.actions
                    if isinstance(a, PauseOnFinding | LookCloser) or a.distance_m < distance_m)
    end = plan.end.model_copy(update={"at_distance_m": min(distance_m, plan.route.length_m)})
    return plan.model_copy(update={"actions": actions, "end": end})


def run_mission(name: str, plan_path: Path, quick: bool, say: Callable[[str], None],
                out_dir: Path | None = None) -> dict[str, Any]:
    """One mission, scored."""
    plan = load_plan(plan_path)
    if quick:
        plan = quick_plan(plan)

    def progress(report: RunProgress) -> None:
        if int(report.wall_s) % 15 == 0:
            say(f"{name}: {report.line()}")

    with tempfile.TemporaryDirectory(prefix=f"bench_mission_{name}_") as tmp:
        folder = out_dir or Path(tmp) / "mission"
        try:
            result = run_simulated_mission(plan_path, folder, plan=plan, progress=progress)
        except Exception as err:  # noqa: BLE001 - reported, never faked
            return {"completed": False, "state": "error",
                    "reason": f"{type(err).__name__}: {err}", "finding_recall": None,
                    "false_findings_per_100m": None, "distance_error_m": None,
                    "wall_time_s": None, "sim_time_s": None}
    entry: dict[str, Any] = {
        "completed": result.state == "completed", "state": result.state,
        "reason": result.reason,
        "finding_recall": None, "false_findings_per_100m": None,
        "distance_error_m": (None if result.distance_error_m is None
                             else round(result.distance_error_m, 3)),
        "position_error_m": (None if result.position_error_m is None
                             else round(result.position_error_m, 3)),
        "wall_time_s": round(result.wall_time_s, 1), "sim_time_s": round(result.sim_time_s, 1),
        "cpu_time_s": round(result.cpu_time_s, 1),
        "outbound_m": round(result.outbound_m, 1),
        "distance_done_m": round(result.distance_done_m, 1),
        "findings": result.findings, "timing_s": result.timing_s,
    }
    if result.segment is not None:
        scores = score_findings(result.segment, list(result.truth_defects), result.outbound_m)
        recall = scores["finding_recall"]
        entry.update(
            finding_recall=None if isinstance(recall, float) and math.isnan(recall) else recall,
            false_findings_per_100m=scores["false_findings_per_100m"],
            truth_defects=scores["truth_defects"], missed=scores["missed"],
            false=scores["false"])
    else:
        entry["findings_note"] = "no defect findings: this mission inspects no pipe or gallery"
    return entry


def run(quick: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both sample missions; JSON-ready."""
    say = progress or (lambda line: None)
    missions: dict[str, Any] = {}
    for name, path in MISSIONS.items():
        say(f"{name}: running {path.name}{' (quick: first 20 m)' if quick else ''}")
        missions[name] = run_mission(name, path, quick, say)
        say(f"{name}: {missions[name]}")
    return {"benchmark": "mission", "missions": missions, "cores": os.cpu_count()}
