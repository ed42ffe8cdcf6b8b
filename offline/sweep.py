"""The sweep layer: a list of independent tasks, run in process, on a local Ray instance, or on a cluster.

Every sweep of the experiments (evaluation episodes, Table 2's courses, RL trainings over seeds ×
methods, demonstrations) is a list of :class:`Task` — a name and a plain function of its arguments
(seed included) — handed to :func:`run_sweep`:

    from offline.sweep import Task, run_sweep, add_sweep_arguments, options_from_args

    tasks = [Task(f"{method}/seed{seed}", run_one, (method, seed)) for method in methods for seed in seeds]
    result = run_sweep(tasks, options_from_args(args), desc="episodes")
    result.values          # {name: return value} of the tasks that finished, in task order
    result.failed          # {name: why} of the tasks that did not (after the retries)

Where it runs (``add_sweep_arguments`` puts the two options on a command):

* no option: in this process, one task after the other, without importing or starting Ray;
* ``--workers N``: a local Ray instance with N CPUs, started for the sweep and shut down after it
  (``ray.init(num_cpus=N, include_dashboard=False)``, every server listening on 127.0.0.1 only,
  Ray's token authentication kept on: the token is ``~/.ray/auth_token``);
* ``--address ADDR``: an existing Ray cluster (``ray start --head`` on one machine, ``ray start
  --address HEAD:6379`` on the others; every machine needs this checkout at the same path and the
  same venv, and the cluster's auth token).

A task is a plain function of its arguments, so the three ways give the same numbers (each task
pins torch and the BLAS libraries to one thread, so a task's floating-point work does not depend
on how many cores its process sees). A task whose worker dies (killed, out of memory) is retried
up to ``retries`` times on a new worker, then reported by name in ``failed``; an exception raised
by the task itself is not retried (it would raise again) and is reported the same way; the other
tasks' results are kept. One progress bar over the tasks (hiopt_ros.progress).
"""
from __future__ import annotations

import argparse
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from hiopt_ros.config import IMPORT_ROOT as REPO_ROOT
from hiopt_ros.progress import progress_bar

__all__ = ["Task", "SweepOptions", "SweepResult", "run_sweep", "add_sweep_arguments", "options_from_args",
           "THREAD_ENV"]

#: environment of every Ray worker: one BLAS / OpenMP thread per task (N workers on N cores)
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1"}
#: worker deaths (killed, OOM) a task survives before it is reported failed
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class Task:
    """One unit of a sweep: ``fn(*args, **kwargs)``; `name` identifies it in results and failures."""
    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep runs: workers=None and address=None: in this process."""
    workers: int | None = None
    address: str | None = None
    retries: int = DEFAULT_RETRIES
    progress: bool = True

    @property
    def where(self) -> str:
        if self.address:
            return f"Ray cluster at {self.address}"
        if self.workers:
            return f"local Ray instance, {self.workers} workers"
        return "in process"


@dataclass
class SweepResult:
    values: dict[str, Any]          # task name -> return value (finished tasks, in task order)
    failed: dict[str, str]          # task name -> one line saying why (in task order)
    wall_s: float
    where: str
    startup_s: float = 0.0          # Ray start-up (or connection) time, 0 in process

    def ordered(self, tasks: Sequence[Task]) -> list[Any]:
        """The values in the order of `tasks` (KeyError naming a failed task)."""
        return [self.values[t.name] for t in tasks]

    def failure_lines(self) -> list[str]:
        return [f"task {name} failed: {why}" for name, why in self.failed.items()]


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """--workers / --address (mutually exclusive) / --retries on a command."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run the sweep's tasks on a local Ray instance with N workers (started and shut down "
                        "by the command; listens on 127.0.0.1 only; Ray's token authentication stays on, the "
                        "token is ~/.ray/auth_token). Default: in this process, no Ray")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="run the tasks on an existing Ray cluster (e.g. HEAD:6379 after `ray start --head` "
                        "there); every node needs this checkout at the same path and the cluster's auth token")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                   help=f"times a task whose Ray worker died (killed, out of memory) is retried before it is "
                        f"reported failed (default {DEFAULT_RETRIES})")


def options_from_args(args: argparse.Namespace, progress: bool = True) -> SweepOptions:
    """SweepOptions from add_sweep_arguments' options (ValueError on a bad value)."""
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    retries = getattr(args, "retries", DEFAULT_RETRIES)
    if retries < 0:
        raise ValueError(f"--retries must be >= 0, got {retries}")
    return SweepOptions(workers=workers, address=getattr(args, "address", None), retries=retries,
                        progress=progress)


