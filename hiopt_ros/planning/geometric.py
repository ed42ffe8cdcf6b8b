"""A geometric upper level: a look-ahead waypoint that steers around obstacles.

This is the default subgoal policy when no trained policy is configured. It proposes the point
`lookahead_m` ahead along the direction to the goal; if the straight segment to that point passes
within an obstacle's margin, it rotates the direction (alternating sides, smallest deviation
first, a fixed set of candidates) until the segment is clear. Near the goal it proposes the goal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..control.model import DEFAULT_ROBOT, check_obstacles, check_vector


def _segment_point_distance(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> float:
    ab = b - a
    denom = float(ab @ ab)
    s = 0.0 if denom == 0.0 else min(1.0, max(0.0, float((p - a) @ ab) / denom))
    return float(np.linalg.norm(a + s * ab - p))


@dataclass
class LookaheadPolicy:
    """Waypoint p̂ = a clear point `lookahead_m` ahead towards the goal."""

    lookahead_m: float = 0.6
    clearance_m: float = 0.2          # extra room kept from obstacle margins when choosing a direction
    max_deviation_rad: float = math.radians(120.0)
    step_rad: float = math.radians(5.0)

    def __post_init__(self) -> None:
        if not (self.lookahead_m > 0 and math.isfinite(self.lookahead_m)):
            raise ValueError(f"lookahead_m must be > 0, got {self.lookahead_m!r}")
        if not (self.clearance_m >= 0 and math.isfinite(self.clearance_m)):
            raise ValueError(f"clearance_m must be >= 0, got {self.clearance_m!r}")

    def subgoal(self, state, goal_xy, obstacles_xyr=None, robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m) -> np.ndarray:
        state = check_vector("state", state, 3)
        goal = check_vector("goal_xy", goal_xy, 2)
        obs = check_obstacles(obstacles_xyr)
        pos = state[:2]
        to_goal = goal - pos
        dist = float(np.linalg.norm(to_goal))
        if dist <= self.lookahead_m and self._clear(pos, goal, obs, robot_radius_m):
            return goal.copy()
        base = math.atan2(to_goal[1], to_goal[0])
        reach = min(self.lookahead_m, dist)
        n = int(self.max_deviation_rad / self.step_rad)
        for k in range(n + 1):
            for sign in ((1,) if k == 0 else (1, -1)):
                ang = base + sign * k * self.step_rad
                cand = pos + reach * np.array([math.cos(ang), math.sin(ang)])
                if self._clear(pos, cand, obs, robot_radius_m):
                    return cand
        # boxed in: hold position (the lower level then stops)
        return pos.copy()

    def _clear(self, a: np.ndarray, b: np.ndarray, obs: np.ndarray, robot_radius_m: float) -> bool:
        for ox, oy, r in obs:
            margin = r + robot_radius_m + self.clearance_m
            centre = np.array([ox, oy])
            if np.linalg.norm(a - centre) < margin:
                # already inside the widened margin: the direction must not approach the obstacle
                # at all (a unicycle cannot slide along the margin towards a point behind it)
                if float((b - a) @ (centre - a)) > 0.0:
                    return False
                continue
            if _segment_point_distance(a, b, centre) < margin:
                return False
        return True
