"""build_report: report.html, report.pdf and defects.geojson from a mission folder."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ground_station.report import html, pdf
from ground_station.report.errors import ReportError
from ground_station.report.model import gather

HTML_FILE = "report.html"
PDF_FILE = "report.pdf"
GEOJSON_FILE = "defects.geojson"


@dataclass(frozen=True)
class ReportFiles:
    """The files ``build_report`` wrote."""

    html: Path
    pdf: Path
    geojson: Path
    findings: int  # rows of the segment table
    state: str  # the mission state the report shows
    segment_computed: bool  # True: the report evaluated the segment from the findings
    notes: tuple[str, ...]  # what the report's Notes section says


def build_report(folder: Path, *, now: datetime | None = None) -> ReportFiles:
    """Rebuild the report of the mission in ``folder``; ReportError names the file at fault.

    All three outputs are rendered in memory first and each replaces its old version
    atomically, so a failure leaves the previous report (or none), never a half-written one.
    ``now`` (UTC) decides whether a 'running' folder has lost its writer; default: the clock.
    """
    folder = Path(folder)
    data = gather(folder, now)
    html_text = html.render(data).encode("utf-8")
    pdf_bytes = pdf.render(data)
    geojson_text = (json.dumps(data.geojson, ensure_ascii=False, indent=1, allow_nan=False)
                    + "\n").encode("utf-8")
    paths = (folder / HTML_FILE, folder / PDF_FILE, folder / GEOJSON_FILE)
    for path, payload in zip(paths, (html_text, pdf_bytes, geojson_text), strict=True):
        _write_atomically(path, payload)
    return ReportFiles(
        html=paths[0], pdf=paths[1], geojson=paths[2], findings=len(data.rows),
        state=data.mission.state,
        segment_computed=data.segment is not None and data.segment.computed,
        notes=data.notes,
    )


def _write_atomically(path: Path, payload: bytes) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise ReportError(path, f"cannot write: {err}") from err
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise ReportError(path, f"cannot write: {err}") from err
