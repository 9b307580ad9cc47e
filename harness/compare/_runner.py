"""The grid runner: expand an experiment into cells, run the ones not yet done, store each as it ends.

Finished cells live in `DIR/cells/<key>.json`, one file per cell, written atomically, keyed by a hash
of the cell's settings (`_cells.cell_key`). A run that is interrupted keeps every finished cell; the
next run with the same settings loads them and runs only the rest. Cells whose engine is unavailable
are not stored: installing the missing package must make them run next time.

The executor is a seam for parallel back ends: any object with `map(fn, iterable)` that returns an
iterator of results, one per item (concurrent.futures executors qualify; `DaskExecutor`
yields them as they complete). Records carry their own key, so the order of results does not matter,
and `fn` is pure, so running a cell twice (a worker died mid-cell and the scheduler re-ran it) gives
the same record and rewrites the same file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import _memory as memory
from .._interrupts import raise_if_interrupt
from .._io import write_json
from .._progress import Progress
from ._cells import base_record, cell_key, one_blas_thread, one_line_error, record_problem, run_cell
from ._kind import kind
from .spec import Experiment


def task_failure(spec, err: BaseException) -> dict:
    """The record of a cell whose run raised outside `run_cell`'s own handling, or never returned.

    That is a harness bug or an infrastructure failure (a cell that killed every worker it ran on),
    not a finding about the engine, so the record says so and is marked `rerun`: it is reported but
    not stored, and the next run of the same command tries the cell again.
    """
    record = base_record(spec, "failed", f"not a result of the engine: {one_line_error(err)}")
    record["rerun"] = True
    return record


def run_cell_guarded(spec) -> dict:
    """`run_cell`, with any exception that escapes it turned into a `task_failure` record.

    `run_cell` already records an engine's failure; this catches the rest (e.g. an engine name that
    bypassed validation) so that one bad cell cannot stop the grid, in-process or on a cluster alike.
    """
    try:
        return run_cell(spec)
    except Exception as err:  # noqa: BLE001 - the point is that nothing escapes, but Ctrl-C
        raise_if_interrupt(err)
        return task_failure(spec, err)


class InProcess:
    """The default executor: cells run one after the other in this process, lazily."""

    def map(self, fn, iterable):
        return map(fn, iterable)


def experiment_cells(experiment: Experiment) -> list:
    """Every cell of `experiment`: each kind's cells, kind after kind (the gradient grid first)."""
    return [cell for name, settings in experiment.sections
            for cell in kind(name).cells(experiment, settings)]


class CellStore:
    """Finished cells on disk: `root/<key>.json`."""

    def __init__(self, root, *, warn=None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.warn = warn if warn is not None else (lambda line: print(line, file=sys.stderr))

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def load(self, cell, key: str | None = None) -> dict | None:
        """The stored record of `cell`, or None if absent or not to be trusted.

        Every record read is validated (`_cells.record_problem`): an unreadable or malformed one is
        recomputed, and one line on stderr says which and why (a partial write never is: atomic).
        """
        key = key or cell_key(cell)
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as err:
            self.warn(f"{path}: unreadable ({err.strerror}); recomputing the cell")
            return None
        try:
            record = json.loads(text)
        except ValueError:
            self.warn(f"{path}: not valid JSON; recomputing the cell")
            return None
        problem = record_problem(record, cell)
        if problem is not None:
            self.warn(f"{path}: malformed record ({problem}); recomputing the cell")
            return None
        return record

    def save(self, record: dict) -> None:
        """Store `record`, unless it must be re-run next time (unavailable engine, `task_failure`)."""
        if record["status"] != "unavailable" and not record.get("rerun"):
            write_json(self.path(record["key"]), record)


def run_cells(cells, store: CellStore, *, executor=None, progress: bool | None = None,
              on_record=None) -> list[dict]:
    """Records of `cells` (in their order), running only those missing from `store`.

    on_record(record, resumed) is called for each record (resumed=True if it came from the store).
    Each cell's key is computed once and looked up in a dict: preparing a grid of thousands of
    cells is linear in their number.
    """
    keys = [cell_key(cell) for cell in cells]
    records: dict[str, dict] = {}
    pending, queued = [], set()
    for cell, key in zip(cells, keys):
        if key in records or key in queued:
            continue
        stored = store.load(cell, key)
        if stored is not None:
            records[key] = stored
            if on_record is not None:
                on_record(stored, True)
        else:
            queued.add(key)
            pending.append(cell)
    bar = Progress(total=len(pending), enabled=progress, desc="cells")
    try:
        # One BLAS thread for the whole run, taken in this thread (see `_cells.one_blas_thread`).
        with one_blas_thread():
            for record in (executor or InProcess()).map(run_cell_guarded, pending):
                with memory.allocating():  # not inside another thread's traced call (`memory`)
                    store.save(record)  # at once: an interruption loses at most the running cell
                    records[record["key"]] = record
                    bar.update(1)
                    if on_record is not None:
                        on_record(record, False)
    finally:
        bar.close()
    return [records[key] for key in keys]
