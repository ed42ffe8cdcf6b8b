"""Node-level tests with an in-process executor: parameter validation and the stop-on-failure paths."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros
from geometry_msgs.msg import PointStamped, Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from hiopt_ros.bringup import NODE_MODULES  # noqa: E402
from hiopt_ros.config import default_params_file  # noqa: E402
from hiopt_ros.control.fop import SolveInfo  # noqa: E402
from hiopt_ros.conversions import obstacles_from_markers, odom_state, set_yaw, twist_values  # noqa: E402
from hiopt_ros.nodes.controller_node import ControllerNode  # noqa: E402
from hiopt_ros.nodes.managed import markers_from_obstacles  # noqa: E402
from hiopt_ros.nodes.parameters import ParameterError  # noqa: E402
from hiopt_ros.nodes.planner_node import PlannerNode  # noqa: E402
from hiopt_ros.nodes.topics import (  # noqa: E402
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    TOPIC_CMD_VEL,
    TOPIC_COLLISION,
    TOPIC_DIAGNOSTICS,
    TOPIC_GOAL_REACHED,
    TOPIC_OBSTACLES,
    TOPIC_ODOM,
    TOPIC_SOLVE_TIME,
    TOPIC_SUBGOAL,
)
from sim.sim_node import SimNode  # noqa: E402

PARAMS = default_params_file()
OBSTACLES = np.array([[1.3, 0.25, 0.3], [2.7, -0.3, 0.3]])


def overrides(**kw) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in kw.items()]


class Rig:
    """A helper node that feeds a node under test and records what it publishes, one executor."""

    def __init__(self, ctx, node) -> None:
        from visualization_msgs.msg import MarkerArray

        self.node = node
        self.io = rclpy.create_node("test_rig", context=ctx)
        self.exe = SingleThreadedExecutor(context=ctx)
        self.exe.add_node(node)
        self.exe.add_node(self.io)
        self.odom_pub = self.io.create_publisher(Odometry, TOPIC_ODOM, SENSOR_QOS)
        self.subgoal_pub = self.io.create_publisher(PointStamped, TOPIC_SUBGOAL, COMMAND_QOS)
        self.obstacles_pub = self.io.create_publisher(MarkerArray, TOPIC_OBSTACLES, LATCHED_QOS)
        self.cmds: list[tuple[float, float]] = []
        self.cmd_times: list[float] = []            # monotonic receive times (this executor's turns)
        self.subgoals: list[tuple[float, float]] = []
        self.reached: list[bool] = []
        self.odoms: list[np.ndarray] = []
        self.io.create_subscription(Twist, TOPIC_CMD_VEL, self._on_cmd, COMMAND_QOS)
        self.io.create_subscription(PointStamped, TOPIC_SUBGOAL,
                                    lambda m: self.subgoals.append((m.point.x, m.point.y)), COMMAND_QOS)
        self.io.create_subscription(Bool, TOPIC_GOAL_REACHED, lambda m: self.reached.append(m.data), LATCHED_QOS)
        self.io.create_subscription(Odometry, TOPIC_ODOM, lambda m: self.odoms.append(odom_state(m)),
                                    SENSOR_QOS)

    def _on_cmd(self, msg) -> None:
        self.cmds.append(twist_values(msg))
        self.cmd_times.append(time.monotonic())

    def max_cmd_gap_s(self) -> float:
        """The longest interval between two commands seen: how late this executor ran the node."""
        return float(np.max(np.diff(self.cmd_times)))

    def odom(self, x: float, y: float, yaw: float) -> None:
        msg = Odometry()
        msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
        msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
        set_yaw(msg.pose.pose.orientation, yaw)  # a NaN yaw gives a NaN quaternion
        self.odom_pub.publish(msg)

    def subgoal(self, x: float, y: float, frame_id: str = "odom") -> None:
        msg = PointStamped()
        msg.header.frame_id = frame_id
        msg.point.x, msg.point.y = x, y
        self.subgoal_pub.publish(msg)

    def obstacles(self, obs=OBSTACLES) -> None:
        self.obstacles_pub.publish(markers_from_obstacles(obs, self.io.get_clock().now().to_msg(), "odom"))

    def spin(self, seconds: float, feed=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if feed is not None:
                feed()
            self.exe.spin_once(timeout_sec=0.01)

    def spin_until(self, cond, timeout_s: float = 5.0, feed=None) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if cond():
                return True
            if feed is not None:
                feed()
            self.exe.spin_once(timeout_sec=0.01)
        return cond()

    def caught_up(self) -> bool:
        """Every command the node under test has published so far has arrived here."""
        return len(self.cmds) >= self.node.published.get(TOPIC_CMD_VEL, 0)

    def close(self) -> None:
        self.exe.shutdown()
        self.io.destroy_node()
        self.node.destroy_node()


# ------------------------------------------------------------------------------------------------
# parameter validation: bad values -> one clear error at start-up naming node.parameter

@pytest.mark.parametrize("node_cls, params, expect", [
    (ControllerNode, dict(control_rate_hz=-5.0), "controller_node.control_rate_hz: must be > 0.0, got -5.0"),
    (ControllerNode, dict(odom_timeout_s=0.0), "controller_node.odom_timeout_s: must be > 0.0"),
    (ControllerNode, dict(v_max_mps=float("nan")), "controller_node.v_max_mps: must be finite"),
    (ControllerNode, dict(control_rate_hz="fast"), "controller_node.control_rate_hz: must be a number"),
    (ControllerNode, dict(theta_file="/nonexistent/theta.yaml"), "controller_node.theta_file: cannot load"),
    (ControllerNode, dict(relu_terms=-1), "controller_node.relu_terms: must be >= 0"),
    (PlannerNode, dict(goal_xy=[1.0, 2.0, 3.0]), "planner_node.goal_xy: must have 2 entries, got 3"),
    (PlannerNode, dict(policy_checkpoint="/nonexistent/policy.pt"), "planner_node.policy_checkpoint: cannot load"),
    (SimNode, dict(obstacles_xyr=[1.0, 2.0]), "sim_node.obstacles_xyr: must hold a multiple of 3 numbers"),
    (SimNode, dict(obstacles_xyr=[1.0, 2.0, -0.3]), "sim_node.obstacles_xyr: every radius must be > 0"),
    (SimNode, dict(start_xyyaw=[0.0, 0.0]), "sim_node.start_xyyaw: must have 3 entries"),
])
def test_bad_parameter_is_a_clear_startup_error(ctx, node_cls, params, expect):
    with pytest.raises(ParameterError) as err:
        node_cls(context=ctx, parameter_overrides=overrides(**params))
    assert expect in str(err.value)


def test_all_bad_parameters_are_reported_together(ctx):
    with pytest.raises(ParameterError) as err:
        ControllerNode(context=ctx, parameter_overrides=overrides(control_rate_hz=0.0, subgoal_timeout_s=-1.0))
    assert "control_rate_hz" in str(err.value) and "subgoal_timeout_s" in str(err.value)


def test_node_process_exits_2_with_the_message_on_a_bad_parameter(repo_root):
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    out = subprocess.run([sys.executable, "-m", "hiopt_ros.nodes.planner_node", "--ros-args",
                          "-p", "planner_rate_hz:=-1.0"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "planner_node.planner_rate_hz: must be > 0.0, got -1.0" in out.stderr


@pytest.mark.parametrize("node, own", [("sim_node", "physics_rate_hz"), ("planner_node", "policy_checkpoint"),
                                       ("controller_node", "theta_file"), ("expert_node", "horizon_steps"),
                                       ("e2e_node", "decision_rate_hz")])
def test_help_lists_every_parameter_and_exits_0_without_starting(repo_root, ros_domain_id, node, own):
    env = {**os.environ, "PYTHONPATH": str(repo_root), "ROS_DOMAIN_ID": str(ros_domain_id)}
    out = subprocess.run([sys.executable, "-m", NODE_MODULES[node], "--help"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: ros2 run hiopt_ros {node} ")
    for name in (own, "robot_radius_m", "odom_frame", "autostart"):
        assert f"\n  {name} " in out.stdout, name
    assert "world ready" not in out.stderr and "FOP ready" not in out.stderr   # nothing was built


@pytest.mark.parametrize("use_expert", [False, True])
def test_shipped_parameter_file_is_valid_and_every_node_sees_one_robot_model(ctx, use_expert):
    """Every node accepts config/nav.yaml's values (the file bringup hands to every process) and
    declares the same robot model, the one hiopt_ros.control.params reads for the offline tools."""
    from hiopt_ros import bringup
    from hiopt_ros.control.params import robot_model_from_params
    from hiopt_ros.nodes.expert_node import ExpertNode

    params = PARAMS
    model = robot_model_from_params(params)
    classes = {"sim_node": SimNode, "planner_node": PlannerNode, "controller_node": ControllerNode,
               "expert_node": ExpertNode}
    for spec in bringup.graph(params, use_expert=use_expert):
        node = classes[spec.name](context=ctx, cli_args=["--ros-args", "--params-file", str(params)])
        try:
            assert node.cfg.model == model, spec.name
            if spec.name in ("planner_node", "expert_node"):
                assert node.cfg.goal_xy.tolist() == [4.0, 0.0]
        finally:
            node.destroy_node()


def test_a_shared_fact_in_a_node_section_is_rejected(tmp_path):
    from hiopt_ros.control.params import node_sections

    bad = tmp_path / "nav.yaml"
    bad.write_text(PARAMS.read_text().replace(
        "controller_node:\n  ros__parameters:\n", "controller_node:\n  ros__parameters:\n    robot_radius_m: 0.5\n"))
    with pytest.raises(ValueError, match=r"controller_node: robot_radius_m belong\(s\) under '/\*\*'"):
        node_sections(bad)


# ------------------------------------------------------------------------------------------------
# controller: every stop path publishes (0, 0), says why, and counts it; never NaN

@pytest.fixture
def controller(ctx):
    node = ControllerNode(context=ctx, parameter_overrides=overrides(odom_timeout_s=0.2, subgoal_timeout_s=0.3))
    rig = Rig(ctx, node)
    yield node, rig
    rig.close()


def _fresh(rig, x=0.0, y=0.0, yaw=0.0, sub=(1.0, 0.0)):
    def feed():
        rig.odom(x, y, yaw)
        rig.subgoal(*sub)
    return feed


def test_controller_waits_then_drives_on_fresh_inputs(controller):
    node, rig = controller
    assert rig.spin_until(lambda: len(rig.cmds) >= 3 and node.counters["waiting"] >= 3)
    assert all(cmd == (0.0, 0.0) for cmd in rig.cmds)
    assert node._last_status.startswith("waiting for odometry on /odom (") and "discovered" in node._last_status
    rig.obstacles()
    feed = _fresh(rig)
    assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=feed)
    assert node._last_status == "ok"


def test_controller_stops_on_stale_odometry(controller):
    node, rig = controller
    rig.obstacles()
    assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=_fresh(rig))
    # subgoals keep coming, odometry stops: a stop once odometry is older than odom_timeout_s, decided
    # on the controller's own (steady) clock; the margin is this executor's measured lateness
    # (waiting for the stale-odometry stop itself: on a loaded machine a stall of this process can
    # make the subgoal stale too, a stop of its own)
    assert rig.spin_until(lambda: node.counters["stale_odometry"] > 0 and rig.cmds[-1] == (0.0, 0.0), timeout_s=2.0,
                          feed=lambda: rig.subgoal(1.0, 0.0))
    assert "stale" in node._last_status
    assert 0.2 < node.watchdog.age_s("odometry") <= 0.2 + 3 * rig.max_cmd_gap_s()


def test_controller_stops_on_stale_subgoal(controller):
    node, rig = controller
    rig.obstacles()
    assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=_fresh(rig))
    assert rig.spin_until(lambda: node.counters["stale_subgoal"] > 0 and rig.cmds[-1] == (0.0, 0.0), timeout_s=2.0,
                          feed=lambda: rig.odom(0.0, 0.0, 0.0))
    assert "stale" in node._last_status
    assert 0.3 < node.watchdog.age_s("subgoal") <= 0.3 + 3 * rig.max_cmd_gap_s()
    # fresh subgoals again: it drives again
    assert rig.spin_until(lambda: rig.cmds[-1][0] > 0.1, feed=_fresh(rig))


def test_controller_rejects_subgoals_in_another_frame(controller):
    node, rig = controller
    rig.obstacles()

    def feed():
        rig.odom(0.0, 0.0, 0.0)
        rig.subgoal(1.0, 0.0, frame_id="map")
    assert rig.spin_until(lambda: node.counters["rejected_subgoals"] > 3 and len(rig.cmds) > 5, feed=feed)
    assert all(cmd == (0.0, 0.0) for cmd in rig.cmds)
    # the planner is there (its messages arrive), its subgoals are refused: discovery says so
    assert node.subgoal is None
    assert node._last_status == ("waiting for a subgoal on /hiopt/subgoal "
                                 "(1 publisher discovered, no usable message yet)")
    # the same point in the controller's frame is accepted
    assert rig.spin_until(lambda: rig.cmds[-1][0] > 0.1, feed=_fresh(rig))


def test_controller_stops_on_non_finite_state(controller):
    node, rig = controller
    rig.obstacles()
    assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=_fresh(rig))
    assert rig.spin_until(lambda: node.counters["nonfinite_state"] > 2, feed=_fresh(rig, yaw=float("nan")))
    assert rig.spin_until(rig.caught_up, feed=_fresh(rig, yaw=float("nan")))
    assert rig.cmds[-1] == (0.0, 0.0)
    assert all(math.isfinite(v) and math.isfinite(w) for v, w in rig.cmds)


@pytest.mark.parametrize("failure", ["status", "nan_action", "exception"])
def test_controller_stops_on_solver_failure(controller, failure):
    node, rig = controller
    rig.obstacles()
    assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=_fresh(rig))

    def broken_solve(state, subgoal, obstacles=None, u_prev=None):
        if failure == "status":
            return np.zeros(2), SolveInfo(False, 4, "FOP failed (QP solver failed); stopping", 3, 50.0)
        if failure == "nan_action":
            return np.array([np.nan, 0.3]), SolveInfo(True, 0, "ok", 1, 50.0)
        raise ValueError("subgoal_xy must be finite, got [nan, 0.0]")

    node.fop.solve = broken_solve
    before = node.counters["solver_failures"]
    assert rig.spin_until(lambda: node.counters["solver_failures"] > before + 2, feed=_fresh(rig))
    assert rig.spin_until(rig.caught_up, feed=_fresh(rig))
    assert rig.cmds[-1] == (0.0, 0.0)
    assert all(math.isfinite(v) and math.isfinite(w) for v, w in rig.cmds)


def test_controller_drives_on_an_action_the_fallback_build_solved_and_counts_it(controller):
    """A solve the FOP's BALANCE build rescued (SolveInfo.fallback) is a command, not a stop: the
    action is published and counted under solver_fallbacks, not solver_failures."""
    node, rig = controller
    rig.obstacles()
    assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=_fresh(rig))
    node.fop.solve = lambda state, subgoal, obstacles=None, u_prev=None: (
        np.array([0.3, -0.2]), SolveInfo(True, 0, "ok (1 of 1 starts failed: maximum number of iterations "
                                         "reached) (solved by the BALANCE build)", 53, 2000.0, fallback=True))
    failures, fallbacks = node.counters["solver_failures"], node.counters["solver_fallbacks"]
    assert rig.spin_until(lambda: node.counters["solver_fallbacks"] > fallbacks + 2, feed=_fresh(rig))
    assert rig.spin_until(rig.caught_up, feed=_fresh(rig))
    assert node.counters["solver_failures"] == failures
    assert rig.cmds[-1] == (0.3, -0.2)


def test_controller_gives_the_fop_its_last_published_command_as_the_previous_one(controller):
    """u_{t−1} of the FOP's c_du term (fop.py) is what the controller published last, stops included."""
    node, rig = controller
    rig.obstacles()
    assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=_fresh(rig))
    seen, actions = [], iter([(0.4, 0.5), (0.2, -0.3), (0.6, 0.1)] * 100)

    def solve(state, subgoal, obstacles=None, u_prev=None):
        seen.append(tuple(u_prev))
        u = next(actions)
        return np.array(u), SolveInfo(True, 0, "ok", 1, 50.0)

    node.fop.solve = solve
    assert rig.spin_until(lambda: len(seen) > 4, feed=_fresh(rig))
    assert seen[1:4] == [(0.4, 0.5), (0.2, -0.3), (0.6, 0.1)]


