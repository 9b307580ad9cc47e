"""The gradient metrics (harness/_metrics.py, harness/_distances.py) on random vectors against direct formulas.

The direct evaluations are written differently from the module (explicit sums and loops rather than
numpy norms and argmax), and the invariances any distance between a gradient and its reference must
have (scale, sign, shape) are checked on the same draws.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness._metrics import (
    compare_vectors,
    cosine_similarity,
    parameter_names,
    relative_error,
    state_names,
    worst_entry,
)
from harness.model import MLP

SETTINGS = settings()  # the profile of conftest.py: 50 examples, 20 under mutation testing
# Magnitudes of 1e-100 and above (or exactly 0): the 2-norm of numpy squares its entries, which
# underflow below ~1e-154, and gradients of that size are not what the metrics are for.
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False).map(lambda x: x if abs(x) > 1e-100 else 0.0)


@st.composite
def pairs(draw):
    shape = draw(st.sampled_from([(1,), (5,), (2, 3), (4, 2)]))
    return draw(arrays(np.float64, shape, elements=finite)), draw(arrays(np.float64, shape, elements=finite))


def _norm(values) -> float:
    return math.sqrt(math.fsum(v * v for v in values))


@SETTINGS
@given(pair=pairs())
def test_relative_error_is_the_norm_of_the_difference_over_the_norm_of_the_reference(pair):
    g, r = pair
    flat_g, flat_r = g.ravel().tolist(), r.ravel().tolist()
    diff = _norm([a - b for a, b in zip(flat_g, flat_r)])
    scale = _norm(flat_r)
    expected = diff / scale if scale > 0 else diff
    assert math.isclose(relative_error(g, r), expected, rel_tol=1e-12, abs_tol=1e-300)
    assert relative_error(r, r) == 0.0


@SETTINGS
@given(pair=pairs(), c=st.sampled_from([-3.0, 0.5, 2.0, 1e3]))
def test_relative_error_and_worst_entry_do_not_depend_on_the_scale(pair, c):
    g, r = pair
    if not np.any(r):
        return
    assert math.isclose(relative_error(c * g, c * r), relative_error(g, r), rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(worst_entry(c * g, c * r)[0], worst_entry(g, r)[0], rel_tol=1e-12, abs_tol=1e-15)


@SETTINGS
@given(pair=pairs())
def test_worst_entry_is_the_largest_difference_over_the_largest_reference_entry(pair):
    g, r = pair
    flat_g, flat_r = g.ravel().tolist(), r.ravel().tolist()
    diffs = [abs(a - b) for a, b in zip(flat_g, flat_r)]
    i = max(range(len(diffs)), key=lambda j: (diffs[j], -j))  # the first of the largest
    scale = max(abs(v) for v in flat_r)
    worst, index = worst_entry(g, r)
    assert index == i
    assert math.isclose(worst, diffs[i] / scale if scale > 0 else diffs[i], rel_tol=1e-15, abs_tol=0)


@SETTINGS
@given(pair=pairs())
def test_cosine_similarity_by_its_definition(pair):
    g, r = pair
    flat_g, flat_r = g.ravel().tolist(), r.ravel().tolist()
    denominator = _norm(flat_g) * _norm(flat_r)
    cosine = cosine_similarity(g, r)
    if denominator == 0:
        assert math.isnan(cosine)
        return
    assert math.isclose(cosine, math.fsum(a * b for a, b in zip(flat_g, flat_r)) / denominator,
                        rel_tol=1e-9, abs_tol=1e-12)
    assert -1 - 1e-12 <= cosine <= 1 + 1e-12
    assert math.isclose(cosine_similarity(-g, r), -cosine, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(cosine_similarity(r, g), cosine, rel_tol=1e-12, abs_tol=1e-15)


@SETTINGS
@given(pair=pairs())
def test_compare_vectors_names_the_worst_entry(pair):
    g, r = pair
    names = [f"e{i}" for i in range(g.size)]
    out = compare_vectors(g, r, names)
    worst, i = worst_entry(g, r)
    assert out == {**out, "relative_error": relative_error(g, r), "worst_entry": worst, "worst_index": i,
                   "worst_name": f"e{i}"}
    assert compare_vectors(g, r)["worst_name"] == str(i)
    assert np.isnan(out["cosine"]) or out["cosine"] == cosine_similarity(g, r)


@settings(max_examples=20)
@given(n=st.integers(1, 3), hidden=st.lists(st.integers(1, 4), min_size=1, max_size=3), td=st.booleans())
def test_parameter_names_follow_the_layout(n, hidden, td):
    model = MLP((n, *hidden, n), time_dependent=td)
    names = parameter_names(model)
    assert len(names) == model.n_params == len(set(names))
    # W1 first, row-major, then b1: the first row of W1 spans the inputs (N, plus t if time-dependent)
    inputs = n + td
    assert names[:inputs] == [f"W1[0,{j}]" for j in range(inputs)]
    assert names[hidden[0] * inputs] == "b1[0]"
    assert names[-1] == f"b{len(hidden) + 1}[{n - 1}]"


@settings(max_examples=10)
@given(b=st.integers(1, 5), n=st.integers(1, 4))
def test_state_names_are_row_major(b, n):
    names = state_names(b, n)
    assert len(names) == b * n
    for flat, name in enumerate(names):
        assert name == f"z0[{flat // n},{flat % n}]"
