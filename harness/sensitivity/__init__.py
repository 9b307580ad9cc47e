"""Gradient engines: `gradient(problem, engine=...)` with an engine value from `algorithms`, or any
engine registered with `register_engine` (see `_registry`); `resolve_engine` turns a name into one.

A new continuous adjoint is an `AdjointSystem` subclass (its backward ODE, jump and accumulation),
computed by the one driver `adjoint_gradient`, and one `register_engine` call; every engine's
`compute` receives the forward pass's `SolveOptions`."""

from __future__ import annotations

import time

from .._forward import SolveOptions
from .._memory_budget import check_gradient_memory
from ..solvers import check_solver, check_tolerances
from .algorithms import (
    ADJOINTS,
    REFERENCES,
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
)
from ._registry import (
    ENGINES,
    EngineDeclaration,
    declaration_of,
    load_engine_plugins,
    register_engine,
    registered_engines,
    resolve_engine,
    unregister_engine,
    uses_harness_solvers,
)
from ._result import GradientResult
from ._backward import AdjointSystem, adjoint_gradient

# Importing the behaviour modules registers the harness engines, in this order.
from . import _backsolve, _interpolating, _quadrature, _gauss, _discrete  # noqa: E402,F401  (adjoints)
from . import _forward_sensitivity, _finite_differences  # noqa: E402,F401  (references)


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
        Any registered engine (`register_engine`). Default `InterpolatingAdjoint()`. Backward
        settings left as None follow the forward ones.
    solver, rtol, atol :
        The forward pass's method (a name from `harness.solvers.SOLVERS` for engines that use
        harness's solvers, a backend's own name otherwise) and tolerances.

    Returns
    -------
    GradientResult
        With `dtheta` (P,), `dz0` (B, N), the loss, costs and wall time. For an augmented problem
        (`problem.augment = A`) `dz0` is dL/dz0 of the N observed components only: the A augmented
        ones start at 0 by definition, they are not inputs.

    Raises
    ------
    RefusedError
        (a HarnessInputError, one line) before anything is allocated, when the engine's estimated
        working set (`harness._memory_budget.gradient_memory`: ForwardSensitivity with an implicit
        solver stores dense Newton blocks) exceeds the memory available here, `ulimit -v` included.
        The message gives the number needed and the number available.
    """
    engine = resolve_engine(engine)
    declaration = declaration_of(engine)
    if declaration.uses_harness_solvers:
        check_solver(solver)  # other backends have solver names of their own
    rtol, atol = check_tolerances(rtol, atol)
    theta = problem.theta if theta is None else problem.model.check_theta(theta)
    # Every caller (gradcheck, reproduce, compare cells, training, the Python API) comes through here,
    # so a gradient that cannot fit is refused with the number instead of growing until the kernel
    # kills the process without a word. Not timed: it is not the gradient's cost.
    check_gradient_memory(problem, engine, solver)
    start = time.perf_counter()
    result = declaration.compute(engine, problem, theta, SolveOptions(solver, rtol, atol))
    if problem.augment and result.dz0.shape[1] != problem.observed_dim:
        result.dz0 = result.dz0[:, : problem.observed_dim]  # engines solve all N + A components
    if not result.seconds:
        # Engines that do untimed preparation (peers: file hand-off, JIT compilation, counting
        # runs) report the time of the gradient computation itself; the rest are timed here.
        result.seconds = time.perf_counter() - start
    return result


__all__ = [
    "ADJOINTS",
    "AdjointSystem",
    "ENGINES",
    "REFERENCES",
    "BacksolveAdjoint",
    "EngineDeclaration",
    "FiniteDifferences",
    "ForwardSensitivity",
    "GaussAdjoint",
    "GradientResult",
    "InterpolatingAdjoint",
    "QuadratureAdjoint",
    "RecursiveCheckpointAdjoint",
    "SolveOptions",
    "adjoint_gradient",
    "declaration_of",
    "gradient",
    "load_engine_plugins",
    "register_engine",
    "registered_engines",
    "resolve_engine",
    "unregister_engine",
    "uses_harness_solvers",
]
