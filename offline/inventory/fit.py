"""Learn θ of the inventory lower level (Eq. 31) from MPC demonstrations: `python -m offline.inventory.fit`.

1. The MPC (perfect demand knowledge, whole episode) runs `--episodes` episodes on demand seeds
   `--seed`, …; every step gives one demonstration: the state, the MPC's production w and
   shipments f, and the subgoal they imply (ŵ = w, q̂ = store stock next step; Remark 3).
2. Each demonstration becomes Problem 11's per-sample data of Eq. 31 at that state and subgoal
   (InventoryFop.inverse_sample → offline.inverse.InverseSample), and K ReLU terms (θ_k, μ_k) are
   fitted with the shared offline.inverse package.
3. Held-out demonstrations (other demand seeds) compare three lower levels with the MPC, each
   solved for the MPC's implied subgoal: θ = 0 (the benchmark LP's objective), θ = 0 with Eq. 31a's
   cost terms (production and transport cost), and the fitted ReLU terms θ̂. Metrics: cosine
   similarity and mean Manhattan (L1) distance of the commodity flows f (paper Table 4/5) and of
   all decisions (w, f).
4. The fit ships, among the candidates no worse than θ = 0 on every held-out metric (cosine and
   L1, flows and all decisions) and better on one, the one with the highest cosines; θ = 0 if none
   is (ties within 1e-6 go to the simpler form). With ``--cost-terms`` θ̂ is fitted on top of Eq.
   31a's cost terms and the reference is θ = 0 with those cost terms. It prints which and why
   and writes it atomically in the one θ schema (hiopt_ros.control.theta, case_study: inventory;
   ``cost_weights.cost_terms`` says whether Eq. 31a's cost terms are on), with every candidate's
   held-out numbers in its provenance.

The forward problem is Eq. 31 as an LP (no l‖x‖², `forward_l` = 0). Problem 11 needs l > 0
(Eq. 10, Prop. 4), so the fit uses `l` (1e-3) and the θ file records `l: 0`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hiopt_ros.control.theta import Theta, load_theta, save_theta
from hiopt_ros.progress import progress_bar
from offline.inverse import action_metrics, fit_inverse

from .env import InventoryEnv, InventoryState
from .lower import InventoryFop
from .mpc import InventoryMpc
from .scenarios import InventoryScenario, resolve_scenario

__all__ = ["Demonstration", "collect_demonstrations", "fit_theta", "imitation_metrics", "load_fop_theta",
           "FitReport"]

#: the lower levels the fit compares on held-out data (key -> label)
CANDIDATES = {"unchanged": "θ = 0", "cost_terms": "θ = 0 + Eq. 31a cost terms", "relu": "θ̂ (ReLU terms)"}
#: the ReLU candidate's label when it was fitted on top of the cost terms (fit_theta(cost_terms=True))
RELU_ON_COSTS = "θ̂ + Eq. 31a cost terms"

#: demand seeds of held-out demonstrations (below the evaluation seeds of Table 1, ≥ 10,000)
HELD_OUT_SEED = 9_000


@dataclass
class Demonstration:
    """One MPC decision: at `state` it produced w and shipped f."""

    seed: int
    state: InventoryState
    w: np.ndarray      # (W,)
    f: np.ndarray      # (E,)


def collect_demonstrations(scenario: InventoryScenario, seeds: Sequence[int], mpc: InventoryMpc | None = None,
                           progress: bool = False) -> list[Demonstration]:
    """Run the MPC on the demand samples of `seeds` (one episode each) and log every step."""
    mpc = mpc or InventoryMpc(scenario)
    env = InventoryEnv(scenario)
    demos: list[Demonstration] = []
    bar = progress_bar(total=len(seeds) * env.n_steps, enabled=progress, desc="MPC demonstrations",
                       unit="step")
    for seed in seeds:
        env.reset(seed=int(seed))
        done = False
        while not done:
            st = env.state()
            dec = mpc.decide(st, env.demand, env.n_steps)
            demos.append(Demonstration(int(seed), st, dec.w, dec.f))
            _, _, done, _, _ = env.step(dec.action)
            bar.update(1)
    bar.close()
    return demos


def imitation_metrics(fop: InventoryFop, demos: Sequence[Demonstration]) -> dict[str, dict[str, float]]:
    """FOP (with its installed θ) vs the MPC on `demos`, each solved for the MPC's implied subgoal.

    Returns {"flows": action_metrics of f, "all": of (w, f), "failed": count, "exact": decisions
    reproduced to 1e-6}."""
    mine, expert, failed = [], [], 0
    for d in demos:
        w_hat, q_hat = fop.implied_subgoal(d.state, d.w, d.f)
        dec = fop.solve(d.state, w_hat, q_hat)
        if not dec.solution.ok:
            failed += 1
            continue
        mine.append(dec.action)
        expert.append(np.r_[d.w, d.f])
    mine, expert = np.array(mine), np.array(expert)
    W = fop.W
    exact = int(np.sum(np.all(np.abs(mine - expert) <= 1e-6, axis=1)))
    return {"flows": action_metrics(mine[:, W:], expert[:, W:]), "all": action_metrics(mine, expert),
            "failed": failed, "exact": exact}


def eq31_violations(scenario: InventoryScenario, demos: Sequence[Demonstration],
                    capacity_timing: str = "env") -> dict[str, int]:
    """How many MPC decisions lie outside Eq. 31's capacity rows (no θ can reproduce them). With
    the paper's timing ("scim") the MPC breaks (31c) whenever it ships against tomorrow's demand
    (§6, §11.9) and (31e) when it produces more than the factory can hold before shipping it."""
    sc = scenario
    c, e = 0, 0
    for d in demos:
        s = d.state.stock_after_sales
        room = sc.capacity_s + (d.state.next_demand if capacity_timing == "env" else 0.0)
        c += bool(np.any(s + sc.in_edges @ d.f > np.maximum(room, s) + 1e-6))
        made = d.w if capacity_timing == "scim" else 0.0
        e += bool(np.any(d.state.stock_w + made - sc.out_edges @ d.f > sc.capacity_w + 1e-6))
    return {"31c": c, "31e": e}


@dataclass
class FitReport:
    """What fit_theta did, for the printout and the θ file's provenance."""

    theta: object                                 # hiopt_ros.control.theta.Theta
    fit: object                                   # offline.inverse.InverseFit
    train_seeds: list[int]
    held_out_seeds: list[int]
    n_train: int
    n_held_out: int
    held_out: dict = field(default_factory=dict)  # {candidate: metrics} (CANDIDATES)
    demo_time_s: float = 0.0
    chosen: str = "unchanged"                     # the candidate written to the θ file
    why: str = ""
    relu_on_cost_terms: bool = False              # θ̂ was fitted on top of Eq. 31a's cost terms
    violations: dict = field(default_factory=lambda: {"31c": 0, "31e": 0})   # eq31_violations(held-out)

    def lines(self) -> list[str]:
        f = self.fit
        out = [f"inverse optimization (Problem 11): K={np.shape(f.theta)[0]} l={f.l:g} rho={f.rho:g} method={f.method} "
               f"status={f.status} {f.solve_time_s:.1f} s; {self.n_train} samples (demand seeds "
               f"{_ranges(self.train_seeds)})",
               f"  duality gaps: mean {np.mean(f.gaps):.3g}  max {np.max(f.gaps):.3g}  "
               f"(Prop. 4: ‖x*−x‖ ≤ {f.prop4_bound:.3g})",
               f"held-out ({self.n_held_out} MPC decisions, demand seeds {_ranges(self.held_out_seeds)}): "
               "FOP for the MPC's implied subgoal vs the MPC",
               f"  {'':28s}{'cosine f':>10s}{'L1 f':>9s}{'cosine (w,f)':>14s}{'L1 (w,f)':>10s}"]
        for key, label in CANDIDATES.items():
            label = RELU_ON_COSTS if key == "relu" and self.relu_on_cost_terms else label
            m = self.held_out[key]
            mark = "  ← shipped" if key == self.chosen else ""
            out.append(f"  {label:28s}{m['flows']['cosine']:10.4f}{m['flows']['l1']:9.3f}"
                       f"{m['all']['cosine']:14.4f}{m['all']['l1']:10.3f}{mark}")
        out.append("  decisions reproduced exactly: " + ", ".join(
            f"{k} {self.held_out[k]['exact']}/{self.n_held_out}" for k in CANDIDATES)
            + f"; MPC decisions outside Eq. 31: (31c) {self.violations['31c']}, (31e) {self.violations['31e']}")
        out.append(f"  shipped: {CANDIDATES[self.chosen]}: {self.why}")
        names = self.theta.input_names
        alpha, mu = np.atleast_2d(f.theta), np.ravel(f.nu)
        for k in range(len(mu)):
            nz = np.flatnonzero(np.abs(alpha[k]) > 1e-3)
            terms = " ".join(f"{alpha[k, j]:+.3f}·{names[j]}" for j in nz) or "0"
            out.append(f"  fitted ReLU {k + 1}: max({terms} − ({mu[k]:.3f}), 0)")
        return out


