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

The build runs once per key, in a builder process that `_module_cache.py` starts (in the background
by default: no run waits for it), and takes over a minute of CPU (`benchmarks/bench_first_run.py`
measures it): numba compiles the code, then the C compiler builds numba's small C runtime into the
module. It needs what any C extension needs, a C compiler and Python's headers, and ``numba.pycc``
itself, which numba has marked pending deprecation;
where any of those is missing the builder fills numba's own cache (``cache=True``) instead and later
runs use numba's just-in-time functions from there (`_module_cache.py`).

The cache entry is keyed on the kernels' source files, numba's and numpy's versions, the Python
version, the CPU (its model and feature flags: the module is compiled for this CPU's instructions, like
numba's own cache) and the target numba is told to use (``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES``,
which the module follows as numba's just-in-time compiler does), so an edit, an upgrade, another
machine or another target sharing the directory builds its own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import sys
import sysconfig
from pathlib import Path

MODULE_NAME = "harness_compiled_loop"
EXPORTED = ("forward_pass", "backward_pass", "reverse_sweep", "mlp_stage")
HERE = Path(__file__).resolve().parent
# the step rules the kernels compile from the solvers' package (`_rules.py`): part of the cache key
STEP_RULES = HERE.parent / "solvers" / "_step_rules.py"


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
    target = (os.environ.get("NUMBA_CPU_NAME", ""), os.environ.get("NUMBA_CPU_FEATURES", ""))
    for part in (*versions, _cpu_identity(), *target):
        digest.update(part.encode())
    return digest.hexdigest()[:20]


def _key_sources() -> list[Path]:
    """The files the module is made of: every kernel file (one that imports numba), the argument builders
    (they decide the signatures), this file (the build) and the step rules the kernels compile
    (`harness/solvers/_step_rules.py`), found by reading the package, so a new kernel file counts
    without a list to keep."""
    kernels = [p for p in sorted(HERE.glob("*.py")) if re.search(r"^(from|import) numba\b", p.read_text(), re.M)]
    return [*kernels, HERE / "_arguments.py", HERE / "_ahead_of_time.py", STEP_RULES]


def example_arguments() -> dict[str, tuple]:
    """Arguments of each exported function, built by the same numpy code the drivers call
    (`_arguments.py`), for a tiny problem: their numba types are the module's signatures."""
    import numpy as np

    from ..model import MLP
    from ..solvers import check_solver
    from ._arguments import (ALONE, dense_store, kept_stages, network_arguments, quadrature_rule, step_store,
                             sweep_workspace, tableau_arguments, workspace)

    model, batch = MLP((1, 1, 1)), 1
    net = network_arguments(model, np.zeros(model.n_params), batch)
    solver = check_solver("DP5")
    tableau = tableau_arguments(solver)
    s, degree = solver.tableau.n_stages, solver.tableau.dense_degree
    times, z0, z_at = np.array([1.0]), np.zeros((1, 1)), np.zeros((1, 1, 1))
    obs_step, obs_x = np.zeros(1, dtype=np.int64), np.zeros(1)
    slots, stack, sweep_work = sweep_workspace(s, 1, model.n_params, 1, -1)
    return {
        # net, tab, z0, t0, times, rtol, atol, keep_dense, work, store, z_at, obs_step, obs_x, kept
        "forward_pass": (net, tableau, z0, 0.0, times, 1e-6, 1e-6, True, workspace(s, 1, 1, 0),
                         dense_store(1, 1, degree), z_at, obs_step, obs_x, kept_stages(1, s, 1, net, True)),
        # mode, net, tab, z_at, dL_dz, t0, times, h0, rtol, atol, store, n_steps, work, u, q, nodes
        "backward_pass": (ALONE, net, tableau, z_at, z_at, 0.0, times, 0.1, 1e-6, 1e-6, dense_store(1, 1, degree),
                          1, workspace(s, 1, 1, model.n_params), np.zeros(1), np.zeros(model.n_params),
                          quadrature_rule([0.0], [2.0], degree, 1)),
        # net, tab, z0, z_at, dL_dz, hs, obs_step, obs_x, checkpoints, slots, stack, work, z_bar, q, kept
        "reverse_sweep": (net, tableau, z0, z_at, z_at, step_store(1)[1], obs_step, obs_x, -1, slots, stack,
                          sweep_work, np.zeros(1), np.zeros(model.n_params), kept_stages(1, s, 1, net, True)),
        # the network's fixed arguments (net[:8]), x, a, sign, inputs, cotangents, slopes, out_f, out_az,
        # want_f, want_vjp: as `CompiledStageVJPs` calls it
        "mlp_stage": (*net[:8], z0, z0, 1.0, net[8], net[9], net[10], z0, z0, True, True),
    }


def compile_module(directory: str) -> None:
    """Compile the module into `directory` (the builder's work, `_module_cache.build`; imports numba)."""
    import warnings

    import llvmlite.binding as llvm
    from numba import typeof
    from numba.core import codegen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba.pycc's pending-deprecation notice
        from numba.pycc import CC

    # the functions wherever the kernel files put them (`_warmup.just_in_time_kernels` names them)
    from ._warmup import just_in_time_kernels

    functions = vars(just_in_time_kernels())

    # numba's ahead-of-time code generator targets a CPU model with that model's default instruction
    # set; a virtual machine may hide some of them (AVX-512, say) behind the same model name. Target
    # the instructions this CPU reports, as numba's just-in-time generator does.
    # NUMBA_CPU_NAME / NUMBA_CPU_FEATURES choose another target, as they do for the just-in-time
    # functions (e.g. NUMBA_CPU_NAME=znver3 NUMBA_CPU_FEATURES='' measures a CPU without AVX-512)
    features = os.environ.get("NUMBA_CPU_FEATURES")
    if features is None:
        features = llvm.get_host_cpu_features().flatten()
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: features

    cc = CC(MODULE_NAME, source_module=sys.modules[functions["forward_pass"].py_func.__module__])
    cc.output_dir = directory
    cc.target_cpu = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    for name, arguments in example_arguments().items():
        cc.export(name, tuple(typeof(a) for a in arguments))(functions[name].py_func)
    cc.compile()
    built = Path(directory) / cc.output_file
    wanted = MODULE_NAME + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    if built.name != wanted:
        built.rename(Path(directory) / wanted)
