"""Courses of the robot task drawn from a seed, and the disjoint seed ranges of training and evaluation.

A course is a start pose, a goal and 1–4 static cylinders (:class:`hiopt_ros.course.Course`). Seed 0 is
the default course of ``config/nav.yaml``; every other seed s draws a course with
:func:`random_course` ``(np.random.default_rng(s), default course, max_obstacles=4)`` — the
generator the expert demonstrations of ``offline.demos`` use, so the lower level's θ is fitted and
the upper level is trained on the same distribution of courses: a random start and heading, a goal
0.8–1.2 × the default start–goal distance away, 1–4 cylinders near the straight line, none
covering the start or the goal. The default course lies in the support of that distribution (start
at the origin, heading 0, 4 m, two 0.3 m cylinders near the line).

Seed ranges (printed by ``sim.train`` and ``sim.evaluate``):

* :data:`TRAIN_SEEDS` 1 … 999 999 — the only courses RL training ever sees;
* :data:`EVAL_SEEDS` 1 000 000 … — held out: never used in training (Table 2 uses the first N);
* seed 0 (:data:`DEFAULT_COURSE_SEED`) — the default course, in neither range (held out too).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from hiopt_ros.course import DEFAULT_PARAMS, Course, load_course

DEFAULT_COURSE_SEED = 0
TRAIN_SEEDS = range(1, 1_000_000)
EVAL_SEEDS = range(1_000_000, 2_000_000)
MAX_OBSTACLES = 4


def random_course(rng: np.random.Generator, base: Course, max_obstacles: int = 3) -> Course:
    """A course at the scale of `base`: random start/heading, goal 0.8–1.2 × base distance away,
    1..max_obstacles cylinders near the start–goal line, none covering the start or the goal."""
    dist = float(np.linalg.norm(base.goal_xy - base.start_xyyaw[:2])) or 4.0
    radii = base.obstacles_xyr[:, 2] if len(base.obstacles_xyr) else np.array([0.3])
    r_lo, r_hi = 0.7 * float(radii.min()), 1.15 * float(radii.max())
    length = dist * rng.uniform(0.8, 1.2)
    heading = rng.uniform(-math.pi, math.pi)
    start_xy = rng.uniform(-1.0, 1.0, size=2)
    direction = np.array([math.cos(heading), math.sin(heading)])
    normal = np.array([-direction[1], direction[0]])
    goal_xy = start_xy + length * direction
    start = np.array([*start_xy, heading + rng.uniform(-0.5, 0.5)])
    keep_out = base.robot_radius_m + 0.3
    obstacles = []
    for _ in range(int(rng.integers(1, max_obstacles + 1))):
        for _attempt in range(50):
            r = rng.uniform(r_lo, r_hi)
            center = start_xy + rng.uniform(0.25, 0.75) * length * direction + rng.uniform(-0.4, 0.4) * normal
            if all(np.linalg.norm(center - p) > r + keep_out for p in (start_xy, goal_xy)):
                obstacles.append([*center, r])
                break
    return Course(start_xyyaw=start, goal_xy=goal_xy, obstacles_xyr=np.array(obstacles).reshape(-1, 3),
                  robot_radius_m=base.robot_radius_m, goal_tolerance_m=base.goal_tolerance_m)



@lru_cache(maxsize=8)
def _base(params: str) -> Course:
    return load_course(params)


def course_for_seed(seed: int, params: str | Path = DEFAULT_PARAMS) -> Course:
    """The course of `seed`: seed 0 is the default course of `params`, any other seed a random one
    at its scale (see the module docstring). Deterministic: the same seed gives the same course."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"course seed must be an integer >= 0, got {seed!r}")
    base = _base(str(params))
    if seed == DEFAULT_COURSE_SEED:
        return base
    return random_course(np.random.default_rng(int(seed)), base, max_obstacles=MAX_OBSTACLES)


def describe_seed_ranges() -> str:
    """One line naming the training and evaluation course seed ranges (for logs and reports)."""
    return (f"course seeds: training {TRAIN_SEEDS.start}..{TRAIN_SEEDS.stop - 1}, "
            f"evaluation (held out) {EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1}, "
            f"default course of config/nav.yaml = seed {DEFAULT_COURSE_SEED} (never trained on)")
