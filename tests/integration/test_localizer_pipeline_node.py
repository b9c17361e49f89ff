"""The localizer node runs the offline pipeline: a recorded drive played to it over ROS 2.

A short drive of a simulated world is recorded into a bag (``record_drive``). The bag's own
serialized messages are published to the ``localizer`` (and the ``slam`` node, which draws
the map from the localizer's poses) on simulated time, and ``LocalizationPipeline`` is run on
the same bag offline, as ``crawler slam run --site`` reads it. The player holds the clock
until the node has queued what was sent (so nothing is reordered by the transport) and has
registered all but the newest of the scans due (so none is dropped): then the node's
``/slam/odometry`` and ``/localization/pose`` must be the offline pipeline's, and near the
ground truth. Then a burst of scans due at once: only the newest is registered. The same bag,
played at twice its pace, through ``localization.source: slam_topic`` (the slam node
registers, the localizer fuses its odometry) still ends near the truth; and the queue's
ordering and dropping on their own.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, NavSatFix, PointCloud2
from std_msgs.msg import Float64
from tf2_msgs.msg import TFMessage

from crawler.config import CrawlerConfig, LocalizationConfig, MountsConfig
from crawler_navigation.common import pose_of, stamp_msg, stamp_ns
from crawler_navigation.localizer_node import (
    REORDER_DELAY_NS,
    LocalizerNode,
    MeasurementQueue,
    Rank,
)
from crawler_navigation.slam_node import SlamNode
from navigation.bag_io import (
    BagReader,
    GeodeticFix,
    ImuReading,
    SensorRole,
    TetherLength,
    rotation_from_quaternion,
)
from navigation.localization import LocalizationPipeline
from navigation.records import FixSource, LidarScan3D, OdometrySample, PositionFix
from navigation.site import Site, dump_site, site_from_truth
from sim_worlds.simulator.recording import record_drive
from sim_worlds.simulator.simulation import SimConfig, Simulation
from tests.integration.ros_harness import DISCOVERY_TIMEOUT_S, RosProbe, SpunNodes, wait_until

DRIVE_S = 12.0
SEED = 1
TOPICS: dict[str, Any] = {"/odom/wheel": Odometry, "/imu": Imu, "/tether/length": Float64,
                          "/points": PointCloud2, "/gnss/fix": NavSatFix,
                          "/radio/fix": PoseWithCovarianceStamped}
"""What the player publishes (not /sim/ground_truth, /tf_static)."""
STEP_TIMEOUT_S = 20.0
POLL_S = 0.0005
CLOCK_RESEND_S = 0.1


@dataclass(frozen=True)
class Drive:
    """A recorded drive and what the localizer needs to know about the robot and the site."""

    world: str
    bag: Path
    site: Site
    site_file: Path
    T_base_lidar: np.ndarray


@pytest.fixture(scope="module", params=["sewer_dn1000", "utility_tunnel"])
def drive(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Drive:
    """``DRIVE_S`` of the world's route, with the site file derived from its ground truth."""
    world: str = request.param
    folder = tmp_path_factory.mktemp(world)
    bag = folder / "drive.mcap"
    record_drive(world, bag, duration_s=DRIVE_S, planar_scan_samples=0, seed=SEED)
    sim = Simulation(world, SimConfig(camera=False))
    site = site_from_truth(sim.truth)
    if site.tether is not None:  # the cable counter is calibrated before a mission
        site = replace(site, tether=replace(site.tether, stretch_nominal=sim.config.tether_stretch,
                                            stretch_sigma=0.001))
    site = begin_where_put_down(site, sim.T_world_base()[:3, 3])
    site_file = folder / "site.yaml"
    site_file.write_text(dump_site(site))
    return Drive(world, bag, site, site_file, sim.T_base_lidar.copy())


def begin_where_put_down(site: Site, start_m: np.ndarray) -> Site:
    """The site with its first axis beginning where the robot is put down (the node starts
    there); the simulated tunnel's robot starts 2 m into the gallery, not at the portal."""
    axis = site.axes[0]
    at = axis.project(start_m)
    assert at.gap_m < 0.05, "the robot starts on the first axis"
    if abs(at.distance_m - axis.start_distance_m) < 1e-6:
        return site
    rest = [w for w in axis.waypoints_m[1:] if axis.project(w).distance_m > at.distance_m]
    x, y, z = (float(v) for v in start_m)
    first = replace(axis, waypoints_m=((x, y, z), *rest), start_distance_m=at.distance_m)
    return replace(site, axes=(first, *site.axes[1:]))


