"""The compiled whole adaptive loop (harness._compiled._adaptive_loop) against the numpy driver.

Why these bounds
----------------
The loop is the numpy loop written out: the same stage combinations, error norm, controller, budget
and piece walk, so the step counts must be EQUAL (asserted), and the results differ only by the
order of a few sums and the kernel's own tanh, a few ulps per stage. Over the at most few hundred
steps of these solves, carried by stable dynamics, that stays far below 1e-12 relative (measured:
1e-15 to 4e-15), while a real error (a wrong tableau entry, index or sign) is O(1e-3) or more.

The stiff problem under an explicit solver takes thousands of steps at the edge of stability, where
each stage's rounding is ε Λ|z| rather than ε |f| (Λ = diag(1, 1000)) and is amplified by the
stability-limited steps: the bound there is 1e-12 x max Λ = 1e-9, as in tests/test_compiled.py
(measured: dθ 4e-15, dz0 up to 7e-11).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled path needs numba")

import harness._compiled as compiled
from harness._compiled import _adaptive_loop as loop
from harness._memory import peak_memory
from harness.errors import UnstableBacksolveError
from harness.julia import doctor_report, julia_status
from harness.model import MLP
from harness.problems import deep_problem, make_problem, multi_time_problem, seed_problem, stiff_problem
from harness.sensitivity import (
    BacksolveAdjoint,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
    gradient,
)
from harness._compiled import _reverse_sweep as sweep_module
from harness.solvers import _step_rules

AGREEMENT = 1e-12  # relative; see the module docstring
STIFF_AGREEMENT = 1e-9  # 1e-12 x max Λ; see the module docstring

def wide_problem(batch):
    """2-12-12-2: the 12 x 12 layer's products go to BLAS (`_stage_kernels.BLAS_MIN_PRODUCT`), the 12 x 2
    ones are written out; at B = 8 the θ products are BLAS products too."""
    return make_problem(MLP((2, 12, 12, 2)), seed=0, batch=batch, name="wide")


BUILDERS = {"seed": seed_problem, "multi_time": multi_time_problem, "deep": deep_problem, "wide": wide_problem}
ADJOINTS = {"Backsolve": BacksolveAdjoint(), "Interpolating": InterpolatingAdjoint(),
            "Quadrature": QuadratureAdjoint(), "Gauss": GaussAdjoint()}
# the adjoints whose backward solve reads z from the forward dense output (stable on the stiff model)
INTERPOLATED = ("Interpolating", "Quadrature", "Gauss")


def rel(x, ref):
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


def numpy_gradient(problem, engine, **kwargs):
    compiled.set_enabled(False)
    try:
        return gradient(problem, engine=engine, **kwargs)
    finally:
        compiled.set_enabled(None)


def loop_gradient(problem, engine, **kwargs):
    """The gradient by the compiled loop (asserting that the loop, not a fallback, computed it)."""
    before = compiled.loop_runs()
    result = gradient(problem, engine=engine, **kwargs)
    assert compiled.loop_runs() == before + 1
    return result


def assert_same(got, ref, bound):
    assert got.forward_stats == ref.forward_stats  # the same steps, accepted and rejected
    assert got.backward_stats == ref.backward_stats
    assert abs(got.loss - ref.loss) <= bound * abs(ref.loss)
    assert rel(got.dtheta, ref.dtheta) <= bound
    assert rel(got.dz0, ref.dz0) <= bound


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
@pytest.mark.parametrize("adjoint", sorted(ADJOINTS))
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_loop_takes_the_numpy_steps_and_agrees(name, batch, adjoint, solver):
    problem = BUILDERS[name](batch=batch)
    engine = ADJOINTS[adjoint]
    ref = numpy_gradient(problem, engine, solver=solver)
    got = loop_gradient(problem, engine, solver=solver)
    assert_same(got, ref, AGREEMENT)
    if adjoint == "Backsolve":
        assert got.diagnostics["unstable"] is False
        assert got.diagnostics["reconstruction_error"] == pytest.approx(
            ref.diagnostics["reconstruction_error"], rel=1e-6, abs=1e-9)
    else:
        # Quadrature and Gauss: the same quadrature point count (nodes x accepted backward steps)
        assert got.diagnostics == ref.diagnostics


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
@pytest.mark.parametrize("batch", [1, 8])
def test_the_compiled_forward_pass_reads_observation_times_from_its_dense_output(batch, solver):
    # the same network, z0 and θ observed at 20 times in (0, 10] or at 10 alone: the forward pass takes
    # the same steps (it does not stop at the 19 others), so z(10) is the same number, and z at the
    # others, read from the steps' dense output, is the numpy path's to the bound above
    from harness._compiled._solves import solve_forward as compiled_forward
    from harness._compiled._arguments import AT_END, step_store
    from harness._forward import SolveOptions, solve_forward
    from harness.solvers import check_solver

    times = np.linspace(0.5, 10.0, 20)
    many = make_problem(MLP((2, 3, 2)), seed=0, batch=batch, times=times)
    one = make_problem(MLP((2, 3, 2)), seed=0, batch=batch, times=(10.0,))
    solved = [compiled_forward(compiled.kernels(), p.model, p.theta, p.z0, p.t0, p.times, check_solver(solver),
                               1e-6, 1e-6, True, 4, step_store) for p in (many, one)]
    assert solved[0].counts == solved[1].counts
    # every time but the last is read inside a step, the last is the solve's end state
    assert np.all((solved[0].obs_x[:-1] > 0) & (solved[0].obs_x[:-1] < 1)) and solved[0].obs_x[-1] == AT_END
    assert np.array_equal(solved[0].z_at[-1], solved[1].z_at[-1])
    reference = solve_forward(many.model, many.theta, many.z0, many.t0, many.times, SolveOptions(solver, 1e-6, 1e-6))
    assert (reference.stats.n_rhs, reference.stats.n_accepted, reference.stats.n_rejected) == solved[0].counts
    assert rel(solved[0].z_at.transpose(0, 2, 1), reference.z_at_times) <= AGREEMENT


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
@pytest.mark.parametrize("adjoint", INTERPOLATED)
@pytest.mark.parametrize("batch", [1, 8])
def test_loop_on_the_stiff_model_under_an_explicit_solver(batch, adjoint, solver):
    problem = stiff_problem(batch=batch)
    engine = ADJOINTS[adjoint]
    ref = numpy_gradient(problem, engine, solver=solver)
    got = loop_gradient(problem, engine, solver=solver)
    assert_same(got, ref, STIFF_AGREEMENT)
    assert got.diagnostics == ref.diagnostics


@pytest.mark.parametrize(
    "engine",
    [InterpolatingAdjoint(solver="BS3", rtol=1e-8, atol=1e-9),
     QuadratureAdjoint(solver="BS3", rtol=1e-8, atol=1e-9, quadrature_nodes=5),
     GaussAdjoint(solver="BS3", rtol=1e-8, atol=1e-9)],
    ids=["Interpolating", "Quadrature-5-nodes", "Gauss"],
)
def test_loop_with_other_tolerances_and_a_different_backward_solver(engine):
    problem = multi_time_problem(batch=3)
    ref = numpy_gradient(problem, engine, solver="DP5", rtol=1e-7, atol=1e-7)
    got = loop_gradient(problem, engine, solver="DP5", rtol=1e-7, atol=1e-7)
    assert_same(got, ref, AGREEMENT)
    assert got.diagnostics == ref.diagnostics


# RecursiveCheckpointAdjoint: the compiled forward pass and reverse sweep (`_reverse_sweep.py`) replay
# and reverse the numpy engine's steps in its order, so every count it reports is equal (recomputed
# steps and stored states included) and the results agree to the bounds above, for the same reason
# (measured: up to 5e-14 on the catalogue, the deep network's sweep through its 4 layers the widest;
# 1e-14 on the stiff model).


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
@pytest.mark.parametrize("checkpoints", [None, 3])
@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reverse_sweep_takes_the_numpy_steps_and_agrees(name, batch, checkpoints, solver):
    problem = BUILDERS[name](batch=batch)
    engine = RecursiveCheckpointAdjoint(checkpoints=checkpoints)
    ref = numpy_gradient(problem, engine, solver=solver)
    got = loop_gradient(problem, engine, solver=solver)
    assert_same(got, ref, AGREEMENT)
    assert got.diagnostics == ref.diagnostics


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
@pytest.mark.parametrize("checkpoints", [None, 4])
@pytest.mark.parametrize("batch", [1, 8])
def test_reverse_sweep_on_the_stiff_model_under_an_explicit_solver(batch, checkpoints, solver):
    problem = stiff_problem(batch=batch)
    engine = RecursiveCheckpointAdjoint(checkpoints=checkpoints)
    ref = numpy_gradient(problem, engine, solver=solver)
    got = loop_gradient(problem, engine, solver=solver)
    assert_same(got, ref, STIFF_AGREEMENT)
    assert got.diagnostics == ref.diagnostics


@pytest.mark.parametrize("checkpoints", [1, 2, 5, 1000])
def test_reverse_sweep_runs_the_numpy_revolve_schedule(checkpoints):
    # ~100 steps in one piece: the binomial schedule nests several levels deep (1000: more
    # checkpoints than steps, every level advances one step); equal recomputed-step and stored-state counts
    # mean the same schedule ran, and recomputing a state is the same arithmetic as storing it, so
    # the compiled checkpointed sweep gives the compiled stored sweep's bits
    problem = seed_problem(batch=2)
    options = {"solver": "BS3", "rtol": 1e-7, "atol": 1e-7}
    engine = RecursiveCheckpointAdjoint(checkpoints=checkpoints)
    ref = numpy_gradient(problem, engine, **options)
    got = loop_gradient(problem, engine, **options)
    stored = loop_gradient(problem, RecursiveCheckpointAdjoint(), **options)
    assert got.diagnostics["n_steps"] > 50
    assert got.diagnostics == ref.diagnostics
    assert got.diagnostics["recomputed_steps"] > 0
    assert got.diagnostics["peak_stored_states"] <= checkpoints + 1
    assert_same(got, ref, AGREEMENT)
    assert np.array_equal(got.dtheta, stored.dtheta) and np.array_equal(got.dz0, stored.dz0)


def test_reverse_sweep_leaves_time_dependent_fields_to_numpy():
    problem = make_problem(MLP((2, 3, 2), time_dependent=True), batch=2)
    before = compiled.loop_runs()
    gradient(problem, engine=RecursiveCheckpointAdjoint())
    assert compiled.loop_runs() == before


def test_compiled_quadrature_adjoint_keeps_no_dense_backward_solution():
    # the loop sums QuadratureAdjoint's nodes step by step, as GaussAdjoint's: the numpy driver's
    # dense backward solution of the piece is never stored (measured at t1 = 100, B = 200: 1.6 MB
    # against 7.3 MB, where the loop's peak is its forward dense store, as GaussAdjoint's)
    base = seed_problem(batch=200)
    problem = make_problem(base.model, batch=200, times=(100.0,), name="long")
    engine = QuadratureAdjoint()
    loop_gradient(problem, engine)  # loads the compiled loop outside the measurement
    numpy_peak = peak_memory(lambda: numpy_gradient(problem, engine))
    before = compiled.loop_runs()
    loop_peak = peak_memory(lambda: gradient(problem, engine=engine))
    assert compiled.loop_runs() == before + 1
    assert loop_peak < 0.5 * numpy_peak


def test_a_failing_backsolve_falls_back_to_the_numpy_error():
    # Backsolve of the stiff model blows up backwards: the loop reports FAILED, and the numpy driver
    # re-runs and raises its explained error
    problem = stiff_problem(batch=1)
    with pytest.raises(UnstableBacksolveError, match="backward solve of z failed"):
        gradient(problem, engine=BacksolveAdjoint())


@pytest.mark.parametrize(
    "engine, kwargs",
    [
        (InterpolatingAdjoint(checkpointing=True), {}),
        (QuadratureAdjoint(), {"solver": "RadauIIA5"}),
        (InterpolatingAdjoint(), {"solver": "RadauIIA5"}),
        (InterpolatingAdjoint(solver="BDF"), {}),
        (InterpolatingAdjoint(), {"solver": "DP8"}),
        (RecursiveCheckpointAdjoint(), {"solver": "DP8"}),
    ],
    ids=["checkpointing", "quadrature-implicit-forward", "implicit-forward", "implicit-backward", "scipy-explicit",
         "recursive-checkpoint-scipy-explicit"],
)
def test_outside_its_scope_the_numpy_driver_runs(engine, kwargs):
    problem = seed_problem(batch=2)
    before = compiled.loop_runs()
    gradient(problem, engine=engine, **kwargs)
    assert compiled.loop_runs() == before


def test_automatic_mode_uses_the_loop_at_every_size_and_refuses_kernelless_models():
    small = make_problem(MLP((2, 3, 2)), batch=4)
    wide = make_problem(MLP((2, 40, 2)), batch=300)  # 40 x 2 products and B P = 49 200: BLAS in the loop
    identity = make_problem(MLP((2, 3, 2), activation="identity"), batch=1)
    before = compiled.loop_runs()
    gradient(small, engine="BacksolveAdjoint")
    gradient(wide, engine="BacksolveAdjoint")
    assert compiled.loop_runs() == before + 2
    gradient(identity, engine="BacksolveAdjoint")
    assert compiled.loop_runs() == before + 2
    assert "identity" in compiled.status(identity.model, identity.batch_size)


def test_the_loop_compiles_the_numpy_step_rules_and_holds_no_copy():
    """The compiled loop calls the very functions the numpy loop calls (`solvers._step_rules`), and
    neither kernel module defines a constant of theirs: a change to a rule is made in one file."""
    for rule in _step_rules.RULES:
        users = [m for m in (loop, sweep_module) if getattr(m, rule.__name__, None) is not None]
        assert all(getattr(m, rule.__name__) is rule for m in users), rule.__name__
    assert loop.factor_after_accept is _step_rules.factor_after_accept
    assert sweep_module.first_part is _step_rules.first_part
    constants = [name for name, value in vars(_step_rules).items() if name.isupper() and isinstance(value, float | int)]
    for module in (loop, sweep_module):
        assert not [name for name in constants if name in vars(module)], module.__name__


def test_doctor_prints_the_compiled_path():
    report = doctor_report(julia_status(run_julia=False))
    line = next(line for line in report.splitlines() if line.strip().startswith("compiled"))
    assert compiled.status() in line
    assert "whole adaptive loop" in line
    compiled.set_enabled(False)
    try:
        assert "numpy: turned off by harness._compiled.set_enabled(False)" in doctor_report(
            julia_status(run_julia=False))
    finally:
        compiled.set_enabled(None)
