"""Gymnasium environments of the AMoD case study: the upper level of the bi-level policy, and end-to-end RL.

Both wrap the same simulator (offline.amod.sim.AmodSim) and observation; they differ in what the
action is and what turns it into flows.

AmodBiLevelEnv — the upper level of Problem (3):
    action: a ∈ [−1, 1]^N (Box). The desired idle distribution is softmax(κ·a) (κ = logit_scale),
        a point of the simplex, and the subgoal is q̂ = softmax(κ·a) · Σ_i q_t,i (vehicles). A
        distribution-valued action is what the paper's upper level outputs; SB3 has no Dirichlet
        policy, so a Gaussian (PPO) or squashed Gaussian (SAC) over logits followed by a softmax
        gives one with the library's own algorithms (the softmax is invariant to adding a constant
        to a, a harmless redundant direction).
    lower level: the object it is given, `lower(state, q̂) -> (f, g, info)` — Eq25Fop with θ = 0
        (Bi-level-unchanged) or with a fitted θ (Bi-level-learned). The env never changes it.

AmodEndToEndEnv — end-to-end RL:
    action: a ∈ [−1, 1]^(E+P): rebalancing flow f_e = ½(a_e + 1) · q_t,origin(e) (a fraction of
        the origin's idle vehicles per edge) and passenger flow g_p = ½(a_p + 1) · D_t,p (a
        fraction of the requests per OD pair). No optimization: the simulator only clips the
        flows to the idle vehicles (passengers first) and rounds them, as an end-to-end policy
        must live with.

Observation (both, float32, 10·N + 1): per region, scaled by the mean fleet per region m = fleet/N:
    idle vehicles q_t (N) | vehicles arriving at t+1 … t+4 (4N) | requests leaving / entering the
    region this step (2N) | expected requests leaving at t+1 … t+3 (3N, the scenario's rates: a
    forecast, not the realised future) | t / T (1).
Reward: the simulator's step reward ($) times reward_scale (default 1 / the expected revenue of
one step at full service, so returns are O(T)); info has the unscaled reward, served, requests,
revenue, costs, clipped vehicles (and for the bi-level env whether the lower level solved and its
subgoal shortfall Σε).
Episode: T steps of one demand sample. reset(seed) draws the sample's seed from `seeds` (the
training pool) with that seed, or uses options={"episode_seed": s} for a given sample.
"""
from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np

from offline.amod.scenario import AmodScenario
from offline.amod.sim import AmodSim, AmodState

__all__ = ["AmodBiLevelEnv", "AmodEndToEndEnv", "observation", "subgoal_from_action", "e2e_flows",
           "ARRIVAL_STEPS", "FORECAST_STEPS", "LOGIT_SCALE"]

ARRIVAL_STEPS = 4
FORECAST_STEPS = 3
#: κ of softmax(κ·a): the upper level can ask for region shares up to e^{2κ} ≈ 400× apart
LOGIT_SCALE = 3.0


def observation(sim: AmodSim, state: AmodState) -> np.ndarray:
    """The observation vector of `state` (module docstring), float32 (10·N + 1,)."""
    N, T = sim.N, sim.T
    m = sim.sc.fleet / N
    arr = np.zeros((ARRIVAL_STEPS, N))
    h = min(ARRIVAL_STEPS, state.arrivals.shape[0])
    arr[:h] = state.arrivals[:h]
    out_now = np.bincount(sim.od[:, 0], weights=state.requests, minlength=N)
    in_now = np.bincount(sim.od[:, 1], weights=state.requests, minlength=N)
    fc = np.zeros((FORECAST_STEPS, N))
    for k in range(FORECAST_STEPS):
        if state.t + 1 + k < T:
            fc[k] = np.bincount(sim.od[:, 0], weights=sim.rate[state.t + 1 + k], minlength=N)
    obs = np.concatenate([state.idle / m, arr.ravel() / m, out_now / m, in_now / m, fc.ravel() / m,
                          [state.t / T]])
    return obs.astype(np.float32)


