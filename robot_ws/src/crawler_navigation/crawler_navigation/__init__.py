"""ROS 2 adapters around navigation: the slam and localizer nodes."""
