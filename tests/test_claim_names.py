"""Claims (harness/compare/_claims.py): the names a claim uses, checked against its rows' fields
when the file is read (`parse_claims(..., fields=...)`), each mistake refused with the key path,
the rows' kinds and the values or fields that would have been right, in a stable order."""

from __future__ import annotations

import re

import pytest

from harness.compare._claims import parse_claims
from harness.errors import HarnessInputError

# two kinds of rows, as an experiment's kinds declare them: field -> its possible values (None: any)
FIELDS = {
    "gradient": {
        "engine": ("A", "B"),
        "solver": ("DP5", "RadauIIA5"),
        "rtol": (1e-06, 0.0001),
        "seed": None,
        "status": ("ok", "failed"),
        "n_rhs": None,
        "dtheta.relative_error": None,
    },
    "training": {"engine": ("A", "C"), "lr": (0.01,), "status": ("ok",), "final_loss": None},
}
MONOTONE = {"says": "s", "monotone": "dtheta.relative_error", "over": "rtol", "direction": "increasing"}
RATIO = {
    "says": "r",
    "ratio": "n_rhs",
    "numerator": {"solver": "DP5"},
    "denominator": {"solver": "RadauIIA5"},
    "at_least": 1,
}
EVERY = {"says": "e", "every": {"engine": "A"}, "metric": "dtheta.relative_error", "at_most": 1}


def refused(table, fields=FIELDS):
    with pytest.raises(HarnessInputError) as caught:  # fields None: the table alone, no rows to check against
        parse_claims([table], "claims", fields)
    return str(caught.value)


def accepted(table, fields=FIELDS):
    (claim,) = parse_claims([table], "claims", fields)
    return claim


GRADIENT_FIELDS = "['dtheta.relative_error', 'engine', 'kind', 'n_rhs', 'rtol', 'seed', 'solver', 'status']"


def test_an_unknown_field_in_each_selection_is_named_with_its_key():
    assert refused({**EVERY, "every": {"engin": "A"}}) == (
        f"claims[0].every.engin: no such field in the gradient rows; fields are {GRADIENT_FIELDS}"
    )
    assert refused({**MONOTONE, "among": {"lr": 0.01}}) == (
        f"claims[0].among.lr: no such field in the gradient rows; fields are {GRADIENT_FIELDS}"
    )
    assert refused({**RATIO, "numerator": {"lr": 0.01}}).startswith("claims[0].numerator.lr: no such field")
    assert refused({**RATIO, "denominator": {"lr": 0.01}}).startswith("claims[0].denominator.lr: no such field")
    # a selection of two kinds knows the fields of both
    assert refused({**EVERY, "every": {"kind": ["gradient", "training"], "nope": 1}}).startswith(
        "claims[0].every.nope: no such field in the gradient/training rows; fields are ['dtheta.relative_error', "
        "'engine', 'final_loss', 'kind', 'lr',"
    )


def test_every_entry_of_a_selection_is_checked_whatever_comes_before_it():
    # after `kind`, after a field of any value, after a range, a wrong value is still refused
    assert "engine = 'Z': not a value" in refused({**EVERY, "every": {"kind": "gradient", "engine": "Z"}})
    assert "engine = 'Z': not a value" in refused({**EVERY, "every": {"seed": 3, "engine": "Z"}})
    assert "engine = 'Z': not a value" in refused({**EVERY, "every": {"rtol": {"at_most": 1}, "engine": "Z"}})


def test_values_and_ranges_are_checked_against_the_values_the_rows_can_have():
    # the values are listed sorted as text, the way a reader scans them
    assert refused({**EVERY, "every": {"rtol": 1e-8}}) == (
        "claims[0].every.rtol = 1e-08: not a value of this experiment's rows; expected one of [0.0001, 1e-06]"
    )
    assert refused({**EVERY, "every": {"rtol": {"at_most": 1e-8}}}) == (
        "claims[0].every.rtol = {'at_most': 1e-08} matches none of this experiment's values [0.0001, 1e-06]: "
        "the claim's scope would be empty"
    )
    # a range that holds one of the values, a list of known values, any value of a free field: accepted
    accepted({**EVERY, "every": {"rtol": {"at_most": 1e-5}}})
    accepted({**EVERY, "every": {"rtol": {"at_least": 1e-5}, "engine": ["A", "B"], "seed": 12345}})
    assert "engine = 'C': not a value" in refused({**EVERY, "every": {"engine": ["A", "C"]}})