def fit_theta(scenario: InventoryScenario, train_seeds: Sequence[int], held_out_seeds: Sequence[int], *,
              K: int = 2, l: float = 1e-3, rho: float = 1e-3, method: str = "alternating",  # noqa: E741 (Eq. 10)
              time_limit_s: float = 300.0, seed: int = 0, progress: bool = False, command: str = "",
              mpc: InventoryMpc | None = None, forward_l: float = 0.0, cost_terms: bool = False,
              capacity_timing: str = "env", **fit_kwargs) -> FitReport:
    """Demonstrations → Problem 11 → θ̂ (a Theta with provenance) and its held-out imitation metrics.

    cost_terms: fit θ̂ on top of Eq. 31 with its cost terms (31a) instead of the benchmark LP's
    objective. capacity_timing: InventoryFop's (every candidate uses it). fit_kwargs go to
    offline.inverse.fit_inverse (e.g. restarts, subsample)."""
    mpc = mpc or InventoryMpc(scenario)
    t0 = time.perf_counter()
    train = collect_demonstrations(scenario, train_seeds, mpc, progress)
    held = collect_demonstrations(scenario, held_out_seeds, mpc, progress)
    demo_s = time.perf_counter() - t0
    fop = InventoryFop(scenario, K=K, l=forward_l, cost_terms=cost_terms, capacity_timing=capacity_timing)
    samples = [fop.inverse_sample(d.state, d.w, d.f) for d in train]   # l is the inverse problem's own
    fit = fit_inverse(samples, K=K, l=l, rho=rho, method=method, time_limit_s=time_limit_s, seed=seed,
                      progress=progress, **fit_kwargs)
    held_out = {}
    fop.set_theta(np.zeros((0, fop.n)), np.zeros(0))
    tm = capacity_timing
    held_out["unchanged"] = imitation_metrics(InventoryFop(scenario, K=0, l=forward_l, capacity_timing=tm), held)
    held_out["cost_terms"] = imitation_metrics(
        InventoryFop(scenario, K=0, l=forward_l, cost_terms=True, capacity_timing=tm), held)
    fop.set_theta(fit.theta, fit.nu)
    held_out["relu"] = imitation_metrics(fop, held)
    # θ = 0 of the objective θ̂ was fitted on is the reference it must never be worse than
    chosen, why = (choose_lower_level(held_out, reference="cost_terms", candidates=("relu",)) if cost_terms
                   else choose_lower_level(held_out))
    alpha, beta = (fit.theta, fit.nu) if chosen == "relu" else (np.zeros((0, fop.n)), np.zeros(0))
    theta = Theta(alpha=alpha, beta=beta, l=forward_l, case_study="inventory", input_names=list(fop.names),
                  cost_weights={"cost_terms": 1.0 if chosen == "cost_terms" or (chosen == "relu" and cost_terms)
                                else 0.0,
                                "scim_lp_timing": 1.0 if capacity_timing == "scim" else 0.0},
                  subgoal={"definition": "expert_implied",
                           "w_hat": "the MPC's production w of the step",
                           "q_hat": "the store stock the MPC's shipments lead to at the next step"},
                  provenance={
                      "created": _dt.datetime.now().isoformat(timespec="seconds"),
                      "command": command, "scenario": scenario.name,
                      "horizon_steps": scenario.horizon_steps,
                      "expert": "InventoryMpc (perfect demand knowledge, whole remaining horizon)",
                      "train_demand_seeds": list(map(int, train_seeds)),
                      "held_out_demand_seeds": list(map(int, held_out_seeds)),
                      "samples": len(samples), "K": K, "fit_l": l, "rho": rho, "method": fit.method,
                      "status": fit.status, "solve_time_s": round(fit.solve_time_s, 2),
                      "gap_mean": float(np.mean(fit.gaps)), "gap_max": float(np.max(fit.gaps)),
                      "held_out": held_out, "chosen": chosen, "why": why, "relu_on_cost_terms": bool(cost_terms),
                      "fitted_relu": {"alpha": np.asarray(fit.theta).tolist(), "mu": np.asarray(fit.nu).tolist()},
                  })
    return FitReport(theta=theta, fit=fit, train_seeds=list(train_seeds), held_out_seeds=list(held_out_seeds),
                     n_train=len(samples), n_held_out=len(held), held_out=held_out, demo_time_s=demo_s,
                     chosen=chosen, why=why, relu_on_cost_terms=bool(cost_terms),
                     violations=eq31_violations(scenario, held, capacity_timing))


