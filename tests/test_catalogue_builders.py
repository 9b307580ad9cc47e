"""Every builder of the problem catalogue (harness/problems/_catalogue.py) by what it promises: its
defaults (seed 0, 500 states, or 100 for the two toy maps), the seed drawing the ground truth and
seed + 1 the model to fit, the data options passed through to the data solve, and the data being
the ground truth's solve at the documented times; the toy maps' states and targets; the bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import harness._compiled as compiled
from harness._forward import SolveOptions, solve_forward
from harness.errors import HarnessInputError
from harness.model import MLP
from harness.problems import _catalogue as catalogue
from harness.solvers import solver_for

# loose options, so that data solved with them differ from the default (DP5, 1e-6, 1e-4)
LOOSE = SolveOptions("BS3", rtol=1e-3, atol=1e-3)
SOLVED = ["seed", "stiff", "multi_time", "deep", "augmented", "time_dependent", "irregular", "lotka_volterra", "ude"]
TIMES = {"seed": [10.0], "stiff": [10.0], "deep": [10.0], "augmented": [10.0], "ude": [1.0, 2.0, 3.0, 4.0]}


@pytest.mark.parametrize("name", SOLVED + ["reflection", "annuli"])
def test_the_defaults_are_seed_0_and_the_documented_batch(name):
    build = catalogue.PROBLEMS[name]
    default = build()
    assert default.batch_size == (100 if name in ("reflection", "annuli") else 500)
    same = build(seed=0, batch=default.batch_size)
    for field in ("theta", "z0", "data", "times"):
        np.testing.assert_array_equal(getattr(default, field), getattr(same, field))
    other = build(seed=1, batch=default.batch_size)
    assert not np.array_equal(default.z0, other.z0) and not np.array_equal(default.theta, other.theta)


@pytest.mark.parametrize("name", SOLVED)
def test_the_seed_draws_the_truth_and_seed_plus_one_the_model_and_the_data_options_are_used(name):
    problem = catalogue.PROBLEMS[name](seed=3, batch=4, data_options=LOOSE)
    model = problem.model
    assert problem.batch_size == 4 and problem.t0 == 0.0
    assert problem.times.dtype == np.float64
    assert problem.times.tolist() == TIMES.get(name, [2.5, 5.0, 7.5, 10.0])
    np.testing.assert_array_equal(problem.theta, model.init(np.random.default_rng(4)))
    np.testing.assert_array_equal(problem.theta_true, model.init(np.random.default_rng(3)))
    solver = solver_for(model, LOOSE.solver).name  # the stiff problem's data need an implicit solver
    with compiled.numpy_reference():  # the data are the numpy path's solve, to the bit
        truth = solve_forward(model, problem.theta_true, problem.z0, 0.0, problem.times,
                              SolveOptions(solver, LOOSE.rtol, LOOSE.atol)).z_at_times[..., :problem.observed_dim]
    np.testing.assert_array_equal(np.where(problem.mask[..., None], problem.data, 0) if problem.mask is not None
                                  else problem.data, np.where(problem.mask[..., None], truth, 0)
                                  if problem.mask is not None else truth)
    default_data = catalogue.PROBLEMS[name](seed=3, batch=4).data
    assert not np.array_equal(default_data, problem.data)  # the options made a difference


def test_the_initial_states_of_the_solved_problems():
    seed = catalogue.seed_problem(seed=2, batch=300)
    assert seed.z0.min() >= -10 and seed.z0.max() <= 10 and seed.z0.min() < -9 and seed.z0.max() > 9
    rng = np.random.default_rng(2)
    MLP((2, 3, 2)).init(rng)
    np.testing.assert_array_equal(seed.z0, rng.uniform(-10, 10, size=(300, 2)))
    lv = catalogue.lotka_volterra_problem(seed=2, batch=300)
    assert lv.z0.min() >= 0.5 and lv.z0.max() <= 2.0 and lv.z0.min() < 0.6 and lv.z0.max() > 1.9
    assert lv.name == "lotka_volterra" and catalogue.ude_problem(batch=2).name == "ude"
    augmented = catalogue.augmented_problem(seed=2, batch=3)
    assert augmented.augment == 1 and augmented.name == "augmented" and augmented.model.widths == (3, 3, 3)
    assert np.all(augmented.z0[:, 2] == 0) and augmented.data.shape == (1, 3, 2)


def test_the_irregular_mask_keeps_about_half_and_every_state():
    problem = catalogue.irregular_problem(seed=5, batch=200)
    full = catalogue.multi_time_problem(seed=5, batch=200)
    np.testing.assert_array_equal(problem.z0, full.z0)
    np.testing.assert_array_equal(problem.data[problem.mask], full.data[problem.mask])
    assert problem.mask.shape == (4, 200) and problem.mask.any(axis=0).all()
    assert 0.45 < problem.mask.mean() < 0.6  # each pair kept with probability 1/2, plus one per empty state
    rng = np.random.default_rng([5, 17])
    drawn = rng.random((4, 200)) < 0.5
    empty = ~drawn.any(axis=0)
    assert empty.any()  # with 200 states some draw no observation: they get one at a random time
    np.testing.assert_array_equal(problem.mask[:, ~empty], drawn[:, ~empty])
    rows = rng.integers(0, 4, size=200)[empty]
    assert np.count_nonzero(problem.mask[:, empty]) == np.count_nonzero(empty)
    assert problem.mask[rows, np.flatnonzero(empty)].all()


def test_the_reflection_task_maps_x_to_minus_x_on_the_interval():
    problem = catalogue.reflection_problem(seed=2, batch=50)
    np.testing.assert_array_equal(problem.z0, np.random.default_rng(2).uniform(-1.0, 1.0, size=(50, 1)))
    np.testing.assert_array_equal(problem.data, -problem.z0[None])
    assert problem.times.tolist() == [1.0] and problem.theta_true is None and problem.name == "reflection"
    np.testing.assert_array_equal(problem.theta, problem.model.init(np.random.default_rng(3)))


def test_the_annuli_send_the_disk_out_and_the_annulus_in():
    problem = catalogue.annuli_problem(seed=2, batch=51)
    r = np.linalg.norm(problem.z0, axis=1)
    inner = np.arange(51) < 25  # the first half (rounded down) in the disk
    assert r[inner].max() < 0.5 and r[~inner].min() > 1.0 and r[~inner].max() < 1.5
    rng = np.random.default_rng(2)
    radius = np.where(inner, rng.uniform(0.0, 0.5, 51), rng.uniform(1.0, 1.5, 51))
    phi = rng.uniform(0.0, 2 * np.pi, 51)
    np.testing.assert_allclose(r, radius, rtol=1e-15)
    np.testing.assert_allclose(np.arctan2(problem.z0[:, 1], problem.z0[:, 0]) % (2 * np.pi), phi, rtol=1e-12)
    np.testing.assert_array_equal(problem.data[0][inner], 4.0 * problem.z0[inner])
    np.testing.assert_array_equal(problem.data[0][~inner], 0.25 * problem.z0[~inner])
    assert problem.times.tolist() == [1.0] and problem.name == "annuli"
    np.testing.assert_array_equal(problem.theta, problem.model.init(np.random.default_rng(3)))


def test_make_problem_defaults_and_refusals():
    model = MLP((2, 3, 2))
    problem = catalogue.make_problem(model, batch=3)
    assert problem.name == "problem" and problem.times.dtype == np.float64
    np.testing.assert_array_equal(problem.theta_true, model.init(np.random.default_rng(0)))
    np.testing.assert_array_equal(problem.theta, model.init(np.random.default_rng(1)))
    assert catalogue.make_problem(model).batch_size == 500
    assert catalogue.make_problem(model, batch=1).batch_size == 1
    with pytest.raises(HarnessInputError, match=r"^batch=0: expected an integer >= 1$"):
        catalogue.make_problem(model, batch=0)
    big = MLP((3, 3, 3))
    assert catalogue.make_problem(big, batch=2, augment=2).augment == 2
    for bad in (3, True, 1.0, -1):
        with pytest.raises(HarnessInputError, match=rf"^augment={bad!r}: expected an integer from 0 to 2$"):
            catalogue.make_problem(big, batch=2, augment=bad)
    from harness.models import LotkaVolterra

    with pytest.raises(HarnessInputError, match=r"^batch=0: expected an integer >= 1$"):
        catalogue._positive_problem(LotkaVolterra(), "lv", 0, 0, catalogue.TUTORIAL_DATA_OPTIONS)
    assert catalogue._positive_problem(LotkaVolterra(), "lv", 0, 1, catalogue.TUTORIAL_DATA_OPTIONS).batch_size == 1


def test_the_ude_has_the_documented_44_parameters():
    # θ = [α, γ, W1 (8 x 2), b1 (8), W2 (2 x 8), b2 (2)]: 2 + 16 + 8 + 16 + 2
    assert catalogue.ude_problem(batch=2).model.n_params == 44
