"""The shared experiment runner (offline.experiments): case interface, seeds, outputs."""
from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest

from offline.experiments import Episode, Prepared, load_case, table1
from offline.experiments.__main__ import main


class FakeCase:
    """A case whose reward is a known function of (method, seed): the table must reproduce it."""
    name = "fake"
    title = "Table 1: fake"
    methods = ("MPC", "Bi-level-unchanged", "Bi-level-learned")

    def __init__(self, train_seeds=range(0, 5)):
        self.train_seeds = train_seeds
        self.calls = []

    def add_arguments(self, parser):
        parser.add_argument("--fake-scale", type=float, default=1.0)

    def prepare(self, args, work_dir, log):
        return Prepared(state={"scale": 1.0}, train_seeds=self.train_seeds, notes=["fake scenario"])

    def run_episode(self, prepared, method, seed):
        self.calls.append((method, seed))
        base = {"MPC": 100.0, "Bi-level-unchanged": 90.0, "Bi-level-learned": 98.0, "Oracle": 99.0}[method]
        return Episode(reward=base + seed % 3, served_demand=base / 10, decision_times_s=[0.001 * (1 + seed % 2)] * 4)


def _args(tmp_path, **kw):
    ns = argparse.Namespace(case="fake", episodes=3, eval_seed=100, methods=None, out=tmp_path / "out",
                            work_dir=tmp_path / "work", quiet=True)
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_table1_runs_every_method_on_the_same_seeds_and_writes_outputs(tmp_path, capsys):
    case = FakeCase()
    res = table1.run(_args(tmp_path), case=case)
    seeds = [100, 101, 102]
    assert case.calls == [(m, s) for m in case.methods for s in seeds]   # reference first, same seeds
    t = res["table"]
    assert t.stats("MPC", "reward")[0] == pytest.approx(np.mean([100 + s % 3 for s in seeds]))
    pct = t.values("Bi-level-learned", "reward_pct_ref")
    assert pct == pytest.approx([100 * (98 + s % 3) / (100 + s % 3) for s in seeds])   # paired per seed
    assert t.stats("MPC", "decision_ms")[0] == pytest.approx(1e3 * np.mean([0.001 * (1 + s % 2) for s in seeds]))
    for key in ("markdown", "csv", "episodes_csv", "png"):
        assert res["paths"][key].exists(), key
    rows = list(csv.DictReader(open(res["paths"]["csv"])))
    assert [r["method"] for r in rows] == list(case.methods)
    md = res["paths"]["markdown"].read_text()
    assert "100–102" in md and "0–4" in md and "fake scenario" in md
    assert "results folder" in capsys.readouterr().out


def test_table1_refuses_evaluation_seeds_used_for_training(tmp_path):
    with pytest.raises(SystemExit, match="were used for training"):
        table1.run(_args(tmp_path, eval_seed=3), case=FakeCase())


def test_table1_methods_subset_keeps_the_case_order(tmp_path):
    case = FakeCase()
    table1.run(_args(tmp_path, methods="Bi-level-learned,MPC", episodes=1), case=case)
    assert [m for m, _ in case.calls] == ["MPC", "Bi-level-learned"]
    case = FakeCase()
    case.optional_methods = ("Oracle",)
    table1.run(_args(tmp_path, methods="all", episodes=1, out=tmp_path / "o2"), case=case)
    assert [m for m, _ in case.calls] == list(FakeCase.methods) + ["Oracle"]
    with pytest.raises(SystemExit, match="unknown"):
        table1.run(_args(tmp_path, methods="Oracle"), case=FakeCase())


