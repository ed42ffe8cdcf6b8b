"""Gymnasium environment of the robot task: the upper level of the bi-level policy (or an end-to-end policy).

:class:`NavEnv` is one class with two backends (``backend="kinematic"``: the unicycle model of
Eq. 32b–d with the wheel motors' acceleration limit, fast, for training; ``backend="pybullet"``:
the physics of :class:`sim.world.World` that the ROS stack runs, for evaluation and fine-tuning)
and two action kinds (a subgoal for the lower level it is given, or (v, ω) directly for the
end-to-end baseline). See the class docstring.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, Sequence

import gymnasium as gym
import numpy as np

from hiopt_ros.control.fop import Fop
from hiopt_ros.control.model import UnicycleLimits, unicycle_step
from hiopt_ros.control.mpc import Mpc
from hiopt_ros.control.params import (
    fop_config_from_params,
    mpc_config_from_params,
    node_sections,
    robot_model_from_params,
)
from hiopt_ros.control.theta import load_theta
from hiopt_ros.course import DEFAULT_PARAMS, Course
from hiopt_ros.planning import observation as tp
from hiopt_ros.planning.geometric import LookaheadPolicy
from hiopt_ros.stdio import mute_c_stdout
from sim.courses import TRAIN_SEEDS, course_for_seed
from sim.distance_field import DistanceField

BACKENDS = ("kinematic", "pybullet")
_NO_MUTE = contextlib.nullcontext()
SUBGOAL_ACTIONS = ("offset", "residual")   # NavEnvConfig.subgoal_action
OBSERVATION_BOUND = 1000.0  # [m]; observation() pads missing obstacles with a 10 m clearance


class LowerLevel(Protocol):
    """What the env needs from a lower level: FOP_θ (:class:`hiopt_ros.control.fop.Fop`) or the
    expert (:class:`hiopt_ros.control.mpc.Mpc`, given the goal as its subgoal). ``info`` must carry
    ``ok`` (bool) and ``solve_time_us``; an optional ``reset()`` is called at every episode start."""

    def solve(self, state, subgoal_xy, obstacles_xyr=None) -> tuple[np.ndarray, Any]: ...


@dataclass
class RewardConfig:
    """r_t = progress_per_m · (d_t − d_{t+1}) − time_per_step [− collision] [+ goal].

    d is the distance to the goal [m]: ``progress="geodesic"`` (default) the length of the shortest
    path around the obstacles (:class:`sim.distance_field.DistanceField`; the straight-line distance
    rewards stopping in front of an obstacle on the line), ``"euclidean"`` the straight line.
    """

    progress: str = "geodesic"
    progress_per_m: float = 1.0
    time_per_step: float = 0.01
    collision: float = 10.0
    goal: float = 1.0
    #: − energy_per_j · (wheel-motor work of the step [J]); 0 (default) = the reward above. A stated
    #: extension (issue 21, ``sim.train --energy-weight``): without it the upper level learns subgoals
    #: that turn harder and spend the smoothness the lower level was fitted for. The work is the
    #: backend's ``energy_j``: PyBullet's ∫Σ|τ·ω|dt, or the kinematic backend's model of it.
    energy_per_j: float = 0.0


@dataclass
class NavEnvConfig:
    """Rates and bounds of the task, as the node graph runs it (defaults: config/nav.yaml).

    planner_rate_hz / control_rate_hz: one env step is one planner period; the lower level runs
    round(control/planner) control periods inside it (10 Hz / 50 Hz -> 5), as planner_node and
    controller_node do. subgoal_action: what the bi-level action a ∈ [−1, 1]² means.
    ``"offset"``: a is mapped affinely onto the body-frame box x ∈ [0, max_subgoal_m] (ahead; v ≥ 0,
    so a subgoal behind is never needed: a lateral one turns the robot in place), y ∈
    [−max_subgoal_m, max_subgoal_m]; a = 0 is a subgoal straight ahead. ``"residual"``: a ·
    residual_max_m is a body-frame correction of the geometric look-ahead waypoint
    (:class:`~hiopt_ros.planning.geometric.LookaheadPolicy` with prior_lookahead_m, planner_node's
    lookahead_m); a = 0 is that waypoint. Either way the subgoal's offset from the robot is clipped
    to max_subgoal_m as planner_node does (policy_max_distance_m).
    arrive_radius_m: the controller holds still within this distance of its subgoal (controller_node).
    wheel_dynamics: the kinematic backend rate-limits the wheel speeds as the PyBullet motors do.
    limits: (v, ω) bounds (32e–f) — the e2e action range. time_limit_s = time_limit_factor ·
    (straight-line distance / v_max) + time_limit_extra_s.
    """

    planner_rate_hz: float = 10.0
    control_rate_hz: float = 50.0
    max_subgoal_m: float = 1.5
    subgoal_action: str = "offset"
    residual_max_m: float = 0.5
    prior_lookahead_m: float = 0.6
    arrive_radius_m: float = 0.05
    limits: UnicycleLimits = field(default_factory=UnicycleLimits)
    physics_rate_hz: float = 240.0
    n_obstacles: int = tp.DEFAULT_N_OBSTACLES
    wheel_dynamics: bool = True           # kinematic backend: wheel speeds rate-limited as in PyBullet
    time_limit_factor: float = 2.0
    time_limit_extra_s: float = 5.0
    reward: RewardConfig = field(default_factory=RewardConfig)

    @classmethod
    def from_params(cls, params: str | Path = DEFAULT_PARAMS, **overrides: Any) -> "NavEnvConfig":
        """The rates, bounds and radii the nodes (planner, controller, sim) read from `params`."""
        sec = node_sections(params)
        planner, ctrl, sim = (sec.get(n, {}) for n in ("planner_node", "controller_node", "sim_node"))
        kw: dict[str, Any] = dict(
            planner_rate_hz=float(planner.get("planner_rate_hz", cls.planner_rate_hz)),
            control_rate_hz=float(ctrl.get("control_rate_hz", cls.control_rate_hz)),
            max_subgoal_m=float(planner.get("policy_max_distance_m", cls.max_subgoal_m)),
            prior_lookahead_m=float(planner.get("lookahead_m", cls.prior_lookahead_m)),
            arrive_radius_m=float(ctrl.get("arrive_radius_m", cls.arrive_radius_m)),
            physics_rate_hz=float(sim.get("physics_rate_hz", cls.physics_rate_hz)),
            limits=robot_model_from_params(params).limits,
        )
        kw.update(overrides)
        return cls(**kw)

    def __post_init__(self) -> None:
        if self.subgoal_action not in SUBGOAL_ACTIONS:
            raise ValueError(f"subgoal_action must be one of {SUBGOAL_ACTIONS}, got {self.subgoal_action!r}")
        for name in ("max_subgoal_m", "residual_max_m", "prior_lookahead_m"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"NavEnvConfig.{name} must be > 0, got {getattr(self, name)!r}")

    @property
    def control_periods(self) -> int:
        n = self.control_rate_hz / self.planner_rate_hz
        if not (n >= 1 and abs(n - round(n)) < 1e-9):
            raise ValueError(f"control_rate_hz ({self.control_rate_hz}) must be an integer multiple of "
                             f"planner_rate_hz ({self.planner_rate_hz})")
        return int(round(n))


def _clearance(rows: list[tuple[float, float, float]], x: float, y: float) -> float:
    """Course.clearance in plain floats (a handful of obstacles: far cheaper than numpy on the hot path)."""
    return min((math.hypot(x - ox, y - oy) - r for ox, oy, r in rows), default=math.inf)


@dataclass(frozen=True)
class WheelDrive:
    """What the kinematic backend borrows from the PyBullet robot: the track width [m] and the rate
    [m/s²] at which its torque-limited wheel motors change a wheel's rim speed (measured, see
    :func:`measure_wheel_drive`)."""

    track_width_m: float
    wheel_accel_mps2: float
    wheel_force_n: float = 0.0     # rim force of a wheel motor at its torque limit (torque / wheel radius)

    @property
    def wheel_mass_kg(self) -> float:
        """Mass a wheel motor accelerates, as it acts on the rim: force / acceleration at the limit."""
        return self.wheel_force_n / self.wheel_accel_mps2


@lru_cache(maxsize=4)
def measure_wheel_drive(robot_radius_m: float, physics_rate_hz: float) -> WheelDrive:
    """Measure :class:`WheelDrive` on sim.World (one source of truth: its URDF and motor torque): the
    track width it reports and the slope of a 0 → 1 m/s speed step over its first 0.1 s (the motors
    ramp at a constant torque-limited rate)."""
    from sim.world import World

    with World(Course(start_xyyaw=[0.0, 0.0, 0.0], goal_xy=[10.0, 0.0], robot_radius_m=robot_radius_m),
               physics_rate_hz=physics_rate_hz) as w:
        w.apply_command(1.0, 0.0)
        w.step(0.1)
        accel = float(w.velocity()[0]) / w.time_s
        return WheelDrive(track_width_m=w.track_width_m, wheel_accel_mps2=accel,
                          wheel_force_n=w.MAX_WHEEL_TORQUE_NM / w.wheel_radius_m)


class _Kinematic:
    """The unicycle model (Eq. 32b–d) driven through rate-limited wheel speeds; collision = clearance < 0.

    Each wheel's rim speed moves towards the no-slip target of the command (v ∓ ω·b/2) at most at
    the PyBullet motors' rate (:class:`WheelDrive`), integrated in 4 sub-steps per control period.
    Without this the policy learns on a robot that changes speed instantly, and its subgoals lose
    about a third of their success rate in PyBullet (measured with an early bi-level policy: 55 %
    of 20 held-out courses kinematic, 35 % PyBullet). ``wheel_drive=None``: the pure unicycle.

    ``energy_j`` models PyBullet's wheel-motor work ∫Σ|τ·ω|dt on these wheels: a rim speed change
    Δs at rim speed s costs m·|Δs|·|s| per wheel (m = :attr:`WheelDrive.wheel_mass_kg`, the motor's
    force over the acceleration it gives), braking counted as spent; 0 without wheel dynamics.
    """

    SUBSTEPS = 4

    def __init__(self, course: Course, cfg: NavEnvConfig) -> None:
        self.course, self.state = course, course.start_xyyaw.copy()
        # obstacle radius grown by the robot's: clearance of the robot circle = distance − this
        self._rows = [(ox, oy, r + course.robot_radius_m) for ox, oy, r in course.obstacles_xyr.tolist()]
        self.min_clearance_m = _clearance(self._rows, *self.state[:2])
        self.collided = False
        self.drive = measure_wheel_drive(course.robot_radius_m, cfg.physics_rate_hz) if cfg.wheel_dynamics else None
        self.wheels = [0.0, 0.0]   # rim speeds left, right [m/s]
        self.energy_j = 0.0

    def pose(self) -> np.ndarray:
        return self.state

    def apply(self, u: np.ndarray, dt_s: float) -> None:
        if self.drive is None:
            self.state = unicycle_step(self.state, u, dt_s)
        else:
            half_b, h = 0.5 * self.drive.track_width_m, dt_s / self.SUBSTEPS
            dv = self.drive.wheel_accel_mps2 * h
            v, w = float(u[0]), float(u[1])
            targets = (v - w * half_b, v + w * half_b)
            x, y, yaw = (float(a) for a in self.state)
            mass, work = self.drive.wheel_mass_kg, 0.0
            for _ in range(self.SUBSTEPS):
                new = [cur + min(max(t - cur, -dv), dv) for cur, t in zip(self.wheels, targets)]
                work += sum(abs(b - a) * abs(0.5 * (a + b)) for a, b in zip(self.wheels, new))
                self.wheels = new
                vel, omega = 0.5 * (self.wheels[0] + self.wheels[1]), (self.wheels[1] - self.wheels[0]) / (2 * half_b)
                x, y, yaw = x + h * vel * math.cos(yaw), y + h * vel * math.sin(yaw), yaw + h * omega
            self.state = np.array([x, y, yaw])
            self.energy_j += mass * work
        clear = _clearance(self._rows, self.state[0], self.state[1])
        self.min_clearance_m = min(self.min_clearance_m, clear)
        self.collided = self.collided or clear < 0.0

    def close(self) -> None:
        pass


class _PyBullet:
    """sim.World: the command is held while the physics steps; collision = a PyBullet contact."""

    def __init__(self, course: Course, cfg: NavEnvConfig, world=None) -> None:
        from sim.world import World

        if world is None:
            world = World(course, physics_rate_hz=cfg.physics_rate_hz)
        else:
            world.course = course
            world.reset()
        self.world = world

    def pose(self) -> np.ndarray:
        return self.world.pose()

    def apply(self, u: np.ndarray, dt_s: float) -> None:
        self.world.apply_command(float(u[0]), float(u[1]))
        self.world.step(dt_s)

    @property
    def collided(self) -> bool:
        return self.world.collided

    @property
    def min_clearance_m(self) -> float:
        return self.world.min_clearance_m  # tracked at every physics step

    @property
    def energy_j(self) -> float:
        return self.world.energy_j

    def close(self) -> None:
        self.world.close()


class NavEnv(gym.Env):
    """Drive a differential-drive robot from the course's start to its goal among static cylinders.

    **Arguments.** ``lower_level``: the object that turns a subgoal into (v, ω) at the control rate
    (an :class:`~hiopt_ros.control.fop.Fop` with θ = 0 or a fitted θ, or the MPC expert); ``None``
    makes this the end-to-end task (the action is the command itself). ``backend``: ``"kinematic"``
    or ``"pybullet"``. ``course_seeds``: the seeds a reset draws courses from (default
    :data:`sim.courses.TRAIN_SEEDS`); ``reset(options={"course_seed": s})`` or
    ``options={"course": Course}`` picks one. ``config``: rates, bounds, reward
    (:class:`NavEnvConfig`, default from ``params``).

    **Observation** (float32, shape (3 + 3·n_obstacles,)): exactly
    :func:`hiopt_ros.planning.torch_policy.observation` — goal in the body frame [m], its distance
    [m], and the n nearest obstacles (body-frame centre [m], clearance [m]) — so a trained policy
    runs unchanged in ``planner_node``.

    **Action** (float32, [−1, 1]²). Bi-level (Remark 1: a 2-D action), by
    ``config.subgoal_action``: ``"offset"``, the subgoal p̂ as a body-frame offset in the box
    [0, d] × [−d, d], d = max_subgoal_m (affine in a; a = 0 is d/2 straight ahead), mapped to the
    world frame by :func:`~hiopt_ros.planning.torch_policy.action_to_subgoal`; ``"residual"``, a
    body-frame correction a · residual_max_m of the geometric look-ahead waypoint
    (:func:`~hiopt_ros.planning.torch_policy.residual_to_subgoal`; a = 0 is that waypoint). The
    subgoal's offset from the robot is clipped to d. End-to-end: (v, ω) = the affine map of a onto
    the bounds (32e–f).

    **Step.** One planner period (default 0.1 s). The subgoal is held while the lower level solves
    at the control rate (default 5 periods of 20 ms), as ``controller_node`` does: it holds still
    within ``arrive_radius_m`` of the subgoal and applies the stop command if a solve fails
    (``info.ok`` False). The end-to-end command is held for the planner period.

    **Reward.** progress_per_m · (decrease of the distance to the goal: by default the geodesic one,
    around the obstacles) − time_per_step, −collision on a collision, +goal on reaching the goal
    (:class:`RewardConfig`); optionally − energy_per_j · the step's wheel-motor work (default 0).

    **Starting state.** The course's start pose, at rest.

    **Episode end.** terminated: within ``goal_tolerance_m`` of the goal, or a collision (kinematic:
    the robot circle overlaps an obstacle; pybullet: a contact); truncated: the time limit of
    :class:`NavEnvConfig` (about twice the straight-line time plus 5 s). Both are checked every
    control period.

    ``info`` after every step: ``course_seed``, ``time_s``, ``path_length_m``, ``energy_j`` (pybullet
    only: wheel-motor work, see sim.world), ``min_clearance_m``, ``collided``, ``reached``,
    ``solver_failures`` (episode total), ``subgoal`` (world frame, bi-level), and the commands'
    smoothness so far (:func:`command_smoothness`: ``mean_abs_domega_radps``, ``mean_abs_dv_mps``,
    ``mean_abs_omega_radps``; the commands themselves are in ``commands``). Wall-clock times are
    not in ``info`` (it must be deterministic): the lower level's solve times of the last step are
    in ``last_solve_times_us``.
    """

    metadata = {"render_modes": []}

    def __init__(self, lower_level: LowerLevel | None = None, *, backend: str = "kinematic",
                 course_seeds: Sequence[int] | range = TRAIN_SEEDS, config: NavEnvConfig | None = None,
                 params: str | Path = DEFAULT_PARAMS) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if len(course_seeds) == 0:
            raise ValueError("course_seeds is empty")
        if config is not None and config.reward.progress not in ("geodesic", "euclidean"):
            raise ValueError(f"reward progress must be 'geodesic' or 'euclidean', got {config.reward.progress!r}")
        self.lower_level = lower_level
        # acados prints on capped solves, so its native stdout is muted: once per planner period
        # around the lower level's solves (_advance), not inside each timed solve (≈ 9 µs a solve)
        # — as controller_node mutes it once for good; the solve times then hold what the node pays.
        if hasattr(lower_level, "mute_solves"):
            lower_level.mute_solves = False
        self.backend_name = backend
        self.course_seeds = course_seeds
        self.params = str(params)
        self.config = config if config is not None else NavEnvConfig.from_params(params)
        cfg = self.config
        self.n_control = cfg.control_periods
        self.control_dt_s = 1.0 / cfg.control_rate_hz
        if lower_level is None:
            self.action_kind = tp.ACTION_COMMAND
        else:
            self.action_kind = tp.ACTION_RESIDUAL if cfg.subgoal_action == "residual" else tp.ACTION_SUBGOAL
        self.prior = None
        if self.action_kind == tp.ACTION_RESIDUAL:
            self.prior = LookaheadPolicy(lookahead_m=cfg.prior_lookahead_m)
        size = tp.observation_size(cfg.n_obstacles)
        # finite bounds far beyond any reachable value (episodes last ≤ ~20 s at ≤ 1 m/s)
        self.observation_space = gym.spaces.Box(-OBSERVATION_BOUND, OBSERVATION_BOUND, shape=(size,),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._backend = None
        self._field = None
        self._world = None     # the PyBullet World is kept across episodes (rebuilt by reset)
        self.course: Course | None = None
        self.course_seed: int | None = None

    # ------------------------------------------------------------------ action maps
    @property
    def action_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) with physical action = scale · a + offset for a ∈ [−1, 1]²: metres of body-
        frame subgoal offset (bi-level) or (v [m/s], ω [rad/s]) (end-to-end). The exported policy
        applies the same map, so its output is in physical units."""
        if self.action_kind == tp.ACTION_SUBGOAL:
            d = self.config.max_subgoal_m
            lower, upper = np.array([0.0, -d]), np.array([d, d])
        elif self.action_kind == tp.ACTION_RESIDUAL:
            r = self.config.residual_max_m
            lower, upper = np.array([-r, -r]), np.array([r, r])
        else:
            lower, upper = self.config.limits.lower, self.config.limits.upper
        return 0.5 * (upper - lower), 0.5 * (upper + lower)

    def _physical(self, action) -> np.ndarray:
        a = np.clip(np.asarray(action, dtype=float).reshape(2), -1.0, 1.0)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be 2 finite numbers, got {action!r}")
        scale, offset = self.action_scale
        return scale * a + offset

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "course" in options:
            self.course, self.course_seed = options["course"], options.get("course_seed")
        else:
            s = options.get("course_seed")
            if s is None:
                s = int(self.course_seeds[int(self.np_random.integers(len(self.course_seeds)))])
            self.course, self.course_seed = course_for_seed(int(s), self.params), int(s)
        if self.backend_name == "kinematic":
            self._backend = _Kinematic(self.course, self.config)
        else:
            self._backend = _PyBullet(self.course, self.config, self._world)
            self._world = self._backend.world
        if self.lower_level is not None and hasattr(self.lower_level, "reset"):
            self.lower_level.reset()
        c = self.course
        if self.config.reward.progress == "geodesic":
            self._field = DistanceField(c)
        else:
            self._field = None
        dist = float(np.linalg.norm(c.goal_xy - c.start_xyyaw[:2]))
        self.time_limit_s = (self.config.time_limit_factor * dist / self.config.limits.v_max_mps
                             + self.config.time_limit_extra_s)
        self.time_s = 0.0
        self.path_length_m = 0.0
        self.solver_failures = 0
        self.reached = False
        self.trajectory = [self._backend.pose().copy()]
        self.commands: list[tuple[float, float]] = []   # (v, ω) applied at each control step
        self._command_sums = [0.0, 0.0, 0.0]             # Σ|Δω|, Σ|Δv|, Σ|ω| (command_smoothness)
        self._distance = self.distance_to_goal(c.start_xyyaw[:2])
        self.last_solve_times_us: list[float] = []
        return self._observation(), self._info(None)

    def step(self, action):
        """One planner period with the policy's action in [−1, 1]² (see the class docstring)."""
        phys = self._physical(action)
        if self.action_kind == tp.ACTION_SUBGOAL:
            return self.step_subgoal(tp.action_to_subgoal(self._backend.pose(), phys, self.config.max_subgoal_m))
        if self.action_kind == tp.ACTION_RESIDUAL:
            return self.step_subgoal(tp.residual_to_subgoal(self._backend.pose(), self.prior_subgoal(), phys,
                                                            self.config.max_subgoal_m))
        return self.step_command(phys)

    def prior_subgoal(self) -> np.ndarray:
        """The geometric look-ahead waypoint p̄ a residual action corrects (world frame [m])."""
        c = self.course
        return self.prior.subgoal(self._backend.pose(), c.goal_xy, c.obstacles_xyr, c.robot_radius_m)

    def step_subgoal(self, subgoal_xy) -> tuple:
        """One planner period towards a world-frame subgoal p̂ [m] (unclipped; for planners that are
        not this env's policy: the geometric look-ahead, or the expert given the goal)."""
        if self.lower_level is None:
            raise RuntimeError("this env has no lower level (end-to-end): use step_command")
        return self._advance(np.asarray(subgoal_xy, dtype=float).reshape(2), None)

    def step_command(self, u) -> tuple:
        """One planner period holding the command u = (v [m/s], ω [rad/s]), clipped to the bounds."""
        lim = self.config.limits
        return self._advance(None, np.clip(np.asarray(u, dtype=float).reshape(2), lim.lower, lim.upper))

    def distance_to_goal(self, xy) -> float:
        """The reward's distance d from xy to the goal [m] (geodesic or straight, see RewardConfig)."""
        if self._field is not None:
            return self._field(xy)
        return float(np.linalg.norm(self.course.goal_xy - np.asarray(xy, float)[:2]))

    def pose(self) -> np.ndarray:
        """The robot's pose [x_m, y_m, yaw_rad] (what /odom carries in the stack)."""
        if self._backend is None:
            raise RuntimeError("call reset() first")
        return self._backend.pose().copy()

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None

    # ------------------------------------------------------------------ internals
    def _advance(self, subgoal: np.ndarray | None, command: np.ndarray | None):
        if self._backend is None:
            raise RuntimeError("call reset() before step()")
        cfg, b = self.config, self._backend
        solve_times: list[float] = []
        energy_before = b.energy_j if cfg.reward.energy_per_j else 0.0
        with mute_c_stdout() if self.lower_level is not None else _NO_MUTE:
            collided = self._control_periods(subgoal, command, solve_times)
        rw = cfg.reward
        dist = self.distance_to_goal(self.trajectory[-1][:2])
        reward = rw.progress_per_m * (self._distance - dist) - rw.time_per_step
        if rw.energy_per_j:
            reward -= rw.energy_per_j * (b.energy_j - energy_before)
        self._distance = dist
        if collided:
            reward -= rw.collision
        elif self.reached:
            reward += rw.goal
        terminated = bool(collided or self.reached)
        truncated = bool(not terminated and self.time_s >= self.time_limit_s - 1e-9)
        self.last_solve_times_us = solve_times
        return self._observation(), float(reward), terminated, truncated, self._info(subgoal)

    def _control_periods(self, subgoal: np.ndarray | None, command: np.ndarray | None,
                         solve_times: list[float]) -> bool:
        """The control periods of one planner period (until an episode end); True on a collision."""
        c, cfg, b = self.course, self.config, self._backend
        collided = False
        for _ in range(self.n_control):
            state = b.pose()
            if command is not None:
                u = command
            elif math.dist(state[:2], subgoal) <= cfg.arrive_radius_m:
                u = np.zeros(2)  # controller_node holds still at its subgoal
            else:
                u, info = self.lower_level.solve(state, subgoal, c.obstacles_xyr)
                solve_times.append(float(info.solve_time_us))
                if not info.ok:
                    self.solver_failures += 1
                    u = np.zeros(2)
            b.apply(u, self.control_dt_s)
            v_cmd, w_cmd = float(u[0]), float(u[1])
            v_last, w_last = self.commands[-1] if self.commands else (0.0, 0.0)
            sums = self._command_sums
            sums[0] += abs(w_cmd - w_last)
            sums[1] += abs(v_cmd - v_last)
            sums[2] += abs(w_cmd)
            self.commands.append((v_cmd, w_cmd))
            self.time_s += self.control_dt_s
            pose = b.pose().copy()
            self.path_length_m += math.dist(pose[:2], self.trajectory[-1][:2])
            self.trajectory.append(pose)
            collided = bool(b.collided)
            self.reached = math.dist(pose[:2], c.goal_xy) <= c.goal_tolerance_m
            if collided or self.reached or self.time_s >= self.time_limit_s - 1e-9:
                break
        return collided

    def _observation(self) -> np.ndarray:
        c = self.course
        return tp.observation(self._backend.pose(), c.goal_xy, c.obstacles_xyr, c.robot_radius_m,
                              self.config.n_obstacles)

    def _info(self, subgoal) -> dict[str, Any]:
        info = {"course_seed": self.course_seed, "time_s": self.time_s, "path_length_m": self.path_length_m,
                "min_clearance_m": float(self._backend.min_clearance_m),
                "collided": bool(self._backend.collided), "reached": self.reached,
                "solver_failures": self.solver_failures,
                "subgoal": None if subgoal is None else np.asarray(subgoal, float).copy()}
        n = len(self.commands)
        dw, dv, w = (x / n if n else math.nan for x in self._command_sums)
        info.update(mean_abs_domega_radps=dw, mean_abs_dv_mps=dv, mean_abs_omega_radps=w)
        if self.backend_name == "pybullet":
            info["energy_j"] = float(self._backend.energy_j)
        return info


