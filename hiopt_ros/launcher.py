"""The main job: run the whole navigation stack headless, record it, and summarise the run.

    python -m hiopt_ros.launcher [--params config/nav.yaml] [--theta config/theta/x.yaml]
                                 [--expert] [--gui] [--out runs/] [--timeout-s 60]

It starts the node graph of :mod:`hiopt_ros.bringup` (the same processes, parameters and arguments
that ``ros2 launch hiopt_ros nav.launch.py`` starts), each node as its own process talking over DDS,
using only the pip wheels (no ``ros2`` CLI). A monitor in this process records /odom, /cmd_vel,
/hiopt/subgoal and /hiopt/obstacles to a rosbag2 (MCAP). The nodes start inactive (lifecycle) and
are activated only after the monitor has matched every publisher it records, so the bag holds every
message they publish (see :func:`run`). The run ends when the goal is reached, on a collision, or
after ``--timeout-s`` seconds of driving. It then deactivates the nodes, interrupts them (SIGINT,
then SIGTERM/SIGKILL if they hang) and waits for them — also on Ctrl-C or an error — and writes

    <out>/<timestamp>/trajectory.png   top view: obstacles, path, subgoals
    <out>/<timestamp>/bag/             rosbag2, MCAP storage (ros2 bag info / Foxglove / rosbags)
    <out>/<timestamp>/summary.json     the printed summary, machine-readable
    <out>/<timestamp>/logs/<node>.log  each node's output
    <out>/<timestamp>/params/<node>.overrides.yaml   the per-node overrides it was started with

``--e2e POLICY`` runs the end-to-end RL baseline (e2e_node) instead of planner + controller.
``--expert`` runs the MPC expert instead of planner + controller: that is how demonstrations for
``python -m offline.fit`` are recorded. Exit status: 0 when the goal was reached without a
collision, 1 otherwise, 2 on a start-up error.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hiopt_ros import bringup
from hiopt_ros.bags import BagWriter
from hiopt_ros.course import load_course
from hiopt_ros.domains import reserve_domain

if TYPE_CHECKING:  # imported at run time inside run(): recording pulls in rclpy
    from hiopt_ros.recording import RunSummary

STARTUP_TIMEOUT_S = 90.0     # wheels re-exec Python, acados loads, DDS discovers: be generous
TRANSITION_TIMEOUT_S = 10.0  # a lifecycle transition (the controller's deactivation waits ≤ 1 s for acks)
FLUSH_TIMEOUT_S = 5.0        # after deactivation: until every message a node reported has arrived here
SHUTDOWN_GRACE_S = 10.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children get SIGTERM if the launcher dies without cleaning up (kill -9): no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def default_domain_id() -> tuple[int, object]:
    """($ROS_DOMAIN_ID, None) if set, else a domain reserved for this run (hiopt_ros.domains) and its
    reservation, which the caller keeps alive: parallel runs and test sessions never share a domain."""
    env = os.environ.get("ROS_DOMAIN_ID")
    if env:
        return int(env), None
    reservation = reserve_domain()
    return reservation.domain_id, reservation


class NodeProcesses:
    """The graph's node processes; a context manager that always stops and reaps them."""

    def __init__(self, params_file: Path, log_dir: Path | None, env: dict[str, str], echo: bool = False,
                 overrides_dir: Path | None = None) -> None:
        """`overrides_dir` keeps each node's overrides file (bringup.write_overrides); without one they
        go to a temporary folder that :meth:`stop` deletes."""
        import tempfile

        self.params_file, self.log_dir, self.env, self.echo = params_file, log_dir, env, echo
        self._tmp = None
        if overrides_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hiopt_params_")
            overrides_dir = Path(self._tmp.name)
        self.overrides_dir = overrides_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start(self, spec) -> subprocess.Popen:
        """Start one node of the graph as its own process (output to logs/<node>.log)."""
        out = None
        if self.log_dir is not None and not self.echo:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{spec.name}.log", "a")  # a restarted node appends
            self._logs.append(out)
        self.procs[spec.name] = subprocess.Popen(
            bringup.command(spec, self.params_file, overrides_dir=self.overrides_dir), env=self.env, stdout=out,
            stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL,
            start_new_session=True,  # the terminal's Ctrl-C reaches us only; we stop the nodes
            preexec_fn=_die_with_parent)
        return self.procs[spec.name]

    def __enter__(self) -> "NodeProcesses":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def dead(self) -> dict[str, int]:
        """{node: exit code} of nodes that have exited."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def kill(self, name: str, sig: int = signal.SIGINT) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)

    def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> dict[str, int]:
        """SIGINT every node (the controller then publishes a last stop), escalate, reap."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
                time.sleep(0.05)
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(sig)
        for proc in self.procs.values():
            proc.wait()
        for fh in self._logs:
            fh.close()
        self._logs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return {n: p.returncode for n, p in self.procs.items()}


