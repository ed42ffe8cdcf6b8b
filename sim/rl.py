"""The RL harness shared by the three case studies: stable-baselines3 set-up, callbacks, export.

One small surface, independent of the case study (robot: ``sim.train``; AMoD and inventory reuse
it for their upper levels):

    from sim import rl

    cfg = rl.RLConfig(algo="ppo", total_steps=200_000, n_envs=2, seed=0)
    result = rl.train(make_env, cfg, out_dir)   # make_env(rank) -> gymnasium.Env, called in each worker
    print(result.report())                       # steps, wall time, training steps/s, episodes
    rl.export_torchscript(result.model, out_dir / "policy.pt",
                          scale=..., offset=..., attributes={"n_obstacles": 4})
    rl.measure_env_steps_per_s(make_env(0))      # env steps/s with random actions (no learning)

What :func:`train` writes into ``out_dir`` (created):

    tb/                      TensorBoard event files (``tensorboard --logdir out_dir/tb``)
    monitor/<rank>.monitor.csv   SB3 Monitor: return, length, time (+ info keys) of every episode
    checkpoints/             SB3 zips every ``checkpoint_every`` env steps (if > 0)
    model.zip                the final SB3 model (``PPO.load`` / ``SAC.load``)
    learning_curve.png/.csv  episode return (and the ``curve_keys`` rates, e.g. success) vs env steps
    train.json               config, steps, wall time, steps/s

Vectorisation: ``n_envs`` copies of the env, each built in its own process by ``make_env(rank)``
(SB3 ``SubprocVecEnv``; ``vec="dummy"`` keeps them in this process, e.g. for tests or envs that
hold unpicklable solvers built elsewhere). Everything the env needs must be created inside
``make_env`` (solvers, simulators), which must be picklable (a module-level function or a
``functools.partial`` of one).

The exported TorchScript module maps a float32 observation batch (B, obs_dim) to the
*deterministic* action (B, act_dim) in physical units: the SB3 action in the action space's box
(PPO: the Gaussian mean clipped to the box, as ``model.predict(deterministic=True)``; SAC: the
tanh-squashed mean mapped onto the box), then ``scale · a + offset``. ``attributes`` (int/float/str) are stored on the
module for loaders to check (e.g. ``n_obstacles``, ``observation_version``, ``action_kind``).
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hiopt_ros.progress import progress_bar

ALGOS = ("ppo", "sac")


@dataclass
class RLConfig:
    """Hyperparameters of one training run (SB3 names; defaults suit small continuous-control tasks)."""

    algo: str = "ppo"                    # "ppo" | "sac"
    total_steps: int = 200_000           # env steps (summed over the n_envs copies)
    n_envs: int = 2
    seed: int = 0
    vec: str = "subproc"                 # "subproc" (one process per env) | "dummy" (in this process)
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = 3e-4
    gamma: float = 0.99
    # PPO
    n_steps: int = 1024                  # rollout length per env between updates
    batch_size: int = 256
    n_epochs: int = 10
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    log_std_init: float = -0.5
    # SAC
    buffer_size: int = 300_000
    learning_starts: int = 2_000
    train_freq: int = 1
    gradient_steps: int = 1
    tau: float = 0.005
    # bookkeeping
    checkpoint_every: int = 0            # env steps between checkpoints (0: none)
    curve_keys: tuple[str, ...] = ()     # info keys logged per episode (Monitor) and drawn as rates
    extra: dict[str, Any] = field(default_factory=dict)   # more keyword arguments for the SB3 class
    # policy network: SB3's "MlpPolicy", or "package.module:Class" of a custom policy class (e.g. a
    # network shared over a graph's nodes); policy_kwargs are added to the ones built from the fields above
    policy: str = "MlpPolicy"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        if self.vec not in ("subproc", "dummy"):
            raise ValueError(f"vec must be 'subproc' or 'dummy', got {self.vec!r}")
        for name in ("total_steps", "n_envs", "n_steps", "batch_size", "n_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RLConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        self.net_arch = tuple(int(n) for n in self.net_arch)
        self.curve_keys = tuple(self.curve_keys)


@dataclass
class TrainResult:
    model: Any                           # the trained SB3 model
    out_dir: Path
    env_steps: int
    wall_s: float
    episodes: int
    last_returns: list[float]            # returns of the last (up to 100) episodes

    @property
    def steps_per_s(self) -> float:
        """Training throughput: env steps per wall-clock second of ``learn`` (env + updates)."""
        return self.env_steps / self.wall_s if self.wall_s > 0 else float("nan")

    def report(self) -> str:
        ret = (f"{np.mean(self.last_returns):.3f} ± {np.std(self.last_returns):.3f}"
               if self.last_returns else "n/a")
        return (f"trained {self.env_steps} env steps in {self.wall_s:.0f} s ({self.steps_per_s:.0f} steps/s), "
                f"{self.episodes} episodes; return of the last {len(self.last_returns)}: {ret}")


# ---------------------------------------------------------------------------- vectorised envs
def make_vec_env(make_env: Callable[[int], Any], n_envs: int, *, vec: str = "subproc",
                 monitor_dir: str | Path | None = None, info_keywords: Sequence[str] = (), seed: int = 0):
    """``n_envs`` copies of ``make_env(rank)`` wrapped in SB3 Monitors (episode stats to
    ``monitor_dir/<rank>.monitor.csv``), as a SubprocVecEnv or DummyVecEnv, seeded seed + rank."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [_MonitoredEnv(make_env, rank, None if monitor_dir is None else str(monitor_dir), tuple(info_keywords))
           for rank in range(n_envs)]
    venv = SubprocVecEnv(fns, start_method="forkserver") if vec == "subproc" and n_envs > 1 else DummyVecEnv(fns)
    venv.seed(seed)
    return venv


