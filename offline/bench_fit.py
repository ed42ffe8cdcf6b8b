"""Benchmark of the inverse problem (Problem 11): time, peak memory, recovery, held-out cosine.

Two sources of samples:
* synthetic (`--source synthetic`): n = 2 FOPs shaped like the robot's (Eq. 32 with u = (v, ω)): a
  diagonal quadratic cost from tracking a subgoal, box bounds on (v, ω) and one or two random
  half-spaces (linearised obstacles), two cost features (heading-like, input). The expert action
  is FOP_θ*(sample) with K* = 3 known ReLU terms and, with --weights, known feature weights φ*:
  recovery is measured on the weights (|φ̂ − φ*|) and on held-out actions (cosine);
* robot (`--source robot --robot-bag BAG`): the robot's own demonstrations (offline.demos) turned
  into Eq. 32 samples by the robot adapter (subgoal `--robot-subgoal`, learned c_h, c_u), fitted
  with learned weights only (convex) and with K ReLU terms plus weights; held-out cosine of the
  forward QP (the FOP with linearised obstacles) on held-out samples.
Each case runs in its own process, so its peak memory (max RSS) is its own.

    python -m offline.bench_fit --sizes 20000,50000 --markdown results/bench_fit.md
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hiopt_ros.bag_reader import read_robot_bag
from hiopt_ros.control.fop import Fop
from hiopt_ros.control.params import fop_config_from_params
from hiopt_ros.tables import Column, markdown_table

from .inverse import Features, InverseSample, cosine_similarity, fit_inverse, forward_solve_batch
from .robot_data import SubgoalSpec, align_bag, inverse_samples, weight_features


@dataclass
class Synthetic:
    """Hyperparameters of the synthetic expert (a known FOP_θ*).

    weights_true: the planted weights φ* of two robot-like cost features (a heading-like term
    (ω + a_t)² and the input term ‖u‖², whose weights Eq. 32a's c_h and c_u scale); () plants none.
    """
    K_true: int = 3
    l: float = 1e-2  # noqa: E741 (Eq. 10's l)
    v_bounds: tuple[float, float] = (0.0, 1.0)        # v_min_mps, v_max_mps
    omega_bounds: tuple[float, float] = (-1.5, 1.5)   # omega_min_radps, omega_max_radps
    weights_true: tuple[float, ...] = ()


#: the two planted features' names and boxes (the box keeps every FOP strongly convex)
FEATURE_NAMES = ("heading", "input")
FEATURE_BOX = ((-0.09, 3.0), (-0.09, 3.0))


def features(J: int = 2, rho: float = 0.0):
    """The Features of the synthetic data's first J cost features."""
    return Features(names=FEATURE_NAMES[:J], lower=tuple(b[0] for b in FEATURE_BOX[:J]),
                    upper=tuple(b[1] for b in FEATURE_BOX[:J]), rho=rho)


def true_theta(seed: int = 0, K_true: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """θ*, ν* with kinks crossing the action box, so that ReLU terms are active on part of the data."""
    rng = np.random.default_rng(10_000 + seed)
    ang = rng.uniform(0, 2 * np.pi, K_true)
    theta = np.c_[np.cos(ang), np.sin(ang)] * rng.uniform(0.8, 2.0, size=(K_true, 1))
    u_ref = np.c_[rng.uniform(0.2, 0.8, K_true), rng.uniform(-0.8, 0.8, K_true)]
    nu = np.einsum("kn,kn->k", theta, u_ref)
    return theta, nu


def synthetic_samples(T: int, seed: int = 0, cfg: Synthetic = Synthetic(), theta=None, nu=None
                      ) -> tuple[list[InverseSample], np.ndarray, np.ndarray]:
    """T robot-shaped samples whose expert actions are FOP_θ* optima. Returns (samples, θ*, ν*)."""
    if theta is None:
        theta, nu = true_theta(seed, cfg.K_true)
    rng = np.random.default_rng(seed)
    (vlo, vhi), (wlo, whi) = cfg.v_bounds, cfg.omega_bounds
    box_H = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    box_b = np.array([vhi, -vlo, whi, -wlo])
    samples = []
    for _ in range(T):
        # tracking cost c_p‖p_next − p̂‖² + c_h(ψ_next − ψ̂)² + c_u‖u‖²: diagonal Q, c from the subgoal
        Q = np.diag(rng.uniform(0.2, 1.0, 2))
        target = np.array([rng.uniform(-0.5, 1.5), rng.uniform(-2.5, 2.5)])
        c = -2 * Q @ target
        # one or two linearised obstacles: half-spaces near a random point of the box that all keep
        # that point feasible
        n_half = rng.integers(1, 3)
        ang = rng.uniform(0, 2 * np.pi, n_half)
        h = np.c_[np.cos(ang), np.sin(ang)]
        p0 = np.array([rng.uniform(vlo, vhi), rng.uniform(wlo, whi)])
        hb = h @ p0 + rng.uniform(0.0, 0.5, n_half)
        H, b = np.r_[box_H, h], np.r_[box_b, hb]
        # features: heading-like (ω + a)² = a² + 2aω + ω² and the input term ‖u‖²
        a = rng.uniform(-1.0, 1.0)
        flin = np.array([[0.0, 2 * a], [0.0, 0.0]])
        fquad = np.array([[0.0, 1.0], [1.0, 1.0]])
        samples.append(InverseSample(c=c, Q=Q, u=np.zeros(2), H=H, b=b, feature_lin=flin, feature_quad=fquad))
    U = forward_solve_batch(samples, theta, nu, cfg.l, weights=planted_weights(cfg))
    for s, u in zip(samples, U):
        s.u = u
    return samples, theta, nu


def planted_weights(cfg: Synthetic) -> np.ndarray:
    """φ* (2,): the planted weights padded with zeros (the features every sample carries)."""
    w = np.zeros(2)
    w[:len(cfg.weights_true)] = cfg.weights_true
    return w


def activity(samples, theta, nu, tol: float = 1e-6) -> dict[str, float]:
    """Fractions of samples with a ReLU kink / a constraint active at the expert action."""
    U = np.array([s.u for s in samples])
    kink = np.abs(U @ theta.T - nu) < tol
    on = (U @ theta.T - nu) > tol
    bound = np.array([np.any(s.b - s.H @ s.u < tol) for s in samples])
    return {"relu_on": float(np.mean(on.any(axis=1))), "at_kink": float(np.mean(kink.any(axis=1))),
            "constraint_active": float(np.mean(bound))}


def held_out_cosine(fit, held) -> float:
    U = forward_solve_batch(held, fit.theta, fit.nu, fit.l, weights=fit.weights if fit.weights.size else None)
    return cosine_similarity(U, np.array([s.u for s in held]))


def robot_samples(bag: str, subgoal: str, learn=("c_h", "c_u"), params: str | None = None):
    """Eq. 32 samples (with the weight features of `learn`) from a demonstration bag, successful
    episodes only; returns (samples, episode label per sample, Features)."""
    got, _ = align_bag(read_robot_bag(bag))
    got = [s for s in got if s.reached is not False]
    got = SubgoalSpec.parse(subgoal).apply(got)
    fop = Fop(fop_config_from_params(params) if params else fop_config_from_params())
    data, kept, _, _ = inverse_samples(got, fop, learn=learn)
    return data, [got[i].episode for i in kept], weight_features(learn, fop)


def run_case(case: dict) -> dict:
    """One benchmark row, in a child process; returns the row (time, peak RSS, recovery, cosine)."""
    import resource

    T, method, source = case["T"], case["method"], case["source"]
    K, l_reg, rho = case["K"], case["l"], case["rho"]
    feats = None
    truth: dict = {}
    if source == "synthetic":
        cfg = Synthetic(l=l_reg, weights_true=tuple(case["weights_true"]))
        theta_true, nu_true = true_theta(case["seed"], cfg.K_true)
        train, *_ = synthetic_samples(T, seed=case["seed"] + T, cfg=cfg, theta=theta_true, nu=nu_true)
        held, *_ = synthetic_samples(case["held_out"], seed=case["seed"] + 999, cfg=cfg, theta=theta_true, nu=nu_true)
        if cfg.weights_true:
            feats = features(len(cfg.weights_true))
            truth["weights"] = list(cfg.weights_true)
    else:
        data, episodes, feats = robot_samples(case["robot_bag"], case["robot_subgoal"])
        labels = sorted(set(episodes))
        rng = np.random.default_rng(case["seed"])
        held_eps = set(rng.choice(labels, size=max(1, len(labels) // 10), replace=False).tolist())
        train = [d for d, e in zip(data, episodes) if e not in held_eps]
        held = [d for d, e in zip(data, episodes) if e in held_eps]
        if len(train) < T:
            raise SystemExit(f"the robot bag has {len(train)} training samples, fewer than T = {T}: record more "
                             f"episodes with `python -m offline.demos`")
        pick = np.sort(rng.choice(len(train), size=T, replace=False))
        train = [train[i] for i in pick]
        held = held[:case["held_out"]]
    t0 = time.perf_counter()
    fit = fit_inverse(train, K=K, l=l_reg, rho=rho, method=method, time_limit_s=case["time_limit"], seed=case["seed"],
                      progress=False, restarts=case["restarts"], features=feats)
    dt = time.perf_counter() - t0
    row = {**{k: case[k] for k in ("T", "source", "K")}, "method": fit.method, "status": fit.status, "time_s": dt,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "objective": fit.objective, "bound": fit.bound, "max_gap": float(fit.gaps.max()),
           "cosine": held_out_cosine(fit, held), "weights": fit.weights.tolist(), "dropped": len(fit.dropped),
           "phases": fit.info.get("phase_s", {})}
    if "weights" in truth:
        row["weight_error"] = float(np.max(np.abs(fit.weights - np.asarray(truth["weights"]))))
    zero = forward_solve_batch(held, np.zeros((1, 2)), np.zeros(1), l_reg)
    row["cosine_unchanged"] = cosine_similarity(zero, np.array([s.u for s in held]))
    return row


def _in_child(case: dict) -> dict:
    """run_case in a fresh process (spawn), so peak RSS is per case."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(run_case, case).result()


def format_table(rows: list[dict]) -> str:
    columns = [Column("source"), Column("T", "right"), Column("K", "right"), Column("learned weights"),
               Column("method"), Column("status")] + [Column(h, "right") for h in (
                   "fit time [s]", "peak RSS [MB]", "objective", "max gap ε", "weight error", "held-out cosine",
                   "unchanged FOP cosine")]
    cells = []
    for r in rows:
        w = ", ".join(f"{x:.3g}" for x in r["weights"]) or "–"
        we = f"{r['weight_error']:.3g}" if "weight_error" in r else "–"
        cells.append([r["source"], r["T"], r["K"], w, r["method"], r["status"], f"{r['time_s']:.1f}",
                      f"{r['peak_rss_mb']:.0f}", f"{r['objective']:.3e}", f"{r['max_gap']:.2e}", we,
                      f"{r['cosine']:.4f}", f"{r['cosine_unchanged']:.4f}"])
    return markdown_table(columns, cells) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline.bench_fit", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,50000",
                    help="comma-separated training set sizes T (default 20000,50000)")
    ap.add_argument("--source", nargs="+", choices=("synthetic", "robot"), default=["synthetic"],
                    help="where the samples come from (default synthetic; robot needs --robot-bag)")
    ap.add_argument("--K", type=int, default=4, help="ReLU terms fitted (K* = 3 generate the synthetic data)")
    ap.add_argument("--weights", action="store_true",
                    help="synthetic: also plant and learn the two feature weights φ* = (1.2, −0.05)")
    ap.add_argument("--l", type=float, default=1e-2, help="the l‖u‖² weight (same as the expert's)")
    ap.add_argument("--rho", type=float, default=1e-3)
    ap.add_argument("--method", choices=("auto", "global", "alternating"), default="alternating")
    ap.add_argument("--held-out", type=int, default=500, help="held-out samples for the cosine similarity")
    ap.add_argument("--time-limit", type=float, default=420.0,
                    help="solver time limit per fit [s] (default 420: with the final all-sample gaps a 50,000-sample "
                         "fit stays under 10 min)")
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--robot-bag", default=None, help="demonstration bag (offline.demos) for --source robot")
    ap.add_argument("--robot-subgoal", default="plan:6",
                    help="subgoal definition of the robot samples (default plan:6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", type=Path, default=None, help="write the table to this Markdown file")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        print(f"offline.bench_fit: error: --sizes must be comma-separated integers, got {args.sizes!r}",
              file=sys.stderr)
        return 2
    if "robot" in args.source and not args.robot_bag:
        print("offline.bench_fit: error: --source robot needs --robot-bag BAG "
              "(record one with python -m offline.demos)", file=sys.stderr)
        return 2
    rows = []
    for source in args.source:
        for T in sizes:
            variants = [args.K] if source == "synthetic" else [0, args.K]
            for K in variants:
                case = {"T": T, "source": source, "K": K, "l": args.l, "rho": args.rho, "method": args.method,
                        "held_out": args.held_out, "time_limit": args.time_limit, "restarts": args.restarts,
                        "seed": args.seed, "weights_true": (1.2, -0.05) if (args.weights and source == "synthetic")
                        else (), "robot_bag": args.robot_bag, "robot_subgoal": args.robot_subgoal}
                row = _in_child(case)
                rows.append(row)
                if not args.quiet:
                    print(f"{source:9s} T={T:6d} K={K} {row['method']:11s} {row['status']:10s} {row['time_s']:7.1f} s  "
                          f"peak {row['peak_rss_mb']:.0f} MB  objective {row['objective']:.3e}  held-out cosine "
                          f"{row['cosine']:.4f} (unchanged {row['cosine_unchanged']:.4f})  phases {row['phases']}",
                          file=sys.stderr, flush=True)
    parts = []
    if "synthetic" in args.source:
        planted = ", planted weights φ* = (1.2, −0.05)" if args.weights else ""
        parts.append(f"synthetic: K* = 3 true ReLU terms{planted}")
    if "robot" in args.source:
        parts.append(f"robot: {args.robot_bag}, subgoal {args.robot_subgoal}, learned Δc_h, Δc_u")
    head = (f"Problem 11 fits (l = {args.l:g}, ρ = {args.rho:g}, time limit {args.time_limit:g} s per fit; "
            f"{'; '.join(parts)}). Held-out cosine over {args.held_out} samples; weight error = max |φ̂ − φ*|.\n\n")
    table = head + format_table(rows)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("# offline.bench_fit\n\n" + table)
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
