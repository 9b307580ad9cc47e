"""QuadratureAdjoint: a solved backwards alone, then ∂L/∂θ by Gauss-Legendre quadrature."""

from __future__ import annotations

import numpy as np

from .._forward import SolveOptions, solve_forward
from ..solvers import SolverStats, check_solver, integrate
from .._state_layout import block_diagonal, flat, stacked_states, states
from ._adjoint_systems import InterpolatingSystem
from .algorithms import QuadratureAdjoint
from ._backward import backward_options, first_backward_step, pieces_backwards
from ._result import GradientResult


def quadrature_gradient(problem, theta, forward: SolveOptions, engine: QuadratureAdjoint):
    model, batch = problem.model, problem.batch_size
    n = model.state_dim
    bn = batch * n
    fwd = solve_forward(model, theta, problem.z0, problem.t0, problem.times, forward, dense=True)
    loss, dL_dz = problem.loss_terms(fwd.z_at_times)
    options = backward_options(engine, forward)
    implicit = check_solver(options.solver).implicit
    x_gl, w_gl = np.polynomial.legendre.leggauss(engine.quadrature_nodes)

    # the adjoint ODE of InterpolatingAdjoint, of which only a is integrated here (∂L/∂θ by quadrature)
    system = InterpolatingSystem(model, theta, batch, n_slots=1)
    a = np.zeros(bn)
    dtheta = np.zeros(model.n_params)
    stats = SolverStats()
    h = first_backward_step(fwd, options)
    n_quadrature_points = 0
    for i, piece, k in pieces_backwards(fwd):
        if k >= 0:
            a = a + flat(dL_dz[k])
        z_of_t = system.z_of_t = fwd.dense(i)

        def rhs(t, a):
            da = np.empty(bn)
            system.stage_rhs(t, a, 0, da)
            return da

        def jac(t, a):
            J = model.jac(t, states(z_of_t(t), batch), theta)
            return block_diagonal(-J.transpose(0, 2, 1))

        traj = integrate(
            rhs, piece.t_end, piece.t_start, a, method=options.solver, rtol=options.rtol,
            atol=options.atol, jac=jac if implicit else None, dense=True, h0=h,
        )
        stats = stats + traj.stats
        h = None if implicit else traj.h_last
        # Gauss-Legendre on every backward step: both interpolants are smooth inside a step.
        edges = np.sort(traj.dense.t_nodes)
        mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
        t_nodes = (mid[:, None] + half[:, None] * x_gl).reshape(-1)
        weights = (half[:, None] * w_gl).reshape(-1)
        z_nodes = stacked_states(z_of_t.many(t_nodes), batch)
        a_nodes = stacked_states(traj.dense.many(t_nodes) * weights[:, None], batch)
        # one VJP for all nodes, each row at its own node's time (a time-dependent f reads it)
        dtheta += model.vjp(np.repeat(t_nodes, batch), z_nodes, theta, a_nodes)[2]
        n_quadrature_points += weights.size
        a = traj.y_end
    return GradientResult(
        engine=engine.name,
        loss=loss,
        dtheta=dtheta,
        dz0=states(a, batch).copy(),
        forward_stats=fwd.stats,
        backward_stats=stats,
        n_datapoints=problem.n_datapoints,
        diagnostics={"quadrature_points": n_quadrature_points},
    )

