"""Bad input files (README "Faults and bad input"): θ files and demonstration bags for offline.fit.

Every row: a clear one-line error naming the file (or the documented handling), and nothing
corrupted: no θ with different numbers is ever loaded, offline.fit never writes --out from bad bags.
"""
from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from hiopt_ros.bag_reader import read_robot_bag
from hiopt_ros.bags import (
    BagError,
    BagWriter,
    new_message,
    odometry_message,
    point_stamped_message,
    twist_message,
    typestore,
)
from hiopt_ros.control.theta import INTEGRITY_PREFIX, Theta, load_theta, save_theta
from offline import fit as fit_cli
from offline.robot_data import align_bag

ROOT = Path(__file__).resolve().parents[1]


def _theta(seed: int = 0, K: int = 3) -> Theta:
    rng = np.random.default_rng(seed)
    return Theta(alpha=rng.normal(size=(K, 2)), beta=rng.normal(size=K), l=0.01 * (seed + 1),
                 provenance={"tool": "test", "seed": seed})


def _same(a: Theta, b: Theta) -> bool:
    return a.alpha.shape == b.alpha.shape and np.array_equal(a.alpha, b.alpha) and \
        np.array_equal(a.beta, b.beta) and a.l == b.l


def _one_line_naming(exc: BaseException, path: Path) -> None:
    msg = str(exc)
    assert "\n" not in msg and str(path) in msg, msg


# ------------------------------------------------------------------------------------ θ files


def test_every_truncation_of_a_theta_file_is_refused(tmp_path):
    """Cut after any byte, a θ file either fails with a one-line error or (only when complete) loads
    the written θ; never different numbers (e.g. `l: 0.0` cut from `l: 0.01`, a shorter beta list)."""
    full = save_theta(tmp_path / "theta.yaml", _theta(1)).read_bytes()
    ref = load_theta(tmp_path / "theta.yaml")
    cut = tmp_path / "cut.yaml"
    loaded = 0
    for n in range(len(full) + 1):
        cut.write_bytes(full[:n])
        try:
            got = load_theta(cut)
        except ValueError as exc:
            _one_line_naming(exc, cut)
            continue
        assert _same(got, ref), f"a {n}-byte prefix of {len(full)} loaded a different θ"
        loaded += 1
    assert loaded == 1  # only the complete file


def test_theta_file_edited_after_writing_is_refused_until_its_integrity_line_is_removed(tmp_path):
    path = save_theta(tmp_path / "theta.yaml", _theta(2))
    lines = path.read_text().splitlines(keepends=True)
    assert lines[0].startswith(INTEGRITY_PREFIX)
    edited = "".join(lines).replace("l: 0.03", "l: 0.3")
    assert edited != "".join(lines)
    path.write_text(edited)
    with pytest.raises(ValueError, match="truncated or changed after it was written.*delete its first line") as err:
        load_theta(path)
    _one_line_naming(err.value, path)
    path.write_text("".join(edited.splitlines(keepends=True)[1:]))  # a deliberate hand edit
    assert load_theta(path).l == pytest.approx(0.3)


def test_older_theta_files_without_integrity_line_still_load(tmp_path):
    shipped = load_theta(ROOT / "config" / "theta" / "robot.yaml")
    # the shipped θ carries what was learned: ReLU terms and/or cost weights (schema 2)
    assert (shipped.K >= 1 or shipped.learned_weights) and np.all(np.isfinite(shipped.alpha))
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"schema": "hiopt.theta/1", "case_study": "robot",
                                   "relu_terms": {"alpha": [[1.0, 0.0]], "beta": [0.5]}, "l": 0.01}))
    assert _same(load_theta(old), Theta(alpha=[[1.0, 0.0]], beta=[0.5], l=0.01))


@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf", "nan"])
@pytest.mark.parametrize("where", ["alpha", "beta", "l"])
def test_theta_with_nan_or_inf_is_refused(tmp_path, where, bad):
    doc = {"schema": "hiopt.theta/1", "case_study": "robot",
           "relu_terms": {"alpha": [[1.0, 0.0], [0.0, 1.0]], "beta": [0.5, 0.2]}, "l": 0.01}
    text = yaml.safe_dump(doc).replace({"alpha": "- 1.0", "beta": "- 0.5", "l": "l: 0.01"}[where],
                                       {"alpha": f"- {bad}", "beta": f"- {bad}", "l": f"l: {bad}"}[where], 1)
    path = tmp_path / "theta.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="finite") as err:
        load_theta(path)
    _one_line_naming(err.value, path)


