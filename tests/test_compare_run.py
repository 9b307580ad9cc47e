"""Running a small experiment end to end: report, results, figures, resume, unavailable rows, executors.

The problem is the tutorial's with 8 states instead of 500: rows evolve independently, so the
comparison exercises every code path while each gradient takes milliseconds.
"""

import argparse
import json
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.compare import load_experiment, run_experiment
from harness.compare._cells import cell_key, run_cell
from harness.compare._runner import experiment_cells
from harness.compare.cli import register
from harness.errors import HarnessInputError

SMALL = """
title = "small"

[problem]
name = "seed"
batch = 8

[grid]
engines = ["BacksolveAdjoint", "QuadratureAdjoint", "julia:GaussAdjoint"]
solvers = ["DP5"]
tolerances = [1e-4, 1e-7]

[reference]
engine = "ForwardSensitivity"
solver = "DP8"
rtol = 1e-10
atol = 1e-10

[training]
engines = ["InterpolatingAdjoint", "julia:GaussAdjoint"]
steps = 3
log_every = 1
"""


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "small.toml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def finished(experiment_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, run_experiment(experiment_file, out, progress=False)


def test_report_is_complete(finished):
    out, results = finished
    for name in ("report.md", "results.json", "crossval_DP5.png", "work_precision.png", "memory.png",
                 "training.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "## Summary" in report and "![work-precision](work_precision.png)" in report
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["provenance"]["harness_version"] and "settings" in on_disk["provenance"]
    assert on_disk["provenance"]["seeds"] == [0]
    rows = {(r["engine"], r["rtol"]): r for r in on_disk["rows"]}
    # Errors fall with the tolerance; at 1e-7 the adjoints are within 100 x rtol of the reference
    # (the report's own agreement criterion).
    for engine in ("BacksolveAdjoint", "QuadratureAdjoint"):
        loose, tight = rows[(engine, 1e-4)], rows[(engine, 1e-7)]
        assert tight["dtheta"]["relative_error"] < loose["dtheta"]["relative_error"]
        assert tight["dtheta"]["relative_error"] < 100 * 1e-7
        assert tight["dtheta"]["cosine"] > 1 - 1e-10
        assert tight["dtheta"]["worst_name"].startswith(("W", "b"))
        assert tight["peak_memory_bytes"] > 0


def test_unavailable_engines_are_rows_with_a_reason(finished, julia_available):
    _, results = finished
    julia = [r for r in results["rows"] if r["engine"] == "julia:GaussAdjoint"]
    assert len(julia) == 2
    training = {t["engine"]: t for t in results["training"]}
    if julia_available:  # then they are ordinary rows
        assert all(r["status"] == "ok" for r in julia) and training["julia:GaussAdjoint"]["status"] == "ok"
    else:
        assert all(r["status"] == "unavailable" and r["reason"] for r in julia)
        assert training["julia:GaussAdjoint"]["status"] == "unavailable"
    assert training["InterpolatingAdjoint"]["status"] == "ok"
    assert len(training["InterpolatingAdjoint"]["history"]) == 4  # steps 0..3, log_every 1


def test_resume_reuses_finished_cells(experiment_file, finished, julia_available):
    out, first = finished
    cells = sorted((out / "cells").glob("*.json"))
    # Unavailable cells (Julia's 2 grid cells and its training run, where Julia is missing) are not
    # stored: installing the missing backend must make them run.
    unavailable = 0 if julia_available else 3
    assert len(cells) == first["timing"]["cells_run"] - unavailable
    cells[0].unlink()
    again = run_experiment(experiment_file, out, progress=False)
    assert again["timing"]["cells_run"] == 1 + unavailable
    assert again["timing"]["cells_resumed"] == len(cells) - 1


def test_interrupted_run_keeps_finished_cells(experiment_file, tmp_path):
    class StopsAfterTwo:
        def map(self, fn, iterable):
            for i, item in enumerate(iterable):
                if i == 2:
                    raise KeyboardInterrupt
                yield fn(item)

    with pytest.raises(KeyboardInterrupt):
        run_experiment(experiment_file, tmp_path, executor=StopsAfterTwo())
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2
    results = run_experiment(experiment_file, tmp_path, progress=False)
    assert results["timing"]["cells_resumed"] == 2


def test_cells_are_picklable_and_run_on_any_executor(experiment_file, tmp_path):
    cells = experiment_cells(load_experiment(experiment_file))
    assert [cell_key(c) for c in pickle.loads(pickle.dumps(cells))] == [cell_key(c) for c in cells]
    record = run_cell(cells[0])
    json.dumps(record)  # JSON-ready
    assert record["status"] == "ok" and len(record["dtheta"]) == 17
    with ThreadPoolExecutor(2) as pool:
        results = run_experiment(experiment_file, tmp_path, executor=pool, progress=False)
    assert results["timing"]["cells_run"] == len(cells)


def test_problem_file_experiment(tmp_path):
    from harness.problems import save_problem
    from harness.problems import build_problem

    save_problem(build_problem("multi_time", seed=3, batch=4), tmp_path / "p.npz")
    path = tmp_path / "file.toml"
    path.write_text('[problem]\nfile = "p.npz"\n[grid]\nengines = ["InterpolatingAdjoint"]\n'
                    'solvers = ["DP5"]\ntolerances = [1e-8]\n[plots]\nfigures = []\n')
    results = run_experiment(path, tmp_path / "out", progress=False)
    (row,) = results["rows"]
    assert row["dtheta"]["relative_error"] < 1e-6


def test_cli(experiment_file, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["compare", str(experiment_file), "--out", str(tmp_path), "--quick",
                              "--no-progress"])
    assert args.func(args) == 0
    assert "report:" in capsys.readouterr().out
    args = parser.parse_args(["compare", str(tmp_path / "x.txt")])
    with pytest.raises(HarnessInputError, match="expected a .toml file"):
        args.func(args)
