"""The lower level (FOP, Eq. 32) and the MPC expert: correctness against IPOPT, safety, no rebuilds."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hiopt_ros.control import acados_env
from hiopt_ros.control.fop import Fop, FopConfig
from hiopt_ros.control.model import UnicycleLimits, unicycle_step
from hiopt_ros.control.mpc import Mpc, MpcConfig
from hiopt_ros.control.reference import IpoptFop
from hiopt_ros.control.theta import Theta
from hiopt_ros.course import Course, load_course
from hiopt_ros.unicycle_loop import run_episode

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fop() -> Fop:
    return Fop(FopConfig(K=4, M=4))


@pytest.fixture(scope="module")
def ipopt(fop) -> IpoptFop:
    return IpoptFop(fop)


def _margin(fop: Fop) -> float:
    return fop.config.robot_radius_m + fop.config.d_safe_m


def _next_clearances(fop: Fop, state, u, obstacles) -> np.ndarray:
    """Distance of p_{t+1} to each obstacle minus (r + robot radius + d_safe)."""
    p1 = unicycle_step(state, u, fop.config.Ts_s)[:2]
    obstacles = np.asarray(obstacles, float)
    return np.hypot(obstacles[:, 0] - p1[0], obstacles[:, 1] - p1[1]) - obstacles[:, 2] - _margin(fop)


def _effective_clearances(fop: Fop, state, u, obstacles) -> np.ndarray:
    """(32g) as the FOP states it: distance of p_{t+1} to each of the nearest M obstacles minus its
    effective radius (r + robot radius + d_safe, or the current distance when already inside)."""
    p1 = unicycle_step(state, u, fop.config.Ts_s)[:2]
    eff = fop.effective_obstacles(state, obstacles)
    if len(eff) == 0:
        return np.array([np.inf])
    return np.hypot(eff[:, 0] - p1[0], eff[:, 1] - p1[1]) - eff[:, 2]


def _random_instances(fop: Fop, n: int, seed: int = 0):
    """Random states/subgoals/θ/obstacles with the robot outside every safety margin."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        state = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-math.pi, math.pi)])
        subgoal = state[:2] + rng.uniform(-1.2, 1.2, 2)
        obstacles = np.column_stack([state[:2] + rng.uniform(-1, 1, (3, 2)), rng.uniform(0.05, 0.3, 3)])
        if np.min(np.hypot(*(obstacles[:, :2] - state[:2]).T) - obstacles[:, 2] - _margin(fop)) < 0.02:
            continue
        theta = Theta(alpha=rng.normal(size=(4, 2)), beta=0.3 * rng.normal(size=4), l=0.01)
        out.append((state, subgoal, obstacles, theta))
    return out


def _active_obstacle_instance():
    """Heading straight at an obstacle whose margin is 0.05 m ahead: v must stop at the margin."""
    state = np.array([0.0, 0.0, 0.0])
    obstacles = np.array([[0.85, 0.0, 0.4]])  # margin 0.4 + 0.3 + 0.1 = 0.8 → 0.05 m of free travel
    return state, np.array([2.0, 0.0]), obstacles, Theta.zero(0)


def test_fop_matches_ipopt_on_random_instances(fop, ipopt):
    instances = _random_instances(fop, 40) + [_active_obstacle_instance()]
    seen = {"relu": 0, "bound": 0, "obstacle": 0}
    for state, subgoal, obstacles, theta in instances:
        fop.set_theta(theta)
        u, info = fop.solve(state, subgoal, obstacles)
        u_ref, _ = ipopt.solve(state, subgoal, obstacles)
        assert info.ok, info.message
        np.testing.assert_allclose(u, u_ref, atol=1e-4, err_msg=f"state={state}, subgoal={subgoal}")
        seen["relu"] += theta.relu_penalty(u) > 1e-3
        lim = fop.config.limits
        seen["bound"] += bool(np.any(np.isclose(u, lim.lower, atol=1e-6) | np.isclose(u, lim.upper, atol=1e-6)))
        seen["obstacle"] += bool(np.min(_next_clearances(fop, state, u, obstacles)) < 1e-5)
    # the comparison covered each kind of active piece of Eq. 32
    assert seen["relu"] >= 3 and seen["bound"] >= 3 and seen["obstacle"] >= 1, seen


