"""The comparison's outputs: `report.md`, `results.json` and the figures, assembled from its kinds.

The report is a header (title, description, problem, run), the experiment's declared claims with
✓ or ✗ (failed ones first), one summary gathered from every kind,
one note for the engines that could not run here, then each kind's own section, then provenance.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._io import save_figure, write_json, write_text
from .._provenance import cpu_model, provenance
from . import _markdown as markdown
from ._claims import LOOSE, evaluate_experiment, failed_first
from ._gradient import AGREEMENT_FACTOR
from ._kind import kind
from .spec import render_description


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
    loose = sum(c.loose for c in claims)
    head = (f"**{failed} of {len(claims)} declared claims FAIL** (listed first)." if failed else
            f"All {len(claims)} declared claims hold.")
    if loose:
        head += (f" {loose} of them {'is' if loose == 1 else 'are'} *loose*: the bound is more than "
                 f"{LOOSE:g}x looser than what was observed, so it would still hold if the measured "
                 "value were much worse.")
    lines = ["## Claims", "", head + " Each is checked against this run's rows; the numbers in "
             "brackets decide it, with the margin: how far the observed extreme sits inside its bound.", ""]
    for c in failed_first(claims):
        lines.append(f"- **{c.line()}**" if not c.holds else f"- {c.line()}")
    return lines + [""]


def write_figures(experiment, analysis: dict, out_dir: Path) -> dict[str, list[str]]:
    """Draw the figures the experiment asks for; returns figure name -> file names written.

    Figures an earlier run into the same folder wrote (its results.json lists them) and this run
    does not are removed: a report folder never shows another experiment's figures."""
    written: dict[str, list[str]] = {}
    earlier = _earlier_figures(out_dir)

    def save(name, fig, file_name):
        if fig is not None:
            save_figure(fig, out_dir / file_name)
            written.setdefault(name, []).append(file_name)

    for name, settings in experiment.sections:
        kind(name).draw(experiment, settings, analysis, save)
    now = {f for files in written.values() for f in files}
    for file_name in earlier - now:
        (out_dir / file_name).unlink(missing_ok=True)
    return written


def _earlier_figures(out_dir: Path) -> set[str]:
    """File names of the figures the results.json already in `out_dir` lists (plain names only)."""
    try:
        figures = json.loads((out_dir / "results.json").read_text(encoding="utf-8")).get("figures", {})
        names = {f for files in figures.values() for f in files}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and n == Path(n).name and n.endswith(".png")}


def provenance_of_cells(timing: dict) -> list[str]:
    """What computed the numbers: this run's commit, and each stored cell from another commit."""
    others = timing.get("from_other_commits") or []
    if not others:
        return [f"Every cell was computed by this code (commit {timing.get('commit')}); times in this "
                "report are of this machine, in this run or an earlier run of the same commit.", ""]
    by_commit: dict = {}
    for cell in others:
        by_commit.setdefault((cell["commit"], cell["harness_version"]), []).append(cell)
    parts = [f"{len(cells)} at commit {commit or 'unknown (recorded before cells carried their commit)'}"
             f" (harness {version or '?'}, "
             f"{min((c['at'] for c in cells if c['at']), default='time unknown')} to "
             f"{max((c['at'] for c in cells if c['at']), default='time unknown')})"
             for (commit, version), cells in by_commit.items()]
    return [f"**{len(others)} cells were resumed from `cells/` as computed by another commit** than this "
            f"run's ({timing.get('commit')}): {'; '.join(parts)}. Their numbers and times are those of "
            "that run, not of this one; they are listed under *Cells from another commit*.", ""]


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
    if experiment.description:  # settings quoted as {training[lr]} read from the run's own experiment
        md += [render_description(experiment).strip(), ""]
    md += [f"Problem: {problem_description}.", "",
           f"Wall time of this run: {timing['seconds']:.1f} s ({timing['cells_run']} cells run, "
           f"{timing['cells_resumed']} resumed from `cells/`) on {cpu_model()}, {os.cpu_count()} logical "
           "cores.", ""]
    md += provenance_of_cells(timing)
    md += claims_section(claims)
    md += ["## Summary", ""]
    md += [f"- {line}" for line in summary] + [""]
    for name, section in experiment.sections:
        md += kind(name).report(experiment, section, analysis, written)
    prov = results["provenance"]
    others = timing.get("from_other_commits") or []
    if others:
        md += ["## Cells from another commit", "", *markdown.header("cell", "commit", "harness", "computed at")]
        md += [markdown.row(c["cell"], c["commit"] or "unknown", c["harness_version"] or "?", c["at"] or "?")
               for c in others] + [""]
    md += ["## Provenance", "",
           f"harness {prov['harness_version']}, commit {prov['git_commit']}, Python {prov['python']}, "
           f"{prov['machine']['platform']}; packages {prov['packages']}; backends {backend_versions}; "
           f"created {prov['created']}. Every number is in `results.json`; one record per cell in "
           "`cells/`.", ""]
    write_text(out_dir / "report.md", "\n".join(md))
    return results
