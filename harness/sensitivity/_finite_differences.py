"""FiniteDifferences: fourth-order central differences of the solved loss (a reference engine)."""

from __future__ import annotations

import numpy as np

from .._forward import SolveOptions, solve_forward
from ..solvers import SolverStats
from .algorithms import FiniteDifferences
from ._registry import register_engine
from ._result import GradientResult

# f'(x) ≈ [f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)] / (12 h), truncation error O(h⁴)
STENCIL = ((-2.0, 1.0), (-1.0, -8.0), (1.0, 8.0), (2.0, -1.0))


def finite_difference_gradient(engine: FiniteDifferences, problem, theta, forward: SolveOptions):
    model, stats = problem.model, [SolverStats()]

    def row_losses(theta_, z0_):
        """L split by batch row, shape (B,): rows do not interact, so one solve gives all rows."""
        fwd = solve_forward(model, theta_, z0_, problem.t0, problem.times, forward)
        stats[0] = stats[0] + fwd.stats
        return problem.loss_by_row(fwd.z_at_times)

    loss = float(np.sum(row_losses(theta, problem.z0))) + problem.loss_constant
    dtheta = np.zeros_like(theta)
    for p in range(theta.size):
        h = engine.step * max(1.0, abs(theta[p]))
        for offset, weight in STENCIL:
            shifted = theta.copy()
            shifted[p] += offset * h
            dtheta[p] += weight * np.sum(row_losses(shifted, problem.z0))
        dtheta[p] /= 12 * h
    dz0 = np.zeros_like(problem.z0)
    for i in range(model.state_dim):
        h = engine.step * np.maximum(1.0, np.abs(problem.z0[:, i]))
        for offset, weight in STENCIL:
            shifted = problem.z0.copy()
            shifted[:, i] += offset * h
            dz0[:, i] += weight * row_losses(theta, shifted)
        dz0[:, i] /= 12 * h
    return GradientResult.of(engine, problem, loss, dtheta, dz0, stats[0], SolverStats(), {"step": engine.step})


register_engine(FiniteDifferences, compute=finite_difference_gradient)
