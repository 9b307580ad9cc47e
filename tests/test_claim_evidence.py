"""Claims (harness/compare/_claims.py): the evidence a report prints, read back word for word.

A claim's line in a report is all a reader sees of why it holds or fails, so each path of the
monotone and ratio evaluators is pinned by its whole evidence text on rows built so that every
number in it can be worked out by hand (the comment beside each case does): groups counted and
named, the smallest step, each kind of exception, rows excluded and unavailable, cells of the grid
not covered, pairs, partners, unusable pairs, the ratio's range with enough digits to tell its ends
apart, and the margin against each bound. The property tests (test_claim_properties.py) decide the
verdicts; these decide the words.
"""

from __future__ import annotations

import pytest

from harness.compare._claims import ClaimResult, evaluate, parse_claims


def row(engine, rtol, error, status="ok", solver="DP5", seed=0, n_rhs=100):
    return {
        "engine": engine,
        "solver": solver,
        "rtol": rtol,
        "seed": seed,
        "status": status,
        "n_rhs": n_rhs,
        "dtheta": {"relative_error": error},
    }


def one(table, rows):
    (result,) = evaluate(parse_claims([table]), rows)
    # on every path the result carries the claim's sentence and true/false verdicts (results.json
    # and the report's JSON hold them as booleans)
    assert result.says == table["says"]
    assert isinstance(result.holds, bool) and isinstance(result.loose, bool)
    return result


MONOTONE = {
    "says": "the error grows with rtol",
    "monotone": "dtheta.relative_error",
    "over": "rtol",
    "direction": "increasing",
    "group_by": ["engine"],
}
RATIO = {
    "says": "DP5 costs more",
    "ratio": "n_rhs",
    "numerator": {"solver": "DP5"},
    "denominator": {"solver": "RadauIIA5"},
    "pair_by": ["engine", "rtol"],
    "at_least": 1,
}


# ------------------------------------------------------------------------------------------ monotone
def test_a_monotone_claim_that_holds_names_its_groups_and_smallest_step():
    # A: 1 -> 4 -> 8 (steps 4x, 2x); B: 2 -> 3 (1.5x): the smallest step is B's
    rows = [row("A", 1e-8, 1), row("A", 1e-6, 4), row("A", 1e-4, 8), row("B", 1e-8, 2), row("B", 1e-6, 3)]
    result = one(MONOTONE, rows)
    assert result.holds and result.n_rows == 5 and result.margin is None and not result.loose
    assert result.evidence == "2 of 2 groups (engine) move increasing strictly along rtol; smallest step 1.5x"
    assert result.line() == f"✓ the error grows with rtol ({result.evidence})"


def test_a_monotone_claim_counts_the_groups_that_break_and_names_the_first():
    # A one point; B two rows at the same rtol; C falls; D has a failed row; E rises 1 -> 2 (2x)
    rows = [
        row("A", 1e-8, 1),
        row("B", 1e-8, 2),
        row("B", 1e-8, 3),
        row("C", 1e-8, 2),
        row("C", 1e-6, 1),
        row("D", 1e-8, 1),
        row("D", 1e-6, None, status="failed"),
        row("E", 1e-8, 1),
        row("E", 1e-6, 2),
    ]
    result = one(MONOTONE, rows)
    assert not result.holds and result.n_rows == 9
    assert result.evidence == (
        "1 of 5 groups (engine) move increasing strictly along rtol; smallest step 2x; "
        "first exception: A: one point only, nothing to compare (3 more)"
    )
    assert result.line().startswith("✗ the error grows with rtol (1 of 5 groups")


@pytest.mark.parametrize(
    "rows, exception",
    [
        (
            [row("B", 1e-8, 2), row("B", 1e-8, 3)],
            "B: two rows at rtol = 1e-08 (group_by lacks the field that tells them apart)",
        ),
        ([row("C", 1e-8, 2.5), row("C", 1e-6, 1.25)], "C: dtheta.relative_error 2.5 at rtol = 1e-08, 1.25 at 1e-06"),
        (
            [row("D", 1e-8, 1), row("D", 1e-6, None, status="failed")],
            "D: D DP5 1e-06 0 has no dtheta.relative_error (failed)",
        ),
        ([row("D", 1e-8, 1), row("D", 1e-6, float("nan"))], "D: D DP5 1e-06 0 has no dtheta.relative_error (ok)"),
        ([row("D", 1e-8, 1), row("D", None, 2)], "D: D DP5 0 has no dtheta.relative_error (ok)"),
        ([row("E", 1e-8, 2), row("E", 1e-6, 2)], "E: dtheta.relative_error 2 at rtol = 1e-08, 2 at 1e-06"),
    ],
)
def test_each_kind_of_monotone_exception_is_named(rows, exception):
    result = one(MONOTONE, rows)
    assert not result.holds
    assert (
        result.evidence == f"0 of 1 groups (engine) move increasing strictly along rtol; first exception: {exception}"
    )


