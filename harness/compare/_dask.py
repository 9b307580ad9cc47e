"""Experiment cells on a Dask cluster: a local one (`--workers N`) or a running one (`--scheduler`).

    with DaskExecutor(workers=2) as executor:                  # 2 worker processes on 127.0.0.1
        run_experiment("experiments/stiff.toml", "out/stiff", executor=executor)

    with DaskExecutor(scheduler="tcp://head-node:8786") as executor:   # `dask scheduler` + workers
        ...

`DaskExecutor.map(fn, cells)` submits one task per cell and yields each record as it completes, so
`run_cells` stores it at once and an interruption loses only the cells still running. What makes
this safe:

- Cells are pure and idempotent (`_cells.run_cell`): a record depends only on its spec, and only the
  client writes files, atomically, keyed by the spec's hash. A cell that runs twice because its
  worker died gives the same record and rewrites the same file.
- A worker that dies mid-cell (killed, out of memory, its node pre-empted) is the scheduler's
  business: it re-runs the cell elsewhere, up to `distributed.scheduler.allowed-failures` times
  (default 3) before declaring the cell a `KilledWorker`, so that one cell that crashes every
  worker it touches cannot take the cluster down with it. Such a cell becomes a failed record
  marked `rerun` (reported, not stored). `RETRIES` covers the other kind of failure: an exception
  that escapes the task itself, which `_runner.run_cell_guarded` makes rare.
- Each worker process prepares the backends its cells need once (`prepare_backend`: Julia and its
  packages, or a peer's import) when the work arrives, not per cell, and each record says which
  worker ran it and whether the backend was available there (`worker`, `backend_available`). Both
  are provenance: `_experiment.comparable` leaves them out when two runs are compared.

Ctrl-C reaches every process of the terminal's process group, the local workers included. They
leave it to the client (`ignore_sigint`, run in each worker process as it starts): the client
cancels the cells still running and closes the cluster, with Dask's own logging silenced for the
close, so that an interrupted run prints the one line of the command line and no worker tracebacks
or shutdown warnings.

This module needs the `dask` extra (`pip install -e ".[dask]"`); `cli` checks for it before
importing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid

import dask
import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from .. import __version__
from .._interrupts import raise_if_interrupt
from ..errors import BackendUnavailableError, HarnessInputError
from ._cells import cell_key
from ._runner import task_failure

# Dask's `retries` re-runs a task whose function raised; our task raises only if something outside
# `run_cell_guarded` breaks (e.g. the worker cannot unpickle the spec while it is shutting down).
# Once more is enough to ride out such a hiccup, and cheap: cells are idempotent.
RETRIES = 1

LOOPBACK = "127.0.0.1"

# The worker's statistical profiler samples every thread's stack every 10 ms from the event loop;
# tracemalloc traces the whole process, so those samples would inflate the peak memory measured
# in cells by up to hundreds of kB. Nobody looks at the profile without a dashboard: switch it off.
#
# The preload runs `dask_setup` below in each local worker process as it starts (restarts included).
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False,
                       "distributed.worker.preload": [__name__]}


def dask_setup(worker) -> None:
    """Dask's preload hook, run in each local worker process at start: `ignore_sigint`, and no
    log of the expected course of a stop (`quiet_worker_logs`)."""
    ignore_sigint()
    quiet_worker_logs()


def quiet_worker_logs() -> list[tuple[logging.Logger, logging.Filter]]:
    """In a local worker process: no warning for a cell the client cancelled, and no traceback for a
    heartbeat that found the scheduler gone. Returns the (logger, filter) pairs it added."""
    added = [(logging.getLogger("distributed.worker.state_machine"), _CancelledCellFilter()),
             (logging.getLogger("distributed.worker"), _SchedulerClosedFilter())]
    for logger, log_filter in added:
        logger.addFilter(log_filter)
    return added


class _CancelledCellFilter(logging.Filter):
    """Drops the worker's "Async instruction ... ended with CancelledError": a cell the client
    cancelled (Ctrl-C, or the run stopping) ends that way by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ended with CancelledError" not in record.getMessage()


class _SchedulerClosedFilter(logging.Filter):
    """Drops the worker's "Failed to communicate with scheduler during heartbeat" and its traceback.

    A local cluster's scheduler runs in the harness process, which closes it, and then the workers,
    when the run ends or is interrupted. A worker whose heartbeat falls between the two logs that
    error with a 50-line traceback (seen once in a fresh-clone suite, on Ctrl-C to the process
    group). The worker is being stopped: there is nothing to report. On loopback, to a scheduler in
    the harness process, a heartbeat fails only once that scheduler has closed; a worker lost
    otherwise is reported by the client."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to communicate with scheduler during heartbeat")


def ignore_sigint() -> None:
    """Leave Ctrl-C to the client: a local worker shares the terminal's process group, so Ctrl-C
    reaches it too, and it would end with a traceback of its event loop on the terminal while the
    client is still stopping cleanly. The client closes the workers itself."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# ---------------------------------------------------------------------------------------- workers
