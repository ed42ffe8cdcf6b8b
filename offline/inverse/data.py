"""The generic per-sample data of Problem (11), its validation, and the result type of a fit.

A case study turns each expert decision into one `InverseSample` (see the package docstring for
the form and the adapters); everything downstream (forward problem, duals, Problem 11) works on
the validated `Prep` built here, never on case-study objects.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from hiopt_ros.progress import progress_bar


@dataclass
class InverseSample:
    """One expert decision and the FOP data around it.

    FOP_θ(sample) = argmin_u  cᵀu + uᵀQu + Σ_j φ_j (q_jᵀu + uᵀR_j u) + Σ_k max(θ_kᵀu − ν_k, 0) + l‖u‖²
                    s.t. a + B u = xhat   (m_eq rows, may be absent)
                         H u ≤ b          (m_in rows, may be absent)

    c (n,), u (n,): numpy arrays. Q: (n, n) symmetric PSD as a dense array or a scipy.sparse
    matrix, or (n,) for a diagonal (zeros: the LP case of Eq. 9/10). H (m_in, n), B (m_eq, n):
    dense arrays or scipy.sparse matrices (network constraints of hundreds of columns should be
    sparse); b (m_in,), a and xhat (m_eq,).
    feature_lin (J, n) and feature_quad (J, n) (diagonal R_j) or (J, n, n): the linear-quadratic
    cost features whose weights φ_j are learned with θ (fit_inverse(..., features=...)); None
    when the case study learns only ReLU terms.
    """
    c: np.ndarray
    Q: np.ndarray
    u: np.ndarray
    H: np.ndarray | sp.spmatrix | None = None
    b: np.ndarray | None = None
    B: np.ndarray | sp.spmatrix | None = None
    a: np.ndarray | None = None
    xhat: np.ndarray | None = None
    feature_lin: np.ndarray | None = None
    feature_quad: np.ndarray | None = None


@dataclass
class InverseFit:
    """Result of fit_inverse: the K ReLU terms (and learned weights) and how well they explain the data."""
    theta: np.ndarray     # (K, n)  the θ_k (= α_k of Eq. 32)
    nu: np.ndarray        # (K,)    the ν_k (= β_k of Eq. 32)
    l: float
    rho: float
    gaps: np.ndarray      # (T,) per-sample duality gap ε_t ≥ 0 at (θ, ν), re-evaluated (best dual)
    prop4_bound: float    # sqrt(max_t ε_t / l_min): Prop. 4 bound on ‖u*_t − u_t‖
    objective: float      # Σ ε_t² + ρ Σ ‖θ_k‖² with the re-evaluated gaps
    method: str           # "global" | "alternating"
    status: str           # solver termination, e.g. "optimal", "time_limit", "converged"
    bound: float | None   # global lower bound on the objective (global method), else None
    solve_time_s: float
    n_samples: int
    #: samples where no dual satisfies (11c) at (θ, ν) (their gap is the Lagrangian-dual gap
    #: f(u_t) − f(u*_t) instead; still a valid duality gap, Prop. 4 still holds). 0 normally.
    n_stationarity_infeasible: int = 0
    #: learned weights φ_j of the cost features (J,), empty when none were learned
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: names of the learned weights (from the Features passed to fit_inverse)
    weight_names: list = field(default_factory=list)
    #: samples dropped because their forward problem could not be solved (indices into the input)
    dropped: list = field(default_factory=list)
    #: solver-specific details (iterations, restarts, solver objective, ...)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Features:
    """Which cost-feature weights φ_j are learned with the ReLU terms, and their box.

    The case study supplies each sample's feature data (InverseSample.feature_lin / feature_quad:
    feature j adds φ_j (q_jᵀu + uᵀR_j u) to the FOP's cost); `names` label them in reports and θ
    files (e.g. "c_h", "c_u" for the weight changes of Eq. 32a's heading and input terms). The box
    [lower, upper] must keep every sample's FOP strongly convex (λ_min(Q + Σφ_j R_j + l·I) ≥ l_min
    at every corner; checked), so Prop. 4 holds for any φ in it. `rho` weights Σ_j φ_j² in (11a)
    (0: the box alone regularises them). At least one weight of the cost must stay fixed: scaling
    the whole cost down shrinks every gap without changing the argmin.
    """
    names: tuple
    lower: tuple
    upper: tuple
    rho: float = 0.0
    l_min: float | None = None    # default: l of the fit

    def __post_init__(self) -> None:
        J = len(self.names)
        if len(self.lower) != J or len(self.upper) != J:
            raise ValueError(f"Features: {J} names but {len(self.lower)} lower and {len(self.upper)} upper bounds")
        for name, lo, hi in zip(self.names, self.lower, self.upper):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"Features: weight '{name}' needs finite bounds lower <= upper, got [{lo}, {hi}]")
        if not self.rho >= 0:
            raise ValueError(f"Features.rho must be >= 0, got {self.rho}")

    @property
    def J(self) -> int:
        return len(self.names)

    @property
    def lo(self) -> np.ndarray:
        return np.asarray(self.lower, float)

    @property
    def hi(self) -> np.ndarray:
        return np.asarray(self.upper, float)


# ----------------------------------------------------------------------------- matrices

def is_sparse(M) -> bool:
    return sp.issparse(M)


def coo(M) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, values) of the nonzeros of a dense array or a sparse matrix."""
    if sp.issparse(M):
        M = M.tocoo()
        keep = M.data != 0
        return M.row[keep].astype(np.int64), M.col[keep].astype(np.int64), M.data[keep].astype(float)
    r, c = np.nonzero(M)
    return r.astype(np.int64), c.astype(np.int64), np.asarray(M, float)[r, c]