def test_only_the_first_exception_is_named_and_the_rest_counted():
    rows = [row("B", 1e-8, 2), row("C", 1e-8, 2)]
    assert one(MONOTONE, rows).evidence.endswith("first exception: B: one point only, nothing to compare (1 more)")


def test_a_status_condition_in_among_breaks_a_group_it_does_not_match():
    rows = [row("A", 1e-8, 1), row("A", 1e-6, 2, status="flagged")]
    result = one({**MONOTONE, "among": {"status": "ok"}}, rows)
    assert not result.holds
    assert result.evidence.endswith("first exception: A: A DP5 1e-06 0 has no dtheta.relative_error (flagged)")
    assert one({**MONOTONE, "among": {"status": ["ok", "flagged"]}}, rows).holds


def test_a_non_strict_decreasing_claim_and_negative_values():
    # equal neighbours allowed; no step ratio is defined for values <= 0, so none is printed
    rows = [row("A", 1e-8, -1), row("A", 1e-6, -1), row("A", 1e-4, -3)]
    table = {**MONOTONE, "strict": False, "direction": "decreasing"}
    result = one(table, rows)
    assert result.holds
    assert (
        result.evidence == "1 of 1 groups (engine) move decreasing never against the direction (non-strict) along rtol"
    )
    # a positive plateau: the step 1x is printed, and the strict default breaks on it
    flat = [row("A", 1e-8, 3), row("A", 1e-6, 3), row("A", 1e-4, 1)]
    assert one(table, flat).evidence.endswith("along rtol; smallest step 1x")
    assert not one({**table, "strict": True}, flat).holds


def test_a_monotone_claim_without_groups_and_with_a_mixed_sign_step():
    rows = [row("A", 1e-8, -1.0), row("B", 1e-6, 2.0), row("A", 1e-4, 3.0)]
    result = one({k: v for k, v in MONOTONE.items() if k != "group_by"}, rows)
    # -1 -> 2 has no ratio (one value <= 0), 2 -> 3 is 1.5x
    assert result.evidence == "1 of 1 groups (all rows) move increasing strictly along rtol; smallest step 1.5x"


def test_excluded_unavailable_and_uncovered_cells_are_all_in_the_evidence():
    # the grid in scope holds rtol 1e-8, 1e-6, 1e-4, 1e-2 (failed and unavailable rows included);
    # A counts 1e-8 and 1e-6, B only 1e-8 (its failed row excluded, its unavailable ones not counted)
    rows = [
        row("A", 1e-8, 1),
        row("A", 1e-6, 2),
        row("B", 1e-8, 1),
        row("B", 1e-6, 2, status="failed"),
        row("B", 1e-4, 3, status="unavailable"),
        row("B", 1e-2, 3, status="unavailable"),
    ]
    result = one({**MONOTONE, "excluding": ["failed"], "covers": ["rtol"]}, rows)
    assert not result.holds and result.n_rows == 3 and result.excluded == {"failed": 1}
    assert result.evidence == (
        "1 of 2 groups (engine) move increasing strictly along rtol; smallest step 2x; first exception: "
        "B: one point only, nothing to compare; 1 failed row excluded as declared (B DP5 1e-06 0); "
        "2 rows unavailable on this machine, not counted; rtol 0.0001, 0.01 of the grid in group A not "
        "covered; rtol 0.0001, 0.01, 1e-06 of the grid in group B not covered"
    )
    assert result.line().startswith("✗ the error grows with rtol [excluding 1 failed] (1 of 2 groups")


def test_a_monotone_claim_that_holds_but_does_not_cover_the_grid_fails():
    rows = [
        row("A", 1e-8, 1),
        row("A", 1e-6, 2),
        row("B", 1e-8, 1),
        row("B", 1e-6, 2),
        row("B", 1e-4, 3, status="unavailable"),
    ]
    result = one({**MONOTONE, "covers": ["rtol"]}, rows)
    assert not result.holds
    assert result.evidence == (
        "2 of 2 groups (engine) move increasing strictly along rtol; smallest step 2x; "
        "1 row unavailable on this machine, not counted; rtol 0.0001 of the grid in group "
        "A not covered; rtol 0.0001 of the grid in group B not covered"
    )
    assert one({**MONOTONE, "covers": ["rtol"]}, rows[:4]).holds


