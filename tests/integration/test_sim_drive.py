"""Driving 50 m through /cmd_vel -> crawler_driver -> MCU emulator on a pty -> simulator."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from std_msgs.msg import Float64

from sim_worlds.simulator.simulation import SimConfig
from tests.integration.ros_harness import (
    DISCOVERY_TIMEOUT_S,
    RosProbe,
    spawn_crawler,
    stop_process,
    wait_until,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]
COMMANDED_M = 50.0


def test_driving_50_m_in_the_sewer_ends_within_the_slip_of_the_command(
    probe: RosProbe, tmp_path: Path
) -> None:
    sim = spawn_crawler("sim", "sewer_dn1000", "--drive", "none", "--no-camera", "--rtf", "4",
                        log=tmp_path / "sim.log")
    try:
        probe.record(Odometry, "/odom/wheel")
        probe.record(Odometry, "/sim/ground_truth")
        probe.record(Float64, "/tether/length")
        cmd_vel = probe.node.create_publisher(Twist, "/cmd_vel", 10)
        wait_until(lambda: cmd_vel.get_subscription_count() > 0, DISCOVERY_TIMEOUT_S + 20,
                   "crawler_driver in the sim process")
        wait_until(lambda: probe.count("/odom/wheel") > 0, DISCOVERY_TIMEOUT_S, "odometry")
        wait_until(lambda: probe.count("/sim/ground_truth") > 0, DISCOVERY_TIMEOUT_S,
                   "ground truth")
        start = probe.last("/sim/ground_truth").pose.pose.position
        forward = Twist()
        forward.linear.x = 0.8
        deadline = time.monotonic() + 120.0
        # Drive until the wheel odometry (what the crew's counter shows) says 50 m.
        while probe.last("/odom/wheel").pose.pose.position.x < COMMANDED_M:
            assert time.monotonic() < deadline, "the crawler did not cover 50 m in time"
            cmd_vel.publish(forward)
            time.sleep(0.05)
        for _ in range(10):
            cmd_vel.publish(Twist())
            time.sleep(0.05)
        wait_until(lambda: abs(probe.last("/sim/ground_truth").twist.twist.linear.x) < 1e-3,
                   10.0, "the crawler to stop")
        end = probe.last("/sim/ground_truth").pose.pose.position
        travelled_m = math.dist((start.x, start.y, start.z), (end.x, end.y, end.z))
        odom_m = probe.last("/odom/wheel").pose.pose.position.x
        slip = SimConfig().slip_wet  # the first 50 m are wet invert, no sediment
        # The body covers the tracks' distance less the slip (+-1 %, for the stop ramp).
        assert travelled_m == pytest.approx(odom_m * (1 - slip), rel=0.01)
        assert travelled_m < odom_m - 2.0  # slip is real: wheel odometry overestimates
        tether_m = probe.last("/tether/length").data
        assert tether_m == pytest.approx(travelled_m, rel=0.02)  # the cable follows the body
        assert sim.poll() is None, "the simulator exited"
    finally:
        stop_process(sim, timeout_s=10.0)
