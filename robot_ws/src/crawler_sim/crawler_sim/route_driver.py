"""Scripted driving for simulation: pure pursuit along the world's route on ground truth.

A test harness, not the robot's autonomy: it steers with the simulator's true pose so that
sensor and localization tests get a repeatable drive through the whole site.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile

from navigation.path import PathFollower, Polyline

QOS = QoSProfile(depth=10)


class RouteDriver(Node):
    """Publishes /cmd_vel that follows ``route`` from /sim/ground_truth; ``done`` at its end."""

    def __init__(self, route: Polyline, speed_mps: float = 0.3, lookahead_m: float = 0.8,
                 stop_at_m: float | None = None, **kwargs: Any) -> None:
        super().__init__("route_driver", **kwargs)
        self.route = route
        self.follower = PathFollower(route, lookahead_m, speed_mps)
        self.stop_at_m = route.length_m - 0.3 if stop_at_m is None else stop_at_m
        self.done = threading.Event()
        self.distance_m = 0.0
        self._pose: tuple[float, float, float] | None = None
        self._cmd = self.create_publisher(Twist, "/cmd_vel", QOS)
        self.create_subscription(Odometry, "/sim/ground_truth", self._on_truth, QOS)
        self.create_timer(0.1, self._on_timer)

    def _on_truth(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
        self._pose = (p.x, p.y, yaw)

    def _on_timer(self) -> None:
        if self._pose is None:
            return
        x, y, yaw = self._pose
        linear, angular = self.follower.command(x, y, yaw)
        self.distance_m = self.follower.progress_m
        twist = Twist()
        if self.distance_m >= self.stop_at_m:
            self.done.set()
        else:
            twist.linear.x, twist.angular.z = linear, angular
        self._cmd.publish(twist)