def test_an_empty_monotone_scope_fails_with_its_notes():
    result = one(
        {**MONOTONE, "among": {"engine": "Z"}, "excluding": "failed"},
        [row("Z", 1e-8, 1, status="failed"), row("Z", 1e-6, 1, status="failed")],
    )
    assert not result.holds and result.n_rows == 0 and result.excluded == {"failed": 2}
    assert (
        result.evidence
        == "no row matches the selection; 2 failed rows excluded as declared (Z DP5 1e-08 0, Z DP5 1e-06 0)"
    )


# --------------------------------------------------------------------------------------------- ratio
def test_a_ratio_claim_that_holds_names_its_range_and_margin():
    # A 200/100 = 2, B 300/100 = 3; the lowest ratio 2 against >= 1: margin 2x
    rows = [
        row("A", 1e-6, 0, n_rhs=200),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
        row("B", 1e-6, 0, n_rhs=300),
        row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
    ]
    result = one(RATIO, rows)
    assert result.holds and result.n_rows == 2 and result.margin == 2.0 and not result.loose
    assert result.evidence == (
        "n_rhs ratio >= 1 wanted; 2 pairs range 2 (A 1e-06) to 3 (B 1e-06); margin 2x (observed 2 against >= 1)"
    )
    # an upper bound: the highest ratio counts, 3 against <= 30 is a margin of 10x, not loose; 40 is loose
    upper = {k: v for k, v in RATIO.items() if k != "at_least"}
    within = one({**upper, "at_most": 30}, rows)
    assert within.holds and within.margin == 10.0 and not within.loose
    assert within.evidence.endswith("margin 10x (observed 3 against <= 30)")
    loose = one({**upper, "at_most": 40}, rows)
    assert loose.loose and loose.line().endswith(" — *loose*: the bound is 13.3x the observed value")
    broken = one({**upper, "at_most": 2.5}, rows)
    assert not broken.holds and not broken.loose and broken.margin == pytest.approx(2.5 / 3)


def test_a_ratio_without_pair_by_pairs_everything_and_names_no_key():
    rows = [row("A", 1e-6, 0, n_rhs=200), row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100)]
    result = one({k: v for k, v in RATIO.items() if k != "pair_by"}, rows)
    assert result.evidence == "n_rhs ratio >= 1 wanted; 1 pairs range 2 to 2; margin 2x (observed 2 against >= 1)"


def test_a_ratio_claim_names_rows_without_partners_and_unusable_pairs():
    # A pairs (2); B's denominator is zero; C has no denominator, D no numerator
    rows = [
        row("A", 1e-6, 0, n_rhs=200),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
        row("B", 1e-6, 0, n_rhs=300),
        row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=0),
        row("C", 1e-6, 0, n_rhs=300),
        row("D", 1e-6, 0, solver="RadauIIA5", n_rhs=3),
    ]
    result = one(RATIO, rows)
    assert not result.holds and result.n_rows == 1
    assert result.evidence == (
        "n_rhs ratio >= 1 wanted; 1 pairs range 2 (A 1e-06) to 2 (A 1e-06); margin 2x (observed 2 against >= 1); "
        "2 rows without a partner (C DP5 1e-06 0, D RadauIIA5 1e-06 0); 1 pair without a usable ratio "
        "(first: B DP5 1e-06 0 over B RadauIIA5 1e-06 0)"
    )


@pytest.mark.parametrize(
    "top, bottom",
    [
        ({"status": "failed"}, {}),
        ({}, {"status": "failed"}),
        ({"status": "flagged"}, {}),
        ({}, {"status": "flagged"}),
        ({"n_rhs": None}, {}),
        ({}, {"n_rhs": float("inf")}),
    ],
)
def test_a_pair_with_a_failed_row_a_status_out_of_scope_or_no_number_is_unusable(top, bottom):
    rows = [
        row("A", 1e-6, 0, n_rhs=200),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
        {**row("B", 1e-6, 0, n_rhs=300), **top},
        {**row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=100), **bottom},
    ]
    table = {
        **RATIO,
        "numerator": {"solver": "DP5", "status": ["ok", "failed"]},
        "denominator": {"solver": "RadauIIA5", "status": ["ok", "failed"]},
    }
    result = one(table, rows)
    assert not result.holds and result.n_rows == 1
    assert result.evidence.endswith("; 1 pair without a usable ratio (first: B DP5 1e-06 0 over B RadauIIA5 1e-06 0)")
    # the same rows with a usable B pair hold
    assert one(table, rows[:2] + [row("B", 1e-6, 0, n_rhs=300), row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=100)]).holds


