"""RecursiveCheckpointAdjoint: the exact gradient of the computed solution (discretise-then-optimise).

The continuous adjoints solve an adjoint ODE and approximate the gradient of the exact loss; this
engine differentiates the numerical solution itself. The forward solve is run as usual and its
accepted step sizes are recorded; those steps, held fixed (as diffrax's RecursiveCheckpointAdjoint
and torchdiffeq's `odeint` under backprop hold them), define a discrete map

    y_{n+1} = y_n + h_n Σ_i b_i k_i,   k_i = f(t_n + c_i h_n, y_n + h_n Σ_{j<i} a_ij k_j),

whose reverse mode is, stage by stage from the last,

    k̄_i = h_n b_i ȳ_{n+1} + h_n Σ_{j>i} a_ji Ȳ_j,   Ȳ_i = (∂f/∂z)ᵀ k̄_i,   θ̄ += (∂f/∂θ)ᵀ k̄_i,
    ȳ_n = ȳ_{n+1} + Σ_i Ȳ_i,

with the jump ȳ += ∂L/∂z(t_k) at each observation time (the forward pass stops exactly there, so no
interpolation enters the loss). The result is the gradient of the discrete loss to rounding, at any
tolerance; how close it is to the gradient of the ODE's loss depends on the tolerance, like the
solution itself. The error estimate and the step-size controller do not enter: the steps are fixed.

Memory: the reverse sweep needs each step's start state. With `checkpoints=None` every state is kept
(fastest, memory linear in the number of steps). With `checkpoints=c` at most c states (plus the
piece's start) are held at once, and the others are recomputed from the nearest one by binomial
checkpointing (Griewank's revolve recursion): memory bounded by c whatever the number of steps, at
the price of recomputed steps (reported in `diagnostics`). One float per step, its size, is kept.

Explicit solvers only (DP5, BS3, DP8): differentiating an implicit solver's Newton iterations is a
different algorithm, and such solvers are refused with a one-line reason.

This numpy code is the reference. Where numba is installed, DP5 and BS3 on the plain MLP run compiled
(`_compiled_loop.discrete_sweep`: the compiled forward loop, then `harness._compiled._reverse_sweep`, this
algorithm written out, with the same counts); ``HARNESS_COMPILED=0`` selects this code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RefusedError
from .._forward import SolveOptions, solve_forward
from .._state_layout import states
from ..solvers import SOLVERS, ExplicitRungeKutta, SolverStats, check_solver
from ..solvers._step_rules import first_part
from ._compiled_loop import discrete_sweep
from ._registry import register_engine
from ._result import GradientResult
from .algorithms import RecursiveCheckpointAdjoint

@dataclass(frozen=True)
class ExplicitSteps:
    """The fixed step sequence of one forward piece: start time and step sizes (signed)."""

    t_start: float
    hs: tuple[float, ...]

    def times(self) -> list[float]:
        """The start time of each step."""
        t, out = self.t_start, []
        for h in self.hs:
            out.append(t)
            t = t + h
        return out


class _Stepper:
    """One explicit Runge-Kutta step of the batched field, forwards and in reverse mode."""

    def __init__(self, model, theta, tableau):
        self.model, self.theta = model, theta
        self.A, self.B, self.C = tableau.A, tableau.B, tableau.C
        self.n_stages = len(tableau.B)
        self.n_f = 0  # evaluations of f (forward replays and the reverse sweep's stage inputs)
        self.n_vjp = 0  # vector-Jacobian products

    def stage_inputs(self, t, h, z, end_state=True):
        """The stage inputs Y_i (list of (B, N)) and the step's end state (None without `end_state`:
        then the last stage's value, which no stage input reads, is not evaluated)."""
        model, theta, A, C = self.model, self.theta, self.A, self.C
        Y, K = [], []
        for i in range(self.n_stages):
            y = z.copy()
            for j in range(i):
                if A[i, j] != 0.0:
                    y += (h * A[i, j]) * K[j]
            Y.append(y)
            if end_state or i < self.n_stages - 1:
                K.append(model.f(t + C[i] * h, y, theta))
        self.n_f += len(K)
        if not end_state:
            return Y, None
        z_new = z.copy()
        for i in range(self.n_stages):
            if self.B[i] != 0.0:
                z_new += (h * self.B[i]) * K[i]
        return Y, z_new

    def step(self, t, h, z):
        return self.stage_inputs(t, h, z)[1]

    def reverse(self, t, h, z, z_bar, theta_bar):
        """ȳ_n from ȳ_{n+1} (`z_bar`, (B, N)); adds the step's θ cotangent into `theta_bar`."""
        Y, _ = self.stage_inputs(t, h, z, end_state=False)
        A, B, C = self.A, self.B, self.C
        k_bar = [(h * B[i]) * z_bar for i in range(self.n_stages)]
        z_bar = z_bar.copy()
        for i in range(self.n_stages - 1, -1, -1):
            if not k_bar[i].any():
                continue  # a stage that nothing downstream reads (e.g. unused weights)
            _, Y_bar, th = self.model.vjp(t + C[i] * h, Y[i], self.theta, k_bar[i])
            self.n_vjp += 1
            theta_bar += th
            z_bar += Y_bar
            for j in range(i):
                if A[i, j] != 0.0:
                    k_bar[j] += (h * A[i, j]) * Y_bar
        return z_bar


