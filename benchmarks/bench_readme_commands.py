"""The README's two commands as a newcomer meets them: a fresh clone, pip's cache empty, timed whole.

Usage:
    python benchmarks/bench_readme_commands.py [--out reports/scale/readme_commands.json] [--skip-ci]
    python benchmarks/bench_readme_commands.py --load 2 [--out reports/scale/readme_commands_loaded.json]
    python benchmarks/bench_readme_commands.py --installers [--out reports/scale/installers.json]

Clones this checkout's HEAD (uncommitted changes are not measured; the file says if there were any)
into a temporary folder and runs there, one after the other:

- the README's first command (the first line of its first ``bash`` block: create a venv, install,
  ``harness reproduce``), with an empty ``PIP_CACHE_DIR`` and an empty compiled-code cache, so
  nothing installed or built earlier on this machine helps it;
- ``.ci/run`` (a fresh venv, the test extras, the README's test command), in a second fresh clone,
  again with pip's cache empty; its own ``install: N s`` and ``tests: N s`` lines are recorded.

With ``--load N``, N other processes keep a core each busy at normal priority for the whole run (each
spins in a Python loop): the same commands on a machine that other jobs share, as CI runners and the
machines here often are.

With ``--installers``, only `.ci/run`'s install is timed (``HARNESS_CI_STOP=install``, no compiled build),
once with uv and once with pip alone (``HARNESS_CI_INSTALLER=pip``), each in a fresh clone with pip's
and uv's caches empty.

Each is timed around the whole process (wall, and the CPU of the process and the children it waits
for), with the load average before and after: the machines here are shared, and a wall time means
little without it. Packages come from wherever pip is configured to fetch them (a local mirror on
some machines, which hides download time; the file records pip's index configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness._io import write_text  # noqa: E402
from harness._provenance import cpu_model, provenance  # noqa: E402

DROPPED = ("HARNESS_COMPILED", "HARNESS_AHEAD_OF_TIME", "HARNESS_AHEAD_OF_TIME_DIR", "NUMBA_CACHE_DIR",
           "HARNESS_BUILD", "PYTHONPATH", "VIRTUAL_ENV", "PIP_CACHE_DIR", "PIP_NO_CACHE_DIR", "UV_CACHE_DIR",
           "UV_NO_CACHE", "HARNESS_CI_INSTALLER", "HARNESS_CI_STOP")


def readme_first_command() -> str:
    """The first line of the README's first ``bash`` block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    if block is None:
        raise SystemExit("README.md has no ```bash block")
    return block.group(1).strip().splitlines()[0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _clone(folder: Path, name: str) -> Path:
    target = folder / name
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def _timed(command: list[str], cwd: Path, env: dict, log: Path) -> dict:
    load_before = os.getloadavg()
    started, cpu = time.perf_counter(), _children_cpu()
    with log.open("w") as out:
        status = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return {"wall_seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(_children_cpu() - cpu, 1),
            "exit_status": status, "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def _fresh_env(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED}
    for name in ("pip-cache", "uv-cache", "aot", "numba"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    # the compiled-code caches live in the clone's environment by default; pointing them at empty
    # folders makes sure no earlier build on this machine is found
    return {**env, "PIP_CACHE_DIR": str(folder / "pip-cache"), "UV_CACHE_DIR": str(folder / "uv-cache"),
            "HARNESS_AHEAD_OF_TIME_DIR": str(folder / "aot"), "NUMBA_CACHE_DIR": str(folder / "numba")}


def _installers(folder: Path) -> dict:
    """`.ci/run`'s install alone, with uv and with pip alone, each in a fresh clone with empty caches."""
    results = {}
    for installer in ("uv", "pip"):
        clone = _clone(folder, f"install-{installer}")
        env = {**_fresh_env(folder / f"env-{installer}"), "HARNESS_CI_INSTALLER": installer,
               "HARNESS_CI_STOP": "install", "HARNESS_COMPILED": "0"}  # no compiled build: the install alone
        print(f"`.ci/run`'s install with {installer}, in a fresh clone with empty caches", flush=True)
        log = folder / f"install-{installer}.log"
        result = _timed(["bash", ".ci/run"], clone, env, log)
        found = re.search(r"^install: (\d+) s$", log.read_text(), flags=re.M)
        result["install_seconds"] = int(found.group(1)) if found else None
        result["pip_fallback"] = "pip installs" in log.read_text()
        results[installer] = result
        print(json.dumps(result), flush=True)
    return results


class _BusyProcesses:
    """N processes that each keep one core busy (a Python loop at normal priority) while the block runs."""

    SPIN = "while True:\n    pass"

    def __init__(self, count: int):
        self.count, self.processes = count, []

    def __enter__(self):
        self.processes = [subprocess.Popen([sys.executable, "-c", self.SPIN]) for _ in range(self.count)]
        time.sleep(5.0 if self.count else 0.0)  # the load average starts to show them
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.kill()
            process.wait()


def _pip_index() -> str:
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "(pip's defaults: PyPI)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "reports" / "scale" / "readme_commands.json"))
    parser.add_argument("--skip-ci", action="store_true", help="time the first command only")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="N other processes keep a core each busy meanwhile (default --out "
                             "reports/scale/readme_commands_loaded.json)")
    parser.add_argument("--installers", action="store_true",
                        help="time only `.ci/run`'s install, with uv and with pip (default --out "
                             "reports/scale/installers.json)")
    args = parser.parse_args(argv)
    if args.installers and args.out == parser.get_default("out"):
        args.out = str(ROOT / "reports" / "scale" / "installers.json")
    if args.load < 0:
        parser.error(f"--load {args.load}: expected a number of busy processes >= 0")
    if args.load and args.out == parser.get_default("out"):
        args.out = str(ROOT / "reports" / "scale" / "readme_commands_loaded.json")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=False).stdout.strip()
    record = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "provenance": provenance(),
              "command": "python benchmarks/bench_readme_commands.py" + (" --skip-ci" if args.skip_ci else "")
              + (" --installers" if args.installers else "") + (f" --load {args.load}" if args.load else ""),
              "uncommitted_changes_not_measured": bool(dirty), "pip_configuration": _pip_index(),
              "busy_processes": args.load}
    if args.installers:
        with tempfile.TemporaryDirectory(prefix="readme-commands-") as scratch:
            record["installers"] = _installers(Path(scratch))
        write_text(Path(args.out), json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
        return 0 if all(r["exit_status"] == 0 for r in record["installers"].values()) else 1
    first = readme_first_command()
    with tempfile.TemporaryDirectory(prefix="readme-commands-") as scratch, _BusyProcesses(args.load):
        folder = Path(scratch)
        clone = _clone(folder, "first")
        print(f"first command, in a fresh clone with pip's cache empty: {first}", flush=True)
        result = _timed(["bash", "-c", first], clone, _fresh_env(folder / "env-first"), folder / "first.log")
        log = (folder / "first.log").read_text()
        lines = log.splitlines()
        result["reproduce_line"] = next((line for line in lines if "total" in line and "training" in line), "")
        record["first_command"] = {"command": first, **result}
        # the run started the compiled code's build in the background: stopped here, so that it does
        # not share the machine with the next measurement
        subprocess.run(["pkill", "-f", str(folder / "env-first" / "aot")], check=False)
        print(json.dumps(record["first_command"]), flush=True)
        if not args.skip_ci:
            clone = _clone(folder, "ci")
            print("`.ci/run` in a fresh clone with pip's cache empty", flush=True)
            result = _timed(["bash", ".ci/run"], clone, _fresh_env(folder / "env-ci"), folder / "ci.log")
            log = (folder / "ci.log").read_text()
            for key in ("install", "tests"):
                found = re.search(rf"^{key}: (\d+) s$", log, flags=re.M)
                result[f"{key}_seconds"] = int(found.group(1)) if found else None
            summary = [line for line in log.splitlines() if re.search(r"\d+ passed", line)]
            result["pytest_summary"] = summary[-1].strip("= ") if summary else ""
            result["failures"] = [line for line in log.splitlines() if line.startswith(("FAILED ", "ERROR "))]
            record["ci_run"] = result
            print(json.dumps(record["ci_run"]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if all(record[k]["exit_status"] == 0 for k in ("first_command", "ci_run") if k in record) else 1


if __name__ == "__main__":
    sys.exit(main())
