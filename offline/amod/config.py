"""One place for the AMoD experiment's choices: which scenario, which seeds, how environments are built.

Seed pools (disjoint; Table 1 evaluates on seeds ≥ 10000, offline.experiments checks it):
    DEMO_SEEDS         0 …        MPC demonstrations for the inverse fit (training)
    HELD_OUT_SEEDS     500 …      MPC demonstrations to validate θ on (never fitted on)
    RL_SEEDS           1000–9999  demand samples of RL training episodes
Every seed fixes one demand sample of the scenario (AmodSim.reset).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from hiopt_ros.control.theta import load_theta
from offline.amod.benchmark import DATA_DIR, DEFAULT_PRESET, DEFECTS, PRESETS
from offline.amod.envs import AmodBiLevelEnv, AmodEndToEndEnv
from offline.amod.lower import Eq25Fop
from offline.amod.scenario import SIZES, AmodScenario, load_benchmark_json, synthetic
from offline.amod.subgoal import DEFAULT_INTERFACE, SubgoalInterface

__all__ = ["ScenarioSpec", "DEMO_SEED0", "HELD_OUT_SEED0", "RL_SEEDS", "make_env", "add_scenario_arguments",
           "spec_from_args", "lower_factory"]

DEMO_SEED0 = 0
HELD_OUT_SEED0 = 500
RL_SEEDS = range(1000, 10_000)


@dataclass(frozen=True)
class ScenarioSpec:
    """Plain, picklable description of a scenario: a synthetic size, or a benchmark preset / JSON file.

    synthetic: a key of SIZES (then the benchmark fields are ignored); otherwise `preset`
    (offline.amod.benchmark.PRESETS; None: a bare file) supplies the settings any None field
    leaves open, and `json` overrides its file. defects: benchmark defects switched on by name
    (offline.amod.benchmark.DEFECTS).
    """
    synthetic: str | None = None
    seed: int = 0
    json: str | None = None
    start_hour: float | None = None
    step_min: float | None = None
    horizon: int | None = None
    demand_ratio: float | None = None
    fleet: int | None = None
    preset: str | None = DEFAULT_PRESET
    network: str | None = None
    beta: float | None = None
    defects: tuple = ()

    def __post_init__(self) -> None:
        # a fleet variant of a preset is that preset with --fleet: one key, one cache (same scenario)
        pre = PRESETS.get(self.preset) if self.preset else None
        if pre is not None and pre.base is not None and not self.synthetic:
            object.__setattr__(self, "preset", pre.base)
            if self.fleet is None:
                object.__setattr__(self, "fleet", pre.fleet)
        object.__setattr__(self, "defects", tuple(self.defects))

    def resolved(self) -> dict:
        """The settings the scenario is built with: {file, start_hour, step_min, horizon, demand_ratio,
        beta, network, fleet} (benchmark) or {size, step_min, horizon, fleet, beta} (synthetic)."""
        if self.synthetic:
            if self.network not in (None, "complete"):
                raise ValueError("synthetic scenarios rebalance between every pair of regions: --network topology "
                                 "needs a benchmark file (--scenario PRESET or --scenario-json FILE)")
            return {"size": self.synthetic, "step_min": self.step_min or 3.0, "horizon": self.horizon or 20,
                    "fleet": self.fleet, "beta": self.beta}
        pre = None
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise ValueError(f"unknown AMoD scenario {self.preset!r}; presets: {', '.join(PRESETS)}; "
                                 f"synthetic: {', '.join(SIZES)}")
            pre = PRESETS[self.preset]
        if self.json is None and pre is None:
            raise ValueError("a benchmark scenario needs a preset (--scenario) or a file (--scenario-json)")
        if self.json is not None:
            path = Path(self.json)
        else:
            path = pre.path()
            if not path.exists():
                raise FileNotFoundError(f"preset {self.preset} needs {pre.file}, which is not in {DATA_DIR} (only "
                                        f"NYC Brooklyn is bundled): pass the file with --scenario-json FILE")

        def pick(v, k, d):
            return v if v is not None else (getattr(pre, k) if pre is not None else d)
        return {"file": str(path), "start_hour": pick(self.start_hour, "start_hour", 19),
                "step_min": pick(self.step_min, "step_min", 4), "horizon": pick(self.horizon, "steps", 20),
                "demand_ratio": pick(self.demand_ratio, "demand_ratio", 1.0), "beta": pick(self.beta, "beta", None),
                "network": pick(self.network, "network", "complete"),
                "fleet": self.fleet if self.fleet is not None else (pre.fleet if pre is not None else None)}

    def build(self) -> AmodScenario:
        r = self.resolved()
        if self.synthetic:
            kw = {"cost_per_min": r["beta"]} if r["beta"] is not None else {}
            sc = synthetic(self.synthetic, self.seed, horizon=r["horizon"], step_min=r["step_min"],
                           fleet=r["fleet"], **kw)
        else:
            sc = load_benchmark_json(r["file"], start_hour=r["start_hour"], step_min=r["step_min"],
                                     horizon=r["horizon"], demand_ratio=r["demand_ratio"], cost_per_min=r["beta"],
                                     fleet=r["fleet"], network=r["network"],
                                     name=self.preset if self.json is None else None)
        sc.meta["defects"] = tuple(self.defects)
        return sc

    @property
    def horizon_steps(self) -> int:
        return int(self.resolved()["horizon"])

    @property
    def key(self) -> str:
        """A folder name for this scenario's artefacts (demonstrations, θ, policies)."""
        r = self.resolved()
        if self.synthetic:
            base = f"synthetic-{self.synthetic}-s{self.seed}-T{r['horizon']}-dt{r['step_min']:g}"
            extra = ((f"-fleet{r['fleet']}" if r["fleet"] else "")
                     + (f"-beta{r['beta']:g}" if r["beta"] is not None else ""))
        else:
            name = self.preset if self.json is None else Path(self.json).stem
            base = (f"{name}-h{r['start_hour']:g}-dt{r['step_min']:g}-r{r['demand_ratio']:g}-T{r['horizon']}"
                    f"-{r['network']}")
            extra = ((f"-beta{r['beta']:g}" if r["beta"] is not None else "")
                     + (f"-fleet{r['fleet']}" if r["fleet"] else ""))
        return base + extra + "".join(f"-{d}" for d in sorted(self.defects))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["defects"] = list(self.defects)
        return d


