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


def _segment_point_distance(ax: float, ay: float, bx: float, by: float, px: float, py: float) -> float:
    """Distance from (px, py) to the segment (ax, ay)–(bx, by) (plain floats: called per candidate
    direction and obstacle, where numpy's per-call overhead dominated the planner's time)."""
    abx, aby = bx - ax, by - ay
    denom = abx * abx + aby * aby
    t = 0.0 if denom == 0.0 else min(1.0, max(0.0, ((px - ax) * abx + (py - ay) * aby) / denom))
    return math.hypot(ax + t * abx - px, ay + t * aby - py)


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

    def subgoal(self, state, goal_xy, obstacles_xyr=None,
                robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m) -> np.ndarray:
        x, y, _ = check_vector("state", state, 3).tolist()
        gx, gy = check_vector("goal_xy", goal_xy, 2).tolist()
        return np.array(self.waypoint(x, y, gx, gy, check_obstacles(obstacles_xyr).tolist(), robot_radius_m))

    def waypoint(self, x: float, y: float, gx: float, gy: float, obs: list,
                 robot_radius_m: float) -> tuple[float, float]:
        """:meth:`subgoal` on checked plain floats (obs: [x, y, r] rows), for callers that have
        validated their inputs already (a residual policy's prior)."""
        dist = math.hypot(gx - x, gy - y)
        if dist <= self.lookahead_m and self._clear(x, y, gx, gy, obs, robot_radius_m):
            return gx, gy
        base = math.atan2(gy - y, gx - x)
        reach = min(self.lookahead_m, dist)
        n = int(self.max_deviation_rad / self.step_rad)
        for k in range(n + 1):
            for sign in ((1,) if k == 0 else (1, -1)):
                ang = base + sign * k * self.step_rad
                cx, cy = x + reach * math.cos(ang), y + reach * math.sin(ang)
                if self._clear(x, y, cx, cy, obs, robot_radius_m):
                    return cx, cy
        # boxed in: hold position (the lower level then stops)
        return x, y

    def _clear(self, ax: float, ay: float, bx: float, by: float, obs: list, robot_radius_m: float) -> bool:
        """Does the segment a → b keep every obstacle's widened margin (see the class)?"""
        for ox, oy, r in obs:
            margin = r + robot_radius_m + self.clearance_m
            if math.hypot(ax - ox, ay - oy) < margin:
                # already inside the widened margin: the direction must not approach the obstacle
                # at all (a unicycle cannot slide along the margin towards a point behind it)
                if (bx - ax) * (ox - ax) + (by - ay) * (oy - ay) > 0.0:
                    return False
                continue
            if _segment_point_distance(ax, ay, bx, by, ox, oy) < margin:
                return False
        return True
