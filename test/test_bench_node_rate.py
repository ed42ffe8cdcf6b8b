"""python -m hiopt_ros.bench --node-rate: the period statistics, and one short real run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hiopt_ros.bench_node_rate import period_stats


def test_period_stats_count_missed_periods_and_jitter():
    rate = 100.0
    stamps = np.arange(0, 1.0, 0.01)                       # 100 commands, on time
    stamps = np.delete(stamps, [10, 50, 51])               # three periods missed
    stamps[20] += 0.002                                    # 2 ms late (not missed)
    achieved, j50, j99, missed, missed_pct = period_stats(stamps, rate)
    assert missed == 3 and missed_pct == pytest.approx(3.0)
    assert j50 == pytest.approx(0.0, abs=1e-3) and 1000 < j99 <= 20_000
    assert achieved == pytest.approx(97.0)
    # late-then-early commands (jitter, nothing skipped) miss nothing
    jittery = np.arange(0, 1.0, 0.01) + np.tile([0.0, 0.006], 50)
    assert period_stats(jittery, rate, (0.0, 1.0))[3] == 0
    # the window counts the periods before the first and after the last command too
    assert period_stats(stamps, rate, (-0.05, 1.05))[3] == 3 + 10
    assert period_stats(np.array([]), rate, (0.0, 0.5))[3] == 50


@pytest.mark.ros
@pytest.mark.integration
def test_node_rate_runs_the_controller_and_reports_every_rate(tmp_path, repo_root, ros_domain_id):
    out = tmp_path / "rate.json"
    proc = subprocess.run([sys.executable, "-m", "hiopt_ros.bench", "--node-rate", "--rates", "50,100",
                           "--duration-s", "1", "--domain-id", str(ros_domain_id), "--json", str(out)],
                          cwd=repo_root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert proc.returncode == 0, proc.stderr
    assert "| rate [Hz] | commands |" in proc.stdout
    results = json.loads(out.read_text())["results"]
    assert [r["rate_hz"] for r in results] == [50.0, 100.0]
    duration_s = json.loads(out.read_text())["duration_s"]
    for r in results:
        assert r["commands"] > 0 and r["achieved_hz"] > 0 and r["solve_p50_us"] > 0 and r["cpu_per_cycle_us"] > 0
        # never more commands than periods in the window; commands + missed periods are the periods due
        due = r["rate_hz"] * duration_s
        assert r["commands"] <= due + 2
        assert r["commands"] + r["missed"] == pytest.approx(due, abs=2)


def test_bad_rates_are_one_line_errors(repo_root):
    proc = subprocess.run([sys.executable, "-m", "hiopt_ros.bench", "--node-rate", "--rates", "fast"],
                          cwd=repo_root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert proc.returncode == 2 and "--rates" in proc.stderr and "Traceback" not in proc.stderr


def test_the_replayed_drive_stops_short_of_the_arrival():
    from hiopt_ros.bench_node_rate import driving_part

    x = np.r_[np.linspace(0.0, 4.0, 200), np.full(50, 4.0)]            # drive, then stand at the goal
    odom = np.column_stack([x, np.zeros_like(x), np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)])
    subgoals = np.column_stack([np.linspace(0.6, 4.0, 50), np.zeros(50)])
    o, s = driving_part(odom, subgoals)
    assert np.hypot(*(o[-1, :2] - odom[-1, :2])) > 0.3 and len(o) < 200
    assert len(s) == int(np.ceil(50 * len(o) / len(odom)))
