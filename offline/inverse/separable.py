"""Closed-form per-sample duals for small structured FOPs, and the θ-step that uses them.

Two structures have them: every inequality row touches one input (the robot: its bounds (32e–f)
and linearised obstacles (32g) are all such rows), or n = 2 with any rows (vertex enumeration of
the dual polygon, below). Without equality rows, the inequality part of a sample's best dual is
ψ(r) = min {λᵀs : Hᵀλ = r, λ ≥ 0} = max {yᵀr : Hy ≤ s} (LP duality, s = b − Hu the slack), a
maximum of linear functions over the vertices y_v of the polygon {Hy ≤ s}, whose gradient is the
maximising vertex; for n = 2 the vertices are the feasible intersections of pairs of rows.

If each row j of H has a single nonzero H_ji and there are no equality rows, the inequality part
of a sample's best dual has a closed form. Stationarity (11c) asks Hᵀλ = r with
r = −(c + 2Pu) − Σ_k z_k θ_k − Σ_j φ_j G_j; a row with H_ji > 0 supplies r_i > 0 at cost
slack_j / H_ji per unit, so

    min_{λ ≥ 0, Hᵀλ = r} λᵀ(b − Hu) = Σ_i [C⁺_i max(r_i, 0) + C⁻_i max(−r_i, 0)],
    C⁺_i = min_{j: H_ji > 0} slack_j / H_ji,   C⁻_i = min_{j: H_ji < 0} slack_j / |H_ji|

(+∞ if no row serves that direction; a (11c) residual penalised by μ caps both at μ). With z
fixed, the gap of (11d) is then an explicit convex piecewise-linear function of x = (θ, ν, φ):

    ε_t(x) = Σ_k [max(θ_kᵀu_t − ν_k, 0) − z_tk (θ_kᵀu_t − ν_k)] + Σ_i C±_ti |r_ti(x)|±,

and the θ-step min Σ_t ε_t(x)² + ρ‖θ‖² + κ‖φ‖² over the box is a piecewise-quadratic problem in
K·n + K + J variables, solved by Gauss–Newton steps on the current piece (bounded least squares,
scipy's lsq_linear) with a backtracking line search on the true objective: vectorised over every
sample, no LP whose size grows with T.
"""
from __future__ import annotations

import numpy as np

from .data import Features
from .stack import Stack

#: Gauss–Newton iterations of one θ-step, and its relative-decrease stopping tolerance
MAX_NEWTON = 60
NEWTON_RTOL = 1e-10


class Duals:
    """ψ(r) and dψ/dr for a stack's samples (module docstring), for a given μ (None: exact (11c))."""

    def __init__(self, st: Stack):
        self.st = st
        self.axis = _axis(st)
        self._vertices: dict = {}

    @property
    def available(self) -> bool:
        return self.axis is not None or (self.st.n == 2 and len(self.st.B.rhs) == 0 and self._polygon(None) is not None)

    def _polygon(self, mu):
        if mu not in self._vertices:
            self._vertices[mu] = _vertices_2d(self.st, mu)
        return self._vertices[mu]

    def psi(self, r: np.ndarray, mu) -> tuple[np.ndarray, np.ndarray]:
        if self.axis is not None:
            Cp, Cm = self.axis
            if mu is not None:
                Cp, Cm = np.minimum(Cp, mu), np.minimum(Cm, mu)
            val = np.where(r > 0, Cp * r, np.where(r < 0, -Cm * r, 0.0)).sum(axis=1)
            return val, np.where(r > 0, Cp, np.where(r < 0, -Cm, 0.0))
        V, valid = self._polygon(mu)
        scores = np.where(valid, np.einsum("tvn,tn->tv", V, r), -np.inf)
        best = np.argmax(scores, axis=1)
        return scores[np.arange(len(r)), best], V[np.arange(len(r)), best]


def _axis(st: Stack):
    """(C⁺, C⁻) (T, n) if every row touches one input and there are no equality rows, else None."""
    H = st.H
    if len(st.B.rhs) or not np.all(np.bincount(H.ent_row, minlength=len(H.rhs)) <= 1):
        return None
    Cp = np.full((st.T, st.n), np.inf)
    Cm = np.full((st.T, st.n), np.inf)
    t = H.sample[H.ent_row]
    cost = np.maximum(H.resid[H.ent_row], 0.0) / np.abs(H.ent_val)
    pos = H.ent_val > 0
    np.minimum.at(Cp, (t[pos], H.ent_col[pos]), cost[pos])
    np.minimum.at(Cm, (t[~pos], H.ent_col[~pos]), cost[~pos])
    return Cp, Cm


