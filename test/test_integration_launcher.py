"""The main job (`python -m hiopt_ros.launcher`) end to end: summary, run folder, bag, clean stop."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
rosbags = pytest.importorskip("rosbags")

from hiopt_ros.bringup import NODE_MODULES  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def _launch(tmp_path: Path, *extra: str, domain_id: int) -> tuple[subprocess.CompletedProcess, Path]:
    out = subprocess.run([sys.executable, "-m", "hiopt_ros.launcher", "--out", str(tmp_path), "--timeout-s", "60",
                          "--domain-id", str(domain_id), *extra], cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=240)
    m = re.search(r"^run folder: (\S+)", out.stdout, re.M)
    assert m, f"no run folder printed:\n{out.stdout}\n{out.stderr}"
    return out, Path(m.group(1))


def _bag_counts(bag: Path) -> tuple[dict[str, int], dict[str, str]]:
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        counts = {c.topic: 0 for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)  # every message decodes
            counts[conn.topic] += 1
    return counts, types


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "hiopt_ros.launcher", "--help"], env=_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--params", "--theta", "--expert", "--gui", "--out", "--timeout-s"):
        assert flag in out.stdout


def test_main_job_drives_to_goal_and_writes_plot_bag_summary(tmp_path, ros_domain_id):
    out, run = _launch(tmp_path, domain_id=ros_domain_id)
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("reached the goal, no collision", "travel time", "path length", "energy", "min clearance",
                 "control rate", "FOP solve time", "recorded "):
        assert line in out.stdout
    assert (run / "trajectory.png").stat().st_size > 10_000
    summary = json.loads((run / "summary.json").read_text())
    assert summary["success"] and summary["reached"] and not summary["collided"]
    assert summary["min_clearance_m"] > 0 and summary["energy_j"] > 0 and summary["path_length_m"] > 4.0
    assert 0 < summary["solve_time_p50_us"] <= summary["solve_time_p99_us"]
    # the rate is the commands received over the whole driving window (activation to goal)
    assert summary["achieved_rate_hz"] == pytest.approx(summary["commands_in_window"] / summary["driving_window_s"])
    assert summary["driving_window_s"] >= summary["travel_time_s"]

    # the bag: MCAP rosbag2 directory, the expected topics and types, and every message each node
    # says it published (its own count, from its final diagnostics)
    bag = run / "bag"
    assert (bag / "metadata.yaml").exists() and list(bag.glob("*.mcap"))
    counts, types = _bag_counts(bag)
    assert types == {"/odom": "nav_msgs/msg/Odometry", "/cmd_vel": "geometry_msgs/msg/Twist",
                     "/hiopt/subgoal": "geometry_msgs/msg/PointStamped",
                     "/hiopt/obstacles": "visualization_msgs/msg/MarkerArray"}
    assert counts == summary["message_counts"]
    for topic, acc in summary["topics"].items():
        assert acc["published"] == counts[topic] == acc["recorded"], (topic, acc)
        assert acc["before_recording"] == 0 and acc["lost"] == 0, (topic, acc)
    assert summary["recording_complete"], (summary["topics"], out.stdout)
    assert counts["/hiopt/obstacles"] == 1 and counts["/cmd_vel"] >= summary["commands_in_window"]

    from hiopt_ros.bag_reader import read_robot_bag
    data = read_robot_bag(bag)
    assert len(data.odom) == counts["/odom"] and data.obstacles is not None
    # the recording starts before the robot moves: the first command precedes the first motion
    start = data.odom.values[0, :2]
    moved = np.flatnonzero(np.linalg.norm(data.odom.values[:, :2] - start, axis=1) > 0.01)
    assert moved.size and data.cmd_vel.t_ns[0] < data.odom.t_ns[moved[0]]
    assert data.subgoal.t_ns[0] < data.odom.t_ns[moved[0]]
    assert np.all(data.cmd_vel.values[-1] == 0.0)                  # the last command is the controller's stop
    # the configured rate: the typical interval between recorded commands is 1 / control_rate_hz
    # (how many periods a loaded machine misses is what `python -m hiopt_ros.bench --node-rate` measures)
    period_s = float(np.median(np.diff(data.cmd_vel.t_ns))) * 1e-9
    assert period_s == pytest.approx(1.0 / summary["commanded_rate_hz"], rel=0.1)


def test_expert_flag_records_a_demonstration(tmp_path, ros_domain_id):
    out, run = _launch(tmp_path, "--expert", domain_id=ros_domain_id)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "expert MPC" in out.stdout and "MPC solve time" in out.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["mode"] == "expert" and summary["success"]
    assert summary["recording_complete"], (summary["topics"], out.stdout, out.stderr)
    counts, _ = _bag_counts(run / "bag")
    assert counts["/hiopt/subgoal"] > 50 and counts == summary["message_counts"]
    assert all(acc["published"] == counts[t] for t, acc in summary["topics"].items())
    from hiopt_ros.bag_reader import read_robot_bag
    data = read_robot_bag(run / "bag")
    assert len(data.subgoal) == counts["/hiopt/subgoal"]


def _node_pids(domain_id: int) -> list[int]:
    """Processes of our node modules running in the given ROS domain."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if any(m.encode() in cmd for m in NODE_MODULES.values()) and f"ROS_DOMAIN_ID={domain_id}\0".encode() in env:
            pids.append(int(proc.name))
    return pids


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_interrupting_the_launcher_stops_every_node(tmp_path, sig, code, ros_domain_id):
    domain_id = ros_domain_id
    proc = subprocess.Popen([sys.executable, "-m", "hiopt_ros.launcher", "--out", str(tmp_path),
                             "--domain-id", str(domain_id)], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("stack up"):
                break
        assert len(_node_pids(domain_id)) == 3
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == code
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    assert _node_pids(domain_id) == []
