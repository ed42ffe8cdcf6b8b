"""Supply-chain scenarios: the SCIM benchmark's networks (1F2S, 1F3S, 1F10S) and a user's own (YAML).

A scenario is plain data (numpy arrays: money per unit of goods, goods units, steps); the
environment, the lower level (Eq. 31), the MPCs and the heuristic read it and nothing else.

The presets are the configurations of Gammelli et al.'s public SCIM benchmark
(``supplychain/main_1f2s.py`` etc. of DanieleGammelli/graph-rl-for-network-optimization, MIT),
constant for constant (/work/shared/benchmarks/SCIM_BENCHMARK.md §2): one factory (node 0),
K stores, lead time 1 everywhere, price 15, production cost 5, penalty κ = 1.5 · price = 22.5
per unit of backlog *and* of overflow at every node, all stocks 0 at the start, T = 30 steps.
Demand (§3), store j = 1 … K (the benchmark's node id):

    d_j(t) = rne(D_j/2 + D_j/2 · cos(4π(2j + t)/T) + u),   u ~ U{0 … V_j}              (rne: np.round)

drawn from NumPy's legacy generator in the benchmark's order (T draws per (t, store), element t
kept), so a seed gives the benchmark's demand bit for bit. ``demand_phase`` holds the 2j.

A scenario file (``--scenario-file my_net.yaml``) describes a network of the same kind with any
number of factories and stores; :func:`load_scenario_file` documents its keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

__all__ = ["InventoryScenario", "make_scenario", "SCENARIOS", "seasonal_mean_demand", "load_scenario_file",
           "ScenarioFileError", "resolve_scenario", "SCENARIO_FILE_KEYS"]


@dataclass(frozen=True)
class InventoryScenario:
    """One supply network. Arrays are indexed by factory/warehouse i (W), store j (S) or edge e (E).

    Edges are directed factory → store shipments with lead time ``lead_time[e]`` steps (shipped at
    t, in the store at the start of t + L). Production ordered at t can be shipped from t + 1.
    Costs are money per unit (per step for storage, backlog and overflow); stock in goods units.
    """

    name: str
    horizon_steps: int                      # T: demand steps of an episode (the benchmark's tf)
    edges: np.ndarray                       # (E, 2) int: (warehouse i, store j)
    price: np.ndarray                       # (S,) revenue per unit of demand (booked on all demand, §4.6)
    production_cost: np.ndarray             # (W,) c_P per unit ordered
    production_capacity: np.ndarray         # (W,) max units ordered per step (inf: none, as SCIM)
    transport_cost: np.ndarray              # (E,) c_e per unit shipped
    storage_cost_w: np.ndarray              # (W,) h per unit of post-step stock X⁺
    storage_cost_s: np.ndarray              # (S,)
    capacity_w: np.ndarray                  # (W,) storage capacity C (units)
    capacity_s: np.ndarray                  # (S,)
    backorder_penalty: np.ndarray           # (S,) κ per unit of negative stock (backlog) per step
    overflow_penalty_w: np.ndarray          # (W,) κ per unit above capacity (then destroyed)
    overflow_penalty_s: np.ndarray          # (S,)
    demand_max: np.ndarray                  # (S,) D of the seasonal curve
    demand_var: np.ndarray                  # (S,) int V, noise U{0..V}
    initial_stock_w: np.ndarray             # (W,)
    initial_stock_s: np.ndarray             # (S,)
    backorder_penalty_w: np.ndarray = None  # (W,) κ at factories (SCIM: the same 22.5; default 0)
    demand_phase: np.ndarray = None         # (S,) steps added to t in the cosine (SCIM: 2j, j = 1 … K)
    lead_time: np.ndarray = None            # (E,) int ≥ 1 (default 1)
    heuristic_levels: tuple = (np.nan, np.nan)   # the order-up-to heuristic's (s_store, s_factory)
    warehouse_names: tuple[str, ...] = field(default=())
    store_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        W, S = len(np.atleast_1d(self.production_cost)), len(np.atleast_1d(self.price))
        edges = np.asarray(self.edges, dtype=int).reshape(-1, 2)
        object.__setattr__(self, "edges", edges)
        if self.backorder_penalty_w is None:
            object.__setattr__(self, "backorder_penalty_w", np.zeros(W))
        if self.demand_phase is None:
            object.__setattr__(self, "demand_phase", 2.0 * np.arange(1, S + 1))
        if self.lead_time is None:
            object.__setattr__(self, "lead_time", np.ones(len(edges), dtype=int))
        for name in ("production_cost", "storage_cost_w", "capacity_w", "overflow_penalty_w", "initial_stock_w",
                     "backorder_penalty_w"):
            self._check(name, W)
        self._check("production_capacity", W, allow_inf=True)
        for name in ("price", "storage_cost_s", "capacity_s", "backorder_penalty", "overflow_penalty_s",
                     "demand_max", "initial_stock_s", "demand_phase"):
            self._check(name, S)
        self._check("transport_cost", len(edges))
        dv = np.asarray(self.demand_var)
        if dv.shape != (S,) or np.any(dv < 0) or np.any(dv != np.round(dv)):
            raise ValueError(f"scenario {self.name}: demand_var must be {S} non-negative integers")
        object.__setattr__(self, "demand_var", dv.astype(int))
        lt = np.asarray(self.lead_time)
        if lt.shape != (len(edges),) or np.any(lt < 1) or np.any(lt != np.round(lt)):
            raise ValueError(f"scenario {self.name}: lead_time must be {len(edges)} integers >= 1")
        object.__setattr__(self, "lead_time", lt.astype(int))
        if self.horizon_steps < 1:
            raise ValueError(f"scenario {self.name}: horizon_steps must be >= 1, got {self.horizon_steps}")
        if W < 1 or S < 1 or len(edges) < 1:
            raise ValueError(f"scenario {self.name}: needs >= 1 warehouse, store and edge")
        if np.any(edges[:, 0] < 0) or np.any(edges[:, 0] >= W) or np.any(edges[:, 1] < 0) or np.any(edges[:, 1] >= S):
            raise ValueError(f"scenario {self.name}: edges must be (warehouse < {W}, store < {S}) pairs")
        if len({tuple(e) for e in edges}) != len(edges):
            raise ValueError(f"scenario {self.name}: duplicate edges")
        if np.any(self.initial_stock_w > self.capacity_w) or np.any(self.initial_stock_s > self.capacity_s):
            raise ValueError(f"scenario {self.name}: initial stock exceeds capacity")
        if not self.warehouse_names:
            object.__setattr__(self, "warehouse_names", tuple(f"W{i}" for i in range(W)))
        if not self.store_names:
            object.__setattr__(self, "store_names", tuple(f"S{j + 1}" for j in range(S)))

    def _check(self, name: str, size: int, allow_inf: bool = False) -> None:
        a = np.asarray(getattr(self, name), dtype=float).reshape(-1)
        ok = np.all(~np.isnan(a)) and (allow_inf or np.all(np.isfinite(a)))
        if a.shape != (size,) or not ok or np.any(a < 0):
            raise ValueError(f"scenario {self.name}: {name} must be {size} finite numbers >= 0, got {a}")
        object.__setattr__(self, name, a)

    @property
    def n_warehouses(self) -> int:
        return len(self.production_cost)

    @property
    def n_stores(self) -> int:
        return len(self.price)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def edge_names(self) -> list[str]:
        return [f"{self.warehouse_names[i]}->{self.store_names[j]}" for i, j in self.edges]

    @property
    def out_edges(self) -> np.ndarray:
        """(W, E) 0/1: edge e leaves warehouse i (N⁺(i) of Eq. 31d–e)."""
        m = np.zeros((self.n_warehouses, self.n_edges))
        m[self.edges[:, 0], np.arange(self.n_edges)] = 1.0
        return m

    @property
    def in_edges(self) -> np.ndarray:
        """(S, E) 0/1: edge e enters store j (N⁻(j) of Eq. 31b–c)."""
        m = np.zeros((self.n_stores, self.n_edges))
        m[self.edges[:, 1], np.arange(self.n_edges)] = 1.0
        return m

    @property
    def production_scale(self) -> np.ndarray:
        """(W,) the largest useful production order: the capacity, else the factory's storage."""
        return np.minimum(self.production_capacity, self.capacity_w)

    def with_(self, **changes) -> "InventoryScenario":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def demand_curve(self, noise: np.ndarray) -> np.ndarray:
        """(T, S) demand for integer noise u (T, S), in the benchmark's floating-point order (§3)."""
        T = self.horizon_steps
        t = np.arange(T, dtype=float)[:, None]
        angle = ((4 * np.pi) * (self.demand_phase[None, :] + t)) / T
        half = self.demand_max / 2
        return np.maximum(np.round(half + half * np.cos(angle) + noise), 0.0)

    def sample_demand(self, rng: np.random.RandomState) -> np.ndarray:
        """(T, S) integer demand of one episode, consuming `rng` (NumPy's legacy generator) as the
        benchmark's ``reset`` does: for t, for each store, a whole curve of T draws, element t kept."""
        T, S = self.horizon_steps, self.n_stores
        noise = np.empty((T, S))
        for t in range(T):
            for j in range(S):
                noise[t, j] = rng.randint(0, int(self.demand_var[j]) + 1, size=T)[t]
        return self.demand_curve(noise)


