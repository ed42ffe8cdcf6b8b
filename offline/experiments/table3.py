"""Table 3 of the paper: decision time per step of the lower level and of the MPC, three case studies.

    python -m offline.experiments table3                 # wall clock (what a controller lives by)
    python -m offline.experiments table3 --clock cpu     # the process' CPU time (robust on a loaded machine)

Each case study runs its MPC expert in closed loop on held-out seeds; at every state the MPC's
decision is timed, then the lower level's for the subgoal the MPC implies at that state (the
bi-level policy's decision with a perfect upper level; the upper level's forward pass, ~0.1 ms,
is not part of this table: Table 1 times whole decisions). The three case studies run in one
process, interleaved state by state (robot state i, AMoD state i, inventory state i, robot state
i+1, …), and each state times both decisions back to back, so load on the machine hits both alike.

    robot      acados MPC (expert_node's, config/nav.yaml) vs FOP_θ (controller_node's, shipped θ)
    AMoD       Pyomo + HiGHS multi-step LP vs Eq. 25 (HiGHS), θ from --amod-theta or K random terms
    inventory  multi-step LP vs Eq. 31 (HiGHS), θ from --inventory-theta or K random terms

Times are whole calls from Python (build, solve, read the decision), on the clock of
hiopt_ros.bench (``--clock``). Writes table3.md / .csv / .png (median, p99, mean, n, and the MPC's
median over the lower level's beside the paper's seconds).
"""
from __future__ import annotations

import argparse
import csv
import io
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from hiopt_ros.control.model import unicycle_step
from hiopt_ros.control.theta import Theta
from hiopt_ros.course import DEFAULT_PARAMS
from hiopt_ros.progress import progress_bar
from hiopt_ros.tables import Column, markdown_table
from offline.amod.benchmark import DEFAULT_PRESET
from offline.amod.config import ScenarioSpec, lower_factory
from offline.amod.lower import Eq25Fop
from offline.amod.mpc import AmodMpc
from offline.amod.scenario import SIZES
from offline.amod.sim import AmodSim
from offline.inventory.env import InventoryEnv
from offline.inventory.fit import load_fop_theta
from offline.inventory.lower import InventoryFop
from offline.inventory.mpc import InventoryMpc
from offline.inventory.scenarios import make_scenario
from sim.courses import course_for_seed
from sim.evaluate import DEFAULT_THETA
from sim.nav_env import make_lower_level
from sim.results import new_results_dir

