"""Training: Adam on dL/dθ from any gradient engine, with logging, progress and resumable checkpoints.

The loop follows the tutorial: at every step the gradient is computed; every `log_every` steps
(and at the last) the log-likelihood per datapoint *before* that step's update is logged; steps
0..steps make steps + 1 gradient evaluations and `steps` updates.

A checkpoint holds θ, Adam's moments and the history, exactly (float64 in .npz), so that a run
stopped with Ctrl-C (or killed) and started again ends bit for bit where an uninterrupted run would.
Ctrl-C is not deferred: it stops a step wherever it is, and the checkpoint written is that of the
last completed step. A step whose loss or gradient is not finite ends training with status
"diverged" instead of feeding garbage to Adam.

A checkpoint is read only after its archive's declared sizes (`harness._archive`), its digest (a
SHA-256 of everything it holds, written with it) and every value's range agree with this run's
settings; a truncated, damaged or hand-edited one (`step = 1e9`) is set aside with one line saying
why, and training starts afresh (`_load_checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import HarnessInputError, SolverError, TrainingDivergedError
from ._archive import read_npz
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

    theta : ndarray, shape (P,), the parameters after the last completed step.
    history : one record per logged step: {"step", "loglik_per_datapoint", "seconds"} (seconds
        since the start of training, across resumes).
    status : "finished", or "diverged" when training stopped at a step whose loss or gradient was
        not finite, whose solve failed or that took far longer than the first steps; `failure` then
        says at which step and why, and θ, the history and the checkpoint are those of the steps
        before it.
    """

    theta: np.ndarray
    history: list[dict]
    seconds: float
    steps: int
    n_rhs: int = 0
    resumed_from: int | None = None
    settings: dict = field(default_factory=dict)
    status: str = "finished"
    failure: dict | None = None

    @property
    def final_loglik_per_datapoint(self) -> float | None:
        return self.history[-1]["loglik_per_datapoint"] if self.history else None


class StepTimeout(Exception):
    """A training step ran past its time limit (raised from a SIGALRM handler inside the step)."""


@dataclass(frozen=True)
class _Committed:
    """Everything training has completed: `next_step` steps done, with the state they left.

    A new value is built beside the old one and bound in one assignment, so that an interrupt
    (which Python raises between any two bytecodes) always finds a consistent state to save.
    """

    next_step: int
    theta: np.ndarray
    adam: Adam
    history: tuple
    n_rhs: int


@contextmanager
def _signals_blocked(*signums):
    """Hold the given signals while a checkpoint is written (they are delivered right after)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _StepWatchdog:
    """Raises StepTimeout inside a step that runs past its limit (main thread, POSIX only).

    A step whose parameters have diverged can make the solver take millions of tiny steps; waiting
    for the solver's own budget could take minutes. The limit is `timeout` seconds, or when None
    max(MIN_SECONDS, FACTOR x the median of this run's completed steps): far beyond the usual
    spread of step times while training converges, and reached in seconds by a runaway solve.
    """

    FACTOR = 100.0
    MIN_SECONDS = 10.0

    def __init__(self, timeout: float | None):
        self.timeout = timeout
        self.times: list[float] = []
        self.enabled = (
            threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
            and timeout != float("inf")
        )
        self._previous = None

    def limit(self) -> float | None:
        if self.timeout is not None:
            return self.timeout
        if not self.times:
            return None  # the first step has nothing to compare with; the solver's budget bounds it
        return max(self.MIN_SECONDS, self.FACTOR * float(np.median(self.times[:20])))

    @contextmanager
    def step(self):
        limit = self.limit() if self.enabled else None
        if limit is None:
            started = time.perf_counter()
            yield
            self.times.append(time.perf_counter() - started)
            return

        if self.timeout is not None:
            why = f"the step took more than its limit of {limit:.3g} s"
        else:
            why = (f"the step took more than {limit:.3g} s, against {1e3 * float(np.median(self.times[:20])):.3g} ms "
                   "for the first steps: its solve is running away")

        def expire(signum, frame):
            raise StepTimeout(why)

        previous = signal.signal(signal.SIGALRM, expire)
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        self.times.append(time.perf_counter() - started)


def _settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# What a checkpoint holds besides its digest, and the shape of each: (P,) for the parameter vectors.
CHECKPOINT_KEYS = ("key", "step", "theta", "m", "v", "adam_t", "history", "seconds", "n_rhs")
VECTOR_KEYS = ("theta", "m", "v")
# The history is one JSON string of a record per logged step; a few hundred bytes each.
MAX_HISTORY_BYTES = 64 * 2**20


def _digest(values: dict) -> str:
    """SHA-256 of a checkpoint's values (in `CHECKPOINT_KEYS` order), exactly as stored."""
    digest = hashlib.sha256()
    for name in CHECKPOINT_KEYS:
        value = np.asarray(values[name])
        digest.update(name.encode() + b"\0" + str(value.dtype).encode() + str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, key, state: _Committed, seconds):
    adam = state.adam
    m = adam.m if adam.m is not None else np.zeros_like(state.theta)
    v = adam.v if adam.v is not None else np.zeros_like(state.theta)
    values = {
        "key": np.array(key), "step": np.array(state.next_step, dtype=np.int64), "theta": state.theta,
        "m": m, "v": v, "adam_t": np.array(adam.t, dtype=np.int64),
        "history": np.array(json.dumps(list(state.history), allow_nan=False)),
        "seconds": np.array(float(seconds)), "n_rhs": np.array(state.n_rhs, dtype=np.int64),
    }
    with _signals_blocked(signal.SIGINT, signal.SIGTERM), atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, digest=np.array(_digest(values)), **values)


