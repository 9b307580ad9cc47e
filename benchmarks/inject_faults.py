"""Inject faults into real `harness` runs and check that each ends cleanly and loses nothing.

Every fault is injected into a subprocess running the command line, at a point found by a handshake
(a line on stdout, a file appearing), never by a guessed sleep. For each fault the script records the
exit status and the message, checks that the message is one line without a traceback, and that
running the same command again ends bit for bit where an uninterrupted run ends (θ and every logged
log-likelihood for `reproduce`; every number of results.json but timings for `compare`).

    python benchmarks/inject_faults.py            # the full set, on the tutorial's problem
    python benchmarks/inject_faults.py --quick    # the set the test suite runs (tests/test_faults.py)
    python benchmarks/inject_faults.py --quick --only sigint_figures --repeat 30   # one, 30 times

It lists every scenario with its exit status and first line, ends with "N faults injected: N of N
survived, nothing lost" (or says which did not survive) and exits with status 0 only if every fault
survived. The full set writes its outcomes to reports/faults/results.json (`--results PATH` for
another place), with the CPU and the command, for the docs to quote.

Besides interrupts, kills, full disks and closed pipes, the scenarios cover (`ROBUST_SCENARIOS`):
SIGTERM at each phase of reproduce, compare and gradcheck; checkpoints edited, forged with their
digest, truncated or overwritten; a zip bomb, a text file, complex data and problem files float64
cannot solve; a gradient whose memory cannot fit (under `ulimit -v`); an ascii stdout, /dev/full,
an invalid MPLBACKEND; a 200 KB tmpfs disk (or a file-size limit where no tmpfs can be mounted);
Ctrl-C sent to the process group of a run with Dask workers. Every child starts with SIGINT's
default action, so the script (and the tests that run it) work when started with SIGINT ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HARNESS = [sys.executable, "-m", "harness.cli"]
RESULTS = Path(__file__).resolve().parents[1] / "reports" / "faults" / "results.json"
TIMEOUT = 300  # seconds: a handshake that takes longer is a hang, reported as a failure
# One BLAS thread everywhere: the in-process and Dask runs of `compare` are then bit-identical
# whatever the machine (multi-threaded BLAS reductions can differ in the last bit).
BLAS_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

COMPARE_TOML = """
title = "fault injection"

[problem]
name = "seed"
batch = 8

[grid]
engines = ["BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint"]
solvers = ["DP5", "BS3"]
tolerances = [1e-4, 1e-6, 1e-8]
memory = false

[reference]
engine = "ForwardSensitivity"
solver = "DP8"
rtol = 1e-10
atol = 1e-10

[training]
engines = ["InterpolatingAdjoint"]
steps = {steps}
log_every = 5

[plots]
figures = ["heatmap", "work_precision", "training"]
"""


def with_limits(limits=None) -> None:
    """In a child before it starts: SIGINT's default action (a script's background job, and so a
    suite started with `nohup ... &`, inherits SIGINT ignored, and Ctrl-C must reach the child), and
    the resource limits asked for. Under RLIMIT_FSIZE, SIGXFSZ is ignored so that a write beyond the
    limit fails with EFBIG (as a full disk fails with ENOSPC) instead of killing the process."""
    import resource

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    for which, value in (limits or {}).items():
        resource.setrlimit(which, (value, value))
        if which == resource.RLIMIT_FSIZE:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _dask_workers(pid: int, psutil, timeout: float = 60.0) -> list:
    """The Dask worker processes (multiprocessing children) of the process `pid`, polled until both
    exist or `timeout` seconds pass; [] if the process ended first."""
    deadline = time.monotonic() + timeout
    workers = []
    while time.monotonic() < deadline:
        try:
            workers = [p for p in psutil.Process(pid).children(recursive=True)
                       if "multiprocessing" in " ".join(p.cmdline())]
        except psutil.Error:
            return workers
        if len(workers) >= 2:
            return workers
        time.sleep(0.05)
    return workers


class Run:
    """A `harness` subprocess whose stdout lines can be waited for."""

    def __init__(self, args, env=None, stdout=None, limits=None, new_session=False):
        """`stdout`: None to read it here, or a file object the process writes to instead.
        `limits`: {resource.RLIMIT_*: bytes} set in the child before it starts (`with_limits`).
        `new_session`: the child leads its own process group (signalled as a terminal's Ctrl-C is)."""
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            HARNESS + [str(a) for a in args], stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE, text=True, env={**os.environ, **BLAS_ENV, **(env or {})},
            preexec_fn=lambda: with_limits(limits), start_new_session=new_session,
        )
        self.lines: queue.Queue = queue.Queue()
        self.stdout: list[str] = []
        self.stderr = ""
        self._reader = None
        if stdout is None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, text: str) -> bool:
        """Block until a stdout line contains `text`; False if the process ended first."""
        deadline = time.perf_counter() + TIMEOUT
        while time.perf_counter() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                return False
            if text in line:
                return True
        return False

    def wait_for_file(self, path: Path, pattern: str | None = None) -> bool:
        """Block until `path` exists (or holds a file matching `pattern`); False if the process ended."""
        deadline = time.perf_counter() + TIMEOUT
        while time.perf_counter() < deadline:
            if (path.exists() if pattern is None else path.is_dir() and any(path.glob(pattern))):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.005)
        return False

    def signal(self, signum) -> float:
        self.signalled = time.perf_counter()
        self.proc.send_signal(signum)
        return self.signalled

    def finish(self) -> int:
        if self._reader is None:
            _, self.stderr = self.proc.communicate(timeout=TIMEOUT)
        else:  # stdout belongs to the reader thread; communicate() would race it for lines
            self.stderr = self.proc.stderr.read()
            self.proc.wait(timeout=TIMEOUT)
            self._reader.join(timeout=10)
        self.ended = time.perf_counter()
        return self.proc.returncode

    @property
    def message(self) -> str:
        return self.stderr.strip()


@dataclass
class Outcome:
    """One injected fault: what it did and whether the harness survived it."""

    name: str
    exit_status: int | None = None
    message: str = ""
    problems: list[str] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.problems.append(what)

    @property
    def survived(self) -> bool:
        return not self.problems


def one_line(outcome: Outcome, run: Run, *words: str) -> None:
    lines = run.message.splitlines()
    outcome.message = run.message
    outcome.expect(len(lines) == 1, f"stderr has {len(lines)} lines, expected 1: {run.message[-500:]!r}")
    outcome.expect("Traceback" not in run.stderr, "a traceback was printed")
    for word in words:
        outcome.expect(word in run.message, f"the message does not say {word!r}")


def strict_json(path: Path):
    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def reproduce_result(out: Path):
    """What must be bit-identical between two reproduce runs: status, θ and the logged values."""
    data = strict_json(out / "history.json")
    return data["status"], data["theta"], [(r["step"], r["loglik_per_datapoint"]) for r in data["history"]]


def compare_result(out: Path):
    try:
        from harness.compare.experiment import comparable
    except ImportError:  # the module may be private in later versions
        from harness.compare._experiment import comparable
    return comparable(strict_json(out / "results.json"))


def no_half_written(outcome: Outcome, out: Path) -> None:
    """No temporary file left, and every JSON present parses."""
    if not out.exists():
        return
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    outcome.expect(not leftovers, f"temporary files left: {leftovers}")
    for path in out.glob("*.json"):
        try:
            strict_json(path)
        except ValueError as err:
            outcome.problems.append(f"{path.name} is not valid JSON: {err}")


