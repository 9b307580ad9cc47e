"""`harness julia selftest`: the first command to run where Julia is installed.

Small problems (B = 8) through every route, sensitivity algorithm and solver family of the Julia
backend, each row's dL/dθ compared with the pure-Python ForwardSensitivity reference at
rtol = atol = 1e-10, with gradcheck's bound (10³ · tol, see harness/gradcheck.py). A Julia error in
a row is that row's failure, printed in one line; the rest still run. Refusals (BacksolveAdjoint on
the stiff variant) are the specified, safe outcome and pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BackendUnavailableError
from ..gradcheck import Case, check_case
from ..problems import multi_time_problem, stiff_problem
from .engines import JuliaAdjoint, JuliaForwardSensitivity
from .environment import julia_status
from .names import ADJOINT_SENSEALGS, FORWARD_ROUTES, ROUTES, check_julia_solver

BATCH = 8


@dataclass(frozen=True)
class Family:
    """A solver family: one representative Julia solver and the problem it is checked on."""

    name: str
    solver: str


# Explicit methods on the multi-time problem (adjoint jumps at four times); every implicit family
# on the stiff variant, where their Jacobian handling (analytic jac, finite differences, ForwardDiff
# on the native route) is what is being checked.
FAMILIES = (
    Family("explicit Runge-Kutta", "Vern9"),
    Family("Rosenbrock", "Rodas5P"),
    Family("SDIRK", "KenCarp4"),
    Family("BDF", "FBDF"),
    Family("fully implicit Runge-Kutta", "RadauIIA5"),
    Family("auto-switching", "AutoTsit5(Rosenbrock23())"),
)


def selftest_engines(solver: str) -> list:
    """Every adjoint on every route, and the forward sensitivities on every route, with `solver`."""
    engines = [JuliaAdjoint(s, route=r, solver=solver) for r in ROUTES for s in ADJOINT_SENSEALGS]
    engines += [JuliaForwardSensitivity(route=r, solver=solver) for r in FORWARD_ROUTES]
    return engines


def run_selftest(*, tol: float = 1e-8, families=FAMILIES, progress=None) -> list[Case]:
    """One gradcheck case per solver family; raises BackendUnavailableError when Julia cannot run."""
    status = julia_status()
    if not status.available:
        raise BackendUnavailableError(f"the Julia backend is unavailable: {status.reason}")
    cases = []
    for family in families:
        stiff = check_julia_solver(family.solver).stiff
        problem = (stiff_problem if stiff else multi_time_problem)(batch=BATCH)
        engines = selftest_engines(family.solver)
        case = check_case(problem, "RadauIIA5" if stiff else "DP5", tol, engines)
        for row, engine in zip(case.rows, engines, strict=True):  # one row per engine, in order
            row.name = f"{engine.name} [{family.solver}]"
        case.description = f"{family.name} ({family.solver}) on {case.description}"
        cases.append(case)
        if progress is not None:
            progress(case)
    return cases
