"""Is the Julia backend usable here, and if not, why? Answered without starting a download.

Importing juliacall resolves its Julia environment, which downloads Julia and packages when they are
missing; so nothing here imports juliacall or juliapkg. Instead we read what juliapkg leaves on disk:
its project directory (found the way `juliapkg.state` finds it), the `Manifest.toml` there (which
packages are installed, at which versions) and `pyjuliapkg/meta.json` (the Julia it resolved with).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The declared environment, the only juliapkg.json in the repository: juliapkg scans every sys.path
# entry and its immediate subfolders (and setuptools' editable finders), so it finds
# <site-packages>/harness/juliapkg.json, or <repo>/harness/juliapkg.json in an editable install,
# whatever the working directory. A second copy elsewhere in the repository would be seen from
# some working directories and not others, and every switch would re-resolve the environment.
JULIAPKG_JSON = Path(__file__).resolve().parent.parent / "juliapkg.json"


def required_packages(path: Path = JULIAPKG_JSON) -> dict[str, tuple[str, str]]:
    """{name: (uuid, compat)} declared in juliapkg.json."""
    spec = json.loads(Path(path).read_text())
    return {name: (p["uuid"], p.get("version", "")) for name, p in spec["packages"].items()}


def julia_compat(path: Path = JULIAPKG_JSON) -> str:
    """The Julia versions juliapkg.json allows (the ones Enzyme, a hard dependency of
    SciMLSensitivity, is tested on; juliapkg would otherwise pick the newest Julia it finds)."""
    return json.loads(Path(path).read_text())["julia"]


# ------------------------------------------------------------------------------- versions
def _version(text: str) -> tuple[int, int, int]:
    parts = [int(x) for x in re.findall(r"\d+", text.split("+")[0].split("-")[0])[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def compat_allows(compat: str, version: str) -> bool:
    """Julia [compat] semantics: "7.107" / "^7.107" = [7.107, 8), "0.7" = [0.7, 0.8), "~1.11" =
    [1.11, 1.12), "~1.10.3" = [1.10.3, 1.11), "=0.9.34" exact, and a comma-separated list is a
    union. An empty compat allows anything."""
    if not compat.strip():
        return True
    v = _version(version)
    for term in compat.split(","):
        term = term.strip()
        if term.startswith("="):
            if v == _version(term[1:]):
                return True
            continue
        if term.startswith("~"):
            lower = _version(term[1:])
            n = len(term[1:].split("."))
            # Tilde: the components written, except the last patch, may not change.
            upper = (lower[0] + 1, 0, 0) if n == 1 else (lower[0], lower[1] + 1, 0)
            if lower <= v < upper:
                return True
            continue
        term = term.lstrip("^")
        lower = _version(term)
        n = len(term.split("."))
        # The first nonzero component among those written may not change (caret rule).
        if lower[0] > 0 or n == 1:
            upper = (lower[0] + 1, 0, 0)
        elif lower[1] > 0 or n == 2:
            upper = (0, lower[1] + 1, 0)
        else:
            upper = (0, 0, lower[2] + 1)
        if lower <= v < upper:
            return True
    return False


# ------------------------------------------------------------------------------- locations
def juliapkg_project(environ=os.environ) -> Path:
    """The Julia project juliacall will use (the rules of juliapkg 0.1.28 `state.py`)."""
    for key in ("PYTHON_JULIACALL_PROJECT", "PYTHON_JULIAPKG_PROJECT"):
        if environ.get(key):
            return Path(environ[key])
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "julia_env"
    if environ.get("CONDA_PREFIX"):
        return Path(environ["CONDA_PREFIX"]) / "julia_env"
    depot = environ.get("JULIA_DEPOT_PATH", "").split(os.pathsep)[0] or str(Path.home() / ".julia")
    return Path(depot) / "environments" / "pyjuliapkg"


def find_julia(environ=os.environ) -> tuple[str | None, str]:
    """(path to a julia executable or None, where it came from), in juliapkg's order of preference."""
    for key in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE"):
        if environ.get(key):
            return environ[key], key
    prefix = juliapkg_project(environ) / "pyjuliapkg"
    try:
        meta = json.loads((prefix / "meta.json").read_text())
        if meta.get("executable") and Path(meta["executable"]).exists():
            return meta["executable"], "juliapkg's last resolve"
    except (OSError, ValueError):
        pass
    installed = prefix / "install" / "bin" / ("julia.exe" if os.name == "nt" else "julia")
    if installed.exists():
        return str(installed), "juliapkg's install"
    on_path = shutil.which("julia")
    if on_path:
        return on_path, "PATH"
    return None, "not found"


