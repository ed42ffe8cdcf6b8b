"""python -m offline.experiments <table> ...  (see offline/experiments/__init__.py)

    python -m offline.experiments table1 --case amod            # Table 1 (left)
    python -m offline.experiments table1 --case inventory       # Table 1 (right)
    python -m offline.experiments table1 --case amod --help     # the case's own options too
    python -m offline.experiments table2 --workers 2            # Table 2 (robot) on a local Ray instance
    python -m offline.experiments table3 --clock cpu            # Table 3: decision time, lower level vs MPC
    python -m offline.experiments table5                        # Table 5: bi-level flows vs the MPC's (AMoD)
    python -m offline.experiments table6 --case amod            # Table 6: value approximation on two scenarios
    python -m offline.experiments fig4 --cases robot            # Figure 4 (also amod, inventory)
    python -m offline.experiments fig5-bilevel                  # Figure 5's second claim (noisy expert, AMoD)
    python -m offline.experiments train --seeds 3               # the robot's RL trainings, seeds × methods
    python -m offline.experiments all --quick                   # everything at tiny budgets + report.md
"""
from __future__ import annotations

import argparse
import importlib
import sys

from offline.experiments import CASES, load_case, report, table1
from sim import evaluate

#: every other command: name -> (module, help). A module defines add_arguments(parser) and
#: run(args, argv) -> {"out": folder, "paths": {...}}; see offline.experiments.report for what `all`
#: also reads (QUICK_ARGV, FULL_ARGV, PAPER). A module that does not exist yet is reported by name.
PRODUCERS: dict[str, tuple[str, str]] = {
    "table2": ("offline.experiments.table2", "Table 2: robot navigation on held-out courses (sim.evaluate's "
                                             "courses as sweep tasks; learned rows over training seeds)"),
    "table3": ("offline.experiments.table3", "Table 3: decision time per step, lower level vs MPC, three case "
                                             "studies interleaved in one process (median, p99)"),
    "table4": ("offline.experiments.table4", "Table 4: similarity of baselines' decisions to the expert's"),
    "table5": ("offline.experiments.table5", "Table 5: cosine / Manhattan of bi-level flows to the MPC's"),
    "table6": ("offline.experiments.table6", "Table 6: value approximation vs MPC and Bi-level-learned on two "
                                             "scenarios (Table 1's runner per scenario; AMoD or inventory)"),
    "fig4": ("offline.experiments.figures", "Figure 4: number of ReLU terms K -> held-out cosine / Manhattan"),
    "fig5": ("offline.experiments.figures", "Figure 5: noise in the demonstrations -> similarity to the "
                                            "noise-free expert"),
    "fig5-bilevel": ("offline.experiments.noisy_expert", "Figure 5's second claim: the bi-level policy with θ and "
                                                         "upper level learned from a noisy expert vs that expert's "
                                                         "reward (AMoD; Table 1's runner)"),
    "train": ("offline.experiments.robot_train", "the robot's RL trainings over seeds × methods (sim.train runs "
                                                 "as sweep tasks)"),
}


def producer(name: str):
    """The module of a command (ValueError saying which module is missing)."""
    module = PRODUCERS[name][0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise ValueError(f"{name}: {module} does not exist yet (its producer has not landed)") from None
        raise


def build_parser(case_name: str | None = None, command: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m offline.experiments",
                                description="Experiments of the paper: results tables (Markdown + CSV + PNG).")
    sub = p.add_subparsers(dest="table", required=True, metavar="TABLE")
    t1 = sub.add_parser("table1", help="Table 1: MPC vs bi-level vs end-to-end RL (reward, served demand, "
                                       "decision time), mean ± std over seeded episodes and RL training seeds",
                        description="Table 1 for one case study. Add --case NAME --help for the case's options.")
    table1.add_arguments(t1)
    if case_name is not None:
        group = t1.add_argument_group(f"{case_name} options")
        load_case(case_name).add_arguments(group)
    for name, (_, help_text) in PRODUCERS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:              # only the chosen command's module is imported
            mod = producer(name)
            if getattr(mod, "CASE_ARGUMENTS", False):    # its options depend on --case (table4)
                mod.add_arguments(sp, case_name)
            else:
                mod.add_arguments(sp)
    all_ = sub.add_parser("all", help="every table and figure, then report.md with the paper's numbers beside ours",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    if command == "all":
        all_.description = report.__doc__
        report.add_arguments(all_)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # two passes: the case's options are known once --case is, a command's once it is named
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--case", default=None)
    known, rest = pre.parse_known_args(argv)
    case_name = known.case if known.case in CASES else None
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(case_name, command)
    except ValueError as e:
        print(f"offline.experiments: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        if args.table == "table1":
            table1.run(args)
        elif args.table == "all":
            return report.run(args, argv)
        else:
            if args.table == "table2":
                evaluate.check_args(parser, args)
            out = producer(args.table).run(args, argv)
            if isinstance(out, int):
                return out
    except (ValueError, FileNotFoundError) as e:
        print(f"offline.experiments: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("offline.experiments: interrupted (no table written)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
