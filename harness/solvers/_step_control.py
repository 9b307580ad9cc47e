"""Step-size control of the explicit Runge-Kutta solvers: scipy's rule (`RungeKutta._step_impl`).

The error norm is the RMS of the error estimate scaled by atol + rtol max(|y|, |y_new|); a step is
accepted when it is below 1. The next step is h * safety * norm^(-1 / (q + 1)) for an error method
of order q, with the factor kept within [min_factor, max_factor], and not above 1 for the step that
follows a rejection (the rejected step just showed that a larger one fails).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0

# An overflowing stage makes the error norm inf or NaN: the step is rejected as if its error were
# this large, which shrinks h by MIN_FACTOR.
NONFINITE_ERROR_NORM = 1e10


@dataclass(frozen=True)
class StepSizeController:
    """The factor to multiply h by after a step, from the step's error norm.

    error_order : int
        Order q of the embedded error estimate (the exponent is -1 / (q + 1)).
    """

    error_order: int
    safety: float = SAFETY
    min_factor: float = MIN_FACTOR
    max_factor: float = MAX_FACTOR
    exponent: float = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "exponent", -1.0 / (self.error_order + 1))

    def after_accept(self, error_norm: float, after_rejection: bool) -> float:
        """Factor for the next step after accepting one with `error_norm` < 1."""
        if error_norm == 0:
            factor = self.max_factor
        else:
            factor = min(self.max_factor, self.safety * error_norm**self.exponent)
        return min(1.0, factor) if after_rejection else factor

    def after_reject(self, error_norm: float) -> float:
        """Factor for the retry after rejecting a step with `error_norm` >= 1 (or not finite)."""
        if not math.isfinite(error_norm):
            error_norm = NONFINITE_ERROR_NORM
        return max(self.min_factor, self.safety * error_norm**self.exponent)