#: the paper's Table 3 (seconds per step): case -> (our method, MPC)
PAPER = {"amod": (0.025, 1.44), "inventory": (0.034, 0.082), "robot": (0.0187, 0.0275)}
TITLES = {"robot": "Mobile robot", "amod": "AV rebalancing", "inventory": "SCIM"}
CASES = ("robot", "amod", "inventory")
#: command lines of `all` (tiny budgets with --quick)
QUICK_ARGV = ["--states", "6", "--amod-scenario", "tiny", "--inventory-scenario", "1F2S"]
FULL_ARGV = ["--states", "60"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hiopt_ros.bench import CLOCKS

    p.add_argument("--states", type=int, default=60, help="timed states per case study (default 60)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="time calls by wall clock (default) or by the process' CPU time, as hiopt_ros.bench")
    p.add_argument("--seed", type=int, default=10_000, help="first held-out seed (courses / demand samples)")
    p.add_argument("--K", type=int, default=2, help="ReLU terms of the network lower levels without a θ file")
    p.add_argument("--amod-scenario", default=None,
                   help="AMoD scenario (a synthetic size or a benchmark preset; default: offline.amod's default)")
    p.add_argument("--amod-theta", type=Path, default=None, help="AMoD θ file (default: K random ReLU terms)")
    p.add_argument("--inventory-scenario", default="1F10S", help="SCIM preset (default 1F10S)")
    p.add_argument("--inventory-theta", type=Path, default=None,
                   help="inventory θ file (default: K random ReLU terms)")
    p.add_argument("--params", type=Path, default=None, help="robot parameter file (default config/nav.yaml)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default results/table3/<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------- the three case studies
# Each generator yields (mpc seconds, lower-level seconds) per state along the MPC's closed loop.
def robot_states(args, timed) -> Iterator[tuple[float, float]]:
    params = args.params or DEFAULT_PARAMS
    mpc = make_lower_level("mpc", params=params)
    fop = make_lower_level("fop", theta=DEFAULT_THETA, params=params)
    period = 1.0 / 50.0
    seed = args.seed
    while True:
        course = course_for_seed(seed, params)
        x, obstacles = np.array(course.start_xyyaw, float), course.obstacles_xyr
        mpc.reset()
        for _ in range(100):     # a course's first 2 s, then the next course
            (u, info), t_mpc = timed(mpc.solve, x, course.goal_xy, obstacles)
            _, t_low = timed(fop.solve, x, info.subgoal, obstacles)
            yield t_mpc, t_low
            x = unicycle_step(x, u, period)
            if np.linalg.norm(x[:2] - course.goal_xy) < 0.1:
                break
        seed += 1


def amod_states(args, timed) -> Iterator[tuple[float, float]]:
    name = args.amod_scenario
    spec = ScenarioSpec(synthetic=name) if name in SIZES else (ScenarioSpec(preset=name) if name else ScenarioSpec())
    sim = AmodSim(spec.build())
    mpc = AmodMpc(sim)
    if args.amod_theta:
        lower = lower_factory(str(args.amod_theta))(sim)
    else:
        lower = Eq25Fop(sim, K=args.K)
        rng = np.random.default_rng(0)
        lower.set_theta(Theta(alpha=rng.normal(scale=0.5, size=(args.K, lower.n)),
                              beta=rng.normal(scale=5, size=args.K),
                              case_study="amod", input_names=lower.names))
    seed = args.seed
    while True:
        state = sim.reset(seed)
        while not sim.done:
            d, t_mpc = timed(mpc.decide, state)
            f, g, _ = sim.clip(d.f, d.g)
            qhat = lower.implied_subgoal(state, f, g)
            _, t_low = timed(lower.solve, state, qhat)
            yield t_mpc, t_low
            sim.step(f, g)
            state = sim.state()
        seed += 1


def inventory_states(args, timed) -> Iterator[tuple[float, float]]:
    sc = make_scenario(args.inventory_scenario)
    env, mpc = InventoryEnv(sc), InventoryMpc(sc)
    if args.inventory_theta:
        fop = load_fop_theta(sc, args.inventory_theta)
    else:
        fop = InventoryFop(sc, K=args.K)
        rng = np.random.default_rng(0)
        fop.set_theta(rng.normal(0, 0.2, (args.K, fop.n)), rng.normal(0, 1, args.K))
    for H in range(1, sc.horizon_steps + 1):   # every horizon's model is built once, as in use (not timed)
        mpc._model(H)
    seed = args.seed
    while True:
        env.reset(seed=seed)
        done = False
        while not done:
            st = env.state()
            dec, t_mpc = timed(mpc.decide, st, env.demand)
            w_hat, q_hat = fop.implied_subgoal(st, dec.w, dec.f)
            _, t_low = timed(fop.solve, st, w_hat, q_hat)
            yield t_mpc, t_low
            _, _, done, _, _ = env.step(dec.action)
        seed += 1


GENERATORS: dict[str, Callable] = {"robot": robot_states, "amod": amod_states, "inventory": inventory_states}


# ---------------------------------------------------------------------------- the table
def run(args: argparse.Namespace, argv: list[str]) -> dict:
    from hiopt_ros.bench import CLOCKS

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        raise ValueError(f"--cases: unknown {bad or args.cases!r}; choose from {','.join(CASES)}")
    if args.states < 1:
        raise ValueError(f"--states must be >= 1, got {args.states}")
    for opt in ("amod_theta", "inventory_theta", "params"):
        path = getattr(args, opt)
        if path is not None and not Path(path).is_file():
            raise ValueError(f"--{opt.replace('_', '-')}: {path} does not exist")
    clock = CLOCKS[args.clock]

    def timed(fn, *a):
        t0 = clock()
        out = fn(*a)
        return out, clock() - t0

    t_start = time.perf_counter()
    gens = {c: GENERATORS[c](args, timed) for c in cases}
    for c in cases:                      # one untimed state each: solver set-up, first-call costs
        next(gens[c])
    times = {c: ([], []) for c in cases}
    bar = progress_bar(total=args.states * len(cases), enabled=not args.quiet, desc="table3", unit="state")
    for _ in range(args.states):         # interleaved state by state across the case studies
        for c in cases:
            t_mpc, t_low = next(gens[c])
            times[c][0].append(t_mpc)
            times[c][1].append(t_low)
            bar.update(1)
    bar.close()

    rows, csv_rows = [], []
    for c in cases:
        mpc, low = (np.asarray(v) for v in times[c])
        ratio = float(np.median(mpc) / np.median(low))
        paper_low, paper_mpc = PAPER[c]
        for label, t, paper in (("lower level (FOP)", low, paper_low), ("MPC", mpc, paper_mpc)):
            rows.append([TITLES[c], label, len(t), f"{np.median(t) * 1e3:.3f}", f"{np.percentile(t, 99) * 1e3:.3f}",
                         f"{t.mean() * 1e3:.3f}", f"{paper * 1e3:.1f}"])
            csv_rows.append({"case": c, "decision": label, "n": len(t), "median_ms": np.median(t) * 1e3,
                             "p99_ms": np.percentile(t, 99) * 1e3, "mean_ms": t.mean() * 1e3,
                             "paper_ms": paper * 1e3})
        rows.append([TITLES[c], "MPC ÷ lower level (medians)", "", f"{ratio:.1f}×", "", "",
                     f"{paper_mpc / paper_low:.1f}×"])
        csv_rows.append({"case": c, "decision": "mpc_over_lower", "n": "", "median_ms": ratio, "p99_ms": "",
                         "mean_ms": "", "paper_ms": paper_mpc / paper_low})
    load = _load()
    notes = [f"{args.clock} clock; {args.states} states per case study along the MPC's closed loop from seed "
             f"{args.seed}, the three case studies interleaved state by state, MPC and lower level timed back to "
             f"back at each state (the lower level for the MPC's implied subgoal)",
             f"robot: shipped θ; AMoD: {args.amod_theta or f'K = {args.K} random ReLU terms'}, scenario "
             f"{args.amod_scenario or _amod_default()}; inventory: "
             f"{args.inventory_theta or f'K = {args.K} random ReLU terms'}, scenario {args.inventory_scenario}",
             f"machine: {platform.machine()}, load average {load} when it ended; paper: seconds on the authors' "
             f"machine (shown in ms)",
             "command: python -m offline.experiments " + " ".join(argv)]
    columns = [Column("Case study"), Column("Decision"), Column("states", "right"), Column("median (ms)", "right"),
               Column("p99 (ms)", "right"), Column("mean (ms)", "right"), Column("paper (ms)", "right")]
    md = "## Table 3: decision time per step, lower level vs MPC\n\n" + "".join(f"- {n}\n" for n in notes) + "\n" \
        + markdown_table(columns, rows) + "\n"
    out = args.out or new_results_dir("table3")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "table3.md", "csv": out / "table3.csv", "png": out / "table3.png"}
    paths["markdown"].write_text(md)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(csv_rows[0]))
    w.writeheader()
    w.writerows(csv_rows)
    paths["csv"].write_text(buf.getvalue())
    _plot(times, cases, paths["png"], args.clock)
    print(md)
    print(f"results folder: {out} (table3.md, table3.csv, table3.png; {time.perf_counter() - t_start:.0f} s)")
    return {"out": out, "paths": paths, "times": times}


def _amod_default() -> str:
    return DEFAULT_PRESET


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _plot(times, cases, path: Path, clock: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    pos = np.arange(len(cases))
    for k, (label, idx) in enumerate((("lower level", 1), ("MPC", 0))):
        med = [np.median(times[c][idx]) * 1e3 for c in cases]
        p99 = [np.percentile(times[c][idx], 99) * 1e3 for c in cases]
        ax.bar(pos + (k - 0.5) * 0.38, med, 0.38, label=f"{label} (median)")
        ax.scatter(pos + (k - 0.5) * 0.38, p99, marker="_", s=300, color="k", label="p99" if k else None)
    ax.set_xticks(pos, [TITLES[c] for c in cases])
    ax.set_yscale("log")
    ax.set_ylabel(f"decision time per step (ms, {clock} clock)")
    ax.legend(fontsize=8)
    ax.set_title("Table 3: lower level vs MPC")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":   # pragma: no cover
    sys.exit("run it as: python -m offline.experiments table3")
