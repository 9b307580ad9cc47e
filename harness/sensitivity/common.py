"""Pieces shared by the adjoint engines: backward settings and the walk back through the pieces."""

from __future__ import annotations

from ..forward import ForwardSolution, SolveOptions
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


def pieces_backwards(fwd: ForwardSolution):
    """(i, piece, k) from the last piece to the first; k indexes `times` at the piece's end, or -1.

    The adjoint jumps by ∂L/∂z(t_k) at the end of a piece with k >= 0, before the piece is solved
    backwards.
    """
    for i in range(len(fwd.pieces) - 1, -1, -1):
        yield i, fwd.pieces[i], fwd.node_is_time[i]
