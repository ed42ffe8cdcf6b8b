"""PyBullet world of the robot task: a differential-drive robot among the course's static cylinders.

Robot choice. We use our own small URDF (``sim/urdf/diffbot.urdf``), not pybullet_data's Husky:
the Husky is a four-wheel skid-steer vehicle, so turning needs its tyres to slip sideways and the
yaw rate it reaches for a given wheel-speed difference depends on friction and load (it under-turns
by a varying factor), which makes (v, ω) tracking poor and model-dependent. Our robot is a true
differential drive — two driven wheels on one axle plus two frictionless ball casters — so the
unicycle model of the controller (Eq. 32b-d) is the robot's actual no-slip kinematics (the wheels
collide as spheres, so each touches the ground at one point in its mid-plane and the effective
track width is exactly the axle's; cylinders touch at a rim and bias the turn rate). Its
collision footprint is a cylinder of radius ``Course.robot_radius_m`` (the URDF's 0.30 m footprint
is scaled with ``globalScaling``), so a PyBullet contact with an obstacle happens exactly when
``Course.clearance(pose)`` reaches 0, and ``collided`` agrees with the geometry the planner and the
FOP's obstacle constraint (32g) use.

Commands. ``apply_command(v, ω)`` sets the wheel velocity motors to the no-slip differential-drive
speeds ω_L = (v − ω·b/2)/r, ω_R = (v + ω·b/2)/r (r wheel radius, b track width, both read from the
loaded model) with at most ``MAX_WHEEL_TORQUE_NM`` per wheel. The command holds until the next call.

Energy. ``energy_j`` is the mechanical work done by the wheel motors since reset,
E = ∫ Σ_wheels |τ_i(t)·ω_i(t)| dt  [J], integrated with the rectangle rule at every physics step from
the applied motor torque τ_i (``getJointState(...)[3]``) and the joint velocity ω_i after the step.
The absolute value counts braking work as spent (no regeneration), so accelerating, braking,
holding against a slope or pushing into an obstacle all cost energy, and standing still costs ~0.

Determinism. ``reset`` rebuilds the whole PyBullet simulation (``resetSimulation``), so the same
commands after a reset give bitwise the same trajectory, in any World and in any process. The
physics has no randomness; ``seed`` seeds ``np_random``, a generator kept for callers that want
reproducible perturbations (none are applied here).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pybullet as p

from hiopt_ros.conversions import OBSTACLE_HEIGHT_M
from hiopt_ros.course import Course

URDF_PATH = Path(__file__).resolve().parent / "urdf" / "diffbot.urdf"
URDF_FOOTPRINT_RADIUS_M = 0.30  # radius of the base cylinder in diffbot.urdf, before scaling


class World:
    """A PyBullet differential-drive robot on a plane with the course's static cylinders.

    Args:
        course: start pose, goal, obstacles [x_m, y_m, r_m] and robot radius.
        physics_rate_hz: fixed physics step rate; ``step(dt_s)`` runs an integer number of these
            steps and carries the remainder over, so simulated time is exact over many calls.
        gui: open the PyBullet GUI instead of the headless ``p.DIRECT`` backend.
        seed: seeds ``np_random`` (the physics itself is deterministic).

    Each World owns a private physics client, so several Worlds coexist in one process. Use it as a
    context manager or call ``close()``.
    """

    # Per wheel motor: ≈ 6 m/s² on the 9.1 kg robot, so a 0.5 m/s step settles in ~85 ms (4 periods
    # of a 50 Hz controller). Kept below what the tyres can transmit (wheel μ = 2 in the URDF; Bullet's
    # friction solver lets μ = 1 tyres spin under hard yaw reversals at this torque): the motor, not
    # grip, limits acceleration, wheels do not slip, and braking work shows up in energy_j.
    MAX_WHEEL_TORQUE_NM = 2.0
    OBSTACLE_HEIGHT_M = OBSTACLE_HEIGHT_M   # the markers draw the same cylinders
    GROUND_FRICTION = 1.0
    _WHEEL_JOINTS = ("left_wheel_joint", "right_wheel_joint")
    _CASTER_LINKS = ("front_caster_link", "rear_caster_link")

    def __init__(self, course: Course, physics_rate_hz: float = 240.0, gui: bool = False,
                 seed: int = 0) -> None:
        if not (math.isfinite(physics_rate_hz) and physics_rate_hz > 0):
            raise ValueError(f"physics_rate_hz must be a finite number > 0, got {physics_rate_hz!r}")
        self.course = course
        self.physics_rate_hz = float(physics_rate_hz)
        self.dt_physics_s = 1.0 / self.physics_rate_hz
        self._client = p.connect(p.GUI if gui else p.DIRECT)
        if self._client < 0:
            raise RuntimeError("pybullet.connect failed (is another GUI client already open?)")
        self._seed = seed
        self.reset(seed)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Disconnect the private physics client (idempotent)."""
        if self._client is not None and self._client >= 0:
            try:
                p.disconnect(physicsClientId=self._client)
            except p.error:
                pass
        self._client = None

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def client_id(self) -> int:
        if self._client is None:
            raise RuntimeError("World is closed")
        return self._client

    def reset(self, seed: int | None = None) -> None:
        """Rebuild the simulation with the robot at rest at ``course.start_xyyaw``; zero time and metrics."""
        if seed is not None:
            self._seed = seed
        self.np_random = np.random.default_rng(self._seed)
        cid = self.client_id
        p.resetSimulation(physicsClientId=cid)
        p.setGravity(0.0, 0.0, -9.81, physicsClientId=cid)
        p.setTimeStep(self.dt_physics_s, physicsClientId=cid)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=cid)

        plane = p.createMultiBody(
            baseMass=0.0,
            baseCollisionShapeIndex=p.createCollisionShape(p.GEOM_PLANE, physicsClientId=cid),
            physicsClientId=cid)
        p.changeDynamics(plane, -1, lateralFriction=self.GROUND_FRICTION, physicsClientId=cid)
        self._obstacle_ids = [self._add_cylinder(x, y, r) for x, y, r in self.course.obstacles_xyr]

        scale = self.course.robot_radius_m / URDF_FOOTPRINT_RADIUS_M
        x0, y0, yaw0 = self.course.start_xyyaw
        self._robot = p.loadURDF(str(URDF_PATH), basePosition=[x0, y0, 1.0],
                                 baseOrientation=p.getQuaternionFromEuler([0.0, 0.0, yaw0]),
                                 globalScaling=scale, flags=p.URDF_USE_IMPLICIT_CYLINDER,
                                 physicsClientId=cid)
        names = {p.getJointInfo(self._robot, j, physicsClientId=cid)[1].decode(): j
                 for j in range(p.getNumJoints(self._robot, physicsClientId=cid))}
        self._wheels = [names[n] for n in self._WHEEL_JOINTS]
        for link in self._CASTER_LINKS:  # ball casters: no friction in any direction
            p.changeDynamics(self._robot, names[link.replace("_link", "_joint")], lateralFriction=0.0,
                             rollingFriction=0.0, spinningFriction=0.0, physicsClientId=cid)
        # Wheel radius and track width from the loaded (scaled) model, not from constants.
        self.wheel_radius_m = float(p.getCollisionShapeData(
            self._robot, self._wheels[0], physicsClientId=cid)[0][3][0])
        assert p.getCollisionShapeData(self._robot, self._wheels[0], physicsClientId=cid)[0][2] == p.GEOM_SPHERE
        wl, wr = (np.array(p.getLinkState(self._robot, j, physicsClientId=cid)[4])
                  for j in self._wheels)
        self.track_width_m = float(np.linalg.norm(wl - wr))
        # Place the axle at wheel-radius height so the wheels touch the ground at t = 0.
        p.resetBasePositionAndOrientation(
            self._robot, [x0, y0, self.wheel_radius_m],
            p.getQuaternionFromEuler([0.0, 0.0, yaw0]), physicsClientId=cid)

        self._steps = 0
        self._requested_s = 0.0
        self._energy_j = 0.0
        self._collided = False
        self._min_clearance_m = self.course.clearance(self.course.start_xyyaw[:2])
        self.command = np.zeros(2)
        self.apply_command(0.0, 0.0)

    def _add_cylinder(self, x: float, y: float, r: float) -> int:
        cid, h = self.client_id, self.OBSTACLE_HEIGHT_M
        col = p.createCollisionShape(p.GEOM_CYLINDER, radius=r, height=h, physicsClientId=cid)
        vis = p.createVisualShape(p.GEOM_CYLINDER, radius=r, length=h,
                                  rgbaColor=[0.8, 0.3, 0.2, 1.0], physicsClientId=cid)
        return p.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col,
                                 baseVisualShapeIndex=vis, basePosition=[x, y, h / 2],
                                 physicsClientId=cid)

    # ------------------------------------------------------------------ commands and stepping
    def apply_command(self, v_mps: float, omega_radps: float) -> None:
        """Drive the wheel velocity motors for body speed v [m/s] and yaw rate ω [rad/s] until the next call."""
        for name, val in (("v_mps", v_mps), ("omega_radps", omega_radps)):
            try:
                ok = math.isfinite(float(val))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{name} must be a finite number, got {val!r}")
        v, w = float(v_mps), float(omega_radps)
        half_b, r = 0.5 * self.track_width_m, self.wheel_radius_m
        targets = [(v - w * half_b) / r, (v + w * half_b) / r]  # left, right
        p.setJointMotorControlArray(self._robot, self._wheels, p.VELOCITY_CONTROL,
                                    targetVelocities=targets,
                                    forces=[self.MAX_WHEEL_TORQUE_NM] * 2,
                                    physicsClientId=self.client_id)
        self.command = np.array([v, w])

    def step(self, dt_s: float) -> int:
        """Advance the physics by dt_s; returns the number of physics steps taken.

        Runs round-down((requested time so far) · rate) − (steps so far) fixed steps, so the remainder
        of one call is carried into the next and ``time_s`` tracks the requested time to < 1 step.
        """
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise ValueError(f"dt_s must be a finite number >= 0, got {dt_s!r}")
        self._requested_s += dt_s
        n = int(math.floor(self._requested_s * self.physics_rate_hz + 1e-6)) - self._steps
        cid = self.client_id
        for _ in range(max(n, 0)):
            p.stepSimulation(physicsClientId=cid)
            self._steps += 1
            for _, qd, _, tau in p.getJointStates(self._robot, self._wheels, physicsClientId=cid):
                self._energy_j += abs(tau * qd) * self.dt_physics_s
            xy = p.getBasePositionAndOrientation(self._robot, physicsClientId=cid)[0][:2]
            self._min_clearance_m = min(self._min_clearance_m, self.course.clearance(xy))
            if not self._collided:
                # Bullet also reports manifold points still a few mm apart: count only touching ones.
                self._collided = any(c[2] in self._obstacle_ids and c[8] <= 0.0 for c in
                                     p.getContactPoints(bodyA=self._robot, physicsClientId=cid))
        return max(n, 0)

    # ------------------------------------------------------------------ state and metrics
    def pose(self) -> np.ndarray:
        """[x_m, y_m, yaw_rad] of base_link (the axle midpoint), yaw in (−π, π]."""
        pos, quat = p.getBasePositionAndOrientation(self._robot, physicsClientId=self.client_id)
        yaw = p.getEulerFromQuaternion(quat)[2]
        return np.array([pos[0], pos[1], yaw])

    def velocity(self) -> np.ndarray:
        """[v_mps along the heading, omega_radps about world z]."""
        cid = self.client_id
        lin, ang = p.getBaseVelocity(self._robot, physicsClientId=cid)
        yaw = self.pose()[2]
        return np.array([lin[0] * math.cos(yaw) + lin[1] * math.sin(yaw), ang[2]])

    @property
    def time_s(self) -> float:
        """Simulated time since reset [s] (an integer number of physics steps)."""
        return self._steps * self.dt_physics_s

    @property
    def collided(self) -> bool:
        """True once any robot link has touched any obstacle since reset (latched)."""
        return self._collided

    @property
    def energy_j(self) -> float:
        """Wheel-motor mechanical work since reset, ∫ Σ|τ·ω| dt [J] (see module docstring)."""
        return self._energy_j

    @property
    def min_clearance_m(self) -> float:
        """Running minimum of ``Course.clearance(pose)`` over physics steps since reset [m]."""
        return self._min_clearance_m

    @property
    def obstacles_xyr(self) -> np.ndarray:
        """(M, 3) obstacle cylinders [x_m, y_m, r_m] (a copy of the course's)."""
        return self.course.obstacles_xyr.copy()
