"""Declared claims wired into `harness compare`: parsed with the file, evaluated, reported, gated on.

A tiny experiment (the tutorial problem with 4 states, one engine, one tolerance) runs in well
under a second per cell; its claims are chosen so that one is certainly true (an adjoint within
100x rtol of a forward-sensitivity reference 1e4 times tighter) and one certainly false (the
same cell declared failed, while it is ok).
"""

import json

import numpy as np
import pytest

from harness.cli import CLAIM_FAILED, main
from harness.compare import load_experiment
from harness.compare._training import speed_ranking, step_times
from harness.errors import HarnessInputError

TINY = """
title = "tiny"

[problem]
name = "seed"
batch = 4

[grid]
engines = ["QuadratureAdjoint"]
solvers = ["DP5"]
tolerances = [1e-6]
memory = false
repeats = 2

[reference]
engine = "ForwardSensitivity"
solver = "DP8"
rtol = 1e-10
atol = 1e-10
check_engine = "none"

[plots]
figures = []

[[claims]]
says = "QuadratureAdjoint is within 100x rtol of the reference"
every = { engine = "QuadratureAdjoint" }
status = "ok"
metric = "dtheta.relative_error"
per = "rtol"
at_most = 100
"""

FALSE = """
[[claims]]
says = "QuadratureAdjoint fails on every cell"
every = { engine = "QuadratureAdjoint" }
status = "failed"
"""


@pytest.fixture(scope="module")
def false_claim_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("claims")
    path = folder / "tiny.toml"
    path.write_text(TINY + FALSE)
    out = folder / "out"
    code = main(["compare", str(path), "--out", str(out), "--no-progress"])
    return folder, out, code


def test_a_false_claim_is_reported_first_and_sets_the_exit_status(false_claim_run, capsys):
    folder, out, code = false_claim_run
    assert code == CLAIM_FAILED == 3
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    assert row["status"] == "ok"  # the claim is false because the cell is ok, not because it did not run
    verdicts = {c["says"]: c["holds"] for c in results["claims"]}
    assert verdicts == {"QuadratureAdjoint is within 100x rtol of the reference": True,
                        "QuadratureAdjoint fails on every cell": False}
    report = (out / "report.md").read_text()
    assert report.index("## Claims") < report.index("## Summary")
    failed = report.index("✗ QuadratureAdjoint fails on every cell (0 of 1 rows have status failed")
    assert failed < report.index("✓ QuadratureAdjoint is within 100x rtol")
    assert "1 of 2 declared claims FAIL" in report


def test_the_same_grid_with_true_claims_exits_0(false_claim_run):
    folder, out, _ = false_claim_run
    path = folder / "true.toml"
    path.write_text(TINY)
    assert main(["compare", str(path), "--out", str(out), "--no-progress"]) == 0  # cells resumed
    results = json.loads((out / "results.json").read_text())
    assert [c["holds"] for c in results["claims"]] == [True]
    assert results["timing"]["cells_resumed"] == 2 and results["timing"]["cells_run"] == 0


def test_dz0_is_scored_against_atol_and_times_are_medians_of_repeats(false_claim_run):
    _, out, _ = false_claim_run
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    cells = {c["role"]: c for c in results["cells"]}
    error = np.max(np.abs(np.subtract(cells["grid"]["dz0"], cells["reference"]["dz0"])))
    assert row["dz0"]["max_abs_error"] == error
    assert row["dz0"]["max_abs_error_per_atol"] == error / 1e-6
    assert row["dz0"]["reference_max_abs"] == np.max(np.abs(cells["reference"]["dz0"]))
    assert row["repeats"] == 2
    assert row["seconds_min"] <= row["seconds"] <= row["seconds_max"]


def test_a_bad_claim_is_rejected_when_the_file_is_read(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(TINY + '[[claims]]\nsays = "x"\nmonotone = "n_rhs"\nover = "rtol"\ndirection = "up"\n')
    with pytest.raises(HarnessInputError, match=r"\[\[claims\]\]\[1\]\.direction = 'up'"):
        load_experiment(path)
    assert main(["compare", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_step_times_and_a_ranking_only_beyond_the_spread():
    history = [{"step": 0, "seconds": 0.0}, {"step": 5, "seconds": 0.05},
               {"step": 10, "seconds": 0.08}, {"step": 15, "seconds": 0.14}]
    times = step_times(history)
    assert times["step_intervals"] == 3
    assert times["step_seconds_min"] == pytest.approx(0.006)  # 0.03 s over 5 steps
    assert times["step_seconds_median"] == pytest.approx(0.01)
    assert times["step_seconds_max"] == pytest.approx(0.012)
    fast = {"engine": "A", "step_seconds_median": 0.010, "step_seconds_min": 0.009, "step_seconds_max": 0.011}
    close = {"engine": "B", "step_seconds_median": 0.0102, "step_seconds_min": 0.0095, "step_seconds_max": 0.012}
    slow = {"engine": "C", "step_seconds_median": 0.020, "step_seconds_min": 0.018, "step_seconds_max": 0.025}
    assert speed_ranking([close, fast]).startswith("No engine is fastest per step")
    assert speed_ranking([slow, fast]).startswith("Fastest per step: A")


@pytest.mark.parametrize("claim, message", [
    # a misspelled metric, status, pair_by or engine used to match no row and hold vacuously
    ('every = { engine = "QuadratureAdjoint" }\nmetric = "dtheta.relative_eror"\nat_most = 1',
     r"metric = 'dtheta.relative_eror': no such field in the gradient rows \(did you mean 'dtheta.relative_error'\?\)"),
    ('none = { engine = "QuadratureAdjoint" }\nstatus = "okk"', r"unknown status 'okk'; a status is one of"),
    ('ratio = "n_rhs"\nnumerator = { solver = "DP5" }\ndenominator = { solver = "DP5" }\n'
     'pair_by = ["engnie"]\nat_least = 1',
     r"pair_by\[0\] = 'engnie': no such field"),
    ('every = { engine = "QuadratureAdjiont" }\nstatus = "ok"',
     r"every.engine = 'QuadratureAdjiont': not a value of this experiment's rows; "
     r"expected one of \['QuadratureAdjoint'\]"),
    ('every = { rtol = { at_most = 1e-9 } }\nstatus = "ok"', r"matches none of this experiment's values \[1e-06\]"),
    ('every = { kind = "training" }\nstatus = "ok"',
     r"kind = 'training': this experiment's rows are of kinds \['gradient'\]"),
    ('every = { engine = "QuadratureAdjoint" }\nstatus = "ok"\ncovers = ["tolerance"]', r"covers\[0\] = 'tolerance'"),
])
def test_a_misspelled_name_is_refused_when_the_file_is_read(tmp_path, claim, message, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(TINY + f'[[claims]]\nsays = "x"\n{claim}\n')
    with pytest.raises(HarnessInputError, match=message):
        load_experiment(path)
    assert main(["compare", str(path), "--out", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
