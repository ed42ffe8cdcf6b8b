"""Table 2 of the paper for the robot: ``python -m sim.evaluate`` (add ``--help`` for the options).

Six methods drive the same held-out courses (seeds from :data:`sim.courses.EVAL_SEEDS`, never used
in training; the range is printed) in the PyBullet world of the ROS stack:

    MPC (expert)           the acados MPC at the control rate, given the goal
    End-to-end RL          the e2e policy's (v, ω), held for each planner period
    Bi-level-unchanged     its RL policy's subgoals -> FOP with θ = 0
    Bi-level-learned       its RL policy's subgoals -> FOP_θ with the shipped θ
    Geometric + FOP_θ      the geometric look-ahead subgoals -> FOP_θ (no RL; the stack's
                           policy_checkpoint: "")
    Geometric + FOP (θ = 0)  the same look-ahead subgoals -> FOP with θ = 0

The two geometric rows are the priors the residual RL policies correct (``sim.train --action
residual``): each bi-level row against its geometric row is what the RL upper level adds for its
lower level.

Each episode is one :class:`sim.nav_env.NavEnv` episode with the method's lower level; the upper
levels are the deployment classes (:class:`~hiopt_ros.planning.torch_policy.TorchPolicy` loading the
exported .pt files, :class:`~hiopt_ros.planning.geometric.LookaheadPolicy`), so what is evaluated is
what planner_node runs. Columns: travel time, path length and energy (wheel-motor work of
sim.World) over the episodes that reached the goal; success rate; collision rate; minimum
clearance (robot circle to obstacle surface); decision time per control step (mean and p99 per
episode; bi-level: the FOP solve plus the planner's observation + forward pass divided by the
control periods per planner period; MPC: its solve; e2e: the forward pass divided likewise).

Writes into ``--out`` (default ``results/table2/<time>/``, printed): ``table2.md``, ``table2.csv``,
``table2_episodes.csv`` (offline.results), ``default_course.md``, ``trajectories_default_course.png``
(every method's trajectory on the default course of config/nav.yaml) and ``evaluation.yaml`` (seeds,
policy files with SHA-256, θ, command). ``--ros`` drives the same courses through the ROS 2 node
graph (``hiopt_ros.launcher``: sim, planner, controller as processes, real time) instead.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim.course import DEFAULT_PARAMS, Course
from sim.courses import DEFAULT_COURSE_SEED, EVAL_SEEDS, course_for_seed, describe_seed_ranges

from hiopt_ros.config import IMPORT_ROOT as REPO_ROOT, config_path  # noqa: E402  (the one config locator)

DEFAULT_THETA = config_path("theta", "robot.yaml")
#: the shipped policies of the three learned rows (python -m sim.train ... --ship config/policy/<name>.pt;
#: each .yaml beside it records the command, seed, steps and θ it was trained with)
SHIPPED_POLICY = config_path("policy", "bilevel_learned.pt")
SHIPPED_UNCHANGED = config_path("policy", "bilevel_unchanged.pt")
SHIPPED_E2E = config_path("policy", "e2e.pt")

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
    from offline.results import Metric

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


# ---------------------------------------------------------------------------- upper levels ("drivers")
class _Driver:
    """Chooses what the env does in one planner period; returns (step result, decision seconds)."""

    def act(self, env) -> tuple[tuple, float]:
        raise NotImplementedError

    def reset(self) -> None:
        """A new episode (an upper level with memory forgets it)."""


class ExpertDriver(_Driver):
    """The MPC plans to the goal itself: its 'subgoal' is the goal (the env passes it to Mpc.solve)."""

    def act(self, env):
        return env.step_subgoal(env.course.goal_xy), 0.0


class PolicyDriver(_Driver):
    """An upper level in front of the env, its forward pass timed: `decide(pose, goal_xy, obstacles_xyr,
    robot_radius_m)` gives what `env.<step>` applies for one planner period."""

    def __init__(self, decide, step: str, reset=None) -> None:
        self.decide, self.step, self._reset = decide, step, reset

    def reset(self) -> None:
        if self._reset is not None:
            self._reset()

    def act(self, env):
        c = env.course
        t0 = time.perf_counter()
        out = self.decide(env.pose(), c.goal_xy, c.obstacles_xyr, c.robot_radius_m)
        dt = time.perf_counter() - t0
        return getattr(env, self.step)(out), dt


def SubgoalDriver(policy) -> PolicyDriver:
    """A subgoal policy (TorchPolicy or LookaheadPolicy) in front of the env's FOP."""
    driver = PolicyDriver(policy.subgoal, "step_subgoal", getattr(policy, "reset", None))
    driver.policy = policy
    return driver


