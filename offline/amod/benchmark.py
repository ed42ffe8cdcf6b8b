"""The public AMoD benchmark (Gammelli et al.): published settings as presets, and its exact scenario rules.

Specification: ../shared/benchmarks/AMOD_BENCHMARK.md (repository A = graph-rl-for-network-optimization,
the benchmark; B = graph-meta-rl-for-amod, a variant with a complete graph). What this module
reproduces, section by section of that document:

* §2.2 binning: record minute s goes to step ⌊(s − 60·h0)/Δ⌋; per (o, d, k), in file order and
  double precision, Λ += v·r, Π += (p·v)·r, Θ += ((tt·v)·r)/Δ; then λ = Λ, p = Π/Λ,
  τ = max(1, round-half-even(Θ/Λ)); 2·T bins (the episode and the MPC's look-ahead);
* §2.3 rebalancing times of the start hour only, ρ = max(1, rne(reb_time/Δ));
* §2.4 fleet: totalAcc of hour h0 + trunc(rne(Δ/2·T/60)), ⌊acc/N⌋ vehicles in every region
  (the remainder is dropped: 1,498 of 1,500 on NYC Brooklyn);
* §3 network: `topology` (A) = the file's topology_graph made symmetric, demand kept only on
  adjacent and intra-region pairs; `complete` (B) = every ordered pair;
* §4 requests: Poisson draws from NumPy's legacy generator seeded once, t = 0 … 2T−1 outer,
  the pairs in the benchmark's `Scenario.edges` order inner, λ = 0 draws nothing; every episode
  is a fresh draw continuing the stream, after the constructor's draw (`benchmark_requests`);
* §6 reward: max(0, Σ x(p − βΔτ)) − Σ βΔρy per step (the clip is a defect, see `DEFECTS`).

The benchmark's defects (§16) are not reproduced unless asked for by name (`DEFECTS`, the
`--benchmark-defect` option): the simulator otherwise conserves vehicles, returns arrivals at
their nominal step and does not clip the step reward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Preset", "PRESETS", "DEFAULT_PRESET", "DATA_DIR", "DEFECTS", "preset_table", "benchmark_orders",
           "bin_demand", "benchmark_requests", "hours_covered"]

#: the bundled real scenario(s): offline/amod/data/ (MIT, see LICENSE and README there)
DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Preset:
    """One published setting (§13): file, h0, Δ, r, β, T, network; fleet overrides totalAcc (None: the file's)."""
    file: str
    start_hour: int
    step_min: int
    demand_ratio: float
    beta: float
    steps: int
    network: str
    source: str
    fleet: int | None = None
    #: a variant of this preset with only another fleet (its artefacts are shared: same scenario)
    base: str | None = None

    def path(self) -> Path:
        return DATA_DIR / self.file


#: the scarce-fleet variant of NYC Brooklyn: the fleet where θ = 0 stops imitating the MPC (README/docs, fleet sweep)
SCARCE_FLEET = 700

PRESETS: dict[str, Preset] = {
    "nyc_brooklyn": Preset("scenario_nyc_brooklyn.json", 19, 4, 9, 0.5, 20, "topology", "A main_ny.py"),
    "nyc_brooklyn_complete": Preset("scenario_nyc_brooklyn.json", 19, 4, 9, 0.5, 20, "complete",
                                    "B main.py (test city)"),
    "nyc_brooklyn_scarce": Preset("scenario_nyc_brooklyn.json", 19, 4, 9, 0.5, 20, "topology",
                                  f"A main_ny.py, fleet cut to {SCARCE_FLEET}", fleet=SCARCE_FLEET,
                                  base="nyc_brooklyn"),
    "shenzhen_downtown_west": Preset("scenario_shenzhen_downtown_west.json", 8, 3, 2.5, 0.5, 20, "topology",
                                     "A main_she.py"),
    "san_francisco": Preset("scenario_san_francisco.json", 19, 3, 2, 0.2, 20, "complete", "B main.py"),
    "washington_dc": Preset("scenario_washington_dc.json", 19, 3, 4.2, 0.5, 20, "complete", "B main.py"),
    "chicago": Preset("scenario_chicago.json", 19, 3, 1.8, 0.5, 20, "complete", "B main.py"),
    "nyc_man_north": Preset("scenario_nyc_man_north.json", 19, 3, 1.8, 0.5, 20, "complete", "B main.py"),
    "nyc_man_middle": Preset("scenario_nyc_man_middle.json", 19, 3, 1.8, 0.5, 20, "complete", "B main.py"),
    "nyc_man_south": Preset("scenario_nyc_man_south.json", 19, 3, 1.8, 0.5, 20, "complete", "B main.py"),
    "porto": Preset("scenario_porto.json", 8, 3, 4, 0.1, 20, "complete", "B main.py"),
    "rome": Preset("scenario_rome.json", 8, 3, 1.8, 0.1, 20, "complete", "B main.py"),
    "shenzhen_baoan": Preset("scenario_shenzhen_baoan.json", 8, 3, 2.5, 0.5, 20, "complete", "B main.py"),
    "shenzhen_downtown_west_complete": Preset("scenario_shenzhen_downtown_west.json", 8, 3, 2.5, 0.5, 20,
                                              "complete", "B main.py (test city)"),
    "shenzhen_downtown_east": Preset("scenario_shenzhen_downtown_east.json", 8, 3, 3, 0.5, 20, "complete", "B main.py"),
    "shenzhen_north": Preset("scenario_shenzhen_north.json", 8, 3, 3, 0.5, 20, "complete", "B main.py"),
}
DEFAULT_PRESET = "nyc_brooklyn"

#: the benchmark's defects (§16) that can be switched on by name, for comparisons with its numbers
DEFECTS = {
    "vehicle-loss": "passenger in-transit flows are overwritten when two departures on one OD pair share an "
                    "arrival step: the earlier batch never returns (§5.5)",
    "arrival-delay": "vehicles become idle one step after their nominal arrival step (§5.4)",
    "reward-clip": "the passenger part of the step reward is clipped at 0 (§6)",
}


def preset_table() -> str:
    """The presets as a plain-text table (for --help) — one line per preset."""
    head = f"{'preset':<32} {'file':<38} {'h0':>3} {'Δ':>3} {'r':>4} {'β':>4} {'T':>3} {'network':<9} fleet"
    rows = [head]
    for name, p in PRESETS.items():
        rows.append(f"{name:<32} {p.file:<38} {p.start_hour:>3} {p.step_min:>3} {p.demand_ratio:>4g} "
                    f"{p.beta:>4g} {p.steps:>3} {p.network:<9} {p.fleet or 'file'}")
    return "\n".join(rows)


def benchmark_orders(topology: list[tuple[int, int]], regions: list[int], network: str):
    """(region order, E_G in draw order, E in draw order) of the benchmark's Scenario (§3, Appendix A.2).

    topology: repo A builds a directed graph from list(set(edges + reversed edges)) (networkx
    insertion order: nodes by first appearance, successors by insertion); E = E_G then the
    self-loops in node order. complete: regions in order, E_G i-major, then self-loops.
    """
    if network == "topology":
        el = list(set(topology + [(j, i) for i, j in topology]))
        nodes, succ = [], {}
        for u, v in el:
            for n in (u, v):
                if n not in succ:
                    succ[n] = []
                    nodes.append(n)
            if v not in succ[u]:
                succ[u].append(v)
        eg = [(u, v) for u in nodes for v in succ[u] if u != v]
    elif network == "complete":
        nodes = list(regions)
        eg = [(u, v) for u in nodes for v in nodes if u != v]
    else:
        raise ValueError(f"network must be 'topology' or 'complete', got {network!r}")
    return nodes, eg, eg + [(i, i) for i in nodes]


def hours_covered(stamps) -> tuple[int, int]:
    """(first hour, hour after the last) of the demand records' minute stamps."""
    return int(min(stamps) // 60), int(math.floor(max(stamps) / 60)) + 1


def bin_demand(records, pairs: set, start_hour, step_min, demand_ratio, bins: int):
    """§2.2 exactly: {(o, d): (λ (bins,), p (bins,), τ (bins,))} for the pairs in `pairs` with any record.

    Sums in file order, double precision, each term associated as the benchmark does.
    """
    m0 = 60 * start_hour
    acc: dict = {}
    for rec in records:
        o, d = rec["origin"], rec["destination"]
        if (o, d) not in pairs:
            continue
        k = (rec["time_stamp"] - m0) // step_min
        if not 0 <= k < bins:
            continue
        v, p, tt = rec["demand"], rec["price"], rec["travel_time"]
        cell = acc.setdefault((o, d, int(k)), [0.0, 0.0, 0.0])
        cell[0] += v * demand_ratio
        cell[1] += (p * v) * demand_ratio
        cell[2] += ((tt * v) * demand_ratio) / step_min
    out = {}
    for (o, d, k), (lam, pv, tv) in acc.items():
        if lam <= 0:
            continue
        lam_a, p_a, tau_a = out.setdefault((o, d), (np.zeros(bins), np.zeros(bins), np.zeros(bins, np.int64)))
        lam_a[k] = lam
        p_a[k] = pv / lam
        tau_a[k] = max(1, round(tv / lam))
    return out


def benchmark_requests(rate: np.ndarray, order: np.ndarray, seed: int, episodes: int = 1, skip: int = 1):
    """§4: requests (episodes, bins, N, N) of consecutive episodes of the benchmark seeded with `seed`.

    rate (bins, N, N) in the simulator's region indices; order (P, 2) the pairs in the benchmark's
    draw order (same indices). NumPy's legacy RandomState(seed); `skip` full draws first (the
    Scenario constructor's, so episode 1 is the 2nd draw); a pair with λ = 0 draws nothing.
    """
    rs = np.random.RandomState(int(seed))
    bins, N, _ = rate.shape
    out = np.zeros((episodes, bins, N, N))
    oi, oj = order[:, 0], order[:, 1]
    for e in range(-skip, episodes):
        for t in range(bins):
            for i, j in zip(oi, oj):
                lam = rate[t, i, j]
                if lam > 0:
                    x = rs.poisson(lam)
                    if e >= 0:
                        out[e, t, i, j] = x
    return out


def matching_flows(sim, state) -> np.ndarray:
    """The benchmark's matching LP (§8) at `state`: per origin, requests served in descending price
    order until its idle vehicles run out (optimal and integral for whole data). (P,) flows g."""
    t = min(state.t, sim.bins - 1)
    g = np.zeros(sim.P)
    price = sim.price[t]
    for i in range(sim.N):
        left = float(state.idle[i])
        for p in sorted(np.flatnonzero((sim.od[:, 0] == i) & (state.requests > 1e-3)), key=lambda p: -price[p]):
            take = min(left, float(state.requests[p]))
            g[p] = take
            left -= take
            if left <= 0:
                break
    return g
