"""The forward pass: solve the Neural ODE from t0 through every observation time.

The solve is piecewise: it stops exactly at each observation time (where the loss adds a term and the
adjoint jumps) and, optionally, at extra checkpoint times. Each piece starts with the last step size
of the one before, so splitting the interval does not change the step sequence much, and a piece can be
re-solved later from its stored start state to reproduce its dense output bit for bit. That is what
checkpointing uses: keep only the start of each piece, re-solve a piece when the backward pass needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models import require
from .models.mlp import MLP
from .solvers import SolverStats, check_solver, integrate
from ._state_layout import flat, forward_jac, forward_rhs, states


@dataclass(frozen=True)
class SolveOptions:
    """Which solver and tolerances a pass uses."""

    solver: str = "DP5"
    rtol: float = 1e-6
    atol: float = 1e-6


@dataclass
class Piece:
    """One piece [t_start, t_end] of a piecewise forward solve."""

    t_start: float
    t_end: float
    y_start: np.ndarray  # (B N,), flat as in `_state_layout.py`
    h_start: float | None
    dense: object | None  # callable t -> (B N,), or None when only a checkpoint is kept
    steps: list[float] | None = None  # the accepted step sizes (signed), when the solve recorded them


class ForwardSolution:
    """The forward solve: z at the observation times, the pieces, and the cost.

    z_at_times : ndarray, shape (K, B, N)
    """

    def __init__(self, model, theta, batch, options, pieces, z_at_times, stats, node_is_time, h_last):
        self.model = model
        self.theta = theta
        self.batch = batch
        self.options = options
        self.pieces: list[Piece] = pieces
        self.z_at_times = z_at_times
        self.stats = stats
        self.node_is_time = node_is_time  # per piece end: index into `times`, or -1
        # the step size the solver would have taken next (see `sensitivity.common.first_backward_step`)
        self.h_last = h_last
        self.recompute_stats = SolverStats()
        self._field = None  # (rhs, jac) for re-solving pieces, built on the first re-solve

    def dense(self, i: int):
        """The dense solution on piece i, re-solving it from its checkpoint if it was not kept."""
        piece = self.pieces[i]
        if piece.dense is not None:
            return piece.dense
        if self._field is None:
            self._field = _field(self.model, self.theta, self.batch, self.options)
        traj = _solve_piece(self._field, self.options, piece, dense=True)
        self.recompute_stats = self.recompute_stats + traj.stats
        return traj.dense


def _field(model, theta, batch, options: SolveOptions):
    """(rhs, Jacobian or None) of the forward ODE, made once per solve: the rhs owns a StageVJPs."""
    implicit = check_solver(options.solver).implicit
    if implicit:  # Newton's iterations need ∂f/∂z: a model without jac is refused here, in one line
        require(model, ("jac",), f"the implicit solver {options.solver}")
    return forward_rhs(model, theta, batch), (forward_jac(model, theta, batch) if implicit else None)


def _solve_piece(field, options: SolveOptions, piece: Piece, dense: bool, on_step=None):
    rhs, jac = field
    return integrate(
        rhs,
        piece.t_start,
        piece.t_end,
        piece.y_start,
        method=options.solver,
        rtol=options.rtol,
        atol=options.atol,
        jac=jac,
        dense=dense,
        h0=piece.h_start,
        on_step=on_step,
    )


def _step_recorder(steps: list[float]):
    """An `on_step` callback appending each accepted step's h; the interpolant is never built."""

    def on_step(t, h, local):
        steps.append(float(h))

    return on_step


def solve_forward(
    model: MLP,
    theta: np.ndarray,
    z0: np.ndarray,
    t0: float,
    times: np.ndarray,
    options: SolveOptions,
    *,
    dense: bool = False,
    n_checkpoints: int = 0,
    record_steps: bool = False,
) -> ForwardSolution:
    """Solve dz/dt = f(z, θ) from t0 through `times`.

    Parameters
    ----------
    z0 : ndarray, shape (B, N)
    times : ndarray, shape (K,), increasing, > t0
    dense : bool
        Keep the dense solution of every piece (InterpolatingAdjoint, QuadratureAdjoint).
    n_checkpoints : int
        If > 0, cut [t0, t_K] at this many extra evenly spaced times and keep only each piece's start
        state; `ForwardSolution.dense(i)` re-solves a piece on demand. Memory is then bounded by the
        checkpoints plus one piece's dense output.
    record_steps : bool
        Record each piece's accepted step sizes in `Piece.steps` (one float per step, the solver
        loop's own h, passed by `on_step`; no dense output is formed). A discrete adjoint replays
        exactly these steps.
    """
    batch = z0.shape[0]
    nodes = [float(t) for t in times]
    if n_checkpoints > 0:
        extra = np.linspace(t0, times[-1], n_checkpoints + 2)[1:-1]
        nodes = sorted(set(nodes) | {float(t) for t in extra})
    time_index = {float(t): k for k, t in enumerate(times)}
    keep_dense = dense and n_checkpoints == 0
    y = flat(z0).copy()
    h = None
    t_prev = float(t0)
    stats = SolverStats()
    pieces, node_is_time = [], []
    z_at_times = np.empty((len(times), *z0.shape))
    field = _field(model, theta, batch, options)
    for t_next in nodes:
        piece = Piece(t_prev, t_next, y, h, None)
        on_step = None
        if record_steps:
            piece.steps = []
            on_step = _step_recorder(piece.steps)
        traj = _solve_piece(field, options, piece, dense=keep_dense, on_step=on_step)
        piece.dense = traj.dense if keep_dense else None
        pieces.append(piece)
        stats = stats + traj.stats
        y, h, t_prev = traj.y_end, traj.h_last, t_next
        k = time_index.get(t_next, -1)
        node_is_time.append(k)
        if k >= 0:
            z_at_times[k] = states(y, batch)
    return ForwardSolution(model, theta, batch, options, pieces, z_at_times, stats, node_is_time, h)
