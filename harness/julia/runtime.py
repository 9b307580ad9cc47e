"""The one place that imports juliacall: start Julia and load HarnessJL.jl, once per process.

Nothing imports this module at `import harness` time; engines call `load()` inside `compute`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import BackendUnavailableError
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