def command_smoothness(commands: Sequence[tuple[float, float]]) -> dict[str, float]:
    """How much the commands (v, ω) of one episode move: mean |Δω| and |Δv| per control step (the
    first step measured from rest, as the robot starts) and mean |ω|; NaN for no step."""
    if not len(commands):
        return {"mean_abs_domega_radps": math.nan, "mean_abs_dv_mps": math.nan, "mean_abs_omega_radps": math.nan}
    u = np.asarray(commands, dtype=float).reshape(-1, 2)
    du = np.abs(np.diff(u, axis=0, prepend=0.0))
    return {"mean_abs_domega_radps": float(du[:, 1].mean()), "mean_abs_dv_mps": float(du[:, 0].mean()),
            "mean_abs_omega_radps": float(np.abs(u[:, 1]).mean())}


def make_lower_level(kind: str, *, theta: str | Path | None = None, params: str | Path = DEFAULT_PARAMS):
    """The lower level of a method, built exactly as the stack builds it from `params`:

    * ``"fop"``: FOP_θ as controller_node builds it (weights, bounds, K, M from ``params``) with the θ
      file `theta`, or θ = 0 (the unchanged FOP, Eq. 32 with the default weights) when `theta` is None;
    * ``"mpc"``: the expert as expert_node builds it (give it the goal as its subgoal);
    * ``"none"``: no lower level (end-to-end).
    """
    if kind == "none":
        return None
    if kind == "mpc":
        return Mpc(mpc_config_from_params(params))
    if kind == "fop":
        th = load_theta(theta) if theta else None
        cfg = fop_config_from_params(params)
        if th is not None and th.K > cfg.K:
            raise ValueError(f"{theta}: {th.K} ReLU terms but controller_node.relu_terms = {cfg.K}")
        return Fop(cfg, theta=th)
    raise ValueError(f"lower level must be 'fop', 'mpc' or 'none', got {kind!r}")


def timed(fn, *args):
    """(fn(*args), elapsed seconds) measured with perf_counter."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0