# The quick set (the test suite's); the full set adds the slow ones and repeats the interrupts and the
# full disk at other random points.
QUICK = ("sigint_startup", "sigint_training", "sigint_figures", "sigkill_training", "non_finite_problem",
         "disk_full", "read_only", "closed_pipe", "sigint_compare_startup", "sigint_compare_cell",
         "dask_worker_killed")
# Signals at each phase, damaged inputs and checkpoints, odd environments (`ROBUST_SCENARIOS`); the
# quick set takes those that run in seconds.
ROBUST_QUICK = ("sigterm_training", "sigterm_figures", "sigterm_gradcheck", "sigkill_figures",
                "checkpoint_forged_step", "checkpoint_truncated", "zip_bomb", "not_an_npz", "complex_data",
                "growing_decay", "huge_decay", "close_times", "tiny_tolerance", "augmented_twice",
                "memory_refused", "full_stdout", "bogus_backend", "ascii_reproduce", "tiny_disk")
ROBUST_FULL = ("sigterm_startup", "sigterm_training", "sigterm_figures", "sigterm_compare_startup",
               "sigterm_compare_cell", "sigterm_gradcheck", "sigint_gradcheck", "sigkill_figures",
               "checkpoint_forged_step", "checkpoint_forged_digest", "checkpoint_truncated", "checkpoint_garbage",
               "zip_bomb", "not_an_npz", "complex_data", "growing_decay", "huge_decay", "close_times",
               "tiny_tolerance", "augmented_twice", "memory_refused", "gradcheck_memory", "ascii_reproduce",
               "ascii_gradcheck", "ascii_compare", "full_stdout", "bogus_backend", "tiny_disk", "dask_ctrl_c")
FULL = QUICK + ("sigint_runaway_solve", "diverging_lr", "sigint_training", "sigint_figures", "disk_full",
                "sigint_compare_cell")
QUICK = QUICK + ROBUST_QUICK
FULL = FULL + ROBUST_FULL


