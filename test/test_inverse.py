"""offline.inverse: forward problem, duality gaps, Problem 11 (global and scalable) on data from a known θ*."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from offline.bench_fit import activity, synthetic_samples
from offline.inverse import (
    InverseSample,
    cosine_similarity,
    dual_function,
    duality_gaps,
    fit_inverse,
    fop_objective,
    forward_solve,
    forward_solve_batch,
)

L = 1e-2
T_TRAIN = 24
NODES = 300   # SCIP branch-and-bound nodes per global solve in the fits below
K = 3


@pytest.fixture(scope="module")
def data():
    train, theta, nu = synthetic_samples(T_TRAIN, seed=3)
    held, *_ = synthetic_samples(200, seed=4, theta=theta, nu=nu)
    return train, held, theta, nu


@pytest.fixture(scope="module")
def fits(data):
    # SCIP budgets in branch-and-bound nodes, not seconds: the same fits on a loaded machine (the time
    # limits only guard against a hang; ~8 s each on the idle 2-core machine)
    train = data[0]
    return {
        "global": fit_inverse(train, K=K, l=L, method="global", time_limit_s=600.0, node_limit=NODES,
                              progress=False),
        "alternating": fit_inverse(train, K=K, l=L, method="alternating", time_limit_s=300.0, node_limit=NODES,
                                   progress=False, subsample=12, restarts=2, seed=1),
    }


def _slsqp(sample: InverseSample, theta, nu, l):
    """Independent solve: the epigraph form with SLSQP from several starts."""
    n = len(sample.c)
    f = lambda x: sample.c @ x[:n] + x[:n] @ (sample.Q + l * np.eye(n)) @ x[:n] + x[n:].sum()  # noqa: E731
    cons = [{"type": "ineq", "fun": lambda x: sample.b - sample.H @ x[:n]},
            {"type": "ineq", "fun": lambda x: x[n:] - (theta @ x[:n] - nu)},
            {"type": "ineq", "fun": lambda x: x[n:]}]
    best = None
    for u0 in ([0.5, 0.0], [0.1, 1.0], [0.9, -1.0]):
        x0 = np.r_[u0, np.maximum(theta @ np.array(u0) - nu, 0) + 0.1]
        r = minimize(f, x0, constraints=cons, method="SLSQP", options={"ftol": 1e-12, "maxiter": 500})
        if r.success and (best is None or r.fun < best.fun):
            best = r
    return best.x[:n]


def test_forward_solve_matches_an_independent_solver(data):
    train, _, theta, nu = data
    for s in train[:6]:
        u = forward_solve(s, theta, nu, L)
        ref = _slsqp(s, theta, nu, L)
        assert np.all(s.H @ u <= s.b + 1e-7)
        assert fop_objective(s, theta, nu, L, u) <= fop_objective(s, theta, nu, L, ref) + 1e-7
        assert np.linalg.norm(u - ref) < 1e-4
    batch = forward_solve_batch(train[:6], theta, nu, L)
    assert np.allclose(batch, [forward_solve(s, theta, nu, L) for s in train[:6]], atol=1e-6)


def test_forward_solve_with_equality_rows_against_a_grid():
    # n = 2, a + Bu = x̂ fixes u1 + u2 = 0.3; brute force along that line
    s = InverseSample(c=np.array([0.3, -0.2]), Q=np.diag([0.5, 0.1]), u=np.zeros(2),
                      H=np.array([[1.0, 0], [-1, 0]]), b=np.array([1.0, 1.0]),
                      B=np.array([[1.0, 1.0]]), a=np.array([0.1]), xhat=np.array([0.4]))
    theta, nu = np.array([[1.5, -0.5], [-1.0, 0.0]]), np.array([0.1, 0.2])
    u = forward_solve(s, theta, nu, L)
    grid = np.linspace(-1, 1, 200001)
    U = np.c_[grid, 0.3 - grid]
    vals = U @ s.c + np.einsum("ti,ij,tj->t", U, s.Q + L * np.eye(2), U) + np.maximum(U @ theta.T - nu, 0).sum(1)
    assert abs(u.sum() - 0.3) < 1e-7
    assert np.linalg.norm(u - U[np.argmin(vals)]) < 1e-4


def test_forward_solve_survives_a_highs_qp_failure():
    # HiGHS' QP solver returns "Solve error" on this well-posed instance; the SLSQP fallback must
    # give the optimum
    theta = np.array([[-1.0532872082383082, -0.11086376689579722],
                      [-0.8907164981397943, 0.46305158946540836],
                      [-1.5571305322808344, -0.7844918466565063]])
    nu = np.array([-0.4183150649952748, -0.5541024604838962, -1.4966649024598002])
    s = InverseSample(c=np.array([0.13593901, -0.34199513]), Q=np.diag([0.27448143, 0.94060828]),
                      u=np.zeros(2), H=np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1], [0.25536984, -0.96684344]]),
                      b=np.array([1.0, 0.0, 1.5, 1.5, -0.44764267]))
    u = forward_solve(s, theta, nu, L)
    ref = _slsqp(s, theta, nu, L)
    assert np.all(s.H @ u <= s.b + 1e-8)
    assert np.linalg.norm(u - ref) < 1e-5
    assert np.allclose(forward_solve_batch([s, s], theta, nu, L), [u, u], atol=1e-9)


def test_synthetic_data_has_active_relu_terms_and_bounds(data):
    train, _, theta, nu = data
    act = activity(train, theta, nu)
    assert act["relu_on"] > 0.3 and act["constraint_active"] > 0.3
    # the true θ* explains the data: gaps ≈ 0, and the relaxed gap never exceeds the (11c) one
    exact = duality_gaps(train, theta, nu, L)
    relaxed = duality_gaps(train, theta, nu, L, stationarity="relaxed")
    assert exact.max() < 1e-4
    assert np.all(relaxed <= exact + 1e-7)


def test_dual_function_is_a_lower_bound(data):
    train, _, theta, nu = data
    rng = np.random.default_rng(0)
    for s in train[:5]:
        fstar = fop_objective(s, theta, nu, L, forward_solve(s, theta, nu, L))
        for _ in range(20):
            g = dual_function(s, theta, nu, L, z=rng.uniform(size=len(nu)), lam=rng.exponential(size=len(s.b)))
            assert g <= fstar + 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("method", ["global", "alternating"])
def test_fit_certifies_every_expert_action(data, fits, method):
    train, held, _, _ = data
    fit = fits[method]
    assert fit.status == {"global": "node_limit", "alternating": "converged"}[method]
    assert fit.method == method and fit.n_samples == T_TRAIN
    assert fit.theta.shape == (K, 2) and fit.nu.shape == (K,)
    assert np.all(np.abs(fit.theta) <= 10.0 + 1e-6)
    assert fit.gaps.shape == (T_TRAIN,) and np.all(fit.gaps >= 0) and np.all(np.isfinite(fit.gaps))
    assert fit.n_stationarity_infeasible == 0
    # the gaps are the re-evaluated best-dual gaps at the returned θ
    assert np.allclose(fit.gaps, duality_gaps(train, fit.theta, fit.nu, L), atol=1e-7)
    assert fit.objective == pytest.approx(np.sum(fit.gaps ** 2) + fit.rho * np.sum(fit.theta ** 2))
    assert fit.prop4_bound == pytest.approx(np.sqrt(fit.gaps.max() / L))
    for t, s in enumerate(train):
        u_star = forward_solve(s, fit.theta, fit.nu, L)
        # the expert action is optimal within its gap ...
        assert (fop_objective(s, fit.theta, fit.nu, L, s.u) - fop_objective(s, fit.theta, fit.nu, L, u_star)
                <= fit.gaps[t] + 1e-6)
        # ... and Prop. 4 bounds its distance to the FOP_θ̂ action
        dist = np.linalg.norm(u_star - s.u)
        assert dist <= np.sqrt(fit.gaps[t] / L) + 1e-6
        assert dist <= fit.prop4_bound + 1e-6
    u_held = forward_solve_batch(held, fit.theta, fit.nu, L)
    assert cosine_similarity(u_held, np.array([s.u for s in held])) >= 0.99


@pytest.mark.slow
def test_global_bound_and_scalable_objective(fits):
    g, a = fits["global"], fits["alternating"]
    assert g.bound is not None and g.bound <= g.objective * (1 + 1e-3) + 1e-9
    assert a.bound is None
    # the scalable method stays within a reasonable factor of the global optimum on the same data
    assert a.objective <= 5 * g.objective + 1e-3


def test_node_limit_is_a_positive_integer(data):
    for bad in (0, -3, 2.5, "10"):
        with pytest.raises(ValueError, match="node_limit must be an integer"):
            fit_inverse(data[0][:4], K=1, l=L, method="global", node_limit=bad, progress=False)


def test_auto_picks_scalable_for_many_samples(data, monkeypatch):
    import offline.inverse.fitting as inv
    called = {}
    monkeypatch.setattr(inv, "fit_alternating", lambda *a, **k: called.setdefault("alt", True) or None)
    monkeypatch.setattr(inv, "AUTO_GLOBAL_MAX_T", 5)
    with pytest.raises(TypeError):   # the stub returns nothing; we only check the dispatch
        fit_inverse(data[0], K=2, method="auto", progress=False)
    assert called.get("alt")


def _good():
    return InverseSample(c=np.array([1.0, 0.0]), Q=np.eye(2), u=np.array([0.1, 0.2]),
                         H=np.array([[1.0, 0.0]]), b=np.array([1.0]))


@pytest.mark.parametrize("field,value,match", [
    ("c", np.zeros(3), r"sample 1: field 'c'"),
    ("Q", np.zeros((2, 3)), r"sample 1: field 'Q'"),
    ("u", np.zeros(3), r"sample 1: field 'u'"),
    ("H", np.zeros((1, 3)), r"sample 1: field 'H'"),
    ("b", np.zeros(2), r"sample 1: field 'b'"),
    ("u", np.array([np.nan, 0.0]), r"sample 1: field 'u' contains NaN"),
    ("c", np.array([0.0, np.inf]), r"sample 1: field 'c' contains NaN"),
    ("Q", np.array([[1.0, 2.0], [0.0, 1.0]]), r"sample 1: field 'Q' is not symmetric"),
])
def test_bad_inputs_name_the_sample_and_field(field, value, match):
    bad = _good()
    setattr(bad, field, value)
    with pytest.raises(ValueError, match=match):
        fit_inverse([_good(), bad], K=2, progress=False)
    with pytest.raises(ValueError, match=match):
        duality_gaps([_good(), bad], np.zeros((1, 2)), np.zeros(1), L)


def test_bad_arguments():
    s = [_good(), _good()]
    with pytest.raises(ValueError, match="K"):
        fit_inverse(s, K=0, progress=False)
    with pytest.raises(ValueError, match="l must be > 0"):
        fit_inverse(s, K=1, l=0.0, progress=False)
    with pytest.raises(ValueError, match="method"):
        fit_inverse(s, K=1, method="magic", progress=False)
    with pytest.raises(ValueError, match="no samples"):
        fit_inverse([], K=1, progress=False)
    eq_partial = _good()
    eq_partial.B = np.ones((1, 2))
    with pytest.raises(ValueError, match="sample 0: fields 'B', 'a', 'xhat'"):
        fit_inverse([eq_partial], K=1, progress=False)
    with pytest.raises(ValueError, match="theta"):
        forward_solve(_good(), np.zeros((2, 3)), np.zeros(2), L)


# ------------------------------------------------------------------------------ LP lower levels with network rows
def _network_samples(T, seed, R=10, E=80, l=1e-3, theta=None, nu=None):
    """AMoD-shaped FOPs: u = (rebalancing f, passenger g) per edge, n = 2E, Q = 0 (an LP plus l‖u‖²),
    sparse rows: u ≥ 0, g ≤ demand, outflow of each region ≤ its idle vehicles; expert = FOP_θ*."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    o = rng.integers(0, R, E)
    out = sp.csr_matrix((np.ones(E), (o, np.arange(E))), shape=(R, E))
    n = 2 * E
    H = sp.vstack([-sp.eye(n), sp.hstack([sp.csr_matrix((E, E)), sp.eye(E)]), sp.hstack([out, out])]).tocsr()
    samples = []
    for _ in range(T):
        b = np.r_[np.zeros(n), rng.poisson(3, E).astype(float), rng.uniform(5, 15, R)]
        c = np.r_[rng.uniform(1, 3, E), -rng.uniform(2, 8, E)]      # rebalancing cost, −price of a trip
        samples.append(InverseSample(c=c, Q=np.zeros(n), u=np.zeros(n), H=H, b=b))
    if theta is None:
        theta = np.zeros((1, n))
        theta[0, E:] = rng.uniform(0, 6, E) * (rng.uniform(size=E) < 0.3)   # penalise serving some edges
        nu = np.array([1.0])
    U = forward_solve_batch(samples, theta, nu, l)
    for s, u in zip(samples, U):
        s.u = u
    return samples, theta, nu


