"""The comparison's outputs: `report.md` (tables, figures, a generated summary) and `results.json`.

"Agrees" in the summary means a relative error of dL/dθ within `AGREEMENT_FACTOR` times the
cell's rtol (or the reference's own estimated error, if that is larger): the global error of an
adaptive solve of a well-conditioned problem is a modest multiple of its local tolerance (1-10x on
the catalogue problems), so a hundredfold excess is a finding, not noise.
"""

from __future__ import annotations

from pathlib import Path

from .._io import save_figure, write_json, write_text
from .._provenance import provenance
from . import figures
from .metrics import WRT

AGREEMENT_FACTOR = 100.0


def _fmt(value, spec=".2e") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _mib(value) -> str:
    return "—" if value is None else f"{value / 2**20:.2f}"


def _floor(analysis: dict) -> float | None:
    """The reference's estimated error: its distance from the check engine (worst over seeds)."""
    values = [r["check"]["dtheta"]["relative_error"] for r in analysis["references"] if "check" in r]
    return max(values) if values else None


def summarise(experiment, analysis: dict) -> list[str]:
    """Plain-language findings: who failed, who was flagged, who disagrees and by how much."""
    lines = []
    floor = _floor(analysis)
    ref = experiment.reference
    ref_text = f"{ref.engine.label} ({ref.solver}, rtol = {ref.rtol:g}, atol = {ref.atol:g})"
    if floor is not None:
        check = analysis["references"][0].get("check_engine")
        lines.append(f"The reference is {ref_text}; it agrees with {check} at the same settings to "
                     f"{floor:.1e} (relative error of dL/dθ), an estimate of its own accuracy.")
    else:
        lines.append(f"The reference is {ref_text}.")
    bad_refs = [r for r in analysis["references"] if r["status"] not in ("ok", "flagged")]
    for r in bad_refs:
        lines.append(f"**The reference {r['status']} for seed {r['seed']}**: {r['reason']}; "
                     "errors against it are not available.")

    tightest = min(experiment.tolerances)
    for solver in experiment.solvers:
        rows = [r for r in analysis["rows"] if r["solver"] == solver]
        at_tight = [r for r in rows if (r["rtol"], r["atol"]) == tightest]
        where = f"With {solver} at rtol = {tightest[0]:g}"
        failed = sorted({r["engine"] for r in rows if r["status"] == "failed"})
        for engine in failed:
            reasons = sorted({r["reason"] for r in rows if r["engine"] == engine and r["status"] == "failed"})
            n = sum(1 for r in rows if r["engine"] == engine and r["status"] == "failed")
            total = sum(1 for r in rows if r["engine"] == engine)
            lines.append(f"**{engine} failed with {solver}** in {n} of {total} cells: {reasons[0]}")
        flagged = sorted({r["engine"] for r in rows if r["status"] == "flagged"})
        for engine in flagged:
            mine = [r for r in rows if r["engine"] == engine and r["status"] == "flagged"]
            recon = max((r["reconstruction_error"] or 0.0) for r in mine)
            errors = [r["dtheta"]["relative_error"] for r in mine if "dtheta" in r]
            worst = f", relative error of dL/dθ up to {max(errors):.1e}" if errors else ""
            lines.append(f"**{engine} was flagged by its own check with {solver}** in {len(mine)} of "
                         f"{sum(1 for r in rows if r['engine'] == engine)} cells (reconstruction error "
                         f"up to {recon:.1e} tolerances{worst}).")
        scored = [r for r in at_tight if "dtheta" in r]
        if not scored:
            continue
        limit = lambda r: AGREEMENT_FACTOR * max(r["rtol"], floor or 0.0)  # noqa: E731
        agree = [r for r in scored if r["dtheta"]["relative_error"] <= limit(r)]
        disagree = [r for r in scored if r["dtheta"]["relative_error"] > limit(r)]
        if agree:
            worst = max(r["dtheta"]["relative_error"] for r in agree)
            names = sorted({r["engine"] for r in agree})
            lines.append(f"{where}, {len(names)} engine(s) agree with the reference to within "
                         f"{worst:.1e} (dL/dθ): {', '.join(names)}.")
        for r in sorted(disagree, key=lambda r: -r["dtheta"]["relative_error"]):
            d = r["dtheta"]
            lines.append(
                f"**{where}, {r['engine']} (seed {r['seed']}) is off by {d['relative_error']:.1e}** "
                f"(more than {AGREEMENT_FACTOR:g} x rtol); its worst entry is {d['worst_name']} "
                f"({d['worst_entry']:.1e} of the largest entry), cosine {d['cosine']:.9f}"
                f"{'; flagged' if r['status'] == 'flagged' else ''}."
            )
        matrix = analysis["matrices"].get(solver)
        if matrix is not None:
            best = None
            labels = matrix["labels"]
            for i in range(1, len(labels)):
                for j in range(1, len(labels)):
                    value = matrix["dtheta"]["relative_error"][i][j]
                    if i != j and value is not None and (best is None or value > best[0]):
                        best = (value, labels[i], labels[j])
            if best is not None:
                lines.append(f"{where}, the largest disagreement between two engines is "
                             f"{best[1]} vs {best[2]}: {best[0]:.1e} (dL/dθ).")
    unavailable = {}
    for r in analysis["rows"]:
        if r["status"] == "unavailable":
            unavailable.setdefault(r["engine"], r["reason"])
    for t in analysis["training"]:
        if t["status"] == "unavailable":
            unavailable.setdefault(t["engine"], t["reason"])
    for engine, reason in unavailable.items():
        lines.append(f"{engine} is unavailable here: {reason}.")
    runs = [t for t in analysis["training"] if "final_loglik_per_datapoint" in t]
    if runs:
        best = max(runs, key=lambda t: t["final_loglik_per_datapoint"])
        fastest = min(runs, key=lambda t: t["seconds_per_step"])
        spread = best["final_loglik_per_datapoint"] - min(t["final_loglik_per_datapoint"] for t in runs)
        lines.append(
            f"Training ({runs[0]['steps']} steps): final log-likelihood per datapoint spans {spread:.2e} "
            f"across engines (best {best['final_loglik_per_datapoint']:.4f}, {best['engine']}; perfect "
            f"fit {best['perfect_loglik_per_datapoint']:.4f}); fastest per step: {fastest['engine']} "
            f"({fastest['seconds_per_step'] * 1e3:.1f} ms)."
        )
    for t in analysis["training"]:
        if t["status"] == "failed":
            lines.append(f"**Training with {t['engine']} failed**: {t['reason']}")
    return lines


