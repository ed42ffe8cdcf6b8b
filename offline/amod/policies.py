"""The four AMoD decision makers of Table 1 behind one interface, and the evaluation episode.

A policy maps the simulator's state to flows: `decide(state) -> (f, g)`. `run_episode` times
every decision (policy network + lower-level solve, or the MPC's model build + solve; the
simulator's bookkeeping is not part of a decision) and returns the episode's totals.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from offline.amod.envs import e2e_flows, observation, pair_observation
from offline.amod.mpc import AmodMpc
from offline.amod.sim import AmodSim, AmodState
from offline.amod.subgoal import DEFAULT_INTERFACE, SubgoalInterface

__all__ = ["MpcPolicy", "BiLevelPolicy", "EndToEndPolicy", "SubgoalPolicy", "OneStepPolicy", "EpisodeResult",
           "run_episode"]


class MpcPolicy:
    """The MPC (offline.amod.mpc; perfect knowledge by default) applying its first step."""

    def __init__(self, sim: AmodSim, knowledge: str = "perfect") -> None:
        self.sim, self.mpc = sim, AmodMpc(sim, knowledge=knowledge)

    def decide(self, state: AmodState):
        d = self.mpc.decide(state)
        return d.f, d.g


def _one_thread() -> None:
    import torch
    torch.set_num_threads(1)   # one small network per decision: threads only add contention


class BiLevelPolicy:
    """Upper level (an SB3 model of AmodBiLevelEnv) → q̂ (through the subgoal interface it was trained
    with) → lower level (Eq25Fop, θ = 0 or fitted, with that interface's shortfall price)."""

    def __init__(self, sim: AmodSim, model, lower, interface: SubgoalInterface = DEFAULT_INTERFACE) -> None:
        _one_thread()
        self.sim, self.model, self.lower, self.interface = sim, model, lower, interface
        self.last_subgoal = None

    def decide(self, state: AmodState):
        a, _ = self.model.predict(observation(self.sim, state), deterministic=True)
        self.last_subgoal = self.interface.subgoal(self.sim, state, a, self.lower)
        f, g, _ = self.lower(state, self.last_subgoal)
        return f, g


class SubgoalPolicy:
    """A given subgoal function (state → q̂) over a lower level: oracle subgoals, heuristics, tests."""

    def __init__(self, subgoal, lower) -> None:
        self.subgoal, self.lower = subgoal, lower

    def decide(self, state: AmodState):
        f, g, _ = self.lower(state, self.subgoal(state))
        return f, g


class OneStepPolicy:
    """A whole policy without an upper level that solves one problem per step over the case's one-step
    problem without a subgoal (offline.baselines.cases.ImitationCase.one_step), e.g. value approximation
    (offline.baselines.value.ValuePolicy: `solve(one_step) -> (x, solution)`)."""

    def __init__(self, case, policy) -> None:
        self.case, self.policy = case, policy
        self.failed = 0

    def decide(self, state: AmodState):
        x, sol = self.policy.solve(self.case.one_step(state))
        self.failed += not sol.ok
        parts = self.case.decision_columns(np.nan_to_num(x))
        return parts["f"], parts["g"]


class EndToEndPolicy:
    """End-to-end RL: the SB3 model of AmodEndToEndEnv outputs the flows."""

    def __init__(self, sim: AmodSim, model) -> None:
        _one_thread()
        self.sim, self.model = sim, model

    def decide(self, state: AmodState):
        a, _ = self.model.predict(pair_observation(self.sim, state), deterministic=True)
        return e2e_flows(self.sim, state, a)


@dataclass
class EpisodeResult:
    reward: float
    served: float
    requests: float
    decision_times_s: list
    totals: dict = field(default_factory=dict)
    flows_f: np.ndarray | None = None     # (T, E) applied rebalancing flows


def run_episode(sim: AmodSim, policy, seed: int) -> EpisodeResult:
    """One episode of `policy` on the demand sample `seed`; the fleet is checked to be conserved at every step."""
    state = sim.reset(seed)
    times, F = [], []
    while not sim.done:
        t0 = time.perf_counter()
        f, g = policy.decide(state)
        times.append(time.perf_counter() - t0)
        res = sim.step(f, g)
        sim.check_conservation()
        F.append(res.f)
        state = sim.state()
    tot = dict(sim.totals)
    return EpisodeResult(reward=tot["reward"], served=tot["served"], requests=tot["requests"],
                         decision_times_s=times, totals=tot, flows_f=np.array(F))
