"""All samples' data stacked into flat arrays, so every LP/QP of the package is built in a few
vectorised numpy operations instead of a Python loop over samples (50,000 robot samples: the
loop alone took minutes).

Rows of every sample's H (and B) are stacked into one sparse matrix with, for each row, the sample
it belongs to and its index within the sample; a model builder turns that COO into the columns of
its per-sample blocks by offset arithmetic. Samples may differ in their numbers of rows; n is common.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .data import Prep, coo


@dataclass
class Rowset:
    """Stacked rows of one kind (H or B) of T samples: COO entries and per-row data."""
    count: np.ndarray     # (T,) rows per sample
    start: np.ndarray     # (T+1,) first stacked row of each sample
    sample: np.ndarray    # (R,) sample of each stacked row
    local: np.ndarray     # (R,) index of the row within its sample
    ent_row: np.ndarray   # COO: stacked row of each nonzero
    ent_col: np.ndarray   # COO: input index i (0..n−1)
    ent_val: np.ndarray
    rhs: np.ndarray       # (R,) b (H rows) or x̂ − a (B rows)
    resid: np.ndarray     # (R,) b − Hu (slack) or x̂ − a − Bu (eq_res)

    @classmethod
    def build(cls, mats: Sequence, rhs: Sequence[np.ndarray], resid: Sequence[np.ndarray]) -> "Rowset":
        count = np.array([M.shape[0] for M in mats], dtype=np.int64)
        start = np.r_[0, np.cumsum(count)]
        T = len(mats)
        sample = np.repeat(np.arange(T), count)
        local = np.arange(start[-1]) - start[sample]
        if all(not sp.issparse(M) for M in mats) and len({M.shape for M in mats}) == 1 and T:
            A = np.stack(mats)                         # (T, m, n): one nonzero search for all samples
            t, j, i = np.nonzero(A)
            er, ec, ev = start[t] + j, i, A[t, j, i]
        else:
            parts = [coo(M) for M in mats]
            er = np.concatenate([r + s for (r, _, _), s in zip(parts, start[:-1])]) if parts else np.zeros(0, np.int64)
            ec = np.concatenate([c for _, c, _ in parts]) if parts else np.zeros(0, np.int64)
            ev = np.concatenate([v for _, _, v in parts]) if parts else np.zeros(0)

        def cat(xs):
            return np.concatenate(xs) if len(xs) else np.zeros(0)

        return cls(count, start, sample, local, er.astype(np.int64), ec.astype(np.int64), ev.astype(float),
                   cat(list(rhs)), cat(list(resid)))

    def subset(self, idx: np.ndarray) -> "Rowset":
        rows = np.concatenate([np.arange(self.start[t], self.start[t + 1]) for t in idx]) if len(idx) else \
            np.zeros(0, np.int64)
        new_index = np.full(self.start[-1], -1, np.int64)
        new_index[rows] = np.arange(len(rows))
        keep = new_index[self.ent_row] >= 0
        count = self.count[idx]
        start = np.r_[0, np.cumsum(count)]
        sample = np.repeat(np.arange(len(idx)), count)
        return Rowset(count, start, sample, np.arange(start[-1]) - start[sample], new_index[self.ent_row[keep]],
                      self.ent_col[keep], self.ent_val[keep], self.rhs[rows], self.resid[rows])


@dataclass
class Stack:
    """T prepared samples (weights folded in or not) as flat arrays; see the module docstring."""
    T: int
    n: int
    U: np.ndarray          # (T, n) expert actions
    c: np.ndarray          # (T, n) linear cost
    grad: np.ndarray       # (T, n) c + 2Pu
    G: np.ndarray          # (T, J, n) feature gradients q_j + 2R_j u
    flin: np.ndarray       # (T, J, n) feature linear parts q_j
    P: tuple               # stacked lower-triangle entries of P: (sample, row, col, value)
    R: tuple               # stacked lower-triangle entries of the R_j: (sample, j, row, col, value)
    H: Rowset
    B: Rowset

    @property
    def J(self) -> int:
        return self.G.shape[1]

    @classmethod
    def from_preps(cls, preps: Sequence[Prep]) -> "Stack":
        T, n = len(preps), preps[0].n
        J = preps[0].J
        U = np.array([s.u for s in preps]).reshape(T, n)
        c = np.array([s.c for s in preps]).reshape(T, n)
        grad = np.array([s.grad for s in preps]).reshape(T, n)
        G = np.array([s.G for s in preps]).reshape(T, J, n)
        flin = np.array([s.feat_lin for s in preps]).reshape(T, J, n)
        P = _stack_quads([s.P for s in preps])
        if J:
            parts = [_stack_quads([s.feat_quad[j] for s in preps]) for j in range(J)]
            R = _by_sample(tuple(np.concatenate(x) for x in zip(*[(p[0], np.full(len(p[0]), j), *p[1:])
                                                                   for j, p in enumerate(parts)])))
        else:
            R = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                 np.zeros(0))
        H = Rowset.build([s.H for s in preps], [s.b for s in preps], [s.slack for s in preps])
        B = Rowset.build([s.B for s in preps], [s.xhat - s.a for s in preps], [s.eq_res for s in preps])
        return cls(T, n, U, c, grad, G, flin, P, R, H, B)

    def with_weights(self, phi) -> "Stack":
        """Weights folded in: c += Σφ_j q_j, P += Σφ_j R_j, grad += Σφ_j G_j (features dropped)."""
        phi = np.asarray(phi, float).reshape(-1)
        if phi.size == 0:
            return self
        c = self.c + np.einsum("j,tjn->tn", phi, self.flin)
        grad = self.grad + np.einsum("j,tjn->tn", phi, self.G)
        t, j, r, cc, v = self.R
        P = _by_sample(tuple(np.concatenate([a, b]) for a, b in zip(self.P, (t, r, cc, phi[j] * v))))
        return replace(self, c=c, grad=grad, G=np.zeros((self.T, 0, self.n)), flin=np.zeros((self.T, 0, self.n)),
                       P=P, R=tuple(x[:0] for x in self.R))

    def subset(self, idx) -> "Stack":
        idx = np.asarray(idx, dtype=np.int64)
        remap = np.full(self.T, -1, np.int64)
        remap[idx] = np.arange(len(idx))

        def sub_entries(e, sample_pos=0):
            keep = remap[e[sample_pos]] >= 0
            out = [x[keep] for x in e]
            out[sample_pos] = remap[out[sample_pos]]
            return tuple(out)
        return Stack(len(idx), self.n, self.U[idx], self.c[idx], self.grad[idx], self.G[idx], self.flin[idx],
                     sub_entries(self.P), sub_entries(self.R), self.H.subset(idx), self.B.subset(idx))

    def quad_values(self, X: np.ndarray) -> np.ndarray:
        """xᵀPx per sample for X (T, n), from the stacked lower-triangle entries."""
        t, r, c, v = self.P
        w = np.where(r == c, 1.0, 2.0) * v * X[t, r] * X[t, c]
        return np.bincount(t, weights=w, minlength=self.T)


def _by_sample(entries: tuple) -> tuple:
    """Entries (sample first) sorted by sample (stable), so a range of samples is a range of entries."""
    order = np.argsort(entries[0], kind="stable")
    return tuple(x[order] for x in entries)


def _stack_quads(quads) -> tuple:
    """(sample, row, col, value) of the lower triangles of a list of Quad."""
    if all(q.diagonal for q in quads):
        D = np.array([q.P for q in quads])               # (T, n)
        t, i = np.nonzero(D)
        return t.astype(np.int64), i.astype(np.int64), i.astype(np.int64), D[t, i]
    parts = [q.lower_coo() for q in quads]
    t = np.concatenate([np.full(len(r), k, np.int64) for k, (r, _, _) in enumerate(parts)])
    return (t, np.concatenate([r for r, _, _ in parts]).astype(np.int64),
            np.concatenate([c for _, c, _ in parts]).astype(np.int64), np.concatenate([v for _, _, v in parts]))


def _slice_rows(rs: Rowset, t0: int, t1: int) -> Rowset:
    r0, r1 = int(rs.start[t0]), int(rs.start[t1])
    ent_sample = rs.sample[rs.ent_row] if len(rs.ent_row) else np.zeros(0, np.int64)
    e0, e1 = np.searchsorted(ent_sample, t0, "left"), np.searchsorted(ent_sample, t1, "left")
    return Rowset(rs.count[t0:t1], rs.start[t0:t1 + 1] - r0, rs.sample[r0:r1] - t0, rs.local[r0:r1],
                  rs.ent_row[e0:e1] - r0, rs.ent_col[e0:e1], rs.ent_val[e0:e1], rs.rhs[r0:r1], rs.resid[r0:r1])


def slice_stack(st: Stack, t0: int, t1: int) -> Stack:
    """Samples t0..t1−1 of a stack (contiguous: cheap, no search over rows)."""
    def ent(e, pos=0):
        s = e[pos]
        a, b = np.searchsorted(s, t0, "left"), np.searchsorted(s, t1, "left")
        out = [x[a:b] for x in e]
        out[pos] = out[pos] - t0
        return tuple(out)
    return Stack(t1 - t0, st.n, st.U[t0:t1], st.c[t0:t1], st.grad[t0:t1], st.G[t0:t1], st.flin[t0:t1],
                 ent(st.P), ent(st.R), _slice_rows(st.H, t0, t1), _slice_rows(st.B, t0, t1))
