"""The node graph of the navigation stack, in one place.

Both ``launch/nav.launch.py`` (machines with ROS 2 installed) and ``hiopt_ros.launcher`` (machines
with only the pip wheels) start exactly what :func:`graph` returns, with the same parameter file
and the same per-node parameter overrides:

* bi-level stack (default): ``sim_node``, ``planner_node``, ``controller_node``;
* ``use_expert``: ``sim_node``, ``expert_node`` (the MPC drives; used to record demonstrations).

Parameters live in ``config/nav.yaml``. A fact that several nodes need is written once there and
copied to the others here (:data:`SHARED`), so e.g. the robot radius or the goal cannot disagree
between nodes. The launch arguments (θ file, GUI, sim time) become overrides too.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "hiopt_ros"
REPO_ROOT = Path(__file__).resolve().parents[1]

#: (source node, parameter) -> nodes that receive the same value
SHARED: dict[tuple[str, str], tuple[str, ...]] = {
    ("sim_node", "robot_radius_m"): ("planner_node", "controller_node", "expert_node"),
    ("planner_node", "goal_xy"): ("sim_node", "expert_node"),
    ("planner_node", "goal_tolerance_m"): ("sim_node", "expert_node"),
    ("controller_node", "d_safe_m"): ("expert_node",),
    ("controller_node", "Ts_s"): ("expert_node",),
    ("controller_node", "v_min_mps"): ("expert_node",),
    ("controller_node", "v_max_mps"): ("expert_node",),
    ("controller_node", "omega_min_radps"): ("expert_node",),
    ("controller_node", "omega_max_radps"): ("expert_node",),
    ("controller_node", "max_obstacles"): ("expert_node",),
}

#: node name -> Python module whose main() runs it (also the console_scripts entry of setup.py)
NODE_MODULES: dict[str, str] = {
    "sim_node": "hiopt_ros.nodes.sim_node",
    "planner_node": "hiopt_ros.nodes.planner_node",
    "controller_node": "hiopt_ros.nodes.controller_node",
    "expert_node": "hiopt_ros.nodes.expert_node",
}


def default_params_file() -> Path:
    """config/nav.yaml of the source tree, else of the installed package (share/hiopt_ros/config)."""
    src = REPO_ROOT / "config" / "nav.yaml"
    if src.exists():
        return src
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / "config" / "nav.yaml"
    except Exception:  # pragma: no cover - neither a checkout nor an install
        return src


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph: node name (= executable), module, parameter overrides."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()

    @property
    def executable(self) -> str:
        return self.name

    @property
    def module(self) -> str:
        return NODE_MODULES[self.name]


def load_sections(params_file: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """{node: parameters} of a ROS 2 parameter file, with the `/**` section merged into each node."""
    from sim.course import load_params

    raw = load_params(params_file)
    common = raw.get("/**", {})
    return {node: {**common, **body} for node, body in raw.items() if node != "/**"}


def graph(params_file: str | os.PathLike | None = None, *, theta_file: str = "", use_expert: bool = False,
          gui: bool = False, use_sim_time: bool = False) -> list[NodeSpec]:
    """The processes to start, in start order (the simulator first)."""
    params_file = Path(params_file) if params_file else default_params_file()
    sections = load_sections(params_file)
    names = ["sim_node", "expert_node"] if use_expert else ["sim_node", "planner_node", "controller_node"]
    overrides: dict[str, dict[str, Any]] = {n: {} for n in names}
    for (src, key), dests in SHARED.items():
        if key in sections.get(src, {}):
            for dest in dests:
                if dest in overrides:
                    overrides[dest][key] = sections[src][key]
    overrides["sim_node"]["gui"] = bool(gui)
    overrides["sim_node"]["publish_clock"] = bool(use_sim_time)
    if theta_file and "controller_node" in overrides:
        overrides["controller_node"]["theta_file"] = str(Path(theta_file).expanduser().resolve())
    for n in names:
        overrides[n]["use_sim_time"] = bool(use_sim_time) and n != "sim_node"
    return [NodeSpec(n, overrides[n]) for n in names]


def write_overrides(spec: NodeSpec, folder: str | os.PathLike) -> Path:
    """The node's overrides as a parameter file keyed by its fully qualified name (what launch_ros does).

    They cannot be `-p name:=value` arguments: rcl files those under `/**`, and a node's own section
    in the parameter file (`sim_node: ros__parameters: ...`) beats `/**`, so they would be ignored.
    Among files keyed by the node's name, the last one wins.
    """
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.overrides.yaml"
    path.write_text(yaml.safe_dump({f"/{spec.name}": {"ros__parameters": dict(spec.parameters)}},
                                   default_flow_style=None, sort_keys=False))
    return path


def ros_args(spec: NodeSpec, params_file: str | os.PathLike | None = None,
             overrides_dir: str | os.PathLike | None = None) -> list[str]:
    """The --ros-args a launch_ros Node with the same name, parameters and remappings gets.

    `overrides_dir` receives the node's override file (default: a new temporary folder).
    """
    import tempfile

    params_file = Path(params_file) if params_file else default_params_file()
    args = ["--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(params_file)]
    if spec.parameters:
        folder = overrides_dir if overrides_dir is not None else tempfile.mkdtemp(prefix="hiopt_params_")
        args += ["--params-file", str(write_overrides(spec, folder))]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args


def command(spec: NodeSpec, params_file: str | os.PathLike | None = None, python: str | None = None,
            overrides_dir: str | os.PathLike | None = None) -> list[str]:
    """argv that runs one node of the graph with the project's Python (no ros2 CLI needed)."""
    return [python or sys.executable, "-m", spec.module, *ros_args(spec, params_file, overrides_dir)]


def child_env(domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: the source tree importable, DDS kept on this machine."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env.setdefault("RCUTILS_CONSOLE_OUTPUT_FORMAT", "[{severity}] [{name}]: {message}")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env
