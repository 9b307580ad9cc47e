"""Engines where the affine closed form cannot look: a nonlinear time-dependent field under implicit
solvers, the Newton Jacobians of the backward systems, BacksolveAdjoint's failures, finite differences
of a nonlinear loss, and the settings engines refuse. Tiny problems (B = 2, N = 2, t in [0.2, 1.2]).

The reference for the nonlinear field shares no code with harness's engines or solvers: scipy's
`solve_ivp` (DOP853, rtol 1e-11, atol 1e-12) of the forward sensitivity system written here from the
model's own f, jac and jac_theta (checked against finite differences in tests/test_models.py):

    z' = f,   S_θ' = J S_θ + J_θ,   S_z0' = J S_z0,   dL/dθ = Σ_kb S_θᵀ r_kb,   dL/dz0_b = Σ_k S_z0ᵀ r_kb.

Bound: the engines run at tol = 1e-8; each solve's global error is a modest multiple of tol (< 50 tol,
tests/test_solvers.py), the backward pass adds as much, and the field (weights ~0.5, tanh) grows an
early error by at most e^{‖J‖ t1} < e^{1.2 · 1.2} < 5 over this span: 100 · tol · 5 = 5e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from harness.errors import HarnessInputError, SolverError, UnstableBacksolveError
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
    RecursiveCheckpointAdjoint,
    gradient,
)

TOL = 1e-8
BOUND = 100 * TOL * 5  # see the module docstring


def tanh_problem(time_dependent=True, batch=2, times=(0.7, 1.2), t0=0.2, seed=11, z_scale=1.0):
    rng = np.random.default_rng(seed)
    model = MLP((2, 3, 2), activation="tanh", time_dependent=time_dependent)
    theta = 0.5 * rng.standard_normal(model.n_params)
    z0 = z_scale * rng.uniform(-1.0, 1.0, (batch, 2))
    data = rng.uniform(-1.0, 1.0, (len(times), batch, 2))
    return Problem(model, theta, z0, t0, np.array(times), data, "tanh")


def scipy_states(problem, z0=None, theta=None):
    """z(t_k) (K, B, N) by solve_ivp of f alone."""
    model = problem.model
    theta = problem.theta if theta is None else theta
    z0 = problem.z0 if z0 is None else z0
    batch, n = z0.shape
    sol = solve_ivp(lambda t, y: model.f(t, y.reshape(batch, n), theta).reshape(-1), (problem.t0, problem.t1),
                    z0.reshape(-1), method="DOP853", rtol=1e-12, atol=1e-13, t_eval=problem.times)
    return sol.y.T.reshape(-1, batch, n)


def scipy_reference(problem):
    """(L, dL/dθ, dL/dz0) by forward sensitivities solved with scipy (see the module docstring)."""
    model, theta = problem.model, problem.theta
    batch, n, p = problem.batch_size, model.state_dim, model.n_params
    sizes = np.cumsum([batch * n, batch * n * p])

    def rhs(t, y):
        z, s_theta, s_z0 = np.split(y, sizes)
        z = z.reshape(batch, n)
        J = model.jac(t, z, theta)
        d_theta = J @ s_theta.reshape(batch, n, p) + model.jac_theta(t, z, theta)
        d_z0 = J @ s_z0.reshape(batch, n, n)
        return np.concatenate([model.f(t, z, theta).reshape(-1), d_theta.reshape(-1), d_z0.reshape(-1)])

    y0 = np.concatenate([problem.z0.reshape(-1), np.zeros(batch * n * p),
                         np.tile(np.eye(n), (batch, 1, 1)).reshape(-1)])
    sol = solve_ivp(rhs, (problem.t0, problem.t1), y0, method="DOP853", rtol=1e-11, atol=1e-12, t_eval=problem.times)
    loss, dtheta, dz0 = 0.0, np.zeros(p), np.zeros((batch, n))
    for k in range(problem.times.size):
        z, s_theta, s_z0 = np.split(sol.y[:, k], sizes)
        r = z.reshape(batch, n) - problem.data[k]
        loss += 0.5 * float(np.sum(r * r))
        dtheta += np.einsum("bip,bi->p", s_theta.reshape(batch, n, p), r)
        dz0 += np.einsum("bik,bi->bk", s_z0.reshape(batch, n, n), r)
    return loss + problem.loss_constant, dtheta, dz0


def relative_error(g, r):
    return float(np.linalg.norm(g - r) / np.linalg.norm(r))


def assert_matches(result, reference, bound=BOUND):
    loss, dtheta, dz0 = reference
    assert relative_error(result.dtheta, dtheta) <= bound, relative_error(result.dtheta, dtheta)
    assert relative_error(result.dz0, dz0) <= bound, relative_error(result.dz0, dz0)
    assert abs(result.loss - loss) <= bound * abs(loss)


@pytest.mark.parametrize("engine", [BacksolveAdjoint(solver="RadauIIA5"), InterpolatingAdjoint(solver="RadauIIA5"),
                                    QuadratureAdjoint(solver="RadauIIA5"), GaussAdjoint(solver="BDF"),
                                    ForwardSensitivity()], ids=lambda e: type(e).__name__)
def test_a_nonlinear_time_dependent_field_under_implicit_solvers(engine):
    """Newton's Jacobian of each backward system is evaluated at the step's own time: the field's
    ∂f/∂z depends on t here. BDF's variable order makes its global error a larger multiple of tol
    (x 10 on the bound)."""
    problem = tanh_problem(times=(1.2,))
    solver = "BDF" if isinstance(engine, GaussAdjoint) else "RadauIIA5"
    result = gradient(problem, engine=engine, solver=solver, rtol=TOL, atol=TOL)
    assert_matches(result, scipy_reference(problem), BOUND * (10 if solver == "BDF" else 1))


def test_the_reference_is_right():
    """The scipy reference against central differences of a scipy-solved loss (h = 1e-6; loss to
    ~1e-12, so ~1e-6 absolute noise in the quotient at worst; bound 1e-5 relative)."""
    problem = tanh_problem(times=(0.7, 1.2))
    _, dtheta, dz0 = scipy_reference(problem)

    def loss(theta=None, z0=None):
        r = scipy_states(problem, z0, theta) - problem.data
        return 0.5 * float(np.sum(r * r))

    h = 1e-6
    fd = np.array([(loss(theta=problem.theta + h * e) - loss(theta=problem.theta - h * e)) / (2 * h)
                   for e in np.eye(problem.theta.size)])
    assert relative_error(fd, dtheta) <= 1e-5
    fd_z0 = np.zeros_like(dz0)
    for b in range(problem.batch_size):
        for i in range(2):
            e = np.zeros_like(problem.z0)
            e[b, i] = h
            fd_z0[b, i] = (loss(z0=problem.z0 + e) - loss(z0=problem.z0 - e)) / (2 * h)
    assert relative_error(fd_z0, dz0) <= 1e-5


@pytest.mark.parametrize("engine", [BacksolveAdjoint(solver="RadauIIA5"), InterpolatingAdjoint(solver="RadauIIA5"),
                                    QuadratureAdjoint(solver="RadauIIA5"), GaussAdjoint(solver="RadauIIA5")],
                         ids=lambda e: type(e).__name__)
def test_the_backward_newton_jacobian_is_the_adjoint_systems(engine):
    """On an affine autonomous field ∂f/∂z is constant, so with the right Jacobian of the backward
    system (-(∂f/∂z)ᵀ for a; ∂f/∂z for BacksolveAdjoint's z) Newton converges on every step and scipy's
    Radau never needs a fresh one: the backward pass evaluates it as rarely as the forward pass does
    (at most 3x as often, for its larger state), where a wrong sign costs a Jacobian on most steps."""
    model = MLP((2, 3, 2), activation="identity", decay=np.array([0.5, 1.0]))
    rng = np.random.default_rng(3)
    problem = Problem(model, 0.6 * rng.standard_normal(model.n_params), rng.uniform(-1.5, 1.5, (2, 2)), 0.0,
                      np.array([1.0]), rng.uniform(-1, 1, (1, 2, 2)), "affine")
    result = gradient(problem, engine=engine, solver="RadauIIA5", rtol=TOL, atol=TOL)
    assert result.backward_stats.n_jac <= 3 * result.forward_stats.n_jac, (result.forward_stats, result.backward_stats)
    assert result.backward_stats.n_lu <= 5 * result.forward_stats.n_lu, (result.forward_stats, result.backward_stats)


def test_forward_sensitivity_newton_jacobian_converges():
    """The same for ForwardSensitivity's implicit solve: its Jacobian (J on z and on every column of
    S) is exact on an affine field, so Radau evaluates it once or twice, as for z alone."""
    model = MLP((2, 3, 2), activation="identity", decay=np.array([0.5, 1.0]))
    rng = np.random.default_rng(3)
    problem = Problem(model, 0.6 * rng.standard_normal(model.n_params), rng.uniform(-1.5, 1.5, (2, 2)), 0.0,
                      np.array([1.0]), rng.uniform(-1, 1, (1, 2, 2)), "affine")
    plain = gradient(problem, engine=InterpolatingAdjoint(), solver="RadauIIA5", rtol=TOL, atol=TOL)
    result = gradient(problem, engine=ForwardSensitivity(), solver="RadauIIA5", rtol=TOL, atol=TOL)
    assert result.forward_stats.n_jac <= 2 * plain.forward_stats.n_jac, (plain.forward_stats, result.forward_stats)


def test_a_backward_solve_that_fails_is_called_unstable_with_the_advice():
    """A stiff decay (λ = 800) is stable forwards and explodes backwards: BacksolveAdjoint's solve of
    z overflows, and the solver's own error is kept as the cause."""
    problem = Problem(Linear(1), np.array([-800.0, 0.0]), np.array([[1.0]]), 0.0, np.array([1.0]),
                      np.array([[[0.5]]]), "decay")
    with pytest.raises(UnstableBacksolveError) as caught:
        gradient(problem, engine=BacksolveAdjoint(), rtol=1e-6, atol=1e-6)
    message = str(caught.value)
    cause = caught.value.__cause__
    assert isinstance(cause, SolverError)
    assert message == (f"BacksolveAdjoint's backward solve of z failed ({cause}); the dynamics are likely unstable "
                       "backwards in time (stiff or dissipative): use InterpolatingAdjoint or QuadratureAdjoint, "
                       "which read z from the forward solution")
    # the adjoints that read z from the forward pass have no such failure
    result = gradient(problem, engine=InterpolatingAdjoint(), rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(result.dtheta))


