"""Inverse optimization of the ReLU terms of a lower-level FOP (Problem 11 of the paper), generic.

The forward problem of one sample t (Eq. 10 with a quadratic stage cost, Eq. 32 for the robot):

    FOP_θ(t) = argmin_u  cᵀu + uᵀQu + Σ_k max(θ_kᵀu − ν_k, 0) + l‖u‖²
               s.t.  a + B u = x̂        (w, free)          (m_eq rows, possibly none)
                     H u ≤ b            (λ ≥ 0)            (m_in rows, possibly none)

In epigraph form, with P = Q + l·I ≻ 0 and one τ_k per ReLU term,

    min_{u,τ}  cᵀu + uᵀPu + Σ_k τ_k
    s.t.       τ_k ≥ θ_kᵀu − ν_k  (z_k ≥ 0),   τ_k ≥ 0  (y_k ≥ 0),   Hu ≤ b  (λ ≥ 0),   a + Bu = x̂  (w).

Dual function (Lagrangian minimised over u and τ; derived once here, used everywhere below):

    L = cᵀu + uᵀPu + Σ τ_k + Σ z_k(θ_kᵀu − ν_k − τ_k) − Σ y_k τ_k + λᵀ(Hu − b) + wᵀ(a + Bu − x̂)
    ∂L/∂τ_k = 1 − z_k − y_k = 0                                    (11b), else g = −∞
    r := c + Σ_k z_k θ_k + Hᵀλ + Bᵀw,   u_L = argmin_u L = −½ P⁻¹ r
    g(λ, z, y, w) = −¼ rᵀP⁻¹r − Σ_k z_k ν_k − λᵀb + wᵀ(a − x̂)

Problem 11 asks the Lagrangian minimiser to be the expert action, u_L = u_t, i.e.
r = −2P u_t, which is (11c): c + 2Qu_t + Hᵀλ + Bᵀw + Σ_k z_k θ_k + 2l u_t = 0. On that set

    g = −u_tᵀP u_t − Σ_k z_k ν_k − λᵀb + wᵀ(a − x̂)                      (the g of 11d)

and the gap ε_t = f(u_t) − g of (11d), with f(u_t) = cᵀu_t + u_tᵀPu_t + Σ_k τ_k, equals the
complementary-slackness residual

    ε_t = λᵀ(b − Hu_t) + wᵀ(x̂ − a − Bu_t) + Σ_k [τ_k − z_k (θ_kᵀu_t − ν_k)]  ≥ 0

(non-negative for a feasible expert action because τ_k ≥ max(θ_kᵀu_t − ν_k, 0) and z_k ∈ [0, 1]).
Weak duality g ≤ f(u*) ≤ f(u_t) gives Prop. 4: ‖u*_t − u_t‖ ≤ √(ε_t / l).

Two solvers. `global` is Problem 11 in Pyomo solved by SCIP's spatial branch-and-bound (bilinear
terms z_kt·θ_k in 11c and z_kt·ν_k in 11d, every variable boxed). `alternating` scales to
thousands of samples: with z fixed Problem 11 is convex in (θ, ν, λ, w, τ, ε); with (θ, ν) fixed
it separates into one LP per sample (the best dual). Both blocks are solved as single
block-structured HiGHS LPs (an L1 surrogate of (11a), see _fit_alternating), started from a
global solve on a random subsample and from random points. Whatever the method, the reported
gaps are re-evaluated at the returned (θ, ν) with the best (11c)-feasible duals.
"""
from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["InverseSample", "InverseFit", "fit_inverse", "forward_solve", "forward_solve_batch",
           "duality_gaps", "dual_function", "fop_objective", "cosine_similarity"]

#: T·K at or below which method="auto" uses the global solver (Problem 11 with SCIP).
AUTO_GLOBAL_MAX_TK = 200
#: and at or below this many samples (SCIP's spatial B&B grows fast with T).
AUTO_GLOBAL_MAX_T = 100


@dataclass
class InverseSample:
    """One expert decision and the FOP data around it (all numpy float arrays).

    FOP_θ(sample) = argmin_u  cᵀu + uᵀQu + Σ_k max(θ_kᵀu − ν_k, 0) + l‖u‖²
                    s.t. a + B u = xhat   (m_eq rows, may be 0 rows)
                         H u ≤ b          (m_in rows, may be 0 rows)
    """
    c: np.ndarray        # (n,)
    Q: np.ndarray        # (n, n) symmetric PSD (may be zeros: the LP case of Eq. 9/10)
    u: np.ndarray        # (n,) the expert action
    H: np.ndarray | None = None
    b: np.ndarray | None = None
    B: np.ndarray | None = None
    a: np.ndarray | None = None
    xhat: np.ndarray | None = None


@dataclass
class InverseFit:
    """Result of fit_inverse: the K ReLU terms and how well they explain the expert data."""
    theta: np.ndarray     # (K, n)  the θ_k (= α_k of Eq. 32)
    nu: np.ndarray        # (K,)    the ν_k (= β_k of Eq. 32)
    l: float
    rho: float
    gaps: np.ndarray      # (T,) per-sample duality gap ε_t ≥ 0 at (θ, ν), re-evaluated (best dual)
    prop4_bound: float    # sqrt(max_t ε_t / l): Prop. 4 bound on ‖u*_t − u_t‖
    objective: float      # Σ ε_t² + ρ Σ ‖θ_k‖² with the re-evaluated gaps
    method: str           # "global" | "alternating"
    status: str           # solver termination, e.g. "optimal", "time_limit", "converged"
    bound: float | None   # global lower bound on the objective (global method), else None
    solve_time_s: float
    n_samples: int
    #: samples where no dual satisfies (11c) at (θ, ν) (their gap is the Lagrangian-dual gap
    #: f(u_t) − f(u*_t) instead; still a valid duality gap, Prop. 4 still holds). 0 normally.
    n_stationarity_infeasible: int = 0
    #: solver-specific details (iterations, restarts, solver objective, ...)
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- data preparation

@dataclass
class _Prep:
    """A validated sample with the quantities every formulation uses."""
    c: np.ndarray; Q: np.ndarray; u: np.ndarray
    H: np.ndarray; b: np.ndarray; B: np.ndarray; a: np.ndarray; xhat: np.ndarray
    P: np.ndarray          # Q + l I
    grad: np.ndarray       # c + 2 P u: gradient of the smooth part of f at the expert action
    slack: np.ndarray      # b − H u ≥ 0 (inequality slack of the expert action)
    eq_res: np.ndarray     # x̂ − a − B u (≈ 0 for a feasible expert action)
    f_smooth: float        # cᵀu + uᵀPu

    @property
    def m(self) -> int:
        return self.H.shape[0]

    @property
    def p(self) -> int:
        return self.B.shape[0]


