"""Issue 19's rows of AMoD Table 1 through the one runner, on a tiny budget: Bi-level-cvxpy (an RL upper
level over the θ cvxpylayers fitted) and Value approximation (offline.baselines.value as a whole policy)."""
from __future__ import annotations

import csv
import math

import pytest

pytest.importorskip("cvxpylayers")


@pytest.mark.slow
def test_bilevel_cvxpy_and_value_approximation_rows_run_through_the_runner(tmp_path, capsys):
    from hiopt_ros.control.theta import load_theta
    from offline.experiments.__main__ import main

    work, out = tmp_path / "work", tmp_path / "t1"
    argv = ["table1", "--case", "amod", "--scenario", "tiny", "--horizon", "4", "--episodes", "2",
            "--demo-episodes", "2", "--held-out-episodes", "1", "--K", "1", "--cost-terms", "none",
            "--fit-time-limit", "5", "--rl-steps", "64", "--bc-steps", "50", "--seeds", "1",
            "--methods", "MPC,Bi-level-cvxpy,Value approximation", "--epochs", "1", "--lr", "0.05",
            "--ranks", "2", "--regs", "1e-2", "--work-dir", str(work), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    rows = {r["method"]: r for r in csv.DictReader(open(out / "table1_amod.csv"))}
    assert list(rows) == ["MPC", "Bi-level-cvxpy", "Value approximation"]
    mpc = float(rows["MPC"]["reward_mean"])
    for r in rows.values():
        assert math.isfinite(float(r["reward_mean"])) and float(r["reward_mean"]) <= mpc + 1e-6
        assert float(r["decision_ms_mean"]) > 0
    root = work / "synthetic-tiny-s0-T4-dt3"
    theta = load_theta(root / "theta_cvxpylayers.yaml")
    inverse = load_theta(root / "theta.yaml")
    assert theta.provenance["fit_method"] == "cvxpylayers" and theta.K == inverse.K == 1
    assert list(theta.input_names) == list(inverse.input_names)
    assert (root / "theta_cvxpylayers_loss.csv").exists()
    assert (root / "rl" / "bi_level_cvxpy" / "model.zip").exists()
    md = (out / "table1_amod.md").read_text()
    assert "cvxpylayers" in md and "Value approximation: V fitted" in md
    capsys.readouterr()
    # a second run reuses the cvxpylayers θ and the trained policy
    stamp = (root / "theta_cvxpylayers.yaml").stat().st_mtime_ns
    assert main(argv[:-3] + ["--out", str(tmp_path / "t2"), "--quiet"]) == 0
    assert (root / "theta_cvxpylayers.yaml").stat().st_mtime_ns == stamp
    assert "reusing" in capsys.readouterr().err


def test_the_case_lists_the_new_rows_and_trains_the_cvxpy_upper_level_per_seed():
    from offline.amod.table1 import CASE

    known = list(CASE.methods) + list(CASE.optional_methods)
    assert "Bi-level-cvxpy" in known and "Value approximation" in known
    assert "Bi-level-cvxpy" in CASE.trained_methods and "Value approximation" not in CASE.trained_methods
