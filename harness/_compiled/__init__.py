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
forward solve to the last observation time (the others read from its steps' dense output, as the numpy
`harness._forward.solve_forward` reads them for explicit solvers) and the backward solve of BacksolveAdjoint,
InterpolatingAdjoint, QuadratureAdjoint or GaussAdjoint (the last two: a alone, with their
Gauss-Legendre sums on every accepted step), with DP5, BS3 or any `ExplicitRungeKutta`, taking the
numpy loop's steps, at every batch size (wide products go to BLAS). RecursiveCheckpointAdjoint
(discretise-then-optimise) has its compiled path too (`_reverse_sweep.py`): the same forward pass
keeping each step's size, then the reverse sweep through those steps (each observation's cotangent
entering the step whose dense output produced it), stored or binomially checkpointed (`checkpoints=c`),
with DP5 or BS3 (DP8 stays numpy). The step rules (initial step,
controller, budget, revolve schedule) are not copied here: the loop compiles the numpy loop's own
(`harness.solvers._step_rules`, through `_rules.py`).

This package sits below the engines: its kernels and their drivers (`_solves.py`) take arrays and
return arrays, and it imports nothing from `sensitivity`, `problems` or `compare`
(tests/test_import_graph.py). The engines' glue, `harness.sensitivity._compiled_loop`, asks
`loop_enabled(model)`, checks the rest of the scope (explicit Runge-Kutta both ways, no
checkpointing, the plain MLP) and calls the solves; where it does not apply the numpy driver runs.

The compiled functions are built ahead of time into one extension module (`_ahead_of_time.py`),
cached on disk and loaded without numba. No run waits for that build: a process that finds no usable
build starts one in the background (one per key, at the lowest priority, `_module_cache.py`) and runs
the numpy path itself, saying so in one line; later runs use what it built. ``HARNESS_BUILD=wait``
waits for it instead (the test suite does), ``HARNESS_BUILD=never`` never starts one. Where numba.pycc
is missing or its build fails, or with ``HARNESS_AHEAD_OF_TIME=0``, the builder fills numba's own
cache (``cache=True``; ``__pycache__`` beside this package, or ``NUMBA_CACHE_DIR``) and runs use
numba's just-in-time functions from it. For whoever edits these files and
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
import threading
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
_ON = ("1", "true", "yes", "on")
_AUTO = ("", "auto")

# kernels: the compiled functions once ready; not_ready: why this process runs numpy instead (decided
# once per process, see `_ready`)
_state = {"enabled": None, "loaded": None, "kernels": None, "loop_runs": 0, "not_ready": None}
_thread = threading.local()  # numpy_reference: whether this thread is inside one


def _switch(variable: str, allowed: tuple[str, ...]) -> str:
    """The lower-cased value of an on/off environment variable, refused in one line if not understood."""
    value = os.environ.get(variable, "").strip().lower()
    if value not in allowed:
        from ..errors import HarnessInputError

        raise HarnessInputError(f"{variable}={os.environ[variable]!r} is not understood: use 1 (on), 0 (off)"
                                + (" or leave it unset (automatic)" if "auto" in allowed else ""))
    return value


def _mode() -> tuple[str, str]:
    """("off" | "on" | "auto", why) from `numpy_reference` (this thread's), then `set_enabled`, then the
    environment variable."""
    if getattr(_thread, "numpy_reference", False):
        return "off", "harness._compiled.numpy_reference()"
    if _state["enabled"] is not None:
        return ("on" if _state["enabled"] else "off"), f"harness._compiled.set_enabled({_state['enabled']})"
    value = _switch(ENV_VARIABLE, _OFF + _ON + _AUTO)
    if value in _OFF:
        return "off", f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]}"
    if value in _ON:
        return "on", f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]}"
    return "auto", "the default"


def available() -> bool:
    """True if numba is installed (the fast path can run). Looked up once per process: every gradient
    asks, and the lookup costs about 170 µs (0.5 s of CPU over a 1000-step `harness reproduce`)."""
    if _state.get("numba_installed") is None:
        _state["numba_installed"] = importlib.util.find_spec("numba") is not None
    return _state["numba_installed"]


