"""The built-in solvers: each a few declared lines over a tableau or a scipy class.

The names match the Julia solvers of the same method (DP5, BS3, DP8, RadauIIA5), so that Python and
Julia rows line up in comparisons; scipy's BDF is a quasi-constant-step NDF code, the cousin of
Julia's QNDF. They are registered in `harness/solvers/__init__.py`.
"""

from __future__ import annotations

from ._explicit_rk import ExplicitRungeKutta
from ._scipy_methods import ScipySolver
from ._tableaus import BOGACKI_SHAMPINE_32, DORMAND_PRINCE_54


class DP5(ExplicitRungeKutta):
    name = "DP5"
    tableau = DORMAND_PRINCE_54  # Dormand-Prince 5(4), as Julia's DP5 and scipy's RK45
    description = "Dormand-Prince 5(4) (scipy RK45's tableau), vectorised"


class BS3(ExplicitRungeKutta):
    name = "BS3"
    tableau = BOGACKI_SHAMPINE_32  # Bogacki-Shampine 3(2), as Julia's BS3 and scipy's RK23
    description = "Bogacki-Shampine 3(2) (scipy RK23's tableau), vectorised"


class DP8(ScipySolver):
    name, scipy_method = "DP8", "DOP853"
    implicit, order, dense_output = False, 8, 7
    description = "Dormand-Prince 8(5,3) (scipy DOP853)"


class RadauIIA5(ScipySolver):
    name, scipy_method = "RadauIIA5", "Radau"
    # the dense output is the cubic collocation polynomial of the step
    implicit, order, dense_output = True, 5, 3
    description = "Radau IIA order 5 (scipy Radau), analytic Jacobian"


class BDF(ScipySolver):
    name, scipy_method = "BDF", "BDF"
    implicit, order, dense_output = True, 5, "the current order (1-5)"
    description = "variable-order BDF/NDF (scipy BDF), analytic Jacobian"
