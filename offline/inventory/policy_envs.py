"""The environments the RL policies act in: bi-level (subgoal → FOP_θ, Eq. 31) and end-to-end.

* :class:`SubgoalEnv` — the upper level's MDP of the bi-level framework (Problem 3): the action
  gives the subgoal x̂ₜ = (ŵ desired production (W), q̂ desired store stock at the next step (S))
  through a *subgoal form* (:data:`SUBGOAL_FORMS`, :func:`action_to_subgoal`), and the lower level
  (:class:`~offline.inventory.lower.InventoryFop`, unchanged or with a learned θ) turns it into
  the action (w, f) the inventory env executes. The forms:

  - ``forecast`` (default): action 0 is the just-in-time subgoal of the demand the agent observes
    (SCIM §7.1: realised d(t), d(t+1), d(t+2)), q̂_j = d_j(t+1) (store j holds nothing after
    tomorrow's demand) and ŵ = the units the factory needs for its next two shipments beyond its
    stock, max(Σ_j (d_j(t+1) − s_j)⁺ + Σ_j d_j(t+2) − F, 0); the action in [−1, 1] adds a bounded
    change of ± :data:`FORECAST_CHANGE` × the node's capacity (then clipped at 0);
  - ``absolute``: the action scaled from [−1, 1] to [0, production scale] (the production
    capacity, else the factory's storage capacity: SCIM has none) and [0, store capacity].
* :class:`DirectEnv` — end-to-end RL: the action is (w, f) itself, scaled from [−1, 1] to
  [0, production scale] and [0, store capacity]; the env only clips each shipment to the factory's
  stock (the benchmark's rule), as an end-to-end policy would face it.

Both have the inventory env's observation, report its info (``served`` etc.) plus the decision
time, and multiply the reward by ``reward_scale`` (for learning; evaluation reads ``info["reward"]``,
the unscaled reward). Each episode draws its demand seed from ``train_seeds`` (default 0 … 9,999;
``reset(seed=...)`` only seeds that draw), so training demand samples are exactly the ones
``InventoryEnv.reset(seed=s)`` gives for those s, and evaluation seeds outside the range are never
seen in training.
"""
from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from .env import InventoryEnv, InventoryState
from .lower import InventoryFop
from .scenarios import InventoryScenario, seasonal_mean_demand

__all__ = ["SubgoalEnv", "DirectEnv", "TRAIN_SEEDS", "default_reward_scale", "SUBGOAL_FORMS", "FORECAST_CHANGE",
           "forecast_subgoal", "action_to_subgoal", "FixedSubgoalPolicy"]

#: demand seeds of training episodes (evaluation uses seeds ≥ 10,000: offline.experiments)
TRAIN_SEEDS = range(0, 10_000)


#: the upper level's action → subgoal maps (SubgoalEnv's subgoal_form; module docstring)
SUBGOAL_FORMS = ("forecast", "absolute")

#: forecast form: the action's largest change of the forecast subgoal, as a fraction of each node's capacity
FORECAST_CHANGE = 0.25


def forecast_subgoal(scenario: InventoryScenario, state: InventoryState,
                     demand_after_next) -> tuple[np.ndarray, np.ndarray]:
    """The just-in-time subgoal (ŵ, q̂) of the observed demand: q̂ = d(t+1) and ŵ = what each factory
    needs beyond its stock F for today's shipments to q̂ and tomorrow's to d(t+2) (module docstring).

    demand_after_next: d(t+2) per store (0 beyond the episode). A store with several supplying
    factories splits its need evenly between them (the benchmark has one factory)."""
    sc = scenario
    q_hat = np.asarray(state.next_demand, float).copy()
    need_s = np.maximum(q_hat - state.stock_after_sales, 0.0) + np.asarray(demand_after_next, float)
    fan_in = np.maximum(sc.in_edges.sum(axis=1), 1.0)           # (S,) edges into each store
    need_e = sc.in_edges.T @ (need_s / fan_in)                   # (E,) each edge's share
    return np.maximum(sc.out_edges @ need_e - state.stock_w, 0.0), q_hat


def action_to_subgoal(form: str, scenario: InventoryScenario, state: InventoryState, demand_after_next,
                      action) -> tuple[np.ndarray, np.ndarray]:
    """(ŵ, q̂) in goods units of an upper-level action in [−1, 1]^(W+S) (clipped) under a subgoal form."""
    sc = scenario
    a = np.clip(np.asarray(action, dtype=float).reshape(-1), -1.0, 1.0)
    W = sc.n_warehouses
    if form == "absolute":
        x = 0.5 * (a + 1.0) * np.r_[sc.production_scale, sc.capacity_s]
        return x[:W], x[W:]
    if form != "forecast":
        raise ValueError(f"subgoal form must be one of {', '.join(SUBGOAL_FORMS)}, got {form!r}")
    w0, q0 = forecast_subgoal(sc, state, demand_after_next)
    change = FORECAST_CHANGE * a * np.r_[sc.capacity_w, sc.capacity_s]
    return np.maximum(w0 + change[:W], 0.0), np.maximum(q0 + change[W:], 0.0)


