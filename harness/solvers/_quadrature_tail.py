"""Systems whose state ends in a quadrature: y = [u, q] with q' = g(t, u), and nothing depends on q.

An adjoint's ∂L/∂θ is such a q. An explicit Runge-Kutta step needs g only through two weighted sums
over its stages, Σᵢ bᵢ g(tᵢ, uᵢ) (the update) and Σᵢ eᵢ g(tᵢ, uᵢ) (the error estimate), so a
`QuadratureTailSystem` evaluates u' at each stage while recording what g needs there, and forms both sums at
the end of the step in one go (see `harness._stage_vjps` for why that is cheaper). The step sequence and
the result are those of integrating [u, q] as one vector, up to rounding: q still enters the error
norm. Solvers that step the state as a whole (scipy's) use `joint_rhs`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class QuadratureTailSystem(ABC):
    """dy/dt for y = [u (n_head,), q (n_quadrature,)], stage by stage.

    Stage records live in `n_slots` slots; the explicit RK loop uses slot i for stage i, so a method
    with s stages plus a first-same-as-last stage needs s + 1 (see `solvers.stage_slots`).
    """

    def __init__(self, n_head: int, n_quadrature: int, n_slots: int):
        self.n_head = n_head
        self.n_quadrature = n_quadrature
        self.n_slots = n_slots

    @abstractmethod
    def stage_rhs(self, t: float, u: np.ndarray, slot: int, out: np.ndarray) -> None:
        """du/dt at (t, u) into `out`, shape (n_head,); records what g(t, u) needs in `slot`."""

    @abstractmethod
    def quadrature(self, weights: np.ndarray) -> np.ndarray:
        """Σ_slot weights[m, slot] g(recorded stage of slot), shape (M, n_quadrature).

        weights : ndarray, shape (M, n_slots)
        """

    @abstractmethod
    def carry(self, source: int, target: int) -> None:
        """The record of slot `source` becomes that of slot `target` (first-same-as-last steps)."""

    def joint_rhs(self, t: float, y: np.ndarray, slot: int = 0) -> np.ndarray:
        """dy/dt for the whole state, shape (n_head + n_quadrature,), using `slot` as scratch."""
        du = np.empty(self.n_head)
        self.stage_rhs(t, y[: self.n_head], slot, du)
        one_hot = np.zeros((1, self.n_slots))
        one_hot[0, slot] = 1.0
        return np.concatenate((du, self.quadrature(one_hot)[0]))
