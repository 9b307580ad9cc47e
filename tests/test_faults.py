"""Faults: interrupts, kills, divergence, a full disk, a read-only folder, a closed pipe, a dead worker.

The end-to-end faults are those of `benchmarks/inject_faults.py --quick` (a 50-state problem, 150
steps), one test each; every one is injected at a point found by a handshake (a stdout line, a file
appearing), so the tests do not depend on the machine's speed. The unit tests below check the
pieces in-process: the strict JSON writer, the file modes, the fault hook, the step watchdog, an
interrupt inside a gradient, and the option checks.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import random
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

import harness
from harness import _io
from harness.cli import main
from harness.errors import HarnessInputError, TrainingDivergedError

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("inject_faults", ROOT / "benchmarks" / "inject_faults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


inject_faults = _load_script()


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    return inject_faults.Faults(tmp_path_factory.mktemp("faults"), quick=True, rng=random.Random(0))





@pytest.mark.slow
@pytest.mark.parametrize("name", inject_faults.QUICK)
def test_fault_is_survived(faults, name):
    if name == "dask_worker_killed":
        pytest.importorskip("distributed", reason='needs the dask extra (pip install -e ".[dask]")')
    outcome = faults.run(name, faults.scenario(name))
    assert outcome.survived, f"{outcome.name}: exit {outcome.exit_status}, {outcome.message!r}: {outcome.problems}"


# -- strict JSON, file modes, the write-fault hook ----------------------------------------------


def _strict_loads(text):
    def refuse(constant):
        raise ValueError(constant)

    return json.loads(text, parse_constant=refuse)


def test_json_is_strict_with_the_reason_beside_a_null():
    text = _io.to_json({"a": float("nan"), "b": [1.0, -np.inf], "c": np.float64(np.inf), "d": np.arange(2)})
    data = _strict_loads(text)
    assert data["a"] is None and data["b"] == [1.0, None] and data["c"] is None and data["d"] == [0, 1]
    assert data["non_finite"] == {"a": "NaN", "b[1]": "-Infinity", "c": "Infinity"}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        _io.write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    (tmp_path / "report.md").write_text("old")
    monkeypatch.setenv(_io.FAULT_ENV, "ENOSPC:report.md")
    with pytest.raises(OSError) as err:
        _io.write_text(tmp_path / "report.md", "new")
    assert err.value.errno == errno.ENOSPC
    assert (tmp_path / "report.md").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_an_empty_output_path_is_refused():
    with pytest.raises(HarnessInputError, match="folder name"):
        _io.ensure_writable_dir("")


# -- training: interrupts inside a step, divergence ---------------------------------------------


def test_an_interrupt_inside_a_gradient_saves_the_last_completed_step(tmp_path, monkeypatch):
    """Ctrl-C raised inside step 7's gradient (as it is inside a solve): 7 steps are saved, and the
    resumed run ends bit for bit where an uninterrupted one ends."""
    from harness import training

    problem = harness.seed_problem(batch=20)
    uninterrupted = harness.train(problem, steps=12, log_every=3, progress=False)
    ckpt = tmp_path / "ck.npz"
    real_gradient, calls = training.gradient, []

    def interrupted_gradient(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return real_gradient(*args, **kwargs)

    monkeypatch.setattr(training, "gradient", interrupted_gradient)
    with pytest.raises(KeyboardInterrupt):
        harness.train(problem, steps=12, log_every=3, progress=False, checkpoint=ckpt)
    monkeypatch.setattr(training, "gradient", real_gradient)
    resumed = harness.train(problem, steps=12, log_every=3, progress=False, checkpoint=ckpt)
    assert resumed.resumed_from == 7
    assert np.array_equal(resumed.theta, uninterrupted.theta)
    assert [r["loglik_per_datapoint"] for r in resumed.history] == \
        [r["loglik_per_datapoint"] for r in uninterrupted.history]
    assert not ckpt.exists()


def test_a_non_finite_gradient_stops_training_and_keeps_the_last_good_step(tmp_path, monkeypatch):
    from harness import training

    problem = harness.seed_problem(batch=20)
    real_gradient, calls = training.gradient, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        result = real_gradient(*args, **kwargs)
        if len(calls) == 5:
            result.dtheta = result.dtheta.copy()
            result.dtheta[3] = np.nan
        return result

    monkeypatch.setattr(training, "gradient", poisoned)
    ckpt = tmp_path / "ck.npz"
    with pytest.raises(TrainingDivergedError, match="diverged at step 4") as err:
        harness.train(problem, steps=10, log_every=1, progress=False, checkpoint=ckpt)
    result = err.value.result
    assert result.status == "diverged" and result.failure["step"] == 4
    assert "gradient" in result.failure["reason"]
    assert [r["step"] for r in result.history] == [0, 1, 2, 3]
    assert np.all(np.isfinite(result.theta)) and ckpt.exists()


def test_a_runaway_step_is_stopped_by_the_step_limit(monkeypatch):
    """A step that does not end (here its gradient blocks for a minute) is ended by the step limit:
    the first steps take milliseconds, so the limit is the floor `step_timeout` = 1 s, and training
    stops with status "diverged" at that step, keeping the steps before it."""
    import time

    import harness.training as training

    real_gradient, calls = training.gradient, []

    def blocking_gradient(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            time.sleep(60)  # interrupted by the limit's SIGALRM long before it ends
        return real_gradient(*args, **kwargs)

    monkeypatch.setattr(training, "gradient", blocking_gradient)
    problem = harness.seed_problem(batch=20)
    with pytest.raises(TrainingDivergedError) as err:
        harness.train(problem, steps=20, lr=1e-2, progress=False, step_timeout=1.0)
    result = err.value.result
    assert result.status == "diverged" and result.failure["step"] == 3
    assert "limit" in result.failure["reason"] or "took more than" in result.failure["reason"]
    assert np.all(np.isfinite(result.theta))


def test_a_diverging_learning_rate_ends_training_by_itself():
    """lr 1e6 throws θ where the solver would need millions of steps: the solver's fail-fast budget
    or the step limit ends the first step that runs away (which one depends on the machine's speed),
    and training reports the step, keeping finite parameters."""
    problem = harness.seed_problem(batch=20)
    with pytest.raises(TrainingDivergedError) as err:
        harness.train(problem, steps=20, lr=1e6, progress=False, step_timeout=2.0)
    result = err.value.result
    assert result.status == "diverged" and result.failure["step"] >= 1
    assert np.all(np.isfinite(result.theta))


def test_reproduce_reports_divergence_with_a_strict_json_status(tmp_path, capsys):
    problem = harness.seed_problem(batch=20)
    huge = harness.Problem(problem.model, problem.theta, problem.z0 * 1e200, problem.t0, problem.times,
                           problem.data * 1e200, "huge")
    harness.save_problem(huge, tmp_path / "huge.npz")
    code = main(["reproduce", "--problem-file", str(tmp_path / "huge.npz"), "--steps", "3",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "diverged at step 0" in err and "the loss is inf" in err and len(err.splitlines()) == 1
    data = _strict_loads((tmp_path / "out" / "history.json").read_text())
    assert data["status"] == "diverged" and data["final_loglik_per_datapoint"] is None


# -- reports for problem files -----------------------------------------------------------------


def test_a_problem_file_report_describes_that_problem(tmp_path, capsys):
    harness.save_problem(harness.multi_time_problem(batch=10), tmp_path / "mt.npz")
    code = main(["reproduce", "--problem-file", str(tmp_path / "mt.npz"), "--steps", "2",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "Drew" not in out and "tutorial" not in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "the tutorial, reproduced" not in report and "tutorial |" not in report
    assert "`multi_time`" in report or "multi" in report.splitlines()[0]
    assert "t = 2.5, 5, 7.5, 10" in report


def test_a_batch_too_large_for_the_memory_is_refused_before_allocating():
    with pytest.raises(HarnessInputError, match="GiB"):
        harness.seed_problem(batch=10**11)


# -- options: one message style ----------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["gradcheck", "--tol", "10"], "--tol: '10': expected a number in"),
    (["bench", "--repeats", "0"], "--repeats: '0': expected an integer >= 1"),
    (["gradcheck", "--batch", "0"], "--batch: '0': expected an integer >= 1"),
    (["gradcheck", "--batch=-3"], "--batch: '-3': expected an integer >= 1"),
    (["reproduce", "--out", ""], "--out: '': expected a folder name"),
])
def test_options_without_meaning_are_refused_in_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and expected in err and len(err.splitlines()) == 1


def test_gradcheck_batch_with_a_problem_file_is_refused(tmp_path, capsys):
    harness.save_problem(harness.seed_problem(batch=5), tmp_path / "p.npz")
    assert main(["gradcheck", "--problem-file", str(tmp_path / "p.npz"), "--batch", "10"]) == 2
    err = capsys.readouterr().err
    assert "--batch cannot be combined with --problem-file" in err and len(err.splitlines()) == 1
