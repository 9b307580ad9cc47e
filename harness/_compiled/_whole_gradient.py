"""A continuous adjoint's gradient with its whole adaptive loop compiled (`_adaptive_loop.py`).

`adjoint_gradient` (harness.sensitivity._backward) asks `whole_loop_gradient` first; it answers None
where the compiled loop does not apply (see `whole_loop_applies`) or where the compiled solve did not
finish (a step-size underflow or a step budget that cannot suffice), and the numpy driver then runs
as before, raising its own explained error in the second case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._stage_vjps import _augmented_layout
from ..model import MLP
from ..solvers import ExplicitRungeKutta, SolverStats, check_solver
from . import kernels
from ._arguments import (ALONE, BACKSOLVE, INTERPOLATING, NEED_ROOM, OK, dense_store, network_arguments,
                         quadrature_rule, tableau_arguments, workspace)

# what an `AdjointSystem` subclass declares in `compiled_loop` -> the loop's mode. QuadratureAdjoint and
# GaussAdjoint share ALONE: their sums differ only in the number of nodes per step (`n_nodes`).
MODES = {"backsolve": BACKSOLVE, "interpolating": INTERPOLATING, "quadrature": ALONE, "gauss": ALONE}


def whole_loop_applies(problem, forward, options, engine, adjoint) -> bool:
    """The compiled loop covers this gradient: an adjoint that declares a loop, the plain autonomous
    MLP (the loop's kernels take no t), explicit Runge-Kutta solvers both ways, no checkpointing, and
    the backward pass started from the forward's last step."""
    from ..sensitivity._backward import BACKWARD_FIRST_STEP_FRACTION

    model = problem.model
    if getattr(adjoint, "compiled_loop", None) not in MODES or type(model) is not MLP or not model.autonomous:
        return False
    if getattr(engine, "checkpointing", False) or BACKWARD_FIRST_STEP_FRACTION is None:
        return False
    return all(isinstance(check_solver(o.solver), ExplicitRungeKutta) for o in (forward, options))


def whole_loop_gradient(problem, theta, forward, options, engine, adjoint):
    """The `GradientResult` of `adjoint_gradient(problem, theta, forward, engine, adjoint)`, computed by
    the compiled loop, or None (see the module docstring). `options`: the backward pass's settings.

    The wide products go to the BLAS scipy ships, threaded as the process's BLAS is (OPENBLAS_NUM_THREADS,
    threadpoolctl), as numpy's are. Measured (8-128-128-8, B = 256): two threads 1.3x faster than one on
    an idle 2-core machine, and several times slower while another job holds a core (OpenBLAS's threads
    spin-wait for each other), so on a shared machine set OPENBLAS_NUM_THREADS=1.
    """
    from ..sensitivity._backward import BACKWARD_FIRST_STEP_FRACTION
    from ..sensitivity._quadrature import gauss_legendre
    from ..sensitivity._result import GradientResult

    mode = MODES[adjoint.compiled_loop]
    model, batch = problem.model, problem.batch_size
    bn = batch * model.state_dim
    forward_solver = check_solver(forward.solver)
    keep_dense = mode != BACKSOLVE
    # room for 32 steps per observation time, doubled (and the forward pass re-run) when too small
    solved = compiled_forward(problem, theta, forward, keep_dense, 32 * len(problem.times) if keep_dense else 0,
                              lambda capacity: dense_store(capacity, bn, forward_solver.tableau.dense_degree))
    if solved is None:
        return None
    net, times, store, piece_first, h_last, fwd_counts, loss, z_at, dL_dz = (
        solved.net, solved.times, solved.store, solved.piece_first, solved.h_last, solved.counts, solved.loss,
        solved.z_at, solved.dL_dz)
    backward_solver = check_solver(options.solver)
    system = adjoint(problem, theta, engine, options)
    n_blocks = 2 if mode == BACKSOLVE else 1
    u, q = np.zeros(n_blocks * bn), np.zeros(model.n_params)
    # ALONE: the Gauss-Legendre rule of every backward step, the adjoint's own (`n_nodes`)
    rule = gauss_legendre(system.n_nodes) if mode == ALONE else ((), ())
    nodes = quadrature_rule(*rule, backward_solver.tableau.dense_degree, bn)
    status, bwd_counts = kernels().backward_pass(
        mode, net, tableau_arguments(backward_solver), z_at, dL_dz, problem.t0, times,
        BACKWARD_FIRST_STEP_FRACTION * h_last, options.rtol, options.atol, store, piece_first,
        workspace(backward_solver.tableau.n_stages, n_blocks * bn, bn, model.n_params), u, q, nodes,
    )
    if status != OK:
        return None
    to_theta, _ = _augmented_layout(model.widths)
    # the adjoint's own `gradients` turns the state at t0 into the result (BacksolveAdjoint's
    # reconstruction check included): the flat numpy layout [z, a | ∂L/∂θ] or [a | ∂L/∂θ], or for
    # ALONE a, with the quadrature's ∂L/∂θ handed over first
    if mode == ALONE:
        system.take_quadrature(q[to_theta], n_steps=bwd_counts[1])
        state = u
    else:
        system.n_pieces = len(times)
        state = np.concatenate((u, q[to_theta]))
    dtheta, dz0, diagnostics = system.gradients(state)
    return GradientResult(
        engine=engine.name,
        loss=loss,
        dtheta=dtheta,
        dz0=dz0,
        forward_stats=SolverStats(n_rhs=fwd_counts[0], n_accepted=fwd_counts[1], n_rejected=fwd_counts[2]),
        backward_stats=SolverStats(n_rhs=bwd_counts[0], n_accepted=bwd_counts[1], n_rejected=bwd_counts[2]),
        n_datapoints=problem.n_datapoints,
        diagnostics=diagnostics,
    )


@dataclass(frozen=True)
class CompiledForward:
    """A compiled forward solve over the observation times and the loss there (`compiled_forward`).

    net, tableau : the kernel's and the solver's arguments; times (K,); z0, z_at (K, N, B) and dL_dz
    (K, N, B), feature-major; store and piece_first (K + 1,): the steps each piece kept; h_last: the last
    proposed step; counts: (n_rhs, n_accepted, n_rejected); loss: float.
    """

    net: tuple
    tableau: tuple
    times: np.ndarray
    z0: np.ndarray
    z_at: np.ndarray
    store: tuple
    piece_first: np.ndarray
    h_last: float
    counts: tuple
    loss: float
    dL_dz: np.ndarray


def compiled_forward(problem, theta, forward, keep: bool, capacity: int, make_store) -> CompiledForward | None:
    """Solve forward compiled, keeping each accepted step in `make_store(capacity)` (with `keep`; the
    capacity doubled and the solve re-run while it is too small), then the loss and ∂L/∂z at the
    times; None where the solve failed (the numpy driver then runs and explains)."""

    model, batch = problem.model, problem.batch_size
    bn = batch * model.state_dim
    net = network_arguments(model, theta, batch)
    times = np.ascontiguousarray(problem.times, dtype=np.float64)
    z0 = np.ascontiguousarray(problem.z0.T)
    solver = check_solver(forward.solver)
    tableau = tableau_arguments(solver)
    z_at = np.empty((len(times), model.state_dim, batch))
    piece_first = np.zeros(len(times) + 1, dtype=np.int64)
    work = workspace(solver.tableau.n_stages, bn, bn, 0)
    while True:
        store = make_store(capacity)
        status, h_last, counts = kernels().forward_pass(
            net, tableau, z0, problem.t0, times, forward.rtol, forward.atol, keep, work, store, z_at, piece_first,
        )
        if status != NEED_ROOM:
            break
        capacity *= 2
    if status != OK:
        return None
    loss, dL_dz = problem.loss_terms(z_at.transpose(0, 2, 1))
    dL_dz = np.ascontiguousarray(np.transpose(dL_dz, (0, 2, 1)))
    return CompiledForward(net, tableau, times, z0, z_at, store, piece_first, h_last, counts, loss, dL_dz)
