"""CJJ 181 codes to NASSCO PACP code families and EN 13508-2 main codes (unverified proposal).

The table is ``data/code_mapping.yaml``. PACP entries are families: a trailing ``*`` means any
code starting with the prefix. No row is verified; ``MappingRow.verified`` says so per row.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from perception.grading._yaml import load_document, root_view
from perception.grading.errors import UnknownCodeError
from perception.grading.tables import DATA_DIR

DEFAULT_MAPPING_FILE = DATA_DIR / "code_mapping.yaml"


@dataclass(frozen=True)
class MappingRow:
    """The counterparts of one CJJ code in PACP and EN 13508-2."""

    code: str
    pacp: tuple[str, ...]  # code families, e.g. ("DR", "DF*"); empty: no counterpart known
    en13508: tuple[str, ...]  # main codes, e.g. ("BAA",)
    verified: bool
    source: str
    note: str


@dataclass(frozen=True)
class CodeMapping:
    """A loaded mapping file."""

    standard: str  # the standard whose codes are mapped (CJJ 181-2012)
    path: Path
    rows: Mapping[str, MappingRow]

    def row(self, code: str) -> MappingRow:
        """The row of ``code``; raises UnknownCodeError when the file has none."""
        try:
            return self.rows[code]
        except KeyError:
            raise UnknownCodeError(f"{self.path.name} maps no code {code!r}") from None


def load_mapping(path: Path | str) -> CodeMapping:
    """Load and check a mapping file; a malformed one raises GradingTableError."""
    doc = load_document(Path(path))
    root = root_view(doc)
    root.only_keys({"standard", "mapping"}, {"pacp_version", "en13508_part"})
    rows: dict[str, MappingRow] = {}
    for code, item in root.child("mapping").items():
        item.only_keys({"pacp", "en13508", "verified", "source"}, {"note"})
        rows[code] = MappingRow(
            code=code,
            pacp=item.child("pacp").strings(),
            en13508=item.child("en13508").strings(),
            verified=item.child("verified").boolean(),
            source=item.child("source").string(),
            note=item.child("note").string() if item.has("note") else "",
        )
    return CodeMapping(standard=root.child("standard").string(), path=doc.path, rows=rows)


@functools.cache
def default_mapping() -> CodeMapping:
    """The package's CJJ 181 -> PACP / EN 13508-2 mapping (loaded once)."""
    return load_mapping(DEFAULT_MAPPING_FILE)


def to_pacp(code: str, mapping: CodeMapping | None = None) -> tuple[str, ...]:
    """PACP code families for a CJJ code (unverified; empty when none is known)."""
    return (mapping or default_mapping()).row(code).pacp


def to_en13508(code: str, mapping: CodeMapping | None = None) -> tuple[str, ...]:
    """EN 13508-2 main codes for a CJJ code (unverified; empty when none is known)."""
    return (mapping or default_mapping()).row(code).en13508
