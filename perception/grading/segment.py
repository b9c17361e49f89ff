"""CJJ 181-2012 segment (管段) evaluation: S, F, S_M, Y, G, Y_M, RI, MI and recommendations.

Formulas (DEFECT_STANDARDS.md section 3.1), per defect kind (structural; functional alike):

    S   = (1/n) * (sum P_i1 + alpha * sum P_i2)                  n = n1 + n2
    Smax = max P_i                F = max(Smax, S)
    S_M = (sum P_i1 * L_i1 + alpha * sum P_i2 * L_i2) / (S * L)   L: segment length
    RI  = 0.7 F + 0.1 K + 0.05 E + 0.15 T                         (weights from the table)
    MI  = 0.8 G + 0.15 K + 0.05 E

n1 counts defects whose clear spacing is above 1.5 m, n2 those at 1.0-1.5 m. The reference does
not say how spacing is measured, what happens below 1.0 m, or how long a short defect counts;
the data file's ``segment.rules`` hold those readings (all [G]) and docs/grading.md explains
them. Every table row and rule an evaluation used that is not verified is listed in
``SegmentEvaluation.unverified``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from perception.codes import DefectKind
from perception.errors import GradingError
from perception.grading.tables import (
    GUESSED,
    CloseSpacing,
    Factor,
    Level,
    Provenance,
    Standard,
    default_standard,
    pick_level,
)

_SPACING_TOLERANCE_M = 1e-6  # positions are floats in metres; 1.6 - 0.1 must still be 1.5


@dataclass(frozen=True)
class DefectRecord:
    """One observed defect: CJJ code, grade and its extent along the segment in metres.

    ``start_m``/``end_m`` are distances from the segment's start node; a point defect has
    ``start_m == end_m``.
    """

    code: str
    grade: int
    start_m: float
    end_m: float


@dataclass(frozen=True)
class SiteFactors:
    """What the segment evaluation needs to know about the pipe's surroundings.

    ``area`` and ``soil`` are keys of the standard's ``k_area`` and ``t_soil`` tables
    (CJJ 181-2012: area commercial_centre / trunk_road / other_road / other; soil general /
    silty_sand / collapsible_loess_iv / ... / red_clay).
    """

    dn_mm: float  # nominal diameter
    area: str = "other"
    soil: str = "general"


@dataclass(frozen=True)
class EvaluationOptions:
    """Readings of unclear clauses; the defaults follow the two code implementations."""

    # A garbled excerpt of the E table reads "DN < 600 mm or F < 4 -> 0". When True, E is 0 in
    # RI whenever F < 4 (MI keeps E from DN alone, since the clause names F).
    e_zero_when_f_below_4: bool = False
    # The same excerpt reads "ordinary soil or F = 0 -> 0" for T. When True, T is 0 when F = 0.
    t_zero_when_f_zero: bool = False
    # Defects of one kind closer than 1.0 m: None uses the standard's rule (CJJ data: merge).
    close_spacing: CloseSpacing | None = None


class SpacingClass(enum.Enum):
    """Which sum of the S formula a counted defect falls in."""

    N1 = "n1"  # clear spacing above n1_above_m (1.5 m), or no neighbour of its kind
    N2 = "n2"  # clear spacing n2_from_m..n1_above_m (1.0-1.5 m), weighted by alpha


class RepairScope(enum.Enum):
    """Local or whole-segment repair, by one implementation's rule (unverified)."""

    NONE = "none"
    LOCAL = "local"
    WHOLE_SEGMENT = "whole_segment"


@dataclass(frozen=True)
class CountedDefect:
    """A defect as it enters the formulas (several records when close ones were merged)."""

    code: str  # of the highest-scoring record
    grade: int
    score: float  # P_i
    start_m: float
    end_m: float
    length_m: float  # L_i as counted: at least the local minimum (1 m), at most the segment
    spacing_m: float | None  # clear gap to the nearest counted defect of its kind; None: none
    spacing_class: SpacingClass
    records: tuple[DefectRecord, ...]


