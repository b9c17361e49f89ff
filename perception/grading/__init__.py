"""Defect grading and segment evaluation, table-driven (CJJ 181-2012 by default).

Grades, scores and every constant of the segment evaluation come from YAML files under
``data/``; rows not checked against the standard's text are reported in each result's
``unverified`` list. See docs/grading.md.
"""

from __future__ import annotations

from perception.grading.errors import (
    BelowThresholdError,
    GradingTableError,
    NotScoredError,
    UnknownCodeError,
)
from perception.grading.mapping import (
    CodeMapping,
    MappingRow,
    default_mapping,
    load_mapping,
    to_en13508,
    to_pacp,
)
from perception.grading.segment import (
    CountedDefect,
    DefectRecord,
    EvaluationOptions,
    KindScore,
    RepairScope,
    SegmentEvaluation,
    SiteFactors,
    SpacingClass,
    evaluate_segment,
)
from perception.grading.tables import (
    CloseSpacing,
    DefectEntry,
    GradeResult,
    GradeRow,
    Level,
    Provenance,
    Standard,
    default_standard,
    grade_from_measurement,
    load_standard,
    score,
)

__all__ = [
    "BelowThresholdError",
    "CloseSpacing",
    "CodeMapping",
    "CountedDefect",
    "DefectEntry",
    "DefectRecord",
    "EvaluationOptions",
    "GradeResult",
    "GradeRow",
    "GradingTableError",
    "KindScore",
    "Level",
    "MappingRow",
    "NotScoredError",
    "Provenance",
    "RepairScope",
    "SegmentEvaluation",
    "SiteFactors",
    "SpacingClass",
    "Standard",
    "UnknownCodeError",
    "default_mapping",
    "default_standard",
    "evaluate_segment",
    "grade_from_measurement",
    "load_mapping",
    "load_standard",
    "score",
    "to_en13508",
    "to_pacp",
]
