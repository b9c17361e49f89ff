"""Keyboard teleop: w/s speed up and down, a/d turn, space stops, q quits.

The node publishes the current command on /cmd_vel at 10 Hz, so the driver's /cmd_vel
timeout keeps the robot moving while a key is not pressed and stops it if this process dies.
"""

from __future__ import annotations

import contextlib
import select
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any

from geometry_msgs.msg import Twist
from rclpy.node import Node
from rclpy.qos import QoSProfile

SPEED_STEP_MPS = 0.05
TURN_STEP_RADPS = 0.2
MAX_SPEED_MPS = 1.0
MAX_TURN_RADPS = 1.0
HELP = "teleop: w/s faster/slower, a/d turn left/right, space stop, q quit"


class Teleop(Node):
    """Holds the commanded twist and republishes it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("teleop", **kwargs)
        self.linear_mps = 0.0
        self.angular_radps = 0.0
        self._pub = self.create_publisher(Twist, "/cmd_vel", QoSProfile(depth=10))
        self.create_timer(0.1, self._publish)

    def key(self, key: str) -> bool:
        """Apply one key press; return False for quit."""
        match key:
            case "w":
                self.linear_mps = min(self.linear_mps + SPEED_STEP_MPS, MAX_SPEED_MPS)
            case "s":
                self.linear_mps = max(self.linear_mps - SPEED_STEP_MPS, -MAX_SPEED_MPS)
            case "a":
                self.angular_radps = min(self.angular_radps + TURN_STEP_RADPS, MAX_TURN_RADPS)
            case "d":
                self.angular_radps = max(self.angular_radps - TURN_STEP_RADPS, -MAX_TURN_RADPS)
            case " ":
                self.linear_mps = self.angular_radps = 0.0
            case "q" | "\x03":
                self.linear_mps = self.angular_radps = 0.0
                return False
        return True

    def _publish(self) -> None:
        msg = Twist()
        msg.linear.x, msg.angular.z = self.linear_mps, self.angular_radps
        self._pub.publish(msg)


@contextlib.contextmanager
def raw_terminal() -> Iterator[None]:
    """Single key presses from stdin, restoring the terminal afterwards."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def read_key(timeout_s: float) -> str | None:
    """One key from stdin, or None after ``timeout_s``."""
    readable, _, _ = select.select([sys.stdin], [], [], timeout_s)
    return sys.stdin.read(1) if readable else None
