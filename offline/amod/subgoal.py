"""The upper level's subgoal interface (AMoD): how an action a ∈ [−1, 1]^N becomes Eq. 25's subgoal q̂,
and what a subgoal shortfall costs there.

The upper level's observation and action are this project's (the benchmark's environment presets
stay exact); Eq. 25 is one statement for every form (offline.amod.lower.Eq25Fop):
q − A(f + g) + ε ≥ q̂ with ε priced M per vehicle. Σ_i (q − A(f + g))_i = Σq for any flows, so a
q̂ with Σq̂ = Σq leaves no slack: every region it asks more of must be filled (one hop per step on
the topology network), or ε pays M — and with M = 10 × the highest price (694 on NYC Brooklyn)
Eq. 25 then even keeps vehicles from passengers to meet the subgoal.

Forms (--subgoal-form):

* ``relative``: q̂ = q + s·(a − ā), s = scale · fleet/N vehicles. Action 0 keeps the
  idle distribution of the step (each region's departures are replaced from its neighbours, as
  far as M makes it worth it); the learned part is a bounded change that sums to 0.
* ``absolute``: q̂ = softmax(κ·a) · Σq, κ = LOGIT_SCALE (the previous sessions' form: the whole
  desired distribution).
* ``floor`` (default: it measured best, docs/amod.md): the benchmark's own §9.1 form,
  w = softmax(κ·a), â = ⌊w · M_idle⌋ of the idle fleet after matching, "≥" so that the floors'
  surplus stays put. In Eq. 25's one-step model the passengers' destinations count too:
  q̂ = D·g₀ + ⌊w · Σ(q − G·g₀)⌋, g₀ the passenger flows Eq. 25 chooses without a subgoal (one
  extra LP solve per step).

Shortfall price (--shortfall-price X): M = X · (the operating cost of one vehicle-step, βΔ on the
benchmark files: 2 on NYC Brooklyn), so X = 2.5 prices a missing vehicle between a 2-step and a
3-step rebalancing hop; ``inf`` is Remark 3's large M (10 × the highest price, the earlier default).
Measured with fixed subgoals on evaluation seeds 10000–10009 (docs/amod.md).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from offline.amod.sim import AmodSim, AmodState

__all__ = ["SubgoalInterface", "FORMS", "LOGIT_SCALE", "DEFAULT_INTERFACE", "add_interface_arguments",
           "interface_from_args", "softmax", "vehicle_step_cost"]

FORMS = ("relative", "absolute", "floor")
#: κ of softmax(κ·a): the upper level can ask for region shares up to e^{2κ} ≈ 400× apart
LOGIT_SCALE = 3.0


def softmax(action, logit_scale: float = LOGIT_SCALE) -> np.ndarray:
    z = logit_scale * np.clip(np.asarray(action, float), -1.0, 1.0)
    w = np.exp(z - z.max())
    return w / w.sum()


def vehicle_step_cost(sim: AmodSim) -> float:
    """The operating cost of one vehicle for one step (βΔ on benchmark files): the median over the
    rebalancing edges of cost / steps."""
    return float(np.median(sim.reb_cost / np.maximum(sim.reb_steps, 1)))


@dataclass(frozen=True)
class SubgoalInterface:
    """How the upper level's action becomes q̂ (module docstring). Plain and picklable."""
    form: str = "floor"
    #: relative form: the change per unit of action, in mean vehicles per region (fleet/N)
    scale: float = 0.5
    #: M in vehicle-steps of operating cost; math.inf: Remark 3's large M (10 × the highest price)
    shortfall_price: float = 2.5

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"subgoal form must be one of {', '.join(FORMS)}, got {self.form!r}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"the relative subgoal's scale must be a finite number > 0, got {self.scale}")
        if not self.shortfall_price > 0:
            raise ValueError(f"the shortfall price must be > 0 (or inf), got {self.shortfall_price}")

    def eps_penalty(self, sim: AmodSim) -> float | None:
        """Eq. 25's M for this simulator (None: Eq25Fop's default, the large M)."""
        return None if math.isinf(self.shortfall_price) else self.shortfall_price * vehicle_step_cost(sim)

    def subgoal(self, sim: AmodSim, state: AmodState, action, lower=None) -> np.ndarray:
        """q̂ (N,) of `action` at `state`; the floor form asks `lower` for its passenger flows without a subgoal."""
        a = np.clip(np.asarray(action, float).reshape(-1), -1.0, 1.0)
        q = state.idle.astype(float)
        if self.form == "relative":
            return q + self.scale * sim.sc.fleet / sim.N * (a - a.mean())
        w = softmax(a)
        if self.form == "absolute":
            return w * q.sum()
        g0 = lower(state, np.zeros(sim.N))[1]
        return (np.bincount(sim.od[:, 1], weights=g0, minlength=sim.N)
                + np.floor(w * (q.sum() - g0.sum()) + 1e-9))

    def bc_target(self, sim: AmodSim, idle, qhat, g) -> np.ndarray:
        """The behaviour-cloning label of an expert's implied subgoal q̂ (with its passenger flows g), per row:
        relative: the action a* = clip((q̂ − q)/s, −1, 1) (mean squared error); absolute and floor: the
        distribution w* the softmax should give (cross-entropy)."""
        idle, qhat, g = np.atleast_2d(idle), np.atleast_2d(qhat), np.atleast_2d(g)
        if self.form == "relative":
            return np.clip((qhat - idle) / (self.scale * sim.sc.fleet / sim.N), -1.0, 1.0)
        if self.form == "floor":
            dest = np.zeros((len(g), sim.N))
            for k in range(len(g)):
                dest[k] = np.bincount(sim.od[:, 1], weights=g[k], minlength=sim.N)
            qhat = np.maximum(qhat - dest, 0.0)
        return qhat / np.maximum(qhat.sum(1, keepdims=True), 1e-9)

    @property
    def cross_entropy(self) -> bool:
        return self.form != "relative"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shortfall_price"] = "inf" if math.isinf(self.shortfall_price) else self.shortfall_price
        return d

    def describe(self) -> str:
        m = "Remark 3's large M" if math.isinf(self.shortfall_price) else f"M = {self.shortfall_price:g} vehicle-steps"
        form = f"relative (scale {self.scale:g} × fleet/N)" if self.form == "relative" else self.form
        return f"subgoal form {form}, shortfall price {m}"


