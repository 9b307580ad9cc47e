"""Where the resident memory of one tutorial-size gradient goes: peak RSS of fresh processes, step by step.

Usage:
    python benchmarks/bench_memory.py [--repeats 3] [--no-cold] [--no-reproduce] [--rows N ...] [--json]

Every configuration runs in its own fresh Python process (the same interpreter as this script) and
reports its peak resident set size twice: `/proc/self/status` VmHWM, the high-water mark of the
process's own memory since it started, and `resource.getrusage(RUSAGE_SELF).ru_maxrss`. Linux carries
ru_maxrss across the exec that starts the worker, so it is never below this launcher's own resident
size at the moment of the spawn (about 12 MB: this script imports neither numpy nor numba for that
reason); above that the two agree to a few hundred KB. The table shows medians over `--repeats`
processes. The rows build on one another, from a bare interpreter to one gradient of the tutorial's
problem (MLP 2-3-2 tanh, B = 500, DP5, BacksolveAdjoint, rtol 1e-6, atol 1e-4, the problem built by
`seed_problem()`), and each says what it adds to the row it builds on:

- python itself (with the worker's few standard modules); `import numpy, scipy`; `import harness`
  (lazy: nothing else loads);
- `import numba` (numpy included), and numba's floor: one trivial cached `@njit(cache=True)` function
  called, which initialises numba's CPU target (every lowering registry, the runtime); any compiled
  code at all costs this much;
- the harness modules of the gradient path (`harness.problems`, `harness.sensitivity`);
- the compiled kernels loaded (`harness._compiled._load_kernels()`): the module built ahead of time (the
  default; no numba in the process), or numba's just-in-time functions (``HARNESS_AHEAD_OF_TIME=0``);
- one gradient with the numpy path (``HARNESS_COMPILED=0``) and with the compiled path, built ahead of
  time (the default) or just in time (the worker checks that the compiled loop computed it);
- optionally `harness reproduce` (1000 training steps, report and figures), numpy and compiled.

Everything is measured with numba's disk cache warm: one untimed process per compiled configuration
runs first. The cold run (the compiled gradient with empty caches, so the module is built ahead of time
first, in a child process) is reported apart; it uses a temporary ``NUMBA_CACHE_DIR`` and leaves the
real caches alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from harness._provenance import cpu_model  # standard library only: the launcher imports no numpy

GRADIENT = """
import sys
from harness.problems import seed_problem
from harness.sensitivity import gradient
import harness._compiled as compiled
result = gradient(seed_problem(), engine="BacksolveAdjoint", solver="DP5", rtol=1e-6, atol=1e-4)
extra["loop_runs"] = compiled.loop_runs()
extra["loss"] = float(result.loss)
extra["numba_imported"] = "numba" in sys.modules
"""

# The same gradient by diffrax (its BacksolveAdjoint with Dopri5, through the harness's peer adapter,
# which solves the same problem): the peer the memory target compares with.
DIFFRAX_GRADIENT = """
from harness.problems import seed_problem
from harness.sensitivity import gradient
result = gradient(seed_problem(), engine="diffrax:BacksolveAdjoint", solver="DP5", rtol=1e-6, atol=1e-4)
extra["loss"] = float(result.loss)
"""

REPRODUCE = """
import contextlib, io
from harness.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    extra["exit"] = main(["reproduce", "--out", scratch + "/reproduce"])
"""

# A module with one trivial cached function: what any compiled code costs once numba's CPU target is up.
FLOOR_MODULE = """
from numba import njit


@njit(cache=True)
def plus_one(x):
    return x + 1.0
