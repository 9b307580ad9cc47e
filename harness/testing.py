"""Assertions for researchers' own test suites: do these gradient engines agree on this problem?

    from harness.testing import assert_gradients_agree
    assert_gradients_agree(problem, ["BacksolveAdjoint", "QuadratureAdjoint"], rtol=1e-6)

On failure the AssertionError names each engine that disagrees, the entries that disagree most by
their names in `model.layout` ("W1[2,0]", "b2[1]") or in z0 ("z0[17,1]"), their values, and by how
much.
"""

from __future__ import annotations

import numpy as np

from .errors import BackendUnavailableError
from .sensitivity import gradient, resolve_engine

_WRT = {"theta": ("dtheta", "dL/dθ"), "z0": ("dz0", "dL/dz0")}


def _engine(engine, solver, rtol, atol):
    """An engine value from a value, class, harness name, or "backend:Name" (Julia, peers); a name gets
    the solver and tolerances as its backward settings (harness engines would take them anyway: theirs
    follow the forward pass's)."""
    if isinstance(engine, str):
        return resolve_engine(engine, solver=solver, rtol=rtol, atol=atol)
    return resolve_engine(engine)


def _label(engine) -> str:
    return engine if isinstance(engine, str) else getattr(engine, "name", repr(engine))


def _names(problem, key: str) -> list[str]:
    from ._metrics import parameter_names, state_names

    if key == "dtheta":
        return parameter_names(problem.model)
    return state_names(problem.batch_size, problem.observed_dim)


def assert_gradients_agree(
    problem,
    engines,
    *,
    reference="ForwardSensitivity",
    rtol: float = 1e-6,
    atol: float = 0.0,
    solver: str = "DP5",
    solver_rtol: float = 1e-8,
    solver_atol: float = 1e-8,
    reference_solver: str | None = None,
    reference_rtol: float = 1e-10,
    reference_atol: float = 1e-10,
    wrt=("theta", "z0"),
    n_worst: int = 3,
) -> dict:
    """Assert that every engine's dL/dθ and dL/dz0 match the reference's, entry by entry.

    An entry g_i of an engine's gradient agrees with the reference's r_i when

        |g_i - r_i| <= atol + rtol * max_j |r_j|

    (scaled by the largest entry, so that entries near zero are held to the same absolute
    accuracy as the rest, as a solver's error would be).

    Parameters
    ----------
    problem : Problem
    engines : list of engine values, classes or names
        Names may be harness engines ("QuadratureAdjoint") or external ones ("torchdiffeq:odeint_adjoint",
        "julia:GaussAdjoint"). An engine that raises fails the assertion; one that is unavailable on this
        machine (BackendUnavailableError) also fails: skip it in your test if that is expected.
    reference : engine value, class or name
        Run at `reference_solver` (default: `solver`) and `reference_rtol`, `reference_atol`.
    rtol, atol : float
        The agreement bound above (not the solver's tolerances).
    solver, solver_rtol, solver_atol :
        Forward and backward solver and tolerances of the engines under test.
    wrt : iterable of "theta", "z0"
        Which gradients to check.
    n_worst : int
        How many of the worst entries each failure message lists.

    Returns
    -------
    dict
        {label: GradientResult} for the reference (key "reference") and every engine, for further checks.
    """
    unknown = sorted(set(wrt) - set(_WRT))
    if unknown:
        raise ValueError(f"wrt has {unknown}: expected a subset of {sorted(_WRT)}")
    ref_solver = reference_solver or solver
    ref = gradient(problem, engine=_engine(reference, ref_solver, reference_rtol, reference_atol),
                   solver=ref_solver, rtol=reference_rtol, atol=reference_atol)
    results = {"reference": ref}
    failures = []
    for engine in engines:
        label = _label(engine)
        try:
            result = gradient(problem, engine=_engine(engine, solver, solver_rtol, solver_atol),
                              solver=solver, rtol=solver_rtol, atol=solver_atol)
        except (BackendUnavailableError, ArithmeticError, RuntimeError, ValueError) as err:
            failures.append(f"{label} raised {type(err).__name__}: {err}")
            continue
        results[label] = result
        for which in wrt:
            key, title = _WRT[which]
            message = _disagreement(label, title, getattr(result, key), getattr(ref, key),
                                    _names(problem, key), rtol, atol, n_worst)
            if message:
                failures.append(message)
    if failures:
        header = (
            f"gradients of {problem.name!r} disagree with the reference {_label(reference)} "
            f"({ref_solver}, rtol={reference_rtol:g}, atol={reference_atol:g}); engines ran {solver} at "
            f"rtol={solver_rtol:g}, atol={solver_atol:g}; per-entry bound atol + rtol·max|ref| with "
            f"rtol={rtol:g}, atol={atol:g}:"
        )
        raise AssertionError("\n".join([header, *(f"  - {f}" for f in failures)]))
    return results


def _disagreement(label, title, g, r, names, rtol, atol, n_worst) -> str | None:
    """A one-paragraph description of where g and r disagree beyond the bound, or None."""
    g, r = np.ravel(g), np.ravel(r)
    if g.shape != r.shape:
        return f"{label}, {title}: shape {g.shape} vs the reference's {r.shape}"
    scale = float(np.max(np.abs(r)))
    bound = atol + rtol * scale
    diff = np.abs(g - r)
    bad = ~(diff <= bound)  # NaN counts as a disagreement
    if not np.any(bad):
        return None
    order = np.argsort(np.where(np.isnan(diff), np.inf, diff))[::-1][:n_worst]
    worst = "; ".join(
        f"{names[i]} = {g[i]:.10g} vs {r[i]:.10g} (|Δ| = {diff[i]:.2e}"
        + (f" = {diff[i] / scale:.2e} of max|ref|" if scale > 0 else "") + ")"
        for i in order if bad[i]
    )
    from ._metrics import cosine_similarity, relative_error

    relative, cosine = relative_error(g, r), cosine_similarity(g, r)
    return (f"{label}, {title}: {int(np.sum(bad))} of {g.size} entries beyond {bound:.2e}; worst "
            f"{worst}; norm-wise relative error {relative:.2e}, cosine {cosine:.12f}")


__all__ = ["assert_gradients_agree"]
