"""RecursiveCheckpointAdjoint: the exact gradient of the computed solution (discretise-then-optimise).

The continuous adjoints solve an adjoint ODE and approximate the gradient of the exact loss; this
engine differentiates the numerical solution itself. The forward solve is run as usual and its
accepted step sizes are recorded; those steps, held fixed (as diffrax's RecursiveCheckpointAdjoint
and torchdiffeq's `odeint` under backprop hold them), define a discrete map

    y_{n+1} = y_n + h_n Σ_i b_i k_i,   k_i = f(t_n + c_i h_n, y_n + h_n Σ_{j<i} a_ij k_j),

whose reverse mode is, stage by stage from the last,

    k̄_i = h_n b_i ȳ_{n+1} + h_n Σ_{j>i} a_ji Ȳ_j,   Ȳ_i = (∂f/∂z)ᵀ k̄_i,   θ̄ += (∂f/∂θ)ᵀ k̄_i,
    ȳ_n = ȳ_{n+1} + Σ_i Ȳ_i,

with ∂L/∂z(t_k) = g_k entering where the loss reads z(t_k). Under the forward pass's "dense" rule
(DP5, BS3; `harness._forward`) the steps do not stop at the observation times: z(t_k) is the dense
output of the step n that reaches t_k,

    z(t_k) = y_n + h_n Σ_i b_i(x) k_i,   b_i(x) = Σ_j P_ij x^(j+1),   x = (t_k - t_n) / h_n,

over every stage including the first-same-as-last one, k_s = f(t_{n+1}, y_{n+1}); so when the sweep
reverses step n it adds ȳ_n += g_k and k̄_i += h_n b_i(x) g_k on its stages i < s; the share of
k_s = f(t_{n+1}, y_{n+1}), which is step n + 1's k_0, joins that step's k̄_0 (it is reversed
first), or for the last step one VJP at the end state (ȳ_N += (∂f/∂z)ᵀ k̄_s, θ̄ += (∂f/∂θ)ᵀ k̄_s). Where t_k is a step's
end exactly (t_K; and under the "piecewise" rule of DP8, every time) z(t_k) is y_{n+1} and g_k joins
ȳ_{n+1}. The result is the gradient of the discrete loss to rounding, at any tolerance; how close it
is to the gradient of the ODE's loss depends on the tolerance, like the solution itself. The error
estimate and the step-size controller do not enter: the steps are fixed.

Memory: the reverse sweep needs each step's stage inputs. With `checkpoints=None` the forward pass
keeps them, s states a step (fastest: the sweep evaluates no f, only the VJPs; memory linear in the
number of steps; DP8, whose stages are scipy's, keeps its step sizes and replays the states). With
`checkpoints=c` at most c states (plus the piece's start) are held at once, the others are recomputed
from the nearest one by binomial checkpointing (Griewank's revolve recursion), and each reversed step
evaluates its stages again: memory bounded by c whatever the number of steps, at the price of
recomputed steps (reported in `diagnostics`). One float per step, its size, is kept.

Explicit solvers only (DP5, BS3, DP8): differentiating an implicit solver's Newton iterations is a
different algorithm, and such solvers are refused with a one-line reason.

This numpy code is the reference. Where numba is installed, DP5 and BS3 on the plain MLP run compiled
(`_compiled_loop.discrete_sweep`: the compiled forward loop, then `harness._compiled._reverse_sweep`, this
algorithm written out, with the same counts); ``HARNESS_COMPILED=0`` selects this code.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from ..errors import RefusedError
from .._forward import SolveOptions, solve_forward
from .._state_layout import flat, forward_rhs, states
from ..solvers import SOLVERS, ExplicitRungeKutta, SolverStats, check_solver
from ..solvers._rk_step import StepWorkspace, Tableau
from ..solvers._step_rules import first_part
from ._compiled_loop import discrete_sweep
from ._registry import register_engine
from ._result import GradientResult
from .algorithms import RecursiveCheckpointAdjoint

@dataclass(frozen=True)
class ExplicitSteps:
    """The fixed step sequence of one forward piece: start time, step sizes (signed) and end time, and
    where the forward pass kept them, each step's stage inputs (s, B N)."""

    t_start: float
    hs: tuple[float, ...]
    t_end: float | None = None  # the last step's end (the solver clips it there); None: t + h
    stages: tuple[np.ndarray, ...] | None = None

    def times(self) -> list[float]:
        """The start time of each step."""
        t, out = self.t_start, []
        for h in self.hs:
            out.append(t)
            t = t + h
        return out

    def ends(self) -> list[float]:
        """The end time of each step, as the solver loop had it: t + h (the next step's start), and
        `t_end` for the last step, which the loop clips to end there."""
        starts = self.times()
        ends = [t + h for t, h in zip(starts, self.hs)]
        if ends and self.t_end is not None:
            ends[-1] = self.t_end
        return ends

    def observations(self, times: np.ndarray) -> dict[int, list[tuple[int, float | None]]]:
        """Which observation times each step produces: step n -> [(k, x), ...] for the times t_k in
        (t_n, t_{n+1}] (the first step that reaches t_k), x = (t_k - t_n) / h_n, or x = None where t_k
        is the step's end exactly (z(t_k) is then the end state, not the interpolant)."""
        starts, ends = self.times(), self.ends()
        out: dict[int, list[tuple[int, float | None]]] = {}
        for k, t_k in enumerate(times):
            t_k = float(t_k)
            if not (ends and self.t_start < t_k <= ends[-1]):
                continue
            n = bisect_left(ends, t_k)
            x = None if t_k == ends[n] else (t_k - starts[n]) / self.hs[n]
            out.setdefault(n, []).append((k, x))
        return out


