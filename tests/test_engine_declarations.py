"""What `register_engine`, `resolve_engine`, `model_needs`/`require_for` and `gradient` promise, message by
message: every refusal read back whole, the decorator form, names and their owners, plugins, the models
an engine needs, and what `gradient` does around an engine of another backend (its solver names, its
own path and timing, the augmented columns of dz0). Tiny problems: the whole file runs in about a second."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.model import MLP
from harness.models import VectorField
from harness.models.linear import Linear
from harness.problems import Problem
from harness.sensitivity import (
    ENGINES,
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    GaussAdjoint,
    GradientResult,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
    declaration_of,
    gradient,
    load_engine_plugins,
    model_needs,
    register_engine,
    registered_engines,
    resolve_engine,
    unregister_engine,
    uses_harness_solvers,
)
from harness.sensitivity._model_needs import path_of, require_for
from harness.solvers import SolverStats


def small(augment=0, model=None):
    rng = np.random.default_rng(5)
    model = model or MLP((2 + augment, 3, 2 + augment), activation="tanh")
    z0 = rng.uniform(-1, 1, (2, 2))
    return Problem(model, 0.4 * rng.standard_normal(model.n_params), z0, 0.0, np.array([0.5]),
                   rng.uniform(-1, 1, (1, 2, 2)), "tiny", augment=augment)


class NoJac(Linear):
    """A user's vector field without the matrices ∂f/∂z and ∂f/∂θ: enough for the adjoints with
    explicit solvers, not for implicit ones or ForwardSensitivity."""

    jac = jac_theta = None

    def describe(self):
        return "NoJac"


class FOnly(VectorField):
    """A user's vector field with f alone (a Problem itself refuses it: it needs vjp)."""

    state_dim, n_params = 2, 2
    vjp = jac = jac_theta = None

    def f(self, t, z, theta):
        return -theta[0] * z + theta[1]

    def describe(self):
        return "FOnly"


# ------------------------------------------------------------------------------- registration
class Fine:
    def compute(self, problem, theta, options):  # pragma: no cover - never reached
        raise AssertionError


class NoCompute:
    compute = 3  # not callable


def test_every_refusal_of_register_engine_in_full():
    cases = [
        (lambda: register_engine(Fine()),
         r"register_engine\(<.*Fine object at .*>\): expected a class, not an instance"),
        (lambda: register_engine(NoCompute),
         "register_engine(NoCompute): no compute given and NoCompute has no `compute` method; expected "
         "compute(engine, problem, theta, options) -> GradientResult"),
        (lambda: register_engine(Fine, compute=3), "register_engine(Fine): compute=3 is not callable"),
        (lambda: register_engine(Fine, backend=""), "register_engine(Fine): backend='', expected a non-empty string"),
        (lambda: register_engine(Fine, backend=7), "register_engine(Fine): backend=7, expected a non-empty string"),
        (lambda: register_engine(Fine, uses_harness_solvers=1),
         "register_engine(Fine): uses_harness_solvers=1, expected True or False"),
        (lambda: register_engine(Fine, availability=True), "register_engine(Fine): availability=True is not callable"),
        (lambda: register_engine(Fine, name="two words"),
         "register_engine(Fine): name='two words', expected an identifier"),
        (lambda: register_engine(Fine, name=5), "register_engine(Fine): name=5, expected an identifier"),
        (lambda: register_engine(Fine, name="GaussAdjoint"),
         "register_engine(Fine): the name 'GaussAdjoint' is already taken by "
         "harness.sensitivity.algorithms.GaussAdjoint"),
    ]
    for call, message in cases:
        with pytest.raises(HarnessInputError) as caught:
            call()
        if "\\(" in message:
            assert __import__("re").fullmatch(message, str(caught.value)), str(caught.value)
        else:
            assert str(caught.value) == message
    assert Fine not in {d.engine_type for d in registered_engines()}
    assert ENGINES["GaussAdjoint"] is GaussAdjoint


