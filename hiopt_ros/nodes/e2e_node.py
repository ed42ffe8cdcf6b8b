"""e2e_node: the end-to-end RL baseline driving the robot directly (no subgoal, no optimization layer).

It replaces planner + controller: every ``decision_rate_hz`` period it maps the observation of
:mod:`hiopt_ros.planning.torch_policy` (goal and nearest obstacles in the body frame) through the
trained end-to-end TorchScript policy (``python -m sim.train --method e2e``) to (v, ω), and it
publishes that command on /cmd_vel at ``control_rate_hz`` until the next decision — the zero-order
hold the policy was trained with (sim.nav_env: one env step = one planner period). Same safety
rules as the controller: stale or missing inputs, a non-finite state or a failing policy give the
stop command, logged and counted. At the goal it publishes ``true`` on /hiopt/goal_reached and holds
still. A lifecycle node like every hiopt node (hiopt_ros.nodes.managed.ManagedNode): silent until
active, a last stop when deactivated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from std_msgs.msg import Float64

from hiopt_ros.config import package_path
from hiopt_ros.nodes.managed import CommandPublisher, DrivesToGoal, GoalTracker, ManagedNode
from hiopt_ros.nodes.parameters import DriverConfig, GoalConfig, Params, declare_driver, declare_goal
from hiopt_ros.nodes.process import node_main
from hiopt_ros.nodes.topics import COMMAND_QOS, TOPIC_DIAGNOSTICS, TOPIC_SOLVE_TIME
from hiopt_ros.planning.torch_policy import TorchCommandPolicy

from .watchdog import Watchdog

NAME = "e2e_node"


@dataclass(frozen=True)
class E2eConfig(DriverConfig, GoalConfig):
    policy_checkpoint: str
    decision_rate_hz: float


class E2eNode(DrivesToGoal, ManagedNode):
    """End-to-end policy → /cmd_vel; see the module docstring and README's topic table."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NAME, **kwargs)
        p = Params(self)
        self.cfg = E2eConfig(
            **declare_goal(p),
            **declare_driver(p, "/cmd_vel publication rate"),
            policy_checkpoint=p.text("policy_checkpoint", "", "end-to-end TorchScript policy (.pt, action (v, ω))"),
            decision_rate_hz=p.positive("decision_rate_hz", 10.0,
                                        "policy evaluation rate [Hz] (the planner rate it was trained at)"),
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
            try:
                self.policy = TorchCommandPolicy.load(package_path(cfg.policy_checkpoint), cfg.model.limits.lower,
                                                      cfg.model.limits.upper)
            except Exception as exc:
                p.error("policy_checkpoint", f"cannot load {cfg.policy_checkpoint!r}: {exc}")
        p.check()

        self.hold_cycles = int(round(ratio))
        self.command = np.zeros(2)
        self.cycle = 0
        self.watchdog = Watchdog(self.watchdog_clock(), {"odometry": cfg.odom_timeout_s})
        self.counters = {"cycles": 0, "decisions": 0, "stops": 0, "policy_failures": 0, "stale_odometry": 0,
                         "frozen_odometry": 0, "waiting": 0}

        self.cmd = CommandPublisher(self, cfg.enable_stamped_cmd_vel, cfg.base_frame)
        self.diag_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        # the decision time (observation + forward pass) on the topic the controller and expert use
        self.solve_time_pub = self.create_publisher(Float64, TOPIC_SOLVE_TIME, COMMAND_QOS)
        self._solve_time_msg = Float64()
        self.task = GoalTracker(self, cfg.goal_xy, cfg.goal_tolerance_m, cfg.odom_frame)
        self.subscribe_robot_state(self.watchdog)
        self.create_timer(1.0 / cfg.control_rate_hz, self.on_control)
        self.create_timer(1.0 / cfg.diagnostics_rate_hz, self.on_diagnostics)
        self.get_logger().info(f"end-to-end policy {cfg.policy_checkpoint}: decides at {cfg.decision_rate_hz:g} Hz, "
                               f"publishes /cmd_vel at {cfg.control_rate_hz:g} Hz; goal {self.goal.tolist()}")
        self.start_lifecycle(cfg.autostart)

    def on_control(self) -> None:
        if not self.active:
            return
        self.counters["cycles"] += 1
        reason, counter = "", None
        if (waiting := self.missing_robot_state()) is not None:
            reason, counter = waiting, "waiting"
        elif "odometry" in (stale := self.watchdog.stale()):
            reason, counter = self.odometry_fault(stale["odometry"])
        elif not np.all(np.isfinite(self.state)):
            reason, counter = f"non-finite state {self.state.tolist()}", "policy_failures"
        elif self.task.check(self.state):
            self.command[:] = 0.0
        elif self.cycle % self.hold_cycles == 0:
            try:
                t0 = time.perf_counter()
                self.command = self.policy.command(self.state, self.goal, self.obstacles,
                                                   self.cfg.model.robot_radius_m)
                self._solve_time_msg.data = (time.perf_counter() - t0) * 1e6
                self.solve_time_pub.publish(self._solve_time_msg)
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
        self.publish_diagnostics("policy", DiagnosticStatus.WARN if self.counters["policy_failures"] else
                                 DiagnosticStatus.OK, "goal reached" if self.reached else "driving")


main = node_main(E2eNode)


if __name__ == "__main__":
    raise SystemExit(main())