class Faults:
    """The scenarios, sharing a work folder, the problem and the uninterrupted references."""

    def __init__(self, work: Path, quick: bool, rng: random.Random):
        self.work, self.quick, self.rng = work, quick, rng
        self.n = 0
        if quick:
            # 50 initial states instead of 500 and fewer steps: each run takes seconds
            subprocess.run([sys.executable, "-c", (
                "import sys, harness; harness.save_problem(harness.seed_problem(batch=50), sys.argv[1])"
            ), str(work / "small.npz")], check=True, env={**os.environ, **BLAS_ENV})
            self.problem = ["--problem-file", work / "small.npz"]
            self.steps = 150
        else:
            self.problem, self.steps = [], 400
        self._reference = None
        self._compare_reference = None
        self.compare_toml = work / "faults.toml"
        self.compare_toml.write_text(COMPARE_TOML.replace("{steps}", "30" if quick else "100"))

    def timed(self, outcome: Outcome, what: str, seconds: float, limit: float) -> None:
        """Record a duration; the full set also requires it under `limit` (the quick set, which the
        test suite runs on shared machines, does not assert timings)."""
        outcome.timings.append(f"{seconds:.1f} s {what}")
        if not self.quick:
            outcome.expect(seconds < limit, f"took {seconds:.1f} s {what}, expected under {limit} s")

    def out(self, name: str) -> Path:
        self.n += 1
        return self.work / f"{self.n:02d}-{name}"

    def reproduce_args(self, out: Path, *extra):
        return ["reproduce", *self.problem, "--steps", self.steps, "--out", out, *extra]

    def reference(self):
        if self._reference is None:
            out = self.out("reference")
            run = Run(self.reproduce_args(out))
            if run.finish() != 0:
                raise RuntimeError(f"the uninterrupted reference run failed: {run.message}")
            self._reference = reproduce_result(out)
        return self._reference

    def rerun_matches(self, outcome: Outcome, out: Path, resumed: bool = True, args=None) -> None:
        """Run the same command again (no fault): it must finish, resume if asked, match the reference."""
        run = Run(args or self.reproduce_args(out))
        code = run.finish()
        outcome.expect(code == 0, f"the rerun exited {code}: {run.message}")
        if code != 0:
            return
        if resumed:
            outcome.expect(any("resumed from the checkpoint" in line for line in run.stdout),
                           "the rerun did not resume from the checkpoint")
        outcome.expect(not (out / "checkpoint.npz").exists(), "the checkpoint was left after a finished run")
        outcome.expect(reproduce_result(out) == self.reference(), "the rerun differs from an uninterrupted run")
        no_half_written(outcome, out)

    # -- reproduce ------------------------------------------------------------------------------

    def sigint_startup(self) -> Outcome:
        outcome, out = Outcome("SIGINT during start-up (reproduce)"), self.out("sigint-startup")
        started = self.work / f"started-{self.n}"
        run = Run(self.reproduce_args(out), env={"HARNESS_TEST_STARTED_FILE": str(started)})
        run.wait_for_file(started)
        run.signal(signal.SIGINT)
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 130, "exit status is not 130")
        one_line(outcome, run, "interrupted")
        self.rerun_matches(outcome, out, resumed=False)
        return outcome

    def sigint_training(self) -> Outcome:
        outcome, out = Outcome("SIGINT inside a training step (reproduce)"), self.out("sigint-training")
        run = Run(self.reproduce_args(out))
        # the first periodic checkpoint is written at step 50; random extra steps in the full set
        run.wait_for_file(out / "checkpoint.npz")
        if not self.quick:
            run.wait_for_line(f"step: {self.rng.choice([100, 150, 200]):4d}")
            time.sleep(self.rng.uniform(0, 0.2))  # a random point inside the following steps
        run.signal(signal.SIGINT)
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 130, "exit status is not 130")
        self.timed(outcome, "to stop", run.ended - run.signalled, 2)
        one_line(outcome, run, "interrupted", "resume")
        outcome.expect((out / "checkpoint.npz").exists(), "no checkpoint was saved")
        self.rerun_matches(outcome, out)
        return outcome

    def sigint_figures(self) -> Outcome:
        outcome, out = Outcome("SIGINT while figures are written (reproduce)"), self.out("sigint-figures")
        run = Run(self.reproduce_args(out))
        run.wait_for_line("Writing the figures")
        if not self.quick:
            time.sleep(self.rng.uniform(0, 0.5))
        run.signal(signal.SIGINT)
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 130, "exit status is not 130")
        one_line(outcome, run, "interrupted", "resume")
        outcome.expect((out / "checkpoint.npz").exists(), "the checkpoint was deleted before the outputs were written")
        self.rerun_matches(outcome, out)
        return outcome

    def sigkill_training(self) -> Outcome:
        outcome, out = Outcome("SIGKILL during training (reproduce)"), self.out("sigkill")
        run = Run(self.reproduce_args(out))
        run.wait_for_file(out / "checkpoint.npz")
        run.signal(signal.SIGKILL)
        outcome.exit_status = run.finish()
        outcome.message = "(killed: no message possible)"
        outcome.expect(outcome.exit_status == -signal.SIGKILL, "the process was not killed")
        # a kill can land inside a checkpoint write; its temporary file is the only trace allowed
        for tmp in out.glob(".checkpoint.npz.*.tmp"):
            tmp.unlink()
        self.rerun_matches(outcome, out)
        return outcome

    def sigint_runaway_solve(self) -> Outcome:
        outcome = Outcome("SIGINT inside a runaway solve (reproduce --lr 1e6, numpy path)")
        out = self.out("sigint-runaway")
        # the numpy path, which checks for signals at every step (a compiled solve is one call that
        # Python's signal handling cannot enter); the step budget now ends this runaway by itself within
        # a second or two, so the signal goes in as soon as step 1 starts, and a run that ended by itself
        # first must have said so in one line and kept its checkpoint
        run = Run(["reproduce", *self.problem, "--lr", "1e6", "--steps", 20, "--out", out],
                  env={"HARNESS_COMPILED": "0"})
        run.wait_for_line("step:    0")  # step 1 then runs with diverged weights: a solve that runs away
        time.sleep(0.1 if self.quick else self.rng.uniform(0.0, 0.3))
        ended_first = run.proc.poll() is not None
        run.signal(signal.SIGINT)
        outcome.exit_status = run.finish()
        if ended_first:
            outcome.expect(outcome.exit_status == 1, "ended by itself, but not with exit status 1")
            one_line(outcome, run, "diverged")
        else:
            outcome.expect(outcome.exit_status == 130, "exit status is not 130")
            self.timed(outcome, "to stop", run.ended - run.signalled, 2)
            one_line(outcome, run, "interrupted")
        outcome.expect((out / "checkpoint.npz").exists(), "no checkpoint was saved")
        return outcome

    def diverging_lr(self) -> Outcome:
        outcome, out = Outcome("a diverging learning rate (reproduce --lr 1e6 --steps 20)"), self.out("diverging")
        args = ["reproduce", *self.problem, "--lr", "1e6", "--steps", 20, "--out", out]
        run = Run(args)
        outcome.exit_status = run.finish()
        seconds = run.ended - run.started
        outcome.expect(outcome.exit_status == 1, "exit status is not 1")
        self.timed(outcome, "in all", seconds, 30)
        one_line(outcome, run, "diverged at step", "lower --lr")
        first = reproduce_result(out)
        outcome.expect(first[0] == "diverged", "history.json does not say diverged")
        outcome.expect((out / "checkpoint.npz").exists(), "the checkpoint of the last good step was not kept")
        again = Run(args)
        outcome.expect(again.finish() == 1, "the rerun did not end the same way")
        outcome.expect(reproduce_result(out) == first, "the rerun differs")
        no_half_written(outcome, out)
        return outcome

    def non_finite_problem(self) -> Outcome:
        """States scaled by 1e200: the loss overflows; must be a failure, never exit 0 with -inf."""
        outcome, out = Outcome("a problem whose loss overflows (states x 1e200)"), self.out("overflow")
        path = self.work / "huge.npz"
        subprocess.run([sys.executable, "-c", (
            "import sys, harness\n"
            "p = harness.seed_problem(batch=20)\n"
            "huge = harness.Problem(p.model, p.theta, p.z0 * 1e200, p.t0, p.times, p.data * 1e200, 'huge')\n"
            "harness.save_problem(huge, sys.argv[1])"
        ), str(path)], check=True)
        args = ["reproduce", "--problem-file", path, "--steps", 10, "--out", out]
        run = Run(args)
        outcome.exit_status = run.finish()
        if outcome.exit_status == 2:  # refused as input is as good as a failure: nothing reported as success
            one_line(outcome, run)
            return outcome
        outcome.expect(outcome.exit_status == 1, "exit status is not 1")
        one_line(outcome, run)
        outcome.expect(not any("RuntimeWarning" in line for line in run.stderr.splitlines()), "raw warnings")
        if (out / "history.json").exists():
            outcome.expect(reproduce_result(out)[0] != "finished", "reported as finished")
        no_half_written(outcome, out)
        return outcome

    def disk_full(self) -> Outcome:
        outcome, out = Outcome("a full disk while the report is written (ENOSPC)"), self.out("enospc")
        target = "report.md" if self.quick else self.rng.choice(["report.md", "history.json", "training_curve.png"])
        run = Run(self.reproduce_args(out), env={"HARNESS_TEST_WRITE_FAULT": f"ENOSPC:{target}"})
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 1, "exit status is not 1")
        one_line(outcome, run, "No space left")
        outcome.expect(not (out / target).exists(), f"{target} was written")
        outcome.expect((out / "checkpoint.npz").exists(), "the checkpoint was not kept")
        no_half_written(outcome, out)
        self.rerun_matches(outcome, out)
        return outcome

    def read_only(self) -> Outcome:
        outcome, out = Outcome("a read-only output folder"), self.out("read-only")
        out.mkdir()
        env = {}
        if os.geteuid() == 0:
            env = {"HARNESS_TEST_WRITE_FAULT": "EROFS:*"}  # root writes through permission bits
        else:
            out.chmod(0o555)
        run = Run(self.reproduce_args(out), env=env)
        outcome.exit_status = run.finish()
        out.chmod(0o755)
        outcome.expect(outcome.exit_status == 2, "exit status is not 2")
        one_line(outcome, run, "not writable")
        outcome.expect(not any(out.iterdir()), "files were left in the folder")
        self.rerun_matches(outcome, out, resumed=False)
        return outcome

    def closed_pipe(self) -> Outcome:
        outcome, out = Outcome("a closed pipe (reproduce | head -1)"), self.out("pipe")
        # reproduce | head -1: a pipe whose reader exits after the first line
        reader = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        run = Run(self.reproduce_args(out), stdout=reader.stdin)
        reader.stdin.close()
        reader.wait(timeout=TIMEOUT)
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 1, "exit status is not 1")
        one_line(outcome, run, "stdout was closed")
        outcome.expect((out / "report.md").exists(), "the report was not written")
        outcome.expect(not (out / "checkpoint.npz").exists(), "the checkpoint was left")
        outcome.expect(reproduce_result(out) == self.reference(), "the results differ from an uninterrupted run")
        no_half_written(outcome, out)
        return outcome

    # -- compare --------------------------------------------------------------------------------

    def compare_reference(self):
        if self._compare_reference is None:
            out = self.out("compare-reference")
            run = Run(["compare", self.compare_toml, "--out", out])
            if run.finish() != 0:
                raise RuntimeError(f"the uninterrupted compare run failed: {run.message}")
            self._compare_reference = compare_result(out)
        return self._compare_reference

    def compare_rerun_matches(self, outcome: Outcome, out: Path) -> None:
        run = Run(["compare", self.compare_toml, "--out", out])
        code = run.finish()
        outcome.expect(code == 0, f"the rerun exited {code}: {run.message}")
        if code == 0:
            outcome.expect(compare_result(out) == self.compare_reference(),
                           "the rerun differs from an uninterrupted run")
        no_half_written(outcome, out)

    def sigint_compare(self, when: str) -> Outcome:
        outcome = Outcome(f"SIGINT {when} (compare)")
        out = self.out("compare-sigint")
        started = self.work / f"started-{self.n}"
        run = Run(["compare", self.compare_toml, "--out", out], env={"HARNESS_TEST_STARTED_FILE": str(started)})
        if when == "during start-up":
            run.wait_for_file(started)
        else:  # inside a cell: the first finished cell is stored, the next ones are computing
            run.wait_for_file(out / "cells", "*.json")
            if not self.quick:
                time.sleep(self.rng.uniform(0, 1.0))
        run.signal(signal.SIGINT)
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 130, "exit status is not 130")
        self.timed(outcome, "to stop", run.ended - run.signalled, 2)
        one_line(outcome, run, "interrupted")
        self.compare_rerun_matches(outcome, out)
        return outcome

    def dask_worker_killed(self) -> Outcome:
        outcome = Outcome("a Dask worker killed mid-run (compare --workers 2)")
        try:
            import distributed  # noqa: F401
            import psutil
        except ImportError:
            outcome.message = "skipped: the dask extra is not installed"
            return outcome
        # On a loaded machine the remaining cells (milliseconds each) may all finish before this
        # process is scheduled again after the first cell appears, leaving nothing to kill: the
        # workers are found while the cluster starts, and a run the kill came too late for is
        # repeated (a fresh folder), so the fault is always injected or the scenario says it was not.
        for attempt in range(3):
            out = self.out(f"dask-kill-{attempt}")
            run = Run(["compare", self.compare_toml, "--out", out, "--workers", 2])
            workers = _dask_workers(run.proc.pid, psutil)
            run.wait_for_file(out / "cells", "*.json")
            killed = False
            for worker in workers[-1:]:
                try:
                    worker.kill()
                    killed = True
                except psutil.Error:
                    pass
            outcome.exit_status = run.finish()
            if killed:
                break
        outcome.expect(killed, "no worker process was alive to kill after the first cell (3 attempts)")
        outcome.message = run.message or "(finished)"
        outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}: {run.message}")
        if outcome.exit_status == 0:
            outcome.expect(compare_result(out) == self.compare_reference(),
                           "the results differ from an in-process run")
        return outcome

    def scenario(self, key: str):
        if key in ROBUST_SCENARIOS:
            return lambda: ROBUST_SCENARIOS[key](self)
        if key in CACHE_FAULTS:  # the compiled-code cache's scenarios (below the class)
            return lambda: CACHE_FAULTS[key](self)
        return {
            "sigint_startup": self.sigint_startup,
            "sigint_training": self.sigint_training,
            "sigint_figures": self.sigint_figures,
            "sigkill_training": self.sigkill_training,
            "non_finite_problem": self.non_finite_problem,
            "disk_full": self.disk_full,
            "read_only": self.read_only,
            "closed_pipe": self.closed_pipe,
            "sigint_compare_startup": lambda: self.sigint_compare("during start-up"),
            "sigint_compare_cell": lambda: self.sigint_compare("inside a cell"),
            "dask_worker_killed": self.dask_worker_killed,
            "sigint_runaway_solve": self.sigint_runaway_solve,
            "diverging_lr": self.diverging_lr,
        }[key]

    def run(self, key, scenario) -> Outcome:
        """One scenario; an exception in the script itself counts as a fault not survived."""
        try:
            return scenario()
        except Exception as err:  # noqa: BLE001 - reported, never hidden
            return Outcome(key, problems=[f"the injection itself failed: {type(err).__name__}: {err}"])


