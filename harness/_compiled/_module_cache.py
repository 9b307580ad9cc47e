"""The compiled functions' disk cache: where it lives, how a build is started (in the background, one
per key, shared by every process through a lock), how a built module is checked before it is loaded,
and what a failed build leaves behind.

No run waits for a build unless it asks to. A process that finds no usable compiled code for this key
starts one builder (``python -m harness._compiled._module_cache build ENTRY``) in its own session, at
the lowest priority (nice 19, one thread), and runs the numpy path
itself; the builder starts compiling once that process has ended (or after a minute), finishes
whatever happens to its parent, and the next run adopts what it built.
``HARNESS_BUILD=wait`` (the test suite, ``harness doctor --rebuild``, `harness._compiled.kernels()`)
waits for it instead, saying so; ``HARNESS_BUILD=never`` starts none.

An entry is a directory named by `_ahead_of_time.build_key()` (the kernel sources, numba's, numpy's
and Python's versions, the CPU):

- ``module.json`` beside the module file: built ahead of time by ``numba.pycc``; the builder loads it
  in a child process and runs one stage before recording its size and SHA-256, and every process
  checks both before it loads the file (a truncated module would kill the process with SIGBUS, a
  damaged one with SIGSEGV; a mismatch is removed and rebuilt instead).
- ``jit.json``: numba's own cache (``cache=True``, numba's documented way to keep compiled code
  between processes) is filled for this key. The builder does this where ``numba.pycc`` is not
  importable (pending deprecation since numba 0.57: the day it is removed this is the default path)
  or its build failed, or with ``HARNESS_AHEAD_OF_TIME=0``.
- ``failed.json``: why the build failed, remembered so that it is not retried on every run; a new
  key (an edit, an upgrade) or ``harness doctor --rebuild`` retries, and so does any change to the
  installed packages the build reads (`environment_stamp`): a build that failed because a package was
  being installed under it (``pip install`` into the same environment while it compiled) is retried
  once the installation has settled, not remembered.
- ``build.lock`` (held by the running builder), ``building.json`` (its pid and start) and
  ``build.log`` (its output); ``build-*`` scratch folders of a builder that was killed are removed by
  the next builder.

Beside numba's cache (``NUMBA_CACHE_DIR``, else this package's ``__pycache__``), ``harness-jit.lock``
is held while a builder compiles: the ahead-of-time build also fills numba's cache with the callees it
compiles, and builders of different entries sharing that cache (two cache directories, the fallback
after a failed build) then compile one after the other, the later one loading what the earlier one
compiled instead of compiling it again at the same time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from ..errors import HarnessInputError
from ._ahead_of_time import EXPORTED, MODULE_NAME, build_key

DIRECTORY_VARIABLE = "HARNESS_AHEAD_OF_TIME_DIR"
BUILD_VARIABLE = "HARNESS_BUILD"
BUILD_MODES = ("background", "wait", "never")
HERE = Path(__file__).resolve().parent
FAILURE = "harness: build failed: "  # how a builder reports why, in one line
# what the builder's process may use: one thread, so that on a 2-core machine the run it serves keeps a core
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMBA_NUM_THREADS")}

_started: list = []  # background builders this process started (kept referenced: no ResourceWarning)


class CacheInputError(HarnessInputError):
    """A setting of the cache or the build the harness cannot use (the CLI: one line, exit 2)."""


def build_mode() -> str:
    """``HARNESS_BUILD``: 'background' (default), 'wait' or 'never'; anything else is refused."""
    value = os.environ.get(BUILD_VARIABLE, "").strip().lower() or "background"
    if value not in BUILD_MODES:
        raise CacheInputError(f"{BUILD_VARIABLE}={os.environ[BUILD_VARIABLE]!r} is not one of "
                              f"{', '.join(BUILD_MODES)}")
    return value


# ------------------------------------------------------------------------------- where the cache lives
def _usable(directory: Path) -> str | None:
    """None if `directory` can hold cache entries (created if needed, a file can be written there),
    else why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
            pass
    except OSError as err:
        return f"{directory}: {err.strerror or err}"
    return None


