"""What a solve returns: the end state, the cost counters and, when asked for, a dense solution."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, fields

import numpy as np


@dataclass
class SolverStats:
    """Cost counters of one or more solves (they add up with `+`).

    `n_rejected` is None for scipy's methods, which do not report rejected steps.
    """

    n_rhs: int = 0  # right-hand-side evaluations (for an augmented system: of that system)
    n_jac: int = 0  # Jacobian evaluations
    n_lu: int = 0  # LU decompositions
    n_accepted: int = 0
    n_rejected: int | None = 0

    def __add__(self, other: "SolverStats") -> "SolverStats":
        rejected = (
            None
            if self.n_rejected is None or other.n_rejected is None
            else self.n_rejected + other.n_rejected
        )
        return SolverStats(
            self.n_rhs + other.n_rhs,
            self.n_jac + other.n_jac,
            self.n_lu + other.n_lu,
            self.n_accepted + other.n_accepted,
            rejected,
        )

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class PiecewisePolynomial:
    """Dense output of an explicit Runge-Kutta solve: one polynomial per accepted step.

    On step i, y(t_i + x h_i) = y_i + Σ_k Q_i[:, k] x^(k+1), x in [0, 1] (Q_i includes the factor h_i).
    Works in either time direction.
    """

    def __init__(self, t_nodes: list[float], y_nodes: list[np.ndarray], hs: list[float], Qs: list):
        self.t_nodes = np.asarray(t_nodes)
        self._t = list(t_nodes)  # Python floats: the scalar path below stays out of numpy
        self._descending = len(t_nodes) > 1 and t_nodes[-1] < t_nodes[0]
        # bisect wants ascending keys; for a backward solve search on -t.
        self._keys = list(-self.t_nodes if self._descending else self.t_nodes)
        self._y = y_nodes
        self._h = hs
        self._Q = Qs
        self._powers = np.arange(1, Qs[0].shape[1] + 1) if Qs else np.arange(1, 2)
        self._stacked = None  # (y, h, Q) as arrays, built on the first `many` call

    @property
    def t_span(self) -> tuple[float, float]:
        return float(self.t_nodes[0]), float(self.t_nodes[-1])

    def _index(self, t: float) -> int:
        key = -t if self._descending else t
        return min(max(bisect_right(self._keys, key) - 1, 0), len(self._h) - 1)

    def __call__(self, t: float) -> np.ndarray:
        """The state at one time t, shape (D,)."""
        i = self._index(t)
        x = (t - self._t[i]) / self._h[i]
        return self._y[i] + self._Q[i] @ (x**self._powers)

    def many(self, ts: np.ndarray) -> np.ndarray:
        """The state at many times, shape (len(ts), D), in one vectorised evaluation."""
        if self._stacked is None:
            self._stacked = (np.array(self._y), np.array(self._h), np.array(self._Q))
        y, h, Q = self._stacked
        ts = np.asarray(ts, dtype=np.float64)
        keys = -ts if self._descending else ts
        idx = np.clip(np.searchsorted(self._keys, keys, side="right") - 1, 0, len(self._h) - 1)
        x = (ts - self.t_nodes[idx]) / h[idx]
        powers = x[:, None] ** self._powers
        return y[idx] + np.matmul(Q[idx], powers[:, :, None])[:, :, 0]


class ScipyDense:
    """Dense output of a scipy solve (a `scipy.integrate.OdeSolution`)."""

    def __init__(self, ode_solution):
        self._sol = ode_solution

    @property
    def t_span(self) -> tuple[float, float]:
        return float(self._sol.ts[0]), float(self._sol.ts[-1])

    @property
    def t_nodes(self) -> np.ndarray:
        return np.asarray(self._sol.ts)

    def __call__(self, t: float) -> np.ndarray:
        return self._sol(t)

    def many(self, ts: np.ndarray) -> np.ndarray:
        return self._sol(np.asarray(ts)).T


@dataclass
class Trajectory:
    """Result of integrating from `t_start` to `t_end`.

    y_end : ndarray, shape (D,), the state at t_end.
    dense : callable t -> (D,), or None when no dense output was asked for.
    h_last : the last step size tried, to start the next segment of a piecewise solve.
    y_eval : ndarray, shape (M, D), the states at the `t_eval` times asked for, or None.
    """

    t_start: float
    t_end: float
    y_end: np.ndarray
    stats: SolverStats
    dense: PiecewisePolynomial | ScipyDense | None
    h_last: float | None
    method: str
    y_eval: np.ndarray | None = None