def test_reported_relu_penalty_is_the_sum_of_relus(fop):
    """The L1-soft-constraint reformulation is exact: acados' slacks equal Σ max(αᵀu − β, 0)."""
    for state, subgoal, obstacles, theta in _random_instances(fop, 20, seed=1):
        fop.set_theta(theta)
        u, info = fop.solve(state, subgoal, obstacles)
        expected = float(np.maximum(theta.alpha @ u - theta.beta, 0).sum())
        assert info.relu_penalty == pytest.approx(expected, abs=1e-6)


def test_relu_penalising_low_speed_raises_speed(fop):
    state, subgoal = np.array([0.0, 0.0, 0.0]), np.array([0.03, 0.0])  # subgoal 3 cm ahead: slow
    fop.set_theta(Theta.zero(0))
    u0, _ = fop.solve(state, subgoal)
    # 5·max(0.8 − v, 0): a penalty on speeds below 0.8 m/s
    fop.set_theta(Theta(alpha=[[-5.0, 0.0]], beta=[-4.0]))
    u1, info = fop.solve(state, subgoal)
    assert info.ok
    assert u0[0] < 0.4
    assert u1[0] > u0[0] + 0.3


def test_next_position_never_violates_obstacles(fop):
    rng = np.random.default_rng(7)
    worst = np.inf
    for state, subgoal, obstacles, theta in _random_instances(fop, 60, seed=2):
        # aim the subgoal through an obstacle so the constraint is pushed on
        subgoal = obstacles[rng.integers(3), :2]
        fop.set_theta(theta)
        u, info = fop.solve(state, subgoal, obstacles)
        assert info.ok
        worst = min(worst, float(np.min(_next_clearances(fop, state, u, obstacles))))
    assert worst >= -1e-6


def test_runtime_changes_never_rebuild(fop, tmp_path):
    builds = acados_env.BUILD_COUNT
    fop_builds = Fop.build_count
    rng = np.random.default_rng(3)
    for _ in range(5):
        fop.set_theta(Theta(alpha=rng.normal(size=(3, 2)), beta=rng.normal(size=3), l=0.05))
        fop.set_weights(c_p=rng.uniform(50, 200), c_h=rng.uniform(0, 100), c_u=rng.uniform(0.1, 10))
        fop.set_limits(UnicycleLimits(0.0, rng.uniform(0.5, 1.5), -1.0, 1.0))
        u, info = fop.solve([0, 0, 0], [1, 1], rng.uniform(2, 3, (2, 3)))
        assert info.ok
    Fop(FopConfig(K=4, M=4))  # same structure: loads from the cache
    assert acados_env.BUILD_COUNT == builds and Fop.build_count == fop_builds
    defaults = FopConfig()
    fop.set_weights(c_p=defaults.c_p, c_h=defaults.c_h, c_u=defaults.c_u)
    fop.set_limits(UnicycleLimits())


