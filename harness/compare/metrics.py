"""How far apart two gradients are, and the tables of a comparison built from cell records.

For a gradient g and a reference r (flat vectors):

- relative error (norm-wise):   ‖g - r‖₂ / ‖r‖₂
- worst entry:                  max_i |g_i - r_i| / max_j |r_j|, and the i where it happens.
  Scaled by the largest reference entry, not by |r_i|, so that an entry that is nearly zero in the
  reference (common for biases) does not turn rounding into an "error" of 100%.
- cosine similarity:            g·r / (‖g‖ ‖r‖); 1 when the directions agree (what Adam mostly uses).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

WRT = ("dtheta", "dz0")  # dL/dθ and dL/dz0


def relative_error(g, r) -> float:
    g, r = np.ravel(g), np.ravel(r)
    scale = np.linalg.norm(r)
    diff = np.linalg.norm(g - r)
    return float(diff / scale) if scale > 0 else float(diff)


def worst_entry(g, r) -> tuple[float, int]:
    """(max_i |g_i - r_i| / max_j |r_j|, argmax i) over flat vectors."""
    g, r = np.ravel(g), np.ravel(r)
    diff = np.abs(g - r)
    i = int(np.argmax(diff))
    scale = float(np.max(np.abs(r)))
    return (float(diff[i] / scale) if scale > 0 else float(diff[i])), i


def cosine_similarity(g, r) -> float:
    g, r = np.ravel(g), np.ravel(r)
    denominator = np.linalg.norm(g) * np.linalg.norm(r)
    return float(g @ r / denominator) if denominator > 0 else float("nan")


def compare_vectors(g, r, names=None) -> dict:
    """All three measures of g against r; `names` (flat index -> name) labels the worst entry."""
    worst, i = worst_entry(g, r)
    return {
        "relative_error": relative_error(g, r),
        "worst_entry": worst,
        "worst_index": i,
        "worst_name": names[i] if names is not None else str(i),
        "cosine": cosine_similarity(g, r),
    }


def parameter_names(model) -> list[str]:
    """A name per entry of θ, from `model.layout`: ["W1[0,0]", "W1[0,1]", ..., "b2[1]"]."""
    names = []
    for view in model.layout:
        for index in np.ndindex(*view.shape):
            names.append(f"{view.name}[{','.join(map(str, index))}]")
    return names


def state_names(batch: int, n: int) -> list[str]:
    """A name per entry of z0 (B, N), row-major: ["z0[0,0]", "z0[0,1]", ...]."""
    return [f"z0[{b},{i}]" for b in range(batch) for i in range(n)]


def _has_gradient(record) -> bool:
    return record is not None and record["status"] in ("ok", "flagged")


# ----------------------------------------------------------------------------------- the analysis
def analyse(experiment, records: list[dict], model, batch: int) -> dict:
    """Tables of a finished (or partly finished) comparison.

    Returns a dict with
      rows       : one per grid cell: settings, status, error against the reference, cost;
      references : per seed, the reference's record summary and the reference check's distance;
      matrices   : per solver, at its tightest tolerance, engine x engine relative errors and cosines
                   (max over seeds: the worst case is what a reader needs to trust);
      curves     : per (solver, engine), the work-precision points sorted by tolerance;
      training   : per engine, the training summary.
    """
    # dL/dz0 is of the observed components: an augmented problem's last `augment` are not inputs
    names = {"dtheta": parameter_names(model),
             "dz0": state_names(batch, model.state_dim - experiment.problem.augment)}
    by_role = defaultdict(list)
    for record in records:
        by_role[record["role"]].append(record)
    reference = {r["spec"]["seed"]: r for r in by_role["reference"]}
    check = {r["spec"]["seed"]: r for r in by_role["reference_check"]}

    references = []
    for seed, ref in sorted(reference.items()):
        entry = {"seed": seed, "status": ref["status"], "reason": ref["reason"],
                 "engine": ref["spec"]["engine"]["label"], "seconds": ref.get("seconds")}
        other = check.get(seed)
        if other is not None:
            entry["check_engine"] = other["spec"]["engine"]["label"]
            entry["check_status"] = other["status"]
            if _has_gradient(ref) and _has_gradient(other):
                entry["check"] = {w: compare_vectors(other[w], ref[w], names[w]) for w in WRT}
        references.append(entry)

    rows = []
    for record in by_role["grid"]:
        spec = record["spec"]
        row = {
            "engine": spec["engine"]["label"], "backend": spec["engine"]["backend"],
            "solver": spec["solver"], "forward_solver": spec["forward_solver"],
            "rtol": spec["rtol"], "atol": spec["atol"], "seed": spec["seed"],
            "status": record["status"], "reason": record["reason"], "key": record["key"],
        }
        if _has_gradient(record):
            ref = reference.get(spec["seed"])
            if _has_gradient(ref):
                for w in WRT:
                    row[w] = compare_vectors(record[w], ref[w], names[w])
            fwd, bwd = record["forward_stats"], record["backward_stats"]
            row.update(
                seconds=record["seconds"], n_rhs_forward=fwd["n_rhs"], n_rhs_backward=bwd["n_rhs"],
                n_rhs=_add(fwd["n_rhs"], bwd["n_rhs"]),
                n_jac=_add(fwd["n_jac"], bwd["n_jac"]), n_lu=_add(fwd["n_lu"], bwd["n_lu"]),
                peak_memory_bytes=record.get("peak_memory_bytes"),
                reconstruction_error=record["diagnostics"].get("reconstruction_error"),
            )
        rows.append(row)

    return {
        "rows": rows,
        "references": references,
        "matrices": _matrices(experiment, by_role["grid"], reference),
        "curves": _curves(rows),
        "training": _training(by_role["training"]),
    }


def _add(a, b):
    return None if a is None or b is None else a + b


def _matrices(experiment, grid_records, reference) -> dict:
    """Per solver: engine x engine errors at the tightest tolerance that solver was run at.

    Entry [i][j] is the relative error of engine i measured against engine j (column = yardstick),
    maximised over seeds; the reference is the first row and column. None where either is missing.
    """
    tightest = min(experiment.tolerances, key=lambda t: (t[0], t[1]))
    matrices = {}
    for solver in experiment.solvers:
        labels = [experiment.reference.engine.label + " (reference)"]
        vectors = defaultdict(dict)  # label -> seed -> record
        for seed, ref in reference.items():
            if _has_gradient(ref):
                vectors[labels[0]][seed] = ref
        for record in grid_records:
            spec = record["spec"]
            if spec["solver"] != solver or (spec["rtol"], spec["atol"]) != tightest:
                continue
            label = spec["engine"]["label"]
            if label not in labels:
                labels.append(label)
            if _has_gradient(record):
                vectors[label][spec["seed"]] = record
        entry = {"rtol": tightest[0], "atol": tightest[1], "labels": labels}
        for w in WRT:
            error = [[None] * len(labels) for _ in labels]
            cosine = [[None] * len(labels) for _ in labels]
            for i, a in enumerate(labels):
                for j, b in enumerate(labels):
                    seeds = sorted(set(vectors[a]) & set(vectors[b]))
                    if not seeds:
                        continue
                    error[i][j] = max(relative_error(vectors[a][s][w], vectors[b][s][w]) for s in seeds)
                    cosine[i][j] = min(cosine_similarity(vectors[a][s][w], vectors[b][s][w])
                                       for s in seeds)
            entry[w] = {"relative_error": error, "cosine": cosine}
        matrices[solver] = entry
    return matrices


def _curves(rows) -> list[dict]:
    """Work-precision points per (solver, engine), from loose to tight, averaged over seeds."""
    groups = defaultdict(list)
    for row in rows:
        if "dtheta" in row:
            groups[(row["solver"], row["engine"])].append(row)
    curves = []
    for (solver, engine), members in groups.items():
        by_tol = defaultdict(list)
        for row in members:
            by_tol[(row["rtol"], row["atol"])].append(row)
        points = []
        for (rtol, atol), group in sorted(by_tol.items(), reverse=True):
            points.append({
                "rtol": rtol, "atol": atol,
                # Geometric mean over seeds: errors spread over orders of magnitude.
                "error": _geomean([g["dtheta"]["relative_error"] for g in group]),
                "error_dz0": _geomean([g["dz0"]["relative_error"] for g in group]),
                "seconds": float(np.median([g["seconds"] for g in group])),
                "n_rhs": _median_or_none([g["n_rhs"] for g in group]),
                "n_rhs_forward": _median_or_none([g["n_rhs_forward"] for g in group]),
                "n_rhs_backward": _median_or_none([g["n_rhs_backward"] for g in group]),
                "flagged": any(g["status"] == "flagged" for g in group),
            })
        curves.append({"solver": solver, "engine": engine, "points": points})
    return curves


def _geomean(values) -> float:
    values = [max(v, 1e-300) for v in values]
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def _median_or_none(values):
    if any(v is None for v in values):
        return None
    return float(np.median(values))


def _training(records) -> list[dict]:
    out = []
    for record in records:
        augment = record["spec"]["problem"].get("augment", 0)
        label = record["spec"]["engine"]["label"] + (f" (A = {augment})" if augment else "")
        entry = {"kind": "training", "engine": label, "base_engine": record["spec"]["engine"]["label"],
                 "augment": augment, "status": record["status"],
                 "reason": record["reason"], "steps": record["spec"]["steps"]}
        if record["status"] in ("ok", "flagged"):
            entry.update(
                history=record["history"],
                final_loglik_per_datapoint=record["final_loglik_per_datapoint"],
                perfect_loglik_per_datapoint=record["perfect_loglik_per_datapoint"],
                gap_to_perfect=record["perfect_loglik_per_datapoint"] - record["final_loglik_per_datapoint"],
                # Adam can spike at any step, the last included: the best logged value is the fit reached
                best_gap_to_perfect=record["perfect_loglik_per_datapoint"]
                - max(h["loglik_per_datapoint"] for h in record["history"]),
                seconds=record["seconds"], seconds_per_step=record["seconds_per_step"],
                n_rhs=record["n_rhs"], n_rhs_per_step=record["n_rhs"] / (record["spec"]["steps"] + 1),
            )
            for key in ("trajectory_times", "trajectories", "observed_dim", "final_forward_n_rhs"):
                if key in record:  # records cached before trajectories were kept lack them
                    entry[key] = record[key]
        out.append(entry)
    return out
