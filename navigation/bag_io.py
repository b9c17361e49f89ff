"""ROS 2 bags (MCAP or sqlite3) read into typed records and written from them, without ROS.

Reading uses ``rosbags``: a rosbag2 folder (``metadata.yaml`` and its MCAP or sqlite3 file), a
single ``.mcap`` or ``.db3`` file, or a rosbag2 folder whose ``metadata.yaml`` was never
written (a recorder that crashed) all open. Topics are found by message type, so any topic
names work; ``topics`` pins a role to a name. Records come out in header-stamp order (a short
reorder window absorbs the different latencies of the sensors), each converted at this edge:

==============================================  ====================  ====================
message type                                    role                  record
==============================================  ====================  ====================
sensor_msgs/LaserScan                           ``SCAN_2D``           ``LaserScan2D``
sensor_msgs/PointCloud2                         ``CLOUD_3D``          ``LidarScan3D``
nav_msgs/Odometry                               ``ODOMETRY``          ``OdometrySample``
nav_msgs/Odometry on a "*truth*" topic          ``GROUND_TRUTH``      ``OdometrySample``
sensor_msgs/NavSatFix                           ``GNSS``              ``GeodeticFix``
geometry_msgs/PoseWithCovarianceStamped         ``RADIO_FIX``         ``PositionFix`` (5G)
std_msgs/Float64 on a "*tether*" topic          ``TETHER``            ``TetherLength``
sensor_msgs/Imu                                 ``IMU``               ``ImuReading``
==============================================  ====================  ====================

Writing (``BagWriter``) produces MCAP (rosbag2 storage "mcap", zstd chunks) or sqlite3 with the
ROS 2 Jazzy message definitions embedded, so ``ros2 bag``, Foxglove and this reader open it.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal, Protocol, TypeAlias, cast

import numpy as np
from numpy.typing import NDArray
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.interfaces import (
    Connection,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import (
    CompressionFormat,
    CompressionMode,
    ReaderError,
    StoragePlugin,
    Writer,
    WriterError,
)
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
    geometry_msgs__msg__Transform as TransformMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__TransformStamped as TransformStampedMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__Twist as TwistMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__TwistWithCovariance as TwistWithCovarianceMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    geometry_msgs__msg__Vector3 as Vector3Msg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    nav_msgs__msg__Odometry as OdometryMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    sensor_msgs__msg__Imu as ImuMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    sensor_msgs__msg__LaserScan as LaserScanMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    sensor_msgs__msg__NavSatFix as NavSatFixMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    sensor_msgs__msg__NavSatStatus as NavSatStatusMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    sensor_msgs__msg__PointCloud2 as PointCloud2Msg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    sensor_msgs__msg__PointField as PointFieldMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    std_msgs__msg__Float64 as Float64Msg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    std_msgs__msg__Header as HeaderMsg,
)
from rosbags.typesys.stores.ros2_jazzy import (
    tf2_msgs__msg__TFMessage as TFMessageMsg,
)

from navigation.records import (
    FixSource,
    FloatArray,
    LaserScan2D,
    LidarScan3D,
    OdometrySample,
    PositionFix,
)

_LOG = logging.getLogger(__name__)
_NS = 1_000_000_000
_TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_WARN_SKIPPED = 5
"""Skipped messages logged as warnings; the rest only at debug level (they are all counted)."""


class BagError(Exception):
    """A bag cannot be read or written; the one-line message starts with the bag's path."""


# --- records the shared ``navigation.records`` does not define -----------------------------


@dataclass(frozen=True)
class GeodeticFix:
    """A GNSS (BeiDou) fix as ``sensor_msgs/NavSatFix`` gives it.

    ``covariance_m2`` is over east, north, up in m^2; ``covariance_type`` and ``status`` are
    the message's constants (``status`` < 0: no fix).
    """

    stamp_ns: int
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    covariance_m2: FloatArray
    covariance_type: int = 2
    status: int = 0
    service: int = 4
    """NavSatStatus service bits; 4 is COMPASS, i.e. BeiDou."""
    frame_id: str = "gnss_link"


@dataclass(frozen=True)
class TetherLength:
    """Cable paid out from the drum (the cable counter)."""

    stamp_ns: int
    length_m: float


@dataclass(frozen=True)
class ImuReading:
    """One IMU sample in its frame: AHRS orientation, angular rate and specific force.

    Covariances are 3x3; ``orientation_covariance[0, 0] == -1`` means no orientation (ROS).
    """

    stamp_ns: int
    orientation_xyzw: FloatArray
    angular_velocity_radps: FloatArray
    linear_acceleration_mps2: FloatArray
    orientation_covariance: FloatArray
    angular_velocity_covariance: FloatArray
    linear_acceleration_covariance: FloatArray
    frame_id: str = "imu_link"


SensorRecord: TypeAlias = (
    LaserScan2D | LidarScan3D | OdometrySample | GeodeticFix | PositionFix | TetherLength
    | ImuReading
)