def seasonal_mean_demand(scenario: InventoryScenario, t) -> np.ndarray:
    """Expected demand E[d_j^t] (S,) or (len(t), S) over the noise (exact: the rounding of each of
    the V + 1 equally likely noise values is averaged); 0 for t ≥ T."""
    t_arr = np.atleast_1d(np.asarray(t, dtype=int))
    sc = scenario
    out = np.zeros((len(t_arr), sc.n_stores))
    Vmax = int(sc.demand_var.max())
    for u in range(Vmax + 1):
        noise = np.full((sc.horizon_steps, sc.n_stores), float(u))
        curve = sc.demand_curve(noise)
        w = (u <= sc.demand_var) / (sc.demand_var + 1.0)
        inside = (t_arr >= 0) & (t_arr < sc.horizon_steps)
        out[inside] += curve[t_arr[inside]] * w
    return out[0] if np.ndim(t) == 0 else out


# ----------------------------------------------------------------------------- the benchmark's presets

#: SCIM constants (§2): price, production cost, κ = 1.5 · price, T
PRICE, PRODUCTION_COST, PENALTY, HORIZON = 15.0, 5.0, 22.5, 30

#: per preset: C_0; C_stores; h_0; h_stores; c_e; D; V; (s_store, s_factory) of the heuristic
_PRESETS = {
    "1F2S": (20, [9, 12], 3, [2, 1], [0.3, 0.6], [2, 16], [2, 2], (16, 19)),
    "1F3S": (30, [15, 15, 15], 2, [1, 1, 1], [0.3, 0.3, 0.3], [1, 5, 24], [2, 2, 2], (18, 31)),
    "1F10S": (100, [15] * 10, 1, [2] * 10, [0.3] * 10, [2, 2, 2, 2, 10, 10, 10, 18, 18, 18], [2] * 10, (18, 100)),
}


