"""The stack's ROS parameter file (config/nav.yaml) read without ROS: sections, robot model, solver configs.

The nodes read these values as ROS parameters; bringup, the launcher, the offline tools
(demonstrations, offline.fit) and the pure-Python loop read the same file through this module, so
the FOP they fit or run and the MPC that records demonstrations are the ones the stack runs.

Layout of the file: facts several nodes share live once under ``/**`` (:data:`SHARED_PARAMETERS`:
the robot model of :class:`~hiopt_ros.control.model.RobotModel`, the goal, the /cmd_vel type);
every node reads them from there and its own section holds only what is its own. A shared
parameter inside a node's section is an error (:func:`node_sections` says which), because that node
would then disagree with the others.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import default_params_file
from .fop import FopConfig
from .model import RobotModel
from .mpc import MpcConfig

DEFAULT_PARAMS = default_params_file()
#: the section of a ROS 2 parameter file that applies to every node
SHARED_SECTION = "/**"
#: the task every node that needs it reads from `/**`: goal and its tolerance (the course's goal)
TASK_PARAMETERS = ("goal_xy", "goal_tolerance_m")
DEFAULT_GOAL_XY = (4.0, 0.0)          # [m]
DEFAULT_GOAL_TOLERANCE_M = 0.15       # the goal is reached within this distance [m]
#: parameters that must live under `/**` only
SHARED_PARAMETERS = (*RobotModel.PARAMETERS, *TASK_PARAMETERS, "enable_stamped_cmd_vel", "odom_frame", "base_frame")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, dict[str, Any]]:
    """Read a ROS 2 parameter file into {section: {param: value}} (sections: node names and `/**`)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"parameter file not found: {path}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of node names to 'ros__parameters'")
    out = {}
    for node, body in raw.items():
        if body is not None and not isinstance(body, dict):
            raise ValueError(f"{path}: section {node!r} must be a mapping with 'ros__parameters'")
        out[str(node)] = dict((body or {}).get("ros__parameters") or {})
    return out


def shared_parameters(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The `/**` section of a parameter file, after checking no node section repeats a shared fact."""
    return node_sections(path).get(SHARED_SECTION, {})


def node_sections(path: str | Path = DEFAULT_PARAMS) -> dict[str, dict[str, Any]]:
    """{node: parameters as that node sees them (`/**` merged in)}, plus `/**` itself.

    Raises ValueError naming the file, the node and the parameter when a node's own section holds
    one of :data:`SHARED_PARAMETERS` (move it under `/**`).
    """
    raw = load_params(path)
    common = raw.get(SHARED_SECTION, {})
    for node, body in raw.items():
        if node == SHARED_SECTION:
            continue
        misplaced = [k for k in body if k in SHARED_PARAMETERS]
        if misplaced:
            raise ValueError(f"{path}: {node}: {', '.join(misplaced)} belong(s) under '/**' (shared by every "
                             f"node, declared once); move them there")
    out = {node: {**common, **body} for node, body in raw.items() if node != SHARED_SECTION}
    out[SHARED_SECTION] = dict(common)
    return out


def robot_model_from_params(params_path: str | Path = DEFAULT_PARAMS) -> RobotModel:
    """The robot model every node of the stack declares from this file."""
    try:
        return RobotModel.from_parameters(shared_parameters(params_path))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{params_path}: robot model under '/**': {exc}") from None


def fop_config_from_params(params_path: str | Path = DEFAULT_PARAMS, K: int | None = None) -> FopConfig:
    """FopConfig as controller_node builds it (robot model, weights c_p, c_h, c_u and relu_terms)."""
    ctrl = node_sections(params_path).get("controller_node", {})
    kw: dict[str, Any] = robot_model_from_params(params_path).solver_kwargs()
    for name in ("c_p", "c_h", "c_u"):
        if name in ctrl:
            kw[name] = float(ctrl[name])
    kw["K"] = int(K if K is not None else ctrl.get("relu_terms", FopConfig.K))
    return FopConfig(**kw)


def mpc_config_from_params(params_path: str | Path = DEFAULT_PARAMS) -> MpcConfig:
    """MpcConfig as expert_node builds it: the robot model plus horizon_steps and subgoal_steps."""
    expert = node_sections(params_path).get("expert_node", {})
    kw: dict[str, Any] = robot_model_from_params(params_path).solver_kwargs()
    if "horizon_steps" in expert:
        kw["N"] = int(expert["horizon_steps"])
    if "subgoal_steps" in expert:
        kw["subgoal_steps"] = int(expert["subgoal_steps"])
    return MpcConfig(**kw)
