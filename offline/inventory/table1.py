"""Table 1 (right) of the paper, inventory management (SCIM): the case study of the shared runner.

    python -m offline.experiments table1 --case inventory [--scenario 1F10S] [--rl-steps 200000]

Methods (rows, the reference first):
    MPC                 InventoryMpc: perfect demand knowledge over the whole remaining episode, the
                        environment's dynamics exactly; it bounds every other row (module mpc)
    MPC (SCIM oracle)   the benchmark's own oracle: horizon 10, its shipping lag (§8.3, §11.1)
    Bi-level-unchanged  PPO upper level (subgoal: desired production ŵ, desired store stock q̂,
                        through --subgoal-form) → Eq. 31 with θ = 0; by default Eq. 31a as the
                        paper writes it, with its production and transport cost terms
                        (--lower-objective eq31; 'benchmark': the benchmark LP's deviations only)
    End-to-end RL       PPO outputs production and shipments directly (the env clips shipments)
    Bi-level-learned    the same upper level → the same Eq. 31 + the ReLU terms θ̂ fitted by inverse
                        optimization (Problem 11) on MPC demonstrations; the fit ships θ̂ only if it
                        is no worse than θ = 0 on held-out MPC decisions (offline.inventory.fit)
    Bi-level-cvxpy      the same upper level → the same Eq. 31 + θ fitted by gradient descent through
                        a CvxpyLayer on the same demonstrations (offline.baselines, paper §4)
    Value approximation no RL: Eq. 31's one-step problem without a subgoal + a learned convex
                        quadratic cost of the next state (offline.baselines.value; Appendix C.4)
Optional (``--methods``): ``Heuristic (SCIM)``, the benchmark's order-up-to policy,
``MPC subgoals → Eq. 31``: Bi-level-unchanged's lower level given the MPC's own (implied) subgoal
every step — the best any upper level can do through that lower level (diagnostic), and
``Forecast subgoals → Eq. 31``: the forecast subgoal form's action 0 (no RL, whatever
--subgoal-form says) through Bi-level-learned's lower level (Bi-level-unchanged's if it is not
run) — what that subgoal form gives before any learning (diagnostic).

Demand of evaluation seed s: ``numpy.random.RandomState(s)`` drawn as the benchmark's first
episode after ``np.random.seed(s)`` (env.InventoryEnv.reset). ``--scim-final-step`` adds the
benchmark's 31st test step (costs, no demand, §5): its published test returns need it.

``prepare`` fits θ (unless ``--theta`` is given) and trains the three policies with the shared
SB3 harness (sim.rl), caching everything under ``<work-dir>/<scenario>/``: ``theta.yaml``,
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
from types import SimpleNamespace
from typing import Callable

import numpy as np

from hiopt_ros.control.theta import load_theta, save_theta
from offline.baselines import run as R
from offline.baselines.__main__ import write_loss_curve
from offline.baselines.cases import inventory_case
from offline.baselines.value import ValuePolicy, fit_value_policy
from offline.experiments import Episode, Prepared
from sim import rl

from .env import InventoryEnv
from .fit import CANDIDATES, HELD_OUT_SEED, collect_demonstrations, fit_theta, load_fop_theta
from .heuristic import OrderUpToHeuristic
from .lower import InventoryFop
from .mpc import InventoryMpc, ScimMpc
from .policy_envs import SUBGOAL_FORMS, TRAIN_SEEDS, DirectEnv, SubgoalEnv, action_to_subgoal
from .scenarios import InventoryScenario, resolve_scenario

__all__ = ["CASE", "InventoryTable1", "make_subgoal_env", "make_direct_env"]

RL_METHODS = {"Bi-level-unchanged": "bilevel_unchanged", "End-to-end RL": "end_to_end",
              "Bi-level-learned": "bilevel_learned", "Bi-level-cvxpy": "bilevel_cvxpy"}
#: the lower level each bi-level row is trained and evaluated with (key of _State.fops)
BILEVEL = ("Bi-level-unchanged", "Bi-level-learned", "Bi-level-cvxpy")


# ----------------------------------------------------------------------------- env factories (picklable)

def make_subgoal_env(rank: int, scenario_name: str, horizon_steps: int, theta_path: str | None,
                     scenario_file: str | None = None, cost_terms: bool = False, capacity_timing: str = "env",
                     subgoal_form: str = "forecast"):
    """SubgoalEnv of a scenario with the unchanged FOP (theta_path None; Eq. 31a's cost terms on or
    off) or a θ file's."""
    sc = resolve_scenario(scenario_name, scenario_file, horizon_steps)
    fop = (InventoryFop(sc, cost_terms=cost_terms, capacity_timing=capacity_timing) if theta_path is None
           else load_fop_theta(sc, theta_path))
    return SubgoalEnv(sc, fop, subgoal_form=subgoal_form)


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
    subgoal_form: str = "forecast"                # the upper level's action → subgoal map
    actors: dict[str, Callable] = field(default_factory=dict)   # method -> obs -> action in [−1, 1]
    action_high: dict[str, np.ndarray] = field(default_factory=dict)
    value: ValueApproximation | None = None       # the Value approximation row's policy