def test_unusable_pairs_and_partnerless_rows_are_counted_in_the_plural():
    rows = [
        row("A", 1e-6, 0, n_rhs=200),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
        row("B", 1e-6, 0, n_rhs=300),
        row("B", 1e-6, 0, n_rhs=400),
        row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=0),
        row("C", 1e-6, 0, n_rhs=300),
    ]
    assert one(RATIO, rows).evidence.endswith(
        "; 1 row without a partner (C DP5 1e-06 0); 2 pairs without a usable ratio "
        "(first: B DP5 1e-06 0 over B RadauIIA5 1e-06 0)"
    )


def test_a_row_on_both_sides_of_a_ratio_proves_nothing():
    rows = [row("A", 1e-6, 0), row("B", 1e-6, 0, solver="RadauIIA5")]
    result = one(
        {**RATIO, "numerator": {"rtol": 1e-6}, "denominator": {"engine": "A"}, "excluding": "failed"},
        rows + [row("C", 1e-6, 0, status="failed")],
    )
    assert not result.holds and result.n_rows == 0 and result.excluded == {"failed": 1}
    assert result.evidence == (
        "1 rows are both numerator and denominator (A DP5 1e-06 0): a row paired with "
        "itself proves nothing; numerator: 1 failed row excluded as declared (C DP5 1e-06 0)"
    )


def test_a_ratio_without_any_pair_names_the_unpaired_rows_and_the_exclusions():
    rows = [
        row("C", 1e-6, 0, n_rhs=300),
        row("D", 1e-6, 0, solver="RadauIIA5", n_rhs=3),
        row("E", 1e-6, 0, solver="RadauIIA5", n_rhs=3, status="failed"),
    ]
    result = one({**RATIO, "excluding": "failed"}, rows)
    assert not result.holds and result.n_rows == 0 and result.margin is None and result.excluded == {"failed": 1}
    assert result.evidence == (
        "no numerator row pairs with a denominator row; unpaired: C DP5 1e-06 0, "
        "D RadauIIA5 1e-06 0; denominator: 1 failed row excluded as declared (E RadauIIA5 1e-06 0)"
    )
    nothing = one(RATIO, [row("B", 1e-6, 0, n_rhs=300), row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=0)])
    assert nothing.evidence == "no numerator row pairs with a denominator row"


def test_ratio_ends_are_printed_with_the_digits_that_tell_them_apart():
    # 1.000123 and 1.000129 agree to 5 significant digits (1.0001): 6 are printed, 1.00012 and 1.00013,
    # where the usual 3 would print 1 and 1; both are within [0.5, 1.1]
    rows = [
        row("A", 1e-6, 0, n_rhs=1000123),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=1000000),
        row("B", 1e-6, 0, n_rhs=1000129),
        row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=1000000),
    ]
    result = one({**RATIO, "at_most": 1.1, "at_least": 0.5}, rows)
    assert result.holds
    # the margin is the tighter bound's: 1.1 / 1.000129 (the lower one gives 1.000123 / 0.5 ~ 2)
    assert result.margin == pytest.approx(1.1 / 1.000129)
    assert result.evidence == (
        "n_rhs ratio >= 0.5 and <= 1.1 wanted; 2 pairs range 1.00012 (A 1e-06) to "
        "1.00013 (B 1e-06); margin 1.1x (observed 1 against <= 1.1, 1 against >= 0.5)"
    )


def test_a_ratio_that_does_not_cover_the_grid_fails():
    rows = [
        row("A", 1e-6, 0, n_rhs=200),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
        row("A", 1e-4, 0, n_rhs=200, status="unavailable"),
        row("B", 1e-6, 0, n_rhs=300),
    ]
    result = one({**RATIO, "covers": ["engine", "rtol"]}, rows)
    assert not result.holds
    assert result.evidence == (
        "n_rhs ratio >= 1 wanted; 1 pairs range 2 (A 1e-06) to 2 (A 1e-06); margin 2x (observed 2 against >= 1); "
        "1 row without a partner (B DP5 1e-06 0); numerator: 1 row unavailable on this machine, not counted; "
        "engine B of the grid not covered; rtol 0.0001 of the grid not covered"
    )


