"""Imitation metrics of the paper's Tables 4–5, for every case study: how close the actions of a
lower level are to the expert's.

All functions take stacked actions (T, n) — T decisions of n inputs (robot: (v, ω); AMoD: the
rebalancing flows of every edge; inventory: orders and shipments) — and the expert's (T, n).
"""
from __future__ import annotations

import numpy as np


def _pair(actions, expert) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actions, float)
    e = np.asarray(expert, float)
    a = a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)
    e = e.reshape(len(e), -1) if e.ndim else e.reshape(1, 1)
    if a.shape != e.shape:
        raise ValueError(f"actions {a.shape} and expert actions {e.shape} must have the same shape")
    return a, e


def cosine_similarity(actions, expert) -> float:
    """Cosine similarity of the stacked action sequences (T, n), all samples and inputs as one
    vector (the paper's Tables 4–5 metric); defined even when single actions are zero (the robot
    standing at the goal). NaN if either sequence is all zeros."""
    a, e = _pair(actions, expert)
    a, e = a.ravel(), e.ravel()
    na, ne = np.linalg.norm(a), np.linalg.norm(e)
    # clipped: identical sequences can round to 1.0000000000000002
    return float(np.clip(a @ e / (na * ne), -1.0, 1.0)) if na > 0 and ne > 0 else float("nan")


def mean_l2(actions, expert) -> float:
    """Mean per-decision Euclidean distance ‖u_t − u_t^expert‖₂ (NaN for no decisions)."""
    a, e = _pair(actions, expert)
    return float(np.mean(np.linalg.norm(a - e, axis=1))) if len(a) else float("nan")


def mean_manhattan(actions, expert) -> float:
    """Mean per-decision Manhattan (L1) distance ‖u_t − u_t^expert‖₁ (Table 5's Manhattan distance)."""
    a, e = _pair(actions, expert)
    return float(np.mean(np.abs(a - e).sum(axis=1))) if len(a) else float("nan")


def action_metrics(actions, expert) -> dict[str, float]:
    """{"cosine", "l2", "l1"}: cosine similarity of the stacked actions, mean L2 and mean L1
    (= Manhattan) distance per decision — the one set of numbers every case study reports."""
    return {"cosine": cosine_similarity(actions, expert), "l2": mean_l2(actions, expert),
            "l1": mean_manhattan(actions, expert)}
