"""Small public pieces of harness/problems: the tutorial-exact table rows, the tutorial's horizon
for other step counts, `Problem.with_theta`, `describe` of a plain problem, and `grid_and_mask`'s
handling of column vectors, scalars per time, empty trajectories and repeated times."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.errors import HarnessInputError
from harness.problems import grid_and_mask
from harness.problems._tutorial_exact import exact_table, tutorial_horizon


def test_the_exact_table_has_a_row_per_record_and_the_largest_difference():
    history = [{"step": 0, "loglik_per_datapoint": -3.21234}, {"step": 50, "loglik_per_datapoint": -2.5}]
    lines = exact_table(history, {0: -3.2, 50: -2.4996})
    assert lines == [
        "| step | harness | tutorial | difference |",
        "|---:|---:|---:|---:|",
        "| 0 | -3.2123 | -3.200 | -0.0123 |",
        "| 50 | -2.5000 | -2.500 | -0.0004 |",
        "",
        "Largest difference: 0.0123 (over 2 rows).",
    ]
    # a step the tutorial did not log: an empty cell, and no largest difference over the table
    partial = exact_table(history, {0: -3.2})
    assert partial[3] == "| 50 | -2.5000 | | |" and len(partial) == 4
    assert exact_table(history, {}) == partial[:2] + ["| 0 | -3.2123 | | |", "| 50 | -2.5000 | | |"]


@pytest.mark.parametrize(
    "t1, num_steps, expected", [(10.0, 50, 10.199999999999996), (1.0, 4, 1.25), (1.0, 10, 1.0999999999999999)]
)
def test_the_horizon_is_the_first_sum_of_steps_beyond_t1(t1, num_steps, expected):
    # (four steps of 0.25 land exactly on 1, which is not beyond it: a fifth is taken)
    assert tutorial_horizon(t1, num_steps) == expected


def test_with_theta_is_a_float64_copy_with_everything_else_kept():
    problem = harness.seed_problem(batch=2)
    theta = list(range(problem.theta.size))  # integers
    other = problem.with_theta(theta)
    assert other.theta.dtype == np.float64 and other.theta.tolist() == [float(v) for v in theta]
    assert other.z0 is problem.z0 and other.name == problem.name and other.model is problem.model
    source = np.ones(problem.theta.size)
    copy = problem.with_theta(source)
    source[0] = 5.0
    assert copy.theta[0] == 1.0  # a copy, not a view of the caller's array
    np.testing.assert_array_equal(problem.theta, harness.seed_problem(batch=2).theta)


def test_describe_of_a_plain_problem_lists_no_extras():
    problem = harness.seed_problem(batch=2)
    assert problem.describe() == f"seed: {problem.model.describe()}, B = 2, t0 = 0, t1 = 10, P = 17"


def test_grid_and_mask_takes_columns_scalars_and_empty_trajectories():
    grid, data, mask = grid_and_mask([np.array([[0.5], [1.0]]), [1.0, 2.0]], [[1.0, 2.0], [[3.0], [4.0]]])
    assert grid.tolist() == [0.5, 1.0, 2.0] and data.shape == (3, 2, 1) and mask.dtype == bool
    assert data[:, 0, 0].tolist() == [1.0, 2.0, 0.0] and data[:, 1, 0].tolist() == [0.0, 3.0, 4.0]
    assert mask.tolist() == [[True, False], [True, True], [False, True]]
    # one component per time given as a flat list, and integer values, become float64 columns
    grid, data, mask = grid_and_mask([[1.0, 2.0, 3.0]], [[1, 2, 3]])
    assert data.dtype == np.float64 and data[:, 0, 0].tolist() == [1.0, 2.0, 3.0]
    # a trajectory observed nowhere has no width of its own; with no observation at all, nothing to fit
    with pytest.raises(HarnessInputError, match="none of the 1 trajectories has an observation"):
        grid_and_mask([[]], [np.zeros((0, 1))])
    grid, data, mask = grid_and_mask([[1.0], []], [[[1.0, 2.0]], np.zeros((0, 2))])
    assert data.shape == (1, 2, 2) and mask.tolist() == [[True, False]]
    with pytest.raises(HarnessInputError, match=r"times\[0\] = \[1.0, 1.0\] are not strictly increasing"):
        grid_and_mask([[1.0, 1.0]], [[1.0, 2.0]])


def test_grid_and_mask_refuses_complex_values_rather_than_dropping_their_imaginary_part():
    with pytest.raises(TypeError):
        grid_and_mask([[1.0, 2.0]], [[1.0 + 2.0j, 3.0]])


def test_the_tutorials_theta_is_float64_and_its_problem_is_named_and_starts_at_0():
    from harness._forward import SolveOptions
    from harness.problems._tutorial_draws import tutorial_weights
    from harness.problems._tutorial_exact import theta_from_tutorial, tutorial_exact_problem

    theta = theta_from_tutorial(tutorial_weights("ground_truth"))
    assert theta.dtype == np.float64 and theta.shape == (17,)
    problem = tutorial_exact_problem(SolveOptions("DP5", rtol=1e-4, atol=1e-4))
    assert problem.name == "tutorial-exact" and problem.t0 == 0.0
