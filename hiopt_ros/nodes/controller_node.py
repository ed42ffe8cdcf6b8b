"""controller_node: the lower level. Solves FOP_θ (Eq. 32) at the control rate and publishes /cmd_vel.

Every cycle it publishes exactly one command. It is the FOP's action when all inputs are fresh and
the solve succeeded, and the stop command (0, 0) otherwise, with the reason logged (throttled) and
counted in the diagnostics: no/stale odometry, no/stale subgoal, no obstacle map yet, non-finite
state, solver failure. It never publishes NaN. When the robot is within ``arrive_radius_m`` of the
subgoal it holds still (a unicycle cannot settle on a point behind it). The command published last
is the FOP's previous command u_{t−1} (its c_du term, fop.py; no effect when θ has no c_du).

θ (the learned ReLU terms) comes from ``theta_file`` (config/theta/*.yaml, the schema of
hiopt_ros.control.theta). The solver is built once with ``relu_terms`` slots; loading another θ,
also at run time (``ros2 param set /controller_node theta_file ...``), never rebuilds it: the
validation callback loads and checks the file, the post-set callback swaps it in, so a rejected
parameter batch changes nothing.

The hot path (one control cycle) reuses one command message and one solve-time message and keeps
solve times in a fixed-size ring, so a cycle allocates no ROS messages (see ``python -m
hiopt_ros.bench --node-rate`` for the rates it sustains).
"""
from __future__ import annotations

import inspect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import SetParametersResult
from std_msgs.msg import Float64

from hiopt_ros.config import package_path
from hiopt_ros.control.fop import Fop, FopConfig
from hiopt_ros.control.theta import Theta, load_theta
from hiopt_ros.nodes.managed import CommandPublisher, ManagedNode, solve_time_values
from hiopt_ros.nodes.parameters import DriverConfig, ParameterError, Params, declare_driver
from hiopt_ros.nodes.process import node_main
from hiopt_ros.nodes.topics import (
    COMMAND_QOS,
    TOPIC_CMD_VEL,
    TOPIC_DIAGNOSTICS,
    TOPIC_OBSTACLES,
    TOPIC_ODOM,
    TOPIC_SOLVE_TIME,
    TOPIC_SUBGOAL,
)
from hiopt_ros.stdio import mute_c_stdout_for_good

from .watchdog import Watchdog

NAME = "controller_node"
#: True when this process runs the node (main): process-wide settings (stdout, GC) are then the node's to make
_OWN_PROCESS = False
_FOP_DEFAULTS = FopConfig()  # one source of truth for the FOP's default weights


@dataclass(frozen=True)
class ControllerConfig(DriverConfig):
    theta_file: str
    subgoal_timeout_s: float
    arrive_radius_m: float
    c_p: float
    c_h: float
    c_u: float
    relu_terms: int


def _plain_callback(method):
    """`method` as a function whose signature is precomputed: rclpy's executors call inspect.signature on
    a timer's callback every time it fires (to pass a TimerInfo), ~15 µs for a bound method, ~1 µs here."""
    def callback() -> None:
        method()
    callback.__signature__ = inspect.Signature()
    return callback