def test_controller_publishes_diagnostics_and_solve_times(controller):
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Float64

    node, rig = controller
    diags, times = [], []
    rig.io.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, diags.append, 10)
    rig.io.create_subscription(Float64, TOPIC_SOLVE_TIME, lambda m: times.append(m.data), COMMAND_QOS)
    rig.obstacles()
    assert rig.spin_until(lambda: diags and len(times) > 10, timeout_s=3.0, feed=_fresh(rig))
    values = {kv.key: kv.value for kv in diags[-1].status[0].values}
    assert {"cycles", "solver_failures", "solver_fallbacks", "stale_odometry", "stale_subgoal"} <= set(values)
    assert all(0 < t < 1e5 for t in times)


def test_controller_theta_file_loads_without_rebuild(ctx, tmp_path):
    from hiopt_ros.control import acados_env
    from hiopt_ros.control.theta import Theta, save_theta

    path = save_theta(tmp_path / "theta.yaml", Theta(alpha=np.array([[1.0, 0.0]]), beta=np.array([0.3]), l=0.0))
    node = ControllerNode(context=ctx, parameter_overrides=overrides(theta_file=str(path)))
    builds = acados_env.BUILD_COUNT
    assert node.fop.theta.K == 1
    result = node.set_parameters([Parameter("theta_file", value="")])[0]
    assert result.successful and node.fop.theta.K == 0
    assert acados_env.BUILD_COUNT == builds
    assert not node.set_parameters([Parameter("c_p", value=2.0)])[0].successful  # start-up only
    node.destroy_node()


