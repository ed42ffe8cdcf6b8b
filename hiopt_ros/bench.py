"""Solve-time benchmark of the lower level (FOP, Eq. 32) and the MPC expert, against CasADi + IPOPT.

    python -m hiopt_ros.bench                       # FOP and MPC N=20 / N=50 along closed-loop trajectories
    python -m hiopt_ros.bench --json bench.json --markdown bench.md
    python -m hiopt_ros.bench --node-rate [--rates ...]   # controller_node's rate headroom (hiopt_ros.bench_node_rate)

Instances are closed-loop trajectories on random courses (start, goal 2–5 m away, obstacles near
the line between them): the bi-level loop (geometric look-ahead subgoals → FOP) for the FOP, with
random ReLU terms θ per trajectory, and the expert's own loop for the MPC. Times are whole calls
from Python (set parameters, solve, read the action), by wall clock (time.perf_counter), or with
`--clock cpu` by the process' CPU time, which a loaded machine inflates far less for long calls.

The baselines are CasADi + IPOPT as a user would run them, on the same instances in the same
process, at tol 1e-8 (hiopt_ros/control/reference.py): *cold*, from a fixed guess at every
instance, and *warm*, from the previous IPOPT solution along the trajectory (primal and dual,
shifted by one stage for the MPC, IPOPT's warm_start_init_point). Both solve the same problem as
acados — for the FOP from the same starts (one per feasible speed slab), for the MPC towards the
same guided target — and both are checked the same way: |Δu| of the first action against acados.
Speed-ups are ratios of medians. The FOP's fast path (Fop.solve) is also timed against its plain
statement (Fop.solve_reference) on a twin solver, call by call, and their actions compared.
Progress bars are shown only when stderr is a terminal.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from hiopt_ros.bench_node_rate import main as node_rate_main
from hiopt_ros.control.fop import Fop, FopConfig
from hiopt_ros.control.model import unicycle_step
from hiopt_ros.control.mpc import Mpc, MpcConfig
from hiopt_ros.control.reference import IPOPT_TOL, IpoptFop, IpoptMpc
from hiopt_ros.control.theta import Theta
from hiopt_ros.planning.geometric import LookaheadPolicy
from hiopt_ros.progress import progress_bar
from hiopt_ros.tables import Column, markdown_table

CONTROL_PERIOD_S = 0.02   # the trajectories advance at the controllers' 50 Hz
#: the clock every call is timed with: wall time (what a controller lives by), or the process' CPU
#: time (`--clock cpu`), which a loaded machine inflates far less for long calls (IPOPT)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _timed(fn, *args):
    """(fn(*args), µs on the selected clock)."""
    t0 = _clock()
    out = fn(*args)
    return out, (_clock() - t0) * 1e6
AGREE_TOL = 1e-3          # |Δu| below this counts as the same action


def _progress(iterable, desc: str, total: int):
    """A tqdm bar on a terminal; silent (no bar, no log lines) when stderr is not a terminal."""
    return progress_bar(iterable, desc=desc, total=total, leave=False)


def random_course(rng: np.random.Generator, M: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start [x, y, yaw], goal [x, y], obstacles (m ≤ M, 3)): a goal 2–5 m ahead and up to 3
    cylinders near the line, none covering start or goal."""
    start = np.array([0.0, 0.0, rng.uniform(-0.5, 0.5)])
    goal = np.array([rng.uniform(2, 5), rng.uniform(-1, 1)])
    obstacles = []
    for _ in range(int(rng.integers(1, min(3, M) + 1))):
        ob = np.array([rng.uniform(0.8, goal[0] - 0.5), rng.uniform(-0.6, 0.6), rng.uniform(0.1, 0.3)])
        if min(np.hypot(*(ob[:2] - start[:2])), np.hypot(*(ob[:2] - goal))) > ob[2] + 0.5:
            obstacles.append(ob)
    return start, goal, np.array(obstacles).reshape(-1, 3)


