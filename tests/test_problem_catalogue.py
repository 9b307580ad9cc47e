"""The catalogue's problems as their docstrings describe them, built small: models, times, data,
masks and ground truths; and the memory check that refuses a batch before allocating it."""

from __future__ import annotations

import numpy as np
import pytest

from harness._forward import SolveOptions, solve_forward
from harness.errors import HarnessInputError
from harness.problems import (
    PROBLEMS,
    STIFF_DECAY,
    annuli_problem,
    build_problem,
    deep_problem,
    irregular_problem,
    make_problem,
    multi_time_problem,
    reflection_problem,
    stiff_problem,
    time_dependent_problem,
)
from harness.model import MLP

OPTIONS = SolveOptions("DP5", 1e-6, 1e-4)


def test_each_catalogue_problem_has_its_documented_shape():
    deep = deep_problem(batch=3)
    assert deep.model.widths == (2, 8, 8, 2) and deep.name == "deep" and deep.batch_size == 3
    multi = multi_time_problem(batch=3)
    assert multi.times.tolist() == [2.5, 5.0, 7.5, 10.0] and multi.name == "multi_time"
    td = time_dependent_problem(batch=3)
    assert td.model.time_dependent and td.model.widths == (2, 3, 2) and td.times.tolist() == [2.5, 5.0, 7.5, 10.0]
    assert td.name == "time_dependent"
    stiff = stiff_problem(batch=3)
    assert stiff.model.decay.tolist() == list(STIFF_DECAY) == [1.0, 1000.0] and stiff.name == "stiff"
    for p in (deep, multi, td, stiff):
        assert np.all(np.abs(p.z0) <= 10.0) and p.t0 == 0.0 and p.theta_true is not None
        assert not np.array_equal(p.theta, p.theta_true)  # the model to train is drawn from seed + 1
    assert set(PROBLEMS) == {"seed", "stiff", "multi_time", "deep", "augmented", "time_dependent", "irregular",
                             "reflection", "annuli", "lynx_hare", "lotka_volterra", "ude"}


def test_the_data_are_the_ground_truth_solved_with_the_data_options():
    """By the numpy path (see the next test), to the bit."""
    import harness._compiled as compiled

    p = multi_time_problem(batch=3, data_options=OPTIONS)
    stiff = stiff_problem(batch=2, data_options=OPTIONS)  # solved with the stiff default, not DP5
    with compiled.numpy_reference():
        truth = solve_forward(p.model, p.theta_true, p.z0, p.t0, p.times, OPTIONS)
        implicit = solve_forward(stiff.model, stiff.theta_true, stiff.z0, 0.0, stiff.times,
                                 SolveOptions("RadauIIA5", 1e-6, 1e-4))
    np.testing.assert_array_equal(p.data, truth.z_at_times)
    np.testing.assert_array_equal(stiff.data, implicit.z_at_times)


def test_the_irregular_problem_observes_each_state_at_least_once():
    p = irregular_problem(batch=40, seed=2)
    assert p.name == "irregular" and p.mask.shape == (4, 40)
    assert p.mask.any(axis=0).all() and not p.mask.all()
    assert 0.3 < p.mask.mean() < 0.7  # each pair kept with probability 1/2
    assert np.array_equal(p.mask, irregular_problem(batch=40, seed=2).mask)
    assert not np.array_equal(p.mask, irregular_problem(batch=40, seed=3).mask)


def test_reflection_and_annuli_are_the_papers_tasks():
    r = reflection_problem(batch=20, seed=1)
    assert r.model.widths == (1, 16, 1) and r.times.tolist() == [1.0] and r.name == "reflection"
    assert np.array_equal(r.data[0], -r.z0) and np.all(np.abs(r.z0) <= 1.0) and r.theta_true is None
    a = annuli_problem(batch=20, seed=1)
    radius = np.linalg.norm(a.z0, axis=1)
    inner = np.arange(20) < 10
    assert np.all(radius[inner] < 0.5) and np.all((radius[~inner] > 1.0) & (radius[~inner] < 1.5))
    np.testing.assert_allclose(a.data[0][inner], 4.0 * a.z0[inner], rtol=1e-15)
    np.testing.assert_allclose(a.data[0][~inner], 0.25 * a.z0[~inner], rtol=1e-15)
    assert a.model.widths == (2, 32, 2) and a.name == "annuli"


def test_build_problem_passes_its_arguments_and_augments():
    p = build_problem("deep", batch=2, seed=4)
    assert p.model.widths == (2, 8, 8, 2) and p.batch_size == 2
    assert np.array_equal(p.theta, deep_problem(batch=2, seed=4).theta)
    aug = build_problem("multi_time", batch=2, augment=1)
    assert aug.augment == 1 and aug.model.widths == (3, 3, 3)
    with pytest.raises(HarnessInputError, match=r"unknown problem 'nope': expected one of \['annuli', 'augmented'"):
        build_problem("nope")


def test_make_problem_checks_its_inputs_and_memory():
    model = MLP((2, 3, 2))
    with pytest.raises(HarnessInputError, match="batch=0: expected an integer >= 1"):
        make_problem(model, batch=0)
    with pytest.raises(HarnessInputError, match=r"augment=2: expected an integer from 0 to 1"):
        make_problem(model, batch=2, augment=2)
    with pytest.raises(HarnessInputError, match=r"batch=1000000000000000: needs at least .* GiB of memory \(21 "
                                                r"float64 arrays of 1000000000000000 x 2\).*expected a smaller batch"):
        make_problem(model, batch=10**15)
    p = make_problem(MLP((3, 3, 3)), batch=2, augment=1, times=(1.0, 2.0), box=0.5, name="x")
    assert p.augment == 1 and p.data.shape == (2, 2, 2) and np.all(np.abs(p.observed_z0) <= 0.5)
    assert np.all(p.z0[:, 2] == 0) and p.name == "x"


def test_data_are_the_numpy_paths_whatever_the_compiled_codes_state(monkeypatch):
    """A seed's data are the numpy path's solve to the last bit, with the compiled code forced on, and
    making a problem never asks for the compiled code (so never waits for its build): the first run,
    which uses numpy while the module is built, and later runs train on identical data. (The compiled
    forward solve of the same ground truth differs from numpy's by rounding, ~1e-14 here: equality
    below to the bit is what tells the two apart.)"""
    import harness._compiled as compiled
    from harness.problems import seed_problem

    with compiled.numpy_reference():
        reference = seed_problem(batch=40)
    asked = []
    monkeypatch.setattr(compiled, "_ready", lambda: asked.append("_ready") or (False, "not asked"))
    monkeypatch.setattr(compiled, "_load_kernels", lambda: asked.append("_load_kernels"))
    compiled.set_enabled(True)
    try:
        forced_on = seed_problem(batch=40)
    finally:
        compiled.set_enabled(None)
    assert asked == []
    assert np.array_equal(forced_on.data, reference.data) and np.array_equal(forced_on.z0, reference.z0)
