"""`harness.train`'s checkpoints when they are not what this run wrote: each defect a damaged or
hand-edited file can carry is set aside with its own one-line reason (and training starts afresh to
the same numbers as a run without a checkpoint), the size allowance is θ, m and v plus the history's,
and the defaults of a run (1000 steps, a checkpoint every 50, a RuntimeWarning naming the caller)
hold. Forged files are rewritten with their digest recomputed where the defect must get past it."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import harness
import harness.training as training
from harness.errors import SolverError, TrainingDivergedError
from harness.training import train

SOLVE = {"solver": "DP5", "rtol": 1e-6, "atol": 1e-6}
RUN = {"steps": 5, "lr": 0.05, "log_every": 2, "progress": False, **SOLVE}


@pytest.fixture(scope="module")
def problem():
    return harness.seed_problem(batch=3)


@pytest.fixture(scope="module")
def straight(problem):
    return train(problem, **RUN)


@pytest.fixture
def written(problem, tmp_path):
    """A finished run's checkpoint (step 6, 5 Adam updates), kept."""
    path = tmp_path / "run.npz"
    train(problem, checkpoint=path, keep_checkpoint=True, **RUN)
    return path


def forge(path, recompute=True, **changes):
    """Rewrite the checkpoint with `changes` (None removes a member), its digest recomputed unless
    `recompute` is false (or a member it covers was removed)."""
    with np.load(path) as saved:
        data = dict(saved)
    data.update(changes)
    for name in [k for k, v in changes.items() if v is None]:
        del data[name]
    if recompute and all(k in data for k in training.CHECKPOINT_KEYS):
        data["digest"] = np.array(training._digest({k: data[k] for k in training.CHECKPOINT_KEYS}))
    np.savez(path, **data)


def resume(problem, path, straight):
    notices = []
    result = train(problem, checkpoint=path, on_notice=notices.append, **RUN)
    assert result.resumed_from is None and np.array_equal(result.theta, straight.theta)
    (notice,) = notices
    assert notice.startswith(f"{path} is not a sound checkpoint of this run (")
    assert notice.endswith("): training starts afresh")
    return notice[len(f"{path} is not a sound checkpoint of this run (") : -len("): training starts afresh")]


def test_a_sound_checkpoint_resumes(problem, written, straight):
    result = train(problem, checkpoint=written, **RUN)
    assert result.resumed_from == 6 and np.array_equal(result.theta, straight.theta)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"step": np.array(7)}, "its contents do not match the digest written with them (damaged or edited)"),
        # the same number stored as another integer type: only the digest (which covers dtypes) tells
        ({"step": np.array(6, dtype=np.uint64)}, "its contents do not match the digest written with them"),
        ({"digest": np.array(b"0" * 64)}, "its contents do not match the digest written with them"),
    ],
)
def test_an_edit_that_leaves_the_digest_is_refused(problem, written, straight, changes, reason):
    forge(written, recompute=False, **changes)
    assert resume(problem, written, straight).startswith(reason)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"n_rhs": None}, "it has no 'n_rhs'"),
        ({"theta": np.zeros(3)}, "theta has shape (3,), expected (17,)"),
        ({"seconds": np.zeros(2)}, "seconds has shape (2,), expected ()"),
        ({"step": np.array(6.0)}, "step is float64"),
        ({"adam_t": np.array(5.0)}, "adam_t is float64"),
        ({"n_rhs": np.array(5.0)}, "n_rhs is float64"),
        ({"seconds": np.array(5)}, "seconds is int64"),
        ({"theta": np.zeros(17, dtype=np.int64)}, "theta is int64"),
        ({"m": np.zeros(17, dtype=np.int64)}, "m is int64"),
        ({"v": np.zeros(17, dtype=np.int64)}, "v is int64"),
        ({"step": np.array(7)}, "step 7 with 5 Adam updates is not a state of a 5-step run"),  # steps + 2
        ({"step": np.array(-1)}, "step -1 with 5 Adam updates is not a state of a 5-step run"),
        (
            {"step": np.array(0), "adam_t": np.array(0), "history": np.array("[]")},
            None,
        ),  # step 0 before any update is a state of every run: resumed, not refused
        ({"adam_t": np.array(4)}, "step 6 with 4 Adam updates is not a state of a 5-step run"),
        ({"theta": np.full(17, np.inf)}, "its parameters or Adam's moments are not finite"),
        ({"seconds": np.array(np.nan)}, "its parameters or Adam's moments are not finite"),
        ({"v": -np.ones(17)}, "its parameters or Adam's moments are not finite"),
        (
            {"history": np.array("{")},
            "its history is not a list of records (Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1))",
        ),
        (
            {"history": np.array('[{"step": 2}, {"step": 0}]')},
            "its history logs steps [2, 0]... that step 6 cannot have",
        ),
        (
            {"history": np.array('[{"step": 0}, {"step": 2}, {"step": 4}, {"step": 6}]')},
            "its history logs steps [0, 2, 4]... that step 6 cannot have",
        ),
    ],
)
def test_a_forged_checkpoint_is_refused_with_its_defect(problem, written, straight, changes, reason):
    forge(written, **changes)
    if reason is None:
        assert train(problem, checkpoint=written, **RUN).resumed_from == 0
        return
    assert resume(problem, written, straight) == reason


