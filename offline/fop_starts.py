"""What the FOP's choice of local optimum changes: one SQP start (u = 0) vs one start per feasible
speed slab (hiopt_ros/control/fop.py), on expert demonstrations and in the closed loop.

    python -m offline.fop_starts                                  # 8 validation courses, seed 1000
    python -m offline.fop_starts --episodes 8 --seed 1000 --loop-courses 20
    python -m offline.fop_starts --fixture test/data/fop_near_obstacle_cases.json   # regenerate the test fixture

1. Records MPC expert demonstrations on random courses (`offline.demos`, the generator and the
   bag pipeline of `offline.fit`; the seed decides the courses) and runs the unchanged FOP (θ = 0,
   the controller's parameters from --params) at every sample with both start strategies.
   Prints the Tables 4–5 metrics (cosine, L2, L1) of both against the expert, how often the
   multi-start solution has a lower Eq. 32a cost (never a higher one), and the solve times.
2. With --loop-courses N, drives the bi-level loop (geometric look-ahead subgoals → FOP, the
   pure-Python kinematic loop at 50 Hz) on N random courses with each strategy: success,
   collisions, mean travel time.
3. With --fixture FILE, writes the near-obstacle samples where the two strategies disagree
   (state, subgoal, obstacles, both actions and costs) as JSON for test/test_control.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hiopt_ros.bag_reader import read_robot_bag
from hiopt_ros.control.fop import Fop
from hiopt_ros.control.params import fop_config_from_params
from hiopt_ros.course import DEFAULT_PARAMS, load_course
from hiopt_ros.progress import progress_bar
from hiopt_ros.unicycle_loop import run_episode
from sim.courses import random_course

from .demos import record
from .inverse.metrics import action_metrics
from .robot_data import align_bag

NEAR_CLEARANCE_M = 0.3   # a sample is "near an obstacle" when the robot circle is this close to one


def _clearance(state: np.ndarray, obstacles_xyr: np.ndarray, robot_radius_m: float) -> float:
    if len(obstacles_xyr) == 0:
        return float("inf")
    d = np.hypot(obstacles_xyr[:, 0] - state[0], obstacles_xyr[:, 1] - state[1])
    return float(np.min(d - obstacles_xyr[:, 2] - robot_radius_m))


def demonstration_study(episodes: int, seed: int, params: str | Path, progress: bool) -> dict:
    """Both FOP strategies on the demonstrations of `episodes` random courses drawn from `seed`."""
    with tempfile.TemporaryDirectory(prefix="hiopt_fop_starts_") as tmp:
        path, results = record(Path(tmp) / "demos.mcap", episodes, seed, params=params, progress=progress)
        samples, _ = align_bag(read_robot_bag(path))
    cfg = fop_config_from_params(params)
    fops = {"one start (u = 0)": Fop(dataclasses.replace(cfg, multi_start=False)),
            "one start per speed slab": Fop(dataclasses.replace(cfg, multi_start=True))}
    expert = np.array([s.u_expert for s in samples]).reshape(-1, 2)
    rows, per = {}, {}
    for name, fop in fops.items():
        acts, costs, times, fails, starts = [], [], [], 0, 0
        for s in samples:
            u, info = fop.solve(s.state, s.subgoal_xy, s.obstacles_xyr)
            acts.append(u)
            costs.append(fop.objective(s.state, s.subgoal_xy, u))
            times.append(info.solve_time_us)
            fails += not info.ok
            starts += info.starts
        acts = np.array(acts).reshape(-1, 2)
        per[name] = (acts, np.array(costs))
        rows[name] = {**action_metrics(acts, expert), "failed_solves": fails,
                      "solve_p50_us": float(np.median(times)), "solve_p99_us": float(np.percentile(times, 99)),
                      "mean_starts": starts / max(len(samples), 1)}
    (a1, c1), (a2, c2) = per.values()
    near = np.array([_clearance(s.state, s.obstacles_xyr, cfg.robot_radius_m) < NEAR_CLEARANCE_M for s in samples])
    lower = c2 < c1 - 1e-6
    return {
        "seed": seed, "episodes": episodes, "samples": len(samples),
        "expert_reached": sum(r.reached for r in results), "expert_collided": sum(r.collided for r in results),
        "near_samples": int(near.sum()), "lower_cost": int(lower.sum()), "lower_cost_near": int((lower & near).sum()),
        "higher_cost": int((c2 > c1 + 1e-6).sum()), "max_cost_gain": float(np.max(c1 - c2, initial=0.0)),
        "metrics": rows,
        "disagreements": [
            {"state": s.state.tolist(), "subgoal_xy": s.subgoal_xy.tolist(), "obstacles_xyr": s.obstacles_xyr.tolist(),
             "u_expert": s.u_expert.tolist(), "u_one_start": a1[i].tolist(), "u_multi_start": a2[i].tolist(),
             "cost_one_start": float(c1[i]), "cost_multi_start": float(c2[i])}
            for i, s in enumerate(samples) if lower[i] and near[i]],
    }


def loop_study(courses: int, seed: int, params: str | Path, progress: bool) -> dict:
    """The bi-level kinematic loop on random courses with each start strategy."""
    cfg = fop_config_from_params(params)
    base = load_course(params)
    rng = np.random.default_rng(seed)
    drawn = [random_course(rng, base, max_obstacles=min(3, cfg.M)) for _ in range(courses)]
    out = {}
    for multi in (False, True):
        fop = Fop(dataclasses.replace(cfg, multi_start=multi))
        res = [run_episode(c, "fop", fop=fop, dt_s=0.02, max_time_s=30.0)
               for c in progress_bar(drawn, enabled=progress, desc=f"closed loop, multi_start={multi}")]
        ok = [r for r in res if r.reached and not r.collided]
        out["one start per speed slab" if multi else "one start (u = 0)"] = {
            "reached": len(ok), "collided": sum(r.collided for r in res), "courses": courses,
            "mean_travel_time_s": float(np.mean([r.travel_time_s for r in ok])) if ok else float("nan"),
            "travel_times_s": [round(r.travel_time_s, 2) if r.reached else None for r in res],
            "min_clearance_m": float(min(r.min_clearance_m for r in res))}
    return out


def format_report(demo: dict, loop: dict | None) -> str:
    lines = [f"demonstrations: {demo['episodes']} random courses (offline.demos generator, seed {demo['seed']}), "
             f"{demo['samples']} expert samples; expert reached {demo['expert_reached']}/{demo['episodes']}, "
             f"collisions {demo['expert_collided']}",
             "unchanged FOP (θ = 0) vs expert            cosine      L2      L1  failed  starts/solve  p50 µs  p99 µs"]
    for name, r in demo["metrics"].items():
        lines.append(f"  {name:<38} {r['cosine']:.4f}  {r['l2']:.4f}  {r['l1']:.4f}  {r['failed_solves']:>6}"
                     f"  {r['mean_starts']:>12.2f}  {r['solve_p50_us']:>6.0f}  {r['solve_p99_us']:>6.0f}")
    lines.append(f"Eq. 32a cost: multi-start lower on {demo['lower_cost']} samples ({demo['lower_cost_near']} of the "
                 f"{demo['near_samples']} within {NEAR_CLEARANCE_M} m of an obstacle), "
                 f"higher on {demo['higher_cost']}; largest gain {demo['max_cost_gain']:.3g}")
    if loop:
        lines.append("closed loop (geometric look-ahead → FOP, 50 Hz kinematic loop)")
        for name, r in loop.items():
            lines.append(f"  {name:<38} reached {r['reached']}/{r['courses']}, collisions {r['collided']}, "
                         f"mean travel time {r['mean_travel_time_s']:.2f} s, "
                         f"min clearance {r['min_clearance_m']:.3f} m")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline.fop_starts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=8, help="demonstration courses (default 8)")
    ap.add_argument("--seed", type=int, default=1000,
                    help="seed of the courses (default 1000, outside the 0..99 used for shipped demonstrations)")
    ap.add_argument("--loop-courses", type=int, default=0, help="also run the closed loop on this many courses")
    ap.add_argument("--params", default=str(DEFAULT_PARAMS), help="parameter file (default config/nav.yaml)")
    ap.add_argument("--fixture", default=None, help="write the near-obstacle disagreements here (JSON)")
    ap.add_argument("--max-fixture-cases", type=int, default=24, help="cases kept in --fixture (default 24)")
    ap.add_argument("--json", default=None, help="write the whole report as JSON here")
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.loop_courses < 0:
        ap.error("--episodes must be >= 1 and --loop-courses >= 0")
    progress = sys.stderr.isatty()
    t0 = time.perf_counter()
    demo = demonstration_study(args.episodes, args.seed, args.params, progress)
    loop = loop_study(args.loop_courses, args.seed, args.params, progress) if args.loop_courses else None
    print(format_report(demo, loop))
    if args.fixture:
        # evenly spread over the range of cost gains, from marginal to large
        ranked = sorted(demo["disagreements"], key=lambda c: c["cost_one_start"] - c["cost_multi_start"])
        pick = np.unique(np.linspace(0, len(ranked) - 1, min(args.max_fixture_cases, len(ranked))).round().astype(int))
        cases = [ranked[i] for i in pick] if ranked else []
        Path(args.fixture).parent.mkdir(parents=True, exist_ok=True)
        Path(args.fixture).write_text(json.dumps({
            "made_by": f"python -m offline.fop_starts --episodes {args.episodes} --seed {args.seed} "
                       f"--fixture {args.fixture}",
            "params": "config/nav.yaml controller_node (θ = 0)", "cases": cases}, indent=1) + "\n")
        print(f"wrote {len(cases)} near-obstacle cases to {args.fixture}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        demonstrations = {k: v for k, v in demo.items() if k != "disagreements"}
        Path(args.json).write_text(json.dumps({"demonstrations": demonstrations, "closed_loop": loop}, indent=2) + "\n")
        print(f"wrote {args.json}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
