"""The compiled fast path: numba kernels for the MLP's Runge-Kutta stages, used where numba is installed.

The numpy code (`harness._stage_vjps.StageVJPs`) stays the reference; `stage_vjps` below returns the
compiled `CompiledStageVJPs` instead when the fast path is on. By default it is on where numba is
installed, for networks whose hidden layers are at most `AUTO_MAX_WIDTH` wide (where it is faster than
numpy); ``HARNESS_COMPILED=1`` / ``set_enabled(True)`` force it for every network, and
``HARNESS_COMPILED=0`` / ``set_enabled(False)`` turn it off. `status(model)` says in one line which
path runs and why.

The harness reaches the fast path only through `stage_vjps`, a drop-in for the `StageVJPs(...)`
constructor with the same arguments: the forward right-hand side (`_state_layout.forward_rhs`) and
the adjoint systems (`sensitivity._adjoint_systems`) build their per-stage VJP records with it. Any
redesigned solver or adjoint that records stages through `StageVJPs` gets the fast path by calling
`stage_vjps` instead; nothing else is needed. `harness doctor` prints `status()`.

The whole adaptive loop of a gradient is compiled too (`_adaptive_loop.py`): the
forward solve over the observation times and the backward solve of BacksolveAdjoint,
InterpolatingAdjoint, QuadratureAdjoint or GaussAdjoint (the last two: a alone, with their
Gauss-Legendre sums on every accepted step), with DP5, BS3 or any `ExplicitRungeKutta`, taking the
numpy loop's steps, at every batch size (wide products go to BLAS). RecursiveCheckpointAdjoint
(discretise-then-optimise) has its compiled path too (`_reverse_sweep.py`): the same forward pass
keeping each step's size, then the reverse sweep through those steps, stored or binomially
checkpointed (`checkpoints=c`), with DP5 or BS3 (DP8 stays numpy). The step rules (initial step,
controller, budget, revolve schedule) are not copied here: the loop compiles the numpy loop's own
(`harness.solvers._step_rules`, through `_rules.py`).

This package sits below the engines: its kernels and their drivers (`_solves.py`) take arrays and
return arrays, and it imports nothing from `sensitivity`, `problems` or `compare`
(tests/test_import_graph.py). The engines' glue, `harness.sensitivity._compiled_loop`, asks
`loop_enabled(model)`, checks the rest of the scope (explicit Runge-Kutta both ways, no
checkpointing, the plain MLP) and calls the solves; where it does not apply the numpy driver runs.

The compiled functions are built ahead of time into one extension module (`_ahead_of_time.py`),
cached on disk and loaded without numba: the first process builds it (a one-line note on stderr says
so), later processes import it; it is keyed on the kernel files, so editing one rebuilds it. Where
the build fails, or with ``HARNESS_AHEAD_OF_TIME=0``, numba's just-in-time functions run, cached by
numba (``__pycache__`` beside this package, or ``NUMBA_CACHE_DIR``). For whoever edits these files and
runs the just-in-time functions: numba keys each cache entry on its own source file's timestamp only,
and a caller's entry embeds the callees it was compiled with, so after editing any kernel file
(`_activations.py`, `_stage_kernels.py`, `_unit_stage.py`, `_borrowed.py`, `_adaptive_loop.py`,
`_reverse_sweep.py`, `_rules.py`, or the rules in `harness/solvers/_step_rules.py`) delete
``__pycache__/*.nbi`` and ``*.nbc`` here, or the callers' cached functions keep running the old code
(an installed release is not affected: installing rewrites every file).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time

import numpy as np

from .._stage_vjps import StageVJPs, stage_vjps_for
from ..models.mlp import MLP

ENV_VARIABLE = "HARNESS_COMPILED"
# 0 runs numba's just-in-time functions rather than the module built ahead of time (`_ahead_of_time.py`)
AHEAD_OF_TIME_VARIABLE = "HARNESS_AHEAD_OF_TIME"
# In the default (automatic) mode the kernel is used for networks whose widest hidden layer has at
# most this many units. Measured per stage on a 2-core AMD EPYC with AVX-512 (where numpy's own tanh
# is vectorised and its products go to BLAS): the kernel is faster up to width 8, about even at 16
# and slower from 32 on (2-64-2 at B = 500: 106 µs against numpy's 95 µs; 8-128-128-8: several times
# slower), because its hand-written products do not match BLAS on wide layers.
AUTO_MAX_WIDTH = 8

# the activations the kernels implement (`_stage_kernels.ACTIVATION_CODES`, kept equal by a test);
# other models (the linear `identity` of the closed-form tests) run the numpy reference
COMPILED_ACTIVATIONS = ("tanh", "sigmoid", "softplus")

_OFF = ("0", "false", "no", "off")  # what the environment variables above take for "off"

_state = {"enabled": None, "loaded": None, "kernels": None, "loop_runs": 0}


def _mode() -> tuple[str, str]:
    """("off" | "on" | "auto", why) from `set_enabled` first, then the environment variable."""
    if _state["enabled"] is not None:
        return ("on" if _state["enabled"] else "off"), f"harness._compiled.set_enabled({_state['enabled']})"
    value = os.environ.get(ENV_VARIABLE, "").strip().lower()
    if value in _OFF:
        return "off", f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]}"
    if value in ("1", "true", "yes", "on"):
        return "on", f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]}"
    return "auto", "the default"


def available() -> bool:
    """True if numba is installed (the fast path can run)."""
    return importlib.util.find_spec("numba") is not None


def set_enabled(enabled: bool | None) -> None:
    """Force the fast path on (True: for every network) or off (False) in this process; None goes back
    to the default, ``HARNESS_COMPILED`` (0 off, 1 on) or else automatic (see `AUTO_MAX_WIDTH`)."""
    _state["enabled"] = None if enabled is None else bool(enabled)


@contextlib.contextmanager
def numpy_reference():
    """Run the numpy reference path inside the block (`set_enabled(False)`), then restore the mode."""
    previous = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = previous


def enabled(model=None) -> bool:
    """Whether `stage_vjps` returns the compiled implementation (for `model`, if given) now."""
    return _decide(model)[0]


def _refusal(model=None) -> str | None:
    """Why no compiled code can serve `model` (if given) whatever the mode, or None: what the stage
    kernels and the whole loop both need."""
    if not available():
        return "numba is not installed (pip install numba)"
    if model is not None and type(model) is not MLP:
        return f"{_describe(model)} is not the plain MLP: numpy engines, driven by the model's own vjp"
    if model is not None and model.activation not in COMPILED_ACTIVATIONS:
        return f"no compiled kernel for the {model.activation!r} activation"
    if model is not None and not model.autonomous:
        # the kernels' first layer reads z only, and CompiledStageVJPs has no `set_time`: t as an
        # input would be dropped, so a time-dependent field (forced on or not) runs numpy
        return "a time-dependent field (t as an input), which the kernels do not take"
    return None


def _describe(model) -> str:
    try:
        return model.describe()
    except Exception:  # a user's describe that fails must not hide which path runs
        return type(model).__name__


def _forced_or_refused(model=None) -> tuple[bool, str] | None:
    """The decision where the mode (``HARNESS_COMPILED``, `set_enabled`) or the model settles it for
    both compiled paths, with its reason; None where each path's own automatic rule decides."""
    mode, why = _mode()
    if mode == "off":
        return False, f"turned off by {why}"
    refusal = _refusal(model)
    if refusal is not None:
        return False, refusal
    if mode == "on":
        return True, f"forced by {why}"
    return None


