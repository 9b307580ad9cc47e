"""Synthetic data: a ground-truth model solved at the observation times, always by the numpy path.

The data are solved by the numpy reference path whatever the compiled code's state, so a seed gives
the same data to the last bit whether or not the compiled code is built yet: a first run (which uses
numpy while the compiled code is built in the background) and every later run train on identical
data, and making a problem never waits for a build. The solve is the cheap part of any run (about a
millisecond for the tutorial's 500 states).
"""

from __future__ import annotations

import numpy as np

from .. import _compiled
from .._forward import SolveOptions, solve_forward


def solve_ground_truth(model, theta_true: np.ndarray, z0: np.ndarray, t0: float, times: np.ndarray,
                       options: SolveOptions) -> np.ndarray:
    """The ground truth's states at `times`, by the numpy path.

    Parameters
    ----------
    theta_true : ndarray, shape (P,)
    z0 : ndarray, shape (B, N)
    times : ndarray, shape (K,), increasing, > t0

    Returns
    -------
    ndarray, shape (K, B, N)
    """
    with _compiled.numpy_reference():
        return solve_forward(model, theta_true, z0, t0, times, options).z_at_times
