"""The compiled whole loop's glue (`harness.sensitivity._compiled_loop`) on tiny problems: each adjoint
and RecursiveCheckpointAdjoint computed by the loop matches the scipy forward-sensitivity reference of
tests/test_engine_edges_small.py, takes the numpy driver's steps, and reports what the numpy engine
reports; outside its scope (checkpointing, implicit solvers, DP8, a time-dependent field, another
model) the numpy driver runs. The loop is switched on in the test (`set_enabled(True)`), whatever
HARNESS_COMPILED says, and loads the module built ahead of time (skipped without numba).

Bounds: the engines run at tol 1e-8 against a reference at 1e-11: 5e-6 relative, derived in
tests/test_engine_edges_small.py. The loop and the numpy driver take the same steps (asserted equal)
and differ by the order of a few sums: 1e-12 relative (tests/test_compiled_loop.py measures 4e-15).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled path needs numba")

import harness._compiled as compiled
from harness.model import MLP
from harness.models.linear import Linear
from harness.problems import Problem
from harness.sensitivity import (
    BacksolveAdjoint,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
    gradient,
)
from test_engine_edges_small import BOUND, assert_matches, relative_error, scipy_reference

TOL = 1e-8
AGREEMENT = 1e-12


@pytest.fixture(autouse=True)
def loop_on():
    compiled.set_enabled(True)
    if not compiled.loop_enabled(MLP((2, 3, 2))):
        compiled.set_enabled(None)
        pytest.skip("no compiled module here (numba missing or the build refused)")
    yield
    compiled.set_enabled(None)


def tanh_problem(batch=2, times=(0.7, 1.2), t0=0.2, seed=11, span=1.0):
    rng = np.random.default_rng(seed)
    model = MLP((2, 3, 2), activation="tanh")
    theta = 0.5 * rng.standard_normal(model.n_params)
    z0 = rng.uniform(-1.0, 1.0, (batch, 2))
    data = rng.uniform(-1.0, 1.0, (len(times), batch, 2))
    return Problem(model, theta, z0, t0, t0 + span * (np.array(times) - t0), data, "tanh")


def by_loop(problem, engine, **kwargs):
    before = compiled.loop_runs()
    result = gradient(problem, engine=engine, **kwargs)
    assert compiled.loop_runs() == before + 1, "the compiled loop did not compute this gradient"
    assert result.path == "compiled loop"
    return result


def by_numpy(problem, engine, **kwargs):
    compiled.set_enabled(False)
    try:
        return gradient(problem, engine=engine, **kwargs)
    finally:
        compiled.set_enabled(True)


ENGINES = {"Backsolve": BacksolveAdjoint(), "Interpolating": InterpolatingAdjoint(), "Quadrature": QuadratureAdjoint(),
           "Gauss": GaussAdjoint(), "RecursiveCheckpoint": RecursiveCheckpointAdjoint(),
           "RecursiveCheckpoint(2)": RecursiveCheckpointAdjoint(checkpoints=2)}


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
@pytest.mark.parametrize("name", list(ENGINES))
def test_the_loop_matches_the_reference_and_the_numpy_driver(name, solver):
    problem = tanh_problem()
    engine = ENGINES[name]
    result = by_loop(problem, engine, solver=solver, rtol=TOL, atol=TOL)
    bound = BOUND * (10 if name.startswith("Recursive") else 1)  # the discrete gradient: see below
    assert_matches(result, scipy_reference(problem), bound)
    numpy = by_numpy(problem, engine, solver=solver, rtol=TOL, atol=TOL)
    assert result.engine == numpy.engine
    assert result.forward_stats == numpy.forward_stats
    assert result.backward_stats == numpy.backward_stats
    assert relative_error(result.dtheta, numpy.dtheta) <= AGREEMENT
    assert relative_error(result.dz0, numpy.dz0) <= AGREEMENT
    assert abs(result.loss - numpy.loss) <= AGREEMENT * abs(numpy.loss)
    assert result.n_datapoints == numpy.n_datapoints
    if name == "Backsolve":
        # the reconstruction check runs on the loop's state too (same steps: the same figure, to rounding)
        assert abs(result.diagnostics["reconstruction_error"] - numpy.diagnostics["reconstruction_error"]) <= 1e-6
        assert result.diagnostics["unstable"] is False
    else:
        assert result.diagnostics == numpy.diagnostics


def test_the_discrete_gradient_bound():
    """RecursiveCheckpointAdjoint is the exact gradient of the computed solution, whose error is a
    modest multiple of tol; the bound above is 10x the adjoints' (5e-5) to cover that, and the check
    that it is not loose is that the loop agrees with numpy to 1e-12."""
    problem = tanh_problem()
    result = by_loop(problem, RecursiveCheckpointAdjoint(), rtol=TOL, atol=TOL)
    assert relative_error(result.dtheta, scipy_reference(problem)[1]) <= 10 * BOUND


def test_more_steps_than_the_first_store_holds():
    """A solve of more than 64 steps outgrows the loop's first dense store: the store is doubled and
    the forward pass re-run, with numpy's steps and result (larger weights and a span of 50 at tol
    1e-11: 84 steps)."""
    rng = np.random.default_rng(11)
    model = MLP((2, 3, 2), activation="tanh")
    problem = Problem(model, 2.0 * rng.standard_normal(model.n_params), rng.uniform(-1, 1, (2, 2)), 0.0,
                      np.array([25.0, 50.0]), rng.uniform(-1, 1, (2, 2, 2)), "long")
    for engine in (GaussAdjoint(), InterpolatingAdjoint(), RecursiveCheckpointAdjoint()):
        result = by_loop(problem, engine, rtol=1e-11, atol=1e-11)
        assert result.forward_stats.n_accepted > 64
        numpy = by_numpy(problem, engine, rtol=1e-11, atol=1e-11)
        assert result.forward_stats == numpy.forward_stats
        assert result.backward_stats == numpy.backward_stats
        assert relative_error(result.dtheta, numpy.dtheta) <= 1e-10


@pytest.mark.parametrize("engine,solver", [
    (InterpolatingAdjoint(checkpointing=True), "DP5"),  # checkpointed: numpy driver
    (GaussAdjoint(), "RadauIIA5"),  # implicit forward
    (GaussAdjoint(solver="BDF"), "DP5"),  # implicit backward
    (QuadratureAdjoint(), "DP8"),  # DP8 is scipy's loop
    (RecursiveCheckpointAdjoint(), "DP8"),
])
def test_outside_its_scope_the_numpy_driver_runs(engine, solver):
    problem = tanh_problem(times=(1.2,))
    before = compiled.loop_runs()
    result = gradient(problem, engine=engine, solver=solver, rtol=TOL, atol=TOL)
    assert compiled.loop_runs() == before
    assert result.path == "compiled stages"
    assert_matches(result, scipy_reference(problem), BOUND * 10)


def test_other_models_and_time_dependent_fields_run_numpy():
    rng = np.random.default_rng(2)
    timed = MLP((2, 3, 2), activation="tanh", time_dependent=True)
    problem = Problem(timed, 0.5 * rng.standard_normal(timed.n_params), rng.uniform(-1, 1, (2, 2)), 0.0,
                      np.array([1.0]), rng.uniform(-1, 1, (1, 2, 2)), "timed")
    linear = Problem(Linear(2), 0.3 * rng.standard_normal(6), rng.uniform(-1, 1, (2, 2)), 0.0, np.array([1.0]),
                     rng.uniform(-1, 1, (1, 2, 2)), "linear")
    for p, path in ((problem, "numpy (MLP)"), (linear, "numpy (model's vjp)")):
        for engine in (GaussAdjoint(), RecursiveCheckpointAdjoint()):
            before = compiled.loop_runs()
            result = gradient(p, engine=engine, rtol=TOL, atol=TOL)
            assert compiled.loop_runs() == before
            assert result.path == path


def test_an_activation_without_kernels_runs_numpy_even_when_forced():
    """The identity activation has no compiled kernel: with the compiled path forced on, the affine
    closed-form problem of tests/test_engines_closed_form_small.py still runs the numpy engines and
    matches the matrix exponential."""
    from test_engines_closed_form_small import check, small_problem

    problem = small_problem()
    for engine in (GaussAdjoint(), InterpolatingAdjoint(), RecursiveCheckpointAdjoint()):
        before = compiled.loop_runs()
        result = gradient(problem, engine=engine, rtol=TOL, atol=TOL)
        assert compiled.loop_runs() == before
        assert result.path == "numpy (MLP)"
        check(result, problem)


def test_a_new_adjoint_without_a_compiled_loop_runs_the_numpy_driver():
    """A continuous adjoint written as an `AdjointSystem` subclass (the documented extension) that
    declares no compiled loop is computed by the numpy driver, with the compiled path on."""
    from harness import SolveOptions, adjoint_gradient
    from harness.sensitivity._interpolating import Interpolating

    class MyInterpolating(Interpolating):
        compiled_loop = None

    problem = tanh_problem(times=(1.2,))
    before = compiled.loop_runs()
    result = adjoint_gradient(problem, problem.theta, SolveOptions("DP5", TOL, TOL), InterpolatingAdjoint(),
                              MyInterpolating)
    assert compiled.loop_runs() == before
    assert_matches(result, scipy_reference(problem))
