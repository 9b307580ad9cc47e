"""scipy's own ODE methods (implicit Radau and BDF, and DOP853), stepped one step at a time.

Stepping `OdeSolver` objects ourselves, rather than calling `solve_ivp`, lets us stop exactly at the
end time, keep the dense output only when asked for, and turn a failure into a `SolverError` that
names the method and the time reached.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import BDF, DOP853, OdeSolution, Radau

from ..errors import SolverError
from ._trajectory import ScipyDense, SolverStats, Trajectory

SCIPY_CLASSES = {"RadauIIA5": Radau, "BDF": BDF, "DP8": DOP853}


def integrate_scipy(
    name: str,
    rhs,
    t0: float,
    t1: float,
    y0: np.ndarray,
    rtol: float,
    atol: float,
    *,
    jac=None,
    dense: bool = False,
    h0: float | None = None,
    max_steps: int = 1_000_000,
) -> Trajectory:
    """Integrate with scipy's method `name`; `jac(t, y)` (a sparse or dense matrix) for implicit ones."""
    cls = SCIPY_CLASSES[name]
    # a step carried over from a longer previous piece may exceed this one; scipy rejects that
    first_step = None if h0 is None else min(abs(h0), abs(t1 - t0))
    options = {"rtol": rtol, "atol": atol, "first_step": first_step}
    if name != "DP8":
        options["jac"] = jac
    solver = cls(rhs, t0, np.array(y0, dtype=np.float64), t1, **options)
    interpolants, ts = [], [t0]
    n_steps = 0
    while solver.status == "running":
        if n_steps >= max_steps:
            raise SolverError(name, solver.t, t1, f"more than {max_steps} steps")
        message = solver.step()
        n_steps += 1
        if solver.status == "failed":
            raise SolverError(name, solver.t, t1, message or "step failed")
        if not np.all(np.isfinite(solver.y)):
            raise SolverError(name, solver.t, t1, "the state became inf or NaN")
        if dense:
            interpolants.append(solver.dense_output())
            ts.append(solver.t)
    stats = SolverStats(
        n_rhs=solver.nfev, n_jac=solver.njev, n_lu=solver.nlu, n_accepted=n_steps, n_rejected=None
    )
    dense_out = ScipyDense(OdeSolution(ts, interpolants)) if dense and interpolants else None
    h_last = getattr(solver, "h_abs", None)
    return Trajectory(t0, t1, solver.y.copy(), stats, dense_out, h_last, name)
