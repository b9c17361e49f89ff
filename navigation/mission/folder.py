"""The mission folder: everything a mission leaves behind, written as it goes, and its reader.

A mission writes one folder, incrementally, so that a ``kill -9`` at any moment leaves a
consistent, reviewable record::

    mission.yaml          the mission's state, progress, the plan as run and its events
    mission.lock          held (flock) while the writing process lives; removed at close
    recording_000.mcap    the robot's topics, one closed MCAP file per ``rotate_s`` (1 s) of
    recording_001.mcap    wall time: a crash loses at most the last segment; on a clean close
    ...                   the segments are merged into recording.mcap (see below)
    recording.mcap
    trajectory.tum        localized base_link poses, appended and flushed every second
    findings.sqlite       findings, segment evaluation and photos (WAL, one commit each)
    images/F001.jpg       the best view of each finding; photo_0012.5m.jpg: action photos
    map.pgm, map.yaml     occupancy map (ROS map_server) at the end, when a grid is given
    cloud.ply             the mapped point cloud at the end, when given (needs Open3D)

``mission.yaml`` (``schema: 1``)::

    {schema, name, state: running|completed|interrupted|aborted, started_utc,
     ended_utc|null, last_update_utc, reason|null,
     progress: {distance_done_m, distance_left_m, sim_time_s},
     plan: <the plan as run (dump_plan)>, world: <name|null>, pid,
     recording: {files: [...], rotate_s}, events: [{stamp_ns, kind, ...}, ...]}

It is rewritten atomically (a temporary file, then ``os.replace``) at every state change and
otherwise at most once per second; a heartbeat thread keeps ``last_update_utc`` fresh while
the process lives. ``MissionFolder.read`` reports a folder whose ``state`` is ``running``
but whose writer is gone (``mission.lock`` not held, or no update for ``STALE_AFTER_S``) as
``interrupted``.

Recording topics (``MissionFolder.recording``): ``/odom/wheel`` (nav_msgs/Odometry),
``/imu`` (sensor_msgs/Imu), ``/localization/pose`` (geometry_msgs/PoseWithCovarianceStamped,
site frame ``map``), ``/points`` (sensor_msgs/PointCloud2, thinned by the caller),
``/camera/image_raw/compressed`` (sensor_msgs/CompressedImage, JPEG), ``/defects/findings``
and ``/mission/status`` (std_msgs/String, JSON). Why segments: ``BagWriter`` (rosbags)
keeps a file's chunk in memory and writes the summary and footer only on close, and the
reader needs the footer, so an unclosed MCAP file is unreadable. Each segment is a complete
MCAP file (written aside, renamed into place when closed); ``recording_files`` lists them
in order (sort by the number: ``recording_1000.mcap`` follows ``recording_999.mcap``).

``findings.sqlite`` tables: ``findings`` (one row per finding, committed as soon as it is
confirmed; final grades replace provisional ones at the end), ``segment`` (one row, the
CJJ 181 segment evaluation as JSON) and ``photos``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.stores.ros2_jazzy import (
    builtin_interfaces__msg__Time as TimeMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__Point as PointMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__Pose as PoseMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__PoseWithCovariance as PoseWithCovarianceMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__PoseWithCovarianceStamped as PoseWithCovarianceStampedMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__Quaternion as QuaternionMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    sensor_msgs__msg__CompressedImage as CompressedImageMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    std_msgs__msg__Header as HeaderMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    std_msgs__msg__String as StringMsg,
)

from navigation.bag_io import (
    BagError,
    BagWriter,
    ImuReading,
    quaternion_from_rotation,
)
from navigation.mission.errors import MissionError
from navigation.mission.plan import MissionPlan, dump_plan
from navigation.records import LidarScan3D, OdometrySample

FloatArray = NDArray[np.float64]
SCHEMA = 1
STATES = ("running", "completed", "interrupted", "aborted")
STALE_AFTER_S = 10.0
"""A running mission whose mission.yaml was not updated for this long is interrupted."""
ROTATE_S = 1.0
STATUS_PERIOD_S = 1.0
MISSION_YAML = "mission.yaml"
LOCK_FILE = "mission.lock"
RECORDING = "recording.mcap"
TRAJECTORY = "trajectory.tum"
FINDINGS_DB = "findings.sqlite"
IMAGES = "images"
_SEGMENT = re.compile(r"^recording_(\d+)\.mcap$")
_NS = 1_000_000_000
_TYPESTORE = get_typestore(Stores.ROS2_JAZZY)

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY, code TEXT, grade INTEGER, score REAL, start_m REAL, end_m REAL,
    clock_h REAL, x REAL, y REAL, z REAL, lat REAL, lon REAL, confidence REAL,
    frames INTEGER, source TEXT, grade_basis TEXT, measured_json TEXT, unverified_json TEXT,
    photo TEXT, status TEXT DEFAULT 'confirmed', stamp_ns INTEGER);
CREATE TABLE IF NOT EXISTS segment (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT);
CREATE TABLE IF NOT EXISTS photos (path TEXT, stamp_ns INTEGER, distance_m REAL, kind TEXT);
"""
_FINDING_COLUMNS = ("id", "code", "grade", "score", "start_m", "end_m", "clock_h", "x", "y",
                    "z", "lat", "lon", "confidence", "frames", "source", "grade_basis",
                    "measured_json", "unverified_json", "photo", "status", "stamp_ns")