def new_run_dir(out: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run = out / stamp
    k = 1
    while run.exists():
        k += 1
        run = out / f"{stamp}-{k}"
    run.mkdir(parents=True)
    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m hiopt_ros.launcher",
        description="Run the hiopt navigation stack (sim, planner, controller as separate ROS 2 processes) "
                    "headless from start to goal, record a bag and print a summary.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--params", type=Path, default=bringup.default_params_file(),
                    help="ROS 2 parameter file of every node (the course lives here)")
    ap.add_argument("--theta", default="", help="θ file (config/theta/*.yaml) for the controller's FOP; "
                                                 "default: the unchanged FOP")
    ap.add_argument("--expert", action="store_true", help="drive with the MPC expert instead of planner + FOP "
                                                          "(records a demonstration)")
    ap.add_argument("--e2e", default="", metavar="POLICY",
                    help="drive with the end-to-end RL baseline (e2e_node running this policy, e.g. "
                         "runs/train/e2e-*/policy.pt) instead of planner + FOP")
    ap.add_argument("--gui", action="store_true", help="open the PyBullet GUI (needs a display)")
    ap.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the run folder")
    ap.add_argument("--timeout-s", type=float, default=60.0, help="end the run after this many seconds of driving")
    ap.add_argument("--domain-id", type=int, default=None,
                    help="ROS_DOMAIN_ID of the run (default: $ROS_DOMAIN_ID, else a free one reserved for this run)")
    ap.add_argument("--use-sim-time", action="store_true", help="the sim publishes /clock and nodes follow it")
    ap.add_argument("--no-bag", action="store_true", help="do not record a bag")
    ap.add_argument("--echo", action="store_true", help="show the nodes' output here instead of logs/")
    args = ap.parse_args(argv)
    if not args.params.exists():
        ap.error(f"--params: {args.params} does not exist")
    if args.theta and not Path(args.theta).exists():
        ap.error(f"--theta: {args.theta} does not exist")
    if args.e2e and not Path(args.e2e).is_file():
        ap.error(f"--e2e: {args.e2e} does not exist (train one with python -m sim.train --method e2e)")
    if args.e2e and args.expert:
        ap.error("--e2e and --expert choose different drivers; give one")
    if args.timeout_s <= 0:
        ap.error("--timeout-s must be > 0")
    return args


