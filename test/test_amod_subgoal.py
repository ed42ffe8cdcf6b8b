"""The AMoD upper level's subgoal interface (offline.amod.subgoal): forms, the shortfall price, options."""
from __future__ import annotations

import math

import numpy as np
import pytest

from offline.amod.config import ScenarioSpec, lower_factory
from offline.amod.lower import Eq25Fop
from offline.amod.sim import AmodSim
from offline.amod.subgoal import SubgoalInterface, vehicle_step_cost


@pytest.fixture(scope="module")
def brooklyn():
    sim = AmodSim(ScenarioSpec(preset="nyc_brooklyn").build())
    return sim, sim.reset(10000)


def _dest(sim, g):
    return np.bincount(sim.od[:, 1], weights=g, minlength=sim.N)


def test_relative_form_action_zero_keeps_the_idle_distribution_and_changes_sum_to_zero(brooklyn):
    sim, state = brooklyn
    itf = SubgoalInterface(form="relative", scale=0.5)
    assert np.array_equal(itf.subgoal(sim, state, np.zeros(sim.N)), state.idle)
    rng = np.random.default_rng(0)
    bound = 0.5 * sim.sc.fleet / sim.N
    for _ in range(20):
        q = itf.subgoal(sim, state, rng.uniform(-2, 2, sim.N))     # outside the box: clipped
        assert q.sum() == pytest.approx(state.idle.sum())
        assert np.all(np.abs(q - state.idle) <= 2 * bound + 1e-9)


def test_floor_form_is_the_benchmarks_desired_counts_and_a_surplus_stays_put(brooklyn):
    """§9.1: â = ⌊w·M⌋ of the idle fleet after matching (plus, in Eq. 25's one-step model, the passengers'
    destinations); asking for the distribution the matching leaves moves no vehicle."""
    sim, state = brooklyn
    lower = Eq25Fop(sim, eps_penalty=SubgoalInterface().eps_penalty(sim))
    itf = SubgoalInterface(form="floor")
    g0 = lower(state, np.zeros(sim.N))[1]
    after = state.idle - np.bincount(sim.od[:, 0], weights=g0, minlength=sim.N)
    a = np.log(np.maximum(after, 1e-9) / after.max()) / 3.0      # softmax(3a) = after / Σafter
    q = itf.subgoal(sim, state, a, lower)
    assert q.sum() <= state.idle.sum() + 1e-9
    assert np.all(q - _dest(sim, g0) <= after + 1e-6)
    f, g, info = lower(state, q)
    assert info["ok"] and info["eps"] == pytest.approx(0.0, abs=1e-7)
    assert np.allclose(f, 0.0, atol=1e-7)                       # nothing to rebalance
    assert np.allclose(g, g0, atol=1e-6)
    # a uniform w asks regions with few vehicles for more: Eq. 25 then rebalances towards them
    f, _, _ = lower(state, itf.subgoal(sim, state, np.zeros(sim.N), lower))
    assert f.sum() > 0


def test_shortfall_price_is_counted_in_vehicle_steps_and_inf_keeps_remark_3s_large_m(brooklyn):
    sim, _ = brooklyn
    assert vehicle_step_cost(sim) == pytest.approx(0.5 * 4)          # β Δ on NYC Brooklyn
    assert SubgoalInterface(shortfall_price=2.5).eps_penalty(sim) == pytest.approx(5.0)
    assert SubgoalInterface(shortfall_price=math.inf).eps_penalty(sim) is None
    assert lower_factory(None, interface=SubgoalInterface(shortfall_price=3.0))(sim).eps_penalty == pytest.approx(6.0)
    assert lower_factory(None)(sim).eps_penalty == pytest.approx(10 * sim.price.max())


def test_a_finite_shortfall_price_keeps_passengers_an_unreachable_subgoal_would_take(brooklyn):
    """With Remark 3's large M, Eq. 25 keeps vehicles from paying passengers to meet a subgoal (the
    measured failure of the absolute form); with M below the margins it serves them and pays ε."""
    sim, state = brooklyn
    busiest = np.argmax(np.bincount(sim.od[:, 0], weights=state.requests, minlength=sim.N))
    stay = np.zeros(sim.N)                     # the absolute form asking for the whole fleet in the busiest region
    stay[busiest] = state.idle.sum()
    big = Eq25Fop(sim)
    small = Eq25Fop(sim, eps_penalty=SubgoalInterface(shortfall_price=2.5).eps_penalty(sim))
    g_free = small(state, np.zeros(sim.N))[1]
    _, g_big, _ = big(state, stay)
    _, g_small, info = small(state, stay)
    margin = sim.price[state.t] - sim.pax_cost_t[state.t]
    assert margin @ g_big < margin @ g_small - 1.0
    kept = margin > 5.0 + 1e-9                 # every trip worth more than M is served as without a subgoal
    assert np.allclose(g_small[kept], g_free[kept], atol=1e-6)
    assert info["eps"] > 0


@pytest.mark.parametrize("kw, what", [({"form": "nope"}, "subgoal form"), ({"scale": 0.0}, "scale"),
                                      ({"shortfall_price": -1.0}, "shortfall price")])
def test_bad_interface_settings_are_refused_by_name(kw, what):
    with pytest.raises(ValueError, match=what):
        SubgoalInterface(**kw)


def test_the_training_command_takes_the_interface_options_and_refuses_bad_ones(tmp_path, capsys):
    from offline.amod.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--subgoal-form" in out and "--shortfall-price" in out and "--subgoal-scale" in out
    rc = main(["train", "--method", "Bi-level-unchanged", "--scenario", "tiny", "--horizon", "4", "--steps", "8",
               "--subgoal-scale", "-1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "scale" in err[0]
    assert not (tmp_path / "run").exists()


def test_the_subgoals_command_measures_fixed_subgoals_per_price_and_refuses_bad_prices(tmp_path, capsys):
    """`offline.amod subgoals`: every fixed subgoal × price × lower level on the evaluation seeds, reward as a %
    of the MPC's on the same sample (never above it: the MPC is clairvoyant on this small scenario)."""
    import csv

    from offline.amod.__main__ import main

    out = tmp_path / "sg"
    assert main(["subgoals", "--scenario", "tiny", "--horizon", "4", "--episodes", "2", "--prices", "inf,2.5",
                 "--out", str(out)]) == 0
    rows = {r["method"]: r for r in csv.DictReader(open(out / "subgoals.csv"))}
    assert len(rows) == 2 * 4                                    # θ = 0 only: 2 prices × 4 subgoals
    assert any("M = inf" in m and "absolute: stay" in m for m in rows)
    for r in rows.values():
        assert float(r["reward_pct_mpc_mean"]) <= 100.0 + 1e-6
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["subgoals", "--scenario", "tiny", "--prices", "0,x", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--prices" in err[0] and not bad.exists()
