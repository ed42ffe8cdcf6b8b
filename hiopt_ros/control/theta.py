"""θ files: the one schema for fitted lower-level costs, read by the controller and written by offline.fit.

A θ file holds the K learned ReLU terms of the lower-level cost, Σ_k max(α_kᵀu − β_k, 0)
(Eq. 32a; θ_k, ν_k of Problem 11), the quadratic regulariser l of Eq. 10, optionally the cost
weights the FOP runs with (some of them learned with the ReLU terms), the subgoal definition the
fit used, and provenance.

    schema: hiopt.theta/2
    case_study: robot            # which FOP the terms belong to
    input_names: [v_mps, omega_radps]
    relu_terms:
      alpha: [[a_1v, a_1w], ...] # K x n_u
      beta: [b_1, ...]           # K
    l: 0.01                      # weight of l*||u||^2 (added to the FOP's input cost)
    cost_weights:                # optional: the FOP's weights (robot: Eq. 32a's c_p, c_h, c_u);
      c_p: 100.0                 #   absent = the FOP keeps the weights of its parameter file
      c_h: 212.0
      c_u: 0.31
    learned_weights: [c_h, c_u]  # which of cost_weights were learned (the rest were fixed)
    subgoal:                     # optional: how the fit defined x̂_t (the stack should propose the same)
      definition: expert_plan    #   the expert's planned position `steps_ahead` steps ahead
      steps_ahead: 3
      Ts_s: 0.1
      lookahead_m: 0.3           #   ≈ steps_ahead·Ts·v_max: a geometric planner's matching look-ahead
    provenance: {...}            # free-form: bags, hashes, method, gaps, validation, ...

Files with `schema: hiopt.theta/1` (no cost_weights, no subgoal) still load. Writing is atomic
(temporary file + rename), so a reader never sees a half-written θ. The first line written
carries the SHA-256 of the rest of the file, so a file that was truncated or altered afterwards
(an interrupted copy, a full disk, an editor) is refused instead of loading different numbers;
files without that line (older or hand-written ones) load as before.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SCHEMA = "hiopt.theta/2"
#: schemas load_theta reads (older ones have fewer optional fields)
READABLE_SCHEMAS = ("hiopt.theta/1", SCHEMA)
#: first line of a written θ file; the hex digest is the SHA-256 of every byte after that line
INTEGRITY_PREFIX = "# hiopt θ file; sha256 of the lines below: "
_INTEGRITY_NOTE = " (delete this line to load a hand-edited file)"


@dataclass
class Theta:
    """K ReLU terms max(alpha[k] @ u - beta[k], 0), the quadratic weight l (Eq. 10), and optionally
    the cost weights the FOP runs with and the subgoal definition of the fit."""

    alpha: np.ndarray
    beta: np.ndarray
    l: float = 0.0  # noqa: E741 (Eq. 10's l)
    case_study: str = "robot"
    input_names: list[str] = field(default_factory=lambda: ["v_mps", "omega_radps"])
    provenance: dict[str, Any] = field(default_factory=dict)
    #: weights of the FOP's own cost terms (robot: c_p, c_h, c_u of Eq. 32a); empty = keep the FOP's
    cost_weights: dict[str, float] = field(default_factory=dict)
    #: names in cost_weights that were learned (the others were held fixed during the fit)
    learned_weights: list[str] = field(default_factory=list)
    #: how the fit defined the subgoal x̂_t (definition, steps_ahead, Ts_s, lookahead_m); empty = unknown
    subgoal: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        alpha = np.atleast_2d(np.asarray(self.alpha, dtype=float))
        beta = np.asarray(self.beta, dtype=float).reshape(-1)
        if alpha.size == 0:
            alpha = alpha.reshape(0, len(self.input_names))
        if alpha.ndim != 2 or alpha.shape[0] != beta.shape[0]:
            raise ValueError(f"θ: alpha has {alpha.shape[0]} rows but beta has {beta.shape[0]} entries")
        if alpha.shape[1] != len(self.input_names):
            raise ValueError(f"θ: alpha has {alpha.shape[1]} columns but input_names lists "
                             f"{len(self.input_names)} inputs {list(self.input_names)}")
        if not (np.all(np.isfinite(alpha)) and np.all(np.isfinite(beta)) and np.isfinite(self.l)):
            raise ValueError("θ: alpha, beta and l must be finite")
        if self.l < 0:
            raise ValueError(f"θ: l must be >= 0, got {self.l}")
        self.alpha, self.beta, self.l = alpha, beta, float(self.l)
        if not isinstance(self.cost_weights, dict):
            raise ValueError("θ: cost_weights must be a mapping of weight names to numbers")
        weights = {}
        for name, val in self.cost_weights.items():
            try:
                val = float(val)
            except (TypeError, ValueError):
                raise ValueError(f"θ: cost weight {name!r} must be a number, got {val!r}") from None
            if not (np.isfinite(val) and val >= 0):
                raise ValueError(f"θ: cost weight {name!r} must be finite and >= 0, got {val}")
            weights[str(name)] = val
        self.cost_weights = weights
        unknown = [w for w in self.learned_weights if w not in weights]
        if unknown:
            raise ValueError(f"θ: learned_weights {unknown} are not in cost_weights {sorted(weights)}")
        self.learned_weights = [str(w) for w in self.learned_weights]
        if not isinstance(self.subgoal, dict):
            raise ValueError("θ: subgoal must be a mapping (definition, steps_ahead, ...)")

    @property
    def K(self) -> int:
        return int(self.alpha.shape[0])

    def relu_penalty(self, u: np.ndarray) -> float:
        """Σ_k max(α_kᵀu − β_k, 0) at u."""
        return float(np.maximum(self.alpha @ np.asarray(u, float) - self.beta, 0.0).sum())

    @classmethod
    def zero(cls, K: int = 0, n_u: int = 2, **kw: Any) -> "Theta":
        """The unchanged FOP: K inactive terms (α = 0, β = 0) and l = 0."""
        return cls(alpha=np.zeros((K, n_u)), beta=np.zeros(K), **kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "case_study": self.case_study,
            "input_names": list(self.input_names),
            "relu_terms": {"alpha": self.alpha.tolist(), "beta": self.beta.tolist()},
            "l": self.l,
            "cost_weights": dict(self.cost_weights),
            "learned_weights": list(self.learned_weights),
            "subgoal": _plain(self.subgoal),
            "provenance": _plain(self.provenance),
        }


def load_theta(path: str | os.PathLike) -> Theta:
    """Read a θ file; errors name the file and the offending field."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"θ file not found: {path}") from None
    except OSError as exc:
        raise ValueError(f"θ file {path}: cannot read it ({exc.strerror or exc})") from None
    _check_integrity(path, data)
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"θ file {path} is not a text (YAML) file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"θ file {path} is not valid YAML: {'; '.join(str(exc).split(chr(10)))}") from None
    if not isinstance(raw, dict) or raw.get("schema") not in READABLE_SCHEMAS:
        found = raw.get("schema") if isinstance(raw, dict) else None
        raise ValueError(f"θ file {path}: expected 'schema: {SCHEMA}' (or an older {', '.join(READABLE_SCHEMAS[:-1])}) "
                         f"at the top, found {found!r}")
    try:
        terms = raw["relu_terms"]
        return Theta(
            alpha=terms["alpha"], beta=terms["beta"], l=float(raw.get("l", 0.0)),
            case_study=raw.get("case_study", "robot"),
            input_names=list(raw.get("input_names", ["v_mps", "omega_radps"])),
            provenance=raw.get("provenance") or {},
            cost_weights=raw.get("cost_weights") or {},
            learned_weights=list(raw.get("learned_weights") or []),
            subgoal=raw.get("subgoal") or {},
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"θ file {path}: missing or malformed field {exc}") from None
    except ValueError as exc:
        raise ValueError(f"θ file {path}: {exc}") from None


def save_theta(path: str | os.PathLike, theta: Theta) -> Path:
    """Write θ atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"# hiopt fitted θ (schema {SCHEMA}); regenerate with `python -m offline.fit`, see README\n"
    body += yaml.safe_dump(theta.to_dict(), sort_keys=False)
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    text = f"{INTEGRITY_PREFIX}{digest}{_INTEGRITY_NOTE}\n{body}"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_integrity(path: Path, data: bytes) -> None:
    """Refuse a file whose integrity line (written by save_theta) does not match its content."""
    first, _, body = data.partition(b"\n")
    prefix = INTEGRITY_PREFIX.encode("utf-8")
    if not first.startswith(prefix):
        return  # an older or hand-written file: nothing to check against
    recorded = first[len(prefix):len(prefix) + 64].decode("ascii", "replace")
    if hashlib.sha256(body).hexdigest() != recorded:
        raise ValueError(f"θ file {path} does not match the sha256 on its first line: it was truncated or "
                         f"changed after it was written ({len(data)} bytes); rewrite it with offline.fit, or "
                         "delete its first line to load a hand-edited file")


def _plain(obj: Any) -> Any:
    """numpy scalars/arrays → YAML-safe Python values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