# ------------------------------------------------------------------------------------ the line printed
def test_a_claim_line_lists_each_exclusion_and_the_loose_factor():
    result = ClaimResult("s", True, "e", 3, margin=25.0, loose=True, excluded={"failed": 2, "flagged": 0})
    assert result.line() == "✓ s [excluding 2 failed] (e) — *loose*: the bound is 25x the observed value"
    both = ClaimResult("s", False, "e", 3, excluded={"failed": 1, "flagged": 4})
    assert both.line() == "✗ s [excluding 1 failed] [excluding 4 flagged] (e)"


def test_more_than_three_rows_are_named_three_and_counted():
    rows = [row(name, 1e-6, 9.0) for name in "ABCDE"]
    result = one({"says": "s", "every": {}, "metric": "dtheta.relative_error", "at_most": 1}, rows)
    assert "first exception: A DP5 1e-06 0 (ok, dtheta.relative_error = 9)" in result.evidence
    excluded = one(
        {"says": "s", "every": {"engine": "Z"}, "status": "ok", "excluding": "failed"},
        [row("Z", r, 0, status="failed") for r in (1e-8, 1e-6, 1e-4, 1e-2)],
    )
    assert excluded.evidence == (
        "no row matches the selection; 4 failed rows excluded as declared "
        "(Z DP5 1e-08 0, Z DP5 1e-06 0, Z DP5 0.0001 0 and 1 more)"
    )


# ------------------------------------------------------------------------- quantified claims' words
METRIC = "dtheta.relative_error"


@pytest.mark.parametrize(
    "form, bound, margin, observed",
    [
        # every: the worst row counts; any: the best witness; none: the closest approach to the range
        ("every", {"at_most": 10}, 2.5, "4 against <= 10"),
        ("every", {"at_least": 0.5}, 2.0, "1 against >= 0.5"),
        ("any", {"at_most": 2}, 2.0, "1 against <= 2"),
        ("any", {"at_least": 3}, 4 / 3, "4 against >= 3"),
        ("none", {"at_least": 5}, 1.25, "4 against >= 5"),
        ("none", {"at_most": 0.5}, 2.0, "1 against <= 0.5"),
        ("every", {"at_least": 0.5, "at_most": 5}, 1.25, "4 against <= 5, 1 against >= 0.5"),
    ],
)
def test_the_margin_of_each_quantifier_is_taken_at_its_own_extreme(form, bound, margin, observed):
    rows = [row("A", 1e-6, 1.0), row("B", 1e-6, 4.0), row("C", 1e-6, 2.0)]
    result = one({"says": "s", form: {}, "metric": METRIC, **bound}, rows)
    assert result.holds and result.margin == pytest.approx(margin)
    assert result.evidence.endswith(
        f"; range 1 (A DP5 1e-06 0) to 4 (B DP5 1e-06 0); margin {margin:.3g}x (observed {observed})"
    )


@pytest.mark.parametrize(
    "values, bound, margin",
    [
        ([0.0, 1.0], {"at_least": 0.5}, None),  # a zero extreme: no factor is defined
        ([0.0, 0.0], {"at_most": 1.0}, None),
        ([0.25], {"at_most": 1.0}, 4.0),  # factors on either side of one
        ([0.5], {"at_most": 1.0}, 2.0),
        ([2.0], {"at_most": 1.0}, 0.5),
    ],
)
def test_the_margin_is_defined_only_where_bound_and_value_are_positive(values, bound, margin):
    result = one(
        {"says": "s", "every": {}, "metric": METRIC, **bound}, [row(f"E{i}", 1e-6, v) for i, v in enumerate(values)]
    )
    assert result.margin == margin
    assert ("; margin " in result.evidence) == (margin is not None)


@pytest.mark.parametrize(
    "value, bound, text",
    [
        (1.2345, 2.0, "1.23 against <= 2"),  # three digits tell them apart
        (1.2345, 1.2346, "1.234 against <= 1.235"),  # four needed (1.2345 is 1.23449... in binary)
        (1.23456, 1.23456, "1.23 against <= 1.23"),  # equal: three
        (1.00000000001, 1.0, "1 against >= 1"),  # at most eleven digits are printed
    ],
)
def test_the_observed_value_and_its_bound_get_the_digits_that_tell_them_apart(value, bound, text):
    key = "at_most" if value <= bound else "at_least"
    result = one({"says": "s", "every": {}, "metric": METRIC, key: bound}, [row("A", 1e-6, value)])
    assert result.evidence.endswith(f"(observed {text})")


