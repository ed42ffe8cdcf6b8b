"""The baselines of Table 4: the cvxpy statement of the network FOPs, the cvxpylayers fit, value approximation."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from offline.baselines.cvx_fop import CvxpyFop  # noqa: E402


def _amod_step(size: str, K: int, l: float, seed: int = 1):  # noqa: E741 (Eq. 10's l)
    from offline.amod.lower import Eq25Fop
    from offline.amod.scenario import synthetic
    from offline.amod.sim import AmodSim

    sim = AmodSim(synthetic(size, 0))
    state = sim.reset(3)
    rng = np.random.default_rng(seed)
    fop = Eq25Fop(sim, K=K, l=l)
    if K:
        fop.lp.set_theta(rng.normal(size=(K, fop.n)), rng.normal(size=K))
    qhat = np.maximum(state.idle + rng.integers(-2, 3, size=sim.N), 0)
    return fop.lp, fop.data(state, qhat)


def _inventory_step(K: int, l: float, seed: int = 2):  # noqa: E741 (Eq. 10's l)
    from offline.inventory.env import InventoryEnv
    from offline.inventory.lower import InventoryFop
    from offline.inventory.scenarios import make_scenario

    sc = make_scenario("1F3S")
    env = InventoryEnv(sc)
    env.reset(seed=0)
    state = env.state()
    fop = InventoryFop(sc, K=K, l=l)
    rng = np.random.default_rng(seed)
    if K:   # the first term makes production w cost more than missing the subgoal ŵ: it binds
        theta = rng.normal(size=(K, fop.n))
        theta[0, 0] += 5.0
        fop.set_theta(theta, rng.normal(size=K))
    lo, hi = fop.row_bounds(state, [5.0], state.stock_after_sales + 3.0)
    return fop.lp, (fop.cost, lo, hi, fop.col_lo, fop.col_hi)


@pytest.mark.parametrize("case", ["amod", "inventory"])
@pytest.mark.parametrize("K", [0, 2])
def test_cvxpy_statement_solves_like_relu_lp_fop(case, K):
    """Same θ, same state: the cvxpy problem (Clarabel) and ReluLpFop (HiGHS QP) agree. With l = 0.01
    the problem is 0.02-strongly convex, so objectives equal to 1e-6 (relative) pin x to ~1e-3."""
    lp, data = _amod_step("small", K, 1e-2) if case == "amod" else _inventory_step(K, 1e-2)
    ref = lp.solve(*data)
    assert ref.ok
    cf = CvxpyFop(lp, *data[1:])
    assert cf.problem.is_dpp()
    x = cf.solve(*data)
    assert abs(lp.objective(data[0], x) - ref.objective) <= 1e-6 * (1 + abs(ref.objective))
    assert np.max(np.abs(x - ref.x)) <= 1e-3 * (1 + np.max(np.abs(ref.x)))
    if K:   # the ReLU terms shape this solution (θ = 0 gives another one): θ really is a parameter
        x0 = cf.solve(*data, theta=np.zeros((0, lp.n)), mu=np.zeros(0))
        assert np.max(np.abs(x0 - x)) > 1e-2


def test_cvxpy_statement_refuses_another_bound_pattern():
    lp, (c, rl, rh, cl, ch) = _inventory_step(0, 1e-2)
    cf = CvxpyFop(lp, rl, rh, cl, ch)
    cl2 = cl.copy()
    cl2[0] = -np.inf          # a column bound that was finite when the problem was built
    with pytest.raises(ValueError, match="pattern"):
        cf.data_values(c, rl, rh, cl2, ch)


def _planted_problem(S: int = 24, seed: int = 0):
    """A small FOP (4 columns in [0, 2], one row Σx ≤ 3, l = 0.5) and noiseless expert decisions
    of a planted ReLU term (θ*, μ* = −5: active at every decision, so θ* shapes every one)."""
    from offline.lp_fop import ReluLpFop

    rng = np.random.default_rng(seed)
    n = 4
    lp = ReluLpFop(np.ones((1, n)), K=1, l=0.5)
    theta_star, mu_star = np.array([[1.0, -0.5, 0.3, 0.8]]), np.array([-5.0])
    lp.set_theta(theta_star, mu_star)
    data, xs = [], []
    for _ in range(S):
        d = (rng.normal(size=n), np.array([-np.inf]), np.array([3.0]), np.zeros(n), np.full(n, 2.0))
        sol = lp.solve(*d)
        assert sol.ok
        data.append(d)
        xs.append(sol.x)
    lp.set_theta(np.zeros((0, n)), np.zeros(0))
    return lp, data, np.array(xs), theta_star


def test_cvxpylayers_fit_recovers_a_planted_theta():
    from offline.baselines.layer_fit import LayerFitConfig, fit_layer
    from offline.inverse import cosine_similarity

    lp, data, xs, theta_star = _planted_problem()
    cfg = LayerFitConfig(lr=0.1, epochs=25, batch=8, l=0.5, init_scale=0.1, seed=0)
    fit = fit_layer(lp, data, xs, K=1, config=cfg)
    assert fit.failed_solves == 0
    assert fit.loss[fit.best_epoch] < 1e-2 * fit.loss[0]
    assert cosine_similarity(fit.theta, theta_star) >= 0.99


@pytest.fixture(scope="module")
def inventory_case():
    """1F3S, two MPC episodes to fit on and one held out (a few seconds)."""
    from offline.baselines.cases import inventory_case as build
    from offline.inventory.fit import HELD_OUT_SEED, collect_demonstrations
    from offline.inventory.scenarios import make_scenario

    sc = make_scenario("1F3S")
    return build(sc, collect_demonstrations(sc, [0, 1]), collect_demonstrations(sc, [HELD_OUT_SEED]), K=2)


def _next_states(case, x):
    out = []
    for st, xi in zip(case.train_states, x):
        o = case.one_step(st)
        out.append(o.s0 + o.M @ xi)
    return np.array(out)


@pytest.mark.parametrize("rank", [None, 2])
def test_value_function_is_convex_and_fits_the_cost_to_go(inventory_case, rank):
    from offline.baselines.value import fit_value

    case = inventory_case
    s = _next_states(case, case.x_expert)
    vf = fit_value(s, case.cost_to_go, case.step_index, rank=rank)
    assert vf.L.shape[1] == (s.shape[1] if rank is None else rank)
    assert np.linalg.eigvalsh(vf.P).min() >= -1e-9 * max(1.0, np.abs(vf.P).max())    # P ⪰ 0
    res = vf.predict(s, case.step_index) - case.cost_to_go
    assert np.sqrt(np.mean(res ** 2)) == pytest.approx(vf.train_rmse)              # the reported error is the error
    assert vf.train_rmse < 0.1 * np.std(case.cost_to_go) and vf.train_r2 > 0.99


def test_value_policy_minimises_stage_cost_plus_value(inventory_case):
    """The QP's decision is no worse than the expert's (feasible in the one-step problem) under cᵀx + V(s⁺)."""
    from offline.baselines.value import ValuePolicy, fit_value

    case = inventory_case
    vf = fit_value(_next_states(case, case.x_expert), case.cost_to_go, case.step_index, rank=2)
    policy = ValuePolicy(case.lp, case.one_step(case.train_states[0]).M, vf)
    compared = 0
    for st, xe in zip(case.train_states, case.x_expert):
        o = case.one_step(st)
        x, sol = policy.solve(o)
        assert sol.ok
        c, lo, hi, cl, ch = o.data
        Ax = case.lp.A @ xe
        if min((Ax - lo).min(), (hi - Ax).min(), (xe - cl).min(), (ch - xe).min()) < -1e-9:
            continue      # the MPC's model allows what Eq. 31 does not here: no comparison
        cost = lambda z: c @ z + vf(o.s0 + o.M @ z)[0]       # noqa: E731
        assert cost(x) <= cost(xe) + 1e-6 * (1 + abs(cost(xe)))
        compared += 1
    assert compared >= 10


def _table4(tmp_path, *extra):
    from offline.experiments.__main__ import main

    return main(["table4", "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--quiet",
                 "--epochs", "1", "--lr", "0.05,0.5", "--ranks", "2", "--regs", "1e-2", *extra])


@pytest.mark.parametrize("case,extra,columns", [
    ("inventory", ["--scenario", "1F2S", "--demo-episodes", "1", "--held-out-episodes", "1", "--K", "1",
                   "--fit-time-limit", "20"], ["flows"]),
    ("amod", ["--scenario", "tiny", "--horizon", "4", "--demo-episodes", "2", "--held-out-episodes", "1",
              "--fit-time-limit", "20"], ["f", "g"]),
])
def test_table4_at_a_tiny_budget(tmp_path, case, extra, columns):
    import csv

    from hiopt_ros.control.theta import load_theta

    assert _table4(tmp_path, "--case", case, "--seeds", "0,1", *extra) == 0
    out = tmp_path / "out"
    for name in ("table4.md", "table4.csv", "table4_episodes.csv", "table4.png", "cvxpylayers_seed0_loss.csv",
                 "cvxpylayers_seed0_loss.png", "cvxpylayers_seed1_loss.csv"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "table4_episodes.csv")))
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    assert set(by_method) == {"Value Approximation", "cvxpylayers", "Inverse Optimization",
                              "Unchanged FOP (θ = 0, reference)"}
    assert len(by_method["cvxpylayers"]) == 2                     # one fit per seed
    for method, rs in by_method.items():
        for r in rs:
            for col in columns:
                assert -1.0 <= float(r[f"{col}_cosine"]) <= 1.0 and float(r[f"{col}_l1"]) >= 0
            if not method.startswith("Unchanged"):
                assert float(r["fit_time_s"]) > 0
    theta = load_theta(out / "theta_cvxpylayers_seed1.yaml")
    assert theta.case_study == case and theta.provenance["fit_method"] == "cvxpylayers"
    assert theta.provenance["seed"] == 1 and len(theta.provenance["loss"]) == 2
    assert theta.provenance["lr"] in (0.05, 0.5)


@pytest.mark.parametrize("bad", [["--seeds", "x"], ["--ranks", "-1"], ["--lr", "0"], ["--methods", "nope"]])
def test_table4_refuses_bad_options_and_writes_nothing(tmp_path, capsys, bad):
    assert _table4(tmp_path, "--case", "inventory", *bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("offline.experiments:")
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()
