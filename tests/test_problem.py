"""Problem (harness/problems/_problem.py): validation, the Gaussian loss and its gradient, and the catalogue
problems (harness/problems/_catalogue.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness._forward import solve_forward
from harness.model import MLP
from harness.problems import Problem
from harness.problems import (
    PROBLEMS,
    STIFF_DECAY,
    TUTORIAL_DATA_OPTIONS,
    build_problem,
    deep_problem,
    multi_time_problem,
    seed_problem,
    stiff_problem,
)
from harness.sensitivity import gradient

EPS = np.finfo(np.float64).eps


def _valid(**overrides):
    """A small valid problem (N = 2, B = 4, K = 3) with fields replaced by `overrides`."""
    model = MLP((2, 3, 2))
    rng = np.random.default_rng(0)
    fields = dict(
        model=model, theta=model.init(rng), z0=rng.normal(size=(4, 2)), t0=0.0,
        times=np.array([1.0, 2.0, 3.0]), data=rng.normal(size=(3, 4, 2)),
    )
    fields.update(overrides)
    return Problem(**fields)


def _with_bad(array, index, value):
    out = np.array(array, dtype=float)
    out[index] = value
    return out


BASE = _valid()


# ----------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"z0": np.zeros((4, 3))}, r"z0 has shape \(4, 3\): expected \(B, 2\)"),
        ({"z0": np.zeros(2)}, r"z0 has shape \(2,\)"),
        ({"z0": np.zeros((0, 2))}, r"z0 has shape \(0, 2\)"),
        ({"z0": _with_bad(BASE.z0, (1, 0), np.nan)}, "z0 contains 1 NaN or inf"),
        ({"z0": _with_bad(BASE.z0, (2, 1), np.inf)}, "z0 contains 1 NaN or inf"),
        ({"theta": np.zeros(16)}, r"theta has shape \(16,\): expected \(17,\)"),
        ({"theta": _with_bad(BASE.theta, 3, np.nan)}, "theta contains 1 NaN or inf"),
        ({"theta": _with_bad(BASE.theta, 0, -np.inf)}, "theta contains 1 NaN or inf"),
        ({"theta_true": _with_bad(BASE.theta, 5, np.nan)}, "theta_true contains 1 NaN or inf"),
        ({"data": np.zeros((3, 4, 3))}, r"data has shape \(3, 4, 3\): expected \(3, 4, 2\)"),
        ({"data": np.zeros((2, 4, 2))}, r"data has shape \(2, 4, 2\): expected \(3, 4, 2\)"),
        ({"data": _with_bad(BASE.data, (0, 0, 0), np.nan)}, "data contains 1 NaN or inf"),
        ({"data": _with_bad(_with_bad(BASE.data, (2, 3, 1), np.inf), (1, 1, 1), np.nan)},
         "data contains 2 NaN or inf"),
        ({"t0": np.nan}, "t0=nan"),
        ({"t0": np.inf}, "t0=inf"),
        ({"t0": "0"}, "t0='0'"),
        ({"t0": 1.0}, r"first observation time 1 <= t0 = 1"),  # t1 == t0
        ({"t0": 5.0}, r"first observation time 1 <= t0 = 5"),  # t1 < t0
        ({"times": np.array([1.0, 1.0, 3.0])}, r"times \[1.0, 1.0, 3.0\] are not strictly increasing"),
        ({"times": np.array([1.0, 3.0, 2.0])}, r"times \[1.0, 3.0, 2.0\] are not strictly increasing"),
        ({"times": np.array([1.0, np.nan, 3.0])}, "times contains 1 NaN or inf"),
        ({"times": np.array([]), "data": np.zeros((0, 4, 2))}, "times is empty"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_problem_rejected_with_one_line_message(overrides, fragment):
    with pytest.raises(HarnessInputError, match=fragment) as err:
        _valid(**overrides)
    assert "\n" not in str(err.value)  # the CLI prints it on one line


def test_valid_problem_normalises_types():
    p = _valid(t0=0, times=[1, 2, 3], z0=BASE.z0.tolist())
    assert isinstance(p.t0, float) and p.times.dtype == np.float64 and p.z0.dtype == np.float64
    assert p.batch_size == 4 and p.n_datapoints == 12 and p.t1 == 3.0
    single = _valid(times=2.0, data=BASE.data[:1])  # a scalar time is one observation
    assert single.times.shape == (1,)


# ----------------------------------------------------------------------------------------- loss
def test_loss_terms_value_and_gradient():
    """L = Σ ½ ‖z - y‖² + (N/2) log 2π per datapoint, and ∂L/∂z(t_k) is the residual z - y."""
    p = BASE
    rng = np.random.default_rng(1)
    z = rng.normal(size=p.data.shape)
    loss, dL_dz = p.loss_terms(z)
    k, b, n = p.data.shape
    expected = sum(0.5 * float(np.dot(z[i, j] - p.data[i, j], z[i, j] - p.data[i, j]))
                   for i in range(k) for j in range(b)) + k * b * (n / 2) * math.log(2 * math.pi)
    assert abs(loss - expected) <= 100 * EPS * abs(expected)  # a sum of 12 terms, reordered
    np.testing.assert_array_equal(dL_dz, z - p.data)
    # the residual is the gradient: central differences of L (a quadratic, so the central
    # difference is exact up to roundoff ~ eps |L| / h) along a random direction
    v, h = rng.normal(size=z.shape), 1e-4
    fd = (p.loss_terms(z + h * v)[0] - p.loss_terms(z - h * v)[0]) / (2 * h)
    assert abs(fd - np.sum(dL_dz * v)) <= 10 * EPS * abs(loss) / h


def test_perfect_fit_loglik_is_minus_log_2pi_for_n2():
    p = BASE
    loss, residual = p.loss_terms(p.data)
    assert np.all(residual == 0)
    assert p.perfect_loglik_per_datapoint == -math.log(2 * math.pi)  # -(N/2) log 2π with N = 2
    assert round(p.perfect_loglik_per_datapoint, 3) == -1.838
    assert p.loglik_per_datapoint(loss) == pytest.approx(-math.log(2 * math.pi), rel=4 * EPS)


def test_perfect_loglik_scales_with_state_dimension():
    model = MLP((3, 4, 3))
    p = Problem(model, model.init(np.random.default_rng(0)), np.zeros((2, 3)), 0.0, [1.0],
                np.zeros((1, 2, 3)))
    assert p.perfect_loglik_per_datapoint == pytest.approx(-1.5 * math.log(2 * math.pi), rel=4 * EPS)
    assert p.loglik_per_datapoint(p.loss_terms(p.data)[0]) == pytest.approx(
        p.perfect_loglik_per_datapoint, rel=4 * EPS)


# ------------------------------------------------------------------------------ catalogue problems
@pytest.fixture(scope="module")
def seed():
    return seed_problem()


def test_seed_problem_shape(seed):
    """The tutorial's problem: MLP 2-3-2, B = 500 states drawn on [-10, 10]², one time t1 = 10."""
    assert seed.batch_size == 500 and seed.model.state_dim == 2
    assert seed.model.widths == (2, 3, 2) and seed.model.activation == "tanh"
    assert seed.model.n_params == 2 * 3 + 3 + 3 * 2 + 2 == 17
    assert seed.t0 == 0.0 and seed.times.tolist() == [10.0]
    assert seed.data.shape == (1, 500, 2) and seed.theta.shape == (17,)
    assert np.all(np.abs(seed.z0) <= 10.0)
    # 500 uniform draws per coordinate: P(no draw within 0.5 of an edge) = 0.95^500 ~ 7e-12, so a
    # smaller box (e.g. [-1, 1]) would be caught
    assert np.all(seed.z0.min(axis=0) < -9.5) and np.all(seed.z0.max(axis=0) > 9.5)
    assert not np.array_equal(seed.theta, seed.theta_true)  # training starts away from the truth


