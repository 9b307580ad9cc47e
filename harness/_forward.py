"""The forward pass: solve the Neural ODE from t0 to the last observation time t_K, reading z there.

Two rules for the observation times, chosen by the solver (`observation_rule`):

* "dense" (explicit Runge-Kutta pairs with dense output, DP5 and BS3: every solver of the compiled
  path). The solve steps from t0 to t_K without stopping at the observation times in between, as
  diffrax interpolates its `SaveAt(ts)`: z(t_k) is the dense output of the first accepted step
  [t_n, t_n + h] that reaches t_k, y_n + Q [x, x², ...] at x = (t_k - t_n) / h, or that step's end
  state itself where t_k is its end exactly (t_K, a checkpoint time). Several times may fall in one
  step. The step sequence is the controller's over [t0, t_K], whatever the number of times.
* "piecewise" (implicit solvers, and DP8, scipy's DOP853, whose dense output costs extra stages the
  discrete adjoint does not differentiate): the solve ends a piece exactly at each observation time,
  each piece starting with the last step size of the one before.

Either way the solve may also be cut at extra checkpoint times (`n_checkpoints`), and a piece can be
re-solved later from its stored start state and first step to reproduce its dense output bit for bit.
That is what checkpointing uses: keep only the start of each piece, re-solve a piece when the
backward pass needs it. The backward pass of the continuous adjoints walks `ForwardSolution.segments`,
the intervals between consecutive observation and checkpoint times, each inside one forward piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models import require
from .models.mlp import MLP
from .solvers import ExplicitRungeKutta, SolverStats, check_solver, integrate
from ._state_layout import flat, forward_jac, forward_rhs, states


@dataclass(frozen=True)
class SolveOptions:
    """Which solver and tolerances a pass uses."""

    solver: str = "DP5"
    rtol: float = 1e-6
    atol: float = 1e-6


DENSE, PIECEWISE = "dense", "piecewise"


def observation_rule(solver: str) -> str:
    """"dense" if `solver` reads the observation times from its dense output without ending a step
    there (`Solver.reads_t_eval`: DP5, BS3), "piecewise" if the forward pass ends a piece at each."""
    return DENSE if check_solver(solver).reads_t_eval else PIECEWISE


@dataclass
class Piece:
    """One piece [t_start, t_end] of the forward solve: the whole [t0, t_K], or the part between two
    consecutive piece ends (checkpoint times, and under the piecewise rule the observation times)."""

    t_start: float
    t_end: float
    y_start: np.ndarray  # (B N,), flat as in `_state_layout.py`
    h_start: float | None
    dense: object | None  # callable t -> (B N,), or None when only a checkpoint is kept
    steps: list[float] | None = None  # the accepted step sizes (signed), when the solve recorded them
    # each accepted step's stage inputs (s, B N), when the solve recorded them and the solver exposes them
    stages: list[np.ndarray] | None = None
    observed: tuple[int, ...] = ()  # indices into `times` of the observation times in (t_start, t_end]


@dataclass(frozen=True)
class Segment:
    """One interval [t_start, t_end] of the backward pass: between consecutive nodes (t0, the
    observation times and the checkpoint times), inside forward piece `piece`; `time_index` indexes
    `times` at t_end (where the adjoint jumps), or is -1 where t_end is a checkpoint time only."""

    t_start: float
    t_end: float
    time_index: int
    piece: int


class ForwardSolution:
    """The forward solve: z at the observation times, the pieces, the backward segments and the cost.

    z_at_times : ndarray, shape (K, B, N)
    pieces : list of Piece, in time order
    segments : list of Segment, in time order (the backward pass walks them from the last)
    observation_rule : "dense" or "piecewise" (see the module docstring)
    h_last : the step size the controller would take after t_K
    """

    def __init__(self, model, theta, batch, options, pieces, z_at_times, stats, segments, h_last, observation_rule):
        self.model = model
        self.theta = theta
        self.batch = batch
        self.options = options
        self.pieces: list[Piece] = pieces
        self.z_at_times = z_at_times
        self.stats = stats
        self.segments: list[Segment] = segments
        self.observation_rule = observation_rule
        # the step size the solver would have taken next (see `sensitivity._backward.first_backward_step`)
        self.h_last = h_last
        self.recompute_stats = SolverStats()
        self._field = None  # (rhs, jac) for re-solving pieces, built on the first re-solve
        # the last re-solved piece (index, dense): consecutive backward segments inside one piece read
        # it without re-solving it, and at most one piece's dense output is held
        self._resolved = (-1, None)

    def dense(self, i: int):
        """The dense solution on piece i, re-solving it from its checkpoint if it was not kept (once for
        consecutive calls with the same i)."""
        piece = self.pieces[i]
        if piece.dense is not None:
            return piece.dense
        if self._resolved[0] == i:
            return self._resolved[1]
        self._resolved = (-1, None)  # drop the previous piece's before building the next
        if self._field is None:
            self._field = _field(self.model, self.theta, self.batch, self.options)
        traj = _solve_piece(self._field, self.options, piece, dense=True)
        self.recompute_stats = self.recompute_stats + traj.stats
        self._resolved = (i, traj.dense)
        return traj.dense


def _field(model, theta, batch, options: SolveOptions):
    """(rhs, Jacobian or None) of the forward ODE, made once per solve: the rhs owns a StageVJPs."""
    implicit = check_solver(options.solver).implicit
    if implicit:  # Newton's iterations need ∂f/∂z: a model without jac is refused here, in one line
        require(model, ("jac",), f"the implicit solver {options.solver}")
    return forward_rhs(model, theta, batch), (forward_jac(model, theta, batch) if implicit else None)


def _solve_piece(field, options: SolveOptions, piece: Piece, dense: bool, on_step=None, t_eval=None):
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
        t_eval=t_eval,
    )


def _step_recorder(steps: list[float], stages: list[np.ndarray] | None = None):
    """An `on_step` callback appending each accepted step's h, and with `stages` its stage inputs
    (s, D), where the solver gives them (`local.stage_inputs`); the interpolant is never built."""

    def on_step(t, h, local):
        steps.append(float(h))
        if stages is not None:
            stages.append(local.stage_inputs())

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
    record_stages: bool = False,
) -> ForwardSolution:
    """Solve dz/dt = f(z, θ) from t0 to times[-1], with z at every time in `times`.

    Under the "dense" rule (explicit Runge-Kutta with dense output: DP5, BS3) the solve does not
    stop at the observation times: z(t_k) is read from the dense output of the accepted step that
    reaches t_k (its end state where t_k is its end exactly), so the step sequence is the
    controller's over [t0, t_K] (cut only at checkpoint times). Under the "piecewise" rule (implicit
    solvers, whose dense output and Jacobian reuse differ, and DP8) each observation time ends a
    piece. `ForwardSolution.observation_rule` says which applied.

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
    record_stages : bool
        With `record_steps`, also each accepted step's stage inputs in `Piece.stages` (s, B N) (explicit
        solvers of our own, DP5 and BS3; None for scipy's), so that a discrete adjoint reverses the
        steps without evaluating f again; s B N floats a step.

    Returns
    -------
    ForwardSolution
        z_at_times (K, B, N); `stats` counts the evaluations made (n_rhs), accepted and rejected steps.
    """
    batch = z0.shape[0]
    times = np.asarray(times, dtype=np.float64)
    rule = observation_rule(options.solver)
    cuts = set()
    if n_checkpoints > 0:
        cuts = {float(t) for t in np.linspace(t0, times[-1], n_checkpoints + 2)[1:-1]}
    observed = {float(t) for t in times} if rule == PIECEWISE else {float(times[-1])}
    piece_ends = sorted(observed | cuts)
    nodes = sorted({float(t) for t in times} | cuts)  # the backward pass's segment ends
    time_index = {float(t): k for k, t in enumerate(times)}
    keep_dense = dense and n_checkpoints == 0
    y = flat(z0).copy()
    h = None
    t_prev = float(t0)
    stats = SolverStats()
    pieces = []
    z_at_times = np.empty((len(times), *z0.shape))
    field = _field(model, theta, batch, options)
    k_next = 0  # the first observation time not yet read
    for t_next in piece_ends:
        first = k_next
        while k_next < len(times) and times[k_next] <= t_next:
            k_next += 1
        piece = Piece(t_prev, t_next, y, h, None, observed=tuple(range(first, k_next)))
        on_step = None
        if record_steps:
            piece.steps = []
            if record_stages and isinstance(check_solver(options.solver), ExplicitRungeKutta):
                piece.stages = []
            on_step = _step_recorder(piece.steps, piece.stages)
        # dense rule: every time of the piece, its end included, from the loop's `t_eval`
        t_eval = times[first:k_next] if rule == DENSE and k_next > first else None
        traj = _solve_piece(field, options, piece, dense=keep_dense, on_step=on_step, t_eval=t_eval)
        piece.dense = traj.dense if keep_dense else None
        pieces.append(piece)
        stats = stats + traj.stats
        y, h, t_prev = traj.y_end, traj.h_last, t_next
        if t_eval is not None:
            z_at_times[first:k_next] = states(traj.y_eval, batch)
        elif k_next > first:  # piecewise: the piece ends at its one observation time
            z_at_times[k_next - 1] = states(y, batch)
    segments, i, t_prev = [], 0, float(t0)
    for t_next in nodes:
        while pieces[i].t_end < t_next:
            i += 1
        segments.append(Segment(t_prev, t_next, time_index.get(t_next, -1), i))
        t_prev = t_next
    return ForwardSolution(model, theta, batch, options, pieces, z_at_times, stats, segments, h, rule)
