"""AMoD scenarios: regions, travel times, demand rates and prices, fleet — synthetic or from a benchmark JSON.

A scenario is plain data (`AmodScenario`); the environment samples trip requests from it.

Synthetic (`synthetic(size, seed)`): regions are cells of an nlat × nlon grid (unit spacing);
travel time between regions grows with their Euclidean distance; every region has a residential
weight and an attraction weight (attractive regions sit near a "downtown" cell), and the rate of
requests i → j per step is base · residential_i · attraction_j · exp(−dist_ij / 2) · peak(t),
where peak(t) rises to (1 + peak_gain) in the middle of the episode. The asymmetry (people leave
residential regions for downtown) is what makes rebalancing necessary. Prices increase with trip
length: price_ij = fare_base + fare_per_min · driving minutes.

Benchmark JSON (`load_benchmark_json(path, ...)`): the format of the public AMoD scenarios of
Gammelli et al. (NYC Brooklyn, Shenzhen, ...):

    nlat, nlon               grid size; regions are 0 … nlat·nlon − 1 (or the optional list "region")
    demand                   records {time_stamp [min], origin, destination, demand [trips],
                             travel_time [min], price}
    totalAcc                 records {hour, acc}: fleet size by hour of the day
    rebTime                  records {time_stamp [hour], origin, destination, reb_time [min]}
    topology_graph           records {i, j}: region adjacency (kept for reference; rebalancing is
                             allowed between every pair, as in the benchmark's simulator)

Trip counts are summed into step-length bins from `start_hour` (bin b holds time stamps in
[start + b·step, start + (b+1)·step)) and scaled by `demand_ratio`; the price and travel time of a
bin are the demand-weighted means; travel times become whole steps (≥ 1). A pair's trip time is
its demand-weighted mean over the episode's window (one value per pair keeps the travel-time
structure fixed, as the lower level needs); rebalancing times are those of the start hour.
The fleet is totalAcc of the episode's middle hour (the benchmark's convention), spread evenly.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from offline.amod.benchmark import benchmark_orders, bin_demand, hours_covered

__all__ = ["AmodScenario", "synthetic", "load_benchmark_json", "write_benchmark_json", "SIZES"]


@dataclass
class AmodScenario:
    """One AMoD scenario (all arrays numpy; N regions, T steps of step_min minutes).

    demand_rate (T, N, N): expected requests per step from origin i to destination j (Poisson mean).
    price (T, N, N): revenue of one served trip i → j started at step t ($).
    pax_time (N, N): trip duration in steps (≥ 1, also on the diagonal: intra-region trips).
    reb_time (N, N): rebalancing duration in steps (≥ 1 off the diagonal; the diagonal is unused).
    pax_cost (N, N), reb_cost (N, N): operating cost of one passenger / empty trip ($): the cost
        per minute of driving times the trip's driving minutes (not rounded to steps, so that
        routes of equal step counts still differ in cost, as they do on the road).
    fleet: number of vehicles; init_share (N,): initial idle distribution (sums to 1).
    coords (N, 2): region centres (grid units), for plots.
    """
    name: str
    step_min: float
    demand_rate: np.ndarray
    price: np.ndarray
    pax_time: np.ndarray
    reb_time: np.ndarray
    pax_cost: np.ndarray
    reb_cost: np.ndarray
    fleet: int
    init_share: np.ndarray
    coords: np.ndarray
    meta: dict = field(default_factory=dict)
    #: episode length T when demand_rate/price hold more steps (the benchmark's look-ahead bins for
    #: the MPC; None: every step of demand_rate is in the episode)
    steps: int | None = None
    #: (T', N, N) trip time in steps by departure step, and its operating cost (benchmark files:
    #: τ_ij(t) and βΔτ_ij(t)); None: pax_time / pax_cost at every step
    pax_time_t: np.ndarray | None = None
    pax_cost_t: np.ndarray | None = None
    #: (E, 2) rebalancing edges (the benchmark's topology network); None: every ordered pair i ≠ j
    network_edges: np.ndarray | None = None
    #: (P', 2) pairs in the order the benchmark draws their requests (§4); None: od_pairs' order
    draw_order: np.ndarray | None = None
    #: (N,) whole vehicles per region at the start (benchmark: ⌊acc/N⌋ each); None: from init_share
    init_idle: np.ndarray | None = None
    #: how a seed becomes requests: "numpy" (default_rng(seed).poisson) or "benchmark" (§4: the
    #: legacy RandomState(seed), one draw discarded as the benchmark's constructor does)
    sampling: str = "numpy"

    def __post_init__(self) -> None:
        T, N, N2 = self.demand_rate.shape
        if self.steps is not None and not 1 <= self.steps <= T:
            raise ValueError(f"scenario {self.name}: steps must be in 1 … {T}, got {self.steps}")
        for name in ("pax_time_t", "pax_cost_t"):
            a = getattr(self, name)
            if a is not None and np.shape(a) != (T, N, N):
                raise ValueError(f"scenario {self.name}: {name} must be ({T}, {N}, {N}), got {np.shape(a)}")
        if self.sampling not in ("numpy", "benchmark"):
            raise ValueError(f"scenario {self.name}: sampling must be 'numpy' or 'benchmark', got {self.sampling!r}")
        if N != N2 or self.price.shape != (T, N, N):
            raise ValueError(f"scenario {self.name}: demand_rate and price must be (T, N, N), got "
                             f"{self.demand_rate.shape} and {self.price.shape}")
        for name in ("pax_time", "reb_time", "pax_cost", "reb_cost"):
            a = np.asarray(getattr(self, name))
            if a.shape != (N, N):
                raise ValueError(f"scenario {self.name}: {name} must be ({N}, {N}), got {a.shape}")
            setattr(self, name, a.astype(np.int64) if name.endswith("time") else a.astype(float))
        if np.any(self.pax_cost < 0) or np.any(self.reb_cost < 0):
            raise ValueError(f"scenario {self.name}: operating costs must be >= 0")
        if np.any(self.pax_time < 1) or np.any(self.reb_time[~np.eye(N, dtype=bool)] < 1):
            raise ValueError(f"scenario {self.name}: travel times must be >= 1 step")
        if np.any(self.demand_rate < 0) or not np.all(np.isfinite(self.demand_rate)):
            raise ValueError(f"scenario {self.name}: demand rates must be finite and >= 0")
        if self.fleet < 1:
            raise ValueError(f"scenario {self.name}: fleet must be >= 1 vehicle, got {self.fleet}")
        self.init_share = np.asarray(self.init_share, float)
        if self.init_share.shape != (N,) or np.any(self.init_share < 0) or not np.isclose(self.init_share.sum(), 1):
            raise ValueError(f"scenario {self.name}: init_share must be {N} shares summing to 1")

    n_regions = property(lambda self: self.demand_rate.shape[1], doc="N, the number of regions")
    horizon = property(lambda self: self.steps or self.demand_rate.shape[0],
                       doc="T, the number of decision steps of an episode")
    bins = property(lambda self: self.demand_rate.shape[0], doc="T' ≥ T, steps with demand data (look-ahead)")

    def trip_steps(self) -> np.ndarray:
        """(T', N, N) trip time in steps by departure step."""
        if self.pax_time_t is not None:
            return np.asarray(self.pax_time_t, np.int64)
        return np.broadcast_to(self.pax_time, self.demand_rate.shape)

    def trip_cost(self) -> np.ndarray:
        """(T', N, N) operating cost of one passenger trip by departure step."""
        if self.pax_cost_t is not None:
            return np.asarray(self.pax_cost_t, float)
        return np.broadcast_to(self.pax_cost, self.demand_rate.shape)

    @property
    def od_pairs(self) -> np.ndarray:
        """(P, 2) origin–destination pairs with a positive demand rate at some step (passenger flows g)."""
        return np.argwhere(self.demand_rate.sum(axis=0) > 0)

    @property
    def reb_edges(self) -> np.ndarray:
        """(E, 2) ordered pairs i ≠ j along which vehicles can be rebalanced (flows f): the network's
        edges, or all of them (complete network)."""
        if self.network_edges is not None:
            return np.asarray(sorted(map(tuple, np.asarray(self.network_edges).tolist())), np.int64).reshape(-1, 2)
        N = self.n_regions
        return np.array([(i, j) for i in range(N) for j in range(N) if i != j], dtype=np.int64).reshape(-1, 2)

    @property
    def max_travel(self) -> int:
        return int(max(self.pax_time.max(), self.reb_time.max()))

    def summary(self) -> str:
        T, N = self.horizon, self.n_regions
        rate = self.demand_rate[:T]
        m = self.meta
        kept = ""
        if m.get("requests_in_file"):
            kept = (f" ({100 * m['requests_kept'] / m['requests_in_file']:.1f} % of the file's "
                    f"{m['requests_in_file']:.1f} in this window; the {m.get('network')} network keeps "
                    f"{'only adjacent and intra-region pairs' if m.get('network') == 'topology' else 'every pair'})")
        net = (f"{len(self.reb_edges)} rebalancing edges ({m.get('network', 'complete')} network)")
        cost = (f"operating cost β = {m['cost_per_min']:g} per vehicle-minute" if "beta_per_step" in m
                else f"empty-trip cost {self.reb_cost[~np.eye(N, dtype=bool)].min():.2f}–{self.reb_cost.max():.2f}")
        return (f"{self.name}: {N} regions, {T} steps of {self.step_min:g} min, fleet {self.fleet}, "
                f"{rate.sum():.1f} expected requests per episode{kept} over {len(self.od_pairs)} OD pairs, {net}, "
                f"trip time 1–{self.trip_steps()[:T][rate > 0].max()} steps, "
                f"price {self.price[:T][rate > 0].min():.1f}–"
                f"{self.price[:T].max():.1f}, {cost}")


# ----------------------------------------------------------------------------- synthetic

#: name -> (nlat, nlon, fleet, base requests per OD pair and step); "tiny" and "small" for tests,
#: "medium" for experiments
SIZES = {
    "tiny": (2, 2, 40, 1.2),
    "small": (2, 5, 120, 0.9),
    "medium": (4, 4, 1000, 3.0),
}


def synthetic(size: str = "small", seed: int = 0, *, horizon: int = 20, step_min: float = 3.0,
              fleet: int | None = None, peak_gain: float = 1.0, fare_base: float = 3.0,
              fare_per_min: float = 0.6, cost_per_min: float = 0.1, minutes_per_unit: float = 5.0,
              intra_region_units: float = 0.4) -> AmodScenario:
    """A seeded synthetic scenario on a grid (module docstring). `size` is a key of SIZES.

    Region centres are grid cells jittered by up to ±0.25 (so distances, and with them costs, are
    not all multiples of one another); driving minutes = minutes_per_unit · distance
    (intra_region_units for a trip inside a region); trip/rebalancing time = driving minutes in
    whole steps (≥ 1); price = fare_base + fare_per_min · minutes; operating cost = cost_per_min ·
    minutes, for passenger and empty trips alike.
    """
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; known: {', '.join(SIZES)}")
    nlat, nlon, fleet_default, base = SIZES[size]
    rng = np.random.default_rng(seed)
    N = nlat * nlon
    coords = np.array([(r, c) for r in range(nlat) for c in range(nlon)], float) + rng.uniform(-0.25, 0.25, (N, 2))
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(dist, intra_region_units)
    downtown = coords[rng.integers(N)]
    d_down = np.linalg.norm(coords - downtown, axis=1)
    attraction = 0.4 + 1.6 * np.exp(-d_down ** 2 / 2.0) * rng.uniform(0.8, 1.2, N)
    residential = rng.uniform(0.5, 1.5, N) * (0.6 + 0.4 * np.tanh(d_down))
    steps = np.arange(horizon)
    peak = 1.0 + peak_gain * np.exp(-0.5 * ((steps - 0.45 * horizon) / (0.2 * horizon)) ** 2)
    pair = base * residential[:, None] * attraction[None, :] * np.exp(-dist / 2.0)
    rate = peak[:, None, None] * pair[None]
    minutes = minutes_per_unit * dist
    travel = np.maximum(1, np.round(minutes / step_min)).astype(np.int64)
    price = np.broadcast_to(fare_base + fare_per_min * minutes, (horizon, N, N)).astype(float)
    cost = cost_per_min * minutes
    return AmodScenario(name=f"synthetic-{size}-s{seed}", step_min=step_min, demand_rate=rate, price=price,
                        pax_time=travel, reb_time=travel.copy(), pax_cost=cost, reb_cost=cost.copy(),
                        fleet=int(fleet or fleet_default), init_share=np.full(N, 1.0 / N), coords=coords,
                        meta={"generator": "synthetic", "size": size, "seed": seed, "downtown": downtown.tolist(),
                              "cost_per_min": cost_per_min})


# ----------------------------------------------------------------------------- benchmark JSON

_RECORD_KEYS = {
    "demand": ("time_stamp", "origin", "destination", "demand", "travel_time", "price"),
    "rebTime": ("time_stamp", "origin", "destination", "reb_time"),
    "totalAcc": ("hour", "acc"),
    "topology_graph": ("i", "j"),
}


def load_benchmark_json(path: str | Path, *, start_hour: float = 19, step_min: float = 4, horizon: int = 20,
                        demand_ratio: float = 1.0, cost_per_min: float | None = None,
                        fleet: int | None = None, network: str = "complete", name: str | None = None) -> AmodScenario:
    """Read a scenario in the public AMoD benchmark format (module docstring).

    start_hour: episode start (hours of the day; time stamps are minutes of the day).
    cost_per_min: operating cost per driving minute, passenger or empty (default: 10 % of the
        demand-weighted mean price per trip minute).
    fleet: overrides totalAcc. Raises ValueError naming the file and the missing/bad key.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"AMoD scenario file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"AMoD scenario {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"AMoD scenario {path}: the top level must be an object with keys "
                         f"nlat, nlon, demand, totalAcc, rebTime, topology_graph")
    for key in ("nlat", "nlon", "demand", "totalAcc", "rebTime", "topology_graph"):
        if key not in data:
            raise ValueError(f"AMoD scenario {path}: missing top-level key '{key}' (the benchmark format needs "
                             f"nlat, nlon, demand, totalAcc, rebTime, topology_graph)")
    for key, fields in _RECORD_KEYS.items():
        recs = data[key]
        if not isinstance(recs, list):
            raise ValueError(f"AMoD scenario {path}: '{key}' must be a list of records")
        for k, rec in enumerate(recs):
            if not isinstance(rec, dict):
                raise ValueError(f"AMoD scenario {path}: {key}[{k}] must be an object with keys {', '.join(fields)}")
            missing = [f for f in fields if f not in rec]
            if missing:
                raise ValueError(f"AMoD scenario {path}: {key}[{k}] lacks key '{missing[0]}' "
                                 f"(records of '{key}' need {', '.join(fields)})")
    if not (step_min > 0 and horizon >= 1 and demand_ratio > 0):
        raise ValueError("step_min and demand_ratio must be > 0 and horizon >= 1")
    if cost_per_min is not None and not (math.isfinite(cost_per_min) and cost_per_min >= 0):
        raise ValueError(f"the operating cost per minute β must be finite and >= 0, got {cost_per_min}")
    return _benchmark_scenario(path, data, start_hour=start_hour, step_min=step_min, horizon=horizon,
                               demand_ratio=demand_ratio, beta=cost_per_min, fleet=fleet, network=network,
                               name=name)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _benchmark_scenario(path: Path, data: dict, *, start_hour, step_min, horizon, demand_ratio, beta, fleet,
                        network, name) -> AmodScenario:
    """The benchmark's scenario rules (offline.amod.benchmark, §2–§4 of the spec) on validated JSON data."""
    if network not in ("topology", "complete"):
        raise ValueError(f"network must be 'topology' or 'complete', got {network!r}")
    try:
        nlat, nlon = int(data["nlat"]), int(data["nlon"])
    except (TypeError, ValueError):
        raise ValueError(f"AMoD scenario {path}: nlat and nlon must be integers") from None
    for key, fields in _RECORD_KEYS.items():
        for k, rec in enumerate(data[key]):
            bad = [f for f in fields if not _num(rec[f])]
            if bad:
                raise ValueError(f"AMoD scenario {path}: {key}[{k}].{bad[0]} = {rec[bad[0]]!r} is not a finite number")
    grid = list(range(nlat * nlon))
    topo = [(int(e["i"]), int(e["j"])) for e in data["topology_graph"]]
    if "region" in data:           # both repositories: a complete graph on the listed regions
        ids, network = [int(r) for r in data["region"]], "complete"
    elif network == "topology":
        if not topo:
            raise ValueError(f"AMoD scenario {path}: topology_graph is empty; use the complete network "
                             f"(--network complete)")
        ids = sorted({n for e in topo for n in e})
    else:
        ids = grid
    if not ids:
        raise ValueError(f"AMoD scenario {path}: no regions (nlat·nlon = 0)")
    _, eg, e_all = benchmark_orders(topo, ids, network)
    index = {r: k for k, r in enumerate(sorted(ids))}
    regions = sorted(ids)
    N = len(regions)
    for key, fields in (("demand", ("origin", "destination")), ("rebTime", ("origin", "destination"))):
        for k, rec in enumerate(data[key]):
            for f in fields:
                if rec[f] not in index and rec[f] not in grid:
                    raise ValueError(f"AMoD scenario {path}: {key}[{k}].{f} = {rec[f]!r} is not a region "
                                     f"(0 … {nlat * nlon - 1}{' or the region list' if 'region' in data else ''})")
    for k, rec in enumerate(data["demand"]):
        if rec["demand"] < 0 or rec["travel_time"] < 0:
            raise ValueError(f"AMoD scenario {path}: demand[{k}] needs demand >= 0 and travel_time >= 0")
    stamps = [rec["time_stamp"] for rec in data["demand"]]
    if not stamps:
        raise ValueError(f"AMoD scenario {path}: 'demand' has no records")
    h_first, h_end = hours_covered(stamps)
    first, last = min(stamps), max(stamps)
    m0, m1 = 60 * start_hour, 60 * start_hour + horizon * step_min
    if m0 < first or m1 > last + 1:
        latest = (last + 1 - horizon * step_min) / 60
        hint = (f"--start-hour between {first / 60:.4g} and {latest:.4g}" if latest >= first / 60 else
                "fewer --horizon steps or shorter --step-min")
        raise ValueError(f"AMoD scenario {path}: the episode {_hhmm(m0)}–{_hhmm(m1)} (start hour {start_hour:g}, "
                         f"{horizon} steps of {step_min:g} min) is outside the file's demand records, which cover "
                         f"{_hhmm(first)}–{_hhmm(last + 1)} (hours {h_first}–{h_end - 1}); choose {hint}")
    bins = 2 * horizon               # the episode and the MPC's look-ahead (§2.2)
    binned = bin_demand(data["demand"], set(e_all), start_hour, step_min, demand_ratio, bins)
    kept_file = sum(rec["demand"] * demand_ratio for rec in data["demand"] if m0 <= rec["time_stamp"] < m1)
    rate = np.zeros((bins, N, N))
    price = np.zeros((bins, N, N))
    tau = np.zeros((bins, N, N), np.int64)
    for (o, d), (lam, p, tt) in binned.items():
        rate[:, index[o], index[d]], price[:, index[o], index[d]], tau[:, index[o], index[d]] = lam, p, tt
    if rate[:horizon].sum() <= 0:
        raise ValueError(f"AMoD scenario {path}: no demand between {_hhmm(m0)} and {_hhmm(m1)} on the "
                         f"{network} network (check --start-hour, --network)")
    # §2.3: rebalancing times of the start hour only
    reb_steps = np.zeros((N, N), np.int64)
    reb_hours = sorted({rec["time_stamp"] for rec in data["rebTime"]})
    for rec in data["rebTime"]:
        if rec["time_stamp"] == start_hour and rec["origin"] in index and rec["destination"] in index:
            reb_steps[index[rec["origin"]], index[rec["destination"]]] = max(1, round(rec["reb_time"] / step_min))
    for i, j in eg:
        if reb_steps[index[i], index[j]] == 0:
            raise ValueError(f"AMoD scenario {path}: rebTime has no record of hour {start_hour:g} for origin {i} → "
                             f"destination {j} (the file has rebTime hours {', '.join(f'{h:g}' for h in reb_hours)})")
    np.fill_diagonal(reb_steps, 1)
    # §2.4: fleet of the episode's middle hour (half-to-even), ⌊acc/N⌋ per region
    h_acc = start_hour + int(round(step_min / 2 * horizon / 60))
    accs = {rec["hour"]: rec["acc"] for rec in data["totalAcc"]}
    if fleet is None:
        if h_acc not in accs:
            raise ValueError(f"AMoD scenario {path}: totalAcc has no record for hour {h_acc:g} (the episode's middle "
                             f"hour); it has hours {', '.join(f'{h:g}' for h in sorted(accs)) or 'none'} "
                             f"(or pass --fleet)")
        per_region = int(accs[h_acc]) // N
        if per_region < 1:
            raise ValueError(f"AMoD scenario {path}: totalAcc {accs[h_acc]} of hour {h_acc:g} is less than one "
                             f"vehicle per region ({N} regions)")
        init_idle = np.full(N, float(per_region))
    else:
        if fleet < N:
            raise ValueError(f"--fleet {fleet} is less than one vehicle per region ({N} regions)")
        init_idle = np.full(N, float(fleet // N))
        init_idle[: fleet - N * (fleet // N)] += 1       # a user's fleet is kept whole (remainder to the first regions)
    lam_ep = rate[:horizon]
    if beta is None:   # no published β: 10 % of the mean price per charged trip minute
        beta = 0.1 * float((price[:horizon] * lam_ep).sum() / max((tau[:horizon] * step_min * lam_ep).sum(), 1e-9))
    bbar = beta * step_min
    # a pair's representative trip time (for features and fallbacks): demand-weighted over the episode
    tot = lam_ep.sum(0)
    mean_tau = np.divide((tau[:horizon] * lam_ep).sum(0), tot, out=np.zeros((N, N)), where=tot > 0)
    pax_time = np.where(tot > 0, np.maximum(1, np.round(mean_tau)), np.maximum(reb_steps, 1)).astype(np.int64)
    tau_full = np.where(tau > 0, tau, pax_time[None])
    coords = (np.asarray(data["coords"], float) if "coords" in data
              else np.array([(r // max(nlon, 1), r % max(nlon, 1)) for r in regions], float))
    adj = np.array([(index[i], index[j]) for i, j in eg], np.int64).reshape(-1, 2)
    order = np.array([(index[i], index[j]) for i, j in e_all], np.int64).reshape(-1, 2)
    kept = float(lam_ep.sum())
    return AmodScenario(name=name or path.stem, step_min=float(step_min), demand_rate=rate, price=price,
                        pax_time=pax_time, reb_time=reb_steps, pax_cost=bbar * pax_time, reb_cost=bbar * reb_steps,
                        fleet=int(init_idle.sum()), init_share=init_idle / init_idle.sum(), coords=coords,
                        steps=horizon, pax_time_t=tau_full, pax_cost_t=bbar * tau_full, network_edges=adj,
                        draw_order=order, init_idle=init_idle, sampling="benchmark",
                        meta={"generator": "benchmark_json", "file": str(path), "start_hour": start_hour,
                              "step_min": step_min, "demand_ratio": demand_ratio, "records": len(data["demand"]),
                              "cost_per_min": float(beta), "beta_per_step": bbar, "network": network,
                              "regions": regions, "topology_edges": len(topo), "hours": (h_first, h_end),
                              "requests_kept": kept, "requests_in_file": float(kept_file),
                              "fleet_hour": h_acc, "mpc_horizon": horizon})


def _hhmm(minutes: float) -> str:
    h, m = divmod(int(round(minutes)), 60)
    return f"{h}:{m:02d}"


def write_benchmark_json(path: str | Path, *, nlat: int = 3, nlon: int = 6, n_regions: int | None = 17,
                         hours: tuple[int, int] = (7, 10), record_min: float = 2.0, fleet: int = 1500,
                         trips_per_hour: float = 9000.0, seed: int = 0) -> dict:
    """Write a synthetic scenario in the benchmark JSON format (for tests and the scale benchmark).

    Regions are the first n_regions cells of the nlat × nlon grid (listed under "region"); one demand
    record per OD pair and record_min minutes over `hours`; trips_per_hour requests in total.
    Returns {"path", "records", "regions"}.
    """
    rng = np.random.default_rng(seed)
    n_regions = n_regions or nlat * nlon
    if not 1 <= n_regions <= nlat * nlon:
        raise ValueError(f"n_regions must be in 1 … {nlat * nlon}")
    regions = list(range(n_regions))
    coords = np.array([(r // nlon, r % nlon) for r in regions], float)
    dist = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    hub = coords[rng.integers(n_regions)]
    attract = 0.5 + 1.5 * np.exp(-np.linalg.norm(coords - hub, axis=1) ** 2 / 2)
    home = rng.uniform(0.5, 1.5, n_regions)
    w = home[:, None] * attract[None] * np.exp(-dist / 2)
    w /= w.sum()
    minutes = np.arange(hours[0] * 60, hours[1] * 60, record_min)
    shape = 1 + 0.8 * np.exp(-0.5 * ((minutes - minutes.mean()) / (0.25 * (minutes[-1] - minutes[0] + 1))) ** 2)
    per_record = trips_per_hour * record_min / 60.0 * shape / shape.mean()
    demand = []
    for k, ts in enumerate(minutes):
        trips = per_record[k] * w
        for i in regions:
            for j in regions:
                tt = 3.0 + 4.0 * dist[i, j] * rng.uniform(0.9, 1.1)
                demand.append({"time_stamp": float(ts), "origin": i, "destination": j,
                               "demand": round(float(trips[i, j]), 4), "travel_time": round(tt, 2),
                               "price": round(4.0 + 0.7 * tt, 2)})
    reb = [{"time_stamp": h, "origin": i, "destination": j, "reb_time": round(3.0 + 4.0 * dist[i, j], 2)}
           for h in range(hours[0], hours[1]) for i in regions for j in regions]
    topo = [{"i": i, "j": j} for i in regions for j in regions if i != j and dist[i, j] <= 1.0 + 1e-9]
    data = {"nlat": nlat, "nlon": nlon, "region": regions, "demand": demand,
            "totalAcc": [{"hour": h, "acc": fleet} for h in range(hours[0], hours[1] + 1)],
            "rebTime": reb, "topology_graph": topo}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return {"path": path, "records": len(demand), "regions": n_regions}
