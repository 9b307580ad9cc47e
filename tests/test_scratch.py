"""The compiled loop's scratch reused from one gradient to the next on a thread (harness._compiled._scratch).

Reuse must change no number: a reused buffer's old contents are never read. So every gradient here is
compared to the bit with the same gradient computed with fresh arrays (`ACTIVE_ITEMS` raised, so that no
scope is active), after the kept buffers were filled with NaN: a single read of an unwritten entry would
show as NaN or as a different number.
"""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled path needs numba")

import harness._compiled as compiled
from harness._compiled import _scratch as scratch
from harness.model import MLP
from harness.problems import make_problem
from harness.sensitivity import (
    BacksolveAdjoint,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
    gradient,
)

ENGINES = {
    "Backsolve": BacksolveAdjoint(),
    "Interpolating": InterpolatingAdjoint(),
    "Quadrature": QuadratureAdjoint(),
    "Gauss": GaussAdjoint(),
    "RecursiveCheckpoint": RecursiveCheckpointAdjoint(),
    "RecursiveCheckpoint(checkpoints=2)": RecursiveCheckpointAdjoint(checkpoints=2),
}


def large_problem(seed=0, times=(0.5, 1.0)):
    """2-16-2 at B = 1500: above `ACTIVE_ITEMS` (B x 20 = 30 000), with scratch above `SMALL_ITEMS` (the
    layer inputs of every stage, 1.1 MB a step; the stage inputs of a step, 0.9 MB)."""
    return make_problem(MLP((2, 16, 2)), seed=seed, batch=1500, times=times, name="large")


def loop_gradient(problem, engine):
    before = compiled.loop_runs()
    result = gradient(problem, engine=engine, solver="DP5", rtol=1e-6, atol=1e-6)
    assert compiled.loop_runs() == before + 1  # the compiled loop computed it, not the numpy driver
    return result


def fresh_gradient(problem, engine, monkeypatch):
    """The gradient with numpy's own arrays (no scope is active)."""
    with monkeypatch.context() as patch:
        patch.setattr(scratch, "ACTIVE_ITEMS", 2**62)
        before = scratch.allocations()
        result = loop_gradient(problem, engine)
        assert scratch.allocations() == before
    return result


def poison_kept_buffers():
    kept = scratch.free_buffers()
    for buffer in kept:
        buffer.fill(np.nan if buffer.dtype.kind == "f" else -(2**62))
    return kept


def assert_identical(got, ref):
    assert got.loss == ref.loss
    np.testing.assert_array_equal(got.dtheta, ref.dtheta)
    np.testing.assert_array_equal(got.dz0, ref.dz0)
    assert got.forward_stats == ref.forward_stats and got.backward_stats == ref.backward_stats


@pytest.mark.parametrize("engine_name", list(ENGINES))
def test_reused_scratch_gives_the_numbers_of_fresh_arrays_to_the_bit(engine_name, monkeypatch):
    engine = ENGINES[engine_name]
    problem, other = large_problem(seed=0), large_problem(seed=1, times=(0.25, 0.5, 1.0))
    reference = fresh_gradient(problem, engine, monkeypatch)
    loop_gradient(other, engine)  # another problem's gradient leaves its buffers
    loop_gradient(problem, engine)  # sizes the steps' room from the steps this problem takes
    assert poison_kept_buffers(), "the gradient kept no buffer for the next: nothing would be reused"
    assert_identical(loop_gradient(problem, engine), reference)
    # the same sizes again: served from the kept buffers, nothing allocated
    poison_kept_buffers()
    before = scratch.allocations()
    assert_identical(loop_gradient(problem, engine), reference)
    assert scratch.allocations() == before


def test_a_traced_gradient_allocates_all_its_scratch_afresh():
    """`harness compare` and `harness.bench` report tracemalloc's peak of one gradient: the buffers kept
    from the last gradient must not hide from it. (Its peak is not their sum: without a scope the forward
    pass's scratch is freed before the sweep's is allocated.)"""
    problem, engine = large_problem(), RecursiveCheckpointAdjoint()
    loop_gradient(problem, engine)
    loop_gradient(problem, engine)
    kept = scratch.free_buffers()
    largest = max(b.nbytes for b in kept)
    assert largest > 2**20  # the kept stages' layer records
    before = scratch.allocations()
    tracemalloc.start()
    try:
        loop_gradient(problem, engine)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scratch.allocations() == before
    assert peak >= largest  # allocated afresh and traced (a reused buffer would not have been)
    assert [b.ctypes.data for b in scratch.free_buffers()] == [b.ctypes.data for b in kept]  # left alone


def test_a_small_solve_opens_no_scope():
    """Below `ACTIVE_ITEMS` (2-3-2 at B = 500: 3 500) no scope opens: numpy allocates as before, and the
    buffers a large gradient kept stay as they were, for the next large one."""
    loop_gradient(large_problem(), RecursiveCheckpointAdjoint())
    kept = [b.ctypes.data for b in scratch.free_buffers()]
    assert kept
    before = scratch.allocations()
    loop_gradient(make_problem(MLP((2, 3, 2)), seed=0, batch=500, name="small"), RecursiveCheckpointAdjoint())
    assert scratch.allocations() == before
    assert [b.ctypes.data for b in scratch.free_buffers()] == kept


def test_what_a_thread_keeps_is_bounded(monkeypatch):
    monkeypatch.setattr(scratch, "KEEP_BYTES", 2**21)
    problem, engine = large_problem(), RecursiveCheckpointAdjoint()
    loop_gradient(problem, engine)
    loop_gradient(problem, engine)
    kept = scratch.free_buffers()
    assert kept and sum(b.nbytes for b in kept) <= 2**21


def test_threads_keep_their_own_buffers(monkeypatch):
    """Gradients on two threads at once (as `harness compare --workers` runs cells) give the numbers of
    fresh arrays: neither thread takes a buffer the other is using."""
    problems = [large_problem(seed=0), large_problem(seed=1, times=(0.25, 0.5, 1.0))]
    engine = RecursiveCheckpointAdjoint()
    references = [fresh_gradient(p, engine, monkeypatch) for p in problems]
    failures = []
    runs = compiled.loop_runs()

    def work(index):
        try:
            for _ in range(4):
                poison_kept_buffers()
                got = gradient(problems[index], engine=engine, solver="DP5", rtol=1e-6, atol=1e-6)
                assert_identical(got, references[index])
        except BaseException as error:  # noqa: BLE001 (reported by the main thread)
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert compiled.loop_runs() == runs + 8  # every one of them by the compiled loop
