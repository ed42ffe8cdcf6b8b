"""python -m offline.experiments <table> ...  (see offline/experiments/__init__.py)

    python -m offline.experiments table1 --case amod            # Table 1 (left)
    python -m offline.experiments table1 --case inventory       # Table 1 (right)
    python -m offline.experiments table1 --case amod --help     # the case's own options too
"""
from __future__ import annotations

import argparse
import sys

from offline.experiments import CASES, load_case


def build_parser(case_name: str | None = None) -> argparse.ArgumentParser:
    from offline.experiments import table1

    p = argparse.ArgumentParser(prog="python -m offline.experiments",
                                description="Experiments of the paper: results tables (Markdown + CSV + PNG).")
    sub = p.add_subparsers(dest="table", required=True, metavar="TABLE")
    t1 = sub.add_parser("table1", help="Table 1: MPC vs bi-level vs end-to-end RL (reward, served demand, "
                                       "decision time), mean ± std over seeded episodes",
                        description="Table 1 for one case study. Add --case NAME --help for the case's options.")
    table1.add_arguments(t1)
    if case_name is not None:
        group = t1.add_argument_group(f"{case_name} options")
        load_case(case_name).add_arguments(group)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # two passes: the case's options are known once --case is
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--case", default=None)
    known, _ = pre.parse_known_args(argv)
    case_name = known.case if known.case in CASES else None
    try:
        parser = build_parser(case_name)
    except ValueError as e:
        print(f"offline.experiments: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.table == "table1":
        from offline.experiments import table1
        try:
            table1.run(args)
        except (ValueError, FileNotFoundError) as e:
            print(f"offline.experiments: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("offline.experiments: interrupted (no table written)", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
