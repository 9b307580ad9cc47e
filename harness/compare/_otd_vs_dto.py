"""The otd_vs_dto kind: continuous adjoints against the gradient of the computed solution.

    [otd_vs_dto]
    engines = ["QuadratureAdjoint", "GaussAdjoint", "RecursiveCheckpointAdjoint"]
    solver = "DP5"
    tolerances = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10]
    reference_tolerance = 1e-12          # the ODE's gradient: ForwardSensitivity, DP8
    memory_engines = ["QuadratureAdjoint", { engine = "RecursiveCheckpointAdjoint", checkpoints = 4 }]
    horizons = [10.0, 30.0, 100.0]       # memory against the number of steps
    memory_tolerance = 1e-8

Two errors per engine and tolerance, from one cell each:

- against the exact gradient of the ODE's loss: ForwardSensitivity (DP8) at `reference_tolerance`;
- against the exact gradient of the discrete loss that was computed: RecursiveCheckpointAdjoint with
  the same solver and tolerance (reverse mode through the same accepted steps; tests check it equals
  finite differences of the discrete loss to ~1e-11).

And one cell per memory engine and horizon: the tracemalloc peak of one gradient against the number
of accepted forward steps, the horizon lengthening the solve (measured on the numpy reference path,
where each adjoint stores what its algorithm stores).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import dataclass

import numpy as np

from .. import _compiled as compiled
from .. import _memory as memory
from .._interrupts import raise_if_interrupt
from ..errors import BackendUnavailableError
from ..sensitivity import ForwardSensitivity, RecursiveCheckpointAdjoint, gradient
from . import _markdown as markdown
from ._cells import base_record, build_problem_from_spec, one_line_error, plain, prepare
from ._kind import Cell, ExperimentKind, register_kind
from .spec import EngineSpec, _check_keys, _int, _nonempty_list, _positive, _solver, parse_engine

REFERENCE_SOLVER = "DP8"


@dataclass(frozen=True)
class DiscretisationSettings:
    """The validated [otd_vs_dto] table."""

    engines: tuple[EngineSpec, ...]
    solver: str
    tolerances: tuple[float, ...]
    reference_tolerance: float
    memory_engines: tuple[EngineSpec, ...]
    horizons: tuple[float, ...]
    memory_tolerance: float
    seed: int = 0


@dataclass(frozen=True)
class ErrorCell(Cell):
    """One engine at one tolerance (rtol = atol), measured against both exact gradients."""

    problem: object  # ProblemSpec
    seed: int
    engine: EngineSpec
    solver: str
    rtol: float
    atol: float
    reference_tolerance: float

    kind = "otd_vs_dto"
    role = "errors"


@dataclass(frozen=True)
class MemoryCell(Cell):
    """One engine's peak memory on the problem observed at a longer horizon."""

    problem: object  # ProblemSpec, with `times` = (horizon,)
    seed: int
    engine: EngineSpec
    solver: str
    rtol: float
    atol: float
    horizon: float

    kind = "otd_vs_dto"
    role = "memory"


@functools.lru_cache(maxsize=4)
def _ode_gradient(problem_spec, seed: int, tolerance: float) -> np.ndarray:
    """dL/dθ of the ODE's loss (ForwardSensitivity, DP8, `tolerance`), once per process."""
    problem = build_problem_from_spec(problem_spec, seed)
    return gradient(problem, engine=ForwardSensitivity(), solver=REFERENCE_SOLVER, rtol=tolerance,
                    atol=tolerance).dtheta


def _rel(g, ref) -> float:
    return float(np.linalg.norm(np.asarray(g) - ref) / np.linalg.norm(ref))


