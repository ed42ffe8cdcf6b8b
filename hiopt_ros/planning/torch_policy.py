"""A trained upper level: a TorchScript module mapping an observation vector to a subgoal.

The RL training (``python -m sim.train``) saves its policy with ``torch.jit.save`` and the planner
node loads it here when ``policy_checkpoint`` is set; the end-to-end baseline's module (same
observation, output (v, ω)) is loaded by :class:`TorchCommandPolicy`. Training and deployment build the observation with the same
function, :func:`observation`, so the layout below is the contract between them.

Observation (float32, length ``3 + 3 * n_obstacles``; everything in the robot's body frame:
x forward, y left, origin at the robot):

    [0:2]   goal position relative to the robot, body frame [m]
    [2]     distance to the goal [m]
    [3 + 3j : 6 + 3j], j = 0..n_obstacles-1, the n nearest obstacles by clearance, nearest first:
            obstacle centre relative to the robot, body frame [m] (2), clearance from the robot's
            circle to the obstacle's surface [m] (1). Missing obstacles are padded with
            ``PAD = (0, 0, PAD_CLEARANCE_M)`` (far away, no direction).

Action (module output, length 2): the subgoal relative to the robot in the body frame [m]. It is
clipped to ``max_distance_m`` and turned into a world-frame point p̂ = p + R(yaw) · action.

End-to-end action (``action_kind == "cmd_vel"``): (v [m/s], ω [rad/s]), clipped to the bounds.

The module may carry the attributes ``n_obstacles`` (int), ``observation_version`` (int,
:data:`OBSERVATION_VERSION`) and ``action_kind`` (str, :data:`ACTION_SUBGOAL` or
:data:`ACTION_COMMAND`); when present they are checked at load time, so a planner never mistakes
an end-to-end policy's (v, ω) for a subgoal offset.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..control.model import DEFAULT_ROBOT, check_obstacles, check_vector

OBSERVATION_VERSION = 1
ACTION_SUBGOAL = "subgoal_offset_body_m"   # output: subgoal offset [m], body frame (bi-level upper level)
ACTION_COMMAND = "cmd_vel"                 # output: (v [m/s], ω [rad/s]) (end-to-end baseline)
DEFAULT_N_OBSTACLES = 4
PAD_CLEARANCE_M = 10.0


def observation_size(n_obstacles: int = DEFAULT_N_OBSTACLES) -> int:
    return 3 + 3 * n_obstacles


def observation(state, goal_xy, obstacles_xyr=None, robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m,
                n_obstacles: int = DEFAULT_N_OBSTACLES) -> np.ndarray:
    """The policy's input (see the module docstring): shape (3 + 3·n_obstacles,), float32."""
    state = check_vector("state", state, 3)
    goal = check_vector("goal_xy", goal_xy, 2)
    obs = check_obstacles(obstacles_xyr)
    c, s = math.cos(state[2]), math.sin(state[2])
    to_body = np.array([[c, s], [-s, c]])  # R(yaw)ᵀ
    out = np.empty(observation_size(n_obstacles), dtype=np.float32)
    rel_goal = to_body @ (goal - state[:2])
    out[0:2] = rel_goal
    out[2] = np.linalg.norm(rel_goal)
    rows = []
    for ox, oy, r in obs:
        rel = to_body @ (np.array([ox, oy]) - state[:2])
        rows.append((float(np.linalg.norm(rel)) - r - robot_radius_m, rel[0], rel[1]))
    rows.sort()
    for j in range(n_obstacles):
        if j < len(rows):
            clearance, dx, dy = rows[j]
            out[3 + 3 * j: 6 + 3 * j] = (dx, dy, clearance)
        else:
            out[3 + 3 * j: 6 + 3 * j] = (0.0, 0.0, PAD_CLEARANCE_M)
    return out


def action_to_subgoal(state, action, max_distance_m: float) -> np.ndarray:
    """World-frame subgoal from a body-frame offset, clipped to max_distance_m."""
    state = check_vector("state", state, 3)
    action = check_vector("action", action, 2)
    norm = float(np.linalg.norm(action))
    if norm > max_distance_m:
        action = action * (max_distance_m / norm)
    c, s = math.cos(state[2]), math.sin(state[2])
    return state[:2] + np.array([c * action[0] - s * action[1], s * action[0] + c * action[1]])


