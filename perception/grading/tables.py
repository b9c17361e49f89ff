"""A defect-grading standard loaded from its YAML table: grades, scores, segment constants.

Nothing here holds a threshold; every number comes from a data file such as
``data/cjj181_2012.yaml``. Each table row carries ``verified`` and ``source`` so that results can
list the rows they used that nobody has checked against the standard's text.
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from perception.codes import DefectKind
from perception.errors import GradingError
from perception.grading._yaml import View, load_document, root_view
from perception.grading.errors import (
    BelowThresholdError,
    NotScoredError,
    UnknownCodeError,
)

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_STANDARD_FILE = DATA_DIR / "cjj181_2012.yaml"

GUESSED = "G"  # `source` of a row the reference marks [G]: guessed or from memory
_LEVEL_TOLERANCE = 1e-9  # computed indices like 0.7F + ... land a few ulps off a band limit


@dataclass(frozen=True)
class Provenance:
    """Where a table row or rule comes from, and whether it was checked against the standard."""

    key: str  # e.g. "defects.PL.grades.3", "segment.alpha"
    verified: bool
    source: str  # "S" secondary source, "G" guessed, or the clause of a verified table
    note: str = ""

    def flag(self, standard_id: str) -> str:
        """One line for a report's unverified list, e.g. 'CJJ 181-2012 segment.alpha [S]'."""
        return f"{standard_id} {self.key} [{self.source}]"

    @property
    def guessed(self) -> bool:
        """True for rows the reference marks [G] (guessed / from memory)."""
        return self.source == GUESSED


@dataclass(frozen=True)
class Band:
    """Values of one measured quantity for one grade: lower exclusive, upper inclusive."""

    quantity: str
    lower: float | None  # None: open below
    upper: float | None  # None: open above

    def contains(self, value: float) -> bool:
        """Whether lower < value <= upper."""
        above = self.lower is None or value > self.lower
        below = self.upper is None or value <= self.upper
        return above and below


@dataclass(frozen=True)
class GradeRow:
    """One grade of one defect code: its criterion, score and measured bands."""

    code: str
    grade: int
    criterion_zh: str
    criterion_en: str
    score: float | None  # None for a code that is recorded but not scored
    bands: tuple[Band, ...]
    provenance: Provenance


@dataclass(frozen=True)
class Measure:
    """A quantity a code can be graded from; below ``minimum`` it is not a defect."""

    quantity: str
    minimum: float | None


@dataclass(frozen=True)
class DefectEntry:
    """The table entry of one defect code."""

    code: str
    name_zh: str
    name_en: str
    kind: DefectKind
    scored: bool
    measures: tuple[Measure, ...]
    grades: tuple[GradeRow, ...]

    def row(self, grade: int) -> GradeRow:
        """The row of ``grade``; raises GradingError for a grade the code does not have."""
        for row in self.grades:
            if row.grade == grade:
                return row
        have = ", ".join(str(r.grade) for r in self.grades)
        raise GradingError(f"{self.code} has no grade {grade} (grades: {have})")


@dataclass(frozen=True)
class Level:
    """A labelled band of a segment figure (grade I-IV, density type, repair level)."""

    label: str
    text_zh: str
    text_en: str
    upper: float | None  # None: open above
    upper_inclusive: bool
    provenance: Provenance


@dataclass(frozen=True)
class Factor:
    """One row of the K (area) or T (soil) table."""

    key: str
    value: float
    text_zh: str
    text_en: str
    provenance: Provenance


@dataclass(frozen=True)
class DiameterRow:
    """One row of the E table: it matches DN > above_mm, or DN >= from_mm."""

    above_mm: float | None
    from_mm: float | None
    value: float
    text_en: str
    provenance: Provenance

    def matches(self, dn_mm: float) -> bool:
        """Whether a pipe of nominal diameter ``dn_mm`` falls in this row."""
        if self.above_mm is not None:
            return dn_mm > self.above_mm
        return self.from_mm is not None and dn_mm >= self.from_mm


class CloseSpacing(enum.Enum):
    """What happens to defects of one kind closer than the n2 spacing (1.0 m in CJJ 181)."""

    MERGE = "merge"  # they count as one defect: the highest score over their joint extent
    AS_N2 = "as_n2"  # each counts in n2, like a 1.0-1.5 m spacing


