"""Declared claims (harness/compare/_claims.py): parsing, and each form evaluated on hand-made rows
with the decisive value planted just inside and just outside its bound, so that no claim form can
pass whatever the data."""

import pytest

from harness.compare._claims import evaluate, parse_claims
from harness.errors import HarnessInputError


def row(engine, solver, rtol, error, status="ok", seed=0, n_rhs=100, dz0=None):
    return {
        "engine": engine, "backend": "harness", "solver": solver, "rtol": rtol, "atol": rtol,
        "seed": seed, "status": status, "n_rhs": n_rhs,
        "dtheta": {"relative_error": error}, "dz0": {"relative_error": dz0 if dz0 is not None else error},
    }


def one(table, rows):
    (result,) = evaluate(parse_claims([table]), rows)
    return result


BOUND = {"says": "within 100 rtol", "every": {"status": "ok"}, "metric": "dtheta.relative_error",
         "per": "rtol", "at_most": 100}


@pytest.mark.parametrize("error, holds", [(0.99e-4, True), (1.01e-4, False)])
def test_metric_bound_in_tolerance_units_just_inside_and_outside(error, holds):
    # 100 x rtol = 1e-4 at rtol 1e-6: 0.99e-4 is inside, 1.01e-4 outside
    rows = [row("A", "DP5", 1e-6, 1e-9), row("B", "DP5", 1e-6, error)]
    result = one(BOUND, rows)
    assert result.holds is holds
    assert result.n_rows == 2
    assert ("B DP5" in result.evidence) is True  # the extreme row is named with its value
    assert result.line().startswith("✓" if holds else "✗")


def test_a_false_claim_is_reported_not_dropped():
    results = evaluate(parse_claims([BOUND, {**BOUND, "says": "second"}]), [row("A", "DP5", 1e-6, 1.0)])
    assert [r.holds for r in results] == [False, False]
    assert [r.says for r in results] == ["within 100 rtol", "second"]
    assert "first exception: A DP5" in results[0].evidence


def test_status_claims_every_any_none():
    rows = [row("Backsolve", "DP5", 1e-6, 1.0, status="failed"),
            row("Backsolve", "BDF", 1e-6, 1e-3, status="flagged"),
            row("Quadrature", "BDF", 1e-6, 1e-9)]
    every = {"says": "s", "every": {"engine": "Backsolve"}, "status": ["failed", "flagged"]}
    assert one(every, rows).holds
    rows[1]["status"] = "ok"
    assert not one(every, rows).holds
    anyone = {"says": "s", "any": {"engine": "Backsolve"}, "status": "failed"}
    assert one(anyone, rows).holds
    none = {"says": "s", "none": {"engine": "Quadrature"}, "status": "failed"}
    assert one(none, rows).holds
    rows[2]["status"] = "failed"
    assert not one(none, rows).holds


def test_a_selection_that_matches_nothing_fails():
    result = one({"says": "s", "every": {"engine": "Nobody"}, "status": "ok"}, [row("A", "DP5", 1e-6, 0)])
    assert not result.holds and result.evidence == "no row matches the selection"


def test_range_selection():
    rows = [row("A", "DP5", 1e-3, 1.0), row("A", "DP5", 1e-6, 1e-7)]
    claim = {**BOUND, "every": {"rtol": {"at_most": 1e-6}}}
    assert one(claim, rows).holds and one(claim, rows).n_rows == 1
    claim["every"] = {"rtol": {"at_most": 1e-3}}
    assert not one(claim, rows).holds


MONOTONE = {"says": "error falls with tolerance", "monotone": "dtheta.relative_error", "over": "rtol",
            "direction": "increasing", "group_by": ["engine", "seed"]}


@pytest.mark.parametrize("middle, holds", [(1.0e-6, True), (0.9e-8, False)])
def test_monotone_with_a_plateau_break_planted(middle, holds):
    rows = [row("A", "DP5", 1e-8, 1e-8), row("A", "DP5", 1e-6, middle), row("A", "DP5", 1e-4, 1e-4),
            row("B", "DP5", 1e-8, 1e-9), row("B", "DP5", 1e-4, 1e-5)]
    result = one(MONOTONE, rows)
    assert result.holds is holds
    assert result.evidence.startswith(f"{1 if not holds else 2} of 2 groups")


def test_monotone_strict_refuses_a_flat_pair():
    rows = [row("A", "DP5", 1e-8, 1e-8), row("A", "DP5", 1e-6, 1e-8)]
    assert one(MONOTONE, rows).holds
    assert not one({**MONOTONE, "strict": True}, rows).holds


@pytest.mark.parametrize("dp5_cost, holds", [(1000, True), (999, False)])
def test_ratio_just_inside_and_outside(dp5_cost, holds):
    claim = {"says": "DP5 costs 10x", "ratio": "n_rhs", "numerator": {"solver": "DP5"},
             "denominator": {"solver": "RadauIIA5"}, "pair_by": ["engine", "rtol"], "at_least": 10}
    rows = [row("A", "DP5", 1e-6, 0, n_rhs=dp5_cost), row("A", "RadauIIA5", 1e-6, 0, n_rhs=100),
            row("A", "DP5", 1e-8, 0, n_rhs=5000), row("A", "RadauIIA5", 1e-8, 0, n_rhs=100)]
    result = one(claim, rows)
    assert result.holds is holds
    assert result.n_rows == 2
    assert f"{dp5_cost / 100:.3g}" in result.evidence


@pytest.mark.parametrize(
    "table, message",
    [
        ({"every": {}, "status": "ok"}, "says"),
        ({"says": "s"}, "exactly one of"),
        ({"says": "s", "every": {}, "ratio": "n_rhs"}, "exactly one of"),
        ({"says": "s", "every": {}, "status": "ok", "colour": "red"}, "unknown keys ['colour']"),
        ({"says": "s", "every": {}}, "needs `status` or `metric`"),
        ({"says": "s", "every": {}, "metric": "n_rhs"}, "at_most"),
        ({"says": "s", "every": {}, "metric": "n_rhs", "at_most": "big"}, "expected a number"),
        ({"says": "s", "every": {}, "metric": "n_rhs", "at_most": 1, "per": "h"}, "'rtol' or 'atol'"),
        ({"says": "s", "every": {"rtol": {"below": 1}}, "status": "ok"}, "a range is"),
        ({"says": "s", "monotone": "n_rhs", "over": "rtol", "direction": "up"}, "'increasing' or"),
        ({"says": "s", "ratio": "n_rhs", "numerator": {}, "at_least": 1}, "needs `denominator`"),
    ],
)
def test_each_mistake_is_one_clear_error(table, message):
    with pytest.raises(HarnessInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_claims([table])