def choose_lower_level(held_out: dict, tol: float = 1e-6, reference: str = "unchanged",
                       candidates: Sequence[str] = ("cost_terms", "relu")) -> tuple[str, str]:
    """(candidate, reason): among the candidates no worse than the reference θ = 0 on every held-out
    metric (higher cosine, lower L1, for f and for (w, f)) and better on at least one, the one with
    the highest cosines (f plus (w, f)); the reference if none is."""
    base = held_out[reference]
    ref_label = CANDIDATES[reference]

    def worse(m) -> list[str]:
        bad = []
        for part in ("flows", "all"):
            if m[part]["cosine"] < base[part]["cosine"] - tol:
                bad.append(f"cosine {part} {m[part]['cosine']:.4f} < {base[part]['cosine']:.4f}")
            if m[part]["l1"] > base[part]["l1"] + tol:
                bad.append(f"L1 {part} {m[part]['l1']:.3f} > {base[part]['l1']:.3f}")
        return bad

    reasons, ok = [], []
    for key in candidates:
        bad = worse(held_out[key])
        if bad:
            reasons.append(f"{CANDIDATES[key]} is worse than {ref_label} on held-out data ({'; '.join(bad)})")
        elif any(held_out[key][part]["cosine"] > base[part]["cosine"] + tol
                 or held_out[key][part]["l1"] < base[part]["l1"] - tol for part in ("flows", "all")):
            ok.append(key)
        else:
            reasons.append(f"{CANDIDATES[key]} ties {ref_label} on held-out data")
    if not ok:
        return reference, "; ".join(reasons) + f"; {ref_label} is the simplest"
    best = max(ok, key=lambda k: (held_out[k]["flows"]["cosine"] + held_out[k]["all"]["cosine"],
                                  -held_out[k]["flows"]["l1"] - held_out[k]["all"]["l1"]))
    return best, (f"no worse than {ref_label} on every held-out metric, better on one, and the best cosines "
                  f"({held_out[best]['flows']['cosine']:.4f} vs {ref_label} {base['flows']['cosine']:.4f}; "
                  f"(w, f) {held_out[best]['all']['cosine']:.4f} vs {base['all']['cosine']:.4f})"
                  + (f"; {'; '.join(reasons)}" if reasons else ""))


