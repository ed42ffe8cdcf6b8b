"""The observation and action contract between the RL upper level's training and its deployment.

``sim.nav_env`` builds the observation the policy is trained on with :func:`observation`, and
``hiopt_ros.planning.torch_policy`` (planner_node, sim.evaluate) builds it with the same functions
when it runs the exported module; the action is turned into a subgoal here for both. No torch here.

Observation (float32, length ``3 + 3 * n_obstacles``; everything in the robot's body frame:
x forward, y left, origin at the robot):

    [0:2]   goal position relative to the robot, body frame [m]
    [2]     distance to the goal [m]
    [3 + 3j : 6 + 3j], j = 0..n_obstacles-1, the n nearest obstacles by clearance, nearest first:
            obstacle centre relative to the robot, body frame [m] (2), clearance from the robot's
            circle to the obstacle's surface [m] (1). Missing obstacles are padded with
            ``PAD = (0, 0, PAD_CLEARANCE_M)`` (far away, no direction).

Action (module output, length 2), by the module's ``action_kind``:

* :data:`ACTION_SUBGOAL` (``"subgoal_offset_body_m"``): the subgoal relative to the robot in the
  body frame [m]; p̂ = p + R(yaw) · action.
* :data:`ACTION_RESIDUAL` (``"subgoal_residual_body_m"``): a body-frame correction [m] of the
  geometric look-ahead waypoint p̄ (:class:`~hiopt_ros.planning.geometric.LookaheadPolicy` with the
  module's ``prior_lookahead_m`` and ``prior_clearance_m``, the values it was trained with);
  p̂ = p̄ + R(yaw) · action. Residual policy learning: the RL upper level learns what the geometric
  prior gets wrong for its lower level, and an all-zero output is the prior itself.

Either way the offset p̂ − p is clipped to ``max_distance_m``.
"""
from __future__ import annotations

import math

import numpy as np

from hiopt_ros.control.model import DEFAULT_ROBOT, check_obstacles, check_vector

OBSERVATION_VERSION = 1
ACTION_SUBGOAL = "subgoal_offset_body_m"   # output: subgoal offset [m], body frame (bi-level upper level)
ACTION_RESIDUAL = "subgoal_residual_body_m"  # output: correction [m], body frame, of the look-ahead waypoint
ACTION_COMMAND = "cmd_vel"                 # output: (v [m/s], ω [rad/s]) (end-to-end baseline)
SUBGOAL_KINDS = (ACTION_SUBGOAL, ACTION_RESIDUAL)   # what planner_node runs
DEFAULT_N_OBSTACLES = 4
PAD_CLEARANCE_M = 10.0


def observation_size(n_obstacles: int = DEFAULT_N_OBSTACLES) -> int:
    return 3 + 3 * n_obstacles


def observation(state, goal_xy, obstacles_xyr=None, robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m,
                n_obstacles: int = DEFAULT_N_OBSTACLES) -> np.ndarray:
    """The policy's input (see the module docstring): shape (3 + 3·n_obstacles,), float32."""
    x, y, yaw = check_vector("state", state, 3).tolist()
    gx, gy = check_vector("goal_xy", goal_xy, 2).tolist()
    return observation_of(x, y, yaw, gx, gy, check_obstacles(obstacles_xyr).tolist(), robot_radius_m, n_obstacles)


def observation_of(x: float, y: float, yaw: float, gx: float, gy: float, obstacles: list, robot_radius_m: float,
                 n_obstacles: int) -> np.ndarray:
    """:func:`observation` on checked plain floats (obstacles: [x, y, r] rows)."""
    c, s = math.cos(yaw), math.sin(yaw)
    # plain floats: a handful of obstacles, once per planner period (numpy per obstacle cost ~4x more)
    rows = []
    for ox, oy, r in obstacles:
        dx, dy = ox - x, oy - y
        bx, by = c * dx + s * dy, -s * dx + c * dy        # R(yaw)ᵀ (p_obs − p)
        rows.append((math.hypot(bx, by) - r - robot_radius_m, bx, by))
    rows.sort()
    out = [0.0] * observation_size(n_obstacles)
    dx, dy = gx - x, gy - y
    out[0], out[1] = c * dx + s * dy, -s * dx + c * dy
    out[2] = math.hypot(out[0], out[1])
    for j in range(n_obstacles):
        clearance, bx, by = rows[j] if j < len(rows) else (PAD_CLEARANCE_M, 0.0, 0.0)
        out[3 + 3 * j: 6 + 3 * j] = (bx, by, clearance)
    return np.array(out, dtype=np.float32)


def clip_offset(dx: float, dy: float, max_distance_m: float) -> tuple[float, float]:
    norm = math.hypot(dx, dy)
    if norm > max_distance_m:
        k = max_distance_m / norm
        return dx * k, dy * k
    return dx, dy


def action_to_subgoal(state, action, max_distance_m: float) -> np.ndarray:
    """World-frame subgoal from a body-frame offset, clipped to max_distance_m."""
    x, y, yaw = check_vector("state", state, 3).tolist()
    ax, ay = check_vector("action", action, 2).tolist()
    return np.array(offset_xy(x, y, yaw, ax, ay, max_distance_m))


def offset_xy(x: float, y: float, yaw: float, ax: float, ay: float, max_distance_m: float) -> tuple[float, float]:
    """:func:`action_to_subgoal` on checked plain floats."""
    ax, ay = clip_offset(ax, ay, max_distance_m)
    c, s = math.cos(yaw), math.sin(yaw)
    return x + c * ax - s * ay, y + s * ax + c * ay


def residual_to_subgoal(state, prior_xy, residual, max_distance_m: float) -> np.ndarray:
    """World-frame subgoal p̂ = p̄ + R(yaw)·residual from the prior waypoint p̄ and a body-frame
    correction, its offset from the robot clipped to max_distance_m."""
    x, y, yaw = check_vector("state", state, 3).tolist()
    px, py = check_vector("prior_xy", prior_xy, 2).tolist()
    rx, ry = check_vector("residual", residual, 2).tolist()
    return np.array(residual_xy(x, y, yaw, px, py, rx, ry, max_distance_m))


def residual_xy(x: float, y: float, yaw: float, px: float, py: float, rx: float, ry: float,
                 max_distance_m: float) -> tuple[float, float]:
    """:func:`residual_to_subgoal` on checked plain floats."""
    c, s = math.cos(yaw), math.sin(yaw)
    dx, dy = clip_offset(px - x + c * rx - s * ry, py - y + s * rx + c * ry, max_distance_m)
    return x + dx, y + dy
