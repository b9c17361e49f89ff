"""The ROS 2 runtime from PyPI works: two nodes in two processes talk over DDS."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from std_msgs.msg import String

from tests.integration.ros_harness import DISCOVERY_TIMEOUT_S, RosProbe, stop_process, wait_until

pytestmark = pytest.mark.ros


def test_two_processes_exchange_messages(tmp_path: Path, probe: RosProbe) -> None:
    echo_script = Path(__file__).with_name("echo_node.py")
    with (tmp_path / "echo.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, str(echo_script)], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        probe.record(String, "/pong")
        ping = probe.node.create_publisher(String, "/ping", 10)
        # Discovery: wait (bounded) until the echo process subscribes to /ping.
        wait_until(lambda: ping.get_subscription_count() > 0, DISCOVERY_TIMEOUT_S,
                   "the echo process to subscribe to /ping")
        wait_until(lambda: probe.node.count_publishers("/pong") > 0, DISCOVERY_TIMEOUT_S,
                   "the echo process to advertise /pong")
        sent = f"hello-{time.monotonic_ns()}"

        def answered() -> bool:
            ping.publish(String(data=sent))
            time.sleep(0.05)
            return probe.count("/pong") > 0

        wait_until(answered, 10.0, "a /pong answer")
        assert probe.last("/pong").data == f"pong:{sent}"
        assert proc.poll() is None, "the echo process died"
    finally:
        stop_process(proc)
