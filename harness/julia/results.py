"""Unpacking what Julia returns into harness's results: pure functions over numpy arrays."""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..solvers import SolverStats
from .layout import batch_state


def solver_stats(counts) -> SolverStats:
    """`solve_summary`'s [nf, njacs, nw, naccept, nreject] -> SolverStats (nw = LU factorisations)."""
    nf, njacs, nw, naccept, nreject = (int(c) for c in np.asarray(counts).reshape(-1))
    return SolverStats(n_rhs=nf, n_jac=njacs, n_lu=nw, n_accepted=naccept, n_rejected=nreject)


def check_retcode(success: bool, retcode: str, t_reached: float, t_target: float, method: str) -> None:
    """Raise SolverError, naming the return code and the time reached, unless the solve succeeded."""
    if not success:
        raise SolverError(f"Julia {method}", float(t_reached), float(t_target), f"retcode {retcode}")


def finite_gradient(dtheta, du0, engine: str) -> None:
    """A NaN or inf gradient means a failed backward solve: say so instead of returning it."""
    for label, value in (("dL/dθ", dtheta), ("dL/dz0", du0)):
        if not np.all(np.isfinite(value)):
            raise SolverError(engine, float("nan"), float("nan"), f"{label} is not finite")


def adjoint_result(du0, dp, batch: int, n_params: int) -> tuple[np.ndarray, np.ndarray]:
    """`adjoint_gradient`'s (du0 (n,), dp (P,)) -> (dθ (P,), dz0 (B, N))."""
    dtheta = np.array(dp, dtype=np.float64).reshape(-1)
    if dtheta.shape != (n_params,):
        raise ValueError(f"dL/dθ from Julia has shape {dtheta.shape}: expected ({n_params},)")
    return dtheta, batch_state(du0, batch)


def forward_sensitivity_result(grad_q, G: np.ndarray, batch: int, n_params: int):
    """Shifted forward sensitivities -> (dθ (P,), dz0 (B, N)).

    Julia solves for w = z - z0 with parameters q = [θ; z0], so grad_q = Σ_k S_kᵀ G[:, k] with
    S = ∂w/∂q; since ∂z/∂z0 = I + ∂w/∂z0, dL/dz0 adds Σ_k G[:, k].
    """
    grad_q = np.asarray(grad_q, dtype=np.float64).reshape(-1)
    n = G.shape[0]
    if grad_q.shape != (n_params + n,):
        raise ValueError(f"forward sensitivity gradient has shape {grad_q.shape}: expected ({n_params + n},)")
    dz0_flat = grad_q[n_params:] + np.asarray(G).sum(axis=1)
    return grad_q[:n_params].copy(), batch_state(dz0_flat, batch)
