"""The engine protocol: an engine defined outside the package, registered in one call, is found by
`gradient`, `harness gradcheck`, a `harness compare` grid and the CLI's engine list; an engine that
is only half registered gets an error that says what is missing."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest

import harness
from harness.cli import main
from harness.compare import run_experiment
from harness.errors import BackendUnavailableError, HarnessInputError
from harness.gradcheck import bound_for, check_case, gradcheck_engines
from harness.sensitivity import (
    ENGINES,
    QuadratureAdjoint,
    declaration_of,
    gradient,
    register_engine,
    resolve_engine,
    unregister_engine,
)


@dataclass(frozen=True)
class TenthTolerance:
    """A user's engine: QuadratureAdjoint run at a tenth of the requested tolerances."""

    quadrature_nodes: int = 3

    name = "TenthTolerance"

    def compute(self, problem, theta, options):
        result = gradient(problem, theta, engine=QuadratureAdjoint(quadrature_nodes=self.quadrature_nodes),
                          solver=options.solver, rtol=options.rtol / 10, atol=options.atol / 10)
        return replace(result, engine=self.name)


@pytest.fixture
def toy():
    # Registered per test, not at import: pytest imports every test module before running any, and
    # the other modules' tests count the registered engines.
    harness.register_engine(TenthTolerance, backend="user-test")  # the one registration step
    yield TenthTolerance
    unregister_engine(TenthTolerance)


@pytest.fixture(scope="module")
def problem():
    return harness.seed_problem(batch=6)


def test_registered_by_name_and_computed_through_its_own_compute(toy, problem):
    assert ENGINES["TenthTolerance"] is TenthTolerance
    assert resolve_engine("TenthTolerance") == TenthTolerance()
    declaration = declaration_of(TenthTolerance())
    assert (declaration.backend, declaration.uses_harness_solvers) == ("user-test", True)
    assert declaration.availability() == (True, None)
    result = gradient(problem, engine="TenthTolerance", rtol=1e-6, atol=1e-6)
    expected = gradient(problem, engine=QuadratureAdjoint(), rtol=1e-7, atol=1e-7)
    assert result.engine == "TenthTolerance"
    # the same computation, so the same numbers to the last bit
    np.testing.assert_array_equal(result.dtheta, expected.dtheta)
    np.testing.assert_array_equal(result.dz0, expected.dz0)
    # uses_harness_solvers: the solver name is checked before the engine runs
    with pytest.raises(HarnessInputError, match="unknown solver 'RK99'"):
        gradient(problem, engine="TenthTolerance", solver="RK99")


def test_gradcheck_has_a_row_for_it(toy, problem):
    engines = gradcheck_engines()
    assert [type(e) for e in engines].count(TenthTolerance) == 1
    tol = 1e-7
    case = check_case(problem, "DP5", tol, [TenthTolerance()])
    (row,) = case.rows
    assert row.name == "TenthTolerance" and row.status == "ok"
    # gradcheck's adjoint bound, 10³·tol (error growth over t in [0, 10]; gradcheck's docstring)
    assert row.bound == bound_for(TenthTolerance(), tol) == 1e3 * tol
    assert 0 < row.rel_error <= row.bound


def test_compare_grid_runs_it(toy, tmp_path):
    spec = tmp_path / "toy.toml"
    spec.write_text("""
title = "toy"

[problem]
name = "seed"
batch = 4

[grid]
engines = ["TenthTolerance", { engine = "TenthTolerance", label = "toy5", quadrature_nodes = 5 }]
solvers = ["DP5"]
tolerances = [1e-6]

[reference]
engine = "ForwardSensitivity"
rtol = 1e-10
atol = 1e-10
check_engine = "none"
""")
    results = run_experiment(spec, tmp_path / "out", progress=False)
    rows = {r["engine"]: r for r in results["rows"]}
    assert set(rows) == {"TenthTolerance", "toy5"}
    for row in rows.values():
        assert row["status"] == "ok"
        # adjoint at rtol = atol = 1e-7 against a 1e-10 reference: within 10³·1e-7 (gradcheck's bound)
        assert row["dtheta"]["relative_error"] < 1e-4


