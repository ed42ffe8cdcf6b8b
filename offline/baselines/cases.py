"""What the baselines need of a network case study, from its public functions (no second FOP).

`ImitationCase` holds one case study's demonstrations in the form every lower-level designer uses:
the FOP's data (c, bounds) at each training demonstration with the expert's own subgoal, the
expert's decision x in the FOP's columns, the optional cost features of the θ form, and the
held-out demonstrations with a function that measures a θ there through the case's own
validation (offline.amod.fit.imitation, offline.inventory.fit.imitation_metrics: the deployed LP
at the held-out states and the expert's subgoals). For value approximation it also gives, per
demonstration, the next state the one-step model predicts (s⁺ = s₀ + M x) and the expert's
cost-to-go after its decision, and the one-step problem without a subgoal.

    amod_case(sim, train, held, K, cost_terms)        AMoD (Eq. 25), offline.amod.demos.Demos
    inventory_case(scenario, train, held, K)          inventory (Eq. 31), offline.inventory.fit demonstrations
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from hiopt_ros.control.theta import Theta
from offline.amod.cost_terms import parse_spec, term_matrix
from offline.amod.fit import imitation
from offline.amod.lower import Eq25Fop
from offline.inventory.env import InventoryEnv
from offline.inventory.fit import imitation_metrics
from offline.inventory.lower import InventoryFop

__all__ = ["ImitationCase", "OneStep", "amod_case", "inventory_case"]


@dataclass
class OneStep:
    """The one-step problem without a subgoal at one state: the FOP's data with the subgoal rows
    freed (and their relaxation columns fixed at 0), and the next state s⁺ = s0 + M x."""

    data: tuple            # (c, row_lo, row_hi, col_lo, col_hi)
    s0: np.ndarray         # (d,)
    M: sp.csr_matrix       # (d, n)


@dataclass
class ImitationCase:
    """One case study's demonstrations for the baselines (module docstring)."""

    name: str                                   # "amod" | "inventory"
    lp: object                                  # offline.lp_fop.ReluLpFop with the θ form's K slots
    data: list                                  # per training demonstration (c, row_lo, row_hi, col_lo, col_hi)
    x_expert: np.ndarray                        # (S, n)
    held_out: Callable[[object], dict]          # Theta (or None: θ = 0) → {column: action_metrics}
    theta_of: Callable[..., object]             # (alpha, beta, weights dict, provenance) → Theta
    one_step: Callable[[object], OneStep]       # a demonstration's state → its one-step problem
    train_states: list                          # the training demonstrations' states
    held_states: list                           # the held-out demonstrations' states
    held_expert: dict                           # {column: (S_held, ·) expert decisions}
    decision_columns: Callable[[np.ndarray], dict]   # x (n,) → {column: part of x}
    cost_to_go: np.ndarray                      # (S,) expert's cost after its decision (one-step cost excluded)
    step_index: np.ndarray                      # (S,) the step t of each training demonstration
    episode: np.ndarray                         # (S,) the episode (demand seed) of each training demonstration
    features: np.ndarray | None = None          # (S, n, p) cost features of the θ form
    weight_names: tuple = ()
    weight_bounds: tuple = (0.0, np.inf)
    seeds: dict = field(default_factory=dict)   # {"train": [...], "held_out": [...]}
    state_names: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- AMoD
def amod_case(sim, train, held, *, K: int, cost_terms: str | None) -> ImitationCase:
    """The AMoD case (Eq. 25) on MPC demonstrations `train` and `held` (offline.amod.demos.Demos)."""
    fop = Eq25Fop(sim, K=K)
    N = fop.N
    data = [fop.data(train.state(k), train.qhat[k]) for k in range(len(train))]
    x_e = np.array([fop.x_of(train.f[k], train.g[k]) for k in range(len(train))])
    names = tuple(parse_spec(cost_terms, sim.T)) if cost_terms else ()
    feats = (np.array([term_matrix(sim, names, int(t)).T for t in train.t]) if names else None)
    # AMoD's reward of a step is −cᵀx of Eq. 25 at ε = 0 (revenue − passenger and empty-trip costs)
    stage = np.array([d[0] @ x for d, x in zip(data, x_e)])
    ctg = _cost_after(stage, train.episode, train.t)
    M = sp.hstack([-fop.A_inc, sp.csr_matrix((N, N))], format="csr")

    def one_step(state) -> OneStep:
        c, rlo, rhi, clo, chi = fop.data(state, np.zeros(N))
        rhi = rhi.copy()
        rhi[:N] = np.inf                                # no subgoal: the reach-q̂ rows are free …
        chi = chi.copy()
        chi[fop.sl_eps] = 0.0                           # … and their relaxation ε is 0
        # s⁺: idle vehicles at t+1 in the one-step model (trips end within the step) plus the arrivals due
        return OneStep((c, rlo, rhi, clo, chi), state.idle + state.arrivals[0], M)

    def theta_of(alpha, beta, weights, provenance):
        return Theta(alpha=alpha, beta=beta, l=0.0, case_study="amod", input_names=fop.names,
                     cost_weights=weights, learned_weights=list(weights), provenance=provenance)

    return ImitationCase(
        name="amod", lp=fop.lp, data=data, x_expert=x_e, held_out=lambda th: imitation(sim, held, th),
        theta_of=theta_of, one_step=one_step, train_states=[train.state(k) for k in range(len(train))],
        held_states=[held.state(k) for k in range(len(held))], held_expert={"f": held.f, "g": held.g},
        decision_columns=lambda x: {"f": x[fop.sl_f], "g": x[fop.sl_g]}, cost_to_go=ctg,
        step_index=np.asarray(train.t), episode=np.asarray(train.seed), features=feats, weight_names=names,
        weight_bounds=(0.0, float(np.max(sim.price))),
        seeds={"train": sorted({int(s) for s in train.seed}), "held_out": sorted({int(s) for s in held.seed})},
        state_names=[f"idle[{i}]" for i in range(N)])


