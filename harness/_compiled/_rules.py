"""The step rules of `harness.solvers._step_rules`, made callable from compiled code.

Those are plain Python functions, which the numpy loop calls as they are; `register_jitable` tells numba
to compile the same functions where a compiled function calls them (and where one rule calls another).
So the compiled loop (`_adaptive_loop.py`, `_reverse_sweep.py`) has no copy of any rule: a change to the
controller, the budget, the initial step or the revolve schedule is made once, in `_step_rules.py`
(which the compiled module's cache key follows, `_ahead_of_time._key_sources`).
"""

from __future__ import annotations

from numba.extending import register_jitable

from ..solvers import _step_rules
from ..solvers._step_rules import (budget_exceeded, default_max_steps, error_exponent, factor_after_accept,
                                   factor_after_reject, first_check, first_part, first_step_guess, initial_step_size,
                                   next_check, next_step, projected_steps, step_underflows)
from ._activations import FASTMATH

for _rule in _step_rules.RULES:
    # the loop's options; no expression of a rule has a product to contract into its sum but t + h·(±1),
    # whose product is exact, so the numbers are the numpy loop's
    register_jitable(error_model="numpy", fastmath=FASTMATH)(_rule)

__all__ = ["budget_exceeded", "default_max_steps", "error_exponent", "factor_after_accept", "factor_after_reject",
           "first_check", "first_part", "first_step_guess", "initial_step_size", "next_check", "next_step",
           "projected_steps", "step_underflows"]
