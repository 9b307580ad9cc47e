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

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled path needs numba")

import numba

import harness._compiled as compiled
from harness._compiled import _ahead_of_time
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
    report, stderr = run_gradients({"CC": "false", _ahead_of_time.DIRECTORY_VARIABLE: str(tmp_path)})
    assert "harness: the ahead-of-time build failed (" in stderr
    assert report["source"].startswith("numba's just-in-time functions (the ahead-of-time build failed")
    assert report["numba_imported"]
    assert not list(tmp_path.glob("*/*.so")), "a failed build must leave no module behind"
    problem = seed_problem(batch=16)
    for (name, solver), jit_row in zip(CASES, report["rows"]):
        aot = gradient(problem, engine=_engine(name), solver=solver, rtol=1e-6, atol=1e-6).dtheta
        jit = np.asarray(jit_row)
        assert np.max(np.abs(aot - jit)) <= SAME_CODE * np.max(np.abs(jit)), (name, solver)
    assert module is compiled.kernels()


def test_the_cache_key_follows_the_sources_and_the_directory_variable(tmp_path, monkeypatch):
    """Another source text gives another entry (so an edit rebuilds); HARNESS_AHEAD_OF_TIME_DIR moves it."""
    key = _ahead_of_time.build_key()
    assert len(key) == 20 and key == _ahead_of_time.build_key()
    original = _ahead_of_time.HERE
    fake = tmp_path / "package"
    fake.mkdir()
    for source in original.glob("*.py"):
        (fake / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(_ahead_of_time, "HERE", fake)
    assert _ahead_of_time.build_key() == key
    (fake / "_adaptive_loop.py").write_text((original / "_adaptive_loop.py").read_text() + "\n# edited\n")
    assert _ahead_of_time.build_key() != key
    (fake / "_whole_gradient.py").write_text("# glue that is not compiled: no rebuild\n")
    edited = _ahead_of_time.build_key()
    (fake / "_whole_gradient.py").write_text("# edited again\n")
    assert _ahead_of_time.build_key() == edited
    assert {p.name for p in _ahead_of_time._key_sources()} >= {"_unit_stage.py", "_borrowed.py", "_stage_kernels.py",
                                                                 "_rules.py", "_step_rules.py"}
    # the step rules live with the solvers and are compiled into the kernels: an edit rebuilds too
    rules = tmp_path / "_step_rules.py"
    rules.write_text(_ahead_of_time.STEP_RULES.read_text() + "\n# edited\n")
    monkeypatch.setattr(_ahead_of_time, "STEP_RULES", rules)
    assert _ahead_of_time.build_key() != edited
    monkeypatch.setenv(_ahead_of_time.DIRECTORY_VARIABLE, str(tmp_path / "built"))
    assert _ahead_of_time.module_path("k").parent == tmp_path / "built" / "k"


def test_doctor_names_where_the_kernels_come_from():
    compiled.kernels()
    line = compiled.status()
    assert "built ahead of time" in line and str(_ahead_of_time.module_path().parent.name) in line
