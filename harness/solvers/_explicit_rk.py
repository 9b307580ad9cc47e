"""Embedded explicit Runge-Kutta pairs, vectorised over the whole state, with dense output.

A method is its tableau (taken from scipy's `RK45` / `RK23`, so the arithmetic is that of
`solve_ivp`), and one loop steps any of them. The loop is written for low overhead per step, since a
Neural ODE batch makes each step a handful of small matrix products: the Python around them is the cost.
Step-size control follows scipy's (RMS error norm, safety 0.9, factors in [0.2, 10]).
A `QuadratureTailSystem` (solvers/_quadrature_tail.py) has the quadrature tail of its state summed once per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.integrate import RK23, RK45

from ..errors import SolverError
from ._quadrature_tail import QuadratureTailSystem
from ._trajectory import PiecewisePolynomial, SolverStats, Trajectory

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

    @cached_property
    def coefficients(self) -> np.ndarray:
        """Every combination a step forms, y + h Σⱼ aᵢⱼ Kⱼ, as a row of this (s + 2, s + 2) matrix
        multiplying the rows [y, K₀, ..., K_s]: rows 0..s-1 the stages, row s the solution, row s+1
        the error estimate (which has no y). Column 0 multiplies y; the others are scaled by h."""
        s = len(self.B)
        coefficients = np.zeros((s + 2, s + 2))
        coefficients[: s + 1, 0] = 1.0
        coefficients[:s, 1 : self.A.shape[1] + 1] = self.A
        coefficients[s, 1 : s + 1] = self.B
        coefficients[s + 1, 1:] = self.E
        coefficients.flags.writeable = False
        return coefficients


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
    """Integrate dy/dt = rhs(t, y) from t0 to t1 (either direction). y0: (D,).

    `rhs` may be a `QuadratureTailSystem` (without `dense`): its quadrature tail is then summed once per step
    instead of evaluated at every stage, with the same steps and, up to rounding, the same result.
    """
    # A stage that overflows is expected when a solve blows up (e.g. a backsolve of stiff
    # dynamics): it is rejected, and a solve that cannot recover raises SolverError, so numpy's
    # overflow warnings would only add noise.
    with np.errstate(over="ignore", invalid="ignore"):
        return _integrate_rk(rhs, t0, t1, y0, tableau, rtol, atol, dense, h0, max_steps)


def _integrate_rk(rhs, t0, t1, y0, tableau, rtol, atol, dense, h0, max_steps) -> Trajectory:
    split = rhs if isinstance(rhs, QuadratureTailSystem) else None
    if split is not None and dense:
        raise ValueError("a QuadratureTailSystem has no dense output: integrate its joint_rhs instead")
    C, P = tableau.C, tableau.P
    n_stages = len(tableau.B)
    # Each stage's input, the new solution and the error estimate are each one product of a row of
    # `coefficients` with the rows [y, K₀, ..., K_s] of `Y`: at these sizes one call instead of two
    # (product, then add y) is worth having.
    coefficients = tableau.coefficients
    direction = 1.0 if t1 >= t0 else -1.0
    exponent = -1.0 / (tableau.error_order + 1)
    y = y_whole = np.array(y0, dtype=np.float64)
    if split is not None:
        # u, the head, is stepped as usual; q, the tail, from the quadrature sums of each step
        y, q = y[: split.n_head], y[split.n_head :]
        abs_q = np.abs(q)
    Y = np.empty((n_stages + 2, y.size))
    Y[0] = y
    K = Y[1:]
    if split is None:

        def stage_rhs(t, y, stage, out):
            out[:] = rhs(t, y)

        K[0] = f0 = rhs(t0, y)
    else:
        stage_rhs = split.stage_rhs
        if h0 is None:  # the step-size heuristic needs q' too
            f0 = split.joint_rhs(t0, y_whole, slot=0)
            K[0] = f0[: split.n_head]
        else:
            stage_rhs(t0, y, 0, K[0])
    n_rhs = 1
    if h0 is None:
        # the heuristic sees the whole state; a split system's slot 1 is free until the first step
        whole = rhs if split is None else (lambda t, y: split.joint_rhs(t, y, slot=1))
        h_abs = initial_step(whole, t0, y_whole, f0, direction, tableau.error_order, rtol, atol)
        n_rhs += 1
    else:
        h_abs = abs(h0)
    n_total = y.size if split is None else y.size + q.size  # the error norm's RMS is over both
    # The views each stage uses, made once: hc is rewritten in place each step, and the views
    # follow. Per stage: (index, node c as a Python float, its row of hc, the rows of Y it combines,
    # where its derivative goes).
    hc = coefficients.copy()
    scaled = hc[:, 1:]
    stages = [(s, float(C[s]), hc[s, : s + 1], Y[: s + 1], K[s]) for s in range(1, n_stages)]
    solution_row, Y_solution = hc[n_stages, : n_stages + 1], Y[: n_stages + 1]
    error_row, quadrature_rows = hc[n_stages + 1, 1:], hc[n_stages:, 1:]
    K_last = K[n_stages]
    abs_y = np.abs(y)
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
        np.multiply(coefficients[:, 1:], h, out=scaled)
        for s, c, row, previous, k in stages:
            stage_rhs(t + c * h, row @ previous, s, k)
        y_new = solution_row @ Y_solution
        stage_rhs(t_new, y_new, n_stages, K_last)
        n_rhs += n_stages
        abs_new = np.abs(y_new)
        scale = np.maximum(abs_y, abs_new)
        scale *= rtol
        scale += atol
        error = error_row @ K
        error /= scale
        sum_of_squares = float(np.dot(error, error))
        if split is not None:
            q_step, q_error = split.quadrature(quadrature_rows)  # the update and error rows
            q_new = q + q_step
            abs_q_new = np.abs(q_new)
            q_error /= atol + rtol * np.maximum(abs_q, abs_q_new)
            sum_of_squares += float(np.dot(q_error, q_error))
        error_norm = math.sqrt(sum_of_squares / n_total)
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
            Y[0] = y
            K[0] = K_last
            if split is not None:
                q, abs_q = q_new, abs_q_new
                split.carry(n_stages, 0)
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
    y_end = y if split is None else np.concatenate((y, q))
    return Trajectory(t0, t1, y_end, stats, poly, h_abs, tableau.name)
