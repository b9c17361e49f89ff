"""A node in its own process for the runtime test: answers every /ping with /pong."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from std_msgs.msg import String


class Echo(Node):
    """Republishes each /ping as /pong with a prefix."""

    def __init__(self) -> None:
        super().__init__("echo")
        self._pub = self.create_publisher(String, "/pong", 10)
        self.create_subscription(String, "/ping", self._on_ping, 10)

    def _on_ping(self, msg: String) -> None:
        self._pub.publish(String(data=f"pong:{msg.data}"))


def main() -> None:
    """Spin until interrupted."""
    rclpy.init()
    node = Echo()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
