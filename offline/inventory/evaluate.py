"""The SCIM benchmark's evaluation loop for the non-learning policies: `python -m offline.inventory.evaluate`.

The benchmark's test mode (SCIM_BENCHMARK.md §9): ``np.random.seed(1010)`` once, then consecutive
episodes from that one stream; returns as mean ± population std. Policies:

    heur         the benchmark's order-up-to heuristic (offline.inventory.heuristic)
    scim-oracle  the benchmark's MPC: horizon 10 with its shipping lag (offline.inventory.mpc.ScimMpc)
    mpc          the project's perfect-knowledge MPC over the whole remaining episode (the bound)
    forecast     the forecast subgoal form's action 0 through Eq. 31: the just-in-time subgoal of the
                 demand the agent observes (offline.inventory.policy_envs), no learning
    absolute     the absolute subgoal form's action 0 through Eq. 31: the middle of every range
    value        Table 1's Value approximation (offline.baselines.value): V fitted on the MPC's
                 demonstrations of demand seeds 0–1 (rank and λ chosen on the last one), no RL
The lower level of the last two is Eq. 31 with θ = 0 and the benchmark LP's objective, or the θ
file of ``--theta`` (with its own objective).

Options named after the benchmark's defects switch each one on (off by default):
``--scim-final-step`` (a 31st step with costs and no demand, §11.3; the published returns were
measured with it), ``--scim-availability-check`` (the heuristic's stock test, §11.6), and
``--no-shipping-lag`` removes the oracle's lag (§11.1) to measure it. Also printed per policy:
the mean cost breakdown, served demand (eventually and on time) and the steps that left a factory
below zero (the environment's per-edge over-shipping, §11.5).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .env import COST_KEYS, InventoryEnv, benchmark_demands
from .fit import load_fop_theta
from .heuristic import OrderUpToHeuristic
from .lower import InventoryFop
from .mpc import InventoryMpc, ScimMpc
from .policy_envs import FixedSubgoalPolicy
from .scenarios import resolve_scenario
from .table1 import value_approximation

__all__ = ["evaluate_policy", "main"]

POLICIES = ("heur", "scim-oracle", "mpc", "forecast", "absolute", "value")


def evaluate_policy(env: InventoryEnv, policy, demands) -> dict:
    """Run `policy` (``act(env) -> decision``) on each demand (T, S); per-episode returns and sums."""
    out = {"returns": [], "served": [], "on_time": [], "factory_negative_steps": 0,
           "costs": {k: 0.0 for k in COST_KEYS}, "revenue": 0.0}
    for d in demands:
        env.reset(options={"demand": d})
        total = served = on_time = 0.0
        done = False
        while not done:
            _, r, done, _, info = env.step(policy.act(env).action)
            total += r
            served += info["served"]
            on_time += info["served_on_time"]
            out["factory_negative_steps"] += int(np.any(info["stock_w"] < -1e-9))
            out["revenue"] += info["revenue"] / len(demands)
            for k in COST_KEYS:
                out["costs"][k] += info["costs"][k] / len(demands)
        out["returns"].append(total)
        out["served"].append(served)
        out["on_time"].append(on_time)
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m offline.inventory.evaluate",
                                 description="The SCIM benchmark's test loop (one seeded stream of episodes) for the "
                                             "heuristic, the benchmark's MPC, the project's MPC and the subgoal "
                                             "forms' action 0 through Eq. 31.")
    ap.add_argument("--scenario", default="1F10S", help="benchmark preset 1F2S, 1F3S or 1F10S (default 1F10S)")
    ap.add_argument("--scenario-file", type=Path, default=None, help="YAML file of your own network instead")
    ap.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated of {', '.join(POLICIES)}")
    ap.add_argument("--seed", type=int, default=1010,
                    help="np.random.seed of the stream (default 1010, the benchmark's)")
    ap.add_argument("--episodes", type=int, default=10, help="test episodes (default 10, the benchmark README's)")
    ap.add_argument("--scim-final-step", action="store_true", help="the benchmark's 31st test step (costs, no demand)")
    ap.add_argument("--scim-availability-check", action="store_true",
                    help="the heuristic's stock test of the benchmark")
    ap.add_argument("--no-shipping-lag", action="store_true", help="the benchmark's MPC without its shipping lag")
    ap.add_argument("--levels", default=None, help="heuristic s_store,s_factory (default: the preset's)")
    ap.add_argument("--theta", type=Path, default=None,
                    help="θ file of the lower level of 'forecast' and 'absolute' (default θ = 0, the benchmark LP's "
                         "objective)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prog = "offline.inventory.evaluate"
    try:
        sc = resolve_scenario(args.scenario, args.scenario_file)
    except ValueError as e:
        print(f"{prog}: {'' if args.scenario_file else '--scenario: '}{e}", file=sys.stderr)
        return 2
    names = [p.strip() for p in args.policies.split(",") if p.strip()]
    bad = [p for p in names if p not in POLICIES]
    if bad or not names:
        print(f"{prog}: --policies: unknown {bad or args.policies!r}; choose from {', '.join(POLICIES)}",
              file=sys.stderr)
        return 2
    if args.episodes < 1:
        print(f"{prog}: --episodes must be >= 1", file=sys.stderr)
        return 2
    levels = None
    if args.levels is not None:
        try:
            levels = tuple(float(x) for x in args.levels.split(","))
            assert len(levels) == 2
        except (ValueError, AssertionError):
            print(f"{prog}: --levels must be two numbers s_store,s_factory, got {args.levels!r}", file=sys.stderr)
            return 2
    try:
        fop = InventoryFop(sc) if args.theta is None else load_fop_theta(sc, args.theta)
    except (OSError, ValueError) as e:
        print(f"{prog}: --theta {args.theta}: {e}", file=sys.stderr)
        return 2
    try:
        policies = {
            "heur": lambda: OrderUpToHeuristic(sc, levels, scim_availability_check=args.scim_availability_check),
            "scim-oracle": lambda: ScimMpc(sc, scim_shipping_lag=not args.no_shipping_lag),
            "mpc": lambda: InventoryMpc(sc),
            "forecast": lambda: FixedSubgoalPolicy(sc, fop, "forecast"),
            "absolute": lambda: FixedSubgoalPolicy(sc, fop, "absolute"),
            "value": lambda: value_approximation(sc),
        }
        built = {n: policies[n]() for n in names}
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    env = InventoryEnv(sc, final_step_without_demand=args.scim_final_step)
    demands = benchmark_demands(sc, args.seed, args.episodes)
    cmd = "python -m offline.inventory.evaluate " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"{sc.name}: seed {args.seed}, {args.episodes} episodes of {env.n_steps} steps; command: {cmd.strip()}")
    print(f"{'policy':12s} {'return mean ± pop. std':>24s} {'served':>8s} {'on time':>8s} {'F<0 steps':>9s}  "
          f"mean per episode: revenue, " + ", ".join(COST_KEYS))
    for n, pol in built.items():
        r = evaluate_policy(env, pol, demands)
        ret = np.asarray(r["returns"])
        print(f"{n:12s} {ret.mean():12.2f} ± {ret.std():9.2f} {np.mean(r['served']):8.1f} {np.mean(r['on_time']):8.1f} "
              f"{r['factory_negative_steps']:9d}  {r['revenue']:.1f}, "
              + ", ".join(f"{r['costs'][k]:.1f}" for k in COST_KEYS))
        print(f"{'':12s} episodes: " + ", ".join(f"{x:.2f}" for x in ret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
