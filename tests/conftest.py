"""Shared fixtures."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

# a test that uses the compiled code waits for it (once per key, saying so) rather than running numpy,
# and a test about the background build sets HARNESS_BUILD itself
os.environ.setdefault("HARNESS_BUILD", "wait")

# diffrax's cross-checks here check numbers, never speed (benchmarks/ time it, with XLA's defaults): XLA
# compiles them without its backend optimisations, which took a quarter of their CPU (tests/test_peers.py's
# diffrax tests: 38 s -> 28 s in one process). Set before any test imports jax; a flag given is kept.
_XLA_QUICK_COMPILE = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_QUICK_COMPILE}".strip()

# the tests that ask for the compiled code: run after the others (see that file and `_start_the_build`)
COMPILED_USERS = Path(__file__).with_name("compiled_users.txt")
RECORD_VARIABLE = "HARNESS_RECORD_COMPILED_USERS"
RECORDER = Path(__file__).with_name("_recording")  # its recorder, loaded only while the list is recorded


# how much a test process lowers its priority while the compiled module is being built (see below)
YIELD_TO_THE_BUILD = 5


def _start_the_build() -> None:
    """Start the compiled module's build now (never when the compiled code is usable, being built,
    failed or turned off), at normal priority, so that it compiles on one core while the tests that do
    not need it run: a build started when the first test needs it leaves every test process waiting
    for minutes (the build is one thread). Every process that collects asks (the test process, or each
    xdist worker): the builder's lock lets one build, and the tests that need it wait for that one.

    While a build runs, this test process (and the processes its tests start) yields to it (nice +5):
    the build is the one thread every test listed in compiled_users.txt waits for, so it keeps a core
    of its own, and the tests that do not need it share what is left; with equal priorities, two test
    processes and the builder each got two thirds of a core, and the build ended later while the
    tests run before it soon ran out, leaving a core idle. Once the build has ended the priority
    changes nothing on a machine that runs only the suite."""
    if os.environ.get("HARNESS_BUILD", "").strip().lower() != "wait":
        return
    try:
        import harness._compiled as compiled
        from harness._compiled._module_cache import Entry, cache_directory

        compiled.build_now()
        directory, _ = cache_directory()
        if directory is not None and Entry(directory).builder() is not None:
            os.nice(YIELD_TO_THE_BUILD)
    except Exception:  # noqa: BLE001 (a bad setting is reported by the tests about it; the suite runs on)
        pass


def _function_id(nodeid: str) -> str:
    return re.sub(r"\[.*\]$", "", nodeid)


# fixtures that hand a test the compiled code itself (tests/test_ahead_of_time.py): a test that asks
# for one needs the build, listed or not
COMPILED_FIXTURES = ("built", "numbas_cache_filled")


def _compiled_user(item, listed: set[str], prefixes: tuple[str, ...]) -> bool:
    """Whether the test needs the compiled code: compiled_users.txt lists it by its function (every
    parametrization), by its whole id, or by a line ending in `*` that its id starts with (some of a
    function's parametrizations), or it asks for one of `COMPILED_FIXTURES`."""
    nodeid = item.nodeid
    return (_function_id(nodeid) in listed or nodeid in listed or nodeid.startswith(prefixes)
            or any(name in getattr(item, "fixturenames", ()) for name in COMPILED_FIXTURES))


def pytest_collection_modifyitems(session, config, items):
    """The tests listed in compiled_users.txt after the others, each group in its collected order (the
    same order in every xdist worker, as xdist requires); if any is selected, the build starts now.

    With HARNESS_MUTATION_FIRST=FILE,FILE,... (set by benchmarks/mutation_score.py) the tests of those
    files come first, in that order: a mutant's run stops at its first failing test, so an area's
    fast, pointed tests listed first make a killed mutant cost fractions of a second."""
    try:
        lines = [line.strip() for line in COMPILED_USERS.read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
    except OSError:
        return
    listed = {line for line in lines if not line.endswith("*")}
    prefixes = tuple(line[:-1] for line in lines if line.endswith("*"))
    first = [name for name in os.environ.get("HARNESS_MUTATION_FIRST", "").split(",") if name]

    def rank(item):
        path = item.nodeid.split("::")[0]
        return first.index(path) if path in first else len(first)

    items.sort(key=lambda item: (_compiled_user(item, listed, prefixes), rank(item)))
    if items and _compiled_user(items[-1], listed, prefixes) and not config.option.collectonly:
        _start_the_build()


# Recording compiled_users.txt (HARNESS_RECORD_COMPILED_USERS=FILE): tests/_recording's recorder
# wraps harness._compiled in this process and in every Python process a test starts; the hooks below
# keep the variables it reads current (the test running now, the shared fixtures being set up now).
_recorder = None
_fixtures_in_set_up: list = []


def pytest_configure(config):
    global _recorder
    if not os.environ.get(RECORD_VARIABLE):
        return
    os.environ[RECORD_VARIABLE] = str(Path(os.environ[RECORD_VARIABLE]).resolve())  # children's cwd varies
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(RECORDER), os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, str(RECORDER))
    import compiled_users_recorder

    _recorder = compiled_users_recorder
    _recorder.install()


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if _recorder is None:  # not recording: no bookkeeping around every fixture's set-up
        yield
        return
    _fixtures_in_set_up.append(fixturedef)
    _name_the_shared_fixtures()
    try:
        yield
    finally:
        _fixtures_in_set_up.pop()
        _name_the_shared_fixtures()


def _name_the_shared_fixtures() -> None:
    os.environ[_recorder.FIXTURES_VARIABLE] = _recorder.FIXTURE_SEPARATOR.join(
        f"{f.baseid}{_recorder.FIXTURE_FIELD}{f.argname}" for f in _fixtures_in_set_up if f.scope != "function")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """While recording: the whole protocol counts, the set-up of module- and session-scoped fixtures
    included."""
    if _recorder is None:
        yield
        return
    os.environ[_recorder.TEST_VARIABLE] = _function_id(item.nodeid)
    try:
        yield
    finally:
        os.environ.pop(_recorder.TEST_VARIABLE, None)


def pytest_sessionfinish(session):
    """While recording: each fixture line is replaced by the tests that use that fixture."""
    record = os.environ.get(RECORD_VARIABLE)
    if _recorder is None or not os.path.exists(record):
        return
    lines = Path(record).read_text().splitlines()
    asking_fixtures = {tuple(line[len(_recorder.FIXTURE_LINE):].rsplit(_recorder.FIXTURE_FIELD, 1))
                       for line in lines if line.startswith(_recorder.FIXTURE_LINE)}
    with open(record, "w") as file:
        file.writelines(line + "\n" for line in lines if not line.startswith(_recorder.FIXTURE_LINE))
        for item in session.items:
            definitions = getattr(item, "_fixtureinfo", None)
            uses = definitions.name2fixturedefs.values() if definitions is not None else ()
            if any((d.baseid, d.argname) in asking_fixtures for defs in uses for d in defs):
                file.write(_function_id(item.nodeid) + "\n")


@pytest.fixture(autouse=True)
def _compiled_mode_left_as_found():
    """A test that leaves the compiled path switched (`set_enabled` not undone, HARNESS_COMPILED set in
    os.environ) would make every later test of its process run another path than the one it means to
    test, silently: such a test fails here instead, naming the change."""
    import harness._compiled as compiled

    before = compiled._mode()
    yield
    assert compiled._mode() == before, f"the test left the compiled path's mode {before} changed to {compiled._mode()}"


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
