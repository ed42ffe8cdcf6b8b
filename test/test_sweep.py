"""The sweep layer (offline.sweep): in process without Ray, on a local Ray instance with the same numbers,
a killed worker retried, a task that keeps dying reported by name, and no Ray process left behind.

Ray starts once for the module (one sweep on 2 workers, ~4 s of start-up on this machine); every Ray
test reads that sweep's outcome."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from offline import sweep
from offline.sweep import SweepOptions, Task, run_sweep


def _make_tasks(marker_dir):
    """Tasks as closures (pickled by value: Ray workers need not import this test module)."""

    def numbers(seed):
        import numpy as np
        import torch

        rng = np.random.default_rng(seed)
        a = rng.standard_normal((64, 64))
        torch.manual_seed(seed)
        w = torch.randn(64, 64, dtype=torch.float64)
        return {"seed": seed, "sum": float((a @ a.T).sum()), "torch": float((w @ w).sum()),
                "torch_threads": torch.get_num_threads(), "pid": os.getpid()}

    def dies_once(seed):
        marker = marker_dir / f"died-{seed}"
        if not marker.exists():          # first attempt: the worker is killed mid-task
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
        return numbers(seed)

    def always_dies(seed):
        os.kill(os.getpid(), signal.SIGKILL)

    def raises(seed):
        raise RuntimeError(f"bad seed {seed}")

    def listening(seed):
        """Runs on a worker while Ray is up: the listening TCP sockets of every Ray process (/proc)."""
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        pids = [int(line.split(None, 1)[0]) for line in out.splitlines()
                if any(k in line for k in ("ray::", "raylet", "gcs_server", "dashboard", "runtime_env"))]
        inodes = set()
        for pid in pids:
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        found = []
        for table in ("tcp", "tcp6"):
            with open(f"/proc/net/{table}") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and parts[9] in inodes:        # 0A: LISTEN
                        found.append(parts[1].split(":")[0])
        return {"seed": seed, "listening": found, "pid": os.getpid()}

    good = [Task(f"numbers/{s}", numbers, (s,)) for s in range(4)]
    return good, Task("dies-once/7", dies_once, (7,)), Task("always-dies/8", always_dies, (8,)), \
        Task("raises/9", raises, (9,)), Task("listening/0", listening, (0,))


#: /proc/net/tcp{,6} local addresses of the loopback (hex, as the kernel writes them): 127.x.x.x,
#: ::1 and ::ffff:127.x.x.x
def _loopback(hex_addr: str) -> bool:
    if len(hex_addr) == 8:
        return hex_addr.endswith("7F")
    return hex_addr == "00000000000000000000000001000000" or (
        hex_addr.startswith("0000000000000000FFFF0000") and hex_addr.endswith("7F"))


def _ray_pids() -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = set()
    for line in out.splitlines():
        pid, _, cmd = line.strip().partition(" ")
        if any(k in cmd for k in ("ray::", "raylet", "gcs_server", "ray/dashboard", "log_monitor.py", "monitor.py")):
            pids.add(int(pid))
    return pids


@pytest.fixture(scope="module")
def ray_sweep(tmp_path_factory):
    pytest.importorskip("ray")
    marker_dir = tmp_path_factory.mktemp("markers")
    good, once, always, raises, listening = _make_tasks(marker_dir)
    before = _ray_pids()
    result = run_sweep(good + [once, always, raises, listening],
                       SweepOptions(workers=2, retries=1, progress=False))
    worker_pids = {v["pid"] for v in result.values.values()}
    # ray.shutdown() has returned; give the killed processes a bounded time to be reaped
    for _ in range(50):
        left = (_ray_pids() - before) | {p for p in worker_pids if _alive(p)}
        if not left:
            break
        time.sleep(0.2)
    return {"result": result, "good": good, "once": once, "always": always, "raises": raises,
            "left": left, "marker_dir": marker_dir}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def test_in_process_sweep_does_not_start_ray(monkeypatch, tmp_path):
    def no_ray(*a, **k):
        raise AssertionError("the in-process sweep started Ray")

    monkeypatch.setattr(sweep, "start_ray", no_ray)
    good, _, _, raises, _ = _make_tasks(tmp_path)
    res = run_sweep(good + [raises], SweepOptions(progress=False))
    assert list(res.values) == [t.name for t in good]
    assert res.failed == {"raises/9": "RuntimeError: bad seed 9"}
    assert all(v["pid"] == os.getpid() and v["torch_threads"] == 1 for v in res.values.values())
    assert res.where == "in process"


def test_duplicate_task_names_are_refused():
    t = Task("a", abs, (1,))
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        run_sweep([t, t])


def test_same_seeds_give_the_same_numbers_in_process_and_on_ray(ray_sweep, tmp_path):
    good, *_ = _make_tasks(tmp_path)
    serial = run_sweep(good, SweepOptions(progress=False))
    on_ray = ray_sweep["result"]
    strip = lambda v: {k: x for k, x in v.items() if k != "pid"}   # noqa: E731
    assert [strip(on_ray.values[t.name]) for t in good] == [strip(serial.values[t.name]) for t in good]
    assert {on_ray.values[t.name]["pid"] for t in good}.isdisjoint({os.getpid()})   # really on workers
    assert all(on_ray.values[t.name]["torch_threads"] == 1 for t in good)


def test_a_killed_worker_is_retried_and_the_sweep_completes(ray_sweep):
    res = ray_sweep["result"]
    once = ray_sweep["once"]
    assert (ray_sweep["marker_dir"] / "died-7").exists()          # the first attempt did die
    assert res.values[once.name]["seed"] == 7                      # the retry finished it


def test_a_task_that_keeps_dying_is_reported_by_name_and_the_rest_kept(ray_sweep):
    res = ray_sweep["result"]
    assert set(res.failed) == {"always-dies/8", "raises/9"}
    assert "after 1 retries" in res.failed["always-dies/8"]
    assert "RuntimeError: bad seed 9" in res.failed["raises/9"]
    assert set(res.values) == {t.name for t in ray_sweep["good"]} | {"dies-once/7", "listening/0"}
    assert res.failure_lines()[0].startswith("task always-dies/8 failed")


def test_the_local_ray_instance_listens_on_the_loopback_only(ray_sweep):
    """Every listening socket of Ray's processes (GCS, raylet, workers, agents), read from a worker
    while the sweep ran, is bound to a loopback address, not to every interface."""
    addresses = ray_sweep["result"].values["listening/0"]["listening"]
    assert addresses, "found no listening socket of a Ray process"
    assert all(_loopback(a) for a in addresses), f"Ray listens beyond the loopback: {addresses}"


def test_no_ray_process_is_left_behind(ray_sweep):
    import ray

    assert not ray.is_initialized()
    assert ray_sweep["left"] == set(), f"Ray processes still running after the sweep: {ray_sweep['left']}"


def test_bad_sweep_options_are_one_line_errors():
    import argparse

    p = argparse.ArgumentParser()
    sweep.add_sweep_arguments(p)
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        sweep.options_from_args(p.parse_args(["--workers", "0"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--workers", "2", "--address", "h:6379"])
    assert sweep.options_from_args(p.parse_args(["--workers", "2"])).where == "local Ray instance, 2 workers"
