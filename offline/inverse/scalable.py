"""The scalable method for Problem (11): alternating convex HiGHS solves, started from a global
solve on a subsample and from random points.

With z fixed, Problem 11 is convex in (θ, ν, φ, λ, w, τ, ε) (the θ-step); with (θ, ν, φ) fixed it
separates into one LP per sample, the best dual (the z-step, dual.best_duals). Both are solved as
single block-structured sparse LPs by HiGHS; the θ-step's squares of (11a) by cutting planes on
warm-started LPs (HiGHS' QP solver stalls on these degenerate QPs; its simplex does not).
Candidates are scored by (11a) with gaps re-evaluated on all samples.
"""
from __future__ import annotations

import time

import numpy as np

from hiopt_ros.progress import progress_bar

from . import highs, separable
from .data import Features, bar, objective
from .dual import best_duals, exact_gaps
from .problem11 import default_bounds, fit_global
from .stack import Stack

#: θ-step LPs with more columns than this use HiGHS' interior point method
IPM_MIN_COLUMNS = 20_000


def _weighted(st: Stack, phi) -> Stack:
    return st if phi.size == 0 or not np.any(phi) else st.with_weights(phi)


#: Kelley rounds (cut rows added, simplex warm-started) for the squared objective of (11a)
SQUARED_MAX_ROUNDS = 40
SQUARED_REL_TOL = 1e-5   # the LP feasibility tolerance (1e-7 per cut row) makes smaller ones unreachable


