"""Table 5 of the paper: how close the bi-level policies' rebalancing flows come to the MPC's (AMoD).

    python -m offline.experiments table5                                  # nyc_brooklyn, Table 1's θ
    python -m offline.experiments table5 --scenario nyc_brooklyn_scarce   # any AMoD preset or synthetic size

At held-out MPC states, each lower level is given the MPC's own subgoal (the idle distribution the
MPC's flows imply) and its rebalancing flow f is compared with the MPC's: Bi-level-unchanged is
Eq. 25 with θ = 0, Bi-level-learned Eq. 25 with the θ that Table 1's Bi-level-learned row deploys
(the AMoD case's prepare: the same demonstrations, fit and cache, so the row is that policy's lower
level). The comparison is offline.amod.fit.imitation (the code of `python -m offline.amod
imitation`), scored by offline.inverse.metrics: cosine similarity of the stacked flows and Manhattan
(L1) distance per decision, one value per held-out episode, mean ± std over the episodes
(sim.results). Passenger flows g are extra columns.

The test states come from demand seeds TEST_SEED0 … (--test-seed), disjoint from the demonstrations
θ was fitted on and from the held-out ones its form may have been chosen on (both printed); the
command refuses an overlap. Outputs: table5.md / .csv / _episodes.csv / .png.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hiopt_ros.control.theta import load_theta
from offline.amod import pipeline
from offline.amod.config import DEMO_SEED0, HELD_OUT_SEED0
from offline.amod.fit import closest_optimal, imitation
from offline.amod.sim import AmodSim
from offline.amod.table1 import CASE
from sim.results import Metric, ResultsTable, bar_plot, new_results_dir

#: first demand seed of the test states: after the held-out demonstrations (500 …), before RL's (1000 …)
TEST_SEED0 = 600
ROWS = ("Bi-level-unchanged", "Bi-level-learned")


def add_arguments(p: argparse.ArgumentParser) -> None:
    CASE.add_arguments(p)
    p.add_argument("--test-seed", type=int, default=TEST_SEED0,
                   help=f"first demand seed of the test states (default {TEST_SEED0}; disjoint from the "
                        f"demonstrations from {DEMO_SEED0} and the held-out ones from {HELD_OUT_SEED0})")
    p.add_argument("--test-episodes", type=int, default=5, help="MPC episodes of test states (default 5)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="cache of demonstrations and θ, shared with Table 1 (default results/amod/)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default results/table5/<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace, argv=None) -> dict:
    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    if args.test_episodes < 1:
        raise ValueError("--test-episodes must be >= 1")
    test_seeds = list(range(args.test_seed, args.test_seed + args.test_episodes))
    used = set(range(DEMO_SEED0, DEMO_SEED0 + args.demo_episodes)) | set(
        range(HELD_OUT_SEED0, HELD_OUT_SEED0 + args.held_out_episodes))
    if used & set(test_seeds):
        raise ValueError(f"--test-seed {args.test_seed}: test seeds {test_seeds[0]}–{test_seeds[-1]} overlap the "
                         f"demonstration / held-out seeds {sorted(used)[0]}–{sorted(used)[-1]}; choose others")
    t0 = time.perf_counter()
    work_dir = args.work_dir or Path("results") / "amod"
    args.methods = "MPC"           # Table 1's preparation without RL: demonstrations and θ only
    prepared = CASE.prepare(args, work_dir, log)
    spec, theta_path = prepared.state.spec, prepared.state.theta_path
    test = pipeline.ensure_demos(spec, Path(work_dir) / spec.key / f"test{args.test_seed}.npz", args.test_seed,
                                 args.test_episodes, log)
    theta = load_theta(theta_path)
    seen = set(theta.provenance.get("demo_seeds") or []) & set(test_seeds)
    if seen:
        raise ValueError(f"θ {theta_path} was fitted on demand seeds {sorted(seen)} of the test states")
    sim = AmodSim(spec.build())
    metrics = [Metric("f_cosine", "Reb. flow: cosine", "", ".3f", higher_is_better=True),
               Metric("f_manhattan", "Reb. flow: Manhattan / decision", "", ".2f", higher_is_better=False),
               Metric("g_cosine", "Pax. flow: cosine", "", ".3f", higher_is_better=True),
               Metric("g_manhattan", "Pax. flow: Manhattan / decision", "", ".2f", higher_is_better=False),
               Metric("failed", "failed solves", "", ".0f")]
    table = ResultsTable("Table 5: rebalancing flows of the bi-level lower levels vs the MPC's (AMoD)", metrics)
    pooled = {}
    for row, th in zip(ROWS, (None, theta)):
        # each episode from a fresh FOP, its steps in order (as a controller meets them): HiGHS warm-starts
        # from the previous solve, and Eq. 25 has tied optima, so the order picks among them
        for name, measure in ((row, imitation), (f"{row}: closest optimal solution (LP ties)", closest_optimal)):
            for s in test_seeds:
                m = measure(sim, test.subset(test.seed == s), th)
                table.add(name, {"f_cosine": m["f"]["cosine"], "f_manhattan": m["f"]["l1"],
                                 "g_cosine": m["g"]["cosine"], "g_manhattan": m["g"]["l1"], "failed": m["failed"]})
        pooled[row] = imitation(sim, test, th)
    notes = [*prepared.notes[:2],
             f"test states: {len(test)} MPC decisions of demand seeds {test_seeds[0]}–{test_seeds[-1]} (θ fitted on "
             f"seeds {DEMO_SEED0}–{DEMO_SEED0 + args.demo_episodes - 1}, validated (and its form chosen, with "
             f"--theta-form auto) on {HELD_OUT_SEED0}–{HELD_OUT_SEED0 + args.held_out_episodes - 1})",
             "each lower level solves Eq. 25 for the MPC's own subgoal at the MPC's state; cosine of the stacked "
             "flows and Manhattan distance per decision (offline.inverse.metrics) per test episode, mean ± std "
             "over episodes",
             "the LP (Eq. 25) has tied optima and HiGHS warm-starts from the previous solve, so the flows chosen "
             "depend on the order the states are solved in; the rows solve each test episode from a fresh FOP, "
             "its steps in order; '… closest optimal solution (LP ties)' is the optimal solution nearest the "
             "MPC's (offline.amod.fit.closest_optimal): what the best tie-breaking would reach",
             *[f"{r}, all test states solved in one sequence: reb. flow cosine {pooled[r]['f']['cosine']:.3f}, "
               f"Manhattan {pooled[r]['f']['l1']:.2f}" for r in ROWS],
             "paper (Table 5): Bi-level-unchanged cosine 0.477, Manhattan 44; Bi-level-learned 0.976, 7",
             f"{time.perf_counter() - t0:.0f} s",
             "command: python -m offline.experiments " + " ".join(argv if argv is not None else sys.argv[1:])]
    out = args.out or new_results_dir("table5")
    paths = table.write(out, "table5", notes=notes)
    paths["png"] = bar_plot(table, [("f_cosine", "Reb. flow: cosine", False),
                                    ("f_manhattan", "Reb. flow: Manhattan / decision", False)],
                            Path(out) / "table5.png")
    print(table.markdown(notes))
    print(f"results folder: {out}")
    return {"out": out, "paths": paths, "table": table, "pooled": pooled,
            "test_seeds": test_seeds, "theta": str(theta_path)}
