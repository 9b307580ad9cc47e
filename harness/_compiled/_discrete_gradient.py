"""RecursiveCheckpointAdjoint's gradient in two compiled calls: the forward pass of the whole loop
(`_adaptive_loop.forward_pass`, keeping each accepted step's size) and the reverse sweep through those
steps (`_reverse_sweep.reverse_sweep`, stored or binomially checkpointed).

`harness.sensitivity._discrete.recursive_checkpoint_gradient` asks `harness._compiled.discrete_gradient`
first; it answers None where this path does not apply (`discrete_loop_applies`) or where the compiled
forward solve did not finish, and the numpy engine then runs as before (raising its own explained
error in the second case).
"""

from __future__ import annotations

import numpy as np

from .._stage_vjps import _augmented_layout
from ..model import MLP
from ..solvers import ExplicitRungeKutta, SolverStats, check_solver
from ._arguments import step_store, sweep_workspace
from . import kernels
from ._whole_gradient import compiled_forward

# the explicit solvers whose tableaus both this path and the numpy engine hold (DP8 is scipy's DOP853
# and stays numpy: its steps are scipy's loop, not `ExplicitRungeKutta`'s)
SOLVERS = ("DP5", "BS3")


def discrete_loop_applies(problem, forward) -> bool:
    """This path covers the gradient: the plain autonomous MLP (the kernels take no t) with DP5 or BS3.
    Implicit solvers are left to the numpy engine, which refuses them with its one-line reason."""
    model = problem.model
    if type(model) is not MLP or not model.autonomous or forward.solver not in SOLVERS:
        return False
    return isinstance(check_solver(forward.solver), ExplicitRungeKutta)


def discrete_loop_gradient(problem, theta, forward, engine):
    """The `GradientResult` of RecursiveCheckpointAdjoint (`engine`) for `problem` at θ with the forward
    settings `forward`, computed compiled, or None (see the module docstring). Wide products go to BLAS
    threaded as the process's BLAS is (see `whole_loop_gradient`)."""
    from ..sensitivity._discrete import discrete_result

    model, batch = problem.model, problem.batch_size
    bn = batch * model.state_dim
    n_stages = check_solver(forward.solver).tableau.n_stages
    # the step sizes alone (one float per step, and its t): the sweep replays each piece's states from
    # its start, as the numpy engine does, so memory and the counts it reports are the numpy engine's.
    # Room for 256 steps per time (4 KB), doubled (and the forward pass re-run) when too small.
    solved = compiled_forward(problem, theta, forward, True, 256 * len(problem.times), step_store)
    if solved is None:
        return None
    net, tableau, z0, z_at, dL_dz, store, piece_first, fwd_counts, loss = (
        solved.net, solved.tableau, solved.z0, solved.z_at, solved.dL_dz, solved.store, solved.piece_first,
        solved.counts, solved.loss)
    checkpoints = -1 if engine.checkpoints is None else int(engine.checkpoints)
    longest = int(np.max(np.diff(piece_first)))
    slots, stack, sweep_work = sweep_workspace(n_stages, bn, model.n_params, longest, checkpoints)
    z_bar, q = np.zeros(bn), np.zeros(model.n_params)
    n_f, n_vjp, recomputed, peak_held, n_steps = kernels().reverse_sweep(
        net, tableau, z0, z_at, dL_dz, store[1], piece_first, checkpoints, slots, stack, sweep_work, z_bar, q,
    )
    to_theta, _ = _augmented_layout(model.widths)
    return discrete_result(
        engine, problem, loss, q[to_theta], np.ascontiguousarray(z_bar.reshape(model.state_dim, batch).T),
        SolverStats(n_rhs=fwd_counts[0], n_accepted=fwd_counts[1], n_rejected=fwd_counts[2]), n_f, n_vjp, n_steps,
        recomputed, peak_held)
