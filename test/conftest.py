"""Shared fixtures and markers of the hiopt test suite.

Markers (registered in pytest.ini):

* ``slow``: a test that takes more than a few seconds (solver fits, many acados solves);
* ``ros``: needs rclpy (DDS traffic in this process);
* ``integration``: starts node processes that talk over DDS (several seconds each).

The fast unit subset is ``make test-fast`` (the Makefile's ``FAST_TESTS`` marker expression, the
one definition that README and docs/testing.md point to).

ROS domain isolation: the session reserves a domain id of its own (hiopt_ros.domains: a lock
file per id, so concurrent test sessions and `make nav` runs on the machine never share one) and
exports it as ``ROS_DOMAIN_ID``, with discovery kept on localhost. Tests that start node processes
take a fresh id per test from :func:`ros_domain_id`, so a latched message of one test cannot reach
the next.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout (holds config/, launch/, the packages)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def acados_cache_dir() -> Path:
    """Where generated acados solvers are cached (shared across sessions, flock-protected)."""
    from hiopt_ros.control.acados_env import cache_root

    return cache_root()


@pytest.fixture(scope="session", autouse=True)
def _session_ros_domain():
    """Every test of the session runs in a ROS domain no other process on the machine uses."""
    from hiopt_ros.bringup import dds_env
    from hiopt_ros.domains import reserve_domain

    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                            "FASTDDS_DEFAULT_PROFILES_FILE")}
    with reserve_domain() as reservation:
        os.environ["ROS_DOMAIN_ID"] = str(reservation.domain_id)
        dds_env(os.environ)         # the DDS settings of the launcher and its nodes
        yield reservation.domain_id
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def ros_domain_id() -> int:
    """A domain id reserved for this test alone (for tests that start node processes)."""
    from hiopt_ros.domains import reserve_domain

    with reserve_domain() as reservation:
        yield reservation.domain_id


@pytest.fixture
def ctx():
    """An rclpy context of its own, in the session's ROS domain, shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)
