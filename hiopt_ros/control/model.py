"""The unicycle (differential-drive) model of Eq. 32b–d and the robot model every consumer shares.

One source of truth for dynamics, limits and :class:`RobotModel` (robot radius, d_safe, Ts, input
bounds, obstacle slots): the nodes declare it from here, the FOP, the MPC, the course, the planning
policies and the offline tools take their defaults from :data:`DEFAULT_ROBOT`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

STATE_NAMES = ("x_m", "y_m", "yaw_rad")
INPUT_NAMES = ("v_mps", "omega_radps")


@dataclass(frozen=True)
class UnicycleLimits:
    """Input bounds (32e–f)."""

    v_min_mps: float = 0.0
    v_max_mps: float = 1.0
    omega_min_radps: float = -1.5
    omega_max_radps: float = 1.5

    def __post_init__(self) -> None:
        vals = (self.v_min_mps, self.v_max_mps, self.omega_min_radps, self.omega_max_radps)
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"UnicycleLimits must be finite, got {vals}")
        if self.v_min_mps > self.v_max_mps:
            raise ValueError(f"v_min_mps ({self.v_min_mps}) > v_max_mps ({self.v_max_mps})")
        if self.omega_min_radps > self.omega_max_radps:
            raise ValueError(f"omega_min_radps ({self.omega_min_radps}) > omega_max_radps ({self.omega_max_radps})")
        if not (self.v_min_mps <= 0.0 <= self.v_max_mps and self.omega_min_radps <= 0.0 <= self.omega_max_radps):
            raise ValueError("input bounds must contain the stop command (0, 0)")

    @property
    def lower(self) -> np.ndarray:
        return np.array([self.v_min_mps, self.omega_min_radps])

    @property
    def upper(self) -> np.ndarray:
        return np.array([self.v_max_mps, self.omega_max_radps])


@dataclass(frozen=True)
class RobotModel:
    """The robot as the controller (FOP, Eq. 32), the expert (MPC), the simulator, the planner and
    the offline tools all see it. Declared once: under ``/**`` in config/nav.yaml (flat parameter
    names, :data:`PARAMETERS`), defaults here.
    """

    robot_radius_m: float = 0.3      # radius of the circle enclosing the robot footprint [m]
    d_safe_m: float = 0.1            # clearance kept between robot circle and obstacle surfaces (32g) [m]
    Ts_s: float = 0.1                # prediction step of the FOP / MPC model (not the control period) [s]
    limits: UnicycleLimits = field(default_factory=UnicycleLimits)   # input bounds (32e–f)
    max_obstacles: int = 4           # obstacle slots M a solver is built with (the nearest M are used)

    #: the flat ROS parameter names of the model, in declaration order
    PARAMETERS = ("robot_radius_m", "d_safe_m", "Ts_s", "v_min_mps", "v_max_mps", "omega_min_radps",
                  "omega_max_radps", "max_obstacles")

    def __post_init__(self) -> None:
        for name in ("robot_radius_m", "d_safe_m", "Ts_s"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
        if self.robot_radius_m <= 0 or self.Ts_s <= 0:
            raise ValueError(f"robot_radius_m and Ts_s must be > 0, got {self.robot_radius_m}, {self.Ts_s}")
        if isinstance(self.max_obstacles, bool) or not isinstance(self.max_obstacles, int) or self.max_obstacles < 0:
            raise ValueError(f"max_obstacles must be an integer >= 0, got {self.max_obstacles!r}")

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any]) -> "RobotModel":
        """The model from flat parameters (a parameter file's ``/**`` section); missing ones keep
        their defaults, other keys are ignored. Raises ValueError naming a bad value."""
        d = DEFAULT_ROBOT
        bounds = {k: float(values.get(k, getattr(d.limits, k))) for k in PARAMETER_BOUNDS}
        max_obstacles = values.get("max_obstacles", d.max_obstacles)
        if isinstance(max_obstacles, float) and max_obstacles.is_integer():
            max_obstacles = int(max_obstacles)
        return cls(robot_radius_m=float(values.get("robot_radius_m", d.robot_radius_m)),
                   d_safe_m=float(values.get("d_safe_m", d.d_safe_m)), Ts_s=float(values.get("Ts_s", d.Ts_s)),
                   limits=UnicycleLimits(**bounds), max_obstacles=max_obstacles)

    def parameters(self) -> dict[str, float | int]:
        """The flat ROS parameters of this model ({name: value}, the names of :data:`PARAMETERS`)."""
        lim = self.limits
        return {"robot_radius_m": self.robot_radius_m, "d_safe_m": self.d_safe_m, "Ts_s": self.Ts_s,
                "v_min_mps": lim.v_min_mps, "v_max_mps": lim.v_max_mps, "omega_min_radps": lim.omega_min_radps,
                "omega_max_radps": lim.omega_max_radps, "max_obstacles": self.max_obstacles}

    def solver_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of FopConfig and MpcConfig that this model fixes (Ts_s, M, limits, radius, d_safe)."""
        return {"Ts_s": self.Ts_s, "M": self.max_obstacles, "limits": self.limits,
                "robot_radius_m": self.robot_radius_m, "d_safe_m": self.d_safe_m}


PARAMETER_BOUNDS = ("v_min_mps", "v_max_mps", "omega_min_radps", "omega_max_radps")
#: the defaults of the robot model (the one place they are written)
DEFAULT_ROBOT = RobotModel()


def wrap_angle(a):
    """Angle(s) wrapped into [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi


def unicycle_step(state, u, dt_s: float) -> np.ndarray:
    """x_{t+1} = x_t + dt [v cos yaw, v sin yaw, omega] (Eq. 32b–d, forward Euler)."""
    x, y, yaw = np.asarray(state, dtype=float)
    v, w = np.asarray(u, dtype=float)
    return np.array([x + dt_s * v * math.cos(yaw), y + dt_s * v * math.sin(yaw), yaw + dt_s * w])


def casadi_step(state, u, dt_s):
    """The same step as :func:`unicycle_step` on CasADi symbols (for acados and IPOPT models)."""
    import casadi as ca

    return ca.vertcat(state[0] + dt_s * u[0] * ca.cos(state[2]),
                      state[1] + dt_s * u[0] * ca.sin(state[2]),
                      state[2] + dt_s * u[1])


def check_vector(name: str, value, size: int) -> np.ndarray:
    """A finite float vector of the given size, else ValueError naming the argument."""
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {size} numbers, got {value!r}") from None
    if arr.shape != (size,):
        raise ValueError(f"{name} must have {size} entries, got shape {np.shape(value)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def finite_floats(name: str, value, size: int) -> list[float]:
    """:func:`check_vector`'s values as Python floats (same errors); a float64 array of shape (size,)
    skips the conversion (the hot paths' case: the control loop, the planner)."""
    if type(value) is np.ndarray and value.shape == (size,) and value.dtype == np.float64:
        vals = value.tolist()
        for val in vals:
            if not math.isfinite(val):
                break
        else:
            return vals
    return check_vector(name, value, size).tolist()


def check_obstacles(value, max_count: int | None = None) -> np.ndarray:
    """Obstacles as an (m, 3) array of finite [x_m, y_m, radius_m] rows, radius >= 0."""
    if value is None:
        return np.zeros((0, 3))
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"obstacles_xyr must be an (m, 3) array of [x, y, r] numbers, got {value!r:.80}") from None
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim == 1 and arr.size % 3 == 0:
        arr = arr.reshape(-1, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"obstacles_xyr must be an (m, 3) array of [x, y, r] rows, got shape {np.shape(value)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("obstacles_xyr must be finite")
    if np.any(arr[:, 2] < 0):
        raise ValueError("obstacles_xyr: radii must be >= 0")
    if max_count is not None and arr.shape[0] > max_count:
        raise ValueError(f"obstacles_xyr has {arr.shape[0]} rows but the solver was built for at most "
                         f"{max_count} (raise M in the config; that is a structural change)")
    return arr


PARK_OFFSET_M = 20.0  # unused obstacle slots of a solver sit this far from the robot (in x and y), radius 0


_VECTORIZE_ABOVE = 16   # obstacle count above which numpy beats the plain-float loop (1,000: 1.6 ms -> ~0.1 ms)


def nearest_obstacles(state, obstacles: np.ndarray, margin_m: float, max_count: int,
                      relax_inside: bool, reach_m: float = math.inf) -> list[tuple[float, float, float]]:
    """The ≤ max_count obstacles nearest to the robot as (x, y, r_eff), r_eff = r + margin_m, nearest
    first when there are more than max_count (ties by x, y, r_eff), else in the given order.

    With relax_inside, an obstacle whose margin already contains the robot gets r_eff equal to the
    current distance ("get no closer than now"), so a one-step problem stays feasible. `reach_m`
    leaves out obstacles whose margin is farther than that: a step of at most reach_m cannot enter
    them (the safety filter passes Ts·max|v|). Plain floats for a handful of rows (cheaper than numpy
    on the hot path); numpy above :data:`_VECTORIZE_ABOVE`, so a solve stays cheap with 1,000.
    """
    x, y = float(state[0]), float(state[1])
    if len(obstacles) > _VECTORIZE_ABOVE:
        obs = np.asarray(obstacles, dtype=float)
        ox, oy, r = obs[:, 0], obs[:, 1], obs[:, 2]
        dist = np.hypot(ox - x, oy - y)
        gap = dist - r - margin_m
        r_eff = r + margin_m
        if relax_inside:
            r_eff = np.minimum(r_eff, dist * (1 - 1e-9))
        idx = np.flatnonzero(gap <= reach_m) if math.isfinite(reach_m) else np.arange(len(obs))
        if idx.size > max_count:
            if max_count == 0:
                return []
            # the max_count smallest gaps (and every tie of the last one), then the exact order
            kth = np.partition(gap[idx], max_count - 1)[max_count - 1]
            idx = idx[gap[idx] <= kth]
            idx = idx[np.lexsort((r_eff[idx], oy[idx], ox[idx], gap[idx]))[:max_count]]
        return list(zip(ox[idx].tolist(), oy[idx].tolist(), r_eff[idx].tolist()))
    rows = []
    for ox, oy, r in obstacles.tolist():
        dist = math.hypot(ox - x, oy - y)
        if dist - r - margin_m > reach_m:
            continue
        r_eff = r + margin_m
        if relax_inside:
            r_eff = min(r_eff, dist * (1 - 1e-9))
        rows.append((dist - r - margin_m, ox, oy, r_eff))
    if len(rows) > max_count:
        rows.sort()
        rows = rows[:max_count]
    return [row[1:] for row in rows]


def pack_obstacles(dest: np.ndarray, state, rows: list[tuple[float, float, float]]) -> None:
    """Write obstacle rows into a solver's (M, 3) parameter block, parking the unused slots."""
    dest[:] = (float(state[0]) + PARK_OFFSET_M, float(state[1]) + PARK_OFFSET_M, 0.0)
    if rows:
        dest[: len(rows)] = rows
