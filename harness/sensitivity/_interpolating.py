"""InterpolatingAdjoint: [a, ∂L/∂θ] solved backwards, with z read from the dense forward solution."""

from __future__ import annotations

import numpy as np

from ..solvers import stage_slots
from .._state_layout import block_diagonal, flat, states
from ._adjoint_systems import InterpolatingSystem
from ._backward import AdjointSystem, adjoint_gradient
from ._registry import register_engine
from .algorithms import InterpolatingAdjoint


class Interpolating(AdjointSystem):
    """y = [a | ∂L/∂θ]; z(t) from the forward solution's dense output (re-solved if checkpointed)."""

    compiled_loop = "interpolating"

    dense_forward = True

    def __init__(self, problem, theta, engine, options):
        super().__init__(problem, theta, engine, options)
        self.system = InterpolatingSystem(self.model, theta, self.batch, stage_slots(options.solver))
        self.n_pieces = self.n_segments = 0

    def n_checkpoints(self):
        return self.engine.n_checkpoints if self.engine.checkpointing else 0

    def initial_state(self, fwd):
        self.n_pieces = len(fwd.pieces)  # forward pieces: the states a checkpointed solve stores
        self.n_segments = len(fwd.segments)  # backward solves, one per interval between nodes
        return np.zeros(self.bn + self.model.n_params)

    def jump(self, y, fwd, k, dL_dz_k):
        y[: self.bn] += flat(dL_dz_k)
        return y

    def enter_piece(self, fwd, i):
        self.system.z_of_t = fwd.dense(i)

    def jacobian(self, t, y):
        import scipy.sparse as sp  # for implicit solvers only; it costs memory (benchmarks/bench_memory.py)

        bn, n_params = self.bn, self.model.n_params
        z = states(self.system.z_of_t(t), self.batch)
        J = self.model.jac(t, z, self.theta)
        # rows in the flat layout's order (i, b)
        J_theta = self.model.jac_theta(t, z, self.theta).transpose(1, 0, 2).reshape(bn, n_params)
        return sp.bmat(
            [[block_diagonal(-J.transpose(0, 2, 1)), None],
             [sp.csr_matrix(-J_theta.T), sp.csr_matrix((n_params, n_params))]],
            format="csc",
        )

    def gradients(self, y):
        diagnostics = {"checkpointing": self.engine.checkpointing, "n_pieces": self.n_pieces,
                       "n_segments": self.n_segments}
        return y[self.bn :].copy(), states(y[: self.bn], self.batch).copy(), diagnostics


def interpolating_gradient(engine: InterpolatingAdjoint, problem, theta, forward):
    return adjoint_gradient(problem, theta, forward, engine, Interpolating)


register_engine(InterpolatingAdjoint, compute=interpolating_gradient)
