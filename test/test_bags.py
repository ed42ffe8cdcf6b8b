"""hiopt_ros.bags: rosbag2 round trips (MCAP and sqlite3, files and directories) and clean errors on bad bags."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hiopt_ros.bag_reader import RobotTopics, bag_topics, detect_storage, read_robot_bag, read_topic_raw
from hiopt_ros.bags import BagError, BagWriter, new_message, odometry_message, typestore

OBSTACLES = np.array([[1.3, 0.25, 0.3], [2.7, -0.3, 0.25]])


def write_demo(path, storage=None, n=20, nan_odom_at=()):
    with BagWriter(path, storage=storage) as w:
        for i in range(n):
            t = 1_000_000_000 + i * 50_000_000
            x = np.nan if i in nan_odom_at else 0.1 * i
            w.odom(t, x, -0.2, 0.3 + 0.01 * i, 0.5, -0.1)
            w.cmd_vel(t, 0.6, 0.2 - 0.01 * i)
            w.subgoal(t, 1.0 + 0.1 * i, 2.0)
            w.obstacles(t, OBSTACLES)
    return path


@pytest.mark.parametrize("name,storage,expected", [
    ("demo.mcap", None, "mcap"), ("demo.db3", None, "sqlite3"),
    ("demo_dir", "mcap", "mcap"), ("demo_dir", "sqlite3", "sqlite3"),
])
def test_round_trip(tmp_path, name, storage, expected):
    path = write_demo(tmp_path / name, storage)
    assert path.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert detect_storage(path) == expected
    topics = bag_topics(path)
    assert topics["/odom"] == ("nav_msgs/msg/Odometry", 20)
    assert topics["/hiopt/obstacles"] == ("visualization_msgs/msg/MarkerArray", 20)
    bag = read_robot_bag(path)
    assert bag.storage == expected and len(bag.sha256) == 64
    assert bag.odom.t_ns[1] - bag.odom.t_ns[0] == 50_000_000
    np.testing.assert_allclose(bag.odom.values[3], [0.3, -0.2, 0.33, 0.5, -0.1], atol=1e-12)
    np.testing.assert_allclose(bag.cmd_vel.values[4], [0.6, 0.16])
    np.testing.assert_allclose(bag.subgoal.values[5], [1.5, 2.0])
    assert len(bag.obstacles) == 20
    np.testing.assert_allclose(bag.obstacles.obstacles_xyr[7], OBSTACLES)


def test_yaw_round_trips_over_the_whole_circle(tmp_path):
    yaws = np.linspace(-math.pi + 1e-6, math.pi - 1e-6, 13)
    with BagWriter(tmp_path / "yaw.mcap") as w:
        for i, yaw in enumerate(yaws):
            w.odom(i + 1, 0.0, 0.0, yaw, 0.0, 0.0)
            w.cmd_vel(i + 1, 0.0, 0.0)
            w.subgoal(i + 1, 0.0, 0.0)
    bag = read_robot_bag(tmp_path / "yaw.mcap", obstacles="skip")
    np.testing.assert_allclose(bag.odom.values[:, 2], yaws, atol=1e-9)


def test_write_raw_accepts_any_registered_type(tmp_path):
    ts = typestore()
    msg = new_message("std_msgs/msg/String")
    msg.data = "hello"
    with BagWriter(tmp_path / "raw.mcap") as w:
        w.write_raw("/chatter", "std_msgs/msg/String", 5, ts.serialize_cdr(msg, "std_msgs/msg/String"))
        with pytest.raises(BagError, match="not registered"):
            w.write_raw("/x", "my_pkg/msg/Unknown", 6, b"\0\1\0\0")
    [(topic, msgtype, t, raw)] = read_topic_raw(tmp_path / "raw.mcap", ["/chatter"])
    assert (topic, msgtype, t) == ("/chatter", "std_msgs/msg/String", 5)
    assert ts.deserialize_cdr(raw, msgtype).data == "hello"


def test_write_raw_with_rclpy_serialized_messages(tmp_path):
    """The online recorder passes rclpy.serialization output; the bag must read back as ours."""
    ser = pytest.importorskip("rclpy.serialization")
    nav_msgs = pytest.importorskip("nav_msgs.msg")
    geometry_msgs = pytest.importorskip("geometry_msgs.msg")
    odom = nav_msgs.Odometry()
    odom.pose.pose.position.x, odom.pose.pose.orientation.z, odom.pose.pose.orientation.w = 1.5, 0.0, 1.0
    odom.twist.twist.linear.x = 0.4
    tw = geometry_msgs.TwistStamped()
    tw.twist.linear.x, tw.twist.angular.z = 0.4, -0.3
    pt = geometry_msgs.PointStamped()
    pt.point.x, pt.point.y = 2.0, 1.0
    with BagWriter(tmp_path / "rclpy.db3") as w:
        w.write_raw("/odom", "nav_msgs/msg/Odometry", 10, ser.serialize_message(odom))
        w.write_raw("/cmd_vel", "geometry_msgs/msg/TwistStamped", 10, ser.serialize_message(tw))
        w.write_raw("/hiopt/subgoal", "geometry_msgs/msg/PointStamped", 10, ser.serialize_message(pt))
    bag = read_robot_bag(tmp_path / "rclpy.db3")
    np.testing.assert_allclose(bag.odom.values[0], [1.5, 0.0, 0.0, 0.4, 0.0])
    np.testing.assert_allclose(bag.cmd_vel.values[0], [0.4, -0.3])
    assert bag.cmd_vel.msgtype == "geometry_msgs/msg/TwistStamped"
    np.testing.assert_allclose(bag.subgoal.values[0], [2.0, 1.0])


def test_header_stamps_can_be_used_instead_of_receive_times(tmp_path):
    with BagWriter(tmp_path / "s.mcap") as w:
        w.write("/odom", odometry_message(7_000, 0, 0, 0, 0, 0), 9_000)
        w.cmd_vel(9_000, 0.1, 0.0)
        w.subgoal(9_000, 1.0, 0.0)
    assert read_robot_bag(tmp_path / "s.mcap", stamp="header").odom.t_ns[0] == 7_000
    assert read_robot_bag(tmp_path / "s.mcap").odom.t_ns[0] == 9_000


def test_missing_topic_names_it_and_lists_the_bags_topics(tmp_path):
    path = write_demo(tmp_path / "demo.mcap")
    with pytest.raises(BagError) as err:
        read_robot_bag(path, RobotTopics(subgoal="/planner/waypoint"))
    msg = str(err.value)
    assert "/planner/waypoint" in msg and "not found" in msg
    for topic in ("/odom", "/cmd_vel", "/hiopt/subgoal", "/hiopt/obstacles"):
        assert topic in msg
    assert "\n" not in msg


def test_missing_obstacle_topic_is_an_error_only_when_required(tmp_path):
    with BagWriter(tmp_path / "noobs.mcap") as w:
        w.odom(1, 0, 0, 0, 0, 0)
        w.cmd_vel(1, 0, 0)
        w.subgoal(1, 0, 0)
    assert read_robot_bag(tmp_path / "noobs.mcap").obstacles is None
    with pytest.raises(BagError, match="/hiopt/obstacles.*config file"):
        read_robot_bag(tmp_path / "noobs.mcap", obstacles="required")


def test_wrong_message_type_on_a_topic(tmp_path):
    with BagWriter(tmp_path / "wrong.mcap") as w:
        w.odom(1, 0, 0, 0, 0, 0)
        w.subgoal(1, 0, 0)
        w.write("/cmd_vel", new_message("std_msgs/msg/String"), 1)
    with pytest.raises(BagError, match="/cmd_vel has type std_msgs/msg/String, expected geometry_msgs/msg/Twist"):
        read_robot_bag(tmp_path / "wrong.mcap")


@pytest.mark.parametrize("kind", ["empty", "truncated_mcap", "truncated_db3", "not_a_bag", "missing", "plain_dir"])
def test_bad_files_give_one_line_errors(tmp_path, kind):
    if kind == "empty":
        path = tmp_path / "empty.mcap"
        path.write_bytes(b"")
        pattern = "empty"
    elif kind.startswith("truncated"):
        suffix = ".mcap" if kind.endswith("mcap") else ".db3"
        full = write_demo(tmp_path / f"full{suffix}", n=200)
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        pattern = "truncated or corrupt"
    elif kind == "not_a_bag":
        path = tmp_path / "notes.mcap"
        path.write_text("these are not the bags you are looking for\n")
        pattern = "not a rosbag2 bag"
    elif kind == "missing":
        path, pattern = tmp_path / "nowhere.mcap", "no such file"
    else:
        path, pattern = tmp_path, "without metadata.yaml"
    with pytest.raises(BagError, match=pattern) as err:
        read_robot_bag(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_writer_is_atomic_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "demo.mcap"
    with pytest.raises(RuntimeError):
        with BagWriter(path) as w:
            w.cmd_vel(1, 0.1, 0.0)
            raise RuntimeError("recorder crashed")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    write_demo(path)
    with pytest.raises(BagError, match="exists already"):
        BagWriter(path)
    with BagWriter(path, overwrite=True) as w:
        w.cmd_vel(1, 0.1, 0.0)
    assert bag_topics(path) == {"/cmd_vel": ("geometry_msgs/msg/Twist", 1)}


def test_nan_values_are_read_as_recorded(tmp_path):
    path = write_demo(tmp_path / "nan.mcap", nan_odom_at=(2, 5))
    bag = read_robot_bag(path)
    assert np.isnan(bag.odom.values[[2, 5], 0]).all() and np.isfinite(bag.odom.values[[0, 1, 3], 0]).all()
