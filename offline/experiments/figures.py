"""Figures 4 and 5 of the paper (Appendix C.3): sensitivity of inverse optimization.

    python -m offline.experiments fig4        # number of ReLU terms K -> held-out cosine / Manhattan
    python -m offline.experiments fig5        # noise in the demonstrations -> similarity to the noise-free expert

Both fit θ by Problem 11 on MPC demonstrations (the case studies' own fit code: offline.amod.fit,
offline.inventory.fit) and score the lower level FOP_θ, solved for the expert's implied subgoal, on
held-out demonstrations (demand seeds the fit never saw, printed): cosine similarity and Manhattan
(L1) distance per decision of the rebalancing flows (AMoD) / shipments (inventory) to the MPC's.
Every (case, K) or (case, noise level, repeat) fit is one task of offline.sweep (``--workers N``).

Fig. 5's noise: each demonstrated flow gets Gaussian noise of standard deviation σ × (mean of the
demonstrated nonzero flows), clipped at 0, and the subgoal is recomputed from the noisy flows (the
subgoal the noisy expert implies); the score is against the noise-free held-out expert. AMoD: the
rebalancing flows of offline.amod demonstrations; inventory: production and shipments of
offline.inventory.fit's demonstrations (the fit composed from that module's pieces: its samples,
offline.inverse.fit_inverse with fit_theta's l and ρ, its imitation_metrics).

The robot (Fig. 4, ``--cases robot``): offline.fit on expert bags recorded by offline.demos (training
courses from seed ROBOT_TRAIN_SEED, validation courses from ROBOT_VAL_SEED, cached in --work-dir),
the paper's form (``--learn relu``: K ReLU terms on the parameter file's Eq. 32a) at one subgoal
definition (--robot-subgoal, the shipped θ's), scored by offline.fit on the validation bags (the
acados FOP's actions against the expert's); K = 0 is the unchanged FOP, which offline.fit scores on
the same validation samples beside every fit.

The paper's second Fig. 5 claim (the bi-level policy with θ fitted on the noisy expert's
demonstrations against that noisy expert's reward, +1.7 %) is ``python -m offline.experiments
fig5-bilevel`` (offline.experiments.noisy_expert).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import sys
import time
from pathlib import Path

import numpy as np

from hiopt_ros.tables import Column, markdown_table
from offline import fit
from offline.amod import fit as amod_fit
from offline.amod.config import ScenarioSpec
from offline.amod.demos import collect
from offline.amod.lower import Eq25Fop
from offline.amod.scenario import SIZES
from offline.amod.sim import AmodSim
from offline.demos import record
from offline.inventory import fit as inventory_fit
from offline.inventory.lower import InventoryFop
from offline.inventory.scenarios import make_scenario
from offline.inverse import fit_inverse
from offline.sweep import Task, add_sweep_arguments, options_from_args, run_sweep
from sim.results import new_results_dir

K_VALUES = (0, 1, 2, 4, 8)
#: course seeds of the robot's demonstrations: training, validation (offline.fit's own documented choice)
ROBOT_TRAIN_SEED, ROBOT_VAL_SEED = 1, 101
NOISE_LEVELS = (0.0, 0.1, 0.2, 0.5, 1.0)
QUICK_ARGV = {"fig4": ["--K-values", "0,1,2", "--amod-scenario", "tiny", "--amod-horizon", "4",
                       "--demo-episodes", "1", "--held-out-episodes", "1", "--inventory-scenario", "1F2S",
                       "--inventory-horizon", "4", "--fit-time-limit", "5"],
              "fig5": ["--noise", "0,0.5", "--amod-scenario", "tiny", "--amod-horizon", "4", "--demo-episodes", "1",
                       "--held-out-episodes", "1", "--fit-time-limit", "5"]}
FULL_ARGV = {"fig4": [], "fig5": []}
#: demand seeds: demonstrations from DEMO_SEED0, held-out ones from HELD_OUT_SEED0 (disjoint)
DEMO_SEED0, HELD_OUT_SEED0 = 0, 500


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", default=None,
                   help="comma-separated case studies (fig4: amod,inventory,robot; fig5: amod,inventory)")
    p.add_argument("--K-values", default=",".join(map(str, K_VALUES)), help="fig4: ReLU terms (default 0,1,2,4,8)")
    p.add_argument("--noise", default=",".join(map(str, NOISE_LEVELS)),
                   help="fig5: noise levels σ, relative to the mean demonstrated flow (default 0,0.1,0.2,0.5,1)")
    p.add_argument("--K", type=int, default=2, help="fig5: ReLU terms of the fits (default 2)")
    p.add_argument("--repeats", type=int, default=2, help="fig5: noise draws per level (default 2)")
    p.add_argument("--demo-episodes", type=int, default=5, help="MPC demonstration episodes of a fit (default 5)")
    p.add_argument("--held-out-episodes", type=int, default=3, help="held-out MPC episodes (default 3)")
    p.add_argument("--fit-time-limit", type=float, default=120.0, help="time limit of each fit, s (default 120)")
    p.add_argument("--amod-scenario", default="small", help="AMoD synthetic size or preset (default small)")
    p.add_argument("--amod-horizon", type=int, default=None, help="AMoD episode steps (default the scenario's)")
    p.add_argument("--inventory-scenario", default="1F3S", help="SCIM preset (default 1F3S)")
    p.add_argument("--inventory-horizon", type=int, default=None, help="inventory episode steps (default preset's)")
    g = p.add_argument_group("robot (fig4 --cases robot; offline.fit)")
    g.add_argument("--robot-episodes", type=int, default=24,
                   help=f"training courses of expert demonstrations (seed {ROBOT_TRAIN_SEED}; default 24)")
    g.add_argument("--robot-val-episodes", type=int, default=12,
                   help=f"validation courses (seed {ROBOT_VAL_SEED}; default 12)")
    g.add_argument("--robot-subgoal", default="plan:6", help="offline.fit --subgoal (default plan:6, the shipped θ's)")
    g.add_argument("--robot-max-train", type=int, default=0,
                   help="offline.fit --max-train: fit on at most this many samples (default 0: all)")
    g.add_argument("--work-dir", type=Path, default=Path("results") / "figures",
                   help="cache of the robot's demonstration bags (default results/figures/)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default results/<fig>/<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_sweep_arguments(p)


# ---------------------------------------------------------------------------- tasks (plain functions)
def _amod_spec(name: str, horizon: int | None):
    return ScenarioSpec(synthetic=name, horizon=horizon) if name in SIZES else \
        ScenarioSpec(preset=name, horizon=horizon)


_DEMOS: dict = {}


def _amod_demos(spec, seeds: tuple[int, ...]):
    """MPC demonstrations of `seeds` (kept per process: every K of a sweep fits the same ones)."""
    if (spec, seeds) not in _DEMOS:
        _DEMOS[(spec, seeds)] = collect(AmodSim(spec.build()), list(seeds), progress=False)
    return _DEMOS[(spec, seeds)]


def noisy_amod_demos(sim, demos, sigma: float, seed: int):
    """The demonstrations with σ-relative Gaussian noise on the rebalancing flows (module docstring)."""
    if sigma <= 0:
        return demos
    rng = np.random.default_rng(seed)
    nz = np.abs(demos.f[demos.f > 0])
    scale = sigma * (float(nz.mean()) if nz.size else 1.0)
    f = np.maximum(demos.f + rng.normal(0.0, scale, size=demos.f.shape), 0.0)
    fop = Eq25Fop(sim)
    qhat = np.array([fop.implied_subgoal(demos.state(k), f[k], demos.g[k]) for k in range(len(demos))])
    return dataclasses.replace(demos, f=f, qhat=qhat)


def amod_fit_task(spec, demo_seeds, held_seeds, K: int, sigma: float, noise_seed: int, time_limit_s: float) -> dict:
    """Fit K ReLU terms on (noisy) AMoD demonstrations; score on the noise-free held-out ones."""
    sim = AmodSim(spec.build())
    train = noisy_amod_demos(sim, _amod_demos(spec, tuple(demo_seeds)), sigma, noise_seed)
    held = _amod_demos(spec, tuple(held_seeds))
    t0 = time.perf_counter()
    theta, status = None, "θ = 0 (no ReLU term)"
    if K > 0:
        theta, fit = amod_fit.fit_theta(sim, train, K=K, time_limit_s=time_limit_s, progress=False)
        status = str(fit.status)
    m = amod_fit.imitation(sim, held, theta)
    return {"cosine": m["f"]["cosine"], "manhattan": m["f"]["l1"], "fit_s": time.perf_counter() - t0,
            "status": status, "samples": len(train), "held_out": len(held), "failed": m["failed"]}


def inventory_fit_task(name: str, horizon: int | None, demo_seeds, held_seeds, K: int, time_limit_s: float) -> dict:
    """Fit K ReLU terms on inventory demonstrations (offline.inventory.fit); score on held-out ones."""
    sc = make_scenario(name, horizon)
    t0 = time.perf_counter()
    if K == 0:
        held = inventory_fit.collect_demonstrations(sc, list(held_seeds))
        m, status, n = inventory_fit.imitation_metrics(InventoryFop(sc, K=0), held), "θ = 0 (no ReLU term)", 0
    else:
        rep = inventory_fit.fit_theta(sc, list(demo_seeds), list(held_seeds), K=K, time_limit_s=time_limit_s)
        m, status, n = rep.held_out["relu"], str(rep.fit.status), rep.n_train
    return {"cosine": m["flows"]["cosine"], "manhattan": m["flows"]["l1"], "fit_s": time.perf_counter() - t0,
            "status": status, "samples": n, "held_out": len(held_seeds), "failed": m["failed"]}


def noisy_inventory_demos(demos, sigma: float, seed: int):
    """The inventory demonstrations with σ-relative Gaussian noise on production w and shipments f
    (module docstring); the subgoal is implied from the noisy decision when the sample is built."""
    if sigma <= 0:
        return demos
    rng = np.random.default_rng(seed)
    nz = np.abs(np.concatenate([np.r_[d.w, d.f] for d in demos]))
    nz = nz[nz > 0]
    scale = sigma * (float(nz.mean()) if nz.size else 1.0)
    return [dataclasses.replace(d, w=np.maximum(d.w + rng.normal(0.0, scale, d.w.shape), 0.0),
                                f=np.maximum(d.f + rng.normal(0.0, scale, d.f.shape), 0.0)) for d in demos]


def inventory_noise_task(name: str, horizon: int | None, demo_seeds, held_seeds, K: int, sigma: float,
                         noise_seed: int, time_limit_s: float) -> dict:
    """Fit K ReLU terms on (noisy) inventory demonstrations; score on the noise-free held-out ones."""
    import inspect

    sc = make_scenario(name, horizon)
    t0 = time.perf_counter()
    train = noisy_inventory_demos(inventory_fit.collect_demonstrations(sc, list(demo_seeds)), sigma, noise_seed)
    held = inventory_fit.collect_demonstrations(sc, list(held_seeds))
    fop = InventoryFop(sc, K=K)
    defaults = {k: v.default for k, v in inspect.signature(inventory_fit.fit_theta).parameters.items()}
    samples = [fop.inverse_sample(d.state, d.w, d.f) for d in train]
    fit = fit_inverse(samples, K=K, l=defaults["l"], rho=defaults["rho"], method=defaults["method"],
                      time_limit_s=time_limit_s, progress=False)
    fop.set_theta(fit.theta, fit.nu)
    m = inventory_fit.imitation_metrics(fop, held)
    return {"cosine": m["flows"]["cosine"], "manhattan": m["flows"]["l1"], "fit_s": time.perf_counter() - t0,
            "status": str(fit.status), "samples": len(samples), "held_out": len(held), "failed": m["failed"]}


def robot_bags(args) -> tuple[Path, Path]:
    """The robot's training and validation bags (offline.demos.record), recorded once into --work-dir."""
    paths = []
    for what, n, seed in (("train", args.robot_episodes, ROBOT_TRAIN_SEED),
                          ("val", args.robot_val_episodes, ROBOT_VAL_SEED)):
        path = Path(args.work_dir) / "robot" / f"demos_{what}_seed{seed}_n{n}.mcap"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"[{args.table}] robot: recording {n} expert courses (seed {seed}) → {path}", file=sys.stderr)
            record(path, n, seed, progress=False)
        paths.append(path)
    return paths[0], paths[1]


