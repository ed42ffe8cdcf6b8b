"""Learn the robot's lower-level cost from rosbag demonstrations: `python -m offline.fit BAG ... --out θ.yaml`.

Inverse optimization (Problem 11) on expert demonstrations of Eq. 32:

1. read /odom, /cmd_vel (expert u), /hiopt/subgoal, the expert's plan (/hiopt/expert_plan), the
   episode records (/hiopt/episode) and the obstacles from rosbag2 bags (MCAP or sqlite3), drop
   non-finite messages, align them in time (hiopt_ros.bags, offline.robot_data); keep the episodes in
   which the expert reached the goal (--keep-failed-episodes keeps all);
2. per sample, the FOP's data at the expert's state: quadratic cost uᵀQu + cᵀu, bounds and
   obstacles linearised at the expert action as H u ≤ b (Fop.cost_terms / Fop.constraint_rows),
   and, when weights are learned, the pieces of Eq. 32a they multiply (robot_data.cost_pieces);
3. choose the options — subgoal definition (--subgoal: recorded, or the expert's plan k steps
   ahead), what is learned (--learn: ReLU terms, the weights c_h/c_u of Eq. 32a, or both), K, ρ, κ —
   by the real acados FOP's action error (mean L2) on training EPISODES held out from each
   candidate's fit (the duality-gap objective is reported, never selected on);
   or (--select closed-loop) by closed-loop energy and smoothness: among the candidates whose
   held-out action cosine is at least --min-cosine, the one with the least energy that reaches
   every selection course (PyBullet, geometric planner, evaluation seeds Table 2's ranges never
   use) without a collision, at most 5 % slower than the action-error choice;
4. refit the chosen option on every training episode, score it and the unchanged FOP (θ = 0,
   the parameter file's weights, the same solver) on the --validate bags (other course seeds,
   never an episode on both sides) with the Tables 4–5 metrics, and run the closed-loop check
   (kinematic loop, geometric planner, random courses: success, collisions, travel time);
5. write θ̂ atomically in the controller's θ schema (hiopt_ros.control.theta): ReLU terms, l, the
   cost weights, the subgoal definition, and provenance with every number above.

Bad input (missing topic, empty / truncated / non-bag file, too few samples, a bag given for both
training and validation) ends with exit code 2 and a one-line message on stderr; the --out file
is only ever replaced by a complete θ file.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import math
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from hiopt_ros import unicycle_loop
from hiopt_ros.bag_reader import RobotTopics, read_robot_bag
from hiopt_ros.bags import BagError
from hiopt_ros.control.fop import Fop
from hiopt_ros.control.mpc import Mpc
from hiopt_ros.control.params import fop_config_from_params, mpc_config_from_params
from hiopt_ros.control.theta import Theta, save_theta
from hiopt_ros.course import DEFAULT_PARAMS, load_course, load_params
from hiopt_ros.planning.geometric import LookaheadPolicy
from hiopt_ros.progress import progress_bar
from hiopt_ros.stdio import mute_c_stdout
from sim import evaluate
from sim.courses import random_course
from sim.evaluate import ExpertDriver, SubgoalDriver
from sim.nav_env import NavEnv, NavEnvConfig, command_smoothness

from .inverse import fit_inverse as _fit
from .inverse.metrics import action_metrics
from .robot_data import (
    WEIGHT_NAMES,
    AlignmentStats,
    DemonstrationError,
    RobotSample,
    SubgoalSpec,
    align_bag,
    fop_actions,
    inverse_samples,
    split_episodes,
    weight_features,
)

EXIT_BAD_INPUT = 2
EXIT_FIT_FAILED = 1
LEARN_MODES = ("relu", "weights", "relu+weights")
#: closed-loop check courses are drawn from seeds far from any demonstration seed
CLOSED_LOOP_SEED = 100_000
#: closed-loop selection courses (--select closed-loop): the selection range used for the RL policies
#: (docs/robot-rl.md), evaluation seeds that Table 2's ranges (1,000,000.., 1,000,300..) never use
SELECT_FIRST_SEED = 1_500_000
#: closed-loop selection: a candidate's mean travel time may exceed the action-error choice's by this factor at most
SELECT_TIME_FACTOR = 1.05


class FitFailed(Exception):
    """The solver failed on valid input; one line meant for the user."""


def fit_inverse(*args: Any, **kwargs: Any):
    """offline.inverse.fit_inverse (imported late: the solver stack is only needed for a fit)."""
    return _fit(*args, **kwargs)


@dataclass(frozen=True)
class Option:
    """One candidate of the selection: how x̂ is defined and what Problem 11 learns."""
    subgoal: SubgoalSpec
    learn: str           # "relu" | "weights" | "relu+weights"
    K: int               # ReLU terms (0 for "weights")
    rho: float           # ρ: weight of Σ‖θ_k‖² in (11a)
    kappa: float         # κ: weight of Σ φ_j² (the learned weight changes) in (11a)
    weights: tuple[str, ...] = ("c_h", "c_u")   # the weights learned in the *weights modes
    bounds: tuple[tuple[str, float, float], ...] = ()   # boxes (name, lo, hi) on learned weights (priors)

    def label(self) -> str:
        parts = [f"subgoal {self.subgoal.label()}", self.learn]
        if self.K:
            parts.append(f"K={self.K} ρ={self.rho:g}")
        if "weights" in self.learn:
            parts.append(f"κ={self.kappa:g}")
            if self.weights != ("c_h", "c_u"):
                parts.append("learn " + "+".join(self.weights))
            parts += [f"{lo:g} ≤ {name} ≤ {hi:g}" for name, lo, hi in self.bounds]
        return ", ".join(parts)


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
        description="Learn the robot's lower-level cost (Eq. 32: ReLU terms θ and/or the weights c_h, c_u) "
                    "from expert demonstrations in rosbag2 bags (MCAP or sqlite3) by inverse optimization "
                    "(Problem 11), choose the options by the real FOP's action error on held-out episodes, "
                    "validate on other bags, and write the controller's θ file.",
        epilog="example: python -m offline.demos --out train.mcap --episodes 24 --seed 1 && python -m offline.demos "
               "--out val.mcap --episodes 10 --seed 101 && python -m offline.fit train.mcap --validate val.mcap "
               "--out config/theta/robot.yaml")
    ap.add_argument("bags", nargs="+", metavar="BAG", help="training bag: directory with metadata.yaml, .mcap or .db3")
    ap.add_argument("--out", required=True, help="θ file to write (YAML, replaced atomically)")
    ap.add_argument("--validate", nargs="+", default=[], metavar="BAG",
                    help="bags from other course seeds: the learned and the unchanged FOP are scored on them "
                         "(never used for fitting or selection)")
    o = ap.add_argument_group("options (several values: chosen by the FOP's action error on held-out episodes)")
    o.add_argument("--subgoal", nargs="+", default=None, metavar="SPEC",
                   help="subgoal definition(s): 'recorded' (the bag's /hiopt/subgoal) or 'plan:K' (the expert's plan "
                        "K prediction steps ahead); default plan:2..8 when the bags carry the plan, else recorded")
    o.add_argument("--learn", nargs="+", default=["weights", "relu+weights"], choices=LEARN_MODES,
                   help="what Problem 11 learns: relu (the paper's ReLU terms only), weights (c_h, c_u of Eq. 32a), "
                        "relu+weights (default: weights relu+weights)")
    o.add_argument("--weights", nargs="+", default=["c_h,c_u"], metavar="LIST",
                   help=f"weights of Eq. 32a learned in the *weights modes, among {','.join(WEIGHT_NAMES)} "
                        "(c_du: the extension's weight on ‖u − u_{t−1}‖²); several lists are candidates "
                        "(default c_h,c_u)")
    o.add_argument("--weight-bounds", nargs="+", default=["none"], metavar="BOXES",
                   help="boxes on learned weights, 'NAME=LO:HI[,NAME=LO:HI...]' (e.g. 'c_u=0.05:1,c_h=0:5': a floor on "
                        "c_u against bang-bang commands) or 'none' (c_h, c_u within 0..20x the parameter file's, "
                        "c_du within 0..2); several are candidates (default none)")
    o.add_argument("--select", choices=("action", "closed-loop"), default="action",
                   help="action (default): the least mean L2 of the FOP's actions on held-out episodes; "
                        "closed-loop: among candidates with held-out cosine >= --min-cosine, the least energy "
                        "on --select-courses PyBullet courses (geometric planner) that reaches all of them, "
                        "without collisions, at most 5%% slower than the action-error choice")
    o.add_argument("--min-cosine", type=float, default=0.98,
                   help="closed-loop selection: lowest held-out action cosine of a candidate (default 0.98)")
    o.add_argument("--select-courses", type=int, default=10, help="closed-loop selection courses (default 10)")
    o.add_argument("--select-first-seed", type=int, default=SELECT_FIRST_SEED,
                   help=f"first seed of those courses (default {SELECT_FIRST_SEED}: the selection range of "
                        "sim.courses' evaluation seeds, disjoint from Table 2's ranges)")
    o.add_argument("--K", type=int, nargs="+", default=[2], help="ReLU terms for the relu modes (default 2; the "
                   "controller's FOP must be built with at least this many)")
    o.add_argument("--rho", type=float, nargs="+", default=[1.0], help="ρ of Σ‖θ_k‖² in (11a) (default 1)")
    o.add_argument("--kappa", type=float, nargs="+", default=[0.0],
                   help="κ of Σ φ_j² in (11a): pulls learned weights towards the parameter file's (default 0)")
    o.add_argument("--search", choices=("staged", "grid"), default="staged",
                   help="staged (default): pick the subgoal with the cheapest learn mode, then the rest at that "
                        "subgoal; grid: every combination")
    g = ap.add_argument_group("inverse problem")
    g.add_argument("--l", type=float, default=1e-2, help="weight l of l‖u‖² in FOP_θ (Eq. 10, default 1e-2)")
    g.add_argument("--method", choices=("auto", "global", "alternating"), default="auto",
                   help="for K ≥ 1 — global: spatial branch-and-bound (SCIP); alternating: local; auto: global "
                        "when small enough (default auto). Weights only (K = 0) is convex: one LP solve")
    g.add_argument("--time-limit-s", type=float, default=120.0, help="solver time limit per fit [s] (default 120)")
    g.add_argument("--node-limit", type=int, default=None,
                   help="also stop each SCIP solve after this many branch-and-bound nodes: a budget that gives "
                        "the same θ on a loaded machine, unlike --time-limit-s (default: none)")
    g.add_argument("--mip-gap", type=float, default=1e-4, help="relative optimality gap of the global solve")
    g.add_argument("--theta-bound", type=float, default=10.0, help="box on each entry of θ_k (default 10); ν_k is "
                                                                   "boxed by theta_bound·max‖u‖₁ + 1")
    g.add_argument("--no-refit", action="store_true",
                   help="keep the chosen candidate's fit (without the held-out episodes) instead of refitting it "
                        "on every training episode")
    d = ap.add_argument_group("data")
    d.add_argument("--held-out", type=float, default=0.25,
                   help="fraction of training EPISODES held out to choose the options (default 0.25)")
    d.add_argument("--seed", type=int, default=0, help="seed of the episode split, subsampling and solver (default 0)")
    d.add_argument("--max-train", type=int, default=0,
                   help="use at most this many fitting samples, drawn at random (default 0: all)")
    d.add_argument("--min-samples", type=int, default=10, help="fewest usable samples to fit on (default 10)")
    d.add_argument("--keep-failed-episodes", action="store_true",
                   help="also fit on episodes in which the expert did not reach the goal (default: dropped)")
    d.add_argument("--obstacles", default=None, metavar="FILE|none",
                   help="obstacles from a parameter file (config/nav.yaml) or YAML obstacles_xyr list "
                        "instead of the bag's obstacle topic; 'none' for an empty world")
    d.add_argument("--params", default=str(DEFAULT_PARAMS),
                   help="ROS parameter file the controller uses (robot model, FOP weights, planner look-ahead); "
                        "default config/nav.yaml")
    d.add_argument("--max-odom-age-s", type=float, default=0.1,
                   help="an expert command uses the latest odometry at most this old (default 0.1)")
    d.add_argument("--max-subgoal-skew-s", type=float, default=0.1,
                   help="... and the subgoal / plan message nearest in time within this (default 0.1)")
    d.add_argument("--stamp", choices=("log", "header"), default="log",
                   help="time of a message: bag receive time (default) or header stamp")
    c = ap.add_argument_group("closed-loop check")
    c.add_argument("--closed-loop", type=int, default=20, metavar="N",
                   help="random courses driven by the kinematic loop with the geometric planner, learned vs "
                        "unchanged FOP (default 20; 0 skips)")
    c.add_argument("--closed-loop-seed", type=int, default=CLOSED_LOOP_SEED,
                   help=f"seed of those courses (default {CLOSED_LOOP_SEED})")
    t = ap.add_argument_group("topics")
    t.add_argument("--odom-topic", default="/odom")
    t.add_argument("--cmd-vel-topic", default="/cmd_vel", help="geometry_msgs/Twist or TwistStamped")
    t.add_argument("--subgoal-topic", default="/hiopt/subgoal", help="geometry_msgs/PointStamped or PoseStamped")
    t.add_argument("--obstacles-topic", default="/hiopt/obstacles", help="visualization_msgs/MarkerArray")
    t.add_argument("--plan-topic", default="/hiopt/expert_plan", help="nav_msgs/Path: the expert's plan")
    t.add_argument("--episode-topic", default="/hiopt/episode", help="std_msgs/String: episode records (JSON)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def _check_args(args: argparse.Namespace) -> None:
    problems = []
    if any(k < 1 for k in args.K):
        problems.append(f"--K values must be >= 1 (got {args.K})")
    if not args.l > 0:
        problems.append(f"--l must be > 0 (got {args.l}); Proposition 4 needs strong convexity")
    if any(r < 0 for r in args.rho):
        problems.append(f"--rho must be >= 0 (got {args.rho})")
    if any(k < 0 for k in args.kappa):
        problems.append(f"--kappa must be >= 0 (got {args.kappa})")
    if not args.time_limit_s > 0:
        problems.append(f"--time-limit-s must be > 0 (got {args.time_limit_s})")
    if args.node_limit is not None and args.node_limit < 1:
        problems.append(f"--node-limit must be >= 1 (got {args.node_limit})")
    if not 0 <= args.held_out < 1:
        problems.append(f"--held-out must be in [0, 1) (got {args.held_out})")
    if args.min_samples < 1:
        problems.append(f"--min-samples must be >= 1 (got {args.min_samples})")
    if args.closed_loop < 0:
        problems.append(f"--closed-loop must be >= 0 (got {args.closed_loop})")
    try:
        args.bound_sets = [parse_bounds(b) for b in args.weight_bounds]
    except ValueError as exc:
        problems.append(str(exc))
    if not 0 <= args.min_cosine <= 1:
        problems.append(f"--min-cosine must be in [0, 1] (got {args.min_cosine})")
    if args.select_courses < 1:
        problems.append(f"--select-courses must be >= 1 (got {args.select_courses})")
    try:
        args.weight_sets = [tuple(w.strip() for w in ws.split(",") if w.strip()) for ws in args.weights]
        bad = sorted({w for ws in args.weight_sets for w in ws} - set(WEIGHT_NAMES))
        if bad or not all(args.weight_sets):
            problems.append(f"--weights: unknown or empty weight list {bad or args.weights}; choose among "
                            f"{','.join(WEIGHT_NAMES)}")
        args.weight_names = args.weight_sets[0] if args.weight_sets else ()
        args.subgoal_specs = [SubgoalSpec.parse(x) for x in args.subgoal] if args.subgoal else None
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise DemonstrationError("; ".join(problems))


def parse_bounds(text: str) -> tuple[tuple[str, float, float], ...]:
    """'none' or 'NAME=LO:HI[,NAME=LO:HI...]' -> ((name, lo, hi), ...); ValueError naming what is wrong."""
    if text.strip().lower() == "none":
        return ()
    out = []
    for part in text.split(","):
        name, sep, box = part.partition("=")
        lo, sep2, hi = box.partition(":")
        try:
            lo_f, hi_f = float(lo), float(hi)
        except ValueError:
            lo_f = hi_f = math.nan
        if not (sep and sep2 and name.strip() in WEIGHT_NAMES and 0 <= lo_f <= hi_f < math.inf):
            raise ValueError(f"--weight-bounds: {part!r} must be NAME=LO:HI with NAME among {','.join(WEIGHT_NAMES)} "
                             "and 0 <= LO <= HI (finite)")
        out.append((name.strip(), lo_f, hi_f))
    return tuple(out)


def _gap_stats(gaps: np.ndarray) -> dict[str, float]:
    gaps = np.asarray(gaps, float)
    if gaps.size == 0:
        return {"n": 0}
    return {"n": int(gaps.size), "mean": float(gaps.mean()), "median": float(np.median(gaps)),
            "p90": float(np.quantile(gaps, 0.9)), "max": float(gaps.max()), "min": float(gaps.min())}


# ------------------------------------------------------------------------------ data

def read_demonstrations(paths: Sequence[str], args, topics: RobotTopics, fixed_obstacles, progress: bool, what: str,
                        seen: Sequence[dict] = ()):
    """Aligned samples of some bags, with alignment stats and per-bag provenance. A bag whose
    content equals one in `seen` (the training bags' provenance) or an earlier one is refused."""
    samples: list[RobotSample] = []
    stats = AlignmentStats(max_odom_age_s=args.max_odom_age_s, max_subgoal_skew_s=args.max_subgoal_skew_s)
    info = []
    for path in progress_bar(paths, enabled=progress and len(paths) > 1, desc=f"reading {what} bags", unit="bag"):
        bag = read_robot_bag(path, topics, obstacles="skip" if fixed_obstacles is not None else "required",
                             stamp=args.stamp)
        twin = next((b["path"] for b in [*seen, *info] if b["sha256"] == bag.sha256), None)
        # the same demonstrations twice would count every sample double (or validate on training data)
        if twin is not None:
            raise DemonstrationError(f"{path} and {twin} are the same recording (sha256 {bag.sha256[:12]}…); "
                                     "give each bag once" + ("" if what == "training" else
                                                            ", and validate on bags of other course seeds"))
        got, st = align_bag(bag, obstacles_xyr=fixed_obstacles, max_odom_age_s=args.max_odom_age_s,
                            max_subgoal_skew_s=args.max_subgoal_skew_s, plan_topic=args.plan_topic,
                            episode_topic=args.episode_topic)
        # the label must be unique across bags of the same name in different folders
        tag = f"{Path(path).name}@{bag.sha256[:8]}"
        for s in got:
            s.episode = tag + s.episode[len(Path(bag.path).name):]
        samples += got
        stats.merge(st)
        info.append({"path": str(path), "name": Path(path).name, "sha256": bag.sha256, "storage": bag.storage,
                     "messages": {k: v for k, v in bag.message_counts.items()}, "aligned_samples": len(got),
                     "seeds": sorted({s.seed for s in got if s.seed is not None}),
                     "has_plan": any(s.plan_xy is not None for s in got)})
    return samples, stats, info


def episode_summary(samples: Sequence[RobotSample]) -> dict[str, Any]:
    eps: dict[str, bool | None] = {}
    for s in samples:
        eps.setdefault(s.episode, s.reached)
    return {"episodes": len(eps), "reached": sum(1 for v in eps.values() if v is True),
            "failed": sum(1 for v in eps.values() if v is False), "unknown": sum(1 for v in eps.values() if v is None),
            "seeds": sorted({s.seed for s in samples if s.seed is not None})}


def keep_successful(samples: Sequence[RobotSample], keep_failed: bool) -> tuple[list[RobotSample], list[str]]:
    """Samples of episodes in which the expert reached the goal (success unknown counts as kept)."""
    if keep_failed:
        return list(samples), []
    failed = sorted({s.episode for s in samples if s.reached is False})
    return [s for s in samples if s.reached is not False], failed


# ------------------------------------------------------------------------------ fit and score

def fit_option(option: Option, samples: Sequence[RobotSample], fop, args, progress: bool, *, seed: int):
    """Fit one option on samples; returns (Theta, InverseFit, prepared samples, stats dict)."""
    fop.set_theta(Theta.zero(0))     # the FOP's own weights: the fit's fixed part and the weights' origin
    learn_w = option.weights if "weights" in option.learn else ()
    K = option.K if "relu" in option.learn else 0
    data_samples = option.subgoal.apply(samples)
    data, kept, infeasible, relaxed = inverse_samples(data_samples, fop, learn=learn_w)
    if len(data) < args.min_samples:
        raise DemonstrationError(f"too few usable samples for {option.label()}: {len(data)} (need {args.min_samples}); "
                                 f"{infeasible} expert actions lay outside the FOP's constraints")
    if args.max_train and len(data) > args.max_train:
        rng = np.random.default_rng(seed + 1)
        pick = np.sort(rng.choice(len(data), size=args.max_train, replace=False))
        data = [data[i] for i in pick]
    features = None
    if learn_w:
        from dataclasses import replace as _replace
        boxes = {name: (lo, hi) for name, lo, hi in option.bounds}
        if set(boxes) - set(learn_w):
            raise DemonstrationError(f"--weight-bounds {','.join(sorted(boxes))}: only learned weights can be bounded "
                                     f"(learned: {','.join(learn_w)})")
        features = _replace(weight_features(learn_w, fop, bounds=boxes), rho=option.kappa)
    try:
        fit = fit_inverse(data, K=K, l=args.l, rho=option.rho, method=args.method, time_limit_s=args.time_limit_s,
                          mip_gap=args.mip_gap, theta_bound=args.theta_bound, seed=seed, progress=progress,
                          features=features, node_limit=args.node_limit)
    except RuntimeError as exc:  # solver failures: say so in one line, leave --out alone
        raise FitFailed(f"the inverse problem could not be solved for {option.label()} ({exc!r}); "
                        f"{args.out} was not changed") from exc
    base = {w: float(getattr(fop.config, w)) for w in WEIGHT_NAMES}
    weights = dict(base)
    for name, delta in zip(fit.weight_names, fit.weights):
        weights[name] = max(base[name] + float(delta), 0.0)
    if "c_du" not in fit.weight_names and not weights.get("c_du"):
        weights.pop("c_du", None)    # θ files without the extension stay as they were (Eq. 32a's weights only)
    cfg = fop.config
    theta = Theta(alpha=np.asarray(fit.theta, float).reshape(-1, 2), beta=np.asarray(fit.nu, float), l=float(fit.l),
                  case_study="robot", cost_weights=weights, learned_weights=list(fit.weight_names),
                  subgoal=option.subgoal.to_dict(cfg.Ts_s, cfg.limits.v_max_mps))
    return theta, fit, {"usable": len(kept), "infeasible": infeasible, "relaxed": relaxed, "fitted": len(data),
                        "dropped_forward": len(fit.dropped)}


def score(fop, theta, samples: Sequence[RobotSample], bar=None) -> dict[str, Any]:
    """The acados FOP with `theta` (ReLU terms, l, weights) on samples: Tables 4–5 metrics vs the expert."""
    fop.set_theta(theta)
    with mute_c_stdout():   # acados prints "maximum iterations reached" for a start that stops early
        u, failed = fop_actions(fop, samples, bar)
    m = action_metrics(u, np.array([s.u_expert for s in samples]).reshape(-1, 2))
    m["fop_failures"] = failed
    m["n"] = len(samples)
    return m


def closed_loop(fop, theta, params, n_courses: int, seed: int, lookahead_m: float | None) -> dict[str, Any]:
    """Kinematic loop with the geometric planner on n random courses: success, collisions, time."""
    base = load_course(params)
    rng = np.random.default_rng(seed)
    courses = [random_course(rng, base, max_obstacles=min(3, fop.config.M)) for _ in range(n_courses)]
    planner = load_params(params).get("planner_node", {})
    policy = LookaheadPolicy(lookahead_m=float(lookahead_m or planner.get("lookahead_m", LookaheadPolicy.lookahead_m)))

    fop.set_theta(theta)
    with mute_c_stdout():
        res = [unicycle_loop.run_episode(c, "fop", fop=fop, policy=policy, dt_s=0.02, max_time_s=30.0) for c in courses]
    ok = [r for r in res if r.reached]
    return {"courses": n_courses, "seed": seed, "lookahead_m": policy.lookahead_m,
            "reached": len(ok), "collided": sum(r.collided for r in res),
            "travel_time_s": float(np.mean([r.travel_time_s for r in ok])) if ok else None,
            "travel_time_std_s": float(np.std([r.travel_time_s for r in ok])) if ok else None,
            "min_clearance_m": float(min(r.min_clearance_m for r in res)) if res else None,
            "solver_failures": int(sum(r.failures for r in res))}


def pybullet_loop(lower, params, seeds: Sequence[int], driver) -> dict[str, Any]:
    """`lower` (a Fop with its θ installed, or the MPC) driven by `driver` (sim.evaluate's) on the PyBullet
    courses of `seeds`: success, collisions, mean travel time and energy (over the successful runs), mean
    |Δω| per control step and mean |ω| (over every run)."""
    env = NavEnv(lower, backend="pybullet", course_seeds=list(seeds), config=NavEnvConfig.from_params(params),
                 params=params)
    rows = []
    try:
        with mute_c_stdout():
            for seed in seeds:
                ep = evaluate.run_episode(env, driver, "select", int(seed))
                sm = command_smoothness(env.commands)
                rows.append((ep.reached and not ep.collided, ep.collided, ep.time_s, ep.energy_j,
                             sm["mean_abs_domega_radps"], sm["mean_abs_omega_radps"]))
    finally:
        env.close()
    r = np.array(rows, float).reshape(-1, 6)
    ok = r[:, 0] > 0
    return {"courses": len(rows), "first_seed": int(seeds[0]), "reached": int(ok.sum()), "collided": int(r[:, 1].sum()),
            "travel_time_s": float(r[ok, 2].mean()) if ok.any() else None,
            "energy_j": float(r[ok, 3].mean()) if ok.any() else None,
            "mean_abs_domega_radps": float(r[:, 4].mean()), "mean_abs_omega_radps": float(r[:, 5].mean())}


def select_closed_loop(candidates: list[dict[str, Any]], by_action: dict[str, Any], fop, args, progress: bool
                       ) -> tuple[dict[str, Any], str]:
    """--select closed-loop: each candidate (held-out cosine >= --min-cosine) and the action-error choice
    `by_action` drive the selection courses with the geometric planner (the MPC too, for reference); the
    one with the least energy among those that reach every course without a collision within
    SELECT_TIME_FACTOR of `by_action`'s travel time wins (`by_action` itself qualifies unless it fails a
    course). Stores each candidate's numbers under "closed_loop"."""
    seeds = list(range(args.select_first_seed, args.select_first_seed + args.select_courses))
    look = NavEnvConfig.from_params(args.params).prior_lookahead_m      # planner_node.lookahead_m
    mpc = pybullet_loop(Mpc(mpc_config_from_params(args.params)), args.params, seeds, ExpertDriver())
    eligible = [c for c in candidates if c.get("held_out", {}).get("cosine", 0.0) >= args.min_cosine
                or c is by_action]
    bar = progress_bar(eligible, enabled=progress, desc="closed-loop selection", unit="candidate")
    for c in bar:
        fop.set_theta(c["theta"])
        c["closed_loop"] = pybullet_loop(fop, args.params, seeds, SubgoalDriver(LookaheadPolicy(lookahead_m=look)))
    ref = by_action["closed_loop"]
    t_max = SELECT_TIME_FACTOR * (ref["travel_time_s"] if ref["travel_time_s"] is not None else math.inf)
    good = [c for c in eligible if c["closed_loop"]["reached"] == len(seeds) and c["closed_loop"]["collided"] == 0
            and c["closed_loop"]["travel_time_s"] <= t_max]
    note = (f"closed loop: least energy on PyBullet courses {seeds[0]}..{seeds[-1]} (geometric planner, look-ahead "
            f"{look:g} m) among candidates with held-out cosine >= {args.min_cosine:g} that reach every course "
            f"without a collision, at most {SELECT_TIME_FACTOR:g}x the travel time of the action-error choice "
            f"({by_action['label']}); MPC there: {mpc['travel_time_s']:.3f} s, {mpc['energy_j']:.2f} J, mean |dω| "
            f"{mpc['mean_abs_domega_radps']:.4f} rad/s per step, mean |ω| {mpc['mean_abs_omega_radps']:.3f} rad/s")
    if not good:
        return by_action, note + f"; no candidate qualified, so the action-error choice was kept ({by_action['label']})"
    return min(good, key=lambda c: c["closed_loop"]["energy_j"]), note


def candidate_options(args, has_plan: bool) -> list[list[Option]]:
    """Stages of candidates: staged search = [[subgoal candidates], [the rest at the chosen subgoal]]."""
    specs = args.subgoal_specs or ([SubgoalSpec("expert_plan", k) for k in range(2, 9)] if has_plan
                                   else [SubgoalSpec()])
    combos = []
    for learn in args.learn:
        Ks = args.K if "relu" in learn else [0]
        rhos = args.rho if "relu" in learn else [args.rho[0]]
        kappas = args.kappa if "weights" in learn else [0.0]
        wsets = args.weight_sets if "weights" in learn else [args.weight_sets[0]]
        bsets = args.bound_sets if "weights" in learn else [()]
        combos += [(learn, K, r, kp, tuple(ws), bs) for K, r, kp, ws, bs in itertools.product(Ks, rhos, kappas, wsets,
                                                                                             bsets)
                   if set(n for n, _, _ in bs) <= set(ws)]
    if args.search == "grid":
        return [[Option(sp, *c) for sp in specs for c in combos]]
    # staged: the cheapest mode (weights is one LP; else the first combination) decides the subgoal
    first = next((c for c in combos if c[0] == "weights"), combos[0])
    return [[Option(sp, *first) for sp in specs], [Option(None, *c) for c in combos]]


# ------------------------------------------------------------------------------ the pipeline

def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole pipeline; returns the report (also stored as provenance in --out)."""
    _check_args(args)
    t_start = time.perf_counter()
    progress = not args.no_progress
    topics = RobotTopics(args.odom_topic, args.cmd_vel_topic, args.subgoal_topic, args.obstacles_topic)
    fixed_obstacles = load_obstacles(args.obstacles) if args.obstacles is not None else None
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise DemonstrationError(f"--out {out} is a directory; give a file name such as robot.yaml")
    both = {str(Path(b).resolve()) for b in args.bags} & {str(Path(b).resolve()) for b in args.validate}
    if both:
        raise DemonstrationError(f"{sorted(both)[0]} is given both for training and for --validate; validation "
                                 "must use other bags (other course seeds)")

    # 1. bags → aligned samples, episodes
    samples, stats, bag_info = read_demonstrations(args.bags, args, topics, fixed_obstacles, progress, "training")
    all_eps = episode_summary(samples)

    def too_few(n: int, what: str) -> DemonstrationError:
        return DemonstrationError(
            f"too few samples: found {n} {what} in {len(args.bags)} bag(s) from {stats.commands} expert "
            f"commands on {topics.cmd_vel}, need at least {args.min_samples} (--min-samples); "
            f"why: {stats.reasons()}")

    if len(samples) < args.min_samples:
        raise too_few(len(samples), "aligned samples")
    samples, failed_eps = keep_successful(samples, args.keep_failed_episodes)
    if len(samples) < args.min_samples:
        raise too_few(len(samples), f"samples in successful episodes ({len(failed_eps)} failed episodes dropped; "
                                    f"--keep-failed-episodes keeps them)")
    val_samples, val_stats, val_info = [], None, []
    if args.validate:
        val_samples, val_stats, val_info = read_demonstrations(args.validate, args, topics, fixed_obstacles,
                                                               progress, "validation", seen=bag_info)
        train_seeds = {s.seed for s in samples if s.seed is not None}
        shared = sorted(train_seeds & {s.seed for s in val_samples if s.seed is not None})
        if shared:
            raise DemonstrationError(f"validation bags share course seed(s) {shared} with the training bags: their "
                                     "courses are the same; record validation demonstrations with other --seed values")
        val_samples, val_failed = keep_successful(val_samples, args.keep_failed_episodes)
        if not val_samples:
            raise DemonstrationError("no validation samples in successful episodes")
    has_plan = all(s.plan_xy is not None for s in samples)

    fop = Fop(fop_config_from_params(args.params, max([4, *args.K])))
    unchanged = Theta.zero(0)

    # 2–3. options chosen by the FOP's action error on held-out training episodes
    fit_idx, held_idx = split_episodes(samples, args.held_out, args.seed)
    fit_set = [samples[i] for i in fit_idx]
    held_set = [samples[i] for i in held_idx]
    stages = candidate_options(args, has_plan)
    candidates: list[dict[str, Any]] = []
    chosen = None
    n_fits = sum(len(st) for st in stages)
    bar = progress_bar(total=n_fits, enabled=progress, desc="options", unit="fit")
    unchanged_held: dict[str, Any] = {}
    for si, stage in enumerate(stages):
        if chosen is not None:
            stage = [replace(o, subgoal=chosen["option"].subgoal) for o in stage]
        for opt in stage:
            if any(c["option"] == opt for c in candidates):
                bar.update(1)
                continue
            bar.set_postfix_str(opt.label())
            t0 = time.perf_counter()
            theta, fit, fstats = fit_option(opt, fit_set, fop, args, False, seed=args.seed)
            entry = {"option": opt, "label": opt.label(), "theta": theta, "fit": fit, "fit_stats": fstats,
                     "fit_time_s": time.perf_counter() - t0, "objective": float(fit.objective),
                     "gap_mean": float(np.mean(fit.gaps)) if len(fit.gaps) else None}
            if held_set:
                held = opt.subgoal.apply(held_set)
                entry["held_out"] = score(fop, theta, held)
                key = opt.subgoal.label()
                if key not in unchanged_held:
                    unchanged_held[key] = score(fop, unchanged, held)
            candidates.append(entry)
            bar.update(1)
        scored = [c for c in candidates if "held_out" in c]
        if scored:   # the selection criterion: mean L2 of the real FOP's actions on held-out episodes
            chosen = min(scored, key=lambda c: (c["held_out"]["l2"], -c["held_out"]["cosine"]))
        else:
            chosen = candidates[0]
    bar.close()
    select_note = None
    if args.select == "closed-loop":
        chosen, select_note = select_closed_loop(candidates, chosen, fop, args, progress)
    option = chosen["option"]

    # 4. the chosen option on every training episode
    if args.no_refit or not held_set:
        theta_hat, fit, fstats = chosen["theta"], chosen["fit"], chosen["fit_stats"]
        fitted_on = fit_set
    else:
        theta_hat, fit, fstats = fit_option(option, samples, fop, args, progress, seed=args.seed)
        fitted_on = samples
    report_samples = {"total": len(samples), "train": len(fitted_on), "held_out": len(held_set),
                      "unused": max(len(fitted_on) - fstats["fitted"], 0), "seed": args.seed,
                      "episodes": {**all_eps, "dropped_failed": len(failed_eps), "held_out_for_selection":
                                   len({s.episode for s in held_set})},
                      **stats.as_dict()}
    report_samples["dropped_infeasible"] = fstats["infeasible"]
    report_samples["relaxed_obstacle_rows"] = fstats["relaxed"]
    report_samples["dropped_forward_failed"] = fstats["dropped_forward"]

    held_out: dict[str, Any] = {"n": len(held_set)}
    if held_set:
        held_out.update(episodes=len({s.episode for s in held_set}), learned=chosen["held_out"],
                        unchanged=unchanged_held[option.subgoal.label()],
                        unchanged_recorded=unchanged_held.get("recorded") or score(fop, unchanged, held_set),
                        note="options were chosen on these episodes (fits never saw them)")
        held_out["fop_failures"] = {"learned": held_out["learned"]["fop_failures"],
                                    "unchanged": held_out["unchanged"]["fop_failures"]}

    validation: dict[str, Any] = {}
    if val_samples:
        vbar = progress_bar(total=3 * len(val_samples), enabled=progress, desc="validation FOP solves", unit="solve")
        val_def = option.subgoal.apply(val_samples)
        validation = {"bags": val_info, **episode_summary(val_samples), "n": len(val_samples),
                      "learned": score(fop, theta_hat, val_def, vbar),
                      "unchanged": score(fop, unchanged, val_def, vbar),
                      "unchanged_recorded": score(fop, unchanged, val_samples, vbar),
                      "subgoal": option.subgoal.label()}
        vbar.close()

    loop: dict[str, Any] = {}
    if args.closed_loop:
        look = theta_hat.subgoal.get("lookahead_m")
        loop = {"learned": closed_loop(fop, theta_hat, args.params, args.closed_loop, args.closed_loop_seed, look),
                "unchanged": closed_loop(fop, unchanged, args.params, args.closed_loop, args.closed_loop_seed, None)}
        default_look = loop["unchanged"]["lookahead_m"]
        if look is not None and abs(float(look) - default_look) > 1e-9:
            loop["learned_default_lookahead"] = closed_loop(fop, theta_hat, args.params, args.closed_loop,
                                                            args.closed_loop_seed, None)

    fit_time = time.perf_counter() - t_start
    fop_cfg = fop.config
    report: dict[str, Any] = {
        "tool": "offline.fit",
        "command": "python -m offline.fit " + " ".join(shlex.quote(a) for a in args.argv),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bags": bag_info,
        "obstacles_from": args.obstacles or f"bag topic {topics.obstacles}",
        "samples": report_samples,
        "option": {"subgoal": option.subgoal.label(), "learn": option.learn, "K": int(theta_hat.K),
                   "rho": option.rho, "kappa": option.kappa, "weights": list(option.weights),
                   "bounds": [list(b) for b in option.bounds]},
        "K": int(theta_hat.K), "l": float(fit.l), "rho": option.rho, "kappa": option.kappa,
        "method": str(fit.method), "solver_status": str(fit.status),
        "objective": float(fit.objective), "bound": _num(fit.bound),
        "solver_time_s": float(fit.solve_time_s), "fit_time_s": round(fit_time, 3),
        "time_limit_s": args.time_limit_s, "node_limit": args.node_limit, "mip_gap": args.mip_gap,
        "gaps": {**_gap_stats(fit.gaps), "prop4_bound": _num(fit.prop4_bound)},
        "cost_weights": dict(theta_hat.cost_weights), "learned_weights": list(theta_hat.learned_weights),
        "selection": {"criterion": ("mean L2 distance of the acados FOP's actions to the expert's on training "
                                    "episodes held out from every candidate's fit (the gap objective is not used)")
                      if args.select == "action" else select_note,
                      "chosen": chosen["label"],
                      "candidates": [{"option": c["label"], "objective": c["objective"], "gap_mean": c["gap_mean"],
                                      "fit_time_s": round(c["fit_time_s"], 2),
                                      "cost_weights": dict(c["theta"].cost_weights),
                                      **({"held_out": c["held_out"]} if "held_out" in c else {}),
                                      **({"closed_loop": c["closed_loop"]} if "closed_loop" in c else {})}
                                     for c in candidates]},
        "held_out": held_out,
        "validation": validation,
        "closed_loop": loop,
        "controller_relu_terms": load_params(args.params).get("controller_node", {}).get("relu_terms"),
        "fop": {"Ts_s": fop_cfg.Ts_s, "c_p": fop_cfg.c_p, "c_h": fop_cfg.c_h, "c_u": fop_cfg.c_u,
                "robot_radius_m": fop_cfg.robot_radius_m, "d_safe_m": fop_cfg.d_safe_m, "M": fop_cfg.M,
                "multi_start": getattr(fop_cfg, "multi_start", None),
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


def _metric_row(name: str, m: dict[str, Any]) -> str:
    return f"  {name:34s}{m['cosine']:9.4f}{m['l2']:9.4f}{m['l1']:9.4f}  {m.get('fop_failures', 0)}"


def format_report(rep: dict[str, Any]) -> str:
    s, g, h = rep["samples"], rep["gaps"], rep["held_out"]
    e = s["episodes"]
    nan = s["dropped_nonfinite_messages"]
    nan_text = ", ".join(f"{n} on {t}" for t, n in sorted(nan.items())) or "none"
    seeds = ", ".join(str(x) for x in e.get("seeds", [])) or "not recorded"
    lines = [
        f"offline.fit: {len(rep['bags'])} training bag(s), {s['commands']} expert commands, {e['episodes']} episodes "
        f"(course seeds {seeds}; {e['failed']} failed, dropped: {e['dropped_failed']}) -> {s['total']} samples",
        f"  fit on {s['train']} samples, {e['held_out_for_selection']} episodes ({s['held_out']} samples) held out to "
        f"choose the options" + (f", {s['unused']} unused beyond --max-train" if s.get("unused") else ""),
        f"  dropped messages with NaN/inf: {nan_text}",
        f"  dropped commands: {s['dropped_no_odom']} without odometry, {s['dropped_no_subgoal']} without "
        f"subgoal, {s['dropped_no_obstacles']} without obstacles, {s['dropped_infeasible']} infeasible for "
        f"the FOP, {s.get('dropped_forward_failed', 0)} whose forward problem failed; "
        f"{s['relaxed_obstacle_rows']} with an obstacle half-space relaxed onto the expert action",
    ]
    sel = rep["selection"]
    if sel["candidates"]:
        loop_cols = any("closed_loop" in c for c in sel["candidates"])
        how = ("the FOP's mean L2 on held-out episodes" if not loop_cols else
               "closed-loop energy among candidates that imitate well enough, see below")
        lines += [f"options (chosen by {how}; the gap objective is only reported):",
                  f"  {'':52s}{'cosine':>9s}{'L2':>9s}{'objective':>12s}{'fit s':>8s}"
                  + (f"{'reached':>9s}{'time s':>8s}{'energy J':>10s}{'|dω|':>8s}" if loop_cols else "")]
        for c in sel["candidates"]:
            ho = c.get("held_out")
            mark = "*" if c["option"] == sel["chosen"] else " "
            metrics = f"{ho['cosine']:9.4f}{ho['l2']:9.4f}" if ho else f"{'–':>9s}{'–':>9s}"
            cl = c.get("closed_loop")
            loop = ""
            if cl:
                loop = (f"{cl['reached']:>5d}/{cl['courses']:<3d}{_num(cl['travel_time_s']) or math.nan:8.2f}"
                        f"{_num(cl['energy_j']) or math.nan:10.1f}{cl['mean_abs_domega_radps']:8.4f}")
            lines.append(f" {mark}{c['option']:52s}{metrics}{c['objective']:12.4g}{c['fit_time_s']:8.1f}{loop}")
        if loop_cols:
            lines.append(f"  selection: {sel['criterion']}")
    w = rep.get("cost_weights") or {}
    lw = rep.get("learned_weights") or []
    lines.append(
        f"inverse optimization (Problem 11): {rep['option']['learn']}, subgoal {rep['option']['subgoal']}, "
        f"K={rep['K']} l={rep['l']:g} rho={rep['rho']:g} kappa={rep['kappa']:g} method={rep['method']} "
        f"status={rep['solver_status']} objective={rep['objective']:.4g}"
        + (f" bound={rep['bound']:.4g}" if rep["bound"] is not None else "")
        + f" solver {rep['solver_time_s']:.1f} s")
    if w:
        lines.append("  cost weights of Eq. 32a: " + ", ".join(
            f"{k} = {v:.4g}" + (" (learned)" if k in lw else "") for k, v in w.items()))
    if g.get("n"):
        lines.append(f"  duality gaps over {g['n']} train samples: mean {g['mean']:.3g}  median {g['median']:.3g}  "
                     f"p90 {g['p90']:.3g}  max {g['max']:.3g}"
                     + (f"  (Prop. 4: ‖u*−u‖ ≤ {g['prop4_bound']:.3g})" if g.get("prop4_bound") is not None else ""))
    head = f"  {'':34s}{'cosine':>9s}{'L2':>9s}{'L1':>9s}  failed solves"
    if h.get("n"):
        lines += [f"held-out training episodes ({h['episodes']} episodes, {h['n']} samples; "
                  "used to choose the options): acados FOP vs expert", head,
                  _metric_row("FOP unchanged (θ = 0), same subgoal", h["unchanged"]),
                  _metric_row("FOP unchanged, recorded subgoal", h["unchanged_recorded"]),
                  _metric_row("FOP learned", h["learned"])]
    else:
        lines.append("held-out: none (--held-out 0)")
    v = rep.get("validation") or {}
    if v:
        vseeds = ", ".join(str(x) for x in v.get("seeds", [])) or "not recorded"
        lines += [f"validation on {len(v['bags'])} bag(s) never used for fitting or selection (course seeds {vseeds}; "
                  f"{v['episodes']} episodes, {v['n']} samples): acados FOP vs expert (Tables 4-5 metrics)", head,
                  _metric_row(f"FOP unchanged (θ = 0), subgoal {v['subgoal']}", v["unchanged"]),
                  _metric_row("FOP unchanged, recorded subgoal", v["unchanged_recorded"]),
                  _metric_row("FOP learned", v["learned"])]
    cl = rep.get("closed_loop") or {}
    if cl:
        lines.append(f"closed loop (kinematic loop, geometric planner, {cl['unchanged']['courses']} random courses, "
                     f"seed {cl['unchanged']['seed']}):")
        for key, name in (("unchanged", "FOP unchanged"), ("learned", "FOP learned"),
                          ("learned_default_lookahead", "FOP learned, default look-ahead")):
            if key in cl:
                r = cl[key]
                tt = ("–" if r["travel_time_s"] is None
                      else f"{r['travel_time_s']:.2f} ± {r['travel_time_std_s']:.2f} s")
                lines.append(f"  {name:34s} look-ahead {r['lookahead_m']:.2f} m: "
                             f"reached {r['reached']}/{r['courses']}, collisions {r['collided']}, "
                             f"travel time {tt}, min clearance {r['min_clearance_m']:.3f} m")
    th = rep["theta"]
    for k in range(th.K):
        lines.append(f"  θ_{k + 1} = α = [{th.alpha[k, 0]: .4f}, {th.alpha[k, 1]: .4f}]   "
                     f"ν_{k + 1} = β = {th.beta[k]: .4f}")
    slots = rep.get("controller_relu_terms")
    if slots is not None and slots < rep["K"]:
        lines.append(f"  note: controller_node.relu_terms = {slots} < K = {rep['K']}: raise relu_terms in the "
                     "parameter file, or the controller will refuse this θ")
    if th.subgoal.get("lookahead_m") is not None:
        lines.append(f"  subgoal definition: {rep['option']['subgoal']} (≈ {th.subgoal['lookahead_m']:.2f} m ahead at "
                     "full speed; recorded in the θ file)")
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
