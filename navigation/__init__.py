"""Localization, mapping, planning and mission logic; pure Python/numpy, no ROS import."""
