"""ROS domain ids reserved per process, so runs and test sessions on one machine never hear each other.

A reservation is an exclusive ``flock`` on ``<tmp>/hiopt-ros-domains-<uid>/<id>.lock``, held as
long as the :class:`DomainReservation` (or the process) lives: the kernel drops it when the process
dies, so a crashed run leaves nothing to clean up. Used by the launcher (when neither
``--domain-id`` nor ``$ROS_DOMAIN_ID`` is given) and by the test suite (test/conftest.py).
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

#: ids handed out automatically. Fast DDS maps a domain to UDP ports 7400 + 250·id + ..., so ids
#: must stay ≤ 232; 0–99 are left to people who set ROS_DOMAIN_ID by hand.
AUTO_RANGE = range(100, 233)


class DomainReservation:
    """One reserved domain id; :meth:`release` (or garbage collection, or exit) frees it."""

    def __init__(self, domain_id: int, fd: int) -> None:
        self.domain_id, self._fd = domain_id, fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __del__(self) -> None:
        self.release()

    def __enter__(self) -> "DomainReservation":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"hiopt-ros-domains-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def reserve_domain(candidates: range = AUTO_RANGE, start: int | None = None) -> DomainReservation:
    """The first free id of `candidates`, scanning from `start` (default: derived from the pid, so
    concurrent processes rarely contend for the same lock). RuntimeError when every id is taken."""
    ids = list(candidates)
    offset = (os.getpid() if start is None else start) % len(ids)
    folder = _lock_dir()
    for k in range(len(ids)):
        domain_id = ids[(offset + k) % len(ids)]
        fd = os.open(folder / f"{domain_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return DomainReservation(domain_id, fd)
    raise RuntimeError(f"every ROS domain id in {candidates.start}..{candidates.stop - 1} is in use on this machine; "
                       f"pass one with --domain-id / ROS_DOMAIN_ID")