def _candidates() -> list[tuple[Path, str]]:
    """(directory, what chose it), in order of preference."""
    found = []
    if os.environ.get(DIRECTORY_VARIABLE):
        found.append((Path(os.environ[DIRECTORY_VARIABLE]), DIRECTORY_VARIABLE))
    if os.environ.get("NUMBA_CACHE_DIR"):
        found.append((Path(os.environ["NUMBA_CACHE_DIR"]) / "harness-ahead-of-time", "NUMBA_CACHE_DIR"))
    found.append((HERE / "__pycache__" / "ahead-of-time", "the package's __pycache__"))
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    found.append((base / "harness" / "ahead-of-time", "the user's cache directory"))
    return found


def cache_directory() -> tuple[Path | None, str]:
    """(where built modules live, a note): ``HARNESS_AHEAD_OF_TIME_DIR`` if set, else beside numba's
    cache (``NUMBA_CACHE_DIR``), else this package's ``__pycache__``, else the user's cache directory;
    the first of those that can be written. The note says why a preferred one was passed over (empty
    if none was); the directory is None if none can be written."""
    skipped = []
    for directory, chosen_by in _candidates():
        why_not = _usable(directory)
        if why_not is None:
            note = f"{'; '.join(skipped)}; using {directory}" if skipped else ""
            return directory, note
        skipped.append(f"{chosen_by} unusable ({why_not})")
    return None, "; ".join(skipped)


def module_name() -> str:
    return MODULE_NAME + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")


# the packages the build imports: numba compiles the kernels, scipy's BLAS serves their products
BUILD_PACKAGES = ("numba", "llvmlite", "numpy", "scipy")