def _arr(x, idx: int, name: str, ndim: int) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sample {idx}: field '{name}' is not a float array ({e})") from None
    if a.ndim != ndim:
        raise ValueError(f"sample {idx}: field '{name}' must be {ndim}-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"sample {idx}: field '{name}' contains NaN or inf (drop such samples first)")
    return a


def _prepare(s: InverseSample, idx: int, l: float, n: int | None = None, check_feasible: bool = False,
             feas_tol: float = 1e-6) -> _Prep:
    c = _arr(s.c, idx, "c", 1)
    if n is None:
        n = c.shape[0]
    if c.shape != (n,):
        raise ValueError(f"sample {idx}: field 'c' has shape {c.shape}, expected ({n},)")
    Q = _arr(s.Q, idx, "Q", 2)
    if Q.shape != (n, n):
        raise ValueError(f"sample {idx}: field 'Q' has shape {Q.shape}, expected ({n}, {n})")
    if not np.allclose(Q, Q.T, atol=1e-9 * (1 + np.abs(Q).max())):
        raise ValueError(f"sample {idx}: field 'Q' is not symmetric")
    Q = 0.5 * (Q + Q.T)
    if n and np.linalg.eigvalsh(Q).min() < -1e-9 * (1 + np.abs(Q).max()):
        raise ValueError(f"sample {idx}: field 'Q' is not positive semidefinite")
    u = _arr(s.u, idx, "u", 1)
    if u.shape != (n,):
        raise ValueError(f"sample {idx}: field 'u' has shape {u.shape}, expected ({n},)")

    if (s.H is None) != (s.b is None):
        raise ValueError(f"sample {idx}: fields 'H' and 'b' must both be given or both be None")
    if s.H is None:
        H, b = np.zeros((0, n)), np.zeros(0)
    else:
        H = _arr(s.H, idx, "H", 2)
        if H.shape[1:] != (n,):
            raise ValueError(f"sample {idx}: field 'H' has shape {H.shape}, expected (m_in, {n})")
        b = _arr(s.b, idx, "b", 1)
        if b.shape != (H.shape[0],):
            raise ValueError(f"sample {idx}: field 'b' has shape {b.shape}, expected ({H.shape[0]},) "
                             f"to match H")
    given = [s.B is not None, s.a is not None, s.xhat is not None]
    if any(given) and not all(given):
        raise ValueError(f"sample {idx}: fields 'B', 'a', 'xhat' must all be given or all be None")
    if s.B is None:
        B, a, xhat = np.zeros((0, n)), np.zeros(0), np.zeros(0)
    else:
        B = _arr(s.B, idx, "B", 2)
        if B.shape[1:] != (n,):
            raise ValueError(f"sample {idx}: field 'B' has shape {B.shape}, expected (m_eq, {n})")
        a = _arr(s.a, idx, "a", 1)
        if a.shape != (B.shape[0],):
            raise ValueError(f"sample {idx}: field 'a' has shape {a.shape}, expected ({B.shape[0]},)")
        xhat = _arr(s.xhat, idx, "xhat", 1)
        if xhat.shape != (B.shape[0],):
            raise ValueError(f"sample {idx}: field 'xhat' has shape {xhat.shape}, expected ({B.shape[0]},)")
    P = Q + l * np.eye(n)
    slack = b - H @ u
    eq_res = xhat - a - B @ u
    scale = 1.0 + np.abs(u).max(initial=0.0)
    if check_feasible and (np.any(slack < -feas_tol * scale * (1 + np.abs(b)))
                           or np.any(np.abs(eq_res) > feas_tol * scale * (1 + np.abs(xhat)))):
        warnings.warn(f"sample {idx}: the expert action violates its constraints (max violation "
                      f"{max(-slack.min(initial=0), np.abs(eq_res).max(initial=0)):.3g}); its duality gap "
                      f"is not a certificate of near-optimality", RuntimeWarning, stacklevel=3)
    return _Prep(c=c, Q=Q, u=u, H=H, b=b, B=B, a=a, xhat=xhat, P=P, grad=c + 2 * P @ u, slack=slack,
                 eq_res=eq_res, f_smooth=float(c @ u + u @ P @ u))


def _prepare_all(samples: Sequence[InverseSample], l: float, check_feasible: bool = False) -> list[_Prep]:
    if isinstance(samples, InverseSample):
        samples = [samples]
    if len(samples) == 0:
        raise ValueError("no samples")
    first = _prepare(samples[0], 0, l, None, check_feasible)
    n = first.c.shape[0]
    return [first] + [_prepare(s, i, l, n, check_feasible) for i, s in enumerate(samples[1:], start=1)]


def _check_theta(theta, nu, n: int) -> tuple[np.ndarray, np.ndarray]:
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    nu = np.atleast_1d(np.asarray(nu, dtype=float))
    if theta.shape[1] != n or nu.shape != (theta.shape[0],):
        raise ValueError(f"theta must be (K, {n}) and nu (K,), got {theta.shape} and {nu.shape}")
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(nu))):
        raise ValueError("theta / nu contain NaN or inf")
    return theta, nu


def _check_l(l: float) -> float:
    l = float(l)
    if not l > 0:
        raise ValueError(f"l must be > 0 (it makes the FOP strongly convex, Prop. 4), got {l}")
    return l


# ----------------------------------------------------------------------------- HiGHS helper

#: θ-step LPs with more columns than this use HiGHS' interior point method
IPM_MIN_COLUMNS = 20_000
#: samples per block-diagonal forward QP (HiGHS' active-set QP time grows superlinearly with size)
FORWARD_CHUNK = 50
# HiGHS' QP solver can stall on a degenerate forward QP; a stalled chunk falls back to per-sample
# solves, and a stalled sample to SLSQP, so no forward solve can hang a fit.
FORWARD_CHUNK_TIME_LIMIT_S = 5.0
FORWARD_SAMPLE_TIME_LIMIT_S = 1.0
#: qp_regularization_value ladder for HiGHS QPs (forward problems): the regularisation perturbs
#: the solution (1e-5 moved u by 1e-5 at l = 1e-2), so start near zero; larger values only if that fails
QP_REGULARISATION = (1e-10, 1e-7, 1e-5)


_HIGHS_BANNER_SHOWN = False


