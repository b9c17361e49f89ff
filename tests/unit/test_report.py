"""Mission report (ground_station.report): HTML, PDF and GeoJSON from synthetic mission folders."""

from __future__ import annotations

import base64
import io
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from crawler_perception.conversions import evaluation_to_dict
from ground_station.report import ReportError, build_report, effective_state
from ground_station.report.charset import (
    FONT_LICENCE_PATH,
    FONT_PATH,
    font_characters,
    report_characters,
)
from navigation.site import site_from_truth
from perception.grading import DefectRecord, SiteFactors, evaluate_segment
from sim_worlds.worldgen import WORLDS_DIR
from sim_worlds.worldgen.truth import load_truth

NOW = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
SCHEMA_SQL = """
CREATE TABLE findings(id TEXT PRIMARY KEY, code TEXT, grade INTEGER, score REAL, start_m REAL,
  end_m REAL, clock_h REAL, x REAL, y REAL, z REAL, lat REAL, lon REAL, confidence REAL,
  frames INTEGER, source TEXT, grade_basis TEXT, measured_json TEXT, unverified_json TEXT,
  photo TEXT, status TEXT DEFAULT 'confirmed', stamp_ns INTEGER);
CREATE TABLE segment(id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT);
CREATE TABLE photos(path TEXT, stamp_ns INTEGER, distance_m REAL, kind TEXT);
"""
# id, code, grade, score, start, end, clock, x, y, z, lat, lon, source, basis, measured, photo
FINDINGS: list[tuple[Any, ...]] = [
    ("F001", "PL", 3, 5.0, 12.3, 12.3, 2.5, 12.3, 0.2, -0.3, None, None, "camera",
     "detector: PL (appearance)", {}, "images/F001.jpg"),
    ("F002", "BX", 2, 2.0, 20.0, 23.0, None, 21.5, 0.0, 0.0, None, None, "lidar",
     "lidar: ovality_pct_of_d=9.9", {"ovality_pct_of_d": 9.9}, None),
    ("F003", "CJ", 2, 2.0, 40.0, 42.5, 6.0, 41.2, 0.0, -0.5, 30.5801234, 114.2712345,
     "camera+lidar", "lidar: depth_pct_of_d=25", {"depth_pct_of_d": 25.0}, "images/F003.jpg"),
    ("F004", "ZW", 1, 0.1, 77.7, 77.7, 11.0, 77.7, 0.1, 0.4, None, None, "camera",
     "detector: ZW", {}, "images/F004.jpg"),
]
LENGTH_M, DN_MM = 120.0, 1000


def _records() -> list[DefectRecord]:
    return [DefectRecord(f[1], f[2], f[4], f[5]) for f in FINDINGS]


def _evaluation() -> Any:
    return evaluate_segment(_records(), LENGTH_M, SiteFactors(dn_mm=DN_MM))