"""

# (label, code run in the fresh process, environment changes, needs numba's cache warmed, the row it
# builds on: the table shows the difference to that row)
CONFIGURATIONS = [
    ("python (with the worker's json, argparse, subprocess)", "pass", {}, False, None),
    ("import numpy, scipy", "import numpy, scipy", {}, False, "python (with the worker's json, argparse, subprocess)"),
    ("import harness", "import harness", {}, False, "python (with the worker's json, argparse, subprocess)"),
    ("import numba", "import numpy, numba", {}, False, "import numpy, scipy"),
    ("numba floor: one trivial cached function called",
     "import numpy, numba, floor_kernel\nfloor_kernel.plus_one(1.0)", {}, True, "import numba"),
    ("harness gradient modules (problems, sensitivity)", "import harness.problems, harness.sensitivity", {},
     False, "import numpy, scipy"),
    ("+ the compiled kernels loaded (built ahead of time: no numba)",
     "import harness.problems, harness.sensitivity\nimport harness._compiled as c\nc._load_kernels()", {}, True,
     "harness gradient modules (problems, sensitivity)"),
    ("+ numba's just-in-time kernels loaded (HARNESS_AHEAD_OF_TIME=0)",
     "import harness.problems, harness.sensitivity\nimport harness._compiled as c\nc._load_kernels()",
     {"HARNESS_AHEAD_OF_TIME": "0"}, True, "harness gradient modules (problems, sensitivity)"),
    ("one gradient, numpy path (HARNESS_COMPILED=0)", GRADIENT, {"HARNESS_COMPILED": "0"}, False,
     "harness gradient modules (problems, sensitivity)"),
    ("one gradient, compiled path (default: built ahead of time)", GRADIENT, {}, True,
     "+ the compiled kernels loaded (built ahead of time: no numba)"),
    ("one gradient, compiled path, just in time (HARNESS_AHEAD_OF_TIME=0)", GRADIENT,
     {"HARNESS_AHEAD_OF_TIME": "0"}, True, "+ numba's just-in-time kernels loaded (HARNESS_AHEAD_OF_TIME=0)"),
]
PEER_CONFIGURATIONS = [
    ("one gradient, diffrax (BacksolveAdjoint, Dopri5)", DIFFRAX_GRADIENT, {}, False,
     "harness gradient modules (problems, sensitivity)"),
]
REPRODUCE_CONFIGURATIONS = [
    ("harness reproduce (1000 steps, figures), numpy path", REPRODUCE, {"HARNESS_COMPILED": "0"}, False,
     "one gradient, numpy path (HARNESS_COMPILED=0)"),
    ("harness reproduce (1000 steps, figures), compiled path", REPRODUCE, {}, True,
     "one gradient, compiled path (default: built ahead of time)"),
]


def _version(distribution: str) -> str:
    # read from the installed metadata: importing the package would grow this process, and a child's
    # ru_maxrss starts at its parent's resident size (see the module docstring)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------- worker
def _worker(code: str, scratch: str) -> dict:
    """Runs in the fresh process: `code`, then this process's peak resident memory."""
    import resource

    started = time.perf_counter()
    extra: dict = {}
    exec(compile(code, "<configuration>", "exec"), {"extra": extra, "scratch": scratch})
    seconds = time.perf_counter() - started
    status = {}
    with open("/proc/self/status") as lines:
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                status[key] = int(value.split()[0]) / 1024  # kB -> MB
    # ru_maxrss is in kilobytes on Linux
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"maxrss_mb": maxrss, "hwm_mb": status.get("VmHWM"), "rss_mb": status.get("VmRSS"),
            "modules": len(sys.modules), "seconds": seconds, **extra}


def _run(code: str, env_changes: dict, scratch: str, cache_dir: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HARNESS_COMPILED", "NUMBA_CACHE_DIR", "HARNESS_AHEAD_OF_TIME", "HARNESS_AHEAD_OF_TIME_DIR")}
    env.update(env_changes)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [scratch, env.get("PYTHONPATH", "")]))
    env.setdefault("MPLBACKEND", "Agg")
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", code, "--scratch", scratch]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"a configuration failed: {last}\n{code}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(label: str, result: dict) -> None:
    """A compiled-gradient row must really have run the compiled loop (and a numpy row must not)."""
    if "loop_runs" in result:
        compiled = "compiled" in label
        if (result["loop_runs"] == 1) != compiled:
            raise SystemExit(f"{label}: the compiled loop ran {result['loop_runs']} times, expected "
                             f"{1 if compiled else 0}")