def _new_highs():
    """A silent HiGHS instance. The first construction in a process prints a licence banner to
    stdout (C level), which would interleave with our reports: swallow that once."""
    global _HIGHS_BANNER_SHOWN
    import highspy

    from hiopt_ros.stdio import mute_c_stdout

    if _HIGHS_BANNER_SHOWN:
        h = highspy.Highs()
    else:
        with mute_c_stdout():
            h = highspy.Highs()
        _HIGHS_BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    return h


def _highs(cost, A, row_lo, row_hi, col_lo, col_hi, hess_diag=None, ipm=False, time_limit_s=None):
    """Solve min ½xᵀ diag(h) x + costᵀx s.t. row_lo ≤ Ax ≤ row_hi, col_lo ≤ x ≤ col_hi with HiGHS.

    Returns (status string, x or None, objective). A diagonal Hessian is all our QPs need.
    """
    import highspy

    h = _new_highs()
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(max(time_limit_s, 0.1)))
    A = sp.csc_matrix(A)
    A.sort_indices()
    nv = len(cost)
    lp = highspy.HighsLp()
    lp.num_col_ = nv
    lp.num_row_ = A.shape[0]
    lp.col_cost_ = np.asarray(cost, float)
    lp.col_lower_ = np.asarray(col_lo, float)
    lp.col_upper_ = np.asarray(col_hi, float)
    lp.row_lower_ = np.asarray(row_lo, float)
    lp.row_upper_ = np.asarray(row_hi, float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(float)
    model = highspy.HighsModel()
    model.lp_ = lp
    if hess_diag is not None and np.any(hess_diag != 0):
        hd = np.asarray(hess_diag, float)
        nz = np.flatnonzero(hd)
        start = np.searchsorted(nz, np.arange(nv + 1)).astype(np.int32)
        model.hessian_.dim_ = nv
        model.hessian_.format_ = highspy.HessianFormat.kTriangular
        model.hessian_.start_ = start
        model.hessian_.index_ = nz.astype(np.int32)
        model.hessian_.value_ = hd[nz]
    elif ipm:   # large LPs: interior point without crossover is 3x faster than simplex here
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "off")
    h.passModel(model)
    # HiGHS' active-set QP solver can stall on degenerate QPs; a stronger regularisation of its
    # reduced Hessian is the fallback
    for reg in ((None,) if model.hessian_.dim_ == 0 else QP_REGULARISATION):
        if reg is not None:
            h.setOptionValue("qp_regularization_value", reg)
            h.clearSolver()
        h.run()
        st = h.getModelStatus()
        if st == highspy.HighsModelStatus.kOptimal:
            break
    name = h.modelStatusToString(st)
    if st != highspy.HighsModelStatus.kOptimal:
        return name, None, math.nan
    return "optimal", np.array(h.getSolution().col_value), float(h.getInfo().objective_function_value)


class _Rows:
    """Triplet accumulator for a sparse constraint matrix with row bounds."""

    def __init__(self):
        self.r, self.c, self.v, self.lo, self.hi = [], [], [], [], []
        self.n = 0

    def add(self, cols, vals, lo, hi) -> int:
        cols = np.asarray(cols, dtype=np.int64).ravel()
        vals = np.asarray(vals, dtype=float).ravel()
        self.r.append(np.full(cols.shape, self.n, dtype=np.int64))
        self.c.append(cols)
        self.v.append(vals)
        self.lo.append(lo)
        self.hi.append(hi)
        self.n += 1
        return self.n - 1

    def matrix(self, ncols: int):
        r = np.concatenate(self.r) if self.r else np.zeros(0, np.int64)
        c = np.concatenate(self.c) if self.c else np.zeros(0, np.int64)
        v = np.concatenate(self.v) if self.v else np.zeros(0)
        return sp.csc_matrix((v, (r, c)), shape=(self.n, ncols)), np.array(self.lo, float), np.array(self.hi, float)


# ----------------------------------------------------------------------------- forward problem

def fop_objective(sample: InverseSample, theta, nu, l: float, u) -> float:
    """f_θ(u) = cᵀu + uᵀQu + Σ_k max(θ_kᵀu − ν_k, 0) + l‖u‖² (constraints not checked)."""
    u = np.asarray(u, float)
    c, Q = np.asarray(sample.c, float), np.asarray(sample.Q, float)
    theta, nu = _check_theta(theta, nu, u.shape[0])
    return float(c @ u + u @ Q @ u + np.maximum(theta @ u - nu, 0).sum() + l * u @ u)


def _fop_model(preps: Sequence[_Prep], theta: np.ndarray, nu: np.ndarray):
    """Block-diagonal epigraph QP of several FOPs, in variables v = Vᵀu (P = V diag(d) Vᵀ) and τ.

    Diagonalising P per sample keeps the Hessian diagonal (what _highs takes) at no cost in n.
    """
    K, n = theta.shape
    rows = _Rows()
    cost, hd, lo, hi, Vs, offs = [], [], [], [], [], []
    off = 0
    for s in preps:
        d, V = np.linalg.eigh(s.P)
        d = np.maximum(d, 0.0)
        Vs.append(V)
        offs.append(off)
        iu, it = off + np.arange(n), off + n + np.arange(K)
        # objective: cᵀu + uᵀPu + Σ τ  =  (Vᵀc)ᵀv + vᵀ diag(d) v + Σ τ
        cost += [V.T @ s.c, np.ones(K)]
        hd += [2 * d, np.zeros(K)]
        lo += [np.full(n, -np.inf), np.zeros(K)]
        hi += [np.full(n, np.inf), np.full(K, np.inf)]
        thV = theta @ V
        for k in range(K):        # τ_k ≥ θ_kᵀu − ν_k
            rows.add(np.r_[it[k], iu], np.r_[1.0, -thV[k]], -nu[k], np.inf)
        HV = s.H @ V
        for j in range(s.m):      # Hu ≤ b
            rows.add(iu, HV[j], -np.inf, s.b[j])
        BV = s.B @ V
        for j in range(s.p):      # a + Bu = x̂
            rows.add(iu, BV[j], s.xhat[j] - s.a[j], s.xhat[j] - s.a[j])
        off += n + K
    A, rlo, rhi = rows.matrix(off)
    return (np.concatenate(cost), A, rlo, rhi, np.concatenate(lo), np.concatenate(hi),
            np.concatenate(hd), Vs, offs)