def theta_step(st: Stack, Z, K, rho, theta_bound, nu_bound, mu: float | None, features: Features | None = None,
               time_limit_s=None, squared: bool = False, eps_hint=None):
    """Problem 11 with z fixed: convex in (θ, ν, φ, λ, w, τ, ε); solved by HiGHS' LP solvers.

    squared=False: objective Σ_t ε_t + μ Σ_t ‖e_t‖₁ + ρ Σ_k ‖θ_k‖₁ + κ Σ_j |φ_j|, the L1 surrogate
    of (11a). squared=True: (11a) itself, Σ_t ε_t² + ρ Σ_k ‖θ_k‖² + κ Σ_j φ_j² (+ μ Σ_t ‖e_t‖₁),
    by Kelley's cutting planes: each square x² is an epigraph column r ≥ 2ax − a², cut rows are
    added where r < x² and the LP is re-solved warm-started (HiGHS' active-set QP solver stalls
    on these degenerate QPs; its simplex does not). eps_hint (T,): where to place the first cuts.
    With mu=None (11c) holds exactly (e ≡ 0). Columns: θ (K·n), ν (K), r_θ (K·n), φ (J), r_φ (J),
    then per sample λ (m_t), w (p_t), τ (K), ε, e⁺ (n), e⁻ (n) [, r_ε]; built by offset arithmetic
    on the stacked rows (no loop over samples). Returns (θ, ν, φ, ε) or None.
    """
    n, T = st.n, st.T
    J = features.J if features is not None else 0
    H, B = st.H, st.B
    m, p = H.count, B.count
    ith = np.arange(K * n).reshape(K, n)
    inu = K * n + np.arange(K)
    iab = K * n + K + np.arange(K * n)
    iphi = 2 * K * n + K + np.arange(J)
    iphab = 2 * K * n + K + J + np.arange(J)
    g0 = 2 * K * n + K + 2 * J
    rho_w = features.rho if J else 0.0
    sq = 1 if squared else 0
    W = m + p + K + 1 + 2 * n + sq
    off = g0 + np.r_[0, np.cumsum(W)][:-1]
    ncol = g0 + int(W.sum())
    ie = off + m + p + K
    cost = np.zeros(ncol)
    lo = np.zeros(ncol)
    hi = np.full(ncol, np.inf)
    lo[:K * n], hi[:K * n] = -theta_bound, theta_bound
    lo[inu], hi[inu] = -nu_bound, nu_bound
    cost[iab] = rho
    hi[iab] = theta_bound ** 2 if squared else theta_bound
    wmax = np.maximum(np.abs(features.lo), np.abs(features.hi)) if J else np.zeros(0)
    if J:
        lo[iphi], hi[iphi] = features.lo, features.hi
        cost[iphab] = rho_w
        hi[iphab] = wmax ** 2 if squared else wmax
    iw = off[B.sample] + m[B.sample] + B.local
    lo[iw] = -np.inf
    cost[ie] = 0.0 if squared else 1.0
    ir = (ie[:, None] + 1 + np.arange(2 * n)).ravel()
    cost[ir] = mu or 0.0
    if mu is None:
        hi[ir] = 0.0
    isq = ie + 1 + 2 * n
    if squared:
        cost[isq] = 1.0
    rows = highs.Rows()
    if not squared:   # |θ| ≥ ±θ, |φ| ≥ ±φ
        for absc, valc, cnt in ((iab, ith.ravel(), K * n), (iphab, iphi, J if rho_w else 0)):
            if cnt:
                ar = np.arange(cnt)
                cols = np.r_[absc[:cnt], valc[:cnt]]
                rows.block(cnt, np.r_[ar, ar], cols, np.r_[np.ones(cnt), -np.ones(cnt)], 0.0, np.inf)
                rows.block(cnt, np.r_[ar, ar], cols, np.r_[np.ones(cnt), np.ones(cnt)], 0.0, np.inf)
    R = n + 1 + K                         # rows per sample: (11c) n, (11d) 1, (11e) K
    t, k, i = np.meshgrid(np.arange(T), np.arange(K), np.arange(n), indexing="ij")
    tj, jj, ij = np.meshgrid(np.arange(T), np.arange(J), np.arange(n), indexing="ij")
    tn, ii = np.repeat(np.arange(T), n), np.tile(np.arange(n), T)
    tK, kK = np.repeat(np.arange(T), K), np.tile(np.arange(K), T)
    hs, bs = H.sample[H.ent_row], B.sample[B.ent_row]
    Z = np.asarray(Z, float).reshape(T, K)
    rr = np.r_[hs * R + H.ent_col, bs * R + B.ent_col,                       # (11c): Hᵀλ, Bᵀw
               (t * R + i).ravel(), (tj * R + ij).ravel(),                     #        Σ z_k θ_k, Σ φ_j G_j
               tn * R + ii, tn * R + ii,                                       #        −e⁺ + e⁻
               np.arange(T) * R + n, H.sample * R + n, B.sample * R + n,      # (11d): ε, −slackᵀλ, −eq_resᵀw
               tK * R + n, (t * R + n).ravel(), tK * R + n,                    #        −Σ τ, z_k uᵀθ_k, −z_k ν_k
               tK * R + n + 1 + kK, (t * R + n + 1 + k).ravel(), tK * R + n + 1 + kK]   # (11e)
    cc = np.r_[off[hs] + H.local[H.ent_row], off[bs] + m[bs] + B.local[B.ent_row],
               ith[k, i].ravel(), iphi[jj].ravel(),
               ie[tn] + 1 + ii, ie[tn] + 1 + n + ii,
               ie, off[H.sample] + H.local, off[B.sample] + m[B.sample] + B.local,
               off[tK] + m[tK] + p[tK] + kK, ith[k, i].ravel(), inu[kK],
               off[tK] + m[tK] + p[tK] + kK, ith[k, i].ravel(), inu[kK]]
    vv = np.r_[H.ent_val, B.ent_val,
               Z[t, k].ravel(), st.G[tj, jj, ij].ravel(),
               -np.ones(T * n), np.ones(T * n),
               np.ones(T), -H.resid, -B.resid,
               -np.ones(T * K), (Z[t, k] * st.U[t, i]).ravel(), -Z.ravel(),
               np.ones(T * K), -st.U[t, i].ravel(), np.ones(T * K)]
    rlo = np.concatenate([-st.grad, np.zeros((T, 1)), np.zeros((T, K))], axis=1).ravel()
    rhi = np.concatenate([-st.grad, np.zeros((T, 1)), np.full((T, K), np.inf)], axis=1).ravel()
    rows.block(T * R, rr, cc, vv, rlo, rhi)
    A, alo, ahi = rows.matrix(ncol)
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
    h, _ = highs.build(cost, A, alo, ahi, lo, hi, ipm=ncol > IPM_MIN_COLUMNS and not squared,
                       time_limit_s=time_limit_s)
    if squared:
        # the squared variables x with their epigraph columns r and weights: ε (1), θ (ρ), φ (κ)
        xs = np.r_[ie, ith.ravel(), iphi]
        rs = np.r_[isq, iab, iphab]
        hint = np.full(T, 1.0) if eps_hint is None else np.maximum(np.asarray(eps_hint, float), 1e-6)
        first = np.r_[hint, np.full(K * n, 0.25 * theta_bound), wmax / 4]
        _add_cuts(h, xs, rs, first, ncol)
        _add_cuts(h, xs, rs, 0.5 * first, ncol)
        _add_cuts(h, xs, rs, 2.0 * first, ncol)
        _add_cuts(h, xs[T:], rs[T:], -first[T:], ncol)
        x = None
        last = None
        for _ in range(SQUARED_MAX_ROUNDS):
            st_, x, obj = highs.run(h)
            if x is None:
                return None
            viol = x[xs] ** 2 - x[rs]
            total = float(np.sum(x[rs]))
            if np.sum(np.maximum(viol, 0.0)) <= SQUARED_REL_TOL * max(total, 1e-9) + 1e-12 or obj == last:
                break
            last = obj
            bad = viol > 0.1 * SQUARED_REL_TOL * max(total, 1e-9) / max(len(xs), 1)
            _add_cuts(h, xs[bad], rs[bad], x[xs[bad]], ncol)
            if deadline is not None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                h.setOptionValue("time_limit", float(max(left, 0.1)))
    else:
        _, x, _ = highs.run(h)
    if x is None:
        return None
    phi = np.clip(x[iphi], features.lo, features.hi) if J else np.zeros(0)
    return (np.clip(x[:K * n], -theta_bound, theta_bound).reshape(K, n),
            np.clip(x[K * n:K * n + K], -nu_bound, nu_bound), phi, x[ie])


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


