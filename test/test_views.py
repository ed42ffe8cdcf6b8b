"""The shipped views (config/foxglove/hiopt.json, config/rviz/hiopt.rviz) show only what the stack publishes.

The stack's topics are read from the code itself: every ``create_publisher(Type, topic, qos)`` and
``create_subscription(Type, topic, ...)`` of the nodes (hiopt_ros/nodes/ and the sim bridge sim/sim_node.py), with topic
constants resolved from hiopt_ros/nodes/topics.py and message types from each file's imports. A view's topic
must be published there with the message type the view expects (and, for RViz, a QoS its
subscription can match); a topic a view publishes (the goal tool) must be one a node subscribes to.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NODES = ROOT / "hiopt_ros" / "nodes"
NODE_FILES = [*sorted(NODES.glob("*.py")), ROOT / "sim" / "sim_node.py"]
FOXGLOVE = ROOT / "config" / "foxglove" / "hiopt.json"
RVIZ = ROOT / "config" / "rviz" / "hiopt.rviz"
TWIST = {"geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"}  # managed.twist_type(stamped)

#: RViz display / tool class -> the message type it subscribes to or publishes
RVIZ_TYPES = {
    "rviz_default_plugins/Odometry": "nav_msgs/msg/Odometry",
    "rviz_default_plugins/PointStamped": "geometry_msgs/msg/PointStamped",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
    "rviz_default_plugins/Path": "nav_msgs/msg/Path",
    "rviz_default_plugins/SetGoal": "geometry_msgs/msg/PoseStamped",
}


@dataclass(frozen=True)
class Endpoint:
    topic: str
    types: frozenset[str]
    qos: str          # the QoS expression as written: SENSOR_QOS, LATCHED_QOS, 10, ...
    where: str


def _topic_constants() -> dict[str, str]:
    tree = ast.parse((NODES / "topics.py").read_text())
    return {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str) and t.id.startswith("TOPIC_")}


def _message_imports(tree: ast.AST) -> dict[str, str]:
    """local name -> 'pkg/msg/Type' for every `from pkg.msg import Type [as name]` in the file."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(".msg"):
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module.replace('.', '/')}/{alias.name}"
    return out


def stack_endpoints() -> dict[str, list[Endpoint]]:
    """{"publisher": [...], "subscription": [...]} of every node, read from the source."""
    constants = _topic_constants()
    found: dict[str, list[Endpoint]] = {"publisher": [], "subscription": []}
    for path in NODE_FILES:
        tree = ast.parse(path.read_text())
        messages = _message_imports(tree)
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("create_publisher", "create_subscription") and len(call.args) >= 3):
                continue
            kind = "publisher" if call.func.attr == "create_publisher" else "subscription"
            type_arg, topic_arg, qos_arg = call.args[:3]
            if isinstance(topic_arg, ast.Constant):
                topic = topic_arg.value
            else:
                name = topic_arg.attr if isinstance(topic_arg, ast.Attribute) else getattr(topic_arg, "id", None)
                topic = constants.get(name)
            if isinstance(type_arg, ast.Name) and type_arg.id in messages:
                types = frozenset({messages[type_arg.id]})
            elif isinstance(type_arg, ast.Call) and ast.unparse(type_arg.func).endswith("twist_type"):
                types = frozenset(TWIST)
            else:
                types = frozenset()
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            assert topic and types, f"{where}: cannot resolve {ast.unparse(call)} (update this test's reader)"
            found[kind].append(Endpoint(topic, types, ast.unparse(qos_arg), where))
    return found


def _published(topic: str, msg_type: str, endpoints) -> list[Endpoint]:
    return [e for e in endpoints["publisher"] if e.topic == topic and msg_type in e.types]


def foxglove_topics() -> tuple[dict[str, set[str]], set[str]]:
    """({topic: message fields the layout reads}, {topics the layout publishes})."""
    layout = json.loads(FOXGLOVE.read_text())
    shown: dict[str, set[str]] = {}
    published = set()
    for panel_id, config in layout["configById"].items():
        if panel_id.startswith("3D!"):
            for topic in config.get("topics", {}):
                shown.setdefault(topic, set())
            for key in ("poseTopic", "pointTopic", "poseEstimateTopic"):
                if config.get("publish", {}).get(key):
                    published.add(config["publish"][key])
        elif panel_id.startswith("Plot!"):
            for path in [*config["paths"], config.get("xAxisPath") or {}]:
                if path.get("value"):
                    topic, _, field = path["value"].partition(".")
                    shown.setdefault(topic, set()).add(field)
    return shown, published


def rviz_topics() -> tuple[list[dict], list[dict]]:
    config = yaml.safe_load(RVIZ.read_text())["Visualization Manager"]
    displays = [d for d in config["Displays"] if "Topic" in d]
    tools = [t for t in config["Tools"] if "Topic" in t]
    return displays, tools


