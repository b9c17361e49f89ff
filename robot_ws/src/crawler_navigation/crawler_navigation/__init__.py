"""ROS 2 adapters around navigation: the slam, localizer and mission_executor nodes."""
