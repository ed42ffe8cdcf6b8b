"""The AMoD lower level: Eq. 25 on the shared HiGHS ReLU-LP (offline.lp_fop.ReluLpFop).

    min_{f,g,ε}  c_fᵀf − p̃ᵀg + M·1ᵀε + Σ_k max(θ_kᵀx − μ_k, 0) + l‖x‖²,   x = [f; g; ε]
    s.t.  q − A(f + g) + ε ≥ q̂        (N rows: reach the subgoal; ε is Remark 3's relaxation)
          q − G(f + g) ≥ 0             (N rows: no region sends more vehicles than it has idle)
          f ≥ 0,  0 ≤ g ≤ λ_t,  ε ≥ 0

f (E,) rebalancing flows on the edges i → j (i ≠ j); g (P,) passenger flows on the OD pairs
(intra-region trips i → i included); q (N,) idle vehicles; q̂ (N,) the upper level's desired idle
distribution; λ_t (P,) this step's requests. A (N × E+P) is the node–edge incidence matrix
(+1 at the origin, −1 at the destination; 0 for i → i), so q − A(f + g) is where the vehicles
would be if every trip ended within the step — the paper's one-step model; G (N × E+P) has +1 at
the origin only. c_f = the empty trips' operating cost; p̃ = price − the passenger trip's
operating cost (a served trip's margin; the paper's p). M (eps_penalty) makes ε a last
resort: with rebalancing allowed between every pair of regions, any q̂ with Σq̂ = Σq is reachable
and ε = 0.

The paper's ReLU term max(−θ_f⁽ᵏ⁾ᵀf + θ_g⁽ᵏ⁾ᵀg − μ_k, 0) is the generic max(θ_kᵀx − μ_k, 0) with
θ_k = [−θ_f⁽ᵏ⁾; θ_g⁽ᵏ⁾; θ_ε⁽ᵏ⁾] over x; θ files store that θ_k (alpha) with the column names
`input_names` (f[i->j], g[i->j], eps[i]). K = 0 is the unchanged FOP (Bi-level-unchanged).

A θ may also carry learned linear cost terms (offline.amod.cost_terms: the cost of a vehicle-step
on f and on g, possibly by stage of the episode), stored by name in the θ file's `cost_weights`;
`set_theta` turns them into a (T, n) table once and `data` adds row t to the cost, so they too
only change costs in place.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from offline.amod.cost_terms import correction_table
from offline.amod.sim import AmodSim, AmodState
from offline.lp_fop import ReluLpFop

__all__ = ["Eq25Fop", "Eq25Solution", "DEFAULT_L"]

#: the l of Eq. 10 in the closed loop: 0, i.e. Eq. 25 as the paper writes it, an LP. With l > 0
#: HiGHS' active-set QP solver cycles on some of these network QPs (measured: 16 regions,
#: l = 1e-3 and 1e-4, > 47,000 ASM iterations without progress on a 512-column instance, while
#: the LP takes ~1 ms), so the loop solves the LP; the inverse fit keeps its l > 0 (Prop. 4).
DEFAULT_L = 0.0


@dataclass
class Eq25Solution:
    f: np.ndarray          # (E,) rebalancing flows (real; the simulator rounds them)
    g: np.ndarray          # (P,) passenger flows
    eps: np.ndarray        # (N,) subgoal relaxation (0 when q̂ is reachable)
    ok: bool
    status: str
    solve_time_s: float    # HiGHS update + solve
    objective: float


class Eq25Fop:
    """Eq. 25 for one simulator's network, built once; `solve(state, q̂)` updates it in place.

    K: ReLU slots (0: unchanged FOP). l: weight of l‖x‖² (Eq. 10). eps_penalty: $ per vehicle of
    subgoal shortfall (default: 10 × the largest price).
    """

    def __init__(self, sim: AmodSim, K: int = 0, l: float = DEFAULT_L, eps_penalty: float | None = None) -> None:
        self.sim = sim
        N, E, P = sim.N, sim.E, sim.P
        self.N, self.E, self.P = N, E, P
        self.n = E + P + N
        self.sl_f, self.sl_g, self.sl_eps = slice(0, E), slice(E, E + P), slice(E + P, E + P + N)
        src = np.r_[sim.edges[:, 0], sim.od[:, 0]]
        dst = np.r_[sim.edges[:, 1], sim.od[:, 1]]
        cols = np.arange(E + P)
        inc = sp.coo_matrix((np.r_[np.ones(E + P), -np.ones(E + P)], (np.r_[src, dst], np.r_[cols, cols])),
                            shape=(N, E + P)).tocsr()
        inc.sum_duplicates()          # i → i: +1 − 1 = 0
        inc.eliminate_zeros()
        out = sp.coo_matrix((np.ones(E + P), (src, cols)), shape=(N, E + P)).tocsr()
        self.A_inc, self.G_out = inc, out
        A = sp.vstack([sp.hstack([inc, -sp.identity(N)]),            # A(f+g) − ε ≤ q − q̂
                       sp.hstack([out, sp.csr_matrix((N, N))])], format="csr")   # G(f+g) ≤ q
        self.A = A
        self.names = ([f"f[{i}->{j}]" for i, j in sim.edges] + [f"g[{i}->{j}]" for i, j in sim.od]
                      + [f"eps[{i}]" for i in range(N)])
        self.eps_penalty = float(eps_penalty if eps_penalty is not None else 10.0 * max(sim.price.max(), 1.0))
        self.c_f = sim.reb_cost
        self.lp = ReluLpFop(A, K=K, l=l, names=self.names)
        self.K = K
        self.cost_correction: np.ndarray | None = None    # (T, n) learned cost terms, None: none

    # ---------------------------------------------------------------- θ
    def set_theta(self, theta) -> None:
        """Install a θ (offline.amod θ file object, hiopt_ros.control.theta.Theta) or clear it (None)."""
        if theta is None:
            self.lp.set_theta(np.zeros((0, self.n)), np.zeros(0))
            self.cost_correction = None
            return
        if list(theta.input_names) != self.names:
            raise ValueError(f"θ was fitted for another network ({len(theta.input_names)} columns "
                             f"{theta.input_names[:2]}…, this FOP has {self.n} {self.names[:2]}…)")

        table = correction_table(self.sim, theta.cost_weights) if theta.cost_weights else None
        self.lp.set_theta(theta.alpha, theta.beta, l=theta.l if theta.l > 0 else None)
        self.cost_correction = table

    # ---------------------------------------------------------------- data of one step
    def data(self, state: AmodState, qhat) -> tuple[np.ndarray, ...]:
        """(c, row_lo, row_hi, col_lo, col_hi) of Eq. 25 at this state and subgoal."""
        sim, N = self.sim, self.N
        qhat = np.asarray(qhat, float).reshape(-1)
        if qhat.shape != (N,) or not np.all(np.isfinite(qhat)):
            raise ValueError(f"subgoal q̂ must be {N} finite numbers, got shape {qhat.shape}")
        t = min(state.t, sim.T - 1)
        margin = sim.price[t] - sim.pax_cost_t[t]
        c = np.r_[self.c_f, -margin, np.full(N, self.eps_penalty)]
        if self.cost_correction is not None:
            c = c + self.cost_correction[t]
        q = state.idle.astype(float)
        row_lo = np.full(2 * N, -np.inf)
        row_hi = np.r_[q - qhat, q]
        col_lo = np.zeros(self.n)
        col_hi = np.r_[np.full(self.E, np.inf), state.requests.astype(float), np.full(N, np.inf)]
        return c, row_lo, row_hi, col_lo, col_hi

    def solve(self, state: AmodState, qhat) -> Eq25Solution:
        t0 = time.perf_counter()
        sol = self.lp.solve(*self.data(state, qhat))
        x = np.maximum(np.nan_to_num(sol.x, nan=0.0), 0.0)
        return Eq25Solution(f=x[self.sl_f], g=x[self.sl_g], eps=x[self.sl_eps], ok=sol.ok, status=sol.status,
                            solve_time_s=time.perf_counter() - t0, objective=sol.objective)

    def __call__(self, state: AmodState, qhat) -> tuple[np.ndarray, np.ndarray, dict]:
        """The lower-level interface the environments use: (f, g, info)."""
        s = self.solve(state, qhat)
        return s.f, s.g, {"ok": s.ok, "status": s.status, "solve_time_s": s.solve_time_s,
                          "eps": float(s.eps.sum())}

    # ---------------------------------------------------------------- expert data
    def implied_subgoal(self, state: AmodState, f, g) -> np.ndarray:
        """q̂ = q − A(f + g): the subgoal under which the decision (f, g) reaches it exactly (ε = 0)."""
        return state.idle - self.A_inc @ np.r_[f, g]

    def x_of(self, f, g, eps=None) -> np.ndarray:
        return np.r_[f, g, np.zeros(self.N) if eps is None else eps]

    def inverse_sample(self, state: AmodState, qhat, f, g, sparse: bool = True):
        """Problem 11's per-sample data (offline.inverse.InverseSample) of Eq. 25 with expert flows (f, g)."""
        return self.lp.inverse_sample(*self.data(state, qhat), self.x_of(f, g), sparse=sparse)