def test_seed_ground_truth_scores_the_perfect_loglik(seed):
    """The data are the ground truth solved with the tutorial's settings by the numpy path, so solving it
    again the same way reproduces them bit for bit: zero residual, exactly -(N/2) log 2π."""
    import harness._compiled as compiled

    o = TUTORIAL_DATA_OPTIONS
    with compiled.numpy_reference():
        fwd = solve_forward(seed.model, seed.theta_true, seed.z0, seed.t0, seed.times, o)
    loss, residual = seed.loss_terms(fwd.z_at_times)
    assert np.all(residual == 0)
    assert seed.loglik_per_datapoint(loss) == pytest.approx(seed.perfect_loglik_per_datapoint,
                                                            rel=4 * EPS)
    # and through the gradient API with the same forward settings: bit for bit on the numpy loop; the
    # compiled whole loop (small batches) takes the same steps with sums in another order, so its
    # residuals are rounding, 1e-14 of |z| <= 10 (tests/test_compiled_loop.py bounds it to 1e-12)
    before = compiled.loop_runs()
    result = gradient(seed, theta=seed.theta_true, solver=o.solver, rtol=o.rtol, atol=o.atol)
    if compiled.loop_runs() > before:
        assert result.loss == pytest.approx(loss, rel=1e-12)
        assert np.max(np.abs(result.dz0)) <= 1e-12 * np.max(np.abs(seed.z0))
    else:
        assert result.loss == loss
        assert np.all(result.dz0 == 0) and np.all(result.dtheta == 0)  # zero residual => zero adjoint
    # the model being trained does not fit: its log-likelihood is far below the perfect one
    start = gradient(seed, solver=o.solver, rtol=o.rtol, atol=o.atol)
    assert start.loglik_per_datapoint < seed.perfect_loglik_per_datapoint - 1.0


