"""scipy's own ODE methods (implicit Radau and BDF, and DOP853), stepped one step at a time.

Stepping `OdeSolver` objects ourselves, rather than calling `solve_ivp`, lets us stop exactly at the
end time, keep the dense output only when asked for, apply our step budget, and turn a failure into
a `SolverError` that names the method and the time reached.
"""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ._base import Solver
from ._quadrature_tail import QuadratureTailSystem
from ._step_budget import StepBudget
from ._trajectory import ScipyDense, SolverStats, Trajectory

NONFINITE_STATE = "the state became inf or NaN: the solution blows up here"


class ScipySolver(Solver):
    """One of scipy's `OdeSolver` classes; a subclass sets `scipy_method` (the class's name in
    `scipy.integrate`) and the declared attributes (see `_catalogue.py`). Implicit ones are given the
    Jacobian."""

    scipy_method: str

    @property
    def scipy_class(self) -> type:
        # imported on first use: `scipy.integrate` costs 23-29 MB of resident memory, which a
        # gradient with the explicit solvers (their tableaus are in `_tableaus.py`) does not need
        import scipy.integrate

        return getattr(scipy.integrate, self.scipy_method)

    def integrate(self, rhs, t0, t1, y0, *, rtol, atol, jac=None, dense=False, h0=None, max_steps=None,
                  on_step=None, t_eval=None):
        if isinstance(rhs, QuadratureTailSystem):
            rhs = rhs.joint_rhs  # scipy steps the state as a whole
        # a step carried over from a longer previous piece may exceed this one; scipy rejects that
        first_step = None if h0 is None else min(abs(h0), abs(t1 - t0))
        options = {"rtol": rtol, "atol": atol, "first_step": first_step}
        if self.implicit:
            options["jac"] = jac
        solver = self.scipy_class(rhs, t0, np.array(y0, dtype=np.float64), t1, **options)
        budget = StepBudget(self.name, self.implicit, t0, t1, solver.h_abs, max_steps)
        interpolants, ts = [], [t0]
        n_steps = 0
        while solver.status == "running":
            if n_steps >= budget.next_check:
                budget.check(n_steps, solver.t, solver.h_abs)
            t_before = solver.t
            try:
                message = solver.step()
            except ValueError as error:
                # a dense `jac`: scipy's dense LU (lu_factor / lu_solve, which check finiteness) refuses
                # a Newton matrix or residual holding inf or NaN with a bare ValueError once the state
                # overflows; with a sparse one the step fails instead, and is reported below
                if "infs or NaNs" not in str(error):
                    raise
                raise SolverError(self.name, solver.t, t1, NONFINITE_STATE) from None
            n_steps += 1
            if solver.status == "failed":
                raise SolverError(self.name, solver.t, t1, message or "step failed")
            if not np.all(np.isfinite(solver.y)):
                raise SolverError(self.name, solver.t, t1, NONFINITE_STATE)
            if on_step is not None:
                # the step's interpolant is formed only if the callback asks for it (a step-size
                # recorder never does)
                on_step(t_before, solver.t - t_before,
                        lambda ts, solver=solver: solver.dense_output()(np.asarray(ts)).T)
            if dense:
                interpolants.append(solver.dense_output())
                ts.append(solver.t)
        stats = SolverStats(
            n_rhs=solver.nfev, n_jac=solver.njev, n_lu=solver.nlu, n_accepted=n_steps, n_rejected=None
        )
        from scipy.integrate import OdeSolution

        dense_out = ScipyDense(OdeSolution(ts, interpolants)) if dense and interpolants else None
        h_last = getattr(solver, "h_abs", None)
        return Trajectory(t0, t1, solver.y.copy(), stats, dense_out, h_last, self.name)
