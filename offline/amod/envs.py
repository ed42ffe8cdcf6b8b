"""Gymnasium environments of the AMoD case study: the upper level of the bi-level policy, and end-to-end RL.

Both wrap the same simulator (offline.amod.sim.AmodSim) and observation; they differ in what the
action is and what turns it into flows.

AmodBiLevelEnv — the upper level of Problem (3):
    action: a ∈ [−1, 1]^N (Box), turned into the subgoal q̂ (vehicles) by the env's
        offline.amod.subgoal.SubgoalInterface: by default q̂ = q + a bounded change s·(a − ā)
        (action 0 keeps the idle distribution); 'absolute': q̂ = softmax(κ·a) · Σ_i q_t,i, a
        distribution-valued action as the paper's upper level outputs (SB3 has no Dirichlet
        policy: a Gaussian over logits followed by a softmax gives one with the library's own
        algorithms); 'floor': the benchmark's §9.1 form. The interface also sets Eq. 25's shortfall
        price M.
    lower level: the object it is given, `lower(state, q̂) -> (f, g, info)` — Eq25Fop with θ = 0
        (Bi-level-unchanged) or with a fitted θ (Bi-level-learned). The env never changes it.

AmodEndToEndEnv — end-to-end RL:
    action: a ∈ [−1, 1]^(E+P): rebalancing flow f_e = ½(a_e + 1) · q_t,origin(e) (a fraction of
        the origin's idle vehicles per edge) and passenger flow g_p = ½(a_p + 1) · D_t,p (a
        fraction of the requests per OD pair). No optimization: the simulator only clips the
        flows to the idle vehicles (passengers first) and rounds them, as an end-to-end policy
        must live with.

Observation (float32), region by region, scaled by the mean fleet per region m = fleet/N: for
each region its idle vehicles q_t, vehicles arriving at t+1 … t+4, requests leaving and entering
it this step, expected requests leaving it at t+1 … t+3 (the scenario's rates: a forecast, not the
realised future) — 10 numbers — then t/T: 10·N + 1 numbers (`observation`). The end-to-end env
sees the same per ordered pair (i, j), with the pair's own numbers (requests, travel time, margin,
empty-trip cost): 25·N² + 1 (`pair_observation`). Both are laid out item by item so that a network
shared over regions (pairs) can read them (offline.amod.policy_net.ItemwisePolicy).
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
from offline.amod.subgoal import DEFAULT_INTERFACE, LOGIT_SCALE, SubgoalInterface, softmax

__all__ = ["AmodBiLevelEnv", "AmodEndToEndEnv", "observation", "pair_observation", "region_features",
           "subgoal_from_action", "e2e_flows", "e2e_action_index", "ARRIVAL_STEPS", "FORECAST_STEPS",
           "REGION_FEATURES", "PAIR_FEATURES", "LOGIT_SCALE"]

ARRIVAL_STEPS = 4
FORECAST_STEPS = 3
#: features per region in the observation, and per ordered pair in the end-to-end one
REGION_FEATURES = 1 + ARRIVAL_STEPS + 2 + FORECAST_STEPS
PAIR_FEATURES = 2 * REGION_FEATURES + 5


def region_features(sim: AmodSim, state: AmodState) -> np.ndarray:
    """(N, REGION_FEATURES) per-region features of `state` (module docstring), scaled by m = fleet/N."""
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
    return np.column_stack([state.idle, arr.T, out_now, in_now, fc.T]) / m


def observation(sim: AmodSim, state: AmodState) -> np.ndarray:
    """The bi-level observation of `state`: region features (N, 10) row by row, then t/T; float32 (10·N + 1,)."""
    return np.r_[region_features(sim, state).ravel(), state.t / sim.T].astype(np.float32)


def pair_observation(sim: AmodSim, state: AmodState) -> np.ndarray:
    """The end-to-end observation: for every ordered pair (i, j), i-major, PAIR_FEATURES numbers —
    the region features of i and of j, this step's requests i → j and the next step's expected
    ones (per m/N), trip steps / max travel, margin and empty-trip cost (per mean price) — then t/T."""
    N = sim.N
    R = region_features(sim, state)
    scale_req = sim.sc.fleet / N / N
    req = np.zeros((N, N))
    req[sim.od[:, 0], sim.od[:, 1]] = state.requests
    nxt = np.zeros((N, N))
    if state.t + 1 < sim.T:
        nxt[sim.od[:, 0], sim.od[:, 1]] = sim.rate[state.t + 1]
    p_scale = float(sim.price.mean()) or 1.0
    t = min(state.t, sim.T - 1)
    margin = np.zeros((N, N))
    margin[sim.od[:, 0], sim.od[:, 1]] = sim.price[t] - sim.pax_cost_t[t]
    reb = np.zeros((N, N))
    reb[sim.edges[:, 0], sim.edges[:, 1]] = sim.reb_cost
    steps = np.maximum(sim.sc.pax_time, sim.sc.reb_time) / sim.H
    pair = np.concatenate([np.repeat(R[:, None, :], N, 1), np.repeat(R[None, :, :], N, 0),
                           np.stack([req / scale_req, nxt / scale_req, steps, margin / p_scale, reb / p_scale], -1)],
                          axis=-1)
    return np.r_[pair.reshape(-1), state.t / sim.T].astype(np.float32)


def e2e_action_index(sim: AmodSim) -> np.ndarray:
    """Where each entry of the end-to-end action [f (E); g (P)] sits among 2 logits per ordered pair
    (i-major; channel 0 rebalancing, 1 passengers): for offline.amod.policy_net.ItemwisePolicy."""
    N = sim.N
    return np.r_[2 * (sim.edges[:, 0] * N + sim.edges[:, 1]), 2 * (sim.od[:, 0] * N + sim.od[:, 1]) + 1]


def subgoal_from_action(action, idle_total: float, logit_scale: float = LOGIT_SCALE) -> np.ndarray:
    """The absolute form's q̂ = softmax(κ·a) · Σq (the desired idle distribution in vehicles)."""
    return softmax(action, logit_scale) * idle_total


