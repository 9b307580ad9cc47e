"""Properties of the claim evaluator (harness/compare/_claims.py) on random rows and bounds.

Each test draws result rows and a claim, evaluates the claim with `evaluate`, and compares the
verdict with a direct evaluation written differently (numpy masks and comparisons instead of the
evaluator's selection and predicate functions). Bounds are drawn from the rows' own values as often
as not, so that the edges (a value exactly at `at_most` or `at_least`, a selection range's ends) are
exercised in every run: both bounds and both edges are inclusive.

Only properties that do not depend on how evidence is worded are asserted: whether a claim holds,
and how many rows a quantified claim selected.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.compare._claims import evaluate, parse_claims

SETTINGS = settings()  # the profile of conftest.py: 50 examples, 20 under mutation testing

ENGINES = ("A", "B", "C")
SOLVERS = ("DP5", "RadauIIA5")
RTOLS = (1e-8, 1e-6, 1e-4)
# "failed" rows are left out: since the claims rewrite a failed row in scope breaks a claim whatever
# its form, a rule these properties do not model (test_claims.py covers it)
STATUSES = ("ok", "flagged")

# values on a coarse grid so that equal values (ties, edges) are common
values = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 10.0, 100.0])


@st.composite
def rows(draw, min_size=1, max_size=8):
    n = draw(st.integers(min_size, max_size))
    out = []
    for _ in range(n):
        out.append({
            "engine": draw(st.sampled_from(ENGINES)),
            "solver": draw(st.sampled_from(SOLVERS)),
            "rtol": draw(st.sampled_from(RTOLS)),
            "seed": draw(st.integers(0, 2)),
            "status": draw(st.sampled_from(STATUSES)),
            "n_rhs": draw(st.integers(1, 50)),
            "dtheta": {"relative_error": draw(values)},
        })
    return out


def one(table, data):
    (result,) = evaluate(parse_claims([table]), data)
    return result


@st.composite
def bounds(draw, pool):
    """{at_most}, {at_least} or both, each either one of `pool` (an edge) or a random number."""
    choice = draw(st.sampled_from(["at_most", "at_least", "both"]))
    pick = st.one_of(st.sampled_from(pool), st.floats(-1.0, 120.0, allow_nan=False))
    out = {}
    if choice in ("at_most", "both"):
        out["at_most"] = float(draw(pick))
    if choice in ("at_least", "both"):
        out["at_least"] = float(draw(pick))
    if choice == "both" and out["at_least"] > out["at_most"]:  # a range no value can meet is refused
        out["at_least"], out["at_most"] = out["at_most"], out["at_least"]
    return out


def _inside(x: np.ndarray, bound: dict) -> np.ndarray:
    ok = np.ones(x.shape, dtype=bool)
    if "at_most" in bound:
        ok &= ~(x > bound["at_most"])
    if "at_least" in bound:
        ok &= ~(x < bound["at_least"])
    return ok


@SETTINGS
@given(data=st.data(), form=st.sampled_from(["every", "any", "none"]), per=st.sampled_from([None, "rtol"]))
def test_metric_bounds_match_a_direct_evaluation(data, form, per):
    table_rows = data.draw(rows())
    engine = data.draw(st.sampled_from(ENGINES))
    errors = np.array([r["dtheta"]["relative_error"] for r in table_rows])
    scaled = errors / np.array([r["rtol"] for r in table_rows]) if per else errors
    bound = data.draw(bounds(list(scaled)))
    claim = {"says": "s", form: {"engine": engine}, "metric": "dtheta.relative_error", **bound}
    if per:
        claim["per"] = per
    selected = np.array([r["engine"] == engine for r in table_rows])
    result = one(claim, table_rows)
    if not selected.any():
        assert result.holds is False  # a claim about nothing is not evidence
        return
    inside = _inside(scaled[selected], bound)
    expected = {"every": inside.all(), "any": inside.any(), "none": not inside.any()}[form]
    assert result.holds is bool(expected)
    assert result.n_rows == int(selected.sum())


@SETTINGS
@given(data=st.data(), form=st.sampled_from(["every", "any", "none"]))
def test_status_claims_match_a_direct_evaluation(data, form):
    table_rows = data.draw(rows())
    wanted = data.draw(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=2, unique=True))
    solver = data.draw(st.sampled_from(SOLVERS))
    claim = {"says": "s", form: {"solver": solver}, "status": wanted if len(wanted) > 1 else wanted[0]}
    statuses = np.array([r["status"] for r in table_rows])
    selected = np.array([r["solver"] == solver for r in table_rows])
    result = one(claim, table_rows)
    if not selected.any():
        assert result.holds is False
        return
    meets = np.isin(statuses[selected], wanted)
    expected = {"every": meets.all(), "any": meets.any(), "none": not meets.any()}[form]
    assert result.holds is bool(expected)


@SETTINGS
@given(data=st.data())
def test_a_selection_range_includes_both_ends(data):
    table_rows = data.draw(rows())
    errors = np.array([r["dtheta"]["relative_error"] for r in table_rows])
    selection = data.draw(bounds(list(errors)))
    # a status claim that every row satisfies: the claim's n_rows is the number of rows selected
    claim = {"says": "s", "every": {"dtheta.relative_error": selection}, "status": list(STATUSES)}
    result = one(claim, table_rows)
    expected = int(_inside(errors, selection).sum())
    assert result.n_rows == expected
    assert result.holds is (expected > 0)


@SETTINGS
@given(data=st.data())
def test_a_selection_by_list_and_by_value(data):
    table_rows = data.draw(rows())
    engines = data.draw(st.lists(st.sampled_from(ENGINES), min_size=1, max_size=3, unique=True))
    rtol = data.draw(st.sampled_from(RTOLS))
    claim = {"says": "s", "every": {"engine": engines, "rtol": rtol}, "status": list(STATUSES)}
    expected = sum(1 for r in table_rows if r["engine"] in set(engines) and math.isclose(r["rtol"], rtol, rel_tol=0))
    result = one(claim, table_rows)
    assert result.n_rows == expected
    assert result.holds is (expected > 0)


@st.composite
def curves(draw):
    """Groups (by engine) of points (rtol, error) with distinct rtols within each group."""
    out = []
    for engine in draw(st.lists(st.sampled_from(ENGINES), min_size=1, max_size=3, unique=True)):
        # two points at least per group: a group of one point breaks a monotone claim since the rewrite
        xs = draw(st.lists(st.sampled_from([1e-10, 1e-8, 1e-6, 1e-4, 1e-2]), min_size=2, max_size=5, unique=True))
        for x in xs:
            out.append({"engine": engine, "rtol": x, "status": "ok", "dtheta": {"relative_error": draw(values)}})
    return draw(st.permutations(out))


@SETTINGS
@given(table_rows=curves(), direction=st.sampled_from(["increasing", "decreasing"]), strict=st.booleans())
def test_monotone_in_both_directions_matches_a_direct_evaluation(table_rows, direction, strict):
    claim = {"says": "s", "monotone": "dtheta.relative_error", "over": "rtol", "direction": direction,
             "group_by": ["engine"], "strict": strict}
    result = one(claim, table_rows)
    compared, holds = 0, True
    for engine in ENGINES:
        group = sorted((r["rtol"], r["dtheta"]["relative_error"]) for r in table_rows if r["engine"] == engine)
        if len(group) < 2:
            continue
        compared += 1
        steps = np.diff([y for _, y in group]) * (1 if direction == "increasing" else -1)
        holds &= bool(np.all(steps > 0) if strict else np.all(steps >= 0))
    assert result.holds is (compared > 0 and holds)


@st.composite
def paired_costs(draw):
    out = []
    for seed in draw(st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True)):
        for solver in SOLVERS:
            # every row has its partner: an unpaired row breaks a ratio claim since the rewrite
            out.append({"solver": solver, "seed": seed, "n_rhs": draw(st.integers(1, 40))})
    return out


@SETTINGS
@given(data=st.data(), table_rows=paired_costs())
def test_ratio_bounds_in_both_directions_match_a_direct_evaluation(data, table_rows):
    top = {r["seed"]: r["n_rhs"] for r in table_rows if r["solver"] == "DP5"}
    bottom = {r["seed"]: r["n_rhs"] for r in table_rows if r["solver"] == "RadauIIA5"}
    seeds = sorted(set(top) & set(bottom))
    ratios = np.array([top[s] / bottom[s] for s in seeds])
    bound = data.draw(bounds(list(ratios) or [1.0]))
    claim = {"says": "s", "ratio": "n_rhs", "numerator": {"solver": "DP5"}, "denominator": {"solver": "RadauIIA5"},
             "pair_by": ["seed"], **bound}
    result = one(claim, table_rows)
    if not seeds:
        assert result.holds is False  # nothing paired: no evidence
        return
    assert result.holds is bool(_inside(ratios, bound).all())