@dataclass
class ValueApproximation:
    """The Value approximation policy (offline.baselines.value) of a fitted V: picklable data; its
    HiGHS problem is built on first use, in the process that plays (a Ray worker builds its own)."""

    scenario: InventoryScenario
    vf: object                     # offline.baselines.value.ValueFunction
    report: dict                   # fit_value_policy's report
    train: list                    # the demonstrations V was fitted on (offline.inventory.fit.Demonstration)
    held: list
    K: int
    cost_terms: bool
    _built: tuple | None = None

    def __getstate__(self):
        return dict(self.__dict__, _built=None)

    def decide(self, state) -> tuple[np.ndarray, object]:
        """The action (w, f) at `state` and the QP's solution."""
        if self._built is None:
            case = inventory_case(self.scenario, self.train, self.held, K=self.K, cost_terms=self.cost_terms)
            self._built = (case, ValuePolicy(case.lp, case.one_step(case.train_states[0]).M, self.vf))
        case, policy = self._built
        x, sol = policy.solve(case.one_step(state))
        return np.maximum(case.decision_columns(np.nan_to_num(x))["all"], 0.0), sol

    def act(self, env: InventoryEnv) -> SimpleNamespace:
        """``act(env).action``: the interface of the benchmark's test loop (offline.inventory.evaluate)."""
        return SimpleNamespace(action=self.decide(env.state())[0])


