"""Results tables of the experiments: per-episode metrics of each method → mean ± std, Markdown + CSV.

One writer for every case study (robot Table 2, AMoD and inventory Table 1, timing Table 3), so
the tables read the same everywhere:

    table = ResultsTable("Table 2: robot navigation", [
        Metric("travel_time_s", "Travel time", "s", ".2f", higher_is_better=False),
        Metric("success", "Success", "%", ".0f", higher_is_better=True, scale=100.0),
    ])
    for episode in ...:
        table.add("Bi-level-learned", {"travel_time_s": 4.9, "success": 1.0})
    paths = table.write(Path("results/table2"), "table2", notes=["evaluation seeds 10000–10049"])

Each cell is ``mean ± std`` over the episodes of a method; NaN values (e.g. the travel time of an
episode that did not reach the goal) are left out of that cell and the cell says over how many
episodes it was taken when that is fewer than the method's episodes. ``write`` produces
``<stem>.md`` (title, notes, table), ``<stem>.csv`` (one row per method: mean, std and n per
metric) and ``<stem>_episodes.csv`` (every episode's raw values), written atomically.
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from hiopt_ros.tables import Column, markdown_table

__all__ = ["Metric", "ResultsTable", "timing_stats", "new_results_dir", "bar_plot"]


@dataclass(frozen=True)
class Metric:
    """One column: ``key`` in the per-episode dicts, a label, a unit and a number format.

    ``scale`` multiplies values for display only (e.g. 100 to show a 0/1 success flag as %).
    ``higher_is_better`` (None: neither) marks the best mean of the column in bold.
    """

    key: str
    label: str
    unit: str = ""
    fmt: str = ".2f"
    higher_is_better: bool | None = None
    scale: float = 1.0

    @property
    def header(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


class ResultsTable:
    """Per-episode results of several methods, summarised as mean ± std per metric."""

    def __init__(self, title: str, metrics: Sequence[Metric]) -> None:
        keys = [m.key for m in metrics]
        if len(set(keys)) != len(keys):
            raise ValueError(f"metric keys must be unique, got {keys}")
        self.title = title
        self.metrics = list(metrics)
        self._rows: dict[str, list[dict[str, float]]] = {}

    # ---------------------------------------------------------------- filling
    def add(self, method: str, values: Mapping[str, float]) -> None:
        """One episode of `method`; every metric key must be present (use NaN for "not measured")."""
        missing = [m.key for m in self.metrics if m.key not in values]
        if missing:
            raise ValueError(f"{method}: episode lacks metric(s) {missing}")
        unknown = sorted(set(values) - {m.key for m in self.metrics})
        if unknown:
            raise ValueError(f"{method}: unknown metric(s) {unknown}; known: {[m.key for m in self.metrics]}")
        row = {}
        for m in self.metrics:
            try:
                row[m.key] = float(values[m.key])
            except (TypeError, ValueError):
                raise ValueError(f"{method}: metric {m.key} must be a number, got {values[m.key]!r}") from None
        self._rows.setdefault(method, []).append(row)

    def extend(self, method: str, episodes: Iterable[Mapping[str, float]]) -> None:
        for values in episodes:
            self.add(method, values)

    # ---------------------------------------------------------------- reading
    @property
    def methods(self) -> list[str]:
        return list(self._rows)

    def values(self, method: str, key: str) -> np.ndarray:
        """All episodes' values of one metric for one method (NaN included)."""
        return np.array([row[key] for row in self._rows[method]], dtype=float)

    def stats(self, method: str, key: str) -> tuple[float, float, int]:
        """(mean, std, n) over the finite values (population std, 0 for a single value)."""
        v = self.values(method, key)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return math.nan, math.nan, 0
        return float(v.mean()), float(v.std()), int(v.size)

    def summary(self) -> dict[str, dict[str, tuple[float, float, int]]]:
        return {meth: {m.key: self.stats(meth, m.key) for m in self.metrics} for meth in self._rows}

    # ---------------------------------------------------------------- output
    def _best(self) -> dict[str, str]:
        best = {}
        for m in self.metrics:
            if m.higher_is_better is None or len(self._rows) < 2:
                continue
            means = {meth: self.stats(meth, m.key)[0] for meth in self._rows}
            means = {k: v for k, v in means.items() if math.isfinite(v)}
            if means:
                best[m.key] = (max if m.higher_is_better else min)(means, key=means.get)
        return best

    def cell(self, method: str, metric: Metric) -> str:
        mean, std, n = self.stats(method, metric.key)
        if n == 0:
            return "n/a"
        text = f"{mean * metric.scale:{metric.fmt}} ± {std * metric.scale:{metric.fmt}}"
        total = len(self._rows[method])
        if n < total:
            text += f" (n={n})"
        return text

    def markdown(self, notes: Sequence[str] = ()) -> str:
        """`## title`, the notes as a list, then the table (best mean of a column in bold)."""
        best = self._best()
        lines = [f"## {self.title}", ""]
        if notes:
            lines += [f"- {n}" for n in notes] + [""]
        columns = [Column("Method"), Column("episodes", "right")] + [Column(m.header, "right") for m in self.metrics]
        table = []
        for meth, rows in self._rows.items():
            cells = []
            for m in self.metrics:
                c = self.cell(meth, m)
                cells.append(f"**{c}**" if best.get(m.key) == meth else c)
            table.append([meth, len(rows), *cells])
        lines.append(markdown_table(columns, table))
        return "\n".join(lines) + "\n"

    def summary_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "episodes"] + [f"{m.key}_{s}" for m in self.metrics for s in ("mean", "std", "n")])
        for meth, rows in self._rows.items():
            out: list = [meth, len(rows)]
            for m in self.metrics:
                mean, std, n = self.stats(meth, m.key)
                out += [_num(mean), _num(std), n]
            w.writerow(out)
        return buf.getvalue()

    def episodes_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "episode"] + [m.key for m in self.metrics])
        for meth, rows in self._rows.items():
            for i, row in enumerate(rows):
                w.writerow([meth, i] + [_num(row[m.key]) for m in self.metrics])
        return buf.getvalue()

    def write(self, out_dir: str | os.PathLike, stem: str, notes: Sequence[str] = ()) -> dict[str, Path]:
        """Write <stem>.md, <stem>.csv and <stem>_episodes.csv into out_dir (created); returns the paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv",
                 "episodes_csv": out_dir / f"{stem}_episodes.csv"}
        _atomic_write(paths["markdown"], self.markdown(notes))
        _atomic_write(paths["csv"], self.summary_csv())
        _atomic_write(paths["episodes_csv"], self.episodes_csv())
        return paths


def bar_plot(table: ResultsTable, panels: Sequence[tuple[str, str, bool]], path: str | os.PathLike,
             methods: Sequence[str] | None = None) -> Path:
    """A PNG of one bar panel per (metric key, title, log scale): mean ± std of each method, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    methods = list(methods or table.methods)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.2 * len(panels), 2.0 * len(methods)), 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, label, log) in zip(np.atleast_1d(axes), panels):
        means = [table.stats(m, key)[0] for m in methods]
        stds = [table.stats(m, key)[1] for m in methods]
        ax.bar(range(len(methods)), means, yerr=stds, capsize=4, color=colors[:len(methods)])
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


def timing_stats(seconds: Iterable[float]) -> dict[str, float]:
    """Decision-time statistics in milliseconds: mean, median (p50), p99 and count."""
    t = np.asarray(list(seconds), dtype=float)
    t = t[np.isfinite(t)]
    if t.size == 0:
        return {"mean_ms": math.nan, "p50_ms": math.nan, "p99_ms": math.nan, "n": 0}
    return {"mean_ms": float(t.mean() * 1e3), "p50_ms": float(np.percentile(t, 50) * 1e3),
            "p99_ms": float(np.percentile(t, 99) * 1e3), "n": int(t.size)}


def new_results_dir(name: str, root: str | os.PathLike = "results") -> Path:
    """A fresh folder results/<name>/<YYYYmmdd-HHMMSS>[-k] (created)."""
    base = Path(root) / name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, k = base / stamp, 1
    while path.exists():
        k += 1
        path = base / f"{stamp}-{k}"
    path.mkdir(parents=True)
    return path


def _num(x: float) -> str:
    return "" if not math.isfinite(x) else repr(float(x))


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
