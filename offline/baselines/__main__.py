"""python -m offline.baselines <method> --case amod|inventory: fit one baseline lower level and measure it.

    cvxpylayers   Bi-level-cvxpy: θ by Adam through a CvxpyLayer; writes the θ file (provenance
                  fit_method: cvxpylayers), its loss curve (CSV + PNG) and the fit time
    value         value approximation: V(s⁺) fitted to the MPC's cost-to-go; writes V (YAML)

Both print the held-out similarity to the expert (cosine, L1 per decision) of their decisions.
Table 4 (`python -m offline.experiments table4`) runs both next to inverse optimization.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

from hiopt_ros.control.theta import save_theta
from offline.baselines import run as R


def build_parser(case: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m offline.baselines", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, text in (("cvxpylayers", "Bi-level-cvxpy: θ by gradient descent through a CvxpyLayer"),
                       ("value", "value approximation: a learned convex quadratic V(s⁺)")):
        s = sub.add_parser(name, help=text, description=text + ". Add --case NAME --help for the case's options.")
        s.add_argument("--case", required=True, choices=R.CASES, help="case study")
        s.add_argument("--work-dir", type=Path, default=Path("results"),
                       help="cache of demonstrations and fits (default results/)")
        s.add_argument("--out", type=Path, default=None,
                       help="output folder (default <work-dir>/<case>/<scenario>/baselines)")
        s.add_argument("--seed", type=int, default=0, help="seed of the cvxpylayers initialisation (default 0)")
        s.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "value":
            s.add_argument("--episodes", type=int, default=0,
                           help=f"also run the policy as a whole controller for N episodes on evaluation seeds "
                                f"{R.EVAL_SEED0}, … (Table 6's row; default 0)")
        R.add_budget_arguments(s)
        if case is not None:
            R.add_case_arguments(s.add_argument_group(f"{case} options"), case)
    return p


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _metrics_lines(case_name: str, held: dict) -> list[str]:
    return [f"  {label:16s} cosine {held[key]['cosine']:.4f}   L1 per decision {held[key]['l1']:.3f}"
            for key, label in R.COLUMNS[case_name]]


def write_loss_curve(out: Path, loss: list[float], title: str) -> dict[str, Path]:
    """<out>_loss.csv (epoch, loss) and <out>_loss.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["epoch", "mean_training_loss"])
    w.writerows([[i, f"{v:.10g}"] for i, v in enumerate(loss)])
    csv_path = out.with_name(out.name + "_loss.csv")
    csv_path.write_text(buf.getvalue())
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(range(len(loss)), loss, marker="o")
    ax.set_xlabel("epoch (0: initial θ)")
    ax.set_ylabel("mean ‖x*(θ) − x_expert‖²")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    png = out.with_name(out.name + "_loss.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return {"csv": csv_path, "png": png}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--case", default=None)
    known, _ = pre.parse_known_args(argv)
    args = build_parser(known.case if known.case in R.CASES else None).parse_args(argv)
    try:
        prep = R.prepare(args, _log)
        out = args.out or prep.root / "baselines"
        out.mkdir(parents=True, exist_ok=True)
        if args.method == "cvxpylayers":
            res = R.fit_cvxpylayers(prep, R.layer_configs(args, args.seed), _log,
                                    progress=not args.no_progress and sys.stderr.isatty())
            theta, fit = res.artefact
            theta.provenance["held_out"] = res.held_out
            stem = out / f"theta_cvxpylayers_seed{args.seed}"
            path = save_theta(stem.with_suffix(".yaml"), theta)
            curve = write_loss_curve(stem, fit.loss, f"cvxpylayers fit ({args.case}, seed {args.seed})")
            print(f"cvxpylayers ({args.case}): fit {res.fit_time_s:.1f} s; held-out vs the MPC:")
            print("\n".join(_metrics_lines(args.case, res.held_out)))
            print(f"wrote {path}, {curve['csv']}, {curve['png']}")
        else:
            import yaml

            ranks, regs = R.value_grid(args)
            res = R.fit_value(prep, ranks, regs, _log)
            policy, report = res.artefact
            vf = policy.vf
            doc = {"fit_method": "value_approximation", "case_study": args.case, "state_names": prep.case.state_names,
                   "L": vf.L.tolist(), "D": vf.D.tolist(), "q": vf.q.tolist(),
                   "report": _plain(report), "held_out": _plain(res.held_out)}
            if args.episodes < 0:
                raise ValueError("--episodes must be >= 0")
            if args.episodes:
                eps = R.closed_loop_value(prep, policy, range(R.EVAL_SEED0, R.EVAL_SEED0 + args.episodes))
                doc["closed_loop"] = _plain(eps)
            path = out / "value_function.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            print(f"value approximation ({args.case}): fit {res.fit_time_s:.1f} s; held-out vs the MPC:")
            print("\n".join(_metrics_lines(args.case, res.held_out)))
            if args.episodes:
                rw, sv = np.array([e["reward"] for e in eps]), np.array([e["served"] for e in eps])
                print(f"closed loop, {len(eps)} episodes (seeds {R.EVAL_SEED0}–{R.EVAL_SEED0 + len(eps) - 1}): reward "
                      f"{rw.mean():.1f} ± {rw.std():.1f}, served {sv.mean():.1f} ± {sv.std():.1f}, failed solves "
                      f"{sum(e['failed_solves'] for e in eps)}")
            print(f"wrote {path}")
    except (ValueError, FileNotFoundError) as e:
        print(f"offline.baselines: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("offline.baselines: interrupted", file=sys.stderr)
        return 130
    return 0


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    return obj


if __name__ == "__main__":
    sys.exit(main())
