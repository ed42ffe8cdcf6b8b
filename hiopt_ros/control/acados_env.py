"""The one place that knows how acados is installed, loaded and cached.

acados comes from the `comma-deps-acados` wheel (shared libraries, headers, the t_renderer
template binary and the `acados_template` Python API). This module

* points acados' environment variables at the wheel before `acados_template` is imported,
* preloads the acados libraries (RTLD_LOCAL, by soname) so the generated solver resolves its
  dependencies without LD_LIBRARY_PATH and without leaking blasfeo's BLAS symbols into SCIP,
* generates and compiles a solver once per problem *structure* into a user cache folder keyed by a
  hash of that structure (never into the source tree), under a file lock so two processes that
  build at once do not trample each other, and
* binds the few C entry points the hot path needs (update parameters, set bounds, solve, read
  outputs) once, with fixed argtypes and preallocated buffers, so a solve from Python costs
  microseconds rather than the template wrapper's per-call ctypes set-up.

Everything that changes at run time (subgoal, obstacles, fitted θ, weights, bounds) must be a
parameter or settable bound of the built solver: nothing here is rebuilt when it changes.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..stdio import mute_c_stdout

_LOADED = False
_LOCK = threading.Lock()
#: number of code generations + compilations performed in this process (tests assert on it)
BUILD_COUNT = 0
#: bump when the way problems are generated changes, so stale caches are not reused
_GENERATOR_VERSION = "1"


def _acados_pkg():
    try:
        import acados  # the comma-deps-acados wheel
    except ImportError as exc:  # pragma: no cover - install problem
        raise ImportError(
            "acados is not installed in this environment; run `make test` or "
            "`bash tools/bootstrap.sh` to create .venv/ with comma-deps-acados"
        ) from exc
    return acados


def ensure_loaded() -> None:
    """Set acados' environment variables and preload its shared libraries (idempotent)."""
    global _LOADED
    with _LOCK:
        if _LOADED:
            return
        acados = _acados_pkg()
        os.environ.setdefault("ACADOS_SOURCE_DIR", acados.DIR)
        os.environ.setdefault("ACADOS_PYTHON_INTERFACE_PATH", acados.TEMPLATE_DIR)
        libdir = Path(acados.LIB_DIR)
        # Order matters: each library needs the ones before it. Once loaded, the dynamic loader
        # resolves the generated solver's NEEDED entries (libacados.so → libhpipm.so → ...) by
        # soname, so no LD_LIBRARY_PATH is needed. RTLD_LOCAL on purpose: with RTLD_GLOBAL,
        # blasfeo's BLAS/LAPACK symbols (dgemm_, dpotrf_) would replace the ones SCIP
        # (pyscipopt) uses, and any later SCIP solve in the process would crash.
        for name in ("libblasfeo.so", "libhpipm.so", "libqpOASES_e.so.3.1", "libacados.so"):
            ctypes.CDLL(str(libdir / name), mode=ctypes.RTLD_LOCAL)
        _LOADED = True