def _decide(model=None) -> tuple[bool, str]:
    decided = _forced_or_refused(model)
    if decided is not None:
        return decided
    if model is not None and max(model.widths[1:-1]) > AUTO_MAX_WIDTH:
        return False, (
            f"hidden width {max(model.widths[1:-1])} > {AUTO_MAX_WIDTH}, where numpy's BLAS products are "
            f"faster; {ENV_VARIABLE}=1 forces the kernel"
        )
    return True, f"numba is installed; used for hidden widths <= {AUTO_MAX_WIDTH}"


def status(model=None, batch: int | None = None) -> str:
    """One line: which path runs (for `model` and `batch`, if given) and why, e.g. 'compiled (numba
    0.68.1): whole adaptive loop (explicit RK; Backsolve, Interpolating, Quadrature, Gauss and
    RecursiveCheckpoint adjoints): used at every size; stage kernels for the numpy driver (implicit
    solvers, DP8, other engines): used for hidden widths <= 8; HARNESS_COMPILED=0 selects numpy'."""
    on, why = _decide(model)
    loop_on, loop_why = _decide_loop(model)
    if not (on or loop_on):
        return f"numpy: {why}"
    import importlib.metadata

    loop = ("whole adaptive loop (explicit RK; Backsolve, Interpolating, Quadrature, Gauss and "
            f"RecursiveCheckpoint adjoints): {loop_why}")
    return (f"compiled (numba {importlib.metadata.version('numba')}, {_kernels_origin()}): {loop}; stage kernels "
            f"for the numpy driver (implicit solvers, DP8, other engines): {why}; {ENV_VARIABLE}=0 selects numpy; "
            "models other than the MLP (harness.models) run the numpy engines")


