"""A blow-up under scipy's implicit methods is a SolverError whatever form the Jacobian takes.

`integrate` takes a dense Jacobian as well as a sparse one. With a dense one, scipy's Radau and BDF
factor the Newton matrix with scipy.linalg's dense LU, which refuses a matrix or residual holding inf
or NaN with a bare ValueError once the state overflows (RadauIIA5 below); that used to escape
`integrate` as a traceback instead of the SolverError its docstring promises (which training and the
backward pass catch).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from harness.errors import SolverError
from harness.solvers import integrate

CASES = {
    # y' = y from 1e300: y = 1e300 e^t passes the largest float (1.8e308) at t = ln(1.8e8) = 19.0; Radau's
    # stages and Newton residuals, a few times y, overflow first: it stops within 2 of that (y > 2.4e307)
    "RadauIIA5": (lambda t, y: y, np.array([1e300]), np.eye(1), 17.0),
    # y' = 1e308 from 1e300: y = 1e300 + 1e308 t passes the largest float at t = 1.8
    "BDF": (lambda t, y: np.full_like(y, 1e308), np.array([1e300]), np.zeros((1, 1)), 1.79),
}


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_an_overflowing_implicit_solve_is_a_solver_error(method, layout):
    rhs, y0, jacobian, near_overflow = CASES[method]
    matrix = jacobian if layout == "dense" else sp.csc_matrix(jacobian)
    with pytest.raises(SolverError) as err, np.errstate(over="ignore", invalid="ignore"):
        integrate(rhs, 0.0, 1000.0, y0, method=method, rtol=1e-3, atol=1e-3, jac=lambda t, y: matrix)
    e = err.value
    assert e.method == method and e.t_target == 1000.0 and "\n" not in str(e)
    # it stops where the state overflows (not long before: no spurious failure), far from the target
    assert near_overflow < e.t_reached < 100.0
    if (method, layout) == ("RadauIIA5", "dense"):  # the case that raised the bare ValueError
        assert str(e).endswith(": the state became inf or NaN: the solution blows up here")
