"""The one place that imports juliacall: start Julia and load HarnessJL.jl, once per process.

Nothing imports this module at `import harness` time; engines call `load()` inside `compute`.
"""

from __future__ import annotations

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
            return _module
        status = julia_status()
        if not status.available:
            raise BackendUnavailableError(f"the Julia backend is unavailable: {status.reason}")
        try:
            import juliacall  # noqa: PLC0415  (deliberately lazy: the import starts Julia)
        except Exception as error:  # juliacall raises plain Exceptions from its init
            raise BackendUnavailableError(f"juliacall could not start Julia: {error}") from error
        # A private namespace (not Main), into which the file defines `module HarnessJL`;
        # Base.include returns the file's last value, that module.
        namespace = juliacall.newmodule("HarnessJulia")
        _module = juliacall.Base.include(namespace, str(GLUE))
        return _module


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