def _preset(name: str, horizon: int = HORIZON) -> InventoryScenario:
    c0, cs, h0, hs, ce, dmax, dvar, levels = _PRESETS[name]
    S = len(cs)
    return InventoryScenario(
        name=name, horizon_steps=horizon, edges=np.array([(0, j) for j in range(S)]),
        price=np.full(S, PRICE), production_cost=np.array([PRODUCTION_COST]),
        production_capacity=np.array([np.inf]), transport_cost=np.array(ce, float),
        storage_cost_w=np.array([h0], float), storage_cost_s=np.array(hs, float),
        capacity_w=np.array([c0], float), capacity_s=np.array(cs, float),
        backorder_penalty=np.full(S, PENALTY), backorder_penalty_w=np.array([PENALTY]),
        overflow_penalty_w=np.array([PENALTY]), overflow_penalty_s=np.full(S, PENALTY),
        demand_max=np.array(dmax, float), demand_var=np.array(dvar), demand_phase=2.0 * np.arange(1, S + 1),
        initial_stock_w=np.zeros(1), initial_stock_s=np.zeros(S), lead_time=np.ones(S, dtype=int),
        heuristic_levels=levels, warehouse_names=("F0",))


SCENARIOS = {name: (lambda horizon=HORIZON, _n=name: _preset(_n, horizon)) for name in _PRESETS}


