"""C-level stdout control: one way to silence native libraries that print unconditionally.

acados prints "maximum iterations reached" on every capped solve and its code generator chats
while building; HiGHS prints a licence banner on its first construction. Python's
``redirect_stdout`` cannot catch those (they write to file descriptor 1 from C), so
:func:`mute_c_stdout` points fd 1 at /dev/null for the duration of a block.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
from typing import Iterator

_LIBC = None
_DEVNULL_FD: int | None = None
_MUTED_FOR_GOOD = False


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None)
        _LIBC.fflush.argtypes = [ctypes.c_void_p]
    return _LIBC


def _devnull_fd() -> int:
    global _DEVNULL_FD
    if _DEVNULL_FD is None:  # opened once: this runs on control-loop hot paths (an MPC solve)
        _DEVNULL_FD = os.open(os.devnull, os.O_WRONLY)
    return _DEVNULL_FD


@contextlib.contextmanager
def mute_c_stdout(python_too: bool = False) -> Iterator[None]:
    """Discard what native code writes to stdout (fd 1) inside the block; stderr is untouched.

    Output written before the block is flushed first, and the C library's buffer is flushed to
    /dev/null before fd 1 is restored, so nothing printed inside leaks out later.
    ``python_too`` also swallows Python-level prints (e.g. a code generator's progress).
    """
    libc = _libc()
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        os.dup2(_devnull_fd(), 1)
        if python_too:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        else:
            yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def mute_c_stdout_for_good() -> None:
    """Point this process' fd 1 at /dev/null for good (what :func:`mute_c_stdout` does around a block),
    so native libraries write nowhere, and give Python's ``sys.stdout`` a duplicate of the old stdout:
    Python prints still arrive. For a process whose hot path would otherwise mute every call (a node's
    control cycle: controller_node's main). Once per process."""
    global _MUTED_FOR_GOOD
    if _MUTED_FOR_GOOD:
        return
    sys.stdout.flush()
    _libc().fflush(None)
    kept = os.dup(1)
    os.dup2(_devnull_fd(), 1)
    sys.stdout = os.fdopen(kept, "w", buffering=1, encoding=sys.stdout.encoding, errors=sys.stdout.errors)
    _MUTED_FOR_GOOD = True