@dataclass(frozen=True)
class RepairScopeRule:
    """One implementation's rule for local vs whole-segment repair (see the data file)."""

    ri_max_none: float
    ri_plan_max: float
    f_max_none: float
    local_below: float
    provenance: Provenance


@dataclass(frozen=True)
class SegmentTables:
    """Constants and tables of the segment (管段) evaluation."""

    alpha: float
    alpha_provenance: Provenance
    n1_above_m: float
    n2_from_m: float
    spacing_provenance: Provenance
    spacing_rule: Provenance
    close_spacing: CloseSpacing
    close_spacing_rule: Provenance
    local_min_length_m: float
    length_rule: Provenance
    structural_grades: tuple[Level, ...]
    functional_grades: tuple[Level, ...]
    density: tuple[Level, ...]
    ri_weights: Mapping[str, float]  # F, K, E, T
    ri_weights_provenance: Provenance
    mi_weights: Mapping[str, float]  # G, K, E
    mi_weights_provenance: Provenance
    k_area: Mapping[str, Factor]
    e_pipe_importance: tuple[DiameterRow, ...]
    t_soil: Mapping[str, Factor]
    ri_levels: tuple[Level, ...]
    mi_levels: tuple[Level, ...]
    repair_scope: RepairScopeRule


@dataclass(frozen=True)
class GradeResult:
    """The grade a measurement implies, with its score and provenance."""

    code: str
    grade: int
    score: float | None  # None when the standard records the code but does not score it
    verified: bool
    source: str
    quantity: str
    value: float
    criterion_zh: str
    criterion_en: str
    unverified: tuple[str, ...]  # the table row used, when it is not verified


@dataclass(frozen=True)
class Standard:
    """A grading standard: defect tables and segment-evaluation constants from one data file."""

    id: str
    title_zh: str
    title_en: str
    path: Path
    provenance: Provenance
    defects: Mapping[str, DefectEntry]
    segment: SegmentTables

    def entry(self, code: str) -> DefectEntry:
        """The table entry of ``code``; raises UnknownCodeError when there is none."""
        try:
            return self.defects[code]
        except KeyError:
            raise UnknownCodeError(
                f"{self.id} ({self.path.name}) has no defect code {code!r}; "
                f"known: {', '.join(self.defects)}"
            ) from None

    def grade_row(self, code: str, grade: int) -> GradeRow:
        """The row of ``code`` at ``grade``."""
        return self.entry(code).row(grade)

    def score(self, code: str, grade: int) -> float:
        """Score P of a defect; raises NotScoredError for a recorded-only code such as FZ."""
        row = self.grade_row(code, grade)
        if row.score is None:
            raise NotScoredError(f"{self.id}: {code} is recorded but not scored")
        return row.score

    def grade_from_measurement(self, code: str, measured: Mapping[str, float]) -> GradeResult:
        """Grade of ``code`` from one of its measured quantities (bands: lower < x <= upper)."""
        entry = self.entry(code)
        if not entry.measures:
            raise GradingError(f"{self.id}: {code} is graded by appearance, not by a measurement")
        given = [m for m in entry.measures if m.quantity in measured]
        if len(given) != 1:
            wanted = " or ".join(repr(m.quantity) for m in entry.measures)
            problem = "got none" if not given else "got more than one"
            raise GradingError(f"{self.id}: {code} needs exactly one of {wanted}; {problem}")
        measure = given[0]
        value = float(measured[measure.quantity])
        if not math.isfinite(value) or value < 0.0:
            raise GradingError(f"{self.id}: {code} {measure.quantity}={value} is not a measurement")
        if measure.minimum is not None and value < measure.minimum:
            raise BelowThresholdError(
                f"{self.id}: {code} {measure.quantity}={value} is below the defect threshold "
                f"{measure.minimum}"
            )
        for row in entry.grades:
            for band in row.bands:
                if band.quantity == measure.quantity and band.contains(value):
                    prov = row.provenance
                    return GradeResult(
                        code=code,
                        grade=row.grade,
                        score=row.score,
                        verified=prov.verified,
                        source=prov.source,
                        quantity=measure.quantity,
                        value=value,
                        criterion_zh=row.criterion_zh,
                        criterion_en=row.criterion_en,
                        unverified=() if prov.verified else (prov.flag(self.id),),
                    )
        # The loader checks that the bands cover every value, so this is a broken invariant.
        raise GradingError(f"{self.id}: no {code} band holds {measure.quantity}={value}")