class _Stepper:
    """One explicit Runge-Kutta step of the batched field, forwards and in reverse mode."""

    def __init__(self, model, theta, tableau):
        self.model, self.theta = model, theta
        self.A, self.B, self.C = tableau.A, tableau.B, tableau.C
        # the dense-output weights (s + 1, degree), for observations read inside a step (None for
        # scipy's classes: DP8 stops at its observation times)
        self.P = getattr(tableau, "P", None)
        self.n_stages = len(tableau.B)
        # our tableaus (DP5, BS3) are replayed by the forward loop's own arithmetic (`StepWorkspace`), so
        # that a replayed step is the forward's step bit for bit; scipy's (DP8) by the loop below
        self.tableau = tableau
        self.forward_loop_replay = isinstance(tableau, Tableau)
        self._forward = None  # (batch, the forward's flat f, its step workspace), see `_forward_loop`
        self.n_f = 0  # evaluations of f (forward replays and the reverse sweep's stage inputs)
        self.n_vjp = 0  # vector-Jacobian products

    def stage_inputs(self, t, h, z, end_state=True):
        """The stage inputs Y_i (list of (B, N)) and the step's end state (None without `end_state`:
        then the last stage's value, which no stage input reads, is not evaluated)."""
        Y, _, z_new = self._stages(t, h, z, end_state)
        return Y, z_new

    def _stages(self, t, h, z, end_state=True):
        """(stage inputs Y_i, stage values k_i, end state); see `stage_inputs`."""
        if self.forward_loop_replay:
            return self._forward_loop_stages(t, h, z, end_state)
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
            return Y, K, None
        z_new = z.copy()
        for i in range(self.n_stages):
            if self.B[i] != 0.0:
                z_new += (h * self.B[i]) * K[i]
        return Y, K, z_new

    def _forward_loop_stages(self, t, h, z, end_state):
        """`_stages` by the forward loop's own arithmetic: its `StepWorkspace` (the coefficients scaled
        by h, each stage input a product of a row of them with the rows [y, k_0, k_1, ...]) and its f on
        flat states (`forward_rhs`), so the replayed states are the forward pass's to the bit. The
        stage values returned are views of the workspace, valid until the next step."""
        C, s, batch = self.C, self.n_stages, z.shape[0]
        rhs, work = self._forward_loop(batch, z.size)
        work.scale_by(h)
        work.Y[0] = flat(z)
        Y, K = [z], []
        for i in range(s):
            if i > 0:
                _, _, row, previous, _ = work.stages[i - 1]
                Y.append(states(row @ previous, batch))
            if end_state or i < s - 1:
                work.K[i] = rhs(t + float(C[i]) * h, flat(Y[i]))
                K.append(states(work.K[i], batch))
        self.n_f += len(K)
        if not end_state:
            return Y, K, None
        return Y, K, states(work.solution_row @ work.Y_solution, batch)

    def _forward_loop(self, batch, size):
        """The forward loop's f on flat states (`forward_rhs`) and a `StepWorkspace`, made once per batch."""
        if self._forward is None or self._forward[0] != batch:
            self._forward = (batch, forward_rhs(self.model, self.theta, batch), StepWorkspace(self.tableau, size))
        return self._forward[1:]

    def step(self, t, h, z):
        return self.stage_inputs(t, h, z)[1]

    def dense_weights(self, h, x) -> np.ndarray:
        """h b_i(x), shape (s + 1,): the weight of stage i (the last: first same as last) in the step's
        dense output at x, z(t + x h) = z + Σ_i h b_i(x) k_i, b_i(x) = Σ_j P_ij x^(j+1)."""
        return h * (self.P @ (x ** np.arange(1, self.P.shape[1] + 1)))

    def step_observing(self, t, h, z, t_end, xs):
        """The step's end state and its dense output at each x in `xs`, as the forward loop forms them
        (the stages, then k_s = f(t_end, end state))."""
        _, K, z_new = self._stages(t, h, z)
        if self.forward_loop_replay:  # the forward loop's f, as its stages
            rhs, _ = self._forward_loop(z.shape[0], z.size)
            K.append(states(rhs(t_end, flat(z_new)), z.shape[0]))
        else:
            K.append(self.model.f(t_end, z_new, self.theta))
        self.n_f += 1
        out = []
        for x in xs:
            w = self.dense_weights(h, x)
            z_x = z.copy()
            for i, k in enumerate(K):
                if w[i] != 0.0:
                    z_x += w[i] * k
            out.append(z_x)
        return z_new, out

    def reverse(self, t, h, z, z_bar, theta_bar, inside=(), k0_extra=None, Y=None):
        """ȳ_n from ȳ_{n+1} (`z_bar`, (B, N)); adds the step's θ cotangent into `theta_bar`.

        `Y`: the step's stage inputs [(B, N), ...] if the forward pass kept them; else they are formed
        again from z (s - 1 evaluations of f).

        `inside`: [(x, g), ...], the cotangents g (B, N) of observations this step's dense output
        produced at x: ȳ_n += g and k̄_i += h b_i(x) g on the stages i < s. (Their share on the
        first-same-as-last stage, h b_s(x) g on k_s = f(y_{n+1}), is the next step's k_0: the sweep
        passes it to that step's reverse as `k0_extra`, added to k̄_0.)"""
        if Y is None:
            Y, _ = self.stage_inputs(t, h, z, end_state=False)
        A, B, C = self.A, self.B, self.C
        k_bar = [(h * B[i]) * z_bar for i in range(self.n_stages)]
        z_bar = z_bar.copy()
        if k0_extra is not None:
            k_bar[0] += k0_extra
        for x, g in inside:
            weights = self.dense_weights(h, x)
            for i in range(self.n_stages):
                if weights[i] != 0.0:
                    k_bar[i] += weights[i] * g
            z_bar += g  # y_n's own term of the dense output
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
    """The reverse sweep over one piece's steps, with at most `checkpoints` states held at once.

    `cotangents`: step n -> (the g_k (B, N) of observations at its end, [(x, g_k), ...] of those
    inside it), from `ExplicitSteps.observations`; each enters when its step is reversed, and the
    inside ones' share on the step's first-same-as-last stage, k̄_s = Σ h b_s(x) g_k on
    k_s = f(t_{n+1}, y_{n+1}), enters as k̄_0 of step n + 1 (whose k_0 is that same value), or for
    the piece's last step by one VJP at its end state `z_end` before the sweep."""

    def __init__(self, stepper: _Stepper, steps: ExplicitSteps, checkpoints: int | None, cotangents=None):
        self.stepper = stepper
        self.ts, self.hs, self.ends = steps.times(), steps.hs, steps.ends()
        self.stages = steps.stages
        self.checkpoints = checkpoints
        self.cotangents = cotangents or {}
        # step n -> k̄_s of its inside observations, which step n + 1's k̄_0 (or the end's VJP) takes
        self.last_stage = {}
        for n, (_, inside) in self.cotangents.items():
            weights = [(stepper.dense_weights(self.hs[n], x)[-1], g) for x, g in inside]
            if any(w != 0.0 for w, _ in weights):
                self.last_stage[n] = sum(w * g for w, g in weights)
        self.recomputed = 0  # steps advanced again to rebuild a state
        self.held = self.peak_held = 1  # states stored at once: the piece's start, then checkpoints

    def _reverse_step(self, k, z, z_bar, theta_bar, Y=None):
        at_end, inside = self.cotangents.get(k, ((), ()))
        for g in at_end:  # z(t_k) = y_{k+1}: its cotangent joins ȳ_{k+1}
            z_bar = z_bar + g
        return self.stepper.reverse(self.ts[k], self.hs[k], z, z_bar, theta_bar, inside,
                                    self.last_stage.get(k - 1), Y)

    def run(self, z_start, z_bar, theta_bar, z_end=None):
        """ȳ at the piece's start from ȳ at its end (`z_bar`); `z_end` (B, N), the piece's end state,
        is read only if an observation inside the last step needs the VJP at it."""
        n = len(self.hs)
        if n == 0:
            return z_bar
        k_bar = self.last_stage.get(n - 1)
        if k_bar is not None and k_bar.any():
            stepper = self.stepper
            _, y_bar, th = stepper.model.vjp(self.ends[-1], z_end, stepper.theta, k_bar)
            stepper.n_vjp += 1
            theta_bar += th
            z_bar = z_bar + y_bar
        if self.checkpoints is None and self.stages is not None:
            # every step's stage inputs, kept by the forward pass: no f is evaluated
            self.peak_held = n
            batch = z_start.shape[0]
            for k in range(n - 1, -1, -1):
                Y = [states(y, batch) for y in self.stages[k]]
                z_bar = self._reverse_step(k, Y[0], z_bar, theta_bar, Y)
            return z_bar
        if self.checkpoints is None:  # scipy's DP8, whose stages are its own: replay the states
            zs = [z_start]
            for k in range(n - 1):
                zs.append(self.stepper.step(self.ts[k], self.hs[k], zs[-1]))
            self.peak_held = n
            for k in range(n - 1, -1, -1):
                z_bar = self._reverse_step(k, zs[k], z_bar, theta_bar)
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
            z_bar = self._reverse_step(lo, z_lo, z_bar, theta_bar)
        elif free == 0:  # no checkpoint to spare: rebuild each step's state from z_lo
            for k in range(hi - 1, lo - 1, -1):
                z_k = self._advance(z_lo, lo, k)
                z_bar = self._reverse_step(k, z_k, z_bar, theta_bar)
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


