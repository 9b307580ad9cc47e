"""Experiment cells on a Dask cluster: same results as in-process, through worker deaths and resumes.

Every cluster here is local, on 127.0.0.1, and every address the tests touch is a loopback one.
The grid is the stiff problem with 4 states and explicit solvers: each cell takes a few tenths of a
second, slow enough that cells are in flight when a worker is killed; eleven cells in all
(the reference and its check, 8 grid cells of which 2 are Julia's, one training run).
"""

import argparse
import functools
import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

distributed = pytest.importorskip(
    "distributed", reason='needs the dask extra (pip install -e ".[dask]")'
)

from harness.compare import load_experiment, run_experiment  # noqa: E402
from harness.compare._cells import cell_key  # noqa: E402
from harness.compare.cli import register  # noqa: E402
from harness.compare._dask import DaskExecutor  # noqa: E402
from harness.compare._gradient import GradientCell  # noqa: E402
from harness.compare._experiment import comparable  # noqa: E402
from harness.compare._runner import CellStore, experiment_cells, run_cells  # noqa: E402
from harness.compare.spec import EngineSpec  # noqa: E402
from harness.errors import HarnessInputError  # noqa: E402

GRID = """
title = "dask test grid"

[problem]
name = "stiff"
batch = 4

[grid]
engines = ["BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint",
           "julia:InterpolatingAdjoint"]
solvers = ["BS3"]
tolerances = [1e-3, 1e-4]
memory = false

[reference]
engine = "ForwardSensitivity"
solver = "RadauIIA5"
rtol = 1e-8
atol = 1e-8

[training]
engines = ["QuadratureAdjoint"]
solver = "RadauIIA5"
steps = 2
log_every = 1

[plots]
figures = []
"""
N_CELLS, N_JULIA = 11, 2
RUN_LIMIT = 120.0  # seconds: a hung cluster fails the test instead of hanging CI


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "grid.toml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="module")
def in_process(grid_file, tmp_path_factory):
    """The grid run the ordinary way: the yardstick for every distributed run."""
    out = tmp_path_factory.mktemp("in_process")
    run_experiment(grid_file, out, progress=False)
    return out, json.loads((out / "results.json").read_text())


def _bounded(call):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result(timeout=RUN_LIMIT)


def _held(fn, key, cell):
    """On a worker: run `fn(cell)`, but first, for the cell `key`, say which process holds it and
    wait until the test has killed that process (the events are the cluster's, not sleeps)."""
    if cell_key(cell) == key and not distributed.Event("release").is_set():
        distributed.Variable("held-pid").set(os.getpid())
        distributed.Event("held").set()
        distributed.Event("release").wait()
    return fn(cell)


class HoldsOneCell(DaskExecutor):
    """A DaskExecutor whose worker holds the cell `key` until released."""

    def __init__(self, key, **kwargs):
        super().__init__(**kwargs)
        self.key = key

    def map(self, fn, cells):
        return super().map(functools.partial(_held, fn, self.key), cells)


