"""Table 1 (right) of the paper, inventory management (SCIM): the case study of the shared runner.

    python -m offline.experiments table1 --case inventory [--scenario 1F10S] [--rl-steps 200000]

Methods (rows, the reference first):
    MPC                 InventoryMpc: perfect demand knowledge over the whole remaining episode, the
                        environment's dynamics exactly; it bounds every other row (module mpc)
    MPC (SCIM oracle)   the benchmark's own oracle: horizon 10, its shipping lag (§8.3, §11.1)
    Bi-level-unchanged  PPO upper level (subgoal: desired production ŵ, desired store stock q̂) →
                        Eq. 31 with θ = 0 (the benchmark LP's objective, offline.inventory.lower)
    End-to-end RL       PPO outputs production and shipments directly (the env clips shipments)
    Bi-level-learned    the same upper level → the lower level the θ fit shipped (θ̂, cost terms
                        or θ = 0, chosen on held-out MPC decisions; offline.inventory.fit)
Optional (``--methods``): ``Heuristic (SCIM)``, the benchmark's order-up-to policy, and
``MPC subgoals → Eq. 31``: Bi-level-unchanged's lower level given the MPC's own (implied) subgoal
every step — the best any upper level can do through that lower level (diagnostic).

Demand of evaluation seed s: ``numpy.random.RandomState(s)`` drawn as the benchmark's first
episode after ``np.random.seed(s)`` (env.InventoryEnv.reset). ``--scim-final-step`` adds the
benchmark's 31st test step (costs, no demand, §5): its published test returns need it.

``prepare`` fits θ (unless ``--theta`` is given) and trains the three policies with the shared
SB3 harness (offline.rl), caching everything under ``<work-dir>/<scenario>/``: ``theta.yaml``,
``<method>/seed<k>/model.zip`` with its logs and ``spec.json``. A second run with the same options
reuses them (``--retrain`` forces new ones). Each bi-level policy is trained against the lower
level it is evaluated with.

Decision time per step: MPC — parameter update + HiGHS solve of the horizon LP; bi-level —
the policy's forward pass + the Eq. 31 solve; end-to-end — the forward pass. The environment's
own step is excluded. Served demand = units delivered within the episode (total demand − backlog
left at the end); ``served_on_time`` (units met in their own step) is an extra column.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from offline.experiments import Episode, Prepared

from .env import InventoryEnv
from .fit import CANDIDATES, HELD_OUT_SEED, fit_theta, load_fop_theta
from .heuristic import OrderUpToHeuristic
from .lower import InventoryFop
from .mpc import InventoryMpc, ScimMpc
from .policy_envs import TRAIN_SEEDS, DirectEnv, SubgoalEnv
from .scenarios import InventoryScenario, resolve_scenario

__all__ = ["CASE", "InventoryTable1", "make_subgoal_env", "make_direct_env"]

RL_METHODS = {"Bi-level-unchanged": "bilevel_unchanged", "End-to-end RL": "end_to_end",
              "Bi-level-learned": "bilevel_learned"}


# ----------------------------------------------------------------------------- env factories (picklable)

def make_subgoal_env(rank: int, scenario_name: str, horizon_steps: int, theta_path: str | None,
                     scenario_file: str | None = None, cost_terms: bool = False, capacity_timing: str = "env"):
    """SubgoalEnv of a scenario with the unchanged FOP (theta_path None; Eq. 31a's cost terms on or
    off) or a θ file's."""
    sc = resolve_scenario(scenario_name, scenario_file, horizon_steps)
    fop = (InventoryFop(sc, cost_terms=cost_terms, capacity_timing=capacity_timing) if theta_path is None
           else load_fop_theta(sc, theta_path))
    return SubgoalEnv(sc, fop)


def make_direct_env(rank: int, scenario_name: str, horizon_steps: int, scenario_file: str | None = None):
    """DirectEnv (end-to-end RL) of a scenario."""
    return DirectEnv(resolve_scenario(scenario_name, scenario_file, horizon_steps))


# ----------------------------------------------------------------------------- the case

@dataclass
class _State:
    scenario: InventoryScenario
    mpc: InventoryMpc
    fops: dict[str, InventoryFop]                 # method -> lower level
    final_step: bool = False                      # the benchmark's 31st test step
    actors: dict[str, Callable] = field(default_factory=dict)   # method -> obs -> action in [−1, 1]
    action_high: dict[str, np.ndarray] = field(default_factory=dict)


