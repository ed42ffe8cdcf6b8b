"""Table 1 of the paper for one case study: every method on the same seeded episodes, mean ± std.

Reads top to bottom: options → the case prepares its policies (cached) → evaluation seeds (checked
disjoint from the training seeds) → the episode loop (reference method first, so every other
method's reward can be given as a percentage of the reference's on the same seed) → table, CSV,
plot, folder printed. See the package docstring for the case-study interface.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from offline.experiments import CASES, METHODS, Episode, Prepared, load_case
from offline.experiments.seeds import Pair, SeededRuns, write_seed_tables
from offline.sweep import SweepOptions, Task, add_sweep_arguments, options_from_args, run_sweep
from sim.results import Metric, ResultsTable, bar_plot, new_results_dir, timing_stats

#: evaluation seeds start here by default; training seeds of every case stay below it
EVAL_SEED_DEFAULT = 10_000


def add_arguments(p: argparse.ArgumentParser, case_default: str | None = None) -> None:
    """The runner's options (a command built on Table 1, e.g. Table 6, may give --case a default)."""
    p.add_argument("--case", required=case_default is None, default=case_default, choices=sorted(CASES),
                   help="case study" + (f" (default {case_default})" if case_default else ""))
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per method (default 10)")
    p.add_argument("--eval-seed", type=int, default=EVAL_SEED_DEFAULT,
                   help=f"first evaluation seed; episodes use eval-seed … eval-seed+episodes−1 "
                        f"(default {EVAL_SEED_DEFAULT}; must not overlap the training seeds)")
    p.add_argument("--methods", default=None,
                   help="comma-separated subset of the case's methods (default: the paper's rows, reference "
                        "first); 'all' adds the case's optional diagnostic rows")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: results/table1_<case>/<timestamp>/)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="cache of the case's artefacts (θ, trained policies, demonstrations); "
                        "default results/<case>/")
    p.add_argument("--seeds", type=int, default=3,
                   help="RL training seeds of every learned row (default 3; 5 or more for the paper's claims): "
                        "the table is over seeds × episodes, <stem>_seeds.md has mean ± std over seeds, the "
                        "paired comparison and every seed's row")
    p.add_argument("--first-train-seed", type=int, default=0,
                   help="training seeds are first-train-seed … first-train-seed+seeds−1 (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_sweep_arguments(p)


def _methods(case, spec: str | None) -> list[str]:
    """The case's methods (default), or the named subset, in the case's order (reference first);
    a case's optional_methods (diagnostic rows) run only when named."""
    if spec is None:
        return list(case.methods)
    known = list(case.methods) + list(getattr(case, "optional_methods", ()))
    if spec.strip() == "all":
        return known
    chosen = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in known]
    if unknown or not chosen:
        raise SystemExit(f"offline.experiments: --methods: unknown {unknown or spec!r}; "
                         f"the {case.name} case has {', '.join(known)}")
    return [m for m in known if m in chosen]


