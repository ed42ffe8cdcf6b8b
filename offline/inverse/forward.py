"""The forward problem FOP_θ: solve it for given (θ, ν, weights), one sample or many at once.

In epigraph form, with P = Q + Σ_j φ_j R_j + l·I ≻ 0 and one τ_k per ReLU term,

    min_{u,τ}  (c + Σ_j φ_j q_j)ᵀu + uᵀPu + Σ_k τ_k
    s.t.       τ_k ≥ θ_kᵀu − ν_k,  τ_k ≥ 0,  Hu ≤ b,  a + Bu = x̂,

a strongly convex QP solved by HiGHS; many samples are one block-diagonal QP per chunk. HiGHS'
QP solver occasionally fails on a small well-posed instance ("Solve error", about 1 in 1000 of
random robot-shaped FOPs): a failed chunk is re-solved sample by sample, and a failed sample by
scipy's SLSQP from a feasible point found by HiGHS' LP solver.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from . import highs
from .data import InverseSample, Prep, check_l, check_theta, prepare, prepare_all
from .stack import Stack, slice_stack

#: at most this many samples and this many columns per block-diagonal forward QP (HiGHS'
#: active-set QP time grows superlinearly with size: 40 AMoD-sized samples of n = 600 took > 5 s
#: together, 0.11 s each alone)
FORWARD_CHUNK = 50
FORWARD_CHUNK_COLUMNS = 400
#: HiGHS' active-set QP solver cycles on some degenerate forward QPs (LP-like costs with a small
#: l, measured on AMoD-shaped samples: 2 of 40 never finished, the others took ~0.8·n iterations).
#: A deterministic iteration limit, not a clock, hands those to the fallbacks.
QP_ITERATIONS_PER_COLUMN = 3
QP_ITERATIONS_MIN = 100
#: SLSQP (dense) is the last resort only up to this many variables
SLSQP_MAX_COLUMNS = 200


def _chunk_size(n: int, K: int) -> int:
    return max(1, min(FORWARD_CHUNK, FORWARD_CHUNK_COLUMNS // (n + K)))


def fop_objective(sample: InverseSample, theta, nu, l: float, u, weights=None) -> float:
    """f_θ(u) = cᵀu + uᵀQu + Σ_j φ_j(q_jᵀu + uᵀR_j u) + Σ_k max(θ_kᵀu − ν_k, 0) + l‖u‖² (constraints not checked)."""
    u = np.asarray(u, float)
    s = prepare(sample, 0, check_l(l), J=_J(weights)).with_weights(np.zeros(0) if weights is None else weights)
    theta, nu = check_theta(theta, nu, u.shape[0])
    return f_value(s, theta, nu, u)


def _J(weights) -> int:
    """How many features the samples must carry for these weights (None: none, features ignored)."""
    return 0 if weights is None else int(np.asarray(weights).size)


def f_value(s: Prep, theta, nu, u) -> float:
    """The FOP objective of a prepared sample (weights already folded in) at u."""
    return float(s.c @ u + u @ s.P.matvec(u) + np.maximum(theta @ u - nu, 0).sum())


def fop_model(st: Stack, theta: np.ndarray, nu: np.ndarray):
    """Block-diagonal epigraph QP of the stack's FOPs (weights folded in): columns (u (n), τ (K)) per
    sample, built by offset arithmetic on the stacked rows (no loop over samples).

    Returns (cost, A, row_lo, row_hi, col_lo, col_hi, hessian (full, symmetric), width per sample).
    """
    K, n = theta.shape
    T, W = st.T, n + K
    off = np.arange(T) * W
    cost = np.concatenate([st.c, np.ones((T, K))], axis=1).ravel()
    lo = np.tile(np.r_[np.full(n, -np.inf), np.zeros(K)], T)
    hi = np.full(T * W, np.inf)
    rows = highs.Rows()
    if K:   # τ_k − θ_kᵀu ≥ −ν_k: rows t·K + k
        t, k, i = np.meshgrid(np.arange(T), np.arange(K), np.arange(n), indexing="ij")
        tk = np.arange(T * K)
        rows.block(T * K, np.r_[tk, (t * K + k).ravel()], np.r_[(off[:, None] + n + np.arange(K)).ravel(),
                                                               (off[t] + i).ravel()],
                   np.r_[np.ones(T * K), -theta[k, i].ravel()], np.tile(-nu, T), np.inf)
    for rs, equal in ((st.H, False), (st.B, True)):
        if len(rs.rhs):   # Hu ≤ b, a + Bu = x̂ (rhs = x̂ − a)
            rows.block(len(rs.rhs), rs.ent_row, off[rs.sample[rs.ent_row]] + rs.ent_col, rs.ent_val,
                       rs.rhs if equal else -np.inf, rs.rhs)
    A, rlo, rhi = rows.matrix(T * W)
    pt, pr, pc, pv = st.P                     # objective uᵀPu = ½ uᵀ(2P)u, lower triangle
    L = sp.csc_matrix((2 * pv, (off[pt] + pr, off[pt] + pc)), shape=(T * W, T * W))
    hess = (L + L.T - sp.diags(L.diagonal())).tocsc()
    return cost, A, rlo, rhi, lo, hi, hess, W


def solve_stack(st: Stack, theta, nu, on_failure: str = "raise", first_index: int = 0) -> np.ndarray:
    """FOP_θ actions (T, n) of a stack (weights folded in), in block-diagonal chunks. on_failure:
    "raise" a RuntimeError naming the sample, or "nan" (that row is NaN: the caller drops and counts it)."""
    n = st.n
    out = np.empty((st.T, n))
    size = _chunk_size(n, theta.shape[0])
    for i0 in range(0, st.T, size):
        chunk = slice_stack(st, i0, min(i0 + size, st.T))
        cost, A, rlo, rhi, clo, chi, hess, W = fop_model(chunk, theta, nu)
        _, x, _ = highs.solve(cost, A, rlo, rhi, clo, chi, hess, qp_iteration_limit=_qp_iterations(len(cost)))
        if x is not None:
            out[i0:i0 + chunk.T] = x.reshape(chunk.T, W)[:, :n]
            continue
        for j in range(chunk.T):
            try:
                out[i0 + j] = _solve_one(slice_stack(chunk, j, j + 1), theta, nu)
            except RuntimeError as e:
                if on_failure == "nan":
                    out[i0 + j] = np.nan
                else:
                    raise RuntimeError(f"sample {first_index + i0 + j}: {e}") from None
    return out


def solve_preps(preps: Sequence[Prep], theta, nu, on_failure: str = "raise") -> np.ndarray:
    """FOP_θ actions (T, n) of prepared samples (weights folded in); see solve_stack."""
    return solve_stack(Stack.from_preps(preps), theta, nu, on_failure)


def _qp_iterations(columns: int) -> int:
    return QP_ITERATIONS_MIN + QP_ITERATIONS_PER_COLUMN * columns


def _solve_one(st: Stack, theta, nu) -> np.ndarray:
    """One sample (a one-sample stack): HiGHS' QP, then OSQP (CasADi's conic interface, solution
    polishing), then SLSQP."""
    cost, A, rlo, rhi, clo, chi, hess, _ = fop_model(st, theta, nu)
    status, x, _ = highs.solve(cost, A, rlo, rhi, clo, chi, hess, qp_iteration_limit=_qp_iterations(len(cost)))
    if x is None:
        x = _osqp_fallback(cost, A, rlo, rhi, clo, chi, hess)
    if x is None and len(cost) <= SLSQP_MAX_COLUMNS:
        x = _slsqp_fallback(cost, A, rlo, rhi, clo, chi, hess)
    if x is None:
        raise RuntimeError(f"forward problem not solved: HiGHS status '{status}', fallbacks failed too")
    return x[:st.n]


def forward_solve_batch(samples: Sequence[InverseSample], theta, nu, l: float, weights=None,
                        on_failure: str = "raise") -> np.ndarray:
    """FOP_θ of every sample (T, n), as block-diagonal convex QPs of FORWARD_CHUNK samples (HiGHS).

    Falls back to one solve per sample if a block fails, so that the error names the sample;
    on_failure="nan" returns NaN rows for samples whose forward problem cannot be solved.
    """
    l = check_l(l)
    preps = prepare_all(samples, l, J=_J(weights))
    theta, nu = check_theta(theta, nu, preps[0].n)
    w = np.zeros(0) if weights is None else weights
    return solve_preps([s.with_weights(w) for s in preps], theta, nu, on_failure)


def forward_solve(sample: InverseSample, theta, nu, l: float, weights=None) -> np.ndarray:
    """The FOP_θ optimal action u (n,) of one sample. Raises RuntimeError if the FOP is infeasible
    or neither HiGHS nor the SLSQP fallback solves it."""
    s = prepare(sample, 0, check_l(l), J=_J(weights))
    theta, nu = check_theta(theta, nu, s.n)
    return _solve_one(Stack.from_preps([s.with_weights(np.zeros(0) if weights is None else weights)]), theta, nu)


def _feasible(x, A, rlo, rhi, clo, chi, tol=1e-7) -> bool:
    ax = A @ x
    def viol(lo, v, hi):
        return max(np.max(np.where(np.isfinite(lo), lo - v, 0) / (1 + np.abs(np.nan_to_num(lo, posinf=0, neginf=0))),
                          initial=0),
                   np.max(np.where(np.isfinite(hi), v - hi, 0) / (1 + np.abs(np.nan_to_num(hi, posinf=0, neginf=0))),
                          initial=0))
    return bool(np.all(np.isfinite(x))) and viol(rlo, ax, rhi) <= tol and viol(clo, x, chi) <= tol


def _osqp_fallback(cost, A, rlo, rhi, clo, chi, hess):
    """OSQP (ADMM + solution polishing) through CasADi's conic interface; None unless it solves
    the QP and the result is feasible to 1e-7."""
    import casadi as ca

    big = 1e20
    fin = lambda v, s: np.where(np.isfinite(v), v, s * big)  # noqa: E731
    Hd, Ad = ca.DM(sp.csc_matrix(hess)), ca.DM(sp.csc_matrix(A))
    try:
        solver = ca.conic("fop_osqp", "osqp", {"h": Hd.sparsity(), "a": Ad.sparsity()},
                          {"osqp": {"eps_abs": 1e-10, "eps_rel": 1e-10, "polish": True, "max_iter": 200000,
                                    "verbose": False}, "error_on_fail": False})
        r = solver(h=Hd, g=cost, a=Ad, lba=fin(rlo, -1), uba=fin(rhi, 1), lbx=fin(clo, -1), ubx=fin(chi, 1))
    except RuntimeError:
        return None
    x = np.array(r["x"]).ravel()
    return x if solver.stats().get("success") and _feasible(x, A, rlo, rhi, clo, chi) else None


def _slsqp_fallback(cost, A, rlo, rhi, clo, chi, hess):
    """min ½xᵀHx + costᵀx on the same rows and bounds, with scipy's SLSQP from an LP-feasible start."""
    from scipy.optimize import minimize
    st, x0, _ = highs.solve(np.zeros_like(cost), A, rlo, rhi, clo, chi)
    if x0 is None:     # infeasible (or HiGHS' LP failed as well)
        return None
    A = A.toarray()
    Hm = hess.toarray()
    lo_rows, hi_rows = np.isfinite(rlo), np.isfinite(rhi)
    cons = [{"type": "ineq", "fun": lambda x: A[lo_rows] @ x - rlo[lo_rows], "jac": lambda x: A[lo_rows]},
            {"type": "ineq", "fun": lambda x: rhi[hi_rows] - A[hi_rows] @ x, "jac": lambda x: -A[hi_rows]}]
    bounds = [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in zip(clo, chi)]
    r = minimize(lambda x: 0.5 * x @ Hm @ x + cost @ x, x0, jac=lambda x: Hm @ x + cost, bounds=bounds,
                 constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
    viol = max(np.max(rlo[lo_rows] - A[lo_rows] @ r.x, initial=0), np.max(A[hi_rows] @ r.x - rhi[hi_rows], initial=0))
    return r.x if r.success and viol < 1e-8 else None
