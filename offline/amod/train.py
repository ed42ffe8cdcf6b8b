"""RL training of the AMoD policies with the shared SB3 harness (sim.rl): the upper level of
Bi-level-unchanged and Bi-level-learned, and End-to-end RL.

Algorithm: PPO by default (SAC with --algo sac). The upper level's action is a distribution over
regions (softmax of a Box action, offline.amod.envs); PPO's Gaussian over the logits explores the
simplex smoothly, its on-policy updates are stable with the episode-level demand noise of this
task, and it needs no replay of 20-step episodes whose value depends on the whole demand sample.
The default network is shared by all regions (offline.amod.policy_net.ItemwisePolicy; for
end-to-end RL by all ordered pairs), which learns far faster than one MLP over the whole
observation; --policy-net mlp gives SB3's MlpPolicy. Every env step solves the lower-level LP (~1–3 ms),
so the budget is in env steps: 2 workers on the 2-core machine run ~100–200 steps/s in total (see the
train.json of a run).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from offline.amod.bc import behaviour_clone
from offline.amod.config import RL_SEEDS, ScenarioSpec, make_env
from offline.amod.envs import PAIR_FEATURES, REGION_FEATURES, e2e_action_index
from offline.amod.sim import AmodSim
from offline.amod.subgoal import DEFAULT_INTERFACE, SubgoalInterface
from sim import rl

__all__ = ["TrainSpec", "train_policy", "KINDS"]

#: Table 1 method → (environment kind, uses the fitted θ)
KINDS = {"Bi-level-unchanged": ("bilevel", False), "Bi-level-learned": ("bilevel", True),
         "End-to-end RL": ("e2e", False),
         # issue 19: the same upper level over the lower level whose θ cvxpylayers fitted (offline.baselines)
         "Bi-level-cvxpy": ("bilevel", True)}


@dataclass(frozen=True)
class TrainSpec:
    """The RL budget and hyperparameters of one policy (sim.rl.RLConfig fields, chosen for this task)."""
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
    #: exploration std e^-2 ≈ 0.14 on a ∈ [−1, 1] (0.4 in the softmax's logits): PPO refines the
    #: behaviour-cloned policy; with e^-0.5 the sampled subgoals were so noisy that training returns
    #: stayed far below the deterministic policy's
    log_std_init: float = -2.0
    vec: str = "subproc"
    #: "itemwise": one MLP shared by all regions (pairs for end-to-end), offline.amod.policy_net;
    #: "mlp": SB3's MlpPolicy over the whole observation
    network: str = "itemwise"


def policy_config(method: str, sim, network: str) -> tuple[str, dict]:
    """(RLConfig.policy, RLConfig.policy_kwargs) of a method's network on this simulator's network."""
    if network == "mlp":
        return "MlpPolicy", {}
    if network != "itemwise":
        raise ValueError(f"network must be 'itemwise' or 'mlp', got {network!r}")
    if KINDS[method][0] == "e2e":
        kw = dict(n_items=sim.N * sim.N, item_dim=PAIR_FEATURES, global_dim=1, out_per_item=2,
                  action_index=e2e_action_index(sim).tolist())
    else:
        kw = dict(n_items=sim.N, item_dim=REGION_FEATURES, global_dim=1, out_per_item=1)
    return "offline.amod.policy_net:ItemwisePolicy", dict(kw, hidden=(64, 64))


def train_policy(method: str, spec: ScenarioSpec, out_dir: Path, train: TrainSpec, theta_path: str | None = None,
                 progress: bool | None = None, bc_demos=None, bc_steps: int = 3000,
                 interface: SubgoalInterface = DEFAULT_INTERFACE):
    """Train the RL part of a Table 1 method; returns sim.rl.TrainResult (model.zip etc. in out_dir).

    bc_demos: MPC demonstrations (offline.amod.demos.Demos) to warm-start the policy by behaviour
    cloning (offline.amod.bc) before PPO; None trains from scratch. The BC losses go to bc.json.
    interface: how the bi-level upper level's action becomes the subgoal (offline.amod.subgoal).
    """
    if method not in KINDS:
        raise ValueError(f"no RL policy for method {method!r}; known: {', '.join(KINDS)}")
    if train.steps < 0:
        raise ValueError(f"RL steps must be >= 0 (0: the behaviour-cloned policy), got {train.steps}")
    kind, learned = KINDS[method]
    if learned and theta_path is None:
        raise ValueError(f"{method} needs a fitted θ file")
    make = functools.partial(make_env, kind=kind, spec=spec, theta_path=theta_path if learned else None,
                             seeds=RL_SEEDS, **({"interface": interface} if kind == "bilevel" else {}))
    policy, policy_kwargs = policy_config(method, AmodSim(spec.build()), train.network)
    cfg = rl.RLConfig(algo=train.algo, total_steps=max(train.steps, 1), n_envs=train.n_envs, seed=train.seed,
                      vec=train.vec, net_arch=tuple(train.net_arch), learning_rate=train.learning_rate,
                      gamma=train.gamma, n_steps=train.n_steps, batch_size=train.batch_size,
                      n_epochs=train.n_epochs, ent_coef=train.ent_coef, log_std_init=train.log_std_init,
                      curve_keys=(), policy=policy, policy_kwargs=policy_kwargs)
    init = None
    if bc_demos is not None and bc_steps > 0:
        import json

        from stable_baselines3.common.vec_env import DummyVecEnv

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        env = make(0)
        model = rl.build_model(cfg, DummyVecEnv([lambda: env]))
        info = behaviour_clone(model, env.sim, bc_demos, e2e=kind == "e2e", steps=bc_steps, seed=train.seed,
                               interface=interface)
        init = out_dir / "bc_init.zip"
        model.save(str(init))
        (out_dir / "bc.json").write_text(json.dumps(dict(info, demos=str(bc_demos.meta.get("file"))), indent=2) + "\n")
    if train.steps == 0:
        # --rl-steps 0: the behaviour-cloned policy itself (no PPO), saved as the run's model
        if init is None:
            raise ValueError("--rl-steps 0 keeps the behaviour-cloned policy: it needs MPC demonstrations and "
                             "--bc-steps > 0")
        import json
        import shutil
        shutil.copyfile(init, out_dir / "model.zip")
        (out_dir / "train.json").write_text(json.dumps({"env_steps": 0, "wall_s": 0.0, "train_steps_per_s": 0.0,
                                                        "episodes": 0, "bc_only": True}, indent=2) + "\n")
        return rl.TrainResult(model=model, out_dir=out_dir, env_steps=0, wall_s=0.0, episodes=0, last_returns=[])
    return rl.train(make, cfg, out_dir, progress=progress, init_model=init)
