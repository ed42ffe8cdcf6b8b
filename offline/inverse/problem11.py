"""Problem (11) in Pyomo, solved globally by SCIP's spatial branch-and-bound.

Variables: θ (K×n), ν (K), learned weights φ (J), and per sample z (K) ∈ [0,1] (y = 1 − z, 11b),
λ ≥ 0, w, τ ≥ 0, ε ≥ 0. The only bilinear terms are z_kt·θ_k in (11c) and z_kt·ν_k in (11d):
the weights φ enter (11c) and (11d) linearly because the expert action u_t is data. Every
variable is boxed (SCIP's spatial branch-and-bound needs finite bounds on bilinear factors).
"""
from __future__ import annotations

import logging
import math
import sys
import time

import numpy as np

from .data import Features, coo, row_norms


def default_bounds(preps, K, theta_bound, nu_bound, dual_bound, features: Features | None = None):
    """Boxes of ν and of the duals λ, w that lose no fit on the data (see comments)."""
    u1 = max(float(np.abs(s.u).sum()) for s in preps)
    if nu_bound is None:
        # a ν beyond ±θ_bound·max‖u_t‖₁ makes the term inactive (or linear) on every sample, like
        # one at the bound does: the box loses no fit on the data
        nu_bound = theta_bound * u1 + 1.0
    if dual_bound is None:
        gmax = max(float(np.abs(s.grad).max(initial=0)) for s in preps)
        if features is not None and features.J:
            wmax = np.maximum(np.abs(features.lo), np.abs(features.hi))
            gmax += max(float((wmax[:, None] * np.abs(s.G)).sum(axis=0).max(initial=0)) for s in preps)
        norms = [row_norms(M) for s in preps for M in (s.H, s.B) if M.shape[0]]
        norms = np.concatenate(norms) if norms else np.ones(1)
        nmin = float(norms[norms > 1e-12].min()) if np.any(norms > 1e-12) else 1.0
        # (11c): Hᵀλ + Bᵀw = −(c + 2Pu) − Σ z_k θ_k, whose size is ≤ ‖c + 2Pu‖ + K·θ_bound per entry
        dual_bound = 10.0 * (gmax + K * theta_bound * math.sqrt(preps[0].n)) / nmin
    return nu_bound, dual_bound