def measure(configurations, repeats: int, scratch: str, cold: bool) -> tuple[list[dict], dict | None]:
    # warm numba's disk cache first (one untimed process per compiled configuration)
    for _label, code, env, compiled, _ in configurations:
        if compiled:
            _run(code, env, scratch)
    rows = []
    for label, code, env, _compiled, builds_on in configurations:
        runs = [_run(code, env, scratch) for _ in range(repeats)]
        for run in runs:
            _check(label, run)
        rows.append({
            "label": label,
            "builds_on": builds_on,
            "maxrss_mb": statistics.median(r["maxrss_mb"] for r in runs),
            "hwm_mb": statistics.median(r["hwm_mb"] for r in runs),
            "modules": runs[0]["modules"],
            "seconds": statistics.median(r["seconds"] for r in runs),
            "runs": runs,
        })
    cold_row = None
    if cold:
        with tempfile.TemporaryDirectory() as empty_cache:
            cold_row = _run(GRADIENT, {}, scratch, cache_dir=empty_cache)
        _check("compiled", cold_row)
        cold_row["label"] = ("one gradient, compiled path, empty caches (builds the module ahead of time in a "
                             "child process, whose memory is not this row's)")
    return rows, cold_row


def table(rows: list[dict], cold_row: dict | None) -> str:
    lines = ["| # | configuration | peak RSS (VmHWM) | ru_maxrss | added to row | modules | seconds |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    number = {row["label"]: i for i, row in enumerate(rows, 1)}
    for i, row in enumerate(rows, 1):
        base = number.get(row["builds_on"])
        added = "" if base is None else f"+{row['hwm_mb'] - rows[base - 1]['hwm_mb']:.1f} MB to {base}"
        lines.append(f"| {i} | {row['label']} | {row['hwm_mb']:.1f} MB | {row['maxrss_mb']:.1f} MB | {added} | "
                     f"{row['modules']} | {row['seconds']:.2f} |")
    if cold_row is not None:
        lines.append("")
        lines.append(f"Cold run, apart: {cold_row['label']}: {cold_row['hwm_mb']:.1f} MB peak RSS "
                     f"(ru_maxrss {cold_row['maxrss_mb']:.1f} MB), {cold_row['seconds']:.1f} s.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per configuration (median)")
    parser.add_argument("--no-cold", action="store_true", help="skip the run with an empty numba cache")
    parser.add_argument("--no-reproduce", action="store_true", help="skip the `harness reproduce` rows")
    parser.add_argument("--rows", type=int, nargs="+", metavar="N",
                        help="measure only these rows of the table (numbered from 1)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--no-peers", action="store_true", help="skip the diffrax row")
    parser.add_argument("--out", type=Path, help="also write the results (with their provenance) to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args.worker, args.scratch)))
        return 0
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    configurations = (CONFIGURATIONS + ([] if args.no_peers else PEER_CONFIGURATIONS)
                      + ([] if args.no_reproduce else REPRODUCE_CONFIGURATIONS))
    if args.rows:
        bad = [n for n in args.rows if not 1 <= n <= len(configurations)]
        if bad:
            parser.error(f"--rows: no row {bad[0]}; the rows are 1 to {len(configurations)}")
        configurations = [configurations[n - 1] for n in args.rows]
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "floor_kernel.py").write_text(textwrap.dedent(FLOOR_MODULE))
        rows, cold_row = measure(configurations, args.repeats, scratch, not args.no_cold)
    versions = f"python {platform.python_version()}, " + ", ".join(
        f"{name} {_version(name)}" for name in ("numpy", "scipy", "numba", "llvmlite"))
    results = {"cpu": cpu_model(), "versions": versions, "rows": rows, "cold": cold_row}
    by_label = {row["label"]: row for row in rows}
    compiled, peer = (by_label.get("one gradient, compiled path (default: built ahead of time)"),
                      by_label.get("one gradient, diffrax (BacksolveAdjoint, Dopri5)"))
    if compiled and peer:
        results["compiled_gradient_over_diffrax"] = compiled["hwm_mb"] / peer["hwm_mb"]
    if args.out is not None:
        from harness._io import write_text  # after the measurements: these import more than the launcher
        from harness._provenance import provenance

        argv_text = " ".join(argv if argv is not None else sys.argv[1:])
        record = {**results, "provenance": provenance(), "command": f"python benchmarks/bench_memory.py {argv_text}"}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(record, indent=1) + "\n")
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); {versions}")
    print(f"Peak resident memory of fresh processes, median of {args.repeats}, numba's cache warm:\n")
    print(table(rows, cold_row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
