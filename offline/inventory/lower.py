"""The inventory lower level FOP_θ (Eq. 31) on the shared HiGHS ReLU-LP (offline.lp_fop.ReluLpFop).

Decision x = [w (W), f (E), ε_f⁺ (S), ε_f⁻ (S), ε_w⁺ (W), ε_w⁻ (W)]: production, shipments, and the
subgoal deviations of (31b) and (31f) split into non-negative parts so that |ε| = ε⁺ + ε⁻ is linear.

    min  [Σ_i m_iᴼ w_i + Σ_ij m_ijᵀ f_ij] + κ Σ_j (ε_fj⁺ + ε_fj⁻) + κ Σ_i (ε_wi⁺ + ε_wi⁻)
         + Σ_k max(θ_kᵀx − μ_k, 0) + l‖x‖²                                          (31a, Eq. 10)
    s.t. s_j + Σ_{i∈N⁻(j)} f_ij + ε_fj⁺ − ε_fj⁻ = q̂_j          j ∈ V_S             (31b)
         s_j + Σ_{i∈N⁻(j)} f_ij ≤ c_j                           j ∈ V_S             (31c)
         Σ_{j∈N⁺(i)} f_ij ≤ max(q_i, 0)                         i ∈ V_W             (31d)
         q_i + w_i − Σ_{j∈N⁺(i)} f_ij ≤ c_i                     i ∈ V_W             (31e)
         w_i + ε_wi⁺ − ε_wi⁻ = ŵ_i                              i ∈ V_W             (31f)
         f ≥ 0, 0 ≤ w ≤ production capacity, ε± ≥ 0                                (31g)

s_j = B_j − d_j is store j's stock after this step's demand (negative: backlog), the paper's
q_j^t − d_j^t; q_i = F_i is what factory i can ship now (SCIM_BENCHMARK.md §4). By default
(capacity_timing "env") the capacity rows bound the stocks the environment clips: (31c)
s_j + Σ f − d_j(t+1) ≤ c_j and (31e) without w (production is clipped only a step later);
capacity_timing "scim" keeps them as written above (the benchmark LP's, §6, §11.9). A store
already above its capacity gets nothing (the benchmark LP's 10⁴-weighted slack does the same).
q̂_j is the desired store stock at the start of the next step and ŵ_i the desired production
(the upper level's subgoal). κ = 1 is Eq. 31a's weight of the deviations. The unchanged FOP is
K = 0.

The bracketed cost terms are Eq. 31a's; ``cost_terms=False`` drops them, which is the objective of
the benchmark's own lower-level LP (lcp.mod, §6: subgoal deviations only) and the default: with
SCIM's production cost 5 > κ = 1, Eq. 31 with its cost terms never produces (missing ŵ by a unit
costs 1, producing it 5), so an upper level could not order anything through it.

The constraint matrix is built once; ``solve`` updates c and the bounds in place (ReluLpFop).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from offline.lp_fop import LpSolution, ReluLpFop

from .env import InventoryDecision, InventoryState
from .scenarios import InventoryScenario

__all__ = ["InventoryFop", "FopDecision", "variable_names", "eq31_rows"]

#: where (31c)/(31e) measure capacity (InventoryFop's capacity_timing)
CAPACITY_TIMINGS = ("env", "scim")

#: Eq. 31a's weight of the subgoal deviations |ε_f|, |ε_w| (money per unit of goods)
SUBGOAL_WEIGHT = 1.0


def variable_names(scenario: InventoryScenario) -> list[str]:
    """Names of the columns of x (θ files' input_names)."""
    sc = scenario
    return ([f"w[{n}]" for n in sc.warehouse_names] + [f"f[{e}]" for e in sc.edge_names]
            + [f"eps_f+[{n}]" for n in sc.store_names] + [f"eps_f-[{n}]" for n in sc.store_names]
            + [f"eps_w+[{n}]" for n in sc.warehouse_names] + [f"eps_w-[{n}]" for n in sc.warehouse_names])


def eq31_rows(scenario: InventoryScenario, production_in_31e: bool = True) -> sp.csr_matrix:
    """The fixed matrix A of Eq. 31: rows (31b) S, (31c) S, (31d) W, (31e) W, (31f) W.

    production_in_31e: (31e) bounds q_i + w_i − Σf (the paper's); False: q_i − Σf (the stock the
    environment clips at the end of the step; production is only clipped a step later)."""
    sc = scenario
    W, S, E = sc.n_warehouses, sc.n_stores, sc.n_edges
    Ain, Aout = sp.csr_matrix(sc.in_edges), sp.csr_matrix(sc.out_edges)
    Iw, Is = sp.identity(W, format="csr"), sp.identity(S, format="csr")
    Zs_w, Zw_w = sp.csr_matrix((S, W)), sp.csr_matrix((W, W))
    Zs_s, Zw_s = sp.csr_matrix((S, S)), sp.csr_matrix((W, S))
    Zw_e = sp.csr_matrix((W, E))
    rows = [
        sp.hstack([Zs_w, Ain, Is, -Is, sp.csr_matrix((S, W)), sp.csr_matrix((S, W))]),   # (31b)
        sp.hstack([Zs_w, Ain, Zs_s, Zs_s, sp.csr_matrix((S, W)), sp.csr_matrix((S, W))]),  # (31c)
        sp.hstack([Zw_w, Aout, Zw_s, Zw_s, Zw_w, Zw_w]),                                 # (31d)
        sp.hstack([Iw if production_in_31e else Zw_w, -Aout, Zw_s, Zw_s, Zw_w, Zw_w]),   # (31e)
        sp.hstack([Iw, Zw_e, Zw_s, Zw_s, Iw, -Iw]),                                      # (31f)
    ]
    return sp.vstack(rows, format="csr")


@dataclass
class FopDecision(InventoryDecision):
    """The lower level's action (w, f) and what the solver said."""

    x: np.ndarray          # (n,) the full decision (w, f, ε±)
    solution: LpSolution


class InventoryFop:
    """FOP_θ of Eq. 31 for one scenario, built once, solved in place at every step.

    Args:
        scenario: the supply network.
        K: ReLU slots (0: the unchanged FOP; θ may use fewer than K).
        l: weight of l‖x‖² (Eq. 10; 0 gives a pure LP).
        subgoal_weight: κ, the weight of |ε_f| and |ε_w| in (31a).
        cost_terms: include Eq. 31a's production and transport costs (default False: the
            benchmark LP's objective; see the module docstring).
        capacity_timing: "env" (default): (31c) and (31e) bound the stocks the environment clips,
            s_j + Σf − d_j(t+1) ≤ c_j (the shipment arrives tomorrow, after which tomorrow's
            demand leaves before the clip; d(t+1) as the benchmark's agent observes it) and
            q_i − Σf ≤ c_i; "scim": Eq. 31c/e as the paper and the benchmark LP write them,
            s_j + Σf ≤ c_j and q_i + w_i − Σf ≤ c_i, which mix timing (§11.9): a store whose
            peak demand exceeds its capacity can never be stocked for it.
    """

    def __init__(self, scenario: InventoryScenario, K: int = 0, l: float = 0.0,  # noqa: E741 (Eq. 10's l)
                 subgoal_weight: float = SUBGOAL_WEIGHT, cost_terms: bool = False,
                 capacity_timing: str = "env") -> None:
        sc = self.scenario = scenario
        W, S, E = sc.n_warehouses, sc.n_stores, sc.n_edges
        self.W, self.S, self.E = W, S, E
        self.n = W + E + 2 * S + 2 * W
        if not subgoal_weight > 0:
            raise ValueError(f"subgoal_weight must be > 0, got {subgoal_weight}")
        self.subgoal_weight = float(subgoal_weight)
        self.names = variable_names(sc)
        if capacity_timing not in CAPACITY_TIMINGS:
            raise ValueError(f"capacity_timing must be one of {CAPACITY_TIMINGS}, got {capacity_timing!r}")
        self.capacity_timing = capacity_timing
        self.A = eq31_rows(sc, production_in_31e=capacity_timing == "scim")
        self.lp = ReluLpFop(self.A, K=K, l=l, names=self.names)
        kappa = self.subgoal_weight
        self.cost_terms = bool(cost_terms)
        use = 1.0 if cost_terms else 0.0
        self.cost = np.r_[use * sc.production_cost, use * sc.transport_cost, np.full(2 * S + 2 * W, kappa)]
        self.col_lo = np.zeros(self.n)
        self.col_hi = np.r_[sc.production_capacity, np.full(self.n - W, np.inf)]

    @property
    def K(self) -> int:
        return self.lp.K

    @property
    def l(self) -> float:  # noqa: E743 (Eq. 10's l)
        return self.lp.l

    def set_theta(self, theta, mu, l: float | None = None) -> None:  # noqa: E741 (Eq. 10's l)
        """Install θ (K_θ × n over the columns of x) and μ; no rebuild."""
        self.lp.set_theta(theta, mu, l)

    # ---------------------------------------------------------------- data of one step
    def row_bounds(self, state: InventoryState, w_hat, q_hat) -> tuple[np.ndarray, np.ndarray]:
        """(row_lo, row_hi) of Eq. 31 at a state for the subgoal (ŵ (W,), q̂ (S,))."""
        sc = self.scenario
        w_hat = _vec("w_hat", w_hat, self.W)
        q_hat = _vec("q_hat", q_hat, self.S)
        s = state.stock_after_sales
        inf = np.inf
        lo = np.r_[q_hat - s, np.full(self.S, -inf), np.full(self.W, -inf), np.full(self.W, -inf), w_hat]
        room_s = sc.capacity_s - s + (state.next_demand if self.capacity_timing == "env" else 0.0)
        hi = np.r_[q_hat - s, np.maximum(room_s, 0.0), np.maximum(state.stock_w, 0.0),
                   sc.capacity_w - state.stock_w, w_hat]
        return lo, hi

    def solve(self, state: InventoryState, w_hat, q_hat) -> FopDecision:
        """FOP_θ(x_t, x̂_t): the action for subgoal (ŵ, q̂) at `state`."""
        lo, hi = self.row_bounds(state, w_hat, q_hat)
        sol = self.lp.solve(self.cost, lo, hi, self.col_lo, self.col_hi)
        x = sol.x
        if sol.ok:
            # HiGHS returns vertices up to its feasibility tolerance; shipments must never exceed
            # the stock they come from (31d), so tiny negative/excess values are cleaned here
            x = np.maximum(x, 0.0)
        W, E = self.W, self.E
        return FopDecision(w=x[:W].copy(), f=x[W:W + E].copy(), x=x, solution=sol)

    def expert_x(self, state: InventoryState, w, f, w_hat=None, q_hat=None) -> np.ndarray:
        """The full decision x of an expert action (w, f) for a subgoal; ε± from (31b)/(31f).

        Without a subgoal the implied one is used (ŵ = w, q̂ = s + Σ_i f_ij), so ε = 0."""
        sc = self.scenario
        w = _vec("w", w, self.W)
        f = _vec("f", f, self.E)
        arrive = state.stock_after_sales + sc.in_edges @ f
        eps_f = np.zeros(self.S) if q_hat is None else _vec("q_hat", q_hat, self.S) - arrive
        eps_w = np.zeros(self.W) if w_hat is None else _vec("w_hat", w_hat, self.W) - w
        return np.r_[w, f, np.maximum(eps_f, 0), np.maximum(-eps_f, 0), np.maximum(eps_w, 0), np.maximum(-eps_w, 0)]

    def implied_subgoal(self, state: InventoryState, w, f) -> tuple[np.ndarray, np.ndarray]:
        """(ŵ, q̂) an action implies: its production and the store stock it leads to next step."""
        w = _vec("w", w, self.W)
        f = _vec("f", f, self.E)
        return w.copy(), state.stock_after_sales + self.scenario.in_edges @ f

    def inverse_sample(self, state: InventoryState, w, f, w_hat=None, q_hat=None):
        """Problem 11's per-sample data (offline.inverse.InverseSample) of an expert action (w, f)."""
        if w_hat is None or q_hat is None:
            w_hat, q_hat = self.implied_subgoal(state, w, f)
        lo, hi = self.row_bounds(state, w_hat, q_hat)
        x = self.expert_x(state, w, f, w_hat, q_hat)
        return self.lp.inverse_sample(self.cost, lo, hi, self.col_lo, self.col_hi, x)


def _vec(name: str, v, size: int) -> np.ndarray:
    a = np.asarray(v, dtype=float).reshape(-1)
    if a.shape != (size,):
        raise ValueError(f"{name} must have {size} entries, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a