def fop_trajectories(n: int, K: int, M: int, seed: int, steps: int = 150) -> list[list[tuple]]:
    """Closed-loop trajectories, `steps` cycles each, until n instances (state, subgoal, obstacles, θ),
    θ random per trajectory. Every other trajectory is the bi-level loop (look-ahead subgoals → FOP
    with θ = 0); the others are the MPC expert's with its implied subgoals — the states offline.fit
    evaluates the FOP on, which skirt obstacle margins where the FOP needs several starts."""
    rng = np.random.default_rng(seed)
    fop = Fop(FopConfig(K=K, M=M))
    mpc = Mpc(MpcConfig(M=M))
    policy = LookaheadPolicy()
    trajs, total = [], 0
    while total < n:
        x, goal, obstacles = random_course(rng, M)
        theta = Theta(alpha=0.5 * rng.normal(size=(K, 2)), beta=0.3 * rng.normal(size=K), l=0.01)
        expert = len(trajs) % 2 == 1
        mpc.reset()
        traj = []
        for _ in range(min(steps, n - total)):
            if expert:
                u, info = mpc.solve(x, goal, obstacles)
                subgoal = info.subgoal
            else:
                subgoal = policy.subgoal(x, goal, obstacles, fop.config.robot_radius_m)
                u, _ = fop.solve(x, subgoal, obstacles)
            traj.append((x.copy(), subgoal, obstacles, theta))
            x = unicycle_step(x, u, CONTROL_PERIOD_S)
        trajs.append(traj)
        total += len(traj)
    return trajs


def bench_fop(n: int, K: int, M: int, seed: int, ipopt_n: int) -> dict:
    fop = Fop(FopConfig(K=K, M=M))
    ref = IpoptFop(fop)
    trajs = fop_trajectories(n, K, M, seed)
    inst = [i for t in trajs for i in t]
    for state, subgoal, obstacles, theta in inst[:50]:  # warm-up (page faults, caches)
        fop.set_theta(theta)
        fop.solve(state, subgoal, obstacles)
    # Fop.solve against its plain statement Fop.solve_reference on a twin solver with the same
    # history, interleaved call by call (alternating which goes first) so load drifts hit both alike
    plain = Fop(FopConfig(K=K, M=M))
    for state, subgoal, obstacles, theta in inst[:50]:
        plain.set_theta(theta)
        plain.solve_reference(state, subgoal, obstacles)
    times, ref_times, fails, starts, differ = [], [], 0, 0, 0
    for i, (state, subgoal, obstacles, theta) in enumerate(_progress(inst, "FOP (acados)", len(inst))):
        fop.set_theta(theta)
        plain.set_theta(theta)
        if i % 2:
            (u_ref, _), dt_ref = _timed(plain.solve_reference, state, subgoal, obstacles)
        (u, info), dt = _timed(fop.solve, state, subgoal, obstacles)
        if not i % 2:
            (u_ref, _), dt_ref = _timed(plain.solve_reference, state, subgoal, obstacles)
        times.append(dt)
        ref_times.append(dt_ref)
        differ += not np.array_equal(u, u_ref)
        fails += not info.ok
        starts += info.starts
    cold, warm, d_cold, d_warm, e_cold, e_warm = [], [], [], [], [], []
    bar = _progress(range(ipopt_n), "FOP (IPOPT cold + warm)", ipopt_n)
    for traj in trajs:
        if len(cold) >= ipopt_n:
            break
        ref.reset()
        for state, subgoal, obstacles, theta in traj[: ipopt_n - len(cold)]:
            fop.set_theta(theta)
            u, info = fop.solve(state, subgoal, obstacles)
            (u_c, _), t_c = _timed(ref.solve, state, subgoal, obstacles)
            (u_w, _), t_w = _timed(ref.solve_warm, state, subgoal, obstacles)
            cold.append(t_c)
            warm.append(t_w)
            d_cold.append(float(np.abs(u - u_c).max()))
            d_warm.append(float(np.abs(u - u_w).max()))
            e_cold.append(_excess(info.cost, fop.objective(state, subgoal, u_c)))
            e_warm.append(_excess(info.cost, fop.objective(state, subgoal, u_w)))
            bar.update(1)
    bar.close()
    tr = np.array(ref_times)
    return _row(times, cold, warm, d_cold, d_warm, e_cold, e_warm, fails, extra={
        "mean_starts": starts / len(inst), "reference_median_us": float(np.median(tr)),
        "reference_p99_us": float(np.percentile(tr, 99)),
        "speedup_vs_reference": float(np.median(tr) / np.median(times)), "reference_differs": int(differ)})


