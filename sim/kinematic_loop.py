"""Pure-Python closed loop (no ROS, no physics): the unicycle model driven by the MPC expert or by
the bi-level policy (geometric look-ahead subgoals → FOP_θ), on a course from config/nav.yaml.

    python -m sim.kinematic_loop                      # both controllers on the default course
    python -m sim.kinematic_loop --controller fop --theta config/theta/robot.yaml --plot runs/loop.png

Prints travel time, path length, minimum obstacle clearance and solve-time percentiles.

    python -m sim.kinematic_loop --smoothness 10      # Table 2's methods on 10 held-out PyBullet courses

``--smoothness N`` instead drives Table 2's methods (sim.evaluate's builders: the shipped θ and
policies unless --theta / --bilevel-learned say otherwise) over N held-out courses in PyBullet and
prints, per method, success, collisions, travel time and energy (over the successful runs), and the
commands' mean |Δω| and |Δv| per control step and mean |ω| (sim.nav_env.command_smoothness): how
smoothly each lower level drives (issue 21).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hiopt_ros.control.fop import Fop
from hiopt_ros.control.mpc import Mpc
from hiopt_ros.control.params import fop_config_from_params, mpc_config_from_params
from hiopt_ros.control.theta import load_theta
from hiopt_ros.course import DEFAULT_PARAMS, load_course
from hiopt_ros.plot import plot_trajectory
from hiopt_ros.unicycle_loop import run_episode
from sim import episodes, evaluate
from sim.courses import EVAL_SEEDS
from sim.nav_env import command_smoothness


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.kinematic_loop", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--controller", choices=["fop", "mpc", "both"], default="both")
    ap.add_argument("--params", default=str(DEFAULT_PARAMS), help="ROS parameter file with the course")
    ap.add_argument("--theta", default=None, help="θ file for the FOP (default: unchanged FOP, θ = 0)")
    ap.add_argument("--dt", type=float, default=0.02, help="control period [s] (default 0.02 = 50 Hz)")
    ap.add_argument("--max-time", type=float, default=30.0, help="episode time limit [s]")
    ap.add_argument("--plot", default=None, help="write a trajectory plot (PNG) here")
    ap.add_argument("--smoothness", type=int, default=0, metavar="N",
                    help="instead: Table 2's methods on N held-out PyBullet courses, with the commands' smoothness")
    ap.add_argument("--first-seed", type=int, default=None, help="--smoothness: first course seed (default: Table 2's)")
    ap.add_argument("--methods", default="mpc,geometric,geometric-unchanged,bilevel-learned,bilevel-unchanged",
                    help="--smoothness: comma-separated sim.evaluate methods")
    ap.add_argument("--bilevel-learned", default=None,
                    help="--smoothness: policy of bilevel-learned (default: shipped)")
    args = ap.parse_args(argv)
    if args.smoothness:
        return smoothness(args)
    try:
        course = load_course(args.params)
        theta = load_theta(args.theta) if args.theta else None
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = []
    for ctrl in (["mpc", "fop"] if args.controller == "both" else [args.controller]):
        # the FOP and MPC exactly as controller_node / expert_node build them from the same file
        fop = mpc = None
        if ctrl == "fop":
            cfg = fop_config_from_params(args.params)
            cfg.K = max(cfg.K, theta.K if theta else 0)
            fop = Fop(cfg, theta=theta)
        else:
            mpc = Mpc(mpc_config_from_params(args.params))
        res = run_episode(course, ctrl, fop=fop, mpc=mpc, dt_s=args.dt, max_time_s=args.max_time)
        results.append(res)
        print(res.summary())
    if args.plot:
        path = plot_trajectory(Path(args.plot), course, {r.controller: r.trajectory for r in results},
                               title="pure-Python closed loop (unicycle model)")
        print(f"plot written to {path}")
    return 0 if all(r.reached for r in results) else 1


def smoothness(args) -> int:
    """--smoothness N: see the module docstring."""
    first = EVAL_SEEDS.start if args.first_seed is None else args.first_seed
    keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    bad = [k for k in keys if k not in episodes.METHODS]
    if bad or args.smoothness < 0 or first not in EVAL_SEEDS:
        print(f"error: --methods must be among {','.join(episodes.METHODS)}, --smoothness >= 1 and --first-seed in "
              f"{EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1} (got {bad or keys}, {args.smoothness}, {first})",
              file=sys.stderr)
        return 2
    kw = {"theta": args.theta} if args.theta else {}
    if args.bilevel_learned:
        kw["bilevel_learned"] = args.bilevel_learned
    setup = evaluate.EvalSetup(params=str(args.params), **kw)
    seeds = range(first, first + args.smoothness)
    print(f"held-out courses {seeds.start}..{seeds.stop - 1} (PyBullet); θ {setup.theta}; bilevel-learned policy "
          f"{setup.bilevel_learned}")
    print(f"{'method':>22s} {'success':>8s} {'coll.':>6s} {'time s':>7s} {'energy J':>9s} {'|dω| rad/s/step':>16s} "
          f"{'|dv| m/s/step':>14s} {'|ω| rad/s':>10s}")
    for key in keys:
        env, driver, _ = evaluate.build_method(setup, key)
        rows = []
        try:
            for seed in seeds:
                ep = evaluate.run_episode(env, driver, key, seed)
                sm = command_smoothness(env.commands)
                rows.append((ep.reached and not ep.collided, ep.collided, ep.time_s, ep.energy_j,
                             sm["mean_abs_domega_radps"], sm["mean_abs_dv_mps"], sm["mean_abs_omega_radps"]))
        finally:
            env.close()
        r = np.array(rows, float)
        ok = r[:, 0] > 0
        t, e = (float(r[ok, i].mean()) if ok.any() else float("nan") for i in (2, 3))
        print(f"{key:>22s} {100 * ok.mean():7.0f}% {100 * r[:, 1].mean():5.0f}% {t:7.2f} {e:9.1f} "
              f"{r[:, 4].mean():16.4f} {r[:, 5].mean():14.4f} {r[:, 6].mean():10.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
