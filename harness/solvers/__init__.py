"""Forward ODE solves: one entry point, `integrate`, over a registry of named methods.

| name | kind | implementation |
|---|---|---|
| DP5 | explicit 5(4), FSAL, 4th-order dense output | our vectorised loop, scipy RK45's tableau |
| BS3 | explicit 3(2), FSAL, 3rd-order dense output | our vectorised loop, scipy RK23's tableau |
| DP8 | explicit 8(5,3) | scipy DOP853 |
| RadauIIA5 | implicit, stiff, order 5 | scipy Radau with our sparse analytic Jacobian |
| BDF | implicit, stiff, variable order 1-5 (NDF) | scipy BDF with our sparse analytic Jacobian |

The names match the Julia solvers of the same method (DP5, BS3, DP8, RadauIIA5), so that Python and
Julia rows line up in comparisons; scipy's BDF is a quasi-constant-step NDF code, the cousin of
Julia's QNDF.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np

from ..errors import HarnessInputError
from ._explicit_rk import TABLEAUS, integrate_rk
from ._scipy_methods import integrate_scipy
from ._quadrature_tail import QuadratureTailSystem
from ._trajectory import PiecewisePolynomial, ScipyDense, SolverStats, Trajectory


@dataclass(frozen=True)
class SolverInfo:
    name: str
    implicit: bool
    description: str


SOLVERS = {
    "DP5": SolverInfo("DP5", False, "Dormand-Prince 5(4) (scipy RK45's tableau), vectorised"),
    "BS3": SolverInfo("BS3", False, "Bogacki-Shampine 3(2) (scipy RK23's tableau), vectorised"),
    "DP8": SolverInfo("DP8", False, "Dormand-Prince 8(5,3) (scipy DOP853)"),
    "RadauIIA5": SolverInfo("RadauIIA5", True, "Radau IIA order 5 (scipy Radau), analytic Jacobian"),
    "BDF": SolverInfo("BDF", True, "variable-order BDF/NDF (scipy BDF), analytic Jacobian"),
}


def check_solver(name: str) -> SolverInfo:
    """The registry entry for `name`, or a HarnessInputError listing the valid names."""
    if name not in SOLVERS:
        raise HarnessInputError(f"unknown solver {name!r}: expected one of {sorted(SOLVERS)}")
    return SOLVERS[name]


def check_tolerances(rtol, atol) -> tuple[float, float]:
    for label, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not (isinstance(value, Real) and np.isfinite(value) and value > 0):
            raise HarnessInputError(f"{label}={value!r}: expected a finite number > 0")
    return float(rtol), float(atol)


def stage_slots(method: str) -> int:
    """How many stage records a `QuadratureTailSystem` needs to be integrated with `method`."""
    info = check_solver(method)
    return len(TABLEAUS[info.name].B) + 1 if info.name in TABLEAUS else 1


def integrate(
    rhs,
    t0: float,
    t1: float,
    y0: np.ndarray,
    *,
    method: str = "DP5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    jac=None,
    dense: bool = False,
    h0: float | None = None,
) -> Trajectory:
    """Integrate dy/dt = rhs(t, y) from t0 to t1 (t1 < t0 integrates backwards).

    Parameters
    ----------
    rhs : callable (t, y) -> ndarray, shape (D,), or QuadratureTailSystem
        A `QuadratureTailSystem` (with `stage_slots(method)` slots) has its quadrature tail summed per step by
        DP5 and BS3; other methods, and dense output, integrate its `joint_rhs`.
    y0 : ndarray, shape (D,)
    method : str
        A name from `SOLVERS`.
    jac : callable (t, y) -> matrix (D, D), optional
        The Jacobian, for implicit methods (a scipy.sparse matrix keeps it cheap for a batch).
    dense : bool
        Keep a dense solution (`Trajectory.dense`, callable t -> (D,)).
    h0 : float, optional
        First step size (e.g. the last one of the previous segment).

    Raises
    ------
    SolverError
        If the solve stops before t1 (step size underflow, non-finite state, Newton failure).
    """
    info = check_solver(method)
    rtol, atol = check_tolerances(rtol, atol)
    if isinstance(rhs, QuadratureTailSystem) and (dense or info.name not in TABLEAUS):
        rhs = rhs.joint_rhs
    if info.name in TABLEAUS:
        return integrate_rk(rhs, t0, t1, y0, TABLEAUS[info.name], rtol, atol, dense=dense, h0=h0)
    if info.implicit and jac is None:
        raise HarnessInputError(f"solver {method!r} is implicit and needs a Jacobian")
    return integrate_scipy(method, rhs, t0, t1, y0, rtol, atol, jac=jac, dense=dense, h0=h0)


__all__ = [
    "SOLVERS",
    "SolverInfo",
    "SolverStats",
    "QuadratureTailSystem",
    "Trajectory",
    "PiecewisePolynomial",
    "ScipyDense",
    "check_solver",
    "check_tolerances",
    "integrate",
    "stage_slots",
]
