"""How much memory a gradient needs, estimated before anything is allocated, and the refusal of one
that cannot fit.

A gradient that needs more memory than the machine has does not fail cleanly: it grows until the
kernel kills it, with no message (`harness gradcheck --augment 50 --batch 2` grew to 24 GB). So each
engine's dominant arrays are counted from the problem's sizes first (B initial states, N + A state
components, P parameters) and a gradient whose need exceeds the memory available is refused in one
line with the number.

What each engine holds at once (its working set; `gradient_memory`):

- every engine: its solver's stage arrays over the state it integrates, `STAGE_ARRAYS` arrays of
  the state's size. The state is B N for a plain solve, about 3 B N + P for the adjoints (z, a and
  the parameter quadrature), B N (1 + P + N) for ForwardSensitivity (z and its sensitivities to θ
  and z0).
- with an implicit solver (RadauIIA5, BDF), the Newton matrix of that state and its LU factors:
  `BYTES_PER_JACOBIAN_ENTRY` bytes per stored entry. ForwardSensitivity stores each row's block of
  ∂(J S)/∂S densely, B ((N P)² + N⁴ + N²) entries, which is what makes a stiff reference with many
  parameters expensive; the adjoints store B N² entries and the B N x P coupling to the parameters.

Not counted: the stored forward solution of the engines that keep one (its size depends on the number
of steps, unknown before the solve). So the estimate is what the engine needs at least: refused when
even that cannot fit.

The memory available is the smaller of what the system reports available (psutil) and what is left
under the process's address-space limit (`ulimit -v`, RLIMIT_AS).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import RefusedError

# tracemalloc's peak of ForwardSensitivity with RadauIIA5, divided by the dense Jacobian's entries,
# was 7.5 float64 (60 bytes) at every size measured (B 2-4, N 8-24, P 59-280: the bsr blocks, the
# einsum that builds them, their COO and CSC copies, I/h - J and its real and complex LU factors).
# Rounded up: the estimate must not fall short.
BYTES_PER_JACOBIAN_ENTRY = 64
# Arrays of the integrated state's size that a solver step holds: up to 13 stages (DP8), the state,
# the new state, the error estimate, scale and the right-hand side's temporaries.
STAGE_ARRAYS = 20
FLOAT = 8  # bytes: float64 throughout
# The memory available is read at most once per this many seconds: a training loop checks every step,
# and reading the system's figure costs about 0.1 ms, as much as a whole small gradient.
AVAILABLE_MEMORY_SECONDS = 1.0


@dataclass(frozen=True)
class MemoryNeed:
    """The memory an engine needs at least (bytes) and the arrays that dominate it (words)."""

    bytes: int
    what: str


def _is_implicit(solver: str) -> bool:
    from .solvers import SOLVERS

    cls = SOLVERS.get(solver)
    return bool(getattr(cls, "implicit", False))


def gradient_memory(problem, engine, solver: str) -> MemoryNeed:
    """The working set of one gradient of `problem` by `engine` with `solver` (see the module
    docstring); engines this module does not know (other backends, a user's own) are counted as a
    plain forward solve, a lower bound."""
    model = problem.model
    b, n, p = problem.batch_size, model.state_dim, model.n_params
    name = getattr(engine, "name", type(engine).__name__)
    implicit = _is_implicit(solver)
    if name == "ForwardSensitivity":
        state = b * n * (1 + p + n)
        jacobian = b * ((n * p) ** 2 + n**4 + n**2) if implicit else 0
        dense = f"the dense per-row blocks of the sensitivities' Newton matrix, {b} x ({n * p})² entries"
    elif name in ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint",
                  "RecursiveCheckpointAdjoint"):
        state = 3 * b * n + p
        jacobian = 2 * b * n * n + b * n * p if implicit else 0
        dense = "the adjoint's Newton matrix"
    else:  # FiniteDifferences and engines of other backends: at least a forward solve
        state = b * n
        jacobian = b * n * n if implicit else 0
        dense = "the forward solve's Newton matrix"
    stages = STAGE_ARRAYS * state * FLOAT
    newton = jacobian * BYTES_PER_JACOBIAN_ENTRY
    if newton > stages:
        return MemoryNeed(stages + newton, f"{dense} and its LU factors, with {solver}")
    return MemoryNeed(stages + newton, f"{STAGE_ARRAYS} arrays of its {state}-component state")


def available_memory() -> tuple[int, str]:
    """Bytes this process can still allocate, and where the figure comes from."""
    import resource

    import psutil

    available, source = int(psutil.virtual_memory().available), "available on this machine"
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        left = soft - psutil.Process().memory_info().vms
        if left < available:
            available, source = max(0, int(left)), "left under this process's address-space limit (ulimit -v)"
    return available, source


_recent = {"at": float("-inf"), "reader": None, "value": None}


def _recent_available_memory() -> tuple[int, str]:
    """`available_memory()`, read again when the last reading is older than
    `AVAILABLE_MEMORY_SECONDS` (or was made by another reader function)."""
    now = time.monotonic()
    if _recent["reader"] is not available_memory or now - _recent["at"] > AVAILABLE_MEMORY_SECONDS:
        _recent.update(at=now, reader=available_memory, value=available_memory())
    return _recent["value"]


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def check_gradient_memory(problem, engine, solver: str, *, role: str = "") -> MemoryNeed:
    """Refuse (RefusedError, one line with the numbers) a gradient whose working set cannot fit in the
    memory available; returns the estimate otherwise. `role` names it in the message ("the
    reference")."""
    need = gradient_memory(problem, engine, solver)
    available, source = _recent_available_memory()
    if need.bytes > available:
        name = getattr(engine, "name", type(engine).__name__)
        who = f"{name}{f' ({role})' if role else ''}"
        raise RefusedError(
            f"{who} on {problem.name} (B = {problem.batch_size}, N = {problem.model.state_dim}, "
            f"P = {problem.model.n_params}) needs at least {gib(need.bytes)} of memory ({need.what}), "
            f"and {gib(available)} are {source}: use a smaller batch, fewer augmented dimensions or "
            "parameters, or an adjoint engine"
        )
    return need