class SensorRole(Enum):
    """What a topic is to the localization stack; each role is read from one topic."""

    SCAN_2D = "scan_2d"
    CLOUD_3D = "cloud_3d"
    ODOMETRY = "odometry"
    GROUND_TRUTH = "ground_truth"
    GNSS = "gnss"
    RADIO_FIX = "radio_fix"
    TETHER = "tether"
    IMU = "imu"


ROLE_MSGTYPES: dict[SensorRole, str] = {
    SensorRole.SCAN_2D: "sensor_msgs/msg/LaserScan",
    SensorRole.CLOUD_3D: "sensor_msgs/msg/PointCloud2",
    SensorRole.ODOMETRY: "nav_msgs/msg/Odometry",
    SensorRole.GROUND_TRUTH: "nav_msgs/msg/Odometry",
    SensorRole.GNSS: "sensor_msgs/msg/NavSatFix",
    SensorRole.RADIO_FIX: "geometry_msgs/msg/PoseWithCovarianceStamped",
    SensorRole.TETHER: "std_msgs/msg/Float64",
    SensorRole.IMU: "sensor_msgs/msg/Imu",
}
"""The message type each role is read from."""

SCAN_ROLES = frozenset({SensorRole.SCAN_2D, SensorRole.CLOUD_3D})
_TF_STATIC_MSGTYPE = "tf2_msgs/msg/TFMessage"


@dataclass(frozen=True)
class BagRecord:
    """One converted message: where it came from and the typed record."""

    topic: str
    role: SensorRole
    stamp_ns: int
    """The record's stamp (header stamp; for header-less messages the log time, see module)."""
    log_time_ns: int
    """When the recorder received it."""
    data: SensorRecord


@dataclass(frozen=True)
class SkippedMessage:
    """A message that could not be decoded or converted; ``index`` counts from 0 per topic."""

    topic: str
    index: int
    reason: str


@dataclass(frozen=True)
class TopicSummary:
    """A topic of a bag and, if it has one, the role it is read as."""

    name: str
    msgtype: str
    message_count: int
    role: SensorRole | None


@dataclass(frozen=True)
class BagSummary:
    """What a bag holds, for a CLI's ``info``."""

    path: Path
    storage: str
    start_ns: int
    end_ns: int
    message_count: int
    topics: tuple[TopicSummary, ...]

    @property
    def duration_s(self) -> float:
        """Time from the first to the last message (log time)."""
        return (self.end_ns - self.start_ns) / _NS

    def format(self) -> str:
        """A human-readable table (several lines)."""
        width = max([len(t.name) for t in self.topics] + [5])
        type_width = max([len(t.msgtype) for t in self.topics] + [4])
        lines = [
            f"bag:      {self.path} ({self.storage})",
            f"duration: {self.duration_s:.3f} s, {self.message_count} messages",
            f"{'topic':<{width}}  {'type':<{type_width}}  {'count':>8}  role",
        ]
        lines += [f"{t.name:<{width}}  {t.msgtype:<{type_width}}  {t.message_count:>8}  "
                  f"{t.role.value if t.role else '-'}" for t in self.topics]
        return "\n".join(lines)


class ConversionError(Exception):
    """A message decoded but does not make a valid record (reason in the message)."""


# --- pose helpers -------------------------------------------------------------------------


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> FloatArray:
    """3x3 rotation of a quaternion (normalised first; a zero quaternion is the identity)."""
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if norm < 1e-12 or not math.isfinite(norm):
        return np.eye(3)
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quaternion_from_rotation(R: FloatArray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix, w >= 0 (Shepperd's method, robust near 180 deg)."""
    trace = float(np.trace(R))
    if trace > 0.0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s,
             0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + R[i, i] - R[j, j] - R[k, k], 1e-12))
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    sign = -1.0 if q[3] < 0.0 else 1.0
    return sign * float(q[0]), sign * float(q[1]), sign * float(q[2]), sign * float(q[3])


def pose_matrix(position_m: tuple[float, float, float],
                quaternion_xyzw: tuple[float, float, float, float]) -> FloatArray:
    """4x4 homogeneous transform of a position and a quaternion."""
    T = np.eye(4)
    T[:3, :3] = rotation_from_quaternion(*quaternion_xyzw)
    T[:3, 3] = position_m
    return T


# --- reading ------------------------------------------------------------------------------


