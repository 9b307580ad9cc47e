"""Plumbing that reports depend on: where strict JSON says a number was not finite (nested paths),
and the tutorial column of a short `harness reproduce` report, read back from the Markdown."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness._io import strict_json, to_json


def test_strict_json_names_nested_paths_of_non_finite_numbers():
    value = {
        "a": {"b": [1.0, math.nan, {"c": np.float64(math.inf)}], "d": np.array([[0.0, -math.inf]])},
        "e": (np.float32(2.5), np.int64(3), np.bool_(True)),
        "f": "text",
    }
    reasons: dict = {}
    plain = strict_json(value, reasons)
    assert reasons == {"a.b[1]": "NaN", "a.b[2].c": "Infinity", "a.d[0][1]": "-Infinity"}
    assert plain == {"a": {"b": [1.0, None, {"c": None}], "d": [[0.0, None]]}, "e": [2.5, 3, True], "f": "text"}
    assert type(plain["e"][1]) is int and type(plain["e"][2]) is bool and type(plain["e"][0]) is float
    text = json.loads(to_json(value))
    assert text["non_finite"] == reasons
    assert "non_finite" not in json.loads(to_json({"x": 1.0}))
    # a top-level list keeps its nulls, and its reasons are by index
    top: dict = {}
    assert strict_json([math.nan, [1, math.inf]], top) == [None, [1, None]]
    assert top == {"[0]": "NaN", "[1][1]": "Infinity"}
    assert json.loads(to_json([math.nan])) == [None]


@pytest.mark.slow
def test_a_short_reproduce_puts_the_tutorials_numbers_beside_the_harness(tmp_path):
    """`reproduce` for 50 steps: its report's table has a tutorial column with the tutorial's printed
    value at each logged step it has one for (0 and 50), beside the harness's own value."""
    markdown_it = pytest.importorskip("markdown_it", reason="needs markdown-it-py")
    from harness.reproduce import TUTORIAL_LOGLIK, reproduce

    summary = reproduce(tmp_path / "run", steps=50, progress=False, echo=lambda line: None)
    text = (tmp_path / "run" / "report.md").read_text()
    tokens = markdown_it.MarkdownIt("commonmark").enable("table").parse(text)
    rows, row = [], None
    for i, token in enumerate(tokens):
        if token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            row.append(tokens[i + 1].content.strip())
        elif token.type == "tr_close":
            rows.append(row)
    header_index = next(i for i, r in enumerate(rows) if r[:1] == ["step"])
    header = rows[header_index]
    assert header == ["step", "harness", "tutorial"]
    records = [dict(zip(header, r)) for r in rows[header_index + 1:] if r and r[0].isdigit()]
    history = {r["step"]: r["loglik_per_datapoint"] for r in summary["history"]}
    assert [int(r["step"]) for r in records] == sorted(history) == [0, 50]
    for record in records:
        step = int(record["step"])
        assert record["tutorial"] == f"{TUTORIAL_LOGLIK[step]:.3f}"
        assert float(record["harness"]) == pytest.approx(history[step], abs=5e-4)
