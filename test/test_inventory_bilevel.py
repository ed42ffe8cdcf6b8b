"""The inventory upper level's subgoal forms (issue 18): the forecast form's action 0 is the
just-in-time subgoal of the observed demand, its learned change is bounded, and through Eq. 31 it
plays the MPC's episodes exactly (SCIM's observation holds the realised demand of t … t+2)."""
from __future__ import annotations

import numpy as np
import pytest

from offline.inventory.env import InventoryEnv
from offline.inventory.lower import InventoryFop
from offline.inventory.mpc import InventoryMpc
from offline.inventory.policy_envs import (
    FORECAST_CHANGE,
    FixedSubgoalPolicy,
    SubgoalEnv,
    action_to_subgoal,
    forecast_subgoal,
)
from offline.inventory.scenarios import make_scenario


def _mid_episode(sc, seed=3, steps=5):
    env = InventoryEnv(sc)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):   # some production, some shipments, some backlog
        env.step(np.r_[rng.uniform(0, 30, sc.n_warehouses), rng.uniform(0, 8, sc.n_edges)])
    return env


def test_forecast_subgoal_by_hand_and_its_bounded_change():
    sc = make_scenario("1F3S")
    env = _mid_episode(sc)
    st, d2 = env.state(), env.demand_at(env.t + 2)
    s = st.stock_s - st.demand                       # post-demand stock (negative: backlog)
    w0, q0 = forecast_subgoal(sc, st, d2)
    assert q0 == pytest.approx(st.next_demand)
    need = sum(max(st.next_demand[j] - s[j], 0.0) + d2[j] for j in range(3))
    assert w0 == pytest.approx([max(need - st.stock_w[0], 0.0)])
    assert np.any(s < 0) or need > 0                 # the state is not trivial
    # action 0 is the forecast; ±1 moves each entry by a quarter of the node's capacity, never below 0
    w, q = action_to_subgoal("forecast", sc, st, d2, np.zeros(4))
    assert w == pytest.approx(w0) and q == pytest.approx(q0)
    w, q = action_to_subgoal("forecast", sc, st, d2, np.full(4, 5.0))     # clipped to +1
    assert w == pytest.approx(w0 + FORECAST_CHANGE * sc.capacity_w)
    assert q == pytest.approx(q0 + FORECAST_CHANGE * sc.capacity_s)
    w, q = action_to_subgoal("forecast", sc, st, d2, -np.ones(4))
    assert w == pytest.approx(np.maximum(w0 - FORECAST_CHANGE * sc.capacity_w, 0))
    assert q == pytest.approx(np.maximum(q0 - FORECAST_CHANGE * sc.capacity_s, 0))
    # the absolute form: [−1, 1] → [0, capacity]
    w, q = action_to_subgoal("absolute", sc, st, d2, np.zeros(4))
    assert w == pytest.approx(0.5 * sc.production_scale) and q == pytest.approx(0.5 * sc.capacity_s)
    with pytest.raises(ValueError, match="subgoal form"):
        action_to_subgoal("relative", sc, st, d2, np.zeros(4))


def test_forecast_action_zero_plays_the_mpc_episode_and_subgoal_env_uses_it():
    """With the benchmark LP's objective (θ = 0), the forecast subgoal through Eq. 31 earns the
    perfect-knowledge MPC's reward on every step; SubgoalEnv's action 0 is the same policy."""
    sc = make_scenario("1F2S")
    fop, mpc = InventoryFop(sc), InventoryMpc(sc)
    rule = FixedSubgoalPolicy(sc, fop, "forecast")
    senv = SubgoalEnv(sc, InventoryFop(sc), subgoal_form="forecast")
    for seed in (10_000, 10_001):
        rewards = {}
        for name, pol in (("mpc", mpc), ("rule", rule)):
            env = InventoryEnv(sc)
            env.reset(seed=seed)
            rewards[name], done = [], False
            while not done:
                _, r, done, _, _ = env.step(pol.act(env).action)
                rewards[name].append(r)
        assert rewards["rule"] == pytest.approx(rewards["mpc"], abs=1e-6)
        senv.reset(options={"demand_seed": seed})
        got, done = [], False
        while not done:
            _, _, done, _, info = senv.step(np.zeros(3))
            got.append(info["reward"])
        assert got == pytest.approx(rewards["rule"], abs=1e-6)
    # the absolute form's action 0 (the middle of every range) is far below it
    env = InventoryEnv(sc)
    env.reset(seed=10_000)
    mid, done = 0.0, False
    absolute = FixedSubgoalPolicy(sc, fop, "absolute")
    while not done:
        _, r, done, _, _ = env.step(absolute.act(env).action)
        mid += r
    assert mid < 0.5 * sum(rewards["mpc"])
    with pytest.raises(ValueError, match="subgoal_form"):
        SubgoalEnv(sc, fop, subgoal_form="relative")


def test_evaluate_runs_the_subgoal_rules_and_refuses_a_bad_theta(capsys, tmp_path):
    from offline.inventory.evaluate import main

    assert main(["--scenario", "1F2S", "--policies", "mpc,forecast", "--episodes", "2"]) == 0
    lines = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith(("mpc ", "forecast "))]
    assert len(lines) == 2 and lines[0][1] == lines[1][1]            # the same mean return
    bad = tmp_path / "bad.yaml"
    bad.write_text("not: [a theta")
    assert main(["--scenario", "1F2S", "--policies", "forecast", "--theta", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--theta" in err[0] and "bad.yaml" in err[0]


def test_value_approximation_policy_is_picklable_and_plays_the_same_after():
    """Table 1's Value approximation row (offline.baselines.value) travels to a Ray worker as data
    and rebuilds its HiGHS problem there: the same action before and after pickling."""
    import pickle

    from offline.inventory.table1 import value_approximation

    sc = make_scenario("1F2S")
    va = value_approximation(sc, demo_seeds=(0, 1), ranks="2", regs="1e-2")
    assert va.report["rank"] == 2 and np.all(np.linalg.eigvalsh(va.vf.P) >= -1e-9)
    env = _mid_episode(sc)
    a0, sol = va.decide(env.state())
    assert sol.ok and a0.shape == (sc.n_warehouses + sc.n_edges,) and np.all(a0 >= 0)
    copy = pickle.loads(pickle.dumps(va))
    assert copy._built is None                       # no HiGHS object in the pickle
    np.testing.assert_allclose(copy.act(env).action, a0, atol=1e-7)
