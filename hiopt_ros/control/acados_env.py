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

import base64
import ctypes
import fcntl
import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..stdio import mute_c_stdout

_LOADED = False
_LOCK = threading.Lock()

# --------------------------------------------------------------------------------------------
# version and interface check (the ctypes bindings below call C functions by hand: a different
# acados would be called with wrong arguments and crash or corrupt memory, so refuse it up front)

#: the PyPI distribution that provides acados
ACADOS_DIST = "comma-deps-acados"
#: releases whose C interface FastSolver's bindings were checked against (tools/requirements.lock
#: pins one of them; test/test_deps.py checks that they agree). Bump after checking _C_SIGNATURES.
ACADOS_SUPPORTED_VERSIONS = ("0.2.2.post92",)
#: C prototypes FastSolver binds, as (return type, parameter types); "{name}" is the model name.
#: acados_c/ocp_nlp_interface.h for the ocp_nlp_* functions, the generated acados_solver_{name}.h
#: for the others. Other acados releases changed some of them (e.g. an ocp_nlp_out argument
#: added to ocp_nlp_constraints_model_set), which is exactly what the check is for.
_C_SIGNATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ocp_nlp_constraints_model_set": ("int", ("ocp_nlp_config*", "ocp_nlp_dims*", "ocp_nlp_in*", "int",
                                              "const char*", "void*")),
    "ocp_nlp_out_get": ("void", ("ocp_nlp_config*", "ocp_nlp_dims*", "ocp_nlp_out*", "int", "const char*",
                                 "void*")),
    "ocp_nlp_out_set": ("void", ("ocp_nlp_config*", "ocp_nlp_dims*", "ocp_nlp_out*", "int", "const char*",
                                 "void*")),
    "ocp_nlp_get": ("void", ("ocp_nlp_config*", "ocp_nlp_solver*", "const char*", "void*")),
    "{name}_acados_update_params": ("int", ("{name}_solver_capsule*", "int", "double*", "int")),
    "{name}_acados_solve": ("int", ("{name}_solver_capsule*",)),
    "{name}_acados_reset": ("int", ("{name}_solver_capsule*", "int")),
}
_INTERFACE_HEADER = Path("include") / "acados_c" / "ocp_nlp_interface.h"


class AcadosVersionError(RuntimeError):
    """The installed acados is not one the ctypes bindings were checked against; one line for the user."""


def _fix_hint() -> str:
    return (f"install the pinned one with `bash tools/bootstrap.sh` (tools/requirements.lock: "
            f"{ACADOS_DIST}=={ACADOS_SUPPORTED_VERSIONS[-1]})")