# -- robustness: signals at each phase, damaged inputs and checkpoints, odd environments -----------
# Each scenario is a function of the shared `Faults` (its work folder, problem and references), so
# that scenarios added by other parts of the code base sit in blocks of their own.

def _make_problem_file(faults: Faults, name: str, code: str) -> Path:
    """A problem file made by `code` (Python, with `p` the seed problem of 20 states as arrays, a
    dict, and `np`), written with numpy.savez to the work folder."""
    path = faults.work / f"{name}.npz"
    subprocess.run([sys.executable, "-c", (
        "import sys, numpy as np, harness\n"
        "harness.save_problem(harness.seed_problem(batch=20), sys.argv[1])\n"
        "p = dict(np.load(sys.argv[1]))\n" + code + "\n"
        "np.savez(sys.argv[1], **p)"
    ), str(path)], check=True, env={**os.environ, **BLAS_ENV})
    return path


def _refused(faults: Faults, title: str, args, *words, env=None, limits=None) -> Outcome:
    """A command that must refuse its input: exit 2, one line naming the problem, no output folder
    left behind (when it was asked for one)."""
    outcome = Outcome(title)
    out = faults.out("refused")
    args = [*args, "--out", out] if args[0] == "reproduce" else list(args)
    run = Run(args, env=env, limits=limits)
    outcome.exit_status = run.finish()
    outcome.expect(outcome.exit_status == 2, f"exit status is not 2: {run.message[-300:]!r}")
    one_line(outcome, run, *words)
    outcome.expect(not out.exists(), "the output folder was left behind")
    return outcome


def _signal_at(faults: Faults, signum, phase: str, command: str = "reproduce") -> Outcome:
    """`signum` at `phase` of `command`; the run must end with one line and that signal's status,
    and the same command run again must end where an uninterrupted run ends."""
    status, word = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}[signum]
    outcome = Outcome(f"{signal.Signals(signum).name} {phase} ({command})")
    out = faults.out(f"{signal.Signals(signum).name.lower()}-{phase.replace(' ', '-')}")
    started = faults.work / f"started-{faults.n}"
    if command == "reproduce":
        args = faults.reproduce_args(out)
    elif command == "compare":
        args = ["compare", faults.compare_toml, "--out", out]
    else:  # the three built-in cases, small: the signal lands in the second, once the first is printed
        args = ["gradcheck", "--batch", 10, "--no-julia"]
    run = Run(args, env={"HARNESS_TEST_STARTED_FILE": str(started)})
    if phase == "during start-up":
        run.wait_for_file(started)
    elif phase == "inside a training step":
        run.wait_for_file(out / "checkpoint.npz")
    elif phase == "while figures are written":
        run.wait_for_line("Writing the figures")
    elif phase == "inside a cell":
        run.wait_for_file(out / "cells", "*.json")
    else:  # gradcheck: inside the second case, once the first one's table is printed
        run.wait_for_line("dθ error")  # the first case's table header
    run.signal(signum)
    outcome.exit_status = run.finish()
    outcome.expect(outcome.exit_status == status, f"exit status is not {status}")
    one_line(outcome, run, word)
    if command == "gradcheck":
        outcome.expect("resume" not in run.message, "says it resumes, for a command that does not")
    elif command == "compare":
        faults.compare_rerun_matches(outcome, out)
    else:
        if phase != "during start-up":
            outcome.expect((out / "checkpoint.npz").exists(), "no checkpoint was kept")
        faults.rerun_matches(outcome, out, resumed=phase != "during start-up")
    return outcome


def _interrupted_run(faults: Faults, name: str) -> Path:
    """An output folder holding the checkpoint of a reproduce run stopped by SIGINT mid-training."""
    out = faults.out(name)
    run = Run(faults.reproduce_args(out))
    run.wait_for_file(out / "checkpoint.npz")
    run.signal(signal.SIGINT)
    run.finish()
    return out


