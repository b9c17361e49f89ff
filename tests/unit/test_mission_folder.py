"""Mission folder: the format as written, the reader, and what a kill -9 leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from navigation.bag_io import SensorRole, bag_summary, read_bag
from navigation.mission import MissionError, MissionPlan, load_plan
from navigation.mission.folder import (
    FINDINGS_DB,
    MissionFolder,
    recording_files,
)
from navigation.records import LidarScan3D, OdometrySample
from perception.findings import Finding
from perception.grading import DefectRecord, SiteFactors, evaluate_segment
from perception.mapper import GradedFinding

NS = 1_000_000_000
PLAN_PATH = Path(__file__).resolve().parents[2] / "navigation/mission/examples/sewer_dn1000.yaml"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan() -> MissionPlan:
    """The sample plan (classical detector, so no model file is needed)."""
    return load_plan(PLAN_PATH).model_copy(update={"detector": "classical"})


def finding(number: int, start_m: float) -> Finding:
    """A camera finding."""
    return Finding(id=f"F{number:03d}", code="PL", start_m=start_m, end_m=start_m + 0.4,
                   clock_h=3.0, position_m=(start_m, 0.4, -3.6), confidence=0.8, frames=6,
                   first_stamp_ns=1, last_stamp_ns=2 * NS, best_stamp_ns=NS,
                   best_box_xyxy_px=(1.0, 2.0, 30.0, 40.0), continuous=False)


def cloud(stamp_ns: int) -> LidarScan3D:
    """A small scan."""
    return LidarScan3D(stamp_ns, np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))


def test_writes_the_format_and_reads_it_back(tmp_path: Path, plan: MissionPlan) -> None:
    """mission.yaml, recording, trajectory, findings, photos, segment: all read back typed."""
    folder = MissionFolder.create(tmp_path / "m", plan, world="sewer_dn1000", rotate_s=0.2)
    record = MissionFolder.read(tmp_path / "m")
    assert record.state == "running" and record.recorded_state == "running"
    for i in range(6):
        stamp = i * NS // 2
        T = np.eye(4)
        T[0, 3] = 0.1 * i
        folder.add_pose(stamp, T)
        folder.recording.pose(stamp, T, np.eye(6) * 0.01)
        folder.recording.odometry(OdometrySample(stamp, T))
        folder.recording.cloud(cloud(stamp))
        folder.recording.string("/mission/status", {"state": "driving", "i": i}, stamp)
        folder.recording.image(stamp, b"\xff\xd8 not really a jpeg")
        folder.write_status(0.1 * i, 10.0 - 0.1 * i, stamp / NS,
                            events=[{"stamp_ns": stamp, "kind": "state", "state": "driving"}]
                            if i == 0 else [])
        time.sleep(0.1)
    folder.add_finding(finding(1, 2.0), 30.59, 114.3, stamp_ns=NS)
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    photo = folder.add_photo("F001.jpg", image, NS, 2.0, "finding", finding_id="F001")
    graded = GradedFinding(finding(1, 2.05), 2, 2.0, "extent heuristic: test", {"x": 1.0},
                           ("row [heuristic]",))
    folder.add_finding(graded, 30.59, 114.3)  # final grade replaces, keeps the photo
    folder.add_photo("photo_0012.5m.jpg", image, 2 * NS, 12.5, "photograph_at")
    evaluation = evaluate_segment([DefectRecord("PL", 2, 2.05, 2.45)], 120.0,
                                  SiteFactors(dn_mm=1000.0))
    folder.set_segment(evaluation)
    # Confirmed on the way, rejected by the final grading: kept, not counted
    folder.add_finding(finding(2, 7.0), stamp_ns=NS)
    folder.set_finding_status("F002", "rejected")
    folder.close("completed", "end of the route reached; back at the entry")

    record = MissionFolder.read(tmp_path / "m")
    assert record.state == "completed" and record.ended_utc is not None
    assert record.reason == "end of the route reached; back at the entry"
    assert record.world == "sewer_dn1000" and record.name == plan.name
    assert record.mission_plan() == plan
    assert record.progress.distance_done_m == pytest.approx(0.5)
    assert record.events[0] == {"stamp_ns": 0, "kind": "state", "state": "driving"}
    row, rejected = record.findings
    assert (rejected.id, rejected.status) == ("F002", "rejected")
    assert (row.id, row.code, row.grade, row.start_m, row.photo) == ("F001", "PL", 2, 2.05,
                                                                     photo)
    assert row.unverified == ["row [heuristic]"] and row.measured == {"x": 1.0}
    assert (row.lat, row.lon, row.status) == (30.59, 114.3, "confirmed")
    assert [p.path for p in record.photos] == ["images/F001.jpg", "images/photo_0012.5m.jpg"]
    assert (tmp_path / "m/images/photo_0012.5m.jpg").stat().st_size > 100
    assert record.segment is not None
    for key in ("S", "Smax", "F", "S_M", "Y", "Ymax", "G", "Y_M", "K", "E", "T", "RI", "MI",
                "unverified", "structural_grade"):
        assert key in record.segment
    # One merged recording with every topic
    assert record.recordings == (tmp_path / "m/recording.mcap",)
    assert not list((tmp_path / "m").glob("recording_*.mcap"))
    poses = list(read_bag(record.recordings[0], roles=[SensorRole.CLOUD_3D,
                                                       SensorRole.ODOMETRY]))
    assert len(poses) == 12
    topics = {t.name: t.message_count for t in bag_summary(record.recordings[0]).topics}
    assert topics == {"/localization/pose": 6, "/odom/wheel": 6, "/points": 6,
                      "/mission/status": 6, "/camera/image_raw/compressed": 6}
    lines = (tmp_path / "m/trajectory.tum").read_text().splitlines()
    assert len(lines) == 6 and lines[1].startswith("0.500000000 0.100000 ")
    assert not (tmp_path / "m/mission.lock").exists()
    document = yaml.safe_load((tmp_path / "m/mission.yaml").read_text())
    assert list(document)[:10] == ["schema", "name", "state", "started_utc", "ended_utc",
                                   "last_update_utc", "reason", "progress", "plan", "world"]


def test_running_mission_is_live_while_written_and_refuses_a_second_writer(
        tmp_path: Path, plan: MissionPlan) -> None:
    """The writer's lock says running; a second writer on the folder is refused."""
    folder = MissionFolder.create(tmp_path / "m", plan)
    assert MissionFolder.read(tmp_path / "m").state == "running"
    with pytest.raises(MissionError, match="holds a mission already"):
        MissionFolder.create(tmp_path / "m", plan)
    folder.close("aborted", "gas")
    assert MissionFolder.read(tmp_path / "m").state == "aborted"
    with pytest.raises(MissionError, match="no mission"):
        MissionFolder.read(tmp_path / "nothing")