def test_lp_lower_level_with_sparse_network_rows():
    import scipy.sparse as sp

    from offline.inverse.data import prepare
    samples, theta, nu = _network_samples(6, seed=0)
    s0 = prepare(samples[0], 0, 1e-3)
    assert sp.issparse(s0.H) and s0.Q.diagonal and s0.n == 160      # nothing densified
    # the expert is FOP_θ*'s optimum: an independent certificate is the dual LP's gap (≈ 0), and
    # every row holds
    gaps = duality_gaps(samples, theta, nu, 1e-3)
    assert gaps.max() < 1e-5
    for s in samples:
        assert np.all(s.H @ s.u <= s.b + 1e-7)
    # θ = 0 is a different FOP: its optimum is not the expert's, and the gaps say so
    assert duality_gaps(samples, np.zeros((1, 160)), np.zeros(1), 1e-3).max() > 1e-2


# ------------------------------------------------------------------------------ learned weights, robustness
@pytest.mark.slow
def test_planted_relu_terms_and_weights_are_recovered_from_noiseless_data():
    """Expert actions from a known FOP with K* = 3 ReLU terms AND planted weights φ* of two cost
    features (heading-like, input): Problem 11 with learned weights recovers φ* and imitates FOP_θ*
    on held-out samples; every expert action is certified within its gap."""
    from offline.bench_fit import Synthetic, features, true_theta

    cfg = Synthetic(weights_true=(1.2, -0.05))
    theta, nu = true_theta(3, 3)
    train, *_ = synthetic_samples(24, seed=3, cfg=cfg, theta=theta, nu=nu)
    held, *_ = synthetic_samples(200, seed=4, cfg=cfg, theta=theta, nu=nu)
    expert = np.array([s.u for s in held])
    # the unchanged FOP (θ = 0, φ = 0) does not imitate it
    assert cosine_similarity(forward_solve_batch(held, np.zeros((1, 2)), np.zeros(1), L), expert) < 0.9
    fit = fit_inverse(train, K=3, l=L, method="global", time_limit_s=600.0, node_limit=NODES, features=features(2),
                      progress=False)
    assert fit.status in ("node_limit", "optimal")
    assert fit.weight_names == ["heading", "input"] and fit.weights.shape == (2,)
    np.testing.assert_allclose(fit.weights, cfg.weights_true, atol=0.02)
    u_held = forward_solve_batch(held, fit.theta, fit.nu, L, weights=fit.weights)
    assert cosine_similarity(u_held, expert) >= 0.99
    # the gaps are the best-dual gaps at the returned (θ, ν, φ), and certify each expert action
    assert np.allclose(fit.gaps, duality_gaps(train, fit.theta, fit.nu, L, weights=fit.weights), atol=1e-7)
    for t, s in enumerate(train):
        u_star = forward_solve(s, fit.theta, fit.nu, L, weights=fit.weights)
        assert (fop_objective(s, fit.theta, fit.nu, L, s.u, weights=fit.weights)
                - fop_objective(s, fit.theta, fit.nu, L, u_star, weights=fit.weights) <= fit.gaps[t] + 1e-6)


