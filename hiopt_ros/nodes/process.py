"""The process of a node: ``main()`` (rclpy.init, spin, clean stop on SIGINT/SIGTERM) and its exit deadline."""
from __future__ import annotations

import signal
import sys
import time
from typing import Any, Callable

from hiopt_ros.nodes.parameters import HelpRequested, ParameterError, Params, node_help

SPIN_TIMEOUT_S = 0.1   # longest a node waits in rcl before it looks at a pending SIGINT/SIGTERM
FLUSH_ON_SHUTDOWN_S = 0.2     # SIGINT/SIGTERM: wait for acknowledgements this long (Ctrl-C ends a node within 2 s)
EXIT_DEADLINE_S = 1.0         # a node process is gone this long after SIGINT/SIGTERM, whatever its clean-up waits on


class StopSignal:
    """SIGINT / SIGTERM recorded as a flag that the owner's loop checks between executor turns.

    A handler that raised KeyboardInterrupt could fire inside a C extension call (e.g. rclpy's
    deserialisation, where pybind11 turns it into a TypeError with a traceback and exit status 1)
    or in the middle of a callback; a flag is acted on at a safe point. A second signal during the
    clean-up changes nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> "StopSignal":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __bool__(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise KeyboardInterrupt (at this safe point) when a stop was requested."""
        if self.signum is not None:
            raise KeyboardInterrupt


def node_main(factory: Callable[[], Any]) -> Callable[[list[str] | None], int]:
    """The console-script entry point of a node: ``main(args=None) -> exit status`` (:func:`run_node`)."""
    def main(args: list[str] | None = None) -> int:
        return run_node(factory, args)
    main.__doc__ = f"Run {getattr(factory, '__name__', 'the node')} until SIGINT/SIGTERM; the exit status."
    return main


class ExitDeadline:
    """Ends the process `deadline_s` after the first SIGINT/SIGTERM if the clean shutdown has not.

    The clean path (the spin loop's turn, the controller's last stop and its flush, the DDS
    clean-up, the interpreter's exit) takes about 0.3-0.5 s, also next to two busy processes on 2
    cores; on a machine so overloaded that it has not finished by the deadline, the process says
    which :attr:`step` it was in and ends with :func:`os._exit` (status :attr:`code`), so Ctrl-C
    never waits for ``ros2 launch`` to escalate to SIGTERM/SIGKILL. The clock starts when the
    signal arrives, not when the main thread next runs Python code (it may be inside a callback or
    a DDS call): a daemon thread reads the signal's wake-up descriptor (:func:`signal.set_wakeup_fd`).
    It cannot act once the interpreter has begun its final teardown (threads no longer run then).
    Needs :class:`StopSignal` (or another Python handler) installed for SIGINT/SIGTERM.
    """

    def __init__(self, deadline_s: float = EXIT_DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.step = "spinning"
        self.code = 0

    def arm(self) -> "ExitDeadline":
        import os
        import threading

        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_fd,), name="exit-deadline", daemon=True).start()
        return self

    def _watch(self, read_fd: int) -> None:
        import os

        stops = {int(signal.SIGINT), int(signal.SIGTERM)}
        while not stops.intersection(os.read(read_fd, 64)):
            pass
        time.sleep(self.deadline_s)
        print(f"[WARN] still '{self.step}' {self.deadline_s:g} s after the stop signal (an overloaded machine?): "
              f"exiting now", file=sys.stderr, flush=True)
        os._exit(self.code)


def run_node(factory: Callable[[], Any], args: list[str] | None = None) -> int:
    """:func:`_run_node`, then the garbage it leaves collected while threads still run, and what
    is left frozen: the interpreter's teardown then skips its own collections over every live
    object, which for a planner that loaded torch halves the time from return to exit (0.33 → 0.18 s).
    The node, its executor and the rclpy context are freed (and their DDS entities destroyed) before."""
    import gc

    code = _run_node(factory, args)
    gc.collect()
    gc.freeze()
    return code


def _run_node(factory: Callable[[], Any], args: list[str] | None = None) -> int:
    """rclpy.init, build the node, spin until SIGINT/SIGTERM, then let the node stop cleanly.

    rclpy's own signal handler would shut the context down before the node could publish its last
    message (a stop command), so SIGINT and SIGTERM are recorded by :class:`StopSignal` instead
    and the spin loop ends at the next turn. The executor waits at most :data:`SPIN_TIMEOUT_S` at
    a time: a node whose timers run on /clock still exits promptly when the clock source is gone
    (``rclpy.spin`` would block until a timer or message woke it).
    A :class:`ParameterError` at start-up prints the message and exits with status 2.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.experimental import EventsExecutor
    from rclpy.signals import SignalHandlerOptions

    argv = list(args if args is not None else sys.argv)
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    Params.help_requested = "-h" in own or "--help" in own
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopSignal().install()
    deadline = ExitDeadline().arm()
    node = None
    code = 0
    try:
        node = factory()
        # the events executor (C++) costs 2-3x less CPU per callback than rclpy's Python one: the
        # headroom a 500 Hz controller needs (python -m hiopt_ros.bench --node-rate)
        events = getattr(node, "executor_kind", "events") == "events"
        executor = EventsExecutor() if events else SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not stop:
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except HelpRequested as help_:
        print(node_help(help_.node_name, help_.declared), flush=True)
    except ParameterError as exc:
        print(f"[FATAL] {exc}", file=sys.stderr, flush=True)
        code = deadline.code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            try:
                if hasattr(node, "finish"):
                    # the controller's last stop and final counts; a short wait for acknowledgements,
                    # as a subscriber that died (e.g. the sim) never acknowledges
                    deadline.step = "publishing its last messages"
                    node.finish(FLUSH_ON_SHUTDOWN_S)
                if hasattr(node, "shutdown"):
                    deadline.step = "shutting down"
                    node.shutdown()
            finally:
                deadline.step = "destroying the node"
                node.destroy_node()
        deadline.step = "shutting down rclpy"
        rclpy.try_shutdown()
        deadline.step = "exiting the interpreter"
    return code