def utc_now() -> str:
    """The current time, ISO 8601 UTC with milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_utc(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- typed records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingRow:
    """One row of ``findings``."""

    id: str
    code: str
    grade: int | None
    score: float | None
    start_m: float
    end_m: float
    clock_h: float | None
    x: float | None
    y: float | None
    z: float | None
    lat: float | None
    lon: float | None
    confidence: float | None
    frames: int | None
    source: str | None
    grade_basis: str | None
    measured: dict[str, float]
    unverified: list[str]
    photo: str | None
    status: str
    stamp_ns: int | None


@dataclass(frozen=True)
class PhotoRow:
    """One row of ``photos`` (``path`` relative to the mission folder)."""

    path: str
    stamp_ns: int
    distance_m: float
    kind: str


@dataclass(frozen=True)
class MissionProgress:
    """How far the mission got."""

    distance_done_m: float = 0.0
    distance_left_m: float = 0.0
    sim_time_s: float | None = None


@dataclass(frozen=True)
class MissionRecord:
    """A mission folder as read back (``MissionFolder.read``)."""

    path: Path
    schema: int
    name: str
    state: str
    """running, completed, interrupted or aborted (running with its writer gone: interrupted)."""
    recorded_state: str
    """The state mission.yaml says (``running`` for an interrupted mission)."""
    started_utc: str | None
    ended_utc: str | None
    last_update_utc: str | None
    reason: str | None
    progress: MissionProgress
    plan: dict[str, Any]
    world: str | None
    events: tuple[dict[str, Any], ...]
    findings: tuple[FindingRow, ...]
    segment: dict[str, Any] | None
    photos: tuple[PhotoRow, ...]
    recordings: tuple[Path, ...]
    """The MCAP files in order: recording.mcap, or the segments of an unfinished mission."""
    trajectory: Path | None
    map_yaml: Path | None
    cloud: Path | None

    def mission_plan(self) -> MissionPlan:
        """The plan as run, validated (no site checks)."""
        return MissionPlan.model_validate(self.plan)


# --- the recording -------------------------------------------------------------------------


class MissionBagWriter(BagWriter):
    """``BagWriter`` plus the mission's own message types."""

    def __enter__(self) -> MissionBagWriter:
        return self

    def write_string(self, topic: str, text: str, stamp_ns: int) -> None:
        """``std_msgs/String`` (JSON documents: findings, mission status)."""
        self._write(topic, StringMsg(data=text), stamp_ns, None)

    def write_compressed_image(self, stamp_ns: int, jpeg: bytes,
                               topic: str = "/camera/image_raw/compressed",
                               frame_id: str = "camera_link") -> None:
        """``sensor_msgs/CompressedImage`` (JPEG)."""
        message = CompressedImageMsg(header=_header(stamp_ns, frame_id), format="jpeg",
                                     data=np.frombuffer(jpeg, dtype=np.uint8))
        self._write(topic, message, stamp_ns, None)

    def write_pose(self, stamp_ns: int, T_map_base: FloatArray, covariance: FloatArray,
                   topic: str = "/localization/pose", frame_id: str = "map") -> None:
        """``geometry_msgs/PoseWithCovarianceStamped`` (6x6 covariance)."""
        x, y, z = (float(v) for v in T_map_base[:3, 3])
        qx, qy, qz, qw = quaternion_from_rotation(np.asarray(T_map_base[:3, :3],
                                                             dtype=np.float64))
        message = PoseWithCovarianceStampedMsg(
            header=_header(stamp_ns, frame_id),
            pose=PoseWithCovarianceMsg(
                pose=PoseMsg(position=PointMsg(x=x, y=y, z=z),
                             orientation=QuaternionMsg(x=qx, y=qy, z=qz, w=qw)),
                covariance=np.asarray(covariance, dtype=np.float64).reshape(36)))
        self._write(topic, message, stamp_ns, None)

    def write_message(self, topic: str, message: Any, stamp_ns: int) -> None:
        """Any typed message of the Jazzy store (merging segments)."""
        self._write(topic, message, stamp_ns, None)


