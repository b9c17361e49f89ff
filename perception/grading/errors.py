"""Errors of the grading package; all subclass ``perception.errors.GradingError``."""

from __future__ import annotations

from perception.errors import GradingError


class GradingTableError(GradingError):
    """A grading or mapping data file that is unreadable, malformed or incomplete."""


class UnknownCodeError(GradingError):
    """A defect code that the loaded standard has no table entry for."""


class BelowThresholdError(GradingError):
    """A measurement below the level at which the standard records a defect at all."""


class NotScoredError(GradingError):
    """A defect the standard records but does not score (CJJ 181: FZ, scum)."""