def load_fop_theta(scenario: InventoryScenario, path: str | Path) -> InventoryFop:
    """An InventoryFop for `scenario` with the θ file at `path` installed (its K, l).

    The file must be an inventory θ whose input_names are this scenario's Eq. 31 columns."""
    th = load_theta(path)
    fop = InventoryFop(scenario, K=max(th.K, 1), l=th.l, cost_terms=bool(th.cost_weights.get("cost_terms", 0.0)),
                       capacity_timing="scim" if th.cost_weights.get("scim_lp_timing", 0.0) else "env")
    if th.case_study != "inventory":
        raise ValueError(f"θ file {path}: case_study is {th.case_study!r}, expected 'inventory'")
    if list(th.input_names) != list(fop.names):
        raise ValueError(f"θ file {path}: its input_names do not match scenario {scenario.name}'s Eq. 31 columns "
                         f"(fitted for {th.provenance.get('scenario', '?')}); refit with "
                         f"python -m offline.inventory.fit --scenario {scenario.name}")
    fop.set_theta(th.alpha, th.beta)
    return fop


def _ranges(seeds: Sequence[int]) -> str:
    s = sorted(set(int(x) for x in seeds))
    if not s:
        return "none"
    return f"{s[0]}–{s[-1]}" if s == list(range(s[0], s[-1] + 1)) and len(s) > 1 else ", ".join(map(str, s))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m offline.inventory.fit",
        description="Fit the ReLU terms θ of the inventory lower level (Eq. 31) to MPC demonstrations by "
                    "inverse optimization (Problem 11) and write a θ file (case_study: inventory).")
    ap.add_argument("--scenario", default="1F10S", help="benchmark preset 1F2S, 1F3S or 1F10S (default 1F10S)")
    ap.add_argument("--scenario-file", type=Path, default=None,
                    help="YAML file of your own network instead of a preset (keys: offline.inventory.scenarios)")
    ap.add_argument("--episodes", type=int, default=2, help="MPC demonstration episodes (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="first demand seed of the demonstrations (default 0)")
    ap.add_argument("--held-out", type=int, default=3, help="held-out demonstration episodes (default 3), "
                    f"demand seeds {HELD_OUT_SEED}, …")
    ap.add_argument("--K", type=int, default=2, help="ReLU terms (default 2)")
    ap.add_argument("--l", type=float, default=1e-3, help="l of Problem 11 (Eq. 10's l‖x‖², Prop. 4; default 1e-3)")
    ap.add_argument("--forward-l", type=float, default=0.0,
                    help="l‖x‖² of the deployed lower level (default 0: Eq. 31 is an LP)")
    ap.add_argument("--rho", type=float, default=1e-3, help="regularisation ρ‖θ‖² of (11a) (default 1e-3)")
    ap.add_argument("--method", default="alternating", choices=["auto", "global", "alternating"],
                    help="offline.inverse method (default alternating)")
    ap.add_argument("--time-limit-s", type=float, default=300.0, help="inverse solver time limit (default 300)")
    ap.add_argument("--scim-lp-timing", action="store_true",
                    help="Eq. 31c/e as the paper and the benchmark LP write them (capacity on today's stock plus "
                         "tomorrow's arrival; default: on the stocks the environment clips)")
    ap.add_argument("--cost-terms", action="store_true",
                    help="fit θ̂ on top of Eq. 31 with its cost terms (31a: production and transport cost) instead "
                         "of the benchmark LP's objective (subgoal deviations only)")
    ap.add_argument("--out", type=Path, default=None,
                    help="θ file to write (default results/inventory/theta_<scenario>.yaml)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    try:
        scenario = resolve_scenario(args.scenario, args.scenario_file)
    except ValueError as e:
        print(f"offline.inventory.fit: {'' if args.scenario_file else '--scenario: '}{e}", file=sys.stderr)
        return 2
    for name in ("episodes", "held_out", "K"):
        if getattr(args, name) < 1:
            print(f"offline.inventory.fit: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if not args.l > 0:
        print("offline.inventory.fit: --l must be > 0 (Prop. 4 needs a strongly convex FOP)", file=sys.stderr)
        return 2
    if not args.forward_l >= 0:
        print("offline.inventory.fit: --forward-l must be >= 0", file=sys.stderr)
        return 2
    train = list(range(args.seed, args.seed + args.episodes))
    held = list(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out))
    if set(train) & set(held):
        print(f"offline.inventory.fit: demonstration seeds {_ranges(train)} overlap the held-out seeds "
              f"{_ranges(held)}; choose --seed below {HELD_OUT_SEED - args.episodes + 1}", file=sys.stderr)
        return 2
    out = args.out or Path("results") / "inventory" / f"theta_{scenario.name}.yaml"
    t0 = time.perf_counter()
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m offline.inventory.fit " + " ".join(shlex.quote(a) for a in given)
    try:
        report = fit_theta(scenario, train, held, K=args.K, l=args.l, rho=args.rho, method=args.method,
                           time_limit_s=args.time_limit_s, progress=not args.no_progress and sys.stderr.isatty(),
                           command=command, forward_l=args.forward_l, cost_terms=args.cost_terms,
                           capacity_timing="scim" if args.scim_lp_timing else "env")
    except RuntimeError as e:
        print(f"offline.inventory.fit: solver failed: {e}", file=sys.stderr)
        return 1
    print(f"offline.inventory.fit: scenario {scenario.name}, {report.n_train} MPC decisions from "
          f"{args.episodes} episode(s) ({report.demo_time_s:.1f} s)")
    print("\n".join(report.lines()))
    save_theta(out, report.theta)
    print(f"wrote {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