def test_a_worker_killed_mid_cell_loses_no_cell(grid_file, in_process, tmp_path):
    # A cluster started apart from the harness, reached by its address: the --scheduler path.
    cells = experiment_cells(load_experiment(grid_file))
    target = cell_key(next(c for c in cells if isinstance(c, GradientCell) and c.engine.backend == "harness"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        executor = HoldsOneCell(target, scheduler=cluster.scheduler_address)
        killed = {}

        def kill_the_holding_worker(record, resumed):
            # The held cell cannot finish before the kill, so the run is still going: wait for a worker
            # to hold it, kill that worker mid-cell, then let the cell run wherever it is retried.
            if killed or resumed:
                return
            assert distributed.Event("held", client=executor.client).wait(RUN_LIMIT / 2), "no worker held the cell"
            pid = distributed.Variable("held-pid", client=executor.client).get()
            os.kill(pid, signal.SIGKILL)
            killed.update(pid=pid, cells={target})
            distributed.Event("release", client=executor.client).set()

        with executor:
            results = _bounded(lambda: run_experiment(grid_file, tmp_path, progress=False,
                                                      executor=executor,
                                                      on_record=kill_the_holding_worker))
    assert killed, "the held cell's worker was not killed"
    records = {r["key"]: r for r in results["cells"]}
    # The cells that were running on the killed worker were run again by another process ...
    for key in killed["cells"]:
        assert records[key]["worker"]["pid"] != killed["pid"]
        assert records[key]["status"] in ("ok", "failed")  # a result, not a lost task
    # ... and every cell has its result, the same as in-process (provenance aside).
    assert results["timing"]["cells_run"] == len(results["cells"]) == N_CELLS
    assert not any(r.get("rerun") for r in results["cells"])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert comparable(on_disk) == comparable(in_process[1])


def test_cli_workers_2_gives_the_in_process_results(grid_file, in_process, tmp_path, julia_available):
    # Three cells finished by an earlier, interrupted run: resumed, not run again.
    earlier = sorted((in_process[0] / "cells").glob("*.json"))[:3]
    (tmp_path / "cells").mkdir()
    for path in earlier:
        shutil.copy(path, tmp_path / "cells" / path.name)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["compare", str(grid_file), "--out", str(tmp_path), "--workers", "2",
                              "--no-progress"])
    assert _bounded(lambda: args.func(args)) == 0

    results = json.loads((tmp_path / "results.json").read_text())
    assert comparable(results) == comparable(in_process[1])
    assert results["timing"]["cells_resumed"] == 3 and results["timing"]["cells_run"] == N_CELLS - 3
    assert results["timing"]["executor"] == "dask: local cluster, 2 worker processes"
    ran = [r for r in results["cells"] if f"{r['key']}.json" not in {p.name for p in earlier}]
    assert len(ran) == N_CELLS - 3
    for record in ran:
        assert record["worker"]["address"].startswith("tcp://127.0.0.1:")
        julia = record["spec"]["engine"]["backend"] == "julia"
        # Per-worker set-up: each worker checks Julia for its Julia cells and says what it found.
        assert record.get("backend_available") == (julia_available if julia else None)
        assert (record["status"] == "unavailable") == (julia and not julia_available)
    # Unavailable cells are not stored (installing Julia must make them run next time).
    stored = N_CELLS if julia_available else N_CELLS - N_JULIA
    assert len(list((tmp_path / "cells").glob("*.json"))) == stored


@pytest.fixture(scope="module")
def local_executor():
    with DaskExecutor(workers=2) as executor:
        yield executor


def test_the_local_cluster_listens_on_loopback_only(local_executor):
    psutil = pytest.importorskip("psutil")
    pids = {os.getpid(), *local_executor.client.run(os.getpid).values()}  # scheduler+nannies, workers
    assert len(pids) == 3
    listening = [c for pid in pids for c in psutil.Process(pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
    assert all(a.startswith("tcp://127.0.0.1:") for a in local_executor.client.scheduler_info()["workers"])


def test_a_cell_that_raises_is_a_failed_record_and_the_rest_go_on(grid_file, local_executor,
                                                                  tmp_path):
    good = experiment_cells(load_experiment(grid_file))[0]
    # An engine name that no validation saw: build_engine raises KeyError inside the task.
    bad = GradientCell(problem=good.problem, seed=0, engine=EngineSpec("harness", "NoSuchAdjoint"),
                       solver="BS3", forward_solver="BS3", rtol=1e-3, atol=1e-3)
    store = CellStore(tmp_path)
    records = _bounded(lambda: run_cells([bad, good], store, executor=local_executor, progress=False))
    assert records[0]["status"] == "failed" and "KeyError" in records[0]["reason"]
    assert records[0]["rerun"] and store.load(bad) is None  # reported, not stored
    assert records[1]["status"] == "ok" and store.load(good) is not None


def test_an_unreachable_scheduler_is_a_one_line_input_error():
    started = time.perf_counter()
    with pytest.raises(HarnessInputError, match="could not connect to the Dask scheduler") as info:
        DaskExecutor(scheduler="tcp://127.0.0.1:9", connect_timeout=1)  # nothing listens on :9
    assert "\n" not in str(info.value) and time.perf_counter() - started < 30


def test_a_local_workers_heartbeat_into_a_closed_scheduler_is_not_logged(caplog):
    """The defect: on Ctrl-C to the process group, a worker whose heartbeat fell between the scheduler's
    close and its own logged "Failed to communicate with scheduler during heartbeat." with a 50-line
    traceback, and `harness compare` printed that instead of its one line. The local workers' logs
    drop it (and a cancelled cell's warning); every other worker error still shows."""
    import logging

    from harness.compare._dask import quiet_worker_logs

    added = quiet_worker_logs()
    try:
        with caplog.at_level(logging.WARNING, logger="distributed.worker"):
            worker, state_machine = logging.getLogger("distributed.worker"), logging.getLogger(
                "distributed.worker.state_machine")
            try:
                raise OSError("Timed out trying to connect")
            except OSError:
                worker.exception("Failed to communicate with scheduler during heartbeat.")
            state_machine.warning("Async instruction for <Task cancelled> ended with CancelledError")
            worker.error("Unexpected exception during heartbeat. Closing worker.")
        assert [r.getMessage() for r in caplog.records] == ["Unexpected exception during heartbeat. Closing worker."]
    finally:
        for logger, log_filter in added:
            logger.removeFilter(log_filter)
