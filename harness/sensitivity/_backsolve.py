"""BacksolveAdjoint: [z, a, ∂L/∂θ] solved together from t_K back to t0 (the tutorial's method)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError, UnstableBacksolveError
from .._forward import SolveOptions, solve_forward
from ..solvers import SolverStats, check_solver, integrate, stage_slots
from .._state_layout import block_diagonal, flat, states
from ._adjoint_systems import BacksolveSystem
from .algorithms import BacksolveAdjoint
from ._backward import backward_options, first_backward_step, pieces_backwards
from ._result import GradientResult

ADVICE = "use InterpolatingAdjoint or QuadratureAdjoint, which read z from the forward solution"


def backsolve_gradient(problem, theta, forward: SolveOptions, engine: BacksolveAdjoint):
    model, batch = problem.model, problem.batch_size
    n = model.state_dim
    bn, n_params = batch * n, model.n_params
    fwd = solve_forward(model, theta, problem.z0, problem.t0, problem.times, forward)
    loss, dL_dz = problem.loss_terms(fwd.z_at_times)
    options = backward_options(engine, forward)

    system = BacksolveSystem(model, theta, batch, stage_slots(options.solver))

    def jac(t, y):
        # For Newton only: the exact Jacobian also has ∂((∂f/∂z)ᵀa)/∂z (second derivatives of f);
        # dropping it slows Newton's convergence but does not change the solution.
        J = model.jac(t, states(y[:bn], batch), theta)
        return sp.block_diag(
            (block_diagonal(J), block_diagonal(-J.transpose(0, 2, 1)), sp.csr_matrix((n_params,) * 2)),
            format="csc",
        )

    implicit = check_solver(options.solver).implicit
    y = np.concatenate((flat(fwd.z_at_times[-1]), np.zeros(bn + n_params)))
    stats = SolverStats()
    h = first_backward_step(fwd, options)
    for _, piece, k in pieces_backwards(fwd):
        if k >= 0:
            y[:bn] = flat(fwd.z_at_times[k])  # reset z to the forward value, as torchdiffeq does
            y[bn : 2 * bn] += flat(dL_dz[k])
        try:
            traj = integrate(
                system, piece.t_end, piece.t_start, y, method=options.solver, rtol=options.rtol,
                atol=options.atol, jac=jac if implicit else None, h0=h,
            )
        except SolverError as err:
            raise UnstableBacksolveError(
                f"BacksolveAdjoint's backward solve of z failed ({err}); the dynamics are likely "
                f"unstable backwards in time (stiff or dissipative): {ADVICE}"
            ) from err
        y = traj.y_end
        stats = stats + traj.stats
        h = None if implicit else traj.h_last
    z_back = states(y[:bn], batch)
    scale = options.atol + options.rtol * np.abs(problem.z0)
    reconstruction_error = float(np.max(np.abs(z_back - problem.z0) / scale))
    unstable = reconstruction_error > engine.max_reconstruction_error
    if unstable:
        message = (
            f"BacksolveAdjoint reconstructed z(t0) with an error of {reconstruction_error:.3g} "
            f"tolerances (limit {engine.max_reconstruction_error:g}): the backward solve of z is "
            f"unstable and the gradient unreliable; {ADVICE}"
        )
        if engine.on_unstable == "raise":
            raise UnstableBacksolveError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return GradientResult(
        engine=engine.name,
        loss=loss,
        dtheta=y[2 * bn :].copy(),
        dz0=states(y[bn : 2 * bn], batch).copy(),
        forward_stats=fwd.stats,
        backward_stats=stats,
        n_datapoints=problem.n_datapoints,
        diagnostics={"reconstruction_error": reconstruction_error, "unstable": unstable},
    )
