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

import math
from numbers import Integral

from ..errors import HarnessInputError, SolverError

MIN_STEPS = 10_000  # every sane solve of the catalogue, explicit solvers on the stiff model included, needs fewer
MAX_STEPS = 1_000_000
STEPS_PER_NATURAL_STEP = 100  # room for the step size to shrink 100-fold on average
FIRST_CHECK = 100  # attempted steps before the first projection
EARLY_MARGIN = 1e4  # before PATIENT_STEPS, how far beyond the budget a projection must be to stop the solve
PATIENT_STEPS = 5_000  # from here on, a projection beyond the budget stops the solve (first check: 6400)


def check_max_steps(max_steps) -> int | None:
    """`max_steps` as given to `integrate`: None (the default budget) or an integer >= 1."""
    if max_steps is None:
        return None
    if isinstance(max_steps, bool) or not isinstance(max_steps, Integral) or max_steps < 1:
        raise HarnessInputError(f"max_steps={max_steps!r}: expected an integer >= 1 or None")
    return int(max_steps)


def default_max_steps(span: float, h_first: float) -> int:
    """The budget of a solve over |t1 - t0| = `span` whose first step is `h_first`."""
    if not (h_first > 0 and math.isfinite(span / h_first)):
        return MAX_STEPS
    return int(min(MAX_STEPS, max(MIN_STEPS, STEPS_PER_NATURAL_STEP * span / h_first)))


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
        self.next_check = min(FIRST_CHECK, self.max_steps)

    def check(self, n_steps: int, t: float, h_abs: float) -> None:
        """Raise SolverError if the solve cannot reach t1 within the budget; else set the next check."""
        remaining = abs(self.t1 - t)
        done = abs(t - self.t0)
        at_current_step = remaining / h_abs if h_abs > 0 else math.inf
        at_average_rate = n_steps * remaining / done if done > 0 else math.inf
        projected = n_steps + min(at_current_step, at_average_rate)
        margin = EARLY_MARGIN if n_steps < PATIENT_STEPS else 1.0
        if n_steps >= self.max_steps or projected > margin * self.max_steps:
            raise SolverError(self.method, t, self.t1, self._explain(n_steps, projected, h_abs))
        self.next_check = min(2 * n_steps, self.max_steps)

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