class Lifecycle:
    """Lifecycle transitions of the graph's nodes (what `ros2 lifecycle set <node> activate` does)."""

    #: a request unanswered this long is sent again: rmw can drop a service response ("failed to send
    #: response (timeout)" in the node's log, seen once in 10 integration runs under two CPU hogs)
    RETRY_S = 2.0

    def __init__(self, node, names) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self._srv, self._get = ChangeState, GetState
        self.clients = {n: node.create_client(ChangeState, f"/{n}/change_state") for n in names}
        self.state_clients = {n: node.create_client(GetState, f"/{n}/get_state") for n in names}

    def missing(self) -> list[str]:
        """Nodes whose change_state service this process has not discovered yet."""
        return [n for n, cl in self.clients.items() if not cl.service_is_ready()]

    @staticmethod
    def _wait(future, spin_once, until: float):
        while not future.done() and time.monotonic() < until:
            spin_once(0.05)
        return future.result() if future.done() else None

    def state(self, name: str, spin_once, timeout_s: float) -> int | None:
        """The node's primary state id (lifecycle_msgs/State), or None without an answer in time."""
        res = self._wait(self.state_clients[name].call_async(self._get.Request()), spin_once,
                         time.monotonic() + timeout_s)
        return None if res is None else int(res.current_state.id)

    def change(self, name: str, transition_id: int, spin_once, timeout_s: float) -> bool:
        """Request a transition and wait (bounded by timeout_s) until the node has made it.

        An unanswered request is repeated every RETRY_S; a refused one counts as done when the node
        already is in the transition's goal state (an earlier request went through, its answer was
        lost)."""
        from lifecycle_msgs.msg import State, Transition

        goal = {Transition.TRANSITION_ACTIVATE: State.PRIMARY_STATE_ACTIVE,
                Transition.TRANSITION_DEACTIVATE: State.PRIMARY_STATE_INACTIVE,
                Transition.TRANSITION_CONFIGURE: State.PRIMARY_STATE_INACTIVE}.get(transition_id)
        request = self._srv.Request()
        request.transition.id = transition_id
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            res = self._wait(self.clients[name].call_async(request), spin_once,
                             min(deadline, time.monotonic() + self.RETRY_S))
            if res is None:
                continue
            if res.success:
                return True
            return goal is not None and self.state(name, spin_once, max(deadline - time.monotonic(), 0.5)) == goal
        return False


class Bringup:
    """Brings a graph up so that `monitor` (a recording.RunMonitor) hears every message, and down again.

    :meth:`up`: start every node process inactive (``autostart: false`` in the specs), wait
    (bounded) until the monitor has matched the publisher of every recorded topic and every node's
    lifecycle service, activate the simulator, wait for its first odometry, activate the others.
    :meth:`down`: deactivate the drivers (the controller's last stop is recorded), then the sim, and
    wait until every message the nodes reported has arrived. The launcher and the integration tests
    use the same sequence.
    """

    def __init__(self, nodes: NodeProcesses, monitor, specs, spin_once, log_dir: Path | None = None) -> None:
        self.nodes, self.monitor, self.specs, self.spin_once = nodes, monitor, list(specs), spin_once
        self.where = f" (see {log_dir})" if log_dir is not None else ""
        # created after the recorder's subscriptions: DDS announces a participant's endpoints in
        # creation order, so a node that answers a lifecycle request has matched the recorder too
        self.lifecycle = Lifecycle(monitor, [s.name for s in self.specs])
        self.t0 = time.monotonic()

    def _wait(self, ready, what) -> None:
        while not ready():
            self.spin_once(0.05)
            if self.nodes.dead():
                raise RuntimeError(f"node(s) exited during start-up: {self.nodes.dead()}{self.where}")
            if time.monotonic() - self.t0 > STARTUP_TIMEOUT_S:
                raise RuntimeError(f"{what()} within {STARTUP_TIMEOUT_S:.0f} s{self.where}")

    def _not_discovered(self) -> str:
        topics = [t for t, n in self.monitor.matched().items() if n < 1]
        missing = self.lifecycle.missing()
        return "DDS discovery did not complete: " + "; ".join(
            ([f"no publisher matched on {', '.join(topics)}"] if topics else []) +
            ([f"no lifecycle service of {', '.join(missing)}"] if missing else []))

    def activate(self, name: str) -> None:
        from lifecycle_msgs.msg import Transition

        if not self.lifecycle.change(name, Transition.TRANSITION_ACTIVATE, self.spin_once, TRANSITION_TIMEOUT_S):
            raise RuntimeError(f"{name} did not activate within {TRANSITION_TIMEOUT_S:.0f} s{self.where}")

    def up(self) -> float:
        """Start and activate the graph; returns the monitor time [s] at which the drivers were activated."""
        self.t0 = time.monotonic()
        for spec in self.specs:
            self.nodes.start(spec)
        self._wait(lambda: all(n >= 1 for n in self.monitor.matched().values()) and not self.lifecycle.missing(),
                   self._not_discovered)
        self.activate(self.specs[0].name)
        self._wait(lambda: bool(self.monitor.odom_t), lambda: "no odometry from sim_node after its activation")
        t_drive = self.monitor.now_s()
        for spec in self.specs[1:]:
            self.activate(spec.name)
        return t_drive

    def down(self) -> None:
        """Deactivate the drivers, then the sim; wait (bounded) for each node's final report (its
        published counts once it stopped publishing) and for every message it reports."""
        from lifecycle_msgs.msg import Transition

        deactivated = []
        for spec in reversed(self.specs):
            if spec.name not in self.nodes.dead() and \
                    self.lifecycle.change(spec.name, Transition.TRANSITION_DEACTIVATE, self.spin_once,
                                          TRANSITION_TIMEOUT_S):
                deactivated.append(spec.name)
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while time.monotonic() < deadline and not (set(deactivated) <= self.monitor.finished and
                                                   self.monitor.all_recorded()):
            self.spin_once(0.05)


