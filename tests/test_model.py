"""The MLP vector field (harness/model.py) and the flat batch layout (harness/_state_layout.py).

Every derivative the model returns is checked against central finite differences of `MLP.f` itself,
over a catalogue of activations x depths x (with / without the stiff decay Λ). Float64 throughout.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.model import ACTIVATIONS, MLP
from harness._state_layout import block_diagonal, flat, forward_jac, forward_rhs, states
from harness._stage_vjps import StageVJPs

EPS = np.finfo(np.float64).eps
FD_STEP = 1e-6

# Catalogue: every smooth activation, one and two hidden layers, with and without Λ. N = 3 and
# B = 7 differ from each other and from every hidden width, so a transposed or mis-strided layout
# cannot pass by accident of equal sizes.
N, BATCH = 3, 7
WIDTHS = {"one_hidden": (N, 5, N), "two_hidden": (N, 5, 4, N)}
DECAY = np.array([0.5, 2.0, 10.0])  # moderate, so the roundoff scale of f stays O(10)
CATALOGUE = list(itertools.product(sorted(ACTIVATIONS), sorted(WIDTHS), (False, True)))
CATALOGUE_IDS = [f"{a}-{w}-{'decay' if d else 'nodecay'}" for a, w, d in CATALOGUE]


def _setup(activation, depth, decay, seed=0):
    model = MLP(WIDTHS[depth], activation=activation, decay=DECAY if decay else None)
    rng = np.random.default_rng(seed)
    theta = model.init(rng)
    z = rng.normal(0.0, 2.0, size=(BATCH, N))
    a = rng.normal(size=(BATCH, N))
    return model, theta, z, a


def _fd_bound(model, z, theta):
    """Error bound of a central difference with step h = 1e-6 on this f.

    Truncation: (h²/6) |f'''|; the network's weights are O(1/sqrt(fan_in)) and the activations'
    third derivatives are O(1), so |f'''| <= 10 is generous: 10 h²/6 ~ 2e-12.
    Roundoff: each evaluation of f is exact to a few eps times the size S of its largest
    intermediate (|f| plus |Λ z|, which cancel in the stiff variant); the difference of two such
    values divided by 2h is wrong by up to ~ eps S / h. We allow 100 eps S / h (~2e-8 for S ~ 1)
    to cover the O(10) rounding steps per evaluation. The exact derivatives differ from the
    central difference by no more than this sum.
    """
    f = model.f(0.0, z, theta)
    scale = 1.0 + np.max(np.abs(f))
    if model.decay is not None:
        scale += np.max(np.abs(model.decay * z))
    return 10 * FD_STEP**2 / 6 + 100 * EPS * scale / FD_STEP


def _fd_jac(model, z, theta):
    """∂f/∂z per row by central differences, (B, N, N): rows are independent, so perturbing
    component j of every row at once gives column j of every row's block."""
    out = np.empty((z.shape[0], N, N))
    for j in range(N):
        dz = np.zeros_like(z)
        dz[:, j] = FD_STEP
        out[:, :, j] = (model.f(0.0, z + dz, theta) - model.f(0.0, z - dz, theta)) / (2 * FD_STEP)
    return out


def _fd_jac_theta(model, z, theta):
    """∂f/∂θ per row by central differences, (B, N, P)."""
    out = np.empty((z.shape[0], N, model.n_params))
    for p in range(model.n_params):
        dt = np.zeros_like(theta)
        dt[p] = FD_STEP
        out[:, :, p] = (model.f(0.0, z, theta + dt) - model.f(0.0, z, theta - dt)) / (2 * FD_STEP)
    return out


# ------------------------------------------------------------------------------------ derivatives
@pytest.mark.parametrize("activation,depth,decay", CATALOGUE, ids=CATALOGUE_IDS)
def test_jac_matches_finite_differences(activation, depth, decay):
    model, theta, z, _ = _setup(activation, depth, decay)
    J = model.jac(0.0, z, theta)
    assert J.shape == (BATCH, N, N)
    assert np.max(np.abs(J - _fd_jac(model, z, theta))) <= _fd_bound(model, z, theta)


@pytest.mark.parametrize("activation,depth,decay", CATALOGUE, ids=CATALOGUE_IDS)
def test_jac_theta_matches_finite_differences(activation, depth, decay):
    model, theta, z, _ = _setup(activation, depth, decay)
    Jt = model.jac_theta(0.0, z, theta)
    assert Jt.shape == (BATCH, N, model.n_params)
    assert np.max(np.abs(Jt - _fd_jac_theta(model, z, theta))) <= _fd_bound(model, z, theta)


