"""Robot demonstrations → per-sample data of the inverse problem (Problem 11) for Eq. 32.

Each expert command on /cmd_vel becomes one sample t: the state x_t is the latest odometry at or
before the command, the subgoal x̂_t the subgoal message nearest in time, the obstacles the latest
obstacle set (from the bag's MarkerArray, or fixed ones from a config file). With x_t fixed, Eq. 32a
without its ReLU terms is uᵀQu + cᵀu + const (``Fop.cost_terms``), and the constraints are rows
H u ≤ b: the bounds (32e–f) and each obstacle (32g) linearised at the expert action into a
supporting half-space (``Fop.constraint_rows``). Messages with non-finite values are dropped and
counted, as are commands that cannot be aligned, so the fit report can say what was used.

Episodes: a bag from `offline.demos` carries one /hiopt/episode record per episode (its time span
and whether the expert reached the goal); other bags are cut into episodes at gaps of more than
EPISODE_GAP_S between commands (success unknown). Splits for validation are by episode, never by
sample. Subgoals: `SubgoalSpec` says how x̂_t is defined — the recorded /hiopt/subgoal, or the
expert's planned position k steps ahead from /hiopt/expert_plan (any k, chosen by offline.fit).
Learned weights: `WEIGHT_NAMES` of Eq. 32a (c_p, c_h, c_u, and the extension's c_du on
‖u − u_{t−1}‖²) can be learned with the ReLU terms; each is one linear-quadratic feature of the
generic inverse problem (its unit-weight piece of `Fop.cost_terms`), its learned value the change
from the FOP's own weight. The previous command u_{t−1} of a sample (`RobotSample.u_prev`) is the
expert's previous command in the same episode (the stop command at an episode's first sample).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from hiopt_ros.bag_reader import ObstacleSeries, RobotBag, TopicSeries, bag_topics, read_topic_raw
from hiopt_ros.bags import typestore

from .inverse import Features, InverseSample

N_BOUND_ROWS = 4  # Fop.constraint_rows: the bounds (32e–f) come first, then one row per obstacle
#: commands further apart than this belong to different episodes (bags without /hiopt/episode)
EPISODE_GAP_S = 1.0
#: the cost weights of Eq. 32a (and the extension's c_du), in Fop.set_weights' order (hiopt_ros.control.fop)
WEIGHT_NAMES = ("c_p", "c_h", "c_u", "c_du")
#: weights whose box is absolute (the FOP's own value may be 0): name -> (lowest, highest)
ABSOLUTE_BOXES = {"c_du": (0.0, 2.0)}
TOPIC_PLAN = "/hiopt/expert_plan"
TOPIC_EPISODE = "/hiopt/episode"


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
    episode: str = ""          # "<bag>#<index>": the episode the decision belongs to
    reached: bool | None = None  # did the expert reach the goal in that episode (None: not recorded)
    plan_xy: np.ndarray | None = None  # (N+1, 2) the expert's planned positions [m], if recorded
    seed: int | None = None    # the course seed of the episode (offline.demos --seed), if recorded
    u_prev: np.ndarray = field(default_factory=lambda: np.zeros(2))  # the expert's previous command in the episode


@dataclass(frozen=True)
class SubgoalSpec:
    """How a fit defines the subgoal x̂_t of a demonstration.

    definition "recorded": the bag's subgoal message (offline.demos: the MPC's plan
    `subgoal_steps` ahead); "expert_plan": the expert's planned position `steps_ahead` prediction
    steps ahead (needs /hiopt/expert_plan). Recorded in the θ file so the stack can run the way
    it was fitted (a geometric planner's look-ahead ≈ steps_ahead·Ts·v_max).
    """
    definition: str = "recorded"
    steps_ahead: int | None = None

    def __post_init__(self) -> None:
        if self.definition not in ("recorded", "expert_plan"):
            raise ValueError(f"subgoal definition must be 'recorded' or 'expert_plan', got {self.definition!r}")
        if self.definition == "expert_plan" and not (isinstance(self.steps_ahead, int) and self.steps_ahead >= 1):
            raise ValueError(f"an expert_plan subgoal needs steps_ahead >= 1, got {self.steps_ahead!r}")

    @classmethod
    def parse(cls, text: str) -> "SubgoalSpec":
        """'recorded' or 'plan:K' (K prediction steps ahead)."""
        text = text.strip()
        if text == "recorded":
            return cls()
        if text.startswith("plan:"):
            try:
                return cls("expert_plan", int(text[5:]))
            except ValueError:
                pass
        raise ValueError(f"subgoal must be 'recorded' or 'plan:K' with an integer K >= 1, got {text!r}")

    def label(self) -> str:
        return "recorded" if self.definition == "recorded" else f"plan:{self.steps_ahead}"

    def to_dict(self, Ts_s: float, v_max_mps: float) -> dict[str, Any]:
        if self.definition == "recorded":
            return {"definition": "recorded", "topic": "/hiopt/subgoal"}
        return {"definition": "expert_plan", "steps_ahead": self.steps_ahead, "Ts_s": Ts_s,
                "lookahead_m": round(self.steps_ahead * Ts_s * v_max_mps, 6)}

    def apply(self, samples: Sequence["RobotSample"]) -> list["RobotSample"]:
        """The samples with x̂_t defined this way (new objects; the input is not changed)."""
        from dataclasses import replace
        if self.definition == "recorded":
            return list(samples)
        out = []
        for s in samples:
            if s.plan_xy is None:
                raise DemonstrationError(f"{s.bag}: subgoal {self.label()} needs the expert's plan on {TOPIC_PLAN}, "
                                         f"which this bag does not have; record with `python -m offline.demos` "
                                         f"or use --subgoal recorded")
            k = min(self.steps_ahead, len(s.plan_xy) - 1)
            out.append(replace(s, subgoal_xy=np.asarray(s.plan_xy[k], float).copy()))
        return out


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


def _deserialize(path, topic: str) -> list[tuple[int, Any]]:
    """(t_ns, message) of one topic; [] if the bag does not have it."""
    if topic not in bag_topics(path):
        return []
    store = typestore()
    out = []
    for _, msgtype, t, raw in read_topic_raw(path, [topic]):
        try:
            out.append((t, store.deserialize_cdr(raw, msgtype)))
        except Exception:  # an undecodable message is skipped like a NaN one
            continue
    return out


def read_plans(path, topic: str = TOPIC_PLAN) -> tuple[np.ndarray, list[np.ndarray]]:
    """The expert's plans: times (P,) and (N+1, 2) planned positions each (finite ones only)."""
    times, plans = [], []
    for t, msg in _deserialize(path, topic):
        xy = np.array([[ps.pose.position.x, ps.pose.position.y] for ps in msg.poses], float).reshape(-1, 2)
        if len(xy) and np.all(np.isfinite(xy)):
            times.append(t)
            plans.append(xy)
    return np.array(times, dtype=np.int64), plans


def read_episodes(path, topic: str = TOPIC_EPISODE) -> list[dict[str, Any]]:
    """The episode records of a bag from offline.demos (JSON on /hiopt/episode), in time order."""
    import json

    out = []
    for _, msg in _deserialize(path, topic):
        try:
            rec = json.loads(msg.data)
        except (TypeError, ValueError):
            continue
        if isinstance(rec, dict) and {"t_start_ns", "t_end_ns", "reached"} <= set(rec):
            out.append(rec)
    return sorted(out, key=lambda r: r["t_start_ns"])


def _episode_labels(bag_name: str, times: np.ndarray, records: list[dict[str, Any]]
                    ) -> tuple[list[str], list[bool | None], list[int | None]]:
    """Episode label, success and course seed of each command time (records from read_episodes,
    else episodes cut at time gaps, success and seed unknown)."""
    if records:
        starts = np.array([int(r["t_start_ns"]) for r in records])
        labels, reached, seeds = [], [], []
        for t in times.tolist():
            i = int(np.searchsorted(starts, t, side="right")) - 1
            if i >= 0 and t <= int(records[i]["t_end_ns"]):
                labels.append(f"{bag_name}#{records[i].get('episode', i)}")
                reached.append(bool(records[i]["reached"]))
                seed = records[i].get("seed")
                seeds.append(int(seed) if isinstance(seed, (int, float)) else None)
            else:
                labels.append(f"{bag_name}#unrecorded")
                reached.append(None)
                seeds.append(None)
        return labels, reached, seeds
    gaps = np.r_[0, np.cumsum(np.diff(times) > EPISODE_GAP_S * 1e9)] if len(times) else np.zeros(0, int)
    return [f"{bag_name}#{int(g)}" for g in gaps], [None] * len(times), [None] * len(times)


def align_bag(bag: RobotBag, *, obstacles_xyr: np.ndarray | None = None, max_odom_age_s: float = 0.1,
              max_subgoal_skew_s: float = 0.1, plan_topic: str | None = TOPIC_PLAN,
              episode_topic: str | None = TOPIC_EPISODE) -> tuple[list[RobotSample], AlignmentStats]:
    """Samples of one bag: each finite /cmd_vel with its state, subgoal, obstacles, episode and plan.

    obstacles_xyr: fixed obstacles (m, 3) from a config file; None → the bag's obstacle messages.
    The state is the latest odometry at or before the command (the expert decided from it), at
    most max_odom_age_s old; the subgoal is the nearest subgoal message within max_subgoal_skew_s
    (an expert may publish it just before or after the command), and so is the expert's plan when
    the bag has plan_topic. Episodes come from episode_topic's records, else from time gaps.
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
    times = np.array([s.t_ns for s in samples], dtype=np.int64)
    labels, reached, seeds = _episode_labels(bag.path.name, times, read_episodes(bag.path, episode_topic)
                                             if episode_topic else [])
    plan_t, plans = read_plans(bag.path, plan_topic) if plan_topic else (np.zeros(0, np.int64), [])
    prev_episode, prev_u = None, np.zeros(2)
    for s, lab, ok, seed in zip(samples, labels, reached, seeds):
        s.episode, s.reached, s.seed = lab, ok, seed
        s.u_prev = prev_u.copy() if lab == prev_episode else np.zeros(2)
        prev_episode, prev_u = lab, s.u_expert
        j = _nearest(plan_t, s.t_ns)
        if j >= 0 and abs(int(plan_t[j]) - s.t_ns) <= max_skew_ns:
            s.plan_xy = plans[j]
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


def cost_pieces(fop: Any, state, subgoal_xy, u_prev=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Eq. 32a split by weight: {name: (diag R (2,), q (2,))} with uᵀQu + cᵀu = Σ_w w·(uᵀ diag(R) u + qᵀu) + const.

    Each piece is Fop.cost_terms at that weight 1 and the others 0 (Eq. 32a is linear in its
    weights), so the pieces are exactly the controller's cost. The FOP's weights are restored.
    """
    cfg = fop.config
    saved = tuple(getattr(cfg, w) for w in WEIGHT_NAMES)
    pieces = {}
    try:
        for name in WEIGHT_NAMES:
            fop.set_weights(**{w: (1.0 if w == name else 0.0) for w in WEIGHT_NAMES})
            Q, c, _ = fop.cost_terms(state, subgoal_xy, u_prev)
            pieces[name] = (np.diag(Q).copy(), np.asarray(c, float).copy())
    finally:
        fop.set_weights(*saved)
    return pieces


def weight_features(learn: Sequence[str], fop: Any, max_factor: float = 20.0,
                    bounds: dict[str, tuple[float, float]] | None = None):
    """The Features of learning the weights `learn` (subset of WEIGHT_NAMES) as changes Δ_w of the
    FOP's own weight w: Δ_w ∈ [−w, (max_factor − 1)·w], so the weight stays in [0, max_factor·w] and
    the FOP strongly convex (l > 0); c_du (own weight 0) in ABSOLUTE_BOXES. `bounds` {name: (lo, hi)}
    replaces a weight's box by [lo, hi] (absolute values, e.g. a floor on c_u). At least one weight
    must stay fixed (the cost's scale)."""
    learn = tuple(learn)
    bad = [w for w in learn if w not in WEIGHT_NAMES]
    if bad:
        raise DemonstrationError(f"unknown weight(s) {bad}: choose among {', '.join(WEIGHT_NAMES)}")
    if {"c_p", "c_h", "c_u"} <= set(learn):
        raise DemonstrationError("learning every weight of Eq. 32a leaves the cost without a scale: keep one "
                                 "fixed (c_p is the natural anchor)")
    base = {w: float(getattr(fop.config, w)) for w in WEIGHT_NAMES}
    boxes = {**ABSOLUTE_BOXES, **(bounds or {})}
    for w in learn:
        if w not in boxes and base[w] <= 0:
            raise DemonstrationError(f"cannot learn {w}: the FOP's {w} is {base[w]} (the box is relative to it); "
                                     f"give it a box with --weight-bounds {w}=LO:HI")
    box = {w: boxes.get(w, (0.0, max_factor * base[w])) for w in learn}
    return Features(names=learn, lower=tuple(box[w][0] - base[w] for w in learn),
                    upper=tuple(box[w][1] - base[w] for w in learn))


def inverse_samples(samples: Sequence[RobotSample], fop: Any, *, bound_tol: float = 1e-3,
                    relax_tol: float = 0.02, feas_tol: float = 1e-7, learn: Sequence[str] = ()
                    ) -> tuple[list[Any], list[int], int, int]:
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
    learn: weights of Eq. 32a whose changes are learned: each becomes a feature (q, diag R) of
    the sample (see cost_pieces); the FOP's cost at its own weights stays the fixed part.
    """
    out, kept, infeasible, relaxed = [], [], 0, 0
    lim = fop.config.limits
    lo, hi = lim.lower, lim.upper
    for idx, s in enumerate(samples):
        u = np.asarray(s.u_expert, float)
        if np.any(u < lo - bound_tol) or np.any(u > hi + bound_tol):
            infeasible += 1
            continue
        u = np.clip(u, lo, hi)
        Q, c, _ = fop.cost_terms(s.state, s.subgoal_xy, s.u_prev)
        H, b = fop.constraint_rows(s.state, u, s.obstacles_xyr)
        excess = H @ u - b
        violated = excess > feas_tol * (1.0 + np.abs(b))
        if np.any(violated[:N_BOUND_ROWS]) or np.any(excess[violated] > relax_tol):
            infeasible += 1
            continue
        if np.any(violated):
            b = np.where(violated, H @ u, b)
            relaxed += 1
        feats = {}
        if learn:
            pieces = cost_pieces(fop, s.state, s.subgoal_xy, s.u_prev)
            feats = {"feature_lin": np.array([pieces[w][1] for w in learn]),
                     "feature_quad": np.array([pieces[w][0] for w in learn])}
        out.append(InverseSample(c=np.asarray(c, float), Q=np.diag(np.asarray(Q, float)).copy(), u=u, H=H, b=b,
                                 **feats))
        kept.append(idx)
    return out, kept, infeasible, relaxed


def split_episodes(samples: Sequence[RobotSample], held_out_fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Train / held-out sample indices split by EPISODE (every sample of an episode on one side),
    reproducible from seed; at least one episode on each side when there are two or more."""
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {held_out_fraction}")
    labels = sorted({s.episode for s in samples})
    perm = np.random.default_rng(seed).permutation(len(labels))
    n_held = int(round(held_out_fraction * len(labels)))
    if held_out_fraction > 0 and len(labels) >= 2:
        n_held = min(max(n_held, 1), len(labels) - 1)
    held = {labels[i] for i in perm[:n_held]}
    is_held = np.array([s.episode in held for s in samples], bool)
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


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
    """FOP actions at each sample's state, subgoal, obstacles and previous command (the expert's, as the
    fit saw it); (actions (T, 2), number of failed solves)."""
    acts, failed = [], 0
    for s in samples:
        u, info = fop.solve(s.state, s.subgoal_xy, s.obstacles_xyr, u_prev=s.u_prev)
        failed += 0 if info.ok else 1
        acts.append(np.asarray(u, float))
        if progress is not None:
            progress.update(1)
    return np.asarray(acts).reshape(-1, 2), failed
