"""The step rules of the explicit Runge-Kutta loop, written once as plain scalar functions.

The numpy loop (`_explicit_rk.py`, `_step_control.py`, `_step_budget.py`) calls them as they are, and
the compiled loop (`harness._compiled._adaptive_loop`, `_reverse_sweep`) compiles these same functions
with numba: the compiled loop takes the numpy loop's decisions because they are the same source, not a
copy. So they take and return numbers only, call nothing but `math`, the builtins and each other (the
compiled loop registers every one in `RULES` with numba), and keep every expression's order, which is
what the two paths' equal steps rest on.

Editing this file changes the compiled module's cache key (`harness._compiled._ahead_of_time`), so the
compiled loop is rebuilt with the new rules.
"""

from __future__ import annotations

import math

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


# ------------------------------------------------------------------- the backward pass's first step
def backward_first_step(h_last: float) -> float:
    """The first step of an explicit backward solve from the forward pass's last proposed step
    (`BACKWARD_FIRST_STEP_FRACTION` of it; callers check that the fraction is not None)."""
    return BACKWARD_FIRST_STEP_FRACTION * h_last


# ----------------------------------------------------------------------------------- initial step
def first_step_guess(d0: float, d1: float) -> float:
    """Hairer, Nørsett & Wanner's first guess h0 from d0 = RMS(y0 / scale), d1 = RMS(f0 / scale)
    (as scipy's `select_initial_step`)."""
    return 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1


def initial_step_size(h0: float, d1: float, d2: float, error_order: int) -> float:
    """The starting step from the guess h0, d1 and d2 = RMS((f1 - f0) / scale) / h0, f1 the slope at
    the explicit Euler step of size h0."""
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (error_order + 1))
    return min(100 * h0, h1)


# ------------------------------------------------------------------------ the step-size controller
def error_exponent(error_order: int) -> float:
    """The controller's exponent -1 / (q + 1) for an embedded error method of order q."""
    return -1.0 / (error_order + 1)


def factor_after_accept(error_norm: float, exponent: float, after_rejection: bool) -> float:
    """Factor for the next step after accepting one with `error_norm` < 1; not above 1 for the step
    that follows a rejection (the rejected step just showed that a larger one fails)."""
    if error_norm == 0:
        factor = MAX_FACTOR
    else:
        factor = min(MAX_FACTOR, SAFETY * error_norm**exponent)
    return min(1.0, factor) if after_rejection else factor


def factor_after_reject(error_norm: float, exponent: float) -> float:
    """Factor for the retry after rejecting a step with `error_norm` >= 1 (or not finite)."""
    if not math.isfinite(error_norm):
        error_norm = NONFINITE_ERROR_NORM
    return max(MIN_FACTOR, SAFETY * error_norm**exponent)


# ---------------------------------------------------------------------------------- the step budget
def default_max_steps(span: float, h_first: float) -> int:
    """The budget of a solve over |t1 - t0| = `span` whose first step is `h_first`."""
    if not (h_first > 0 and math.isfinite(span / h_first)):
        return MAX_STEPS
    return int(min(MAX_STEPS, max(MIN_STEPS, STEPS_PER_NATURAL_STEP * span / h_first)))


def first_check(max_steps: int) -> int:
    """The attempted-step count of the budget's first projection."""
    return min(FIRST_CHECK, max_steps)


def projected_steps(n_steps: int, t: float, h_abs: float, t0: float, t1: float) -> float:
    """The steps a solve from t0 to t1, now at t after n_steps attempts with step size h_abs, will have
    taken at the end: the smaller of the projections at the current step size and at the average
    rate so far."""
    remaining = abs(t1 - t)
    done = abs(t - t0)
    at_current_step = remaining / h_abs if h_abs > 0 else math.inf
    at_average_rate = n_steps * remaining / done if done > 0 else math.inf
    return n_steps + min(at_current_step, at_average_rate)


def budget_exceeded(n_steps: int, projected: float, max_steps: int) -> bool:
    """Whether the solve must stop: the budget is used up, or the projection exceeds it (EARLY_MARGIN
    times, before PATIENT_STEPS attempts)."""
    margin = EARLY_MARGIN if n_steps < PATIENT_STEPS else 1.0
    return n_steps >= max_steps or projected > margin * max_steps


def next_check(n_steps: int, max_steps: int) -> int:
    """The attempted-step count of the next projection (the checks double)."""
    return min(2 * n_steps, max_steps)


# ---------------------------------------------------------------------- the first part of a step
def step_underflows(t: float, h_abs: float, direction: float) -> bool:
    """Whether h_abs has fallen below ten spacings of the floats at t (the solve cannot go on)."""
    return h_abs < 10 * abs(math.nextafter(t, direction * math.inf) - t)


def next_step(t: float, h_abs: float, direction: float, t1: float) -> tuple[float, float, float]:
    """(h, t_new, h_abs) of the next attempt from t: h_abs in the solve's direction, clipped to end on t1."""
    h = h_abs * direction
    t_new = t + h
    if direction * (t_new - t1) > 0:
        t_new = t1
        h = t1 - t
        h_abs = abs(h)
    return h, t_new, h_abs


# ------------------------------------------------------------------ binomial (revolve) checkpoints
def binomial_capped(m: int, k: int, cap: int) -> int:
    """min(C(m, k), cap), exact in int64: the partial products C(m - k + i, i) only grow with i, so the
    product stops at `cap` before it could overflow."""
    value = 1
    for i in range(1, k + 1):
        value = value * (m - k + i) // i
        if value >= cap:
            return cap
    return value


def first_part(n: int, free: int) -> int:
    """How many of n steps to advance before storing the next checkpoint, with `free` checkpoints.

    β(c, r) = C(c + r, c) steps can be reversed with c checkpoints and r forward sweeps; with r the
    smallest such that β(free, r) >= n, the part after the checkpoint gets β(free - 1, r) steps
    (Griewank & Walther's binomial schedule), and at least one step is advanced. The binomials are
    capped at n (`binomial_capped`), which changes no comparison here.
    """
    r = 0
    while binomial_capped(free + r, free, n) < n:
        r += 1
    return max(1, n - min(n - 1, binomial_capped(free - 1 + r, free - 1, n)))


# every function above: the compiled loop makes each callable from compiled code (numba's
# `register_jitable`), which is also what lets `first_part` call `binomial_capped` there
RULES = (first_step_guess, initial_step_size, error_exponent, factor_after_accept, factor_after_reject,
         default_max_steps, first_check, projected_steps, budget_exceeded, next_check, step_underflows, next_step,
         binomial_capped, first_part)
