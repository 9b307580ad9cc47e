"""Pieces shared by the adjoint engines: backward settings and the walk back through the pieces."""

from __future__ import annotations

from .._forward import ForwardSolution, SolveOptions
from ..solvers import check_solver


def backward_options(engine, forward: SolveOptions) -> SolveOptions:
    """The backward pass's solver and tolerances: the engine's, or else the forward pass's."""
    options = SolveOptions(
        solver=engine.solver or forward.solver,
        rtol=engine.rtol if engine.rtol is not None else forward.rtol,
        atol=engine.atol if engine.atol is not None else forward.atol,
    )
    check_solver(options.solver)
    return options


# Measured by benchmarks/bench_backward_first_step.py; see `first_backward_step`. None would leave
# explicit backward solves, too, to their solver's initial-step heuristic.
BACKWARD_FIRST_STEP_FRACTION: float | None = 0.5


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
    if check_solver(options.solver).implicit or fwd.h_last is None or BACKWARD_FIRST_STEP_FRACTION is None:
        return None
    return BACKWARD_FIRST_STEP_FRACTION * fwd.h_last


def pieces_backwards(fwd: ForwardSolution):
    """(i, piece, k) from the last piece to the first; k indexes `times` at the piece's end, or -1.

    The adjoint jumps by ∂L/∂z(t_k) at the end of a piece with k >= 0, before the piece is solved
    backwards.
    """
    for i in range(len(fwd.pieces) - 1, -1, -1):
        yield i, fwd.pieces[i], fwd.node_is_time[i]