def set_enabled(enabled: bool | None) -> None:
    """Force the fast path on (True: for every network) or off (False) in this process; None goes back
    to the default, ``HARNESS_COMPILED`` (0 off, 1 on) or else automatic (see `AUTO_MAX_WIDTH`)."""
    _state["enabled"] = None if enabled is None else bool(enabled)


@contextlib.contextmanager
def numpy_reference():
    """Run the numpy reference path inside the block, in this thread only; blocks nest.

    Thread-local, unlike `set_enabled`: cells of a comparison run on threads, and each makes its
    problem's data inside this block (`harness.problems.solve_ground_truth`). A process-wide switch
    saved and restored by overlapping blocks in two threads was left off for good by whichever
    restored last, and every later gradient of the process ran numpy."""
    previous = getattr(_thread, "numpy_reference", False)
    _thread.numpy_reference = True
    try:
        yield
    finally:
        _thread.numpy_reference = previous


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


def _decide(model=None, look_only: bool = False) -> tuple[bool, str]:
    decided = _forced_or_refused(model)
    if decided is not None:
        return decided
    if model is not None and max(model.widths[1:-1]) > AUTO_MAX_WIDTH:
        return False, (
            f"hidden width {max(model.widths[1:-1])} > {AUTO_MAX_WIDTH}, where numpy's BLAS products are "
            f"faster; {ENV_VARIABLE}=1 forces the kernel"
        )
    if not look_only:
        ready, why = _ready()
        if not ready:
            return False, why
    return True, f"numba is installed; used for hidden widths <= {AUTO_MAX_WIDTH}"


def status(model=None, batch: int | None = None) -> str:
    """One line: which path runs (for `model` and `batch`, if given) and why, e.g. 'compiled (numba
    0.68.1): whole adaptive loop (explicit RK; Backsolve, Interpolating, Quadrature, Gauss and
    RecursiveCheckpoint adjoints): used at every size; stage kernels for the numpy driver (implicit
    solvers, DP8, other engines): used for hidden widths <= 8; HARNESS_COMPILED=0 selects numpy'."""
    on, why = _decide(model, look_only=True)
    loop_on, loop_why = _decide_loop(model, look_only=True)
    if not (on or loop_on):
        return f"numpy: {why}"
    if _state["not_ready"]:
        return f"numpy in this process: {_state['not_ready']}"
    import importlib.metadata

    loop = ("whole adaptive loop (explicit RK; Backsolve, Interpolating, Quadrature, Gauss and "
            f"RecursiveCheckpoint adjoints): {loop_why}")
    ready, origin = _kernels_origin()
    compiled_line = (f"{loop}; stage kernels for the numpy driver (implicit solvers, DP8, other engines): {why}; "
                     f"{ENV_VARIABLE}=0 selects numpy; models other than the MLP (harness.models) run the numpy "
                     "engines")
    if not ready and _mode()[0] != "on":  # forced on, a run waits for the build instead
        return f"numpy for now ({origin}); then compiled (numba {importlib.metadata.version('numba')}): {compiled_line}"
    return f"compiled (numba {importlib.metadata.version('numba')}, {origin}): {compiled_line}"


def _kernels_origin() -> tuple[bool, str]:
    """(this process can use them now, where the compiled functions come or will come from), without
    loading or building anything."""
    if _state.get("kernels_source"):
        return True, _state["kernels_source"]
    from ._module_cache import build_mode, state

    build_mode()  # refuses a value it does not understand
    ready, origin = state()
    if not _ahead_of_time_wanted():
        origin += f" ({AHEAD_OF_TIME_VARIABLE}=0: numba's just-in-time functions from numba's cache are used)"
    return ready, origin


def _ahead_of_time_wanted() -> bool:
    return _switch(AHEAD_OF_TIME_VARIABLE, _OFF + _ON + ("",)) not in _OFF