def discrete_states(problem, theta, z0, pieces: list[ExplicitSteps], solver: str) -> np.ndarray:
    """z at the observation times (K, B, N) of the discrete solution with the step sequence `pieces`
    held fixed: each time read as the forward pass reads it (`ExplicitSteps.observations`), from the
    step's dense output or as its end state."""
    stepper = _Stepper(problem.model, problem.model.check_theta(theta), explicit_tableau(solver))
    z = np.array(z0, dtype=np.float64)
    z_at_times = np.full((problem.times.size, *z.shape), np.nan)
    for piece in pieces:
        observed = piece.observations(problem.times)
        for n, (t, h, t_end) in enumerate(zip(piece.times(), piece.hs, piece.ends())):
            here = observed.get(n, ())
            inside = [(k, x) for k, x in here if x is not None]
            if inside:
                z_new, z_inside = stepper.step_observing(t, h, z, t_end, [x for _, x in inside])
                for (k, _), z_k in zip(inside, z_inside):
                    z_at_times[k] = z_k
            else:
                z_new = stepper.step(t, h, z)
            for k, x in here:
                if x is None:
                    z_at_times[k] = z_new
            z = z_new
    return z_at_times


def discrete_loss(problem, theta, z0, pieces: list[ExplicitSteps], solver: str) -> float:
    """The loss of the discrete solution with the step sequence `pieces` held fixed.

    The function whose exact gradient RecursiveCheckpointAdjoint computes; a finite-difference check of
    it needs no ODE solver. `pieces` follow the forward pass's (`forward_steps`).
    """
    return problem.loss_terms(discrete_states(problem, theta, z0, pieces, solver))[0]


