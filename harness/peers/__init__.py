"""External engines as optional comparison rows: torchdiffeq (PyTorch) and diffrax (JAX).

Each peer reads the problem through the problem-file format (`harness.problems` (its `_file.py`)): the engine
saves the problem with `save_problem` and the adapter loads it with `load_problem`, so PyTorch and
JAX see exactly the weights, initial states and data that a file shared with Julia would hold.
Everything is float64 (torch.float64; jax_enable_x64).

Neither package is required: `peer_engine` raises `BackendUnavailableError` with the reason, and the
comparison shows the row as unavailable. Install both with the `peers` extra.

| engine | what it is |
|---|---|
| torchdiffeq:odeint_adjoint | torchdiffeq's continuous adjoint (backsolve: z re-integrated backwards) |
| torchdiffeq:odeint | backpropagation through torchdiffeq's solver steps (discretise-then-optimise) |
| diffrax:BacksolveAdjoint | diffrax's continuous adjoint, z re-integrated backwards |
| diffrax:RecursiveCheckpointAdjoint | backpropagation through diffrax's steps with checkpoints |

Solvers: our explicit ones are the same tableaus in both (torchdiffeq dopri5/bosh3/dopri8, diffrax
Dopri5/Bosh3/Dopri8). diffrax also stands in for our implicit ones, mapped by class and order:
RadauIIA5 -> Kvaerno5, BDF -> KenCarp4 (`diffrax_engine.SOLVERS`).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import replace
from importlib import metadata

from ..errors import BackendUnavailableError

# backend -> (adapter module, the packages it needs)
PEERS = {
    "torchdiffeq": (".torchdiffeq_engine", ("torch", "torchdiffeq")),
    "diffrax": (".diffrax_engine", ("jax", "jaxlib", "diffrax")),
}

# backend -> the methods its adapter offers (the adapters and the comparison spec read them here)
PEER_METHODS = {
    "torchdiffeq": ("odeint_adjoint", "odeint"),
    "diffrax": ("BacksolveAdjoint", "RecursiveCheckpointAdjoint"),
}


def peer_status(backend: str) -> tuple[bool, str | None]:
    """(available, reason if not) for one peer backend."""
    if backend not in PEERS:
        return False, f"unknown peer backend {backend!r}: expected one of {sorted(PEERS)}"
    # find_spec, not import: the adapters must be the first to import their packages (diffrax's
    # adapter configures equinox before it loads)
    for package in PEERS[backend][1]:
        if importlib.util.find_spec(package) is None:
            return False, f"{package} is not installed; pip install -e '.[peers]'"
    return True, None


def _adapter(backend: str):
    available, reason = peer_status(backend)
    if not available:
        raise BackendUnavailableError(reason)
    if "torch" in PEERS[backend][1]:
        # juliacall must come before torch in a process that holds both (harness.julia.runtime
        # `check_import_order`): start Julia first where it can run here
        from ..julia.runtime import start_before_torch

        start_before_torch()
    try:
        return importlib.import_module(PEERS[backend][0], __name__)
    except ImportError as err:  # installed but broken
        raise BackendUnavailableError(f"{backend} cannot be imported: {err}") from None


def peer_engine(backend: str, method: str, *, solver: str = "DP5", rtol: float = 1e-6,
                atol: float = 1e-6, timed: bool = True):
    """The engine value `backend:method` with backward `solver`, `rtol`, `atol`; `timed=False` for a
    cross-check that needs no time (diffrax then compiles its gradient once, not twice; `seconds` NaN).

    Raises BackendUnavailableError if the package is missing or has no counterpart of `solver`.
    """
    return replace(_adapter(backend).engine(method, solver=solver, rtol=rtol, atol=atol), timed=timed)


def peer_versions(backend: str) -> dict:
    """Installed versions of a peer's packages (None for those missing)."""
    versions = {}
    for package in PEERS.get(backend, ((), ()))[1]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


__all__ = ["PEERS", "PEER_METHODS", "peer_engine", "peer_status", "peer_versions"]
