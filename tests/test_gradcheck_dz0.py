"""`harness gradcheck` scores dL/dz0 as well as dL/dθ: an engine whose dL/dθ is exact but whose dL/dz0
is wrong fails its row, in the table, the JSON and the exit status.

The engine under test is a user's engine registered in the one public step (`register_engine`): it
returns the reference's own gradient (the same computation, so the same bits) with an error planted
in dL/dz0 only, so that the only disagreement is the planted one. Each bound is probed just inside
(0.98 x, must pass) and just outside (1.02 x, must fail): a bound looser by any factor above 1.02
fails here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

import numpy as np
import pytest

import harness
from harness.cli import main
from harness.gradcheck import (
    GROWTH,
    REFERENCE_TOL,
    bound_for,
    cases_to_json,
    check_case,
    dz0_bound_for,
    format_case,
)
from harness.sensitivity import FiniteDifferences, ForwardSensitivity, QuadratureAdjoint, gradient, unregister_engine

INSIDE, OUTSIDE = 0.98, 1.02


@dataclass(frozen=True)
class PlantedDz0:
    """The reference's gradient with `dz0_factor` x dL/dz0 added to dL/dz0 (dL/dθ untouched)."""

    dz0_factor: float = -2.0  # the default flips dL/dz0's sign: a relative error of 2

    name = "PlantedDz0"

    def compute(self, problem, theta, options):
        exact = gradient(problem, theta, engine=ForwardSensitivity(), solver=options.solver,
                         rtol=REFERENCE_TOL, atol=REFERENCE_TOL)
        return replace(exact, engine=self.name, dz0=exact.dz0 * (1.0 + self.dz0_factor))


@pytest.fixture
def planted():
    # registered per test: other modules count the registered engines
    harness.register_engine(PlantedDz0, backend="user-test")
    yield PlantedDz0
    unregister_engine(PlantedDz0)


@pytest.fixture(scope="module")
def seed():
    return harness.seed_problem(batch=6)


@pytest.fixture(scope="module")
def stiff():
    return harness.stiff_problem(batch=4)


def test_the_dz0_bound_by_hand():
    # B N = 3 x 2 = 6 components, tol 1e-8: floor √6 · 10³ · 1e-8 (each component within the global
    # error of the absolute tolerance, gradcheck's docstring)
    r = np.full((3, 2), 0.5)  # ‖r‖ = √6 / 2
    bound, floor = dz0_bound_for(QuadratureAdjoint(), 1e-8, r)
    assert floor == pytest.approx(math.sqrt(6) * 1e3 * 1e-8, rel=1e-15)
    assert bound == pytest.approx(2e-5, rel=1e-12)  # floor / ‖r‖ = 2e-5 > 10³ · 1e-8
    # a large reference: the relative bound of dL/dθ applies
    bound, _ = dz0_bound_for(QuadratureAdjoint(), 1e-8, 100 * r)
    assert bound == bound_for(QuadratureAdjoint(), 1e-8) == GROWTH * 1e-8
    # finite differences: the solver's part divided by the step
    fd = FiniteDifferences()
    _, floor = dz0_bound_for(fd, 1e-8, r)
    assert floor == pytest.approx(math.sqrt(6) * 1e3 * 1e-8 / fd.step, rel=1e-15)


def test_a_wrong_dz0_fails_the_row_and_the_command(planted, tmp_path, capsys):
    """Through the command: a problem file, the planted engine's row among harness's own."""
    path = harness.save_problem(harness.seed_problem(batch=4), tmp_path / "p.npz")
    code = main(["gradcheck", "--problem-file", str(path), "--json", "--tol", "1e-8", "--no-julia"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and not report["ok"]
    rows = {e["name"]: e for e in report["engines"]}
    row = rows["PlantedDz0"]
    assert row["status"] == "beyond bound" and not row["ok"]
    assert row["rel_error"] == 0.0  # dL/dθ is the reference's, to the bit
    assert row["dz0_error"] == pytest.approx(2.0, rel=1e-12)  # the sign flipped
    assert row["dz0_bound"] < 1e-3
    # harness's own engines pass both checks, and every ok row carries both scores
    for name in ("InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint", "FiniteDifferences"):
        e = rows[name]
        assert e["status"] == "ok", e
        assert e["rel_error"] <= e["bound"] and e["dz0_error"] <= e["dz0_bound"]
        assert 0 < e["dz0_error"] and e["dz0_floor"] > 0 and len(e["theta_grad"]) == 17


@pytest.mark.parametrize("fraction,status", [(INSIDE, "ok"), (OUTSIDE, "beyond bound")])
def test_relative_dz0_bound_on_the_seed_problem(planted, seed, fraction, status):
    """‖dL/dz0‖ is of order 10² here: the relative bound 10³ · tol decides, not the floor."""
    tol = 1e-8
    case = check_case(seed, "DP5", tol, [PlantedDz0(fraction * GROWTH * tol)])
    (row,) = case.rows
    assert row.dz0_bound == GROWTH * tol, "the floor must not decide where ‖dL/dz0‖ is large"
    assert row.dz0_error == pytest.approx(fraction * GROWTH * tol, rel=1e-6)
    assert row.status == status
    assert row.rel_error == 0.0 and row.rel_error <= row.bound


@pytest.mark.parametrize("fraction,status", [(INSIDE, "ok"), (OUTSIDE, "beyond bound")])
def test_the_absolute_floor_on_the_stiff_variant(planted, stiff, fraction, status):
    """‖dL/dz0‖ is about 1e-3 on the stiff variant (the fast mode forgets z0): the absolute floor
    √(B N) · 10³ · atol decides, and an error just beyond it fails."""
    tol = 1e-8
    reference = gradient(stiff, engine=ForwardSensitivity(), solver="RadauIIA5", rtol=REFERENCE_TOL,
                         atol=REFERENCE_TOL)
    scale = float(np.linalg.norm(reference.dz0))
    floor = math.sqrt(reference.dz0.size) * GROWTH * tol
    assert floor / scale > GROWTH * tol, "this case is meant to exercise the floor"
    case = check_case(stiff, "RadauIIA5", tol, [PlantedDz0(fraction * floor / scale)])
    (row,) = case.rows
    assert row.dz0_floor == pytest.approx(floor, rel=1e-15)
    assert row.dz0_bound == pytest.approx(floor / scale, rel=1e-15)
    assert row.dz0_error == pytest.approx(fraction * floor / scale, rel=1e-6)
    assert row.status == status


def test_real_engines_pass_dz0_on_the_stiff_variant(stiff):
    """The adjoints' dL/dz0 on the stiff variant at tol 1e-8 is within the bound (measured about 1e-8
    absolute against a floor of about 3e-5)."""
    case = check_case(stiff, "RadauIIA5", 1e-8, [QuadratureAdjoint()])
    (row,) = case.rows
    assert row.status == "ok", format_case(case)
    assert 0 < row.dz0_error <= row.dz0_bound


def test_table_and_json_show_dz0(planted, seed):
    case = check_case(seed, "DP5", 1e-8, [PlantedDz0()])
    text = format_case(case)
    assert "dz0 error" in text and "2.00e+00" in text and "beyond bound" in text
    (entry,) = cases_to_json([case], 1e-8)["engines"]
    old = {"problem", "solver", "name", "status", "rel_error", "bound", "ok", "seconds", "n_rhs", "theta_grad",
           "reason"}
    assert old | {"dz0_error", "dz0_bound", "dz0_floor"} <= set(entry)
    assert entry["dz0_error"] == pytest.approx(2.0, rel=1e-12) and entry["ok"] is False
