"""sim_node: the PyBullet world as a ROS robot (cmd_vel in; odometry, TF, obstacles, collision out).

Physics runs in real time whatever ``use_sim_time`` says: a steady-clock timer advances the world
by the *measured* time since the previous step (capped at ``max_step_s``), so simulated time keeps
pace with the wall clock even when timer callbacks come late or are skipped under load, and the
stamps (wall time, or simulated time with ``publish_clock``) agree with the physics. After a stall
longer than the cap the world runs in slow motion for that step instead of teleporting. With
``publish_clock`` the node also publishes the simulated time on /clock and stamps its messages
with it, so nodes started with ``use_sim_time:=true`` follow the sim. Physics, odometry and /clock
run only while the node is active (lifecycle; see hiopt_ros.nodes.managed).

Like a real base driver, the robot stops when /cmd_vel has been silent for ``cmd_vel_timeout_s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.time import Time
from std_msgs.msg import Bool

from hiopt_ros.conversions import set_yaw, twist_values
from hiopt_ros.course import Course
from hiopt_ros.nodes.managed import ManagedNode, markers_from_obstacles, twist_type
from hiopt_ros.nodes.parameters import GoalConfig, NodeConfig, Params, declare_goal, declare_node
from hiopt_ros.nodes.process import node_main
from hiopt_ros.nodes.topics import (
    CLOCK_QOS,
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    TOPIC_CMD_VEL,
    TOPIC_COLLISION,
    TOPIC_DIAGNOSTICS,
    TOPIC_OBSTACLES,
    TOPIC_ODOM,
)

NAME = "sim_node"
# simulated ground truth: tiny variances on the planar dimensions (x, y, yaw), huge on the unused ones
_COVARIANCE = [1e-6 if i in (0, 7, 35) else (1e3 if i in (14, 21, 28) else 0.0) for i in range(36)]


@dataclass(frozen=True)
class SimConfig(NodeConfig, GoalConfig):
    start_xyyaw: np.ndarray
    obstacles_xyr: np.ndarray
    step_rate_hz: float
    physics_rate_hz: float
    odom_rate_hz: float
    cmd_vel_timeout_s: float
    max_step_s: float
    publish_clock: bool
    gui: bool
    seed: int
    enable_stamped_cmd_vel: bool


class SimNode(ManagedNode):
    """Runs sim.world.World; see the module docstring and README's topic table."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NAME, **kwargs)
        p = Params(self)
        obstacles = p.vector("obstacles_xyr", [], "static cylinders, flattened [x_m, y_m, radius_m] triples",
                             multiple_of=3)
        self.cfg = SimConfig(
            **declare_goal(p),  # only drawn in the GUI
            **declare_node(p, 2.0, "world status on /diagnostics"),
            start_xyyaw=p.vector("start_xyyaw", [0.0, 0.0, 0.0], "start pose [x_m, y_m, yaw_rad]", size=3),
            obstacles_xyr=obstacles.reshape(-1, 3) if obstacles.size % 3 == 0 else np.zeros((0, 3)),
            step_rate_hz=p.positive("step_rate_hz", 100.0, "physics update timer rate (wall clock) [Hz]"),
            physics_rate_hz=p.positive("physics_rate_hz", 240.0, "PyBullet internal step rate [Hz]"),
            odom_rate_hz=p.positive("odom_rate_hz", 50.0, "/odom and TF publication rate [Hz]"),
            cmd_vel_timeout_s=p.positive("cmd_vel_timeout_s", 0.5,
                                         "stop the wheels when /cmd_vel is silent this long [s]"),
            max_step_s=p.positive("max_step_s", 0.25, "longest time one physics update may advance the world [s]"),
            publish_clock=p.flag("publish_clock", False, "publish simulated time on /clock"),
            gui=p.flag("gui", False, "open the PyBullet GUI (needs a display)"),
            seed=p.integer("seed", 0, "world seed", min_value=0),
            enable_stamped_cmd_vel=p.flag("enable_stamped_cmd_vel", False,
                                          "/cmd_vel is geometry_msgs/TwistStamped (true) or Twist (false)"),
        )
        cfg = self.cfg
        if obstacles.size % 3 == 0 and cfg.obstacles_xyr.size:
            p.require(bool(np.all(cfg.obstacles_xyr[:, 2] > 0)), "obstacles_xyr", "every radius must be > 0")
        p.require(cfg.physics_rate_hz >= cfg.step_rate_hz, "physics_rate_hz",
                  f"must be >= step_rate_hz ({cfg.step_rate_hz})")
        p.check()

        from sim.world import World

        self.course = Course(start_xyyaw=cfg.start_xyyaw,
                             goal_xy=cfg.goal_xy,
                             obstacles_xyr=cfg.obstacles_xyr, robot_radius_m=cfg.model.robot_radius_m,
                             goal_tolerance_m=cfg.goal_tolerance_m)
        self.world = World(self.course, physics_rate_hz=cfg.physics_rate_hz, gui=cfg.gui, seed=cfg.seed)
        self.world.reset(seed=cfg.seed)
        self._command = (0.0, 0.0)
        self._wall = Clock(clock_type=ClockType.STEADY_TIME)
        self._last_cmd_wall: Time | None = None
        self._last_step_ns: int | None = None
        self._collided = False
        self.counters = {"steps": 0, "capped_steps": 0}

        self.odom_pub = self.create_publisher(Odometry, TOPIC_ODOM, SENSOR_QOS)
        from visualization_msgs.msg import MarkerArray
        self.obstacles_pub = self.create_publisher(MarkerArray, TOPIC_OBSTACLES, LATCHED_QOS)
        self.collision_pub = self.create_publisher(Bool, TOPIC_COLLISION, LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self.tf_pub, self._tf_type = self._make_tf_publisher()
        self.clock_pub = None
        if cfg.publish_clock:
            from rosgraph_msgs.msg import Clock as ClockMsg
            self.clock_pub = self.create_publisher(ClockMsg, "/clock", CLOCK_QOS)
        self.create_subscription(twist_type(cfg.enable_stamped_cmd_vel), TOPIC_CMD_VEL,
                                 self.on_cmd_vel, COMMAND_QOS)
        # all timers on the steady clock: the sim itself defines simulated time
        self.create_timer(1.0 / cfg.step_rate_hz, self.on_step, clock=self._wall)
        self.create_timer(1.0 / cfg.odom_rate_hz, self.on_publish_odom, clock=self._wall)
        self.create_timer(1.0 / cfg.diagnostics_rate_hz, self.on_diagnostics, clock=self._wall)

        self.get_logger().info(
            f"world ready: start {cfg.start_xyyaw.tolist()}, {len(cfg.obstacles_xyr)} obstacles, "
            f"stepping {cfg.step_rate_hz:g} Hz (physics {cfg.physics_rate_hz:g} Hz), odom {cfg.odom_rate_hz:g} Hz"
            + (", publishing /clock" if cfg.publish_clock else ""))
        self.start_lifecycle(cfg.autostart)

    def _make_tf_publisher(self):
        """odom→base_link on /tf when tf2_msgs is installed (it is with any ROS 2 distribution; the
        pip wheels lack it, and then the frames are only carried by /odom's header/child_frame_id)."""
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().info("tf2_msgs is not installed: not publishing /tf (odom carries the frames)")
            return None, None
        from rclpy.qos import QoSProfile
        return self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100)), TFMessage

    def stamp(self):
        """Message stamp: simulated time when publishing /clock, else the node clock."""
        if self.cfg.publish_clock:
            return Time(nanoseconds=int(round(self.world.time_s * 1e9))).to_msg()
        return self.get_clock().now().to_msg()

    def on_activated(self) -> None:
        """The world starts: latched obstacles and collision state, the first odometry."""
        self._last_step_ns = self._wall.now().nanoseconds
        self.obstacles_pub.publish(markers_from_obstacles(self.cfg.obstacles_xyr, self.stamp(), self.cfg.odom_frame))
        self.count(TOPIC_OBSTACLES)
        self.collision_pub.publish(Bool(data=self._collided))
        self.on_publish_odom()

    # ---------------------------------------------------------------- callbacks
    def on_cmd_vel(self, msg) -> None:
        v, omega = twist_values(msg)
        if not (math.isfinite(v) and math.isfinite(omega)):
            self.get_logger().error(f"ignoring non-finite /cmd_vel ({v}, {omega}); stopping", throttle_duration_sec=1.0)
            v, omega = 0.0, 0.0
        self._command = (v, omega)
        self._last_cmd_wall = self._wall.now()

    def on_step(self) -> None:
        if not self.active:
            return
        now = self._wall.now()
        elapsed_s = (now.nanoseconds - self._last_step_ns) * 1e-9
        self._last_step_ns = now.nanoseconds
        if elapsed_s <= 0.0:
            return
        self.counters["steps"] += 1
        if elapsed_s > self.cfg.max_step_s:
            self.counters["capped_steps"] += 1
            elapsed_s = self.cfg.max_step_s
        v, omega = self._command
        if self._last_cmd_wall is None or (now - self._last_cmd_wall).nanoseconds * 1e-9 > self.cfg.cmd_vel_timeout_s:
            v, omega = 0.0, 0.0
        self.world.apply_command(v, omega)
        self.world.step(elapsed_s)
        if self.clock_pub is not None:
            from rosgraph_msgs.msg import Clock as ClockMsg
            self.clock_pub.publish(ClockMsg(clock=self.stamp()))
        if self.world.collided and not self._collided:
            self._collided = True
            self.collision_pub.publish(Bool(data=True))
            self.get_logger().error(f"collision at {np.round(self.world.pose(), 3).tolist()} "
                                    f"(t = {self.world.time_s:.2f} s)")
            self.on_diagnostics()

    def on_publish_odom(self) -> None:
        if not self.active:
            return
        cfg = self.cfg
        x, y, yaw = (float(v) for v in self.world.pose())
        v, omega = (float(u) for u in self.world.velocity())
        stamp = self.stamp()
        msg = Odometry()
        msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, cfg.odom_frame, cfg.base_frame
        msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
        set_yaw(msg.pose.pose.orientation, yaw)
        msg.twist.twist.linear.x, msg.twist.twist.angular.z = v, omega
        msg.pose.covariance = msg.twist.covariance = _COVARIANCE
        self.odom_pub.publish(msg)
        self.count(TOPIC_ODOM)
        if self.tf_pub is not None:
            from geometry_msgs.msg import TransformStamped
            tf = TransformStamped()
            tf.header.stamp, tf.header.frame_id, tf.child_frame_id = stamp, cfg.odom_frame, cfg.base_frame
            tf.transform.translation.x, tf.transform.translation.y = x, y
            tf.transform.rotation = msg.pose.pose.orientation
            self.tf_pub.publish(self._tf_type(transforms=[tf]))

    def on_diagnostics(self) -> None:
        w = self.world
        x, y, yaw = (float(v) for v in w.pose())
        self.publish_diagnostics("world", DiagnosticStatus.ERROR if w.collided else DiagnosticStatus.OK,
                                 "collision" if w.collided else "running",
                                 {"sim_time_s": float(w.time_s), "energy_j": float(w.energy_j),
                                  "min_clearance_m": float(w.min_clearance_m), "collided": bool(w.collided),
                                  "x_m": x, "y_m": y, "yaw_rad": yaw, **self.diagnostics_values()})

    def shutdown(self) -> None:
        self.world.close()


main = node_main(SimNode)


if __name__ == "__main__":
    raise SystemExit(main())
