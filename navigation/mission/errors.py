"""Errors of the mission package; each names the file, line, field or stamp at fault."""

from __future__ import annotations

from navigation.file_errors import LocatedFileError


class MissionError(Exception):
    """Base class of every error raised by ``navigation.mission``."""


class PlanError(MissionError, LocatedFileError):
    """A mission plan that is unreadable, malformed or invalid.

    The message is one line, ``FILE:LINE: FIELD: REASON``, so a CLI can print it as it is.
    """


class SafetyError(MissionError):
    """The safety supervisor was fed an inconsistent status (a stamp that went backwards)."""
