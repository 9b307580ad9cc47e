"""External engines (torchdiffeq, diffrax): agree with ours where installed, never break anything when not.

Skipped with a reason when a package is absent; the unavailability path is tested either way.
"""

import importlib.util
import os

import numpy as np
import pytest

from harness import peers
from harness.errors import BackendUnavailableError
from harness.problems import build_problem
from harness.sensitivity import ForwardSensitivity, gradient

HAVE = {b: all(importlib.util.find_spec(p) for p in packages) for b, (_, packages) in peers.PEERS.items()}
# CI installs the `peers` extra and sets this, so that a peer missing there fails instead of skipping.
REQUIRED = os.environ.get("HARNESS_REQUIRE_PEERS") == "1"


def need(backend):
    if HAVE[backend]:
        return
    reason = f"{backend} is not installed (pip install 'harness[peers]')"
    if REQUIRED:
        pytest.fail(f"{reason}, and HARNESS_REQUIRE_PEERS=1 says it must be")
    pytest.skip(reason)
TOL = 1e-8
# Each peer solves with the same tableau (Dopri5) at TOL; its gradient error is a modest multiple of
# TOL like ours (1-5x measured on the seed problem), bound 100x. Discretise-then-optimise
# (RecursiveCheckpointAdjoint) differentiates the solver's steps, which differs from the continuous
# gradient by the same O(TOL).
BOUND = 100 * TOL


@pytest.fixture(scope="module")
def problem():
    return build_problem("multi_time", seed=0, batch=4)  # 4 rows: all code paths, jumps at 4 times


@pytest.fixture(scope="module")
def reference(problem):
    return gradient(problem, engine=ForwardSensitivity(), solver="DP8", rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("backend, method", [
    ("torchdiffeq", "odeint_adjoint"), ("diffrax", "BacksolveAdjoint"),
    ("diffrax", "RecursiveCheckpointAdjoint"),
])
def test_peer_agrees_with_reference(problem, reference, backend, method):
    need(backend)
    engine = peers.peer_engine(backend, method, solver="DP5", rtol=TOL, atol=TOL)
    result = gradient(problem, engine=engine, solver="DP5", rtol=TOL, atol=TOL)
    for g, r in ((result.dtheta, reference.dtheta), (result.dz0, reference.dz0)):
        assert g.dtype == np.float64
        assert np.max(np.abs(g - r)) <= BOUND * np.max(np.abs(r))
    assert result.forward_stats.n_rhs > 0 and result.backward_stats.n_rhs > 0
    assert abs(result.loss - reference.loss) <= BOUND * abs(reference.loss)


def test_missing_package_is_unavailable_with_reason(monkeypatch):
    monkeypatch.setitem(peers.PEERS, "torchdiffeq", (".torchdiffeq_engine", ("no_such_package_xyz",)))
    available, reason = peers.peer_status("torchdiffeq")
    assert not available and "no_such_package_xyz is not installed" in reason
    with pytest.raises(BackendUnavailableError, match="no_such_package_xyz"):
        peers.peer_engine("torchdiffeq", "odeint_adjoint")


@pytest.mark.parametrize("backend", ["torchdiffeq", "diffrax"])
def test_solver_without_counterpart_is_unavailable(backend):
    need(backend)
    with pytest.raises(BackendUnavailableError, match="no counterpart of RadauIIA5"):
        peers.peer_engine(backend, peers_method(backend), solver="RadauIIA5")


def peers_method(backend):
    return {"torchdiffeq": "odeint_adjoint", "diffrax": "BacksolveAdjoint"}[backend]