def test_the_reconstruction_error_is_positive_where_every_z0_exceeds_one():
    """Every |z0| > 1: the tolerance scale atol + rtol |z0| is positive, and so is the error."""
    problem = Problem(Linear(2), np.array([-0.3, 0.2, -0.1, -0.4, 0.1, 0.0]), np.array([[1.3, -1.5], [-1.2, 1.4]]),
                      0.0, np.array([0.5, 1.0]), np.zeros((2, 2, 2)), "big z0")
    result = gradient(problem, engine=BacksolveAdjoint(), rtol=1e-6, atol=1e-6)
    assert 0.0 < result.diagnostics["reconstruction_error"] < 1e3


def test_finite_differences_of_a_nonlinear_loss_are_the_stencil():
    """dL/dz0 by FiniteDifferences(step=0.25) equals the documented stencil (±h, ±2h, h = step ·
    max(1, |z0|), weights 1, -8, 8, -1 over 12 h) applied to the scipy-solved loss: on a nonlinear field
    the stencil's truncation error (O(h⁴), ~1e-5 relative at this large step) depends on h, so a wrong
    step scale shows (h = step / |z0| instead differs by 1e-5); the solver's part is ~ tol / h = 4e-10 at
    tol 1e-10. Bound 1e-7. One |z0| > 1 makes the scale matter."""
    problem = tanh_problem(time_dependent=False, seed=4)
    z0 = problem.z0.copy()
    z0[0, 1] = 2.2
    problem = Problem(problem.model, problem.theta, z0, problem.t0, problem.times, problem.data, "tanh")
    step = 0.25
    result = gradient(problem, engine=FiniteDifferences(step=step), solver="DP8", rtol=1e-10, atol=1e-10)

    def loss(z0_):
        r = scipy_states(problem, z0_) - problem.data
        return 0.5 * float(np.sum(r * r))

    expected = np.zeros_like(z0)
    for b in range(z0.shape[0]):
        for i in range(z0.shape[1]):
            h = step * max(1.0, abs(z0[b, i]))
            for offset, weight in ((-2.0, 1.0), (-1.0, -8.0), (1.0, 8.0), (2.0, -1.0)):
                shifted = z0.copy()
                shifted[b, i] += offset * h
                expected[b, i] += weight * loss(shifted)
            expected[b, i] /= 12 * h
    assert relative_error(result.dz0, expected) <= 1e-7


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_recursive_checkpoints_must_be_a_positive_integer(bad):
    with pytest.raises(HarnessInputError) as caught:
        RecursiveCheckpointAdjoint(checkpoints=bad)
    assert str(caught.value) == f"checkpoints={bad!r}: expected None (store every step) or an integer >= 1"


