"""`run_experiment`: an experiment file in, a report folder out (resuming what is already done)."""

from __future__ import annotations

import time
from pathlib import Path

from .._io import ensure_writable_dir
from ..errors import HarnessInputError
from ._cells import build_problem_from_spec, computed_by
from ._kind import kind
from ._report import write_report
from ._runner import CellStore, experiment_cells, run_cells
from .engines import backend_versions
from .spec import Experiment, load_experiment


# What differs between two runs of the same grid without being a result of it:
# - `provenance` (commit, machine, creation time) and `timing` (wall time, cells run and resumed,
#   the executor): where and when the run happened;
# - `summary`: generated prose; its training line quotes times per step, and every other fact in
#   it is derived from the numbers that are compared;
# - `claims`: the declared claims' verdicts and evidence; a claim may read timings;
# - wall-clock `seconds`, `seconds_min`, `seconds_max`, `seconds_per_step` and `step_seconds_*`
#   wherever they appear (cell records, rows, work-precision curves, training summaries, each training-history entry);
# - `peak_memory_bytes`: tracemalloc's peak over the whole process during the traced call (other
#   cells of the process wait meanwhile, `harness._memory`), so it moves by a few hundred bytes
#   between repeats in one process and, on a Dask worker, includes whatever the worker's own event
#   loop allocated meanwhile;
# - `worker` and `backend_available`: which worker ran a cell (distributed runs only);
# - `computed`: the commit, version and time that computed a cell.
# Everything else in results.json (gradients, loss, errors against the reference, cosines,
# worst entries, f-eval, Jacobian and LU counts, training histories' log-likelihoods, final θ,
# statuses and reasons) is a function of the cells' settings and must match to the last bit.
RUN_SECTIONS = ("provenance", "timing", "summary", "claims")
RUN_KEYS = frozenset({"seconds", "seconds_min", "seconds_max", "seconds_per_step",
                      "step_seconds_median", "step_seconds_min", "step_seconds_max",
                      "peak_memory_bytes", "worker", "backend_available", "computed"})
# A grid larger than this is refused unless the caller raises the limit (`--max-cells`): a typo in a
# tolerance list can ask for days of work, and the count is known before anything runs.
MAX_CELLS = 5000


def comparable(results: dict) -> dict:
    """`results` without the run's provenance (`RUN_SECTIONS`, and `RUN_KEYS` at any depth).

    Two runs of the same experiment, in-process or on any cluster, give equal `comparable(...)`
    for deterministic engines; that is what `test_dask.py` checks.
    """

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in RUN_KEYS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip({k: v for k, v in results.items() if k not in RUN_SECTIONS})


def run_experiment(path, out_dir, *, progress: bool | None = None, executor=None,
                   training_steps: int | None = None, on_record=None, max_cells: int = MAX_CELLS) -> dict:
    """Run the experiment file at `path` and write `report.md`, `results.json`, figures and `cells/`.

    Parameters
    ----------
    path : str or Path, or an `Experiment`
        The TOML file (validated before anything runs), or an already-validated Experiment.
    out_dir : str or Path
        Created if needed. Finished cells found in `out_dir/cells/` are reused, not recomputed
        (each record is validated first; the report lists those computed at another commit).
        If this call created the folder and stops on an input error before writing a result, the
        folder is removed again.
    progress : bool, optional
        A progress bar over cells; default: only when stderr is a terminal.
    executor : object with map(fn, iterable), optional
        Where cells run (default: in this process, one after the other); e.g. a
        `harness.compare.DaskExecutor`. Its `description`, if it has one, goes into `timing`.
    training_steps : int, optional
        Override the experiment's training length (e.g. a quick run).
    on_record : callable(record, resumed), optional
        Called as each cell finishes or is found finished.
    max_cells : int
        Refuse (HarnessInputError) a grid of more cells than this, before anything is written.

    Returns
    -------
    dict
        The contents of `results.json`.
    """
    experiment = path if isinstance(path, Experiment) else load_experiment(path)
    if training_steps is not None:
        experiment = experiment.with_training_steps(training_steps)
    started = time.perf_counter()
    this_run = computed_by()  # before anything is written (see `_cells.computed_by`)
    cells = experiment_cells(experiment)
    if len(cells) > max_cells:
        raise HarnessInputError(
            f"the experiment has {len(cells)} cells, more than the limit of {max_cells}: shorten its "
            "lists (engines x solvers x tolerances x seeds, and each kind's own) or raise --max-cells")
    created = not Path(out_dir).exists()
    out_dir = ensure_writable_dir(out_dir)
    try:
        return _run(experiment, cells, out_dir, this_run, started, progress=progress, executor=executor,
                    on_record=on_record)
    except HarnessInputError:
        if created:
            _remove_if_no_results(out_dir)
        raise


def _remove_if_no_results(out_dir: Path) -> None:
    """Remove a folder this run created, if it holds no file (an input error before any cell)."""
    if any(p.is_file() for p in out_dir.rglob("*")):
        return
    for folder in sorted((p for p in out_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        folder.rmdir()
    out_dir.rmdir()


def _run(experiment, cells, out_dir: Path, this_run: dict, started: float, *, progress, executor,
         on_record) -> dict:
    counts = {"run": 0, "resumed": 0}

    def seen(record, resumed):
        counts["resumed" if resumed else "run"] += 1
        if on_record is not None:
            on_record(record, resumed)

    records = run_cells(cells, CellStore(out_dir / "cells"), executor=executor, progress=progress,
                        on_record=seen)
    problem = build_problem_from_spec(experiment.problem, experiment.seeds[0])
    analysis, backends = {}, set()
    for name, settings in experiment.sections:
        mine = [r for r in records if r["kind"] == name]
        analysis.update(kind(name).analyse(experiment, settings, mine, problem))
        backends |= kind(name).backends(settings)
    timing = {"seconds": time.perf_counter() - started, "cells_run": counts["run"],
              "cells_resumed": counts["resumed"], "executor": _describe(executor),
              "commit": this_run["commit"], "from_other_commits": other_commits(records, this_run)}
    return write_report(
        experiment, analysis, records, Path(out_dir), problem_description=problem.describe(),
        backend_versions=backend_versions(sorted(backends)), timing=timing,
    )


def other_commits(records, this_run: dict) -> list[dict]:
    """The stored cells that another commit (or an unknown one) computed: one entry per cell, with
    its commit, harness version and time, so that the report says whose numbers and times they are.
    Unavailable cells and `task_failure` records (`rerun`) are left out: they are never stored, so
    this run decided them."""
    out = []
    for record in records:
        computed = record.get("computed") or {}
        if record["status"] == "unavailable" or record.get("rerun") or (
                computed.get("commit") == this_run["commit"] and computed.get("commit") is not None):
            continue
        spec = record["spec"]
        label = " ".join(str(x) for x in (record["kind"], record["role"], spec.get("engine", {}).get("label"),
                                          spec.get("solver"), spec.get("rtol"), spec.get("seed"))
                         if x is not None)
        out.append({"key": record["key"], "cell": label, "commit": computed.get("commit"),
                    "harness_version": computed.get("harness_version"), "at": computed.get("at")})
    return out


def _describe(executor) -> str:
    if executor is None:
        return "in-process"
    return getattr(executor, "description", None) or type(executor).__name__