def _load():
    """The compiled `StageVJPs` class, with the kernels made ready (`_load_kernels`)."""
    if _state["loaded"] is None:
        _load_kernels()
        from ._compiled_stage_vjps import CompiledStageVJPs

        _state["loaded"] = CompiledStageVJPs
    return _state["loaded"]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _find_kernels():
    """(compiled functions or None, where they come from or why there are none, the cache entry or
    None, whether a failed build is on record): without building or waiting. A damaged cached module is
    removed here (`_module_cache.load_module`), never loaded."""
    from ._module_cache import Entry, cache_directory, jit_ready, load_module

    directory, note = cache_directory()
    if note and not _state.get("said_directory"):
        _state["said_directory"] = True
        _say(f"harness: compiled-code cache: {note}")
    if directory is None:
        return None, f"no writable cache directory for the compiled code ({note})", None, False
    entry = Entry(directory)
    if _ahead_of_time_wanted():
        module, why = load_module(entry)
        if module is not None:
            return module, f"built ahead of time ({entry.key})", entry, False
    else:
        why = f"{AHEAD_OF_TIME_VARIABLE}=0"
    if entry.jit.exists():
        functions, jit_why = jit_ready(entry)
        if functions is not None:
            return functions, f"numba's just-in-time functions from numba's cache ({jit_why or why})", entry, False
        if entry.builder() is None:
            entry.jit.unlink(missing_ok=True)  # its cache entries are gone: build again
    failed = entry.remembered_failure()
    if failed is not None:
        return (None, f"the compiled build failed ({failed.get('reason')}); `harness doctor --rebuild` retries",
                entry, True)
    return None, why, entry, False


def _ready() -> tuple[bool, str]:
    """(the compiled functions can run in this process without waiting for a build, why not), decided
    once per process. Where they cannot, a build is started in the background (unless one runs, one
    failed, or ``HARNESS_BUILD`` says otherwise) and one line on stderr says that this run uses numpy."""
    if _state["kernels"] is not None:
        return True, ""
    if _state["not_ready"] is None:
        from ._module_cache import build_mode, start_build

        try:
            if build_mode() == "wait":
                _load_kernels()
                return True, ""
            kernels, why, entry, failed = _find_kernels()
        except Exception as err:  # noqa: BLE001 (the cache cannot take a run down: numpy runs)
            from ..errors import HarnessInputError

            if isinstance(err, HarnessInputError):
                raise
            why = f"the compiled code cannot be loaded ({type(err).__name__}: {err})"
            kernels, entry, failed = None, None, True
        if kernels is not None:
            _state["kernels"], _state["kernels_source"] = kernels, why
            if (_ahead_of_time_wanted() and entry is not None and not entry.module.exists()
                    and (entry.read(entry.jit) or {}).get("why") == f"{AHEAD_OF_TIME_VARIABLE}=0"
                    and build_mode() == "background"):
                # numba's cache was filled with the module turned off; now it is wanted: build it too
                pid, _ = start_build(entry, background=True)
                if pid is not None:
                    _say(f"harness: building the compiled module in the background (process {pid}, log: "
                         f"{entry.log}); this run uses numba's just-in-time functions")
            return True, ""
        if entry is None or failed:
            reason = why
        elif build_mode() == "never":
            reason = "the compiled code is not built and HARNESS_BUILD=never"
        else:
            pid, not_started = start_build(entry, background=True)
            running = entry.builder() if pid is None else {"pid": pid}
            if pid is not None:
                reason = (f"the compiled code is being built in the background (process {pid}, lowest priority, "
                          f"log: {entry.log}); this run uses numpy, later runs the compiled code")
            elif running is not None:
                reason = (f"the compiled code is being built by process {running.get('pid')} (log: {entry.log}); "
                          "this run uses numpy")
            else:
                reason = f"the compiled code cannot be built ({not_started})"
        _state["not_ready"] = reason
        _say(f"harness: {reason}")
    return False, _state["not_ready"]


