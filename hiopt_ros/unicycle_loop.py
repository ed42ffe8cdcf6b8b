"""The pure-Python closed loop (no ROS, no physics): the unicycle model driven from a course's start to its goal
by the MPC expert or by the bi-level policy (geometric look-ahead subgoals → FOP_θ).

The ROS-free twin of the node graph, used by ``python -m sim.kinematic_loop`` (its command line), by
``python -m hiopt_ros.bench --node-rate`` (a drive to replay when no bag is given) and by the offline fits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hiopt_ros.control.fop import Fop, FopConfig
from hiopt_ros.control.model import unicycle_step
from hiopt_ros.control.mpc import Mpc, MpcConfig
from hiopt_ros.course import Course
from hiopt_ros.planning.geometric import LookaheadPolicy


@dataclass
class EpisodeResult:
    controller: str
    reached: bool
    collided: bool
    travel_time_s: float
    path_length_m: float
    min_clearance_m: float
    solve_us: np.ndarray
    failures: int
    trajectory: np.ndarray                      # (T, 3) states
    subgoals: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def summary(self) -> str:
        p50, p99 = (np.percentile(self.solve_us, [50, 99]) if len(self.solve_us) else (np.nan, np.nan))
        outcome = "reached goal" if self.reached else ("COLLIDED" if self.collided else "did NOT reach goal")
        return (f"{self.controller:>4}: {outcome}; travel time {self.travel_time_s:.2f} s, path length "
                f"{self.path_length_m:.2f} m, min clearance {self.min_clearance_m:.3f} m, "
                f"solve time p50 {p50:.0f} µs / p99 {p99:.0f} µs, solver failures {self.failures}")


def run_episode(course: Course, controller: str = "fop", *, fop: Fop | None = None, mpc: Mpc | None = None,
                policy: LookaheadPolicy | None = None, dt_s: float = 0.02, max_time_s: float = 30.0) -> EpisodeResult:
    """Drive from course.start to course.goal; `controller` is "fop" (bi-level) or "mpc" (expert)."""
    if controller not in ("fop", "mpc"):
        raise ValueError(f"controller must be 'fop' or 'mpc', got {controller!r}")
    if controller == "fop":
        fop = fop or Fop(FopConfig(robot_radius_m=course.robot_radius_m))
        fop.reset()   # a new run: u_{t−1} of the c_du term is the stop command
        policy = policy or LookaheadPolicy()
    else:
        mpc = mpc or Mpc(MpcConfig(robot_radius_m=course.robot_radius_m))
        mpc.reset()
    x = course.start_xyyaw.copy()
    traj, subgoals, times = [x.copy()], [], []
    failures, reached, collided = 0, False, False
    min_clear = course.clearance(x[:2])
    for _ in range(int(round(max_time_s / dt_s))):
        if controller == "fop":
            subgoal = policy.subgoal(x, course.goal_xy, course.obstacles_xyr, course.robot_radius_m)
            u, info = fop.solve(x, subgoal, course.obstacles_xyr)
        else:
            u, info = mpc.solve(x, course.goal_xy, course.obstacles_xyr)
            subgoal = info.subgoal
        subgoals.append(subgoal)
        times.append(info.solve_time_us)
        failures += not info.ok
        x = unicycle_step(x, u, dt_s)
        traj.append(x.copy())
        clear = course.clearance(x[:2])
        min_clear = min(min_clear, clear)
        if clear < 0:  # the robot circle touches an obstacle
            collided = True
            break
        if np.linalg.norm(x[:2] - course.goal_xy) <= course.goal_tolerance_m:
            reached = True
            break
    traj = np.array(traj)
    return EpisodeResult(controller, reached, collided, (len(traj) - 1) * dt_s,
                         float(np.linalg.norm(np.diff(traj[:, :2], axis=0), axis=1).sum()), min_clear,
                         np.array(times), failures, traj, np.array(subgoals))