@dataclass(frozen=True)
class KindScore:
    """The figures of one defect kind: S, Smax, F, S_M (structural) or Y, Ymax, G, Y_M."""

    kind: DefectKind
    defects: tuple[CountedDefect, ...]
    n1: int
    n2: int
    sum_p1: float
    sum_p2: float
    sum_pl1: float  # sum P_i1 * L_i1
    sum_pl2: float  # sum P_i2 * L_i2
    mean: float  # S or Y
    max: float  # Smax or Ymax
    index: float  # F or G = max(max, mean)
    density: float  # S_M or Y_M
    grade: Level  # I..IV of the index
    density_type: Level | None  # local / partial / whole; None without defects

    @property
    def n(self) -> int:
        """Number of counted defects, n1 + n2."""
        return self.n1 + self.n2


@dataclass(frozen=True)
class SegmentEvaluation:
    """Every figure of a segment's evaluation, its labels and the unverified rows it used."""

    standard_id: str
    length_m: float
    structural: KindScore
    functional: KindScore
    not_scored: tuple[DefectRecord, ...]  # recorded-only codes (FZ)
    K: float
    E: float  # from DN; used in MI
    T: float  # from the soil
    E_ri: float  # E as used in RI (0 under e_zero_when_f_below_4 when F < 4)
    T_ri: float  # T as used in RI (0 under t_zero_when_f_zero when F = 0)
    RI: float
    MI: float
    repair: Level  # RI band: 不修复 / 宜做修复计划 / 尽快修复 / 立即修复
    maintenance: Level  # MI band: 无需处理 / 宜做养护计划 / 尽快处理 / 立即处理
    repair_scope: RepairScope
    unverified: tuple[str, ...]

    @property
    def S(self) -> float:
        """Mean structural score S."""
        return self.structural.mean

    @property
    def S_max(self) -> float:
        """Highest structural score Smax."""
        return self.structural.max

    @property
    def F(self) -> float:
        """Structural condition index F = max(Smax, S)."""
        return self.structural.index

    @property
    def S_M(self) -> float:
        """Structural defect density S_M."""
        return self.structural.density

    @property
    def Y(self) -> float:
        """Mean functional score Y."""
        return self.functional.mean

    @property
    def Y_max(self) -> float:
        """Highest functional score Ymax."""
        return self.functional.max

    @property
    def G(self) -> float:
        """Functional condition index G = max(Ymax, Y)."""
        return self.functional.index

    @property
    def Y_M(self) -> float:
        """Functional defect density Y_M."""
        return self.functional.density


class _Flags:
    """Ordered, de-duplicated list of the unverified rows and rules used."""

    def __init__(self, standard_id: str) -> None:
        self._standard_id = standard_id
        self._flags: dict[str, None] = {}

    def use(self, provenance: Provenance) -> None:
        if not provenance.verified:
            self._flags[provenance.flag(self._standard_id)] = None

    def add(self, text: str) -> None:
        self._flags[text] = None

    def result(self) -> tuple[str, ...]:
        return tuple(self._flags)


