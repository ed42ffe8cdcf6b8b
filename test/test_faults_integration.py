"""Fault campaign with node processes over DDS: SIGKILL and restart of each node while driving.

(The planner's SIGKILL and restart is test_integration.py's main test.) Here, in one bring-up of
the bi-level stack exactly as the launcher does it (launcher.Bringup):

1. SIGKILL the controller while driving: /cmd_vel goes silent and the sim's base-driver watchdog
   stops the wheels once ``cmd_vel_timeout_s`` has passed; a restarted controller (autostart, as
   ``ros2 run`` starts it) drives on.
2. SIGKILL the sim: odometry stops, the controller publishes the stop command once its last
   odometry is older than ``odom_timeout_s`` and stays stopped; a restarted sim, started inactive and
   activated through its lifecycle service as the launcher does (a new world at the start pose),
   brings odometry back and the robot drives to the goal, without a collision.

And for the MPC expert graph: SIGKILL the expert, the wheels stop, a restarted expert reaches the goal.
And the launcher: a node SIGKILLed during a run ends the run at once with the node and its exit
status in the summary, the survivors are deactivated and reaped (no process left), exit status 1.

Delays are measured on the acting nodes' own clocks (stamps: the controller's TwistStamped, the
sim's odometry) and bounded by the configured timeout plus margins measured in the same run.
Nothing here is asserted on this test process' callback times.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from lifecycle_msgs.msg import Transition  # noqa: E402
from test_integration import (  # noqa: E402
    EVIDENCE_WAIT_S,
    STARTUP_S,
    STAYED_STOPPED,
    Probe,
    Rig,
    _stamp_s,
    stayed_stopped,
    stops_after,
)

from hiopt_ros import bringup  # noqa: E402
from hiopt_ros.config import default_params_file  # noqa: E402
from hiopt_ros.course import load_course  # noqa: E402
from hiopt_ros.launcher import (  # noqa: E402
    FLUSH_TIMEOUT_S,
    SHUTDOWN_GRACE_S,
    TRANSITION_TIMEOUT_S,
    Bringup,
    NodeProcesses,
)

pytestmark = [pytest.mark.ros, pytest.mark.integration, pytest.mark.slow]


class FaultProbe(Probe):
    """The integration probe plus odometry stamps and measured speeds (sim clock)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.odom_stamps: list[tuple[float, float, float]] = []   # (sim stamp, |v| measured, DDS receive time)

    def _on_odom(self, msg, t: float) -> None:
        super()._on_odom(msg, t)
        self.odom_stamps.append((_stamp_s(msg), abs(msg.twist.twist.linear.x), t))


class FaultRig(Rig):
    def __init__(self, domain_id: int, **probe_kw) -> None:  # Rig with a FaultProbe
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        from rclpy.executors import SingleThreadedExecutor
        self.exe = SingleThreadedExecutor(context=self.ctx)
        self.probe = FaultProbe(context=self.ctx, **probe_kw)
        self.exe.add_node(self.probe)


def _params(tmp_path: Path) -> Path:
    """nav.yaml with TwistStamped commands (the controller's stamps on every command)."""
    params = yaml.safe_load(default_params_file().read_text())
    params["/**"]["ros__parameters"]["enable_stamped_cmd_vel"] = True
    path = tmp_path / "nav.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


#: speed below which the robot is at a standstill [m/s]
STANDSTILL = 0.02


def _standstill_seen(probe: FaultProbe, last_cmd_t: float, hold: int = 10) -> bool:
    """The probe has odometry stamped after `last_cmd_t` at a standstill, and `hold` odometry after
    that (by then this executor has also run any command callback that was waiting)."""
    odo = np.asarray(probe.odom_stamps)
    still = np.flatnonzero((odo[:, 0] > last_cmd_t) & (odo[:, 1] < STANDSTILL))
    return bool(still.size) and len(odo) - still[0] > hold


def _wait_for_standstill(rig: FaultRig, last_cmd_t, what: str) -> None:
    """Spin until the odometry shows the wheels stopped after the last command (`last_cmd_t()`): a
    wait for evidence, not a bound (the delay is asserted on the sim's stamps by _wheels_stop)."""
    probe = rig.probe

    def seen() -> bool:
        return _standstill_seen(probe, last_cmd_t())
    try:
        rig.spin_until(seen, EVIDENCE_WAIT_S, f"the wheels to stop after {what}")
    except AssertionError as err:
        odo = np.asarray(probe.odom_stamps)
        after = odo[odo[:, 0] > last_cmd_t()]
        raise AssertionError(f"{err}\n  {len(after)} odometry after the last command, speeds "
                             f"{np.round(after[:, 1], 3).tolist()[-20:]} (last 20)") from None