def make_folder(root: Path, *, state: str = "completed", last_update: datetime = NOW,
                with_segment: bool = True, reason: str | None = None) -> Path:
    """A mission folder as the mission recorder writes it (docs/reports.md)."""
    folder = root / "mission"
    (folder / "images").mkdir(parents=True)
    mission = {
        "schema": 1, "name": "sewer_dn1000 MH-A/MH-B downstream", "state": state,
        "started_utc": "2024-05-01T08:00:00Z",
        "ended_utc": None if state == "running" else "2024-05-01T08:50:00Z",
        "last_update_utc": last_update.isoformat().replace("+00:00", "Z"),
        "reason": reason,
        "progress": {"distance_done_m": 80.0, "distance_left_m": 40.0, "sim_time_s": 3000.0},
        "plan": {"site_file": "world:sewer_dn1000", "direction": "downstream",
                 "detector": "shipped",
                 "asset": {"kind": "pipe", "segment_id": "MH-A/MH-B", "from_manhole": "MH-A",
                           "to_manhole": "MH-B", "dn_mm": DN_MM,
                           "material": "reinforced concrete", "length_m": LENGTH_M,
                           "depth_m": 4.0}},
        "world": "sewer_dn1000",
        "events": [{"stamp_ns": 1, "kind": "start"}],
    }
    (folder / "mission.yaml").write_text(yaml.safe_dump(mission, sort_keys=False),
                                         encoding="utf-8")
    db = sqlite3.connect(folder / "findings.sqlite")
    db.executescript(SCHEMA_SQL)
    for i, (fid, code, grade, score, start, end, clock, x, y, z, lat, lon, source, basis,
            measured, photo) in enumerate(FINDINGS):
        db.execute(
            "INSERT INTO findings (id, code, grade, score, start_m, end_m, clock_h, x, y, z, "
            "lat, lon, confidence, frames, source, grade_basis, measured_json, "
            "unverified_json, photo, stamp_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (fid, code, grade, score, start, end, clock, x, y, z, lat, lon, 0.8, 9, source,
             basis, json.dumps(measured), json.dumps([f"CJJ 181-2012 defects.{code}.grades."
                                                      f"{grade} [S]"]), photo, 1000 + i))
        if photo:
            Image.new("RGB", (1280, 960), (90 + 40 * i, 80, 60)).save(folder / photo)
            db.execute("INSERT INTO photos VALUES (?, ?, ?, 'finding')", (photo, 1000 + i, start))
    if with_segment:
        db.execute("INSERT INTO segment (id, json) VALUES (1, ?)",
                   (json.dumps(evaluation_to_dict(_evaluation()), ensure_ascii=False),))
    db.commit()
    db.close()
    lines = [f"{t:.1f} {0.8 * t:.3f} 0.0 -0.45 0 0 0 1" for t in range(100)]
    (folder / "trajectory.tum").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _row(html: str, fid: str) -> str:
    match = re.search(rf'<tr id="{fid}".*?</tr>', html, re.S)
    assert match, f"no table row for {fid}"
    return match.group(0)


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = make_folder(tmp_path_factory.mktemp("completed"))
    return folder, build_report(folder, now=NOW)


def test_html_has_every_finding_and_the_segment_figures(completed: tuple[Path, Any]) -> None:
    folder, files = completed
    assert files.html == folder / "report.html" and files.findings == len(FINDINGS)
    assert files.state == "completed" and not files.segment_computed
    html = files.html.read_text(encoding="utf-8")
    for fid, code, grade, _score, start, end, *_ in FINDINGS:
        row = _row(html, fid)
        assert f"<b>{code}</b>" in row
        assert f"{start:.2f}" in row
        assert f">{grade}</span>" in row  # the grade badge
        if end > start:
            assert f"{end:.2f}" in row
    assert "变形" in _row(html, "F002") and "无照片" in _row(html, "F002")  # lidar, no photo
    ev = _evaluation()
    assert f"F = {ev.F:.2f}" in html and f"RI = {ev.RI:.2f}" in html
    assert f"G = {ev.G:.2f}" in html and f"MI = {ev.MI:.2f}" in html
    assert ev.repair.text_zh in html and ev.structural.grade.text_zh in html
    assert "state-banner" not in html  # completed, evaluation stored: nothing to warn about
    assert 'id="unverified"' in html and "[G]" in html
    assert "BAB" in html and "DS*" in html  # EN 13508-2 / PACP equivalents of PL and CJ


def test_html_is_self_contained(completed: tuple[Path, Any]) -> None:
    html = completed[1].html.read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)
    assert "url(http" not in html and "@import" not in html
    assert "data:font/otf;base64," in html
    photos = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)
    assert len(photos) == 3  # F001, F003, F004; F002 (lidar) has none
    with Image.open(io.BytesIO(base64.b64decode(photos[0]))) as image:
        assert max(image.size) <= 320
    assert html.count("<svg") == 2  # defect map and trajectory


