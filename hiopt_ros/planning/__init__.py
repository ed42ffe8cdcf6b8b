"""ROS-free upper level: subgoal (waypoint) policies."""
