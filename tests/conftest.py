"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def julia_available() -> bool:
    """Whether the Julia engines can really run here (tests that expect them to be unavailable
    branch on this rather than assume it: the Julia tests run exactly where they are available)."""
    from harness.julia import julia_status  # no juliacall import: only files and the PATH are read

    return julia_status().available
