"""`harness julia setup`: install Julia and the packages of juliapkg.json through juliapkg, precompile.

Before anything is downloaded, `preflight` checks what can be checked cheaply (juliacall installed,
a Julia found or Julia's download server reachable, the package server reachable when packages are
missing) and returns a one-line message for a user-fixable problem; the CLI prints it and exits 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .._interrupts import raise_if_interrupt
from .environment import (
    _python_package,
    find_julia,
    installed_packages,
    juliapkg_project,
    required_packages,
)

# Where juliapkg 0.1.28 downloads Julia from (install_julia.py `_julia_versions_url`) and the
# default Julia package server (overridden by JULIA_PKG_SERVER, as Pkg does).
JULIA_VERSIONS_URL = "https://julialang-s3.julialang.org/bin/versions.json"
DEFAULT_PKG_SERVER = "https://pkg.julialang.org"


def reachable(url: str, timeout: float = 5.0) -> bool:
    """True if an HTTPS request to `url` gets any HTTP answer (a HEAD request, nothing downloaded)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True  # the server answered
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


@dataclass(frozen=True)
class Preflight:
    """What setup will use, or `error`: one line saying what is wrong and what to do."""

    julia: str | None
    error: str | None = None


def preflight(julia_arg: str | None, environ=os.environ, probe=reachable) -> Preflight:
    """Check, without downloading, that `harness julia setup` can succeed here."""
    for package in ("juliacall", "juliapkg"):
        if not _python_package(package).ok:
            return Preflight(None, f"{package} is not installed: run `pip install -e \".[julia]\"` first")
    if julia_arg is not None:
        path = shutil.which(julia_arg) or julia_arg
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return Preflight(None, f"--julia {julia_arg}: not an executable file")
        julia = str(Path(path).resolve())
    else:
        julia, _ = find_julia(environ)
    if julia is None and shutil.which("juliaup") is None and not probe(JULIA_VERSIONS_URL):
        return Preflight(None, (
            f"no Julia found and Julia's download server ({_host(JULIA_VERSIONS_URL)}) is unreachable "
            "from this machine: install Julia 1.10+ yourself (https://julialang.org/downloads) and run "
            "`harness julia setup --julia /path/to/julia` (or set PYTHON_JULIAPKG_EXE)"
        ))
    installed = installed_packages(juliapkg_project(environ)) or {}
    missing = [name for name in required_packages() if name not in installed]
    server = environ.get("JULIA_PKG_SERVER") or DEFAULT_PKG_SERVER
    if missing and not probe(server if "://" in server else f"https://{server}"):
        return Preflight(julia, (
            f"{len(missing)} Julia packages to install but the package server ({_host(server)}) is "
            "unreachable from this machine: set JULIA_PKG_SERVER to a reachable mirror, or run setup "
            "where the network reaches it"
        ))
    return Preflight(julia)


def run_setup(julia: str | None = None, *, force: bool = False, check_network: bool = True,
              load_glue: bool = True, out=sys.stdout) -> int:
    """Install and precompile; returns the exit status (2: user-fixable, 1: install failed)."""
    plan = preflight(julia, probe=reachable if check_network else (lambda url: True))
    if plan.error:
        print(f"harness julia setup: {plan.error}", file=sys.stderr)
        return 2
    if julia is not None:
        # juliapkg reads this when imported, so set it first.
        os.environ["PYTHON_JULIAPKG_EXE"] = plan.julia
    start = time.perf_counter()
    import juliapkg  # noqa: PLC0415  (lazy: only setup needs it)

    print(f"resolving {len(required_packages())} Julia packages into {juliapkg_project()} "
          "(first run: downloads and precompiles, typically 10-30 min)", file=out, flush=True)
    try:
        juliapkg.resolve(force=force)
        executable = juliapkg.executable()
    except subprocess.CalledProcessError as error:
        print(f"harness julia setup: Julia's package installation failed (exit {error.returncode}); "
              "see Julia's output above", file=sys.stderr)
        return 1
    except Exception as error:  # juliapkg raises plain Exceptions (e.g. "could not find Julia")
        raise_if_interrupt(error)
        print(f"harness julia setup: {error}", file=sys.stderr)
        return 2
    resolved = time.perf_counter()
    print(f"Julia: {executable}", file=out)
    print(f"packages installed and precompiled in {resolved - start:.0f} s", file=out)
    if load_glue:
        from . import runtime  # noqa: PLC0415

        runtime.load()
        print(f"harness's Julia glue loaded in {time.perf_counter() - resolved:.0f} s", file=out)
    if julia is not None:
        print(f"keep PYTHON_JULIAPKG_EXE={plan.julia} set in later sessions so juliapkg keeps using "
              "this Julia", file=out)
    print(f"done in {time.perf_counter() - start:.0f} s", file=out)
    return 0