def run(args: argparse.Namespace, *, on_ready=None, log=print, stop=None) -> tuple[RunSummary, Path]:
    """Run the stack once; returns (summary, run folder). `on_ready(processes, monitor)` is a test hook;
    `stop` (a hiopt_ros.nodes.process.StopSignal) ends the run with KeyboardInterrupt at the next safe point.

    Order of events, so that the bag holds every message the nodes publish:
    1. every node process starts inactive (lifecycle, ``autostart: false``);
    2. wait (bounded) until the monitor has matched the publisher(s) of every recorded topic and
       every node's lifecycle service is reachable;
    3. activate sim_node (odometry and the latched obstacles start), wait for its first odometry;
    4. activate the drivers (planner + controller, or the expert): the robot starts moving;
    5. on the goal, a collision, the timeout or a node's death: deactivate the drivers (the
       controller publishes a last stop, waits until every subscriber acknowledged every command
       and reports its counts) and the sim; wait until the monitor holds every reported message;
    6. interrupt and reap the processes; write bag, summary and plot.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from hiopt_ros.recording import RECORDED_TOPICS, RunMonitor, write_plot

    params = args.params.resolve()
    course = load_course(params)
    sections = bringup.load_sections(params)
    mode = "expert" if args.expert else "e2e" if args.e2e else "bilevel"
    driver = sections.get({"expert": "expert_node", "e2e": "e2e_node"}.get(mode, "controller_node"), {})
    stamped = bool(sections.get("/**", {}).get("enable_stamped_cmd_vel", False))
    reservation = None
    if args.domain_id is not None:
        domain_id = args.domain_id
    else:
        domain_id, reservation = default_domain_id()
    specs = bringup.graph(params, theta_file=args.theta, use_expert=args.expert, gui=args.gui,
                          use_sim_time=args.use_sim_time, autostart=False, e2e_policy=args.e2e)
    run_dir = new_run_dir(args.out)
    log(f"run folder: {run_dir}  (ROS_DOMAIN_ID={domain_id}; nodes: {', '.join(s.name for s in specs)})")

    env = bringup.child_env(domain_id)
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)  # the monitor in this process joins the same domain
    bringup.dds_env(os.environ)                    # with the same DDS settings
    bag = None
    if not args.no_bag:
        bag = BagWriter(run_dir / "bag", storage="mcap")
    context = rclpy.Context()
    # no rclpy signal handlers: Ctrl-C must reach `stop` (main) so the nodes get stopped
    rclpy.init(context=context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    executor = SingleThreadedExecutor(context=context)
    monitor = None
    summary = None

    def spin_once(timeout_s: float) -> None:
        if stop is not None:
            stop.check()
        executor.spin_once(timeout_sec=timeout_s)

    try:
        monitor = RunMonitor(bag=bag, stamped_cmd_vel=stamped, mode=mode, goal_xy=course.goal_xy,
                             commanded_rate_hz=float(driver.get("control_rate_hz", 50.0)), context=context)
        executor.add_node(monitor)
        with NodeProcesses(params, run_dir / "logs", env, echo=args.echo, overrides_dir=run_dir / "params") as nodes:
            bring = Bringup(nodes, monitor, specs, spin_once, run_dir / "logs")
            t_drive = bring.up()
            log(f"stack up after {time.monotonic() - bring.t0:.1f} s (recorder matched {', '.join(RECORDED_TOPICS)}); "
                f"driving to {course.goal_xy.tolist()}")
            if on_ready is not None:
                on_ready(nodes, monitor)
            t_wall = time.monotonic()
            end_reason = "timeout"
            while time.monotonic() - t_wall < args.timeout_s:
                spin_once(0.05)
                if monitor.reached:
                    end_reason = "goal reached"
                    break
                if monitor.collided:
                    end_reason = "collision"
                    break
                if nodes.dead():
                    end_reason = f"node(s) exited: {nodes.dead()}"
                    break
            end_t = monitor.reached_t if end_reason == "goal reached" else monitor.now_s()
            bring.down()  # drivers first (the controller's last stop is recorded), then the sim
            monitor.wait_for_world_update(spin_once, timeout_s=0.5)
            summary = monitor.summary(end_reason, t_drive, end_t)
        # nodes are interrupted and reaped here
    finally:
        if bag is not None:
            bag.close()  # keep what was recorded, also after an error
        close_ros(context, executor, reservation, monitor)

    summary.run_dir, summary.domain_id = str(run_dir), domain_id
    title = f"{ {'expert': 'expert MPC', 'e2e': 'end-to-end RL'}.get(mode, 'bi-level (planner + FOP)')}: " + \
            ("goal reached" if summary.reached else summary.end_reason) + (", collision" if summary.collided else "")
    write_plot(run_dir / "trajectory.png", course, monitor, title)
    (run_dir / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary, run_dir


def close_ros(context, executor, reservation, *nodes) -> None:
    """Tear down what a tool opened to watch the stack (the launcher, tools/soak.py, the node-rate
    bench): its own nodes, its executor and rclpy context, then its ROS domain reservation."""
    import rclpy

    for node in nodes:
        if node is not None:
            executor.remove_node(node)
            node.destroy_node()
    executor.shutdown()
    rclpy.try_shutdown(context=context)
    if reservation is not None:
        reservation.release()


def run_cli(body, interrupted: str = "interrupted: nodes stopped") -> int:
    """A tool's exit status: body()'s; 130 after Ctrl-C or `kill` (the nodes are stopped by then);
    2 with one line on stderr for a RuntimeError (a node that did not start, discovery that did
    not complete, ...)."""
    try:
        return body()
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hiopt_ros.nodes.process import StopSignal

    # Ctrl-C and `kill <launcher>` end the run at the next executor turn; the nodes are then stopped
    stop = StopSignal().install()
    return run_cli(lambda: report(args, *run(args, stop=stop)))


def report(args, summary, run_dir: Path) -> int:
    """Print the run's summary; exit status 0 when the robot reached the goal without a collision."""
    sections = bringup.load_sections(args.params)
    checkpoint = sections.get("planner_node", {}).get("policy_checkpoint", "")
    planner = f"RL policy {checkpoint}" if checkpoint else "geometric look-ahead planner"
    theta_file = args.theta or sections.get("controller_node", {}).get("theta_file", "")
    if args.expert or args.e2e:
        what = "expert MPC" if args.expert else f"end-to-end RL policy {args.e2e}"
    else:
        what = f"bi-level: {planner} + FOP" + (f", θ {theta_file}" if theta_file else ", unchanged FOP (θ = 0)")
    print(f"\nhiopt navigation run ({what})")
    print(summary.text())
    if not summary.recording_complete:
        print("warning: the bag misses messages the nodes published (see 'recorded' above)", file=sys.stderr)
    counts = ", ".join(f"{t} {n}" for t, n in summary.message_counts.items())
    print(f"run folder: {run_dir}\n  trajectory.png, bag/ (MCAP: {counts}), summary.json, logs/, params/")
    return 0 if summary.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
