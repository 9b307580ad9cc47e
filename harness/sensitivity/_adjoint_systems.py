"""The backward (adjoint) ODEs of BacksolveAdjoint and InterpolatingAdjoint, as split systems, and the
Gauss-Legendre rule of QuadratureAdjoint's and GaussAdjoint's sums (`gauss_legendre`).

Both carry ∂L/∂θ as the quadrature tail of their state (see `solvers.split`), so DP5 and BS3 sum its
stage terms once per step through a `StageVJPs`; other solvers integrate the same equations whole.
The tape records the cotangent -a, which gives the adjoint's signs, da/dt = -(∂f/∂z)ᵀa and
d(∂L/∂θ)/dt = -(∂f/∂θ)ᵀa, without negating anything.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np

from ..model import MLP
from ..solvers import QuadratureTailSystem
from .._state_layout import feature_major
from .._compiled import stage_vjps


@lru_cache(maxsize=None)
def gauss_legendre(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-point Gauss-Legendre rule on [-1, 1]: nodes (n,) and weights (n,), read-only, computed
    once per n (numpy's `leggauss` solves an eigenproblem: 60 µs, a third of a small gradient)."""
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


class _TapedAdjoint(QuadratureTailSystem):
    """A head of `n_states` flat (B N,) vectors, ending with a; the tail ∂L/∂θ from the tape."""

    def __init__(self, model: MLP, theta: np.ndarray, batch: int, n_slots: int, n_states: int):
        self._bn = batch * model.state_dim
        super().__init__(n_states * self._bn, model.n_params, n_slots)
        self._batch = batch
        self._tape_arguments = (model, theta, batch, n_slots)
        self._timed = not model.autonomous  # a time-dependent field: each stage's t goes to the tape

    @cached_property
    def _tape(self):
        """The stage records, built on first use: the compiled whole loop computes a gradient without
        them, and at B = 1 building them cost about as much as its whole solve. Compiled where
        available; a time-dependent field gets the numpy tape (it has set_time)."""
        model, theta, batch, n_slots = self._tape_arguments
        return stage_vjps(model, theta, batch, n_slots, cotangent_sign=-1.0)

    def quadrature(self, weights):
        return self._tape.theta_cotangents(weights)

    def carry(self, source, target):
        self._tape.carry(source, target)


class BacksolveSystem(_TapedAdjoint):
    """y = [z, a | ∂L/∂θ]: z solved backwards beside the adjoint."""

    def __init__(self, model: MLP, theta: np.ndarray, batch: int, n_slots: int):
        super().__init__(model, theta, batch, n_slots, n_states=2)
        self._shape = (2, model.state_dim, batch)  # [z, a] flat -> two feature-major blocks

    def stage_rhs(self, t, u, slot, out):
        u, out = u.reshape(self._shape), out.reshape(self._shape)  # [z, a] as (2, N, B), views
        if self._timed:
            self._tape.set_time(t)
        self._tape.vjp(slot, u[0], u[1], out_f=out[0], out_az=out[1])


class InterpolatingSystem(_TapedAdjoint):
    """y = [a | ∂L/∂θ], with z read from the forward solution: `z_of_t` (t -> flat z), set per piece."""

    def __init__(self, model: MLP, theta: np.ndarray, batch: int, n_slots: int):
        super().__init__(model, theta, batch, n_slots, n_states=1)
        self.z_of_t = None

    def stage_rhs(self, t, u, slot, out):
        batch = self._batch
        if self._timed:
            self._tape.set_time(t)
        self._tape.vjp(
            slot, feature_major(self.z_of_t(t), batch), feature_major(u, batch),
            out_f=None, out_az=feature_major(out, batch),
        )