def make_scenario(name: str, horizon_steps: int | None = None) -> InventoryScenario:
    """A benchmark preset ('1F2S', '1F3S', '1F10S'), optionally with another horizon."""
    key = name.upper()
    if key not in SCENARIOS:
        raise ValueError(f"unknown inventory scenario {name!r}; choose one of {', '.join(SCENARIOS)} "
                         "or give --scenario-file")
    return SCENARIOS[key]() if horizon_steps is None else SCENARIOS[key](int(horizon_steps))


# ----------------------------------------------------------------------------- scenario files (YAML)

class ScenarioFileError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


#: key -> (per what, required, default, lower bound, description); per: "W", "S", "E" or "" (scalar)
SCENARIO_FILE_KEYS = {
    "name": ("", False, None, None, "scenario name (default: the file's stem)"),
    "horizon_steps": ("", False, HORIZON, 1, "T, demand steps per episode"),
    "factories": ("", True, None, 1, "number of factories W"),
    "stores": ("", True, None, 1, "number of stores S"),
    "edges": ("", False, None, None, "list of [factory, store] pairs, 0-based (default: every factory to every store)"),
    "price": ("S", False, PRICE, 0, "revenue per unit of demand"),
    "production_cost": ("W", False, PRODUCTION_COST, 0, "per unit ordered"),
    "production_capacity": ("W", False, None, 0, "max units ordered per step (default: none)"),
    "transport_cost": ("E", True, None, 0, "per unit shipped"),
    "lead_time": ("E", False, 1, 1, "steps from shipping to arrival (integer)"),
    "storage_cost_factory": ("W", True, None, 0, "per unit held per step"),
    "storage_cost_store": ("S", True, None, 0, "per unit held per step"),
    "capacity_factory": ("W", True, None, 0, "storage capacity"),
    "capacity_store": ("S", True, None, 0, "storage capacity"),
    "penalty": ("", False, PENALTY, 0, "per unit of backlog and of overflow per step, every node"),
    "demand_max": ("S", True, None, 0, "D of the seasonal curve"),
    "demand_var": ("S", False, 2, 0, "V: noise U{0..V} (integer)"),
    "demand_phase": ("S", False, None, None, "steps added to t in the cosine (default 2j, j = 1 … S)"),
    "initial_stock_factory": ("W", False, 0, 0, "stock at the start"),
    "initial_stock_store": ("S", False, 0, 0, "stock at the start"),
    "heuristic_levels": ("", False, None, None, "[s_store, s_factory] of the order-up-to heuristic"),
}


