"""The compiled kernels built ahead of time (harness._compiled._ahead_of_time) and their fallback.

The module is the same Python source as numba's just-in-time functions, compiled by the same numba for
the same CPU, so the two must give the same numbers: the bound below is 1e-14 relative, a few ulps of
instruction selection (the ahead-of-time build compiles position-independent code and may schedule
or fuse differently), far below the 1e-12 that tests/test_compiled_loop.py allows against numpy and
far above nothing (measured: identical to the last bit). A wrong argument type (the module's
signatures are fixed when it is built, the just-in-time functions specialise on what they get) would
read memory wrongly and give O(1) differences or a crash: the first test checks the types the drivers
pass against the ones the module is built for.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled path needs numba")

import numba

import harness._compiled as compiled
from harness._compiled import _ahead_of_time, _module_cache
from harness.problems import seed_problem
from harness.sensitivity import RecursiveCheckpointAdjoint, gradient

SAME_CODE = 1e-14  # relative; see the module docstring

# every compiled entry point and mode: each adjoint's loop, the reverse sweep stored and checkpointed,
# and the stage kernel under the numpy driver (DP8 runs there)
CASES = [
    ("BacksolveAdjoint", "DP5"), ("InterpolatingAdjoint", "BS3"), ("QuadratureAdjoint", "DP5"),
    ("GaussAdjoint", "DP5"), ("RecursiveCheckpointAdjoint", "DP5"), ("checkpointed", "BS3"),
    ("InterpolatingAdjoint", "DP8"),
]

GRADIENTS = """
import json, sys
import numpy as np
import harness._compiled as compiled
from harness.problems import seed_problem
from harness.sensitivity import RecursiveCheckpointAdjoint, gradient

def engine(name):
    return RecursiveCheckpointAdjoint(checkpoints=3) if name == "checkpointed" else name

problem = seed_problem(batch=16)
rows = [gradient(problem, engine=engine(e), solver=s, rtol=1e-6, atol=1e-6).dtheta.tolist() for e, s in CASES]
print(json.dumps({"rows": rows, "source": compiled.kernels_source(), "loop_runs": compiled.loop_runs(),
                  "numba_imported": "numba" in sys.modules, "llvmlite_imported": "llvmlite" in sys.modules}))