# ------------------------------------------------------------------------------------------------
# planner and sim

def test_planner_publishes_subgoals_and_reports_goal_reached(ctx):
    node = PlannerNode(context=ctx, parameter_overrides=overrides(goal_xy=[1.0, 0.0], planner_rate_hz=50.0))
    rig = Rig(ctx, node)
    try:
        rig.obstacles(np.zeros((0, 3)))
        # the latched goal-reached flag and the subgoals arrive on different topics: wait for both
        assert rig.spin_until(lambda: len(rig.subgoals) > 2 and rig.reached, feed=lambda: rig.odom(0.0, 0.0, 0.0))
        assert rig.subgoals[-1] == pytest.approx((0.6, 0.0))  # look-ahead towards the goal
        assert rig.reached[-1] is False
        assert rig.spin_until(lambda: rig.reached[-1], feed=lambda: rig.odom(0.9, 0.0, 0.0))
        assert rig.subgoals[-1] == pytest.approx((1.0, 0.0))
    finally:
        rig.close()


def test_planner_is_silent_without_fresh_odometry(ctx):
    node = PlannerNode(context=ctx, parameter_overrides=overrides(planner_rate_hz=50.0, odom_timeout_s=0.2))
    rig = Rig(ctx, node)
    try:
        rig.obstacles()
        assert rig.spin_until(lambda: len(rig.subgoals) > 0, feed=lambda: rig.odom(0.0, 0.0, 0.0))
        rig.spin(0.3)
        n = len(rig.subgoals)
        rig.spin(0.3)
        assert len(rig.subgoals) == n
    finally:
        rig.close()


