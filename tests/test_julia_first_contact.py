"""Issue 13's Python-side fixes, tested without Julia: a Julia error or a failed start is one failed
gradcheck row, an adjoint that stopped before t0 raises, the forward-sensitivity size guard, the
Backsolve reconstruction check, `gradcheck --backend julia`, and the environment files."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness.sensitivity import register_engine, unregister_engine

from harness.errors import (
    BackendError,
    BackendUnavailableError,
    HarnessInputError,
    RefusedError,
    SolverError,
    UnstableBacksolveError,
)
from harness import SolveOptions
from harness.gradcheck import check_case, run_gradcheck
from harness.julia import JuliaAdjoint, JuliaForwardSensitivity, environment, julia_engines, julia_status
from harness.julia.guards import (
    MAX_IMPLICIT_AUGMENTED_STATES,
    check_adjoint_reached_start,
    check_forward_sensitivity_size,
    check_reconstruction,
)
from harness.julia.runtime import julia_errors, one_line
from harness.model import MLP
from harness.problems import Problem, seed_problem
from harness.sensitivity import InterpolatingAdjoint

ROOT = Path(__file__).resolve().parent.parent
GLUE = (ROOT / "harness" / "julia" / "HarnessJL.jl").read_text()
JULIA_ABSENT = not julia_status().available


class _JuliaLikeError(Exception):
    """What juliacall raises is a plain Exception subclass with a multi-line Julia message."""


class _EngineThatRaises:
    """An engine whose computation raises inside `julia_errors`, as a Julia engine's does when
    juliacall raises (MethodError, OutOfMemoryError): no Julia result is made up, only the error."""

    name = "JuliaEngineThatRaises"

    def compute(self, problem, theta, options):
        with julia_errors(self.name):
            raise _JuliaLikeError("MethodError: no method matching f(::Py)\nClosest candidates are:\n  f(::Int)")


# ----------------------------------------------------------------------------- defect 4: one row each
def test_a_julia_error_is_one_failed_row_and_the_other_rows_still_run():
    problem = seed_problem(batch=4)
    # registered for this test only
    register_engine(_EngineThatRaises, backend="julia", uses_harness_solvers=False)
    try:
        case = check_case(problem, "DP5", 1e-6, [_EngineThatRaises(), InterpolatingAdjoint()])
    finally:
        unregister_engine(_EngineThatRaises)
    failed, python = case.rows
    assert failed.status == "failed" and not failed.ok
    assert failed.reason == "JuliaEngineThatRaises: _JuliaLikeError: MethodError: no method matching f(::Py)"
    assert python.status == "ok" and python.rel_error <= python.bound


@pytest.mark.skipif(not JULIA_ABSENT, reason="checks the failed-start path, which needs Julia to be absent")
def test_a_julia_engine_that_cannot_start_is_one_unavailable_row():
    # The engine declares its availability (harness.julia.julia_status), so gradcheck shows the
    # reason in one row before anything tries to start Julia, and the other rows still run.
    case = check_case(seed_problem(batch=4), "DP5", 1e-6, [JuliaAdjoint("GaussAdjoint"), InterpolatingAdjoint()])
    assert case.rows[0].status == "unavailable" and "juliacall" in case.rows[0].reason
    assert case.rows[1].status == "ok"


def test_julia_errors_passes_harness_errors_and_reports_the_rest_in_one_line():
    for error in (SolverError("Julia Tsit5", 1.0, 10.0, "retcode MaxIters"), HarnessInputError("bad"),
                  UnstableBacksolveError("unstable"), BackendUnavailableError("absent")):
        with pytest.raises(type(error)), julia_errors("e"):
            raise error
    with pytest.raises(BackendError, match=r"^e: MemoryError: out of memory$"), julia_errors("e"):
        raise MemoryError("out of memory\n  stacktrace line")
    with pytest.raises(KeyboardInterrupt), julia_errors("e"):
        raise KeyboardInterrupt
    assert one_line(_JuliaLikeError("")) == "_JuliaLikeError: (no message)"
    assert len(one_line(_JuliaLikeError("x" * 1000), limit=50)) == 50


# ----------------------------------------------------------------------------- defect 3: partial adjoints
def test_an_adjoint_that_stopped_before_t0_raises():
    with pytest.raises(SolverError, match=r"Julia GaussAdjoint \(backward\) failed at t = 7\.5 \(target t = 0\)"):
        check_adjoint_reached_start(False, 7.5, 0.0, "Julia GaussAdjoint")
    assert check_adjoint_reached_start(True, 0.0, 0.0, "Julia GaussAdjoint") is None


def test_the_glue_makes_t0_an_observation_time_and_reports_whether_it_was_reached():
    # The sentinel the Python check reads: a zero loss column at t0, whose callback runs only when
    # the backward solve reaches t0, and the flag returned next to the gradients.
    assert "with_start_time(collect(Float64, ts), collect(Float64, G), sol.prob.tspan[1])" in GLUE
    assert "i == 1 && (reached_start[] = true)" in GLUE
    assert "reached_start[], earliest[])" in GLUE


# ----------------------------------------------------------------------------- defect 5: jac_prototype
def test_only_the_adjoints_with_their_own_adjoint_jacobian_get_a_jac_prototype():
    assert 'const READS_JAC_PROTOTYPE = ("GaussAdjoint", "QuadratureAdjoint")' in GLUE
    assert "jac_prototype = with_prototype ? zeros(n, n) : nothing" in GLUE


# ----------------------------------------------------------------------------- defect 2: size guard
def _sized_problem(batch: int, decay) -> Problem:
    """A problem of gradcheck's shapes (MLP 2-3-2, P = 17) without generating data: the size guard
    reads only the sizes, and a short span keeps the Python reference cheap."""
    model = MLP((2, 3, 2), decay=None if decay is None else np.asarray(decay, dtype=float))
    rng = np.random.default_rng(0)
    z0 = rng.uniform(-2.0, 2.0, size=(batch, 2))
    return Problem(model, model.init(rng), z0, 0.0, np.array([0.1]), np.zeros((1, batch, 2)), name="sized")


def test_forward_sensitivity_refuses_the_gradcheck_sizes_before_julia_starts():
    engine = JuliaForwardSensitivity()
    # gradcheck's stiff case: B = 100, n = 200, P = 17 -> 43 600 augmented states.
    stiff = _sized_problem(100, [1.0, 1000.0])
    with pytest.raises(RefusedError, match=r"43600 states \(n = 200, P = 17\)"):
        engine.compute(stiff, stiff.theta, SolveOptions("RadauIIA5", 1e-8, 1e-8))
    seed = _sized_problem(500, None)  # explicit: 1000^2 (1000 + 17) multiply-adds per right-hand side
    with pytest.raises(RefusedError, match=r"1\.0e\+09 multiply-adds"):
        engine.compute(seed, seed.theta, SolveOptions("DP5", 1e-8, 1e-8))
    # In gradcheck it is a "refused" row (n = 60: 4680 augmented states) where Julia is available;
    # here the engine's declared availability comes first and the row says why Julia is absent.
    case = check_case(_sized_problem(30, [1.0, 1000.0]), "RadauIIA5", 1e-6, [engine, InterpolatingAdjoint()])
    if JULIA_ABSENT:
        assert case.rows[0].status == "unavailable" and case.rows[0].ok
    else:
        assert case.rows[0].status == "refused" and case.rows[0].ok and "4680 states" in case.rows[0].reason
    assert case.rows[1].status == "ok"


def test_forward_sensitivity_size_limits():
    check_forward_sensitivity_size(16, 17, True, "RadauIIA5")  # the selftest's B = 8
    check_forward_sensitivity_size(200, 17, False, "Vern9")  # B = 100 explicit: 8.7e6
    m_limit = MAX_IMPLICIT_AUGMENTED_STATES
    n = int((-(18) + np.sqrt(18**2 + 4 * m_limit)) / 2)  # largest n with n (18 + n) <= limit
    check_forward_sensitivity_size(n, 17, True, "Rodas5P")
    with pytest.raises(RefusedError):
        check_forward_sensitivity_size(n + 1, 17, True, "Rodas5P")
    assert issubclass(RefusedError, HarnessInputError)  # the CLI: one line, exit 2


def test_bench_rows_leave_out_the_forward_sensitivity_reference():
    assert any(isinstance(e, JuliaForwardSensitivity) for e in julia_engines())
    assert not any(isinstance(e, JuliaForwardSensitivity) for e in julia_engines(reference=False))


# ----------------------------------------------------------------------------- defect 6: Backsolve
def test_backsolve_reconstruction_check_matches_the_python_one():
    z0 = np.array([[1.0, -2.0], [0.5, 0.0]])
    # error in tolerances: |Δ| / (atol + rtol |z0|); 1e-6 off at atol = rtol = 1e-8 on z0 = 0 -> 100
    z_back = z0.copy()
    z_back[1, 1] += 1e-6
    assert check_reconstruction(z_back, z0, 1e-8, 1e-8, 1e4, "e") == pytest.approx(100.0)
    with pytest.raises(UnstableBacksolveError, match=r"error of 100 tolerances \(limit 10\)"):
        check_reconstruction(z_back, z0, 1e-8, 1e-8, 10.0, "e")
    z_back[0, 0] = np.nan
    with pytest.raises(UnstableBacksolveError):
        check_reconstruction(z_back, z0, 1e-8, 1e-8, 1e4, "e")


# ----------------------------------------------------------------------------- defect 1: --backend
@pytest.mark.skipif(not JULIA_ABSENT, reason="checks the message when Julia is absent")
def test_gradcheck_backend_julia_without_julia_is_one_line():
    with pytest.raises(BackendUnavailableError, match=r"^the Julia backend is unavailable: [^\n]+$"):
        run_gradcheck(batch=4, require_julia=True)


def test_gradcheck_has_a_backend_option():
    source = (ROOT / "harness" / "cli.py").read_text()
    assert re.search(r'p\.add_argument\("--backend", choices=\("python", "julia"\)', source)
    assert "require_julia=backend == \"julia\"" in source


# ----------------------------------------------------------------------------- defects 7, 8 and item 9
def test_diffeqpy_is_not_in_the_julia_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not any(req.startswith("diffeqpy") for req in extras["julia"])
    assert {re.split(r"[<>=]", r)[0] for r in extras["julia"]} == {"juliacall", "juliapkg"}


def _deps_files_seen_from(cwd: Path) -> list[str]:
    # the repository's files, not the environment's own (juliapkg ships one in site-packages, which is
    # inside the repository when the venv is, as the README's `.venv` is)
    code = ("import juliapkg.deps as d, os, sys; root = sys.argv[1]; env = os.path.normcase(sys.prefix);"
            "print('\\n'.join(sorted(f for f in d.deps_files() if f.startswith(root) and not f.startswith(env))))")
    out = subprocess.run([sys.executable, "-c", code, os.path.normcase(str(ROOT))], cwd=cwd,
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_juliapkg_finds_the_same_file_from_any_working_directory(tmp_path):
    pytest.importorskip("juliapkg", reason="juliapkg (the julia extra) is not installed")
    from_root, from_elsewhere = _deps_files_seen_from(ROOT), _deps_files_seen_from(tmp_path)
    assert from_root == from_elsewhere == [os.path.normcase(str(ROOT / "harness" / "juliapkg.json"))]


def test_compat_tilde_and_the_julia_versions():
    assert environment.compat_allows("~1.10.3", "1.10.9") and not environment.compat_allows("~1.10.3", "1.10.2")
    assert environment.compat_allows("~1.11", "1.11.0") and not environment.compat_allows("~1.11", "1.12.0")
    compat = environment.julia_compat()
    assert all(environment.compat_allows(compat, v) for v in ("1.10.3", "1.11.5"))
    assert not any(environment.compat_allows(compat, v) for v in ("1.10.2", "1.12.1", "1.13.0", "2.0.0"))


def test_doctor_flags_a_julia_outside_the_enzyme_tested_versions(tmp_path):
    # A stand-in executable that only answers `--version` (doctor runs nothing else).
    exe = tmp_path / "julia"
    exe.write_text("#!/bin/sh\necho 'julia version 1.13.0'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    status = julia_status(run_julia=True, environ={"PYTHON_JULIAPKG_EXE": str(exe),
                                                   "PYTHON_JULIAPKG_PROJECT": str(tmp_path / "p")})
    check = next(c for c in status.checks if c.name == "julia")
    assert not check.ok and "1.13.0" in check.detail and "~1.10.3, ~1.11" in check.detail


# ----------------------------------------------------------------------------- harness julia selftest
def test_selftest_covers_every_route_sensealg_and_solver_family():
    # (the rows and their sizing in detail: tests/test_julia_second_review.py test_selftest_plan)
    from harness.julia import names
    from harness.julia.selftest import FAMILIES, family_engines

    engines = family_engines(FAMILIES[0])  # the explicit family: every route in full
    adjoints = {(e.route, e.sensealg) for e in engines if isinstance(e, JuliaAdjoint)}
    assert {(r, s) for r in names.ROUTES for s in names.ADJOINT_SENSEALGS} <= adjoints
    assert {e.route for e in engines if isinstance(e, JuliaForwardSensitivity)} == set(names.FORWARD_ROUTES)
    solvers = [f.solver for f in FAMILIES]
    assert [names.check_julia_solver(s).stiff for s in solvers] == [False] + [True] * (len(solvers) - 1)
    assert {"Rodas5P", "KenCarp4", "FBDF", "RadauIIA5"} <= set(solvers)


@pytest.mark.skipif(not JULIA_ABSENT, reason="checks the message when Julia is absent")
def test_selftest_without_julia_is_one_line_exit_2():
    import argparse

    from harness.julia import cli as julia_cli

    parser = argparse.ArgumentParser()
    julia_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["julia", "selftest", "--json"])
    # harness.cli.main prints a BackendUnavailableError as one line and exits with status 2.
    with pytest.raises(BackendUnavailableError, match=r"^the Julia backend is unavailable: [^\n]+$"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["julia", "selftest", "--tol", "-1"])


# ----------------------------------------------------------------------------- item 9: worker threads
def _in_a_thread(fn):
    import threading

    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as error:  # handed back to the test thread
            out["error"] = error

    thread = threading.Thread(target=run, name="worker")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_julia_on_a_worker_thread_gets_its_own_signal_handling_or_a_one_line_refusal():
    from harness.julia.runtime import HANDLE_SIGNALS, check_thread

    environ: dict = {}
    check_thread(environ, {})  # main thread: nothing to do
    assert environ == {}
    _in_a_thread(lambda: check_thread(environ, {}))  # Julia not started yet: it will handle signals
    assert environ == {HANDLE_SIGNALS: "yes"}
    _in_a_thread(lambda: check_thread(environ, {"juliacall": object()}))  # started with it: fine
    with pytest.raises(BackendUnavailableError, match=r"thread 'worker'.*PYTHON_JULIACALL_HANDLE_SIGNALS=yes"):
        _in_a_thread(lambda: check_thread({}, {"juliacall": object()}))  # started without it
