"""GaussAdjoint: a solved backwards alone, ∂L/∂θ summed per backward step by Gauss-Legendre quadrature.

As SciMLSensitivity's `GaussAdjoint` (src/gauss_adjoint.jl, with DiffEqCallbacks' integrating sum):
the θ integral ∫ (∂f/∂θ)ᵀ a dt is accumulated by a step callback while a is solved backwards, on
n = div(order + 1, 2) Gauss-Legendre nodes of each accepted step, with z from the dense forward
solution and a from the step's own interpolant. Nothing of the backward solution outlives its step.
"""

from __future__ import annotations

from .._state_layout import states
from ..solvers import check_solver
from ._backward import adjoint_gradient
from ._adjoint_systems import gauss_legendre
from ._quadrature import AdjointAlone
from ._registry import register_engine
from .algorithms import GaussAdjoint


def gauss_nodes(order: int) -> int:
    """SciMLSensitivity's node count for a solver of this order: exact for the step's interpolant
    (degree <= order) times a smooth z-dependent factor, to the order of the solver itself."""
    return max(1, (order + 1) // 2)


class Gauss(AdjointAlone):
    """y = a alone (B N,); `on_step` adds each backward step's Gauss-Legendre sum to ∂L/∂θ."""

    dense_backward = False  # the quadrature reads a from each step's interpolant, during the step
    compiled_loop = "gauss"

    def __init__(self, problem, theta, engine, options):
        super().__init__(problem, theta, engine, options)
        self.n_nodes = gauss_nodes(check_solver(options.solver).order)
        self._x_gl, self._w_gl = gauss_legendre(self.n_nodes)
        self.n_quadrature_vjps = 0

    def on_step(self, t, h, local):
        """The backward step from t to t + h (h < 0) covers [t + h, t]: its share of ∫ (∂f/∂θ)ᵀ a dt."""
        half = 0.5 * abs(h)
        t_nodes = (t + 0.5 * h) + half * self._x_gl
        self.add_quadrature(t_nodes, local(t_nodes) * (half * self._w_gl)[:, None])
        self.n_quadrature_vjps += 1

    def take_quadrature(self, dtheta, n_steps):
        super().take_quadrature(dtheta, n_steps)
        self.n_quadrature_vjps = n_steps  # one (batched over the nodes) per step

    def gradients(self, a):
        diagnostics = {"quadrature_points": self.n_quadrature_points, "gauss_nodes": self.n_nodes,
                       "quadrature_vjps": self.n_quadrature_vjps}
        return self.dtheta, states(a, self.batch).copy(), diagnostics


def gauss_gradient(engine: GaussAdjoint, problem, theta, forward):
    return adjoint_gradient(problem, theta, forward, engine, Gauss)


register_engine(GaussAdjoint, compute=gauss_gradient)
