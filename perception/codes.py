"""Defect class codes: CJJ 181-2012 codes are the labels everywhere in the stack.

The mapping to NASSCO PACP and EN 13508-2 codes lives in ``perception/grading`` data files;
this module only names the codes and their kind.
"""

from __future__ import annotations

import enum


class DefectKind(enum.Enum):
    """CJJ 181 splits defects into structural (结构性) and functional (功能性) ones."""

    STRUCTURAL = "structural"
    FUNCTIONAL = "functional"


STRUCTURAL_CODES: tuple[str, ...] = ("PL", "BX", "FS", "CK", "QF", "TJ", "TL", "AJ", "CR", "SL")
FUNCTIONAL_CODES: tuple[str, ...] = ("CJ", "JG", "ZW", "CQ", "SG", "FZ")
ALL_CODES: tuple[str, ...] = STRUCTURAL_CODES + FUNCTIONAL_CODES

# Measured from the lidar, not graded from pixels (issue: "geometric classes").
GEOMETRIC_CODES: frozenset[str] = frozenset({"BX", "CJ", "CK"})


def kind_of(code: str) -> DefectKind:
    """Structural or functional; raises KeyError for a code CJJ 181 does not define."""
    if code in STRUCTURAL_CODES:
        return DefectKind.STRUCTURAL
    if code in FUNCTIONAL_CODES:
        return DefectKind.FUNCTIONAL
    raise KeyError(f"'{code}' is not a CJJ 181-2012 defect code")
