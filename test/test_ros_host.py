"""The suite on a ROS 2 machine: tests that failed there, run here with what ROS does to the process.

On a ROS 2 machine the pytest plugins of launch / launch_testing load with every pytest run, and
importing ROS ``launch`` installs a logger class whose loggers do not propagate. Pyomo's solver
loggers then had no handler and Pyomo's output capture asked for ``sys.stderr.fileno()``, which
fails under ``capsys`` (``io.UnsupportedOperation: fileno``): two tests of test_amod.py and one of
test_experiments.py failed so. The inner pytest below loads a plugin that imports the real
``launch.logging`` when it is installed, else installs the same logger class, before anything else
is imported, and runs those tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAUNCH_LIKE_PLUGIN = textwrap.dedent('''
    """What importing ROS 2 `launch` does to logging: the real launch.logging when installed, else
    its LaunchLogger as a stand-in (every logger created afterwards does not propagate)."""
    import logging

    try:
        from launch.logging import LaunchLogger  # noqa: F401  (installs itself as the logger class)
        SOURCE = "real launch.logging"
    except ImportError:
        class LaunchLogger(logging.getLoggerClass()):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.propagate = False

        logging.setLoggerClass(LaunchLogger)
        SOURCE = "stand-in for launch.logging"

    def pytest_report_header(config):
        return f"logger class: {logging.getLoggerClass().__name__} ({SOURCE})"
''')

#: a Pyomo HiGHS solve under capsys that does not import the project: the fault itself
CONTROL_TEST = textwrap.dedent('''
    def test_pyomo_highs_solve_under_capsys(capsys):
        import pyomo.environ as pyo

        m = pyo.ConcreteModel()
        m.x = pyo.Var(bounds=(0, 1))
        m.o = pyo.Objective(expr=-m.x)
        pyo.SolverFactory("appsi_highs").solve(m)
        assert pyo.value(m.x) == 1
''')

AFFECTED = [
    "test/test_amod.py::test_fit_command_learns_cost_terms_and_reports_held_out_imitation",
    "test/test_amod.py::test_closest_optimal_solution_bounds_what_tie_breaking_can_reach",
    "test/test_experiments.py::test_table1_runs_every_method_on_the_same_seeds_and_writes_outputs",
]


def run_pytest(args: list[str], plugin_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "launch_like_logging", "-p", "no:cacheprovider",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    (tmp_path / "launch_like_logging.py").write_text(LAUNCH_LIKE_PLUGIN)
    return tmp_path


def test_the_launch_logger_class_breaks_a_bare_pyomo_solve_under_capsys(plugin_dir, tmp_path):
    """The stand-in reproduces the fault the ROS machine showed (so the next test means something)."""
    work = tmp_path / "control"
    work.mkdir()
    (work / "test_control.py").write_text(CONTROL_TEST)
    proc = run_pytest(["test_control.py"], plugin_dir, work)
    out = proc.stdout + proc.stderr
    assert "logger class: LaunchLogger" in out, out
    assert proc.returncode == 1 and "UnsupportedOperation: fileno" in out, out


@pytest.mark.slow
def test_pyomo_tests_pass_with_the_launch_logger_class_installed_first(plugin_dir):
    proc = run_pytest(AFFECTED, plugin_dir, ROOT)
    out = proc.stdout + proc.stderr
    assert "logger class: LaunchLogger" in out, out
    assert proc.returncode == 0, f"(a test renamed? exit 4/5 means not found)\n{out}"
    assert f"{len(AFFECTED)} passed" in out, out
