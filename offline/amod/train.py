"""RL training of the AMoD policies with the shared SB3 harness (offline.rl): the upper level of
Bi-level-unchanged and Bi-level-learned, and End-to-end RL.

Algorithm: PPO by default (SAC with --algo sac). The upper level's action is a distribution over
regions (softmax of a Box action, offline.amod.envs); PPO's Gaussian over the logits explores the
simplex smoothly, its on-policy updates are stable with the episode-level demand noise of this
task, and it needs no replay of 20-step episodes whose value depends on the whole demand sample.
Every env step solves the lower-level LP (~1–3 ms), so the budget is in env steps: 2 workers on
the 2-core machine run ~100–200 steps/s in total (see the train.json of a run).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from offline.amod.config import RL_SEEDS, ScenarioSpec, make_env

__all__ = ["TrainSpec", "train_policy", "KINDS"]

#: Table 1 method → (environment kind, uses the fitted θ)
KINDS = {"Bi-level-unchanged": ("bilevel", False), "Bi-level-learned": ("bilevel", True),
         "End-to-end RL": ("e2e", False)}


@dataclass(frozen=True)
class TrainSpec:
    """The RL budget and hyperparameters of one policy (offline.rl.RLConfig fields, chosen for this task)."""
    steps: int = 100_000
    algo: str = "ppo"
    seed: int = 0
    n_envs: int = 2
    net_arch: tuple[int, ...] = (128, 128)
    learning_rate: float = 3e-4
    n_steps: int = 400          # per env between PPO updates: 20 episodes of T = 20
    batch_size: int = 200
    n_epochs: int = 10
    gamma: float = 0.99
    ent_coef: float = 0.0
    log_std_init: float = -0.5
    vec: str = "subproc"


def train_policy(method: str, spec: ScenarioSpec, out_dir: Path, train: TrainSpec, theta_path: str | None = None,
                 progress: bool | None = None):
    """Train the RL part of a Table 1 method; returns offline.rl.TrainResult (model.zip etc. in out_dir)."""
    from offline import rl

    if method not in KINDS:
        raise ValueError(f"no RL policy for method {method!r}; known: {', '.join(KINDS)}")
    kind, learned = KINDS[method]
    if learned and theta_path is None:
        raise ValueError(f"{method} needs a fitted θ file")
    make = functools.partial(make_env, kind=kind, spec=spec, theta_path=theta_path if learned else None,
                             seeds=RL_SEEDS)
    cfg = rl.RLConfig(algo=train.algo, total_steps=train.steps, n_envs=train.n_envs, seed=train.seed,
                      vec=train.vec, net_arch=tuple(train.net_arch), learning_rate=train.learning_rate,
                      gamma=train.gamma, n_steps=train.n_steps, batch_size=train.batch_size,
                      n_epochs=train.n_epochs, ent_coef=train.ent_coef, log_std_init=train.log_std_init,
                      curve_keys=())
    return rl.train(make, cfg, out_dir, progress=progress)