class NodesUnderTest(SpunNodes):
    """The localizer and slam nodes on simulated time, in a context of their own.

    ``close()`` destroys the localizer (its worker too) and the slam node, then shuts down.
    """

    def __init__(self, drive: Drive, source: Literal["pipeline", "slam_topic"] = "pipeline"
                 ) -> None:
        x, y, z = (float(v) for v in drive.T_base_lidar[:3, 3])
        config = CrawlerConfig(mounts=MountsConfig(lidar_xyz_m=(x, y, z)),
                               localization=LocalizationConfig(site_file=str(drive.site_file),
                                                               source=source))
        sim_time = [Parameter("use_sim_time", value=True)]
        super().__init__()
        self.localizer = LocalizerNode(config, context=self.context,
                                       parameter_overrides=sim_time)
        self.slam = SlamNode(config, context=self.context, parameter_overrides=sim_time)
        self.spin(self.localizer, self.slam)


@pytest.fixture
def nodes(drive: Drive) -> Iterator[NodesUnderTest]:
    """The nodes for ``drive``."""
    under_test = NodesUnderTest(drive)
    yield under_test
    under_test.close()


class Player:
    """Publishes a bag's serialized messages and ``/clock``, in lockstep with the localizer."""

    def __init__(self, probe: RosProbe, nodes: NodesUnderTest, drive: Drive) -> None:
        self.node = nodes.localizer
        self.publishers = {topic: probe.node.create_publisher(msg_type, topic, 10)
                           for topic, msg_type in TOPICS.items()}
        self.clock = probe.node.create_publisher(Clock, "/clock", 10)
        with AnyReader([drive.bag]) as reader:
            connections = [c for c in reader.connections if c.topic in TOPICS]
            self.messages = [(c.topic, log_ns, bytes(raw))
                             for c, log_ns, raw in reader.messages(connections=connections)]
        self.scan_stamps = [t for topic, t, _ in self.messages if topic == "/points"]
        self.tethered = drive.site.tether is not None
        self.sent = 0
        self.clock_ns = 0

    def discovered(self) -> bool:
        """Whether the nodes subscribe every topic (and the clock)."""
        return all(p.get_subscription_count() > 0 for p in self.publishers.values()) and (
            self.clock.get_subscription_count() >= 2)

    def play(self) -> None:
        """Every message, then the clock 1 s past the last one."""
        for topic, log_ns, raw in self.messages:
            if log_ns > self.clock_ns:
                self.set_clock(log_ns)
            if topic == "/tether/length" and not self.tethered:
                continue  # the node ignores the cable counter of a site without a tether
            self.publishers[topic].publish(raw)
            self.sent += 1
            # Queued before the clock moves on (its stamp is the node's clock, topics race)
            wait_until(lambda: self.node.queue.queued >= self.sent, STEP_TIMEOUT_S,
                       f"the localizer to queue message {self.sent} ({topic})", POLL_S)
        for _ in range(10):
            self.set_clock(self.clock_ns + 100_000_000)

    def play_paced(self, real_time_factor: float) -> None:
        """Every message and the clock at ``real_time_factor`` times the recorded pace (no
        lockstep), then 1 s more of clock."""
        wall_start, sim_start = time.monotonic(), self.messages[0][1]
        extra = [("", self.messages[-1][1] + k * 100_000_000, b"") for k in range(1, 11)]
        for topic, log_ns, raw in [*self.messages, *extra]:
            due_s = (log_ns - sim_start) * 1e-9 / real_time_factor
            time.sleep(max(0.0, due_s - (time.monotonic() - wall_start)))
            if log_ns > self.clock_ns:
                self.clock_ns = log_ns
                self.clock.publish(Clock(clock=stamp_msg(log_ns)))
            if topic:
                self.publishers[topic].publish(raw)

    def set_clock(self, clock_ns: int) -> None:
        """Advance the clock once all but the newest of the scans it makes due are taken."""
        due = bisect.bisect_right(self.scan_stamps, clock_ns - REORDER_DELAY_NS)
        stats = self.node.stats
        wait_until(lambda: stats.registered + stats.dropped + stats.late + stats.skipped
                   >= due - 1, STEP_TIMEOUT_S, f"the localizer to register scan {due - 1}",
                   POLL_S)
        self.clock_ns = clock_ns
        for _ in range(round(STEP_TIMEOUT_S / CLOCK_RESEND_S)):
            self.clock.publish(Clock(clock=stamp_msg(clock_ns)))
            try:
                wait_until(lambda: self.node.get_clock().now().nanoseconds == clock_ns,
                           CLOCK_RESEND_S, "the clock", POLL_S)
                return
            except AssertionError:
                continue  # /clock is best effort: send it again
        raise AssertionError(f"the node's clock never reached {clock_ns} ns")


