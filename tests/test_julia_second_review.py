"""Issue 26's Python-side fixes and issue 23's item 6, tested without Julia: the refusals decided
before Julia starts, any model on the Python routes, the selftest's bounds and plan, the import order
with torch, and a failed Julia start remembered for the process.

Nothing here fakes a Julia result: where Julia's start is simulated, it is an `import juliacall` that
fails, and the assertions are about what harness does with that failure.
"""

from __future__ import annotations

import importlib.abc
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness._forward import SolveOptions
from harness.errors import BackendUnavailableError, HarnessInputError, RefusedError
from harness.julia import JuliaAdjoint, JuliaForwardSensitivity, names, runtime, selftest
from harness.julia.callbacks import PythonDynamics
from harness.julia.environment import JuliaStatus
from harness.julia.guards import ROUTE_NEEDS, check_model_for_route
from harness.model import ACTIVATIONS, MLP
from harness.peers.common import check_supported
from harness.problems import Problem, multi_time_problem
from harness._state_layout import flat

ROOT = Path(__file__).resolve().parent.parent
GLUE = (ROOT / "harness" / "julia" / "HarnessJL.jl").read_text()


# ----------------------------------------------------------------------------- models of the protocol
class LotkaVolterra:
    """Defined here, outside the package, to the protocol's names only (f, vjp, jac, jac_theta)."""

    state_dim, n_params, autonomous = 2, 4, True
    parameter_names = ["alpha", "beta", "delta", "gamma"]

    def f(self, t, z, theta):
        a, b, d, g = theta
        x, y = z[:, 0], z[:, 1]
        return np.stack([a * x - b * x * y, -d * y + g * x * y], axis=1)

    def vjp(self, t, z, theta, lam, per_sample=False):
        a, b, d, g = theta
        x, y = z[:, 0], z[:, 1]
        u, v = lam[:, 0], lam[:, 1]
        a_z = np.stack([u * (a - b * y) + v * g * y, -u * b * x + v * (g * x - d)], axis=1)
        a_theta = np.stack([u * x, -u * x * y, -v * y, v * x * y], axis=1)
        return self.f(t, z, theta), a_z, a_theta if per_sample else a_theta.sum(axis=0)

    def jac(self, t, z, theta):
        a, b, d, g = theta
        x, y = z[:, 0], z[:, 1]
        return np.stack([np.stack([a - b * y, -b * x], 1), np.stack([g * y, g * x - d], 1)], 1)

    def jac_theta(self, t, z, theta):
        x, y = z[:, 0], z[:, 1]
        o = np.zeros_like(x)
        return np.stack([np.stack([x, -x * y, o, o], 1), np.stack([o, o, -y, x * y], 1)], 1)

    def init(self, rng):
        return np.array([1.5, 1.0, 3.0, 1.0]) * rng.uniform(0.8, 1.2, 4)

    def check_theta(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (4,):
            raise HarnessInputError(f"theta has shape {theta.shape}: expected (4,)")
        return theta

    def describe(self):
        return "Lotka-Volterra (test file)"


class UniversalDE:
    """A universal differential equation: known decay -k z plus an MLP term, θ = [k, θ_MLP]. Uses the
    MLP only through the protocol's f, vjp and jac."""

    def __init__(self):
        self.net = MLP((2, 4, 2))
        self.state_dim, self.n_params, self.autonomous = 2, 1 + self.net.n_params, True
        self.parameter_names = ["k"] + [f"mlp{i}" for i in range(self.net.n_params)]

    def f(self, t, z, theta):
        return -theta[0] * z + self.net.f(t, z, theta[1:])

    def vjp(self, t, z, theta, a, per_sample=False):
        f_net, a_z, a_net = self.net.vjp(t, z, theta[1:], a, per_sample=per_sample)
        a_k = -np.sum(a * z, axis=1)
        a_theta = np.concatenate([a_k[:, None], a_net], axis=1) if per_sample else np.concatenate([[a_k.sum()], a_net])
        return f_net - theta[0] * z, a_z - theta[0] * a, a_theta

    def jac(self, t, z, theta):
        return self.net.jac(t, z, theta[1:]) - theta[0] * np.eye(2)

    def jac_theta(self, t, z, theta):
        return np.concatenate([-z[:, :, None], self.net.jac_theta(t, z, theta[1:])], axis=2)

    def init(self, rng):
        return np.concatenate([[0.5], self.net.init(rng)])

    def check_theta(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise HarnessInputError(f"theta has shape {theta.shape}: expected ({self.n_params},)")
        return theta

    def describe(self):
        return "UDE: -k z + MLP 2-4-2 (test file)"


def protocol_models():
    """The test file's models, and issue 23's built-in ones where this branch has them."""
    found = [LotkaVolterra(), UniversalDE()]
    try:
        from harness import models as builtin  # noqa: PLC0415
    except ImportError:
        return found
    return found + [getattr(builtin, name)() for name in ("LotkaVolterra",) if hasattr(builtin, name)]


def _problem(model, batch=3):
    rng = np.random.default_rng(0)
    z0 = rng.uniform(0.5, 1.5, size=(batch, model.state_dim))
    return Problem(model, model.init(rng), z0, 0.0, np.array([0.5, 1.0]), np.ones((2, batch, model.state_dim)),
                   name="protocol")


@pytest.mark.parametrize("model", protocol_models(), ids=lambda m: m.describe())
def test_the_test_models_derivatives_against_finite_differences(model):
    # central differences, step 1e-6: truncation ~1e-12 x third derivatives, rounding ~1e-16/1e-6 =
    # 1e-10 relative; 1e-7 leaves room for O(1)-O(10) derivatives and catches any wrong term
    rng = np.random.default_rng(1)
    theta, z, a = model.init(rng), rng.uniform(0.5, 1.5, (3, 2)), rng.normal(size=(3, 2))
    h = 1e-6
    fz = np.stack([(model.f(0, z + h * e, theta) - model.f(0, z - h * e, theta)) / (2 * h)
                   for e in np.eye(2)[:, None, :].repeat(3, axis=1)], axis=2)  # (B, N, N)
    ft = np.stack([(model.f(0, z, theta + h * e) - model.f(0, z, theta - h * e)) / (2 * h)
                   for e in np.eye(len(theta))], axis=2)  # (B, N, P)
    np.testing.assert_allclose(model.jac(0, z, theta), fz, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(model.jac_theta(0, z, theta), ft, rtol=1e-7, atol=1e-7)
    _, a_z, a_theta = model.vjp(0, z, theta, a)
    np.testing.assert_allclose(a_z, np.einsum("bi,bij->bj", a, fz), rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(a_theta, np.einsum("bi,bip->p", a, ft), rtol=1e-7, atol=1e-7)


# ----------------------------------------------------------------------------- item 6: any model
class OnlyWhatPythonVJPCalls:
    """A model with f, vjp and jac and nothing else of the protocol's derivatives: what the
    python_vjp route may call."""

    def __init__(self):
        self._lv = LotkaVolterra()
        self.f, self.vjp, self.jac = self._lv.f, self._lv.vjp, self._lv.jac
        self.state_dim, self.n_params, self.autonomous = 2, 4, True
        self.check_theta, self.init, self.describe = self._lv.check_theta, self._lv.init, self._lv.describe


@pytest.mark.parametrize("model", protocol_models(), ids=lambda m: m.describe())
def test_the_python_callbacks_are_any_models_f_vjp_and_jac(model):
    rng = np.random.default_rng(2)
    batch, theta = 3, model.init(rng)
    z, a = rng.uniform(0.5, 1.5, (batch, 2)), rng.normal(size=(batch, 2))
    dyn = PythonDynamics(model, batch)
    u, lam = flat(z).copy(), flat(a).copy()
    f, a_z, a_theta = model.vjp(0.0, z, theta, a)
    np.testing.assert_array_equal(dyn.rhs(u, theta, 0.0), flat(f))
    np.testing.assert_array_equal(dyn.vjp(lam, u, theta, 0.0), flat(a_z))
    np.testing.assert_array_equal(dyn.vjp_p(lam, u, theta, 0.0), a_theta)
    # the dense flat-layout Jacobian: Jᵀλ is the VJP (exactly the same terms, to rounding)
    np.testing.assert_allclose(dyn.jac(u, theta, 0.0).T @ lam, flat(a_z), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dyn.paramjac(u, theta, 0.0).T @ lam, a_theta, rtol=1e-13, atol=1e-13)


def test_python_vjp_route_needs_only_f_vjp_and_jac():
    model = OnlyWhatPythonVJPCalls()
    assert ROUTE_NEEDS["python_vjp"] == ("f", "vjp")
    for stiff in (False, True):
        check_model_for_route(model, "python_vjp", stiff=stiff, engine="e")  # accepted
    check_model_for_route(model, "finite_difference", stiff=True, engine="e")
    with pytest.raises(RefusedError, match=r"^e: the model 'Lotka-Volterra \(test file\)' has no method jac_theta, "
                                           r"which route 'python_jacobian' calls"):
        check_model_for_route(model, "python_jacobian", stiff=False, engine="e")
    del model.jac
    with pytest.raises(RefusedError, match=r"has no method jac \(an implicit solver's Newton matrix\)"):
        check_model_for_route(model, "python_vjp", stiff=True, engine="e")
    check_model_for_route(model, "python_vjp", stiff=False, engine="e")  # explicit: jac not called
    del model.vjp
    with pytest.raises(RefusedError, match=r"has no method vjp, .*route 'finite_difference' \(calls only f\)"):
        check_model_for_route(model, "python_vjp", stiff=False, engine="e")


@pytest.mark.parametrize("route", ["python_vjp", "finite_difference"])
def test_python_routes_accept_any_model_and_get_as_far_as_starting_julia(route, monkeypatch):
    # compute() passes every check for a model that is not the MLP and then asks for Julia: here the
    # one-line "unavailable" (Julia is absent, or simulated absent), never a refusal of the model
    monkeypatch.setattr(runtime, "julia_status", lambda: JuliaStatus(False, "simulated absent"))
    monkeypatch.setattr(runtime, "_module", None)
    monkeypatch.setattr(runtime, "_failure", None)
    for model in protocol_models():
        problem = _problem(model)
        for solver in ("Vern9", "Rodas5P"):
            with pytest.raises(BackendUnavailableError, match="simulated absent"):
                JuliaAdjoint("GaussAdjoint", route=route).compute(problem, problem.theta,
                                                                  SolveOptions(solver, 1e-8, 1e-8))


@pytest.fixture
def julia_must_not_start(monkeypatch):
    """The refusals come before anything asks for Julia (on a machine with Julia too)."""
    def start():
        raise AssertionError("a refused combination asked for Julia")

    monkeypatch.setattr(runtime, "load", start)


def test_native_route_and_peers_refuse_other_models_in_one_line(julia_must_not_start):
    problem = _problem(LotkaVolterra())
    options = SolveOptions("Vern9", 1e-8, 1e-8)
    for engine in (JuliaAdjoint("GaussAdjoint", route="native"), JuliaForwardSensitivity(route="native")):
        with pytest.raises(RefusedError, match=r"^Julia \w+ \(native Julia MLP\): route 'native' runs "
                                               r"harness.model.MLP re-implemented in Julia and has no Julia "
                                               r"version of the model 'Lotka-Volterra \(test file\)': "
                                               r"use route 'python_vjp'[^\n]*$"):
            engine.compute(problem, problem.theta, options)
    with pytest.raises(RefusedError, match=r"^torchdiffeq:odeint rebuilds harness.model.MLP .* 'Lotka-Volterra \(test "
                                           r"file\)' \(problem 'protocol'\)[^\n]*$"):
        check_supported(problem, "torchdiffeq:odeint")
    check_supported(multi_time_problem(batch=2), "torchdiffeq:odeint")  # the MLP still goes through


# ----------------------------------------------------------------------------- definite defects
@pytest.mark.parametrize("solver", ["KenCarp4", "TRBDF2", "FBDF", "QNDF", "RadauIIA5"])
def test_reverse_diff_adjoint_with_a_newton_based_solver_is_refused_before_julia_starts(solver, julia_must_not_start):
    with pytest.raises(RefusedError, match=rf"^ReverseDiffAdjoint with {re.escape(solver)} .*stiff_adjoints\.jl "
                                           r"marks it @test_broken\): use one of \[.*'Rodas5P'.*\]"):
        JuliaAdjoint("ReverseDiffAdjoint", route="native", solver=solver)
    # the solver from the caller's options: refused in compute, before anything asks for Julia
    problem = multi_time_problem(batch=2)
    with pytest.raises(RefusedError, match="ReverseDiffAdjoint with"):
        JuliaAdjoint("ReverseDiffAdjoint", route="native").compute(problem, problem.theta,
                                                                   SolveOptions(solver, 1e-8, 1e-8))


@pytest.mark.parametrize("solver", ["Rodas5P", "Rosenbrock23", "AutoTsit5(Rosenbrock23())", "Vern9", "Tsit5"])
def test_reverse_diff_adjoint_keeps_the_explicit_and_rosenbrock_solvers(solver):
    assert JuliaAdjoint("ReverseDiffAdjoint", route="native", solver=solver).solver == solver


def test_forward_sensitivities_and_reverse_diff_use_finite_difference_jacobians_on_every_route():
    # The two solves that upstream breaks under ForwardDiff call the finite-difference constructor,
    # whatever the route; the native adjoints keep ForwardDiff (`algorithm`).
    fs = GLUE[GLUE.index("function forward_sensitivity_solve"):GLUE.index('"""States z = z0 + w')]
    dg = GLUE[GLUE.index("function discrete_gradient"):GLUE.index("# ---", GLUE.index("function discrete_gradient"))]
    for body in (fs, dg):
        assert "finite_difference_algorithm(solver)" in body and "algorithm(d, solver)" not in body
    assert "finite_difference_algorithm(name::AbstractString) = SOLVERS[name](AutoFiniteDiff())" in GLUE


def test_every_solver_has_a_family_and_the_newton_families_are_the_implicit_non_rosenbrock_ones():
    for solver in names.JULIA_SOLVERS.values():
        assert solver.stiff == (solver.family != names.EXPLICIT), solver.name
    assert {s.name for s in names.JULIA_SOLVERS.values() if s.family in names.NEWTON_FAMILIES} == {
        "KenCarp4", "TRBDF2", "FBDF", "QNDF", "RadauIIA5"}


# ----------------------------------------------------------------------------- probable defects
def test_the_native_mlp_has_every_python_activation():
    block = GLUE[GLUE.index("const ACTIVATIONS"):GLUE.index(")", GLUE.index('"identity" =>')) + 1]
    assert set(re.findall(r'"(\w+)" =>', block)) == set(ACTIVATIONS)
    check_model_for_route(MLP((2, 3, 2), activation="identity"), "native", stiff=False, engine="e")


def test_refusals_name_only_routes_that_exist():
    for path in (ROOT / "harness" / "julia").glob("*.py"):
        assert "python_fd" not in path.read_text(), path.name
    with pytest.raises(RefusedError) as refused:
        check_model_for_route(MLP((2, 3, 2), time_dependent=True), "native", stiff=False, engine="e")
    named = set(re.findall(r"'(\w+)'", str(refused.value)))
    assert named == {"python_vjp", "finite_difference"} and named <= set(names.ROUTES)


# ----------------------------------------------------------------------------- the selftest
def test_selftest_bounds_follow_the_catalogue():
    by_name = {f.name: f for f in selftest.FAMILIES}
    tol = 1e-8
    # the catalogue's FACTOR: 100 for one-step methods, 1000 for variable-order BDF (tests/test_gradients.py)
    assert by_name[names.EXPLICIT].bounds(tol) == (1e-6, 1e-6)
    assert by_name[names.FIRK].bounds(tol) == (1e-6, 2e-5)  # the catalogue's RadauIIA5, dz0 STIFF_DZ0_BOUND
    assert by_name[names.BDF].bounds(tol) == (1e-5, 1e-3)  # the catalogue's BDF
    # Rosenbrock with finite-difference Jacobians: upstream's rtol 1e-5 (test/Core1/forward.jl L80)
    assert by_name[names.ROSENBROCK].bounds(tol) == (1e-5, 1e-3)
    assert by_name[names.ROSENBROCK].bounds(1e-12)[0] == 1e-5  # a floor, whatever the tolerance
    # every bound leaves an O(1e-3) mistake visible on dθ, and every stiff family runs the stiff variant
    assert all(f.bounds(tol)[0] <= 1e-5 for f in selftest.FAMILIES)
    assert [f.problem for f in selftest.FAMILIES] == ["multi_time"] + ["stiff"] * 5
    assert {f.name for f in selftest.FAMILIES} == {names.EXPLICIT, names.ROSENBROCK, names.SDIRK, names.BDF,
                                                    names.FIRK, names.AUTO_SWITCHING}


def test_selftest_scores_dz0_as_well_as_dtheta():
    class Result:
        def __init__(self, dtheta, dz0):
            self.dtheta, self.dz0 = np.asarray(dtheta, float), np.asarray(dz0, float)

    reference = Result([1.0, -2.0], [[4.0, 0.5]])
    assert selftest.score("r", Result([1.0, -2.0], [[4.0, 0.5]]), reference, (1e-6, 1e-6), 0.1).ok
    # dθ exact, one dz0 entry off by 1e-4 of max|dz0|: beyond a 1e-6 bound
    row = selftest.score("r", Result([1.0, -2.0], [[4.0, 0.5004]]), reference, (1e-6, 1e-6), 0.1)
    assert row.status == "beyond bound" and row.dtheta_error == 0.0 and row.dz0_error == pytest.approx(1e-4)
    assert selftest.entry_error(np.array([1.0, 2.1]), np.array([1.0, 2.0])) == pytest.approx(0.05)


def test_selftest_plan():
    full, quick = selftest.plan(), selftest.plan(quick=True)
    assert [f.name for f, _ in quick] == [f.name for f in selftest.FAMILIES] + [names.EXPLICIT]
    assert all(len(engines) == 1 and engines[0].route == "python_vjp" for _, engines in quick)
    assert quick[-1][0].problem == "non_mlp"
    for family, engines in full:
        adjoints = {(e.route, e.sensealg) for e in engines if isinstance(e, JuliaAdjoint)}
        if family.problem == "non_mlp":
            assert {s for r, s in adjoints if r == "python_vjp"} == set(names.ADJOINT_SENSEALGS)
            assert ("native", "GaussAdjoint") in adjoints  # its refusal is a row
            continue
        stiff = names.check_julia_solver(family.solver).stiff
        assert {(r, s) for r in ("python_vjp", "native") for s in names.ADJOINT_SENSEALGS} <= adjoints
        assert ("native", "ReverseDiffAdjoint") in adjoints
        fd = {s for r, s in adjoints if r == "finite_difference"}
        assert fd == ({"GaussAdjoint"} if stiff else set(names.ADJOINT_SENSEALGS))  # sized, see family_engines
        forward = {e.route for e in engines if isinstance(e, JuliaForwardSensitivity)}
        assert forward == ({"python_jacobian", "native"} if stiff else set(names.FORWARD_ROUTES))
    # the estimate is printed before the run: quick is a few minutes at most, the full run under an hour
    assert selftest.expected_seconds(quick) < 300 < selftest.expected_seconds(full) < 3600


def test_the_selftests_non_mlp_model():
    problem = selftest.non_mlp_problem(batch=3)
    assert not isinstance(problem.model, MLP) and problem.model.n_params == 4
    test_the_test_models_derivatives_against_finite_differences(problem.model)
    check_model_for_route(problem.model, "python_vjp", stiff=True, engine="e")
    check_model_for_route(problem.model, "python_jacobian", stiff=True, engine="e")


# ----------------------------------------------------------------------------- a failed start, once
class _BrokenJuliacall(importlib.abc.MetaPathFinder):
    """`import juliacall` fails as it does when libjulia cannot be loaded; counts the attempts."""

    def __init__(self):
        self.attempts = 0

    def find_spec(self, name, path=None, target=None):
        if name == "juliacall":
            self.attempts += 1
            raise ImportError("libjulia.so: cannot open shared object file")
        return None


@pytest.fixture
def broken_juliacall(monkeypatch):
    finder = _BrokenJuliacall()
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    available = lambda *a, **k: JuliaStatus(True, "")  # noqa: E731  (the installation looks complete)
    from harness.julia import environment

    for module in (runtime, selftest, environment):
        monkeypatch.setattr(module, "julia_status", available)
    monkeypatch.setattr(runtime, "_module", None)
    monkeypatch.setattr(runtime, "_failure", None)
    # the start fails at juliacall's import, whatever this test process imported before (torch, by an
    # earlier test: the import-order refusal has its own test, test_julia_refuses_to_start_after_torch)
    monkeypatch.setattr(runtime, "check_import_order", lambda *args, **kwargs: None)
    return finder


def test_a_failed_julia_start_is_remembered_and_not_retried(broken_juliacall):
    with pytest.raises(BackendUnavailableError, match=r"^juliacall could not start Julia: ImportError: libjulia.so"):
        runtime.load()
    for _ in range(3):
        with pytest.raises(BackendUnavailableError, match=r"^Julia failed to start earlier in this process \(not "
                                                          r"retried.*\): juliacall could not start Julia"):
            runtime.load()
    assert broken_juliacall.attempts == 1
    from harness.julia.engines import _availability

    available, reason = _availability()
    assert not available and "juliacall could not start Julia" in reason


def test_the_selftest_reports_a_failed_start_once(broken_juliacall):
    # the first row tries, fails and ends the run with one line; no other row tries again
    with pytest.raises(BackendUnavailableError, match=r"^Julia failed to start: juliacall could not start Julia"):
        selftest.run_selftest(quick=True)
    assert broken_juliacall.attempts == 1


# ----------------------------------------------------------------------------- import order with torch
def test_julia_refuses_to_start_after_torch():
    with pytest.raises(BackendUnavailableError, match=r"^torch was imported before Julia started .*"
                                                      r"harness.julia.start\(\) before importing torch"):
        runtime.check_import_order({"torch": object()})
    runtime.check_import_order({"torch": object(), "juliacall": object()})  # juliacall first: fine
    runtime.check_import_order({})


def test_after_torch_the_julia_rows_are_unavailable_with_the_reason(monkeypatch):
    from harness.julia.engines import _availability

    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    monkeypatch.setattr(runtime, "_failure", None)
    from harness.julia import environment

    monkeypatch.setattr(environment, "julia_status", lambda *a, **k: JuliaStatus(True, ""))  # installed
    available, reason = _availability()
    assert not available and reason.startswith("torch was imported before Julia started")


def test_starting_before_torch_is_quiet_and_remembers_a_failure(broken_juliacall):
    runtime.start_before_torch({"torch": object()})  # too late to help: nothing tried
    assert broken_juliacall.attempts == 0
    runtime.start_before_torch({})  # available: tries once, swallows the failure for torch's sake
    runtime.start_before_torch({})
    assert broken_juliacall.attempts == 1 and "libjulia" in runtime.start_failure()
    with pytest.raises(BackendUnavailableError, match="failed to start earlier"):
        runtime.load()


def test_the_torch_adapter_starts_julia_before_importing_torch():
    pytest.importorskip("torch", reason="torch (the peers extra) is not installed")
    # a fresh process, so that torch is not imported yet; records whether torch was in sys.modules when
    # the adapter asked Julia to start (on this machine Julia is absent, so nothing starts)
    code = ("import sys\nimport harness.julia.runtime as r\nseen = []\n"
            "r.start_before_torch = lambda: seen.append('torch' in sys.modules)\n"
            "from harness import peers\npeers._adapter('torchdiffeq')\n"
            "assert seen == [False] and 'torch' in sys.modules, seen\nprint('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