class _DamagedCheckpoint(Exception):
    """A checkpoint that cannot be this run's: the message says why."""


def _load_checkpoint(path: Path, key: str, n_params: int, steps: int):
    """The checkpoint's values if it is a sound checkpoint of this run; None if it is another
    settings' (start afresh, it will be replaced). Raises _DamagedCheckpoint (with the reason) for a
    truncated, damaged or edited one."""

    def check_shapes(members):
        for name in ("digest", *CHECKPOINT_KEYS):
            if name not in members:
                raise _DamagedCheckpoint(f"it has no {name!r}")
            expected = (n_params,) if name in VECTOR_KEYS else ()
            if members[name].shape != expected:
                raise _DamagedCheckpoint(f"{name} has shape {members[name].shape}, expected {expected}")

    try:
        data = read_npz(path, "the checkpoint", max_bytes=3 * 8 * n_params + MAX_HISTORY_BYTES, check=check_shapes)
    except HarnessInputError as err:
        raise _DamagedCheckpoint(str(err).removeprefix("the checkpoint ")) from None
    if data["key"].dtype.kind != "U" or str(data["key"]) != key:
        return None  # a checkpoint of other settings: start afresh, it will be replaced
    if data["digest"].dtype.kind != "U" or str(data["digest"]) != _digest(data):
        raise _DamagedCheckpoint("its contents do not match the digest written with them (damaged or edited)")
    # the digest matched: what follows can fail only for a checkpoint forged with its digest recomputed
    kinds = {"step": "iu", "adam_t": "iu", "n_rhs": "iu", "seconds": "f", "theta": "f", "m": "f", "v": "f"}
    for name, allowed in kinds.items():
        if data[name].dtype.kind not in allowed:
            raise _DamagedCheckpoint(f"{name} is {data[name].dtype}")
    step, adam_t = int(data["step"]), int(data["adam_t"])
    if not 0 <= step <= steps + 1 or adam_t != min(step, steps):
        raise _DamagedCheckpoint(f"step {step} with {adam_t} Adam updates is not a state of a {steps}-step run")
    if not all(np.all(np.isfinite(data[name])) for name in ("theta", "m", "v", "seconds")) or np.any(data["v"] < 0):
        raise _DamagedCheckpoint("its parameters or Adam's moments are not finite")
    try:
        history = json.loads(str(data["history"]))
        logged = [int(record["step"]) for record in history]
    except (ValueError, TypeError, KeyError) as err:
        raise _DamagedCheckpoint(f"its history is not a list of records ({err})") from None
    if logged != sorted(set(logged)) or (logged and not 0 <= logged[-1] < max(step, 1)):
        raise _DamagedCheckpoint(f"its history logs steps {logged[:3]}... that step {step} cannot have")
    return data