@pytest.mark.parametrize("activation,depth,decay", CATALOGUE, ids=CATALOGUE_IDS)
def test_vjp_matches_finite_differences(activation, depth, decay):
    model, theta, z, a = _setup(activation, depth, decay)
    f, a_z, a_theta = model.vjp(0.0, z, theta, a)
    _, a_z_ps, a_theta_ps = model.vjp(0.0, z, theta, a, per_sample=True)
    J_fd, Jt_fd = _fd_jac(model, z, theta), _fd_jac_theta(model, z, theta)
    # A VJP contracts the FD Jacobian with a (|a| ~ 1, N or N B terms): the bound scales with Σ|a|.
    bound = _fd_bound(model, z, theta)

    # f from the fused pass is the same arithmetic as `f` (same products in the same order).
    np.testing.assert_array_equal(f, model.f(0.0, z, theta))
    assert a_z.shape == (BATCH, N) and a_theta.shape == (model.n_params,)
    assert a_theta_ps.shape == (BATCH, model.n_params)

    expected_a_z = np.einsum("bij,bi->bj", J_fd, a)
    assert np.max(np.abs(a_z - expected_a_z)) <= bound * np.max(np.sum(np.abs(a), axis=1))
    expected_ps = np.einsum("bip,bi->bp", Jt_fd, a)
    assert np.max(np.abs(a_theta_ps - expected_ps)) <= bound * np.max(np.sum(np.abs(a), axis=1))
    assert np.max(np.abs(a_theta - expected_ps.sum(axis=0))) <= bound * np.sum(np.abs(a))

    # per_sample changes only how the θ cotangent is reduced: a_z is identical, and the per-row
    # cotangents sum to the batch one up to the rounding of a B-term sum (B eps |terms|).
    np.testing.assert_array_equal(a_z_ps, a_z)
    sum_scale = np.sum(np.abs(a_theta_ps), axis=0)
    assert np.all(np.abs(a_theta_ps.sum(axis=0) - a_theta) <= 4 * BATCH * EPS * (sum_scale + 1e-300))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_vjp_per_sample_row_is_the_vjp_of_that_row(activation):
    model, theta, z, a = _setup(activation, "two_hidden", True, seed=3)
    _, _, a_theta_ps = model.vjp(0.0, z, theta, a, per_sample=True)
    for b in range(BATCH):
        _, _, row = model.vjp(0.0, z[b : b + 1], theta, a[b : b + 1])
        # the same products for one row; only the reduction order may differ, so allow a few eps
        np.testing.assert_allclose(a_theta_ps[b], row, rtol=1e-13, atol=1e-13 * np.max(np.abs(row)))


# ----------------------------------------------------------------------------------- evaluation
def _reference_activation(name, u):
    return {"tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
            "softplus": lambda x: np.log1p(np.exp(x)), "identity": lambda x: x}[name](u)


@pytest.mark.parametrize("activation,depth,decay", CATALOGUE, ids=CATALOGUE_IDS)
def test_f_is_the_documented_mlp(activation, depth, decay):
    """f(z) = W_L σ(... σ(W1 z + b1) ...) + b_L - Λ z, per row, with W1 of shape (H1, N)."""
    model, theta, z, _ = _setup(activation, depth, decay)
    w = model.unflatten(theta)
    n_layers = len(model.widths) - 1
    out = np.empty((BATCH, N))
    for b in range(BATCH):
        x = z[b]
        for layer in range(1, n_layers):
            x = _reference_activation(activation, w[f"W{layer}"] @ x + w[f"b{layer}"])
        out[b] = w[f"W{n_layers}"] @ x + w[f"b{n_layers}"]
        if decay:
            out[b] -= DECAY * z[b]
    # different evaluation order (row by row, textbook formulas): agreement to ~100 eps of scale
    scale = 1 + np.max(np.abs(out)) + (np.max(np.abs(DECAY * z)) if decay else 0)
    assert np.max(np.abs(model.f(0.0, z, theta) - out)) <= 100 * EPS * scale


def test_activations_are_finite_for_large_arguments():
    # the logistic and softplus are written overflow-free; exp(1000) would overflow a naive formula
    for name, act in ACTIVATIONS.items():
        u = np.array([-1000.0, 1000.0])
        s = act.value(u.copy())  # value may overwrite its argument
        ds = act.slope(u, s)
        assert np.all(np.isfinite(s)) and np.all(np.isfinite(ds)), name


