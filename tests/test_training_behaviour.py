"""`harness.train` by its public behaviour, on a problem small enough for seconds: the Adam steps it
takes, what it logs and when, the cost it counts, resuming from a checkpoint to the same numbers,
a checkpoint of other settings ignored, divergence reported with the step and the reason, and its
inputs checked. (The long fault-injection runs are in test_faults.py; these are the fast ones that
pin each rule of the loop.)"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import harness
from harness.errors import HarnessInputError, TrainingDivergedError
from harness.sensitivity import gradient
from harness.training import Adam, history_json, train

SOLVE = {"solver": "DP5", "rtol": 1e-6, "atol": 1e-6}


@pytest.fixture(scope="module")
def problem():
    return harness.seed_problem(batch=3)


def _by_hand(problem, steps, lr, with_cost=False):
    """θ after `steps` Adam updates, each on the gradient at the current θ (TensorFlow's Adam), and
    the right-hand-side evaluations of the steps + 1 gradients (the last one only logged)."""
    theta, m, v, n_rhs = problem.theta.copy(), 0.0, 0.0, 0
    for t in range(1, steps + 1):
        result = gradient(problem, theta, **SOLVE)
        g, n_rhs = result.dtheta, n_rhs + result.n_rhs
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-7)
    n_rhs += gradient(problem, theta, **SOLVE).n_rhs
    return (theta, n_rhs) if with_cost else theta


def test_training_takes_the_adam_steps_and_logs_every_log_every(problem):
    logged = []
    result = train(problem, steps=5, lr=0.05, log_every=2, progress=False, on_log=logged.append, **SOLVE)
    # the same arithmetic in the same order: equal to rounding
    theta, n_rhs = _by_hand(problem, 5, 0.05, with_cost=True)
    np.testing.assert_allclose(result.theta, theta, rtol=1e-12, atol=1e-14)
    assert result.status == "finished" and result.failure is None and result.steps == 5
    assert [r["step"] for r in result.history] == [0, 2, 4, 5]  # every log_every, and the last
    assert logged == result.history
    # the log-likelihood logged at step 0 is the initial θ's
    assert result.history[0]["loglik_per_datapoint"] == gradient(problem, **SOLVE).loglik_per_datapoint
    assert result.final_loglik_per_datapoint == result.history[-1]["loglik_per_datapoint"]
    seconds = [r["seconds"] for r in result.history]
    assert seconds == sorted(seconds) and 0 < seconds[-1] <= result.seconds
    # steps + 1 gradient evaluations, each counted
    assert result.n_rhs == n_rhs
    assert result.resumed_from is None
    text = json.loads(history_json(result, note="x"))
    assert text["history"] == result.history and text["note"] == "x" and text["settings"]["steps"] == 5


def test_theta0_is_the_starting_point(problem):
    start = problem.theta + 0.01
    result = train(problem, steps=1, lr=0.05, theta0=start, progress=False, **SOLVE)
    g = gradient(problem, start, **SOLVE).dtheta
    expected = Adam(lr=0.05).step(start, g)
    np.testing.assert_allclose(result.theta, expected, rtol=1e-12, atol=1e-14)
    assert result.settings["theta0"] == start.tolist()


def test_zero_steps_evaluates_once_and_keeps_theta(problem):
    result = train(problem, steps=0, progress=False, **SOLVE)
    np.testing.assert_array_equal(result.theta, problem.theta)
    assert [r["step"] for r in result.history] == [0]


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_numbers(problem, tmp_path, monkeypatch):
    """Stop a run after step 3 (its checkpoint kept), resume it: same θ, history steps, cost."""
    import harness.training as training

    whole = train(problem, steps=6, lr=0.05, log_every=1, progress=False, **SOLVE)
    ckpt = tmp_path / "run.ckpt.npz"
    real, calls = training.gradient, []

    def failing_at_step_4(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 5:
            result.loss = float("nan")  # step 4 "diverges": the checkpoint holds steps 0-3
        return result

    monkeypatch.setattr(training, "gradient", failing_at_step_4)
    with pytest.raises(TrainingDivergedError) as err:
        train(problem, steps=6, lr=0.05, log_every=1, progress=False, checkpoint=ckpt, **SOLVE)
    assert err.value.result.failure == {"step": 4, "reason": "the loss is nan"}
    assert ckpt.exists()
    monkeypatch.setattr(training, "gradient", real)
    resumed = train(problem, steps=6, lr=0.05, log_every=1, progress=False, checkpoint=ckpt, **SOLVE)
    assert resumed.resumed_from == 4
    np.testing.assert_array_equal(resumed.theta, whole.theta)  # Adam's moments and step count restored
    assert [r["step"] for r in resumed.history] == [r["step"] for r in whole.history]
    assert [r["loglik_per_datapoint"] for r in resumed.history] == [r["loglik_per_datapoint"] for r in whole.history]
    assert resumed.n_rhs == whole.n_rhs
    assert resumed.history[3]["seconds"] <= resumed.history[4]["seconds"]  # time counts across the resume
    assert not ckpt.exists()  # finished: nothing left to resume


def test_a_checkpoint_of_other_settings_is_not_resumed(problem, tmp_path):
    ckpt = tmp_path / "run.ckpt.npz"
    train(problem, steps=2, lr=0.05, progress=False, checkpoint=ckpt, keep_checkpoint=True, **SOLVE)
    assert ckpt.exists()
    other = train(problem, steps=2, lr=0.02, progress=False, checkpoint=ckpt, **SOLVE)
    assert other.resumed_from is None
    np.testing.assert_allclose(other.theta, _by_hand(problem, 2, 0.02), rtol=1e-12, atol=1e-14)
    ckpt.write_bytes(b"not a checkpoint")  # unreadable: start afresh, never crash (and say so, or not)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        again = train(problem, steps=1, lr=0.02, progress=False, checkpoint=ckpt, **SOLVE)
    assert again.resumed_from is None


def test_a_gradient_that_is_not_finite_ends_training_with_its_reason(problem, monkeypatch):
    import harness.training as training

    real = training.gradient

    def bad(*args, **kwargs):
        result = real(*args, **kwargs)
        result.dtheta = result.dtheta.copy()
        result.dtheta[[0, 2]] = np.inf
        return result

    monkeypatch.setattr(training, "gradient", bad)
    with pytest.raises(TrainingDivergedError, match="diverged at step 0") as err:
        train(problem, steps=3, progress=False, **SOLVE)
    result = err.value.result
    assert result.failure == {"step": 0, "reason": "2 gradient entries are not finite"}
    assert result.status == "diverged" and result.history == []
    np.testing.assert_array_equal(result.theta, problem.theta)


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": -1}, "steps=-1"),
    ({"steps": 1.5}, "steps=1.5"),
    ({"lr": 0.0}, "lr=0.0"),
    ({"lr": float("nan")}, "lr=nan"),
    ({"lr": "0.1"}, "lr='0.1'"),
    ({"log_every": 0}, "log_every=0"),
    ({"step_timeout": 0}, "step_timeout=0"),
    ({"step_timeout": "1"}, "step_timeout='1'"),
])
def test_bad_training_settings_are_one_line_errors(problem, kwargs, message):
    with pytest.raises(HarnessInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        train(problem, progress=False, **kwargs)


def test_adam_matches_tensorflow_defaults_on_a_known_step():
    """First step: m̂ = g, v̂ = g², so θ moves by lr g / (|g| + ε) = lr sign(g) (up to ε)."""
    adam = Adam(lr=0.1)
    assert (adam.beta1, adam.beta2, adam.eps) == (0.9, 0.999, 1e-7)
    theta = adam.step(np.array([1.0, 2.0]), np.array([3.0, -4.0]))
    np.testing.assert_allclose(theta, [1.0 - 0.1 * 3 / (3 + 1e-7), 2.0 + 0.1 * 4 / (4 + 1e-7)], rtol=1e-15)
    assert adam.t == 1


def test_the_settings_record_what_the_run_used(problem):
    """The settings (returned, written to history.json, and hashed into the checkpoint's key) name
    every choice, defaults included."""
    result = train(problem, steps=0, progress=False)
    settings = dict(result.settings)
    assert len(settings.pop("data")) == 64 and settings.pop("theta0") == problem.theta.tolist()
    from harness.sensitivity import InterpolatingAdjoint

    assert settings == {"problem": "seed", "steps": 0, "lr": 1e-2, "engine": repr(InterpolatingAdjoint()),
                        "solver": "DP5", "rtol": 1e-6, "atol": 1e-4, "log_every": 50}


def test_the_engine_and_solver_chosen_are_the_ones_used(problem):
    from harness.sensitivity import QuadratureAdjoint

    result = train(problem, steps=1, lr=0.05, engine=QuadratureAdjoint(), solver="BS3", rtol=1e-5, atol=1e-5,
                   progress=False)
    g = gradient(problem, engine=QuadratureAdjoint(), solver="BS3", rtol=1e-5, atol=1e-5).dtheta
    np.testing.assert_allclose(result.theta, Adam(lr=0.05).step(problem.theta, g), rtol=1e-12, atol=1e-14)
    assert result.settings["engine"] == repr(QuadratureAdjoint()) and result.settings["solver"] == "BS3"


def test_seconds_are_the_wall_time_of_the_run(problem):
    import time

    started = time.perf_counter()
    result = train(problem, steps=2, progress=False)
    wall = time.perf_counter() - started
    assert 0 < result.seconds <= wall and all(0 < r["seconds"] <= wall for r in result.history)


def test_resuming_after_the_first_step_restores_adams_moments(problem, tmp_path, monkeypatch):
    """A checkpoint after one step (Adam's t = 1) resumes with its moments, to the same θ."""
    import harness.training as training

    whole = train(problem, steps=3, lr=0.05, progress=False, **SOLVE)
    ckpt = tmp_path / "one.npz"
    real, calls = training.gradient, []

    def failing_at_step_2(*args, **kwargs):
        calls.append(1)
        result = real(*args, **kwargs)
        if len(calls) == 3:
            result.loss = float("inf")
        return result

    monkeypatch.setattr(training, "gradient", failing_at_step_2)
    with pytest.raises(TrainingDivergedError, match="the loss is inf"):
        train(problem, steps=3, lr=0.05, progress=False, checkpoint=ckpt, **SOLVE)
    monkeypatch.setattr(training, "gradient", real)
    resumed = train(problem, steps=3, lr=0.05, progress=False, checkpoint=ckpt, **SOLVE)
    assert resumed.resumed_from == 2
    np.testing.assert_array_equal(resumed.theta, whole.theta)


def test_a_checkpoint_before_any_update_resumes(problem, tmp_path):
    """steps = 0 with keep_checkpoint: Adam has taken no step (no moments yet); the checkpoint is
    still a readable one, and a run of the same settings resumes from it."""
    ckpt = tmp_path / "zero.npz"
    first = train(problem, steps=0, progress=False, checkpoint=ckpt, keep_checkpoint=True)
    assert ckpt.exists()
    again = train(problem, steps=0, progress=False, checkpoint=ckpt)
    assert again.resumed_from == 1 and again.history == first.history


def test_an_explicit_step_timeout_is_the_limit_and_inf_turns_it_off(problem, monkeypatch):
    import math
    import time

    import harness.training as training

    real, calls = training.gradient, []

    def slow_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "gradient", slow_third)
    with pytest.raises(TrainingDivergedError, match=r"the step took more than its limit of 0.5 s") as err:
        train(problem, steps=3, progress=False, step_timeout=0.5, **SOLVE)
    assert err.value.result.failure["step"] == 2
    # the default limit (here lowered to 0.2 s) is turned off by inf: the slow step is waited for
    monkeypatch.setattr(training._StepWatchdog, "MIN_SECONDS", 0.2)
    monkeypatch.setattr(training._StepWatchdog, "FACTOR", 1.0)
    calls.clear()
    result = train(problem, steps=3, progress=False, step_timeout=math.inf, **SOLVE)
    assert result.status == "finished" and len(calls) == 4