def test_a_failed_row_is_never_a_pass_of_a_none_claim_unless_failed_is_wanted():
    rows = [row("A", 1e-6, 1.0), row("B", 1e-6, 1.0, status="failed")]
    flagged = {"says": "s", "none": {}, "status": "flagged"}
    result = one(flagged, rows)
    assert not result.holds
    assert result.evidence == "0 of 2 rows have status flagged; first exception: B DP5 1e-06 0 (failed)"
    # failed named in the selection's status condition: the failed row is in scope and not flagged
    assert one({**flagged, "none": {"status": ["ok", "failed"]}}, rows).holds
    above = {"says": "s", "none": {}, "metric": METRIC, "at_least": 5}
    assert not one(above, rows).holds  # the failed row's number does not count
    assert one({**above, "status": ["ok", "failed"]}, rows).holds
    assert one({**above, "none": {"status": ["ok", "failed"]}}, rows).holds


def test_the_status_conditions_of_the_selection_and_the_claim_are_both_printed():
    rows = [row("A", 1e-6, 1.0), row("B", 1e-6, 1.0, status="flagged")]
    result = one({"says": "s", "every": {"status": ["ok", "flagged"]}, "status": "ok"}, rows)
    assert not result.holds
    assert result.evidence == ("1 of 2 rows have status ok or flagged and ok; first exception: B DP5 1e-06 0 (flagged)")


def test_an_empty_quantified_scope_keeps_the_sentence_and_the_exclusions():
    result = one(
        {"says": "the sentence", "every": {"engine": "Z"}, "status": "ok", "excluding": "failed"},
        [row("Z", 1e-6, 1.0, status="failed")],
    )
    assert (result.says, result.holds, result.n_rows, result.excluded) == ("the sentence", False, 0, {"failed": 1})
    assert result.line() == (
        "✗ the sentence [excluding 1 failed] (no row matches the selection; 1 failed row "
        "excluded as declared (Z DP5 1e-06 0))"
    )


def test_a_rows_label_carries_its_horizon():
    rows = [{**row("A", 1e-6, 9.0), "horizon": 10.0}, {**row("B", 1e-6, 1.0), "horizon": 2}]
    result = one({"says": "s", "every": {}, "metric": METRIC, "at_most": 5}, rows)
    assert result.evidence.endswith("first exception: A DP5 1e-06 0 10 (ok, dtheta.relative_error = 9)")
    assert "to 9 (A DP5 1e-06 0 10)" in result.evidence and "1 (B DP5 1e-06 0 2)" in result.evidence


def test_rows_without_a_number_are_counted_in_every_and_any_claims_not_in_none():
    rows = [row("A", 1e-6, 1.0), row("B", 1e-6, None), row("C", 1e-6, float("inf"))]
    every = one({"says": "s", "every": {}, "metric": METRIC, "at_most": 5}, rows)
    assert every.evidence == (
        "1 of 3 rows have dtheta.relative_error <= 5; range 1 (A DP5 1e-06 0) to 1 "
        "(A DP5 1e-06 0); margin 5x (observed 1 against <= 5); 2 rows without a number "
        "(B DP5 1e-06 0, C DP5 1e-06 0); first exception: B DP5 1e-06 0 (ok)"
    )
    any_ = one({"says": "s", "any": {}, "metric": METRIC, "at_most": 5}, rows[:2])
    assert any_.holds and any_.evidence.endswith("; 1 row without a number (B DP5 1e-06 0)")
    none = one({"says": "s", "none": {}, "metric": METRIC, "at_least": 5}, rows[:2])
    assert not none.holds and "without a number" not in none.evidence
    assert none.evidence.endswith("; first exception: B DP5 1e-06 0 (ok)")


def test_covers_counts_the_passing_rows_of_every_and_all_rows_of_any():
    # the grid holds rtol 1e-6 and 1e-4; the row at 1e-4 is above the bound
    rows = [row("A", 1e-6, 1.0), row("A", 1e-4, 9.0)]
    every = one({"says": "s", "every": {}, "metric": METRIC, "at_most": 5, "covers": ["rtol"]}, rows)
    assert every.holds is False
    assert every.evidence == (
        "1 of 2 rows have dtheta.relative_error <= 5; range 1 (A DP5 1e-06 0) to 9 "
        "(A DP5 0.0001 0); margin 0.556x (observed 9 against <= 5); first exception: "
        "A DP5 0.0001 0 (ok, dtheta.relative_error = 9); rtol 0.0001 of the grid not covered"
    )
    any_ = one({"says": "s", "any": {}, "metric": METRIC, "at_most": 5, "covers": ["rtol"]}, rows)
    assert any_.holds  # a witness at 1e-6; both tolerances were looked at
    lacking = one(
        {"says": "s", "any": {}, "metric": METRIC, "at_most": 5, "covers": ["rtol"]},
        rows + [row("A", 1e-2, 1.0, status="unavailable")],
    )
    assert lacking.holds is False and lacking.evidence.endswith(
        "; 1 row unavailable on this machine, not counted; rtol 0.01 of the grid not covered"
    )


