"""The run monitor: records the stack's topics into a rosbag2 (MCAP) and measures the run.

:class:`RunMonitor` is an rclpy node living in the launcher's process. It subscribes to

* /odom, /cmd_vel, /hiopt/subgoal, /hiopt/obstacles (:data:`RECORDED_TOPICS`): written to the bag
  as received, serialized bytes straight from DDS (``raw=True``: nothing is deserialized and
  serialized again on the way), with DDS' own receive time as the bag time (so a late executor
  callback does not shift it), so a ROS user opens the bag with ``ros2 bag info/play`` or Foxglove
  and ``hiopt_ros.bag_reader.read_robot_bag`` reads it back. Its queues hold :data:`RECORDER_DEPTH`
  messages, so a callback backlog never overwrites one;
* /hiopt/goal_reached, /hiopt/collision (latched): the run's end conditions;
* /hiopt/solve_time_us: per-cycle FOP (or MPC) solve time;
* /diagnostics: the sim's world status (energy, minimum clearance; ground truth from PyBullet) and
  every node's own count of what it published (``published:<topic>``).

Accounting (what :class:`TopicAccount` reports per topic): the messages recorded; the DDS
publication sequence numbers of each publisher, which show how many a publisher sent before the
recorder matched it and whether any went missing in between; and the publishing node's own count.
The launcher activates the nodes only after this monitor has matched their publishers, so for a
complete recording recorded == published.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile
from rclpy.serialization import deserialize_message
from std_msgs.msg import Bool, Float64

from hiopt_ros.conversions import odom_state, twist_values
from hiopt_ros.nodes.managed import twist_type
from hiopt_ros.nodes.topics import (
    ACTIVE_KEY,
    COMMAND_QOS,
    LATCHED_QOS,
    PUBLISHED_PREFIX,
    SENSOR_QOS,
    TOPIC_CMD_VEL,
    TOPIC_COLLISION,
    TOPIC_DIAGNOSTICS,
    TOPIC_GOAL_REACHED,
    TOPIC_OBSTACLES,
    TOPIC_ODOM,
    TOPIC_SOLVE_TIME,
    TOPIC_SUBGOAL,
)

#: the recorded topics (what offline.fit needs, plus the obstacles so a bag is self-contained)
RECORDED_TOPICS = (TOPIC_ODOM, TOPIC_CMD_VEL, TOPIC_SUBGOAL, TOPIC_OBSTACLES)
RECORDER_DEPTH = 1000       # messages a recorder subscription queues (20 s of /cmd_vel at 50 Hz)
MOTION_THRESHOLD_M = 0.01   # the robot "moves" once it is this far from its first recorded pose


def recorder_qos(publisher_qos: QoSProfile) -> QoSProfile:
    """The publishers' reliability and durability with a deep queue."""
    return QoSProfile(depth=RECORDER_DEPTH, history=HistoryPolicy.KEEP_LAST,
                      reliability=publisher_qos.reliability, durability=publisher_qos.durability)


@dataclass
class TopicAccount:
    """Messages of one recorded topic: recorded, and what the publishers say they published.

    ``published`` is the publishing node(s)' own count (diagnostics ``published:<topic>``; None when
    no node reported it); ``before_recording`` the messages the publishers had sent before this
    recorder matched them and ``lost`` those missing between the first and the last recorded one
    (both from DDS publication sequence numbers).
    """

    recorded: int = 0
    published: int | None = None
    before_recording: int = 0
    lost: int = 0

    @property
    def complete(self) -> bool:
        """Every message the publishers sent is in the bag."""
        return self.before_recording == 0 and self.lost == 0 and \
            (self.published is None or self.published == self.recorded)


