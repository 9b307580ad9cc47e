"""Training: Adam on dL/dθ from any gradient engine, with logging, progress and resumable checkpoints.

The loop follows the tutorial: at every step the gradient is computed; every `log_every` steps
(and at the last) the log-likelihood per datapoint *before* that step's update is logged; steps
0..steps make steps + 1 gradient evaluations and `steps` updates.

A checkpoint holds θ, Adam's moments and the history, exactly (float64 in .npz), so that a run
stopped with Ctrl-C and started again ends bit for bit where an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import HarnessInputError
from ._io import atomic_path, to_json
from ._progress import Progress
from .sensitivity import gradient, resolve_engine


@dataclass
class Adam:
    """Adam with TensorFlow's defaults (the tutorial's optimiser): β1 0.9, β2 0.999, ε 1e-7."""

    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-7
    m: np.ndarray | None = None
    v: np.ndarray | None = None
    t: int = 0

    def step(self, theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """One update; returns the new θ (shape (P,))."""
        if self.m is None:
            self.m, self.v = np.zeros_like(theta), np.zeros_like(theta)
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return theta - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


@dataclass
class TrainingResult:
    """The outcome of `train`.

    theta : ndarray, shape (P,), the trained parameters.
    history : one record per logged step: {"step", "loglik_per_datapoint", "seconds"} (seconds
        since the start of training, across resumes).
    """

    theta: np.ndarray
    history: list[dict]
    seconds: float
    steps: int
    n_rhs: int = 0
    resumed_from: int | None = None
    settings: dict = field(default_factory=dict)

    @property
    def final_loglik_per_datapoint(self) -> float:
        return self.history[-1]["loglik_per_datapoint"]


@contextmanager
def _deferred_interrupt():
    """Ctrl-C sets a flag instead of raising mid-step; the loop stops at the next step boundary.

    That way θ, Adam's moments and the history are always consistent when they are checkpointed.
    """
    flag = {"interrupted": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["interrupted"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, key, step, theta, adam, history, seconds, n_rhs):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle, key=key, step=step, theta=theta, m=adam.m, v=adam.v, adam_t=adam.t,
                history=json.dumps(history), seconds=seconds, n_rhs=n_rhs,
            )


def _load_checkpoint(path: Path, key: str):
    try:
        with np.load(path) as data:
            if str(data["key"]) != key:
                return None  # a checkpoint of other settings: start afresh, it will be replaced
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError):
        return None


def train(
    problem,
    *,
    steps: int = 1000,
    lr: float = 1e-2,
    engine=None,
    solver: str = "DP5",
    rtol: float = 1e-6,
    atol: float = 1e-4,
    log_every: int = 50,
    theta0: np.ndarray | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 50,
    progress: bool | None = None,
    on_log=None,
) -> TrainingResult:
    """Fit θ to `problem`'s data with Adam.

    Parameters
    ----------
    problem : Problem
    steps : int
        Number of Adam updates (steps + 1 gradient evaluations).
    engine, solver, rtol, atol :
        As for `harness.gradient`.
    theta0 : ndarray, shape (P,), optional
        Starting point (default `problem.theta`).
    checkpoint : path, optional
        Saved every `checkpoint_every` steps and on Ctrl-C; if it exists with the same settings,
        training resumes from it.
    progress : bool, optional
        A progress bar; default: only when stderr is a terminal.
    on_log : callable(record), optional
        Called with each history record as it is logged (e.g. to print it).
    """
    if not isinstance(steps, int) or steps < 0:
        raise HarnessInputError(f"steps={steps!r}: expected an integer >= 0")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise HarnessInputError(f"lr={lr!r}: expected a finite number > 0")
    if not isinstance(log_every, int) or log_every < 1:
        raise HarnessInputError(f"log_every={log_every!r}: expected an integer >= 1")
    engine = resolve_engine(engine)
    theta = np.array(problem.theta if theta0 is None else problem.model.check_theta(theta0))
    settings = {
        "problem": problem.name, "steps": steps, "lr": lr, "engine": repr(engine), "solver": solver,
        "rtol": rtol, "atol": atol, "theta0": theta.tolist(), "log_every": log_every,
        "data": hashlib.sha256(problem.data.tobytes() + problem.z0.tobytes()).hexdigest(),
    }
    key = _settings_key(settings)
    adam = Adam(lr=lr)
    history: list[dict] = []
    start_step, seconds_before, n_rhs, resumed_from = 0, 0.0, 0, None
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = _load_checkpoint(path, key)
        if state is not None:
            start_step = resumed_from = int(state["step"])
            theta = state["theta"].copy()
            adam.m, adam.v, adam.t = state["m"].copy(), state["v"].copy(), int(state["adam_t"])
            history = json.loads(str(state["history"]))
            seconds_before, n_rhs = float(state["seconds"]), int(state["n_rhs"])

    started = time.perf_counter()
    bar = Progress(total=steps + 1, initial=start_step, enabled=progress, desc="training")

    def save(next_step):
        if path is not None:
            elapsed = seconds_before + time.perf_counter() - started
            _save_checkpoint(path, key, next_step, theta, adam, history, elapsed, n_rhs)

    try:
        with _deferred_interrupt() as interrupt:
            for step in range(start_step, steps + 1):
                result = gradient(problem, theta, engine=engine, solver=solver, rtol=rtol, atol=atol)
                n_rhs += result.n_rhs
                if step % log_every == 0 or step == steps:
                    record = {
                        "step": step,
                        "loglik_per_datapoint": result.loglik_per_datapoint,
                        "seconds": seconds_before + time.perf_counter() - started,
                    }
                    history.append(record)
                    bar.set_postfix(loglik=f"{record['loglik_per_datapoint']:.3f}")
                    if on_log is not None:
                        on_log(record)
                if step < steps:
                    theta = adam.step(theta, result.dtheta)
                bar.update(1)
                if interrupt["interrupted"]:
                    save(step + 1)
                    raise KeyboardInterrupt
                if (step + 1) % checkpoint_every == 0 and step < steps:
                    save(step + 1)
    finally:
        bar.close()
    if path is not None:
        path.unlink(missing_ok=True)  # finished: nothing to resume
    return TrainingResult(
        theta=theta, history=history, seconds=seconds_before + time.perf_counter() - started,
        steps=steps, n_rhs=n_rhs, resumed_from=resumed_from, settings=settings,
    )


def history_json(result: TrainingResult, **extra) -> str:
    """The history and settings as JSON text."""
    return to_json({"history": result.history, "settings": result.settings, **extra})


__all__ = ["Adam", "TrainingResult", "train", "history_json"]