def row_norms(M) -> np.ndarray:
    if sp.issparse(M):
        return np.sqrt(np.asarray(M.multiply(M).sum(axis=1)).ravel())
    return np.linalg.norm(M, axis=1)


class Quad:
    """The quadratic part uᵀPu of a cost: P diagonal (a vector), dense or sparse; symmetric PSD."""

    def __init__(self, P):
        if sp.issparse(P):
            P = P.tocsr()
            off = P - sp.diags(P.diagonal())
            if off.count_nonzero() == 0:
                P = np.asarray(P.diagonal(), float)
        elif P.ndim == 2 and P.shape[0] <= 4096 and not np.any(P - np.diag(np.diag(P))):
            P = np.diag(P).copy()
        self.P = P

    @property
    def diagonal(self) -> bool:
        return isinstance(self.P, np.ndarray) and self.P.ndim == 1

    def matvec(self, u: np.ndarray) -> np.ndarray:
        return self.P * u if self.diagonal else np.asarray(self.P @ u).ravel()

    def plus_diag(self, d) -> "Quad":
        """P + diag(d) (d a scalar or a vector)."""
        if self.diagonal:
            return Quad(self.P + d)
        n = self.P.shape[0]
        return Quad(self.P + sp.diags(np.broadcast_to(d, n)) if sp.issparse(self.P) else
                    self.P + np.diag(np.broadcast_to(np.asarray(d, float), n)))

    def lower_coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, values) of the lower triangle of P."""
        if self.diagonal:
            i = np.flatnonzero(self.P)
            return i, i, self.P[i]
        r, c, v = coo(self.P)
        keep = r >= c
        return r[keep], c[keep], v[keep]

    def solve(self, r: np.ndarray) -> np.ndarray:
        """P⁻¹ r (P must be positive definite)."""
        if self.diagonal:
            return r / self.P
        if sp.issparse(self.P):
            from scipy.sparse.linalg import spsolve
            return spsolve(self.P.tocsc(), r)
        return np.linalg.solve(self.P, r)

    def min_eig(self) -> float:
        if self.diagonal:
            return float(self.P.min(initial=np.inf))
        P = self.P.toarray() if sp.issparse(self.P) else self.P
        return float(np.linalg.eigvalsh(P).min()) if P.shape[0] else np.inf


# ----------------------------------------------------------------------------- validation

@dataclass
class Prep:
    """A validated sample with the quantities every formulation uses.

    P = Q + l·I (+ Σ_j φ_j R_j once weights are fixed, see `with_weights`); grad = c + 2Pu is the
    gradient of the smooth cost at the expert action; G (J, n) are the feature gradients
    q_j + 2R_j u (the columns of the learned weights in (11c)).
    """
    c: np.ndarray
    Q: Quad
    u: np.ndarray
    H: np.ndarray | sp.spmatrix
    b: np.ndarray
    B: np.ndarray | sp.spmatrix
    a: np.ndarray
    xhat: np.ndarray
    P: Quad
    grad: np.ndarray       # c + 2 P u
    slack: np.ndarray      # b − H u ≥ 0 (inequality slack of the expert action)
    eq_res: np.ndarray     # x̂ − a − B u (≈ 0 for a feasible expert action)
    f_smooth: float        # cᵀu + uᵀPu
    feat_lin: np.ndarray   # (J, n)
    feat_quad: list        # J Quad
    G: np.ndarray          # (J, n) feature gradients at u

    m = property(lambda self: self.H.shape[0], doc="inequality rows")
    p = property(lambda self: self.B.shape[0], doc="equality rows")
    n = property(lambda self: self.c.shape[0], doc="inputs")
    J = property(lambda self: self.feat_lin.shape[0], doc="weight features")

    def with_weights(self, weights) -> "Prep":
        """The sample with learned weights folded into its fixed cost: c += Σφ_j q_j, P += Σφ_j R_j."""
        weights = np.asarray(weights, float).reshape(-1)
        if weights.size == 0 or not np.any(weights):
            return self
        if weights.shape != (self.J,):
            raise ValueError(f"weights must have {self.J} entries (one per feature), got {weights.shape}")
        c = self.c + weights @ self.feat_lin
        P = self.P
        for w, R in zip(weights, self.feat_quad):
            if w:
                P = Quad(_add(P.P, w, R.P))
        u = self.u
        Pu = P.matvec(u)
        return Prep(c=c, Q=self.Q, u=u, H=self.H, b=self.b, B=self.B, a=self.a, xhat=self.xhat, P=P,
                    grad=c + 2 * Pu, slack=self.slack, eq_res=self.eq_res, f_smooth=float(c @ u + u @ Pu),
                    feat_lin=np.zeros((0, self.n)), feat_quad=[], G=np.zeros((0, self.n)))


def _add(P, w, R):
    """P + w·R for Quad payloads (vector = diagonal, dense, sparse)."""
    if np.ndim(P) == 1 and np.ndim(R) == 1 and not sp.issparse(P) and not sp.issparse(R):
        return P + w * R
    n = P.shape[0]
    def full(M):
        return sp.diags(M) if (not sp.issparse(M) and np.ndim(M) == 1) else M
    P, R = full(P), full(R)
    if sp.issparse(P) or sp.issparse(R):
        return sp.csr_matrix(P) + w * sp.csr_matrix(R)
    return np.asarray(P) + w * np.asarray(R) if n else P


def _arr(x, idx: int, name: str, ndim: int | tuple) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"sample {idx}: field '{name}' is not a float array ({e})") from None
    if a.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"sample {idx}: field '{name}' must be {ndim}-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"sample {idx}: field '{name}' contains NaN or inf (drop such samples first)")
    return a


def _mat(x, idx: int, name: str):
    """A 2-D float matrix, dense or sparse (kept sparse), finite."""
    if sp.issparse(x):
        M = sp.csr_matrix(x, dtype=float)
        if not np.all(np.isfinite(M.data)):
            raise ValueError(f"sample {idx}: field '{name}' contains NaN or inf (drop such samples first)")
        return M
    return _arr(x, idx, name, 2)


def _constraint_rows(idx: int, n: int, mat_name: str, mat, vectors: dict, rows: str) -> tuple:
    """A constraint block: the (rows, n) matrix `mat` and `vectors` with one entry per row, all given
    or all None (then an empty block); returns (matrix, *vectors)."""
    names = [mat_name, *vectors]
    given = [mat is not None] + [v is not None for v in vectors.values()]
    if any(given) and not all(given):
        listed = " and ".join(f"'{x}'" for x in names) if len(names) == 2 else ", ".join(f"'{x}'" for x in names)
        both = "both" if len(names) == 2 else "all"
        raise ValueError(f"sample {idx}: fields {listed} must {both} be given or {both} be None")
    if mat is None:
        return (np.zeros((0, n)), *(np.zeros(0) for _ in vectors))
    M = _mat(mat, idx, mat_name)
    if M.shape[1:] != (n,):
        raise ValueError(f"sample {idx}: field '{mat_name}' has shape {M.shape}, expected ({rows}, {n})")
    out = [M]
    for name, v in vectors.items():
        out.append(_arr(v, idx, name, 1))
        if out[-1].shape != (M.shape[0],):
            raise ValueError(f"sample {idx}: field '{name}' has shape {out[-1].shape}, expected ({M.shape[0]},) "
                             f"to match {mat_name}")
    return tuple(out)


def _quad(x, idx: int, name: str, n: int) -> Quad:
    if sp.issparse(x):
        M = _mat(x, idx, name)
        if M.shape != (n, n):
            raise ValueError(f"sample {idx}: field '{name}' has shape {M.shape}, expected ({n}, {n})")
        asym = abs(M - M.T)
        if asym.nnz and asym.max() > 1e-9 * (1 + abs(M).max()):
            raise ValueError(f"sample {idx}: field '{name}' is not symmetric")
        q = Quad(M)
    else:
        M = _arr(x, idx, name, (1, 2))
        if M.ndim == 1:
            if M.shape != (n,):
                raise ValueError(f"sample {idx}: field '{name}' has shape {M.shape}, expected ({n},) or ({n}, {n})")
            q = Quad(M.copy())
        else:
            if M.shape != (n, n):
                raise ValueError(f"sample {idx}: field '{name}' has shape {M.shape}, expected ({n}, {n})")
            if not np.allclose(M, M.T, atol=1e-9 * (1 + np.abs(M).max(initial=0))):
                raise ValueError(f"sample {idx}: field '{name}' is not symmetric")
            q = Quad(0.5 * (M + M.T))
    return q


def prepare(s: InverseSample, idx: int, l: float, n: int | None = None, check_feasible: bool = False,
            feas_tol: float = 1e-6, J: int | None = 0) -> Prep:
    """Validate one sample (errors name the sample and the field) and precompute what formulations use."""
    c = _arr(s.c, idx, "c", 1)
    if n is None:
        n = c.shape[0]
    if c.shape != (n,):
        raise ValueError(f"sample {idx}: field 'c' has shape {c.shape}, expected ({n},)")
    Q = _quad(s.Q, idx, "Q", n)
    scale = 1 + (np.abs(Q.P).max(initial=0) if not sp.issparse(Q.P) else abs(Q.P).max())
    if n and Q.min_eig() < -1e-9 * scale:
        raise ValueError(f"sample {idx}: field 'Q' is not positive semidefinite")
    u = _arr(s.u, idx, "u", 1)
    if u.shape != (n,):
        raise ValueError(f"sample {idx}: field 'u' has shape {u.shape}, expected ({n},)")

    H, b = _constraint_rows(idx, n, "H", s.H, {"b": s.b}, "m_in")
    B, a, xhat = _constraint_rows(idx, n, "B", s.B, {"a": s.a, "xhat": s.xhat}, "m_eq")

    # learned linear-quadratic features: J = 0 ignores them (nothing learned), None reads what is there
    if J == 0:
        flin, fquad = np.zeros((0, n)), []
    elif (s.feature_lin is None) != (s.feature_quad is None):
        raise ValueError(f"sample {idx}: fields 'feature_lin' and 'feature_quad' must both be given or both be None")
    elif s.feature_lin is None:
        if J:
            raise ValueError(f"sample {idx}: {J} learned features were asked for but the sample has none "
                             f"(fields 'feature_lin', 'feature_quad')")
        flin, fquad = np.zeros((0, n)), []
    else:
        flin = _arr(s.feature_lin, idx, "feature_lin", 2)
        if flin.shape[1:] != (n,) or (J is not None and flin.shape[0] != J):
            raise ValueError(f"sample {idx}: field 'feature_lin' has shape {flin.shape}, expected "
                             f"({J if J is not None else 'J'}, {n})")
        fq = s.feature_quad
        if not (sp.issparse(fq) or isinstance(fq, (list, tuple))):
            fq = _arr(fq, idx, "feature_quad", (2, 3))
        if len(fq) != flin.shape[0]:
            raise ValueError(f"sample {idx}: field 'feature_quad' has {len(fq)} entries, 'feature_lin' {flin.shape[0]}")
        fquad = [_quad(R, idx, f"feature_quad[{j}]", n) for j, R in enumerate(fq)]
    P = Q.plus_diag(l)
    Pu = P.matvec(u)
    slack = b - np.asarray(H @ u).ravel()
    eq_res = xhat - a - np.asarray(B @ u).ravel()
    G = np.array([flin[j] + 2 * R.matvec(u) for j, R in enumerate(fquad)]).reshape(-1, n)
    uscale = 1.0 + np.abs(u).max(initial=0.0)
    if check_feasible and (np.any(slack < -feas_tol * uscale * (1 + np.abs(b)))
                           or np.any(np.abs(eq_res) > feas_tol * uscale * (1 + np.abs(xhat)))):
        warnings.warn(f"sample {idx}: the expert action violates its constraints (max violation "
                      f"{max(-slack.min(initial=0), np.abs(eq_res).max(initial=0)):.3g}); its duality gap "
                      f"is not a certificate of near-optimality", RuntimeWarning, stacklevel=3)
    return Prep(c=c, Q=Q, u=u, H=H, b=b, B=B, a=a, xhat=xhat, P=P, grad=c + 2 * Pu, slack=slack,
                eq_res=eq_res, f_smooth=float(c @ u + u @ Pu), feat_lin=flin, feat_quad=fquad, G=G)


def prepare_all(samples: Sequence[InverseSample], l: float, check_feasible: bool = False,
                J: int | None = 0) -> list[Prep]:
    """Validated samples. J: how many cost features each must carry (0: ignore their features;
    None: as many as the first sample has)."""
    if isinstance(samples, InverseSample):
        samples = [samples]
    if len(samples) == 0:
        raise ValueError("no samples")
    first = prepare(samples[0], 0, l, None, check_feasible, J=J)
    n, J = first.n, first.J
    return [first] + [prepare(s, i, l, n, check_feasible, J=J) for i, s in enumerate(samples[1:], start=1)]


def check_theta(theta, nu, n: int) -> tuple[np.ndarray, np.ndarray]:
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    nu = np.atleast_1d(np.asarray(nu, dtype=float))
    if theta.size == 0:
        theta = theta.reshape(0, n)
    if theta.shape[1] != n or nu.shape != (theta.shape[0],):
        raise ValueError(f"theta must be (K, {n}) and nu (K,), got {theta.shape} and {nu.shape}")
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(nu))):
        raise ValueError("theta / nu contain NaN or inf")
    return theta, nu


def check_l(l: float) -> float:
    l = float(l)
    if not l > 0:
        raise ValueError(f"l must be > 0 (it makes the FOP strongly convex, Prop. 4), got {l}")
    return l


def bar(it, progress, desc, total=None):
    """A progress bar over `it` when progress is on (hiopt_ros.progress: only on a terminal), else `it`."""
    if not progress:
        return it
    return progress_bar(it, desc=desc, total=total, leave=False)


def objective(eps, theta, rho) -> float:
    """(11a): Σ ε_t² + ρ Σ_k ‖θ_k‖²."""
    return float(np.sum(np.asarray(eps) ** 2) + rho * np.sum(np.asarray(theta) ** 2))


def prop4_bound(gaps, l_min: float) -> float:
    """Prop. 4: ‖u*_t − u_t‖ ≤ √(max_t ε_t / l_min), l_min the FOP's strong-convexity modulus."""
    return float(math.sqrt(max(float(np.max(gaps, initial=0.0)), 0.0) / l_min))


