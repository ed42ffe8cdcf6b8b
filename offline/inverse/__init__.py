"""Inverse optimization of a lower-level FOP (Problem 11 of the paper), generic for every case study.

The per-sample generic form
---------------------------
Each expert decision t is one `InverseSample`: the forward problem around it, with the state
fixed (Eq. 5/10 with a quadratic stage cost),

    FOP_θ(t) = argmin_u  cᵀu + uᵀQu + Σ_j φ_j (q_jᵀu + uᵀR_j u) + Σ_k max(θ_kᵀu − ν_k, 0) + l‖u‖²
               s.t.  a + B u = x̂        (w, free)    m_eq equality rows: the subgoal (may be none)
                     H u ≤ b            (λ ≥ 0)      m_in inequality rows: bounds, network, safety
    and the expert action u (n,).

    field          shape             meaning
    c              (n,)              linear cost at this state
    Q              (n, n) | (n,)     quadratic cost (PSD; dense, scipy.sparse, or its diagonal; 0 for an LP)
    H, b           (m_in, n), (m_in,)   inequality rows (dense or scipy.sparse), or None
    B, a, xhat     (m_eq, n), (m_eq,), (m_eq,)   equality rows a + B u = x̂, or None
    u              (n,)              the expert action (must satisfy the rows)
    feature_lin    (J, n)            optional learned cost features: φ_j (q_jᵀu + uᵀR_j u)
    feature_quad   (J, n) | (J, n, n)   their quadratic parts R_j (diagonal or full)

What is learned: K ReLU terms (θ_k, ν_k) (the paper's d_θ, Eq. 10) and, when `features` is
given to fit_inverse, the weights φ_j of cost features the case study declares (e.g. the robot's
heading and input weights of Eq. 32a). φ enters stationarity (11c) and the gap (11d) linearly, so
the only bilinear terms of Problem 11 stay z·θ and z·ν. l > 0 keeps FOP_θ strongly convex
(Prop. 4: ‖u*_t − u_t‖ ≤ √(ε_t / λ_min(P))); a feature box may lower the quadratic weights only as
far as λ_min(Q + Σφ_j R_j + l·I) ≥ l (checked).

How a case study supplies it
----------------------------
An adapter in the case study's own package turns its data into InverseSamples and its fitted
result into its θ file; this package has no case-specific code:
    robot      offline/robot_data.py   Eq. 32 at the expert's state: Q, c from the tracking cost,
                                       H, b the bounds (32e–f) and obstacles (32g) linearised at
                                       the expert action (a supporting half-space); n = 2
    AMoD       offline/amod/           Eq. 25: u = (f, g) flows per edge (n ≈ 2|E|, up to ~600),
                                       Q = 0 (an LP, l > 0 small), network rows as sparse H/B
    inventory  offline/inventory/      Eq. 31: orders and shipments (n ≈ 20), Q = 0
Shapes may differ from sample to sample (rows), not in n. Large n should come with sparse H/B
and a diagonal (or sparse) Q: nothing here densifies them.

Modules (one job each)
----------------------
    data.py       InverseSample, Features, InverseFit; validation (errors name sample and field)
    highs.py      the HiGHS adapter (sparse LP/QP from arrays) and a vectorised row builder
    forward.py    FOP_θ: forward_solve, forward_solve_batch (block QPs, fallbacks), fop_objective
    dual.py       the dual function, best duals, duality gaps (the algebra of 11c–11d)
    problem11.py  Problem 11 in Pyomo, solved globally by SCIP (spatial branch-and-bound)
    scalable.py   the scalable method (subsample global solve + alternating HiGHS LPs)
    fitting.py    fit_inverse: screening, method dispatch, re-evaluated gaps
    metrics.py    Tables 4–5 metrics: cosine of stacked actions, mean L2, mean L1 (Manhattan)
"""
from .data import Features, InverseFit, InverseSample
from .dual import dual_function, duality_gaps
from .fitting import fit_inverse
from .forward import fop_objective, forward_solve, forward_solve_batch
from .metrics import action_metrics, cosine_similarity, mean_l2, mean_manhattan

__all__ = ["InverseSample", "InverseFit", "Features", "fit_inverse", "forward_solve", "forward_solve_batch",
           "duality_gaps", "dual_function", "fop_objective", "cosine_similarity", "action_metrics", "mean_l2",
           "mean_manhattan"]