def pick_level(levels: tuple[Level, ...], value: float) -> Level:
    """The first level whose upper limit holds ``value`` (the last one is open above)."""
    for level in levels:
        if level.upper is None:
            return level
        if value < level.upper - _LEVEL_TOLERANCE:
            return level
        if level.upper_inclusive and value <= level.upper + _LEVEL_TOLERANCE:
            return level
    return levels[-1]  # unreachable: the loader requires an open last level


def load_standard(path: Path | str) -> Standard:
    """Load and check a standard's YAML table; any defect raises GradingTableError."""
    doc = load_document(Path(path))
    root = root_view(doc)
    root.only_keys({"standard", "defects", "segment"})
    head = root.child("standard")
    head.only_keys({"id", "title_zh", "title_en", "verified", "source"})
    standard_id = head.child("id").string()
    defects = {code: _defect(code, view) for code, view in root.child("defects").items()}
    return Standard(
        id=standard_id,
        title_zh=head.child("title_zh").string(),
        title_en=head.child("title_en").string(),
        path=doc.path,
        provenance=_provenance(head, "standard"),
        defects=defects,
        segment=_segment(root.child("segment")),
    )


@functools.cache
def default_standard() -> Standard:
    """CJJ 181-2012 from the package's data file (loaded once)."""
    return load_standard(DEFAULT_STANDARD_FILE)


def grade_from_measurement(
    code: str, measured: Mapping[str, float], standard: Standard | None = None
) -> GradeResult:
    """Grade of ``code`` from a measurement, e.g. ``{"ovality_pct_of_d": 7.0}`` -> BX grade 2."""
    return (standard or default_standard()).grade_from_measurement(code, measured)


def score(code: str, grade: int, standard: Standard | None = None) -> float:
    """Score P of ``code`` at ``grade`` in ``standard`` (CJJ 181-2012 by default)."""
    return (standard or default_standard()).score(code, grade)


# ---------------------------------------------------------------- parsing the data file

_ROW_KEYS = {"verified", "source"}


def _provenance(view: View, key: str, note: str = "") -> Provenance:
    return Provenance(
        key=key,
        verified=view.child("verified").boolean(),
        source=view.child("source").string(),
        note=note,
    )


def _defect(code: str, view: View) -> DefectEntry:
    view.only_keys({"name_zh", "name_en", "kind", "scored", "grades"}, {"measures"})
    kind_text = view.child("kind").string()
    try:
        kind = DefectKind(kind_text)
    except ValueError:
        view.child("kind").fail(f"expected structural or functional, got {kind_text!r}")
    scored = view.child("scored").boolean()
    measures: list[Measure] = []
    if view.has("measures"):
        for quantity, spec in view.child("measures").items():
            spec.only_keys(set(), {"minimum"})
            minimum = spec.child("minimum").optional_number() if spec.has("minimum") else None
            measures.append(Measure(quantity, minimum))
    rows = [
        _grade_row(code, v, scored, {m.quantity for m in measures})
        for v in view.child("grades").elements()
    ]
    grades = [r.grade for r in rows]
    if grades != list(range(1, len(grades) + 1)):
        view.child("grades").fail(f"grades must be 1, 2, ... in order, got {grades}")
    for measure in measures:
        _check_bands(view.child("grades"), measure.quantity, rows)
    return DefectEntry(
        code=code,
        name_zh=view.child("name_zh").string(),
        name_en=view.child("name_en").string(),
        kind=kind,
        scored=scored,
        measures=tuple(measures),
        grades=tuple(rows),
    )


