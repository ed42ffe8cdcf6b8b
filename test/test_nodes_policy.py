"""The trained-policy loader (TorchScript) and the planner node using it."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hiopt_ros.planning import observation  # noqa: E402
from hiopt_ros.planning import torch_policy as tp  # noqa: E402


class _Straight(torch.nn.Module):
    """Tiny policy: half a metre towards the goal (body frame), read from the observation."""

    n_obstacles: int
    observation_version: int

    def __init__(self, n_obstacles: int = 4) -> None:
        super().__init__()
        self.n_obstacles = n_obstacles
        self.observation_version = observation.OBSERVATION_VERSION

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        rel = obs[:, 0:2]
        return 0.5 * rel / torch.clamp(obs[:, 2:3], min=1e-6)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "policy.pt"
    torch.jit.save(torch.jit.script(_Straight()), str(path))
    return path


def test_observation_layout_is_body_frame_and_padded():
    state = np.array([1.0, 1.0, math.pi / 2])          # facing +y
    obs = observation.observation(state, [1.0, 3.0], [[3.0, 1.0, 0.5]], robot_radius_m=0.3, n_obstacles=2)
    assert obs.shape == (observation.observation_size(2),) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[0:3], [2.0, 0.0, 2.0], atol=1e-6)       # goal straight ahead
    np.testing.assert_allclose(obs[3:6], [0.0, -2.0, 2.0 - 0.5 - 0.3], atol=1e-6)  # obstacle to the right
    np.testing.assert_allclose(obs[6:9], [0.0, 0.0, observation.PAD_CLEARANCE_M])


def test_obstacles_are_sorted_by_clearance():
    obs = observation.observation([0, 0, 0], [5, 0], [[4.0, 0.0, 0.2], [1.0, 0.0, 0.2]], n_obstacles=2)
    assert obs[3] == pytest.approx(1.0) and obs[6] == pytest.approx(4.0)


def test_loaded_policy_maps_to_world_frame_subgoal(checkpoint):
    policy = tp.TorchPolicy.load(checkpoint)
    sub = policy.subgoal([1.0, 1.0, math.pi / 2], [1.0, 3.0], [])
    np.testing.assert_allclose(sub, [1.0, 1.5], atol=1e-6)


def test_subgoal_is_clipped(checkpoint):
    policy = tp.TorchPolicy.load(checkpoint, max_distance_m=0.2)
    sub = policy.subgoal([0.0, 0.0, 0.0], [4.0, 0.0], [])
    np.testing.assert_allclose(sub, [0.2, 0.0], atol=1e-6)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="policy checkpoint not found"):
        tp.TorchPolicy.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript module"):
        tp.TorchPolicy.load(junk)

    class _Wrong(torch.nn.Module):
        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return obs[:, :3]

    wrong = tmp_path / "wrong.pt"
    torch.jit.save(torch.jit.script(_Wrong()), str(wrong))
    with pytest.raises(ValueError, match="to 2 numbers"):
        tp.TorchPolicy.load(wrong)


def test_non_finite_output_raises(checkpoint):
    class _Nan(torch.nn.Module):
        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return obs[:, :2] * float("nan")

    policy = tp.TorchPolicy(torch.jit.script(_Nan()))
    with pytest.raises(ValueError, match="finite"):
        policy.subgoal([0, 0, 0], [1, 0], [])


@pytest.mark.ros
def test_planner_node_uses_the_checkpoint(checkpoint):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from hiopt_ros.nodes.planner_node import PlannerNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx)  # the session's own ROS domain (conftest.py)
    try:
        node = PlannerNode(context=ctx, parameter_overrides=[Parameter("policy_checkpoint", value=str(checkpoint))])
        assert isinstance(node.policy, tp.TorchPolicy)
        node.state, node.obstacles = np.array([0.0, 0.0, 0.0]), np.zeros((0, 3))
        sent = []
        node.subgoal_pub.publish = sent.append
        node.on_plan()
        assert (sent[0].point.x, sent[0].point.y) == pytest.approx((0.5, 0.0))
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
