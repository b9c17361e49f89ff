"""Reading a mission folder: mission.yaml, findings.sqlite, trajectory.tum (no ROS).

The folder layout is in docs/reports.md. Everything here is read-only; a file that is not what
the format says raises ``ReportError`` naming it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from ground_station.report.errors import ReportError
from navigation.mission.folder import writer_alive

MISSION_FILE = "mission.yaml"
FINDINGS_FILE = "findings.sqlite"
TRAJECTORY_FILE = "trajectory.tum"
SCHEMA = 1
STATES = ("running", "completed", "interrupted", "aborted")
STALE_AFTER_S = 10.0  # a 'running' folder not updated for this long has lost its writer


@dataclass(frozen=True)
class Mission:
    """What mission.yaml says, with the state as the report must show it."""

    path: Path
    name: str
    state: str  # effective: 'running' whose writer is gone reads 'interrupted'
    recorded_state: str  # as written in the file
    started_utc: datetime | None
    ended_utc: datetime | None
    last_update_utc: datetime | None
    reason: str | None
    distance_done_m: float | None
    distance_left_m: float | None
    sim_time_s: float | None
    plan: Mapping[str, Any]
    world: str | None
    events: tuple[Mapping[str, Any], ...]

    @property
    def asset(self) -> Mapping[str, Any]:
        """The plan's asset (empty when the plan has none)."""
        asset = self.plan.get("asset")
        return asset if isinstance(asset, Mapping) else {}

    @property
    def writer_lost(self) -> bool:
        """True when the file says 'running' but nobody has updated it for a while."""
        return self.recorded_state == "running" and self.state == "interrupted"


@dataclass(frozen=True)
class Finding:
    """One row of the findings table."""

    id: str
    code: str
    grade: int | None
    score: float | None
    start_m: float
    end_m: float
    clock_h: float | None
    xyz: tuple[float, float, float] | None  # site frame
    lat_lon: tuple[float, float] | None  # CGCS2000 degrees
    confidence: float | None
    frames: int | None
    source: str | None
    grade_basis: str | None
    measured: Mapping[str, Any]
    unverified: tuple[str, ...]
    photo: str | None  # relative to the mission folder
    status: str
    stamp_ns: int | None

    @property
    def length_m(self) -> float:
        """Extent along the pipe (0 for a point defect)."""
        return max(0.0, self.end_m - self.start_m)

    @property
    def counted(self) -> bool:
        """Whether the finding enters the segment evaluation (confirmed and graded)."""
        return self.status == "confirmed" and self.grade is not None


@dataclass(frozen=True)
class Photo:
    """One row of the photos table."""

    path: str
    stamp_ns: int | None
    distance_m: float | None
    kind: str | None


@dataclass(frozen=True)
class FindingsDb:
    """Everything findings.sqlite holds (an absent file reads as empty, ``present=False``)."""

    path: Path
    present: bool
    findings: tuple[Finding, ...]
    segment: Mapping[str, Any] | None  # the stored evaluation; None: not written
    photos: tuple[Photo, ...] = ()


@dataclass(frozen=True)
class Trajectory:
    """Poses of trajectory.tum: stamps [s] and site positions [m] (N, 3)."""

    path: Path
    stamps_s: NDArray[np.float64]
    xyz: NDArray[np.float64]
    truncated: bool  # the last line was cut short (interrupted writer) and is left out


def effective_state(recorded: str, last_update_utc: datetime | None, now: datetime,
                    writer_alive: bool = True) -> str:
    """The state a report shows: 'running' whose writer is gone (no process holds the folder's
    lock, or no update for ``STALE_AFTER_S``) is 'interrupted', as ``MissionFolder.read``
    says."""
    if recorded != "running":
        return recorded
    if (not writer_alive or last_update_utc is None
            or (now - last_update_utc).total_seconds() > STALE_AFTER_S):
        return "interrupted"
    return recorded


