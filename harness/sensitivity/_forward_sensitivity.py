"""ForwardSensitivity: z, S = ∂z/∂θ and ∂z/∂z0 solved forwards together (a reference engine).

Unlike the forward pass of the other engines (`harness._forward`, which reads the observation times
from DP5's and BS3's dense output), this solve ends exactly at every observation time with every
solver: as a reference it then shares nothing with the interpolation it checks, and its z(t_k) and
S(t_k) are end states, not interpolants.
"""

from __future__ import annotations

import numpy as np

from .._forward import SolveOptions
from ..solvers import SolverStats, check_solver, integrate
from .._state_layout import block_diagonal, flat, states
from .algorithms import ForwardSensitivity
from ._registry import register_engine
from ._result import GradientResult


def forward_sensitivity_gradient(engine: ForwardSensitivity, problem, theta, forward: SolveOptions):
    model, batch = problem.model, problem.batch_size
    n, n_params = model.state_dim, model.n_params
    # y = [z (flat layout) | S_theta (B, N, P) | S_z0 (B, N, N)], the sensitivities row by row
    sizes = np.cumsum([batch * n, batch * n * n_params])

    def unpack(y):
        z, s_theta, s_z0 = np.split(y, sizes)
        return states(z, batch), s_theta.reshape(batch, n, n_params), s_z0.reshape(batch, n, n)

    def rhs(t, y):
        z, s_theta, s_z0 = unpack(y)
        J = model.jac(t, z, theta)
        d_theta = np.einsum("bij,bjp->bip", J, s_theta) + model.jac_theta(t, z, theta)
        d_z0 = np.einsum("bij,bjk->bik", J, s_z0)
        return np.concatenate((flat(model.f(t, z, theta)), d_theta.reshape(-1), d_z0.reshape(-1)))

    def jac(t, y):
        # Newton only needs an approximation: ∂(J S)/∂S = J acting on every column of S; the
        # second-derivative terms ∂(J S + f_θ)/∂z are left out (CVODES's simultaneous corrector does
        # the same), which slows Newton's convergence but not the solution's accuracy.
        import scipy.sparse as sp  # for implicit solvers only; it costs memory (benchmarks/bench_memory.py)

        J = model.jac(t, unpack(y)[0], theta)
        blocks = [block_diagonal(J)]
        for width in (n_params, n):
            kron = np.einsum("bij,pq->bipjq", J, np.eye(width)).reshape(batch, n * width, n * width)
            blocks.append(sp.bsr_matrix((kron, np.arange(batch), np.arange(batch + 1))))
        return sp.block_diag(blocks, format="csc")

    implicit = check_solver(forward.solver).implicit
    s_z0 = np.broadcast_to(np.eye(n), (batch, n, n))
    y = np.concatenate((flat(problem.z0), np.zeros(batch * n * n_params), s_z0.reshape(-1)))
    t, h = problem.t0, None
    stats = SolverStats()
    z_at_times = np.empty((problem.times.size, batch, n))
    s_theta_at, s_z0_at = [], []
    for k, t_next in enumerate(problem.times):
        traj = integrate(
            rhs, t, float(t_next), y, method=forward.solver, rtol=forward.rtol, atol=forward.atol,
            jac=jac if implicit else None, h0=h,
        )
        y, h, t = traj.y_end, traj.h_last, float(t_next)
        stats = stats + traj.stats
        z, s_theta, s_z0 = unpack(y)
        z_at_times[k] = z
        s_theta_at.append(s_theta)
        s_z0_at.append(s_z0)
    loss, dL_dz = problem.loss_terms(z_at_times)
    dtheta = sum(np.einsum("bip,bi->p", s, g) for s, g in zip(s_theta_at, dL_dz, strict=True))
    dz0 = sum(np.einsum("bik,bi->bk", s, g) for s, g in zip(s_z0_at, dL_dz, strict=True))
    return GradientResult.of(engine, problem, loss, dtheta, dz0, stats, SolverStats())


register_engine(ForwardSensitivity, compute=forward_sensitivity_gradient)
