"""The first `harness reproduce` in a fresh environment against the numpy path, side by side in one run,
then the compiled code's cold build (wall and CPU time) and a run after it.

Usage:
    python benchmarks/bench_first_run.py [--pairs 3] [--out reports/scale/first_run.json]

A fresh environment is an empty compiled-code cache (HARNESS_AHEAD_OF_TIME_DIR) and an empty numba cache
(NUMBA_CACHE_DIR), both in a temporary folder. Each pair, in alternating order:

- "numpy path": ``HARNESS_COMPILED=0 harness reproduce``;
- "first run": ``harness reproduce`` in a fresh environment (the default, HARNESS_BUILD=background): it
  starts the builder in the background and runs the numpy path (the builder compiles once it has ended);
- "run during the build": the same command again at once, while the builder compiles at the lowest
  priority; the builder is killed when this run ends, so it cannot slow the next measurement.

Then, once: the cold build alone in a fresh environment (``HARNESS_BUILD=wait``, the builder's own record of
its wall and CPU time: numba's compilation and the C compiler), and ``harness reproduce`` after it (what
every later run costs). Each run's wall time is measured here around the whole process. Writes `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness._provenance import cpu_model, provenance

HARNESS = [sys.executable, "-m", "harness.cli", "reproduce"]
CPU: list[float] = []  # CPU seconds of each run timed, in order
DROPPED = ("HARNESS_COMPILED", "HARNESS_AHEAD_OF_TIME", "HARNESS_AHEAD_OF_TIME_DIR", "NUMBA_CACHE_DIR",
           "HARNESS_BUILD")


def _fresh_env(folder: Path, **changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    (folder / "aot").mkdir(parents=True, exist_ok=True)
    (folder / "numba").mkdir(parents=True, exist_ok=True)
    return {**env, "HARNESS_AHEAD_OF_TIME_DIR": str(folder / "aot"), "NUMBA_CACHE_DIR": str(folder / "numba"),
            **changes}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(env: dict, out: Path) -> tuple[float, str]:
    """(wall seconds, the run's line about the compiled code); its CPU seconds go to `CPU` (the run and
    the children it waits for; a background builder is not one of them)."""
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(HARNESS + ["--out", str(out)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    CPU.append(_children_cpu() - cpu)
    if done.returncode != 0:
        raise RuntimeError(f"harness reproduce failed ({done.returncode}): {done.stderr[-500:]}")
    said = [line for line in done.stderr.splitlines() if "compiled" in line]
    return seconds, (said[0] if said else "")


def _kill_builders(aot: Path) -> list[int]:
    """Kill every builder that holds a lock under `aot` (its process group: the C compiler too)."""
    killed = []
    for building in aot.glob("*/building.json"):
        try:
            pid = json.loads(building.read_text())["pid"]
            os.killpg(pid, signal.SIGKILL)
            killed.append(pid)
        except (OSError, ValueError, KeyError):
            pass
    return killed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", default="reports/scale/first_run.json")
    parser.add_argument("--no-cold-build", action="store_true", help="only the pairs (the cold build takes minutes)")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); python {platform.python_version()}", flush=True)
    rows = {"numpy path": [], "first run": [], "run during the build": []}
    cpu = {kind: [] for kind in rows}
    load_at_start = os.getloadavg()
    notes = {}
    with tempfile.TemporaryDirectory(prefix="first-run-") as tmp:
        tmp = Path(tmp)
        for i in range(args.pairs):
            fresh = tmp / f"fresh-{i}"
            order = ["numpy path", "first run", "run during the build"] if i % 2 == 0 else \
                ["first run", "run during the build", "numpy path"]
            for kind in order:
                if kind == "numpy path":
                    env = _fresh_env(tmp / f"numpy-{i}", HARNESS_COMPILED="0")
                else:
                    env = _fresh_env(fresh)
                if kind == "run during the build":
                    # the builder compiles once the run that started it has ended: wait until it does
                    started = time.monotonic()
                    while not any((fresh / "aot").glob("*/build-*")) and time.monotonic() - started < 120:
                        time.sleep(0.2)
                seconds, said = _timed(env, tmp / f"out-{kind.replace(' ', '-')}-{i}")
                notes[kind] = said
                if kind == "run during the build" and not _kill_builders(fresh / "aot"):
                    raise RuntimeError(f"no builder was running during the second run: {said!r}")
                rows[kind].append(seconds)
                cpu[kind].append(CPU[-1])
                print(f"  {kind:22s} {seconds:6.1f} s wall, {CPU[-1]:6.1f} s CPU  {said}", flush=True)
        record, wait_seconds, later, later_cpu = {}, None, None, None
        if not args.no_cold_build:
            folder = tmp / "cold-build"
            env = _fresh_env(folder, HARNESS_BUILD="wait")
            wait_seconds, said = _timed(env, folder / "out")
            record = json.loads(next((folder / "aot").glob("*/module.json")).read_text())
            print(f"  cold build: {record['wall_seconds']} s wall, {record['cpu_seconds']} s CPU "
                  f"(the run that waited for it: {wait_seconds:.1f} s)", flush=True)
            later, said_later = _timed(_fresh_env(folder), folder / "out-later")
            later_cpu = CPU[-1]
            print(f"  a later run: {later:.1f} s wall, {later_cpu:.1f} s CPU {said_later}", flush=True)
    numpy_median, first_median = statistics.median(rows["numpy path"]), statistics.median(rows["first run"])
    during_median = statistics.median(rows["run during the build"])
    result = {
        "cpu": cpu_model(), "provenance": provenance(),
        "command": "python benchmarks/bench_first_run.py " + " ".join(argv or sys.argv[1:]),
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(), "seconds": rows,
        "cpu_seconds": cpu, "median_cpu": {kind: statistics.median(v) for kind, v in cpu.items()},
        "median_numpy_path": numpy_median, "median_first_run": first_median,
        "first_run_over_numpy_path": first_median / numpy_median, "first_run_says": notes.get("first run"),
        "median_run_during_the_build": during_median,
        "run_during_the_build_over_numpy_path": during_median / numpy_median,
        "run_during_the_build_says": notes.get("run during the build"),
        "pairs_first_over_numpy": [f / n for f, n in zip(rows["first run"], rows["numpy path"])],
        "cold_build": record and {"wall_seconds": record["wall_seconds"], "cpu_seconds": record["cpu_seconds"],
                                  "run_that_waited_seconds": wait_seconds},
        "later_run_seconds": later, "later_run_cpu_seconds": later_cpu,
    }
    print(f"first run ÷ numpy path: {first_median:.1f} / {numpy_median:.1f} s = {first_median / numpy_median:.3f}; "
          f"a run during the build ÷ numpy path: {during_median / numpy_median:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_suffix(".tmp")
    scratch.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(scratch, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
