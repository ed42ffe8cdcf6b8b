"""The supply-chain inventory environment (gymnasium), step for step the SCIM benchmark's.

Order of events of step t (/work/shared/benchmarks/SCIM_BENCHMARK.md §4; the action is
production P (W,) and requested shipments u (E,), any finite numbers, as in the benchmark):

1. production P(t) is booked; it completes at t + 1 (R(t+1) += P(t));
2. available stocks: factory F(t) = S_w(t−1) + R(t) (last step's production is here),
   store B(t) = S_s(t−1) + Q(t) (shipments arriving now);
3. ship: q_e = min(u_e, F_i) for every edge e = (i, j) on its own, against the same F_i (the
   total may exceed F_i: the factory goes negative; §11.5); q_e arrives at t + L_e;
4. post stocks X_w = F − Σ_out q, X_s = B − d(t) (the full demand: negative stock is backlog);
5. costs on X, before the clip: transport c·q, storage h·X⁺ (overflowing units too), production
   c_P·P, backlog κ·X⁻ at every node, overflow κ·(X − C)⁺;
6. revenue = price · d(t) on the whole demand, met or not (§4.6): policy-independent;
7. reward = revenue − costs;  8. S = min(X, C): overflow is destroyed, backlog carried.

Episode: T steps (t = 0 … T−1). ``final_step_without_demand=True`` adds the benchmark's test-mode
step t = T with no demand and no revenue but all costs (§5, §11.3): needed only to compare with
the benchmark's published test returns.

Served demand (``info``): ``served_on_time`` = units of this step's demand met from stock in this
step = min(d, max(B, 0)); ``served`` = units delivered this step to this or earlier demand =
min(max(S(t−1), 0) + Q(t), backlog(t−1) + d(t)). Over an episode, Σ served = total demand − the
backlog left at its end ("served eventually, within the episode").

Observation (float32, the benchmark agent's node features §7.1, scaled): per node n (factories,
then stores) S_n(t−1)/C_n, realised d_n(t), d_n(t+1), d_n(t+2) / (D+V) (0 at factories), arrivals
Q_n(t−1), Q_n(t), Q_n(t+1) / C_n (stores), production R_n(t−1), R_n(t), R_n(t+1) / C_n
(factories), then t/T. Note the realised look-ahead of 3 steps: the benchmark's agent sees it.

``reset(seed=s)`` draws the episode's demand with ``numpy.random.RandomState(s)`` as the benchmark's
first episode after ``np.random.seed(s)``; ``reset(options={"demand": d})`` plays a given (T, S)
demand (the benchmark's continuing stream: :func:`benchmark_demands`).
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from .scenarios import InventoryScenario

__all__ = ["InventoryEnv", "InventoryState", "InventoryDecision", "benchmark_demands", "COST_KEYS"]

COST_KEYS = ("transport", "storage", "production", "backlog", "overflow")


@dataclass
class InventoryDecision:
    """A decision of any inventory policy: production and shipments."""

    w: np.ndarray          # (W,) production P(t)
    f: np.ndarray          # (E,) shipments u(t)

    @property
    def action(self) -> np.ndarray:
        """(W + E,) the environment's action."""
        return np.r_[self.w, self.f]


@dataclass(frozen=True)
class InventoryState:
    """What a decision at step t may use (goods units; copies).

    stock_w: (W,) F(t) = S_w(t−1) + R(t), the factory stock that can be shipped now
    stock_s: (S,) B(t) = S_s(t−1) + Q(t), store stock with today's arrivals, before demand
    demand: (S,) d(t), this step's demand (0 for t ≥ T)
    next_demand: (S,) d(t+1), realised (the benchmark's agent observes it, §7.1); 0 from T on
    prev_stock_w / prev_stock_s: S(t−1) (negative: backlog)
    arrivals: (L_max, S) Q(t … t+L_max−1), shipments already under way
    production_due: (W,) R(t) = P(t−1)
    """

    t: int
    stock_w: np.ndarray
    stock_s: np.ndarray
    demand: np.ndarray
    next_demand: np.ndarray
    prev_stock_w: np.ndarray
    prev_stock_s: np.ndarray
    arrivals: np.ndarray
    production_due: np.ndarray

    @property
    def stock_after_sales(self) -> np.ndarray:
        """(S,) X_s before shipping: B − d (negative: backlog); the q_j^t − d_j^t of Eq. 31c."""
        return self.stock_s - self.demand


def benchmark_demands(scenario: InventoryScenario, seed: int = 1010, episodes: int = 10) -> list[np.ndarray]:
    """The demand of the benchmark's test episodes 1 … n: one RandomState(seed) stream consumed by
    consecutive resets (``np.random.seed(--seed)`` once, then ``reset()`` per episode, §9)."""
    rng = np.random.RandomState(int(seed))
    return [scenario.sample_demand(rng) for _ in range(int(episodes))]