def _grade_row(code: str, view: View, scored: bool, quantities: set[str]) -> GradeRow:
    required = {"grade", "criterion_zh", "criterion_en", *_ROW_KEYS}
    view.only_keys(required | ({"score"} if scored else set()), {"bands", "note"})
    grade = view.child("grade").integer()
    score_value = view.child("score").number() if scored else None
    if score_value is not None and score_value < 0:
        view.child("score").fail("a score cannot be negative")
    bands: list[Band] = []
    if view.has("bands"):
        for quantity, limits in view.child("bands").items():
            if quantity not in quantities:
                limits.fail(f"{quantity!r} is not listed under {code}.measures")
            pair = limits.value
            if not isinstance(pair, list) or len(pair) != 2:
                limits.fail("expected [lower, upper] (null for an open end)")
            lower, upper = (
                View(view.doc, (*limits.where, i), v).optional_number() for i, v in enumerate(pair)
            )
            if lower is not None and upper is not None and not lower < upper:
                limits.fail(f"lower {lower} must be below upper {upper}")
            bands.append(Band(quantity, lower, upper))
    note = view.child("note").string() if view.has("note") else ""
    return GradeRow(
        code=code,
        grade=grade,
        criterion_zh=view.child("criterion_zh").string(),
        criterion_en=view.child("criterion_en").string(),
        score=score_value,
        bands=tuple(bands),
        provenance=_provenance(view, f"defects.{code}.grades.{grade}", note),
    )


def _check_bands(grades_view: View, quantity: str, rows: list[GradeRow]) -> None:
    """The bands of one quantity must tile the whole line in grade order, without gaps."""
    bands = [b for r in rows for b in r.bands if b.quantity == quantity]
    if not bands:
        grades_view.fail(f"no grade has a band for the measure {quantity!r}")
    if bands[0].lower is not None or bands[-1].upper is not None:
        grades_view.fail(f"{quantity}: the first band must be open below, the last open above")
    for below, above in itertools.pairwise(bands):
        if below.upper is None or below.upper != above.lower:
            grades_view.fail(
                f"{quantity}: bands must join (upper of one = lower of the next), "
                f"got {below.upper} then {above.lower}"
            )


def _segment(view: View) -> SegmentTables:
    view.only_keys(
        {
            "alpha",
            "spacing",
            "rules",
            "grades",
            "density",
            "ri_weights",
            "mi_weights",
            "k_area",
            "e_pipe_importance",
            "t_soil",
            "ri_levels",
            "mi_levels",
            "repair_scope",
        }
    )
    alpha = view.child("alpha")
    alpha.only_keys({"value", *_ROW_KEYS})
    spacing = view.child("spacing")
    spacing.only_keys({"n1_above_m", "n2_from_m", *_ROW_KEYS})
    n1_above = spacing.child("n1_above_m").number()
    n2_from = spacing.child("n2_from_m").number()
    if not 0.0 <= n2_from <= n1_above:
        spacing.fail("need 0 <= n2_from_m <= n1_above_m")
    rules = view.child("rules")
    rules.only_keys({"spacing_to_nearest_same_kind", "close_spacing", "defect_length"})
    nearest = rules.child("spacing_to_nearest_same_kind")
    nearest.only_keys({"text", *_ROW_KEYS})
    close = rules.child("close_spacing")
    close.only_keys({"mode", "text", *_ROW_KEYS})
    mode_text = close.child("mode").string()
    try:
        mode = CloseSpacing(mode_text)
    except ValueError:
        close.child("mode").fail(f"expected merge or as_n2, got {mode_text!r}")
    length = rules.child("defect_length")
    length.only_keys({"local_min_length_m", "text", *_ROW_KEYS})
    grades = view.child("grades")
    grades.only_keys({"structural", "functional"})
    return SegmentTables(
        alpha=alpha.child("value").number(),
        alpha_provenance=_provenance(alpha, "segment.alpha"),
        n1_above_m=n1_above,
        n2_from_m=n2_from,
        spacing_provenance=_provenance(spacing, "segment.spacing"),
        spacing_rule=_provenance(
            nearest, "segment.rules.spacing_to_nearest_same_kind", nearest.child("text").string()
        ),
        close_spacing=mode,
        close_spacing_rule=_provenance(
            close, "segment.rules.close_spacing", close.child("text").string()
        ),
        local_min_length_m=length.child("local_min_length_m").number(),
        length_rule=_provenance(
            length, "segment.rules.defect_length", length.child("text").string()
        ),
        structural_grades=_levels(grades.child("structural"), "segment.grades.structural"),
        functional_grades=_levels(grades.child("functional"), "segment.grades.functional"),
        density=_levels(view.child("density"), "segment.density"),
        ri_weights=_weights(view.child("ri_weights"), ("F", "K", "E", "T")),
        ri_weights_provenance=_provenance(view.child("ri_weights"), "segment.ri_weights"),
        mi_weights=_weights(view.child("mi_weights"), ("G", "K", "E")),
        mi_weights_provenance=_provenance(view.child("mi_weights"), "segment.mi_weights"),
        k_area=_factors(view.child("k_area"), "segment.k_area"),
        e_pipe_importance=_diameter_rows(view.child("e_pipe_importance")),
        t_soil=_factors(view.child("t_soil"), "segment.t_soil"),
        ri_levels=_levels(view.child("ri_levels"), "segment.ri_levels"),
        mi_levels=_levels(view.child("mi_levels"), "segment.mi_levels"),
        repair_scope=_repair_scope(view.child("repair_scope")),
    )


