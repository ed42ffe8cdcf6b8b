"""Inverse fit of the AMoD lower level (θ_f, θ_g, μ of Eq. 25) from MPC demonstrations, and its validation.

The AMoD adapter of the one Problem (11) implementation (offline.inverse): every demonstration
(state, f, g, q̂) becomes the generic per-sample form through the same Eq25Fop that runs in the
loop (`Eq25Fop.inverse_sample`: sparse network rows, column bounds, the subgoal rows), so the inverse
problem sees exactly the FOP the bi-level policy solves. Prop. 5 says the inverse problem of
Eq. 25 is always feasible; `fit_inverse` minimises the duality gaps (11a) with ρ‖θ‖².

Validation (`imitation`) runs the deployed lower level — Eq25Fop with θ, or θ = 0 (unchanged) — at
held-out expert states with the expert's own subgoal q̂ and compares its flows with the expert's
(offline.inverse metrics: cosine similarity of the stacked flows, mean Manhattan and L2 distance
per decision; the paper's Tables 4–5).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from hiopt_ros.control.theta import Theta
from hiopt_ros.tables import Column, markdown_table
from offline.amod.cost_terms import parse_spec, term_matrix
from offline.amod.demos import Demos
from offline.amod.lower import Eq25Fop
from offline.amod.sim import AmodSim
from offline.inverse import Features, action_metrics, fit_inverse

__all__ = ["FIT_L", "inverse_samples", "cost_features", "fit_theta", "imitation", "closest_optimal", "imitation_table"]

#: l of Problem 11 (Prop. 4 needs l > 0); the deployed Eq. 25 is the LP (offline.amod.lower.DEFAULT_L)
FIT_L = 1e-3


def inverse_samples(fop: Eq25Fop, demos: Demos, cost_terms: Sequence[str] = ()) -> list:
    """One offline.inverse.InverseSample per demonstration (sparse rows); with cost_terms (names of
    offline.amod.cost_terms), each carries their features at its step as feature_lin."""
    samples = [fop.inverse_sample(demos.state(k), demos.qhat[k], demos.f[k], demos.g[k]) for k in range(len(demos))]
    if cost_terms:
        for k, s in enumerate(samples):
            s.feature_lin = term_matrix(fop.sim, cost_terms, int(demos.t[k]))
            s.feature_quad = np.zeros_like(s.feature_lin)      # linear terms: no quadratic part
    return samples


def cost_features(sim: AmodSim, spec: str, rho: float = 0.0):
    """offline.inverse.Features of a cost-term spec ("time", "time:B"): weights in [0, largest trip
    price] — a vehicle-step costs something, and never more than the best trip earns."""
    names = parse_spec(spec, sim.T)
    hi = float(np.max(sim.price))
    return Features(names=tuple(names), lower=(0.0,) * len(names), upper=(hi,) * len(names), rho=rho)


def fit_theta(sim: AmodSim, demos: Demos, *, K: int = 2, l: float = FIT_L, rho: float = 1e-2,
              method: str = "alternating", time_limit_s: float = 600.0, seed: int = 0, progress: bool = True,
              cost_terms: str | None = None, **fit_kw):
    """Fit K ReLU terms (and the weights of `cost_terms`, a spec of offline.amod.cost_terms) on
    `demos`; returns (hiopt_ros.control.theta.Theta, offline.inverse.InverseFit).

    The Theta holds θ over x = [f; g; ε] (input_names = Eq25Fop.names), the learned cost-term
    weights in cost_weights (all of them in learned_weights), and l = 0: the loop solves Eq. 25 as
    an LP (offline.amod.lower.DEFAULT_L); the fit's l is in the provenance. K = 0 needs cost_terms
    (then Problem 11 is convex and solved in one step whatever `method` says).
    """
    fop = Eq25Fop(sim)
    features = cost_features(sim, cost_terms, rho) if cost_terms else None
    samples = inverse_samples(fop, demos, features.names if features else ())
    fit = fit_inverse(samples, K=K, l=l, rho=rho, method=method, time_limit_s=time_limit_s, seed=seed,
                      progress=progress, features=features, **fit_kw)
    weights = dict(zip(fit.weight_names, (max(float(w), 0.0) for w in fit.weights)))   # ≥ 0 up to round-off
    theta = Theta(alpha=fit.theta, beta=fit.nu, l=0.0, case_study="amod", input_names=fop.names,
                  cost_weights=weights, learned_weights=list(weights))
    return theta, fit


def imitation(sim: AmodSim, demos: Demos, theta=None) -> dict:
    """The deployed lower level at the demonstrations' states and subgoals vs the expert's flows.

    Returns {"f": metrics of the rebalancing flows, "g": of the passenger flows, "failed": solves
    that failed, "solve_ms_median"}; metrics = offline.inverse.action_metrics (cosine, l1, l2).
    """
    fop = Eq25Fop(sim, K=theta.K if theta is not None else 0)
    fop.set_theta(theta)
    F, G, times, failed = [], [], [], 0
    for k in range(len(demos)):
        t0 = time.perf_counter()
        s = fop.solve(demos.state(k), demos.qhat[k])
        times.append(time.perf_counter() - t0)
        failed += not s.ok
        F.append(s.f)
        G.append(s.g)
    return {"f": action_metrics(np.array(F), demos.f), "g": action_metrics(np.array(G), demos.g),
            "failed": failed, "solve_ms_median": 1e3 * float(np.median(times)), "samples": len(demos)}


def closest_optimal(sim: AmodSim, demos: Demos, theta=None, rel_tol: float = 1e-7) -> dict:
    """How much of the imitation gap is LP degeneracy (ties): at each demonstration, of all the
    optimal solutions of the deployed Eq. 25 (θ or θ = 0) the one closest to the expert's flows.

    min ‖x − x_e‖₁ over Eq. 25's rows and bounds, ReLU epigraphs θ_kᵀx − τ_k ≤ μ_k, and cost ≤ the
    optimum·(1 + rel_tol): what the best tie-breaking could reach. Also the expert's regret under
    the same cost (its cost minus the optimum; 0 where the expert's flows are optimal too).
    Returns {"f", "g": metrics as in `imitation`, "failed", "samples", "expert_optimal": share of
    samples with regret ≤ 1e-6·(1 + |optimum|), "regret_mean", "regret_median"}.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    fop = Eq25Fop(sim, K=theta.K if theta is not None else 0)
    fop.set_theta(theta)
    n, K = fop.n, fop.lp.theta.shape[0]
    A = sp.csr_matrix(fop.A)
    th, mu = fop.lp.theta, fop.lp.mu
    F, G, regret, opts, failed = [], [], [], [], 0
    for k in range(len(demos)):
        state, qhat = demos.state(k), demos.qhat[k]
        c, rlo, rhi, clo, chi = fop.data(state, qhat)
        sol = fop.lp.solve(c, rlo, rhi, clo, chi)
        xe = fop.x_of(demos.f[k], demos.g[k])
        if not sol.ok:
            failed += 1
            F.append(np.full(fop.E, np.nan))
            G.append(np.full(fop.P, np.nan))
            continue
        opt = sol.objective
        opts.append(opt)
        regret.append(fop.lp.objective(c, xe) - opt)
        # columns [x (n), τ (K), p (n), m (n)]: x − p + m = x_e, min Σ p + m
        up, lo = np.isfinite(rhi), np.isfinite(rlo)

        def zeros(r, w):
            return sp.csr_matrix((r, w))

        A_ub = sp.vstack([sp.hstack([A[up], zeros(int(up.sum()), K + 2 * n)]),
                          sp.hstack([-A[lo], zeros(int(lo.sum()), K + 2 * n)]),
                          sp.hstack([sp.csr_matrix(th), -sp.identity(K), zeros(K, 2 * n)]),
                          sp.hstack([sp.csr_matrix(c.reshape(1, -1)), sp.csr_matrix(np.ones((1, K))),
                                     zeros(1, 2 * n)])],
                         format="csr")
        b_ub = np.r_[rhi[up], -rlo[lo], mu, opt + rel_tol * (1.0 + abs(opt))]
        A_eq = sp.hstack([sp.identity(n), zeros(n, K), -sp.identity(n), sp.identity(n)], format="csr")
        bounds = ([(float(a), None if np.isinf(b) else float(b)) for a, b in zip(clo, chi)]
                  + [(0.0, None)] * (K + 2 * n))
        res = linprog(np.r_[np.zeros(n + K), np.ones(2 * n)], A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=xe,
                      bounds=bounds, method="highs")
        x = res.x[:n] if res.status == 0 else np.r_[sol.x]
        failed += res.status != 0
        F.append(x[fop.sl_f])
        G.append(x[fop.sl_g])
    regret = np.array(regret)
    opt_share = float(np.mean(regret <= 1e-6 * (1.0 + np.abs(opts)))) if len(regret) else float("nan")
    ok = np.all(np.isfinite(np.array(F)), axis=1)
    return {"f": action_metrics(np.array(F)[ok], demos.f[ok]), "g": action_metrics(np.array(G)[ok], demos.g[ok]),
            "failed": failed, "samples": len(demos), "expert_optimal": opt_share,
            "regret_mean": float(regret.mean()) if len(regret) else float("nan"),
            "regret_median": float(np.median(regret)) if len(regret) else float("nan")}


def imitation_table(rows: Sequence[tuple[str, dict]]) -> str:
    """Markdown table of imitation results (Table 5 layout: cosine and Manhattan of f, plus g)."""
    columns = [Column("lower level")] + [Column(h, "right") for h in (
        "reb. flow f: cosine", "f: Manhattan / step", "pax. flow g: cosine", "g: Manhattan / step", "failed")]
    return markdown_table(columns, [[name, f"{m['f']['cosine']:.3f}", f"{m['f']['l1']:.2f}", f"{m['g']['cosine']:.3f}",
                                     f"{m['g']['l1']:.2f}", m["failed"]] for name, m in rows]) + "\n"