def _excess(cost: float, reference_cost: float) -> float:
    """Relative cost excess of acados' answer over IPOPT's on the same problem (< 0: acados found a better one)."""
    return (cost - reference_cost) / max(abs(reference_cost), 1e-9)


def bench_mpc(N: int, n: int, M: int, seed: int, ipopt_n: int, steps: int = 25) -> dict:
    """The expert along its own closed loop on random courses (warm-started from step to step as it
    is used); IPOPT cold and warm on the first ipopt_n instances (whole trajectories)."""
    rng = np.random.default_rng(seed)
    mpc = Mpc(MpcConfig(N=N, M=M))
    ref = IpoptMpc(mpc)
    times, fails, cold, warm, d_cold, d_warm, e_cold, e_warm = [], 0, [], [], [], [], [], []
    episodes = max(1, math.ceil(n / steps))
    bar = _progress(range(episodes * steps), f"MPC N={N} (acados + IPOPT)", episodes * steps)
    for _ in range(episodes):
        x, goal, obstacles = random_course(rng, M)
        mpc.reset()
        ref.reset()
        with_ipopt = len(cold) < ipopt_n
        for _step in range(steps):
            bar.update(1)
            (u, info), dt = _timed(mpc.solve, x, goal, obstacles)
            times.append(dt)
            fails += not info.ok
            if with_ipopt and len(cold) < ipopt_n:
                acados_cost = ref.plan_cost(x, goal, obstacles, info.trajectory, info.inputs)
                (u_c, _), t_c = _timed(ref.solve, x, goal, obstacles)
                e_cold.append(_excess(acados_cost, ref.last_cost))
                (u_w, _), t_w = _timed(ref.solve_warm, x, goal, obstacles)
                e_warm.append(_excess(acados_cost, ref.last_cost))
                cold.append(t_c)
                warm.append(t_w)
                d_cold.append(float(np.abs(u - u_c).max()))
                d_warm.append(float(np.abs(u - u_w).max()))
            x = unicycle_step(x, u, CONTROL_PERIOD_S)
    bar.close()
    return _row(times, cold, warm, d_cold, d_warm, e_cold, e_warm, fails)


def _row(times, cold, warm, d_cold, d_warm, e_cold, e_warm, fails, extra: dict | None = None) -> dict:
    t, tc, tw = np.array(times), np.array(cold), np.array(warm)
    dc, dw, ec, ew = np.array(d_cold), np.array(d_warm), np.array(e_cold), np.array(e_warm)
    return {"n": int(len(t)), "median_us": float(np.median(t)), "p99_us": float(np.percentile(t, 99)),
            "failures": int(fails), "ipopt_n": int(len(tc)), "ipopt_tol": IPOPT_TOL,
            "ipopt_cold_median_us": float(np.median(tc)), "ipopt_cold_p99_us": float(np.percentile(tc, 99)),
            "ipopt_warm_median_us": float(np.median(tw)), "ipopt_warm_p99_us": float(np.percentile(tw, 99)),
            "speedup_cold": float(np.median(tc) / np.median(t)), "speedup_warm": float(np.median(tw) / np.median(t)),
            "max_abs_du_cold": float(dc.max()), "max_abs_du_warm": float(dw.max()),
            "agree_cold": float(np.mean(dc <= AGREE_TOL)), "agree_warm": float(np.mean(dw <= AGREE_TOL)),
            "cost_excess_median_cold": float(np.median(ec)), "cost_excess_max_cold": float(ec.max()),
            "cost_excess_median_warm": float(np.median(ew)), "cost_excess_max_warm": float(ew.max()),
            **(extra or {})}


_COLUMNS = [Column(h) for h in (
    "problem", "solves", "acados median / p99 [µs]", "IPOPT cold median / p99 [µs]", "IPOPT warm median / p99 [µs]",
    "speed-up vs cold", "speed-up vs warm", "failures", "same action (|Δu| ≤ 1e-3) cold / warm",
    "max |Δu| cold / warm", "acados cost excess, median / max (cold; warm)")]


