"""Compile (or load from the disk cache) every kernel specialisation the harness uses, once per process.

numba compiles a function on its first call for the argument types it sees; a solve always passes the
same types (float64 C-contiguous arrays, int64 arrays, Python scalars), so one call on tiny arrays
settles every later one. Whether that call compiled or loaded is read from numba's cache statistics.
"""

from __future__ import annotations

import numpy as np

from ._stage_kernels import mlp_stage


def _is_cached(dispatcher) -> bool:
    """True if the disk cache has an entry for this function (checked before its first call)."""
    cache = getattr(dispatcher, "_cache", None)
    try:
        return bool(cache is not None and cache._cache_file._load_index())
    except (OSError, EOFError, AttributeError):
        return False


def warm_up(on_compile) -> bool:
    """Make the kernels ready; call `on_compile()` first if they must be compiled. Returns whether they were."""
    compiling = not _is_cached(mlp_stage)
    if compiling:
        on_compile()
    from ..model import MLP
    from ._stage_vjps import CompiledStageVJPs

    model = MLP((1, 1, 1))
    tape = CompiledStageVJPs(model, np.zeros(model.n_params), 1, 1)
    x, out = np.zeros((1, 1)), np.empty((1, 1))
    tape.value(x, out)
    tape.vjp(0, x, x, out, out)
    tape.vjp(0, x, x, None, out)
    return compiling


def warm_up_loop(on_compile) -> bool:
    """Make the whole-loop functions ready (one tiny gradient of each adjoint); call `on_compile()`
    first if they must be compiled. Returns whether they were."""
    from ._adaptive_loop import backward_pass, forward_pass
    from ._reverse_sweep import reverse_sweep

    compiling = not all(_is_cached(f) for f in (forward_pass, backward_pass, reverse_sweep))
    if compiling:
        on_compile()
    from .._forward import SolveOptions
    from ..model import MLP
    from ..problems import Problem
    from ..sensitivity import BacksolveAdjoint, InterpolatingAdjoint, RecursiveCheckpointAdjoint
    from ..sensitivity._backsolve import Backsolve
    from ..sensitivity._interpolating import Interpolating
    from ._discrete_gradient import discrete_loop_gradient
    from ._whole_gradient import whole_loop_gradient

    model = MLP((1, 1, 1))
    problem = Problem(model, np.zeros(model.n_params), np.zeros((1, 1)), 0.0, np.array([1.0]), np.zeros((1, 1, 1)))
    options = SolveOptions()
    whole_loop_gradient(problem, problem.theta, options, options, BacksolveAdjoint(), Backsolve)
    whole_loop_gradient(problem, problem.theta, options, options, InterpolatingAdjoint(), Interpolating)
    discrete_loop_gradient(problem, problem.theta, options, RecursiveCheckpointAdjoint())
    return compiling
