"""The DDS settings of every process hiopt starts (bringup.dds_env): on this machine, no shared memory.

Fast DDS' shared-memory transport (which rmw_fastrtps adds with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)
leaves a SIGKILLed process' port behind, and a process that takes over its participant id can then
match its peers and receive nothing: the suite's fault tests kill nodes on purpose, and a restarted
planner once waited 60 s for odometry that sim_node was publishing. With config/dds/fastdds_udp_loopback.xml
the processes talk UDP on 127.0.0.1 only; a process configured the usual way (LOCALHOST, e.g. a
`ros2 topic echo` in a shell) still talks to them.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hiopt_ros import bringup

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

PUBLISHER = """
import rclpy, sys
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("dds_env_pub")
pub = node.create_publisher(String, "/dds_env_check", 10)
node.create_timer(0.02, lambda: pub.publish(String(data="x")))
print("ready", flush=True)
rclpy.spin(node)
"""

SUBSCRIBER = """
import rclpy, time
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("dds_env_sub")
got = []
node.create_subscription(String, "/dds_env_check", got.append, 10)
end = time.monotonic() + 60.0
while len(got) < 5 and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
print(len(got), flush=True)
"""


def test_dds_env_uses_the_udp_loopback_profile_unless_the_user_configured_dds():
    env = bringup.dds_env({"PATH": "/usr/bin"})
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
    profile = Path(env["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert profile.is_file() and "<useBuiltinTransports>false</useBuiltinTransports>" in profile.read_text()
    # the user's own DDS settings win; only the discovery range defaults to this machine
    for user in ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, {"FASTDDS_DEFAULT_PROFILES_FILE": "/x.xml"},
                 {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}):
        env = bringup.dds_env(dict(user))
        assert {k: v for k, v in env.items() if k not in user} in ({}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
        assert env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == user.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # a child of a process that already applied them inherits them unchanged
    parent = bringup.dds_env({})
    child = bringup.child_env(7, base=dict(parent))
    assert child["FASTDDS_DEFAULT_PROFILES_FILE"] == parent["FASTDDS_DEFAULT_PROFILES_FILE"]


def _udp_addresses(pid: int) -> set[str]:
    """Local IPv4 addresses of the UDP sockets process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            hex_ip = fields[1].split(":")[0]
            addresses.add(".".join(str(int(hex_ip[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses


@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="needs Linux /proc to inspect the sockets")
@pytest.mark.parametrize("subscriber", ["hiopt", "localhost"])
def test_processes_talk_over_udp_on_the_loopback_only_without_shared_memory(ros_domain_id, subscriber):
    if (os.environ.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        pytest.skip("the profile is Fast DDS'; another RMW only gets the LOCALHOST discovery range")
    # what this test asserts is hiopt's setting for a user who did not configure DDS: start from an
    # environment without the user's DDS settings (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST exported,
    # a profile file, ...), which dds_env rightly keeps and which would bring shared memory back
    base = {k: v for k, v in os.environ.items() if k not in bringup.DDS_USER_SETTINGS}
    env = bringup.child_env(ros_domain_id, base=base)
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in env and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "SYSTEM_DEFAULT"
    sub_env = dict(env)
    if subscriber == "localhost":       # a process set up the usual way (ros2 CLI in a shell)
        sub_env.pop("FASTDDS_DEFAULT_PROFILES_FILE")
        sub_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert pub.stdout.readline().strip() == "ready"
        time.sleep(0.5)     # its participant and sockets are up
        maps = Path(f"/proc/{pub.pid}/maps").read_text()
        assert "/dev/shm/fastdds" not in maps, "the publisher uses Fast DDS shared memory"
        addresses = _udp_addresses(pub.pid)
        assert addresses == {"127.0.0.1"}, f"UDP sockets beyond the loopback: {addresses}"
        got = subprocess.run([sys.executable, "-c", SUBSCRIBER], env=sub_env, capture_output=True, text=True,
                             timeout=120)
        assert got.returncode == 0, got.stderr
        assert int(got.stdout.strip()) >= 5, f"the subscriber received {got.stdout.strip()} messages"
    finally:
        pub.kill()
        pub.wait()
