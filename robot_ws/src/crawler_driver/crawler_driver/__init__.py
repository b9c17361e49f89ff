"""ROS 2 adapter around ``firmware_bridge``: the ``crawler_driver`` lifecycle node."""
