"""RecursiveCheckpointAdjoint (discretise-then-optimise) and GaussAdjoint, beyond the catalogue.

The catalogue (test_gradients.py) checks both against ForwardSensitivity and FiniteDifferences at
rtol = atol = 1e-10. Here: what only the discrete adjoint has (the exact gradient of the discrete
loss at any tolerance, shown beside a continuous adjoint that does not have it), its replay of the
forward's steps, its checkpointing (bit-identical, bounded states, bounded memory over a 10x longer
horizon), its refusal of implicit solvers, and GaussAdjoint's per-step quadrature.

Where numba is installed the discrete adjoint runs compiled (harness._compiled._reverse_sweep, checked
against the numpy engine in tests/test_compiled_loop.py); the properties of the algorithm are
checked on both paths (`PATHS`), so that the numpy engine, the reference, keeps its own tests.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import harness._compiled as compiled
from harness import SolveOptions
from harness._memory import peak_memory
from harness.errors import HarnessInputError, RefusedError
from harness.problems import make_problem, multi_time_problem, seed_problem
from harness.sensitivity import (
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
    gradient,
)
from harness.sensitivity._discrete import discrete_loss, discrete_states, forward_steps
from harness.solvers import SOLVERS


# "numpy": the numpy engine (`set_enabled(False)`); "default": the compiled path where numba is installed
PATHS = {"numpy": compiled.numpy_reference, "default": contextlib.nullcontext}


def rel(g, ref):
    return float(np.linalg.norm(g - ref) / np.linalg.norm(ref))


def fd_of_discrete_loss(problem, pieces, solver, step=1e-3):
    """Fourth-order central differences of the discrete loss with the step sequence `pieces` frozen."""
    theta = problem.theta
    out = np.empty_like(theta)
    for i in range(theta.size):
        h = step * max(1.0, abs(theta[i]))
        e = np.zeros_like(theta)
        e[i] = h

        def loss(k, e=e):
            return discrete_loss(problem, theta + k * e, problem.z0, pieces, solver)

        out[i] = (8.0 * (loss(1) - loss(-1)) - (loss(2) - loss(-2))) / (12.0 * h)
    return out


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("solver", ["DP5", "BS3"])
def test_dto_is_exact_for_the_discrete_loss_where_otd_is_not(solver, path):
    """At rtol = atol = 1e-3 the discrete loss (steps frozen) is a smooth function of θ, and the DTO
    gradient is its exact derivative: FD of it with h = 1e-3 has truncation O(h⁴) ~ 1e-12 and
    rounding ~ eps |L| / h ~ 1e-13 relative, so 1e-8 is the task's "about 1e-8" with room to spare
    (measured 3e-11). The continuous adjoints approximate the gradient of the ODE's loss instead:
    their distance to the same FD is the discretisation error of the loose solve, measured 5e-5
    (QuadratureAdjoint) on this problem, i.e. more than 1000 times the DTO's bound."""
    problem = multi_time_problem(batch=20)
    options = SolveOptions(solver, 1e-3, 1e-3)
    _, pieces = forward_steps(problem, problem.theta, options)
    fd = fd_of_discrete_loss(problem, pieces, solver)
    with PATHS[path]():
        dto = gradient(problem, engine=RecursiveCheckpointAdjoint(), solver=solver, rtol=1e-3, atol=1e-3)
    otd = {e.name: gradient(problem, engine=e, solver=solver, rtol=1e-3, atol=1e-3)
           for e in (QuadratureAdjoint(), GaussAdjoint(), InterpolatingAdjoint())}
    dto_error = rel(dto.dtheta, fd)
    assert dto_error <= 1e-8, f"DTO vs FD of the discrete loss: {dto_error:.2e}"
    for name, result in otd.items():
        otd_error = rel(result.dtheta, fd)
        assert otd_error >= 1e3 * 1e-8, f"{name} is {otd_error:.2e} from FD of the discrete loss"


def test_replay_reproduces_the_forward_states():
    """The recorded h are the solver loop's own (the last one clipped to end on the piece's end), so
    replaying them, and reading each observation time as the forward pass does (`discrete_states`:
    the dense output of the step that reaches it, or its end state at t_K), gives the forward pass's
    z at the times: to rounding, since the loop sums the stages as one product and the replay one
    stage at a time (a few eps |z| per step, ~20 steps here: 1e-12 relative is far above that and far
    below any step-size mismatch, ~tol). DP5 and BS3 solve [t0, t_K] as one piece and interpolate the
    three earlier times; DP8 (scipy's DOP853) keeps one piece per time."""
    problem = multi_time_problem(batch=20)
    for solver, n_pieces in (("DP5", 1), ("BS3", 1), ("DP8", 4)):
        options = SolveOptions(solver, 1e-6, 1e-6)
        fwd, pieces = forward_steps(problem, problem.theta, options)
        assert fwd.observation_rule == ("piecewise" if solver == "DP8" else "dense")
        assert [len(p.hs) for p in pieces] == [len(p.steps) for p in fwd.pieces]
        assert len(pieces) == n_pieces
        interpolated = 0
        for piece in pieces:
            assert np.isclose(piece.t_start + sum(piece.hs), piece.t_end, rtol=0, atol=1e-12)
            interpolated += sum(x is not None for obs in piece.observations(problem.times).values() for _, x in obs)
        assert interpolated == (0 if solver == "DP8" else problem.times.size - 1)
        z_at = discrete_states(problem, problem.theta, problem.z0, pieces, solver)
        for k in range(problem.times.size):
            scale = np.max(np.abs(fwd.z_at_times[k]))
            assert np.max(np.abs(z_at[k] - fwd.z_at_times[k])) <= 1e-12 * scale, (solver, k)


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("checkpoints", [1, 2, 3, 5])
def test_checkpointed_equals_stored_to_the_bit(checkpoints, path):
    """Recomputing a state replays the same steps with the same arithmetic, so the gradient is the
    same bits; and at most `checkpoints` states plus the piece's start are held at once."""
    problem = seed_problem(batch=20)
    with PATHS[path]():
        stored = gradient(problem, engine=RecursiveCheckpointAdjoint(), solver="BS3", rtol=1e-7, atol=1e-7)
        ckpt = gradient(problem, engine=RecursiveCheckpointAdjoint(checkpoints=checkpoints), solver="BS3",
                        rtol=1e-7, atol=1e-7)
    n_steps = stored.diagnostics["n_steps"]
    assert n_steps > 50  # enough steps that checkpointing has something to do
    assert np.array_equal(ckpt.dtheta, stored.dtheta) and np.array_equal(ckpt.dz0, stored.dz0)
    assert ckpt.diagnostics["peak_stored_states"] <= checkpoints + 1
    assert stored.diagnostics["peak_stored_states"] == n_steps
    assert ckpt.diagnostics["recomputed_steps"] > 0


