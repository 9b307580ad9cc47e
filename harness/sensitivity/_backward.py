"""The one backward driver of the continuous adjoints, and the backward settings they share.

`adjoint_gradient` is written once for every continuous adjoint (as SciMLSensitivity's
`_adjoint_sensitivities` is): the forward solve, the loss terms, the walk back over the segments
between consecutive observation and checkpoint times (`ForwardSolution.segments`; the forward pass
itself need not stop at the observation times, see `harness._forward`), the jump of the adjoint at
each observation time, the step size carried from one segment to the next, and the result. An
adjoint contributes only an `AdjointSystem`: its backward ODE (with its Jacobian for implicit
solvers), its jump, and what it accumulates.
"""

from __future__ import annotations

import numpy as np

from .._forward import ForwardSolution, SolveOptions, solve_forward
from ..errors import SolverError
from ..solvers import SolverStats, check_solver, integrate
from ..solvers import _step_rules as step_rules
from ._compiled_loop import continuous_gradient
from ._result import GradientResult


def backward_options(engine, forward: SolveOptions) -> SolveOptions:
    """The backward pass's solver and tolerances: the engine's, or else the forward pass's."""
    options = SolveOptions(
        solver=engine.solver or forward.solver,
        rtol=engine.rtol if engine.rtol is not None else forward.rtol,
        atol=engine.atol if engine.atol is not None else forward.atol,
    )
    check_solver(options.solver)
    return options


def first_backward_step(fwd: ForwardSolution, options: SolveOptions) -> float | None:
    """The first step of the backward solve: a fraction of the forward pass's last proposed step for
    explicit solvers, None (the solver's own initial-step heuristic) for implicit ones.

    Explicit: the backward dynamics have the forward's time scales, so its step size is a better
    start than the heuristic, which costs an evaluation and starts small. But that proposal already
    includes the controller's growth factor after the last step, and the adjoint has just jumped by
    ∂L/∂z(t_K); half of it avoids a rejected first step more often than it costs an extra one.
    Over seed, multi-time and two-hidden-layer problems (six seeds, two tolerances) the three
    adjoints make 2-4% fewer backward evaluations than with the whole proposal, and 5-11% fewer
    than with the heuristic (benchmarks/bench_backward_first_step.py).
    Implicit (stiff): the jump of the adjoint excites fast modes the forward's last step never saw.
    """
    if check_solver(options.solver).implicit or fwd.h_last is None or step_rules.BACKWARD_FIRST_STEP_FRACTION is None:
        return None
    return step_rules.backward_first_step(fwd.h_last)


