"""Models other than the MLP: the protocol, the derivative checker, the built-in models against
closed forms, a model written here (outside the package) through every engine and solver family,
and refusals of what a model lacks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import expm, expm_frechet

from harness.errors import HarnessInputError
from harness.models import (
    MLP,
    Linear,
    LotkaVolterra,
    VectorField,
    build_model,
    check_model,
    model_spec,
    predator_prey_ude,
)
from harness.models._check import check_once
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
from harness.solvers import SOLVERS

# The solver catalogue's bounds for the MLP against ForwardSensitivity (tests/test_gradients.py):
# per entry |g - r| <= FACTOR[solver] * SOLVER_TOL * max|r|, the reference at 1e-11 with DP8.
from test_gradients import FACTOR, SMALL_ADJOINTS, SOLVER_TOL


# ------------------------------------------------------------------ a model written by a user
class DampedPendulum(VectorField):
    """θ'' = -(g/l) sin θ - c θ', with z = (θ, ω) and parameters (g/l, c): written with f and vjp
    only, as a user would; jac and jac_theta come from the protocol's defaults (VJPs)."""

    state_dim = 2
    n_params = 2

    def f(self, t, z, theta):
        k, c = theta
        return np.stack((z[:, 1], -k * np.sin(z[:, 0]) - c * z[:, 1]), axis=1)

    def vjp(self, t, z, theta, a, *, per_sample=False):
        k, c = theta
        f = self.f(t, z, theta)
        # ∂f/∂z = [[0, 1], [-k cos θ, -c]]
        a_z = np.stack((-k * np.cos(z[:, 0]) * a[:, 1], a[:, 0] - c * a[:, 1]), axis=1)
        rows = np.stack((-np.sin(z[:, 0]) * a[:, 1], -z[:, 1] * a[:, 1]), axis=1)
        return f, a_z, rows if per_sample else rows.sum(axis=0)


class TransposedPendulum(DampedPendulum):
    """A planted mistake: (∂f/∂z) a instead of (∂f/∂z)ᵀ a, the most common hand-written VJP error."""

    def vjp(self, t, z, theta, a, *, per_sample=False):
        f, _, a_theta = super().vjp(t, z, theta, a, per_sample=per_sample)
        k, c = theta
        a_z = np.stack((a[:, 1], -k * np.cos(z[:, 0]) * a[:, 0] - c * a[:, 1]), axis=1)
        return f, a_z, a_theta


class SignSlipPendulum(DampedPendulum):
    """A planted mistake in the θ part only: the sign of ∂f/∂c."""

    def vjp(self, t, z, theta, a, *, per_sample=False):
        f, a_z, a_theta = super().vjp(t, z, theta, a, per_sample=per_sample)
        a_theta = np.array(a_theta)
        a_theta[..., 1] *= -1.0
        return f, a_z, a_theta


class NoJacobian:
    """Duck-typed (no base class): f and vjp only, so no jac and no jac_theta."""

    state_dim = 2
    n_params = 2

    def __init__(self):
        self._inner = DampedPendulum()

    def f(self, t, z, theta):
        return self._inner.f(t, z, theta)

    def vjp(self, t, z, theta, a, *, per_sample=False):
        return self._inner.vjp(t, z, theta, a, per_sample=per_sample)

    def check_theta(self, theta):
        return np.asarray(theta, dtype=np.float64)

    def describe(self):
        return "pendulum without Jacobians"


def pendulum_problem(model=None, batch=4):
    model = DampedPendulum() if model is None else model
    rng = np.random.default_rng(3)
    theta = np.array([4.0, 0.3])
    z0 = rng.uniform(-1.5, 1.5, size=(batch, 2))
    times = np.array([1.0, 2.5, 4.0])
    data = rng.uniform(-1.0, 1.0, size=(3, batch, 2))
    return Problem(model, theta, z0, 0.0, times, data, "pendulum")


def test_user_model_passes_the_checker():
    report = check_model(DampedPendulum(), theta=[4.0, 0.3])
    assert report.ok, report.format()
    assert {m.method for m in report.methods} == {"vjp.f", "vjp.z", "vjp.theta", "vjp.per_sample", "jac", "jac_theta"}
    # central differences at h ~ 6e-6 relative: ~1e-10 relative error for this smooth f
    assert max(m.relative_error for m in report.methods) < 1e-8