def test_geojson_points_in_cgcs2000(completed: tuple[Path, Any]) -> None:
    doc = json.loads(completed[1].geojson.read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection"
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4490"
    features = {f["id"]: f for f in doc["features"]}
    assert list(features) == [f[0] for f in FINDINGS]
    # F001 has no lat/lon in the table: from its site position through the world's SiteFrame
    frame = site_from_truth(load_truth(WORLDS_DIR / "sewer_dn1000.truth.yaml")).frame()
    lat, lon, _ = frame.to_geodetic([12.3, 0.2, -0.3])[0]
    f001 = features["F001"]
    assert f001["geometry"]["type"] == "Point"
    assert f001["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-9)
    assert f001["properties"]["lonlat_from"] == "site_frame"
    # F003's lat/lon come from the table as they are
    f003 = features["F003"]
    assert f003["geometry"]["coordinates"] == pytest.approx([114.2712345, 30.5801234], abs=1e-12)
    assert f003["properties"]["lonlat_from"] == "table"
    props = features["F002"]["properties"]
    assert props["code"] == "BX" and props["grade"] == 2 and props["source"] == "lidar"
    assert props["measured"] == {"ovality_pct_of_d": 9.9} and props["photo"] is None
    assert props["start_m"] == 20.0 and props["end_m"] == 23.0 and props["name_zh"] == "变形"


def test_pdf_embeds_the_font_and_photos(completed: tuple[Path, Any]) -> None:
    data = completed[1].pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert b"/FontFile3" in data or b"/FontFile2" in data
    assert b"NotoSansCJKSC" in data
    assert data.count(b"/Subtype /Image") >= 3
    assert len(data) > 20_000
    assert b"/MediaBox [0 0 595.28 841.89]" in data  # A4


def test_interrupted_folder_is_reported_and_evaluated_from_findings(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, state="running", last_update=NOW - timedelta(minutes=20),
                         with_segment=False, reason="link lost at 80 m")
    files = build_report(folder, now=NOW)
    assert files.state == "interrupted" and files.segment_computed
    html = files.html.read_text(encoding="utf-8")
    banner = re.search(r'<div class="banner" id="state-banner">(.*?)</div>', html, re.S)
    assert banner and "interrupted" in banner.group(1) and "任务中断" in banner.group(1)
    assert "link lost at 80 m" in banner.group(1)
    assert "computed by the report from the findings" in html
    ev = _evaluation()  # the same findings, the plan's DN and default site factors
    assert f"S = {ev.S:.2f}" in html and f"Smax = {ev.S_max:.2f}" in html
    assert f"F = {ev.F:.2f}" in html and f"RI = {ev.RI:.2f}" in html
    assert f"Y = {ev.Y:.2f}" in html and f"G = {ev.G:.2f}" in html
    assert f"S_M = {ev.S_M:.3f}" in html
    assert files.pdf.read_bytes().startswith(b"%PDF-")


def test_aborted_mission_shows_reason(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, state="aborted", reason="gas alarm: CH4 1.20 %vol")
    html = build_report(folder, now=NOW).html.read_text(encoding="utf-8")
    assert 'class="banner" id="state-banner"' in html
    assert "Mission aborted" in html and "gas alarm: CH4 1.20 %vol" in html


def test_effective_state() -> None:
    assert effective_state("running", NOW - timedelta(seconds=5), NOW) == "running"
    assert effective_state("running", NOW - timedelta(seconds=11), NOW) == "interrupted"
    assert effective_state("running", None, NOW) == "interrupted"
    assert effective_state("completed", NOW - timedelta(days=3), NOW) == "completed"


def test_corrupt_sqlite_is_a_one_line_error_and_writes_nothing(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "findings.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ReportError, match=r"findings\.sqlite") as err:
        build_report(folder, now=NOW)
    assert "\n" not in str(err.value)
    assert not any((folder / name).exists()
                   for name in ("report.html", "report.pdf", "defects.geojson"))


def test_failed_rebuild_keeps_the_previous_report(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    files = build_report(folder, now=NOW)
    before = files.html.read_bytes()
    (folder / "mission.yaml").write_text("schema: 1\nstate: [unclosed\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r"mission\.yaml: line \d+: malformed YAML"):
        build_report(folder, now=NOW)
    assert files.html.read_bytes() == before
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.parametrize(("text", "message"), [
    ("- just a list\n", "not a YAML mapping"),
    ("schema: 2\nstate: completed\nplan: {}\n", "schema: expected 1"),
    ("schema: 1\nstate: paused\nplan: {}\n", "state: expected one of"),
    ("schema: 1\nstate: completed\n", "plan: expected a mapping"),
    ("schema: 1\nstate: completed\nplan: {}\nlast_update_utc: yesterday\n",
     "last_update_utc: expected an ISO 8601"),
])
def test_malformed_mission_yaml(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "mission.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ReportError, match=rf"mission\.yaml: {message}"):
        build_report(tmp_path, now=NOW)


def test_not_a_mission_folder(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a mission folder"):
        build_report(tmp_path, now=NOW)


def test_missing_findings_table_and_bad_json_name_the_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    db = sqlite3.connect(folder / "findings.sqlite")
    db.execute("UPDATE findings SET measured_json = '{oops' WHERE id = 'F002'")
    db.commit()
    db.close()
    with pytest.raises(ReportError, match=r"findings\.sqlite: findings row 'F002': measured_json"):
        build_report(folder, now=NOW)
    db = sqlite3.connect(folder / "findings.sqlite")
    db.execute("DROP TABLE findings")
    db.commit()
    db.close()
    with pytest.raises(ReportError, match=r"findings\.sqlite: corrupt: no table 'findings'"):
        build_report(folder, now=NOW)


def test_text_outside_the_font_does_not_break_the_pdf(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, state="aborted", reason="井盖被压住 (manhole blocked) 𠀀")
    files = build_report(folder, now=NOW)
    assert "井盖被压住" in files.html.read_text(encoding="utf-8")  # the HTML keeps it verbatim
    assert files.pdf.read_bytes().startswith(b"%PDF-")


def test_shipped_font_covers_the_fixed_texts() -> None:
    missing = report_characters() - font_characters()
    assert not missing, ("rebuild the font subset (python -m ground_station.report.subset_font):"
                         f" missing {''.join(sorted(missing))!r}")
    assert FONT_PATH.stat().st_size < 1_000_000
    assert "SIL OPEN FONT LICENSE" in FONT_LICENCE_PATH.read_text(encoding="utf-8")


def test_stored_segment_with_bare_figures_gets_its_labels(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, with_segment=False)
    ev = _evaluation()
    bare = {"S": ev.S, "Smax": ev.S_max, "F": ev.F, "S_M": ev.S_M, "Y": ev.Y, "Ymax": ev.Y_max,
            "G": ev.G, "Y_M": ev.Y_M, "K": ev.K, "E": ev.E, "T": ev.T, "RI": ev.RI, "MI": ev.MI,
            "unverified": list(ev.unverified)}
    db = sqlite3.connect(folder / "findings.sqlite")
    db.execute("INSERT INTO segment (id, json) VALUES (1, ?)", (json.dumps(bare),))
    db.commit()
    db.close()
    files = build_report(folder, now=NOW)
    html = files.html.read_text(encoding="utf-8")
    assert not files.segment_computed
    assert f"Smax = {ev.S_max:.2f}" in html
    assert ev.structural.grade.text_zh in html and ev.repair.text_zh in html
    assert ev.maintenance.text_zh in html


def _with_asset(folder: Path, asset: dict[str, Any], *, water: bool = True) -> Path:
    """The folder's plan turned to another kind of asset (and a JS finding added)."""
    path = folder / "mission.yaml"
    mission = yaml.safe_load(path.read_text(encoding="utf-8"))
    mission["plan"]["asset"] = asset
    mission["progress"]["distance_done_m"] = 240.0  # driven there and back
    path.write_text(yaml.safe_dump(mission, sort_keys=False), encoding="utf-8")
    db = sqlite3.connect(folder / "findings.sqlite")
    db.execute("DELETE FROM segment")
    if water:
        db.execute("INSERT INTO findings (id, code, grade, score, start_m, end_m, clock_h, "
                   "source, grade_basis) VALUES ('F005', 'JS', 1, NULL, 60.0, 62.0, 6.0, "
                   "'camera', 'standing water (积水) recorded, not scored')")
    db.commit()
    db.close()
    return folder


TUNNEL = {"kind": "tunnel", "section_id": "T-main-01", "gallery": "main", "from_m": 0.0,
          "to_m": 150.0, "width_m": 3.2, "height_m": 3.5}
SHELTER = {"kind": "shelter", "name": "Civic shelter 3", "level": "B1"}


@pytest.fixture(scope="module")
def tunnel(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    folder = _with_asset(make_folder(tmp_path_factory.mktemp("tunnel")), TUNNEL)
    files = build_report(folder, now=NOW)
    return files.html.read_text(encoding="utf-8"), files


def test_tunnel_report_has_its_title_header_table_and_caption(tunnel: tuple[str, Any]) -> None:
    html, files = tunnel
    assert "综合管廊巡检报告" in html and "Utility tunnel inspection report" in html
    assert "<title>综合管廊巡检报告 T-main-01</title>" in html
    assert "排水管道" not in html and "Sewer inspection" not in html
    for label in ("区段编号", "Section", "舱室", "Gallery", "起止里程", "Chainage from - to",
                  "断面", "Clear section width x height"):
        assert label in html
    assert "0.0 - 150.0" in html and "3.20 x 3.50" in html
    for pipe_label in ("管段编号", "起止井号", "管径", "管材", "埋深"):
        assert pipe_label not in html
    table = re.search(r'<section id="segment-table"><h2>(.*?)</h2>', html, re.S)
    assert table and "病害记录表" in table.group(1) and "Defect record" in table.group(1)
    assert "JS standing water recorded, not scored" in table.group(1)
    assert "管段状况评估表" not in html and "Segment condition assessment" not in html
    assert "Unrolled gallery: distance along the gallery (m) across" in html
    assert "3 h: right wall, 6 h: floor, 12 h: ceiling" in html and "管廊展开图" in html
    assert "Unrolled pipe" not in html
    water = _row(html, "F005")
    assert "积水" in water and "standing water" in water and "unknown code" not in water
    assert 'id="evaluation"' not in html and not files.segment_computed
    assert any("no segment evaluation" in note for note in files.notes)
    defect_map = html[html.index("<svg"):html.index("</svg>")]
    assert ">140</text>" in defect_map  # ticks every 20 m up to the section's end (150 m) ...
    assert ">200</text>" not in defect_map  # ... not to the 240 m driven there and back
    doc = json.loads(files.geojson.read_text(encoding="utf-8"))
    props = {f["id"]: f["properties"] for f in doc["features"]}
    assert props["F005"]["name_zh"] == "积水" and props["F005"]["name_en"] == "standing water"
    assert files.pdf.read_bytes().startswith(b"%PDF-")


def test_tunnel_without_a_section_size(tmp_path: Path) -> None:
    asset = {k: v for k, v in TUNNEL.items() if k not in ("width_m", "height_m")}
    folder = _with_asset(make_folder(tmp_path), asset, water=False)
    html = build_report(folder, now=NOW).html.read_text(encoding="utf-8")
    row = re.search(r"<tr><td>断面 .*?</tr>", html, re.S)
    assert row and "<td>-</td>" in row.group(0)


def test_shelter_report_has_its_title_and_header(tmp_path: Path) -> None:
    folder = _with_asset(make_folder(tmp_path), SHELTER)
    files = build_report(folder, now=NOW)
    html = files.html.read_text(encoding="utf-8")
    assert "人防工程巡检报告" in html and "Civil-defence shelter inspection report" in html
    assert "<title>人防工程巡检报告 Civic shelter 3 B1</title>" in html
    assert "排水管道" not in html and "管段编号" not in html
    for label in ("工程名称", "Shelter", "楼层", "Level", "Civic shelter 3", "B1"):
        assert label in html
    assert "病害记录表" in html and "管段状况评估表" not in html
    assert "积水" in _row(html, "F005")
    assert "Unrolled route" in html and "Unrolled pipe" not in html
    assert files.pdf.read_bytes().startswith(b"%PDF-")


def test_pipe_report_keeps_the_sewer_texts(completed: tuple[Path, Any]) -> None:
    html = completed[1].html.read_text(encoding="utf-8")
    assert "<title>排水管道检测与评估报告 MH-A/MH-B</title>" in html
    assert ('<h1>排水管道检测与评估报告 <span class="en">Sewer inspection and evaluation report'
            "</span></h1>") in html
    assert "管段状况评估表" in html and "Segment condition assessment (CJJ 181-2012)" in html
    for label in ("管段编号", "起止井号", "管径 (mm)", "管材", "管段长度 (m)", "埋深 (m)"):
        assert label in html
    assert "Unrolled pipe: distance along the pipe (m) across, clock position down" in html
    assert "综合管廊" not in html and "病害记录表" not in html and "区段编号" not in html
