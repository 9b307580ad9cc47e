"""RecursiveCheckpointAdjoint without checkpoints keeps the forward pass's stages.

The forward pass keeps every accepted step's stage inputs, so the reverse sweep evaluates no f, only
the VJPs (numpy engine and compiled loop alike, DP5 and BS3; DP8's stages are scipy's and are
replayed). The compiled loop also keeps the layer inputs of those evaluations, within
`_arguments.RECORD_BYTES`, and starts each VJP from them.

Why these bounds
----------------
Keeping is not an approximation: a kept stage input is the forward's own value, and a VJP from kept
layer inputs reads the activations the forward formed and re-forms the slopes with the forward's own
formula (1 - s², s (1 - s)). So the gradient with records, with records for only the first steps,
and with none are the same bits (asserted with `array_equal`), and the numpy sweep that replays the
states (checkpoints) gives the stored sweep's bits because its replay is the forward loop's arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest

import harness._compiled as compiled
from harness.model import MLP
from harness.problems import make_problem, seed_problem
from harness.sensitivity import RecursiveCheckpointAdjoint, gradient

STORED = RecursiveCheckpointAdjoint()


@pytest.fixture
def numpy_engine():
    """The numpy engine for the test's gradients (the compiled loop off)."""
    compiled.set_enabled(False)
    yield
    compiled.set_enabled(None)


def _problem(widths, activation, batch):
    return make_problem(MLP(widths, activation=activation), seed=3, batch=batch, times=(2.0, 4.0, 6.0),
                        name=f"{widths} {activation}")


@pytest.mark.parametrize("solver", ["DP5", "BS3"])
def test_the_numpy_sweep_evaluates_no_f_where_the_forward_kept_its_stages(solver, numpy_engine):
    problem = seed_problem(batch=4)
    stored = gradient(problem, engine=STORED, solver=solver, rtol=1e-6, atol=1e-6)
    replayed = gradient(problem, engine=RecursiveCheckpointAdjoint(checkpoints=2), solver=solver, rtol=1e-6,
                        atol=1e-6)
    # the backward count is the VJPs alone; the checkpointed sweep evaluates the stages again (s - 1 a
    # step at least) besides its recomputed steps
    assert stored.backward_stats.n_rhs == stored.diagnostics["vjps"]
    assert replayed.backward_stats.n_rhs - replayed.diagnostics["vjps"] >= stored.diagnostics["n_steps"]
    assert np.array_equal(stored.dtheta, replayed.dtheta) and np.array_equal(stored.dz0, replayed.dz0)


def test_dp8_whose_stages_are_scipys_still_replays_its_states(numpy_engine):
    result = gradient(seed_problem(batch=2), engine=STORED, solver="DP8", rtol=1e-6, atol=1e-6)
    assert result.backward_stats.n_rhs > result.diagnostics["vjps"]


needs_numba = pytest.mark.skipif(not compiled.available(), reason="the compiled loop's records need numba")


def _compiled(problem, solver="DP5"):
    before = compiled.loop_runs()
    result = gradient(problem, engine=STORED, solver=solver, rtol=1e-7, atol=1e-7)
    assert compiled.loop_runs() == before + 1, "the compiled loop did not run"
    return result


@needs_numba
@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("widths", [(2, 12, 12, 2), (3, 5, 3)], ids=["wide", "narrow"])
def test_vjps_from_kept_layer_inputs_are_the_bits_of_vjps_that_form_them(widths, activation, monkeypatch):
    """All steps recorded, the first two only, none: the same bits (see the module docstring). 2-12-12-2
    runs the layer-by-layer kernel with BLAS products, 3-5-3 the blocked one."""
    from harness._compiled import _arguments
    from harness.sensitivity import _compiled_loop

    recorded_steps = []

    def spy(*args):  # the number of steps whose records the forward pass had room for
        kept = _arguments.kept_stages(*args)
        recorded_steps.append(kept[1].shape[0])
        return kept

    monkeypatch.setattr(_compiled_loop, "kept_stages", spy)
    problem = _problem(widths, activation, batch=9)
    inputs = _arguments.network_arguments(problem.model, problem.theta, problem.batch_size)[8]
    per_step = 6 * inputs.nbytes  # DP5's six stages
    results = {}
    for label, steps in (("all", None), ("none", 0), ("first two", 2)):
        if steps is not None:
            monkeypatch.setattr(_arguments, "RECORD_BYTES", steps * per_step)
        results[label] = _compiled(problem)
    full = results["all"]
    n_steps = full.diagnostics["n_steps"]
    assert n_steps > 4
    assert recorded_steps[0] > n_steps and recorded_steps[1:] == [0, 2]
    for label, result in results.items():
        assert np.array_equal(result.dtheta, full.dtheta), label
        assert np.array_equal(result.dz0, full.dz0), label
        assert result.diagnostics == full.diagnostics


@needs_numba
def test_records_agree_with_the_numpy_engine_and_count_as_it_does():
    """The compiled sweep with records against the numpy sweep: the counts equal, the gradients to the
    1e-12 of tests/test_compiled_loop.py (the kernels' own tanh and sums, a few ulps per stage)."""
    problem = _problem((2, 12, 12, 2), "tanh", batch=9)
    got = _compiled(problem)
    compiled.set_enabled(False)
    try:
        ref = gradient(problem, engine=STORED, solver="DP5", rtol=1e-7, atol=1e-7)
    finally:
        compiled.set_enabled(None)
    assert got.forward_stats == ref.forward_stats and got.backward_stats == ref.backward_stats
    assert got.diagnostics == ref.diagnostics
    for x, r in ((got.dtheta, ref.dtheta), (got.dz0, ref.dz0)):
        assert np.max(np.abs(x - r)) <= 1e-12 * np.max(np.abs(r))


@needs_numba
def test_the_kept_stages_are_sized_from_the_last_solve_and_grow_when_a_solve_needs_more(monkeypatch):
    """The first gradient reserves room for `DENSE_STEPS` steps, the next for the steps the first took
    (with its margin); a solve that outgrows its room is run again with twice the room, and the
    gradient is the same bits whatever the room was."""
    from harness._compiled import _arguments
    from harness.sensitivity import _compiled_loop

    capacities = []

    def spy(capacity, *args):
        capacities.append(capacity)
        return _arguments.kept_stages(capacity, *args)

    monkeypatch.setattr(_compiled_loop, "kept_stages", spy)
    monkeypatch.setattr(_compiled_loop, "_STEPS_TAKEN", {})
    problem = _problem((2, 12, 12, 2), "tanh", batch=9)
    first = _compiled(problem)
    n_steps = first.diagnostics["n_steps"]
    second = _compiled(problem)
    assert capacities == [_compiled_loop.DENSE_STEPS, n_steps + n_steps // 8 + 2]
    # room for 3 steps: the forward pass runs out of it and is run again with 6, 12, ...
    key = next(iter(_compiled_loop._STEPS_TAKEN))
    _compiled_loop._STEPS_TAKEN[key] = 1
    capacities.clear()
    cramped = _compiled(problem)
    assert capacities[0] == 3 and capacities[-1] >= n_steps and len(capacities) > 1
    for result in (second, cramped):
        assert np.array_equal(result.dtheta, first.dtheta) and np.array_equal(result.dz0, first.dz0)
        assert result.forward_stats == first.forward_stats and result.diagnostics == first.diagnostics
