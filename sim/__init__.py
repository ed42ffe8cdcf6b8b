"""PyBullet world of the robot task, courses, closed-loop evaluation."""
