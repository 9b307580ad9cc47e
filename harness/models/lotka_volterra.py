"""Lotka-Volterra predator-prey dynamics, θ = (α, β, γ, δ), with exact derivatives.

    dx/dt = α x - β x y        (prey: growth, predation)
    dy/dt = δ x y - γ y        (predator: conversion, death)

z = (x, y) per row. `PredatorPreyGrowth` is the part without the interaction (α x, -γ y): the known
physics of the universal differential equation in `ude.py`, whose network learns the interaction.
"""

from __future__ import annotations

import numpy as np

from ._protocol import VectorField, scalar_layout


class _NamedScalars(VectorField):
    """A model whose θ is a few named scalars: its layout is one part per name, `init_theta` is where
    `init` starts, and two instances are the same model whatever their starting θ (the vector field
    is the class's, θ is passed to every call)."""

    def __init__(self, init_theta):
        self.init_theta = tuple(float(v) for v in self.check_theta(init_theta))

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self).__name__)

    @property
    def layout(self):
        return scalar_layout(self.parameter_names)


class LotkaVolterra(_NamedScalars):
    """dx/dt = α x - β x y, dy/dt = δ x y - γ y; θ = (α, β, γ, δ), N = 2, P = 4.

    Parameters
    ----------
    init_theta : sequence of 4 floats
        The θ that `init` returns (perturbed by 10 % with the generator), a sensible start for fits.
    """

    state_dim = 2
    n_params = 4
    parameter_names = ["alpha", "beta", "gamma", "delta"]

    def __init__(self, init_theta=(1.0, 0.5, 1.0, 0.5)):
        super().__init__(init_theta)

    def f(self, t, z, theta):
        alpha, beta, gamma, delta = theta
        x, y = z[:, 0], z[:, 1]
        xy = x * y
        return np.stack((alpha * x - beta * xy, delta * xy - gamma * y), axis=1)

    def vjp(self, t, z, theta, a, *, per_sample=False):
        alpha, beta, gamma, delta = theta
        x, y = z[:, 0], z[:, 1]
        a1, a2 = a[:, 0], a[:, 1]
        xy = x * y
        f = np.stack((alpha * x - beta * xy, delta * xy - gamma * y), axis=1)
        # ∂f/∂z = [[α - β y, -β x], [δ y, δ x - γ]]; a_z = (∂f/∂z)ᵀ a
        a_z = np.stack(((alpha - beta * y) * a1 + delta * y * a2, -beta * x * a1 + (delta * x - gamma) * a2), axis=1)
        # ∂f/∂θ = [[x, -x y, 0, 0], [0, 0, -y, x y]]
        rows = np.stack((x * a1, -xy * a1, -y * a2, xy * a2), axis=1)
        return f, a_z, rows if per_sample else rows.sum(axis=0)

    def jac(self, t, z, theta):
        alpha, beta, gamma, delta = theta
        x, y = z[:, 0], z[:, 1]
        J = np.empty((len(z), 2, 2))
        J[:, 0, 0] = alpha - beta * y
        J[:, 0, 1] = -beta * x
        J[:, 1, 0] = delta * y
        J[:, 1, 1] = delta * x - gamma
        return J

    def jac_theta(self, t, z, theta):
        x, y = z[:, 0], z[:, 1]
        J = np.zeros((len(z), 2, 4))
        J[:, 0, 0] = x
        J[:, 0, 1] = -x * y
        J[:, 1, 2] = -y
        J[:, 1, 3] = x * y
        return J

    def init(self, rng):
        return np.array(self.init_theta) * (1.0 + 0.1 * rng.standard_normal(4))

    def describe(self):
        return "Lotka-Volterra (α, β, γ, δ)"

    def spec(self):
        return "harness.models:LotkaVolterra", {"init_theta": list(self.init_theta)}


class PredatorPreyGrowth(_NamedScalars):
    """The growth terms alone: dx/dt = α x, dy/dt = -γ y; θ = (α, γ), N = 2, P = 2."""

    state_dim = 2
    n_params = 2
    parameter_names = ["alpha", "gamma"]

    def __init__(self, init_theta=(1.0, 1.0)):
        super().__init__(init_theta)

    def f(self, t, z, theta):
        return z * np.array([theta[0], -theta[1]])

    def vjp(self, t, z, theta, a, *, per_sample=False):
        scale = np.array([theta[0], -theta[1]])
        rows = np.stack((z[:, 0] * a[:, 0], -z[:, 1] * a[:, 1]), axis=1)
        return z * scale, a * scale, rows if per_sample else rows.sum(axis=0)

    def jac(self, t, z, theta):
        J = np.zeros((len(z), 2, 2))
        J[:, 0, 0], J[:, 1, 1] = theta[0], -theta[1]
        return J

    def jac_theta(self, t, z, theta):
        J = np.zeros((len(z), 2, 2))
        J[:, 0, 0], J[:, 1, 1] = z[:, 0], -z[:, 1]
        return J

    def init(self, rng):
        return np.array(self.init_theta) * (1.0 + 0.1 * rng.standard_normal(2))

    def describe(self):
        return "growth α x, -γ y"

    def spec(self):
        return "harness.models:PredatorPreyGrowth", {"init_theta": list(self.init_theta)}
