"""The cross-validation matrix aggregated over two seeds (harness/compare/_gradient.py `_matrices`).

Each cell of an engine's row in the reference's column is that engine's error against the
reference, *maximised* over the seeds (the cosine *minimised*), at the tightest tolerance only.
The grid rows of results.json hold each (engine, tolerance, seed) cell's own error against the
reference, so the matrix is checked against an aggregation written here from the rows, on an
experiment whose two seeds give different errors (each seed is another random MLP and its data).
"""

from __future__ import annotations

import json

import pytest

from harness.compare import run_experiment

TWO_SEEDS = """
title = "two seeds"

[problem]
name = "seed"
batch = 8

[grid]
engines = ["BacksolveAdjoint", "QuadratureAdjoint"]
solvers = ["DP5"]
tolerances = [1e-2, 1e-4]
seeds = [0, 1]

[reference]
engine = "ForwardSensitivity"
solver = "DP8"
rtol = 1e-10
atol = 1e-10
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-seeds")
    (folder / "two_seeds.toml").write_text(TWO_SEEDS)
    run_experiment(folder / "two_seeds.toml", folder / "out", progress=False)
    return json.loads((folder / "out" / "results.json").read_text())


def test_the_matrix_takes_the_worst_seed_at_the_tightest_tolerance(results):
    matrix = results["matrices"]["DP5"]
    assert (matrix["rtol"], matrix["labels"][1:]) == (1e-4, ["BacksolveAdjoint", "QuadratureAdjoint"])
    assert matrix["labels"][0].endswith("(reference)")
    rows = [r for r in results["rows"] if r["rtol"] == 1e-4]
    for i, engine in enumerate(matrix["labels"][1:], start=1):
        for w in ("dtheta", "dz0"):
            by_seed = {r["seed"]: r[w] for r in rows if r["engine"] == engine}
            assert sorted(by_seed) == [0, 1]
            errors = [by_seed[s]["relative_error"] for s in (0, 1)]
            cosines = [by_seed[s]["cosine"] for s in (0, 1)]
            # the seeds disagree, so the worst one is a choice the matrix has to make
            assert errors[0] != errors[1] and cosines[0] != cosines[1]
            assert matrix[w]["relative_error"][i][0] == max(errors)
            assert matrix[w]["cosine"][i][0] == min(cosines)
            # the looser tolerance's cells are not in the matrix: its errors are larger
            loose = [r[w]["relative_error"] for r in results["rows"] if r["engine"] == engine and r["rtol"] == 1e-2]
            assert min(loose) > max(errors)
            # the diagonal is the engine against itself on each seed
            assert matrix[w]["relative_error"][i][i] == 0.0


def test_the_engines_against_each_other_are_symmetric_in_cosine(results):
    matrix = results["matrices"]["DP5"]
    for w in ("dtheta", "dz0"):
        cosine = matrix[w]["cosine"]
        for i in range(3):
            for j in range(3):
                assert cosine[i][j] == pytest.approx(cosine[j][i], abs=1e-15)
