"""The dual function of FOP_θ and the per-sample duality gaps ε_t of Problem (11).

Lagrangian of the epigraph FOP (forward.py), minimised over u and τ (derived once here):

    L = cᵀu + uᵀPu + Σ τ_k + Σ z_k(θ_kᵀu − ν_k − τ_k) − Σ y_k τ_k + λᵀ(Hu − b) + wᵀ(a + Bu − x̂)
    ∂L/∂τ_k = 1 − z_k − y_k = 0                                    (11b), else g = −∞
    r := c + Σ_k z_k θ_k + Hᵀλ + Bᵀw,   u_L = argmin_u L = −½ P⁻¹ r
    g(λ, z, y, w) = −¼ rᵀP⁻¹r − Σ_k z_k ν_k − λᵀb + wᵀ(a − x̂)

Problem 11 asks the Lagrangian minimiser to be the expert action, u_L = u_t, i.e. r = −2P u_t,
which is (11c): c + 2Pu_t + Hᵀλ + Bᵀw + Σ_k z_k θ_k = 0. On that set

    g = −u_tᵀP u_t − Σ_k z_k ν_k − λᵀb + wᵀ(a − x̂)                      (the g of 11d)

and the gap ε_t = f(u_t) − g of (11d), with f(u_t) = cᵀu_t + u_tᵀPu_t + Σ_k τ_k, equals the
complementary-slackness residual

    ε_t = λᵀ(b − Hu_t) + wᵀ(x̂ − a − Bu_t) + Σ_k [τ_k − z_k (θ_kᵀu_t − ν_k)]  ≥ 0

(non-negative for a feasible expert action because τ_k ≥ max(θ_kᵀu_t − ν_k, 0) and z_k ∈ [0, 1]).
Neither c nor P appears in it: learned cost weights φ (which enter c and P linearly) only enter
(11c), through the feature gradients q_j + 2R_j u_t. Weak duality g ≤ f(u*) ≤ f(u_t) gives
Prop. 4: ‖u*_t − u_t‖ ≤ √(ε_t / λ_min(P)).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from . import highs
from .data import InverseSample, bar, check_l, check_theta, prepare, prepare_all
from .forward import _J, solve_stack
from .stack import Stack, slice_stack


def dual_function(sample: InverseSample, theta, nu, l: float, z, lam=None, w=None, weights=None) -> float:
    """g(λ, z, y = 1 − z, w) of the epigraph FOP (module docstring), for any z ∈ [0,1]^K, λ ≥ 0, w.

    Needs neither (11c) nor optimality: by weak duality it is a lower bound on min f_θ.
    """
    s = prepare(sample, 0, check_l(l), J=_J(weights)).with_weights(np.zeros(0) if weights is None else weights)
    theta, nu = check_theta(theta, nu, s.n)
    z = np.asarray(z, float)
    lam = np.zeros(s.m) if lam is None else np.asarray(lam, float)
    w = np.zeros(s.p) if w is None else np.asarray(w, float)
    r = s.c + theta.T @ z + np.asarray(s.H.T @ lam).ravel() + np.asarray(s.B.T @ w).ravel()
    return float(-0.25 * r @ s.P.solve(r) - z @ nu - lam @ s.b + w @ (s.a - s.xhat))


#: samples per z-step LP: the best duals separate by sample, so chunks keep HiGHS' work linear in T
DUAL_CHUNK = 4000


def dual_model(st: Stack, theta: np.ndarray, nu: np.ndarray, mu: float | None):
    """Best duals for fixed (θ, ν) (weights folded into the stack), an LP with one block per
    sample: columns (z, λ, w, ε, e⁺, e⁻), built by offset arithmetic on the stacked rows.

    (11b) y = 1 − z ≥ 0 folded into z ∈ [0, 1]; (11f) λ ≥ 0; τ_k = max(θ_kᵀu − ν_k, 0) is optimal.
    (11c)  Hᵀλ + Bᵀw + Σ_k z_k θ_k − (e⁺ − e⁻) = −(c + 2Pu)   (e ≡ 0 unless mu is given: an
                                                              L1-penalised residual, used while
                                                              searching for a θ that admits (11c))
    (11d)  ε = λᵀ(b − Hu) + wᵀ(x̂ − a − Bu) + Σ_k [τ_k − z_k (θ_kᵀu − ν_k)]  ≥ 0  (weak duality)
    Objective Σ_t ε_t + μ Σ_t ‖e_t‖₁; it separates by sample, so each block is that sample's best dual.
    Returns (cost, A, row_lo, row_hi, col_lo, col_hi, layout) with layout = (offsets, m, p).
    """
    K, n = theta.shape
    T, H, B = st.T, st.H, st.B
    m, p = H.count, B.count
    W = K + m + p + 1 + 2 * n
    off = np.r_[0, np.cumsum(W)][:-1]
    ncol = int(W.sum())
    ie = off + K + m + p                                        # ε of each sample
    # columns: kind by position within the block
    cost = np.zeros(ncol)
    lo = np.zeros(ncol)
    hi = np.full(ncol, np.inf)
    iz = (off[:, None] + np.arange(K)).ravel()
    hi[iz] = 1.0
    iw = off[B.sample] + K + m[B.sample] + B.local
    lo[iw] = -np.inf
    cost[ie] = 1.0
    ir = (ie[:, None] + 1 + np.arange(2 * n)).ravel()
    cost[ir] = mu or 0.0
    if mu is None:
        hi[ir] = 0.0
    relu_s = st.U @ theta.T - nu                                # (T, K)
    tau = np.maximum(relu_s, 0.0).sum(axis=1)
    rows = highs.Rows()
    R = n + 1                                                   # rows per sample: (11c) n, (11d) 1
    t, k, i = np.meshgrid(np.arange(T), np.arange(K), np.arange(n), indexing="ij")
    tn = np.repeat(np.arange(T), n)
    ii = np.tile(np.arange(n), T)
    hs, bs = H.sample[H.ent_row], B.sample[B.ent_row]
    hrow, brow = H.sample, B.sample
    rr = np.r_[(t * R + i).ravel(),                                   # θ_k,i z_k
               hs * R + H.ent_col,                                     # H_ji λ_j
               bs * R + B.ent_col,                                     # B_ji w_j
               tn * R + ii, tn * R + ii,                               # −e⁺ + e⁻
               np.arange(T) * R + n,                                   # (11d): ε
               hrow * R + n, brow * R + n,                             #        −slack λ, −eq_res w
               (t[:, :, 0] * R + n).ravel()]                           #        relu_s z
    cc = np.r_[(off[t] + k).ravel(),
               off[hs] + K + H.local[H.ent_row],
               off[bs] + K + m[bs] + B.local[B.ent_row],
               ie[tn] + 1 + ii, ie[tn] + 1 + n + ii,
               ie,
               off[hrow] + K + H.local, off[brow] + K + m[brow] + B.local,
               (off[:, None] + np.arange(K)).ravel()]
    vv = np.r_[theta[k, i].ravel(), H.ent_val, B.ent_val, -np.ones(T * n), np.ones(T * n), np.ones(T),
               -H.resid, -B.resid, relu_s.ravel()]
    rhs = np.concatenate([-st.grad, tau[:, None]], axis=1).ravel()
    rows.block(T * R, rr, cc, vv, rhs, rhs)
    A, rlo, rhi = rows.matrix(ncol)
    return cost, A, rlo, rhi, lo, hi, (off, m, p)


def best_duals(st: Stack, theta, nu, mu=None, time_limit_s=None):
    """The z-step: solve dual_model in chunks of DUAL_CHUNK samples; dict with z (T,K), eps (T,),
    resid (T,n); None if some sample has no (11c)-feasible dual (with mu=None)."""
    K, n = theta.shape
    z, eps, resid = np.empty((st.T, K)), np.empty(st.T), np.empty((st.T, n))
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
    for t0 in range(0, st.T, DUAL_CHUNK):
        t1 = min(t0 + DUAL_CHUNK, st.T)
        chunk = slice_stack(st, t0, t1) if (t0, t1) != (0, st.T) else st
        cost, A, rlo, rhi, clo, chi, (off, m, p) = dual_model(chunk, theta, nu, mu)
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            return None
        _, x, _ = highs.solve(cost, A, rlo, rhi, clo, chi, time_limit_s=left)
        if x is None:
            return None
        z[t0:t1] = x[off[:, None] + np.arange(K)]
        ie = off + K + m + p
        eps[t0:t1] = x[ie]
        e = x[ie[:, None] + 1 + np.arange(2 * n)]
        resid[t0:t1] = e[:, :n] - e[:, n:]
    return {"z": np.clip(z, 0, 1), "eps": np.maximum(eps, 0), "resid": resid}


def exact_gaps(st: Stack, theta, nu, progress=False):
    """Per-sample best ε under exact (11c); NaN where no dual satisfies (11c). Also returns z."""
    res = best_duals(st, theta, nu)
    if res is not None:
        return res["eps"], res["z"]
    # some sample has no (11c)-feasible dual: find which, one LP each
    K = theta.shape[0]
    eps, z = np.full(st.T, np.nan), np.full((st.T, K), np.nan)
    for t in bar(range(st.T), progress, "duality gaps (per sample)"):
        r = best_duals(slice_stack(st, t, t + 1), theta, nu)
        if r is not None:
            eps[t], z[t] = r["eps"][0], r["z"][0]
    return eps, z


def f_values(st: Stack, theta, nu, X: np.ndarray) -> np.ndarray:
    """The FOP objective (weights folded in) of each sample at X (T, n)."""
    return (np.einsum("tn,tn->t", st.c, X) + st.quad_values(X)
            + np.maximum(X @ theta.T - nu, 0).sum(axis=1))


def relaxed_from_actions(st: Stack, theta, nu, ustar) -> np.ndarray:
    """f(u_t) − f(u*_t) per sample (NaN where u*_t is NaN: its forward problem failed)."""
    ok = np.all(np.isfinite(ustar), axis=1)
    out = np.full(st.T, np.nan)
    fu = f_values(st, theta, nu, st.U)
    fs = f_values(st, theta, nu, np.where(ok[:, None], ustar, 0.0))
    out[ok] = np.maximum(fu[ok] - fs[ok], 0.0)
    return out


def final_gaps(st: Stack, theta, nu, progress=False):
    """Re-evaluated gaps (weights folded into the stack): the exact (11c) best dual, and the
    Lagrangian-dual gap where (11c) is infeasible. Returns (eps, stationarity_infeasible, forward_failed).

    The relaxed gap f(u_t) − f(u*_t) is a lower bound on the (11c) one, so the LP's value is raised
    to it where the LP's tolerances (~1e-9 on tiny gaps) put it below: Prop. 4 is sensitive to that
    (√(ε/l) turns an error of 1e-12 into 1e-5). A sample whose forward problem fails keeps its
    (11c) gap (NaN if that is infeasible too) and is flagged in forward_failed.
    """
    eps, _ = exact_gaps(st, theta, nu, progress)
    ustar = solve_stack(st, theta, nu, on_failure="nan")
    failed = ~np.all(np.isfinite(ustar), axis=1)
    relaxed = relaxed_from_actions(st, theta, nu, ustar)
    bad = np.isnan(eps)
    eps = np.where(bad, relaxed, np.fmax(eps, relaxed))
    return eps, bad, failed


def duality_gaps(samples: Sequence[InverseSample], theta, nu, l: float, stationarity: str = "exact",
                 weights=None) -> np.ndarray:
    """Per-sample duality gap ε_t ≥ 0 at (θ, ν, weights): the smallest f(u_t) − g over duals.

    stationarity="exact" (Problem 11): duals feasible for (11b), (11c), (11f) at the expert u_t,
        one LP per sample; inf where (11c) has no solution at this θ. Where the LP's tolerance
        puts it below the relaxed gap (a lower bound on it), the relaxed gap is returned.
    stationarity="relaxed": all duals of (11b), (11f), with the full dual function g (module
        docstring); by strong duality this is f_θ(u_t) − min f_θ, never larger than "exact".
    """
    l = check_l(l)
    preps = prepare_all(samples, l, check_feasible=True, J=_J(weights))
    theta, nu = check_theta(theta, nu, preps[0].n)
    w = np.zeros(0) if weights is None else weights
    st = Stack.from_preps(preps).with_weights(w)
    if stationarity == "exact":
        eps, bad, _ = final_gaps(st, theta, nu, False)
        return np.where(bad, np.inf, eps)
    if stationarity == "relaxed":
        ustar = solve_stack(st, theta, nu)
        return relaxed_from_actions(st, theta, nu, ustar)
    raise ValueError(f"stationarity must be 'exact' or 'relaxed', got {stationarity!r}")