def forward_solve_batch(samples: Sequence[InverseSample], theta, nu, l: float) -> np.ndarray:
    """FOP_θ of every sample (T, n), as block-diagonal convex QPs of FORWARD_CHUNK samples (HiGHS).

    Falls back to one solve per sample if a block fails, so that the error names the sample.
    """
    l = _check_l(l)
    if isinstance(samples, InverseSample):
        samples = [samples]
    preps = _prepare_all(samples, l)
    n = preps[0].c.shape[0]
    theta, nu = _check_theta(theta, nu, n)
    out = np.empty((len(preps), n))
    for i0 in range(0, len(preps), FORWARD_CHUNK):
        chunk = preps[i0:i0 + FORWARD_CHUNK]
        cost, A, rlo, rhi, clo, chi, hd, Vs, offs = _fop_model(chunk, theta, nu)
        st, x, _ = _highs(cost, A, rlo, rhi, clo, chi, hd, time_limit_s=FORWARD_CHUNK_TIME_LIMIT_S)
        for j, s in enumerate(chunk):
            if x is not None:
                out[i0 + j] = Vs[j] @ x[offs[j]:offs[j] + n]
            else:
                try:
                    out[i0 + j] = forward_solve(samples[i0 + j], theta, nu, l)
                except RuntimeError as e:
                    raise RuntimeError(f"sample {i0 + j}: {e}") from None
    return out


def forward_solve(sample: InverseSample, theta, nu, l: float) -> np.ndarray:
    """The FOP_θ optimal action u (n,) of one sample: a strongly convex QP (epigraph with τ_k), HiGHS.

    HiGHS' QP solver occasionally fails on a tiny, well-posed instance ("Solve error", about 1 in
    1000 of our random robot-shaped FOPs); then SLSQP solves the same epigraph QP from a feasible
    point found by HiGHS' LP solver. Raises RuntimeError if the FOP is infeasible.
    """
    l = _check_l(l)
    s = _prepare(sample, 0, l)
    n = s.c.shape[0]
    theta, nu = _check_theta(theta, nu, n)
    cost, A, rlo, rhi, clo, chi, hd, Vs, offs = _fop_model([s], theta, nu)
    st, x, _ = _highs(cost, A, rlo, rhi, clo, chi, hd, time_limit_s=FORWARD_SAMPLE_TIME_LIMIT_S)
    if x is None:
        x = _slsqp_fallback(cost, A, rlo, rhi, clo, chi, hd)
        if x is None:
            raise RuntimeError(f"forward problem not solved: HiGHS status '{st}', SLSQP failed too")
    return Vs[0] @ x[:n]


def _slsqp_fallback(cost, A, rlo, rhi, clo, chi, hd):
    """min ½xᵀdiag(hd)x + costᵀx on the same rows and bounds, with scipy's SLSQP from an LP-feasible start."""
    from scipy.optimize import minimize
    st, x0, _ = _highs(np.zeros_like(cost), A, rlo, rhi, clo, chi)
    if x0 is None:     # infeasible (or HiGHS' LP failed as well)
        return None
    A = A.toarray()
    lo_rows, hi_rows = np.isfinite(rlo), np.isfinite(rhi)
    cons = [{"type": "ineq", "fun": lambda x: A[lo_rows] @ x - rlo[lo_rows], "jac": lambda x: A[lo_rows]},
            {"type": "ineq", "fun": lambda x: rhi[hi_rows] - A[hi_rows] @ x, "jac": lambda x: -A[hi_rows]}]
    bounds = [(None if not np.isfinite(a) else a, None if not np.isfinite(b) else b) for a, b in zip(clo, chi)]
    r = minimize(lambda x: 0.5 * hd @ x ** 2 + cost @ x, x0, jac=lambda x: hd * x + cost, bounds=bounds,
                 constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
    viol = max(np.max(rlo[lo_rows] - A[lo_rows] @ r.x, initial=0), np.max(A[hi_rows] @ r.x - rhi[hi_rows], initial=0))
    return r.x if r.success and viol < 1e-8 else None


# ----------------------------------------------------------------------------- duals and gaps

def dual_function(sample: InverseSample, theta, nu, l: float, z, lam=None, w=None) -> float:
    """g(λ, z, y = 1 − z, w) of the epigraph FOP (module docstring), for any z ∈ [0,1]^K, λ ≥ 0, w.

    Needs neither (11c) nor optimality: by weak duality it is a lower bound on min f_θ.
    """
    l = _check_l(l)
    s = _prepare(sample, 0, l)
    theta, nu = _check_theta(theta, nu, s.c.shape[0])
    z = np.asarray(z, float)
    lam = np.zeros(s.m) if lam is None else np.asarray(lam, float)
    w = np.zeros(s.p) if w is None else np.asarray(w, float)
    r = s.c + theta.T @ z + s.H.T @ lam + s.B.T @ w
    return float(-0.25 * r @ np.linalg.solve(s.P, r) - z @ nu - lam @ s.b + w @ (s.a - s.xhat))


def _dual_model(preps: Sequence[_Prep], theta: np.ndarray, nu: np.ndarray, mu: float | None):
    """Best duals for fixed (θ, ν), an LP with one block per sample: columns (z, λ, w, ε, e⁺, e⁻).

    (11b) y = 1 − z ≥ 0 folded into z ∈ [0, 1]; (11f) λ ≥ 0; τ_k = max(θ_kᵀu − ν_k, 0) is optimal.
    (11c)  Hᵀλ + Bᵀw + Σ_k z_k θ_k − (e⁺ − e⁻) = −(c + 2Pu)   (e ≡ 0 unless mu is given: an
                                                              L1-penalised residual, used while
                                                              searching for a θ that admits (11c))
    (11d)  ε = λᵀ(b − Hu) + wᵀ(x̂ − a − Bu) + Σ_k [τ_k − z_k (θ_kᵀu − ν_k)]  ≥ 0  (weak duality)
    Objective Σ_t ε_t + μ Σ_t ‖e_t‖₁; it separates by sample, so each block is that sample's best dual.
    """
    K, n = theta.shape
    rows = _Rows()
    cost, lo, hi, layout = [], [], [], []
    off = 0
    ehi = np.inf if mu is not None else 0.0
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
        for i in range(n):   # (11c), row i
            rows.add(np.r_[iz, il, iw, ir[i], ir[n + i]], np.r_[theta[:, i], s.H[:, i], s.B[:, i], -1.0, 1.0],
                     -s.grad[i], -s.grad[i])
        # (11d) ε − slackᵀλ − eq_resᵀw + Σ z_k s_k = Σ τ_k
        rows.add(np.r_[ie, il, iw, iz], np.r_[1.0, -s.slack, -s.eq_res, relu_s], tau.sum(), tau.sum())
        off += K + m + p + 1 + 2 * n
    A, rlo, rhi = rows.matrix(off)
    return np.concatenate(cost), A, rlo, rhi, np.concatenate(lo), np.concatenate(hi), layout


def _best_duals(preps, theta, nu, mu=None, time_limit_s=None):
    """Solve _dual_model; dict with z (T,K), lam, w (lists), eps (T,), resid (T,n); None if infeasible."""
    K, n = theta.shape
    cost, A, rlo, rhi, clo, chi, layout = _dual_model(preps, theta, nu, mu)
    st, x, _ = _highs(cost, A, rlo, rhi, clo, chi, time_limit_s=time_limit_s)
    if x is None:
        return None
    z = np.empty((len(preps), K))
    eps = np.empty(len(preps))
    resid = np.empty((len(preps), n))
    lam, w = [], []
    for t, (o, m, p) in enumerate(layout):
        z[t] = x[o:o + K]
        lam.append(x[o + K:o + K + m])
        w.append(x[o + K + m:o + K + m + p])
        eps[t] = x[o + K + m + p]
        e = x[o + K + m + p + 1:o + K + m + p + 1 + 2 * n]
        resid[t] = e[:n] - e[n:]
    return {"z": np.clip(z, 0, 1), "lam": lam, "w": w, "eps": np.maximum(eps, 0), "resid": resid}


def _exact_gaps(preps, theta, nu, progress=False):
    """Per-sample best ε under exact (11c); NaN where no dual satisfies (11c). Also returns z."""
    res = _best_duals(preps, theta, nu)
    if res is not None:
        return res["eps"], res["z"]
    # some sample has no (11c)-feasible dual: find which, one LP each
    K = theta.shape[0]
    eps, z = np.full(len(preps), np.nan), np.full((len(preps), K), np.nan)
    for t, s in enumerate(_bar(preps, progress, "duality gaps (per sample)")):
        r = _best_duals([s], theta, nu)
        if r is not None:
            eps[t], z[t] = r["eps"][0], r["z"][0]
    return eps, z


def duality_gaps(samples: Sequence[InverseSample], theta, nu, l: float, stationarity: str = "exact") -> np.ndarray:
    """Per-sample duality gap ε_t ≥ 0 at (θ, ν): the smallest f(u_t) − g over duals.

    stationarity="exact" (Problem 11): duals feasible for (11b), (11c), (11f) at the expert u_t,
        one LP per sample; inf where (11c) has no solution at this θ. Where the LP's tolerance
        puts it below the relaxed gap (a lower bound on it), the relaxed gap is returned.
    stationarity="relaxed": all duals of (11b), (11f), with the full dual function g (module
        docstring); by strong duality this is f_θ(u_t) − min f_θ, never larger than "exact".
    """
    l = _check_l(l)
    preps = _prepare_all(samples, l, check_feasible=True)
    theta, nu = _check_theta(theta, nu, preps[0].c.shape[0])
    if stationarity == "exact":
        eps, bad = _final_gaps(preps, samples, theta, nu, l, False)
        return np.where(bad, np.inf, eps)
    if stationarity == "relaxed":
        ustar = forward_solve_batch(samples, theta, nu, l)
        return _relaxed_from_actions(preps, theta, nu, ustar)
    raise ValueError(f"stationarity must be 'exact' or 'relaxed', got {stationarity!r}")


def _f(s: _Prep, theta, nu, u) -> float:
    return float(s.c @ u + u @ s.P @ u + np.maximum(theta @ u - nu, 0).sum())


def _relaxed_from_actions(preps, theta, nu, ustar) -> np.ndarray:
    return np.array([max(_f(s, theta, nu, s.u) - _f(s, theta, nu, us), 0.0) for s, us in zip(preps, ustar)])


def _final_gaps(preps, samples, theta, nu, l, progress):
    """Re-evaluated gaps: the exact (11c) best dual, and the Lagrangian-dual gap where (11c) is infeasible.

    The relaxed gap f(u_t) − f(u*_t) is a lower bound on the (11c) one, so the LP's value is raised
    to it where the LP's tolerances (~1e-9 on tiny gaps) put it below: Prop. 4 is sensitive to that
    (√(ε/l) turns an error of 1e-12 into 1e-5).
    """
    eps, _ = _exact_gaps(preps, theta, nu, progress)
    ustar = forward_solve_batch(samples, theta, nu, l)
    relaxed = _relaxed_from_actions(preps, theta, nu, ustar)
    bad = np.isnan(eps)
    eps = np.where(bad, relaxed, np.maximum(eps, relaxed))
    return eps, bad


def _bar(it, progress, desc, total=None):
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, desc=desc, total=total, file=sys.stderr, leave=False)