@functools.cache
def prepare_backend(backend: str) -> tuple[bool, str | None]:
    """Initialise `backend` in this process, once; returns (available, reason if not).

    Julia is the reason this exists: starting it and loading SciMLSensitivity takes tens of seconds,
    which must be paid once per worker process, not once per cell, and not inside a cell's timing.
    `harness.julia.runtime.load()` caches the module per process; calling it here, before the
    first Julia cell, moves the start-up out of the cells. Peers (PyTorch, JAX) are imported so that
    their import time is paid here too. Harness cells are plain numpy and need nothing.
    """
    if backend == "harness":
        return True, None
    if backend == "julia":
        try:
            from ..julia import runtime
        except ImportError:
            return False, "harness.julia not installed"
        try:
            runtime.load()
        except BackendUnavailableError as err:
            return False, str(err)
        except Exception as err:  # noqa: BLE001 - e.g. a JuliaError from loading the glue module
            return False, f"Julia failed to start: {type(err).__name__}: {err}"[:400]
        return True, None
    from .. import peers

    available, reason = peers.peer_status(backend)
    if available:
        importlib.import_module(peers.PEERS[backend][0], peers.__name__)
    return available, reason


def prepare_backends(backends) -> dict[str, bool]:
    """`prepare_backend` for each of `backends`: {backend: available}."""
    return {backend: prepare_backend(backend)[0] for backend in backends}


class BackendSetup(WorkerPlugin):
    """Prepares the experiment's backends on every worker, including workers that join later.

    The preparation runs on the worker's task thread, not on its event loop: a blocking Julia
    start-up on the event loop would stall the worker's heartbeats, and juliacall should be driven
    from one thread, the one that will run the Julia cells (one thread per worker: `threads_per_
    worker=1` locally; start remote workers with `--nthreads 1`). Cells that reach the worker first
    queue behind it on that thread.
    """

    name = "harness-backend-setup"

    def __init__(self, backends):
        self.backends = tuple(sorted(set(backends) - {"harness"}))

    async def setup(self, worker):
        if self.backends:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(worker.executor, prepare_backends, self.backends)


class WorkerVersionError(RuntimeError):
    """A worker runs another harness version: its records would carry other keys."""


def _harness_version() -> str:
    return __version__


@contextlib.contextmanager
def _event_loop_held(worker):
    """Park the worker's event loop while the body runs, so that tracemalloc sees only the cell.

    tracemalloc traces the whole process, and while a cell runs the worker's event loop is busy
    serialising the previous cell's record for the client, receiving the next task, and taking its
    metrics: allocations that land in the cell's peak memory (by up to 0.5 MB on the tutorial
    problem, as much as the gradient's own). Parking the loop stops them. It also pauses the
    worker's heartbeats for the cell's duration (seconds; the scheduler waits minutes, see
    `distributed.scheduler.worker-ttl`), and the worker may log that its event loop was
    unresponsive. Only memory-measured harness cells are run this way.
    """
    parked, release = threading.Event(), threading.Event()

    async def park():  # runs on the event loop's thread, and blocks it until `release`
        # First let the loop send what it has queued, above all the report that the previous cell
        # finished (the batched stream to the scheduler sends at most every few ms): held back,
        # the scheduler would not send this worker its next cell until this one ends.
        await asyncio.sleep(2 * worker.batched_stream.interval)
        parked.set()
        release.wait()

    asyncio.run_coroutine_threadsafe(park(), worker.loop.asyncio_loop)
    parked.wait()
    try:
        yield
    finally:
        release.set()


def _backend(cell) -> str:
    """The backend a cell's engine runs on; "harness" for a kind whose cells have no engine."""
    engine = getattr(cell, "engine", None)
    return getattr(engine, "backend", "harness")


def _run_task(fn, spec, client_version: str) -> dict:
    """The task a worker runs: `fn(spec)` plus the worker's provenance.

    `cell_key` hashes the harness version, so a worker with another version would return a record
    under a key the client does not know; refuse instead (the client records the cell as failed).
    """
    if __version__ != client_version:
        raise WorkerVersionError(f"this worker runs harness {__version__}, the client "
                                 f"{client_version}: install the same harness on every worker")
    worker = distributed.get_worker()
    backend = _backend(spec)
    if getattr(spec, "measure_memory", False) and backend == "harness":
        with _event_loop_held(worker):
            record = fn(spec)
    else:
        record = fn(spec)
    record["worker"] = {"address": worker.address, "host": socket.gethostname(), "pid": os.getpid()}
    if backend != "harness":
        record["backend_available"] = prepare_backend(backend)[0]  # cached: set up by BackendSetup
    return record


