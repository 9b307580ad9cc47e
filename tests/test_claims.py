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
    assert not result.holds and result.evidence.startswith("no row matches the selection")


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


def test_monotone_is_strict_unless_declared_otherwise():
    rows = [row("A", "DP5", 1e-8, 1e-8), row("A", "DP5", 1e-6, 1e-8)]
    strict = one(MONOTONE, rows)
    assert not strict.holds and "strictly" in strict.evidence
    relaxed = one({**MONOTONE, "strict": False}, rows)
    assert relaxed.holds and "non-strict" in relaxed.evidence


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
        ({"says": "s", "every": {}, "status": "okk"}, "unknown status 'okk'"),
        ({"says": "s", "every": {"status": "okk"}, "metric": "n_rhs", "at_most": 1}, "unknown status 'okk'"),
        ({"says": "s", "every": {}, "status": "ok", "excluding": ["ok"]}, "excluding"),
        ({"says": "s", "every": {}, "metric": "n_rhs", "at_least": 2, "at_most": 1}, "no value can meet both"),
    ],
)
def test_each_mistake_is_one_clear_error(table, message):
    with pytest.raises(HarnessInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_claims([table])


# ------------------------------------------------------------------ the loopholes, each closed
# Each test is a deliberately bad claim that used to hold for the wrong reason and now fails.

def test_a_status_in_the_selection_no_longer_hides_failed_cells():
    # 7 of 8 cells failed: `every = { status = "ok" }` used to filter them out and report "1 of 1"
    rows = [row("A", "DP5", 1e-6, 1e-5)] + [row("A", "DP5", 1e-6 * k, None, status="failed", seed=k)
                                              for k in range(1, 8)]
    claim = {**BOUND, "every": {"engine": "A", "status": "ok"}}
    result = one(claim, rows)
    assert not result.holds and result.n_rows == 8
    assert result.evidence.startswith("1 of 8 rows")


def test_excluding_failures_is_visible_with_their_count():
    rows = [row("A", "DP5", 1e-6, 1e-5), row("A", "DP5", 1e-8, None, status="failed")]
    result = one({**BOUND, "every": {"engine": "A"}, "excluding": ["failed"]}, rows)
    assert result.holds and result.excluded == {"failed": 1}
    assert "[excluding 1 failed]" in result.line()
    assert "1 failed row excluded as declared (A DP5 1e-08 0)" in result.evidence


def test_a_nan_or_missing_metric_never_satisfies_none():
    none = {"says": "no engine is 100x rtol off", "none": {"engine": "A"}, "metric": "dtheta.relative_error",
            "per": "rtol", "at_least": 100}
    assert one(none, [row("A", "DP5", 1e-6, 1e-6)]).holds
    assert not one(none, [row("A", "DP5", 1e-6, float("nan"))]).holds
    missing = row("A", "DP5", 1e-6, 1e-6)
    del missing["dtheta"]
    assert not one(none, [missing]).holds
    every = {**BOUND, "every": {"engine": "A"}}
    assert not one(every, [row("A", "DP5", 1e-6, float("nan"))]).holds


def test_a_one_point_monotone_group_fails():
    rows = [row("A", "DP5", 1e-8, 1e-8), row("A", "DP5", 1e-6, 1e-6), row("B", "DP5", 1e-6, 1e-6)]
    result = one(MONOTONE, rows)
    assert not result.holds and "B 0: one point only" in result.evidence


def test_duplicate_x_in_a_monotone_group_is_refused():
    # two seeds in one group: sorted by y, an increasing claim could never break
    rows = [row("A", "DP5", 1e-8, 1e-8, seed=0), row("A", "DP5", 1e-8, 1e-4, seed=1),
            row("A", "DP5", 1e-6, 1e-6, seed=0), row("A", "DP5", 1e-6, 1e-6, seed=1)]
    result = one({**MONOTONE, "group_by": ["engine"]}, rows)
    assert not result.holds and "two rows at rtol = 1e-08" in result.evidence


def test_a_failed_row_in_a_monotone_group_fails_it():
    rows = [row("A", "DP5", 1e-8, 1e-8), row("A", "DP5", 1e-6, 1e-6), row("A", "DP5", 1e-4, None, status="failed")]
    assert not one({**MONOTONE, "among": {"status": "ok"}}, rows).holds


RATIO = {"says": "DP5 costs 10x", "ratio": "n_rhs", "numerator": {"solver": "DP5"},
         "denominator": {"solver": "RadauIIA5"}, "pair_by": ["engine", "rtol"], "at_least": 10}


def test_a_self_paired_ratio_is_refused():
    rows = [row("A", "DP5", 1e-6, 0, n_rhs=100)]
    result = one({**RATIO, "denominator": {"engine": "A"}}, rows)
    assert not result.holds and "paired with itself" in result.evidence


def test_an_unpaired_ratio_row_fails_and_is_named():
    rows = [row("A", "DP5", 1e-6, 0, n_rhs=1000), row("A", "RadauIIA5", 1e-6, 0, n_rhs=100),
            row("A", "DP5", 1e-8, 0, n_rhs=5000)]
    result = one(RATIO, rows)
    assert not result.holds and "1 row without a partner (A DP5 1e-08 0)" in result.evidence


def test_a_zero_denominator_fails():
    rows = [row("A", "DP5", 1e-6, 0, n_rhs=1000), row("A", "RadauIIA5", 1e-6, 0, n_rhs=0)]
    assert not one(RATIO, rows).holds


def test_a_claim_that_declares_coverage_fails_when_a_tolerance_is_missing():
    rows = [row("A", "DP5", 1e-6, 1e-5), row("A", "DP5", 1e-8, None, status="failed")]
    claim = {**BOUND, "every": {"engine": "A"}, "excluding": ["failed"], "covers": ["rtol"]}
    result = one(claim, rows)
    assert not result.holds and "rtol 1e-08 of the grid not covered" in result.evidence
    rows[1] = row("A", "DP5", 1e-8, 1e-7)
    assert one(claim, rows).holds


def test_margin_and_loose_marking():
    rows = [row("A", "DP5", 1e-6, 2e-6)]  # 2x rtol against a bound of 100x: 50x loose
    result = one({**BOUND, "every": {"engine": "A"}}, rows)
    assert result.holds and result.loose and result.margin == pytest.approx(50)
    assert "*loose*" in result.line() and "margin 50x (observed 2 against <= 100)" in result.evidence
    tight = one({**BOUND, "every": {"engine": "A"}, "at_most": 5}, rows)
    assert tight.holds and not tight.loose and tight.margin == pytest.approx(2.5)
