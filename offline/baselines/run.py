"""One preparation for the baselines' commands and Table 4: demonstrations, the case, and each method's fit.

Every method sees the same training demonstrations and is measured on the same held-out ones (the
case study's own seeds: AMoD DEMO_SEED0 …/HELD_OUT_SEED0 …, cached with offline.amod.pipeline under
results/amod/<scenario key>/ like Table 1; inventory demand seeds 0 … / HELD_OUT_SEED …).

    prepare(args, log) -> Prepared         case options of add_case_arguments
    fit_inverse(prep, log)                 the case study's own inverse fit (Problem 11)
    fit_cvxpylayers(prep, config, log)     Bi-level-cvxpy (offline.baselines.layer_fit)
    fit_value(prep, ranks, regs, log)      value approximation (offline.baselines.value)

Each returns a MethodResult: held-out metrics per decision column, fit time, the θ (or V) and notes.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from offline.amod import pipeline
from offline.amod.config import (
    DEMO_SEED0,
    HELD_OUT_SEED0,
    add_scenario_arguments,
    add_theta_form_arguments,
    auto_theta_form,
    spec_from_args,
    theta_form,
)
from offline.amod.sim import AmodSim
from offline.baselines.cases import ImitationCase, amod_case, inventory_case
from offline.baselines.layer_fit import LayerFitConfig, fit_layer
from offline.baselines.value import fit_value_policy, policy_metrics
from offline.inventory.env import InventoryEnv
from offline.inventory.fit import HELD_OUT_SEED, collect_demonstrations, fit_theta
from offline.inventory.scenarios import make_scenario

__all__ = ["CASES", "COLUMNS", "add_case_arguments", "add_budget_arguments", "Prepared", "MethodResult", "prepare",
           "fit_inverse", "fit_cvxpylayers", "fit_value", "layer_configs", "value_grid", "comma_list",
           "closed_loop_value", "EVAL_SEED0"]

CASES = ("amod", "inventory")
#: Table 4's columns per case: (key of the held-out metrics, label)
COLUMNS = {"amod": (("f", "Reb. flow"), ("g", "Pax. flow")), "inventory": (("flows", "Commodity flow"),)}


def add_case_arguments(p, case: str) -> None:
    """The case study's scenario and demonstration options (AMoD: its own scenario and θ-form options)."""
    if case == "amod":
        add_scenario_arguments(p)
        add_theta_form_arguments(p)
        p.add_argument("--demo-episodes", type=int, default=20,
                       help="MPC demonstration episodes (default 20, as Table 1)")
        p.add_argument("--held-out-episodes", type=int, default=5, help="held-out MPC episodes (default 5)")
        p.add_argument("--rho", type=float, default=1e-2, help="ρ of Problem 11 (default 1e-2)")
        p.add_argument("--fit-time-limit", type=float, default=900.0, help="inverse fit time limit, s (default 900)")
    elif case == "inventory":
        p.add_argument("--scenario", default="1F10S", help="SCIM preset 1F2S, 1F3S or 1F10S (default 1F10S)")
        p.add_argument("--demo-episodes", type=int, default=2, help="MPC demonstration episodes (default 2)")
        p.add_argument("--held-out-episodes", type=int, default=3, help="held-out MPC episodes (default 3)")
        p.add_argument("--K", type=int, default=2, help="ReLU terms of θ (default 2)")
        p.add_argument("--cost-terms", action="store_true",
                       help="θ on top of Eq. 31 with (31a)'s production and transport costs (offline.inventory.fit)")
        p.add_argument("--fit-time-limit", type=float, default=300.0, help="inverse fit time limit, s (default 300)")
    else:
        raise ValueError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")


def add_budget_arguments(p) -> None:
    """The tuning budgets of the two baselines (the docs state the values used)."""
    g = p.add_argument_group("cvxpylayers budget")
    g.add_argument("--lr", default="0.05",
                   help="Adam learning rate(s): a comma list is tried in turn and the fit with the lowest training "
                        "loss kept (default 0.05)")
    g.add_argument("--epochs", type=int, default=5, help="passes over the demonstrations (default 5)")
    g.add_argument("--batch", type=int, default=8, help="demonstrations per Adam step (default 8)")
    g.add_argument("--layer-l", type=float, default=1e-3,
                   help="Eq. 10's l in the layer (default 1e-3, the inverse fit's)")
    g.add_argument("--init-scale", type=float, default=0.1, help="θ's initial entries ~ N(0, s²) (default 0.1)")
    g = p.add_argument_group("value approximation budget")
    g.add_argument("--ranks", default="full,4,2", help="ranks of P tried (comma list; 'full' = d; default full,4,2)")
    g.add_argument("--regs", default="1e-4,1e-2,1", help="λ of λ‖P‖² tried (comma list; default 1e-4,1e-2,1)")


