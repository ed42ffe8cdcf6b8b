"""The robot's RL trainings over seeds × methods as one sweep: ``python -m offline.experiments train``.

Each (method, seed) is one ``python -m sim.train --method M --seed S --out DIR/M/seedS`` run as a task
of offline.sweep (in process, ``--workers N`` or ``--address``); its SB3 vector env stays inside the
task (``--vec dummy``, ``--n-envs`` as sim.train's default, so a run gives the same policy whichever
way the sweep runs it). ``python -m offline.experiments table2 --policies DIR`` then evaluates every
seed's policy. The shipped policies (config/policy/) are not touched: ship one with sim.train --ship.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from offline.sweep import Task, add_sweep_arguments, options_from_args, run_sweep
from sim import train
from sim.train import TrainConfig

METHODS = ("bilevel-learned", "bilevel-unchanged", "e2e")


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per method (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed+seeds−1 (default 0)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"env steps per run (default {d.steps})")
    p.add_argument("--n-envs", type=int, default=d.n_envs, help=f"env copies per run (default {d.n_envs})")
    p.add_argument("--theta", default=None, help="θ of bilevel-learned (default: sim.train's)")
    p.add_argument("--out", type=Path, default=Path("runs/train/seeds"),
                   help="runs go to OUT/<method>/seed<k>/ (default runs/train/seeds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_sweep_arguments(p)


def train_task(argv: list[str]) -> dict:
    """One sim.train run (the task): its exit code, folder and wall time."""
    t0 = time.perf_counter()
    rc = train.main(argv)
    if rc != 0:
        raise RuntimeError(f"python -m sim.train {' '.join(argv)} exited with {rc}")
    out = Path(argv[argv.index("--out") + 1])
    return {"out": str(out), "policy": str(out / "policy.pt"), "wall_s": time.perf_counter() - t0}


def jobs(args) -> list[Task]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"--methods: unknown {bad}; choose from {','.join(METHODS)}")
    if args.seeds < 1 or args.steps < 1:
        raise ValueError("--seeds and --steps must be >= 1")
    tasks = []
    for m in methods:
        for s in range(args.first_seed, args.first_seed + args.seeds):
            argv = ["--method", m, "--seed", str(s), "--steps", str(args.steps), "--n-envs", str(args.n_envs),
                    "--vec", "dummy", "--no-progress", "--out", str(args.out / m / f"seed{s}")]
            if m == "bilevel-learned" and args.theta:
                argv += ["--theta", str(args.theta)]
            tasks.append(Task(f"{m}/seed{s}", train_task, (argv,)))
    return tasks


def run(args, argv: list[str] | None = None) -> dict:
    tasks = jobs(args)
    sweep = options_from_args(args, progress=not args.no_progress)
    print(f"offline.experiments train: {len(tasks)} sim.train runs ({args.steps} env steps each) {sweep.where}")
    res = run_sweep(tasks, sweep, desc="trainings", log=lambda m: print(m, file=sys.stderr))
    for name, v in res.values.items():
        print(f"  {name}: {v['policy']} ({v['wall_s']:.0f} s)")
    for line in res.failure_lines():
        print(line, file=sys.stderr)
    print(f"{len(res.values)} of {len(tasks)} trainings in {res.wall_s:.0f} s {res.where}; evaluate them with "
          f"python -m offline.experiments table2 --policies {args.out}")
    return {"sweep": res, "out": args.out}
