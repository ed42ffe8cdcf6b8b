"""Thin rclpy nodes: message conversion, parameters, timers; all math lives in the ROS-free core."""
