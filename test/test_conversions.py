"""hiopt_ros.conversions (shared by nodes and hiopt_ros.bags) and hiopt_ros.stdio.mute_c_stdout."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hiopt_ros import conversions as conv

REPO = Path(__file__).resolve().parents[1]
OBSTACLES = np.array([[1.3, 0.25, 0.3], [2.7, -0.3, 0.25]])


@pytest.mark.parametrize("yaw", [0.0, 0.4, -2.9, math.pi - 1e-9, -math.pi / 2])
def test_yaw_quaternion_round_trip(yaw):
    from rosbags.typesys import Stores, get_typestore  # noqa: F401  (only to be sure the store exists)

    from hiopt_ros.bags import new_message

    q = new_message("geometry_msgs/msg/Quaternion")
    conv.set_yaw(q, yaw)
    assert conv.yaw_from_quaternion(q) == pytest.approx(yaw, abs=1e-12)
    assert q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 == pytest.approx(1.0)


def test_the_stack_and_the_bag_tools_write_identical_obstacle_messages():
    """The nodes' MarkerArray (rclpy) and hiopt_ros.bags' (rosbags) serialise to the same CDR bytes,
    and both decode back to the obstacles: the online and offline sides cannot disagree on frames,
    marker types or scale."""
    rclpy_ser = pytest.importorskip("rclpy.serialization")
    from builtin_interfaces.msg import Time

    from hiopt_ros.bags import marker_array_message, typestore
    from hiopt_ros.nodes.managed import markers_from_obstacles

    t_ns = 12_345_678_901
    online = markers_from_obstacles(OBSTACLES, Time(sec=12, nanosec=345_678_901), conv.FRAME_ODOM)
    offline = marker_array_message(t_ns, OBSTACLES)
    # compare after one rosbags round trip: CDR padding bytes are not initialised by every writer
    store, typ = typestore(), "visualization_msgs/msg/MarkerArray"
    online_cdr = bytes(store.serialize_cdr(store.deserialize_cdr(rclpy_ser.serialize_message(online), typ), typ))
    assert online_cdr == bytes(store.serialize_cdr(offline, typ))
    for msg in (online, offline):
        np.testing.assert_allclose(conv.obstacles_from_markers(msg), OBSTACLES)
        assert {m.header.frame_id for m in msg.markers} == {conv.FRAME_ODOM}


def test_bag_subgoals_and_odometry_use_the_stack_frames():
    from hiopt_ros.bags import odometry_message, point_stamped_message

    odom = odometry_message(5, 1.0, 2.0, 0.5, 0.3, -0.1)
    assert (odom.header.frame_id, odom.child_frame_id) == (conv.FRAME_ODOM, conv.FRAME_BASE)
    assert conv.odom_values(odom) == pytest.approx([1.0, 2.0, 0.5, 0.3, -0.1])
    assert point_stamped_message(5, 1.0, 2.0).header.frame_id == conv.FRAME_ODOM
    assert conv.header_ns(odom) == 5


def test_mute_c_stdout_silences_native_prints_only_inside_the_block():
    code = (
        "import ctypes, sys\n"
        "from hiopt_ros.stdio import mute_c_stdout\n"
        "libc = ctypes.CDLL(None)\n"
        "print('before', flush=False)\n"
        "with mute_c_stdout():\n"
        "    libc.printf(b'native inside\\n')\n"
        "    print('python inside', flush=True)\n"
        "with mute_c_stdout(python_too=True):\n"
        "    print('swallowed')\n"
        "libc.printf(b'native after\\n'); libc.fflush(None)\n"
        "print('after')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert "inside" not in out.stdout and "swallowed" not in out.stdout
    assert lines[0] == "before" and "after" in lines and out.stdout.count("native after") == 1
