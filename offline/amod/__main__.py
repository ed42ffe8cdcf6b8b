"""python -m offline.amod <command>: the AMoD case study's steps one by one (Table 1 runs them all).

    scenario   print a scenario's summary; --write-json FILE writes a synthetic benchmark-format file
    demos      MPC demonstrations → .npz
    fit        inverse fit of θ (Problem 11) from demonstrations → θ file with provenance, validated
               on held-out demonstrations (cosine, Manhattan vs θ = 0)
    imitation  θ = 0 and θ files at held-out demonstrations (cosine, Manhattan of f and g); --ties:
               also the closest optimal solution of each (how much of the gap LP ties explain)
    train      RL training of one method's policy (sim.rl)
    stream     the benchmark's protocol (one seeded stream of episodes): the §15 reference table
    subgoals   fixed (non-learned) subgoals through both lower levels per shortfall price (offline.amod.subgoal)
    fleet-sweep  held-out imitation of θ = 0 and θ̂ against the fleet size (where the learned lower level matters)
    bench      loader + MPC + lower level + RL step at scale (default: 17 regions, ~26,000 demand
               records, 1,500 vehicles), time per step
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hiopt_ros.control.theta import load_theta
from offline.amod.bench import run_bench
from offline.amod.benchmark import benchmark_requests, matching_flows, preset_table
from offline.amod.config import (
    DEMO_SEED0,
    HELD_OUT_SEED0,
    add_scenario_arguments,
    add_theta_form_arguments,
    auto_candidates,
    auto_theta_form,
    spec_from_args,
    theta_form,
)
from offline.amod.demos import load_demos
from offline.amod.fit import closest_optimal, imitation, imitation_table
from offline.amod.fleet_sweep import run_fleet_sweep
from offline.amod.mpc import AmodMpc
from offline.amod.pipeline import ensure_demos, ensure_policy, ensure_theta, ensure_theta_auto, method_dir
from offline.amod.scenario import SIZES, write_benchmark_json
from offline.amod.sim import AmodSim
from offline.amod.subgoal import add_interface_arguments, interface_from_args
from offline.amod.subgoal_check import run_subgoal_check


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_scenario(args) -> int:
    if args.write_json:
        info = write_benchmark_json(args.write_json, n_regions=args.regions, fleet=args.json_fleet, seed=args.json_seed)
        print(f"wrote {info['path']} ({info['regions']} regions, {info['records']} demand records)")
        return 0
    print(spec_from_args(args).build().summary())
    return 0


def cmd_demos(args) -> int:
    d = ensure_demos(spec_from_args(args), args.out, args.seed, args.episodes, _log)
    print(f"{args.out}: {len(d)} samples, MPC reward {np.mean(d.episode_reward):.1f} ± {np.std(d.episode_reward):.1f}")
    return 0


def cmd_fit(args) -> int:
    spec = spec_from_args(args)
    demos, held = load_demos(args.demos), load_demos(args.held_out)
    for name, d in (("demos", demos), ("held-out", held)):
        if d.meta.get("spec") not in (None, spec.to_dict()):
            raise ValueError(f"{name} {d.meta.get('file')} were recorded on another scenario "
                             f"({d.meta.get('spec')}); pass the same scenario options")
    overlap = set(demos.meta.get("seeds", [])) & set(held.meta.get("seeds", []))
    if overlap:
        raise ValueError(f"held-out demonstrations share seeds {sorted(overlap)[:5]} with the training ones")
    if auto_theta_form(args):
        ensure_theta_auto(spec, demos, held, args.out, candidates=auto_candidates(args), rho=args.rho,
                          time_limit_s=args.time_limit, log=_log, fit_episodes=args.episodes, force=True)
        return 0
    K, cost_terms = theta_form(args)
    ensure_theta(spec, demos, held, args.out, K=K, rho=args.rho, time_limit_s=args.time_limit,
                 log=_log, l=args.l, method=args.method, force=True, fit_episodes=args.episodes,
                 restarts=args.restarts, cost_terms=cost_terms)
    return 0


def cmd_imitation(args) -> int:
    spec = spec_from_args(args)
    held = load_demos(args.held_out)
    if held.meta.get("spec") not in (None, spec.to_dict()):
        raise ValueError(f"{args.held_out} was recorded on another scenario ({held.meta.get('spec')}); pass the "
                         f"same scenario options")
    sim = AmodSim(spec.build())
    rows, ties = [], []
    for path in [None, *args.theta]:
        theta = load_theta(path) if path is not None else None
        if theta is not None:
            seeds = set(theta.provenance.get("demo_seeds") or []) & set(held.meta.get("seeds") or [])
            if seeds:
                raise ValueError(f"θ {path} was fitted on demand seeds {sorted(seeds)[:5]} of {args.held_out}")
        name = "θ = 0" if path is None else str(path)
        rows.append((name, imitation(sim, held, theta)))
        if args.ties:
            m = closest_optimal(sim, held, theta)
            rows.append((f"{name}: closest optimal solution", m))
            ties.append(f"{name}: the expert's flows are optimal at {100 * m['expert_optimal']:.0f} % of the states; "
                        f"regret mean {m['regret_mean']:.2f}, median {m['regret_median']:.2f}")
    print(f"## Imitation of MPC at {len(held)} held-out states (seeds {held.meta.get('seeds')})\n")
    print(imitation_table(rows))
    for line in ties:
        print(line)
    return 0


def cmd_train(args) -> int:
    out = args.out or Path("results/amod") / spec_from_args(args).key / "rl" / method_dir(args.method)
    if args.method == "Bi-level-learned" and args.theta is None:
        raise ValueError("Bi-level-learned needs --theta (a fitted θ file)")
    bc = load_demos(args.bc_demos) if args.bc_demos else None
    ensure_policy(spec_from_args(args), args.method, out, args.theta, steps=args.steps, algo=args.algo,
                  seed=args.seed, log=_log, force=True, bc_demos=bc, bc_steps=args.bc_steps, network=args.policy_net,
                  interface=interface_from_args(args))
    return 0


def cmd_stream(args) -> int:
    """The benchmark's evaluation protocol (§14): one RandomState(seed) stream, episode k its k+1-th draw."""
    spec = spec_from_args(args)
    sc = spec.build()
    if sc.sampling != "benchmark":
        raise ValueError("stream needs a benchmark scenario (--scenario PRESET or --scenario-json FILE)")
    sim = AmodSim(sc)
    reqs = benchmark_requests(sc.demand_rate, sc.draw_order, args.seed, episodes=args.episodes)
    mpc = None
    if args.policy == "mpc":
        mpc = AmodMpc(sim)
    print(f"{sc.summary()}\npolicy: {args.policy}; benchmark defects: {', '.join(spec.defects) or 'none'}; "
          f"RandomState({args.seed}) stream, episodes 1–{args.episodes}\n")
    print("| episode | requests | served | revenue | passenger op. cost | rebalancing cost | lost vehicles | return |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rets = []
    for e in range(args.episodes):
        state = sim.reset(args.seed, requests=reqs[e][:, sim.od[:, 0], sim.od[:, 1]])
        while not sim.done:
            if mpc is None:
                f, g = np.zeros(sim.E), matching_flows(sim, state)
            else:
                d = mpc.decide(state)
                f, g = d.f, d.g
            sim.step(f, g)
            sim.check_conservation()
            state = sim.state()
        t = sim.totals
        rets.append(t["reward"])
        print(f"| {e + 1} | {t['requests']:.0f} | {t['served']:.0f} | {t['revenue']:.2f} | {t['pax_cost']:.2f} | "
              f"{t['reb_cost']:.2f} | {t['lost']:.0f} | {t['reward']:.2f} |")
    print(f"\nmean return {np.mean(rets):.2f}, population std {np.std(rets):.2f}")
    return 0


def cmd_fleet_sweep(args) -> int:
    run_fleet_sweep(args, _log)
    return 0


def cmd_subgoals(args) -> int:
    import math

    try:
        prices = [math.inf if v.strip() == "inf" else float(v) for v in args.prices.split(",") if v.strip()]
    except ValueError:
        prices = []
    if not prices or any(not p > 0 for p in prices):
        raise ValueError(f"--prices {args.prices!r}: a comma list of numbers > 0 or 'inf'")
    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    if args.theta is not None and not Path(args.theta).exists():
        raise FileNotFoundError(f"θ file {args.theta} does not exist")
    seeds = list(range(args.eval_seed, args.eval_seed + args.episodes))
    res = run_subgoal_check(spec_from_args(args), str(args.theta) if args.theta else None, prices, seeds, args.out,
                            with_mpc=args.mpc, log=_log)
    print(res["table"].markdown())
    print(f"wrote {', '.join(str(p) for p in res['paths'].values())}")
    return 0


def cmd_bench(args) -> int:
    run_bench(args, _log)
    return 0


PRESETS_EPILOG = ("scenario presets (--scenario NAME; the published settings of the public AMoD benchmark, "
                  "AMOD_BENCHMARK.md §13: start hour h0, step Δ [min], demand ratio r, operating cost β per "
                  "vehicle-minute, steps per episode T, network; any option overrides its field):\n\n" + preset_table()
                  + "\n\nsynthetic scenarios (tests, scaling): --scenario " + "|".join(SIZES))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m offline.amod", description=__doc__.split("\n\n")[0],
                                epilog=PRESETS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    add_parser = sub.add_parser

    def _add(name, **kw):
        kw.setdefault("epilog", PRESETS_EPILOG)
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        return add_parser(name, **kw)
    sub.add_parser = _add

    s = sub.add_parser("scenario", help="print a scenario summary or write a benchmark-format JSON")
    add_scenario_arguments(s)
    s.add_argument("--write-json", type=Path, default=None, help="write a synthetic scenario in the benchmark format")
    s.add_argument("--regions", type=int, default=17, help="--write-json: regions (default 17)")
    s.add_argument("--json-fleet", type=int, default=1500, help="--write-json: fleet size (default 1500)")
    s.add_argument("--json-seed", type=int, default=0, help="--write-json: seed")
    s.set_defaults(func=cmd_scenario)

    s = sub.add_parser("demos", help="MPC demonstrations → .npz")
    add_scenario_arguments(s)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--episodes", type=int, default=20)
    s.add_argument("--seed", type=int, default=DEMO_SEED0,
                   help=f"first demand seed (training demos {DEMO_SEED0}…, held-out {HELD_OUT_SEED0}…)")
    s.set_defaults(func=cmd_demos)

    s = sub.add_parser("fit", help="fit θ (Problem 11) from demonstrations, validate on held-out ones")
    add_scenario_arguments(s)
    s.add_argument("demos", type=Path, help="training demonstrations (.npz from `demos`)")
    s.add_argument("--held-out", type=Path, required=True, help="held-out demonstrations (other seeds)")
    s.add_argument("--out", type=Path, required=True, help="θ file to write (atomically)")
    add_theta_form_arguments(s)
    s.add_argument("--l", type=float, default=None, help="l of Problem 11 (default offline.amod.fit.FIT_L)")
    s.add_argument("--rho", type=float, default=1e-2)
    s.add_argument("--method", default="alternating", choices=("alternating", "global", "auto"))
    s.add_argument("--time-limit", type=float, default=900.0, help="seconds")
    s.add_argument("--episodes", type=int, default=None,
                   help="fit on the first N demonstration episodes (default: all)")
    s.add_argument("--restarts", type=int, default=2, help="random starts of the alternating method (default 2)")
    s.set_defaults(func=cmd_fit)

    s = sub.add_parser("imitation", help="θ = 0 and θ files at held-out demonstrations (Table 5 metrics)")
    add_scenario_arguments(s)
    s.add_argument("held_out", type=Path, help="held-out demonstrations (.npz from `demos`)")
    s.add_argument("--theta", type=Path, nargs="*", default=[], help="θ files to compare with θ = 0")
    s.add_argument("--ties", action="store_true",
                   help="also the optimal solution of Eq. 25 closest to the expert's flows (LP ties)")
    s.set_defaults(func=cmd_imitation)

    s = sub.add_parser("train", help="train one method's RL policy")
    add_scenario_arguments(s)
    s.add_argument("--method", required=True, choices=("Bi-level-unchanged", "Bi-level-learned", "End-to-end RL"))
    s.add_argument("--theta", type=Path, default=None, help="θ file (Bi-level-learned)")
    s.add_argument("--steps", type=int, default=200_000)
    s.add_argument("--algo", default="ppo", choices=("ppo", "sac"))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=None, help="run folder (default results/amod/<scenario>/rl/<method>)")
    s.add_argument("--bc-demos", type=Path, default=None,
                   help="MPC demonstrations (.npz) to warm-start the policy by behaviour cloning (default: none)")
    s.add_argument("--bc-steps", type=int, default=3000, help="behaviour-cloning Adam steps (default 3000)")
    s.add_argument("--policy-net", default="itemwise", choices=("itemwise", "mlp"),
                   help="policy network: shared over regions/pairs (default) or SB3's MLP")
    add_interface_arguments(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("stream", help="the benchmark's own protocol: consecutive episodes of one seeded stream "
                                      "(no-rebalancing matching policy or the MPC), the §15 table")
    add_scenario_arguments(s)
    s.add_argument("--policy", default="matching", choices=("matching", "mpc"),
                   help="matching: the benchmark's matching LP without rebalancing (§15's reference policy); "
                        "mpc: the oracle MPC")
    s.add_argument("--seed", type=int, default=10, help="the benchmark's --seed (default 10)")
    s.add_argument("--episodes", type=int, default=10, help="episodes of the stream (default 10)")
    s.set_defaults(func=cmd_stream)

    s = sub.add_parser("fleet-sweep", help="held-out imitation of θ = 0 and θ̂ against the fleet size (+ PNG)")
    add_scenario_arguments(s)
    s.add_argument("--fleets", default="300,500,700,1000,1498", help="fleet sizes, comma-separated "
                   "(default 300,500,700,1000,1498)")
    s.add_argument("--demo-episodes", type=int, default=10, help="MPC training episodes per fleet (default 10)")
    s.add_argument("--held-out-episodes", type=int, default=5, help="held-out MPC episodes per fleet (default 5)")
    add_theta_form_arguments(s)
    s.add_argument("--rho", type=float, default=1e-2)
    s.add_argument("--time-limit", type=float, default=300.0, help="seconds per fit (default 300)")
    s.add_argument("--work-dir", type=Path, default=Path("results/amod"), help="cache of demonstrations and θ "
                   "(default results/amod, the Table 1 pipeline's)")
    s.add_argument("--out", type=Path, default=Path("results/amod_fleet_sweep"), help="folder of the table and plot")
    s.set_defaults(func=cmd_fleet_sweep)

    s = sub.add_parser("subgoals", help="fixed (non-learned) subgoals through both lower levels, per shortfall price",
                       description="Fixed subgoals (stay, no rebalancing, demand-proportional in the absolute and "
                                   "floor forms, optionally the MPC's) through Eq. 25 with θ = 0 and θ̂, for each "
                                   "shortfall price, on evaluation seeds; reward as a %% of the MPC's.")
    add_scenario_arguments(s)
    s.add_argument("--theta", type=Path, default=None, help="θ̂ file (default: only θ = 0)")
    s.add_argument("--prices", default="inf,2.5",
                   help="shortfall prices M in vehicle-steps of operating cost, comma list ('inf': Remark 3's "
                        "large M; default inf,2.5)")
    s.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default 10)")
    s.add_argument("--eval-seed", type=int, default=10_000, help="first evaluation seed (default 10000)")
    s.add_argument("--mpc", action="store_true", help="also the MPC's own implied subgoals (one MPC solve a step)")
    s.add_argument("--out", type=Path, default=Path("results/amod_subgoals"),
                   help="output folder (default results/amod_subgoals)")
    s.set_defaults(func=cmd_subgoals)

    s = sub.add_parser("bench", help="scale benchmark: loader, MPC, lower level, RL step per step",
                       description="Times the loader, the MPC, Eq. 25 and an RL step on any scenario (every scenario "
                                   "option), or on a generated benchmark-format file (--generate-regions N).")
    add_scenario_arguments(s)
    s.add_argument("--generate-regions", type=int, default=None, metavar="N",
                   help="write a synthetic benchmark-format file with N regions (17: ~26,000 demand records) into "
                        "--out and time that (a bare file: --start-hour defaults to 7, its first hour)")
    s.add_argument("--json-fleet", type=int, default=1500,
                   help="--generate-regions: fleet size in the file (default 1500)")
    s.add_argument("--steps", type=int, default=5, help="MPC steps to time (default 5)")
    s.add_argument("--lower-steps", type=int, default=200, help="lower-level solves to time (default 200)")
    s.add_argument("--out", type=Path, default=Path("results/amod_bench"), help="folder for the JSON and report")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"offline.amod {args.cmd}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"offline.amod {args.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