SCENARIO_HELP = ("AMoD scenario: a benchmark preset (the published settings of Gammelli et al.; default "
                 f"{DEFAULT_PRESET}) or a synthetic size ({', '.join(SIZES)}). Presets: "
                 + "; ".join(f"{n} ({p.file}, h0 {p.start_hour}, Δ {p.step_min} min, r {p.demand_ratio:g}, "
                             f"β {p.beta:g}, T {p.steps}, {p.network}{f', fleet {p.fleet}' if p.fleet else ''})"
                             for n, p in PRESETS.items()))


def add_scenario_arguments(p) -> None:
    p.add_argument("--scenario", default=DEFAULT_PRESET, choices=list(PRESETS) + sorted(SIZES), metavar="NAME",
                   help=SCENARIO_HELP)
    p.add_argument("--scenario-seed", type=int, default=0, help="seed of the synthetic scenario's geography and rates")
    p.add_argument("--scenario-json", default=None, metavar="FILE",
                   help="a scenario file in the public AMoD benchmark JSON format: with a preset, the preset's "
                        "settings on this file; with a synthetic --scenario, this file with its own options")
    p.add_argument("--start-hour", type=float, default=None, help="benchmark files: episode start, hour of the day "
                   "(default: the preset's; a bare file 19; errors name the hours a file covers)")
    p.add_argument("--step-min", type=float, default=None, help="minutes per decision step Δ (default: the preset's; "
                   "a bare file 4; synthetic 3)")
    p.add_argument("--horizon", type=int, default=None, help="decision steps per episode T (default: the preset's; "
                   "synthetic 20)")
    p.add_argument("--demand-ratio", type=float, default=None, help="benchmark files: demand scaling r (default: "
                   "the preset's; a bare file 1)")
    p.add_argument("--beta", type=float, default=None, metavar="β",
                   help="operating cost per vehicle-minute β (a trip costs βΔ per step it takes; default: the "
                        "preset's; a bare file: 10 %% of its mean price per trip minute; synthetic 0.1)")
    p.add_argument("--network", default=None, choices=("topology", "complete"),
                   help="benchmark files: rebalance along the file's topology_graph and keep demand only on adjacent "
                        "and intra-region pairs (repository A, the benchmark) or between every pair (repository B); "
                        "default: the preset's (a bare file: complete)")
    p.add_argument("--fleet", type=int, default=None, help="fleet size (default: the scenario's; benchmark files: "
                   "⌊totalAcc/N⌋ per region)")
    p.add_argument("--benchmark-defect", action="append", default=[], choices=sorted(DEFECTS), metavar="NAME",
                   help="switch on one of the benchmark's defects, for comparisons with its numbers (repeatable): "
                        + "; ".join(f"{k}: {v}" for k, v in DEFECTS.items()))


#: θ form the fit commands learn by default: the cost terms chosen on held-out demonstrations
#: (README, AMoD: `time:10`, K = 0, convex); `--cost-terms none --K 2` is the paper's ReLU form
DEFAULT_COST_WINDOWS = 10


