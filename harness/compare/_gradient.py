"""The gradient kind: engines x solvers x tolerances x seeds against a reference ([grid], [reference]).

    [grid]
    engines = ["BacksolveAdjoint", { engine = "InterpolatingAdjoint", checkpointing = true }]
    solvers = ["DP5"]
    tolerances = [1e-4, 1e-6, [1e-8, 1e-10]]   # rtol = atol, or [rtol, atol]
    seeds = [0]                                 # also forward_solver, memory, repeats
    exclude = [{ engine = "diffrax:BacksolveAdjoint", solver = ["RadauIIA5"], why = "..." }]

    [reference]                                 # optional; these are the defaults
    engine = "ForwardSensitivity"
    solver = "DP8"
    rtol = 1e-10
    atol = 1e-10
    check_engine = "QuadratureAdjoint"          # or "none"

Each grid cell computes dL/dθ and dL/dz0 with one engine; the analysis measures it against the
reference of its seed (`_metrics`), builds the engine x engine matrices and the work-precision
curves; the report tables them, and the figures are the heatmaps, work-precision and memory plots.

"Agrees" in the summary means a relative error of dL/dθ within `AGREEMENT_FACTOR` times the
cell's rtol (or the reference's own estimated error, if that is larger): the global error of an
adaptive solve of a well-conditioned problem is a modest multiple of its local tolerance (1-10x on
the catalogue problems), so a hundredfold excess is a finding, not noise.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .. import _memory as memory
from .._interrupts import raise_if_interrupt
from ..errors import BackendUnavailableError
from ..sensitivity import gradient
from . import _markdown as markdown
from ._cells import base_record, one_line_error, plain, prepare
from ._kind import Cell, ExperimentKind, register_kind
from .._metrics import WRT, compare_vectors, cosine_similarity, parameter_names, relative_error, state_names
from .spec import (
    EngineSpec,
    ProblemSpec,
    _bool,
    _check_keys,
    _fail,
    _int,
    _nonempty_list,
    _positive,
    _solver,
    _tolerance,
    parse_engine,
)

AGREEMENT_FACTOR = 100.0


# ------------------------------------------------------------------------------------------ values
@dataclass(frozen=True)
class ReferenceSpec:
    """The engine and settings that every grid cell is measured against.

    `check_engine` is a second, independent engine run at the same settings: its distance from the
    reference estimates how accurate the reference itself is (the floor of the work-precision plot).
    """

    engine: EngineSpec
    solver: str
    rtol: float
    atol: float
    check_engine: EngineSpec | None


@dataclass(frozen=True)
class GradientSettings:
    """The validated [grid] and [reference] tables."""

    engines: tuple[EngineSpec, ...]
    solvers: tuple[str, ...]
    tolerances: tuple[tuple[float, float], ...]
    seeds: tuple[int, ...]
    forward_solver: str | None
    reference: ReferenceSpec
    measure_memory: bool = True
    repeats: int = 3
    # combinations left out of the product: (engine labels, solvers, why), each named in the report
    exclude: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = ()

    def excluded(self, engine: str, solver: str) -> bool:
        return any(engine in engines and solver in solvers for engines, solvers, _ in self.exclude)


@dataclass(frozen=True)
class GradientCell(Cell):
    """dL/dθ and dL/dz0 of one problem by one engine at one solver and tolerance.

    `role` is "grid", "reference" or "reference_check"; `solver` is the backward pass's solver and
    `forward_solver` the forward pass's (the same unless the experiment fixes it).
    """

    problem: ProblemSpec
    seed: int
    engine: EngineSpec
    solver: str
    forward_solver: str
    rtol: float
    atol: float
    role: str = "grid"
    measure_memory: bool = True
    repeats: int = 1  # timed calls: the record's time is their median, with min and max

    kind = "gradient"


def _parse_reference(table: dict | None) -> ReferenceSpec:
    where = "[reference]"
    table = {} if table is None else table
    _check_keys(table, where, (), ("engine", "solver", "rtol", "atol", "check_engine"))
    engine = parse_engine(table.get("engine", "ForwardSensitivity"), f"{where} engine")
    check = table.get("check_engine", "QuadratureAdjoint")
    check_engine = None if check == "none" else parse_engine(check, f"{where} check_engine")
    return ReferenceSpec(
        engine=engine,
        solver=_solver(table.get("solver", "DP8"), f"{where} solver"),
        rtol=_positive(table.get("rtol", 1e-10), f"{where} rtol"),
        atol=_positive(table.get("atol", 1e-10), f"{where} atol"),
        check_engine=check_engine,
    )


def _has_gradient(record) -> bool:
    return record is not None and record["status"] in ("ok", "flagged")


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


# -------------------------------------------------------------------------------------------- kind
def _parse_exclude(value, labels: list[str], solvers: tuple[str, ...]) -> tuple:
    """[grid] exclude: a list of tables {engine, solver, why}, each naming engines and solvers of the grid
    (a string or a list) whose combinations are not computed, and why (the report says it)."""
    if not isinstance(value, list):
        _fail("[grid] exclude", f"{value!r}: expected a list of tables {{ engine, solver, why }}")
    out = []
    for i, entry in enumerate(value):
        where = f"[grid] exclude[{i}]"
        if not isinstance(entry, dict):
            _fail(where, f"{entry!r}: expected a table {{ engine, solver, why }}")
        _check_keys(entry, where, ("engine", "solver", "why"), ())
        named = {}
        for key, valid in (("engine", labels), ("solver", list(solvers))):
            values = entry[key] if isinstance(entry[key], list) else [entry[key]]
            unknown = [v for v in values if v not in valid]
            if not values or unknown:
                _fail(f"{where} {key}", f"{unknown or values!r} not in the grid: expected some of {valid}")
            named[key] = tuple(values)
        if not isinstance(entry["why"], str) or not entry["why"].strip():
            _fail(f"{where} why", "expected a sentence saying why these cells are left out")
        out.append((named["engine"], named["solver"], entry["why"].strip()))
    return tuple(out)


class GradientKind(ExperimentKind):
    name = "gradient"

    def claim_rows(self, analysis):
        return analysis.get("rows", [])

    def claim_fields(self, g):
        measures = ("relative_error", "worst_entry", "worst_index", "worst_name", "cosine")
        return {
            "engine": tuple(e.label for e in g.engines), "backend": tuple({e.backend for e in g.engines}),
            "solver": g.solvers, "forward_solver": None, "rtol": tuple(r for r, _ in g.tolerances),
            "atol": tuple(a for _, a in g.tolerances), "seed": g.seeds,
            "status": ("ok", "flagged", "failed", "unavailable"), "reason": None, "key": None,
            **{f"{w}.{m}": None for w in ("dtheta", "dz0") for m in measures},
            **{f"dz0.{m}": None for m in ("max_abs_error", "max_abs_error_per_atol", "reference_max_abs")},
            **{m: None for m in ("seconds", "seconds_min", "seconds_max", "repeats", "n_rhs_forward",
                                 "n_rhs_backward", "n_rhs", "n_jac", "n_lu", "peak_memory_bytes",
                                 "reconstruction_error")},
        }
    tables = ("grid", "reference")
    required = True
    figures = ("heatmap", "work_precision", "memory")

    # ------------------------------------------------------------------------------------ parsing
    def parse(self, tables, *, problem, base):
        grid = tables["grid"]
        _check_keys(grid, "[grid]", ("engines", "solvers", "tolerances"),
                    ("seeds", "forward_solver", "memory", "repeats", "exclude"))
        engines = tuple(
            parse_engine(e, f"[grid] engines[{i}]")
            for i, e in enumerate(_nonempty_list(grid["engines"], "[grid] engines"))
        )
        labels = [e.label for e in engines]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            _fail("[grid] engines", f"{duplicates} appear more than once: give each a distinct 'label'")
        solvers = tuple(_solver(s, "[grid] solvers")
                        for s in _nonempty_list(grid["solvers"], "[grid] solvers"))
        tolerances = tuple(_tolerance(t, "[grid] tolerances")
                           for t in _nonempty_list(grid["tolerances"], "[grid] tolerances"))
        seeds = tuple(_int(s, "[grid] seeds", 0)
                      for s in _nonempty_list(grid.get("seeds", [0]), "[grid] seeds"))
        if problem.file is not None and seeds != (0,):
            _fail("[grid] seeds", "a problem file has fixed data: seeds apply to catalogue problems only")
        forward_solver = grid.get("forward_solver")
        if forward_solver is not None:
            forward_solver = _solver(forward_solver, "[grid] forward_solver")
        exclude = _parse_exclude(grid.get("exclude", []), labels, solvers)
        return GradientSettings(
            engines=engines, solvers=solvers, tolerances=tolerances, seeds=seeds, exclude=exclude,
            forward_solver=forward_solver, reference=_parse_reference(tables.get("reference")),
            measure_memory=_bool(grid.get("memory", True), "[grid] memory"),
            repeats=_int(grid.get("repeats", 3), "[grid] repeats", 1),
        )

    def settings_as_dict(self, g) -> dict:
        reference = g.reference
        return {
            "grid": {
                "engines": [e.as_dict() for e in g.engines],
                "solvers": list(g.solvers),
                "tolerances": [list(t) for t in g.tolerances],
                "seeds": list(g.seeds),
                "forward_solver": g.forward_solver,
                "memory": g.measure_memory,
                "repeats": g.repeats,
                "exclude": [{"engine": list(e), "solver": list(s), "why": why} for e, s, why in g.exclude],
            },
            "reference": {
                "engine": reference.engine.as_dict(), "solver": reference.solver,
                "rtol": reference.rtol, "atol": reference.atol,
                "check_engine": reference.check_engine.as_dict() if reference.check_engine else None,
            },
        }

    def backends(self, g) -> set[str]:
        return {e.backend for e in g.engines} | {g.reference.engine.backend}

    # -------------------------------------------------------------------------------------- cells
    def cells(self, experiment, g) -> list:
        """Per seed the reference (and its check), then the grid.

        Grid order is seed, solver, tolerance from loose to tight, engine, so that an interrupted
        run has whole tolerance levels done and a partial report still compares every engine.
        """
        cells = []
        reference = g.reference
        for seed in g.seeds:
            common = dict(problem=experiment.problem, seed=seed, solver=reference.solver,
                          forward_solver=reference.solver, rtol=reference.rtol, atol=reference.atol,
                          measure_memory=False)
            cells.append(GradientCell(engine=reference.engine, role="reference", **common))
            if reference.check_engine is not None:
                cells.append(GradientCell(engine=reference.check_engine, role="reference_check",
                                          **common))
        tolerances = sorted(g.tolerances, reverse=True)  # loose (cheap) first
        for seed in g.seeds:
            for solver in g.solvers:
                for rtol, atol in tolerances:
                    for engine in g.engines:
                        if g.excluded(engine.label, solver):
                            continue
                        cells.append(GradientCell(
                            problem=experiment.problem, seed=seed, engine=engine, solver=solver,
                            forward_solver=g.forward_solver or solver, rtol=rtol, atol=atol,
                            measure_memory=g.measure_memory, repeats=g.repeats,
                        ))
        return cells

    def run(self, spec: GradientCell) -> dict:
        try:
            problem, engine = prepare(spec)
        except BackendUnavailableError as err:
            raise_if_interrupt(err)
            return base_record(spec, "unavailable", str(err))

        def call():
            return gradient(problem, engine=engine, solver=spec.forward_solver, rtol=spec.rtol,
                            atol=spec.atol)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with memory.allocating():
                    if getattr(engine, "needs_warmup", False):
                        call()  # a JIT engine's first call compiles: a one-time cost, not the gradient's
                    result = call()
                    # The same gradient again, for the spread of its time (the results are equal).
                    times = [float(result.seconds)] + [float(call().seconds)
                                                       for _ in range(spec.repeats - 1)]
            except BackendUnavailableError as err:
                raise_if_interrupt(err)
                return base_record(spec, "unavailable", str(err))
            except Exception as err:  # an engine's failure is a finding, not a crash of the comparison
                raise_if_interrupt(err)
                return base_record(spec, "failed", one_line_error(err))
            peak = None
            if spec.measure_memory and spec.engine.backend == "harness":
                # A second, traced call: tracemalloc slows allocation-heavy code, so it must not
                # share a call with the timing.
                peak = memory.peak_memory(call)
        diagnostics = plain(result.diagnostics)
        flagged = bool(diagnostics.get("unstable")) if isinstance(diagnostics, dict) else False
        record = base_record(
            spec, "flagged" if flagged else "ok",
            "; ".join(sorted({str(w.message) for w in caught}))[:400] or None,
        )
        record.update(
            loss=float(result.loss),
            dtheta=np.asarray(result.dtheta, dtype=np.float64).tolist(),
            dz0=np.asarray(result.dz0, dtype=np.float64).tolist(),
            seconds=float(np.median(times)), seconds_min=min(times), seconds_max=max(times),
            repeats=len(times),
            forward_stats=plain(result.forward_stats.as_dict()),
            backward_stats=plain(result.backward_stats.as_dict()),
            peak_memory_bytes=peak,
            diagnostics=diagnostics,
        )
        return record

    # ----------------------------------------------------------------------------------- analysis
    def analyse(self, experiment, g, records, problem) -> dict:
        """Tables of a finished (or partly finished) grid.

        Returns a dict with
          rows       : one per grid cell: settings, status, error against the reference, cost;
          references : per seed, the reference's record summary and the reference check's distance;
          matrices   : per solver, at its tightest tolerance, engine x engine relative errors and
                       cosines (max over seeds: the worst case is what a reader needs to trust);
                       engines unavailable here are left out;
          curves     : per (solver, engine), the work-precision points sorted by tolerance, and the
                       cells that failed.
        """
        model = problem.model
        names = {"dtheta": parameter_names(model),
                 # dL/dz0 is of the observed components: augmented ones start at 0, not inputs
                 "dz0": state_names(problem.batch_size, problem.observed_dim)}
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
                z, r = np.ravel(record["dz0"]), np.ravel(ref["dz0"]) if _has_gradient(ref) else None
                if r is not None:
                    # The absolute error against atol: what an adjoint promises for a gradient whose
                    # entries are tiny (a relative error of one is then still "of the order of atol").
                    row["dz0"]["max_abs_error"] = float(np.max(np.abs(z - r)))
                    row["dz0"]["max_abs_error_per_atol"] = row["dz0"]["max_abs_error"] / spec["atol"]
                    row["dz0"]["reference_max_abs"] = float(np.max(np.abs(r)))
                row.update(
                    seconds=record["seconds"], seconds_min=record.get("seconds_min", record["seconds"]),
                    seconds_max=record.get("seconds_max", record["seconds"]),
                    repeats=record.get("repeats", 1), n_rhs_forward=fwd["n_rhs"],
                    n_rhs_backward=bwd["n_rhs"], n_rhs=_add(fwd["n_rhs"], bwd["n_rhs"]),
                    n_jac=_add(fwd["n_jac"], bwd["n_jac"]), n_lu=_add(fwd["n_lu"], bwd["n_lu"]),
                    peak_memory_bytes=record.get("peak_memory_bytes"),
                    reconstruction_error=record["diagnostics"].get("reconstruction_error"),
                )
            rows.append(row)

        return {
            "rows": rows,
            "references": references,
            "matrices": _matrices(g, by_role["grid"], reference),
            "curves": _curves(rows),
        }

    # ------------------------------------------------------------------------------------- report
    def summary(self, experiment, g, analysis) -> list[str]:
        """Plain-language findings: who failed, who was flagged, who disagrees and by how much."""
        lines = []
        floor = _floor(analysis)
        ref = g.reference
        ref_text = f"{ref.engine.label} ({ref.solver}, rtol = {ref.rtol:g}, atol = {ref.atol:g})"
        if floor is not None:
            check = analysis["references"][0].get("check_engine")
            lines.append(f"The reference is {ref_text}; it agrees with {check} at the same settings "
                         f"to {floor:.1e} (relative error of dL/dθ), an estimate of its own accuracy.")
        else:
            lines.append(f"The reference is {ref_text}.")
        for r in analysis["references"]:
            if r["status"] not in ("ok", "flagged"):
                lines.append(f"**The reference {r['status']} for seed {r['seed']}**: {r['reason']}; "
                             "errors against it are not available.")

        tightest = min(g.tolerances)
        for solver in g.solvers:
            rows = [r for r in analysis["rows"] if r["solver"] == solver]
            at_tight = [r for r in rows if (r["rtol"], r["atol"]) == tightest]
            where = f"With {solver} at rtol = {tightest[0]:g}"
            for engine in sorted({r["engine"] for r in rows if r["status"] == "failed"}):
                mine = [r for r in rows if r["engine"] == engine]
                failed = [r for r in mine if r["status"] == "failed"]
                reasons = sorted({r["reason"] for r in failed})
                lines.append(f"**{engine} failed with {solver}** in {len(failed)} of {len(mine)} "
                             f"cells: {reasons[0]}")
            for engine in sorted({r["engine"] for r in rows if r["status"] == "flagged"}):
                mine = [r for r in rows if r["engine"] == engine and r["status"] == "flagged"]
                recon = max((r["reconstruction_error"] or 0.0) for r in mine)
                errors = [r["dtheta"]["relative_error"] for r in mine if "dtheta" in r]
                worst = f", relative error of dL/dθ up to {max(errors):.1e}" if errors else ""
                lines.append(f"**{engine} was flagged by its own check with {solver}** in {len(mine)} "
                             f"of {sum(1 for r in rows if r['engine'] == engine)} cells "
                             f"(reconstruction error up to {recon:.1e} tolerances{worst}).")
            limit = lambda r: AGREEMENT_FACTOR * max(r["rtol"], floor or 0.0)  # noqa: E731
            lines += _every_tolerance(solver, [r for r in rows if "dtheta" in r], limit)
            scored = [r for r in at_tight if "dtheta" in r]
            if not scored:
                continue
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
        lines += _dz0_summary(analysis["rows"])
        return lines

    def draw(self, experiment, g, analysis, save) -> None:
        from . import _figures  # matplotlib (half a second to import) only when a report is drawn

        if "heatmap" in experiment.figures:
            for solver, matrix in analysis["matrices"].items():
                if len(matrix["labels"]) > 1:
                    save("heatmap", _figures.heatmap(matrix, solver), f"crossval_{solver}.png")
        if "work_precision" in experiment.figures:
            floor = _floor(analysis)
            save("work_precision",
                 _figures.work_precision(analysis["curves"], g.solvers,
                                         f"{g.reference.engine.label} vs check", floor),
                 "work_precision.png")
        if "memory" in experiment.figures and g.measure_memory:
            save("memory", _figures.memory(analysis["rows"], g.solvers, min(g.tolerances)),
                 "memory.png")

    def report(self, experiment, g, analysis, written) -> list[str]:
        n_seeds = len(g.seeds)
        over_seeds = "the only seed" if n_seeds == 1 else f"{n_seeds} seeds"
        md = [f"Grid: {len(g.engines)} engines x solvers {list(g.solvers)} x tolerances "
              f"{[list(t) for t in g.tolerances]} (rtol, atol) x seeds {list(g.seeds)}.", ""]
        for engines, solvers, why in g.exclude:
            md[-1:-1] = [f"Left out of the grid: {', '.join(engines)} with {', '.join(solvers)} ({why}).", ""]
        md += ["## Reference", "",
               *markdown.header("seed", "engine", "status", "time (s)", "check engine",
                                "check: rel. error dL/dθ", "check: rel. error dL/dz0")]
        for r in analysis["references"]:
            check = r.get("check", {})
            md.append(markdown.row(r["seed"], r["engine"], r["status"], _fmt(r["seconds"], ".2f"),
                                   r.get("check_engine", "—"),
                                   _fmt(check.get("dtheta", {}).get("relative_error")),
                                   _fmt(check.get("dz0", {}).get("relative_error"))))
        md += ["", "## Every engine against the reference", "",
               "Relative error ‖g − r‖/‖r‖; worst entry max|g_i − r_i| / max|r| (with the entry's "
               "name); cosine similarity. f evals count right-hand-side evaluations of the system each "
               "pass solves (the backward pass's are of the augmented adjoint system). Peak MiB is the "
               "peak of memory traced by Python's tracemalloc during one gradient (numpy arrays and "
               "Python objects; not native allocations, so not reported for external engines). "
               f"Times are the median of {g.repeats} timed calls of the same gradient, with their "
               "range [min-max]. max|Δ dL/dz0| / atol is the largest absolute error of dL/dz0 in "
               "units of the cell's atol: what a tolerance promises when the entries are tiny.", ""]
        md += _grid_table(analysis) + [""]
        md += ["## Cross-validation matrices", ""]
        for solver, matrix in analysis["matrices"].items():
            md += [f"### {solver}, rtol = {matrix['rtol']:g}, atol = {matrix['atol']:g}", ""]
            for w in WRT:
                md += [f"{'dL/dθ' if w == 'dtheta' else 'dL/dz0'} (relative error of the row measured "
                       f"against the column, worst over {over_seeds}; cosine similarity in brackets):",
                       ""]
                md += _matrix_table(matrix, w) + [""]
            if f"crossval_{solver}.png" in written.get("heatmap", []):
                md += [f"![cross-validation {solver}](crossval_{solver}.png)", ""]
        if "work_precision" in written:
            point = ("one cell" if n_seeds == 1 else
                     f"the geometric mean of the error and the median of the cost over {n_seeds} seeds")
            md += ["## Work-precision", "",
                   "Error of dL/dθ against the reference versus wall time (the median of the cell's "
                   "repeated calls) and versus "
                   "right-hand-side evaluations, over the tolerance sweep; each point is "
                   f"{point}. The dashed line is the reference's own estimated accuracy. Red rings "
                   "mark numbers the engine flagged itself; an engine with failed cells is listed "
                   "under its panel with the tolerances that failed.", "",
                   "![work-precision](work_precision.png)", ""]
        if "memory" in written:
            tol = min(g.tolerances)
            md += ["## Memory", "",
                   f"Peak traced memory of one gradient at rtol = {tol[0]:g}, atol = {tol[1]:g}, "
                   f"per engine and solver (largest over {over_seeds}; harness engines only).", "",
                   "![memory](memory.png)", ""]
        return md


def _every_tolerance(solver, scored, limit) -> list[str]:
    """One line over every tolerance (not only the tightest): the cells beyond the agreement limit."""
    if not scored:
        return []
    beyond = [r for r in scored if r["dtheta"]["relative_error"] > limit(r)]
    worst = max(scored, key=lambda r: r["dtheta"]["relative_error"] / r["rtol"])
    ratio = worst["dtheta"]["relative_error"] / worst["rtol"]
    head = (f"With {solver} over every tolerance, {len(scored) - len(beyond)} of {len(scored)} scored "
            f"cells are within {AGREEMENT_FACTOR:g} x rtol of the reference (dL/dθ)")
    if not beyond:
        return [f"{head}; the largest is {ratio:.2g} x rtol ({worst['engine']}, rtol = {worst['rtol']:g}, "
                f"seed {worst['seed']})."]
    listed = ", ".join(f"{r['engine']} at rtol = {r['rtol']:g}, seed {r['seed']} "
                       f"({r['dtheta']['relative_error'] / r['rtol']:.0f} x rtol)" for r in beyond[:6])
    more = f" and {len(beyond) - 6} more" if len(beyond) > 6 else ""
    return [f"**{head}; beyond it**: {listed}{more}."]


def _dz0_summary(rows) -> list[str]:
    """dL/dz0 scored two ways: relative error, and absolute error in units of the cell's atol.

    When dL/dz0 is tiny (a decay that forgets z0), an adjoint accurate to its tolerance has an
    absolute error of the order of atol, which is a large relative error; both numbers say so.
    """
    scored = [r for r in rows if r["status"] in ("ok", "flagged") and "max_abs_error_per_atol" in r.get("dz0", {})]
    if not scored:
        return []
    largest = max(r["dz0"]["reference_max_abs"] for r in scored)
    rel = max(scored, key=lambda r: r["dz0"]["relative_error"])
    per_atol = [r["dz0"]["max_abs_error_per_atol"] for r in scored]
    worst = max(scored, key=lambda r: r["dz0"]["max_abs_error_per_atol"])
    return [f"dL/dz0 over the {len(scored)} ok or flagged cells: the reference's largest entry is "
            f"{largest:.1e} in magnitude; the largest absolute error is {min(per_atol):.2g}-"
            f"{max(per_atol):.2g} x the cell's atol (worst: {worst['engine']}, {worst['solver']}, "
            f"rtol = {worst['rtol']:g}), and the relative error reaches {rel['dz0']['relative_error']:.1e} "
            f"({rel['engine']}, {rel['solver']}, rtol = {rel['rtol']:g})."]


def _add(a, b):
    return None if a is None or b is None else a + b


def _matrices(g, grid_records, reference) -> dict:
    """Per solver: engine x engine errors at the tightest tolerance that solver was run at.

    Entry [i][j] is the relative error of engine i measured against engine j (column = yardstick),
    maximised over seeds; the reference is the first row and column. None where either is missing.
    Engines that could not run here (unavailable) are left out: a row of gaps says nothing.
    """
    tightest = min(g.tolerances, key=lambda t: (t[0], t[1]))
    matrices = {}
    for solver in g.solvers:
        labels = [g.reference.engine.label + " (reference)"]
        statuses = defaultdict(set)  # label -> statuses of its cells here
        vectors = defaultdict(dict)  # label -> seed -> record
        for seed, ref in reference.items():
            if _has_gradient(ref):
                vectors[labels[0]][seed] = ref
        for record in grid_records:
            spec = record["spec"]
            if spec["solver"] != solver or (spec["rtol"], spec["atol"]) != tightest:
                continue
            if record["status"] == "unavailable":
                continue
            label = spec["engine"]["label"]
            if label not in labels:
                labels.append(label)
            statuses[label].add(record["status"])
            if _has_gradient(record):
                vectors[label][spec["seed"]] = record
        # "failed" for an engine that failed on every seed (its row and column are empty).
        status = ["failed" if statuses[label] == {"failed"} else "ok" for label in labels]
        entry = {"rtol": tightest[0], "atol": tightest[1], "labels": labels, "status": status}
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
    """Work-precision points per (solver, engine), from loose to tight, aggregated over seeds.

    A point is the geometric mean of the errors (they spread over orders of magnitude) and the
    median of the costs over the seeds at that tolerance. `failed` lists the tolerances at which a
    cell failed, so that the figure can mark them instead of dropping them.
    """
    groups = defaultdict(list)
    for row in rows:
        if row["status"] != "unavailable":
            groups[(row["solver"], row["engine"])].append(row)
    curves = []
    for (solver, engine), members in groups.items():
        by_tol = defaultdict(list)
        for row in members:
            if "dtheta" in row:
                by_tol[(row["rtol"], row["atol"])].append(row)
        points = []
        for (rtol, atol), group in sorted(by_tol.items(), reverse=True):
            points.append({
                "rtol": rtol, "atol": atol, "seeds": len(group),
                "error": _geomean([r["dtheta"]["relative_error"] for r in group]),
                "error_dz0": _geomean([r["dz0"]["relative_error"] for r in group]),
                "seconds": float(np.median([r["seconds"] for r in group])),
                "seconds_min": float(min(r["seconds_min"] for r in group)),
                "seconds_max": float(max(r["seconds_max"] for r in group)),
                "n_rhs": _median_or_none([r["n_rhs"] for r in group]),
                "n_rhs_forward": _median_or_none([r["n_rhs_forward"] for r in group]),
                "n_rhs_backward": _median_or_none([r["n_rhs_backward"] for r in group]),
                "flagged": any(r["status"] == "flagged" for r in group),
            })
        failed = sorted({(r["rtol"], r["atol"]) for r in members if r["status"] == "failed"},
                        reverse=True)
        curves.append({"solver": solver, "engine": engine, "points": points,
                       "failed": [list(t) for t in failed]})
    return curves


def _geomean(values) -> float:
    values = [max(v, 1e-300) for v in values]
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def _median_or_none(values):
    if any(v is None for v in values):
        return None
    return float(np.median(values))


def _grid_table(analysis: dict) -> list[str]:
    lines = markdown.header("engine", "solver", "rtol", "atol", "seed", "status", "rel. error dL/dθ",
                            "worst entry dL/dθ", "cosine dL/dθ", "rel. error dL/dz0", "worst entry dL/dz0",
                            "max|Δ dL/dz0| / atol", "time (s) median [min-max]", "f evals fwd",
                            "f evals bwd", "peak MiB", "note")
    for r in analysis["rows"]:
        if r["status"] == "unavailable":
            continue  # said once, at the top of the report
        cells = [r["engine"], r["solver"], f"{r['rtol']:g}", f"{r['atol']:g}", str(r["seed"]),
                 r["status"]]
        if "dtheta" in r:
            t, z = r["dtheta"], r["dz0"]
            cells += [_fmt(t["relative_error"]), f"{t['worst_entry']:.1e} ({t['worst_name']})",
                      f"{t['cosine']:.9f}", _fmt(z["relative_error"]),
                      f"{z['worst_entry']:.1e} ({z['worst_name']})", _fmt(z.get("max_abs_error_per_atol"))]
        else:
            cells += ["—"] * 6
        cells += [_seconds(r), _fmt(r.get("n_rhs_forward")),
                  _fmt(r.get("n_rhs_backward")), _mib(r.get("peak_memory_bytes"))]
        note = r["reason"] or ""
        if r.get("reconstruction_error") is not None:
            note = f"reconstruction error {r['reconstruction_error']:.1e} tol. " + note
        cells.append(note[:160])
        lines.append(markdown.row(*cells))
    return lines


def _seconds(r: dict) -> str:
    if r.get("seconds") is None:
        return "—"
    return f"{r['seconds']:.3f} [{r['seconds_min']:.3f}-{r['seconds_max']:.3f}]"


def _matrix_table(matrix: dict, w: str) -> list[str]:
    labels = matrix["labels"]
    lines = markdown.header("row vs column", *labels)
    for i, label in enumerate(labels):
        values = []
        for j in range(len(labels)):
            e, c = matrix[w]["relative_error"][i][j], matrix[w]["cosine"][i][j]
            values.append("—" if i == j else ("n/a" if e is None else f"{e:.1e} (cos {c:.9f})"))
        lines.append(markdown.row(label, *values))
    return lines


GRADIENT = register_kind(GradientKind())