def environment_stamp() -> str:
    """Where the packages the build imports are installed and when their files last changed (each
    package's __init__.py, found without importing it: its path and status-change time, which any
    reinstall moves). A build failure is remembered only under the same stamp."""
    parts = []
    for name in BUILD_PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        try:
            changed = os.stat(origin).st_ctime_ns if origin else None
        except OSError:
            changed = None
        parts.append(f"{name}:{origin}:{changed}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Entry:
    """The cache entry of one key: its files and their states."""

    def __init__(self, directory: Path, key: str | None = None):
        self.key = key or build_key()
        self.path = directory / self.key
        self.module = self.path / module_name()
        self.record = self.path / "module.json"
        self.jit = self.path / "jit.json"
        self.failed = self.path / "failed.json"
        self.lock = self.path / "build.lock"
        self.building = self.path / "building.json"
        self.log = self.path / "build.log"

    def remembered_failure(self) -> dict | None:
        """The recorded failure of this entry's build, or None: none recorded, or recorded in an
        installation that has changed since (see `environment_stamp`; a record without a stamp holds)."""
        failed = self.read(self.failed)
        if failed is None:
            return None
        stamp = failed.get("environment")
        return failed if stamp is None or stamp == environment_stamp() else None

    def record_failure(self, reason: str) -> None:
        self.write(self.failed, {"reason": reason, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                 "environment": environment_stamp()})

    def read(self, which: Path) -> dict | None:
        """A JSON record of this entry, or None if absent or unreadable (a damaged record counts as none)."""
        try:
            value = json.loads(which.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def write(self, which: Path, value: dict) -> None:
        """Write a JSON record atomically (a reader sees the old one or the whole new one)."""
        fd, scratch = tempfile.mkstemp(dir=self.path, prefix=f".{which.name}-")
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(value, file)
            os.chmod(scratch, 0o644)  # readable by whoever shares the cache, as the module is
            os.replace(scratch, which)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise

    def builder(self) -> dict | None:
        """The running builder ({'pid', 'started', ...}) if one holds the lock, else None."""
        if not self.lock.exists():
            return None
        try:
            fd = os.open(self.lock, os.O_RDWR)
        except OSError:
            return None
        try:
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self.read(self.building) or {"pid": "?"}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except ImportError:
            return None
        finally:
            os.close(fd)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_module(entry: Entry) -> str | None:
    """None if the module file is the one the builder recorded (size, then SHA-256), else why not."""
    record = entry.read(entry.record)
    if record is None:
        return "no record of its size and hash"
    try:
        size = entry.module.stat().st_size
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if size != record.get("size"):
        return f"size {size} bytes where the build recorded {record.get('size')}"
    if sha256(entry.module) != record.get("sha256"):
        return "its SHA-256 differs from the one the build recorded"
    return None


def import_module(path: Path):
    """Import the module file at `path` (the dlopen included) and check its exports; raises on failure."""
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not an extension module")
    module = importlib.util.module_from_spec(spec)  # the dlopen happens here
    spec.loader.exec_module(module)
    missing = [name for name in EXPORTED if not hasattr(module, name)]
    if missing:
        raise ImportError(f"{path} lacks {', '.join(missing)}")
    return module


def discard(entry: Entry, why: str) -> None:
    """Remove a module that failed its check (and its record), so that the next build replaces it."""
    for path in (entry.module, entry.record):
        with contextlib.suppress(OSError):
            path.unlink()
    print(f"harness: the cached compiled module {entry.module} was removed ({why}); it will be rebuilt",
          file=sys.stderr, flush=True)


def load_module(entry: Entry):
    """(the verified module, '') or (None, why not): never loads a file that does not match its record;
    a mismatch or a load failure removes the file."""
    if not entry.module.exists():
        return None, "not built"
    why = check_module(entry)
    if why is not None:
        if entry.builder() is None:
            discard(entry, why)
        return None, f"the cached module failed its check ({why})"
    try:
        return import_module(entry.module), ""
    except Exception as err:  # noqa: BLE001 (any load failure: fall back, rebuild)
        why = f"it does not load: {type(err).__name__}: {err}"
        if entry.builder() is None:
            discard(entry, why)
        return None, f"the cached module failed to load ({why})"


def jit_ready(entry: Entry) -> tuple[object | None, str]:
    """(numba's just-in-time functions, why they run) if the builder filled numba's cache for this key
    and the entries are still there, else (None, why not). Imports numba."""
    record = entry.read(entry.jit)
    if record is None:
        return None, "not built"
    try:
        from ._warmup import _is_cached as is_cached, just_in_time_kernels

        functions = just_in_time_kernels()
        if not all(is_cached(f) for f in vars(functions).values()):
            return None, "numba's cache no longer holds the functions"
    except Exception as err:  # noqa: BLE001 (numba or its cache unusable: numpy runs)
        return None, f"numba's just-in-time functions cannot load ({type(err).__name__}: {err})"
    return functions, record.get("why", "")


# ------------------------------------------------------------------------------------ starting builds
def _builder_environment() -> dict:
    """The builder's environment: this package importable, one thread, and no unusable NUMBA_CACHE_DIR
    (numba refuses to decorate cached functions under one; its default location serves instead)."""
    env = dict(os.environ)
    package_root = str(HERE.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(ONE_THREAD)
    if env.get("NUMBA_CACHE_DIR") and _usable(Path(env["NUMBA_CACHE_DIR"])) is not None:
        del env["NUMBA_CACHE_DIR"]
    env.pop(BUILD_VARIABLE, None)
    return env


def start_build(entry: Entry, background: bool = True) -> tuple[int | None, str]:
    """Start the builder for `entry` unless one runs: (its pid, '') or (None, why none was started).
    The lock is taken here and handed to the builder (so no second build can start in between, and
    the lock is held as long as the builder lives, whatever happens to this process)."""
    import fcntl

    try:
        entry.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(entry.lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        return None, f"cannot create {entry.lock} ({err.strerror})"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None, "already building"
        log = open(entry.log, "ab")
        command = [sys.executable, "-m", "harness._compiled._module_cache", "build", str(entry.path.parent),
                   entry.key, str(fd), str(os.getpid())] + (["--background"] if background else [])
        process = subprocess.Popen(command, env=_builder_environment(), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, pass_fds=(fd,), start_new_session=True)
        log.close()
        _started.append(process)
        return process.pid, ""
    except OSError as err:
        return None, f"cannot start the builder ({err.strerror})"
    finally:
        os.close(fd)  # the builder keeps its copy (and so the lock)


def wait_for_builder(entry: Entry, say) -> None:
    """Block until no builder holds `entry`'s lock, saying once (through `say`) whom it waits for."""
    import fcntl

    running = entry.builder()
    if running is None:
        return
    say(f"harness: waiting for the compiled module's build by process {running.get('pid')} (log: {entry.log}) ...")
    fd = os.open(entry.lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)
    for process in _started:
        process.poll()  # reap a builder this process started (no zombie left while it runs on)


def forget(entry: Entry) -> None:
    """Remove what a build left (module, records, failures), so that the next build starts afresh."""
    for path in (entry.module, entry.record, entry.jit, entry.failed):
        with contextlib.suppress(OSError):
            path.unlink()


def describe(entry: Entry | None = None) -> str:
    """What the cache holds for this code on this machine, in one clause, without loading or building
    anything (what `harness doctor` prints)."""
    return state(entry)[1]


def state(entry: Entry | None = None) -> tuple[bool, str]:
    """(a run can use the compiled code now, `describe`'s clause)."""
    if entry is None:
        directory, note = cache_directory()
        if directory is None:
            return False, f"no writable cache directory ({note}): runs use numpy"
        if note:  # a preferred directory was passed over: say which and why
            usable, clause = state(Entry(directory))
            return usable, f"{clause} [{note}]"
        entry = Entry(directory)
    running = entry.builder()
    if running is not None:
        since = running.get("started")
        age = f" for {time.time() - since:.0f} s" if isinstance(since, (int, float)) else ""
        return False, (f"being built by process {running.get('pid')}{age} (log: {entry.log}); runs use numpy "
                       "until it is done")
    if entry.module.exists():
        why = check_module(entry)
        if why is None:
            return True, f"built ahead of time, size and SHA-256 as recorded at build: {entry.module}"
        return False, f"the cached module {entry.module} is damaged ({why}): the next run removes it and rebuilds it"
    jit = entry.read(entry.jit)
    if jit is not None:
        return True, f"numba's just-in-time functions from numba's cache ({jit.get('why')})"
    failed = entry.remembered_failure()
    if failed is not None:
        return False, (f"the build failed at {failed.get('when')} ({failed.get('reason')}); runs use numpy; "
                       "`harness doctor --rebuild` retries")
    return False, (f"not built yet for this code ({entry.path}): the first run starts the build in the "
                   "background and uses numpy meanwhile")


# ------------------------------------------------------------------------------------ the builder
def _lower_priority() -> None:
    """Nice 19: the builder gets about 1.5 % of a core that a normal-priority process wants, and the
    cores nothing else wants. (Not the idle scheduling class: on a machine that is never idle, a shared
    CI runner say, it would never run at all.)"""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(19)


GRACE_SECONDS = 60.0  # how long a background builder leaves the run that started it alone


def _after_the_run_that_started_it(starter: int) -> None:
    """Wait until the process that started this builder (pid `starter`) has ended (a short run, such as
    `harness reproduce`, then never shares the CPU with it), or `GRACE_SECONDS` have passed (a long run or
    an interactive session shares it with a builder at the lowest priority). The starter's pid comes
    from the starter: a run that ended before this process got here has already handed it to another
    parent, and nothing is left to wait for."""
    deadline = time.monotonic() + GRACE_SECONDS
    while os.getppid() == starter and time.monotonic() < deadline:
        time.sleep(0.2)


def explain(err: BaseException, directory: Path) -> str:
    """One line for a failed build; a full disk is named as such (the C compiler reports it as a link
    failure)."""
    first_sentence = (str(err).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
    if len(first_sentence) > 200:  # a compiler's whole command line, say
        first_sentence = first_sentence[:200] + " ..."
    said = f"{type(err).__name__}: {first_sentence}"
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device holding {directory}"
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(directory).free
        if free < 64 << 20:  # the compiler's own message would not say so
            return (f"the disk holding {directory} is full ({free >> 20} MB free; the build ended in "
                    f"{type(err).__name__})")
    return said


def _verify_in_child(path: Path) -> str | None:
    """Load the module at `path` in a child process and run one stage there; None if that worked,
    else why not (a crash of the child, its signal included, cannot take the builder down)."""
    code = ("import sys\nfrom harness._compiled._module_cache import import_module\n"
            "from harness._compiled._ahead_of_time import example_arguments\n"
            "m = import_module(__import__('pathlib').Path(sys.argv[1]))\n"
            "m.mlp_stage(*example_arguments()['mlp_stage'])\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          env=_builder_environment(), timeout=300)
    if done.returncode == 0 and done.stdout.strip().endswith("ok"):
        return None
    if done.returncode < 0:
        return f"loading it killed a test process with signal {-done.returncode}"
    return ((done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the C compiler, the test load)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _pycc_importable() -> str | None:
    """None if numba.pycc can be imported, else why not."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its pending-deprecation notice
            import numba.pycc  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return f"numba.pycc is not importable ({type(err).__name__}: {err})"
    return None


def _build_module(entry: Entry, scratch: Path) -> str | None:
    """Build the module ahead of time into the folder `scratch`, test-load it in a child, record its size
    and hash and move it into place; None on success, else why not."""
    from ._ahead_of_time import compile_module

    try:
        started, cpu = time.perf_counter(), _cpu_seconds()
        try:
            with _numba_cache_lock():  # its callees go to numba's cache (cache=True), shared with the fallback
                compile_module(str(scratch))
        except Exception as err:  # noqa: BLE001 (any failure means: fall back, saying why)
            return explain(err, entry.path)
        built = scratch / module_name()
        why = _verify_in_child(built)
        if why is not None:
            return f"the module built does not load: {why}"
        record = {"size": built.stat().st_size, "sha256": sha256(built), "wall_seconds":
                  round(time.perf_counter() - started, 1), "cpu_seconds": round(_cpu_seconds() - cpu, 1),
                  "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.replace(built, entry.module)  # one rename: a reader sees no module or the whole of it
        entry.write(entry.record, record)
        return None
    except OSError as err:
        return explain(err, entry.path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _numba_cache_lock():
    """Hold a lock beside numba's cache (``NUMBA_CACHE_DIR``, else this package's ``__pycache__``) for
    the block: builders of two entries that share numba's cache (two cache directories, say, or two
    CPU targets' fallbacks) then compile one after the other, and the second loads what the first
    compiled instead of compiling it again at the same time. Without a writable place, no lock."""
    import fcntl

    directory = Path(os.environ.get("NUMBA_CACHE_DIR") or HERE / "__pycache__")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "harness-jit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _fill_jit_cache(entry: Entry, why_jit: str) -> str | None:
    """Compile numba's just-in-time functions once (numba writes them to its cache) and record that;
    None on success, else why not."""
    try:
        started = time.perf_counter()
        from ._warmup import _is_cached, just_in_time_kernels, warm_up

        with _numba_cache_lock():
            warm_up(lambda: None)  # compiles the dispatchers it calls; numba writes them to its cache
        if not all(_is_cached(f) for f in vars(just_in_time_kernels()).values()):
            return "numba did not write its cache (is its cache directory writable?)"
        entry.write(entry.jit, {"why": why_jit, "wall_seconds": round(time.perf_counter() - started, 1),
                                "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", "numba's default")})
    except Exception as err:  # noqa: BLE001
        return explain(err, entry.path)
    return None


def build(directory: str, key: str, lock_fd: int, starter: int, background: bool) -> int:
    """The builder's work (it holds the lock through `lock_fd`; `starter` is the pid of the run that
    started it): scratch folders of killed builders removed, then the module built ahead of time, or
    numba's cache filled where that cannot be; the outcome recorded. Exit status 0 if something usable
    was made."""
    entry = Entry(Path(directory), key)
    entry.write(entry.building, {"pid": os.getpid(), "started": time.time(), "background": background})
    if background:
        _lower_priority()
        _after_the_run_that_started_it(starter)
    try:
        for stale in entry.path.glob("build-*"):  # this process holds the lock: no other builder runs
            shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=entry.path))  # removed by `_build_module`
        wanted = os.environ.get("HARNESS_AHEAD_OF_TIME", "").strip().lower() not in ("0", "false", "no", "off")
        why_not = _pycc_importable() if wanted else "HARNESS_AHEAD_OF_TIME=0"
        if why_not is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            failure = _build_module(entry, scratch)
            if failure is None:
                with contextlib.suppress(OSError):
                    entry.failed.unlink()
                print("harness: built the compiled module", entry.module, flush=True)
                return 0
            why_not = f"the ahead-of-time build failed ({failure})"
        print(f"harness: {why_not}; filling numba's cache instead", flush=True)
        failure = _fill_jit_cache(entry, why_not)
        if failure is None:
            return 0
        entry.record_failure(f"{why_not}; numba's just-in-time compilation failed ({failure})")
        print(f"{FAILURE}{failure}", flush=True)
        return 1
    except Exception as err:  # noqa: BLE001 (a full disk at mkdtemp, say: remembered like any failure)
        failure = explain(err, entry.path)
        with contextlib.suppress(OSError):
            entry.record_failure(failure)
        print(f"{FAILURE}{failure}", flush=True)
        return 1
    finally:
        with contextlib.suppress(OSError):
            entry.building.unlink()


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "build":
        sys.exit(build(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), "--background" in sys.argv[6:]))
    sys.exit(f"usage: python -m {__spec__.name} build DIRECTORY KEY LOCK_FD STARTER_PID [--background]")
