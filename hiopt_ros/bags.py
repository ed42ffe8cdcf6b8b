"""rosbag2 writing (sqlite3 and MCAP) without ROS, through the rosbags typestore; reading: hiopt_ros.bag_reader.

:class:`BagWriter` records any message type registered in the typestore, either as raw CDR bytes
(``write_raw``: the online recorder passes ``rclpy.serialization.serialize_message`` output) or
through typed helpers for the four topics of the navigation stack (:data:`TOPICS`). A bag is
assembled in a hidden sibling folder and moved into place on ``close()``, so ``path`` never holds a
half-written bag. ``path`` ending in ``.mcap`` or ``.db3`` gives a single storage file (readable by
rosbags and ``ros2 bag``); any other path gives a rosbag2 directory with ``metadata.yaml``. Every
failure raises :class:`BagError` with a one-line message for the user.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hiopt_ros import conversions as conv

#: The navigation stack's topics and the message types the writer uses for them.
TOPICS: dict[str, str] = {
    "/odom": "nav_msgs/msg/Odometry",
    "/cmd_vel": "geometry_msgs/msg/Twist",
    "/hiopt/subgoal": "geometry_msgs/msg/PointStamped",
    "/hiopt/obstacles": "visualization_msgs/msg/MarkerArray",
}

MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"
STORAGE_SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}


class BagError(Exception):
    """A bag cannot be written or read as asked; the message is one line meant for the user."""



# --------------------------------------------------------------------------------------------
# typestore and message construction


@lru_cache(maxsize=1)
def typestore():
    """The typestore matching the ROS 2 distribution of the pip rclpy wheels (Kilted)."""
    from rosbags.typesys import Stores, get_typestore

    store = getattr(Stores, "ROS2_KILTED", Stores.LATEST)
    return get_typestore(store)


def register_msgdef(msgtype: str, msgdef: str) -> None:
    """Register a custom ``.msg`` definition so that :meth:`BagWriter.write_raw` accepts the type."""
    from rosbags.typesys import get_types_from_msg

    typestore().register(get_types_from_msg(msgdef, msgtype))


def _default_value(desc: tuple) -> Any:
    from rosbags.interfaces import Nodetype

    kind, spec = desc
    if kind == Nodetype.BASE:
        typ = spec[0]
        if typ in ("string", "wstring"):
            return ""
        if typ == "bool":
            return False
        return 0.0 if typ.startswith("float") else 0
    if kind == Nodetype.NAME:
        return new_message(spec)
    sub, count = spec
    n = count if kind == Nodetype.ARRAY else 0
    if sub[0] == Nodetype.BASE and sub[1][0] not in ("string", "wstring"):
        return np.zeros(n, dtype={"bool": "bool_", "char": "uint8"}.get(sub[1][0], sub[1][0]))
    return [_default_value(sub) for _ in range(n)]


def new_message(msgtype: str) -> Any:
    """A message of ``msgtype`` with every field at its default (zeros, empty strings and lists)."""
    store = typestore()
    if msgtype not in store.fielddefs:
        raise BagError(f"message type {msgtype!r} is not registered in the typestore")
    _, fields = store.fielddefs[msgtype]
    return store.types[msgtype](**{name: _default_value(desc) for name, desc in fields})


def odometry_message(t_ns: int, x: float, y: float, yaw: float, v: float, omega: float) -> Any:
    return conv.fill_odometry(new_message("nav_msgs/msg/Odometry"), t_ns, x, y, yaw, v, omega)


def twist_message(v: float, omega: float) -> Any:
    msg = new_message("geometry_msgs/msg/Twist")
    msg.linear.x, msg.angular.z = float(v), float(omega)
    return msg


def point_stamped_message(t_ns: int, x: float, y: float, frame_id: str = conv.FRAME_ODOM) -> Any:
    msg = new_message("geometry_msgs/msg/PointStamped")
    conv.set_header(msg, t_ns, frame_id)
    msg.point.x, msg.point.y = float(x), float(y)
    return msg


def marker_array_message(t_ns: int, obstacles_xyr: Any, frame_id: str = conv.FRAME_ODOM) -> Any:
    """Obstacles as the stack publishes them (hiopt_ros.conversions.obstacle_markers)."""
    arr = new_message("visualization_msgs/msg/MarkerArray")
    arr.markers = conv.obstacle_markers(obstacles_xyr, lambda: new_message("visualization_msgs/msg/Marker"),
                                        t_ns, frame_id)
    return arr


# --------------------------------------------------------------------------------------------
# writing


def _target_kind(path: Path, storage: str | None) -> tuple[str, bool]:
    """(storage plugin name, single_file) for a target path."""
    by_suffix = {".mcap": "mcap", ".db3": "sqlite3"}.get(path.suffix)
    if storage is not None and storage not in STORAGE_SUFFIX:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    if by_suffix and storage and storage != by_suffix:
        raise ValueError(f"{path}: suffix {path.suffix} means {by_suffix}, but storage={storage!r}")
    return (by_suffix or storage or "mcap"), by_suffix is not None


class BagWriter:
    """Write a rosbag2 bag (MCAP or sqlite3) through the rosbags typestore.

    ``path`` ending in ``.mcap`` / ``.db3`` gives a single storage file, otherwise a bag directory
    (``storage`` picks the plugin, default MCAP). Messages go to a hidden temporary sibling and the
    finished bag is moved to ``path`` by :meth:`close`; :meth:`abort` (and leaving the ``with``
    block through an exception) discards it, so ``path`` never holds a partial bag. A recorder that
    must keep what it has on shutdown calls :meth:`close` in its ``finally``.

    Timestamps ``t_ns`` are the bag's receive times [ns]; stamped messages written by the typed
    helpers carry the same time in their header.
    """

    def __init__(self, path: str | os.PathLike, storage: str | None = None, *, overwrite: bool = False):
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        self.storage, self.single_file = _target_kind(self.path, storage)
        if self.path.exists() and not overwrite:
            raise BagError(f"{self.path} exists already (pass overwrite=True / --force to replace it)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial",
                                             dir=self.path.parent))
        self._inner = self._tmpdir / (self.path.stem if self.single_file else self.path.name)
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._inner, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[tuple[str, str], Any] = {}
        self.counts: dict[str, int] = {}
        self._open = True

    # context manager ----------------------------------------------------------------------
    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # raw ----------------------------------------------------------------------------------
    def write_raw(self, topic: str, msgtype: str, t_ns: int, cdr_bytes: bytes | memoryview) -> None:
        """Append serialized CDR bytes of a registered ``msgtype`` (e.g. from rclpy) on ``topic``."""
        if not self._open:
            raise BagError(f"{self.path}: bag writer is closed")
        key = (topic, msgtype)
        conn = self._connections.get(key)
        if conn is None:
            if msgtype not in typestore().fielddefs:
                raise BagError(f"message type {msgtype!r} (topic {topic}) is not registered in the "
                               "typestore; register it with hiopt_ros.bags.register_msgdef")
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[key] = conn
        t_ns = int(t_ns)
        if t_ns < 0:
            raise ValueError(f"t_ns must be >= 0, got {t_ns}")
        self._writer.write(conn, t_ns, bytes(cdr_bytes))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def write(self, topic: str, msg: Any, t_ns: int) -> None:
        """Serialize a rosbags message object and append it."""
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, t_ns, typestore().serialize_cdr(msg, msgtype))

    # typed helpers for the navigation stack -------------------------------------------------
    def odom(self, t_ns: int, x: float, y: float, yaw: float, v: float, omega: float,
             topic: str = "/odom") -> None:
        """nav_msgs/Odometry: pose (x, y, yaw) [m, m, rad] and twist (v, omega) [m/s, rad/s]."""
        self.write(topic, odometry_message(t_ns, x, y, yaw, v, omega), t_ns)

    def cmd_vel(self, t_ns: int, v: float, omega: float, topic: str = "/cmd_vel") -> None:
        """geometry_msgs/Twist: linear.x = v [m/s], angular.z = omega [rad/s]."""
        self.write(topic, twist_message(v, omega), t_ns)

    def subgoal(self, t_ns: int, x: float, y: float, topic: str = "/hiopt/subgoal") -> None:
        """geometry_msgs/PointStamped in frame ``odom`` (as the stack): the subgoal position x̂ [m]."""
        self.write(topic, point_stamped_message(t_ns, x, y), t_ns)

    def obstacles(self, t_ns: int, obstacles_xyr: Any, topic: str = "/hiopt/obstacles") -> None:
        """visualization_msgs/MarkerArray of CYLINDER markers from (m, 3) rows [x, y, radius] m."""
        self.write(topic, marker_array_message(t_ns, obstacles_xyr), t_ns)

    # finishing ----------------------------------------------------------------------------
    def close(self) -> Path:
        """Finish the bag and move it to ``path``; returns ``path``."""
        if not self._open:
            return self.path
        self._open = False
        try:
            self._writer.close()
            if self.single_file:
                src = self._inner / f"{self._inner.name}{STORAGE_SUFFIX[self.storage]}"
                os.replace(src, self.path)
            else:
                if self.path.exists():
                    shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
                os.replace(self._inner, self.path)
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Discard everything written; ``path`` is left as it was."""
        if not self._open:
            return
        self._open = False
        try:
            self._writer.close()
        except Exception:  # the bag is being thrown away
            pass
        shutil.rmtree(self._tmpdir, ignore_errors=True)