def CommandDriver(policy) -> PolicyDriver:
    """The end-to-end policy: (v, ω) held for the planner period."""
    return PolicyDriver(policy.command, "step_command")


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

    def metrics(self) -> dict[str, float]:
        from offline.results import timing_stats

        t = timing_stats(self.decision_s)
        ok = self.reached and not self.collided
        return {"travel_time_s": self.time_s if ok else math.nan,
                "path_length_m": self.path_length_m if ok else math.nan,
                "energy_j": self.energy_j if ok else math.nan,
                "success": float(ok), "collision": float(self.collided),
                "min_clearance_m": self.min_clearance_m,
                "decision_mean_ms": t["mean_ms"], "decision_p99_ms": t["p99_ms"]}


def run_episode(env, driver: _Driver, method: str, course_seed: int, course: Course | None = None) -> Episode:
    """One episode of `driver` on the course of `course_seed`; decision time per control period."""
    options = {"course_seed": course_seed} if course is None else {"course": course, "course_seed": course_seed}
    env.reset(options=options)
    driver.reset()
    decisions: list[float] = []
    while True:
        periods_before = len(env.trajectory)
        (_, _, terminated, truncated, info), upper_s = driver.act(env)
        periods = len(env.trajectory) - periods_before
        solves = [t * 1e-6 for t in env.last_solve_times_us]
        # the planner's work is spread over its period's control steps (it runs once per n_control)
        share = upper_s / env.n_control
        decisions += [share + s for s in solves] + [share] * max(periods - len(solves), 0)
        if terminated or truncated:
            break
    return Episode(method, course_seed, bool(info["reached"]), bool(info["collided"]), float(info["time_s"]),
                   float(info["path_length_m"]), float(info.get("energy_j", math.nan)),
                   float(info["min_clearance_m"]), decisions, int(info["solver_failures"]),
                   np.array(env.trajectory))


