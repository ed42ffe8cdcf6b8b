"""Value approximation (Abdufattokhov et al. 2021; the paper's Appendix C.4 and Table 4): a whole policy.

The one-step problem without a subgoal plus a learned convex quadratic cost of the next state,

    min_x  cᵀx + V(s⁺),   V(s) = ½ sᵀ P s + qᵀ s,  P ⪰ 0,   s⁺ = s₀ + M x,   x in the FOP's rows and bounds

(no RL upper level: V stands for everything after the step). V is fitted by least squares to the
expert's (the MPC's) cost-to-go at the demonstrations: y_i = the cost the expert incurred after its
decision i (offline.baselines.cases), s_i⁺ = s₀ + M x_i^expert, with a free offset per step t (a
constant does not move the argmin; V itself is time-invariant):

    min_{P ⪰ 0, q, r}  mean_i (½ s_iᵀ P s_i + qᵀ s_i + r_{t_i} − y_i)² + λ ‖P‖_F²        (cvxpy, an SDP)

in standardised coordinates (s and y scaled by their spread, mapped back exactly). P = U Λ Uᵀ is then
kept as rank-r plus diagonal, P_r = L Lᵀ + diag(D) with L = U_r Λ_r^½ and D = diag(P − L Lᵀ) ≥ 0
(still PSD), which the shared LP/QP solver takes as a diagonal QP over [x; s⁺; z]:

    min cᵀx + qᵀs⁺ + ½ s⁺ᵀ diag(D) s⁺ + ½‖z‖²   s.t. FOP rows,  M x − s⁺ = −s₀,  Lᵀs⁺ − z = 0

solved by offline.lp_fop.ReluLpFop (HiGHS QP; K = 0).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from offline.inverse import action_metrics
from offline.lp_fop import ReluLpFop

__all__ = ["ValueFunction", "fit_value", "ValuePolicy", "fit_value_policy", "policy_metrics"]


@dataclass
class ValueFunction:
    """V(s) = ½ sᵀ P s + qᵀ s with P = L Lᵀ + diag(D) ⪰ 0; plus the fit's report."""

    L: np.ndarray          # (d, r)
    D: np.ndarray          # (d,) ≥ 0
    q: np.ndarray          # (d,)
    offsets: dict          # {t: r_t} of the fit (not used by the policy)
    rank: int
    reg: float
    train_rmse: float      # RMSE of V(s⁺) + r_t vs the cost-to-go on the training states (rank-r P)
    train_r2: float
    y_std: float
    fit_time_s: float

    @property
    def P(self) -> np.ndarray:
        return self.L @ self.L.T + np.diag(self.D)

    def __call__(self, s) -> np.ndarray:
        s = np.atleast_2d(np.asarray(s, float))
        return 0.5 * np.einsum("ij,jk,ik->i", s, self.P, s) + s @ self.q

    def predict(self, s, t) -> np.ndarray:
        """V(s) + r_t: the fitted cost-to-go at states s of steps t."""
        return self(s) + np.array([self.offsets.get(int(k), 0.0) for k in np.atleast_1d(t)])


