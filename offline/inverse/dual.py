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

from typing import Sequence

import numpy as np

from . import highs
from .data import InverseSample, Prep, bar, check_l, check_theta, coo, prepare, prepare_all
from .forward import _J, f_value, solve_preps


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


def dual_model(preps: Sequence[Prep], theta: np.ndarray, nu: np.ndarray, mu: float | None):
    """Best duals for fixed (θ, ν) (weights folded into the preps), an LP with one block per
    sample: columns (z, λ, w, ε, e⁺, e⁻).

    (11b) y = 1 − z ≥ 0 folded into z ∈ [0, 1]; (11f) λ ≥ 0; τ_k = max(θ_kᵀu − ν_k, 0) is optimal.
    (11c)  Hᵀλ + Bᵀw + Σ_k z_k θ_k − (e⁺ − e⁻) = −(c + 2Pu)   (e ≡ 0 unless mu is given: an
                                                              L1-penalised residual, used while
                                                              searching for a θ that admits (11c))
    (11d)  ε = λᵀ(b − Hu) + wᵀ(x̂ − a − Bu) + Σ_k [τ_k − z_k (θ_kᵀu − ν_k)]  ≥ 0  (weak duality)
    Objective Σ_t ε_t + μ Σ_t ‖e_t‖₁; it separates by sample, so each block is that sample's best dual.
    """
    K, n = theta.shape
    rows = highs.Rows()
    cost, lo, hi, layout = [], [], [], []
    off = 0
    ehi = np.inf if mu is not None else 0.0
    th_r, th_c = np.nonzero(np.ones((K, n)))   # θ_k,i for every (k, i)
    ar_n = np.arange(n)
    for s in preps:
        m, p = s.m, s.p
        iz = off + np.arange(K)
        il = off + K + np.arange(m)
        iw = off + K + m + np.arange(p)
        ie = off + K + m + p
        ir = ie + 1 + np.arange(2 * n)
        layout.append((off, m, p))
        relu_s = theta @ s.u - nu
        tau = np.maximum(relu_s, 0.0)
        cost += [np.zeros(K + m + p), [1.0], np.full(2 * n, mu or 0.0)]
        lo += [np.zeros(K), np.zeros(m), np.full(p, -np.inf), [0.0], np.zeros(2 * n)]
        hi += [np.ones(K), np.full(m, np.inf), np.full(p, np.inf), [np.inf], np.full(2 * n, ehi)]
        # (11c), row i: Σ_k θ_ki z_k + Σ_j H_ji λ_j + Σ_j B_ji w_j − e⁺_i + e⁻_i = −grad_i
        hr, hc, hv = coo(s.H)
        br, bc, bv = coo(s.B)
        rows.block(n, np.r_[th_c, hc, bc, ar_n, ar_n], np.r_[iz[th_r], il[hr], iw[br], ir[:n], ir[n:]],
                   np.r_[theta[th_r, th_c], hv, bv, -np.ones(n), np.ones(n)], -s.grad, -s.grad)
        # (11d) ε − slackᵀλ − eq_resᵀw + Σ z_k s_k = Σ τ_k
        rows.add(np.r_[ie, il, iw, iz], np.r_[1.0, -s.slack, -s.eq_res, relu_s], tau.sum(), tau.sum())
        off += K + m + p + 1 + 2 * n
    A, rlo, rhi = rows.matrix(off)
    return np.concatenate(cost), A, rlo, rhi, np.concatenate(lo), np.concatenate(hi), layout


def best_duals(preps, theta, nu, mu=None, time_limit_s=None):
    """Solve dual_model; dict with z (T,K), lam, w (lists), eps (T,), resid (T,n); None if infeasible."""
    K, n = theta.shape
    cost, A, rlo, rhi, clo, chi, layout = dual_model(preps, theta, nu, mu)
    st, x, _ = highs.solve(cost, A, rlo, rhi, clo, chi, time_limit_s=time_limit_s)
    if x is None:
        return None
    T = len(preps)
    z = np.empty((T, K))
    eps = np.empty(T)
    resid = np.empty((T, n))
    lam, w = [], []
    for t, (o, m, p) in enumerate(layout):
        z[t] = x[o:o + K]
        lam.append(x[o + K:o + K + m])
        w.append(x[o + K + m:o + K + m + p])
        eps[t] = x[o + K + m + p]
        e = x[o + K + m + p + 1:o + K + m + p + 1 + 2 * n]
        resid[t] = e[:n] - e[n:]
    return {"z": np.clip(z, 0, 1), "lam": lam, "w": w, "eps": np.maximum(eps, 0), "resid": resid}


def exact_gaps(preps, theta, nu, progress=False):
    """Per-sample best ε under exact (11c); NaN where no dual satisfies (11c). Also returns z."""
    res = best_duals(preps, theta, nu)
    if res is not None:
        return res["eps"], res["z"]
    # some sample has no (11c)-feasible dual: find which, one LP each
    K = theta.shape[0]
    eps, z = np.full(len(preps), np.nan), np.full((len(preps), K), np.nan)
    for t, s in enumerate(bar(preps, progress, "duality gaps (per sample)")):
        r = best_duals([s], theta, nu)
        if r is not None:
            eps[t], z[t] = r["eps"][0], r["z"][0]
    return eps, z


def relaxed_from_actions(preps, theta, nu, ustar) -> np.ndarray:
    """f(u_t) − f(u*_t) per sample (NaN where u*_t is NaN: its forward problem failed)."""
    return np.array([max(f_value(s, theta, nu, s.u) - f_value(s, theta, nu, us), 0.0) if np.all(np.isfinite(us))
                     else np.nan for s, us in zip(preps, ustar)])


def final_gaps(preps, theta, nu, progress=False):
    """Re-evaluated gaps (weights folded into preps): the exact (11c) best dual, and the
    Lagrangian-dual gap where (11c) is infeasible. Returns (eps, stationarity_infeasible, forward_failed).

    The relaxed gap f(u_t) − f(u*_t) is a lower bound on the (11c) one, so the LP's value is raised
    to it where the LP's tolerances (~1e-9 on tiny gaps) put it below: Prop. 4 is sensitive to that
    (√(ε/l) turns an error of 1e-12 into 1e-5). A sample whose forward problem fails keeps its
    (11c) gap (NaN if that is infeasible too) and is flagged in forward_failed.
    """
    eps, _ = exact_gaps(preps, theta, nu, progress)
    ustar = solve_preps(preps, theta, nu, on_failure="nan")
    failed = ~np.all(np.isfinite(ustar), axis=1)
    relaxed = relaxed_from_actions(preps, theta, nu, ustar)
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
    preps = [s.with_weights(w) for s in preps]
    if stationarity == "exact":
        eps, bad, _ = final_gaps(preps, theta, nu, False)
        return np.where(bad, np.inf, eps)
    if stationarity == "relaxed":
        ustar = solve_preps(preps, theta, nu)
        return relaxed_from_actions(preps, theta, nu, ustar)
    raise ValueError(f"stationarity must be 'exact' or 'relaxed', got {stationarity!r}")
