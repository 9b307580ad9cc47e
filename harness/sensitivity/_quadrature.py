"""QuadratureAdjoint: a solved backwards alone, then ∂L/∂θ by Gauss-Legendre quadrature."""

from __future__ import annotations

import numpy as np

from .._state_layout import block_diagonal, flat, stacked_states, states
from ._adjoint_systems import InterpolatingSystem, gauss_legendre
from ._backward import AdjointSystem, adjoint_gradient
from ._registry import register_engine
from .algorithms import QuadratureAdjoint


class AdjointAlone(AdjointSystem):
    """y = a alone (B N,), with z read from the dense forward solution; ∂L/∂θ = ∫ (∂f/∂θ)ᵀ a dt is
    summed by Gauss-Legendre quadrature outside the ODE (QuadratureAdjoint after each piece,
    GaussAdjoint during each step). The backward ODE is InterpolatingAdjoint's, without its θ part."""

    dense_forward = True

    def __init__(self, problem, theta, engine, options):
        super().__init__(problem, theta, engine, options)
        self._adjoint = InterpolatingSystem(self.model, theta, self.batch, n_slots=1)
        self.dtheta = np.zeros(self.model.n_params)
        self.n_quadrature_points = 0

    def system(self, t, a):
        da = np.empty(self.bn)
        self._adjoint.stage_rhs(t, a, 0, da)
        return da

    def initial_state(self, fwd):
        return np.zeros(self.bn)

    def jump(self, a, fwd, k, dL_dz_k):
        return a + flat(dL_dz_k)

    def enter_piece(self, fwd, i):
        self._adjoint.z_of_t = fwd.dense(i)

    def jacobian(self, t, a):
        J = self.model.jac(t, states(self._adjoint.z_of_t(t), self.batch), self.theta)
        return block_diagonal(-J.transpose(0, 2, 1))

    def add_quadrature(self, t_nodes: np.ndarray, weighted_a: np.ndarray) -> None:
        """∂L/∂θ += Σₙ (∂f/∂θ)ᵀ(z(tₙ)) aₙ wₙ, with `weighted_a` (M, B N) the flat aₙ wₙ at `t_nodes` (M,)."""
        z_nodes = stacked_states(self._adjoint.z_of_t.many(t_nodes), self.batch)
        a_nodes = stacked_states(weighted_a, self.batch)
        # one VJP for all nodes, each row at its own node's time (a time-dependent f reads it)
        self.dtheta += self.model.vjp(np.repeat(t_nodes, self.batch), z_nodes, self.theta, a_nodes)[2]
        self.n_quadrature_points += len(t_nodes)

    def take_quadrature(self, dtheta: np.ndarray, n_steps: int) -> None:
        """The compiled loop's sum instead (harness._compiled): ∂L/∂θ (P,) over `n_steps` accepted
        backward steps of `n_nodes` nodes each."""
        self.dtheta = dtheta
        self.n_quadrature_points = n_steps * self.n_nodes


class Quadrature(AdjointAlone):
    """∂L/∂θ summed over Gauss-Legendre nodes on every step of each piece's dense backward solution."""

    dense_backward = True  # the quadrature reads a(t) between the backward steps
    compiled_loop = "quadrature"

    def __init__(self, problem, theta, engine, options):
        super().__init__(problem, theta, engine, options)
        self.n_nodes = engine.quadrature_nodes  # per backward step
        self._x_gl, self._w_gl = gauss_legendre(self.n_nodes)

    def leave_piece(self, traj):
        # Gauss-Legendre on every backward step: both interpolants are smooth inside a step.
        edges = np.sort(traj.dense.t_nodes)
        mid, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
        t_nodes = (mid[:, None] + half[:, None] * self._x_gl).reshape(-1)
        weights = (half[:, None] * self._w_gl).reshape(-1)
        self.add_quadrature(t_nodes, traj.dense.many(t_nodes) * weights[:, None])
        return traj.y_end

    def gradients(self, a):
        diagnostics = {"quadrature_points": self.n_quadrature_points}
        return self.dtheta, states(a, self.batch).copy(), diagnostics


def quadrature_gradient(engine: QuadratureAdjoint, problem, theta, forward):
    return adjoint_gradient(problem, theta, forward, engine, Quadrature)


register_engine(QuadratureAdjoint, compute=quadrature_gradient)
