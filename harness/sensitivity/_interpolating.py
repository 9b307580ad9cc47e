"""InterpolatingAdjoint: [a, ∂L/∂θ] solved backwards, with z read from the dense forward solution."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._forward import SolveOptions, solve_forward
from ..solvers import SolverStats, check_solver, integrate, stage_slots
from .._state_layout import block_diagonal, flat, states
from ._adjoint_systems import InterpolatingSystem
from .algorithms import InterpolatingAdjoint
from ._backward import backward_options, first_backward_step, pieces_backwards
from ._result import GradientResult


def interpolating_gradient(problem, theta, forward: SolveOptions, engine: InterpolatingAdjoint):
    model, batch = problem.model, problem.batch_size
    n = model.state_dim
    bn, n_params = batch * n, model.n_params
    fwd = solve_forward(
        model, theta, problem.z0, problem.t0, problem.times, forward, dense=True,
        n_checkpoints=engine.n_checkpoints if engine.checkpointing else 0,
    )
    loss, dL_dz = problem.loss_terms(fwd.z_at_times)
    options = backward_options(engine, forward)
    implicit = check_solver(options.solver).implicit

    system = InterpolatingSystem(model, theta, batch, stage_slots(options.solver))
    y = np.zeros(bn + n_params)
    stats = SolverStats()
    h = first_backward_step(fwd, options)
    for i, piece, k in pieces_backwards(fwd):
        if k >= 0:
            y[:bn] += flat(dL_dz[k])
        z_of_t = system.z_of_t = fwd.dense(i)

        def jac(t, y):
            z = states(z_of_t(t), batch)
            J = model.jac(t, z, theta)
            # rows in the flat layout's order (i, b)
            J_theta = model.jac_theta(t, z, theta).transpose(1, 0, 2).reshape(bn, n_params)
            return sp.bmat(
                [[block_diagonal(-J.transpose(0, 2, 1)), None],
                 [sp.csr_matrix(-J_theta.T), sp.csr_matrix((n_params, n_params))]],
                format="csc",
            )

        traj = integrate(
            system, piece.t_end, piece.t_start, y, method=options.solver, rtol=options.rtol,
            atol=options.atol, jac=jac if implicit else None, h0=h,
        )
        y = traj.y_end
        stats = stats + traj.stats
        h = None if implicit else traj.h_last
    return GradientResult(
        engine=engine.name,
        loss=loss,
        dtheta=y[bn:].copy(),
        dz0=states(y[:bn], batch).copy(),
        forward_stats=fwd.stats,
        backward_stats=stats + fwd.recompute_stats,
        n_datapoints=problem.n_datapoints,
        diagnostics={"checkpointing": engine.checkpointing, "n_pieces": len(fwd.pieces)},
    )
