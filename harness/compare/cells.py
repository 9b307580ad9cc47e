"""One cell of a comparison: a pure function from a picklable spec to a JSON-ready dict.

`run_cell(spec)` builds the problem from its spec, builds the engine, computes the gradient (or runs
the training), and returns plain data: lists, floats, strings. It touches no files and no global
state beyond a per-process cache of built problems (and the lock in `harness._memory` that keeps a
traced call alone in its process), so that cells can run in any order, on threads, in another
process, or on a Dask worker, and a finished cell can be stored and trusted on resume.

Every cell ends in one of four states:

- "ok":          a number we have no reason to doubt;
- "flagged":     a number the engine itself warns about (BacksolveAdjoint's reconstruction check);
- "failed":      the engine raised (e.g. the backward solve could not reach t0); `reason` says why;
- "unavailable": the engine cannot run on this machine (Julia or a peer package absent); `reason`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from dataclasses import dataclass

import numpy as np

from .. import __version__, _memory as memory
from ..errors import BackendUnavailableError
from .._forward import SolveOptions, solve_forward
from ..problems import Problem
from ..problems import TUTORIAL_DATA_OPTIONS, build_problem
from ..sensitivity import gradient
from .engines import build_engine
from .spec import EngineSpec, ProblemSpec

STATUSES = ("ok", "flagged", "failed", "unavailable")


@dataclass(frozen=True)
class GradientCell:
    """dL/dθ and dL/dz0 of one problem by one engine at one solver and tolerance.

    `role` is "grid", "reference" or "reference_check"; `solver` is the backward pass's solver and
    `forward_solver` the forward pass's (the same unless the experiment fixes it).
    """

    problem: ProblemSpec
    seed: int
    engine: EngineSpec
    solver: str
    forward_solver: str
    rtol: float
    atol: float
    role: str = "grid"
    measure_memory: bool = True

    kind = "gradient"

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "role": self.role, "problem": self.problem.as_dict(), "seed": self.seed,
            "engine": self.engine.as_dict(), "solver": self.solver,
            "forward_solver": self.forward_solver, "rtol": self.rtol, "atol": self.atol,
            "measure_memory": self.measure_memory,
        }


@dataclass(frozen=True)
class TrainingCell:
    """One training run (Adam, the tutorial's loop) with one engine."""

    problem: ProblemSpec
    seed: int
    engine: EngineSpec
    solver: str
    rtol: float
    atol: float
    steps: int
    lr: float
    log_every: int

    kind = "training"
    role = "training"

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "role": self.role, "problem": self.problem.as_dict(), "seed": self.seed,
            "engine": self.engine.as_dict(), "solver": self.solver, "rtol": self.rtol,
            "atol": self.atol, "steps": self.steps, "lr": self.lr, "log_every": self.log_every,
        }