def test_the_code_reader_finds_the_stack_s_topics():
    """The reader sees what the topic table says (so an empty or broken reader cannot pass the rest)."""
    endpoints = stack_endpoints()
    published = {(e.topic, t) for e in endpoints["publisher"] for t in e.types}
    for expected in [("/odom", "nav_msgs/msg/Odometry"), ("/cmd_vel", "geometry_msgs/msg/Twist"),
                     ("/hiopt/subgoal", "geometry_msgs/msg/PointStamped"),
                     ("/hiopt/obstacles", "visualization_msgs/msg/MarkerArray"),
                     ("/hiopt/expert_plan", "nav_msgs/msg/Path"), ("/hiopt/solve_time_us", "std_msgs/msg/Float64")]:
        assert expected in published
    assert any(e.topic == "/goal_pose" for e in endpoints["subscription"])
    assert not any(e.topic == "/goal_pose" for e in endpoints["publisher"])


def test_every_topic_the_foxglove_layout_shows_is_published_by_the_stack():
    endpoints = stack_endpoints()
    shown, published = foxglove_topics()
    assert {"/odom", "/hiopt/subgoal", "/hiopt/obstacles", "/hiopt/expert_plan", "/cmd_vel",
            "/hiopt/solve_time_us"} <= set(shown)
    for topic, fields in shown.items():
        publishers = [e for e in endpoints["publisher"] if e.topic == topic]
        assert publishers, f"{FOXGLOVE.name} shows {topic}, which no node publishes"
        for field in fields:
            assert any(_has_field(t, field) for e in publishers for t in e.types), \
                f"{FOXGLOVE.name}: {topic}.{field} is not a field of {sorted(publishers[0].types)}"
    for topic in published:
        assert any(e.topic == topic for e in endpoints["subscription"]), \
            f"{FOXGLOVE.name} publishes {topic}, which no node subscribes to"


def _has_field(msg_type: str, field: str) -> bool:
    """Whether `field` (a.b.c) is a field path of ROS message `msg_type` (pkg/msg/Type)."""
    import importlib

    pkg, _, name = msg_type.split("/")
    try:
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
    except ImportError:
        pytest.skip(f"{pkg} messages are not installed here")
    for part in field.split("."):
        fields = cls.get_fields_and_field_types()
        if part not in fields:
            return False
        sub = fields[part]
        if "/" in sub:
            sub_pkg, sub_name = sub.split("/")
            cls = getattr(importlib.import_module(f"{sub_pkg}.msg"), sub_name)
    return True


@pytest.mark.parametrize("ros_type,field", [("geometry_msgs/msg/Twist", "linear.x"),
                                            ("geometry_msgs/msg/TwistStamped", "linear.x")])
def test_field_check_refuses_a_wrong_path(ros_type, field):
    assert _has_field(ros_type, field) is (ros_type.endswith("Twist"))


def test_every_topic_the_rviz_config_shows_is_published_with_its_type_and_a_matching_qos():
    endpoints = stack_endpoints()
    displays, tools = rviz_topics()
    assert {d["Topic"]["Value"] for d in displays} == {"/odom", "/hiopt/subgoal", "/hiopt/obstacles",
                                                       "/hiopt/expert_plan"}
    for display in displays:
        topic, msg_type = display["Topic"]["Value"], RVIZ_TYPES[display["Class"]]
        publishers = _published(topic, msg_type, endpoints)
        assert publishers, f"{RVIZ.name}: {display['Name']} shows {topic} as {msg_type}; no node publishes that"
        for pub in publishers:
            best_effort = pub.qos.endswith("SENSOR_QOS") or pub.qos.endswith("CLOCK_QOS")
            latched = pub.qos.endswith("LATCHED_QOS")
            if display["Topic"].get("Reliability Policy") == "Reliable":
                assert not best_effort, \
                    f"{RVIZ.name}: {topic} is best effort ({pub.where}): a Reliable view gets nothing"
            if display["Topic"].get("Durability Policy") == "Transient Local":
                assert latched, f"{RVIZ.name}: {topic} is volatile ({pub.where}): a Transient Local view gets nothing"
    for tool in tools:
        topic, msg_type = tool["Topic"]["Value"], RVIZ_TYPES[tool["Class"]]
        assert any(e.topic == topic and msg_type in e.types for e in endpoints["subscription"]), \
            f"{RVIZ.name}: {tool['Class']} publishes {topic}, which no node subscribes to"


def test_views_are_installed_with_the_package():
    setup = (ROOT / "setup.py").read_text()
    assert 'glob("config/foxglove/*.json")' in setup and 'glob("config/rviz/*.rviz")' in setup
