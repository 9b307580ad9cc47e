"""The shipped comparison reports check the claims their experiments declare, and all hold.

The documentation's experiments table (docs/comparisons.md) is generated from the reports' claims
by tools/docs_figures.py; tests/test_docs.py checks that it is current.
"""

import json
from pathlib import Path

import pytest

from harness.compare import load_experiment
from harness.compare._claims import ClaimResult

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
        assert ClaimResult(**claim).line() in report
    # none loose: every bound within 10x of what was observed (see `_claims.LOOSE`)
    assert not [c["says"] for c in results["claims"] if c["loose"]]
    # the report is of the code that wrote it: no cell resumed from another commit
    assert results["timing"]["from_other_commits"] == []
    assert all(c["computed"]["commit"] == results["provenance"]["git_commit"]
               for c in results["cells"] if c["status"] != "unavailable")
