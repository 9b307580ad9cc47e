"""A training problem: the model, the initial states, the observations, and the loss.

The loss is the tutorial's: a Gaussian log-likelihood with unit scale, centred on the predictions,
summed over the batch and over the observation times t_1 < ... < t_K. We minimise its negative,

    L(θ) = Σ_k Σ_b [ ½ ‖z_b(t_k; θ) - y_kb‖² + (N/2) log 2π ],

and report the log-likelihood per datapoint, -L / (K B); a perfect fit gives -(N/2) log 2π.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from numbers import Real

import numpy as np

from ..errors import HarnessInputError
from ..model import MLP


def _finite_array(name: str, value, shape: tuple | None = None) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if shape is not None and array.shape != shape:
        raise HarnessInputError(f"{name} has shape {array.shape}: expected {shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise HarnessInputError(f"{name} contains {bad} NaN or inf values: expected finite numbers")
    return array


@dataclass
class Problem:
    """A Neural ODE fitting problem.

    Attributes
    ----------
    model : MLP
        The vector field's architecture (and Λ for the stiff variant).
    theta : ndarray, shape (P,)
        The parameters at which gradients are taken by default (the initial model for training).
    z0 : ndarray, shape (B, N)
        Initial states at t0.
    t0 : float
    times : ndarray, shape (K,)
        Observation times, t0 < t_1 < ... < t_K.
    data : ndarray, shape (K, B, N)
        Observations y_kb of z_b(t_k).
    name : str
    theta_true : ndarray, shape (P,), optional
        The weights that generated the data, when known (for plots and reports).
    """

    model: MLP
    theta: np.ndarray
    z0: np.ndarray
    t0: float
    times: np.ndarray
    data: np.ndarray
    name: str = "problem"
    theta_true: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        n = self.model.state_dim
        self.z0 = _finite_array("z0", self.z0)
        if self.z0.ndim != 2 or self.z0.shape[1] != n or self.z0.shape[0] < 1:
            raise HarnessInputError(f"z0 has shape {self.z0.shape}: expected (B, {n}) with B >= 1")
        self.theta = _finite_array("theta", self.model.check_theta(self.theta))
        if self.theta_true is not None:
            self.theta_true = _finite_array("theta_true", self.model.check_theta(self.theta_true))
        if isinstance(self.t0, bool) or not (isinstance(self.t0, Real) and math.isfinite(self.t0)):
            raise HarnessInputError(f"t0={self.t0!r}: expected a finite number")
        self.t0 = float(self.t0)
        self.times = _finite_array("times", self.times).reshape(-1)
        if self.times.size == 0:
            raise HarnessInputError("times is empty: expected at least one observation time")
        if self.times[0] <= self.t0:
            raise HarnessInputError(
                f"first observation time {self.times[0]:g} <= t0 = {self.t0:g}: expected t1 > t0"
            )
        if np.any(np.diff(self.times) <= 0):
            raise HarnessInputError(f"times {self.times.tolist()} are not strictly increasing")
        self.data = _finite_array("data", self.data, (self.times.size, *self.z0.shape))

    # --------------------------------------------------------------------------------- sizes
    @property
    def batch_size(self) -> int:
        return self.z0.shape[0]

    @property
    def n_datapoints(self) -> int:
        """K B: one datapoint per state and observation time."""
        return self.times.size * self.batch_size

    @property
    def t1(self) -> float:
        return float(self.times[-1])

    def with_theta(self, theta: np.ndarray) -> "Problem":
        return replace(self, theta=np.array(theta, dtype=np.float64))

    # ---------------------------------------------------------------------------------- loss
    def loss_terms(self, z_at_times: np.ndarray) -> tuple[float, np.ndarray]:
        """L and ∂L/∂z(t_k) from predicted states.

        z_at_times : ndarray, shape (K, B, N)
        Returns (L, dL_dz) with dL_dz of shape (K, B, N).
        """
        residual = z_at_times - self.data
        loss = 0.5 * float(np.sum(residual * residual)) + self.loss_constant
        return loss, residual

    def loss_by_row(self, z_at_times: np.ndarray) -> np.ndarray:
        """L without `loss_constant`, split by batch row: shape (B,) from z_at_times (K, B, N).

        Rows do not interact, so one solve perturbed in every row gives every row's loss (what
        FiniteDifferences uses).
        """
        residual = z_at_times - self.data
        return 0.5 * np.sum(residual * residual, axis=(0, 2))

    @property
    def loss_constant(self) -> float:
        """The part of L independent of θ and z0: (N/2) log 2π per datapoint."""
        return 0.5 * self.model.state_dim * math.log(2 * math.pi) * (self.n_datapoints)

    def loglik_per_datapoint(self, loss: float) -> float:
        """The tutorial's figure of merit, -L / (K B)."""
        return -loss / self.n_datapoints

    @property
    def perfect_loglik_per_datapoint(self) -> float:
        """-(N/2) log 2π: the log-likelihood per datapoint of a perfect fit (-1.838 for N = 2)."""
        return -0.5 * self.model.state_dim * math.log(2 * math.pi)

    def describe(self) -> str:
        times = f"t1 = {self.t1:g}" if self.times.size == 1 else f"{self.times.size} times up to {self.t1:g}"
        return (
            f"{self.name}: {self.model.describe()}, B = {self.batch_size}, t0 = {self.t0:g}, "
            f"{times}, P = {self.model.n_params}"
        )
