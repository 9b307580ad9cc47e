"""The comparison metrics and every agreement check, on cases worked out by hand.

A check that cannot fail is a defect, so each agreement check is given a disagreement planted just
inside its bound (must pass) and just outside (must fail): a bound made looser by any factor above
1.02 lets the outside case through and fails here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import harness.gradcheck as gradcheck
import harness.testing as testing
from harness._metrics import compare_vectors, cosine_similarity, parameter_names, relative_error, worst_entry
from harness.problems import seed_problem
from harness.sensitivity import ForwardSensitivity, QuadratureAdjoint, gradient

INSIDE, OUTSIDE = 0.98, 1.02  # planted disagreement as a fraction of the bound


# ------------------------------------------------------------------------------------ metrics
def test_relative_error_by_hand():
    # g - r = (3, 4, 0): ‖·‖ = 5; ‖r‖ = ‖(0, 0, 10)‖ = 10  ->  0.5
    assert relative_error([3.0, 4.0, 10.0], [0.0, 0.0, 10.0]) == 0.5
    # a 2-D gradient (dL/dz0 is (B, N)) is flattened, not taken row by row: ‖(1,1,1,1)‖ / ‖(2,2,2,2)‖
    assert relative_error(np.full((2, 2), 3.0), np.full((2, 2), 2.0)) == 0.5
    # scale by ‖r‖ alone, not ‖r‖ + ‖g‖ (which would give 5 / (10 + √116) ≈ 0.24 above)
    assert relative_error([0.0, 0.0, 20.0], [0.0, 0.0, 10.0]) == 1.0
    # zero reference: the absolute distance
    assert relative_error([3.0, 4.0], [0.0, 0.0]) == 5.0


def test_worst_entry_and_its_name_by_hand():
    r = np.array([1.0, -8.0, 2.0, 0.5])
    g = np.array([1.0, -8.1, 2.0, 0.9])  # |Δ| = (0, 0.1, 0, 0.4): worst is entry 3
    worst, i = worst_entry(g, r)
    assert i == 3, "worst_entry must return the entry with the LARGEST difference"
    assert worst == pytest.approx(0.4 / 8.0, rel=1e-15)  # scaled by max|r| = 8, not by |r_3|
    names = ["W1[0,0]", "W1[0,1]", "b1[0]", "b2[1]"]
    report = compare_vectors(g, r, names)
    assert (report["worst_index"], report["worst_name"]) == (3, "b2[1]")
    assert report["worst_entry"] == worst
    assert report["relative_error"] == pytest.approx(math.sqrt(0.1**2 + 0.4**2) / math.sqrt(69.25), rel=1e-14)


def test_cosine_by_hand():
    assert cosine_similarity([1.0, 0.0], [0.0, 2.0]) == 0.0
    assert cosine_similarity([1.0, 1.0], [2.0, 2.0]) == pytest.approx(1.0, abs=1e-15)
    assert cosine_similarity([1.0, 0.0], [-3.0, 0.0]) == -1.0
    assert cosine_similarity([1.0, 0.0], [1.0, 1.0]) == pytest.approx(1 / math.sqrt(2), rel=1e-15)
    assert math.isnan(cosine_similarity([0.0, 0.0], [1.0, 1.0]))


def test_parameter_names_follow_the_layout():
    problem = seed_problem(batch=2)
    names = parameter_names(problem.model)
    # 2-3-2: W1 (3, 2) row-major, b1 (3), W2 (2, 3), b2 (2)
    assert names[:3] == ["W1[0,0]", "W1[0,1]", "W1[1,0]"]
    assert names[6:9] == ["b1[0]", "b1[1]", "b1[2]"]
    assert names[-2:] == ["b2[0]", "b2[1]"]
    assert len(names) == problem.model.n_params == 17


# ------------------------------------------------------------ planting a disagreement in an engine
@pytest.fixture(scope="module")
def small():
    """A small problem and its ForwardSensitivity gradient at a loose tolerance: the checks below
    compare an engine with itself, so the only disagreement is the one planted."""
    problem = seed_problem(batch=4)
    return problem, gradient(problem, engine=ForwardSensitivity(), rtol=1e-6, atol=1e-6)


def planted_gradient(real_gradient, delta_theta):
    """`gradient` that adds delta_theta to dL/dθ on every call but the first.

    Both checks compute their reference first and the engines under test after it.
    """
    calls = []

    def wrapped(*args, **kwargs):
        result = real_gradient(*args, **kwargs)
        calls.append(result.engine)
        if len(calls) > 1:
            result = dataclasses.replace(result, dtheta=result.dtheta + delta_theta)
        return result

    return wrapped


@pytest.mark.parametrize("fraction,agrees", [(INSIDE, True), (OUTSIDE, False)])
def test_assert_gradients_agree_bound(monkeypatch, small, fraction, agrees):
    """Bound: |g_i - r_i| <= atol + rtol·max|r|. The planted error sits on the largest entry."""
    problem, ref = small
    rtol, atol = 1e-6, 1e-9
    k = int(np.argmax(np.abs(ref.dtheta)))
    delta = np.zeros_like(ref.dtheta)
    delta[k] = fraction * (atol + rtol * np.max(np.abs(ref.dtheta)))
    monkeypatch.setattr(testing, "gradient", planted_gradient(gradient, delta))
    # The engine under test is the reference's own engine at the same settings, so without the plant
    # the two agree exactly and the only disagreement is the planted one.
    engine = ForwardSensitivity()
    kwargs = dict(reference=ForwardSensitivity(), rtol=rtol, atol=atol, solver_rtol=1e-6, solver_atol=1e-6,
                  reference_rtol=1e-6, reference_atol=1e-6, wrt=("theta",))
    if agrees:
        testing.assert_gradients_agree(problem, [engine], **kwargs)
    else:
        with pytest.raises(AssertionError) as err:
            testing.assert_gradients_agree(problem, [engine], **kwargs)
        assert parameter_names(problem.model)[k] in str(err.value), "the failure must name the entry"


@pytest.mark.parametrize("fraction,status", [(INSIDE, "ok"), (OUTSIDE, "beyond bound")])
def test_gradcheck_bound(monkeypatch, small, fraction, status):
    """gradcheck's row status against its derived bound 10³·tol (module docstring of gradcheck):
    a relative error planted just inside is "ok", just outside is "beyond bound"."""
    problem, _ = small
    tol = 1e-6
    engine = QuadratureAdjoint()
    bound = gradcheck.bound_for(engine, tol)
    assert bound <= 1e3 * tol * (1 + 1e-12), f"gradcheck's bound {bound:g} is looser than 10³·tol"
    # the planted error is relative to the reference, which gradcheck computes at 1e-10
    reference = gradient(problem, engine=ForwardSensitivity(), rtol=gradcheck.REFERENCE_TOL,
                         atol=gradcheck.REFERENCE_TOL)
    mine = gradient(problem, engine=engine, rtol=tol, atol=tol)
    own = np.linalg.norm(mine.dtheta - reference.dtheta)  # the engine's real error, ~1e-9 relative
    direction = np.zeros_like(reference.dtheta)
    direction[0] = 1.0
    # choose δ along e_0 so that ‖mine + δ - ref‖ = fraction · bound · ‖ref‖ (solve the quadratic)
    d = mine.dtheta - reference.dtheta
    target = fraction * bound * np.linalg.norm(reference.dtheta)
    step = -d[0] + math.sqrt(max(target**2 - (own**2 - d[0] ** 2), 0.0))
    monkeypatch.setattr(gradcheck, "gradient", planted_gradient(gradient, step * direction))
    case = gradcheck.check_case(problem, "DP5", tol, [engine])
    (row,) = case.rows
    assert row.rel_error == pytest.approx(fraction * bound, rel=1e-6)
    assert row.status == status, f"gradcheck reports {row.status!r} for an error of {fraction} x its bound"


# ------------------------------------------------------------ the comparison report's summary claims
@pytest.mark.parametrize("fraction,agrees", [(INSIDE, True), (OUTSIDE, False)])
def test_report_agreement_claim(fraction, agrees):
    """The summary says an engine "agrees" when dL/dθ's relative error is within AGREEMENT_FACTOR x
    rtol (100x: an adaptive solve's global error is 1-10x its tolerance), and calls it "off" beyond.
    A row planted just inside and just outside that bound must get the two different claims."""
    from harness.compare._gradient import AGREEMENT_FACTOR  # the internal imports here
    from harness.compare._report import summarise
    from harness.compare import parse_experiment

    assert AGREEMENT_FACTOR <= 100.0, "the report's agreement bound is looser than 100 x rtol"
    rtol = 1e-6
    experiment = parse_experiment({
        "problem": {"name": "seed", "batch": 4},
        "grid": {"engines": ["QuadratureAdjoint"], "solvers": ["DP5"], "tolerances": [rtol]},
    })
    r = np.array([3.0, 4.0])
    g = r + np.array([fraction * 100.0 * rtol * 5.0, 0.0])  # ‖g - r‖ / ‖r‖ = fraction · 100 rtol
    row = {"engine": "QuadratureAdjoint", "solver": "DP5", "rtol": rtol, "atol": rtol, "seed": 0,
           "status": "ok", "reason": "", "dtheta": compare_vectors(g, r, ["a", "b"])}
    analysis = {"references": [], "rows": [row], "matrices": {}, "training": []}
    text = "\n".join(summarise(experiment, analysis, []))
    claims_agreement = "1 engine(s) agree with the reference" in text
    claims_off = "QuadratureAdjoint (seed 0) is off by" in text
    assert (claims_agreement, claims_off) == (agrees, not agrees), text