class _MonitoredEnv:
    """Picklable thunk: build env `rank` in the worker and wrap it in a Monitor."""

    def __init__(self, make_env, rank: int, monitor_dir: str | None, info_keywords: tuple[str, ...]) -> None:
        self.make_env, self.rank, self.monitor_dir, self.info_keywords = make_env, rank, monitor_dir, info_keywords

    def __call__(self):
        from stable_baselines3.common.monitor import Monitor

        env = self.make_env(self.rank)
        filename = None
        if self.monitor_dir is not None:
            os.makedirs(self.monitor_dir, exist_ok=True)
            filename = os.path.join(self.monitor_dir, str(self.rank))
        return Monitor(env, filename=filename, info_keywords=self.info_keywords)


# ---------------------------------------------------------------------------- callbacks
def _callbacks(cfg: RLConfig, out_dir: Path, progress: bool):
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback

    class TqdmProgress(BaseCallback):
        """Progress bar over env steps with the recent mean return (and curve_keys rates)."""

        def __init__(self) -> None:
            super().__init__()
            self.bar = None
            self.returns: list[float] = []
            self.rates: dict[str, list[float]] = {k: [] for k in cfg.curve_keys}

        def _on_training_start(self) -> None:
            self.bar = progress_bar(total=cfg.total_steps, enabled=progress, desc=f"{cfg.algo} training",
                                    unit="step", smoothing=0.05)

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            for info in self.locals.get("infos", []):
                ep = info.get("episode")
                if ep is not None:
                    self.returns.append(float(ep["r"]))
                    for k in cfg.curve_keys:
                        if k in info:
                            self.rates[k].append(float(info[k]))
            if self.n_calls % 50 == 0 and self.returns:
                post = {"return": f"{np.mean(self.returns[-50:]):.2f}", "episodes": len(self.returns)}
                post.update({k: f"{np.mean(v[-50:]):.2f}" for k, v in self.rates.items() if v})
                self.bar.set_postfix(post, refresh=False)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    cbs = [TqdmProgress()]
    if cfg.checkpoint_every > 0:
        cbs.append(CheckpointCallback(save_freq=max(cfg.checkpoint_every // cfg.n_envs, 1),
                                      save_path=str(out_dir / "checkpoints"), name_prefix=cfg.algo))
    return CallbackList(cbs), cbs[0]


# ---------------------------------------------------------------------------- training
def build_model(cfg: RLConfig, venv, tensorboard_dir: str | None = None):
    """The SB3 model of ``cfg`` on ``venv`` (PPO or SAC, MLP policy, CPU)."""
    import torch
    from stable_baselines3 import PPO, SAC

    torch.set_num_threads(1)  # the machine's cores go to the env workers; small MLPs gain nothing
    if cfg.algo == "ppo":
        policy_kwargs = dict(net_arch=dict(pi=list(cfg.net_arch), vf=list(cfg.net_arch)),
                             log_std_init=cfg.log_std_init)
        kw = dict(n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                  gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef)
        cls = PPO
    else:
        policy_kwargs = dict(net_arch=list(cfg.net_arch))
        kw = dict(buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts, batch_size=cfg.batch_size,
                  train_freq=cfg.train_freq, gradient_steps=cfg.gradient_steps, tau=cfg.tau)
        cls = SAC
    kw.update(cfg.extra)
    policy_kwargs.update(cfg.policy_kwargs)
    return cls(_policy_class(cfg.policy), venv, learning_rate=cfg.learning_rate, gamma=cfg.gamma, seed=cfg.seed,
               policy_kwargs=policy_kwargs, tensorboard_log=tensorboard_dir, device="cpu", verbose=0, **kw)


def _policy_class(policy: str):
    """SB3's policy name as is; "package.module:Class" imported (one-line error if it is not there)."""
    if ":" not in policy:
        return policy
    import importlib
    mod, _, name = policy.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"RLConfig.policy {policy!r}: cannot import it ({e})") from None