@pytest.mark.parametrize("path", sorted(PATHS))
def test_peak_memory_bounded_over_a_ten_times_longer_horizon(path):
    """t1 = 100 against t1 = 10 (the seed field, B = 200, 1e-9): the stored sweep holds every
    state, so its tracemalloc peak grows by at least half the added states' bytes (the other
    half covers allocator slack); with 4 checkpoints the held states stay at 5 and the peak grows
    by less than 30% (measured 15%: the step list, one float per step, and recursion frames). The
    compiled sweep allocates its held states with numpy (tracemalloc sees them): the same bounds."""
    base = seed_problem(batch=200)
    peaks, steps, held = {}, {}, {}
    for t1 in (10.0, 100.0):
        problem = make_problem(base.model, batch=200, times=(t1,), name=f"t1={t1:g}")
        for checkpoints in (None, 4):
            engine = RecursiveCheckpointAdjoint(checkpoints=checkpoints)
            with PATHS[path]():
                result = gradient(problem, engine=engine, rtol=1e-9, atol=1e-9)
                peaks[t1, checkpoints] = peak_memory(
                    lambda p=problem, e=engine: gradient(p, engine=e, rtol=1e-9, atol=1e-9))
            steps[t1], held[t1, checkpoints] = result.diagnostics["n_steps"], result.diagnostics["peak_stored_states"]
    assert steps[100.0] >= 3 * steps[10.0]
    state_bytes = 200 * 2 * 8
    assert peaks[100.0, None] - peaks[10.0, None] >= 0.5 * (steps[100.0] - steps[10.0]) * state_bytes
    assert held[10.0, 4] == held[100.0, 4] == 5
    assert peaks[100.0, 4] <= 1.3 * peaks[10.0, 4]


@pytest.mark.parametrize("solver", [name for name, s in SOLVERS.items() if s.implicit])
def test_implicit_solvers_refused_in_one_line(solver):
    with pytest.raises(RefusedError) as err:
        gradient(seed_problem(batch=4), engine=RecursiveCheckpointAdjoint(), solver=solver)
    message = str(err.value)
    assert "\n" not in message and repr(solver) in message and "explicit" in message


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_checkpoints_must_be_a_positive_integer(bad):
    with pytest.raises(HarnessInputError, match=f"checkpoints={bad!r}"):
        RecursiveCheckpointAdjoint(checkpoints=bad)


@pytest.mark.parametrize("solver,nodes", [("DP5", 3), ("BS3", 2), ("DP8", 4), ("RadauIIA5", 3)])
def test_gauss_adjoint_sums_div_order_plus_one_by_two_nodes_per_backward_step(solver, nodes):
    """SciMLSensitivity's node count, n = div(order + 1, 2), one batched VJP per accepted backward
    step, and no dense backward solution (the node count is per step, not per stored piece)."""
    problem = seed_problem(batch=4)
    result = gradient(problem, engine=GaussAdjoint(), solver=solver, rtol=1e-6, atol=1e-6)
    assert result.diagnostics["gauss_nodes"] == nodes
    assert result.diagnostics["quadrature_vjps"] == result.backward_stats.n_accepted
    assert result.diagnostics["quadrature_points"] == nodes * result.backward_stats.n_accepted


def test_gauss_adjoint_stores_less_than_quadrature_adjoint():
    """QuadratureAdjoint keeps the dense backward solution of a piece and evaluates every node at
    once; GaussAdjoint keeps neither (measured 1.3 MB against 7.3 MB at t1 = 100, B = 200). That is
    the numpy driver's; the compiled whole loop sums both per step (tests/test_compiled_loop.py)."""
    import harness._compiled as compiled

    base = seed_problem(batch=200)
    problem = make_problem(base.model, batch=200, times=(100.0,), name="long")
    compiled.set_enabled(False)
    try:
        gauss = peak_memory(lambda: gradient(problem, engine=GaussAdjoint(), rtol=1e-6, atol=1e-6))
        quadrature = peak_memory(lambda: gradient(problem, engine=QuadratureAdjoint(), rtol=1e-6, atol=1e-6))
    finally:
        compiled.set_enabled(None)
    assert gauss < 0.5 * quadrature