def build_problem11(preps, K, rho, theta_bound, nu_bound, dual_bound, features: Features | None = None):
    """Pyomo model of Problem 11 with explicit g and finite boxes on every variable."""
    import pyomo.environ as pyo
    T, n = len(preps), preps[0].n
    J = features.J if features is not None else 0
    mdl = pyo.ConcreteModel(name="problem11")
    mdl.T = pyo.RangeSet(0, T - 1)
    mdl.K = pyo.RangeSet(0, K - 1) if K else pyo.Set(initialize=[])
    mdl.I = pyo.RangeSet(0, n - 1)
    mdl.J = pyo.RangeSet(0, J - 1) if J else pyo.Set(initialize=[])
    mdl.IN = pyo.Set(dimen=2, initialize=[(t, j) for t in range(T) for j in range(preps[t].m)])
    mdl.EQ = pyo.Set(dimen=2, initialize=[(t, j) for t in range(T) for j in range(preps[t].p)])
    tb, nb, db = theta_bound, nu_bound, dual_bound
    tau_max = [tb * float(np.abs(s.u).sum()) + nb for s in preps]
    mdl.theta = pyo.Var(mdl.K, mdl.I, bounds=(-tb, tb), initialize=0.0)
    mdl.nu = pyo.Var(mdl.K, bounds=(-nb, nb), initialize=0.0)
    if J:
        lo, hi = features.lo, features.hi
        mdl.phi = pyo.Var(mdl.J, bounds=lambda m_, j: (float(lo[j]), float(hi[j])),
                          initialize=lambda m_, j: float(np.clip(0.0, lo[j], hi[j])))
    mdl.z = pyo.Var(mdl.K, mdl.T, bounds=(0.0, 1.0), initialize=0.0)        # (11f), (11b): y = 1 − z ≥ 0
    mdl.lam = pyo.Var(mdl.IN, bounds=(0.0, db), initialize=0.0)              # (11f)
    mdl.w = pyo.Var(mdl.EQ, bounds=(-db, db), initialize=0.0)
    mdl.tau = pyo.Var(mdl.K, mdl.T, bounds=lambda m_, k, t: (0.0, tau_max[t]), initialize=0.0)  # (11f)
    eps_max = []
    wmax = np.maximum(np.abs(features.lo), np.abs(features.hi)) if J else np.zeros(0)
    for t, s in enumerate(preps):
        # |f(u_t) − g| ≤ |cᵀu + 2uᵀPu| + Σ_j |φ_j||G_jᵀu| + Σ τ_max + K ν_max + λ_max ‖b‖₁ + w_max ‖a − x̂‖₁
        eps_max.append(abs(float(s.grad @ s.u)) + float(wmax @ np.abs(s.G @ s.u)) + K * (tau_max[t] + nb)
                       + db * (np.abs(s.b).sum() + np.abs(s.a - s.xhat).sum()) + 1.0)
    mdl.eps = pyo.Var(mdl.T, bounds=lambda m_, t: (0.0, eps_max[t]), initialize=0.0)  # ε ≥ 0: weak duality

    # (11b) 1 − z_kt − y_kt = 0 with y_kt ≥ 0: y is eliminated, y_kt = 1 − z_kt, hence z_kt ≤ 1 above.
    # Hᵀ and Bᵀ column lists per sample (sparse-friendly)
    HT = []
    for s in preps:
        cols = {i: ([], []) for i in range(n)}
        for M, kind in ((s.H, "lam"), (s.B, "w")):
            r, c, v = coo(M)
            for j, i, val in zip(r.tolist(), c.tolist(), v.tolist()):
                cols[i][0 if kind == "lam" else 1].append((j, val))
        HT.append(cols)

    def stationarity(m_, t, i):   # (11c) c + 2Pu_t + Σ_j φ_j G_j + Hᵀλ + Bᵀw + Σ_k z_kt θ_k = 0
        s = preps[t]
        lam_terms, w_terms = HT[t][i]
        return (float(s.grad[i])
                + sum(float(s.G[j, i]) * m_.phi[j] for j in m_.J if s.G[j, i] != 0)
                + sum(val * m_.lam[t, j] for j, val in lam_terms)
                + sum(val * m_.w[t, j] for j, val in w_terms)
                + sum(m_.z[k, t] * m_.theta[k, i] for k in m_.K)) == 0
    mdl.c11c = pyo.Constraint(mdl.T, mdl.I, rule=stationarity)

    def gap(m_, t):
        # (11d) g + ε = f(u_t): with g = −u_tᵀP(φ)u_t − Σ_k z_kt ν_k − λᵀb + wᵀ(a − x̂) and
        # f(u_t) = c(φ)ᵀu_t + u_tᵀP(φ)u_t + Σ_k τ_kt,
        # i.e. ε = (c + 2Pu)ᵀu + Σ_j φ_j G_jᵀu + Σ τ + Σ zν + λᵀb − wᵀ(a − x̂)
        s = preps[t]
        uRu = [float(s.u @ R.matvec(s.u)) for R in s.feat_quad]        # u_tᵀR_j u_t
        qu = [float(q @ s.u) for q in s.feat_lin]                       # q_jᵀu_t
        g = (-float(s.u @ s.P.matvec(s.u)) - sum(uRu[j] * m_.phi[j] for j in m_.J)
             - sum(m_.z[k, t] * m_.nu[k] for k in m_.K)
             - sum(float(s.b[j]) * m_.lam[t, j] for j in range(s.m))
             + sum(float(s.a[j] - s.xhat[j]) * m_.w[t, j] for j in range(s.p)))
        f = s.f_smooth + sum((qu[j] + uRu[j]) * m_.phi[j] for j in m_.J) + sum(m_.tau[k, t] for k in m_.K)
        return g + m_.eps[t] == f
    mdl.c11d = pyo.Constraint(mdl.T, rule=gap)

    def epigraph(m_, k, t):       # (11e) τ_kt ≥ θ_kᵀu_t − ν_k
        u = preps[t].u
        return m_.tau[k, t] >= sum(float(u[i]) * m_.theta[k, i] for i in m_.I if u[i] != 0) - m_.nu[k]
    mdl.c11e = pyo.Constraint(mdl.K, mdl.T, rule=epigraph)

    # (11a) Σ_t ε_t² + ρ Σ_k ‖θ_k‖² (+ ρ_φ Σ_j φ_j²)
    reg = rho * sum(mdl.theta[k, i] ** 2 for k in mdl.K for i in mdl.I)
    if J and features.rho:
        reg = reg + features.rho * sum(mdl.phi[j] ** 2 for j in mdl.J)
    mdl.obj = pyo.Objective(expr=sum(mdl.eps[t] ** 2 for t in mdl.T) + reg)
    return mdl


