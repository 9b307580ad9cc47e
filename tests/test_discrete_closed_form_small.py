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
    if solver != "DP8":
        # s - 1 VJPs per reversed step (the first-same-as-last stage's share joins the next step's
        # first stage), and one more at the end state when an observation lies inside the last step
        stages = {"DP5": 7, "BS3": 4}[solver]
        assert d["vjps"] - (stages - 1) * d["n_steps"] in (0, 1), (d, stages)
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



def test_an_observation_inside_the_last_step_costs_one_vjp_at_the_end_state():
    """DP5 (7 stages): t = 1.249 lies inside the last step, which ends at t_K = 1.25; its share on the
    first-same-as-last stage f(y_N) needs one VJP at the end state, beyond 6 per reversed step."""
    stages = 7
    problem = small_problem(times=(1.249, 1.25))
    result = gradient(problem, engine=RecursiveCheckpointAdjoint(), solver="DP5", rtol=1e-6, atol=1e-6)
    check(result, problem, bound=100 * 1e-6 * 8)
    d = result.diagnostics
    assert d["vjps"] == (stages - 1) * d["n_steps"] + 1


@pytest.mark.parametrize("times", [(0.75, 1.25), (1.25,)])
def test_dp8_replays_its_states_and_counts_every_evaluation(times):
    """DP8 is scipy's DOP853 (s = 12 stages), whose stages are not kept: the stored sweep replays each
    piece's states from its start (s evaluations for every step but the piece's last) and forms s - 1
    stage inputs per reversed step. DP8 ends a piece at every observation time (K pieces), so the
    backward evaluations of f are n (2 s - 1) - K s, and the VJPs come on top."""
    problem = small_problem(times=times)
    result = gradient(problem, engine=RecursiveCheckpointAdjoint(), solver="DP8", rtol=TOL, atol=TOL)
    d, s = result.diagnostics, 12
    assert result.backward_stats.n_rhs - d["vjps"] == d["n_steps"] * (2 * s - 1) - len(times) * s
