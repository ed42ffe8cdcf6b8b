"""A trained upper level: a TorchScript module mapping an observation vector to a subgoal.

The RL training (``python -m sim.train``) saves its policy with ``torch.jit.save`` and the planner
node loads it here when ``policy_checkpoint`` is set; the end-to-end baseline's module (same
observation, output (v, ω)) is loaded by :class:`TorchCommandPolicy`. Training and deployment
build the observation with the same function, :func:`hiopt_ros.planning.observation.observation`.

The observation the module reads and the action it writes (layout, action kinds, conversion to
a subgoal) are the contract of :mod:`hiopt_ros.planning.observation`, shared with the RL
environment that trains the module (sim.nav_env).

A residual policy is deployed with a progress check (:class:`ProgressCheck`, as navigation stacks
pair a local planner with a progress checker and a recovery behaviour): when the robot has moved
less than ``min_progress_m`` over the last ``window`` planner periods, the prior drives alone for
the next ``recovery`` periods. It exists for one failure of the learned residual: on an obstacle's
safety margin (32g) it can cancel exactly the turn the prior asks for, so the subgoal lies straight
ahead, the one-step FOP neither drives into the margin nor turns, and the deterministic policy
sees the same observation again. The check is in this class, so planner_node, sim.evaluate and
the tests run the same upper level.

End-to-end action (``action_kind == "cmd_vel"``): (v [m/s], ω [rad/s]), clipped to the bounds.

The module may carry the attributes ``n_obstacles`` (int), ``observation_version`` (int,
:data:`OBSERVATION_VERSION`) and ``action_kind`` (str, :data:`ACTION_SUBGOAL`,
:data:`ACTION_RESIDUAL` or :data:`ACTION_COMMAND`); when present they are checked at load time,
so a planner never mistakes an end-to-end policy's (v, ω) for a subgoal offset.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..control.model import DEFAULT_ROBOT, check_obstacles, check_vector, finite_floats
from .geometric import LookaheadPolicy
from .observation import (
    ACTION_COMMAND,
    ACTION_RESIDUAL,
    ACTION_SUBGOAL,
    DEFAULT_N_OBSTACLES,
    OBSERVATION_VERSION,
    SUBGOAL_KINDS,
    observation,
    observation_of,
    observation_size,
    offset_xy,
    residual_xy,
)


def prior_of(module):
    """The geometric prior a residual policy was trained on top of (its module attributes)."""
    return LookaheadPolicy(lookahead_m=float(module.prior_lookahead_m),
                           clearance_m=float(getattr(module, "prior_clearance_m", LookaheadPolicy.clearance_m)))


def load_module(path: str | Path, expect_action_kind: str | tuple[str, ...] = SUBGOAL_KINDS):
    """(module, n_obstacles) of a ``torch.jit.save``-d policy; checks its declared layout, action kind
    (one of `expect_action_kind`) and output shape, with errors that name the file."""
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
    kinds = (expect_action_kind,) if isinstance(expect_action_kind, str) else tuple(expect_action_kind)
    if kind not in kinds:
        runner = ("an end-to-end policy is run by e2e_node, not planner_node" if kind == ACTION_COMMAND
                  else "a subgoal policy is run by planner_node")
        raise ValueError(f"{path}: its action is {kind!r}, expected {' or '.join(map(repr, kinds))} ({runner})")
    if kind == ACTION_RESIDUAL:
        try:
            prior_of(module)
        except (AttributeError, ValueError) as exc:
            raise ValueError(f"{path}: a residual policy must carry a valid prior_lookahead_m: {exc}") from None
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


class NumpyMlp:
    """The deterministic PPO actor that ``sim.rl.export_torchscript`` writes (Linear layers with
    Tanh/ReLU between them, the action clipped to its box, then ``scale · a + offset``), evaluated
    with numpy from the module's own weights.

    Why: one forward pass of a 64×64 MLP is ~20 µs of torch dispatch in a quiet process but ~150 µs
    in one that also steps the physics and the FOP between calls (measured in sim.evaluate's
    process), against ~25 µs for these three matrix products in numpy. :meth:`from_module` returns
    None for any other layout and for a module whose numpy evaluation disagrees with torch's on
    random observations (> 1e-5), so the torch module stays the definition of the policy."""

    ACTIVATIONS = {"Tanh": np.tanh, "ReLU": lambda x: np.maximum(x, 0.0)}

    def __init__(self, layers, low, high, scale, offset) -> None:
        self.layers, self.low, self.high, self.scale, self.offset = layers, low, high, scale, offset

    @classmethod
    def from_module(cls, module, n_inputs: int, tolerance: float = 1e-5) -> "NumpyMlp | None":
        try:
            actor = module.actor
            if getattr(actor, "original_name", "") != "_PpoActor":
                return None
            state = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in module.state_dict().items()}
            layers = []
            for name, sub in actor.mlp.named_children():
                kind = getattr(sub, "original_name", "")
                if kind == "Linear":
                    layers.append((state[f"actor.mlp.{name}.weight"], state[f"actor.mlp.{name}.bias"]))
                elif kind in cls.ACTIVATIONS:
                    layers.append(cls.ACTIVATIONS[kind])
                else:
                    return None
            if getattr(actor.action_net, "original_name", "") != "Linear":
                return None
            layers.append((state["actor.action_net.weight"], state["actor.action_net.bias"]))
            mlp = cls(layers, state["actor.low"], state["actor.high"], state["scale"], state["offset"])
        except (AttributeError, KeyError, RuntimeError):
            return None
        obs = np.random.default_rng(0).normal(0.0, 3.0, size=(64, n_inputs)).astype(np.float32)
        try:
            diff = max(float(np.max(np.abs(mlp(o) - _forward(module, o)))) for o in obs)
        except (ValueError, RuntimeError):
            return None
        return mlp if diff <= tolerance else None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float64)
        for layer in self.layers:
            x = layer[0] @ x + layer[1] if isinstance(layer, tuple) else layer(x)
        return np.minimum(np.maximum(x, self.low), self.high) * self.scale + self.offset


def forward_function(module, n_inputs: int):
    """obs (n,) float32 -> action (m,) float64 of `module`: numpy (:class:`NumpyMlp`) when it
    reproduces the module, else the torch module itself."""
    mlp = NumpyMlp.from_module(module, n_inputs)
    return mlp if mlp is not None else (lambda obs: _forward(module, obs))


@dataclass
class ProgressCheck:
    """Stall detection of a residual policy, in planner periods (see the module docstring)."""

    window: int = 10                 # periods over which progress is measured (1 s at 10 Hz)
    min_progress_m: float = 0.05     # less movement than this over the window is a stall
    recovery: int = 10               # periods the prior then drives alone

    def __post_init__(self) -> None:
        if self.window < 1 or self.recovery < 1 or not (self.min_progress_m > 0 and math.isfinite(self.min_progress_m)):
            raise ValueError(f"ProgressCheck needs window >= 1, recovery >= 1 and min_progress_m > 0, got {self}")


class TorchPolicy:
    """Subgoal policy backed by a TorchScript module; same ``subgoal`` signature as LookaheadPolicy.

    ``prior``: the geometric waypoint policy whose output a residual module corrects
    (:data:`ACTION_RESIDUAL`); None for a module that outputs the offset from the robot.
    ``progress_check``: stall detection for a residual policy (None: off). ``recoveries`` counts
    the stalls it handed to the prior; :meth:`reset` forgets the history (a new episode)."""

    def __init__(self, module, n_obstacles: int = DEFAULT_N_OBSTACLES, max_distance_m: float = 1.5,
                 source: str = "", prior=None, progress_check: ProgressCheck | None = None) -> None:
        if not (max_distance_m > 0 and math.isfinite(max_distance_m)):
            raise ValueError(f"max_distance_m must be > 0, got {max_distance_m!r}")
        if progress_check is not None and prior is None:
            raise ValueError("a progress check needs a prior to hand a stall to (a residual policy)")
        self.module = module
        self.n_obstacles = int(n_obstacles)
        self._forward = forward_function(module, observation_size(self.n_obstacles))
        self.max_distance_m = float(max_distance_m)
        self.source = source
        self.prior = prior
        self.progress_check = progress_check
        self.recoveries = 0
        self._obstacles_in: object = object()   # the obstacle array last checked, and its rows
        self._obstacles: list = []
        self.reset()

    def reset(self) -> None:
        """Forget the positions of earlier periods and any recovery in progress (a new episode)."""
        window = self.progress_check.window if self.progress_check else 0
        self._positions: deque = deque(maxlen=window + 1)
        self._recovering = 0

    @classmethod
    def load(cls, path: str | Path, max_distance_m: float = 1.5,
             progress_check: ProgressCheck | None | bool = True) -> "TorchPolicy":
        """Load a ``torch.jit.save``-d subgoal module (offset or residual); checks its declared layout
        and output shape. A residual module gets ``progress_check`` (True: the default
        :class:`ProgressCheck`; None/False: none)."""
        module, n_obs = load_module(path, SUBGOAL_KINDS)
        prior = prior_of(module) if str(getattr(module, "action_kind", "")) == ACTION_RESIDUAL else None
        check = None
        if prior is not None and progress_check:
            check = ProgressCheck() if progress_check is True else progress_check
        return cls(module, n_obstacles=n_obs, max_distance_m=max_distance_m, source=str(path), prior=prior,
                   progress_check=check)

    @property
    def action_kind(self) -> str:
        return ACTION_SUBGOAL if self.prior is None else ACTION_RESIDUAL

    def subgoal(self, state, goal_xy, obstacles_xyr=None,
                robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m) -> np.ndarray:
        """World-frame subgoal p̂ (2,); raises ValueError on a non-finite module output.

        The inputs are checked once here and the observation, the prior and the residual are
        computed from those plain floats (what :func:`observation`, LookaheadPolicy.subgoal and
        :func:`residual_to_subgoal` compute, without checking the same inputs three times: this
        runs once per planner period, and its time counts in Table 2's decision time)."""
        x, y, yaw = finite_floats("state", state, 3)
        gx, gy = finite_floats("goal_xy", goal_xy, 2)
        if obstacles_xyr is not self._obstacles_in:  # check once per new obstacle array (as Fop does)
            self._obstacles = check_obstacles(obstacles_xyr).tolist()
            self._obstacles_in = obstacles_xyr
        obstacles = self._obstacles
        action = self._forward(observation_of(x, y, yaw, gx, gy, obstacles, robot_radius_m, self.n_obstacles))
        if action.shape != (2,):
            raise ValueError(f"policy output must be 2 finite numbers, got {action.tolist()}")
        ax, ay = action.tolist()
        if not (math.isfinite(ax) and math.isfinite(ay)):
            raise ValueError(f"policy output must be 2 finite numbers, got {[ax, ay]}")
        if self.prior is None:
            return np.array(offset_xy(x, y, yaw, ax, ay, self.max_distance_m))
        px, py = self.prior.waypoint(x, y, gx, gy, obstacles, robot_radius_m)
        if self._stalled(x, y):
            ax = ay = 0.0
        return np.array(residual_xy(x, y, yaw, px, py, ax, ay, self.max_distance_m))

    def _stalled(self, x: float, y: float) -> bool:
        """Progress check (one call per planner period): True while the prior drives alone."""
        check = self.progress_check
        if check is None:
            return False
        self._positions.append((x, y))
        if self._recovering > 0:
            self._recovering -= 1
            return True
        if (len(self._positions) > check.window
                and math.dist(self._positions[0], self._positions[-1]) < check.min_progress_m):
            self.recoveries += 1
            self._recovering = check.recovery - 1
            self._positions.clear()
            return True
        return False


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
        self._forward = forward_function(module, observation_size(self.n_obstacles))
        self.source = source

    @classmethod
    def load(cls, path: str | Path, lower, upper) -> "TorchCommandPolicy":
        module, n_obs = load_module(path, ACTION_COMMAND)
        return cls(module, lower, upper, n_obstacles=n_obs, source=str(path))

    def command(self, state, goal_xy, obstacles_xyr=None,
                robot_radius_m: float = DEFAULT_ROBOT.robot_radius_m) -> np.ndarray:
        """(v, ω) (2,) within the bounds; raises ValueError on a non-finite module output."""
        obs = observation(state, goal_xy, obstacles_xyr, robot_radius_m, self.n_obstacles)
        u = self._forward(obs)
        if u.shape != (2,) or not np.all(np.isfinite(u)):
            raise ValueError(f"policy output must be 2 finite numbers, got {u.tolist()}")
        return np.clip(u, self.lower, self.upper)
