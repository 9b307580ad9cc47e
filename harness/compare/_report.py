"""The comparison's outputs: `report.md`, `results.json` and the figures, assembled from its kinds.

The report is a header (title, description, problem, run), the experiment's declared claims with
✓ or ✗ (failed ones first), one summary gathered from every kind,
one note for the engines that could not run here, then each kind's own section, then provenance.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._io import save_figure, write_json, write_text
from .._provenance import cpu_model, provenance
from ._claims import evaluate_experiment, failed_first
from ._gradient import AGREEMENT_FACTOR
from ._kind import kind


def unavailable_engines(records: list[dict]) -> dict[str, str]:
    """Engine label -> why it cannot run here, over every cell (said once, not per cell)."""
    out: dict[str, str] = {}
    for record in records:
        if record["status"] == "unavailable":
            out.setdefault(record["spec"]["engine"]["label"], record["reason"])
    return out


def summarise(experiment, analysis: dict, records: list[dict]) -> list[str]:
    """Plain-language findings of every kind, and one line for the engines unavailable here."""
    lines = [line for name, settings in experiment.sections
             for line in kind(name).summary(experiment, settings, analysis)]
    unavailable = unavailable_engines(records)
    if unavailable:
        lines.append("Not run here (unavailable on this machine, left out of the tables and "
                     "figures): " + "; ".join(f"{e} ({r})" for e, r in unavailable.items()) + ".")
    return lines


def claims_section(claims) -> list[str]:
    """The claims' section of report.md: a failed claim first, in bold, never dropped."""
    if not claims:
        return []
    failed = sum(not c.holds for c in claims)
    head = (f"**{failed} of {len(claims)} declared claims FAIL** (listed first)." if failed else
            f"All {len(claims)} declared claims hold.")
    lines = ["## Claims", "", head + " Each is checked against this run's rows; the numbers in "
             "brackets decide it.", ""]
    for c in failed_first(claims):
        lines.append(f"- **{c.line()}**" if not c.holds else f"- {c.line()}")
    return lines + [""]


def write_figures(experiment, analysis: dict, out_dir: Path) -> dict[str, list[str]]:
    """Draw the figures the experiment asks for; returns figure name -> file names written."""
    written: dict[str, list[str]] = {}

    def save(name, fig, file_name):
        if fig is not None:
            save_figure(fig, out_dir / file_name)
            written.setdefault(name, []).append(file_name)

    for name, settings in experiment.sections:
        kind(name).draw(experiment, settings, analysis, save)
    return written


def write_report(experiment, analysis: dict, records: list[dict], out_dir: Path, *,
                 problem_description: str, backend_versions: dict, timing: dict) -> dict:
    """Write figures, `report.md` and `results.json` into `out_dir`; returns the results dict."""
    out_dir = Path(out_dir)
    settings = experiment.as_dict()
    # taken before anything is written: regenerating a shipped report in its tracked folder must not
    # record the commit as "+dirty" because of the figures this very call rewrites
    run_provenance = provenance(backends=backend_versions, settings=settings, seeds=list(experiment.seeds))
    written = write_figures(experiment, analysis, out_dir)
    summary = summarise(experiment, analysis, records)
    claims = evaluate_experiment(experiment.claims, analysis)
    results = {
        "provenance": run_provenance,
        "problem": problem_description,
        "summary": summary,
        "claims": [c.as_dict() for c in claims],
        "timing": timing,
        "figures": written,
        "agreement_factor": AGREEMENT_FACTOR,
        **analysis,
        "cells": records,
    }
    write_json(out_dir / "results.json", results)

    md = [f"# {experiment.title}", ""]
    if experiment.description:
        md += [experiment.description.strip(), ""]
    md += [f"Problem: {problem_description}.", "",
           f"Wall time of this run: {timing['seconds']:.1f} s ({timing['cells_run']} cells run, "
           f"{timing['cells_resumed']} resumed from `cells/`) on {cpu_model()}, {os.cpu_count()} logical "
           "cores; times in this report are of this machine.", ""]
    md += claims_section(claims)
    md += ["## Summary", ""]
    md += [f"- {line}" for line in summary] + [""]
    for name, section in experiment.sections:
        md += kind(name).report(experiment, section, analysis, written)
    prov = results["provenance"]
    md += ["## Provenance", "",
           f"harness {prov['harness_version']}, commit {prov['git_commit']}, Python {prov['python']}, "
           f"{prov['machine']['platform']}; packages {prov['packages']}; backends {backend_versions}; "
           f"created {prov['created']}. Every number is in `results.json`; one record per cell in "
           "`cells/`.", ""]
    write_text(out_dir / "report.md", "\n".join(md))
    return results
