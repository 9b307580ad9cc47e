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