def test_seed_problem_is_reproducible():
    a, b, c = seed_problem(batch=20), seed_problem(batch=20), seed_problem(seed=1, batch=20)
    for name in ("theta", "z0", "data", "theta_true"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.z0, c.z0)


def test_catalogue_variants():
    stiff = stiff_problem(batch=10)
    np.testing.assert_array_equal(stiff.model.decay, STIFF_DECAY)
    assert stiff.model.n_params == 17
    multi = multi_time_problem(batch=10)
    assert multi.times.tolist() == [2.5, 5.0, 7.5, 10.0] and multi.data.shape == (4, 10, 2)
    deep = deep_problem(batch=10)
    assert deep.model.widths == (2, 8, 8, 2)
    assert deep.model.n_params == 2 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2
    assert set(PROBLEMS) == {"seed", "stiff", "multi_time", "deep", "augmented", "time_dependent", "irregular",
                             "reflection", "annuli", "lotka_volterra", "ude", "lynx_hare"}
    np.testing.assert_array_equal(build_problem("deep", batch=10).data, deep.data)


def test_unknown_problem_and_bad_batch_rejected():
    with pytest.raises(HarnessInputError) as err:
        build_problem("lorenz")
    assert "'lorenz'" in str(err.value) and all(name in str(err.value) for name in PROBLEMS)
    with pytest.raises(HarnessInputError, match="batch=0"):
        seed_problem(batch=0)


def test_grid_and_mask_takes_a_trajectory_without_observations_and_refuses_none_at_all():
    from harness.errors import HarnessInputError
    from harness.problems import grid_and_mask

    grid, data, mask = grid_and_mask([[1.0, 2.0], []], [[[1.0, 2.0], [3.0, 4.0]], []])
    assert grid.tolist() == [1.0, 2.0] and data.shape == (2, 2, 2)
    assert mask.tolist() == [[True, False], [True, False]] and data[:, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    grid, data, mask = grid_and_mask([[1.0], np.zeros(0)], [[[1.0, 2.0]], np.zeros((0, 2))])
    assert data.shape == (1, 2, 2) and mask.tolist() == [[True, False]]
    with pytest.raises(HarnessInputError, match="none of the 1 trajectories has an observation"):
        grid_and_mask([[]], [[]])
    with pytest.raises(HarnessInputError, match=r"values\[0\] has 3 numbers for 2 times"):
        grid_and_mask([[1.0, 2.0]], [[1.0, 2.0, 3.0]])