def test_a_margin_of_exactly_ten_is_not_loose():
    rows = [row("A", 1e-6, 4.0)]
    assert not one({"says": "s", "every": {}, "metric": METRIC, "at_most": 40}, rows).loose
    assert one({"says": "s", "every": {}, "metric": METRIC, "at_most": 40.4}, rows).loose


def test_monotone_groups_are_taken_in_the_order_of_their_names_as_text():
    # seeds 10 and 9 both break; "(10,)" sorts before "(9,)" as text, so seed 10 is named first
    # (the engines make the rows' own text sort the other way: the key decides, not the rows)
    rows = [
        row("A", 1e-8, 2, seed=9),
        row("A", 1e-6, 1, seed=9),
        row("B", 1e-8, 2, seed=10),
        row("B", 1e-6, 1, seed=10),
    ]
    result = one({**MONOTONE, "group_by": ["seed"]}, rows)
    assert result.evidence.endswith("first exception: 10: dtheta.relative_error 2 at rtol = 1e-08, 1 at 1e-06 (1 more)")
    # groups whose keys mix types (a missing field is None) are still ordered, by their text
    mixed = [
        row("A", 1e-8, 1, seed=None),
        row("A", 1e-6, 2, seed=None),
        row("A", 1e-8, 2, seed=9),
        row("A", 1e-6, 1, seed=9),
    ]
    assert one({**MONOTONE, "group_by": ["seed"]}, mixed).evidence.endswith(
        "first exception: 9: dtheta.relative_error 2 at rtol = 1e-08, 1 at 1e-06"
    )


def test_a_monotone_claim_names_its_group_keys_and_the_group_of_all_rows():
    rows = [row("A", 1e-8, 0.25), row("A", 1e-6, 0.5)]
    two = one({**MONOTONE, "group_by": ["engine", "seed"]}, rows)
    assert two.evidence == "1 of 1 groups (engine, seed) move increasing strictly along rtol; smallest step 2x"
    plain = {k: v for k, v in MONOTONE.items() if k != "group_by"}
    assert one(plain, rows[::-1] + [row("B", 1e-4, 0.1)]).evidence.endswith(
        "first exception: all rows: dtheta.relative_error 0.5 at rtol = 1e-06, 0.1 at 0.0001"
    )


def test_a_failed_row_breaks_its_monotone_group_even_with_numbers():
    rows = [row("A", 1e-8, 1), row("A", 1e-6, 2, status="failed"), row("A", 1e-4, 3)]
    result = one(MONOTONE, rows)
    assert not result.holds
    assert result.evidence.endswith("first exception: A: A DP5 1e-06 0 has no dtheta.relative_error (failed)")


def test_an_empty_monotone_or_ratio_scope_and_a_self_paired_ratio_keep_their_sentence():
    assert one({**MONOTONE, "among": {"engine": "Z"}}, [row("A", 1e-8, 1)]).holds is False
    assert (
        one({**RATIO, "numerator": {"engine": "A"}, "denominator": {"rtol": 1e-6}}, [row("A", 1e-6, 0)]).holds is False
    )
    assert one(RATIO, [row("A", 1e-6, 0)]).holds is False


def test_unpaired_rows_are_listed_by_their_keys_as_text_on_each_side():
    # numerator rows without a partner at rtol 1e-6 and 1e-4: "0.0001" sorts before "1e-06" as text
    rows = [
        row("A", 1e-6, 0, n_rhs=200),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
        row("C", 1e-6, 0),
        row("C", 1e-4, 0),
        row("D", 1e-6, 0, solver="RadauIIA5"),
        row("D", 1e-4, 0, solver="RadauIIA5"),
    ]
    assert (
        "; 4 rows without a partner (C DP5 0.0001 0, C DP5 1e-06 0, D RadauIIA5 0.0001 0 and 1 more)"
        in one(RATIO, rows).evidence
    )
    # keys that mix types (a field missing on one row) are ordered by their text too
    mixed = rows[:2] + [row("C", None, 0), row("C", 1e-4, 0), row("D", None, 0, solver="RadauIIA5")]
    assert "; 3 rows without a partner (C DP5 0.0001 0, C DP5 0, D RadauIIA5 0)" in one(RATIO, mixed).evidence


