"""Property-based fuzzing (hypothesis) of the lower level `Fop.solve` and the expert `Mpc.solve`.

Over random states (unwrapped yaws, far from the origin), subgoals (on the robot, tiny offsets,
100 m away), obstacles (none, a few, overlapping the robot, hundreds, huge) and θ (random ReLU
terms, l, weights, input bounds), every result is either a finite action within the input bounds
whose next position (unicycle_step with Ts) respects every obstacle's constraint, or the stop
command with ok = False. Nothing returns NaN, and nothing raises except the documented ValueError
for bad inputs.

The default run is bounded and derandomized (a fixed seed), so it takes seconds and is
repeatable. For a long run, set the example count and optionally a seed:

    HIOPT_FUZZ_EXAMPLES=5000 HIOPT_FUZZ_SEED=123 python -m pytest test/test_fuzz_control.py
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from hiopt_ros.control.fop import Fop, FopConfig
from hiopt_ros.control.model import UnicycleLimits, nearest_obstacles, unicycle_step
from hiopt_ros.control.mpc import Mpc, MpcConfig
from hiopt_ros.control.theta import Theta

_LONG = int(os.environ.get("HIOPT_FUZZ_EXAMPLES", "0"))
_SEED = os.environ.get("HIOPT_FUZZ_SEED")
#: a next position may enter a (relaxed) margin by at most this much [m] (solver tolerances)
DIST_TOL_M = 1e-6


def _settings(default_examples: int):
    s = settings(max_examples=_LONG or default_examples, deadline=None, derandomize=_SEED is None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    return (lambda f: seed(int(_SEED))(s(f))) if _SEED is not None else s


finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def states(draw) -> np.ndarray:
    scale = draw(st.sampled_from([1.0, 1.0, 50.0, 1e4]))
    return np.array([draw(st.floats(-scale, scale, **finite)), draw(st.floats(-scale, scale, **finite)),
                     draw(st.floats(-60.0, 60.0, **finite))])


@st.composite
def offsets(draw, near: float = 3.0) -> np.ndarray:
    """A point relative to the robot: on it, a hair away, near, or far."""
    dist = draw(st.one_of(st.just(0.0), st.floats(1e-12, 1e-6), st.floats(0.01, near), st.floats(near, 100.0)))
    ang = draw(st.floats(-math.pi, math.pi))
    return dist * np.array([math.cos(ang), math.sin(ang)])


@st.composite
def obstacle_sets(draw, state: np.ndarray) -> np.ndarray:
    kind = draw(st.sampled_from(["none", "few", "few", "overlapping the robot", "many", "huge"]))
    if kind == "none":
        return np.zeros((0, 3))
    n = {"few": draw(st.integers(1, 6)), "overlapping the robot": draw(st.integers(1, 3)),
         "many": draw(st.integers(20, 1000)), "huge": 1}[kind]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    reach = {"few": 2.0, "overlapping the robot": 0.5, "many": 10.0, "huge": 30.0}[kind]
    centres = state[:2] + rng.uniform(-reach, reach, (n, 2))
    radii = rng.uniform(0.0, 2.0 if kind != "huge" else 25.0, n)
    if draw(st.booleans()):
        radii[0] = 0.0  # a point obstacle
    return np.column_stack([centres, radii])


@st.composite
def thetas(draw) -> Theta:
    K = draw(st.integers(0, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 20.0]))
    return Theta(alpha=scale * rng.normal(size=(K, 2)), beta=scale * rng.normal(size=K),
                 l=draw(st.sampled_from([0.0, 0.01, 1.0, 10.0])))


@st.composite
def limits(draw) -> UnicycleLimits:
    return UnicycleLimits(v_min_mps=draw(st.sampled_from([0.0, 0.0, -0.5])),
                          v_max_mps=draw(st.sampled_from([1.0, 1.0, 0.0, 2.0])),
                          omega_min_radps=-draw(st.sampled_from([1.5, 0.0, 3.0])),
                          omega_max_radps=draw(st.sampled_from([1.5, 0.0, 3.0])))


def assert_safe_action(u, info, state, obstacles, lim: UnicycleLimits, ts: float, margin_m: float) -> None:
    """The contract: stop with ok=False, or a finite in-bounds action whose next position keeps every
    obstacle's (relaxed) margin — the robot never gets closer to an obstacle whose margin it is in."""
    u = np.asarray(u)
    assert u.shape == (2,) and np.all(np.isfinite(u)), (u, info.message)
    if not info.ok:
        assert np.all(u == 0.0), f"a failed solve must return the stop command, got {u} ({info.message})"
        return
    assert lim.v_min_mps <= u[0] <= lim.v_max_mps and lim.omega_min_radps <= u[1] <= lim.omega_max_radps, (u, lim)
    if len(obstacles):
        rows = np.array(nearest_obstacles(state, obstacles, margin_m, len(obstacles), relax_inside=True))
        p1 = unicycle_step(state, u, ts)[:2]
        dist = np.hypot(rows[:, 0] - p1[0], rows[:, 1] - p1[1])
        worst = int(np.argmin(dist - rows[:, 2]))
        assert dist[worst] >= rows[worst, 2] - DIST_TOL_M, (
            f"next position enters obstacle {rows[worst].tolist()}'s margin by {rows[worst, 2] - dist[worst]:.3g} m: "
            f"state={state.tolist()}, u={u.tolist()}, {info.message}")


