"""An error about a place in a file: path, line and field, in one printable line."""

from __future__ import annotations

from pathlib import Path


class LocatedFileError(ValueError):
    """``FILE[:LINE]: [FIELD: ]REASON``; the parts stay available as attributes."""

    def __init__(self, path: str | Path, reason: str, field_path: str | None = None,
                 line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.field_path = field_path
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"{field_path}: {reason}" if field_path else reason
        super().__init__(f"{where}: {what}")
