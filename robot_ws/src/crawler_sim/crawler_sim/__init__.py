"""ROS 2 adapter around sim_worlds.simulator: the crawler_sim node, route driver, teleop."""
