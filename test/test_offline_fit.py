"""offline.demos → bag → offline.fit → θ file → controller FOP, and the CLI's behaviour on bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hiopt_ros.bag_reader import bag_sha256, read_robot_bag, read_topic_raw
from hiopt_ros.bags import BagWriter
from offline import demos, fit
from offline.inverse.metrics import action_metrics
from offline.robot_data import align_bag, split_indices

REPO = Path(__file__).resolve().parents[1]
# quick fits for the plumbing tests (the paper's ReLU-only form, recorded subgoal, no closed loop)
FAST = ["--subgoal", "recorded", "--learn", "relu", "--K", "2", "--method", "alternating", "--time-limit-s", "5",
        "--max-train", "40", "--closed-loop", "0", "--no-progress"]
# the quality fit: options chosen on held-out episodes, validated on a bag of other course seeds
QUALITY = ["--subgoal", "plan:3", "plan:4", "--learn", "weights", "relu+weights", "--K", "2", "--time-limit-s", "20",
           "--closed-loop", "4", "--no-progress"]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory) -> Path:
    """Two expert episodes recorded by `python -m offline.demos` (ROS-free loop, MCAP file, course seed 1)."""
    path = tmp_path_factory.mktemp("demos") / "demos.mcap"
    assert demos.main(["--out", str(path), "--episodes", "2", "--seed", "1", "--no-progress"]) == 0
    return path


@pytest.fixture(scope="module")
def val_bag(tmp_path_factory) -> Path:
    """Two expert episodes on courses of another seed (never fitted on)."""
    path = tmp_path_factory.mktemp("val") / "val.mcap"
    assert demos.main(["--out", str(path), "--episodes", "2", "--seed", "7", "--no-progress"]) == 0
    return path


@pytest.fixture(scope="module")
def fitted(demo_bag, val_bag, tmp_path_factory):
    """One quality fit of the demo bag, validated on val_bag; (θ path, report dict)."""
    out = tmp_path_factory.mktemp("theta") / "robot.yaml"
    argv = [str(demo_bag), "--out", str(out), "--validate", str(val_bag), *QUALITY]
    args = fit.build_parser().parse_args(argv)
    args.argv = argv
    return out, fit.run(args)


def copy_bag(src: Path, dst: Path, *, drop_topics=(), nan_odom_every: int = 0, keep_first: int | None = None) -> Path:
    """Re-write a bag (possibly in another storage) with rosbags, optionally damaging it."""
    msgs = read_topic_raw(src, ["/odom", "/cmd_vel", "/hiopt/subgoal", "/hiopt/obstacles"])
    odom = read_robot_bag(src).odom
    n_odom = 0
    with BagWriter(dst) as w:
        for topic, msgtype, t, raw in msgs:
            if topic in drop_topics:
                continue
            if keep_first is not None and t > msgs[0][2] + keep_first * 50_000_000:
                continue
            if topic == "/odom":
                if nan_odom_every and n_odom % nan_odom_every == 1:
                    x, y, yaw, v, om = odom.values[n_odom]
                    w.odom(t, np.nan, y, yaw, v, om)
                    n_odom += 1
                    continue
                n_odom += 1
            w.write_raw(topic, msgtype, t, raw)
    return dst


# ------------------------------------------------------------------------------ the pipeline
@pytest.mark.slow
def test_fit_writes_theta_with_provenance_and_reports_held_out_metrics(demo_bag, val_bag, fitted):
    from hiopt_ros.control.theta import load_theta

    out, rep = fitted
    theta = load_theta(out)
    assert theta.case_study == "robot" and theta.l == pytest.approx(1e-2)
    prov = theta.provenance
    assert prov["bags"][0]["name"] == "demos.mcap" and prov["bags"][0]["sha256"] == bag_sha256(demo_bag)
    n = prov["samples"]
    # the final θ is refitted on every training episode; one of the two was held out to choose the options
    assert n["total"] == n["train"] >= 100 and n["held_out"] > 0 and n["unused"] == 0
    assert n["episodes"]["episodes"] == 2 and n["episodes"]["held_out_for_selection"] == 1
    for key in ("K", "l", "rho", "kappa", "method", "solver_status", "fit_time_s", "gaps", "held_out", "command",
                "selection", "validation", "closed_loop", "option"):
        assert key in prov
    assert prov["gaps"]["n"] == prov["samples"]["train"] and prov["gaps"]["max"] >= 0
    # every candidate was scored by the real FOP on the held-out episode; the chosen one has the lowest L2
    cands = prov["selection"]["candidates"]
    assert {c["option"] for c in cands} >= {"subgoal plan:3, weights, κ=0", "subgoal plan:4, weights, κ=0"}
    chosen = next(c for c in cands if c["option"] == prov["selection"]["chosen"])
    assert chosen["held_out"]["l2"] == min(c["held_out"]["l2"] for c in cands)
    # the θ file records what the stack must reproduce: weights, subgoal definition
    assert set(theta.cost_weights) == {"c_p", "c_h", "c_u"} and theta.cost_weights["c_p"] == 100.0
    assert theta.subgoal["definition"] == "expert_plan" and theta.subgoal["steps_ahead"] in (3, 4)
    held = prov["held_out"]
    assert held["n"] == prov["samples"]["held_out"] > 0
    for who in ("learned", "unchanged", "unchanged_recorded"):
        assert {"cosine", "l2", "l1"} <= set(held[who])
        assert all(np.isfinite([held[who][k] for k in ("cosine", "l2", "l1")]))
    # validation on a bag of another course seed: the learned lower level imitates the expert better
    # than the unchanged FOP (θ = 0, the parameter file's weights, the same solver) on either subgoal
    v = prov["validation"]
    assert v["seeds"] == [7] and v["n"] > 50 and v["bags"][0]["sha256"] == bag_sha256(val_bag)
    for base in ("unchanged", "unchanged_recorded"):
        assert v["learned"]["cosine"] > v[base]["cosine"] and v["learned"]["l2"] < v[base]["l2"]
    # the closed loop with the learned FOP loses no success and never collides
    cl = prov["closed_loop"]
    assert cl["learned"]["reached"] >= cl["unchanged"]["reached"] and cl["learned"]["collided"] == 0
    text = fit.format_report({**rep})
    for word in ("cosine", "FOP learned", "FOP unchanged", "duality gaps", "validation", "closed loop",
                 "course seeds 7"):
        assert word in text


@pytest.mark.slow
def test_fitted_theta_loads_in_the_controller_fop_without_rebuilding(fitted):
    from hiopt_ros.control.fop import Fop, FopConfig
    from hiopt_ros.control.theta import load_theta

    out, _ = fitted
    fop = Fop(FopConfig())              # the controller's FOP, built (or loaded) once
    builds = Fop.build_count
    for path in (out, REPO / "config" / "theta" / "robot.yaml"):
        theta = load_theta(path)
        fop.set_theta(theta)
        for name, value in theta.cost_weights.items():   # the θ's weights are the FOP's now
            assert getattr(fop.config, name) == pytest.approx(value)
        u, info = fop.solve(np.zeros(3), np.array([1.0, 0.5]), np.array([[0.6, -0.4, 0.2]]))
        assert info.ok and np.all(np.isfinite(u))
    assert Fop.build_count == builds


def test_shipped_theta_came_from_the_pipeline():
    from hiopt_ros.control.theta import load_theta

    theta = load_theta(REPO / "config" / "theta" / "robot.yaml")
    prov = theta.provenance
    assert prov["tool"] == "offline.fit" and prov["command"].startswith("python -m offline.fit")
    assert {"learned", "unchanged"} <= set(prov["held_out"])


def test_shipped_theta_meets_the_validation_targets_it_was_shipped_with():
    """The shipped θ's own validation report (README): fitted on ≥ 20 successful episodes, scored on
    three course seeds it never saw: cosine ≥ 0.95 and ≥ the unchanged FOP's + 0.03 (either subgoal
    definition), lower L2; the closed loop loses no success and never collides."""
    from hiopt_ros.control.theta import load_theta

    prov = load_theta(REPO / "config" / "theta" / "robot.yaml").provenance
    e = prov["samples"]["episodes"]
    assert e["episodes"] - e["dropped_failed"] >= 20
    v = prov["validation"]
    assert len(v["seeds"]) == 3 and not set(v["seeds"]) & set(e["seeds"])
    for base in ("unchanged", "unchanged_recorded"):
        assert v["learned"]["cosine"] >= max(0.95, v[base]["cosine"] + 0.03)
        assert v["learned"]["l2"] < v[base]["l2"]
    cl = prov["closed_loop"]
    assert cl["learned"]["courses"] >= 20 and cl["learned"]["collided"] == 0
    assert cl["learned"]["reached"] >= cl["unchanged"]["reached"]


def test_shipped_theta_drives_the_bilevel_loop_to_the_goal():
    """What the controller does with the shipped θ: reach the goal of the default course, no collision."""
    from hiopt_ros.control.fop import Fop
    from hiopt_ros.control.params import fop_config_from_params
    from hiopt_ros.control.theta import load_theta
    from hiopt_ros.course import load_course
    from hiopt_ros.unicycle_loop import run_episode

    course = load_course()
    theta = load_theta(REPO / "config" / "theta" / "robot.yaml")
    fop = Fop(fop_config_from_params(REPO / "config" / "nav.yaml", K=max(4, theta.K)), theta=theta)
    res = run_episode(course, "fop", fop=fop, dt_s=0.02, max_time_s=30.0)
    assert res.reached and not res.collided and res.failures == 0, res.summary()


@pytest.mark.slow
def test_sqlite3_bag_with_nan_odometry_round_trips_and_nans_are_counted(demo_bag, tmp_path, capsys):
    bag = copy_bag(demo_bag, tmp_path / "nan_demo", nan_odom_every=10)     # rosbag2 directory (MCAP)
    db3 = copy_bag(demo_bag, tmp_path / "nan_demo.db3", nan_odom_every=10)  # single sqlite3 file
    n_nan = int(np.isnan(read_robot_bag(db3).odom.values).any(axis=1).sum())
    assert n_nan > 5
    out = tmp_path / "theta.yaml"
    assert fit.main([str(db3), str(bag), "--out", str(out), *FAST]) == 0
    report = capsys.readouterr().out
    assert f"dropped messages with NaN/inf: {2 * n_nan} on /odom" in report
    from hiopt_ros.control.theta import load_theta

    prov = load_theta(out).provenance
    assert prov["samples"]["dropped_nonfinite_messages"] == {"/odom": 2 * n_nan}
    assert [b["storage"] for b in prov["bags"]] == ["sqlite3", "mcap"]


@pytest.mark.slow
def test_obstacles_can_come_from_a_config_file(demo_bag, tmp_path):
    bag = copy_bag(demo_bag, tmp_path / "noobs.mcap", drop_topics=("/hiopt/obstacles",))
    out = tmp_path / "theta.yaml"
    assert fit.main([str(bag), "--out", str(out), "--obstacles", "none", "--held-out", "0", *FAST]) == 0
    assert fit.main([str(bag), "--out", str(out), *FAST]) == 2  # the topic is required otherwise


# ------------------------------------------------------------------------------ bad input
def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "offline.fit", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_missing_topic_names_it_and_lists_the_bags_topics(demo_bag, tmp_path):
    bag = copy_bag(demo_bag, tmp_path / "nosub.mcap", drop_topics=("/hiopt/subgoal",))
    res = run_cli(str(bag), "--out", str(tmp_path / "t.yaml"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "/hiopt/subgoal" in lines[0] and "not found" in lines[0]
    assert "/odom [nav_msgs/msg/Odometry" in lines[0] and "/cmd_vel" in lines[0]
    assert not (tmp_path / "t.yaml").exists()


@pytest.mark.parametrize("kind", ["empty", "truncated", "not_a_bag"])
def test_cli_bad_files_exit_2_with_one_line(demo_bag, tmp_path, kind, capsys):
    path = tmp_path / "bad.mcap"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(demo_bag.read_bytes()[: demo_bag.stat().st_size * 2 // 3])
    else:
        path.write_text("odom,cmd_vel\n0,0\n")
    assert fit.main([str(path), "--out", str(tmp_path / "t.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("offline.fit: error: ") and str(path) in err


def test_cli_truncated_bag_has_no_traceback(demo_bag, tmp_path):
    path = tmp_path / "cut.mcap"
    path.write_bytes(demo_bag.read_bytes()[:5000])
    res = run_cli(str(path), "--out", str(tmp_path / "t.yaml"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "truncated or corrupt" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_too_few_aligned_samples_says_how_many_and_why(demo_bag, tmp_path, capsys):
    bag = copy_bag(demo_bag, tmp_path / "short.mcap", keep_first=6)
    assert fit.main([str(bag), "--out", str(tmp_path / "t.yaml"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "too few samples: found 7 aligned samples" in err and "need at least 10" in err
    # stale odometry: one odometry message per 0.5 s, commands every 50 ms, at most 60 ms old allowed
    stale = tmp_path / "stale.mcap"
    with BagWriter(stale) as w:
        for i in range(40):
            t = 1_000_000_000 + 50_000_000 * i
            if i % 10 == 0:
                w.odom(t, 0.0, 0.0, 0.0, 0.0, 0.0)
            w.cmd_vel(t + 1000, 0.5, 0.0)
            w.subgoal(t, 1.0, 0.0)
    assert fit.main([str(stale), "--out", str(tmp_path / "t.yaml"), "--obstacles", "none",
                     "--max-odom-age-s", "0.06", *FAST]) == 2
    err = capsys.readouterr().err
    assert "found 8 aligned samples" in err and "from 40 expert commands" in err
    assert "32 had no odometry within 0.06 s before" in err


def test_out_is_replaced_atomically_and_kept_when_the_fit_fails(demo_bag, tmp_path, monkeypatch, capsys):
    out = tmp_path / "robot.yaml"
    out.write_text("previous θ\n")

    def boom(*a, **k):
        raise RuntimeError("solver crashed mid-fit")

    monkeypatch.setattr(fit, "fit_inverse", boom)
    assert fit.main([str(demo_bag), "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert "solver crashed mid-fit" in err and "was not changed" in err and "Traceback" not in err
    assert out.read_text() == "previous θ\n"

    def bug(*a, **k):
        raise ZeroDivisionError("a bug, not a solver failure")

    monkeypatch.setattr(fit, "fit_inverse", bug)
    with pytest.raises(ZeroDivisionError):   # bugs keep their traceback
        fit.main([str(demo_bag), "--out", str(out), *FAST])
    assert out.read_text() == "previous θ\n"

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "fit_inverse", interrupted)
    assert fit.main([str(demo_bag), "--out", str(out), *FAST]) == 130
    assert out.read_text() == "previous θ\n" and "was not changed" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["robot.yaml"]


@pytest.mark.slow
def test_failed_episodes_are_dropped_by_default_and_kept_with_the_flag(demo_bag, tmp_path, capsys):
    failing = tmp_path / "failing.mcap"     # 1.5 s per episode: the expert cannot reach the goal
    assert demos.main(["--out", str(failing), "--episodes", "2", "--seed", "3", "--max-time-s", "1.5",
                       "--no-progress"]) == 0
    capsys.readouterr()
    from offline.robot_data import read_episodes

    assert [r["reached"] for r in read_episodes(failing)] == [False, False]
    from hiopt_ros.control.theta import load_theta

    out = tmp_path / "theta.yaml"
    assert fit.main([str(demo_bag), str(failing), "--out", str(out), *FAST]) == 0
    kept = load_theta(out).provenance["samples"]
    assert kept["episodes"]["failed"] == 2 and kept["episodes"]["dropped_failed"] == 2
    assert "2 failed, dropped: 2" in capsys.readouterr().out
    assert fit.main([str(demo_bag), str(failing), "--out", str(out), "--keep-failed-episodes", *FAST]) == 0
    every = load_theta(out).provenance["samples"]
    assert every["episodes"]["dropped_failed"] == 0 and every["total"] > kept["total"]
    # only failed episodes: nothing to fit on, and the message says why
    assert fit.main([str(failing), "--out", str(out), *FAST]) == 2
    assert "2 failed episodes dropped" in capsys.readouterr().err


@pytest.mark.slow
def test_validation_never_shares_an_episode_with_training(demo_bag, tmp_path, capsys):
    from offline.robot_data import RobotSample, split_episodes

    out = tmp_path / "theta.yaml"
    # the same bag on both sides, or bags of the same course seed, are refused
    assert fit.main([str(demo_bag), "--validate", str(demo_bag), "--out", str(out), *FAST]) == 2
    assert "both for training and for --validate" in capsys.readouterr().err
    same_seed = tmp_path / "same_seed.mcap"
    assert demos.main(["--out", str(same_seed), "--episodes", "1", "--seed", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert fit.main([str(demo_bag), "--validate", str(same_seed), "--out", str(out), *FAST]) == 2
    assert "share course seed(s) [1]" in capsys.readouterr().err
    assert not out.exists()
    # the held-out split inside the training bags is by episode: no episode on both sides, for any seed
    rng = np.random.default_rng(0)
    samples = [RobotSample("b", i, np.zeros(3), np.zeros(2), np.zeros(2), np.zeros((0, 3)),
                           episode=f"b#{int(e)}") for i, e in enumerate(rng.integers(0, 7, 300))]
    for seed in range(20):
        tr, ho = split_episodes(samples, 0.3, seed)
        assert sorted([*tr, *ho]) == list(range(300)) and len(ho) > 0
        assert not {samples[i].episode for i in tr} & {samples[i].episode for i in ho}


def test_theta_schema_2_round_trip_and_schema_1_still_loads(tmp_path):
    from hiopt_ros.control.fop import Fop, FopConfig
    from hiopt_ros.control.theta import SCHEMA, Theta, load_theta, save_theta

    assert SCHEMA == "hiopt.theta/2"
    th = Theta(alpha=[[0.5, -0.2]], beta=[0.1], l=0.01, cost_weights={"c_p": 100.0, "c_h": 3.5, "c_u": 0.0},
               learned_weights=["c_h", "c_u"], subgoal={"definition": "expert_plan", "steps_ahead": 4})
    back = load_theta(save_theta(tmp_path / "t2.yaml", th))
    assert back.cost_weights == th.cost_weights and back.learned_weights == ["c_h", "c_u"]
    assert back.subgoal == th.subgoal and np.allclose(back.alpha, th.alpha)
    old = tmp_path / "t1.yaml"
    old.write_text("schema: hiopt.theta/1\ncase_study: robot\n"
                   "relu_terms: {alpha: [[1.0, 0.0]], beta: [0.3]}\nl: 0.01\n")
    v1 = load_theta(old)
    assert v1.K == 1 and v1.cost_weights == {} and v1.subgoal == {}
    with pytest.raises(ValueError, match="learned_weights"):
        Theta(alpha=np.zeros((0, 2)), beta=[], cost_weights={"c_h": 1.0}, learned_weights=["c_u"])
    with pytest.raises(ValueError, match="cost weight 'c_h'"):
        Theta(alpha=np.zeros((0, 2)), beta=[], cost_weights={"c_h": -1.0})
    # the FOP applies a θ's weights without a rebuild and reverts them for a θ without weights
    fop = Fop(FopConfig())
    builds = Fop.build_count
    state, sub = np.array([0.0, 0.0, 0.0]), np.array([0.4, 0.04])   # an unsaturated turn
    u0, _ = fop.solve(state, sub)
    fop.set_theta(back)
    assert (fop.config.c_h, fop.config.c_u) == (3.5, 0.0)
    u1, _ = fop.solve(state, sub)
    fop.set_theta(v1)
    assert (fop.config.c_p, fop.config.c_h, fop.config.c_u) == (100.0, 30.0, 1.0)
    fop.set_theta(Theta.zero(0))
    u2, _ = fop.solve(state, sub)
    assert Fop.build_count == builds and np.allclose(u0, u2) and not np.allclose(u0, u1, atol=1e-3)
    with pytest.raises(ValueError, match="cost weights"):
        fop.set_theta(Theta(alpha=np.zeros((0, 2)), beta=[], cost_weights={"c_x": 1.0}))


def test_help_lists_the_options():
    text = fit.build_parser().format_help()
    for opt in ("--K", "--l", "--rho", "--kappa", "--method", "--time-limit-s", "--held-out", "--seed", "--out",
                "--obstacles", "--validate", "--subgoal", "--learn", "--weights", "--closed-loop",
                "--keep-failed-episodes"):
        assert opt in text
    assert "--episodes" in demos.build_parser().format_help()


# ------------------------------------------------------------------------------ pieces (no solver)
def test_alignment_uses_latest_odometry_and_nearest_subgoal(tmp_path):
    path = tmp_path / "a.mcap"
    with BagWriter(path) as w:
        w.odom(1_000, 1.0, 0.0, 0.0, 0.0, 0.0)
        w.odom(3_000, 2.0, 0.0, 0.0, 0.0, 0.0)      # after the command: not the state it acted on
        w.subgoal(1_500, 5.0, 5.0)                   # 500 ns before the command
        w.subgoal(2_400, 6.0, 6.0)                   # 400 ns after: the nearest
        w.cmd_vel(2_000, 0.3, 0.1)
        w.obstacles(0, [[1.0, 1.0, 0.2]])
    samples, stats = align_bag(read_robot_bag(path))
    [s] = samples
    assert s.state[0] == 1.0 and list(s.subgoal_xy) == [6.0, 6.0] and list(s.u_expert) == [0.3, 0.1]
    np.testing.assert_allclose(s.obstacles_xyr, [[1.0, 1.0, 0.2]])
    assert stats.commands == stats.aligned == 1


def test_metrics_and_split():
    m = action_metrics(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert m == {"cosine": pytest.approx(1.0), "l2": 0.0, "l1": 0.0}
    m = action_metrics(np.array([[1.0, 1.0]]), np.array([[1.0, -1.0]]))
    assert m["cosine"] == pytest.approx(0.0) and m["l2"] == pytest.approx(2.0) and m["l1"] == pytest.approx(2.0)
    train, held = split_indices(10, 0.2, seed=3)
    assert len(held) == 2 and sorted([*train, *held]) == list(range(10))
    assert (split_indices(10, 0.2, seed=3)[1] == held).all()


@pytest.mark.parametrize("bad", [["--weight-bounds", "c_x=0:1"], ["--weight-bounds", "c_u=2:1"],
                                 ["--weight-bounds", "c_u=0.1"], ["--weights", "c_h,c_q"], ["--min-cosine", "2"]])
def test_cli_bad_weight_options_exit_2_with_one_line(demo_bag, tmp_path, bad, capsys):
    assert fit.main([str(demo_bag), "--out", str(tmp_path / "t.yaml"), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("offline.fit: error: ") and bad[0] in err
    assert not (tmp_path / "t.yaml").exists()


def test_closed_loop_selection_takes_the_least_energy_that_keeps_time_and_imitation(monkeypatch):
    """--select closed-loop (issue 21): candidates below --min-cosine are not driven; of those that reach
    every course without a collision within 5 % of the action-error choice's time, the least energy wins."""
    from types import SimpleNamespace

    def loop(energy, time_s, reached=10):
        return {"courses": 10, "first_seed": 1_500_000, "reached": reached, "collided": 0, "travel_time_s": time_s,
                "energy_j": energy, "mean_abs_domega_radps": 0.04, "mean_abs_omega_radps": 0.5}

    by_action = {"label": "best imitation", "held_out": {"cosine": 0.999}, "theta": "a", "loop": loop(46.0, 5.30)}
    cands = [by_action,
             {"label": "smooth", "held_out": {"cosine": 0.99}, "theta": "b", "loop": loop(35.0, 5.40)},
             {"label": "smoothest but slow", "held_out": {"cosine": 0.99}, "theta": "c", "loop": loop(30.0, 5.70)},
             {"label": "fails a course", "held_out": {"cosine": 0.99}, "theta": "d", "loop": loop(20.0, 5.0, 9)},
             {"label": "imitates badly", "held_out": {"cosine": 0.95}, "theta": "e", "loop": loop(10.0, 5.0)}]
    installed = []

    class FakeFop:
        def set_theta(self, th):
            installed.append(th)

    def fake_loop(lower, params, seeds, driver):
        if not isinstance(lower, FakeFop):
            return loop(30.0, 4.6)           # the MPC, for reference
        return next(c["loop"] for c in cands if c["theta"] == installed[-1])

    monkeypatch.setattr(fit, "pybullet_loop", fake_loop)
    monkeypatch.setattr(fit, "Mpc", lambda cfg: "mpc")
    args = SimpleNamespace(select_first_seed=1_500_000, select_courses=10, min_cosine=0.98,
                           params=str(REPO / "config" / "nav.yaml"))
    chosen, note = fit.select_closed_loop(cands, by_action, FakeFop(), args, progress=False)
    assert chosen["label"] == "smooth", note
    assert "e" not in installed and "closed_loop" not in cands[-1]
    assert all("closed_loop" in c for c in cands[:4])
