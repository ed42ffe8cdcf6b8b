"""The navigation course (start, goal, static cylindrical obstacles), read from config/nav.yaml.

config/nav.yaml is the one source of truth for the course: the simulator node, the planner node,
the pure-Python closed loop and the tests all read it through :func:`load_course` (start and
obstacles from sim_node's section, the goal and the robot radius from the shared `/**` section).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiopt_ros.control.model import DEFAULT_ROBOT
from hiopt_ros.control.params import (  # noqa: F401 (DEFAULT_PARAMS, load_params re-exported)
    DEFAULT_GOAL_TOLERANCE_M,
    DEFAULT_PARAMS,
    load_params,
    node_sections,
    robot_model_from_params,
)


@dataclass(frozen=True)
class Course:
    """A start pose, a goal position and static cylinders.

    start_xyyaw: (3,) [m, m, rad]; goal_xy: (2,) [m]; obstacles_xyr: (M, 3) rows [x_m, y_m, radius_m].
    """

    start_xyyaw: np.ndarray
    goal_xy: np.ndarray
    obstacles_xyr: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m
    goal_tolerance_m: float = DEFAULT_GOAL_TOLERANCE_M

    def __post_init__(self) -> None:
        start = np.asarray(self.start_xyyaw, dtype=float).reshape(-1)
        goal = np.asarray(self.goal_xy, dtype=float).reshape(-1)
        obs = np.asarray(self.obstacles_xyr, dtype=float).reshape(-1)
        if start.shape != (3,) or not np.all(np.isfinite(start)):
            raise ValueError(f"start_xyyaw must be 3 finite numbers [x, y, yaw], got {self.start_xyyaw!r}")
        if goal.shape != (2,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"goal_xy must be 2 finite numbers [x, y], got {self.goal_xy!r}")
        if obs.size % 3 or not np.all(np.isfinite(obs)):
            raise ValueError(f"obstacles_xyr must be finite [x, y, r] triples, got {obs.size} numbers")
        obs = obs.reshape(-1, 3)
        if np.any(obs[:, 2] <= 0):
            raise ValueError("obstacles_xyr: every radius must be > 0")
        if not (self.robot_radius_m > 0 and self.goal_tolerance_m > 0):
            raise ValueError("robot_radius_m and goal_tolerance_m must be > 0")
        object.__setattr__(self, "start_xyyaw", start)
        object.__setattr__(self, "goal_xy", goal)
        object.__setattr__(self, "obstacles_xyr", obs)

    def clearance(self, xy: np.ndarray) -> float:
        """Smallest distance [m] between the robot's enclosing circle at xy and any obstacle surface."""
        if len(self.obstacles_xyr) == 0:
            return float("inf")
        d = np.linalg.norm(self.obstacles_xyr[:, :2] - np.asarray(xy, float)[:2], axis=1)
        return float(np.min(d - self.obstacles_xyr[:, 2] - self.robot_radius_m))


def load_course(path: str | Path = DEFAULT_PARAMS) -> Course:
    """The course of a parameter file: sim_node's start and obstacles, the shared goal and robot radius."""
    sections = node_sections(path)
    sim = sections.get("sim_node", sections["/**"])
    missing = [k for k, key in (("sim_node.start_xyyaw", "start_xyyaw"), ("/**.goal_xy", "goal_xy")) if key not in sim]
    if missing:
        raise ValueError(f"{path}: missing parameter(s) {', '.join(missing)}")
    return Course(
        start_xyyaw=sim["start_xyyaw"],
        goal_xy=sim["goal_xy"],
        obstacles_xyr=sim.get("obstacles_xyr", []),
        robot_radius_m=robot_model_from_params(path).robot_radius_m,
        goal_tolerance_m=float(sim.get("goal_tolerance_m", DEFAULT_GOAL_TOLERANCE_M)),
    )
