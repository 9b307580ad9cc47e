"""Claims (harness/compare/_claims.py): the paths the property tests do not reach, each pinned by a
behaviour a reader of a report relies on: the claim's sentence and row count on every path, a
monotone claim without groups or with an `among` that excludes a breaking row, rows without the
metric left out rather than crashing, the extreme rows named in the right order, and the mistakes
in a claim's table rejected with the key named."""

from __future__ import annotations

import pytest

from harness.compare._claims import evaluate, parse_claims
from harness.errors import HarnessInputError


def row(engine, rtol, error, status="ok", solver="DP5", seed=0, n_rhs=100):
    return {"engine": engine, "solver": solver, "rtol": rtol, "seed": seed, "status": status, "n_rhs": n_rhs,
            "dtheta": {"relative_error": error}}


def one(table, rows):
    (result,) = evaluate(parse_claims([table]), rows)
    return result


MONOTONE = {"says": "error grows with rtol", "monotone": "dtheta.relative_error", "over": "rtol",
            "direction": "increasing"}
RATIO = {"says": "DP5 costs more", "ratio": "n_rhs", "numerator": {"solver": "DP5"},
         "denominator": {"solver": "RadauIIA5"}, "pair_by": ["engine"], "at_least": 1}
BOUND = {"says": "small errors", "every": {"status": "ok"}, "metric": "dtheta.relative_error", "at_most": 1.0}


def test_a_claim_as_data_round_trips():
    (claim,) = parse_claims([dict(BOUND)])
    assert claim.as_dict() == {"says": "small errors", "form": "every", **{k: v for k, v in BOUND.items()
                                                                          if k != "says"}}


def test_monotone_without_group_by_is_one_group_of_all_rows():
    rows = [row("A", 1e-8, 1.0), row("B", 1e-6, 2.0), row("A", 1e-4, 3.0)]
    assert one(MONOTONE, rows).holds
    assert not one(MONOTONE, rows + [row("B", 1e-2, 0.5)]).holds
    assert not one({**MONOTONE, "direction": "decreasing"}, rows).holds


def test_monotone_decreasing_in_both_outcomes():
    rows = [row("A", 1e-8, 3.0), row("A", 1e-6, 2.0), row("A", 1e-4, 1.0)]
    assert one({**MONOTONE, "direction": "decreasing"}, rows).holds
    assert one({**MONOTONE, "direction": "decreasing", "strict": True}, rows).holds
    assert not one(MONOTONE, rows).holds


def test_the_metric_range_names_the_lowest_then_the_highest_row():
    rows = [row("Mid", 1e-6, 0.5), row("Low", 1e-6, 0.1), row("High", 1e-6, 0.9)]
    evidence = one(BOUND, rows).evidence
    assert "0.1" in evidence and "0.9" in evidence
    assert evidence.index("Low") < evidence.index("High")
    assert "Mid" not in evidence


def test_the_first_exception_of_a_quantified_claim_is_named():
    rows = [row("Good", 1e-6, 0.5), row("Bad", 1e-6, 7.0)]
    result = one(BOUND, rows)
    assert not result.holds
    assert "7" in result.evidence and result.evidence.count("Bad") >= 2  # in the range and as the exception
    none = one({"says": "no big", "none": {"status": "ok"}, "metric": "dtheta.relative_error", "at_least": 5.0},
               rows)
    assert not none.holds and "Bad" in none.evidence


def test_ratio_rows_without_a_number_or_with_zero_are_not_pairs():
    rows = [row("A", 1e-6, 0, n_rhs=300), row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=0),
            row("B", 1e-6, 0, n_rhs=None), row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=5)]
    result = one(RATIO, rows)
    assert not result.holds and result.n_rows == 0


@pytest.mark.parametrize("table, message", [
    ({**MONOTONE, "group_by": "engine"}, "group_by = 'engine': expected a list of field names"),
    ({**MONOTONE, "group_by": ["engine", 3]}, r"group_by = \['engine', 3\]: expected a list"),
    ({**MONOTONE, "monotone": ""}, "monotone = '': expected a field name"),
    ({**MONOTONE, "over": None}, "over = None: expected a field name"),
    ({**RATIO, "pair_by": "engine"}, "pair_by = 'engine': expected a list"),
    ({**MONOTONE, "strict": "yes"}, "strict = 'yes': expected true or false"),
])
def test_mistakes_in_monotone_and_ratio_claims_name_the_key(table, message):
    with pytest.raises(HarnessInputError, match=message):
        parse_claims([table])