def _load_kernels() -> None:
    """Make the compiled functions ready, waiting for a build if there is none (unlike `_ready`): the
    module built ahead of time, or numba's just-in-time functions from numba's cache; where no build
    can provide them, numba's just-in-time functions compiled in this process. Each wait says so on
    stderr first."""
    if _state["kernels"] is not None:
        return
    from ._module_cache import start_build, wait_for_builder

    started = time.perf_counter()
    kernels, why, entry, failed = _find_kernels()
    if kernels is None and entry is not None and not failed:
        wait_for_builder(entry, _say)  # a build under way (maybe another process's): wait for it
        kernels, why, entry, failed = _find_kernels()
        if kernels is None and not failed:
            pid, _ = start_build(entry, background=False)
            if pid is not None:
                _say(f"harness: building the compiled code (once per version and machine; up to a few minutes of "
                     f"CPU; log: {entry.log}) ...")
            wait_for_builder(entry, _say if pid is None else (lambda line: None))  # said above if ours
            kernels, why, entry, failed = _find_kernels()
    if kernels is None:
        from ._warmup import just_in_time_kernels, warm_up

        _say(f"harness: {why}; using numba's just-in-time functions")
        _state["kernels"] = just_in_time_kernels()
        warm_up(lambda: _say("harness: compiling the numba kernels in this process (a minute or more of CPU) ..."))
        why = f"numba's just-in-time functions ({why})"
    else:
        _state["kernels"] = kernels
    _state["kernels_source"] = why
    _state["not_ready"] = None
    _state["compile_seconds"] = time.perf_counter() - started


def build_now() -> str:
    """Start the compiled code's build now, at normal priority and without waiting for this process
    to end, unless the compiled code is usable, being built, failed to build, turned off
    (``HARNESS_COMPILED=0``) or numba is missing; return one line saying which. Nothing waits for it
    here: for whoever will want the compiled code soon and has other work to do meanwhile (`.ci/run`
    while it installs the test extras; the test suite at its start, which runs the tests that do not
    need it first: tests/conftest.py). Later processes wait for this builder or adopt what it built."""
    from ._module_cache import Entry, cache_directory, start_build, state

    if _mode()[0] == "off" or not available():
        return f"no build: {_decide()[1]}"
    directory, note = cache_directory()
    if directory is None:
        return f"no build: no writable cache directory for the compiled code ({note})"
    entry = Entry(directory)
    ready, clause = state(entry)
    if ready or entry.builder() is not None or entry.remembered_failure() is not None:
        return f"no build started: {clause}"
    pid, why_not = start_build(entry, background=False)
    if pid is None:
        return f"no build started: {why_not}"
    return f"building the compiled code (process {pid}, log: {entry.log})"


def rebuild() -> str:
    """Forget this code's cached build (module, records, a remembered failure), build it again in the
    foreground (saying so) and return the new status line: ``harness doctor --rebuild``."""
    from ._module_cache import Entry, cache_directory, forget, wait_for_builder

    directory, note = cache_directory()
    if directory is None:
        return f"no writable cache directory for the compiled code ({note})"
    entry = Entry(directory)
    wait_for_builder(entry, _say)
    forget(entry)
    _state["kernels"] = _state["kernels_source"] = _state["not_ready"] = None
    _load_kernels()
    return status()


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


def _decide_loop(model=None, look_only: bool = False) -> tuple[bool, str]:
    """(use the compiled whole loop for this model, why). In the automatic mode it runs at every size:
    with wide products handed to BLAS it was the faster path at every problem measured (2-3-2 from
    B = 1 to 50 000, 2-64-2, 2-32-32-2, 8-128-128-8), which the numpy loop with its per-call overhead
    was not. `look_only`: decide without starting a build or loading anything (for `status`)."""
    decided = _forced_or_refused(model)
    if decided is not None:
        return decided
    if not look_only:
        ready, why = _ready()
        if not ready:
            return False, why
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
