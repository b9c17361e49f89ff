"""Keyboard teleop: keys change the command it keeps publishing on /cmd_vel."""

from __future__ import annotations

import pytest
from geometry_msgs.msg import Twist

from crawler.teleop import MAX_SPEED_MPS, SPEED_STEP_MPS, TURN_STEP_RADPS, Teleop
from tests.integration.ros_harness import RosProbe, wait_until

pytestmark = pytest.mark.ros


def test_keys_steer_and_the_command_is_republished(probe: RosProbe) -> None:
    teleop = Teleop(context=probe.context)
    probe.executor.add_node(teleop)
    probe.record(Twist, "/cmd_vel")
    try:
        for key in "wwwa":
            assert teleop.key(key)
        assert teleop.linear_mps == pytest.approx(3 * SPEED_STEP_MPS)
        assert teleop.angular_radps == pytest.approx(TURN_STEP_RADPS)
        last = wait_until(lambda: probe.last("/cmd_vel"), 5.0, "a /cmd_vel from teleop")
        wait_until(lambda: probe.last("/cmd_vel").linear.x == pytest.approx(0.15), 2.0,
                   "the new command")
        assert last is not None
        for _ in range(100):
            teleop.key("w")
        assert teleop.linear_mps == MAX_SPEED_MPS  # capped
        teleop.key(" ")
        assert (teleop.linear_mps, teleop.angular_radps) == (0.0, 0.0)
        assert not teleop.key("q")
    finally:
        probe.executor.remove_node(teleop)
        teleop.destroy_node()
