"""The report's one error type."""

from __future__ import annotations

from pathlib import Path


class ReportError(Exception):
    """A mission folder the report cannot be built from; the message names the file at fault."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