def _header(stamp_ns: int, frame_id: str) -> HeaderMsg:
    stamp_ns = max(stamp_ns, 0)
    return HeaderMsg(stamp=TimeMsg(sec=stamp_ns // _NS, nanosec=stamp_ns % _NS),
                     frame_id=frame_id)


class SegmentedRecording:
    """MCAP segments ``recording_NNN.mcap``, each closed ``rotate_s`` after it was opened.

    Thread-safe: the mission loop writes, the folder's heartbeat rotates.
    """

    def __init__(self, folder: Path, rotate_s: float = ROTATE_S, compress: bool = True) -> None:
        self.folder = folder
        self.rotate_s = rotate_s
        self.compress = compress
        self.lock = threading.RLock()
        self._writer: MissionBagWriter | None = None
        self._opened = 0.0
        self._index = 0
        self.files: list[Path] = []
        self.counts: dict[str, int] = {}

    def writer(self) -> MissionBagWriter:
        """The open segment (opened now if none is)."""
        with self.lock:
            if self._writer is None:
                path = self.folder / f"recording_{self._index:03d}.mcap"
                self._index += 1
                self._writer = MissionBagWriter(path, compress=self.compress, overwrite=True)
                self._opened = time.monotonic()
            return self._writer

    def rotate_if_due(self) -> None:
        """Close the open segment if it is ``rotate_s`` old."""
        with self.lock:
            if self._writer is not None and time.monotonic() - self._opened >= self.rotate_s:
                self._close_segment()

    def _close_segment(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if writer.message_count == 0:
            writer.abort()
            self._index -= 1
            return
        for topic, count in writer.counts.items():
            self.counts[topic] = self.counts.get(topic, 0) + count
        writer.close()
        self.files.append(writer.path)

    def close(self) -> None:
        """Close the open segment."""
        with self.lock:
            self._close_segment()

    # Writers (each rotates when due)

    def odometry(self, sample: OdometrySample, linear_mps: float = 0.0,
                 angular_radps: float = 0.0) -> None:
        """``/odom/wheel``."""
        with self.lock:
            self.writer().write_odometry(sample, linear_mps=linear_mps,
                                         angular_radps=angular_radps)
            self.rotate_if_due()

    def imu(self, reading: ImuReading) -> None:
        """``/imu``."""
        with self.lock:
            self.writer().write_imu(reading)
            self.rotate_if_due()

    def pose(self, stamp_ns: int, T_map_base: FloatArray, covariance: FloatArray) -> None:
        """``/localization/pose``."""
        with self.lock:
            self.writer().write_pose(stamp_ns, T_map_base, covariance)
            self.rotate_if_due()

    def cloud(self, scan: LidarScan3D) -> None:
        """``/points``."""
        with self.lock:
            self.writer().write_cloud(scan)
            self.rotate_if_due()

    def image(self, stamp_ns: int, jpeg: bytes) -> None:
        """``/camera/image_raw/compressed``."""
        with self.lock:
            self.writer().write_compressed_image(stamp_ns, jpeg)
            self.rotate_if_due()

    def string(self, topic: str, document: Mapping[str, Any] | str, stamp_ns: int) -> None:
        """A JSON document as ``std_msgs/String``."""
        text = document if isinstance(document, str) else json.dumps(document,
                                                                      default=_json_default)
        with self.lock:
            self.writer().write_string(topic, text, stamp_ns)
            self.rotate_if_due()


def recording_files(folder: str | Path) -> list[Path]:
    """The mission's MCAP files in order: ``recording.mcap`` if the mission closed, else its
    segments sorted by number."""
    folder = Path(folder)
    if (folder / RECORDING).is_file():
        return [folder / RECORDING]
    segments = [(int(m.group(1)), p) for p in folder.glob("recording_*.mcap")
                if (m := _SEGMENT.match(p.name))]
    return [p for _, p in sorted(segments)]


def merge_recordings(segments: Sequence[Path], target: Path) -> int:
    """Write the segments' messages, in order, into one MCAP file; the message count."""
    count = 0
    with MissionBagWriter(target, overwrite=True) as writer:
        for segment in segments:
            with AnyReader([segment], default_typestore=_TYPESTORE) as reader:
                for connection, log_ns, raw in reader.messages():
                    message = reader.deserialize(raw, connection.msgtype)
                    writer.write_message(connection.topic, message, log_ns)
                    count += 1
    return count


# --- the folder ----------------------------------------------------------------------------


@dataclass
class _StatusDoc:
    state: str = "running"
    reason: str | None = None
    progress: MissionProgress = field(default_factory=MissionProgress)
    ended_utc: str | None = None


class MissionFolder:
    """Writes one mission folder as the mission runs (see the module docstring)."""

    def __init__(self, path: Path, plan: MissionPlan, world: str | None, rotate_s: float,
                 status_period_s: float, heartbeat: bool) -> None:
        self.path = path
        self.plan = plan
        self.world = world
        self.status_period_s = status_period_s
        self.started_utc = utc_now()
        self._plan_doc = yaml.safe_load(dump_plan(plan))
        self._doc = _StatusDoc()
        self._events: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._last_write = 0.0
        self._closed = False
        (path / IMAGES).mkdir(parents=True, exist_ok=True)
        # The writer's lock: held while this process lives
        self._lock_file = (path / LOCK_FILE).open("w")  # held open: the lock lives with it
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self._lock_file.close()
            raise MissionError(f"{path}: another process writes this mission") from err
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()
        self.recording = SegmentedRecording(path, rotate_s)
        self._trajectory = (path / TRAJECTORY).open("a", encoding="ascii")
        self._trajectory_pending: list[str] = []
        self._trajectory_flushed = time.monotonic()
        self._db = sqlite3.connect(path / FINDINGS_DB, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA_SQL)
        self._db.commit()
        self._write_yaml()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if heartbeat:
            self._thread = threading.Thread(target=self._heartbeat, name="mission-folder",
                                            daemon=True)
            self._thread.start()

    @classmethod
    def create(cls, path: str | Path, plan: MissionPlan, *, world: str | None = None,
               rotate_s: float = ROTATE_S, status_period_s: float = STATUS_PERIOD_S,
               heartbeat: bool = True) -> MissionFolder:
        """Start a mission folder at ``path`` (created; it must not hold a mission yet)."""
        folder = Path(path)
        if (folder / MISSION_YAML).exists():
            raise MissionError(f"{folder}: holds a mission already")
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, plan, world, rotate_s, status_period_s, heartbeat)

    # --- status and events -------------------------------------------------------------------

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Append events (``{stamp_ns, kind, ...}``); a ``state`` event rewrites mission.yaml."""
        changed = False
        with self._lock:
            for event in events:
                record = dict(event)
                if "stamp_ns" not in record or "kind" not in record:
                    raise ValueError(f"an event needs stamp_ns and kind: {record}")
                self._events.append(record)
                changed = changed or record["kind"] == "state"
            if changed:
                self._write_yaml()

    def write_status(self, distance_done_m: float, distance_left_m: float,
                     sim_time_s: float | None = None,
                     events: Iterable[Mapping[str, Any]] = (), force: bool = False) -> bool:
        """Record progress (and events); mission.yaml is rewritten if a second has passed,
        at a state change, or when ``force``d. Returns whether it was rewritten."""
        with self._lock:
            self._doc.progress = MissionProgress(round(distance_done_m, 3),
                                                 round(distance_left_m, 3),
                                                 None if sim_time_s is None
                                                 else round(sim_time_s, 3))
            before = len(self._events)
            self.add_events(events)
            state_changed = any(e.get("kind") == "state" for e in self._events[before:])
            if state_changed:
                return True
            if force or time.monotonic() - self._last_write >= self.status_period_s:
                self._write_yaml()
                return True
            return False

    def _write_yaml(self) -> None:
        with self._lock:
            doc = self._doc
            document = {
                "schema": SCHEMA, "name": self.plan.name, "state": doc.state,
                "started_utc": self.started_utc, "ended_utc": doc.ended_utc,
                "last_update_utc": utc_now(), "reason": doc.reason,
                "progress": {"distance_done_m": doc.progress.distance_done_m,
                             "distance_left_m": doc.progress.distance_left_m,
                             "sim_time_s": doc.progress.sim_time_s},
                "plan": self._plan_doc, "world": self.world, "pid": os.getpid(),
                "recording": {"files": [p.name for p in self.recording.files],
                              "rotate_s": self.recording.rotate_s},
                "events": self._events,
            }
            text = yaml.safe_dump(_plain(document), sort_keys=False, allow_unicode=True,
                                  width=100)
            _write_atomically(self.path / MISSION_YAML, text.encode("utf-8"))
            self._last_write = time.monotonic()

    def _heartbeat(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.recording.rotate_if_due()
                self._flush_trajectory(force=False)
                with self._lock:
                    if time.monotonic() - self._last_write >= self.status_period_s:
                        self._write_yaml()
            except (OSError, BagError, ValueError):  # pragma: no cover - disk full etc.
                continue

    # --- trajectory --------------------------------------------------------------------------

    def add_pose(self, stamp_ns: int, T_site_base: FloatArray) -> None:
        """Append a localized pose to trajectory.tum (flushed every second)."""
        T = np.asarray(T_site_base, dtype=np.float64)
        x, y, z = (float(v) for v in T[:3, 3])
        qx, qy, qz, qw = quaternion_from_rotation(T[:3, :3])
        if not all(math.isfinite(v) for v in (x, y, z, qx, qy, qz, qw)):
            return
        seconds, nanoseconds = divmod(stamp_ns, _NS)
        line = (f"{seconds}.{nanoseconds:09d} {x:.6f} {y:.6f} {z:.6f} "
                f"{qx:.9f} {qy:.9f} {qz:.9f} {qw:.9f}\n")
        with self._lock:
            self._trajectory_pending.append(line)
        self._flush_trajectory(force=False)

    def _flush_trajectory(self, force: bool) -> None:
        with self._lock:
            if self._trajectory.closed:
                return
            if not force and time.monotonic() - self._trajectory_flushed < 1.0:
                return
            if self._trajectory_pending:
                self._trajectory.write("".join(self._trajectory_pending))
                self._trajectory_pending = []
                self._trajectory.flush()
            self._trajectory_flushed = time.monotonic()

    # --- findings, photos, segment -----------------------------------------------------------

    def add_finding(self, finding: Any, lat: float | None = None, lon: float | None = None,
                    photo: str | None = None, *, stamp_ns: int | None = None,
                    status: str = "confirmed") -> None:
        """Insert or replace a finding and commit at once.

        ``finding``: a ``perception.mapper.GradedFinding`` (grade, score, basis, measurement),
        or a ``perception.findings.Finding`` (ungraded yet: grade NULL).
        """
        graded = finding if hasattr(finding, "finding") else None
        base = finding.finding if graded is not None else finding
        measured = dict(graded.measured if graded is not None else base.measured)
        x, y, z = (float(v) for v in base.position_m)
        row = (base.id, base.code, None if graded is None else int(graded.grade),
               None if graded is None else graded.score, float(base.start_m),
               float(base.end_m), float(base.clock_h), x, y, z, lat, lon,
               float(base.confidence), int(base.frames), base.source,
               None if graded is None else graded.grade_basis,
               json.dumps(measured, default=_json_default),
               json.dumps(list(graded.unverified) if graded is not None else []), photo,
               status, stamp_ns if stamp_ns is not None else int(base.last_stamp_ns))
        with self._lock:
            if photo is None:  # keep a photo saved earlier
                existing = self._db.execute("SELECT photo FROM findings WHERE id = ?",
                                            (base.id,)).fetchone()
                if existing is not None:
                    row = (*row[:18], existing[0], *row[19:])
            self._db.execute(f"INSERT OR REPLACE INTO findings ({', '.join(_FINDING_COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(_FINDING_COLUMNS))})", row)
            self._db.commit()

    def set_finding_status(self, finding_id: str, status: str) -> None:
        """Change a finding's status (a provisional finding the final grading rejected or
        merged into another stays in the table, not counted) and commit at once."""
        with self._lock:
            self._db.execute("UPDATE findings SET status = ? WHERE id = ?", (status, finding_id))
            self._db.commit()

    def add_photo(self, name: str, image: bytes | NDArray[np.uint8], stamp_ns: int,
                  distance_m: float, kind: str, finding_id: str | None = None) -> str:
        """Save a photo as ``images/NAME`` (JPEG bytes, or a BGR image encoded here) and list
        it in ``photos``; with ``finding_id`` it becomes that finding's photo. Returns its
        path relative to the folder."""
        if not isinstance(image, bytes):
            image = encode_jpeg(image)
        relative = f"{IMAGES}/{name}"
        _write_atomically(self.path / relative, image)
        with self._lock:
            self._db.execute("INSERT INTO photos (path, stamp_ns, distance_m, kind) "
                             "VALUES (?, ?, ?, ?)", (relative, stamp_ns, distance_m, kind))
            if finding_id is not None:
                self._db.execute("UPDATE findings SET photo = ? WHERE id = ?",
                                 (relative, finding_id))
            self._db.commit()
        return relative

    def set_segment(self, evaluation: Any) -> None:
        """Store the segment evaluation (a ``perception.grading.SegmentEvaluation``, or a
        mapping already in the record's shape)."""
        document = (dict(evaluation) if isinstance(evaluation, Mapping)
                    else evaluation_record(evaluation))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO segment (id, json) VALUES (1, ?)",
                             (json.dumps(document, default=_json_default),))
            self._db.commit()

    # --- end products ------------------------------------------------------------------------

    def write_map(self, grid: Any) -> Path:
        """``map.pgm`` + ``map.yaml`` of an ``OccupancyGrid`` / ``OccupancyMap``."""
        from navigation.occupancy import write_map

        _, yaml_path = write_map(grid, self.path, "map")
        return yaml_path

    def write_cloud(self, points_m: NDArray[np.floating]) -> Path | None:
        """``cloud.ply``; None when Open3D is not available."""
        try:
            from navigation.map_export import write_ply

            return write_ply(points_m, self.path / "cloud.ply")
        except ImportError:
            return None

    def close(self, state: str, reason: str | None = None, *, merge: bool = True) -> None:
        """End the mission: final state and reason, recording closed (and merged into
        recording.mcap when ``merge``), trajectory flushed, database checkpointed."""
        if state not in ("completed", "aborted", "interrupted"):
            raise ValueError(f"a mission ends completed, aborted or interrupted, not {state!r}")
        if self._closed:
            return
        # The heartbeat keeps mission.yaml fresh while the recording is merged
        self.recording.close()
        if merge and self.recording.files:
            target = self.path / RECORDING
            merge_recordings(self.recording.files, target)
            with self._lock:
                segments, self.recording.files = self.recording.files, [target]
            for segment in segments:
                segment.unlink(missing_ok=True)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._flush_trajectory(force=True)
        self._trajectory.close()
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._doc.state = state
            self._doc.reason = reason
            self._doc.ended_utc = utc_now()
            self._write_yaml()
            self._closed = True
        with contextlib.suppress(OSError):
            (self.path / LOCK_FILE).unlink()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    # --- reading -----------------------------------------------------------------------------

    @staticmethod
    def read(path: str | Path) -> MissionRecord:
        """Read a mission folder; a ``running`` mission whose writer is gone is
        ``interrupted``. ``MissionError`` if there is no readable mission.yaml."""
        return read_mission(path)


