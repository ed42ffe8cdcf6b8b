"""What every hiopt node shares: the lifecycle base class, parameters, QoS profiles, message helpers, main().

Nodes stay thin: they declare their parameters through :class:`Params` (one call per parameter,
with a description, read once), convert messages with the helpers below and call the ROS-free core
(``hiopt_ros.control``, ``hiopt_ros.planning``, ``sim``).

Every node is a :class:`ManagedNode`, a ROS 2 lifecycle node: it is built (parameters, solver,
publishers, subscriptions, timers) at construction, and its timers only act while it is *active*.
With ``autostart`` (default) it configures and activates itself at start-up, so ``ros2 run`` and
``ros2 launch`` need nothing else; the pip-only launcher starts nodes with ``autostart: false``
and activates each one (``/<node>/change_state``, as ``ros2 lifecycle set`` does) only after its
recorder has matched that node's publishers, so the bag holds every message the node publishes.
A new node (e.g. another driver) follows the same pattern: subclass ManagedNode, declare with
Params, build, call :meth:`ManagedNode.start_lifecycle`, return early from timers when not
:attr:`~ManagedNode.active`, publish through :meth:`ManagedNode.count` for recorded topics.

QoS (chosen on purpose, publishers and subscribers use the same profiles):

==========================  =========================================  ==============================
profile                     used for                                   why
==========================  =========================================  ==============================
``SENSOR_QOS``              /odom                                      best effort, depth 5: a late
                                                                       sample is useless, a fresh one
                                                                       follows
``COMMAND_QOS``             /cmd_vel, /hiopt/subgoal, solve time       reliable, volatile, depth 50:
                                                                       a subscriber (the recorder)
                                                                       that lags up to 1 s at 50 Hz
                                                                       still gets every command
``LATCHED_QOS``             /hiopt/obstacles, /hiopt/collision,        reliable + transient local,
                            /hiopt/goal_reached                        depth 1: late joiners get the
                                                                       last value
==========================  =========================================  ==============================
"""
from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from hiopt_ros.control.model import DEFAULT_ROBOT, RobotModel
from hiopt_ros.control.params import DEFAULT_GOAL_TOLERANCE_M, DEFAULT_GOAL_XY
from hiopt_ros.conversions import (  # noqa: F401
    FRAME_BASE,
    FRAME_ODOM,
    header_ns,
    obstacle_markers,
    obstacles_from_markers,
    odom_state,
    set_yaw,
    twist_values,
    yaw_from_quaternion,
)

SENSOR_QOS = qos_profile_sensor_data
COMMAND_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)  # what rclpy's TimeSource uses

#: topic names (Nav2 conventions + the /hiopt namespace); remap them with --ros-args -r
TOPIC_ODOM = "/odom"
TOPIC_CMD_VEL = "/cmd_vel"
TOPIC_GOAL = "/goal_pose"
TOPIC_SUBGOAL = "/hiopt/subgoal"
TOPIC_OBSTACLES = "/hiopt/obstacles"
TOPIC_COLLISION = "/hiopt/collision"
TOPIC_GOAL_REACHED = "/hiopt/goal_reached"
TOPIC_SOLVE_TIME = "/hiopt/solve_time_us"
TOPIC_DIAGNOSTICS = "/diagnostics"



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


# ------------------------------------------------------------------------------------------------
# message helpers (the conversions themselves live in hiopt_ros.conversions, shared with offline.bags)

def markers_from_obstacles(obstacles_xyr: np.ndarray, stamp, frame_id: str):
    """visualization_msgs/MarkerArray: a DELETEALL, then one CYLINDER per obstacle (scale = diameter)."""
    from visualization_msgs.msg import Marker, MarkerArray

    t_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return MarkerArray(markers=obstacle_markers(obstacles_xyr, Marker, t_ns, frame_id))


def twist_type(stamped: bool):
    """Nav2's enable_stamped_cmd_vel convention: TwistStamped when true, Twist when false."""
    from geometry_msgs.msg import Twist, TwistStamped

    return TwistStamped if stamped else Twist