def _grid_table(analysis: dict) -> list[str]:
    head = ("| engine | solver | rtol | atol | seed | status | rel. error dL/dθ | worst entry dL/dθ | "
            "cosine dL/dθ | rel. error dL/dz0 | worst entry dL/dz0 | time (s) | f evals fwd | "
            "f evals bwd | peak MiB | note |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in analysis["rows"]:
        cells = [r["engine"], r["solver"], f"{r['rtol']:g}", f"{r['atol']:g}", str(r["seed"]), r["status"]]
        if "dtheta" in r:
            t, z = r["dtheta"], r["dz0"]
            cells += [_fmt(t["relative_error"]), f"{t['worst_entry']:.1e} ({t['worst_name']})",
                      f"{t['cosine']:.9f}", _fmt(z["relative_error"]),
                      f"{z['worst_entry']:.1e} ({z['worst_name']})"]
        else:
            cells += ["—"] * 5
        cells += [_fmt(r.get("seconds"), ".3f"), _fmt(r.get("n_rhs_forward")),
                  _fmt(r.get("n_rhs_backward")), _mib(r.get("peak_memory_bytes"))]
        note = r["reason"] or ""
        if r.get("reconstruction_error") is not None:
            note = f"reconstruction error {r['reconstruction_error']:.1e} tol. " + note
        cells.append(note.replace("|", "/")[:160])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _matrix_table(matrix: dict, w: str) -> list[str]:
    labels = matrix["labels"]
    lines = ["| row vs column | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for i, label in enumerate(labels):
        values = []
        for j in range(len(labels)):
            e, c = matrix[w]["relative_error"][i][j], matrix[w]["cosine"][i][j]
            values.append("—" if i == j else ("n/a" if e is None else f"{e:.1e} (cos {c:.9f})"))
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return lines


def _training_table(analysis: dict) -> list[str]:
    lines = ["| engine | status | steps | final log-lik./datapoint | perfect fit | time per step (ms) | "
             "total time (s) | f evals | note |", "|---|---|---|---|---|---|---|---|---|"]
    for t in analysis["training"]:
        if "history" in t:
            lines.append(
                f"| {t['engine']} | {t['status']} | {t['steps']} | {t['final_loglik_per_datapoint']:.5f} | "
                f"{t['perfect_loglik_per_datapoint']:.5f} | {t['seconds_per_step'] * 1e3:.1f} | "
                f"{t['seconds']:.2f} | {t['n_rhs']} | {(t['reason'] or '')[:120]} |"
            )
        else:
            lines.append(f"| {t['engine']} | {t['status']} | {t['steps']} | — | — | — | — | — | "
                         f"{(t['reason'] or '').replace('|', '/')[:160]} |")
    return lines


def write_figures(experiment, analysis: dict, out_dir: Path) -> dict[str, list[str]]:
    """Draw the figures the experiment asks for; returns figure kind -> file names written."""
    written: dict[str, list[str]] = {}

    def save(kind, fig, name):
        if fig is not None:
            save_figure(fig, out_dir / name)
            written.setdefault(kind, []).append(name)

    floor = _floor(analysis)
    if "heatmap" in experiment.figures:
        for solver, matrix in analysis["matrices"].items():
            if len(matrix["labels"]) > 1:
                save("heatmap", figures.heatmap(matrix, solver), f"crossval_{solver}.png")
    if "work_precision" in experiment.figures:
        floors = {f"{experiment.reference.engine.label} vs check": floor}
        save("work_precision", figures.work_precision(analysis, experiment.solvers, floors),
             "work_precision.png")
    if "memory" in experiment.figures and experiment.measure_memory:
        save("memory", figures.memory(analysis, experiment.solvers, min(experiment.tolerances)),
             "memory.png")
    if "training" in experiment.figures:
        save("training", figures.training(analysis), "training.png")
    if "trajectories" in experiment.figures:
        save("trajectories", figures.trajectories(analysis), "trajectories.png")
    return written


def _augmentation_table(analysis: dict) -> list[str]:
    """Plain against augmented training runs: the fit and what the model costs to evaluate."""
    lines = ["| engine | A | final log-lik./datapoint | gap to perfect fit | best logged gap | "
             "f evals per training step | f evals of the final forward pass |", "|---|---|---|---|---|---|---|"]
    for t in analysis["training"]:
        if "gap_to_perfect" in t:
            lines.append(f"| {t['engine']} | {t['augment']} | {t['final_loglik_per_datapoint']:.5f} | "
                         f"{t['gap_to_perfect']:.2e} | {t['best_gap_to_perfect']:.2e} | {t['n_rhs_per_step']:.1f} | "
                         f"{t.get('final_forward_n_rhs', '—')} |")
    return lines


def write_report(experiment, analysis: dict, records: list[dict], out_dir: Path, *,
                 problem_description: str, backend_versions: dict, timing: dict) -> dict:
    """Write figures, `report.md` and `results.json` into `out_dir`; returns the results dict."""
    out_dir = Path(out_dir)
    written = write_figures(experiment, analysis, out_dir)
    summary = summarise(experiment, analysis)
    settings = experiment.as_dict()
    results = {
        "provenance": provenance(backends=backend_versions, settings=settings,
                                 seeds=list(experiment.seeds)),
        "problem": problem_description,
        "summary": summary,
        "timing": timing,
        "figures": written,
        "agreement_factor": AGREEMENT_FACTOR,
        **analysis,
        "cells": records,
    }
    if experiment.claims:
        from ._claims import evaluate

        # one row per grid cell and per training run; a claim selects among them by their fields
        results["claims"] = [c.as_dict() for c in evaluate(experiment.claims, analysis["rows"] + analysis["training"])]
    write_json(out_dir / "results.json", results)

    md = [f"# {experiment.title}", ""]
    if experiment.description:
        md += [experiment.description.strip(), ""]
    md += [f"Problem: {problem_description}.", "",
           f"Grid: {len(experiment.engines)} engines x solvers {list(experiment.solvers)} x "
           f"tolerances {[list(t) for t in experiment.tolerances]} (rtol, atol) x seeds "
           f"{list(experiment.seeds)}. Wall time of this run: {timing['seconds']:.1f} s "
           f"({timing['cells_run']} cells run, {timing['cells_resumed']} resumed from "
           f"`cells/`).", "", "## Summary", ""]
    md += [f"- {line}" for line in summary] + [""]
    if experiment.claims:
        failed = sum(not c["holds"] for c in results["claims"])
        md += ["## Claims", "", f"{len(results['claims']) - failed} of {len(results['claims'])} declared "
               "claims hold (each checked against the rows of `results.json`; ✗ marks one that fails).", ""]
        md += [f"- {'✓' if c['holds'] else '✗'} {c['says']} ({c['evidence']})" for c in results["claims"]] + [""]
    md += ["## Reference", "",
           "| seed | engine | status | time (s) | check engine | check: rel. error dL/dθ | "
           "check: rel. error dL/dz0 |", "|---|---|---|---|---|---|---|"]
    for r in analysis["references"]:
        check = r.get("check", {})
        md.append(f"| {r['seed']} | {r['engine']} | {r['status']} | {_fmt(r['seconds'], '.2f')} | "
                  f"{r.get('check_engine', '—')} | "
                  f"{_fmt(check.get('dtheta', {}).get('relative_error'))} | "
                  f"{_fmt(check.get('dz0', {}).get('relative_error'))} |")
    md += ["", "## Every engine against the reference", "",
           "Relative error ‖g − r‖/‖r‖; worst entry max|g_i − r_i| / max|r| (with the entry's name); "
           "cosine similarity. f evals count right-hand-side evaluations of the system each pass "
           "solves (the backward pass's are of the augmented adjoint system). Peak MiB is the peak of "
           "memory traced by Python's tracemalloc during one gradient (numpy arrays and Python "
           "objects; not native allocations, so not reported for external engines).", ""]
    md += _grid_table(analysis) + [""]
    md += ["## Cross-validation matrices", ""]
    for solver, matrix in analysis["matrices"].items():
        md += [f"### {solver}, rtol = {matrix['rtol']:g}, atol = {matrix['atol']:g}", ""]
        for w in WRT:
            md += [f"{'dL/dθ' if w == 'dtheta' else 'dL/dz0'} (relative error of the row measured "
                   "against the column, worst over seeds; cosine similarity in brackets):", ""]
            md += _matrix_table(matrix, w) + [""]
        if f"crossval_{solver}.png" in written.get("heatmap", []):
            md += [f"![cross-validation {solver}](crossval_{solver}.png)", ""]
    if "work_precision" in written:
        md += ["## Work-precision", "",
               "Error of dL/dθ against the reference versus wall time and versus right-hand-side "
               "evaluations, over the tolerance sweep; the dashed line is the reference's own "
               "estimated accuracy. Red rings mark numbers the engine flagged itself.", "",
               "![work-precision](work_precision.png)", ""]
    if "memory" in written:
        md += ["## Memory", "", "![memory](memory.png)", ""]
    if experiment.training is not None:
        t = experiment.training
        md += ["## Training", "",
               f"Adam, lr = {t.lr:g}, {t.steps} steps, {t.solver} at rtol = {t.rtol:g}, "
               f"atol = {t.atol:g}, seed {t.seed}; the same data and initial θ for every engine.", ""]
        md += _training_table(analysis) + [""]
        if "training" in written:
            md += ["![training](training.png)", ""]
        if t.augment is not None:
            md += ["### Plain against augmented", "",
                   "A is the number of augmented dimensions. f evals per training step: right-hand-side "
                   "evaluations of one gradient (forward and backward pass), averaged over the run; "
                   "f evals of the final forward pass: one solve of the trained model over the data's "
                   "interval at the training's solver settings.", ""]
            md += _augmentation_table(analysis) + [""]
        if "trajectories" in written:
            md += ["![trajectories](trajectories.png)", ""]
    prov = results["provenance"]
    md += ["## Provenance", "",
           f"harness {prov['harness_version']}, commit {prov['git_commit']}, Python {prov['python']}, "
           f"{prov['machine']['platform']}; packages {prov['packages']}; backends {backend_versions}; "
           f"created {prov['created']}. Every number is in `results.json`; one record per cell in "
           "`cells/`.", ""]
    write_text(out_dir / "report.md", "\n".join(md))
    return results