@dataclass
class Offline:
    """``LocalizationPipeline`` on the bag: lidar odometry per scan, estimates at stamps."""

    lidar_poses: dict[int, np.ndarray]
    fused_poses: dict[int, np.ndarray]
    wall_headings: int
    truth: list[tuple[int, np.ndarray]]


def run_offline(drive: Drive, estimate_stamps: set[int]) -> Offline:
    """The bag's records in stamp order into the pipeline, as ``crawler slam run --site``."""
    pipeline = LocalizationPipeline(drive.site, drive.T_base_lidar)
    frame = drive.site.frame()
    T_lidar_base = np.linalg.inv(drive.T_base_lidar)
    lidar: dict[int, np.ndarray] = {}
    fused: dict[int, np.ndarray] = {}
    truth: list[tuple[int, np.ndarray]] = []
    group_ns: int | None = None
    with BagReader(drive.bag) as reader:
        for record in reader.records():
            # The estimate once every record of a stamp is in (the node publishes between)
            if group_ns is not None and record.stamp_ns > group_ns and group_ns in estimate_stamps:
                fused[group_ns] = pipeline.estimate().T_site_base
            group_ns = record.stamp_ns
            data = record.data
            if record.role is SensorRole.GROUND_TRUTH:
                assert isinstance(data, OdometrySample)
                truth.append((record.stamp_ns, data.T_odom_base))
            elif isinstance(data, OdometrySample):
                if not pipeline.localizer.initialized:
                    entry = drive.site.axes[0]
                    pipeline.initialize(entry.pose_at(entry.start_distance_m), data.stamp_ns)
                pipeline.on_odometry(data)
            elif isinstance(data, LidarScan3D):
                result = pipeline.on_scan(data)
                lidar[data.stamp_ns] = drive.T_base_lidar @ result.T_map_sensor @ T_lidar_base
            elif isinstance(data, ImuReading):
                R = rotation_from_quaternion(*data.orientation_xyzw)
                pipeline.localizer.add_imu_yaw_rate(data.stamp_ns,
                                                    float(data.angular_velocity_radps[2]))
                pipeline.localizer.add_imu_tilt(data.stamp_ns, math.atan2(R[2, 1], R[2, 2]),
                                                -math.asin(R[2, 0]))
            elif isinstance(data, TetherLength) and drive.site.tether is not None:
                pipeline.on_tether(data.stamp_ns, data.length_m)
            elif isinstance(data, GeodeticFix):
                position = frame.to_site([data.latitude_deg, data.longitude_deg,
                                          data.altitude_m])[0]
                pipeline.on_fix(PositionFix(data.stamp_ns, position,
                                            np.asarray(data.covariance_m2), FixSource.BEIDOU))
            elif isinstance(data, PositionFix):
                pipeline.on_fix(data)
    if group_ns in estimate_stamps:
        fused[group_ns] = pipeline.estimate().T_site_base
    return Offline(lidar, fused, pipeline.wall_headings, truth)


def yaw_rad(T: np.ndarray) -> float:
    return math.atan2(T[1, 0], T[0, 0])