@pytest.mark.parametrize("selection, n", [
    ({"at_least": 1e-6}, 2), ({"at_most": 1e-6}, 2), ({"at_least": 1e-6, "at_most": 1e-6}, 1),
    ({"at_least": 1.1e-6}, 1), ({"at_most": 0.9e-6}, 1),
])
def test_a_selection_range_includes_its_ends(selection, n):
    rows = [row("A", 1e-6, 0.5), row("B", 1e-4, 0.5), row("C", 1e-8, 0.5), {"engine": "D", "status": "ok"}]
    result = one({"says": "s", "every": {"rtol": selection}, "status": "ok"}, rows)
    assert result.n_rows == n  # D, without an rtol, is never in a range


def test_quantified_evidence_names_the_bound_the_unit_and_the_rows():
    rows = [row("A", 1e-6, 2e-5, seed=3), row("B", 1e-6, 5e-5, seed=4)]
    claim = {"says": "s", "every": {"status": "ok"}, "metric": "dtheta.relative_error", "per": "rtol",
             "at_least": 10, "at_most": 100}
    result = one(claim, rows)
    assert result.holds
    assert "dtheta.relative_error / rtol" in result.evidence
    assert ">= 10" in result.evidence and "<= 100" in result.evidence
    assert "A DP5 1e-06 3" in result.evidence and "B DP5 1e-06 4" in result.evidence
    status = one({"says": "s", "every": {"status": "ok"}, "status": ["ok", "flagged"]}, rows)
    assert "ok or flagged" in status.evidence and "/ " not in status.evidence


def test_the_first_exception_says_its_status_and_value():
    rows = [row("A", 1e-6, 0.5), row("B", 1e-6, 7.0, status="flagged")]
    result = one({"says": "s", "every": {"engine": ["A", "B"]}, "metric": "dtheta.relative_error", "at_most": 1.0},
                 rows)
    assert "first exception: B DP5 1e-06 0 (flagged, dtheta.relative_error = 7)" in result.evidence
    status = one({"says": "s", "every": {"engine": ["A", "B"]}, "status": "ok"}, rows)
    assert "first exception: B DP5 1e-06 0 (flagged)" in status.evidence
    # `none` fails on a row that meets the condition; `any` names no exception
    none = one({"says": "s", "none": {"engine": ["A", "B"]}, "status": "ok"}, rows)
    assert not none.holds and "first exception: A DP5 1e-06 0 (ok)" in none.evidence
    anything = one({"says": "s", "any": {"engine": ["A", "B"]}, "status": "failed"}, rows)
    assert not anything.holds and "first exception" not in anything.evidence


def test_claims_with_a_per_or_bound_need_a_metric_and_per_takes_atol():
    with pytest.raises(HarnessInputError, match="go with `metric`"):
        parse_claims([{"says": "s", "every": {}, "status": "ok", "per": "rtol"}])
    with pytest.raises(HarnessInputError, match="go with `metric`"):
        parse_claims([{"says": "s", "every": {}, "status": "ok", "at_most": 1}])
    (claim,) = parse_claims([{"says": "s", "every": {}, "metric": "m", "per": "atol", "at_most": 1}])
    assert claim.spec["per"] == "atol"
    with pytest.raises(HarnessInputError, match=r"claims\[0\].status = \[1\]: expected a status"):
        parse_claims([{"says": "s", "every": {}, "status": [1]}])
    with pytest.raises(HarnessInputError, match=r"claims\[0\] \('s'\): expected exactly one of .*got none"):
        parse_claims([{"says": "s"}])


@pytest.mark.parametrize("table, where", [
    ({"says": "s", "every": {"rtol": {"below": 1}}, "status": "ok"}, r"claims\[0\]\.every\.rtol"),
    ({"says": "s", "every": {}, "metric": ""}, r"claims\[0\]\.metric"),
    ({"says": "s", "every": {}, "metric": "m"}, r"claims\[0\] \('s'\): expected `at_most`"),
    ({"says": "s", "every": {}, "metric": "m", "at_most": "x"}, r"claims\[0\]\.at_most"),
    ({**MONOTONE, "among": {"rtol": {"x": 1}}}, r"claims\[0\]\.among\.rtol"),
    ({**RATIO, "ratio": ""}, r"claims\[0\]\.ratio"),
    ({**RATIO, "numerator": {"rtol": {"x": 1}}}, r"claims\[0\]\.numerator\.rtol"),
])
def test_parse_errors_give_the_path_of_the_bad_key(table, where):
    with pytest.raises(HarnessInputError, match=where):
        parse_claims([table])


