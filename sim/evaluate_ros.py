"""``python -m sim.evaluate --ros``: the Table 2 courses driven through the ROS 2 node graph.

Every (method, course) is one run of :func:`hiopt_ros.launcher.run` — the simulator, planner and
controller (or the expert, or the end-to-end node) as separate processes talking over DDS in real
time — with a parameter file that is config/nav.yaml with the course (start, goal, obstacles) and
the method's planner policy / θ written in. The numbers come from the launcher's run summary (the
sim's energy and clearance, the monitor's travel time and path length); the decision time is what
the controller, expert or e2e_node publishes on /hiopt/solve_time_us (the controller's FOP solve,
the expert's MPC solve, the end-to-end policy's forward pass spread over its planner period; the
bi-level planner's forward pass is not published). Parameter files and run folders go under ``<out>/ros/``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hiopt_ros.progress import progress_bar
from sim.courses import DEFAULT_COURSE_SEED, course_for_seed
from sim.episodes import METHODS, Episode
from sim.nav_env import NavEnvConfig


def course_params(base_params: Path, course, *, policy: str | None, theta: str | None) -> dict[str, Any]:
    """The raw parameter file `base_params` with `course` and the method's planner/controller files."""
    raw = yaml.safe_load(Path(base_params).read_text())
    raw.setdefault("/**", {}).setdefault("ros__parameters", {})["goal_xy"] = [float(v) for v in course.goal_xy]
    sim = raw.setdefault("sim_node", {}).setdefault("ros__parameters", {})
    sim["start_xyyaw"] = [float(v) for v in course.start_xyyaw]
    sim["obstacles_xyr"] = [float(v) for v in np.asarray(course.obstacles_xyr).reshape(-1)]
    raw.setdefault("planner_node", {}).setdefault("ros__parameters", {})["policy_checkpoint"] = policy or ""
    raw.setdefault("controller_node", {}).setdefault("ros__parameters", {})["theta_file"] = theta or ""
    return raw


def run(args, seeds: list[int], out: Path, progress: bool = True):
    """({method: [Episode]}, {method: description}) for args.methods on seed 0 + `seeds` via ROS."""
    from hiopt_ros import launcher  # rclpy

    cfg = NavEnvConfig.from_params(args.params)
    root = out / "ros"
    (root / "params").mkdir(parents=True, exist_ok=True)
    descs, files = {}, {}
    for key in args.methods:
        policy = theta = None
        if key in ("bilevel-learned", "bilevel-unchanged"):
            policy = str(Path(getattr(args, key.replace("-", "_"))).resolve())
        if key in ("bilevel-learned", "geometric"):
            theta = str(Path(args.theta).resolve())
        if key == "e2e":
            policy = str(Path(args.e2e).resolve())
        files[key] = (policy, theta)
        descs[key] = {"row": METHODS[key], **({"policy": policy} if policy else {}),
                      **({"theta": theta} if theta else {})}
    episodes: dict[str, list] = {k: [] for k in args.methods}
    jobs = [(k, s) for s in [DEFAULT_COURSE_SEED, *seeds] for k in args.methods]
    bar = progress_bar(jobs, enabled=progress, desc="ROS runs", unit="run")
    domain = int(os.environ.get("ROS_DOMAIN_ID", 1 + os.getpid() % 100))
    for key, seed in bar:
        course = course_for_seed(seed, args.params)
        policy, theta = files[key]
        params = root / "params" / f"{key}-{seed}.yaml"
        params.write_text(yaml.safe_dump(course_params(args.params, course, policy=None if key == "e2e" else policy,
                                                       theta=theta), sort_keys=False))
        dist = float(np.linalg.norm(course.goal_xy - course.start_xyyaw[:2]))
        limit = cfg.time_limit_factor * dist / cfg.limits.v_max_mps + cfg.time_limit_extra_s
        argv = ["--params", str(params), "--out", str(root / "runs"), "--timeout-s", f"{limit:.3f}",
                "--domain-id", str(domain)]
        if seed != DEFAULT_COURSE_SEED:
            argv.append("--no-bag")
        if key == "mpc":
            argv.append("--expert")
        if key == "e2e":
            argv += ["--e2e", policy]
        captured = {}
        summary, run_dir = launcher.run(launcher.parse_args(argv), log=lambda *a, **k: None,
                                        on_ready=lambda nodes, monitor: captured.setdefault("monitor", monitor))
        monitor = captured.get("monitor")
        traj = np.asarray(monitor.odom_xy, float).reshape(-1, 2) if monitor is not None else np.zeros((0, 2))
        solve_s = [t * 1e-6 for t in (monitor.solve_times_us if monitor is not None else [])]
        if key == "e2e":  # e2e_node publishes one decision per planner period: spread it as in-process
            solve_s = [t / cfg.control_periods for t in solve_s for _ in range(cfg.control_periods)]
        ep = Episode(key, seed, bool(summary.reached), bool(summary.collided),
                     float(summary.travel_time_s) if summary.reached else float("nan"),
                     float(summary.path_length_m), float(summary.energy_j), float(summary.min_clearance_m),
                     solve_s, 0, traj)
        episodes[key].append(ep)
        bar.set_postfix(method=key, seed=seed, result="goal" if summary.reached else summary.end_reason,
                        refresh=False)
    return episodes, descs
