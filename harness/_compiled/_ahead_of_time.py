"""The compiled loop built ahead of time: one extension module of the same numba code, loaded without numba.

A process that runs any just-in-time numba function carries numba's compiler and LLVM, about 150 MB
resident before any work (README, "Memory"). The whole loop's three entry points (`forward_pass`,
`backward_pass` of `_adaptive_loop.py`, `reverse_sweep` of `_reverse_sweep.py`) and the stage kernel
(`mlp_stage`, which the numpy driver calls) are therefore also compiled by numba's ahead-of-time
compiler (`numba.pycc`) into one extension module, for the argument types the drivers pass
(`example_arguments`), and cached on disk. Later processes import that module, which needs numpy
alone (its BLAS products call the BLAS scipy ships): no numba, no LLVM.

It is the same Python source compiled by the same numba for this CPU, so it takes the same steps and
gives the same numbers as the just-in-time functions (tests/test_compiled_loop.py runs whichever is
loaded against the numpy reference; tests/test_ahead_of_time.py compares the two).

The build runs once, in a child process (``python -m harness._compiled._ahead_of_time DIRECTORY``),
about half a minute: numba compiles the code, then the C compiler builds numba's small C runtime into
the module. It needs what any C extension needs, a C compiler and Python's headers; where the build
fails, `load_or_build` says why and the caller falls back to numba's just-in-time functions.

The cache entry is keyed on the kernels' source files, numba's and numpy's versions, the Python
version and the CPU (its model and feature flags: the module is compiled for this CPU's instructions, like numba's
own cache), so an edit, an upgrade or another machine sharing the directory builds its own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

MODULE_NAME = "harness_compiled_loop"
EXPORTED = ("forward_pass", "backward_pass", "reverse_sweep", "mlp_stage")
HERE = Path(__file__).resolve().parent
# the step rules the kernels compile from the solvers' package (`_rules.py`): part of the cache key
STEP_RULES = HERE.parent / "solvers" / "_step_rules.py"
FAILURE = "harness: build failed: "  # how the child reports why, in one line


def _cpu_identity() -> str:
    """This CPU's model and instruction-set flags as the OS reports them (no LLVM needed)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part")
    seen = {}
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in wanted and key not in seen:
            seen[key] = value.strip()
    return f"{platform.machine()} " + " | ".join(f"{k}: {v}" for k, v in sorted(seen.items()))


def build_key() -> str:
    """The cache entry's name: a hash of the module's sources (`_key_sources`), numba's, numpy's and
    Python's versions and the CPU."""
    digest = hashlib.sha256()
    for source in _key_sources():
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    # numpy too: the module's C runtime is compiled against numpy's headers
    versions = (importlib.metadata.version("numba"), importlib.metadata.version("numpy"), sys.version)
    for part in (*versions, _cpu_identity()):
        digest.update(part.encode())
    return digest.hexdigest()[:20]


DIRECTORY_VARIABLE = "HARNESS_AHEAD_OF_TIME_DIR"


def _key_sources() -> list[Path]:
    """The files the module is made of: every kernel file (one that imports numba), the argument builders
    (they decide the signatures), this file (the build) and the step rules the kernels compile
    (`harness/solvers/_step_rules.py`), found by reading the package, so a new kernel file counts
    without a list to keep."""
    kernels = [p for p in sorted(HERE.glob("*.py")) if re.search(r"^(from|import) numba\b", p.read_text(), re.M)]
    return [*kernels, HERE / "_arguments.py", HERE / "_ahead_of_time.py", STEP_RULES]


def cache_directory() -> Path:
    """Where built modules live: ``HARNESS_AHEAD_OF_TIME_DIR`` if set, else beside numba's own cache
    (``NUMBA_CACHE_DIR`` if set), else this package's ``__pycache__`` if writable, else the user's cache
    directory."""
    if os.environ.get(DIRECTORY_VARIABLE):
        return Path(os.environ[DIRECTORY_VARIABLE])
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / "harness-ahead-of-time"
    beside = HERE / "__pycache__"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside / "ahead-of-time"
    except OSError:
        pass
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "harness" / "ahead-of-time"


def module_path(key: str | None = None) -> Path:
    """The built module's file for `key` (default: this code on this machine)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return cache_directory() / (key or build_key()) / (MODULE_NAME + suffix)


def load(path: Path | None = None):
    """The built module, imported (no numba involved), or None if it is not built or does not load
    (then it is removed, to be built again)."""
    path = path or module_path()
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:  # a file this machine cannot load (it should not happen: the key names the build)
        path.unlink(missing_ok=True)
        return None
    if not all(hasattr(module, name) for name in EXPORTED):
        return None
    return module


def load_or_build(on_build) -> tuple[object | None, str]:
    """(the built module or None, why): load it, or build it first (calling `on_build()` before), one
    process at a time (a lock file), in a child process. None with the reason where the build failed."""
    path = module_path()
    built = f"built ahead of time ({path.parent.name})"
    module = load(path)
    if module is not None:
        return module, built
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent / "build.lock"):
        module = load(path)  # another process may have built it while this one waited
        if module is None:
            on_build()
            failure = _build_in_child(path)
            if failure is not None:
                return None, f"the ahead-of-time build failed ({failure})"
            module = load(path)
    return module, built


class _locked:
    """An exclusive lock on `path` for a `with` block (fcntl where there is one; elsewhere none: the
    module is moved into place in one rename, so two builds at once only waste time)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.file = open(self.path, "a")
        try:
            import fcntl
        except ImportError:
            return self
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.file.close()  # closing releases the lock
        return False