@pytest.mark.slow
def test_cache_is_safe_when_two_processes_build_at_once(tmp_path):
    script = textwrap.dedent("""
        import sys
        from hiopt_ros.control import acados_env
        from hiopt_ros.control.fop import Fop, FopConfig
        f = Fop(FopConfig(K=1, M=1))
        u, info = f.solve([0, 0, 0], [1, 0])
        assert info.ok, info.message
        print("BUILDS", acados_env.BUILD_COUNT)
    """)
    env = {**os.environ, "HIOPT_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    builds = [int(o[0].split("BUILDS")[1].split()[0]) for o in outs]
    # the FOP is two builds (SPEED and its BALANCE fallback): each generated by exactly one process,
    # reused by the other
    assert sum(builds) == 2, builds


def test_bad_inputs_raise_clear_errors(fop):
    with pytest.raises(ValueError, match="state"):
        fop.solve([0, np.nan, 0], [1, 0])
    with pytest.raises(ValueError, match="subgoal_xy"):
        fop.solve([0, 0, 0], [1, 0, 0])
    with pytest.raises(ValueError, match="obstacles_xyr"):
        fop.solve([0, 0, 0], [1, 0], [[1, 2]])
    with pytest.raises(ValueError, match="K=4"):
        fop.set_theta(Theta(alpha=np.ones((5, 2)), beta=np.ones(5)))
    with pytest.raises(ValueError, match="c_p"):
        fop.set_weights(c_p=float("inf"))
    with pytest.raises(ValueError, match="Ts_s"):
        FopConfig(Ts_s=0.0)
    with pytest.raises(ValueError, match="v_min_mps"):
        UnicycleLimits(v_min_mps=2.0, v_max_mps=1.0)


def test_failing_solve_yields_stop():
    fop = Fop(FopConfig(K=4, M=4))
    fop._p[3] = np.nan  # poison a weight inside the solver: acados reports NaN
    u, info = fop.solve([0, 0, 0], [1, 0])
    assert not info.ok and info.status != 0
    assert "stopping" in info.message
    np.testing.assert_array_equal(u, [0.0, 0.0])
    fop.set_weights(c_p=FopConfig().c_p)  # restoring the parameters restores the solver
    u, info = fop.solve([0, 0, 0], [1, 0])
    assert info.ok and u[0] > 0


@pytest.mark.slow
def test_iteration_limit_is_a_failure_not_an_action():
    fop = Fop(FopConfig(K=0, M=1, max_iter=1))
    u, info = fop.solve([0, 0, 0], [2, 1.0], [[0.85, 0.0, 0.4]])
    assert not info.ok and "maximum number of iterations" in info.message
    np.testing.assert_array_equal(u, [0.0, 0.0])


def test_inside_margin_robot_can_still_leave():
    """After a tracking error inside a margin the FOP stays feasible and never gets closer."""
    fop = Fop(FopConfig(K=0, M=1))
    obstacle = np.array([[0.5, 0.0, 0.1]])  # margin 0.5; the robot is at 0.5 - 0.05
    state = np.array([0.05, 0.0, math.pi])  # facing away
    u, info = fop.solve(state, [-1.0, 0.0], obstacle)
    assert info.ok and u[0] > 0.5
    state = np.array([0.05, 0.0, 0.0])  # facing the obstacle: must not advance
    u, info = fop.solve(state, [1.5, 0.0], obstacle)
    assert info.ok and _next_clearances(fop, state, u, obstacle)[0] >= -0.05 - 1e-6


@pytest.mark.slow
def test_mpc_reaches_goal_without_collision_in_pure_python_loop():
    course = load_course()
    res = run_episode(course, "mpc", dt_s=0.05, max_time_s=20.0)
    assert res.reached and not res.collided, res.summary()
    assert res.min_clearance_m > 0.0
    assert res.travel_time_s < 8.0


def test_bilevel_unchanged_fop_reaches_goal_in_pure_python_loop():
    course = load_course()
    res = run_episode(course, "fop", dt_s=0.02, max_time_s=30.0)
    assert res.reached and not res.collided, res.summary()
    assert res.min_clearance_m >= -1e-6
    assert res.failures == 0


def test_mpc_plan_and_implied_subgoal():
    mpc = Mpc(MpcConfig(N=20, subgoal_steps=5))
    course = Course(start_xyyaw=[0, 0, 0], goal_xy=[3, 0], obstacles_xyr=[])
    u, info = mpc.solve(course.start_xyyaw, course.goal_xy)
    assert info.ok and info.trajectory.shape == (21, 3)
    np.testing.assert_allclose(info.subgoal, info.trajectory[5, :2])
    # the plan obeys the model: re-simulating its inputs gives its states
    x = info.trajectory[0]
    for i in range(20):
        x = unicycle_step(x, info.inputs[i], mpc.config.Ts_s)
        np.testing.assert_allclose(x, info.trajectory[i + 1], atol=1e-6)
    assert u[0] > 0.5  # heads for the goal
    with pytest.raises(ValueError, match="goal_xy"):
        mpc.solve([0, 0, 0], [np.inf, 0])


@pytest.mark.slow
def test_scip_still_works_after_acados_is_loaded(tmp_path):
    """acados' libraries must not leak blasfeo's BLAS/LAPACK symbols into SCIP (it segfaulted)."""
    script = textwrap.dedent("""
        import numpy as np
        from hiopt_ros.control.fop import Fop
        u, info = Fop().solve([0, 0, 0], [1, 0])
        assert info.ok
        from offline.inverse import InverseSample, fit_inverse
        rng = np.random.default_rng(0)
        samples = [InverseSample(c=rng.normal(size=2), Q=np.diag(rng.uniform(0.01, 0.1, 2)),
                                 u=np.clip(rng.normal(size=2), -1, 1),
                                 H=np.vstack([np.eye(2), -np.eye(2)]), b=np.ones(4)) for _ in range(10)]
        fit = fit_inverse(samples, K=2, method="global", time_limit_s=5, progress=False)
        print("SCIP", fit.status)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SCIP" in proc.stdout


# ---------------------------------------------------------------- which local optimum (issue 8 item 1)
FIXTURE = REPO / "test" / "data" / "fop_near_obstacle_cases.json"


def _theta0_global_cost(fop: Fop, state, subgoal, obstacles, n_grid: int = 20001) -> float:
    """Independent oracle of Eq. 32's global minimum for θ = 0, l = 0.

    Without ReLU terms the cost separates: c_p‖p_{t+1}(v) − p̂‖² + c_u v²  +  c_h (yaw_{t+1}(ω) − yaw_ref)² + c_u ω²,
    and (32g) constrains v only. The ω part is minimised in closed form (clipped); the v part on a
    dense grid of feasible speeds (resolution 5e-5 m/s).
    """
    cfg, ts, lim = fop.config, fop.config.Ts_s, fop.config.limits
    state, subgoal = np.asarray(state, float), np.asarray(subgoal, float)
    yaw_ref = fop.yaw_reference(state, subgoal)
    a, b = cfg.c_h * ts * ts + cfg.c_u, cfg.c_h * ts * (state[2] - yaw_ref)
    w = float(np.clip(-b / a, lim.omega_min_radps, lim.omega_max_radps))
    cost_w = cfg.c_h * (state[2] + ts * w - yaw_ref) ** 2 + cfg.c_u * w * w
    v = np.linspace(lim.v_min_mps, lim.v_max_mps, n_grid)
    p1 = state[:2] + ts * v[:, None] * np.array([math.cos(state[2]), math.sin(state[2])])
    feasible = np.ones(n_grid, bool)
    for ox, oy, r_eff in fop.effective_obstacles(state, obstacles):
        feasible &= np.hypot(p1[:, 0] - ox, p1[:, 1] - oy) >= r_eff
    cost_v = cfg.c_p * np.sum((p1 - subgoal) ** 2, axis=1) + cfg.c_u * v * v
    return float(cost_v[feasible].min() + cost_w)


@pytest.fixture(scope="module")
def fop_pair():
    """The controller's FOP (θ = 0) with one SQP start per feasible speed slab, and with the stop command only."""
    from hiopt_ros.control.params import fop_config_from_params

    cfg = fop_config_from_params()
    return Fop(replace(cfg, multi_start=True)), Fop(replace(cfg, multi_start=False))


def test_multi_start_finds_the_lower_cost_pass_on_recorded_near_obstacle_cases(fop_pair):
    """Cases recorded from MPC demonstrations (offline.fop_starts) where SQP from u = 0 stops short
    of an obstacle margin: the multi-start FOP returns the feasible action of lower (global) cost."""
    import json

    multi, one = fop_pair
    cases = json.loads(FIXTURE.read_text())["cases"]
    assert len(cases) >= 10
    for case in cases:
        state, subgoal, obstacles = (np.array(case[k]) for k in ("state", "subgoal_xy", "obstacles_xyr"))
        u1, info1 = one.solve(state, subgoal, obstacles)
        u2, info2 = multi.solve(state, subgoal, obstacles)
        assert info1.ok and info2.ok, (info1.message, info2.message)
        assert info2.starts >= 2 and info2.start >= 1, "the winning start is not the stop command"
        c1, c2 = one.objective(state, subgoal, u1), multi.objective(state, subgoal, u2)
        assert info2.cost == pytest.approx(c2, rel=1e-9, abs=1e-9)
        assert c2 < c1 - 1e-3, case
        assert c2 <= _theta0_global_cost(multi, state, subgoal, obstacles) + 1e-4
        assert np.min(_effective_clearances(multi, state, u2, obstacles)) >= -1e-6
        assert u2[0] > u1[0]  # it passes instead of stopping at the margin


def _near_obstacle_instance(rng: np.random.Generator, theta_scale: float):
    """A state heading past 1–4 obstacles whose margins cross the reachable segment [p_t, p_t + Ts v_max h]."""
    state = np.array([0.0, 0.0, rng.uniform(-math.pi, math.pi)])
    h = np.array([math.cos(state[2]), math.sin(state[2])])
    n = np.array([-h[1], h[0]])
    obstacles = []
    for _ in range(int(rng.integers(1, 5))):
        r = rng.uniform(0.05, 0.4)
        margin = r + 0.4  # robot radius 0.3 + d_safe 0.1
        along, off = rng.uniform(0.0, 0.12), rng.uniform(0.97, 1.03) * margin
        centre = along * h + rng.choice([-1, 1]) * off * n
        obstacles.append([*centre, r])
    subgoal = state[:2] + rng.uniform(0.2, 1.2) * np.array([math.cos(state[2] + rng.normal(0, 0.6)),
                                                            math.sin(state[2] + rng.normal(0, 0.6))])
    theta = Theta(alpha=theta_scale * rng.normal(size=(4, 2)), beta=theta_scale * rng.normal(size=4),
                  l=float(rng.uniform(0, 0.5)) if theta_scale else 0.0)
    return state, subgoal, np.array(obstacles), theta


def test_multi_start_never_costs_more_than_the_single_start(fop_pair):
    """Property: on near-obstacle instances with random θ (ReLU terms and l), the multi-start FOP
    is feasible whenever the single start is, and its Eq. 32a cost is never higher."""
    multi, one = fop_pair
    rng = np.random.default_rng(11)
    lower = several = 0
    try:
        for i in range(300):
            state, subgoal, obstacles, theta = _near_obstacle_instance(rng, theta_scale=0.0 if i % 3 == 0 else 2.0)
            multi.set_theta(theta)
            one.set_theta(theta)
            u1, info1 = one.solve(state, subgoal, obstacles)
            u2, info2 = multi.solve(state, subgoal, obstacles)
            several += info2.starts > 1
            if not info1.ok:
                continue
            assert info2.ok, info2.message
            c1, c2 = one.objective(state, subgoal, u1), multi.objective(state, subgoal, u2)
            assert c2 <= c1 + 1e-7 * (1 + abs(c1)), (state, subgoal, obstacles, theta)
            lower += c2 < c1 - 1e-6
            assert np.min(_effective_clearances(multi, state, u2, obstacles)) >= -1e-6
            if theta.K == 0 or not np.any(theta.alpha):
                assert c2 <= _theta0_global_cost(multi, state, subgoal, obstacles) + 1e-4
    finally:
        multi.set_theta(Theta.zero(0))
        one.set_theta(Theta.zero(0))
    # the instances do exercise the non-convexity: several slabs, and strictly better answers
    assert several >= 50 and lower >= 20, (several, lower)


def test_a_state_the_speed_build_cannot_solve_is_solved_by_the_balance_build():
    """Recorded on held-out Table 2 course 1,000,0xx (geometric planner, θ = 0): HPIPM's SPEED mode
    cycles to the SQP iteration cap here while BALANCE converges. solve returns a feasible action,
    says it came from the BALANCE build and equals solve_reference; when both builds fail it stops."""
    from hiopt_ros.control.params import fop_config_from_params

    fop, plain = Fop(fop_config_from_params()), Fop(fop_config_from_params())   # the same history
    state = [-0.4246389454716507, 0.19350657367331783, 2.156023388006853]
    subgoal = [-0.6378990220661722, 0.7543275252531414]
    obstacles = [[-1.0514498105590728, -0.0774556984324459, 0.2732819324894182],
                 [-1.1068318189102586, -0.31696096402985097, 0.3380259938527428]]
    u, info = _same_solve(fop, plain, state, subgoal, obstacles)
    assert info.ok and info.fallback and info.message.endswith("(solved by the BALANCE build)"), info
    assert "maximum number of iterations reached" in info.message
    assert np.min(_effective_clearances(fop, state, u, obstacles)) >= -1e-6 and u[0] > 0.5

    # an ordinary state: no fallback; with every SPEED solve failing, the BALANCE build's answer
    # is the same action to the solver tolerance; with both failing, the stop command
    u0, info0 = fop.solve([0.0, 0.0, 0.0], [1.0, 0.3], obstacles)
    assert info0.ok and not info0.fallback and info0.message == "ok"
    speed_calls, balance_calls = fop._calls, fop._fallback_calls
    try:
        fop._calls = replace(speed_calls, solve=lambda: 4)             # "QP solver failed"
        u1, info1 = fop.solve([0.0, 0.0, 0.0], [1.0, 0.3], obstacles)
        assert info1.ok and info1.fallback and "QP solver failed" in info1.message
        np.testing.assert_allclose(u1, u0, atol=1e-5)
        fop._fallback_calls = replace(balance_calls, solve=lambda: 4)
        u2, info2 = fop.solve([0.0, 0.0, 0.0], [1.0, 0.3], obstacles)
        assert not info2.ok and np.array_equal(u2, [0.0, 0.0]) and "QP solver failed" in info2.message
    finally:
        fop._calls, fop._fallback_calls = speed_calls, balance_calls
    assert fop.solve([0.0, 0.0, 0.0], [1.0, 0.3], obstacles)[0].tolist() == u0.tolist()


# ---------------------------------------------------------------- the expert is not trapped (issue 8 item 5)
def test_goal_only_expert_is_trapped_by_overlapping_margins_and_guidance_frees_it():
    """Two obstacles whose margins overlap across the straight line: the goal-distance cost has a
    minimum in the pocket in front of them (the cause of the stuck demonstrations). With the
    geodesic guidance the expert goes around and reaches the goal without collision."""
    course = Course(start_xyyaw=[0, 0, 0], goal_xy=[4, 0], obstacles_xyr=[[2.0, 0.35, 0.3], [2.0, -0.35, 0.3]])
    trapped = run_episode(course, "mpc", mpc=Mpc(MpcConfig(guidance=False)), dt_s=0.05, max_time_s=15.0)
    assert not trapped.reached and not trapped.collided  # the scenario does exercise the trap
    assert np.linalg.norm(trapped.trajectory[-1, :2] - course.goal_xy) > 2.0
    res = run_episode(course, "mpc", mpc=Mpc(MpcConfig(guidance=True)), dt_s=0.05, max_time_s=15.0)
    assert res.reached and not res.collided, res.summary()
    assert res.min_clearance_m > 0.05 and res.failures == 0


@pytest.mark.slow
def test_expert_reaches_the_goal_on_demo_courses_that_trapped_it():
    """Courses 0–11 of offline.demos' generator with seed 0; 6, 9 and 11 trapped the goal-only expert."""
    from hiopt_ros.control.params import mpc_config_from_params
    from sim.courses import random_course

    cfg = mpc_config_from_params()
    mpc = Mpc(cfg)
    rng = np.random.default_rng(0)
    base = load_course()
    for i in range(12):
        course = random_course(rng, base, max_obstacles=min(3, cfg.M))
        res = run_episode(course, "mpc", mpc=mpc, dt_s=0.05, max_time_s=25.0)
        assert res.reached and not res.collided, f"course {i}: {res.summary()}"


def test_guidance_targets():
    from hiopt_ros.control.guidance import GeodesicGuide, segment_clear

    guide = GeodesicGuide()
    margins = np.array([[2.0, 0.35, 0.7], [2.0, -0.35, 0.7]])  # r + robot radius + d_safe
    # line of sight to the goal: the goal itself
    target, blocked = guide.target([0.0, 2.0], [4.0, 2.0], margins)
    assert not blocked and np.allclose(target, [4.0, 2.0])
    # blocked: a point in sight, around the wall, nearer to the goal along the path than the robot
    pos = np.array([1.2, 0.0])
    target, blocked = guide.target(pos, [4.0, 0.0], margins)
    assert blocked and segment_clear(pos, target, margins)
    assert abs(target[1]) > 0.9  # it leads past the end of the wall (the margins span |y| ≤ 1.05)
    field = guide._field
    guide.target(pos + [0.02, 0.0], [4.0, 0.0], margins)
    assert guide._field is field  # the field is cached per (goal, obstacles)
    # boxed in by a ring of margins: no path on the grid; the goal is returned, nothing raises
    ring = np.array([[2 * math.cos(a), 2 * math.sin(a), 0.9] for a in np.linspace(0, 2 * math.pi, 12, endpoint=False)])
    target, blocked = guide.target([0.0, 0.0], [5.0, 0.0], ring)
    assert blocked and np.allclose(target, [5.0, 0.0])


@pytest.mark.slow
def test_ipopt_mpc_reference_agrees_with_acados_cold_and_warm():
    """The IPOPT MPC (the benchmark's baseline) solves the same problem as the acados expert: same
    actions along a closed-loop trajectory, cold and warm-started from its shifted previous solution."""
    from hiopt_ros.control.reference import IpoptMpc

    mpc = Mpc(MpcConfig(N=20, max_iter=100))  # converged plans, so the comparison is of optima
    ref = IpoptMpc(mpc)
    x, goal, obstacles = np.array([0.0, 0.0, 0.0]), np.array([3.0, 0.5]), np.array([[1.5, 0.1, 0.2]])
    ref.reset()
    for _ in range(8):
        u, info = mpc.solve(x, goal, obstacles)
        assert info.ok
        u_cold, _ = ref.solve(x, goal, obstacles)
        u_warm, _ = ref.solve_warm(x, goal, obstacles)
        np.testing.assert_allclose(u_cold, u, atol=1e-3)
        np.testing.assert_allclose(u_warm, u, atol=1e-3)
        x = unicycle_step(x, u, 0.02)


def test_ipopt_fop_warm_start_agrees(fop, ipopt):
    """The warm-started IPOPT FOP (previous primal-dual solution) returns the same actions as cold."""
    fop.set_theta(Theta(alpha=[[0.5, -0.3]], beta=[0.2], l=0.01))
    try:
        ipopt.reset()
        x, obstacles = np.array([0.0, 0.0, 0.3]), np.array([[1.0, 0.5, 0.2], [1.2, -0.4, 0.3]])
        for _ in range(10):
            u, info = fop.solve(x, [2.0, 0.0], obstacles)
            u_cold, _ = ipopt.solve(x, [2.0, 0.0], obstacles)
            u_warm, _ = ipopt.solve_warm(x, [2.0, 0.0], obstacles)
            assert info.ok
            np.testing.assert_allclose(u_cold, u, atol=1e-4)
            np.testing.assert_allclose(u_warm, u, atol=1e-4)
            x = unicycle_step(x, u, 0.02)
    finally:
        fop.set_theta(Theta.zero(0))


# ---------------------------------------------------------------- the fast solve path (issue 7: decision time)
def _same_solve(fast: Fop, plain: Fop, state, subgoal, obstacles) -> tuple[np.ndarray, object]:
    """Fop.solve on `fast` and Fop.solve_reference on `plain` (two solvers with the same history):
    the same action bit for bit and the same SolveInfo except the measured time."""
    u_ref, info_ref = plain.solve_reference(state, subgoal, obstacles)
    u, info = fast.solve(state, subgoal, obstacles)
    np.testing.assert_array_equal(u, u_ref, err_msg=f"state={state!r}, subgoal={subgoal!r}, obstacles={obstacles!r}")
    assert replace(info, solve_time_us=0.0) == replace(info_ref, solve_time_us=0.0), (state, subgoal, obstacles)
    return u, info


def test_fast_solve_returns_exactly_what_the_reference_path_returns():
    """`Fop.solve` (floats, pre-bound C calls) against the plain `Fop.solve_reference` on ~500 inputs
    of every kind the controller meets: random θ and obstacles, near-obstacle passes with several
    starts, more obstacles than the M slots (the speed filter), a robot inside a margin, lists
    instead of arrays, the single-start rule, and failing solves — actions, status, message,
    iterations, starts, cost and ReLU penalty identical."""
    from hiopt_ros.control.params import fop_config_from_params

    seen = {"several_starts": 0, "cut": 0, "failed": 0, "inside": 0}
    for cfg in (FopConfig(K=4, M=4), fop_config_from_params()):
        fast, plain = Fop(cfg), Fop(cfg)
        rng = np.random.default_rng(5)
        cases = [(s, g, o, th) for s, g, o, th in _random_instances(fast, 120, seed=4)]
        cases += [_near_obstacle_instance(rng, theta_scale=0.0 if i % 3 == 0 else 2.0) for i in range(120)]
        for state, subgoal, obstacles, theta in cases:
            for f in (fast, plain):
                f.set_theta(theta)
            _, info = _same_solve(fast, plain, state, subgoal, obstacles)
            seen["several_starts"] += info.starts > 1
        for i in range(30):  # more obstacles than slots: M nearer ones behind, one ahead for the speed filter
            yaw = rng.uniform(-math.pi, math.pi)
            margin = _margin(fast)
            behind = [[(margin + 0.15 + rng.uniform(0.02, 0.05)) * math.cos(a), (margin + 0.15) * math.sin(a), 0.15]
                      for a in yaw + math.pi + rng.uniform(-1.2, 1.2, cfg.M)]
            gap = rng.uniform(0.06, 0.09)  # inside one step at v_max (Ts·v_max = 0.1 m)
            ahead = [(margin + 0.2 + gap) * math.cos(yaw), (margin + 0.2 + gap) * math.sin(yaw), 0.2]
            obstacles = np.array(behind + [ahead])
            _, info = _same_solve(fast, plain, [0.0, 0.0, yaw], [3 * math.cos(yaw), 3 * math.sin(yaw)], obstacles)
            seen["cut"] += "speed cut" in info.message
        for i in range(20):  # already inside a margin (tracking error): "no closer than now"
            ob = [0.5 + rng.uniform(-0.05, 0.05), rng.uniform(-0.1, 0.1), 0.1]
            _, info = _same_solve(fast, plain, [0.05, 0.0, rng.uniform(-math.pi, math.pi)], [1.5, 0.0], [ob])
            seen["inside"] += info.ok
        _same_solve(fast, plain, [0, 0, 0.1], [1, 0.5], [[1.0, 0.2, 0.1]])      # plain lists
        _same_solve(fast, plain, (0, 0, 0), np.array([1, 0]), None)             # ints, no obstacles
        for f in (fast, plain):
            f.config.multi_start = False
        for state, subgoal, obstacles, _ in cases[120:150]:
            _same_solve(fast, plain, state, subgoal, obstacles)
        for f in (fast, plain):
            f.config.multi_start = True
            f._p[3] = np.nan  # poisoned weight: acados fails, both return the stop with the same status
        u, info = _same_solve(fast, plain, [0, 0, 0], [1, 0], [[0.6, 0.3, 0.1]])
        assert not info.ok and info.status != 0 and "stopping" in info.message
        np.testing.assert_array_equal(u, [0.0, 0.0])
        seen["failed"] += 1
        for f in (fast, plain):
            f.set_weights()
        _, info = _same_solve(fast, plain, [0, 0, 0], [1, 0], [[0.6, 0.3, 0.1]])  # recovered alike
        assert info.ok
        for bad in (([0, np.nan, 0], [1, 0], None), ([0, 0, 0], [1, 0, 0], None), ([0, 0, 0], [1, 0], [[1, 2]])):
            with pytest.raises(ValueError) as fast_err:
                fast.solve(*bad)
            with pytest.raises(ValueError) as plain_err:
                plain.solve_reference(*bad)
            assert str(fast_err.value) == str(plain_err.value)
    # every branch was exercised
    assert seen["several_starts"] >= 50 and seen["cut"] >= 3 and seen["inside"] >= 10 and seen["failed"] == 2, seen