@pytest.fixture(scope="module")
def pendulum_reference():
    problem = pendulum_problem()
    return problem, gradient(problem, engine=ForwardSensitivity(), solver="DP8", rtol=1e-11, atol=1e-11)


def test_user_model_reference_agrees_with_finite_differences(pendulum_reference):
    """The reference itself, against differences of the solved loss (no derivative code): bound as
    for the catalogue's small references, 1e-5 of the gradient's scale."""
    problem, ref = pendulum_reference
    fd = gradient(problem, engine=FiniteDifferences(), solver="DP8", rtol=1e-11, atol=1e-11)
    for g, r in ((fd.dtheta, ref.dtheta), (fd.dz0, ref.dz0)):
        assert np.max(np.abs(g - r)) <= 1e-5 * np.max(np.abs(r))


USER_CATALOGUE = [
    (engine, solver) for engine in [*SMALL_ADJOINTS, "FiniteDifferences"] for solver in sorted(SOLVERS)
    if not (engine == "RecursiveCheckpointAdjoint" and SOLVERS[solver].implicit)
]


@pytest.mark.parametrize("engine_name,solver", USER_CATALOGUE)
def test_user_model_through_every_engine_and_solver(pendulum_reference, engine_name, solver):
    """A model defined outside the package, every harness engine, explicit and implicit solvers: the
    catalogue's per-entry bounds for the MLP against ForwardSensitivity. Finite differences have a
    bound of their own: relative step 1e-3 turns the solve's ~tol noise into tol/h = 1e-5 relative."""
    problem, ref = pendulum_reference
    engine = FiniteDifferences() if engine_name == "FiniteDifferences" else SMALL_ADJOINTS[engine_name]
    result = gradient(problem, engine=engine, solver=solver, rtol=SOLVER_TOL, atol=SOLVER_TOL)
    bound = FACTOR[solver] * SOLVER_TOL
    if engine_name == "FiniteDifferences":
        bound = FACTOR[solver] * SOLVER_TOL / 1e-3
    for g, r in ((result.dtheta, ref.dtheta), (result.dz0, ref.dz0)):
        assert np.max(np.abs(g - r)) / np.max(np.abs(r)) <= bound
    assert result.path == "numpy (model's vjp)"


def test_mlp_keeps_its_fused_path():
    from harness.problems import seed_problem
    from harness import _compiled

    with _compiled.numpy_reference():
        result = gradient(seed_problem(batch=5), engine=InterpolatingAdjoint())
    assert result.path == "numpy (MLP)"


# ------------------------------------------------------------------------- the checker catches
def test_checker_names_a_transposed_vjp():
    report = check_model(TransposedPendulum(), theta=[4.0, 0.3])
    assert not report.ok
    # the z part is wrong; jac, built from the vjp by default, inherits it; the θ part is right
    assert "vjp.z" in report.failed and "vjp.theta" not in report.failed
    wrong = next(m for m in report.methods if m.method == "vjp.z")
    assert wrong.relative_error > 0.1  # O(1), where a right vjp measures ~1e-10
    assert "vjp.z" in report.format() and "WRONG" in report.format()


def test_checker_names_a_wrong_theta_part():
    report = check_model(SignSlipPendulum(), theta=[4.0, 0.3])
    assert set(report.failed) >= {"vjp.theta", "vjp.per_sample"} and "vjp.z" not in report.failed
    worst = next(m for m in report.methods if m.method == "vjp.theta")
    assert "theta" in worst.worst_entry


def test_gradient_refuses_a_wrong_vjp_before_solving():
    problem = pendulum_problem(TransposedPendulum())
    with pytest.raises(HarnessInputError, match=r"model\.vjp\.z disagrees") as err:
        gradient(problem, engine=BacksolveAdjoint())
    assert "\n" not in str(err.value)