def _wheels_stop(probe: FaultProbe, last_cmd_t: float) -> tuple[float, float, float]:
    """After the driver's last command (time `last_cmd_t`, system clock), from the sim's odometry:
    (last full speed, standstill, margin), relative to `last_cmd_t`. Until the sim's base watchdog
    zeroes the wheels they hold the last command; the last odometry at ≥ 97 % of the speed the robot
    had then is at most one odometry interval after the zeroing (the motors brake from 1 m/s to 0 in
    ~0.2 s: 3 % takes ~6 ms). Standstill: speed < 0.02 m/s (reported; it adds the braking time).
    The margin, measured in this run: the DDS latency of the command (the odometry's longest transport
    latency stands in for it) plus two of the longest odometry intervals (how late the sim's executor,
    which runs the watchdog check and the odometry on one thread, ran, and the sampling after the
    zeroing)."""
    odo = np.asarray(probe.odom_stamps)
    before = odo[odo[:, 0] <= last_cmd_t]
    after = odo[odo[:, 0] > last_cmd_t]
    v_ref = before[-1, 1]
    full = np.flatnonzero(after[:, 1] >= 0.97 * v_ref)
    still = np.flatnonzero(after[:, 1] < STANDSTILL)
    assert still.size, "the wheels never stopped"
    last_full = after[full[-1], 0] - last_cmd_t if full.size else 0.0
    margin = 2 * float(np.max(np.diff(odo[:, 0]))) + float(np.max(odo[:, 2] - odo[:, 0]))
    return last_full, after[still[0], 0] - last_cmd_t, margin


