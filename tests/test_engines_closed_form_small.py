"""Every engine, every solver and every problem option on tiny linear problems, against the closed form.

A field that is affine in z and t has a solution known through the matrix exponential, so the
gradient of the loss is known without any ODE solver (the augmented-matrix trick of
tests/test_closed_form.py, extended by t): with Y = [z; t; 1],

    dY/dt = M Y,   M = [[A, w, c], [0, 0, 1], [0, 0, 0]],   Y(t) = e^{M (t - t0)} Y(t0),

dL/dz0_b = Σ_k (e^{M τ_k})[:N, :N]ᵀ r_kb and dL/dM = Σ_kb ∫₀^τ_k e^{Mᵀ(τ_k - s)} r_kb Y_b(s)ᵀ ds
(the Fréchet derivative of the matrix exponential contracted with the residuals, by Van Loan's block
exponential), r the masked residual of the observed components. Two models are affine: `Linear`
(θ = [A, c]: dL/dθ is G itself) and the MLP with the identity activation (A = W2 W1z - Λ,
w = W2 w1t, c = W2 b1 + b2; chain rule below), the first on the models' generic numpy path (the
model's own vjp), the second on the MLP's fused numpy stages.

The problems are tiny (B = 2 or 3, N = 2, two observation times in [t0, 1.25]) so that the whole
file runs in seconds: rows of the batch are independent ODEs, and the default B = 3 (!= N) tells a
batch axis from a state axis.

Bounds (relative 2-norm error): each solve's global error is a modest multiple of the tolerance
(< 50 tol on linear problems, tests/test_solvers.py); the backward solve adds a second error of the
same size, and an error made early grows by at most e^{μ(A) t1} (μ the logarithmic norm; the fields
here have μ < 1.6 over a span of at most 1.25, so growth < 8). Hence 100 · tol · 8 at the tolerance
used (1e-8): 8e-6. A wrong jump, sign, VJP, node, weight or time is an O(1e-2..1) error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.linalg import expm

from harness.errors import HarnessInputError, UnstableBacksolveError
from harness.model import MLP
from harness.models.linear import Linear
from harness.problems import Problem
from harness.sensitivity import (
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    gradient,
)

TOL = 1e-8
BOUND = 100 * TOL * 8  # see the module docstring


def affine_parts(model, theta):
    """(A (n, n), w (n,), c (n,)) of f(t, z) = A z + w t + c, n the model's state dimension."""
    if isinstance(model, Linear):
        A, c = model.unpack(theta)
        return A, np.zeros(model.state_dim), c
    p = {view.name: theta[view.slice].reshape(view.shape) for view in model.layout}
    n = model.state_dim
    W1 = p["W1"]
    decay = np.zeros(n) if model.decay is None else np.asarray(model.decay, dtype=float)
    A = p["W2"] @ W1[:, :n] - np.diag(decay)
    w = p["W2"] @ W1[:, n] if model.time_dependent else np.zeros(n)
    return A, w, p["W2"] @ p["b1"] + p["b2"]


def _extended(problem):
    """M (n + 2, n + 2) and Y0 (n + 2, B) of the extended linear system."""
    model, n = problem.model, problem.model.state_dim
    A, w, c = affine_parts(model, problem.theta)
    M = np.zeros((n + 2, n + 2))
    M[:n, :n], M[:n, n], M[:n, n + 1], M[n, n + 1] = A, w, c, 1.0
    batch = problem.batch_size
    return M, np.vstack([problem.z0.T, np.full(batch, problem.t0), np.ones(batch)])


def closed_form_loss(problem):
    """L alone from the matrix exponential (constant included)."""
    M, Y0 = _extended(problem)
    n_obs = problem.observed_dim
    mask = np.ones((problem.times.size, problem.batch_size), bool) if problem.mask is None else problem.mask
    loss = 0.0
    for k, t in enumerate(problem.times):
        R = ((expm(M * (t - problem.t0)) @ Y0)[:n_obs] - problem.data[k].T) * mask[k]
        loss += 0.5 * float(np.sum(R * R))
    return loss + problem.loss_constant


