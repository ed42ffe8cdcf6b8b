"""The robot's RL upper level: the gymnasium env (both backends), course seeds, sim.rl, sim.train and
sim.evaluate with tiny budgets, and the exported policy in planner_node."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from hiopt_ros.course import Course, load_course  # noqa: E402
from hiopt_ros.planning import observation  # noqa: E402
from hiopt_ros.planning import torch_policy as tp  # noqa: E402
from sim.courses import DEFAULT_COURSE_SEED, EVAL_SEEDS, TRAIN_SEEDS, course_for_seed  # noqa: E402
from sim.nav_env import NavEnv, NavEnvConfig, RewardConfig, make_lower_level, measure_wheel_drive  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _env_vars() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def fop():
    return make_lower_level("fop")


# ---------------------------------------------------------------------------- courses
def test_course_seeds_are_disjoint_deterministic_and_seed0_is_the_default_course():
    assert set(TRAIN_SEEDS).isdisjoint(EVAL_SEEDS) and DEFAULT_COURSE_SEED not in TRAIN_SEEDS
    assert DEFAULT_COURSE_SEED not in EVAL_SEEDS
    default = load_course()
    c0 = course_for_seed(DEFAULT_COURSE_SEED)
    np.testing.assert_array_equal(c0.obstacles_xyr, default.obstacles_xyr)
    np.testing.assert_array_equal(c0.goal_xy, default.goal_xy)
    a, b = course_for_seed(1_000_003), course_for_seed(1_000_003)
    np.testing.assert_array_equal(a.obstacles_xyr, b.obstacles_xyr)
    counts = set()
    for s in range(1, 60):
        c = course_for_seed(s)
        counts.add(len(c.obstacles_xyr))
        assert c.clearance(c.start_xyyaw[:2]) > 0 and c.clearance(c.goal_xy) > 0
        assert 0.8 * 4.0 - 1e-9 <= np.linalg.norm(c.goal_xy - c.start_xyyaw[:2]) <= 1.2 * 4.0 + 1e-9
    assert counts <= {1, 2, 3, 4} and len(counts) >= 3
    with pytest.raises(ValueError, match="course seed"):
        course_for_seed(-1)


# ---------------------------------------------------------------------------- env
@pytest.mark.parametrize("backend", ["kinematic", "pybullet"])
def test_check_env_passes_for_both_backends_and_every_action_kind(backend, fop):
    for lower, action in ((fop, "offset"), (fop, "residual"), (None, "offset")):
        env = NavEnv(lower, backend=backend, config=NavEnvConfig.from_params(subgoal_action=action))
        check_env(env, skip_render_check=True)
        env.close()


def test_observation_is_the_torch_policy_layout(fop):
    env = NavEnv(fop)
    obs, info = env.reset(options={"course_seed": DEFAULT_COURSE_SEED})
    c = env.course
    np.testing.assert_array_equal(obs,
                                  observation.observation(c.start_xyyaw, c.goal_xy, c.obstacles_xyr, c.robot_radius_m))
    assert env.observation_space.shape == (observation.observation_size(observation.DEFAULT_N_OBSTACLES),)
    assert info["course_seed"] == DEFAULT_COURSE_SEED


def test_one_step_is_one_planner_period_of_lower_level_solves(fop):
    env = NavEnv(fop)
    cfg = env.config
    assert env.n_control == round(cfg.control_rate_hz / cfg.planner_rate_hz) == 5
    env.reset(options={"course_seed": 5})
    start = env.pose()
    # a = 0: subgoal d/2 straight ahead, inside the planner's clip
    _, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
    assert len(env.last_solve_times_us) == 5 and info["time_s"] == pytest.approx(0.1)
    expected = observation.action_to_subgoal(start, [cfg.max_subgoal_m / 2, 0.0], cfg.max_subgoal_m)
    np.testing.assert_allclose(info["subgoal"], expected)
    moved = env.pose()[:2] - start[:2]
    heading = np.array([math.cos(start[2]), math.sin(start[2])])
    assert moved @ heading > 0.02                      # it drove forward
    d0, d1 = env.distance_to_goal(start), env.distance_to_goal(env.pose())
    assert reward == pytest.approx(cfg.reward.progress_per_m * (d0 - d1) - cfg.reward.time_per_step)
    assert not (terminated or truncated)


def test_residual_action_corrects_the_geometric_waypoint(fop):
    """subgoal_action="residual": a = 0 is the look-ahead waypoint itself; a ≠ 0 moves it by
    a · residual_max_m in the body frame; the offset from the robot stays clipped."""
    from hiopt_ros.planning.geometric import LookaheadPolicy

    cfg = NavEnvConfig.from_params(subgoal_action="residual")
    env = NavEnv(fop, config=cfg)
    assert env.action_kind == observation.ACTION_RESIDUAL
    scale, offset = env.action_scale
    np.testing.assert_allclose(scale, [cfg.residual_max_m] * 2) and np.testing.assert_allclose(offset, 0.0)
    env.reset(options={"course_seed": 7})
    c, start = env.course, env.pose()
    prior = LookaheadPolicy(lookahead_m=cfg.prior_lookahead_m).subgoal(start, c.goal_xy, c.obstacles_xyr,
                                                                       c.robot_radius_m)
    np.testing.assert_allclose(env.prior_subgoal(), prior)
    _, _, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(info["subgoal"], prior)
    pose = env.pose()
    prior = env.prior_subgoal()
    _, _, _, _, info = env.step(np.array([0.0, 1.0], dtype=np.float32))     # half a metre to the left
    left = np.array([-math.sin(pose[2]), math.cos(pose[2])])
    np.testing.assert_allclose(info["subgoal"], prior + cfg.residual_max_m * left, atol=1e-12)
    far = observation.residual_to_subgoal([0.0, 0.0, 0.0], [1.4, 0.0], [0.5, 0.0], 1.5)      # clipped to 1.5 m
    np.testing.assert_allclose(far, [1.5, 0.0])
    with pytest.raises(ValueError, match="subgoal_action"):
        NavEnvConfig.from_params(subgoal_action="waypoint")


def test_residual_torch_policy_adds_its_output_to_the_prior_it_was_trained_with(tmp_path):
    """A residual module carries its prior's look-ahead; TorchPolicy rebuilds that prior (whatever
    planner_node's lookahead_m says) and adds the module's body-frame output to it."""
    from hiopt_ros.planning.geometric import LookaheadPolicy

    class Const(torch.nn.Module):

        def __init__(self, out):
            super().__init__()
            self.out = torch.tensor([out], dtype=torch.float32)
            self.action_kind, self.prior_lookahead_m, self.prior_clearance_m = observation.ACTION_RESIDUAL, 0.8, 0.15

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.out.expand(obs.shape[0], 2)

    course = load_course()
    for out in ([0.0, 0.0], [0.1, -0.3]):
        path = tmp_path / f"res{out[1]}.pt"
        torch.jit.save(torch.jit.script(Const(out)), str(path))
        pol = tp.TorchPolicy.load(path, max_distance_m=1.5)
        assert pol.action_kind == observation.ACTION_RESIDUAL
        assert (pol.prior.lookahead_m, pol.prior.clearance_m) == (0.8, 0.15)
        for state in ([0.0, 0.0, 0.0], [1.2, 0.4, -0.7], [3.5, -0.2, 2.0]):
            prior = LookaheadPolicy(lookahead_m=0.8, clearance_m=0.15).subgoal(
                state, course.goal_xy, course.obstacles_xyr, course.robot_radius_m)
            got = pol.subgoal(state, course.goal_xy, course.obstacles_xyr, course.robot_radius_m)
            c, s = math.cos(state[2]), math.sin(state[2])
            want = prior + np.array([c * out[0] - s * out[1], s * out[0] + c * out[1]])
            np.testing.assert_allclose(got, want, atol=1e-6)

    # the progress check: a robot that does not move for `window` periods gets the prior alone for
    # `recovery` periods, then the residual again; a moving robot never triggers it
    pol = tp.TorchPolicy.load(tmp_path / "res-0.3.pt", progress_check=tp.ProgressCheck(window=3, recovery=2))
    state = [1.2, 0.4, -0.7]
    prior = pol.prior.subgoal(state, course.goal_xy, course.obstacles_xyr, course.robot_radius_m)
    corrected = observation.residual_to_subgoal(state, prior, [0.1, -0.3], 1.5)
    got = [pol.subgoal(state, course.goal_xy, course.obstacles_xyr, course.robot_radius_m) for _ in range(10)]
    uses_prior = [bool(np.allclose(g, prior)) for g in got]
    # the window counts again from the first recovery period: a robot still stuck is handed over again
    assert uses_prior == [False, False, False, True, True, False, False, True, True, False]
    assert all(np.allclose(g, corrected) for g, p in zip(got, uses_prior) if not p) and pol.recoveries == 2
    pol.reset()
    for k in range(10):                                      # 0.1 m per period: progress
        g = pol.subgoal([0.1 * k, 0.0, 0.0], course.goal_xy, course.obstacles_xyr, course.robot_radius_m)
        prior_k = pol.prior.subgoal([0.1 * k, 0.0, 0.0], course.goal_xy, course.obstacles_xyr, course.robot_radius_m)
        assert not np.allclose(g, prior_k)
    assert pol.recoveries == 2
    assert tp.TorchPolicy.load(tmp_path / "res-0.3.pt", progress_check=None).progress_check is None
    with pytest.raises(ValueError, match="window"):
        tp.ProgressCheck(window=0)

    class NoPrior(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.action_kind = observation.ACTION_RESIDUAL

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return obs[:, :2]

    torch.jit.save(torch.jit.script(NoPrior()), str(tmp_path / "noprior.pt"))
    with pytest.raises(ValueError, match="prior_lookahead_m"):
        tp.TorchPolicy.load(tmp_path / "noprior.pt")


def test_policy_subgoal_checks_once_and_computes_what_the_checked_functions_compute():
    """TorchPolicy.subgoal checks its inputs once and works on plain floats (the planner's hot path);
    its subgoal is, to the bit, observation -> module -> prior waypoint -> residual_to_subgoal with
    every input checked, for new, reused and missing obstacle arrays; bad inputs stay clear errors."""
    pol = tp.TorchPolicy.load(REPO / "config/policy/bilevel_learned.pt", max_distance_m=1.5, progress_check=None)
    rng = np.random.default_rng(7)
    reused = np.array([[1.0, 0.2, 0.3], [2.5, -0.4, 0.5]])
    for i in range(300):
        state, goal = rng.uniform([-1, -2, -4], [5, 2, 4]), rng.uniform([-1, -2], [5, 2])
        obstacles = (reused if i % 3 == 0 else None if i % 7 == 0
                     else rng.uniform([0, -2, 0.1], [5, 2, 0.6], size=(int(rng.integers(0, 6)), 3)).tolist())
        got = pol.subgoal(state, goal, obstacles, 0.3)
        action = pol._forward(observation.observation(state, goal, obstacles, 0.3, pol.n_obstacles))
        want = observation.residual_to_subgoal(state, pol.prior.subgoal(state, goal, obstacles, 0.3), action, 1.5)
        assert np.array_equal(got, want), (i, got, want)
    with pytest.raises(ValueError, match="state must be finite"):
        pol.subgoal([0.0, math.nan, 0.0], [1.0, 0.0], reused)
    with pytest.raises(ValueError, match="goal_xy must have 2 entries"):
        pol.subgoal([0.0, 0.0, 0.0], [1.0, 0.0, 0.0], reused)
    with pytest.raises(ValueError, match="radii must be >= 0"):
        pol.subgoal([0.0, 0.0, 0.0], [1.0, 0.0], [[1.0, 1.0, -0.1]])


def _drive_to_goal(env, course):
    """Geometric subgoals through the env's FOP until the episode ends."""
    from hiopt_ros.planning.geometric import LookaheadPolicy

    pol = LookaheadPolicy()
    env.reset(options={"course": course, "course_seed": None})
    total = 0.0
    while True:
        sub = pol.subgoal(env.pose(), course.goal_xy, course.obstacles_xyr, course.robot_radius_m)
        _, r, terminated, truncated, info = env.step_subgoal(sub)
        total += r
        if terminated or truncated:
            return total, terminated, truncated, info


@pytest.mark.parametrize("backend", ["kinematic", "pybullet"])
def test_reaching_the_goal_terminates_with_the_goal_reward(backend, fop):
    env = NavEnv(fop, backend=backend)
    course = load_course()
    total, terminated, truncated, info = _drive_to_goal(env, course)
    assert terminated and not truncated and info["reached"] and not info["collided"]
    assert info["min_clearance_m"] > 0 and 4.0 <= info["path_length_m"] < 6.0
    d0, d_end = env.distance_to_goal(course.start_xyyaw), env.distance_to_goal(env.pose())
    steps = round(info["time_s"] / 0.1 + 0.5 - 1e-9)  # the last step may end early
    rw = env.config.reward
    assert total == pytest.approx(d0 - d_end + rw.goal - rw.time_per_step * steps, abs=1e-6)
    if backend == "pybullet":
        assert info["energy_j"] > 0
    else:
        assert "energy_j" not in info
    env.close()


@pytest.mark.parametrize("backend", ["kinematic", "pybullet"])
def test_driving_into_an_obstacle_end_to_end_is_a_collision(backend):
    env = NavEnv(None, backend=backend)
    course = Course(start_xyyaw=[0.0, 0.0, 0.0], goal_xy=[4.0, 0.0], obstacles_xyr=[[1.5, 0.0, 0.3]])
    env.reset(options={"course": course})
    rw = env.config.reward
    for _ in range(50):
        _, r, terminated, truncated, info = env.step_command([1.0, 0.0])
        if terminated or truncated:
            break
    assert terminated and info["collided"] and not info["reached"]
    assert r < -rw.collision + 0.2
    assert env.pose()[0] == pytest.approx(1.5 - 0.6, abs=0.08)  # stopped where the circles touch
    env.close()


def test_geodesic_progress_goes_around_obstacles():
    from sim.distance_field import DistanceField

    course = Course(start_xyyaw=[0.0, 0.0, 0.0], goal_xy=[4.0, 0.0], obstacles_xyr=[[2.0, 0.0, 0.5]])
    field = DistanceField(course)
    R, d = 0.5 + course.robot_radius_m, 2.0      # tangent lines + arc around the grown obstacle
    exact = 2 * math.sqrt(d * d - R * R) + R * (math.pi - 2 * math.acos(R / d))
    assert exact <= field([0.0, 0.0]) <= 1.03 * exact           # 16-connected grid: ≤ 2.7 % long
    assert field([4.0, 0.0]) == pytest.approx(0.0, abs=1e-9)
    assert field([3.0, 1.0]) == pytest.approx(math.hypot(1.0, 1.0), rel=1e-6)   # in sight of the goal
    # beside the obstacle is closer than in front of it, although the straight line says otherwise
    beside, in_front = [1.0, 0.9], [1.15, 0.0]
    assert field(beside) < field(in_front)
    assert math.dist(beside, course.goal_xy) > math.dist(in_front, course.goal_xy)


def test_time_limit_truncates(fop):
    cfg = NavEnvConfig.from_params(time_limit_factor=0.0, time_limit_extra_s=0.5)
    env = NavEnv(fop, config=cfg)
    env.reset(options={"course_seed": 3})
    ends = []
    for _ in range(10):
        _, _, terminated, truncated, info = env.step(np.array([-1.0, 0.0], dtype=np.float32))  # subgoal = robot: hold
        ends.append((terminated, truncated))
        if terminated or truncated:
            break
    assert ends[-1] == (False, True) and len(ends) == 5 and info["time_s"] == pytest.approx(0.5)


def test_kinematic_backend_tracks_the_pybullet_robot():
    """The same command sequence in both backends stays within a few centimetres all along (wheel-
    speed limits measured from sim.World); the pure unicycle, which changes speed instantly, does not."""
    course = Course(start_xyyaw=[0.0, 0.0, 0.3], goal_xy=[9.0, 0.0])
    commands = [[1.0, 0.0]] * 8 + [[0.6, 1.5]] * 6 + [[1.0, -1.0]] * 6 + [[0.0, 0.0]] * 4

    def run(backend, **cfg):
        env = NavEnv(None, backend=backend, config=NavEnvConfig.from_params(**cfg))
        env.reset(options={"course": course})
        poses = []
        for u in commands:
            env.step_command(u)
            poses.append(env.pose())
        env.close()
        return np.array(poses)

    physics, kinematic, pure = run("pybullet"), run("kinematic"), run("kinematic", wheel_dynamics=False)
    assert np.max(np.linalg.norm(kinematic[:, :2] - physics[:, :2], axis=1)) < 0.03
    assert np.max(np.abs(kinematic[:, 2] - physics[:, 2])) < 0.03
    assert np.max(np.linalg.norm(pure[:, :2] - physics[:, :2], axis=1)) > 0.06   # the ramp-up matters


@pytest.mark.parametrize("backend", ["kinematic", "pybullet"])
def test_energy_reward_subtracts_the_wheel_work_of_each_step(backend):
    """RewardConfig.energy_per_j: the same commands give the same trajectory, and the reward differs
    by exactly energy_per_j × the step's growth of the backend's energy_j; default 0 changes nothing."""
    course = Course(start_xyyaw=[0.0, 0.0, 0.0], goal_xy=[9.0, 0.0])
    commands = [[0.5, 0.0]] * 4 + [[0.8, 1.2]] * 3 + [[0.2, -1.0]] * 3
    runs = []
    for w in (0.0, 0.05):
        env = NavEnv(None, backend=backend, config=NavEnvConfig.from_params(reward=RewardConfig(energy_per_j=w)))
        env.reset(options={"course": course})
        steps = []
        for u in commands:
            before = env._backend.energy_j
            _, r, *_ = env.step_command(u)
            steps.append((r, env._backend.energy_j - before, *env.pose()))
        env.close()
        runs.append(np.array(steps))
    plain, priced = runs
    np.testing.assert_array_equal(plain[:, 1:], priced[:, 1:])          # same motion, same work
    assert plain[[0, 4, 7], 1].min() > 0.1                               # a new command moves the wheels
    np.testing.assert_allclose(priced[:, 0], plain[:, 0] - 0.05 * plain[:, 1], rtol=0, atol=1e-12)


def test_kinematic_energy_is_the_work_of_the_wheel_motors():
    """Straight from rest to v and held: each wheel's motor did ½·m·v² (m = its force over its
    acceleration), braking counts as spent, holding a speed costs nothing; ≈ PyBullet's work."""
    course = Course(start_xyyaw=[0.0, 0.0, 0.0], goal_xy=[9.0, 0.0])
    env = NavEnv(None, config=NavEnvConfig.from_params())
    env.reset(options={"course": course})
    m = measure_wheel_drive(course.robot_radius_m, env.config.physics_rate_hz).wheel_mass_kg
    assert 1.0 < m < 20.0                                                 # a 9 kg robot on two wheels
    for _ in range(3):
        env.step_command([0.5, 0.0])
    assert env._backend.energy_j == pytest.approx(m * 0.5 ** 2, rel=1e-9)   # 2 wheels × ½ m v²
    env.step_command([0.5, 0.0])
    assert env._backend.energy_j == pytest.approx(m * 0.25, rel=1e-9)
    env.step_command([0.0, 0.0])
    env.step_command([0.0, 0.0])
    assert env._backend.energy_j == pytest.approx(2 * m * 0.25, rel=1e-9)   # braking is spent too
    physics = NavEnv(None, backend="pybullet", config=NavEnvConfig.from_params())
    physics.reset(options={"course": course})
    for u in [[0.5, 0.0]] * 4 + [[0.0, 0.0]] * 2:
        physics.step_command(u)
    assert physics._backend.energy_j == pytest.approx(env._backend.energy_j, rel=0.35)
    physics.close()


def test_env_mutes_native_stdout_once_per_planner_period_not_inside_each_timed_solve(capfd):
    """acados prints on every iteration-capped solve: NavEnv turns the lower level's per-solve mute
    off (its solve times then hold what controller_node pays, muted for good) and mutes the planner
    period around the solves instead, so nothing reaches fd 1 either way."""
    from hiopt_ros.control.fop import Fop, FopConfig
    from hiopt_ros.control.mpc import Mpc

    capped = Fop(FopConfig(max_iter=1))          # every solve hits the iteration cap and prints
    assert capped.mute_solves and Mpc().mute_solves
    env = NavEnv(capped)
    assert not capped.mute_solves
    env.reset(options={"course_seed": 3})
    capfd.readouterr()
    for _ in range(3):
        env.step(np.zeros(2, dtype=np.float32))
    assert env.solver_failures > 0                  # the capped solves happened
    out = capfd.readouterr().out
    assert "maximum iterations" not in out
    capped.solve(np.zeros(3), np.array([1.0, 2.0]))  # the same solve outside the env: it prints
    assert "maximum iterations" in capfd.readouterr().out


def test_e2e_action_maps_onto_the_input_bounds():
    env = NavEnv(None)
    lim = env.config.limits
    scale, offset = env.action_scale
    np.testing.assert_allclose(offset - scale, lim.lower)
    np.testing.assert_allclose(offset + scale, lim.upper)


def test_bad_arguments_are_clear_errors(fop):
    with pytest.raises(ValueError, match="backend"):
        NavEnv(fop, backend="gazebo")
    with pytest.raises(ValueError, match="lower level"):
        make_lower_level("lqr")
    env = NavEnv(None)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, dtype=np.float32))
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="step_command"):
        env.step_subgoal([1.0, 0.0])


