"""The one table of solvers: name -> solver object, and the rules read from it."""

from __future__ import annotations

from ..errors import HarnessInputError
from ._base import Solver

SOLVERS: dict[str, Solver] = {}

# What a stiff model is solved with when an explicit solver was asked for (see `solver_for`).
STIFF_DEFAULT = "RadauIIA5"


def register(solver: Solver) -> Solver:
    """Add `solver` to `SOLVERS` under `solver.name`; returns it. A name may be registered once."""
    if not isinstance(solver, Solver):
        raise TypeError(f"{solver!r} is not a harness.solvers.Solver")
    missing = [a for a in ("name", "implicit", "order", "dense_output", "description") if not hasattr(solver, a)]
    if missing:
        raise TypeError(f"solver {type(solver).__name__} does not declare {missing}")
    if solver.name in SOLVERS:
        raise ValueError(f"a solver named {solver.name!r} is already registered")
    SOLVERS[solver.name] = solver
    return solver


def check_solver(name: str) -> Solver:
    """The solver registered as `name`, or a HarnessInputError listing the valid names."""
    if name not in SOLVERS:
        raise HarnessInputError(f"unknown solver {name!r}: expected one of {sorted(SOLVERS)}")
    return SOLVERS[name]


def is_stiff(model) -> bool:
    """A model with a linear decay term -Λ z (the stiff variant) is stiff."""
    return getattr(model, "decay", None) is not None


def solver_for(model, name: str) -> Solver:
    """The solver to solve `model` with when `name` is asked for.

    An explicit solver on a stiff model needs a step at its stability limit (about 3 / 1000 for
    Λ = diag(1, 1000)) whatever the tolerances, so a stiff model gets `STIFF_DEFAULT` instead;
    otherwise `name`'s solver.
    """
    solver = check_solver(name)
    if is_stiff(model) and not solver.implicit:
        return SOLVERS[STIFF_DEFAULT]
    return solver
