"""Supply-chain scenarios: warehouses (factories) → stores on a directed graph, their costs and demand.

A scenario is plain data (numpy arrays in money units per unit of goods, goods units, steps); the
environment, the lower level (Eq. 31) and the MPC read it and nothing else. The named scenarios
have the public benchmark's sizes (Gammelli et al.'s 1F2S, 1F3S, 1F10S: one factory, 2/3/10 stores)
plus a multi-warehouse variant 2F6S. Their demand follows the benchmark's seasonal curve

    d_j^t = round(d_max_j/2 + d_max_j/2 · cos(4π(2j + t)/T) + U{0..d_var_j})          (store j, step t)

so store j's season is shifted by 2j steps: two demand peaks per episode of T steps.

Money units: every cost is in the same unit as the FOP's subgoal-deviation weight of Eq. 31a
(Σ|ε_f| + Σ|ε_w| with weight 1 per unit of goods). Transport costs grow with a store's distance
from its warehouse (`transport_cost = 0.3 + 1.2 · distance`, distance ∈ [0, 1]), so shipping to
the farthest stores costs more per unit than missing their subgoal by one unit: the unchanged,
one-step FOP (K = 0) does not ship there although each unit sold earns its price 4 later. That is
the myopia (Remark 2) the learned ReLU terms have to remove.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["InventoryScenario", "make_scenario", "SCENARIOS", "seasonal_mean_demand"]


@dataclass(frozen=True)
class InventoryScenario:
    """One supply network. Arrays are indexed by warehouse i (W), store j (S) or edge e (E).

    Edges are directed warehouse → store shipments with lead time 1 step (shipped at t, sellable at
    t+1). Costs are money per unit (per step for storage and backorders); stock in goods units.
    """

    name: str
    horizon_steps: int                      # T
    edges: np.ndarray                       # (E, 2) int: (warehouse i, store j)
    price: np.ndarray                       # (S,) retail price per unit sold
    production_cost: np.ndarray             # (W,) m^O per unit produced
    production_capacity: np.ndarray         # (W,) max units produced per step
    transport_cost: np.ndarray              # (E,) m^T per unit shipped
    storage_cost_w: np.ndarray              # (W,) per unit held at the end of a step
    storage_cost_s: np.ndarray              # (S,)
    capacity_w: np.ndarray                  # (W,) storage capacity c_i (units)
    capacity_s: np.ndarray                  # (S,)
    backorder_penalty: np.ndarray           # (S,) per unit of unmet demand carried to the next step
    overflow_penalty_w: np.ndarray          # (W,) per unit above capacity (then discarded)
    overflow_penalty_s: np.ndarray          # (S,)
    demand_max: np.ndarray                  # (S,) d_max of the seasonal curve
    demand_var: np.ndarray                  # (S,) int, noise U{0..d_var}
    initial_stock_w: np.ndarray             # (W,)
    initial_stock_s: np.ndarray             # (S,)
    warehouse_names: tuple[str, ...] = field(default=())
    store_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        W, S = len(self.production_cost), len(self.price)
        edges = np.asarray(self.edges, dtype=int).reshape(-1, 2)
        object.__setattr__(self, "edges", edges)
        for name in ("production_cost", "production_capacity", "storage_cost_w", "capacity_w",
                     "overflow_penalty_w", "initial_stock_w"):
            self._check(name, W)
        for name in ("price", "storage_cost_s", "capacity_s", "backorder_penalty", "overflow_penalty_s",
                     "demand_max", "initial_stock_s"):
            self._check(name, S)
        self._check("transport_cost", len(edges))
        dv = np.asarray(self.demand_var)
        if dv.shape != (S,) or np.any(dv < 0) or np.any(dv != np.round(dv)):
            raise ValueError(f"scenario {self.name}: demand_var must be {S} non-negative integers")
        object.__setattr__(self, "demand_var", dv.astype(int))
        if self.horizon_steps < 1:
            raise ValueError(f"scenario {self.name}: horizon_steps must be >= 1, got {self.horizon_steps}")
        if W < 1 or S < 1 or len(edges) < 1:
            raise ValueError(f"scenario {self.name}: needs >= 1 warehouse, store and edge")
        if np.any(edges[:, 0] < 0) or np.any(edges[:, 0] >= W) or np.any(edges[:, 1] < 0) or np.any(edges[:, 1] >= S):
            raise ValueError(f"scenario {self.name}: edges must be (warehouse < {W}, store < {S}) pairs")
        if len({tuple(e) for e in edges}) != len(edges):
            raise ValueError(f"scenario {self.name}: duplicate edges")
        if np.any(self.initial_stock_w > self.capacity_w) or np.any(self.initial_stock_s > self.capacity_s):
            raise ValueError(f"scenario {self.name}: initial stock exceeds capacity")
        if not self.warehouse_names:
            object.__setattr__(self, "warehouse_names", tuple(f"W{i}" for i in range(W)))
        if not self.store_names:
            object.__setattr__(self, "store_names", tuple(f"S{j}" for j in range(S)))

    def _check(self, name: str, size: int) -> None:
        a = np.asarray(getattr(self, name), dtype=float).reshape(-1)
        if a.shape != (size,) or not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"scenario {self.name}: {name} must be {size} finite numbers >= 0, got {a}")
        object.__setattr__(self, name, a)

    @property
    def n_warehouses(self) -> int:
        return len(self.production_cost)

    @property
    def n_stores(self) -> int:
        return len(self.price)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def edge_names(self) -> list[str]:
        return [f"{self.warehouse_names[i]}->{self.store_names[j]}" for i, j in self.edges]

    @property
    def out_edges(self) -> np.ndarray:
        """(W, E) 0/1: edge e leaves warehouse i (N⁺(i) of Eq. 31d–e)."""
        m = np.zeros((self.n_warehouses, self.n_edges))
        m[self.edges[:, 0], np.arange(self.n_edges)] = 1.0
        return m

    @property
    def in_edges(self) -> np.ndarray:
        """(S, E) 0/1: edge e enters store j (N⁻(j) of Eq. 31b–c)."""
        m = np.zeros((self.n_stores, self.n_edges))
        m[self.edges[:, 1], np.arange(self.n_edges)] = 1.0
        return m

    def with_(self, **changes) -> "InventoryScenario":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def sample_demand(self, rng: np.random.Generator) -> np.ndarray:
        """(T, S) integer demand of one episode (the seasonal curve plus U{0..d_var} noise)."""
        T, S = self.horizon_steps, self.n_stores
        noise = rng.integers(0, self.demand_var + 1, size=(T, S))
        t = np.arange(T)[:, None]
        j = np.arange(S)[None, :]
        curve = self.demand_max / 2 + self.demand_max / 2 * np.cos(4 * np.pi * (2 * j + t) / T)
        return np.maximum(np.round(curve + noise), 0.0)


def seasonal_mean_demand(scenario: InventoryScenario, t) -> np.ndarray:
    """Expected demand E[d_j^t] (S,) or (len(t), S): the rounded seasonal curve plus the noise mean
    d_var/2 (exact, since the noise is an integer). Public knowledge of the season, not the
    realised demand the MPC is given."""
    t_arr = np.atleast_1d(np.asarray(t, dtype=float))[:, None]
    j = np.arange(scenario.n_stores)[None, :]
    T = scenario.horizon_steps
    curve = scenario.demand_max / 2 + scenario.demand_max / 2 * np.cos(4 * np.pi * (2 * j + t_arr) / T)
    out = np.maximum(np.round(curve) + scenario.demand_var / 2, 0.0)
    return out[0] if np.ndim(t) == 0 else out


# ----------------------------------------------------------------------------- named scenarios

#: money per unit of goods; see the module docstring for why these values
PRICE = 4.0
PRODUCTION_COST = 0.5
STORAGE_COST_W, STORAGE_COST_S = 0.05, 0.1
BACKORDER_PENALTY = 0.5
OVERFLOW_PENALTY = 2.0
DEMAND_MAX, DEMAND_VAR = 10.0, 2
HORIZON = 30


def _transport_cost(distance: np.ndarray) -> np.ndarray:
    return np.round(0.3 + 1.2 * np.asarray(distance, float), 3)


def _network(name: str, warehouse_x: list[float], n_stores: int, horizon: int) -> InventoryScenario:
    """Warehouses and stores on [0, 1]; every warehouse serves every store; costs by distance."""
    W, S = len(warehouse_x), n_stores
    store_x = np.linspace(0.0, 1.0, S)
    edges = np.array([(i, j) for i in range(W) for j in range(S)])
    dist = np.abs(np.asarray(warehouse_x)[edges[:, 0]] - store_x[edges[:, 1]])
    mean_demand = DEMAND_MAX / 2 + DEMAND_VAR / 2            # per store and step
    # production capacity: 1.25× the mean total demand, below the seasonal peak of the small
    # networks, so the MPC has to produce ahead of peaks; split evenly over warehouses
    prod_cap = np.full(W, np.ceil(1.25 * S * mean_demand / W))
    return InventoryScenario(
        name=name, horizon_steps=horizon, edges=edges,
        price=np.full(S, PRICE),
        production_cost=np.full(W, PRODUCTION_COST), production_capacity=prod_cap,
        transport_cost=_transport_cost(dist),
        storage_cost_w=np.full(W, STORAGE_COST_W), storage_cost_s=np.full(S, STORAGE_COST_S),
        capacity_w=np.full(W, np.ceil(8 * S * mean_demand / W)), capacity_s=np.full(S, 2 * DEMAND_MAX),
        backorder_penalty=np.full(S, BACKORDER_PENALTY),
        overflow_penalty_w=np.full(W, OVERFLOW_PENALTY), overflow_penalty_s=np.full(S, OVERFLOW_PENALTY),
        demand_max=np.full(S, DEMAND_MAX), demand_var=np.full(S, DEMAND_VAR),
        initial_stock_w=np.full(W, np.ceil(2 * S * mean_demand / W)), initial_stock_s=np.full(S, DEMAND_MAX / 2),
    )


SCENARIOS = {
    "1F2S": lambda horizon=HORIZON: _network("1F2S", [0.0], 2, horizon),
    "1F3S": lambda horizon=HORIZON: _network("1F3S", [0.0], 3, horizon),
    "1F10S": lambda horizon=HORIZON: _network("1F10S", [0.0], 10, horizon),
    # multi-warehouse: factories at both ends of the line, each can serve every store
    "2F6S": lambda horizon=HORIZON: _network("2F6S", [0.0, 1.0], 6, horizon),
}


def make_scenario(name: str, horizon_steps: int | None = None) -> InventoryScenario:
    """A named scenario ('1F2S', '1F3S', '1F10S', '2F6S'), optionally with another horizon."""
    key = name.upper()
    if key not in SCENARIOS:
        raise ValueError(f"unknown inventory scenario {name!r}; choose one of {sorted(SCENARIOS)}")
    return SCENARIOS[key]() if horizon_steps is None else SCENARIOS[key](int(horizon_steps))
