"""The compiled solves called with arrays: the forward pass to the last observation time, z at the
others read from its dense output (`solve_forward`), a continuous adjoint's backward pass
(`solve_backward`) and the discrete adjoint's reverse sweep (`sweep`), each building its arguments
(`_arguments.py`) and calling one compiled function of `kernels` (the namespace
`harness._compiled.kernels()` returns, passed in).

Nothing here knows problems, engines or results: the gradients that use these solves
(`harness.sensitivity._compiled_loop`) turn a problem into arrays and the arrays into a result.
A solve that did not finish (a step-size underflow, a step budget that cannot suffice) returns None;
the numpy driver then runs and explains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._stage_vjps import _augmented_layout
from ..solvers import ExplicitRungeKutta
from ._arguments import (ALONE, BACKSOLVE, INTERPOLATING, NEED_ROOM, OK, network_arguments, no_kept_stages,
                         quadrature_rule, sweep_workspace, tableau_arguments, workspace)

# an `AdjointSystem`'s `compiled_loop` -> the loop's mode. QuadratureAdjoint and GaussAdjoint share
# ALONE: their sums differ only in the number of nodes per step (the rule `solve_backward` is given).
MODES = {"backsolve": BACKSOLVE, "interpolating": INTERPOLATING, "quadrature": ALONE, "gauss": ALONE}


@dataclass(frozen=True)
class CompiledForward:
    """A compiled forward solve from t0 to the last observation time (`solve_forward`).

    net, tableau : the kernel's and the solver's arguments; times (K,); z0 (N, B) and z_at (K, N, B),
    feature-major; store: the accepted steps kept (the first n_steps); kept: their stages
    (`_arguments.kept_stages`, or nothing); obs_step (K,) int64 and obs_x (K,): the step whose dense
    output gave each time's z and x there (`AT_END`: its end state); h_last: the next step the
    controller proposed after t_K; counts: (n_rhs, n_accepted, n_rejected).
    """

    net: tuple
    tableau: tuple
    times: np.ndarray
    z0: np.ndarray
    z_at: np.ndarray
    store: tuple
    kept: tuple
    n_steps: int
    obs_step: np.ndarray
    obs_x: np.ndarray
    h_last: float
    counts: tuple


def solve_forward(kernels, model, theta, z0, t0, times, solver: ExplicitRungeKutta, rtol, atol, keep: bool,
                  capacity: int, make_store, make_kept=None) -> CompiledForward | None:
    """Solve dz/dt = f(z, θ) from z0 (B, N) at t0 to times[-1], z at `times` (K,) from the dense output,
    keeping each accepted step in `make_store(capacity)` and its stages in `make_kept(capacity, net)`
    if given (with `keep`; the capacity doubled and the solve re-run while it is too small); None where
    the solve failed."""
    batch = z0.shape[0]
    bn = batch * model.state_dim
    net = network_arguments(model, theta, batch)
    times = np.ascontiguousarray(times, dtype=np.float64)
    z0 = np.ascontiguousarray(z0.T)
    tableau = tableau_arguments(solver)
    z_at = np.empty((len(times), model.state_dim, batch))
    obs_step, obs_x = np.zeros(len(times), dtype=np.int64), np.empty(len(times))
    work = workspace(solver.tableau.n_stages, bn, bn, 0)
    while True:
        store = make_store(capacity)
        kept = no_kept_stages() if make_kept is None else make_kept(capacity, net)
        status, h_last, counts, n_steps = kernels.forward_pass(
            net, tableau, z0, t0, times, rtol, atol, keep, work, store, z_at, obs_step, obs_x, kept,
        )
        if status != NEED_ROOM:
            break
        capacity *= 2
    if status != OK:
        return None
    return CompiledForward(net, tableau, times, z0, z_at, store, kept, int(n_steps), obs_step, obs_x, h_last, counts)


def solve_backward(kernels, mode: int, forward: CompiledForward, dL_dz, t0, solver: ExplicitRungeKutta, h0,
                   rtol, atol, n_params: int, rule=((), ())):
    """The backward pass of a continuous adjoint (`mode`, see `MODES`) between `forward`'s observation
    times, with the jumps dL_dz (K, N, B) at the times, from the first step h0; `rule` the Gauss-Legendre
    nodes and weights on [-1, 1] of every backward step (mode ALONE).

    Returns (u, ∂L/∂θ (P,), counts) or None: u the flat state at t0, [z | a] (BACKSOLVE) or a, each
    (N, B) feature-major; counts (n_rhs, n_accepted, n_rejected).
    """
    bn = forward.z0.size
    n_blocks = 2 if mode == BACKSOLVE else 1
    u, q = np.zeros(n_blocks * bn), np.zeros(n_params)
    nodes = quadrature_rule(*rule, solver.tableau.dense_degree, bn)
    status, counts = kernels.backward_pass(
        mode, forward.net, tableau_arguments(solver), forward.z_at, dL_dz, t0, forward.times, h0, rtol, atol,
        forward.store, forward.n_steps, workspace(solver.tableau.n_stages, n_blocks * bn, bn, n_params), u, q,
        nodes,
    )
    if status != OK:
        return None
    to_theta, _ = _augmented_layout(tuple(forward.net[0].tolist()))
    return u, q[to_theta], counts


def sweep(kernels, forward: CompiledForward, dL_dz, n_stages: int, n_params: int, checkpoints: int | None):
    """The reverse sweep of the discrete adjoint through `forward`'s kept steps (a `step_store`): from
    their kept stages (`checkpoints` None; the forward pass solved with `make_kept`) or binomially
    checkpointed.

    Returns (∂L/∂θ (P,), ∂L/∂z0 (B, N), n_f, n_vjp, recomputed steps, peak held states, n_steps).
    """
    n, batch = forward.z0.shape
    if checkpoints is None and len(forward.kept[0]) <= forward.n_steps:
        raise ValueError("a sweep without checkpoints reverses the stages its forward pass kept: solve it "
                         "with `make_kept` (`_arguments.kept_stages`)")
    checkpoints = -1 if checkpoints is None else int(checkpoints)
    slots, stack, sweep_work = sweep_workspace(n_stages, n * batch, n_params, forward.n_steps, checkpoints)
    z_bar, q = np.zeros(n * batch), np.zeros(n_params)
    n_f, n_vjp, recomputed, peak_held, n_steps = kernels.reverse_sweep(
        forward.net, forward.tableau, forward.z0, forward.z_at, dL_dz, forward.store[1][: forward.n_steps],
        forward.obs_step, forward.obs_x, checkpoints, slots, stack, sweep_work, z_bar, q, forward.kept,
    )
    to_theta, _ = _augmented_layout(tuple(forward.net[0].tolist()))
    return q[to_theta], np.ascontiguousarray(z_bar.reshape(n, batch).T), n_f, n_vjp, recomputed, peak_held, n_steps
