"""Record expert demonstrations into a rosbag2 bag: `python -m offline.demos --out PATH.mcap`.

A ROS-free closed loop: the MPC expert (hiopt_ros.control.mpc) drives the unicycle model
(hiopt_ros.control.model.unicycle_step) at the control period on randomised courses, and every
control step is logged as the online stack would record it:

    /odom             nav_msgs/Odometry                  state x_t and the velocity being applied
    /cmd_vel          geometry_msgs/Twist                the expert action u_t
    /hiopt/subgoal    geometry_msgs/PointStamped         the expert's implied subgoal x̂_t (MpcInfo.subgoal)
    /hiopt/obstacles  visualization_msgs/MarkerArray     the course's cylinders
    /hiopt/expert_plan nav_msgs/Path                     the expert's whole plan (N+1 poses), so a fit
                                                         can define the subgoal k steps ahead for any k
    /hiopt/episode    std_msgs/String (JSON)             one per episode, at its end: index, start and
                                                         end time, reached / collided, the course

The bag feeds `python -m offline.fit` (bag → θ → controller). Courses are drawn around the default
course of config/nav.yaml (its start–goal distance, obstacle count and radii): a random start and
heading, a goal at 0.8–1.2 × the default distance, and 1–3 cylinders near the straight line
between them. Episodes are separated by a time gap so no sample is aligned across episodes.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hiopt_ros import conversions as conv
from hiopt_ros.bags import BagError, BagWriter, new_message
from hiopt_ros.control.model import unicycle_step
from hiopt_ros.control.mpc import Mpc
from hiopt_ros.control.params import mpc_config_from_params
from hiopt_ros.course import DEFAULT_PARAMS, Course, load_course
from hiopt_ros.progress import progress_bar
from sim.courses import random_course

EPISODE_GAP_NS = 5_000_000_000   # between episodes, far beyond any alignment tolerance
T0_NS = 1_000_000_000
TOPIC_PLAN = "/hiopt/expert_plan"
TOPIC_EPISODE = "/hiopt/episode"


def plan_message(t_ns: int, trajectory: np.ndarray) -> object:
    """nav_msgs/Path of the expert's planned states (N+1, 3) [x_m, y_m, yaw_rad], in the odom frame."""
    path = new_message("nav_msgs/msg/Path")
    conv.set_header(path, t_ns, conv.FRAME_ODOM)
    poses = []
    for x, y, yaw in np.asarray(trajectory, float).tolist():
        ps = new_message("geometry_msgs/msg/PoseStamped")
        conv.set_header(ps, t_ns, conv.FRAME_ODOM)
        ps.pose.position.x, ps.pose.position.y = x, y
        conv.set_yaw(ps.pose.orientation, yaw)
        poses.append(ps)
    path.poses = poses
    return path


def episode_message(record: dict) -> object:
    """std_msgs/String holding one episode's record as JSON."""
    msg = new_message("std_msgs/msg/String")
    msg.data = json.dumps(record, sort_keys=True)
    return msg


@dataclass
class EpisodeResult:
    steps: int
    samples: int
    reached: bool
    collided: bool
    time_s: float
    min_clearance_m: float
    mpc_failures: int


def run_episode(mpc, course: Course, writer: BagWriter, t0_ns: int, dt_s: float, max_time_s: float,
                index: int = 0, seed: int | None = None) -> tuple[EpisodeResult, int]:
    """Drive one course with the expert, logging every control step and, at the end, the episode's
    record on /hiopt/episode; returns (result, next free t_ns)."""
    mpc.reset()
    state = course.start_xyyaw.copy()
    applied = np.zeros(2)
    dt_ns = int(round(dt_s * 1e9))
    t_ns = t0_ns
    steps = samples = failures = 0
    reached = collided = False
    min_clear = course.clearance(state[:2])
    obstacles = course.obstacles_xyr
    for steps in range(1, int(math.ceil(max_time_s / dt_s)) + 1):
        u, info = mpc.solve(state, course.goal_xy, obstacles)
        writer.odom(t_ns, state[0], state[1], state[2], applied[0], applied[1])
        writer.obstacles(t_ns, obstacles)
        if info.ok:
            writer.subgoal(t_ns, info.subgoal[0], info.subgoal[1])
            writer.write(TOPIC_PLAN, plan_message(t_ns, info.trajectory), t_ns)
            writer.cmd_vel(t_ns, u[0], u[1])
            samples += 1
        else:
            failures += 1  # the expert's stop command is a safety fallback, not a demonstration
        applied = np.asarray(u, float)
        state = unicycle_step(state, applied, dt_s)
        t_ns += dt_ns
        clear = course.clearance(state[:2])
        min_clear = min(min_clear, clear)
        if clear < 0:
            collided = True
            break
        if np.linalg.norm(state[:2] - course.goal_xy) < course.goal_tolerance_m:
            reached = True
            break
    writer.odom(t_ns, state[0], state[1], state[2], applied[0], applied[1])
    writer.write(TOPIC_EPISODE, episode_message({
        "episode": index, "seed": seed, "t_start_ns": t0_ns, "t_end_ns": t_ns, "reached": reached, "collided": collided,
        "time_s": steps * dt_s, "samples": samples, "mpc_failures": failures, "min_clearance_m": min_clear,
        "start_xyyaw": course.start_xyyaw.tolist(), "goal_xy": course.goal_xy.tolist(),
        "obstacles_xyr": course.obstacles_xyr.tolist()}), t_ns)
    return EpisodeResult(steps, samples, reached, collided, steps * dt_s, min_clear, failures), t_ns + EPISODE_GAP_NS