def subgoal_from_action(action, idle_total: float, logit_scale: float = LOGIT_SCALE) -> np.ndarray:
    """q̂ = softmax(κ·a) · Σq (the desired idle distribution in vehicles)."""
    z = logit_scale * np.clip(np.asarray(action, float), -1.0, 1.0)
    w = np.exp(z - z.max())
    return w / w.sum() * idle_total


def e2e_flows(sim: AmodSim, state: AmodState, action) -> tuple[np.ndarray, np.ndarray]:
    """End-to-end action → (f, g) before clipping (module docstring)."""
    a = 0.5 * (np.clip(np.asarray(action, float), -1.0, 1.0) + 1.0)
    f = a[:sim.E] * state.idle[sim.edges[:, 0]]
    g = a[sim.E:] * state.requests
    return f, g


class _AmodEnvBase(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, scenario: AmodScenario, seeds: Sequence[int], reward_scale: float | None = None) -> None:
        super().__init__()
        self.sim = AmodSim(scenario)
        self.seeds = np.asarray(list(seeds), dtype=np.int64)
        if self.seeds.size == 0:
            raise ValueError("the environment needs at least one demand seed")
        N = self.sim.N
        self.observation_space = gym.spaces.Box(0.0, np.inf, shape=(10 * N + 1,), dtype=np.float32)
        if reward_scale is None:
            step_revenue = float((self.sim.rate * (self.sim.price - self.sim.pax_cost[None])).sum() / self.sim.T)
            reward_scale = 1.0 / max(step_revenue, 1e-9)
        self.reward_scale = float(reward_scale)
        self.episode_seed: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "episode_seed" in options:
            ep = int(options["episode_seed"])
        else:
            ep = int(self.np_random.choice(self.seeds))
        self.episode_seed = ep
        state = self.sim.reset(ep)
        return observation(self.sim, state), {"episode_seed": ep}

    def _flows(self, state: AmodState, action) -> tuple[np.ndarray, np.ndarray, dict]:
        raise NotImplementedError

    def step(self, action):
        state = self.sim.state()
        f, g, info = self._flows(state, action)
        res = self.sim.step(f, g)
        done = self.sim.done
        obs = observation(self.sim, self.sim.state()) if not done else np.zeros(self.observation_space.shape, np.float32)
        info.update(reward=res.reward, served=res.served, requests=res.requests, revenue=res.revenue,
                    pax_cost=res.pax_cost, reb_cost=res.reb_cost, clipped=res.clipped)
        return obs, res.reward * self.reward_scale, done, False, info


class AmodBiLevelEnv(_AmodEnvBase):
    """Upper level of the bi-level policy over a given lower level (module docstring).

    lower: callable (state, q̂) -> (f, g, info), e.g. offline.amod.lower.Eq25Fop.
    """

    def __init__(self, scenario: AmodScenario, lower_factory: Callable[[AmodSim], Callable], seeds: Sequence[int],
                 reward_scale: float | None = None, logit_scale: float = LOGIT_SCALE) -> None:
        super().__init__(scenario, seeds, reward_scale)
        self.lower = lower_factory(self.sim)
        self.logit_scale = float(logit_scale)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.sim.N,), dtype=np.float32)

    def _flows(self, state, action):
        qhat = subgoal_from_action(action, state.idle.sum(), self.logit_scale)
        f, g, info = self.lower(state, qhat)
        # timings stay out of info (gymnasium's determinism check); Table 1 times decisions itself
        return f, g, {"lower_ok": bool(info.get("ok", True)), "subgoal_shortfall": float(info.get("eps", 0.0))}


class AmodEndToEndEnv(_AmodEnvBase):
    """End-to-end RL: the action is the flows themselves (module docstring)."""

    def __init__(self, scenario: AmodScenario, seeds: Sequence[int], reward_scale: float | None = None) -> None:
        super().__init__(scenario, seeds, reward_scale)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.sim.E + self.sim.P,), dtype=np.float32)

    def _flows(self, state, action):
        f, g = e2e_flows(self.sim, state, action)
        return f, g, {}