# --------------------------------------------------------------------------------------- layout
def test_layout_w1_first_and_shaped_h_by_n():
    model = MLP((2, 3, 2))
    names = [v.name for v in model.layout]
    assert names == ["W1", "b1", "W2", "b2"]
    assert model.layout[0].start == 0 and model.layout[0].shape == (3, 2)  # W1 is (H, N)
    # P = H N + H + N H + N = 6 + 3 + 6 + 2
    assert model.n_params == 3 * 2 + 3 + 2 * 3 + 2 == 17
    theta = np.arange(17.0)
    w = model.unflatten(theta)
    np.testing.assert_array_equal(w["W1"], np.arange(6.0).reshape(3, 2))  # row-major
    np.testing.assert_array_equal(w["b1"], [6.0, 7.0, 8.0])
    np.testing.assert_array_equal(w["W2"], np.arange(9.0, 15.0).reshape(2, 3))
    np.testing.assert_array_equal(w["b2"], [15.0, 16.0])
    assert all(np.shares_memory(v, theta) for v in w.values())  # views, no copies


@pytest.mark.parametrize("widths", [(2, 3, 2), (3, 5, 4, 3), (1, 1, 1), (4, 7, 2, 6, 4)])
def test_unflatten_flatten_round_trip(widths):
    model = MLP(widths)
    theta = model.init(np.random.default_rng(1))
    assert theta.shape == (model.n_params,)
    expected_p = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert model.n_params == expected_p
    w = model.unflatten(theta)
    for v in model.layout:
        assert w[v.name].shape == v.shape
    back = model.flatten(w)
    np.testing.assert_array_equal(back, theta)
    assert not np.shares_memory(back, theta)  # flatten builds a new vector


def test_flatten_rejects_missing_and_misshapen_pieces():
    model = MLP((2, 3, 2))
    w = model.unflatten(np.zeros(17))
    with pytest.raises(HarnessInputError, match="b2"):
        model.flatten({k: v for k, v in w.items() if k != "b2"})
    with pytest.raises(HarnessInputError, match=r"W1 has shape \(2, 3\)"):
        model.flatten({**w, "W1": np.zeros((2, 3))})


def test_init_statistics():
    """W_l ~ N(0, 1/fan_in), b_l ~ N(0, 1).

    With n samples the sample mean has standard error σ/sqrt(n) and the sample variance a relative
    standard error sqrt(2/n); 5 standard errors keep the false-alarm rate below 1e-6 per check,
    while a wrong scale (e.g. 1/fan_out, or variance instead of std) is off by a factor >= 2.
    """
    widths = (40, 300, 20, 40)
    model = MLP(widths)
    w = model.unflatten(model.init(np.random.default_rng(123)))
    for layer, fan_in in enumerate(widths[:-1], start=1):
        for name, var in ((f"W{layer}", 1.0 / fan_in), (f"b{layer}", 1.0)):
            x = w[name].reshape(-1)
            n = x.size
            assert abs(x.mean()) <= 5 * math.sqrt(var / n), name
            assert abs(x.var() / var - 1) <= 5 * math.sqrt(2 / n), name


def test_init_is_reproducible_from_the_generator():
    model = MLP((2, 3, 2))
    a = model.init(np.random.default_rng(7))
    b = model.init(np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.init(np.random.default_rng(8)))


# ---------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "widths,fragment",
    [((2,), r"widths=\(2,\)"), ((2, 2), r"widths=\(2, 2\)"), ((2, 0, 2), r"widths=\(2, 0, 2\)"),
     ((2, -3, 2), r"widths=\(2, -3, 2\)"), ((2, 3, 4), r"widths=\(2, 3, 4\).*4.*2")],
)
def test_bad_widths_rejected(widths, fragment):
    with pytest.raises(HarnessInputError, match=fragment):
        MLP(widths)


def test_unknown_activation_lists_valid_ones():
    with pytest.raises(HarnessInputError) as err:
        MLP((2, 3, 2), activation="relu")
    message = str(err.value)
    assert "'relu'" in message
    assert all(name in message for name in ACTIVATIONS)


@pytest.mark.parametrize("bad", [np.zeros(16), np.zeros(18), np.zeros((17, 1)), np.zeros((1, 17))])
def test_wrong_theta_shape_rejected(bad):
    model = MLP((2, 3, 2))
    with pytest.raises(HarnessInputError, match=rf"theta has shape {re_shape(bad.shape)}.*\(17,\)"):
        model.check_theta(bad)
    with pytest.raises(HarnessInputError, match="theta has shape"):
        model.unflatten(bad)


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize(
    "decay,fragment",
    [([1.0], r"decay has shape \(1,\)"), ([1.0, 2.0, 3.0], r"decay has shape \(3,\)"),
     ([1.0, np.nan], "finite"), ([np.inf, 1.0], "finite")],
)
def test_bad_decay_rejected(decay, fragment):
    with pytest.raises(HarnessInputError, match=fragment):
        MLP((2, 3, 2), decay=np.array(decay))