def test_sigkill_and_restart_of_controller_and_sim_while_driving(tmp_path, ros_domain_id):
    params = _params(tmp_path)
    course = load_course(params)
    sections = bringup.load_sections(params)
    cmd_vel_timeout_s = float(sections["sim_node"]["cmd_vel_timeout_s"])
    odom_timeout_s = float(sections["controller_node"]["odom_timeout_s"])
    restart = {s.name: s for s in bringup.graph(params)}           # autostart: active at once
    rig = FaultRig(ros_domain_id, goal_xy=course.goal_xy)
    probe = rig.probe
    try:
        with NodeProcesses(params, tmp_path / "logs", bringup.child_env(ros_domain_id)) as nodes:
            inactive = {s.name: s for s in bringup.graph(params, autostart=False)}
            bring = Bringup(nodes, probe, inactive.values(), rig.spin_once, tmp_path / "logs")
            bring.up()
            rig.spin_until(lambda: probe.ready() and probe.cmd_stamps, STARTUP_S, "the stack", nodes)

            # 1. the controller dies while driving: the sim's base watchdog stops the wheels
            rig.spin_until(lambda: probe.odom_xy[-1][0] > 0.5 and probe.speeds[-1] > 0.2, 30.0, "driving", nodes)
            nodes.kill("controller_node", signal.SIGKILL)
            rig.spin_until(lambda: "controller_node" in nodes.dead(), 5.0, "the controller to die")
            _wait_for_standstill(rig, lambda: probe.cmd_stamps[-1][0], "the controller died")
            last_cmd = probe.cmd_stamps[-1][0]
            full, still, margin = _wheels_stop(probe, last_cmd)
            # the sim's watchdog zeroes the wheels once the last command is older than cmd_vel_timeout_s
            # (checked every physics update); the robot then brakes to standstill (motor torque limit)
            assert full <= cmd_vel_timeout_s + margin, \
                f"still at full speed {full:.3f} s after the last command (timeout {cmd_vel_timeout_s} s, " \
                f"margin {margin:.3f} s)"
            assert probe.speeds[-1] < STANDSTILL
            print(f"\ncontroller SIGKILLed: last full speed {full:.3f} s, standstill {still:.3f} s after its last "
                  f"command (cmd_vel_timeout_s {cmd_vel_timeout_s})")
            x_stopped = probe.odom_xy[-1][0]
            n_cmd = len(probe.cmd_stamps)
            nodes.start(restart["controller_node"])
            rig.spin_until(lambda: probe.odom_xy[-1][0] > x_stopped + 0.3, 60.0, "the new controller to drive",
                           None)
            # (a restarted node is active at once: this probe hears it only once DDS has matched it)
            rig.spin_until(lambda: len(probe.cmd_stamps) > n_cmd, 30.0, "the new controller's commands", None)
            n_cmd = len(probe.cmd_stamps)       # from here on, every command of the new controller arrives

            # 2. the sim dies while driving: the controller stops on stale odometry
            rig.spin_until(lambda: probe.speeds[-1] > 0.2 and len(probe.cmd_stamps) > n_cmd + 25, 30.0,
                           "driving again", None)
            n_before = len(probe.cmd_stamps)
            nodes.kill("sim_node", signal.SIGKILL)
            rig.spin_until(lambda: "sim_node" in nodes.dead(), 5.0, "the sim to die")
            rig.spin_until(lambda: stayed_stopped(np.asarray(probe.cmd_stamps[n_before:]), probe.odom_stamps[-1][0]),
                           EVIDENCE_WAIT_S, f"{STAYED_STOPPED} stop commands after the sim died", None)
            last_odom = probe.odom_stamps[-1][0]
            cmds = np.asarray(probe.cmd_stamps[n_before:])              # (stamp, v, omega)
            after, first_stop = stops_after(cmds, last_odom)
            assert first_stop < len(after), "the controller never stopped after the sim died"
            stop_delay = after[first_stop, 0] - last_odom
            new_controller = np.asarray(probe.cmd_stamps[n_cmd:])        # its periods while driving
            driving = new_controller[new_controller[:, 0] <= last_odom]
            max_period = float(np.max(np.diff(driving[:, 0])))
            stamps = new_controller[:, 0]
            at_stop = int(np.flatnonzero(stamps == after[first_stop, 0])[0])
            period_at_stop = float(stamps[at_stop] - stamps[at_stop - 1])
            odo = np.asarray(probe.odom_stamps)
            max_latency = float(np.max(odo[:, 2] - odo[:, 0]))
            max_odom_gap = float(np.max(np.diff(odo[:, 0])))
            # the bound, every term measured in this run: the cycle that sees the stale odometry comes at
            # most its own period after the threshold (period_at_stop); the controller may have run the
            # last odometry's callback late by up to its longest period (max_period), after the DDS
            # transport (max_latency); and it may have got one more odometry than this probe (best-effort
            # /odom: one odometry interval, max_odom_gap)
            margin = period_at_stop + max_period + max_latency + max_odom_gap
            assert odom_timeout_s - 2e-3 <= stop_delay <= odom_timeout_s + margin, \
                f"stopped {stop_delay:.3f} s after the last odometry (timeout {odom_timeout_s} s, margin " \
                f"{period_at_stop:.3f} + {max_period:.3f} + {max_latency:.3f} + {max_odom_gap:.3f} s)"
            assert len(after) - first_stop >= STAYED_STOPPED, "it did not stay stopped"
            print(f"sim SIGKILLed: controller stopped {stop_delay:.3f} s after the last odometry "
                  f"(odom_timeout_s {odom_timeout_s}) and stayed stopped ({len(after) - first_stop} stop commands)")

            # a new sim, restarted the way the launcher brings nodes up: inactive, then activated through
            # its lifecycle service (it answers only once it has matched this probe, so the probe hears
            # its first odometry): a new world at the start pose, and the stack drives to the goal
            n_odom = len(probe.odom_stamps)
            nodes.start(inactive["sim_node"])
            deadline = time.monotonic() + STARTUP_S
            # (a request sent before the new process serves it is lost: ask again until it answers)
            while not bring.lifecycle.change("sim_node", Transition.TRANSITION_ACTIVATE, rig.spin_once, 2.0):
                assert len(probe.odom_stamps) == n_odom, "the new sim became active without answering"
                assert time.monotonic() < deadline and not nodes.dead(), "the new sim did not activate"
            rig.spin_until(lambda: len(probe.odom_stamps) > n_odom, 10.0, "the new sim's odometry", None)
            assert np.allclose(probe.odom_xy[n_odom], course.start_xyyaw[:2], atol=0.1), probe.odom_xy[n_odom]
            rig.spin_until(lambda: probe.reached or probe.collided, 90.0, "the goal", None)
            assert not nodes.dead(), nodes.dead()
    finally:
        rig.close()
    assert probe.reached and not probe.collided
    cmds = np.asarray(probe.cmd_stamps)
    assert np.all(np.isfinite(cmds[:, 1:]))
    # no collision over the whole run (both worlds): the robot circle never touched an obstacle
    assert min(course.clearance(xy) for xy in probe.odom_xy) > 0.0