def _damaged_checkpoint(faults: Faults, title: str, damage: str) -> Outcome:
    """A checkpoint damaged by `damage` (Python, with `path` its Path and `np`): the rerun must say so
    in one line, start afresh and end where an uninterrupted run ends."""
    outcome = Outcome(title)
    out = _interrupted_run(faults, "damaged-checkpoint")
    path = out / "checkpoint.npz"
    outcome.expect(path.exists(), "the interrupted run left no checkpoint")
    subprocess.run([sys.executable, "-c", "import sys, numpy as np\nfrom pathlib import Path\n"
                    "path = Path(sys.argv[1])\n" + damage, str(path)], check=True, env={**os.environ, **BLAS_ENV})
    run = Run(faults.reproduce_args(out))
    outcome.exit_status = run.finish()
    outcome.message = "".join(line for line in run.stdout if "checkpoint" in line).strip() or run.message
    outcome.expect(outcome.exit_status == 0, f"the rerun exited {outcome.exit_status}: {run.message[-300:]!r}")
    outcome.expect("Traceback" not in run.stderr, "a traceback was printed")
    notices = [line for line in run.stdout if "not a sound checkpoint" in line]
    outcome.expect(len(notices) == 1, f"{len(notices)} lines say the checkpoint was set aside, expected 1")
    outcome.expect(not any("resumed from the checkpoint" in line for line in run.stdout), "resumed from it")
    if outcome.exit_status == 0:
        outcome.expect(reproduce_result(out) == faults.reference(), "the result differs from an uninterrupted run")
    no_half_written(outcome, out)
    return outcome


FORGE_STEP = """
data = dict(np.load(path))
data["step"] = np.array(10**9)
np.savez(path, **data)
"""
FORGE_WITH_DIGEST = """
import hashlib, importlib
training = importlib.import_module("harness.training")
data = dict(np.load(path))
data["step"], data["adam_t"] = np.array(10**9), np.array(10**9)
data["digest"] = np.array(training._digest(data))
np.savez(path, **data)
"""
TRUNCATE = """
blob = path.read_bytes()
path.write_bytes(blob[: len(blob) // 2])
"""
GARBAGE = """
path.write_bytes(b"\\x00" * 4096)
"""


def _zip_bomb(path: Path, declared_bytes: int) -> None:
    """A problem file whose z0 and data are zeros declaring `declared_bytes` together, streamed
    into a deflated zip (a few hundred KB on disk per 300 MB), with consistent shapes."""
    import io
    import zipfile

    import numpy as np

    batch = declared_bytes // 32  # z0 (B, 2) and data (1, B, 2) float64: 32 bytes per state
    arrays = {"format": np.array("harness-problem-1"), "widths": np.array([2, 3, 2]),
              "activation": np.array("tanh"), "theta": np.zeros(17), "t0": np.array(0.0),
              "times": np.array([10.0])}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, value)
            archive.writestr(f"{key}.npy", buffer.getvalue())
        chunk = bytes(2**22)
        for key, shape in (("z0", (batch, 2)), ("data", (1, batch, 2))):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                member.write(header.getvalue())
                left = batch * 16
                while left:
                    member.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))


def zip_bomb(faults: Faults) -> Outcome:
    declared = (64 if faults.quick else 600) * 2**20
    path = faults.work / "bomb.npz"
    _zip_bomb(path, declared)
    title = (f"a zip bomb: {path.stat().st_size // 1024} KB declaring {declared // 2**20} MB "
             "(reproduce --problem-file, under a 4 GB address-space limit)")
    import resource

    # the limit makes a decompression that should not happen fail loudly instead of succeeding
    return _refused(faults, title, ["reproduce", "--problem-file", path, "--steps", 1], "zip bomb",
                    limits={resource.RLIMIT_AS: 4 * 2**30})


def not_an_npz(faults: Faults) -> Outcome:
    path = faults.work / "notes.npz"
    path.write_text("a text file, not arrays\n")
    outcome = _refused(faults, "a text file given as a problem file (gradcheck)",
                       ["gradcheck", "--problem-file", path, "--no-julia"], "not a .npz archive")
    outcome.expect("allow_pickle" not in outcome.message, "numpy's allow_pickle advice was shown")
    return outcome


def complex_data(faults: Faults) -> Outcome:
    path = _make_problem_file(faults, "complex", 'p["data"] = p["data"] + 1j')
    return _refused(faults, "complex data in a problem file (reproduce)",
                    ["reproduce", "--problem-file", path, "--steps", 1], "complex")


def growing_decay(faults: Faults) -> Outcome:
    path = _make_problem_file(faults, "growing", 'p["decay"] = np.array([-50.0, -50.0])')
    outcome = _refused(faults, "decay = [-50, -50]: the state grows by e^500 (gradcheck)",
                       ["gradcheck", "--problem-file", path, "--no-julia"], "decay", "grow")
    return outcome


def huge_decay(faults: Faults) -> Outcome:
    path = _make_problem_file(faults, "hugedecay", 'p["decay"] = np.array([1e300, 1e300])')
    return _refused(faults, "decay = [1e300, 1e300] (gradcheck)",
                    ["gradcheck", "--problem-file", path, "--no-julia"], "decay", "overflow")


def close_times(faults: Faults) -> Outcome:
    path = _make_problem_file(faults, "close", 'p["times"] = np.array([10.0, np.nextafter(10.0, 11.0)])\n'
                                               'p["data"] = np.concatenate([p["data"]] * 2)')
    outcome = _refused(faults, "two observation times one float spacing apart (reproduce)",
                       ["reproduce", "--problem-file", path, "--steps", 1], "float spacings")
    outcome.expect("blows up" not in outcome.message, "diagnosed as a blow-up")
    return outcome


def tiny_tolerance(faults: Faults) -> Outcome:
    outcome = _refused(faults, "rtol = atol = 1e-300 (reproduce)",
                       ["reproduce", *faults.problem, "--steps", 1, "--rtol", "1e-300", "--atol", "1e-300"], "rtol")
    outcome.expect("diverged" not in outcome.message, "diagnosed as diverged parameters")
    return outcome


def augmented_twice(faults: Faults) -> Outcome:
    """An input error found after the output folder was created: the folder must not stay."""
    path = faults.work / "augmented.npz"
    if not path.exists():
        subprocess.run([sys.executable, "-c", (
            "import sys, harness\nfrom harness.problems import augment_problem\n"
            "harness.save_problem(augment_problem(harness.seed_problem(batch=20), 1), sys.argv[1])"
        ), str(path)], check=True, env={**os.environ, **BLAS_ENV})
    return _refused(faults, "an augmented problem file augmented again (reproduce --augment 1)",
                    ["reproduce", "--problem-file", path, "--augment", 1, "--steps", 1], "already augmented")


def memory_refused(faults: Faults) -> Outcome:
    """The stiff reference of 52 states and 367 parameters needs ~44 GiB: refused with the number,
    under an 8 GB address-space limit so that a miss fails fast instead of swapping."""
    import resource

    path = faults.work / "stiff52.npz"
    if not path.exists():
        subprocess.run([sys.executable, "-c", (
            "import sys, harness\nfrom harness.problems import augment_problem, stiff_problem\n"
            "p = augment_problem(stiff_problem(batch=2), 50, seed=1)\n"
            "harness.save_problem(p, sys.argv[1])"
        ), str(path)], check=True, env={**os.environ, **BLAS_ENV})
    return _refused(faults, "ForwardSensitivity with RadauIIA5 on 52 states, P = 367 (reproduce; needs ~44 GiB)",
                    ["reproduce", "--problem-file", path, "--engine", "ForwardSensitivity", "--solver",
                     "RadauIIA5", "--steps", 1], "GiB of memory",
                    limits={resource.RLIMIT_AS: 8 * 2**30})


