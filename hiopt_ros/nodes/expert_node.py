"""expert_node: the MPC expert driving the robot directly, for recording demonstrations.

It replaces planner + controller: every control cycle it solves the N-step MPC
(hiopt_ros.control.mpc) towards the goal, publishes the first input on /cmd_vel, the subgoal the
plan implies (its position ``subgoal_steps`` ahead) on /hiopt/subgoal, and the plan on
/hiopt/expert_plan. Recorded /odom, /cmd_vel and /hiopt/subgoal are what ``offline.fit`` needs.
Same safety rules as the controller: stale/missing inputs or a failed solve → stop command, logged
and counted. At the goal it publishes ``true`` on /hiopt/goal_reached and holds still.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped, PoseStamped
from nav_msgs.msg import Path
from std_msgs.msg import Float64

from hiopt_ros.control.mpc import Mpc, MpcConfig
from hiopt_ros.conversions import set_yaw
from hiopt_ros.nodes.managed import CommandPublisher, DrivesToGoal, GoalTracker, ManagedNode, solve_time_values
from hiopt_ros.nodes.parameters import DriverConfig, GoalConfig, Params, declare_driver, declare_goal
from hiopt_ros.nodes.process import node_main
from hiopt_ros.nodes.topics import COMMAND_QOS, TOPIC_DIAGNOSTICS, TOPIC_SOLVE_TIME, TOPIC_SUBGOAL

from .watchdog import Watchdog

NAME = "expert_node"


@dataclass(frozen=True)
class ExpertConfig(DriverConfig, GoalConfig):
    horizon_steps: int
    subgoal_steps: int


class ExpertNode(DrivesToGoal, ManagedNode):
    """MPC expert; see the module docstring and README's topic table."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NAME, **kwargs)
        p = Params(self)
        self.cfg = ExpertConfig(
            **declare_goal(p),
            **declare_driver(p, "MPC solve and /cmd_vel rate"),
            horizon_steps=p.integer("horizon_steps", 20, "MPC horizon N (structural)", min_value=1),
            subgoal_steps=p.integer("subgoal_steps", 5, "implied subgoal = planned position this many steps ahead",
                                    min_value=1),
        )
        cfg = self.cfg
        p.require(cfg.subgoal_steps <= cfg.horizon_steps, "subgoal_steps",
                  f"must be <= horizon_steps ({cfg.horizon_steps}), got {cfg.subgoal_steps}")
        p.check()

        self.mpc = Mpc(MpcConfig(**cfg.model.solver_kwargs(), N=cfg.horizon_steps, subgoal_steps=cfg.subgoal_steps))
        self.watchdog = Watchdog(self.watchdog_clock(), {"odometry": cfg.odom_timeout_s})
        self.counters = {"cycles": 0, "stops": 0, "solver_failures": 0, "stale_odometry": 0, "frozen_odometry": 0,
                         "waiting": 0}
        self._solve_times_us: deque[float] = deque(maxlen=1000)
        self._last_status = "starting"

        self.cmd = CommandPublisher(self, cfg.enable_stamped_cmd_vel, cfg.base_frame)
        self._solve_time_msg = Float64()
        self.subgoal_pub = self.create_publisher(PointStamped, TOPIC_SUBGOAL, COMMAND_QOS)
        self.recorded_publishers.append(self.subgoal_pub)
        self.plan_pub = self.create_publisher(Path, "/hiopt/expert_plan", COMMAND_QOS)
        self.solve_time_pub = self.create_publisher(Float64, TOPIC_SOLVE_TIME, COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self.task = GoalTracker(self, cfg.goal_xy, cfg.goal_tolerance_m, cfg.odom_frame,
                                on_new_goal=lambda goal: self.mpc.reset())
        self.subscribe_robot_state(self.watchdog)
        self.create_timer(1.0 / cfg.control_rate_hz, self.on_control)
        self.create_timer(1.0 / cfg.diagnostics_rate_hz, self.on_diagnostics)
        self.get_logger().info(f"MPC expert ready (N={cfg.horizon_steps}, subgoal {cfg.subgoal_steps} steps ahead), "
                               f"goal {self.goal.tolist()}, {cfg.control_rate_hz:g} Hz")
        self.start_lifecycle(cfg.autostart)

    def on_control(self) -> None:
        if not self.active:
            return
        self.counters["cycles"] += 1
        reason, counter, v, omega = "", None, 0.0, 0.0
        if (waiting := self.missing_robot_state()) is not None:
            reason, counter = waiting, "waiting"
        elif "odometry" in (stale := self.watchdog.stale()):
            reason, counter = self.odometry_fault(stale["odometry"])
        elif not np.all(np.isfinite(self.state)):
            reason, counter = f"non-finite state {self.state.tolist()}", "solver_failures"
        elif self.task.check(self.state):
            self._last_status = "at goal"
        else:
            u, info = self.mpc.solve(self.state, self.goal, self.obstacles)
            self._solve_time_msg.data = float(info.solve_time_us)
            self.solve_time_pub.publish(self._solve_time_msg)
            self._solve_times_us.append(info.solve_time_us)
            if info.ok and np.all(np.isfinite(u)):
                v, omega = float(u[0]), float(u[1])
                self._publish_subgoal(info.subgoal, info.trajectory)
                self._last_status = info.message
            else:
                reason, counter = info.message, "solver_failures"
        self.cmd.publish(v, omega)
        if counter is not None:
            self.counters[counter] += 1
        if reason:
            self.counters["stops"] += 1
            self._last_status = reason
            if counter == "waiting":
                self.get_logger().info(f"stop: {reason}", throttle_duration_sec=2.0)
            else:
                self.get_logger().warning(f"stop: {reason}", throttle_duration_sec=1.0)

    def _publish_subgoal(self, subgoal: np.ndarray, trajectory: np.ndarray) -> None:
        stamp = self.get_clock().now().to_msg()
        msg = PointStamped()
        msg.header.stamp, msg.header.frame_id = stamp, self.cfg.odom_frame
        msg.point.x, msg.point.y = float(subgoal[0]), float(subgoal[1])
        self.subgoal_pub.publish(msg)
        self.count(TOPIC_SUBGOAL)
        path = Path()
        path.header = msg.header
        for x, y, yaw in trajectory:
            pose = PoseStamped()
            pose.header = msg.header
            pose.pose.position.x, pose.pose.position.y = float(x), float(y)
            set_yaw(pose.pose.orientation, float(yaw))
            path.poses.append(pose)
        self.plan_pub.publish(path)

    def on_diagnostics(self) -> None:
        failing = self.counters["solver_failures"] > 0
        self.publish_diagnostics("MPC", DiagnosticStatus.WARN if failing else DiagnosticStatus.OK, self._last_status,
                                 self.diagnostics_values(**solve_time_values(self._solve_times_us)))


main = node_main(ExpertNode)


if __name__ == "__main__":
    raise SystemExit(main())
