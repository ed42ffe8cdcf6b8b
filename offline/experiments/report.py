"""Every table and figure of the paper in one run, and report.md with the paper's numbers beside ours.

    python -m offline.experiments all --quick              # everything at tiny budgets (minutes; the test)
    python -m offline.experiments all --workers 2          # real budgets, sweeps on a local Ray instance
    python -m offline.experiments all --only table1,table3 # a subset

Runs, in this order, each into OUT/<name>/: Table 1 for AMoD and inventory (learned rows over
--seeds RL training seeds), the robot's RL trainings over seeds × methods (`train`) and Table 2 on
those policies, Table 3, Tables 4–6, Figures 4–5. Then OUT/report.md (a page the docs site can
include): for every table, our numbers beside the paper's with each row's ratio to the MPC's,
the provenance of every row (commit, training and evaluation seeds, θ and policy files with
SHA-256) and the command that regenerates it. A table whose producer has not landed yet is named
in the report as missing (no row is made up); a producer that fails is reported with its error
and the others still run (exit code 1).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import re
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

from hiopt_ros.config import IMPORT_ROOT as REPO_ROOT
from offline.sweep import add_sweep_arguments
from sim.results import new_results_dir

#: the paper's numbers (Tables 1–6)
PAPER_T1 = {
    "amod": {"MPC": (35725, 3203), "Bi-level-unchanged": (33406, 2993), "End-to-end RL": (20989, 2334.8),
             "Bi-level-cvxpy": (34403, 3086), "Bi-level-learned": (35019, 3141)},
    "inventory": {"MPC": (11335, 1337), "Bi-level-unchanged": (7491, 778), "End-to-end RL": (2764, 476),
                  "Bi-level-cvxpy": (9268, 912), "Bi-level-learned": (9442, 930)},
}
PAPER_T2 = {"MPC (expert)": (3.50, 3.50, 4.81), "End-to-end RL": (7.60, 4.29, 6.78),
            "Bi-level-unchanged": (9.14, 4.35, 6.20), "Bi-level-learned": (4.82, 4.16, 2.92)}
#: the paper's Table 6 (AMoD): scenario 1, scenario 2 -> method -> (reward, served demand)
PAPER_T6 = ({"MPC": (35725, 3203), "Bi-level-learned": (35019, 3141), "Value approximation": (24774, 2395)},
            {"MPC": (68637, 7540), "Bi-level-learned": (61880, 6619), "Value approximation": (29905, 3160)})
PAPER_OTHER = {
    "table4": "Value Approximation 0.522 / 0.943 / 0.461; cvxpylayers 0.541 / 0.946 / 0.445; Inverse Optimization "
              "0.703 / 0.958 / 0.997 (cosine: AMoD rebalancing flow / passenger flow / inventory commodity flow)",
    "table5": "Bi-level-unchanged cosine 0.477, Manhattan 44; Bi-level-learned cosine 0.976, Manhattan 7 (AMoD "
              "rebalancing flows vs the MPC's)",
    "table6": "Scenario 1: MPC 35725 / 3203, Bi-level-learned 35019 / 3141, Value Approximation 24774 / 2395; "
              "Scenario 2: MPC 68637 / 7540, Bi-level-learned 61880 / 6619, Value Approximation 29905 / 3160 "
              "(reward / served demand)",
    "fig4": "solution quality varies little with K (Appendix C.3; the figure has no numbers in the text)",
    "fig5": "decisions stay close to the noise-free expert under noise; bi-level with θ from noisy demonstrations "
            "+1.7 % reward over the noisy expert",
}

#: Table 1's tiny-budget case options; the steps that share Table 1's cache (Tables 5-6, fig5-bilevel) take the
#: same ones, so they reuse its demonstrations, θ and policies
AMOD_QUICK = ["--horizon", "4", "--demo-episodes", "2", "--held-out-episodes", "1", "--K", "1", "--cost-terms", "none",
              "--fit-time-limit", "5"]
AMOD_QUICK_RL = ["--episodes", "2", "--rl-steps", "64", "--bc-steps", "50"]
INVENTORY_QUICK = ["--horizon-steps", "6", "--episodes", "2", "--rl-steps", "64", "--n-envs", "1", "--demo-episodes",
                   "1", "--K", "1", "--fit-time-limit-s", "5"]

#: the steps of `all`: name -> (command, quick argv, full argv); {out}/{work} are filled in
STEPS: dict[str, tuple[str, list[str], list[str]]] = {
    "table1_amod": ("table1", ["--case", "amod", "--scenario", "tiny", *AMOD_QUICK, *AMOD_QUICK_RL],
                    ["--case", "amod"]),
    "table1_inventory": ("table1", ["--case", "inventory", "--scenario", "1F2S", *INVENTORY_QUICK],
                         ["--case", "inventory"]),
    "train": ("train", ["--steps", "64", "--n-envs", "1"], []),
    "table2": ("table2", ["--courses", "2", "--backend", "kinematic"], []),
    "table3": ("table3", ["--states", "6", "--amod-scenario", "tiny", "--inventory-scenario", "1F2S"], []),
    "table4_amod": ("table4", ["--case", "amod", "--scenario", "tiny", "--horizon", "4", "--demo-episodes", "2",
                               "--held-out-episodes", "1", "--fit-time-limit", "20", "--epochs", "1", "--ranks", "2",
                               "--regs", "1e-2"], ["--case", "amod"]),
    "table4_inventory": ("table4", ["--case", "inventory", "--scenario", "1F2S", "--demo-episodes", "1",
                                    "--held-out-episodes", "1", "--K", "1", "--fit-time-limit", "20", "--epochs", "1",
                                    "--ranks", "2", "--regs", "1e-2"], ["--case", "inventory"]),
    "table5": ("table5", ["--scenario", "tiny", *AMOD_QUICK, "--test-episodes", "1"], []),
    # Table 6 runs Table 1 per scenario: at quick budgets on Table 1's scenario and cache (its θ and policies)
    "table6_amod": ("table6", ["--case", "amod", "--scenarios", "tiny", *AMOD_QUICK, *AMOD_QUICK_RL],
                    ["--case", "amod"]),
    "table6_inventory": ("table6", ["--case", "inventory", "--scenarios", "1F2S", *INVENTORY_QUICK],
                         ["--case", "inventory"]),
    "fig4": ("fig4", ["--cases", "amod,inventory,robot", "--K-values", "0,1", "--amod-scenario", "tiny",
                      "--amod-horizon", "4", "--demo-episodes", "1", "--held-out-episodes", "1",
                      "--inventory-scenario", "1F2S", "--inventory-horizon", "4", "--robot-episodes", "1",
                      "--robot-val-episodes", "1", "--fit-time-limit", "3"],
             ["--cases", "amod,inventory,robot"]),
    "fig5": ("fig5", ["--cases", "amod,inventory", "--noise", "0,0.5", "--repeats", "1", "--amod-scenario", "tiny",
                      "--amod-horizon", "4", "--inventory-scenario", "1F2S", "--inventory-horizon", "4",
                      "--demo-episodes", "1", "--held-out-episodes", "1", "--K", "1", "--fit-time-limit", "3"],
             ["--cases", "amod,inventory"]),
    # the second claim: Table 1's AMoD pipeline on the noisy expert (quick: Table 1's scenario and cache)
    "fig5_bilevel": ("fig5-bilevel", ["--scenario", "tiny", *AMOD_QUICK, *AMOD_QUICK_RL], []),
}
SWEEPING = ("table1", "table6", "table2", "train", "fig4", "fig5", "fig5-bilevel")
QUIET = {"table1": "--quiet", "table2": "--no-progress", "train": "--no-progress", "table3": "--quiet",
         "table5": "--quiet", "table6": "--quiet", "fig4": "--quiet", "fig5": "--quiet", "fig5-bilevel": "--quiet"}
#: commands that share Table 1's cache of a case (work/<case>/): its demonstrations, θ and policies
TABLE1_CACHE = {"table1": None, "table6": None, "table5": "amod", "fig5-bilevel": "amod"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="tiny budgets everywhere (minutes): checks every path")
    p.add_argument("--seeds", type=int, default=3, help="RL training seeds of every learned row (default 3)")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(STEPS)}")
    p.add_argument("--out", type=Path, default=None, help="results folder (default results/all/<time>)")
    add_sweep_arguments(p)


def step_argv(name: str, args, out: Path) -> list[str]:
    command, quick, full = STEPS[name]
    argv = [command, *(quick if args.quick else full)]
    work = out / "work"
    if command in TABLE1_CACHE:
        argv += ["--work-dir", str(work / (TABLE1_CACHE[command] or name.split("_", 1)[1]))]
    if command in ("table1", "table6", "fig5-bilevel"):     # the runs of Table 1's runner: learned rows over seeds
        argv += ["--seeds", str(args.seeds)]
    if command == "fig4":                                   # the robot's demonstration bags
        argv += ["--work-dir", str(work)]
    if command == "table4":              # its cache is shared with Table 1's (work/<case>/)
        argv += ["--work-dir", str(work)]
    if command == "train":
        argv += ["--seeds", str(args.seeds), "--out", str(out / "train")]
    else:
        argv += ["--out", str(out / name)]
    if command == "table2":
        argv += ["--policies", str(out / "train")]
    if command in SWEEPING:
        if args.workers:
            argv += ["--workers", str(args.workers)]
        if args.address:
            argv += ["--address", args.address]
        if args.workers or args.address:
            argv += ["--retries", str(args.retries)]
    if command in QUIET:
        argv.append(QUIET[command])
    return argv


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from offline.experiments.__main__ import PRODUCERS, main, producer

    names = list(STEPS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in STEPS]
    if bad:
        raise ValueError(f"--only: unknown {bad}; choose from {','.join(STEPS)}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if "table2" in names and "train" not in names:
        names.insert(names.index("table2"), "train")       # table2 evaluates the trained seeds
    out = args.out or new_results_dir("all")
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    outcomes: dict[str, dict] = {}
    for name in names:
        command = STEPS[name][0]
        sub = step_argv(name, args, out)
        entry = {"command": "python -m offline.experiments " + " ".join(shlex.quote(a) for a in sub)}
        if command in PRODUCERS:
            try:
                producer(command)
            except ValueError as e:
                entry.update(status="missing", why=str(e))
                outcomes[name] = entry
                print(f"[all] {name}: {e}", file=sys.stderr)
                continue
        print(f"[all] {name}: {entry['command']}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(_Tee(sys.stderr, err)):
                rc = main(sub)
        except SystemExit as e:            # a producer's own one-line error
            rc = e.code if isinstance(e.code, int) else 2
            err.write(str(e.code))
        except Exception as e:  # noqa: BLE001  (one table's failure must not lose the others)
            rc = 1
            err.write(traceback.format_exc())
            print(f"[all] {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
        entry.update(status="ok" if rc == 0 else "failed", rc=rc, wall_s=time.perf_counter() - t0,
                     why=_last_line(err.getvalue()) if rc else "")
        outcomes[name] = entry
    wall = time.perf_counter() - t_all
    text = report_markdown(outcomes, out, args, argv, wall)
    (out / "report.md").write_text(text)
    print(text)
    print(f"report: {out / 'report.md'} ({wall:.0f} s)")
    return 1 if any(o["status"] == "failed" for o in outcomes.values()) else 0


class _Tee(io.TextIOBase):
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self) -> None:
        for st in self.streams:
            st.flush()

    def isatty(self) -> bool:
        return False


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


# ---------------------------------------------------------------------------- the report
def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head or "unknown") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _csv_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path) as fh:
        return {r["method"]: r for r in csv.DictReader(fh)}


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(x: float, spec: str = ".1f") -> str:
    return "n/a" if x != x else f"{x:{spec}}"


def _artefacts(folder: Path, root: Path) -> list[str]:
    """θ and policy files under `folder`, with SHA-256."""
    lines = []
    if not folder.is_dir():
        return lines
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (p.name in ("theta.yaml", "model.zip", "policy.pt") or p.suffix == ".pt"):
            lines.append(f"`{p.relative_to(root)}` sha256 `{sha256(p)[:16]}…`")
    return lines


def _case_table(name: str, out: Path, number: int) -> tuple[str, Path, dict[str, dict], list[str]]:
    """(case, folder, rows of its CSV, the section's first lines) of step `name` = table<number>_<case>."""
    case = name.split("_", 1)[1]
    folder = out / name
    return case, folder, _csv_rows(folder / f"table{number}_{case}.csv"), [f"### Table {number} ({case})", ""]


def _table1_section(name: str, o: dict, out: Path) -> list[str]:
    case, folder, rows, lines = _case_table(name, out, 1)
    if not rows:
        return lines + ["no table written", ""]
    ours_mpc = _f(rows.get("MPC", {}).get("reward_mean"))
    paper = PAPER_T1[case]
    lines += ["| Method | reward (ours) | ÷ MPC (ours) | reward (paper) | ÷ MPC (paper) | served (ours) | "
              "served (paper) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for method, r in rows.items():
        rew, served = _f(r.get("reward_mean")), _f(r.get("served_demand_mean"))
        p = paper.get(method)
        lines.append(f"| {method} | {_fmt(rew)} ± {_fmt(_f(r.get('reward_std')))} | {_fmt(rew / ours_mpc, '.3f')} | "
                     f"{p[0] if p else '—'} | {_fmt(p[0] / paper['MPC'][0], '.3f') if p else '—'} | "
                     f"{_fmt(served)} | {p[1] if p else '—'} |")
    missing = [m for m in paper if m not in rows]
    if missing:
        lines.append(f"\nrows of the paper not in ours: {', '.join(missing)}")
    seeds_md = folder / f"table1_{case}_seeds.md"
    lines += ["", f"- table: `{(folder / f'table1_{case}.md').relative_to(out)}`"
              + (f"; over seeds and paired: `{seeds_md.relative_to(out)}`" if seeds_md.is_file() else "")]
    lines += [f"- {a}" for a in _artefacts(out / "work" / case, out)]
    return lines + [""]


def _table2_section(o: dict, out: Path) -> list[str]:
    folder = out / "table2"
    rows = _csv_rows(folder / "table2.csv")
    lines = ["### Table 2 (robot)", ""]
    if not rows:
        return lines + ["no table written", ""]
    mpc = rows.get("MPC (expert)", {})
    ours_mpc = _f(mpc.get("travel_time_s_mean"))
    lines += ["| Method | travel time s (ours) | ÷ MPC (ours) | paper | ÷ MPC (paper) | path m (ours / paper) | "
              "energy J (ours / paper) | success % |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, r in rows.items():
        tt = _f(r.get("travel_time_s_mean"))
        p = PAPER_T2.get(method)
        lines.append(f"| {method} | {_fmt(tt, '.2f')} | {_fmt(tt / ours_mpc, '.2f')} | {p[0] if p else '—'} | "
                     f"{_fmt(p[0] / PAPER_T2['MPC (expert)'][0], '.2f') if p else '—'} | "
                     f"{_fmt(_f(r.get('path_length_m_mean')), '.2f')} / {p[1] if p else '—'} | "
                     f"{_fmt(_f(r.get('energy_j_mean')), '.2f')} / {p[2] if p else '—'} | "
                     f"{_fmt(100 * _f(r.get('success_mean')), '.0f')} |")
    lines += ["", f"- table: `{(folder / 'table2.md').relative_to(out)}`, provenance `evaluation.yaml`"
              + ("; over seeds and paired: `table2/table2_seeds.md`" if (folder / "table2_seeds.md").is_file() else "")]
    lines += [f"- {a}" for a in _artefacts(out / "train", out)]
    return lines + [""]


def _table6_section(name: str, o: dict, out: Path, listed_cache: bool) -> list[str]:
    """Ours beside the paper's Table 6 (AMoD; the paper has no inventory Table 6), each row ÷ its scenario's MPC."""
    case, folder, rows, lines = _case_table(name, out, 6)
    if not rows:
        return lines + ["no table written", ""]
    parsed = []
    for label, r in rows.items():
        m = re.fullmatch(r"Scenario (\d+) \((.*)\): (.*)", label)
        if m:
            parsed.append((int(m[1]), m[2], m[3], _f(r.get("reward_mean")), _f(r.get("reward_std")),
                           _f(r.get("served_demand_mean"))))
    mpc = {(i, sc): rew for i, sc, meth, rew, _, _ in parsed if meth == "MPC"}
    lines += ["| Scenario | Method | reward (ours) | ÷ MPC (ours) | reward (paper) | ÷ MPC (paper) | served (ours) | "
              "served (paper) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for i, sc, meth, rew, std, served in parsed:
        paper = PAPER_T6[i - 1] if case == "amod" and i <= len(PAPER_T6) else {}
        p = next((v for k, v in paper.items() if k.lower() == meth.lower()), None)
        ratio = rew / mpc.get((i, sc), float("nan"))
        lines.append(f"| {i} ({sc}) | {meth} | {_fmt(rew)} ± {_fmt(std)} | {_fmt(ratio, '.3f')} | "
                     f"{p[0] if p else '—'} | {_fmt(p[0] / paper['MPC'][0], '.3f') if p else '—'} | {_fmt(served)} | "
                     f"{p[1] if p else '—'} |")
    have = {meth.lower() for _, _, meth, *_ in parsed}
    missing = [m for m in PAPER_T6[0] if m.lower() not in have]
    if missing:
        lines.append(f"\nrows of the paper not in ours: {', '.join(missing)} (the table's notes say why)")
    lines += ["", f"- table: `{(folder / f'table6_{case}.md').relative_to(out)}`; per scenario, Table 1 with these "
              f"rows: `{folder.relative_to(out)}/<scenario>/`"]
    if not listed_cache:
        lines += [f"- {a}" for a in _artefacts(out / "work" / case, out)]
    return lines + [""]


def report_markdown(outcomes: dict, out: Path, args, argv: list[str], wall_s: float) -> str:
    commit = git_commit()
    lines = ["# The paper's tables and figures: one run", "",
             f"- command: `python -m offline.experiments {' '.join(shlex.quote(a) for a in argv)}`"
             f" ({'tiny budgets: checks every path, the numbers mean nothing' if args.quick else 'real budgets'})",
             f"- commit {commit}; wall time {wall_s:.0f} s; RL training seeds per learned row: {args.seeds}; "
             f"folder `{out}`", "",
             "| Step | status | wall time | regenerate with |", "|---|---|---:|---|"]
    for name, o in outcomes.items():
        status = o["status"] + (f": {o['why']}" if o.get("why") else "")
        lines.append(f"| {name} | {status} | {_fmt(o.get('wall_s', float('nan')), '.0f')} s | `{o['command']}` |")
    lines.append("")
    for name, o in outcomes.items():
        if name.startswith("table1_") and o["status"] == "ok":
            lines += _table1_section(name, o, out)
        elif name.startswith("table6_") and o["status"] == "ok":
            lines += _table6_section(name, o, out, listed_cache=f"table1_{name.split('_', 1)[1]}" in outcomes)
        elif name == "table2" and o["status"] == "ok":
            lines += _table2_section(o, out)
        elif name == "train":
            continue
        elif o["status"] == "ok":
            lines += [f"### {name}", ""]
            for md in sorted((out / name).rglob("*.md")):
                if md.name.endswith("_seeds.md"):
                    continue
                lines += [md.read_text().replace("## ", "#### ", 1).strip(), ""]
            paper = PAPER_OTHER.get(name.split("_")[0])
            if paper:
                lines += [f"paper: {paper}", ""]
        else:
            lines += [f"### {name}", "", f"**{o['status']}**: {o.get('why', '')}. Paper: "
                      f"{PAPER_OTHER.get(name.split('_')[0], 'see the paper')}", ""]
    return "\n".join(lines) + "\n"
