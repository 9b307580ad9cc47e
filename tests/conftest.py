"""Shared fixtures."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

# a test that uses the compiled code waits for it (once per key, saying so) rather than running numpy,
# and a test about the background build sets HARNESS_BUILD itself
os.environ.setdefault("HARNESS_BUILD", "wait")

# the tests that ask for the compiled code: run after the others (see that file and `_start_the_build`)
COMPILED_USERS = Path(__file__).with_name("compiled_users.txt")
RECORD_VARIABLE = "HARNESS_RECORD_COMPILED_USERS"


def _start_the_build() -> None:
    """Start the compiled module's build now (never when the compiled code is usable, being built,
    failed or turned off), at normal priority, so that it compiles on one core while the tests that do
    not need it run: a build started when the first test needs it leaves every test process waiting
    for minutes (the build is one thread). Every process that collects asks (the test process, or each
    xdist worker): the builder's lock lets one build, and the tests that need it wait for that one."""
    if os.environ.get("HARNESS_BUILD", "").strip().lower() != "wait":
        return
    try:
        import harness._compiled as compiled

        compiled.build_now()
    except Exception:  # noqa: BLE001 (a bad setting is reported by the tests about it; the suite runs on)
        pass


def _function_id(nodeid: str) -> str:
    return re.sub(r"\[.*\]$", "", nodeid)


def pytest_collection_modifyitems(session, config, items):
    """The tests listed in compiled_users.txt after the others, each group in its collected order (the
    same order in every xdist worker, as xdist requires); if any is selected, the build starts now.

    With HARNESS_MUTATION_FIRST=FILE,FILE,... (set by benchmarks/mutation_score.py) the tests of those
    files come first, in that order: a mutant's run stops at its first failing test, so an area's
    fast, pointed tests listed first make a killed mutant cost fractions of a second."""
    try:
        listed = {line.strip() for line in COMPILED_USERS.read_text().splitlines()
                  if line.strip() and not line.startswith("#")}
    except OSError:
        return
    first = [name for name in os.environ.get("HARNESS_MUTATION_FIRST", "").split(",") if name]

    def rank(item):
        path = item.nodeid.split("::")[0]
        return first.index(path) if path in first else len(first)

    items.sort(key=lambda item: (_function_id(item.nodeid) in listed, rank(item)))
    if items and _function_id(items[-1].nodeid) in listed and not config.option.collectonly:
        _start_the_build()


@pytest.fixture(autouse=True)
def _record_compiled_users(request):
    """With HARNESS_RECORD_COMPILED_USERS=FILE: append to FILE each test during which this process asked
    for the compiled code (what compiled_users.txt lists)."""
    record = os.environ.get(RECORD_VARIABLE)
    if not record:
        yield
        return
    import harness._compiled as compiled

    asked = []
    originals = {name: getattr(compiled, name) for name in ("_ready", "_load_kernels")}

    def wrap(original):
        def asking(*args, **kwargs):
            asked.append(True)
            return original(*args, **kwargs)
        return asking

    for name, original in originals.items():
        setattr(compiled, name, wrap(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(compiled, name, original)
        if asked:
            with open(record, "a") as file:
                file.write(_function_id(request.node.nodeid) + "\n")


@pytest.fixture(scope="session")
def julia_available() -> bool:
    """Whether the Julia engines can really run here (tests that expect them to be unavailable
    branch on this rather than assume it: the Julia tests run exactly where they are available)."""
    from harness.julia import julia_status  # no juliacall import: only files and the PATH are read

    return julia_status().available


@pytest.fixture
def ctrl_c_handler():
    """SIGINT raises KeyboardInterrupt in this process for the test's duration.

    Python installs that handler at start-up only if SIGINT has its default action; a suite started
    in a script's background (`nohup python -m pytest -q &`) inherits SIGINT ignored, and a test that
    raises SIGINT in-process would see nothing happen.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# Property-based tests (hypothesis): a modest number of examples so the suite stays within its time
# budget; benchmarks/mutation_score.py selects the "mutation" profile (fewer examples, and the same
# ones every run, so that a mutant's verdict does not depend on the draw).
try:
    import os

    from hypothesis import HealthCheck, settings

    settings.register_profile("harness", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("mutation", parent=settings.get_profile("harness"), max_examples=20, derandomize=True)
    settings.load_profile(os.environ.get("HARNESS_HYPOTHESIS_PROFILE", "harness"))
except ImportError:  # hypothesis is in the test extra; without it only the property-based tests fail to import
    pass