def test_unknown_case_is_a_one_line_error(capsys):
    with pytest.raises(ValueError, match="unknown case study 'nope'"):
        load_case("nope")
    with pytest.raises(SystemExit):
        main(["table1", "--case", "nope"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_table1_amod_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    """The real AMoD case through the command line: demonstrations, fit, BC + PPO for the three RL
    methods, evaluation on seeds disjoint from training; MPC is the best row."""
    out = tmp_path / "t1"
    rc = main(["table1", "--case", "amod", "--scenario", "tiny", "--horizon", "4", "--episodes", "2",
               "--demo-episodes", "2", "--held-out-episodes", "1", "--K", "1", "--cost-terms", "none",
               "--fit-time-limit", "5",
               "--rl-steps", "64", "--bc-steps", "50", "--seeds", "1", "--work-dir", str(tmp_path / "work"),
               "--out", str(out), "--quiet"])
    assert rc == 0
    rows = {r["method"]: r for r in csv.DictReader(open(out / "table1_amod.csv"))}
    assert list(rows) == ["MPC", "Bi-level-unchanged", "End-to-end RL", "Bi-level-learned"]
    mpc = float(rows["MPC"]["reward_mean"])
    assert all(float(r["reward_mean"]) <= mpc + 1e-6 for r in rows.values())
    # decision time is reported for every row (its size is the benchmark's business, not a test's)
    assert all(math.isfinite(float(r["decision_ms_mean"])) and float(r["decision_ms_mean"]) > 0 for r in rows.values())
    md = (out / "table1_amod.md").read_text()
    assert "evaluation episodes per method, seeds 10000–10001" in md and "1000–9999" in md
    assert (out / "table1_amod.png").exists()
    work = tmp_path / "work" / "synthetic-tiny-s0-T4-dt3"
    for f in ("demos.npz", "held_out.npz", "theta.yaml", "imitation.md",
              "rl/bi_level_learned/model.zip", "rl/end_to_end_rl/learning_curve.png"):
        assert (work / f).exists(), f
    assert "results folder" in capsys.readouterr().out


def test_table1_amod_fits_learned_cost_terms_from_the_command_line(tmp_path):
    """`table1 --case amod --K 0 --cost-terms time:2`: the runner fits the convex θ (cost terms only)
    itself, writes it in the one θ schema (case_study amod, weights by name), and the learned lower
    level runs from that file (the diagnostic row 'Learned FOP + MPC subgoals')."""
    from hiopt_ros.control.theta import load_theta

    out = tmp_path / "t1"
    rc = main(["table1", "--case", "amod", "--scenario", "tiny", "--horizon", "4", "--episodes", "1",
               "--demo-episodes", "2", "--held-out-episodes", "1", "--K", "0", "--cost-terms", "time:2",
               "--methods", "MPC,Learned FOP + MPC subgoals", "--seeds", "1", "--work-dir", str(tmp_path / "work"),
               "--out", str(out), "--quiet"])
    assert rc == 0
    theta = load_theta(tmp_path / "work" / "synthetic-tiny-s0-T4-dt3" / "theta.yaml")
    assert theta.case_study == "amod" and theta.K == 0
    assert sorted(theta.cost_weights) == sorted(["time_f[0:2]", "time_g[0:2]", "time_f[2:4]", "time_g[2:4]"])
    assert theta.provenance["cost_terms"] == "time:2" and theta.provenance["fit_method"] == "convex"
    rows = {r["method"]: r for r in csv.DictReader(open(out / "table1_amod.csv"))}
    assert list(rows) == ["MPC", "Learned FOP + MPC subgoals"]
    assert float(rows["Learned FOP + MPC subgoals"]["reward_mean"]) <= float(rows["MPC"]["reward_mean"]) + 1e-6
    assert "cost terms time:2" in (out / "table1_amod.md").read_text()


class SeededFakeCase(FakeCase):
    """Learned rows whose reward moves with the RL training seed: +seed (learned), −seed (unchanged)."""

    def prepare(self, args, work_dir, log, train_seed=None):
        self.prepared_seeds = getattr(self, "prepared_seeds", []) + [train_seed]
        return Prepared(state={"train_seed": train_seed}, train_seeds=range(0, 5), notes=[f"policy seed {train_seed}"])

    def run_episode(self, prepared, method, seed):
        ep = super().run_episode(prepared, method, seed)
        s = prepared.state["train_seed"]
        shift = {"MPC": 0.0, "Bi-level-unchanged": -float(s), "Bi-level-learned": float(s)}[method]
        return Episode(reward=ep.reward + shift, served_demand=ep.served_demand, decision_times_s=ep.decision_times_s)


def test_table1_learned_rows_run_once_per_training_seed_and_report_over_seeds(tmp_path):
    case = SeededFakeCase()
    res = table1.run(_args(tmp_path, seeds=3, first_train_seed=10, episodes=2), case=case)
    assert case.prepared_seeds == [10, 11, 12]
    # MPC (not trained) once per evaluation seed; each learned row once per (training seed, evaluation seed)
    assert case.calls.count(("MPC", 100)) == 1 and case.calls.count(("Bi-level-learned", 100)) == 3
    t = res["table"]
    assert len(t.values("Bi-level-learned", "reward")) == 6
    learned = [98 + e % 3 + s for s in (10, 11, 12) for e in (100, 101)]
    assert t.stats("Bi-level-learned", "reward")[0] == pytest.approx(np.mean(learned))
    seeds_md = res["paths"]["seeds_markdown"].read_text()
    # over seeds: per-seed means 99.5 + s → mean 110.5, std over the three seed means
    rows = {r["method"]: r for r in csv.DictReader(open(res["paths"]["seeds_csv"]))}
    assert float(rows["Bi-level-learned"]["reward_mean"]) == pytest.approx(110.5)
    assert float(rows["Bi-level-learned"]["reward_std"]) == pytest.approx(np.std([109.5, 110.5, 111.5]))
    assert float(rows["MPC"]["reward_std"]) == 0.0
    # paired, learned − unchanged: 8 + 2s per seed, better on every episode
    line = next(r for r in seeds_md.splitlines() if r.startswith("| Bi-level-learned − Bi-level-unchanged |"))
    assert "+28 (2/2)" in line and "+30 (2/2)" in line and "+32 (2/2)" in line and "on 3 of 3 seeds" in line
    per_seed = {r["method"] for r in csv.DictReader(open(res["paths"]["per_seed_csv"]))}
    assert per_seed == {"MPC", *(f"{m} (seed {s})" for m in ("Bi-level-unchanged", "Bi-level-learned")
                                 for s in (10, 11, 12))}
    assert "3 RL training seeds (10–12" in res["paths"]["markdown"].read_text()


def test_table1_sets_rl_seed_per_seed_on_a_case_without_the_keyword(tmp_path):
    seen = []

    class RlSeedCase(FakeCase):
        def prepare(self, args, work_dir, log):
            seen.append(args.rl_seed)
            return super().prepare(args, work_dir, log)

    table1.run(_args(tmp_path, seeds=2, first_train_seed=0, episodes=1, rl_seed=7), case=RlSeedCase())
    assert seen == [0, 1]
    seen.clear()
    table1.run(_args(tmp_path, seeds=1, episodes=1, rl_seed=7, out=tmp_path / "o2"), case=RlSeedCase())
    assert seen == [7]


def test_a_failed_episode_is_reported_by_name_and_the_others_kept(tmp_path):
    class Flaky(FakeCase):
        def run_episode(self, prepared, method, seed):
            if (method, seed) == ("Bi-level-learned", 101):
                raise RuntimeError("solver crashed")
            return super().run_episode(prepared, method, seed)

    res = table1.run(_args(tmp_path), case=Flaky())
    assert res["sweep"].failed == {"Bi-level-learned/101": "RuntimeError: solver crashed"}
    assert len(res["table"].values("Bi-level-learned", "reward")) == 2
    assert "Bi-level-learned/101 failed: RuntimeError: solver crashed" in res["paths"]["markdown"].read_text()


@pytest.mark.slow
def test_all_quick_writes_every_table_and_figure_and_the_report(tmp_path):
    """`all --quick` (one RL training seed here to stay within the suite's budget; the seeds path is
    the tests above): every producer that exists writes Markdown + CSV + PNG, one that does not is
    named as missing in report.md, and the report has the paper's numbers and the provenance."""
    import importlib.util

    from offline.experiments.__main__ import PRODUCERS
    from offline.experiments.report import STEPS

    out = tmp_path / "all"
    rc = main(["all", "--quick", "--seeds", "1", "--out", str(out)])
    assert rc == 0
    report = (out / "report.md").read_text()
    for name, (command, _, _) in STEPS.items():
        module = PRODUCERS.get(command, ("offline.experiments.table1",))[0]
        if importlib.util.find_spec(module) is None:
            assert f"| {name} | missing: {command}: {module} does not exist yet" in report
            continue
        assert f"| {name} | ok |" in report, name
        if name == "train":
            assert (out / "train" / "bilevel-learned" / "seed0" / "policy.pt").is_file()
            continue
        for ext in ("md", "csv", "png"):
            assert list((out / name).rglob(f"*.{ext}")), (name, ext)
    assert "35725" in report and "| Bi-level-learned |" in report     # the paper's Table 1 beside ours
    assert "sha256" in report and "python -m offline.experiments table3" in report
    # Table 6: the three rows per scenario, ours beside the paper's; Table 5 on Table 1's θ
    rows6 = {r["method"] for r in csv.DictReader(open(out / "table6_amod" / "table6_amod.csv"))}
    assert rows6 == {f"Scenario 1 (tiny): {m}" for m in ("MPC", "Bi-level-learned", "Value approximation")}
    assert "| 1 (tiny) | Value approximation |" in report and "24774" in report
    assert "θ: " + str(out / "work" / "amod") in (out / "table5" / "table5.md").read_text()
    # Figure 4's robot: K = 0 is the unchanged FOP that offline.fit scored beside the K = 1 fit
    from hiopt_ros.control.theta import load_theta

    robot = {r["K"]: r for r in csv.DictReader(open(out / "fig4" / "fig4.csv")) if r["case"] == "robot"}
    unchanged = load_theta(out / "fig4" / "theta_robot_K1.yaml").provenance["validation"]["unchanged"]
    assert set(robot) == {"0", "1"} and float(robot["0"]["cosine"]) == pytest.approx(unchanged["cosine"])
    assert {r["case"] for r in csv.DictReader(open(out / "fig5" / "fig5.csv"))} == {"amod", "inventory"}
    assert "paper: +1.7 %" in (out / "fig5_bilevel" / "fig5_bilevel.md").read_text()


def test_table2_evaluates_each_training_seed_of_the_learned_rows(tmp_path):
    """--policies DIR/<method>/seed<k>/policy.pt: one row per seed in the per-seed table, the same courses
    for every seed, and a std over seeds of 0 when both seeds hold the same policy file."""
    import shutil

    from sim.evaluate import SHIPPED_POLICY

    for s in (3, 5):
        d = tmp_path / "pol" / "bilevel-learned" / f"seed{s}"
        d.mkdir(parents=True)
        shutil.copyfile(SHIPPED_POLICY, d / "policy.pt")
    out = tmp_path / "t2"
    rc = main(["table2", "--courses", "2", "--methods", "geometric,bilevel-learned", "--backend", "kinematic",
               "--policies", str(tmp_path / "pol"), "--out", str(out), "--no-progress"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "table2_episodes.csv")))
    assert sum(r["method"] == "Bi-level-learned" for r in rows) == 4          # 2 seeds × 2 courses
    over = {r["method"]: r for r in csv.DictReader(open(out / "table2_seeds.csv"))}
    assert over["Bi-level-learned"]["episodes"] == "2" and float(over["Bi-level-learned"]["travel_time_s_std"]) == 0
    per_seed = {r["method"] for r in csv.DictReader(open(out / "table2_per_seed.csv"))}
    assert per_seed == {"Geometric + FOP_θ", "Bi-level-learned (seed 3)", "Bi-level-learned (seed 5)"}
    assert "| Bi-level-learned − Geometric + FOP_θ | travel_time_s |" in (out / "table2_seeds.md").read_text()
    assert main(["table2", "--policies", str(tmp_path / "none"), "--methods", "e2e", "--courses", "1",
                 "--out", str(tmp_path / "x")]) == 2 and not (tmp_path / "x").exists()


def test_table3_times_the_mpc_and_the_lower_level_at_the_same_states(tmp_path, capsys):
    out = tmp_path / "t3"
    assert main(["table3", "--cases", "robot", "--states", "3", "--clock", "cpu", "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "table3.csv")))
    assert [(r["case"], r["decision"]) for r in rows] == [("robot", "lower level (FOP)"), ("robot", "MPC"),
                                                          ("robot", "mpc_over_lower")]
    assert all(r["n"] == "3" and float(r["median_ms"]) > 0 for r in rows[:2])
    assert float(rows[2]["median_ms"]) == pytest.approx(float(rows[1]["median_ms"]) / float(rows[0]["median_ms"]))
    assert (out / "table3.png").stat().st_size > 5000 and "cpu clock" in (out / "table3.md").read_text()
    assert main(["table3", "--cases", "robot,boat", "--out", str(tmp_path / "bad")]) == 2
    assert "--cases: unknown ['boat']" in capsys.readouterr().err and not (tmp_path / "bad").exists()


class ScenarioCase(FakeCase):
    """Rewards depend on the scenario Table 6 sets per run (args.scenario), so its rows must keep them apart."""
    optional_methods = ("Value Approximation",)

    def prepare(self, args, work_dir, log):
        return Prepared(state={"offset": {"s1": 0.0, "s2": 1000.0}[args.scenario]}, train_seeds=range(5))

    def run_episode(self, prepared, method, seed):
        self.calls.append((method, seed))
        base = {"MPC": 100.0, "Bi-level-learned": 98.0, "Value Approximation": 70.0}[method] + prepared.state["offset"]
        return Episode(reward=base + seed % 3, served_demand=base / 10, decision_times_s=[0.001])


def test_table6_runs_table1_per_scenario_with_its_three_rows(tmp_path):
    from offline.experiments import table6

    case = ScenarioCase()
    res = table6.run(_args(tmp_path, scenarios="s1,s2", seeds=1, episodes=2), argv=["table6"], case=case)
    seeds = (100, 101)
    # MPC first on every scenario (the reference), Bi-level-unchanged never: Table 6 has three rows
    assert case.calls == [(m, s) for _ in (1, 2) for m in ("MPC", "Bi-level-learned", "Value Approximation")
                          for s in seeds]
    t = res["table"]
    assert t.methods == [f"Scenario {i} ({s}): {m}" for i, s in ((1, "s1"), (2, "s2"))
                         for m in ("MPC", "Bi-level-learned", "Value Approximation")]
    assert t.stats("Scenario 2 (s2): Value Approximation", "reward")[0] == pytest.approx(1071.5)
    assert t.values("Scenario 1 (s1): Value Approximation", "reward_pct_ref") == pytest.approx(
        [100 * (70 + s % 3) / (100 + s % 3) for s in seeds])          # % of the MPC on the same sample
    assert t.values("Scenario 2 (s2): Bi-level-learned", "reward_pct_ref") == pytest.approx(
        [100 * (1098 + s % 3) / (1100 + s % 3) for s in seeds])
    for key in ("markdown", "csv", "episodes_csv", "png"):
        assert res["paths"][key].exists(), key
    assert (tmp_path / "out" / "s2" / "table1_fake.md").is_file() and res["missing"] == []


def test_table6_names_a_method_the_case_adapter_lacks(tmp_path, capsys, monkeypatch):
    from offline.experiments import table6

    class NoValue(ScenarioCase):
        optional_methods = ()

    res = table6.run(_args(tmp_path, scenarios="s1", seeds=1, episodes=1), argv=["table6"], case=NoValue())
    assert res["missing"] == ["Value approximation"]
    assert res["table"].methods == ["Scenario 1 (s1): MPC", "Scenario 1 (s1): Bi-level-learned"]
    line = "Value approximation: the fake case adapter (test_experiments) has no such method yet"
    assert line in res["paths"]["markdown"].read_text() and line in capsys.readouterr().err
    assert main(["table6", "--scenario", "tiny", "--out", str(tmp_path / "bad")]) == 2
    assert "--scenarios" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    monkeypatch.chdir(tmp_path)            # the default results folder: none is left behind by a bad scenario
    try:                                   # the case's own one-line error (it exits 2 itself)
        rc = main(["table6", "--case", "inventory", "--scenarios", "1F99S"])
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    assert "unknown inventory scenario '1F99S'" in capsys.readouterr().err
    assert not [p for p in (tmp_path / "results").rglob("*") if "table6" in p.name]


def test_table5_scores_both_lower_levels_on_test_states_through_the_amod_imitation(tmp_path, capsys):
    """Table 5 on a tiny AMoD scenario: Table 1's cached θ, test states from seeds no fit saw, one row per
    lower level whose pooled numbers are what `python -m offline.amod imitation` prints for the same states."""
    from hiopt_ros.control.theta import load_theta
    from offline.amod.config import ScenarioSpec
    from offline.amod.demos import load_demos
    from offline.amod.fit import imitation
    from offline.amod.sim import AmodSim

    work, out = tmp_path / "work", tmp_path / "t5"
    opts = ["--scenario", "tiny", "--horizon", "4", "--demo-episodes", "2", "--held-out-episodes", "1", "--K", "1",
            "--cost-terms", "none", "--fit-time-limit", "5", "--work-dir", str(work), "--quiet"]
    assert main(["table5", *opts, "--test-episodes", "2", "--out", str(out)]) == 0
    key = ScenarioSpec(synthetic="tiny", horizon=4).key
    test = load_demos(work / key / "test600.npz")
    assert sorted(set(test.seed.tolist())) == [600, 601]
    sim = AmodSim(ScenarioSpec(synthetic="tiny", horizon=4).build())
    rows = {r["method"]: r for r in csv.DictReader(open(out / "table5.csv"))}
    ties = ": closest optimal solution (LP ties)"
    assert list(rows) == ["Bi-level-unchanged", "Bi-level-unchanged" + ties, "Bi-level-learned",
                          "Bi-level-learned" + ties] and rows["Bi-level-learned"]["episodes"] == "2"
    for name, theta in (("Bi-level-unchanged", None), ("Bi-level-learned", load_theta(work / key / "theta.yaml"))):
        per_episode = [imitation(sim, test.subset(test.seed == s), theta)["f"]["cosine"] for s in (600, 601)]
        assert float(rows[name]["f_cosine_mean"]) == pytest.approx(np.mean(per_episode))
        pooled = imitation(sim, test, theta)["f"]
        md = (out / "table5.md").read_text()
        assert f"{name}, all test states solved in one sequence: reb. flow cosine {pooled['cosine']:.3f}" in md
        # the best tie-breaking is at least as close as the solver's (Manhattan)
        assert float(rows[name + ties]["f_manhattan_mean"]) <= float(rows[name]["f_manhattan_mean"]) + 1e-9
    assert (out / "table5.png").is_file()
    assert main(["table5", *opts, "--test-seed", "500", "--out", str(tmp_path / "bad")]) == 2
    assert "overlap the demonstration / held-out seeds" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_the_noisy_expert_is_the_mpc_plus_seeded_noise_per_episode():
    """fig5-bilevel's expert: the MPC's rebalancing flows plus noise that depends only on (noise seed, episode)."""
    from offline.amod.config import ScenarioSpec
    from offline.amod.mpc import AmodMpc
    from offline.amod.sim import AmodSim
    from offline.experiments.noisy_expert import NoisyMpc

    sim = AmodSim(ScenarioSpec(synthetic="tiny", horizon=4).build())
    state = sim.reset(10_000)
    clean = AmodMpc(sim).decide(state)
    noisy = NoisyMpc(sim, scale=2.0, noise_seed=7)
    noisy.reseed(10_000)
    a = noisy.decide(state)
    noisy.reseed(10_000)
    b = noisy.decide(state)
    noisy.reseed(10_001)
    c = noisy.decide(state)
    assert np.array_equal(a.f, b.f) and not np.array_equal(a.f, c.f) and not np.array_equal(a.f, clean.f)
    assert np.all(a.f >= 0) and np.array_equal(a.g, clean.g)             # passenger flows untouched
    assert np.array_equal(NoisyMpc(sim, scale=0.0, noise_seed=7).decide(state).f, clean.f)
    # in collect(): the next episode's seed is taken at t = 0, so a demonstration run equals reseed + decide
    lazy = NoisyMpc(sim, scale=2.0, noise_seed=7, episode_seeds=[10_000])
    assert np.array_equal(lazy.decide(state).f, a.f)


def test_figure5_inventory_noise_and_figure4_inventory_share_the_fit():
    """σ = 0 in Figure 5's inventory task is Figure 4's inventory fit (the same Problem 11 and defaults);
    the noise is seeded, zero for σ = 0 and never makes a decision negative."""
    from offline.experiments import figures
    from offline.inventory.fit import collect_demonstrations
    from offline.inventory.scenarios import make_scenario

    a = figures.inventory_noise_task("1F2S", 4, (0,), (500,), 1, 0.0, 1000, 5.0)
    b = figures.inventory_fit_task("1F2S", 4, (0,), (500,), 1, 5.0)
    assert a["cosine"] == pytest.approx(b["cosine"]) and a["manhattan"] == pytest.approx(b["manhattan"])
    demos = collect_demonstrations(make_scenario("1F2S", 4), [0])
    assert figures.noisy_inventory_demos(demos, 0.0, 1) is demos
    n1, n2 = figures.noisy_inventory_demos(demos, 0.5, 1), figures.noisy_inventory_demos(demos, 0.5, 1)
    assert all(np.array_equal(x.f, y.f) and np.all(x.f >= 0) and np.all(x.w >= 0) for x, y in zip(n1, n2))
    assert any(not np.array_equal(x.f, d.f) for x, d in zip(n1, demos))
