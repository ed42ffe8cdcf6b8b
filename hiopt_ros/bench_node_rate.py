"""Controller headroom: controller_node alone, fed recorded inputs, at rising control rates.

    python -m hiopt_ros.bench --node-rate [--rates 50,100,200,500] [--duration-s 10] [--bag runs/<t>/bag]

For every rate the controller node runs as its own process, exactly as the stack starts it
(``python -m hiopt_ros.nodes.controller_node`` with config/nav.yaml and its overrides), with only
``control_rate_hz`` changed. This process replays inputs into it: /odom at 50 Hz and
/hiopt/subgoal at 10 Hz along a recorded drive (the /odom and /hiopt/subgoal of ``--bag``, or a
drive of the pure-Python loop when no bag is given), the obstacles once (latched), all as messages
built before the clock starts, so the replay allocates nothing while it runs. Each command's
publication time is the controller's own clock (DDS source timestamp), so this process' scheduling
does not enter the numbers. Reported per rate, over ``--duration-s`` after a warm-up:

* achieved rate: commands / window;
* period jitter: |period − 1/rate| at p50 and p99;
* missed periods: periods in the window − commands (one command per timer callback; a late timer
  skips the periods it missed), as a count and as a share of the periods due;
* the FOP's solve time (its own /hiopt/solve_time_us) p50/p99;
* the controller process' CPU use: share of one core, and CPU time per command (what one cycle,
  executor included, costs when the process has the CPU; 1e6 / rate µs is the budget).

The controller publishes one command per timer callback, so every missed period is a callback
that came later than a whole period (the process did not get the CPU, or the previous cycle took
longer than the period).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hiopt_ros import bringup
from hiopt_ros import conversions as conv
from hiopt_ros.bag_reader import read_robot_bag
from hiopt_ros.config import default_params_file
from hiopt_ros.control.fop import Fop
from hiopt_ros.control.params import fop_config_from_params
from hiopt_ros.course import load_course
from hiopt_ros.domains import reserve_domain
from hiopt_ros.tables import Column, markdown_table
from hiopt_ros.unicycle_loop import run_episode

DEFAULT_RATES = (50.0, 100.0, 200.0, 500.0)
ODOM_RATE_HZ = 50.0
SUBGOAL_RATE_HZ = 10.0
WARMUP_S = 2.0


@dataclass
class RateResult:
    rate_hz: float
    commands: int
    achieved_hz: float
    jitter_p50_us: float
    jitter_p99_us: float
    missed: int
    missed_pct: float
    solve_p50_us: float
    solve_p99_us: float
    cpu_pct: float              # the controller process' CPU time / wall time [% of one core]
    cpu_per_cycle_us: float     # its CPU time per command: what a cycle costs when it gets the CPU


def period_stats(stamps_s: np.ndarray, rate_hz: float,
                 window_s: tuple[float, float] | None = None) -> tuple[float, float, float, int, float]:
    """(achieved rate, jitter p50 [µs], jitter p99 [µs], missed periods, missed share [%]) of
    command publication times (seconds, the publisher's clock).

    The periods due are the window's length in periods (`window_s` = (from, to); default: from the
    first to the last command, plus one); missed = due − commands, since the controller publishes
    exactly one command per timer callback and a timer that fires more than a period late skips the
    periods it missed. Jitter is |gap − 1/rate| over consecutive commands.
    """
    stamps_s = np.sort(np.asarray(stamps_s, float))
    nominal = 1.0 / rate_hz
    if window_s is not None:
        due = int(round((window_s[1] - window_s[0]) / nominal))
    elif stamps_s.size:
        due = int(round((stamps_s[-1] - stamps_s[0]) / nominal)) + 1
    else:
        due = 0
    missed = max(due - int(stamps_s.size), 0)
    missed_pct = 100.0 * missed / due if due else float("nan")
    if stamps_s.size < 3:
        return float("nan"), float("nan"), float("nan"), missed, missed_pct
    gaps = np.diff(stamps_s)
    jitter_us = np.abs(gaps - nominal) * 1e6
    span = window_s[1] - window_s[0] if window_s is not None else stamps_s[-1] - stamps_s[0] + nominal
    return (float(stamps_s.size / span), float(np.percentile(jitter_us, 50)), float(np.percentile(jitter_us, 99)),
            missed, missed_pct)


def driving_part(odom: np.ndarray, subgoals: np.ndarray, keep_away_m: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """The drive up to the robot's first arrival within keep_away_m of where it ended, and the
    subgoals of that time: replayed in a loop, the controller solves every cycle (at the end of a
    drive it holds still "at subgoal" and solves nothing, which left a short window without a solve)."""
    dist = np.hypot(*(odom[:, :2] - odom[-1, :2]).T)
    near = np.flatnonzero(dist <= keep_away_m)
    n = int(near[0]) if near.size and near[0] > 10 else len(odom)
    m = max(1, int(np.ceil(len(subgoals) * n / len(odom))))
    return odom[:n], subgoals[:m]


def recorded_inputs(bag: str | None, params: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(odometry rows [x, y, yaw, v, ω] at 50 Hz, subgoals [x, y] at 10 Hz, obstacles (m, 3)) of a drive."""
    if bag:
        data = read_robot_bag(bag, obstacles="optional")
        obstacles = data.obstacles.obstacles_xyr[-1] if data.obstacles is not None and len(data.obstacles) else None
        if obstacles is None:
            obstacles = load_course(params).obstacles_xyr
        return data.odom.values, data.subgoal.values, obstacles
    course = load_course(params)
    res = run_episode(course, "fop", fop=Fop(fop_config_from_params(params)), dt_s=1.0 / ODOM_RATE_HZ)
    traj = res.trajectory
    v = np.r_[np.linalg.norm(np.diff(traj[:, :2], axis=0), axis=1) * ODOM_RATE_HZ, 0.0]
    omega = np.r_[np.diff(traj[:, 2]) * ODOM_RATE_HZ, 0.0]
    odom = np.column_stack([traj, v, omega])
    step = int(round(ODOM_RATE_HZ / SUBGOAL_RATE_HZ))
    return odom, res.subgoals[::step], course.obstacles_xyr


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_rate(rate_hz: float, duration_s: float, params: Path, domain_id: int, log_dir: Path, spin_once,
             counters: dict) -> RateResult:
    """One controller process at `rate_hz`, fed by the replay this process spins with `spin_once`."""
    from hiopt_ros.launcher import NodeProcesses

    spec = bringup.NodeSpec("controller_node", {"control_rate_hz": float(rate_hz)})
    with NodeProcesses(params, log_dir, bringup.child_env(domain_id)) as procs:
        started = time.time()
        pid = procs.start(spec).pid
        counters.update(stamps=[], solve=[])
        deadline = time.monotonic() + 90.0
        # wait for this process' first command: the previous rate's controller may still deliver its
        # last stop late on a loaded machine, and the window must not start on that
        while not counters["stamps"] or counters["stamps"][-1] < started:
            spin_once(0.01)
            if procs.dead() or time.monotonic() > deadline:
                raise RuntimeError(f"controller_node did not start (see {log_dir})")
        t_measure = time.monotonic() + WARMUP_S
        while time.monotonic() < t_measure:
            spin_once(0.001)
        # the window is exactly duration_s on the controller's clock (its publication stamps, system
        # time): commands this process receives late still count in the window they were published
        # in, and a late turn of this loop does not lengthen the window
        n_solve_before = len(counters["solve"])
        cpu0, wall0, window_from = cpu_seconds(pid), time.monotonic(), time.time()
        window_to = window_from + duration_s
        while time.time() < window_to:
            spin_once(0.001)
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
        drain_until = time.monotonic() + 5.0
        while (not counters["stamps"] or counters["stamps"][-1] < window_to) and time.monotonic() < drain_until:
            spin_once(0.01)
        all_stamps = np.asarray(counters["stamps"])
        stamps = all_stamps[(all_stamps >= window_from) & (all_stamps < window_to)]
        solve = np.asarray(counters["solve"][n_solve_before:])
    achieved, j50, j99, missed, missed_pct = period_stats(stamps, rate_hz, (window_from, window_to))
    return RateResult(rate_hz, int(stamps.size), achieved, j50, j99, missed, missed_pct,
                      float(np.percentile(solve, 50)) if solve.size else float("nan"),
                      float(np.percentile(solve, 99)) if solve.size else float("nan"),
                      100.0 * cpu / wall, 1e6 * cpu / max(stamps.size, 1))