class InventoryEnv(gym.Env):
    """Factories produce and ship to stores with seasonal demand; the SCIM benchmark's dynamics
    and accounting (see the module docstring).

    Args:
        scenario: the supply network and its costs (offline.inventory.scenarios).
        final_step_without_demand: add the benchmark's extra test step t = T (costs, no demand).
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: InventoryScenario, final_step_without_demand: bool = False) -> None:
        super().__init__()
        self.scenario = sc = scenario
        W, S, E = sc.n_warehouses, sc.n_stores, sc.n_edges
        self.n_steps = sc.horizon_steps + (1 if final_step_without_demand else 0)
        self._out = sc.out_edges            # (W, E)
        self._in = sc.in_edges              # (S, E)
        self._lmax = int(sc.lead_time.max())
        self.action_space = gym.spaces.Box(-np.inf, np.inf, shape=(W + E,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(10 * (W + S) + 1,), dtype=np.float32)
        self._dscale = np.maximum(sc.demand_max + sc.demand_var, 1.0)
        self.demand = np.zeros((sc.horizon_steps, S))
        self._init_state()

    def _init_state(self) -> None:
        sc = self.scenario
        pad = self.n_steps + self._lmax + 3
        self.t = 0
        self.stock_w = sc.initial_stock_w.copy()          # S_w(t−1)
        self.stock_s = sc.initial_stock_s.copy()          # S_s(t−1)
        self.arrival = np.zeros((pad, sc.n_stores))      # Q(t), index t
        self.production = np.zeros((pad, sc.n_warehouses))   # R(t), index t

    # ---------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        sc = self.scenario
        if options and options.get("demand") is not None:
            d = np.asarray(options["demand"], float)
            if d.shape != (sc.horizon_steps, sc.n_stores):
                raise ValueError(f"demand must be (T, S) = ({sc.horizon_steps}, {sc.n_stores}), got {d.shape}")
            self.demand = d.copy()
        else:
            rng = np.random.RandomState(seed if seed is not None else int(self.np_random.integers(2**31)))
            self.demand = sc.sample_demand(rng)
        self._init_state()
        return self._obs(), {}

    def demand_at(self, t: int) -> np.ndarray:
        """(S,) d(t); 0 outside 0 … T−1."""
        return self.demand[t].copy() if 0 <= t < self.scenario.horizon_steps else np.zeros(self.scenario.n_stores)

    def step(self, action):
        if self.t >= self.n_steps:
            raise RuntimeError("step() after the episode ended; call reset()")
        sc = self.scenario
        W = sc.n_warehouses
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape != (W + sc.n_edges,):
            raise ValueError(f"action must have {W + sc.n_edges} entries (production: {W}, shipments: "
                             f"{sc.n_edges}), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action contains NaN or inf")
        t = self.t
        P, u = a[:W], a[W:]
        self.production[t + 1] += P                                  # 1
        F = self.stock_w + self.production[t]                        # 2
        B = self.stock_s + self.arrival[t]
        q = np.minimum(u, F[sc.edges[:, 0]])                         # 3: each edge on its own
        np.add.at(self.arrival, (t + sc.lead_time, sc.edges[:, 1]), q)
        d = self.demand_at(t)
        X_w = F - self._out @ q                                      # 4
        X_s = B - d
        pos = lambda x: np.maximum(x, 0.0)                           # noqa: E731
        costs = {                                                    # 5
            "transport": float(sc.transport_cost @ q),
            "storage": float(sc.storage_cost_w @ pos(X_w) + sc.storage_cost_s @ pos(X_s)),
            "production": float(sc.production_cost @ P),
            "backlog": float(sc.backorder_penalty_w @ pos(-X_w) + sc.backorder_penalty @ pos(-X_s)),
            "overflow": float(sc.overflow_penalty_w @ pos(X_w - sc.capacity_w)
                              + sc.overflow_penalty_s @ pos(X_s - sc.capacity_s)),
        }
        revenue = float(sc.price @ d)                                # 6
        reward = revenue - sum(costs.values())                       # 7
        on_hand = pos(self.stock_s) + self.arrival[t]
        due = pos(-self.stock_s) + d
        info = {"t": t, "demand": d, "revenue": revenue, "costs": costs, "production": P.copy(), "shipments": q,
                "served": float(np.minimum(on_hand, due).sum()),
                "served_on_time": float(np.minimum(d, pos(B)).sum()),
                "stock_w": X_w.copy(), "stock_s": X_s.copy()}
        self.stock_w = np.minimum(X_w, sc.capacity_w)                # 8
        self.stock_s = np.minimum(X_s, sc.capacity_s)
        self.t += 1                                                  # 9
        terminated = self.t >= self.n_steps
        if terminated:
            info["backlog_at_end"] = float(pos(-self.stock_s).sum())
        return self._obs(), reward, terminated, False, info

    # ---------------------------------------------------------------- helpers
    def state(self) -> InventoryState:
        """The decision state of the current step (copies)."""
        t = self.t
        return InventoryState(
            t=t, stock_w=self.stock_w + self.production[t], stock_s=self.stock_s + self.arrival[t],
            demand=self.demand_at(t), next_demand=self.demand_at(t + 1), prev_stock_w=self.stock_w.copy(),
            prev_stock_s=self.stock_s.copy(),
            arrivals=self.arrival[t:t + self._lmax].copy(), production_due=self.production[t].copy())

    def _obs(self) -> np.ndarray:
        sc = self.scenario
        t = self.t
        W = sc.n_warehouses
        d = np.stack([self.demand_at(t + k) for k in range(3)], axis=1) / self._dscale[:, None]   # (S, 3)
        Q = np.stack([self.arrival[t + k] if t + k >= 0 else np.zeros(sc.n_stores) for k in (-1, 0, 1)], axis=1)
        R = np.stack([self.production[t + k] if t + k >= 0 else np.zeros(W) for k in (-1, 0, 1)], axis=1)
        fac = np.c_[self.stock_w / sc.capacity_w, np.zeros((W, 3)), np.zeros((W, 3)), R / sc.capacity_w[:, None]]
        sto = np.c_[self.stock_s / sc.capacity_s, d, Q / sc.capacity_s[:, None], np.zeros((sc.n_stores, 3))]
        return np.r_[fac.ravel(), sto.ravel(), t / sc.horizon_steps].astype(np.float32)
