"""Input freshness for the nodes that command the robot (controller, expert, planner, e2e)."""
from __future__ import annotations

from typing import Callable


class Watchdog:
    """Tracks when each named input last arrived, on the clock `now_ns` reads.

    The nodes pass :meth:`hiopt_ros.nodes.managed.ManagedNode.watchdog_clock`: ``time.monotonic_ns``
    (steady: a backward jump of the system clock cannot keep a stale input alive; and cheap, this
    runs every control cycle), or the node's clock with ``use_sim_time``.
    ``stale()`` returns {name: age_s} of inputs that arrived at least once and are now older than
    their timeout; inputs never seen are not stale (callers report them as "waiting"). A *negative*
    age means the clock jumped back past the input's arrival (with ``use_sim_time``: /clock restarted
    or stepped back): the input's real age is unknown, so it is stale until it arrives again.
    ``feed`` accepts names without a timeout (tracked, never stale).
    """

    def __init__(self, now_ns: Callable[[], int], timeouts_s: dict[str, float]) -> None:
        self.now_ns = now_ns
        self._timeouts_ns = {name: int(t * 1e9) for name, t in timeouts_s.items()}
        self._last_ns: dict[str, int] = {}

    def feed(self, name: str) -> None:
        self._last_ns[name] = self.now_ns()

    def age_s(self, name: str) -> float | None:
        last = self._last_ns.get(name)
        return None if last is None else (self.now_ns() - last) * 1e-9

    def timeout_s(self, name: str) -> float:
        return self._timeouts_ns[name] * 1e-9

    def stale(self) -> dict[str, float]:
        now = self.now_ns()
        return {name: (now - last) * 1e-9 for name, last in self._last_ns.items()
                if name in self._timeouts_ns and not 0 <= now - last <= self._timeouts_ns[name]}

    def describe(self, name: str, age_s: float, parameter: str) -> str:
        """The stop reason for a stale input `name` of age `age_s` (from :meth:`stale`); `parameter`
        names the node parameter that holds its timeout."""
        if age_s < 0:
            return f"{name}: the clock jumped back {-age_s:.2f} s since it arrived; waiting for a fresh one"
        return f"{name} stale ({age_s:.2f} s > {parameter} = {self.timeout_s(name):g} s)"
