"""The shipped comparison reports and the README's statements about them agree with their data.

Every statement the README makes about a shipped report is either a declared claim (checked when
the report was generated and stored in its results.json) or a bound checked here against the
shipped numbers. The README's experiments table is generated from the reports' claims; when a
report is regenerated, paste the block this test prints.
"""

import json
import re
from pathlib import Path

import pytest

from harness.compare import load_experiment
from harness.compare._claims import ClaimResult

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("tutorial", "stiff", "stiff_peers", "long_horizon", "tolerance_sweep", "otd_vs_dto", "anode", "anode_annuli")
BEGIN = "<!-- claims table: generated from reports/compare/*/results.json -->"
END = "<!-- end of claims table -->"


def _results(name: str) -> dict:
    return json.loads((ROOT / "reports" / "compare" / name / "results.json").read_text(encoding="utf-8"))


def claims_table() -> str:
    """The README's experiments table, from the shipped reports' evaluated claims."""
    lines = ["| experiment | checked claims (✓ = holds in the shipped report) |", "|---|---|"]
    for name in SHIPPED:
        claims = _results(name)["claims"]
        cell = "<br>".join(f"{'✓' if c['holds'] else '✗'} {c['says']}" for c in claims)
        lines.append(f"| `{name}.toml` | {cell} |")
    return "\n".join(lines)


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


def test_readme_experiments_table_is_generated_from_the_reports():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    expected = claims_table()
    assert block == expected, f"paste between the markers in README.md:\n{expected}"


def test_readme_close_fit_quotes_a_bound_the_shipped_run_meets():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"It ends \*\*within (\S+) of the perfect fit\*\*", readme)
    assert match is not None
    bound = float(match.group(1))
    history = json.loads((ROOT / "reports" / "close-fit" / "history.json").read_text(encoding="utf-8"))
    gap = history["perfect_loglik_per_datapoint"] - history["final_loglik_per_datapoint"]
    assert 0 <= gap <= bound
