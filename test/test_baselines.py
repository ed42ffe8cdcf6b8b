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


# ---------------------------------------------------------------------------------------------- the robot
def _robot_sample(rng, obstacle: bool = True):
    """A robot-shaped per-sample FOP (offline.inverse.InverseSample): u = (v, ω), diagonal Q, the input
    bounds as 4 rows and (optionally) an obstacle half-space, the expert u left at 0 (not used)."""
    from offline.inverse import InverseSample

    H = [[1, 0], [-1, 0], [0, 1], [0, -1]]
    b = [0.5, 0.0, 1.5, 1.5]
    if obstacle:
        H.append([1.0, rng.normal(scale=0.3)])
        b.append(rng.uniform(0.2, 0.4))
    return InverseSample(c=rng.normal(size=2) + np.array([-3.0, 0.0]), Q=rng.uniform(0.5, 2.0, size=2),
                         u=np.zeros(2), H=np.array(H, float), b=np.array(b), feature_lin=rng.normal(size=(1, 2)),
                         feature_quad=rng.uniform(0.0, 1.0, size=(1, 2)))


@pytest.mark.parametrize("K", [0, 2])
def test_robot_cvxpy_statement_solves_like_the_inverse_fits_forward_problem(K):
    """SampleFop (the cvxpy statement of the per-sample form) and offline.inverse's forward QP (HiGHS)
    give the same u at the same θ, ν, l and cost weights, with and without the obstacle row."""
    from offline.baselines.robot import SampleFop
    from offline.inverse.forward import forward_solve

    rng = np.random.default_rng(3)
    sf = SampleFop(2, 5, K)
    assert sf.problem.is_dpp()
    theta, nu = rng.normal(size=(K, 2)) * 2, rng.normal(size=K) * 0.1
    moved = 0
    for i in range(8):
        s = _robot_sample(rng, obstacle=i % 2 == 0)
        w = np.array([0.3]) if i % 3 == 0 else None
        ref = forward_solve(s, theta, nu, 0.01, weights=w)
        u = sf.solve(s, theta, nu, 0.01, weights=w)
        assert np.max(np.abs(u - ref)) <= 1e-4, (i, u, ref)
        if K:
            moved += np.max(np.abs(u - forward_solve(s, np.zeros((0, 2)), np.zeros(0), 0.01, weights=w))) > 1e-3
    assert not K or moved >= 2          # θ really shapes the solutions (it is a parameter, not ignored)


def test_robot_cvxpylayers_fit_imitates_a_planted_relu_term():
    """Noiseless expert decisions of a planted ReLU term (ν* = −5: active at every decision, as in the
    network test): the fitted θ points like θ* and reproduces the decisions on samples it never saw."""
    from offline.baselines.layer_fit import LayerFitConfig
    from offline.baselines.robot import fit_robot_layer
    from offline.inverse.forward import forward_solve
    from offline.inverse.metrics import cosine_similarity, mean_l2

    rng = np.random.default_rng(0)
    theta_star, nu_star = np.array([[2.0, -1.0]]), np.array([-5.0])
    samples = []
    for _ in range(48):
        s = _robot_sample(rng, obstacle=False)
        s.u = forward_solve(s, theta_star, nu_star, 0.01)
        samples.append(s)
    train, held = samples[:32], samples[32:]
    cfg = LayerFitConfig(lr=0.1, epochs=15, batch=8, l=0.01, init_scale=0.1, seed=0)
    fit = fit_robot_layer(train, K=1, l=0.01, config=cfg).fit
    assert fit.failed_solves == 0 and fit.loss[fit.best_epoch] < 0.05 * fit.loss[0]
    assert cosine_similarity(fit.theta, theta_star) >= 0.99
    expert = np.array([s.u for s in held])
    learned = np.array([forward_solve(s, fit.theta, fit.mu, 0.01) for s in held])
    unchanged = np.array([forward_solve(s, np.zeros((0, 2)), np.zeros(0), 0.01) for s in held])
    assert mean_l2(learned, expert) < 0.2 * mean_l2(unchanged, expert)


def test_table4_robot_at_a_tiny_budget(tmp_path):
    """The robot's Table 4 on one recorded training and one held-out course (offline.demos)."""
    import csv

    from hiopt_ros.control.theta import load_theta

    assert _table4(tmp_path, "--case", "robot", "--robot-episodes", "1", "--robot-val-episodes", "1",
                   "--robot-max-train", "30", "--robot-time-limit", "5") == 0
    out = tmp_path / "out"
    for name in ("table4.md", "table4.csv", "table4_episodes.csv", "table4.png", "theta_inverse.yaml",
                 "cvxpylayers_seed0_loss.csv"):
        assert (out / name).stat().st_size > 0, name
    rows = {r["method"]: r for r in csv.DictReader(open(out / "table4_episodes.csv"))}
    assert set(rows) == {"cvxpylayers", "Inverse Optimization", "Unchanged FOP (θ = 0, reference)"}
    for r in rows.values():
        for key in ("deployed", "convexified"):
            assert 0.5 <= float(r[f"{key}_cosine"]) <= 1.0 and float(r[f"{key}_l1"]) >= 0
    theta = load_theta(out / "theta_cvxpylayers_seed0.yaml")
    assert theta.case_study == "robot" and theta.provenance["fit_method"] == "cvxpylayers"
    assert theta.K == 2 and theta.provenance["samples"] == 30 and theta.provenance["lrs"] == [0.05, 0.5]
    assert load_theta(out / "theta_inverse.yaml").provenance["samples"]["train"] > 0


@pytest.mark.parametrize("bad", [["--robot-K", "0"], ["--robot-subgoal", "nope"], ["--robot-episodes", "0"]])
def test_table4_robot_refuses_bad_options_and_writes_nothing(tmp_path, capsys, bad):
    assert _table4(tmp_path, "--case", "robot", *bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("offline.experiments:") and bad[0][2:].split("-")[-1] in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()
