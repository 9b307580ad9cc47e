"""RecursiveCheckpointAdjoint on the tiny affine problems of tests/test_engines_closed_form_small.py,
against the matrix exponential: every problem option, every explicit solver, every count it reports,
and its refusal of implicit solvers (the bounds are derived there)."""

from __future__ import annotations

import pytest

from harness.errors import HarnessInputError
from harness.sensitivity import RecursiveCheckpointAdjoint, gradient
from test_engines_closed_form_small import OPTIONS, TOL, check, small_problem

DISCRETE = {"stored": RecursiveCheckpointAdjoint(), "checkpoints=2": RecursiveCheckpointAdjoint(checkpoints=2)}


@pytest.mark.parametrize("solver", ["DP5", "BS3", "DP8"])
@pytest.mark.parametrize("option", ["plain", *OPTIONS])
@pytest.mark.parametrize("name", list(DISCRETE))
def test_the_discrete_gradient_with_every_option_and_explicit_solver(name, option, solver):
    """RecursiveCheckpointAdjoint is the exact gradient of the computed solution, which is within a
    modest multiple of tol of the ODE's: the same bound as the adjoints. Its diagnostics count the
    forward pass's accepted steps, each reversed once; without checkpoints the forward pass's stages
    are kept and the sweep evaluates no f; with c checkpoints at most c + 1 states are held (c plus
    the piece's start, per piece) and the recomputed steps evaluate f again."""
    problem = small_problem(**OPTIONS.get(option, {}))
    engine = DISCRETE[name]
    result = gradient(problem, engine=engine, solver=solver, rtol=TOL, atol=TOL)
    check(result, problem)
    d = result.diagnostics
    assert d["n_steps"] == result.forward_stats.n_accepted == result.backward_stats.n_accepted
    assert d["checkpoints"] == engine.checkpoints
    assert result.backward_stats.n_rejected == 0
    assert d["vjps"] > 0
    if engine.checkpoints is None:
        if solver != "DP8":  # DP8 is scipy's loop, whose stages are not kept: its steps are replayed
            # every step's stages kept from the forward pass: the sweep evaluates no f, only VJPs
            assert result.backward_stats.n_rhs == d["vjps"]
        assert d["recomputed_steps"] == 0
        assert d["peak_stored_states"] >= d["n_steps"] - problem.times.size
    else:
        # recomputed steps evaluate f again
        assert result.backward_stats.n_rhs > d["vjps"]
        assert d["recomputed_steps"] > 0
        assert d["peak_stored_states"] <= engine.checkpoints + 1


@pytest.mark.parametrize("solver", ["RadauIIA5", "BDF"])
def test_the_discrete_gradient_refuses_implicit_solvers(solver):
    with pytest.raises(HarnessInputError) as caught:
        gradient(small_problem(), engine=RecursiveCheckpointAdjoint(), solver=solver)
    assert str(caught.value) == (
        "RecursiveCheckpointAdjoint differentiates explicit Runge-Kutta steps (DP5, BS3, DP8); "
        f"solver {solver!r} is implicit: use QuadratureAdjoint or InterpolatingAdjoint for stiff problems")

