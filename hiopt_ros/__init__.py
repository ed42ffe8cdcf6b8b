"""hiopt_ros: the online hierarchical navigation stack (planner -> FOP controller), ROS-free core + thin rclpy nodes."""
