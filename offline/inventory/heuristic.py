"""The SCIM benchmark's order-up-to heuristic (``heur``, SCIM_BENCHMARK.md §8.1): no lower level.

At step t, with order-up-to levels s_store and s_factory (the scenario's ``heuristic_levels``):

1. store orders o_j = s_store − B_j(t) (B = S(t−1) + Q(t); may be negative), O = Σ_j o_j;
2. if the factory holds enough, ship u = o, else ship pro rata u_j = F(t) · o_j / O, where
   F(t) = S_0(t−1) + R(t) is what the factory can ship now;
3. produce P = min(max(0, s_factory − (F(t) − Σ_j u_j)), C_0).

``scim_availability_check=True`` reproduces the benchmark's test in step 2, which compares the
orders with S_0(t−1) + R(t−1) (counting P(t−2) twice and missing P(t−1), §11.6); it is needed
only to reproduce the benchmark's published heuristic returns (§10).
"""
from __future__ import annotations

import numpy as np

from .env import InventoryDecision, InventoryEnv
from .scenarios import InventoryScenario

__all__ = ["OrderUpToHeuristic"]


class OrderUpToHeuristic:
    """The benchmark's heuristic for a one-factory scenario.

    Args:
        scenario: the network (one factory).
        levels: (s_store, s_factory); default the scenario's ``heuristic_levels``.
        scim_availability_check: the benchmark's stock test of step 2 (see the module docstring).
    """

    def __init__(self, scenario: InventoryScenario, levels: tuple[float, float] | None = None,
                 scim_availability_check: bool = False) -> None:
        if scenario.n_warehouses != 1:
            raise ValueError(f"the order-up-to heuristic needs one factory; {scenario.name} has "
                             f"{scenario.n_warehouses}")
        levels = scenario.heuristic_levels if levels is None else levels
        if levels is None or len(levels) != 2 or not np.all(np.isfinite(np.asarray(levels, float))):
            raise ValueError(f"scenario {scenario.name} has no heuristic levels; give (s_store, s_factory)")
        self.scenario = scenario
        self.s_store, self.s_factory = float(levels[0]), float(levels[1])
        self.scim_availability_check = bool(scim_availability_check)

    def act(self, env: InventoryEnv) -> InventoryDecision:
        sc = self.scenario
        st = env.state()
        orders = self.s_store - st.stock_s[sc.edges[:, 1]]          # per edge = per store
        total = float(orders.sum())
        available = float(st.stock_w[0])
        held = float(st.prev_stock_w[0] + env.production[st.t - 1, 0]) if (
            self.scim_availability_check and st.t >= 1) else (
            float(st.prev_stock_w[0]) if self.scim_availability_check else available)
        if held >= total:
            ship = orders
        else:
            ship = available * orders / total if total != 0 else np.zeros_like(orders)
        left = available - float(ship.sum())
        produce = min(max(0.0, self.s_factory - left), float(sc.capacity_w[0]))
        return InventoryDecision(w=np.array([produce]), f=ship)
