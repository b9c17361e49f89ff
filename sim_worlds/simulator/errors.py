"""Errors raised by the headless simulator; each names the file, line or world at fault."""

from __future__ import annotations


class SimError(Exception):
    """Base class of every simulator error."""


class SdfError(SimError):
    """An SDF world or model cannot be loaded; the message starts with ``file:line:``."""