class DiscretisationKind(ExperimentKind):
    name = "otd_vs_dto"

    def claim_fields(self, s):
        engines = s.engines + s.memory_engines
        return {
            "engine": tuple(dict.fromkeys(e.label for e in engines)), "backend": tuple({e.backend for e in engines}),
            "role": ("errors", "memory"), "solver": (s.solver,), "rtol": None, "atol": None, "seed": (s.seed,),
            "horizon": s.horizons, "status": ("ok", "flagged", "failed", "unavailable"), "reason": None,
            **{m: None for m in ("ode_error", "discrete_error", "n_steps", "n_rhs_forward", "n_rhs_backward",
                                 "peak_memory_bytes", "seconds", "peak_stored_states", "recomputed_steps",
                                 "quadrature_points")},
        }

    def claim_rows(self, analysis):
        return analysis.get("otd_vs_dto", [])
    tables = ("otd_vs_dto",)
    figures = ("otd_vs_dto_errors", "otd_vs_dto_memory")

    def parse(self, tables, *, problem, base):
        table, where = tables["otd_vs_dto"], "[otd_vs_dto]"
        _check_keys(table, where, ("engines", "tolerances"),
                    ("solver", "reference_tolerance", "memory_engines", "horizons", "memory_tolerance", "seed"))

        def engines(key):
            return tuple(parse_engine(e, f"{where} {key}[{i}]")
                         for i, e in enumerate(_nonempty_list(table.get(key, []) or [None], f"{where} {key}"))
                         if e is not None)

        return DiscretisationSettings(
            engines=engines("engines"),
            solver=_solver(table.get("solver", "DP5"), f"{where} solver"),
            tolerances=tuple(_positive(t, f"{where} tolerances[{i}]")
                             for i, t in enumerate(_nonempty_list(table["tolerances"], f"{where} tolerances"))),
            reference_tolerance=_positive(table.get("reference_tolerance", 1e-12), f"{where} reference_tolerance"),
            memory_engines=engines("memory_engines"),
            horizons=tuple(_positive(h, f"{where} horizons[{i}]") for i, h in enumerate(table.get("horizons", []))),
            memory_tolerance=_positive(table.get("memory_tolerance", 1e-8), f"{where} memory_tolerance"),
            seed=_int(table.get("seed", 0), f"{where} seed", 0),
        )

    def settings_as_dict(self, s) -> dict:
        out = dataclasses.asdict(s)
        out["engines"] = [e.as_dict() for e in s.engines]
        out["memory_engines"] = [e.as_dict() for e in s.memory_engines]
        return {"otd_vs_dto": out}

    def backends(self, s) -> set[str]:
        return {e.backend for e in (*s.engines, *s.memory_engines)}

    def cells(self, experiment, s) -> list:
        cells = [ErrorCell(experiment.problem, s.seed, engine, s.solver, tol, tol, s.reference_tolerance)
                 for engine in s.engines for tol in s.tolerances]
        for horizon in s.horizons:
            problem = dataclasses.replace(experiment.problem, times=(horizon,))
            cells += [MemoryCell(problem, s.seed, engine, s.solver, s.memory_tolerance, s.memory_tolerance, horizon)
                      for engine in s.memory_engines]
        return cells

    def run(self, spec) -> dict:
        try:
            problem, engine = prepare(spec)
        except BackendUnavailableError as err:
            raise_if_interrupt(err)
            return base_record(spec, "unavailable", str(err))

        def call(engine=engine):
            return gradient(problem, engine=engine, solver=spec.solver, rtol=spec.rtol, atol=spec.atol)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with memory.allocating():
                    if getattr(engine, "needs_warmup", False):
                        call()
                    result = call()
                    if spec.role == "errors":
                        discrete = call(RecursiveCheckpointAdjoint()).dtheta
                        exact = _ode_gradient(spec.problem, spec.seed, spec.reference_tolerance)
            except BackendUnavailableError as err:
                raise_if_interrupt(err)
                return base_record(spec, "unavailable", str(err))
            except Exception as err:  # a failure is a finding, not a crash of the comparison
                raise_if_interrupt(err)
                return base_record(spec, "failed", one_line_error(err))
            peak = None
            if spec.role == "memory" and spec.engine.backend == "harness":
                # the algorithms' memory, as the numpy reference implements them: the compiled loop
                # sums QuadratureAdjoint's nodes step by step, as GaussAdjoint does, so there the two
                # peak alike and the difference this row is about would not show
                with compiled.numpy_reference():
                    peak = memory.peak_memory(call)
        record = base_record(spec, "ok", "; ".join(sorted({str(w.message) for w in caught}))[:400] or None)
        record.update(
            seconds=float(result.seconds),
            n_steps=int(result.forward_stats.n_accepted or 0),
            n_rhs_forward=int(result.forward_stats.n_rhs or 0),
            n_rhs_backward=int(result.backward_stats.n_rhs or 0),
            diagnostics=plain(result.diagnostics),
        )
        if spec.role == "errors":
            record.update(ode_error=_rel(result.dtheta, exact), discrete_error=_rel(result.dtheta, discrete))
        else:
            record.update(peak_memory_bytes=peak)
        return record

    def analyse(self, experiment, s, records, problem) -> dict:
        rows = []
        for r in records:
            spec = r["spec"]
            row = {"engine": spec["engine"]["label"], "backend": spec["engine"]["backend"], "role": spec["role"],
                   "solver": spec["solver"], "rtol": spec["rtol"], "atol": spec["atol"], "seed": spec["seed"],
                   "status": r["status"], "reason": r["reason"]}
            if spec["role"] == "memory":
                row["horizon"] = spec["horizon"]
            for key in ("ode_error", "discrete_error", "n_steps", "n_rhs_forward", "n_rhs_backward",
                        "peak_memory_bytes", "seconds"):
                if key in r:
                    row[key] = r[key]
            diagnostics = r.get("diagnostics") or {}
            for key in ("peak_stored_states", "recomputed_steps", "quadrature_points"):
                if key in diagnostics:
                    row[key] = diagnostics[key]
            rows.append(row)
        return {"otd_vs_dto": rows}

    def summary(self, experiment, s, analysis) -> list[str]:
        rows = [r for r in analysis["otd_vs_dto"] if r["role"] == "errors" and r["status"] == "ok"]
        lines = []
        loosest = max(s.tolerances)
        at_loose = [r for r in rows if r["rtol"] == loosest]
        dto = [r for r in at_loose if r["engine"] == "RecursiveCheckpointAdjoint"]
        otd = [r for r in at_loose if r["engine"] != "RecursiveCheckpointAdjoint" and r["backend"] == "harness"]
        if dto and otd:
            nearest = min(otd, key=lambda r: r["discrete_error"])
            lines.append(
                f"At rtol = atol = {loosest:g} ({s.solver}), RecursiveCheckpointAdjoint is the gradient of the "
                f"discrete loss by construction; the closest continuous adjoint to it, {nearest['engine']}, is "
                f"{nearest['discrete_error']:.1e} away, while against the ODE's gradient the DTO gradient is "
                f"{dto[0]['ode_error']:.1e} off and {nearest['engine']} {nearest['ode_error']:.1e}.")
        by_tol = {}
        for r in rows:
            by_tol.setdefault(r["rtol"], []).append(r)
        ratios = []
        for group in by_tol.values():
            d = [r for r in group if r["engine"] == "RecursiveCheckpointAdjoint"]
            o = [r["ode_error"] for r in group if r["engine"] != "RecursiveCheckpointAdjoint"
                 and r["backend"] == "harness" and r["ode_error"] > 0]
            if d and o:
                ratios.append(d[0]["ode_error"] / min(o))
        if ratios:
            lines.append(f"Against the ODE's gradient, the DTO gradient is {min(ratios):.1f}x to {max(ratios):.1f}x "
                         "the error of the closest continuous adjoint, tolerance by tolerance (this problem, "
                         f"{s.solver}): exact for what was computed is not closer to the ODE's gradient.")
        otd_rows = [r for r in rows if r["engine"] != "RecursiveCheckpointAdjoint" and r["backend"] == "harness"]
        if otd_rows:
            closer = sum(r["ode_error"] < r["discrete_error"] for r in otd_rows)
            lines.append(f"The continuous adjoints are closer to the ODE's gradient than to the discrete loss's in "
                         f"{closer} of {len(otd_rows)} cells.")
        tightest = min(s.tolerances)
        at_tight = [r for r in rows if r["rtol"] == tightest]
        if at_tight:
            worst = max(at_tight, key=lambda r: r["ode_error"])
            lines.append(f"At {tightest:g} every engine is within {worst['ode_error']:.1e} of the ODE's gradient "
                         f"(largest: {worst['engine']}).")
        mem = [r for r in analysis["otd_vs_dto"] if r["role"] == "memory" and r.get("peak_memory_bytes")]
        if mem and len(s.horizons) > 1:
            short, long = min(s.horizons), max(s.horizons)
            parts = []
            for engine in dict.fromkeys(r["engine"] for r in mem):
                a = [r for r in mem if r["engine"] == engine and r["horizon"] == short]
                b = [r for r in mem if r["engine"] == engine and r["horizon"] == long]
                if a and b:
                    parts.append(f"{engine} {b[0]['peak_memory_bytes'] / a[0]['peak_memory_bytes']:.1f}x "
                                 f"({a[0]['n_steps']} -> {b[0]['n_steps']} steps)")
            lines.append(f"Peak memory from t1 = {short:g} to {long:g}: " + "; ".join(parts) + ".")
        for r in analysis["otd_vs_dto"]:
            if r["status"] == "failed":
                lines.append(f"**{r['engine']} failed** ({r['role']}, rtol {r['rtol']:g}): {r['reason']}")
        return lines

    def draw(self, experiment, s, analysis, save) -> None:
        from . import _dto_figures

        rows = analysis["otd_vs_dto"]
        if "otd_vs_dto_errors" in experiment.figures:
            save("otd_vs_dto_errors", _dto_figures.errors(rows, s.solver), "otd_vs_dto_errors.png")
        if "otd_vs_dto_memory" in experiment.figures:
            save("otd_vs_dto_memory", _dto_figures.memory_against_steps(rows, s.solver, s.memory_tolerance),
                 "otd_vs_dto_memory.png")

    def report(self, experiment, s, analysis, written) -> list[str]:
        rows = analysis["otd_vs_dto"]
        md = ["## Optimise-then-discretise against discretise-then-optimise", "",
              f"{s.solver}, rtol = atol swept over {', '.join(f'{t:g}' for t in s.tolerances)}. "
              f"**ODE error**: relative 2-norm distance of dL/dθ to the ODE's gradient (ForwardSensitivity, "
              f"{REFERENCE_SOLVER}, {s.reference_tolerance:g}). **Discrete error**: to the exact gradient of the "
              "discrete loss actually computed at that tolerance (RecursiveCheckpointAdjoint, same solver and "
              "tolerance, so its own discrete error is 0).", "",
              "| engine | rtol = atol | ODE error | discrete error | forward steps | evals fwd/bwd | time (ms) |",
              "|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["role"] != "errors" or r["status"] == "unavailable":
                continue
            if r["status"] != "ok":
                md.append(markdown.row(r["engine"], f"{r['rtol']:g}", r["status"], "", "", "",
                                       (r["reason"] or "")[:100]))
                continue
            md.append(markdown.row(r["engine"], f"{r['rtol']:g}", f"{r['ode_error']:.2e}",
                                   f"{r['discrete_error']:.2e}", r["n_steps"],
                                   f"{r['n_rhs_forward']}/{r['n_rhs_backward']}", f"{r['seconds'] * 1e3:.1f}"))
        md.append("")
        if "otd_vs_dto_errors" in written:
            md += ["![errors](otd_vs_dto_errors.png)", ""]
        mem = [r for r in rows if r["role"] == "memory" and r["status"] != "unavailable"]
        if mem:
            md += ["### Memory against the number of steps", "",
                   f"The same problem observed at t1 = {', '.join(f'{h:g}' for h in s.horizons)}, {s.solver} at "
                   f"{s.memory_tolerance:g}: tracemalloc peak of one gradient (a second, traced call), forward "
                   "steps, states the discrete adjoint held at once, and evaluations (for GaussAdjoint and "
                   "QuadratureAdjoint the backward count includes no quadrature; their nodes are listed).", "",
                   "| engine | t1 | forward steps | peak memory (MiB) | held states | recomputed steps | "
                   "quadrature nodes | evals fwd/bwd |",
                   "|---|---|---|---|---|---|---|---|"]
            for r in mem:
                if r["status"] != "ok":
                    md.append(markdown.row(r["engine"], f"{r['horizon']:g}", r["status"], *[""] * 5))
                    continue
                peak = r.get("peak_memory_bytes")
                md.append(f"| {markdown.escape(r['engine'])} | {r['horizon']:g} | {r['n_steps']} | "
                          f"{'—' if peak is None else f'{peak / 2**20:.3f}'} | {r.get('peak_stored_states', '—')} | "
                          f"{r.get('recomputed_steps', '—')} | {r.get('quadrature_points', '—')} | "
                          f"{r['n_rhs_forward']}/{r['n_rhs_backward']} |")
            md.append("")
            if "otd_vs_dto_memory" in written:
                md += ["![memory](otd_vs_dto_memory.png)", ""]
        return md


DISCRETISATION = register_kind(DiscretisationKind())
