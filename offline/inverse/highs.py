"""The HiGHS adapter: one function that solves a sparse LP/QP given as arrays, and a sparse row builder.

Every LP and QP of the package (forward problems, best duals, θ-steps) goes through `solve`, so
solver options, the QP regularisation ladder and HiGHS' start-up banner are handled once.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from hiopt_ros.stdio import mute_c_stdout

#: qp_regularization_value ladder for HiGHS QPs (forward problems): the regularisation perturbs
#: the solution (1e-5 moved u by 1e-5 at l = 1e-2), so start near zero; larger values only if that fails
QP_REGULARISATION = (1e-10, 1e-7, 1e-5)

_BANNER_SHOWN = False


def new_highs():
    """A silent HiGHS instance. The first construction in a process prints a licence banner to
    stdout (C level), which would interleave with our reports: swallowed once."""
    global _BANNER_SHOWN
    import highspy

    if _BANNER_SHOWN:
        h = highspy.Highs()
    else:
        with mute_c_stdout():
            h = highspy.Highs()
        _BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    return h


def build(cost, A, row_lo, row_hi, col_lo, col_hi, hessian=None, *, ipm: bool = False,
          time_limit_s: float | None = None, threads: int | None = None, qp_iteration_limit: int | None = None):
    """A HiGHS instance holding min ½xᵀHx + costᵀx s.t. row_lo ≤ Ax ≤ row_hi, col_lo ≤ x ≤ col_hi.

    A: scipy.sparse (rows × columns). hessian: None (an LP), or a sparse symmetric matrix H whose
    lower triangle is passed (HiGHS' triangular format). ipm: interior point without crossover for
    large LPs. Returns (highs, is_qp); `run` solves it.
    """
    import highspy

    h = new_highs()
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(max(time_limit_s, 0.1)))
    if qp_iteration_limit is not None:
        h.setOptionValue("qp_iteration_limit", int(qp_iteration_limit))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    A = sp.csc_matrix(A)
    A.sort_indices()
    nv = len(cost)
    lp = highspy.HighsLp()
    lp.num_col_ = nv
    lp.num_row_ = A.shape[0]
    lp.col_cost_ = np.asarray(cost, float)
    lp.col_lower_ = np.asarray(col_lo, float)
    lp.col_upper_ = np.asarray(col_hi, float)
    lp.row_lower_ = np.asarray(row_lo, float)
    lp.row_upper_ = np.asarray(row_hi, float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(float)
    model = highspy.HighsModel()
    model.lp_ = lp
    is_qp = hessian is not None and sp.csc_matrix(hessian).count_nonzero() > 0
    if is_qp:
        L = sp.tril(sp.csc_matrix(hessian), format="csc")
        L.eliminate_zeros()
        L.sort_indices()
        model.hessian_.dim_ = nv
        model.hessian_.format_ = highspy.HessianFormat.kTriangular
        model.hessian_.start_ = L.indptr.astype(np.int32)
        model.hessian_.index_ = L.indices.astype(np.int32)
        model.hessian_.value_ = L.data.astype(float)
    elif ipm:   # large LPs: interior point without crossover is ~3x faster than simplex here
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "off")
    h.passModel(model)
    return h, is_qp


def run(h, is_qp: bool = False):
    """Solve a built (or modified) model; (status string, x or None, objective). A re-run after
    adding rows warm-starts from the previous basis (simplex)."""
    import highspy

    # HiGHS' active-set QP solver can stall on degenerate QPs; a stronger regularisation of its
    # reduced Hessian is the fallback
    for reg in (QP_REGULARISATION if is_qp else (None,)):
        if reg is not None:
            h.setOptionValue("qp_regularization_value", reg)
            h.clearSolver()
        h.run()
        st = h.getModelStatus()
        if st == highspy.HighsModelStatus.kOptimal:
            break
    name = h.modelStatusToString(st)
    if st != highspy.HighsModelStatus.kOptimal:
        return name, None, math.nan
    return "optimal", np.array(h.getSolution().col_value), float(h.getInfo().objective_function_value)


def solve(cost, A, row_lo, row_hi, col_lo, col_hi, hessian=None, **options):
    """Build and run once (see build for the arguments); (status string, x or None, objective)."""
    h, is_qp = build(cost, A, row_lo, row_hi, col_lo, col_hi, hessian, **options)
    return run(h, is_qp)


def add_rows(h, A_new, lo, hi) -> None:
    """Append rows (sparse, over the model's columns) to a built model."""
    A_new = sp.csr_matrix(A_new)
    A_new.sort_indices()
    h.addRows(A_new.shape[0], np.asarray(lo, float), np.asarray(hi, float), A_new.nnz,
              A_new.indptr.astype(np.int32), A_new.indices.astype(np.int32), A_new.data.astype(float))


class Rows:
    """Sparse constraint rows with bounds, added in vectorised blocks (COO triplets).

    `block(n_rows, r, c, v, lo, hi)` appends n_rows rows; r are row indices local to the block
    (0..n_rows−1), c global column indices. `matrix(ncols)` → (csc A, row_lo, row_hi).
    """

    def __init__(self):
        self.r, self.c, self.v, self.lo, self.hi = [], [], [], [], []
        self.n = 0

    def block(self, n_rows: int, r, c, v, lo, hi) -> int:
        """Append n_rows rows; returns the index of the first."""
        first = self.n
        self.r.append(np.asarray(r, np.int64).ravel() + first)
        self.c.append(np.asarray(c, np.int64).ravel())
        self.v.append(np.asarray(v, float).ravel())
        self.lo.append(np.broadcast_to(np.asarray(lo, float), (n_rows,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, float), (n_rows,)))
        self.n += n_rows
        return first

    def add(self, cols, vals, lo, hi) -> int:
        """Append one row."""
        cols = np.asarray(cols, np.int64).ravel()
        return self.block(1, np.zeros(cols.shape, np.int64), cols, vals, lo, hi)

    def matrix(self, ncols: int):
        r = np.concatenate(self.r) if self.r else np.zeros(0, np.int64)
        c = np.concatenate(self.c) if self.c else np.zeros(0, np.int64)
        v = np.concatenate(self.v) if self.v else np.zeros(0)
        lo = np.concatenate(self.lo) if self.lo else np.zeros(0)
        hi = np.concatenate(self.hi) if self.hi else np.zeros(0)
        return sp.csc_matrix((v, (r, c)), shape=(self.n, ncols)), lo, hi