def test_decay_is_part_of_model_equality_and_hash():
    # The plain and the stiff model are different vector fields: they must not compare equal, nor
    # collide as dict keys (caches keyed by model would hand one the other's results).
    plain, stiff = MLP((2, 3, 2)), MLP((2, 3, 2), decay=[1.0, 1000.0])
    assert plain != stiff and stiff != plain
    assert stiff != MLP((2, 3, 2), decay=[1.0, 999.0])
    assert stiff == MLP((2, 3, 2), decay=np.array([1.0, 1000.0]))
    assert hash(stiff) == hash(MLP((2, 3, 2), decay=(1, 1000)))
    assert len({plain, stiff, MLP((2, 3, 2)), MLP((2, 3, 2), decay=[1, 1000])}) == 2
    assert MLP((2, 3, 2)) != MLP((2, 3, 2), activation="softplus")


def test_decay_is_frozen():
    d = np.array([1.0, 1000.0])
    model = MLP((2, 3, 2), decay=d)
    d[0] = 5.0  # the model keeps its own copy
    assert model.decay[0] == 1.0
    with pytest.raises(ValueError):
        model.decay[0] = 2.0


# ------------------------------------------------------------------------ _state_layout.py flat layout
def test_flat_layout_is_feature_major_and_round_trips():
    B = 5
    z = np.arange(B * N, dtype=float).reshape(B, N)
    y = flat(z)
    for b in range(B):
        for i in range(N):
            assert y[i * B + b] == z[b, i]  # y[i B + b] is component i of row b
    np.testing.assert_array_equal(states(y, B), z)
    assert np.shares_memory(states(y, B), y)  # a view


def test_block_diagonal_equals_dense_block_matrix():
    B, n = 6, 3
    blocks = np.random.default_rng(0).normal(size=(B, n, n))
    dense = np.zeros((B * n, B * n))
    for b in range(B):
        for i in range(n):
            for j in range(n):
                dense[i * B + b, j * B + b] = blocks[b, i, j]
    M = block_diagonal(blocks)
    assert M.shape == (B * n, B * n)
    assert M.nnz == B * n * n
    np.testing.assert_array_equal(M.toarray(), dense)


@pytest.mark.parametrize("decay", [False, True])
def test_forward_jac_is_the_jacobian_of_forward_rhs(decay):
    """The sparse batch Jacobian acts on flat vectors like central differences of the flat rhs."""
    model, theta, z, v = _setup("tanh", "two_hidden", decay, seed=5)
    rhs, jac = forward_rhs(model, theta, BATCH), forward_jac(model, theta, BATCH)
    y, dy = flat(z).copy(), flat(v).copy()
    directional = (rhs(0.0, y + FD_STEP * dy) - rhs(0.0, y - FD_STEP * dy)) / (2 * FD_STEP)
    bound = _fd_bound(model, z, theta) * np.max(np.abs(v)) * N  # N terms per row in J v
    assert np.max(np.abs(jac(0.0, y) @ dy - directional)) <= bound


# --------------------------------------------------------------------- _stage_vjps.py: batched VJPs
N_SLOTS = 7  # DP5: six stages and the first-same-as-last one


def _taped(model, theta, zs, as_, sign):
    """Record the VJP of stage i = (zs[i], as_[i]) in slot i of a fresh tape; return the tape and
    the f and (∂f/∂z)ᵀ(sign a) it wrote, (slots, B, N) each."""
    tape = StageVJPs(model, theta, BATCH, N_SLOTS, cotangent_sign=sign)
    fs, a_zs = np.empty_like(zs), np.empty_like(zs)
    for i in range(len(zs)):
        f, a_z = np.empty((N, BATCH)), np.empty((N, BATCH))
        tape.vjp(i, zs[i].T, as_[i].T, out_f=f, out_az=a_z)
        fs[i], a_zs[i] = f.T, a_z.T
    return tape, fs, a_zs


