"""The scalable method for Problem (11): alternating convex HiGHS solves, started from a global
solve on a subsample and from random points.

With z fixed, Problem 11 is convex in (θ, ν, φ, λ, w, τ, ε) (the θ-step); with (θ, ν, φ) fixed it
separates into one LP per sample, the best dual (the z-step, dual.best_duals). Both are solved as
single block-structured sparse LPs by HiGHS; the θ-step's squares of (11a) by cutting planes on
warm-started LPs (HiGHS' QP solver stalls on these degenerate QPs; its simplex does not).
Candidates are scored by (11a) with gaps re-evaluated on all samples.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from . import highs
from .data import Features, bar, coo, objective
from .dual import best_duals, exact_gaps
from .problem11 import default_bounds, fit_global

#: θ-step LPs with more columns than this use HiGHS' interior point method
IPM_MIN_COLUMNS = 20_000


def _weighted(preps, phi):
    return preps if phi.size == 0 or not np.any(phi) else [s.with_weights(phi) for s in preps]


#: Kelley rounds (cut rows added, simplex warm-started) for the squared objective of (11a)
SQUARED_MAX_ROUNDS = 40
SQUARED_REL_TOL = 1e-7


def theta_step(preps, Z, K, rho, theta_bound, nu_bound, mu: float | None, features: Features | None = None,
               time_limit_s=None, squared: bool = False, eps_hint=None):
    """Problem 11 with z fixed: convex in (θ, ν, φ, λ, w, τ, ε); solved by HiGHS' LP solvers.

    squared=False: objective Σ_t ε_t + μ Σ_t ‖e_t‖₁ + ρ Σ_k ‖θ_k‖₁ + κ Σ_j |φ_j|, the L1 surrogate
    of (11a). squared=True: (11a) itself, Σ_t ε_t² + ρ Σ_k ‖θ_k‖² + κ Σ_j φ_j² (+ μ Σ_t ‖e_t‖₁),
    by Kelley's cutting planes: each square x² is an epigraph column r ≥ 2ax − a², cut rows are
    added where r < x² and the LP is re-solved warm-started (HiGHS' active-set QP solver stalls
    on these degenerate QPs; its simplex does not). eps_hint (T,): where to place the first cuts.
    With mu=None (11c) holds exactly (e ≡ 0). Columns: θ (K·n), ν (K), r_θ (K·n), φ (J), r_φ (J),
    then per sample λ, w, τ (K), ε, e⁺ (n), e⁻ (n) [, r_ε]. Returns (θ, ν, φ, ε) or None.
    """
    n = preps[0].n
    J = features.J if features is not None else 0
    T = len(preps)
    rows = highs.Rows()
    ith = np.arange(K * n).reshape(K, n)
    inu = K * n + np.arange(K)
    iab = K * n + K + np.arange(K * n)
    iphi = 2 * K * n + K + np.arange(J)
    iphab = 2 * K * n + K + J + np.arange(J)
    off = 2 * K * n + K + 2 * J
    rho_w = features.rho if J else 0.0
    cost = [np.zeros(K * n + K), np.full(K * n, rho), np.zeros(J), np.full(J, rho_w)]
    lo = [np.full(K * n, -theta_bound), np.full(K, -nu_bound), np.zeros(K * n)]
    hi = [np.full(K * n, theta_bound), np.full(K, nu_bound), np.full(K * n, theta_bound ** 2 if squared else theta_bound)]
    if J:
        wmax = np.maximum(np.abs(features.lo), np.abs(features.hi))
        lo += [features.lo, np.zeros(J)]
        hi += [features.hi, wmax ** 2 if squared else wmax]
    if not squared:
        if K:   # |θ| ≥ ±θ
            ar = np.arange(K * n)
            rows.block(K * n, np.r_[ar, ar], np.r_[iab, ith.ravel()], np.r_[np.ones(K * n), -np.ones(K * n)], 0.0, np.inf)
            rows.block(K * n, np.r_[ar, ar], np.r_[iab, ith.ravel()], np.r_[np.ones(K * n), np.ones(K * n)], 0.0, np.inf)
        if J and rho_w:
            ar = np.arange(J)
            rows.block(J, np.r_[ar, ar], np.r_[iphab, iphi], np.r_[np.ones(J), -np.ones(J)], 0.0, np.inf)
            rows.block(J, np.r_[ar, ar], np.r_[iphab, iphi], np.r_[np.ones(J), np.ones(J)], 0.0, np.inf)
    ehi = np.inf if mu is not None else 0.0
    ieps, isq = [], []
    ar_n = np.arange(n)
    th_k, th_i = np.nonzero(np.ones((K, n)))
    g_j, g_i = np.nonzero(np.ones((J, n)))
    per_extra = 1 if squared else 0
    for t, s in enumerate(preps):
        m, p = s.m, s.p
        il = off + np.arange(m)
        iw = off + m + np.arange(p)
        it = off + m + p + np.arange(K)
        ie = off + m + p + K
        ir = ie + 1 + np.arange(2 * n)
        ieps.append(ie)
        cost += [np.zeros(m + p + K), [0.0 if squared else 1.0], np.full(2 * n, mu or 0.0)]
        lo += [np.zeros(m), np.full(p, -np.inf), np.zeros(K), [0.0], np.zeros(2 * n)]
        hi += [np.full(m, np.inf), np.full(p, np.inf), np.full(K, np.inf), [np.inf], np.full(2 * n, ehi)]
        if squared:
            isq.append(ie + 1 + 2 * n)
            cost.append([1.0])
            lo.append([0.0])
            hi.append([np.inf])
        z = Z[t]
        # (11c): Hᵀλ + Bᵀw + Σ_k z_k θ_k + Σ_j φ_j G_j − e⁺ + e⁻ = −(c + 2Pu)
        hr, hc, hv = coo(s.H)
        br, bc, bv = coo(s.B)
        rows.block(n, np.r_[hc, bc, th_i, g_i, ar_n, ar_n],
                   np.r_[il[hr], iw[br], ith[th_k, th_i], iphi[g_j], ir[:n], ir[n:]],
                   np.r_[hv, bv, z[th_k], s.G[g_j, g_i], -np.ones(n), np.ones(n)], -s.grad, -s.grad)
        # (11d): ε − slackᵀλ − eq_resᵀw − Σ τ_k + Σ_k z_k (uᵀθ_k − ν_k) = 0
        rows.add(np.r_[ie, il, iw, it, ith.ravel(), inu],
                 np.r_[1.0, -s.slack, -s.eq_res, -np.ones(K), np.outer(z, s.u).ravel(), -z], 0.0, 0.0)
        if K:   # (11e): τ_k − uᵀθ_k + ν_k ≥ 0
            rows.block(K, np.r_[np.arange(K), th_k, np.arange(K)], np.r_[it, ith[th_k, th_i], inu],
                       np.r_[np.ones(K), -s.u[th_i], np.ones(K)], 0.0, np.inf)
        off += m + p + K + 1 + 2 * n + per_extra
    A, rlo, rhi = rows.matrix(off)
    cost, lo, hi = np.concatenate(cost), np.concatenate(lo), np.concatenate(hi)
    ieps = np.array(ieps, dtype=np.int64)
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
    h, _ = highs.build(cost, A, rlo, rhi, lo, hi, ipm=off > IPM_MIN_COLUMNS and not squared,
                       time_limit_s=time_limit_s)
    if squared:
        # the squared variables x with their epigraph columns r and weights: ε (1), θ (ρ), φ (κ)
        xs = np.r_[ieps, ith.ravel(), iphi]
        rs = np.r_[np.array(isq, dtype=np.int64), iab, iphab]
        hint = np.full(T, 1.0) if eps_hint is None else np.maximum(np.asarray(eps_hint, float), 1e-6)
        first = np.r_[hint, np.full(K * n, 0.25 * theta_bound), (wmax / 4 if J else np.zeros(0))]
        _add_cuts(h, xs, rs, first, off)
        _add_cuts(h, xs[T:], rs[T:], -first[T:], off)
        x = None
        for _ in range(SQUARED_MAX_ROUNDS):
            st, x, _ = highs.run(h)
            if x is None:
                return None
            viol = x[xs] ** 2 - x[rs]
            total = float(np.sum(x[rs]))
            if np.sum(np.maximum(viol, 0.0)) <= SQUARED_REL_TOL * max(total, 1e-9) + 1e-14:
                break
            bad = viol > 0.1 * SQUARED_REL_TOL * max(total, 1e-9) / max(len(xs), 1)
            _add_cuts(h, xs[bad], rs[bad], x[xs[bad]], off)
            if deadline is not None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                h.setOptionValue("time_limit", float(max(left, 0.1)))
    else:
        st, x, _ = highs.run(h)
    if x is None:
        return None
    phi = np.clip(x[iphi], features.lo, features.hi) if J else np.zeros(0)
    return (np.clip(x[:K * n], -theta_bound, theta_bound).reshape(K, n),
            np.clip(x[K * n:K * n + K], -nu_bound, nu_bound), phi, x[ieps])


def _add_cuts(h, xs, rs, at, ncols) -> None:
    """Tangent cuts r ≥ 2a·x − a² of x² at x = a (rows r − 2a·x ≥ −a²)."""
    import scipy.sparse as sp
    if len(xs) == 0:
        return
    at = np.asarray(at, float)
    k = len(xs)
    A = sp.csr_matrix((np.r_[np.ones(k), -2.0 * at], (np.r_[np.arange(k), np.arange(k)], np.r_[rs, xs])),
                      shape=(k, ncols))
    highs.add_rows(h, A, -at ** 2, np.full(k, np.inf))


def surrogate(eps, resid_l1, mu, theta, rho, phi, features) -> float:
    """The objective the alternation decreases: (11a) Σ ε_t² + ρ Σ‖θ_k‖² + κ Σ φ_j², plus μ Σ‖e_t‖₁
    while (11c) is still penalised. Both steps decrease it (the z-step minimises each ε_t)."""
    j = float(np.sum(np.asarray(eps) ** 2) + (mu or 0.0) * resid_l1 + rho * np.sum(np.asarray(theta) ** 2))
    if features is not None and features.J:
        j += features.rho * float(np.sum(np.asarray(phi) ** 2))
    return j


def refine(preps, th, nu, phi, rho, theta_bound, nu_bound, mu_schedule, uscale, max_iter, tol, deadline,
           history, tag, progress=False, features: Features | None = None):
    """Alternate best duals (z-step) and θ-steps along the μ schedule (None = exact (11c))."""
    status = "converged"
    pbar = None
    if progress:
        from tqdm.auto import tqdm
        pbar = tqdm(desc=f"alternating ({tag})", unit="step", file=sys.stderr, leave=False,
                    disable=not sys.stderr.isatty())
    try:
        for mu_rel in mu_schedule:
            mu = None if mu_rel is None else mu_rel * uscale
            j_prev = np.inf
            for it in range(max_iter):
                left = deadline - time.perf_counter()
                if left <= 0:
                    return th, nu, phi, "time_limit"
                duals = best_duals(_weighted(preps, phi), th, nu, mu=mu, time_limit_s=left)   # z-step
                if duals is None:
                    break   # (11c) infeasible at this θ: stay with the penalised solution
                j = surrogate(duals["eps"], np.abs(duals["resid"]).sum(), mu, th, rho, phi, features)
                history.append((tag, mu_rel, it, j))
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(mu="exact" if mu_rel is None else f"{mu_rel:g}", objective=f"{j:.4g}")
                if np.isfinite(j_prev) and j_prev - j <= tol * max(j_prev, 1e-12):
                    break
                j_prev = j
                step = theta_step(preps, duals["z"], th.shape[0], rho, theta_bound, nu_bound, mu, features,
                                  deadline - time.perf_counter(), squared=True, eps_hint=duals["eps"])  # θ-step
                if step is None:
                    break
                th, nu, phi, _ = step
    finally:
        if pbar is not None:
            pbar.close()
    return th, nu, phi, status


def fit_alternating(preps, K, rho, time_limit_s, theta_bound, nu_bound, seed, progress,
                    restarts=4, max_iter=30, tol=1e-4, subsample=30, subsample_time_frac=0.3,
                    subsample_time_max_s=60.0, mu_schedule=(1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4),
                    features: Features | None = None):
    """Scalable fit: candidates from a global solve on a subsample and random starts, refined on all data.

    With z fixed, exact (11c) pins θ (n equations per sample for K·n unknowns), so alternating on
    Problem 11 itself barely moves from where it starts, and from random starts it stalls in poor
    local minima. Hence the candidates:
      1. Problem 11 solved globally (SCIP) on `subsample` random samples (a fraction
         subsample_time_frac of the time limit, at most subsample_time_max_s): the ReLU structure
         is shared by all samples, so a small subsample locates it; then refined on all samples by
         exact alternation and, separately, by the penalised alternation of 2. started from
         μ = mu_schedule[1].
      2. `restarts` random starts, alternating on the penalised L1 surrogate
             min Σ_t ε_t + μ Σ_t ‖e_t‖₁ + ρ Σ_k ‖θ_k‖₁,  e_t the residual of (11c),
         (both blocks are LPs, each step decreases it) with μ raised along mu_schedule (relative
         to the size of the actions, as ε ~ ‖e‖·‖Δu‖) until (11c) holds, then exactly.
    Candidates are scored by (11a) Σ ε_t² + ρ Σ ‖θ_k‖² with re-evaluated gaps on all samples.
    Returns (θ, ν, φ, status, None, seconds, info).
    """
    rng = np.random.default_rng(seed)
    T, n = len(preps), preps[0].n
    J = features.J if features is not None else 0
    nu_bound, _ = default_bounds(preps, K, theta_bound, nu_bound, 1.0, features)
    U = np.array([s.u for s in preps])
    G = np.array([s.grad for s in preps])
    gscale = float(np.median(np.linalg.norm(G, axis=1))) or 1.0
    uscale = float(np.median(np.linalg.norm(U, axis=1))) or 1.0
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    best, history, info = None, [], {"restarts": restarts}
    phi0 = np.clip(np.zeros(J), features.lo, features.hi) if J else np.zeros(0)

    def consider(th, nu, phi, status, tag):
        nonlocal best
        eps, _ = exact_gaps(_weighted(preps, phi), th, nu)
        reg = features.rho * float(np.sum(phi ** 2)) if J else 0.0
        score = (int(np.sum(np.isnan(eps))), objective(np.nan_to_num(eps), th, rho) + reg)
        history.append((tag, "final", score[0], score[1]))
        if best is None or score < best[0]:
            best = (score, th.copy(), nu.copy(), phi.copy(), status, tag)

    if subsample and subsample > 0:
        idx = np.sort(rng.choice(T, size=min(subsample, T), replace=False))
        try:
            th, nu, phi, st, lb, _, ginfo = fit_global([preps[i] for i in idx], K, rho,
                                                       min(subsample_time_frac * time_limit_s, subsample_time_max_s),
                                                       1e-4, theta_bound, nu_bound, None, progress, features)
            info.update(subsample=len(idx), subsample_status=st, subsample_bound=lb)
            consider(th, nu, phi, "converged", "subsample")
            if T > len(idx):
                # exact alternation keeps the subsample's structure; the penalised one from a small μ
                # may move it to fit the other samples better: keep the better of both
                for tag, sched in (("subsample+exact", (None,)),
                                   ("subsample+penalised", tuple(mu_schedule[1:]) + (None,))):
                    th1, nu1, phi1, _ = refine(preps, th, nu, phi, rho, theta_bound, nu_bound, sched, uscale,
                                               max_iter, tol, deadline, history, tag, progress, features)
                    consider(th1, nu1, phi1, "converged", tag)
        except RuntimeError as e:
            info["subsample_error"] = str(e)
    for r in bar(range(restarts), progress, "alternating restarts"):
        if time.perf_counter() > deadline:
            break
        # random θ with the size of the gradients the ReLU terms must cancel; kinks ν_k through
        # random expert actions so every term starts active on part of the data
        th = rng.normal(size=(K, n))
        th *= (gscale * rng.uniform(0.5, 2.0, size=(K, 1))) / np.maximum(np.linalg.norm(th, axis=1, keepdims=True), 1e-12)
        th = np.clip(th, -theta_bound, theta_bound)
        nu = np.clip(np.einsum("kn,kn->k", th, U[rng.integers(0, T, size=K)]), -nu_bound, nu_bound)
        th, nu, phi, st = refine(preps, th, nu, phi0, rho, theta_bound, nu_bound, tuple(mu_schedule) + (None,),
                                 uscale, max_iter, tol, deadline, history, f"restart {r}", progress and T >= 1000,
                                 features)
        consider(th, nu, phi, st, r)
    if best is None:
        raise RuntimeError("alternating method found no candidate within the time limit")
    _, th, nu, phi, status, tag = best
    if time.perf_counter() > deadline:
        status = "time_limit"
    info.update(best_candidate=tag, history=history)
    return th, nu, phi, status, None, time.perf_counter() - t0, info


def fit_convex(preps, rho, theta_bound, nu_bound, time_limit_s, features: Features, uscale: float | None = None,
               squared: bool = True):
    """K = 0 (learned weights only): Problem 11 has no bilinear term left (z multiplies nothing), so
    it is one convex problem: (11a)'s QP Σ ε_t² + κ Σ φ_j² by HiGHS (squared=True), or its L1
    surrogate LP, with exact (11c); if no φ in the box admits (11c) on every sample, the (11c) residual is penalised
    with μ raised until it vanishes. Returns (θ (0×n), ν (0), φ, status, None, seconds, info)."""
    t0 = time.perf_counter()
    T, n = len(preps), preps[0].n
    Z = np.zeros((T, 0))
    th, nu = np.zeros((0, n)), np.zeros(0)
    info = {"schedule": []}
    if uscale is None:
        uscale = float(np.median([np.linalg.norm(s.u) for s in preps])) or 1.0
    for mu_rel in (None, 1.0, 1e2, 1e4):
        left = t0 + time_limit_s - time.perf_counter()
        if left <= 0:
            break
        step = theta_step(preps, Z, 0, rho, theta_bound, nu_bound, None if mu_rel is None else mu_rel * uscale,
                          features, left, squared=squared)
        info["schedule"].append("exact" if mu_rel is None else mu_rel)
        if step is not None:
            return th, nu, step[2], "optimal" if mu_rel is None else "optimal_penalised", None, \
                time.perf_counter() - t0, info
    raise RuntimeError("the weights-only inverse problem (K = 0) could not be solved")