class InventoryTable1:
    name = "inventory"
    title = "Table 1 (right): supply-chain inventory management"
    methods = ("MPC", "MPC (SCIM oracle)", "Bi-level-unchanged", "End-to-end RL", "Bi-level-learned",
               "Bi-level-cvxpy", "Value approximation")
    optional_methods = ("Heuristic (SCIM)", "MPC subgoals → Eq. 31", "Forecast subgoals → Eq. 31")
    trained_methods = tuple(RL_METHODS)

    # ---------------------------------------------------------------- options
    def add_arguments(self, p) -> None:
        p.add_argument("--scenario", default="1F10S", help="SCIM benchmark preset 1F2S, 1F3S or 1F10S (default 1F10S)")
        p.add_argument("--scenario-file", type=Path, default=None,
                       help="YAML file of your own network instead of a preset (keys: offline.inventory.scenarios)")
        p.add_argument("--horizon-steps", type=int, default=None, help="episode length T (default: the scenario's, 30)")
        p.add_argument("--lower-objective", default="eq31", choices=["eq31", "benchmark"],
                       help="objective of the lower level besides θ: 'eq31' = Eq. 31a as the paper writes it, with "
                            "its production and transport cost terms (default; θ = 0 then never produces: SCIM's "
                            "production cost 5 > the deviation weight 1, and θ̂ repairs it), 'benchmark' = subgoal "
                            "deviations only (the benchmark LP's; θ = 0 already imitates the MPC, θ̂ = 0)")
        p.add_argument("--subgoal-form", default="forecast", choices=list(SUBGOAL_FORMS),
                       help="the upper level's action → subgoal: 'forecast' (default) = the just-in-time subgoal of "
                            "the observed demand (q̂ = d(t+1), ŵ = the next two shipments' need beyond the factory's "
                            "stock) plus a bounded change (± a quarter of each capacity); 'absolute' = the action "
                            "scaled to [0, capacity] (offline.inventory.policy_envs)")
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
        R.add_budget_arguments(_OneGroup(p))     # Bi-level-cvxpy's and Value approximation's budgets

    # ---------------------------------------------------------------- preparation
    def prepare(self, args, work_dir, log, train_seed: int | None = None) -> Prepared:
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
                save_theta(theta_path, report.theta)
                _write_spec(case_dir / f"theta{sfx}.spec.json", _theta_spec(args, sc))
                for line in report.lines():
                    log("  " + line)
            fops["Bi-level-learned"] = load_fop_theta(sc, theta_path)
            ho = fops["Bi-level-learned"]
            notes.append(f"Bi-level-learned: θ file {theta_path} (K = {ho.K}, l = {ho.l:g})")
            prov = load_theta(theta_path).provenance
            if "held_out" in prov and "chosen" in prov:
                h = prov["held_out"]
                notes.append("θ fit, held-out MPC decisions, flow cosine / L1: " + ", ".join(
                    f"{CANDIDATES[k]} {h[k]['flows']['cosine']:.4f} / {h[k]['flows']['l1']:.3f}" for k in CANDIDATES)
                    + f"; shipped {CANDIDATES[prov['chosen']]} ({prov['why']})")
            if "train_demand_seeds" in prov:
                train_seeds |= set(int(s) for s in prov["train_demand_seeds"])

        form = args.subgoal_form
        held_seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + 3))
        cvx_path = None
        if "Bi-level-cvxpy" in methods or "Value approximation" in methods:
            if timing != "env":
                print("offline.experiments: Bi-level-cvxpy and Value approximation take the default capacity "
                      "rows only (offline.baselines.cases); drop --scim-lp-timing or those --methods", file=sys.stderr)
                raise SystemExit(2)
        if "Bi-level-cvxpy" in methods:
            cvx_path = case_dir / f"theta_cvxpy{sfx}.yaml"
            cvx_spec = dict(_theta_spec(args, sc), fit_method="cvxpylayers", **_layer_budget(args))
            if args.retrain or not _spec_matches(case_dir / f"theta_cvxpy{sfx}.spec.json", cvx_spec):
                _fit_cvxpy(sc, demo_seeds, held_seeds, args, eq31, mpc, cvx_path, log)
                _write_spec(case_dir / f"theta_cvxpy{sfx}.spec.json", cvx_spec)
            fops["Bi-level-cvxpy"] = load_fop_theta(sc, cvx_path)
            prov = load_theta(cvx_path).provenance
            notes.append(f"Bi-level-cvxpy: θ file {cvx_path} (fit_method cvxpylayers, K = {args.K}, "
                         f"{prov.get('fit_time_s', math.nan):.0f} s; held-out flow cosine "
                         f"{prov.get('held_out_flow_cosine', math.nan):.4f}; loss curve beside it)")
        value = None
        if "Value approximation" in methods:
            value = _value_function(sc, demo_seeds, held_seeds, args, eq31, mpc, log)
            r = value.report
            notes.append(f"Value approximation: V of rank {r['rank']}, λ {r['reg']:g} (chosen on training episode "
                         f"{r['validation_episode']}), training RMSE {r['train_rmse']:.4g} vs cost-to-go std "
                         f"{r['cost_to_go_std']:.4g}, fitted in {r['fit_time_s']:.1f} s on demand seeds "
                         f"{demo_seeds[0]}–{demo_seeds[-1]}; no RL")

        state = _State(scenario=sc, mpc=mpc, fops=fops, final_step=bool(args.scim_final_step), subgoal_form=form,
                       value=value)
        for method in methods:
            if method not in RL_METHODS:
                continue
            kind = RL_METHODS[method] + (sfx + ("_forecast" if form == "forecast" else "")
                                         if method != "End-to-end RL" else "")
            out_dir = case_dir / kind / f"seed{rl_seed}"
            if method == "End-to-end RL":
                make_env = functools.partial(make_direct_env, scenario_name=sc.name, horizon_steps=sc.horizon_steps,
                                             scenario_file=sfile)
            else:
                tp = {"Bi-level-learned": theta_path, "Bi-level-cvxpy": cvx_path}.get(method)
                tp = None if tp is None else str(tp)
                make_env = functools.partial(make_subgoal_env, scenario_name=sc.name,
                                             horizon_steps=sc.horizon_steps, theta_path=tp, scenario_file=sfile,
                                             cost_terms=eq31, capacity_timing=timing, subgoal_form=form)
            cfg = rl_config(args, rl_seed)
            spec = {"method": method, "scenario": sc.name, "horizon_steps": sc.horizon_steps,
                    "scenario_file_sha256": _sha(sfile) if sfile else None,
                    "config": _jsonable(cfg.__dict__),
                    "theta_sha256": _sha(tp) if method != "End-to-end RL" and tp else None}
            if method != "End-to-end RL":
                spec["lower_level"] = {"objective": args.lower_objective, "capacity_timing": timing}
                if form != "absolute":      # (the absolute form's caches predate the option)
                    spec["subgoal_form"] = form
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
            elif method == "Value approximation":
                action, sol = st.value.decide(env.state())
                lower_times.append(sol.solve_time_s)
                fop_failures += not sol.ok
            else:
                s_now = env.state()
                form = st.subgoal_form
                if method == "Forecast subgoals → Eq. 31":
                    fop = st.fops.get("Bi-level-learned", st.fops["Bi-level-unchanged"])
                    a, form = np.zeros(W + sc.n_stores), "forecast"
                else:
                    fop = st.fops[method]
                    a = st.actors[method](obs)
                w_hat, q_hat = action_to_subgoal(form, sc, s_now, env.demand_at(env.t + 2), a)
                dec = fop.solve(s_now, w_hat, q_hat)
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


