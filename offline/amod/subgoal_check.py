"""`python -m offline.amod subgoals`: fixed (non-learned) subgoals through both lower levels, before any RL.

What an upper level can expect of an interface (offline.amod.subgoal) is measured with subgoals that
need no learning, on the evaluation seeds, for each shortfall price M:

    absolute: stay              q̂ = q (the absolute form asking for the current idle distribution)
    no rebalancing              q̂ = q − A·g₀ (where the vehicles are after the passenger trips Eq. 25
                                chooses without a subgoal: Eq. 25 then rebalances nothing)
    absolute: demand-proportional   q̂ = w_d·Σq, w_d the next step's expected departures per region
    floor: demand-proportional      the floor form (benchmark §9.1) with w = w_d
    MPC's                       (--mpc) the MPC's implied subgoal at every step (slow: one MPC solve a step)

through Eq. 25 with θ = 0 and with the fitted θ̂. Writes subgoals.md, .csv, _episodes.csv with the reward as a % of
the MPC's on the same demand sample (the MPC is run once per seed).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from offline.amod.config import lower_factory
from offline.amod.mpc import AmodMpc
from offline.amod.policies import MpcPolicy, SubgoalPolicy, run_episode
from offline.amod.sim import AmodSim
from offline.amod.subgoal import SubgoalInterface
from sim.results import Metric, ResultsTable

__all__ = ["fixed_subgoals", "run_subgoal_check"]


def fixed_subgoals(sim: AmodSim, lower, with_mpc: bool = False) -> dict:
    """{name: state -> q̂} of the module docstring for this simulator and lower level."""
    N = sim.N
    origin = np.zeros((N, sim.P))
    origin[sim.od[:, 0], np.arange(sim.P)] = 1.0
    floor = SubgoalInterface(form="floor")

    def demand_share(state):
        w = origin @ sim.rate[min(state.t + 1, sim.bins - 1)] + 1e-9
        return w / w.sum()

    def logits_of(w):                 # an action whose softmax(κ·a) is w (up to the box)
        return np.log(w / w.max()) / 3.0

    out = {
        "absolute: stay (q̂ = q)": lambda s: s.idle.astype(float),
        "no rebalancing (q̂ = q − A·g₀)": lambda s: s.idle - lower.A_inc[:, sim.E:] @ lower(s, np.zeros(N))[1],
        "absolute: demand-proportional": lambda s: demand_share(s) * s.idle.sum(),
        "floor: demand-proportional": lambda s: floor.subgoal(sim, s, logits_of(demand_share(s)), lower),
    }
    if with_mpc:
        mpc = AmodMpc(sim)

        def mpc_subgoal(s):
            d = mpc.decide(s)
            f, g, _ = sim.clip(d.f, d.g)
            return lower.implied_subgoal(s, f, g)
        out["MPC's (implied q̂)"] = mpc_subgoal
    return out


def run_subgoal_check(spec, theta_path: str | None, prices, seeds, out: Path, with_mpc: bool = False, log=print):
    """The table of the module docstring; returns {"paths", "table"}."""
    sim = AmodSim(spec.build())
    mpc = MpcPolicy(sim)
    ref = {}
    for s in seeds:
        ref[s] = run_episode(sim, mpc, s).reward
    log(f"[subgoals] MPC on seeds {seeds[0]}–{seeds[-1]}: {np.mean(list(ref.values())):.1f}")
    table = ResultsTable("Fixed subgoals through Eq. 25 (no RL)",
                         [Metric("reward", "Reward", "", ".1f", higher_is_better=True),
                          Metric("reward_pct_mpc", "Reward vs MPC", "%", ".1f", higher_is_better=True),
                          Metric("served", "Served demand", "", ".1f", higher_is_better=True),
                          Metric("rebalancing_cost", "Rebalancing cost", "", ".0f", higher_is_better=None)])
    lowers = [("θ = 0", None)] + ([("θ̂", theta_path)] if theta_path else [])
    for lname, th in lowers:
        for price in prices:
            itf = SubgoalInterface(shortfall_price=price)
            lower = lower_factory(th, interface=itf)(sim)
            m = "inf (Remark 3)" if math.isinf(price) else f"{price:g}"
            for name, fn in fixed_subgoals(sim, lower, with_mpc).items():
                row = f"{lname}, M = {m} · βΔ: {name}"
                for s in seeds:
                    r = run_episode(sim, SubgoalPolicy(fn, lower), s)
                    table.add(row, {"reward": r.reward, "reward_pct_mpc": 100.0 * r.reward / ref[s],
                                    "served": r.served, "rebalancing_cost": r.totals["reb_cost"]})
                log(f"[subgoals] {row}: {np.mean(table.values(row, 'reward')):.1f} "
                    f"({np.mean(table.values(row, 'reward_pct_mpc')):.1f} % of the MPC)")
    notes = [f"scenario {spec.key}; evaluation seeds {seeds[0]}–{seeds[-1]}; MPC "
             f"{np.mean(list(ref.values())):.1f} ± {np.std(list(ref.values())):.1f}",
             "M = shortfall price of Eq. 25 per missing subgoal vehicle, in vehicle-steps of operating cost (βΔ)",
             f"θ̂: {theta_path}" if theta_path else "θ̂: none given"]
    paths = table.write(out, "subgoals", notes=notes)
    return {"paths": paths, "table": table}
