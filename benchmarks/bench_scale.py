"""How one gradient's cost grows with batch size and parameter count: harness (numpy and compiled)
against diffrax and torchdiffeq, side by side in one run.

Usage:
    python benchmarks/bench_scale.py [--repeats 5] [--quick] [--rows TEXT ...] [--out reports/scale]
    python benchmarks/bench_scale.py --grid 12 [--seed 0] [--isa on off] [--out reports/scale]

Every (framework, method, problem) runs in its own process on the same problem file (DP5, float64,
rtol = atol = 1e-6): one untimed warm-up gradient, whose extra time over a timed one is reported apart
as compilation (numba's kernels for the compiled harness, XLA's for diffrax), then the median of
`--repeats` gradients, or of as many as fill half a second (at most 500) where that is more.
"harness compiled" is the default mode (the whole compiled loop, its wide products in BLAS; its note
says which path ran), "harness numpy" HARNESS_COMPILED=0. The peers are used when installed
(`pip install -e ".[peers]"`) and shown as "-" otherwise. Writes `table.md`, `results.json` and the
log-log figure `scale.png` to `--out`, and measures the arithmetic limit (the kernel's GFLOP/s and
activations per second against a tight loop and BLAS).

`--grid K` measures instead K cells drawn from the grid of `GRID` (hidden width 3-128, one to three
hidden layers, state size N 2-8, batch 1-5000, 1 or 20 observation times in [0, 1]), each factor
cycling through its levels in its own seeded random order so that every level appears; each cell's
weights, initial states and data come from a seed of its own (`--seed` + the cell's index). Per cell
and instruction set: the best harness engine (default mode: Backsolve, Interpolating,
RecursiveCheckpoint) and the best diffrax engine (Backsolve, RecursiveCheckpoint), each framework in
its own process, post-JIT medians, DP5/Dopri5, rtol = atol = 1e-6. Both processes stay up for the cell
and time their gradients in `ROUNDS` rounds taken in turn (harness, diffrax, harness, ...), each of at
least `--repeats` gradients and `ROUND_SECONDS` of them per method, the median over every round: a
shared machine's load changes over seconds, and interleaved it weighs on both frameworks alike (with a
framework's whole measurement after the other's, a cell whose code had not changed moved from 0.35 to
0.64 between two runs). The instruction sets are interleaved cell by cell. `--isa off` runs both
frameworks as on a CPU without AVX-512 (numba's target and the module built ahead of time:
NUMBA_CPU_FEATURES with every AVX-512 feature off; numpy: NPY_DISABLE_CPU_FEATURES; OpenBLAS:
OPENBLAS_CORETYPE=Zen; XLA: --xla_cpu_max_isa=AVX2). Writes
`grid.json`, `grid.md` (with the worst cell named, and for each cell the best engines' vector-field
evaluations per gradient and time per evaluation, so a ratio splits into a count and a cost) and the
heatmap `grid.png` of harness ÷ diffrax.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness._io import write_text
from harness._provenance import cpu_model, provenance

RTOL = ATOL = 1e-6

# (label, widths, batch, observation times): the rows of the published table
TABLE = [
    ("2-3-2, B 500, 1 time", (2, 3, 2), 500, (10.0,)),
    ("2-3-2, B 5 000", (2, 3, 2), 5000, (10.0,)),
    ("2-3-2, B 50 000", (2, 3, 2), 50000, (10.0,)),
    ("2-64-2, B 500", (2, 64, 2), 500, (10.0,)),
    ("2-32-32-2, B 500", (2, 32, 32, 2), 500, (10.0,)),
    ("8-128-128-8, B 256, t1 = 1", (8, 128, 128, 8), 256, (1.0,)),
    ("2-50-2, B 1, 30 observation times", (2, 50, 2), 1, tuple(np.linspace(10 / 30, 10, 30))),
]
# the figure's sweeps: 2-3-2 over B, and 2-H-2 at B = 500 over H (so over P = 5 H + 2); each point has a
# label of its own (its sweep named), so that no measurement overwrites another in results.json
BATCH_SWEEP = [(f"batch sweep: 2-3-2, B {b}", (2, 3, 2), b, (10.0,)) for b in (1, 50, 500, 5000, 50000)]
WIDTH_SWEEP = [(f"width sweep: 2-{h}-2, B 500", (2, h, 2), 500, (10.0,)) for h in (3, 16, 64, 256)]

# column -> (worker framework, method)
COLUMNS = {
    "harness numpy Backsolve": ("harness-numpy", "BacksolveAdjoint"),
    "harness numpy Interpolating": ("harness-numpy", "InterpolatingAdjoint"),
    "harness compiled Backsolve": ("harness-compiled", "BacksolveAdjoint"),
    "harness compiled Interpolating": ("harness-compiled", "InterpolatingAdjoint"),
    "harness compiled RecursiveCheckpoint": ("harness-compiled", "RecursiveCheckpointAdjoint"),
    "diffrax Backsolve": ("diffrax", "BacksolveAdjoint"),
    "diffrax RecursiveCheckpoint": ("diffrax", "RecursiveCheckpointAdjoint"),
    "torchdiffeq adjoint": ("torchdiffeq", "odeint_adjoint"),
}
SWEEP_COLUMNS = ["harness numpy Backsolve", "harness compiled Backsolve", "diffrax Backsolve"]


# the benchmark grid (`--grid`): every level of each factor
GRID = {"width": (3, 8, 16, 32, 64, 128), "layers": (1, 2, 3), "state": (2, 4, 8), "batch": (1, 20, 500, 5000),
        "times": (1, 20)}
GRID_METHODS = {"harness-compiled": ("BacksolveAdjoint", "InterpolatingAdjoint", "RecursiveCheckpointAdjoint"),
                "diffrax": ("BacksolveAdjoint", "RecursiveCheckpointAdjoint")}
# a cell's timed rounds per framework, taken in turn with the other's, and the seconds of gradients a
# round times per method at least (and at least --repeats of them); the median is over every gradient
ROUNDS = 5
ROUND_SECONDS = 0.2


# --------------------------------------------------------------------------------------- workers
def _gradient_function(framework: str, method: str, problem_path: str):
    """(one, note, setup seconds): `one()` computes one gradient of the problem file by `framework`'s
    `method` (a result with `.seconds`, `.forward_stats`, `.backward_stats`)."""
    started = time.perf_counter()
    if framework.startswith("harness"):
        import harness._compiled as compiled
        from harness.problems import load_problem
        from harness.sensitivity import gradient

        if framework == "harness-compiled":
            # build or load the compiled kernels now, so their cost is reported apart
            compiled._load_kernels()
        problem = load_problem(problem_path)

        def one():
            return gradient(problem, engine=method, solver="DP5", rtol=RTOL, atol=ATOL)

        note = compiled.status(problem.model, problem.batch_size)
    else:
        if framework == "diffrax":
            from harness.peers import diffrax_engine as adapter
        else:
            from harness.peers import torchdiffeq_engine as adapter

        def one():
            return adapter.gradient_from_file(problem_path, method=method, solver="DP5", rtol=RTOL, atol=ATOL)

        note = framework
    return one, note, time.perf_counter() - started


def _evaluations(result) -> dict:
    """The vector field's evaluations of one gradient (the same in every repeat: the steps are deterministic),
    forward pass and backward pass, to tell a gap in the evaluation count from one in the time per evaluation."""
    return {"forward": result.forward_stats.n_rhs, "backward": result.backward_stats.n_rhs}


def _compile_seconds(framework: str, setup: float, warm_wall: float, median: float) -> float:
    """The compilation reported apart: the compiled kernels' load (harness compiled), the warm-up gradient's
    excess over a timed one (the peers: XLA's or torch's first call), none for the numpy path."""
    if framework == "harness-numpy":
        return 0.0
    return setup if framework == "harness-compiled" else max(0.0, warm_wall - median)


def _worker(framework: str, method: str, problem_path: str, repeats: int) -> dict:
    """Runs in its own process: warm-up, then `repeats` timed gradients. Returns the timings."""
    one, note, setup = _gradient_function(framework, method, problem_path)
    before = time.perf_counter()
    first = one()
    warm, warm_wall = first.seconds, time.perf_counter() - before
    # at least `repeats` gradients and at least half a second of them: a sub-millisecond median of five
    # moves by a third from run to run (first calls after the warm-up still touch fresh memory)
    count = min(max(repeats, int(0.5 / max(warm_wall, 1e-6))), 500)
    times = [one().seconds for _ in range(count)]
    median = statistics.median(times)
    return {"median": median, "compile": _compile_seconds(framework, setup, warm_wall, median), "warm": warm,
            "times": times, "note": note, "evaluations": _evaluations(first)}


def _run_worker(framework, method, problem_path, repeats) -> dict | None:
    # "harness compiled" is the default (automatic) mode, what a user gets
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_COMPILED"}
    if framework == "harness-numpy":
        env["HARNESS_COMPILED"] = "0"
    cmd = [sys.executable, __file__, "--worker", framework, method, str(problem_path), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {framework} {method}: failed ({last})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available(framework: str) -> bool:
    import importlib.util

    module = {"diffrax": "diffrax", "torchdiffeq": "torchdiffeq", "harness-compiled": "numba"}.get(framework)
    return module is None or importlib.util.find_spec(module) is not None


# ------------------------------------------------------------------------------------------- grid
def grid_cells(count: int, seed: int) -> list[dict]:
    """`count` cells of `GRID`: each factor runs through its levels in a random order of its own (so
    each level appears about count / levels times), a seed per cell for its weights and data."""
    rng = np.random.default_rng(seed)
    orders = {name: [] for name in GRID}
    cells = []
    for i in range(count):
        cell = {}
        for name, levels in GRID.items():
            if not orders[name]:
                orders[name] = list(rng.permutation(len(levels)))
            cell[name] = int(levels[orders[name].pop()])
        cell["seed"] = seed + i
        cell["label"] = (f"{cell['state']}-" + "-".join([str(cell['width'])] * cell["layers"]) + f"-{cell['state']}, "
                         f"B {cell['batch']}, {cell['times']} time{'s' if cell['times'] > 1 else ''}, "
                         f"seed {cell['seed']}")
        cells.append(cell)
    return cells


def _grid_problem(cell: dict, folder: Path) -> Path:
    from harness.model import MLP
    from harness.problems import make_problem, save_problem

    widths = (cell["state"], *[cell["width"]] * cell["layers"], cell["state"])
    times = (1.0,) if cell["times"] == 1 else tuple(np.linspace(1 / cell["times"], 1.0, cell["times"]))
    problem = make_problem(MLP(widths), seed=cell["seed"], batch=cell["batch"], times=times, name=cell["label"])
    return save_problem(problem, folder / f"cell{cell['seed']}.npz")


def isa_environment(isa: str) -> dict:
    """Environment changes that make numba (and the module built ahead of time), numpy, OpenBLAS and XLA
    target this CPU without AVX-512 ('off') or as it is ('on')."""
    if isa == "on":
        return {}
    import llvmlite.binding as llvm
    from numpy._core._multiarray_umath import __cpu_features__

    features = ",".join(("-" + f[1:]) if f.startswith("+avx512") else f
                        for f in llvm.get_host_cpu_features().flatten().split(","))
    return {"NUMBA_CPU_NAME": llvm.get_host_cpu_name(), "NUMBA_CPU_FEATURES": features,
            "NPY_DISABLE_CPU_FEATURES": " ".join(k for k, v in __cpu_features__.items() if v and "AVX512" in k),
            "OPENBLAS_CORETYPE": "Zen", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}


def _grid_worker(framework: str, problem_path: str, repeats: int) -> None:
    """Runs in its own process, for one framework and one cell: sets up and warms up every method of
    `GRID_METHODS[framework]`, says "ready", then on each "round" line from stdin times a round of
    gradients of every method (at least `repeats` and at least `ROUND_SECONDS` of them) and prints their
    times; on "end" prints what the set-up measured, and returns. One JSON object a line."""
    methods = {}
    for method in GRID_METHODS[framework]:
        one, note, setup = _gradient_function(framework, method, problem_path)
        before = time.perf_counter()
        first = one()
        warm_wall = time.perf_counter() - before
        before = time.perf_counter()
        one()  # a round's size from a gradient after the warm-up (which includes XLA's compilation)
        count = min(max(repeats, int(ROUND_SECONDS / max(time.perf_counter() - before, 1e-6))), 200)
        methods[method] = (one, count, {"setup": setup, "warm": first.seconds, "warm_wall": warm_wall,
                                        "note": note, "evaluations": _evaluations(first)})
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "round":
            print(json.dumps({m: [one().seconds for _ in range(count)] for m, (one, count, _) in methods.items()}),
                  flush=True)
        else:
            print(json.dumps({m: info for m, (_, _, info) in methods.items()}), flush=True)
            return


def _one_core() -> None:
    """Confine this process, and every thread it starts, to one core (the first it may use)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


