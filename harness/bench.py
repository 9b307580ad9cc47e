"""`harness bench`: time one seed-problem gradient per engine beside a plain baseline, in one run.

Each engine is warmed up once, then timed `repeats` times; the median is reported, with the ratio
baseline / engine (above 1: faster than the baseline). Peak memory is tracemalloc's peak during one
gradient: every Python and numpy allocation made by the call, not the interpreter's resident size.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

from .baseline import baseline_gradient
from .forward import SolveOptions
from .problems import seed_problem, stiff_problem
from .sensitivity import BacksolveAdjoint, InterpolatingAdjoint, QuadratureAdjoint, gradient


def _measure(fn, repeats: int) -> dict:
    result = fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "median_ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "n_rhs_forward": result.forward_stats.n_rhs,
        "n_rhs_backward": result.backward_stats.n_rhs,
        "peak_memory_mb": peak / 2**20,
    }


def run_bench(*, repeats: int = 30, rtol: float = 1e-4, atol: float = 1e-4, include_stiff: bool = True,
              extra_engines=()) -> dict:
    """Rows for the seed problem (and the stiff variant); see the module docstring."""
    data = SolveOptions("DP5", 1e-6, 1e-4)
    problem = seed_problem(data_options=data)
    rows = [{"name": "baseline: scipy solve_ivp RK45 + backsolve", "problem": "seed", "solver": "RK45",
             **_measure(lambda: baseline_gradient(problem, rtol=rtol, atol=atol), repeats)}]
    baseline_ms = rows[0]["median_ms"]
    for engine in (BacksolveAdjoint(), InterpolatingAdjoint(), QuadratureAdjoint(), *extra_engines):
        row = _measure(lambda e=engine: gradient(problem, engine=e, rtol=rtol, atol=atol), repeats)
        rows.append({"name": engine.name, "problem": "seed", "solver": "DP5", **row})
    for row in rows:
        row["speedup_vs_baseline"] = baseline_ms / row["median_ms"]
    if include_stiff:
        stiff = stiff_problem(data_options=data)
        for engine in (QuadratureAdjoint(), InterpolatingAdjoint()):
            row = _measure(
                lambda e=engine: gradient(stiff, engine=e, solver="RadauIIA5", rtol=rtol, atol=atol),
                max(3, repeats // 5),
            )
            rows.append({"name": engine.name, "problem": "stiff", "solver": "RadauIIA5", **row,
                         "speedup_vs_baseline": None})
    return {"rtol": rtol, "atol": atol, "repeats": repeats, "batch": problem.batch_size, "rows": rows}


def format_bench(report: dict) -> str:
    lines = [
        f"One gradient of the seed problem (B = {report['batch']}, rtol {report['rtol']:g}, "
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
