"""`harness.gradient` itself refuses a gradient whose estimated working set cannot fit, before it
allocates: every caller is covered (the Python API, `harness compare` cells, training), not only
`gradcheck` and `reproduce`. Nothing here really allocates the refused amount: the limit is lowered
(the memory module's `available_memory`, or `ulimit -v` in a child) below the estimate, and the
problems are small enough that a missing refusal would compute the gradient and fail the test instead
of exhausting the machine, except in the child, whose address-space limit stops it cleanly."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace

import pytest

import harness
from harness import _memory_budget
from harness.compare import run_experiment
from harness.errors import HarnessInputError, RefusedError
from harness.sensitivity import GaussAdjoint, QuadratureAdjoint, gradient, resolve_engine, unregister_engine


@pytest.fixture
def tiny_memory(monkeypatch):
    """1000 bytes available: below the estimate of any gradient (20 arrays of the state at least)."""
    monkeypatch.setattr(_memory_budget, "available_memory", lambda: (1000, "available on this machine"))


@pytest.fixture(scope="module")
def seed():
    return harness.seed_problem(batch=4)


@pytest.mark.parametrize("engine", ["GaussAdjoint", "ForwardSensitivity", "FiniteDifferences"])
def test_the_python_api_refuses_with_the_number_needed(tiny_memory, seed, engine):
    need = _memory_budget.gradient_memory(seed, resolve_engine(engine), "DP5")
    with pytest.raises(RefusedError) as err:
        gradient(seed, engine=engine, rtol=1e-6, atol=1e-6)
    message = str(err.value)
    assert isinstance(err.value, HarnessInputError)  # exit status 2 on the command line
    assert "\n" not in message
    assert f"needs at least {_memory_budget.gib(need.bytes)} of memory" in message
    assert "and 9.31e-07 GiB are available on this machine" in message  # 1000 bytes
    assert f"B = 4, N = 2, P = {seed.model.n_params}" in message


def test_a_gradient_that_fits_is_computed(monkeypatch, seed):
    need = _memory_budget.gradient_memory(seed, GaussAdjoint(), "DP5")
    monkeypatch.setattr(_memory_budget, "available_memory", lambda: (need.bytes, "available on this machine"))
    assert gradient(seed, engine=GaussAdjoint(), rtol=1e-6, atol=1e-6).dtheta.shape == (seed.model.n_params,)


@dataclass(frozen=True)
class OtherBackend:
    """An engine of another backend (its own solver names): counted as a plain forward solve."""

    name = "OtherBackend"

    def compute(self, problem, theta, options):
        result = gradient(problem, theta, engine=QuadratureAdjoint(), rtol=options.rtol, atol=options.atol)
        return replace(result, engine=self.name)


def test_an_engine_of_another_backend_is_checked_too(tiny_memory, seed):
    harness.register_engine(OtherBackend, backend="user-test", uses_harness_solvers=False)
    try:
        with pytest.raises(RefusedError, match="OtherBackend on seed .* needs at least"):
            gradient(seed, engine=OtherBackend(), solver="its-own-solver")
    finally:
        unregister_engine(OtherBackend)


def test_a_compare_cell_is_refused_in_its_record(tiny_memory, tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text("""
title = "memory"

[problem]
name = "seed"
batch = 4

[grid]
engines = ["GaussAdjoint"]
solvers = ["DP5"]
tolerances = [1e-6]

[reference]
engine = "ForwardSensitivity"
rtol = 1e-10
atol = 1e-10
check_engine = "none"
""")
    results = run_experiment(spec, tmp_path / "out", progress=False)
    (row,) = [r for r in results["rows"] if r["engine"] == "GaussAdjoint"]
    assert row["status"] == "failed"
    assert row["reason"].startswith("RefusedError: GaussAdjoint on seed (B = 4, N = 2, P = 17) needs at least")


def test_under_ulimit_v_the_api_refuses_before_allocating():
    """A child under a 3 GiB address-space limit asks for ForwardSensitivity with RadauIIA5 on the
    stiff variant fitted with 50 augmented dimensions: dense Newton blocks of about 44 GiB (the
    memory module's estimate). It must get the one-line refusal, not a MemoryError from numpy."""
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))\n"
        "import harness\nfrom harness.errors import RefusedError\n"
        "from harness.problems import augment_problem, stiff_problem\n"
        "problem = augment_problem(stiff_problem(batch=2), 50, seed=1)\n"
        "try:\n"
        "    harness.gradient(problem, engine='ForwardSensitivity', solver='RadauIIA5')\n"
        "except RefusedError as err:\n"
        "    print('refused:', err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = done.stdout.strip().splitlines()
    assert line.startswith("refused: ForwardSensitivity on stiff")
    assert "needs at least 44.3 GiB of memory" in line
    assert "left under this process's address-space limit (ulimit -v)" in line