def fit_value(s_next: np.ndarray, y: np.ndarray, t: np.ndarray, *, rank: int | None = None,
              reg: float = 1e-3) -> ValueFunction:
    """Least-squares fit of V to cost-to-go targets y at next states s_next (M, d); t (M,) steps (module docstring).

    rank: the r of P's low-rank part (None: d, P exact); reg: λ of λ‖P‖_F² in standardised units.
    """
    import cvxpy as cp

    s_next, y, t = np.asarray(s_next, float), np.asarray(y, float).reshape(-1), np.asarray(t).reshape(-1)
    M, d = s_next.shape
    if y.shape != (M,) or t.shape != (M,):
        raise ValueError(f"value fit: {M} states but {y.shape[0]} targets and {t.shape[0]} steps")
    if not (np.all(np.isfinite(s_next)) and np.all(np.isfinite(y))):
        raise ValueError("value fit: states and targets must be finite")
    if reg < 0:
        raise ValueError(f"value fit: reg must be >= 0, got {reg}")
    r = d if rank is None else int(rank)
    if not 0 <= r <= d:
        raise ValueError(f"value fit: rank must be in 0..{d}, got {rank}")
    t0 = time.perf_counter()
    m, sd = s_next.mean(axis=0), s_next.std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    y_sd = float(y.std()) or 1.0
    z = (s_next - m) / sd
    steps = np.unique(t)
    T1 = (t[:, None] == steps[None, :]).astype(float)             # one-hot of the step
    Zq = np.einsum("ij,ik->ijk", z, z).reshape(M, d * d)         # vec(z zᵀ)
    P = cp.Variable((d, d), PSD=True)
    q = cp.Variable(d)
    off = cp.Variable(len(steps))
    pred = 0.5 * (Zq @ cp.vec(P, order="C")) + z @ q + T1 @ off
    prob = cp.Problem(cp.Minimize(cp.sum_squares(pred - y / y_sd) / M + reg * cp.sum_squares(P)))
    prob.solve(solver="CLARABEL")
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"value fit: cvxpy returned {prob.status}")
    Pz = 0.5 * (P.value + P.value.T)
    qz = np.asarray(q.value)
    # back to s: z = (s − m)/sd → P_s = S⁻¹ P_z S⁻¹, q_s = S⁻¹ q_z − P_s m (constants go to the offsets)
    Si = np.diag(1.0 / sd)
    Ps = y_sd * Si @ Pz @ Si
    qs = y_sd * (Si @ qz) - Ps @ m
    const = y_sd * (0.5 * (m / sd) @ Pz @ (m / sd) - qz @ (m / sd))
    lam, U = np.linalg.eigh(Ps)
    lam = np.maximum(lam, 0.0)
    keep = np.argsort(lam)[::-1][:r]
    L = U[:, keep] * np.sqrt(lam[keep])
    D = np.maximum(np.diag(Ps - L @ L.T), 0.0)
    offsets = {int(k): float(y_sd * o + const) for k, o in zip(steps, off.value)}
    vf = ValueFunction(L=L, D=D, q=qs, offsets=offsets, rank=r, reg=reg, train_rmse=0.0, train_r2=0.0,
                       y_std=float(y.std()), fit_time_s=0.0)
    res = vf.predict(s_next, t) - y
    vf.train_rmse = float(np.sqrt(np.mean(res ** 2)))
    vf.train_r2 = float(1.0 - np.mean(res ** 2) / max(np.var(y), 1e-300))
    vf.fit_time_s = time.perf_counter() - t0
    return vf


class ValuePolicy:
    """The one-step problem + V as a diagonal QP on ReluLpFop (module docstring), built once per case.

    Args:
        case_lp: the case's ReluLpFop (its rows A over the n decision columns).
        M: (d, n) next-state map s⁺ = s0 + M x.
        vf: the fitted value function.
    """

    def __init__(self, case_lp: ReluLpFop, M, vf: ValueFunction) -> None:
        A = sp.csr_matrix(case_lp.A)
        M = sp.csr_matrix(M)
        (m, n), d, r = A.shape, M.shape[0], vf.L.shape[1]
        self.n, self.d, self.r, self.m = n, d, r, m
        self.vf = vf
        rows = sp.vstack([
            sp.hstack([A, sp.csr_matrix((m, d + r))]),
            sp.hstack([M, -sp.identity(d), sp.csr_matrix((d, r))]),                  # M x − s⁺ = −s0
            sp.hstack([sp.csr_matrix((r, n)), sp.csr_matrix(vf.L.T), -sp.identity(r)]),   # Lᵀ s⁺ − z = 0
        ], format="csr")
        self.qp = ReluLpFop(rows, K=0, l=0.0, q_diag=np.r_[np.zeros(n), vf.D, np.ones(r)])

    def solve(self, one_step) -> tuple[np.ndarray, object]:
        """x (n,) of the one-step problem + V at a case's OneStep (offline.baselines.cases), and the solution."""
        c, rlo, rhi, clo, chi = one_step.data
        d, r = self.d, self.r
        s0 = np.asarray(one_step.s0, float)
        sol = self.qp.solve(np.r_[c, self.vf.q, np.zeros(r)],
                            np.r_[rlo, -s0, np.zeros(r)], np.r_[rhi, -s0, np.zeros(r)],
                            np.r_[clo, np.full(d + r, -np.inf)], np.r_[chi, np.full(d + r, np.inf)])
        return sol.x[: self.n], sol


