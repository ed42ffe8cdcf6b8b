"""rosbag2 reading (sqlite3 and MCAP) without ROS, through the rosbags typestore of hiopt_ros.bags.

:func:`bag_topics` lists a bag's topics; :func:`read_robot_bag` validates a bag and returns per-topic
arrays with timestamps (:class:`TopicSeries`, :class:`ObstacleSeries`); :func:`read_topic_raw` gives
raw CDR messages. Every failure (missing file, empty / truncated / non-bag file, missing or empty
topic, wrong or mixed message types, conflicting duplicate connections) raises
:class:`~hiopt_ros.bags.BagError` with a one-line message that names the file and, for topics, lists
what the bag holds.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import yaml

from hiopt_ros import conversions as conv
from hiopt_ros.bags import MCAP_MAGIC, SQLITE_MAGIC, STORAGE_SUFFIX, BagError, typestore

#: Message types accepted per role when reading (a role's topic name is configurable).
ACCEPTED_TYPES: dict[str, tuple[str, ...]] = {
    "odom": ("nav_msgs/msg/Odometry",),
    "cmd_vel": ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped"),
    "subgoal": ("geometry_msgs/msg/PointStamped", "geometry_msgs/msg/PoseStamped"),
    "obstacles": ("visualization_msgs/msg/MarkerArray",),
}


@dataclass(frozen=True)
class RobotTopics:
    """Topic names of the four roles read by :func:`read_robot_bag`."""

    odom: str = "/odom"
    cmd_vel: str = "/cmd_vel"
    subgoal: str = "/hiopt/subgoal"
    obstacles: str = "/hiopt/obstacles"


@dataclass
class TopicSeries:
    """Messages of one topic as arrays: ``t_ns`` (N,) int64 and ``values`` (N, len(columns)) float."""

    topic: str
    msgtype: str
    columns: tuple[str, ...]
    t_ns: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])


@dataclass
class ObstacleSeries:
    """MarkerArray messages as obstacle sets: ``t_ns`` (N,) and ``obstacles_xyr[i]`` (m_i, 3) [x, y, radius] m."""

    topic: str
    t_ns: np.ndarray
    obstacles_xyr: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])


@dataclass
class RobotBag:
    """What :func:`read_robot_bag` found in one bag."""

    path: Path
    storage: str
    sha256: str
    topics: dict[str, str]                       # every topic of the bag -> message type
    message_counts: dict[str, int]
    odom: TopicSeries                            # columns x_m, y_m, yaw_rad, v_mps, omega_radps
    cmd_vel: TopicSeries                         # columns v_mps, omega_radps
    subgoal: TopicSeries                         # columns x_m, y_m
    obstacles: ObstacleSeries | None = None      # None when not asked for or absent and optional
    undecodable: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# typestore and message construction


def detect_storage(path: str | os.PathLike) -> str:
    """'mcap' or 'sqlite3' for a bag directory or storage file; BagError if it is not a bag."""
    p = Path(path)
    if not p.exists():
        raise BagError(f"{p}: no such file or directory")
    if p.is_dir():
        meta = p / "metadata.yaml"
        if not meta.is_file():
            raise BagError(f"{p} is a directory without metadata.yaml, not a rosbag2 bag")
        try:
            info = (yaml.safe_load(meta.read_text()) or {})["rosbag2_bagfile_information"]
            storage = str(info["storage_identifier"])
            files = [p / f for f in info.get("relative_file_paths", [])]
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise BagError(f"{meta}: not a valid rosbag2 metadata file ({exc})") from None
        if storage not in STORAGE_SUFFIX:
            raise BagError(f"{p}: storage {storage!r} is not supported (mcap or sqlite3)")
        for f in files:
            if not f.is_file():
                raise BagError(f"{p}: metadata.yaml lists {f.name}, which does not exist")
            if f.stat().st_size == 0:
                raise BagError(f"{f} is empty (0 bytes); the recording was not finished")
            if storage == "sqlite3":
                _check_sqlite_size(f)
        return storage
    size = p.stat().st_size
    if size == 0:
        raise BagError(f"{p} is empty (0 bytes), not a rosbag2 bag")
    with open(p, "rb") as fh:
        head = fh.read(16)
    storage = "mcap" if head.startswith(MCAP_MAGIC) else "sqlite3" if head.startswith(SQLITE_MAGIC) else None
    if storage is None:
        raise BagError(f"{p} is not a rosbag2 bag (expected a bag directory with metadata.yaml, "
                       "an .mcap file or a .db3 file)")
    if p.suffix != STORAGE_SUFFIX[storage]:
        raise BagError(f"{p} holds {storage} data but is named {p.suffix or 'without suffix'}; "
                       f"rename it to end in {STORAGE_SUFFIX[storage]}")
    if storage == "sqlite3":
        _check_sqlite_size(p)
    return storage


def _check_sqlite_size(p: Path) -> None:
    """A .db3 shorter than its header's page count × page size was cut off (a copy or disk that ran
    out): SQLite may still open it and silently return fewer or zeroed rows, so refuse it."""
    with open(p, "rb") as fh:
        head = fh.read(100)
    if len(head) < 100:
        raise BagError(f"{p}: cannot read the bag, it is truncated or corrupt ({len(head)} bytes, shorter "
                       "than the 100-byte sqlite3 header)")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    expected, size = page_size * pages, p.stat().st_size
    if pages and size < expected:
        raise BagError(f"{p}: cannot read the bag, it is truncated or corrupt ({size} bytes, its sqlite3 "
                       f"header says {expected}); copy or record it again")


def bag_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a bag file, or of a bag directory's files (sorted names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _open_reader(path: Path):
    from rosbags.highlevel import AnyReader

    return AnyReader([path], default_typestore=typestore())


def _cannot_read(path: Path, exc: BaseException) -> BagError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = ("; an MCAP recording that was killed lacks its footer (`mcap recover` can repair it)"
            if "magic" in detail.lower() else "")
    return BagError(f"{path}: cannot read the bag, it may be truncated or corrupt ({detail}){hint}")


def bag_topics(path: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """{topic: (message type, message count)} of a bag (validated as in :func:`detect_storage`)."""
    p = Path(path)
    detect_storage(p)
    try:
        with _open_reader(p) as reader:
            return {name: (info.msgtype or "?", int(info.msgcount)) for name, info in reader.topics.items()}
    except BagError:
        raise
    except Exception as exc:  # rosbags raises many kinds on corrupt input
        raise _cannot_read(p, exc) from None


def format_topics(topics: Mapping[str, tuple[str, int]]) -> str:
    if not topics:
        return "(no topics)"
    return ", ".join(f"{name} [{typ}, {n} msgs]" for name, (typ, n) in sorted(topics.items()))


def _decode(role: str, msg: Any) -> Any:
    if role == "odom":
        return conv.odom_values(msg)
    if role == "cmd_vel":
        return list(conv.twist_values(msg))
    if role == "subgoal":
        return list(conv.point_values(msg))
    return conv.obstacles_from_markers(msg)


COLUMNS = {
    "odom": ("x_m", "y_m", "yaw_rad", "v_mps", "omega_radps"),
    "cmd_vel": ("v_mps", "omega_radps"),
    "subgoal": ("x_m", "y_m"),
}


def read_robot_bag(path: str | os.PathLike, topics: RobotTopics = RobotTopics(), *,
                   obstacles: str = "optional", stamp: str = "log") -> RobotBag:
    """Read odometry, expert commands, subgoals (and obstacles) of one bag as arrays.

    obstacles: 'required' (missing topic is an error), 'optional' (read when present) or 'skip'.
    stamp: 'log' uses the bag's receive time for every topic (one clock; Twist has no header);
    'header' uses header stamps where the message has one.
    Values are returned as recorded, NaNs included (offline.robot_data drops and counts them).
    Each topic's messages are sorted by that time (stable), so messages recorded out of order are
    read in time order; with 'header', a topic whose header clock steps back by more than
    MAX_HEADER_BACKSTEP_NS in receive order (a restarted clock) raises BagError instead. A topic
    that holds no messages, has several message types, or several connections holding different
    messages raises BagError; identical duplicate connections are read once.
    """
    if obstacles not in ("required", "optional", "skip"):
        raise ValueError(f"obstacles must be 'required', 'optional' or 'skip', got {obstacles!r}")
    if stamp not in ("log", "header"):
        raise ValueError(f"stamp must be 'log' or 'header', got {stamp!r}")
    p = Path(path)
    storage = detect_storage(p)
    found = bag_topics(p)
    roles = {"odom": topics.odom, "cmd_vel": topics.cmd_vel, "subgoal": topics.subgoal}
    if obstacles == "required" or (obstacles == "optional" and topics.obstacles in found):
        roles["obstacles"] = topics.obstacles
    for role, topic in roles.items():
        if topic not in found:
            hint = " (or give obstacles from a config file)" if role == "obstacles" else ""
            raise BagError(f"{p}: topic {topic} ({role}) not found{hint}; the bag has: {format_topics(found)}")
        if found[topic][0] not in ACCEPTED_TYPES[role] and found[topic][0] != "?":
            raise BagError(f"{p}: topic {topic} has type {found[topic][0]}, expected "
                           f"{' or '.join(ACCEPTED_TYPES[role])}")
        if found[topic][1] == 0:
            raise BagError(f"{p}: topic {topic} ({role}) holds no messages; the bag has: {format_topics(found)}")
    by_topic = {topic: role for role, topic in roles.items()}
    times: dict[str, list[int]] = {r: [] for r in roles}
    values: dict[str, list[Any]] = {r: [] for r in roles}
    undecodable: dict[str, int] = {}
    try:
        with _open_reader(p) as reader:
            conns = _one_connection_per_topic(p, [c for c in reader.connections if c.topic in by_topic], reader)
            for conn, t_log, raw in reader.messages(connections=conns):
                role = by_topic[conn.topic]
                try:
                    msg = reader.deserialize(raw, conn.msgtype)
                    val = _decode(role, msg)
                except Exception:  # one bad message must not sink the bag
                    undecodable[conn.topic] = undecodable.get(conn.topic, 0) + 1
                    continue
                t = conv.header_ns(msg) if stamp == "header" and hasattr(msg, "header") else int(t_log)
                times[role].append(t)
                values[role].append(val)
    except BagError:
        raise
    except Exception as exc:
        raise _cannot_read(p, exc) from None
    if stamp == "header":
        _check_header_clock(p, roles, times)

    def series(role: str) -> TopicSeries:
        order = np.argsort(np.asarray(times[role], dtype=np.int64), kind="stable")
        t = np.asarray(times[role], dtype=np.int64)[order]
        v = np.asarray(values[role], dtype=float).reshape(-1, len(COLUMNS[role]))[order]
        return TopicSeries(roles[role], found[roles[role]][0], COLUMNS[role], t, v)

    obs = None
    if "obstacles" in roles:
        order = np.argsort(np.asarray(times["obstacles"], dtype=np.int64), kind="stable")
        obs = ObstacleSeries(topics.obstacles, np.asarray(times["obstacles"], dtype=np.int64)[order],
                             [values["obstacles"][i] for i in order])
    return RobotBag(path=p, storage=storage, sha256=bag_sha256(p),
                    topics={k: v[0] for k, v in found.items()},
                    message_counts={k: v[1] for k, v in found.items()},
                    odom=series("odom"), cmd_vel=series("cmd_vel"), subgoal=series("subgoal"),
                    obstacles=obs, undecodable=undecodable)


#: header stamps may disagree with the receive order by transport jitter, not by this much [ns]
MAX_HEADER_BACKSTEP_NS = 1_000_000_000


def _check_header_clock(path: Path, roles: Mapping[str, str], times: Mapping[str, list[int]]) -> None:
    """In receive order, a topic's header stamps may step back by jitter only. A larger step means the
    publisher's clock restarted (a new sim run, two recordings in one bag): sorting by header stamp
    would interleave the runs, so refuse it."""
    for role, topic in roles.items():
        t = np.asarray(times[role], dtype=np.int64)
        if t.size < 2:
            continue
        steps = np.diff(t)
        i = int(np.argmin(steps))
        if steps[i] < -MAX_HEADER_BACKSTEP_NS:
            raise BagError(f"{path}: header stamps on {topic} go back by {-steps[i] / 1e9:.3g} s after message "
                           f"{i + 1} of {t.size} (a restarted clock or two recordings in one bag?); use the "
                           "receive times (--stamp log) or split the bag")


def _one_connection_per_topic(path: Path, conns: list, reader: Any) -> list:
    """The connections to read, one per topic. A topic recorded twice (several connections, e.g.
    publishers with different QoS or merged recordings) is read once when every connection holds the
    same messages (same receive times and bytes); a topic with several message types or with
    connections that disagree is refused: offline.fit cannot tell which messages are the expert's."""
    by_topic: dict[str, list] = {}
    for c in conns:
        by_topic.setdefault(c.topic, []).append(c)
    keep = []
    for topic, group in by_topic.items():
        types = sorted({c.msgtype for c in group})
        if len(types) > 1:
            counts = ", ".join(f"{t} ({sum(c.msgcount for c in group if c.msgtype == t)} msgs)" for t in types)
            raise BagError(f"{path}: topic {topic} is recorded with {len(types)} message types: {counts}; "
                           "more than one publisher wrote it; record the expert alone or give another topic")
        if len(group) > 1:
            contents = [sorted((int(t), bytes(raw)) for _, t, raw in reader.messages(connections=[c]))
                        for c in group]
            if any(other != contents[0] for other in contents[1:]):
                raise BagError(f"{path}: topic {topic} has {len(group)} connections with different messages "
                               f"({', '.join(str(len(x)) for x in contents)} msgs): two publishers or merged "
                               "recordings; offline.fit cannot tell which messages are the expert's")
        keep.append(group[0])
    return keep


def read_topic_raw(path: str | os.PathLike, topics: Iterable[str]) -> list[tuple[str, str, int, bytes]]:
    """(topic, msgtype, t_ns, cdr bytes) of the given topics in time order (e.g. for replay)."""
    p = Path(path)
    detect_storage(p)
    wanted = set(topics)
    try:
        with _open_reader(p) as reader:
            conns = [c for c in reader.connections if c.topic in wanted]
            return [(c.topic, c.msgtype, int(t), bytes(raw)) for c, t, raw in reader.messages(connections=conns)]
    except Exception as exc:
        raise _cannot_read(p, exc) from None