def markdown(results: dict) -> str:
    rows = [[name, r["n"], f"{r['median_us']:.0f} / {r['p99_us']:.0f}",
             f"{r['ipopt_cold_median_us']:.0f} / {r['ipopt_cold_p99_us']:.0f}",
             f"{r['ipopt_warm_median_us']:.0f} / {r['ipopt_warm_p99_us']:.0f}",
             f"{r['speedup_cold']:.1f}×", f"{r['speedup_warm']:.1f}×", r["failures"],
             f"{100 * r['agree_cold']:.0f} % / {100 * r['agree_warm']:.0f} % of {r['ipopt_n']}",
             f"{r['max_abs_du_cold']:.1e} / {r['max_abs_du_warm']:.1e}",
             f"{r['cost_excess_median_cold']:.0e} / {r['cost_excess_max_cold']:.0e}; "
             f"{r['cost_excess_median_warm']:.0e} / {r['cost_excess_max_warm']:.0e}"]
            for name, r in results.items()]
    return markdown_table(_COLUMNS, rows) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hiopt_ros.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="FOP solves (default 2000)")
    ap.add_argument("--mpc-n", type=int, default=1000, help="MPC solves per horizon (default 1000)")
    ap.add_argument("--ipopt-n", type=int, default=200,
                    help="instances also solved by IPOPT, cold and warm (default 200)")
    ap.add_argument("--horizons", default="20,50", help="MPC horizons N, comma-separated (default 20,50)")
    ap.add_argument("--K", type=int, default=4, help="ReLU terms of the FOP (default 4)")
    ap.add_argument("--M", type=int, default=4, help="obstacle slots (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="time calls by wall clock (default) or by the process' CPU time (robust on a loaded machine)")
    ap.add_argument("--json", default=None, help="write results as JSON here")
    ap.add_argument("--markdown", default=None, help="write the table as Markdown here")
    ap.add_argument("--node-rate", action="store_true",
                    help="instead: controller_node's rate headroom at 50-500 Hz (see --node-rate --help)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--node-rate" in argv:  # a different benchmark with its own options: the controller node's rate
        return node_rate_main([a for a in argv if a != "--node-rate"])
    ap = build_parser()
    args = ap.parse_args(argv)
    if min(args.n, args.mpc_n, args.ipopt_n) < 1:
        ap.error("--n, --mpc-n and --ipopt-n must be >= 1")
    try:
        horizons = [int(h) for h in args.horizons.split(",") if h.strip()]
    except ValueError:
        ap.error(f"--horizons must be comma-separated integers, got {args.horizons!r}")
    global _clock
    _clock = CLOCKS[args.clock]
    results = {"fop": bench_fop(args.n, args.K, args.M, args.seed, min(args.ipopt_n, args.n))}
    for N in horizons:
        results[f"mpc_n{N}"] = bench_mpc(N, args.mpc_n, args.M, args.seed, min(args.ipopt_n, args.mpc_n))
    table = markdown(results)
    print(f"FOP: K={args.K} ReLU terms, M={args.M} obstacles, "
          f"{results['fop']['mean_starts']:.2f} SQP starts per solve; "
          f"MPC: M={args.M}; whole calls from Python, {args.clock} clock; IPOPT tol {IPOPT_TOL:g}\n")
    print(table)
    f = results["fop"]
    print(f"FOP solve vs its plain statement Fop.solve_reference (same instances, interleaved, same process): "
          f"median / p99 {f['median_us']:.0f} / {f['p99_us']:.0f} µs vs {f['reference_median_us']:.0f} / "
          f"{f['reference_p99_us']:.0f} µs = {f['speedup_vs_reference']:.2f}× (medians); "
          f"actions differ on {f['reference_differs']} of {f['n']}\n")
    report = json.dumps({"clock": args.clock, "ipopt_tol": IPOPT_TOL, **results}, indent=2)
    for path, text in ((args.json, report), (args.markdown, table)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