@pytest.mark.parametrize("case,pattern", [
    ("beta_shorter", "alpha has 2 rows but beta has 1"),
    ("three_columns", "alpha has 3 columns but input_names lists 2"),
    ("ragged", "θ file"),
    ("unknown_schema", "schema"),
    ("no_schema", "schema"),
    ("not_a_mapping", "schema"),
    ("no_relu_terms", "relu_terms"),
    ("text_in_alpha", "θ file"),
    ("not_yaml", "not valid YAML"),
    ("binary", "θ file"),
    ("empty", "schema"),
])
def test_malformed_theta_files_give_one_line_errors(tmp_path, case, pattern):
    good = {"schema": "hiopt.theta/1", "case_study": "robot",
            "relu_terms": {"alpha": [[1.0, 0.0], [0.0, 1.0]], "beta": [0.5, 0.2]}, "l": 0.01}
    path = tmp_path / "theta.yaml"
    doc = {**good, "relu_terms": dict(good["relu_terms"])}
    text = None
    if case == "beta_shorter":
        doc["relu_terms"]["beta"] = [0.5]
    elif case == "three_columns":
        doc["relu_terms"]["alpha"] = [[1.0, 0.0, 2.0], [0.0, 1.0, 2.0]]
    elif case == "ragged":
        doc["relu_terms"]["alpha"] = [[1.0, 0.0], [0.0]]
    elif case == "unknown_schema":
        doc["schema"] = "hiopt.theta/99"
    elif case == "no_schema":
        doc.pop("schema")
    elif case == "not_a_mapping":
        text = "- 1\n- 2\n"
    elif case == "no_relu_terms":
        doc.pop("relu_terms")
    elif case == "text_in_alpha":
        doc["relu_terms"]["alpha"] = [["fast", 0.0], [0.0, 1.0]]
    elif case == "not_yaml":
        text = "schema: hiopt.theta/1\nrelu_terms: {alpha: [[1, 0]\n  beta: ]]\n"
    elif case == "empty":
        text = ""
    if case == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    else:
        path.write_text(text if text is not None else yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=pattern) as err:
        load_theta(path)
    _one_line_naming(err.value, path)


def test_theta_path_that_is_a_directory_or_missing(tmp_path):
    with pytest.raises(ValueError, match="cannot read it") as err:
        load_theta(tmp_path)
    _one_line_naming(err.value, tmp_path)
    with pytest.raises(FileNotFoundError, match="θ file not found"):
        load_theta(tmp_path / "nope.yaml")


def test_fop_refuses_theta_with_too_many_terms_or_for_another_case_study():
    from hiopt_ros.control.fop import Fop, FopConfig

    fop = Fop(FopConfig())
    before = fop.theta
    with pytest.raises(ValueError,
                       match=rf"θ has {fop.config.K + 1} ReLU terms but this FOP was built with K={fop.config.K}"):
        fop.set_theta(_theta(0, K=fop.config.K + 1))
    with pytest.raises(ValueError, match="case study 'amod'"):
        fop.set_theta(Theta(alpha=[[1.0, 0.0]], beta=[0.1], case_study="amod"))
    with pytest.raises(ValueError, match="inputs"):
        fop.set_theta(Theta(alpha=[[1.0, 0.0]], beta=[0.1], input_names=["omega_radps", "v_mps"]))
    assert fop.theta is before  # a refused θ changes nothing


