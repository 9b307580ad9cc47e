"""Problem files' keys (harness/problems/_file.py) one by one: a named model's text keys and JSON
parameters, the optional keys' types, shapes declared against z0, times and theta before anything is
decompressed, the memory allowance; and `augment_problem` / `build_problem(augment=...)`."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.errors import HarnessInputError
from harness.models import LotkaVolterra
from harness.problems import Problem, build_problem, load_problem, save_problem
from harness.problems._catalogue import augment_problem


@pytest.fixture
def files(tmp_path):
    """(path of a saved MLP problem, path of a saved Lotka-Volterra problem)."""
    mlp = harness.seed_problem(batch=2)
    lv = Problem(
        LotkaVolterra(init_theta=(0.5, 2.5, 0.8, 2.5)),
        np.array([0.5, 2.5, 0.8, 2.5]),
        np.ones((2, 2)),
        0.0,
        np.array([1.0, 2.0]),
        np.ones((2, 2, 2)),
        "lv",
        theta_true=np.array([0.5, 2.5, 0.8, 2.5]),
    )
    return save_problem(mlp, tmp_path / "mlp.npz"), save_problem(lv, tmp_path / "lv.npz")


def rewrite(path, **changes):
    with np.load(path) as saved:
        arrays = dict(saved)
    arrays.update({k: v for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        del arrays[k]
    np.savez(path, **arrays)
    return path


def message(path):
    with pytest.raises(HarnessInputError) as err:
        load_problem(path)
    text = str(err.value)
    prefix = f"problem file {str(path)!r}"
    assert text.startswith(prefix)
    return text[len(prefix) :]


def test_a_named_models_file_needs_no_mlp_keys_and_builds_with_its_parameters(files):
    _, lv = files
    loaded = load_problem(lv)
    assert loaded.model.spec() == LotkaVolterra(init_theta=(0.5, 2.5, 0.8, 2.5)).spec()
    # without parameters the model's defaults are used
    plain = load_problem(rewrite(lv, model_parameters=None))
    assert plain.model.spec() == LotkaVolterra().spec()


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"model": np.array([b"harness.models:LotkaVolterra"])}, ": model is |S28 (1,): expected a string"),
        ({"model": np.array(["harness.models:LotkaVolterra"])}, ": model is <U28 (1,): expected a string"),
        ({"model_parameters": np.array(b"{}")}, ": model_parameters is |S2 (): expected a string"),
        (
            {"model_parameters": np.array("{not json")},
            ": model_parameters is not JSON (Expecting property name enclosed in double quotes)",
        ),
    ],
)
def test_a_named_models_keys_must_be_text_and_json(files, changes, expected):
    _, lv = files
    assert message(rewrite(lv, **changes)) == expected


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"augment": np.array(1.0)}, ": augment is float64 (): expected an integer scalar"),
        ({"augment": np.array([1])}, ": augment is int64 (1,): expected an integer scalar"),
        ({"time_dependent": np.array(1)}, ": time_dependent is int64 (): expected a bool scalar"),
        ({"mask": np.ones((1, 2), dtype=np.int64)}, ": mask is int64 (1, 2): expected a bool array (K, B)"),
        ({"activation": np.array(1.0)}, ": activation is float64: expected a string"),
        (
            {"widths": None},
            " is missing ['widths']: a problem file needs ['widths', 'activation', 'theta', 'z0', 't0', "
            "'times', 'data']",
        ),
    ],
)
def test_the_optional_keys_have_their_types(files, changes, expected):
    mlp, _ = files
    assert message(rewrite(mlp, **changes)) == expected


def test_the_model_file_accepts_the_optional_keys_of_their_right_types(files):
    mlp, _ = files
    loaded = load_problem(rewrite(mlp, augment=np.array(0, dtype=np.uint8), mask=np.ones((1, 2), dtype=bool)))
    assert loaded.augment == 0 and loaded.mask.all()


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"mask": np.ones((2, 2), dtype=bool)},
            ": mask declares shape (2, 2): expected (1, 2) (K = 1 times, B = 2 states of N = 2 from times and z0)",
        ),
        ({"theta_true": np.zeros(3)}, ": theta_true declares shape (3,): expected (17,), theta's"),
    ],
)
def test_declared_shapes_are_checked_against_z0_times_and_theta(files, changes, expected):
    mlp, _ = files
    assert message(rewrite(mlp, **changes)) == expected


def test_a_file_without_times_or_with_a_flat_z0_is_named_by_the_full_checks(files):
    mlp, _ = files
    assert message(rewrite(mlp, times=None)).startswith(" is missing ['times']")
    z0 = message(rewrite(mlp, z0=np.zeros(4)))
    assert "z0" in z0 and "declares" not in z0


def test_a_file_declaring_more_than_half_the_memory_is_refused_before_reading(files, monkeypatch):
    import harness._memory_budget as budget

    mlp, _ = files
    with np.load(mlp) as saved:
        declared = sum(saved[k].nbytes for k in saved.files)
    monkeypatch.setattr(budget, "available_memory", lambda: (2 * declared + 1, "test"))
    load_problem(mlp)
    monkeypatch.setattr(budget, "available_memory", lambda: (2 * declared - 2, "test"))
    assert " declares " in message(mlp) and "not decompressed" in message(mlp)


def test_augment_problem_keeps_the_data_the_mask_and_the_models_options():
    base = harness.problems.build_problem("irregular", batch=3)
    augmented = augment_problem(base, 2)
    assert augmented.augment == 2 and augmented.name == "irregular_augmented2"
    np.testing.assert_array_equal(augmented.mask, base.mask)
    assert augmented.model.widths == (4, 3, 4)
    np.testing.assert_array_equal(augmented.theta, augmented.model.init(np.random.default_rng(0)))
    timed = augment_problem(build_problem("time_dependent", batch=2), 1, seed=5)
    assert timed.model.time_dependent and timed.model.widths == (3, 3, 3)
    np.testing.assert_array_equal(timed.theta, timed.model.init(np.random.default_rng(5)))
    stiff = augment_problem(build_problem("stiff", batch=2), 1)
    assert stiff.model.decay.tolist() == [1.0, 1000.0, 0.0]
    assert augment_problem(base, 0) is base


@pytest.mark.parametrize(
    "augment, expected",
    [
        (-1, "augment=-1: expected an integer >= 0"),
        (True, "augment=True: expected an integer >= 0"),
        (1.5, "augment=1.5: expected an integer >= 0"),
    ],
)
def test_augment_problem_refuses_what_is_not_a_count(augment, expected):
    with pytest.raises(HarnessInputError) as err:
        augment_problem(harness.seed_problem(batch=2), augment)
    assert str(err.value) == expected


def test_only_a_plain_mlp_problem_is_augmented():
    once = augment_problem(harness.seed_problem(batch=2), 1)
    with pytest.raises(
        HarnessInputError, match=r"^problem 'seed_augmented1' is already augmented by 1: augment a plain problem$"
    ):
        augment_problem(once, 1)
    lv = build_problem("lotka_volterra", batch=2)
    with pytest.raises(HarnessInputError) as err:
        augment_problem(lv, 1)
    assert str(err.value) == (
        f"augment=1: augmenting needs an MLP (its widths grow by A), and 'lotka_volterra' has {lv.model.describe()}"
    )


def test_build_problem_augments_with_theta_from_seed_plus_one():
    problem = build_problem("seed", batch=2, seed=4, augment=1)
    np.testing.assert_array_equal(problem.theta, problem.model.init(np.random.default_rng(5)))
    default = build_problem("seed", batch=2, augment=1)
    np.testing.assert_array_equal(default.theta, default.model.init(np.random.default_rng(1)))


def test_a_file_without_z0_is_named_by_the_full_checks(files):
    mlp, _ = files
    assert message(rewrite(mlp, z0=None)).startswith(" is missing ['z0']")