def evaluate_segment(
    defects: Iterable[DefectRecord],
    length_m: float,
    factors: SiteFactors,
    standard: Standard | None = None,
    options: EvaluationOptions | None = None,
) -> SegmentEvaluation:
    """Evaluate one segment (manhole to manhole) of ``length_m`` metres from its defects."""
    std = standard or default_standard()
    opts = options or EvaluationOptions()
    tables = std.segment
    flags = _Flags(std.id)
    if not (math.isfinite(length_m) and length_m > 0.0):
        raise GradingError(f"segment length must be a positive number of metres, got {length_m}")

    # Sort the records by kind
    records = list(defects)
    by_kind: dict[DefectKind, list[DefectRecord]] = {k: [] for k in DefectKind}
    not_scored: list[DefectRecord] = []
    for record in records:
        _check_record(record, length_m)
        entry = std.entry(record.code)
        flags.use(entry.row(record.grade).provenance)
        (by_kind[entry.kind] if entry.scored else not_scored).append(record)

    # Score each kind
    mode = opts.close_spacing or tables.close_spacing
    structural = _score_kind(
        std, DefectKind.STRUCTURAL, by_kind[DefectKind.STRUCTURAL], length_m, mode, flags
    )
    functional = _score_kind(
        std, DefectKind.FUNCTIONAL, by_kind[DefectKind.FUNCTIONAL], length_m, mode, flags
    )
    F, G = structural.index, functional.index

    # Site factors K, E, T
    K = _factor(tables.k_area, factors.area, "area", flags)
    E = _pipe_importance(std, factors.dn_mm, flags)
    T = _factor(tables.t_soil, factors.soil, "soil", flags)
    E_ri, T_ri = E, T
    if opts.e_zero_when_f_below_4:
        flags.add(f"{std.id} option e_zero_when_f_below_4 (garbled excerpt) [{GUESSED}]")
        E_ri = 0.0 if F < 4.0 else E
    if opts.t_zero_when_f_zero:
        flags.add(f"{std.id} option t_zero_when_f_zero (garbled excerpt) [{GUESSED}]")
        T_ri = 0.0 if F == 0.0 else T

    # Repair and maintenance indices
    w = tables.ri_weights
    RI = w["F"] * F + w["K"] * K + w["E"] * E_ri + w["T"] * T_ri
    flags.use(tables.ri_weights_provenance)
    m = tables.mi_weights
    MI = m["G"] * G + m["K"] * K + m["E"] * E
    flags.use(tables.mi_weights_provenance)
    repair = pick_level(tables.ri_levels, RI)
    maintenance = pick_level(tables.mi_levels, MI)
    flags.use(repair.provenance)
    flags.use(maintenance.provenance)
    scope = _repair_scope(std, RI, F, structural.density, flags)

    return SegmentEvaluation(
        standard_id=std.id,
        length_m=length_m,
        structural=structural,
        functional=functional,
        not_scored=tuple(not_scored),
        K=K,
        E=E,
        T=T,
        E_ri=E_ri,
        T_ri=T_ri,
        RI=RI,
        MI=MI,
        repair=repair,
        maintenance=maintenance,
        repair_scope=scope,
        unverified=flags.result(),
    )


def _check_record(record: DefectRecord, length_m: float) -> None:
    ok = all(math.isfinite(v) for v in (record.start_m, record.end_m))
    if not ok or not 0.0 <= record.start_m <= record.end_m <= length_m:
        raise GradingError(
            f"{record.code} at {record.start_m}..{record.end_m} m: need "
            f"0 <= start_m <= end_m <= segment length {length_m} m"
        )


def _score_kind(
    std: Standard,
    kind: DefectKind,
    records: list[DefectRecord],
    length_m: float,
    mode: CloseSpacing,
    flags: _Flags,
) -> KindScore:
    """S, Smax, F, S_M of one kind (or Y, Ymax, G, Y_M)."""
    tables = std.segment
    levels = tables.structural_grades if kind is DefectKind.STRUCTURAL else tables.functional_grades
    counted = _count(std, records, length_m, mode, flags)
    p1 = [d for d in counted if d.spacing_class is SpacingClass.N1]
    p2 = [d for d in counted if d.spacing_class is SpacingClass.N2]
    sum_p1 = sum(d.score for d in p1)
    sum_p2 = sum(d.score for d in p2)
    sum_pl1 = sum(d.score * d.length_m for d in p1)
    sum_pl2 = sum(d.score * d.length_m for d in p2)
    alpha = tables.alpha
    n = len(counted)
    mean = (sum_p1 + alpha * sum_p2) / n if n else 0.0
    top = max((d.score for d in counted), default=0.0)
    index = max(top, mean)
    # S is > 0 whenever n > 0 (scores are positive); guard anyway against a zero-score table.
    density = (sum_pl1 + alpha * sum_pl2) / (mean * length_m) if mean > 0.0 else 0.0
    grade = pick_level(levels, index)
    flags.use(grade.provenance)
    density_type = pick_level(tables.density, density) if counted else None
    if density_type is not None:
        flags.use(density_type.provenance)
    if p2:
        flags.use(tables.alpha_provenance)
    return KindScore(
        kind=kind,
        defects=tuple(counted),
        n1=len(p1),
        n2=len(p2),
        sum_p1=sum_p1,
        sum_p2=sum_p2,
        sum_pl1=sum_pl1,
        sum_pl2=sum_pl2,
        mean=mean,
        max=top,
        index=index,
        density=density,
        grade=grade,
        density_type=density_type,
    )


