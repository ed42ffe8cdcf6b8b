"""Table 6 of the paper: the value-approximation baseline against MPC and Bi-level-learned on two scenarios.

    python -m offline.experiments table6                        # AMoD: nyc_brooklyn, nyc_brooklyn_scarce
    python -m offline.experiments table6 --case inventory       # SCIM: 1F10S, 1F3S
    python -m offline.experiments table6 --case amod --help     # Table 1's options and the case's own

One implementation of the evaluation: for each scenario this runs Table 1 (offline.experiments.table1,
its seeds, sweep, caches and outputs) with the rows MPC, Bi-level-learned and Value approximation of
the case study's adapter (offline.<case>.table1), each scenario into OUT/<scenario>/, then collects
the rows into one table: reward, served demand and reward as % of the MPC's on the same demand
sample, mean ± std over episodes (the learned row: over RL training seeds × episodes, as Table 1).
A method the case's adapter does not have is named in the notes and on stderr (its row is missing,
never filled in). Outputs: table6_<case>.md / .csv / _episodes.csv / .png.
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

from offline.experiments import load_case, table1
from sim.results import Metric, ResultsTable, bar_plot, new_results_dir

#: offline.experiments.__main__ passes --case to add_arguments (the options depend on the case)
CASE_ARGUMENTS = True
DEFAULT_CASE = "amod"
#: the paper's rows, in its order (the first is the reference of "% of MPC")
METHODS = ("MPC", "Bi-level-learned", "Value approximation")
#: scenario 1, scenario 2 per case study (AMoD: the published fleet, then the scarce fleet where θ matters)
SCENARIOS = {"amod": ("nyc_brooklyn", "nyc_brooklyn_scarce"), "inventory": ("1F10S", "1F3S")}


def add_arguments(p, case: str | None = None) -> None:
    case = case or DEFAULT_CASE
    table1.add_arguments(p, case_default=DEFAULT_CASE)
    p.add_argument("--scenarios", default=None,
                   help=f"comma list of the case's scenarios, each run as Table 1 with its --scenario set "
                        f"(default: AMoD {','.join(SCENARIOS['amod'])}; inventory {','.join(SCENARIOS['inventory'])})")
    load_case(case).add_arguments(p.add_argument_group(f"{case} options (Table 1's, for every scenario)"))


def method_names(case) -> tuple[list[str], list[str]]:
    """(the Table 6 rows the case's adapter has, in the paper's order; those it lacks). A name matches
    case-insensitively (an adapter may spell it "Value Approximation")."""
    known = list(case.methods) + list(getattr(case, "optional_methods", ()))
    by_lower = {m.lower(): m for m in known}
    have = [by_lower[m.lower()] for m in METHODS if m.lower() in by_lower]
    missing = [m for m in METHODS if m.lower() not in by_lower]
    return have, missing


def run(args, argv=None, case=None) -> dict:
    """Table 1 per scenario with Table 6's rows.

    Returns {"out", "paths", "table", "scenarios": {name: Table 1's result}, "missing": rows the case lacks}."""
    case = case or load_case(args.case)
    if any(a == "--scenario" or a.startswith("--scenario=") for a in (argv or ())):
        raise ValueError("table6 runs every scenario of --scenarios (comma list); --scenario is Table 1's")
    scenarios = [s.strip() for s in (args.scenarios or ",".join(SCENARIOS.get(case.name, ()))).split(",")
                 if s.strip()]
    if not scenarios:
        raise ValueError(f"--scenarios: give the {case.name} scenarios to compare (comma list)")
    have, missing = method_names(case)
    if args.methods is not None:
        chosen = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
        have = [m for m in have if m.lower() in chosen]
        if not have:
            raise ValueError(f"--methods {args.methods!r}: Table 6 compares {', '.join(METHODS)}")
    why_missing = [f"{m}: the {case.name} case adapter ({_adapter(case)}) has no such method yet (it has "
                   f"{', '.join(list(case.methods) + list(getattr(case, 'optional_methods', ())))}); "
                   f"its row is missing" for m in missing]
    for line in why_missing:
        print(f"[table6/{case.name}] {line}", file=sys.stderr, flush=True)
    out = args.out or new_results_dir(f"table6_{case.name}")
    t0 = time.perf_counter()
    per_scenario = {}
    try:
        for s in scenarios:
            sub = copy.copy(args)
            sub.scenario, sub.methods, sub.out = s, ",".join(have), Path(out) / s
            print(f"[table6/{case.name}] scenario {s}: Table 1 with {', '.join(have)}", file=sys.stderr, flush=True)
            per_scenario[s] = table1.run(sub, case=case)
    except BaseException:
        for d in (Path(out), Path(out).parent)[:2 if args.out is None else 0]:
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()               # a bad scenario leaves no empty results folder behind
        raise

    # no column is marked best: rows of different scenarios are not comparable
    metrics = [Metric("reward", "Reward", "", ".1f"), Metric("served_demand", "Served demand", "", ".1f"),
               Metric("reward_pct_ref", f"Reward vs {have[0]}", "%", ".1f", higher_is_better=None)]
    title = f"Table 6 ({case.name}): MPC, Bi-level-learned and value approximation per scenario"
    table = ResultsTable(title, metrics)
    for i, (s, res) in enumerate(per_scenario.items(), 1):
        t = res["table"]
        for m in have:
            if m not in t.methods:
                continue                 # every episode of it failed: Table 1's notes say why
            vals = {k.key: t.values(m, k.key) for k in metrics}
            table.extend(f"Scenario {i} ({s}): {m}", [{k: float(v[j]) for k, v in vals.items()}
                                                     for j in range(len(vals["reward"]))])
    notes = [f"scenario {i}: {s}; Table 1 with these rows in {Path(out) / s}/ (its notes: seeds, θ, policies, "
             f"decision times)" for i, s in enumerate(scenarios, 1)]
    notes += [f"evaluation seeds {args.eval_seed}–{args.eval_seed + args.episodes - 1} in every scenario; "
              f"Bi-level-learned over {args.seeds} RL training seed(s) × episodes",
              *why_missing,
              f"{time.perf_counter() - t0:.0f} s in all",
              "command: python -m offline.experiments " + " ".join(argv if argv is not None else sys.argv[1:])]
    stem = f"table6_{case.name}"
    paths = table.write(out, stem, notes=notes)
    try:
        panels = [("reward", "Reward", False), ("served_demand", "Served demand", False),
                  ("reward_pct_ref", f"Reward (% of {have[0]})", False)]
        paths["png"] = bar_plot(table, panels, Path(out) / f"{stem}.png")
    except Exception as e:  # noqa: BLE001  (a plot must never lose the table)
        print(f"[table6/{case.name}] plot failed: {e}", file=sys.stderr)
    print(table.markdown(notes))
    print(f"results folder: {out}")
    return {"out": out, "paths": paths, "table": table, "scenarios": per_scenario, "missing": missing}


def _adapter(case) -> str:
    module = type(case).__module__
    return module.replace(".", "/") + ".py" if module.startswith("offline.") else module
