"""How many steps a solve may take, and failing fast when it cannot finish within them.

A solve whose dynamics have run away (parameters that diverged in training, a stiff model under an
explicit solver, an end time far beyond the dynamics' time scale) would otherwise grind through its
whole step budget before failing. Two rules stop it early:

- the budget scales with the problem: `STEPS_PER_NATURAL_STEP` times the number of steps of the
  first step size that the span holds (the first step is the solver's estimate of the dynamics' time
  scale at the tolerances), within [`MIN_STEPS`, `MAX_STEPS`];
- at checkpoints (after 100, 200, 400, ... attempted steps) the steps still needed are projected, both
  at the current step size and at the average rate so far. Early on, the solve stops only if even
  the smaller projection exceeds the budget EARLY_MARGIN times (an end time of 1e300, dynamics a
  billion times too fast): early steps can be tiny in a sane solve, as when an implicit solver
  crosses the fast transient of a stiff model at tight tolerances (thousands of steps of 1e-7, then
  long ones). From `PATIENT_STEPS` steps on, it stops as soon as the projection exceeds the budget:
  a solve that has spent that many steps at a pace that cannot finish is not recovering. A solve
  on such a pace from the start thus stops after 6400 steps, not at the end of the budget.

A solve that blows up in finite time shrinks its step below the spacing of floats within a few
hundred steps instead; the explicit loop reports that itself.
"""

from __future__ import annotations

from numbers import Integral

from ..errors import HarnessInputError, SolverError
# the rules and their constants, written once for this loop and the compiled one
from ._step_rules import (EARLY_MARGIN, FIRST_CHECK, MAX_STEPS, MIN_STEPS, PATIENT_STEPS,  # noqa: F401
                          STEPS_PER_NATURAL_STEP, budget_exceeded, default_max_steps, first_check, next_check,
                          projected_steps)


def check_max_steps(max_steps) -> int | None:
    """`max_steps` as given to `integrate`: None (the default budget) or an integer >= 1."""
    if max_steps is None:
        return None
    if isinstance(max_steps, bool) or not isinstance(max_steps, Integral) or max_steps < 1:
        raise HarnessInputError(f"max_steps={max_steps!r}: expected an integer >= 1 or None")
    return int(max_steps)


class StepBudget:
    """The step budget of one solve from t0 to t1, checked by the solver's loop.

    The loop calls `check(n, t, h_abs)` when its attempted-step count n reaches `next_check`
    (one comparison per step otherwise) and `exhausted(...)` when n reaches `max_steps`.
    """

    def __init__(self, method: str, implicit: bool, t0: float, t1: float, h_first: float, max_steps: int | None):
        self.method, self.implicit = method, implicit
        self.t0, self.t1 = t0, t1
        self.h_first = abs(h_first)
        self.max_steps = default_max_steps(abs(t1 - t0), self.h_first) if max_steps is None else max_steps
        self.next_check = first_check(self.max_steps)

    def check(self, n_steps: int, t: float, h_abs: float) -> None:
        """Raise SolverError if the solve cannot reach t1 within the budget; else set the next check."""
        projected = projected_steps(n_steps, t, h_abs, self.t0, self.t1)
        if budget_exceeded(n_steps, projected, self.max_steps):
            raise SolverError(self.method, t, self.t1, self._explain(n_steps, projected, h_abs))
        self.next_check = next_check(n_steps, self.max_steps)

    def _explain(self, n_steps: int, projected: float, h_abs: float) -> str:
        if h_abs < self.h_first * 1e-3:
            steps = f"{n_steps} steps, the step size collapsed from {self.h_first:.3g} to {h_abs:.3g}"
        else:
            steps = f"{n_steps} steps of about {h_abs:.3g}"
        if n_steps >= self.max_steps:
            what = f"step budget used up ({steps})"
        else:
            what = f"after {steps}, reaching the end would take about {projected:.2g} steps (budget {self.max_steps})"
        causes = ["parameters that diverged in training (lower the learning rate)"]
        if not self.implicit:
            causes.append("a stiff model under an explicit solver (use RadauIIA5 or BDF)")
        causes.append(f"a time span ({abs(self.t1 - self.t0):.3g}) far beyond the dynamics' time scale "
                      "(shorten it, or raise max_steps)")
        return f"{what}; likely causes: {', or '.join(causes)}"