# --------------------------------------------------------------------------------------- executor
class DaskExecutor:
    """Runs cells as Dask tasks and yields their records as they complete.

    Exactly one of:

    workers : int
        Start a private `LocalCluster` of this many worker processes (one thread each), with every
        socket on 127.0.0.1 and no dashboard; it is closed with the executor.
    scheduler : str
        The address of a running scheduler (`tcp://host:8786`): `dask scheduler` with `dask worker`s,
        or a dask-jobqueue cluster. Its workers need this harness version installed.

    connect_timeout : float
        Seconds to wait for the scheduler before giving up with a HarnessInputError.

    Use as a context manager (or call `close`). `description` says where cells ran; it goes into
    results.json's `timing`.
    """

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None,
                 connect_timeout: float = 10.0):
        if (workers is None) == (scheduler is None):
            raise ValueError("DaskExecutor needs exactly one of workers= and scheduler=")
        self.cluster = None
        if workers is not None:
            if workers < 1:
                raise HarnessInputError(f"--workers {workers}: expected an integer >= 1")
            # processes: numpy and Julia hold the GIL, so only processes run cells in parallel;
            # one thread each, because Julia wants one thread and so that cells do not share a
            # core with each other (the nanny also sets OMP/MKL/OPENBLAS_NUM_THREADS=1).
            with dask.config.set(LOCAL_WORKER_CONFIG):  # the nannies keep it for restarts too
                self.cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host=LOOPBACK,
                    dashboard_address=None,
                    # No dashboard, but the scheduler still serves its health and metrics routes:
                    # on loopback too, on a free port rather than 8787.
                    scheduler_kwargs={"dashboard_address": f"{LOOPBACK}:0"},
                )
            self.client = distributed.Client(self.cluster)
            self.description = f"dask: local cluster, {workers} worker processes"
        else:
            try:
                self.client = distributed.Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError, ValueError) as err:
                raise HarnessInputError(
                    f"could not connect to the Dask scheduler at {scheduler!r} "
                    f"({type(err).__name__}: {err}); is `dask scheduler` running there?"
                ) from None
            self.description = f"dask: scheduler {scheduler}"
        try:
            self._check_versions()
        except BaseException:
            self.close()
            raise

    def _check_versions(self) -> None:
        """Fail early if a connected worker runs another harness version (later ones: per task)."""
        others = {address: version for address, version in self.client.run(_harness_version).items()
                  if version != __version__}
        if others:
            raise HarnessInputError(
                f"Dask workers run another harness version than this one ({__version__}): {others}; "
                "install the same harness on every worker"
            )

    def map(self, fn, cells):
        """Yield `fn(cell)` for every cell, in the order they complete.

        `fn` must be importable on the workers (a module-level function such as
        `_runner.run_cell_guarded`). A task that fails outside `fn` (its worker died too often,
        or it raised) yields `_runner.task_failure(cell, error)` instead, so the rest go on.
        Closing the generator early (an interruption) cancels the cells not yet done.
        """
        cells = list(cells)
        if not cells:
            return
        self.client.register_plugin(BackendSetup({_backend(cell) for cell in cells}))
        # A token per call keeps task keys unique on a scheduler shared by several runs; the
        # cell key in the name makes the scheduler's logs point at the cell.
        token = uuid.uuid4().hex[:8]
        futures = {
            self.client.submit(_run_task, fn, cell, __version__, key=f"cell-{cell_key(cell)}-{token}",
                               retries=RETRIES, pure=False): cell
            for cell in cells
        }
        try:
            # One fetch per record, as each completes. (as_completed's with_results=True fetches
            # in batches, but can wait forever on a result: dask/distributed#7331.)
            for future in distributed.as_completed(futures):
                cell = futures.pop(future)
                try:
                    record = future.result()
                except Exception as err:  # noqa: BLE001 - KilledWorker, or an error outside fn
                    raise_if_interrupt(err)
                    record = task_failure(cell, err)
                yield record
        finally:
            if futures:
                self.client.cancel(list(futures))

    def close(self, interrupted: bool | None = None) -> None:
        """Close the client and the local cluster. After an interrupt, Dask's own logging is
        silenced first: its warnings about cells cancelled and workers stopped mid-task are the
        expected course of a stop the user asked for, and the command line says it in one line.

        interrupted : default: whether a KeyboardInterrupt is propagating through the caller (a
            `finally` block that closes the executor sees it in `sys.exc_info`).
        """
        if interrupted is None:
            interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
        if interrupted:
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(interrupted=exc_type is not None and issubclass(exc_type, KeyboardInterrupt))
