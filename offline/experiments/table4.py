"""Table 4 (Appendix C.1): how closely three ways of designing the lower level imitate the expert.

    python -m offline.experiments table4 --case amod         # reb. flow and pax. flow
    python -m offline.experiments table4 --case inventory    # commodity flow
    python -m offline.experiments table4                     # both, each with its defaults
    python -m offline.experiments table4 --case robot        # beyond the paper: the robot, (v, ω)

Value approximation (offline.baselines.value), cvxpylayers (offline.baselines.layer_fit) and inverse
optimization (the case study's own fit, Problem 11), each fitted on the same MPC demonstrations,
measured on the same held-out demonstrations: the decision of each at the held-out states (the θ
methods with the expert's own subgoal, through the deployed LP; value approximation its own
one-step QP) against the expert's, through offline.inverse.metrics (cosine of the stacked flows,
mean L1 per decision), with the fit time of each. cvxpylayers runs once per --seeds entry (its
initialisation); inverse optimization and value approximation are deterministic (one row each).
Written through sim.results (Markdown + CSV) plus a PNG and each cvxpylayers loss curve.

The robot (--case robot, beyond the paper; offline.baselines.robot): inverse optimization is offline.fit
as shipped and cvxpylayers fits the same θ form through the cvxpy statement of the inverse fit's
per-sample form (Eq. 32 convexified at the expert's state), both on the expert bags Figure 4 records
(offline.demos, course seed 1 for training, 101 held out); scored at the held-out states through the
deployed acados FOP and through the convexified FOP. Value approximation does not apply (module
docstring of offline.baselines.robot). Not part of the default (both network cases) run.
"""
from __future__ import annotations

import sys
from pathlib import Path

from hiopt_ros.bags import BagError
from hiopt_ros.control.theta import save_theta
from offline.baselines import run as R
from offline.baselines.__main__ import write_loss_curve
from offline.baselines.robot import add_robot_arguments, run_robot
from offline.experiments.figures import robot_bags
from offline.fit import FitFailed
from offline.robot_data import DemonstrationError, SubgoalSpec
from sim.results import Metric, ResultsTable, bar_plot, new_results_dir

#: offline.experiments.__main__ passes --case to add_arguments (the options depend on the case)
CASE_ARGUMENTS = True
METHODS = ("Value Approximation", "cvxpylayers", "Inverse Optimization")
UNCHANGED = "Unchanged FOP (θ = 0, reference)"


def add_arguments(p, case: str | None = None) -> None:
    p.add_argument("--case", default=None, choices=R.CASES + ("robot",),
                   help="case study (default: amod and inventory, each with its defaults; give --case for its "
                        "options; robot: beyond the paper, its --robot-* options)")
    p.add_argument("--seeds", default="0", help="seeds of the cvxpylayers fit (comma list; default 0)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--work-dir", type=Path, default=Path("results"),
                   help="cache of demonstrations and inverse fits (default results/, shared with Table 1)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default results/table4_<case>/<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    R.add_budget_arguments(p)
    add_robot_arguments(p)
    if case is not None:
        R.add_case_arguments(p.add_argument_group(f"{case} options"), case)


def _defaults(case: str, args):
    """args completed with `case`'s own defaults (when Table 4 runs both cases)."""
    import argparse

    p = argparse.ArgumentParser(add_help=False)
    R.add_case_arguments(p, case)
    ns = p.parse_args([])
    for k, v in vars(args).items():
        setattr(ns, k, v)
    ns.case = case
    return ns


def run(args, argv=None) -> dict:
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"--methods: unknown {bad}; choose from {','.join(METHODS)}")
    seeds = R.comma_list(args.seeds, "--seeds", int, "integers")
    if args.case == "robot":
        return _run_robot(args, methods, seeds, argv)
    ranks, regs = R.value_grid(args)
    R.layer_configs(args)         # the budget is checked before anything runs
    cases = [args.case] if args.case else list(R.CASES)
    results = {}
    for case in cases:
        results[case] = _run_case(args if args.case else _defaults(case, args), methods, seeds, ranks, regs,
                                  argv, both=len(cases) > 1)
    return results[cases[0]] if len(cases) == 1 else {"cases": results}


