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
