"""`run_experiment`: an experiment file in, a report folder out (resuming what is already done)."""

from __future__ import annotations

import time
from pathlib import Path

from ..io import ensure_writable_dir
from .cells import build_problem_from_spec
from .engines import backend_versions
from .metrics import analyse
from .report import write_report
from .runner import CellStore, experiment_cells, run_cells
from .spec import Experiment, load_experiment


def run_experiment(path, out_dir, *, progress: bool | None = None, executor=None,
                   training_steps: int | None = None, on_record=None) -> dict:
    """Run the experiment file at `path` and write `report.md`, `results.json`, figures and `cells/`.

    Parameters
    ----------
    path : str or Path, or an `Experiment`
        The TOML file (validated before anything runs), or an already-validated Experiment.
    out_dir : str or Path
        Created if needed. Finished cells found in `out_dir/cells/` are reused, not recomputed.
    progress : bool, optional
        A progress bar over cells; default: only when stderr is a terminal.
    executor : object with map(fn, iterable), optional
        Where cells run (default: in this process, one after the other).
    training_steps : int, optional
        Override the experiment's training length (e.g. a quick run).
    on_record : callable(record, resumed), optional
        Called as each cell finishes or is found finished.

    Returns
    -------
    dict
        The contents of `results.json`.
    """
    experiment = path if isinstance(path, Experiment) else load_experiment(path)
    if training_steps is not None:
        experiment = experiment.with_training_steps(training_steps)
    out_dir = ensure_writable_dir(out_dir)
    started = time.perf_counter()
    cells = experiment_cells(experiment)
    counts = {"run": 0, "resumed": 0}

    def seen(record, resumed):
        counts["resumed" if resumed else "run"] += 1
        if on_record is not None:
            on_record(record, resumed)

    records = run_cells(cells, CellStore(out_dir / "cells"), executor=executor, progress=progress,
                        on_record=seen)
    problem = build_problem_from_spec(experiment.problem, experiment.seeds[0])
    analysis = analyse(experiment, records, problem.model, problem.batch_size)
    backends = {e.backend for e in experiment.engines} | {experiment.reference.engine.backend}
    if experiment.training is not None:
        backends |= {e.backend for e in experiment.training.engines}
    timing = {"seconds": time.perf_counter() - started, "cells_run": counts["run"],
              "cells_resumed": counts["resumed"]}
    return write_report(
        experiment, analysis, records, Path(out_dir), problem_description=problem.describe(),
        backend_versions=backend_versions(sorted(backends)), timing=timing,
    )