def comma_list(value, option: str, convert, what: str) -> list:
    """A non-empty comma list of `convert`ed entries, or ValueError naming the option and what it takes."""
    try:
        out = [convert(v.strip()) for v in str(value).split(",") if v.strip()]
    except ValueError:
        out = []
    if not out:
        raise ValueError(f"{option} {value!r}: a comma list of {what}")
    return out


def layer_configs(args, seed: int = 0) -> list:
    """One LayerFitConfig per --lr entry (checked: ValueError naming the option)."""
    lrs = comma_list(args.lr, "--lr", float, "numbers > 0")
    cfgs = [LayerFitConfig(lr=lr, epochs=args.epochs, batch=args.batch, l=args.layer_l,
                           init_scale=args.init_scale, seed=int(seed)) for lr in lrs]
    for c in cfgs:
        c.check()
    return cfgs


def value_grid(args) -> tuple[list, list]:
    try:
        ranks = [None if r.strip() == "full" else int(r) for r in str(args.ranks).split(",") if r.strip()]
        regs = [float(r) for r in str(args.regs).split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"--ranks {args.ranks!r} / --regs {args.regs!r}: comma lists of integers or 'full', "
                         "and of numbers >= 0") from None
    if not ranks or not regs or any(r is not None and r < 0 for r in ranks) or any(r < 0 for r in regs):
        raise ValueError(f"--ranks {args.ranks!r} / --regs {args.regs!r}: non-empty lists of ranks >= 0 and λ >= 0")
    return ranks, regs


@dataclass
class Prepared:
    case: ImitationCase
    root: Path                   # where the case's artefacts are cached
    args: object
    K: int
    cost_terms: object           # AMoD: spec or None; inventory: bool
    notes: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class MethodResult:
    method: str
    held_out: dict               # {column: action_metrics}
    fit_time_s: float
    seed: int | None
    artefact: object = None      # Theta, or (ValuePolicy, report)
    notes: list = field(default_factory=list)


def prepare(args, log) -> Prepared:
    for name in ("demo_episodes", "held_out_episodes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.case == "amod":
        return _prepare_amod(args, log)
    return _prepare_inventory(args, log)


def _prepare_amod(args, log) -> Prepared:
    spec = spec_from_args(args)
    if auto_theta_form(args):
        # the fit's own default chooses θ's form on the held-out demonstrations, which no baseline may
        # see: Table 4 fits the paper's form (K ReLU terms) unless a form is given
        K, cost_terms = (args.K or 2), None
    else:
        K, cost_terms = theta_form(args)
    root = Path(args.work_dir) / "amod" / spec.key
    root.mkdir(parents=True, exist_ok=True)
    sim = AmodSim(spec.build())
    demos = pipeline.ensure_demos(spec, root / "demos.npz", DEMO_SEED0, args.demo_episodes, log)
    held = pipeline.ensure_demos(spec, root / "held_out.npz", HELD_OUT_SEED0, args.held_out_episodes, log)
    case = amod_case(sim, demos, held, K=K, cost_terms=cost_terms)
    form = f"K = {K}" + (f", cost terms {cost_terms}" if cost_terms else "")
    notes = [f"AMoD scenario {spec.key}: {sim.N} regions, T = {sim.T}; θ form {form}",
             f"{len(demos)} training demonstrations (seeds {_span(case.seeds['train'])}), {len(held)} held-out "
             f"(seeds {_span(case.seeds['held_out'])})"]
    return Prepared(case=case, root=root, args=args, K=K, cost_terms=cost_terms, notes=notes,
                    extra={"spec": spec, "demos": demos, "held": held})


def _prepare_inventory(args, log) -> Prepared:
    sc = make_scenario(args.scenario)
    if args.K < 1:
        raise ValueError("--K must be >= 1")
    root = Path(args.work_dir) / "inventory" / sc.name
    root.mkdir(parents=True, exist_ok=True)
    train_seeds = list(range(args.demo_episodes))
    held_seeds = list(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out_episodes))
    t0 = time.perf_counter()
    train = collect_demonstrations(sc, train_seeds)
    held = collect_demonstrations(sc, held_seeds)
    log(f"[inventory] {len(train)} + {len(held)} MPC demonstrations in {time.perf_counter() - t0:.0f} s")
    case = inventory_case(sc, train, held, K=args.K, cost_terms=args.cost_terms)
    notes = [f"inventory scenario {sc.name}: {sc.n_warehouses} warehouse(s), {sc.n_stores} stores, T = "
             f"{sc.horizon_steps}; θ form K = {args.K}{', on Eq. 31 with cost terms' if args.cost_terms else ''}",
             f"{len(train)} training demonstrations (demand seeds {_span(train_seeds)}), {len(held)} held-out "
             f"(demand seeds {_span(held_seeds)})"]
    return Prepared(case=case, root=root, args=args, K=args.K, cost_terms=bool(args.cost_terms), notes=notes,
                    extra={"scenario": sc, "train_seeds": train_seeds, "held_seeds": held_seeds})


