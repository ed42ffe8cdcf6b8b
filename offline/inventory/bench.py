"""Decision time per step, MPC vs the Eq. 31 lower level (Table 3's inventory row): `python -m offline.inventory.bench`.

For every scenario, the MPC drives `--episodes` episodes (demand seeds from `--seed`); at every
visited state the benchmark times, interleaved in the same process so that machine load hits both
alike: the MPC's decision (parameter update + HiGHS solve of the horizon LP, the models built
beforehand) and the lower level's (Eq. 31 updated in place + HiGHS solve) for the subgoal the MPC
implies, unchanged (K = 0) and with K (random) ReLU terms installed, as the learned lower level is
deployed (an LP; see offline.inventory.fit). Prints and writes (Markdown + CSV via
sim.results.timing_stats) median, p99 and mean per method and the lower level's speed-up.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from hiopt_ros.progress import progress_bar
from hiopt_ros.tables import Column, markdown_table
from sim.results import timing_stats

from .env import InventoryEnv
from .lower import InventoryFop
from .mpc import InventoryMpc
from .scenarios import SCENARIOS, make_scenario

__all__ = ["bench_scenario"]


def bench_scenario(name: str, episodes: int = 3, seed: int = 20_000, K: int = 2, repeats: int = 3,
                   progress: bool = False) -> dict[str, np.ndarray]:
    """Per-state decision times (s) {"mpc", "fop_unchanged", "fop_relu"} on one scenario."""
    sc = make_scenario(name)
    env = InventoryEnv(sc)
    mpc = InventoryMpc(sc)
    fop0 = InventoryFop(sc)
    fopk = InventoryFop(sc, K=K)            # as deployed: Eq. 31 is an LP (offline.inventory.fit)
    rng = np.random.default_rng(seed)
    fopk.set_theta(rng.normal(0, 0.2, (K, fopk.n)), rng.normal(0, 1, K))
    for H in range(1, sc.horizon_steps + 1):   # build every horizon's model first (not timed)
        mpc._model(H)
    times = {"mpc": [], "fop_unchanged": [], "fop_relu": []}
    bar = progress_bar(total=episodes * sc.horizon_steps, enabled=progress, desc=f"bench {name}", unit="state")
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done = False
        while not done:
            st = env.state()
            best = {k: np.inf for k in times}
            dec = None
            for rep in range(repeats):   # best of `repeats`: scheduling noise only ever adds time
                t0 = time.perf_counter()
                dec = mpc.decide(st, env.demand)
                best["mpc"] = min(best["mpc"], time.perf_counter() - t0)
                w_hat, q_hat = fop0.implied_subgoal(st, dec.w, dec.f)
                order = (("fop_unchanged", fop0), ("fop_relu", fopk))
                for key, fop in (order if rep % 2 == 0 else order[::-1]):   # no order advantage
                    t0 = time.perf_counter()
                    sol = fop.solve(st, w_hat, q_hat)
                    best[key] = min(best[key], time.perf_counter() - t0)
                    if not sol.solution.ok:
                        raise RuntimeError(f"Eq. 31 failed on {name} at t={st.t}: {sol.solution.status}")
            for k in times:
                times[k].append(best[k])
            _, _, done, _, _ = env.step(dec.action)
            bar.update(1)
    bar.close()
    return {k: np.asarray(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m offline.inventory.bench",
                                 description="Decision time per step: inventory MPC vs the Eq. 31 lower level.")
    ap.add_argument("--scenarios", default="1F2S,1F3S,1F10S", help="comma-separated (default all)")
    ap.add_argument("--episodes", type=int, default=3, help="MPC episodes per scenario (default 3)")
    ap.add_argument("--seed", type=int, default=20_000, help="first demand seed (default 20000)")
    ap.add_argument("--K", type=int, default=2, help="ReLU terms of the timed learned-form FOP (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per state, the best kept (default 3)")
    ap.add_argument("--out", type=Path, default=Path("results/inventory_bench"), help="output folder")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    names = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    bad = [n for n in names if n not in SCENARIOS]
    if bad or not names:
        print(f"offline.inventory.bench: --scenarios: unknown {bad or args.scenarios!r}; choose from "
              f"{', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    if args.episodes < 1 or args.repeats < 1:
        print("offline.inventory.bench: --episodes and --repeats must be >= 1", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        t = bench_scenario(name, args.episodes, args.seed, args.K, args.repeats,
                           progress=not args.quiet and sys.stderr.isatty())
        ref = float(np.median(t["mpc"]))
        for key, label in (("mpc", "MPC (horizon LP)"), ("fop_unchanged", "Eq. 31, K = 0"),
                           ("fop_relu", f"Eq. 31, K = {args.K}")):
            s = timing_stats(t[key])
            rows.append((name, label, s["n"], s["p50_ms"], s["p99_ms"], s["mean_ms"], ref * 1e3 / s["p50_ms"]
                         if key != "mpc" else 1.0))
    lines = ["## Decision time per step: inventory MPC vs the Eq. 31 lower level", "",
             f"- {args.episodes} MPC episode(s) per scenario from demand seed {args.seed}; every state timed "
             f"{args.repeats}× interleaved, the best kept; MPC = parameter update + HiGHS solve of the "
             "remaining-horizon LP (models prebuilt); lower level = in-place update + HiGHS solve of Eq. 31 for "
             "the MPC's implied subgoal",
             f"- command: python -m offline.inventory.bench "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
             "",
             markdown_table([Column("scenario"), Column("decision")] + [Column(h, "right") for h in (
                 "states", "median (ms)", "p99 (ms)", "mean (ms)", "speed-up vs MPC (median)")],
                 [[r[0], r[1], r[2], f"{r[3]:.3f}", f"{r[4]:.3f}", f"{r[5]:.3f}", f"{r[6]:.1f}×"] for r in rows])]
    args.out.mkdir(parents=True, exist_ok=True)
    md, csv_path = args.out / "inventory_decision_time.md", args.out / "inventory_decision_time.csv"
    md.write_text("\n".join(lines) + "\n")
    with open(csv_path, "w", newline="") as fh:
        import csv
        w = csv.writer(fh)
        w.writerow(["scenario", "decision", "states", "median_ms", "p99_ms", "mean_ms", "speedup_median"])
        w.writerows(rows)
    print("\n".join(lines))
    print(f"wrote {md} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