@pytest.mark.slow   # races a writer against the reader for ~2 s
def test_theta_replaced_while_being_read(tmp_path):
    """save_theta replaces atomically: a reader looping while θ files are swapped under it loads one
    of the two, never an error. A non-atomic writer (open, write half, write the rest, as `cp` or an
    editor may) is caught by the integrity line: the reader gets an error, never a third θ."""
    a, b = _theta(3), _theta(4, K=2)
    path = save_theta(tmp_path / "theta.yaml", a)
    texts = [save_theta(tmp_path / "a.yaml", a).read_bytes(), save_theta(tmp_path / "b.yaml", b).read_bytes()]

    def run(writer) -> tuple[int, int]:
        stop = threading.Event()
        thread = threading.Thread(target=writer, args=(stop,), daemon=True)
        thread.start()
        seen, errors = 0, 0
        t_end = time.monotonic() + 1.0
        try:
            while time.monotonic() < t_end:
                try:
                    got = load_theta(path)
                except ValueError as exc:
                    _one_line_naming(exc, path)
                    errors += 1
                    continue
                assert _same(got, a) or _same(got, b), "a θ that was never written was loaded"
                seen += 1
        finally:
            stop.set()
            thread.join(5)
        return seen, errors

    def atomic(stop):
        i = 0
        while not stop.is_set():
            save_theta(path, (a, b)[i % 2])
            i += 1

    seen, errors = run(atomic)
    assert seen > 0 and errors == 0

    def in_place(stop):
        i = 0
        while not stop.is_set():
            data = texts[i % 2]
            with open(path, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(0.0005)
                fh.write(data[len(data) // 2:])
            i += 1

    seen, errors = run(in_place)
    assert seen + errors > 0


# ------------------------------------------------------------------------------------ bags

STORAGES = [("mcap", ".mcap"), ("sqlite3", ".db3")]
OBSTACLES = np.array([[1.3, 0.25, 0.3]])


def _t(i: int) -> int:
    return 1_000_000_000 + i * 50_000_000


def _demo(path: Path, n: int = 60, order=None) -> Path:
    idx = list(range(n)) if order is None else order
    with BagWriter(path) as w:
        for i in idx:
            t = _t(i)
            w.odom(t, 0.02 * i, 0.0, 0.0, 0.4, 0.0)
            w.cmd_vel(t, 0.4 + 0.001 * i, 0.01 * (i % 7) - 0.03)
            w.subgoal(t, 0.02 * i + 0.6, 0.0)
            w.obstacles(t, OBSTACLES)
    return path


def _fit_refuses(bag: Path, tmp_path: Path, capsys, pattern: str, *extra: str) -> None:
    """offline.fit on the bag: exit 2, one line on stderr naming the bag, existing --out untouched."""
    out = tmp_path / "theta_out.yaml"
    save_theta(out, _theta(9))
    before = out.read_bytes()
    capsys.readouterr()
    code = fit_cli.main([str(bag), "--out", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == fit_cli.EXIT_BAD_INPUT, err
    assert err.startswith("offline.fit: error: ") and "\n" not in err and str(bag) in err, err
    assert re.search(pattern, err), err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".theta_out")) == []


@pytest.mark.parametrize("storage,suffix", STORAGES)
def test_bag_truncated_mid_chunk(tmp_path, capsys, storage, suffix):
    full = _demo(tmp_path / f"full{suffix}", n=300)
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    # MCAP: inside a chunk and just before the footer; sqlite3: inside a page and one byte short
    for n in (len(data) // 3, len(data) // 2 + 7, len(data) - 40, len(data) - 1):
        cut.write_bytes(data[:n])
        with pytest.raises(BagError, match="truncated") as err:
            read_robot_bag(cut)
        _one_line_naming(err.value, cut)
    _fit_refuses(cut, tmp_path, capsys, "truncated")


@pytest.mark.parametrize("storage,suffix", STORAGES)
@pytest.mark.parametrize("role", ["/odom", "/cmd_vel", "/hiopt/subgoal", "/hiopt/obstacles"])
def test_bag_with_wrong_message_type(tmp_path, capsys, storage, suffix, role):
    path = tmp_path / f"wrong{suffix}"
    with BagWriter(path) as w:
        for i in range(20):
            t = _t(i)
            for topic, write in (("/odom", lambda: w.odom(t, 0, 0, 0, 0, 0)),
                                 ("/cmd_vel", lambda: w.cmd_vel(t, 0.1, 0)),
                                 ("/hiopt/subgoal", lambda: w.subgoal(t, 1, 0)),
                                 ("/hiopt/obstacles", lambda: w.obstacles(t, OBSTACLES))):
                if topic == role:
                    msg = new_message("std_msgs/msg/String")
                    msg.data = "hello"
                    w.write(topic, msg, t)
                else:
                    write()
    with pytest.raises(BagError, match=f"{role} has type std_msgs/msg/String, expected") as err:
        read_robot_bag(path, obstacles="required")
    _one_line_naming(err.value, path)
    _fit_refuses(path, tmp_path, capsys, "std_msgs/msg/String")


@pytest.mark.parametrize("storage,suffix", STORAGES)
def test_bag_with_out_of_order_stamps_is_read_in_time_order(tmp_path, storage, suffix):
    """Documented handling: each topic is sorted by its time (stable), so a bag written out of order
    gives exactly the arrays and the samples of the ordered bag (receive times and header stamps)."""
    order = list(range(60))
    random.Random(0).shuffle(order)
    ordered = read_robot_bag(_demo(tmp_path / f"ordered{suffix}"))
    shuffled_path = _demo(tmp_path / f"shuffled{suffix}", order=order)
    for stamp in ("log", "header"):
        ref = read_robot_bag(tmp_path / f"ordered{suffix}", stamp=stamp)
        got = read_robot_bag(shuffled_path, stamp=stamp)
        for role in ("odom", "cmd_vel", "subgoal"):
            assert np.array_equal(getattr(got, role).t_ns, getattr(ref, role).t_ns)
            assert np.array_equal(getattr(got, role).values, getattr(ref, role).values)
            assert np.all(np.diff(getattr(got, role).t_ns) >= 0)
    samples_ref, _ = align_bag(ordered)
    samples_got, stats = align_bag(read_robot_bag(shuffled_path))
    assert len(samples_got) == len(samples_ref) == 60 and stats.commands == 60
    for s_ref, s_got in zip(samples_ref, samples_got):
        assert np.array_equal(s_ref.u_expert, s_got.u_expert) and np.array_equal(s_ref.state, s_got.state)


@pytest.mark.parametrize("storage,suffix", STORAGES)
def test_header_clock_that_restarts_is_refused(tmp_path, capsys, storage, suffix):
    """Two runs in one bag whose header clock restarts (a new sim run): sorting by header stamp would
    interleave them, so --stamp header refuses; receive times still read it in order."""
    path = tmp_path / f"restart{suffix}"
    with BagWriter(path) as w:
        for run in range(2):
            for i in range(30):
                t_log, t_hdr = _t(100 * run + i), _t(i)  # the header clock starts again at 0
                w.write("/odom", odometry_message(t_hdr, 0.02 * i, 0, 0, 0.4, 0), t_log)
                w.cmd_vel(t_log, 0.4, 0.0)
                w.write("/hiopt/subgoal", point_stamped_message(t_hdr, 1.0, 0.0), t_log)
    with pytest.raises(BagError, match=r"header stamps on /odom go back by 1.45 s after message 30 of 60") as err:
        read_robot_bag(path, stamp="header")
    _one_line_naming(err.value, path)
    assert np.all(np.diff(read_robot_bag(path, stamp="log").odom.t_ns) > 0)
    _fit_refuses(path, tmp_path, capsys, "restarted clock", "--stamp", "header", "--obstacles", "none")


def _raw_bag(path: Path, storage: str, conns: list[tuple[str, str, list[tuple[int, object]]]],
             distinct_qos: bool = True) -> Path:
    """A rosbag2 directory with the given connections [(topic, msgtype, [(t_ns, message)])]; a
    topic given twice becomes two connections (distinct QoS, as two publishers would have)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    w.open()
    seen: dict[str, int] = {}
    for topic, msgtype, msgs in conns:
        depth = 10 + seen.get(topic, 0)
        seen[topic] = seen.get(topic, 0) + 1
        qos = [Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, QosDurability.VOLATILE, QosTime(0, 0),
                   QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)] if distinct_qos else []
        conn = w.add_connection(topic, msgtype, typestore=ts, offered_qos_profiles=qos)
        for t, msg in msgs:
            w.write(conn, t, ts.serialize_cdr(msg, msgtype))
    w.close()
    return path


def _base_conns(n: int = 20):
    return [("/odom", "nav_msgs/msg/Odometry",
             [(_t(i), odometry_message(_t(i), 0.02 * i, 0, 0, 0.4, 0)) for i in range(n)]),
            ("/hiopt/subgoal", "geometry_msgs/msg/PointStamped",
             [(_t(i), point_stamped_message(_t(i), 1.0, 0.0)) for i in range(n)])]


def _cmds(v: float, n: int = 20):
    return [(_t(i), twist_message(v, 0.0)) for i in range(n)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_duplicate_topics(tmp_path, capsys, storage):
    """One topic recorded by two connections: identical copies are read once; two different
    streams (two publishers) or two message types on the topic are refused."""
    single = read_robot_bag(_raw_bag(tmp_path / "single", storage, _base_conns() + [
        ("/cmd_vel", "geometry_msgs/msg/Twist", _cmds(0.5))]))
    copies = read_robot_bag(_raw_bag(tmp_path / "copies", storage, _base_conns() + [
        ("/cmd_vel", "geometry_msgs/msg/Twist", _cmds(0.5)), ("/cmd_vel", "geometry_msgs/msg/Twist", _cmds(0.5))]))
    assert len(copies.cmd_vel) == len(single.cmd_vel) == 20
    assert np.array_equal(copies.cmd_vel.values, single.cmd_vel.values)

    two = _raw_bag(tmp_path / "two_publishers", storage, _base_conns() + [
        ("/cmd_vel", "geometry_msgs/msg/Twist", _cmds(0.5)), ("/cmd_vel", "geometry_msgs/msg/Twist", _cmds(0.0))])
    with pytest.raises(BagError, match="/cmd_vel has 2 connections with different messages") as err:
        read_robot_bag(two)
    _one_line_naming(err.value, two)
    _fit_refuses(two, tmp_path, capsys, "different messages", "--obstacles", "none")

    stamped = new_message("geometry_msgs/msg/TwistStamped")
    stamped.twist.linear.x = 0.5
    mixed = _raw_bag(tmp_path / "two_types", storage, _base_conns() + [
        ("/cmd_vel", "geometry_msgs/msg/Twist", _cmds(0.5)),
        ("/cmd_vel", "geometry_msgs/msg/TwistStamped", [(_t(i), stamped) for i in range(20)])])
    with pytest.raises(BagError,
                       match=r"/cmd_vel is recorded with 2 message types: geometry_msgs/msg/Twist \(20 msgs\)") as err:
        read_robot_bag(mixed)
    _one_line_naming(err.value, mixed)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_with_zero_messages(tmp_path, capsys, storage):
    declared = _raw_bag(tmp_path / "declared_only", storage, [
        ("/odom", "nav_msgs/msg/Odometry", []), ("/cmd_vel", "geometry_msgs/msg/Twist", []),
        ("/hiopt/subgoal", "geometry_msgs/msg/PointStamped", [])])
    with pytest.raises(BagError, match=r"topic /odom \(odom\) holds no messages") as err:
        read_robot_bag(declared)
    _one_line_naming(err.value, declared)
    _fit_refuses(declared, tmp_path, capsys, "holds no messages", "--obstacles", "none")

    no_cmds = _raw_bag(tmp_path / "no_commands", storage, _base_conns() + [("/cmd_vel", "geometry_msgs/msg/Twist", [])])
    with pytest.raises(BagError, match=r"topic /cmd_vel \(cmd_vel\) holds no messages"):
        read_robot_bag(no_cmds)

    empty = _raw_bag(tmp_path / "nothing", storage, [])
    with pytest.raises(BagError, match=r"topic /odom \(odom\) not found.*\(no topics\)") as err:
        read_robot_bag(empty)
    _one_line_naming(err.value, empty)
    _fit_refuses(empty, tmp_path, capsys, "not found", "--obstacles", "none")


def test_same_bag_given_twice_is_refused(tmp_path, capsys):
    bag = _demo(tmp_path / "demo.mcap", n=30)
    copy = tmp_path / "copy.mcap"
    copy.write_bytes(bag.read_bytes())
    out = tmp_path / "theta_out.yaml"
    for argv in ([str(bag), str(bag)], [str(bag), str(copy)]):
        capsys.readouterr()
        assert fit_cli.main([*argv, "--out", str(out), "--no-progress"]) == fit_cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert "same recording" in err and "\n" not in err, err
    assert not out.exists()