def _closed_form(st: Stack):
    """The stack's closed-form duals (separable.Duals), cached on it; None if its structure has none."""
    cached = getattr(st, "_closed_form", False)
    if cached is False:
        d = separable.Duals(st)
        cached = d if d.available else None
        st._closed_form = cached
    return cached


def _theta_step(st: Stack, Z, th, nu, phi, rho, theta_bound, nu_bound, mu, features, time_limit_s, eps_hint):
    """The θ-step of (11a): closed-form duals and Gauss–Newton when every row touches one input
    (separable.py), else the LP with cutting planes (theta_step)."""
    duals = _closed_form(st)
    if duals is not None:
        step = separable.theta_step(st, Z, th.shape[0], rho, theta_bound, nu_bound, mu, features,
                                    np.r_[th.ravel(), nu, phi], duals)
        if step is not None:
            return step
    return theta_step(st, Z, th.shape[0], rho, theta_bound, nu_bound, mu, features, time_limit_s,
                      squared=True, eps_hint=eps_hint)


def surrogate(eps, resid_l1, mu, theta, rho, phi, features) -> float:
    """The objective the alternation decreases: (11a) Σ ε_t² + ρ Σ‖θ_k‖² + κ Σ φ_j², plus μ Σ‖e_t‖₁
    while (11c) is still penalised. Both steps decrease it (the z-step minimises each ε_t)."""
    j = float(np.sum(np.asarray(eps) ** 2) + (mu or 0.0) * resid_l1 + rho * np.sum(np.asarray(theta) ** 2))
    if features is not None and features.J:
        j += features.rho * float(np.sum(np.asarray(phi) ** 2))
    return j


#: above this many samples, the candidate search runs on a random subsample of this size, and the
#: best candidate is then refined and scored on every sample
SEARCH_SAMPLES = 2000
#: exact alternations (z-step + θ-step) on every sample after a subsample search
ALL_SAMPLE_REFINEMENTS = 2
#: share of the time limit the subsample search may use when all samples are refined afterwards
SEARCH_TIME_FRAC = 0.6


