"""Gradient engines: `gradient(problem, engine=...)` with an engine value from `algorithms`."""

from __future__ import annotations

import time

from ..errors import HarnessInputError
from .._forward import SolveOptions
from ..solvers import check_solver, check_tolerances
from .algorithms import (
    ADJOINTS,
    ENGINES,
    REFERENCES,
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    InterpolatingAdjoint,
    QuadratureAdjoint,
)
from ._backsolve import backsolve_gradient
from ._finite_differences import finite_difference_gradient
from ._forward_sensitivity import forward_sensitivity_gradient
from ._interpolating import interpolating_gradient
from ._quadrature import quadrature_gradient
from ._result import GradientResult

_IMPLEMENTATIONS = {
    BacksolveAdjoint: backsolve_gradient,
    InterpolatingAdjoint: interpolating_gradient,
    QuadratureAdjoint: quadrature_gradient,
    ForwardSensitivity: forward_sensitivity_gradient,
    FiniteDifferences: finite_difference_gradient,
}


def resolve_engine(engine):
    """An engine value from an instance, a class, or a name such as "QuadratureAdjoint"."""
    if engine is None:
        return InterpolatingAdjoint()
    if isinstance(engine, str):
        if engine not in ENGINES:
            raise HarnessInputError(f"unknown engine {engine!r}: expected one of {sorted(ENGINES)}")
        return ENGINES[engine]()
    if isinstance(engine, type) and engine in _IMPLEMENTATIONS:
        return engine()
    if type(engine) in _IMPLEMENTATIONS or callable(getattr(engine, "compute", None)):
        return engine  # engines from other backends (e.g. harness.julia) bring their own `compute`
    raise HarnessInputError(f"engine {engine!r}: expected one of {sorted(ENGINES)} or an instance")


def gradient(
    problem,
    theta=None,
    *,
    engine=None,
    solver: str = "DP5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> GradientResult:
    """dL/dθ and dL/dz0 of `problem` at θ (default `problem.theta`), with the chosen engine.

    Parameters
    ----------
    problem : Problem
    theta : ndarray, shape (P,), optional
    engine : engine value, class or name, optional
        Default `InterpolatingAdjoint()`. Backward settings left as None follow the forward ones.
    solver, rtol, atol :
        The forward pass's method (a name from `harness.solvers.SOLVERS`) and tolerances.

    Returns
    -------
    GradientResult
        With `dtheta` (P,), `dz0` (B, N), the loss, costs and wall time. For an augmented problem
        (`problem.augment = A`) `dz0` is dL/dz0 of the N observed components only: the A augmented
        ones start at 0 by definition, they are not inputs.
    """
    engine = resolve_engine(engine)
    if type(engine) in _IMPLEMENTATIONS:
        check_solver(solver)  # other backends have solver names of their own
    rtol, atol = check_tolerances(rtol, atol)
    theta = problem.theta if theta is None else problem.model.check_theta(theta)
    start = time.perf_counter()
    options = SolveOptions(solver, rtol, atol)
    implementation = _IMPLEMENTATIONS.get(type(engine))
    if implementation is None:
        result = engine.compute(problem, theta, options)
    else:
        result = implementation(problem, theta, options, engine)
    if problem.augment and result.dz0.shape[1] != problem.observed_dim:
        result.dz0 = result.dz0[:, : problem.observed_dim]  # engines solve all N + A components
    if not result.seconds:
        # Engines that do untimed preparation (peers: file hand-off, JIT compilation, counting
        # runs) report the time of the gradient computation itself; the rest are timed here.
        result.seconds = time.perf_counter() - start
    return result


__all__ = [
    "ADJOINTS",
    "ENGINES",
    "REFERENCES",
    "BacksolveAdjoint",
    "FiniteDifferences",
    "ForwardSensitivity",
    "GradientResult",
    "InterpolatingAdjoint",
    "QuadratureAdjoint",
    "gradient",
    "resolve_engine",
]
