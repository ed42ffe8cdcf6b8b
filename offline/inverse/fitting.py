"""fit_inverse: the one entry point of Problem (11) for every case study (method dispatch, sample
screening, re-evaluated gaps)."""
from __future__ import annotations

import time
import warnings
from typing import Sequence

import numpy as np

from .data import Features, InverseFit, InverseSample, check_feature_box, check_l, objective, prepare_all, prop4_bound
from .dual import final_gaps
from .forward import solve_stack
from .problem11 import fit_global
from .scalable import fit_alternating, fit_convex
from .stack import Stack

#: T·K at or below which method="auto" uses the global solver (Problem 11 with SCIP).
AUTO_GLOBAL_MAX_TK = 200
#: and at or below this many samples (SCIP's spatial B&B grows fast with T).
AUTO_GLOBAL_MAX_T = 100


def fit_inverse(samples: Sequence[InverseSample], K: int, l: float = 1e-2, rho: float = 1e-3,
                method: str = "auto", time_limit_s: float = 300.0, mip_gap: float = 1e-4,
                theta_bound: float = 10.0, seed: int = 0, progress: bool = True, *,
                nu_bound: float | None = None, dual_bound: float | None = None, restarts: int = 4,
                max_iter: int = 30, tol: float = 1e-4, subsample: int = 30,
                features: Features | None = None, screen: bool = True, node_limit: int | None = None) -> InverseFit:
    """Fit K ReLU terms (θ_k, ν_k) — and the weights φ of `features` — so that every expert action is
    (nearly) optimal for FOP_θ.

    K = 0 with features: Problem 11 is convex (no bilinear term), solved as one LP ("convex").
    method: "global" (Problem 11, SCIP spatial branch-and-bound, time_limit_s and relative mip_gap),
    node_limit: also stop SCIP (the global fit, or the alternating method's subsample solve) after
    this many branch-and-bound nodes (status "node_limit"): a budget that, unlike time, gives the
    same result on a loaded machine.
    "alternating" (scalable: Problem 11 solved globally on `subsample` random samples plus
    `restarts` random starts, each refined on all samples by alternating convex HiGHS solves until
    the relative improvement is below `tol`; see scalable.py), or "auto" (global when
    T ≤ AUTO_GLOBAL_MAX_T and T·K ≤ AUTO_GLOBAL_MAX_TK, else alternating).
    Box bounds: θ ∈ [−theta_bound, theta_bound], ν ∈ ±nu_bound (default theta_bound·max‖u_t‖₁ + 1),
    λ ∈ [0, dual_bound], w ∈ ±dual_bound (default from (11c)), φ in features' box.
    screen: first solve every sample's forward problem at θ = 0 (φ = 0 clipped to its box); a
    sample whose forward problem cannot be solved is dropped (listed in InverseFit.dropped, with
    indices into `samples`) instead of aborting the fit. Samples whose forward problem fails at the
    fitted θ are dropped from the reported gaps the same way.
    The returned gaps are re-evaluated at the returned (θ, ν, φ) with the best (11c)-feasible duals.
    """
    J = features.J if features is not None else 0
    if not isinstance(K, (int, np.integer)) or K < (0 if J else 1):
        raise ValueError(f"K must be an integer ≥ {0 if J else 1}, got {K!r}")
    l = check_l(l)
    if not rho >= 0:
        raise ValueError(f"rho must be ≥ 0, got {rho}")
    if not theta_bound > 0:
        raise ValueError(f"theta_bound must be > 0, got {theta_bound}")
    if method not in ("auto", "global", "alternating"):
        raise ValueError(f"method must be 'auto', 'global' or 'alternating', got {method!r}")
    if isinstance(samples, InverseSample):
        samples = [samples]
    samples = list(samples)
    preps = prepare_all(samples, l, check_feasible=True, J=J)
    if J:
        check_feature_box(preps, features, features.l_min if features.l_min is not None else l)
    t0 = time.perf_counter()
    index = np.arange(len(preps))
    dropped: list[int] = []
    st = Stack.from_preps(preps)
    if screen:
        phi0 = np.clip(np.zeros(J), features.lo, features.hi) if J else np.zeros(0)
        u0 = solve_stack(st.with_weights(phi0), np.zeros((0, st.n)), np.zeros(0), on_failure="nan")
        ok = np.all(np.isfinite(u0), axis=1)
        if not ok.all():
            dropped = index[~ok].tolist()
            if not ok.any():
                raise RuntimeError(f"the forward problem of every one of the {len(samples)} samples failed")
            preps = [s for s, k in zip(preps, ok) if k]
            st = st.subset(np.flatnonzero(ok))
            index = index[ok]
    T = len(preps)
    auto = method == "auto"
    if auto:
        method = "global" if (T <= AUTO_GLOBAL_MAX_T and T * K <= AUTO_GLOBAL_MAX_TK) else "alternating"
    result = None
    if K == 0:   # weights only: convex, one LP whatever the method
        method = "convex"
        result = fit_convex(st, rho, theta_bound, nu_bound if nu_bound is not None else 1.0, time_limit_s, features)
    if result is None and method == "global":
        try:
            result = fit_global(preps, K, rho, time_limit_s, mip_gap, theta_bound, nu_bound, dual_bound, progress,
                                features, node_limit)
        except RuntimeError as e:
            if not auto:
                raise
            warnings.warn(f"global solve failed ({e}); method='auto' falls back to 'alternating'",
                          RuntimeWarning, stacklevel=2)
            method = "alternating"
    if result is None:
        result = fit_alternating(preps, K, rho, time_limit_s, theta_bound, nu_bound, seed, progress,
                                 restarts, max_iter, tol, subsample, features=features, stack=st,
                                 node_limit=node_limit)
    theta, nu, phi, status, bound, _, info = result
    weighted = st.with_weights(phi) if J else st
    gaps, bad, failed = final_gaps(weighted, theta, nu, progress)
    drop_now = failed & np.isnan(gaps)
    if drop_now.any():
        dropped += index[drop_now].tolist()
    gaps = gaps[~drop_now]
    bad = bad[~drop_now]
    info["forward_failed_at_fit"] = int(failed.sum())
    l_min = min(s.with_weights(phi).P.min_eig() for s in preps) if J else l
    reg = features.rho * float(np.sum(phi ** 2)) if J else 0.0
    return InverseFit(theta=theta, nu=nu, l=l, rho=float(rho), gaps=gaps,
                      prop4_bound=prop4_bound(gaps, l_min), objective=objective(gaps, theta, rho) + reg,
                      method=method, status=status, bound=bound, solve_time_s=time.perf_counter() - t0,
                      n_samples=len(gaps), n_stationarity_infeasible=int(bad.sum()), weights=np.asarray(phi, float),
                      weight_names=list(features.names) if J else [], dropped=sorted(dropped), info=info)
