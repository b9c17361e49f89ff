"""Errors of the mission package; each names the file, line, field or stamp at fault."""

from __future__ import annotations

from pathlib import Path


class MissionError(Exception):
    """Base class of every error raised by ``navigation.mission``."""


class PlanError(MissionError):
    """A mission plan that is unreadable, malformed or invalid.

    The message is one line, ``FILE:LINE: FIELD: REASON``, so a CLI can print it as it is.
    """

    def __init__(self, path: str | Path, reason: str, field_path: str | None = None,
                 line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.field_path = field_path
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"{field_path}: {reason}" if field_path else reason
        super().__init__(f"{where}: {what}")


class SafetyError(MissionError):
    """The safety supervisor was fed an inconsistent status (a stamp that went backwards)."""
