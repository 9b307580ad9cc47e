"""The one adapter between the batched model, f(t, z (B, N), θ), and solvers' flat f(t, y (B N,)).

Flat vectors are feature-major: y = zᵀ.reshape(-1), so y[i B + b] is component i of row b. The model
computes in that layout (see `model.py`), so `states(y)` and `flat(f)` are views, not copies. Every
solve in the harness (forward, adjoint, forward sensitivity) reaches the model through this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .models.mlp import MLP
from ._compiled import stage_vjps

if TYPE_CHECKING:
    import scipy.sparse as sp


def states(y: np.ndarray, batch: int) -> np.ndarray:
    """Flat (B N,) -> (B, N), a view; flat states at M times, (M, B N) -> (M, B, N), likewise."""
    return y.reshape(*y.shape[:-1], -1, batch).swapaxes(-1, -2)


def feature_major(y: np.ndarray, batch: int) -> np.ndarray:
    """Flat (B N,) -> (N, B), the model's internal layout (rows of zᵀ), a view."""
    return y.reshape(-1, batch)


def flat(z: np.ndarray) -> np.ndarray:
    """(B, N) -> flat (B N,); a view when z is itself a transposed (N, B) array, as the model returns."""
    return z.T.reshape(-1)


def stacked_states(ys: np.ndarray, batch: int) -> np.ndarray:
    """Flat states at M times, (M, B N) -> one batch of M B rows, (M B, N)."""
    m = ys.shape[0]
    return ys.reshape(m, -1, batch).transpose(1, 0, 2).reshape(-1, m * batch).T


def block_diagonal(blocks: np.ndarray) -> sp.csc_matrix:
    """The batch Jacobian from its per-row blocks, (B, N, N) -> sparse (B N, B N) in the flat layout.

    Rows do not interact, so the matrix has only B N² entries and implicit solvers factor it in
    O(B N³) instead of O((B N)³). In the feature-major layout block b sits at rows and columns
    {i B + b}, a permuted block diagonal.
    """
    import scipy.sparse as sp  # only implicit solvers need it; it costs memory (benchmarks/bench_memory.py)

    batch, n, _ = blocks.shape
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    rows = (i[None] * batch + np.arange(batch)[:, None, None]).reshape(-1)
    cols = (j[None] * batch + np.arange(batch)[:, None, None]).reshape(-1)
    return sp.csc_matrix((blocks.reshape(-1), (rows, cols)), shape=(batch * n,) * 2)


def forward_rhs(model: MLP, theta: np.ndarray, batch: int):
    """y ↦ f(t, y) on flat states, through a `StageVJPs` (biases folded into the weight products)."""
    tape = stage_vjps(model, theta, batch, n_slots=1)  # compiled where numba is installed
    shape = (model.state_dim, batch)

    timed = not getattr(model, "autonomous", True)  # a duck-typed model without it is autonomous

    def rhs(t, y):
        dy = np.empty(y.shape)
        if timed:
            tape.set_time(t)
        tape.value(y.reshape(shape), out=dy.reshape(shape))  # feature-major views
        return dy

    return rhs


def forward_jac(model: MLP, theta: np.ndarray, batch: int):
    """y ↦ ∂f/∂y as a sparse matrix, for implicit solvers."""

    def jac(t, y):
        return block_diagonal(model.jac(t, states(y, batch), theta))

    return jac
