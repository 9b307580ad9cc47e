"""Problems (harness/problems/): the options' validation and bookkeeping (augment, mask), the grid of
per-trajectory observations, augmenting a catalogue problem, the one-line description, and every
mistake a problem file can carry, each named in its message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.model import MLP
from harness.problems import Problem, augment_problem, grid_and_mask, load_problem, save_problem, seed_problem


def _problem(width=3, augment=1, b=2, k=2, mask=None, **kwargs):
    model = MLP((width, 4, width), **kwargs)
    rng = np.random.default_rng(3)
    n = max(width - int(augment), 1)
    return Problem(model, model.init(rng), rng.normal(size=(b, n)), 0.0, np.arange(1.0, k + 1.0),
                   rng.normal(size=(k, b, n)), "p", augment=augment, mask=mask)


@pytest.mark.parametrize("augment, fragment", [
    (3, r"augment=3: expected an integer from 0 to 2 \(the model's state dimension 3"),
    (-1, "augment=-1: expected an integer from 0 to 2"),
    (True, "augment=True"),
    (1.0, "augment=1.0"),
])
def test_bad_augment_is_named(augment, fragment):
    with pytest.raises(HarnessInputError, match=fragment):
        _problem(augment=augment)


def test_augmented_z0_is_padded_with_zeros_and_checked():
    p = _problem()
    assert p.z0.shape == (2, 3) and np.all(p.z0[:, 2] == 0)
    assert p.observed_dim == 2 and np.array_equal(p.observed_z0, p.z0[:, :2])
    full = np.concatenate((p.observed_z0, np.zeros((2, 1))), axis=1)
    same = Problem(p.model, p.theta, full, 0.0, p.times, p.data, augment=1)
    assert np.array_equal(same.z0, p.z0)
    with pytest.raises(HarnessInputError, match=r"z0's augmented columns 2..2 are not zero"):
        Problem(p.model, p.theta, full + 1.0, 0.0, p.times, p.data, augment=1)
    with pytest.raises(HarnessInputError, match=r"z0 has shape \(2, 1\): expected \(B, 2\) or \(B, 3\) with zeros "
                                                r"in the last 1 with B >= 1"):
        Problem(p.model, p.theta, np.zeros((2, 1)), 0.0, p.times, p.data, augment=1)


def test_the_loss_sees_only_the_observed_components_and_times():
    mask = np.array([[True, False], [True, True]])
    p = _problem(mask=mask)
    z = np.random.default_rng(0).normal(size=(2, 2, 3))
    loss, dl = p.loss_terms(z)
    residual = (z[..., :2] - p.data) * mask[..., None]
    assert loss == pytest.approx(0.5 * np.sum(residual**2) + 3 * math.log(2 * math.pi), rel=1e-14)
    assert np.array_equal(dl[..., :2], residual) and np.all(dl[..., 2] == 0)
    assert p.n_datapoints == 3 and p.loss_constant == pytest.approx(3 * math.log(2 * math.pi), rel=1e-15)
    np.testing.assert_allclose(p.loss_by_row(z), 0.5 * np.sum(residual**2, axis=(0, 2)), rtol=1e-14)
    assert p.loglik_per_datapoint(6.0) == -2.0
    assert p.perfect_loglik_per_datapoint == pytest.approx(-math.log(2 * math.pi), rel=1e-15)
    assert p.batch_size == 2 and p.t1 == 2.0


def test_masked_data_are_zeroed_where_unobserved_and_nan_is_accepted_there():
    mask = np.array([[True, False], [False, True]])
    p = _problem(augment=0, width=2, mask=mask)
    data = p.data.copy()
    data[0, 1] = np.nan
    q = Problem(p.model, p.theta, p.z0, 0.0, p.times, data, mask=mask)
    assert np.all(q.data[~mask] == 0) and np.array_equal(q.data[mask], p.data[mask])


@pytest.mark.parametrize("mask, fragment", [
    (np.ones((2, 2), dtype=int), r"mask is int64 \(2, 2\): expected bool \(K, B\) = \(2, 2\)"),
    (np.ones((2, 3), dtype=bool), r"mask is bool \(2, 3\): expected bool"),
    (np.zeros((2, 2), dtype=bool), "mask is False everywhere"),
])
def test_bad_masks_are_named(mask, fragment):
    with pytest.raises(HarnessInputError, match=fragment):
        _problem(mask=mask)


def test_describe_names_the_options():
    text = _problem(mask=np.array([[True, False], [True, True]])).describe()
    assert text.startswith("p: ") and ", augmented by 1" in text and "3 of 4 (time, state) pairs observed" in text
    assert "B = 2" in text and "2 times up to 2" in text and "P = " in text
    plain = _problem(augment=0, width=2, k=1).describe()
    assert "augmented" not in plain and "t1 = 1" in plain


def test_grid_and_mask_puts_each_trajectory_on_the_union_grid():
    grid, data, mask = grid_and_mask([[0.5, 2.0], [1.0, 2.0, 3.0]], [[[1, 2], [3, 4]], [[5, 6], [7, 8], [9, 10]]])
    assert grid.tolist() == [0.5, 1.0, 2.0, 3.0]
    assert mask.tolist() == [[True, False], [False, True], [True, True], [False, True]]
    assert data[:, 0].tolist() == [[1, 2], [0, 0], [3, 4], [0, 0]]
    assert data[:, 1].tolist() == [[0, 0], [5, 6], [7, 8], [9, 10]]
    g1, d1, m1 = grid_and_mask([[1.0, 2.0]], [[3.0, 4.0]])  # one component given flat
    assert d1.shape == (2, 1, 1) and d1[:, 0, 0].tolist() == [3.0, 4.0] and m1.all()


@pytest.mark.parametrize("times, values, fragment", [
    ([[1.0]], [], "got 1 time lists and 0 value lists"),
    ([], [], "got 0 time lists and 0 value lists"),
    ([[1.0, 2.0]], [[[1.0, 2.0]]], r"values\[0\] has shape \(1, 2\): expected \(2, N\)"),
    ([[2.0, 1.0]], [[[1.0], [2.0]]], r"times\[0\] = \[2.0, 1.0\] are not strictly increasing"),
    ([[1.0], [1.0]], [[[1.0]], [[1.0, 2.0]]], r"values have \[1, 2\] components"),
    ([[np.nan]], [[[1.0]]], r"times\[0\] contains 1 NaN"),
])
def test_grid_and_mask_names_the_bad_input(times, values, fragment):
    with pytest.raises(HarnessInputError, match=fragment):
        grid_and_mask(times, values)


def test_augment_problem_keeps_the_data_and_extends_the_model():
    base = seed_problem(batch=3)
    assert augment_problem(base, 0) is base
    aug = augment_problem(base, 2, seed=5)
    assert aug.augment == 2 and aug.model.widths == (4, 3, 4) and aug.name == "seed_augmented2"
    assert np.array_equal(aug.data, base.data) and np.array_equal(aug.observed_z0, base.z0)
    assert aug.theta_true is None and np.array_equal(aug.theta, aug.model.init(np.random.default_rng(5)))
    decayed = augment_problem(_problem(augment=0, width=2, decay=np.array([1.0, 2.0])), 1)
    assert decayed.model.decay.tolist() == [1.0, 2.0, 0.0]
    with pytest.raises(HarnessInputError, match="is already augmented by 2"):
        augment_problem(aug, 1)
    with pytest.raises(HarnessInputError, match="augment=-1: expected an integer >= 0"):
        augment_problem(base, -1)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a.pop("theta"), r"is missing \['theta'\]: a problem file needs"),
    (lambda a: a.update(colour=np.array(1)), r"has unknown keys \['colour'\]: expected"),
    (lambda a: a.update(format=np.array("other-2")), r"has format 'other-2': expected 'harness-problem-1'"),
    (lambda a: a.update(widths=np.array([2.0, 3.0, 2.0])), "widths must be a 1-D integer array, got float64"),
    (lambda a: a.update(augment=np.array(1.5)), r"augment is float64 \(\): expected an integer scalar"),
    (lambda a: a.update(augment=np.array([1])), r"augment is int64 \(1,\): expected an integer scalar"),
    (lambda a: a.update(time_dependent=np.array(1)), r"time_dependent is int64 \(\): expected a bool scalar"),
    (lambda a: a.update(mask=np.ones((1, 2))), r"mask is float64 \(1, 2\): expected a bool array"),
    (lambda a: a.update(t0=np.array([0.0])), r"t0 has shape \(1,\): expected a scalar"),
    (lambda a: a.update(activation=np.array("relu")), "activation='relu'"),
])
def test_every_mistake_in_a_problem_file_is_named(tmp_path, change, fragment):
    path = save_problem(_problem(augment=0, width=2, k=1), tmp_path / "good.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    bad = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(HarnessInputError, match=fragment) as err:
        load_problem(bad)
    assert str(err.value).startswith(f"problem file {str(bad)!r}")


def test_unreadable_and_missing_problem_files(tmp_path):
    with pytest.raises(HarnessInputError, match="does not exist"):
        load_problem(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(HarnessInputError, match=r"junk.npz.* is not a (readable )?\.npz"):
        load_problem(tmp_path / "junk.npz")


def test_a_plain_problem_file_has_no_optional_keys_it_does_not_need(tmp_path):
    path = save_problem(_problem(augment=0, width=2, k=1), tmp_path / "plain.npz")
    with np.load(path) as npz:
        assert set(npz.files) == {"format", "widths", "activation", "theta", "z0", "t0", "times", "data", "name"}
