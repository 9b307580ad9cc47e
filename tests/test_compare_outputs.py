"""What `harness compare` leaves on disk: tables that render, figures of this experiment only, cells
that say which code computed them and are keyed on what they read, folders only where asked.

The experiment is the tutorial problem with 4 states and one engine: each cell takes milliseconds.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from harness.compare import load_experiment, run_experiment
from harness.compare._cells import computed_by
from harness.compare.cli import default_out
from harness.errors import HarnessInputError

ROOT = Path(__file__).resolve().parents[1]

TINY = """
title = "tiny"
description = "Adam at lr = {training[lr]:g} for {training[steps]} steps; a literal {{brace}}."

[problem]
%s

[grid]
engines = ["QuadratureAdjoint"]
solvers = ["DP5"]
tolerances = [1e-6]
memory = false
repeats = 1

[reference]
check_engine = "none"

[training]
engines = ["QuadratureAdjoint"]
steps = 2
lr = 0.004
log_every = 1

[plots]
figures = %s

[[claims]]
says = "QuadratureAdjoint is within 100x rtol"
every = { engine = "QuadratureAdjoint" }
status = "ok"
metric = "dtheta.relative_error"
per = "rtol"
at_most = 100
"""
CATALOGUE = 'name = "seed"\nbatch = 4'


def write(folder: Path, problem=CATALOGUE, figures='["heatmap"]', extra="") -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY % (problem, figures) + extra)
    return path


# ------------------------------------------------------------------------------ tables that render
_PIPE = re.compile(r"(?<!\\)\|")


def table_problems(markdown: str) -> list[str]:
    """Why the Markdown's tables do not render as written (empty when they do): a line that starts
    with `|` but is not part of a table (its header and delimiter rows disagree), or a row with
    more or fewer cells than its header (every later column shifted under the wrong heading)."""
    lines = markdown.splitlines()
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    in_table = set()
    problems = []
    for token in tokens:
        if token.type == "table_open":
            start, end = token.map
            in_table.update(range(start, end))
            counts = [len(_PIPE.findall(re.sub(r"`[^`]*`", "", lines[i]))) for i in range(start, end)]
            for i, count in zip(range(start, end), counts):
                if count != counts[0]:
                    problems.append(f"line {i + 1}: {count - 1} cells where the header has {counts[0] - 1}")
    for i, line in enumerate(lines):
        if line.startswith("|") and i not in in_table:
            problems.append(f"line {i + 1} is not part of a rendered table: {line[:80]}")
    return problems


def test_the_table_check_catches_the_unescaped_header_of_the_old_reports():
    broken = "| a | max|Δ dL/dz0| / atol | b |\n|---|---|---|\n| 1 | 2 | 3 |\n"
    assert table_problems(broken)
    fixed = "| a | max\\|Δ dL/dz0\\| / atol | b |\n|---|---|---|\n| 1 | 2 | 3 |\n"
    assert table_problems(fixed) == []
    short = "| a | b |\n|---|---|\n| 1 |\n"
    assert table_problems(short) == ["line 3: 1 cells where the header has 2"]


SHIPPED = sorted(p.name for p in (ROOT / "reports" / "compare").iterdir() if (p / "report.md").is_file())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_report_renders_every_row_under_its_heading(name):
    report = (ROOT / "reports" / "compare" / name / "report.md").read_text(encoding="utf-8")
    assert table_problems(report) == []


# ---------------------------------------------------------------------------- a run and its cells
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    path = write(folder, figures='["heatmap", "training"]')
    out = folder / "out"
    return path, out, run_experiment(path, out, progress=False)


def test_a_generated_report_renders_and_quotes_its_settings_from_the_experiment(run):
    _, out, results = run
    report = (out / "report.md").read_text(encoding="utf-8")
    assert table_problems(report) == []
    assert "Adam at lr = 0.004 for 2 steps; a literal {brace}." in report
    # --steps overrides the experiment's length: the description quotes the run's, not the file's
    path, _, _ = run
    again = run_experiment(path, out.parent / "short", progress=False, training_steps=1)
    assert "for 1 steps" in (out.parent / "short" / "report.md").read_text(encoding="utf-8")
    assert again["claims"][0]["holds"]


def test_a_description_quoting_a_setting_that_does_not_exist_is_refused(tmp_path):
    path = write(tmp_path)
    path.write_text(path.read_text().replace("{training[lr]:g}", "{training[learning_rate]}"))
    with pytest.raises(HarnessInputError, match=r"description: cannot fill in .*learning_rate"):
        load_experiment(path)


def test_each_cell_records_the_commit_and_version_that_computed_it(run):
    _, out, results = run
    here = computed_by()
    for record in results["cells"]:
        assert record["computed"]["commit"] == here["commit"]
        assert record["computed"]["harness_version"] == here["harness_version"]
        assert re.match(r"\d{4}-\d\d-\d\dT", record["computed"]["at"])
    assert results["timing"]["from_other_commits"] == []
    assert "Every cell was computed by this code" in (out / "report.md").read_text(encoding="utf-8")


def test_resumed_cells_of_another_commit_are_listed_with_their_commit(run, tmp_path):
    path, out, _ = run
    copy = tmp_path / "out"
    copy.mkdir()
    (copy / "cells").mkdir()
    for cell in (out / "cells").glob("*.json"):
        record = json.loads(cell.read_text())
        record["computed"] = {"commit": "0123abc", "harness_version": "0.0.1", "at": "2020-01-02T03:04:05+00:00"}
        (copy / "cells" / cell.name).write_text(json.dumps(record))
    results = run_experiment(path, copy, progress=False)
    assert results["timing"]["cells_run"] == 0
    stale = results["timing"]["from_other_commits"]
    assert len(stale) == len(results["cells"]) and {c["commit"] for c in stale} == {"0123abc"}
    report = (copy / "report.md").read_text(encoding="utf-8")
    assert f"**{len(stale)} cells were resumed from `cells/` as computed by another commit**" in report
    assert "## Cells from another commit" in report and "| 0123abc | 0.0.1 | 2020-01-02T03:04:05+00:00 |" in report
    assert "times in this report are of this machine" not in report


def test_a_malformed_cell_record_is_recomputed_with_one_line(run, tmp_path, capsys):
    path, out, _ = run
    copy = tmp_path / "out"
    (copy / "cells").mkdir(parents=True)
    cells = sorted((out / "cells").glob("*.json"))
    for cell in cells:
        (copy / "cells" / cell.name).write_text(cell.read_text())
    grid = next(c for c in cells if json.loads(c.read_text())["role"] == "grid")
    record = json.loads(grid.read_text())
    del record["dtheta"]
    (copy / "cells" / grid.name).write_text(json.dumps(record))
    capsys.readouterr()
    results = run_experiment(path, copy, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{copy / 'cells' / grid.name}: malformed record (missing ['dtheta']); recomputing the cell"]
    assert results["timing"]["cells_run"] == 1 and "dtheta" in json.loads((copy / "cells" / grid.name).read_text())


def test_a_second_experiment_into_the_same_folder_leaves_none_of_the_first_ones_figures(run, tmp_path):
    path, out, first = run
    assert (out / "training.png").is_file()
    other = write(tmp_path, figures='["heatmap"]')
    results = run_experiment(other, out, progress=False)
    assert results["figures"] == {"heatmap": ["crossval_DP5.png"]}
    assert not (out / "training.png").exists() and (out / "crossval_DP5.png").is_file()


def test_an_edited_problem_file_is_a_new_cell_not_the_old_record(tmp_path):
    from harness.problems import build_problem, save_problem

    problem_file = tmp_path / "p.npz"
    save_problem(build_problem("seed", seed=0, batch=4), problem_file)
    path = write(tmp_path, problem='file = "p.npz"')
    first = run_experiment(path, tmp_path / "out", progress=False)
    save_problem(build_problem("seed", seed=0, batch=5), problem_file)  # same path, new contents
    second = run_experiment(path, tmp_path / "out", progress=False)
    assert second["timing"]["cells_resumed"] == 0 and second["timing"]["cells_run"] == len(second["cells"])
    loss = [c["loss"] for c in first["cells"] if c["role"] == "grid"]
    assert loss != [c["loss"] for c in second["cells"] if c["role"] == "grid"]


# ------------------------------------------------------------------------ where output goes, or not
def test_the_default_folder_is_the_shipped_layout_only_for_files_in_experiments(tmp_path):
    assert default_out(Path("experiments/tutorial.toml")) == Path("reports/compare/tutorial")
    assert default_out(tmp_path / "mine.toml") == tmp_path / "mine-report"


def test_a_huge_grid_is_refused_before_anything_is_written(tmp_path):
    path = write(tmp_path)
    with pytest.raises(HarnessInputError, match=r"the experiment has 3 cells, more than the limit of 2"):
        run_experiment(path, tmp_path / "out", progress=False, max_cells=2)
    assert not (tmp_path / "out").exists()


def test_a_closed_stdout_keeps_the_runs_own_exit_status(tmp_path):
    # A claim that does not hold exits 3; a reader that stops early (`| head -1`) must not turn that
    # into 1, nor print a traceback.
    path = write(tmp_path, extra='[[claims]]\nsays = "it fails"\nevery = { engine = "QuadratureAdjoint" }\n'
                 'status = "failed"\n')
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "compare", str(path), "--out",
                                str(tmp_path / "out"), "--no-progress"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.close()  # the reader is gone before the first line
    _, err = process.communicate(timeout=600)
    assert process.returncode == 3, err
    assert b"Traceback" not in err
    assert b"stdout was closed before the end" in err and (tmp_path / "out" / "report.md").is_file()


def test_cells_decided_by_this_run_are_never_listed_as_another_commits():
    from harness.compare._experiment import other_commits

    here = {"commit": "abc", "harness_version": "1"}
    spec = {"engine": {"label": "E"}, "solver": "DP5", "rtol": 1e-6, "seed": 0}
    base = {"kind": "gradient", "role": "grid", "spec": spec, "key": "k"}
    records = [{**base, "status": "unavailable"}, {**base, "status": "failed", "rerun": True},
               {**base, "status": "ok", "computed": {"commit": "abc"}},
               {**base, "status": "ok", "computed": {"commit": "old", "harness_version": "0", "at": "t"}},
               {**base, "status": "ok"}]
    listed = other_commits(records, here)
    assert [c["commit"] for c in listed] == ["old", None]
    assert listed[0]["cell"] == "gradient grid E DP5 1e-06 0"
