"""What the Julia backend refuses or rejects, decided in Python on plain values.

Each check here is a counterpart of a failure mode read in the upstream source; they take numbers and
arrays, not Julia objects, so the test suite exercises them without Julia.
"""

from __future__ import annotations

import numpy as np

from ..errors import RefusedError, SolverError, UnstableBacksolveError
from ..model import MLP

# ODEForwardSensitivityProblem builds no Jacobian and no prototype for the augmented system of
# m = n (1 + P + n) states (SciMLSensitivity forward_sensitivity.jl: `extended_jac_prototype =
# nothing` unless the user's prototype is a SparseMatrixCSC; the `jac` slot of
# ODEForwardSensitivityFunction is `nothing`). An implicit solver then finite-differences a dense
# m x m matrix: m = 4000 is 128 MB per matrix and 2m Python calls per Jacobian.
MAX_IMPLICIT_AUGMENTED_STATES = 4_000
# An explicit solver multiplies J (n x n) by the n x (P + n) sensitivity block through a generic
# (non-strided view) product at every right-hand side: n^2 (n + P) multiply-adds. 5e7 keeps one
# right-hand side under about a tenth of a second.
MAX_EXPLICIT_MULTIPLY_ADDS = 5e7


def check_forward_sensitivity_size(n: int, n_params: int, stiff: bool, solver: str) -> None:
    """Refuse a forward-sensitivity solve whose augmented system would not finish.

    n : states (B N); n_params : P. Raises RefusedError (a HarnessInputError) naming the sizes.
    """
    m = n * (1 + n_params + n)
    if stiff and m > MAX_IMPLICIT_AUGMENTED_STATES:
        raise RefusedError(
            f"Julia ForwardSensitivity with implicit solver {solver}: the augmented system has "
            f"{m} states (n = {n}, P = {n_params}), above {MAX_IMPLICIT_AUGMENTED_STATES}; "
            "SciMLSensitivity gives it no Jacobian, so each W matrix would be a dense finite-difference "
            f"{m}x{m}: use a smaller batch, an explicit solver, or an adjoint"
        )
    work = float(n) * n * (n + n_params)
    if not stiff and work > MAX_EXPLICIT_MULTIPLY_ADDS:
        raise RefusedError(
            f"Julia ForwardSensitivity with {solver}: each right-hand side of the augmented system "
            f"costs {work:.1e} multiply-adds (n = {n}, P = {n_params}), above "
            f"{MAX_EXPLICIT_MULTIPLY_ADDS:.0e}: use a smaller batch or an adjoint"
        )


def check_adjoint_reached_start(reached_start: bool, earliest: float, t0: float, engine: str) -> None:
    """Raise SolverError unless the adjoint's backward solve reached t0.

    `adjoint_sensitivities` returns the adjoint's last state whatever its return code, so an
    adjoint stopped by MaxIters, DtLessThanMin or Unstable would otherwise pass as a finite, partial
    gradient. `earliest` is the earliest observation time the backward solve reached.
    """
    if not reached_start:
        raise SolverError(
            f"{engine} (backward)", float(earliest), float(t0),
            "the adjoint solve stopped before t0 (MaxIters, DtLessThanMin or Unstable); "
            "its gradient would be partial",
        )


ADVICE = "use InterpolatingAdjoint, QuadratureAdjoint or GaussAdjoint, which read z from the forward solution"


def check_reconstruction(z_back: np.ndarray, z0: np.ndarray, rtol: float, atol: float, limit: float,
                         engine: str) -> float:
    """The counterpart of the Python BacksolveAdjoint's check: z solved backwards to t0 against z0.

    z_back, z0 : (B, N). The error is in units of the tolerance, max |z_back - z0| / (atol + rtol
    |z0|); above `limit` (or not finite) raises UnstableBacksolveError. Returns the error.
    """
    z_back, z0 = np.asarray(z_back, dtype=np.float64), np.asarray(z0, dtype=np.float64)
    scale = atol + rtol * np.abs(z0)
    error = float(np.max(np.abs(z_back - z0) / scale))
    if not error <= limit:  # also catches NaN
        raise UnstableBacksolveError(
            f"{engine}: z solved backwards from the first observation time reconstructs z(t0) with an "
            f"error of {error:.3g} tolerances (limit {limit:g}): the backward solve of z is unstable "
            f"and the gradient unreliable; {ADVICE}"
        )
    return error


# What each route calls on the model (harness's model protocol): the Python routes call only these
# methods, so any model that has them goes through; the native route re-implements harness.model.MLP
# in Julia (HarnessJL.jl `NativeMLP`) and takes nothing else (no Julia twin of other models).
ROUTE_NEEDS = {
    "python_vjp": ("f", "vjp"),  # + jac with an implicit solver
    "finite_difference": ("f",),
    "python_jacobian": ("f", "jac", "jac_theta"),
}


def check_model_for_route(model, route: str, *, stiff: bool, engine: str) -> None:
    """Refuse, in one line and before Julia starts, a model the route cannot take.

    Raises RefusedError naming the missing method (Python routes), or saying that the native route
    needs an autonomous harness.model.MLP.
    """
    if route == "native":
        if not isinstance(model, MLP):
            raise RefusedError(
                f"{engine}: route 'native' runs harness.model.MLP re-implemented in Julia and has no "
                f"Julia version of {_describe(model)}: use route 'python_vjp' (exact VJPs of the Python "
                "model) or 'finite_difference'"
            )
        if not model.autonomous:  # NativeMLP has no t input; the Python routes pass t
            raise RefusedError(
                f"{engine}: the Julia native route has no time-dependent fields: use route 'python_vjp' "
                "or 'finite_difference'"
            )
        return
    needs = ROUTE_NEEDS[route] + (("jac",) if route == "python_vjp" and stiff else ())
    missing = [name for name in needs if not callable(getattr(model, name, None))]
    if missing:
        why = " (an implicit solver's Newton matrix)" if missing == ["jac"] and route == "python_vjp" else ""
        raise RefusedError(
            f"{engine}: {_describe(model)} has no method {', '.join(missing)}{why}, which route {route!r} "
            "calls: add it, or use route 'finite_difference' (calls only f)"
        )


def _describe(model) -> str:
    describe = getattr(model, "describe", None)
    return f"the model {describe()!r}" if callable(describe) else f"the model {type(model).__name__}"
