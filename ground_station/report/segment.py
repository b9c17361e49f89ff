"""The segment evaluation the report shows: as stored by the mission, or computed from findings.

A completed mission stores the evaluation (``segment`` table of findings.sqlite) in the form of
``crawler_perception.conversions.evaluation_to_dict``. An interrupted one may not have written
it; the report then evaluates the findings recorded so far with
``perception.grading.evaluate_segment`` and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ground_station.report.errors import ReportError
from ground_station.report.folder import Finding
from perception.errors import GradingError
from perception.grading import (
    DefectRecord,
    Level,
    SegmentEvaluation,
    SiteFactors,
    default_standard,
    evaluate_segment,
)
from perception.grading.tables import pick_level

_FIGURES = ("S", "S_max", "F", "S_M", "Y", "Y_max", "G", "Y_M", "K", "E", "T", "RI", "MI")
_ALIASES = {"S_max": ("S_max", "Smax"), "Y_max": ("Y_max", "Ymax")}


@dataclass(frozen=True)
class LevelText:
    """A labelled band (grade I-IV, density type, repair level) with its texts."""

    label: str
    zh: str
    en: str


@dataclass(frozen=True)
class SegmentSummary:
    """The figures and labels of the segment table of the report."""

    computed: bool  # True: computed by the report from the findings table
    standard: str
    figures: Mapping[str, float]  # S, S_max, F, S_M, Y, Y_max, G, Y_M, K, E, T, RI, MI
    structural_grade: LevelText
    structural_density: LevelText | None
    functional_grade: LevelText
    functional_density: LevelText | None
    repair: LevelText
    maintenance: LevelText
    repair_scope: str | None
    not_scored: tuple[str, ...]
    unverified: tuple[str, ...]
    notes: tuple[str, ...]  # how it was obtained, findings left out, assumed site factors

    def __getitem__(self, name: str) -> float:
        return self.figures[name]


def _level_text(level: Level | None) -> LevelText | None:
    return None if level is None else LevelText(level.label, level.text_zh, level.text_en)


def _stored_level(doc: Any) -> LevelText | None:
    if not isinstance(doc, Mapping) or "label" not in doc:
        return None
    return LevelText(str(doc["label"]), str(doc.get("zh", "")), str(doc.get("en", "")))


def from_stored(doc: Mapping[str, Any], path: Path) -> SegmentSummary:
    """The stored evaluation (``evaluation_to_dict`` form); labels missing there are derived."""
    figures: dict[str, float] = {}
    for name in _FIGURES:
        keys = _ALIASES.get(name, (name,))
        value = next((doc[k] for k in keys if k in doc), None)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise ReportError(path, f"segment: {name}: expected a number, got {value!r}")
        figures[name] = float(value)
    seg = default_standard().segment
    structural = doc.get("structural") if isinstance(doc.get("structural"), Mapping) else {}
    functional = doc.get("functional") if isinstance(doc.get("functional"), Mapping) else {}
    assert isinstance(structural, Mapping) and isinstance(functional, Mapping)

    def derived(stored: Any, levels: tuple[Level, ...], value: float) -> LevelText:
        text = _stored_level(stored)
        if text is not None:
            return text
        level = _level_text(pick_level(levels, value))
        assert level is not None
        return level

    def density(stored: Any, value: float, n_defects: Any) -> LevelText | None:
        text = _stored_level(stored)
        if text is not None or (stored is None and n_defects == 0):
            return text
        return _level_text(pick_level(seg.density, value)) if value > 0.0 else None

    unverified = doc.get("unverified") or []
    not_scored = doc.get("not_scored") or []
    return SegmentSummary(
        computed=False,
        standard=str(doc.get("standard") or default_standard().id),
        figures=figures,
        structural_grade=derived(structural.get("grade"), seg.structural_grades, figures["F"]),
        structural_density=density(structural.get("density_type"), figures["S_M"],
                                   structural.get("n")),
        functional_grade=derived(functional.get("grade"), seg.functional_grades, figures["G"]),
        functional_density=density(functional.get("density_type"), figures["Y_M"],
                                   functional.get("n")),
        repair=derived(doc.get("repair"), seg.ri_levels, figures["RI"]),
        maintenance=derived(doc.get("maintenance"), seg.mi_levels, figures["MI"]),
        repair_scope=None if doc.get("repair_scope") is None else str(doc["repair_scope"]),
        not_scored=tuple(str(c) for c in not_scored) if isinstance(not_scored, list) else (),
        unverified=tuple(str(u) for u in unverified) if isinstance(unverified, list) else (),
        notes=(),
    )


def compute(findings: Sequence[Finding], asset: Mapping[str, Any], mission_path: Path
            ) -> tuple[SegmentSummary, SegmentEvaluation]:
    """Evaluate the confirmed, graded findings with ``evaluate_segment``."""
    length = asset.get("length_m")
    dn = asset.get("dn_mm")
    for key, value in (("length_m", length), ("dn_mm", dn)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ReportError(mission_path, f"plan.asset.{key}: needed to evaluate the segment, "
                                            f"got {value!r}")
    assert isinstance(length, int | float) and isinstance(dn, int | float)
    area = str(asset.get("area") or "other")
    soil = str(asset.get("soil") or "general")
    std = default_standard()
    notes = ["computed by the report from the findings table (the mission wrote no segment "
             "evaluation)"]
    if "area" not in asset or "soil" not in asset:
        notes.append(f"site factors assumed: area '{area}', soil '{soil}' (the plan gives none)")
    records: list[DefectRecord] = []
    for f in findings:
        if not f.counted:
            continue
        assert f.grade is not None
        if f.code not in std.defects:
            notes.append(f"{f.id}: code {f.code} is not in {std.id}; left out")
            continue
        start = min(max(f.start_m, 0.0), float(length))
        end = min(max(f.end_m, start), float(length))
        if (start, end) != (f.start_m, f.end_m):
            notes.append(f"{f.id}: {f.start_m:.2f}-{f.end_m:.2f} m clipped to the segment "
                         f"(0-{float(length):.2f} m)")
        records.append(DefectRecord(f.code, f.grade, start, end))
    try:
        ev = evaluate_segment(records, float(length), SiteFactors(float(dn), area, soil))
    except GradingError as err:
        raise ReportError(mission_path.parent / "findings.sqlite",
                          f"cannot evaluate the segment: {err}") from err
    return summary_of(ev, computed=True, notes=tuple(notes)), ev


def summary_of(ev: SegmentEvaluation, computed: bool, notes: tuple[str, ...] = ()
               ) -> SegmentSummary:
    """The report's view of an evaluation."""
    figures = {name: float(getattr(ev, name)) for name in _FIGURES}
    structural_grade = _level_text(ev.structural.grade)
    functional_grade = _level_text(ev.functional.grade)
    repair = _level_text(ev.repair)
    maintenance = _level_text(ev.maintenance)
    assert structural_grade and functional_grade and repair and maintenance
    return SegmentSummary(
        computed=computed,
        standard=ev.standard_id,
        figures=figures,
        structural_grade=structural_grade,
        structural_density=_level_text(ev.structural.density_type),
        functional_grade=functional_grade,
        functional_density=_level_text(ev.functional.density_type),
        repair=repair,
        maintenance=maintenance,
        repair_scope=ev.repair_scope.value,
        not_scored=tuple(r.code for r in ev.not_scored),
        unverified=ev.unverified,
        notes=notes,
    )
