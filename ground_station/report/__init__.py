"""Mission reports: report.html, report.pdf (管段状况评估表) and defects.geojson (no ROS).

``build_report(folder)`` reads a mission folder (mission.yaml, findings.sqlite, trajectory.tum,
images/) and writes the three files into it; see docs/reports.md.
"""

from __future__ import annotations

from ground_station.report.build import (
    GEOJSON_FILE,
    HTML_FILE,
    PDF_FILE,
    ReportFiles,
    build_report,
)
from ground_station.report.errors import ReportError
from ground_station.report.folder import STALE_AFTER_S, effective_state

__all__ = [
    "GEOJSON_FILE",
    "HTML_FILE",
    "PDF_FILE",
    "STALE_AFTER_S",
    "ReportError",
    "ReportFiles",
    "build_report",
    "effective_state",
]