def read_mission(path: str | Path) -> MissionRecord:
    """See ``MissionFolder.read``."""
    folder = Path(path)
    try:
        document = yaml.safe_load((folder / MISSION_YAML).read_text(encoding="utf-8"))
    except OSError as err:
        raise MissionError(f"{folder}: no mission here ({MISSION_YAML}: "
                           f"{err.strerror})") from err
    except yaml.YAMLError as err:
        raise MissionError(f"{folder / MISSION_YAML}: not YAML: {err}") from err
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise MissionError(f"{folder / MISSION_YAML}: not a schema {SCHEMA} mission file")
    recorded = str(document.get("state"))
    state, reason = recorded, document.get("reason")
    if recorded == "running":
        alive = writer_alive(folder)
        last = _parse_utc(document.get("last_update_utc"))
        age_s = (dt.datetime.now(dt.UTC) - last).total_seconds() if last else math.inf
        if not alive or age_s > STALE_AFTER_S:
            state = "interrupted"
            reason = (f"the mission process ended without closing the mission (last update "
                      f"{document.get('last_update_utc')}"
                      + ("" if alive else ", its lock is free") + ")")
    progress = document.get("progress") or {}
    findings, segment, photos = _read_db(folder / FINDINGS_DB)
    map_yaml = folder / "map.yaml"
    cloud = folder / "cloud.ply"
    trajectory = folder / TRAJECTORY
    return MissionRecord(
        path=folder, schema=SCHEMA, name=str(document.get("name") or ""), state=state,
        recorded_state=recorded, started_utc=document.get("started_utc"),
        ended_utc=document.get("ended_utc"), last_update_utc=document.get("last_update_utc"),
        reason=reason,
        progress=MissionProgress(float(progress.get("distance_done_m") or 0.0),
                                 float(progress.get("distance_left_m") or 0.0),
                                 progress.get("sim_time_s")),
        plan=dict(document.get("plan") or {}), world=document.get("world"),
        events=tuple(dict(e) for e in document.get("events") or ()),
        findings=findings, segment=segment, photos=photos,
        recordings=tuple(recording_files(folder)),
        trajectory=trajectory if trajectory.is_file() else None,
        map_yaml=map_yaml if map_yaml.is_file() else None,
        cloud=cloud if cloud.is_file() else None)