def test_the_decorator_form_and_what_it_declares():
    before = len(registered_engines())

    @register_engine(backend="mine", uses_harness_solvers=False, availability=lambda: (False, "not here"))
    @dataclass(frozen=True)
    class Decorated:
        name = "Decorated"

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    try:
        assert isinstance(Decorated, type)  # the decorator returns the class itself
        declaration = declaration_of(Decorated)
        assert declaration.engine_type is Decorated
        assert declaration.compute is Decorated.compute
        assert (declaration.backend, declaration.uses_harness_solvers, declaration.name) == ("mine", False, "Decorated")
        assert declaration.availability() == (False, "not here")
        assert ENGINES["Decorated"] is Decorated
        assert registered_engines()[-1] is declaration and len(registered_engines()) == before + 1
        assert uses_harness_solvers(Decorated()) is False and uses_harness_solvers(QuadratureAdjoint) is True

        # a subclass of a registered engine is that engine
        class Sub(Decorated):
            pass

        assert declaration_of(Sub()) is declaration
        # registering the same class again (a reloaded module) replaces it, under the same name
        register_engine(Decorated, backend="mine2")
        assert declaration_of(Decorated).backend == "mine2" and ENGINES["Decorated"] is Decorated
        assert declaration_of(Decorated).availability() == (True, None)  # the default: always available
    finally:
        unregister_engine(Decorated)
    assert "Decorated" not in ENGINES and len(registered_engines()) == before
    with pytest.raises(HarnessInputError) as caught:
        unregister_engine(Decorated)
    assert str(caught.value) == f"unregister_engine({Decorated!r}): not a registered engine type"


def test_names_belong_to_buildable_classes_and_to_their_owner():
    @dataclass(frozen=True)
    class Explicit:
        name = "ignored"  # an explicit name wins over the class attribute

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    @dataclass(frozen=True)
    class Unnamed:
        name = 3  # not a string: no name

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    @dataclass(frozen=True)
    class NeedsStep:
        step: float

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    register_engine(Explicit, name="ExplicitName")
    register_engine(Unnamed)
    try:
        assert ENGINES["ExplicitName"] is Explicit and "ignored" not in ENGINES
        assert declaration_of(Unnamed).name is None and Unnamed not in ENGINES.values()
        # another class may not take the name; unregistering a class whose name was taken over by none
        # leaves the names of the others alone
        with pytest.raises(HarnessInputError) as caught:
            register_engine(NeedsStep, name="ExplicitName")
        assert str(caught.value) == (
            "register_engine(test_names_belong_to_buildable_classes_and_to_their_owner.<locals>.NeedsStep): "
            "name='ExplicitName', but test_names_belong_to_buildable_classes_and_to_their_owner.<locals>.NeedsStep "
            "cannot be built with no arguments, which is what a name is for; register it without a name")
    finally:
        unregister_engine(Explicit)
        unregister_engine(Unnamed)
    assert "ExplicitName" not in ENGINES


def test_unregistering_keeps_a_name_another_class_now_owns():
    @dataclass(frozen=True)
    class First:
        name = "Shared"

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    register_engine(First)
    ENGINES["Shared"] = QuadratureAdjoint  # the name now points elsewhere
    try:
        unregister_engine(First)
        assert ENGINES["Shared"] is QuadratureAdjoint
    finally:
        del ENGINES["Shared"]


def test_plugins_are_imported_by_entry_point_and_a_failure_names_the_plugin(monkeypatch):
    group = "harness.engines"
    good = importlib.metadata.EntryPoint(name="good", value="json", group=group)
    bad = importlib.metadata.EntryPoint(name="broken", value="harness_no_such_module_x", group=group)
    seen = []

    def entry_points(group=None):
        seen.append(group)
        return [good] if len(seen) == 1 else [good, bad]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert load_engine_plugins() == ["good"]
    assert seen == ["harness.engines"]
    with pytest.raises(HarnessInputError) as caught:
        load_engine_plugins()
    assert str(caught.value) == ("engine plugin 'broken' (harness_no_such_module_x) failed to import: "
                                 "ModuleNotFoundError: No module named 'harness_no_such_module_x'")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