def _not_finite(result) -> str | None:
    """Which of the loss and the gradient is not finite, or None when both are."""
    if not np.isfinite(result.loss):
        return f"the loss is {result.loss}"
    if not np.all(np.isfinite(result.dtheta)):
        return f"{int(np.count_nonzero(~np.isfinite(result.dtheta)))} gradient entries are not finite"
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
    keep_checkpoint: bool = False,
    step_timeout: float | None = None,
    progress: bool | None = None,
    on_log=None,
    on_notice=None,
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
        Saved every `checkpoint_every` steps, on Ctrl-C (the last completed step) and when training
        stops; if it exists with the same settings, training resumes from it.
    keep_checkpoint : bool
        Keep the checkpoint of the finished run (the caller removes it once every output it derives
        from the result is written, so that an interrupt while writing loses no training). By
        default it is removed when training finishes.
    step_timeout : float, optional
        Seconds after which a step counts as diverged; default max(10 s, 100 x the median of the
        run's first steps); `math.inf` turns the limit off.
    progress : bool, optional
        A progress bar; default: only when stderr is a terminal.
    on_log : callable(record), optional
        Called with each history record as it is logged (e.g. to print it).
    on_notice : callable(str), optional
        Called with one line when a damaged checkpoint is set aside (default: a RuntimeWarning).

    Returns
    -------
    TrainingResult
        With status "finished".

    Raises
    ------
    TrainingDivergedError
        At a step whose loss or gradient is not finite, whose solve fails (after step 0) or that
        runs past `step_timeout`; its `result` holds the steps before it (status "diverged") and
        the checkpoint, if any, is theirs. Ctrl-C saves the checkpoint of the last completed step
        and raises KeyboardInterrupt at once, wherever the step is.
    """
    if not isinstance(steps, int) or steps < 0:
        raise HarnessInputError(f"steps={steps!r}: expected an integer >= 0")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise HarnessInputError(f"lr={lr!r}: expected a finite number > 0")
    if not isinstance(log_every, int) or log_every < 1:
        raise HarnessInputError(f"log_every={log_every!r}: expected an integer >= 1")
    if step_timeout is not None and not (isinstance(step_timeout, (int, float)) and step_timeout > 0):
        raise HarnessInputError(f"step_timeout={step_timeout!r}: expected a number > 0 (or None)")
    engine = resolve_engine(engine)
    theta = np.array(problem.theta if theta0 is None else problem.model.check_theta(theta0))
    settings = {
        "problem": problem.name, "steps": steps, "lr": lr, "engine": repr(engine), "solver": solver,
        "rtol": rtol, "atol": atol, "theta0": theta.tolist(), "log_every": log_every,
        "data": hashlib.sha256(problem.data.tobytes() + problem.z0.tobytes()).hexdigest(),
    }
    key = _settings_key(settings)
    state = _Committed(0, theta, Adam(lr=lr), (), 0)
    seconds_before, resumed_from = 0.0, None
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        try:
            saved = _load_checkpoint(path, key, theta.size, steps)
        except _DamagedCheckpoint as err:
            saved = None
            notice = f"{path} is not a sound checkpoint of this run ({err}): training starts afresh"
            if on_notice is not None:
                on_notice(notice)
            else:
                warnings.warn(notice, RuntimeWarning, stacklevel=2)
        if saved is not None:
            resumed_from = int(saved["step"])
            adam = Adam(lr=lr, t=int(saved["adam_t"]))
            if adam.t > 0:
                adam.m, adam.v = saved["m"].copy(), saved["v"].copy()
            state = _Committed(resumed_from, saved["theta"].copy(), adam,
                               tuple(json.loads(str(saved["history"]))), int(saved["n_rhs"]))
            seconds_before = float(saved["seconds"])

    started = time.perf_counter()
    bar = Progress(total=steps + 1, initial=min(state.next_step, steps + 1), enabled=progress, desc="training")
    watchdog = _StepWatchdog(step_timeout)
    failure = None

    def elapsed():
        return seconds_before + time.perf_counter() - started

    def save(committed):
        if path is not None:
            _save_checkpoint(path, key, committed, elapsed())

    try:
        for step in range(state.next_step, steps + 1):
            try:
                with watchdog.step():
                    result = gradient(problem, state.theta, engine=engine, solver=solver, rtol=rtol, atol=atol)
                reason = _not_finite(result)
            except StepTimeout as err:
                reason = str(err)
            except SolverError as err:
                if step == 0:
                    raise  # no step has succeeded: the problem or its settings, not divergence
                reason = f"the solver failed ({err})"
            if reason is not None:
                failure = {"step": step, "reason": reason}
                break
            history = state.history
            if step % log_every == 0 or step == steps:
                record = {"step": step, "loglik_per_datapoint": result.loglik_per_datapoint,
                          "seconds": elapsed()}
                history = history + (record,)
                bar.set_postfix(loglik=f"{record['loglik_per_datapoint']:.3f}")
                if on_log is not None:
                    on_log(record)
            adam, theta = state.adam, state.theta
            if step < steps:
                adam = replace(adam)  # a copy: the committed Adam stays as it was until the swap
                theta = adam.step(theta, result.dtheta)
            state = _Committed(step + 1, theta, adam, history, state.n_rhs + result.n_rhs)
            bar.update(1)
            if state.next_step % checkpoint_every == 0 and step < steps:
                save(state)
    except KeyboardInterrupt:
        save(state)  # the last completed step: θ, Adam's moments and the history agree
        raise
    finally:
        bar.close()
    if path is not None:
        if keep_checkpoint or failure is not None:
            save(state)
        else:
            path.unlink(missing_ok=True)  # finished: nothing to resume
    result = TrainingResult(
        theta=state.theta, history=list(state.history), seconds=elapsed(), steps=steps, n_rhs=state.n_rhs,
        resumed_from=resumed_from, settings=settings, status="finished" if failure is None else "diverged",
        failure=failure,
    )
    if failure is not None:
        raise TrainingDivergedError(f"training diverged at step {failure['step']}: {failure['reason']}", result)
    return result


def history_json(result: TrainingResult, **extra) -> str:
    """The history and settings as JSON text."""
    return to_json({"history": result.history, "settings": result.settings, **extra})


__all__ = ["Adam", "StepTimeout", "TrainingResult", "history_json", "train"]
