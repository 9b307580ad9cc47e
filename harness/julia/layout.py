"""Arrays across the language boundary: harness's row-major batch versus Julia's column-major arrays.

The flat state is `harness._state_layout`'s feature-major vector y = zᵀ.reshape(-1), shape (B N,), so the
Julia vector u holding it satisfies `reshape(u, B, N) == z` and the Julia MLP reads it without a
copy. Julia matrices keep their logical (row, column) indices when converted either way
(PythonCall wraps strides), so an (n, K) numpy array is an n×K Julia matrix and back.
"""

from __future__ import annotations

import numpy as np

from .._state_layout import flat, states


def flat_state(z: np.ndarray) -> np.ndarray:
    """(B, N) -> a fresh contiguous float64 (B N,) vector in the feature-major layout."""
    return np.ascontiguousarray(flat(np.asarray(z, dtype=np.float64)))


def batch_state(u, batch: int) -> np.ndarray:
    """A flat (B N,) state from Julia -> a copy of shape (B, N)."""
    y = np.asarray(u, dtype=np.float64).reshape(-1)
    if y.size % batch:
        raise ValueError(f"a flat state of length {y.size} does not hold {batch} states")
    return np.array(states(y, batch))


def states_at_times(columns, batch: int) -> np.ndarray:
    """Julia's n×K matrix of states (column k = z(t_k), flat) -> (K, B, N)."""
    Z = np.asarray(columns, dtype=np.float64)
    if Z.ndim == 1:  # K = 1 may come back as a vector
        Z = Z[:, None]
    return np.stack([batch_state(Z[:, k], batch) for k in range(Z.shape[1])])


def loss_gradient_table(dL_dz: np.ndarray) -> np.ndarray:
    """∂L/∂z(t_k) of shape (K, B, N) -> the (n, K) table G with column k flat, for dgdu_discrete.

    Fortran order so that the Julia copy of it is a plain column-major copy.
    """
    dL_dz = np.asarray(dL_dz, dtype=np.float64)
    return np.asfortranarray(np.stack([flat(g) for g in dL_dz], axis=1))