# ---------------------------------------------------------------------------------------------- inventory
def inventory_case(scenario, train: Sequence, held: Sequence, *, K: int, cost_terms: bool = False) -> ImitationCase:
    """The inventory case (Eq. 31) on MPC demonstrations (offline.inventory.fit.Demonstration lists).

    cost_terms: the θ form's Eq. 31 carries (31a)'s production and transport costs (InventoryFop's
    option, as in offline.inventory.fit). The value approximation's one-step problem always does
    (they are the stage's own costs)."""
    fop = InventoryFop(scenario, K=K, cost_terms=cost_terms)
    econ = InventoryFop(scenario, cost_terms=True).cost
    W, S, E, n = fop.W, fop.S, fop.E, fop.n
    data, x_e = [], []
    for d in train:
        w_hat, q_hat = fop.implied_subgoal(d.state, d.w, d.f)
        lo, hi = fop.row_bounds(d.state, w_hat, q_hat)
        data.append((fop.cost, lo, hi, fop.col_lo, fop.col_hi))
        x_e.append(fop.expert_x(d.state, d.w, d.f, w_hat, q_hat))
    x_e = np.array(x_e)
    rewards = _inventory_rewards(scenario, train)
    stage = x_e @ econ
    episode = np.array([d.seed for d in train])
    steps = np.array([d.state.t for d in train])
    # the cost after the decision: −(this and every later reward) minus what the one-step problem itself
    # charges for the decision (production and transport)
    ctg = _cost_after(-rewards, episode, steps) - rewards - stage
    sc = scenario
    Aout, Ain = sp.csr_matrix(sc.out_edges), sp.csr_matrix(sc.in_edges)

    def zeros(r, c):
        return sp.csr_matrix((r, c))

    M = sp.vstack([sp.hstack([sp.identity(W), -Aout, zeros(W, 2 * S + 2 * W)]),     # warehouses: + w − shipped
                   sp.hstack([zeros(S, W), Ain, zeros(S, 2 * S + 2 * W)])], format="csr")   # stores: + arriving
    n_eps = 2 * S + 2 * W

    def one_step(state) -> OneStep:
        lo, hi = fop.row_bounds(state, np.zeros(W), np.zeros(S))
        lo, hi = lo.copy(), hi.copy()
        lo[:S], hi[:S] = -np.inf, np.inf                 # (31b) and (31f), the subgoal rows, are free …
        lo[-W:], hi[-W:] = -np.inf, np.inf
        # (31c)–(31e) at a state that already breaks them (the SCIM env keeps stock above capacity at a
        # penalty): relaxed just enough that doing nothing (x = 0) stays feasible
        hi[S:2 * S + 2 * W] = np.maximum(hi[S:2 * S + 2 * W], 0.0)
        chi = fop.col_hi.copy()
        chi[n - n_eps:] = 0.0                            # … and their deviations ε± are 0
        return OneStep((econ, lo, hi, fop.col_lo, chi), np.r_[state.stock_w, state.stock_after_sales], M)

    def held_out(theta):
        f2 = InventoryFop(scenario, K=max(theta.K if theta is not None else 0, 1), cost_terms=cost_terms)
        if theta is not None:
            f2.set_theta(theta.alpha, theta.beta)
        return imitation_metrics(f2, held)

    def theta_of(alpha, beta, weights, provenance):
        return Theta(alpha=alpha, beta=beta, l=0.0, case_study="inventory", input_names=list(fop.names),
                     cost_weights=weights, learned_weights=list(weights), provenance=provenance)

    return ImitationCase(
        name="inventory", lp=fop.lp, data=data, x_expert=x_e, held_out=held_out, theta_of=theta_of,
        one_step=one_step, train_states=[d.state for d in train], held_states=[d.state for d in held],
        held_expert={"flows": np.array([d.f for d in held]), "all": np.array([np.r_[d.w, d.f] for d in held])},
        decision_columns=lambda x: {"flows": x[W:W + E], "all": x[:W + E]}, cost_to_go=ctg,
        step_index=steps, episode=episode,
        seeds={"train": sorted({d.seed for d in train}), "held_out": sorted({d.seed for d in held})},
        state_names=[f"stock_w[{m}]" for m in sc.warehouse_names] + [f"stock_s[{m}]" for m in sc.store_names])


def _inventory_rewards(scenario, demos) -> np.ndarray:
    """The environment's reward of every demonstration's decision (replaying each seed's episode)."""
    env = InventoryEnv(scenario)
    out = np.zeros(len(demos))
    current = None
    for k, d in enumerate(demos):
        if d.seed != current or d.state.t == 0:
            env.reset(seed=d.seed)
            current = d.seed
        if not _same_state(env.state(), d.state):
            raise ValueError(f"inventory demonstrations: replaying seed {d.seed} does not reach the recorded "
                             f"state of step {d.state.t}; recollect them")
        _, r, _, _, _ = env.step(np.r_[d.w, d.f])
        out[k] = r
    return out


def _same_state(a, b) -> bool:
    """Two states (dataclasses of numbers and arrays) are equal up to round-off."""
    import dataclasses

    return all(np.allclose(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def _cost_after(stage_cost: np.ndarray, episode: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Σ of stage_cost over the later steps of the same episode (0 after the last step)."""
    out = np.zeros(len(stage_cost))
    for e in np.unique(episode):
        idx = np.flatnonzero(episode == e)
        idx = idx[np.argsort(t[idx])]
        later = np.cumsum(stage_cost[idx][::-1])[::-1]
        out[idx] = np.r_[later[1:], 0.0]
    return out
