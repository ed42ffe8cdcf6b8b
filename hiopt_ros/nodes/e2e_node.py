"""e2e_node: the end-to-end RL baseline driving the robot directly (no subgoal, no optimization layer).

It replaces planner + controller: every ``decision_rate_hz`` period it maps the observation of
:mod:`hiopt_ros.planning.torch_policy` (goal and nearest obstacles in the body frame) through the
trained end-to-end TorchScript policy (``python -m sim.train --method e2e``) to (v, ω), and it
publishes that command on /cmd_vel at ``control_rate_hz`` until the next decision — the zero-order
hold the policy was trained with (sim.nav_env: one env step = one planner period). Same safety
rules as the controller: stale or missing inputs, a non-finite state or a failing policy give the
stop command, logged and counted. At the goal it publishes ``true`` on /hiopt/goal_reached and holds
still. A lifecycle node like every hiopt node (hiopt_ros.nodes.common.ManagedNode): silent until
active, a last stop when deactivated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from std_msgs.msg import Bool

from hiopt_ros.control.model import RobotModel

from . import common as c
from .watchdog import Watchdog

NAME = "e2e_node"


@dataclass(frozen=True)
class E2eConfig:
    policy_checkpoint: str
    control_rate_hz: float
    decision_rate_hz: float
    enable_stamped_cmd_vel: bool
    goal_xy: np.ndarray
    goal_tolerance_m: float
    odom_timeout_s: float
    diagnostics_rate_hz: float
    autostart: bool
    odom_frame: str
    base_frame: str
    model: RobotModel


class E2eNode(c.ManagedNode):
    """End-to-end policy → /cmd_vel; see the module docstring and README's topic table."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NAME, **kwargs)
        p = c.Params(self)
        goal_xy, goal_tolerance_m = c.declare_goal(p)
        odom_frame, base_frame = c.declare_frames(p)
        self.cfg = E2eConfig(
            policy_checkpoint=p.text("policy_checkpoint", "", "end-to-end TorchScript policy (.pt, action (v, ω))"),
            control_rate_hz=p.number("control_rate_hz", 50.0, "/cmd_vel publication rate [Hz]",
                                     min_value=0.0, strict_min=True),
            decision_rate_hz=p.number("decision_rate_hz", 10.0,
                                      "policy evaluation rate [Hz] (the planner rate it was trained at)",
                                      min_value=0.0, strict_min=True),
            enable_stamped_cmd_vel=p.flag("enable_stamped_cmd_vel", False,
                                          "publish geometry_msgs/TwistStamped (true) or Twist (false), as Nav2"),
            goal_xy=goal_xy,
            goal_tolerance_m=goal_tolerance_m,
            odom_timeout_s=p.number("odom_timeout_s", 0.5, "stop when /odom is older than this [s]",
                                    min_value=0.0, strict_min=True),
            diagnostics_rate_hz=p.number("diagnostics_rate_hz", 1.0, "/diagnostics publication rate [Hz]",
                                         min_value=0.0, strict_min=True),
            autostart=c.declare_autostart(p),
            odom_frame=odom_frame,
            base_frame=base_frame,
            model=c.declare_robot_model(p),
        )
        cfg = self.cfg
        ratio = cfg.control_rate_hz / cfg.decision_rate_hz
        p.require(ratio >= 1 and abs(ratio - round(ratio)) < 1e-9, "decision_rate_hz",
                  f"control_rate_hz ({cfg.control_rate_hz:g}) must be an integer multiple of it, got "
                  f"{cfg.decision_rate_hz:g}")
        self.policy = None
        if not cfg.policy_checkpoint:
            p.error("policy_checkpoint", "required: the end-to-end policy to run (python -m sim.train --method e2e)")
        else:
            from hiopt_ros.planning.torch_policy import TorchCommandPolicy
            try:
                self.policy = TorchCommandPolicy.load(cfg.policy_checkpoint, cfg.model.limits.lower,
                                                      cfg.model.limits.upper)
            except Exception as exc:
                p.error("policy_checkpoint", f"cannot load {cfg.policy_checkpoint!r}: {exc}")
        p.check()

        self.hold_cycles = int(round(ratio))
        self.goal = cfg.goal_xy.copy()
        self.reached = False
        self.state: np.ndarray | None = None
        self.obstacles: np.ndarray | None = None
        self.command = np.zeros(2)
        self.cycle = 0
        self.watchdog = Watchdog(self.watchdog_clock(), {"odometry": cfg.odom_timeout_s})
        self.counters = {"cycles": 0, "decisions": 0, "stops": 0, "policy_failures": 0, "stale_odometry": 0,
                         "waiting": 0}

        self.cmd = c.CommandPublisher(self, cfg.enable_stamped_cmd_vel, cfg.base_frame)
        self.diag_pub = self.create_publisher(DiagnosticArray, c.TOPIC_DIAGNOSTICS, 10)
        self.reached_pub = self.create_publisher(Bool, c.TOPIC_GOAL_REACHED, c.LATCHED_QOS)
        self.create_subscription(Odometry, c.TOPIC_ODOM, self.on_odom, c.SENSOR_QOS)
        self.create_subscription(PoseStamped, c.TOPIC_GOAL, self.on_goal, c.COMMAND_QOS)
        from visualization_msgs.msg import MarkerArray
        self.create_subscription(MarkerArray, c.TOPIC_OBSTACLES, self.on_obstacles, c.LATCHED_QOS)
        self.create_timer(1.0 / cfg.control_rate_hz, self.on_control)
        self.create_timer(1.0 / cfg.diagnostics_rate_hz, self.on_diagnostics)
        self.reached_pub.publish(Bool(data=False))
        self.get_logger().info(f"end-to-end policy {cfg.policy_checkpoint}: decides at {cfg.decision_rate_hz:g} Hz, "
                               f"publishes /cmd_vel at {cfg.control_rate_hz:g} Hz; goal {self.goal.tolist()}")
        self.start_lifecycle(cfg.autostart)

    def on_odom(self, msg: Odometry) -> None:
        self.state = c.odom_state(msg)
        self.watchdog.feed("odometry")

    def on_obstacles(self, msg) -> None:
        self.obstacles = c.obstacles_from_markers(msg)

    def on_goal(self, msg: PoseStamped) -> None:
        goal = np.array([msg.pose.position.x, msg.pose.position.y])
        if msg.header.frame_id not in ("", self.cfg.odom_frame):
            self.get_logger().error(f"ignoring a goal in frame {msg.header.frame_id!r}: goals must be in "
                                    f"{self.cfg.odom_frame!r} (no tf lookup here)")
            return
        if np.all(np.isfinite(goal)):
            self.goal, self.reached = goal, False
            self.reached_pub.publish(Bool(data=False))
            self.get_logger().info(f"new goal {goal.tolist()}")

    def on_control(self) -> None:
        if not self.active:
            return
        self.counters["cycles"] += 1
        reason, counter = "", None
        if self.state is None or self.obstacles is None:
            reason, counter = "waiting for /odom and /hiopt/obstacles", "waiting"
        elif self.watchdog.stale():
            reason, counter = f"odometry stale ({self.watchdog.age_s('odometry'):.2f} s)", "stale_odometry"
        elif not np.all(np.isfinite(self.state)):
            reason, counter = f"non-finite state {self.state.tolist()}", "policy_failures"
        elif math.dist(self.state[:2], self.goal) <= self.cfg.goal_tolerance_m:
            if not self.reached:
                self.reached = True
                self.reached_pub.publish(Bool(data=True))
                self.get_logger().info("goal reached")
            self.command[:] = 0.0
        elif self.cycle % self.hold_cycles == 0:
            try:
                self.command = self.policy.command(self.state, self.goal, self.obstacles,
                                                   self.cfg.model.robot_radius_m)
                self.counters["decisions"] += 1
            except ValueError as exc:
                reason, counter = f"policy failed: {exc}", "policy_failures"
        if reason:
            self.command[:] = 0.0
            self.cycle = 0        # decide afresh as soon as the inputs are back
        else:
            self.cycle += 1
        self.cmd.publish(float(self.command[0]), float(self.command[1]))
        if counter is not None:
            self.counters[counter] += 1
        if reason:
            self.counters["stops"] += 1
            if counter == "waiting":
                self.get_logger().info(f"stop: {reason}", throttle_duration_sec=2.0)
            else:
                self.get_logger().warning(f"stop: {reason}", throttle_duration_sec=1.0)

    def on_diagnostics(self) -> None:
        c.publish_status(self, self.diag_pub, f"{NAME}: policy",
                         DiagnosticStatus.WARN if self.counters["policy_failures"] else DiagnosticStatus.OK,
                         ("goal reached" if self.reached else "driving") if self.active else "inactive",
                         c.diagnostics_values(self.counters, self.published))

    def on_deactivating(self) -> None:
        """Leave the robot stopped, make sure every subscriber has every command, report the counts."""
        try:
            self.cmd.stop_and_flush()
            self.on_diagnostics()
        except Exception:  # context already gone
            pass


def main(args: list[str] | None = None) -> int:
    return c.run_node(E2eNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
