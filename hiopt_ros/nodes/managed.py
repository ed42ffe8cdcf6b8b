"""The managed (lifecycle) node every hiopt node is, with its publishers and diagnostics.

Nodes stay thin: they declare their parameters through :class:`hiopt_ros.nodes.parameters.Params`
(one call per parameter, with a description, read once), publish on the topics with the QoS of
:mod:`hiopt_ros.nodes.topics`, convert messages with the helpers below, call the ROS-free core
(``hiopt_ros.control``, ``hiopt_ros.planning``, ``sim``) and run as a process through
:func:`hiopt_ros.nodes.process.node_main`.

Every node is a :class:`ManagedNode`, a ROS 2 lifecycle node: it is built (parameters, solver,
publishers, subscriptions, timers) at construction, and its timers only act while it is *active*.
With ``autostart`` (default) it configures and activates itself at start-up, so ``ros2 run`` and
``ros2 launch`` need nothing else; the pip-only launcher starts nodes with ``autostart: false``
and activates each one (``/<node>/change_state``, as ``ros2 lifecycle set`` does) only after its
recorder has matched that node's publishers, so the bag holds every message the node publishes.
A new node (e.g. another driver) follows the same pattern: subclass ManagedNode, declare with
Params, build, call :meth:`ManagedNode.start_lifecycle`, return early from timers when not
:attr:`~ManagedNode.active`, publish through :meth:`ManagedNode.count` for recorded topics.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from hiopt_ros.conversions import FRAME_BASE, header_ns, obstacle_markers, obstacles_from_markers, odom_state
from hiopt_ros.nodes.topics import (
    ACTIVE_KEY,
    COMMAND_QOS,
    LATCHED_QOS,
    PUBLISHED_PREFIX,
    SENSOR_QOS,
    TOPIC_CMD_VEL,
    TOPIC_GOAL,
    TOPIC_GOAL_REACHED,
    TOPIC_OBSTACLES,
    TOPIC_ODOM,
)

FLUSH_ON_DEACTIVATE_S = 1.0   # deactivation: wait this long at most for every subscriber to acknowledge


# message helpers (the conversions themselves live in hiopt_ros.conversions, shared with hiopt_ros.bags)

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


class DrivesToGoal:
    """Mixin for nodes with a :class:`GoalTracker` in ``self.task``: its goal and flag as attributes."""

    task: GoalTracker

    @property
    def goal(self) -> np.ndarray:
        return self.task.goal

    @property
    def reached(self) -> bool:
        return self.task.reached