def test_sim_node_publishes_odometry_obstacles_and_collision(ctx):
    from visualization_msgs.msg import MarkerArray

    node = SimNode(context=ctx, parameter_overrides=overrides(obstacles_xyr=[0.75, 0.0, 0.3]))
    rig = Rig(ctx, node)
    late: list = []
    collisions: list = []
    rig.io.create_subscription(Bool, TOPIC_COLLISION, lambda m: collisions.append(m.data), LATCHED_QOS)
    try:
        assert rig.spin_until(lambda: len(rig.odoms) > 3)
        assert rig.odoms[-1] == pytest.approx([0.0, 0.0, 0.0], abs=1e-3)
        # a late joiner still gets the obstacles (transient local)
        rig.io.create_subscription(MarkerArray, TOPIC_OBSTACLES, late.append, LATCHED_QOS)
        assert rig.spin_until(lambda: late)
        assert obstacles_from_markers(late[0]) == pytest.approx(np.array([[0.75, 0.0, 0.3]]))
        cmd = rig.io.create_publisher(Twist, TOPIC_CMD_VEL, COMMAND_QOS)

        def drive():
            msg = Twist()
            msg.linear.x = 0.5
            cmd.publish(msg)
        assert rig.spin_until(lambda: collisions and collisions[-1], timeout_s=5.0, feed=drive)
        assert collisions[0] is False and node.world.collided
        assert rig.odoms[-1][0] > 0.1
    finally:
        rig.close()


