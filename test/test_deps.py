"""Pinned, checked dependencies: the lock, the venv against the lock, the pytest/launch_testing
guard, and the acados version/signature check of the hand-written ctypes bindings."""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"hiopt_tools_{name}", TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(TOOLS))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(TOOLS))
    return mod


lock = _load_tool("lock")
lockcheck = _load_tool("lockcheck")


def _requirements_in() -> list[Requirement]:
    reqs = []
    for line in (TOOLS / "requirements.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            reqs.append(Requirement(line))
    return reqs


# ------------------------------------------------------------------------------------------ lock


def test_lock_pins_every_requirement_within_its_range_with_a_hash():
    pins, header = lock.read_lock()
    assert header["inputs-sha256"] == lock.inputs_sha256(), \
        "tools/requirements.in changed after the lock was generated: run .venv/bin/python tools/lock.py"
    assert header["target"] == "cp311-linux-x86_64"
    for req in _requirements_in():
        key = lock.canonical(req.name)
        assert key in pins, f"{req.name} is in requirements.in but not in requirements.lock"
        name, version, sha = pins[key]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} violates {req}"
        assert len(sha) == 64
    # the packages the brief names are locked to exact versions, dependencies included
    for name in ("ros-rclpy", "ros-rmw-fastrtps-cpp", "comma-deps-acados", "casadi", "torch", "pyomo",
                 "pyscipopt", "highspy", "rosbags", "pybullet", "gymnasium", "stable-baselines3", "hypothesis",
                 "tensorboard", "networkx", "tqdm", "matplotlib", "numpy", "scipy", "pyyaml", "pytest",
                 "pytest-timeout", "empy", "ros-rcl"):
        assert lock.canonical(name) in pins, name
    assert pins["casadi"][1] == "3.7.2" and pins["torch"][1] == "2.13.0+cpu"


def test_pytest_is_pinned_below_9():
    """Issue 9: launch_testing 3.7's pytest plugin is rejected by pytest 9."""
    pins, _ = lock.read_lock()
    assert int(pins["pytest"][1].split(".")[0]) < 9
    assert int(pytest.__version__.split(".")[0]) < 9


def test_malformed_lock_line_is_refused_with_its_line_number(tmp_path):
    bad = tmp_path / "requirements.lock"
    bad.write_text("# target: cp311-linux-x86_64\nnumpy==2.4.6\n")  # no hash
    with pytest.raises(SystemExit, match=r"requirements.lock:2: not a `name==version --hash"):
        lock.read_lock(bad)


def test_installed_versions_equal_the_lock():
    """The venv the suite runs in is exactly the lock (versions, no extras, casadi's own files)."""
    if not (Path(sys.prefix) / ".hiopt-bootstrap").is_file():
        pytest.skip(f"{sys.prefix} was not made by tools/bootstrap.sh (e.g. a ROS/colcon Python)")
    assert lockcheck.differences() == []


def _fake_dist(site: Path, name: str, version: str, files: tuple[str, ...] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files) + f"{info.name}/METADATA,,\n")


def test_lockcheck_names_every_kind_of_difference(tmp_path):
    site = tmp_path / "site"
    _fake_dist(site, "alpha", "1.0")
    _fake_dist(site, "beta", "2.1")                       # locked 2.0
    _fake_dist(site, "stray", "0.1")                      # not locked
    _fake_dist(site, "ros-wrap", "3.0", files=("inner-9.9.dist-info/METADATA",))
    _fake_dist(site, "inner", "9.9")                      # nested in ros-wrap's RECORD: ignored
    lockfile = tmp_path / "requirements.lock"
    lockfile.write_text(f"# target: {lock.target_tag()}\n" + "".join(
        f"{n}=={v} --hash=sha256:{'0' * 64}\n" for n, v in
        [("alpha", "1.0"), ("beta", "2.0"), ("gamma", "1.5"), ("ros-wrap", "3.0")]))
    problems = lockcheck.differences(lockfile, site=[str(site)])
    assert problems == ["beta 2.1 is installed, the lock says 2.0",
                        "gamma==1.5 is locked but not installed",
                        "stray 0.1 is installed but not in the lock"]
    _, nested = lockcheck.installed([str(site)])
    assert nested == {"inner": "ros-wrap"}