class InventoryTable1:
    name = "inventory"
    title = "Table 1 (right): supply-chain inventory management"
    methods = ("MPC", "MPC (SCIM oracle)", "Bi-level-unchanged", "End-to-end RL", "Bi-level-learned")
    optional_methods = ("Heuristic (SCIM)", "MPC subgoals → Eq. 31")

    # ---------------------------------------------------------------- options
    def add_arguments(self, p) -> None:
        p.add_argument("--scenario", default="1F10S", help="SCIM benchmark preset 1F2S, 1F3S or 1F10S (default 1F10S)")
        p.add_argument("--scenario-file", type=Path, default=None,
                       help="YAML file of your own network instead of a preset (keys: offline.inventory.scenarios)")
        p.add_argument("--horizon-steps", type=int, default=None, help="episode length T (default: the scenario's, 30)")
        p.add_argument("--lower-objective", default="benchmark", choices=["benchmark", "eq31"],
                       help="objective of the lower level besides θ: 'benchmark' = subgoal deviations only (the "
                            "benchmark LP's, default), 'eq31' = Eq. 31a with its production and transport cost terms "
                            "(then θ = 0 never produces: SCIM's production cost 5 > the deviation weight 1)")
        p.add_argument("--scim-lp-timing", action="store_true",
                       help="Eq. 31c/e as the paper and the benchmark LP write them (capacity on today's stock plus "
                            "tomorrow's arrival); default: on the stocks the environment clips")
        p.add_argument("--scim-final-step", action="store_true",
                       help="evaluate with the benchmark's 31st test step (costs, no demand; its published returns)")
        p.add_argument("--theta", type=Path, default=None,
                       help="θ file for Bi-level-learned (default: fit one to MPC demonstrations, cached)")
        p.add_argument("--demo-episodes", type=int, default=2, help="MPC demonstration episodes for the θ fit "
                       "(demand seeds 0, 1, …; default 2)")
        p.add_argument("--K", type=int, default=2, help="ReLU terms of the fitted θ (default 2)")
        p.add_argument("--fit-time-limit-s", type=float, default=300.0, help="inverse solver time limit")
        p.add_argument("--algo", default="ppo", choices=["ppo", "sac"], help="SB3 algorithm (default ppo)")
        p.add_argument("--rl-steps", type=int, default=200_000, help="env steps per RL policy (default 200000)")
        p.add_argument("--rl-seed", type=int, default=0, help="seed of the RL runs (default 0)")
        p.add_argument("--n-envs", type=int, default=2, help="parallel envs per RL run (default 2)")
        p.add_argument("--retrain", action="store_true", help="ignore cached θ and policies")

    # ---------------------------------------------------------------- preparation
    def prepare(self, args, work_dir, log, train_seed: int | None = None) -> Prepared:
        from offline import rl

        try:
            sc = resolve_scenario(args.scenario, args.scenario_file, args.horizon_steps)
        except ValueError as e:
            print(f"offline.experiments: {'' if args.scenario_file else '--scenario: '}{e}", file=sys.stderr)
            raise SystemExit(2) from None
        known = self.methods + self.optional_methods
        chosen = known if args.methods and args.methods.strip() == "all" else (
            [m.strip() for m in args.methods.split(",")] if args.methods else self.methods)
        methods = [m for m in known if m in chosen]
        case_dir = Path(work_dir) / sc.name if args.horizon_steps is None else \
            Path(work_dir) / f"{sc.name}_T{sc.horizon_steps}"
        case_dir.mkdir(parents=True, exist_ok=True)
        progress = not args.quiet and sys.stderr.isatty()
        final = " + the benchmark's final step" if args.scim_final_step else ""
        notes = [f"scenario {sc.name}: {sc.n_warehouses} warehouse(s), {sc.n_stores} stores, T = {sc.horizon_steps} "
                 f"steps{final}; reward = revenue (all demand) − "
                 f"transport − storage − production − backlog − overflow costs (SCIM accounting); served demand = "
                 f"units delivered within the episode"]
        demo_seeds = list(range(args.demo_episodes))
        train_seeds = set(TRAIN_SEEDS) | set(demo_seeds)
        mpc = InventoryMpc(sc)
        eq31 = args.lower_objective == "eq31"
        timing = "scim" if args.scim_lp_timing else "env"
        # cached artefacts of the lower-level variants never mix
        sfx = ("_eq31" if eq31 else "") + ("_scimlp" if timing == "scim" else "")
        fops: dict[str, InventoryFop] = {
            "Bi-level-unchanged": InventoryFop(sc, cost_terms=eq31, capacity_timing=timing)}
        sfile = str(args.scenario_file) if args.scenario_file else None
        rl_seed = int(args.rl_seed if train_seed is None else train_seed)

        theta_path = None
        if "Bi-level-learned" in methods:
            theta_path = Path(args.theta) if args.theta else case_dir / f"theta{sfx}.yaml"
            if args.theta is None and (args.retrain or not _spec_matches(case_dir / f"theta{sfx}.spec.json",
                                                                         _theta_spec(args, sc))):
                log(f"[inventory] fitting θ (K={args.K}) to {args.demo_episodes} MPC demonstration episode(s) …")
                report = fit_theta(sc, demo_seeds, list(range(HELD_OUT_SEED, HELD_OUT_SEED + 3)), K=args.K,
                                   time_limit_s=args.fit_time_limit_s, progress=progress, mpc=mpc, cost_terms=eq31,
                                   capacity_timing=timing,
                                   command="python -m offline.experiments " + " ".join(sys.argv[1:]))
                from hiopt_ros.control.theta import save_theta
                save_theta(theta_path, report.theta)
                _write_spec(case_dir / f"theta{sfx}.spec.json", _theta_spec(args, sc))
                for line in report.lines():
                    log("  " + line)
            fops["Bi-level-learned"] = load_fop_theta(sc, theta_path)
            ho = fops["Bi-level-learned"]
            notes.append(f"Bi-level-learned: θ file {theta_path} (K = {ho.K}, l = {ho.l:g})")
            from hiopt_ros.control.theta import load_theta
            prov = load_theta(theta_path).provenance
            if "held_out" in prov and "chosen" in prov:
                h = prov["held_out"]
                notes.append("θ fit, held-out MPC decisions, flow cosine / L1: " + ", ".join(
                    f"{CANDIDATES[k]} {h[k]['flows']['cosine']:.4f} / {h[k]['flows']['l1']:.3f}" for k in CANDIDATES)
                    + f"; shipped {CANDIDATES[prov['chosen']]} ({prov['why']})")
            if "train_demand_seeds" in prov:
                train_seeds |= set(int(s) for s in prov["train_demand_seeds"])

        state = _State(scenario=sc, mpc=mpc, fops=fops, final_step=bool(args.scim_final_step))
        for method in methods:
            if method not in RL_METHODS:
                continue
            kind = RL_METHODS[method] + (sfx if method != "End-to-end RL" else "")
            out_dir = case_dir / kind / f"seed{rl_seed}"
            if method == "End-to-end RL":
                make_env = functools.partial(make_direct_env, scenario_name=sc.name, horizon_steps=sc.horizon_steps,
                                             scenario_file=sfile)
            else:
                tp = str(theta_path) if method == "Bi-level-learned" else None
                make_env = functools.partial(make_subgoal_env, scenario_name=sc.name,
                                             horizon_steps=sc.horizon_steps, theta_path=tp, scenario_file=sfile,
                                             cost_terms=eq31, capacity_timing=timing)
            cfg = rl_config(args, rl_seed)
            spec = {"method": method, "scenario": sc.name, "horizon_steps": sc.horizon_steps,
                    "scenario_file_sha256": _sha(sfile) if sfile else None,
                    "config": _jsonable(cfg.__dict__),
                    "theta_sha256": _sha(theta_path) if method == "Bi-level-learned" else None}
            if method != "End-to-end RL":
                spec["lower_level"] = {"objective": args.lower_objective, "capacity_timing": timing}
            if args.retrain or not (out_dir / "model.zip").exists() or not _spec_matches(out_dir / "spec.json", spec):
                log(f"[inventory] training {method} ({cfg.algo.upper()}, {cfg.total_steps} steps, "
                    f"{cfg.n_envs} envs) → {out_dir}/")
                result = rl.train(make_env, cfg, out_dir, progress=progress)
                _write_spec(out_dir / "spec.json", spec)
                log(f"  {result.report()}")
            model = rl.load_model(out_dir / "model.zip", cfg.algo)
            state.actors[method] = _actor(model)
            info = json.loads((out_dir / "train.json").read_text()) if (out_dir / "train.json").exists() else {}
            notes.append(f"{method}: {cfg.algo.upper()} policy {out_dir}/model.zip, {info.get('env_steps', '?')} "
                         f"env steps in {info.get('wall_s', math.nan):.0f} s "
                         f"({info.get('train_steps_per_s', math.nan):.0f} steps/s), RL seed {cfg.seed}, "
                         f"training demand seeds {TRAIN_SEEDS.start}–{TRAIN_SEEDS.stop - 1}")
        if "End-to-end RL" in methods:
            state.action_high["End-to-end RL"] = DirectEnv(sc)._high
        return Prepared(state=state, train_seeds=sorted(train_seeds), notes=notes)

    # ---------------------------------------------------------------- one episode
    def run_episode(self, prepared: Prepared, method: str, seed: int) -> Episode:
        st: _State = prepared.state
        sc = st.scenario
        env = InventoryEnv(sc, final_step_without_demand=st.final_step)
        obs, _ = env.reset(seed=int(seed))
        scim = ScimMpc(sc) if method == "MPC (SCIM oracle)" else None
        heur = OrderUpToHeuristic(sc) if method == "Heuristic (SCIM)" else None
        W = sc.n_warehouses
        high_subgoal = np.r_[sc.production_scale, sc.capacity_s]
        times, lower_times = [], []
        total = served = on_time = 0.0
        fop_failures = 0
        done = False
        while not done:
            t0 = time.perf_counter()
            if method == "MPC":
                action = st.mpc.act(env).action
            elif scim is not None:
                action = scim.act(env).action
            elif heur is not None:
                action = heur.act(env).action
            elif method == "MPC subgoals → Eq. 31":
                s_now = env.state()
                dec = st.mpc.decide(s_now, env.demand, env.n_steps)
                fop = st.fops["Bi-level-unchanged"]
                action = fop.solve(s_now, *fop.implied_subgoal(s_now, dec.w, dec.f)).action
            elif method == "End-to-end RL":
                a = np.clip(st.actors[method](obs), -1.0, 1.0)
                action = 0.5 * (a + 1.0) * st.action_high[method]
            else:
                a = np.clip(st.actors[method](obs), -1.0, 1.0)
                x_hat = 0.5 * (a + 1.0) * high_subgoal
                dec = st.fops[method].solve(env.state(), x_hat[:W], x_hat[W:])
                lower_times.append(dec.solution.solve_time_s)
                if dec.solution.ok:
                    action = dec.action
                else:
                    fop_failures += 1
                    action = np.zeros(W + sc.n_edges)
            times.append(time.perf_counter() - t0)
            obs, r, done, _, info = env.step(action)
            total += r
            served += info["served"]
            on_time += info["served_on_time"]
        extra = {"served_on_time": on_time,
                 "lower_level_ms": float(np.mean(lower_times)) * 1e3 if lower_times else math.nan,
                 "fop_failures": float(fop_failures)}
        return Episode(reward=total, served_demand=served, decision_times_s=times, extra=extra)