def writer_alive(folder: Path) -> bool:
    """Whether a process holds the folder's lock."""
    lock_path = folder / LOCK_FILE
    try:
        handle = lock_path.open()
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _read_db(path: Path) -> tuple[tuple[FindingRow, ...], dict[str, Any] | None,
                                  tuple[PhotoRow, ...]]:
    if not path.is_file():
        return (), None, ()
    db = sqlite3.connect(path)
    try:
        rows = db.execute(f"SELECT {', '.join(_FINDING_COLUMNS)} FROM findings "
                          "ORDER BY start_m, id").fetchall()
        segment_row = db.execute("SELECT json FROM segment WHERE id = 1").fetchone()
        photo_rows = db.execute("SELECT path, stamp_ns, distance_m, kind FROM photos "
                                "ORDER BY stamp_ns").fetchall()
    finally:
        db.close()
    findings = tuple(FindingRow(
        id=r[0], code=r[1], grade=r[2], score=r[3], start_m=r[4], end_m=r[5], clock_h=r[6],
        x=r[7], y=r[8], z=r[9], lat=r[10], lon=r[11], confidence=r[12], frames=r[13],
        source=r[14], grade_basis=r[15], measured=json.loads(r[16] or "{}"),
        unverified=json.loads(r[17] or "[]"), photo=r[18], status=r[19] or "confirmed",
        stamp_ns=r[20]) for r in rows)
    segment = json.loads(segment_row[0]) if segment_row and segment_row[0] else None
    photos = tuple(PhotoRow(p[0], int(p[1]), float(p[2]), str(p[3])) for p in photo_rows)
    return findings, segment, photos