def make_twist(stamped: bool, v: float, omega: float, stamp=None, frame_id: str = FRAME_BASE):
    msg = twist_type(stamped)()
    twist = msg.twist if stamped else msg
    twist.linear.x, twist.angular.z = float(v), float(omega)
    if stamped:
        msg.header.frame_id = frame_id
        if stamp is not None:
            msg.header.stamp = stamp
    return msg


def key_values(values: dict[str, Any]):
    from diagnostic_msgs.msg import KeyValue

    return [KeyValue(key=k, value=(f"{v:.6g}" if isinstance(v, float) else str(v))) for k, v in values.items()]


class CommandPublisher:
    """/cmd_vel of a node that drives the robot (controller, expert): one reused message (no
    allocation per cycle), never NaN on the wire, every message counted, a last stop on demand."""

    def __init__(self, node: "ManagedNode", stamped: bool, frame_id: str) -> None:
        self.node, self.stamped = node, stamped
        self.msg = make_twist(stamped, 0.0, 0.0, frame_id=frame_id)
        self._twist = self.msg.twist if stamped else self.msg
        self.publisher = node.create_publisher(twist_type(stamped), TOPIC_CMD_VEL, COMMAND_QOS)

    def publish(self, v: float, omega: float) -> None:
        if not (math.isfinite(v) and math.isfinite(omega)):  # defence in depth
            v, omega = 0.0, 0.0
        self._twist.linear.x, self._twist.angular.z = float(v), float(omega)
        if self.stamped:
            self.msg.header.stamp = self.node.get_clock().now().to_msg()
        self.publisher.publish(self.msg)
        self.node.count(TOPIC_CMD_VEL)

    def stop_and_flush(self, timeout_s: float) -> None:
        """Publish the stop command and wait (bounded) until every subscriber acknowledged every command."""
        from rclpy.duration import Duration

        self.publish(0.0, 0.0)
        self.publisher.wait_for_all_acked(Duration(seconds=timeout_s))


def solve_time_values(times_us) -> dict[str, float]:
    """p50 / p99 / max of recent solve times [µs] for /diagnostics (empty when there are none)."""
    times = np.fromiter(times_us, dtype=float)
    if not times.size:
        return {}
    return {"solve_time_p50_us": float(np.percentile(times, 50)), "solve_time_p99_us": float(np.percentile(times, 99)),
            "solve_time_max_us": float(times.max())}


