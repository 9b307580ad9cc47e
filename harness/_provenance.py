"""Where a number came from: versions, git commit, machine, time."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import __version__


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name and its widest vector instructions (Linux: /proc/cpuinfo), e.g. 'AMD EPYC
    (AVX-512)', so that a reader can weigh the times quoted: numpy vectorises tanh only with AVX-512,
    and machines sold under one name come with and without it."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), None)
    if not names:
        return platform.processor() or platform.machine() or "unknown CPU"
    if flags is None:
        return names[0]
    vector = "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"
    return f"{names[0]} ({vector})"


def git_commit() -> str | None:
    """The harness checkout's commit (with '+dirty' for local changes), or None outside git.

    Changes under `reports/` do not make it dirty: they are the outputs of runs, not code, and
    regenerating the shipped reports one after another must not mark the later ones "+dirty"."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":(exclude)reports"],
            capture_output=True, text=True, timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(**extra) -> dict:
    """A dict for results files: harness version and commit, package versions, machine, time."""
    record = {
        "harness_version": __version__,
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": {
            name: _package_version(name)
            for name in ("numpy", "scipy", "matplotlib", "juliacall", "diffeqpy", "torch", "torchdiffeq",
                         "jax", "jaxlib", "diffrax")
            if _package_version(name)
        },
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu": cpu_model()},
    }
    record.update(extra)
    return record
