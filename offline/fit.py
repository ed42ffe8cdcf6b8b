"""Learn θ of the robot's lower-level cost from rosbag demonstrations: `python -m offline.fit BAG ... --out θ.yaml`.

Inverse optimization (Problem 11) on expert demonstrations of Eq. 32:

1. read /odom, /cmd_vel (expert u), /hiopt/subgoal (x̂) and the obstacles (the bag's MarkerArray or a
   config file) from rosbag2 bags (MCAP or sqlite3), drop non-finite messages, align them in time
   (offline.bags, offline.robot_data);
2. per sample, the FOP's data at the expert's state: quadratic cost uᵀQu + cᵀu, bounds and
   obstacles linearised at the expert action as H u ≤ b (Fop.cost_terms / Fop.constraint_rows);
3. fit the K ReLU terms (α_k, β_k) = (θ_k, ν_k) on the training samples (offline.inverse);
4. on held-out samples, compare the actions of the real acados FOP with θ̂ and with θ = 0 to the
   expert's (cosine similarity, mean L2 and Manhattan distance: the paper's Tables 4–5 metrics);
5. write θ̂ atomically in the controller's θ schema (hiopt_ros.control.theta) with provenance.

Bad input (missing topic, empty / truncated / non-bag file, too few samples) ends with exit code 2
and a one-line message on stderr; the --out file is only ever replaced by a complete θ file.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hiopt_ros.control.params import fop_config_from_params
from sim.course import DEFAULT_PARAMS, load_course, load_params

from .bags import BagError, RobotTopics, read_robot_bag
from .inverse.metrics import action_metrics
from .robot_data import (AlignmentStats, DemonstrationError, RobotSample, align_bag,
                         fop_actions, inverse_samples, split_indices)

EXIT_BAD_INPUT = 2
EXIT_FIT_FAILED = 1


class FitFailed(Exception):
    """The solver failed on valid input; one line meant for the user."""


def fit_inverse(*args: Any, **kwargs: Any):
    """offline.inverse.fit_inverse (imported late: the solver stack is only needed for a fit)."""
    from .inverse import fit_inverse as _fit

    return _fit(*args, **kwargs)


def load_obstacles(spec: str) -> np.ndarray:
    """Obstacles (m, 3) from 'none', a ROS parameter file (sim_node.obstacles_xyr) or a YAML file
    with a top-level `obstacles_xyr: [x, y, r, ...]` list."""
    if spec.lower() == "none":
        return np.zeros((0, 3))
    path = Path(spec)
    if not path.is_file():
        raise DemonstrationError(f"obstacle file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DemonstrationError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(raw, dict) and "sim_node" in raw:
        return load_course(path).obstacles_xyr
    if isinstance(raw, dict) and "obstacles_xyr" in raw:
        arr = np.asarray(raw["obstacles_xyr"], dtype=float).reshape(-1)
        if arr.size % 3 or not np.all(np.isfinite(arr)):
            raise DemonstrationError(f"{path}: obstacles_xyr must be finite [x, y, r] triples")
        return arr.reshape(-1, 3)
    raise DemonstrationError(f"{path}: expected sim_node.ros__parameters.obstacles_xyr or a top-level "
                             "obstacles_xyr list")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m offline.fit",
        description="Learn the ReLU terms θ of the robot's lower-level cost (Eq. 32) from expert "
                    "demonstrations in rosbag2 bags (MCAP or sqlite3) by inverse optimization "
                    "(Problem 11), and write them in the controller's θ file schema.",
        epilog="example: python -m offline.demos --out demos.mcap --episodes 3 && "
               "python -m offline.fit demos.mcap --out config/theta/robot.yaml")
    ap.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 bag: directory with metadata.yaml, .mcap or .db3")
    ap.add_argument("--out", required=True, help="θ file to write (YAML, replaced atomically)")
    g = ap.add_argument_group("inverse problem")
    g.add_argument("--K", type=int, default=4, help="number of ReLU terms (default 4; the controller's "
                                                    "FOP must be built with at least this many)")
    g.add_argument("--l", type=float, default=1e-2, help="weight l of l‖u‖² in FOP_θ (Eq. 10, default 1e-2)")
    g.add_argument("--rho", type=float, default=1.0, help="weight ρ of Σ‖θ_k‖² in (11a) (default 1.0: on the robot FOP's cost scale, smaller values let a few demonstrations bias θ and slow the closed loop)")
    g.add_argument("--method", choices=("auto", "global", "alternating"), default="auto",
                   help="global: spatial branch-and-bound (SCIP); alternating: local; auto: global "
                        "when small enough (default auto)")
    g.add_argument("--time-limit-s", type=float, default=300.0, help="solver time limit [s] (default 300)")
    g.add_argument("--mip-gap", type=float, default=1e-4, help="relative optimality gap of the global solve")
    g.add_argument("--theta-bound", type=float, default=10.0, help="box on each entry of θ_k (default 10); ν_k is boxed by theta_bound·max‖u‖₁ + 1")
    d = ap.add_argument_group("data")
    d.add_argument("--held-out", type=float, default=0.2, help="fraction of samples held out (default 0.2)")
    d.add_argument("--seed", type=int, default=0, help="seed of the split, subsampling and solver (default 0)")
    d.add_argument("--max-train", type=int, default=0,
                   help="use at most this many training samples, drawn at random (default 0: all)")
    d.add_argument("--min-samples", type=int, default=10, help="fewest usable samples to fit on (default 10)")
    d.add_argument("--obstacles", default=None, metavar="FILE|none",
                   help="obstacles from a parameter file (config/nav.yaml) or YAML obstacles_xyr list "
                        "instead of the bag's obstacle topic; 'none' for an empty world")
    d.add_argument("--params", default=str(DEFAULT_PARAMS),
                   help="ROS parameter file the controller uses (robot radius, d_safe, FOP weights); "
                        "default config/nav.yaml")
    d.add_argument("--max-odom-age-s", type=float, default=0.1,
                   help="an expert command uses the latest odometry at most this old (default 0.1)")
    d.add_argument("--max-subgoal-skew-s", type=float, default=0.1,
                   help="... and the subgoal message nearest in time within this (default 0.1)")
    d.add_argument("--stamp", choices=("log", "header"), default="log",
                   help="time of a message: bag receive time (default) or header stamp")
    t = ap.add_argument_group("topics")
    t.add_argument("--odom-topic", default="/odom")
    t.add_argument("--cmd-vel-topic", default="/cmd_vel", help="geometry_msgs/Twist or TwistStamped")
    t.add_argument("--subgoal-topic", default="/hiopt/subgoal", help="geometry_msgs/PointStamped or PoseStamped")
    t.add_argument("--obstacles-topic", default="/hiopt/obstacles", help="visualization_msgs/MarkerArray")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _check_args(args: argparse.Namespace) -> None:
    problems = []
    if args.K < 1:
        problems.append(f"--K must be >= 1 (got {args.K})")
    if not args.l > 0:
        problems.append(f"--l must be > 0 (got {args.l}); Proposition 4 needs strong convexity")
    if args.rho < 0:
        problems.append(f"--rho must be >= 0 (got {args.rho})")
    if not args.time_limit_s > 0:
        problems.append(f"--time-limit-s must be > 0 (got {args.time_limit_s})")
    if not 0 <= args.held_out < 1:
        problems.append(f"--held-out must be in [0, 1) (got {args.held_out})")
    if args.min_samples < 1:
        problems.append(f"--min-samples must be >= 1 (got {args.min_samples})")
    if problems:
        raise DemonstrationError("; ".join(problems))


def _gap_stats(gaps: np.ndarray) -> dict[str, float]:
    gaps = np.asarray(gaps, float)
    if gaps.size == 0:
        return {"n": 0}
    return {"n": int(gaps.size), "mean": float(gaps.mean()), "median": float(np.median(gaps)),
            "p90": float(np.quantile(gaps, 0.9)), "max": float(gaps.max()), "min": float(gaps.min())}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole pipeline; returns the report (also stored as provenance in --out)."""
    from tqdm import tqdm

    from hiopt_ros.control.fop import Fop
    from hiopt_ros.control.theta import Theta, save_theta

    _check_args(args)
    t_start = time.perf_counter()
    progress = not args.no_progress
    topics = RobotTopics(args.odom_topic, args.cmd_vel_topic, args.subgoal_topic, args.obstacles_topic)
    fixed_obstacles = load_obstacles(args.obstacles) if args.obstacles is not None else None
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise DemonstrationError(f"--out {out} is a directory; give a file name such as robot.yaml")

    # 1. bags → aligned samples
    samples: list[RobotSample] = []
    stats = AlignmentStats(max_odom_age_s=args.max_odom_age_s, max_subgoal_skew_s=args.max_subgoal_skew_s)
    bag_info = []
    for path in tqdm(args.bags, desc="reading bags", unit="bag", disable=not progress or len(args.bags) < 2,
                     file=sys.stderr):
        bag = read_robot_bag(path, topics, obstacles="skip" if fixed_obstacles is not None else "required",
                             stamp=args.stamp)
        twin = next((b["path"] for b in bag_info if b["sha256"] == bag.sha256), None)
        if twin is not None:  # the same demonstrations twice would count every sample double
            raise DemonstrationError(f"{path} and {twin} are the same recording (sha256 {bag.sha256[:12]}…); "
                                     "give each bag once")
        got, st = align_bag(bag, obstacles_xyr=fixed_obstacles, max_odom_age_s=args.max_odom_age_s,
                            max_subgoal_skew_s=args.max_subgoal_skew_s)
        samples += got
        stats.merge(st)
        bag_info.append({"path": str(path), "name": Path(path).name, "sha256": bag.sha256, "storage": bag.storage,
                         "messages": {k: v for k, v in bag.message_counts.items()}, "aligned_samples": len(got)})

    def too_few(n: int, what: str) -> DemonstrationError:
        return DemonstrationError(
            f"too few samples: found {n} {what} in {len(args.bags)} bag(s) from {stats.commands} expert "
            f"commands on {topics.cmd_vel}, need at least {args.min_samples} (--min-samples); "
            f"why: {stats.reasons()}")

    if len(samples) < args.min_samples:
        raise too_few(len(samples), "aligned samples")

    # 2. Eq. 32 data per sample, from the FOP the controller runs
    fop = Fop(fop_config_from_params(args.params, args.K))
    data, kept, stats.infeasible, stats.relaxed = inverse_samples(samples, fop)
    samples = [samples[i] for i in kept]
    if len(samples) < args.min_samples:
        raise too_few(len(samples), "usable samples")

    # 3. split and fit
    train_idx, held_idx = split_indices(len(samples), args.held_out, args.seed)
    if args.max_train and len(train_idx) > args.max_train:
        rng = np.random.default_rng(args.seed + 1)
        train_idx = np.sort(rng.choice(train_idx, size=args.max_train, replace=False))
    train = [data[i] for i in train_idx]
    print(f"offline.fit: {len(samples)} samples from {len(args.bags)} bag(s): {len(train_idx)} train, "
          f"{len(held_idx)} held out; fitting K={args.K} ReLU terms ({args.method}, time limit "
          f"{args.time_limit_s:g} s)", file=sys.stderr)
    try:
        fit = fit_inverse(train, K=args.K, l=args.l, rho=args.rho, method=args.method,
                          time_limit_s=args.time_limit_s, mip_gap=args.mip_gap, theta_bound=args.theta_bound,
                          seed=args.seed, progress=progress)
    except RuntimeError as exc:  # solver failures: say so in one line, leave --out alone
        raise FitFailed(f"the inverse problem could not be solved ({exc!r}); {out} was not changed") from exc
    theta_hat = Theta(alpha=np.asarray(fit.theta, float), beta=np.asarray(fit.nu, float), l=float(fit.l),
                      case_study="robot")

    # 4. held-out: the real FOP with θ̂ and unchanged (θ = 0) against the expert
    held = [samples[i] for i in held_idx]
    held_out: dict[str, Any] = {"n": len(held)}
    if held:
        expert = np.array([s.u_expert for s in held])
        bar = tqdm(total=2 * len(held), desc="held-out FOP solves", unit="solve", disable=not progress,
                   file=sys.stderr)
        fop.set_theta(Theta.zero(args.K))
        u_zero, fail_zero = fop_actions(fop, held, bar)
        fop.set_theta(theta_hat)
        u_learned, fail_learned = fop_actions(fop, held, bar)
        bar.close()
        held_out.update(learned=action_metrics(u_learned, expert), unchanged=action_metrics(u_zero, expert),
                        fop_failures={"learned": fail_learned, "unchanged": fail_zero})

    fit_time = time.perf_counter() - t_start
    fop_cfg = fop.config
    report: dict[str, Any] = {
        "tool": "offline.fit",
        "command": "python -m offline.fit " + " ".join(shlex.quote(a) for a in args.argv),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bags": bag_info,
        "obstacles_from": args.obstacles or f"bag topic {topics.obstacles}",
        "samples": {"total": len(samples), "train": int(len(train_idx)), "held_out": int(len(held_idx)),
                    "unused": len(samples) - int(len(train_idx)) - int(len(held_idx)),  # beyond --max-train
                    "seed": args.seed, **stats.as_dict()},
        "K": args.K, "l": float(fit.l), "rho": args.rho,
        "method": str(fit.method), "solver_status": str(fit.status),
        "objective": float(fit.objective), "bound": _num(fit.bound),
        "solver_time_s": float(fit.solve_time_s), "fit_time_s": round(fit_time, 3),
        "time_limit_s": args.time_limit_s, "mip_gap": args.mip_gap,
        "gaps": {**_gap_stats(fit.gaps), "prop4_bound": _num(fit.prop4_bound)},
        "held_out": held_out,
        "controller_relu_terms": load_params(args.params).get("controller_node", {}).get("relu_terms"),
        "fop": {"Ts_s": fop_cfg.Ts_s, "c_p": fop_cfg.c_p, "c_h": fop_cfg.c_h, "c_u": fop_cfg.c_u,
                "robot_radius_m": fop_cfg.robot_radius_m, "d_safe_m": fop_cfg.d_safe_m, "M": fop_cfg.M,
                "limits": [fop_cfg.limits.v_min_mps, fop_cfg.limits.v_max_mps,
                           fop_cfg.limits.omega_min_radps, fop_cfg.limits.omega_max_radps]},
    }
    theta_hat.provenance = report
    save_theta(out, theta_hat)
    report["out"] = str(out)
    report["theta"] = theta_hat
    return report


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def format_report(rep: dict[str, Any]) -> str:
    s, g, h = rep["samples"], rep["gaps"], rep["held_out"]
    nan = s["dropped_nonfinite_messages"]
    nan_text = ", ".join(f"{n} on {t}" for t, n in sorted(nan.items())) or "none"
    lines = [
        f"offline.fit: {len(rep['bags'])} bag(s), {s['commands']} expert commands -> {s['total']} samples "
        f"({s['train']} train, {s['held_out']} held out"
        + (f", {s['unused']} unused beyond --max-train" if s.get("unused") else "") + f", seed {s['seed']})",
        f"  dropped messages with NaN/inf: {nan_text}",
        f"  dropped commands: {s['dropped_no_odom']} without odometry, {s['dropped_no_subgoal']} without "
        f"subgoal, {s['dropped_no_obstacles']} without obstacles, {s['dropped_infeasible']} infeasible for "
        f"the FOP; {s['relaxed_obstacle_rows']} with an obstacle half-space relaxed onto the expert action",
        f"inverse optimization (Problem 11): K={rep['K']} l={rep['l']:g} rho={rep['rho']:g} "
        f"method={rep['method']} status={rep['solver_status']} objective={rep['objective']:.4g}"
        + (f" bound={rep['bound']:.4g}" if rep["bound"] is not None else "")
        + f" solver {rep['solver_time_s']:.1f} s",
    ]
    if g.get("n"):
        lines.append(f"  duality gaps over {g['n']} train samples: mean {g['mean']:.3g}  median {g['median']:.3g}  "
                     f"p90 {g['p90']:.3g}  max {g['max']:.3g}"
                     + (f"  (Prop. 4: ‖u*−u‖ ≤ {g['prop4_bound']:.3g})" if g.get("prop4_bound") is not None else ""))
    if h.get("n"):
        lines += [f"held-out ({h['n']} samples): acados FOP actions vs expert (Tables 4-5 metrics)",
                  f"  {'':24s}{'cosine':>9s}{'L2':>9s}{'L1':>9s}  failed solves"]
        for key, name in (("unchanged", "FOP unchanged (θ = 0)"), ("learned", "FOP learned (θ̂)")):
            m = h[key]
            lines.append(f"  {name:24s}{m['cosine']:9.4f}{m['l2']:9.4f}{m['l1']:9.4f}  {h['fop_failures'][key]}")
    else:
        lines.append("held-out: none (--held-out 0)")
    th = rep["theta"]
    for k in range(th.K):
        lines.append(f"  θ_{k + 1} = α = [{th.alpha[k, 0]: .4f}, {th.alpha[k, 1]: .4f}]   ν_{k + 1} = β = {th.beta[k]: .4f}")
    slots = rep.get("controller_relu_terms")
    if slots is not None and slots < rep["K"]:
        lines.append(f"  note: controller_node.relu_terms = {slots} < K = {rep['K']}: raise relu_terms in the "
                     "parameter file, or the controller will refuse this θ")
    lines.append(f"wrote {rep['out']} ({rep['fit_time_s']:.1f} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        report = run(args)
    except (BagError, DemonstrationError) as exc:
        print(f"offline.fit: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FitFailed as exc:
        print(f"offline.fit: error: {exc}", file=sys.stderr)
        return EXIT_FIT_FAILED
    except KeyboardInterrupt:
        print(f"offline.fit: interrupted; {args.out} was not changed", file=sys.stderr)
        return 130
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
