"""The node graph of the navigation stack, in one place.

Both ``launch/nav.launch.py`` (machines with ROS 2 installed) and ``hiopt_ros.launcher`` (machines
with only the pip wheels) start exactly what :func:`graph` returns, with the same parameter file
and the same per-node parameter overrides. The graphs (:data:`GRAPHS`):

* ``bilevel`` (default): ``sim_node``, ``planner_node``, ``controller_node``;
* ``expert`` (``use_expert``): ``sim_node``, ``expert_node`` (the MPC drives; records demonstrations);
* ``e2e`` (``e2e_policy``): ``sim_node``, ``e2e_node`` (the end-to-end RL baseline drives).

A new graph is one entry in :data:`GRAPHS` (and its node in :data:`NODE_MODULES`).

Parameters live in ``config/nav.yaml``. Facts several nodes share (the robot model, the goal) are
written once under ``/**`` there and every node reads them from there, so nothing is copied here.
Only the launch arguments (θ file, GUI, sim time) become per-node overrides.
"""
from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiopt_ros.config import IMPORT_ROOT, PACKAGE, config_path, default_params_file  # noqa: F401 (re-exported)
from hiopt_ros.control.params import node_sections

#: node name -> Python module whose main() runs it (also the console_scripts entry of setup.py)
NODE_MODULES: dict[str, str] = {
    "sim_node": "sim.sim_node",  # the PyBullet bridge lives with the world (sim/)
    "planner_node": "hiopt_ros.nodes.planner_node",
    "controller_node": "hiopt_ros.nodes.controller_node",
    "expert_node": "hiopt_ros.nodes.expert_node",
    "e2e_node": "hiopt_ros.nodes.e2e_node",
}

#: graph name -> its nodes in start order (the simulator first; the last node drives the robot)
GRAPHS: dict[str, tuple[str, ...]] = {
    "bilevel": ("sim_node", "planner_node", "controller_node"),
    "expert": ("sim_node", "expert_node"),
    "e2e": ("sim_node", "e2e_node"),
}


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
    """{node: parameters} of a ROS 2 parameter file, with the `/**` section merged into each node
    (ValueError when a node's section repeats a shared fact, see hiopt_ros.control.params)."""
    return node_sections(params_file)


def graph(params_file: str | os.PathLike | None = None, *, theta_file: str = "", use_expert: bool = False,
          gui: bool = False, use_sim_time: bool = False, mode: str | None = None,
          autostart: bool = True, e2e_policy: str = "") -> list[NodeSpec]:
    """The processes to start, in start order (the simulator first).

    `mode` names a graph of :data:`GRAPHS` (default "bilevel", "expert" with `use_expert`, "e2e"
    with `e2e_policy`, the end-to-end policy file e2e_node runs).
    With ``autostart=False`` every node waits inactive for a lifecycle 'activate' transition (the
    launcher activates them once its recorder has matched their publishers).
    """
    params_file = Path(params_file) if params_file else default_params_file()
    node_sections(params_file)  # a misplaced shared fact fails here, before any process starts
    if use_expert and e2e_policy:
        raise ValueError("use_expert and e2e_policy choose different drivers; give one")
    mode = mode or ("expert" if use_expert else "e2e" if e2e_policy else "bilevel")
    if mode not in GRAPHS:
        raise ValueError(f"unknown graph {mode!r}; choose one of {', '.join(GRAPHS)}")
    names = GRAPHS[mode]
    overrides: dict[str, dict[str, Any]] = {n: {} for n in names}
    overrides["sim_node"]["gui"] = bool(gui)
    overrides["sim_node"]["publish_clock"] = bool(use_sim_time)
    if theta_file and "controller_node" in overrides:
        overrides["controller_node"]["theta_file"] = str(Path(theta_file).expanduser().resolve())
    if e2e_policy and "e2e_node" in overrides:
        overrides["e2e_node"]["policy_checkpoint"] = str(Path(e2e_policy).expanduser().resolve())
    for n in names:
        overrides[n]["use_sim_time"] = bool(use_sim_time) and n != "sim_node"
        if not autostart:
            overrides[n]["autostart"] = False
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

    `overrides_dir` receives the node's override file; the caller owns it and deletes it when the
    run ends (NodeProcesses does; launch/nav.launch.py on shutdown).
    """
    params_file = Path(params_file) if params_file else default_params_file()
    args = ["--ros-args", "-r", f"__node:={spec.name}", "--params-file", str(params_file)]
    if spec.parameters:
        if overrides_dir is None:
            raise ValueError(f"{spec.name} has parameter overrides: pass overrides_dir for its overrides file")
        args += ["--params-file", str(write_overrides(spec, overrides_dir))]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args


def command(spec: NodeSpec, params_file: str | os.PathLike | None = None, python: str | None = None,
            overrides_dir: str | os.PathLike | None = None) -> list[str]:
    """argv that runs one node of the graph with the project's Python (no ros2 CLI needed)."""
    return [python or sys.executable, "-m", spec.module, *ros_args(spec, params_file, overrides_dir)]


#: environment variables with which a user has configured DDS: then :func:`dds_env` leaves DDS to them
DDS_USER_SETTINGS = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS",
                     "FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def dds_env(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """DDS kept on this machine, in `env` (a copy for a child, or os.environ before rclpy.init).

    With Fast DDS (the default RMW) and no DDS setting of the user's: config/dds/fastdds_udp_loopback.xml,
    UDP on 127.0.0.1 only, no shared memory (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST would make
    rmw_fastrtps add its shared-memory transport, whose ports a SIGKILLed process leaves behind for
    the next process with its participant id to match and receive nothing; the profile says more).
    Processes with the usual LOCALHOST setting (a `ros2 topic echo` in a shell) talk to these as well.
    Otherwise (another RMW, or DDS configured by the user) only the discovery range defaults to LOCALHOST.
    """
    rmw = env.get("RMW_IMPLEMENTATION", "") or "rmw_fastrtps_cpp"
    if rmw != "rmw_fastrtps_cpp" or any(key in env for key in DDS_USER_SETTINGS):
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    else:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"    # rmw_fastrtps: the profile decides
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(config_path("dds", "fastdds_udp_loopback.xml"))
    return env


def child_env(domain_id: int | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: the source tree importable, DDS kept on this machine (:func:`dds_env`)."""
    env = dict(os.environ if base is None else base)
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(IMPORT_ROOT), *inherited])
    env["PYTHONUNBUFFERED"] = "1"
    dds_env(env)
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env.setdefault("RCUTILS_CONSOLE_OUTPUT_FORMAT", "[{severity}] [{name}]: {message}")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env
