"""Scaling of the Dask executor: one grid in-process, on 1 worker and on 2 workers, side by side.

Usage: python benchmarks/bench_dask.py [EXPERIMENT.toml] [--workers 1 2 ...]

Each configuration runs the same cells from an empty cell store (nothing resumed) after a warm-up
that builds the problems in every process that will run cells, so the timings are of the cells and
of the path they take, not of one-time set-up (the cluster's start-up is printed on its own line):

- speed-up (N workers) = wall time on 1 worker / wall time on N workers;
- per-cell overhead    = (wall time on 1 worker - wall time in-process) / cells: both run the cells
                         one at a time, so the difference is what the distributed path adds to each
                         cell (submission, scheduling, pickling the spec and the record, the round
                         trip to the client).

It also checks that every configuration produced the same records (provenance aside).
Default grid: the seed problem, harness adjoints only, a tolerance sweep over two solvers and two
seeds: many short cells (tens of ms), the hard case for a distributed executor.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tomllib
from pathlib import Path

from harness.compare._cells import build_problem_from_spec
from harness.compare._experiment import comparable
from harness.compare._runner import CellStore, experiment_cells, run_cells
from harness.compare.spec import load_experiment, parse_experiment

GRID = """
title = "bench_dask: a tolerance sweep of short cells"

[problem]
name = "seed"
batch = 100

[grid]
engines = ["BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint"]
solvers = ["DP5", "BS3"]
tolerances = [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9]
seeds = [0, 1]

[reference]
engine = "ForwardSensitivity"
solver = "DP8"
rtol = 1e-10
atol = 1e-10

[plots]
figures = []
"""


def _warm(experiment) -> None:
    for seed in experiment.seeds:
        build_problem_from_spec(experiment.problem, seed)


def _timed(cells, executor) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        records = run_cells(cells, CellStore(Path(tmp)), executor=executor, progress=False)
        return time.perf_counter() - started, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", help="experiment file (default: a built-in grid)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds; each configuration's best round is reported (default 3)")
    args = parser.parse_args()
    from harness.compare import DaskExecutor

    experiment = load_experiment(args.experiment) if args.experiment else parse_experiment(
        tomllib.loads(GRID))
    cells = experiment_cells(experiment)
    print(f"grid: {experiment.title}: {len(cells)} cells; machine: {os.cpu_count()} CPUs; "
          f"best of {args.repeats} rounds")
    _warm(experiment)
    # Round-robin, so that a slow spell of the machine slows every configuration alike; each
    # cluster lives only for its own run, because its scheduler and nannies run in this process
    # and would otherwise compete with the in-process runs for the GIL.
    walls = {name: [] for name in [None, *args.workers]}
    startup = {n: [] for n in args.workers}
    records = {}
    for _ in range(args.repeats):
        wall, records[None] = _timed(cells, None)
        walls[None].append(wall)
        for n in args.workers:
            started = time.perf_counter()
            with DaskExecutor(workers=n) as executor:
                startup[n].append(time.perf_counter() - started)
                executor.client.run(_warm, experiment)  # every worker builds the problems once
                wall, records[n] = _timed(cells, executor)
            walls[n].append(wall)
    best = {n: min(times) for n, times in walls.items()}
    reference = [comparable(r) for r in records[None]]
    print(f"in-process        {best[None]:7.2f} s   ({best[None] / len(cells) * 1e3:.1f} ms per cell)")
    for n in args.workers:
        same = [comparable(r) for r in records[n]] == reference
        print(f"dask, {n} worker{'s' if n > 1 else ' '}   {best[n]:7.2f} s   (cluster start-up "
              f"{min(startup[n]):.1f} s; records identical to in-process: {'yes' if same else 'NO'})")
    if 1 in best:
        overhead = (best[1] - best[None]) / len(cells)
        print(f"per-cell overhead of the distributed path (1 worker vs in-process): "
              f"{overhead * 1e3:.1f} ms")
        for n in args.workers:
            if n > 1:
                print(f"speed-up, {n} workers vs 1: {best[1] / best[n]:.2f}x "
                      f"(vs in-process: {best[None] / best[n]:.2f}x)")


if __name__ == "__main__":
    main()
