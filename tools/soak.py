"""Soak test of the navigation stack: one long bring-up, the robot driven back and forth for N minutes.

    python tools/soak.py                      # 30 minutes, results/soak/<time>/summary.{json,md}
    python tools/soak.py --duration-min 5 --out /tmp/soak

The stack (sim, planner, controller) is brought up once, exactly as ``python -m hiopt_ros.launcher``
brings it up (``launcher.NodeProcesses`` + ``launcher.Bringup``: inactive nodes, activated once the
monitor hears every publisher), and then driven through back-to-back *episodes*: each episode sends
a new goal on /goal_pose (alternately the course's goal and its start) and ends when the planner
reports /hiopt/goal_reached, on a collision, or after ``--episode-timeout-s``.

Why one long bring-up and not the launcher in a loop: a leak in a node (the controller runs 50
solves a second) only shows in a process that lives long; launcher runs of ~10 s each would restart
every node every episode and hide it. The launcher's own start/stop cycle is covered by
test/test_integration_launcher.py and test/test_faults_integration.py (every process reaped).

Measured per episode: outcome (reached, collision, time), the FOP solve time p50/p99 from
/hiopt/solve_time_us, the resident memory (VmRSS, /proc; a node's whole process tree) of every node,
and orphans: processes started for this soak (their command line holds its private overrides
folder) that are not one of the three nodes. At the end the nodes are stopped as the launcher stops
them and the soak checks that none of them is left.

Verdict (exit status 1 when any fails, 0 otherwise, 2 on a start-up error):
* memory: per node, RSS at the end vs after the first episode (warm-up: solver workspaces, DDS
  buffers and Python caches are allocated then) grows by more than ``--memory-growth`` (10 %);
* solve time: the median of the per-episode p99 over the last quarter of episodes exceeds that of
  the first quarter by more than ``--p99-growth`` (×1.5);
* any episode collides or does not reach its goal;
* orphans after any episode or at the end.
Progress: one line per episode on stderr when it is a terminal (quiet otherwise); the summary is
printed at the end and written to ``<out>/<time>/summary.json`` and ``summary.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NODES = ("sim_node", "planner_node", "controller_node")


# ------------------------------------------------------------------------------------------------
# measuring processes (/proc; psutil is not a dependency of this project)

def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def rss_mb(pid: int) -> float:
    """Resident memory [MB] of `pid` and its descendants (VmRSS from /proc/<pid>/status); NaN if gone."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += float(line.split()[1]) / 1024.0
                    break
        except OSError:
            if p == pid:
                return math.nan
        todo.extend(_children(p))
    return total


