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

from offline.amod.scenario import SIZES, AmodScenario, load_benchmark_json, synthetic

__all__ = ["ScenarioSpec", "DEMO_SEED0", "HELD_OUT_SEED0", "RL_SEEDS", "make_env", "add_scenario_arguments",
           "spec_from_args", "lower_factory"]

DEMO_SEED0 = 0
HELD_OUT_SEED0 = 500
RL_SEEDS = range(1000, 10_000)


@dataclass(frozen=True)
class ScenarioSpec:
    """Plain, picklable description of a scenario: a synthetic size, or a benchmark JSON file."""
    synthetic: str | None = "medium"
    seed: int = 0
    json: str | None = None
    start_hour: float = 7.0
    step_min: float = 3.0
    horizon: int = 20
    demand_ratio: float = 1.0
    fleet: int | None = None

    def build(self) -> AmodScenario:
        if self.json:
            return load_benchmark_json(self.json, start_hour=self.start_hour, step_min=self.step_min,
                                       horizon=self.horizon, demand_ratio=self.demand_ratio, fleet=self.fleet)
        return synthetic(self.synthetic or "medium", self.seed, horizon=self.horizon, step_min=self.step_min,
                         fleet=self.fleet)

    @property
    def key(self) -> str:
        """A folder name for this scenario's artefacts (demonstrations, θ, policies)."""
        if self.json:
            base = f"{Path(self.json).stem}-h{self.start_hour:g}-r{self.demand_ratio:g}"
        else:
            base = f"synthetic-{self.synthetic}-s{self.seed}"
        extra = f"-T{self.horizon}-dt{self.step_min:g}" + (f"-fleet{self.fleet}" if self.fleet else "")
        return base + extra

    def to_dict(self) -> dict:
        return asdict(self)


def add_scenario_arguments(p) -> None:
    p.add_argument("--scenario", default="medium", choices=sorted(SIZES),
                   help="synthetic scenario size (default medium: 16 regions; small: 10 regions)")
    p.add_argument("--scenario-seed", type=int, default=0, help="seed of the synthetic scenario's geography and rates")
    p.add_argument("--scenario-json", default=None,
                   help="a scenario in the public AMoD benchmark JSON format instead of a synthetic one")
    p.add_argument("--start-hour", type=float, default=7.0, help="JSON scenarios: episode start (hour of the day)")
    p.add_argument("--step-min", type=float, default=3.0, help="minutes per decision step (default 3)")
    p.add_argument("--horizon", type=int, default=20, help="decision steps per episode T (default 20)")
    p.add_argument("--demand-ratio", type=float, default=1.0, help="JSON scenarios: demand scaling")
    p.add_argument("--fleet", type=int, default=None, help="fleet size (default: the scenario's)")


#: θ form the fit commands learn by default: the cost terms chosen on held-out demonstrations
#: (README, AMoD: `time:10`, K = 0, convex); `--cost-terms none --K 2` is the paper's ReLU form
DEFAULT_COST_WINDOWS = 10


def add_theta_form_arguments(p, *, what: str = "θ") -> None:
    """--K and --cost-terms of `offline.amod fit` and `table1 --case amod` (one definition)."""
    p.add_argument("--K", type=int, default=None,
                   help=f"ReLU terms of {what} (default 0 with cost terms, 2 with --cost-terms none)")
    p.add_argument("--cost-terms", default=None, metavar="SPEC",
                   help="linear cost terms of Eq. 25 learned with θ (offline.amod.cost_terms): 'time' (a cost per "
                        "vehicle-step on f and on g), 'time:B' (the same in B windows of the episode) or 'none' "
                        f"(only ReLU terms: the paper's form); default time:{DEFAULT_COST_WINDOWS} (at most one "
                        "window per step), chosen on held-out demonstrations (README, AMoD)")


def theta_form(args: argparse.Namespace) -> tuple[int, str | None]:
    """(K, cost-term spec or None) from add_theta_form_arguments' options and the episode length."""
    spec = args.cost_terms
    if spec is None:
        spec = f"time:{min(DEFAULT_COST_WINDOWS, args.horizon)}"
    elif str(spec).strip().lower() == "none":
        spec = None
    K = args.K if args.K is not None else (0 if spec else 2)
    if K < 0 or (K == 0 and not spec):
        raise ValueError(f"--K {K} with --cost-terms none learns nothing: use K >= 1 or cost terms")
    return K, spec


def spec_from_args(args: argparse.Namespace) -> ScenarioSpec:
    return ScenarioSpec(synthetic=None if args.scenario_json else args.scenario, seed=args.scenario_seed,
                        json=args.scenario_json, start_hour=args.start_hour, step_min=args.step_min,
                        horizon=args.horizon, demand_ratio=args.demand_ratio, fleet=args.fleet)


def lower_factory(theta_path: str | None, K: int | None = None):
    """sim -> Eq25Fop with θ from theta_path (None: the unchanged FOP, K = 0)."""
    def build(sim):
        from offline.amod.lower import Eq25Fop
        if theta_path is None:
            return Eq25Fop(sim, K=0)
        from hiopt_ros.control.theta import load_theta
        theta = load_theta(theta_path)
        if theta.case_study != "amod":
            raise ValueError(f"θ file {theta_path} is for case study '{theta.case_study}', not amod")
        fop = Eq25Fop(sim, K=max(theta.K, K or 0))
        fop.set_theta(theta)
        return fop
    return build


def make_env(rank: int, kind: str, spec: ScenarioSpec, theta_path: str | None = None, seeds=RL_SEEDS):
    """A training environment (module-level, so offline.rl can build it in a worker process).

    kind: "bilevel" (the upper level over Eq. 25 with θ from theta_path, or θ = 0 without one) or "e2e".
    """
    from offline.amod.envs import AmodBiLevelEnv, AmodEndToEndEnv

    scenario = spec.build()
    if kind == "bilevel":
        return AmodBiLevelEnv(scenario, lower_factory(theta_path), seeds)
    if kind == "e2e":
        return AmodEndToEndEnv(scenario, seeds)
    raise ValueError(f"unknown AMoD environment kind {kind!r} (bilevel, e2e)")
