"""The one place that imports juliacall: start Julia and load HarnessJL.jl, once per process.

Importing it imports nothing of Julia's; engines call `load()` inside `compute`, and the torchdiffeq
adapter calls `start_before_torch()` before importing torch.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import (
    BackendError,
    BackendUnavailableError,
    HarnessInputError,
    SolverError,
    UnstableBacksolveError,
)
from .environment import julia_status

GLUE = Path(__file__).resolve().parent / "HarnessJL.jl"

_lock = threading.RLock()
_module = None
# Why Julia could not start in this process (None: no failed attempt). Never retried: juliacall
# initialises the Julia runtime once per process, and a second initialisation after a half-done one
# is unsafe; retrying would also pay the failed start again on every gradcheck row.
_failure: str | None = None


def start_failure() -> str | None:
    """The one-line reason Julia failed to start earlier in this process, or None."""
    return _failure


def _failed_earlier() -> BackendUnavailableError:
    return BackendUnavailableError(f"Julia failed to start earlier in this process (not retried; restart "
                                   f"Python once it is fixed): {_failure}")


def load():
    """The HarnessJL Julia module (a juliacall ModuleValue); raises BackendUnavailableError.

    The status check runs first so that a machine without Julia gets a one-line reason instead
    of juliacall's attempt to download Julia. A failed start (juliacall's import, or loading
    HarnessJL.jl) is remembered: later calls raise at once with the same reason.
    """
    global _module, _failure
    with _lock:
        if _module is not None:
            check_thread()
            return _module
        if _failure is not None:
            raise _failed_earlier()
        status = julia_status()
        if not status.available:
            raise BackendUnavailableError(f"the Julia backend is unavailable: {status.reason}")
        check_thread()  # after the status check: sets nothing where Julia cannot start anyway
        juliacall = _import_juliacall()
        try:
            # A private namespace (not Main), into which the file defines `module HarnessJL`;
            # Base.include returns the file's last value, that module.
            namespace = juliacall.newmodule("HarnessJulia")
            _module = juliacall.Base.include(namespace, str(GLUE))
        except BaseException as error:  # KeyboardInterrupt too: a half-loaded module is not retried
            _failure = f"loading {GLUE.name} failed: {one_line(error)}"
            if not isinstance(error, Exception):
                raise
            raise BackendUnavailableError(_failure) from error
        return _module


start = load  # the public name: `harness.julia.start()` starts Julia now (e.g. before importing torch)


def _import_juliacall():
    """`import juliacall` (which starts Julia) once per process, in the safe order with torch."""
    global _failure
    if "juliacall" in sys.modules:
        return sys.modules["juliacall"]
    if _failure is not None:
        raise _failed_earlier()
    check_import_order()
    try:
        import juliacall  # noqa: PLC0415  (deliberately lazy: the import starts Julia)
    except BaseException as error:  # juliacall raises plain Exceptions from its init; Ctrl-C too
        _failure = f"juliacall could not start Julia: {one_line(error)}"
        if not isinstance(error, Exception):
            raise
        raise BackendUnavailableError(_failure) from error
    return juliacall


def check_import_order(modules=sys.modules) -> None:
    """Refuse to start Julia in a process that imported torch first.

    juliacall warns that "torch was imported before juliacall. This may cause a segfault" and asks
    for juliacall first (PythonCall.jl 0.9.34 pysrc/juliacall/__init__.py L59-65, pytorch#78829): a
    crash would take every row of a long run with it, so the Julia rows are kept apart instead. The
    torchdiffeq adapter starts Julia before it imports torch wherever the Julia backend is
    available (`start_before_torch`), so harness's own imports always come in the safe order.
    """
    if "torch" in modules and "juliacall" not in modules:
        raise BackendUnavailableError(
            "torch was imported before Julia started in this process, which can crash it (juliacall's "
            "warning, pytorch#78829): call harness.julia.start() before importing torch, or run the "
            "Julia rows in a separate process"
        )


def start_before_torch(modules=sys.modules) -> None:
    """Start Julia now if this process may use it and is about to import torch (the peers' adapter
    calls this first). A no-op where the Julia backend is unavailable, already started or already
    failed, or torch is already imported; a failure here is remembered and reported by the Julia
    engines, never raised to the torch caller."""
    if "torch" in modules or "juliacall" in modules or _failure is not None:
        return
    with _lock:
        if not julia_status().available:
            return
        try:
            check_thread()
            _import_juliacall()
        except BackendUnavailableError:
            return


HANDLE_SIGNALS = "PYTHON_JULIACALL_HANDLE_SIGNALS"


def check_thread(environ=os.environ, modules=sys.modules) -> None:
    """Let Julia run on a thread other than the main one (a Dask worker's) only with its own signal
    handling, or refuse in one line.

    juliacall may be used from any Python thread, but with more than one thread in Julia its GC
    safepoints work by deliberate segfaults, which kill the process unless Julia handles signals;
    PythonCall recommends PYTHON_JULIACALL_HANDLE_SIGNALS=yes, read when juliacall is first imported
    (docs/src/juliacall.md "Multi-threading", PythonCall#219). So: on the main thread nothing to do;
    on another thread before Julia has started, set it (Ctrl-C then no longer raises
    KeyboardInterrupt in this process, which a worker does not need); after Julia has started
    without it, raise BackendUnavailableError.
    """
    if threading.current_thread() is threading.main_thread() or environ.get(HANDLE_SIGNALS) == "yes":
        return
    if "juliacall" not in modules:
        environ[HANDLE_SIGNALS] = "yes"
        return
    raise BackendUnavailableError(
        f"a Julia engine was called from thread {threading.current_thread().name!r}, but Julia was started "
        f"without {HANDLE_SIGNALS}=yes, which Julia needs to run on more than one thread without crashing "
        f"the process: set {HANDLE_SIGNALS}=yes before the process starts, or call Julia engines from the "
        "main thread only"
    )


# Errors that already say, in harness's terms, what went wrong; everything else raised while Julia
# runs (juliacall.JuliaError: MethodError, OutOfMemoryError, ...; a Python exception raised in a
# callback) is reported as a BackendError.
_HARNESS_ERRORS = (HarnessInputError, SolverError, UnstableBacksolveError, BackendUnavailableError,
                   BackendError)


def one_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, at most `limit` characters (Julia errors span many lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0] if lines else '(no message)'}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def julia_errors(engine: str):
    """Turn any error raised while Julia computes into one BackendError line naming `engine`.

    juliacall is never imported here (its error class cannot be named without starting Julia), so
    the rule is by exclusion: harness's own errors pass through, KeyboardInterrupt too.
    """
    try:
        yield
    except _HARNESS_ERRORS:
        raise
    except Exception as error:
        raise BackendError(f"{engine}: {one_line(error)}") from error
