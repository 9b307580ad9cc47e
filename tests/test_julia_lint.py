"""Lint every .jl file with pinned fatou and typos (no Julia needed): syntax errors, names not
imported explicitly, unused arguments, wrong call arity and misspelled identifiers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JL_FILES = sorted(str(p) for d in ("harness/julia", "julia_env") for p in (ROOT / d).rglob("*.jl"))


def _tool(name: str) -> str:
    """The binary next to this Python (the venv's `test` extra) or else on PATH."""
    beside = Path(sys.executable).parent / (name + (".exe" if os.name == "nt" else ""))
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH: pip install -e \".[test]\"")
    return found


def test_there_is_julia_glue():
    assert any(p.endswith("HarnessJL.jl") for p in JL_FILES)


def test_fatou_version_is_pinned():
    out = subprocess.run([_tool("fatou"), "--version"], capture_output=True, text=True, check=True)
    assert "0.24.0" in out.stdout


def test_fatou_lint_clean():
    # fatou.toml at the repository root enables undefined-name, unused-argument and call-arity.
    out = subprocess.run([_tool("fatou"), "lint", "--config", str(ROOT / "fatou.toml"), *JL_FILES],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_fatou_config_enables_the_strict_rules(tmp_path):
    # The lint above is only as strong as its rules: an unimported name must be a finding.
    bad = tmp_path / "bad.jl"
    bad.write_text("module Bad\nusing SciMLSensitivity: adjoint_sensitivities\n"
                   "g(sol) = undefined_adjoint(sol)\nend\n")
    out = subprocess.run([_tool("fatou"), "lint", "--config", str(ROOT / "fatou.toml"), str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "undefined-name" in out.stdout + out.stderr


def test_typos_clean():
    version = subprocess.run([_tool("typos"), "--version"], capture_output=True, text=True, check=True)
    assert "1.52.0" in version.stdout
    out = subprocess.run([_tool("typos"), *JL_FILES, "harness/julia", "julia_env"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
