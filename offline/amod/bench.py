"""Scale benchmark of the AMoD pipeline (`python -m offline.amod bench`).

On any scenario the other commands take (default: the nyc_brooklyn preset; `--generate-regions 17`
writes and uses a 17-region benchmark-format file with one demand record per OD pair every 2
minutes over 3 hours, ~26,000 records, and a 1,500-vehicle fleet) it times:
loading the JSON; the MPC oracle per step (Pyomo build + HiGHS, the whole remaining horizon); the
lower level Eq. 25 per step (HiGHS, updated in place) with θ = 0 and with K = 2 random ReLU terms,
at the MPC's states and subgoals; one RL environment step (upper-level action → Eq. 25 →
simulator); and one upper-level policy forward pass (an SB3 PPO MLP). Medians and p99 in ms,
Markdown in <out>/bench.md.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hiopt_ros.control.theta import Theta
from hiopt_ros.tables import Column, markdown_table
from offline.amod.config import lower_factory, spec_from_args
from offline.amod.envs import AmodBiLevelEnv, observation
from offline.amod.lower import Eq25Fop
from offline.amod.mpc import AmodMpc
from offline.amod.scenario import SIZES, write_benchmark_json
from offline.amod.sim import AmodSim

__all__ = ["run_bench"]


def _stats(ts) -> list[str]:
    """Cells median [ms], p99 [ms], n of times `ts` [s]."""
    t = np.asarray(ts) * 1e3
    return [f"{np.median(t):.2f}", f"{np.percentile(t, 99):.2f}", str(len(t))]


def run_bench(args, log) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.generate_regions:
        path = out / f"scenario_{args.generate_regions}regions.json"
        info = write_benchmark_json(path, n_regions=args.generate_regions, fleet=args.json_fleet)
        log(f"[bench] wrote {path}: {info['regions']} regions, {info['records']} demand records")
        args.scenario_json = str(path)
        if args.scenario not in SIZES:          # the generated file is bare: its own hours, not a preset's
            args.scenario = "tiny"
        if args.start_hour is None:
            args.start_hour = 7.0
    spec = spec_from_args(args)
    t0 = time.perf_counter()
    sc = spec.build()
    load_s = time.perf_counter() - t0
    path = sc.meta.get("file", spec.key)
    log(f"[bench] loaded in {load_s:.2f} s: {sc.summary()}")
    sim = AmodSim(sc)
    mpc = AmodMpc(sim)
    fop0 = Eq25Fop(sim)
    rng = np.random.default_rng(0)
    fopK = Eq25Fop(sim, K=2)
    fopK.set_theta(Theta(alpha=rng.normal(scale=0.5, size=(2, fop0.n)), beta=rng.normal(scale=5, size=2),
                         case_study="amod", input_names=fop0.names))
    state = sim.reset(10_000)
    mpc_build, mpc_solve, states = [], [], []
    for k in range(min(args.steps, sim.T)):
        d = mpc.decide(state)
        mpc_build.append(d.build_time_s)
        mpc_solve.append(d.solve_time_s)
        f, g, _ = sim.clip(d.f, d.g)
        states.append((state, fop0.implied_subgoal(state, f, g)))
        sim.step(f, g)
        sim.check_conservation()
        state = sim.state()
        log(f"[bench] MPC step {k}: build {d.build_time_s:.2f} s, solve {d.solve_time_s:.2f} s")
    lo0, loK, fails = [], [], 0
    for k in range(args.lower_steps):
        st, qh = states[k % len(states)]
        qh = qh if k < len(states) else st.idle.sum() * rng.dirichlet(np.ones(sim.N))
        for fop, acc in ((fop0, lo0), (fopK, loK)):
            t0 = time.perf_counter()
            s = fop.solve(st, qh)
            acc.append(time.perf_counter() - t0)
            fails += not s.ok
    env = AmodBiLevelEnv(sc, lower_factory(None), seeds=[1000])
    env.reset(seed=0)
    env_steps = []
    for k in range(min(args.lower_steps, 100)):
        t0 = time.perf_counter()
        _, _, done, _, _ = env.step(env.action_space.sample())
        env_steps.append(time.perf_counter() - t0)
        if done:
            env.reset()
    import torch
    from stable_baselines3 import PPO
    torch.set_num_threads(1)
    model = PPO("MlpPolicy", env, policy_kwargs=dict(net_arch=[128, 128]), device="cpu", n_steps=64, batch_size=64)
    obs = observation(env.sim, env.sim.state())
    fwd = []
    for _ in range(200):
        t0 = time.perf_counter()
        model.predict(obs, deterministic=True)
        fwd.append(time.perf_counter() - t0)
    mpc_total = np.array(mpc_build) + np.array(mpc_solve)
    speedup = np.median(mpc_total) / (np.median(lo0) + np.median(fwd))
    md = "\n".join([
        f"## AMoD scale benchmark: {sc.summary()}",
        "",
        f"- scenario file: {path} ({sc.meta.get('records')} demand records), loaded in {load_s:.2f} s",
        f"- Eq. 25: {fop0.n} columns (E = {sim.E} rebalancing edges, P = {sim.P} OD pairs, N = {sim.N} ε), "
        f"{fop0.A.shape[0]} rows; MPC: {sim.T}-step horizon from t = 0",
        f"- lower-level solve failures: {fails}",
        "",
        markdown_table([Column("step")] + [Column(h, "right") for h in ("median [ms]", "p99 [ms]", "n")],
                       [[step, *_stats(ts)] for step, ts in (
                           ("MPC (Pyomo build + HiGHS)", mpc_total),
                           ("MPC: Pyomo build only", mpc_build),
                           ("MPC: HiGHS solve (through Pyomo)", mpc_solve),
                           ("lower level Eq. 25, θ = 0 (HiGHS, in place)", lo0),
                           ("lower level Eq. 25, K = 2 ReLU terms", loK),
                           ("upper-level policy forward (PPO MLP 128×128)", fwd),
                           ("RL env step (action → Eq. 25 → simulator)", env_steps))]),
        "",
        f"Bi-level decision (policy + lower level) vs MPC, medians: {speedup:.0f}× faster.",
        ""])
    (out / "bench.md").write_text(md)
    print(md)
    log(f"[bench] wrote {out / 'bench.md'}")
    return {"speedup": float(speedup), "mpc_ms": float(np.median(mpc_total) * 1e3),
            "lower_ms": float(np.median(lo0) * 1e3)}
