"""Shared fixtures."""

from __future__ import annotations

import os
import signal

import pytest

# the suite starts no background build of the compiled code: a test that uses it waits for it (once per
# key, saying so), and a test about the background build sets HARNESS_BUILD itself
os.environ.setdefault("HARNESS_BUILD", "wait")


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