class ControllerNode(ManagedNode):
    """FOP_θ at the control rate; see the module docstring and README's topic table."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NAME, **kwargs)
        p = Params(self)
        self.cfg = ControllerConfig(
            **declare_driver(p, "FOP solve and /cmd_vel rate"),
            theta_file=p.text("theta_file", "", "fitted θ (config/theta/*.yaml; relative to the package share "
                                                 "folder); empty: the unchanged FOP",
                              read_only=False),
            subgoal_timeout_s=p.positive("subgoal_timeout_s", 1.0, "stop when /hiopt/subgoal is older than this [s]"),
            arrive_radius_m=p.number("arrive_radius_m", 0.05, "hold still within this distance of the subgoal [m]",
                                     min_value=0.0),
            c_p=p.number("c_p", _FOP_DEFAULTS.c_p, "position weight of Eq. 32a", min_value=0.0),
            c_h=p.number("c_h", _FOP_DEFAULTS.c_h, "heading weight of Eq. 32a", min_value=0.0),
            c_u=p.number("c_u", _FOP_DEFAULTS.c_u, "input weight of Eq. 32a", min_value=0.0),
            relu_terms=p.integer("relu_terms", _FOP_DEFAULTS.K, "ReLU slots K the solver is built with (structural)",
                                 min_value=0),
        )
        cfg = self.cfg
        theta = None
        if cfg.theta_file:
            theta = self._load_theta(p, cfg.theta_file)
        p.check()

        self.fop = Fop(FopConfig(**cfg.model.solver_kwargs(), K=cfg.relu_terms, c_p=cfg.c_p, c_h=cfg.c_h,
                                 c_u=cfg.c_u))
        if theta is not None:
            try:   # what only the FOP can check (another case study, input order, unknown weights)
                self.fop.set_theta(theta)
            except ValueError as exc:
                raise ParameterError(f"invalid parameter(s):\n  {NAME}.theta_file: cannot use "
                                     f"{cfg.theta_file!r}: {exc}") from None

        self.watchdog = Watchdog(self.watchdog_clock(), {"odometry": cfg.odom_timeout_s,
                                                         "subgoal": cfg.subgoal_timeout_s})
        self.subgoal: np.ndarray | None = None
        self.counters = {"cycles": 0, "stops": 0, "solver_failures": 0, "solver_fallbacks": 0, "stale_odometry": 0,
                         "stale_subgoal": 0, "frozen_odometry": 0, "nonfinite_state": 0, "nonfinite_subgoal": 0,
                         "waiting": 0, "at_subgoal": 0,
                         "rejected_subgoals": 0}
        self._solve_times_us: deque[float] = deque(maxlen=1000)
        self._last_status = "starting"
        self._last_reason = ""
        self._u_cmd = (0.0, 0.0)   # the command published last: u_{t−1} of the FOP's c_du term (fop.py)
        self._validated_theta: tuple[str, object] | None = None   # (path, θ) checked by on_validate_parameters

        # one message of each kind, refilled every cycle (no allocation on the hot path)
        self.cmd = CommandPublisher(self, cfg.enable_stamped_cmd_vel, cfg.base_frame)
        self._solve_time_msg = Float64()
        self.solve_time_pub = self.create_publisher(Float64, TOPIC_SOLVE_TIME, COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self.subscribe_robot_state(self.watchdog)
        self.create_subscription(PointStamped, TOPIC_SUBGOAL, self.on_subgoal, COMMAND_QOS)
        self.create_timer(1.0 / cfg.control_rate_hz, _plain_callback(self.on_control))
        self.create_timer(1.0 / cfg.diagnostics_rate_hz, _plain_callback(self.on_diagnostics))
        self.add_on_set_parameters_callback(self.on_validate_parameters)
        self.add_post_set_parameters_callback(self.on_parameters_set)
        if _OWN_PROCESS:
            # the control cycle's overheads (python -m hiopt_ros.bench --node-rate --profile): acados' prints
            # go to /dev/null for good (main) instead of fd 1 being muted around every solve, and what
            # start-up allocated is moved out of the collector's generations, so a collection walks only
            # what the cycles allocate
            self.fop.mute_solves = False
            import gc
            gc.collect()
            gc.freeze()
        self.get_logger().info(
            f"FOP ready (K={cfg.relu_terms}, M={cfg.model.max_obstacles}, "
            f"θ: {cfg.theta_file or 'none, unchanged FOP'}), {cfg.control_rate_hz:g} Hz, "
            f"{'TwistStamped' if cfg.enable_stamped_cmd_vel else 'Twist'} on {TOPIC_CMD_VEL}")
        self.start_lifecycle(cfg.autostart)

    def _load_theta(self, p: Params | None, path: str):
        try:
            theta = load_theta(package_path(path))
        except Exception as exc:
            if p is None:
                raise
            p.error("theta_file", f"cannot load {path!r}: {exc}")
            return None
        if theta.K > self.cfg.relu_terms:
            msg = f"{path!r} has {theta.K} ReLU terms but relu_terms={self.cfg.relu_terms}"
            if p is None:
                raise ValueError(msg)
            p.error("theta_file", msg)
            return None
        return theta

    # ---------------------------------------------------------------- inputs
    def on_subgoal(self, msg: PointStamped) -> None:
        if msg.header.frame_id != self.cfg.odom_frame:
            # a point in another frame would be steered to as if it were in odom (no tf lookup here):
            # drop it, so a planner publishing in the wrong frame makes the robot stop, not wander
            self.counters["rejected_subgoals"] += 1
            self.get_logger().error(f"rejecting subgoals in frame {msg.header.frame_id!r}: the FOP works in "
                                    f"{self.cfg.odom_frame!r}", throttle_duration_sec=2.0)
            return
        self.subgoal = np.array([msg.point.x, msg.point.y])
        self.watchdog.feed("subgoal")

    def on_validate_parameters(self, params) -> SetParametersResult:
        """Validation only: a new theta_file must load and fit the solver's K slots. The other
        parameters are read-only (their descriptors say so; rclpy refuses them before this runs)."""
        for prm in params:
            if prm.name == "theta_file":
                try:
                    theta = self._load_theta(None, prm.value) if prm.value else None
                    if theta is not None:
                        self.fop.check_theta(theta)   # so the swap after acceptance cannot fail
                except Exception as exc:
                    self.get_logger().error(f"refusing theta_file {prm.value!r}, keeping "
                                            f"{self.get_parameter('theta_file').value or 'the unchanged FOP'}: {exc}")
                    return SetParametersResult(successful=False, reason=f"theta_file: {exc}")
                self._validated_theta = (prm.value, theta)
        return SetParametersResult(successful=True)

    def on_parameters_set(self, params) -> None:
        """The accepted batch is applied: swap θ in (no rebuild)."""
        for prm in params:
            if prm.name == "theta_file" and self._validated_theta and self._validated_theta[0] == prm.value:
                theta = self._validated_theta[1]
                self.fop.set_theta(theta if theta is not None else Theta.zero(0))
                self._validated_theta = None
                self.get_logger().info(f"θ now {prm.value or 'none (unchanged FOP)'}")

    # ---------------------------------------------------------------- control cycle
    def on_control(self) -> None:
        if not self.active:
            return
        self.counters["cycles"] += 1
        v, omega, status, reason, counter = 0.0, 0.0, "stopped", "", None
        stale = self.watchdog.stale()
        if self.state is None:
            reason, counter = self.waiting_for("odometry", [TOPIC_ODOM]), "waiting"
        elif self.subgoal is None:
            reason, counter = self.waiting_for("a subgoal", [TOPIC_SUBGOAL]), "waiting"
        elif self.obstacles is None:
            reason, counter = self.waiting_for("obstacles", [TOPIC_OBSTACLES]), "waiting"
        elif "odometry" in stale:
            reason, counter = self.odometry_fault(stale["odometry"])
        elif "subgoal" in stale:
            reason, counter = self.watchdog.describe("subgoal", stale["subgoal"], "subgoal_timeout_s"), "stale_subgoal"
        elif not np.all(np.isfinite(self.state)):
            reason, counter = f"non-finite state {self.state.tolist()}", "nonfinite_state"
        elif not np.all(np.isfinite(self.subgoal)):
            reason, counter = f"non-finite subgoal {self.subgoal.tolist()}", "nonfinite_subgoal"
        elif math.dist(self.state[:2], self.subgoal) <= self.cfg.arrive_radius_m:
            status, counter = "at subgoal", "at_subgoal"
        else:
            try:
                u, info = self.fop.solve(self.state, self.subgoal, self.obstacles, u_prev=self._u_cmd)
            except ValueError as exc:  # e.g. non-finite subgoal
                u, info = None, None
                reason, counter = f"bad FOP input: {exc}", "solver_failures"
            if info is not None:
                self._solve_time_msg.data = float(info.solve_time_us)
                self.solve_time_pub.publish(self._solve_time_msg)
                self._solve_times_us.append(info.solve_time_us)
                if info.ok and np.all(np.isfinite(u)):
                    v, omega, status = float(u[0]), float(u[1]), "ok"
                    if info.fallback:  # solved, by the BALANCE build (fop.py): counted, not a stop
                        self.counters["solver_fallbacks"] += 1
                else:
                    reason, counter = info.message, "solver_failures"
        self.publish_command(v, omega)
        self._u_cmd = (v, omega)
        if counter is not None:
            self.counters[counter] += 1
        if reason:
            self.counters["stops"] += 1
            status = reason
            # (rclpy wants one severity per call site)
            if counter != "waiting":
                self.get_logger().warning(f"stop: {reason}", throttle_duration_sec=1.0)
            elif reason != self._last_reason:
                self.get_logger().info(f"stop: {reason}")
        elif self._last_reason:
            self.get_logger().info("driving")
        self._last_reason, self._last_status = reason, status

    def publish_command(self, v: float, omega: float) -> None:
        self.cmd.publish(v, omega)

    def on_diagnostics(self) -> None:
        failing = self._last_status not in ("ok", "at subgoal") and not self._last_status.startswith("waiting")
        self.publish_diagnostics("FOP", DiagnosticStatus.WARN if failing else DiagnosticStatus.OK, self._last_status,
                                 self.diagnostics_values(**solve_time_values(self._solve_times_us)))


_main = node_main(ControllerNode)
#: environment variable: when set, the node runs under cProfile (CPU time) and writes its stats to this file at exit
#: (``python -m hiopt_ros.bench --node-rate --profile DIR`` sets it; pstats reads the file)
PROFILE_ENV = "HIOPT_PROFILE_OUT"


def main(args: list[str] | None = None) -> int:
    """Run the controller node in this process until SIGINT/SIGTERM; the exit status (under cProfile when
    $HIOPT_PROFILE_OUT is set). Native stdout goes to /dev/null (:func:`hiopt_ros.stdio.mute_c_stdout_for_good`)."""
    import os

    global _OWN_PROCESS
    _OWN_PROCESS = True
    mute_c_stdout_for_good()
    out = os.environ.get(PROFILE_ENV)
    if not out:
        return _main(args)
    import cProfile
    import time

    prof = cProfile.Profile(time.process_time)   # CPU time: the executor's waiting is not counted
    prof.enable()
    try:
        return _main(args)
    finally:
        prof.disable()
        prof.dump_stats(out)


if __name__ == "__main__":
    raise SystemExit(main())
