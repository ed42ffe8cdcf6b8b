"""Message conversions shared by the nodes (rclpy messages) and the bag tools (rosbags messages).

Both libraries give messages with the same field names (``msg.pose.pose.position.x``,
``msg.header.stamp.sec``), so every function here works on either; the few that build messages
take a factory for the empty message. This module imports neither rclpy nor rosbags: the online
stack and the offline tools agree on frames, markers and angles because they run the same code.

Conventions:
* frames (REP 105): ``odom`` is the fixed frame of odometry, subgoals and obstacles; ``base_link``
  the robot body; ``map`` is not used by the stack (there is no localisation).
* obstacles travel as visualization_msgs/MarkerArray: one DELETEALL marker (a display drops the
  previous set), then one CYLINDER per obstacle with scale.x = scale.y = diameter.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

FRAME_ODOM = "odom"
FRAME_BASE = "base_link"

OBSTACLE_NS = "obstacles"
OBSTACLE_HEIGHT_M = 0.5          # height of the cylinders, in the simulator and in the markers
OBSTACLE_RGBA = (0.8, 0.3, 0.2, 0.9)
# visualization_msgs/Marker constants (identical in every ROS 2 distribution)
MARKER_CYLINDER = 3
MARKER_ADD = 0
MARKER_DELETEALL = 3


def yaw_from_quaternion(q: Any) -> float:
    """Yaw [rad] (rotation about z) of a geometry_msgs/Quaternion; NaN when a component is not finite
    (atan2 would turn e.g. z = w = inf into a finite, wrong 3π/4)."""
    if not all(math.isfinite(v) for v in (q.x, q.y, q.z, q.w)):
        return math.nan
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def set_yaw(q: Any, yaw: float) -> None:
    """Write a pure rotation about z by `yaw` [rad] into a geometry_msgs/Quaternion."""
    q.x, q.y, q.z, q.w = 0.0, 0.0, math.sin(0.5 * float(yaw)), math.cos(0.5 * float(yaw))


def set_header(msg: Any, t_ns: int, frame_id: str) -> None:
    """std_msgs/Header: stamp from integer nanoseconds and the frame."""
    msg.header.stamp.sec = int(t_ns // 1_000_000_000)
    msg.header.stamp.nanosec = int(t_ns % 1_000_000_000)
    msg.header.frame_id = frame_id


def header_ns(msg: Any) -> int:
    """The header stamp in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def odom_values(msg: Any) -> list[float]:
    """[x_m, y_m, yaw_rad, v_mps, omega_radps] of a nav_msgs/Odometry."""
    p, tw = msg.pose.pose, msg.twist.twist
    return [p.position.x, p.position.y, yaw_from_quaternion(p.orientation), tw.linear.x, tw.angular.z]


def odom_state(msg: Any) -> np.ndarray:
    """[x_m, y_m, yaw_rad] of a nav_msgs/Odometry (the state of Eq. 32)."""
    p = msg.pose.pose
    return np.array([p.position.x, p.position.y, yaw_from_quaternion(p.orientation)])


def fill_odometry(msg: Any, t_ns: int, x: float, y: float, yaw: float, v: float, omega: float) -> Any:
    """nav_msgs/Odometry in frame odom → base_link: pose (x, y, yaw) and body twist (v, omega)."""
    set_header(msg, t_ns, FRAME_ODOM)
    msg.child_frame_id = FRAME_BASE
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    set_yaw(msg.pose.pose.orientation, yaw)
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = float(v), float(omega)
    return msg


def twist_values(msg: Any) -> tuple[float, float]:
    """(v_mps, omega_radps) of a geometry_msgs/Twist or TwistStamped."""
    twist = getattr(msg, "twist", msg)
    return float(twist.linear.x), float(twist.angular.z)


def point_values(msg: Any) -> tuple[float, float]:
    """(x_m, y_m) of a geometry_msgs/PointStamped or PoseStamped (a subgoal)."""
    pt = msg.point if hasattr(msg, "point") else msg.pose.position
    return float(pt.x), float(pt.y)


def obstacles_from_markers(msg: Any) -> np.ndarray:
    """(m, 3) [x_m, y_m, radius_m] of the CYLINDER markers being added (a DELETEALL carries none)."""
    rows = [[m.pose.position.x, m.pose.position.y, 0.5 * max(m.scale.x, m.scale.y)]
            for m in msg.markers if m.type == MARKER_CYLINDER and m.action == MARKER_ADD]
    return np.asarray(rows, dtype=float).reshape(-1, 3)


def obstacle_markers(obstacles_xyr: Any, new_marker: Callable[[], Any], t_ns: int,
                     frame_id: str = FRAME_ODOM) -> list:
    """The markers of an obstacle set: a DELETEALL, then one CYLINDER per [x, y, r] row (scale = diameter).

    `new_marker()` returns an empty visualization_msgs/Marker of the caller's library.
    """
    clear = new_marker()
    set_header(clear, t_ns, frame_id)
    clear.ns, clear.action = OBSTACLE_NS, MARKER_DELETEALL
    clear.pose.orientation.w = 1.0  # the identity (rclpy's default; rosbags' empty message has w = 0)
    markers = [clear]
    for j, (x, y, r) in enumerate(np.asarray(obstacles_xyr, dtype=float).reshape(-1, 3)):
        m = new_marker()
        set_header(m, t_ns, frame_id)
        m.ns, m.id, m.type, m.action = OBSTACLE_NS, j, MARKER_CYLINDER, MARKER_ADD
        m.pose.position.x, m.pose.position.y, m.pose.position.z = float(x), float(y), OBSTACLE_HEIGHT_M / 2.0
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = 2.0 * float(r)
        m.scale.z = OBSTACLE_HEIGHT_M
        m.color.r, m.color.g, m.color.b, m.color.a = OBSTACLE_RGBA
        markers.append(m)
    return markers
