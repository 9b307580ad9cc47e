"""Experiment files: valid ones parse, bad ones fail with one line naming the problem, before any run."""

from pathlib import Path

import pytest

from harness.compare import load_experiment, run_experiment
from harness.compare._runner import experiment_cells
from harness.errors import HarnessInputError

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.toml"))

VALID = """
[problem]
name = "seed"
batch = 4

[grid]
engines = ["BacksolveAdjoint", { engine = "InterpolatingAdjoint", checkpointing = true }]
solvers = ["DP5"]
tolerances = [1e-4, [1e-6, 1e-8]]
"""


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_experiments_are_valid(path):
    experiment = load_experiment(path)
    assert experiment_cells(experiment)


def test_valid_file(tmp_path):
    experiment = load_experiment(write(tmp_path, VALID))
    assert [e.label for e in experiment.engines] == [
        "BacksolveAdjoint", "InterpolatingAdjoint(checkpointing=True)"]
    assert experiment.tolerances == ((1e-4, 1e-4), (1e-6, 1e-8))
    assert experiment.seeds == (0,) and experiment.reference.engine.name == "ForwardSensitivity"
    # 1 reference + 1 check + 2 engines x 2 tolerances
    assert len(experiment_cells(experiment)) == 6


@pytest.mark.parametrize("edit, message", [
    (("[grid]", "[grid]\ncolour = 1"), "unknown key ['colour']: valid keys are"),
    (('batch = 4', 'batch = "four"'), "[problem] batch: expected an integer >= 1"),
    (('"BacksolveAdjoint",', '"ReverseDiffAdjoint",'), "unknown engine 'ReverseDiffAdjoint': expected one of"),
    (('"BacksolveAdjoint",', '"torchdiffeq:Backsolve",'), "unknown engine 'torchdiffeq:Backsolve'"),
    (("checkpointing = true", "checkpoints = 3"), "unknown option 'checkpoints' for InterpolatingAdjoint"),
    (('solvers = ["DP5"]', "solvers = []"), "[grid] solvers: is empty"),
    (('solvers = ["DP5"]', 'solvers = ["RK4"]'), "unknown value 'RK4': expected one of"),
    (("tolerances = [1e-4, [1e-6, 1e-8]]", "tolerances = [-1.0]"), "expected a finite number > 0"),
    (('name = "seed"', 'name = "seeds"'), "unknown value 'seeds'"),
    (("[grid]", "[plots]\nfigures = ['pie']\n[grid]"), "[plots] figures: unknown value 'pie'"),
    (("[problem]", "[problem]\nfile = 'x.npz'"), "exactly one of 'name'"),
    (("[grid]", "[training]\nsteps = 3\n[grid]"), "[training]: missing key ['engines']"),
])
def test_bad_files_fail_with_one_line_naming_the_problem(tmp_path, edit, message):
    path = write(tmp_path, VALID.replace(*edit))
    with pytest.raises(HarnessInputError) as info:
        load_experiment(path)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_bad_file_runs_nothing(tmp_path):
    path = write(tmp_path, VALID.replace("solvers = [\"DP5\"]", "solvers = []"))
    out = tmp_path / "out"
    with pytest.raises(HarnessInputError):
        run_experiment(path, out)
    assert not (out / "cells").exists()


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(HarnessInputError, match="not valid TOML"):
        load_experiment(write(tmp_path, "[grid\n"))
    with pytest.raises(HarnessInputError, match="does not exist"):
        load_experiment(tmp_path / "absent.toml")


def test_grid_exclude_leaves_out_named_combinations_and_refuses_unknown_names():
    """[grid] exclude removes exactly the named engine x solver cells (every tolerance and seed), and
    a name that is not in the grid, or a missing reason, is refused in one line."""
    import tomllib

    from harness.compare._gradient import GradientKind
    from harness.compare.spec import parse_experiment

    text = """
[problem]
name = "seed"
batch = 4
[grid]
engines = ["BacksolveAdjoint", "QuadratureAdjoint"]
solvers = ["DP5", "BS3"]
tolerances = [1e-4, 1e-6]
EXCLUDE
"""
    full = parse_experiment(tomllib.loads(text.replace("EXCLUDE", "")))
    cut = parse_experiment(tomllib.loads(text.replace(
        "EXCLUDE", 'exclude = [{ engine = "QuadratureAdjoint", solver = "BS3", why = "a test" }]')))
    kind = GradientKind()
    grid_cells = lambda e: {(c.engine.label, c.solver, c.rtol) for c in kind.cells(e, e.grid) if c.role == "grid"}  # noqa: E731
    left_out = {("QuadratureAdjoint", "BS3", 1e-4), ("QuadratureAdjoint", "BS3", 1e-6)}
    assert grid_cells(full) - grid_cells(cut) == left_out
    assert len(grid_cells(cut)) == len(grid_cells(full)) - 2
    for bad, words in (('{ engine = "GaussAdjoint", solver = "BS3", why = "x" }', "not in the grid"),
                       ('{ engine = "QuadratureAdjoint", solver = "BS3" }', "missing key"),
                       ('{ engine = "QuadratureAdjoint", solver = "BS3", why = " " }', "saying why")):
        with pytest.raises(HarnessInputError, match=words):
            parse_experiment(tomllib.loads(text.replace("EXCLUDE", f"exclude = [{bad}]")))
