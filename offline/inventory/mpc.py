"""The inventory MPC: a multi-step LP with perfect demand knowledge (Pyomo + HiGHS), first step applied.

At step t it plans production w, shipments f and sales over the next H = min(horizon, T − t) steps
with the realised future demand d^t … d^{t+H−1} (the expert and the upper bound of Table 1):

    max Σ_τ [ Σ_j p_j sell_jτ − Σ_i m_iᴼ w_iτ − Σ_e m_eᵀ f_eτ
              − Σ_i h_i qw_i,τ+1 − Σ_j h_j qs_j,τ+1 − Σ_j β_j b_j,τ+1 ]
    s.t.  Σ_{e∈N⁺(i)} f_eτ ≤ qw_iτ                                (ship only stock on hand, 31d)
          qw_i,τ+1 = qw_iτ − Σ_{e∈N⁺(i)} f_eτ + w_iτ ≤ c_i         (31e)
          sell_jτ ≤ qs_jτ,  b_j,τ+1 = b_jτ + d_jτ − sell_jτ ≥ 0
          qs_j,τ+1 = qs_jτ − sell_jτ + Σ_{e∈N⁻(j)} f_eτ ≤ c_j      (lead time 1, 31c)
          0 ≤ w_iτ ≤ production capacity,  f, sell ≥ 0

which is the environment's dynamics exactly as long as it sells all it can (it does: every unit
sold earns p_j > 0 and saves β_j) and never exceeds capacity (a hard constraint here, so it never
plans to overflow). No terminal value: stock left at the episode's end is worth nothing.

One Pyomo model per remaining-horizon length is built once (mutable parameters for the initial
state and the demand) and re-solved through the persistent `appsi_highs` interface, so a step costs
a parameter update and a HiGHS solve, not a model build.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .env import InventoryDecision, InventoryEnv, InventoryState
from .scenarios import InventoryScenario

__all__ = ["InventoryMpc", "MpcDecision"]


@dataclass
class MpcDecision(InventoryDecision):
    """The MPC's first-step action (w, f: production and shipments now) and its plan's objective."""

    objective: float        # planned reward over the horizon
    horizon: int            # H used
    solve_time_s: float     # parameter update + solve + read-out


class InventoryMpc:
    """The MPC expert for one scenario (see the module docstring).

    Args:
        scenario: the supply network.
        horizon: planning steps (None: the whole remaining episode, the upper bound).
    """

    def __init__(self, scenario: InventoryScenario, horizon: int | None = None) -> None:
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be >= 1 (or None), got {horizon}")
        self.scenario = scenario
        self.horizon = horizon
        self._models: dict[int, tuple] = {}

    def _model(self, H: int):
        if H in self._models:
            return self._models[H]
        import pyomo.environ as pyo
        from pyomo.contrib import appsi

        sc = self.scenario
        W, S, E = sc.n_warehouses, sc.n_stores, sc.n_edges
        m = pyo.ConcreteModel(name=f"inventory_mpc_{sc.name}_H{H}")
        m.I, m.J, m.E = pyo.RangeSet(0, W - 1), pyo.RangeSet(0, S - 1), pyo.RangeSet(0, E - 1)
        m.TAU = pyo.RangeSet(0, H - 1)
        m.TAU1 = pyo.RangeSet(0, H)
        m.q0w = pyo.Param(m.I, mutable=True, initialize=0.0)
        m.q0s = pyo.Param(m.J, mutable=True, initialize=0.0)
        m.b0 = pyo.Param(m.J, mutable=True, initialize=0.0)
        m.d = pyo.Param(m.J, m.TAU, mutable=True, initialize=0.0)
        pcap = sc.production_capacity
        m.w = pyo.Var(m.I, m.TAU, bounds=lambda _, i, t: (0.0, float(pcap[i])))
        m.f = pyo.Var(m.E, m.TAU, domain=pyo.NonNegativeReals)
        m.sell = pyo.Var(m.J, m.TAU, domain=pyo.NonNegativeReals)
        m.qw = pyo.Var(m.I, m.TAU1, bounds=lambda _, i, t: (0.0, float(sc.capacity_w[i])))
        m.qs = pyo.Var(m.J, m.TAU1, bounds=lambda _, j, t: (0.0, float(sc.capacity_s[j])))
        m.b = pyo.Var(m.J, m.TAU1, domain=pyo.NonNegativeReals)
        out_e = [[e for e in range(E) if sc.edges[e, 0] == i] for i in range(W)]
        in_e = [[e for e in range(E) if sc.edges[e, 1] == j] for j in range(S)]
        m.init_w = pyo.Constraint(m.I, rule=lambda m_, i: m_.qw[i, 0] == m_.q0w[i])
        m.init_s = pyo.Constraint(m.J, rule=lambda m_, j: m_.qs[j, 0] == m_.q0s[j])
        m.init_b = pyo.Constraint(m.J, rule=lambda m_, j: m_.b[j, 0] == m_.b0[j])
        m.ship_stock = pyo.Constraint(m.I, m.TAU, rule=lambda m_, i, t: sum(m_.f[e, t] for e in out_e[i]) <= m_.qw[i, t])
        m.wh_balance = pyo.Constraint(m.I, m.TAU, rule=lambda m_, i, t: m_.qw[i, t + 1]
                                      == m_.qw[i, t] - sum(m_.f[e, t] for e in out_e[i]) + m_.w[i, t])
        m.sell_stock = pyo.Constraint(m.J, m.TAU, rule=lambda m_, j, t: m_.sell[j, t] <= m_.qs[j, t])
        m.backlog = pyo.Constraint(m.J, m.TAU, rule=lambda m_, j, t: m_.b[j, t + 1]
                                   == m_.b[j, t] + m_.d[j, t] - m_.sell[j, t])
        m.store_balance = pyo.Constraint(m.J, m.TAU, rule=lambda m_, j, t: m_.qs[j, t + 1]
                                         == m_.qs[j, t] - m_.sell[j, t] + sum(m_.f[e, t] for e in in_e[j]))

        def reward(m_):
            return sum(
                sum(float(sc.price[j]) * m_.sell[j, t] - float(sc.storage_cost_s[j]) * m_.qs[j, t + 1]
                    - float(sc.backorder_penalty[j]) * m_.b[j, t + 1] for j in range(S))
                - sum(float(sc.production_cost[i]) * m_.w[i, t] + float(sc.storage_cost_w[i]) * m_.qw[i, t + 1]
                      for i in range(W))
                - sum(float(sc.transport_cost[e]) * m_.f[e, t] for e in range(E))
                for t in range(H))
        m.obj = pyo.Objective(rule=reward, sense=pyo.maximize)
        solver = appsi.solvers.Highs()
        solver.config.stream_solver = False
        solver.config.load_solution = True
        self._models[H] = (m, solver)
        return m, solver

    def decide(self, state: InventoryState, demand: np.ndarray) -> MpcDecision:
        """Plan from `state` with the future demand (T, S) of the episode; return the first step."""
        sc = self.scenario
        T = sc.horizon_steps
        if not 0 <= state.t < T:
            raise ValueError(f"state.t must be in [0, {T}), got {state.t}")
        demand = np.asarray(demand, float)
        if demand.shape != (T, sc.n_stores):
            raise ValueError(f"demand must be (T, S) = ({T}, {sc.n_stores}), got {demand.shape}")
        H = T - state.t if self.horizon is None else min(self.horizon, T - state.t)
        t0 = time.perf_counter()
        m, solver = self._model(H)
        for i in range(sc.n_warehouses):
            m.q0w[i] = float(state.stock_w[i])
        for j in range(sc.n_stores):
            m.q0s[j] = float(state.stock_s[j])
            m.b0[j] = float(state.backlog[j])
            for tau in range(H):
                m.d[j, tau] = float(demand[state.t + tau, j])
        res = solver.solve(m)
        from pyomo.contrib.appsi.base import TerminationCondition
        if res.termination_condition != TerminationCondition.optimal:
            raise RuntimeError(f"inventory MPC: HiGHS ended with {res.termination_condition} at t={state.t}")
        w = np.array([m.w[i, 0].value for i in range(sc.n_warehouses)], float)
        f = np.array([m.f[e, 0].value for e in range(sc.n_edges)], float)
        w = np.clip(w, 0.0, sc.production_capacity)
        f = np.maximum(f, 0.0)
        # HiGHS' feasibility tolerance can leave shipments a hair above the stock on hand (31d)
        out = sc.out_edges @ f
        held = np.maximum(state.stock_w, 0.0)
        over = out > held                      # hence out > 0
        if np.any(over):
            scale = np.ones(sc.n_warehouses)
            scale[over] = held[over] / out[over]
            f = f * scale[sc.edges[:, 0]]
        return MpcDecision(w=w, f=f, objective=float(res.best_feasible_objective), horizon=H,
                           solve_time_s=time.perf_counter() - t0)

    def act(self, env: InventoryEnv) -> MpcDecision:
        """Decide at the environment's current step with its realised demand (perfect knowledge)."""
        return self.decide(env.state(), env.demand)
