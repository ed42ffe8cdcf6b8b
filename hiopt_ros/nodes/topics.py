"""Topic names and QoS profiles of the node graph: one place that says what goes on which topic, and how.

QoS (chosen on purpose, publishers and subscribers use the same profiles):

==========================  =========================================  ==============================
profile                     used for                                   why
==========================  =========================================  ==============================
``SENSOR_QOS``              /odom                                      best effort, depth 5: a late
                                                                       sample is useless, a fresh one
                                                                       follows
``COMMAND_QOS``             /cmd_vel, /hiopt/subgoal, solve time       reliable, volatile, depth 50:
                                                                       a subscriber (the recorder)
                                                                       that lags up to 1 s at 50 Hz
                                                                       still gets every command
``LATCHED_QOS``             /hiopt/obstacles, /hiopt/collision,        reliable + transient local,
                            /hiopt/goal_reached                        depth 1: late joiners get the
                                                                       last value
==========================  =========================================  ==============================
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

SENSOR_QOS = qos_profile_sensor_data
COMMAND_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)  # what rclpy's TimeSource uses

#: topic names (Nav2 conventions + the /hiopt namespace); remap them with --ros-args -r
TOPIC_ODOM = "/odom"
TOPIC_CMD_VEL = "/cmd_vel"
TOPIC_GOAL = "/goal_pose"
TOPIC_SUBGOAL = "/hiopt/subgoal"
TOPIC_OBSTACLES = "/hiopt/obstacles"
TOPIC_COLLISION = "/hiopt/collision"
TOPIC_GOAL_REACHED = "/hiopt/goal_reached"
TOPIC_SOLVE_TIME = "/hiopt/solve_time_us"
TOPIC_DIAGNOSTICS = "/diagnostics"

PUBLISHED_PREFIX = "published:"   # diagnostics key of a node's own count of messages on a topic
ACTIVE_KEY = "active"             # diagnostics key: False in the final report a node sends when deactivated
