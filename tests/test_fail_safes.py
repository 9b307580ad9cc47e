"""Fail-safes exercised the way they fire in use: the step budget's projection, the training
watchdog's default limit, the compiled module's cache key, and the Dask executor's cancellation.

Each test is written so that the fail-safe's rule, not just its existence, decides the outcome: a
budget projecting with the larger of its two estimates, a watchdog whose default limit ignores the
median or the floor, a key that ignores a kernel file (or follows glue), an executor that leaves
cells running after the caller stopped reading all fail here.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass

import pytest

import harness
from harness.errors import SolverError, TrainingDivergedError
from harness.solvers._step_budget import EARLY_MARGIN, FIRST_CHECK, PATIENT_STEPS, StepBudget


# ------------------------------------------------------------------------------ the step budget
def test_the_budget_projects_with_the_smaller_estimate_after_a_slow_start():
    """A solve that crossed a fast transient in thousands of tiny steps and now takes long ones: at
    the check after 6400 attempted steps it has covered 1/1000 of the span, so the average rate so
    far projects 6.4 million more steps, but the current step (1/1000 of the span) only 999. The
    budget (10 000) must believe the smaller: the solve is sane and finishes in ~7400 steps."""
    budget = StepBudget("RadauIIA5", True, 0.0, 10.0, h_first=1e-3, max_steps=10_000)
    n = 64 * FIRST_CHECK
    assert n >= PATIENT_STEPS  # past the early margin: a projection beyond the budget stops the solve
    budget.check(n, t=0.01, h_abs=0.01)  # must not raise
    assert budget.next_check == min(2 * n, budget.max_steps)
    # and a solve whose current pace cannot finish is stopped at the same check
    with pytest.raises(SolverError, match="reaching the end would take about"):
        budget.check(n, t=0.01, h_abs=1e-6)


def test_early_checks_allow_the_margin_and_no_more():
    """Before PATIENT_STEPS a projection must exceed the budget EARLY_MARGIN times to stop the solve:
    a slow start projecting 100x the budget goes on; a pace projecting beyond the margin stops."""
    budget = StepBudget("RadauIIA5", True, 0.0, 1.0, h_first=1e-4, max_steps=10_000)
    span = 1.0
    # projected 100 + 1e6 steps (100 x the budget): a slow start, allowed
    budget.check(FIRST_CHECK, t=1e-5, h_abs=(span - 1e-5) / 1e6)
    # projected beyond EARLY_MARGIN x the budget at both rates: stopped at once
    h = (span - 1e-9) / (2 * EARLY_MARGIN * budget.max_steps)
    with pytest.raises(SolverError):
        budget.check(FIRST_CHECK, t=1e-9, h_abs=h)


# ------------------------------------------------------------------ the training step watchdog
def _slow_at(step: int, seconds: float, base: float, monkeypatch):
    """Make `train`'s gradient take `base` s per call, and `seconds` at step `step` (call step + 1)."""
    import harness.training as training

    real, calls = training.gradient, []

    def timed(*args, **kwargs):
        calls.append(1)
        time.sleep(seconds if len(calls) == step + 1 else base)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "gradient", timed)
    return calls


def _limit_in(reason: str) -> tuple[float, float]:
    """(limit s, median ms) from the default watchdog's message."""
    match = re.search(r"more than ([0-9.e+-]+) s, against ([0-9.e+-]+) ms", reason)
    assert match, reason
    return float(match.group(1)), float(match.group(2))


def test_the_default_step_limit_is_a_hundred_times_the_median_of_the_first_steps(monkeypatch):
    """No `step_timeout`: the limit is max(MIN_SECONDS, FACTOR x median of the first steps). With the
    floor lowered to 0.05 s and steps of ~20-40 ms, the limit is ~2-4 s: a step of 10 s is stopped
    at the limit, and the message states the limit the formula gives from the median it reports."""
    import harness.training as training

    watchdog = training._StepWatchdog
    monkeypatch.setattr(watchdog, "MIN_SECONDS", 0.05)
    calls = _slow_at(4, 10.0, 0.02, monkeypatch)
    problem = harness.seed_problem(batch=4)
    started = time.perf_counter()
    with pytest.raises(TrainingDivergedError) as err:
        harness.train(problem, steps=20, lr=1e-3, progress=False)
    elapsed = time.perf_counter() - started
    failure = err.value.result.failure
    assert failure["step"] == 4 and len(calls) == 5
    limit, median_ms = _limit_in(failure["reason"])
    assert 0.02 <= median_ms / 1e3 < 0.2
    assert math.isclose(limit, max(0.05, watchdog.FACTOR * median_ms / 1e3), rel_tol=1.5e-2)  # both printed to 3 digits
    assert elapsed < 8  # stopped at the limit (~2-4 s), not after the 10 s step


