"""Test-wide setup: every run gets its own ROS 2 domain and stays on localhost."""

from __future__ import annotations

import os

# Before anything imports rclpy: a domain id of our own (0..101 map to distinct DDS ports), so
# parallel runs and a crew's live robot on the same machine never see our test traffic.
os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 90)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