@pytest.fixture(scope="module")
def fop() -> Fop:
    return Fop(FopConfig(K=4, M=4))


@pytest.fixture(scope="module")
def mpc() -> Mpc:
    return Mpc(MpcConfig(N=20, M=4))


@_settings(200)
@given(data=st.data())
def test_fop_fuzz(fop, data):
    state = data.draw(states(), "state")
    subgoal = state[:2] + data.draw(offsets(), "subgoal offset")
    obstacles = data.draw(obstacle_sets(state), "obstacles")
    theta = data.draw(thetas(), "theta")
    lim = data.draw(limits(), "limits")
    weights = data.draw(st.tuples(*(st.sampled_from([0.0, 1.0, 30.0, 100.0, 1e4]),) * 3), "c_p, c_h, c_u")
    c_du = data.draw(st.sampled_from([0.0, 0.3, 1e4]), "c_du (the change-of-command extension)")
    u_prev = data.draw(st.tuples(st.floats(-20, 20), st.floats(-20, 20)), "u_prev")
    defaults = FopConfig()
    try:
        fop.set_theta(theta)
        fop.set_limits(lim)
        fop.set_weights(*weights, c_du=c_du)
        u, info = fop.solve(state, subgoal, obstacles, u_prev=u_prev)
        cfg = fop.config
        assert_safe_action(u, info, state, obstacles, lim, cfg.Ts_s, cfg.robot_radius_m + cfg.d_safe_m)
        if info.ok:
            assert math.isfinite(info.cost)
            assert info.cost == pytest.approx(fop.objective(state, subgoal, u), rel=1e-9, abs=1e-9)
    finally:
        fop.set_theta(Theta.zero(0))
        fop.set_limits(UnicycleLimits())
        fop.set_weights(defaults.c_p, defaults.c_h, defaults.c_u, defaults.c_du)


@_settings(40)
@given(data=st.data())
def test_mpc_fuzz(mpc, data):
    state = data.draw(states(), "state")
    goal = state[:2] + data.draw(offsets(near=5.0), "goal offset")
    obstacles = data.draw(obstacle_sets(state), "obstacles")
    mpc.reset()
    cfg = mpc.config
    for _ in range(data.draw(st.integers(1, 3), "consecutive solves")):  # cold, then warm-started
        u, info = mpc.solve(state, goal, obstacles)
        assert_safe_action(u, info, state, obstacles, cfg.limits, cfg.Ts_s, cfg.robot_radius_m + cfg.d_safe_m)
        assert np.all(np.isfinite(info.trajectory)) and np.all(np.isfinite(info.subgoal))
        state = unicycle_step(state, u, 0.02)


_BAD = [("state", [0.0, np.nan, 0.0]), ("state", [0.0, 0.0]), ("state", "abc"), ("state", [np.inf, 0, 0]),
        ("goal", [np.nan, 0.0]), ("goal", [1.0, 2.0, 3.0]), ("goal", None),
        ("obstacles", [[1.0, 2.0]]), ("obstacles", [[1.0, 2.0, -0.1]]), ("obstacles", [[np.nan, 0.0, 0.1]]),
        ("obstacles", [[1.0, 2.0, np.inf]]), ("obstacles", "xyz")]


@pytest.mark.parametrize("which, bad", _BAD, ids=[f"{w}={b!r}" for w, b in _BAD])
def test_bad_inputs_raise_value_error_naming_the_input(fop, mpc, which, bad):
    args = {"state": [0.0, 0.0, 0.0], "goal": [1.0, 0.0], "obstacles": [[2.0, 2.0, 0.3]]}
    args[which] = bad
    name = {"state": "state", "goal": "subgoal_xy|goal_xy", "obstacles": "obstacles_xyr"}[which]
    for solver in (fop, mpc):
        with pytest.raises(ValueError, match=name):
            solver.solve(args["state"], args["goal"], args["obstacles"])