# ---------------------------------------------------------------------------- sim.rl
def _pendulum(rank: int = 0):
    return gym.make("Pendulum-v1")


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_rl_harness_trains_writes_outputs_and_exports_what_predict_does(algo, tmp_path):
    from sim import rl

    cfg = rl.RLConfig(algo=algo, total_steps=400, n_envs=1, vec="dummy", n_steps=200, batch_size=50,
                      learning_starts=100)
    res = rl.train(_pendulum, cfg, tmp_path, progress=False)
    assert res.env_steps >= 400 and res.episodes == 2 and res.steps_per_s > 0
    for name in ("model.zip", "learning_curve.png", "learning_curve.csv", "train.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    # export: Pendulum's box is [-2, 2]; the check inside compares with model.predict
    path = rl.export_torchscript(res.model, tmp_path / "p.pt", scale=[0.5], offset=[1.0],
                                 attributes={"n_obstacles": 3, "action_kind": "demo"})
    m = torch.jit.load(str(path))
    assert m.n_obstacles == 3 and m.action_kind == "demo"
    obs = np.array([[0.3, -0.2, 1.0]], dtype=np.float32)
    with torch.no_grad():
        got = m(torch.from_numpy(obs)).numpy()
    want = res.model.predict(obs, deterministic=True)[0] * 0.5 + 1.0
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert 0.0 <= got[0, 0] <= 2.0      # inside the scaled box
    with pytest.raises(TypeError, match="attribute"):
        rl.export_torchscript(res.model, tmp_path / "q.pt", attributes={"bad": [1, 2]})


def test_rl_config_rejects_bad_values():
    from sim import rl

    with pytest.raises(ValueError, match="algo"):
        rl.RLConfig(algo="dqn")
    with pytest.raises(ValueError, match="total_steps"):
        rl.RLConfig(total_steps=0)


# ---------------------------------------------------------------------------- sim.train + planner_node
@pytest.fixture(scope="module")
def tiny_policies(tmp_path_factory):
    """Tiny training runs (a few hundred steps) of the three methods; returns {method: run folder}."""
    root = tmp_path_factory.mktemp("train")
    runs = {}
    for method, extra in (("bilevel-learned", ["--n-envs", "2", "--energy-weight", "0.01"]),   # SubprocVecEnv
                          ("bilevel-unchanged", ["--n-envs", "1", "--vec", "dummy", "--action", "offset"]),
                          ("e2e", ["--n-envs", "1", "--vec", "dummy"])):
        out = root / method
        proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", method, "--steps", "256",
                               "--seed", "3", "--out", str(out), *extra], cwd=REPO, env=_env_vars(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "course seeds: training 1..999999, evaluation (held out) 1000000..1999999" in proc.stdout
        assert "steps/s" in proc.stdout
        runs[method] = out
    return runs


@pytest.mark.slow
def test_train_writes_policy_provenance_curve_and_logs(tiny_policies):
    import yaml

    out = tiny_policies["bilevel-learned"]
    for name in ("policy.pt", "policy.yaml", "model.zip", "learning_curve.png", "train.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    prov = yaml.safe_load((out / "policy.yaml").read_text())
    assert prov["command"].startswith("python -m sim.train --method bilevel-learned")
    assert prov["method"] == "bilevel-learned" and prov["theta_sha256"] and prov["env_steps"] >= 256
    assert prov["train_steps_per_s"] > 0 and prov["env_steps_per_s"] > 0
    assert prov["action"] == "residual" and prov["action_scale_m"] == [0.5, 0.5]
    assert prov["reward_energy_per_j"] == 0.01
    assert yaml.safe_load((tiny_policies["e2e"] / "policy.yaml").read_text())["reward_energy_per_j"] == 0.0
    m = torch.jit.load(str(out / "policy.pt"))
    assert m.n_obstacles == observation.DEFAULT_N_OBSTACLES and m.observation_version == observation.OBSERVATION_VERSION
    assert m.action_kind == observation.ACTION_RESIDUAL and m.prior_lookahead_m == 0.6 and m.prior_clearance_m == 0.2
    offset = torch.jit.load(str(tiny_policies["bilevel-unchanged"] / "policy.pt"))   # --action offset
    assert offset.action_kind == observation.ACTION_SUBGOAL and not hasattr(offset, "prior_lookahead_m")
    assert torch.jit.load(str(tiny_policies["e2e"] / "policy.pt")).action_kind == observation.ACTION_COMMAND


@pytest.mark.slow
def test_exported_policies_are_evaluated_in_numpy_with_the_modules_numbers(tiny_policies):
    """TorchPolicy/TorchCommandPolicy run an exported PPO actor with numpy (NumpyMlp); it gives the
    module's outputs, and a module of another layout keeps the torch path."""
    rng = np.random.default_rng(5)
    for method in ("bilevel-learned", "bilevel-unchanged", "e2e"):
        module, n_obs = tp.load_module(tiny_policies[method] / "policy.pt",
                                       observation.ACTION_COMMAND if method == "e2e" else observation.SUBGOAL_KINDS)
        mlp = tp.NumpyMlp.from_module(module, observation.observation_size(n_obs))
        assert mlp is not None, method
        for _ in range(200):
            obs = rng.normal(0.0, 4.0, size=observation.observation_size(n_obs)).astype(np.float32)
            np.testing.assert_allclose(mlp(obs), tp._forward(module, obs), atol=2e-6)
    odd = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(15, 2)))
    assert tp.NumpyMlp.from_module(odd, 15) is None
    obs = np.ones(15, dtype=np.float32)
    np.testing.assert_allclose(tp.forward_function(odd, 15)(obs), tp._forward(odd, obs))


