"""ROS 2 bags without ROS: round trips of every record, discovery, ordering, bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.stores.ros2_jazzy import builtin_interfaces__msg__Time as Time
from rosbags.typesys.stores.ros2_jazzy import sensor_msgs__msg__LaserScan as LaserScanMsg
from rosbags.typesys.stores.ros2_jazzy import sensor_msgs__msg__PointCloud2 as PointCloud2Msg
from rosbags.typesys.stores.ros2_jazzy import sensor_msgs__msg__PointField as PointField
from rosbags.typesys.stores.ros2_jazzy import std_msgs__msg__Header as Header

from navigation.bag_io import (
    BagError,
    BagReader,
    BagWriter,
    GeodeticFix,
    ImuReading,
    SensorRole,
    TetherLength,
    bag_summary,
    pose_matrix,
    quaternion_from_rotation,
    read_bag,
    rotation_from_quaternion,
)
from navigation.records import (
    FixSource,
    LaserScan2D,
    LidarScan3D,
    OdometrySample,
    PositionFix,
)

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
S = 1_000_000_000
T0 = 1_700_000_000 * S  # an epoch stamp: nanosecond precision must survive


def yaw_pose(x_m: float, y_m: float, yaw_rad: float, z_m: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = x_m, y_m, z_m
    return T


def a_scan(stamp_ns: int) -> LaserScan2D:
    ranges = np.array([1.0, 2.5, np.inf, 30.0, 0.0, 4.25], dtype=np.float32)
    return LaserScan2D(stamp_ns, ranges, -1.5, 0.6, 0.1, 30.0, 0.1, "laser", 0.0125)


def a_cloud(stamp_ns: int, with_time: bool = True) -> LidarScan3D:
    rng = np.random.default_rng(stamp_ns % 97)
    points = rng.uniform(-5.0, 5.0, (50, 3)).astype(np.float32)
    offsets = np.linspace(-0.1, 0.0, 50, dtype=np.float32) if with_time else None
    return LidarScan3D(stamp_ns, points, offsets, "lidar_link")


def an_odometry(stamp_ns: int) -> OdometrySample:
    covariance = np.diag([0.01, 0.02, 1e6, 1e6, 1e6, 0.003])
    covariance[0, 1] = covariance[1, 0] = 0.001
    return OdometrySample(stamp_ns, yaw_pose(1.5, -0.25, 0.7, 0.1), covariance)


def a_navsat(stamp_ns: int) -> GeodeticFix:
    return GeodeticFix(stamp_ns, 31.2304, 121.4737, 4.5, np.diag([0.25, 0.25, 1.0]), 2, 0, 4,
                       "gnss_link")


def a_position_fix(stamp_ns: int) -> PositionFix:
    return PositionFix(stamp_ns, np.array([12.0, -3.5, 1.25]), np.diag([0.22, 0.22, 0.88]),
                       FixSource.RADIO_5G)


def an_imu(stamp_ns: int) -> ImuReading:
    q = np.array([0.0, 0.0, math.sin(0.2), math.cos(0.2)])
    return ImuReading(stamp_ns, q, np.array([0.001, -0.002, 0.3]), np.array([0.1, 0.0, 9.81]),
                      np.diag([1e-4, 1e-4, 1e-2]), np.eye(3) * 4e-6, np.eye(3) * 4e-4,
                      "imu_link")


def write_every_record(path: Path, storage: str = "mcap") -> None:
    with BagWriter(path, storage=storage) as bag:  # type: ignore[arg-type]
        bag.write_static_transforms(T0, {("base_link", "lidar_link"): yaw_pose(0.12, 0, 0, 0.39)})
        for i in range(3):
            stamp = T0 + i * 100_000_000 + 7  # odd nanoseconds
            bag.write_scan_2d(a_scan(stamp))
            bag.write_cloud(a_cloud(stamp))
            bag.write_odometry(an_odometry(stamp))
            bag.write_ground_truth(stamp, yaw_pose(2.0, 1.0, 0.5))
            bag.write_navsat(a_navsat(stamp))
            bag.write_position_fix(a_position_fix(stamp))
            bag.write_tether(TetherLength(stamp, 3.0 + i))
            bag.write_imu(an_imu(stamp))


@pytest.mark.parametrize("name, storage", [("bag.mcap", "mcap"), ("bag_folder", "mcap"),
                                           ("bag_sqlite", "sqlite3")])
def test_every_record_type_survives_a_round_trip(tmp_path: Path, name: str,
                                                 storage: str) -> None:
    path = tmp_path / name
    write_every_record(path, storage)
    assert path.is_file() == name.endswith(".mcap")
    with BagReader(path) as bag:
        records = list(bag.records())
        transforms = bag.static_transforms()
        assert bag.storage == storage
        assert bag.skipped == []
    by_role: dict[SensorRole, list[object]] = {}
    for record in records:
        by_role.setdefault(record.role, []).append(record.data)
    assert {role: len(items) for role, items in by_role.items()} == dict.fromkeys(SensorRole, 3)
    stamp = T0 + 7

    scan = by_role[SensorRole.SCAN_2D][0]
    assert isinstance(scan, LaserScan2D)
    expected = a_scan(stamp)
    np.testing.assert_array_equal(scan.ranges_m, expected.ranges_m)
    assert scan.time_increment_s == pytest.approx(expected.time_increment_s)  # beam timing
    assert (scan.stamp_ns, scan.frame_id) == (stamp, "laser")
    assert scan.angle_min_rad == pytest.approx(-1.5) and scan.angle_increment_rad == (
        pytest.approx(0.6))
    assert (scan.range_min_m, scan.range_max_m) == pytest.approx((0.1, 30.0))

    cloud = by_role[SensorRole.CLOUD_3D][0]
    assert isinstance(cloud, LidarScan3D) and cloud.point_time_offsets_s is not None
    np.testing.assert_array_equal(cloud.points_m, a_cloud(stamp).points_m)
    np.testing.assert_array_equal(cloud.point_time_offsets_s, a_cloud(stamp).point_time_offsets_s)

    odom = by_role[SensorRole.ODOMETRY][0]
    assert isinstance(odom, OdometrySample) and odom.stamp_ns == stamp
    np.testing.assert_allclose(odom.T_odom_base, an_odometry(stamp).T_odom_base, atol=1e-12)
    np.testing.assert_array_equal(odom.covariance, an_odometry(stamp).covariance)

    truth = by_role[SensorRole.GROUND_TRUTH][0]
    assert isinstance(truth, OdometrySample)
    np.testing.assert_allclose(truth.T_odom_base, yaw_pose(2.0, 1.0, 0.5), atol=1e-12)

    fix = by_role[SensorRole.GNSS][0]
    assert isinstance(fix, GeodeticFix)
    expected_fix = a_navsat(stamp)
    assert (fix.latitude_deg, fix.longitude_deg, fix.altitude_m) == (31.2304, 121.4737, 4.5)
    assert (fix.covariance_type, fix.status, fix.service, fix.frame_id) == (2, 0, 4, "gnss_link")
    np.testing.assert_array_equal(fix.covariance_m2, expected_fix.covariance_m2)

    radio = by_role[SensorRole.RADIO_FIX][0]
    assert isinstance(radio, PositionFix) and radio.source is FixSource.RADIO_5G
    np.testing.assert_array_equal(radio.position_m, [12.0, -3.5, 1.25])
    np.testing.assert_array_equal(radio.covariance, a_position_fix(stamp).covariance)

    tethers = by_role[SensorRole.TETHER]
    assert [t.length_m for t in tethers if isinstance(t, TetherLength)] == [3.0, 4.0, 5.0]
    assert isinstance(tethers[0], TetherLength) and tethers[0].stamp_ns == stamp

    imu = by_role[SensorRole.IMU][0]
    assert isinstance(imu, ImuReading)
    expected_imu = an_imu(stamp)
    for name_ in ("orientation_xyzw", "angular_velocity_radps", "linear_acceleration_mps2",
                  "orientation_covariance", "angular_velocity_covariance",
                  "linear_acceleration_covariance"):
        np.testing.assert_array_equal(getattr(imu, name_), getattr(expected_imu, name_))

    np.testing.assert_allclose(transforms[("base_link", "lidar_link")],
                               yaw_pose(0.12, 0, 0, 0.39), atol=1e-12)


def test_cloud_without_time_field_has_no_offsets(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b.mcap") as bag:
        bag.write_cloud(a_cloud(T0, with_time=False))
    (record,) = read_bag(tmp_path / "b.mcap")
    assert isinstance(record.data, LidarScan3D)
    assert record.data.point_time_offsets_s is None
    np.testing.assert_array_equal(record.data.points_m, a_cloud(T0).points_m)


def test_max_range_readings_are_no_returns(tmp_path: Path) -> None:
    # A SICK-style scan: no return reads as range_max; 0 is an error code.
    ranges = np.array([2.0, 8.0, 8.0, 0.0, 3.0], dtype=np.float32)
    with BagWriter(tmp_path / "b.mcap") as bag:
        bag.write_scan_2d(LaserScan2D(T0, ranges, 0.0, 0.5, 0.05, 8.0))
    (record,) = read_bag(tmp_path / "b.mcap")
    assert isinstance(record.data, LaserScan2D)
    points = record.data.points_m()
    assert len(points) == 2
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), [2.0, 3.0], rtol=1e-6)


# --- hand-made PointCloud2 layouts ---------------------------------------------------------


def write_raw(path: Path, topic: str, msgtype: str, messages: list[tuple[int, bytes]],
              storage: StoragePlugin = StoragePlugin.MCAP) -> None:
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connection = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        for log_ns, data in messages:
            writer.write(connection, log_ns, data)


def cloud_msg(fields: list[tuple[str, int, int]], point_step: int, rows: list[bytes],
              row_step: int, width: int) -> bytes:
    data = b"".join(row.ljust(row_step, b"\xee") for row in rows)
    message = PointCloud2Msg(
        header=Header(stamp=Time(sec=T0 // S, nanosec=5), frame_id="os_lidar"),
        height=len(rows), width=width,
        fields=[PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields],
        is_bigendian=False, point_step=point_step, row_step=row_step,
        data=np.frombuffer(data, dtype=np.uint8), is_dense=False)
    return bytes(TYPESTORE.serialize_cdr(message, PointCloud2Msg.__msgtype__))


def test_padded_organised_cloud_with_integer_ns_times(tmp_path: Path) -> None:
    # Ouster-like: x y z float32, 4 bytes padding, intensity float32, t uint32 (ns), then
    # padding to 32 bytes per point, and rows padded beyond width * point_step.
    point = np.dtype({"names": ["x", "y", "z", "intensity", "t"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u4"],
                      "offsets": [0, 4, 8, 16, 20], "itemsize": 32})
    points = np.zeros(6, dtype=point)
    xyz = np.array([[1, 2, 3], [np.nan, 0, 0], [0, 0, 0], [4, 5, 6], [7, 8, 9], [-1, -2, -3]],
                   dtype=np.float32)
    points["x"], points["y"], points["z"] = xyz.T
    points["intensity"] = 100.0
    points["t"] = [0, 10_000, 20_000, 50_000_000, 60_000_000, 99_000_000]
    raw = points.tobytes()
    fields = [("x", 0, PointField.FLOAT32), ("y", 4, PointField.FLOAT32),
              ("z", 8, PointField.FLOAT32), ("intensity", 16, PointField.FLOAT32),
              ("t", 20, PointField.UINT32)]
    message = cloud_msg(fields, 32, [raw[:96], raw[96:]], row_step=100, width=3)
    write_raw(tmp_path / "ouster", "/ouster/points", PointCloud2Msg.__msgtype__,
              [(T0, message)])
    (record,) = read_bag(tmp_path / "ouster")
    scan = record.data
    assert isinstance(scan, LidarScan3D)
    assert record.topic == "/ouster/points" and scan.frame_id == "os_lidar"
    assert scan.stamp_ns == T0 + 5
    # The NaN point and the all-zero (no return) point are gone; padding is not data.
    np.testing.assert_array_equal(scan.points_m, xyz[[0, 3, 4, 5]])
    assert scan.point_time_offsets_s is not None
    np.testing.assert_allclose(scan.point_time_offsets_s, [0.0, 0.05, 0.06, 0.099], atol=1e-7)


def test_cloud_without_xyz_is_skipped_with_topic_and_index(tmp_path: Path) -> None:
    good = cloud_msg([("x", 0, 7), ("y", 4, 7), ("z", 8, 7)], 12,
                     [np.array([1, 2, 3], dtype="<f4").tobytes()], 12, 1)
    no_z = cloud_msg([("x", 0, 7), ("y", 4, 7)], 12,
                     [np.array([1, 2, 3], dtype="<f4").tobytes()], 12, 1)
    short = cloud_msg([("x", 0, 7), ("y", 4, 7), ("z", 8, 7)], 12,
                      [np.array([1, 2, 3], dtype="<f4").tobytes()], 12, 2)  # 2 points, 1 sent
    write_raw(tmp_path / "b", "/points", PointCloud2Msg.__msgtype__,
              [(T0, good), (T0 + 1, no_z), (T0 + 2, short), (T0 + 3, good)])
    with BagReader(tmp_path / "b") as bag:
        records = list(bag.records())
        skipped = bag.skipped
    assert len(records) == 2
    assert [(s.topic, s.index) for s in skipped] == [("/points", 1), ("/points", 2)]
    assert "no field z" in skipped[0].reason
    assert "bytes" in skipped[1].reason


def test_corrupt_message_is_skipped_and_reading_goes_on(tmp_path: Path) -> None:
    header = Header(stamp=Time(sec=1, nanosec=0), frame_id="laser")
    scan = LaserScanMsg(header=header, angle_min=0.0, angle_max=1.0, angle_increment=0.1,
                        time_increment=0.0, scan_time=0.1, range_min=0.1, range_max=10.0,
                        ranges=np.ones(11, dtype=np.float32),
                        intensities=np.zeros(0, dtype=np.float32))
    raw = bytes(TYPESTORE.serialize_cdr(scan, LaserScanMsg.__msgtype__))
    write_raw(tmp_path / "b", "/front/scan", LaserScanMsg.__msgtype__,
              [(S, raw), (2 * S, raw[:40]), (3 * S, raw)])
    with BagReader(tmp_path / "b") as bag:
        assert len(list(bag.records())) == 2
        assert [(s.topic, s.index) for s in bag.skipped] == [("/front/scan", 1)]
    with BagReader(tmp_path / "b", strict=True) as bag, pytest.raises(
            BagError, match=r"message 1 on /front/scan is corrupt"):
        list(bag.records())


# --- discovery and ordering ----------------------------------------------------------------


def test_topics_are_found_by_type_whatever_their_names(tmp_path: Path) -> None:
    with BagWriter(tmp_path / "b.mcap") as bag:
        bag.write_scan_2d(a_scan(T0), topic="/front_laser/scan_raw")
        bag.write_odometry(an_odometry(T0), topic="/husky/odometry")
        for i in range(3):  # busier than the wheel odometry, but an estimate
            bag.write_odometry(an_odometry(T0 + i), topic="/slam/odometry")
        bag.write_odometry(an_odometry(T0), topic="/wheel_odom")
        bag.write_ground_truth(T0, np.eye(4), topic="/gazebo/ground_truth_pose")
        bag.write_tether(TetherLength(T0, 1.0), topic="/cable/tether_counter")
        bag.write_tether(TetherLength(T0, 1.0), topic="/battery/voltage")  # not a tether
    with BagReader(tmp_path / "b.mcap") as bag:
        assert bag.roles == {
            SensorRole.SCAN_2D: "/front_laser/scan_raw",
            SensorRole.ODOMETRY: "/wheel_odom",  # preferred over other odometry by its name
            SensorRole.GROUND_TRUTH: "/gazebo/ground_truth_pose",
            SensorRole.TETHER: "/cable/tether_counter",
        }
    pinned = {SensorRole.ODOMETRY: "/husky/odometry"}
    with BagReader(tmp_path / "b.mcap", pinned) as bag:
        assert bag.roles[SensorRole.ODOMETRY] == "/husky/odometry"
    with pytest.raises(BagError, match=r"topic /odom for odometry is not in the bag"):
        BagReader(tmp_path / "b.mcap", {SensorRole.ODOMETRY: "/odom"})
    with pytest.raises(BagError, match=r"/front_laser/scan_raw is sensor_msgs/msg/LaserScan"):
        BagReader(tmp_path / "b.mcap", {SensorRole.ODOMETRY: "/front_laser/scan_raw"})
    with pytest.raises(BagError, match=r"one topic pinned to several roles"):
        BagReader(tmp_path / "b.mcap", {SensorRole.ODOMETRY: "/wheel_odom",
                                        SensorRole.GROUND_TRUTH: "/wheel_odom"})
    with BagWriter(tmp_path / "estimates.mcap") as bag:
        bag.write_scan_2d(a_scan(T0))
        bag.write_odometry(an_odometry(T0), topic="/slam/odometry")
        for i in range(3):
            bag.write_odometry(an_odometry(T0 + i), topic="/odom")
    with BagReader(tmp_path / "estimates.mcap") as bag:
        assert bag.roles[SensorRole.ODOMETRY] == "/odom"


def test_records_come_in_header_stamp_order(tmp_path: Path) -> None:
    # Scans arrive 80 ms after their stamp, odometry 5 ms: log order is not stamp order.
    with BagWriter(tmp_path / "b.mcap") as bag:
        for i in range(20):
            stamp = T0 + i * 20_000_000
            bag.write_odometry(an_odometry(stamp), log_time_ns=stamp + 5_000_000)
            if i % 5 == 0:
                bag.write_scan_2d(a_scan(stamp + 1), log_time_ns=stamp + 80_000_000)
    records = list(read_bag(tmp_path / "b.mcap", roles={SensorRole.SCAN_2D,
                                                         SensorRole.ODOMETRY}))
    stamps = [r.stamp_ns for r in records]
    assert len(records) == 24
    assert stamps == sorted(stamps)
    assert [r.log_time_ns - r.stamp_ns for r in records[:2]] == [5_000_000, 80_000_000 - 1]


def test_roles_filter_what_is_decoded(tmp_path: Path) -> None:
    write_every_record(tmp_path / "b.mcap")
    records = list(read_bag(tmp_path / "b.mcap", roles={SensorRole.TETHER}))
    assert {r.role for r in records} == {SensorRole.TETHER}


def test_header_less_messages_are_stamped_on_the_header_clock(tmp_path: Path) -> None:
    # Recorded without use_sim_time: headers carry sim time, the log carries wall time.
    wall0 = T0
    with BagWriter(tmp_path / "b.mcap") as bag:
        for i in range(10):
            sim_ns = S + i * 100_000_000
            bag.write_scan_2d(a_scan(sim_ns), log_time_ns=wall0 + sim_ns + 2_000_000)
            bag.write_tether(TetherLength(0, float(i)), log_time_ns=wall0 + sim_ns + 52_000_000)
    records = list(read_bag(tmp_path / "b.mcap"))
    tethers = [r for r in records if r.role is SensorRole.TETHER]
    # The first tether is seen after one scan: its stamp maps through that scan's offset.
    assert [t.stamp_ns for t in tethers[:2]] == [S + 50_000_000, S + 150_000_000]
    assert [r.stamp_ns for r in records] == sorted(r.stamp_ns for r in records)


def test_summary_lists_topics_types_counts_and_duration(tmp_path: Path) -> None:
    write_every_record(tmp_path / "b.mcap")
    summary = bag_summary(tmp_path / "b.mcap")
    assert summary.message_count == 8 * 3 + 1
    assert summary.duration_s == pytest.approx(0.2)
    topics = {t.name: (t.msgtype, t.message_count, t.role) for t in summary.topics}
    assert topics["/points"] == ("sensor_msgs/msg/PointCloud2", 3, SensorRole.CLOUD_3D)
    assert topics["/tf_static"] == ("tf2_msgs/msg/TFMessage", 1, None)
    text = summary.format()
    assert "/sim/ground_truth" in text and "ground_truth" in text and "0.200 s" in text


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_folder_without_metadata_reads_its_storage_file(tmp_path: Path, storage: str) -> None:
    # A recorder that died before writing metadata.yaml.
    write_every_record(tmp_path / "crashed", storage)
    (tmp_path / "crashed" / "metadata.yaml").unlink()
    with BagReader(tmp_path / "crashed") as bag:
        assert bag.storage == storage
        assert len(list(bag.records())) == 24


# --- bad input -------------------------------------------------------------------------------


def make_random_mcap(tmp_path: Path) -> Path:
    path = tmp_path / "noise.mcap"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def make_truncated_mcap(tmp_path: Path) -> Path:
    write_every_record(tmp_path / "whole.mcap")
    path = tmp_path / "cut.mcap"
    path.write_bytes((tmp_path / "whole.mcap").read_bytes()[:3000])
    return path


def make_text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a bag\n")
    return path


def make_empty_folder(tmp_path: Path) -> Path:
    path = tmp_path / "empty_dir"
    path.mkdir()
    return path


def make_bad_metadata(tmp_path: Path) -> Path:
    write_every_record(tmp_path / "folder")
    (tmp_path / "folder" / "metadata.yaml").write_text("rosbag2_bagfile_information: [\n  oops")
    return tmp_path / "folder"


def make_metadata_missing_keys(tmp_path: Path) -> Path:
    write_every_record(tmp_path / "folder")
    (tmp_path / "folder" / "metadata.yaml").write_text("rosbag2_bagfile_information:\n"
                                                       "  version: 9\n")
    return tmp_path / "folder"


def make_empty_bag(tmp_path: Path) -> Path:
    with Writer(tmp_path / "nothing", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/scan", LaserScanMsg.__msgtype__, typestore=TYPESTORE)
    return tmp_path / "nothing"


def make_bag_without_scans(tmp_path: Path) -> Path:
    with BagWriter(tmp_path / "odom_only.mcap") as bag:
        bag.write_odometry(an_odometry(T0))
    return tmp_path / "odom_only.mcap"


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "missing.mcap", "no such file or directory"),
    (make_random_mcap, "not a ROS 2 bag"),
    (make_truncated_mcap, "not a readable ROS 2 bag"),
    (make_text_file, "not a ROS 2 bag"),
    (make_empty_folder, "no metadata.yaml and no .mcap or .db3 file"),
    (make_bad_metadata, "not a readable ROS 2 bag: Could not load YAML"),
    (make_metadata_missing_keys, "not a readable ROS 2 bag: A metadata key is missing"),
    (make_empty_bag, "bag is empty"),
    (make_bag_without_scans, "no sensor_msgs/LaserScan or sensor_msgs/PointCloud2 topic "
                             r"\(topics: /odom/wheel \[nav_msgs/msg/Odometry\]\)"),
], ids=["missing", "random-bytes", "truncated", "text-file", "empty-folder", "bad-yaml",
        "metadata-keys", "empty-bag", "no-scans"])
def test_bad_input_gives_one_line_error_naming_the_bag(
        tmp_path: Path, make: Callable[[Path], Path], problem: str) -> None:
    path = make(tmp_path)
    with pytest.raises(BagError, match=problem) as caught:
        list(read_bag(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_a_bag_without_scans_still_has_a_summary(tmp_path: Path) -> None:
    summary = bag_summary(make_bag_without_scans(tmp_path))
    assert [t.role for t in summary.topics] == [SensorRole.ODOMETRY]


# --- writing ---------------------------------------------------------------------------------


def test_writer_leaves_nothing_behind_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), BagWriter(tmp_path / "b.mcap") as bag:
        bag.write_scan_2d(a_scan(T0))
        raise RuntimeError("simulator crashed")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    write_every_record(tmp_path / "b.mcap")
    with pytest.raises(BagError, match=r"b.mcap: exists already"):
        BagWriter(tmp_path / "b.mcap")
    with BagWriter(tmp_path / "b.mcap", overwrite=True) as bag:
        bag.write_scan_2d(a_scan(T0))
    assert bag_summary(tmp_path / "b.mcap").message_count == 1


@pytest.mark.parametrize("seed", range(5))
def test_quaternion_and_rotation_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    q *= np.sign(q[3])
    R = rotation_from_quaternion(*q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(quaternion_from_rotation(R), q, atol=1e-12)
    T = pose_matrix((1.0, 2.0, 3.0), (q[0], q[1], q[2], q[3]))
    np.testing.assert_array_equal(T[:3, 3], [1.0, 2.0, 3.0])
    # 180 degrees about x: the trace branch that loses precision elsewhere
    flip = rotation_from_quaternion(1.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(quaternion_from_rotation(flip), (1.0, 0.0, 0.0, 0.0), atol=1e-12)