def test_recursive_checkpoints_accepts_one_and_none():
    assert RecursiveCheckpointAdjoint(checkpoints=1).checkpoints == 1
    assert RecursiveCheckpointAdjoint().checkpoints is None


@pytest.mark.parametrize("engine", [InterpolatingAdjoint(), GaussAdjoint(), ForwardSensitivity()],
                         ids=lambda e: type(e).__name__)
def test_explicit_solves_get_no_jacobian_and_say_nothing(engine):
    """An explicit solver is not handed a Newton Jacobian: scipy's DOP853 (DP8) would warn that the
    argument has no effect. Every warning is an error here."""
    import warnings

    problem = tanh_problem(time_dependent=False, times=(1.2,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gradient(problem, engine=engine, solver="DP8", rtol=TOL, atol=TOL)
    assert_matches(result, scipy_reference(problem))


class DuckLinear:
    """A model that follows the protocol by its methods alone (no `harness.models.VectorField` base, no
    `autonomous` attribute): f(z) = A z, θ = A (N = 2, P = 4). An autonomous field is assumed."""

    state_dim, n_params = 2, 4

    def check_theta(self, theta):
        return np.asarray(theta, dtype=np.float64)

    def f(self, t, z, theta):
        return z @ theta.reshape(2, 2).T

    def vjp(self, t, z, theta, a, *, per_sample=False):
        A = theta.reshape(2, 2)
        per_row = (a[:, :, None] * z[:, None, :]).reshape(len(z), -1)
        return z @ A.T, a @ A, per_row if per_sample else per_row.sum(axis=0)

    def describe(self):
        return "DuckLinear"


def test_a_model_without_the_autonomous_attribute_is_autonomous():
    rng = np.random.default_rng(8)
    problem = Problem(DuckLinear(), np.array([-0.5, 0.3, -0.2, -0.4]), rng.uniform(-1, 1, (2, 2)), 0.0,
                      np.array([0.5, 1.0]), rng.uniform(-1, 1, (2, 2, 2)), "duck")
    reference = Problem(Linear(2), np.concatenate([problem.theta, [0.0, 0.0]]), problem.z0, 0.0, problem.times,
                        problem.data, "linear")
    for engine in (BacksolveAdjoint(), InterpolatingAdjoint(), GaussAdjoint()):
        duck = gradient(problem, engine=engine, rtol=TOL, atol=TOL)
        same = gradient(reference, engine=engine, rtol=TOL, atol=TOL)
        # both within BOUND of the exact gradient (the Linear model's extra θ entries c change the steps)
        assert relative_error(duck.dtheta, same.dtheta[:4]) <= 2 * BOUND
        assert relative_error(duck.dz0, same.dz0) <= 2 * BOUND


def test_the_reconstruction_error_does_not_depend_on_the_scale_of_z():
    """max |z_back(t0) - z0| / (atol + rtol |z0|) is in units of the tolerance: for a homogeneous linear
    field (f = A z) scaling z0 and the data by 64 scales z, a and every error estimate by a power of two
    (exact in floating point), and with atol negligible (1e-30) the solver takes the same steps, so the
    reported error is the same number (to 1e-12, a margin over the exact equality)."""
    rng = np.random.default_rng(1)
    theta = np.array([-0.3, 0.8, -0.6, -0.2, 0.0, 0.0])
    z0, data = rng.uniform(-1, 1, (2, 2)), rng.uniform(-1, 1, (2, 2, 2))
    errors = []
    for scale in (1.0, 64.0):
        problem = Problem(Linear(2), theta, scale * z0, 0.0, np.array([0.6, 1.2]), scale * data, "scaled")
        result = gradient(problem, engine=BacksolveAdjoint(), rtol=1e-6, atol=1e-30)
        errors.append(result.diagnostics["reconstruction_error"])
    assert 0.0 < errors[0] < 1e3
    assert abs(errors[1] - errors[0]) <= 1e-12 * errors[0], errors