class _GridWorker:
    """One framework's `_grid_worker` process for one cell, driven line by line."""

    def __init__(self, framework: str, problem_path: Path, repeats: int, env_changes: dict, one_core: bool,
                 folder: Path):
        env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_COMPILED", "HARNESS_BUILD")}
        env.update(env_changes)
        env["HARNESS_BUILD"] = "wait"  # a benchmark measures the compiled code: build it first (reported apart)
        self.framework = framework
        self.stderr = open(folder / f"{framework}.stderr", "w+")  # a file: a chatty worker cannot fill a pipe
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--grid-worker", framework, str(problem_path), "--repeats", str(repeats)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            preexec_fn=_one_core if one_core else None)

    def ask(self, request: str | None) -> dict | None:
        """Send `request` (None: only read) and return the worker's answer, or None if it failed."""
        try:
            if request is not None:
                self.proc.stdin.write(request + "\n")
                self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            return json.loads(line) if line else None
        except (OSError, ValueError):
            return None

    def failure(self) -> str:
        self.proc.kill()
        self.proc.wait()
        self.stderr.seek(0)
        return (self.stderr.read().strip().splitlines() or ["?"])[-1]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()


def _measure_cell(problem_path: Path, repeats: int, env_changes: dict, one_core: bool) -> dict:
    """Both frameworks on one cell, their timed rounds interleaved (harness, diffrax, harness, ...,
    `ROUNDS` each): a shared machine's load changes over seconds, and it then weighs on both alike.
    Each framework sets up alone first. Returns {framework: {method: timings} or None}."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-cell-") as folder:
        workers = []
        for framework in GRID_METHODS:
            worker = _GridWorker(framework, problem_path, repeats, env_changes, one_core, Path(folder))
            if worker.ask(None) is None:
                print(f"  {framework}: failed ({worker.failure()})", file=sys.stderr)
                results[framework] = None
                worker.close()
                continue
            workers.append(worker)
        rounds = {w.framework: [] for w in workers}
        for _ in range(ROUNDS):
            for worker in list(workers):
                answer = worker.ask("round")
                if answer is None:
                    print(f"  {worker.framework}: failed ({worker.failure()})", file=sys.stderr)
                    results[worker.framework] = None
                    workers.remove(worker)
                    worker.close()
                    continue
                rounds[worker.framework].append(answer)
        for worker in workers:
            info = worker.ask("end")
            worker.close()
            if info is None:
                results[worker.framework] = None
                continue
            per_method = {}
            for method, about in info.items():
                times = [t for answer in rounds[worker.framework] for t in answer[method]]
                median = statistics.median(times)
                compile_seconds = _compile_seconds(worker.framework, about["setup"], about["warm_wall"], median)
                per_method[method] = {"median": median, "compile": compile_seconds, "warm": about["warm"],
                                      "times": times, "note": about["note"], "evaluations": about["evaluations"],
                                      "round_medians": [statistics.median(a[method]) for a in rounds[worker.framework]]}
            results[worker.framework] = per_method
    return results


def _best(per_method: dict | None) -> tuple[str, float] | None:
    found = [(m, r["median"]) for m, r in (per_method or {}).items() if r]
    return min(found, key=lambda mr: mr[1]) if found else None


def _work(per_method: dict | None, best: tuple[str, float] | None) -> tuple[int, float] | None:
    """The best engine's vector-field evaluations per gradient (forward and backward pass) and its median
    time per evaluation; None where either is unknown (a measurement made before they were recorded)."""
    if not best:
        return None
    evaluations = ((per_method or {}).get(best[0]) or {}).get("evaluations") or {}
    count = (evaluations.get("forward") or 0) + (evaluations.get("backward") or 0)
    return (count, best[1] / count) if count else None


ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# XLA's flag for its Eigen pool. It no longer keeps jax 0.10's CPU runtime on one thread: a wide cell
# (8-128-128-128-8, B 500) measured 1.4 s of CPU per second of wall with it. So --one-thread also confines
# each worker to one core (`_one_core`): 1.0 s per second, and diffrax 1.2x slower there than with two.
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def run_grid(count: int, seed: int, isas: list[str], repeats: int, out: Path, command: str,
             cells: list[int] | None = None, one_thread: bool = False, measure: bool = True) -> int:
    """Measure the cells (see the module docstring); `measure=False` writes the reports from the cells an
    interrupted run of the same command measured (grid.partial.json), naming how many were left out."""
    drawn = grid_cells(count, seed)
    cells = [drawn[i] for i in cells] if cells else drawn
    n_drawn = len(cells)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); python {platform.python_version()}")
    print(f"grid: {count} cells of {np.prod([len(v) for v in GRID.values()])}, seed {seed}, instruction sets "
          f"{isas}; DP5, rtol = atol = {RTOL:g}", flush=True)
    # Each measured (cell, instruction set) is appended to a partial file at once, and a rerun of the same
    # command resumes from it: the grid takes tens of minutes and a shared machine may stop it.
    out.mkdir(parents=True, exist_ok=True)
    partial_path = out / "grid.partial.json"
    rows = _resumed_rows(partial_path, command)
    done = {(r["seed"], r["avx512"]) for r in rows}
    if rows:
        print(f"resuming: {len(rows)} (cell, instruction set) measurements read from {partial_path}", flush=True)
    if not measure:
        cells = [c for c in cells if all((c["seed"], isa) in done for isa in isas)]
        rows = [r for r in rows if any(r["seed"] == c["seed"] for c in cells)]
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as folder:
        for cell in cells if measure else []:
            if all((cell["seed"], isa) in done for isa in isas):
                continue
            path = _grid_problem(cell, Path(folder))
            for isa in isas:  # interleaved: both frameworks, both instruction sets, cell by cell
                if (cell["seed"], isa) in done:
                    continue
                env = isa_environment(isa)
                if one_thread:
                    env = {**env, **ONE_THREAD, "XLA_FLAGS": " ".join(
                        f for f in (env.get("XLA_FLAGS", ""), XLA_ONE_THREAD) if f)}
                measured = _measure_cell(path, repeats, env, one_core=one_thread)
                harness, diffrax = measured["harness-compiled"], measured["diffrax"]
                best_h, best_d = _best(harness), _best(diffrax)
                ratio = best_h[1] / best_d[1] if best_h and best_d else None
                rows.append({**cell, "avx512": isa, "harness": harness, "diffrax": diffrax,
                             "best_harness": best_h, "best_diffrax": best_d, "ratio": ratio})
                text = "—" if ratio is None else f"{ratio:.2f}"
                print(f"  {cell['label']:44s} AVX-512 {isa:3s}: harness {best_h and f'{best_h[1] * 1e3:.3g} ms'}, "
                      f"diffrax {best_d and f'{best_d[1] * 1e3:.3g} ms'}: ratio {text}", flush=True)
                write_text(partial_path, json.dumps({"command": command, "rows": rows}, indent=1))
    measured = [r for r in rows if r["ratio"] is not None]
    worst = max(measured, key=lambda r: r["ratio"]) if measured else None
    lines = [f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)", "", f"Command: `{command}`", "",
             (f"{len(cells)} cells drawn" if len(cells) == n_drawn else
              f"The first {len(cells)} of {n_drawn} cells drawn (the run was stopped there; the others were not "
              "measured)") + f" from the grid ({np.prod([len(v) for v in GRID.values()])} cells), seed {seed}"
             + (" (one core per framework)" if one_thread else "") + "; "
             "harness ÷ diffrax, the best engine of each, one dL/dθ, DP5/Dopri5, rtol = atol = 1e-6, post-JIT medians.",
             "", "| cell | AVX-512 | harness (best) | diffrax (best) | harness ÷ diffrax | "
             "evaluations, harness / diffrax | µs per evaluation, harness / diffrax |",
             "|---|---|---:|---:|---:|---:|---:|"]
    # each row's best engines' (evaluations, time per evaluation), for the table and the cells above 0.5
    work = {id(r): (_work(r["harness"], r["best_harness"]), _work(r["diffrax"], r["best_diffrax"])) for r in rows}
    for r in rows:
        h, d = r["best_harness"], r["best_diffrax"]
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        work_h, work_d = work[id(r)]
        counts = f"{work_h[0]} / {work_d[0]}" if work_h and work_d else "—"
        per_evaluation = f"{work_h[1] * 1e6:.3g} / {work_d[1] * 1e6:.3g}" if work_h and work_d else "—"
        lines.append(f"| {r['label']} | {r['avx512']} | {h and f'{h[1] * 1e3:.3g} ms ({h[0]})' or '—'} | "
                     f"{d and f'{d[1] * 1e3:.3g} ms ({d[0]})' or '—'} | {ratio} | {counts} | {per_evaluation} |")
    if worst:
        lines += ["", f"Worst cell: {worst['label']}, AVX-512 {worst['avx512']}: "
                      f"harness ÷ diffrax = {worst['ratio']:.2f}."]
        for isa in isas:
            ratios = [r["ratio"] for r in measured if r["avx512"] == isa]
            if ratios:
                lines.append(f"- AVX-512 {isa}: {len(ratios)} cells, ratio {min(ratios):.2f}-{max(ratios):.2f}, "
                             f"median {statistics.median(ratios):.2f}; {sum(x <= 1 for x in ratios)} at most 1, "
                             f"{sum(x <= 0.5 for x in ratios)} at most 0.5")
        # where a cell above 0.5 loses: the count of evaluations or the time of each (their product is the ratio)
        above = [work[id(r)] for r in measured if r["ratio"] > 0.5 and all(work[id(r)])]
        if above:
            counts = [h[0] / d[0] for h, d in above]
            per_evaluation = [h[1] / d[1] for h, d in above]
            lines.append(f"- Above 0.5: {len(above)} (cell, instruction set) measurements; there harness ÷ diffrax is "
                         f"{min(counts):.2f}-{max(counts):.2f} in evaluations per gradient and "
                         f"{min(per_evaluation):.2f}-{max(per_evaluation):.2f} in time per evaluation")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    write_text(out / "grid.md", text)
    write_text(out / "grid.json", json.dumps({"cpu": cpu_model(), "provenance": provenance(),
                                                "command": command, "grid": GRID,
                                                "seed": seed, "cells_drawn": n_drawn,
                                                "cells_measured": len(cells), "rows": rows,
                                                "worst": worst and {k: worst[k] for k in ("label", "avx512", "ratio")}},
                                               indent=1))
    _grid_figure(rows, isas, out / "grid.png")
    if measure:
        partial_path.unlink(missing_ok=True)
    return 0


def _resumed_rows(partial_path: Path, command: str) -> list[dict]:
    """The rows of an interrupted run of the same command, or [] (none, or another command's)."""
    try:
        partial = json.loads(partial_path.read_text())
    except (OSError, ValueError):
        return []
    return partial["rows"] if partial.get("command") == command else []


def _grid_figure(rows: list[dict], isas: list[str], path: Path) -> None:
    """Heatmap of harness ÷ diffrax: columns (layers, width), rows (N, B, times); one panel per
    instruction set; cells not drawn are blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    columns = [(layers, width) for layers in GRID["layers"] for width in GRID["width"]]
    lines = [(n, b, t) for n in GRID["state"] for b in GRID["batch"] for t in GRID["times"]]
    fig, axes = plt.subplots(1, len(isas), figsize=(7.5 * len(isas), 8), squeeze=False,
                             gridspec_kw={"wspace": 0.45})
    image = None
    for ax, isa in zip(axes[0], isas):
        grid = np.full((len(lines), len(columns)), np.nan)
        for r in rows:
            if r["avx512"] == isa and r["ratio"] is not None:
                i, j = lines.index((r["state"], r["batch"], r["times"])), columns.index((r["layers"], r["width"]))
                grid[i, j] = r["ratio"]
                ax.text(j, i, f"{r['ratio']:.2f}", ha="center", va="center", fontsize=7)
        image = ax.imshow(grid, cmap="RdYlGn_r", norm=LogNorm(vmin=0.1, vmax=10), aspect="auto")
        ax.set_xticks(range(len(columns)), [f"{layers}x{width}" for layers, width in columns], rotation=90, fontsize=7)
        ax.set_yticks(range(len(lines)), [f"N {n}, B {b}, {t} t" for n, b, t in lines], fontsize=7)
        ax.set_xlabel("hidden layers x width")
        ax.set_title(f"AVX-512 {isa}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="harness ÷ diffrax (one gradient; < 1: harness faster)")
    fig.suptitle(f"harness ÷ diffrax per grid cell, DP5 rtol = atol = 1e-6 ({cpu_model()})", fontsize=10)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- arithmetic limit
def arithmetic_limit() -> dict:
    """The stage kernel's achieved GFLOP/s and activations per second against tight loops."""
    from numba import njit

    from harness._compiled._activations import tanh_array
    from harness._compiled import kernels as compiled_kernels
    from harness._compiled._compiled_stage_vjps import CompiledStageVJPs
    from harness.model import MLP

    @njit(fastmath={"contract"}, error_model="numpy")
    def fma_loop(out, src, w, n):  # rows of 64 in L1: the best case of the kernel's inner loop
        for _ in range(n):
            for b in range(out.shape[0]):
                out[b] += w * src[b]

    def best(fn, n=30):
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    out, src = np.zeros(64), np.ones(64) * 1e-9
    fma_loop(out, src, 0.5, 1)
    n_iter = 20000
    fma_gflops = 2 * 64 * n_iter / best(lambda: fma_loop(out, src, 0.5, n_iter)) / 1e9
    from threadpoolctl import threadpool_limits

    w, inputs, product = np.ones((128, 129)), np.ones((129, 256)), np.empty((128, 256))
    with threadpool_limits(limits=1, user_api="blas"):  # the compiled loop's wide products run on one thread
        gemm_gflops = 2 * 128 * 129 * 256 / best(lambda: np.dot(w, inputs, out=product)) / 1e9
    x = np.random.default_rng(0).normal(size=32000) * 3
    y = np.empty_like(x)
    tanh_array(x, y)
    tanh_rate = x.size / best(lambda: tanh_array(x, y))
    np_tanh_rate = x.size / best(lambda: np.tanh(x, out=y))
    kernels = {}
    for widths, batch in (((2, 3, 2), 500), ((2, 64, 2), 500), ((8, 128, 128, 8), 256)):
        model = MLP(widths)
        theta = model.init(np.random.default_rng(1))
        tape = CompiledStageVJPs(model, theta, batch, 1, -1.0, stage=compiled_kernels().mlp_stage)
        z, a = np.random.default_rng(2).normal(size=(2, widths[0], batch))
        f, az = np.empty_like(z), np.empty_like(z)
        seconds = best(lambda tape=tape, z=z, a=a, f=f, az=az: tape.vjp(0, z, a, f, az), 50)
        pairs = list(itertools.pairwise(widths))
        forward = sum(2 * (i + 1) * o for i, o in pairs)  # [W | b] [x; 1]
        backward = sum(2 * i * o for i, o in pairs)  # Wᵀ g (the θ products are formed after the stage, not here)
        activations = sum(widths[1:-1])
        kernels["-".join(map(str, widths)) + f", B {batch}"] = {
            "microseconds": seconds * 1e6,
            "gflops": (forward + backward) * batch / seconds / 1e9,
            "activations_per_second": activations * batch / seconds,
        }
    return {"fma_loop_gflops": fma_gflops, "gemm_gflops": gemm_gflops, "tanh_per_second": tanh_rate,
            "np_tanh_per_second": np_tanh_rate,
            "kernels": kernels}


# ------------------------------------------------------------------------------------------ main
def _make_problems(rows, folder: Path) -> dict:
    from harness.model import MLP
    from harness.problems import make_problem, save_problem

    paths = {}
    for label, widths, batch, times in rows:
        if label in paths:
            continue
        problem = make_problem(MLP(widths), seed=0, batch=batch, times=times, name=label)
        paths[label] = save_problem(problem, folder / f"problem{len(paths)}.npz")
    return paths


def _format_ms(result) -> str:
    if result is None:
        return "—"
    text = f"{result['median'] * 1e3:.3g} ms"
    if result["compile"] >= 0.05:
        text += f" (+{result['compile']:.1f} s)"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="skip the B = 50 000 rows and the sweeps")
    parser.add_argument("--out", default="reports/scale")
    parser.add_argument("--rows", metavar="TEXT", nargs="+",
                        help="only the table rows whose label contains one of these (and no sweeps)")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw scale.png from --out's results.json (a file written before the sweep "
                             "points had labels of their own is read through the points' problems)")
    parser.add_argument("--grid", type=int, metavar="K", help="measure K cells of the benchmark grid instead")
    parser.add_argument("--seed", type=int, default=0, help="the grid's seed (cell i uses seed + i)")
    parser.add_argument("--isa", nargs="+", choices=("on", "off"), default=["on", "off"],
                        help="AVX-512 on, off or both (default both), for --grid")
    parser.add_argument("--cells", type=int, nargs="+", metavar="I",
                        help="with --grid K: measure only these cells (0-based) of the K drawn")
    parser.add_argument("--report-measured", action="store_true",
                        help="with --grid: write the reports from the cells an interrupted run of the same "
                             "command measured, without measuring more")
    parser.add_argument("--one-thread", action="store_true",
                        help="with --grid: both frameworks on one core (each worker confined to one core, "
                             "and OpenBLAS, OpenMP and XLA's Eigen pool told to use one thread)")
    parser.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "METHOD", "PROBLEM"), help=argparse.SUPPRESS)
    parser.add_argument("--grid-worker", nargs=2, metavar=("FRAMEWORK", "PROBLEM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: expected an integer >= 1")
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.repeats)))
        return 0
    if args.grid_worker:
        _grid_worker(*args.grid_worker, args.repeats)
        return 0
    if args.replot:
        results = json.loads((Path(args.out) / "results.json").read_text())["results"]
        _figure(_sweep_points(results), Path(args.out) / "scale.png")
        if (Path(args.out) / "grid.json").exists():  # and the grid's heatmap from grid.json
            grid = json.loads((Path(args.out) / "grid.json").read_text())
            isas = list(dict.fromkeys(r["avx512"] for r in grid["rows"]))
            _grid_figure(grid["rows"], isas, Path(args.out) / "grid.png")
        return 0
    if args.grid is not None:
        if args.grid < 1:
            parser.error(f"--grid {args.grid}: expected an integer >= 1")
        words = [w for w in (argv if argv is not None else sys.argv[1:]) if w != "--report-measured"]
        command = "python benchmarks/bench_scale.py " + " ".join(words)
        return run_grid(args.grid, args.seed, args.isa, args.repeats, Path(args.out), command.strip(),
                        cells=args.cells, one_thread=args.one_thread, measure=not args.report_measured)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table_rows = [r for r in TABLE if not (args.quick and r[2] >= 50000)]
    if args.rows:
        table_rows = [r for r in table_rows if any(text in r[0] for text in args.rows)]
    sweeps = [] if args.quick or args.rows else BATCH_SWEEP + WIDTH_SWEEP
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); python {platform.python_version()}")
    print(f"DP5, float64, rtol = atol = {RTOL:g}; median of {args.repeats} gradients after a warm-up; "
          "compilation apart in parentheses", flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        paths = _make_problems(table_rows + sweeps, Path(folder))
        jobs = [(r, c) for r in table_rows for c in COLUMNS]
        jobs += [(r, c) for r in sweeps for c in SWEEP_COLUMNS]
        for (label, _widths, _batch, _times), column in jobs:
            framework, method = COLUMNS[column]
            if not _available(framework):
                results.setdefault(label, {})[column] = None
                continue
            result = _run_worker(framework, method, paths[label], args.repeats)
            results.setdefault(label, {})[column] = result
            print(f"  {label:36s} {column:32s} {_format_ms(result)}", flush=True)
    header = "| problem | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|---|" + "---:|" * len(COLUMNS)]
    for label, *_ in table_rows:
        lines.append(f"| {label} | " + " | ".join(_format_ms(results[label].get(c)) for c in COLUMNS) + " |")
    table = "\n".join(lines)
    limit = arithmetic_limit() if _available("harness-compiled") else None
    command = "python benchmarks/bench_scale.py " + " ".join(
        f'"{a}"' if " " in a else a for a in (argv if argv is not None else sys.argv[1:]))
    text = [f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)", "", f"Command: `{command.strip()}`", "",
            table, ""]
    paths_used = {label: results[label].get("harness compiled Backsolve") for label, *_ in table_rows}
    for label, result in paths_used.items():
        if result:
            text.append(f"- {label}, harness compiled: {result['note']}")
    text.append("")
    if limit:
        text.append(
            f"Arithmetic limit: a tight multiply-add loop reaches {limit['fma_loop_gflops']:.1f} GFLOP/s, "
            f"BLAS's 128 x 129 x 256 product on one thread {limit['gemm_gflops']:.1f} GFLOP/s; "
            f"the written-out tanh {limit['tanh_per_second'] / 1e6:.0f} M/s (np.tanh "
            f"{limit['np_tanh_per_second'] / 1e6:.0f} M/s)."
        )
        for name, k in limit["kernels"].items():
            text.append(f"- stage kernel {name}: {k['microseconds']:.1f} µs, {k['gflops']:.2f} GFLOP/s, "
                        f"{k['activations_per_second'] / 1e6:.0f} M activations/s")
    print("\n" + "\n".join(text))
    write_text(out / "table.md", "\n".join(text) + "\n")
    write_text(out / "results.json", json.dumps({"cpu": cpu_model(), "provenance": provenance(), "results": results,
                                                 "limit": limit}, indent=1))
    if not args.rows:  # the figure needs the sweeps
        _figure(results, out / "scale.png")
    return 0