def test_ratio_ends_that_agree_to_eleven_digits_are_printed_with_three():
    rows = [
        row("A", 1e-6, 0, n_rhs=100000000000),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100000000000),
        row("B", 1e-6, 0, n_rhs=100000000001),
        row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=100000000000),
    ]
    assert "2 pairs range 1 (A 1e-06) to 1 (B 1e-06)" in one(RATIO, rows).evidence


def test_exclusions_on_both_sides_of_a_ratio_are_reported_per_side():
    rows = [
        row("A", 1e-6, 0, n_rhs=200),
        row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
        row("B", 1e-6, 0, status="failed"),
        row("B", 1e-6, 0, solver="RadauIIA5", status="failed"),
    ]
    result = one({**RATIO, "excluding": ["failed"]}, rows)
    assert result.holds and result.excluded == {"failed": 2}
    assert result.evidence.endswith(
        "; numerator: 1 failed row excluded as declared (B DP5 1e-06 0); "
        "denominator: 1 failed row excluded as declared (B RadauIIA5 1e-06 0)"
    )


def test_a_margin_that_is_not_defined_prints_nothing_after_the_range():
    result = one(
        {"says": "s", "every": {}, "metric": METRIC, "at_least": 0.5}, [row("A", 1e-6, 0.0), row("B", 1e-6, 1.0)]
    )
    assert result.evidence == (
        "1 of 2 rows have dtheta.relative_error >= 0.5; range 0 (A DP5 1e-06 0) to 1 "
        "(B DP5 1e-06 0); first exception: A DP5 1e-06 0 (ok, dtheta.relative_error = 0)"
    )


def test_both_excluded_statuses_are_named():
    rows = [row("A", 1e-6, 1.0), row("B", 1e-6, 1.0, status="failed"), row("C", 1e-6, 1.0, status="flagged")]
    result = one({"says": "s", "every": {}, "status": "ok", "excluding": ["failed", "flagged"]}, rows)
    assert result.holds and result.excluded == {"failed": 1, "flagged": 1}
    assert result.evidence == (
        "1 of 1 rows have status ok; 1 failed row excluded as declared (B DP5 1e-06 0); "
        "1 flagged row excluded as declared (C DP5 1e-06 0)"
    )


def test_uncovered_cells_name_the_group_by_all_its_keys_and_format_floats_short():
    rows = [row("A", 1e-8, 1), row("A", 1.2345678e-7, 2), row("B", 1e-8, 1), row("B", 1e-6, 2)]
    result = one({**MONOTONE, "group_by": ["engine", "seed"], "covers": ["rtol", "engine"]}, rows)
    # field by field, group by group: A lacks rtol 1e-6 and engine B, B lacks 1.2345678e-7 and engine A
    assert result.evidence.endswith(
        "smallest step 2x; rtol 1e-06 of the grid in group A 0 not covered; "
        "rtol 1.23457e-07 of the grid in group B 0 not covered; engine B of the grid "
        "in group A 0 not covered; engine A of the grid in group B 0 not covered"
    )


def test_a_failed_row_that_carries_a_number_breaks_an_every_claim_and_is_no_witness_for_any():
    # The docstring's rule: a failed cell in scope breaks `every` (unless excluded or asked for by
    # status), whatever number it carries; it is not a pass for `any` either.
    rows = [row("A", 1e-6, 1.0), {**row("B", 1e-6, 1.0), "status": "failed"}]
    every = one({"says": "s", "every": {}, "metric": METRIC, "at_most": 5}, rows)
    assert not every.holds
    assert every.evidence.startswith("1 of 2 rows have dtheta.relative_error <= 5")
    assert "; 1 failed (B DP5 1e-06 0)" in every.evidence and "without a number" not in every.evidence
    assert every.evidence.endswith("first exception: B DP5 1e-06 0 (failed, dtheta.relative_error = 1)")
    any_ = one({"says": "s", "any": {}, "metric": METRIC, "at_most": 5}, rows[1:])
    assert not any_.holds
    excluded = one({"says": "s", "every": {}, "metric": METRIC, "at_most": 5, "excluding": ["failed"]}, rows)
    assert excluded.holds
