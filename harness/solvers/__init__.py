"""Forward ODE solves: one entry point, `integrate`, over one registry of solver objects.

| name | kind | implementation |
|---|---|---|
| DP5 | explicit 5(4), FSAL, 4th-order dense output | our vectorised loop, scipy RK45's tableau |
| BS3 | explicit 3(2), FSAL, 3rd-order dense output | our vectorised loop, scipy RK23's tableau |
| DP8 | explicit 8(5,3) | scipy DOP853 |
| RadauIIA5 | implicit, stiff, order 5 | scipy Radau with our sparse analytic Jacobian |
| BDF | implicit, stiff, variable order 1-5 (NDF) | scipy BDF with our sparse analytic Jacobian |

A solver is an object (`Solver`) that declares `name`, `implicit`, `order`, `dense_output`,
`description` and has its own `integrate`. A new solver is one class and one `register` call: an
explicit Runge-Kutta pair is a `Tableau` on an `ExplicitRungeKutta` subclass, a scipy method a
`ScipySolver` subclass naming the scipy class (see `_catalogue.py`).
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from ..errors import HarnessInputError
from ._base import Solver
from ._catalogue import BDF, BS3, DP5, DP8, RadauIIA5
from ._explicit_rk import ExplicitRungeKutta
from ._quadrature_tail import QuadratureTailSystem
from ._registry import SOLVERS, STIFF_DEFAULT, check_solver, is_stiff, register, solver_for
from ._rk_step import Tableau
from ._scipy_methods import ScipySolver
from ._step_budget import check_max_steps
from ._trajectory import PiecewisePolynomial, ScipyDense, SolverStats, Trajectory

for _solver in (DP5(), BS3(), DP8(), RadauIIA5(), BDF()):
    register(_solver)


# As scipy's solvers: a relative tolerance below 100 machine epsilons asks for more digits than float64
# holds (scipy raises it to this with a warning; here it is refused, so that no solve fails later with
# a diagnosis about something else).
MIN_RTOL = 100 * float(np.finfo(np.float64).eps)


def check_tolerances(rtol, atol) -> tuple[float, float]:
    for label, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not (isinstance(value, Real) and np.isfinite(value) and value > 0):
            raise HarnessInputError(f"{label}={value!r}: expected a finite number > 0")
    if rtol < MIN_RTOL:
        raise HarnessInputError(f"rtol={rtol!r}: expected at least {MIN_RTOL:.3g} (100 x float64's machine "
                                "epsilon; a tighter relative tolerance asks for more digits than float64 holds)")
    return float(rtol), float(atol)


def stage_slots(method: str) -> int:
    """How many stage records a `QuadratureTailSystem` needs to be integrated with `method`."""
    return check_solver(method).stage_slots


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
    max_steps: int | None = None,
    on_step=None,
    t_eval=None,
) -> Trajectory:
    """Integrate dy/dt = rhs(t, y) from t0 to t1 (t1 < t0 integrates backwards).

    Parameters
    ----------
    rhs : callable (t, y) -> ndarray, shape (D,), or QuadratureTailSystem
        A `QuadratureTailSystem` (with `stage_slots(method)` slots) has its quadrature tail summed per step by
        the explicit Runge-Kutta solvers (DP5, BS3); other methods, and dense output, integrate its
        `joint_rhs`.
    y0 : ndarray, shape (D,)
    method : str
        A name from `SOLVERS`.
    jac : callable (t, y) -> matrix (D, D), optional
        The Jacobian, for implicit methods (a scipy.sparse matrix keeps it cheap for a batch).
    dense : bool
        Keep a dense solution (`Trajectory.dense`, callable t -> (D,)).
    h0 : float, optional
        First step size (e.g. the last one of the previous segment): finite and nonzero; its sign is
        ignored.
    max_steps : int, optional
        Step budget (accepted plus rejected steps). By default it scales with the problem: 100 times
        the number of first steps that fit in |t1 - t0|, within [10 000, 1 000 000]. A solve that
        cannot finish within it fails as soon as that is clear (see `_step_budget.py`), not when
        the budget is spent.

    on_step : callable (t, h, local) -> None, optional
        Called after every accepted step from t to t + h (h signed, the step the solver took), with
        `local(ts)`, the step's own interpolant: states at the times `ts` (M,) inside the step, shape
        (M, D), valid during the call only. What needs the solution step by step without storing it
        (GaussAdjoint's quadrature, the step sizes a discrete adjoint replays) reads it here. With
        DP5 and BS3 `local.stage_inputs()` also gives the step's stage inputs (s, D), bit for bit the
        ones its stages were evaluated at (scipy's methods do not expose theirs).
    t_eval : ndarray, shape (M,), optional
        Times in (t0, t1], ordered from t0 towards t1, whose states `Trajectory.y_eval` (M, D)
        returns, read from the dense output of the accepted step that reaches each (the step's end
        state where a time is its end exactly) without ending a step there, as diffrax's `SaveAt(ts)`
        and scipy's `t_eval`. Only for solvers that declare `reads_t_eval` (the explicit Runge-Kutta
        pairs DP5 and BS3).

    Raises
    ------
    SolverError
        If the solve stops before t1 (step size underflow, non-finite state, Newton failure, or a
        step budget that cannot suffice); the message names the likely cause.
    """
    solver = check_solver(method)
    rtol, atol = check_tolerances(rtol, atol)
    max_steps = check_max_steps(max_steps)
    _check_first_step(h0)
    if solver.implicit and jac is None:
        raise HarnessInputError(f"solver {method!r} is implicit and needs a Jacobian")
    if t_eval is not None:
        t_eval = _check_t_eval(solver, t0, t1, t_eval)
    return solver.integrate(rhs, t0, t1, y0, rtol=rtol, atol=atol, jac=jac, dense=dense, h0=h0,
                            max_steps=max_steps, on_step=on_step, t_eval=t_eval)


def _check_first_step(h0) -> None:
    # a zero or NaN first step would make the explicit loop report a blow-up that is not there (or
    # grind through its budget), and scipy's methods raise a bare ValueError
    if h0 is not None and (isinstance(h0, bool) or not isinstance(h0, Real) or not np.isfinite(h0) or h0 == 0):
        raise HarnessInputError(f"h0={h0!r}: expected a finite nonzero step size or None")


def _check_t_eval(solver: Solver, t0: float, t1: float, t_eval) -> np.ndarray:
    if not solver.reads_t_eval:
        readers = [name for name, s in SOLVERS.items() if s.reads_t_eval]
        raise HarnessInputError(f"t_eval: solver {solver.name!r} does not read states from its dense output "
                                f"(those that do: {', '.join(readers)}); end a solve at each time instead")
    t_eval = np.asarray(t_eval, dtype=np.float64).reshape(-1)
    direction = 1.0 if t1 >= t0 else -1.0
    offsets = direction * (t_eval - t0)
    if t_eval.size and (np.any(offsets <= 0) or np.any(direction * (t_eval - t1) > 0)
                        or np.any(np.diff(offsets) < 0)):
        raise HarnessInputError(f"t_eval={t_eval.tolist()!r}: expected times in ({t0!r}, {t1!r}], ordered from "
                                "t0 towards t1")
    return t_eval


__all__ = [
    "SOLVERS",
    "STIFF_DEFAULT",
    "Solver",
    "ExplicitRungeKutta",
    "ScipySolver",
    "Tableau",
    "SolverStats",
    "QuadratureTailSystem",
    "Trajectory",
    "PiecewisePolynomial",
    "ScipyDense",
    "check_solver",
    "is_stiff",
    "register",
    "solver_for",
    "check_tolerances",
    "integrate",
    "stage_slots",
]
