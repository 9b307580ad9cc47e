"""`harness.train`: what it shows and how it writes, on a problem small enough for seconds.

The progress bar a terminal user watches (its total, where a resumed run starts it, one tick per
step, the log-likelihood beside it, closed at the end), Ctrl-C and SIGTERM held off while a
checkpoint is written (so that a half-written file never replaces a good one), the checkpoints
written every `checkpoint_every` steps and their contents, and the default of `progress`.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

import harness
import harness.training as training
from harness.errors import TrainingDivergedError
from harness.training import train

SOLVE = {"solver": "DP5", "rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(scope="module")
def problem():
    return harness.seed_problem(batch=3)


class RecordingBar:
    """Stands in for harness._progress.Progress and records what the loop asks it to show."""

    made: list = []

    def __init__(self, total, *, initial=0, enabled=None, desc=""):
        self.args = {"total": total, "initial": initial, "enabled": enabled, "desc": desc}
        self.updates, self.postfixes, self.closed = [], [], False
        RecordingBar.made.append(self)

    def update(self, n=1):
        self.updates.append(n)

    def set_postfix(self, **values):
        self.postfixes.append(values)

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(training, "Progress", RecordingBar)
    return RecordingBar.made


def test_the_progress_bar_counts_every_gradient_and_shows_the_loglik(problem, bars):
    result = train(problem, steps=4, lr=0.05, log_every=2, progress=True, **SOLVE)
    (bar,) = bars
    assert bar.args == {"total": 5, "initial": 0, "enabled": True, "desc": "training"}
    assert bar.updates == [1] * 5 and bar.closed
    assert bar.postfixes == [{"loglik": f"{r['loglik_per_datapoint']:.3f}"} for r in result.history]
    train(problem, steps=1, progress=None, **SOLVE)  # the default: the bar decides from the terminal
    assert bars[-1].args["enabled"] is None


def test_a_resumed_run_starts_its_bar_at_the_step_it_resumes_from(problem, bars, tmp_path, monkeypatch):
    ckpt = tmp_path / "run.npz"
    real, calls = training.gradient, []

    def failing_at_step_3(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 4:
            result.loss = float("nan")
        return result

    monkeypatch.setattr(training, "gradient", failing_at_step_3)
    with pytest.raises(TrainingDivergedError):
        train(problem, steps=5, lr=0.05, progress=False, checkpoint=ckpt, **SOLVE)
    assert bars[-1].closed and bars[-1].updates == [1, 1, 1]  # closed even when training stops early
    monkeypatch.setattr(training, "gradient", real)
    resumed = train(problem, steps=5, lr=0.05, progress=False, checkpoint=ckpt, **SOLVE)
    assert resumed.resumed_from == 3
    assert bars[-1].args["initial"] == 3 and bars[-1].updates == [1, 1, 1]


def test_signals_are_held_while_a_checkpoint_is_written(problem, tmp_path, monkeypatch):
    """A Ctrl-C (SIGINT) or SIGTERM arriving mid-write is delivered after the file is complete."""
    held, real_savez = [], np.savez

    def savez(handle, **arrays):
        held.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return real_savez(handle, **arrays)

    monkeypatch.setattr(training.np, "savez", savez)
    train(problem, steps=2, progress=False, checkpoint=tmp_path / "c.npz", keep_checkpoint=True, **SOLVE)
    assert held and all({signal.SIGINT, signal.SIGTERM} <= blocked for blocked in held)
    # and released afterwards
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_checkpoints_are_written_every_checkpoint_every_steps_with_the_state_of_that_step(problem, tmp_path,
                                                                                         monkeypatch):
    written = []
    real_save = training._save_checkpoint

    def save(path, key, state, seconds):
        written.append((state.next_step, state.adam.t, [r["step"] for r in state.history], state.theta.copy()))
        return real_save(path, key, state, seconds)

    monkeypatch.setattr(training, "_save_checkpoint", save)
    ckpt = tmp_path / "every.npz"
    result = train(problem, steps=5, lr=0.05, log_every=1, checkpoint=ckpt, checkpoint_every=2, progress=False,
                   keep_checkpoint=True, **SOLVE)
    # after steps 0-1 and 0-3 (next step 2 and 4), and the finished run's (next step 6, 5 updates)
    assert [(n, t, logged) for n, t, logged, _ in written] == [
        (2, 2, [0, 1]), (4, 4, [0, 1, 2, 3]), (6, 5, [0, 1, 2, 3, 4, 5])]
    np.testing.assert_array_equal(written[-1][3], result.theta)
    with np.load(ckpt) as saved:
        assert int(saved["step"]) == 6 and int(saved["adam_t"]) == 5 and int(saved["n_rhs"]) == result.n_rhs
        np.testing.assert_array_equal(saved["theta"], result.theta)
    # without keep_checkpoint the finished run removes it; a run without a checkpoint path writes none
    written.clear()
    train(problem, steps=3, lr=0.05, checkpoint=ckpt, checkpoint_every=2, progress=False, **SOLVE)
    assert not ckpt.exists()
    written.clear()
    train(problem, steps=3, lr=0.05, checkpoint_every=1, progress=False, **SOLVE)
    assert written == []


def test_a_keyboard_interrupt_saves_the_last_completed_step(problem, tmp_path, monkeypatch):
    real, calls = training.gradient, []

    def interrupted_at_step_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "gradient", interrupted_at_step_2)
    ckpt = tmp_path / "ctrl_c.npz"
    with pytest.raises(KeyboardInterrupt):
        train(problem, steps=5, lr=0.05, log_every=1, checkpoint=ckpt, progress=False, **SOLVE)
    with np.load(ckpt) as saved:
        assert int(saved["step"]) == 2 and int(saved["adam_t"]) == 2
    monkeypatch.setattr(training, "gradient", real)
    whole = train(problem, steps=5, lr=0.05, log_every=1, progress=False, **SOLVE)
    resumed = train(problem, steps=5, lr=0.05, log_every=1, checkpoint=ckpt, progress=False, **SOLVE)
    assert resumed.resumed_from == 2
    np.testing.assert_array_equal(resumed.theta, whole.theta)


def test_resuming_a_finished_run_shows_a_full_bar(problem, bars, tmp_path):
    ckpt = tmp_path / "done.npz"
    train(problem, steps=3, progress=False, checkpoint=ckpt, keep_checkpoint=True, **SOLVE)
    again = train(problem, steps=3, progress=False, checkpoint=ckpt, **SOLVE)
    assert again.resumed_from == 4
    assert bars[-1].args["total"] == 4 and bars[-1].args["initial"] == 4 and bars[-1].updates == []


def test_the_default_step_limit_is_taken_over_the_first_twenty_steps():
    """100 x the median of the first 20 step times (later steps, slower or not, do not move it)."""
    watchdog = training._StepWatchdog(None)
    assert watchdog.limit() is None  # nothing to compare the first step with
    watchdog.times = [0.5] * 10 + [1.5] * 10  # median 1.0 s: the limit is 100 s
    assert watchdog.limit() == 100.0
    watchdog.times += [1.5] * 30  # the median of all would be 1.5 s
    assert watchdog.limit() == 100.0
    assert training._StepWatchdog(2.5).limit() == 2.5