def closed_form(problem):
    """(L, dL/dθ (P,), dL/dz0 (B, N_observed)) from the matrix exponential, no ODE solver."""
    model, theta = problem.model, problem.theta
    n, n_obs = model.state_dim, problem.observed_dim
    A, w, c = affine_parts(model, theta)
    M = np.zeros((n + 2, n + 2))
    M[:n, :n], M[:n, n], M[:n, n + 1], M[n, n + 1] = A, w, c, 1.0
    batch = problem.batch_size
    Y0 = np.vstack([problem.z0.T, np.full(batch, problem.t0), np.ones(batch)])  # (n + 2, B)
    mask = np.ones((problem.times.size, batch), bool) if problem.mask is None else problem.mask
    loss, dz0, G = 0.0, np.zeros((batch, n)), np.zeros((n + 2, n + 2))
    m = n + 2
    for k, t in enumerate(problem.times):
        tau = t - problem.t0
        U = np.zeros((m, batch))  # the residual r_kb of the observed components, as a column of Y
        U[:n_obs] = ((expm(M * tau) @ Y0)[:n_obs] - problem.data[k].T) * mask[k]
        loss += 0.5 * float(np.sum(U * U))
        dz0 += (expm(M * tau)[:n, :n].T @ U[:n]).T
        # Van Loan: the top-right block of exp([[Mᵀ, C], [0, Mᵀ]] τ) is ∫₀^τ e^{Mᵀ(τ-s)} C e^{Mᵀ s} ds,
        # which with C = Σ_b u_b Y0_bᵀ is Σ_b ∫ e^{Mᵀ(τ-s)} u_b Y_b(s)ᵀ ds = dL/dM (the Fréchet
        # derivative contracted with the residuals, for all entries at once)
        block = np.zeros((2 * m, 2 * m))
        block[:m, :m] = block[m:, m:] = M.T
        block[:m, m:] = U @ Y0.T
        G += expm(block * tau)[:m, m:]
    G = G[:n]
    loss += problem.loss_constant
    G_A, G_w, G_c = G[:, :n], G[:, n], G[:, n + 1]
    if isinstance(model, Linear):
        dtheta = np.concatenate([G_A.ravel(), G_c])
    else:
        p = {view.name: theta[view.slice].reshape(view.shape) for view in model.layout}
        G_first = np.column_stack([G_A, G_w]) if model.time_dependent else G_A
        grads = {"W1": p["W2"].T @ G_first, "b1": p["W2"].T @ G_c,
                 "W2": G_first @ p["W1"].T + np.outer(G_c, p["b1"]), "b2": G_c}
        dtheta = np.concatenate([grads[view.name].ravel() for view in model.layout])
    return loss, dtheta, dz0[:, :n_obs]


def small_problem(kind="mlp", *, augment=0, masked=False, time_dependent=False, decay=True, t0=0.0,
                  times=(0.75, 1.25), batch=3, seed=3):
    rng = np.random.default_rng(seed)
    width = 2 + augment
    if kind == "linear":
        model = Linear(width)
        theta = 0.6 * rng.standard_normal(model.n_params)
    else:
        model = MLP((width, 3, width), activation="identity", time_dependent=time_dependent,
                    decay=np.linspace(0.3, 0.9, width) if decay else None)
        theta = 0.6 * rng.standard_normal(model.n_params)
    z0 = rng.uniform(-1.5, 1.5, size=(batch, 2))
    data = rng.uniform(-1.0, 1.0, size=(len(times), batch, 2))
    mask = None
    if masked:
        mask = np.ones((len(times), batch), bool)
        mask[0, 1] = mask[-1, 0] = False  # with one time, row 0 unobserved (batch >= 3 keeps one)
    return Problem(model, theta, z0, t0, np.array(times), data, "small", augment=augment, mask=mask)