# ---------------------------------------------------------------------------------- resolution
def test_resolve_engine_for_each_kind_of_value():
    assert resolve_engine(None) == InterpolatingAdjoint()
    assert resolve_engine("InterpolatingAdjoint", solver="BS3", rtol=1e-4, atol=1e-5,
                          options={"checkpointing": True}) == InterpolatingAdjoint("BS3", 1e-4, 1e-5, True)
    assert resolve_engine("harness:GaussAdjoint", atol=1e-3) == GaussAdjoint(atol=1e-3)
    assert resolve_engine(BacksolveAdjoint) == BacksolveAdjoint()
    engine = QuadratureAdjoint(quadrature_nodes=4)
    assert resolve_engine(engine) is engine
    with pytest.raises(HarnessInputError) as caught:
        resolve_engine("QuadratureAdjoint", options={"nodes": 2})
    assert str(caught.value).startswith("engine 'QuadratureAdjoint' with options ['nodes']: ")
    assert "nodes" in str(caught.value).split(": ", 1)[1]
    with pytest.raises(HarnessInputError) as caught:
        resolve_engine("Nope")
    assert str(caught.value) == (
        f"unknown engine 'Nope': expected one of {sorted(ENGINES)}, or 'julia:<Name>', 'torchdiffeq:<method>', "
        "'diffrax:<method>' (an engine of your own is found by name once you register it with "
        "harness.register_engine (one call or one class decorator))")

    @dataclass(frozen=True)
    class NeedsStep:
        step: float

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    register_engine(NeedsStep)
    try:
        with pytest.raises(HarnessInputError) as caught:
            resolve_engine(NeedsStep)
        assert str(caught.value).startswith(f"engine class {NeedsStep.__qualname__} needs arguments (")
        assert str(caught.value).endswith("): pass an instance")
        assert resolve_engine(NeedsStep(0.1)) == NeedsStep(0.1)
    finally:
        unregister_engine(NeedsStep)

    class Stranger:
        pass

    for value in (Stranger, Stranger()):
        with pytest.raises(HarnessInputError, match="is not a registered engine"):
            resolve_engine(value)


def test_a_backend_name_gets_the_default_backward_settings(monkeypatch):
    """"backend:Name" engines always take solver/rtol/atol: DP5 and 1e-6 unless given, and their options.
    What `harness._backends.backend_engine` receives is recorded (building a real peer engine imports
    torch or jax: tens of seconds on a loaded machine; tests/test_peers.py builds them)."""
    import harness._backends as backends

    received = []
    monkeypatch.setattr(backends, "backend_engine", lambda *args: received.append(args) or "built")
    assert resolve_engine("torchdiffeq:odeint_adjoint") == "built"
    assert resolve_engine("diffrax:BacksolveAdjoint", solver="BS3", rtol=1e-3, atol=1e-4, options={"x": 1}) == "built"
    assert resolve_engine("julia:GaussAdjoint", rtol=0.5) == "built"
    assert received == [("torchdiffeq", "odeint_adjoint", {}, "DP5", 1e-6, 1e-6),
                        ("diffrax", "BacksolveAdjoint", {"x": 1}, "BS3", 1e-3, 1e-4),
                        ("julia", "GaussAdjoint", {}, "DP5", 0.5, 1e-6)]


# --------------------------------------------------------------------------------- model needs
def test_what_each_engine_needs_of_a_model():
    assert model_needs(ForwardSensitivity(), "DP5") == ("f", "jac", "jac_theta")
    assert model_needs(ForwardSensitivity(), "RadauIIA5") == ("f", "jac", "jac_theta")
    assert model_needs(FiniteDifferences(), "DP5") == ("f",)
    assert model_needs(FiniteDifferences(), "BDF") == ("f", "jac")
    for engine in (BacksolveAdjoint(), InterpolatingAdjoint(), QuadratureAdjoint(), GaussAdjoint(),
                   RecursiveCheckpointAdjoint()):
        assert model_needs(engine, "DP5") == ("f", "vjp")
        assert model_needs(engine, "RadauIIA5") == ("f", "vjp", "jac")
    # an implicit backward solver needs jac even after an explicit forward pass, and the reverse
    assert model_needs(GaussAdjoint(solver="BDF"), "DP5") == ("f", "vjp", "jac")
    assert model_needs(GaussAdjoint(solver="DP5"), "BDF") == ("f", "vjp", "jac")
    # names that are not harness solvers (another backend's) ask for nothing more
    assert model_needs(GaussAdjoint(solver="Tsit5"), "Rodas5") == ("f", "vjp")
    assert model_needs(object(), "RadauIIA5") == ()


