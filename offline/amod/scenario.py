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

    def __post_init__(self) -> None:
        T, N, N2 = self.demand_rate.shape
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
    horizon = property(lambda self: self.demand_rate.shape[0], doc="T, the number of decision steps of an episode")

    @property
    def od_pairs(self) -> np.ndarray:
        """(P, 2) origin–destination pairs with a positive demand rate at some step (passenger flows g)."""
        return np.argwhere(self.demand_rate.sum(axis=0) > 0)

    @property
    def reb_edges(self) -> np.ndarray:
        """(E, 2) ordered pairs i ≠ j along which vehicles can be rebalanced (flows f): all of them."""
        N = self.n_regions
        return np.array([(i, j) for i in range(N) for j in range(N) if i != j], dtype=np.int64).reshape(-1, 2)

    @property
    def max_travel(self) -> int:
        return int(max(self.pax_time.max(), self.reb_time.max()))

    def summary(self) -> str:
        T, N = self.horizon, self.n_regions
        return (f"{self.name}: {N} regions, {T} steps of {self.step_min:g} min, fleet {self.fleet}, "
                f"{self.demand_rate.sum():.0f} expected requests per episode over {len(self.od_pairs)} OD pairs, "
                f"trip time 1–{self.pax_time.max()} steps, price {self.price[self.demand_rate > 0].min():.1f}–"
                f"{self.price.max():.1f}, empty-trip cost {self.reb_cost[~np.eye(N, dtype=bool)].min():.2f}–{self.reb_cost.max():.2f}")


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