def fit_global(preps, K, rho, time_limit_s, mip_gap, theta_bound, nu_bound, dual_bound, progress,
               features: Features | None = None, node_limit: int | None = None):
    """Solve Problem 11 with SCIP. Returns (θ, ν, φ, status, lower bound, seconds, info).
    `node_limit`: also stop after this many branch-and-bound nodes (deterministic, unlike time)."""
    import pyomo.environ as pyo
    nu_bound, dual_bound = default_bounds(preps, K, theta_bound, nu_bound, dual_bound, features)
    mdl = build_problem11(preps, K, rho, theta_bound, nu_bound, dual_bound, features)
    n = preps[0].n
    J = features.J if features is not None else 0
    solver = pyo.SolverFactory("scip_direct")
    if progress:
        print(f"[inverse] Problem 11 with SCIP: T={len(preps)} K={K} J={J} "
              f"({len(preps) * K * (n + 1)} bilinear terms), time limit {time_limit_s:g} s", file=sys.stderr)
    t0 = time.perf_counter()
    options = {"limits/gap": float(mip_gap)}
    if node_limit is not None:
        if not (isinstance(node_limit, (int, np.integer)) and node_limit >= 1):
            raise ValueError(f"node_limit must be an integer ≥ 1, got {node_limit!r}")
        options["limits/nodes"] = int(node_limit)
    res = solver.solve(mdl, timelimit=float(time_limit_s), options=options, load_solutions=False)
    dt = time.perf_counter() - t0
    tc = str(res.solver.termination_condition)
    status = {"maxTimeLimit": "time_limit", "maxIterations": "node_limit"}.get(tc, tc)
    lb = res.problem.lower_bound
    quiet = logging.getLogger("pyomo.core")   # "loading a solution with an 'aborted' status" at time limit
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        mdl.solutions.load_from(res)
    except Exception as e:
        if "nfeasible" in tc:
            raise RuntimeError(f"Problem 11 is infeasible for K={K}, theta_bound={theta_bound}: no θ lets every "
                               f"expert action satisfy stationarity (11c); increase K or theta_bound") from e
        raise RuntimeError(f"SCIP found no feasible point of Problem 11 within {time_limit_s:g} s "
                           f"(status {tc})") from e
    finally:
        quiet.setLevel(level)
    if mdl.eps[0].value is None:
        raise RuntimeError(f"SCIP returned no solution for Problem 11 (status {tc})")
    theta = np.array([[pyo.value(mdl.theta[k, i]) for i in range(n)] for k in range(K)]).reshape(K, n)
    nu = np.array([pyo.value(mdl.nu[k]) for k in range(K)])
    phi = np.array([pyo.value(mdl.phi[j]) for j in range(J)]) if J else np.zeros(0)
    if J:
        phi = np.clip(phi, features.lo, features.hi)
    solver_eps = np.array([pyo.value(mdl.eps[t]) for t in range(len(preps))])
    lb = float(lb) if lb is not None and np.isfinite(float(lb)) else None
    return theta, nu, phi, status, lb, dt, {"solver_objective": float(pyo.value(mdl.obj)),
                                            "solver_eps_max": float(solver_eps.max()),
                                            "nu_bound": nu_bound, "dual_bound": dual_bound}
