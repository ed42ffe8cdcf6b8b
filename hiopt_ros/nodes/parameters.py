"""Node parameters: declared with a default, a description and a check, read once into typed configs.

Every node declares through :class:`Params`; a bad value is collected and reported with the
others as ``<node>.<param>: <what is wrong>`` (:class:`ParameterError`), ``--help`` lists them
(:class:`HelpRequested`, :func:`node_help`). The shared groups (robot model, frames, goal, the
node and driver basics) are declared by one function each, so every node reads them alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, ParameterType

from hiopt_ros.control.model import DEFAULT_ROBOT, RobotModel
from hiopt_ros.control.params import DEFAULT_GOAL_TOLERANCE_M, DEFAULT_GOAL_XY
from hiopt_ros.conversions import FRAME_BASE, FRAME_ODOM

#: the rclpy executors a node may run on (parameter ``executor``; :func:`hiopt_ros.nodes.process.run_node`)
EXECUTORS = ("events", "single_threaded")


class ParameterError(ValueError):
    """A node parameter has a bad value; the message names the node and the parameter."""


class HelpRequested(Exception):
    """``--help`` on a node's command line: raised by :meth:`Params.check` once every parameter is
    declared, before the node builds anything; :func:`run_node` prints :func:`node_help`."""

    def __init__(self, node_name: str, declared: list[tuple[str, Any, str]]) -> None:
        super().__init__(node_name)
        self.node_name, self.declared = node_name, declared


def node_help(node_name: str, declared: list[tuple[str, Any, str]]) -> str:
    """What ``ros2 run hiopt_ros <node> --help`` prints: usage and every parameter with its default."""
    width = max((len(name) for name, _, _ in declared), default=0)
    lines = [f"usage: ros2 run hiopt_ros {node_name} [--ros-args [-p NAME:=VALUE ...] [--params-file FILE]]",
             "", f"{node_name}'s parameters (config/nav.yaml: `{node_name}:` and `/**`), with their defaults:"]
    lines += [f"  {name:<{width}}  {default!r}: {description}" for name, default, description in declared]
    return "\n".join(lines)


class Params:
    """Declare-and-read helper: every parameter gets a default, a description and a check.

    Errors are collected and raised together by :meth:`check` so a user sees every bad value at
    once, each as ``<node>.<param>: <what is wrong>``.
    """

    #: set by :func:`run_node` for ``--help``: :meth:`check` then raises :class:`HelpRequested`
    help_requested = False

    def __init__(self, node) -> None:
        self._node = node
        self._errors: list[str] = []
        self.declared: list[tuple[str, Any, str]] = []   # (name, default, description), in order

    def _declare(self, name: str, default: Any, description: str, ptype: int | None, dynamic: bool,
                 read_only: bool = True) -> Any:
        # start-up values are read once, so they are read-only: `ros2 param set` is refused with a reason
        self.declared.append((name, default, description))
        desc = ParameterDescriptor(description=description, dynamic_typing=dynamic, read_only=read_only)
        if ptype is not None:
            desc.type = ptype
        try:
            return self._node.declare_parameter(name, default, desc).value
        except Exception as exc:  # wrong type in the parameter file, ...
            self.error(name, f"cannot be read ({type(exc).__name__}: {exc})")
            return default if not isinstance(default, list) else list(default)

    def error(self, name: str, what: str) -> None:
        self._errors.append(f"{self._node.get_name()}.{name}: {what}")

    def number(self, name: str, default: float, description: str, *, min_value: float | None = None,
               max_value: float | None = None, strict_min: bool = False) -> float:
        """A finite float (ints in the YAML are accepted) within [min_value, max_value]."""
        raw = self._declare(name, float(default), description, None, True)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            self.error(name, f"must be a number, got {raw!r}")
            return float(default)
        val = float(raw)
        if not math.isfinite(val):
            self.error(name, f"must be finite, got {val}")
        elif min_value is not None and (val <= min_value if strict_min else val < min_value):
            self.error(name, f"must be {'>' if strict_min else '>='} {min_value}, got {val}")
        elif max_value is not None and val > max_value:
            self.error(name, f"must be <= {max_value}, got {val}")
        return val

    def positive(self, name: str, default: float, description: str) -> float:
        """A finite float > 0 (rates, timeouts, distances)."""
        return self.number(name, default, description, min_value=0.0, strict_min=True)

    def integer(self, name: str, default: int, description: str, *, min_value: int | None = None) -> int:
        raw = self._declare(name, int(default), description, None, True)
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.error(name, f"must be an integer, got {raw!r}")
            return int(default)
        if min_value is not None and raw < min_value:
            self.error(name, f"must be >= {min_value}, got {raw}")
        return int(raw)

    def flag(self, name: str, default: bool, description: str) -> bool:
        raw = self._declare(name, bool(default), description, ParameterType.PARAMETER_BOOL, False)
        return bool(raw)

    def text(self, name: str, default: str, description: str, *, read_only: bool = True) -> str:
        """A string; ``read_only=False`` for the few parameters a node acts on at run time."""
        raw = self._declare(name, str(default), description, ParameterType.PARAMETER_STRING, False, read_only)
        return str(raw)

    def vector(self, name: str, default: Sequence[float], description: str, *,
               size: int | None = None, multiple_of: int | None = None) -> np.ndarray:
        """A finite float array; `size` exact length or `multiple_of` (e.g. 3 for [x, y, r] triples)."""
        # dynamic typing: YAML gives INTEGER_ARRAY for [0, 0, 0] and an untyped [] for an empty list
        raw = self._declare(name, [float(v) for v in default], description, None, True)
        if raw is None:
            raw = []
        if isinstance(raw, (str, bytes)) or not hasattr(raw, "__len__"):
            self.error(name, f"must be a list of numbers, got {raw!r}")
            return np.asarray(default, dtype=float)
        try:
            arr = np.asarray(list(raw), dtype=float).reshape(-1)
        except (TypeError, ValueError):
            self.error(name, f"must be a list of numbers, got {raw!r}")
            return np.asarray(default, dtype=float)
        if not np.all(np.isfinite(arr)):
            self.error(name, f"must be finite, got {arr.tolist()}")
        elif size is not None and arr.size != size:
            self.error(name, f"must have {size} entries, got {arr.size}")
        elif multiple_of is not None and arr.size % multiple_of:
            self.error(name, f"must hold a multiple of {multiple_of} numbers, got {arr.size}")
        return arr

    @property
    def has_errors(self) -> bool:
        return bool(self._errors)

    def require(self, ok: bool, name: str, what: str) -> None:
        """Cross-parameter check (e.g. min <= max)."""
        if not ok:
            self.error(name, what)

    def check(self) -> None:
        if Params.help_requested:
            raise HelpRequested(self._node.get_name(), self.declared)
        if self._errors:
            raise ParameterError("invalid parameter(s):\n  " + "\n  ".join(self._errors))


def declare_robot_model(p: Params) -> RobotModel:
    """Declare the shared robot model (config/nav.yaml `/**`, defaults of RobotModel) and read it.

    Every node calls this, so sim, planner, controller and expert see one robot: its footprint
    radius, d_safe (32g), the prediction step Ts, the input bounds (32e–f) and the obstacle slots M.
    """
    d = DEFAULT_ROBOT
    values = dict(
        robot_radius_m=p.positive("robot_radius_m", d.robot_radius_m, "radius of the circle enclosing the robot [m]"),
        d_safe_m=p.number("d_safe_m", d.d_safe_m, "clearance kept from obstacles (32g) [m]", min_value=0.0),
        Ts_s=p.positive("Ts_s", d.Ts_s, "prediction step of the FOP / MPC model (not the control period) [s]"),
        v_min_mps=p.number("v_min_mps", d.limits.v_min_mps, "lower speed bound (32e) [m/s]", max_value=0.0),
        v_max_mps=p.positive("v_max_mps", d.limits.v_max_mps, "upper speed bound (32e) [m/s]"),
        omega_min_radps=p.number("omega_min_radps", d.limits.omega_min_radps, "lower turn-rate bound (32f) [rad/s]",
                                 max_value=0.0),
        omega_max_radps=p.positive("omega_max_radps", d.limits.omega_max_radps, "upper turn-rate bound (32f) [rad/s]"),
        max_obstacles=p.integer("max_obstacles", d.max_obstacles,
                                "obstacle slots M the solvers are built with (the nearest M are used)", min_value=0),
    )
    try:
        return RobotModel.from_parameters(values)
    except ValueError as exc:  # the per-parameter checks above already named a bad value
        if not p.has_errors:
            p.error("robot model", str(exc))
        return d


def declare_frames(p: Params) -> tuple[str, str]:
    """Declare the frames every node agrees on (config/nav.yaml `/**`; defaults in hiopt_ros.conversions).

    Returns (odom_frame, base_frame): the fixed frame of odometry, subgoals, goals and obstacles,
    and the robot body frame (REP 105).
    """
    odom = p.text("odom_frame", FRAME_ODOM, "fixed frame of odometry, subgoals, goals and obstacles")
    base = p.text("base_frame", FRAME_BASE, "robot body frame (child of odom_frame)")
    p.require(bool(odom) and bool(base) and odom != base, "odom_frame",
              f"odom_frame and base_frame must be two different non-empty names, got {odom!r}, {base!r}")
    return odom, base


def declare_goal(p: Params) -> dict:
    """Declare the task's goal (config/nav.yaml `/**`): the keyword arguments of a :class:`GoalConfig`,
    goal_xy [m] and goal_tolerance_m [m]."""
    return dict(goal_xy=p.vector("goal_xy", DEFAULT_GOAL_XY, "goal [x_m, y_m] until one arrives on /goal_pose", size=2),
                goal_tolerance_m=p.positive("goal_tolerance_m", DEFAULT_GOAL_TOLERANCE_M,
                                            "goal reached within this distance [m]"))


@dataclass(frozen=True)
class NodeConfig:
    """What every node declares the same way (:func:`declare_node`); each node's config extends it."""

    diagnostics_rate_hz: float
    autostart: bool
    odom_frame: str
    base_frame: str
    model: RobotModel