# ---------------------------------------------------------------------------------------------- methods
def fit_inverse(prep: Prepared, log) -> MethodResult:
    """The case study's own inverse fit (Problem 11) on the same demonstrations (AMoD: cached θ file)."""
    args = prep.args
    if args.case == "amod":
        name = f"theta_K{prep.K}" + (f"_{str(prep.cost_terms).replace(':', '')}" if prep.cost_terms else "") + ".yaml"
        theta = pipeline.ensure_theta(prep.extra["spec"], prep.extra["demos"], prep.extra["held"], prep.root / name,
                                      K=prep.K, rho=args.rho, time_limit_s=args.fit_time_limit, log=log,
                                      cost_terms=prep.cost_terms)
        return MethodResult("Inverse Optimization", prep.case.held_out(theta),
                            float(theta.provenance.get("solve_time_s", np.nan)), 0, theta,
                            [f"inverse optimization: θ file {prep.root / name}"])

    t0 = time.perf_counter()
    report = fit_theta(prep.extra["scenario"], prep.extra["train_seeds"], prep.extra["held_seeds"], K=prep.K,
                       time_limit_s=args.fit_time_limit, cost_terms=prep.cost_terms, command=" ".join(sys.argv))
    log(f"[inventory] inverse fit {report.fit.status} in {report.fit.solve_time_s:.1f} s "
        f"(with its demonstrations {time.perf_counter() - t0:.0f} s)")
    # the fitted ReLU terms (trained on the training demonstrations only); offline.inventory.fit's
    # choice among θ = 0 / cost terms / ReLU looks at the held-out data, which no baseline may
    theta = prep.case.theta_of(report.fit.theta, report.fit.nu, {},
                               {"fit_method": "inverse", **report.theta.provenance})
    return MethodResult("Inverse Optimization", prep.case.held_out(theta), float(report.fit.solve_time_s), 0, theta,
                        [f"inverse optimization: offline.inventory.fit's ReLU candidate (its held-out choice: "
                         f"{report.chosen})"])