def publish_status(node, publisher, name: str, level: int, message: str, values: dict[str, Any]) -> None:
    """One diagnostic_msgs/DiagnosticArray with a single status, stamped with the node's clock."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    st = DiagnosticStatus(name=name, hardware_id="hiopt", level=level, message=message, values=key_values(values))
    arr = DiagnosticArray(status=[st])
    arr.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(arr)


PUBLISHED_PREFIX = "published:"   # diagnostics key of a node's own count of messages on a topic
ACTIVE_KEY = "active"             # diagnostics key: False in the final report a node sends when deactivated


# ------------------------------------------------------------------------------------------------
# the lifecycle base class

class ManagedNode(LifecycleNode):
    """A lifecycle node that is built at construction and acts only while active (see module docstring).

    Subclasses build everything in ``__init__``, call :meth:`start_lifecycle` last, return early
    from timer callbacks while not :attr:`active`, and may override :meth:`on_activated` (e.g. publish
    latched state) and :meth:`on_deactivating` (e.g. a last stop command, then final diagnostics).
    """

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.node_name = node_name   # the program's name (diagnostics), whatever a launch file renames it to
        self.active = False
        #: messages this node published per recorded topic (reported in /diagnostics as published:<topic>)
        self.published: dict[str, int] = {}
        #: a driver's /cmd_vel (:class:`CommandPublisher`), stopped on deactivation
        self.cmd: CommandPublisher | None = None
        #: other publishers of recorded topics, flushed on deactivation
        self.recorded_publishers: list = []

    def count(self, topic: str, n: int = 1) -> None:
        self.published[topic] = self.published.get(topic, 0) + n

    def start_lifecycle(self, autostart: bool) -> None:
        """Configure (everything is built already) and, with autostart, activate."""
        self.trigger_configure()
        if autostart:
            self.trigger_activate()
        else:
            self.get_logger().info("inactive until activated (autostart: false; ros2 lifecycle set ... activate)")

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.active = True
        self.on_activated()
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.finish(FLUSH_ON_DEACTIVATE_S)
        return super().on_deactivate(state)

    def finish(self, flush_timeout_s: float) -> None:
        """Stop acting: :meth:`on_deactivating` while still active, then the final report (active:
        False, the final published counts) on /diagnostics. Deactivation and shutdown both end here."""
        try:
            if self.active:
                self.on_deactivating(flush_timeout_s)
            self.active = False
            self.on_diagnostics()
        except Exception:  # the context is already gone (shutdown)
            self.active = False

    def diagnostics_values(self, **extra) -> dict[str, Any]:
        """The node's diagnostics values: ``active``, its counters, ``published:<topic>`` per recorded
        topic (its own count of what it published), and `extra`."""
        odom = {"repeated_odometry_stamps": self.odom_repeats} if hasattr(self, "odom_repeats") else {}
        return {ACTIVE_KEY: self.active, **getattr(self, "counters", {}), **odom,
                **{f"{PUBLISHED_PREFIX}{topic}": n for topic, n in self.published.items()}, **extra}

    def publish_diagnostics(self, what: str, level: int, status: str, values: dict[str, Any] | None = None) -> None:
        """This node's status on /diagnostics, named ``<node>: <what>``: `status` (``inactive
        (<status>)`` while inactive) and `values`, by default :meth:`diagnostics_values`."""
        publish_status(self, self.diag_pub, f"{self.node_name}: {what}", level,
                       status if self.active else f"inactive ({status})",
                       self.diagnostics_values() if values is None else values)

    def waiting_for(self, what: str, topics: list[str]) -> str:
        """The stop reason while `topics` have not delivered a message yet, with what discovery knows
        of each, which tells a node that is not there from messages that do not arrive: "waiting for
        odometry on /odom (no publisher discovered)" or "... (1 publisher discovered, no usable message yet)"."""
        known = []
        for topic in topics:
            n = self.count_publishers(topic)
            known.append(f"{topic} (no publisher discovered)" if n == 0 else
                         f"{topic} ({n} publisher{'s' if n > 1 else ''} discovered, no usable message yet)")
        return f"waiting for {what} on {' and '.join(known)}"

    def missing_robot_state(self) -> str | None:
        """While /odom or /hiopt/obstacles has not delivered a message yet, the stop reason
        (:meth:`waiting_for`); None once both have (:meth:`subscribe_robot_state`)."""
        missing = [t for t, v in ((TOPIC_ODOM, self.state), (TOPIC_OBSTACLES, self.obstacles)) if v is None]
        return self.waiting_for("its inputs", missing) if missing else None

    def subscribe_robot_state(self, watchdog) -> None:
        """/odom → :attr:`state` [x, y, yaw] (fed to `watchdog` as "odometry" unless it repeats the
        previous header.stamp), /hiopt/obstacles → :attr:`obstacles` (m, 3); both None until the first
        message."""
        from nav_msgs.msg import Odometry
        from visualization_msgs.msg import MarkerArray

        self.state: np.ndarray | None = None
        self.obstacles: np.ndarray | None = None
        self._state_watchdog = watchdog
        self.odom_received_ns = 0        # watchdog clock at the latest /odom message (fresh or not)
        self.odom_repeats = 0            # /odom messages that repeated the previous header.stamp
        self._odom_stamp_ns = 0
        self._odom_repeat_run = 0        # repeats since the last fresh message
        self.create_subscription(Odometry, TOPIC_ODOM, self._on_odom, SENSOR_QOS)
        self.create_subscription(MarkerArray, TOPIC_OBSTACLES, self._on_obstacles, LATCHED_QOS)

    def _on_odom(self, msg) -> None:
        # a frozen source re-publishing its last message (same header.stamp) is not fresh odometry:
        # it is not fed to the watchdog, so the drivers stop once odom_timeout_s has passed and say
        # "odometry frozen" (odometry_fault). Unstamped odometry (stamp 0) is taken by arrival.
        stamp_ns = header_ns(msg)
        self.state = odom_state(msg)
        self.odom_received_ns = self._state_watchdog.now_ns()
        if stamp_ns and stamp_ns == self._odom_stamp_ns:
            self.odom_repeats += 1
            self._odom_repeat_run += 1
            return
        self._odom_stamp_ns, self._odom_repeat_run = stamp_ns, 0
        self._state_watchdog.feed("odometry")

    def odometry_fault(self, age_s: float) -> tuple[str, str]:
        """(stop reason, counter) for stale odometry of age `age_s` (Watchdog.stale): "frozen_odometry"
        when messages keep arriving but repeat the last header.stamp, else "stale_odometry" (silent
        source, or the clock jumped back)."""
        wd = self._state_watchdog
        since_any_s = (wd.now_ns() - self.odom_received_ns) * 1e-9
        if age_s >= 0 and self._odom_repeat_run and 0 <= since_any_s <= wd.timeout_s("odometry"):
            return (f"odometry frozen: header.stamp has not advanced for {age_s:.2f} s "
                    f"({self._odom_repeat_run} repeated messages)", "frozen_odometry")
        return wd.describe("odometry", age_s, "odom_timeout_s"), "stale_odometry"

    def _on_obstacles(self, msg) -> None:
        self.obstacles = obstacles_from_markers(msg)

    def on_activated(self) -> None:
        """Hook: the node has just become active."""

    def on_deactivating(self, flush_timeout_s: float) -> None:
        """The node is about to stop acting (still active while this runs): a driver publishes a
        last stop, and every recorded publisher waits (at most `flush_timeout_s`) until every
        subscriber acknowledged every message (then :meth:`finish` sends the final report)."""
        from rclpy.duration import Duration

        if self.cmd is not None:
            self.cmd.stop_and_flush(flush_timeout_s)
        for publisher in self.recorded_publishers:
            publisher.wait_for_all_acked(Duration(seconds=flush_timeout_s))

    def on_diagnostics(self) -> None:
        """Publish the node's status on /diagnostics (nodes override)."""

    def watchdog_clock(self):
        """What input freshness is measured on (a function returning ns): the node's clock with
        use_sim_time (inputs are stamped in simulated time, which may run slower than the wall),
        else a steady clock (a backward jump of the system clock must not keep stale inputs alive)."""
        if self.get_parameter("use_sim_time").value:
            clock = self.get_clock()
            return lambda: clock.now().nanoseconds
        return time.monotonic_ns