def _vertices_2d(st: Stack, mu):
    """Vertices (T, P, 2) of {y : Hy ≤ s} (plus |y_i| ≤ μ) and their validity (T, P); None if some
    sample's polygon is unbounded (a direction of (11c) no row can serve)."""
    H, T = st.H, st.T
    mmax = int(H.count.max(initial=0))
    A = np.zeros((T, mmax, 2))
    sl = np.full((T, mmax), np.inf)
    A[H.sample[H.ent_row], H.local[H.ent_row], H.ent_col] = H.ent_val
    sl[H.sample, H.local] = np.maximum(H.resid, 0.0)
    if mu is not None:
        box = np.broadcast_to(np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]]), (T, 4, 2))
        A = np.concatenate([A, box], axis=1)
        sl = np.concatenate([sl, np.full((T, 4), float(mu))], axis=1)
    used = np.any(A != 0, axis=2)
    sl = np.where(used, sl, np.inf)
    # bounded iff the row normals positively span the plane: the largest angular gap is < π
    ang = np.where(used, np.arctan2(A[..., 1], A[..., 0]), np.nan)
    srt = np.sort(ang, axis=1)
    cnt = used.sum(axis=1)
    gaps = np.diff(srt, axis=1)
    first = srt[:, 0]
    last = srt[np.arange(T), np.maximum(cnt - 1, 0)]
    wrap = first + 2 * np.pi - last
    maxgap = np.fmax(np.nanmax(np.where(np.isnan(gaps), -np.inf, gaps), axis=1, initial=-np.inf), wrap)
    if np.any(cnt < 3) or np.any(maxgap >= np.pi - 1e-9):
        return None
    j, k = np.triu_indices(A.shape[1], 1)
    a1, a2 = A[:, j], A[:, k]                                   # (T, P, 2)
    s1, s2 = sl[:, j], sl[:, k]
    det = a1[..., 0] * a2[..., 1] - a1[..., 1] * a2[..., 0]
    ok = (np.abs(det) > 1e-12) & np.isfinite(s1) & np.isfinite(s2)
    det = np.where(ok, det, 1.0)
    y0 = (np.where(ok, s1, 0) * a2[..., 1] - np.where(ok, s2, 0) * a1[..., 1]) / det
    y1 = (a1[..., 0] * np.where(ok, s2, 0) - a2[..., 0] * np.where(ok, s1, 0)) / det
    V = np.stack([y0, y1], axis=-1)
    viol = np.einsum("tmn,tpn->tpm", A, V) - np.where(np.isfinite(sl), sl, np.inf)[:, None, :]
    valid = ok & np.all(viol <= 1e-9 * (1 + np.abs(V).sum(axis=2, keepdims=True)), axis=2)
    if not np.all(valid.any(axis=1)):
        return None
    return V, valid


def _unpack(x, K, n, J):
    return x[:K * n].reshape(K, n), x[K * n:K * n + K], x[K * n + K:K * n + K + J]


def gaps_and_jacobian(x, st: Stack, Z, duals: Duals, mu, K, J):
    """ε_t(x) (T,) and a subgradient row per sample (T, K·n + K + J) at x (module docstring)."""
    n, T = st.n, st.T
    th, nu, phi = _unpack(x, K, n, J)
    a = st.U @ th.T - nu                                           # (T, K)
    r = -st.grad - Z @ th - (np.einsum("j,tjn->tn", phi, st.G) if J else 0.0)   # (T, n)
    psi, y = duals.psi(r, mu)                                      # ψ(r), dψ/dr
    eps = (np.maximum(a, 0.0) - Z * a).sum(axis=1) + psi
    w = (a > 0).astype(float) - Z                                  # dε/da_k
    d_th = w[:, :, None] * st.U[:, None, :] - Z[:, :, None] * y[:, None, :]      # (T, K, n)
    D = np.concatenate([d_th.reshape(T, K * n), -w, -np.einsum("tn,tjn->tj", y, st.G) if J else np.zeros((T, 0))],
                       axis=1)
    return eps, D


