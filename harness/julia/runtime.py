"""The one place that imports juliacall: start Julia and load HarnessJL.jl, once per process.

Nothing imports this module at `import harness` time; engines call `load()` inside `compute`.
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

_lock = threading.Lock()
_module = None


def load():
    """The HarnessJL Julia module (a juliacall ModuleValue); raises BackendUnavailableError.

    The status check runs first so that a machine without Julia gets a one-line reason instead
    of juliacall's attempt to download Julia.
    """
    global _module
    with _lock:
        if _module is not None:
            check_thread()
            return _module
        status = julia_status()
        if not status.available:
            raise BackendUnavailableError(f"the Julia backend is unavailable: {status.reason}")
        check_thread()  # after the status check: sets nothing where Julia cannot start anyway
        try:
            import juliacall  # noqa: PLC0415  (deliberately lazy: the import starts Julia)
        except Exception as error:  # juliacall raises plain Exceptions from its init
            raise BackendUnavailableError(f"juliacall could not start Julia: {error}") from error
        # A private namespace (not Main), into which the file defines `module HarnessJL`;
        # Base.include returns the file's last value, that module.
        namespace = juliacall.newmodule("HarnessJulia")
        _module = juliacall.Base.include(namespace, str(GLUE))
        return _module


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
