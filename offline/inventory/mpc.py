"""The inventory MPCs: multi-step LPs with perfect demand knowledge (Pyomo + HiGHS), first step applied.

Two experts share one model (steps k = 0 … H−1 are environment steps t … t+H−1; the realised
demand d(t+k), 0 from T on):

    min Σ_k [ Σ_i c_P P_ik + Σ_e c_e q_ek + Σ_n z_nk + κ Σ_n o_nk ]          (revenue: a constant)
    F_i0 = S_i(t−1) + R_i(t),   F_ik = S_i,k−1 + P_i,k−1                        (production: 1 step)
    X_ik = F_ik − Σ_{e∈N⁺(i)} q_ek,   X_jk = S_j,k−1 + Q_jk + Σ_{e∈N⁻(j), k−L_e ≥ 0} q_e,k−L_e − d_jk
    S_nk = X_nk − o_nk ≤ C_n,   o ≥ 0                          (overflow at the env's penalty κ)
    z_nk ≥ h_n X_nk,  z_nk ≥ −κ_n X_nk                          (storage of X⁺, backlog of X⁻)
    shipping: q_ek ≤ F_ik per edge (the environment's own limit, §4.3)            [InventoryMpc]
              Σ_{e∈N⁺(i)} q_ek ≤ S_i,k−1 (S_i(t−1) at k = 0)     [ScimMpc, scim_shipping_lag]

* :class:`InventoryMpc` (the project's expert and Table 1's reference row): the whole remaining
  episode, the environment's dynamics and costs exactly, so its plan's cost is what the
  environment charges; its value at t = 0 bounds every policy with non-negative actions on that
  demand sample (it is the LP relaxation of the episode).
* :class:`ScimMpc` (the benchmark's oracle, §8.3): a 10-step horizon, re-planned every step, and
  the benchmark's shipping lag (§11.1): it ships only the stock held at the end of the previous
  step, so production is shippable two steps after ordering in its model, one in the environment.
  The benchmark's capacities are hard limits; here overflow is allowed at κ (the same solution
  whenever the hard-limit model is feasible, and no infeasibility from states it did not create).

One Pyomo model per horizon length is built once (mutable parameters) and re-solved through the
persistent ``appsi_highs`` interface.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .env import InventoryDecision, InventoryEnv, InventoryState
from .scenarios import InventoryScenario

__all__ = ["InventoryMpc", "ScimMpc", "MpcDecision"]


@dataclass
class MpcDecision(InventoryDecision):
    """The MPC's first-step action (w: production, f: shipments) and its plan's objective."""

    objective: float        # planned reward over the horizon (revenue − costs)
    horizon: int            # H used
    solve_time_s: float     # parameter update + solve + read-out


class InventoryMpc:
    """The perfect-knowledge MPC (see the module docstring).

    Args:
        scenario: the supply network.
        horizon: planning steps (None: the whole remaining episode, the upper bound).
        scim_shipping_lag: ship only the previous step's stock (the benchmark's oracle, §11.1).
        plan_past_end: plan `horizon` steps even past the episode's end (demand 0 there), as the
            benchmark's oracle does; else the horizon stops at the episode's last step.
    """

    name = "MPC (perfect knowledge, whole episode)"

    def __init__(self, scenario: InventoryScenario, horizon: int | None = None, scim_shipping_lag: bool = False,
                 plan_past_end: bool = False) -> None:
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be >= 1 (or None), got {horizon}")
        if plan_past_end and horizon is None:
            raise ValueError("plan_past_end needs a finite horizon")
        self.scenario = scenario
        self.horizon = horizon
        self.scim_shipping_lag = bool(scim_shipping_lag)
        self.plan_past_end = bool(plan_past_end)
        self._models: dict[int, tuple] = {}

    def _model(self, H: int):
        if H in self._models:
            return self._models[H]
        import pyomo.environ as pyo
        from pyomo.contrib import appsi

        sc = self.scenario
        W, S, E = sc.n_warehouses, sc.n_stores, sc.n_edges
        m = pyo.ConcreteModel(name=f"inventory_mpc_{sc.name}_H{H}")
        m.I, m.J, m.E, m.K = (pyo.RangeSet(0, W - 1), pyo.RangeSet(0, S - 1), pyo.RangeSet(0, E - 1),
                              pyo.RangeSet(0, H - 1))
        m.S0w = pyo.Param(m.I, mutable=True, initialize=0.0)       # S_w(t−1)
        m.R0 = pyo.Param(m.I, mutable=True, initialize=0.0)        # R(t)
        m.S0s = pyo.Param(m.J, mutable=True, initialize=0.0)       # S_s(t−1)
        m.Q = pyo.Param(m.J, m.K, mutable=True, initialize=0.0)    # known arrivals Q(t+k)
        m.d = pyo.Param(m.J, m.K, mutable=True, initialize=0.0)
        pcap = sc.production_capacity
        m.P = pyo.Var(m.I, m.K, bounds=lambda _, i, k: (0.0, None if np.isinf(pcap[i]) else float(pcap[i])))
        m.q = pyo.Var(m.E, m.K, domain=pyo.NonNegativeReals)
        m.Xw, m.Xs = pyo.Var(m.I, m.K), pyo.Var(m.J, m.K)
        m.ow = pyo.Var(m.I, m.K, domain=pyo.NonNegativeReals)
        m.os = pyo.Var(m.J, m.K, domain=pyo.NonNegativeReals)
        m.zw, m.zs = pyo.Var(m.I, m.K), pyo.Var(m.J, m.K)
        out_e = [[e for e in range(E) if sc.edges[e, 0] == i] for i in range(W)]
        in_e = [[e for e in range(E) if sc.edges[e, 1] == j] for j in range(S)]
        L = sc.lead_time

        def Sw(i, k):      # factory stock at the end of step k (S_w(t−1) for k = −1)
            return m.S0w[i] if k < 0 else m.Xw[i, k] - m.ow[i, k]

        def F(i, k):       # what the factory can ship at step k
            return m.S0w[i] + m.R0[i] if k == 0 else Sw(i, k - 1) + m.P[i, k - 1]

        m.fac = pyo.Constraint(m.I, m.K, rule=lambda m_, i, k:
                               m_.Xw[i, k] == F(i, k) - sum(m_.q[e, k] for e in out_e[i]))
        if self.scim_shipping_lag:
            m.ship = pyo.Constraint(m.I, m.K, rule=lambda m_, i, k: sum(m_.q[e, k] for e in out_e[i]) <= Sw(i, k - 1))
        else:
            pairs = [(e, k) for e in range(E) for k in range(H)]
            m.ship = pyo.Constraint(pairs, rule=lambda m_, e, k: m_.q[e, k] <= F(int(sc.edges[e, 0]), k))

        def store(m_, j, k):
            prev = m_.S0s[j] if k == 0 else m_.Xs[j, k - 1] - m_.os[j, k - 1]
            shipped = sum(m_.q[e, k - int(L[e])] for e in in_e[j] if k - int(L[e]) >= 0)
            return m_.Xs[j, k] == prev + m_.Q[j, k] + shipped - m_.d[j, k]
        m.sto = pyo.Constraint(m.J, m.K, rule=store)
        m.cap_w = pyo.Constraint(m.I, m.K, rule=lambda m_, i, k: m_.Xw[i, k] - m_.ow[i, k] <= float(sc.capacity_w[i]))
        m.cap_s = pyo.Constraint(m.J, m.K, rule=lambda m_, j, k: m_.Xs[j, k] - m_.os[j, k] <= float(sc.capacity_s[j]))
        m.zw_h = pyo.Constraint(m.I, m.K, rule=lambda m_, i, k:
                                m_.zw[i, k] >= float(sc.storage_cost_w[i]) * m_.Xw[i, k])
        m.zw_b = pyo.Constraint(m.I, m.K, rule=lambda m_, i, k:
                                m_.zw[i, k] >= -float(sc.backorder_penalty_w[i]) * m_.Xw[i, k])
        m.zs_h = pyo.Constraint(m.J, m.K, rule=lambda m_, j, k:
                                m_.zs[j, k] >= float(sc.storage_cost_s[j]) * m_.Xs[j, k])
        m.zs_b = pyo.Constraint(m.J, m.K, rule=lambda m_, j, k:
                                m_.zs[j, k] >= -float(sc.backorder_penalty[j]) * m_.Xs[j, k])
        m.obj = pyo.Objective(expr=sum(
            sum(float(sc.production_cost[i]) * m.P[i, k] + m.zw[i, k] + float(sc.overflow_penalty_w[i]) * m.ow[i, k]
                for i in range(W))
            + sum(m.zs[j, k] + float(sc.overflow_penalty_s[j]) * m.os[j, k] for j in range(S))
            + sum(float(sc.transport_cost[e]) * m.q[e, k] for e in range(E))
            for k in range(H)), sense=pyo.minimize)
        solver = appsi.solvers.Highs()
        solver.config.stream_solver = False
        solver.config.load_solution = True
        self._models[H] = (m, solver)
        return m, solver

    def decide(self, state: InventoryState, demand: np.ndarray, n_steps: int | None = None) -> MpcDecision:
        """Plan from `state` with the episode's demand (T, S); return the first step.

        n_steps: the episode's steps (T, or T + 1 with the benchmark's final step)."""
        sc = self.scenario
        T = sc.horizon_steps
        n_steps = T if n_steps is None else int(n_steps)
        if not 0 <= state.t < n_steps:
            raise ValueError(f"state.t must be in [0, {n_steps}), got {state.t}")
        demand = np.asarray(demand, float)
        if demand.shape != (T, sc.n_stores):
            raise ValueError(f"demand must be (T, S) = ({T}, {sc.n_stores}), got {demand.shape}")
        left = n_steps - state.t
        H = left if self.horizon is None else (self.horizon if self.plan_past_end else min(self.horizon, left))
        t0 = time.perf_counter()
        m, solver = self._model(H)
        for i in range(sc.n_warehouses):
            m.S0w[i] = float(state.prev_stock_w[i])
            m.R0[i] = float(state.production_due[i])
        known = state.arrivals
        for j in range(sc.n_stores):
            m.S0s[j] = float(state.prev_stock_s[j])
            for k in range(H):
                m.Q[j, k] = float(known[k, j]) if k < len(known) else 0.0
                tk = state.t + k
                m.d[j, k] = float(demand[tk, j]) if tk < T else 0.0
        res = solver.solve(m)
        from pyomo.contrib.appsi.base import TerminationCondition
        if res.termination_condition != TerminationCondition.optimal:
            raise RuntimeError(f"inventory MPC: HiGHS ended with {res.termination_condition} at t={state.t}")
        w = np.maximum([m.P[i, 0].value for i in range(sc.n_warehouses)], 0.0)
        f = np.maximum([m.q[e, 0].value for e in range(sc.n_edges)], 0.0)
        revenue = float(sum(sc.price @ demand[tk] for tk in range(state.t, min(state.t + H, T))))
        return MpcDecision(w=w, f=f, objective=revenue - float(res.best_feasible_objective), horizon=H,
                           solve_time_s=time.perf_counter() - t0)

    def act(self, env: InventoryEnv) -> MpcDecision:
        """Decide at the environment's current step with its realised demand (perfect knowledge)."""
        return self.decide(env.state(), env.demand, env.n_steps)


class ScimMpc(InventoryMpc):
    """The benchmark's oracle (§8.3): horizon 10 planned past the episode's end, with its shipping lag.

    ``scim_shipping_lag=False`` gives the same 10-step MPC without the lag (to measure its effect)."""

    name = "MPC (SCIM oracle, H = 10, shipping lag)"

    def __init__(self, scenario: InventoryScenario, horizon: int = 10, scim_shipping_lag: bool = True) -> None:
        super().__init__(scenario, horizon=horizon, scim_shipping_lag=scim_shipping_lag, plan_past_end=True)
