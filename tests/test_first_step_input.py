"""`integrate`'s first step `h0`: a finite nonzero number (its sign ignored) or None; anything else is a
one-line HarnessInputError naming the value, for every solver. Before, h0 = 0 made DP5/BS3 report a
blow-up at t0 ("step size fell below the spacing of floats ... likely blows up") and scipy's methods
raise a bare ValueError, and h0 = NaN sent the explicit loop through its whole budget of NaN steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from harness.errors import HarnessInputError
from harness.solvers import SOLVERS, integrate


@pytest.mark.parametrize("method", sorted(SOLVERS))
@pytest.mark.parametrize("h0", [0.0, -0.0, float("nan"), float("inf"), True, "0.1"])
def test_a_first_step_that_is_not_a_finite_nonzero_number_is_refused(method, h0):
    with pytest.raises(HarnessInputError) as err:
        integrate(lambda t, y: -y, 0.0, 1.0, np.ones(2), method=method, h0=h0,
                  jac=lambda t, y: -sp.identity(2, format="csc"))
    assert str(err.value) == f"h0={h0!r}: expected a finite nonzero step size or None"


@pytest.mark.parametrize("method", sorted(SOLVERS))
def test_a_first_step_of_numpy_type_is_a_step(method):
    """np.float64 and integers are numbers: the solve runs and is accurate (y' = -3y: within 100 x rtol
    of e^-3). Not y' = -y with h0 = 1: BS3's error estimate, h^3 λ^3 (1 + hλ) / 48 on a linear problem,
    vanishes at hλ = -1, so that one step of 1 is accepted (as by scipy's RK23)."""
    for h0 in (np.float64(0.1), 1):
        traj = integrate(lambda t, y: -3.0 * y, 0.0, 1.0, np.ones(2), method=method, h0=h0, rtol=1e-8, atol=1e-10,
                         jac=lambda t, y: -3.0 * sp.identity(2, format="csc"))
        np.testing.assert_allclose(traj.y_end, np.exp(-3.0), rtol=1e-6, atol=0)