def test_the_claims_other_names_are_checked_with_their_keys():
    assert refused({**MONOTONE, "monotone": "dtheta.relative_eror"}) == (
        "claims[0].monotone = 'dtheta.relative_eror': no such field in the gradient rows (did you mean "
        f"'dtheta.relative_error'?); fields are {GRADIENT_FIELDS}"
    )
    assert refused({**MONOTONE, "over": "lr"}).startswith("claims[0].over = 'lr': no such field in the gradient rows;")
    assert refused({**RATIO, "ratio": "final_loss"}).startswith("claims[0].ratio = 'final_loss': no such field")
    assert refused({**EVERY, "metric": "loss"}).startswith("claims[0].metric = 'loss': no such field")
    training = {**EVERY, "every": {"kind": "training"}, "metric": "final_loss", "per": "rtol"}
    assert refused(training).startswith("claims[0].per = 'rtol': no such field in the training rows")
    assert refused({**MONOTONE, "group_by": ["engine", "lr"]}).startswith("claims[0].group_by[1] = 'lr'")
    assert refused({**RATIO, "pair_by": ["lr"]}).startswith("claims[0].pair_by[0] = 'lr'")
    assert refused({**EVERY, "covers": ["rtol", "engine", "lr"]}).startswith("claims[0].covers[2] = 'lr'")


def test_a_ratio_over_two_kinds_knows_the_fields_of_both():
    table = {
        **RATIO,
        "ratio": "engine",
        "numerator": {"kind": "gradient"},
        "denominator": {"kind": "training"},
        "pair_by": ["lr", "solver"],
    }
    accepted(table)  # lr is a training field, solver a gradient one: the pair is checked over both
    assert refused({**table, "pair_by": ["nope"]}).startswith(
        "claims[0].pair_by[0] = 'nope': no such field in the gradient/training rows;"
    )


def test_claims_without_their_optional_selection_are_checked():
    accepted(MONOTONE)  # no `among`: the whole of the gradient rows
    accepted({**MONOTONE, "among": {"engine": "B"}, "group_by": ["seed"]})
    accepted(RATIO)
    assert refused({**EVERY, "every": {"kind": "trainng"}}) == (
        "claims[0].every.kind = 'trainng': this experiment's rows are of kinds ['gradient', 'training']"
    )


def test_a_kind_without_declared_fields_leaves_the_claim_unchecked():
    fields = {**FIELDS, "free": None}
    accepted({**EVERY, "every": {"kind": "free", "anything": 1}, "metric": "whatever"}, fields)
    assert re.match(
        r"claims\[0\]\.every\.anything: no such field",
        refused({**EVERY, "every": {"kind": "training", "anything": 1}}, fields),
    )


def test_a_selection_of_two_kinds_takes_the_union_of_their_values():
    fields = {
        "gradient": {"engine": ("A", "B"), "n_rhs": None, "horizon": (1.0,)},
        "training": {"engine": ("A", "C"), "n_rhs": (5,), "horizon": None},
    }
    both = {**EVERY, "every": {"kind": ["gradient", "training"]}, "metric": "n_rhs"}
    for engine in ("A", "B", "C"):
        accepted({**both, "every": {**both["every"], "engine": engine}}, fields)
    assert refused({**both, "every": {**both["every"], "engine": "Z"}}, fields) == (
        "claims[0].every.engine = 'Z': not a value of this experiment's rows; expected one of ['A', 'B', 'C']"
    )
    # a field free in either kind is free in both (any value), in either order of the kinds
    accepted({**both, "every": {**both["every"], "n_rhs": 7, "horizon": 2.5}}, fields)
    assert refused({**both, "every": {"kind": "training", "n_rhs": 7}}, fields).startswith(
        "claims[0].every.n_rhs = 7: not a value"
    )


def test_bounds_that_exclude_each_other_are_refused():
    assert refused({**EVERY, "at_least": 2, "at_most": 1}) == (
        "claims[0]: at_least = 2 > at_most = 1: no value can meet both"
    )


@pytest.mark.parametrize(
    "table, message",
    [
        ({**EVERY, "covers": "rtol"}, "claims[0].covers = 'rtol': expected a list of field names"),
        ({**EVERY, "covers": []}, "claims[0].covers = []: expected the fields whose every value is covered"),
        (
            {**EVERY, "every": {"status": "done"}},
            "claims[0].every.status = 'done': unknown status 'done'; a status is one of "
            "['ok', 'flagged', 'failed', 'unavailable']",
        ),
    ],
)
def test_covers_and_a_selections_status_are_checked_when_read(table, message):
    assert refused(table, None) == message
