"""launch/nav.launch.py without a ROS 2 installation: its arguments, its nodes and its clean-up.

This file is always collected (test_launch_nav.py holds the launch_testing test, which only runs
where launch_testing is importable). The launch file is executed against small stand-ins of the
`launch` / `launch_ros` classes it uses, so the node list it builds and the deletion of its
override files are checked on every machine.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from hiopt_ros import bringup


@pytest.fixture
def launch_file(repo_root) -> Path:
    return repo_root / "launch" / "nav.launch.py"


class _Record:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


def _fake_launch_modules() -> dict[str, types.ModuleType]:
    names = ("launch", "launch.actions", "launch.event_handlers", "launch.substitutions",
             "launch_ros", "launch_ros.actions")
    mods = {name: types.ModuleType(name) for name in names}
    mods["launch"].LaunchDescription = _Record
    for cls in ("DeclareLaunchArgument", "OpaqueFunction", "RegisterEventHandler"):
        setattr(mods["launch.actions"], cls, type(cls, (_Record,), {}))
    mods["launch.event_handlers"].OnShutdown = type("OnShutdown", (_Record,), {})
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    mods["launch_ros.actions"].Node = type("Node", (_Record,), {})
    return mods


def _load(launch_file: Path, monkeypatch):
    for name, mod in _fake_launch_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("nav_launch_under_test", launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_file_declares_the_arguments_and_uses_the_bringup_graph(launch_file):
    tree = ast.parse(launch_file.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    declared = {n.args[0].value for n in calls
                if getattr(n.func, "id", None) == "DeclareLaunchArgument" and n.args}
    assert {"params_file", "theta_file", "use_expert", "gui", "use_sim_time"} <= declared
    assert any(getattr(n.func, "attr", None) == "graph" and getattr(n.func.value, "id", None) == "bringup"
               for n in calls), "nav.launch.py must build its nodes from hiopt_ros.bringup.graph"


@pytest.mark.parametrize("use_expert", ["false", "true"])
def test_launch_file_starts_the_bringup_graph_and_deletes_its_override_files(launch_file, monkeypatch, tmp_path,
                                                                              use_expert):
    module = _load(launch_file, monkeypatch)
    description = module.generate_launch_description()
    actions = description.args[0]
    context = {a.args[0]: a.kwargs["default_value"] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    theta = tmp_path / "theta.yaml"
    theta.write_text("x")
    context.update(use_expert=use_expert, theta_file=str(theta), use_sim_time="true")
    opaque = next(a for a in actions if type(a).__name__ == "OpaqueFunction")
    produced = opaque.kwargs["function"](context)

    nodes = [a for a in produced if type(a).__name__ == "Node"]
    specs = bringup.graph(context["params_file"], theta_file=str(theta), use_expert=use_expert == "true",
                          use_sim_time=True)
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in specs]
    folders = set()
    for node, spec in zip(nodes, specs):
        params_file, overrides = node.kwargs["parameters"]
        assert params_file == context["params_file"] and node.kwargs["executable"] == spec.executable
        written = yaml.safe_load(Path(overrides).read_text())
        assert written == {f"/{spec.name}": {"ros__parameters": spec.parameters}}
        folders.add(Path(overrides).parent)
    assert len(folders) == 1 and folders.pop().is_dir()

    # the override folder goes away when the launch shuts down (no hiopt_launch_params_* left behind)
    (handler,) = [a.args[0] for a in produced if type(a).__name__ == "RegisterEventHandler"]
    assert type(handler).__name__ == "OnShutdown"
    folder = Path(nodes[0].kwargs["parameters"][1]).parent
    handler.kwargs["on_shutdown"](None, None)
    assert not folder.exists()