# ---------------------------------------------------------------------- pytest / launch_testing


def test_guard_flags_only_pytest9_with_an_old_launch_testing_plugin():
    from pytest_guard import conflict

    old = [("launch_testing", "launch_testing", "3.7.1")]
    msg = conflict("9.0.2", old)
    assert msg and "launch_testing 3.7.1" in msg and "pytest<9" in msg and "\n" not in msg
    assert conflict("8.4.2", old) is None
    assert conflict("9.0.2", [("launch_testing", "launch_testing", "3.9.0")]) is None
    assert conflict("9.0.2", [("timeout", "pytest-timeout", "2.4.0")]) is None
    assert conflict("9.0.2", old, ["-p", "no:launch_testing"]) is None


def _fake_launch_testing(site: Path, version: str) -> None:
    """A launch_testing distribution whose pytest plugin has the pre-pytest-9 hook signature."""
    pkg = site / "launch_testing" / "pytest"
    pkg.mkdir(parents=True)
    (site / "launch_testing" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "hooks.py").write_text("def pytest_pycollect_makemodule(path, parent):\n    return None\n")
    info = site / f"launch_testing-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: launch_testing\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[pytest11]\nlaunch_testing = launch_testing.pytest.hooks\n")


@pytest.mark.slow
@pytest.mark.parametrize("fake_pytest_version,expect_error", [(None, False), ("9.0.0", True)])
def test_guard_stops_pytest_at_start_up_with_one_line(tmp_path, fake_pytest_version, expect_error):
    """A real pytest process with a launch_testing 3.7 plugin installed: pytest 8 runs the tests;
    'pytest 9' (the version the guard reads, faked) stops with exit 4 and the one-line ERROR."""
    site = tmp_path / "site"
    _fake_launch_testing(site, "3.7.1")
    proj = tmp_path / "proj"
    (proj / "test").mkdir(parents=True)
    (proj / "test" / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    (proj / "pytest.ini").write_text((ROOT / "pytest.ini").read_text())
    patch = f"pytest.__version__ = {fake_pytest_version!r}; " if fake_pytest_version else ""
    # only the fake launch_testing plugin: the installed ones (on a ROS machine launch_pytest,
    # launch_testing_ros, ... which would import the fake launch_testing) are kept out by name
    others = sorted({ep.name for ep in md.entry_points(group="pytest11")} - {"launch_testing"})
    blocked = [a for name in others for a in ("-p", f"no:{name}")]
    code = f"import sys, pytest; {patch}sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', *{blocked!r}]))"
    # the guard (pytest_guard.py at the repository root) is found through PYTHONPATH here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    for key in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=proj, env=env, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    if expect_error:
        assert proc.returncode == 4, out
        line = next(text for text in out.splitlines() if text.startswith("ERROR:"))
        assert "launch_testing 3.7.1" in line and "pytest<9" in line
        assert "Traceback" not in out and "PluginValidationError" not in out
    else:
        assert proc.returncode == 0, out
        assert "1 passed" in out


# ------------------------------------------------------------------------------------- acados


def test_locked_acados_is_the_one_the_bindings_were_checked_against():
    from hiopt_ros.control import acados_env

    pins, _ = lock.read_lock()
    assert pins["comma-deps-acados"][1] in acados_env.ACADOS_SUPPORTED_VERSIONS
    info = acados_env.check_acados()
    assert info["version"] == pins["comma-deps-acados"][1]


@pytest.fixture
def fresh_acados_env(monkeypatch):
    """acados_env as if nothing had been loaded yet in this process."""
    from hiopt_ros.control import acados_env

    monkeypatch.setattr(acados_env, "_LOADED", False)
    monkeypatch.setattr(acados_env, "_ACADOS_INFO", {})
    return acados_env


def test_mismatching_acados_version_is_refused_at_start_up(fresh_acados_env, monkeypatch, tmp_path):
    from hiopt_ros.control.fop import Fop, FopConfig

    env = fresh_acados_env
    monkeypatch.setattr(env, "installed_acados_version", lambda: "0.5.1")
    monkeypatch.setenv("HIOPT_CACHE_DIR", str(tmp_path))
    builds = env.BUILD_COUNT
    with pytest.raises(env.AcadosVersionError) as err:
        Fop(FopConfig(K=1, M=1))
    msg = str(err.value)
    assert "comma-deps-acados 0.5.1 is installed" in msg and "0.2.2.post92" in msg
    assert "tools/bootstrap.sh" in msg and "\n" not in msg
    assert env.BUILD_COUNT == builds and not env._LOADED and not list(tmp_path.iterdir())


def test_changed_c_prototype_is_refused_naming_the_function(fresh_acados_env, monkeypatch, tmp_path):
    import acados

    env = fresh_acados_env
    header = (Path(acados.DIR) / env._INTERFACE_HEADER).read_text()
    # a later acados added the nlp_out argument to ocp_nlp_constraints_model_set
    changed = header.replace("ocp_nlp_in *in, int stage, const char *field, void *value);",
                             "ocp_nlp_in *in, ocp_nlp_out *out, int stage, const char *field, void *value);", 1)
    assert changed != header
    fake = tmp_path / "ocp_nlp_interface.h"
    fake.write_text(changed)
    monkeypatch.setattr(env, "_INTERFACE_HEADER", fake)  # absolute: Path(acados.DIR) / fake == fake
    with pytest.raises(env.AcadosVersionError,
                       match=r"ocp_nlp_constraints_model_set\(\) in .* is int \(ocp_nlp_config\*, ocp_nlp_dims\*, "
                             r"ocp_nlp_in\*, ocp_nlp_out\*, int, .*but the ctypes bindings call int "
                             r"\(ocp_nlp_config\*, ocp_nlp_dims\*, ocp_nlp_in\*, int,"):
        env.ensure_loaded()
    fake.write_text(header.replace("ocp_nlp_get(", "ocp_nlp_get_renamed(", 1))
    with pytest.raises(env.AcadosVersionError, match=r"does not declare ocp_nlp_get\(\)"):
        env.check_acados()


def test_swapped_libacados_is_refused(fresh_acados_env, monkeypatch):
    env = fresh_acados_env
    monkeypatch.setattr(env, "_file_sha256", lambda path: "f" * 64)
    with pytest.raises(env.AcadosVersionError, match=r"libacados.so is not the library comma-deps-acados"):
        env.ensure_loaded()


def test_generated_solver_header_is_checked(tmp_path):
    from hiopt_ros.control import acados_env

    name = "m1"
    good = textwrap.dedent(f"""\
        #define M1_NX 3
        ACADOS_SYMBOL_EXPORT int {name}_acados_reset({name}_solver_capsule* capsule, int reset_qp_solver_mem);
        ACADOS_SYMBOL_EXPORT int {name}_acados_update_params({name}_solver_capsule * capsule, int stage, double *value, int np);
        ACADOS_SYMBOL_EXPORT int {name}_acados_solve({name}_solver_capsule * capsule);
        """)  # noqa: E501 (acados' generated header, verbatim)
    (tmp_path / f"acados_solver_{name}.h").write_text(good)
    acados_env.check_generated_interface(tmp_path, name)
    (tmp_path / f"acados_solver_{name}.h").write_text(
        good.replace("int stage, double *value, int np", "int stage, double *value"))
    with pytest.raises(acados_env.AcadosVersionError, match=rf"{name}_acados_update_params\(\) .* is int "
                                                            rf"\({name}_solver_capsule\*, int, double\*\) but"):
        acados_env.check_generated_interface(tmp_path, name)


def test_cache_key_includes_the_acados_release(fresh_acados_env, monkeypatch):
    env = fresh_acados_env
    real = env.check_acados()
    monkeypatch.setattr(env, "_ACADOS_INFO", dict(real))
    key = env.structure_key("p", {"K": 1})
    assert key == env.structure_key("p", {"K": 1})
    monkeypatch.setattr(env, "_ACADOS_INFO", {**real, "version": "0.2.3"})
    assert env.structure_key("p", {"K": 1}) != key
    monkeypatch.setattr(env, "_ACADOS_INFO", {**real, "libacados_sha256": "0" * 64})
    assert env.structure_key("p", {"K": 1}) != key
