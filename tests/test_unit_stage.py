"""The single-column stage kernel (harness._compiled._unit_stage) and the borrowed views it runs on.

The loop tests (tests/test_compiled_loop.py) check whole gradients at B = 1 against the numpy driver
with tanh networks. Here one stage is checked against `MLP.vjp`, plain numpy backpropagation that
shares no code with the kernel, for every activation, with the decay term, and on widths that take
each of the kernel's two product forms forwards and backwards (a layer that widens, one that
narrows). One stage differs from numpy by a few ulps times the layers' condition (the kernel's own
tanh is within 1e-15 of np.tanh, its sums run in another order), so 1e-14 relative, as for the batch
kernel in tests/test_compiled.py, while a wrong index, slope or sign is O(1e-2) or more.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled path needs numba")

from numba import njit

from harness._compiled._borrowed import reshaped
from harness._compiled._unit_stage import unit_stage, unit_theta_products
from harness._compiled._arguments import network_arguments
from harness._stage_vjps import _augmented_layout
from harness.model import MLP

ONE_STAGE = 1e-14  # relative; see the module docstring

CASES = [
    ((2, 50, 2), "tanh", None),  # the benchmark's single trajectory
    ((3, 20, 5, 3), "sigmoid", (0.5, 2.0, 7.0)),  # 20 -> 5 and 5 -> 3 narrow: the "dot" form, with decay
    ((2, 4, 16, 2), "softplus", None),  # 4 -> 16 widens: the backward "dot" form in a hidden layer
]


def rel(x, ref):
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("widths,activation,decay", CASES)
def test_unit_stage_matches_model_vjp(widths, activation, decay):
    rng = np.random.default_rng(5)
    model = MLP(widths, activation, None if decay is None else np.array(decay))
    theta = model.init(rng)
    n = widths[0]
    z, a = rng.uniform(-3, 3, n), rng.normal(size=n)
    f_ref, az_ref, theta_ref = model.vjp(0.0, z[None, :], theta, a[None, :])
    (w, act, weights, w_off, in_rows, cot_rows, decay_arg, has_decay, inputs, cots, slopes, _) = (
        network_arguments(model, theta, 1))
    records = inputs.reshape(-1), cots.reshape(-1), slopes.reshape(-1)
    f, az, products = np.empty(n), np.empty(n), np.empty(model.n_params)
    unit_stage(w, act, weights, w_off, in_rows, cot_rows, decay_arg, has_decay, z, a, 1.0, *records, f, az, True,
               True)
    unit_theta_products(w, w_off, in_rows, cot_rows, records[0], records[1], products)
    to_theta, _ = _augmented_layout(tuple(widths))
    assert rel(f, f_ref[0]) <= ONE_STAGE
    assert rel(az, az_ref[0]) <= ONE_STAGE
    assert rel(products[to_theta], theta_ref) <= ONE_STAGE
    # f alone (the forward solve's stage) is the same f
    f_alone = np.empty(n)
    unit_stage(w, act, weights, w_off, in_rows, cot_rows, decay_arg, has_decay, z, a, 1.0, *records, f_alone,
               f_alone, True, False)
    assert rel(f_alone, f_ref[0]) <= ONE_STAGE


@njit
def _reshaped_sum(x, rows, columns):
    return reshaped(x, (rows, columns)).sum()


def test_reshaped_views_the_same_memory_and_refuses_a_wrong_size():
    x = np.arange(6.0)
    assert _reshaped_sum(x, 2, 3) == 15.0
    with pytest.raises(ValueError, match="does not hold the array's size"):
        _reshaped_sum(x, 4, 2)