EXECUTORS = ("events", "single_threaded")


class GoalTracker:
    """The task's goal for a node that drives to it (planner, expert, e2e): the ``goal_xy``
    parameter until a geometry_msgs/PoseStamped arrives on /goal_pose (in ``odom_frame``, or with
    an empty frame; others are ignored: there is no tf lookup), and the latched
    /hiopt/goal_reached flag (false again for a new goal)."""

    def __init__(self, node, goal_xy: np.ndarray, tolerance_m: float, odom_frame: str,
                 on_new_goal: Callable[[np.ndarray], None] | None = None) -> None:
        from geometry_msgs.msg import PoseStamped
        from std_msgs.msg import Bool

        self.node, self.tolerance_m, self.odom_frame, self.on_new_goal = node, tolerance_m, odom_frame, on_new_goal
        self.goal = np.asarray(goal_xy, float).copy()
        self.reached = False
        self._bool = Bool
        self.publisher = node.create_publisher(Bool, TOPIC_GOAL_REACHED, LATCHED_QOS)
        self.publisher.publish(Bool(data=False))
        node.create_subscription(PoseStamped, TOPIC_GOAL, self._on_goal, COMMAND_QOS)

    def _on_goal(self, msg) -> None:
        log = self.node.get_logger()
        goal = np.array([msg.pose.position.x, msg.pose.position.y])
        if msg.header.frame_id not in ("", self.odom_frame):
            log.error(f"ignoring a goal in frame {msg.header.frame_id!r}: goals must be in {self.odom_frame!r} "
                      f"(no tf lookup here)")
            return
        if not np.all(np.isfinite(goal)):
            log.error(f"ignoring non-finite goal {goal.tolist()}")
            return
        self.goal, self.reached = goal, False
        self.publisher.publish(self._bool(data=False))
        if self.on_new_goal is not None:
            self.on_new_goal(goal)
        log.info(f"new goal {goal.tolist()} (frame {msg.header.frame_id or self.odom_frame})")

    def check(self, state) -> bool:
        """Whether the robot at `state` is within the tolerance of the goal; latches and announces it."""
        dist = math.dist(state[:2], self.goal)
        if dist <= self.tolerance_m and not self.reached:
            self.reached = True
            self.publisher.publish(self._bool(data=True))
            self.node.get_logger().info(f"goal reached ({dist:.3f} m from {self.goal.tolist()})")
        return dist <= self.tolerance_m


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


