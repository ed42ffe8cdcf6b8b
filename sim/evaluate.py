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
``table2_episodes.csv`` (sim.results), ``default_course.md``, ``trajectories_default_course.png``
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hiopt_ros.config import IMPORT_ROOT as REPO_ROOT  # noqa: E402  (the one config locator)
from hiopt_ros.config import config_path
from hiopt_ros.course import DEFAULT_PARAMS, Course
from hiopt_ros.planning.geometric import LookaheadPolicy
from hiopt_ros.planning.torch_policy import TorchCommandPolicy, TorchPolicy
from hiopt_ros.progress import progress_bar
from sim import evaluate_ros
from sim.courses import DEFAULT_COURSE_SEED, EVAL_SEEDS, course_for_seed, describe_seed_ranges
from sim.episodes import METHODS, Episode, table_metrics
from sim.nav_env import NavEnv, NavEnvConfig, make_lower_level
from sim.results import ResultsTable, new_results_dir

DEFAULT_THETA = config_path("theta", "robot.yaml")
#: the shipped policies of the three learned rows (python -m sim.train ... --ship config/policy/<name>.pt;
#: each .yaml beside it records the command, seed, steps and θ it was trained with)
SHIPPED_POLICY = config_path("policy", "bilevel_learned.pt")
SHIPPED_UNCHANGED = config_path("policy", "bilevel_unchanged.pt")
SHIPPED_E2E = config_path("policy", "e2e.pt")

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
@dataclass(frozen=True)
class EvalSetup:
    """Everything a course task needs to build a method: plain values (picklable), so the same task
    runs in this process or in a worker of offline.sweep and gives the same numbers."""

    params: str
    backend: str = "pybullet"
    theta: str = str(DEFAULT_THETA)
    bilevel_learned: str = str(SHIPPED_POLICY)
    bilevel_unchanged: str = str(SHIPPED_UNCHANGED)
    e2e: str = str(SHIPPED_E2E)
    no_progress_check: bool = False

    @classmethod
    def from_args(cls, args) -> "EvalSetup":
        return cls(params=str(args.params), backend=args.backend, theta=str(args.theta),
                   bilevel_learned=str(args.bilevel_learned), bilevel_unchanged=str(args.bilevel_unchanged),
                   e2e=str(args.e2e), no_progress_check=bool(args.no_progress_check))

    def policy(self, key: str) -> str:
        return getattr(self, key.replace("-", "_"))


def build_method(setup: EvalSetup, key: str) -> tuple[Any, _Driver, dict]:
    """(env, driver, description) of one method (its env on setup.backend)."""
    cfg = NavEnvConfig.from_params(setup.params)
    desc: dict[str, Any] = {"row": METHODS[key]}
    if key == "mpc":
        lower, driver = make_lower_level("mpc", params=setup.params), ExpertDriver()
    elif key == "e2e":
        lower = None
        driver = CommandDriver(TorchCommandPolicy.load(setup.e2e, cfg.limits.lower, cfg.limits.upper))
        desc["policy"] = setup.e2e
    elif key in ("geometric", "geometric-unchanged"):
        theta = setup.theta if key == "geometric" else None
        lower = make_lower_level("fop", theta=theta, params=setup.params)
        driver = SubgoalDriver(LookaheadPolicy(lookahead_m=cfg.prior_lookahead_m))   # planner_node.lookahead_m
        desc["theta"] = str(theta) if theta else "θ = 0 (unchanged)"
    else:
        theta = setup.theta if key == "bilevel-learned" else None
        lower = make_lower_level("fop", theta=theta, params=setup.params)
        path = setup.policy(key)
        driver = SubgoalDriver(TorchPolicy.load(path, max_distance_m=cfg.max_subgoal_m,
                                                progress_check=not setup.no_progress_check))
        desc.update(policy=str(path), theta=str(theta) if theta else "θ = 0 (unchanged)")
    env = NavEnv(lower, backend=setup.backend, course_seeds=[DEFAULT_COURSE_SEED], config=cfg, params=setup.params)
    return env, driver, desc


#: methods built in this process, reused by the next course of the same method and setup
_BUILT: dict[tuple[EvalSetup, str], tuple[Any, _Driver, dict]] = {}


