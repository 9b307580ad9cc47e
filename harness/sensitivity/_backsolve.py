"""BacksolveAdjoint: [z, a, ∂L/∂θ] solved together from t_K back to t0 (the tutorial's method)."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import UnstableBacksolveError
from ..solvers import stage_slots
from .._state_layout import block_diagonal, flat, states
from ._adjoint_systems import BacksolveSystem
from ._backward import AdjointSystem, adjoint_gradient
from ._registry import register_engine
from .algorithms import BacksolveAdjoint

ADVICE = "use InterpolatingAdjoint or QuadratureAdjoint, which read z from the forward solution"


class Backsolve(AdjointSystem):
    """y = [z, a | ∂L/∂θ], z re-created backwards; checked against the true z0 at the end."""

    compiled_loop = "backsolve"

    def __init__(self, problem, theta, engine, options):
        super().__init__(problem, theta, engine, options)
        self.system = BacksolveSystem(self.model, theta, self.batch, stage_slots(options.solver))

    def initial_state(self, fwd):
        return np.concatenate((flat(fwd.z_at_times[-1]), np.zeros(self.bn + self.model.n_params)))

    def jump(self, y, fwd, k, dL_dz_k):
        bn = self.bn
        y[:bn] = flat(fwd.z_at_times[k])  # reset z to the forward value, as torchdiffeq does
        y[bn : 2 * bn] += flat(dL_dz_k)
        return y

    def jacobian(self, t, y):
        # For Newton only: the exact Jacobian also has ∂((∂f/∂z)ᵀa)/∂z (second derivatives of f);
        # dropping it slows Newton's convergence but does not change the solution.
        import scipy.sparse as sp  # for implicit solvers only; it costs memory (benchmarks/bench_memory.py)

        J = self.model.jac(t, states(y[: self.bn], self.batch), self.theta)
        return sp.block_diag(
            (block_diagonal(J), block_diagonal(-J.transpose(0, 2, 1)),
             sp.csr_matrix((self.model.n_params,) * 2)),
            format="csc",
        )

    def solver_failed(self, err):
        return UnstableBacksolveError(
            f"BacksolveAdjoint's backward solve of z failed ({err}); the dynamics are likely "
            f"unstable backwards in time (stiff or dissipative): {ADVICE}"
        )

    def gradients(self, y):
        bn, engine, options, z0 = self.bn, self.engine, self.options, self.problem.z0
        z_back = states(y[:bn], self.batch)
        scale = options.atol + options.rtol * np.abs(z0)
        reconstruction_error = float(np.max(np.abs(z_back - z0) / scale))
        unstable = reconstruction_error > engine.max_reconstruction_error
        if unstable:
            message = (
                f"BacksolveAdjoint reconstructed z(t0) with an error of {reconstruction_error:.3g} "
                f"tolerances (limit {engine.max_reconstruction_error:g}): the backward solve of z is "
                f"unstable and the gradient unreliable; {ADVICE}"
            )
            if engine.on_unstable == "raise":
                raise UnstableBacksolveError(message)
            # stacklevel: the caller of `harness.gradient`, past the driver and the engine table
            warnings.warn(message, RuntimeWarning, stacklevel=5)
        diagnostics = {"reconstruction_error": reconstruction_error, "unstable": unstable}
        return y[2 * bn :].copy(), states(y[bn : 2 * bn], self.batch).copy(), diagnostics


def backsolve_gradient(engine: BacksolveAdjoint, problem, theta, forward):
    return adjoint_gradient(problem, theta, forward, engine, Backsolve)


register_engine(BacksolveAdjoint, compute=backsolve_gradient)
