"""The AMoD fleet simulator: trip requests, passenger and rebalancing flows, vehicle bookkeeping.

Time runs in steps t = 0 … T−1 of `scenario.step_min` minutes. At each step:

1. the requests D_t (P,) of every OD pair arrive (Poisson around the scenario's rates; the whole
   episode's requests are drawn at reset from the seed, so `future_requests` can give MPC perfect
   knowledge of them);
2. a decision (f, g) is applied: passenger flows g (P,) ≤ D_t on the OD pairs and rebalancing
   flows f (E,) on the rebalancing edges, leaving from the idle vehicles q_t (N,);
3. departing vehicles arrive at their destination after the trip / rebalancing time (whole steps)
   and are idle again from that step on; requests not served in their step are lost.

Reward of a step = Σ price·g − Σ pax_cost·g − Σ reb_cost·f: revenue of served trips minus the
operating cost of their driving and of the empty (rebalancing) trips.

Vehicles are whole vehicles. A decision is made feasible before it is applied ("clipping"):
negative flows → 0, g ≤ D_t, and where a region's outflow exceeds its idle vehicles, its passenger
flows are served first and scaled down if they alone exceed them, the rebalancing flows get what is
left (scaled proportionally). The flows are then rounded per origin (largest remainder) to whole
vehicles that never exceed the region's idle vehicles or a pair's requests. Hence the fleet is
conserved exactly: Σ q_t + Σ in-transit = fleet at every step (`check_conservation`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offline.amod.benchmark import benchmark_requests
from offline.amod.scenario import AmodScenario

__all__ = ["AmodSim", "AmodState", "StepResult", "round_flows", "round_flows_grouped"]


@dataclass
class AmodState:
    """What a decision at step t may see (copies; N regions, P OD pairs, H = max travel time).

    t: the step; idle (N,): idle vehicles q_t; arrivals (H, N): vehicles arriving at steps
    t+1 … t+H (in transit now); requests (P,): D_t, this step's requests per OD pair.
    """
    t: int
    idle: np.ndarray
    arrivals: np.ndarray
    requests: np.ndarray


@dataclass
class StepResult:
    """The effect of one applied decision."""
    reward: float
    revenue: float
    pax_cost: float
    reb_cost: float
    served: float           # passengers served this step
    requests: float         # requests of this step
    f: np.ndarray           # (E,) applied (whole-vehicle) rebalancing flows
    g: np.ndarray           # (P,) applied passenger flows
    clipped: float          # vehicles removed from the decision by clipping, before rounding (0 if feasible)
    lost: float = 0.0       # vehicles destroyed by the benchmark's vehicle-loss defect (only when it is on)


def round_flows(x: np.ndarray, cap: np.ndarray, total_cap: float) -> np.ndarray:
    """Whole numbers y ≤ cap with Σy ≤ total_cap close to the reals x ≥ 0 (largest remainder).

    Σy = min(round(Σx), total_cap, Σ floor(cap)); floors first, then +1 to the largest remainders.
    """
    x = np.maximum(x, 0.0)
    y = np.floor(x + 1e-7)
    y = np.minimum(y, np.floor(cap + 1e-9))
    want = min(int(round(x.sum())), int(np.floor(total_cap + 1e-9)))
    extra = want - int(y.sum())
    if extra > 0:
        rem = np.where(y + 1 <= cap + 1e-9, x - y, -np.inf)
        order = np.argsort(-rem, kind="stable")
        room = order[np.isfinite(rem[order])][:extra]
        y[room] += 1
    elif extra < 0:       # only if Σx was already above total_cap: drop the smallest remainders' units
        rem = np.where(y > 0, x - y, np.inf)
        order = np.argsort(rem, kind="stable")
        for k in order:
            if extra == 0:
                break
            take = min(int(y[k]), -extra)
            y[k] -= take
            extra += take
    return y


def round_flows_grouped(x: np.ndarray, cap: np.ndarray, group: np.ndarray, total_cap: np.ndarray) -> np.ndarray:
    """round_flows within every group g (entries with group == g, total_cap[g]) at once, vectorised."""
    x = np.maximum(x, 0.0)
    G = total_cap.shape[0]
    y = np.minimum(np.floor(x + 1e-7), np.floor(cap + 1e-9))
    want = np.minimum(np.round(np.bincount(group, x, G)), np.floor(total_cap + 1e-9))
    extra = want - np.bincount(group, y, G)
    if np.any(extra < 0):                      # rare (Σx above the cap by rounding): the exact loop
        for g in np.flatnonzero(extra < 0):
            k = group == g
            y[k] = round_flows(x[k], cap[k], total_cap[g])
        extra = np.maximum(extra, 0)
    if np.any(extra > 0):
        ok = y + 1 <= cap + 1e-9
        rem = np.where(ok, x - y, -np.inf)
        order = np.lexsort((-rem, group))       # by group, then largest remainder first
        g_sorted = group[order]
        start = np.searchsorted(g_sorted, np.arange(G))
        rank = np.arange(len(order)) - start[g_sorted]
        pick = order[(rank < extra[g_sorted]) & np.isfinite(rem[order])]
        y[pick] += 1
    return y


class AmodSim:
    """The fleet simulator of one scenario (module docstring). Not a gym env; see offline.amod.envs."""

    def __init__(self, scenario: AmodScenario) -> None:
        self.sc = scenario
        self.N = scenario.n_regions
        self.T = scenario.horizon
        self.bins = scenario.bins                    # T' ≥ T: steps with demand data (the MPC's look-ahead)
        self.od = scenario.od_pairs                  # (P, 2)
        self.edges = scenario.reb_edges              # (E, 2)
        self.P, self.E = len(self.od), len(self.edges)
        self.defects = frozenset(scenario.meta.get("defects") or ())
        unknown = self.defects - {"vehicle-loss", "arrival-delay", "reward-clip"}
        if unknown:
            raise ValueError(f"unknown benchmark defect(s) {sorted(unknown)}; known: vehicle-loss, arrival-delay, "
                             f"reward-clip")
        self.delay = int("arrival-delay" in self.defects)   # benchmark §5.4: idle one step after arrival
        o, d = self.od[:, 0], self.od[:, 1]
        self.pax_steps = scenario.pax_time[o, d]                                 # (P,) representative
        self.pax_steps_t = scenario.trip_steps()[:, o, d].astype(np.int64)      # (T', P) by departure step
        self.reb_steps = scenario.reb_time[self.edges[:, 0], self.edges[:, 1]]  # (E,)
        longest = max(self.pax_steps_t.max(initial=1), self.reb_steps.max(initial=1), scenario.max_travel)
        self.H = int(longest) + self.delay
        self.rate = scenario.demand_rate[:, o, d]                               # (T', P)
        self.price = scenario.price[:, o, d]                                    # (T', P)
        self.pax_cost = scenario.pax_cost[o, d]                                  # (P,) $ per trip, representative
        self.pax_cost_t = scenario.trip_cost()[:, o, d].astype(float)           # (T', P) $ per trip by step
        self.reb_cost = scenario.reb_cost[self.edges[:, 0], self.edges[:, 1]]    # (E,) $ per empty trip
        self.t = 0
        self.idle = np.zeros(self.N)
        self.transit = np.zeros((self.H + 1, self.N))   # transit[h]: arriving at t + h (h ≥ 1)
        self.demand = np.zeros((self.bins, self.P))
        self.lost = 0.0
        self._pax_keys: dict = {}
        self.seed = None

    # ---------------------------------------------------------------- episode
    def initial_idle(self) -> np.ndarray:
        """Whole vehicles per region summing to the fleet: init_idle, or proportional to init_share."""
        if self.sc.init_idle is not None:
            return np.asarray(self.sc.init_idle, float).copy()
        share = self.sc.init_share * self.sc.fleet
        return round_flows(share, np.full(self.N, np.inf), self.sc.fleet)

    def sample_requests(self, seed: int) -> np.ndarray:
        """(T', P) the requests of demand sample `seed` (scenario.sampling: "numpy" or the benchmark's §4)."""
        if self.sc.sampling == "benchmark":
            full = benchmark_requests(self.sc.demand_rate, np.asarray(self.sc.draw_order), seed)[0]
            return full[:, self.od[:, 0], self.od[:, 1]]
        return np.random.default_rng(int(seed)).poisson(self.rate).astype(float)

    def reset(self, seed: int, requests: np.ndarray | None = None) -> AmodState:
        """Start an episode; the seed fixes every request of it (same seed → same demand sample).
        requests (T', P): use these instead (e.g. consecutive episodes of one benchmark stream)."""
        self.seed = int(seed)
        self.demand = (self.sample_requests(seed) if requests is None
                       else np.asarray(requests, float).reshape(self.bins, self.P).copy())
        self.t = 0
        self.idle = self.initial_idle()
        self.transit = np.zeros((self.H + 1, self.N))
        self.lost = 0.0
        self._pax_keys = {}
        self.totals = {"reward": 0.0, "revenue": 0.0, "pax_cost": 0.0, "reb_cost": 0.0, "served": 0.0,
                       "requests": 0.0, "clipped": 0.0, "lost": 0.0}
        return self.state()

    @property
    def done(self) -> bool:
        return self.t >= self.T

    def state(self) -> AmodState:
        req = self.demand[self.t].copy() if self.t < self.T else np.zeros(self.P)
        return AmodState(t=self.t, idle=self.idle.copy(), arrivals=self.transit[1:].copy(), requests=req)

    def future_requests(self) -> np.ndarray:
        """(T' − t, P) the requests of this and every later step with data (the episode's, then the
        look-ahead bins of benchmark scenarios): MPC's perfect knowledge."""
        return self.demand[self.t:].copy()

    def vehicles(self) -> float:
        """Idle plus in transit; equals the fleet at every step."""
        return float(self.idle.sum() + self.transit.sum())

    def check_conservation(self) -> None:
        """Idle + in transit = the fleet (minus the vehicles the vehicle-loss defect destroyed, if on)."""
        if abs(self.vehicles() + self.lost - self.sc.fleet) > 1e-9 or np.any(self.idle < 0) or np.any(self.transit < 0):
            raise AssertionError(f"vehicle bookkeeping broken at t={self.t}: {self.vehicles()} vehicles "
                                 f"for a fleet of {self.sc.fleet}")

    # ---------------------------------------------------------------- decisions
    def clip(self, f, g) -> tuple[np.ndarray, np.ndarray, float]:
        """The applied whole-vehicle flows of a decision (module docstring) and the vehicles clipped off."""
        f = np.nan_to_num(np.asarray(f, float).reshape(self.E), nan=0.0, posinf=0.0, neginf=0.0)
        g = np.nan_to_num(np.asarray(g, float).reshape(self.P), nan=0.0, posinf=0.0, neginf=0.0)
        f0, g0 = np.maximum(f, 0.0), np.maximum(g, 0.0)
        req = self.demand[self.t]
        N, go, fo = self.N, self.od[:, 0], self.edges[:, 0]
        g1 = np.minimum(g0, req)
        avail = self.idle
        sg = np.bincount(go, g1, N)
        g1 *= np.where(sg > avail, avail / np.maximum(sg, 1e-300), 1.0)[go]      # passengers first
        sg = np.minimum(sg, avail)
        sf = np.bincount(fo, f0, N)
        room = np.maximum(avail - sg, 0.0)
        f1 = f0 * np.where(sg + sf > avail, room / np.maximum(sf, 1e-300), 1.0)[fo]
        clipped = float((f0 - f1).sum() + (g0 - g1).sum())
        # whole vehicles: passengers first, then rebalancing with what is left
        g1 = round_flows_grouped(g1, req, go, avail)
        f1 = round_flows_grouped(f1, np.full(self.E, np.inf), fo, avail - np.bincount(go, g1, N))
        return f1, g1, clipped

    def step(self, f, g) -> StepResult:
        """Apply the decision (after clipping) and advance to t + 1."""
        if self.done:
            raise RuntimeError("episode is over; call reset(seed)")
        f, g, clipped = self.clip(f, g)
        t = self.t
        revenue = float(self.price[t] @ g)
        pax_cost = float(self.pax_cost_t[t] @ g)
        reb_cost = float(self.reb_cost @ f)
        served, requests = float(g.sum()), float(self.demand[t].sum())
        # departures
        np.subtract.at(self.idle, self.od[:, 0], g)
        np.subtract.at(self.idle, self.edges[:, 0], f)
        tau = self.pax_steps_t[t]
        lost = 0.0
        if "vehicle-loss" in self.defects:     # benchmark §5.5: paxFlow[i,j][κ] is assigned, not added to
            for p in np.flatnonzero(g >= 1e-3):
                key = (int(p), t + int(tau[p]))
                prev = self._pax_keys.get(key)
                if prev is not None:
                    self.transit[key[1] + self.delay - t, self.od[p, 1]] -= prev
                    lost += prev
                self._pax_keys[key] = float(g[p])
            self.lost += lost
        np.add.at(self.transit, (tau + self.delay, self.od[:, 1]), g)
        np.add.at(self.transit, (self.reb_steps + self.delay, self.edges[:, 1]), f)
        # advance: vehicles due at t+1 become idle
        self.transit = np.roll(self.transit, -1, axis=0)
        self.transit[-1] = 0.0
        self.idle += self.transit[0]
        self.transit[0] = 0.0
        self.t += 1
        pax_reward = revenue - pax_cost
        if "reward-clip" in self.defects:      # benchmark §6: the passenger part is clipped at 0
            pax_reward = max(0.0, pax_reward)
        reward = pax_reward - reb_cost
        res = StepResult(reward=reward, revenue=revenue, pax_cost=pax_cost, reb_cost=reb_cost, served=served,
                         requests=requests, f=f, g=g, clipped=clipped, lost=lost)
        for k in self.totals:
            self.totals[k] += getattr(res, k)
        return res
