"""The robot's Table 4 (beyond the paper): inverse optimization against cvxpylayers on Eq. 32 convexified.

The FOP convexified at the expert's state is exactly the inverse fit's per-sample form
(offline.robot_data.inverse_samples → offline.inverse.InverseSample): heading fixed over the step,
Eq. 32a as uᵀQu + cᵀu with Q diagonal, the bounds and each obstacle constraint linearised at the
expert action as a supporting half-space Hu ≤ b. `SampleFop` is the cvxpy statement of that form,
built from the sample's rows (c, Q, H, b, the feature pieces), never from Eq. 32 a second time:

    min_{u, τ}  (c + Σ_j φ_j q_j)ᵀu + ‖s ∘ u‖² + Σ_k τ_k,   s = sqrt(Q + Σ_j φ_j R_j + l)     (Eq. 10)
    s.t.        H u ≤ b  (rows padded to the batch's largest m with 0ᵀu ≤ 1),  θ_kᵀu − τ_k ≤ ν_k,  τ ≥ 0

DPP (θ and H multiply the variable u, s enters as s ∘ u), so one CvxpyLayer serves every sample.
`fit_robot_layer` fits (θ, ν, φ) by Adam on ‖u*(θ) − u_expert‖² through it (offline.baselines.layer_fit's
loop and budget), on the same training samples as offline.fit.

Value approximation does not apply: the bags do not carry the MPC's cost-to-go, and a quadratic V
of the next pose cannot express the course (goal and obstacles change from course to course); see
docs/experiments.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hiopt_ros.bag_reader import RobotTopics
from hiopt_ros.control.fop import Fop
from hiopt_ros.control.params import fop_config_from_params
from hiopt_ros.control.theta import Theta, save_theta
from offline import fit as F
from offline.baselines.layer_fit import SOLVER_ARGS, LayerFit, LayerFitConfig, adam_loop
from offline.inverse.forward import forward_solve_batch
from offline.inverse.metrics import action_metrics
from offline.robot_data import WEIGHT_NAMES, SubgoalSpec, inverse_samples, weight_features

__all__ = ["SampleFop", "fit_robot_layer", "RobotLayerData"]


class SampleFop:
    """The cvxpy statement of the per-sample form (module docstring): n inputs, m inequality rows, K ReLU terms."""

    def __init__(self, n: int, m: int, K: int) -> None:
        import cvxpy as cp

        self.n, self.m, self.K = n, m, K
        self.u = u = cp.Variable(n, name="u")
        self.c = cp.Parameter(n, name="c")
        self.s = cp.Parameter(n, name="s", nonneg=True)
        self.H = cp.Parameter((m, n), name="H")
        self.b = cp.Parameter(m, name="b")
        cost = self.c @ u + cp.sum_squares(cp.multiply(self.s, u))
        cons = [self.H @ u <= self.b]
        self.theta = cp.Parameter((K, n), name="theta") if K else None
        self.nu = cp.Parameter(K, name="nu") if K else None
        if K:
            tau = cp.Variable(K, name="tau")
            cons += [self.theta @ u - tau <= self.nu, tau >= 0]
            cost = cost + cp.sum(tau)
        self.problem = cp.Problem(cp.Minimize(cost), cons)
        if not self.problem.is_dpp():
            raise AssertionError("the cvxpy statement of the per-sample FOP is not DPP")

    @property
    def parameters(self) -> list:
        return [self.c, self.s, self.H, self.b] + ([self.theta, self.nu] if self.K else [])

    def data_values(self, sample, l: float, weights=None) -> list[np.ndarray]:  # noqa: E741 (Eq. 10's l)
        """(c, s, H, b) of one InverseSample at cost weights φ (None: 0), H padded to m rows."""
        c = np.asarray(sample.c, float).copy()
        q = np.asarray(sample.Q, float).copy()
        if q.ndim != 1:
            raise ValueError("SampleFop needs a diagonal Q (the robot's per-sample form stores diag Q)")
        if sample.B is not None:
            raise ValueError("SampleFop has no equality rows (the robot's per-sample form has none)")
        if weights is not None and len(weights):
            c = c + np.asarray(sample.feature_lin, float).T @ weights
            q = q + np.asarray(sample.feature_quad, float).T @ weights
        H = np.asarray(sample.H.toarray() if hasattr(sample.H, "toarray") else sample.H, float)
        if H.shape[0] > self.m:
            raise ValueError(f"a sample has {H.shape[0]} inequality rows, this statement {self.m}")
        Hp, bp = np.zeros((self.m, self.n)), np.ones(self.m)
        Hp[:H.shape[0]], bp[:H.shape[0]] = H, np.asarray(sample.b, float)
        return [c, np.sqrt(np.maximum(q + l, 0.0)), Hp, bp]

    def solve(self, sample, theta, nu, l: float, weights=None) -> np.ndarray:  # noqa: E741
        """u* of one sample (Clarabel); RuntimeError without an optimum."""
        vals = self.data_values(sample, l, weights)
        if self.K:
            th = np.zeros((self.K, self.n))
            mu = np.zeros(self.K)
            theta = np.asarray(theta, float).reshape(-1, self.n)
            th[:len(theta)], mu[:len(theta)] = theta, np.asarray(nu, float).reshape(-1)
            vals += [th, mu]
        for p, v in zip(self.parameters, vals):
            p.value = v
        self.problem.solve(solver="CLARABEL")
        if self.problem.status != "optimal":
            raise RuntimeError(f"cvxpy per-sample FOP: {self.problem.status}")
        return np.asarray(self.u.value, float)

    def layer(self, **kw):
        from cvxpylayers.torch import CvxpyLayer

        return CvxpyLayer(self.problem, parameters=self.parameters, variables=[self.u], **kw)


@dataclass
class RobotLayerData:
    """What fit_robot_layer learned besides the LayerFit: the weights' box (absolute changes φ)."""

    fit: LayerFit
    weight_lo: np.ndarray
    weight_hi: np.ndarray


