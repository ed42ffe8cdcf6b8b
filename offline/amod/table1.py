"""Table 1 (left) of the paper, AMoD rebalancing: the case-study side of offline.experiments.

prepare() builds what the four methods need, each step cached under
<work_dir>/<scenario key>/ so that a second run reuses it (delete a file to redo that step):

    demos.npz            MPC demonstrations, seeds DEMO_SEED0 … (+ held_out.npz, seeds HELD_OUT_SEED0 …)
    theta.yaml           θ fitted on demos.npz (Problem 11), validated on held_out.npz (provenance)
    rl/<method>/         SB3 runs of the upper levels and of end-to-end RL (sim.rl: model.zip,
                         learning curve, TensorBoard, train.json with steps/s)
    imitation.md         Table 5-style imitation of MPC on the held-out states (θ = 0 vs fitted θ)
    theta_cvxpylayers.yaml   (row Bi-level-cvxpy) θ of the same form fitted by cvxpylayers on demos.npz
                         (offline.baselines.run.fit_cvxpylayers; + its .json inputs and loss curve)

Issue 19's rows (named in --methods, or 'all'): Bi-level-cvxpy, an RL upper level trained exactly
like Bi-level-learned over the lower level whose θ cvxpylayers fitted; Value approximation, the
whole policy of offline.baselines.value (no upper level), fitted on the same demonstrations when the
first episode needs it (HiGHS objects do not pickle: it is built where the episodes run).

run_episode() evaluates one method on one demand seed (offline.amod.policies.run_episode).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

from hiopt_ros.control.theta import load_theta, save_theta
from offline.amod import pipeline
from offline.amod.config import (
    DEMO_SEED0,
    HELD_OUT_SEED0,
    RL_SEEDS,
    add_scenario_arguments,
    add_theta_form_arguments,
    auto_candidates,
    auto_theta_form,
    lower_factory,
    spec_from_args,
    theta_form,
)
from offline.amod.mpc import AmodMpc
from offline.amod.policies import BiLevelPolicy, EndToEndPolicy, MpcPolicy, OneStepPolicy, SubgoalPolicy, run_episode
from offline.amod.sim import AmodSim
from offline.amod.subgoal import add_interface_arguments, interface_from_args
from offline.baselines.__main__ import write_loss_curve
from offline.baselines.cases import amod_case
from offline.baselines.run import Prepared as BaselinePrepared
from offline.baselines.run import add_budget_arguments, fit_cvxpylayers, fit_value, layer_configs, value_grid
from offline.experiments import METHODS, Episode, Prepared

__all__ = ["CASE", "AmodTable1"]


@dataclass
class _State:
    spec: object
    theta_path: Path
    interface: object = None
    cvx_theta_path: Path | None = None
    demos: object = None
    held: object = None
    value_grid: tuple = ()
    models: dict = field(default_factory=dict)
    sims: dict = field(default_factory=dict)
    policies: dict = field(default_factory=dict)


#: diagnostic rows (--methods ...): the lower level alone, given MPC's own subgoal at every step
#: (its implied q̂ = q − A(f + g)): what each lower level makes of ideal subgoals, without RL
ORACLE_UNCHANGED = "Unchanged FOP + MPC subgoals"
ORACLE_LEARNED = "Learned FOP + MPC subgoals"
#: and a non-clairvoyant full-horizon optimiser (future requests replaced by their rates)
CE_MPC = "MPC with expected demand"
#: issue 19: the other two ways of designing the lower level (offline.baselines)
CVXPY = "Bi-level-cvxpy"
VALUE = "Value approximation"


class AmodTable1:
    name = "amod"
    title = "Table 1 (left): AMoD vehicle rebalancing"
    methods = METHODS
    optional_methods = (CVXPY, VALUE, CE_MPC, ORACLE_UNCHANGED, ORACLE_LEARNED)
    trained_methods = tuple(METHODS[1:]) + (CVXPY,)

    def add_arguments(self, p) -> None:
        add_scenario_arguments(p)
        p.add_argument("--demo-episodes", type=int, default=20,
                       help="MPC demonstration episodes for the fit (default 20)")
        p.add_argument("--held-out-episodes", type=int, default=5, help="MPC episodes to validate θ on (default 5)")
        p.add_argument("--fit-episodes", type=int, default=None,
                       help="fit θ on the first N demonstration episodes (default: all of them)")
        add_theta_form_arguments(p, what="the learned lower level")
        p.add_argument("--rho", type=float, default=1e-2, help="ρ of Problem 11 (default 1e-2)")
        p.add_argument("--fit-time-limit", type=float, default=900.0, help="inverse fit time limit, s (default 900)")
        p.add_argument("--theta", type=Path, default=None,
                       help="use this θ file instead of fitting one (must be for this scenario's network)")
        p.add_argument("--rl-steps", type=int, default=200_000,
                       help="env steps of each RL training run (default 200000; ~0.5–1 h each on 2 cores); 0: the "
                            "behaviour-cloned policies without PPO (needs --bc-steps > 0)")
        p.add_argument("--rl-algo", default="ppo", choices=("ppo", "sac"), help="SB3 algorithm (default ppo)")
        p.add_argument("--rl-seed", type=int, default=0, help="seed of the RL training runs")
        p.add_argument("--bc-steps", type=int, default=3000,
                       help="behaviour-cloning warm start of every RL policy from the MPC demonstrations "
                            "(Adam steps; 0: RL from scratch)")
        p.add_argument("--policy-net", default="itemwise", choices=("itemwise", "mlp"),
                       help="RL policy network: shared over regions/pairs (default) or SB3's MLP")
        add_interface_arguments(p)
        add_budget_arguments(p)

    # ---------------------------------------------------------------- preparation
    def prepare(self, args, work_dir, log, train_seed: int | None = None) -> Prepared:
        """Demonstrations, θ (shared by every training seed) and the RL policies of `train_seed`
        (default --rl-seed), cached under <work_dir>/<scenario key>/rl/<method>[_seed<k>]/ (seed 0: no suffix)."""
        rl_seed = int(args.rl_seed if train_seed is None else train_seed)

        spec = spec_from_args(args)
        root = Path(work_dir) / spec.key
        root.mkdir(parents=True, exist_ok=True)
        scenario = spec.build()
        log(f"[amod] scenario {scenario.summary()}")
        demos = pipeline.ensure_demos(spec, root / "demos.npz", DEMO_SEED0, args.demo_episodes, log)
        held = pipeline.ensure_demos(spec, root / "held_out.npz", HELD_OUT_SEED0, args.held_out_episodes, log)
        theta_path = args.theta or root / "theta.yaml"
        if args.theta is None and auto_theta_form(args):
            pipeline.ensure_theta_auto(spec, demos, held, theta_path, candidates=auto_candidates(args), rho=args.rho,
                                       time_limit_s=args.fit_time_limit, log=log, fit_episodes=args.fit_episodes)
        elif args.theta is None:
            K, cost_terms = theta_form(args)
            pipeline.ensure_theta(spec, demos, held, theta_path, K=K, rho=args.rho,
                                  time_limit_s=args.fit_time_limit, log=log, fit_episodes=args.fit_episodes,
                                  cost_terms=cost_terms)
        imitation_md = pipeline.ensure_imitation(spec, held, theta_path, root / "imitation.md", log)
        st = _State(spec=spec, theta_path=Path(theta_path), interface=interface_from_args(args), demos=demos,
                    held=held)
        prov = load_theta(theta_path).provenance
        notes = [f"scenario: {scenario.summary()}",
                 f"θ: {theta_path} (K={load_theta(theta_path).K}, cost terms {prov.get('cost_terms')}, "
                 f"ρ={prov.get('rho')}, fitted on {prov.get('samples')} MPC samples, demand seeds "
                 f"{prov.get('demo_seeds')})",
                 f"bi-level upper levels: {st.interface.describe()}"]
        chosen = ([m.strip() for m in args.methods.split(",")] if args.methods and args.methods != "all"
                  else self.methods + (self.optional_methods if args.methods == "all" else ()))
        methods = [m for m in self.methods + self.optional_methods if m in chosen]
        if CVXPY in methods:
            st.cvx_theta_path = _ensure_cvxpylayers_theta(args, spec, root, demos, held, Path(theta_path), log)
            notes.append(f"{CVXPY}: θ fitted by cvxpylayers on the same demonstrations, {st.cvx_theta_path}")
        if VALUE in methods:
            st.value_grid = tuple(value_grid(args))
            notes.append(f"{VALUE}: V fitted on the same demonstrations (offline.baselines.value; ranks "
                         f"{args.ranks}, λ {args.regs}, chosen on the last training episode)")
        for method in methods:
            if method not in self.trained_methods:
                continue
            out = root / "rl" / (pipeline.method_dir(method) + (f"_seed{rl_seed}" if rl_seed else ""))
            lower_theta = st.cvx_theta_path if method == CVXPY else theta_path
            model, info = pipeline.ensure_policy(spec, method, out, lower_theta, steps=args.rl_steps,
                                                 algo=args.rl_algo, seed=rl_seed, log=log, bc_demos=demos,
                                                 bc_steps=args.bc_steps, network=args.policy_net,
                                                 interface=st.interface)
            st.models[method] = model
            warm = f"BC warm start ({args.bc_steps} steps on {len(demos)} MPC samples) + " if args.bc_steps else ""
            notes.append(f"{method}: {warm}{args.rl_algo.upper()} {info.get('env_steps', '?')} env steps in "
                         f"{info.get('wall_s', float('nan')):.0f} s ({info.get('train_steps_per_s', float('nan')):.0f} "
                         f"steps/s), {out}/model.zip")
        notes.append(f"imitation of MPC on held-out states: {imitation_md}")
        train_seeds = (list(range(DEMO_SEED0, DEMO_SEED0 + args.demo_episodes))
                       + list(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + args.held_out_episodes)) + list(RL_SEEDS))
        return Prepared(state=st, train_seeds=train_seeds, notes=notes)

    # ---------------------------------------------------------------- evaluation
    def _policy(self, st: _State, method: str):
        if method not in st.policies:
            sim = AmodSim(st.spec.build())
            if method == "MPC":
                pol = MpcPolicy(sim)
            elif method == CE_MPC:
                pol = MpcPolicy(sim, knowledge="expected")
            elif method in (ORACLE_UNCHANGED, ORACLE_LEARNED):
                mpc = AmodMpc(sim)
                lower = lower_factory(str(st.theta_path) if method == ORACLE_LEARNED else None,
                                      interface=st.interface)(sim)

                def mpc_subgoal(state, sim=sim, mpc=mpc, lower=lower):
                    d = mpc.decide(state)
                    f, g, _ = sim.clip(d.f, d.g)
                    return lower.implied_subgoal(state, f, g)
                pol = SubgoalPolicy(mpc_subgoal, lower)
            elif method == "End-to-end RL":
                pol = EndToEndPolicy(sim, st.models[method])
            elif method == VALUE:
                pol = _value_policy(st, sim)
            else:
                theta = {"Bi-level-learned": str(st.theta_path), CVXPY: str(st.cvx_theta_path)}.get(method)
                pol = BiLevelPolicy(sim, st.models[method], lower_factory(theta, interface=st.interface)(sim),
                                    st.interface)
            st.policies[method] = (sim, pol)
        return st.policies[method]

    def run_episode(self, prepared: Prepared, method: str, seed: int) -> Episode:
        sim, pol = self._policy(prepared.state, method)
        r = run_episode(sim, pol, seed)
        return Episode(reward=r.reward, served_demand=r.served, decision_times_s=r.decision_times_s,
                       extra={"requests": r.requests, "rebalancing_cost": r.totals["reb_cost"]})


def _ensure_cvxpylayers_theta(args, spec, root: Path, demos, held, inverse_theta: Path, log) -> Path:
    """θ of the inverse fit's form (its K and cost terms) fitted by cvxpylayers on the same demonstrations
    (offline.baselines.run.fit_cvxpylayers, the budget options of add_budget_arguments), cached in
    root/theta_cvxpylayers.yaml next to a .json of its inputs (reused when they are the same)."""
    inv = load_theta(inverse_theta)
    K, cost_terms = int(inv.K), inv.provenance.get("cost_terms") or None
    configs = layer_configs(args, seed=0)
    path = root / "theta_cvxpylayers.yaml"
    inputs = {"demos_sha256": demos.meta.get("sha256"), "held_out_sha256": held.meta.get("sha256"), "K": K,
              "cost_terms": cost_terms, "configs": [asdict(c) for c in configs]}
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == json.loads(json.dumps(inputs)):
        log(f"[amod] reusing {path} (cvxpylayers, K = {K}, cost terms {cost_terms})")
        return path
    log(f"[amod] cvxpylayers fit of θ (K = {K}, cost terms {cost_terms}) on {len(demos)} MPC samples → {path}")
    case = amod_case(AmodSim(spec.build()), demos, held, K=K, cost_terms=cost_terms)
    res = fit_cvxpylayers(BaselinePrepared(case=case, root=root, args=SimpleNamespace(case="amod"), K=K,
                                           cost_terms=cost_terms), configs, log)
    theta, fit = res.artefact
    save_theta(path, theta)
    write_loss_curve(path.with_suffix(""), fit.loss, f"cvxpylayers fit (amod, {spec.key})")
    meta.write_text(json.dumps(inputs, indent=2) + "\n")
    log(f"[amod]   held-out imitation: f cosine {res.held_out['f']['cosine']:.3f}, g cosine "
        f"{res.held_out['g']['cosine']:.3f}; {res.fit_time_s:.0f} s")
    return path


def _value_policy(st: _State, sim):
    """Value approximation as a whole policy, fitted here (HiGHS objects are built where episodes run)."""
    case = amod_case(sim, st.demos, st.held, K=0, cost_terms=None)
    res = fit_value(BaselinePrepared(case=case, root=Path("."), args=SimpleNamespace(case="amod"), K=0,
                                     cost_terms=None), *st.value_grid, log=lambda msg: None)
    return OneStepPolicy(case, res.artefact[0])


CASE = AmodTable1()