def gradcheck_memory(faults: Faults) -> Outcome:
    """`gradcheck --augment 50 --batch 2` on the stiff case only (a problem file): its reference is
    refused in its row, not grown to 24 GB."""
    import resource

    memory_refused(faults) if not (faults.work / "stiff52.npz").exists() else None
    outcome = Outcome("gradcheck on 52 stiff states, P = 367 (reference needs ~44 GiB), 8 GB limit")
    run = Run(["gradcheck", "--problem-file", faults.work / "stiff52.npz", "--no-julia"],
              limits={resource.RLIMIT_AS: 8 * 2**30})
    outcome.exit_status = run.finish()
    outcome.message = "".join(run.stdout).strip().splitlines()[-1] if run.stdout else run.message
    outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}: {run.message[-300:]!r}")
    outcome.expect("Traceback" not in run.stderr and not run.stderr.strip(), f"stderr: {run.stderr[-300:]!r}")
    outcome.expect(any("refused" in line and "GiB" in line for line in run.stdout), "no row says refused with GiB")
    outcome.expect("not checked" in outcome.message, "the summary does not say the case was not checked")
    return outcome


def ascii_output(faults: Faults, command: str) -> Outcome:
    outcome = Outcome(f"PYTHONIOENCODING=ascii ({command})")
    out = faults.out(f"ascii-{command}")
    env = {"PYTHONIOENCODING": "ascii", "LC_ALL": "C", "LANG": "C"}
    if command == "reproduce":
        args = faults.reproduce_args(out)
    elif command == "compare":
        args = ["compare", faults.compare_toml, "--out", out]
    else:
        args = ["gradcheck", *faults.problem, "--no-julia"] if faults.problem else \
            ["gradcheck", "--batch", 20, "--no-julia"]
    run = Run(args, env=env)
    outcome.exit_status = run.finish()
    outcome.message = run.message or "(finished)"
    outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}: {run.message[-300:]!r}")
    outcome.expect("Traceback" not in run.stderr, "a traceback was printed")
    if command == "reproduce" and outcome.exit_status == 0:
        outcome.expect(reproduce_result(out) == faults.reference(), "the result differs from a UTF-8 run")
    if command == "compare" and outcome.exit_status == 0:
        outcome.expect(compare_result(out) == faults.compare_reference(), "the result differs from a UTF-8 run")
    return outcome


def full_stdout(faults: Faults) -> Outcome:
    outcome = Outcome("gradcheck > /dev/full")
    args = ["gradcheck", *faults.problem, "--no-julia"] if faults.problem else \
        ["gradcheck", "--batch", 20, "--no-julia"]
    with open("/dev/full", "w") as full:
        run = Run(args, stdout=full)
        outcome.exit_status = run.finish()
    outcome.expect(outcome.exit_status == 1, "exit status is not 1")
    one_line(outcome, run, "No space left")
    outcome.expect("resume" not in run.message, "says the command resumes")
    return outcome


def bogus_backend(faults: Faults) -> Outcome:
    outcome = Outcome("MPLBACKEND=bogus (reproduce)")
    out = faults.out("bogus-backend")
    run = Run(faults.reproduce_args(out), env={"MPLBACKEND": "bogus"})
    outcome.exit_status = run.finish()
    outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}")
    one_line(outcome, run, "MPLBACKEND", "ignored")
    if outcome.exit_status == 0:
        outcome.expect(reproduce_result(out) == faults.reference(), "the result differs")
        outcome.expect((out / "training_curve.png").exists(), "no figure was drawn")
    return outcome


def sigkill_figures(faults: Faults) -> Outcome:
    """SIGKILL while a figure's temporary file exists; the rerun must leave no `.tmp` behind."""
    outcome = Outcome("SIGKILL while a figure is written (reproduce), then the same command")
    out = faults.out("sigkill-figures")
    run = Run(faults.reproduce_args(out))
    run.wait_for_line("Writing the figures")
    caught = run.wait_for_file(out, ".*.png.*.tmp")
    run.signal(signal.SIGKILL)
    outcome.exit_status = run.finish()
    left = [p.name for p in out.glob(".*.tmp")]
    outcome.message = f"killed with {left or 'no'} temporary file(s) in the folder" if caught else "killed"
    faults.rerun_matches(outcome, out)  # checks that no .tmp is left after the rerun
    return outcome


def tiny_disk(faults: Faults) -> Outcome:
    """A disk that fills while the report is written: a 200 KB tmpfs where root may mount one, else
    a 100 KB file-size limit (RLIMIT_FSIZE) on the run. Exit 1 in one line, the checkpoint kept,
    and the same command on a roomy disk resumes."""
    import resource

    out = faults.out("tiny-disk")
    mount = faults.work / "tiny-mount"
    mount.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True).returncode == 0
    try:
        if mounted:
            outcome = Outcome("a 200 KB disk (tmpfs) that fills while figures are written (reproduce)")
            target = mount / "out"
            run = Run(faults.reproduce_args(target))
        else:
            outcome = Outcome("a 100 KB file-size limit (RLIMIT_FSIZE) hit while figures are written (reproduce)")
            target = out
            run = Run(faults.reproduce_args(target), limits={resource.RLIMIT_FSIZE: 100 * 1024})
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 1, f"exit status is not 1: {run.message[-300:]!r}")
        one_line(outcome, run, "could not write")
        outcome.expect((target / "checkpoint.npz").exists(), "the checkpoint was not kept")
        no_half_written(outcome, target)
        if mounted and (target / "checkpoint.npz").exists():
            shutil.copytree(target, out)  # the same folder, moved to a disk with room
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], capture_output=True)
    faults.rerun_matches(outcome, out)
    return outcome


def dask_ctrl_c(faults: Faults) -> Outcome:
    """Ctrl-C at a terminal reaches the whole process group, Dask's local workers included."""
    outcome = Outcome("Ctrl-C to the process group of compare --workers 2")
    try:
        import distributed  # noqa: F401
    except ImportError:
        outcome.message = "skipped: the dask extra is not installed"
        return outcome
    out = faults.out("dask-ctrl-c")
    run = Run(["compare", faults.compare_toml, "--out", out, "--workers", 2], new_session=True)
    run.wait_for_file(out / "cells", "*.json")
    os.killpg(run.proc.pid, signal.SIGINT)
    outcome.exit_status = run.finish()
    outcome.expect(outcome.exit_status == 130, "exit status is not 130")
    one_line(outcome, run, "interrupted")
    faults.compare_rerun_matches(outcome, out)
    return outcome