def theta_step(st: Stack, Z, K, rho, theta_bound, nu_bound, mu, features: Features | None, x0, duals: Duals):
    """The θ-step with closed-form duals: min Σ ε_t(x)² + ρ‖θ‖² + κ‖φ‖² over the box, from x0 =
    (θ, ν, φ). Returns (θ, ν, φ, ε) — never worse than x0 — or None if ε is infinite at x0 (some
    direction of (11c) cannot be served: use the LP path)."""
    n = st.n
    J = features.J if features is not None else 0
    Z = np.asarray(Z, float).reshape(st.T, K)
    lo = np.r_[np.full(K * n, -theta_bound), np.full(K, -nu_bound), features.lo if J else np.zeros(0)]
    hi = np.r_[np.full(K * n, theta_bound), np.full(K, nu_bound), features.hi if J else np.zeros(0)]
    reg = np.r_[np.full(K * n, rho), np.zeros(K), np.full(J, features.rho if J else 0.0)]
    x = np.clip(np.asarray(x0, float), lo, hi)

    def objective(x):
        eps, D = gaps_and_jacobian(x, st, Z, duals, mu, K, J)
        return float(eps @ eps + reg @ (x * x)), eps, D

    f, eps, D = objective(x)
    if not np.isfinite(f):
        return None
    for _ in range(MAX_NEWTON):
        # Gauss–Newton on the current piece: min ‖ε + D s‖² + Σ reg (x + s)², lo ≤ x + s ≤ hi
        Hm = D.T @ D + np.diag(reg)
        g = D.T @ eps + reg * x
        step = box_qp(Hm, g, lo - x, hi - x)
        t, improved = 1.0, False
        for _ls in range(30):
            xn = np.clip(x + t * step, lo, hi)
            fn, en, Dn = objective(xn)
            if fn <= f - 1e-4 * t * abs(2 * g @ step) or fn < f * (1 - 1e-14):
                improved = True
                break
            t *= 0.5
        if not improved:
            break
        rel = (f - fn) / max(f, 1e-300)
        x, f, eps, D = xn, fn, en, Dn
        if rel < NEWTON_RTOL:
            break
    th, nu, phi = _unpack(x, K, n, J)
    return th.copy(), nu.copy(), phi.copy(), eps


def box_qp(Hm: np.ndarray, g: np.ndarray, lb: np.ndarray, ub: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """argmin ½sᵀHs + gᵀs over lb ≤ s ≤ ub (H positive semidefinite, a few dozen variables): a
    primal active-set method on the bounds (free variables by a least-squares Newton step, a ratio
    test to the first bound hit, a bound released when its multiplier has the wrong sign)."""
    d = len(g)
    s = np.clip(np.zeros(d), lb, ub)
    fixed = (s <= lb) | (s >= ub)
    for _ in range(max_iter):
        free = ~fixed
        grad = Hm @ s + g
        step = np.zeros(d)
        if free.any():
            Hff = Hm[np.ix_(free, free)]
            step[free] = np.linalg.lstsq(Hff, -grad[free], rcond=None)[0]
        if np.allclose(step, 0.0, atol=1e-15):
            # stationary on the free set: release a bound whose multiplier points inwards
            release = fixed & (((s <= lb) & (grad < -1e-14)) | ((s >= ub) & (grad > 1e-14)))
            if not release.any():
                return s
            j = np.flatnonzero(release)[np.argmax(np.abs(grad[release]))]
            fixed[j] = False
            continue
        # ratio test: the largest α ≤ 1 keeping lb ≤ s + α·step ≤ ub
        with np.errstate(divide="ignore", invalid="ignore"):
            to_ub = np.where(step > 0, (ub - s) / step, np.inf)
            to_lb = np.where(step < 0, (lb - s) / step, np.inf)
        ratios = np.minimum(to_ub, to_lb)
        ratios[fixed] = np.inf
        j = int(np.argmin(ratios))
        alpha = min(1.0, float(ratios[j]))
        s = np.clip(s + alpha * step, lb, ub)
        if alpha < 1.0:
            fixed[j] = True
    return s