def _build_in_child(path: Path) -> str | None:
    """Build the module into `path` in a child process; None on success, else the child's last line."""
    package_root = str(HERE.parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=path.parent))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness._compiled._ahead_of_time", str(scratch)],
            env=env, capture_output=True, text=True,
        )
        built = scratch / path.name
        if done.returncode != 0 or not built.is_file():
            lines = (done.stderr or done.stdout or "").strip().splitlines()
            said = [line[len(FAILURE):] for line in lines if line.startswith(FAILURE)]
            return (said or lines or [f"exit status {done.returncode}"])[-1]
        os.replace(built, path)  # one rename: a reader sees no module or the whole of it
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def example_arguments() -> dict[str, tuple]:
    """Arguments of each exported function, built by the same numpy code the drivers call
    (`_arguments.py`), for a tiny problem: their numba types are the module's signatures."""
    import numpy as np

    from ..model import MLP
    from ..solvers import check_solver
    from ._arguments import (ALONE, dense_store, network_arguments, quadrature_rule, step_store, sweep_workspace,
                             tableau_arguments, workspace)

    model, batch = MLP((1, 1, 1)), 1
    net = network_arguments(model, np.zeros(model.n_params), batch)
    solver = check_solver("DP5")
    tableau = tableau_arguments(solver)
    s, degree = solver.tableau.n_stages, solver.tableau.dense_degree
    times, z0, z_at = np.array([1.0]), np.zeros((1, 1)), np.zeros((1, 1, 1))
    piece_first = np.zeros(2, dtype=np.int64)
    slots, stack, sweep_work = sweep_workspace(s, 1, model.n_params, 1, -1)
    return {
        # net, tab, z0, t0, times, rtol, atol, keep_dense, work, store, z_at, piece_first
        "forward_pass": (net, tableau, z0, 0.0, times, 1e-6, 1e-6, True, workspace(s, 1, 1, 0),
                         dense_store(1, 1, degree), z_at, piece_first),
        # mode, net, tab, z_at, dL_dz, t0, times, h0, rtol, atol, store, piece_first, work, u, q, nodes
        "backward_pass": (ALONE, net, tableau, z_at, z_at, 0.0, times, 0.1, 1e-6, 1e-6, dense_store(1, 1, degree),
                          piece_first, workspace(s, 1, 1, model.n_params), np.zeros(1), np.zeros(model.n_params),
                          quadrature_rule([0.0], [2.0], degree, 1)),
        # net, tab, z0, z_at, dL_dz, hs, piece_first, checkpoints, slots, stack, work, z_bar, q
        "reverse_sweep": (net, tableau, z0, z_at, z_at, step_store(1)[1], piece_first, -1, slots, stack, sweep_work,
                          np.zeros(1), np.zeros(model.n_params)),
        # the network's fixed arguments (net[:8]), x, a, sign, inputs, cotangents, slopes, out_f, out_az,
        # want_f, want_vjp: as `CompiledStageVJPs` calls it
        "mlp_stage": (*net[:8], z0, z0, 1.0, net[8], net[9], net[10], z0, z0, True, True),
    }


def _compile(directory: str) -> None:
    """Compile the module into `directory` (the child process's work; imports numba)."""
    import warnings

    import llvmlite.binding as llvm
    from numba import typeof
    from numba.core import codegen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending-deprecation notice
        from numba.pycc import CC

    from . import _adaptive_loop, _reverse_sweep, _stage_kernels

    # numba's ahead-of-time code generator targets a CPU model with that model's default instruction
    # set; a virtual machine may hide some of them (AVX-512, say) behind the same model name. Target
    # the instructions this CPU reports, as numba's just-in-time generator does.
    features = llvm.get_host_cpu_features().flatten()
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: features

    cc = CC(MODULE_NAME, source_module=_adaptive_loop)
    cc.output_dir = directory
    cc.target_cpu = llvm.get_host_cpu_name()
    functions = {"forward_pass": _adaptive_loop.forward_pass, "backward_pass": _adaptive_loop.backward_pass,
                 "reverse_sweep": _reverse_sweep.reverse_sweep, "mlp_stage": _stage_kernels.mlp_stage}
    for name, arguments in example_arguments().items():
        cc.export(name, tuple(typeof(a) for a in arguments))(functions[name].py_func)
    cc.compile()
    built = Path(directory) / cc.output_file
    if built.name != module_path().name:
        built.rename(Path(directory) / module_path().name)


def _main(directory: str) -> int:
    """The child's entry point: compile, or print why not as one line (`FAILURE`) and return 1."""
    try:
        _compile(directory)
    except Exception as err:  # noqa: BLE001 (any failure means: fall back, saying why)
        first_sentence = (str(err).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
        print(f"{FAILURE}{type(err).__name__}: {first_sentence}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