def test_a_history_may_log_only_steps_before_the_next(problem, written):
    # step 6 is next: a history through step 5 is a state of the run (the finished one's)
    forge(written, history=np.array(json.dumps([{"step": 0}, {"step": 5}])))
    assert train(problem, checkpoint=written, keep_checkpoint=True, **RUN).resumed_from == 6
    # a checkpoint at step 1 may have logged step 0 and nothing after
    forge(written, step=np.array(1), adam_t=np.array(1), history=np.array('[{"step": 0}]'))
    assert train(problem, checkpoint=written, keep_checkpoint=True, **RUN).resumed_from == 1
    forge(written, step=np.array(1), adam_t=np.array(1), history=np.array('[{"step": 1}]'))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert train(problem, checkpoint=written, **RUN).resumed_from is None


def test_the_size_allowance_is_three_parameter_vectors_plus_the_history(problem, written, straight, monkeypatch):
    """read before decompressing: the arrays' declared bytes against 3 x 8 x P + MAX_HISTORY_BYTES."""
    with np.load(written) as data:
        declared = sum(data[k].nbytes for k in data.files)
    vectors = 3 * 8 * problem.theta.size
    monkeypatch.setattr(training, "MAX_HISTORY_BYTES", declared - vectors + 20)
    assert train(problem, checkpoint=written, keep_checkpoint=True, **RUN).resumed_from == 6
    monkeypatch.setattr(training, "MAX_HISTORY_BYTES", declared - vectors - 20)
    reason = resume(problem, written, straight)
    assert (
        reason.startswith("declares ")
        and "of arrays, above the" in reason
        and reason.endswith("it may take here; not decompressed")
    )


def test_a_damaged_checkpoint_warns_from_the_callers_line_by_default(problem, written, straight):
    written.write_bytes(b"\0" * 100)
    with pytest.warns(RuntimeWarning, match="is not a sound checkpoint of this run") as caught:
        result = train(problem, checkpoint=written, **RUN)
    assert np.array_equal(result.theta, straight.theta)
    (warning,) = caught
    # stacklevel: the warning points at train's caller, not at train's own line
    assert warning.filename != training.__file__


def test_resuming_after_exactly_one_update_restores_adams_moments(problem, tmp_path, monkeypatch, straight):
    real, calls = training.gradient, []

    def failing_at_step_1(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 2:
            result.loss = float("nan")
        return result

    path = tmp_path / "one.npz"
    monkeypatch.setattr(training, "gradient", failing_at_step_1)
    with pytest.raises(TrainingDivergedError):
        train(problem, checkpoint=path, **RUN)
    monkeypatch.setattr(training, "gradient", real)
    with np.load(path) as saved:
        assert int(saved["adam_t"]) == 1
    resumed = train(problem, checkpoint=path, **RUN)
    assert resumed.resumed_from == 1 and np.array_equal(resumed.theta, straight.theta)


def test_a_solver_failure_at_step_0_is_raised_and_later_it_is_divergence(problem, monkeypatch):
    real, calls = training.gradient, []

    def failing_at(n):
        def gradient(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise SolverError("DP5", 3.0, 10.0, "step size underflow")
            return real(*args, **kwargs)

        return gradient

    monkeypatch.setattr(training, "gradient", failing_at(1))
    with pytest.raises(SolverError, match="DP5 failed at t = 3"):
        train(problem, **RUN)
    calls.clear()
    monkeypatch.setattr(training, "gradient", failing_at(2))
    with pytest.raises(TrainingDivergedError) as err:
        train(problem, **RUN)
    assert err.value.result.failure == {
        "step": 1,
        "reason": "the solver failed (DP5 failed at t = 3 (target t = 10): step size underflow)",
    }


def test_a_finished_run_that_never_wrote_its_checkpoint_leaves_none(problem, tmp_path):
    path = tmp_path / "never.npz"
    train(problem, checkpoint=path, checkpoint_every=50, **RUN)  # 5 steps: no checkpoint was due
    assert not path.exists()


def test_the_defaults_are_1000_steps_and_a_checkpoint_every_50(problem, tmp_path, monkeypatch):
    """With a stand-in gradient (constant, instant) so that a default-length run takes no time."""
    real = training.gradient(problem, **SOLVE)
    saves = []
    monkeypatch.setattr(training, "gradient", lambda *args, **kwargs: real)
    monkeypatch.setattr(training, "_save_checkpoint", lambda path, key, state, seconds: saves.append(state.next_step))
    result = train(problem, progress=False, checkpoint=tmp_path / "default.npz")
    assert result.steps == 1000 and [r["step"] for r in result.history] == list(range(0, 1001, 50))
    assert saves == list(range(50, 1001, 50))  # every 50 steps while steps remain (none after the last)