def refine(st: Stack, th, nu, phi, rho, theta_bound, nu_bound, mu_schedule, uscale, max_iter, tol, deadline,
           history, tag, progress=False, features: Features | None = None):
    """Alternate best duals (z-step) and θ-steps along the μ schedule (None = exact (11c)) on a stack."""
    status = "converged"
    pbar = None
    if progress:
        pbar = progress_bar(desc=f"alternating ({tag})", unit="step", leave=False)
    try:
        for mu_rel in mu_schedule:
            mu = None if mu_rel is None else mu_rel * uscale
            j_prev = np.inf
            for it in range(max_iter):
                left = deadline - time.perf_counter()
                if left <= 0:
                    return th, nu, phi, "time_limit"
                duals = best_duals(_weighted(st, phi), th, nu, mu=mu, time_limit_s=left)   # z-step
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
                step = _theta_step(st, duals["z"], th, nu, phi, rho, theta_bound, nu_bound, mu, features,
                                   deadline - time.perf_counter(), duals["eps"])                 # θ-step
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
                    features: Features | None = None, stack: Stack | None = None,
                    search_samples: int = SEARCH_SAMPLES, refinements: int = ALL_SAMPLE_REFINEMENTS,
                    node_limit: int | None = None):
    """Scalable fit: candidates from a global solve on a subsample and random starts, refined on all data.

    With z fixed, exact (11c) pins θ (n equations per sample for K·n unknowns), so alternating on
    Problem 11 itself barely moves from where it starts, and from random starts it stalls in poor
    local minima. Hence the candidates:
      1. Problem 11 solved globally (SCIP) on `subsample` random samples (a fraction
         subsample_time_frac of the time limit, at most subsample_time_max_s): the ReLU structure
         is shared by all samples, so a small subsample locates it (`node_limit`: also stop SCIP
         after that many branch-and-bound nodes, a budget that does not shrink on a loaded
         machine); then refined by exact
         alternation and, separately, by the penalised alternation of 2. started from μ = mu_schedule[1].
      2. `restarts` random starts, alternating on the penalised objective
             min Σ_t ε_t² + μ Σ_t ‖e_t‖₁ + ρ Σ_k ‖θ_k‖²,  e_t the residual of (11c),
         (each step decreases it) with μ raised along mu_schedule (relative to the size of the
         actions, as ε ~ ‖e‖·‖Δu‖) until (11c) holds, then exactly.
    Candidates, θ = 0 among them, are scored by (11a) Σ ε_t² + ρ Σ ‖θ_k‖² with re-evaluated gaps.
    With more than `search_samples` samples the candidate search runs on a random subsample of that size (a
    fraction SEARCH_TIME_FRAC of the time), and the best candidate is then refined by `refinements`
    exact alternations on every sample (each one z-step and one θ-step over all samples; the
    objective never increases). Returns (θ, ν, φ, status, None, seconds, info).
    """
    rng = np.random.default_rng(seed)
    st_all = stack if stack is not None else Stack.from_preps(preps)
    T, n = st_all.T, st_all.n
    J = features.J if features is not None else 0
    nu_bound, _ = default_bounds(preps, K, theta_bound, nu_bound, 1.0, features)
    gscale = float(np.median(np.linalg.norm(st_all.grad, axis=1))) or 1.0
    uscale = float(np.median(np.linalg.norm(st_all.U, axis=1))) or 1.0
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    info = {"restarts": restarts}
    phi0 = np.clip(np.zeros(J), features.lo, features.hi) if J else np.zeros(0)
    large = search_samples and T > search_samples
    if large:
        search_idx = np.sort(rng.choice(T, size=search_samples, replace=False))
        st, sub_preps = st_all.subset(search_idx), [preps[i] for i in search_idx]
        search_deadline = t0 + SEARCH_TIME_FRAC * time_limit_s
        info["search_samples"] = int(search_samples)
    else:
        st, sub_preps, search_deadline = st_all, list(preps), deadline
    best, history = None, []
    phase = {}
    mark = [time.perf_counter()]

    def lap(name):
        now = time.perf_counter()
        phase[name] = round(phase.get(name, 0.0) + now - mark[0], 2)
        mark[0] = now

    def consider(th, nu, phi, status, tag):
        nonlocal best
        eps, _ = exact_gaps(_weighted(st, phi), th, nu)
        reg = features.rho * float(np.sum(phi ** 2)) if J else 0.0
        score = (int(np.sum(np.isnan(eps))), objective(np.nan_to_num(eps), th, rho) + reg)
        history.append((tag, "final", score[0], score[1], round(time.perf_counter() - t0, 2)))
        if best is None or score < best[0]:
            best = (score, th.copy(), nu.copy(), phi.copy(), status, tag)

    # θ = 0 (the unchanged lower level) is always a candidate: a search cut short by its time limit
    # must never return a θ that explains the demonstrations worse than no θ at all (AMoD, 300 s:
    # mean gap 133 against 21 at θ = 0)
    consider(np.zeros((K, n)), np.zeros(K), phi0.copy(), "converged", "theta=0")
    if subsample and subsample > 0:
        idx = np.sort(rng.choice(st.T, size=min(subsample, st.T), replace=False))
        try:
            th, nu, phi, status, lb, _, ginfo = fit_global(
                [sub_preps[i] for i in idx], K, rho, min(subsample_time_frac * time_limit_s, subsample_time_max_s),
                1e-4, theta_bound, nu_bound, None, progress, features, node_limit)
            info.update(subsample=len(idx), subsample_status=status, subsample_bound=lb)
            consider(th, nu, phi, "converged", "subsample")
            lap("global_subsample")
            if st.T > len(idx):
                # exact alternation keeps the subsample's structure; the penalised one from a small μ
                # may move it to fit the other samples better: keep the better of both
                for tag, sched in (("subsample+exact", (None,)),
                                   ("subsample+penalised", tuple(mu_schedule[1:]) + (None,))):
                    th1, nu1, phi1, _ = refine(st, th, nu, phi, rho, theta_bound, nu_bound, sched, uscale,
                                               max_iter, tol, search_deadline, history, tag, progress, features)
                    consider(th1, nu1, phi1, "converged", tag)
            lap("refine_subsample_candidate")
        except RuntimeError as e:
            info["subsample_error"] = str(e)
    for r in bar(range(restarts), progress, "alternating restarts"):
        if time.perf_counter() > search_deadline:
            break
        # random θ with the size of the gradients the ReLU terms must cancel; kinks ν_k through
        # random expert actions so every term starts active on part of the data
        th = rng.normal(size=(K, n))
        th *= ((gscale * rng.uniform(0.5, 2.0, size=(K, 1)))
               / np.maximum(np.linalg.norm(th, axis=1, keepdims=True), 1e-12))
        th = np.clip(th, -theta_bound, theta_bound)
        nu = np.clip(np.einsum("kn,kn->k", th, st.U[rng.integers(0, st.T, size=K)]), -nu_bound, nu_bound)
        th, nu, phi, status = refine(st, th, nu, phi0, rho, theta_bound, nu_bound, tuple(mu_schedule) + (None,),
                                     uscale, max_iter, tol, search_deadline, history, f"restart {r}",
                                     progress and st.T >= 1000, features)
        consider(th, nu, phi, status, r)
        lap("random_restarts")
    if best is None:
        raise RuntimeError("alternating method found no candidate within the time limit")
    _, th, nu, phi, status, tag = best
    if large and refinements:
        # all-sample refinement: exact alternation from the search's best candidate
        th, nu, phi, rstatus = refine(st_all, th, nu, phi, rho, theta_bound, nu_bound, (None,), uscale,
                                      refinements, tol, deadline, history, "all samples", progress, features)
        info["all_sample_refinement"] = rstatus
        lap("all_sample_refinement")
    info["phase_s"] = phase
    if time.perf_counter() > deadline:
        status = "time_limit"
    info.update(best_candidate=tag, history=history)
    return th, nu, phi, status, None, time.perf_counter() - t0, info