def relative_error(g, r):
    return float(np.linalg.norm(g - r) / np.linalg.norm(r))


def check(result, problem, bound=BOUND):
    loss, dtheta, dz0 = closed_form(problem)
    assert result.dz0.shape == dz0.shape, (result.dz0.shape, dz0.shape)
    assert result.dtheta.shape == dtheta.shape
    for label, g, r in (("dL/dθ", result.dtheta, dtheta), ("dL/dz0", result.dz0, dz0)):
        error = relative_error(g, r)
        assert error <= bound, f"{result.engine} {label}: relative error {error:.2e} > {bound:.1e}"
    assert abs(result.loss - loss) <= bound * abs(loss), (result.loss, loss)


def test_the_reference_is_right():
    """The closed form against central differences of its own loss (h = 1e-6: truncation ~1e-12,
    rounding ~1e-10 relative; bound 1e-6), on the richest option set (time-dependent, augmented,
    masked, t0 != 0), so that the reference's chain rule is checked where it is longest."""
    problem = small_problem(augment=1, masked=True, time_dependent=True, t0=0.25, batch=2)
    _, dtheta, dz0 = closed_form(problem)
    h = 1e-6
    fd = np.empty_like(dtheta)
    for i in range(dtheta.size):
        plus, minus = problem.theta.copy(), problem.theta.copy()
        plus[i] += h
        minus[i] -= h
        fd[i] = (closed_form_loss(problem.with_theta(plus)) - closed_form_loss(problem.with_theta(minus))) / (2 * h)
    assert relative_error(fd, dtheta) <= 1e-6
    fd_z0 = np.empty_like(dz0)
    for b in range(problem.batch_size):
        for i in range(problem.observed_dim):
            plus, minus = problem.z0.copy(), problem.z0.copy()
            plus[b, i] += h
            minus[b, i] -= h
            shift = lambda z0: Problem(problem.model, problem.theta, z0, problem.t0, problem.times,  # noqa: E731
                                       problem.data, "fd", augment=problem.augment, mask=problem.mask)
            fd_z0[b, i] = (closed_form_loss(shift(plus)) - closed_form_loss(shift(minus))) / (2 * h)
    assert relative_error(fd_z0, dz0) <= 1e-6


ENGINES = {
    "Backsolve": BacksolveAdjoint(),
    "Interpolating": InterpolatingAdjoint(),
    "Interpolating(checkpointed)": InterpolatingAdjoint(checkpointing=True, n_checkpoints=2),
    "Quadrature": QuadratureAdjoint(),
    "Gauss": GaussAdjoint(),
    "ForwardSensitivity": ForwardSensitivity(),
}


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_on_the_plain_problem(name):
    problem = small_problem()
    check(gradient(problem, engine=ENGINES[name], rtol=TOL, atol=TOL), problem)


@pytest.mark.parametrize("solver", ["BS3", "DP8", "RadauIIA5", "BDF"])
@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_with_every_solver(name, solver):
    """One observation time less (a jump at t_K only) keeps the implicit solves cheap; BDF's variable
    order makes its global error a larger multiple of tol, hence its bound x 10."""
    problem = small_problem(times=(1.0,), batch=2)
    bound = BOUND * (10 if solver == "BDF" else 1)
    check(gradient(problem, engine=ENGINES[name], solver=solver, rtol=TOL, atol=TOL), problem, bound)


