"""Names of finding codes: the grading standard's (CJJ 181-2012), else the report's own list."""

from __future__ import annotations

from ground_station.report import texts
from perception.grading import default_standard


def code_names(code: str) -> tuple[str, str] | None:
    """(Chinese, English) name of ``code``; None when neither the standard nor texts knows it.

    Observation codes such as JS (积水, standing water) are recorded by the perception but are
    not CJJ 181-2012 codes, so the grading tables do not name them: texts.OBSERVATION_CODES does.
    """
    entry = default_standard().defects.get(code)
    if entry is not None:
        return entry.name_zh, entry.name_en
    return texts.OBSERVATION_CODES.get(code)
