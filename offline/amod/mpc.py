"""The AMoD expert: an MPC that plans over the whole remaining horizon with perfect knowledge of requests.

At step t it solves one LP (Pyomo model, HiGHS) over τ = 0 … T−t−1 relative steps:

    max   Σ_τ Σ_p (price_{t+τ,p} − pax_cost_{t+τ,p}) g_{τ,p} − Σ_τ Σ_e reb_cost_e f_{τ,e}
    s.t.  Σ_{p from i} g_{τ,p} + Σ_{e from i} f_{τ,e} ≤ q_{τ,i}                        (vehicles available)
          q_{τ+1,i} = q_{τ,i} − (departures from i at τ) + (arrivals at i at τ+1)     (bookkeeping)
          0 ≤ g_{τ,p} ≤ D_{t+τ,p},  f ≥ 0,  q ≥ 0,  q_{0} = q_t

where D are the realised requests of the episode (`AmodSim.future_requests`: this is the
clairvoyance that makes MPC the upper bound of Table 1), and arrivals at τ+1 are the flows that
left at τ+1 − travel time plus the vehicles already in transit.
The first step's flows are applied (the simulator rounds them to whole vehicles), and the decision
is logged as an expert sample (state, f, g, implied q̂ = q − A(f + g)) for the inverse fit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from offline.amod.sim import AmodSim, AmodState

__all__ = ["AmodMpc", "MpcDecision"]


@dataclass
class MpcDecision:
    f: np.ndarray           # (E,) first-step rebalancing flows of the plan (real)
    g: np.ndarray           # (P,) first-step passenger flows
    objective: float        # planned profit over the remaining horizon ($)
    build_time_s: float     # Pyomo model construction
    solve_time_s: float     # HiGHS (through Pyomo, including its model hand-over)
    status: str


class AmodMpc:
    """The MPC of one simulator (module docstring). `horizon`: steps planned (None: the scenario's
    `mpc_horizon` — 20 on benchmark files, the benchmark oracle's, running into the look-ahead
    bins past the episode's end — else to the end of the episode).

    knowledge: "perfect" (the realised requests of every later step: the oracle of Table 1) or
    "expected" (later steps' requests replaced by their expected rates: a certainty-equivalent
    MPC without clairvoyance, a reference for what a non-anticipative policy can reach).
    """

    def __init__(self, sim: AmodSim, horizon: int | None = None, solver: str = "appsi_highs",
                 knowledge: str = "perfect") -> None:
        import pyomo.environ as pyo

        if knowledge not in ("perfect", "expected"):
            raise ValueError(f"knowledge must be 'perfect' or 'expected', got {knowledge!r}")
        self.knowledge = knowledge
        self.sim = sim
        self.horizon = horizon
        self.solver = pyo.SolverFactory(solver)
        if not self.solver.available():
            raise RuntimeError(f"Pyomo solver {solver!r} is not available")
        # arrival bookkeeping: for destination i, which flows arrive there
        self._g_into = [np.flatnonzero(sim.od[:, 1] == i) for i in range(sim.N)]
        self._f_into = [np.flatnonzero(sim.edges[:, 1] == i) for i in range(sim.N)]
        self._g_from = [np.flatnonzero(sim.od[:, 0] == i) for i in range(sim.N)]
        self._f_from = [np.flatnonzero(sim.edges[:, 0] == i) for i in range(sim.N)]

    def build(self, state: AmodState, requests: np.ndarray):
        """The Pyomo model at this state, requests (H, P) of steps t … t+H−1."""
        import pyomo.environ as pyo

        sim, N = self.sim, self.sim.N
        H = requests.shape[0]
        margin = sim.price[state.t:state.t + H] - sim.pax_cost_t[state.t:state.t + H]   # (H, P)
        # which departures join region i's idle vehicles at relative step a (trip time by departure step,
        # + the benchmark's arrival delay when that defect is on, as in the simulator)
        g_arr = [[[] for _ in range(N)] for _ in range(H + 1)]
        for k in range(H):
            for p in range(sim.P):
                a = k + int(sim.pax_steps_t[state.t + k, p]) + sim.delay
                if a <= H and requests[k, p] > 0:
                    g_arr[a][int(sim.od[p, 1])].append((k, p))
        f_arr = [[[] for _ in range(N)] for _ in range(H + 1)]
        for k in range(H):
            for e in range(sim.E):
                a = k + int(sim.reb_steps[e]) + sim.delay
                if a <= H:
                    f_arr[a][int(sim.edges[e, 1])].append((k, e))
        reb_cost = sim.reb_cost                                                  # (E,)
        m = pyo.ConcreteModel("amod_mpc")
        m.TAU = pyo.RangeSet(0, H - 1)
        m.TAU1 = pyo.RangeSet(0, H)
        m.R = pyo.RangeSet(0, N - 1)
        m.P = pyo.RangeSet(0, sim.P - 1)
        m.E = pyo.RangeSet(0, sim.E - 1)
        m.g = pyo.Var(m.TAU, m.P, domain=pyo.NonNegativeReals,
                      bounds=lambda _, k, p: (0.0, float(requests[k, p])))
        m.f = pyo.Var(m.TAU, m.E, domain=pyo.NonNegativeReals)
        m.q = pyo.Var(m.TAU1, m.R, domain=pyo.NonNegativeReals)
        for i in range(N):
            m.q[0, i].fix(float(state.idle[i]))
        known = np.zeros((H + 1, N))              # vehicles in transit now, arriving at relative step h
        h_max = min(H, state.arrivals.shape[0])
        known[1:h_max + 1] = state.arrivals[:h_max]

        def departures(k, i):
            return (sum(m.g[k, p] for p in self._g_from[i]) + sum(m.f[k, e] for e in self._f_from[i]))

        m.available = pyo.Constraint(m.TAU, m.R, rule=lambda _, k, i: departures(k, i) <= m.q[k, i])

        def bookkeeping(_, k, i):       # q_{k+1} = q_k − departures_k + arrivals_{k+1}
            arr = sum(m.g[kk, p] for kk, p in g_arr[k + 1][i]) + sum(m.f[kk, e] for kk, e in f_arr[k + 1][i])
            return m.q[k + 1, i] == m.q[k, i] - departures(k, i) + arr + float(known[k + 1, i])
        m.bookkeeping = pyo.Constraint(m.TAU, m.R, rule=bookkeeping)
        m.profit = pyo.Objective(
            expr=sum(float(margin[k, p]) * m.g[k, p] for k in range(H) for p in range(sim.P) if requests[k, p] > 0)
            - sum(float(reb_cost[e]) * m.f[k, e] for k in range(H) for e in range(sim.E)),
            sense=pyo.maximize)
        return m

    def decide(self, state: AmodState, requests: np.ndarray | None = None) -> MpcDecision:
        """Plan from `state` with the future requests (default: `knowledge`, see the constructor)."""
        import pyomo.environ as pyo

        if requests is None:
            requests = self.sim.future_requests()
            if self.knowledge == "expected":      # this step's requests are known, later ones are not
                requests = np.vstack([requests[:1], self.sim.rate[state.t + 1:]])
        horizon = self.horizon if self.horizon is not None else self.sim.sc.meta.get("mpc_horizon")
        if horizon is not None:
            requests = requests[: horizon]
        t0 = time.perf_counter()
        m = self.build(state, requests)
        t1 = time.perf_counter()
        res = self.solver.solve(m, load_solutions=False)
        t2 = time.perf_counter()
        tc = str(res.solver.termination_condition)
        if "optimal" not in tc.lower():
            raise RuntimeError(f"AMoD MPC at step {state.t}: HiGHS ended with '{tc}'")
        m.solutions.load_from(res)
        sim = self.sim
        f = np.array([pyo.value(m.f[0, e]) for e in range(sim.E)])
        g = np.array([pyo.value(m.g[0, p]) for p in range(sim.P)])
        return MpcDecision(f=np.maximum(f, 0.0), g=np.maximum(g, 0.0), objective=float(pyo.value(m.profit)),
                           build_time_s=t1 - t0, solve_time_s=t2 - t1, status=tc)