class _ReverseSweep:
    """The reverse sweep over one piece's steps, with at most `checkpoints` states held at once."""

    def __init__(self, stepper: _Stepper, steps: ExplicitSteps, checkpoints: int | None):
        self.stepper = stepper
        self.ts, self.hs = steps.times(), steps.hs
        self.checkpoints = checkpoints
        self.recomputed = 0  # steps advanced again to rebuild a state
        self.held = self.peak_held = 1  # states stored at once: the piece's start, then checkpoints

    def run(self, z_start, z_bar, theta_bar):
        n = len(self.hs)
        if n == 0:
            return z_bar
        if self.checkpoints is None:
            zs = [z_start]
            for k in range(n - 1):
                zs.append(self.stepper.step(self.ts[k], self.hs[k], zs[-1]))
            self.peak_held = n
            for k in range(n - 1, -1, -1):
                z_bar = self.stepper.reverse(self.ts[k], self.hs[k], zs[k], z_bar, theta_bar)
                zs[k] = None
            return z_bar
        return self._reverse(0, n, z_start, z_bar, theta_bar, self.checkpoints)

    def _advance(self, z, start, stop):
        for k in range(start, stop):
            z = self.stepper.step(self.ts[k], self.hs[k], z)
        self.recomputed += stop - start
        return z

    def _reverse(self, lo, hi, z_lo, z_bar, theta_bar, free):
        if hi - lo == 1:
            z_bar = self.stepper.reverse(self.ts[lo], self.hs[lo], z_lo, z_bar, theta_bar)
        elif free == 0:  # no checkpoint to spare: rebuild each step's state from z_lo
            for k in range(hi - 1, lo - 1, -1):
                z_k = self._advance(z_lo, lo, k)
                z_bar = self.stepper.reverse(self.ts[k], self.hs[k], z_k, z_bar, theta_bar)
        else:
            mid = lo + first_part(hi - lo, free)
            z_mid = self._advance(z_lo, lo, mid)
            self.held += 1
            self.peak_held = max(self.peak_held, self.held)
            z_bar = self._reverse(mid, hi, z_mid, z_bar, theta_bar, free - 1)
            del z_mid  # its part is done: the first part reuses the slot
            self.held -= 1
            z_bar = self._reverse(lo, mid, z_lo, z_bar, theta_bar, free)
        return z_bar


def explicit_tableau(solver: str):
    """The tableau (A, B, C; A[i, :i] the stage weights) of an explicit solver from the solver registry:
    our `ExplicitRungeKutta`'s (DP5, BS3) or the scipy class's of a scipy method (DP8's DOP853); or a
    one-line refusal for an implicit solver."""
    info = check_solver(solver)
    if isinstance(info, ExplicitRungeKutta):
        return info.tableau
    scipy_class = None if info.implicit else getattr(info, "scipy_class", None)
    if scipy_class is None or not hasattr(scipy_class, "A"):
        explicit = [name for name, s in SOLVERS.items() if not s.implicit]
        raise RefusedError(
            f"RecursiveCheckpointAdjoint differentiates explicit Runge-Kutta steps ({', '.join(explicit)}); "
            f"solver {solver!r} is implicit: use QuadratureAdjoint or InterpolatingAdjoint for stiff problems"
        )
    return scipy_class


