"""CJJ 181-2012 grade rules for the defects the sewer world models with measurable geometry.

Source: /work/shared/reference/DEFECT_STANDARDS.md section 3.1. The grade criteria there come
from a decompiled inspection app and were NOT cross-checked against the standard's PDF, so
every rule below is marked unverified; replace the table when a verified one exists.
Bands are read as lower-exclusive, upper-inclusive (e.g. BX 5-15 % means 5 < x <= 15).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

VERIFIED = False


@dataclass(frozen=True)
class GradeRule:
    """Grade bands of one measured quantity: grade = 1 + number of upper limits exceeded."""

    code: str
    quantity: str
    upper_limits: tuple[float, ...]
    first_grade: int = 1
    minimum: float = 0.0

    def grade(self, value: float) -> int:
        """Grade of a measured value; raises ValueError below the defect threshold."""
        if value < self.minimum:
            raise ValueError(f"{self.code}: {self.quantity}={value} is below the defect threshold")
        return self.first_grade + bisect.bisect_left(self.upper_limits, value)


RULES: dict[str, GradeRule] = {
    # 变形: deformation as % of nominal diameter.
    "BX": GradeRule("BX", "ovality_pct_of_d", (5.0, 15.0, 25.0)),
    # 错口: radial offset as a multiple of the wall thickness.
    "CK": GradeRule("CK", "offset_ratio_of_wall", (0.5, 1.0, 2.0)),
    # 脱节: axial gap in mm (grade 1 is soil intrusion without a measurable gap).
    "TJ": GradeRule("TJ", "gap_mm", (20.0, 50.0), first_grade=2),
    # 沉积: sediment depth as % of diameter; below 20 % it is not recorded.
    "CJ": GradeRule("CJ", "depth_pct_of_d", (30.0, 40.0, 50.0), minimum=20.0),
    # 树根 / 障碍物: cross-section area loss in %.
    "SG": GradeRule("SG", "area_loss_pct", (15.0, 25.0, 50.0)),
    "ZW": GradeRule("ZW", "area_loss_pct", (15.0, 25.0, 50.0)),
    # 结垢 (hard scale): cross-section area loss in %.
    "JG": GradeRule("JG", "area_loss_pct", (15.0, 25.0, 50.0)),
    # 支管暗接: intrusion of the hidden lateral as % of diameter.
    "AJ": GradeRule("AJ", "intrusion_pct_of_d", (10.0, 20.0)),
}

# Codes graded by appearance, not a measurement: grade -> criterion text from the table.
DESCRIPTIVE: dict[str, dict[int, str]] = {
    "PL": {1: "hairline crack", 2: "open crack, shape intact", 3: "fragments <= 60 deg arc"},
    "FS": {1: "light pitting", 2: "aggregate showing", 3: "aggregate fully exposed"},
    "SL": {1: "drip", 2: "stream (line leak)", 3: "gush <= 1/3 section", 4: "spray > 1/3"},
}


def grade_for(code: str, measured: dict[str, float]) -> int | None:
    """Grade implied by a defect's measurements, or None when the code is graded by appearance."""
    rule = RULES.get(code)
    if rule is None:
        return None
    if rule.quantity not in measured:
        raise KeyError(f"{code} needs measured '{rule.quantity}'")
    return rule.grade(measured[rule.quantity])