@pytest.mark.parametrize("activation,depth,decay", CATALOGUE, ids=CATALOGUE_IDS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_tape_agrees_with_vjp(activation, depth, decay, sign):
    """The tape computes MLP.vjp's numbers by other arithmetic: biases inside the weight products
    ([W | b][x; 1]) and the θ cotangents of all slots summed by one batched product per layer. Both
    are float64 sums of the same terms in another order, so they differ by rounding: each entry of
    f and a_z sums at most H + 1 terms of size <= S, and each θ-entry Σᵢ wᵢ (g xᵀ)ᵢ at most
    slots x B terms; reordering moves a sum of n terms by <= n eps Σ|terms|, so with n <= 60 and
    sums of magnitude ~ S, 1e3 eps S is a bound with room for cancellation."""
    model, theta, _, _ = _setup(activation, depth, decay)
    rng = np.random.default_rng(11)
    zs = rng.normal(0.0, 2.0, size=(N_SLOTS, BATCH, N))
    as_ = rng.normal(size=(N_SLOTS, BATCH, N))
    weights = rng.normal(size=(2, N_SLOTS))  # e.g. a step's update and error weights
    tape, fs, a_zs = _taped(model, theta, zs, as_, sign)

    expected_theta = np.zeros((2, model.n_params))
    theta_scale = 0.0  # Σᵢ max|wᵢ| max|(∂f/∂θ)ᵀaᵢ|: the size of the terms summed
    for i in range(N_SLOTS):
        f, a_z, a_theta = model.vjp(0.0, zs[i], theta, sign * as_[i])
        scale = 1 + np.max(np.abs(f)) + np.max(np.abs(a_z))
        assert np.max(np.abs(fs[i] - f)) <= 1e3 * EPS * scale
        assert np.max(np.abs(a_zs[i] - a_z)) <= 1e3 * EPS * scale
        expected_theta += np.outer(weights[:, i], a_theta)
        theta_scale += np.max(np.abs(weights[:, i])) * np.max(np.abs(a_theta))
    got = tape.theta_cotangents(weights)
    assert got.shape == (2, model.n_params)
    assert np.max(np.abs(got - expected_theta)) <= 1e3 * EPS * theta_scale


@pytest.mark.parametrize("activation,depth,decay", CATALOGUE, ids=CATALOGUE_IDS)
def test_tape_value_is_f(activation, depth, decay):
    model, theta, z, _ = _setup(activation, depth, decay)
    tape = StageVJPs(model, theta, BATCH, n_slots=1)
    out = np.empty((N, BATCH))
    tape.value(z.T, out=out)
    f = model.f(0.0, z, theta)
    # biases summed inside the product: rounding of an (H + 1)-term sum, as above
    assert np.max(np.abs(out.T - f)) <= 1e3 * EPS * (1 + np.max(np.abs(f)))
    # forward_rhs runs the compiled kernel where numba is installed: the same f up to rounding
    rhs = forward_rhs(model, theta, BATCH)(0.0, flat(z))
    assert np.max(np.abs(rhs - flat(out.T))) <= 1e3 * EPS * (1 + np.max(np.abs(f)))


def test_tape_carry_makes_the_last_stage_the_first():
    """After carry(6, 0), logical slot 0 holds what was recorded in slot 6, and slot 6 is free: a
    new record there must not disturb slot 0 (first-same-as-last steps reuse the stage this way)."""
    model, theta, _, _ = _setup("tanh", "one_hidden", False)
    rng = np.random.default_rng(2)
    zs, as_ = rng.normal(size=(2, BATCH, N)), rng.normal(size=(2, BATCH, N))
    tape = StageVJPs(model, theta, BATCH, N_SLOTS)
    scratch = np.empty((N, BATCH))
    tape.vjp(6, zs[0].T, as_[0].T, out_f=None, out_az=scratch)
    tape.carry(6, 0)
    tape.vjp(6, zs[1].T, as_[1].T, out_f=None, out_az=scratch)
    one_hot = np.eye(N_SLOTS)[[0, 6]]
    got = tape.theta_cotangents(one_hot)
    for row, k in zip(got, (0, 1)):
        expected = model.vjp(0.0, zs[k], theta, as_[k])[2]
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e3 * EPS * np.max(np.abs(expected)))


def test_tape_slots_never_written_contribute_zero():
    """`theta_cotangents` multiplies every slot by its weight, written or not: unwritten slots are
    zeros (not uninitialised memory, which could hold NaN and turn 0 x NaN into NaN)."""
    model, theta, z, a = _setup("tanh", "two_hidden", True)
    tape = StageVJPs(model, theta, BATCH, N_SLOTS)
    tape.vjp(3, z.T, a.T, out_f=None, out_az=np.empty((N, BATCH)))
    got = tape.theta_cotangents(np.ones((1, N_SLOTS)))[0]
    expected = model.vjp(0.0, z, theta, a)[2]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e3 * EPS * np.max(np.abs(expected)))
