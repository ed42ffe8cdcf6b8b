"""Bi-level-cvxpy: the lower level's θ fitted by gradient descent through a CvxpyLayer (paper §4, method 3).

The same parameterisation as the inverse fit (Problem 11): K ReLU terms (θ_k, μ_k) over the FOP's
decision x and, optionally, the weights w of linear cost terms (c = c₀ + Φ w, Φ the per-sample
features the inverse fit uses, w within the same bounds). Each training step solves the FOP of a
mini-batch of demonstrations with the current parameters through `cvxpylayers.torch.CvxpyLayer`
(the cvxpy statement of offline.baselines.cvx_fop, l > 0 so x* is differentiable), and Adam
minimises the imitation loss mean_i ‖x*_i(θ, μ, w) − x_i^expert‖² (summed over the decision's
columns). Weights are projected onto their bounds after every step. The θ returned is the one of
the epoch with the lowest mean training loss (the loss curve holds every epoch's).

Solver: diffcp with Clarabel (the default SCS returned gradients 10⁵ times larger and took 50 s
per forward pass of 8 AMoD samples; measured on 16 regions, l = 1e-3).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from hiopt_ros.progress import progress_bar
from offline.baselines.cvx_fop import CvxpyFop

__all__ = ["LayerFitConfig", "LayerFit", "fit_layer", "adam_loop"]

SOLVER_ARGS = {"solve_method": "Clarabel"}


@dataclass(frozen=True)
class LayerFitConfig:
    """The tuning budget of the cvxpylayers fit (the docs state the values used)."""

    lr: float = 0.05           # Adam's learning rate
    epochs: int = 5            # passes over the training demonstrations
    batch: int = 8             # demonstrations per Adam step
    l: float = 1e-3            # noqa: E741 Eq. 10's l in the layer (the inverse fit's l)
    init_scale: float = 0.1    # θ's initial entries ~ N(0, init_scale²); μ starts at 0
    seed: int = 0

    def check(self) -> None:
        for name in ("lr", "l"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be > 0, got {getattr(self, name)}")
        for name in ("epochs", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.init_scale < 0:
            raise ValueError(f"--init-scale must be >= 0, got {self.init_scale}")


@dataclass
class LayerFit:
    """What fit_layer learned and how: θ (K, n), μ (K,), cost weights, per-epoch loss, wall time."""

    theta: np.ndarray
    mu: np.ndarray
    weights: np.ndarray
    weight_names: tuple[str, ...]
    loss: list[float]                  # mean training loss of every epoch (epoch 0: the initial θ)
    best_epoch: int
    fit_time_s: float
    steps: int
    failed_solves: int
    config: LayerFitConfig
    extra: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        return {"fit_method": "cvxpylayers", **asdict(self.config), "loss": [float(v) for v in self.loss],
                "best_epoch": self.best_epoch, "fit_time_s": round(self.fit_time_s, 2), "adam_steps": self.steps,
                "failed_solves": self.failed_solves, "solver": "diffcp/Clarabel"}


def fit_layer(lp, data: Sequence[tuple], x_expert: np.ndarray, *, K: int, config: LayerFitConfig = LayerFitConfig(),
              features: np.ndarray | None = None, weight_names: Sequence[str] = (),
              weight_bounds: tuple[float, float] = (0.0, np.inf), columns: np.ndarray | None = None,
              progress: bool = False) -> LayerFit:
    """Fit (θ, μ, w) on demonstrations through a CvxpyLayer of `lp` (an offline.lp_fop.ReluLpFop with K slots).

    Args:
        data: per demonstration (c, row_lo, row_hi, col_lo, col_hi), the FOP's data at its state and subgoal.
        x_expert: (S, n) the expert's decisions in the FOP's columns.
        features: (S, n, p) cost features Φ_i (c_i + Φ_i w), or None (no cost weights).
        columns: the columns the loss compares (None: all n).
    """
    import torch

    config.check()
    if lp.K != K:
        raise ValueError(f"the FOP has {lp.K} ReLU slots, the fit wants K = {K}")
    S, n = len(data), lp.n
    x_expert = np.asarray(x_expert, float).reshape(S, n)
    p = 0 if features is None else int(features.shape[2])
    if K == 0 and p == 0:
        raise ValueError("nothing to learn: K = 0 and no cost features")
    cf = CvxpyFop(lp, *data[0][1:], l=config.l)
    vals = [cf.data_values(*d) for d in data]
    layer = cf.layer(solver_args=dict(SOLVER_ARGS))
    stacked = [torch.tensor(np.stack([v[j] for v in vals])) for j in range(len(vals[0]))]
    xe = torch.tensor(x_expert)
    cols = torch.arange(n) if columns is None else torch.as_tensor(np.asarray(columns))
    phi = torch.tensor(np.asarray(features, float)) if p else None
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    theta = torch.tensor(config.init_scale * rng.standard_normal((K, n)), requires_grad=True)
    mu = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    lo, hi = weight_bounds
    w0 = np.clip(np.zeros(p), lo, hi)
    w = torch.tensor(w0, requires_grad=True)
    params = ([theta, mu] if K else []) + ([w] if p else [])

    def batch_loss(idx):
        c = stacked[0][idx]
        if p:
            c = c + torch.einsum("bnp,p->bn", phi[idx], w)
        args = [c] + [s[idx] for s in stacked[1:]] + ([theta, mu] if K else [])
        (x,) = layer(*args)
        return ((x[:, cols] - xe[idx][:, cols]) ** 2).sum(dim=1)

    def snapshot():
        return (theta.detach().numpy().copy(), mu.detach().numpy().copy(), w.detach().numpy().copy())

    project = (lambda: w.clamp_(lo, hi)) if p else None
    losses, snaps, failed, steps, seconds = adam_loop(batch_loss, params, snapshot, S, config, rng, progress, project)
    best = int(np.nanargmin(losses))
    th, m, wb = snaps[best]
    return LayerFit(theta=th if K else np.zeros((0, n)), mu=m if K else np.zeros(0), weights=wb,
                    weight_names=tuple(weight_names), loss=losses, best_epoch=best,
                    fit_time_s=seconds, steps=steps, failed_solves=failed, config=config)


def adam_loop(batch_loss, params, snapshot, S: int, config: LayerFitConfig, rng, progress: bool = False,
              project=None) -> tuple[list, list, int, int, float]:
    """Adam over mini-batches of S samples for config.epochs epochs (shared by every cvxpylayers fit).

    batch_loss(idx) -> per-sample losses (torch) of the samples idx through the layer; snapshot() -> a
    copy of the parameters; project() (optional) runs after every step under no_grad (e.g. a box).
    A batch whose solve fails (diffcp raises SolverError) is skipped and counted.
    Returns (mean loss per epoch with epoch 0 the initial parameters', snapshots, failed samples,
    Adam steps, wall time s)."""
    import torch

    # diffcp 1.1.9 calls np.array(copy=False) on torch tensors: one DeprecationWarning per sample
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cvxpylayers\.interfaces\.diffcp_if")
    opt = torch.optim.Adam(params, lr=config.lr)
    t0 = time.perf_counter()
    losses, snaps, failed, steps = [], [], 0, 0
    bar = progress_bar(total=config.epochs * S, enabled=progress, desc="cvxpylayers fit", unit="sample")
    with torch.no_grad():   # epoch 0: the initial parameters' loss
        losses.append(float(torch.cat([batch_loss(torch.arange(i, min(i + 32, S))) for i in range(0, S, 32)]).mean()))
    snaps.append(snapshot())
    for _ in range(config.epochs):
        order = rng.permutation(S)
        epoch = []
        for i in range(0, S, config.batch):
            idx = torch.as_tensor(order[i:i + config.batch])
            try:
                per = batch_loss(idx)
            except Exception:   # diffcp raises SolverError on a failed solve: skip this batch, count it
                failed += len(idx)
                bar.update(len(idx))
                continue
            loss = per.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if project is not None:
                with torch.no_grad():
                    project()
            epoch.append(per.detach().numpy())
            bar.update(len(idx))
        losses.append(float(np.concatenate(epoch).mean()) if epoch else float("nan"))
        snaps.append(snapshot())
    bar.close()
    return losses, snaps, failed, steps, time.perf_counter() - t0
