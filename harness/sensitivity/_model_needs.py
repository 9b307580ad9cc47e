"""What each harness engine asks of a model, checked before anything is solved.

The adjoints need f and its vjp; ForwardSensitivity needs ∂f/∂z and ∂f/∂θ as matrices; finite
differences need f alone; an implicit solver (forward or backward) needs ∂f/∂z for its Newton
iterations. A model that lacks one (`harness.models.VectorField`: a slot absent or None) is refused
in one line naming it (`harness.models.require`), so a long forward solve never ends in an
AttributeError.
"""

from __future__ import annotations

from .. import _compiled
from ..models import MLP, require
from ..solvers import SOLVERS
from .algorithms import ADJOINTS, FiniteDifferences, ForwardSensitivity


def model_needs(engine, solver: str) -> tuple[str, ...]:
    """The model slots `engine` (a harness engine value) uses with forward `solver`; () for engines
    of other backends or a user's (they ask for what they need themselves)."""
    if isinstance(engine, ForwardSensitivity):
        needs = ("f", "jac", "jac_theta")
    elif isinstance(engine, FiniteDifferences):
        needs = ("f",)
    elif isinstance(engine, ADJOINTS):
        needs = ("f", "vjp")
    else:
        return ()
    backward = getattr(engine, "solver", None) or solver
    if any(name in SOLVERS and SOLVERS[name].implicit for name in (solver, backward)) and "jac" not in needs:
        needs += ("jac",)
    return needs


def require_for(engine, model, solver: str) -> None:
    """Refuse `model` in one line if it lacks a slot that `engine` with `solver` needs."""
    if type(model) is MLP:  # it has every slot; skipping the lookups keeps a small gradient's overhead at ~0
        return
    needs = model_needs(engine, solver)
    if needs:
        implicit = "jac" in needs and not isinstance(engine, ForwardSensitivity)
        who = f"{type(engine).__name__}" + (f" with the implicit solver {solver}" if implicit else "")
        require(model, ("state_dim", "n_params", *needs), who)


def path_of(engine, model, loop_runs_before: int) -> str:
    """Which implementation computed a harness gradient: the compiled whole loop, the compiled stage
    kernels, the MLP's fused numpy stages, the generic numpy stages from the model's own vjp, or (for
    ForwardSensitivity, which records no stages) the model's matrices."""
    if _compiled.loop_runs() > loop_runs_before:
        return "compiled loop"
    if isinstance(engine, ForwardSensitivity):
        return "numpy (model's jac, jac_theta)"
    if _compiled.enabled(model):
        return "compiled stages"
    return "numpy (MLP)" if type(model) is MLP else "numpy (model's vjp)"