def fit_robot_layer(samples: Sequence, *, K: int, l: float, config: LayerFitConfig,  # noqa: E741
                    features=None, progress: bool = False) -> RobotLayerData:
    """(θ, ν, φ) by Adam through a CvxpyLayer of SampleFop on InverseSamples (their u is the expert's).

    features: offline.inverse.Features of the learned cost weights (their changes φ start at 0 and
    are projected onto [lower, upper] after every step), or None (ReLU terms only)."""
    import torch

    config.check()
    S = len(samples)
    if S == 0:
        raise ValueError("no training samples")
    n = len(samples[0].u)
    J = features.J if features is not None else 0
    if K == 0 and J == 0:
        raise ValueError("nothing to learn: K = 0 and no cost weights")
    m = max(np.asarray(s.b).size for s in samples)
    sf = SampleFop(n, m, K)
    layer = sf.layer(solver_args=dict(SOLVER_ARGS))
    vals = [sf.data_values(s, 0.0) for s in samples]           # l and φ enter through q below
    c0 = torch.tensor(np.stack([v[0] for v in vals]))
    q0 = torch.tensor(np.stack([np.asarray(s.Q, float) for s in samples]))
    H = torch.tensor(np.stack([v[2] for v in vals]))
    b = torch.tensor(np.stack([v[3] for v in vals]))
    fl = torch.tensor(np.stack([np.asarray(s.feature_lin, float) for s in samples])) if J else None
    fq = torch.tensor(np.stack([np.asarray(s.feature_quad, float) for s in samples])) if J else None
    ue = torch.tensor(np.stack([np.asarray(s.u, float) for s in samples]))
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    theta = torch.tensor(config.init_scale * rng.standard_normal((K, n)), requires_grad=True)
    nu = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    lo = features.lo if J else np.zeros(0)
    hi = features.hi if J else np.zeros(0)
    w = torch.tensor(np.clip(np.zeros(J), lo, hi), requires_grad=True)
    tlo, thi = torch.tensor(lo), torch.tensor(hi)
    params = ([theta, nu] if K else []) + ([w] if J else [])

    def batch_loss(idx):
        c, q = c0[idx], q0[idx]
        if J:
            c = c + torch.einsum("bjn,j->bn", fl[idx], w)
            q = q + torch.einsum("bjn,j->bn", fq[idx], w)
        s = torch.sqrt(torch.clamp(q + l, min=0.0))
        (u,) = layer(c, s, H[idx], b[idx], *([theta, nu] if K else []))
        return ((u - ue[idx]) ** 2).sum(dim=1)

    def snapshot():
        return (theta.detach().numpy().copy(), nu.detach().numpy().copy(), w.detach().numpy().copy())

    def project():
        w.copy_(torch.maximum(torch.minimum(w, thi), tlo))

    losses, snaps, failed, steps, seconds = adam_loop(batch_loss, params, snapshot, S, config, rng, progress,
                                                      project if J else None)
    best = int(np.nanargmin(losses))
    th, mu, wb = snaps[best]
    fit = LayerFit(theta=th if K else np.zeros((0, n)), mu=mu if K else np.zeros(0), weights=wb,
                   weight_names=tuple(features.names) if J else (), loss=losses, best_epoch=best,
                   fit_time_s=seconds, steps=steps, failed_solves=failed, config=config)
    return RobotLayerData(fit, lo, hi)


