"""planner_node's progress check runs only while the robot is being driven.

The shipped residual RL policy carries a progress check (the prior drives alone after a stall). With
no driver, or an inactive one, the robot cannot move, and the check used to report a stall every
window without end (one WARN every ~1.1 s); now it judges progress only while /cmd_vel carries
commands, whatever they are (a stalled robot's driver commands stops).
"""
from __future__ import annotations

from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("torch")
pytestmark = pytest.mark.ros

from geometry_msgs.msg import Twist  # noqa: E402
from test_nodes import Rig, overrides  # noqa: E402  (the in-process rig of the node tests)

from hiopt_ros.nodes.planner_node import PlannerNode  # noqa: E402
from hiopt_ros.nodes.topics import COMMAND_QOS, TOPIC_CMD_VEL  # noqa: E402

RESIDUAL_POLICY = Path(__file__).resolve().parents[1] / "config" / "policy" / "bilevel_learned.pt"


def test_progress_check_runs_only_while_the_robot_is_driven(ctx):
    node = PlannerNode(context=ctx, parameter_overrides=overrides(policy_checkpoint=str(RESIDUAL_POLICY),
                                                                 planner_rate_hz=50.0))
    rig = Rig(ctx, node)
    cmd_vel = rig.io.create_publisher(Twist, TOPIC_CMD_VEL, COMMAND_QOS)
    assert node.policy.progress_check is not None, "the shipped policy is expected to be residual"
    window = node.policy.progress_check.window + node.policy.progress_check.recovery

    def robot_still() -> None:
        rig.odom(1.0, -0.6, 0.4)

    def driver_commands_a_stop() -> None:
        robot_still()
        cmd_vel.publish(Twist())

    try:
        rig.obstacles()
        # 1. nothing drives the robot: many check windows pass and no stall is reported
        assert rig.spin_until(lambda: node.counters["cycles"] >= 5 * window and rig.subgoals,
                              timeout_s=60, feed=robot_still)
        assert node.counters["progress_recoveries"] == 0 and node.policy.recoveries == 0
        assert node.counters["undriven"] >= 4 * window
        # 2. a driver commands (a stop: the robot is stalled): the check runs and hands the stall to the prior
        assert rig.spin_until(lambda: node.counters["progress_recoveries"] >= 1, timeout_s=60,
                              feed=driver_commands_a_stop)
        assert node.being_driven()
        # 3. the driver goes away: once its last command is DRIVEN_WITHIN_S old the check pauses again
        assert rig.spin_until(lambda: not node.being_driven(), timeout_s=60, feed=robot_still)
        recoveries, cycles = node.counters["progress_recoveries"], node.counters["cycles"]
        assert rig.spin_until(lambda: node.counters["cycles"] >= cycles + 5 * window, timeout_s=60, feed=robot_still)
        assert node.counters["progress_recoveries"] == recoveries
        assert len(rig.subgoals) > 0 and not node.counters["policy_failures"]
    finally:
        rig.close()