def rl_config(args, seed: int | None = None):
    """The RLConfig of the table's RL runs (PPO; see docs/inventory.md)."""
    from offline import rl

    n_envs = int(args.n_envs)
    n_steps = int(min(1024, max(32, int(args.rl_steps) // n_envs)))    # tiny budgets (tests) stay tiny
    return rl.RLConfig(algo=args.algo, total_steps=int(args.rl_steps), n_envs=n_envs,
                       seed=int(args.rl_seed if seed is None else seed),
                       vec="subproc" if n_envs > 1 else "dummy", net_arch=(64, 64), n_steps=n_steps,
                       batch_size=min(256, n_steps * n_envs), n_epochs=10, gamma=0.99, learning_rate=3e-4,
                       log_std_init=-0.5)


def _actor(model) -> Callable[[np.ndarray], np.ndarray]:
    """obs (n,) -> deterministic action (m,) through the harness' torch actor (no SB3 overhead)."""
    import torch

    from offline import rl

    actor = rl.deterministic_actor(model).eval()

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor(torch.as_tensor(np.asarray(obs, np.float32)[None])).numpy()[0].astype(float)
    return act


def _theta_spec(args, sc) -> dict:
    return {"scenario": sc.name, "horizon_steps": sc.horizon_steps, "demo_episodes": args.demo_episodes,
            "K": args.K, "fit_time_limit_s": args.fit_time_limit_s, "version": "scim-1",
            **({"lower_objective": "eq31"} if args.lower_objective == "eq31" else {}),
            **({"capacity_timing": "scim"} if args.scim_lp_timing else {"capacity_timing": "env"}),
            "scenario_file_sha256": _sha(args.scenario_file) if args.scenario_file else None}


def _spec_matches(path: Path, spec: dict) -> bool:
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(spec))
    except (OSError, ValueError):
        return False


def _write_spec(path: Path, spec: dict) -> None:
    path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


CASE = InventoryTable1()
