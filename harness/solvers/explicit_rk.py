"""Embedded explicit Runge-Kutta pairs, vectorised over the whole state, with dense output.

A method is its tableau (taken from scipy's `RK45` / `RK23`, so the arithmetic is that of
`solve_ivp`), and one loop steps any of them. The loop is written for low overhead per step, since a
Neural ODE batch makes each step a handful of small matrix products: the Python around them is the cost.
Step-size control follows scipy's (RMS error norm, safety 0.9, factors in [0.2, 10]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import RK23, RK45

from ..errors import SolverError
from .trajectory import PiecewisePolynomial, SolverStats, Trajectory

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0


@dataclass(frozen=True)
class Tableau:
    """An embedded RK pair with FSAL and a dense-output matrix P (stages x polynomial degree)."""

    name: str
    A: np.ndarray  # (s, s)
    B: np.ndarray  # (s,)
    C: np.ndarray  # (s,)
    E: np.ndarray  # (s + 1,), error weights including the FSAL stage
    P: np.ndarray  # (s + 1, degree)
    error_order: int  # order of the embedded (error) method


def _from_scipy(name, cls) -> Tableau:
    return Tableau(name, cls.A, cls.B, cls.C, cls.E, cls.P, cls.error_estimator_order)


TABLEAUS = {
    "DP5": _from_scipy("DP5", RK45),  # Dormand-Prince 5(4), as Julia's DP5 and scipy's RK45
    "BS3": _from_scipy("BS3", RK23),  # Bogacki-Shampine 3(2), as Julia's BS3 and scipy's RK23
}


def _rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.dot(x, x)) / x.size)


def initial_step(rhs, t0, y0, f0, direction, order, rtol, atol) -> float:
    """Hairer, Nørsett & Wanner's starting step (as scipy's `select_initial_step`)."""
    scale = atol + np.abs(y0) * rtol
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    y1 = y0 + h0 * direction * f0
    f1 = rhs(t0 + h0 * direction, y1)
    d2 = _rms((f1 - f0) / scale) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def integrate_rk(
    rhs,
    t0: float,
    t1: float,
    y0: np.ndarray,
    tableau: Tableau,
    rtol: float,
    atol: float | np.ndarray,
    *,
    dense: bool = False,
    h0: float | None = None,
    max_steps: int = 1_000_000,
) -> Trajectory:
    """Integrate dy/dt = rhs(t, y) from t0 to t1 (either direction). y0: (D,)."""
    # A stage that overflows is expected when a solve blows up (e.g. a backsolve of stiff
    # dynamics): it is rejected, and a solve that cannot recover raises SolverError, so numpy's
    # overflow warnings would only add noise.
    with np.errstate(over="ignore", invalid="ignore"):
        return _integrate_rk(rhs, t0, t1, y0, tableau, rtol, atol, dense, h0, max_steps)


def _integrate_rk(rhs, t0, t1, y0, tableau, rtol, atol, dense, h0, max_steps) -> Trajectory:
    A, B, C, E, P = tableau.A, tableau.B, tableau.C, tableau.E, tableau.P
    n_stages = len(B)
    # A, B and E stacked, so that one multiplication by h per step scales every coefficient:
    # rows 0..s-1 the stages, row s the solution, row s+1 the error estimate.
    coefficients = np.zeros((n_stages + 2, n_stages + 1))
    coefficients[:n_stages, : A.shape[1]] = A
    coefficients[n_stages, :n_stages] = B
    coefficients[n_stages + 1] = E
    stage_nodes = [(s, float(C[s])) for s in range(1, n_stages)]  # Python floats: cheaper scalars
    direction = 1.0 if t1 >= t0 else -1.0
    exponent = -1.0 / (tableau.error_order + 1)
    y = np.array(y0, dtype=np.float64)
    abs_y = np.abs(y)
    K = np.empty((n_stages + 1, y.size))
    K[0] = rhs(t0, y)
    n_rhs = 1
    if h0 is None:
        h_abs = initial_step(rhs, t0, y, K[0], direction, tableau.error_order, rtol, atol)
        n_rhs += 1
    else:
        h_abs = abs(h0)
    t = t0
    n_accepted = n_rejected = 0
    retrying = False  # the current step was rejected at least once: do not grow h on acceptance
    nonfinite = False  # the last rejection was for an inf or NaN stage
    ts, ys, hs, Qs = [t0], [], [], []
    while direction * (t1 - t) > 0:
        if n_accepted + n_rejected >= max_steps:
            raise SolverError(tableau.name, t, t1, f"more than {max_steps} steps")
        if h_abs < 10 * abs(math.nextafter(t, direction * math.inf) - t):
            reason = "the state became inf or NaN" if nonfinite else "step size fell below the spacing of floats"
            raise SolverError(tableau.name, t, t1, reason)
        h = h_abs * direction
        t_new = t + h
        if direction * (t_new - t1) > 0:
            t_new = t1
            h = t1 - t
            h_abs = abs(h)
        hc = h * coefficients
        for s, c in stage_nodes:
            K[s] = rhs(t + c * h, y + hc[s, :s] @ K[:s])
        y_new = y + hc[n_stages, :n_stages] @ K[:n_stages]
        K[n_stages] = rhs(t_new, y_new)
        n_rhs += n_stages
        abs_new = np.abs(y_new)
        scale = np.maximum(abs_y, abs_new)
        scale *= rtol
        scale += atol
        error = hc[n_stages + 1] @ K
        error /= scale
        error_norm = math.sqrt(float(np.dot(error, error)) / error.size)
        # an inf or NaN anywhere in the stages makes error_norm non-finite: never accepted
        if error_norm < 1.0:
            factor = MAX_FACTOR if error_norm == 0 else min(MAX_FACTOR, SAFETY * error_norm**exponent)
            if retrying:
                factor = min(1.0, factor)
                retrying = False
            if dense:
                ys.append(y)
                hs.append(h)
                Qs.append(K.T @ (h * P))
                ts.append(t_new)
            t, y, abs_y = t_new, y_new, abs_new
            K[0] = K[n_stages]
            n_accepted += 1
            h_abs *= factor
        else:
            nonfinite = not math.isfinite(error_norm)
            if nonfinite:
                error_norm = 1e10  # an overflowing stage: shrink hard and retry
            h_abs *= max(MIN_FACTOR, SAFETY * error_norm**exponent)
            n_rejected += 1
            retrying = True
    stats = SolverStats(n_rhs=n_rhs, n_accepted=n_accepted, n_rejected=n_rejected)
    poly = PiecewisePolynomial(ts, ys, hs, Qs) if dense and hs else None
    return Trajectory(t0, t1, y, stats, poly, h_abs, tableau.name)