@pytest.mark.ros
@pytest.mark.slow
def test_localizer_node_runs_the_offline_pipeline(drive: Drive, nodes: NodesUnderTest,
                                                  probe: RosProbe) -> None:
    """Same drive, same data: the node's poses are the offline pipeline's, near the truth."""
    started = time.monotonic()
    probe.record(Odometry, "/slam/odometry")
    probe.record(PoseWithCovarianceStamped, "/localization/pose")
    probe.record(Float64, "/localization/axis_distance")
    probe.record(TFMessage, "/tf")
    probe.record(OccupancyGrid, "/map",
                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    player = Player(probe, nodes, drive)
    wait_until(player.discovered, DISCOVERY_TIMEOUT_S, "the nodes to be discovered")
    player.play()
    node = nodes.localizer
    wait_until(lambda: len(node.queue) == 0 and probe.count("/slam/odometry") == len(
        player.scan_stamps), STEP_TIMEOUT_S, "every scan's /slam/odometry")
    # One more publication after everything was in
    poses = probe.count("/localization/pose")
    player.set_clock(player.clock_ns + 200_000_000)
    wait_until(lambda: probe.count("/localization/pose") > poses, STEP_TIMEOUT_S, "a last pose")
    played_s = time.monotonic() - started

    # Every scan registered, none dropped, late or corrupt
    stats = node.stats
    assert (stats.received, stats.registered) == (len(player.scan_stamps),) * 2
    assert (stats.dropped, stats.late, stats.skipped) == (0, 0, 0)

    # The offline pipeline on the same bag
    published = list(probe.received["/localization/pose"])
    offline = run_offline(drive, {stamp_ns(m.header.stamp) for m in published})
    assert node.pipeline.wall_headings == offline.wall_headings
    if drive.world == "utility_tunnel":
        assert offline.wall_headings > 10  # the gallery's walls give the heading

    # Lidar odometry: scan for scan the same
    lidar_errors = [np.linalg.norm(pose_of(m.pose.pose)[:3, 3]
                                   - offline.lidar_poses[stamp_ns(m.header.stamp)][:3, 3])
                    for m in probe.received["/slam/odometry"]]
    assert len(lidar_errors) == len(offline.lidar_poses)
    assert max(lidar_errors) < 1e-4

    # The fused pose: every publication the offline estimate at its stamp
    fused_errors_m, fused_errors_rad = [], []
    for msg in published:
        T_node, T_offline = pose_of(msg.pose.pose), offline.fused_poses[stamp_ns(
            msg.header.stamp)]
        fused_errors_m.append(float(np.linalg.norm(T_node[:3, 3] - T_offline[:3, 3])))
        fused_errors_rad.append(abs(math.remainder(yaw_rad(T_node) - yaw_rad(T_offline),
                                                   math.tau)))
    assert max(fused_errors_m) < 0.005 and max(fused_errors_rad) < 1e-3

    # Near the truth
    last = published[-1]
    stamps = np.array([s for s, _ in offline.truth])
    T_truth = offline.truth[int(np.argmin(np.abs(stamps - stamp_ns(last.header.stamp))))][1]
    T_node = pose_of(last.pose.pose)
    print(f"\n{drive.world}: {len(published)} poses, {len(lidar_errors)} scans "
          f"({stats.ms_per_scan:.0f} ms each) played in {played_s:.1f} s; node vs offline: "
          f"lidar {max(lidar_errors):.1e} m, fused {max(fused_errors_m):.1e} m "
          f"{max(fused_errors_rad):.1e} rad; vs truth at the end "
          f"{np.linalg.norm(T_node[:3, 3] - T_truth[:3, 3]):.3f} m")
    entry = drive.site.axes[0]
    assert np.linalg.norm(T_truth[:3, 3] - entry.pose_at(entry.start_distance_m)[:3, 3]) > 4.0
    assert np.linalg.norm(T_node[:3, 3] - T_truth[:3, 3]) < 0.15
    assert abs(math.remainder(yaw_rad(T_node) - yaw_rad(T_truth), math.tau)) < 0.02
    axis_distance = probe.last("/localization/axis_distance").data
    assert axis_distance == pytest.approx(entry.project(T_truth[:3, 3]).distance_m, abs=0.15)

    # map -> odom on /tf: chained with the wheels' odom -> base_link, it is the fused pose
    tf = next(m.transforms[0] for m in reversed(probe.received["/tf"])
              if stamp_ns(m.transforms[0].header.stamp) == stamp_ns(last.header.stamp))
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "odom")
    T_map_odom = np.eye(4)
    q = tf.transform.rotation
    T_map_odom[:3, :3] = rotation_from_quaternion(q.x, q.y, q.z, q.w)
    T_map_odom[:3, 3] = (tf.transform.translation.x, tf.transform.translation.y,
                         tf.transform.translation.z)
    with BagReader(drive.bag) as reader:
        wheel = [(r.stamp_ns, r.data.T_odom_base)  # type: ignore[union-attr]
                 for r in reader.records([SensorRole.ODOMETRY])]
    T_odom_base = min(wheel, key=lambda w: abs(w[0] - stamp_ns(last.header.stamp)))[1]
    assert np.linalg.norm((T_map_odom @ T_odom_base)[:3, 3] - T_node[:3, 3]) < 0.05

    # The slam node drew the map from the localizer's poses
    wait_until(lambda: probe.count("/map") > 0, STEP_TIMEOUT_S, "/map")
    assert (np.asarray(probe.last("/map").data) == 100).sum() > 100
    assert nodes.slam.unmatched == 0

    # Scans faster than the worker: of those due at once only the newest is registered
    burst = [deserialize_message(raw, PointCloud2) for topic, _, raw in player.messages
             if topic == "/points"][-4:]
    received, registered = stats.received, stats.registered
    burst_ns = player.clock_ns + 1_000_000_000
    for i, cloud in enumerate(burst):
        cloud.header.stamp = stamp_msg(burst_ns + i * 100_000_000)
        player.publishers["/points"].publish(cloud)
    wait_until(lambda: stats.received == received + len(burst), STEP_TIMEOUT_S, "the burst")
    player.set_clock(burst_ns + 300_000_000 + REORDER_DELAY_NS)
    wait_until(lambda: stats.registered + stats.dropped == registered + len(burst),
               STEP_TIMEOUT_S, "the burst taken")
    assert (stats.registered, stats.dropped) == (registered + 1, len(burst) - 1)
    # (the registration is counted before its /slam/odometry reaches the probe)
    wait_until(lambda: probe.count("/slam/odometry") == len(player.scan_stamps) + 1,
               STEP_TIMEOUT_S, "the burst's odometry")
    assert stamp_ns(probe.last("/slam/odometry").header.stamp) == burst_ns + 300_000_000


