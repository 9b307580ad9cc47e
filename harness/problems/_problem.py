"""A training problem: the model, the initial states, the observations, and the loss.

The loss is the tutorial's: a Gaussian log-likelihood with unit scale, centred on the predictions,
summed over the batch and over the observation times t_1 < ... < t_K. We minimise its negative,

    L(θ) = Σ_k Σ_b m_kb [ ½ ‖z_b(t_k; θ)[:N] - y_kb‖² + (N/2) log 2π ],

and report the log-likelihood per datapoint, -L / Σ m_kb (-L / (K B) when every state is observed
at every time); a perfect fit gives -(N/2) log 2π.

Two extensions, both off by default:

- Augmented Neural ODE (Dupont, Doucet and Teh, 2019): `augment = A` appends A dimensions, started
  at zero, to the N observed ones. The model maps N + A to N + A; the data, and so the loss, see only
  the first N components; ∂L/∂z is zero in the augmented ones.
- Irregular observations: `mask` (K, B) says which state is observed at which time of the shared grid
  `times` (m_kb above; `grid_and_mask` builds the grid from per-trajectory times). Unobserved entries
  add nothing to L, so their ∂L/∂z(t_k) is zero and the adjoint's jump at t_k moves only the
  trajectories observed there.
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
    augment : int
        A, the number of augmented dimensions (default 0). The model's state dimension is N + A;
        `z0` may be given as (B, N), and is kept as the full initial state (B, N + A), zeros appended;
        `data` stays (K, B, N). Every engine solves the N + A dimensional system; `gradient` reports
        dL/dz0 of the N observed components, shape (B, N).
    mask : ndarray of bool, shape (K, B), optional
        Which state b is observed at time t_k; None means all. `data` where the mask is False is
        ignored (and stored as 0; NaN is accepted there).
    """

    model: MLP
    theta: np.ndarray
    z0: np.ndarray
    t0: float
    times: np.ndarray
    data: np.ndarray
    name: str = "problem"
    theta_true: np.ndarray | None = field(default=None, repr=False)
    augment: int = 0
    mask: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        width = self.model.state_dim
        if isinstance(self.augment, (bool, np.bool_)) or not isinstance(self.augment, (int, np.integer)) or not (
            0 <= self.augment < width
        ):
            raise HarnessInputError(
                f"augment={self.augment!r}: expected an integer from 0 to {width - 1} (the model's state "
                f"dimension {width} counts the augmented dimensions too)"
            )
        self.augment = int(self.augment)
        n = width - self.augment
        self.z0 = _finite_array("z0", self.z0)
        if self.z0.ndim == 2 and self.augment and self.z0.shape[1] == n:
            self.z0 = np.concatenate((self.z0, np.zeros((self.z0.shape[0], self.augment))), axis=1)
        if self.z0.ndim != 2 or self.z0.shape[1] != width or self.z0.shape[0] < 1:
            expected = f"(B, {n})"
            if self.augment:
                expected += f" or (B, {width}) with zeros in the last {self.augment}"
            raise HarnessInputError(f"z0 has shape {self.z0.shape}: expected {expected} with B >= 1")
        if self.augment and np.any(self.z0[:, n:]):
            raise HarnessInputError(
                f"z0's augmented columns {n}..{width - 1} are not zero: an augmented Neural ODE starts them at 0"
            )
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
        shape = (self.times.size, self.z0.shape[0], n)
        if self.mask is not None:
            self.mask = np.asarray(self.mask)
            if self.mask.dtype != np.bool_ or self.mask.shape != shape[:2]:
                raise HarnessInputError(
                    f"mask is {self.mask.dtype} {self.mask.shape}: expected bool (K, B) = {shape[:2]}"
                )
            if not self.mask.any():
                raise HarnessInputError("mask is False everywhere: expected at least one observation")
            data = np.array(self.data, dtype=np.float64)
            if data.shape == shape:
                data[~self.mask] = 0.0  # unobserved: ignored, and finite so that residuals stay finite
            self.data = data
        self.data = _finite_array("data", self.data, shape)

    # --------------------------------------------------------------------------------- sizes
    @property
    def batch_size(self) -> int:
        return self.z0.shape[0]

    @property
    def observed_dim(self) -> int:
        """N, the observed components of a state (the model's state dimension minus `augment`)."""
        return self.model.state_dim - self.augment

    @property
    def observed_z0(self) -> np.ndarray:
        """The initial states' observed components, a view of shape (B, N)."""
        return self.z0[:, : self.observed_dim]

    @property
    def n_datapoints(self) -> int:
        """One datapoint per observed state and time: K B, or the number of True entries of `mask`."""
        if self.mask is not None:
            return int(np.count_nonzero(self.mask))
        return self.times.size * self.batch_size

    @property
    def t1(self) -> float:
        return float(self.times[-1])

    def with_theta(self, theta: np.ndarray) -> "Problem":
        return replace(self, theta=np.array(theta, dtype=np.float64))

    # ---------------------------------------------------------------------------------- loss
    def loss_terms(self, z_at_times: np.ndarray) -> tuple[float, np.ndarray]:
        """L and ∂L/∂z(t_k) from predicted states.

        z_at_times : ndarray, shape (K, B, N + A)
        Returns (L, dL_dz) with dL_dz of shape (K, B, N + A): zero in the augmented components and
        at unobserved (k, b).
        """
        residual = self._residual(z_at_times)
        loss = 0.5 * float(np.sum(residual * residual)) + self.loss_constant
        if not self.augment:
            return loss, residual
        dL_dz = np.zeros(z_at_times.shape)
        dL_dz[..., : self.observed_dim] = residual
        return loss, dL_dz

    def _residual(self, z_at_times: np.ndarray) -> np.ndarray:
        """z(t_k)[:N] - y_k, zero where unobserved: (K, B, N)."""
        residual = z_at_times[..., : self.observed_dim] - self.data
        if self.mask is not None:
            residual *= self.mask[..., None]
        return residual

    def loss_by_row(self, z_at_times: np.ndarray) -> np.ndarray:
        """L without `loss_constant`, split by batch row: shape (B,) from z_at_times (K, B, N + A).

        Rows do not interact, so one solve perturbed in every row gives every row's loss (what
        FiniteDifferences uses).
        """
        residual = self._residual(z_at_times)
        return 0.5 * np.sum(residual * residual, axis=(0, 2))

    @property
    def loss_constant(self) -> float:
        """The part of L independent of θ and z0: (N/2) log 2π per datapoint."""
        return 0.5 * self.observed_dim * math.log(2 * math.pi) * (self.n_datapoints)

    def loglik_per_datapoint(self, loss: float) -> float:
        """The tutorial's figure of merit, -L / (K B) (per observed datapoint with a mask)."""
        return -loss / self.n_datapoints

    @property
    def perfect_loglik_per_datapoint(self) -> float:
        """-(N/2) log 2π: the log-likelihood per datapoint of a perfect fit (-1.838 for N = 2)."""
        return -0.5 * self.observed_dim * math.log(2 * math.pi)

    def describe(self) -> str:
        times = f"t1 = {self.t1:g}" if self.times.size == 1 else f"{self.times.size} times up to {self.t1:g}"
        extras = f", augmented by {self.augment}" if self.augment else ""
        if self.mask is not None:
            extras += f", {self.n_datapoints} of {self.mask.size} (time, state) pairs observed"
        return (
            f"{self.name}: {self.model.describe()}{extras}, B = {self.batch_size}, t0 = {self.t0:g}, "
            f"{times}, P = {self.model.n_params}"
        )