class AdjointSystem:
    """One continuous adjoint's part of the backward pass; `adjoint_gradient` drives it.

    Built once per gradient with the problem, θ, the engine value and the backward settings. The
    driver calls, for each backward segment from the last to the first (`ForwardSolution.segments`:
    the intervals between consecutive observation and checkpoint times): `jump` (at the end of a
    segment that is an observation time), `enter_piece` with the forward piece that covers the
    segment, then integrates `system` (with `jacobian` for implicit solvers) from the segment's end to
    its start, calling `on_step` (if set) after each accepted step, and hands the trajectory to
    `leave_piece`.

    Attributes
    ----------
    system : callable (t, y) -> ndarray or QuadratureTailSystem
        The backward right-hand side, as `harness.solvers.integrate` takes it.
    dense_forward : bool
        Whether the forward solve must keep its dense output (the adjoint reads z(t) from it).
    dense_backward : bool
        Whether the backward solve of each piece must return dense output.
    compiled_loop : str or None
        "backsolve", "interpolating", "quadrature" or "gauss" if `harness._compiled` has a compiled
        whole loop for this adjoint (`_compiled_loop.continuous_gradient` runs it where it applies: the
        plain MLP, explicit Runge-Kutta both ways, at every batch size); None runs the numpy driver.
    """

    dense_forward = False
    dense_backward = False
    compiled_loop = None  # the mode of the compiled whole loop that computes this adjoint, if any

    def __init__(self, problem, theta: np.ndarray, engine, options: SolveOptions):
        self.problem, self.theta, self.engine, self.options = problem, theta, engine, options
        self.model, self.batch = problem.model, problem.batch_size
        self.bn = self.batch * self.model.state_dim

    def n_checkpoints(self) -> int:
        """Stored forward states for a checkpointed forward solve; 0 stores the whole solution."""
        return 0

    def initial_state(self, fwd: ForwardSolution) -> np.ndarray:
        """y at t_K, before the jump by ∂L/∂z(t_K)."""
        raise NotImplementedError

    def jump(self, y: np.ndarray, fwd: ForwardSolution, k: int, dL_dz_k: np.ndarray) -> np.ndarray:
        """y after the adjoint's jump by ∂L/∂z(t_k), dL_dz_k of shape (B, N)."""
        raise NotImplementedError

    def enter_piece(self, fwd: ForwardSolution, i: int) -> None:
        """Prepare the backward solve of a segment inside forward piece i (e.g. read z(t) from the
        piece's dense output, `fwd.dense(i)`)."""

    def jacobian(self, t: float, y: np.ndarray):
        """∂(system)/∂y for Newton's method in implicit solvers (an approximation is enough)."""
        raise NotImplementedError

    def solver_failed(self, err: SolverError) -> Exception | None:
        """The exception to raise instead of a failed backward solve's, or None to re-raise it."""
        return None

    # callable (t, h, local) -> None, called after every accepted backward step with the step's own
    # interpolant (see `harness.solvers.integrate`): what accumulates step by step (GaussAdjoint)
    on_step = None

    def leave_piece(self, traj) -> np.ndarray:
        """y at the segment's start, after what the adjoint accumulates over the segment."""
        return traj.y_end

    def gradients(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """(dL/dθ (P,), dL/dz0 (B, N), diagnostics) from y at t0."""
        raise NotImplementedError


def adjoint_gradient(problem, theta, forward: SolveOptions, engine, adjoint: type[AdjointSystem]):
    """dL/dθ and dL/dz0 by the continuous adjoint `adjoint`, built for `engine`.

    Parameters
    ----------
    problem : Problem
    theta : ndarray, shape (P,)
    forward : SolveOptions
        The forward pass's solver and tolerances (the backward pass's default to them).
    engine : engine value
        Carries the backward settings (`solver`, `rtol`, `atol`) and the adjoint's own options.
    adjoint : AdjointSystem subclass

    Returns
    -------
    GradientResult
    """
    options = backward_options(engine, forward)
    # the whole loop compiled, where it applies (explicit RK, the plain MLP; see `_compiled_loop`)
    compiled = continuous_gradient(problem, theta, forward, options, engine, adjoint)
    if compiled is not None:
        return compiled
    implicit = check_solver(options.solver).implicit
    backward = adjoint(problem, theta, engine, options)
    fwd = solve_forward(
        problem.model, theta, problem.z0, problem.t0, problem.times, forward,
        dense=backward.dense_forward, n_checkpoints=backward.n_checkpoints(),
    )
    loss, dL_dz = problem.loss_terms(fwd.z_at_times)
    y = backward.initial_state(fwd)
    stats = SolverStats()
    h = first_backward_step(fwd, options)
    # k indexes `times` at the segment's end, or is -1 where a segment ends at a checkpoint
    for segment in reversed(fwd.segments):
        k = segment.time_index
        if k >= 0:
            y = backward.jump(y, fwd, k, dL_dz[k])
        backward.enter_piece(fwd, segment.piece)
        try:
            traj = integrate(
                backward.system, segment.t_end, segment.t_start, y, method=options.solver,
                rtol=options.rtol, atol=options.atol, jac=backward.jacobian if implicit else None,
                dense=backward.dense_backward, h0=h, on_step=backward.on_step,
            )
        except SolverError as err:
            replacement = backward.solver_failed(err)
            if replacement is None:
                raise
            raise replacement from err
        stats = stats + traj.stats
        # the next segment starts where this one's controller left off; implicit solvers re-estimate
        h = None if implicit else traj.h_last
        y = backward.leave_piece(traj)
    dtheta, dz0, diagnostics = backward.gradients(y)
    # re-solves of checkpointed forward pieces happen during the backward pass
    return GradientResult.of(engine, problem, loss, dtheta, dz0, fwd.stats, stats + fwd.recompute_stats, diagnostics)