ROBUST_SCENARIOS = {
    "sigterm_startup": lambda f: _signal_at(f, signal.SIGTERM, "during start-up"),
    "sigterm_training": lambda f: _signal_at(f, signal.SIGTERM, "inside a training step"),
    "sigterm_figures": lambda f: _signal_at(f, signal.SIGTERM, "while figures are written"),
    "sigterm_compare_startup": lambda f: _signal_at(f, signal.SIGTERM, "during start-up", "compare"),
    "sigterm_compare_cell": lambda f: _signal_at(f, signal.SIGTERM, "inside a cell", "compare"),
    "sigterm_gradcheck": lambda f: _signal_at(f, signal.SIGTERM, "inside a gradient", "gradcheck"),
    "sigint_gradcheck": lambda f: _signal_at(f, signal.SIGINT, "inside a gradient", "gradcheck"),
    "sigkill_figures": sigkill_figures,
    "checkpoint_forged_step": lambda f: _damaged_checkpoint(f, "a checkpoint edited to step = 1e9", FORGE_STEP),
    "checkpoint_forged_digest": lambda f: _damaged_checkpoint(
        f, "a checkpoint forged to step = 1e9 with its digest recomputed", FORGE_WITH_DIGEST),
    "checkpoint_truncated": lambda f: _damaged_checkpoint(f, "a checkpoint truncated to half", TRUNCATE),
    "checkpoint_garbage": lambda f: _damaged_checkpoint(f, "a checkpoint overwritten with zeros", GARBAGE),
    "zip_bomb": zip_bomb,
    "not_an_npz": not_an_npz,
    "complex_data": complex_data,
    "growing_decay": growing_decay,
    "huge_decay": huge_decay,
    "close_times": close_times,
    "tiny_tolerance": tiny_tolerance,
    "augmented_twice": augmented_twice,
    "memory_refused": memory_refused,
    "gradcheck_memory": gradcheck_memory,
    "ascii_reproduce": lambda f: ascii_output(f, "reproduce"),
    "ascii_gradcheck": lambda f: ascii_output(f, "gradcheck"),
    "ascii_compare": lambda f: ascii_output(f, "compare"),
    "full_stdout": full_stdout,
    "bogus_backend": bogus_backend,
    "tiny_disk": tiny_disk,
    "dask_ctrl_c": dask_ctrl_c,
}


# ------------------------------------------------------------------------ the compiled-code cache
# Each scenario runs a short `harness reproduce` against a cache of its own (HARNESS_AHEAD_OF_TIME_DIR in
# the work folder) holding a copy of this code's verified module, damaged or blocked in one way; the run
# must end normally (on the numpy path where the module is unusable), say why, and leave the cache
# repairable. The builders started are killed (their process groups) before the scenario returns.
CACHE_QUICK = ("cache_truncated_module", "cache_damaged_module", "cache_empty_module", "cache_garbage_module",
               "cache_foreign_module", "cache_unwritable_location", "cache_failed_build_remembered",
               "cache_bad_switch")
CACHE_FULL = CACHE_QUICK + ("cache_killed_builder", "cache_concurrent_runs_one_builder", "cache_full_disk")


def _cache_env(cache: Path, **changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_COMPILED", "HARNESS_AHEAD_OF_TIME")}
    return {**env, "HARNESS_AHEAD_OF_TIME_DIR": str(cache), "HARNESS_BUILD": "never", **changes}


def _verified_entry(faults: Faults):
    """This code's verified module in the user's cache (built, waiting, the first time), as an Entry."""
    if getattr(faults, "_verified", None) is None:
        done = subprocess.run([sys.executable, "-c", (
            "import harness._compiled as c\nfrom harness._compiled._module_cache import Entry, cache_directory\n"
            "c.kernels()\nassert c.kernels_source().startswith('built ahead of time'), c.kernels_source()\n"
            "print(Entry(cache_directory()[0]).path)")], capture_output=True, text=True,
            env={**os.environ, "HARNESS_BUILD": "wait"}, check=True)
        from harness._compiled._module_cache import Entry

        path = Path(done.stdout.strip().splitlines()[-1])
        faults._verified = Entry(path.parent, path.name)
    return faults._verified


def _cache_copy(faults: Faults, name: str):
    """A cache of its own in the work folder holding a copy of the verified entry."""
    from harness._compiled._module_cache import Entry

    verified = _verified_entry(faults)
    copy = Entry(faults.out(name) / "cache", verified.key)
    copy.path.mkdir(parents=True)
    shutil.copy(verified.module, copy.module)
    shutil.copy(verified.record, copy.record)
    return copy


def _short_run(faults: Faults, name: str, env: dict) -> Run:
    return Run(["reproduce", *faults.problem, "--steps", 10, "--out", faults.out(name)], env=env)


def _forge_record(entry) -> None:
    from harness._compiled._module_cache import sha256

    entry.write(entry.record, {"size": entry.module.stat().st_size, "sha256": sha256(entry.module)})


def _damaged_module(name: str, damage) -> callable:
    def scenario(faults: Faults) -> Outcome:
        outcome = Outcome(f"cached compiled module {name}")
        entry = _cache_copy(faults, "cache-" + name.replace(" ", "-"))
        damage(entry)
        run = _short_run(faults, "cache-run", _cache_env(entry.path.parent))
        outcome.exit_status = run.finish()
        outcome.message = next((line for line in run.message.splitlines() if "compiled" in line), run.message)
        outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}: {run.message[-300:]}")
        outcome.expect("Traceback" not in run.stderr, "a traceback was printed")
        outcome.expect("was removed" in run.message, "no line says the module was removed")
        outcome.expect(not entry.module.exists(), "the damaged module is still there")
        return outcome
    return scenario


def _flip(entry) -> None:
    data = entry.module.read_bytes()
    entry.module.write_bytes(data[:4096] + bytes(x ^ 0xFF for x in data[4096:8192]) + data[8192:])


def _unwritable_location(faults: Faults) -> Outcome:
    outcome = Outcome("cache paths under a regular file (HARNESS_AHEAD_OF_TIME_DIR, NUMBA_CACHE_DIR)")
    blocker = faults.out("cache-blocker")
    blocker.write_text("a regular file")
    run = _short_run(faults, "cache-run", _cache_env(blocker / "aot", NUMBA_CACHE_DIR=str(blocker / "numba")))
    outcome.exit_status = run.finish()
    outcome.message = next((line for line in run.message.splitlines() if "unusable" in line), run.message)
    outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}: {run.message[-300:]}")
    outcome.expect("Traceback" not in run.stderr, "a traceback was printed")
    outcome.expect("HARNESS_AHEAD_OF_TIME_DIR unusable" in run.message, "the unusable directory is not named")
    return outcome


def _failed_build_remembered(faults: Faults) -> Outcome:
    from harness._compiled._module_cache import Entry

    outcome = Outcome("a failed build on record is not retried")
    entry = Entry(faults.out("cache-failed") / "cache", _verified_entry(faults).key)
    entry.path.mkdir(parents=True)
    entry.write(entry.failed, {"reason": "LinkError: gcc failed", "when": "2026-01-01T00:00:00Z"})
    run = _short_run(faults, "cache-run", _cache_env(entry.path.parent, HARNESS_BUILD="background"))
    outcome.exit_status = run.finish()
    outcome.message = next((line for line in run.message.splitlines() if "failed" in line), run.message)
    outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}: {run.message[-300:]}")
    outcome.expect("--rebuild" in run.message, "the way to retry is not named")
    outcome.expect(not entry.lock.exists(), "a builder was started")
    return outcome


def _bad_switch(faults: Faults) -> Outcome:
    outcome = Outcome("HARNESS_COMPILED=maybe")
    run = _short_run(faults, "cache-run", {**os.environ, "HARNESS_COMPILED": "maybe"})
    outcome.exit_status = run.finish()
    one_line(outcome, run, "HARNESS_COMPILED='maybe'")
    outcome.expect(outcome.exit_status == 2, f"exit status {outcome.exit_status}, expected 2")
    return outcome


def _builder_pid(run: Run) -> int | None:
    marker = "being built in the background (process "
    return int(run.message.split(marker)[1].split(",")[0]) if marker in run.message else None


def _kill_group(pid) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, TypeError):
        pass


