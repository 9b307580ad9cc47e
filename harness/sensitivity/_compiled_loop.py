"""Gradients by the compiled whole loop (`harness._compiled`), where it applies: the continuous adjoints'
(`continuous_gradient`) and RecursiveCheckpointAdjoint's (`discrete_gradient`).

This is the glue between engines and kernels: it reads the problem, the engine and the adjoint system,
calls the compiled solves with arrays (`harness._compiled._solves`) and builds the `GradientResult`.
Each function returns None where the compiled loop does not apply (the mode, the model, the solver) or
where the compiled solve did not finish (a step-size underflow, a step budget that cannot suffice); the
numpy driver then runs as before, raising its own explained error in the second case.

The wide products go to the BLAS scipy ships, threaded as the process's BLAS is (OPENBLAS_NUM_THREADS,
threadpoolctl), as numpy's are. Measured (8-128-128-8, B = 256): two threads 1.3x faster than one on an
idle 2-core machine, and several times slower while another job holds a core (OpenBLAS's threads
spin-wait for each other), so on a shared machine set OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import _compiled as compiled
from .._compiled._arguments import (ACTIVATION_CODES, ALONE, BACKSOLVE, COLUMN_BATCH, RECORDED_ACTIVATIONS,
                                    dense_store, kept_stages, step_store)
from .._compiled._scratch import reusing
from .._compiled._solves import MODES, solve_backward, solve_forward, sweep
from ..model import MLP
from ..solvers import ExplicitRungeKutta, SolverStats, check_solver
from ..solvers import _step_rules as step_rules
from ._adjoint_systems import gauss_legendre
from ._result import GradientResult

# the explicit solvers RecursiveCheckpointAdjoint's compiled sweep takes (DP8 is scipy's DOP853 and
# stays numpy: its steps are scipy's loop, not `ExplicitRungeKutta`'s)
SWEEP_SOLVERS = ("DP5", "BS3")
# the forward stores' first capacities, in steps: a dense store (N B (degree + 1) floats a step) or kept
# stages (N B s floats a step, and the records `kept_stages` sizes) start small, since their room is
# reserved (and counted by tracemalloc) whether used or not; a store of step sizes alone (two floats a
# step) starts large enough for almost every solve
DENSE_STEPS = 64
SWEEP_STEPS = 1024


# RecursiveCheckpointAdjoint's kept stages (N B s floats a step, and the records) are sized from the steps
# the same problem's last forward pass took, with a margin (a training loop's next gradient takes about
# as many), so that the memory they reserve is about what they use; an unseen problem starts at
# DENSE_STEPS. Keyed by what decides the steps but θ and z0; bounded in size.
_STEPS_TAKEN: dict[tuple, int] = {}


def _steps_key(problem, options) -> tuple:
    model = problem.model
    return (tuple(model.widths), model.activation, problem.batch_size, float(problem.t0), float(problem.times[-1]),
            options.solver, options.rtol, options.atol)


def _expected_steps(problem, options) -> int:
    seen = _STEPS_TAKEN.get(_steps_key(problem, options))
    return DENSE_STEPS if seen is None else seen + seen // 8 + 2


def _remember_steps(problem, options, n_steps: int) -> None:
    if len(_STEPS_TAKEN) >= 256:
        _STEPS_TAKEN.clear()
    _STEPS_TAKEN[_steps_key(problem, options)] = n_steps


def _reusing_scratch(gradient):
    """`gradient(problem, ...)` with its solves' scratch taken from the last gradient's on this thread
    (`_scratch.reusing`: a large problem's gradient otherwise spends a tenth of its time in page faults)."""

    @functools.wraps(gradient)
    def reusing_scratch(problem, *args):
        model = problem.model  # the loop runs MLPs alone; for any other model the scope stays inactive
        with reusing(problem.batch_size * sum(model.widths) if isinstance(model, MLP) else 0):
            return gradient(problem, *args)

    return reusing_scratch


def _plain_mlp(model) -> bool:
    # the kernels' first layer reads z only, and they implement the MLP alone
    return type(model) is MLP and model.autonomous


def _stats(counts) -> SolverStats:
    return SolverStats(n_rhs=counts[0], n_accepted=counts[1], n_rejected=counts[2])


def _forward(problem, theta, options, keep: bool, capacity: int, make_store, make_kept=None):
    """The compiled forward solve, the loss and ∂L/∂z (K, N, B) at the times, or None."""
    solved = solve_forward(compiled.kernels(), problem.model, theta, problem.z0, problem.t0, problem.times,
                           check_solver(options.solver), options.rtol, options.atol, keep, capacity, make_store,
                           make_kept)
    if solved is None:
        return None, None, None
    loss, dL_dz = problem.loss_terms(solved.z_at.transpose(0, 2, 1))
    return solved, loss, np.ascontiguousarray(np.transpose(dL_dz, (0, 2, 1)))


def continuous_applies(problem, forward, options, engine, adjoint) -> bool:
    """The compiled loop covers this gradient: an adjoint that declares a loop, the plain autonomous
    MLP, explicit Runge-Kutta solvers both ways, no checkpointing, and the backward pass started from
    the forward's last step."""
    if not compiled.loop_enabled(problem.model) or not _plain_mlp(problem.model):
        return False
    if getattr(adjoint, "compiled_loop", None) not in MODES:
        return False
    if getattr(engine, "checkpointing", False) or step_rules.BACKWARD_FIRST_STEP_FRACTION is None:
        return False
    return all(isinstance(check_solver(o.solver), ExplicitRungeKutta) for o in (forward, options))


@_reusing_scratch
def continuous_gradient(problem, theta, forward, options, engine, adjoint) -> GradientResult | None:
    """The `GradientResult` of `adjoint_gradient(problem, theta, forward, engine, adjoint)` by the
    compiled loop, or None (see the module docstring). `options`: the backward pass's settings."""
    if not continuous_applies(problem, forward, options, engine, adjoint):
        return None
    mode = MODES[adjoint.compiled_loop]
    model = problem.model
    bn = problem.batch_size * model.state_dim
    keep_dense = mode != BACKSOLVE
    degree = check_solver(forward.solver).tableau.dense_degree
    # room for DENSE_STEPS steps (the solve runs to the last time without stopping at the others), doubled
    # (and the forward pass re-run) when too small
    solved, loss, dL_dz = _forward(problem, theta, forward, keep_dense, DENSE_STEPS if keep_dense else 0,
                                   lambda capacity: dense_store(capacity, bn, degree))
    if solved is None:
        return None
    system = adjoint(problem, theta, engine, options)
    # ALONE: the Gauss-Legendre rule of every backward step, the adjoint's own (`n_nodes`)
    rule = gauss_legendre(system.n_nodes) if mode == ALONE else ((), ())
    backward = solve_backward(compiled.kernels(), mode, solved, dL_dz, problem.t0, check_solver(options.solver),
                              step_rules.backward_first_step(solved.h_last), options.rtol, options.atol,
                              model.n_params, rule)
    if backward is None:
        return None
    u, dtheta, counts = backward
    # the adjoint's own `gradients` turns the state at t0 into the result (BacksolveAdjoint's
    # reconstruction check included): the flat numpy layout [z, a | ∂L/∂θ] or [a | ∂L/∂θ], or for
    # ALONE a, with the quadrature's ∂L/∂θ handed over first
    if mode == ALONE:
        system.take_quadrature(dtheta, n_steps=counts[1])
        state = u
    else:
        system.n_pieces, system.n_segments = 1, len(solved.times)
        state = np.concatenate((u, dtheta))
    dtheta, dz0, diagnostics = system.gradients(state)
    compiled.count_loop_run()
    return GradientResult.of(engine, problem, loss, dtheta, dz0, _stats(solved.counts), _stats(counts), diagnostics)


@_reusing_scratch
def discrete_sweep(problem, theta, forward, checkpoints: int | None):
    """RecursiveCheckpointAdjoint's forward loop and reverse sweep compiled, or None (see the module
    docstring): the plain autonomous MLP with DP5 or BS3 (implicit solvers are left to the numpy
    engine, which refuses them with its one-line reason).

    Returns (loss, ∂L/∂θ (P,), ∂L/∂z0 (B, N), forward SolverStats, n_f, n_vjp, n_steps, recomputed steps,
    peak held states): the numbers `harness.sensitivity._discrete` builds its result from."""
    if not compiled.loop_enabled(problem.model) or not _plain_mlp(problem.model):
        return None
    if forward.solver not in SWEEP_SOLVERS or not isinstance(check_solver(forward.solver), ExplicitRungeKutta):
        return None
    solver = check_solver(forward.solver)
    if checkpoints is None:
        # every step's stage inputs, as the numpy engine keeps them (so its counts are the numpy engine's),
        # and where a VJP can start from them, the layer inputs of the stages' evaluations
        model, n_stages = problem.model, solver.tableau.n_stages
        record = (problem.batch_size > COLUMN_BATCH
                  and ACTIVATION_CODES[model.activation] in RECORDED_ACTIVATIONS)
        size = problem.batch_size * model.state_dim
        solved, loss, dL_dz = _forward(problem, theta, forward, True, _expected_steps(problem, forward), step_store,
                                       lambda capacity, net: kept_stages(capacity, n_stages, size, net, record))
        if solved is not None:
            _remember_steps(problem, forward, solved.n_steps)
    else:
        # the step sizes alone (one float per step, and its t): the sweep replays the states from z0, as
        # the numpy engine does. Room for SWEEP_STEPS steps (16 KB), doubled (and the forward pass re-run)
        # when too small.
        solved, loss, dL_dz = _forward(problem, theta, forward, True, SWEEP_STEPS, step_store)
    if solved is None:
        return None
    dtheta, dz0, n_f, n_vjp, recomputed, peak_held, n_steps = sweep(
        compiled.kernels(), solved, dL_dz, solver.tableau.n_stages, problem.model.n_params, checkpoints)
    compiled.count_loop_run()
    return loss, dtheta, dz0, _stats(solved.counts), n_f, n_vjp, n_steps, recomputed, peak_held
