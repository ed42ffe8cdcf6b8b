"""The baselines of Table 4: the cvxpy statement of the network FOPs, the cvxpylayers fit, value approximation."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from offline.baselines.cvx_fop import CvxpyFop  # noqa: E402


def _amod_step(size: str, K: int, l: float, seed: int = 1):
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


def _inventory_step(K: int, l: float, seed: int = 2):
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
    ch2 = ch.copy()
    ch2[0] = np.inf
    with pytest.raises(ValueError, match="pattern"):
        cf.data_values(c, rl, rh, cl, ch2)