# ---------------------------------------------------------------------------------------------- Table 4
def add_robot_arguments(p) -> None:
    """The robot's options of Table 4 (--case robot): demonstrations and the θ form (offline.fit's)."""
    g = p.add_argument_group("robot options (--case robot)")
    g.add_argument("--robot-episodes", type=int, default=24,
                   help="training expert courses recorded by offline.demos, seed 1 (default 24, as fig4)")
    g.add_argument("--robot-val-episodes", type=int, default=12,
                   help="held-out expert courses, seed 101 (default 12, as fig4)")
    g.add_argument("--robot-subgoal", default="plan:6", help="offline.fit --subgoal (default plan:6, the shipped θ's)")
    g.add_argument("--robot-learn", default="relu", choices=("relu", "weights", "relu+weights"),
                   help="offline.fit --learn: ReLU terms (the paper's form, default), Eq. 32a's weights c_h, c_u, "
                        "or both")
    g.add_argument("--robot-K", type=int, default=2, help="ReLU terms (default 2)")
    g.add_argument("--robot-time-limit", type=float, default=120.0,
                   help="offline.fit --time-limit-s of the inverse fit (default 120)")
    g.add_argument("--robot-max-train", type=int, default=0,
                   help="offline.fit --max-train: at most this many training samples, both methods (default 0: all)")


def _metrics(fop, theta, val_def, conv_samples, weights, l) -> dict:  # noqa: E741
    """Held-out similarity of one θ: the deployed acados FOP, and the FOP convexified at the expert's state."""
    deployed = F.score(fop, theta, val_def)
    u = forward_solve_batch(conv_samples, np.asarray(theta.alpha, float).reshape(-1, 2), theta.beta, l,
                            weights=weights if weights is not None and len(weights) else None, on_failure="nan")
    ok = np.all(np.isfinite(u), axis=1)
    conv = action_metrics(u[ok], np.array([s.u for s in conv_samples])[ok])
    conv["failed"] = int((~ok).sum())
    return {"deployed": deployed, "convexified": conv}


