"""The engines of the optional backends, by name: "julia:<Name>" (SciMLSensitivity through
`harness.julia`) and "torchdiffeq:<method>" / "diffrax:<method>" (`harness.peers`).

`harness.sensitivity.resolve_engine` reaches this module when it meets a "backend:Name" string (it
imports it by name, as it imports entry-point plugins: Julia and the peers are optional, and importing
them here up front would cost their import time, or fail where they are not installed). Anything that
cannot run on this machine raises `BackendUnavailableError` with the reason.
"""

from __future__ import annotations

import dataclasses

from ._interrupts import raise_if_interrupt
from .errors import BackendUnavailableError, HarnessInputError
from .peers import PEER_METHODS

# backend -> the names it takes, for messages ("julia" names come from Julia's side at run time)
BACKENDS = ("harness", "julia", *PEER_METHODS)


def backend_engine(backend: str, name: str, options: dict, solver: str, rtol: float, atol: float):
    """The engine value `backend:name` with backward `solver`, `rtol`, `atol` and `options`."""
    if backend == "julia":
        return _julia_engine(name, options, solver, rtol, atol)
    if backend in PEER_METHODS:
        if name not in PEER_METHODS[backend]:
            raise HarnessInputError(f"unknown engine '{backend}:{name}': {backend} has {list(PEER_METHODS[backend])}")
        if options:
            raise HarnessInputError(f"{backend}:{name} takes no options, got {sorted(options)}")
        from . import peers

        return peers.peer_engine(backend, name, solver=solver, rtol=rtol, atol=atol)
    raise HarnessInputError(f"unknown backend {backend!r} in {backend}:{name}: expected one of {list(BACKENDS)}")


def _julia_engine(name: str, options: dict, solver: str, rtol: float, atol: float):
    try:
        from . import julia
    except ImportError:
        raise BackendUnavailableError("harness.julia not installed") from None
    status = julia.julia_status()
    if not status.available:
        raise BackendUnavailableError(f"Julia unavailable: {status.reason}")
    engines = {engine.name: engine for engine in julia.julia_engines()}
    # "julia:GaussAdjoint": the sensealg on the exact-VJP route (as `harness reproduce --backend julia`
    # runs it); an engine's full name ("Julia GaussAdjoint (...)") picks any route
    for engine in julia.julia_engines():
        if getattr(engine, "sensealg", None) == name and getattr(engine, "route", None) == "python_vjp":
            engines.setdefault(name, engine)
    if name not in engines:
        raise BackendUnavailableError(f"harness.julia has no engine {name!r}: it has {sorted(engines)}")
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
            from . import julia

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
        from . import peers

        for backend in peers_used:
            versions[backend] = peers.peer_versions(backend)
    return versions