def test_queue_releases_in_stamp_then_rank_order() -> None:
    """Due entries come out by stamp, equal stamps proprioception first; later ones wait."""
    queue = MeasurementQueue()
    done: list[str] = []
    for stamp, rank, name in [(20, Rank.FIX, "fix"), (10, Rank.LIDAR, "scan"),
                              (10, Rank.WHEEL, "wheel"), (30, Rank.IMU, "late imu"),
                              (10, Rank.IMU, "imu")]:
        queue.put(stamp, rank, partial(done.append, name), droppable=rank is Rank.LIDAR)
    for work in queue.take_due(20):
        work()
    assert done == ["wheel", "imu", "scan", "fix"]
    assert (len(queue), queue.queued, queue.dropped) == (1, 5, 0)


def test_queue_keeps_the_newest_scan_when_behind() -> None:
    """Scans due together: the newest is kept, the older dropped and counted; too many wait:
    the oldest goes."""
    queue = MeasurementQueue(max_droppable=3)
    done: list[str] = []
    for stamp in (10, 20, 30):
        queue.put(stamp, Rank.LIDAR, partial(done.append, f"scan {stamp}"), droppable=True)
        queue.put(stamp, Rank.WHEEL, partial(done.append, f"wheel {stamp}"))
    for work in queue.take_due(30):
        work()
    assert done == ["wheel 10", "wheel 20", "wheel 30", "scan 30"]
    assert queue.dropped == 2
    for stamp in (40, 50, 60, 70):
        queue.put(stamp, Rank.LIDAR, partial(done.append, f"scan {stamp}"), droppable=True)
    assert (queue.dropped, len(queue)) == (3, 3)
    done.clear()
    for stamp in (50, 60, 70):
        for work in queue.take_due(stamp):
            work()
    assert done == ["scan 50", "scan 60", "scan 70"]


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("drive", ["sewer_dn1000"], indirect=True)
def test_slam_topic_source_fuses_the_slam_nodes_odometry(drive: Drive,
                                                          probe: RosProbe) -> None:
    """``localization.source: slam_topic``: the slam node registers, the localizer fuses."""
    nodes = NodesUnderTest(drive, "slam_topic")
    try:
        probe.record(Odometry, "/slam/odometry")
        probe.record(PoseWithCovarianceStamped, "/localization/pose")
        player = Player(probe, nodes, drive)
        wait_until(player.discovered, DISCOVERY_TIMEOUT_S, "the nodes to be discovered")
        wait_until(lambda: nodes.localizer.count_subscribers("/slam/odometry") > 0
                   and probe.node.count_publishers("/slam/odometry") == 1,
                   DISCOVERY_TIMEOUT_S, "the slam node's odometry to be discovered")
        player.play_paced(2.0)
        wait_until(lambda: probe.count("/localization/pose") > 0, STEP_TIMEOUT_S, "a pose")
        # The slam node registered (nearly) every scan; the localizer registered none itself
        assert probe.count("/slam/odometry") >= 0.9 * len(player.scan_stamps)
        assert nodes.localizer.stats.received == 0
        # Near the truth at the end
        last = probe.last("/localization/pose")
        with BagReader(drive.bag) as reader:
            truth = [(r.stamp_ns, r.data) for r in reader.records([SensorRole.GROUND_TRUTH])]
        stamp = stamp_ns(last.header.stamp)
        T_truth = min(truth, key=lambda t: abs(t[0] - stamp))[1]
        assert isinstance(T_truth, OdometrySample)
        error_m = np.linalg.norm(pose_of(last.pose.pose)[:3, 3] - T_truth.T_odom_base[:3, 3])
        print(f"\nslam_topic, {drive.world}: vs truth at the end {error_m:.3f} m")
        assert stamp >= player.messages[-1][1] - 100_000_000
        assert error_m < 0.2
    finally:
        nodes.close()