def load_scenario_file(path: str | Path) -> InventoryScenario:
    """A scenario from a YAML mapping with the keys of SCENARIO_FILE_KEYS (a per-node key takes a
    number for all or a list with one number per factory/store/edge). Raises ScenarioFileError
    with one line naming the file and the key."""
    import yaml

    path = Path(path)

    def err(msg: str) -> ScenarioFileError:
        return ScenarioFileError(f"scenario file {path}: {msg}")

    try:
        text = path.read_text()
    except OSError as e:
        raise err(f"cannot read it ({e.strerror or e})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise err(f"not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise err("expected a mapping of scenario keys (factories, stores, transport_cost, …), "
                  f"got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(SCENARIO_FILE_KEYS))
    if unknown:
        raise err(f"unknown key {unknown[0]!r}; known keys: {', '.join(SCENARIO_FILE_KEYS)}")
    for key, (_, required, *_rest) in SCENARIO_FILE_KEYS.items():
        if required and key not in data:
            raise err(f"missing key {key!r} ({SCENARIO_FILE_KEYS[key][4]})")

    def integer(key: str) -> int:
        v = data.get(key, SCENARIO_FILE_KEYS[key][2])
        lo = SCENARIO_FILE_KEYS[key][3]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise err(f"{key} must be an integer >= {lo}, got {v!r}")
        return v

    W, S, T = integer("factories"), integer("stores"), integer("horizon_steps")
    if "edges" in data:
        e = data["edges"]
        ok = isinstance(e, list) and e and all(isinstance(p, list) and len(p) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in p) for p in e)
        if not ok:
            raise err("edges must be a non-empty list of [factory, store] integer pairs")
        edges = np.array(e, int)
        if np.any(edges[:, 0] < 0) or np.any(edges[:, 0] >= W) or np.any(edges[:, 1] < 0) or np.any(edges[:, 1] >= S):
            raise err(f"edges: factory must be in 0…{W - 1} and store in 0…{S - 1}")
        if len({tuple(p) for p in e}) != len(e):
            raise err("edges: a [factory, store] pair appears twice")
    else:
        edges = np.array([(i, j) for i in range(W) for j in range(S)])
    size = {"W": W, "S": S, "E": len(edges)}

    def vec(key: str, default=None) -> np.ndarray:
        per, _, dflt, lo, _desc = SCENARIO_FILE_KEYS[key]
        v = data.get(key, dflt if default is None else default)
        n = size[per]
        a = [v] * n if not isinstance(v, list) else v
        if len(a) != n or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in a):
            what = {"W": "factory", "S": "store", "E": "edge"}[per]
            raise err(f"{key} must be a number or a list of {n} numbers (one per {what}), got {v!r}")
        arr = np.asarray(a, float)
        if not np.all(np.isfinite(arr)):
            raise err(f"{key} must be finite, got {v!r}")
        if lo is not None and np.any(arr < lo):
            raise err(f"{key} must be >= {lo}, got {v!r}")
        return arr

    pen = data.get("penalty", PENALTY)
    if isinstance(pen, bool) or not isinstance(pen, (int, float)) or not np.isfinite(pen) or pen < 0:
        raise err(f"penalty must be a number >= 0, got {pen!r}")
    demand_var = vec("demand_var")
    if np.any(demand_var != np.round(demand_var)):
        raise err(f"demand_var must be integers, got {data['demand_var']!r}")
    lead = vec("lead_time")
    if np.any(lead != np.round(lead)):
        raise err(f"lead_time must be integers, got {data['lead_time']!r}")
    cap_w, cap_s = vec("capacity_factory"), vec("capacity_store")
    init_w, init_s = vec("initial_stock_factory"), vec("initial_stock_store")
    if np.any(init_w > cap_w) or np.any(init_s > cap_s):
        raise err("initial_stock_factory/initial_stock_store exceed capacity_factory/capacity_store")
    prod_cap = vec("production_capacity", np.inf) if "production_capacity" in data else np.full(W, np.inf)
    phase = vec("demand_phase") if "demand_phase" in data else 2.0 * np.arange(1, S + 1)
    levels = data.get("heuristic_levels")
    if levels is not None and not (isinstance(levels, list) and len(levels) == 2
                                   and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in levels)):
        raise err(f"heuristic_levels must be [s_store, s_factory], got {levels!r}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise err(f"name must be a non-empty string, got {name!r}")
    try:
        return InventoryScenario(
            name=name, horizon_steps=T, edges=edges, price=vec("price"), production_cost=vec("production_cost"),
            production_capacity=prod_cap, transport_cost=vec("transport_cost"),
            storage_cost_w=vec("storage_cost_factory"), storage_cost_s=vec("storage_cost_store"),
            capacity_w=cap_w, capacity_s=cap_s, backorder_penalty=np.full(S, float(pen)),
            backorder_penalty_w=np.full(W, float(pen)), overflow_penalty_w=np.full(W, float(pen)),
            overflow_penalty_s=np.full(S, float(pen)), demand_max=vec("demand_max"), demand_var=demand_var.astype(int),
            demand_phase=phase, initial_stock_w=init_w, initial_stock_s=init_s, lead_time=lead.astype(int),
            heuristic_levels=tuple(levels) if levels is not None else (np.nan, np.nan))
    except ValueError as e:       # anything the per-key checks above did not catch
        raise err(str(e)) from None


def resolve_scenario(name: str | None, scenario_file: str | Path | None = None,
                     horizon_steps: int | None = None) -> InventoryScenario:
    """The scenario of a command line: a file if given, else the named preset (ValueError if bad)."""
    if scenario_file is not None:
        sc = load_scenario_file(scenario_file)
        return sc if horizon_steps is None else sc.with_(horizon_steps=int(horizon_steps))
    return make_scenario(name or "1F10S", horizon_steps)