def check_feature_box(preps: Sequence[Prep], features: Features, l_min: float) -> None:
    """Raise ValueError unless every sample's P(φ) = Q + l·I + Σ_j φ_j R_j has λ_min ≥ l_min·(1 − 1e-9)
    for every φ in the box (λ_min is concave in φ, so the box's corners decide)."""
    J = features.J
    if J == 0:
        return
    lo, hi = features.lo, features.hi
    if all(s.P.diagonal and all(R.diagonal for R in s.feat_quad) for s in preps):
        Pd = np.array([s.P.P for s in preps])                                  # (T, n)
        Rd = np.array([[R.P for R in s.feat_quad] for s in preps])             # (T, J, n)
        worst = Pd + np.minimum(lo[None, :, None] * Rd, hi[None, :, None] * Rd).sum(axis=1)
        t, i = np.unravel_index(np.argmin(worst), worst.shape)
        lam = float(worst[t, i])
    else:
        import itertools
        lam, t = np.inf, -1
        for k, s in enumerate(preps):
            for corner in itertools.product(*zip(lo, hi)):
                e = s.with_weights(np.array(corner)).P.min_eig()
                if e < lam:
                    lam, t = e, k
    if lam < l_min * (1 - 1e-9):
        raise ValueError(f"the feature weight box {dict(zip(features.names, zip(lo.tolist(), hi.tolist())))} allows a "
                         f"FOP that is not strongly convex (sample {t}: λ_min(P) = {lam:.3g} < l_min = {l_min:.3g}); "
                         f"raise the lower bounds")