def _next_states(case, x: np.ndarray) -> np.ndarray:
    out = []
    for st, xi in zip(case.train_states, x):
        o = case.one_step(st)
        out.append(o.s0 + o.M @ xi)
    return np.array(out)


def policy_metrics(case, policy: ValuePolicy, states, expert: dict) -> dict:
    """{column: action_metrics} of the policy's decisions at `states` vs the expert's, plus "failed"."""
    parts: dict[str, list] = {k: [] for k in expert}
    failed = 0
    for st in states:
        x, sol = policy.solve(case.one_step(st))
        failed += not sol.ok
        for k, v in case.decision_columns(np.nan_to_num(x)).items():
            if k in parts:
                parts[k].append(v)
    out = {k: action_metrics(np.array(v), expert[k]) for k, v in parts.items()}
    out["failed"] = failed
    return out


def fit_value_policy(case, ranks=(None,), regs=(1e-3,), log=lambda msg: None) -> tuple[ValuePolicy, dict]:
    """V fitted on the case's training demonstrations; (rank, reg) chosen on a validation split of
    them (the last training episode: V fitted without it, its states' decisions compared with the
    expert's, mean cosine over the decision columns), then refitted on all of them. The held-out
    demonstrations are never used. Returns the policy and a report (grid, choice, V's errors, time)."""
    t0 = time.perf_counter()
    s_all = _next_states(case, case.x_expert)
    eps = np.unique(case.episode)
    val = case.episode == eps[-1] if len(eps) > 1 else np.zeros(len(s_all), bool)
    M = case.one_step(case.train_states[0]).M
    grid = []
    for rank in ranks:
        for reg in regs:
            score = float("nan")
            if val.any():
                fit = ~val
                vf = fit_value(s_all[fit], case.cost_to_go[fit], case.step_index[fit], rank=rank, reg=reg)
                states = [s for s, v in zip(case.train_states, val) if v]
                expert = {k: np.array([case.decision_columns(x)[k] for x in case.x_expert[val]])
                          for k in case.held_expert}
                m = policy_metrics(case, ValuePolicy(case.lp, M, vf), states, expert)
                score = float(np.nanmean([m[k]["cosine"] for k in expert]))
            grid.append({"rank": "full" if rank is None else int(rank), "reg": reg, "validation_cosine": score})
            log(f"[value]   rank {grid[-1]['rank']}, reg {reg:g}: validation cosine {score:.4f}")
    best = max(range(len(grid)), key=lambda i: (np.nan_to_num(grid[i]["validation_cosine"], nan=-9), -i))
    rank = None if grid[best]["rank"] == "full" else grid[best]["rank"]
    vf = fit_value(s_all, case.cost_to_go, case.step_index, rank=rank, reg=grid[best]["reg"])
    report = {"fit_method": "value_approximation", "grid": grid, "rank": vf.rank, "reg": vf.reg,
              "validation_episode": int(eps[-1]) if val.any() else None, "train_rmse": vf.train_rmse,
              "train_r2": vf.train_r2, "cost_to_go_std": vf.y_std, "fit_time_s": time.perf_counter() - t0,
              "final_fit_time_s": vf.fit_time_s}
    return ValuePolicy(case.lp, M, vf), report
