"""ruff (pinned in the `test` extra; rules E, F, B, settings in pyproject.toml) on the Python code,
beside the Julia lint of test_julia_lint.py: unused imports, undefined names, shadowed loop
variables and the like fail the suite, not a review."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> str:
    beside = Path(sys.executable).parent / ("ruff" + (".exe" if os.name == "nt" else ""))
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail(f"ruff not found next to {sys.executable} or on PATH: pip install -e \".[test]\"")
    return found


def test_ruff_clean():
    out = subprocess.run([_ruff(), "check", "--no-cache", "harness", "tests", "benchmarks", "tools"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_config_selects_the_rules(tmp_path):
    """The configuration really enables E, F and B: a file with one finding of each fails."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x=[]):\n    l = 1\n    return undefined_name + l\n")
    out = subprocess.run([_ruff(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                          "--output-format", "concise", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1
    for code in ("F401", "F821", "B006", "E741"):
        assert code in out.stdout, (code, out.stdout)