def test_gradient_check_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("HARNESS_CHECK_MODEL", "0")
    check_once(SignSlipPendulum(), np.array([4.0, 0.3]))  # no error: switched off


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("engine,solver,missing", [
    (ForwardSensitivity(), "DP5", "jac"),
    (InterpolatingAdjoint(), "RadauIIA5", "jac"),
    (QuadratureAdjoint(solver="BDF"), "DP5", "jac"),
])
def test_missing_slot_refused_in_one_line(engine, solver, missing, monkeypatch):
    problem = pendulum_problem(NoJacobian())
    calls = []
    model = problem.model
    original = model.f
    monkeypatch.setattr(model, "f", lambda *a: calls.append(1) or original(*a))
    with pytest.raises(HarnessInputError, match=f"model\\.{missing}") as err:
        gradient(problem, engine=engine, solver=solver)
    assert "\n" not in str(err.value) and "pendulum without Jacobians" in str(err.value)
    assert calls == []  # refused before anything was solved


def test_model_without_jacobians_runs_explicit_adjoints():
    problem = pendulum_problem(NoJacobian())
    for engine in (GaussAdjoint(), RecursiveCheckpointAdjoint()):
        assert np.all(np.isfinite(gradient(problem, engine=engine).dtheta))


# ------------------------------------------------------------------- the built-in models
@pytest.mark.parametrize("model", [LotkaVolterra(), predator_prey_ude(hidden=5), Linear(3), MLP((2, 4, 2))],
                         ids=lambda m: type(m).__name__)
def test_builtin_models_pass_the_checker(model):
    report = check_model(model, method="complex" if not isinstance(model, MLP) else "central")
    assert report.ok, report.format()


def test_lotka_volterra_decoupled_closed_form():
    """With β = δ = 0 the species decouple, x = x0 e^{αt}, y = y0 e^{-γt}, and the first-order
    sensitivities are closed forms: ∂x/∂α = t x, ∂x/∂β = -x0 y0 e^{αt} (1 - e^{-γt}) / γ,
    ∂y/∂γ = -t y, ∂y/∂δ = y0 x0 e^{-γt} (e^{αt} - 1) / α. Against them dL/dθ and dL/dz0 of every
    adjoint at rtol = atol = 1e-10 within 1e-7 relative (the catalogue's bound)."""
    alpha, gamma = 0.4, 0.7
    theta = np.array([alpha, 0.0, gamma, 0.0])
    rng = np.random.default_rng(1)
    z0 = rng.uniform(0.5, 2.0, size=(3, 2))
    times = np.array([0.5, 1.5])
    data = rng.uniform(0.5, 2.0, size=(2, 3, 2))
    problem = Problem(LotkaVolterra(), theta, z0, 0.0, times, data, "decoupled")
    x0, y0 = z0[:, 0], z0[:, 1]
    dtheta, dz0 = np.zeros(4), np.zeros((3, 2))
    for k, t in enumerate(times):
        x, y = x0 * np.exp(alpha * t), y0 * np.exp(-gamma * t)
        rx, ry = x - data[k, :, 0], y - data[k, :, 1]
        dtheta += [np.sum(rx * t * x), np.sum(rx * -x0 * y0 * np.exp(alpha * t) * (1 - np.exp(-gamma * t)) / gamma),
                   np.sum(ry * -t * y), np.sum(ry * x0 * y0 * np.exp(-gamma * t) * (np.exp(alpha * t) - 1) / alpha)]
        dz0[:, 0] += rx * np.exp(alpha * t)
        dz0[:, 1] += ry * np.exp(-gamma * t)
    for engine in (BacksolveAdjoint(), InterpolatingAdjoint(), QuadratureAdjoint(), GaussAdjoint(),
                   RecursiveCheckpointAdjoint(), ForwardSensitivity()):
        result = gradient(problem, engine=engine, rtol=1e-10, atol=1e-10)
        assert np.linalg.norm(result.dtheta - dtheta) <= 1e-7 * np.linalg.norm(dtheta), engine
        assert np.linalg.norm(result.dz0 - dz0) <= 1e-7 * np.linalg.norm(dz0), engine


