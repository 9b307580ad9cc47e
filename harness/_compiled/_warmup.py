"""numba's just-in-time kernels, compiled (or loaded from numba's disk cache) once per process: what runs
where the module built ahead of time (`_ahead_of_time.py`) cannot be built, or with
``HARNESS_AHEAD_OF_TIME=0``.

numba compiles a function on its first call for the argument types it sees; a solve always passes the
same types (float64 C-contiguous arrays, int64 arrays, Python scalars), so one call on tiny arrays
settles every later one. Whether that call compiled or loaded is read from numba's cache statistics.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..model import MLP
from ._adaptive_loop import backward_pass, forward_pass
from ._reverse_sweep import reverse_sweep
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
    """Make the kernels ready (one stage of each kind and one tiny gradient of each adjoint, through
    `harness._compiled.kernels()`, which must already return `just_in_time_kernels()`); call
    `on_compile()` first if they must be compiled. Returns whether they were."""
    compiling = not all(_is_cached(f) for f in (mlp_stage, forward_pass, backward_pass, reverse_sweep))
    if compiling:
        on_compile()
    from ._stage_vjps import CompiledStageVJPs

    model = MLP((1, 1, 1))
    tape = CompiledStageVJPs(model, np.zeros(model.n_params), 1, 1)
    x, out = np.zeros((1, 1)), np.empty((1, 1))
    tape.value(x, out)
    tape.vjp(0, x, x, out, out)
    tape.vjp(0, x, x, None, out)

    from .._forward import SolveOptions
    from ..problems import Problem
    from ..sensitivity import BacksolveAdjoint, InterpolatingAdjoint, RecursiveCheckpointAdjoint
    from ..sensitivity._backsolve import Backsolve
    from ..sensitivity._interpolating import Interpolating
    from ._discrete_gradient import discrete_loop_gradient
    from ._whole_gradient import whole_loop_gradient

    problem = Problem(model, np.zeros(model.n_params), np.zeros((1, 1)), 0.0, np.array([1.0]), np.zeros((1, 1, 1)))
    options = SolveOptions()
    whole_loop_gradient(problem, problem.theta, options, options, BacksolveAdjoint(), Backsolve)
    whole_loop_gradient(problem, problem.theta, options, options, InterpolatingAdjoint(), Interpolating)
    discrete_loop_gradient(problem, problem.theta, options, RecursiveCheckpointAdjoint())
    return compiling