OPTIONS = {
    "linear model": dict(kind="linear"),
    "augmented": dict(augment=1),
    "masked": dict(masked=True),
    "time-dependent, t0 != 0": dict(time_dependent=True, t0=0.25),
    "everything": dict(augment=1, masked=True, time_dependent=True, t0=0.25),
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_with_every_option(name, option):
    problem = small_problem(**OPTIONS[option])
    check(gradient(problem, engine=ENGINES[name], rtol=TOL, atol=TOL), problem)


@pytest.mark.parametrize("option", ["linear model", "everything"])
@pytest.mark.parametrize("name", ["Backsolve", "Interpolating", "Quadrature", "Gauss"])
def test_implicit_backward_solves_with_every_option(name, option):
    """The backward pass with RadauIIA5 (each adjoint's Newton Jacobian) after a DP5 forward pass."""
    problem = small_problem(**OPTIONS[option], times=(1.0,), batch=3)
    engine = type(ENGINES[name])(solver="RadauIIA5")
    check(gradient(problem, engine=engine, rtol=TOL, atol=TOL), problem)


@pytest.mark.parametrize("option", ["plain", "augmented, masked, t0 != 0"])
def test_finite_differences_are_the_fourth_order_stencil_of_the_loss(option):
    """FiniteDifferences with a large step (0.05) equals the documented stencil, ±h and ±2h with
    h = step · max(1, |x|), applied to the closed-form loss: the stencil's own truncation error
    (O(h⁴) ~ 1e-6 here) is then part of both, and only the solver's error remains, ~ tol / h = 2e-9
    at tol 1e-10 (DP8). Bound 1e-7 relative: a wrong offset, weight, divisor or step scale changes
    the result at the 1e-6 level or more. A θ entry and a z0 entry above 1 in magnitude make the
    relative step matter. The linear model keeps P small (4 solves per entry)."""
    options = {} if option == "plain" else dict(augment=1, masked=True, t0=0.25)
    problem = small_problem("linear", **{"batch": 2, **options})
    theta = problem.theta.copy()
    theta[0] = 2.5
    z0 = problem.z0.copy()
    z0[1, 0] = -1.4
    problem = Problem(problem.model, theta, z0, problem.t0, problem.times, problem.data, "s",
                      augment=problem.augment, mask=problem.mask)
    step = 0.05
    result = gradient(problem, engine=FiniteDifferences(step=step), solver="DP8", rtol=1e-10, atol=1e-10)
    stencil = ((-2.0, 1.0), (-1.0, -8.0), (1.0, 8.0), (2.0, -1.0))

    def loss_at(theta_, z0_):
        return closed_form_loss(Problem(problem.model, theta_, z0_, problem.t0, problem.times, problem.data, "s",
                                        augment=problem.augment, mask=problem.mask))

    expected = np.zeros_like(theta)
    for p in range(theta.size):
        h = step * max(1.0, abs(theta[p]))
        for offset, weight in stencil:
            shifted = theta.copy()
            shifted[p] += offset * h
            expected[p] += weight * loss_at(shifted, z0)
        expected[p] /= 12 * h
    expected_z0 = np.zeros((z0.shape[0], problem.observed_dim))
    for b in range(z0.shape[0]):
        for i in range(problem.observed_dim):
            h = step * max(1.0, abs(z0[b, i]))
            for offset, weight in stencil:
                shifted = z0.copy()
                shifted[b, i] += offset * h
                expected_z0[b, i] += weight * loss_at(theta, shifted)
            expected_z0[b, i] /= 12 * h
    assert relative_error(result.dtheta, expected) <= 1e-7
    assert relative_error(result.dz0, expected_z0) <= 1e-7
    assert abs(result.loss - loss_at(theta, z0)) <= 1e-8 * abs(result.loss)
    assert result.diagnostics == {"step": step}
    assert result.backward_stats.n_rhs == 0  # a reference: every solve is forward
    # one solve for L, then 4 per parameter and 4 per state component (all rows at once)
    plain = gradient(Problem(problem.model, theta, z0, problem.t0, problem.times, problem.data, "s",
                             augment=problem.augment, mask=problem.mask),
                     engine=ForwardSensitivity(), solver="DP8", rtol=1e-10, atol=1e-10)
    assert plain.forward_stats.n_rhs > 0
    n_solves = 1 + 4 * theta.size + 4 * problem.model.state_dim
    assert result.forward_stats.n_accepted >= n_solves  # every solve takes at least one step


def test_quadrature_and_gauss_report_their_nodes():
    """QuadratureAdjoint: `quadrature_nodes` Gauss-Legendre points on every backward step; GaussAdjoint:
    (order + 1) // 2 per step (BS3 2, DP5 3, DP8 4, RadauIIA5 3), one batched VJP per step."""
    problem = small_problem(batch=2)
    for nodes in (2, 3, 5):
        result = gradient(problem, engine=QuadratureAdjoint(quadrature_nodes=nodes), rtol=TOL, atol=TOL)
        assert result.diagnostics == {"quadrature_points": nodes * result.backward_stats.n_accepted}
    assert gradient(problem, engine=QuadratureAdjoint(), rtol=TOL, atol=TOL).diagnostics["quadrature_points"] % 3 == 0
    for solver, nodes in (("BS3", 2), ("DP5", 3), ("DP8", 4), ("RadauIIA5", 3)):
        result = gradient(problem, engine=GaussAdjoint(solver=solver), rtol=TOL, atol=TOL)
        steps = result.backward_stats.n_accepted
        assert result.diagnostics == {"quadrature_points": nodes * steps, "gauss_nodes": nodes,
                                      "quadrature_vjps": steps}, solver


def test_a_quadrature_of_one_node_is_less_accurate_but_still_a_gradient():
    """One node per step is the midpoint rule (order 2): on this smooth problem it stays within a
    loose 1e-2 of the closed form but is far worse than three nodes, which are within BOUND."""
    problem = small_problem(batch=2)
    _, dtheta, _ = closed_form(problem)
    coarse = gradient(problem, engine=QuadratureAdjoint(quadrature_nodes=1), rtol=1e-4, atol=1e-4)
    fine = gradient(problem, engine=QuadratureAdjoint(quadrature_nodes=3), rtol=1e-4, atol=1e-4)
    assert relative_error(coarse.dtheta, dtheta) <= 1e-2
    assert relative_error(fine.dtheta, dtheta) < relative_error(coarse.dtheta, dtheta)


def test_interpolating_reports_its_pieces_and_segments():
    """Without checkpointing: one forward piece, one backward segment per observation interval.
    With n checkpoints: n + 1 pieces over the span; each observation time inside a piece splits a
    segment (DP5 reads the times from its dense output, so they are not piece ends)."""
    problem = small_problem(times=(0.25, 0.75, 1.25), batch=2)
    plain = gradient(problem, engine=InterpolatingAdjoint(), rtol=TOL, atol=TOL)
    assert plain.diagnostics == {"checkpointing": False, "n_pieces": 1, "n_segments": 3}
    for n in (1, 2, 4):
        result = gradient(problem, engine=InterpolatingAdjoint(checkpointing=True, n_checkpoints=n),
                          rtol=TOL, atol=TOL)
        assert result.diagnostics["checkpointing"] is True
        assert result.diagnostics["n_pieces"] == n + 1
        assert result.diagnostics["n_segments"] >= n + 1
        check(result, problem)
        # the re-solve of each piece is counted in the backward pass
        assert result.backward_stats.n_rhs > plain.backward_stats.n_rhs
    default = gradient(problem, engine=InterpolatingAdjoint(checkpointing=True), rtol=TOL, atol=TOL)
    assert default.diagnostics["n_pieces"] == 11  # n_checkpoints defaults to 10


def test_backsolve_reconstruction_error_is_in_units_of_the_tolerance():
    """The reconstruction error is max |z_back(t0) - z0| / (atol + rtol |z0|): on a stable affine
    problem solved at tol the backward and forward global errors are a modest multiple of tol, so
    the figure lies between 0 and 1e3; measured at two tolerances a decade apart (rtol = atol), it is
    in tolerance units, so it does not grow tenfold at the looser one."""
    problem = small_problem()
    errors = []
    for tol in (1e-6, 1e-7):
        result = gradient(problem, engine=BacksolveAdjoint(), rtol=tol, atol=tol)
        error = result.diagnostics["reconstruction_error"]
        assert 0.0 < error < 1e3
        assert result.diagnostics["unstable"] is False
        errors.append(error)
    # in absolute terms both are ~ tol: the looser one's absolute error is not 100x the tighter one's
    assert errors[0] * 1e-6 < 100 * errors[1] * 1e-7


def test_backsolve_refuses_or_flags_beyond_its_limit():
    """The limit is on the reported error itself: just above it passes, just below it refuses (or
    warns and flags with on_unstable="warn"), with the message naming both numbers and the advice."""
    problem = small_problem()
    measured = gradient(problem, engine=BacksolveAdjoint(on_unstable="warn"), rtol=1e-6, atol=1e-6)
    error = measured.diagnostics["reconstruction_error"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        at_limit = gradient(problem, engine=BacksolveAdjoint(max_reconstruction_error=error), rtol=1e-6, atol=1e-6)
    assert at_limit.diagnostics == {"reconstruction_error": error, "unstable": False}
    limit = error * (1 - 1e-9)
    with pytest.raises(UnstableBacksolveError) as caught:
        gradient(problem, engine=BacksolveAdjoint(max_reconstruction_error=limit), rtol=1e-6, atol=1e-6)
    message = str(caught.value)
    assert f"an error of {error:.3g} tolerances (limit {limit:g})" in message
    assert message.endswith("use InterpolatingAdjoint or QuadratureAdjoint, which read z from the forward solution")
    with pytest.warns(RuntimeWarning, match="unstable and the gradient unreliable") as record:
        flagged = gradient(problem, engine=BacksolveAdjoint(max_reconstruction_error=limit, on_unstable="warn"),
                           rtol=1e-6, atol=1e-6)
    assert len(record) == 1
    assert flagged.diagnostics == {"reconstruction_error": error, "unstable": True}
    np.testing.assert_array_equal(flagged.dtheta, measured.dtheta)  # the gradient is still returned
    with pytest.raises(HarnessInputError, match="on_unstable='ignore': expected 'raise' or 'warn'"):
        BacksolveAdjoint(on_unstable="ignore")


def test_backsolve_default_limit_is_ten_thousand_tolerances():
    problem = small_problem()
    measured = gradient(problem, engine=BacksolveAdjoint(), rtol=1e-6, atol=1e-6)
    error = measured.diagnostics["reconstruction_error"]
    # scale the limit's test by asking for the error that would be 1e4 x a smaller one: the default
    # limit must be exactly 1e4 (the docstring's), checked on both sides with a custom engine
    assert BacksolveAdjoint().max_reconstruction_error == 1e4
    assert error < 1e4


def test_backward_settings_default_to_the_forward_ones():
    """An engine's solver/rtol/atol left as None follow the forward pass's; set, they are the
    backward pass's own (a looser backward tolerance costs fewer backward evaluations)."""
    problem = small_problem(batch=2)
    same = gradient(problem, engine=InterpolatingAdjoint(), rtol=1e-9, atol=1e-9)
    explicit = gradient(problem, engine=InterpolatingAdjoint(solver="DP5", rtol=1e-9, atol=1e-9), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(same.dtheta, explicit.dtheta)
    assert same.backward_stats == explicit.backward_stats
    loose_r = gradient(problem, engine=InterpolatingAdjoint(rtol=1e-4), rtol=1e-9, atol=1e-9)
    loose_a = gradient(problem, engine=InterpolatingAdjoint(atol=1e-4), rtol=1e-9, atol=1e-9)
    for loose in (loose_r, loose_a):
        assert loose.backward_stats.n_rhs < same.backward_stats.n_rhs
        assert loose.forward_stats == same.forward_stats
    other = gradient(problem, engine=InterpolatingAdjoint(solver="BS3"), rtol=1e-9, atol=1e-9)
    assert other.backward_stats.n_rhs != same.backward_stats.n_rhs
    assert other.forward_stats == same.forward_stats
    with pytest.raises(HarnessInputError, match="RK4"):
        gradient(problem, engine=InterpolatingAdjoint(solver="RK4"))


def test_paths_and_timing_of_the_numpy_engines():
    mlp, linear = small_problem(batch=2), small_problem("linear", batch=2)
    assert gradient(mlp, engine=InterpolatingAdjoint()).path == "numpy (MLP)"
    assert gradient(linear, engine=InterpolatingAdjoint()).path == "numpy (model's vjp)"
    reference = gradient(mlp, engine=ForwardSensitivity())
    assert reference.path == "numpy (model's jac, jac_theta)"
    assert reference.diagnostics == {}  # nothing engine-specific to report, as an empty dict
    # the documented defaults: DP5 at rtol = atol = 1e-6
    default = gradient(mlp, engine=GaussAdjoint())
    explicit = gradient(mlp, engine=GaussAdjoint(), solver="DP5", rtol=1e-6, atol=1e-6)
    assert default.forward_stats == explicit.forward_stats and default.backward_stats == explicit.backward_stats
    import time

    started = time.perf_counter()
    result = gradient(linear, engine=GaussAdjoint())
    assert 0.0 < result.seconds <= time.perf_counter() - started  # the wall time of this call
    assert result.engine == "GaussAdjoint"
    assert result.n_datapoints == linear.n_datapoints
    assert result.n_rhs == result.forward_stats.n_rhs + result.backward_stats.n_rhs
    assert result.loglik_per_datapoint == -result.loss / linear.n_datapoints


def test_gradient_at_an_explicit_theta():
    problem = small_problem(batch=2)
    theta = problem.theta + 0.1
    result = gradient(problem, theta, engine=QuadratureAdjoint(), rtol=TOL, atol=TOL)
    check(result, problem.with_theta(theta))


def test_forward_sensitivity_carries_its_step_from_one_time_to_the_next():
    """ForwardSensitivity ends a solve at every observation time and starts the next one with the step
    size the controller proposed, not the solver's initial guess: each of the K - 1 extra stops costs at
    most about one clipped step (DP5: 6 evaluations with first-same-as-last) over one solve to t_K."""
    one = small_problem(times=(1.25,), batch=2)
    times = tuple(np.linspace(0.125, 1.25, 10))
    many = small_problem(times=times, batch=2)
    cost_one = gradient(one, engine=ForwardSensitivity(), rtol=TOL, atol=TOL).forward_stats.n_rhs
    cost_many = gradient(many, engine=ForwardSensitivity(), rtol=TOL, atol=TOL).forward_stats.n_rhs
    assert cost_many <= cost_one + 6 * (len(times) - 1), (cost_one, cost_many)


def test_forward_sensitivity_solves_with_the_solver_and_tolerances_it_is_given():
    problem = small_problem(times=(1.0,), batch=2)
    dp5 = gradient(problem, engine=ForwardSensitivity(), solver="DP5", rtol=TOL, atol=TOL).forward_stats
    bs3 = gradient(problem, engine=ForwardSensitivity(), solver="BS3", rtol=TOL, atol=TOL).forward_stats
    radau = gradient(problem, engine=ForwardSensitivity(), solver="RadauIIA5", rtol=TOL, atol=TOL).forward_stats
    assert bs3.n_accepted > dp5.n_accepted  # third order: more steps at the same tolerance
    assert radau.n_jac >= 1 and radau.n_lu >= 1 and dp5.n_jac == 0
    loose_r = gradient(problem, engine=ForwardSensitivity(), rtol=1e-4, atol=TOL).forward_stats
    loose_a = gradient(problem, engine=ForwardSensitivity(), rtol=TOL, atol=1e-4).forward_stats
    assert loose_r.n_rhs < dp5.n_rhs and loose_a.n_rhs < dp5.n_rhs
