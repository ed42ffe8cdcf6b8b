"""Input freshness for the nodes that command the robot (controller, expert)."""
from __future__ import annotations


class Watchdog:
    """Tracks when each named input last arrived, on a node clock (sim time if use_sim_time).

    ``stale()`` returns {name: age_s} of inputs that arrived at least once and are now older than
    their timeout; inputs never seen are not stale (callers report them as "waiting").
    """

    def __init__(self, clock, timeouts_s: dict[str, float]) -> None:
        self._clock = clock
        self._timeouts = dict(timeouts_s)
        self._last_ns: dict[str, int] = {}

    def feed(self, name: str) -> None:
        self._last_ns[name] = self._clock.now().nanoseconds

    def age_s(self, name: str) -> float | None:
        last = self._last_ns.get(name)
        return None if last is None else (self._clock.now().nanoseconds - last) * 1e-9

    def stale(self) -> dict[str, float]:
        now = self._clock.now().nanoseconds
        return {name: (now - last) * 1e-9 for name, last in self._last_ns.items()
                if (now - last) * 1e-9 > self._timeouts[name]}