class FixedSubgoalPolicy:
    """A subgoal form's action 0 through a lower level, every step (no learning): ``act(env)`` → decision.

    With the forecast form this is the just-in-time subgoal of the observed demand; with the
    absolute form the middle of each range (offline.inventory.evaluate's ``forecast`` / ``absolute``)."""

    def __init__(self, scenario: InventoryScenario, fop: InventoryFop, form: str = "forecast") -> None:
        if form not in SUBGOAL_FORMS:
            raise ValueError(f"subgoal form must be one of {', '.join(SUBGOAL_FORMS)}, got {form!r}")
        self.scenario, self.fop, self.form = scenario, fop, form
        self._zero = np.zeros(scenario.n_warehouses + scenario.n_stores)

    def act(self, env: InventoryEnv):
        st = env.state()
        return self.fop.solve(st, *action_to_subgoal(self.form, self.scenario, st, env.demand_at(env.t + 2),
                                                     self._zero))


def default_reward_scale(scenario: InventoryScenario) -> float:
    """1 / (revenue of a step's mean demand): per-step rewards of order 1 for the learner."""
    mean_demand = seasonal_mean_demand(scenario, np.arange(scenario.horizon_steps)).mean(axis=0)
    return float(1.0 / max(scenario.price @ mean_demand, 1e-9))


class _SeededEpisodes(gym.Env):
    """Common part: an InventoryEnv, training-seed sampling, reward scaling, [−1, 1] actions."""

    def __init__(self, scenario: InventoryScenario, n_act: int, reward_scale: float | None,
                 train_seeds=TRAIN_SEEDS) -> None:
        super().__init__()
        self.env = InventoryEnv(scenario)
        self.scenario = scenario
        self.observation_space = self.env.observation_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n_act,), dtype=np.float32)
        self.reward_scale = default_reward_scale(scenario) if reward_scale is None else float(reward_scale)
        self.train_seeds = train_seeds
        self.last_seed: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """``seed`` seeds the sampler of training demand seeds (SB3's ``venv.seed``);
        ``options={"demand_seed": s}`` plays exactly the demand sample of ``InventoryEnv.reset(seed=s)``."""
        super().reset(seed=seed)
        if options and options.get("demand_seed") is not None:
            self.last_seed = int(options["demand_seed"])
        else:
            self.last_seed = int(self.train_seeds[int(self.np_random.integers(len(self.train_seeds)))])
        return self.env.reset(seed=self.last_seed)

    def _scale(self, a, high: np.ndarray) -> np.ndarray:
        a = np.clip(np.asarray(a, dtype=float).reshape(-1), -1.0, 1.0)
        return 0.5 * (a + 1.0) * high

    def _step(self, action_wf: np.ndarray, decision_s: float, extra: dict):
        obs, reward, terminated, truncated, info = self.env.step(action_wf)
        info = dict(info, reward=reward, decision_time_s=decision_s, **extra)
        return obs, reward * self.reward_scale, terminated, truncated, info


class SubgoalEnv(_SeededEpisodes):
    """Upper-level MDP: action in [−1, 1]^(W+S) → subgoal (ŵ, q̂); the FOP computes (w, f).

    Args:
        scenario: the supply network.
        fop: the lower level (InventoryFop with θ installed, or the unchanged K = 0 one).
        reward_scale: multiplies the reward (default :func:`default_reward_scale`).
        subgoal_form: "forecast" (default) or "absolute" (:func:`action_to_subgoal`).
    """

    def __init__(self, scenario: InventoryScenario, fop: InventoryFop, reward_scale: float | None = None,
                 train_seeds=TRAIN_SEEDS, subgoal_form: str = "forecast") -> None:
        super().__init__(scenario, scenario.n_warehouses + scenario.n_stores, reward_scale, train_seeds)
        if subgoal_form not in SUBGOAL_FORMS:
            raise ValueError(f"subgoal_form must be one of {', '.join(SUBGOAL_FORMS)}, got {subgoal_form!r}")
        self.fop = fop
        self.subgoal_form = subgoal_form
        self.fop_failures = 0

    def subgoal(self, action) -> tuple[np.ndarray, np.ndarray]:
        """(ŵ, q̂) in goods units from an action in [−1, 1]^(W+S) at the current state."""
        env = self.env
        return action_to_subgoal(self.subgoal_form, self.scenario, env.state(), env.demand_at(env.t + 2), action)

    def step(self, action):
        t0 = time.perf_counter()
        w_hat, q_hat = self.subgoal(action)
        dec = self.fop.solve(self.env.state(), w_hat, q_hat)
        dt = time.perf_counter() - t0
        if dec.solution.ok:
            act = dec.action
        else:   # never expected (Eq. 31 is always feasible); do nothing rather than act on NaN
            self.fop_failures += 1
            act = np.zeros(self.scenario.n_warehouses + self.scenario.n_edges)
        return self._step(act, dt, {"fop_ok": dec.solution.ok, "fop_solve_time_s": dec.solution.solve_time_s,
                                    "w_hat": w_hat, "q_hat": q_hat})


class DirectEnv(_SeededEpisodes):
    """End-to-end MDP: action = (w, f) in [−1, 1]^(W+E), scaled to [0, production scale] and
    [0, capacity of the edge's store]; the inventory env clips each shipment to the factory's stock."""

    def __init__(self, scenario: InventoryScenario, reward_scale: float | None = None,
                 train_seeds=TRAIN_SEEDS) -> None:
        super().__init__(scenario, scenario.n_warehouses + scenario.n_edges, reward_scale, train_seeds)
        self._high = np.r_[scenario.production_scale, scenario.capacity_s[scenario.edges[:, 1]]]

    def step(self, action):
        t0 = time.perf_counter()
        act = self._scale(action, self._high)
        return self._step(act, time.perf_counter() - t0, {})