# ----------------------------------------------------------------------------- global: Problem 11

def _default_bounds(preps, K, theta_bound, nu_bound, dual_bound):
    u1 = max(float(np.abs(s.u).sum()) for s in preps)
    if nu_bound is None:
        # a ν beyond ±θ_bound·max‖u_t‖₁ makes the term inactive (or linear) on every sample, like
        # one at the bound does: the box loses no fit on the data
        nu_bound = theta_bound * u1 + 1.0
    if dual_bound is None:
        gmax = max(float(np.abs(s.grad).max(initial=0)) for s in preps)
        norms = [np.linalg.norm(M, axis=1) for s in preps for M in (s.H, s.B) if M.shape[0]]
        norms = np.concatenate(norms) if norms else np.ones(1)
        nmin = float(norms[norms > 1e-12].min()) if np.any(norms > 1e-12) else 1.0
        # (11c): Hᵀλ + Bᵀw = −(c + 2Pu) − Σ z_k θ_k, whose size is ≤ ‖c + 2Pu‖ + K·θ_bound per entry
        dual_bound = 10.0 * (gmax + K * theta_bound * math.sqrt(preps[0].c.shape[0])) / nmin
    return nu_bound, dual_bound


def _build_problem11(preps, K, l, rho, theta_bound, nu_bound, dual_bound):
    """Pyomo model of Problem 11 with explicit g and finite boxes on every variable."""
    import pyomo.environ as pyo
    T, n = len(preps), preps[0].c.shape[0]
    mdl = pyo.ConcreteModel(name="problem11")
    mdl.T = pyo.RangeSet(0, T - 1)
    mdl.K = pyo.RangeSet(0, K - 1)
    mdl.I = pyo.RangeSet(0, n - 1)
    mdl.IN = pyo.Set(dimen=2, initialize=[(t, j) for t in range(T) for j in range(preps[t].m)])
    mdl.EQ = pyo.Set(dimen=2, initialize=[(t, j) for t in range(T) for j in range(preps[t].p)])
    tb, nb, db = theta_bound, nu_bound, dual_bound
    tau_max = [tb * float(np.abs(s.u).sum()) + nb for s in preps]
    mdl.theta = pyo.Var(mdl.K, mdl.I, bounds=(-tb, tb), initialize=0.0)
    mdl.nu = pyo.Var(mdl.K, bounds=(-nb, nb), initialize=0.0)
    mdl.z = pyo.Var(mdl.K, mdl.T, bounds=(0.0, 1.0), initialize=0.0)        # (11f), (11b): y = 1 − z ≥ 0
    mdl.lam = pyo.Var(mdl.IN, bounds=(0.0, db), initialize=0.0)              # (11f)
    mdl.w = pyo.Var(mdl.EQ, bounds=(-db, db), initialize=0.0)
    mdl.tau = pyo.Var(mdl.K, mdl.T, bounds=lambda m_, k, t: (0.0, tau_max[t]), initialize=0.0)  # (11f)
    eps_max = []
    for t, s in enumerate(preps):
        # |f(u_t) − g| ≤ |cᵀu + 2uᵀPu| + Σ τ_max + K ν_max + λ_max ‖b‖₁ + w_max ‖a − x̂‖₁
        eps_max.append(abs(s.f_smooth + float(s.u @ s.P @ s.u)) + K * (tau_max[t] + nb)
                       + db * (np.abs(s.b).sum() + np.abs(s.a - s.xhat).sum()) + 1.0)
    mdl.eps = pyo.Var(mdl.T, bounds=lambda m_, t: (0.0, eps_max[t]), initialize=0.0)  # ε ≥ 0: weak duality

    # (11b) 1 − z_kt − y_kt = 0 with y_kt ≥ 0: y is eliminated, y_kt = 1 − z_kt, hence z_kt ≤ 1 above.

    def stationarity(m_, t, i):   # (11c) c + 2Qu_t + Hᵀλ + Bᵀw + Σ_k z_kt θ_k + 2l u_t = 0
        s = preps[t]
        return (float(s.grad[i])
                + sum(float(s.H[j, i]) * m_.lam[t, j] for j in range(s.m) if s.H[j, i] != 0)
                + sum(float(s.B[j, i]) * m_.w[t, j] for j in range(s.p) if s.B[j, i] != 0)
                + sum(m_.z[k, t] * m_.theta[k, i] for k in m_.K)) == 0
    mdl.c11c = pyo.Constraint(mdl.T, mdl.I, rule=stationarity)

    def dual_g(m_, t):
        # g on the (11c) set: −u_tᵀPu_t − Σ_k z_kt ν_k − λ_tᵀb_t + w_tᵀ(a_t − x̂_t)
        s = preps[t]
        return (-float(s.u @ s.P @ s.u) - sum(m_.z[k, t] * m_.nu[k] for k in m_.K)
                - sum(float(s.b[j]) * m_.lam[t, j] for j in range(s.m))
                + sum(float(s.a[j] - s.xhat[j]) * m_.w[t, j] for j in range(s.p)))
    mdl.g = pyo.Expression(mdl.T, rule=dual_g)

    def gap(m_, t):               # (11d) g + ε = cᵀu_t + Σ_k τ_kt + uᵀQu + l uᵀu
        return m_.g[t] + m_.eps[t] == preps[t].f_smooth + sum(m_.tau[k, t] for k in m_.K)
    mdl.c11d = pyo.Constraint(mdl.T, rule=gap)

    def epigraph(m_, k, t):       # (11e) τ_kt ≥ θ_kᵀu_t − ν_k
        u = preps[t].u
        return m_.tau[k, t] >= sum(float(u[i]) * m_.theta[k, i] for i in m_.I if u[i] != 0) - m_.nu[k]
    mdl.c11e = pyo.Constraint(mdl.K, mdl.T, rule=epigraph)

    # (11a) Σ_t ε_t² + ρ Σ_k ‖θ_k‖²
    mdl.obj = pyo.Objective(expr=sum(mdl.eps[t] ** 2 for t in mdl.T)
                            + rho * sum(mdl.theta[k, i] ** 2 for k in mdl.K for i in mdl.I))
    return mdl