def processes_with(marker: str) -> dict[int, str]:
    """{pid: command line} of live (not zombie) processes whose command line contains `marker`."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmd and state != "Z":
            out[int(entry.name)] = cmd
    return out


# ------------------------------------------------------------------------------------------------
# the analysis (pure: tested by test/test_soak.py)

@dataclass
class Episode:
    index: int
    goal_xy: list[float]
    reached: bool
    collided: bool
    duration_s: float
    solve_count: int
    solve_p50_us: float
    solve_p99_us: float
    rss_mb: dict[str, float]                     # per node at the end of the episode
    orphans: list[str] = field(default_factory=list)


@dataclass
class Thresholds:
    memory_growth: float = 0.10                  # fraction
    p99_growth: float = 1.5                      # ratio


def _quarter_median(values: list[float], last: bool) -> float:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan
    k = max(1, len(vals) // 4)
    part = vals[-k:] if last else vals[:k]
    part = sorted(part)
    mid = len(part) // 2
    return part[mid] if len(part) % 2 else 0.5 * (part[mid - 1] + part[mid])


def analyse(episodes: list[Episode], rss_at_activation: dict[str, float], final_orphans: list[str],
            thresholds: Thresholds = Thresholds()) -> dict:
    """The soak's verdict: per-node memory (activation, after episode 1 = baseline, end, growth),
    solve-time p99 (first/last quarter medians, ratio), outcomes, orphans, and the list of failures
    (empty: passed)."""
    failures: list[str] = []
    if not episodes:
        return {"passed": False, "failures": ["no episode completed"], "episodes": 0}
    memory = {}
    for node in rss_at_activation:
        base, end = episodes[0].rss_mb.get(node, math.nan), episodes[-1].rss_mb.get(node, math.nan)
        growth = end / base - 1.0 if base and math.isfinite(base) and math.isfinite(end) else math.nan
        memory[node] = {"activation_mb": rss_at_activation[node], "baseline_mb": base, "end_mb": end,
                        "growth": growth}
        if not math.isfinite(growth):
            failures.append(f"{node}: memory not measured (process gone?)")
        elif growth > thresholds.memory_growth:
            failures.append(f"{node}: resident memory grew {100 * growth:.1f} % ({base:.1f} -> {end:.1f} MB), "
                            f"more than {100 * thresholds.memory_growth:.0f} %")
    p99 = [e.solve_p99_us for e in episodes]
    first, last = _quarter_median(p99, last=False), _quarter_median(p99, last=True)
    ratio = last / first if first and math.isfinite(first) and math.isfinite(last) else math.nan
    if math.isfinite(ratio) and ratio > thresholds.p99_growth:
        failures.append(f"solve-time p99 grew x{ratio:.2f} ({first:.0f} -> {last:.0f} µs, median of the first vs "
                        f"last quarter of episodes), more than x{thresholds.p99_growth:g}")
    collided = [e.index for e in episodes if e.collided]
    missed = [e.index for e in episodes if not e.reached and not e.collided]
    if collided:
        failures.append(f"collision in episode(s) {collided}")
    if missed:
        failures.append(f"goal not reached in episode(s) {missed}")
    orphaned = {e.index: e.orphans for e in episodes if e.orphans}
    if orphaned:
        failures.append(f"orphan processes after episode(s) {sorted(orphaned)}")
    if final_orphans:
        failures.append(f"{len(final_orphans)} orphan process(es) at the end: {final_orphans}")
    return {
        "passed": not failures, "failures": failures, "episodes": len(episodes),
        "reached": sum(e.reached for e in episodes), "collisions": len(collided),
        "memory": memory,
        "solve_p99_us": {"first_quarter_median": first, "last_quarter_median": last, "ratio": ratio,
                         "first_episode": p99[0], "last_episode": p99[-1]},
        "orphans_after_episodes": sum(len(o) for o in orphaned.values()), "orphans_at_end": len(final_orphans),
    }


def markdown(verdict: dict, meta: dict) -> str:
    from hiopt_ros.tables import Column, markdown_table

    def f(v, fmt=".1f"):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)

    lines = [f"# Soak {meta['started_utc']}", "",
             f"- command: `{meta['command']}`",
             f"- duration: {f(meta['duration_s'] / 60.0)} min, {verdict['episodes']} episodes "
             f"({verdict.get('reached', 0)} reached, {verdict.get('collisions', 0)} collisions)",
             f"- verdict: **{'PASSED' if verdict['passed'] else 'FAILED'}**"
             + ("" if verdict["passed"] else ": " + "; ".join(verdict["failures"])), ""]
    if "memory" in verdict:
        lines.append(markdown_table(
            [Column(h) for h in
             ("node", "RSS at activation [MB]", "after episode 1 [MB]", "at the end [MB]", "growth")],
            [[node, f(m["activation_mb"]), f(m["baseline_mb"]), f(m["end_mb"]),
              f"{f(100 * m['growth'] if math.isfinite(m['growth']) else math.nan, '+.1f')} %"]
             for node, m in verdict["memory"].items()]))
        s = verdict["solve_p99_us"]
        lines += ["", f"FOP solve time p99: first episode {f(s['first_episode'], '.0f')} µs, last "
                      f"{f(s['last_episode'], '.0f')} µs; median over the first quarter of episodes "
                      f"{f(s['first_quarter_median'], '.0f')} µs, "
                      f"last quarter {f(s['last_quarter_median'], '.0f')} µs "
                      f"(x{f(s['ratio'], '.2f')}).",
                  f"Orphan processes: {verdict['orphans_after_episodes']} after episodes, "
                  f"{verdict['orphans_at_end']} at the end."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# running it

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python tools/soak.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--duration-min", type=float, default=30.0, help="soak length; the episode under way finishes")
    ap.add_argument("--max-episodes", type=int, default=0, help="stop after this many episodes (0: no limit)")
    from hiopt_ros.bringup import default_params_file

    ap.add_argument("--params", type=Path, default=default_params_file(), help="parameter file of every node")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "soak", help="parent folder of the result folder")
    ap.add_argument("--episode-timeout-s", type=float, default=60.0, help="an episode not at its goal by then fails")
    ap.add_argument("--memory-growth", type=float, default=0.10, help="largest allowed RSS growth per node (fraction)")
    ap.add_argument("--p99-growth", type=float, default=1.5, help="largest allowed ratio of the solve-time p99")
    ap.add_argument("--domain-id", type=int, default=None,
                    help="ROS_DOMAIN_ID; None: $ROS_DOMAIN_ID, else a free one reserved for the soak")
    args = ap.parse_args(argv)
    if args.duration_min <= 0 or args.episode_timeout_s <= 0:
        ap.error("--duration-min and --episode-timeout-s must be > 0")
    if not args.params.is_file():
        ap.error(f"--params: {args.params} does not exist")
    return args


def run(args: argparse.Namespace, log=None) -> tuple[dict, Path]:
    import tempfile

    import numpy as np
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import Bool

    from hiopt_ros import bringup, launcher
    from hiopt_ros.conversions import FRAME_ODOM
    from hiopt_ros.course import load_course
    from hiopt_ros.nodes.process import StopSignal
    from hiopt_ros.nodes.topics import COMMAND_QOS, LATCHED_QOS, TOPIC_GOAL, TOPIC_GOAL_REACHED
    from hiopt_ros.recording import RunMonitor

    tty = sys.stderr.isatty()
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True) if tty else None)
    params = args.params.resolve()
    course = load_course(params)
    sections = bringup.load_sections(params)
    started = datetime.now(timezone.utc)
    out = args.out / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    reservation = None
    if args.domain_id is not None:
        domain_id = args.domain_id
    else:
        domain_id, reservation = launcher.default_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    bringup.dds_env(os.environ)
    stop = StopSignal().install()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    executor = SingleThreadedExecutor(context=context)
    overrides = Path(tempfile.mkdtemp(prefix="hiopt_soak_"))    # its name marks this soak's processes
    monitor = RunMonitor(stamped_cmd_vel=bool(sections["/**"].get("enable_stamped_cmd_vel", False)),
                         goal_xy=course.goal_xy, context=context)
    executor.add_node(monitor)
    reached: list[bool] = []
    monitor.create_subscription(Bool, TOPIC_GOAL_REACHED, lambda m: reached.append(bool(m.data)), LATCHED_QOS)
    goal_pub = monitor.create_publisher(PoseStamped, TOPIC_GOAL, COMMAND_QOS)

    def spin_once(timeout_s: float) -> None:
        stop.check()
        executor.spin_once(timeout_sec=timeout_s)

    def spin_until(cond, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while not cond() and time.monotonic() < end:
            spin_once(0.05)
        return cond()

    goals = [np.asarray(course.goal_xy, float), np.asarray(course.start_xyyaw[:2], float)]
    episodes: list[Episode] = []
    final_orphans: list[str] = []
    t0 = time.monotonic()
    try:
        with launcher.NodeProcesses(params, out / "logs", bringup.child_env(domain_id), overrides_dir=overrides) \
                as nodes:
            bring = launcher.Bringup(nodes, monitor, bringup.graph(params, autostart=False), spin_once, out / "logs")
            bring.up()
            pids = {name: proc.pid for name, proc in nodes.procs.items()}
            rss_activation = {name: rss_mb(pid) for name, pid in pids.items()}
            log(f"soak: stack up (ROS_DOMAIN_ID={domain_id}), {args.duration_min:g} min of episodes; "
                f"results in {out}")
            # episode 0 is the run to the configured goal the stack starts with
            index = 0
            while True:
                goal = goals[index % 2]
                n_solves, t_ep = len(monitor.solve_times_us), time.monotonic()
                if index > 0:
                    msg = PoseStamped()
                    msg.header.frame_id = sections["/**"].get("odom_frame", FRAME_ODOM)
                    msg.header.stamp = monitor.get_clock().now().to_msg()
                    msg.pose.position.x, msg.pose.position.y = float(goal[0]), float(goal[1])
                    msg.pose.orientation.w = 1.0
                    n_flags = len(reached)
                    goal_pub.publish(msg)
                    # the planner acknowledges a new goal by clearing the latched flag
                    if not spin_until(lambda: len(reached) > n_flags and not reached[-1], 10.0):
                        raise RuntimeError("the planner did not acknowledge a new goal within 10 s")
                done = spin_until(lambda: (reached and reached[-1]) or monitor.collided or bool(nodes.dead()),
                                  args.episode_timeout_s)
                if nodes.dead():
                    raise RuntimeError(f"node(s) died during the soak: {nodes.dead()} (see {out / 'logs'})")
                times = np.asarray(monitor.solve_times_us[n_solves:], float)
                orphans = [f"{pid}: {cmd}" for pid, cmd in processes_with(overrides.name).items()
                           if pid not in pids.values()]
                ep = Episode(index=index, goal_xy=[float(v) for v in goal], reached=bool(done and reached[-1]),
                             collided=monitor.collided, duration_s=time.monotonic() - t_ep, solve_count=int(times.size),
                             solve_p50_us=float(np.percentile(times, 50)) if times.size else math.nan,
                             solve_p99_us=float(np.percentile(times, 99)) if times.size else math.nan,
                             rss_mb={name: rss_mb(pid) for name, pid in pids.items()}, orphans=orphans)
                episodes.append(ep)
                elapsed_min = (time.monotonic() - t0) / 60.0
                log(f"episode {index:4d} {elapsed_min:6.1f}/{args.duration_min:g} min  goal {ep.goal_xy}  "
                    f"{'reached' if ep.reached else 'COLLISION' if ep.collided else 'NOT reached'} in "
                    f"{ep.duration_s:5.1f} s  p99 {ep.solve_p99_us:6.0f} µs  RSS "
                    + " ".join(f"{n.split('_')[0]} {v:.0f}" for n, v in ep.rss_mb.items()) + " MB"
                    + (f"  ORPHANS {len(orphans)}" if orphans else ""))
                index += 1
                if ep.collided or elapsed_min >= args.duration_min or \
                        (args.max_episodes and index >= args.max_episodes):
                    break
            bring.down()
        # NodeProcesses.stop(): SIGINT, escalation, reaping; then nothing of this soak may be left
        time.sleep(0.5)
        final_orphans = [f"{pid}: {cmd}" for pid, cmd in processes_with(overrides.name).items()]
    finally:
        launcher.close_ros(context, executor, reservation, monitor)
        import shutil
        shutil.rmtree(overrides, ignore_errors=True)
    duration_s = time.monotonic() - t0
    verdict = analyse(episodes, rss_activation, final_orphans,
                      Thresholds(memory_growth=args.memory_growth, p99_growth=args.p99_growth))
    meta = {"started_utc": started.strftime("%Y-%m-%d %H:%M UTC"), "duration_s": duration_s,
            "command": "python tools/soak.py " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("soak.py")
            else f"python tools/soak.py --duration-min {args.duration_min:g}",
            "params": str(params), "domain_id": domain_id, "load_average": os.getloadavg()}
    doc = {"meta": meta, "verdict": verdict, "episodes": [asdict(e) for e in episodes]}
    (out / "summary.json").write_text(json.dumps(_finite(doc), indent=2) + "\n")
    (out / "summary.md").write_text(markdown(verdict, meta))
    return verdict, out


def _finite(obj):
    """JSON has no NaN: None instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hiopt_ros import launcher

    def soak() -> int:
        verdict, out = run(args)
        print((out / "summary.md").read_text())
        print(f"written: {out / 'summary.json'}, {out / 'summary.md'}")
        return 0 if verdict["passed"] else 1

    return launcher.run_cli(soak, "soak interrupted: nodes stopped")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