def test_the_default_step_limit_has_a_floor(monkeypatch):
    """With the factor lowered to 10, steps of ~15-50 ms put 10 x the median at 0.15-0.5 s; with the
    floor at 2 s the floor is the limit, and a step of 1 s (over 10 x the median, under the floor)
    is not stopped."""
    import harness.training as training

    monkeypatch.setattr(training._StepWatchdog, "MIN_SECONDS", 2.0)
    monkeypatch.setattr(training._StepWatchdog, "FACTOR", 10.0)
    calls = _slow_at(2, 1.0, 0.015, monkeypatch)
    result = harness.train(harness.seed_problem(batch=4), steps=2, lr=1e-3, progress=False)
    assert result.status == "finished" and len(calls) == 3


# ------------------------------------------------------------------- the compiled module's key
def test_every_kernel_file_is_in_the_cache_key_and_no_glue_file_is(tmp_path, monkeypatch):
    """An edit to any file the module is built from changes the key (so the module is rebuilt); an
    edit to any other file of the package does not (no rebuild for glue)."""
    from harness._compiled import _ahead_of_time

    original = _ahead_of_time.HERE
    copy = tmp_path / "package"
    copy.mkdir()
    for source in original.glob("*.py"):
        (copy / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(_ahead_of_time, "HERE", copy)
    key = _ahead_of_time.build_key()
    sources = {p.name for p in _ahead_of_time._key_sources()}
    # every file that imports numba is a kernel file, whatever its name
    numba_files = {p.name for p in copy.glob("*.py") if re.search(r"^(from|import) numba\b", p.read_text(), re.M)}
    assert numba_files and numba_files <= sources
    for path in sorted(copy.glob("*.py")):
        text = path.read_bytes()
        path.write_bytes(text + b"\n# an edit\n")
        changed = _ahead_of_time.build_key() != key
        path.write_bytes(text)
        assert changed is (path.name in sources), path.name
    assert _ahead_of_time.build_key() == key


# ------------------------------------------------------------------ the Dask executor's cancellation
@dataclass(frozen=True)
class _SleepyCell:
    """A stand-in cell: its key is its index; running it takes `seconds`."""

    index: int
    seconds: float

    def as_dict(self) -> dict:
        return {"index": self.index, "seconds": self.seconds}


def _sleep(cell) -> dict:
    time.sleep(cell.seconds)
    return {"index": cell.index}


def _scheduler_tasks(dask_scheduler=None) -> int:
    return len(dask_scheduler.tasks)


@pytest.mark.slow  # a local cluster's start and stop: ~10 s (slow tests run in CI too: no -m filter there)
def test_closing_the_dask_map_cancels_the_cells_not_yet_done():
    """A caller that stops reading (an interrupt) must leave no cell queued or running: the
    scheduler forgets every task at once, rather than running 20 s of cells nobody will read."""
    pytest.importorskip("distributed", reason='needs the dask extra (pip install -e ".[dask]")')
    import cloudpickle

    from harness.compare._dask import DaskExecutor

    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # the workers cannot import this test file
    try:
        with DaskExecutor(workers=1) as executor:
            cells = [_SleepyCell(0, 0.0)] + [_SleepyCell(i, 2.0) for i in range(1, 11)]
            stream = executor.map(_sleep, cells)
            first = next(stream)
            assert first["index"] == 0
            held = stream  # the caller keeps the generator: only the cancellation can free the cells
            held.close()
            deadline = time.monotonic() + 5.0
            while executor.client.run_on_scheduler(_scheduler_tasks) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert executor.client.run_on_scheduler(_scheduler_tasks) == 0
    finally:
        cloudpickle.unregister_pickle_by_value(module)
