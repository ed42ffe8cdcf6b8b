"""Fault campaign at the node level (README "Faults and bad input", node rows), in-process and fast.

The controller runs in this process with a *kinematic* robot in the loop (:class:`Loop`): every
command it publishes advances the robot by a fixed step (``unicycle_step``, Eq. 32b-d) and the new
pose goes out as stamped odometry. Simulated time is therefore commands × step, whatever the load
on the machine, so the closed-loop assertions (no collision, the robot gets somewhere)
do not depend on how fast this machine runs. Every test also checks that no command was NaN and
every command lies within the input bounds (32e-f).

Faults: odometry with NaN/inf; odometry frozen (a source re-publishing its last message); subgoals
inside an obstacle, behind the robot, 100 m away, NaN/inf; obstacle lists empty, overlapping the
robot, 1,000 obstacles; sim-time clock jumps forward and backward; θ files replaced while the
controller drives. Stop delays are bounded by the configured timeouts plus the longest command
interval this executor produced in the same test (its measured lateness), never by a fixed time.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros
from geometry_msgs.msg import PointStamped, Twist  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from hiopt_ros.control.model import DEFAULT_ROBOT, unicycle_step  # noqa: E402
from hiopt_ros.control.theta import Theta, save_theta  # noqa: E402
from hiopt_ros.conversions import set_yaw, twist_values  # noqa: E402
from hiopt_ros.nodes.controller_node import ControllerNode  # noqa: E402
from hiopt_ros.nodes.managed import markers_from_obstacles  # noqa: E402
from hiopt_ros.nodes.parameters import ParameterError  # noqa: E402
from hiopt_ros.nodes.planner_node import PlannerNode  # noqa: E402
from hiopt_ros.nodes.topics import (  # noqa: E402
    CLOCK_QOS,
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    TOPIC_CMD_VEL,
    TOPIC_DIAGNOSTICS,
    TOPIC_OBSTACLES,
    TOPIC_ODOM,
    TOPIC_SUBGOAL,
)
from hiopt_ros.nodes.watchdog import Watchdog  # noqa: E402

RATE_HZ = 200.0
PERIOD_S = 1.0 / RATE_HZ
# each command advances the kinematic robot by SIM_STEP_S = 4 control periods: simulated time runs
# 4x faster than the wall (the one-step FOP's law per command is the same), so seconds of driving are cheap
SIM_STEP_S = 0.02
ODOM_TIMEOUT_S, SUBGOAL_TIMEOUT_S = 0.3, 0.4
LIM = DEFAULT_ROBOT.limits
RADIUS = DEFAULT_ROBOT.robot_radius_m
BOUND_TOL = 1e-6


def controller(ctx, **params) -> ControllerNode:
    base = dict(odom_timeout_s=ODOM_TIMEOUT_S, subgoal_timeout_s=SUBGOAL_TIMEOUT_S, control_rate_hz=RATE_HZ)
    merged = {**base, **params}
    return ControllerNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in merged.items()])


class Loop:
    """The node under test plus a kinematic robot: each /cmd_vel advances the robot by SIM_STEP_S
    and publishes its odometry (stamped with this node's clock) and the subgoal."""

    def __init__(self, ctx, node, start=(0.0, 0.0, 0.0), obstacles=np.zeros((0, 3)), subgoal=(1.0, 0.0),
                 sim_time: bool = False) -> None:
        from visualization_msgs.msg import MarkerArray

        self.node = node
        self.io = rclpy.create_node("fault_rig", context=ctx)
        self.exe = SingleThreadedExecutor(context=ctx)
        self.exe.add_node(node)
        self.exe.add_node(self.io)
        self.state = np.asarray(start, float)
        self.obstacles = np.asarray(obstacles, float).reshape(-1, 3)
        self.subgoal = subgoal                          # (x, y), or a function of the state
        self.states = [self.state.copy()]
        self.cmds: list[tuple[float, float]] = []
        self.cmd_times: list[float] = []
        self.feed_odom = self.feed_subgoal = True
        self.frozen_odom: Odometry | None = None        # re-published as is when set
        self.sim_time_ns: int | None = None             # /clock value when sim_time
        self.clock_paused = False                       # sim_time: /clock holds still (ages do not grow)
        self.odom_pub = self.io.create_publisher(Odometry, TOPIC_ODOM, SENSOR_QOS)
        self.subgoal_pub = self.io.create_publisher(PointStamped, TOPIC_SUBGOAL, COMMAND_QOS)
        self.obstacles_pub = self.io.create_publisher(MarkerArray, TOPIC_OBSTACLES, LATCHED_QOS)
        self.io.create_subscription(Twist, TOPIC_CMD_VEL, self._on_cmd, COMMAND_QOS)
        self.clock_pub = None
        if sim_time:
            from rosgraph_msgs.msg import Clock
            self.clock_pub = self.io.create_publisher(Clock, "/clock", CLOCK_QOS)
            self.sim_time_ns = 100 * 10**9
            self._last_tick_ns = time.monotonic_ns()
            self._clock_msg = Clock
        self.publish_obstacles()

    # ---------------------------------------------------------------- the robot side
    def now_msg(self):
        if self.sim_time_ns is not None:
            return rclpy.time.Time(nanoseconds=self.sim_time_ns).to_msg()
        return self.io.get_clock().now().to_msg()

    def publish_obstacles(self) -> None:
        self.obstacles_pub.publish(markers_from_obstacles(self.obstacles, self.now_msg(), "odom"))

    def publish_inputs(self) -> None:
        if self.frozen_odom is not None:
            self.odom_pub.publish(self.frozen_odom)
        elif self.feed_odom:
            msg = Odometry()
            msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
            msg.header.stamp = self.now_msg()
            msg.pose.pose.position.x, msg.pose.pose.position.y = float(self.state[0]), float(self.state[1])
            yaw = float(self.state[2])
            if math.isfinite(yaw):
                set_yaw(msg.pose.pose.orientation, yaw)
            else:                                       # a broken quaternion as a driver would send it
                msg.pose.pose.orientation.z = msg.pose.pose.orientation.w = yaw
            self.odom_pub.publish(msg)
            self.last_odom = msg
        if self.feed_subgoal:
            sub = self.subgoal(self.state) if callable(self.subgoal) else self.subgoal
            msg = PointStamped()
            msg.header.frame_id, msg.header.stamp = "odom", self.now_msg()
            msg.point.x, msg.point.y = float(sub[0]), float(sub[1])
            self.subgoal_pub.publish(msg)

    def tick_clock(self, dt_ns: int | None = None) -> None:
        """Advance /clock by `dt_ns` (a jump), or by the wall time since the last tick: the simulated
        clock runs in real time, as sim_node's does (unless :attr:`clock_paused`)."""
        if self.clock_pub is not None:
            wall = time.monotonic_ns()
            if dt_ns is None and self.clock_paused:
                dt_ns = 0
            self.sim_time_ns += dt_ns if dt_ns is not None else wall - self._last_tick_ns
            self._last_tick_ns = wall
            self.clock_pub.publish(self._clock_msg(clock=rclpy.time.Time(nanoseconds=self.sim_time_ns).to_msg()))

    def _on_cmd(self, msg) -> None:
        v, w = twist_values(msg)
        self.cmds.append((v, w))
        self.cmd_times.append(time.monotonic())
        if math.isfinite(v) and math.isfinite(w) and np.all(np.isfinite(self.state)):
            self.state = unicycle_step(self.state, (v, w), SIM_STEP_S)
        self.states.append(self.state.copy())
        self.publish_inputs()

    # ---------------------------------------------------------------- driving the executor
    def spin_until(self, cond, timeout_s: float = 10.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if cond():
                return True
            self.tick_clock()
            if not self.cmds:          # nothing flows before the first command: prime the loop
                self.publish_inputs()
            self.exe.spin_once(timeout_sec=0.01)
        return cond()

    def run_commands(self, n: int, timeout_s: float = 60.0) -> None:
        """Spin until `n` more commands (n control periods of simulated time) have been published."""
        target = len(self.cmds) + n
        assert self.spin_until(lambda: len(self.cmds) >= target, timeout_s), f"only {len(self.cmds)} of {target}"

    def run_seconds(self, sim_s: float) -> None:
        """Spin until the robot has driven `sim_s` of simulated time (sim_s / SIM_STEP_S commands)."""
        self.run_commands(int(round(sim_s / SIM_STEP_S)))

    def max_cmd_gap_s(self) -> float:
        return float(np.max(np.diff(self.cmd_times))) if len(self.cmd_times) > 1 else PERIOD_S

    def moving(self) -> bool:
        return bool(self.cmds) and (abs(self.cmds[-1][0]) > 0.05 or abs(self.cmds[-1][1]) > 0.05)

    def stopped(self) -> bool:
        return bool(self.cmds) and self.cmds[-1] == (0.0, 0.0)

    # ---------------------------------------------------------------- what every fault must keep true
    def check_safe(self, obstacles=None) -> float:
        """Every command finite and within (32e-f); the robot never touched an obstacle. Returns the
        smallest clearance [m] between the robot circle and an obstacle surface."""
        cmds = np.asarray(self.cmds, float).reshape(-1, 2)
        assert np.all(np.isfinite(cmds)), "a NaN/inf command was published"
        assert np.all(cmds[:, 0] >= LIM.v_min_mps - BOUND_TOL) and np.all(cmds[:, 0] <= LIM.v_max_mps + BOUND_TOL)
        assert np.all(cmds[:, 1] >= LIM.omega_min_radps - BOUND_TOL) and \
            np.all(cmds[:, 1] <= LIM.omega_max_radps + BOUND_TOL)
        obs = self.obstacles if obstacles is None else obstacles
        if not len(obs):
            return math.inf
        xy = np.asarray(self.states, float)[:, :2]
        d = np.linalg.norm(xy[:, None, :] - obs[None, :, :2], axis=2) - obs[None, :, 2] - RADIUS
        clearance = float(np.min(d))
        assert clearance > 0.0, f"collision: clearance {clearance:.4f} m"
        return clearance

    def close(self) -> None:
        self.exe.shutdown()
        self.io.destroy_node()
        self.node.destroy_node()


@pytest.fixture
def make_loop(ctx):
    loops: list[Loop] = []

    def make(node=None, **kw) -> Loop:
        loop = Loop(ctx, node if node is not None else controller(ctx), **kw)
        loops.append(loop)
        return loop
    yield make
    for loop in loops:
        loop.close()


# ------------------------------------------------------------------------------------------------
# odometry: NaN / inf, frozen

@pytest.mark.parametrize("field, value", [("x", math.nan), ("x", math.inf), ("y", -math.inf), ("yaw", math.nan),
                                          ("yaw", math.inf)])
def test_non_finite_odometry_stops_the_robot_until_it_is_finite_again(make_loop, field, value):
    loop = make_loop(subgoal=(2.0, 0.0))
    assert loop.spin_until(loop.moving)
    good = loop.state.copy()
    loop.state = good.copy()
    loop.state[{"x": 0, "y": 1, "yaw": 2}[field]] = value     # the robot's odometry goes bad
    assert loop.spin_until(lambda: loop.node.counters["nonfinite_state"] >= 5 and loop.stopped())
    n = len(loop.cmds)
    loop.run_commands(10)
    assert all(cmd == (0.0, 0.0) for cmd in loop.cmds[n:])   # stays stopped while it is bad
    assert "non-finite state" in loop.node._last_status
    loop.state = good                                         # and drives again once it is finite
    assert loop.spin_until(loop.moving)
    loop.check_safe()


def test_frozen_odometry_stops_the_robot_with_a_named_diagnostic(make_loop):
    """A source that keeps re-publishing its last message (same header.stamp, same pose): before,
    each copy counted as fresh and the controller drove on a pose that no longer changed."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    loop = make_loop(subgoal=(3.0, 0.0))
    diags: list = []
    loop.io.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, diags.append, 10)
    assert loop.spin_until(loop.moving)
    loop.frozen_odom = loop.last_odom                          # frozen from here on
    t_frozen = loop.node.watchdog.now_ns()
    assert loop.spin_until(lambda: loop.node.counters["frozen_odometry"] > 0 and loop.stopped())
    stop_age_s = (loop.node.watchdog.now_ns() - t_frozen) * 1e-9
    n = len(loop.cmds)
    loop.run_commands(10)
    assert all(cmd == (0.0, 0.0) for cmd in loop.cmds[n:])
    status = loop.node._last_status
    assert status.startswith("odometry frozen: header.stamp has not advanced"), status
    # it stopped once the last fresh odometry was older than odom_timeout_s (+ this executor's lateness)
    assert ODOM_TIMEOUT_S - 3 * loop.max_cmd_gap_s() < stop_age_s <= ODOM_TIMEOUT_S + 3 * loop.max_cmd_gap_s()
    assert loop.node.odom_repeats > 10
    # the named diagnostic: WARN, the reason as message, the counters
    assert loop.spin_until(lambda: diags and diags[-1].status[0].message.startswith("odometry frozen"), 5.0)
    values = {kv.key: kv.value for kv in diags[-1].status[0].values}
    assert int(values["frozen_odometry"]) > 0 and int(values["repeated_odometry_stamps"]) > 0
    assert diags[-1].status[0].level == DiagnosticStatus.WARN
    loop.frozen_odom = None                                    # fresh odometry: it drives again
    assert loop.spin_until(loop.moving)
    loop.check_safe()


def test_planner_publishes_no_subgoal_from_frozen_odometry(ctx):
    from visualization_msgs.msg import MarkerArray

    node = PlannerNode(context=ctx, parameter_overrides=[Parameter("planner_rate_hz", value=50.0),
                                                         Parameter("odom_timeout_s", value=ODOM_TIMEOUT_S)])
    io = rclpy.create_node("fault_rig", context=ctx)
    exe = SingleThreadedExecutor(context=ctx)
    exe.add_node(node)
    exe.add_node(io)
    subgoals: list = []
    odom_pub = io.create_publisher(Odometry, TOPIC_ODOM, SENSOR_QOS)
    io.create_publisher(MarkerArray, TOPIC_OBSTACLES, LATCHED_QOS).publish(
        markers_from_obstacles(np.zeros((0, 3)), io.get_clock().now().to_msg(), "odom"))
    io.create_subscription(PointStamped, TOPIC_SUBGOAL, subgoals.append, COMMAND_QOS)
    msg = Odometry()
    msg.header.frame_id = "odom"
    set_yaw(msg.pose.pose.orientation, 0.0)

    def spin(seconds, fresh):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if fresh:
                msg.header.stamp = io.get_clock().now().to_msg()
            odom_pub.publish(msg)
            exe.spin_once(timeout_sec=0.01)
    try:
        spin(0.5, fresh=True)
        assert subgoals
        spin(ODOM_TIMEOUT_S + 0.5, fresh=False)          # the same message again and again
        n = len(subgoals)
        spin(0.5, fresh=False)
        assert len(subgoals) == n and node.odom_repeats > 10
        spin(0.5, fresh=True)
        assert len(subgoals) > n
    finally:
        exe.shutdown()
        io.destroy_node()
        node.destroy_node()


# ------------------------------------------------------------------------------------------------
# subgoals

def test_subgoal_inside_an_obstacle_is_approached_without_touching_it(make_loop):
    obstacle = np.array([[1.2, 0.0, 0.3]])
    loop = make_loop(obstacles=obstacle, subgoal=(1.2, 0.0))
    loop.run_seconds(4.0)
    clearance = loop.check_safe()
    # it went up to the obstacle and stays out of the d_safe margin (32g, up to the Euler step)
    assert loop.state[0] > 0.3 and clearance >= DEFAULT_ROBOT.d_safe_m - 0.02
    assert loop.node.counters["solver_failures"] == 0


def test_subgoal_behind_the_robot_turns_it_around(make_loop):
    loop = make_loop(subgoal=(-1.0, 0.0))
    loop.run_seconds(5.0)
    loop.check_safe()
    assert math.dist(loop.state[:2], (-1.0, 0.0)) < 0.5      # it turned and got there (from 1 m)
    assert max(abs(w) for _, w in loop.cmds) > 0.5


def test_subgoal_100_m_away_gives_bounded_commands(make_loop):
    loop = make_loop(subgoal=(100.0, 0.0))
    loop.run_seconds(2.0)
    loop.check_safe()
    v = np.asarray(loop.cmds)[-50:, 0]
    assert np.all(v > 0.5 * LIM.v_max_mps)                   # it drives towards it, at most at v_max
    assert loop.node.counters["solver_failures"] == 0


@pytest.mark.parametrize("bad", [(math.nan, 0.0), (0.0, math.inf), (-math.inf, math.nan)])
def test_non_finite_subgoal_is_a_stop_with_the_reason(make_loop, bad):
    loop = make_loop(subgoal=(2.0, 0.0))
    assert loop.spin_until(loop.moving)
    loop.subgoal = bad
    assert loop.spin_until(lambda: loop.node.counters["nonfinite_subgoal"] >= 5 and loop.stopped())
    assert loop.node._last_status.startswith("non-finite subgoal")
    loop.subgoal = (2.0, 0.0)
    assert loop.spin_until(loop.moving)
    loop.check_safe()


# ------------------------------------------------------------------------------------------------
# obstacles

def test_empty_obstacle_list_drives_to_the_subgoal(make_loop):
    loop = make_loop(subgoal=(1.5, 0.5))
    assert loop.spin_until(lambda: loop.node.counters["at_subgoal"] > 0, 30.0)
    assert math.dist(loop.state[:2], (1.5, 0.5)) <= 0.05 + 1e-9   # arrive_radius_m
    loop.check_safe()


@pytest.mark.parametrize("subgoal", [(2.0, 0.0), (-2.0, 0.0)], ids=["through_it", "away_from_it"])
def test_obstacle_overlapping_the_robot_never_brings_it_closer(make_loop, subgoal):
    """The robot starts inside an obstacle's margin (its centre even inside the obstacle): the FOP
    keeps the distance from shrinking (the relaxed constraint, "no closer than now") and the commands
    stay finite and bounded. With the subgoal beyond the obstacle the one-step FOP has no move that
    makes progress and holds; with the subgoal on the free side it turns and drives away."""
    obstacle = np.array([[0.25, 0.1, 0.3]])                  # centre 0.27 m away: overlapping the robot
    loop = make_loop(obstacles=obstacle, subgoal=subgoal)
    loop.run_seconds(3.0)
    loop_d = np.linalg.norm(np.asarray(loop.states)[:, :2] - obstacle[0, :2], axis=1)
    # "no closer than now" is imposed on the FOP's next position Ts ahead; along the 20 ms Euler
    # steps between, a chord of length ≤ Ts·v_max can dip by at most (Ts·v_max)² / (8·d0)
    dip = (DEFAULT_ROBOT.Ts_s * LIM.v_max_mps) ** 2 / (8 * loop_d[0])
    assert loop_d.min() >= loop_d[0] - dip - 1e-6
    cmds = np.asarray(loop.cmds)
    assert np.all(np.isfinite(cmds))
    assert np.all(cmds[:, 0] >= LIM.v_min_mps - BOUND_TOL) and np.all(cmds[:, 0] <= LIM.v_max_mps + BOUND_TOL)
    assert np.all(np.abs(cmds[:, 1]) <= LIM.omega_max_radps + BOUND_TOL)
    assert loop.node.counters["solver_failures"] == 0
    if subgoal[0] < 0:
        assert loop_d[-1] > loop_d[0] + 0.5                  # out of the obstacle's margin and away
    print(f"\noverlapping obstacle, subgoal {subgoal}: distance {loop_d[0]:.3f} -> {loop_d[-1]:.3f} m")


def test_a_thousand_obstacles_use_the_nearest_M_and_keep_one_command_per_cycle(make_loop):
    """1,000 obstacles: the FOP keeps its M slots (the problem size, hence a solve, does not grow
    with the list), the controller publishes exactly one command per cycle and the robot passes
    between them without touching one."""
    rng = np.random.default_rng(3)
    n = 1000
    xs = rng.uniform(-5.0, 8.0, n)
    ys = rng.choice([-1.0, 1.0], n) * rng.uniform(0.75, 6.0, n)   # a free corridor |y| < 0.75 - r
    obstacles = np.column_stack([xs, ys, np.full(n, 0.1)])
    loop = make_loop(obstacles=obstacles, subgoal=(3.0, 0.0))
    assert loop.spin_until(lambda: loop.node.counters["at_subgoal"] > 0, 60.0)
    loop.check_safe()
    node = loop.node
    assert node.obstacles.shape == (n, 3)
    assert node.fop.effective_obstacles(loop.state, node.obstacles).shape[0] <= DEFAULT_ROBOT.max_obstacles
    assert node.counters["solver_failures"] == 0
    assert node.published[TOPIC_CMD_VEL] == node.counters["cycles"]
    times = np.asarray(node._solve_times_us)
    print(f"\n1,000 obstacles: solve time p50 {np.percentile(times, 50):.0f} µs, "
          f"p99 {np.percentile(times, 99):.0f} µs over {times.size} solves")


def test_nearest_obstacles_numpy_path_equals_the_plain_loop(monkeypatch):
    """Above _VECTORIZE_ABOVE obstacles nearest_obstacles uses numpy (1,000 obstacles: a FOP solve went
    from 1.6 ms to 0.16 ms); it returns what the plain loop returns, ties and the reach filter included."""
    from hiopt_ros.control import model

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(model._VECTORIZE_ABOVE + 1, 80))
        obs = np.column_stack([rng.uniform(-3, 3, (n, 2)), rng.uniform(0.01, 1.0, n)])
        if trial % 5 == 0:
            obs[: n // 2] = obs[0]                                   # many exact ties
        state = np.r_[rng.uniform(-2, 2, 2), rng.uniform(-3, 3)]
        for m in (0, 1, 4, n):
            for relax in (False, True):
                for reach in (math.inf, 0.1):
                    fast = model.nearest_obstacles(state, obs, 0.4, m, relax, reach)
                    with monkeypatch.context() as mp:
                        mp.setattr(model, "_VECTORIZE_ABOVE", 10**9)
                        slow = model.nearest_obstacles(state, obs, 0.4, m, relax, reach)
                    assert len(fast) == len(slow)
                    if slow:
                        np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# clocks

def test_watchdog_treats_a_backward_clock_jump_as_stale():
    now = [10 * 10**9]
    wd = Watchdog(lambda: now[0], {"subgoal": 1.0})
    wd.feed("subgoal")
    now[0] += 5 * 10**8
    assert wd.stale() == {}
    now[0] -= 3 * 10**9                      # /clock stepped back 3 s: the input's age is unknown
    age = wd.stale()["subgoal"]
    assert age == pytest.approx(-2.5)
    assert "clock jumped back 2.50 s" in wd.describe("subgoal", age, "subgoal_timeout_s")
    wd.feed("subgoal")                       # a fresh one after the jump is fresh
    assert wd.stale() == {}
    now[0] += 2 * 10**9
    assert "subgoal stale (2.00 s > subgoal_timeout_s = 1 s)" == wd.describe("subgoal", wd.stale()["subgoal"],
                                                                             "subgoal_timeout_s")


def test_sim_clock_jumps_forward_and_backward(make_loop, ctx):
    """use_sim_time: /clock jumps +10 s, then -20 s. Forward: every input is suddenly older than its
    timeout, so the controller stops until fresh ones arrive, then drives on (with inputs flowing,
    the stop lasts until the next odometry and subgoal, if a control cycle runs before them).
    Backward with the planner silent from that moment: before the fix the subgoal's age was negative
    (never stale) and the controller drove on an old subgoal for the whole jump; now it stops at
    once and says why."""
    node = controller(ctx, use_sim_time=True)
    loop = make_loop(node=node, subgoal=(50.0, 0.0), sim_time=True)
    assert loop.spin_until(loop.moving)
    # forward jump with no input in flight: the clock holds still while the executor drains what was
    # published (so no input ages, however late this process runs), then jumps; every input is 10 s old
    loop.feed_odom = loop.feed_subgoal = False
    loop.clock_paused = True
    loop.spin_until(lambda: False, 0.2)
    assert loop.moving() and node.watchdog.stale() == {}
    loop.clock_paused = False
    loop.tick_clock(10 * 10**9)
    assert loop.spin_until(lambda: node.counters["stale_odometry"] > 0 and loop.stopped())
    assert node._last_status.startswith("odometry stale (10."), node._last_status
    loop.feed_odom = loop.feed_subgoal = True                # fresh inputs on the new clock: it drives on
    assert loop.spin_until(loop.moving)
    # backward jump while the planner is silent: its last subgoal (delivered, none in flight) is
    # younger than subgoal_timeout_s when the clock steps back 20 s
    loop.feed_subgoal = False
    loop.clock_paused = True
    loop.spin_until(lambda: False, 0.2)
    assert loop.moving() and node.watchdog.stale() == {}
    loop.clock_paused = False
    loop.tick_clock(-20 * 10**9)
    assert loop.spin_until(lambda: node.counters["stale_subgoal"] > 0 and loop.stopped())
    assert "subgoal: the clock jumped back" in node._last_status, node._last_status
    n = len(loop.cmds)
    loop.run_commands(10)                        # it stays stopped (the timers still run after the jump)
    assert all(cmd == (0.0, 0.0) for cmd in loop.cmds[n:])
    loop.feed_subgoal = True                     # fresh subgoals on the new clock: it drives again
    assert loop.spin_until(loop.moving)
    loop.check_safe()


# ------------------------------------------------------------------------------------------------
# θ replaced while the controller drives

def _theta(K: int, scale: float = 1.0) -> Theta:
    rng = np.random.default_rng(K)
    return Theta(alpha=scale * rng.normal(size=(K, 2)), beta=np.full(K, 0.1), l=0.01)


def test_theta_replaced_while_driving_swaps_or_refuses_and_never_crashes(make_loop, ctx, tmp_path):
    a = save_theta(tmp_path / "a.yaml", _theta(1))
    b = save_theta(tmp_path / "b.yaml", _theta(2))
    truncated = tmp_path / "truncated.yaml"
    truncated.write_bytes(b.read_bytes()[: len(b.read_bytes()) // 2])
    nan = tmp_path / "nan.yaml"
    nan.write_text(b.read_text().split("\n", 1)[1].replace("0.1", ".nan", 1))   # no integrity line: a hand edit
    too_many = save_theta(tmp_path / "k9.yaml", _theta(9))
    amod = save_theta(tmp_path / "amod.yaml", Theta(alpha=np.ones((1, 2)), beta=np.zeros(1), l=0.0,
                                                    case_study="amod", input_names=["v_mps", "omega_radps"]))
    node = controller(ctx, theta_file=str(a))
    loop = make_loop(node=node, subgoal=lambda s: (s[0] + 1.0, 0.0))   # a subgoal that keeps ahead
    assert loop.spin_until(loop.moving)

    def set_theta(path) -> bool:
        result = node.set_parameters([Parameter("theta_file", value=str(path))])[0]
        loop.run_commands(10)                    # and it keeps driving
        assert loop.moving(), node._last_status
        return result.successful

    assert set_theta(b) and node.fop.theta.K == 2
    current = node.fop.theta
    for bad in (truncated, nan, too_many, amod, tmp_path / "missing.yaml", tmp_path):
        assert not set_theta(bad), bad
        assert node.fop.theta is current and node.get_parameter("theta_file").value == str(b)
    # the file in use is rewritten on disk: nothing changes until the parameter is set again
    b.write_text("garbage: [")
    loop.run_commands(10)
    assert node.fop.theta is current
    assert not set_theta(b) and node.fop.theta is current           # re-set: refused, old θ kept
    save_theta(b, _theta(3))                                         # rewritten with a good θ
    assert set_theta(b) and node.fop.theta.K == 3
    assert node.counters["solver_failures"] == 0
    loop.check_safe()


def test_theta_for_another_case_study_at_start_up_is_a_parameter_error(ctx, tmp_path):
    """Before: the FOP's own refusal escaped as a ValueError traceback (exit 1); now the one-line
    parameter error and exit status 2 like every other bad parameter."""
    amod = save_theta(tmp_path / "amod.yaml", Theta(alpha=np.ones((1, 2)), beta=np.zeros(1), l=0.0,
                                                    case_study="amod", input_names=["v_mps", "omega_radps"]))
    with pytest.raises(ParameterError, match=r"controller_node.theta_file: cannot use .*case study 'amod'"):
        controller(ctx, theta_file=str(amod))


def test_exit_deadline_ends_a_node_whose_clean_up_hangs_after_sigint():
    # a process whose main thread never gets back to its spin loop (here: a sleep that ignores the
    # stop flag) still ends after SIGINT, no earlier than the deadline, with the step it was in
    import signal
    import subprocess
    import sys

    deadline_s = 0.5
    script = (
        "import sys, time\n"
        "from hiopt_ros.nodes.process import ExitDeadline, StopSignal\n"
        "stop = StopSignal().install()\n"
        f"deadline = ExitDeadline({deadline_s}).arm()\n"
        "deadline.step = 'stuck in a test'\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    time.sleep(1.0)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60.0)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert elapsed >= deadline_s
    assert f"still 'stuck in a test' {deadline_s:g} s after the stop signal" in err