def _kernels_origin() -> str:
    """Where the compiled functions come (or will come) from, without loading them."""
    if _state.get("kernels_source"):
        return _state["kernels_source"]
    if not _ahead_of_time_wanted():
        return f"numba's just-in-time functions ({AHEAD_OF_TIME_VARIABLE}=0)"
    from ._ahead_of_time import module_path

    path = module_path()
    if path.is_file():
        return f"built ahead of time, loaded without numba from {path}"
    return f"to be built ahead of time on first use (once, 1-4 minutes) into {path.parent}"


def _ahead_of_time_wanted() -> bool:
    return os.environ.get(AHEAD_OF_TIME_VARIABLE, "").strip().lower() not in _OFF


def _load():
    """The compiled `StageVJPs` class, with the kernels made ready (`_load_kernels`)."""
    if _state["loaded"] is None:
        _load_kernels()
        from ._compiled_stage_vjps import CompiledStageVJPs

        _state["loaded"] = CompiledStageVJPs
    return _state["loaded"]


def _load_kernels() -> None:
    """Make the compiled functions ready: the module built ahead of time (`_ahead_of_time.py`; built
    first, once, if it is not on disk), or where it cannot be built (or with ``HARNESS_AHEAD_OF_TIME=0``)
    numba's just-in-time functions, compiled or loaded from numba's cache. A build or a compilation
    says so on stderr first."""
    if _state["kernels"] is not None:
        return
    started = time.perf_counter()
    module, why = None, f"{AHEAD_OF_TIME_VARIABLE}=0"
    if _ahead_of_time_wanted():
        from ._ahead_of_time import load_or_build

        def say_build():
            print("harness: building the compiled kernels ahead of time (once, 1-4 minutes; cached on disk) ...",
                  file=sys.stderr, flush=True)

        module, why = load_or_build(say_build)
        if module is None:
            print(f"harness: {why}; using numba's just-in-time functions", file=sys.stderr, flush=True)
    if module is not None:
        _state["kernels"] = module
    else:
        from ._warmup import just_in_time_kernels, warm_up

        def say_compile():
            print("harness: compiling the numba kernels (once, 1-4 minutes; cached on disk) ...",
                  file=sys.stderr, flush=True)

        _state["kernels"] = just_in_time_kernels()
        warm_up(say_compile)
        why = f"numba's just-in-time functions ({why})"
    _state["kernels_source"] = why
    _state["compile_seconds"] = time.perf_counter() - started


def kernels():
    """The compiled functions, as attributes of one object: the whole loop's `forward_pass`,
    `backward_pass` and `reverse_sweep`, and the stage kernel `mlp_stage`; made ready on the first call
    (`_load_kernels`)."""
    _load_kernels()
    return _state["kernels"]


def kernels_source() -> str | None:
    """Where this process's compiled functions came from (None before their first use), e.g. 'built
    ahead of time (<key>)' or "numba's just-in-time functions (HARNESS_AHEAD_OF_TIME=0)"."""
    return _state.get("kernels_source")


def _decide_loop(model=None) -> tuple[bool, str]:
    """(use the compiled whole loop for this model, why). In the automatic mode it runs at every size:
    with wide products handed to BLAS it was the faster path at every problem measured (README: 2-3-2
    from B = 1 to 50 000, 2-64-2, 2-32-32-2, 8-128-128-8), which the numpy loop with its per-call
    overhead was not."""
    decided = _forced_or_refused(model)
    if decided is not None:
        return decided
    return True, "used at every size"


def loop_enabled(model) -> bool:
    """Whether the compiled whole loop may compute a gradient for `model` now (the gradients of
    `harness.sensitivity._compiled_loop` ask, then check the rest of their scope)."""
    return _decide_loop(model)[0]


def count_loop_run() -> None:
    """Count one gradient computed by the compiled whole loop (`loop_runs`)."""
    _state["loop_runs"] += 1


def loop_runs() -> int:
    """How many gradients this process computed with the compiled whole loop (for tests and benchmarks)."""
    return _state["loop_runs"]


def stage_vjps(model, theta: np.ndarray, batch: int, n_slots: int, cotangent_sign: float = 1.0) -> StageVJPs:
    """A `StageVJPs` for these arguments: the compiled one when the fast path is on, else the numpy one
    (the MLP's fused form, or the generic form of any other model: `_stage_vjps.stage_vjps_for`)."""
    if enabled(model):
        return _load()(model, theta, batch, n_slots, cotangent_sign, stage=kernels().mlp_stage)
    return stage_vjps_for(model, theta, batch, n_slots, cotangent_sign)