def load_benchmark_json(path: str | Path, *, start_hour: float = 7.0, step_min: float = 3.0, horizon: int = 20,
                        demand_ratio: float = 1.0, cost_per_min: float | None = None,
                        fleet: int | None = None) -> AmodScenario:
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
    try:
        nlat, nlon = int(data["nlat"]), int(data["nlon"])
    except (TypeError, ValueError):
        raise ValueError(f"AMoD scenario {path}: nlat and nlon must be integers") from None
    regions = [int(r) for r in data["region"]] if "region" in data else list(range(nlat * nlon))
    if not regions:
        raise ValueError(f"AMoD scenario {path}: no regions (nlat·nlon = 0)")
    index = {r: k for k, r in enumerate(regions)}
    N = len(regions)
    t0 = start_hour * 60.0

    def region(rec, key, k, name):
        r = rec[name]
        if r not in index:
            raise ValueError(f"AMoD scenario {path}: {key}[{k}].{name} = {r!r} is not a region "
                             f"(0 … {nlat * nlon - 1}{' or the region list' if 'region' in data else ''})")
        return index[r]

    trips = np.zeros((horizon, N, N))
    price_sum = np.zeros((horizon, N, N))
    time_sum = np.zeros((N, N))
    for k, rec in enumerate(data["demand"]):
        try:
            ts, v, tt, p = float(rec["time_stamp"]), float(rec["demand"]), float(rec["travel_time"]), float(rec["price"])
        except (TypeError, ValueError):
            raise ValueError(f"AMoD scenario {path}: demand[{k}] has a non-numeric field") from None
        if not (math.isfinite(ts) and math.isfinite(v) and v >= 0 and math.isfinite(tt) and tt >= 0 and math.isfinite(p)):
            raise ValueError(f"AMoD scenario {path}: demand[{k}] needs finite demand >= 0, travel_time >= 0, price")
        b = int(math.floor((ts - t0) / step_min))
        if not 0 <= b < horizon:
            continue
        i, j = region(rec, "demand", k, "origin"), region(rec, "demand", k, "destination")
        trips[b, i, j] += v * demand_ratio
        price_sum[b, i, j] += p * v * demand_ratio
        time_sum[i, j] += tt * v * demand_ratio
    total = trips.sum(axis=0)
    if total.sum() <= 0:
        raise ValueError(f"AMoD scenario {path}: no demand between {start_hour:g} h and "
                         f"{start_hour + horizon * step_min / 60:g} h (check --start-hour)")
    price = np.divide(price_sum, trips, out=np.zeros_like(price_sum), where=trips > 0)
    # a pair's price in bins without trips: its mean over the window (keeps the LP's costs defined)
    mean_price = np.divide(price_sum.sum(0), total, out=np.zeros((N, N)), where=total > 0)
    price = np.where(trips > 0, price, mean_price[None])
    pax_min = np.divide(time_sum, total, out=np.zeros((N, N)), where=total > 0)

    reb_min = np.full((N, N), np.nan)
    best_hour = np.full((N, N), np.inf)
    for k, rec in enumerate(data["rebTime"]):
        i, j = region(rec, "rebTime", k, "origin"), region(rec, "rebTime", k, "destination")
        try:
            hr, rt = float(rec["time_stamp"]), float(rec["reb_time"])
        except (TypeError, ValueError):
            raise ValueError(f"AMoD scenario {path}: rebTime[{k}] has a non-numeric field") from None
        d = abs(hr - math.floor(start_hour))   # the record of the start hour, else the nearest hour
        if d < best_hour[i, j]:
            best_hour[i, j], reb_min[i, j] = d, rt
    off = ~np.eye(N, dtype=bool)
    if np.any(np.isnan(reb_min[off])):
        i, j = np.argwhere(np.isnan(reb_min) & off)[0]
        raise ValueError(f"AMoD scenario {path}: rebTime has no record for origin {regions[i]} → "
                         f"destination {regions[j]} (every ordered pair of regions needs one)")
    reb_time = np.where(off, np.maximum(1, np.round(np.nan_to_num(reb_min) / step_min)), 1).astype(np.int64)
    # pairs without trips travel like rebalancing vehicles
    pax_time = np.where(total > 0, np.maximum(1, np.round(pax_min / step_min)), reb_time).astype(np.int64)

    if fleet is None:
        mid_hour = int(math.floor(start_hour + horizon * step_min / 2 / 60))
        accs = {}
        for k, rec in enumerate(data["totalAcc"]):
            try:
                accs[int(rec["hour"])] = float(rec["acc"])
            except (TypeError, ValueError):
                raise ValueError(f"AMoD scenario {path}: totalAcc[{k}] has a non-numeric field") from None
        if not accs:
            raise ValueError(f"AMoD scenario {path}: totalAcc is empty (or pass fleet=...)")
        hour = min(accs, key=lambda h: (abs(h - mid_hour), h))
        fleet = int(round(accs[hour]))
    if cost_per_min is None:
        minutes = np.broadcast_to(np.maximum(pax_min, 1e-9), trips.shape)
        cost_per_min = 0.1 * float(np.sum(price * trips) / np.sum(trips * minutes))
    reb_min_full = np.where(off, np.nan_to_num(reb_min), 0.0)
    pax_min_full = np.where(total > 0, pax_min, reb_min_full)
    if "coords" in data:
        coords = np.asarray(data["coords"], float)
    else:
        coords = np.array([(r // nlon, r % nlon) for r in regions], float)
    edges = [(int(e["i"]), int(e["j"])) for e in data["topology_graph"]]
    return AmodScenario(name=path.stem, step_min=step_min, demand_rate=trips, price=price, pax_time=pax_time,
                        reb_time=reb_time, pax_cost=cost_per_min * pax_min_full,
                        reb_cost=cost_per_min * reb_min_full, fleet=int(fleet),
                        init_share=np.full(N, 1.0 / N), coords=coords,
                        meta={"generator": "benchmark_json", "file": str(path), "start_hour": start_hour,
                              "demand_ratio": demand_ratio, "records": len(data["demand"]),
                              "cost_per_min": float(cost_per_min),
                              "regions": regions, "topology_edges": len(edges)})


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