def test_a_model_missing_a_slot_is_refused_in_one_line_before_solving():
    problem = small(model=NoJac(2))
    cases = [
        (GaussAdjoint(), "RadauIIA5", "GaussAdjoint with the implicit solver RadauIIA5 needs model.jac(t, z, theta) "
                                      "-> (B, N, N), which NoJac does not provide"),
        (GaussAdjoint(solver="BDF"), "DP5", "GaussAdjoint with the implicit solver DP5 needs model.jac(t, z, theta) "
                                            "-> (B, N, N), which NoJac does not provide"),
        (ForwardSensitivity(), "RadauIIA5", "ForwardSensitivity needs model.jac(t, z, theta) -> (B, N, N), "
                                            "jac_theta(t, z, theta) -> (B, N, P), which NoJac does not provide"),
        (ForwardSensitivity(), "DP5", "ForwardSensitivity needs model.jac(t, z, theta) -> (B, N, N), "
                                      "jac_theta(t, z, theta) -> (B, N, P), which NoJac does not provide"),
        (FiniteDifferences(), "BDF", "FiniteDifferences with the implicit solver BDF needs model.jac(t, z, theta) "
                                     "-> (B, N, N), which NoJac does not provide"),
    ]
    for engine, solver, message in cases:
        with pytest.raises(HarnessInputError) as caught:
            gradient(problem, engine=engine, solver=solver)
        assert str(caught.value) == message + " (see harness.models.VectorField)"
    with pytest.raises(HarnessInputError) as caught:
        require_for(BacksolveAdjoint(), FOnly(), "DP5")
    assert str(caught.value) == ("BacksolveAdjoint needs model.vjp(t, z, theta, a), which FOnly does not provide "
                                 "(see harness.models.VectorField)")
    # f and vjp are enough for the adjoints and finite differences with explicit solvers
    for engine in (BacksolveAdjoint(), FiniteDifferences()):
        assert gradient(problem, engine=engine).path == "numpy (model's vjp)"
    # an engine of another backend asks for what it needs itself: nothing is refused for it here
    require_for(object(), FOnly(), "DP5")
    require_for(BacksolveAdjoint(), MLP((2, 3, 2)), "RadauIIA5")  # the MLP has every slot


def test_path_names_the_implementation_that_ran():
    from harness import _compiled

    linear = Linear(2)
    runs = _compiled.loop_runs()
    assert path_of(GaussAdjoint(), linear, runs - 1) == "compiled loop"  # a loop ran since `runs - 1`
    assert path_of(ForwardSensitivity(), MLP((2, 3, 2)), runs) == "numpy (model's jac, jac_theta)"
    assert path_of(GaussAdjoint(), linear, runs) == "numpy (model's vjp)"


# ------------------------------------------------------------------------- gradient() around an engine
@dataclass(frozen=True)
class Elsewhere:
    """An engine of another backend: its own solver names, reports dz0 of every state component (N + A)
    and a wall time and path of its own when asked to."""

    seconds: float = 0.0
    path: str = ""
    trim: bool = False

    name = "Elsewhere"

    def compute(self, problem, theta, options):
        reference = gradient(problem, theta, engine=ForwardSensitivity(), rtol=1e-9, atol=1e-9)
        n = problem.model.state_dim
        dz0 = np.zeros((problem.batch_size, n))
        dz0[:, : problem.observed_dim] = reference.dz0
        dz0[:, problem.observed_dim:] = 99.0  # what an engine solving all N + A components may report
        if self.trim:
            dz0 = dz0[:, : problem.observed_dim]
        CALLS.append(options)
        return GradientResult(engine=self.name, loss=reference.loss, dtheta=reference.dtheta, dz0=dz0,
                              forward_stats=SolverStats(), backward_stats=SolverStats(), seconds=self.seconds,
                              path=self.path)