def _until(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _killed_builder(faults: Faults) -> Outcome:
    from harness._compiled._module_cache import Entry

    outcome = Outcome("a builder killed mid-build (SIGKILL)")
    entry = Entry(faults.out("cache-killed") / "cache", _verified_entry(faults).key)
    env = _cache_env(entry.path.parent, HARNESS_BUILD="background")
    first = second = None
    try:
        run = _short_run(faults, "cache-run", env)
        outcome.exit_status = run.finish()
        first = _builder_pid(run)
        outcome.expect(first is not None, f"no background builder was started: {run.message[-300:]}")
        if first is None or not _until(lambda: any(entry.path.glob("build-*"))):
            return outcome
        scratch = next(entry.path.glob("build-*"))
        _kill_group(first)
        outcome.expect(_until(lambda: entry.builder() is None), "the lock outlived the killed builder")
        run = _short_run(faults, "cache-run", env)
        run.finish()
        second = _builder_pid(run)
        outcome.message = f"builder {first} killed; the next run started builder {second}"
        outcome.expect(second is not None, "the next run started no builder")
        outcome.expect(_until(lambda: not scratch.exists()), "the killed builder's scratch folder stayed")
    finally:
        _kill_group(first)
        _kill_group(second)
    return outcome


def _concurrent_runs(faults: Faults) -> Outcome:
    from harness._compiled._module_cache import Entry

    outcome = Outcome("two runs at once with nothing built: one builder")
    entry = Entry(faults.out("cache-concurrent") / "cache", _verified_entry(faults).key)
    env = _cache_env(entry.path.parent, HARNESS_BUILD="background")
    runs = [_short_run(faults, "cache-run", env) for _ in range(2)]
    codes = [run.finish() for run in runs]
    pids = [_builder_pid(run) for run in runs]
    try:
        outcome.exit_status = max(codes)
        started = [pid for pid in pids if pid is not None]
        outcome.message = f"builders started: {started}"
        outcome.expect(codes == [0, 0], f"exit statuses {codes}")
        outcome.expect(len(started) == 1, f"{len(started)} builders started, expected 1")
        waiting = [run for run in runs if _builder_pid(run) is None]
        outcome.expect(all("is being built by process" in run.message for run in waiting),
                       "the other run does not say it found the build under way")
    finally:
        for pid in pids:
            _kill_group(pid)
    return outcome


def _full_disk(faults: Faults) -> Outcome:
    """The cache on a 1 MB disk (a tmpfs, where root may mount one): the module (1.4 MB) cannot be
    written; the run that waits for the build ends normally on numba's cache, and the doctor names the
    full disk."""
    outcome = Outcome("a full disk under the cache (a 1 MB tmpfs)")
    mount = faults.out("cache-full-disk")
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        outcome.message = "skipped: no tmpfs can be mounted here"
        return outcome
    try:
        env = _cache_env(mount, HARNESS_BUILD="wait")
        run = _short_run(faults, "cache-run", env)
        outcome.exit_status = run.finish()
        outcome.expect(outcome.exit_status == 0, f"exit status {outcome.exit_status}: {run.message[-300:]}")
        outcome.expect("Traceback" not in run.stderr, "a traceback was printed")
        doctor = subprocess.run(HARNESS + ["doctor"], env=env, capture_output=True, text=True)
        line = next((x for x in doctor.stdout.splitlines() if x.strip().startswith("compiled")), "")
        outcome.message = line.strip()
        outcome.expect(f"the disk holding {mount}" in line and "is full" in line,
                       f"the doctor does not name the full disk: {line[:300]!r}")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    return outcome


CACHE_FAULTS = {
    "cache_truncated_module": _damaged_module("truncated", lambda e: e.module.write_bytes(
        e.module.read_bytes()[: e.module.stat().st_size // 2])),
    "cache_damaged_module": _damaged_module("with damaged bytes", _flip),
    "cache_empty_module": _damaged_module("of 0 bytes", lambda e: e.module.write_bytes(b"")),
    "cache_garbage_module": _damaged_module("of garbage, with a forged record", lambda e: (
        e.module.write_bytes(os.urandom(4096)), _forge_record(e))),
    "cache_foreign_module": _damaged_module("replaced by another extension, with a forged record", lambda e: (
        shutil.copy(__import__("_json").__file__, e.module), _forge_record(e))),
    "cache_unwritable_location": _unwritable_location,
    "cache_failed_build_remembered": _failed_build_remembered,
    "cache_bad_switch": _bad_switch,
    "cache_killed_builder": _killed_builder,
    "cache_concurrent_runs_one_builder": _concurrent_runs,
    "cache_full_disk": _full_disk,
}
QUICK = QUICK + CACHE_QUICK
FULL = FULL + CACHE_FULL


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1")
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the fast set the test suite runs")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random injection points")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    parser.add_argument("--only", nargs="+", metavar="KEY", help="run only these scenarios (keys as printed)")
    parser.add_argument("--repeat", type=_at_least_one, default=1, metavar="N",
                        help="run each scenario N times (an intermittent fault shows as a rate)")
    parser.add_argument("--results", type=Path, default=None, metavar="PATH",
                        help=f"write the outcomes as JSON here (default for the full set: {RESULTS})")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    work = Path(tempfile.mkdtemp(prefix="harness-faults-"))
    print(f"work folder {work}, seed {seed}", flush=True)
    faults = Faults(work, args.quick, random.Random(seed))
    outcomes = []
    try:
        keys = [key for key in (QUICK if args.quick else FULL) if not args.only or key in args.only]
        for key in [key for key in keys for _ in range(args.repeat)]:
            outcome = faults.run(key, faults.scenario(key))
            outcomes.append(outcome)
            status = "survived" if outcome.survived else "NOT SURVIVED: " + "; ".join(outcome.problems)
            first = outcome.message.splitlines()[0] if outcome.message else ""
            timing = f" ({', '.join(outcome.timings)})" if outcome.timings else ""
            print(f"- [{key}] {outcome.name}: exit {outcome.exit_status}, {first!r}{timing}: {status}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    survived = sum(o.survived for o in outcomes)
    lost = len(outcomes) - survived
    print(f"{len(outcomes)} faults injected: {survived} of {len(outcomes)} survived, "
          + ("nothing lost" if not lost else f"{lost} did not survive"))
    results = args.results
    if results is None and not (args.quick or args.only or args.repeat > 1):
        results = RESULTS  # only the full set, once each, is the figure the docs quote
    if results is not None:
        write_results(results, outcomes, keys, seed, args)
        print(f"wrote {results}")
    return 0 if not lost else 1


def write_results(path: Path, outcomes, keys, seed: int, args) -> None:
    """The outcomes as JSON (strict, atomic), with the command and machine that produced them."""
    import platform

    from harness._provenance import cpu_model

    rows = [{"key": key, "scenario": o.name, "exit_status": o.exit_status,
             "message": o.message.splitlines()[0] if o.message else "", "timings": o.timings,
             "survived": o.survived, "problems": o.problems} for key, o in zip(keys_run(keys, args), outcomes)]
    data = {
        "command": "python benchmarks/inject_faults.py" + (" --quick" if args.quick else ""),
        "seed": seed, "cpu": cpu_model(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "commit": _commit(),
        "injected": len(outcomes), "survived": sum(o.survived for o in outcomes),
        "lost": sum(not o.survived for o in outcomes), "scenarios": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def keys_run(keys, args):
    return [key for key in keys for _ in range(args.repeat)]


def _commit() -> str | None:
    """The commit of the code measured (with "+dirty" if it has uncommitted changes), or None."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")




if __name__ == "__main__":
    sys.exit(main())
