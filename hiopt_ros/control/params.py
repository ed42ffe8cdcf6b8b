"""Solver configurations from a ROS parameter file (config/nav.yaml), for code that runs without ROS.

The nodes read these values as ROS parameters; the offline tools (demonstrations, offline.fit) and
the pure-Python loop read the same file through these two functions, so the FOP they fit or run
and the MPC that records demonstrations are the ones the stack runs. The shared model (Ts_s,
d_safe_m, input bounds, max_obstacles) lives under controller_node, the robot radius under
sim_node (see the header of config/nav.yaml).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .fop import FopConfig
from .model import UnicycleLimits
from .mpc import MpcConfig

DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "config" / "nav.yaml"
_BOUNDS = ("v_min_mps", "v_max_mps", "omega_min_radps", "omega_max_radps")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, dict[str, Any]]:
    """Read a ROS 2 parameter file into {node_name: {param: value}}."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"parameter file not found: {path}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of node names to 'ros__parameters'")
    return {node: (body or {}).get("ros__parameters", {}) for node, body in raw.items()}


def _shared_model(params: dict) -> dict[str, Any]:
    sim, ctrl = params.get("sim_node", {}), params.get("controller_node", {})
    kw: dict[str, Any] = {}
    if "robot_radius_m" in sim:
        kw["robot_radius_m"] = float(sim["robot_radius_m"])
    for name in ("d_safe_m", "Ts_s"):
        if name in ctrl:
            kw[name] = float(ctrl[name])
    if "max_obstacles" in ctrl:
        kw["M"] = int(ctrl["max_obstacles"])
    bounds = {k: float(ctrl[k]) for k in _BOUNDS if k in ctrl}
    if bounds:
        kw["limits"] = UnicycleLimits(**bounds)
    return kw


def fop_config_from_params(params_path: str | Path = DEFAULT_PARAMS, K: int | None = None) -> FopConfig:
    """FopConfig as controller_node builds it (weights c_p, c_h, c_u and relu_terms too)."""
    params = load_params(params_path)
    ctrl = params.get("controller_node", {})
    kw = _shared_model(params)
    for name in ("c_p", "c_h", "c_u"):
        if name in ctrl:
            kw[name] = float(ctrl[name])
    kw["K"] = int(K if K is not None else ctrl.get("relu_terms", FopConfig.K))
    return FopConfig(**kw)


def mpc_config_from_params(params_path: str | Path = DEFAULT_PARAMS) -> MpcConfig:
    """MpcConfig as expert_node builds it: the shared model plus horizon_steps and subgoal_steps."""
    params = load_params(params_path)
    expert = params.get("expert_node", {})
    kw = _shared_model(params)
    if "horizon_steps" in expert:
        kw["N"] = int(expert["horizon_steps"])
    if "subgoal_steps" in expert:
        kw["subgoal_steps"] = int(expert["subgoal_steps"])
    return MpcConfig(**kw)