def fit_cvxpylayers(prep: Prepared, configs, log, progress: bool = False) -> MethodResult:
    """Bi-level-cvxpy on the same demonstrations and θ form, once per config (learning rate); the fit with
    the lowest training loss is kept (fit time: all of them). Its θ file's provenance says fit_method: cvxpylayers."""
    case = prep.case
    lo, hi = case.weight_bounds
    fits = []
    for config in configs:
        fits.append(fit_layer(case.lp, case.data, case.x_expert, K=prep.K, config=config, features=case.features,
                              weight_names=case.weight_names, weight_bounds=(lo, hi), progress=progress))
        f = fits[-1]
        log(f"[cvxpylayers]   lr {config.lr:g}: training loss {f.loss[0]:.4g} → {f.loss[f.best_epoch]:.4g} (epoch "
            f"{f.best_epoch}; per epoch {', '.join(f'{v:.4g}' for v in f.loss)})")
    fit = min(fits, key=lambda f: f.loss[f.best_epoch])
    config = fit.config
    total_s = sum(f.fit_time_s for f in fits)
    weights = {nm: float(w) for nm, w in zip(fit.weight_names, fit.weights)}
    if prep.args.case == "inventory" and prep.cost_terms:
        weights["cost_terms"] = 1.0
    theta = case.theta_of(fit.theta, fit.mu, weights,
                          dict(fit.provenance(), command=" ".join(sys.argv), samples=len(case.data),
                               train_seeds=case.seeds["train"], held_out_seeds=case.seeds["held_out"]))
    if prep.args.case == "inventory":
        theta.learned_weights = [w for w in theta.learned_weights if w != "cost_terms"]
    log(f"[cvxpylayers] seed {config.seed}: lr {config.lr:g} kept, loss {fit.loss[0]:.4g} → "
        f"{fit.loss[fit.best_epoch]:.4g} (epoch {fit.best_epoch}), {fit.steps} Adam steps, {fit.failed_solves} "
        f"failed solves, {total_s:.0f} s for {len(fits)} learning rate(s)")
    res = MethodResult("cvxpylayers", case.held_out(theta), total_s, config.seed, theta)
    res.notes.append(f"cvxpylayers seed {config.seed}: lr {config.lr:g} (lowest training loss of "
                     f"{', '.join(f'{f.config.lr:g}' for f in fits)}), best epoch {fit.best_epoch} of {config.epochs}, "
                     f"training loss {fit.loss[0]:.4g} → {fit.loss[fit.best_epoch]:.4g}")
    res.artefact = (theta, fit)
    return res


def fit_value(prep: Prepared, ranks, regs, log) -> MethodResult:
    case = prep.case
    policy, report = fit_value_policy(case, ranks, regs, log)
    m = policy_metrics(case, policy, case.held_states, case.held_expert)
    log(f"[value] rank {report['rank']}, reg {report['reg']:g}: V's training RMSE {report['train_rmse']:.4g} "
        f"(cost-to-go std {report['cost_to_go_std']:.4g}, R² {report['train_r2']:.4f}), {report['fit_time_s']:.1f} s")
    return MethodResult("Value Approximation", m, report["fit_time_s"], None, (policy, report),
                        [f"value approximation: rank {report['rank']}, λ {report['reg']:g} (chosen on training "
                         f"episode {report['validation_episode']}), V's training RMSE {report['train_rmse']:.4g} "
                         f"vs cost-to-go std {report['cost_to_go_std']:.4g}"])


#: first evaluation seed of closed-loop episodes (Table 1's evaluation seeds start there; disjoint from training)
EVAL_SEED0 = 10_000


def closed_loop_value(prep: Prepared, policy, seeds) -> list[dict]:
    """The value-approximation policy as a whole controller (Table 6): one episode per evaluation seed in
    the case study's own simulator; [{"seed", "reward", "served", "failed_solves"}] per episode."""
    case, out = prep.case, []
    if prep.args.case == "amod":
        sim = AmodSim(prep.extra["spec"].build())
        for seed in seeds:
            state, failed = sim.reset(int(seed)), 0
            while not sim.done:
                x, sol = policy.solve(case.one_step(state))
                failed += not sol.ok
                parts = case.decision_columns(np.nan_to_num(x))
                sim.step(parts["f"], parts["g"])
                state = sim.state()
            out.append({"seed": int(seed), "reward": sim.totals["reward"], "served": sim.totals["served"],
                        "failed_solves": failed})
        return out

    env = InventoryEnv(prep.extra["scenario"])
    for seed in seeds:
        env.reset(seed=int(seed))
        total, served, failed, done = 0.0, 0.0, 0, False
        while not done:
            x, sol = policy.solve(case.one_step(env.state()))
            failed += not sol.ok
            _, r, term, trunc, info = env.step(np.maximum(case.decision_columns(np.nan_to_num(x))["all"], 0.0))
            total, served, done = total + r, served + info["served"], term or trunc
        out.append({"seed": int(seed), "reward": total, "served": served, "failed_solves": failed})
    return out


def _span(seeds) -> str:
    s = sorted(int(x) for x in seeds)
    if not s:
        return "none"
    return f"{s[0]}–{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 1 else ", ".join(map(str, s))
