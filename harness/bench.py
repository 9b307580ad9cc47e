"""`harness bench`: time one seed-problem gradient per engine beside a plain baseline, in one run.

Each engine is warmed up once, then all are timed round-robin `repeats` times; the median is
reported, with the ratio baseline / engine (above 1: faster than the baseline). Peak memory is
tracemalloc's peak during one gradient: every Python and numpy allocation made by the call, not the
interpreter's resident size.
"""

from __future__ import annotations

import statistics
import time

from ._baseline import baseline_gradient
from ._forward import SolveOptions
from ._memory import peak_memory
from .problems import seed_problem, stiff_problem
from .solvers import check_solver
from .sensitivity import (
    BacksolveAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    GaussAdjoint,
    RecursiveCheckpointAdjoint,
    gradient,
)


def _measure_interleaved(named_fns: list[tuple[str, object]], repeats: int) -> dict[str, dict]:
    """Median time of each callable, run round-robin so that a shared, noisy machine slows all of
    them alike and their ratios stay meaningful."""
    results = {name: fn() for name, fn in named_fns}  # warm-up (imports, caches)
    times = {name: [] for name, _ in named_fns}
    for _ in range(repeats):
        for name, fn in named_fns:
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {
        name: {
            "median_ms": statistics.median(times[name]) * 1e3,
            "min_ms": min(times[name]) * 1e3,
            "n_rhs_forward": results[name].forward_stats.n_rhs,
            "n_rhs_backward": results[name].backward_stats.n_rhs,
            "peak_memory_mb": peak_memory(fn) / 2**20,
        }
        for name, fn in named_fns
    }


def run_bench(*, repeats: int = 30, rtol: float = 1e-4, atol: float = 1e-4, include_stiff: bool = True,
              extra_engines=(), problem_file=None) -> dict:
    """Rows for the seed problem (and the stiff variant); see the module docstring.

    problem_file : a problem file (any model, `harness.problems`) timed instead, its solver chosen by
        `solvers.solver_for`; no baseline row (the scipy baseline is the tutorial MLP's code) and no
        stiff rows.
    """
    if problem_file is not None:
        return _bench_file(problem_file, repeats=repeats, rtol=rtol, atol=atol, extra_engines=extra_engines)
    data = SolveOptions("DP5", 1e-6, 1e-4)
    problem = seed_problem(data_options=data)
    baseline = "baseline: scipy solve_ivp RK45 + backsolve"
    named = [(baseline, lambda: baseline_gradient(problem, rtol=rtol, atol=atol))]
    for engine in (BacksolveAdjoint(), InterpolatingAdjoint(), QuadratureAdjoint(), GaussAdjoint(),
                   RecursiveCheckpointAdjoint(), *extra_engines):
        named.append((engine.name, lambda e=engine: gradient(problem, engine=e, rtol=rtol, atol=atol)))
    measured = _measure_interleaved(named, repeats)
    baseline_ms = measured[baseline]["median_ms"]
    rows = [
        {"name": name, "problem": "seed", "solver": "RK45" if name == baseline else "DP5", **row,
         "speedup_vs_baseline": baseline_ms / row["median_ms"]}
        for name, row in measured.items()
    ]
    if include_stiff:
        stiff = stiff_problem(data_options=data)
        named = [
            (engine.name, lambda e=engine: gradient(stiff, engine=e, solver="RadauIIA5", rtol=rtol, atol=atol))
            for engine in (QuadratureAdjoint(), InterpolatingAdjoint(), GaussAdjoint())
        ]
        for name, row in _measure_interleaved(named, max(3, repeats // 5)).items():
            rows.append({"name": name, "problem": "stiff", "solver": "RadauIIA5", **row,
                         "speedup_vs_baseline": None})
    return {"rtol": rtol, "atol": atol, "repeats": repeats, "batch": problem.batch_size, "rows": rows}


def _bench_file(path, *, repeats, rtol, atol, extra_engines) -> dict:
    from .problems import load_problem
    from .solvers import solver_for

    problem = load_problem(path)
    solver = solver_for(problem.model, "DP5").name
    engines = [BacksolveAdjoint(), InterpolatingAdjoint(), QuadratureAdjoint(), GaussAdjoint(), *extra_engines]
    if not check_solver(solver).implicit:  # RecursiveCheckpointAdjoint differentiates explicit steps only
        engines.append(RecursiveCheckpointAdjoint())
    named = [(engine.name, lambda e=engine: gradient(problem, engine=e, solver=solver, rtol=rtol, atol=atol))
             for engine in engines]
    rows = [{"name": name, "problem": problem.name, "solver": solver, **row, "speedup_vs_baseline": None}
            for name, row in _measure_interleaved(named, repeats).items()]
    return {"rtol": rtol, "atol": atol, "repeats": repeats, "batch": problem.batch_size, "rows": rows,
            "problem": problem.describe()}


def format_bench(report: dict) -> str:
    what = f"problem {report['problem']}" if "problem" in report else "the seed problem"
    lines = [
        f"One gradient of {what} (B = {report['batch']}, rtol {report['rtol']:g}, "
        f"atol {report['atol']:g}); median of {report['repeats']} after a warm-up",
        f"{'engine':44s} {'problem':8s} {'solver':10s} {'median':>10s} {'evals f/b':>10s} "
        f"{'peak MB':>8s} {'vs baseline':>12s}",
    ]
    for row in report["rows"]:
        ratio = "" if row["speedup_vs_baseline"] is None else f"{row['speedup_vs_baseline']:.2f}x"
        lines.append(
            f"{row['name']:44s} {row['problem']:8s} {row['solver']:10s} {row['median_ms']:8.2f} ms "
            f"{row['n_rhs_forward']:>4d}/{row['n_rhs_backward']:<5d} {row['peak_memory_mb']:8.2f} {ratio:>12s}"
        )
    return "\n".join(lines)
