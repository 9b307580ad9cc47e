"""The problem-file round trip (harness/problems/_file.py) on random problems: every key survives.

Each example draws a problem with a random subset of the optional keys (decay, theta_true, a name,
augment, time dependence, a mask), writes it with `save_problem`, reads it with `load_problem` and
compares every attribute with the original, exactly: a file is bytes, not an approximation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model import ACTIVATIONS, MLP
from harness.problems import Problem, load_problem, save_problem


@st.composite
def problems(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 3))
    augment = draw(st.integers(0, 2))
    width = n + augment
    hidden = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    decay = rng.uniform(0.0, 5.0, width) if draw(st.booleans()) else None
    model = MLP((width, *hidden, width), activation=draw(st.sampled_from(sorted(ACTIVATIONS))), decay=decay,
                time_dependent=draw(st.booleans()))
    b = draw(st.integers(1, 4))
    k = draw(st.integers(1, 3))
    t0 = draw(st.floats(-5.0, 5.0, allow_nan=False))
    times = t0 + np.cumsum(rng.uniform(0.1, 2.0, k))
    mask = None
    if draw(st.booleans()):
        mask = rng.random((k, b)) < 0.5
        mask[0, 0] = True  # at least one observation
    theta_true = model.init(rng) if draw(st.booleans()) else None
    name = draw(st.text(alphabet="abcxyz_-09", min_size=1, max_size=12))
    return Problem(model, model.init(rng), rng.uniform(-3, 3, (b, n)), t0, times, rng.normal(size=(k, b, n)),
                   name, theta_true=theta_true, augment=augment, mask=mask)


def _same_array(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype.kind == b.dtype.kind and a.shape == b.shape and np.array_equal(a, b)


@settings()
@given(problem=problems())
def test_every_key_survives_a_round_trip(problem):
    with tempfile.TemporaryDirectory() as folder:
        loaded = load_problem(save_problem(problem, Path(folder) / "p.npz"))
    assert loaded.model.widths == problem.model.widths
    assert loaded.model.activation == problem.model.activation
    assert loaded.model.time_dependent is problem.model.time_dependent
    assert _same_array(loaded.model.decay, problem.model.decay)
    assert loaded.augment == problem.augment
    assert loaded.name == problem.name
    assert loaded.t0 == problem.t0
    for key in ("theta", "z0", "times", "data", "theta_true", "mask"):
        assert _same_array(getattr(loaded, key), getattr(problem, key)), key
    assert loaded.n_datapoints == problem.n_datapoints
    assert loaded.loss_constant == problem.loss_constant


@settings(max_examples=10)
@given(problem=problems())
def test_a_file_without_the_name_takes_the_file_stem(problem):
    with tempfile.TemporaryDirectory() as folder:
        path = save_problem(problem, Path(folder) / "stem_of_file.npz")
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files if k != "name"}
        np.savez(path, **arrays)
        assert load_problem(path).name == "stem_of_file"
