"""planner_node: the upper level. Publishes the subgoal p̂ₜ on /hiopt/subgoal at the planner rate.

The policy is pluggable: a trained torch policy when ``policy_checkpoint`` names a TorchScript file
(hiopt_ros.planning.torch_policy), otherwise the geometric look-ahead policy
(hiopt_ros.planning.geometric). The goal is the ``goal_xy`` parameter until a
geometry_msgs/PoseStamped arrives on /goal_pose. When the robot is within ``goal_tolerance_m`` of
the goal the node publishes ``true`` on /hiopt/goal_reached (latched) and from then on proposes the
goal itself as the subgoal; a new goal resets the flag.

A residual RL policy's progress check (hiopt_ros.planning.torch_policy.ProgressCheck) judges the
robot's progress only while it is being driven: while /cmd_vel carries commands (any command, the
stop of a stalled robot included) from a driver that is active. With no driver, or an inactive
one, the robot cannot move and a stall would be reported every window; the check's history is
then cleared each period, so it starts afresh once commands flow again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped

from hiopt_ros.config import package_path
from hiopt_ros.nodes.managed import DrivesToGoal, GoalTracker, ManagedNode, twist_type
from hiopt_ros.nodes.parameters import GoalConfig, NodeConfig, Params, declare_goal, declare_node
from hiopt_ros.nodes.process import node_main
from hiopt_ros.nodes.topics import COMMAND_QOS, SENSOR_QOS, TOPIC_CMD_VEL, TOPIC_DIAGNOSTICS, TOPIC_SUBGOAL
from hiopt_ros.planning.geometric import LookaheadPolicy
from hiopt_ros.planning.torch_policy import TorchPolicy

from .watchdog import Watchdog

NAME = "planner_node"
#: the robot counts as driven while a /cmd_vel message arrived within this time: sim_node's
#: base-driver watchdog (cmd_vel_timeout_s, 0.5 s) stops the wheels after the same silence
DRIVEN_WITHIN_S = 0.5


@dataclass(frozen=True)
class PlannerConfig(NodeConfig, GoalConfig):
    planner_rate_hz: float
    policy_checkpoint: str
    policy_max_distance_m: float
    lookahead_m: float
    odom_timeout_s: float
    enable_stamped_cmd_vel: bool


class PlannerNode(DrivesToGoal, ManagedNode):
    """Waypoint planner; see the module docstring and README's topic table."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NAME, **kwargs)
        p = Params(self)
        self.cfg = PlannerConfig(
            **declare_goal(p),
            **declare_node(p),
            planner_rate_hz=p.positive("planner_rate_hz", 10.0, "subgoal publication rate [Hz]"),
            policy_checkpoint=p.text("policy_checkpoint", "",
                                     "TorchScript subgoal policy (.pt); empty: geometric look-ahead policy"),
            policy_max_distance_m=p.positive("policy_max_distance_m", 1.5,
                                             "torch policy: subgoals are clipped to this distance [m]"),
            lookahead_m=p.positive("lookahead_m", 0.6, "look-ahead distance of the geometric policy [m] (a residual "
                                                      "RL policy uses the look-ahead it was trained with)"),
            odom_timeout_s=p.positive("odom_timeout_s", 0.5, "no subgoal is published from older odometry [s]"),
            enable_stamped_cmd_vel=p.flag("enable_stamped_cmd_vel", False,
                                          "/cmd_vel carries TwistStamped (true) or Twist (false), as Nav2; the "
                                          "planner listens to tell whether the robot is being driven"),
        )
        cfg = self.cfg
        self.policy = None
        if cfg.policy_checkpoint:
            try:
                self.policy = TorchPolicy.load(package_path(cfg.policy_checkpoint),
                                               max_distance_m=cfg.policy_max_distance_m)
            except Exception as exc:
                p.error("policy_checkpoint", f"cannot load {cfg.policy_checkpoint!r}: {exc}")
        p.check()
        if self.policy is None:
            self.policy = LookaheadPolicy(lookahead_m=cfg.lookahead_m)

        self.watchdog = Watchdog(self.watchdog_clock(), {"odometry": cfg.odom_timeout_s})
        self.counters = {"cycles": 0, "waiting": 0, "policy_failures": 0, "progress_recoveries": 0,
                         "undriven": 0}   # undriven: periods the progress check was paused (no /cmd_vel)
        # evidence that a driver commands the robot: /cmd_vel's arrival (best effort: only its freshness
        # matters, and the controller's flush on deactivation then waits for no acknowledgement from here)
        self.driven = Watchdog(self.watchdog_clock(), {"cmd_vel": DRIVEN_WITHIN_S})
        self.create_subscription(twist_type(cfg.enable_stamped_cmd_vel), TOPIC_CMD_VEL,
                                 lambda _msg: self.driven.feed("cmd_vel"), SENSOR_QOS)
        # why the last period published no subgoal (a missing input or "stale"), "" while planning
        self._waiting_for = ""

        self.subgoal_pub = self.create_publisher(PointStamped, TOPIC_SUBGOAL, COMMAND_QOS)
        self.recorded_publishers.append(self.subgoal_pub)
        self.task = GoalTracker(self, cfg.goal_xy, cfg.goal_tolerance_m, cfg.odom_frame)
        self.subscribe_robot_state(self.watchdog)
        self.diag_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self.create_timer(1.0 / cfg.planner_rate_hz, self.on_plan)
        self.create_timer(1.0 / cfg.diagnostics_rate_hz, self.on_diagnostics)
        self.get_logger().info(f"policy: {type(self.policy).__name__}"
                               f"{' ' + cfg.policy_checkpoint if cfg.policy_checkpoint else ''}; "
                               f"goal {self.goal.tolist()} ± {cfg.goal_tolerance_m} m; {cfg.planner_rate_hz:g} Hz")
        self.start_lifecycle(cfg.autostart)

    def on_plan(self) -> None:
        if not self.active:
            return
        self.counters["cycles"] += 1
        stale = self.watchdog.stale()
        if self.state is None or self.obstacles is None or stale:
            self.counters["waiting"] += 1
            # a missing input with what discovery knows (a missing publisher or messages that do not
            # arrive), or "stale": logged once per reason, not per stale age
            reason = self.missing_robot_state() or "stale"
            if reason != self._waiting_for:
                why = (self.watchdog.describe("odometry", stale.get("odometry", 0.0), "odom_timeout_s")
                       if reason == "stale" else reason)
                self.get_logger().info(f"not planning: {why}")
            self._waiting_for = reason
            return  # no subgoal from missing or old inputs: the controller then times out and stops
        if self._waiting_for:
            self.get_logger().info("planning")
            self._waiting_for = ""
        if not np.all(np.isfinite(self.state)):
            self.get_logger().error("non-finite odometry; not planning", throttle_duration_sec=1.0)
            return
        self.task.check(self.state)
        if self.reached:
            subgoal = self.goal
        else:
            if getattr(self.policy, "progress_check", None) is not None and not self.being_driven():
                self.counters["undriven"] += 1
                self.policy.reset()   # progress is judged only over periods in which the robot was driven
            try:
                subgoal = np.asarray(self.policy.subgoal(self.state, self.goal, self.obstacles,
                                                         self.cfg.model.robot_radius_m), dtype=float)
            except ValueError as exc:
                self.counters["policy_failures"] += 1
                self.get_logger().error(f"policy failed: {exc}; not publishing", throttle_duration_sec=1.0)
                return
            recoveries = getattr(self.policy, "recoveries", 0)
            if recoveries > self.counters["progress_recoveries"]:
                self.counters["progress_recoveries"] = recoveries
                pc = self.policy.progress_check
                self.get_logger().warning(f"no progress over {pc.window} planner periods: the geometric prior "
                                          f"drives alone for {pc.recovery} (recovery {recoveries})")
        if subgoal.shape != (2,) or not np.all(np.isfinite(subgoal)):
            self.get_logger().error(f"policy returned an invalid subgoal {subgoal!r}; not publishing",
                                    throttle_duration_sec=1.0)
            return
        msg = PointStamped()
        msg.header.stamp, msg.header.frame_id = self.get_clock().now().to_msg(), self.cfg.odom_frame
        msg.point.x, msg.point.y = float(subgoal[0]), float(subgoal[1])
        self.subgoal_pub.publish(msg)
        self.count(TOPIC_SUBGOAL)

    def being_driven(self) -> bool:
        """Whether a /cmd_vel message arrived within :data:`DRIVEN_WITHIN_S` (on the watchdog clock)."""
        return self.driven.age_s("cmd_vel") is not None and not self.driven.stale()

    def on_diagnostics(self) -> None:
        self.publish_diagnostics("planner", DiagnosticStatus.OK, "goal reached" if self.reached else "planning")


main = node_main(PlannerNode)


if __name__ == "__main__":
    raise SystemExit(main())
