"""The shipped comparison reports read back: what a reader sees in report.md is what results.json holds.

Every `reports/compare/*/report.md` is parsed as Markdown (markdown-it-py, GitHub tables) and its
tables are read by header name, never by position, then compared with the same run's results.json:

- the grid table ("Every engine against the reference"): one table row per result row (but the
  engines unavailable where the report was made, listed apart), in order,
  with the engine, solver, tolerances, seed, status, the relative errors, the worst entries' values
  and names, the cosine, and (where the table's columns line up) the evaluation counts;
- the cross-validation matrices: each cell's relative error and cosine;
- the figures: every file results.json lists exists beside the report and is linked from it, and
  the work-precision curves (the figure's data) are the grid rows they summarise.

Numbers are printed to 2-3 significant digits, so a printed value v of a stored x must satisfy
|v - x| <= half a unit of the last printed digit (a relative 5e-2 for "%.1e", 5e-3 for "%.2e").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

markdown_it = pytest.importorskip("markdown_it", reason="needs markdown-it-py")

ROOT = Path(__file__).resolve().parent.parent
REPORTS = sorted(p.parent for p in (ROOT / "reports" / "compare").glob("*/report.md")
                 if (p.parent / "results.json").exists())
GRID_HEADING = "Every engine against the reference"
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.I)


def _tables(path: Path) -> list[dict]:
    """[{"heading": last heading text, "header": [...], "rows": [[cell, ...], ...]}] in order."""
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(path.read_text())
    tables, heading, current, row = [], None, None, None
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            heading = tokens[i + 1].content
        elif token.type == "table_open":
            current = {"heading": heading, "header": None, "rows": []}
            tables.append(current)
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            row.append(tokens[i + 1].content.strip())
        elif token.type == "tr_close":
            if current["header"] is None:
                current["header"] = row
            else:
                current["rows"].append(row)
    return tables


def _records(table: dict) -> list[dict]:
    return [dict(zip(table["header"], row)) for row in table["rows"]]


def _close(printed: str, stored: float, digits_rel: float) -> bool:
    match = NUMBER.search(printed)
    assert match, printed
    value = float(match.group(0))
    return abs(value - stored) <= digits_rel * abs(stored) + 1e-300


def _significant(printed: str) -> float:
    """Half a unit of the last printed digit, relative: 5e-2 for '2.1e-09', 5e-3 for '2.86e-13'."""
    mantissa = NUMBER.search(printed).group(0).lower().split("e")[0].lstrip("+-")
    digits = len(mantissa.replace(".", "").lstrip("0")) or 1
    return 0.5 * 10.0 ** (1 - digits) * 1.0001


def _shown(results: dict) -> list[dict]:
    """The result rows the grid table shows: all but the cells of engines unavailable on the machine
    that ran the report (the report lists those apart, under "Not run here")."""
    return [row for row in results["rows"] if row["status"] != "unavailable"]


@pytest.fixture(scope="module", params=REPORTS, ids=[p.name for p in REPORTS])
def report(request):
    folder = request.param
    return folder, _tables(folder / "report.md"), json.loads((folder / "results.json").read_text())


def test_the_grid_table_is_the_results_rows(report):
    folder, tables, results = report
    grids = [t for t in tables if t["heading"] == GRID_HEADING]
    if not grids:
        pytest.skip(f"{folder.name}: no gradient grid in this report")
    (grid,) = grids
    records = _records(grid)
    rows = _shown(results)
    assert len(records) == len(rows), f"{folder.name}: {len(records)} table rows, {len(rows)} results rows"
    for record, row in zip(records, rows):
        where = f"{folder.name}: {row['engine']} {row['solver']} {row['rtol']:g}"
        assert record["engine"] == row["engine"], where
        assert record["solver"] == row["solver"], where
        assert float(record["rtol"]) == pytest.approx(row["rtol"], rel=5e-3), where
        assert float(record["atol"]) == pytest.approx(row["atol"], rel=5e-3), where
        assert int(record["seed"]) == row["seed"], where
        assert record["status"] == row["status"], where
        if row["status"] not in ("ok", "flagged"):
            continue
        for wrt, label in (("dtheta", "dL/dθ"), ("dz0", "dL/dz0")):
            error = record[f"rel. error {label}"]
            assert _close(error, row[wrt]["relative_error"], _significant(error)), (where, wrt, error)
            worst = record[f"worst entry {label}"]
            assert _close(worst, row[wrt]["worst_entry"], _significant(worst)), (where, wrt, worst)
            # the worst entry's name, in brackets after its value
            assert worst.endswith(f"({row[wrt]['worst_name']})"), (where, wrt, worst)
        cosine = record["cosine dL/dθ"]
        assert _close(cosine, row["dtheta"]["cosine"], _significant(cosine)), (where, cosine)


def test_the_grid_table_columns_follow_their_names(report):
    """Every column of the grid table, the counts and times included, under its own name."""
    folder, tables, results = report
    grids = [t for t in tables if t["heading"] == GRID_HEADING]
    if not grids:
        pytest.skip(f"{folder.name}: no gradient grid in this report")
    (grid,) = grids
    for record, row in zip(_records(grid), _shown(results)):
        assert set(record) == set(grid["header"]) and all(h for h in grid["header"])
        if row["status"] not in ("ok", "flagged"):
            continue
        assert int(record["f evals fwd"]) == row["n_rhs_forward"]
        assert int(record["f evals bwd"]) == row["n_rhs_backward"]
        # times are printed with fixed decimals ("0.156", "0.001"): half a unit of the last one
        time = NUMBER.search(record["time (s) median [min-max]"]).group(0)
        decimals = len(time.split(".")[1]) if "." in time else 0
        assert abs(float(time) - row["seconds"]) <= 0.5 * 10.0**-decimals * 1.0001, (time, row["seconds"])


def test_the_cross_validation_matrices_are_the_stored_ones(report):
    folder, tables, results = report
    matrices = results.get("matrices") or {}
    if not matrices:
        pytest.skip(f"{folder.name}: no cross-validation matrices")
    for solver, matrix in matrices.items():
        shown = [t for t in tables if t["heading"] and t["heading"].startswith(f"{solver}, rtol = ")]
        assert len(shown) == 2, f"{folder.name}: {solver}: {len(shown)} tables (dL/dθ and dL/dz0 expected)"
        for table, wrt in zip(shown, ("dtheta", "dz0")):
            labels = matrix["labels"]
            assert table["header"] == ["row vs column", *labels]
            for i, record in enumerate(_records(table)):
                assert record["row vs column"] == labels[i]
                for j, label in enumerate(labels):
                    cell = record[label]
                    if i == j:
                        assert cell == "—"
                        continue
                    if "ok" not in matrix["status"][i] or cell == "n/a":
                        assert cell == "n/a" and "ok" not in (matrix["status"][i], matrix["status"][j]) or \
                            matrix[wrt]["relative_error"][i][j] is None, (folder.name, solver, wrt, i, j, cell)
                        continue
                    stored = matrix[wrt]["relative_error"][i][j]
                    assert _close(cell, stored, _significant(cell)), (folder.name, solver, wrt, i, j, cell, stored)
                    cosine = re.search(r"cos ([0-9.]+)", cell).group(1)
                    assert _close(cosine, matrix[wrt]["cosine"][i][j], _significant(cosine))


def test_the_figures_exist_are_linked_and_plot_the_rows(report):
    folder, _, results = report
    text = (folder / "report.md").read_text()
    for files in (results.get("figures") or {}).values():
        for name in files:
            assert (folder / name).is_file(), f"{folder.name}: {name} listed in results.json but missing"
            assert f"]({name})" in text, f"{folder.name}: {name} is not linked from report.md"
    for curve in results.get("curves") or []:
        for point in curve["points"]:
            rows = [r for r in results["rows"] if r["engine"] == curve["engine"] and r["solver"] == curve["solver"]
                    and r["rtol"] == point["rtol"] and r["atol"] == point["atol"]
                    and r["status"] in ("ok", "flagged")]
            assert len(rows) == point["seeds"], (folder.name, curve["engine"], curve["solver"], point["rtol"])
            errors = [r["dtheta"]["relative_error"] for r in rows]
            # one seed: the point is the row; several: a summary within their range
            assert min(errors) * (1 - 1e-12) <= point["error"] <= max(errors) * (1 + 1e-12)
            if len(rows) == 1:
                assert point["n_rhs"] == rows[0]["n_rhs"]
                assert point["seconds"] == rows[0]["seconds"]