def _count(
    std: Standard,
    records: list[DefectRecord],
    length_m: float,
    mode: CloseSpacing,
    flags: _Flags,
) -> list[CountedDefect]:
    """Group close records (MERGE), then class each group by its nearest clear spacing."""
    tables = std.segment
    if not records:
        return []
    flags.use(tables.spacing_provenance)
    flags.use(tables.spacing_rule)
    flags.use(tables.length_rule)
    ordered = sorted(records, key=lambda r: (r.start_m, r.end_m))

    # Group records closer than n2_from_m (sweep over starts, tracking the group's far end)
    groups: list[list[DefectRecord]] = []
    group_end = -math.inf
    for record in ordered:
        close = record.start_m - group_end < tables.n2_from_m - _SPACING_TOLERANCE_M
        if groups and close and mode is CloseSpacing.MERGE:
            groups[-1].append(record)
        else:
            groups.append([record])
            group_end = -math.inf
        group_end = max(group_end, record.end_m)
    spans = [(min(r.start_m for r in g), max(r.end_m for r in g)) for g in groups]
    if any(len(g) > 1 for g in groups) or mode is CloseSpacing.AS_N2:
        flags.use(tables.close_spacing_rule)

    counted: list[CountedDefect] = []
    for i, group in enumerate(groups):
        start, end = spans[i]
        gaps = [max(0.0, max(start, s) - min(end, e)) for j, (s, e) in enumerate(spans) if j != i]
        spacing = min(gaps, default=None)
        n2 = spacing is not None and spacing <= tables.n1_above_m + _SPACING_TOLERANCE_M
        worst = max(group, key=lambda r: std.score(r.code, r.grade))
        counted.append(
            CountedDefect(
                code=worst.code,
                grade=worst.grade,
                score=std.score(worst.code, worst.grade),
                start_m=start,
                end_m=end,
                length_m=min(max(end - start, tables.local_min_length_m), length_m),
                spacing_m=spacing,
                spacing_class=SpacingClass.N2 if n2 else SpacingClass.N1,
                records=tuple(group),
            )
        )
    return counted


def _factor(table: Mapping[str, Factor], key: str, what: str, flags: _Flags) -> float:
    """K or T from its table; an unknown key names the keys there are."""
    factor = table.get(key)
    if factor is None:
        raise GradingError(f"unknown {what} {key!r}; expected one of {', '.join(table)}")
    flags.use(factor.provenance)
    return factor.value


def _pipe_importance(std: Standard, dn_mm: float, flags: _Flags) -> float:
    if not (math.isfinite(dn_mm) and dn_mm > 0.0):
        raise GradingError(f"pipe diameter must be a positive number of mm, got {dn_mm}")
    for row in std.segment.e_pipe_importance:
        if row.matches(dn_mm):
            flags.use(row.provenance)
            return row.value
    raise GradingError(f"{std.id}: no E row matches DN {dn_mm} mm")  # loader forbids this


def _repair_scope(std: Standard, RI: float, F: float, density: float, flags: _Flags) -> RepairScope:
    rule = std.segment.repair_scope
    flags.use(rule.provenance)
    if rule.ri_max_none >= RI:
        return RepairScope.NONE
    if rule.ri_plan_max >= RI and rule.f_max_none >= F:
        return RepairScope.NONE
    return RepairScope.LOCAL if density < rule.local_below else RepairScope.WHOLE_SEGMENT