# ---------------------------------------------------------------------------- set-up
def build_methods(args) -> dict[str, tuple[Any, _Driver, dict]]:
    """{key: (env, driver, description)} for the selected methods (every env on args.backend)."""
    from hiopt_ros.planning.geometric import LookaheadPolicy
    from hiopt_ros.planning.torch_policy import TorchCommandPolicy, TorchPolicy
    from sim.nav_env import NavEnv, NavEnvConfig, make_lower_level

    cfg = NavEnvConfig.from_params(args.params)
    out = {}
    for key in args.methods:
        desc: dict[str, Any] = {"row": METHODS[key]}
        if key == "mpc":
            lower, driver = make_lower_level("mpc", params=args.params), ExpertDriver()
        elif key == "e2e":
            lower = None
            driver = CommandDriver(TorchCommandPolicy.load(args.e2e, cfg.limits.lower, cfg.limits.upper))
            desc["policy"] = str(args.e2e)
        elif key in ("geometric", "geometric-unchanged"):
            theta = args.theta if key == "geometric" else None
            lower = make_lower_level("fop", theta=theta, params=args.params)
            driver = SubgoalDriver(LookaheadPolicy(lookahead_m=cfg.prior_lookahead_m))   # planner_node.lookahead_m
            desc["theta"] = str(theta) if theta else "θ = 0 (unchanged)"
        else:
            theta = args.theta if key == "bilevel-learned" else None
            lower = make_lower_level("fop", theta=theta, params=args.params)
            path = getattr(args, key.replace("-", "_"))
            driver = SubgoalDriver(TorchPolicy.load(path, max_distance_m=cfg.max_subgoal_m,
                                                    progress_check=not args.no_progress_check))
            desc.update(policy=str(path), theta=str(theta) if theta else "θ = 0 (unchanged)")
        env = NavEnv(lower, backend=args.backend, course_seeds=[DEFAULT_COURSE_SEED], config=cfg, params=args.params)
        out[key] = (env, driver, desc)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sim.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--courses", type=int, default=50, help="held-out courses (default 50)")
    ap.add_argument("--first-seed", type=int, default=EVAL_SEEDS.start,
                    help=f"first evaluation course seed (default {EVAL_SEEDS.start}; must lie in "
                         f"{EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1})")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)} (default: all, in this order)")
    ap.add_argument("--bilevel-learned", type=Path, default=SHIPPED_POLICY,
                    help="policy of the bi-level-learned row (default: the shipped config/policy/bilevel_learned.pt)")
    ap.add_argument("--bilevel-unchanged", type=Path, default=SHIPPED_UNCHANGED,
                    help="policy of the bi-level-unchanged row (default: the shipped config/policy/bilevel_unchanged.pt)")
    ap.add_argument("--e2e", type=Path, default=SHIPPED_E2E,
                    help="policy of the end-to-end row (default: the shipped config/policy/e2e.pt)")
    ap.add_argument("--theta", type=Path, default=DEFAULT_THETA,
                    help="θ of the learned FOP (bi-level-learned and geometric rows; default config/theta/robot.yaml)")
    ap.add_argument("--no-progress-check", action="store_true",
                    help="run residual RL policies without their progress check (the learned policy alone; "
                         "see hiopt_ros/planning/torch_policy.py)")
    ap.add_argument("--backend", choices=("pybullet", "kinematic"), default="pybullet",
                    help="in-process world (default pybullet, the stack's physics)")
    ap.add_argument("--ros", action="store_true",
                    help="drive every course through the ROS 2 node graph (hiopt_ros.launcher) instead")
    ap.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="ROS parameter file (rates, bounds, FOP)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default results/table2/<time>)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        ap.error(f"--methods: unknown {bad}; choose from {','.join(METHODS)}")
    if args.courses < 1:
        ap.error("--courses must be >= 1")
    last = args.first_seed + args.courses - 1
    if args.first_seed < EVAL_SEEDS.start or last >= EVAL_SEEDS.stop:
        ap.error(f"course seeds {args.first_seed}..{last} leave the held-out range "
                 f"{EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1} (training uses the others)")
    for key in ("bilevel-learned", "bilevel-unchanged", "e2e"):
        path = getattr(args, key.replace("-", "_"))
        if key in args.methods and not Path(path).is_file():
            ap.error(f"--{key}: {path} does not exist (train it with python -m sim.train --method {key})")
    if any(m in args.methods for m in ("bilevel-learned", "geometric")) and not args.theta.is_file():
        ap.error(f"--theta: {args.theta} does not exist")
    if not args.params.is_file():
        ap.error(f"--params: {args.params} does not exist")
    return args


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from offline.results import ResultsTable, new_results_dir
    from hiopt_ros.progress import progress_bar

    seeds = list(range(args.first_seed, args.first_seed + args.courses))
    out = args.out or new_results_dir("table2", REPO_ROOT / "results")
    out.mkdir(parents=True, exist_ok=True)
    where = "ROS 2 node graph (hiopt_ros.launcher)" if args.ros else f"{args.backend} (in process)"
    print(f"sim.evaluate: {len(args.methods)} methods x {len(seeds)} held-out courses "
          f"(seeds {seeds[0]}..{seeds[-1]}) + the default course, {where}")
    print(describe_seed_ranges())
    if args.ros:
        from sim import evaluate_ros
        episodes, descs = evaluate_ros.run(args, seeds, out, progress=not args.no_progress)
    else:
        methods = build_methods(args)
        descs = {k: d for k, (_, _, d) in methods.items()}
        episodes = {k: [] for k in methods}
        jobs = [(k, s) for s in [DEFAULT_COURSE_SEED, *seeds] for k in methods]
        bar = progress_bar(jobs, enabled=not args.no_progress, desc="episodes", unit="ep")
        for key, seed in bar:
            env, driver, _ = methods[key]
            episodes[key].append(run_episode(env, driver, key, seed))
            bar.set_postfix(method=key, seed=seed, refresh=False)
        for env, _, _ in methods.values():
            env.close()

    table = ResultsTable("Table 2: robot navigation on held-out courses", table_metrics())
    default = ResultsTable("The default course of config/nav.yaml (seed 0, never trained on)", table_metrics())
    for key in args.methods:
        for ep in episodes[key]:
            (default if ep.course_seed == DEFAULT_COURSE_SEED else table).add(METHODS[key], ep.metrics())
    failures = {METHODS[k]: sum(e.solver_failures for e in episodes[k]) for k in args.methods}
    recoveries = {} if args.ros else {
        METHODS[k]: d.policy.recoveries for k, (_, d, _) in methods.items()
        if getattr(getattr(d, "policy", None), "progress_check", None) is not None}
    notes = [f"{len(seeds)} held-out courses, seeds {seeds[0]}..{seeds[-1]} (training used "
             f"1..999999); {where}; mean ± std over episodes",
             "travel time, path length and energy over the episodes that reached the goal without a "
             "collision (n given when fewer); success = reached without collision; min clearance = "
             "smallest distance between the robot circle and an obstacle surface",
             "decision time per control step: bi-level = FOP solve + the planner's observation and "
             "forward pass / control periods per planner period; MPC = its solve; e2e = forward pass / "
             "control periods" + ("; ROS: the controller's or expert's solve times as published "
                                 "(the planner's forward pass is not included)" if args.ros else ""),
             ("lower-level solver failures (stop command applied): " +
              ", ".join(f"{k} {v}" for k, v in failures.items())) if not args.ros else
             "solver failures: see each run's /diagnostics in <out>/ros/runs/*/logs",
             *([("progress-check recoveries (the residual policy stalled for 1 s and its prior drove "
                 "alone for 1 s): " + ", ".join(f"{k} {v}" for k, v in recoveries.items()))] if recoveries else []),
             "command: python -m sim.evaluate " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                     else sys.argv[1:]))]
    paths = table.write(out, "table2", notes=notes)
    default.write(out, "default_course", notes=notes[1:3])
    png = _plot_default(out / "trajectories_default_course.png", episodes, args)
    meta = {"command": notes[-1].split(": ", 1)[1], "course_seeds": [seeds[0], seeds[-1]],
            "default_course_seed": DEFAULT_COURSE_SEED, "world": where, "methods": {}}
    for key in args.methods:
        d = dict(descs[key])
        for f in ("policy", "theta"):
            if d.get(f) and Path(d[f]).is_file():
                d[f + "_sha256"] = _sha256(d[f])
        meta["methods"][key] = d
    (out / "evaluation.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    print()
    print(table.markdown(notes))
    print(default.markdown())
    print(f"results folder: {out}")
    for p in [*paths.values(), out / "default_course.md", png, out / "evaluation.yaml"]:
        if p is not None:
            print(f"  {Path(p).name}")
    return 0


def _plot_default(path: Path, episodes: dict[str, list[Episode]], args) -> Path | None:
    from sim.plot import plot_trajectory

    trajs = {}
    for key in args.methods:
        ep = next((e for e in episodes[key] if e.course_seed == DEFAULT_COURSE_SEED), None)
        if ep is not None and len(ep.trajectory):
            outcome = "goal" if ep.reached else ("collision" if ep.collided else "timeout")
            trajs[f"{METHODS[key]} ({ep.time_s:.2f} s, {outcome})"] = ep.trajectory
    if not trajs:
        return None
    return plot_trajectory(path, course_for_seed(DEFAULT_COURSE_SEED, args.params), trajs,
                           title="default course of config/nav.yaml: every method")


if __name__ == "__main__":
    sys.exit(main())