def _fit_global(preps, K, l, rho, time_limit_s, mip_gap, theta_bound, nu_bound, dual_bound, progress):
    import pyomo.environ as pyo
    nu_bound, dual_bound = _default_bounds(preps, K, theta_bound, nu_bound, dual_bound)
    mdl = _build_problem11(preps, K, l, rho, theta_bound, nu_bound, dual_bound)
    n = preps[0].c.shape[0]
    solver = pyo.SolverFactory("scip_direct")
    if progress:
        print(f"[inverse] Problem 11 with SCIP: T={len(preps)} K={K} "
              f"({len(preps) * K * (n + 1)} bilinear terms), time limit {time_limit_s:g} s", file=sys.stderr)
    t0 = time.perf_counter()
    res = solver.solve(mdl, timelimit=float(time_limit_s), options={"limits/gap": float(mip_gap)},
                       load_solutions=False)
    dt = time.perf_counter() - t0
    tc = str(res.solver.termination_condition)
    status = {"maxTimeLimit": "time_limit"}.get(tc, tc)
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
    if mdl.theta[0, 0].value is None:
        raise RuntimeError(f"SCIP returned no solution for Problem 11 (status {tc})")
    theta = np.array([[pyo.value(mdl.theta[k, i]) for i in range(n)] for k in range(K)])
    nu = np.array([pyo.value(mdl.nu[k]) for k in range(K)])
    solver_eps = np.array([pyo.value(mdl.eps[t]) for t in range(len(preps))])
    lb = float(lb) if lb is not None and np.isfinite(float(lb)) else None
    return theta, nu, status, lb, dt, {"solver_objective": float(pyo.value(mdl.obj)),
                                       "solver_eps_max": float(solver_eps.max()),
                                       "nu_bound": nu_bound, "dual_bound": dual_bound}


# ----------------------------------------------------------------------------- scalable: alternating

