"""The shipped comparison reports check the claims their experiments declare, and all hold.

The documentation's experiments table (docs/comparisons.md) is generated from the reports' claims
by tools/docs_figures.py; tests/test_docs.py checks that it is current.
"""

import json
from pathlib import Path

import pytest

from harness.compare import load_experiment

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("tutorial", "stiff", "stiff_peers", "long_horizon", "tolerance_sweep", "otd_vs_dto", "anode", "anode_annuli")


def _results(name: str) -> dict:
    return json.loads((ROOT / "reports" / "compare" / name / "results.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_report_checks_the_claims_its_experiment_declares_and_all_hold(name):
    declared = [c.says for c in load_experiment(ROOT / "experiments" / f"{name}.toml").claims]
    results = _results(name)
    assert len(declared) >= 3
    assert [c["says"] for c in results["claims"]] == declared, "regenerate the report: its claims are stale"
    failed = [c for c in results["claims"] if not c["holds"]]
    assert not failed, failed
    report = (ROOT / "reports" / "compare" / name / "report.md").read_text(encoding="utf-8")
    for claim in results["claims"]:
        assert f"✓ {claim['says']} ({claim['evidence']})" in report