def robot_fit_task(train_bag: str, val_bag: str, K: int, subgoal: str, time_limit_s: float, max_train: int,
                   out_dir: str) -> dict:
    """offline.fit with K ReLU terms (the paper's form) at one subgoal definition; its validation scores
    (the learned FOP, and the unchanged one = K 0) on the validation bag."""
    argv = [str(train_bag), "--validate", str(val_bag), "--out", str(Path(out_dir) / f"theta_robot_K{K}.yaml"),
            "--learn", "relu", "--K", str(K), "--subgoal", subgoal, "--held-out", "0", "--closed-loop", "0",
            "--time-limit-s", f"{time_limit_s:g}", "--max-train", str(max_train), "--no-progress"]
    args = fit.build_parser().parse_args(argv)
    args.argv = argv
    rep = fit.run(args)
    v = rep["validation"]
    return {"cosine": v["learned"]["cosine"], "manhattan": v["learned"]["l1"], "fit_s": rep["fit_time_s"],
            "status": rep["solver_status"], "samples": rep["samples"]["train"], "held_out": v["n"],
            "failed": v["learned"]["fop_failures"],
            "unchanged": {"cosine": v["unchanged"]["cosine"], "manhattan": v["unchanged"]["l1"],
                          "failed": v["unchanged"]["fop_failures"]}}


