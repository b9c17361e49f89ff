"""Everything the report shows, gathered once from the mission folder; HTML and PDF render it."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ground_station.report import drawing, geo, segment, texts
from ground_station.report.codes import code_names
from ground_station.report.folder import (
    Finding,
    FindingsDb,
    Mission,
    Trajectory,
    read_findings,
    read_mission,
    read_trajectory,
)
from ground_station.report.segment import SegmentSummary
from perception.errors import GradingError
from perception.grading import (
    default_mapping,
    default_standard,
    score,
    to_en13508,
    to_pacp,
)

THUMBNAIL_PX = 320
_UNKNOWN_CODE = ("?", "unknown code")
_JPEG_QUALITY = 80


@dataclass(frozen=True)
class Row:
    """One line of the segment table."""

    no: int
    finding: Finding
    name_zh: str
    name_en: str
    score: float | None  # from the table, else from the grading table
    photo_jpeg: bytes | None  # thumbnail, at most THUMBNAIL_PX on its long side
    photo_size: tuple[int, int] | None
    basis: str

    @property
    def clock(self) -> str:
        """Clock position as h:mm (12:00 at the crown)."""
        c = self.finding.clock_h
        if c is None:
            return "-"
        minutes = round((c % 12.0) * 60.0) % 720
        hours = minutes // 60 or 12
        return f"{hours}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Equivalent:
    """PACP and EN 13508-2 counterparts of one CJJ code."""

    code: str
    name_zh: str
    name_en: str
    pacp: tuple[str, ...]
    en13508: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class ReportData:
    """What both renderers need."""

    folder: Path
    generated_utc: datetime
    mission: Mission
    db: FindingsDb
    rows: tuple[Row, ...]
    segment: SegmentSummary | None  # None: not a pipe (CJJ 181 evaluates pipe segments)
    length_m: float
    trajectory: Trajectory | None
    defect_map: drawing.Drawing
    trajectory_map: drawing.Drawing | None
    equivalents: tuple[Equivalent, ...]
    geojson: Mapping[str, Any]
    notes: tuple[str, ...]

    @property
    def asset(self) -> Mapping[str, Any]:
        """The plan's asset."""
        return self.mission.asset

    @property
    def kind(self) -> str:
        """The asset kind whose texts the report uses: pipe, tunnel or shelter."""
        return asset_kind(self.asset)

    @property
    def title(self) -> Pair:
        """The report's title for this kind of asset."""
        return texts.TITLES[self.kind]

    @property
    def findings_title(self) -> Pair:
        """The title of the findings table."""
        return texts.FINDINGS_TABLES[self.kind]

    @property
    def map_note(self) -> Pair:
        """The caption of the defect map."""
        return texts.MAP_NOTES[self.kind]

    @property
    def asset_id(self) -> str:
        """What names the inspected asset (segment, section or shelter), else the mission."""
        return asset_id(self.asset) or self.mission.name or self.folder.name


def asset_kind(asset: Mapping[str, Any]) -> str:
    """The asset's kind when the report knows it; anything else reads as a pipe."""
    kind = str(asset.get("kind", "pipe"))
    return kind if kind in texts.TITLES else "pipe"


def asset_id(asset: Mapping[str, Any]) -> str:
    """The asset's identifier from the plan ('' when it has none)."""
    kind = asset_kind(asset)
    if kind == "tunnel":
        return str(asset.get("section_id") or "")
    if kind == "shelter":
        name, level = asset.get("name") or "", asset.get("level")
        return f"{name} {level}" if name and level else str(name)
    return str(asset.get("segment_id") or "")


def gather(folder: Path, now: datetime | None = None) -> ReportData:
    """Read the folder and work out every figure of the report."""
    mission = read_mission(folder, now)
    db = read_findings(folder)
    trajectory = read_trajectory(folder)
    notes: list[str] = []
    if not db.present:
        notes.append(f"{db.path.name} is missing: no findings were recorded")
    if trajectory is not None and trajectory.truncated:
        notes.append(f"{trajectory.path.name}: the last line was cut short and is left out")

    findings = db.findings
    numbers = {f.id: i + 1 for i, f in enumerate(findings)}
    rows = tuple(_row(folder, numbers[f.id], f, notes) for f in findings)

    asset = mission.asset
    summary: SegmentSummary | None = None
    if asset.get("kind", "pipe") != "pipe":
        notes.append(f"asset kind {asset.get('kind')!r}: CJJ 181-2012 evaluates pipe segments "
                     "only; no segment evaluation")
    elif db.segment is not None:
        summary = segment.from_stored(db.segment, db.path)
    else:
        summary, _ = segment.compute(findings, asset, mission.path)

    length_m = _map_length(asset, findings, mission.distance_done_m)
    geojson, geo_notes = geo.defects_geojson(findings, numbers, mission)
    notes.extend(geo_notes)
    return ReportData(
        folder=folder,
        generated_utc=(now or datetime.now(UTC)).replace(microsecond=0),
        mission=mission,
        db=db,
        rows=rows,
        segment=summary,
        length_m=length_m,
        trajectory=trajectory,
        defect_map=drawing.defect_map(findings, length_m, numbers),
        trajectory_map=drawing.trajectory_map(
            None if trajectory is None else trajectory.xyz, findings, numbers),
        equivalents=_equivalents(findings),
        geojson=geojson,
        notes=tuple(notes),
    )