def discrete_loss(problem, theta, z0, pieces: list[ExplicitSteps], solver: str) -> float:
    """The loss of the discrete solution with the step sequence `pieces` held fixed.

    The function whose exact gradient RecursiveCheckpointAdjoint computes; a finite-difference check of
    it needs no ODE solver. `pieces` follow the forward pass's (one per observation time).
    """
    stepper = _Stepper(problem.model, problem.model.check_theta(theta), explicit_tableau(solver))
    z = np.array(z0, dtype=np.float64)
    z_at_times = np.empty((problem.times.size, *z.shape))
    for k, piece in enumerate(pieces):
        for t, h in zip(piece.times(), piece.hs):
            z = stepper.step(t, h, z)
        z_at_times[k] = z
    return problem.loss_terms(z_at_times)[0]


def forward_steps(problem, theta, options: SolveOptions):
    """The forward pass and its accepted step sequences, one `ExplicitSteps` per observation time.

    The sizes are the solver loop's own h (including the last step's, clipped to end on the
    observation time), so replaying them reproduces the forward's states to rounding.
    """
    explicit_tableau(options.solver)
    fwd = solve_forward(problem.model, theta, problem.z0, problem.t0, problem.times, options, record_steps=True)
    pieces = [ExplicitSteps(piece.t_start, tuple(piece.steps)) for piece in fwd.pieces]
    return fwd, pieces


def recursive_checkpoint_gradient(engine: RecursiveCheckpointAdjoint, problem, theta, forward: SolveOptions):
    """dL/dθ (P,) and dL/dz0 (B, N) of the discrete loss: the forward pass records its accepted steps
    (one float each), then each piece is swept in reverse from its stored start state."""
    # the compiled forward loop and reverse sweep, where they apply (DP5, BS3, the plain MLP; see
    # harness._compiled): this algorithm, written out statement for statement
    compiled = discrete_sweep(problem, theta, forward, engine.checkpoints)
    if compiled is not None:
        return discrete_result(engine, problem, *compiled)
    fwd, pieces = forward_steps(problem, theta, forward)
    loss, dL_dz = problem.loss_terms(fwd.z_at_times)
    stepper = _Stepper(problem.model, theta, explicit_tableau(forward.solver))
    z_bar = np.zeros_like(problem.z0)
    theta_bar = np.zeros(problem.model.n_params)
    recomputed = peak_held = n_steps = 0
    for k in range(len(pieces) - 1, -1, -1):
        z_bar += dL_dz[k]
        sweep = _ReverseSweep(stepper, pieces[k], engine.checkpoints)
        z_start = states(fwd.pieces[k].y_start, problem.batch_size)
        z_bar = sweep.run(z_start, z_bar, theta_bar)
        recomputed += sweep.recomputed
        peak_held = max(peak_held, sweep.peak_held)
        n_steps += len(pieces[k].hs)
    return discrete_result(engine, problem, loss, theta_bar, z_bar, fwd.stats, stepper.n_f, stepper.n_vjp, n_steps,
                           recomputed, peak_held)


def discrete_result(engine, problem, loss, dtheta, dz0, forward_stats, n_f, n_vjp, n_steps, recomputed,
                    peak_held) -> GradientResult:
    """The `GradientResult` of a RecursiveCheckpointAdjoint sweep (numpy or compiled): its backward counts
    are the reversed steps' evaluations (n_f values, n_vjp VJPs) and its diagnostics the sweep's."""
    return GradientResult.of(
        engine, problem, loss, dtheta, dz0, forward_stats,
        SolverStats(n_rhs=n_f + n_vjp, n_accepted=n_steps, n_rejected=0),
        {
            "n_steps": n_steps,
            "checkpoints": engine.checkpoints,
            "recomputed_steps": recomputed,
            "peak_stored_states": peak_held,
            "vjps": n_vjp,
        },
    )


register_engine(RecursiveCheckpointAdjoint, compute=recursive_checkpoint_gradient)
