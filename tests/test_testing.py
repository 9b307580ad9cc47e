"""harness.testing.assert_gradients_agree: passes on agreement, names engine, entry and size otherwise."""

from dataclasses import dataclass

import pytest

from harness.problems import build_problem
from harness.sensitivity import InterpolatingAdjoint, gradient, register_engine
from harness.testing import assert_gradients_agree


@pytest.fixture(scope="module")
def problem():
    return build_problem("seed", seed=0, batch=4)  # 4 rows: every code path, milliseconds per gradient


@dataclass(frozen=True)
class Perturbed:
    """A broken engine: InterpolatingAdjoint with one entry of dL/dθ off by `delta`."""

    index: int
    delta: float
    name = "Perturbed"

    def compute(self, problem, theta, options):
        result = gradient(problem, theta, engine=InterpolatingAdjoint(), solver=options.solver,
                          rtol=options.rtol, atol=options.atol)
        result.dtheta[self.index] += self.delta
        return result


register_engine(Perturbed)  # engines are found through their registration, not by duck typing

def test_agreeing_engines_pass(problem):
    results = assert_gradients_agree(problem, ["BacksolveAdjoint", "QuadratureAdjoint"], rtol=1e-6,
                                     solver_rtol=1e-9, solver_atol=1e-9, reference_solver="DP8")
    assert set(results) == {"reference", "BacksolveAdjoint", "QuadratureAdjoint"}


def test_failure_names_engine_parameter_and_size(problem):
    # θ index 5 is W1[2,1] in the 2-3-2 layout (W1 is 3 x 2, row-major).
    with pytest.raises(AssertionError) as info:
        assert_gradients_agree(problem, ["QuadratureAdjoint", Perturbed(5, 1.0)], rtol=1e-6,
                               solver_rtol=1e-9, solver_atol=1e-9, wrt=("theta",))
    message = str(info.value)
    assert "Perturbed, dL/dθ: 1 of 17 entries" in message
    assert "W1[2,1]" in message and "|Δ| = 1.00e+00" in message
    assert "QuadratureAdjoint" not in message.split("\n", 1)[1]  # only the broken engine is listed


def test_unavailable_engine_fails_the_assertion_or_agrees(problem, julia_available):
    """Julia's GaussAdjoint: where Julia is missing the assertion fails and names the reason; where
    it is installed, it agrees with the reference (1e-6 of max|ref| at solver tolerances 1e-8)."""
    if julia_available:
        results = assert_gradients_agree(problem, ["julia:GaussAdjoint"], rtol=1e-6)
        assert "julia:GaussAdjoint" in results
        return
    with pytest.raises(AssertionError, match="julia:GaussAdjoint raised BackendUnavailableError"):
        assert_gradients_agree(problem, ["julia:GaussAdjoint"], rtol=1e-6)


def test_bad_wrt(problem):
    with pytest.raises(ValueError, match="wrt"):
        assert_gradients_agree(problem, ["QuadratureAdjoint"], wrt=("w",))