def read_mission(folder: Path, now: datetime | None = None) -> Mission:
    """Read and check ``folder/mission.yaml``; ReportError names it when it is not one."""
    path = folder / MISSION_FILE
    if not folder.is_dir():
        raise ReportError(folder, "not a directory")
    if not path.is_file():
        raise ReportError(folder, f"not a mission folder (no {MISSION_FILE})")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(path, f"cannot read: {err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or "not YAML"
        raise ReportError(path, f"{where}malformed YAML: {problem}") from err
    if not isinstance(doc, Mapping):
        raise ReportError(path, "not a YAML mapping (malformed mission file)")
    fields = _Fields(path, doc)
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise ReportError(path, f"schema: expected {SCHEMA}, got {schema!r}")
    recorded = fields.string("state")
    if recorded not in STATES:
        raise ReportError(path, f"state: expected one of {', '.join(STATES)}, got {recorded!r}")
    progress = doc.get("progress") or {}
    if not isinstance(progress, Mapping):
        raise ReportError(path, "progress: expected a mapping")
    plan = doc.get("plan")
    if not isinstance(plan, Mapping):
        raise ReportError(path, "plan: expected a mapping (the mission plan as run)")
    if "asset" in plan and not isinstance(plan["asset"], Mapping):
        raise ReportError(path, "plan.asset: expected a mapping")
    events = doc.get("events") or []
    if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
        raise ReportError(path, "events: expected a list of mappings")
    last_update = fields.time("last_update_utc")
    world = doc.get("world")
    return Mission(
        path=path,
        name=str(doc.get("name") or ""),
        state=effective_state(recorded, last_update, now or datetime.now(UTC),
                              writer_alive(folder)),
        recorded_state=recorded,
        started_utc=fields.time("started_utc"),
        ended_utc=fields.time("ended_utc"),
        last_update_utc=last_update,
        reason=None if doc.get("reason") is None else str(doc["reason"]),
        distance_done_m=_Fields(path, progress, "progress.").number("distance_done_m"),
        distance_left_m=_Fields(path, progress, "progress.").number("distance_left_m"),
        sim_time_s=_Fields(path, progress, "progress.").number("sim_time_s"),
        plan=plan,
        world=None if world is None else str(world),
        events=tuple(events),
    )


class _Fields:
    """Typed access to optional fields of a mapping, errors naming file and key."""

    def __init__(self, path: Path, doc: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.doc, self.prefix = path, doc, prefix

    def fail(self, key: str, reason: str) -> ReportError:
        return ReportError(self.path, f"{self.prefix}{key}: {reason}")

    def string(self, key: str) -> str:
        value = self.doc.get(key)
        if not isinstance(value, str):
            raise self.fail(key, f"expected text, got {value!r}")
        return value

    def number(self, key: str) -> float | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        return float(value)

    def time(self, key: str) -> datetime | None:
        value = self.doc.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self.fail(key, f"expected an ISO 8601 UTC time, got {value!r}") from None
        if not isinstance(value, datetime):
            raise self.fail(key, f"expected an ISO 8601 UTC time, got {value!r}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- findings.sqlite ------------------------------------------------------------------------


def read_findings(folder: Path) -> FindingsDb:
    """Read ``folder/findings.sqlite``; ReportError names it when it is corrupt."""
    path = folder / FINDINGS_FILE
    if not path.exists():
        return FindingsDb(path, present=False, findings=(), segment=None)
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise ReportError(path, f"cannot open: {err}") from err
    try:
        connection.row_factory = sqlite3.Row
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master "
                                                    "WHERE type = 'table'")}
        if "findings" not in tables:
            raise ReportError(path, "corrupt: no table 'findings'")
        findings = tuple(sorted(
            (_finding(path, row) for row in connection.execute("SELECT * FROM findings")),
            key=lambda f: (f.start_m, f.end_m, f.id)))
        segment = _segment(path, connection) if "segment" in tables else None
        photos = _photos(path, connection) if "photos" in tables else ()
    except sqlite3.Error as err:
        raise ReportError(path, f"corrupt SQLite database: {err}") from err
    finally:
        connection.close()
    return FindingsDb(path, present=True, findings=findings, segment=segment, photos=photos)


def _finding(path: Path, row: sqlite3.Row) -> Finding:
    values = dict(zip(row.keys(), tuple(row), strict=True))
    fid = str(values.get("id"))

    def fail(key: str, reason: str) -> ReportError:
        return ReportError(path, f"findings row {fid!r}: {key}: {reason}")

    def number(key: str, required: bool = False) -> float | None:
        value = values.get(key)
        if value is None:
            if required:
                raise fail(key, "missing")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise fail(key, f"expected a number, got {value!r}")
        return float(value)

    def integer(key: str) -> int | None:
        value = number(key)
        if value is None:
            return None
        if value != int(value):
            raise fail(key, f"expected an integer, got {value!r}")
        return int(value)

    def text(key: str) -> str | None:
        value = values.get(key)
        return None if value is None else str(value)

    def json_field(key: str, default: Any) -> Any:
        raw = values.get(key)
        if raw is None or raw == "":
            return default
        try:
            return json.loads(raw)
        except (TypeError, ValueError) as err:
            raise fail(key, f"malformed JSON: {err}") from err

    code = text("code")
    if not code:
        raise fail("code", "missing")
    start = number("start_m", required=True)
    end = number("end_m")
    assert start is not None
    xyz = tuple(number(k) for k in ("x", "y", "z"))
    lat, lon = number("lat"), number("lon")
    measured = json_field("measured_json", {})
    unverified = json_field("unverified_json", [])
    if not isinstance(measured, dict):
        raise fail("measured_json", "expected a JSON object")
    if not isinstance(unverified, list):
        raise fail("unverified_json", "expected a JSON list")
    return Finding(
        id=fid,
        code=code,
        grade=integer("grade"),
        score=number("score"),
        start_m=start,
        end_m=start if end is None else max(start, end),
        clock_h=number("clock_h"),
        xyz=None if None in xyz[:2] else (xyz[0] or 0.0, xyz[1] or 0.0, xyz[2] or 0.0),
        lat_lon=None if lat is None or lon is None else (lat, lon),
        confidence=number("confidence"),
        frames=integer("frames"),
        source=text("source"),
        grade_basis=text("grade_basis"),
        measured=measured,
        unverified=tuple(str(u) for u in unverified),
        photo=text("photo") or None,
        status=text("status") or "confirmed",
        stamp_ns=integer("stamp_ns"),
    )


def _segment(path: Path, connection: sqlite3.Connection) -> Mapping[str, Any] | None:
    row = connection.execute("SELECT json FROM segment WHERE id = 1").fetchone()
    if row is None or row[0] is None:
        return None
    try:
        doc = json.loads(row[0])
    except (TypeError, ValueError) as err:
        raise ReportError(path, f"segment: malformed JSON: {err}") from err
    if not isinstance(doc, Mapping):
        raise ReportError(path, "segment: expected a JSON object")
    return doc


def _photos(path: Path, connection: sqlite3.Connection) -> tuple[Photo, ...]:
    photos = []
    for row in connection.execute("SELECT * FROM photos"):
        values = dict(zip(row.keys(), tuple(row), strict=True))
        distance = values.get("distance_m")
        stamp = values.get("stamp_ns")
        photos.append(Photo(
            path=str(values.get("path") or ""),
            stamp_ns=int(stamp) if isinstance(stamp, int | float) else None,
            distance_m=float(distance) if isinstance(distance, int | float) else None,
            kind=None if values.get("kind") is None else str(values["kind"]),
        ))
    return tuple(sorted(photos, key=lambda p: (p.distance_m or 0.0, p.path)))


# --- trajectory.tum -------------------------------------------------------------------------


def read_trajectory(folder: Path) -> Trajectory | None:
    """Poses of ``folder/trajectory.tum`` (None: no file); a malformed line is an error."""
    path = folder / TRAJECTORY_FILE
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(path, f"cannot read: {err}") from err
    rows: list[list[float]] = []
    truncated = False
    numbered = [(i + 1, s.strip()) for i, s in enumerate(lines)]
    numbered = [(n, s) for n, s in numbered if s and not s.startswith("#")]
    for k, (number, line) in enumerate(numbered):
        try:
            values = [float(v) for v in line.split()]
            ok = len(values) == 8 and all(math.isfinite(v) for v in values)
        except ValueError:
            ok = False
        if not ok:
            if k == len(numbered) - 1:  # a writer stopped mid-line
                truncated = True
                break
            raise ReportError(path, f"line {number}: expected 'timestamp x y z qx qy qz qw'")
        rows.append(values)
    data = np.array(rows, dtype=np.float64).reshape(-1, 8)
    return Trajectory(path, data[:, 0].copy(), data[:, 1:4].copy(), truncated)