def train(make_env: Callable[[int], Any], cfg: RLConfig, out_dir: str | Path, *, progress: bool | None = None,
          init_model: str | Path | None = None, init_std: float | None = None) -> TrainResult:
    """Train ``cfg.algo`` on ``cfg.n_envs`` copies of ``make_env(rank)``; write the files listed in the
    module docstring into ``out_dir``. ``init_model``: an SB3 zip to continue from (fine-tuning);
    ``init_std``: with it, PPO's Gaussian std (action-space units, every action dimension) is reset to
    this before continuing (less exploration noise, closer to the deterministic policy deployed).
    ``progress``: tqdm bar on stderr (default: when stderr is a terminal). The model zip and the
    learning curve are written even when training is interrupted (Ctrl-C), then the exception is
    re-raised."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = sys.stderr.isatty() if progress is None else progress
    venv = make_vec_env(make_env, cfg.n_envs, vec=cfg.vec, monitor_dir=out_dir / "monitor",
                        info_keywords=cfg.curve_keys, seed=cfg.seed)
    try:
        if init_model is not None:
            model = _algo_class(cfg.algo).load(str(init_model), env=venv, device="cpu",
                                               tensorboard_log=str(out_dir / "tb"))
            if init_std is not None:
                import torch

                if not hasattr(model.policy, "log_std"):
                    raise ValueError(f"init_std: {cfg.algo} has no state-independent log_std to reset")
                with torch.no_grad():
                    model.policy.log_std.fill_(math.log(init_std))
        else:
            model = build_model(cfg, venv, str(out_dir / "tb"))
        callback, bar = _callbacks(cfg, out_dir, progress)
        steps_before = int(model.num_timesteps)
        t0 = time.perf_counter()
        try:
            model.learn(total_timesteps=cfg.total_steps, callback=callback, tb_log_name=cfg.algo,
                        reset_num_timesteps=init_model is None)
        finally:
            wall = time.perf_counter() - t0
            model.save(str(out_dir / "model.zip"))
            plot_learning_curve(out_dir / "monitor", out_dir / "learning_curve.png", keys=cfg.curve_keys,
                                title=f"{cfg.algo.upper()} learning curve ({out_dir.name})")
        steps = int(model.num_timesteps) - steps_before  # whole rollouts: may exceed total_steps
        result = TrainResult(model, out_dir, steps, wall, len(bar.returns), bar.returns[-100:])
        (out_dir / "train.json").write_text(json.dumps({
            "config": _jsonable(asdict(cfg)), "env_steps": result.env_steps, "wall_s": result.wall_s,
            "train_steps_per_s": result.steps_per_s, "episodes": result.episodes,
            "last_returns_mean": float(np.mean(result.last_returns)) if result.last_returns else None,
        }, indent=2) + "\n")
        return result
    finally:
        venv.close()


def _algo_class(algo: str):
    from stable_baselines3 import PPO, SAC

    return {"ppo": PPO, "sac": SAC}[algo]


def load_model(path: str | Path, algo: str):
    """An SB3 model zip written by :func:`train` (for evaluation or further training)."""
    return _algo_class(algo).load(str(path), device="cpu")


def measure_env_steps_per_s(env, n_steps: int = 1000, seed: int = 0) -> float:
    """Env steps per second with uniformly random actions (resets included); the env's own cost."""
    env.action_space.seed(seed)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------- learning curve
