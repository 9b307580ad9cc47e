"""What every cell shares: its key, its problem, its record's common fields, and `run_cell`.

A cell is a frozen, picklable value that one experiment kind produces (`GradientCell`,
`TrainingCell`, ...); `run_cell(spec)` hands it to its kind, which builds the problem and the
engine, computes, and returns plain data: lists, floats, strings. It touches no files and no
global state beyond a per-process cache of built problems (and the lock in `harness._memory` that
keeps a traced call alone in its process), so that cells can run in any order, on threads, in
another process, or on a Dask worker, and a finished cell can be stored and trusted on resume.

Every cell ends in one of four states:

- "ok":          a number we have no reason to doubt;
- "flagged":     a number the engine itself warns about (BacksolveAdjoint's reconstruction check);
- "failed":      the engine raised (e.g. the backward solve could not reach t0); `reason` says why;
- "unavailable": the engine cannot run on this machine (Julia or a peer package absent); `reason`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
from threadpoolctl import threadpool_limits

from .. import __version__
from .. import _memory as memory
from .._forward import SolveOptions
from .._io import strict_json
from ..problems import TUTORIAL_DATA_OPTIONS, Problem, build_problem, solve_ground_truth
from ..solvers import solver_for
from ._kind import kind
from .engines import build_engine
from .spec import ProblemSpec

STATUSES = ("ok", "flagged", "failed", "unavailable")
# What the analysis of each built-in kind reads from a finished ("ok" or "flagged") record; a kind
# of the user's may say the same in a `record_fields` attribute.
RESULT_FIELDS = {
    "gradient": ("loss", "dtheta", "dz0", "seconds", "forward_stats", "backward_stats", "diagnostics"),
    "training": ("history", "final_loglik_per_datapoint", "perfect_loglik_per_datapoint", "seconds",
                 "seconds_per_step", "n_rhs", "theta"),
    "otd_vs_dto": ("seconds", "n_steps", "n_rhs_forward", "n_rhs_backward", "diagnostics"),
}


def cell_key(spec) -> str:
    """A stable hash of everything that determines the cell's result: its settings, the harness
    version, and the contents of the files it reads (a problem file edited in place is a new cell,
    never the old record under the old path)."""
    content = {"harness": __version__, **spec.as_dict()}
    inputs = cell_inputs(spec)
    if inputs:  # only when there are files, so that the keys of catalogue problems do not change
        content["inputs"] = inputs
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cell_inputs(spec) -> dict[str, str]:
    """{path: sha256 of its contents} of the files the cell reads (its problem file, if any)."""
    problem = getattr(spec, "problem", None)
    path = getattr(problem, "file", None)
    return {} if path is None else {path: file_digest(path)}


def file_digest(path) -> str:
    """sha256 of a file's contents, cached per process on (path, size, modification time): a grid
    of thousands of cells on one problem file reads it once."""
    stat = os.stat(path)
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def computed_by() -> dict:
    """What computed this process's cells: the harness commit (None outside git) and version.

    Taken once per process, before the run writes anything (`_experiment.run_experiment` calls it
    first), and stored in every record as `computed`, with the time the cell finished."""
    from .._provenance import git_commit

    return {"commit": git_commit(), "harness_version": __version__}


# ----------------------------------------------------------------------------------------- problems
def build_problem_from_spec(spec: ProblemSpec, seed: int) -> Problem:
    """The problem of `spec` (cached per process: every cell of a seed shares one build; the cache
    is keyed on a problem file's contents too, so an edited file is read again).

    With `spec.times`, the catalogue problem's ground truth and initial states are observed at those
    times instead, solved with the tutorial's data settings (RadauIIA5 if the model is stiff).
    With `spec.augment`, the data are fitted by an augmented Neural ODE (θ drawn from seed + 1).
    With `spec.model`, by that model instead (θ from its `init`, seeded with seed + 1).
    """
    if spec.model is not None:
        return _with_model(build_problem_from_spec(replace(spec, model=None, model_parameters="{}"), seed), spec, seed)
    return _build_problem(spec, seed, None if spec.file is None else file_digest(spec.file))


@functools.lru_cache(maxsize=8)
def _build_problem(spec: ProblemSpec, seed: int, contents: str | None) -> Problem:
    if spec.file is not None:
        from ..problems import augment_problem, load_problem

        return augment_problem(load_problem(spec.file), spec.augment, seed=seed + 1)
    problem = build_problem(spec.name, seed=seed, batch=spec.batch, augment=spec.augment)
    if spec.times is None:
        return problem
    times = np.asarray(spec.times, dtype=np.float64)
    solver = solver_for(problem.model, TUTORIAL_DATA_OPTIONS.solver).name
    options = SolveOptions(solver, TUTORIAL_DATA_OPTIONS.rtol, TUTORIAL_DATA_OPTIONS.atol)
    data = solve_ground_truth(problem.model, problem.theta_true, problem.z0, problem.t0, times, options)
    return Problem(problem.model, problem.theta, problem.z0, problem.t0, times,
                   data[..., : problem.observed_dim],
                   name=f"{problem.name}_t{times[-1]:g}", theta_true=problem.theta_true, augment=problem.augment)


def _with_model(problem: Problem, spec: ProblemSpec, seed: int) -> Problem:
    """The problem's data, fitted by the model the spec names (no ground truth: another model's)."""
    from ..models import build_model

    model = build_model(spec.model, json.loads(spec.model_parameters))
    if model.state_dim != problem.model.state_dim:
        from ..errors import HarnessInputError

        raise HarnessInputError(
            f"model {spec.model!r} has N = {model.state_dim}, the problem's states have {problem.model.state_dim}"
        )
    theta = model.init(np.random.default_rng(seed + 1))
    return Problem(model, theta, problem.z0, problem.t0, problem.times, problem.data,
                   name=f"{problem.name}_{type(model).__name__}", augment=problem.augment, mask=problem.mask)


# -------------------------------------------------------------------------------------------- cells
def plain(value):
    """Diagnostics as JSON-ready values, as results.json has them: numpy values made plain and
    non-finite numbers made null by `harness._io.strict_json` (the conversion every JSON file of the
    harness uses); anything else JSON cannot hold (an engine's own diagnostic object) is kept as its
    repr."""
    return json.loads(json.dumps(strict_json(value), default=repr, allow_nan=False))


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


def prepare(spec):
    """(problem, engine) of a cell with `problem`, `seed`, `engine`, `solver`, `rtol` and `atol`.

    Raises BackendUnavailableError when the engine cannot run here.
    """
    with memory.allocating():  # building a problem solves its ground truth
        problem = build_problem_from_spec(spec.problem, spec.seed)
        engine = build_engine(spec.engine, spec.solver, spec.rtol, spec.atol)
    return problem, engine


_pin_lock = threading.Lock()
_pin: dict = {"depth": 0, "limits": None}


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread while any cell of this process runs (`run_cell`, and `run_cells` around
    the whole run, from the caller's thread).

    The limit is one per process, so nested and overlapping holders share one pin, set by the first
    and lifted by the last (a per-cell pin would be lifted under a cell still running on another
    thread). It must also be set from the caller's thread: with the OpenBLAS of numpy's wheels, a
    count the main thread set explicitly prevails over one a pool thread sets, so a pin taken only
    inside the cells of a thread pool does not hold. Setting it allocates (threadpoolctl inspects the
    loaded libraries), so it happens outside any traced call (`harness._memory.allocating`).
    """
    with _pin_lock:
        if _pin["depth"] == 0:
            with memory.allocating():
                _pin["limits"] = threadpool_limits(limits=1)
        _pin["depth"] += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin["depth"] -= 1
            if _pin["depth"] == 0:
                with memory.allocating():
                    _pin["limits"].restore_original_limits()
                _pin["limits"] = None


def run_cell(spec) -> dict:
    """Run one cell (of any registered kind) and return its record.

    Pure: the record depends only on `spec` (and the machine, for times and availability). Never
    raises for an engine's failure or absence; those become "failed"/"unavailable" records.

    BLAS runs on one thread inside a cell: a multi-threaded BLAS splits a matrix product's sums
    differently with the thread count, so the last bits of a gradient would depend on how many
    threads the caller (a Dask worker has one, a laptop's shell many) lets BLAS use.
    """
    with one_blas_thread():
        record = kind(spec.kind).run(spec)
    record["computed"] = {**computed_by(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return record


def record_problem(record, spec) -> str | None:
    """Why a stored record cannot be trusted as the result of `spec` (None when it can).

    A record is a dict with its key, kind, role and settings equal to the cell's, a known status and
    a reason that is text or null; a finished gradient carries what the analysis reads from it.
    """
    if not isinstance(record, dict):
        return f"not a record (a {type(record).__name__})"
    for name, wanted in (("key", cell_key(spec)), ("kind", spec.kind), ("role", spec.role),
                         ("spec", plain(spec.as_dict()))):
        if record.get(name) != wanted:
            return f"its {name!r} is not the cell's"
    if record.get("status") not in STATUSES:
        return f"unknown status {record.get('status')!r}"
    if record.get("reason") is not None and not isinstance(record.get("reason"), str):
        return "its reason is not text"
    needed = ()
    if record["status"] in ("ok", "flagged"):
        needed = getattr(kind(spec.kind), "record_fields", RESULT_FIELDS.get(spec.kind, ()))
    missing = [name for name in needed if name not in record]
    if missing:
        return f"missing {missing}"
    computed = record.get("computed")
    if computed is not None and not isinstance(computed, dict):
        return "its 'computed' is not a table"
    return None
