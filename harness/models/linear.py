"""The linear vector field f(z) = A z + c, θ = [A (N, N) row-major, c (N,)]: the closed-form case.

Its solution is z(t) = e^{At} z0 + (∫₀ᵗ e^{As} ds) c, so every gradient of a loss at fixed times is
known through the matrix exponential and its Fréchet derivative (tests/test_closed_form.py); the
MLP with the identity activation is the same field with A = W2 W1 - Λ, c = W2 b1 + b2.
"""

from __future__ import annotations

import numpy as np

from ..errors import HarnessInputError
from ._protocol import ParameterView, VectorField


class Linear(VectorField):
    """f(t, z, θ) = A z + c for each row z (N,); θ = [A.reshape(-1), c], P = N² + N.

    Parameters
    ----------
    state_dim : int
        N.
    """

    def __init__(self, state_dim: int = 2):
        if isinstance(state_dim, bool) or not isinstance(state_dim, (int, np.integer)) or state_dim < 1:
            raise HarnessInputError(f"state_dim={state_dim!r}: expected an integer >= 1")
        self.state_dim = int(state_dim)
        self.n_params = self.state_dim * (self.state_dim + 1)

    def __eq__(self, other):
        return type(other) is type(self) and other.state_dim == self.state_dim

    def __hash__(self):
        return hash((type(self).__name__, self.state_dim))

    @property
    def layout(self):
        n = self.state_dim
        return (ParameterView("A", 0, (n, n)), ParameterView("c", n * n, (n,)))

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A (N, N), c (N,)), views of θ."""
        n = self.state_dim
        return theta[: n * n].reshape(n, n), theta[n * n:]

    def f(self, t, z, theta):
        A, c = self.unpack(theta)
        return z @ A.T + c

    def vjp(self, t, z, theta, a, *, per_sample=False):
        A, c = self.unpack(theta)
        f = z @ A.T + c
        a_z = a @ A  # row b: Aᵀ a_b
        if per_sample:  # ∂f/∂A_ij = δ z_j, so row b's term is a_b z_bᵀ (flattened), then a_b for c
            a_theta = np.concatenate(((a[:, :, None] * z[:, None, :]).reshape(len(z), -1), a), axis=1)
        else:
            a_theta = np.concatenate(((a.T @ z).reshape(-1), a.sum(axis=0)))
        return f, a_z, a_theta

    def jac(self, t, z, theta):
        A, _ = self.unpack(theta)
        return np.broadcast_to(A, (len(z), *A.shape)).copy()

    def jac_theta(self, t, z, theta):
        batch, n = z.shape
        out = np.zeros((batch, n, self.n_params))
        for i in range(n):
            out[:, i, i * n:(i + 1) * n] = z  # ∂f_i/∂A_ij = z_j
            out[:, i, n * n + i] = 1.0  # ∂f_i/∂c_i = 1
        return out

    def init(self, rng):
        """A ~ N(0, 1/N) entries, c ~ N(0, 1)."""
        n = self.state_dim
        return np.concatenate((rng.normal(0.0, n ** -0.5, n * n), rng.normal(0.0, 1.0, n)))

    def describe(self):
        return f"Linear f = A z + c (N = {self.state_dim})"

    def spec(self):
        return "harness.models:Linear", {"state_dim": self.state_dim}
