"""The compiled fast path: numba kernels for the MLP's Runge-Kutta stages, used where numba is installed.

The numpy code (`harness._stage_vjps.StageVJPs`) stays the reference; `stage_vjps` below returns the
compiled `CompiledStageVJPs` instead when the fast path is on. It is on when numba imports, unless
the environment variable ``HARNESS_COMPILED=0`` or ``set_enabled(False)`` turns it off. `status()`
says in one line which path runs and why.

The harness reaches the fast path only through `stage_vjps`, a drop-in for the `StageVJPs(...)`
constructor with the same arguments: the forward right-hand side (`_state_layout.forward_rhs`) and
the adjoint systems (`sensitivity._adjoint_systems`) build their per-stage VJP records with it. Any
redesigned solver or adjoint that records stages through `StageVJPs` gets the fast path by calling
`stage_vjps` instead; nothing else is needed. A `harness doctor` command would print `status()`.

Compiled kernels are cached on disk (numba's `cache=True`, in ``__pycache__`` beside this package, or
``NUMBA_CACHE_DIR``): the first process compiles them once (a one-line note on stderr says so), later
processes load them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import numpy as np

from .._stage_vjps import StageVJPs

ENV_VARIABLE = "HARNESS_COMPILED"

_state = {"enabled": None, "loaded": None, "reason": ""}


def _wanted_by_environment() -> tuple[bool, str]:
    value = os.environ.get(ENV_VARIABLE, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False, f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]}"
    return True, ""


def available() -> bool:
    """True if numba is installed (the fast path can run)."""
    return importlib.util.find_spec("numba") is not None


def set_enabled(enabled: bool | None) -> None:
    """Turn the fast path on or off for this process; None goes back to the default (environment)."""
    _state["enabled"] = None if enabled is None else bool(enabled)


def enabled() -> bool:
    """Whether `stage_vjps` returns the compiled implementation now."""
    return _decide()[0]


def _decide() -> tuple[bool, str]:
    if _state["enabled"] is False:
        return False, "turned off by harness._compiled.set_enabled(False)"
    if _state["enabled"] is None:
        wanted, why = _wanted_by_environment()
        if not wanted:
            return False, f"turned off by {why}"
    if not available():
        return False, "numba is not installed (pip install numba)"
    return True, "numba is installed"


def status() -> str:
    """One line: which path runs and why, e.g. 'compiled (numba 0.68.1): numba is installed'."""
    on, why = _decide()
    if on:
        import numba

        return f"compiled (numba {numba.__version__}): {why}; {ENV_VARIABLE}=0 selects numpy"
    return f"numpy: {why}"


def _load():
    """Import the kernels, saying on stderr when they are compiled rather than loaded from the cache."""
    if _state["loaded"] is None:
        from ._stage_vjps import CompiledStageVJPs
        from ._warmup import warm_up

        started = time.perf_counter()
        compiled = warm_up(
            lambda: print("harness: compiling the numba kernels (once; cached on disk) ...", file=sys.stderr, flush=True)
        )
        _state["loaded"] = CompiledStageVJPs
        _state["compile_seconds"] = time.perf_counter() - started
        _state["compiled_now"] = compiled
    return _state["loaded"]


def load_seconds() -> float | None:
    """Seconds this process spent compiling or loading the kernels (None before the first use)."""
    return _state.get("compile_seconds")


def stage_vjps(model, theta: np.ndarray, batch: int, n_slots: int, cotangent_sign: float = 1.0) -> StageVJPs:
    """A `StageVJPs` for these arguments: the compiled one when the fast path is on, else the numpy one."""
    if enabled():
        return _load()(model, theta, batch, n_slots, cotangent_sign)
    return StageVJPs(model, theta, batch, n_slots, cotangent_sign)