def _theta_step(preps, Z, K, rho, theta_bound, nu_bound, mu: float | None, time_limit_s=None):
    """Problem 11 with z fixed: convex in (θ, ν, λ, w, τ, ε); solved as an LP by HiGHS.

    Objective Σ_t ε_t + μ Σ_t ‖e_t‖₁ + ρ Σ_k ‖θ_k‖₁, the L1 surrogate of (11a) (HiGHS' QP solver
    stalls on these degenerate QPs; its LP solvers do not). With mu=None (11c) holds exactly (e ≡ 0).
    Columns: θ (K·n), ν (K), |θ| (K·n), then per sample λ, w, τ (K), ε, e⁺ (n), e⁻ (n).
    """
    n = preps[0].c.shape[0]
    rows = _Rows()
    ith = np.arange(K * n).reshape(K, n)
    inu = K * n + np.arange(K)
    iab = K * n + K + np.arange(K * n)
    off = 2 * K * n + K
    cost = [np.zeros(K * n + K), np.full(K * n, rho)]
    lo = [np.full(K * n, -theta_bound), np.full(K, -nu_bound), np.zeros(K * n)]
    hi = [np.full(K * n, theta_bound), np.full(K, nu_bound), np.full(K * n, theta_bound)]
    for j in range(K * n):   # |θ| ≥ ±θ
        rows.add([iab[j], j], [1.0, -1.0], 0.0, np.inf)
        rows.add([iab[j], j], [1.0, 1.0], 0.0, np.inf)
    ehi = np.inf if mu is not None else 0.0
    ieps = []
    for t, s in enumerate(preps):
        m, p = s.m, s.p
        il = off + np.arange(m)
        iw = off + m + np.arange(p)
        it = off + m + p + np.arange(K)
        ie = off + m + p + K
        ir = ie + 1 + np.arange(2 * n)
        ieps.append(ie)
        cost += [np.zeros(m + p + K), [1.0], np.full(2 * n, mu or 0.0)]
        lo += [np.zeros(m), np.full(p, -np.inf), np.zeros(K), [0.0], np.zeros(2 * n)]
        hi += [np.full(m, np.inf), np.full(p, np.inf), np.full(K, np.inf), [np.inf], np.full(2 * n, ehi)]
        z = Z[t]
        for i in range(n):   # (11c): Hᵀλ + Bᵀw + Σ z_k θ_k − e = −(c + 2Pu)
            rows.add(np.r_[il, iw, ith[:, i], ir[i], ir[n + i]], np.r_[s.H[:, i], s.B[:, i], z, -1.0, 1.0],
                     -s.grad[i], -s.grad[i])
        # (11d): ε − slackᵀλ − eq_resᵀw − Σ τ_k + Σ_k z_k (uᵀθ_k − ν_k) = 0
        rows.add(np.r_[ie, il, iw, it, ith.ravel(), inu],
                 np.r_[1.0, -s.slack, -s.eq_res, -np.ones(K), np.outer(z, s.u).ravel(), -z], 0.0, 0.0)
        for k in range(K):   # (11e): τ_k − uᵀθ_k + ν_k ≥ 0
            rows.add(np.r_[it[k], ith[k], inu[k]], np.r_[1.0, -s.u, 1.0], 0.0, np.inf)
        off += m + p + K + 1 + 2 * n
    A, rlo, rhi = rows.matrix(off)
    st, x, _ = _highs(np.concatenate(cost), A, rlo, rhi, np.concatenate(lo), np.concatenate(hi),
                      ipm=off > IPM_MIN_COLUMNS, time_limit_s=time_limit_s)
    if x is None:
        return None
    return (np.clip(x[:K * n], -theta_bound, theta_bound).reshape(K, n),
            np.clip(x[K * n:K * n + K], -nu_bound, nu_bound), x[np.array(ieps)])


def _objective(eps, theta, rho) -> float:
    return float(np.sum(eps ** 2) + rho * np.sum(theta ** 2))


def _refine(preps, th, nu, rho, theta_bound, nu_bound, mu_schedule, uscale, max_iter, tol, deadline,
            history, tag, progress=False):
    """Alternate best duals (z-step) and θ-steps along the μ schedule (None = exact (11c))."""
    status = "converged"
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc=f"alternating ({tag})", unit="step", file=sys.stderr, leave=False)
    for mu_rel in mu_schedule:
        mu = None if mu_rel is None else mu_rel * uscale
        j_prev = np.inf
        for it in range(max_iter):
            left = deadline - time.perf_counter()
            if left <= 0:
                if bar is not None:
                    bar.close()
                return th, nu, "time_limit"
            duals = _best_duals(preps, th, nu, mu=mu, time_limit_s=left)             # z-step
            if duals is None:
                break   # (11c) infeasible at this θ: stay with the penalised solution
            j = float(np.sum(duals["eps"]) + (mu or 0.0) * np.abs(duals["resid"]).sum() + rho * np.abs(th).sum())
            history.append((tag, mu_rel, it, j))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(mu="exact" if mu_rel is None else f"{mu_rel:g}", objective=f"{j:.4g}")
            if np.isfinite(j_prev) and j_prev - j <= tol * max(j_prev, 1e-12):
                break
            j_prev = j
            step = _theta_step(preps, duals["z"], th.shape[0], rho, theta_bound, nu_bound, mu,
                               deadline - time.perf_counter())                        # θ-step
            if step is None:
                break
            th, nu, _ = step
    if bar is not None:
        bar.close()
    return th, nu, status