def read_monitor(monitor_dir: str | Path) -> dict[str, np.ndarray]:
    """Episodes of all Monitor files in ``monitor_dir`` sorted by wall time: {"r", "l", "t", "steps",
    <info keys>}; ``steps`` is the cumulative env steps at each episode's end (summed over envs)."""
    rows: list[dict[str, str]] = []
    for path in sorted(Path(monitor_dir).glob("*.monitor.csv")):
        with open(path) as fh:
            fh.readline()  # the JSON header line
            rows.extend(csv.DictReader(fh))
    rows.sort(key=lambda r: float(r["t"]))
    out: dict[str, np.ndarray] = {}
    keys = rows[0].keys() if rows else ("r", "l", "t")
    for k in keys:
        vals = []
        for r in rows:
            v = r.get(k, "")
            vals.append(1.0 if v == "True" else 0.0 if v == "False" else float(v) if v not in ("", None) else math.nan)
        out[k] = np.asarray(vals, dtype=float)
    out["steps"] = np.cumsum(out.get("l", np.zeros(0)))
    return out


def plot_learning_curve(monitor_dir: str | Path, out_png: str | Path, *, keys: Sequence[str] = (),
                        window: int = 50, title: str = "learning curve") -> Path | None:
    """Episode return (moving average over ``window`` episodes, raw as dots) vs env steps, plus a
    panel with the moving rates of ``keys`` (e.g. success, collision); also writes the data as CSV
    next to the PNG. Returns the PNG path, or None when no episode has finished yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_monitor(monitor_dir)
    if len(data.get("r", [])) == 0:
        return None
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)

    def smooth(x: np.ndarray) -> np.ndarray:
        w = max(1, min(window, len(x)))
        c = np.cumsum(np.insert(x, 0, 0.0))
        head = c[1:w] / np.arange(1, w)
        return np.concatenate([head, (c[w:] - c[:-w]) / w])

    keys = [k for k in keys if k in data]
    fig, axes = plt.subplots(2 if keys else 1, 1, figsize=(7, 5.5 if keys else 3.5), dpi=110, sharex=True,
                             squeeze=False)
    ax = axes[0, 0]
    ax.plot(data["steps"], data["r"], ".", markersize=2, alpha=0.25, color="tab:blue")
    ax.plot(data["steps"], smooth(data["r"]), color="tab:blue", label=f"return ({window}-episode mean)")
    ax.set_ylabel("episode return")
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    if keys:
        ax2 = axes[1, 0]
        for k in keys:
            ax2.plot(data["steps"], smooth(data[k]), label=f"{k} rate")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_ylabel("rate")
        ax2.grid(True, alpha=0.4)
        ax2.legend(loc="center right", fontsize=8)
    axes[-1, 0].set_xlabel("env steps")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    cols = ["steps", "r", "l", *keys]
    with open(out_png.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["env_steps", "return", "length", *keys])
        for i in range(len(data["r"])):
            w.writerow([f"{data[c][i]:.6g}" for c in cols])
    return out_png


# ---------------------------------------------------------------------------- export
def deterministic_actor(model):
    """A torch module obs (B, n) -> deterministic action (B, m) in the action space's box, for PPO or SAC."""
    import torch
    from stable_baselines3 import PPO, SAC

    space = model.action_space
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)

    if isinstance(model, PPO):
        policy = model.policy

        class _PpoActor(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features = policy.pi_features_extractor
                self.mlp = policy.mlp_extractor.policy_net
                self.action_net = policy.action_net
                self.register_buffer("low", low)
                self.register_buffer("high", high)

            def forward(self, obs: torch.Tensor) -> torch.Tensor:
                mean = self.action_net(self.mlp(self.features(obs)))
                return torch.maximum(torch.minimum(mean, self.high), self.low)  # what predict() clips to

        return _PpoActor()
    if isinstance(model, SAC):
        actor = model.policy.actor

        class _SacActor(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features = actor.features_extractor
                self.latent = actor.latent_pi
                self.mu = actor.mu
                self.register_buffer("low", low)
                self.register_buffer("high", high)

            def forward(self, obs: torch.Tensor) -> torch.Tensor:
                squashed = torch.tanh(self.mu(self.latent(self.features(obs))))   # SAC's deterministic action
                return self.low + 0.5 * (squashed + 1.0) * (self.high - self.low)  # SB3's unscale_action

        return _SacActor()
    raise TypeError(f"cannot export a {type(model).__name__}; expected PPO or SAC")


def export_torchscript(model, path: str | Path, *, scale: Sequence[float] | None = None,
                       offset: Sequence[float] | None = None, attributes: dict[str, Any] | None = None,
                       check: bool = True) -> Path:
    """Save the deterministic policy as TorchScript (``torch.jit.save``): obs (B, n) float32 ->
    ``scale · a + offset`` (B, m), with ``attributes`` stored on the module. With ``check``, the saved
    file is reloaded and compared with ``model.predict(deterministic=True)`` on random observations."""
    import copy

    import torch

    n_obs = int(np.prod(model.observation_space.shape))
    n_act = int(np.prod(model.action_space.shape))
    actor = copy.deepcopy(deterministic_actor(model)).eval()
    traced = torch.jit.trace(actor, torch.zeros(1, n_obs), check_trace=False)
    scale_t = torch.as_tensor(np.ones(n_act) if scale is None else np.asarray(scale, float), dtype=torch.float32)
    offset_t = torch.as_tensor(np.zeros(n_act) if offset is None else np.asarray(offset, float), dtype=torch.float32)
    if scale_t.shape != (n_act,) or offset_t.shape != (n_act,):
        raise ValueError(f"scale and offset must have {n_act} entries (the action size)")

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor = traced
            self.register_buffer("scale", scale_t)
            self.register_buffer("offset", offset_t)
            for name, value in (attributes or {}).items():
                if not isinstance(value, (int, float, str)) or isinstance(value, bool):
                    raise TypeError(f"attribute {name!r} must be int, float or str, got {type(value).__name__}")
                setattr(self, name, value)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.actor(obs) * self.scale + self.offset

    module = torch.jit.script(Exported())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.jit.save(module, str(tmp))
    os.replace(tmp, path)
    if check:
        loaded = torch.jit.load(str(path))
        rng = np.random.default_rng(0)
        obs = rng.normal(0.0, 2.0, size=(16, n_obs)).astype(np.float32)
        with torch.no_grad():
            got = loaded(torch.from_numpy(obs)).numpy()
        want = model.predict(obs, deterministic=True)[0] * scale_t.numpy() + offset_t.numpy()
        if not np.allclose(got, want, atol=1e-4):
            raise RuntimeError(f"exported policy disagrees with model.predict (max |Δ| "
                               f"{np.abs(got - want).max():.2e}); not a supported policy layout")
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