def _run_case(args, methods, seeds, ranks, regs, argv, both: bool) -> dict:
    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    case = args.case
    prep = R.prepare(args, log)
    progress = not args.quiet and sys.stderr.isatty()
    out = (args.out / case if both else args.out) if args.out else new_results_dir(f"table4_{case}")
    out.mkdir(parents=True, exist_ok=True)
    results = []
    if "Value Approximation" in methods:
        log(f"[table4] value approximation: rank × λ grid {['full' if r is None else r for r in ranks]} × {regs}")
        results.append(R.fit_value(prep, ranks, regs, log))
    if "cvxpylayers" in methods:
        for s in seeds:
            log(f"[table4] cvxpylayers, seed {s}: {len(prep.case.data)} demonstrations, lr {args.lr}, "
                f"{args.epochs} epochs, batch {args.batch}")
            res = R.fit_cvxpylayers(prep, R.layer_configs(args, s), log, progress=progress)
            theta, fit = res.artefact
            theta.provenance["held_out"] = res.held_out
            save_theta(out / f"theta_cvxpylayers_seed{s}.yaml", theta)
            write_loss_curve(out / f"cvxpylayers_seed{s}", fit.loss, f"cvxpylayers ({case}, seed {s})")
            results.append(res)
    if "Inverse Optimization" in methods:
        log("[table4] inverse optimization (the case study's own fit)")
        results.append(R.fit_inverse(prep, log))
    # reference: the unchanged FOP (θ = 0) at the same states, what every method starts from
    results.append(R.MethodResult(UNCHANGED, prep.case.held_out(None), float("nan"), None))

    cols = R.COLUMNS[case]
    metrics = []
    for key, label in cols:
        metrics += [Metric(f"{key}_cosine", f"{label}: cosine", fmt=".3f", higher_is_better=True),
                    Metric(f"{key}_l1", f"{label}: L1 / decision", fmt=".2f", higher_is_better=False)]
    metrics.append(Metric("fit_time_s", "fit time", "s", ".1f", higher_is_better=False))
    title = {"amod": "Table 4 (AMoD rebalancing)", "inventory": "Table 4 (inventory management)"}[case]
    table = ResultsTable(title, metrics)
    for name in METHODS + (UNCHANGED,):
        for r in (r for r in results if r.method == name):
            row = {"fit_time_s": r.fit_time_s}
            for key, _ in cols:
                row[f"{key}_cosine"] = r.held_out[key]["cosine"]
                row[f"{key}_l1"] = r.held_out[key]["l1"]
            table.add(name, row)
    notes = list(prep.notes) + [n for r in results for n in r.notes] + [
        f"cvxpylayers budget: Adam lr ∈ {{{args.lr}}} (lowest training loss kept), {args.epochs} epochs, "
        f"batch {args.batch}, layer l {args.layer_l:g}, "
        f"init N(0, {args.init_scale:g}²), seeds {','.join(map(str, seeds))}",
        f"value approximation budget: rank ∈ {args.ranks}, λ ∈ {args.regs}, chosen on the last training episode",
        "similarity at the held-out demonstration states (never fitted on): cosine of the stacked flows and mean L1 "
        "per decision (offline.inverse.metrics); 'episodes' = fits (cvxpylayers: one per seed)",
        "command: python -m offline.experiments " + " ".join(argv if argv is not None else ["table4"])]
    paths = table.write(out, "table4", notes=notes)
    panels = [(f"{k}_cosine", f"{label}: cosine", False) for k, label in cols] + [("fit_time_s", "fit time (s)", True)]
    paths["png"] = bar_plot(table, panels, out / "table4.png")
    print(table.markdown(notes))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return {"out": out, "paths": paths, "table": table, "results": results}


