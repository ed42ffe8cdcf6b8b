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
    # a second run reuses the θ files (the inverse one too: its held-out timings differ from run to run and
    # must not rewrite it, since its hash keys the trained policies) and the trained policy
    stamps = {f: (root / f).stat().st_mtime_ns for f in ("theta_cvxpylayers.yaml", "theta.yaml")}
    assert main(argv[:-3] + ["--out", str(tmp_path / "t2"), "--quiet"]) == 0
    assert {f: (root / f).stat().st_mtime_ns for f in stamps} == stamps
    assert "reusing" in capsys.readouterr().err


def test_the_case_lists_the_new_rows_and_trains_the_cvxpy_upper_level_per_seed():
    from offline.amod.table1 import CASE

    known = list(CASE.methods) + list(CASE.optional_methods)
    assert "Bi-level-cvxpy" in known and "Value approximation" in known
    assert "Bi-level-cvxpy" in CASE.trained_methods and "Value approximation" not in CASE.trained_methods


def test_the_theta_chosen_on_held_out_data_is_not_rewritten_by_a_second_run(tmp_path):
    """The auto-chosen θ file keys the trained policies by its hash: the same choice from the same candidates
    must reuse it, although the held-out check's solve times differ from run to run (they did rewrite it)."""
    from offline.amod import pipeline
    from offline.amod.config import ScenarioSpec

    spec = ScenarioSpec("tiny", horizon=4)
    demos = pipeline.ensure_demos(spec, tmp_path / "demos.npz", 0, 2, lambda m: None)
    held = pipeline.ensure_demos(spec, tmp_path / "held.npz", 500, 1, lambda m: None)
    kw = dict(candidates=[("cost terms", 0, "time:2"), ("ReLU", 1, None)], rho=1e-2, time_limit_s=5,
              log=lambda m: None)
    pipeline.ensure_theta_auto(spec, demos, held, tmp_path / "theta.yaml", **kw)
    before = (tmp_path / "theta.yaml").read_bytes()
    pipeline.ensure_theta_auto(spec, demos, held, tmp_path / "theta.yaml", **kw)
    assert (tmp_path / "theta.yaml").read_bytes() == before


def test_zero_rl_steps_keep_the_behaviour_cloned_policy_and_need_demonstrations(tmp_path):
    from offline.amod.config import ScenarioSpec
    from offline.amod.demos import collect
    from offline.amod.sim import AmodSim
    from offline.amod.train import TrainSpec, train_policy

    spec = ScenarioSpec("tiny", horizon=4)
    demos = collect(AmodSim(spec.build()), range(2), progress=False)
    res = train_policy("Bi-level-unchanged", spec, tmp_path / "bc", TrainSpec(steps=0, n_envs=1, vec="dummy"),
                       bc_demos=demos, bc_steps=20)
    assert res.env_steps == 0
    assert (tmp_path / "bc" / "model.zip").read_bytes() == (tmp_path / "bc" / "bc_init.zip").read_bytes()
    with pytest.raises(ValueError, match="behaviour-cloned"):
        train_policy("Bi-level-unchanged", spec, tmp_path / "none", TrainSpec(steps=0, n_envs=1, vec="dummy"))
    with pytest.raises(ValueError, match=">= 0"):
        train_policy("Bi-level-unchanged", spec, tmp_path / "neg", TrainSpec(steps=-1, n_envs=1, vec="dummy"))
