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
from harness import LotkaVolterra, SolveOptions
from harness._memory import peak_memory
from harness.errors import HarnessInputError, RefusedError
from harness.model import MLP
from harness.problems import Problem, make_problem, multi_time_problem, seed_problem
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


def many_times_problem(kind: str, n_times: int = 20, batch: int = 4, times=None) -> Problem:
    """A problem observed at `n_times` evenly spaced times in (0, 10] (or at `times`), several per
    step at loose tolerances: "mlp" (2-16-2 tanh), "time_dependent" (MLP([z, t]) 2-8-2), "augmented"
    (3-8-3 on [z, 0], A = 1), "masked" (2-16-2, each row seen at about half the times),
    "lotka_volterra" (harness.models.LotkaVolterra, P = 4)."""
    rng = np.random.default_rng(["mlp", "time_dependent", "augmented", "masked", "lotka_volterra"].index(kind))
    times = np.linspace(10.0 / n_times, 10.0, n_times) if times is None else np.asarray(times, dtype=np.float64)
    augment, mask = 0, None
    if kind == "lotka_volterra":
        model = LotkaVolterra()
        theta = model.init(rng)
        z0 = rng.uniform(0.5, 2.0, size=(batch, 2))
    else:
        widths = {"mlp": (2, 16, 2), "masked": (2, 16, 2), "time_dependent": (2, 8, 2), "augmented": (3, 8, 3)}[kind]
        model = MLP(widths, time_dependent=kind == "time_dependent")
        theta = model.init(rng)
        z0 = rng.uniform(-2.0, 2.0, size=(batch, 2))
        augment = 1 if kind == "augmented" else 0
        if kind == "masked":
            mask = rng.random((times.size, batch)) < 0.5
            mask[-1] = True  # every row observed at least once
    data = rng.normal(size=(times.size, batch, 2))
    return Problem(model, theta, z0, 0.0, times, data, kind, augment=augment, mask=mask)


def fd_of_discrete_loss_z0(problem, pieces, solver, step=1e-3):
    """As `fd_of_discrete_loss`, for dL/dz0 of the observed components (B, N)."""
    n = problem.observed_dim
    out = np.empty((problem.batch_size, n))
    for index in np.ndindex(out.shape):
        h = step * max(1.0, abs(problem.z0[index]))
        e = np.zeros_like(problem.z0)
        e[index] = h

        def loss(k, e=e):
            return discrete_loss(problem, problem.theta, problem.z0 + k * e, pieces, solver)

        out[index] = (8.0 * (loss(1) - loss(-1)) - (loss(2) - loss(-2))) / (12.0 * h)
    return out


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("kind", ["mlp", "time_dependent", "augmented", "masked", "lotka_volterra"])
@pytest.mark.parametrize("solver", ["DP5", "BS3"])
def test_dto_is_exact_for_the_discrete_loss_with_many_interpolated_times(solver, kind, path):
    """20 observation times at rtol = atol = 1e-3: several fall inside each step, so the discrete loss
    reads them from the steps' dense output, and its exact gradient carries their cotangents into
    every stage (the first-same-as-last one through the next step's k_0, or the VJP at the end
    state for the last step). FD of that loss with the steps frozen agrees to 1e-8 relative, for
    dL/dθ and dL/dz0. The fourth-order difference needs a smaller step than on the catalogue
    problem above: its truncation error is measured to fall as h⁴ (2-16-2, DP5: 1.9e-8 at
    h = 1e-3, 1.6e-10 at 3e-4, 3.1e-12 at 1e-4; the worst case, masked, 4.4e-7, 3.8e-9, 4.7e-11), so at
    h = 1e-4 truncation is <= 5e-11 and rounding eps |L| / (h |g|) ~ 1e-12: 1e-8 has two orders of
    room. Leaving out the interpolant's cotangents on the stages (z̄_n += g_k alone) moves dL/dθ by
    1.6e-1 relative, leaving out only the first-same-as-last stage's share by 2.8e-3 (measured,
    2-16-2, DP5): eight and five orders above the bound."""
    problem = many_times_problem(kind)
    options = SolveOptions(solver, 1e-3, 1e-3)
    _, pieces = forward_steps(problem, problem.theta, options)
    (piece,) = pieces  # one piece over [t0, t_K]: the times do not end steps
    observed = piece.observations(problem.times)
    assert max(len(obs) for obs in observed.values()) >= 2  # several times inside one step
    if kind == "mlp":  # and inside the last one (its k_s share needs the VJP at the end state)
        assert any(x is not None for _, x in observed[len(piece.hs) - 1])
    fd_theta = fd_of_discrete_loss(problem, pieces, solver, step=1e-4)
    fd_z0 = fd_of_discrete_loss_z0(problem, pieces, solver, step=1e-4)
    with PATHS[path]():
        dto = gradient(problem, engine=RecursiveCheckpointAdjoint(), solver=solver, rtol=1e-3, atol=1e-3)
    assert dto.diagnostics["n_steps"] == len(piece.hs) == dto.forward_stats.n_accepted
    assert rel(dto.dtheta, fd_theta) <= 1e-8, f"dL/dθ: {rel(dto.dtheta, fd_theta):.2e}"
    assert rel(dto.dz0, fd_z0) <= 1e-8, f"dL/dz0: {rel(dto.dz0, fd_z0):.2e}"


