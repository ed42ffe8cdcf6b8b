"""The cvxpy statement of a network FOP (AMoD Eq. 25, inventory Eq. 31), built from its ReluLpFop.

One statement of each FOP: the constraint matrix A, the number of ReLU slots K, the diagonal
quadratic cost q and Eq. 10's l are read from the `offline.lp_fop.ReluLpFop` the closed loop
solves, and a step's data (c, row and column bounds) comes through `ReluLpFop.checked_data`, so
the cvxpy problem is that FOP written for a differentiable solver:

    min_{x, τ}  cᵀx + ½ xᵀ diag(q) x + l‖x‖² + Σ_k τ_k                           (Eq. 10)
    s.t.        A_eq x = b_eq,  A_up x ≤ b_up,  A_lo x ≥ b_lo       (the FOP's rows)
                x_j ≤ x_hi_j (j ∈ finite upper bounds),  x_j ≥ x_lo_j (finite lower bounds)
                θ_kᵀx − τ_k ≤ μ_k,  τ ≥ 0                           (the ReLU terms' epigraphs)

With l > 0 the solution is unique and differentiable in every parameter (what cvxpylayers needs).
Parameters: c, the finite row and column sides, θ (K × n) and μ (K): the problem is DPP
(θ multiplies the variable x, nothing multiplies two parameters), so a CvxpyLayer over it is
canonicalised once. Which sides are finite and which rows are equalities (the *pattern*) is fixed
per FOP (a case study's bounds have the same shape at every step); `values` refuses data of another
pattern with the entries that differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offline.lp_fop import ReluLpFop

__all__ = ["BoundPattern", "CvxpyFop"]


@dataclass(frozen=True)
class BoundPattern:
    """Which rows of A are equalities / have a finite upper / lower side, and which columns have
    finite bounds (index arrays into the rows and columns)."""

    eq: np.ndarray
    up: np.ndarray
    lo: np.ndarray
    col_up: np.ndarray
    col_lo: np.ndarray

    @classmethod
    def of(cls, row_lo, row_hi, col_lo, col_hi) -> "BoundPattern":
        eq = row_lo == row_hi
        return cls(eq=np.flatnonzero(eq), up=np.flatnonzero(~eq & np.isfinite(row_hi)),
                   lo=np.flatnonzero(~eq & np.isfinite(row_lo)), col_up=np.flatnonzero(np.isfinite(col_hi)),
                   col_lo=np.flatnonzero(np.isfinite(col_lo)))

    def same(self, other: "BoundPattern") -> str | None:
        """None if equal, else which part differs (for an error message)."""
        for name in ("eq", "up", "lo", "col_up", "col_lo"):
            a, b = getattr(self, name), getattr(other, name)
            if a.shape != b.shape or np.any(a != b):
                diff = np.setxor1d(a, b)[:5].tolist()
                return f"{name} (entries {diff})"
        return None


class CvxpyFop:
    """The cvxpy problem of a ReluLpFop (module docstring), DPP, with the step's data as Parameters.

    Args:
        lp: the FOP (its A, K, q_diag and l; l may be overridden: cvxpylayers needs l > 0).
        row_lo, row_hi, col_lo, col_hi: one step's bounds, fixing the pattern (module docstring).
        l: Eq. 10's weight (None: lp.l).
    """

    def __init__(self, lp: ReluLpFop, row_lo, row_hi, col_lo, col_hi, *,
                 l: float | None = None) -> None:  # noqa: E741 (Eq. 10's l)
        import cvxpy as cp

        self.lp = lp
        n, K = lp.n, lp.K
        _, rl, rh, cl, ch = lp.checked_data(np.zeros(n), row_lo, row_hi, col_lo, col_hi)
        self.pattern = pat = BoundPattern.of(rl, rh, cl, ch)
        self.l = lp.l if l is None else float(l)
        if not self.l >= 0:
            raise ValueError(f"l must be >= 0, got {self.l}")
        A = lp.A.tocsr()
        self.x = x = cp.Variable(n, name="x")
        self.c = cp.Parameter(n, name="c")
        # one Parameter per non-empty side: (name, Parameter, which entries of row_lo/row_hi/col_lo/col_hi)
        self._sides: list[tuple[str, object, np.ndarray]] = []
        cons = []
        rows = (("b_eq", "row_lo", pat.eq, A[pat.eq], "=="), ("b_up", "row_hi", pat.up, A[pat.up], "<="),
                ("b_lo", "row_lo", pat.lo, A[pat.lo], ">="))
        for name, src, idx, M, sense in rows + (("x_hi", "col_hi", pat.col_up, None, "<="),
                                                ("x_lo", "col_lo", pat.col_lo, None, ">=")):
            if not idx.size:
                continue
            par = cp.Parameter(idx.size, name=name)
            lhs = M @ x if M is not None else x[idx]
            cons.append(lhs == par if sense == "==" else lhs <= par if sense == "<=" else lhs >= par)
            self._sides.append((src, par, idx))
        cost = self.c @ x
        quad = 0.5 * lp.q_diag + self.l
        if np.any(quad > 0):
            cost = cost + cp.sum(cp.multiply(quad, cp.square(x)))
        self.theta = cp.Parameter((K, n), name="theta") if K else None
        self.mu = cp.Parameter(K, name="mu") if K else None
        if K:
            self.tau = tau = cp.Variable(K, name="tau")
            cons += [self.theta @ x - tau <= self.mu, tau >= 0]
            cost = cost + cp.sum(tau)
        self.problem = cp.Problem(cp.Minimize(cost), cons)
        if not self.problem.is_dpp():
            raise AssertionError("the cvxpy statement of the FOP is not DPP")

    # ---------------------------------------------------------------- data
    @property
    def parameters(self) -> list:
        """The Parameters in the order of `data_values` + `theta_values` (c, the finite sides, θ, μ)."""
        return [self.c] + [par for _, par, _ in self._sides] + ([self.theta, self.mu] if self.lp.K else [])

    def data_values(self, c, row_lo, row_hi, col_lo, col_hi) -> list[np.ndarray]:
        """The data Parameters' values (c, then each finite side) of one step."""
        c, rl, rh, cl, ch = self.lp.checked_data(c, row_lo, row_hi, col_lo, col_hi)
        diff = self.pattern.same(BoundPattern.of(rl, rh, cl, ch))
        if diff is not None:
            raise ValueError(f"bounds of another pattern than the one this cvxpy FOP was built with: {diff}")
        data = {"row_lo": rl, "row_hi": rh, "col_lo": cl, "col_hi": ch}
        return [c] + [data[src][idx] for src, _, idx in self._sides]

    def theta_values(self, theta, mu) -> list[np.ndarray]:
        """θ (K_θ ≤ K rows, the rest inactive: zero rows with μ = 0) and μ as the K slots' values."""
        K, n = self.lp.K, self.lp.n
        if not K:
            return []
        theta = np.atleast_2d(np.asarray(theta, float))
        theta = theta.reshape(-1, n) if theta.size else np.zeros((0, n))
        mu = np.asarray(mu, float).reshape(-1)
        if theta.shape[0] > K or mu.shape != (theta.shape[0],):
            raise ValueError(f"θ must be (≤{K}, {n}) and μ matching, got {theta.shape} and {mu.shape}")
        slots, mus = np.zeros((K, n)), np.zeros(K)
        slots[: theta.shape[0]], mus[: theta.shape[0]] = theta, mu
        return [slots, mus]

    def solve(self, c, row_lo, row_hi, col_lo, col_hi, theta=None, mu=None, solver: str = "CLARABEL") -> np.ndarray:
        """x* of one step (θ None: the installed lp.theta, lp.mu); raises RuntimeError without an optimum."""
        vals = self.data_values(c, row_lo, row_hi, col_lo, col_hi)
        if theta is None:
            theta, mu = self.lp.theta, self.lp.mu
        vals += self.theta_values(theta, mu)
        for p, v in zip(self.parameters, vals):
            p.value = v
        self.problem.solve(solver=solver)
        if self.problem.status != "optimal":
            raise RuntimeError(f"cvxpy FOP: solver {solver} returned {self.problem.status}")
        return np.asarray(self.x.value, float)

    def layer(self, **kw):
        """A cvxpylayers.torch.CvxpyLayer of this problem: parameters in `parameters` order → (x,)."""
        from cvxpylayers.torch import CvxpyLayer

        return CvxpyLayer(self.problem, parameters=self.parameters, variables=[self.x], **kw)