def test_sim_node_stops_the_wheels_when_cmd_vel_goes_silent(ctx):
    node = SimNode(context=ctx, parameter_overrides=overrides(obstacles_xyr=[], cmd_vel_timeout_s=0.2))
    rig = Rig(ctx, node)
    try:
        cmd = rig.io.create_publisher(Twist, TOPIC_CMD_VEL, COMMAND_QOS)
        msg = Twist()
        msg.linear.x = 0.5
        assert rig.spin_until(lambda: node.world.velocity()[0] > 0.3, feed=lambda: cmd.publish(msg))
        # (the delay is asserted on the sim's stamps in test_faults_integration.py)
        assert rig.spin_until(lambda: abs(node.world.velocity()[0]) < 0.05)
    finally:
        rig.close()


@pytest.mark.parametrize("use_expert", [False, True])
def test_bringup_arguments_really_set_every_override(ctx, tmp_path, use_expert):
    """The exact --ros-args the launcher (and nav.launch.py) give each node: overrides beat the node's
    own section of the parameter file, and the file's values arrive too."""
    from hiopt_ros import bringup

    params = PARAMS
    sections = bringup.load_sections(params)
    theta = tmp_path / "theta.yaml"
    theta.write_text("x")
    specs = bringup.graph(params, theta_file=str(theta), use_expert=use_expert, gui=True, use_sim_time=True)
    assert [s.name for s in specs] == (["sim_node", "expert_node"] if use_expert
                                       else ["sim_node", "planner_node", "controller_node"])
    for spec in specs:
        args = bringup.ros_args(spec, params, overrides_dir=tmp_path)
        node = rclpy.create_node("x", context=ctx, cli_args=args,
                                 automatically_declare_parameters_from_overrides=True)
        try:
            assert node.get_name() == spec.name
            for key, value in {**sections.get(spec.name, {}), **spec.parameters}.items():
                assert node.get_parameter(key).value == value, f"{spec.name}.{key}"
        finally:
            node.destroy_node()
    sim = specs[0].parameters
    assert sim["gui"] is True and sim["publish_clock"] is True
    if not use_expert:
        assert specs[2].parameters["theta_file"] == str(theta.resolve())
        assert specs[2].parameters["use_sim_time"] is True