def run_robot(args, train_bag, val_bag, out, configs, log, progress: bool = False) -> dict:
    """Inverse optimization (offline.fit as shipped) and cvxpylayers (once per config; the lowest training
    loss kept) on the same training bag, both scored on the held-out bag, plus the unchanged FOP.
    Returns {"rows": [(method, metrics, fit_time_s, seed)], "notes": [...], "losses": {seed: LayerFit}}."""
    import time

    K = args.robot_K if "relu" in args.robot_learn else 0
    argv = [str(train_bag), "--validate", str(val_bag), "--out", str(out / "theta_inverse.yaml"),
            "--learn", args.robot_learn, "--K", str(max(K, 1)), "--subgoal", args.robot_subgoal, "--held-out", "0",
            "--closed-loop", "0", "--time-limit-s", f"{args.robot_time_limit:g}",
            "--max-train", str(args.robot_max_train), "--no-progress"]
    fa = F.build_parser().parse_args(argv)
    fa.argv = argv
    log(f"[table4] robot: inverse optimization, python -m offline.fit {' '.join(argv)}")
    rep = F.run(fa)
    theta_inv = rep["theta"]
    opt = rep["option"]
    log(f"[table4] robot: inverse fit {rep['solver_status']} in {rep['solver_time_s']:.1f} s on "
        f"{rep['samples']['train']} samples")

    # the same training and held-out samples, in the inverse fit's per-sample form
    fop = Fop(fop_config_from_params(fa.params, max(4, K)))
    fop.set_theta(Theta.zero(0))
    topics = RobotTopics(fa.odom_topic, fa.cmd_vel_topic, fa.subgoal_topic, fa.obstacles_topic)
    spec = SubgoalSpec.parse(args.robot_subgoal)
    train, _, info = F.read_demonstrations([str(train_bag)], fa, topics, None, False, "training")
    train, _ = F.keep_successful(train, False)
    val, _, _ = F.read_demonstrations([str(val_bag)], fa, topics, None, False, "validation", seen=info)
    val, _ = F.keep_successful(val, False)
    learn_w = tuple(opt["weights"]) if "weights" in args.robot_learn else ()
    data, _, infeasible, relaxed = inverse_samples(spec.apply(train), fop, learn=learn_w)
    if args.robot_max_train and len(data) > args.robot_max_train:   # offline.fit's own subsample (its seed 0)
        pick = np.sort(np.random.default_rng(fa.seed + 1).choice(len(data), size=args.robot_max_train, replace=False))
        data = [data[i] for i in pick]
    val_def = spec.apply(val)
    conv_val, kept, _, _ = inverse_samples(val_def, fop, learn=learn_w)
    features = weight_features(learn_w, fop, bounds={n: (lo, hi) for n, lo, hi in opt["bounds"]}) if learn_w else None
    base = {w: float(getattr(fop.config, w)) for w in WEIGHT_NAMES}
    l = float(rep["l"])  # noqa: E741

    def deltas(theta):
        return np.array([theta.cost_weights.get(w, base[w]) - base[w] for w in learn_w])

    rows = [("Inverse Optimization", _metrics(fop, theta_inv, val_def, conv_val, deltas(theta_inv), l),
             float(rep["solver_time_s"]), 0)]
    fits = {}
    by_seed: dict[int, list] = {}
    for cfg in configs:
        cfg = LayerFitConfig(**{**cfg.__dict__, "l": l})       # the inverse fit's l (Eq. 10)
        log(f"[table4] robot: cvxpylayers seed {cfg.seed}, lr {cfg.lr:g}: {len(data)} samples, {cfg.epochs} epochs, "
            f"batch {cfg.batch}")
        res = fit_robot_layer(data, K=K, l=l, config=cfg, features=features, progress=progress)
        f = res.fit
        log(f"[cvxpylayers]   loss {f.loss[0]:.4g} → {f.loss[f.best_epoch]:.4g} (epoch {f.best_epoch}; per epoch "
            f"{', '.join(f'{v:.4g}' for v in f.loss)}), {f.failed_solves} failed solves, {f.fit_time_s:.0f} s")
        by_seed.setdefault(cfg.seed, []).append(f)
    for seed, fl in by_seed.items():
        f = min(fl, key=lambda f: f.loss[f.best_epoch])
        weights = dict(base)
        for name, d in zip(f.weight_names, f.weights):
            weights[name] = max(base[name] + float(d), 0.0)
        if not weights.get("c_du"):
            weights.pop("c_du", None)
        cfg = fop.config
        theta = Theta(alpha=np.asarray(f.theta, float).reshape(-1, 2), beta=np.asarray(f.mu, float), l=l,
                      case_study="robot", cost_weights=weights, learned_weights=list(f.weight_names),
                      subgoal=spec.to_dict(cfg.Ts_s, cfg.limits.v_max_mps),
                      provenance=dict(f.provenance(), samples=len(data), train_bag=str(train_bag),
                                      held_out_bag=str(val_bag), lrs=[g.config.lr for g in fl]))
        save_theta(out / f"theta_cvxpylayers_seed{seed}.yaml", theta)
        t = sum(g.fit_time_s for g in fl)
        rows.append(("cvxpylayers", _metrics(fop, theta, val_def, conv_val, np.asarray(f.weights), l), t, seed))
        fits[seed] = f
    t0 = time.perf_counter()
    rows.append(("unchanged", _metrics(fop, Theta.zero(0), val_def, conv_val, None, l), float("nan"), None))
    log(f"[table4] robot: unchanged FOP scored in {time.perf_counter() - t0:.0f} s")
    seeds = lambda ss: ",".join(str(s) for s in sorted({s.seed for s in ss if s.seed is not None}))  # noqa: E731
    notes = [f"robot: {len(train)} training samples of course seeds {seeds(train)} ({train_bag}), "
             f"{len(val_def)} held-out samples of course seeds {seeds(val)} ({val_bag}); subgoal {args.robot_subgoal}, "
             f"θ form {args.robot_learn}" + (f", K = {K}" if K else "") + (f", weights {','.join(learn_w)}"
                                                                         if learn_w else ""),
             f"both methods fit the same {len(data)} per-sample FOPs (offline.robot_data.inverse_samples: "
             f"{infeasible} expert actions outside the constraints dropped, {relaxed} obstacle rows relaxed); "
             f"convexified columns: {len(conv_val)} of the {len(val_def)} held-out samples have a feasible "
             f"per-sample form",
             f"inverse optimization: offline.fit ({rep['method']}, {rep['solver_status']}, time limit "
             f"{args.robot_time_limit:g} s), fit time = its Problem 11 solve; θ file {out / 'theta_inverse.yaml'}",
             "value approximation: not applicable to the robot (the bags carry no MPC cost-to-go, and a quadratic "
             "V of the next pose cannot express a course whose goal and obstacles change; docs/experiments.md)"]
    return {"rows": rows, "notes": notes, "losses": fits}