def _sweep_points(results: dict) -> dict:
    """`results` with every sweep point under its own label; in a file written before the sweep points
    had labels of their own, a point is found by its problem (the label without its sweep's name, or the
    table row of the same network, batch and times)."""
    found = dict(results)
    for label, widths, batch, times in BATCH_SWEEP + WIDTH_SWEEP:
        if label in found:
            continue
        same_problem = [label.split(": ", 1)[1]] + [t[0] for t in TABLE if (t[1], t[2], t[3]) == (widths, batch, times)]
        for old in same_problem:
            if old in results:
                found[label] = results[old]
                break
    return found


def _figure(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    from harness.model import MLP

    rows_b = [(label, b) for label, w, b, _ in BATCH_SWEEP if label in results]
    rows_p = [(label, MLP(w).n_params) for label, w, b, _ in WIDTH_SWEEP if label in results]  # 5 H + 2
    panels = ((axes[0], rows_b, "batch size B (MLP 2-3-2)"), (axes[1], rows_p, "parameters P (MLP 2-H-2, B = 500)"))
    for ax, rows, xlabel in panels:
        for column in SWEEP_COLUMNS:
            pts = sorted((x, results[label][column]["median"]) for label, x in rows if results[label].get(column))
            if pts:
                ax.loglog(*zip(*pts), "o-", label=column)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("one gradient (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Cost of one gradient, DP5 rtol = atol = 1e-6 ({cpu_model()})", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)  # atomically


if __name__ == "__main__":
    sys.exit(main())
