"""The expert: an N-step MPC of the unicycle (Eq. 32b–g dynamics, bounds and obstacles), by acados.

    min  Σ_{i<N} w_pos‖p_i − g‖² + w_v v_i² + w_omega ω_i²  +  w_terminal‖p_N − g‖²
    s.t. x_{i+1} = x_i + Ts [v_i cos yaw_i, v_i sin yaw_i, ω_i],  x_0 = current state
         input bounds (32e–f),  ‖p_i − p_j‖ ≥ r_j + robot radius + d_safe  for i = 1..N   (32g)

The obstacle constraints are soft with a large exact (L1) penalty plus a quadratic one, so the
problem stays feasible if tracking errors push the robot into a safety margin; in normal
operation the slack is zero. Goal, weights, Ts and obstacles are parameters: nothing is rebuilt at
run time. Solves are warm-started from the previous plan shifted by one step.

g is the goal, or — when obstacles block the straight line to it — the farthest visible point of
the shortest collision-free path (guidance.py): with the straight-line distance alone the expert
stood still in pockets where obstacle margins overlap (14 of 100 random demonstration courses).

The expert's *implied subgoal* (what the bi-level policy's upper level should have proposed) is
its planned position `subgoal_steps` steps ahead; `MpcInfo.subgoal` carries it for recording.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import acados_env
from .fop import SolveInfo, margin_keeping_speed
from .guidance import GeodesicGuide
from .model import (
    DEFAULT_ROBOT,
    UnicycleLimits,
    casadi_step,
    check_obstacles,
    check_vector,
    nearest_obstacles,
    pack_obstacles,
)

# parameter layout (per stage): [gx, gy, w_pos, w_v, w_omega, w_terminal, Ts, obs (M×3)]
_N_FIXED = 7


@dataclass
class MpcConfig:
    N: int = 20                 # horizon length (structural)
    Ts_s: float = DEFAULT_ROBOT.Ts_s  # step of the prediction model [s]
    M: int = DEFAULT_ROBOT.max_obstacles  # obstacle slots (structural)
    limits: UnicycleLimits = field(default_factory=UnicycleLimits)
    robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m
    d_safe_m: float = DEFAULT_ROBOT.d_safe_m
    w_pos: float = 1.0
    w_v: float = 0.01
    w_omega: float = 0.01
    w_terminal: float = 10.0
    obstacle_penalty_l1: float = 100.0
    obstacle_penalty_l2: float = 0.0
    subgoal_steps: int = 5      # the implied subgoal is the plan's position this many steps ahead
    # SQP iterations per call. Plans are warm-started from the previous one, so a plan cut at the
    # limit keeps improving from step to step (the real-time-iteration idea); in narrow gaps the
    # L1-soft obstacle constraints make full convergence slow, and a control loop cannot wait.
    max_iter: int = 10
    tol: float = 1e-5
    # head for the farthest visible point of the shortest collision-free path when obstacles block
    # the straight line to the goal (guidance.py); False: always the goal (gets stuck in pockets)
    guidance: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.N, int) and self.N >= 1):
            raise ValueError(f"MpcConfig.N must be an integer >= 1, got {self.N!r}")
        if not (isinstance(self.subgoal_steps, int) and 1 <= self.subgoal_steps <= self.N):
            raise ValueError(f"MpcConfig.subgoal_steps must be in 1..N={self.N}, got {self.subgoal_steps!r}")
        for name in ("Ts_s", "w_pos", "w_v", "w_omega", "w_terminal", "robot_radius_m", "d_safe_m"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float)) and math.isfinite(val) and val >= 0):
                raise ValueError(f"MpcConfig.{name} must be a finite number >= 0, got {val!r}")
        if self.Ts_s <= 0:
            raise ValueError("MpcConfig.Ts_s must be > 0")

    def structure(self) -> dict:
        return {"N": self.N, "M": self.M, "l1": self.obstacle_penalty_l1, "l2": self.obstacle_penalty_l2,
                "max_iter": self.max_iter, "tol": self.tol}


@dataclass
class MpcInfo(SolveInfo):
    trajectory: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (N+1, 3) planned states
    inputs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))      # (N, 2) planned inputs
    subgoal: np.ndarray = field(default_factory=lambda: np.zeros(2))          # implied subgoal [m]
    target: np.ndarray = field(default_factory=lambda: np.zeros(2))           # point the cost pulled to [m]


def _build_ocp(cfg: MpcConfig):
    import casadi as ca
    from acados.acados_template import AcadosModel, AcadosOcp

    N, M = cfg.N, cfg.M
    x = ca.SX.sym("x", 3)
    u = ca.SX.sym("u", 2)
    p = ca.SX.sym("p", _N_FIXED + 3 * M)
    goal, w_pos, w_v, w_w, w_t, ts = p[0:2], p[2], p[3], p[4], p[5], p[6]
    obs = p[_N_FIXED:]

    model = AcadosModel()
    model.name = f"hiopt_mpc_n{N}_m{M}"
    model.x, model.u, model.p = x, u, p
    model.disc_dyn_expr = casadi_step(x, u, ts)
    # nonlinear least squares (Gauss-Newton Hessian: PSD, cheap, robust)
    model.cost_y_expr = ca.vertcat(ca.sqrt(w_pos) * (x[0:2] - goal), ca.sqrt(w_v) * u[0], ca.sqrt(w_w) * u[1])
    model.cost_y_expr_e = ca.sqrt(w_t) * (x[0:2] - goal)
    if M:
        h = ca.vertcat(*[(x[0] - obs[3 * j]) ** 2 + (x[1] - obs[3 * j + 1]) ** 2 - obs[3 * j + 2] ** 2
                         for j in range(M)])
        model.con_h_expr = h
        model.con_h_expr_e = h

    ocp = AcadosOcp()
    ocp.model = model
    ocp.dims.N = N
    ocp.cost.cost_type = "NONLINEAR_LS"
    ocp.cost.cost_type_e = "NONLINEAR_LS"
    ocp.cost.W = np.eye(4)
    ocp.cost.W_e = np.eye(2)
    ocp.cost.yref = np.zeros(4)
    ocp.cost.yref_e = np.zeros(2)
    ocp.parameter_values = np.zeros(p.shape[0])
    ocp.constraints.x0 = np.zeros(3)
    ocp.constraints.idxbu = np.array([0, 1])
    ocp.constraints.lbu = cfg.limits.lower
    ocp.constraints.ubu = cfg.limits.upper
    if M:
        for suffix in ("", "_e"):
            setattr(ocp.constraints, f"lh{suffix}", np.zeros(M))
            setattr(ocp.constraints, f"uh{suffix}", 1e6 * np.ones(M))
            setattr(ocp.constraints, f"idxsh{suffix}", np.arange(M))
            for name, val in (("zl", cfg.obstacle_penalty_l1), ("zu", 0.0),
                              ("Zl", cfg.obstacle_penalty_l2), ("Zu", 0.0)):
                setattr(ocp.cost, f"{name}{suffix}", val * np.ones(M))
    opts = ocp.solver_options
    opts.tf = N * cfg.Ts_s
    opts.integrator_type = "DISCRETE"
    opts.nlp_solver_type = "SQP"
    # Exact Hessian with eigenvalue projection: Gauss-Newton ignores the obstacle constraints'
    # curvature and then SQP crawls (30 iterations) whenever an obstacle is active; this takes ~3.
    opts.hessian_approx = "EXACT"
    opts.regularize_method = "PROJECT"
    opts.qp_solver = "PARTIAL_CONDENSING_HPIPM"
    opts.qp_solver_cond_N = min(N, 5)  # measured: ~25% faster per SQP iteration than cond_N = N
    opts.hpipm_mode = "SPEED"
    opts.qp_solver_iter_max = 100
    opts.nlp_solver_max_iter = cfg.max_iter
    opts.tol = cfg.tol
    opts.qp_tol = cfg.tol
    opts.print_level = 0
    return ocp


class Mpc:
    """Expert MPC: `solve(state, goal_xy, obstacles_xyr)` → `(u, MpcInfo)`."""

    build_count = 0

    def __init__(self, config: MpcConfig | None = None) -> None:
        self.config = replace(config) if config is not None else MpcConfig()
        cfg = self.config
        before = acados_env.BUILD_COUNT
        self._solver = acados_env.build_or_load(f"hiopt_mpc_n{cfg.N}_m{cfg.M}", cfg.structure(),
                                                lambda: _build_ocp(cfg))
        Mpc.build_count += acados_env.BUILD_COUNT - before
        self._p = np.zeros(_N_FIXED + 3 * cfg.M)
        self._obs_params = self._p[_N_FIXED:].reshape(-1, 3)
        self._x0 = np.zeros(3)
        self._xs = np.zeros((cfg.N + 1, 3))
        self._us = np.zeros((cfg.N, 2))
        self._buf_x = [np.zeros(3) for _ in range(cfg.N + 1)]
        self._buf_u = [np.zeros(2) for _ in range(cfg.N)]
        self._warm = False
        self.mute_solves = True   # C stdout muted around each solve (see Fop.mute_solves)
        self._guide = GeodesicGuide() if cfg.guidance else None
        self._solver.set_bound(0, b"lbu", np.ascontiguousarray(cfg.limits.lower))
        self._solver.set_bound(0, b"ubu", np.ascontiguousarray(cfg.limits.upper))
        for i in range(1, cfg.N):
            self._solver.set_bound(i, b"lbu", np.ascontiguousarray(cfg.limits.lower))
            self._solver.set_bound(i, b"ubu", np.ascontiguousarray(cfg.limits.upper))

    def reset(self) -> None:
        """Forget the previous plan (next solve starts cold)."""
        self._warm = False
        self._solver.reset()

    def effective_obstacles(self, state: np.ndarray, obstacles_xyr) -> np.ndarray:
        """The (≤ M nearest) obstacles as [x, y, r + robot radius + d_safe] (soft in the MPC)."""
        cfg = self.config
        return np.array(nearest_obstacles(state, check_obstacles(obstacles_xyr), cfg.robot_radius_m + cfg.d_safe_m,
                                          cfg.M, relax_inside=False)).reshape(-1, 3)

    def target(self, state, goal_xy, obstacles_xyr=None) -> np.ndarray:
        """The point the cost pulls towards at `state`: the goal, or with guidance and a blocked
        line of sight the farthest visible point of the shortest collision-free path (guidance.py)."""
        return self._target(check_vector("state", state, 3), check_vector("goal_xy", goal_xy, 2),
                            check_obstacles(obstacles_xyr))

    def _target(self, state: np.ndarray, goal_xy: np.ndarray, obstacles: np.ndarray) -> np.ndarray:
        if self._guide is None or not len(obstacles):
            return goal_xy
        cfg = self.config
        margins = obstacles + np.array([0.0, 0.0, cfg.robot_radius_m + cfg.d_safe_m])
        return self._guide.target(state[:2], goal_xy, margins)[0]

    def solve(self, state, goal_xy, obstacles_xyr=None) -> tuple[np.ndarray, MpcInfo]:
        t0 = time.perf_counter()
        state = check_vector("state", state, 3)
        goal_xy = check_vector("goal_xy", goal_xy, 2)
        cfg, s, p = self.config, self._solver, self._p
        obstacles = check_obstacles(obstacles_xyr)
        target = self._target(state, goal_xy, obstacles)
        p[0:2] = target
        p[2:7] = (cfg.w_pos, cfg.w_v, cfg.w_omega, cfg.w_terminal, cfg.Ts_s)
        pack_obstacles(self._obs_params, state, self.effective_obstacles(state, obstacles).tolist())
        for i in range(cfg.N + 1):
            s.set_params(i, p)
        self._x0[:] = state
        s.set_bound(0, b"lbx", self._x0)
        s.set_bound(0, b"ubx", self._x0)
        # warm start: previous plan shifted by one step (or a standstill rollout when cold)
        if self._warm:
            xs = np.vstack([self._xs[1:], self._xs[-1:]])
            us = np.vstack([self._us[1:], self._us[-1:]])
            xs[0] = state
        else:
            xs = np.repeat(state[None, :], cfg.N + 1, axis=0)
            us = np.zeros((cfg.N, 2))
        for i in range(cfg.N + 1):
            self._buf_x[i][:] = xs[i]
            s.set_out(i, b"x", self._buf_x[i])
        for i in range(cfg.N):
            self._buf_u[i][:] = us[i]
            s.set_out(i, b"u", self._buf_u[i])
        status = s.solve_quietly() if self.mute_solves else s.solve()
        for i in range(cfg.N + 1):
            self._xs[i] = s.get_out(i, b"x", self._buf_x[i])
        for i in range(cfg.N):
            self._us[i] = s.get_out(i, b"u", self._buf_u[i])
        iters = s.sqp_iter()
        elapsed = (time.perf_counter() - t0) * 1e6
        u = self._us[0].copy()
        finite = bool(np.all(np.isfinite(self._xs)) and np.all(np.isfinite(self._us)))
        # max-iterations with a finite plan is still a usable (suboptimal) plan for an expert
        if not finite or status not in (0, 2):
            why = acados_env.STATUS_TEXT.get(status, f"acados status {status}") if finite else "non-finite plan"
            self.reset()
            return np.zeros(2), MpcInfo(False, status, f"MPC failed ({why}); stopping", iters, elapsed,
                                        trajectory=np.repeat(state[None], cfg.N + 1, 0),
                                        inputs=np.zeros((cfg.N, 2)), subgoal=state[:2].copy(),
                                        target=np.array(target, float))
        self._warm = True
        u = np.clip(u, cfg.limits.lower, cfg.limits.upper)
        msg = "ok" if status == 0 else "ok (iteration limit; plan usable)"
        if len(obstacles):
            # the obstacle constraints are soft (and only the M nearest are in the plan): the action
            # applied never takes the robot into a margin, or closer to an obstacle whose margin it is in
            v = margin_keeping_speed(state, float(u[0]), obstacles, cfg.robot_radius_m + cfg.d_safe_m,
                                     cfg.limits.v_min_mps, cfg.limits.v_max_mps, cfg.Ts_s)
            if v != u[0]:
                msg += f"; speed cut from {u[0]:.3f} to {v:.3f} m/s to keep an obstacle margin"
                u[0] = v
        return u, MpcInfo(True, status, msg, iters, elapsed, trajectory=self._xs.copy(), inputs=self._us.copy(),
                          subgoal=self._xs[cfg.subgoal_steps, :2].copy(), target=np.array(target, float))

