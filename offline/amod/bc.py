"""Behaviour-cloning warm start of the AMoD RL policies from the MPC demonstrations.

RL from scratch needs many thousands of 20-step episodes to move the upper level away from its
initial (uniform) distribution; the MPC demonstrations the inverse fit uses already contain good
subgoals. Before PPO, the policy's mean action is therefore fitted to them (a few thousand Adam
steps, seconds), and PPO continues from there:

    bi-level (both variants): the target is the expert's implied subgoal q̂ in the subgoal
        interface's terms (offline.amod.subgoal.SubgoalInterface.bc_target): relative form, the
        action a* = clip((q̂ − q)/s, −1, 1), loss = mean squared error; absolute and floor forms,
        the distribution w*, loss = cross-entropy(w*, softmax(κ·clip(a, −1, 1))) +
        ‖max(|a| − 1, 0)‖² (the same labels for Bi-level-unchanged and Bi-level-learned: the
        subgoal does not depend on the lower level);
    end-to-end: the target is the expert's flows as the env's action, a* = 2·f_e/q_origin − 1 and
        2·g_p/D_p − 1 (pairs without requests are left out); loss = mean squared error.

The log-std of the Gaussian is not fitted (PPO's exploration stays as configured).
"""
from __future__ import annotations

import numpy as np

from offline.amod.demos import Demos
from offline.amod.envs import observation, pair_observation
from offline.amod.sim import AmodSim
from offline.amod.subgoal import DEFAULT_INTERFACE, LOGIT_SCALE, SubgoalInterface

__all__ = ["behaviour_clone"]


def _targets(sim: AmodSim, demos: Demos, e2e: bool, interface: SubgoalInterface):
    states = [demos.state(k) for k in range(len(demos))]
    if not e2e:
        X = np.array([observation(sim, s) for s in states], np.float32)
        W = interface.bc_target(sim, demos.idle, demos.qhat, demos.g)
        return X, W.astype(np.float32), None
    X = np.array([pair_observation(sim, s) for s in states], np.float32)
    idle_o = demos.idle[:, sim.edges[:, 0]]
    f_frac = np.divide(demos.f, idle_o, out=np.zeros_like(demos.f), where=idle_o > 0)
    g_frac = np.divide(demos.g, demos.requests, out=np.zeros_like(demos.g), where=demos.requests > 0)
    A = 2.0 * np.clip(np.c_[f_frac, g_frac], 0, 1) - 1.0
    mask = np.c_[np.ones_like(f_frac), demos.requests > 0].astype(np.float32)
    return X, A.astype(np.float32), mask


def behaviour_clone(model, sim: AmodSim, demos: Demos, *, e2e: bool, steps: int = 3000, lr: float = 1e-3,
                    batch: int = 64, seed: int = 0, interface: SubgoalInterface = DEFAULT_INTERFACE) -> dict:
    """Fit the SB3 model's mean action to the demonstrations (module docstring); returns the losses."""
    import torch

    X, Y, mask = _targets(sim, demos, e2e, interface)
    X, Y = torch.as_tensor(X), torch.as_tensor(Y)
    M = torch.as_tensor(mask) if mask is not None else None
    gen = torch.Generator().manual_seed(seed)
    params = [p for n, p in model.policy.named_parameters() if n != "log_std"]
    opt = torch.optim.Adam(params, lr=lr)

    def loss_of(idx):
        mean = model.policy.get_distribution(X[idx]).distribution.mean
        if e2e:
            err = (mean - Y[idx]) ** 2 * M[idx]
            return err.sum() / M[idx].sum().clamp(min=1.0)
        if not interface.cross_entropy:
            return ((mean - Y[idx]) ** 2).sum(-1).mean()
        logp = torch.log_softmax(LOGIT_SCALE * mean.clamp(-1, 1), dim=-1)
        return -(Y[idx] * logp).sum(-1).mean() + ((mean.abs() - 1).clamp(min=0) ** 2).sum(-1).mean()

    with torch.no_grad():
        first = float(loss_of(torch.arange(len(X))))
    for _ in range(steps):
        idx = torch.randint(0, len(X), (batch,), generator=gen)
        loss = loss_of(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(loss_of(torch.arange(len(X))))
    return {"loss_start": first, "loss_end": last, "samples": len(X), "steps": steps}