# ---------------------------------------------------------------------------- the figures
def _floats(text: str, what: str, cast=float) -> list:
    try:
        vals = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise ValueError(f"{what}: expected numbers >= 0, got {text!r}")
    return vals


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    fig = args.table
    cases = [c.strip() for c in (args.cases or ("amod,inventory" if fig == "fig4" else "amod")).split(",")]
    allowed = ("amod", "inventory", "robot") if fig == "fig4" else ("amod", "inventory")
    bad = [c for c in cases if c not in allowed]
    if bad:
        raise ValueError(f"--cases: {fig} supports {', '.join(allowed)}; got {bad} (module docstring: why)")
    if args.demo_episodes < 1 or args.held_out_episodes < 1 or args.repeats < 1:
        raise ValueError("--demo-episodes, --held-out-episodes and --repeats must be >= 1")
    if "robot" in cases and (args.robot_episodes < 1 or args.robot_val_episodes < 1):
        raise ValueError("--robot-episodes and --robot-val-episodes must be >= 1")
    demo_seeds = tuple(range(DEMO_SEED0, DEMO_SEED0 + args.demo_episodes))
    held_seeds = tuple(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + args.held_out_episodes))
    out = args.out or new_results_dir(fig)
    out.mkdir(parents=True, exist_ok=True)
    tasks, x_of = [], {}
    spec = _amod_spec(args.amod_scenario, args.amod_horizon)
    inv = (args.inventory_scenario, args.inventory_horizon)
    if fig == "fig4":
        xs = _floats(args.K_values, "--K-values", int)
        for c in cases:
            if c == "robot":        # K = 0 is the unchanged FOP, scored beside every fit
                train_bag, val_bag = robot_bags(args)
                for K in sorted({k for k in xs if k > 0} or {1}):
                    tasks.append(Task(f"robot/K{K}", robot_fit_task, (str(train_bag), str(val_bag), K,
                                      args.robot_subgoal, args.fit_time_limit, args.robot_max_train, str(out))))
                    x_of[tasks[-1].name] = K
                continue
            for K in xs:
                if c == "amod":
                    tasks.append(Task(f"amod/K{K}", amod_fit_task,
                                      (spec, demo_seeds, held_seeds, K, 0.0, 0, args.fit_time_limit)))
                else:
                    tasks.append(Task(f"inventory/K{K}", inventory_fit_task,
                                      (*inv, demo_seeds, held_seeds, K, args.fit_time_limit)))
                x_of[tasks[-1].name] = K
        xlabel, xkey = "ReLU terms K", "K"
    else:
        xs = _floats(args.noise, "--noise")
        for c in cases:
            for sigma in xs:
                for r in range(args.repeats if sigma > 0 else 1):
                    name = f"{c}/noise{sigma:g}/draw{r}"
                    if c == "amod":
                        tasks.append(Task(name, amod_fit_task, (spec, demo_seeds, held_seeds, args.K, sigma, 1000 + r,
                                                                args.fit_time_limit)))
                    else:
                        tasks.append(Task(name, inventory_noise_task, (*inv, demo_seeds, held_seeds, args.K, sigma,
                                                                       1000 + r, args.fit_time_limit)))
                    x_of[name] = sigma
        xlabel, xkey = "noise σ (× mean demonstrated flow)", "noise"
    sweep = options_from_args(args, progress=not args.quiet)
    print(f"offline.experiments {fig}: {len(tasks)} fits ({', '.join(cases)}) {sweep.where}; demonstrations: demand "
          f"seeds {demo_seeds[0]}–{demo_seeds[-1]}, held-out: {held_seeds[0]}–{held_seeds[-1]}"
          + (f"; robot: course seeds {ROBOT_TRAIN_SEED} (training), {ROBOT_VAL_SEED} (validation)"
             if "robot" in cases else ""))
    res = run_sweep(tasks, sweep, desc=fig, log=lambda m: print(m, file=sys.stderr))
    rows = []
    keys = ("cosine", "manhattan", "fit_s", "status", "samples", "failed")
    for t in tasks:
        v = res.values.get(t.name)
        case = t.name.split("/")[0]
        if v is None:
            continue
        if case == "robot" and 0 in xs and not any(r["case"] == "robot" and r[xkey] == 0 for r in rows):
            u = v["unchanged"]
            rows.append({"case": "robot", xkey: 0, "task": f"{t.name} (unchanged FOP)", "cosine": u["cosine"],
                         "manhattan": u["manhattan"], "fit_s": 0.0, "status": "θ = 0 (no ReLU term)", "samples": 0,
                         "failed": u["failed"]})
        if case == "robot" and x_of[t.name] not in xs:
            continue                 # the K = 1 fit that only scored the unchanged FOP
        rows.append({"case": case, xkey: x_of[t.name], "task": t.name, **{k: v[k] for k in keys}})
    md = _markdown(fig, rows, xkey, xlabel, args, argv, res)
    paths = {"markdown": out / f"{fig}.md", "csv": out / f"{fig}.csv", "png": out / f"{fig}.png"}
    paths["markdown"].write_text(md)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paths["csv"].write_text(buf.getvalue())
    _plot(rows, cases, xkey, xlabel, paths["png"], fig)
    print(md)
    print(f"results folder: {out} ({fig}.md, {fig}.csv, {fig}.png)")
    return {"out": out, "paths": paths, "rows": rows, "sweep": res}