class BagReader:
    """An open bag: its topics, the role each is read as, and its records in stamp order.

    Opening checks everything that can be checked up front and raises ``BagError`` (one line,
    starting with the path): a missing path, not a bag, malformed metadata, an empty bag, a
    pinned topic that is absent or of the wrong type, and (``require_scans``) a bag without a
    ``LaserScan`` or ``PointCloud2`` topic. A message that does not decode or convert is
    skipped, logged and listed in ``skipped``; ``strict=True`` raises instead.

    ``topics`` pins roles to topic names; other roles are found by message type (see the
    module table; among several candidates a name with "wheel" wins for odometry, estimator
    outputs such as "/slam/odometry" lose, then the busiest topic). ``reorder_window_s`` is
    how late (in stamp time) a message may arrive and still come out in order.
    """

    def __init__(self, path: str | Path, topics: Mapping[SensorRole, str] | None = None, *,
                 require_scans: bool = True, strict: bool = False,
                 reorder_window_s: float = 0.5) -> None:
        self.path = Path(path)
        self.strict = strict
        self.reorder_window_ns = round(reorder_window_s * _NS)
        self.skipped: list[SkippedMessage] = []
        storage_path, self.storage = _locate_storage(self.path)
        try:
            self._reader = AnyReader([storage_path], default_typestore=_TYPESTORE)
            self._reader.open()
        except (AnyReaderError, ReaderError, OSError, KeyError, ValueError,
                TypeError) as err:
            raise BagError(f"{self.path}: not a readable ROS 2 bag: {_one_line(err)}") from err
        try:
            self._check_and_assign(topics or {}, require_scans)
        except BaseException:
            self.close()
            raise

    def _check_and_assign(self, pinned: Mapping[SensorRole, str], require_scans: bool) -> None:
        reader = self._reader
        if reader.message_count == 0:
            raise BagError(f"{self.path}: bag is empty (no messages)")
        self.topic_types: dict[str, str] = {
            name: info.msgtype or "" for name, info in reader.topics.items()}
        self.topic_counts: dict[str, int] = {
            name: info.msgcount for name, info in reader.topics.items()}
        self.roles: dict[SensorRole, str] = {}
        """The topic each role is read from (pinned or found by type)."""
        if len(set(pinned.values())) < len(pinned):
            raise BagError(f"{self.path}: one topic pinned to several roles "
                           f"({', '.join(f'{r.value}={t}' for r, t in pinned.items())})")
        for role, name in pinned.items():
            if name not in self.topic_types:
                raise BagError(f"{self.path}: topic {name} for {role.value} is not in the bag "
                               f"(topics: {', '.join(sorted(self.topic_types))})")
            if self.topic_types[name] != ROLE_MSGTYPES[role]:
                raise BagError(f"{self.path}: topic {name} is {self.topic_types[name]}, "
                               f"{role.value} needs {ROLE_MSGTYPES[role]}")
            self.roles[role] = name
        taken = set(self.roles.values())
        for role in SensorRole:
            if role not in self.roles:
                found = _discover(role, self.topic_types, self.topic_counts, taken)
                if found is not None:
                    self.roles[role] = found
                    taken.add(found)
        if require_scans and not SCAN_ROLES & self.roles.keys():
            raise BagError(f"{self.path}: no sensor_msgs/LaserScan or sensor_msgs/PointCloud2 "
                           f"topic (topics: {_topic_list(self.topic_types)})")

    def close(self) -> None:
        """Close the bag's files."""
        if self._reader.stack is not None:
            self._reader.close()

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def start_ns(self) -> int:
        """Log time of the first message."""
        return self._reader.start_time

    @property
    def end_ns(self) -> int:
        """Log time of the last message."""
        return max(self._reader.end_time - 1, self._reader.start_time)

    def summary(self) -> BagSummary:
        """Topics, types, counts, roles and duration."""
        role_of = {name: role for role, name in self.roles.items()}
        topics = tuple(TopicSummary(name, self.topic_types[name], self.topic_counts[name],
                                    role_of.get(name)) for name in sorted(self.topic_types))
        return BagSummary(self.path, self.storage, self.start_ns, self.end_ns,
                          self._reader.message_count, topics)

    def records(self, roles: Collection[SensorRole] | None = None) -> Iterator[BagRecord]:
        """Records of the given roles (default: all assigned) in header-stamp order.

        A message whose stamp lags the newest log time by more than the reorder window comes
        out late (out of order) rather than being dropped.
        """
        wanted = {role: topic for role, topic in self.roles.items()
                  if roles is None or role in roles}
        role_of = {topic: role for role, topic in wanted.items()}
        connections = [c for c in self._reader.connections if c.topic in role_of]
        if not connections:
            return
        index: dict[str, int] = dict.fromkeys(role_of, 0)
        pending: list[tuple[int, int, BagRecord]] = []
        clock_offset_ns: int | None = None  # min(log time - header stamp): the stamps' clock
        try:
            for sequence, (connection, log_ns, raw) in enumerate(
                    self._reader.messages(connections=connections)):
                topic = connection.topic
                i, index[topic] = index[topic], index[topic] + 1
                role = role_of[topic]
                fallback_ns = log_ns - (clock_offset_ns or 0)
                record = self._convert(connection, raw, role, fallback_ns, i)
                if record is None:
                    continue
                if role is not SensorRole.TETHER and record.stamp_ns != fallback_ns:
                    offset = log_ns - record.stamp_ns
                    clock_offset_ns = (offset if clock_offset_ns is None
                                       else min(clock_offset_ns, offset))
                heapq.heappush(pending, (record.stamp_ns, sequence,
                                         BagRecord(topic, role, record.stamp_ns, log_ns, record)))
                # Release what no message still to come can precede
                horizon_ns = log_ns - (clock_offset_ns or 0) - self.reorder_window_ns
                while pending and pending[0][0] <= horizon_ns:
                    yield heapq.heappop(pending)[2]
        except (AnyReaderError, ReaderError, OSError) as err:
            raise BagError(f"{self.path}: cannot read on after {sum(index.values())} messages: "
                           f"{_one_line(err)}") from err
        while pending:
            yield heapq.heappop(pending)[2]

    def _convert(self, connection: Connection, raw: bytes, role: SensorRole, fallback_ns: int,
                 index: int) -> SensorRecord | None:
        try:
            message = self._reader.deserialize(raw, connection.msgtype)
            return _CONVERTERS[role](message, fallback_ns)
        except (ConversionError, AnyReaderError, ValueError, TypeError, IndexError, KeyError,
                AttributeError, AssertionError, UnicodeDecodeError) as err:
            # The serde raises all of these on truncated or garbled CDR.
            reason = _one_line(err) or type(err).__name__
            skipped = SkippedMessage(connection.topic, index, reason)
            if self.strict:
                raise BagError(f"{self.path}: message {index} on {connection.topic} is corrupt: "
                               f"{reason}") from err
            self.skipped.append(skipped)
            level = logging.WARNING if len(self.skipped) <= _WARN_SKIPPED else logging.DEBUG
            _LOG.log(level, "%s: skipped message %d on %s: %s", self.path, index,
                     connection.topic, reason)
            return None

    def static_transforms(self) -> dict[tuple[str, str], FloatArray]:
        """``/tf_static`` transforms as {(parent, child): T_parent_child}; empty if none."""
        connections = [c for c in self._reader.connections
                       if c.msgtype == _TF_STATIC_MSGTYPE and c.topic.endswith("tf_static")]
        transforms: dict[tuple[str, str], FloatArray] = {}
        for connection, _, raw in self._reader.messages(connections=connections):
            try:
                message = cast(TFMessageMsg, self._reader.deserialize(raw, connection.msgtype))
            except AnyReaderError as err:
                _LOG.warning("%s: skipped a %s message: %s", self.path, connection.topic,
                             _one_line(err))
                continue
            for tf in message.transforms:
                t, q = tf.transform.translation, tf.transform.rotation
                transforms[(tf.header.frame_id, tf.child_frame_id)] = pose_matrix(
                    (t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
        return transforms


def read_bag(path: str | Path, topics: Mapping[SensorRole, str] | None = None,
             roles: Collection[SensorRole] | None = None, *,
             require_scans: bool = True) -> Iterator[BagRecord]:
    """Records of a bag in header-stamp order (see ``BagReader``).

    The bag is opened (and checked) at once and closed when the iteration ends; to stop
    early, use ``BagReader`` as a context manager instead.
    """
    reader = BagReader(path, topics, require_scans=require_scans)
    return _records_then_close(reader, roles)


def _records_then_close(reader: BagReader,
                        roles: Collection[SensorRole] | None) -> Iterator[BagRecord]:
    with reader:
        yield from reader.records(roles)


def bag_summary(path: str | Path) -> BagSummary:
    """Topics, types, counts, roles and duration of a bag (``BagError`` if unreadable)."""
    with BagReader(path, require_scans=False) as reader:
        return reader.summary()


def _locate_storage(path: Path) -> tuple[Path, str]:
    """The path rosbags should open and the storage name; ``BagError`` if it is not a bag."""
    if not path.exists():
        raise BagError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            metadata = (path / "metadata.yaml").read_text(errors="replace")
            storage = re.search(r"storage_identifier:\s*(\w+)", metadata)
            return path, storage.group(1) if storage else "unknown"
        # A recorder that died before writing metadata.yaml leaves a readable storage file.
        files = sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
        if len(files) == 1:
            return files[0], "mcap" if files[0].suffix == ".mcap" else "sqlite3"
        problem = ("several storage files and no metadata.yaml" if files
                   else "no metadata.yaml and no .mcap or .db3 file")
        raise BagError(f"{path}: not a ROS 2 bag folder ({problem})")
    try:
        with path.open("rb") as stream:
            head = stream.read(16)
    except OSError as err:
        raise BagError(f"{path}: cannot read: {err.strerror}") from err
    if path.suffix == ".mcap" and head.startswith(_MCAP_MAGIC):
        return path, "mcap"
    if path.suffix == ".db3" and head.startswith(_SQLITE_MAGIC):
        return path, "sqlite3"
    if head.startswith(_MCAP_MAGIC) or head.startswith(_SQLITE_MAGIC):
        raise BagError(f"{path}: looks like a bag but is not named .mcap or .db3")
    if not head:
        raise BagError(f"{path}: empty file, not a ROS 2 bag")
    raise BagError(f"{path}: not a ROS 2 bag (expected a rosbag2 folder, a .mcap or a .db3 "
                   "file)")


_ESTIMATOR_WORDS = ("slam", "lidar", "localization", "filtered", "fused", "ekf", "icp")
"""Topic-name words of estimator outputs: not raw sensor data, so picked last."""


def _discover(role: SensorRole, topic_types: Mapping[str, str], counts: Mapping[str, int],
              taken: Collection[str]) -> str | None:
    """The topic a role is read from when not pinned: by type, then by name hints and count."""
    candidates = [name for name, msgtype in topic_types.items()
                  if msgtype == ROLE_MSGTYPES[role] and name not in taken]
    if role is SensorRole.GROUND_TRUTH:
        candidates = [name for name in candidates if "truth" in name.lower()]
    elif role is SensorRole.ODOMETRY:
        candidates = [name for name in candidates if "truth" not in name.lower()]
    elif role is SensorRole.TETHER:
        candidates = [name for name in candidates if "tether" in name.lower()]
    if not candidates:
        return None
    hint = "wheel" if role is SensorRole.ODOMETRY else ""

    def preference(name: str) -> tuple[bool, bool, int, str]:
        lower = name.lower()
        estimated = any(word in lower for word in _ESTIMATOR_WORDS)
        return (not (hint and hint in lower), estimated, -counts[name], name)

    return min(candidates, key=preference)


def _topic_list(topic_types: Mapping[str, str]) -> str:
    return ", ".join(f"{name} [{msgtype}]" for name, msgtype in sorted(topic_types.items())) \
        or "none"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


# --- message -> record ----------------------------------------------------------------------


def _stamp_ns(header: HeaderMsg, fallback_ns: int) -> int:
    """Header stamp in ns; an unset (zero) stamp falls back to the receive time."""
    stamp = int(header.stamp.sec) * _NS + int(header.stamp.nanosec)
    return stamp if stamp != 0 else fallback_ns


def _finite_or_zero(value: float) -> float:
    """A driver's NaN or inf timing field read as 'not given' (0)."""
    return value if math.isfinite(value) else 0.0


def scan_from_msg(message: object, fallback_ns: int) -> LaserScan2D:
    """A ROS message (rosbags or rclpy: same fields) as a typed record."""
    msg = cast(LaserScanMsg, message)
    ranges = np.asarray(msg.ranges, dtype=np.float32).copy()
    if not (math.isfinite(msg.angle_min) and math.isfinite(msg.angle_increment)):
        raise ConversionError(f"angles not finite ({msg.angle_min}, {msg.angle_increment})")
    return LaserScan2D(_stamp_ns(msg.header, fallback_ns), ranges, float(msg.angle_min),
                       float(msg.angle_increment), float(msg.range_min), float(msg.range_max),
                       float(msg.scan_time), msg.header.frame_id,
                       _finite_or_zero(float(msg.time_increment)))


_FIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_TIME_FIELDS = ("t", "time", "timestamp", "offset_time")
"""Per-point time fields of common drivers (ours, Ouster and Velodyne, Hesai, Livox)."""
_ABSOLUTE_TIME_S = 1e6
"""Per-point times larger than this (s) are absolute (epoch), not offsets from the stamp."""


def cloud_from_msg(message: object, fallback_ns: int) -> LidarScan3D:
    """Raw points (sensor frame); NaN, inf and all-zero (no-return) points are dropped.

    Per-point times: a float field is seconds, an integer field nanoseconds; absolute times
    (epoch seconds) are made relative to the stamp.
    """
    msg = cast(PointCloud2Msg, message)
    stamp_ns = _stamp_ns(msg.header, fallback_ns)
    fields = {f.name: f for f in msg.fields}
    time_name = next((name for name in _TIME_FIELDS if name in fields), None)
    names = ["x", "y", "z"] + ([time_name] if time_name else [])
    for name in names:
        f = fields.get(name)
        if f is None:
            raise ConversionError(f"no field {name} (fields: {', '.join(fields) or 'none'})")
        if f.datatype not in _FIELD_DTYPES or f.count != 1:
            raise ConversionError(f"field {name} has datatype {f.datatype}, count {f.count}")
        if name in "xyz" and _FIELD_DTYPES[f.datatype][0] != "f":
            raise ConversionError(f"field {name} is not float32/float64")
    endian = ">" if msg.is_bigendian else "<"
    formats = [endian + _FIELD_DTYPES[fields[n].datatype] for n in names]
    offsets = [fields[n].offset for n in names]
    point_step, width, height = int(msg.point_step), int(msg.width), int(msg.height)
    if any(o + np.dtype(fmt).itemsize > point_step for o, fmt in zip(offsets, formats,
                                                                        strict=True)):
        raise ConversionError(f"fields overrun point_step {point_step}")
    row_bytes = width * point_step
    row_step = int(msg.row_step) if height > 1 else row_bytes
    data = np.asarray(msg.data, dtype=np.uint8)
    if row_step < row_bytes or data.size < height * row_step:
        raise ConversionError(f"data is {data.size} bytes, {height} rows of {width} points "
                               f"(point_step {point_step}, row_step {row_step}) need "
                               f"{height * row_step}")
    rows = data[:height * row_step].reshape(height, row_step)[:, :row_bytes]
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": point_step})
    points = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    xyz = np.column_stack([points["x"], points["y"], points["z"]]).astype(np.float32)
    valid = np.isfinite(xyz).all(axis=1) & (xyz != 0.0).any(axis=1)
    offsets_s: NDArray[np.float32] | None = None
    if time_name is not None:
        raw = points[time_name][valid]
        if np.issubdtype(raw.dtype, np.integer):
            seconds = raw.astype(np.float64) * 1e-9
        else:
            seconds = raw.astype(np.float64)
            if seconds.size and float(np.nanmedian(np.abs(seconds))) > _ABSOLUTE_TIME_S:
                seconds = (seconds - stamp_ns // _NS) - (stamp_ns % _NS) * 1e-9
        offsets_s = seconds.astype(np.float32)
    return LidarScan3D(stamp_ns, xyz[valid], offsets_s, msg.header.frame_id)


def odometry_from_msg(message: object, fallback_ns: int) -> OdometrySample:
    """A ROS message (rosbags or rclpy: same fields) as a typed record."""
    msg = cast(OdometryMsg, message)
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    T = pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
    if not np.isfinite(T).all():
        raise ConversionError("pose is not finite")
    covariance = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6).copy()
    return OdometrySample(_stamp_ns(msg.header, fallback_ns), T, covariance)


def navsat_from_msg(message: object, fallback_ns: int) -> GeodeticFix:
    """A ROS message (rosbags or rclpy: same fields) as a typed record."""
    msg = cast(NavSatFixMsg, message)
    covariance = np.asarray(msg.position_covariance, dtype=np.float64).reshape(3, 3).copy()
    return GeodeticFix(_stamp_ns(msg.header, fallback_ns), float(msg.latitude),
                       float(msg.longitude), float(msg.altitude), covariance,
                       int(msg.position_covariance_type), int(msg.status.status),
                       int(msg.status.service), msg.header.frame_id)


def radio_from_msg(message: object, fallback_ns: int) -> PositionFix:
    """A ROS message (rosbags or rclpy: same fields) as a typed record."""
    msg = cast(PoseWithCovarianceStampedMsg, message)
    p = msg.pose.pose.position
    covariance = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)[:3, :3].copy()
    return PositionFix(_stamp_ns(msg.header, fallback_ns), np.array([p.x, p.y, p.z]),
                       covariance, FixSource.RADIO_5G)


def tether_from_msg(message: object, fallback_ns: int) -> TetherLength:
    """A ROS message (rosbags or rclpy: same fields) as a typed record."""
    return TetherLength(fallback_ns, float(cast(Float64Msg, message).data))


def imu_from_msg(message: object, fallback_ns: int) -> ImuReading:
    """A ROS message (rosbags or rclpy: same fields) as a typed record."""
    msg = cast(ImuMsg, message)
    q, w, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration

    def cov(values: NDArray[np.float64]) -> FloatArray:
        return np.asarray(values, dtype=np.float64).reshape(3, 3).copy()

    return ImuReading(_stamp_ns(msg.header, fallback_ns), np.array([q.x, q.y, q.z, q.w]),
                      np.array([w.x, w.y, w.z]), np.array([a.x, a.y, a.z]),
                      cov(msg.orientation_covariance), cov(msg.angular_velocity_covariance),
                      cov(msg.linear_acceleration_covariance), msg.header.frame_id)


_CONVERTERS: dict[SensorRole, Callable[[object, int], SensorRecord]] = {
    SensorRole.SCAN_2D: scan_from_msg,
    SensorRole.CLOUD_3D: cloud_from_msg,
    SensorRole.ODOMETRY: odometry_from_msg,
    SensorRole.GROUND_TRUTH: odometry_from_msg,
    SensorRole.GNSS: navsat_from_msg,
    SensorRole.RADIO_FIX: radio_from_msg,
    SensorRole.TETHER: tether_from_msg,
    SensorRole.IMU: imu_from_msg,
}


# --- writing --------------------------------------------------------------------------------

UNKNOWN_VAR = 1e6
"""Variance written for what a record does not observe (e.g. a 5G fix's orientation)."""

_LATCHED_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
                   QosDurability.TRANSIENT_LOCAL, QosTime(0, 0), QosTime(0, 0),
                   QosLiveliness.AUTOMATIC, QosTime(0, 0), False)