def cell_key(spec) -> str:
    """A stable hash of everything that determines the cell's result (and the harness version)."""
    text = json.dumps({"harness": __version__, **spec.as_dict()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------- problems
@functools.lru_cache(maxsize=8)
def build_problem_from_spec(spec: ProblemSpec, seed: int) -> Problem:
    """The problem of `spec` (cached per process: every cell of a seed shares one build).

    With `spec.times`, the catalogue problem's ground truth and initial states are observed at those
    times instead, solved with the tutorial's data settings (RadauIIA5 if the model is stiff).
    With `spec.augment`, the data are fitted by an augmented Neural ODE (θ drawn from seed + 1).
    """
    if spec.file is not None:
        from ..problems import augment_problem, load_problem

        return augment_problem(load_problem(spec.file), spec.augment, seed=seed + 1)
    problem = build_problem(spec.name, seed=seed, batch=spec.batch, augment=spec.augment)
    if spec.times is None:
        return problem
    times = np.asarray(spec.times, dtype=np.float64)
    solver = "RadauIIA5" if problem.model.decay is not None else TUTORIAL_DATA_OPTIONS.solver
    options = SolveOptions(solver, TUTORIAL_DATA_OPTIONS.rtol, TUTORIAL_DATA_OPTIONS.atol)
    data = solve_forward(problem.model, problem.theta_true, problem.z0, problem.t0, times, options)
    return Problem(problem.model, problem.theta, problem.z0, problem.t0, times,
                   data.z_at_times[..., : problem.observed_dim],
                   name=f"{problem.name}_t{times[-1]:g}", theta_true=problem.theta_true, augment=problem.augment)


# -------------------------------------------------------------------------------------------- cells
def _plain(value):
    """Diagnostics as JSON-ready values (numpy scalars and arrays to Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def one_line_error(err: BaseException) -> str:
    """The error as one line; for errors that wrap a traceback (JAX callbacks), its last line too."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1 and "Traceback" in text:
        cause = next((line for line in reversed(lines) if "Error: " in line), lines[-1])
        text = f"{text.split('Traceback')[0].strip()} … {cause}"
    return f"{type(err).__name__}: {text}"[:400]


def base_record(spec, status: str, reason: str | None = None) -> dict:
    """The fields every cell record has, whatever its outcome."""
    return {"key": cell_key(spec), "kind": spec.kind, "role": spec.role, "spec": spec.as_dict(),
            "status": status, "reason": reason}


def run_cell(spec) -> dict:
    """Run one cell (a `GradientCell` or a `TrainingCell`) and return its record.

    Pure: the record depends only on `spec` (and the machine, for times and availability).
    Never raises for an engine's failure or absence; those become "failed"/"unavailable" records.
    """
    try:
        with memory.allocating():  # building a problem solves its ground truth
            problem = build_problem_from_spec(spec.problem, spec.seed)
            engine = build_engine(spec.engine, spec.solver, spec.rtol, spec.atol)
    except BackendUnavailableError as err:
        return base_record(spec, "unavailable", str(err))
    if spec.kind == "training":
        return _run_training(spec, problem, engine)
    return _run_gradient(spec, problem, engine)


def _run_gradient(spec: GradientCell, problem: Problem, engine) -> dict:
    def call():
        return gradient(problem, engine=engine, solver=spec.forward_solver, rtol=spec.rtol,
                        atol=spec.atol)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with memory.allocating():
                if getattr(engine, "needs_warmup", False):
                    call()  # a JIT engine's first call compiles: a one-time cost, not the gradient's
                result = call()
        except BackendUnavailableError as err:
            return base_record(spec, "unavailable", str(err))
        except Exception as err:  # an engine's failure is a finding, not a crash of the comparison
            return base_record(spec, "failed", one_line_error(err))
        peak = None
        if spec.measure_memory and spec.engine.backend == "harness":
            # A second, traced call: tracemalloc slows allocation-heavy code, so it must not
            # share a call with the timing.
            peak = memory.peak_memory(call)
    diagnostics = _plain(result.diagnostics)
    flagged = bool(diagnostics.get("unstable")) if isinstance(diagnostics, dict) else False
    record = base_record(
        spec, "flagged" if flagged else "ok",
        "; ".join(sorted({str(w.message) for w in caught}))[:400] or None,
    )
    record.update(
        loss=float(result.loss),
        dtheta=np.asarray(result.dtheta, dtype=np.float64).tolist(),
        dz0=np.asarray(result.dz0, dtype=np.float64).tolist(),
        seconds=float(result.seconds),
        forward_stats=_plain(result.forward_stats.as_dict()),
        backward_stats=_plain(result.backward_stats.as_dict()),
        peak_memory_bytes=peak,
        diagnostics=diagnostics,
    )
    return record


def _run_training(spec: TrainingCell, problem: Problem, engine) -> dict:
    from ..training import train

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with memory.allocating():
                result = train(problem, steps=spec.steps, lr=spec.lr, engine=engine,
                               solver=spec.solver, rtol=spec.rtol, atol=spec.atol,
                               log_every=spec.log_every, progress=False)
        except BackendUnavailableError as err:
            return base_record(spec, "unavailable", str(err))
        except Exception as err:
            return base_record(spec, "failed", one_line_error(err))
    record = base_record(
        spec, "flagged" if caught else "ok",
        "; ".join(sorted({str(w.message) for w in caught}))[:400] or None,
    )
    record.update(
        history=_plain(result.history),
        final_loglik_per_datapoint=float(result.final_loglik_per_datapoint),
        perfect_loglik_per_datapoint=float(problem.perfect_loglik_per_datapoint),
        seconds=float(result.seconds),
        seconds_per_step=float(result.seconds) / (spec.steps + 1),  # steps + 1 gradient evaluations
        n_rhs=int(result.n_rhs),
        theta=np.asarray(result.theta).tolist(),
        **_trajectories(problem, result.theta, spec),
    )
    return record


def _trajectories(problem: Problem, theta, spec: TrainingCell, n_states: int = 40, n_times: int = 41) -> dict:
    """The trained model's paths from (up to) `n_states` initial states spread over the batch, at
    `n_times` times on [t0, t_K] with the training's solver settings, and what the final forward
    pass costs (the number of function evaluations Dupont et al. compare between plain and augmented
    models)."""
    times = np.linspace(problem.t0, problem.t1, n_times)[1:]
    z0 = problem.z0[np.unique(np.linspace(0, problem.batch_size - 1, n_states).astype(int))]  # spread over the batch
    fwd = solve_forward(problem.model, np.asarray(theta), z0, problem.t0, times,
                        SolveOptions(spec.solver, spec.rtol, spec.atol))
    paths = np.concatenate((z0[None], fwd.z_at_times))  # (n_times, B', N + A)
    # the final forward pass alone (no sampling): its evaluations are the model's cost at the fit
    final = solve_forward(problem.model, np.asarray(theta), problem.z0, problem.t0, problem.times,
                          SolveOptions(spec.solver, spec.rtol, spec.atol))
    return {"trajectory_times": [problem.t0, *times.tolist()], "trajectories": paths.tolist(),
            "observed_dim": problem.observed_dim, "final_forward_n_rhs": int(final.stats.n_rhs)}