def e2e_flows(sim: AmodSim, state: AmodState, action) -> tuple[np.ndarray, np.ndarray]:
    """End-to-end action → (f, g) before clipping (module docstring)."""
    a = 0.5 * (np.clip(np.asarray(action, float), -1.0, 1.0) + 1.0)
    f = a[:sim.E] * state.idle[sim.edges[:, 0]]
    g = a[sim.E:] * state.requests
    return f, g


class _AmodEnvBase(gym.Env):
    metadata = {"render_modes": []}
    pairwise = False      # observation per ordered pair (end-to-end) instead of per region

    def _obs(self, state: AmodState) -> np.ndarray:
        return pair_observation(self.sim, state) if self.pairwise else observation(self.sim, state)

    def __init__(self, scenario: AmodScenario, seeds: Sequence[int], reward_scale: float | None = None) -> None:
        super().__init__()
        self.sim = AmodSim(scenario)
        self.seeds = np.asarray(list(seeds), dtype=np.int64)
        if self.seeds.size == 0:
            raise ValueError("the environment needs at least one demand seed")
        N = self.sim.N
        dim = (PAIR_FEATURES * N * N if self.pairwise else REGION_FEATURES * N) + 1
        self.observation_space = gym.spaces.Box(0.0, np.inf, shape=(dim,), dtype=np.float32)
        if reward_scale is None:
            T = self.sim.T
            step_revenue = float((self.sim.rate[:T] * (self.sim.price[:T] - self.sim.pax_cost_t[:T])).sum() / T)
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
        return self._obs(state), {"episode_seed": ep}

    def _flows(self, state: AmodState, action) -> tuple[np.ndarray, np.ndarray, dict]:
        raise NotImplementedError

    def step(self, action):
        state = self.sim.state()
        f, g, info = self._flows(state, action)
        res = self.sim.step(f, g)
        done = self.sim.done
        obs = self._obs(self.sim.state()) if not done else np.zeros(self.observation_space.shape, np.float32)
        info.update(reward=res.reward, served=res.served, requests=res.requests, revenue=res.revenue,
                    pax_cost=res.pax_cost, reb_cost=res.reb_cost, clipped=res.clipped)
        return obs, res.reward * self.reward_scale, done, False, info


class AmodBiLevelEnv(_AmodEnvBase):
    """Upper level of the bi-level policy over a given lower level (module docstring).

    lower: callable (state, q̂) -> (f, g, info), e.g. offline.amod.lower.Eq25Fop (built with the
    interface's shortfall price, offline.amod.config.lower_factory). interface: action → q̂.
    """

    def __init__(self, scenario: AmodScenario, lower_factory: Callable[[AmodSim], Callable], seeds: Sequence[int],
                 reward_scale: float | None = None, interface: SubgoalInterface = DEFAULT_INTERFACE) -> None:
        super().__init__(scenario, seeds, reward_scale)
        self.lower = lower_factory(self.sim)
        self.interface = interface
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.sim.N,), dtype=np.float32)

    def _flows(self, state, action):
        qhat = self.interface.subgoal(self.sim, state, action, self.lower)
        f, g, info = self.lower(state, qhat)
        # timings stay out of info (gymnasium's determinism check); Table 1 times decisions itself
        return f, g, {"lower_ok": bool(info.get("ok", True)), "subgoal_shortfall": float(info.get("eps", 0.0))}


class AmodEndToEndEnv(_AmodEnvBase):
    """End-to-end RL: the action is the flows themselves (module docstring)."""
    pairwise = True

    def __init__(self, scenario: AmodScenario, seeds: Sequence[int], reward_scale: float | None = None) -> None:
        super().__init__(scenario, seeds, reward_scale)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(self.sim.E + self.sim.P,), dtype=np.float32)

    def _flows(self, state, action):
        f, g = e2e_flows(self.sim, state, action)
        return f, g, {}