def installed_acados_version() -> str:
    """Version of the comma-deps-acados distribution installed in this Python."""
    try:
        return importlib.metadata.version(ACADOS_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise AcadosVersionError(f"acados is importable but {ACADOS_DIST} is not installed as a distribution, "
                                 f"so its version cannot be checked; {_fix_hint()}") from None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _recorded_sha256(dist: str, path: Path) -> str | None:
    """The sha256 (hex) the distribution's RECORD lists for `path`, or None if it lists none."""
    for f in importlib.metadata.distribution(dist).files or ():
        if (f.name == path.name and f.hash is not None and f.hash.mode == "sha256"
                and Path(str(f.locate())).resolve() == path.resolve()):
            return base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
    return None


def c_prototypes(header_text: str, names: list[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{function: (return type, parameter types)} of the named functions declared in a C header;
    parameter names, `ACADOS_SYMBOL_EXPORT` and whitespace are dropped ("ocp_nlp_in *in" -> "ocp_nlp_in*")."""
    def norm(decl: str) -> str:
        decl = re.sub(r"\s*\*\s*", "*", " ".join(decl.split()))
        return decl.replace("ACADOS_SYMBOL_EXPORT", "").strip()

    out = {}
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", header_text, flags=re.S)
    text = re.sub(r"^\s*#[^\n]*", ";", text, flags=re.M)  # preprocessor lines end a declaration
    for name in names:
        m = re.search(r"([A-Za-z_][\w\s\*]*?)\b" + re.escape(name) + r"\s*\(([^)]*)\)\s*;", text)
        if not m:
            continue
        params = []
        for p in m.group(2).split(","):
            p = norm(p)
            if p in ("", "void"):
                continue
            typ = re.sub(r"\s*\b[A-Za-z_]\w*$", "", p) if re.search(r"[\s*][A-Za-z_]\w*$", p) else p
            params.append(norm(typ))
        out[name] = (norm(m.group(1)), tuple(params))
    return out


def _check_prototypes(header: Path, expected: dict[str, tuple[str, tuple[str, ...]]], version: str) -> None:
    try:
        found = c_prototypes(header.read_text(errors="replace"), list(expected))
    except OSError as exc:
        raise AcadosVersionError(f"cannot read {header} to check acados' C interface ({exc}); {_fix_hint()}") from None
    for fn, (ret, params) in expected.items():
        if fn not in found:
            raise AcadosVersionError(f"{header} does not declare {fn}(), which the ctypes bindings call; "
                                     f"{ACADOS_DIST} {version} is not supported; {_fix_hint()}")
        if found[fn] != (ret, params):
            raise AcadosVersionError(
                f"{fn}() in {header} is {found[fn][0]} ({', '.join(found[fn][1])}) but the ctypes bindings "
                f"call {ret} ({', '.join(params)}); {ACADOS_DIST} {version} is not supported; {_fix_hint()}")


def check_acados() -> dict[str, str]:
    """Refuse an acados the ctypes bindings were not written for; returns {version, libacados_sha256}.

    Checks (1) the installed comma-deps-acados version against ACADOS_SUPPORTED_VERSIONS, (2) that
    the libacados.so about to be loaded is that distribution's own file (sha256 equal to its RECORD
    entry, so a swapped library is caught), and (3) the prototypes in the shipped
    acados_c/ocp_nlp_interface.h against _C_SIGNATURES. Raises AcadosVersionError with one line.
    """
    acados = _acados_pkg()
    version = installed_acados_version()
    if version not in ACADOS_SUPPORTED_VERSIONS:
        raise AcadosVersionError(
            f"{ACADOS_DIST} {version} is installed, but hiopt's ctypes bindings to acados "
            f"(hiopt_ros/control/acados_env.py) were checked against {', '.join(ACADOS_SUPPORTED_VERSIONS)} "
            f"only; {_fix_hint()}")
    lib = Path(acados.LIB_DIR) / "libacados.so"
    if not lib.is_file():
        raise AcadosVersionError(f"{lib} is missing; the {ACADOS_DIST} install is broken; {_fix_hint()}")
    sha = _file_sha256(lib)
    recorded = _recorded_sha256(ACADOS_DIST, lib)
    if recorded is not None and recorded != sha:
        raise AcadosVersionError(f"{lib} is not the library {ACADOS_DIST} {version} installed (sha256 "
                                 f"{sha[:12]}…, its RECORD says {recorded[:12]}…); {_fix_hint()}")
    lib_level = {k: v for k, v in _C_SIGNATURES.items() if "{name}" not in k}
    _check_prototypes(Path(acados.DIR) / _INTERFACE_HEADER, lib_level, version)
    return {"version": version, "libacados_sha256": sha}


def check_generated_interface(folder: Path, name: str) -> None:
    """Check the generated solver's header (acados_solver_<name>.h) against _C_SIGNATURES."""
    expected = {k.format(name=name): (ret, tuple(p.format(name=name) for p in params))
                for k, (ret, params) in _C_SIGNATURES.items() if "{name}" in k}
    _check_prototypes(Path(folder) / f"acados_solver_{name}.h", expected, _ACADOS_INFO.get("version", "?"))


def _ctype(c_type: str):
    if c_type == "void":
        return None
    if c_type == "int":
        return ctypes.c_int
    if c_type == "const char*":
        return ctypes.c_char_p
    if c_type.endswith("*"):
        return ctypes.c_void_p
    raise ValueError(f"no ctypes mapping for C type {c_type!r}")


def _bind(lib: Any, c_name: str, model_name: str = "") -> Any:
    """lib.<function> with restype/argtypes from _C_SIGNATURES (the prototypes check_acados verified)."""
    ret, params = _C_SIGNATURES[c_name]
    fn = getattr(lib, c_name.format(name=model_name))
    fn.restype = _ctype(ret)
    fn.argtypes = [_ctype(p) for p in params]
    return fn


#: what check_acados found (version, libacados sha256), filled by ensure_loaded
_ACADOS_INFO: dict[str, str] = {}


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
        _ACADOS_INFO.update(check_acados())  # before any C function is called
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
    """Hash of everything that changes the generated code (not runtime parameters), including the
    acados release and its library's sha256: another acados never reuses a solver built for this one."""
    acados = _acados_pkg()
    info = _ACADOS_INFO or check_acados()
    blob = json.dumps(
        {"name": name, "structure": structure, "gen": _GENERATOR_VERSION,
         "acados": getattr(acados, "__file__", ""), "acados_version": info["version"],
         "libacados_sha256": info["libacados_sha256"], "py": sys.version_info[:2]},
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
    from acados.acados_template import AcadosOcpSolver  # after the env vars are set

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
    check_generated_interface(folder, name)
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
        self.N = solver.N
        self._capsule = ctypes.c_void_p(solver.capsule)
        self._config, self._dims = ctypes.c_void_p(solver.nlp_config), ctypes.c_void_p(solver.nlp_dims)
        self._in, self._out = ctypes.c_void_p(solver.nlp_in), ctypes.c_void_p(solver.nlp_out)
        self._solver = ctypes.c_void_p(solver.nlp_solver)

        # argtypes/restype from _C_SIGNATURES, which check_acados / check_generated_interface
        # compared with the installed headers before this point
        self._update_params = _bind(lib, "{name}_acados_update_params", name)
        self._solve = _bind(lib, "{name}_acados_solve", name)
        self._reset = _bind(lib, "{name}_acados_reset", name)
        self._constraints_set = _bind(lib, "ocp_nlp_constraints_model_set")
        self._out_get = _bind(lib, "ocp_nlp_out_get")
        self._out_set = _bind(lib, "ocp_nlp_out_set")
        self._get = _bind(lib, "ocp_nlp_get")
        self._ptrs: dict[int, tuple[np.ndarray, ctypes.c_void_p]] = {}
        self._int_buf = ctypes.c_int(0)
        self._dbl_buf = ctypes.c_double(0.0)
        self._pinned: list[np.ndarray] = []   # buffers the pre-bound calls point into (kept alive)

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

    # ------------------------------------------------------------------ pre-bound calls (hot path)
    # Each returns a zero-argument callable with every C argument fixed once (capsule, stage, field,
    # the buffer's address): calling it costs one ctypes call and no Python method frame, pointer
    # cache lookup or argument building. The buffer is read or written at call time, so the caller
    # fills it in place and calls; it is kept alive here, so its address stays valid.
    def _pin(self, a: np.ndarray) -> ctypes.c_void_p:
        if not isinstance(a, np.ndarray) or a.dtype != np.float64 or not a.flags.c_contiguous or a.base is not None:
            raise ValueError("pre-bound acados buffers must be contiguous float64 arrays that own their memory")
        self._pinned.append(a)
        return ctypes.c_void_p(a.ctypes.data)

    def params_setter(self, stage: int, p: np.ndarray) -> Callable[[], Any]:
        """Call → :meth:`set_params` (stage, p)."""
        return functools.partial(self._update_params, self._capsule, stage, self._pin(p), p.shape[0])

    def bound_setter(self, stage: int, field: bytes, value: np.ndarray) -> Callable[[], Any]:
        """Call → :meth:`set_bound` (stage, field, value)."""
        return functools.partial(self._constraints_set, self._config, self._dims, self._in, stage, field,
                                 self._pin(value))

    def out_setter(self, stage: int, field: bytes, value: np.ndarray) -> Callable[[], Any]:
        """Call → :meth:`set_out` (stage, field, value)."""
        return functools.partial(self._out_set, self._config, self._dims, self._out, stage, field, self._pin(value))

    def out_getter(self, stage: int, field: bytes, out: np.ndarray) -> Callable[[], Any]:
        """Call → :meth:`get_out` (stage, field, out); the values land in `out`."""
        return functools.partial(self._out_get, self._config, self._dims, self._out, stage, field, self._pin(out))

    def sqp_iter_getter(self) -> Callable[[], int]:
        """Call → :meth:`sqp_iter`."""
        buf = ctypes.c_int(0)
        get = functools.partial(self._get, self._config, self._solver, b"sqp_iter", ctypes.byref(buf))

        def sqp_iter() -> int:
            get()
            return buf.value
        return sqp_iter

    def solver_call(self) -> Callable[[], int]:
        """Call → the raw solve (returns the acados status; C stdout NOT muted: wrap it in mute_c_stdout)."""
        return functools.partial(self._solve, self._capsule)

    def reset_call(self) -> Callable[[], Any]:
        """Call → :meth:`reset`."""
        return functools.partial(self._reset, self._capsule, 1)

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