def test_linear_model_closed_form():
    """f = A z + c: z(t) = P e^{Mt} [z0; 1], M = [[A, c], [0, 0]]; dL/dA_ij and dL/dc_i from the
    Fréchet derivative of expm (no ODE solver in the reference, ~1e-15), as tests/test_closed_form.py
    does for the identity MLP. Every adjoint within 1e-7 relative at rtol = atol = 1e-10."""
    model = Linear(2)
    rng = np.random.default_rng(5)
    theta = 0.5 * rng.standard_normal(model.n_params)
    z0 = rng.uniform(-2.0, 2.0, size=(4, 2))
    times = np.array([1.0, 2.0])
    data = rng.uniform(-1.0, 1.0, size=(2, 4, 2))
    problem = Problem(model, theta, z0, 0.0, times, data, "linear")
    A, c = model.unpack(theta)
    M = np.zeros((3, 3))
    M[:2, :2], M[:2, 2] = A, c
    z0_aug = np.concatenate((z0, np.ones((4, 1))), axis=1)
    dtheta, dz0 = np.zeros(model.n_params), np.zeros_like(z0)
    for k, t in enumerate(times):
        E = expm(M * t)
        r = (z0_aug @ E.T)[:, :2] - data[k]
        dz0 += r @ E[:2, :2]
        for p, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2)]):
            direction = np.zeros((3, 3))
            direction[i, j] = t
            dE = expm_frechet(M * t, direction, compute_expm=False)
            dtheta[p] += np.sum(r * (z0_aug @ dE.T)[:, :2])
    for engine in (BacksolveAdjoint(), InterpolatingAdjoint(), QuadratureAdjoint(), GaussAdjoint(),
                   RecursiveCheckpointAdjoint(), ForwardSensitivity()):
        result = gradient(problem, engine=engine, rtol=1e-10, atol=1e-10)
        assert np.linalg.norm(result.dtheta - dtheta) <= 1e-7 * np.linalg.norm(dtheta), engine
        assert np.linalg.norm(result.dz0 - dz0) <= 1e-7 * np.linalg.norm(dz0), engine


def test_ude_gradient_reaches_physics_and_network():
    """With the network's last layer zero the UDE is its physics, x = x0 e^{αt}, y = y0 e^{-γt}:
    dL/dα, dL/dγ are LV's closed forms, dL/db2 = Σ r (e^{g t} - 1)/g per component (∂z_i/∂b2_i =
    ∫ e^{g_i (t - s)} ds), and dL/dW1, dL/db1 are exactly 0 (W2 = 0 blocks them)."""
    model = predator_prey_ude(hidden=3)
    layout = {v.name: v for v in model.layout}
    theta = np.zeros(model.n_params)
    alpha, gamma = 0.3, 0.6
    theta[layout["alpha"].slice], theta[layout["gamma"].slice] = alpha, gamma
    theta[layout["mlp.W1"].slice] = np.random.default_rng(0).standard_normal(6)
    rng = np.random.default_rng(2)
    z0 = rng.uniform(0.5, 2.0, size=(3, 2))
    times = np.array([1.0, 2.0])
    data = rng.uniform(0.5, 2.0, size=(2, 3, 2))
    problem = Problem(model, theta, z0, 0.0, times, data, "ude")
    d_alpha = d_gamma = 0.0
    d_b2 = np.zeros(2)
    for k, t in enumerate(times):
        x, y = z0[:, 0] * np.exp(alpha * t), z0[:, 1] * np.exp(-gamma * t)
        rx, ry = x - data[k, :, 0], y - data[k, :, 1]
        d_alpha += np.sum(rx * t * x)
        d_gamma += np.sum(ry * -t * y)
        d_b2 += [np.sum(rx) * (np.exp(alpha * t) - 1) / alpha, np.sum(ry) * (1 - np.exp(-gamma * t)) / gamma]
    for engine in (InterpolatingAdjoint(), GaussAdjoint(), ForwardSensitivity()):
        g = gradient(problem, engine=engine, rtol=1e-10, atol=1e-10).dtheta
        np.testing.assert_allclose([g[layout["alpha"].slice][0], g[layout["gamma"].slice][0]], [d_alpha, d_gamma],
                                   rtol=1e-7)
        np.testing.assert_allclose(g[layout["mlp.b2"].slice], d_b2, rtol=1e-7)
        assert np.all(g[layout["mlp.W1"].slice] == 0.0) and np.all(g[layout["mlp.b1"].slice] == 0.0)
        assert np.any(g[layout["mlp.W2"].slice] != 0.0)


# --------------------------------------------------------------------- naming models in files
def test_build_model_by_name_and_spec_round_trip():
    for model in (LotkaVolterra(), predator_prey_ude(hidden=4), Linear(3), MLP((2, 5, 2), "softplus")):
        name, parameters = model_spec(model)
        assert build_model(name, parameters) == model