# ------------------------------------------------------------------------------------------------
# lifecycle, θ swap, clocks

def test_inactive_controller_is_silent_until_activated_and_reports_its_counts_on_deactivation(ctx):
    from diagnostic_msgs.msg import DiagnosticArray

    node = ControllerNode(context=ctx, parameter_overrides=overrides(autostart=False))
    rig = Rig(ctx, node)
    diags: list = []
    rig.io.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, diags.append, 10)
    try:
        rig.obstacles()
        rig.spin(0.4, feed=_fresh(rig))
        assert rig.cmds == [] and node.counters["cycles"] == 0     # inactive: no command at all
        node.trigger_activate()
        assert rig.spin_until(lambda: rig.cmds and rig.cmds[-1][0] > 0.1, feed=_fresh(rig))
        node.trigger_deactivate()
        assert rig.spin_until(lambda: diags and "published:/cmd_vel" in _values(diags[-1]))
        assert rig.spin_until(rig.caught_up, feed=_fresh(rig))
        assert rig.cmds[-1] == (0.0, 0.0)                            # the last command is a stop
        assert int(_values(diags[-1])["published:/cmd_vel"]) == len(rig.cmds) == node.counters["cycles"] + 1
    finally:
        rig.close()


def _values(diag_array) -> dict[str, str]:
    return {kv.key: kv.value for kv in diag_array.status[0].values}