_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from navigation.mission import load_plan
    from navigation.mission.folder import MissionFolder
    from navigation.records import LidarScan3D, OdometrySample
    from perception.findings import Finding
    plan = load_plan(sys.argv[1]).model_copy(update={"detector": "classical"})
    folder = MissionFolder.create(sys.argv[2], plan, world="sewer_dn1000")
    start = time.monotonic()
    i = 0
    while True:
        stamp = i * 50_000_000
        T = np.eye(4); T[0, 3] = 0.01 * i
        folder.add_pose(stamp, T)
        folder.recording.odometry(OdometrySample(stamp, T))
        folder.recording.cloud(LidarScan3D(stamp, np.ones((20, 3), dtype=np.float32)))
        folder.write_status(0.01 * i, 100.0, stamp / 1e9, events=[
            {"stamp_ns": stamp, "kind": "state", "state": "driving"}] if i == 0 else [])
        if i == 10:
            folder.add_finding(Finding("F001", "PL", 1.0, 1.2, 3.0, (1.0, 0.4, -3.6), 0.8, 5,
                                       0, stamp, stamp, (0.0, 0.0, 1.0, 1.0), False))
            print("finding", flush=True)
        print(stamp, flush=True)
        i += 1
        time.sleep(0.05)
""")


def test_kill_9_leaves_a_readable_interrupted_mission(tmp_path: Path) -> None:
    """SIGKILL mid-mission: reader says interrupted, the finding is there, the recording
    reads up to about a second before the kill, the trajectory too."""
    out = tmp_path / "m"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(PLAN_PATH), str(out)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout is not None
    written: list[int] = []
    saw_finding = False
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        if line.startswith("finding"):
            saw_finding = True
            continue
        written.append(int(line))
        if len(written) >= 60:  # ~3 s of writing (and the imports before)
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert saw_finding and len(written) >= 60
    last_ns = written[-1]

    record = MissionFolder.read(out)
    assert record.recorded_state == "running"
    assert record.state == "interrupted"
    assert "without closing" in str(record.reason)
    assert [f.id for f in record.findings] == ["F001"]
    assert record.events and record.events[0]["kind"] == "state"
    files = recording_files(out)
    assert files and files == list(record.recordings)
    stamps = [r.stamp_ns for path in files for r in read_bag(path)]
    assert stamps == sorted(stamps)
    # Written at 20 Hz of stamps (50 ms) per ~50+ ms of wall time: 1 s of wall time is at
    # most ~20 stamps; allow the last segment (1 s) plus scheduling slack.
    assert max(stamps) >= last_ns - 1_500_000_000
    assert len({r.stamp_ns for path in files for r in read_bag(path)}) >= len(written) - 30
    tum = (out / "trajectory.tum").read_text().splitlines()
    assert len(tum) >= len(written) - 30
    assert (out / FINDINGS_DB).is_file()
    # ... and `crawler mission report` on it reports everything found so far
    report = subprocess.run([sys.executable, "-m", "crawler", "mission", "report", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert report.returncode == 0, report.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "interrupted" in html and "F001" in html
    assert json.loads((out / "defects.geojson").read_text(encoding="utf-8"))["features"]
