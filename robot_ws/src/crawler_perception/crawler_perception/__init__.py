"""ROS 2 adapters around perception: the defect_detector and defect_mapper nodes."""