def test_theta_swap_is_all_or_nothing(ctx, tmp_path):
    from hiopt_ros.control.theta import Theta, save_theta

    a = save_theta(tmp_path / "a.yaml", Theta(alpha=np.array([[1.0, 0.0]]), beta=np.array([0.3]), l=0.0))
    b = save_theta(tmp_path / "b.yaml", Theta(alpha=np.array([[0.0, 1.0], [1.0, 1.0]]), beta=np.zeros(2), l=0.0))
    node = ControllerNode(context=ctx, parameter_overrides=overrides(theta_file=str(a)))
    try:
        before = node.fop.theta
        # a batch with a read-only parameter is refused as a whole: θ stays
        result = node.set_parameters_atomically([Parameter("theta_file", value=str(b)), Parameter("c_p", value=2.0)])
        assert not result.successful and node.fop.theta is before
        # a file that does not load is refused: θ stays
        assert not node.set_parameters([Parameter("theta_file", value=str(tmp_path / "missing.yaml"))])[0].successful
        assert node.fop.theta is before and node.get_parameter("theta_file").value == str(a)
        # a good file is swapped in by the post-set callback
        assert node.set_parameters([Parameter("theta_file", value=str(b))])[0].successful
        assert node.fop.theta.K == 2 and node.get_parameter("theta_file").value == str(b)
    finally:
        node.destroy_node()


@pytest.mark.parametrize("use_sim_time", [False, True])
def test_input_watchdogs_use_a_steady_clock_unless_sim_time(ctx, use_sim_time):
    for cls in (ControllerNode, PlannerNode):
        node = cls(context=ctx, parameter_overrides=overrides(use_sim_time=use_sim_time))
        try:
            steady = node.watchdog.now_ns is time.monotonic_ns
            assert steady != use_sim_time, cls.__name__
            if use_sim_time:   # the node's clock, which follows /clock
                assert node.get_clock().clock_type == rclpy.clock.ClockType.ROS_TIME
                assert node.get_clock().ros_time_is_active
        finally:
            node.destroy_node()


def test_sim_node_keeps_simulated_time_with_the_wall_clock_when_its_timer_is_late(ctx):
    """Callbacks held back (a busy executor) must not slow simulated time down: the world advances
    by the measured time between updates (a fixed step per callback would advance it by a third)."""
    node = SimNode(context=ctx, parameter_overrides=overrides(obstacles_xyr=[], max_step_s=1.0))
    exe = SingleThreadedExecutor(context=ctx)
    exe.add_node(node)
    try:
        while node.counters["steps"] == 0:
            exe.spin_once(timeout_sec=0.05)
        t0_wall, t0_sim, t0_step_ns = time.monotonic(), node.world.time_s, node._last_step_ns
        while time.monotonic() - t0_wall < 1.0:
            for _ in range(4):                  # the step, odometry and diagnostics timers
                exe.spin_once(timeout_sec=0.0)
            time.sleep(0.03)                    # 3 step periods late, every time
        elapsed_sim = node.world.time_s - t0_sim
        steps_span_s = (node._last_step_ns - t0_step_ns) * 1e-9     # on the node's steady clock
        assert node.counters["capped_steps"] == 0
        # physics = measured time (a fixed step per callback would give about a third of it)
        assert elapsed_sim == pytest.approx(steps_span_s, abs=1.0 / 240.0)
        assert steps_span_s > 0.5
    finally:
        exe.shutdown()
        node.destroy_node()


def test_sim_node_caps_one_update_after_a_stall(ctx):
    """A stall longer than max_step_s advances the world by max_step_s (slow motion, no jump)."""
    node = SimNode(context=ctx, parameter_overrides=overrides(obstacles_xyr=[], max_step_s=0.05))
    exe = SingleThreadedExecutor(context=ctx)
    exe.add_node(node)
    try:
        while node.counters["steps"] < 3:
            exe.spin_once(timeout_sec=0.05)
        time.sleep(0.5)
        before, steps = node.world.time_s, node.counters["steps"]
        while node.counters["steps"] == steps:
            exe.spin_once(timeout_sec=0.05)
        assert node.counters["capped_steps"] >= 1
        assert node.world.time_s - before <= 0.05 + 1.0 / 240.0
    finally:
        exe.shutdown()
        node.destroy_node()