def test_weights_only_is_one_convex_solve_and_recovers_planted_weights():
    from offline.bench_fit import Synthetic, features

    cfg = Synthetic(weights_true=(0.8, 0.3))
    zero = (np.zeros((0, 2)), np.zeros(0))
    train, *_ = synthetic_samples(60, seed=5, cfg=cfg, theta=zero[0], nu=zero[1])
    fit = fit_inverse(train, K=0, l=L, features=features(2), progress=False)
    assert fit.method == "convex" and fit.theta.shape == (0, 2)
    np.testing.assert_allclose(fit.weights, cfg.weights_true, atol=1e-4)
    assert fit.gaps.max() < 1e-6


def test_feature_box_must_keep_the_fop_strongly_convex():
    from offline.inverse import Features

    train, *_ = synthetic_samples(5, seed=6)
    bad = Features(names=("input",), lower=(-5.0,), upper=(1.0,))
    with pytest.raises(ValueError, match="not strongly convex.*raise the lower bounds"):
        fit_inverse(train, K=0, l=L, features=Features(names=("heading", "input"), lower=(0.0, -5.0),
                                                       upper=(1.0, 1.0)), progress=False)
    with pytest.raises(ValueError, match="feature_lin"):   # one feature asked for, the samples carry two
        fit_inverse(train, K=0, l=L, features=bad, progress=False)