_COLUMNS = [Column(h, "right") for h in (
    "rate [Hz]", "commands", "achieved [Hz]", "jitter p50 [µs]", "jitter p99 [µs]", "missed periods", "missed [%]",
    "FOP p50 [µs]", "FOP p99 [µs]", "controller CPU [% core]", "CPU per cycle [µs]")]


def markdown(results: list[RateResult], duration_s: float, source: str) -> str:
    rows = [[f"{r.rate_hz:g}", r.commands, f"{r.achieved_hz:.1f}", f"{r.jitter_p50_us:.0f}", f"{r.jitter_p99_us:.0f}",
             r.missed, f"{r.missed_pct:.2f}", f"{r.solve_p50_us:.0f}", f"{r.solve_p99_us:.0f}", f"{r.cpu_pct:.0f}",
             f"{r.cpu_per_cycle_us:.0f}"] for r in results]
    return (f"controller_node alone, {duration_s:g} s per rate after {WARMUP_S:g} s warm-up, inputs: {source}.\n\n"
            + markdown_table(_COLUMNS, rows) + "\n")


def print_profile(path: Path, top: int = 25) -> None:
    """The `top` functions of a controller profile by own time, with their share of the process' total."""
    import pstats

    if not path.exists():
        print(f"{path}: no profile (the controller did not exit cleanly)")
        return
    st = pstats.Stats(str(path))
    total = st.total_tt
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    print(f"\n{path.name}: {total:.2f} s of profiled time; own time (tottime) of the top {top} functions:")
    for (file, line, name), (_cc, calls, tt, ct, _callers) in rows:
        print(f"  {100 * tt / total:5.1f} %  own {tt:7.3f} s  cum {ct:7.3f} s  {calls:8d} calls  "
              f"{Path(file).name}:{line} {name}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hiopt_ros.bench --node-rate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in DEFAULT_RATES),
                    help="control rates [Hz], comma-separated (default 50,100,200,500)")
    ap.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per rate (default 10)")
    ap.add_argument("--bag", default=None, help="replay /odom and /hiopt/subgoal of this bag (e.g. runs/<t>/bag); "
                                                "default: a drive of the pure-Python loop on the default course")
    ap.add_argument("--params", type=Path, default=default_params_file(), help="parameter file of the controller")
    ap.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: a free one, reserved)")
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--markdown", default=None, help="write the table as Markdown here")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="run each controller under cProfile: DIR/controller_<rate>Hz.prof (pstats) and its top "
                         "functions printed; the profiler's overhead inflates that run's CPU numbers")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        print(f"error: --rates must be numbers separated by commas, got {args.rates!r}", file=sys.stderr)
        return 2
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates) or not args.duration_s > 0:
        print("error: --rates must be positive numbers and --duration-s > 0", file=sys.stderr)
        return 2
    if args.bag and not Path(args.bag).exists():
        print(f"error: --bag {args.bag} does not exist", file=sys.stderr)
        return 2

    import tempfile

    import rclpy
    from geometry_msgs.msg import PointStamped
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.serialization import serialize_message
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import Float64

    from hiopt_ros.launcher import close_ros, run_cli
    from hiopt_ros.nodes.controller_node import PROFILE_ENV
    from hiopt_ros.nodes.managed import markers_from_obstacles, twist_type
    from hiopt_ros.nodes.process import StopSignal
    from hiopt_ros.nodes.topics import (
        COMMAND_QOS,
        LATCHED_QOS,
        SENSOR_QOS,
        TOPIC_CMD_VEL,
        TOPIC_OBSTACLES,
        TOPIC_ODOM,
        TOPIC_SOLVE_TIME,
        TOPIC_SUBGOAL,
    )
    from hiopt_ros.recording import recorder_qos

    odom_rows, subgoal_rows, obstacles = recorded_inputs(args.bag, args.params)
    odom_rows, subgoal_rows = driving_part(odom_rows, subgoal_rows)
    source = f"/odom and /hiopt/subgoal of {args.bag}" if args.bag else "a pure-Python loop drive of the default course"
    reservation = reserve_domain() if args.domain_id is None else None
    domain_id = args.domain_id if args.domain_id is not None else reservation.domain_id
    bringup.dds_env(os.environ)          # this replay node on the DDS settings of the controller it drives
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("node_rate_replay", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    # every message is serialized once, before any clock starts; the replay only publishes bytes
    def odom_bytes(row) -> bytes:
        msg = conv.fill_odometry(Odometry(), 0, *row)
        return serialize_message(msg)

    def subgoal_bytes(row) -> bytes:
        msg = PointStamped()
        msg.header.frame_id = conv.FRAME_ODOM
        msg.point.x, msg.point.y = float(row[0]), float(row[1])
        return serialize_message(msg)

    odom_msgs = [odom_bytes(r) for r in odom_rows]
    subgoal_msgs = [subgoal_bytes(r) for r in subgoal_rows]
    odom_pub = node.create_publisher(Odometry, TOPIC_ODOM, SENSOR_QOS)
    subgoal_pub = node.create_publisher(PointStamped, TOPIC_SUBGOAL, COMMAND_QOS)
    from visualization_msgs.msg import MarkerArray
    obstacles_pub = node.create_publisher(MarkerArray, TOPIC_OBSTACLES, LATCHED_QOS)
    obstacles_pub.publish(markers_from_obstacles(obstacles, node.get_clock().now().to_msg(), conv.FRAME_ODOM))
    counters: dict = {"stamps": [], "solve": []}
    index = {"odom": 0, "subgoal": 0}

    def replay_odom() -> None:
        odom_pub.publish(odom_msgs[index["odom"] % len(odom_msgs)])
        index["odom"] += 1

    def replay_subgoal() -> None:
        # the subgoal the planner published for the current odometry (10 Hz on a 50 Hz drive)
        i = (index["odom"] - 1) % len(odom_msgs)   # the odometry row just replayed
        k = min(i * len(subgoal_msgs) // len(odom_msgs), len(subgoal_msgs) - 1)
        subgoal_pub.publish(subgoal_msgs[k])

    node.create_timer(1.0 / ODOM_RATE_HZ, replay_odom)
    node.create_timer(1.0 / SUBGOAL_RATE_HZ, replay_subgoal)
    twist = twist_type(False)
    node.create_subscription(twist, TOPIC_CMD_VEL,
                             lambda raw, info: counters["stamps"].append(info["source_timestamp"] * 1e-9),
                             recorder_qos(COMMAND_QOS), raw=True)
    node.create_subscription(Float64, TOPIC_SOLVE_TIME, lambda m: counters["solve"].append(m.data),
                             recorder_qos(COMMAND_QOS))

    def spin_once(timeout_s: float) -> None:
        executor.spin_once(timeout_sec=timeout_s)

    stop = StopSignal().install()
    results: list[RateResult] = []

    def measure() -> int:
        try:
            with tempfile.TemporaryDirectory(prefix="hiopt_node_rate_") as tmp:
                for rate in rates:
                    stop.check()
                    if args.profile:
                        Path(args.profile).mkdir(parents=True, exist_ok=True)
                        os.environ[PROFILE_ENV] = str(Path(args.profile).resolve() / f"controller_{rate:g}Hz.prof")
                    try:
                        res = run_rate(rate, args.duration_s, args.params, domain_id, Path(tmp) / f"{rate:g}",
                                       spin_once, counters)
                    finally:
                        os.environ.pop(PROFILE_ENV, None)
                    results.append(res)
                    print(f"{rate:6g} Hz: achieved {res.achieved_hz:7.1f} Hz, jitter p50 {res.jitter_p50_us:5.0f} µs "
                          f"p99 {res.jitter_p99_us:6.0f} µs, missed {res.missed} ({res.missed_pct:.2f} %), "
                          f"FOP p50 {res.solve_p50_us:.0f} µs, CPU {res.cpu_per_cycle_us:.0f} µs/cycle",
                          file=sys.stderr, flush=True)
        finally:
            close_ros(context, executor, reservation, node)
        return 0

    code = run_cli(measure, "interrupted")
    if code:
        return code
    table = markdown(results, args.duration_s, source)
    print(table)
    if args.profile:
        for rate in rates:
            print_profile(Path(args.profile) / f"controller_{rate:g}Hz.prof")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"duration_s": args.duration_s, "inputs": source,
                                               "results": [asdict(r) for r in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
