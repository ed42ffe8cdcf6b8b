"""The lower level of the network case studies (AMoD Eq. 25, inventory Eq. 31): an LP with ReLU terms, by HiGHS.

    FOP_θ:  min_x  cᵀx + ½ xᵀ diag(q) x + l‖x‖² + Σ_k max(θ_kᵀx − μ_k, 0)
            s.t.   row_lo ≤ A x ≤ row_hi          (equality rows: row_lo = row_hi)
                   col_lo ≤ x ≤ col_hi

is Eq. 10 of the paper in a solver's form; each case study only supplies its sparse A (the network's
structure, fixed) and, at every step, c and the bounds (state, demand, subgoal). The ReLU terms are
the epigraph variables τ_k ≥ 0 with rows θ_kᵀx − τ_k ≤ μ_k and cost Σ_k τ_k, which equals
Σ_k max(θ_kᵀx − μ_k, 0) at the optimum. The unchanged FOP is K = 0 (or θ = 0).

The HiGHS model is built once (x, τ, the rows of A and the K ReLU rows). A solve only changes
costs and bounds in place, so HiGHS warm-starts from the previous basis; ``set_theta`` changes the
K ReLU rows' coefficients in place (a new θ never rebuilds anything). With q = 0 and l = 0 it is an
LP (simplex); otherwise HiGHS' QP solver runs.

``inverse_sample`` turns the same data plus an expert action into the generic per-sample form of
Problem 11 (offline.inverse.InverseSample): equality rows → a + B x = x̂, finite inequality sides
and column bounds → H x ≤ b, so the inverse problem sees exactly the problem this class solves.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from offline.inverse import InverseSample
from offline.inverse.highs import new_highs as _new_highs

__all__ = ["ReluLpFop", "LpSolution"]

_INF = math.inf


@dataclass
class LpSolution:
    """What one solve returned. ``ok`` is False (and x is NaN) when HiGHS found no optimum."""

    x: np.ndarray              # (n,) the decision
    objective: float           # the FOP's objective at x, ReLU terms included
    relu_penalty: float        # Σ_k max(θ_kᵀx − μ_k, 0) at x
    ok: bool
    status: str                # HiGHS model status, e.g. "Optimal", "Infeasible"
    solve_time_s: float        # wall time of the update + solve + read-out


class ReluLpFop:
    """FOP_θ with a fixed constraint matrix, updated in place at every step (see module docstring).

    Args:
        A: (m, n) constraint matrix (scipy.sparse or dense); its sparsity pattern is fixed.
        K: number of ReLU slots the model is built with (θ may use fewer; 0 = unchanged FOP).
        l: weight of l‖x‖² (Eq. 10's forward-stability term), ≥ 0.
        q_diag: (n,) diagonal quadratic cost (½ xᵀ diag(q) x), ≥ 0; None = 0.
        names: (n,) variable names (for θ files and error messages).
    """

    def __init__(self, A, K: int = 0, *, l: float = 0.0, q_diag: Sequence[float] | None = None,
                 names: Sequence[str] | None = None) -> None:
        import highspy

        A = sp.csr_matrix(A, dtype=float)
        self.m, self.n = A.shape
        if not (isinstance(K, (int, np.integer)) and K >= 0):
            raise ValueError(f"K must be an integer >= 0, got {K!r}")
        self.K = int(K)
        self.A = A
        self.names = list(names) if names is not None else [f"x{j}" for j in range(self.n)]
        if len(self.names) != self.n:
            raise ValueError(f"names has {len(self.names)} entries, A has {self.n} columns")
        q = np.zeros(self.n) if q_diag is None else np.asarray(q_diag, float).reshape(-1)
        if q.shape != (self.n,) or not np.all(np.isfinite(q)) or np.any(q < 0):
            raise ValueError(f"q_diag must be {self.n} finite numbers >= 0")
        self.q_diag = q
        self.l = self._check_l(l)
        self.theta = np.zeros((0, self.n))
        self.mu = np.zeros(0)
        self._theta_slots = np.zeros((self.K, self.n))

        h = _new_highs()
        self._h, self._hs = h, highspy
        inf = highspy.kHighsInf
        n, K = self.n, self.K
        # columns: x (n), τ (K)
        h.addVars(n, np.full(n, -inf), np.full(n, inf))
        if K:
            h.addVars(K, np.zeros(K), np.full(K, inf))
            h.changeColsCost(K, np.arange(n, n + K, dtype=np.int32), np.ones(K))
        # rows of A
        if self.m:
            csr = A.tocsr()
            h.addRows(self.m, np.full(self.m, -inf), np.full(self.m, inf), csr.nnz,
                      csr.indptr[:-1].astype(np.int32), csr.indices.astype(np.int32), csr.data.astype(float))
        # ReLU rows: θ_kᵀx − τ_k ≤ μ_k, dense in x so any θ fits without changing the pattern
        for k in range(K):
            idx = np.r_[np.arange(n), n + k].astype(np.int32)
            val = np.r_[np.zeros(n), -1.0]
            h.addRow(-inf, 0.0, len(idx), idx, val)
        self._col_idx = np.arange(n, dtype=np.int32)
        self._row_idx = np.arange(self.m, dtype=np.int32)
        self._relu_row_idx = np.arange(self.m, self.m + K, dtype=np.int32)
        self._hessian_dirty = True
        self._lp_status_optimal = highspy.HighsModelStatus.kOptimal

    @staticmethod
    def _check_l(l: float) -> float:
        l = float(l)
        if not (math.isfinite(l) and l >= 0):
            raise ValueError(f"l must be a finite number >= 0, got {l!r}")
        return l

    # ---------------------------------------------------------------- θ (no rebuild)
    def set_theta(self, theta, mu, l: float | None = None) -> None:
        """Install K_θ ≤ K ReLU terms (θ: (K_θ, n), μ: (K_θ,)) and optionally l; unused slots are inactive."""
        theta = np.atleast_2d(np.asarray(theta, float))
        if theta.size == 0:
            theta = theta.reshape(0, self.n)
        mu = np.asarray(mu, float).reshape(-1)
        if theta.shape[1] != self.n or mu.shape != (theta.shape[0],):
            raise ValueError(f"θ must be (K, {self.n}) and μ (K,), got {theta.shape} and {mu.shape}")
        if theta.shape[0] > self.K:
            raise ValueError(f"θ has {theta.shape[0]} ReLU terms but this FOP was built with K={self.K}")
        if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(mu))):
            raise ValueError("θ and μ must be finite")
        if l is not None:
            new_l = self._check_l(l)
            self._hessian_dirty |= new_l != self.l
            self.l = new_l
        slots = np.zeros((self.K, self.n))
        slots[: theta.shape[0]] = theta
        mus = np.zeros(self.K)
        mus[: theta.shape[0]] = mu
        h = self._h
        for k in range(self.K):
            row = int(self._relu_row_idx[k])
            for j in np.flatnonzero(slots[k] != self._theta_slots[k]):
                h.changeCoeff(row, int(j), float(slots[k, j]))
        if self.K:
            h.changeRowsBounds(self.K, self._relu_row_idx, np.full(self.K, -self._hs.kHighsInf), mus)
        self._theta_slots = slots
        self.theta, self.mu = theta.copy(), mu.copy()

    def relu_penalty(self, x) -> float:
        """Σ_k max(θ_kᵀx − μ_k, 0) of the installed θ at x."""
        if self.theta.shape[0] == 0:
            return 0.0
        return float(np.maximum(self.theta @ np.asarray(x, float) - self.mu, 0.0).sum())

    def objective(self, c, x) -> float:
        """The FOP's objective at x (ReLU terms and l included)."""
        x = np.asarray(x, float)
        return float(np.asarray(c, float) @ x + 0.5 * x @ (self.q_diag * x) + self.l * x @ x + self.relu_penalty(x))

    # ---------------------------------------------------------------- solve
    def checked_data(self, c, row_lo, row_hi, col_lo, col_hi) -> tuple[np.ndarray, ...]:
        """(c, row_lo, row_hi, col_lo, col_hi) as checked float vectors: what `solve` installs (the
        cvxpy statement of this FOP, offline.baselines.cvx_fop, reads the same data through it)."""
        return self._vectors(c, row_lo, row_hi, col_lo, col_hi)

    def _vectors(self, c, row_lo, row_hi, col_lo, col_hi):
        def vec(name, v, size, allow_inf):
            a = np.asarray(v, float).reshape(-1)
            if a.shape != (size,):
                raise ValueError(f"{name} must have {size} entries, got {a.shape}")
            bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
            if np.any(bad):
                raise ValueError(f"{name} must be {'non-NaN' if allow_inf else 'finite'} (entry {int(np.argmax(bad))})")
            return a
        c = vec("c", c, self.n, False)
        rl, rh = vec("row_lo", row_lo, self.m, True), vec("row_hi", row_hi, self.m, True)
        cl, ch = vec("col_lo", col_lo, self.n, True), vec("col_hi", col_hi, self.n, True)
        if np.any(rl > rh) or np.any(cl > ch):
            raise ValueError("lower bounds must not exceed upper bounds "
                             f"(rows {np.flatnonzero(rl > rh)[:5].tolist()}, "
                             f"columns {np.flatnonzero(cl > ch)[:5].tolist()})")
        return c, rl, rh, cl, ch

    def solve(self, c, row_lo, row_hi, col_lo, col_hi) -> LpSolution:
        """Update costs and bounds in place and solve; never raises on solver failure (ok=False)."""
        t0 = time.perf_counter()
        c, rl, rh, cl, ch = self._vectors(c, row_lo, row_hi, col_lo, col_hi)
        h = self._h
        h.changeColsCost(self.n, self._col_idx, c)
        h.changeColsBounds(self.n, self._col_idx, cl, ch)
        if self.m:
            h.changeRowsBounds(self.m, self._row_idx, rl, rh)
        if self._hessian_dirty:
            self._pass_hessian()
        h.run()
        status = h.getModelStatus()
        name = h.modelStatusToString(status)
        if status != self._lp_status_optimal:
            return LpSolution(np.full(self.n, np.nan), math.nan, math.nan, False, name, time.perf_counter() - t0)
        x = np.asarray(h.getSolution().col_value[: self.n], float)
        dt = time.perf_counter() - t0
        return LpSolution(x, self.objective(c, x), self.relu_penalty(x), True, name, dt)

    def _pass_hessian(self) -> None:
        diag = np.r_[self.q_diag + 2.0 * self.l, np.zeros(self.K)]
        nz = np.flatnonzero(diag)
        if nz.size:
            hs = self._hs
            hess = hs.HighsHessian()
            hess.dim_ = self.n + self.K
            hess.format_ = hs.HessianFormat.kTriangular
            hess.start_ = np.searchsorted(nz, np.arange(self.n + self.K + 1)).astype(np.int32)
            hess.index_ = nz.astype(np.int32)
            hess.value_ = diag[nz]
            self._h.passHessian(hess)
        elif self._h.getModel().hessian_.dim_:
            hess = self._hs.HighsHessian()  # back to an LP: an empty Hessian
            hess.dim_ = 0
            self._h.passHessian(hess)
        self._hessian_dirty = False

    # ---------------------------------------------------------------- inverse problem data
    def inverse_sample(self, c, row_lo, row_hi, col_lo, col_hi, x_expert, *, sparse: bool = False):
        """Problem 11's per-sample data of this FOP at (c, bounds) with the expert decision x_expert.

        Equality rows (lo = hi) become a + B x = x̂ (a = 0, x̂ = lo); every finite inequality side of a
        row or a column bound becomes a row of H x ≤ b. The cost is cᵀx + xᵀQx with Q = ½ diag(q);
        l is the inverse problem's own parameter. With sparse=True, H and B are scipy.sparse CSR
        matrices (for networks with hundreds of variables) — the inverse package must accept them.
        """
        c, rl, rh, cl, ch = self._vectors(c, row_lo, row_hi, col_lo, col_hi)
        x = np.asarray(x_expert, float).reshape(-1)
        if x.shape != (self.n,) or not np.all(np.isfinite(x)):
            raise ValueError(f"x_expert must be {self.n} finite numbers")
        A = self.A
        eq = np.flatnonzero(rl == rh)
        up = np.flatnonzero((rl != rh) & np.isfinite(rh))
        lo = np.flatnonzero((rl != rh) & np.isfinite(rl))
        cup, clo = np.flatnonzero(np.isfinite(ch)), np.flatnonzero(np.isfinite(cl))
        eye = sp.identity(self.n, format="csr")
        H = sp.vstack([A[up], -A[lo], eye[cup], -eye[clo]], format="csr")
        b = np.r_[rh[up], -rl[lo], ch[cup], -cl[clo]]
        B = A[eq]
        kw = {}
        if eq.size:
            kw = {"B": B if sparse else B.toarray(), "a": np.zeros(eq.size), "xhat": rl[eq].copy()}
        return InverseSample(c=c.copy(), Q=0.5 * self.q_diag, u=x.copy(),   # (n,): a diagonal Q stays a vector
                             H=H if sparse else H.toarray(), b=b, **kw)
