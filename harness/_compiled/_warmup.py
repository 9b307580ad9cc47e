"""numba's just-in-time kernels, compiled (or loaded from numba's disk cache) once per process: what runs
where the module built ahead of time (`_ahead_of_time.py`) cannot be built, or with
``HARNESS_AHEAD_OF_TIME=0``.

numba compiles a function on its first call for the argument types it sees; a solve always passes the
same types (float64 C-contiguous arrays, int64 arrays, Python scalars), so one call on tiny arrays
through the same solves the gradients use (`_solves.py`) settles every later one. Whether that call
compiled or loaded is read from numba's cache statistics.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..model import MLP
from ..solvers import check_solver
from ._adaptive_loop import backward_pass, forward_pass
from ._arguments import BACKSOLVE, INTERPOLATING, dense_store, kept_stages, step_store
from ._compiled_stage_vjps import CompiledStageVJPs
from ._reverse_sweep import reverse_sweep
from ._solves import solve_backward, solve_forward, sweep
from ._stage_kernels import mlp_stage


def just_in_time_kernels() -> SimpleNamespace:
    """The four compiled functions as numba's dispatchers, in the shape `harness._compiled.kernels()` has."""
    return SimpleNamespace(forward_pass=forward_pass, backward_pass=backward_pass, reverse_sweep=reverse_sweep,
                           mlp_stage=mlp_stage)


def _is_cached(dispatcher) -> bool:
    """True if the disk cache has an entry for this function (checked before its first call)."""
    cache = getattr(dispatcher, "_cache", None)
    try:
        return bool(cache is not None and cache._cache_file._load_index())
    except (OSError, EOFError, AttributeError):
        return False


def warm_up(on_compile) -> bool:
    """Make the just-in-time kernels ready (one stage of each kind, one tiny forward pass, backward pass
    and reverse sweep); call `on_compile()` first if they must be compiled. Returns whether they were."""
    compiling = not all(_is_cached(f) for f in (mlp_stage, forward_pass, backward_pass, reverse_sweep))
    if compiling:
        on_compile()
    jit = just_in_time_kernels()
    model = MLP((1, 1, 1))
    theta = np.zeros(model.n_params)
    tape = CompiledStageVJPs(model, theta, 1, 1, stage=mlp_stage)
    x, out = np.zeros((1, 1)), np.empty((1, 1))
    tape.value(x, out)
    tape.vjp(0, x, x, out, out)
    tape.vjp(0, x, x, None, out)

    solver = check_solver("DP5")
    z0, times, dL_dz = np.zeros((1, 1)), np.array([1.0]), np.zeros((1, 1, 1))
    rtol, atol = 1e-6, 1e-8
    dense = solve_forward(jit, model, theta, z0, 0.0, times, solver, rtol, atol, True, 32,
                          lambda capacity: dense_store(capacity, 1, solver.tableau.dense_degree))
    for mode in (BACKSOLVE, INTERPOLATING):
        solve_backward(jit, mode, dense, dL_dz, 0.0, solver, 0.5 * dense.h_last, rtol, atol, model.n_params)
    s = solver.tableau.n_stages
    steps = solve_forward(jit, model, theta, z0, 0.0, times, solver, rtol, atol, True, 256, step_store,
                          lambda capacity, net: kept_stages(capacity, s, 1, net, True))
    sweep(jit, steps, dL_dz, s, model.n_params, None)
    return compiling