def _map_length(asset: Mapping[str, Any], findings: tuple[Finding, ...],
                done_m: float | None) -> float:
    """How far the defect map reaches: the pipe's length, the tunnel section's end chainage.

    A tunnel's findings sit at their chainage along the gallery, and a route that returns to
    its entry drives twice the section: the distance driven would stretch the map.
    """
    kind = asset_kind(asset)
    keys = ("from_m", "to_m") if kind == "tunnel" else ("length_m",)
    ends = [float(v) for v in (asset.get(k) for k in keys)
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0]
    if ends:
        return max(ends)
    return max([f.end_m for f in findings] + [done_m or 0.0, 1.0])


def _row(folder: Path, no: int, f: Finding, notes: list[str]) -> Row:
    entry = default_standard().defects.get(f.code)
    value = f.score
    if value is None and f.grade is not None and entry is not None and entry.scored:
        try:
            value = score(f.code, f.grade)
        except GradingError:
            value = None
    jpeg, size = None, None
    if f.photo:
        jpeg, size = _thumbnail(folder, f.photo, f.id, notes)
    basis = f.grade_basis or ""
    if f.source:
        basis = f"[{f.source}] {basis}".strip()
    name_zh, name_en = code_names(f.code) or _UNKNOWN_CODE
    return Row(no, f, name_zh, name_en, value, jpeg, size, basis)


def _thumbnail(folder: Path, relative: str, fid: str, notes: list[str]
               ) -> tuple[bytes | None, tuple[int, int] | None]:
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        notes.append(f"{fid}: photo path {relative!r} leaves the mission folder; not shown")
        return None, None
    try:
        with Image.open(path) as image:
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            rgb = image.convert("RGB")
    except FileNotFoundError:
        notes.append(f"{fid}: photo {relative} is missing")
        return None, None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        notes.append(f"{fid}: photo {relative} cannot be read ({err})")
        return None, None
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue(), rgb.size


def _equivalents(findings: tuple[Finding, ...]) -> tuple[Equivalent, ...]:
    mapping = default_mapping()
    out = []
    for code in dict.fromkeys(f.code for f in findings):
        name_zh, name_en = code_names(code) or _UNKNOWN_CODE
        row = mapping.rows.get(code)
        note = texts.OBSERVATION_NOTE if code in texts.OBSERVATION_CODES else (
            "not in the mapping table")
        out.append(Equivalent(
            code=code,
            name_zh=name_zh,
            name_en=name_en,
            pacp=to_pacp(code) if row else (),
            en13508=to_en13508(code) if row else (),
            note=row.note if row else note,
        ))
    return tuple(out)


# --- content shared by the HTML and the PDF -------------------------------------------------

Pair = tuple[str, str]  # (Chinese, English)


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def info_lines(data: ReportData) -> list[tuple[Pair, str]]:
    """The header table: segment, asset and mission facts."""
    a, m = data.asset, data.mission
    state_zh, state_en = texts.STATES[m.state]
    state = f"{state_zh} {state_en}"
    if m.recorded_state != m.state:
        state += f" (recorded: {m.recorded_state})"
    done = _num(m.distance_done_m, 1)
    left = _num(m.distance_left_m, 1)
    site = str(m.plan.get("site_file") or (f"world:{m.world}" if m.world else "-"))
    lines: list[tuple[Pair, str]] = [
        *asset_lines(a),
        (texts.INFO["direction"], str(m.plan.get("direction", "-"))),
        (texts.INFO["mission"], m.name or "-"),
        (texts.INFO["state"], state),
        (texts.INFO["started"], _time(m.started_utc)),
        (texts.INFO["ended"], _time(m.ended_utc)),
        (texts.INFO["last_update"], _time(m.last_update_utc)),
        (texts.INFO["progress"], f"{done} / {left}"),
        (texts.INFO["site"], site),
        (texts.INFO["detector"], str(m.plan.get("detector", "-"))),
        (texts.INFO["standard"], data.segment.standard if data.segment else "-"),
        (texts.INFO["generated"], _time(data.generated_utc)),
    ]
    return lines