@pytest.mark.slow
def test_a_sample_whose_forward_problem_cannot_be_solved_is_dropped_and_counted(data):
    train = list(data[0][:12])
    # contradictory rows (v ≤ 0.1 and v ≥ 0.5): no action is feasible, so FOP_θ has no solution
    broken = InverseSample(c=np.array([0.1, 0.0]), Q=np.eye(2), u=np.array([0.3, 0.0]),
                           H=np.array([[1.0, 0.0], [-1.0, 0.0]]), b=np.array([0.1, -0.5]))
    samples = train[:5] + [broken] + train[5:]
    with pytest.warns(RuntimeWarning, match="sample 5: the expert action violates its constraints"):
        fit = fit_inverse(samples, K=2, l=L, method="alternating", time_limit_s=10.0, subsample=6, restarts=1,
                          progress=False)
    assert fit.dropped == [5] and fit.n_samples == 12 and fit.gaps.shape == (12,)
    assert np.all(np.isfinite(fit.gaps))
    with pytest.raises(RuntimeError, match="sample 0: forward problem not solved"):
        forward_solve_batch([broken], np.zeros((1, 2)), np.zeros(1), L)
    assert np.isnan(forward_solve_batch([broken], np.zeros((1, 2)), np.zeros(1), L, on_failure="nan")).all()