def declare_node(p: Params, diagnostics_rate_hz: float = 1.0,
                 diagnostics_meaning: str = "/diagnostics publication rate") -> dict:
    """Declare the :class:`NodeConfig` parameters: the keyword arguments of a NodeConfig subclass."""
    odom_frame, base_frame = declare_frames(p)
    return dict(diagnostics_rate_hz=p.positive("diagnostics_rate_hz", diagnostics_rate_hz,
                                               f"{diagnostics_meaning} [Hz]"),
                autostart=declare_autostart(p), odom_frame=odom_frame, base_frame=base_frame,
                model=declare_robot_model(p))


@dataclass(frozen=True)
class GoalConfig:
    """The task's goal (:func:`declare_goal`), for the nodes that know it."""

    goal_xy: np.ndarray
    goal_tolerance_m: float


@dataclass(frozen=True)
class DriverConfig(NodeConfig):
    """What every node that commands the robot (controller, expert, e2e) declares the same way;
    each node's own config extends it (:func:`declare_driver`)."""

    control_rate_hz: float
    enable_stamped_cmd_vel: bool
    odom_timeout_s: float


def declare_driver(p: Params, rate_meaning: str, odom_meaning: str = "stop when /odom is older than this [s]") -> dict:
    """Declare the :class:`DriverConfig` parameters; the keyword arguments of a DriverConfig subclass."""
    return dict(
        **declare_node(p),
        control_rate_hz=p.positive("control_rate_hz", 50.0, f"{rate_meaning} [Hz]"),
        enable_stamped_cmd_vel=p.flag("enable_stamped_cmd_vel", False,
                                      "publish geometry_msgs/TwistStamped (true) or Twist (false), as Nav2"),
        odom_timeout_s=p.positive("odom_timeout_s", 0.5, odom_meaning))



def declare_autostart(p: Params) -> bool:
    """Declare how the node runs: ``autostart`` (returned) and ``executor`` (kept on the node for run_node)."""
    kind = p.text("executor", "events", "rclpy executor that runs the node: events (rclpy.experimental."
                  "EventsExecutor, 2-3x less CPU per callback) or single_threaded")
    p.require(kind in EXECUTORS, "executor", f"must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    p._node.executor_kind = kind
    return p.flag("autostart", True, "activate at start-up (false: wait for a lifecycle 'activate' transition)")

