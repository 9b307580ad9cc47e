"""The engine registry: the one way harness finds what an engine does and what it needs.

An engine is any value whose type is registered here, with `register_engine`, once: the harness
adjoints and references, the Julia engines, the PyTorch/JAX peers, and engines a user writes in
their own code. The registration declares what callers need to know, so nobody guesses it from the
engine's module:

- `compute(engine, problem, theta, options) -> GradientResult`: the gradient;
- `backend`: who computes it ("harness", "julia", "torchdiffeq", "diffrax", or a user's label);
- `uses_harness_solvers`: whether the solver names it takes are `harness.solvers` names (checked
  before it runs) or a backend's own;
- `availability() -> (available, reason)`: whether it can run on this machine, and why not.

A type registered with a `name` (by default its class attribute `name`, when that is a string and
the class needs no arguments) can also be built from that name: `harness gradcheck`, `harness
compare` grids, the CLI's engine list and `gradient(problem, engine="Name")` find it there. The
command line also
imports the modules that installed packages list under the entry-point group "harness.engines"
(`load_engine_plugins`), so a package of engines needs no change to harness.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import HarnessInputError


def _always_available() -> tuple[bool, str | None]:
    return True, None


@dataclass(frozen=True)
class EngineDeclaration:
    """What `register_engine` recorded for one engine type (see the module docstring)."""

    engine_type: type
    compute: Callable
    backend: str
    uses_harness_solvers: bool
    availability: Callable[[], tuple[bool, str | None]]
    name: str | None


_DECLARATIONS: dict[type, EngineDeclaration] = {}

ENGINES: dict[str, type] = {}
"""Engines that can be built from their name with no arguments: name -> type (kept up to date by
`register_engine`, in registration order)."""

REGISTER_HINT = "register it with harness.register_engine (one call or one class decorator)"


def register_engine(
    engine_type: type | None = None,
    *,
    compute: Callable | None = None,
    backend: str = "harness",
    uses_harness_solvers: bool = True,
    availability: Callable[[], tuple[bool, str | None]] | None = None,
    name: str | None = None,
):
    """Register an engine type: as a call, `register_engine(MyEngine, compute=my_gradient)`, or as
    a class decorator, `@register_engine(backend="mine")` on a class with a `compute` method.

    Parameters
    ----------
    engine_type : type, optional
        The engine class; omitted when used as a decorator.
    compute : callable (engine, problem, theta (P,), options: SolveOptions) -> GradientResult, optional
        Default: the class's own `compute(self, problem, theta, options)` method.
    backend : str
        Who computes the gradient; "harness" for engines built on `harness.solvers`.
    uses_harness_solvers : bool
        True if the engine solves with `harness.solvers` (its solver names are checked before it
        runs); False for backends with solvers of their own.
    availability : callable () -> (bool, str or None), optional
        Whether the engine can run here and, if not, why. Default: always available.
    name : str, optional
        Register the type under this name too, to be built with no arguments. Default: the class
        attribute `name` if it is a string and the class needs no arguments.

    Returns
    -------
    The engine type (so that the decorator form leaves the class unchanged).

    Raises
    ------
    HarnessInputError
        If there is no compute, a declared value has the wrong type, or the name is taken.
    """
    if engine_type is None:
        return lambda cls: register_engine(
            cls, compute=compute, backend=backend, uses_harness_solvers=uses_harness_solvers,
            availability=availability, name=name,
        )
    if not isinstance(engine_type, type):
        raise HarnessInputError(f"register_engine({engine_type!r}): expected a class, not an instance")
    label = engine_type.__qualname__
    if compute is None:
        compute = getattr(engine_type, "compute", None)
        if not callable(compute):
            raise HarnessInputError(
                f"register_engine({label}): no compute given and {label} has no `compute` method; "
                "expected compute(engine, problem, theta, options) -> GradientResult"
            )
    elif not callable(compute):
        raise HarnessInputError(f"register_engine({label}): compute={compute!r} is not callable")
    if not (isinstance(backend, str) and backend):
        raise HarnessInputError(f"register_engine({label}): backend={backend!r}, expected a non-empty string")
    if not isinstance(uses_harness_solvers, bool):
        raise HarnessInputError(
            f"register_engine({label}): uses_harness_solvers={uses_harness_solvers!r}, expected True or False"
        )
    if availability is not None and not callable(availability):
        raise HarnessInputError(f"register_engine({label}): availability={availability!r} is not callable")
    buildable = _buildable_without_arguments(engine_type)
    if name is None and buildable and isinstance(getattr(engine_type, "name", None), str):
        name = engine_type.name
    if name is not None:
        if not (isinstance(name, str) and name.isidentifier()):
            raise HarnessInputError(f"register_engine({label}): name={name!r}, expected an identifier")
        if not buildable:
            raise HarnessInputError(
                f"register_engine({label}): name={name!r}, but {label} cannot be built with no "
                "arguments, which is what a name is for; register it without a name"
            )
        taken = ENGINES.get(name)
        if taken is not None and taken.__qualname__ != label:
            raise HarnessInputError(
                f"register_engine({label}): the name {name!r} is already taken by "
                f"{taken.__module__}.{taken.__qualname__}"
            )
        ENGINES[name] = engine_type  # re-registering the same class (a reloaded module) replaces it
    _DECLARATIONS[engine_type] = EngineDeclaration(
        engine_type, compute, backend, uses_harness_solvers, availability or _always_available, name
    )
    return engine_type


ENTRY_POINT_GROUP = "harness.engines"


def load_engine_plugins() -> list[str]:
    """Import the modules that installed packages declare under the entry-point group
    "harness.engines" (importing one registers its engines), so the command line finds them too.

    Returns the names of the entry points loaded. A plugin that fails to import is an error that
    names it: a silently missing engine would make a comparison quietly smaller.
    """
    from importlib.metadata import entry_points

    loaded = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as err:  # any failure of third-party code, reported with its name
            raise HarnessInputError(
                f"engine plugin {point.name!r} ({point.value}) failed to import: {type(err).__name__}: {err}"
            ) from err
        loaded.append(point.name)
    return loaded


def _buildable_without_arguments(engine_type: type) -> bool:
    try:
        inspect.signature(engine_type).bind()
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (some builtins): let the call decide
        return True
    return True


def unregister_engine(engine_type: type) -> None:
    """Forget a registration (and its name): for tests and for re-defining an engine in a session."""
    declaration = _DECLARATIONS.pop(engine_type, None)
    if declaration is None:
        raise HarnessInputError(f"unregister_engine({engine_type!r}): not a registered engine type")
    if declaration.name is not None and ENGINES.get(declaration.name) is engine_type:
        del ENGINES[declaration.name]


def declaration_of(engine) -> EngineDeclaration:
    """The registration of an engine value (or type), or HarnessInputError saying it has none."""
    engine_type = engine if isinstance(engine, type) else type(engine)
    for cls in engine_type.__mro__:  # a subclass of a registered engine is that engine
        if cls in _DECLARATIONS:
            return _DECLARATIONS[cls]
    raise HarnessInputError(
        f"engine {engine!r}: its type {engine_type.__qualname__} is not a registered engine; "
        f"{REGISTER_HINT}"
    )


def registered_engines() -> tuple[EngineDeclaration, ...]:
    """Every registration, in order."""
    return tuple(_DECLARATIONS.values())


def resolve_engine(engine, *, solver: str | None = None, rtol: float | None = None, atol: float | None = None,
                   options: dict | None = None):
    """The one way from what a user writes to an engine value, for the API, the CLI, `compare` and
    `harness.testing`.

    `engine` is a registered engine value (returned as it is), a registered class, or a name:
    "QuadratureAdjoint" (a registered name; "harness:QuadratureAdjoint" is the same) or "backend:Name"
    for the optional backends, "julia:GaussAdjoint", "torchdiffeq:odeint_adjoint",
    "diffrax:BacksolveAdjoint" (`harness._backends`). None gives `InterpolatingAdjoint()`.

    For a name, `options` are the engine's fields (its options), and `solver`, `rtol`, `atol`, where
    given, its backward settings if it has those fields (a backend's engine takes them always).
    """
    if engine is None:
        engine = "InterpolatingAdjoint"
    if isinstance(engine, str):
        backend, _, name = engine.rpartition(":")
        if backend not in ("", "harness"):
            import importlib

            # the optional backends, imported by name as plugins are (see `harness._backends`)
            backends = importlib.import_module("harness._backends")
            return backends.backend_engine(backend, name, dict(options or {}), solver or "DP5",
                                           1e-6 if rtol is None else rtol, 1e-6 if atol is None else atol)
        if name not in ENGINES:
            raise HarnessInputError(
                f"unknown engine {engine!r}: expected one of {sorted(ENGINES)}, or 'julia:<Name>', "
                f"'torchdiffeq:<method>', 'diffrax:<method>' (an engine of your own is found by name once "
                f"you {REGISTER_HINT})"
            )
        cls = ENGINES[name]
        settings = dict(options or {})
        fields = getattr(cls, "__dataclass_fields__", {})
        for key, value in (("solver", solver), ("rtol", rtol), ("atol", atol)):
            if value is not None and key in fields:
                settings[key] = value
        try:
            return cls(**settings)
        except TypeError as err:
            raise HarnessInputError(f"engine {name!r} with options {sorted(settings)}: {err}") from None
    if isinstance(engine, type):
        declaration_of(engine)
        try:
            return engine()
        except TypeError as err:
            raise HarnessInputError(
                f"engine class {engine.__qualname__} needs arguments ({err}): pass an instance"
            ) from None
    declaration_of(engine)
    return engine


def uses_harness_solvers(engine) -> bool:
    """Whether `engine` (a registered value or type) solves with `harness.solvers`."""
    return declaration_of(engine).uses_harness_solvers