def test_cli_lists_it(toy, capsys):
    assert main(["engines", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["engines"]}
    assert rows["TenthTolerance"] == {"name": "TenthTolerance", "by_name": True, "backend": "user-test",
                                      "solvers": "harness", "available": True, "reason": None}
    assert rows["QuadratureAdjoint"]["backend"] == "harness"
    assert rows["JuliaAdjoint"]["backend"] == "julia" and rows["JuliaAdjoint"]["solvers"] == "own"
    assert main(["engines"]) == 0
    assert "TenthTolerance" in capsys.readouterr().out


def test_unavailable_engine_is_a_row_with_its_reason(problem):
    @dataclass(frozen=True)
    class Elsewhere:
        name = "Elsewhere"

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError("an unavailable engine must not run")

    register_engine(Elsewhere, availability=lambda: (False, "needs the Elsewhere library"))
    try:
        (row,) = check_case(problem, "DP5", 1e-6, [Elsewhere()]).rows
        assert (row.status, row.reason) == ("unavailable", "needs the Elsewhere library")
        from harness.compare.engines import build_engine
        from harness.compare.spec import parse_engine

        with pytest.raises(BackendUnavailableError, match="needs the Elsewhere library"):
            build_engine(parse_engine("Elsewhere", "engine"), "DP5", 1e-6, 1e-6)
    finally:
        unregister_engine(Elsewhere)


# ------------------------------------------------------------------------ half-registered engines
def test_class_without_compute_is_refused_at_registration():
    class NoCompute:
        name = "NoCompute"

    with pytest.raises(HarnessInputError, match=r"NoCompute has no `compute` method"):
        register_engine(NoCompute)
    assert "NoCompute" not in ENGINES


def test_unregistered_engine_value_says_it_is_not_registered(problem):
    class Unregistered:
        name = "Unregistered"

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError("an unregistered engine must not run")

    with pytest.raises(HarnessInputError, match="Unregistered is not a registered engine; register it "
                                                "with harness.register_engine"):
        gradient(problem, engine=Unregistered())
    with pytest.raises(HarnessInputError, match="unknown engine 'Unregistered'.*register"):
        gradient(problem, engine="Unregistered")


def test_a_taken_name_is_refused():
    @dataclass(frozen=True)
    class Impostor:
        name = "QuadratureAdjoint"

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(HarnessInputError, match="'QuadratureAdjoint' is already taken"):
        register_engine(Impostor)
    assert ENGINES["QuadratureAdjoint"] is QuadratureAdjoint


def test_bad_declarations_are_refused():
    class Fine:
        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    with pytest.raises(HarnessInputError, match="expected a class, not an instance"):
        register_engine(Fine())
    with pytest.raises(HarnessInputError, match="uses_harness_solvers='yes'"):
        register_engine(Fine, uses_harness_solvers="yes")
    with pytest.raises(HarnessInputError, match="compute=3 is not callable"):
        register_engine(Fine, compute=3)
    with pytest.raises(HarnessInputError, match="not a registered engine type"):
        unregister_engine(Fine)


def test_an_engine_with_required_arguments_is_not_named():
    @dataclass(frozen=True)
    class NeedsStep:
        step: float
        name = "NeedsStep"

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    register_engine(NeedsStep)  # registered, but not buildable by name: no row in gradcheck
    try:
        assert "NeedsStep" not in ENGINES
        assert declaration_of(NeedsStep(1e-3)).name is None
        assert NeedsStep not in {type(e) for e in gradcheck_engines()}
    finally:
        unregister_engine(NeedsStep)
    with pytest.raises(HarnessInputError, match="cannot be built with no arguments"):
        register_engine(NeedsStep, name="NeedsStep")


def test_one_resolver_for_every_kind_of_name():
    """`resolve_engine` is what the API, the CLI, compare and harness.testing use: harness names (with an
    optional "harness:" prefix) with their backward settings and options, and "backend:Name" for the
    optional backends, refused in one line when the backend or the name is unknown."""
    assert resolve_engine("harness:QuadratureAdjoint") == QuadratureAdjoint()
    engine = resolve_engine("QuadratureAdjoint", solver="BS3", rtol=1e-5, options={"quadrature_nodes": 5})
    assert engine == QuadratureAdjoint(solver="BS3", rtol=1e-5, quadrature_nodes=5)
    # a reference has no backward settings: the forward ones reach it through `gradient`
    assert resolve_engine("FiniteDifferences", solver="BS3") == harness.FiniteDifferences()
    with pytest.raises(HarnessInputError, match="unknown backend 'nope'"):
        resolve_engine("nope:X")
    with pytest.raises(HarnessInputError, match="unknown engine 'torchdiffeq:nope'"):
        resolve_engine("torchdiffeq:nope")
    with pytest.raises(HarnessInputError, match="unknown engine 'Magic'.*julia:<Name>"):
        resolve_engine("Magic")


def test_the_public_api_covers_every_engine_and_what_a_new_adjoint_is_built_from():
    for name in ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint",
                 "RecursiveCheckpointAdjoint", "ForwardSensitivity", "FiniteDifferences"):
        assert name in harness.__all__ and getattr(harness, name) is ENGINES[name]
    for name in ("SolveOptions", "AdjointSystem", "adjoint_gradient", "register_engine", "resolve_engine"):
        assert name in harness.__all__ and getattr(harness, name) is not None
