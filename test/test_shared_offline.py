"""The shared offline pieces: the HiGHS ReLU-LP lower level (offline/lp_fop.py) and the results writer."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from offline.lp_fop import ReluLpFop
from sim.results import Metric, ResultsTable, timing_stats


def _instance(rng, A):
    """Feasible random data: bounds around A x0 for x0 inside the box, first row an equality."""
    m, n = A.shape
    x0 = rng.uniform(0.0, 2.0, n)
    ax = A @ x0
    lo, hi = ax - rng.uniform(0.0, 1.0, m), ax + rng.uniform(0.0, 1.0, m)
    lo[0] = hi[0] = ax[0]
    return rng.normal(size=n), lo, hi, np.zeros(n), np.full(n, 2.0)


def _reference(A, c, lo, hi, cl, ch, theta=None, mu=None):
    """The same FOP as an explicit epigraph LP solved by scipy's linprog."""
    m, n = A.shape
    K = 0 if theta is None else theta.shape[0]
    pad = np.zeros((m - 1, K))
    A_ub = np.r_[np.c_[A[1:], pad], np.c_[-A[1:], pad]]
    b_ub = np.r_[hi[1:], -lo[1:]]
    if K:
        A_ub = np.r_[A_ub, np.c_[theta, -np.eye(K)]]
        b_ub = np.r_[b_ub, mu]
    res = linprog(np.r_[c, np.ones(K)], A_ub=A_ub, b_ub=b_ub, A_eq=np.c_[A[:1], np.zeros((1, K))], b_eq=hi[:1],
                  bounds=list(zip(cl, ch)) + [(0, None)] * K)
    assert res.status == 0
    return res.fun


def test_relu_lp_matches_an_independent_lp_and_theta_changes_in_place():
    rng = np.random.default_rng(0)
    A = (sp.random(5, 7, density=0.5, random_state=1) + sp.eye(5, 7)).toarray()
    fop = ReluLpFop(A, K=3)
    for _ in range(4):  # θ = 0: the unchanged FOP
        data = _instance(rng, A)
        sol = fop.solve(*data)
        assert sol.ok and sol.objective == pytest.approx(_reference(A, *data), abs=1e-7)
    theta, mu = rng.normal(size=(2, 7)), np.array([0.2, -0.3])
    fop.set_theta(theta, mu)   # 2 of 3 slots used, no rebuild
    penalties = []
    for _ in range(6):
        data = _instance(rng, A)
        sol = fop.solve(*data)
        assert sol.ok and sol.objective == pytest.approx(_reference(A, *data, theta, mu), abs=1e-7)
        assert sol.relu_penalty == pytest.approx(np.maximum(theta @ sol.x - mu, 0).sum(), abs=1e-9)
        penalties.append(sol.relu_penalty)
        lo, hi = data[1], data[2]
        assert np.all(A @ sol.x <= hi + 1e-7) and np.all(A @ sol.x >= lo - 1e-7)
    fop.set_theta(np.zeros((0, 7)), [])
    data = _instance(rng, A)
    assert fop.solve(*data).objective == pytest.approx(_reference(A, *data), abs=1e-7)


def test_quadratic_term_and_failures_are_reported_not_raised():
    rng = np.random.default_rng(3)
    A = np.eye(3, 4) + 0.5
    fop = ReluLpFop(A, K=1, l=0.1)
    c, lo, hi, cl, ch = _instance(rng, A)
    sol = fop.solve(c, lo, hi, cl, ch)
    assert sol.ok
    # strongly convex: the optimum satisfies the KKT conditions of a smooth QP only approximately
    # checked instead by comparing with nearby feasible points along the equality's null space
    null = np.linalg.svd(A[:1])[2][-1]
    for step in (1e-3, -1e-3):
        x = np.clip(sol.x + step * null, cl, ch)
        if np.all(A[1:] @ x <= hi[1:]) and np.all(A[1:] @ x >= lo[1:]) and abs(A[0] @ x - hi[0]) < 1e-9:
            assert fop.objective(c, x) >= sol.objective - 1e-9
    bad = fop.solve(c, lo + 50, hi + 50, cl, ch)
    assert not bad.ok and np.all(np.isnan(bad.x)) and "nfeasible" in bad.status
    assert fop.solve(c, lo, hi, cl, ch).ok          # the model is not corrupted by a failure
    with pytest.raises(ValueError, match="row_lo"):
        fop.solve(c, np.r_[lo[:-1], np.nan], hi, cl, ch)
    with pytest.raises(ValueError, match="K=1"):
        fop.set_theta(np.ones((2, 4)), np.zeros(2))


def test_inverse_sample_describes_the_same_feasible_set():
    rng = np.random.default_rng(5)
    A = np.eye(4, 6) + 0.3
    fop = ReluLpFop(A)
    c, lo, hi, cl, ch = _instance(rng, A)
    x = fop.solve(c, lo, hi, cl, ch).x
    s = fop.inverse_sample(c, lo, hi, cl, ch, x)
    assert np.all(s.H @ x <= s.b + 1e-8) and np.allclose(s.B @ x, s.xhat)
    # rows: 3 inequality rows × 2 sides + 6 upper + 6 lower column bounds; one equality row
    assert s.H.shape == (18, 6) and s.B.shape == (1, 6)
    outside = x.copy()
    outside[0] = ch[0] + 0.5
    assert np.any(s.H @ outside > s.b)


def test_results_table_mean_std_markdown_and_csv(tmp_path):
    table = ResultsTable("Table X", [Metric("time_s", "Travel time", "s", ".2f", higher_is_better=False),
                                     Metric("success", "Success", "%", ".0f", True, scale=100.0)])
    for t, ok in ((4.0, 1), (5.0, 1), (float("nan"), 0)):
        table.add("A", {"time_s": t, "success": ok})
    table.add("B", {"time_s": 6.0, "success": 1})
    assert table.stats("A", "time_s") == (4.5, 0.5, 2)
    md = table.markdown(notes=["seeds 100–102"])
    assert "| A | 3 | **4.50 ± 0.50 (n=2)** | 67 ± 47 |" in md
    assert "- seeds 100–102" in md and "**100 ± 0**" in md
    with pytest.raises(ValueError, match="lacks"):
        table.add("A", {"time_s": 1.0})
    paths = table.write(tmp_path / "out", "tab")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert rows[0]["method"] == "A" and float(rows[0]["time_s_mean"]) == 4.5 and rows[0]["time_s_n"] == "2"
    assert len(list(csv.DictReader(paths["episodes_csv"].open()))) == 4
    stats = timing_stats([0.001, 0.002, 0.003])
    assert stats["mean_ms"] == pytest.approx(2.0) and stats["n"] == 3