def grid_and_mask(times, values) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-trajectory observations on one shared time grid, as `Problem` takes them.

    Parameters
    ----------
    times : sequence of B arrays, shape (K_b,)
        The times at which trajectory b is observed, strictly increasing.
    values : sequence of B arrays, shape (K_b, N)
        The observations at those times.

    Returns
    -------
    grid : ndarray, shape (K,)
        Every time at which some trajectory is observed, sorted.
    data : ndarray, shape (K, B, N)
        The observations on the grid (0 where a trajectory is not observed).
    mask : ndarray of bool, shape (K, B)
    """
    if len(times) != len(values) or len(times) == 0:
        raise HarnessInputError(
            f"got {len(times)} time lists and {len(values)} value lists: expected one of each per trajectory"
        )
    rows = []
    for b, (t_b, y_b) in enumerate(zip(times, values)):
        t_b = _finite_array(f"times[{b}]", t_b).reshape(-1)
        y_b = np.asarray(y_b, dtype=np.float64)
        if y_b.ndim <= 1:  # a trajectory without observations has no width to infer: (0, 0)
            if t_b.size and (y_b.size == 0 or y_b.size % t_b.size):
                raise HarnessInputError(f"values[{b}] has {y_b.size} numbers for {t_b.size} times: expected "
                                        f"{t_b.size} rows of N")
            y_b = y_b.reshape(t_b.size, -1) if t_b.size else y_b.reshape(0, 0)
        if y_b.shape[0] != t_b.size:
            raise HarnessInputError(f"values[{b}] has shape {y_b.shape}: expected ({t_b.size}, N), one row per time")
        if np.any(np.diff(t_b) <= 0):
            raise HarnessInputError(f"times[{b}] = {t_b.tolist()} are not strictly increasing")
        rows.append((t_b, y_b))
    if not any(t.size for t, _ in rows):
        raise HarnessInputError(f"none of the {len(rows)} trajectories has an observation: expected at least one time")
    widths = {y.shape[1] for _, y in rows if y.shape[1]}
    if len(widths) > 1:
        raise HarnessInputError(f"values have {sorted(widths)} components: expected the same N for every trajectory")
    n = widths.pop()
    grid = np.unique(np.concatenate([t for t, _ in rows]))
    data = np.zeros((grid.size, len(rows), n))
    mask = np.zeros((grid.size, len(rows)), dtype=bool)
    for b, (t_b, y_b) in enumerate(rows):
        if t_b.size:
            k = np.searchsorted(grid, t_b)
            data[k, b] = y_b
            mask[k, b] = True
    return grid, data, mask
