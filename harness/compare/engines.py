"""From an `EngineSpec` to an engine value that `harness.gradient` can run, or the reason it cannot.

The one place where backends meet: engines registered by name (harness's own and users') are built
from their classes, Julia engines come from `harness.julia.julia_engines()` (imported lazily: Julia
is optional), and the PyTorch/JAX peers from `harness.peers` (also optional). Anything that cannot run here raises
`BackendUnavailableError` with a reason, and the comparison shows a row marked unavailable.
"""

from __future__ import annotations

import dataclasses

from .._interrupts import raise_if_interrupt
from ..errors import BackendUnavailableError
from ..sensitivity import ENGINES, declaration_of
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
        names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        if "solver" in names:
            options.update(solver=solver, rtol=rtol, atol=atol)
        if "on_unstable" in names:
            options.setdefault("on_unstable", "warn")
        return cls(**options)
    if spec.backend == "julia":
        return _julia_engine(spec.name, options, solver, rtol, atol)
    from .. import peers

    return peers.peer_engine(spec.backend, spec.name, solver=solver, rtol=rtol, atol=atol)


def _julia_engine(name: str, options: dict, solver: str, rtol: float, atol: float):
    try:
        from .. import julia
    except ImportError:
        raise BackendUnavailableError("harness.julia not installed") from None
    status = julia.julia_status()
    if not status.available:
        raise BackendUnavailableError(f"Julia unavailable: {status.reason}")
    engines = {engine.name: engine for engine in julia.julia_engines()}
    if name not in engines:
        raise BackendUnavailableError(
            f"harness.julia has no engine {name!r}: it has {sorted(engines)}"
        )
    engine = engines[name]
    if dataclasses.is_dataclass(engine):
        # Same convention as ours: backward settings are fields of the engine value, if it has them.
        names = {f.name for f in dataclasses.fields(engine)}
        settings = {k: v for k, v in dict(solver=solver, rtol=rtol, atol=atol).items() if k in names}
        unknown = sorted(set(options) - names)
        if unknown:
            raise BackendUnavailableError(f"julia:{name} has no options {unknown}")
        engine = dataclasses.replace(engine, **settings, **options)
    return engine


def backend_versions(backends) -> dict:
    """Versions of the external backends that were used (Julia's as its backend reports them)."""
    versions = {}
    if "julia" in backends:
        try:
            from .. import julia

            status = julia.julia_status()
            versions["julia"] = {
                key: getattr(status, key)
                for key in ("version", "versions", "packages")
                if getattr(status, key, None) is not None
            } or {"available": bool(status.available), "reason": getattr(status, "reason", None)}
        except ImportError as err:
            raise_if_interrupt(err)
            versions["julia"] = {"available": False, "reason": "harness.julia not installed"}
    peers_used = [b for b in backends if b not in ("harness", "julia")]
    if peers_used:
        from .. import peers

        for backend in peers_used:
            versions[backend] = peers.peer_versions(backend)
    return versions