def evaluate_course(setup: EvalSetup, key: str, course_seed: int) -> Episode:
    """One course of one method: the task of Table 2's sweep (a plain function of its arguments; the
    method is built once per process). Episode.recoveries: the progress check's recoveries in it."""
    if (setup, key) not in _BUILT:
        _BUILT[(setup, key)] = build_method(setup, key)
    env, driver, _ = _BUILT[(setup, key)]
    policy = getattr(driver, "policy", None)
    before = getattr(policy, "recoveries", 0)
    ep = run_episode(env, driver, key, course_seed)
    ep.recoveries = getattr(policy, "recoveries", 0) - before
    return ep


def close_built() -> None:
    """Close the envs this process built (PyBullet clients)."""
    while _BUILT:
        env, _, _ = _BUILT.popitem()[1]
        env.close()


def describe(setup: EvalSetup, key: str) -> dict:
    """The description of a method (row, policy and θ files) without building it."""
    desc: dict[str, Any] = {"row": METHODS[key]}
    if key == "e2e":
        desc["policy"] = setup.e2e
    elif key in ("geometric", "geometric-unchanged"):
        desc["theta"] = setup.theta if key == "geometric" else "θ = 0 (unchanged)"
    elif key in ("bilevel-learned", "bilevel-unchanged"):
        desc.update(policy=setup.policy(key), theta=setup.theta if key == "bilevel-learned" else "θ = 0 (unchanged)")
    return desc


def serial_runner(jobs, desc: str = "episodes", progress: bool = True):
    """The default way to run course tasks: one after the other in this process.

    jobs: [(name, fn, args)]; returns ({name: value}, {name: why it failed}) like offline.sweep."""
    values: dict[str, Any] = {}
    bar = progress_bar(jobs, enabled=progress, desc=desc, unit="ep")
    for name, fn, fn_args in bar:
        values[name] = fn(*fn_args)
        bar.set_postfix_str(name, refresh=False)
    return values, {}


def course_jobs(setup: EvalSetup, keys, seeds, tag: str = "") -> list[tuple[str, Any, tuple]]:
    """The course tasks of `keys` on the default course and `seeds`, named '<key><tag>/<seed>'."""
    return [(f"{k}{tag}/{s}", evaluate_course, (setup, k, s)) for s in [DEFAULT_COURSE_SEED, *seeds] for k in keys]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of Table 2 (also those of ``python -m offline.experiments table2``)."""
    ap.add_argument("--courses", type=int, default=50, help="held-out courses (default 50)")
    ap.add_argument("--first-seed", type=int, default=EVAL_SEEDS.start,
                    help=f"first evaluation course seed (default {EVAL_SEEDS.start}; must lie in "
                         f"{EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1})")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated subset of {','.join(METHODS)} (default: all, in this order)")
    ap.add_argument("--bilevel-learned", type=Path, default=SHIPPED_POLICY,
                    help="policy of the bi-level-learned row (default: the shipped config/policy/bilevel_learned.pt)")
    ap.add_argument("--bilevel-unchanged", type=Path, default=SHIPPED_UNCHANGED,
                    help="policy of the bi-level-unchanged row (default: the shipped "
                         "config/policy/bilevel_unchanged.pt)")
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m sim.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return check_args(ap, ap.parse_args(argv))


def check_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Validate the parsed options (ap.error: one line, exit 2)."""
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


def main(argv: list[str] | None = None, runner=None, where: str | None = None) -> int:
    """Table 2. `runner(jobs, desc)` runs the course tasks (default: serial_runner in this process;
    ``python -m offline.experiments table2 --workers N`` passes offline.sweep's), `where` names it."""
    args = parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.courses))
    out = args.out or _new_out()
    world = "ROS 2 node graph (hiopt_ros.launcher)" if args.ros else f"{args.backend} (in process)"
    if where and not args.ros:
        world = f"{args.backend} ({where})"
    print(f"sim.evaluate: {len(args.methods)} methods x {len(seeds)} held-out courses "
          f"(seeds {seeds[0]}..{seeds[-1]}) + the default course, {world}")
    print(describe_seed_ranges())
    failed: dict[str, str] = {}
    if args.ros:
        episodes, descs = evaluate_ros.run(args, seeds, out, progress=not args.no_progress)
    else:
        setup = EvalSetup.from_args(args)
        episodes, failed = run_courses(setup, args.methods, seeds, runner, progress=not args.no_progress)
        descs = {k: describe(setup, k) for k in args.methods}
    command = "python -m sim.evaluate " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                              else sys.argv[1:]))
    write_tables(args, seeds, out, episodes, descs, world, command, failed=failed)
    return 0


