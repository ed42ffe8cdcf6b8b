"""Learned rows over several RL training seeds: the per-seed table, mean ± std over seeds, paired comparisons.

One RL training seed per row says little: another seed can move a row by more than the gap between
two rows. Tables 1 and 2 therefore train every learned row with ``--seeds N`` seeds and report

* the main table over every (training seed, episode) pair: mean ± std over seeds and episodes;
* ``<stem>_seeds.md`` / ``.csv``: each method's mean over its episodes per training seed, then mean ±
  std over those seed means (n = seeds: how much the training seed moves a row), the paired
  comparisons across seeds and the per-seed table (``<stem>_per_seed.csv``: every seed's row).

A row that is not trained (the MPC, a geometric prior) has the same episodes for every seed: its std
over seeds is 0 by construction, and it is the common reference of the paired comparisons.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from sim.results import Metric, ResultsTable, _atomic_write

__all__ = ["SeededRuns", "Pair", "write_seed_tables"]


@dataclass(frozen=True)
class Pair:
    """Compare `a` against `b` on `metric`, episode by episode (same evaluation seed), per training seed."""
    a: str
    b: str
    metric: str
    higher_is_better: bool = True


class SeededRuns:
    """Episodes by (method, training seed); each episode has an id shared across methods (its
    evaluation seed or course) so that two methods can be paired episode by episode."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], dict[int, Mapping[str, float]]] = {}

    def add(self, method: str, train_seed: int, episode_id: int, values: Mapping[str, float]) -> None:
        self.rows.setdefault((method, int(train_seed)), {})[int(episode_id)] = dict(values)

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(m for m, _ in self.rows))

    @property
    def seeds(self) -> list[int]:
        return sorted({s for _, s in self.rows})

    def seed_mean(self, method: str, seed: int, key: str) -> float:
        v = np.array([e[key] for e in self.rows.get((method, seed), {}).values()], dtype=float)
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else math.nan

    def paired(self, pair: Pair, seed: int) -> tuple[float, int, int]:
        """(mean of a − b over the episodes both ran, episodes where a is better, episodes paired)."""
        ea, eb = self.rows.get((pair.a, seed), {}), self.rows.get((pair.b, seed), {})
        diffs = [ea[i][pair.metric] - eb[i][pair.metric] for i in sorted(set(ea) & set(eb))]
        diffs = [d for d in diffs if math.isfinite(d)]
        if not diffs:
            return math.nan, 0, 0
        better = sum(1 for d in diffs if (d > 0 if pair.higher_is_better else d < 0))
        return float(np.mean(diffs)), better, len(diffs)


def write_seed_tables(runs: SeededRuns, title: str, metrics: Sequence[Metric], out: Path, stem: str,
                      pairs: Sequence[Pair] = (), notes: Sequence[str] = (),
                      untrained: Sequence[str] = ()) -> dict[str, Path]:
    """<stem>_seeds.md (over seeds + paired + per seed), <stem>_seeds.csv, <stem>_per_seed.csv."""
    over = ResultsTable(f"{title}: mean ± std over {len(runs.seeds)} training seeds", metrics)
    per = ResultsTable(f"{title}: every training seed (mean ± std over its episodes)", metrics)
    for method in runs.methods:
        for seed in runs.seeds:
            if (method, seed) not in runs.rows:
                continue
            over.add(method, {m.key: runs.seed_mean(method, seed, m.key) for m in metrics})
            label = method if method in untrained else f"{method} (seed {seed})"
            if method in untrained and seed != runs.seeds[0]:
                continue                      # its episodes are the same for every seed: list them once
            per.extend(label, ({m.key: e[m.key] for m in metrics} for e in runs.rows[(method, seed)].values()))
    lines = [over.markdown([f"training seeds {', '.join(map(str, runs.seeds))}; each cell: the method's mean over "
                            f"its episodes per training seed, then mean ± std over the seeds (the 'episodes' "
                            f"column counts seeds)",
                            *([f"not trained (same episodes for every seed, std over seeds 0): "
                               f"{', '.join(untrained)}"] if untrained else []), *notes])]
    if pairs:
        lines += ["", "### Paired comparisons across training seeds", "",
                  "Per training seed: mean over the episodes both methods ran (same evaluation seed) of "
                  "a − b, and on how many episodes a is better.", "",
                  "| a − b | metric | " + " | ".join(f"seed {s}" for s in runs.seeds)
                  + " | mean ± std over seeds | a better |", "|---|---|" + "---:|" * (len(runs.seeds) + 2)]
        for pair in pairs:
            per_seed = [runs.paired(pair, s) for s in runs.seeds]
            means = np.array([d for d, _, _ in per_seed], dtype=float)
            fin = means[np.isfinite(means)]
            wins = sum(1 for d in fin if (d > 0 if pair.higher_is_better else d < 0))
            cells = [f"{d:+.3g} ({b}/{n})" if math.isfinite(d) else "n/a" for d, b, n in per_seed]
            summary = f"{fin.mean():+.3g} ± {fin.std():.2g}" if fin.size else "n/a"
            lines.append(f"| {pair.a} − {pair.b} | {pair.metric} | " + " | ".join(cells)
                         + f" | {summary} | on {wins} of {fin.size} seeds |")
    lines += ["", per.markdown()]
    paths = {"seeds_markdown": out / f"{stem}_seeds.md", "seeds_csv": out / f"{stem}_seeds.csv",
             "per_seed_csv": out / f"{stem}_per_seed.csv"}
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(paths["seeds_markdown"], "\n".join(lines) + "\n")
    _atomic_write(paths["seeds_csv"], over.summary_csv())
    _atomic_write(paths["per_seed_csv"], per.summary_csv())
    return paths
