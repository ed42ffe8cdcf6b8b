"""Solve-time benchmark of the lower level (FOP, Eq. 32) and the MPC expert, against CasADi + IPOPT.

    python -m hiopt_ros.bench                       # ≥1,000 FOP solves and MPC N=20 / N=50 solves
    python -m hiopt_ros.bench --json bench.json --markdown bench.md

Times are whole calls from Python (set parameters, solve, read the action), measured with
time.perf_counter around `solve`, on varied random instances (state, subgoal/goal, obstacles,
θ). Each IPOPT baseline solves the *same* instances in the same process, so the ratio is
meaningful on any machine. Prints median and p99 per solver and the speed-up.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from hiopt_ros.control.fop import Fop, FopConfig
from hiopt_ros.control.mpc import Mpc, MpcConfig
from hiopt_ros.control.reference import IpoptFop, IpoptMpc
from hiopt_ros.control.theta import Theta


def _progress(iterable, desc: str, total: int):
    try:
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr)
    except ImportError:  # pragma: no cover
        return iterable


def fop_instances(n: int, K: int, M: int, seed: int):
    """States, subgoals 0.3–1.2 m away, M obstacles near the path, K random ReLU terms."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        state = np.array([rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-math.pi, math.pi)])
        ang = rng.uniform(-math.pi, math.pi)
        subgoal = state[:2] + rng.uniform(0.3, 1.2) * np.array([math.cos(ang), math.sin(ang)])
        obstacles = np.column_stack([state[:2] + rng.uniform(-1.5, 1.5, (M, 2)), rng.uniform(0.05, 0.3, M)])
        if np.min(np.hypot(*(obstacles[:, :2] - state[:2]).T) - obstacles[:, 2]) < 0.45:
            continue  # keep the robot outside the margins (0.3 robot + 0.1 d_safe)
        theta = Theta(alpha=rng.normal(size=(K, 2)), beta=0.3 * rng.normal(size=K), l=0.01)
        out.append((state, subgoal, obstacles, theta))
    return out


def bench_fop(n: int, K: int, M: int, seed: int, ipopt_n: int) -> dict:
    fop = Fop(FopConfig(K=K, M=M))
    ref = IpoptFop(fop)
    inst = fop_instances(n, K, M, seed)
    for state, subgoal, obstacles, theta in inst[:50]:  # warm-up (page faults, caches)
        fop.set_theta(theta)
        fop.solve(state, subgoal, obstacles)
    times, ipopt_times, fails, max_diff = [], [], 0, 0.0
    for k, (state, subgoal, obstacles, theta) in enumerate(_progress(inst, "FOP (acados)", len(inst))):
        fop.set_theta(theta)
        t0 = time.perf_counter()
        u, info = fop.solve(state, subgoal, obstacles)
        times.append((time.perf_counter() - t0) * 1e6)
        fails += not info.ok
    for state, subgoal, obstacles, theta in _progress(inst[:ipopt_n], "FOP (IPOPT)", ipopt_n):
        fop.set_theta(theta)
        u, _ = fop.solve(state, subgoal, obstacles)
        u_ref, dt = ref.solve(state, subgoal, obstacles)
        ipopt_times.append(dt)
        max_diff = max(max_diff, float(np.abs(u - u_ref).max()))
    return _row(times, ipopt_times, fails, max_diff, n=len(times))


def bench_mpc(N: int, n: int, M: int, seed: int, ipopt_n: int) -> dict:
    """Closed-loop-like instances: random start/goal 2–5 m apart with obstacles between, warm-started
    along short rollouts as the expert is used."""
    from hiopt_ros.control.model import unicycle_step

    rng = np.random.default_rng(seed)
    mpc = Mpc(MpcConfig(N=N, M=M))
    ref = IpoptMpc(mpc)
    times, ipopt_times, fails, max_diff = [], [], 0, 0.0
    episodes = max(1, n // 25)
    bar = _progress(range(episodes * 25), f"MPC N={N} (acados + IPOPT)", episodes * 25)
    it = iter(bar)
    for _ in range(episodes):
        start = np.array([0.0, 0.0, rng.uniform(-0.5, 0.5)])
        goal = np.array([rng.uniform(2, 5), rng.uniform(-1, 1)])
        obstacles = np.column_stack([rng.uniform(0.8, goal[0] - 0.5, M), rng.uniform(-0.6, 0.6, M),
                                     rng.uniform(0.1, 0.3, M)])
        mpc.reset()
        x = start
        for step in range(25):
            next(it, None)
            t0 = time.perf_counter()
            u, info = mpc.solve(x, goal, obstacles)
            times.append((time.perf_counter() - t0) * 1e6)
            fails += not info.ok
            if len(ipopt_times) < ipopt_n and step % 5 == 0:
                u_ref, dt = ref.solve(x, goal, obstacles)
                ipopt_times.append(dt)
                max_diff = max(max_diff, float(np.abs(u - u_ref).max()))
            x = unicycle_step(x, u, 0.05)
    return _row(times, ipopt_times, fails, max_diff, n=len(times))


def _row(times, ipopt_times, fails, max_diff, n) -> dict:
    t, ti = np.array(times), np.array(ipopt_times)
    return {"n": n, "median_us": float(np.median(t)), "p99_us": float(np.percentile(t, 99)),
            "ipopt_median_us": float(np.median(ti)), "ipopt_p99_us": float(np.percentile(ti, 99)),
            "ipopt_n": int(len(ti)), "speedup_median": float(np.median(ti) / np.median(t)),
            "failures": int(fails), "max_abs_action_diff_vs_ipopt": max_diff}


def markdown(results: dict) -> str:
    lines = ["| problem | solves | acados median [µs] | acados p99 [µs] | IPOPT median [µs] | IPOPT p99 [µs] "
             "| speed-up (median) | failures | max |Δu| vs IPOPT |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['n']} | {r['median_us']:.1f} | {r['p99_us']:.1f} | {r['ipopt_median_us']:.0f} "
                     f"| {r['ipopt_p99_us']:.0f} | {r['speedup_median']:.1f}× | {r['failures']} "
                     f"| {r['max_abs_action_diff_vs_ipopt']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hiopt_ros.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="FOP solves (default 2000)")
    ap.add_argument("--mpc-n", type=int, default=1000, help="MPC solves per horizon (default 1000)")
    ap.add_argument("--ipopt-n", type=int, default=200, help="instances also solved by IPOPT (default 200)")
    ap.add_argument("--K", type=int, default=4, help="ReLU terms of the FOP (default 4)")
    ap.add_argument("--M", type=int, default=4, help="obstacle slots (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write results as JSON here")
    ap.add_argument("--markdown", default=None, help="write the table as Markdown here")
    args = ap.parse_args(argv)
    if min(args.n, args.mpc_n, args.ipopt_n) < 1:
        ap.error("--n, --mpc-n and --ipopt-n must be >= 1")
    results = {"fop": bench_fop(args.n, args.K, args.M, args.seed, min(args.ipopt_n, args.n))}
    for N in (20, 50):
        results[f"mpc_n{N}"] = bench_mpc(N, args.mpc_n, args.M, args.seed, min(args.ipopt_n, args.mpc_n))
    table = markdown(results)
    print(f"FOP: K={args.K} ReLU terms, M={args.M} obstacles; MPC: M={args.M}; whole calls from Python\n")
    print(table)
    for path, text in ((args.json, json.dumps(results, indent=2)), (args.markdown, table)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
