"""TEMPORARY re-export until the import rewrite: common.py was split by job into topics.py (topic names, QoS),
parameters.py (Params and the shared declarations), managed.py (ManagedNode, its publishers and diagnostics)
and process.py (node_main, run_node, StopSignal, ExitDeadline); see docs/development.md."""
# TEMPORARY re-export until the import rewrite
from hiopt_ros.conversions import (  # noqa: F401
    FRAME_BASE,
    FRAME_ODOM,
    header_ns,
    obstacle_markers,
    obstacles_from_markers,
    odom_state,
    set_yaw,
    twist_values,
    yaw_from_quaternion,
)
from hiopt_ros.nodes.managed import *  # noqa: F401,F403
from hiopt_ros.nodes.parameters import *  # noqa: F401,F403
from hiopt_ros.nodes.process import *  # noqa: F401,F403
from hiopt_ros.nodes.topics import *  # noqa: F401,F403