def _new_out() -> Path:
    return new_results_dir("table2", REPO_ROOT / "results")


def run_courses(setup: EvalSetup, keys, seeds, runner=None, progress: bool = True, tag: str = ""):
    """({key: [Episode]} in course order, {task name: why it failed}) of `keys` on the default course +
    `seeds`, each course a task of `runner` (default: serial_runner)."""
    jobs = course_jobs(setup, keys, seeds, tag)
    if runner is None:
        values, failed = serial_runner(jobs, progress=progress)
        close_built()
    else:
        values, failed = runner(jobs, "courses")
    episodes: dict[str, list[Episode]] = {k: [] for k in keys}
    for name, _, (_, key, _) in jobs:
        if name in values:
            episodes[key].append(values[name])
    return episodes, dict(failed)


def write_tables(args, seeds, out: Path, episodes: dict, descs: dict, world: str, command: str,
                 failed: dict | None = None, extra_notes=(), labels: dict | None = None) -> dict:
    """table2.md/.csv/_episodes.csv, default_course.md, the trajectory plot and evaluation.yaml into out;
    prints the tables; returns the paths. labels: row label of each key of `episodes` (default METHODS)."""
    labels = labels or METHODS
    keys = list(episodes)
    out.mkdir(parents=True, exist_ok=True)
    table = ResultsTable("Table 2: robot navigation on held-out courses", table_metrics())
    default = ResultsTable("The default course of config/nav.yaml (seed 0, never trained on)", table_metrics())
    for key in keys:
        for ep in episodes[key]:
            (default if ep.course_seed == DEFAULT_COURSE_SEED else table).add(labels[key], ep.metrics())
    failures = {labels[k]: sum(e.solver_failures for e in episodes[k]) for k in keys}
    recoveries = {labels[k]: sum(e.recoveries for e in episodes[k]) for k in keys
                  if k.split("@")[0] in ("bilevel-learned", "bilevel-unchanged")}
    notes = [f"{len(seeds)} held-out courses, seeds {seeds[0]}..{seeds[-1]} (training used "
             f"1..999999); {world}; mean ± std over episodes",
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
                 "alone for 1 s): " + ", ".join(f"{k} {v}" for k, v in recoveries.items()))]
               if recoveries and not args.ros else []),
             *([f"tasks that failed (their episodes are missing): {'; '.join(f'{k}: {v}' for k, v in failed.items())}"]
               if failed else []),
             *extra_notes,
             f"command: {command}"]
    paths = table.write(out, "table2", notes=notes)
    default.write(out, "default_course", notes=notes[1:3])
    png = _plot_default(out / "trajectories_default_course.png", episodes, keys, labels, args.params)
    meta = {"command": command, "course_seeds": [seeds[0], seeds[-1]],
            "default_course_seed": DEFAULT_COURSE_SEED, "world": world, "methods": {}}
    for key in keys:
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
    return {**paths, "png": png, "yaml": out / "evaluation.yaml", "table": table}


def _plot_default(path: Path, episodes: dict[str, list[Episode]], keys, labels, params) -> Path | None:
    from hiopt_ros.plot import plot_trajectory

    trajs = {}
    for key in keys:
        ep = next((e for e in episodes[key] if e.course_seed == DEFAULT_COURSE_SEED), None)
        if ep is not None and len(ep.trajectory):
            outcome = "goal" if ep.reached else ("collision" if ep.collided else "timeout")
            trajs[f"{labels[key]} ({ep.time_s:.2f} s, {outcome})"] = ep.trajectory
    if not trajs:
        return None
    return plot_trajectory(path, course_for_seed(DEFAULT_COURSE_SEED, params), trajs,
                           title="default course of config/nav.yaml: every method")


if __name__ == "__main__":
    sys.exit(main())