def fit_convex(st: Stack, rho, theta_bound, nu_bound, time_limit_s, features: Features, uscale: float | None = None,
               squared: bool = True):
    """K = 0 (learned weights only): Problem 11 has no bilinear term left (z multiplies nothing), so
    it is one convex problem: (11a) Σ ε_t² + κ Σ φ_j² (squared=True, by cutting planes) or its L1
    surrogate LP, with exact (11c); if no φ in the box admits (11c) on every sample, the (11c)
    residual is penalised with μ raised until it vanishes.
    Returns (θ (0×n), ν (0), φ, status, None, seconds, info)."""
    t0 = time.perf_counter()
    T, n = st.T, st.n
    Z = np.zeros((T, 0))
    th, nu = np.zeros((0, n)), np.zeros(0)
    info = {"schedule": []}
    if uscale is None:
        uscale = float(np.median(np.linalg.norm(st.U, axis=1))) or 1.0
    duals = _closed_form(st) if squared else None
    phi0 = np.clip(np.zeros(features.J), features.lo, features.hi)
    for mu_rel in (None, 1.0, 1e2, 1e4):
        left = t0 + time_limit_s - time.perf_counter()
        if left <= 0:
            break
        mu = None if mu_rel is None else mu_rel * uscale
        step = None
        if duals is not None:
            step = separable.theta_step(st, Z, 0, rho, theta_bound, nu_bound, mu, features, phi0, duals)
            info["theta_step"] = "closed-form duals, Gauss-Newton"
        if step is None:
            step = theta_step(st, Z, 0, rho, theta_bound, nu_bound, mu, features, left, squared=squared)
            info["theta_step"] = "LP with cutting planes" if squared else "LP (L1 surrogate)"
        info["schedule"].append("exact" if mu_rel is None else mu_rel)
        if step is not None:
            return th, nu, step[2], "optimal" if mu_rel is None else "optimal_penalised", None, \
                time.perf_counter() - t0, info
    raise RuntimeError("the weights-only inverse problem (K = 0) could not be solved")
