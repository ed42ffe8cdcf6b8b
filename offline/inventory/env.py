"""The supply-chain inventory environment (gymnasium): produce at warehouses, ship to stores, sell.

Timeline of step t (the demand d^t of the step is known when deciding, as in Eq. 31c):

1. the action (w, f) is made feasible: w_i ∈ [0, production capacity], f_e ≥ 0, and if a warehouse
   ships more than it holds its shipments are scaled down proportionally (the clipped amounts are
   reported in ``info``);
2. stores sell: sales_j = min(q_j, b_j + d_j) (backorders b are served first-in; revenue p_j per unit);
   unmet demand stays backordered, b_j ← b_j + d_j − sales_j;
3. shipments arrive (lead time 1: shipped at t, sellable from t+1) and production is stored:
   q_j ← q_j − sales_j + Σ_i f_ij,  q_i ← q_i − Σ_j f_ij + w_i;
4. stock above capacity is discarded (overflow) and penalised;
5. reward = revenue − production − transport − storage (end-of-step stock) − backorder (end-of-step
   backlog) − overflow costs.

Observation (float32, all scaled to O(1)): warehouse stock / capacity (W), store stock / capacity
(S), backlog / d_max (S), this step's demand / d_max (S), the seasonal mean demand of the next two
steps / d_max (2S; public knowledge of the season, not the realised noise), t/T, cos(4πt/T),
sin(4πt/T). Action: Box [0, production capacity]^W × [0, source warehouse capacity]^E in goods units.
The episode ends (terminated) after T steps; the horizon is part of the observation.

``reset(seed=...)`` draws the whole episode's demand (T, S) from the seed, so an expert with perfect
demand knowledge (the MPC) reads ``env.demand``; policies only see the observation.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from .scenarios import InventoryScenario, seasonal_mean_demand

__all__ = ["InventoryEnv", "InventoryState", "InventoryDecision", "serve_demand"]


@dataclass
class InventoryDecision:
    """A decision of any inventory policy: production and shipments (the lower level's and the
    MPC's decisions add what their solver said)."""

    w: np.ndarray          # (W,) production
    f: np.ndarray          # (E,) shipments

    @property
    def action(self) -> np.ndarray:
        """(W + E,) the environment's action."""
        return np.r_[self.w, self.f]


@dataclass(frozen=True)
class InventoryState:
    """What a decision at step t may use: stocks, backlog and the step's demand (goods units)."""

    t: int
    stock_w: np.ndarray     # (W,) warehouse stock on hand
    stock_s: np.ndarray     # (S,) store stock on hand (before this step's sales)
    backlog: np.ndarray     # (S,) backordered demand from earlier steps
    demand: np.ndarray      # (S,) this step's demand d^t

    @property
    def sales(self) -> np.ndarray:
        return serve_demand(self.stock_s, self.backlog, self.demand)[0]

    @property
    def stock_after_sales(self) -> np.ndarray:
        """(S,) store stock left after this step's sales: the q_i^t − d_i^t of Eq. 31b–c, exact."""
        return serve_demand(self.stock_s, self.backlog, self.demand)[1]


def serve_demand(stock_s: np.ndarray, backlog: np.ndarray, demand: np.ndarray):
    """Sales = min(stock, backlog + demand); returns (sales, stock left, backlog left)."""
    due = backlog + demand
    sales = np.minimum(stock_s, due)
    return sales, stock_s - sales, due - sales


class InventoryEnv(gym.Env):
    """Warehouses produce and ship to stores that meet seasonal demand (see the module docstring).

    Args:
        scenario: the supply network and its costs (offline.inventory.scenarios).
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: InventoryScenario) -> None:
        super().__init__()
        self.scenario = sc = scenario
        W, S, E = sc.n_warehouses, sc.n_stores, sc.n_edges
        self._out = sc.out_edges            # (W, E)
        self._in = sc.in_edges              # (S, E)
        self.action_space = gym.spaces.Box(
            low=np.zeros(W + E, np.float32),
            high=np.r_[sc.production_capacity, sc.capacity_w[sc.edges[:, 0]]].astype(np.float32))
        n_obs = W + 5 * S + 3
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
        self.demand = np.zeros((sc.horizon_steps, S))
        self.t = 0
        self.stock_w = sc.initial_stock_w.copy()
        self.stock_s = sc.initial_stock_s.copy()
        self.backlog = np.zeros(S)

    # ---------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        sc = self.scenario
        self.demand = sc.sample_demand(self.np_random)
        self.t = 0
        self.stock_w = sc.initial_stock_w.copy()
        self.stock_s = sc.initial_stock_s.copy()
        self.backlog = np.zeros(sc.n_stores)
        return self._obs(), {}

    def step(self, action):
        if self.t >= self.scenario.horizon_steps:
            raise RuntimeError("step() after the episode ended; call reset()")
        sc = self.scenario
        W = sc.n_warehouses
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape != (W + sc.n_edges,):
            raise ValueError(f"action must have {W + sc.n_edges} entries (w: {W}, f: {sc.n_edges}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action contains NaN or inf")
        w_req, f_req = a[:W], a[W:]
        w, f, clipped = self._feasible(w_req, f_req)

        d = self.demand[self.t]
        sales, left, backlog = serve_demand(self.stock_s, self.backlog, d)
        shipped_out = self._out @ f
        arrived = self._in @ f
        stock_s = left + arrived
        stock_w = self.stock_w - shipped_out + w
        over_s = np.maximum(stock_s - sc.capacity_s, 0.0)
        over_w = np.maximum(stock_w - sc.capacity_w, 0.0)
        # float round-off (e.g. shipping exactly the stock held) must not leave −1e−15 stock behind
        stock_s = np.maximum(stock_s - over_s, 0.0)
        stock_w = np.maximum(stock_w - over_w, 0.0)

        revenue = float(sc.price @ sales)
        costs = {
            "production": float(sc.production_cost @ w),
            "transport": float(sc.transport_cost @ f),
            "storage": float(sc.storage_cost_w @ stock_w + sc.storage_cost_s @ stock_s),
            "backorder": float(sc.backorder_penalty @ backlog),
            "overflow": float(sc.overflow_penalty_w @ over_w + sc.overflow_penalty_s @ over_s),
        }
        reward = revenue - sum(costs.values())
        info = {
            "t": self.t, "served": float(sales.sum()), "sales": sales, "demand": d.copy(),
            "revenue": revenue, "costs": costs, "production": w, "shipments": f,
            "overflow_w": over_w, "overflow_s": over_s, "backlog": backlog.copy(),
            "action_clipped": clipped,
        }
        self.stock_s, self.stock_w, self.backlog = stock_s, stock_w, backlog
        self.t += 1
        terminated = self.t >= sc.horizon_steps
        return self._obs(), reward, terminated, False, info

    # ---------------------------------------------------------------- helpers
    def state(self) -> InventoryState:
        """The decision state of the current step (copies)."""
        d = self.demand[self.t] if self.t < self.scenario.horizon_steps else np.zeros(self.scenario.n_stores)
        return InventoryState(t=self.t, stock_w=self.stock_w.copy(), stock_s=self.stock_s.copy(),
                              backlog=self.backlog.copy(), demand=d.copy())

    def _feasible(self, w_req: np.ndarray, f_req: np.ndarray):
        """Clip production to capacity, flows to ≥ 0, and scale a warehouse's shipments to its stock."""
        sc = self.scenario
        w = np.clip(w_req, 0.0, sc.production_capacity)
        f = np.maximum(f_req, 0.0)
        out = self._out @ f
        held = np.maximum(self.stock_w, 0.0)
        scale = np.ones(sc.n_warehouses)
        over = out > held                      # hence out > 0: the division is safe
        scale[over] = held[over] / out[over]
        f = f * scale[sc.edges[:, 0]]
        clipped = float(np.abs(w - w_req).sum() + np.abs(f - f_req).sum())
        return w, f, clipped

    def _obs(self) -> np.ndarray:
        sc = self.scenario
        T = sc.horizon_steps
        t = self.t
        d_now = self.demand[t] if t < T else np.zeros(sc.n_stores)
        nxt = seasonal_mean_demand(sc, [t + 1, t + 2])            # (2, S)
        phase = 4 * np.pi * t / T
        return np.concatenate([
            self.stock_w / sc.capacity_w, self.stock_s / sc.capacity_s,
            self.backlog / sc.demand_max, d_now / sc.demand_max, (nxt / sc.demand_max).ravel(),
            [t / T, np.cos(phase), np.sin(phase)],
        ]).astype(np.float32)
