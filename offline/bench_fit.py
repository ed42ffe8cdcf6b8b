"""Benchmark of the inverse problem (Problem 11) on synthetic robot-shaped data from a known θ*.

Each sample is an n = 2 FOP shaped like the robot's (Eq. 32 with u = (v, ω)): a diagonal
quadratic cost from tracking a subgoal, box bounds on (v, ω) and one or two random half-spaces
(linearised obstacles). The expert action is FOP_θ*(sample) with K* known ReLU terms. The global
(SCIP) and alternating (HiGHS) fits are compared on fit time, objective, max duality gap and the
held-out cosine similarity between FOP_θ̂ actions and the expert's.

    python -m offline.bench_fit --sizes 50,200,1000,5000 --markdown results/bench_fit.md
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .inverse import InverseSample, cosine_similarity, fit_inverse, forward_solve_batch


@dataclass
class Synthetic:
    """Hyperparameters of the synthetic expert (a known FOP_θ*).

    weights_true: the planted weights φ* of two robot-like cost features (a heading-like term
    (ω + a_t)² and the input term ‖u‖², whose weights Eq. 32a's c_h and c_u scale); () plants none.
    """
    K_true: int = 3
    l: float = 1e-2
    v_bounds: tuple[float, float] = (0.0, 1.0)        # v_min_mps, v_max_mps
    omega_bounds: tuple[float, float] = (-1.5, 1.5)   # omega_min_radps, omega_max_radps
    weights_true: tuple[float, ...] = ()


#: the two planted features' names and boxes (the box keeps every FOP strongly convex)
FEATURE_NAMES = ("heading", "input")
FEATURE_BOX = ((-0.09, 3.0), (-0.09, 3.0))


def features(J: int = 2, rho: float = 0.0):
    """The Features of the synthetic data's first J cost features."""
    from .inverse import Features
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
    U = forward_solve_batch(held, fit.theta, fit.nu, fit.l)
    return cosine_similarity(U, np.array([s.u for s in held]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline.bench_fit", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,200,1000,5000", help="comma-separated training set sizes T")
    ap.add_argument("--K", type=int, default=4, help="ReLU terms fitted (K* = 3 generate the data)")
    ap.add_argument("--l", type=float, default=1e-2, help="the l‖u‖² weight (same as the expert's)")
    ap.add_argument("--rho", type=float, default=1e-3)
    ap.add_argument("--held-out", type=int, default=500, help="held-out samples for the cosine similarity")
    ap.add_argument("--global-time-limit", type=float, default=120.0,
                    help="SCIP time limit [s]; global runs on sizes ≤ --global-max-size")
    ap.add_argument("--global-max-size", type=int, default=200)
    ap.add_argument("--time-limit", type=float, default=240.0, help="alternating method time limit [s]")
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", type=Path, default=None, help="write the table to this Markdown file")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    cfg = Synthetic(l=args.l)
    theta_true, nu_true = true_theta(args.seed, cfg.K_true)
    held, *_ = synthetic_samples(args.held_out, seed=args.seed + 999, cfg=cfg, theta=theta_true, nu=nu_true)
    zero = cosine_similarity(forward_solve_batch(held, np.zeros((1, 2)), np.zeros(1), cfg.l),
                             np.array([s.u for s in held]))
    rows = []
    for T in sizes:
        train, *_ = synthetic_samples(T, seed=args.seed + T, cfg=cfg, theta=theta_true, nu=nu_true)
        act = activity(train, theta_true, nu_true)
        methods = (["global"] if T <= args.global_max_size else []) + ["alternating"]
        for method in methods:
            t0 = time.perf_counter()
            fit = fit_inverse(train, K=args.K, l=args.l, rho=args.rho, method=method,
                              time_limit_s=args.global_time_limit if method == "global" else args.time_limit,
                              seed=args.seed, progress=not args.quiet, restarts=args.restarts)
            dt = time.perf_counter() - t0
            cos = held_out_cosine(fit, held)
            row = {"T": T, "method": method, "status": fit.status, "time_s": dt, "objective": fit.objective,
                   "bound": fit.bound, "max_gap": float(fit.gaps.max()), "prop4": fit.prop4_bound,
                   "cosine": cos, "relu_on": act["relu_on"], "constraint_active": act["constraint_active"]}
            rows.append(row)
            print(f"T={T:5d} {method:11s} {fit.status:10s} {dt:7.1f} s  objective {fit.objective:.3e}  "
                  f"max gap {row['max_gap']:.2e}  held-out cosine {cos:.4f}", file=sys.stderr, flush=True)
    lines = [f"Synthetic robot-shaped data (n = 2, box + 1–2 half-spaces, K* = {cfg.K_true} true ReLU terms, "
             f"fitted K = {args.K}, l = {args.l:g}, ρ = {args.rho:g}); held-out cosine over {args.held_out} "
             f"samples (FOP with θ = 0: {zero:.4f}).", "",
             "| T | method | status | fit time [s] | objective | global bound | max gap ε | Prop. 4 bound "
             "| held-out cosine | ReLU active | constraint active |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        bound = f"{r['bound']:.3e}" if r["bound"] is not None else "–"
        lines.append(f"| {r['T']} | {r['method']} | {r['status']} | {r['time_s']:.1f} | {r['objective']:.3e} | "
                     f"{bound} | {r['max_gap']:.2e} | {r['prop4']:.3f} | {r['cosine']:.4f} | "
                     f"{r['relu_on']:.0%} | {r['constraint_active']:.0%} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("# offline.bench_fit\n\n" + table)
        print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