def _run_robot(args, methods, seeds, argv) -> dict:
    """Table 4 for the robot (module docstring): inverse optimization and cvxpylayers on the fig4 bags."""
    import argparse

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if args.robot_episodes < 1 or args.robot_val_episodes < 1 or args.robot_K < 0 or args.robot_max_train < 0:
        raise ValueError("--robot-episodes and --robot-val-episodes must be >= 1, --robot-K and --robot-max-train >= 0")
    if "relu" in args.robot_learn and args.robot_K < 1:
        raise ValueError(f"--robot-learn {args.robot_learn} needs --robot-K >= 1")
    try:
        SubgoalSpec.parse(args.robot_subgoal)
    except (DemonstrationError, ValueError) as e:
        raise ValueError(f"--robot-subgoal: {e}") from None
    if "Value Approximation" in methods:
        log("[table4] robot: value approximation does not apply (offline.baselines.robot); skipped")
    configs = [c for s in seeds for c in R.layer_configs(args, s)] if "cvxpylayers" in methods else []
    train_bag, val_bag = robot_bags(argparse.Namespace(robot_episodes=args.robot_episodes,
                                                       robot_val_episodes=args.robot_val_episodes,
                                                       work_dir=args.work_dir, table="table4"))
    out = args.out or new_results_dir("table4_robot")
    out.mkdir(parents=True, exist_ok=True)
    try:
        res = run_robot(args, train_bag, val_bag, out, configs, log, progress=not args.quiet and sys.stderr.isatty())
    except (DemonstrationError, FitFailed, BagError) as e:     # bad bags, too few samples, a failed fit
        raise ValueError(f"robot: {e}") from None
    for seed, fit in res["losses"].items():
        write_loss_curve(out / f"cvxpylayers_seed{seed}", fit.loss, f"cvxpylayers (robot, seed {seed})")
    metrics = []
    for key, label in (("deployed", "acados FOP"), ("convexified", "convexified FOP")):
        metrics += [Metric(f"{key}_cosine", f"{label}: cosine", fmt=".3f", higher_is_better=True),
                    Metric(f"{key}_l1", f"{label}: L1 / decision", fmt=".3f", higher_is_better=False)]
    metrics.append(Metric("fit_time_s", "fit time", "s", ".1f", higher_is_better=False))
    table = ResultsTable("Table 4 (robot, (v, ω); beyond the paper)", metrics)
    names = {"unchanged": UNCHANGED}
    for want in METHODS + ("unchanged",):
        for method, m, t, _ in (r for r in res["rows"] if r[0] == want):
            if want != "unchanged" and want not in methods:
                continue
            row = {f"{k}_{x}": m[k][x] for k in ("deployed", "convexified") for x in ("cosine", "l1")}
            table.add(names.get(method, method), {"fit_time_s": t, **row})
    notes = res["notes"] + [
        f"cvxpylayers budget: Adam lr ∈ {{{args.lr}}} (lowest training loss kept), {args.epochs} epochs, batch "
        f"{args.batch}, l = the inverse fit's, init N(0, {args.init_scale:g}²), seeds {','.join(map(str, seeds))}",
        "similarity at the held-out states (never fitted on): the deployed acados FOP (Eq. 32, its own obstacles "
        "and heading) and the FOP convexified at the expert's state (the per-sample form both fits use); cosine "
        "of the stacked (v, ω) and mean L1 per decision (offline.inverse.metrics)",
        "command: python -m offline.experiments "
        + " ".join(argv if argv is not None else ["table4", "--case", "robot"])]
    paths = table.write(out, "table4", notes=notes)
    panels = [("deployed_cosine", "acados FOP: cosine", False), ("convexified_cosine", "convexified: cosine", False),
              ("fit_time_s", "fit time (s)", True)]
    paths["png"] = bar_plot(table, panels, out / "table4.png")
    print(table.markdown(notes))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return {"out": out, "paths": paths, "table": table, "rows": res["rows"]}