def asset_lines(a: Mapping[str, Any]) -> list[tuple[Pair, str]]:
    """The header lines that describe the asset, by its kind."""
    kind = asset_kind(a)
    if kind == "tunnel":
        return [
            (texts.INFO["section_id"], str(a.get("section_id", "-"))),
            (texts.INFO["gallery"], str(a.get("gallery", "-"))),
            (texts.INFO["chainage"], f"{_num(a.get('from_m'), 1)} - {_num(a.get('to_m'), 1)}"),
            (texts.INFO["clear_section"], _clear_section(a)),
        ]
    if kind == "shelter":
        level = a.get("level")
        all_levels = f"{texts.ALL_LEVELS[0]} {texts.ALL_LEVELS[1]}"
        return [
            (texts.INFO["shelter_name"], str(a.get("name", "-"))),
            (texts.INFO["shelter_level"], all_levels if level is None else str(level)),
        ]
    return [
        (texts.INFO["segment_id"], str(a.get("segment_id", "-"))),
        (texts.INFO["from_to"], f"{a.get('from_manhole', '-')} - {a.get('to_manhole', '-')}"),
        (texts.INFO["dn_mm"], _num(a.get("dn_mm"), 0)),
        (texts.INFO["material"], str(a.get("material", "-"))),
        (texts.INFO["length_m"], _num(a.get("length_m"), 1)),
        (texts.INFO["depth_m"], _num(a.get("depth_m"), 1)),
    ]


def _clear_section(a: Mapping[str, Any]) -> str:
    """'3.20 x 3.50' (width x height), '-' when the plan gives neither."""
    width, height = a.get("width_m"), a.get("height_m")
    if width is None and height is None:
        return "-"
    return f"{_num(width, 2)} x {_num(height, 2)}"


def banner_lines(data: ReportData) -> list[str]:
    """The warning banner (empty for a completed mission with a stored evaluation)."""
    m = data.mission
    lines: list[str] = []
    if m.state in texts.BANNERS:
        zh, en = texts.BANNERS[m.state]
        lines += [zh, en]
        if m.reason:
            lines.append(f"{texts.REASON[0]} {texts.REASON[1]}: {m.reason}")
        if m.writer_lost:
            lines.append(f"{texts.WRITER_LOST[0]}: {texts.WRITER_LOST[1]} "
                         f"(last update {_time(m.last_update_utc)} UTC)")
    if data.segment is not None and data.segment.computed:
        lines += list(texts.COMPUTED)
    return lines


def finding_cells(row: Row) -> list[str]:
    """The text cells of a segment-table row (the photo cell is left to the renderer)."""
    f = row.finding
    grade = "-" if f.grade is None else str(f.grade)
    distance = f"{f.start_m:.2f}" if f.length_m < 0.005 else f"{f.start_m:.2f}-{f.end_m:.2f}"
    basis = row.basis
    if f.status != "confirmed":
        basis = f"[{f.status}] {basis}"
    return [str(row.no), distance, row.clock, f.code, f"{row.name_zh} {row.name_en}", grade,
            _num(row.score, 1), _num(f.length_m, 2), "", basis]


def segment_lines(s: SegmentSummary) -> list[tuple[str, str, str]]:
    """The evaluation table: (label, structural column, functional column)."""
    def level(lt: segment.LevelText | None) -> str:
        return "-" if lt is None else f"{lt.label} {lt.zh} / {lt.en}"

    def name(key: str) -> str:
        return texts.FIGURE_NAMES[key][0]

    f = s.figures
    return [
        ("", f"{texts.STRUCTURAL[0]} {texts.STRUCTURAL[1]}",
         f"{texts.FUNCTIONAL[0]} {texts.FUNCTIONAL[1]}"),
        ("S / Y", f"{name('S')} = {f['S']:.2f}", f"{name('Y')} = {f['Y']:.2f}"),
        ("Smax / Ymax", f"{name('S_max')} = {f['S_max']:.2f}",
         f"{name('Y_max')} = {f['Y_max']:.2f}"),
        ("F / G", f"F = {f['F']:.2f}", f"G = {f['G']:.2f}"),
        (f"{texts.GRADE[0]} {texts.GRADE[1]}", level(s.structural_grade),
         level(s.functional_grade)),
        ("S_M / Y_M", f"S_M = {f['S_M']:.3f}", f"Y_M = {f['Y_M']:.3f}"),
        (f"{texts.DENSITY_TYPE[0]} {texts.DENSITY_TYPE[1]}", level(s.structural_density),
         level(s.functional_density)),
        ("K, E, T", f"K = {f['K']:g}, E = {f['E']:g}, T = {f['T']:g}",
         f"K = {f['K']:g}, E = {f['E']:g}"),
        ("RI / MI", f"RI = {f['RI']:.2f}", f"MI = {f['MI']:.2f}"),
        (f"{texts.REPAIR[0]} / {texts.MAINTENANCE[0]}", level(s.repair), level(s.maintenance)),
        (f"{texts.SCOPE[0]} {texts.SCOPE[1]}",
         " / ".join(texts.REPAIR_SCOPE.get(s.repair_scope or "", ("-", "-"))), ""),
    ]


def unverified_summary(s: SegmentSummary) -> str:
    """'N unverified rows and rules, M of them guessed [G]'."""
    guessed = sum(1 for u in s.unverified if u.endswith("[G]"))
    return (f"{len(s.unverified)} unverified rows and rules, {guessed} of them guessed [G] "
            f"({len(s.unverified)} 项待核实，其中 {guessed} 项为推测)")
