"""What an evaluation of the robot task produces, shared by the in-process and the ROS runs of Table 2:
the methods (:data:`METHODS`), one episode's outcome (:class:`Episode`) and the table's columns
(:func:`table_metrics`). ``sim.evaluate`` runs episodes in PyBullet, ``sim.evaluate_ros`` through the
ROS 2 node graph; both build :class:`Episode` objects from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim.results import Metric, timing_stats

#: row label -> (key used on the command line / in file names)
METHODS = {
    "mpc": "MPC (expert)",
    "e2e": "End-to-end RL",
    "bilevel-unchanged": "Bi-level-unchanged",
    "bilevel-learned": "Bi-level-learned",
    "geometric": "Geometric + FOP_θ",
    "geometric-unchanged": "Geometric + FOP (θ = 0)",
}


def table_metrics():
    return [
        Metric("travel_time_s", "Travel time", "s", ".2f", higher_is_better=False),
        Metric("path_length_m", "Path length", "m", ".2f", higher_is_better=False),
        Metric("energy_j", "Energy", "J", ".1f", higher_is_better=False),
        Metric("success", "Success", "%", ".1f", higher_is_better=True, scale=100.0),
        Metric("collision", "Collisions", "%", ".1f", higher_is_better=False, scale=100.0),
        Metric("min_clearance_m", "Min clearance", "m", ".3f", higher_is_better=None),
        Metric("decision_mean_ms", "Decision time mean", "ms", ".3f", higher_is_better=False),
        Metric("decision_p99_ms", "Decision time p99", "ms", ".3f", higher_is_better=False),
    ]


@dataclass
class Episode:
    method: str
    course_seed: int
    reached: bool
    collided: bool
    time_s: float
    path_length_m: float
    energy_j: float
    min_clearance_m: float
    decision_s: list[float]
    solver_failures: int
    trajectory: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 3)))
    recoveries: int = 0              # progress-check recoveries of a residual policy in this episode

    def metrics(self) -> dict[str, float]:
        t = timing_stats(self.decision_s)
        ok = self.reached and not self.collided
        return {"travel_time_s": self.time_s if ok else math.nan,
                "path_length_m": self.path_length_m if ok else math.nan,
                "energy_j": self.energy_j if ok else math.nan,
                "success": float(ok), "collision": float(self.collided),
                "min_clearance_m": self.min_clearance_m,
                "decision_mean_ms": t["mean_ms"], "decision_p99_ms": t["p99_ms"]}
