"""Importing harness, building its CLI and asking about Julia never starts Julia.

juliacall starts a Julia process (and may install one) when imported, so the Julia modules must be
imported only when a Julia engine actually runs. This is the one import-isolation test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_importing_harness_never_imports_julia():
    code = (
        "import sys, harness, harness.cli, harness.compare, harness.julia, harness.sensitivity\n"
        "from harness.julia import julia_status, julia_engines\n"
        "harness.cli.build_parser(); julia_status(); julia_engines()\n"
        "bad = [m for m in ('juliacall', 'juliapkg', 'diffeqpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHON_JULIACALL_INIT": "no"})
    assert proc.returncode == 0, proc.stderr


def test_a_gradient_with_an_explicit_solver_leaves_out_what_it_does_not_use():
    """The gradient path (problem, engines, solvers) with DP5 imports neither scipy.integrate (the
    DP5/BS3 tableaus are written out; scipy's own methods are imported when first used), 23-29 MB
    of resident memory, nor scipy.sparse (the implicit solvers' Jacobians), about 11 MB
    (benchmarks/bench_memory.py), nor matplotlib, tqdm or the compare package."""
    code = (
        "import sys\n"
        "from harness.problems import seed_problem\n"
        "from harness.sensitivity import gradient\n"
        "gradient(seed_problem(batch=8), engine='BacksolveAdjoint', solver='DP5', rtol=1e-6, atol=1e-4)\n"
        "bad = [m for m in ('scipy.integrate', 'scipy.sparse', 'matplotlib', 'harness.compare', 'tqdm')\n"
        "       if m in sys.modules]\n"
        "assert not bad, bad\n"
        "from harness.solvers import SOLVERS\n"
        "assert SOLVERS['DP8'].scipy_class.__name__ == 'DOP853' and 'scipy.integrate' in sys.modules\n"
    )
    for compiled in ("0", "1"):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "HARNESS_COMPILED": compiled})
        assert proc.returncode == 0, (compiled, proc.stderr)


def test_the_command_lines_parser_leaves_out_matplotlib_and_scipy():
    """Every `harness` command builds the whole parser first (the compare and Julia plug-ins
    included), so whatever it imports, every command and every refused input pays: matplotlib
    (pyplot, imported by the comparison's figures and the tutorial's) took half a second of each
    one-line error; it is imported when a figure is drawn, and scipy when something is solved."""
    code = (
        "import sys\n"
        "from harness.cli import build_parser\n"
        "build_parser()\n"
        "bad = [m for m in ('matplotlib', 'scipy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
