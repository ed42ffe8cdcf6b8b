"""Multi-process integration test with rclpy only: sim, planner and controller as separate processes.

Asserts that the robot reaches the goal without a collision, that /cmd_vel arrives at >= 90 % of
the control rate, and that killing the planner makes the controller stop the robot within its
subgoal timeout (and that a restarted planner lets it finish the course).
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from hiopt_ros import bringup  # noqa: E402
from hiopt_ros.launcher import NodeProcesses  # noqa: E402
from hiopt_ros.nodes import common as c  # noqa: E402
from hiopt_ros.recording import RunMonitor  # noqa: E402
from sim.course import load_course  # noqa: E402

PARAMS = Path(__file__).resolve().parents[1] / "config" / "nav.yaml"
STARTUP_S = 90.0


class Probe(RunMonitor):
    """The launcher's monitor plus the command values and the robot's speed, with receive times."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.cmds: list[tuple[float, float, float]] = []     # (t, v, omega)
        self.speeds: list[tuple[float, float]] = []          # (t, |v| from odometry)

    def on_cmd_vel(self, msg) -> None:
        super().on_cmd_vel(msg)
        self.cmds.append((self.now_s(), *c.twist_values(msg)))

    def on_odom(self, msg) -> None:
        super().on_odom(msg)
        self.speeds.append((self.now_s(), abs(msg.twist.twist.linear.x)))


pytestmark = [pytest.mark.ros, pytest.mark.integration]


def test_stack_reaches_goal_at_rate_and_stops_when_the_planner_dies(tmp_path, ros_domain_id):
    course = load_course(PARAMS)
    sections = bringup.load_sections(PARAMS)
    rate_hz = float(sections["controller_node"]["control_rate_hz"])
    subgoal_timeout_s = float(sections["controller_node"]["subgoal_timeout_s"])
    domain_id = ros_domain_id
    specs = {s.name: s for s in bringup.graph(PARAMS)}

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    exe = SingleThreadedExecutor(context=ctx)
    probe = Probe(commanded_rate_hz=rate_hz, goal_xy=course.goal_xy, context=ctx)
    exe.add_node(probe)

    def spin_until(cond, timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while not cond():
            exe.spin_once(timeout_sec=0.02)
            assert not nodes.dead() or what == "stop", f"node(s) died: {nodes.dead()} (logs in {tmp_path})"
            assert time.monotonic() < end, f"timed out waiting for {what} (logs in {tmp_path})"

    try:
        with NodeProcesses(PARAMS, tmp_path, bringup.child_env(domain_id)) as nodes:
            nodes.start(specs["sim_node"])
            spin_until(lambda: probe.odom_t, STARTUP_S, "odometry")
            nodes.start(specs["planner_node"])
            nodes.start(specs["controller_node"])
            spin_until(probe.ready, STARTUP_S, "the stack")
            t_start = probe.now_s()

            # 1. drive a metre, then kill the planner: the controller must stop the robot
            spin_until(lambda: probe.odom_xy[-1][0] > 1.0, 30.0, "the robot to drive 1 m")
            nodes.kill("planner_node", signal.SIGKILL)
            t_kill = probe.now_s()
            spin_until(lambda: nodes.dead().get("planner_node") is not None, 5.0, "stop")
            exe_end = time.monotonic() + subgoal_timeout_s + 1.0
            while time.monotonic() < exe_end:
                exe.spin_once(timeout_sec=0.02)
            after = [(t, v, w) for t, v, w in probe.cmds if t > t_kill]
            first_stop = next((t for t, v, w in after if v == 0.0 and w == 0.0), None)
            assert first_stop is not None, "the controller never stopped after the planner died"
            assert first_stop - t_kill <= subgoal_timeout_s + 0.15, \
                f"stopped {first_stop - t_kill:.2f} s after the planner died (timeout {subgoal_timeout_s} s)"
            assert all(v == 0.0 and w == 0.0 for t, v, w in after if t >= first_stop), "it moved again"
            assert max(s for t, s in probe.speeds[-5:]) < 0.05, "the robot is still moving"

            # 2. a new planner process: the robot finishes the course
            nodes.start(specs["planner_node"])
            spin_until(lambda: probe.reached or probe.collided, 60.0, "the goal")
            t_end = probe.reached_t or probe.now_s()
    finally:
        exe.remove_node(probe)
        probe.destroy_node()
        exe.shutdown()
        rclpy.try_shutdown(context=ctx)

    assert probe.reached and not probe.collided
    assert np.linalg.norm(np.asarray(probe.odom_xy[-1]) - course.goal_xy) <= course.goal_tolerance_m + 0.05
    clearance = min(course.clearance(xy) for xy in probe.odom_xy)
    assert clearance > 0.0
    achieved = probe.achieved_rate_hz(t_start, t_end)
    assert achieved >= 0.9 * rate_hz, f"/cmd_vel at {achieved:.1f} Hz < 90 % of {rate_hz} Hz"
    assert all(np.isfinite(v) and np.isfinite(w) for _, v, w in probe.cmds)
