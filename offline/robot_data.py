"""Robot demonstrations → per-sample data of the inverse problem (Problem 11) for Eq. 32.

Each expert command on /cmd_vel becomes one sample t: the state x_t is the latest odometry at or
before the command, the subgoal x̂_t the subgoal message nearest in time, the obstacles the latest
obstacle set (from the bag's MarkerArray, or fixed ones from a config file). With x_t fixed, Eq. 32a
without its ReLU terms is uᵀQu + cᵀu + const (``Fop.cost_terms``), and the constraints are rows
H u ≤ b: the bounds (32e–f) and each obstacle (32g) linearised at the expert action into a
supporting half-space (``Fop.constraint_rows``). Messages with non-finite values are dropped and
counted, as are commands that cannot be aligned, so the fit report can say what was used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .bags import ObstacleSeries, RobotBag, TopicSeries


N_BOUND_ROWS = 4  # Fop.constraint_rows: the bounds (32e–f) come first, then one row per obstacle


class DemonstrationError(Exception):
    """Demonstrations cannot be turned into samples; the message is one line meant for the user."""


@dataclass
class RobotSample:
    """One aligned decision of the expert: u_expert was chosen at `state` for `subgoal_xy`."""

    bag: str
    t_ns: int
    state: np.ndarray          # (3,) [x_m, y_m, yaw_rad]
    subgoal_xy: np.ndarray     # (2,) [m]
    u_expert: np.ndarray       # (2,) [v_mps, omega_radps]
    obstacles_xyr: np.ndarray  # (m, 3) [x_m, y_m, radius_m]


@dataclass
class AlignmentStats:
    """What happened to the messages of the bags on the way to samples (summed over bags)."""

    commands: int = 0                                       # /cmd_vel messages read
    aligned: int = 0                                        # commands that became samples
    nonfinite: dict[str, int] = field(default_factory=dict)  # messages dropped for NaN/inf, per topic
    undecodable: dict[str, int] = field(default_factory=dict)
    no_odom: int = 0          # no finite odometry within max_odom_age_s before the command
    no_subgoal: int = 0       # no finite subgoal within max_subgoal_skew_s of the command
    no_obstacles: int = 0     # no obstacle set at or before the command
    infeasible: int = 0       # expert action outside the FOP's (linearised) feasible set
    relaxed: int = 0          # samples whose obstacle half-space was moved onto the expert action
    max_odom_age_s: float = 0.0
    max_subgoal_skew_s: float = 0.0

    def merge(self, other: "AlignmentStats") -> None:
        for name in ("commands", "aligned", "no_odom", "no_subgoal", "no_obstacles", "infeasible", "relaxed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.nonfinite, other.nonfinite), (self.undecodable, other.undecodable)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.max_odom_age_s, self.max_subgoal_skew_s = other.max_odom_age_s, other.max_subgoal_skew_s

    @property
    def nonfinite_total(self) -> int:
        return sum(self.nonfinite.values())

    def reasons(self) -> str:
        """Why commands were not used, as one line."""
        parts = []
        if self.no_odom:
            parts.append(f"{self.no_odom} had no odometry within {self.max_odom_age_s:g} s before")
        if self.no_subgoal:
            parts.append(f"{self.no_subgoal} had no subgoal within ±{self.max_subgoal_skew_s:g} s")
        if self.no_obstacles:
            parts.append(f"{self.no_obstacles} had no obstacle message at or before them")
        if self.infeasible:
            parts.append(f"{self.infeasible} expert actions lay outside the FOP's constraints")
        for topic, n in sorted(self.nonfinite.items()):
            parts.append(f"{n} {topic} messages held NaN/inf and were dropped")
        for topic, n in sorted(self.undecodable.items()):
            parts.append(f"{n} {topic} messages could not be decoded")
        return "; ".join(parts) if parts else "no command was dropped"

    def as_dict(self) -> dict[str, Any]:
        return {"commands": self.commands, "aligned": self.aligned,
                "dropped_nonfinite_messages": dict(self.nonfinite),
                "dropped_undecodable_messages": dict(self.undecodable),
                "dropped_no_odom": self.no_odom, "dropped_no_subgoal": self.no_subgoal,
                "dropped_no_obstacles": self.no_obstacles, "dropped_infeasible": self.infeasible,
                "relaxed_obstacle_rows": self.relaxed}


def drop_nonfinite(series: TopicSeries) -> tuple[TopicSeries, int]:
    """The series without messages holding NaN/inf, and how many were dropped."""
    keep = np.all(np.isfinite(series.values), axis=1) if len(series) else np.zeros(0, bool)
    dropped = int(len(series) - keep.sum())
    return TopicSeries(series.topic, series.msgtype, series.columns, series.t_ns[keep], series.values[keep]), dropped


def _drop_nonfinite_obstacles(series: ObstacleSeries) -> tuple[ObstacleSeries, int]:
    keep = [i for i, o in enumerate(series.obstacles_xyr) if np.all(np.isfinite(o)) and np.all(o[:, 2] >= 0)]
    return (ObstacleSeries(series.topic, series.t_ns[keep], [series.obstacles_xyr[i] for i in keep]),
            len(series) - len(keep))


def align_bag(bag: RobotBag, *, obstacles_xyr: np.ndarray | None = None, max_odom_age_s: float = 0.1,
              max_subgoal_skew_s: float = 0.1) -> tuple[list[RobotSample], AlignmentStats]:
    """Samples of one bag: each finite /cmd_vel with its state, subgoal and obstacles.

    obstacles_xyr: fixed obstacles (m, 3) from a config file; None → the bag's obstacle messages.
    The state is the latest odometry at or before the command (the expert decided from it), at
    most max_odom_age_s old; the subgoal is the nearest subgoal message within max_subgoal_skew_s
    (an expert may publish it just before or after the command).
    """
    stats = AlignmentStats(max_odom_age_s=max_odom_age_s, max_subgoal_skew_s=max_subgoal_skew_s)
    stats.undecodable = dict(bag.undecodable)
    odom, n_odom = drop_nonfinite(bag.odom)
    cmd, n_cmd = drop_nonfinite(bag.cmd_vel)
    sub, n_sub = drop_nonfinite(bag.subgoal)
    for topic, n in ((odom.topic, n_odom), (cmd.topic, n_cmd), (sub.topic, n_sub)):
        if n:
            stats.nonfinite[topic] = stats.nonfinite.get(topic, 0) + n
    obs_series = None
    if obstacles_xyr is None:
        if bag.obstacles is None:
            raise DemonstrationError(f"{bag.path}: no obstacle topic was read and no obstacles were given")
        obs_series, n_obs = _drop_nonfinite_obstacles(bag.obstacles)
        if n_obs:
            stats.nonfinite[obs_series.topic] = stats.nonfinite.get(obs_series.topic, 0) + n_obs
    else:
        fixed = np.asarray(obstacles_xyr, dtype=float).reshape(-1, 3)

    stats.commands = len(bag.cmd_vel)
    max_age_ns = int(round(max_odom_age_s * 1e9))
    max_skew_ns = int(round(max_subgoal_skew_s * 1e9))
    samples: list[RobotSample] = []
    for t, u in zip(cmd.t_ns.tolist(), cmd.values):
        i = int(np.searchsorted(odom.t_ns, t, side="right")) - 1
        if i < 0 or t - int(odom.t_ns[i]) > max_age_ns:
            stats.no_odom += 1
            continue
        j = _nearest(sub.t_ns, t)
        if j < 0 or abs(int(sub.t_ns[j]) - t) > max_skew_ns:
            stats.no_subgoal += 1
            continue
        if obs_series is not None:
            k = int(np.searchsorted(obs_series.t_ns, t + max_skew_ns, side="right")) - 1
            if k < 0:
                stats.no_obstacles += 1
                continue
            obstacles = obs_series.obstacles_xyr[k]
        else:
            obstacles = fixed
        samples.append(RobotSample(bag=bag.path.name, t_ns=int(t), state=odom.values[i, :3].copy(),
                                   subgoal_xy=sub.values[j, :2].copy(), u_expert=np.asarray(u, float).copy(),
                                   obstacles_xyr=obstacles))
    stats.aligned = len(samples)
    return samples, stats


def _nearest(times: np.ndarray, t: int) -> int:
    """Index of the element of sorted `times` nearest to t (-1 if empty)."""
    if times.shape[0] == 0:
        return -1
    i = int(np.searchsorted(times, t))
    if i == 0:
        return 0
    if i == times.shape[0]:
        return i - 1
    return i - 1 if t - int(times[i - 1]) <= int(times[i]) - t else i


def inverse_samples(samples: Sequence[RobotSample], fop: Any, *, bound_tol: float = 1e-3,
                    relax_tol: float = 0.02, feas_tol: float = 1e-7) -> tuple[list[Any], list[int], int, int]:
    """Eq. 32 data of each sample for the inverse problem.

    Returns (InverseSample list, indices of the samples kept, number dropped as infeasible,
    number whose obstacle half-space was relaxed).

    fop provides `cost_terms(state, subgoal) -> (Q, c, const)` (Eq. 32a without ReLU terms and
    without l: uᵀQu + cᵀu + const) and `constraint_rows(state, u_lin, obstacles) -> (H, b)`
    (bounds 32e–f, obstacles 32g linearised at u_lin = the expert action). Expert actions a
    hair outside the bounds (≤ bound_tol, e.g. rounding in a driver) are clipped onto them.
    The expert MPC treats obstacles as soft constraints, so its action may enter a safety margin
    by millimetres: an obstacle row violated by at most relax_tol [m², the units of
    ‖p_{t+1} − p_j‖² − r_eff²] is moved to pass through the expert action (counted as relaxed);
    actions that violate a row by more are dropped and counted: no θ can make them optimal.
    """
    from .inverse import InverseSample

    out, kept, infeasible, relaxed = [], [], 0, 0
    lim = fop.config.limits
    lo, hi = lim.lower, lim.upper
    for idx, s in enumerate(samples):
        u = np.asarray(s.u_expert, float)
        if np.any(u < lo - bound_tol) or np.any(u > hi + bound_tol):
            infeasible += 1
            continue
        u = np.clip(u, lo, hi)
        Q, c, _ = fop.cost_terms(s.state, s.subgoal_xy)
        H, b = fop.constraint_rows(s.state, u, s.obstacles_xyr)
        excess = H @ u - b
        violated = excess > feas_tol * (1.0 + np.abs(b))
        if np.any(violated[:N_BOUND_ROWS]) or np.any(excess[violated] > relax_tol):
            infeasible += 1
            continue
        if np.any(violated):
            b = np.where(violated, H @ u, b)
            relaxed += 1
        out.append(InverseSample(c=np.asarray(c, float), Q=np.asarray(Q, float), u=u, H=H, b=b))
        kept.append(idx)
    return out, kept, infeasible, relaxed


def split_indices(n: int, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train / held-out index split (sorted), reproducible from seed."""
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {held_out_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_held = int(round(held_out_fraction * n))
    if held_out_fraction > 0 and n >= 2:
        n_held = min(max(n_held, 1), n - 1)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def fop_actions(fop: Any, samples: Iterable[RobotSample], progress: Any = None) -> tuple[np.ndarray, int]:
    """FOP actions at each sample's state, subgoal and obstacles; (actions (T, 2), number of failed solves)."""
    acts, failed = [], 0
    for s in samples:
        u, info = fop.solve(s.state, s.subgoal_xy, s.obstacles_xyr)
        failed += 0 if info.ok else 1
        acts.append(np.asarray(u, float))
        if progress is not None:
            progress.update(1)
    return np.asarray(acts).reshape(-1, 2), failed