def test_dto_is_exact_where_an_observation_time_is_a_step_end():
    """An observation time that is an accepted step's end exactly (taken from a first solve: the
    times other than t_K do not change the steps) is read as that step's end state, and its
    cotangent joins ȳ_{n+1}: FD of the discrete loss (h = 1e-4) agrees to the 1e-8 above."""
    options = SolveOptions("DP5", 1e-3, 1e-3)
    first = many_times_problem("mlp", times=[10.0])
    _, (piece,) = forward_steps(first, first.theta, options)
    ends = piece.ends()
    times = sorted({ends[1], 0.5 * (ends[1] + ends[2]), ends[3], 10.0})
    problem = many_times_problem("mlp", times=times)
    _, pieces = forward_steps(problem, problem.theta, options)
    assert pieces[0].hs == piece.hs
    observed = pieces[0].observations(problem.times)
    assert observed[1] == [(0, None)] and observed[3] == [(2, None)] and observed[2][0][1] is not None
    dto = gradient(problem, engine=RecursiveCheckpointAdjoint(), solver="DP5", rtol=1e-3, atol=1e-3)
    assert rel(dto.dtheta, fd_of_discrete_loss(problem, pieces, "DP5", step=1e-4)) <= 1e-8
    assert rel(dto.dz0, fd_of_discrete_loss_z0(problem, pieces, "DP5", step=1e-4)) <= 1e-8


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("checkpoints", [1, 3])
def test_checkpointed_equals_stored_to_the_bit_with_many_times(checkpoints, path):
    """With interpolated observations the revolve schedule reverses the same steps in the same order
    with the same cotangents entering each: the same bits as storing every state."""
    problem = many_times_problem("mlp", n_times=30, batch=8)
    with PATHS[path]():
        stored = gradient(problem, engine=RecursiveCheckpointAdjoint(), solver="DP5", rtol=1e-6, atol=1e-6)
        ckpt = gradient(problem, engine=RecursiveCheckpointAdjoint(checkpoints=checkpoints), solver="DP5",
                        rtol=1e-6, atol=1e-6)
    assert np.array_equal(ckpt.dtheta, stored.dtheta) and np.array_equal(ckpt.dz0, stored.dz0)
    assert ckpt.diagnostics["peak_stored_states"] <= checkpoints + 1
    assert stored.diagnostics["peak_stored_states"] == stored.diagnostics["n_steps"]


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
