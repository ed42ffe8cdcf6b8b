"""pytest plugin, loaded before any installed plugin (pytest.ini: `-p pytest_guard`), that
turns a known-broken pytest / launch_testing pair into one clear line instead of a traceback.

It lives at the repository root beside pytest.ini, with the tests and outside the installed
packages: `python -m pytest` (what `make test` and `colcon test` run, from the package folder)
puts the current folder on sys.path before `-p` plugins are imported, on every pytest version.
(In test/ it was found only through pytest.ini's `pythonpath`, which pytest < 8.4 applies after
`-p` plugins: a distribution's pytest 7.4 then stopped at start-up with "Error importing plugin".)

On a ROS 2 Kilted machine, launch_testing 3.7 registers a pytest plugin (entry point `pytest11`)
whose `pytest_pycollect_makemodule` hook still takes the `path` argument that pytest 9 removed, so
pytest 9 aborts every run at start-up with `PluginValidationError` (fixed in launch_testing 3.9).
tools/requirements.lock pins pytest < 9; this guard covers installs that do not come from the lock
(colcon workspaces, a system pytest). `-p` plugins are imported before entry-point plugins, so
raising `pytest.UsageError` here makes pytest print `ERROR: <message>` and exit with status 4.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import shlex
import sys
from typing import Iterable

import pytest

#: first launch_testing release whose pytest plugin works with pytest 9
LAUNCH_TESTING_FIXED = (3, 9)
PYTEST_BREAKING = (9,)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _entry_point_plugins() -> list[tuple[str, str, str]]:
    """(entry point name, distribution name, distribution version) of every pytest11 plugin."""
    out = []
    for ep in md.entry_points(group="pytest11"):
        dist = getattr(ep, "dist", None)
        out.append((ep.name, dist.metadata["Name"] if dist else "?", dist.version if dist else "0"))
    return out


def _autoload_disabled_for(name: str, args: Iterable[str]) -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return True
    args = list(args)
    blocked = {f"no:{name}"}
    return any(a in blocked for a in args) or any(
        a == "-p" and b in blocked for a, b in zip(args, args[1:])) or any(a == f"-pno:{name}" for a in args)


def conflict(pytest_version: str, plugins: Iterable[tuple[str, str, str]], args: Iterable[str] = ()) -> str | None:
    """The one-line error for a pytest ≥ 9 beside a launch_testing plugin < 3.9, else None."""
    if _release(pytest_version)[:1] < PYTEST_BREAKING:
        return None
    for ep_name, dist_name, dist_version in plugins:
        if dist_name.replace("-", "_").lower() != "launch_testing":
            continue
        if _release(dist_version) >= LAUNCH_TESTING_FIXED or _autoload_disabled_for(ep_name, args):
            return None
        return (f"pytest {pytest_version} cannot load the pytest plugin of launch_testing {dist_version} "
                f"(ROS 2; fixed in launch_testing {'.'.join(map(str, LAUNCH_TESTING_FIXED))}): install "
                "pytest<9 into this Python (`python -m pip install 'pytest<9'`; tools/requirements.lock pins "
                f"it), or disable that plugin for this run (`-p no:{ep_name}`)")
    return None


_message = conflict(pytest.__version__, _entry_point_plugins(),
                    shlex.split(os.environ.get("PYTEST_ADDOPTS", "")) + sys.argv[1:])
if _message:
    raise pytest.UsageError(_message)