def test_sigkill_and_restart_of_the_expert_while_driving(tmp_path, ros_domain_id):
    params = default_params_file()
    course = load_course(params)
    sections = bringup.load_sections(params)
    cmd_vel_timeout_s = float(sections["sim_node"]["cmd_vel_timeout_s"])
    restart = {s.name: s for s in bringup.graph(params, use_expert=True)}
    rig = FaultRig(ros_domain_id, stamped_cmd_vel=False, mode="expert", goal_xy=course.goal_xy)
    probe = rig.probe
    try:
        with NodeProcesses(params, tmp_path / "logs", bringup.child_env(ros_domain_id)) as nodes:
            Bringup(nodes, probe, bringup.graph(params, use_expert=True, autostart=False), rig.spin_once,
                    tmp_path / "logs").up()
            rig.spin_until(lambda: probe.odom_xy and probe.odom_xy[-1][0] > 0.5 and probe.speeds[-1] > 0.2, 60.0,
                           "driving", nodes)
            nodes.kill("expert_node", signal.SIGKILL)
            rig.spin_until(lambda: "expert_node" in nodes.dead(), 5.0, "the expert to die")
            _wait_for_standstill(rig, lambda: probe.cmd_t[-1], "the expert died")
            # (Twist carries no stamp: the last command's DDS receive time, at or after its sending)
            full, still, margin = _wheels_stop(probe, probe.cmd_t[-1])
            assert full <= cmd_vel_timeout_s + margin
            assert probe.speeds[-1] < STANDSTILL
            print(f"\nexpert SIGKILLed: last full speed {full:.3f} s, standstill {still:.3f} s after its last command "
                  f"was received (cmd_vel_timeout_s {cmd_vel_timeout_s})")
            x_stopped = probe.odom_xy[-1][0]
            nodes.start(restart["expert_node"])
            rig.spin_until(lambda: probe.reached or probe.collided, 90.0, "the goal", None)
            assert probe.odom_xy[-1][0] > x_stopped
    finally:
        rig.close()
    assert probe.reached and not probe.collided
    assert np.all(np.isfinite(np.asarray(probe.cmds)))
    assert min(course.clearance(xy) for xy in probe.odom_xy) > 0.0


def _hiopt_processes(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains `marker` (e.g. a run's params folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("victim", ["controller_node", "sim_node", "planner_node"])
def test_launcher_ends_the_run_when_a_node_is_killed_and_leaves_no_process(tmp_path, ros_domain_id, victim):
    """The launcher does not restart nodes (a run is one episode): it ends the run with the node and
    its exit status, deactivates the survivors (the controller's last stop is recorded when it is
    alive) and reaps every process, within the bounds its own timeouts set."""
    from hiopt_ros import launcher

    killed = {}

    def on_ready(nodes, monitor):
        killed["pid"] = nodes.procs[victim].pid
        nodes.kill(victim, signal.SIGKILL)

    args = launcher.parse_args(["--out", str(tmp_path), "--timeout-s", "60",
                                "--domain-id", str(ros_domain_id)])
    t0 = time.monotonic()
    summary, run_dir = launcher.run(args, on_ready=on_ready, log=lambda *_: None)
    elapsed_after_kill = time.monotonic() - t0
    assert summary.end_reason == f"node(s) exited: {{'{victim}': {-signal.SIGKILL}}}", summary.end_reason
    assert not summary.success
    assert not _hiopt_processes(str(run_dir / "params")), "node processes left behind"
    with pytest.raises(ProcessLookupError):
        os.kill(killed["pid"], 0)
    # bounded by the launcher's own timeouts: start-up, two transitions, the flush, the shutdown grace
    assert elapsed_after_kill <= launcher.STARTUP_TIMEOUT_S + 3 * TRANSITION_TIMEOUT_S + FLUSH_TIMEOUT_S + \
        3 * SHUTDOWN_GRACE_S
    assert (run_dir / "summary.json").exists()
    if victim != "controller_node":     # the surviving controller was deactivated: its last command is a stop
        from rosbags.highlevel import AnyReader
        with AnyReader([run_dir / "bag"]) as reader:
            conns = [cn for cn in reader.connections if cn.topic == "/cmd_vel"]
            last = None
            for conn, _, raw in reader.messages(connections=conns):
                last = reader.deserialize(raw, conn.msgtype)
        assert last is not None and (last.linear.x, last.angular.z) == (0.0, 0.0)
    print(f"\nlauncher, {victim} SIGKILLed: '{summary.end_reason}', everything reaped "
          f"{elapsed_after_kill:.1f} s after launch")