"""


def run_gradients(env_changes: dict) -> tuple[dict, str]:
    """`GRADIENTS` in a fresh process with these environment changes: (its JSON, its stderr)."""
    env = {**os.environ, **env_changes}
    code = f"CASES = {CASES!r}\n" + textwrap.dedent(GRADIENTS)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _engine(name):
    return RecursiveCheckpointAdjoint(checkpoints=3) if name == "checkpointed" else name


def test_the_drivers_pass_the_types_the_module_is_built_for():
    """Every call the drivers make to a compiled function (each case above) has exactly the numba types of
    `example_arguments`, the signatures of the module built ahead of time."""
    built_for = {name: tuple(numba.typeof(a) for a in args)
                 for name, args in _ahead_of_time.example_arguments().items()}
    functions = compiled.kernels()
    seen = {}

    class Recorder:
        def __getattr__(self, name):
            def call(*args):
                seen.setdefault(name, set()).add(tuple(numba.typeof(a) for a in args))
                return getattr(functions, name)(*args)
            return call

    compiled._state["kernels"] = Recorder()
    try:
        problem = seed_problem(batch=16)
        for name, solver in CASES:
            gradient(problem, engine=_engine(name), solver=solver, rtol=1e-6, atol=1e-6)
    finally:
        compiled._state["kernels"] = functions
    assert set(seen) == set(_ahead_of_time.EXPORTED)
    for name, signatures in seen.items():
        assert signatures == {built_for[name]}, name


def test_a_gradient_runs_the_module_without_importing_numba():
    """A fresh process computing gradients with the module built loads neither numba nor LLVM (what keeps
    its memory at numpy's scale: benchmarks/bench_memory.py), and its compiled loop ran."""
    compiled.kernels()  # built (or loaded) here first, so the child only loads it
    report, _ = run_gradients({})
    assert report["source"].startswith("built ahead of time")
    assert report["loop_runs"] == 6  # every case but DP8's, which is the numpy driver with the stage kernel
    assert not report["numba_imported"] and not report["llvmlite_imported"]


@pytest.mark.slow
def test_a_failed_build_falls_back_to_just_in_time_functions_that_agree(tmp_path):
    """Where the module cannot be built (here no C compiler: CC points to `false`), one line says why and
    numba's just-in-time functions compute the same gradients as the module, to `SAME_CODE`."""
    module = compiled.kernels()
    assert compiled.kernels_source().startswith("built ahead of time")
    report, stderr = run_gradients({"CC": "false", _module_cache.DIRECTORY_VARIABLE: str(tmp_path)})
    assert "harness: building the compiled code" in stderr
    assert report["source"].startswith("numba's just-in-time functions from numba's cache (the ahead-of-time "
                                       "build failed ("), report["source"]
    assert report["numba_imported"]
    assert not list(tmp_path.glob("*/*.so")), "a failed build must leave no module behind"
    problem = seed_problem(batch=16)
    for (name, solver), jit_row in zip(CASES, report["rows"]):
        aot = gradient(problem, engine=_engine(name), solver=solver, rtol=1e-6, atol=1e-6).dtheta
        jit = np.asarray(jit_row)
        assert np.max(np.abs(aot - jit)) <= SAME_CODE * np.max(np.abs(jit)), (name, solver)
    assert module is compiled.kernels()


def test_the_cache_key_follows_the_sources_and_the_directory_variable(tmp_path, monkeypatch):
    """Another source text gives another entry (so an edit rebuilds), a new kernel file (one importing
    numba, wherever the kernels move) counts, glue does not; HARNESS_AHEAD_OF_TIME_DIR moves the entry."""
    key = _ahead_of_time.build_key()
    assert len(key) == 20 and key == _ahead_of_time.build_key()
    original = _ahead_of_time.HERE
    fake = tmp_path / "package"
    fake.mkdir()
    for source in original.glob("*.py"):
        (fake / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(_ahead_of_time, "HERE", fake)
    assert _ahead_of_time.build_key() == key
    kernel = next(p for p in _ahead_of_time._key_sources() if p.name not in ("_arguments.py", "_ahead_of_time.py"))
    kernel.write_text(kernel.read_text() + "\n# edited\n")
    edited = _ahead_of_time.build_key()
    assert edited != key
    (fake / "_glue_only.py").write_text("import numpy\n# glue that is not compiled: no rebuild\n")
    assert _ahead_of_time.build_key() == edited
    assert {p.name for p in _ahead_of_time._key_sources()} >= {"_unit_stage.py", "_borrowed.py", "_stage_kernels.py",
                                                                 "_rules.py", "_step_rules.py"}
    # the step rules live with the solvers and are compiled into the kernels: an edit rebuilds too
    rules = tmp_path / "_step_rules.py"
    rules.write_text(_ahead_of_time.STEP_RULES.read_text() + "\n# edited\n")
    monkeypatch.setattr(_ahead_of_time, "STEP_RULES", rules)
    assert _ahead_of_time.build_key() != edited
    edited = _ahead_of_time.build_key()
    (fake / "_new_kernel.py").write_text("from numba import njit\n")
    assert _ahead_of_time.build_key() != edited
    monkeypatch.setenv("NUMBA_CPU_NAME", "znver3")  # another target: another module
    assert _ahead_of_time.build_key() != edited
    monkeypatch.setenv(_module_cache.DIRECTORY_VARIABLE, str(tmp_path / "built"))
    directory, note = _module_cache.cache_directory()
    assert directory == tmp_path / "built" and note == ""
    assert _module_cache.Entry(directory, "k").module.parent == tmp_path / "built" / "k"


def test_doctor_names_where_the_kernels_come_from():
    compiled.kernels()
    line = compiled.status()
    assert "built ahead of time" in line and _ahead_of_time.build_key() in line


# ------------------------------------------------------------------------------------ the cache (issue 27)
ONE_GRADIENT = """
import json
import harness._compiled as compiled
from harness.problems import seed_problem
from harness.sensitivity import gradient

problem = seed_problem(batch=4)
gradient(problem, engine="BacksolveAdjoint", solver="DP5", rtol=1e-6, atol=1e-6)
print(json.dumps({"loop_runs": compiled.loop_runs(), "source": compiled.kernels_source(),
                  "status": compiled.status(problem.model)}))
"""


def one_gradient(cache: Path, **env_changes) -> tuple[int, dict | None, str]:
    """One gradient in a fresh process whose compiled-code cache is `cache` (no build started unless
    HARNESS_BUILD says so): (exit status, its JSON or None, its stderr)."""
    env = {**os.environ, _module_cache.DIRECTORY_VARIABLE: str(cache), "HARNESS_BUILD": "never", **env_changes}
    done = subprocess.run([sys.executable, "-c", ONE_GRADIENT], env=env, capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    return done.returncode, (json.loads(lines[-1]) if done.returncode == 0 and lines else None), done.stderr


@pytest.fixture(scope="module")
def built() -> _module_cache.Entry:
    """The verified module of this code on this machine (built, or waited for, once)."""
    compiled.kernels()
    assert compiled.kernels_source().startswith("built ahead of time"), compiled.kernels_source()
    directory, _ = _module_cache.cache_directory()
    return _module_cache.Entry(directory)


def copy_of(entry: _module_cache.Entry, tmp_path: Path) -> _module_cache.Entry:
    """The same entry (module and record) in a cache of its own under `tmp_path`."""
    copy = _module_cache.Entry(tmp_path / "cache", entry.key)
    copy.path.mkdir(parents=True)
    shutil.copy(entry.module, copy.module)
    shutil.copy(entry.record, copy.record)
    return copy


def forge_record(entry: _module_cache.Entry) -> None:
    """A record that matches whatever file is there now (a forged or stale record: the load must still
    be safe)."""
    entry.write(entry.record, {"size": entry.module.stat().st_size, "sha256": _module_cache.sha256(entry.module)})


def test_a_recorded_module_is_adopted_by_a_process_that_finds_it(built, tmp_path):
    """A module with its record, wherever the cache is, is loaded (after its size and hash check) and runs."""
    copy = copy_of(built, tmp_path)
    code, report, stderr = one_gradient(copy.path.parent)
    assert code == 0, stderr
    assert report["loop_runs"] == 1 and report["source"] == f"built ahead of time ({built.key})"


DAMAGES = {
    # a truncated module killed every process with SIGBUS before its size was checked
    "truncated": lambda e: e.module.write_bytes(e.module.read_bytes()[: e.module.stat().st_size // 2]),
    # the same size with damaged bytes gave SIGSEGV
    "damaged bytes, same size": lambda e: e.module.write_bytes(
        (lambda b: b[:4096] + bytes(x ^ 0xFF for x in b[4096:8192]) + b[8192:])(e.module.read_bytes())),
    "empty": lambda e: e.module.write_bytes(b""),
    "garbage with a forged record": lambda e: (e.module.write_bytes(os.urandom(4096)), forge_record(e)),
    "another extension module with a forged record": lambda e: (
        shutil.copy(__import__("_json").__file__, e.module), forge_record(e)),
    "no record": lambda e: e.record.unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_cached_module_is_never_loaded_the_run_falls_back_and_it_is_rebuilt(built, tmp_path, damage):
    """Issue 27, worst 1 and 2: a damaged module is found before any dlopen (size, SHA-256), or its load
    fails inside the check; either way the run ends normally on the numpy path, one line says why, the
    file is removed (the next build replaces it) and the doctor then reports it as not built."""
    copy = copy_of(built, tmp_path)
    DAMAGES[damage](copy)
    assert "damaged" in _module_cache.describe(copy) or damage == "no record" or "built ahead" in \
        _module_cache.describe(copy)
    code, report, stderr = one_gradient(copy.path.parent)
    assert code == 0, stderr
    assert report["loop_runs"] == 0 and report["source"] is None
    assert "Traceback" not in stderr
    assert f"the cached compiled module {copy.module} was removed (" in stderr
    assert not copy.module.exists() and not copy.record.exists()
    assert _module_cache.describe(copy).startswith("not built yet")


def test_the_doctor_reports_a_damaged_module_as_damaged(built, tmp_path):
    copy = copy_of(built, tmp_path)
    assert _module_cache.describe(copy).startswith("built ahead of time, size and SHA-256 as recorded")
    DAMAGES["truncated"](copy)
    assert "is damaged (size " in _module_cache.describe(copy)


def test_a_failed_build_is_remembered_with_its_reason_and_not_retried(tmp_path):
    """A failed build is not retried on every run (it cost 36-88 s each): the run says why in one line,
    names the way to retry, and starts no builder; the doctor says the same."""
    entry = _module_cache.Entry(tmp_path / "cache")
    entry.path.mkdir(parents=True)
    entry.write(entry.failed, {"reason": "LinkError: gcc failed", "when": "2026-12-07T09:00:00Z"})
    code, report, stderr = one_gradient(entry.path.parent, HARNESS_BUILD="background")
    assert code == 0, stderr
    assert report["loop_runs"] == 0
    assert "the compiled build failed (LinkError: gcc failed); `harness doctor --rebuild` retries" in stderr
    assert not entry.lock.exists() and not entry.log.exists(), "a builder was started"
    assert "the build failed at 2026-12-07T09:00:00Z (LinkError: gcc failed)" in _module_cache.describe(entry)


@pytest.fixture(scope="module")
def numbas_cache_filled() -> None:
    """numba's own cache holds this code's just-in-time functions: filled here unless a builder (another
    test's, maybe in another test process) did it already. Under the builders' lock, so that they are
    compiled once, whichever process comes first."""
    from harness._compiled._warmup import warm_up

    with _module_cache._numba_cache_lock():
        warm_up(lambda: None)


def test_numbas_cache_filled_with_the_module_off_serves_while_the_module_is_built(built, numbas_cache_filled,
                                                                                  tmp_path):
    """An entry whose builder ran with HARNESS_AHEAD_OF_TIME=0 (numba's cache filled, no module): a run
    with the module wanted uses numba's functions at once and starts the module's build."""
    entry = _module_cache.Entry(tmp_path / "cache", built.key)
    entry.path.mkdir(parents=True)
    entry.write(entry.jit, {"why": "HARNESS_AHEAD_OF_TIME=0"})
    code, report, stderr = one_gradient(entry.path.parent, HARNESS_BUILD="background")
    pid = None
    try:
        assert code == 0, stderr
        assert report["loop_runs"] == 1
        assert report["source"] == "numba's just-in-time functions from numba's cache (HARNESS_AHEAD_OF_TIME=0)"
        assert "harness: building the compiled module in the background (process " in stderr
        pid = int(stderr.split("(process ")[1].split(",")[0])
    finally:
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)


def test_unusable_cache_locations_fall_back(tmp_path, monkeypatch):
    """A cache path under a regular file (HARNESS_AHEAD_OF_TIME_DIR, NUMBA_CACHE_DIR) is passed over with
    one line naming it; with no usable location at all the run uses numpy; a builder never gets an
    unusable NUMBA_CACHE_DIR (numba refuses to decorate cached functions under one)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, report, stderr = one_gradient(blocker / "aot", NUMBA_CACHE_DIR=str(blocker / "numba"))
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "HARNESS_AHEAD_OF_TIME_DIR unusable" in stderr and "NUMBA_CACHE_DIR unusable" in stderr
    assert "Not a directory" in stderr
    monkeypatch.setenv(_module_cache.DIRECTORY_VARIABLE, str(blocker / "aot"))
    assert "[HARNESS_AHEAD_OF_TIME_DIR unusable (" in _module_cache.describe()  # the doctor names it too
    monkeypatch.setattr(_module_cache, "_candidates", lambda: [(blocker / "x", "HARNESS_AHEAD_OF_TIME_DIR"),
                                                               (blocker / "y", "the user's cache directory")])
    directory, note = _module_cache.cache_directory()
    assert directory is None and "the user's cache directory unusable" in note
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocker / "numba"))
    assert "NUMBA_CACHE_DIR" not in _module_cache._builder_environment()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "fine"))
    assert _module_cache._builder_environment()["NUMBA_CACHE_DIR"] == str(tmp_path / "fine")


def test_a_full_disk_is_reported_as_such(tmp_path, monkeypatch):
    """The C compiler reports a full disk as a link failure; the recorded reason says the disk is full."""
    said = _module_cache.explain(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert said == f"no space left on the device holding {tmp_path}"

    class LinkError(Exception):
        pass

    monkeypatch.setattr(_module_cache.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 99, 1 << 20))
    said = _module_cache.explain(LinkError("command 'gcc' failed with exit code 1"), tmp_path)
    assert said == f"the disk holding {tmp_path} is full (1 MB free; the build ended in LinkError)"


@pytest.mark.parametrize("variable, value", [("HARNESS_COMPILED", "maybe"), ("HARNESS_BUILD", "sometimes"),
                                             ("HARNESS_AHEAD_OF_TIME", "perhaps")])
def test_a_switch_it_does_not_understand_is_refused_in_one_line(variable, value):
    """HARNESS_COMPILED=maybe was silently 'auto': now one line naming the value, exit status 2."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "doctor"], env={**os.environ, variable: value},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"harness doctor: error: {variable}={value!r} is not "
                                   + ("one of background, wait, never" if variable == "HARNESS_BUILD" else
                                      "understood: use 1 (on), 0 (off)"
                                      + (" or leave it unset (automatic)" if variable == "HARNESS_COMPILED" else "")))


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _wait_until(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads a process's priority from /proc")
def test_runs_start_one_background_builder_per_key_that_outlives_them_and_a_killed_one_is_cleaned(tmp_path):
    """The first run starts a builder at the lowest priority and uses numpy; a second run finds it (the
    lock) and starts none; the builder outlives both (a later run adopts what it builds). A builder
    killed mid-build releases the lock, and the next one removes its scratch folder first."""
    cache = tmp_path / "cache"
    entry = _module_cache.Entry(cache)
    pids = []
    try:
        code, report, stderr = one_gradient(cache, HARNESS_BUILD="background")
        assert code == 0 and report["loop_runs"] == 0, stderr
        first = int(stderr.split("being built in the background (process ")[1].split(",")[0])
        pids.append(first)
        assert _wait_until(lambda: (entry.read(entry.building) or {}).get("pid") == first)
        assert _nice(first) == 19
        code, report, stderr = one_gradient(cache, HARNESS_BUILD="background")
        assert code == 0 and f"the compiled code is being built by process {first} " in stderr, stderr
        assert entry.builder()["pid"] == first  # it outlived the run that started it
        # the builder starts once the run that started it has ended, at nice 19: give it time on a busy machine
        assert _wait_until(lambda: any(entry.path.glob("build-*")), 300)
        scratch = next(entry.path.glob("build-*"))
        os.killpg(first, signal.SIGKILL)  # the builder and whatever it started (the C compiler)
        assert _wait_until(lambda: entry.builder() is None), "the lock outlived the killed builder"
        code, report, stderr = one_gradient(cache, HARNESS_BUILD="background")
        second = int(stderr.split("being built in the background (process ")[1].split(",")[0])
        pids.append(second)
        assert second != first
        assert _wait_until(lambda: not scratch.exists(), 300), "the killed builder's scratch folder stayed"
    finally:
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_builder_leaves_a_running_starter_alone_and_does_not_wait_for_one_that_has_ended(monkeypatch):
    """A background builder waits while the run that started it lives (up to the grace), and not at all
    once that run has ended: its pid, passed by the starter, is then no longer the builder's parent. (A
    builder that read its parent's pid itself would, after a short run, read the pid of whoever adopted
    it and wait out the whole grace.)"""
    monkeypatch.setattr(_module_cache, "GRACE_SECONDS", 0.5)
    start = time.monotonic()
    _module_cache._after_the_run_that_started_it(os.getppid())  # the starter still runs: the grace
    assert time.monotonic() - start >= 0.5
    monkeypatch.setattr(_module_cache, "GRACE_SECONDS", 120.0)
    start = time.monotonic()
    _module_cache._after_the_run_that_started_it(os.getpid())  # not this process's parent: it has ended
    assert time.monotonic() - start < 60.0  # returned at once, not after the 120 s grace


BLOCK_PYCC = """
import sys


class _NoPycc:
    \"\"\"numba.pycc as it will be the day numba removes it: not importable.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name == "numba.pycc" or name.startswith("numba.pycc."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoPycc())
"""


@pytest.mark.slow
def test_without_numba_pycc_numbas_cache_serves_and_agrees(built, tmp_path):
    """The day numba.pycc is removed (here: made unimportable in every process, the builder included, by a
    sitecustomize that refuses the import): the builder fills numba's own cache (cache=True) instead,
    runs use numba's just-in-time functions from it, and they give the module's gradients to SAME_CODE."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_PYCC)
    cache = tmp_path / "cache"
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    report, stderr = run_gradients({_module_cache.DIRECTORY_VARIABLE: str(cache), "PYTHONPATH": pythonpath,
                                    "HARNESS_BUILD": "wait"})
    assert report["source"].startswith("numba's just-in-time functions from numba's cache (numba.pycc is not "
                                       "importable (ModuleNotFoundError"), report["source"]
    assert not list(cache.glob("*/*.so"))
    problem = seed_problem(batch=16)
    for (name, solver), jit_row in zip(CASES, report["rows"]):
        aot = gradient(problem, engine=_engine(name), solver=solver, rtol=1e-6, atol=1e-6).dtheta
        jit = np.asarray(jit_row)
        assert np.max(np.abs(aot - jit)) <= SAME_CODE * np.max(np.abs(jit)), (name, solver)


def test_the_builders_first_load_happens_in_a_child_that_may_crash(built, tmp_path):
    """The builder loads a module it built in a child process and runs one stage there before recording
    it: a module that kills its loader (a truncated file: SIGBUS) is reported, not recorded."""
    assert _module_cache._verify_in_child(built.module) is None
    truncated = tmp_path / built.module.name
    truncated.write_bytes(built.module.read_bytes()[: built.module.stat().st_size // 2])
    said = _module_cache._verify_in_child(truncated)
    assert said is not None and ("killed a test process with signal" in said or "Error" in said), said


def test_a_failure_recorded_in_another_installation_is_retried_not_remembered(tmp_path):
    # A build that failed while `pip install` rewrote the packages it imports (the README's second
    # command run while the first one's background build compiles) must not be remembered for good:
    # the record carries the installation's stamp, and a changed installation retries the build.
    from harness._compiled._module_cache import Entry, environment_stamp

    entry = Entry(tmp_path, key="k")
    entry.path.mkdir()
    entry.record_failure("AttributeError: module 'scipy' has no attribute '__version__'")
    assert entry.remembered_failure()["reason"].startswith("AttributeError: module 'scipy'")
    assert entry.read(entry.failed)["environment"] == environment_stamp()
    record = entry.read(entry.failed)
    entry.write(entry.failed, {**record, "environment": "0" * 16})  # as if numpy or scipy was reinstalled since
    assert entry.remembered_failure() is None
    entry.write(entry.failed, {"reason": "LinkError: gcc failed", "when": "2026-12-07T09:00:00Z"})
    assert entry.remembered_failure()["reason"] == "LinkError: gcc failed"  # a record without a stamp holds
