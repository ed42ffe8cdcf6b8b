"""Where the learned lower level matters: held-out imitation of the MPC against the fleet size.

`python -m offline.amod fleet-sweep --fleets 300,500,700,1000,1498`: for every fleet size, on the
chosen scenario (default the nyc_brooklyn preset) with that --fleet: MPC demonstrations (training
seeds DEMO_SEED0…, held-out seeds HELD_OUT_SEED0…), θ's form chosen on the held-out states
(`pipeline.ensure_theta_auto`: the cost terms and the paper's ReLU form against θ = 0), and the
paper's Table 5 metrics (cosine and Manhattan of f and g) of θ = 0, of each fitted form and of the
shipped θ̂. Writes <out>/fleet_sweep.md, .csv and .png (both against the fleet); every step is
cached under <work-dir>/<scenario key>/ like the Table 1 pipeline's, so Table 1 reuses them.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from hiopt_ros.tables import Column, markdown_table
from offline.amod import pipeline
from offline.amod.config import DEMO_SEED0, HELD_OUT_SEED0, auto_candidates, spec_from_args

__all__ = ["run_fleet_sweep"]


def run_fleet_sweep(args, log) -> list[dict]:
    fleets = [int(x) for x in str(args.fleets).split(",") if x.strip()]
    if not fleets or min(fleets) < 1:
        raise ValueError(f"--fleets needs positive fleet sizes separated by commas, got {args.fleets!r}")
    base_spec = spec_from_args(args)
    out = Path(args.out)
    rows = []
    own = base_spec.build().fleet
    for fleet in fleets:     # the scenario's own fleet keeps its key (and the Table 1 pipeline's cache)
        spec = dataclasses.replace(base_spec, fleet=None if fleet == own and base_spec.fleet is None else fleet)
        root = Path(args.work_dir) / spec.key
        root.mkdir(parents=True, exist_ok=True)
        sc = spec.build()
        log(f"[fleet-sweep] fleet {fleet}: {sc.summary()}")
        demos = pipeline.ensure_demos(spec, root / "demos.npz", DEMO_SEED0, args.demo_episodes, log)
        held = pipeline.ensure_demos(spec, root / "held_out.npz", HELD_OUT_SEED0, args.held_out_episodes, log)
        theta = pipeline.ensure_theta_auto(spec, demos, held, root / "theta.yaml", candidates=auto_candidates(args),
                                           rho=args.rho, time_limit_s=args.time_limit, log=log)
        sel = theta.provenance["selection"]
        row = {"fleet": sc.fleet, "chosen": sel["chosen"], "samples": len(demos), "held_out_states": len(held)}
        for name, m in [("theta0", sel["theta0"])] + [(c["form"].replace(" ", "_"), c["imitation"])
                                                      for c in sel["candidates"]]:
            for kind in ("f", "g"):
                row[f"{name}_{kind}_cosine"] = float(m[kind]["cosine"])
                row[f"{name}_{kind}_l1"] = float(m[kind]["l1"])
        chosen = next((c["imitation"] for c in sel["candidates"] if c["form"] == sel["chosen"]), sel["theta0"])
        for kind in ("f", "g"):
            row[f"shipped_{kind}_cosine"] = float(chosen[kind]["cosine"])
            row[f"shipped_{kind}_l1"] = float(chosen[kind]["l1"])
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "fleet_sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = [Column("fleet", "right"), Column("θ = 0: f cos", "right"), Column("f Manh.", "right"),
            Column("g cos", "right"), Column("g Manh.", "right"), Column("cost terms: f cos", "right"),
            Column("ReLU: f cos", "right"), Column("shipped θ̂", "left"), Column("θ̂: f cos", "right"),
            Column("f Manh.", "right"), Column("g cos", "right"), Column("g Manh.", "right")]
    body = [[str(r["fleet"]), f"{r['theta0_f_cosine']:.3f}", f"{r['theta0_f_l1']:.2f}", f"{r['theta0_g_cosine']:.3f}",
             f"{r['theta0_g_l1']:.2f}", f"{r['cost_terms_f_cosine']:.3f}", f"{r['ReLU_f_cosine']:.3f}", r["chosen"],
             f"{r['shipped_f_cosine']:.3f}", f"{r['shipped_f_l1']:.2f}", f"{r['shipped_g_cosine']:.3f}",
             f"{r['shipped_g_l1']:.2f}"] for r in rows]
    md = (f"## Held-out imitation of the MPC against the fleet ({base_spec.preset or base_spec.json})\n\n"
          f"{args.demo_episodes} training and {args.held_out_episodes} held-out MPC episodes per fleet (seeds "
          f"{DEMO_SEED0}… and {HELD_OUT_SEED0}…); Eq. 25 solved at each held-out state with the MPC's implied "
          f"subgoal; cosine (higher is closer) and Manhattan distance per decision (lower is closer) of the "
          f"rebalancing flows f and passenger flows g.\n\n" + markdown_table(cols, body) + "\n")
    (out / "fleet_sweep.md").write_text(md)
    _plot(rows, out / "fleet_sweep.png")
    print(md)
    log(f"[fleet-sweep] wrote {out}/fleet_sweep.md, .csv, .png")
    return rows


def _plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["fleet"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, kind, title in ((axes[0], "f", "rebalancing flows f"), (axes[1], "g", "passenger flows g")):
        ax.plot(x, [r[f"theta0_{kind}_cosine"] for r in rows], "o-", label="θ = 0 (Bi-level-unchanged)")
        ax.plot(x, [r[f"cost_terms_{kind}_cosine"] for r in rows], "s--", label="θ̂ cost terms")
        ax.plot(x, [r[f"ReLU_{kind}_cosine"] for r in rows], "^--", label="θ̂ ReLU (paper's form)")
        ax.plot(x, [r[f"shipped_{kind}_cosine"] for r in rows], "k*", ms=10, label="shipped θ̂ (chosen)")
        ax.set_xlabel("fleet (vehicles)")
        ax.set_ylabel("cosine similarity to the MPC (held-out)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