def cache_root() -> Path:
    """Folder for generated solvers: $HIOPT_CACHE_DIR, else $XDG_CACHE_HOME/hiopt, else ~/.cache/hiopt."""
    env = os.environ.get("HIOPT_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "acados"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hiopt" / "acados"


def structure_key(name: str, structure: dict[str, Any]) -> str:
    """Hash of everything that changes the generated code (not runtime parameters)."""
    acados = _acados_pkg()
    blob = json.dumps(
        {"name": name, "structure": structure, "gen": _GENERATOR_VERSION,
         "acados": getattr(acados, "__file__", ""), "py": sys.version_info[:2]},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_or_load(name: str, structure: dict[str, Any], make_ocp: Callable[[], Any]) -> "FastSolver":
    """Return a solver for `structure`, generating and compiling it only if it is not cached.

    `make_ocp()` returns an `AcadosOcp` (without code_export_directory); it is only called when
    the cache misses or to reload the JSON description, never on the hot path.
    """
    global BUILD_COUNT
    ensure_loaded()
    from acados.acados_template import AcadosOcpSolver  # noqa: E402  (after env vars are set)

    # the generator's source is part of the key: editing the formulation invalidates the cache
    source = Path(inspect.getsourcefile(make_ocp) or "").read_bytes()
    key = structure_key(name, {**structure, "source_sha": hashlib.sha256(source).hexdigest()})
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{name}_{key}"
    json_file = folder / f"{name}.json"
    lib_file = folder / f"libacados_ocp_solver_{name}.so"
    done_marker = folder / ".built"
    with open(root / f".{name}_{key}.lock", "w") as lockfh:
        fcntl.flock(lockfh, fcntl.LOCK_EX)  # one builder at a time; others wait then reuse
        ocp = make_ocp()
        ocp.code_export_directory = str(folder)
        fresh = not (done_marker.exists() and lib_file.exists() and json_file.exists())
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        cwd = os.getcwd()
        try:
            # acados writes some files relative to cwd; keep them inside the cache folder
            os.chdir(folder)
            with mute_c_stdout(python_too=True):  # acados' and the C compiler's chatter
                solver = AcadosOcpSolver(ocp, json_file=str(json_file), build=fresh, generate=fresh,
                                         verbose=False)
        finally:
            os.chdir(cwd)
        if fresh:
            done_marker.write_text(key)
            BUILD_COUNT += 1
    return FastSolver(solver)


class FastSolver:
    """Direct ctypes bindings to a generated acados OCP solver, for the hot path.

    Keeps a reference to the template `AcadosOcpSolver` (which owns the C memory) and binds the
    entry points once. Fields are set from numpy float64 arrays without copies.
    """

    def __init__(self, solver: Any) -> None:
        self.solver = solver
        lib = solver.shared_lib
        name = solver.model_name
        vp, ip, dp, cp = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_double), ctypes.c_char_p
        self.N = solver.N
        self._capsule = ctypes.c_void_p(solver.capsule)
        self._config, self._dims = ctypes.c_void_p(solver.nlp_config), ctypes.c_void_p(solver.nlp_dims)
        self._in, self._out = ctypes.c_void_p(solver.nlp_in), ctypes.c_void_p(solver.nlp_out)
        self._solver = ctypes.c_void_p(solver.nlp_solver)

        self._update_params = getattr(lib, f"{name}_acados_update_params")
        self._update_params.argtypes = [vp, ip, vp, ip]
        self._update_params.restype = ip
        self._solve = getattr(lib, f"{name}_acados_solve")
        self._solve.argtypes = [vp]
        self._solve.restype = ip
        self._reset = getattr(lib, f"{name}_acados_reset")
        self._reset.argtypes = [vp, ip]
        self._reset.restype = ip
        self._constraints_set = lib.ocp_nlp_constraints_model_set
        self._constraints_set.argtypes = [vp, vp, vp, ip, cp, vp]
        self._out_get = lib.ocp_nlp_out_get
        self._out_get.argtypes = [vp, vp, vp, ip, cp, vp]
        self._out_set = lib.ocp_nlp_out_set
        self._out_set.argtypes = [vp, vp, vp, ip, cp, vp]
        self._get = lib.ocp_nlp_get
        self._get.argtypes = [vp, vp, cp, vp]
        self._ptrs: dict[int, tuple[np.ndarray, ctypes.c_void_p]] = {}
        self._int_buf = ctypes.c_int(0)
        self._dbl_buf = ctypes.c_double(0.0)

    def _ptr(self, a: np.ndarray) -> ctypes.c_void_p:
        """A cached C pointer to a long-lived contiguous float64 buffer (saves µs per call)."""
        key = id(a)
        hit = self._ptrs.get(key)
        if hit is None or hit[0] is not a:
            if a.dtype != np.float64 or not a.flags.c_contiguous:
                raise ValueError("acados buffers must be contiguous float64 arrays")
            hit = (a, ctypes.c_void_p(a.ctypes.data))
            if len(self._ptrs) > 64:
                self._ptrs.clear()
            self._ptrs[key] = hit
        return hit[1]

    def set_params(self, stage: int, p: np.ndarray) -> None:
        """p must be a contiguous float64 array of the model's parameter dimension."""
        self._update_params(self._capsule, stage, self._ptr(p), p.shape[0])

    def set_bound(self, stage: int, field: bytes, value: np.ndarray) -> None:
        """field in b'lbx', b'ubx', b'lbu', b'ubu', b'lh', b'uh' (contiguous float64 of the right size)."""
        self._constraints_set(self._config, self._dims, self._in, stage, field, self._ptr(value))

    def set_out(self, stage: int, field: bytes, value: np.ndarray) -> None:
        """Initial guess / iterate: field in b'x', b'u', b'pi', b'lam'."""
        self._out_set(self._config, self._dims, self._out, stage, field, self._ptr(value))

    def get_out(self, stage: int, field: bytes, out: np.ndarray) -> np.ndarray:
        self._out_get(self._config, self._dims, self._out, stage, field, self._ptr(out))
        return out

    def solve(self) -> int:
        return int(self._solve(self._capsule))

    def solve_quietly(self) -> int:
        """Solve with C stdout muted: this acados build prints "maximum iterations reached"
        unconditionally, which would flood a node's log when iteration-capped solves are normal."""
        with mute_c_stdout():
            return int(self._solve(self._capsule))

    def reset(self) -> None:
        self._reset(self._capsule, 1)

    def sqp_iter(self) -> int:
        self._get(self._config, self._solver, b"sqp_iter", ctypes.byref(self._int_buf))
        return int(self._int_buf.value)


#: acados return codes (acados/utils/types.h)
STATUS_TEXT = {
    0: "success",
    1: "NaN in solver",
    2: "maximum number of iterations reached",
    3: "minimum step size reached",
    4: "QP solver failed",
    5: "solver not ready",
}
