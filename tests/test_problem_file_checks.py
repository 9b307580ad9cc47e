"""Problem files' solvability checks and model keys (harness/problems/_file.py), at their edges:
observation times exactly 100 float spacings apart (accepted) and fewer (refused, naming t0 or the
times), a decay whose growth over the span is exactly the float64 limit (accepted) or beyond it,
with t0 away from 0 and several times, the overflow check's scale taken from z0, the data and at
least 1, each refusal's full message; a named model's parameters surviving the round trip and the
keys that contradict a named model; and the catalogue's memory refusal with its numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.model import MLP
from harness.models import LotkaVolterra
from harness.problems import Problem, load_problem, save_problem
from harness.problems import _catalogue as catalogue
from harness.problems._file import LARGEST_SQUARABLE

L = LARGEST_SQUARABLE  # ~1.34e154


def problem(decay=None, t0=0.0, times=(1.0,), z0=0.5, data=0.5):
    model = MLP((2, 3, 2), decay=None if decay is None else np.array(decay, dtype=float))
    times = np.array(times, dtype=float)
    return Problem(model, np.zeros(model.n_params), np.full((2, 2), z0), t0, times,
                   np.full((times.size, 2, 2), data), "edge")


def reload(p, tmp_path):
    path = save_problem(p, tmp_path / "p.npz")
    return load_problem(path), f"problem file {str(path)!r}: "


def refusal(p, tmp_path):
    path = save_problem(p, tmp_path / "p.npz")
    with pytest.raises(HarnessInputError) as err:
        load_problem(path)
    prefix = f"problem file {str(path)!r}: "
    assert str(err.value).startswith(prefix)
    return str(err.value)[len(prefix):]


def test_times_exactly_100_spacings_apart_are_accepted_and_closer_ones_refused(tmp_path):
    eps = np.spacing(1.0)
    reload(problem(t0=1.0, times=(1.0 + 100 * eps,)), tmp_path)
    assert refusal(problem(t0=1.0, times=(1.0 + 99 * eps,)), tmp_path) == (
        "t0 = 1.0 and times[0] = 1.000000000000022 are 99 float spacings apart: expected at least 100 (merge "
        "them into one observation, or rescale time)")
    assert refusal(problem(times=(1.0, 1.0 + 3 * eps)), tmp_path).startswith(
        "times[0] = 1.0 and times[1] = 1.0000000000000007 are 3 float spacings apart")


def test_the_growth_limit_is_exact_and_counts_the_whole_span(tmp_path):
    limit = math.log(L)  # ~354.9
    reload(problem(decay=[-limit, 0.0]), tmp_path)  # e^limit over a span of 1: exactly the limit
    assert refusal(problem(decay=[-400.0, 0.0]), tmp_path) == (
        "decay -400 makes the state grow like e^(400 t), by e^400 over the span 1: beyond float64 (the loss "
        "would overflow); expected min(decay) x span >= -355")
    # the span runs from t0 (not from 0) to the last time (not the first)
    reload(problem(decay=[-300.0, 0.0], t0=100.0, times=(101.0,)), tmp_path)
    assert refusal(problem(decay=[-200.0, 0.0], times=(1.0, 2.0)), tmp_path).startswith(
        "decay -200 makes the state grow like e^(200 t), by e^400 over the span 2")


@pytest.mark.parametrize("decay, z0, data, refused", [
    (L, 0.5, 0.5, False),          # exactly the limit with states below 1: the scale is at least 1
    (2e154, 0.5, 0.5, True),       # beyond it, even though the states are smaller than 1
    (1e154, 0.5, 0.5, False),
    (1e152, 1e3, 0.5, True),       # the initial states count
    (1e152, 0.5, 1e3, True),       # and the data
])
def test_the_overflow_check_scales_the_decay_by_the_largest_state(tmp_path, decay, z0, data, refused):
    p = problem(decay=[decay, 0.0], z0=z0, data=data)
    if not refused:
        reload(p, tmp_path)
        return
    scale = max(1.0, z0, data)
    assert refusal(p, tmp_path) == (
        f"decay {decay:g} times states of size {scale:g} gives derivatives of {decay * scale:.3g}, whose squares "
        f"overflow float64: expected |decay| x max|z| <= {L:.2g} (rescale the problem)")


def test_a_named_model_keeps_its_parameters_through_a_file(tmp_path):
    model = LotkaVolterra(init_theta=(0.5, 2.5, 0.8, 2.5))
    p = Problem(model, np.array([0.5, 2.5, 0.8, 2.5]), np.ones((1, 2)), 0.0, np.array([1.0]), np.ones((1, 1, 2)), "lv")
    loaded, _ = reload(p, tmp_path)
    assert type(loaded.model) is LotkaVolterra and loaded.model.spec() == model.spec()
    assert loaded.model.spec()[1] != LotkaVolterra().spec()[1]  # the parameters are not the defaults


@pytest.mark.parametrize("extra, message", [
    ({"model_parameters": np.array("{}")}, "has model_parameters but no model: expected a 'module:callable' in model"),
    ({"model": np.array("harness.models:LotkaVolterra")},
     "names a model and also has the MLP's keys ['widths', 'activation']: expected one of the two"),
    ({"name": np.array(3.0)}, ": name is float64: expected a string"),
])
def test_keys_that_contradict_each_other_are_refused(tmp_path, extra, message):
    path = save_problem(problem(), tmp_path / "p.npz")
    with np.load(path) as saved:
        arrays = {**dict(saved), **extra}
    np.savez(path, **arrays)
    with pytest.raises(HarnessInputError) as err:
        load_problem(path)
    assert str(err.value) == f"problem file {str(path)!r}" + ("" if message.startswith(":") else " ") + message


def test_the_catalogue_refuses_a_batch_beyond_the_memory_with_its_numbers(monkeypatch):
    import psutil

    needed = 8 * 1000 * 2 * (catalogue.ARRAYS_PER_STATE + 1)  # z0, data, solver stages: 21 arrays of 1000 x 2
    available = {"bytes": needed - 1}
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": available["bytes"]})())
    with pytest.raises(HarnessInputError) as err:
        catalogue.seed_problem(batch=1000)
    assert str(err.value) == (
        f"batch=1000: needs at least {needed / 2**30:.3g} GiB of memory (21 float64 arrays of 1000 x 2), and "
        f"{(needed - 1) / 2**30:.3g} GiB are available: expected a smaller batch")
    available["bytes"] = needed  # exactly enough
    assert catalogue.seed_problem(batch=1000).batch_size == 1000
    available["bytes"] = 8 * 1000 * 2 * (catalogue.ARRAYS_PER_STATE + 4) - 1  # four times need four arrays more
    with pytest.raises(HarnessInputError, match="24 float64 arrays of 1000 x 2"):
        catalogue.multi_time_problem(batch=1000)