def test_closed_form_duals_match_the_lp_and_the_theta_step_never_increases_the_objective(data):
    """Per-sample best duals in closed form (n = 2: vertices of the dual polygon; one-input rows:
    per-axis costs) equal the z-step LP's gaps, and the Gauss-Newton θ-step that uses them never
    returns a worse (11a) objective than its start."""
    from offline.inverse import separable
    from offline.inverse.data import prepare_all
    from offline.inverse.dual import best_duals
    from offline.inverse.stack import Stack

    train, _, theta, nu = data
    st = Stack.from_preps(prepare_all(train, L))
    duals = separable.Duals(st)
    assert duals.available and duals.axis is None          # general half-spaces: the vertex form
    rng = np.random.default_rng(1)
    for _ in range(3):
        th, n_ = theta + rng.normal(scale=0.3, size=theta.shape), nu + rng.normal(scale=0.1, size=nu.shape)
        lp = best_duals(st, th, n_)
        x0 = np.r_[th.ravel(), n_]
        eps, _ = separable.gaps_and_jacobian(x0, st, lp["z"], duals, None, 3, 0)
        np.testing.assert_allclose(eps, lp["eps"], atol=1e-8)
        f0 = float(eps @ eps + 1e-3 * np.sum(th ** 2))
        th1, nu1, _, eps1 = separable.theta_step(st, lp["z"], 3, 1e-3, 10.0, 50.0, None, None, x0, duals)
        assert float(eps1 @ eps1 + 1e-3 * np.sum(th1 ** 2)) <= f0 + 1e-12
    # rows that touch one input each (the robot's) use the per-axis form
    axis_rows = [InverseSample(c=s.c, Q=s.Q, u=s.u, H=s.H[:4], b=s.b[:4]) for s in train]
    st2 = Stack.from_preps(prepare_all(axis_rows, L))
    d2 = separable.Duals(st2)
    assert d2.axis is not None
    lp = best_duals(st2, theta, nu)
    eps, _ = separable.gaps_and_jacobian(np.r_[theta.ravel(), nu], st2, lp["z"], d2, None, 3, 0)
    np.testing.assert_allclose(eps, lp["eps"], atol=1e-8)


@pytest.mark.slow
def test_bench_fit_reports_time_memory_and_recovery(tmp_path, capsys):
    """The scaling benchmark's command on a small size: a row per case with time, peak memory,
    recovered weights and held-out cosine (its own process, so the memory is its own)."""
    from offline import bench_fit

    md = tmp_path / "bench.md"
    assert bench_fit.main(["--sizes", "300", "--weights", "--time-limit", "20", "--held-out", "100",
                           "--restarts", "1", "--quiet", "--markdown", str(md)]) == 0
    row = next(line for line in md.read_text().splitlines() if line.startswith("| synthetic | 300 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    peak_mb, weight_error, cosine = float(cells[7]), float(cells[10]), float(cells[11])
    assert 50 < peak_mb < 5000 and weight_error < 0.05 and cosine >= 0.99
    assert bench_fit.main(["--source", "robot"]) == 2
    assert "needs --robot-bag" in capsys.readouterr().err


def test_alternating_never_returns_a_theta_worse_than_theta_zero():
    """θ = 0 is always a candidate: a search with no time left returns it rather than failing or a
    worse θ, and on data the unchanged FOP explains exactly the fit keeps every gap at zero."""
    train, *_ = synthetic_samples(12, seed=5, theta=np.zeros((1, 2)), nu=np.zeros(1))
    assert np.allclose(duality_gaps(train, np.zeros((2, 2)), np.zeros(2), L), 0.0, atol=1e-7)
    out_of_time = fit_inverse(train, K=2, l=L, method="alternating", time_limit_s=0.0, subsample=0, restarts=2,
                              progress=False)
    assert np.all(out_of_time.theta == 0) and np.all(out_of_time.nu == 0) and out_of_time.status == "time_limit"
    fit = fit_inverse(train, K=2, l=L, method="alternating", time_limit_s=120.0, subsample=0, restarts=2,
                      progress=False)
    assert fit.objective <= 1e-9 and np.max(fit.gaps) <= 1e-7
