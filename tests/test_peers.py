"""External engines (torchdiffeq, diffrax): agree with ours where installed, never break anything when not.

Skipped with a reason when a package is absent; the unavailability path is tested either way.
"""

import importlib.util
import os

import numpy as np
import pytest

from harness import _compiled, peers
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
    with _compiled.numpy_reference():  # as the references below
        return build_problem("multi_time", seed=0, batch=4)  # 4 rows: all code paths, jumps at 4 times


# The references run the numpy reference path: they then share no code with the compiled kernels either
# (whose agreement with numpy, to 1e-12, tests/test_compiled*.py check), and this file needs no compiled
# module, so it runs while the suite's build of that module does (tests/compiled_users.txt).
@pytest.fixture(scope="module")
def reference(problem):
    with _compiled.numpy_reference():
        return gradient(problem, engine=ForwardSensitivity(), solver="DP8", rtol=1e-11, atol=1e-11)


# timed=False: diffrax builds only the program with its evaluation counter and reports no time (the
# timed call is a second XLA program, as long to compile); one diffrax row is timed, so that the
# program the comparisons time is checked against the reference too.
@pytest.mark.parametrize("backend, method, timed", [
    ("torchdiffeq", "odeint_adjoint", True), ("torchdiffeq", "odeint", False), ("diffrax", "BacksolveAdjoint", False),
    ("diffrax", "RecursiveCheckpointAdjoint", True),
])
def test_peer_agrees_with_reference(problem, reference, backend, method, timed, monkeypatch):
    need(backend)
    built = []
    if backend == "diffrax":
        from harness.peers import diffrax_engine

        original = diffrax_engine._compiled
        monkeypatch.setattr(diffrax_engine, "_compiled", lambda *args: built.append(args[-1]) or original(*args))
    engine = peers.peer_engine(backend, method, solver="DP5", rtol=TOL, atol=TOL, timed=timed)
    result = gradient(problem, engine=engine, solver="DP5", rtol=TOL, atol=TOL)
    assert result.seconds > 0 if timed or backend == "torchdiffeq" else np.isnan(result.seconds)
    assert built == ([] if backend != "diffrax" else [True, False] if timed else [True])  # counted, timed
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


def test_solver_without_counterpart_is_unavailable():
    need("torchdiffeq")
    with pytest.raises(BackendUnavailableError, match="no counterpart of RadauIIA5"):
        peers.peer_engine("torchdiffeq", "odeint_adjoint", solver="RadauIIA5")


def test_diffrax_implicit_counterparts_on_the_stiff_problem():
    """RadauIIA5 -> Kvaerno5 (both L-stable implicit RK of order 5) with RecursiveCheckpointAdjoint,
    on the stiff variant (Λ = diag(1, 1000)) at 1e-7 against ForwardSensitivity (RadauIIA5, 1e-10).
    An implicit solve's global error is a modest multiple of its tolerance, as for the explicit
    peers above: bound 100 x 1e-7 (measured 3.7e-7 relative at 1e-6). BDF maps to KenCarp4 (order 4;
    slower here, ~40 s per gradient, so it is run by experiments/stiff.toml rather than here)."""
    need("diffrax")
    from harness.peers import diffrax_engine

    assert diffrax_engine.SOLVERS["RadauIIA5"] == "Kvaerno5" and diffrax_engine.SOLVERS["BDF"] == "KenCarp4"
    with _compiled.numpy_reference():  # as for `reference` above (the data's implicit solve included)
        stiff = build_problem("stiff", seed=0, batch=4)
        reference = gradient(stiff, engine=ForwardSensitivity(), solver="RadauIIA5", rtol=1e-10, atol=1e-10)
    engine = peers.peer_engine("diffrax", "RecursiveCheckpointAdjoint", solver="RadauIIA5", rtol=1e-7, atol=1e-7,
                               timed=False)
    result = gradient(stiff, engine=engine, solver="RadauIIA5", rtol=1e-7, atol=1e-7)
    error = np.linalg.norm(result.dtheta - reference.dtheta) / np.linalg.norm(reference.dtheta)
    assert error <= 100 * 1e-7

