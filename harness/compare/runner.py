"""The grid runner: expand an experiment into cells, run the ones not yet done, store each as it ends.

Finished cells live in `DIR/cells/<key>.json`, one file per cell, written atomically, keyed by a hash
of the cell's settings (`cells.cell_key`). A run that is interrupted keeps every finished cell; the
next run with the same settings loads them and runs only the rest. Cells whose engine is unavailable
are not stored: installing the missing package must make them run next time.

The executor is a seam for parallel back ends: any object with `map(fn, iterable)` that returns an
iterator of results (concurrent.futures executors qualify; a Dask adapter can yield results as they
complete). Records carry their own key, so the order of results does not matter.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import write_json
from ..progress import Progress
from .cells import GradientCell, TrainingCell, cell_key, run_cell
from .spec import Experiment


class InProcess:
    """The default executor: cells run one after the other in this process, lazily."""

    def map(self, fn, iterable):
        return map(fn, iterable)


def experiment_cells(experiment: Experiment) -> list:
    """Every cell of `experiment`: per seed the reference (and its check), then the grid, then training.

    Grid order is seed, solver, tolerance from loose to tight, engine, so that an interrupted run has
    whole tolerance levels done and a partial report still compares every engine.
    """
    cells = []
    reference = experiment.reference
    for seed in experiment.seeds:
        common = dict(problem=experiment.problem, seed=seed, solver=reference.solver,
                      forward_solver=reference.solver, rtol=reference.rtol, atol=reference.atol,
                      measure_memory=False)
        cells.append(GradientCell(engine=reference.engine, role="reference", **common))
        if reference.check_engine is not None:
            cells.append(GradientCell(engine=reference.check_engine, role="reference_check", **common))
    tolerances = sorted(experiment.tolerances, reverse=True)  # loose (cheap) first
    for seed in experiment.seeds:
        for solver in experiment.solvers:
            for rtol, atol in tolerances:
                for engine in experiment.engines:
                    cells.append(GradientCell(
                        problem=experiment.problem, seed=seed, engine=engine, solver=solver,
                        forward_solver=experiment.forward_solver or solver, rtol=rtol, atol=atol,
                        measure_memory=experiment.measure_memory,
                    ))
    if experiment.training is not None:
        t = experiment.training
        for engine in t.engines:
            cells.append(TrainingCell(
                problem=experiment.problem, seed=t.seed, engine=engine, solver=t.solver, rtol=t.rtol,
                atol=t.atol, steps=t.steps, lr=t.lr, log_every=t.log_every,
            ))
    return cells


class CellStore:
    """Finished cells on disk: `root/<key>.json`."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def load(self, key: str) -> dict | None:
        """The stored record, or None if absent or unreadable (a partial write never is: atomic)."""
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None

    def save(self, record: dict) -> None:
        if record["status"] != "unavailable":
            write_json(self.path(record["key"]), record)


def run_cells(cells, store: CellStore, *, executor=None, progress: bool | None = None,
              on_record=None) -> list[dict]:
    """Records of `cells` (in their order), running only those missing from `store`.

    on_record(record, resumed) is called for each record (resumed=True if it came from the store).
    """
    records: dict[str, dict] = {}
    pending = []
    for cell in cells:
        key = cell_key(cell)
        if key in records:
            continue
        stored = store.load(key)
        if stored is not None:
            records[key] = stored
            if on_record is not None:
                on_record(stored, True)
        elif all(cell_key(p) != key for p in pending):
            pending.append(cell)
    bar = Progress(total=len(pending), enabled=progress, desc="cells")
    try:
        for record in (executor or InProcess()).map(run_cell, pending):
            store.save(record)  # at once, so that an interruption loses at most the running cell
            records[record["key"]] = record
            bar.update(1)
            if on_record is not None:
                on_record(record, False)
    finally:
        bar.close()
    return [records[cell_key(cell)] for cell in cells]
