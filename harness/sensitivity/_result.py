"""What every gradient engine returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..solvers import SolverStats


@dataclass
class GradientResult:
    """dL/dθ and dL/dz0 of one problem, with the cost of computing them.

    Attributes
    ----------
    engine : str
        The engine's name (e.g. "InterpolatingAdjoint").
    loss : float
        L at θ (the negative log-likelihood).
    dtheta : ndarray, shape (P,)
    dz0 : ndarray, shape (B, N)
    forward_stats, backward_stats : SolverStats
        Cost of the forward pass and of the backward pass (for references, all solves count as
        forward). Re-solves of checkpointed pieces count as backward.
    seconds : float
        Wall time of the whole computation.
    diagnostics : dict
        Engine-specific findings (e.g. BacksolveAdjoint's reconstruction error).
    """

    engine: str
    loss: float
    dtheta: np.ndarray
    dz0: np.ndarray
    forward_stats: SolverStats
    backward_stats: SolverStats
    seconds: float = 0.0
    n_datapoints: int = 1
    diagnostics: dict = field(default_factory=dict)

    @classmethod
    def of(cls, engine, problem, loss: float, dtheta: np.ndarray, dz0: np.ndarray, forward_stats: SolverStats,
           backward_stats: SolverStats, diagnostics: dict | None = None) -> GradientResult:
        """The result of `engine` (a value with a `name`) on `problem`: what every engine of this package
        builds its result with, so that the name and the data-point count come from one place."""
        return cls(engine=engine.name, loss=loss, dtheta=dtheta, dz0=dz0, forward_stats=forward_stats,
                   backward_stats=backward_stats, n_datapoints=problem.n_datapoints,
                   diagnostics={} if diagnostics is None else diagnostics)

    @property
    def loglik_per_datapoint(self) -> float:
        return -self.loss / self.n_datapoints

    @property
    def n_rhs(self) -> int:
        """Right-hand-side evaluations, forward and backward together."""
        return self.forward_stats.n_rhs + self.backward_stats.n_rhs