# --- helpers -------------------------------------------------------------------------------


def evaluation_record(evaluation: Any) -> dict[str, Any]:
    """The segment table's JSON: CJJ 181 figures, grade labels and unverified rows."""
    e = evaluation

    def level(value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        return {"label": value.label, "en": value.text_en, "zh": value.text_zh}

    return {
        "standard": e.standard_id, "length_m": e.length_m,
        "S": e.S, "Smax": e.S_max, "F": e.F, "S_M": e.S_M,
        "Y": e.Y, "Ymax": e.Y_max, "G": e.G, "Y_M": e.Y_M,
        "K": e.K, "E": e.E, "T": e.T, "RI": e.RI, "MI": e.MI,
        "structural_grade": level(e.structural.grade),
        "structural_density_type": level(e.structural.density_type),
        "functional_grade": level(e.functional.grade),
        "functional_density_type": level(e.functional.density_type),
        "repair": level(e.repair), "maintenance": level(e.maintenance),
        "repair_scope": e.repair_scope.value,
        "not_scored": [r.code for r in e.not_scored],
        "unverified": list(e.unverified),
    }


def encode_jpeg(image_bgr: NDArray[np.uint8], quality: int = 85) -> bytes:
    """JPEG bytes of a BGR image."""
    import cv2

    ok, buffer = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MissionError("cannot encode a JPEG image")
    return bytes(buffer.tobytes())


def _write_atomically(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(content)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _plain(value: Any) -> Any:
    """Values YAML's safe dumper takes (numpy scalars, tuples, enums, paths made plain)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return str(value)
