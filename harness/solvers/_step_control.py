"""Step-size control of the explicit Runge-Kutta solvers: scipy's rule (`RungeKutta._step_impl`).

The error norm is the RMS of the error estimate scaled by atol + rtol max(|y|, |y_new|); a step is
accepted when it is below 1. The next step is h * safety * norm^(-1 / (q + 1)) for an error method
of order q, with the factor kept within [min_factor, max_factor], and not above 1 for the step that
follows a rejection (the rejected step just showed that a larger one fails).

The rule itself, with its constants, is written once in `_step_rules.py` (`factor_after_accept`,
`factor_after_reject`), which the compiled loop compiles too; this class holds the exponent of one
solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._step_rules import (MAX_FACTOR, MIN_FACTOR, NONFINITE_ERROR_NORM, SAFETY, error_exponent,  # noqa: F401
                          factor_after_accept, factor_after_reject)


@dataclass(frozen=True)
class StepSizeController:
    """The factor to multiply h by after a step, from the step's error norm.

    error_order : int
        Order q of the embedded error estimate (the exponent is -1 / (q + 1)).
    """

    error_order: int
    exponent: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "exponent", error_exponent(self.error_order))

    def after_accept(self, error_norm: float, after_rejection: bool) -> float:
        """Factor for the next step after accepting one with `error_norm` < 1."""
        return factor_after_accept(error_norm, self.exponent, after_rejection)

    def after_reject(self, error_norm: float) -> float:
        """Factor for the retry after rejecting a step with `error_norm` >= 1 (or not finite)."""
        return factor_after_reject(error_norm, self.exponent)
