"""The step rules of the explicit Runge-Kutta loop, written once as plain scalar functions.

The numpy loop (`_explicit_rk.py`, `_step_control.py`, `_step_budget.py`) calls them as they are, and
the compiled loop (`harness._compiled._adaptive_loop`, `_reverse_sweep`) compiles these same functions
with numba: the compiled loop takes the numpy loop's decisions because they are the same source, not a
copy. So they take and return numbers only, call nothing but `math` and the builtins (numba compiles
each one alone: a call from one to another would be an untyped global to it), and keep every
expression's order, which is what the two paths' equal steps rest on.

Editing this file changes the compiled module's cache key (`harness._compiled._ahead_of_time`), so the
compiled loop is rebuilt with the new rules.
"""

from __future__ import annotations

# --- step-size controller: scipy's rule (`RungeKutta._step_impl`) ---
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
# An overflowing stage makes the error norm inf or NaN: the step is rejected as if its error were
# this large, which shrinks h by MIN_FACTOR.
NONFINITE_ERROR_NORM = 1e10

# --- step budget (see `_step_budget.py` for the reasoning) ---
MIN_STEPS = 10_000  # every sane solve of the catalogue, explicit solvers on the stiff model included, needs fewer
MAX_STEPS = 1_000_000
STEPS_PER_NATURAL_STEP = 100  # room for the step size to shrink 100-fold on average
FIRST_CHECK = 100  # attempted steps before the first projection
EARLY_MARGIN = 1e4  # before PATIENT_STEPS, how far beyond the budget a projection must be to stop the solve
PATIENT_STEPS = 5_000  # from here on, a projection beyond the budget stops the solve (first check: 6400)

# --- the backward pass's first step ---
# A fraction of the forward pass's last proposed step (`harness.sensitivity._backward.first_backward_step`,
# measured by benchmarks/bench_backward_first_step.py). None would leave explicit backward solves, too,
# to their solver's initial-step heuristic.
BACKWARD_FIRST_STEP_FRACTION: float | None = 0.5