def _fit_alternating(preps, K, l, rho, time_limit_s, theta_bound, nu_bound, seed, progress,
                     restarts=4, max_iter=30, tol=1e-4, subsample=30, subsample_time_frac=0.3,
                     subsample_time_max_s=60.0,
                     mu_schedule=(1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)):
    """Scalable fit: candidates from a global solve on a subsample and random starts, refined on all data.

    With z fixed, exact (11c) pins θ (n equations per sample for K·n unknowns), so alternating on
    Problem 11 itself barely moves from where it starts, and from random starts it stalls in poor
    local minima. Hence the candidates:
      1. Problem 11 solved globally (SCIP) on `subsample` random samples (a fraction
         subsample_time_frac of the time limit, at most subsample_time_max_s): the ReLU structure is shared by all samples, so a
         small subsample locates it; then refined on all samples by exact alternation and,
         separately, by the penalised alternation of 2. started from μ = mu_schedule[1].
      2. `restarts` random starts, alternating on the penalised L1 surrogate
             min Σ_t ε_t + μ Σ_t ‖e_t‖₁ + ρ Σ_k ‖θ_k‖₁,  e_t the residual of (11c),
         (both blocks are LPs, each step decreases it) with μ raised along mu_schedule (relative
         to the size of the actions, as ε ~ ‖e‖·‖Δu‖) until (11c) holds, then exactly.
    Candidates are scored by (11a) Σ ε_t² + ρ Σ ‖θ_k‖² with re-evaluated gaps on all samples.
    """
    rng = np.random.default_rng(seed)
    T, n = len(preps), preps[0].c.shape[0]
    nu_bound, _ = _default_bounds(preps, K, theta_bound, nu_bound, 1.0)
    U = np.array([s.u for s in preps])
    G = np.array([s.grad for s in preps])
    gscale = float(np.median(np.linalg.norm(G, axis=1))) or 1.0
    uscale = float(np.median(np.linalg.norm(U, axis=1))) or 1.0
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    best, history, info = None, [], {"restarts": restarts}

    def consider(th, nu, status, tag):
        nonlocal best
        eps, _ = _exact_gaps(preps, th, nu)
        score = (int(np.sum(np.isnan(eps))), _objective(np.nan_to_num(eps), th, rho))
        history.append((tag, "final", score[0], score[1]))
        if best is None or score < best[0]:
            best = (score, th.copy(), nu.copy(), status, tag)

    if subsample and subsample > 0:
        idx = np.sort(rng.choice(T, size=min(subsample, T), replace=False))
        try:
            th, nu, st, lb, _, ginfo = _fit_global([preps[i] for i in idx], K, l, rho,
                                                   min(subsample_time_frac * time_limit_s, subsample_time_max_s),
                                                   1e-4, theta_bound,
                                                   nu_bound, None, progress)
            info.update(subsample=len(idx), subsample_status=st, subsample_bound=lb)
            consider(th, nu, "converged", "subsample")
            if T > len(idx):
                # exact alternation keeps the subsample's structure; the penalised one from a small μ
                # may move it to fit the other samples better: keep the better of both
                for tag, sched in (("subsample+exact", (None,)),
                                   ("subsample+penalised", tuple(mu_schedule[1:]) + (None,))):
                    th1, nu1, _ = _refine(preps, th, nu, rho, theta_bound, nu_bound, sched, uscale, max_iter,
                                          tol, deadline, history, tag, progress)
                    consider(th1, nu1, "converged", tag)
        except RuntimeError as e:
            info["subsample_error"] = str(e)
    for r in _bar(range(restarts), progress, "alternating restarts"):
        if time.perf_counter() > deadline:
            break
        # random θ with the size of the gradients the ReLU terms must cancel; kinks ν_k through
        # random expert actions so every term starts active on part of the data
        th = rng.normal(size=(K, n))
        th *= (gscale * rng.uniform(0.5, 2.0, size=(K, 1))) / np.linalg.norm(th, axis=1, keepdims=True)
        th = np.clip(th, -theta_bound, theta_bound)
        nu = np.clip(np.einsum("kn,kn->k", th, U[rng.integers(0, T, size=K)]), -nu_bound, nu_bound)
        th, nu, st = _refine(preps, th, nu, rho, theta_bound, nu_bound, tuple(mu_schedule) + (None,), uscale,
                             max_iter, tol, deadline, history, f"restart {r}", progress and T >= 1000)
        consider(th, nu, st, r)
    if best is None:
        raise RuntimeError("alternating method found no candidate within the time limit")
    _, th, nu, status, tag = best
    if time.perf_counter() > deadline:
        status = "time_limit"
    info.update(best_candidate=tag, history=history)
    return th, nu, status, None, time.perf_counter() - t0, info


# ----------------------------------------------------------------------------- public entry point

def fit_inverse(samples: Sequence[InverseSample], K: int, l: float = 1e-2, rho: float = 1e-3,
                method: str = "auto", time_limit_s: float = 300.0, mip_gap: float = 1e-4,
                theta_bound: float = 10.0, seed: int = 0, progress: bool = True, *,
                nu_bound: float | None = None, dual_bound: float | None = None, restarts: int = 4,
                max_iter: int = 30, tol: float = 1e-4, subsample: int = 30) -> InverseFit:
    """Fit K ReLU terms (θ_k, ν_k) so that every expert action is (nearly) optimal for FOP_θ.

    method: "global" (Problem 11, SCIP spatial branch-and-bound, time_limit_s and relative mip_gap),
    "alternating" (scalable: Problem 11 solved globally on `subsample` random samples plus
    `restarts` random starts, each refined on all samples by alternating convex HiGHS solves until
    the relative improvement is below `tol`; see _fit_alternating), or "auto" (global when
    T ≤ AUTO_GLOBAL_MAX_T and T·K ≤ AUTO_GLOBAL_MAX_TK, else alternating).
    Box bounds for the global model: θ ∈ [−theta_bound, theta_bound], ν ∈ ±nu_bound (default
    theta_bound·max‖u_t‖₁ + 1), λ ∈ [0, dual_bound], w ∈ ±dual_bound (default from (11c)).
    The returned gaps are re-evaluated at the returned (θ, ν) with the best (11c)-feasible duals.
    """
    if not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be an integer ≥ 1, got {K!r}")
    l = _check_l(l)
    if not rho >= 0:
        raise ValueError(f"rho must be ≥ 0, got {rho}")
    if not theta_bound > 0:
        raise ValueError(f"theta_bound must be > 0, got {theta_bound}")
    if isinstance(samples, InverseSample):
        samples = [samples]
    samples = list(samples)
    preps = _prepare_all(samples, l, check_feasible=True)
    T = len(preps)
    if method not in ("auto", "global", "alternating"):
        raise ValueError(f"method must be 'auto', 'global' or 'alternating', got {method!r}")
    auto = method == "auto"
    if auto:
        method = "global" if (T <= AUTO_GLOBAL_MAX_T and T * K <= AUTO_GLOBAL_MAX_TK) else "alternating"
    t0 = time.perf_counter()
    result = None
    if method == "global":
        try:
            result = _fit_global(preps, K, l, rho, time_limit_s, mip_gap, theta_bound, nu_bound, dual_bound,
                                 progress)
        except RuntimeError as e:
            if not auto:
                raise
            warnings.warn(f"global solve failed ({e}); method='auto' falls back to 'alternating'",
                          RuntimeWarning, stacklevel=2)
            method = "alternating"
    if result is None:
        result = _fit_alternating(preps, K, l, rho, time_limit_s, theta_bound, nu_bound, seed, progress,
                                  restarts, max_iter, tol, subsample)
    theta, nu, status, bound, _, info = result
    gaps, bad = _final_gaps(preps, samples, theta, nu, l, progress)
    n_bad = int(bad.sum())
    dt = time.perf_counter() - t0
    return InverseFit(theta=theta, nu=nu, l=l, rho=float(rho), gaps=gaps,
                      prop4_bound=float(math.sqrt(gaps.max() / l)), objective=_objective(gaps, theta, rho),
                      method=method, status=status, bound=bound, solve_time_s=dt, n_samples=T,
                      n_stationarity_infeasible=n_bad, info=info)


def cosine_similarity(actions, expert) -> float:
    """Cosine similarity of the stacked action sequences (T, n) (the paper's Tables 4–5 metric)."""
    a, e = np.asarray(actions, float).ravel(), np.asarray(expert, float).ravel()
    na, ne = np.linalg.norm(a), np.linalg.norm(e)
    return float(a @ e / (na * ne)) if na > 0 and ne > 0 else float("nan")