def load_module(path: str | Path, expect_action_kind: str = ACTION_SUBGOAL):
    """(module, n_obstacles) of a ``torch.jit.save``-d policy; checks its declared layout, action kind
    and output shape, with errors that name the file."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"policy checkpoint not found: {path}")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ValueError(f"{path} is not a TorchScript module (save it with torch.jit.save): {exc}") from None
    module.eval()
    version = getattr(module, "observation_version", OBSERVATION_VERSION)
    if int(version) != OBSERVATION_VERSION:
        raise ValueError(f"{path}: observation_version {version}, this planner builds version "
                         f"{OBSERVATION_VERSION} (see hiopt_ros/planning/torch_policy.py)")
    kind = str(getattr(module, "action_kind", ACTION_SUBGOAL))
    if kind != expect_action_kind:
        raise ValueError(f"{path}: its action is {kind!r}, expected {expect_action_kind!r} "
                         f"({'an end-to-end policy is run by e2e_node, not planner_node' if kind == ACTION_COMMAND else 'a subgoal policy is run by planner_node'})")
    n_obs = int(getattr(module, "n_obstacles", DEFAULT_N_OBSTACLES))
    probe = _forward(module, np.zeros(observation_size(n_obs), dtype=np.float32))
    if probe.shape != (2,):
        raise ValueError(f"{path}: the module must map an observation of size {observation_size(n_obs)} "
                         f"to 2 numbers, got output shape {probe.shape}")
    return module, n_obs


def _forward(module, obs: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(obs).unsqueeze(0))
    return np.asarray(out.detach().cpu().numpy(), dtype=float).reshape(-1)


class TorchPolicy:
    """Subgoal policy backed by a TorchScript module; same ``subgoal`` signature as LookaheadPolicy."""

    def __init__(self, module, n_obstacles: int = DEFAULT_N_OBSTACLES, max_distance_m: float = 1.5,
                 source: str = "") -> None:
        if not (max_distance_m > 0 and math.isfinite(max_distance_m)):
            raise ValueError(f"max_distance_m must be > 0, got {max_distance_m!r}")
        self.module = module
        self.n_obstacles = int(n_obstacles)
        self.max_distance_m = float(max_distance_m)
        self.source = source

    @classmethod
    def load(cls, path: str | Path, max_distance_m: float = 1.5) -> "TorchPolicy":
        """Load a ``torch.jit.save``-d subgoal module; checks its declared layout and output shape."""
        module, n_obs = load_module(path, ACTION_SUBGOAL)
        return cls(module, n_obstacles=n_obs, max_distance_m=max_distance_m, source=str(path))

    def _forward(self, obs: np.ndarray) -> np.ndarray:
        return _forward(self.module, obs)

    def subgoal(self, state, goal_xy, obstacles_xyr=None, robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m) -> np.ndarray:
        """World-frame subgoal p̂ (2,); raises ValueError on a non-finite module output."""
        obs = observation(state, goal_xy, obstacles_xyr, robot_radius_m, self.n_obstacles)
        action = self._forward(obs)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise ValueError(f"policy output must be 2 finite numbers, got {action.tolist()}")
        return action_to_subgoal(state, action, self.max_distance_m)


class TorchCommandPolicy:
    """End-to-end policy: the same observation mapped straight to (v [m/s], ω [rad/s]), clipped to
    ``lower``/``upper`` (the bounds 32e–f). No optimization layer."""

    def __init__(self, module, lower, upper, n_obstacles: int = DEFAULT_N_OBSTACLES, source: str = "") -> None:
        self.module = module
        self.lower = check_vector("lower", lower, 2)
        self.upper = check_vector("upper", upper, 2)
        if np.any(self.lower > self.upper):
            raise ValueError(f"command bounds: lower {self.lower.tolist()} > upper {self.upper.tolist()}")
        self.n_obstacles = int(n_obstacles)
        self.source = source

    @classmethod
    def load(cls, path: str | Path, lower, upper) -> "TorchCommandPolicy":
        module, n_obs = load_module(path, ACTION_COMMAND)
        return cls(module, lower, upper, n_obstacles=n_obs, source=str(path))

    def command(self, state, goal_xy, obstacles_xyr=None,
                robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m) -> np.ndarray:
        """(v, ω) (2,) within the bounds; raises ValueError on a non-finite module output."""
        obs = observation(state, goal_xy, obstacles_xyr, robot_radius_m, self.n_obstacles)
        u = _forward(self.module, obs)
        if u.shape != (2,) or not np.all(np.isfinite(u)):
            raise ValueError(f"policy output must be 2 finite numbers, got {u.tolist()}")
        return np.clip(u, self.lower, self.upper)
