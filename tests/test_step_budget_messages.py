"""The step budget's one-line reasons (harness/solvers/_step_budget.py), read back whole: the steps
taken and their size (or the collapse from the first step), the projection against the budget or
the budget used up, and the likely causes (an explicit solver's list names stiffness); and
`check_max_steps` on each kind of bad value."""

from __future__ import annotations

import pytest

from harness.errors import HarnessInputError, SolverError
from harness.solvers._step_budget import StepBudget, check_max_steps

CAUSES = ("parameters that diverged in training (lower the learning rate), or a stiff model under an explicit "
          "solver (use RadauIIA5 or BDF), or a time span (10) far beyond the dynamics' time scale (shorten it, "
          "or raise max_steps)")


def reason(budget, n_steps, t, h_abs):
    with pytest.raises(SolverError) as err:
        budget.check(n_steps, t, h_abs)
    assert err.value.method == budget.method and err.value.t_reached == t and err.value.t_target == budget.t1
    return err.value.solver_message


def test_a_projection_beyond_the_budget_names_steps_size_projection_and_causes():
    budget = StepBudget("DP5", False, 0.0, 10.0, 1e-6, max_steps=1000)
    # 800 steps of 1e-8 reach t = 8e-6: about 1e9 more would be needed, beyond even the early margin
    assert reason(budget, 800, 8e-6, 1e-8) == (
        "after 800 steps of about 1e-08, reaching the end would take about 1e+09 steps (budget 1000); "
        f"likely causes: {CAUSES}")


def test_a_collapsed_step_and_a_used_up_budget_say_so():
    budget = StepBudget("DP5", False, 0.0, 10.0, 0.01, max_steps=1000)
    # below a thousandth of the first step: the collapse is named; at the budget: used up
    assert reason(budget, 1000, 0.08, 9e-6) == (
        f"step budget used up (1000 steps, the step size collapsed from 0.01 to 9e-06); likely causes: {CAUSES}")
    assert reason(budget, 1000, 0.08, 1e-5).startswith("step budget used up (1000 steps of about 1e-05);")


def test_an_implicit_solver_is_not_told_to_use_one():
    budget = StepBudget("RadauIIA5", True, 0.0, 10.0, 0.01, max_steps=1000)
    assert reason(budget, 1000, 0.08, 1e-4).endswith(
        "likely causes: parameters that diverged in training (lower the learning rate), or a time span (10) far "
        "beyond the dynamics' time scale (shorten it, or raise max_steps)")


def test_a_backward_solve_measures_its_span_and_first_step_in_absolute_value():
    budget = StepBudget("DP5", False, 10.0, 0.0, -0.01, max_steps=1000)
    assert budget.h_first == 0.01
    assert "the step size collapsed from 0.01 to 9e-06" in reason(budget, 1000, 9.9, 9e-6)


@pytest.mark.parametrize("value", [0, -3, 2.0, True, "10"])
def test_bad_max_steps_are_one_line_errors(value):
    with pytest.raises(HarnessInputError) as err:
        check_max_steps(value)
    assert str(err.value) == f"max_steps={value!r}: expected an integer >= 1 or None"


def test_good_max_steps_are_integers():
    import numpy as np

    assert check_max_steps(None) is None and check_max_steps(1) == 1
    assert check_max_steps(np.int64(7)) == 7 and type(check_max_steps(np.int64(7))) is int


def test_the_span_is_t1_minus_t0_for_the_default_budget_and_the_message():
    from harness.solvers._step_budget import default_max_steps

    budget = StepBudget("DP5", False, 10.0, 2.0, -0.01, max_steps=None)
    assert budget.max_steps == default_max_steps(8.0, 0.01) != default_max_steps(12.0, 0.01)
    capped = StepBudget("DP5", False, 10.0, 2.0, -0.01, max_steps=1000)
    assert "a time span (8) far beyond" in reason(capped, 1000, 9.9, 9e-6)
