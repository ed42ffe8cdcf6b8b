"""MPC demonstrations of the AMoD case study: (state, f, g, implied q̂) per step, saved as one .npz.

`collect(sim, seeds)` runs the perfect-knowledge MPC (offline.amod.mpc) for one episode per seed
and logs, at every step, what Problem 11 needs: the state the decision saw (step, idle vehicles,
vehicles in transit, this step's requests), the applied whole-vehicle flows (f, g) and the subgoal
they imply, q̂ = q − A(f + g) (Eq. 25 with ε = 0 reaches it exactly, so the expert is feasible).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hiopt_ros.progress import progress_bar
from offline.amod.lower import Eq25Fop
from offline.amod.mpc import AmodMpc
from offline.amod.sim import AmodSim, AmodState

__all__ = ["Demos", "collect", "load_demos", "save_demos"]


@dataclass
class Demos:
    """S expert samples. Arrays: episode (S,), seed (S,), t (S,), idle (S, N), arrivals (S, H, N),
    requests (S, P), f (S, E), g (S, P), qhat (S, N); plus per-episode reward/served and the
    scenario's name (a fit refuses demonstrations of another scenario)."""
    scenario: str
    episode: np.ndarray
    seed: np.ndarray
    t: np.ndarray
    idle: np.ndarray
    arrivals: np.ndarray
    requests: np.ndarray
    f: np.ndarray
    g: np.ndarray
    qhat: np.ndarray
    episode_reward: np.ndarray
    episode_served: np.ndarray
    mpc_time_s: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def state(self, k: int) -> AmodState:
        return AmodState(t=int(self.t[k]), idle=self.idle[k].copy(), arrivals=self.arrivals[k].copy(),
                         requests=self.requests[k].copy())

    def subset(self, mask) -> "Demos":
        mask = np.asarray(mask)
        ep_keep = np.unique(self.episode[mask])
        return Demos(self.scenario, self.episode[mask], self.seed[mask], self.t[mask], self.idle[mask],
                     self.arrivals[mask], self.requests[mask], self.f[mask], self.g[mask], self.qhat[mask],
                     self.episode_reward[ep_keep], self.episode_served[ep_keep], self.mpc_time_s[mask], dict(self.meta))


def collect(sim: AmodSim, seeds: Sequence[int], mpc=None, progress: bool = True) -> Demos:
    """Run the MPC expert for one episode per seed and log every step (module docstring)."""
    mpc = mpc or AmodMpc(sim)
    fop = Eq25Fop(sim)          # only for the incidence matrix of the implied subgoal
    rows: dict[str, list] = {k: [] for k in ("episode", "seed", "t", "idle", "arrivals", "requests", "f", "g",
                                             "qhat", "mpc_time_s")}
    ep_reward, ep_served = [], []

    bar = progress_bar(total=len(seeds) * sim.T, enabled=progress, desc="MPC demonstrations", unit="step")
    for e, seed in enumerate(seeds):
        state = sim.reset(int(seed))
        while not sim.done:
            d = mpc.decide(state)
            f, g, _ = sim.clip(d.f, d.g)
            for k, v in (("episode", e), ("seed", int(seed)), ("t", state.t), ("idle", state.idle),
                         ("arrivals", state.arrivals), ("requests", state.requests), ("f", f), ("g", g),
                         ("qhat", fop.implied_subgoal(state, f, g)),
                         ("mpc_time_s", d.build_time_s + d.solve_time_s)):
                rows[k].append(v)
            sim.step(f, g)
            state = sim.state()
            bar.update(1)
        ep_reward.append(sim.totals["reward"])
        ep_served.append(sim.totals["served"])
    bar.close()
    arr = {k: np.asarray(v) for k, v in rows.items()}
    return Demos(scenario=sim.sc.name, episode_reward=np.asarray(ep_reward), episode_served=np.asarray(ep_served),
                 meta={"seeds": [int(s) for s in seeds], "horizon": sim.T}, **arr)


def save_demos(path: str | Path, demos: Demos) -> Path:
    """Write atomically as .npz (meta as JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, scenario=np.array(demos.scenario), episode=demos.episode, seed=demos.seed,
                            t=demos.t, idle=demos.idle, arrivals=demos.arrivals, requests=demos.requests,
                            f=demos.f, g=demos.g, qhat=demos.qhat, episode_reward=demos.episode_reward,
                            episode_served=demos.episode_served, mpc_time_s=demos.mpc_time_s,
                            meta=np.array(json.dumps(demos.meta)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_demos(path: str | Path) -> Demos:
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"AMoD demonstrations not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"AMoD demonstrations {path}: not a readable .npz ({e})") from None
    need = ("scenario", "episode", "seed", "t", "idle", "arrivals", "requests", "f", "g", "qhat")
    missing = [k for k in need if k not in z.files]
    if missing:
        raise ValueError(f"AMoD demonstrations {path}: missing array '{missing[0]}' (write them with "
                         f"python -m offline.amod demos)")
    meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    meta["file"] = str(path)
    meta["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return Demos(scenario=str(z["scenario"]), episode=z["episode"], seed=z["seed"], t=z["t"], idle=z["idle"],
                 arrivals=z["arrivals"], requests=z["requests"], f=z["f"], g=z["g"], qhat=z["qhat"],
                 episode_reward=z["episode_reward"], episode_served=z["episode_served"],
                 mpc_time_s=z["mpc_time_s"], meta=meta)
