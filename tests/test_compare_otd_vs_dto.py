"""The otd_vs_dto experiment kind on a small problem: its rows, its report section and figures."""

from __future__ import annotations

import pytest

from harness.compare import parse_experiment, run_experiment
from harness.errors import HarnessInputError

EXPERIMENT = {
    "problem": {"name": "seed", "batch": 8},
    "grid": {"engines": ["QuadratureAdjoint"], "solvers": ["DP5"], "tolerances": [1e-6], "memory": False},
    "reference": {"check_engine": "none"},
    "otd_vs_dto": {
        "engines": ["QuadratureAdjoint", "GaussAdjoint", "RecursiveCheckpointAdjoint"],
        "tolerances": [1e-3, 1e-8],
        "reference_tolerance": 1e-11,
        "memory_engines": ["GaussAdjoint", {"engine": "RecursiveCheckpointAdjoint", "checkpoints": 2}],
        "horizons": [10.0, 40.0],
    },
}


def test_otd_vs_dto_kind_rows_report_and_figures(tmp_path):
    results = run_experiment(parse_experiment(EXPERIMENT), tmp_path / "out", progress=False)
    rows = results["otd_vs_dto"]
    errors = {(r["engine"], r["rtol"]): r for r in rows if r["role"] == "errors"}
    assert len(errors) == 6 and all(r["status"] == "ok" for r in errors.values())
    # the DTO engine is the discrete reference itself: the same computation, so exactly 0
    assert errors["RecursiveCheckpointAdjoint", 1e-3]["discrete_error"] == 0.0
    # at 1e-3 a continuous adjoint is an approximation of the ODE's gradient, not of the discrete
    # loss's: measured ~1e-4 here; at 1e-8 both kinds are within 1e3 tol of the ODE's gradient
    assert errors["QuadratureAdjoint", 1e-3]["discrete_error"] > 1e-6
    assert all(errors[e, 1e-8]["ode_error"] <= 1e3 * 1e-8 for e, _ in errors)
    memory = [r for r in rows if r["role"] == "memory"]
    assert {(r["engine"], r["horizon"]) for r in memory} == {
        (e, h) for e in ("GaussAdjoint", "RecursiveCheckpointAdjoint(checkpoints=2)") for h in (10.0, 40.0)}
    assert all(r["peak_memory_bytes"] > 0 for r in memory)
    assert all(r["peak_stored_states"] <= 3 for r in memory if r["engine"].startswith("Recursive"))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Optimise-then-discretise against discretise-then-optimise" in report
    for name in ("otd_vs_dto_errors.png", "otd_vs_dto_memory.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


@pytest.mark.parametrize("table,fragment", [({"tolerances": [1e-3]}, "engines"),
                                            ({"engines": ["QuadratureAdjoint"], "tolerances": [0.0]}, "tolerances"),
                                            ({"engines": ["Nope"], "tolerances": [1e-3]}, "Nope")])
def test_bad_tables_are_refused_in_one_line(table, fragment):
    document = {k: v for k, v in EXPERIMENT.items() if k != "otd_vs_dto"}
    with pytest.raises(HarnessInputError, match=fragment):
        parse_experiment({**document, "otd_vs_dto": table})
