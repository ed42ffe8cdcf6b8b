"""Table 1 of the paper for one case study: every method on the same seeded episodes, mean ± std.

Reads top to bottom: options → the case prepares its policies (cached) → evaluation seeds (checked
disjoint from the training seeds) → the episode loop (reference method first, so every other
method's reward can be given as a percentage of the reference's on the same seed) → table, CSV,
plot, folder printed. See the package docstring for the case-study interface.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from offline.experiments import CASES, Episode, Prepared, load_case

#: evaluation seeds start here by default; training seeds of every case stay below it
EVAL_SEED_DEFAULT = 10_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--case", required=True, choices=sorted(CASES), help="case study")
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
    p.add_argument("--quiet", action="store_true", help="no progress bars")


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
    from offline.results import Metric, ResultsTable, new_results_dir, timing_stats

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
    prepared: Prepared = case.prepare(args, work_dir, log)
    eval_seeds = list(range(args.eval_seed, args.eval_seed + args.episodes))
    overlap = sorted(set(eval_seeds) & set(int(s) for s in prepared.train_seeds))
    if overlap:
        raise SystemExit(f"offline.experiments: evaluation seeds {_seed_ranges(overlap)} were used for training; "
                         f"choose --eval-seed outside {_seed_ranges(prepared.train_seeds)}")
    log(f"[table1/{case.name}] training seeds: {_seed_ranges(prepared.train_seeds)}; "
        f"evaluation seeds: {_seed_ranges(eval_seeds)}")

    metrics = [Metric("reward", "Reward", "", ".1f", higher_is_better=True),
               Metric("served_demand", "Served demand", "", ".1f", higher_is_better=True),
               Metric("decision_ms", "Decision time per step", "ms", ".2f", higher_is_better=False),
               Metric("reward_pct_ref", f"Reward vs {methods[0]}", "%", ".1f", higher_is_better=None)]
    table = None
    ref_reward: dict[int, float] = {}
    times: dict[str, list[float]] = {m: [] for m in methods}
    bar = None
    if progress:
        from hiopt_ros.progress import progress_bar
        bar = progress_bar(total=len(methods) * len(eval_seeds), desc=f"table1 {case.name}", unit="episode")
    for method in methods:
        for seed in eval_seeds:
            if bar is not None:
                bar.set_postfix_str(f"{method}, seed {seed}")
            ep: Episode = case.run_episode(prepared, method, seed)
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
            if bar is not None:
                bar.update(1)
            elif not args.quiet:
                log(f"  {method:<20s} seed {seed}: reward {ep.reward:.1f}  served {ep.served_demand:.1f}")
    if bar is not None:
        bar.close()

    out = args.out or new_results_dir(f"table1_{case.name}")
    notes = [f"{args.episodes} evaluation episodes per method, seeds {_seed_ranges(eval_seeds)} "
             f"(training/demonstration seeds: {_seed_ranges(prepared.train_seeds)})",
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
    notes += list(prepared.notes)
    notes.append(f"command: python -m offline.experiments {' '.join(sys.argv[1:]) if sys.argv[1:] else 'table1'}")
    stem = f"table1_{case.name}"
    paths = table.write(out, stem, notes=notes)
    try:
        paths["png"] = _plot(table, methods, out / f"{stem}.png")
    except Exception as e:  # a plot must never lose the table
        log(f"[table1/{case.name}] plot failed: {e}")
    print(table.markdown(notes))
    print(f"results folder: {out}  ({', '.join(p.name for p in paths.values())}; "
          f"{time.perf_counter() - t0:.0f} s)")
    return {"out": out, "paths": paths, "table": table, "prepared": prepared}


def _plot(table, methods, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("reward", "Reward", False), ("served_demand", "Served demand", False),
            ("decision_ms", "Decision time per step (ms)", True)]
    fig, axes = plt.subplots(1, 3, figsize=(max(13.0, 2.0 * len(methods)), 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label, log) in zip(axes, keys):
        means = [table.stats(m, key)[0] for m in methods]
        stds = [table.stats(m, key)[1] for m in methods]
        ax.bar(range(len(methods)), means, yerr=stds, capsize=4, color=colors[:len(methods)])
        # slanted full names: wrapped names of 5+ rows (diagnostic rows) ran into each other
        ax.set_xticks(range(len(methods)), methods, fontsize=7, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_title(label, fontsize=10)
        if log:
            ax.set_yscale("log")
    fig.suptitle(table.title, fontsize=11)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
