"""A universal differential equation: known physics with its own parameters plus an MLP term.

    dz/dt = g(t, z, θ_g) + MLP_θ_n(z)        θ = [θ_g, θ_n], one flat vector with named parts

The physics g is any model of the protocol (e.g. `PredatorPreyGrowth`, the growth terms of
Lotka-Volterra), the network an `MLP` of the same state dimension that learns what g leaves out (the
predator-prey interaction). Every derivative is the sum (z) or the concatenation (θ) of the two
parts' exact ones, so gradients reach the physical parameters and the weights alike.
"""

from __future__ import annotations

import numpy as np

from ..errors import HarnessInputError
from ._protocol import ParameterView, VectorField
from .lotka_volterra import PredatorPreyGrowth
from .mlp import MLP


class UniversalODE(VectorField):
    """f(t, z, θ) = physics.f(t, z, θ[:P_g]) + network.f(t, z, θ[P_g:]).

    Parameters
    ----------
    physics : model
        The known part, with its own parameters (P_g of them, named by its layout).
    network : MLP
        The learnt part, widths (N, ..., N); its parts are named "mlp.W1", "mlp.b1", ...
    network_scale : float
        `init` scales the network's last layer by this, so that a fit starts from (almost) the physics.
    spec : (str, dict), optional
        The factory and parameters that rebuild this model (see `harness.models.build_model`).
    """

    def __init__(self, physics, network: MLP, network_scale: float = 0.1, spec=None):
        if physics.state_dim != network.state_dim:
            raise HarnessInputError(
                f"physics has N = {physics.state_dim} but the network has N = {network.state_dim}: "
                "expected the same state dimension"
            )
        self.physics, self.network = physics, network
        self.state_dim = physics.state_dim
        self._split = physics.n_params
        self.n_params = physics.n_params + network.n_params
        self.network_scale = float(network_scale)
        self._spec = spec

    def __eq__(self, other):
        return (type(other) is type(self) and other.physics == self.physics
                and other.network == self.network)

    def __hash__(self):
        return hash((type(self).__name__, self.physics, self.network))

    @property
    def autonomous(self):
        return self.physics.autonomous and self.network.autonomous

    @property
    def layout(self):
        views = [ParameterView(v.name, v.start, v.shape) for v in self.physics.layout]
        views += [ParameterView(f"mlp.{v.name}", self._split + v.start, v.shape) for v in self.network.layout]
        return tuple(views)

    def parts(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(θ_g, θ_n): views of θ."""
        return theta[: self._split], theta[self._split:]

    def f(self, t, z, theta):
        g, n = self.parts(theta)
        return self.physics.f(t, z, g) + self.network.f(t, z, n)

    def vjp(self, t, z, theta, a, *, per_sample=False):
        g, n = self.parts(theta)
        f_g, az_g, at_g = self.physics.vjp(t, z, g, a, per_sample=per_sample)
        f_n, az_n, at_n = self.network.vjp(t, z, n, a, per_sample=per_sample)
        return f_g + f_n, az_g + az_n, np.concatenate((at_g, at_n), axis=-1)

    def jac(self, t, z, theta):
        g, n = self.parts(theta)
        return self.physics.jac(t, z, g) + self.network.jac(t, z, n)

    def jac_theta(self, t, z, theta):
        g, n = self.parts(theta)
        return np.concatenate((self.physics.jac_theta(t, z, g), self.network.jac_theta(t, z, n)), axis=-1)

    def init(self, rng):
        theta_n = self.network.init(rng)
        last_w, last_b = self.network.layout[-2], self.network.layout[-1]
        theta_n[last_w.slice] *= self.network_scale
        theta_n[last_b.slice] *= self.network_scale
        return np.concatenate((self.physics.init(rng), theta_n))

    def describe(self):
        return f"UDE: {self.physics.describe()} + {self.network.describe()}"

    def spec(self):
        if self._spec is None:
            raise HarnessInputError(f"{self.describe()} was built without a factory: it cannot be named in a file")
        return self._spec


def _model_factory(function):
    function.__harness_model_factory__ = True  # what harness.models.model_factory does (no cycle)
    return function


@_model_factory
def predator_prey_ude(hidden: int = 8, activation: str = "tanh", growth=(1.0, 1.0),
                      network_scale: float = 0.1) -> UniversalODE:
    """The predator-prey UDE: known growth α x, -γ y plus an MLP 2-`hidden`-2 for the interaction.

    θ = [alpha, gamma, mlp.W1 (H, 2), mlp.b1 (H,), mlp.W2 (2, H), mlp.b2 (2,)], P = 4 + 5 H.
    """
    parameters = {"hidden": int(hidden), "activation": activation, "growth": [float(v) for v in growth],
                  "network_scale": float(network_scale)}
    return UniversalODE(PredatorPreyGrowth(growth), MLP((2, int(hidden), 2), activation), network_scale,
                        spec=("harness.models:predator_prey_ude", parameters))
