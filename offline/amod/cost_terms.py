"""Learned linear cost terms of Eq. 25: what a vehicle's time is worth, by stage of the episode.

Eq. 25 looks one step ahead: with the subgoal q̂ fixing each region's net outflow, it chooses which
requests to serve and which empty trips realise the rest by this step's margins and costs alone.
Whether a vehicle is free again after 1 step or after 7 does not enter it. The MPC, planning over
the whole horizon, values that time: when vehicles are scarce it serves short trips before long
ones, and rebalances along quicker routes (measured on the 16-region scenario: README, AMoD).

A cost term adds w · φ(t)ᵀx to Eq. 25's cost, with x = [f; g; ε] and a learned weight w ≥ 0:

    time_f          φ = the rebalancing edges' travel times (steps) on f, 0 elsewhere
    time_g          φ = the OD pairs' trip times (steps) on g, 0 elsewhere
    time_f[a:b]     the same, active only at steps a ≤ t < b of the episode (0 at other steps)
    time_g[a:b]

so w is a cost per vehicle-step (in the scenario's price unit), and Eq. 25 becomes

    min  (c_f + w_f(t)·s_f)ᵀf − (p̃ − w_g(t)·s_g)ᵀg + M·1ᵀε + Σ_k max(θ_kᵀx − μ_k, 0)

A term without a time window is a fixed per-column linear cost: the limit of a ReLU term whose
kink is always active (max(θᵀx − μ, 0) = θᵀx − μ for μ below every feasible θᵀx), i.e. the
paper's form. Time windows let the weight follow the episode (on the 16-region scenario a
vehicle-step is worth ~0 while vehicles are plentiful early on and in the last steps, whose trips
end after the episode, and ~1–1.5 around the demand peak; README, AMoD). The weights are learned with
Problem (11) as its cost-feature weights φ (offline.inverse.Features): K = 0 with these terms is convex.

Spec strings (the `--cost-terms` option): "time" → time_f, time_g; "time:B" → both in B windows
of equal length over the episode's T steps, e.g. "time:4" with T = 20 → time_f[0:5], time_g[0:5],
time_f[5:10], … The θ file stores the weights by these names in `cost_weights` (and lists them
in `learned_weights`); Eq25Fop reads them from there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["CostTerm", "parse_spec", "parse_name", "term_matrix", "correction_table"]

_NAME = re.compile(r"^time_(?P<kind>[fg])(?:\[(?P<t0>\d+):(?P<t1>\d+)\])?$")


@dataclass(frozen=True)
class CostTerm:
    """One learnable term: kind "f" (rebalancing) or "g" (passengers), active at steps t0 ≤ t < t1."""
    kind: str
    t0: int = 0
    t1: int | None = None        # None: to the end of the episode

    @property
    def name(self) -> str:
        return f"time_{self.kind}" if self.t0 == 0 and self.t1 is None else f"time_{self.kind}[{self.t0}:{self.t1}]"

    def active(self, t: int) -> bool:
        return self.t0 <= t and (self.t1 is None or t < self.t1)


def parse_name(name: str) -> CostTerm:
    """The term of a name (module docstring); ValueError for anything else."""
    m = _NAME.match(str(name))
    if m is None:
        raise ValueError(f"unknown Eq. 25 cost term {name!r} (known: time_f, time_g, time_f[a:b], time_g[a:b])")
    if m["t0"] is None:
        return CostTerm(m["kind"])
    t0, t1 = int(m["t0"]), int(m["t1"])
    if t1 <= t0:
        raise ValueError(f"Eq. 25 cost term {name!r}: empty time window")
    return CostTerm(m["kind"], t0, t1)


def parse_spec(spec: str, horizon: int) -> list[str]:
    """Names of the terms of a spec ("time" or "time:B"; module docstring) for an episode of `horizon` steps."""
    m = re.fullmatch(r"time(?::(\d+))?", str(spec).strip())
    if m is None:
        raise ValueError(f"unknown cost-term spec {spec!r} (use 'time' or 'time:B', B time windows)")
    if m[1] is None:
        return ["time_f", "time_g"]
    B = int(m[1])
    if not 1 <= B <= horizon:
        raise ValueError(f"cost-term spec {spec!r}: B must be between 1 and the horizon ({horizon}), got {B}")
    edges = np.round(np.linspace(0, horizon, B + 1)).astype(int)
    return [CostTerm(k, int(a), int(b)).name for a, b in zip(edges[:-1], edges[1:]) for k in ("f", "g")]


def _steps(sim, t: int) -> dict[str, np.ndarray]:
    """Per column of x = [f; g; ε]: the vehicle-steps of one unit of flow leaving at step t, for each kind."""
    E, P, N = sim.E, sim.P, sim.N
    f = np.r_[sim.reb_steps.astype(float), np.zeros(P + N)]
    g = np.r_[np.zeros(E), sim.pax_steps_t[min(int(t), sim.bins - 1)].astype(float), np.zeros(N)]
    return {"f": f, "g": g}


def term_matrix(sim, names, t: int) -> np.ndarray:
    """φ_j(t) for every term name (J, n): the cost features of Problem 11 at a decision of step t."""
    terms = [parse_name(nm) for nm in names]
    steps = _steps(sim, t)
    n = sim.E + sim.P + sim.N
    out = np.zeros((len(terms), n))
    for j, term in enumerate(terms):
        if term.active(int(t)):
            out[j] = steps[term.kind]
    return out


def correction_table(sim, weights: dict) -> np.ndarray:
    """(T, n): the cost added to Eq. 25 at each step t, Σ_j w_j φ_j(t), for weights {name: w}."""
    names = list(weights)
    w = np.array([float(weights[nm]) for nm in names])
    return np.array([w @ term_matrix(sim, names, t) for t in range(sim.T)]).reshape(sim.T, -1)