@pytest.mark.parametrize("name,parameters,expected", [
    ("harness.models.LotkaVolterra", {}, "expected an importable 'module:callable'"),
    ("no_such_module:Model", {}, "cannot be imported"),
    ("harness.models:NoSuchModel", {}, "has no 'NoSuchModel'"),
    ("os:system", {"command": "true"}, "neither a model class"),
    ("harness.models:Linear", {"state_dim": 0}, "state_dim=0"),
    ("harness.models:LotkaVolterra", {"init_theta": {"a": object()}}, "plain values"),
])
def test_bad_model_names_are_one_line(name, parameters, expected):
    with pytest.raises(HarnessInputError, match=expected) as err:
        build_model(name, parameters)
    assert "\n" not in str(err.value)


def test_problem_file_names_its_model(tmp_path):
    from harness.problems import build_problem, load_problem, save_problem

    problem = build_problem("lotka_volterra", batch=3)
    path = save_problem(problem, tmp_path / "lv.npz")
    with np.load(path) as npz:
        assert str(npz["model"]) == "harness.models:LotkaVolterra" and "widths" not in npz.files
    loaded = load_problem(path)
    assert loaded.model == problem.model
    np.testing.assert_array_equal(loaded.theta, problem.theta)
    np.testing.assert_array_equal(loaded.data, problem.data)


def test_problem_file_with_a_bad_model_name_is_one_line(tmp_path):
    from harness.problems import build_problem, load_problem, save_problem

    path = save_problem(build_problem("lotka_volterra", batch=2), tmp_path / "lv.npz")
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["model"] = np.array("harness.models:NoSuchModel")
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(HarnessInputError, match="has no 'NoSuchModel'") as err:
        load_problem(tmp_path / "bad.npz")
    assert "\n" not in str(err.value) and "bad.npz" in str(err.value)


def test_experiment_names_a_model():
    from harness.compare import parse_experiment
    from harness.compare._cells import build_problem_from_spec

    document = {"problem": {"name": "lynx_hare", "batch": 1, "model": "harness.models:predator_prey_ude",
                            "model_parameters": {"hidden": 3}},
                "grid": {"engines": ["GaussAdjoint"], "solvers": ["DP5"], "tolerances": [1e-6]}}
    experiment = parse_experiment(document)
    problem = build_problem_from_spec(experiment.problem, 0)
    assert problem.model == predator_prey_ude(hidden=3) and problem.theta.shape == (2 + 4 * 3 + 3 + 2,)
    document["problem"]["model"] = "harness.models:Nope"
    with pytest.raises(HarnessInputError, match=r"\[problem\] model.*has no 'Nope'"):
        parse_experiment(document)


def test_check_model_command(capsys):
    from harness.cli import main

    assert main(["check-model", "harness.models:LotkaVolterra", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and {m["method"] for m in report["methods"]} >= {"vjp.z", "vjp.theta", "jac", "jac_theta"}
    # the planted mistake of this file, named by its module: exit 1, the method named
    assert main(["check-model", "test_models:TransposedPendulum", "--parameters", "{}", "--theta", "[4, 0.3]"]) == 1
    out = capsys.readouterr().out
    assert "wrong: " in out and "vjp.z" in out.splitlines()[-1]
    assert main(["check-model", "os:system"]) == 2
    assert "neither a model class" in capsys.readouterr().err


def test_train_gradcheck_and_bench_take_any_model(tmp_path):
    """The entry points beyond `gradient` on a model other than the MLP: training lowers the loss,
    gradcheck holds every engine within its bound, bench times every adjoint."""
    from harness.bench import run_bench
    from harness.gradcheck import run_gradcheck
    from harness.problems import build_problem, save_problem
    from harness.training import train

    problem = build_problem("lotka_volterra", batch=4)
    result = train(problem, steps=20, lr=0.01, log_every=10, progress=False)
    assert result.history[-1]["loglik_per_datapoint"] > result.history[0]["loglik_per_datapoint"]
    path = save_problem(problem, tmp_path / "lv.npz")
    (case,) = run_gradcheck(problem_file=path, include_julia=False)
    assert all(row.ok for row in case.rows) and len(case.rows) >= 7
    report = run_bench(repeats=1, problem_file=path)
    assert {row["name"] for row in report["rows"]} >= {"BacksolveAdjoint", "GaussAdjoint", "RecursiveCheckpointAdjoint"}