"""``/tf_static`` is latched: ``ros2 bag play`` re-offers it to late subscribers."""


def _time_msg(stamp_ns: int) -> TimeMsg:
    if stamp_ns < 0:
        raise ValueError(f"negative stamp {stamp_ns} ns")
    return TimeMsg(sec=stamp_ns // _NS, nanosec=stamp_ns % _NS)


def _header(stamp_ns: int, frame_id: str) -> HeaderMsg:
    return HeaderMsg(stamp=_time_msg(stamp_ns), frame_id=frame_id)


def _pose_msg(T: FloatArray) -> PoseMsg:
    x, y, z = (float(v) for v in T[:3, 3])
    qx, qy, qz, qw = quaternion_from_rotation(T[:3, :3])
    return PoseMsg(position=PointMsg(x=x, y=y, z=z),
                   orientation=QuaternionMsg(x=qx, y=qy, z=qz, w=qw))


def _vector3(values: FloatArray | tuple[float, float, float]) -> Vector3Msg:
    x, y, z = (float(v) for v in values)
    return Vector3Msg(x=x, y=y, z=z)


class _Message(Protocol):
    __msgtype__: ClassVar[str]


class BagWriter:
    """Writes records as ROS 2 messages into a new bag; use it as a context manager.

    ``path`` ending in ``.mcap`` gives a single MCAP file (what a mission folder holds as
    ``recording.mcap``); any other path gives a rosbag2 folder (``metadata.yaml`` and the
    storage file) with ``storage`` "mcap" or "sqlite3". The bag is written aside and moved
    into place on a clean close, so a failed run never leaves a bag that looks complete.
    Each ``write_*`` takes the record and optionally the topic, frame ids and the log
    (receive) time, which defaults to the record's stamp.
    """

    def __init__(self, path: str | Path, *, storage: Literal["mcap", "sqlite3"] = "mcap",
                 compress: bool = True, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.single_file = self.path.suffix == ".mcap"
        if self.single_file and storage != "mcap":
            raise ValueError(f"{self.path}: a single-file bag must use the mcap storage")
        if self.path.exists() and not overwrite:
            raise BagError(f"{self.path}: exists already (pass overwrite=True to replace it)")
        self.counts: dict[str, int] = {}
        """Messages written per topic."""
        self._staging = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging.mkdir(parents=True)
        inner = self._staging / (self.path.stem if self.single_file else self.path.name)
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(inner, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        if compress and storage == "mcap":
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._inner = inner
        self._storage_suffix = ".mcap" if storage == "mcap" else ".db3"
        self._connections: dict[str, Connection] = {}
        self._open = False
        try:
            self._writer.open()
            self._open = True
        except (WriterError, OSError) as err:
            shutil.rmtree(self._staging, ignore_errors=True)
            raise BagError(f"{self.path}: cannot create the bag: {_one_line(err)}") from err

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        """Finish the bag (index, metadata) and move it into place."""
        if not self._open:
            return
        self._open = False
        try:
            self._writer.close()
            if self.single_file:
                source = self._inner / f"{self._inner.name}{self._storage_suffix}"
                source.replace(self.path)
            else:
                if self.path.exists():
                    shutil.rmtree(self.path)
                self._inner.replace(self.path)
        except (WriterError, OSError) as err:
            raise BagError(f"{self.path}: cannot finish the bag: {_one_line(err)}") from err
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written so far."""
        if self._open:
            self._open = False
            self._writer.abort()
        shutil.rmtree(self._staging, ignore_errors=True)

    @property
    def message_count(self) -> int:
        """Messages written so far."""
        return sum(self.counts.values())

    def _write(self, topic: str, message: _Message, stamp_ns: int, log_time_ns: int | None,
               qos: tuple[Qos, ...] = ()) -> None:
        if not self._open:
            raise BagError(f"{self.path}: bag is closed")
        msgtype = message.__msgtype__
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=_TYPESTORE,
                                                     offered_qos_profiles=qos)
            self._connections[topic] = connection
            self.counts[topic] = 0
        elif connection.msgtype != msgtype:
            raise ValueError(f"{topic} carries {connection.msgtype}, not {msgtype}")
        data = _TYPESTORE.serialize_cdr(message, msgtype)
        self._writer.write(connection, stamp_ns if log_time_ns is None else log_time_ns, data)
        self.counts[topic] += 1

    def write_scan_2d(self, scan: LaserScan2D, topic: str = "/scan",
                      log_time_ns: int | None = None) -> None:
        """``sensor_msgs/LaserScan``."""
        n = int(scan.ranges_m.size)
        message = LaserScanMsg(
            header=_header(scan.stamp_ns, scan.frame_id), angle_min=scan.angle_min_rad,
            angle_max=scan.angle_min_rad + max(n - 1, 0) * scan.angle_increment_rad,
            angle_increment=scan.angle_increment_rad,
            time_increment=scan.time_increment_s, scan_time=scan.scan_time_s,
            range_min=scan.range_min_m, range_max=scan.range_max_m,
            ranges=np.asarray(scan.ranges_m, dtype=np.float32),
            intensities=np.zeros(0, dtype=np.float32))
        self._write(topic, message, scan.stamp_ns, log_time_ns)

    def write_cloud(self, scan: LidarScan3D, topic: str = "/points",
                    log_time_ns: int | None = None) -> None:
        """``sensor_msgs/PointCloud2``: float32 x, y, z and, with time offsets, t (s)."""
        points = np.asarray(scan.points_m, dtype=np.float32).reshape(-1, 3)
        names = ["x", "y", "z"]
        columns = [points]
        if scan.point_time_offsets_s is not None:
            names.append("t")
            columns.append(np.asarray(scan.point_time_offsets_s, dtype=np.float32)[:, None])
        packed = np.ascontiguousarray(np.hstack(columns), dtype="<f4")
        step = 4 * len(names)
        message = PointCloud2Msg(
            header=_header(scan.stamp_ns, scan.frame_id), height=1, width=len(points),
            fields=[PointFieldMsg(name=n, offset=4 * i, datatype=PointFieldMsg.FLOAT32,
                                  count=1) for i, n in enumerate(names)],
            is_bigendian=False, point_step=step, row_step=step * len(points),
            data=packed.view(np.uint8).reshape(-1), is_dense=True)
        self._write(topic, message, scan.stamp_ns, log_time_ns)

    def write_odometry(self, sample: OdometrySample, topic: str = "/odom/wheel",
                       frame_id: str = "odom", child_frame_id: str = "base_link",
                       linear_mps: float = 0.0, angular_radps: float = 0.0,
                       log_time_ns: int | None = None) -> None:
        """``nav_msgs/Odometry`` with the sample's 6x6 pose covariance (twist optional)."""
        message = OdometryMsg(
            header=_header(sample.stamp_ns, frame_id), child_frame_id=child_frame_id,
            pose=PoseWithCovarianceMsg(
                pose=_pose_msg(sample.T_odom_base),
                covariance=np.asarray(sample.covariance, dtype=np.float64).reshape(36)),
            twist=TwistWithCovarianceMsg(
                twist=TwistMsg(linear=_vector3((linear_mps, 0.0, 0.0)),
                               angular=_vector3((0.0, 0.0, angular_radps))),
                covariance=np.zeros(36)))
        self._write(topic, message, sample.stamp_ns, log_time_ns)

    def write_ground_truth(self, stamp_ns: int, T_world_base: FloatArray,
                           topic: str = "/sim/ground_truth", frame_id: str = "map",
                           child_frame_id: str = "base_link", speed_mps: float = 0.0) -> None:
        """The true pose as ``nav_msgs/Odometry`` (zero covariance), as the simulator sends it."""
        self.write_odometry(OdometrySample(stamp_ns, T_world_base, np.zeros((6, 6))), topic,
                            frame_id, child_frame_id, linear_mps=speed_mps)

    def write_navsat(self, fix: GeodeticFix, topic: str = "/gnss/fix",
                     log_time_ns: int | None = None) -> None:
        """``sensor_msgs/NavSatFix``."""
        message = NavSatFixMsg(
            header=_header(fix.stamp_ns, fix.frame_id),
            # rosbags' stub types this field with an older distro's (identical) class.
            status=NavSatStatusMsg(status=fix.status, service=fix.service),  # type: ignore[arg-type]
            latitude=fix.latitude_deg, longitude=fix.longitude_deg, altitude=fix.altitude_m,
            position_covariance=np.asarray(fix.covariance_m2, dtype=np.float64).reshape(9),
            position_covariance_type=fix.covariance_type)
        self._write(topic, message, fix.stamp_ns, log_time_ns)

    def write_position_fix(self, fix: PositionFix, topic: str = "/radio/fix",
                           frame_id: str = "map", log_time_ns: int | None = None) -> None:
        """``geometry_msgs/PoseWithCovarianceStamped``; orientation unknown (variance 1e6)."""
        covariance = np.diag([0.0, 0.0, 0.0, UNKNOWN_VAR, UNKNOWN_VAR, UNKNOWN_VAR])
        covariance[:3, :3] = fix.covariance
        T = np.eye(4)
        T[:3, 3] = fix.position_m
        message = PoseWithCovarianceStampedMsg(
            header=_header(fix.stamp_ns, frame_id),
            pose=PoseWithCovarianceMsg(pose=_pose_msg(T), covariance=covariance.reshape(36)))
        self._write(topic, message, fix.stamp_ns, log_time_ns)

    def write_tether(self, tether: TetherLength, topic: str = "/tether/length",
                     log_time_ns: int | None = None) -> None:
        """``std_msgs/Float64`` (no header: the stamp is the log time)."""
        self._write(topic, Float64Msg(data=tether.length_m), tether.stamp_ns, log_time_ns)

    def write_imu(self, reading: ImuReading, topic: str = "/imu",
                  log_time_ns: int | None = None) -> None:
        """``sensor_msgs/Imu``."""
        qx, qy, qz, qw = (float(v) for v in reading.orientation_xyzw)
        message = ImuMsg(
            header=_header(reading.stamp_ns, reading.frame_id),
            orientation=QuaternionMsg(x=qx, y=qy, z=qz, w=qw),
            orientation_covariance=np.asarray(reading.orientation_covariance,
                                              dtype=np.float64).reshape(9),
            angular_velocity=_vector3(reading.angular_velocity_radps),
            angular_velocity_covariance=np.asarray(reading.angular_velocity_covariance,
                                                   dtype=np.float64).reshape(9),
            linear_acceleration=_vector3(reading.linear_acceleration_mps2),
            linear_acceleration_covariance=np.asarray(reading.linear_acceleration_covariance,
                                                      dtype=np.float64).reshape(9))
        self._write(topic, message, reading.stamp_ns, log_time_ns)

    def write_static_transforms(self, stamp_ns: int,
                                transforms: Mapping[tuple[str, str], FloatArray],
                                topic: str = "/tf_static") -> None:
        """``tf2_msgs/TFMessage`` of {(parent, child): T_parent_child}, latched."""
        stamped = []
        for (parent, child), T in transforms.items():
            qx, qy, qz, qw = quaternion_from_rotation(T[:3, :3])
            stamped.append(TransformStampedMsg(
                header=_header(stamp_ns, parent), child_frame_id=child,
                transform=TransformMsg(translation=_vector3(T[:3, 3]),
                                       rotation=QuaternionMsg(x=qx, y=qy, z=qz, w=qw))))
        self._write(topic, TFMessageMsg(transforms=stamped), stamp_ns, None, (_LATCHED_QOS,))

