"""Embedded explicit Runge-Kutta solvers, vectorised over the whole state, with dense output.

The pieces, each readable alone (as scipy's `rk_step` / `RungeKutta._step_impl` / `solve_ivp`):
- `rk_step` (`_rk_step.py`): the stages, the solution and the error estimate of one step;
- `StepSizeController` (`_step_control.py`): accept or reject, and the next step size;
- the step rules (`_step_rules.py`: initial step, controller factors, budget, the clipped next step),
  plain scalar functions that the compiled loop (`harness._compiled._adaptive_loop`) compiles too;
- a stepper, which owns the state and its error norm: `PlainStepper` for dy/dt = rhs(t, y), and
  `QuadratureTailStepper` for a `QuadratureTailSystem`, whose quadrature tail q is summed once per
  step from the stage records instead of being evaluated at every stage;
- `run_steps`, the loop: time, acceptance, dense output, the step budget and the statistics.

The loop is written for low overhead per step, since a Neural ODE batch makes each step a handful of
small matrix products: the Python around them is the cost.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SolverError
from ._base import Solver
from ._quadrature_tail import QuadratureTailSystem
from ._rk_step import StepWorkspace, Tableau, rk_step
from ._step_budget import StepBudget
from ._step_control import StepSizeController
from ._step_rules import first_step_guess, initial_step_size, next_step, step_underflows
from ._trajectory import PiecewisePolynomial, SolverStats, Trajectory


def _rms(x: np.ndarray) -> float:
    return math.sqrt(float(np.dot(x, x)) / x.size)


def initial_step(rhs, t0, y0, f0, direction, order, rtol, atol) -> float:
    """Hairer, Nørsett & Wanner's starting step (as scipy's `select_initial_step`)."""
    scale = atol + np.abs(y0) * rtol
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = first_step_guess(d0, d1)
    y1 = y0 + h0 * direction * f0
    f1 = rhs(t0 + h0 * direction, y1)
    d2 = _rms((f1 - f0) / scale) / h0
    return initial_step_size(h0, d1, d2, order)


class PlainStepper:
    """Steps dy/dt = rhs(t, y), y of shape (D,): the state, its error norm and its dense output."""

    def __init__(self, rhs, tableau: Tableau, y0: np.ndarray, rtol: float, atol: float):
        self.rhs, self.rtol, self.atol = rhs, rtol, atol
        self.work = StepWorkspace(tableau, y0.size)
        self.y = np.array(y0, dtype=np.float64)
        self.abs_y = np.abs(self.y)
        self.work.Y[0] = self.y
        self.y_new = self.abs_new = None

        def stage_rhs(t, y, stage, out):  # a closure: this runs once per stage
            out[:] = rhs(t, y)

        self.stage_rhs = stage_rhs

    def start(self, t0, h0, direction, error_order) -> tuple[float, int]:
        """f(t0, y0) into K₀, and the first step size (`h0`, or the heuristic's); returns it with
        the number of evaluations made."""
        f0 = self.work.K[0]
        f0[:] = self.rhs(t0, self.y)
        if h0 is not None:
            return abs(h0), 1
        return initial_step(self.rhs, t0, self.y, f0, direction, error_order, self.rtol, self.atol), 2

    def attempt(self, t: float, t_new: float, h: float) -> float:
        """Take one trial step; its RMS error norm (inf or NaN if a stage overflowed)."""
        return math.sqrt(self._step(t, t_new, h) / self.y.size)

    def _step(self, t: float, t_new: float, h: float) -> float:
        """The trial step of y; the sum of squares of its error in units of the tolerances."""
        y_new, error = rk_step(self.stage_rhs, t, t_new, h, self.work)
        self.y_new = y_new
        self.abs_new = abs_new = np.abs(y_new)
        scale = np.maximum(self.abs_y, abs_new)
        scale *= self.rtol
        scale += self.atol
        error /= scale
        return float(np.dot(error, error))

    def dense_step(self, h: float):
        """The trial step's interpolant, (y, Q) with y(t + x h) = y + Q [x, x², ...] (see
        `PiecewisePolynomial`); to be taken before `accept`."""
        return self.y, self.work.K.T @ (h * self.work.tableau.P)

    def stage_inputs(self) -> np.ndarray:
        """The trial step's stage inputs (s, D), y and y + h Σⱼ aᵢⱼ Kⱼ, formed by the products
        `rk_step` formed them with (so bit for bit its), from its stages; to be taken before `accept`."""
        work = self.work
        return np.stack([self.y, *(row @ previous for _, _, row, previous, _ in work.stages)])

    def accept(self) -> None:
        self.y, self.abs_y = self.y_new, self.abs_new
        self.work.Y[0] = self.y
        self.work.K[0] = self.work.K_last

    def state(self) -> np.ndarray:
        return self.y


class QuadratureTailStepper(PlainStepper):
    """Steps a `QuadratureTailSystem` y = [u, q]: u as usual, q from the quadrature sums of each step.

    The step sequence and the result are those of the joint system [u, q] up to rounding: q enters
    the error norm (RMS over u and q together) with its own update and error sums.
    """

    def __init__(self, system: QuadratureTailSystem, tableau: Tableau, y0: np.ndarray, rtol: float, atol: float):
        y0 = np.array(y0, dtype=np.float64)
        super().__init__(None, tableau, y0[: system.n_head], rtol, atol)
        self.system = system
        self.stage_rhs = system.stage_rhs  # stages write their derivative and their record in place
        self.y_whole = y0
        self.q = y0[system.n_head :]
        self.abs_q = np.abs(self.q)
        self.n_total = y0.size  # the error norm's RMS is over u and q
        self.q_new = self.abs_q_new = None

    def start(self, t0, h0, direction, error_order) -> tuple[float, int]:
        system, u0 = self.system, self.work.K[0]
        if h0 is not None:
            system.stage_rhs(t0, self.y, 0, u0)
            return abs(h0), 1
        # the step-size heuristic sees the whole state, so it needs q' too; slot 1 is free until
        # the first step
        f0 = system.joint_rhs(t0, self.y_whole, slot=0)
        u0[:] = f0[: system.n_head]
        h_abs = initial_step(lambda t, y: system.joint_rhs(t, y, slot=1), t0, self.y_whole, f0, direction,
                             error_order, self.rtol, self.atol)
        return h_abs, 2

    def attempt(self, t: float, t_new: float, h: float) -> float:
        sum_of_squares = self._step(t, t_new, h)
        q_step, q_error = self.system.quadrature(self.work.quadrature_rows)  # the update and error rows
        self.q_new = self.q + q_step
        self.abs_q_new = np.abs(self.q_new)
        q_error /= self.atol + self.rtol * np.maximum(self.abs_q, self.abs_q_new)
        sum_of_squares += float(np.dot(q_error, q_error))
        return math.sqrt(sum_of_squares / self.n_total)

    def dense_step(self, h: float):
        raise ValueError("a QuadratureTailSystem has no dense output: integrate its joint_rhs instead")

    def accept(self) -> None:
        super().accept()
        self.q, self.abs_q = self.q_new, self.abs_q_new
        self.system.carry(self.work.n_stages, 0)

    def state(self) -> np.ndarray:
        return np.concatenate((self.y, self.q))


def run_steps(stepper, controller: StepSizeController, budget: StepBudget, name: str, t0: float, t1: float,
              h_abs: float, dense: bool, on_step=None, t_eval=None,
              ) -> tuple[float, SolverStats, PiecewisePolynomial | None, np.ndarray | None]:
    """Step from t0 to t1, starting with step size `h_abs`.

    `stepper` is a `PlainStepper` or a `QuadratureTailStepper` (or anything with their `attempt`,
    `accept`, `dense_step` and `state`, and a `work` workspace): the loop knows nothing of the
    system's structure, the stepper nothing of time, acceptance or budgets.

    `on_step(t, h, local)`, if given, is called after each accepted step (see `integrate`).

    `t_eval` (M,), if given, are times in (t0, t1], ordered in the solve's direction: each is read
    from the first accepted step [t, t_new] that reaches it, by that step's dense output at
    x = (t_eval - t) / h, or, where it equals t_new exactly, as the step's end state. They never
    shorten a step: the step sequence is the one without them.

    Returns (the next step size, stats, the dense output or None, the states at `t_eval` (M, D) or
    None); raises SolverError if the step size underflows or the budget cannot suffice. `stats.n_rhs`
    counts the steps' evaluations only.
    """
    direction = 1.0 if t1 >= t0 else -1.0
    t = t0
    # the times still to read, as Python floats (compared once per accepted step)
    pending = [] if t_eval is None else [float(te) for te in t_eval]
    y_eval = None if t_eval is None else np.empty((len(pending), stepper.state().size))
    n_read = 0
    n_accepted = n_rejected = 0
    after_rejection = False  # the current step was rejected at least once: do not grow h on acceptance
    nonfinite = False  # the last rejection was for an inf or NaN stage
    ts, ys, hs, Qs = [t0], [], [], []
    while direction * (t1 - t) > 0:
        n_steps = n_accepted + n_rejected
        if n_steps >= budget.next_check:
            budget.check(n_steps, t, h_abs)
        if step_underflows(t, h_abs, direction):
            raise SolverError(name, t, t1, _underflow_reason(nonfinite, stepper.state()))
        h, t_new, h_abs = next_step(t, h_abs, direction, t1)
        error_norm = stepper.attempt(t, t_new, h)
        # an inf or NaN anywhere in the stages makes error_norm non-finite: never accepted
        if error_norm < 1.0:
            factor = controller.after_accept(error_norm, after_rejection)
            after_rejection = False
            if dense:
                y, Q = stepper.dense_step(h)
                ys.append(y)
                hs.append(h)
                Qs.append(Q)
                ts.append(t_new)
            if on_step is not None:
                on_step(t, h, _StepInterpolant(stepper, t, h))
            at_end = n_read
            if n_read < len(pending) and direction * (pending[n_read] - t_new) <= 0:
                n_read, at_end = _read_inside(stepper, t, h, t_new, pending, n_read, y_eval, direction)
            stepper.accept()
            for j in range(at_end, n_read):  # a time that is the step's end: the end state itself
                y_eval[j] = stepper.state()
            t = t_new
            n_accepted += 1
            h_abs *= factor
        else:
            nonfinite = not math.isfinite(error_norm)
            h_abs *= controller.after_reject(error_norm)
            n_rejected += 1
            after_rejection = True
    n_rhs = stepper.work.n_stages * (n_accepted + n_rejected)
    stats = SolverStats(n_rhs=n_rhs, n_accepted=n_accepted, n_rejected=n_rejected)
    poly = PiecewisePolynomial(ts, ys, hs, Qs) if dense and hs else None
    return h_abs, stats, poly, y_eval


def _read_inside(stepper, t: float, h: float, t_new: float, pending: list[float], n_read: int,
                 y_eval: np.ndarray, direction: float) -> tuple[int, int]:
    """Read the pending times the accepted step [t, t_new] reaches: those before t_new from its dense
    output, y + Q [x, x², ...] at x = (t_k - t) / h (`dense_step`, formed once for the step), into
    `y_eval`. Returns (the index after the last time read, the index of the first one equal to t_new,
    whose state is the step's end state and is written by the caller after `accept`)."""
    first = n_read
    while n_read < len(pending) and direction * (pending[n_read] - t_new) < 0:
        n_read += 1
    if n_read > first:
        y, Q = stepper.dense_step(h)
        x = (np.asarray(pending[first:n_read]) - t) / h  # (M,) in (0, 1)
        powers = x[:, None] ** np.arange(1, Q.shape[1] + 1)  # (M, degree)
        y_eval[first:n_read] = y[None, :] + powers @ Q.T
    at_end = n_read
    while n_read < len(pending) and pending[n_read] == t_new:
        n_read += 1
    return n_read, at_end


class _StepInterpolant:
    """The dense output of the step just taken, for `on_step`: built only if called; and its stage
    inputs (s, D), `stage_inputs()`."""

    def __init__(self, stepper, t: float, h: float):
        self._stepper, self._t, self._h = stepper, t, h

    def stage_inputs(self) -> np.ndarray:
        return self._stepper.stage_inputs()

    def __call__(self, ts) -> np.ndarray:
        y, Q = self._stepper.dense_step(self._h)
        x = (np.asarray(ts, dtype=np.float64) - self._t) / self._h  # (M,) in [0, 1]
        powers = x[:, None] ** np.arange(1, Q.shape[1] + 1)  # (M, degree)
        return y[None, :] + powers @ Q.T


def _underflow_reason(nonfinite: bool, y: np.ndarray) -> str:
    if nonfinite:
        return ("the state became inf or NaN: the solution blows up here (diverged parameters? lower the "
                "learning rate)")
    size = float(np.max(np.abs(y))) if y.size else 0.0
    return (f"step size fell below the spacing of floats, with max |y| = {size:.3g}: the solution likely "
            "blows up in finite time here")


class ExplicitRungeKutta(Solver):
    """An embedded explicit Runge-Kutta pair with FSAL and dense output, stepped by our own
    vectorised loop. A subclass sets `name`, `tableau` and `description` (see `_catalogue.py`)."""

    tableau: Tableau
    implicit = False
    reads_t_eval = True  # `t_eval` is read from each step's dense output (`run_steps`)

    @property
    def order(self) -> int:
        return self.tableau.order

    @property
    def dense_output(self) -> int:
        return self.tableau.dense_degree

    @property
    def stage_slots(self) -> int:
        # stage i records in slot i, and the first-same-as-last stage in slot s
        return self.tableau.n_stages + 1

    def integrate(self, rhs, t0, t1, y0, *, rtol, atol, jac=None, dense=False, h0=None, max_steps=None,
                  on_step=None, t_eval=None):
        if isinstance(rhs, QuadratureTailSystem) and not dense and on_step is None and t_eval is None:
            stepper = QuadratureTailStepper(rhs, self.tableau, y0, rtol, atol)
        else:
            stepper = PlainStepper(rhs.joint_rhs if isinstance(rhs, QuadratureTailSystem) else rhs,
                                   self.tableau, y0, rtol, atol)
        direction = 1.0 if t1 >= t0 else -1.0
        # A stage that overflows is expected when a solve blows up (e.g. a backsolve of stiff
        # dynamics): it is rejected, and a solve that cannot recover raises SolverError, so numpy's
        # overflow warnings would only add noise.
        with np.errstate(over="ignore", invalid="ignore"):
            h_abs, n_start = stepper.start(t0, h0, direction, self.tableau.error_order)
            budget = StepBudget(self.name, self.implicit, t0, t1, h_abs, max_steps)
            controller = StepSizeController(self.tableau.error_order)
            h_abs, stats, poly, y_eval = run_steps(stepper, controller, budget, self.name, t0, t1, h_abs, dense,
                                                   on_step, t_eval)
        stats.n_rhs += n_start
        return Trajectory(t0, t1, stepper.state(), stats, poly, h_abs, self.name, y_eval)