def _markdown(fig, rows, xkey, xlabel, args, argv, res) -> str:
    title = ("Figure 4: sensitivity to the number of ReLU terms" if fig == "fig4" else
             "Figure 5: sensitivity to noise in the demonstrations")
    network = any(r["case"] != "robot" for r in rows)
    notes = [*([f"held-out MPC decisions (demand seeds from {HELD_OUT_SEED0}, {args.held_out_episodes} episode(s)); "
                f"fits on {args.demo_episodes} demonstration episode(s) from seed {DEMO_SEED0}"] if network else []),
             f"fit time limit {args.fit_time_limit:g} s",
             "cosine similarity and Manhattan (L1) distance per decision of the lower level's flows (AMoD: "
             "rebalancing, inventory: shipments; robot: (v, ω)) to the noise-free expert's",
             *([f"scenarios: AMoD {args.amod_scenario}, inventory {args.inventory_scenario}"] if network else []),
             *([f"robot: offline.fit --learn relu --subgoal {args.robot_subgoal} on {args.robot_episodes} expert "
                f"courses (seed {ROBOT_TRAIN_SEED}), scored on {args.robot_val_episodes} validation courses (seed "
                f"{ROBOT_VAL_SEED}); samples = fitted samples"] if any(r["case"] == "robot" for r in rows) else []),
             f"fits ran {res.where} ({res.wall_s:.0f} s)",
             *[f"failed: {line}" for line in res.failure_lines()],
             "command: python -m offline.experiments " + " ".join(argv)]
    if fig == "fig5":
        notes.append("the paper's second claim (bi-level policy on noisy-demonstration θ vs the noisy expert's "
                     "reward, +1.7 %): python -m offline.experiments fig5-bilevel")
    cols = [Column("case"), Column(xlabel, "right"), Column("cosine", "right"), Column("Manhattan", "right"),
            Column("fit (s)", "right"), Column("fit status"), Column("samples", "right")]
    table = [[r["case"], r[xkey], f"{r['cosine']:.4f}", f"{r['manhattan']:.3f}", f"{r['fit_s']:.1f}", r["status"],
              r["samples"]] for r in rows]
    return f"## {title}\n\n" + "".join(f"- {n}\n" for n in notes) + "\n" + markdown_table(cols, table) + "\n"


def _plot(rows, cases, xkey, xlabel, path: Path, fig_name: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for c in cases:
        pts = sorted((r[xkey], r["cosine"], r["manhattan"]) for r in rows if r["case"] == c)
        if not pts:
            continue
        xs = sorted({p[0] for p in pts})
        cos = [np.mean([p[1] for p in pts if p[0] == x]) for x in xs]
        man = [np.mean([p[2] for p in pts if p[0] == x]) for x in xs]
        axes[0].plot(xs, cos, "o-", label=c)
        axes[1].plot(xs, man, "o-", label=c)
    axes[0].set_ylabel("held-out cosine similarity")
    axes[1].set_ylabel("held-out Manhattan distance")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.legend()
    fig.suptitle("Figure 4: number of ReLU terms" if fig_name == "fig4" else "Figure 5: noise in the demonstrations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