# ---------------------------------------------------------------------------- running one task
def _call_pinned(fn: Callable, args: tuple, kwargs: Mapping) -> Any:
    """fn(*args, **kwargs) with torch on one thread (restored after: the in-process caller keeps its own)."""
    torch = _torch_if_loaded()
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def _torch_if_loaded():
    """torch, if importable (a task that imports it later still gets one thread: set it now)."""
    import sys

    if "torch" in sys.modules:
        return sys.modules["torch"]
    try:
        import torch
    except ImportError:
        return None
    return torch


def _ray_task(fn: Callable, args: tuple, kwargs: Mapping) -> Any:
    """What a Ray worker runs: the task, pinned; its exception travels back as a RayTaskError."""
    for k, v in THREAD_ENV.items():
        os.environ.setdefault(k, v)
    return _call_pinned(fn, args, kwargs)


# ---------------------------------------------------------------------------- the sweep
def run_sweep(tasks: Sequence[Task], options: SweepOptions | None = None, *, desc: str = "tasks",
              log: Callable[[str], None] | None = None) -> SweepResult:
    """Run every task (see the module docstring); never raises for a task's failure."""
    options = options or SweepOptions()
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"task names must be unique, repeated: {dup}")
    t0 = time.perf_counter()
    if not options.workers and not options.address:
        values, failed = _run_in_process(tasks, options, desc)
        return SweepResult(_in_order(values, names), _in_order(failed, names), time.perf_counter() - t0,
                           options.where)
    values, failed, startup_s = _run_on_ray(tasks, options, desc, log)
    return SweepResult(_in_order(values, names), _in_order(failed, names), time.perf_counter() - t0, options.where,
                       startup_s)


def _in_order(values: dict, names: list[str]) -> dict:
    return {n: values[n] for n in names if n in values}


def _run_in_process(tasks, options, desc):
    values, failed = {}, {}
    bar = progress_bar(total=len(tasks), enabled=options.progress, desc=desc, unit="task")
    for t in tasks:
        try:
            values[t.name] = _call_pinned(t.fn, t.args, t.kwargs)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001  (a task's failure is reported by name, the sweep goes on)
            failed[t.name] = _one_line(e)
        bar.update(1)
    bar.close()
    return values, failed


def start_ray(workers: int | None = None, address: str | None = None) -> tuple[bool, float]:
    """Start a local Ray instance (workers) or connect to `address`, unless Ray is already initialised
    in this process (then that instance is used). Returns (started_here, seconds it took)."""
    # a local instance listens on the loopback only: with Ray's cluster switch off it advertises and
    # binds 127.0.0.1. The switch is read when ray is imported, so it is also set on the imported
    # module for a process that imported ray earlier (a test's importorskip did: Ray then listened
    # on every interface). Joining a cluster (--address) keeps Ray's own choice of address.
    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import logging

    import ray

    if ray.is_initialized():
        return False, 0.0
    if not address:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    t0 = time.perf_counter()
    runtime_env = {"env_vars": {**THREAD_ENV, "PYTHONPATH": _pythonpath()}}
    common = dict(include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING,
                  runtime_env=runtime_env, configure_logging=True)
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=int(workers), **common)
    return True, time.perf_counter() - t0


def _pythonpath() -> str:
    parts = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != "."]
    return os.pathsep.join(dict.fromkeys(parts))


def _run_on_ray(tasks, options, desc, log):
    import ray
    from ray import exceptions as rex

    started, startup_s = start_ray(options.workers, options.address)
    if log is not None:
        log(f"[sweep] {options.where}: Ray ready in {startup_s:.1f} s, {len(tasks)} tasks")
    values, failed = {}, {}
    try:
        remote = ray.remote(_ray_task).options(num_cpus=1, max_retries=options.retries, retry_exceptions=False)
        pending = {remote.remote(t.fn, t.args, dict(t.kwargs)): t.name for t in tasks}
        bar = progress_bar(total=len(tasks), enabled=options.progress, desc=desc, unit="task")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                name = pending.pop(ref)
                try:
                    values[name] = ray.get(ref)
                except rex.RayTaskError as e:      # the task raised
                    failed[name] = _one_line(e.cause if getattr(e, "cause", None) is not None else e)
                except rex.RayError as e:          # its worker died (killed, OOM) more often than retried
                    failed[name] = f"{type(e).__name__} after {options.retries} retries: " + _one_line(e)
                bar.update(1)
        bar.close()
    finally:
        if started:
            ray.shutdown()
    return values, failed, startup_s


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    if not first:
        first = traceback.format_exception_only(type(e), e)[-1].strip()
    return f"{type(e).__name__}: {first}"[:300]