def forward_steps(problem, theta, options: SolveOptions, keep_stages: bool = False):
    """The forward pass and its accepted step sequences, one `ExplicitSteps` per forward piece (the
    whole [t0, t_K] under the "dense" rule, one per observation time under the "piecewise" rule).

    The sizes are the solver loop's own h (including the last step's, clipped to end on the
    piece's end), so replaying them reproduces the forward's states to rounding. With `keep_stages`
    each step's stage inputs are kept too (DP5, BS3: `solve_forward`'s `record_stages`).
    """
    explicit_tableau(options.solver)
    fwd = solve_forward(problem.model, theta, problem.z0, problem.t0, problem.times, options, record_steps=True,
                        record_stages=keep_stages)
    pieces = [ExplicitSteps(piece.t_start, tuple(piece.steps), piece.t_end,
                            None if piece.stages is None else tuple(piece.stages)) for piece in fwd.pieces]
    return fwd, pieces


def recursive_checkpoint_gradient(engine: RecursiveCheckpointAdjoint, problem, theta, forward: SolveOptions):
    """dL/dθ (P,) and dL/dz0 (B, N) of the discrete loss: the forward pass records its accepted steps
    (one float each), then each piece is swept in reverse from its stored start state, every
    observation's ∂L/∂z entering at the step that produced it."""
    # the compiled forward loop and reverse sweep, where they apply (DP5, BS3, the plain MLP; see
    # harness._compiled): this algorithm, written out statement for statement
    compiled = discrete_sweep(problem, theta, forward, engine.checkpoints)
    if compiled is not None:
        return discrete_result(engine, problem, *compiled)
    fwd, pieces = forward_steps(problem, theta, forward, keep_stages=engine.checkpoints is None)
    loss, dL_dz = problem.loss_terms(fwd.z_at_times)
    stepper = _Stepper(problem.model, theta, explicit_tableau(forward.solver))
    z_bar = np.zeros_like(problem.z0)
    theta_bar = np.zeros(problem.model.n_params)
    recomputed = peak_held = n_steps = 0
    for i in range(len(pieces) - 1, -1, -1):
        cotangents = {}
        for n, observed in pieces[i].observations(problem.times).items():
            cotangents[n] = ([dL_dz[k] for k, x in observed if x is None],
                             [(x, dL_dz[k]) for k, x in observed if x is not None])
        sweep = _ReverseSweep(stepper, pieces[i], engine.checkpoints, cotangents)
        z_start = states(fwd.pieces[i].y_start, problem.batch_size)
        # the piece's end state: the next piece's start, or at t_K the last observation's
        z_end = states(fwd.pieces[i + 1].y_start, problem.batch_size) if i + 1 < len(pieces) else fwd.z_at_times[-1]
        z_bar = sweep.run(z_start, z_bar, theta_bar, z_end)
        recomputed += sweep.recomputed
        peak_held = max(peak_held, sweep.peak_held)
        n_steps += len(pieces[i].hs)
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