def add_theta_form_arguments(p, *, what: str = "θ") -> None:
    """--theta-form, --K and --cost-terms of `offline.amod fit` and `table1 --case amod` (one definition)."""
    p.add_argument("--theta-form", default=None, choices=("auto", "cost-terms", "relu"),
                   help=f"form of {what}: 'auto' fits the cost terms and the paper's ReLU form, compares them "
                        "with θ = 0 on the held-out demonstrations and keeps the best one that is no worse than "
                        "θ = 0 on any held-out metric (θ = 0 itself if none is), saying which and why; "
                        "'cost-terms' or 'relu': that form only. Default: auto, unless --K or --cost-terms is given")
    p.add_argument("--K", type=int, default=None,
                   help=f"ReLU terms of {what} (default 0 with cost terms, 2 with --cost-terms none)")
    p.add_argument("--cost-terms", default=None, metavar="SPEC",
                   help="linear cost terms of Eq. 25 learned with θ (offline.amod.cost_terms): 'time' (a cost per "
                        "vehicle-step on f and on g), 'time:B' (the same in B windows of the episode) or 'none' "
                        f"(only ReLU terms: the paper's form); default time:{DEFAULT_COST_WINDOWS} (at most one "
                        "window per step), chosen on held-out demonstrations (README, AMoD)")


def auto_theta_form(args: argparse.Namespace) -> bool:
    """True when the fit chooses θ's form on held-out data (--theta-form auto, or no form option given)."""
    form = getattr(args, "theta_form", None)
    if form is None:
        return args.K is None and args.cost_terms is None
    return form == "auto"


def auto_candidates(args: argparse.Namespace) -> list[tuple[str, int, str | None]]:
    """(name, K, cost terms) of the forms --theta-form auto fits and compares with θ = 0."""
    T = spec_from_args(args).horizon_steps
    cost = args.cost_terms if args.cost_terms not in (None, "none") else f"time:{min(DEFAULT_COST_WINDOWS, T)}"
    return [("cost terms", 0, cost), ("ReLU", args.K if args.K else 2, None)]


def theta_form(args: argparse.Namespace) -> tuple[int, str | None]:
    """(K, cost-term spec or None) from add_theta_form_arguments' options and the episode length."""
    form = getattr(args, "theta_form", None)
    if form == "relu":
        return (args.K if args.K else 2), None
    if form == "cost-terms":
        return 0, (args.cost_terms if args.cost_terms not in (None, "none") else
                   f"time:{min(DEFAULT_COST_WINDOWS, spec_from_args(args).horizon_steps)}")
    spec = args.cost_terms
    if spec is None:
        spec = f"time:{min(DEFAULT_COST_WINDOWS, spec_from_args(args).horizon_steps)}"
    elif str(spec).strip().lower() == "none":
        spec = None
    K = args.K if args.K is not None else (0 if spec else 2)
    if K < 0 or (K == 0 and not spec):
        raise ValueError(f"--K {K} with --cost-terms none learns nothing: use K >= 1 or cost terms")
    return K, spec


def spec_from_args(args: argparse.Namespace) -> ScenarioSpec:
    syn = args.scenario if args.scenario in SIZES else None
    preset = args.scenario if args.scenario in PRESETS else None
    return ScenarioSpec(synthetic=None if (args.scenario_json and not preset) else syn, seed=args.scenario_seed,
                        json=args.scenario_json, start_hour=args.start_hour, step_min=args.step_min,
                        horizon=args.horizon, demand_ratio=args.demand_ratio, fleet=args.fleet, preset=preset,
                        network=args.network, beta=args.beta, defects=tuple(sorted(set(args.benchmark_defect))))


def lower_factory(theta_path: str | None, K: int | None = None, interface: SubgoalInterface | None = None):
    """sim -> Eq25Fop with θ from theta_path (None: the unchanged FOP, K = 0) and the shortfall price of
    `interface` (None: Remark 3's large M)."""
    def build(sim):
        M = interface.eps_penalty(sim) if interface is not None else None
        if theta_path is None:
            return Eq25Fop(sim, K=0, eps_penalty=M)
        theta = load_theta(theta_path)
        if theta.case_study != "amod":
            raise ValueError(f"θ file {theta_path} is for case study '{theta.case_study}', not amod")
        fop = Eq25Fop(sim, K=max(theta.K, K or 0), eps_penalty=M)
        fop.set_theta(theta)
        return fop
    return build


def make_env(rank: int, kind: str, spec: ScenarioSpec, theta_path: str | None = None, seeds=RL_SEEDS,
             interface: SubgoalInterface = DEFAULT_INTERFACE):
    """A training environment (module-level, so sim.rl can build it in a worker process).

    kind: "bilevel" (the upper level over Eq. 25 with θ from theta_path, or θ = 0 without one, through
    the subgoal `interface`) or "e2e".
    """
    scenario = spec.build()
    if kind == "bilevel":
        return AmodBiLevelEnv(scenario, lower_factory(theta_path, interface=interface), seeds, interface=interface)
    if kind == "e2e":
        return AmodEndToEndEnv(scenario, seeds)
    raise ValueError(f"unknown AMoD environment kind {kind!r} (bilevel, e2e)")