class _OneGroup:
    """offline.baselines.run.add_budget_arguments' groups as this case's own option group (argparse
    deprecates nested groups)."""

    def __init__(self, group) -> None:
        self.group = group

    def add_argument_group(self, *args, **kwargs):
        return self.group


def _layer_budget(args) -> dict:
    return {"lr": str(args.lr), "epochs": args.epochs, "batch": args.batch, "layer_l": args.layer_l,
            "init_scale": args.init_scale}


def _imitation_case(sc, demo_seeds, held_seeds, K, cost_terms, mpc, log):
    """The baselines' view (offline.baselines.cases) of the MPC demonstrations the θ fit uses."""
    t0 = time.perf_counter()
    train = collect_demonstrations(sc, demo_seeds, mpc=mpc)
    held = collect_demonstrations(sc, held_seeds, mpc=mpc)
    log(f"[inventory] {len(train)} + {len(held)} MPC demonstrations (demand seeds {demo_seeds[0]}–{demo_seeds[-1]}, "
        f"held out {held_seeds[0]}–{held_seeds[-1]}) in {time.perf_counter() - t0:.0f} s")
    return inventory_case(sc, train, held, K=K, cost_terms=cost_terms), train, held


def _fit_cvxpy(sc, demo_seeds, held_seeds, args, cost_terms: bool, mpc, path: Path, log) -> None:
    """Bi-level-cvxpy's θ (offline.baselines.run.fit_cvxpylayers) on Table 1's demonstrations, written
    in the one θ schema with its held-out flow metrics, and its loss curve beside it."""
    case, _, _ = _imitation_case(sc, demo_seeds, held_seeds, args.K, cost_terms, mpc, log)
    prep = R.Prepared(case=case, root=path.parent, args=SimpleNamespace(case="inventory"), K=args.K,
                        cost_terms=cost_terms)
    try:
        configs = R.layer_configs(args, seed=0)
    except ValueError as e:
        print(f"offline.experiments: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    log(f"[inventory] Bi-level-cvxpy: fitting θ (K = {args.K}) through a CvxpyLayer, lr {args.lr}, "
        f"{args.epochs} epochs …")
    res = R.fit_cvxpylayers(prep, configs, log)
    theta, fit = res.artefact
    flows = res.held_out["flows"]
    theta.provenance.update(fit_time_s=float(res.fit_time_s), held_out_flow_cosine=float(flows["cosine"]),
                            held_out_flow_l1=float(flows["l1"]), held_out_seeds=list(held_seeds),
                            train_demand_seeds=list(demo_seeds), scenario=sc.name)
    save_theta(path, theta)
    write_loss_curve(path.with_suffix(""), list(fit.loss), f"Bi-level-cvxpy θ fit, {sc.name}")
    log(f"[inventory] Bi-level-cvxpy θ → {path} ({res.fit_time_s:.0f} s; held-out flow cosine "
        f"{flows['cosine']:.4f}, L1 {flows['l1']:.3f})")


#: Value approximation's fits by their inputs (the runner prepares once per training seed)
_VALUE_CACHE: dict[str, ValueApproximation] = {}


def _value_function(sc, demo_seeds, held_seeds, args, cost_terms: bool, mpc, log) -> ValueApproximation:
    """V fitted on Table 1's demonstrations (offline.baselines.value.fit_value_policy)."""
    key = json.dumps([sc.name, sc.horizon_steps, demo_seeds, held_seeds, args.K, cost_terms, args.ranks, args.regs,
                      _sha(args.scenario_file) if args.scenario_file else None])
    if key not in _VALUE_CACHE:
        try:
            ranks, regs = R.value_grid(args)
        except ValueError as e:
            print(f"offline.experiments: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        case, train, held = _imitation_case(sc, demo_seeds, held_seeds, args.K, cost_terms, mpc, log)
        policy, report = fit_value_policy(case, ranks, regs, log)
        _VALUE_CACHE[key] = ValueApproximation(sc, policy.vf, report, train, held, args.K, cost_terms,
                                               _built=(case, policy))
    return _VALUE_CACHE[key]


def value_approximation(sc: InventoryScenario, demo_seeds=(0, 1), K: int = 2, ranks: str = "full,4,2",
                        regs: str = "1e-4,1e-2,1", log=lambda msg: None) -> ValueApproximation:
    """Table 1's Value approximation policy with its defaults (MPC demonstrations of `demo_seeds`)."""
    args = SimpleNamespace(K=K, ranks=ranks, regs=regs, scenario_file=None)
    held = list(range(HELD_OUT_SEED, HELD_OUT_SEED + 3))
    return _value_function(sc, list(demo_seeds), held, args, True, InventoryMpc(sc), log)


def rl_config(args, seed: int | None = None):
    """The RLConfig of the table's RL runs (PPO; see docs/inventory.md)."""
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