def record(out: str | Path, episodes: int, seed: int, *, dt_s: float = 0.05, max_time_s: float | None = None,
           params: str | Path = DEFAULT_PARAMS, storage: str | None = None, overwrite: bool = False,
           progress: bool = True) -> tuple[Path, list[EpisodeResult]]:
    """Record `episodes` expert episodes on random courses into the bag `out`; returns (path, results)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not dt_s > 0:
        raise ValueError(f"dt_s must be > 0, got {dt_s}")
    base = load_course(params)
    mpc = Mpc(mpc_config_from_params(params))
    rng = np.random.default_rng(seed)
    results: list[EpisodeResult] = []
    t_ns = T0_NS
    with BagWriter(out, storage=storage, overwrite=overwrite) as writer:
        bar = progress_bar(range(episodes), enabled=progress, desc="demonstrations", unit="episode")
        for _ in bar:
            course = random_course(rng, base, max_obstacles=min(3, mpc.config.M))
            limit = max_time_s or 4.0 * float(np.linalg.norm(course.goal_xy - course.start_xyyaw[:2])) / \
                mpc.config.limits.v_max_mps + 10.0
            res, t_ns = run_episode(mpc, course, writer, t_ns, dt_s, limit, index=len(results), seed=seed)
            results.append(res)
            bar.set_postfix(reached=sum(r.reached for r in results), samples=sum(r.samples for r in results))
        path = writer.close()
    return path, results


def summary(path: Path, results: list[EpisodeResult], seconds: float) -> str:
    n = len(results)
    reached = [r for r in results if r.reached]
    lines = [
        f"wrote {path} ({sum(r.samples for r in results)} expert samples, {n} episodes, {seconds:.1f} s)",
        f"  reached goal: {len(reached)}/{n}   collisions: {sum(r.collided for r in results)}   "
        f"MPC failures (not recorded): {sum(r.mpc_failures for r in results)}",
    ]
    if reached:
        lines.append(f"  time to goal: {np.mean([r.time_s for r in reached]):.1f} ± "
                     f"{np.std([r.time_s for r in reached]):.1f} s   min clearance: "
                     f"{min(r.min_clearance_m for r in results):.2f} m")
    lines.append(f"next: python -m offline.fit {path} --out config/theta/robot.yaml")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m offline.demos",
        description="Record MPC expert demonstrations on randomised courses (ROS-free closed loop) "
                    "into a rosbag2 bag with /odom, /cmd_vel, /hiopt/subgoal and /hiopt/obstacles.")
    ap.add_argument("--out", required=True, help="bag to write: PATH.mcap or PATH.db3 (one file) or a "
                                                 "folder name (rosbag2 directory)")
    ap.add_argument("--episodes", type=int, default=3, help="number of random courses (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the courses (default 0)")
    ap.add_argument("--dt-s", type=float, default=0.05, help="control period [s] (default 0.05)")
    ap.add_argument("--max-time-s", type=float, default=None,
                    help="episode time limit [s] (default 4 × distance / v_max + 10)")
    ap.add_argument("--storage", choices=("mcap", "sqlite3"), default=None,
                    help="storage of a bag directory (a .mcap/.db3 suffix decides for files)")
    ap.add_argument("--params", default=str(DEFAULT_PARAMS),
                    help="parameter file giving the default course and robot radius (default config/nav.yaml)")
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        path, results = record(args.out, args.episodes, args.seed, dt_s=args.dt_s, max_time_s=args.max_time_s,
                               params=args.params, storage=args.storage, overwrite=args.force,
                               progress=not args.no_progress)
    except (BagError, ValueError, FileNotFoundError) as exc:
        print(f"offline.demos: error: {exc}", file=sys.stderr)
        return 2
    print(summary(path, results, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