def _seed_ranges(seeds) -> str:
    seeds = sorted(set(int(s) for s in seeds))
    if not seeds:
        return "none"
    parts, start, prev = [], seeds[0], seeds[0]
    for s in seeds[1:] + [None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        parts.append(f"{start}" if start == prev else f"{start}–{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(parts)


def run(args: argparse.Namespace, case=None) -> dict:
    """Run Table 1 for args.case; returns {"out": folder, "paths": written files, "table": ResultsTable}."""
    case = case or load_case(args.case)
    if args.episodes < 1:
        raise SystemExit("offline.experiments: --episodes must be >= 1")
    methods = _methods(case, args.methods)
    work_dir = args.work_dir or Path("results") / case.name
    progress = not args.quiet and sys.stderr.isatty()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    log(f"[table1/{case.name}] preparing {', '.join(methods)} (artefacts in {work_dir}/)")
    train_seeds, how = _training_seeds(case, args)
    prepared_by_seed: dict[int | None, Prepared] = {}
    for s in train_seeds:
        if s is not None:
            log(f"[table1/{case.name}] RL training seed {s} ({how})")
        prepared_by_seed[s] = _prepare(case, args, work_dir, log, s, how)
    used = sorted({int(x) for p in prepared_by_seed.values() for x in p.train_seeds})
    eval_seeds = list(range(args.eval_seed, args.eval_seed + args.episodes))
    overlap = sorted(set(eval_seeds) & set(used))
    if overlap:
        raise SystemExit(f"offline.experiments: evaluation seeds {_seed_ranges(overlap)} were used for training; "
                         f"choose --eval-seed outside {_seed_ranges(used)}")
    log(f"[table1/{case.name}] training seeds: {_seed_ranges(used)}; "
        f"evaluation seeds: {_seed_ranges(eval_seeds)}")

    # the sweep: rows without RL (the reference first) once per evaluation seed, RL rows per training seed
    trained = set(getattr(case, "trained_methods", METHODS[1:]))
    first = prepared_by_seed[train_seeds[0]]
    sweep = options_from_args(args, progress=progress)
    sweep, why_local = _shippable(sweep, prepared_by_seed)
    if why_local:
        log(f"[table1/{case.name}] {why_local}")
    on_ray = bool(sweep.workers or sweep.address)
    run_id = f"{case.name}-{os.getpid()}-{time.time_ns()}"
    tasks = []
    for m in methods:
        for s in (train_seeds if m in trained else train_seeds[:1]):
            tag = _seed_tag(s) if m in trained else ""
            # on Ray a worker keeps the first copy of a seed's prepared state it receives (and the
            # policies the case builds in it), as the in-process loop keeps its one object
            reuse = {"reuse_key": f"{run_id}/{s}"} if on_ray else {}
            tasks += [Task(f"{m}/{tag}{seed}", _episode_task, (case, prepared_by_seed[s], m, seed), reuse)
                      for seed in eval_seeds]
    res = run_sweep(tasks, sweep, desc=f"table1 {case.name}", log=log)
    for line in res.failure_lines():
        log(f"[table1/{case.name}] {line}")

    metrics = [Metric("reward", "Reward", "", ".1f", higher_is_better=True),
               Metric("served_demand", "Served demand", "", ".1f", higher_is_better=True),
               Metric("decision_ms", "Decision time per step", "ms", ".2f", higher_is_better=False),
               Metric("reward_pct_ref", f"Reward vs {methods[0]}", "%", ".1f", higher_is_better=None)]
    table = None
    ref_reward: dict[int, float] = {}
    times: dict[str, list[float]] = {m: [] for m in methods}
    runs = SeededRuns()
    for task in tasks:
        _, _, method, seed = task.args
        ep: Episode | None = res.values.get(task.name)
        if ep is None:
            continue
        if method == methods[0]:
            ref_reward[seed] = float(ep.reward)
        ref = ref_reward.get(seed, math.nan)
        dts = [float(t) for t in ep.decision_times_s]
        times[method] += dts
        values = {"reward": ep.reward, "served_demand": ep.served_demand,
                  "decision_ms": float(np.mean(dts)) * 1e3 if dts else math.nan,
                  "reward_pct_ref": 100.0 * ep.reward / ref if ref and math.isfinite(ref) else math.nan}
        extra = dict(ep.extra)
        if table is None:
            table = ResultsTable(case.title, metrics + [Metric(k, k) for k in extra])
        values.update(extra)
        table.add(method, values)
        for s in ([_task_seed(task, train_seeds, prepared_by_seed)] if method in trained else train_seeds):
            runs.add(method, -1 if s is None else s, seed, values)
        if not args.quiet and not progress:
            log(f"  {task.name:<28s}: reward {ep.reward:.1f}  served {ep.served_demand:.1f}")
    if table is None:
        raise SystemExit(f"offline.experiments: every episode failed: {'; '.join(res.failure_lines())}")

    out = args.out or new_results_dir(f"table1_{case.name}")
    n_seeds = len([s for s in train_seeds if s is not None])
    notes = [f"{args.episodes} evaluation episodes per method, seeds {_seed_ranges(eval_seeds)} "
             f"(training/demonstration seeds: {_seed_ranges(used)})",
             (f"learned rows: {n_seeds} RL training seeds ({_seed_ranges(train_seeds)}; {how}), mean ± std over "
              f"seeds × episodes here; over seeds and paired: {f'table1_{case.name}_seeds.md'}") if n_seeds > 1 else
             f"learned rows: one RL training seed ({how})",
             f"episodes ran {res.where} ({len(tasks)} tasks, {res.wall_s:.0f} s)",
             *([f"failed tasks (their episodes are missing): {'; '.join(res.failure_lines())}"] if res.failed else []),
             "decision time: wall time per step of the policy and its lower-level solve, mean over an episode's "
             "steps, then mean ± std over episodes"]
    for m in methods:
        ts = timing_stats(times[m])
        notes.append(f"{m}: decision time per step p50 {ts['p50_ms']:.2f} ms, p99 {ts['p99_ms']:.2f} ms "
                     f"over {ts['n']} steps")
    if len(methods) > 1:
        ref_ms = timing_stats(times[methods[0]])["mean_ms"]
        for m in methods[1:]:
            ms = timing_stats(times[m])["mean_ms"]
            if ms > 0 and math.isfinite(ref_ms):
                notes.append(f"{m} decides {ref_ms / ms:.1f}× faster than {methods[0]} (mean per step)")
    for s_, p_ in prepared_by_seed.items():
        notes += [(f"seed {s_}: " if len(prepared_by_seed) > 1 else "") + n for n in p_.notes]
    notes.append(f"command: python -m offline.experiments {' '.join(sys.argv[1:]) if sys.argv[1:] else 'table1'}")
    stem = f"table1_{case.name}"
    paths = table.write(out, stem, notes=notes)
    if n_seeds > 1:
        pairs = [Pair(m, methods[0], "reward") for m in methods[1:]]
        if "Bi-level-learned" in methods and "Bi-level-unchanged" in methods:
            pairs.append(Pair("Bi-level-learned", "Bi-level-unchanged", "reward"))
        if "Bi-level-learned" in methods and "End-to-end RL" in methods:
            pairs.append(Pair("Bi-level-learned", "End-to-end RL", "reward"))
        paths.update(write_seed_tables(runs, case.title, metrics[:3], out, stem, pairs=pairs,
                                       untrained=[m for m in methods if m not in trained]))
    try:
        paths["png"] = bar_plot(table, [("reward", "Reward", False), ("served_demand", "Served demand", False),
                                        ("decision_ms", "Decision time per step (ms)", True)],
                                out / f"{stem}.png", methods)
    except Exception as e:  # a plot must never lose the table
        log(f"[table1/{case.name}] plot failed: {e}")
    print(table.markdown(notes))
    print(f"results folder: {out}  ({', '.join(p.name for p in paths.values())}; "
          f"{time.perf_counter() - t0:.0f} s)")
    return {"out": out, "paths": paths, "table": table, "prepared": first, "prepared_by_seed": prepared_by_seed,
            "sweep": res, "runs": runs}


def _seed_tag(seed: int | None) -> str:
    return "" if seed is None else f"s{seed}/"


def _task_seed(task: Task, train_seeds, prepared_by_seed) -> int | None:
    prepared = task.args[1]
    return next(s for s in train_seeds if prepared_by_seed[s] is prepared)


#: a Ray worker's prepared states, by run and training seed (see run())
_WORKER_PREPARED: dict[str, Prepared] = {}


def _episode_task(case, prepared: Prepared, method: str, seed: int, reuse_key: str | None = None) -> Episode:
    """One evaluation episode: the task of Table 1's sweep."""
    if reuse_key is not None:
        prepared = _WORKER_PREPARED.setdefault(reuse_key, prepared)
    return case.run_episode(prepared, method, seed)


def _training_seeds(case, args) -> tuple[list[int | None], str]:
    """The RL training seeds to prepare, and how the case takes one.

    A case whose ``prepare`` has a ``train_seed`` keyword gets it (and keys its cached policies by it);
    a case with an ``--rl-seed`` option (``args.rl_seed``) gets that option set per seed; any other case
    runs once with its own seeds (the table says so)."""
    n = int(getattr(args, "seeds", 1) or 1)
    if n < 1:
        raise SystemExit(f"offline.experiments: --seeds must be >= 1, got {n}")
    first = int(getattr(args, "first_train_seed", 0))
    seeds = list(range(first, first + n))
    if "train_seed" in inspect.signature(case.prepare).parameters:
        return seeds, "prepare(train_seed=…)"
    if hasattr(args, "rl_seed"):
        if n == 1:
            return [int(args.rl_seed)], "--rl-seed"
        return seeds, "--rl-seed per seed; the case caches one policy per method, so each seed retrains it"
    return [None], "the case takes no training seed"


def _prepare(case, args, work_dir, log, seed: int | None, how: str) -> Prepared:
    if seed is None:
        return case.prepare(args, work_dir, log)
    if how.startswith("prepare("):
        return case.prepare(args, work_dir, log, train_seed=seed)
    seeded = copy.copy(args)
    seeded.rl_seed = seed
    return case.prepare(seeded, work_dir, log)


def _shippable(sweep, prepared_by_seed):
    """Ray sends each task's arguments to a worker: a case state that cannot be pickled runs in process."""
    if not sweep.workers and not sweep.address:
        return sweep, ""
    try:
        import cloudpickle
    except ImportError:
        from ray import cloudpickle
    try:
        for p in prepared_by_seed.values():
            cloudpickle.dumps(p)
    except Exception as e:  # noqa: BLE001  (any pickling failure: say which and run where it works)
        return (SweepOptions(progress=sweep.progress),
                f"the case's prepared state cannot be sent to Ray workers ({type(e).__name__}: {str(e)[:120]}); "
                f"its episodes run in process")
    return sweep, ""