def _levels(view: View, key: str) -> tuple[Level, ...]:
    levels: list[Level] = []
    for item in view.elements():
        item.only_keys({"label", "upper", "text_zh", "text_en", *_ROW_KEYS}, {"upper_inclusive"})
        label = item.child("label").string()
        inclusive = item.child("upper_inclusive").boolean() if item.has("upper_inclusive") else True
        levels.append(
            Level(
                label=label,
                text_zh=item.child("text_zh").string(),
                text_en=item.child("text_en").string(),
                upper=item.child("upper").optional_number(),
                upper_inclusive=inclusive,
                provenance=_provenance(item, f"{key}.{label}"),
            )
        )
    uppers = [lv.upper for lv in levels]
    if uppers[-1] is not None or None in uppers[:-1]:
        view.fail("only the last level is open above (upper: null), and it must be")
    finite = [u for u in uppers if u is not None]
    if finite != sorted(set(finite)):
        view.fail(f"upper limits must increase, got {finite}")
    return tuple(levels)


def _weights(view: View, names: tuple[str, ...]) -> dict[str, float]:
    view.only_keys({*names, *_ROW_KEYS})
    return {name: view.child(name).number() for name in names}


def _factors(view: View, key: str) -> dict[str, Factor]:
    factors: dict[str, Factor] = {}
    for name, item in view.items():
        item.only_keys({"value", "text_zh", "text_en", *_ROW_KEYS})
        factors[name] = Factor(
            key=name,
            value=item.child("value").number(),
            text_zh=item.child("text_zh").string(),
            text_en=item.child("text_en").string(),
            provenance=_provenance(item, f"{key}.{name}"),
        )
    return factors


def _diameter_rows(view: View) -> tuple[DiameterRow, ...]:
    rows: list[DiameterRow] = []
    for i, item in enumerate(view.elements()):
        item.only_keys({"value", "text_en", *_ROW_KEYS}, {"dn_above_mm", "dn_from_mm"})
        if item.has("dn_above_mm") == item.has("dn_from_mm"):
            item.fail("give exactly one of dn_above_mm, dn_from_mm")
        above = item.child("dn_above_mm").number() if item.has("dn_above_mm") else None
        from_mm = item.child("dn_from_mm").number() if item.has("dn_from_mm") else None
        rows.append(
            DiameterRow(
                above_mm=above,
                from_mm=from_mm,
                value=item.child("value").number(),
                text_en=item.child("text_en").string(),
                provenance=_provenance(item, f"segment.e_pipe_importance.{i}"),
            )
        )
    if rows[-1].from_mm != 0.0:
        view.fail("the last row must be dn_from_mm: 0 so that every diameter matches a row")
    return tuple(rows)


def _repair_scope(view: View) -> RepairScopeRule:
    names = ("ri_max_none", "ri_plan_max", "f_max_none", "local_below")
    view.only_keys({*names, *_ROW_KEYS})
    return RepairScopeRule(
        ri_max_none=view.child("ri_max_none").number(),
        ri_plan_max=view.child("ri_plan_max").number(),
        f_max_none=view.child("f_max_none").number(),
        local_below=view.child("local_below").number(),
        provenance=_provenance(view, "segment.repair_scope"),
    )
