"""From an `EngineSpec` to an engine value that `harness.gradient` can run, or the reason it cannot.

The engine itself comes from the one resolver, `harness.sensitivity.resolve_engine` (harness's own
engines, users' registered ones, and "backend:Name" for Julia and the peers); this module adds what a
comparison cell needs beyond it: an engine registered where the spec was read but not in this worker
is a failure, an engine unavailable here raises `BackendUnavailableError` (the comparison shows a row
marked unavailable), and our BacksolveAdjoint reports an unstable backward solve rather than failing.
"""

from __future__ import annotations

from .._backends import backend_versions
from ..errors import BackendUnavailableError
from ..sensitivity import ENGINES, declaration_of, resolve_engine
from .spec import EngineSpec


def build_engine(spec: EngineSpec, solver: str, rtol: float, atol: float):
    """The engine value for one cell: `spec` with the cell's backward solver and tolerances.

    Harness adjoints take the solver and tolerances of their backward pass; references and external
    engines take the forward settings that `gradient` passes them. Our BacksolveAdjoint defaults to
    `on_unstable="warn"` here, so that an unstable backward solve is reported as a flagged number
    rather than lost; a hard failure of the backward solve still raises and the cell records it.
    """
    options = dict(spec.options)
    if spec.backend == "harness":  # an engine registered by name (harness's own, or a user's)
        if spec.name not in ENGINES:
            # a failure, not an absence: e.g. a user's engine registered where the spec was read
            # but not in this worker process
            raise KeyError(f"no engine is registered as {spec.name!r} in this process")
        cls = ENGINES[spec.name]
        available, reason = declaration_of(cls).availability()
        if not available:
            raise BackendUnavailableError(f"{spec.name} is unavailable: {reason}")
        if "on_unstable" in getattr(cls, "__dataclass_fields__", {}):
            options.setdefault("on_unstable", "warn")
        return resolve_engine(spec.name, solver=solver, rtol=rtol, atol=atol, options=options)
    return resolve_engine(f"{spec.backend}:{spec.name}", solver=solver, rtol=rtol, atol=atol, options=options)


__all__ = ["backend_versions", "build_engine"]