@pytest.mark.slow
@pytest.mark.ros
def test_trained_policy_runs_in_planner_node_and_publishes_odom_frame_subgoals(tiny_policies):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from hiopt_ros.nodes.planner_node import PlannerNode

    checkpoint = tiny_policies["bilevel-learned"] / "policy.pt"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        node = PlannerNode(context=ctx, parameter_overrides=[Parameter("policy_checkpoint", value=str(checkpoint))])
        assert isinstance(node.policy, tp.TorchPolicy)
        course = load_course()
        node.obstacles = course.obstacles_xyr
        sent = []
        node.subgoal_pub.publish = sent.append
        for state in ([0.0, 0.0, 0.0], [1.0, -0.6, 0.4], [3.0, 0.5, -2.0]):
            node.state = np.array(state)
            node.on_plan()
        assert len(sent) == 3
        max_d = node.cfg.policy_max_distance_m
        for msg, state in zip(sent, ([0.0, 0.0, 0.0], [1.0, -0.6, 0.4], [3.0, 0.5, -2.0])):
            assert msg.header.frame_id == "odom"
            p = np.array([msg.point.x, msg.point.y])
            assert np.all(np.isfinite(p))
            # exactly what the policy computes from this odometry (world = odom frame), within the clip
            want = node.policy.subgoal(np.array(state), node.goal, course.obstacles_xyr, course.robot_radius_m)
            np.testing.assert_allclose(p, want, atol=1e-6)
            assert np.linalg.norm(p - state[:2]) <= max_d + 1e-6
        # a robot that stays put: after the progress check's window the prior drives (counted)
        assert node.policy.progress_check is not None and node.counters["progress_recoveries"] == 0
        node.policy.reset()
        node.state = np.array([1.0, -0.6, 0.4])
        node.driven.feed("cmd_vel")   # a driver commands the robot (the check runs only then)
        for _ in range(node.policy.progress_check.window + 1):
            node.on_plan()
        assert node.counters["progress_recoveries"] == 1
        prior = node.policy.prior.subgoal(node.state, node.goal, course.obstacles_xyr, course.robot_radius_m)
        np.testing.assert_allclose([sent[-1].point.x, sent[-1].point.y], prior, atol=1e-9)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