CALLS: list = []  # the options each call of Elsewhere received


@pytest.fixture
def elsewhere():
    register_engine(Elsewhere, backend="elsewhere", uses_harness_solvers=False)
    CALLS.clear()
    yield Elsewhere
    unregister_engine(Elsewhere)


def test_an_engine_of_another_backend_keeps_its_solver_names_path_and_time(elsewhere):
    problem = small(augment=1)
    result = gradient(problem, engine=Elsewhere(), solver="Tsit5", rtol=1e-5, atol=1e-7)
    (options,) = CALLS
    assert (options.solver, options.rtol, options.atol) == ("Tsit5", 1e-5, 1e-7)
    assert result.path == "elsewhere"  # the backend's name, since it gave none
    assert result.seconds > 0.0  # timed around its compute
    # dz0 of the N observed components only: the augmented one starts at 0 by definition
    reference = gradient(problem, engine=ForwardSensitivity(), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(result.dz0, reference.dz0)
    assert result.dz0.shape == (2, 2)
    own = gradient(problem, engine=Elsewhere(seconds=12.5, path="its own", trim=True), solver="Tsit5")
    assert (own.seconds, own.path) == (12.5, "its own")
    np.testing.assert_array_equal(own.dz0, reference.dz0)
    # tolerances are checked for every engine; a model lacking vjp is this backend's business
    with pytest.raises(HarnessInputError, match="rtol="):
        gradient(problem, engine=Elsewhere(), solver="Tsit5", rtol=-1.0)


def test_a_harness_engine_checks_the_solver_name_and_theta_first():
    problem = small()
    with pytest.raises(HarnessInputError, match="unknown solver 'Tsit5'"):
        gradient(problem, engine=GaussAdjoint(), solver="Tsit5")
    with pytest.raises(HarnessInputError, match="theta has shape"):
        gradient(problem, np.zeros(3), engine=GaussAdjoint())


def test_defaults_of_a_registration_and_a_compute_given_apart():
    """Registered with a compute function and nothing else: backend "harness", harness solver names,
    always available, named by its class attribute."""

    @dataclass(frozen=True)
    class Plain:
        name = "PlainEngine"

    def compute(engine, problem, theta, options):  # pragma: no cover - never reached
        raise AssertionError

    assert register_engine(Plain, compute=compute) is Plain
    try:
        declaration = declaration_of(Plain())
        assert (declaration.compute, declaration.backend, declaration.uses_harness_solvers, declaration.name) == (
            compute, "harness", True, "PlainEngine")
        assert declaration.availability() == (True, None)
        assert ENGINES["PlainEngine"] is Plain
    finally:
        unregister_engine(Plain)


def test_a_type_without_an_inspectable_signature_is_named():
    """Some types (subclasses of builtins) have no signature to inspect: the call decides, so the
    class is named and built with no arguments."""

    class Counted(int):
        name = "Counted"

        def compute(self, problem, theta, options):  # pragma: no cover - never reached
            raise AssertionError

    register_engine(Counted)
    try:
        assert ENGINES["Counted"] is Counted
        assert resolve_engine("Counted") == Counted() == 0
        # backward settings go to the fields of a dataclass engine; this one has none to take them
        assert resolve_engine("Counted", solver="BS3", rtol=1e-3) == Counted()
    finally:
        unregister_engine(Counted)


def test_the_decorator_passes_a_compute_and_a_name_through():
    def compute(engine, problem, theta, options):  # pragma: no cover - never reached
        raise AssertionError

    @register_engine(compute=compute, name="DecoratedName")
    @dataclass(frozen=True)
    class Decorated2:
        pass

    try:
        declaration = declaration_of(Decorated2)
        assert declaration.compute is compute and declaration.name == "DecoratedName"
        assert ENGINES["DecoratedName"] is Decorated2
    finally:
        unregister_engine(Decorated2)