class DrivesToGoal:
    """Mixin for nodes with a :class:`GoalTracker` in ``self.task``: its goal and flag as attributes."""

    task: GoalTracker

    @property
    def goal(self) -> np.ndarray:
        return self.task.goal

    @property
    def reached(self) -> bool:
        return self.task.reached


def declare_autostart(p: Params) -> bool:
    """Declare how the node runs: ``autostart`` (returned) and ``executor`` (kept on the node for run_node)."""
    kind = p.text("executor", "events", "rclpy executor that runs the node: events (rclpy.experimental."
                  "EventsExecutor, 2-3x less CPU per callback) or single_threaded")
    p.require(kind in EXECUTORS, "executor", f"must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    p._node.executor_kind = kind
    return p.flag("autostart", True, "activate at start-up (false: wait for a lifecycle 'activate' transition)")


# ------------------------------------------------------------------------------------------------
# main()

SPIN_TIMEOUT_S = 0.1   # longest a node waits in rcl before it looks at a pending SIGINT/SIGTERM
FLUSH_ON_DEACTIVATE_S = 1.0   # deactivation: wait this long at most for every subscriber to acknowledge
FLUSH_ON_SHUTDOWN_S = 0.2     # SIGINT/SIGTERM: the same, shorter (Ctrl-C must end a node within 2 s)
EXIT_DEADLINE_S = 1.0         # a node process is gone this long after SIGINT/SIGTERM, whatever its clean-up waits on


class StopSignal:
    """SIGINT / SIGTERM recorded as a flag that the owner's loop checks between executor turns.

    A handler that raised KeyboardInterrupt could fire inside a C extension call (e.g. rclpy's
    deserialisation, where pybind11 turns it into a TypeError with a traceback and exit status 1)
    or in the middle of a callback; a flag is acted on at a safe point. A second signal during the
    clean-up changes nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> "StopSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __bool__(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise KeyboardInterrupt (at this safe point) when a stop was requested."""
        if self.signum is not None:
            raise KeyboardInterrupt


def node_main(factory: Callable[[], Any]) -> Callable[[list[str] | None], int]:
    """The console-script entry point of a node: ``main(args=None) -> exit status`` (:func:`run_node`)."""
    def main(args: list[str] | None = None) -> int:
        return run_node(factory, args)
    main.__doc__ = f"Run {getattr(factory, '__name__', 'the node')} until SIGINT/SIGTERM; the exit status."
    return main


class ExitDeadline:
    """Ends the process `deadline_s` after the first SIGINT/SIGTERM if the clean shutdown has not.

    The clean path (the spin loop's turn, the controller's last stop and its flush, the DDS
    clean-up, the interpreter's exit) takes about 0.3-0.5 s, also next to two busy processes on 2
    cores; on a machine so overloaded that it has not finished by the deadline, the process says
    which :attr:`step` it was in and ends with :func:`os._exit` (status :attr:`code`), so Ctrl-C
    never waits for ``ros2 launch`` to escalate to SIGTERM/SIGKILL. The clock starts when the
    signal arrives, not when the main thread next runs Python code (it may be inside a callback or
    a DDS call): a daemon thread reads the signal's wake-up descriptor (:func:`signal.set_wakeup_fd`).
    It cannot act once the interpreter has begun its final teardown (threads no longer run then).
    Needs :class:`StopSignal` (or another Python handler) installed for SIGINT/SIGTERM.
    """

    def __init__(self, deadline_s: float = EXIT_DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.step = "spinning"
        self.code = 0

    def arm(self) -> "ExitDeadline":
        import os
        import threading

        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_fd,), name="exit-deadline", daemon=True).start()
        return self

    def _watch(self, read_fd: int) -> None:
        import os

        stops = {int(signal.SIGINT), int(signal.SIGTERM)}
        while not stops.intersection(os.read(read_fd, 64)):
            pass
        time.sleep(self.deadline_s)
        print(f"[WARN] still '{self.step}' {self.deadline_s:g} s after the stop signal (an overloaded machine?): "
              f"exiting now", file=sys.stderr, flush=True)
        os._exit(self.code)