@pytest.mark.slow
def test_export_only_rewrites_the_policy_from_the_model(tiny_policies):
    out = tiny_policies["e2e"]
    before = (out / "policy.yaml").read_text()
    (out / "policy.pt").unlink()
    proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", "e2e", "--steps", "256", "--seed", "3",
                           "--out", str(out), "--export-only"], cwd=REPO, env=_env_vars(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert torch.jit.load(str(out / "policy.pt")).action_kind == observation.ACTION_COMMAND
    import yaml
    old, new = yaml.safe_load(before), yaml.safe_load((out / "policy.yaml").read_text())
    assert new["command"] == old["command"] and new["env_steps"] == old["env_steps"]


@pytest.mark.slow
def test_continued_training_counts_on_and_names_the_earlier_stage(tiny_policies, tmp_path):
    """--init continues a model: steps count on from its N, policy.yaml names the earlier stage
    (its model, steps, and the command and θ of the run that wrote it), --init-std resets the std."""
    import yaml

    from sim import rl

    first = tiny_policies["bilevel-unchanged"]
    out = tmp_path / "continued"
    proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", "bilevel-unchanged", "--steps", "64",
                           "--seed", "4", "--n-envs", "1", "--vec", "dummy", "--action", "offset",
                           "--init", str(first / "model.zip"),
                           "--init-std", "0.1", "--out", str(out)], cwd=REPO, env=_env_vars(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prov = yaml.safe_load((out / "policy.yaml").read_text())
    earlier = yaml.safe_load((first / "policy.yaml").read_text())
    stage = prov["continued_from"]
    assert stage["model"] == str(first / "model.zip") and stage["env_steps"] == earlier["env_steps_total"]
    assert prov["env_steps_total"] == stage["env_steps"] + prov["env_steps"] and prov["env_steps"] >= 64
    assert stage["run"]["command"] == earlier["command"] and stage["run"]["method"] == "bilevel-unchanged"
    assert prov["init_std"] == 0.1 and earlier["continued_from"] is None
    # continuing a model with another action kind is refused (the same shapes would train silently)
    proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", "bilevel-unchanged", "--steps", "64",
                           "--n-envs", "1", "--vec", "dummy", "--init", str(first / "model.zip"),
                           "--out", str(tmp_path / "mixed")], cwd=REPO, env=_env_vars(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "was trained with --action offset" in proc.stderr, proc.stderr
    # the std was reset to 0.1 before one short PPO update (it moves a little, from 0.61 = exp(-0.5))
    std = rl.load_model(out / "model.zip", "ppo").policy.log_std.exp().detach().numpy()
    assert np.all(np.abs(std - 0.1) < 0.03), std


@pytest.mark.slow
def test_planner_refuses_an_end_to_end_policy(tiny_policies):
    with pytest.raises(ValueError, match="e2e_node"):
        tp.TorchPolicy.load(tiny_policies["e2e"] / "policy.pt")
    pol = tp.TorchCommandPolicy.load(tiny_policies["e2e"] / "policy.pt", [0.0, -1.5], [1.0, 1.5])
    u = pol.command([0.0, 0.0, 0.0], [4.0, 0.0], [])
    assert 0.0 <= u[0] <= 1.0 and -1.5 <= u[1] <= 1.5


def test_train_bad_input_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", "e2e", "--theta", "x.yaml"], cwd=REPO,
                          env=_env_vars(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--theta is for --method bilevel-learned only" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", "bilevel-learned", "--theta",
                           str(tmp_path / "none.yaml")], cwd=REPO, env=_env_vars(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", "e2e", "--action", "residual"], cwd=REPO,
                          env=_env_vars(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--action is for the bi-level methods" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sim.train", "--method", "e2e", "--energy-weight", "-1"], cwd=REPO,
                          env=_env_vars(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--energy-weight must be a number in [0, 1000)" in proc.stderr


# ---------------------------------------------------------------------------- sim.evaluate
@pytest.mark.slow
def test_evaluate_writes_table2_with_every_method_and_column(tiny_policies, tmp_path):
    import csv

    out = tmp_path / "table2"
    proc = subprocess.run([sys.executable, "-m", "sim.evaluate", "--courses", "2", "--out", str(out),
                           "--bilevel-learned", str(tiny_policies["bilevel-learned"] / "policy.pt"),
                           "--bilevel-unchanged", str(tiny_policies["bilevel-unchanged"] / "policy.pt"),
                           "--e2e", str(tiny_policies["e2e"] / "policy.pt")],
                          cwd=REPO, env=_env_vars(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"results folder: {out}" in proc.stdout
    assert "seeds 1000000..1000001" in proc.stdout
    rows = {"MPC (expert)", "End-to-end RL", "Bi-level-unchanged", "Bi-level-learned", "Geometric + FOP_θ",
            "Geometric + FOP (θ = 0)"}
    md = (out / "table2.md").read_text()
    for col in ("Travel time (s)", "Path length (m)", "Energy (J)", "Success (%)", "Collisions (%)",
                "Min clearance (m)", "Decision time mean (ms)", "Decision time p99 (ms)"):
        assert col in md
    with open(out / "table2.csv") as fh:
        table = {r["method"]: r for r in csv.DictReader(fh)}
    assert set(table) == rows
    for r in table.values():
        assert r["episodes"] == "2"
        assert float(r["decision_mean_ms_mean"]) > 0 and float(r["min_clearance_m_mean"]) > -1
    # the expert reaches the goal of both held-out courses, and its energy comes from the physics
    assert float(table["MPC (expert)"]["success_mean"]) == 1.0
    assert float(table["MPC (expert)"]["energy_j_mean"]) > 0
    with open(out / "table2_episodes.csv") as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 2 * len(rows)
    assert (out / "trajectories_default_course.png").stat().st_size > 10_000
    assert (out / "default_course.md").is_file() and (out / "evaluation.yaml").is_file()


@pytest.mark.slow
def test_shipped_baseline_policies_are_evaluated_by_default_and_drive_the_default_course(tmp_path):
    """Table 2 reproduces without retraining: sim.evaluate's defaults are the shipped e2e and
    bi-level-unchanged policies, each with the provenance of its training, and both reach the
    goal of the default course without a collision."""
    import yaml

    for name, method, theta in (("e2e", "e2e", None), ("bilevel_unchanged", "bilevel-unchanged", None)):
        prov = yaml.safe_load((REPO / "config" / "policy" / f"{name}.yaml").read_text())
        assert prov["command"].startswith(f"python -m sim.train --method {method}")
        assert prov["method"] == method and prov["theta_file"] == theta and prov["env_steps"] > 0
    out = tmp_path / "table2"
    proc = subprocess.run([sys.executable, "-m", "sim.evaluate", "--courses", "1", "--methods", "e2e,bilevel-unchanged",
                           "--out", str(out), "--no-progress"],
                          cwd=REPO, env=_env_vars(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from sim.train import sha256
    text = (out / "evaluation.yaml").read_text()
    for name in ("e2e", "bilevel_unchanged"):
        assert sha256(REPO / "config" / "policy" / f"{name}.pt") in text, name
    md = (out / "default_course.md").read_text()
    for label in ("End-to-end RL", "Bi-level-unchanged"):
        cells = [c.strip(" *") for c in next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
                 .split("|")[1:-1]]
        assert cells[5] == "100.0 ± 0.0" and cells[6] == "0.0 ± 0.0", cells   # success, collisions


def test_evaluate_refuses_training_seeds(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sim.evaluate", "--first-seed", "5", "--methods", "mpc"],
                          cwd=REPO, env=_env_vars(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "held-out range" in proc.stderr


# ---------------------------------------------------------------------------- e2e node
@pytest.mark.slow
@pytest.mark.ros
def test_e2e_node_holds_the_policy_command_for_a_planner_period_and_stops_on_stale_odometry(tiny_policies):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from hiopt_ros.conversions import twist_values
    from hiopt_ros.nodes.e2e_node import E2eNode

    checkpoint = tiny_policies["e2e"] / "policy.pt"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        node = E2eNode(context=ctx, parameter_overrides=[Parameter("policy_checkpoint", value=str(checkpoint))])
        assert node.hold_cycles == 5
        sent = []                                            # (v, ω) of every command (one message is reused)
        node.cmd.publisher.publish = lambda m: sent.append(twist_values(m))
        node.on_control()                                   # no odometry yet: stop
        assert sent[-1] == (0.0, 0.0)
        course = load_course()
        node.obstacles = course.obstacles_xyr
        states = [np.array([0.1 * k, 0.02 * k, 0.05 * k]) for k in range(10)]
        for s in states:
            node.state = s
            node.watchdog.feed("odometry")
            node.on_control()
        cmds = sent[1:]
        # decisions at cycles 0 and 5 from the odometry of that cycle, held in between
        for k in (0, 5):
            want = node.policy.command(states[k], node.goal, course.obstacles_xyr, course.robot_radius_m)
            np.testing.assert_allclose(cmds[k], want, atol=1e-6)
            assert all(cmds[j] == cmds[k] for j in range(k, k + 5))
        assert node.counters["decisions"] == 2
        lim = node.cfg.model.limits
        assert all(lim.v_min_mps <= v <= lim.v_max_mps and lim.omega_min_radps <= w <= lim.omega_max_radps
                   for v, w in cmds)
        node.watchdog._last_ns["odometry"] -= int(2e9)      # odometry 2 s old
        node.on_control()
        assert sent[-1] == (0.0, 0.0) and node.counters["stale_odometry"] == 1
        node.state = np.array([*course.goal_xy, 0.0])      # at the goal: stop, latch goal_reached
        node.watchdog.feed("odometry")
        node.on_control()
        assert node.reached and sent[-1] == (0.0, 0.0)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


@pytest.mark.slow
@pytest.mark.ros
def test_e2e_node_rejects_a_subgoal_policy(tiny_policies):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from hiopt_ros.nodes.e2e_node import E2eNode
    from hiopt_ros.nodes.parameters import ParameterError

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    try:
        with pytest.raises(ParameterError, match="policy_checkpoint"):
            E2eNode(context=ctx, parameter_overrides=[
                Parameter("policy_checkpoint", value=str(tiny_policies["bilevel-learned"] / "policy.pt"))])
    finally:
        rclpy.try_shutdown(context=ctx)


# ---------------------------------------------------------------------------- through the ROS 2 node graph
@pytest.mark.slow
@pytest.mark.integration
def test_e2e_policy_drives_through_the_launcher(tiny_policies, tmp_path, ros_domain_id):
    """`python -m hiopt_ros.launcher --e2e POLICY`: sim_node + e2e_node, commands at the control rate,
    the bag and summary written (a tiny policy need not reach the goal)."""
    import json

    out = subprocess.run([sys.executable, "-m", "hiopt_ros.launcher", "--e2e",
                          str(tiny_policies["e2e"] / "policy.pt"), "--out", str(tmp_path), "--timeout-s", "4",
                          "--domain-id", str(ros_domain_id)], cwd=REPO, env=_env_vars(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    assert "nodes: sim_node, e2e_node" in out.stdout and "end-to-end RL policy" in out.stdout
    run = Path(next(line.split()[2] for line in out.stdout.splitlines() if line.startswith("run folder:")))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mode"] == "e2e" and summary["message_counts"]["/hiopt/subgoal"] == 0
    assert summary["achieved_rate_hz"] >= 0.8 * summary["commanded_rate_hz"]
    assert summary["solve_count"] >= 1            # e2e_node publishes its decision times
    assert (run / "logs" / "e2e_node.log").is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_shipped_policy_drives_the_default_course_through_the_launcher(tmp_path, ros_domain_id):
    """`make nav` as shipped: the RL planner (config/policy/bilevel_learned.pt) + FOP_θ
    (config/theta/robot.yaml), both named in config/nav.yaml, reach the goal without a collision."""
    import json

    import yaml

    from hiopt_ros.control.params import node_sections

    sections = node_sections()
    assert sections["planner_node"]["policy_checkpoint"] == "config/policy/bilevel_learned.pt"
    assert sections["controller_node"]["theta_file"] == "config/theta/robot.yaml"
    prov = yaml.safe_load((REPO / "config" / "policy" / "bilevel_learned.yaml").read_text())
    assert prov["command"].startswith("python -m sim.train --method bilevel-learned")
    from sim.train import sha256
    assert prov["theta_sha256"] == sha256(REPO / "config" / "theta" / "robot.yaml"), \
        "the shipped policy was trained for another θ: retrain it (command in config/policy/bilevel_learned.yaml)"
    out = subprocess.run([sys.executable, "-m", "hiopt_ros.launcher", "--out", str(tmp_path), "--timeout-s", "30",
                          "--domain-id", str(ros_domain_id), "--no-bag"], cwd=REPO, env=_env_vars(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RL policy config/policy/bilevel_learned.pt + FOP, θ config/theta/robot.yaml" in out.stdout
    run = Path(next(line.split()[2] for line in out.stdout.splitlines() if line.startswith("run folder:")))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reached"] and not summary["collided"] and summary["min_clearance_m"] > 0
    assert "policy: TorchPolicy" in (run / "logs" / "planner_node.log").read_text()