@dataclass
class RunSummary:
    """What one run did. Times are seconds on the monitor's clock; NaN when not measured."""

    mode: str
    reached: bool
    collided: bool
    end_reason: str
    travel_time_s: float
    path_length_m: float
    energy_j: float
    min_clearance_m: float
    commanded_rate_hz: float
    achieved_rate_hz: float
    driving_window_s: float
    commands_in_window: int
    solve_time_p50_us: float
    solve_time_p99_us: float
    solve_count: int
    final_xyyaw: list[float]
    goal_xy: list[float]
    message_counts: dict[str, int] = field(default_factory=dict)
    topics: dict[str, dict] = field(default_factory=dict)
    run_dir: str = ""
    domain_id: int = -1

    @property
    def success(self) -> bool:
        return self.reached and not self.collided

    @property
    def recording_complete(self) -> bool:
        return all(TopicAccount(**acc).complete for acc in self.topics.values())

    def to_dict(self) -> dict:
        out = asdict(self)
        out["success"] = self.success
        out["recording_complete"] = self.recording_complete
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def text(self) -> str:
        def num(v: float, fmt: str, unit: str) -> str:
            return f"{v:{fmt}} {unit}" if math.isfinite(v) else "n/a"

        pct = 100.0 * self.achieved_rate_hz / self.commanded_rate_hz if self.commanded_rate_hz else float("nan")
        solver = {"expert": "MPC", "e2e": "policy"}.get(self.mode, "FOP")
        result = ("reached the goal" if self.reached else "did NOT reach the goal") + \
                 (", COLLIDED" if self.collided else ", no collision")
        recorded = []
        for topic, acc in self.topics.items():
            acc = TopicAccount(**acc)
            text = f"{topic} {acc.recorded}" + (f" of {acc.published}" if acc.published is not None else "")
            if acc.before_recording or acc.lost:
                text += f" (MISSING: {acc.before_recording} before recording, {acc.lost} lost)"
            recorded.append(text)
        lines = [
            f"result           {result} (end: {self.end_reason})",
            f"travel time      {num(self.travel_time_s, '.2f', 's')}",
            f"path length      {num(self.path_length_m, '.2f', 'm')}",
            f"energy           {num(self.energy_j, '.2f', 'J')} (wheel-motor work)",
            f"min clearance    {num(self.min_clearance_m, '.3f', 'm')} (robot circle to obstacle surface)",
            f"control rate     {num(self.achieved_rate_hz, '.1f', 'Hz')} of {self.commanded_rate_hz:g} Hz commanded"
            + (f" ({pct:.1f} %)" if math.isfinite(pct) else "")
            + f": {self.commands_in_window} commands in {num(self.driving_window_s, '.2f', 's')} of driving",
            f"{solver} solve time   p50 {num(self.solve_time_p50_us, '.0f', 'µs')}, "
            f"p99 {num(self.solve_time_p99_us, '.0f', 'µs')} ({self.solve_count} solves)",
            f"recorded         {', '.join(recorded)} (recorded of published)",
        ]
        return "\n".join(lines)