DEFAULT_INTERFACE = SubgoalInterface()


def add_interface_arguments(p) -> None:
    """--subgoal-form, --subgoal-scale, --shortfall-price (one definition for train and table1)."""
    p.add_argument("--subgoal-form", default=DEFAULT_INTERFACE.form, choices=FORMS,
                   help="how the upper level's action becomes Eq. 25's subgoal q̂: 'floor' (default; the "
                        "benchmark's §9.1: ⌊w·M⌋ of the idle fleet after matching, a surplus stays put), 'relative' "
                        "(q̂ = q + a bounded change summing to 0, action 0 keeps the idle distribution) or 'absolute' "
                        "(q̂ = softmax(κa)·Σq, the earlier form)")
    p.add_argument("--subgoal-scale", type=float, default=DEFAULT_INTERFACE.scale,
                   help="relative form: vehicles per unit of action, × fleet/N (default 0.5)")
    p.add_argument("--shortfall-price", type=float, default=DEFAULT_INTERFACE.shortfall_price, metavar="X",
                   help="Eq. 25's price M of a missing subgoal vehicle, in vehicle-steps of operating cost (βΔ; "
                        "default 2.5: between a 2- and a 3-step rebalancing hop); 'inf': Remark 3's large M "
                        "(10 × the highest price, the earlier default)")


def interface_from_args(args) -> SubgoalInterface:
    return SubgoalInterface(form=getattr(args, "subgoal_form", DEFAULT_INTERFACE.form),
                            scale=getattr(args, "subgoal_scale", DEFAULT_INTERFACE.scale),
                            shortfall_price=getattr(args, "shortfall_price", DEFAULT_INTERFACE.shortfall_price))