def installed_packages(project: Path) -> dict[str, str] | None:
    """{name: version} from the project's Manifest.toml, or None if there is none."""
    for name in ("Manifest.toml", "JuliaManifest.toml"):
        path = Path(project) / name
        if path.is_file():
            manifest = tomllib.loads(path.read_text())
            deps = manifest.get("deps", manifest)  # manifest format 2.0 nests under [deps]
            return {
                pkg: entries[0].get("version", "stdlib")
                for pkg, entries in deps.items()
                if isinstance(entries, list) and entries
            }
    return None


def julia_version(executable: str, timeout: float = 30.0) -> str | None:
    """`julia --version` (starts Julia briefly; downloads nothing)."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+\.\d+\.\d+\S*)", out.stdout)
    return match.group(1) if out.returncode == 0 and match else None


# ------------------------------------------------------------------------------- status
@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class JuliaStatus:
    """Whether the Julia backend can run; `reason` is one line saying why not ("" if it can)."""

    available: bool
    reason: str
    checks: tuple[Check, ...] = field(default=())


def _python_package(name: str) -> Check:
    if importlib.util.find_spec(name) is None:  # finds the package without importing it
        return Check(name, False, f"{name} is not installed (pip install -e \".[julia]\")")
    try:
        return Check(name, True, metadata.version(name))
    except metadata.PackageNotFoundError:
        return Check(name, True, "installed")


def julia_status(*, run_julia: bool = False, environ=os.environ) -> JuliaStatus:
    """Check, without downloading anything, that the Julia backend can run.

    run_julia : also run `julia --version` (about a second; `harness doctor` does).
    """
    checks = [_python_package("juliacall")]
    exe, source = find_julia(environ)
    if exe is None:
        checks.append(Check("julia", False, "no Julia found (run `harness julia setup`, or "
                                            "`harness julia setup --julia PATH` for an existing one)"))
    elif run_julia:
        version = julia_version(exe)
        if version is None:
            checks.append(Check("julia", False, f"{exe} ({source}) does not run as `julia --version`"))
        elif not compat_allows(julia_compat(), version):
            checks.append(Check("julia", False, f"Julia {version} at {exe} ({source}) is outside "
                                                f"{julia_compat()!r}, the versions Enzyme is tested on"))
        else:
            checks.append(Check("julia", True, f"Julia {version} at {exe} ({source})"))
    else:
        checks.append(Check("julia", True, f"{exe} ({source})"))
    project = juliapkg_project(environ)
    installed = installed_packages(project)
    if installed is None:
        checks.append(Check("packages", False, f"no Julia packages installed in {project} "
                                               "(run `harness julia setup`)"))
    else:
        for name, (_uuid, compat) in required_packages().items():
            if name not in installed:
                checks.append(Check(name, False, f"missing from {project} (run `harness julia setup`)"))
            elif not compat_allows(compat, installed[name]):
                checks.append(Check(name, False, f"{installed[name]} installed, {compat!r} required "
                                                 "(run `harness julia setup`)"))
            else:
                checks.append(Check(name, True, installed[name]))
    failed = [c for c in checks if not c.ok]
    reason = "" if not failed else f"{failed[0].name}: {failed[0].detail}"
    if len(failed) > 1:
        reason += f" (and {len(failed) - 1} more problem{'s' if len(failed) > 2 else ''}: `harness doctor`)"
    return JuliaStatus(not failed, reason, tuple(checks))


def doctor_report(status: JuliaStatus) -> str:
    """The `harness doctor` text: one line per backend, then the Julia checks."""
    julia_line = "available" if status.available else f"unavailable: {status.reason}"
    from .._compiled import status as compiled_status  # noqa: PLC0415

    lines = ["backends:", "  python  available (pure-Python solvers and adjoints)",
             f"  compiled  {compiled_status()}", f"  julia   {julia_line}"]
    lines.append("julia checks:")
    width = max(len(c.name) for c in status.checks)
    lines += [f"  [{'ok' if c.ok else '--'}] {c.name:<{width}}  {c.detail}" for c in status.checks]
    return "\n".join(lines)
