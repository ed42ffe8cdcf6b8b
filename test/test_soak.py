"""tools/soak.py: its verdict on synthetic measurements (fast), --help, and a 2-episode real run."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOAK = REPO / "tools" / "soak.py"


def _soak():
    spec = importlib.util.spec_from_file_location("hiopt_tools_soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


soak = _soak()
NODES = {"sim_node": 120.0, "planner_node": 78.0, "controller_node": 93.0}


def _episodes(n=8, rss_growth=0.0, p99=lambda i: 400.0, collided_at=None, missed_at=None, orphans_at=None):
    eps = []
    for i in range(n):
        frac = i / (n - 1)
        eps.append(soak.Episode(index=i, goal_xy=[4.0, 0.0], reached=i not in (collided_at, missed_at),
                                collided=i == collided_at, duration_s=5.5, solve_count=270, solve_p50_us=200.0,
                                solve_p99_us=p99(i),
                                rss_mb={k: v * (1 + rss_growth * frac) for k, v in NODES.items()},
                                orphans=["4242: python -m sim.sim_node"] if i == orphans_at else []))
    return eps


def test_a_flat_soak_passes():
    verdict = soak.analyse(_episodes(), NODES, [])
    assert verdict["passed"] and verdict["failures"] == []
    assert verdict["episodes"] == 8 and verdict["reached"] == 8 and verdict["collisions"] == 0
    assert verdict["memory"]["controller_node"]["growth"] == pytest.approx(0.0)
    assert verdict["solve_p99_us"]["ratio"] == pytest.approx(1.0)


def test_memory_growth_over_the_threshold_fails_naming_the_node():
    verdict = soak.analyse(_episodes(rss_growth=0.15), NODES, [])
    assert not verdict["passed"]
    assert len(verdict["failures"]) == 3 and all("grew 15.0 %" in f for f in verdict["failures"])
    assert soak.analyse(_episodes(rss_growth=0.08), NODES, [])["passed"]        # within 10 %
    one = _episodes()
    one[-1].rss_mb["planner_node"] = 78.0 * 1.2
    failures = soak.analyse(one, NODES, [])["failures"]
    assert failures == ["planner_node: resident memory grew 20.0 % (78.0 -> 93.6 MB), more than 10 %"]


def test_the_baseline_is_the_first_episode_not_the_activation():
    """Warm-up allocation between activation and the end of episode 1 is not growth."""
    verdict = soak.analyse(_episodes(), {k: 0.5 * v for k, v in NODES.items()}, [])
    assert verdict["passed"] and verdict["memory"]["sim_node"]["activation_mb"] == 60.0


def test_p99_growth_fails_and_a_single_slow_episode_does_not():
    verdict = soak.analyse(_episodes(p99=lambda i: 400.0 if i < 4 else 800.0), NODES, [])
    assert not verdict["passed"] and "solve-time p99 grew x2.00" in verdict["failures"][0]
    spike = soak.analyse(_episodes(n=12, p99=lambda i: 5000.0 if i == 10 else 400.0), NODES, [])
    assert spike["passed"], spike["failures"]          # median of the last quarter, not one outlier


@pytest.mark.parametrize("kind, expect", [("collided_at", "collision in episode(s) [3]"),
                                          ("missed_at", "goal not reached in episode(s) [2]"),
                                          ("orphans_at", "orphan processes after episode(s) [5]")])
def test_collision_missed_goal_and_orphans_fail(kind, expect):
    at = {"collided_at": 3, "missed_at": 2, "orphans_at": 5}[kind]
    verdict = soak.analyse(_episodes(**{kind: at}), NODES, [])
    assert not verdict["passed"] and expect in verdict["failures"]


def test_orphans_at_the_end_and_no_episodes_fail():
    assert not soak.analyse(_episodes(), NODES, ["99: python -m hiopt_ros.nodes.planner_node"])["passed"]
    assert soak.analyse([], NODES, [])["failures"] == ["no episode completed"]


def test_markdown_and_json_have_the_numbers():
    verdict = soak.analyse(_episodes(rss_growth=0.02), NODES, [])
    md = soak.markdown(verdict, {"started_utc": "2026-01-01 00:00 UTC", "duration_s": 1800.0,
                                 "command": "python tools/soak.py"})
    assert "30.0 min, 8 episodes (8 reached, 0 collisions)" in md and "**PASSED**" in md
    assert "| controller_node | 93.0 | 93.0 | 94.9 | +2.0 % |" in md
    json.dumps(soak._finite({"x": math.nan, "y": [math.inf, 1.0]}), allow_nan=False)


def test_help():
    out = subprocess.run([sys.executable, str(SOAK), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--duration-min" in out.stdout and "30.0" in out.stdout


@pytest.mark.ros
@pytest.mark.integration
@pytest.mark.slow
def test_a_two_episode_soak_runs_and_leaves_no_process(tmp_path, ros_domain_id):
    pytest.importorskip("rclpy")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the solve-time verdict is not tested here: two episodes' p99 ratio is scheduling noise on a loaded
    # machine (x1.53 under two CPU hogs); the analysis tests above check that verdict
    out = subprocess.run([sys.executable, str(SOAK), "--duration-min", "5", "--max-episodes", "2", "--out",
                          str(tmp_path), "--domain-id", str(ros_domain_id), "--p99-growth", "1e9"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr == ""                                    # quiet without a terminal
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    v = summary["verdict"]
    assert v["passed"] and v["episodes"] == 2 and v["reached"] == 2 and v["orphans_at_end"] == 0
    assert set(v["memory"]) == {"sim_node", "planner_node", "controller_node"}
    assert all(m["end_mb"] > 10.0 for m in v["memory"].values())
    assert [e["goal_xy"] for e in summary["episodes"]] == [[4.0, 0.0], [0.0, 0.0]]
    assert all(e["solve_count"] > 0 and e["solve_p99_us"] > 0 for e in summary["episodes"])