class RunMonitor(Node):
    """Records and measures one run; the launcher spins it and reads its state."""

    def __init__(self, *, bag=None, stamped_cmd_vel: bool = False, mode: str = "bilevel",
                 commanded_rate_hz: float = 50.0, goal_xy=(0.0, 0.0), **node_kwargs) -> None:
        super().__init__("hiopt_run_monitor", **node_kwargs)
        self.bag = bag
        self.mode = mode
        self.commanded_rate_hz = float(commanded_rate_hz)
        self.goal_xy = [float(v) for v in goal_xy]
        self.stamped_cmd_vel = stamped_cmd_vel
        self.odom_xy: list[tuple[float, float]] = []
        self.odom_t: list[float] = []               # receive times [s] (DDS reception, system clock)
        self.last_state: np.ndarray | None = None
        self.subgoals: list[tuple[float, float]] = []
        self.subgoal_t: list[float] = []
        self.cmd_t: list[float] = []
        self.cmds: list[tuple[float, float]] = []   # (v, omega) as received
        self.first_motion_t: float | None = None
        self.solve_times_us: list[float] = []
        self.reached_t: float | None = None
        self.collided = False
        self.world: dict[str, str] = {}
        self.world_t: float | None = None
        self.counts = {t: 0 for t in RECORDED_TOPICS}
        # per topic and publisher (gid): [first, last, count] of the DDS publication sequence numbers
        self._sequences: dict[str, dict[bytes, list[int]]] = {t: {} for t in RECORDED_TOPICS}
        # per topic and node: the node's own published count from its latest diagnostics
        self.published: dict[str, dict[str, int]] = {t: {} for t in RECORDED_TOPICS}
        #: nodes whose latest report is their final one (sent when deactivated: active False)
        self.finished: set[str] = set()
        twist = twist_type(stamped_cmd_vel)
        from visualization_msgs.msg import MarkerArray
        types = {TOPIC_ODOM: (Odometry, SENSOR_QOS), TOPIC_CMD_VEL: (twist, COMMAND_QOS),
                 TOPIC_SUBGOAL: (PointStamped, COMMAND_QOS), TOPIC_OBSTACLES: (MarkerArray, LATCHED_QOS)}
        self._types = {topic: f"{t.__module__.split('.')[0]}/msg/{t.__name__}" for topic, (t, _) in types.items()}
        self._classes = {topic: t for topic, (t, _) in types.items()}
        self.recorders = {topic: self.create_subscription(t, topic, self._recorder(topic), recorder_qos(qos), raw=True)
                          for topic, (t, qos) in types.items()}
        self.create_subscription(Bool, TOPIC_GOAL_REACHED, self.on_goal_reached, LATCHED_QOS)
        self.create_subscription(Bool, TOPIC_COLLISION, self.on_collision, LATCHED_QOS)
        self.create_subscription(Float64, TOPIC_SOLVE_TIME, lambda m: self.solve_times_us.append(m.data),
                                 recorder_qos(COMMAND_QOS))
        self.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self.on_diagnostics, 50)

    # ---------------------------------------------------------------- recording
    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _recorder(self, topic: str):
        handler = {TOPIC_ODOM: self._on_odom, TOPIC_CMD_VEL: self._on_cmd_vel,
                   TOPIC_SUBGOAL: self._on_subgoal}.get(topic)
        msg_class = self._classes[topic]
        sequences = self._sequences[topic]

        def record(raw: bytes, info) -> None:
            t_ns = int(info["received_timestamp"]) or self.get_clock().now().nanoseconds
            self.counts[topic] += 1
            if self.bag is not None:
                self.bag.write_raw(topic, self._types[topic], t_ns, raw)
            seq = info.get("publication_sequence_number")
            gid = (info.get("publisher_gid") or {}).get("data", b"")
            if seq is not None:
                span = sequences.get(gid)
                if span is None:
                    sequences[gid] = [seq, seq, 1]
                else:
                    span[0], span[1], span[2] = min(span[0], seq), max(span[1], seq), span[2] + 1
            if handler is not None:
                handler(deserialize_message(raw, msg_class), t_ns * 1e-9)
        return record

    def _on_odom(self, msg: Odometry, t: float) -> None:
        state = odom_state(msg)
        self.last_state = state
        self.odom_xy.append((float(state[0]), float(state[1])))
        self.odom_t.append(t)
        if self.first_motion_t is None and math.dist(self.odom_xy[0], self.odom_xy[-1]) > MOTION_THRESHOLD_M:
            self.first_motion_t = t

    def _on_cmd_vel(self, msg, t: float) -> None:
        self.cmd_t.append(t)
        self.cmds.append(twist_values(msg))

    def _on_subgoal(self, msg: PointStamped, t: float) -> None:
        self.subgoals.append((msg.point.x, msg.point.y))
        self.subgoal_t.append(t)

    def on_goal_reached(self, msg: Bool) -> None:
        if msg.data and self.reached_t is None:
            self.reached_t = self.now_s()

    def on_collision(self, msg: Bool) -> None:
        self.collided = self.collided or bool(msg.data)

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            node = st.name.split(":")[0]
            values = {kv.key: kv.value for kv in st.values}
            if values.get(ACTIVE_KEY) == "False":
                self.finished.add(node)
            elif values.get(ACTIVE_KEY) == "True":
                self.finished.discard(node)
            for key, value in values.items():
                if key.startswith(PUBLISHED_PREFIX) and key[len(PUBLISHED_PREFIX):] in self.published:
                    self.published[key[len(PUBLISHED_PREFIX):]][node] = int(value)
            if node == "sim_node":
                self.world = values
                self.world_t = self.now_s()
                if values.get("collided") == "True":
                    self.collided = True

    # ---------------------------------------------------------------- queries
    @property
    def reached(self) -> bool:
        return self.reached_t is not None

    def matched(self) -> dict[str, int]:
        """{recorded topic: publishers this monitor's subscription has matched}, for the topics this
        mode's graph publishes (the end-to-end graph has no subgoal)."""
        return {topic: sub.get_publisher_count() for topic, sub in self.recorders.items()
                if not (self.mode == "e2e" and topic == TOPIC_SUBGOAL)}

    def ready(self) -> bool:
        """The stack is up: odometry flows and (bi-level) subgoals too."""
        return bool(self.odom_t) and (self.mode != "bilevel" or bool(self.subgoals))

    def accounts(self) -> dict[str, TopicAccount]:
        out = {}
        for topic in RECORDED_TOPICS:
            spans = self._sequences[topic].values()
            own = self.published[topic]
            out[topic] = TopicAccount(recorded=self.counts[topic], published=sum(own.values()) if own else None,
                                      before_recording=sum(first - 1 for first, _, _ in spans),
                                      lost=sum(last - first + 1 - n for first, last, n in spans))
        return out

    def all_recorded(self) -> bool:
        """Every count a node reported has arrived (messages still in flight have been received)."""
        return all(acc.published is None or acc.recorded >= acc.published for acc in self.accounts().values())

    def summary(self, end_reason: str, t_drive_s: float, end_t: float | None = None) -> RunSummary:
        """The run from the drivers' activation (t_drive_s) to its end (goal reached, or end_t)."""
        end_t = end_t if end_t is not None else (self.reached_t or self.now_s())
        xy = np.asarray(self.odom_xy, float).reshape(-1, 2)
        path = float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=1))) if len(xy) > 1 else 0.0
        start = self.first_motion_t
        window = end_t - t_drive_s
        n_cmd = self.commands_between(t_drive_s, end_t)
        st = np.asarray(self.solve_times_us, float)
        travel = (end_t - start) if (start is not None and self.reached) else float("nan")

        def world(key: str) -> float:
            try:
                return float(self.world[key])
            except (KeyError, ValueError):
                return float("nan")

        return RunSummary(
            mode=self.mode, reached=self.reached, collided=self.collided, end_reason=end_reason,
            travel_time_s=travel, path_length_m=path, energy_j=world("energy_j"),
            min_clearance_m=world("min_clearance_m"), commanded_rate_hz=self.commanded_rate_hz,
            achieved_rate_hz=n_cmd / window if window > 0 else float("nan"), driving_window_s=window,
            commands_in_window=n_cmd,
            solve_time_p50_us=float(np.percentile(st, 50)) if st.size else float("nan"),
            solve_time_p99_us=float(np.percentile(st, 99)) if st.size else float("nan"),
            solve_count=int(st.size),
            final_xyyaw=[float(v) for v in self.last_state] if self.last_state is not None else [],
            goal_xy=self.goal_xy, message_counts=dict(self.counts),
            topics={t: asdict(acc) for t, acc in self.accounts().items()})

    def commands_between(self, t_from: float, t_to: float) -> int:
        """/cmd_vel messages received in [t_from, t_to] (receive times, seconds)."""
        cmd = np.asarray(self.cmd_t)
        return int(np.count_nonzero((cmd >= t_from) & (cmd <= t_to)))

    def trajectory(self) -> np.ndarray:
        return np.asarray(self.odom_xy, float).reshape(-1, 2)

    def wait_for_world_update(self, spin_once, timeout_s: float = 1.5) -> None:
        """Spin until the sim reports once more (its energy/clearance then cover the whole run)."""
        before = self.world_t
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.world_t == before:
            spin_once(0.05)


def write_plot(path: Path, course, monitor: RunMonitor, title: str) -> Path:
    from hiopt_ros.plot import plot_trajectory

    label = {"expert": "robot (expert MPC)", "e2e": "robot (end-to-end RL)"}.get(monitor.mode,
                                                                              "robot (bi-level: planner + FOP)")
    sg = np.asarray(monitor.subgoals, float).reshape(-1, 2)
    return plot_trajectory(path, course, {label: monitor.trajectory()}, subgoals=sg[::5] if len(sg) else None,
                           title=title)
