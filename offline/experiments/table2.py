"""Table 2 (robot) through the sweep layer and over RL training seeds: ``python -m offline.experiments table2``.

The courses, methods, metrics and files are sim.evaluate's (one implementation: its options, its
course task :func:`sim.evaluate.evaluate_course`, its :func:`sim.evaluate.write_tables`); this
module adds what lives on the offline side: the courses run as offline.sweep tasks (``--workers N``,
``--address``), and the learned rows over several training seeds.

Policies of the learned rows (bi-level-learned, bi-level-unchanged, e2e):

* default: the shipped ``config/policy/*.pt`` (one file per row; the notes say which training seed
  each is, from its .yaml);
* ``--policies DIR``: every ``DIR/<method>/seed<k>/policy.pt`` that ``python -m offline.experiments
  train`` wrote (``--seeds N`` keeps the first N seeds found); each learned row is then evaluated once
  per seed on the same courses, the table is over seeds × courses, and ``table2_seeds.md`` gives mean
  ± std over seeds, the paired comparisons (each bi-level row against the other and against its
  geometric prior, course by course) and every seed's row.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import sys
from pathlib import Path

import yaml

from offline.experiments.seeds import Pair, SeededRuns, write_seed_tables
from offline.sweep import Task, add_sweep_arguments, options_from_args, run_sweep
from sim import episodes as episodes_contract
from sim import evaluate
from sim.courses import describe_seed_ranges
from sim.episodes import table_metrics
from sim.results import new_results_dir

#: the rows whose policy is RL-trained (one policy per training seed)
TRAINED = ("bilevel-learned", "bilevel-unchanged", "e2e")


def add_arguments(p: argparse.ArgumentParser) -> None:
    evaluate.add_arguments(p)
    p.add_argument("--policies", type=Path, default=None,
                   help="folder of `python -m offline.experiments train`: DIR/<method>/seed<k>/policy.pt, one "
                        "policy per training seed (default: the shipped config/policy/*.pt, one seed each)")
    p.add_argument("--seeds", type=int, default=None,
                   help="with --policies: use the first N training seeds found (default: all of them)")
    add_sweep_arguments(p)


def seeded_policies(root: Path, keys, n: int | None) -> dict[str, dict[int, Path]]:
    """{method: {seed: policy.pt}} under root/<method>/seed<k>/ (ValueError naming what is missing)."""
    found: dict[str, dict[int, Path]] = {}
    for key in keys:
        seeds = {}
        for d in sorted((root / key).glob("seed*")):
            m = re.fullmatch(r"seed(\d+)", d.name)
            if m and (d / "policy.pt").is_file():
                seeds[int(m.group(1))] = d / "policy.pt"
        if not seeds:
            raise ValueError(f"--policies: no {root / key}/seed<k>/policy.pt (train them with python -m "
                             f"offline.experiments train --methods {key} --out {root})")
        chosen = sorted(seeds)[:n] if n else sorted(seeds)
        found[key] = {s: seeds[s] for s in chosen}
    return found


def shipped_seed(policy: Path) -> str:
    """The training seed recorded beside a shipped policy (its .yaml), or 'unknown'."""
    meta = Path(policy).with_suffix(".yaml")
    try:
        return str(yaml.safe_load(meta.read_text()).get("seed", "unknown"))
    except (OSError, yaml.YAMLError, AttributeError):
        return "unknown"


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    if args.ros:
        raise ValueError("--ros runs through python -m sim.evaluate --ros (the node graph is not a sweep)")
    if args.seeds is not None and (args.seeds < 1 or args.policies is None):
        raise ValueError("--seeds needs --policies DIR and a value >= 1")
    sweep = options_from_args(args, progress=not args.no_progress)
    courses = list(range(args.first_seed, args.first_seed + args.courses))
    base = evaluate.EvalSetup.from_args(args)
    trained = [k for k in args.methods if k in TRAINED]
    untrained = [k for k in args.methods if k not in TRAINED]
    if args.policies is not None:
        policies = seeded_policies(args.policies, trained, args.seeds)
        how = f"policies of {args.policies}"
    else:
        policies = {k: {-1: Path(base.policy(k))} for k in trained}
        how = "shipped policies"
    train_seeds = sorted({s for by in policies.values() for s in by})

    jobs = evaluate.course_jobs(base, untrained, courses)
    setups: dict[tuple[str, int], evaluate.EvalSetup] = {}
    for key in trained:
        for s, path in policies[key].items():
            setups[(key, s)] = dataclasses.replace(base, **{key.replace("-", "_"): str(path)})
            jobs += evaluate.course_jobs(setups[(key, s)], [key], courses, tag=f"@s{s}" if s >= 0 else "")
    print(f"offline.experiments table2: {len(args.methods)} methods × {len(courses)} held-out courses "
          f"(+ the default course), learned rows × {len(train_seeds)} training seed(s) ({how}); "
          f"{len(jobs)} course tasks {sweep.where}")
    print(describe_seed_ranges())
    res = run_sweep([Task(name, fn, fn_args) for name, fn, fn_args in jobs], sweep, desc="courses",
                    log=lambda m: print(m, file=sys.stderr))
    if sweep.where == "in process":
        evaluate.close_built()
    for line in res.failure_lines():
        print(line, file=sys.stderr)

    episodes = {k: [] for k in args.methods}
    runs = SeededRuns()
    for name, _, (setup, key, course) in jobs:
        ep = res.values.get(name)
        if ep is None:
            continue
        episodes[key].append(ep)
        if course == evaluate.DEFAULT_COURSE_SEED:
            continue
        label = episodes_contract.METHODS[key]
        seeds = [_seed_of(setups, key, setup)] if key in TRAINED else train_seeds
        for s in seeds:
            runs.add(label, s, course, ep.metrics())
    descs = {k: evaluate.describe(base, k) for k in args.methods}
    for key in trained:
        files = policies[key]
        descs[key]["policy"] = str(next(iter(files.values())))
        if len(files) > 1:
            descs[key]["policies_by_seed"] = {s: str(p) for s, p in files.items()}
    notes = []
    if args.policies is None:
        notes.append("learned rows: one training seed each, the shipped policies (" + ", ".join(
            f"{episodes_contract.METHODS[k]}: {Path(base.policy(k)).name} seed {shipped_seed(base.policy(k))}"
            for k in trained) + ")")
    else:
        notes.append(f"learned rows: {len(train_seeds)} RL training seeds ({', '.join(map(str, train_seeds))}) "
                     f"from {args.policies}; cells over seeds × courses here, over seeds and paired in "
                     f"table2_seeds.md")
    notes.append(f"course tasks ran {res.where} ({len(jobs)} tasks, {res.wall_s:.0f} s)")
    out = args.out or new_results_dir("table2")
    command = "python -m offline.experiments " + " ".join(shlex.quote(a) for a in argv)
    paths = evaluate.write_tables(args, courses, out, episodes, descs, f"{args.backend} ({res.where})", command,
                                  failed=res.failed, extra_notes=notes)
    if len(train_seeds) > 1:
        L = episodes_contract.METHODS
        pairs = [Pair(L[a], L[b], m, hib) for a, b in (("bilevel-learned", "bilevel-unchanged"),
                                                        ("bilevel-learned", "geometric"),
                                                        ("bilevel-unchanged", "geometric-unchanged"),
                                                        ("bilevel-learned", "e2e"))
                 if a in args.methods and b in args.methods
                 for m, hib in (("travel_time_s", False), ("success", True))]
        paths.update(write_seed_tables(runs, "Table 2: robot navigation", table_metrics(), out, "table2",
                                       pairs=pairs, untrained=[L[k] for k in untrained]))
    return {"out": out, "paths": paths, "sweep": res, "episodes": episodes, "runs": runs}


def _seed_of(setups, key, setup) -> int:
    return next(s for (k, s), v in setups.items() if k == key and v == setup)