def test_the_says_key_is_the_sentence_not_part_of_the_predicate():
    (claim,) = parse_claims([{"says": "  padded  ", "every": {}, "status": "ok"}])
    assert claim.says == "padded" and "says" not in claim.spec


def test_ratio_pairs_rows_missing_the_pair_field_among_themselves():
    """Rows without the pair_by field pair with each other (key None) and sort beside named keys."""
    rows = [row("A", 1e-6, 0, n_rhs=300), row("A", 1e-6, 0, solver="RadauIIA5"),
            {"solver": "DP5", "n_rhs": 50}, {"solver": "RadauIIA5", "n_rhs": 100}]
    result = one(RATIO, rows)
    assert result.n_rows == 2 and not result.holds  # 0.5 < 1
    assert "(None)" in result.evidence and "(A)" in result.evidence


def test_a_ratio_near_one_prints_enough_digits_to_tell_its_ends_apart():
    rows = [row("A", 1e-6, 0, n_rhs=100001), row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100000),
            row("B", 1e-6, 0, n_rhs=100002), row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=100000)]
    evidence = one(RATIO, rows).evidence
    assert "1.00001 (A) to 1.00002 (B)" in evidence
    same = [row("A", 1e-6, 0, n_rhs=150), row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100)]
    assert "1.5 (A) to 1.5 (A)" in one(RATIO, same).evidence


def test_the_evidence_of_a_bound_reads_as_one_phrase():
    rows = [row("A", 1e-6, 2e-5), row("B", 1e-6, 5e-5)]
    claim = {"says": "s", "every": {"engine": ["A", "B"]}, "status": "ok", "metric": "dtheta.relative_error",
             "per": "rtol", "at_least": 10, "at_most": 100}
    evidence = one(claim, rows).evidence
    assert evidence.startswith("2 of 2 rows have status ok, dtheta.relative_error / rtol >= 10 and <= 100; range 20 ")
    plain = one({**BOUND, "every": {"engine": "A"}}, rows).evidence
    assert plain.startswith("1 of 1 rows have dtheta.relative_error <= 1; range")


def test_equal_metric_values_and_float_labels():
    rows = [row("A", 2.0, 0.5), row("B", 2.0, 0.5)]  # a tie: the lowest and highest are the first found
    evidence = one(BOUND, rows).evidence
    assert "range 0.5 (A DP5 2 0) to 0.5 (A DP5 2 0)" in evidence


def test_ratio_without_pair_by_pairs_every_row_with_every_row():
    table = {k: v for k, v in RATIO.items() if k != "pair_by"}
    rows = [row("A", 1e-6, 0, n_rhs=300), row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=100),
            row("C", 1e-6, 0, solver="RadauIIA5", n_rhs=200)]
    result = one(table, rows)
    assert result.holds and result.n_rows == 2
    assert "2 pairs range 1.5 to 3" in result.evidence and "()" not in result.evidence
    two_keys = one({**RATIO, "pair_by": ["engine", "seed"]},
                   [row("A", 1e-6, 0, n_rhs=300), row("A", 1e-6, 0, solver="RadauIIA5")])
    assert "3 (A 0) to 3 (A 0)" in two_keys.evidence


def test_ratio_digits_start_at_three_and_fall_back_to_three():
    rows = [row("A", 1e-6, 0, n_rhs=123456), row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100000),
            row("B", 1e-6, 0, n_rhs=200000), row("B", 1e-6, 0, solver="RadauIIA5", n_rhs=100000)]
    assert "1.23 (A) to 2 (B)" in one(RATIO, rows).evidence
    same = [row("A", 1e-6, 0, n_rhs=123456), row("A", 1e-6, 0, solver="RadauIIA5", n_rhs=100000)]
    assert "1.23 (A) to 1.23 (A)" in one(RATIO, same).evidence


@pytest.mark.parametrize("tables, message", [
    ({"says": "s"}, r"claims: expected an array of tables \(\[\[claims\]\]\)"),
    (["not a table"], r"claims\[0\]: expected a table, got 'not a table'"),
    ([{"says": "s", "every": "A", "status": "ok"}], r"claims\[0\]\.every = 'A': expected a table of field = value"),
    ([{**RATIO, "at_least": "x"}], r"claims\[0\]\.at_least = 'x': expected a number"),
    ([{k: v for k, v in RATIO.items() if k != "at_least"}], r"claims\[0\] \('DP5 costs more'\): expected `at_most`"),
])
def test_the_outer_mistakes_are_named(tables, message):
    with pytest.raises(HarnessInputError, match=message):
        parse_claims(tables)

