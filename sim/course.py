"""The navigation course (start, goal, static cylindrical obstacles), read from config/nav.yaml.

config/nav.yaml is the one source of truth for the course: the simulator node, the planner node,
the pure-Python closed loop and the tests all read it through :func:`load_course`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiopt_ros.control.params import load_params  # noqa: F401  (re-exported: sim.course.load_params)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = REPO_ROOT / "config" / "nav.yaml"  # the same file as hiopt_ros.control.params.DEFAULT_PARAMS


@dataclass(frozen=True)
class Course:
    """A start pose, a goal position and static cylinders.

    start_xyyaw: (3,) [m, m, rad]; goal_xy: (2,) [m]; obstacles_xyr: (M, 3) rows [x_m, y_m, radius_m].
    """

    start_xyyaw: np.ndarray
    goal_xy: np.ndarray
    obstacles_xyr: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    robot_radius_m: float = 0.3
    goal_tolerance_m: float = 0.15

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
    """The course described by the sim_node and planner_node sections of a parameter file."""
    params = load_params(path)
    sim, planner = params.get("sim_node", {}), params.get("planner_node", {})
    missing = [k for k, sec in (("sim_node.start_xyyaw", sim), ("planner_node.goal_xy", planner))
               if k.split(".")[1] not in sec]
    if missing:
        raise ValueError(f"{path}: missing parameter(s) {', '.join(missing)}")
    return Course(
        start_xyyaw=sim["start_xyyaw"],
        goal_xy=planner["goal_xy"],
        obstacles_xyr=sim.get("obstacles_xyr", []),
        robot_radius_m=float(sim.get("robot_radius_m", 0.3)),
        goal_tolerance_m=float(planner.get("goal_tolerance_m", 0.15)),
    )
