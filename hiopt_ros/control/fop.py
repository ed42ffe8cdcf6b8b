"""FOP_θ: the lower-level one-step optimization of Eq. 32, solved by acados at control rate.

    min_u  c_p‖p_{t+1} − p̂‖² + c_h (yaw_{t+1} − yaw_ref)² + (c_u + l)‖u‖² + Σ_k max(α_kᵀu − β_k, 0)
           [+ c_du‖u − u_{t−1}‖²]                                                 (extension, below)
    s.t.   x_{t+1} = x_t + Ts [v cos yaw_t, v sin yaw_t, ω]                      (32b–d)
           v_min ≤ v ≤ v_max,  ω_min ≤ ω ≤ ω_max                                 (32e–f)
           ‖p_{t+1} − p_j‖ ≥ r_j + robot_radius + d_safe,  j = 1..M               (32g)

yaw_ref is the bearing from the robot to the subgoal p̂ (ARCHITECTURE.md), unwrapped to within π of
the current yaw.

Extension of Eq. 32a (issue 21): c_du‖u − u_{t−1}‖² weighs the change from the previous command
u_{t−1} (a runtime parameter: by default the command this FOP returned last, zero after `reset()`;
`solve(..., u_prev=...)` gives it explicitly). c_du = 0 (the default) is exactly Eq. 32a; a θ file
may carry a learned c_du in its cost_weights (offline.fit --weights c_h,c_u,c_du).

How it maps onto acados (built once per (K, M), see acados_env.py):
* one shooting interval (N = 1) with discrete dynamics; x_t is fixed by the initial-state bounds;
* the ReLU terms are the soft upper bounds α_kᵀu − β_k ≤ 0 with an L1 slack penalty of 1 and no
  quadratic slack weight — exactly Σ_k max(α_kᵀu − β_k, 0);
* the obstacle constraints are nonlinear terminal constraints on p_{t+1};
* subgoal, yaw_ref, weights, Ts, α, β and obstacles are parameters, and input bounds are
  settable bounds, so a new θ, new obstacles or new weights never trigger code generation.

Which local optimum (issue 8): (32g) is non-convex, but p_{t+1} = p_t + Ts·v·[cos yaw_t, sin yaw_t]
depends on v alone, so every obstacle forbids one open interval of speeds (the speeds whose next
position lies inside its margin) and the feasible set is a union of at most M + 1 slabs
{v ∈ [a_i, b_i]} × [ω_min, ω_max]. On each slab Eq. 32 is convex (the cost is a convex quadratic
plus ReLUs in u). SQP started inside a slab stays in it (the linearisation of a convex g_j at a
feasible point is a half-line inside g_j's feasible component), so `solve` starts one SQP per slab —
from the stop command in the slab that holds it, from (v_max, 0) in the slab that holds v_max, from
the middle of any other — each with its rollout as the state guess, and returns the feasible
solution of lowest Eq. 32a cost: the global optimum up to the solver tolerance. When no obstacle's
margin crosses the reachable segment (the common case) there is one slab and one solve, exactly
the single start from the stop command of before. A single start from u = 0 stopped at the
near-side local minimum (v just short of a margin) in ~15 % of near-obstacle samples while a pass
of lower cost was feasible; `FopConfig(multi_start=False)` keeps that behaviour for comparison.

QP solver: HPIPM in SPEED mode (as the MPC), ~17 % faster a solve than its default BALANCE and the
same actions to 3e-6 where both converge. SPEED's SQP can cycle to the iteration cap where BALANCE
converges (2 of ~45,000 solves of Table 2's held-out courses), so the FOP is built twice, and when
no start converges with SPEED the same starts are solved again by the BALANCE build (same
parameters, same buffers); `info.fallback` says so.

Safety: if no start gives a finite action that acados reports converged and that satisfies (32e–g),
even with the BALANCE build, `solve` returns the stop command (0, 0) with `info.ok = False` and a
message saying why. If the robot is already inside an obstacle's safety margin (e.g. after a
tracking error), that obstacle's constraint becomes "get no closer than now", so the problem stays
feasible and the robot can leave the margin.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..stdio import mute_c_stdout
from . import acados_env
from .model import (
    DEFAULT_ROBOT,
    INPUT_NAMES,
    PARK_OFFSET_M,
    UnicycleLimits,
    casadi_step,
    check_obstacles,
    check_vector,
    finite_floats,
    nearest_obstacles,
    pack_obstacles,
)
from .theta import Theta

_UNUSED_BETA = 1.0       # unused ReLU slots: α = 0, β = 1 → α·u − β = −1, strictly inactive
_FEAS_TOL_M2 = 1e-6      # a start's solution must satisfy (32g) as ‖p_{t+1} − p_j‖² − r_eff² ≥ −this
# parameter layout (per stage): [p̂x, p̂y, yaw_ref, c_p, c_h, c_u_total, Ts, c_du, u_prev (2), α (K×2), β (K),
# obs (M×3)]
_N_FIXED = 10
#: the weights of the FOP's own cost terms (Eq. 32a and the c_du extension), in set_weights' order
WEIGHT_NAMES = ("c_p", "c_h", "c_u", "c_du")


def speed_slabs(state, rows, v_min: float, v_max: float, ts: float) -> list[tuple[float, float]]:
    """Speeds v ∈ [v_min, v_max] whose next position p_t + Ts·v·h (h = heading) keeps every circle
    (x, y, r) of `rows` — disjoint closed intervals [a, b], ascending.

    ‖p_t + Ts·v·h − p_j‖² − r_j² is a convex quadratic in v, negative on one open interval
    (v_lo, v_hi) at most: the speeds whose next position lies inside circle j.
    """
    hx, hy = math.cos(float(state[2])), math.sin(float(state[2]))
    slabs = [(v_min, v_max)]
    for ox, oy, r in rows:
        dx, dy = float(state[0]) - ox, float(state[1]) - oy
        hd = hx * dx + hy * dy                    # g(v) = Ts²v² + 2 Ts v hd + (‖d‖² − r²)
        c = dx * dx + dy * dy - r * r
        disc = hd * hd - c
        if disc <= 0.0:
            continue
        q = -(hd + math.copysign(math.sqrt(disc), hd))  # the stable pair of roots: Ts·v = q, c / q
        r1 = q / ts
        r2 = c / (q * ts) if q != 0.0 else r1
        v_lo, v_hi = min(r1, r2), max(r1, r2)
        cut = []
        for a, b in slabs:
            if v_hi <= a or v_lo >= b:
                cut.append((a, b))
                continue
            if a <= v_lo:
                cut.append((a, v_lo))
            if v_hi <= b:
                cut.append((v_hi, b))
        slabs = cut
    return slabs


def margin_keeping_speed(state, v: float, obstacles: np.ndarray, margin_m: float, v_min: float, v_max: float,
                         ts: float) -> float:
    """v if its next position keeps every obstacle's margin (r + margin_m, or "no closer than now"
    when already inside), else the nearest speed that does (the stop command always does).

    A safety filter on a first action for obstacles a solver did not see (beyond its M slots) or
    saw only as soft constraints (the MPC)."""
    # only obstacles whose margin one step can reach can cut a speed (the others: g(v) > 0 for all v)
    reach_m = ts * max(abs(v_min), abs(v_max))
    rows = nearest_obstacles(state, obstacles, margin_m, len(obstacles), relax_inside=True, reach_m=reach_m)
    slabs = speed_slabs(state, rows, v_min, v_max, ts)
    if any(a <= v <= b for a, b in slabs):
        return v
    candidates = [min(max(v, a), b) for a, b in slabs] + [0.0]
    return min(candidates, key=lambda c: abs(c - v))


def _yaw_reference(x: float, y: float, yaw: float, gx: float, gy: float) -> float:
    """Bearing from the robot (x, y) to the subgoal (gx, gy), unwrapped to within π of yaw [rad]."""
    dx, dy = gx - x, gy - y
    if math.hypot(dx, dy) < 1e-9:
        return yaw
    return yaw + (math.atan2(dy, dx) - yaw + math.pi) % (2.0 * math.pi) - math.pi


def _eq32a(x: float, y: float, cos_yaw: float, sin_yaw: float, yaw: float, gx: float, gy: float, yaw_ref: float,
           v: float, w: float, c_p: float, c_h: float, c_u_total: float, ts: float, relu_terms,
           c_du: float = 0.0, v_prev: float = 0.0, w_prev: float = 0.0) -> float:
    """Eq. 32a at u = (v, w) from x_t = (x, y, yaw) in plain floats; relu_terms: ((α_v, α_ω), β) pairs;
    plus c_du‖u − u_prev‖² (the extension, module docstring; 0.0 when c_du = 0).

    c_u_total is c_u + l (the solver's parameter 5). A term with α = 0, β > 0 (an unused slot) adds
    exactly 0.0, so leaving unused slots out of relu_terms gives the same float."""
    ex = x + ts * v * cos_yaw - gx
    ey = y + ts * v * sin_yaw - gy
    eh = yaw + ts * w - yaw_ref
    cost = c_p * (ex * ex + ey * ey) + c_h * eh * eh + c_u_total * (v * v + w * w)
    if c_du:
        dv, dw = v - v_prev, w - w_prev
        cost += c_du * (dv * dv + dw * dw)
    for (a_v, a_w), b in relu_terms:
        cost += max(a_v * v + a_w * w - b, 0.0)
    return cost


def _worst_violation(px: float, py: float, rows) -> float:
    """Largest violation of (32g) by p_{t+1} = (px, py) over the effective obstacles `rows` in m² (≤ 0: feasible)."""
    worst = -math.inf
    for ox, oy, r_eff in rows:
        worst = max(worst, r_eff * r_eff - (px - ox) ** 2 - (py - oy) ** 2)
    return worst


@dataclass
class FopConfig:
    """Structure (K, M) and default runtime values of the FOP of Eq. 32."""

    Ts_s: float = DEFAULT_ROBOT.Ts_s  # prediction step of Eq. 32 (not the control period)
    K: int = 4                 # number of ReLU terms the solver is built with (structural)
    M: int = DEFAULT_ROBOT.max_obstacles  # number of obstacle constraints the solver is built with (structural)
    # Only ratios matter to the argmin; the scale is chosen so the cost's Hessian in u is O(1)
    # (c_p·Ts² + c_u = 2, c_h·Ts² + c_u = 1.3). Inverse optimization compares θ, l and the duality
    # gaps against this scale: with a Hessian of 0.01 a fitted ReLU slope of 0.04 would already
    # swing ω by a rad/s. c_h/c_p = 0.3 turns the robot firmly towards its subgoal.
    c_p: float = 100.0
    c_h: float = 30.0
    c_u: float = 1.0
    c_du: float = 0.0          # weight of ‖u − u_{t−1}‖² (extension of Eq. 32a, module docstring)
    limits: UnicycleLimits = field(default_factory=UnicycleLimits)
    robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m
    d_safe_m: float = DEFAULT_ROBOT.d_safe_m
    max_iter: int = 50
    tol: float = 1e-8
    # one SQP start per feasible speed slab (global optimum); False: only from the stop command
    multi_start: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.K, int) and self.K >= 0 and isinstance(self.M, int) and self.M >= 0):
            raise ValueError(f"K and M must be non-negative integers, got K={self.K!r}, M={self.M!r}")
        for name in ("Ts_s", "c_p", "c_h", "c_u", "c_du", "robot_radius_m", "d_safe_m"):
            val = getattr(self, name)
            if not (isinstance(val, (int, float)) and math.isfinite(val) and val >= 0):
                raise ValueError(f"FopConfig.{name} must be a finite number >= 0, got {val!r}")
        if self.Ts_s <= 0:
            raise ValueError(f"FopConfig.Ts_s must be > 0, got {self.Ts_s}")

    def structure(self) -> dict:
        return {"K": self.K, "M": self.M, "max_iter": self.max_iter, "tol": self.tol}


@dataclass
class SolveInfo:
    """What a solve did. `ok` is False whenever the returned action is the safety stop."""

    ok: bool
    status: int
    message: str
    iterations: int
    solve_time_us: float
    relu_penalty: float = 0.0
    cost: float = float("nan")   # Eq. 32a at the returned action (θ's ReLU terms and l included)
    starts: int = 1              # SQP starts tried (one per feasible speed slab, see fop.py)
    start: int = 0               # index of the start whose solution was returned (0: the stop command)
    fallback: bool = False       # the SPEED build failed every start and the BALANCE build solved it


HPIPM_MODE = "SPEED"             # the hot path's QP mode (see the module docstring)
FALLBACK_HPIPM_MODE = "BALANCE"  # the build that solves what SPEED could not


def _solver_name(K: int, M: int, hpipm_mode: str) -> str:
    """The generated solver's (and its C symbols') name: one per (K, M) and QP mode."""
    return f"hiopt_fop_k{K}_m{M}" + ("" if hpipm_mode == HPIPM_MODE else f"_{hpipm_mode.lower()}")


def _build_ocp(K: int, M: int, max_iter: int, tol: float, hpipm_mode: str = HPIPM_MODE):
    import casadi as ca
    from acados.acados_template import AcadosModel, AcadosOcp

    x = ca.SX.sym("x", 3)
    u = ca.SX.sym("u", 2)
    p = ca.SX.sym("p", _N_FIXED + 3 * K + 3 * M)
    goal, yaw_ref, c_p, c_h, c_u, ts = p[0:2], p[2], p[3], p[4], p[5], p[6]
    c_du, u_prev = p[7], p[8:10]
    alpha = ca.reshape(p[_N_FIXED:_N_FIXED + 2 * K], 2, K).T if K else None  # row-major K×2
    beta = p[_N_FIXED + 2 * K:_N_FIXED + 3 * K]
    obs = p[_N_FIXED + 3 * K:]

    model = AcadosModel()
    model.name = _solver_name(K, M, hpipm_mode)
    model.x, model.u, model.p = x, u, p
    model.disc_dyn_expr = casadi_step(x, u, ts)
    model.cost_expr_ext_cost = c_u * ca.sumsqr(u) + c_du * ca.sumsqr(u - u_prev)
    model.cost_expr_ext_cost_e = c_p * ca.sumsqr(x[0:2] - goal) + c_h * (x[2] - yaw_ref) ** 2
    if K:
        model.con_h_expr = ca.mtimes(alpha, u) - beta
    if M:
        model.con_h_expr_e = ca.vertcat(*[
            (x[0] - obs[3 * j]) ** 2 + (x[1] - obs[3 * j + 1]) ** 2 - obs[3 * j + 2] ** 2 for j in range(M)])

    ocp = AcadosOcp()
    ocp.model = model
    ocp.dims.N = 1
    ocp.cost.cost_type = "EXTERNAL"
    ocp.cost.cost_type_e = "EXTERNAL"
    ocp.parameter_values = np.zeros(p.shape[0])
    ocp.constraints.x0 = np.zeros(3)
    ocp.constraints.idxbu = np.array([0, 1])
    ocp.constraints.lbu = np.array([-1.0, -1.0])
    ocp.constraints.ubu = np.array([1.0, 1.0])
    if K:
        # ReLU terms: L1-penalised soft upper bounds (zu = 1, Zu = 0) == Σ max(α u − β, 0)
        ocp.constraints.lh = -1e6 * np.ones(K)
        ocp.constraints.uh = np.zeros(K)
        ocp.constraints.idxsh = np.arange(K)
        ocp.cost.zl = np.ones(K)   # lower side never active (−1e6); a positive weight keeps its slack at 0
        ocp.cost.zu = np.ones(K)
        ocp.cost.Zl = np.zeros(K)
        ocp.cost.Zu = np.zeros(K)
    if M:
        ocp.constraints.lh_e = np.zeros(M)
        ocp.constraints.uh_e = 1e6 * np.ones(M)  # one-sided; a huge bound hurts the QP's complementarity
    opts = ocp.solver_options
    opts.tf = 1.0  # unused by discrete dynamics, required by acados
    opts.integrator_type = "DISCRETE"
    opts.nlp_solver_type = "SQP"
    opts.hessian_approx = "EXACT"
    # The cost is quadratic in u once x_t is fixed; the dynamics are linear in u. Dropping the
    # dynamics/constraint curvature keeps the QP Hessian PSD (it is exact in u on the feasible set).
    opts.exact_hess_dyn = 0
    opts.exact_hess_constr = 0
    opts.qp_solver = "FULL_CONDENSING_HPIPM"
    # SPEED: on 2,266 states of 10 held-out Table 2 courses the same actions as BALANCE to 3e-6 at
    # 40 instead of 48 µs a solve; SPEED_ABS drops safeguards and fails there (module docstring)
    opts.hpipm_mode = hpipm_mode
    opts.qp_solver_iter_max = 100
    opts.nlp_solver_max_iter = max_iter
    opts.tol = tol
    opts.qp_tol = tol
    opts.print_level = 0
    return ocp


@dataclass(frozen=True, slots=True)
class _BoundCalls:
    """One build's C calls, each pre-bound to the FOP's buffers (FastSolver's pre-bound calls)."""

    set_p0: Callable[[], Any]
    set_p1: Callable[[], Any]
    set_lbx: Callable[[], Any]
    set_ubx: Callable[[], Any]
    guess_x0: Callable[[], Any]
    guess_x1: Callable[[], Any]
    guess_u: Callable[[], Any]
    solve: Callable[[], int]
    get_u: Callable[[], Any]
    get_su: Callable[[], Any] | None     # None when the FOP has no ReLU slots (K = 0)
    sqp_iter: Callable[[], int]
    reset: Callable[[], Any]

    @classmethod
    def of(cls, s: "acados_env.FastSolver", fop: "Fop") -> "_BoundCalls":
        return cls(s.params_setter(0, fop._p), s.params_setter(1, fop._p),
                   s.bound_setter(0, b"lbx", fop._x0), s.bound_setter(0, b"ubx", fop._x0),
                   s.out_setter(0, b"x", fop._x0), s.out_setter(1, b"x", fop._x1_guess),
                   s.out_setter(0, b"u", fop._u_guess), s.solver_call(), s.out_getter(0, b"u", fop._u),
                   s.out_getter(0, b"su", fop._su) if fop.config.K else None, s.sqp_iter_getter(), s.reset_call())


class Fop:
    """The one-step problem of Eq. 32 as a reusable acados solver.

    `solve(state, subgoal_xy, obstacles_xyr)` → `(u, info)`; u = [v_mps, omega_radps].
    """

    build_count = 0  # mirrors acados_env.BUILD_COUNT for FOP builds in this process

    def __init__(self, config: FopConfig | None = None, theta: Theta | None = None) -> None:
        self.config = replace(config) if config is not None else FopConfig()
        cfg = self.config
        before = acados_env.BUILD_COUNT
        self._solver, self._fallback = (
            acados_env.build_or_load(_solver_name(cfg.K, cfg.M, mode), {**cfg.structure(), "hpipm_mode": mode},
                                     lambda mode=mode: _build_ocp(cfg.K, cfg.M, cfg.max_iter, cfg.tol, mode))
            for mode in (HPIPM_MODE, FALLBACK_HPIPM_MODE))
        Fop.build_count += acados_env.BUILD_COUNT - before
        self._p = np.zeros(_N_FIXED + 3 * cfg.K + 3 * cfg.M)
        self._obs_params = self._p[_N_FIXED + 3 * cfg.K:].reshape(-1, 3)  # a view into _p
        self._x0 = np.zeros(3)
        self._u = np.zeros(2)
        self._u_guess = np.zeros(2)
        self._x1_guess = np.zeros(3)
        self._slack = np.zeros(max(2 * cfg.K, 1))
        self._alpha = np.zeros((cfg.K, 2))
        self._beta = np.full(cfg.K, _UNUSED_BETA)
        self._su = np.zeros(cfg.K)               # the ReLU slacks at stage 0 (solve's relu_penalty)
        self._u_last = (0.0, 0.0)                # the command returned last: u_{t−1} of the c_du term
        self._mute = mute_c_stdout               # around each acados solve (see mute_solves)
        self._relu_terms: list = []              # θ's ((α_v, α_ω), β) in floats; the unused slots add 0
        self._bind_hot_path()
        self.theta = Theta.zero(0)
        self._obs_in: object = None
        self._obs_checked = np.zeros((0, 3))
        self.set_limits(cfg.limits)
        self.set_weights()
        self.set_theta(theta if theta is not None else Theta.zero(0))

    @property
    def mute_solves(self) -> bool:
        """Whether each solve points fd 1 at /dev/null (acados prints on every capped solve; ~10 µs a
        solve). A process whose native stdout is muted for good (controller_node) turns it off."""
        return self._mute is mute_c_stdout

    @mute_solves.setter
    def mute_solves(self, on: bool) -> None:
        self._mute = mute_c_stdout if on else contextlib.nullcontext

    # ---------------------------------------------------------------- runtime settings (no rebuild)
    def set_theta(self, theta: Theta) -> None:
        """Install fitted ReLU terms (K_θ ≤ K), l and the θ's cost weights (c_p, c_h, c_u, if it has
        any); unused slots are inactive. Weights a previous θ installed are reverted first, so a θ
        without weights runs with the FOP's own. Never rebuilds. Raises ValueError (see
        :meth:`check_theta`) and then changes nothing."""
        self.check_theta(theta)
        self.theta = theta
        self._install_theta(theta)

    def check_theta(self, theta: Theta) -> None:
        """Raise ValueError when this FOP cannot run `theta` (more ReLU terms than its K slots, cost
        weights Eq. 32a does not have, another case study or input order); changes nothing. The
        controller node calls it when a new theta_file is validated, before the swap."""
        unknown = sorted(set(theta.cost_weights) - set(WEIGHT_NAMES))
        if unknown:
            raise ValueError(f"θ has cost weights {unknown} this FOP does not have (Eq. 32a: c_p, c_h, c_u; "
                             "extension: c_du)")
        if theta.K > self.config.K:
            raise ValueError(f"θ has {theta.K} ReLU terms but this FOP was built with K={self.config.K}; "
                             f"build Fop(FopConfig(K={theta.K}))")
        if theta.alpha.shape[1] != 2:
            raise ValueError(f"θ.alpha must have 2 columns (v, omega), got {theta.alpha.shape}")
        if theta.case_study != "robot" or tuple(theta.input_names) != INPUT_NAMES:
            raise ValueError(f"θ is for case study {theta.case_study!r} with inputs {list(theta.input_names)}; "
                             f"this FOP (Eq. 32) needs case_study 'robot' with inputs {list(INPUT_NAMES)}")

    def _install_theta(self, theta: Theta) -> None:
        self._alpha[:] = 0.0
        self._beta[:] = _UNUSED_BETA
        self._alpha[:theta.K] = theta.alpha
        self._beta[:theta.K] = theta.beta
        self._relu_terms = list(zip(self._alpha[:theta.K].tolist(), self._beta[:theta.K].tolist()))
        K = self.config.K
        self._p[_N_FIXED:_N_FIXED + 2 * K] = self._alpha.reshape(-1)
        self._p[_N_FIXED + 2 * K:_N_FIXED + 3 * K] = self._beta
        before = getattr(self, "_weights_before_theta", None)
        if before is not None:                       # undo the previous θ's weights
            self.config.c_p, self.config.c_h, self.config.c_u, self.config.c_du = before
            self._weights_before_theta = None
        if theta.cost_weights:
            self._weights_before_theta = (self.config.c_p, self.config.c_h, self.config.c_u, self.config.c_du)
        self.set_weights(**theta.cost_weights)       # also writes c_u + l

    def set_weights(self, c_p: float | None = None, c_h: float | None = None, c_u: float | None = None,
                    c_du: float | None = None) -> None:
        """Change cost weights of Eq. 32a (and the extension's c_du) at run time."""
        for name, val in (("c_p", c_p), ("c_h", c_h), ("c_u", c_u), ("c_du", c_du)):
            if val is not None:
                if not (math.isfinite(val) and val >= 0):
                    raise ValueError(f"{name} must be finite and >= 0, got {val!r}")
                setattr(self.config, name, float(val))
        self._p[3], self._p[4] = self.config.c_p, self.config.c_h
        self._p[5] = self.config.c_u + getattr(self, "theta", Theta.zero(0)).l
        self._p[6] = self.config.Ts_s
        self._p[7] = self.config.c_du

    def reset(self) -> None:
        """A new run: the previous command u_{t−1} of the c_du term is the stop command again."""
        self._u_last = (0.0, 0.0)

    def set_limits(self, limits: UnicycleLimits) -> None:
        """Change the input bounds (32e–f) at run time."""
        self.config.limits = limits
        for solver in (self._solver, self._fallback):
            solver.set_bound(0, b"lbu", np.ascontiguousarray(limits.lower))
            solver.set_bound(0, b"ubu", np.ascontiguousarray(limits.upper))

    # ---------------------------------------------------------------- the problem's pieces
    def yaw_reference(self, state: np.ndarray, subgoal_xy: np.ndarray) -> float:
        """Bearing from the robot to the subgoal, unwrapped to within π of the current yaw."""
        return _yaw_reference(float(state[0]), float(state[1]), float(state[2]), float(subgoal_xy[0]),
                              float(subgoal_xy[1]))

    def effective_obstacles(self, state: np.ndarray, obstacles_xyr) -> np.ndarray:
        """The (≤ M nearest) obstacles as [x, y, r_eff] with r_eff = r + robot radius + d_safe,
        relaxed to the current distance when the robot is already inside the margin."""
        return np.array(self._obstacle_rows(state, obstacles_xyr)).reshape(-1, 3)

    def _obstacle_rows(self, state, obstacles_xyr) -> list[tuple[float, float, float]]:
        if obstacles_xyr is not self._obs_in:  # validate once per new obstacle array (hot path)
            self._obs_checked = check_obstacles(obstacles_xyr)
            self._obs_in = obstacles_xyr
        cfg = self.config
        return nearest_obstacles(state, self._obs_checked, cfg.robot_radius_m + cfg.d_safe_m, cfg.M,
                                 relax_inside=True)

    def cost_terms(self, state, subgoal_xy, u_prev=None) -> tuple[np.ndarray, np.ndarray, float]:
        """Eq. 32a without the ReLU terms and without l, as uᵀQu + cᵀu + const at fixed x_t, with
        c_du‖u − u_prev‖² (u_prev: the previous command, default the stop command)."""
        state = check_vector("state", state, 3)
        subgoal_xy = check_vector("subgoal_xy", subgoal_xy, 2)
        u_prev = np.zeros(2) if u_prev is None else check_vector("u_prev", u_prev, 2)
        cfg, ts = self.config, self.config.Ts_s
        heading = np.array([math.cos(state[2]), math.sin(state[2])])
        dp = state[:2] - subgoal_xy
        dyaw = state[2] - self.yaw_reference(state, subgoal_xy)
        Q = np.diag([cfg.c_p * ts * ts + cfg.c_u + cfg.c_du, cfg.c_h * ts * ts + cfg.c_u + cfg.c_du])
        c = np.array([2 * cfg.c_p * ts * heading @ dp, 2 * cfg.c_h * ts * dyaw]) - 2 * cfg.c_du * u_prev
        const = cfg.c_p * float(dp @ dp) + cfg.c_h * dyaw * dyaw + cfg.c_du * float(u_prev @ u_prev)
        return Q, c, const

    def constraint_rows(self, state, u_lin, obstacles_xyr=None) -> tuple[np.ndarray, np.ndarray]:
        """Constraints as rows H u ≤ b: bounds (32e–f) and each obstacle (32g) linearised at u_lin.

        ‖p_{t+1}(u) − p_j‖² is convex in u, so its tangent at u_lin is a supporting half-space
        contained in the feasible set.
        """
        state = check_vector("state", state, 3)
        u_lin = check_vector("u_lin", u_lin, 2)
        lim = self.config.limits
        H = [np.array([1.0, 0.0]), np.array([-1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, -1.0])]
        b = [lim.v_max_mps, -lim.v_min_mps, lim.omega_max_radps, -lim.omega_min_radps]
        ts = self.config.Ts_s
        heading = np.array([math.cos(state[2]), math.sin(state[2])])
        p1 = state[:2] + ts * u_lin[0] * heading
        for ox, oy, r_eff in self.effective_obstacles(state, obstacles_xyr):
            diff = p1 - np.array([ox, oy])
            g = float(diff @ diff) - r_eff * r_eff
            grad = np.array([2 * ts * heading @ diff, 0.0])
            # g(u_lin) + grad·(u − u_lin) ≥ 0  ⇔  −grad·u ≤ g − grad·u_lin
            H.append(-grad)
            b.append(g - float(grad @ u_lin))
        return np.array(H), np.array(b)

    def objective(self, state, subgoal_xy, u) -> float:
        """Eq. 32a at u with the weights, θ (ReLU terms) and l installed in the solver (and the
        c_du term about the u_{t−1} of the last solve)."""
        state = check_vector("state", state, 3)
        subgoal_xy = check_vector("subgoal_xy", subgoal_xy, 2)
        u = check_vector("u", u, 2)
        return self._cost(state, subgoal_xy, self.yaw_reference(state, subgoal_xy), float(u[0]), float(u[1]))

    def _cost(self, state, subgoal_xy, yaw_ref: float, v: float, w: float) -> float:
        """Eq. 32a from the parameters acados optimises (p: c_p, c_h, c_u + l, c_du, u_prev; α, β), in floats."""
        c_p, c_h, c_u, ts, c_du, v_prev, w_prev = self._p[3:10].tolist()
        yaw = float(state[2])
        return _eq32a(float(state[0]), float(state[1]), math.cos(yaw), math.sin(yaw), yaw, float(subgoal_xy[0]),
                      float(subgoal_xy[1]), yaw_ref, v, w, c_p, c_h, c_u, ts,
                      zip(self._alpha.tolist(), self._beta.tolist()), c_du, v_prev, w_prev)

    def speed_slabs(self, state, rows: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
        """The feasible speeds of (32e) ∩ (32g) at `state` (see :func:`speed_slabs`); `rows` are the
        effective obstacles (x, y, r_eff) of `_obstacle_rows`."""
        lim = self.config.limits
        return speed_slabs(state, rows, lim.v_min_mps, lim.v_max_mps, float(self._p[6]))

    def start_actions(self, state, obstacles_xyr=None) -> np.ndarray:
        """The SQP starts `solve` uses at `state`, (S, 2) rows [v_mps, omega_radps]; row 0 is the stop command."""
        state = check_vector("state", state, 3)
        return np.array([[v, 0.0] for v in self._start_speeds(state, self._obstacle_rows(state, obstacles_xyr))])

    def _start_speeds(self, state, rows) -> list[float]:
        """One start per slab: the stop command first, then (v_max, ·), then slab midpoints."""
        if not self.config.multi_start:
            return [0.0]
        slabs = self.speed_slabs(state, rows)
        if len(slabs) <= 1:
            return [0.0]
        lim = self.config.limits
        starts = [0.0]
        for a, b in slabs:
            if a <= 0.0 <= b:
                continue  # the stop command's slab (always feasible, see effective_obstacles)
            starts.append(lim.v_max_mps if b >= lim.v_max_mps else lim.v_min_mps if a <= lim.v_min_mps
                          else 0.5 * (a + b))
        return starts

    def _violation(self, state, rows, v: float) -> float:
        """Largest violation of (32g) at p_{t+1}(v) in m² (≤ 0 when feasible)."""
        ts, yaw = float(self._p[6]), float(state[2])
        return _worst_violation(float(state[0]) + ts * v * math.cos(yaw),
                                float(state[1]) + ts * v * math.sin(yaw), rows)

    # ---------------------------------------------------------------- solve
    def _bind_hot_path(self) -> None:
        """The C calls `solve` makes, each bound once to its fixed buffer (FastSolver's pre-bound
        calls), for the SPEED build and for the BALANCE fallback (the same buffers)."""
        cfg = self.config
        # ctypes views of the buffers: storing a Python float into one is cheaper than into numpy
        self._p_c = (ctypes.c_double * self._p.shape[0]).from_buffer(self._p)
        self._x0_c = (ctypes.c_double * 3).from_buffer(self._x0)
        self._x1_c = (ctypes.c_double * 3).from_buffer(self._x1_guess)
        self._u_guess_c = (ctypes.c_double * 2).from_buffer(self._u_guess)
        self._u_c = (ctypes.c_double * 2).from_buffer(self._u)
        self._su_c = (ctypes.c_double * cfg.K).from_buffer(self._su)   # summed in floats: numpy's sum costs µs
        self._obs_slice = slice(_N_FIXED + 3 * cfg.K, _N_FIXED + 3 * cfg.K + 3 * cfg.M)
        self._calls, self._fallback_calls = (_BoundCalls.of(s, self) for s in (self._solver, self._fallback))

    def solve(self, state, subgoal_xy, obstacles_xyr=None, u_prev=None) -> tuple[np.ndarray, SolveInfo]:
        """Solve Eq. 32 at `state` for `subgoal_xy`; returns (u, info), u = stop on failure.

        u_prev: the previous command u_{t−1} of the c_du term (default: the command this FOP
        returned last, the stop command after `reset()`); it only matters when c_du > 0.

        One SQP start per feasible speed slab (module docstring); the lowest-cost feasible
        solution wins; when no start converges, the same starts on the BALANCE build. info.cost
        is Eq. 32a at the returned u.

        The control loop's path: it computes exactly what :meth:`solve_reference` computes (same
        parameters, starts, solver calls in the same order, the same float operations; test_control
        checks equal results on recorded and random inputs), in plain floats with C calls bound once,
        so the Python around acados costs a fraction of the reference's.
        """
        t0 = time.perf_counter()
        x, y, yaw = finite_floats("state", state, 3)
        gx, gy = finite_floats("subgoal_xy", subgoal_xy, 2)
        cfg, pc = self.config, self._p_c
        yaw_ref = _yaw_reference(x, y, yaw, gx, gy)
        xyyaw = (x, y, yaw)
        rows = self._obstacle_rows(xyyaw, obstacles_xyr)
        # parameters (layout above _N_FIXED): p̂, yaw_ref, u_{t−1}, then the obstacle block with the unused
        # slots parked as model.pack_obstacles parks them (as one flat list; test_control checks they agree)
        pc[0], pc[1], pc[2] = gx, gy, yaw_ref
        pc[8], pc[9] = self._u_last if u_prev is None else finite_floats("u_prev", u_prev, 2)
        n_free = cfg.M - len(rows)
        pc[self._obs_slice] = ([v for row in rows for v in row] if rows else []) + \
            [x + PARK_OFFSET_M, y + PARK_OFFSET_M, 0.0] * n_free
        x0 = self._x0_c
        x0[0], x0[1], x0[2] = x, y, yaw
        starts = self._start_speeds(xyyaw, rows) if rows else [0.0]
        best, iters, failures, fail_status = self._run_starts(self._calls, starts, x, y, yaw, gx, gy, yaw_ref, rows)
        fallback = best is None
        if fallback:
            best, more, failures2, fail_status = self._run_starts(self._fallback_calls, starts, x, y, yaw, gx, gy,
                                                                  yaw_ref, rows)
            iters += more
            failures = failures + failures2
        if best is None:
            why = "; ".join(dict.fromkeys(failures))
            self._u_last = (0.0, 0.0)
            return np.zeros(2), SolveInfo(False, fail_status, f"FOP failed ({why}); stopping", iters,
                                          (time.perf_counter() - t0) * 1e6, starts=len(starts), fallback=True)
        best_v, best_w, best_cost, best_relu, best_start = best
        best_u = np.array([best_v, best_w])
        msg = "ok" if not failures else f"ok ({len(failures)} of {len(starts)} starts failed: {failures[0]})"
        if fallback:
            msg += f" (solved by the {FALLBACK_HPIPM_MODE} build)"
        if len(self._obs_checked) > cfg.M:  # obstacles beyond the M slots: keep their margins too
            lim = cfg.limits
            c_p, c_h, c_u, ts, c_du, v_prev, w_prev = self._p[3:10].tolist()
            v = margin_keeping_speed(xyyaw, best_v, self._obs_checked, cfg.robot_radius_m + cfg.d_safe_m,
                                     lim.v_min_mps, lim.v_max_mps, ts)
            if v != best_v:
                best_u[0] = v
                best_cost = _eq32a(x, y, math.cos(yaw), math.sin(yaw), yaw, gx, gy, yaw_ref, v, best_w, c_p, c_h, c_u,
                                   ts, self._relu_terms, c_du, v_prev, w_prev)
                best_relu = float(np.maximum(self._alpha @ best_u - self._beta, 0.0).sum())
                msg += f" (speed cut to {v:.3f} m/s by an obstacle beyond the M={cfg.M} slots)"
        self._u_last = (float(best_u[0]), float(best_u[1]))
        return best_u, SolveInfo(True, 0, msg, iters, (time.perf_counter() - t0) * 1e6, best_relu, best_cost,
                                 len(starts), best_start, fallback)

    def _run_starts(self, c: "_BoundCalls", starts: list[float], x: float, y: float, yaw: float, gx: float,
                    gy: float, yaw_ref: float, rows) -> tuple[tuple | None, int, list[str], int]:
        """One SQP per start on the build behind `c` (parameters and x_t from the shared buffers);
        returns ((v, w, cost, relu, start index) of the best feasible solution or None, SQP
        iterations, failure texts, first failing acados status)."""
        c.set_p0()
        c.set_p1()
        c.set_lbx()
        c.set_ubx()
        c_p, c_h, c_u, ts, c_du, v_prev, w_prev = self._p[3:10].tolist()
        cos_yaw, sin_yaw = math.cos(yaw), math.sin(yaw)
        lim = self.config.limits
        v_lo, v_hi, w_lo, w_hi = lim.v_min_mps, lim.v_max_mps, lim.omega_min_radps, lim.omega_max_radps
        x1, ug, uc = self._x1_c, self._u_guess_c, self._u_c
        best = None
        best_cost = math.inf
        iters, failures, fail_status = 0, [], 0
        for k, v0 in enumerate(starts):
            # the start and its rollout: x_{t+1} = step(x_t, (v0, 0))
            ug[0], ug[1] = v0, 0.0
            x1[0], x1[1], x1[2] = x + ts * v0 * cos_yaw, y + ts * v0 * sin_yaw, yaw
            c.guess_x0()
            c.guess_x1()
            c.guess_u()
            with self._mute():  # acados prints on every capped solve; info.message says it
                status = c.solve()
            c.get_u()
            u0, u1 = uc[0], uc[1]
            iters += c.sqp_iter()
            if status != 0 or not (math.isfinite(u0) and math.isfinite(u1)):
                why = acados_env.STATUS_TEXT.get(status, f"acados status {status}")
                failures.append(why if status != 0 else f"non-finite action {[u0, u1]}")
                fail_status = fail_status or status
                c.reset()
                continue
            # HPIPM may overshoot a bound by ~tol; never command beyond the limits
            v = min(max(u0, v_lo), v_hi)
            w = min(max(u1, w_lo), w_hi)
            if rows:
                worst = _worst_violation(x + ts * v * cos_yaw, y + ts * v * sin_yaw, rows)
                if worst > _FEAS_TOL_M2:
                    failures.append(f"obstacle constraint violated by {worst:.2e} m²")
                    continue
            cost = _eq32a(x, y, cos_yaw, sin_yaw, yaw, gx, gy, yaw_ref, v, w, c_p, c_h, c_u, ts, self._relu_terms,
                          c_du, v_prev, w_prev)
            if best is None or cost < best_cost:
                # the ReLU penalty as acados sees it: the L1 slacks of the soft constraints (su at stage 0)
                if c.get_su is not None:
                    c.get_su()
                    relu = sum(self._su_c)    # = float(self._su.sum()): K ≤ 8 terms are summed in order
                else:
                    relu = 0.0
                best, best_cost = (v, w, cost, relu, k), cost
        return best, iters, failures, fail_status

    def solve_reference(self, state, subgoal_xy, obstacles_xyr=None, u_prev=None) -> tuple[np.ndarray, SolveInfo]:
        """:meth:`solve` written plainly (numpy arrays, one FastSolver method call per C call): the
        readable statement of what `solve` must compute. test_control checks that both return the
        same (u, info) on the same inputs; `python -m hiopt_ros.bench` times both in one process.
        """
        t0 = time.perf_counter()
        state = check_vector("state", state, 3)
        subgoal_xy = check_vector("subgoal_xy", subgoal_xy, 2)
        cfg, p = self.config, self._p
        yaw_ref = self.yaw_reference(state, subgoal_xy)
        rows = self._obstacle_rows(state, obstacles_xyr)
        p[0:2] = subgoal_xy
        p[2] = yaw_ref
        p[8:10] = self._u_last if u_prev is None else check_vector("u_prev", u_prev, 2)
        pack_obstacles(self._obs_params, state, rows)
        self._x0[:] = state
        starts = self._start_speeds(state, rows)
        lim = cfg.limits
        best_u = None
        iters, failures, fail_status = 0, [], 0
        # the SPEED build, then (only when no start converged) the BALANCE build: same parameters
        for s in (self._solver, self._fallback):
            s.set_params(0, p)
            s.set_params(1, p)
            s.set_bound(0, b"lbx", self._x0)
            s.set_bound(0, b"ubx", self._x0)
            fail_status, best_cost = 0, math.inf
            for k, v0 in enumerate(starts):
                # the start and its rollout: x_{t+1} = step(x_t, (v0, 0))
                self._u_guess[0], self._u_guess[1] = v0, 0.0
                self._x1_guess[0] = state[0] + p[6] * v0 * math.cos(state[2])
                self._x1_guess[1] = state[1] + p[6] * v0 * math.sin(state[2])
                self._x1_guess[2] = state[2]
                s.set_out(0, b"x", self._x0)
                s.set_out(1, b"x", self._x1_guess)
                s.set_out(0, b"u", self._u_guess)
                status = s.solve_quietly()  # acados prints on every capped solve; info.message says it
                u = s.get_out(0, b"u", self._u)
                iters += s.sqp_iter()
                if status != 0 or not (math.isfinite(u[0]) and math.isfinite(u[1])):
                    why = acados_env.STATUS_TEXT.get(status, f"acados status {status}")
                    failures.append(why if status != 0 else f"non-finite action {u.tolist()}")
                    fail_status = fail_status or status
                    s.reset()
                    continue
                # HPIPM may overshoot a bound by ~tol; never command beyond the limits
                v = min(max(float(u[0]), lim.v_min_mps), lim.v_max_mps)
                w = min(max(float(u[1]), lim.omega_min_radps), lim.omega_max_radps)
                if rows and self._violation(state, rows, v) > _FEAS_TOL_M2:
                    failures.append(f"obstacle constraint violated by {self._violation(state, rows, v):.2e} m²")
                    continue
                cost = self._cost(state, subgoal_xy, yaw_ref, v, w)
                if best_u is None or cost < best_cost:
                    # the ReLU penalty as acados sees it: the L1 slacks of the soft constraints (su at stage 0)
                    relu = float(s.get_out(0, b"su", self._slack[: cfg.K]).sum()) if cfg.K else 0.0
                    best_u, best_cost, best_relu, best_start = np.array([v, w]), cost, relu, k
            if best_u is not None:
                break
        fallback = s is self._fallback
        if best_u is None:
            why = "; ".join(dict.fromkeys(failures))
            self._u_last = (0.0, 0.0)
            return np.zeros(2), SolveInfo(False, fail_status, f"FOP failed ({why}); stopping", iters,
                                          (time.perf_counter() - t0) * 1e6, starts=len(starts), fallback=True)
        msg = "ok" if not failures else f"ok ({len(failures)} of {len(starts)} starts failed: {failures[0]})"
        if fallback:
            msg += f" (solved by the {FALLBACK_HPIPM_MODE} build)"
        if len(self._obs_checked) > cfg.M:  # obstacles beyond the M slots: keep their margins too
            v = margin_keeping_speed(state, float(best_u[0]), self._obs_checked, cfg.robot_radius_m + cfg.d_safe_m,
                                     lim.v_min_mps, lim.v_max_mps, float(p[6]))
            if v != best_u[0]:
                best_u[0] = v
                best_cost = self._cost(state, subgoal_xy, yaw_ref, v, float(best_u[1]))
                best_relu = float(np.maximum(self._alpha @ best_u - self._beta, 0.0).sum())
                msg += f" (speed cut to {v:.3f} m/s by an obstacle beyond the M={cfg.M} slots)"
        self._u_last = (float(best_u[0]), float(best_u[1]))
        return best_u, SolveInfo(True, 0, msg, iters, (time.perf_counter() - t0) * 1e6, best_relu, best_cost,
                                 len(starts), best_start, fallback)