def run_node(factory: Callable[[], Any], args: list[str] | None = None) -> int:
    """:func:`_run_node`, then the garbage it leaves collected while threads still run, and what
    is left frozen: the interpreter's teardown then skips its own collections over every live
    object, which for a planner that loaded torch halves the time from return to exit (0.33 → 0.18 s).
    The node, its executor and the rclpy context are freed (and their DDS entities destroyed) before."""
    import gc

    code = _run_node(factory, args)
    gc.collect()
    gc.freeze()
    return code


def _run_node(factory: Callable[[], Any], args: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin until SIGINT/SIGTERM, then let the node stop cleanly.

    rclpy's own signal handler would shut the context down before the node could publish its last
    message (a stop command), so SIGINT and SIGTERM are recorded by :class:`StopSignal` instead
    and the spin loop ends at the next turn. The executor waits at most :data:`SPIN_TIMEOUT_S` at
    a time: a node whose timers run on /clock still exits promptly when the clock source is gone
    (``rclpy.spin`` would block until a timer or message woke it).
    A :class:`ParameterError` at start-up prints the message and exits with status 2.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.experimental import EventsExecutor
    from rclpy.signals import SignalHandlerOptions

    argv = list(args if args is not None else sys.argv)
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    Params.help_requested = "-h" in own or "--help" in own
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopSignal().install()
    deadline = ExitDeadline().arm()
    node = None
    code = 0
    try:
        node = factory()
        # the events executor (C++) costs 2-3x less CPU per callback than rclpy's Python one: the
        # headroom a 500 Hz controller needs (python -m hiopt_ros.bench --node-rate)
        events = getattr(node, "executor_kind", "events") == "events"
        executor = EventsExecutor() if events else SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not stop:
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except HelpRequested as help_:
        print(node_help(help_.node_name, help_.declared), flush=True)
    except ParameterError as exc:
        print(f"[FATAL] {exc}", file=sys.stderr, flush=True)
        code = deadline.code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            try:
                if hasattr(node, "finish"):
                    # the controller's last stop and final counts; a short wait for acknowledgements,
                    # as a subscriber that died (e.g. the sim) never acknowledges
                    deadline.step = "publishing its last messages"
                    node.finish(FLUSH_ON_SHUTDOWN_S)
                if hasattr(node, "shutdown"):
                    deadline.step = "shutting down"
                    node.shutdown()
            finally:
                deadline.step = "destroying the node"
                node.destroy_node()
        deadline.step = "shutting down rclpy"
        rclpy.try_shutdown()
        deadline.step = "exiting the interpreter"
    return code
