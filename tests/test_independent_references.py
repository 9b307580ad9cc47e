"""dL/dz0 and dL/dθ for every problem option against a reference that shares no code with `gradient`.

Every engine and every reference of `harness.sensitivity` passes through the same driver: the same
`Problem.loss_terms`, the same forward solver, the same slicing of dL/dz0 to the observed columns. A
bug there (reporting the last N columns of an augmented dL/dz0 instead of the first N, a mask applied
to the wrong axis, a time-dependent field evaluated at the wrong t) moves engines and references
together, and comparing them with each other cannot see it. Here the reference is written from the
loss's definition in `harness/problems/_problem.py` alone:

    L = Σ_k Σ_b m_kb [ ½ ‖z_b(t_k)[:N] - y_kb‖² + (N/2) log 2π ],   z_b(t0) = [z0_b, 0_A],

with z solved by scipy's `solve_ivp` (DOP853) straight from the model's `f`, one trajectory at a time,
and the derivatives taken by central differences of that loss. Only the model's `f` (the vector field
itself, tested against hand-written formulas in test_model.py) is shared.

The options and their combinations: augmented (A = 1 and A = 2), masked, time-dependent, with decay
(f = -Λ z + MLP), augmented + masked, augmented + time-dependent, masked + decay, and all four; and
with 20 observation times instead of 3 ("many"), which DP5 reads from its dense output inside its
steps instead of ending a step at each (harness/_forward.py), for the MLP with those options and for
a model other than the MLP (harness.models.LotkaVolterra). The reference's `solve_ivp` reads its
`t_eval` from DOP853's own dense output at 1e-12, another interpolant of another method.

Why the bounds
--------------
* The reference solves at rtol = atol = 1e-12 (DOP853, order 8): the loss is known to about
  1e-12 x L ~ 1e-11 (L is O(10) here). The central difference (L(x + h) - L(x - h)) / 2h with
  h = 1e-5 has a truncation error h²/6 |L'''| ~ 1e-10 |L'''| and a noise from the solves of
  ~1e-11 / 1e-5 = 1e-6 in the worst case (a step sequence that changes between the two solves);
  when the steps do not change the solve error is smooth in x and contributes only its derivative,
  O(1e-12). REF_NOISE = 3e-6 absolute covers the worst case.
* The engines run at rtol = atol = 1e-9. As in test_gradients.py, each solve's global error is a
  modest multiple of the tolerance, and the gradient inherits it with a growth of the linearised
  dynamics over t ∈ [0, 1.5] (e^{1.5 ‖∂f/∂z‖} < 1e2 for these small weights): 1e2 x 1e-9 = 1e-7
  relative to the gradient's size.
* So |g - g_ref| <= 1e-7 ‖g_ref‖_∞ + REF_NOISE element by element. The errors these tests exist to
  catch are O(1): a wrong column, a dropped mask, a term at the wrong time change entries by the
  size of the gradient itself (checked below by applying the augmented-slicing bug).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from harness.model import MLP
from harness.models import LotkaVolterra
from harness.problems import Problem
from harness.sensitivity import (
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
    gradient,
)

REF_TOL = 1e-12  # the reference solve's rtol and atol
STEP = 1e-5  # the central difference's step
REF_NOISE = 3e-6  # worst-case error of the difference quotient, absolute (see the module docstring)
ENGINE_TOL = 1e-9  # the engines' rtol and atol
ENGINE_GROWTH = 1e2  # growth of the solves' relative error into the gradient over t in [0, 1.5]

T0 = 0.0
TIMES = np.array([0.5, 1.0, 1.5])
MANY_TIMES = np.linspace(0.075, 1.5, 20)  # several per DP5 step at the engines' tolerance
B, N, HIDDEN = 3, 2, 4


def _build(augment: int = 0, masked: bool = False, time_dependent: bool = False, decay: bool = False,
           many: bool = False, lotka_volterra: bool = False) -> Problem:
    rng = np.random.default_rng(1000 + 8 * augment + 4 * masked + 2 * time_dependent + decay + 16 * many
                                + 32 * lotka_volterra)
    times = MANY_TIMES if many else TIMES
    if lotka_volterra:
        model = LotkaVolterra()
        theta = model.init(rng)
        z0 = rng.uniform(0.5, 2.0, size=(B, N))
    else:
        width = N + augment
        model = MLP(
            (width, HIDDEN, width),
            decay=np.linspace(0.5, 8.0, width) if decay else None,
            time_dependent=time_dependent,
        )
        theta = 0.7 * model.init(rng)
        z0 = rng.uniform(-1.5, 1.5, size=(B, N))
    data = rng.normal(size=(times.size, B, N))
    mask = None
    if masked and not many:
        # every row observed at least once, none at every time, and one time where only row 1 is seen
        mask = np.array([[True, False, True], [False, True, False], [True, False, True]])
    elif masked:
        mask = rng.random((times.size, B)) < 0.5
        mask[-1] = [True, False, True]  # every row observed somewhere, none everywhere
        mask[-2] = [False, True, False]
    return Problem(model, theta, z0, T0, times, data, "independent", augment=augment, mask=mask)


OPTIONS = {
    "plain": {},
    "augmented": {"augment": 1},
    "augmented2": {"augment": 2},
    "masked": {"masked": True},
    "time_dependent": {"time_dependent": True},
    "decay": {"decay": True},
    "augmented+masked": {"augment": 1, "masked": True},
    "augmented+time_dependent": {"augment": 2, "time_dependent": True},
    "masked+decay": {"masked": True, "decay": True},
    "augmented+decay": {"augment": 1, "decay": True},
    "all": {"augment": 1, "masked": True, "time_dependent": True, "decay": True},
    "many": {"many": True},
    "many+augmented+masked": {"many": True, "augment": 1, "masked": True},
    "many+time_dependent": {"many": True, "time_dependent": True},
    "many+all": {"many": True, "augment": 1, "masked": True, "time_dependent": True, "decay": True},
    "many+lotka_volterra": {"many": True, "lotka_volterra": True},
}
MANY = [option for option in OPTIONS if option.startswith("many")]


def _reference_loss(problem: Problem, theta: np.ndarray, z0_observed: np.ndarray) -> float:
    """L from its definition: one solve_ivp per trajectory, the masked squared residuals summed."""
    model = problem.model
    width = model.state_dim
    n = z0_observed.shape[1]
    loss = 0.0
    for b in range(z0_observed.shape[0]):
        start = np.zeros(width)
        start[:n] = z0_observed[b]  # the augmented components start at zero

        def rhs(t, y):
            return model.f(t, y[None, :], theta)[0]

        solution = solve_ivp(rhs, (problem.t0, problem.times[-1]), start, method="DOP853", t_eval=problem.times,
                             rtol=REF_TOL, atol=REF_TOL)
        assert solution.success, solution.message
        for k in range(problem.times.size):
            observed = True if problem.mask is None else bool(problem.mask[k, b])
            if observed:
                residual = solution.y[:n, k] - problem.data[k, b]
                loss += 0.5 * float(residual @ residual) + 0.5 * n * math.log(2 * math.pi)
    return loss


def _central_difference(func, x: np.ndarray) -> np.ndarray:
    grad = np.zeros(x.shape)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += STEP
        down[index] -= STEP
        grad[index] = (func(up) - func(down)) / (2 * STEP)
    return grad


_REFERENCES: dict[str, tuple[Problem, float, np.ndarray, np.ndarray]] = {}


def _reference(option: str):
    """(problem, L, dL/dθ, dL/dz0) by the independent route, computed once per option."""
    if option not in _REFERENCES:
        problem = _build(**OPTIONS[option])
        z0 = problem.z0[:, : N].copy()
        loss = _reference_loss(problem, problem.theta, z0)
        dtheta = _central_difference(lambda th: _reference_loss(problem, th, z0), problem.theta)
        dz0 = _central_difference(lambda z: _reference_loss(problem, problem.theta, z), z0)
        _REFERENCES[option] = (problem, loss, dtheta, dz0)
    return _REFERENCES[option]


def _assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    bound = ENGINE_GROWTH * ENGINE_TOL * np.max(np.abs(want)) + REF_NOISE  # derivation in the docstring
    error = np.max(np.abs(got - want))
    assert error <= bound, f"{what}: max error {error:.3g} > {bound:.3g}\ngot\n{got}\nreference\n{want}"


ENGINES = {
    "InterpolatingAdjoint": InterpolatingAdjoint(),
    "InterpolatingAdjoint-checkpointed": InterpolatingAdjoint(checkpointing=True, n_checkpoints=4),
    "BacksolveAdjoint": BacksolveAdjoint(),
    "QuadratureAdjoint": QuadratureAdjoint(),
    "GaussAdjoint": GaussAdjoint(),
    "RecursiveCheckpointAdjoint": RecursiveCheckpointAdjoint(),
    "ForwardSensitivity": ForwardSensitivity(),
    "FiniteDifferences": FiniteDifferences(),
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_default_engine_matches_the_independent_reference(option):
    problem, loss, dtheta, dz0 = _reference(option)
    result = gradient(problem, rtol=ENGINE_TOL, atol=ENGINE_TOL)
    # the loss itself: the solves' relative error, 1e2 x 1e-9 of L, plus the reference's 1e-12
    assert abs(result.loss - loss) <= ENGINE_GROWTH * ENGINE_TOL * abs(loss) + 1e-10
    _assert_close(result.dz0, dz0, f"{option}: dL/dz0")
    _assert_close(result.dtheta, dtheta, f"{option}: dL/dθ")


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("option", ["augmented+masked", "augmented+time_dependent", "masked+decay", "all"])
def test_every_engine_matches_the_independent_reference_on_combinations(option, engine):
    problem, _, dtheta, dz0 = _reference(option)
    # RecursiveCheckpointAdjoint differentiates the discrete loss, whose distance from the ODE's is
    # the solve's global error: the same 1e2 x tol budget as the continuous adjoints
    result = gradient(problem, engine=ENGINES[engine], rtol=ENGINE_TOL, atol=ENGINE_TOL)
    _assert_close(result.dz0, dz0, f"{option} / {engine}: dL/dz0")
    _assert_close(result.dtheta, dtheta, f"{option} / {engine}: dL/dθ")


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("option", MANY)
def test_every_engine_matches_the_independent_reference_with_many_observation_times(option, engine):
    """20 observation times in [0, 1.5]: DP5 takes the steps of a single-time solve and reads the
    times from its dense output (inside its steps, several per step), the adjoints jump at each, the
    checkpointed one re-solves 5 forward pieces cut at 4 times that are not observation times; the
    discrete adjoint carries each observation's cotangent into the stages of the step that read it.
    The interpolant's error is of the size of the local error, i.e. of the tolerance (DP5's dense
    output is of order 4: tests/test_solvers.py bounds it by the same constant as the end point), so
    the docstring's bound holds unchanged: 1e2 x 1e-9 relative plus the reference's noise."""
    problem, loss, dtheta, dz0 = _reference(option)
    result = gradient(problem, engine=ENGINES[engine], rtol=ENGINE_TOL, atol=ENGINE_TOL)
    if engine not in ("ForwardSensitivity", "FiniteDifferences"):
        # the times do not end steps: the forward pass is as long as a single-time solve's (taken
        # with InterpolatingAdjoint for BacksolveAdjoint, whose backward z solve is unstable over
        # [0, 1.5] with Λ up to 8 when no observation time resets it: e^12 ~ 1.6e5 growth)
        single_engine = InterpolatingAdjoint() if engine == "BacksolveAdjoint" else ENGINES[engine]
        single = gradient(replace(problem, times=problem.times[-1:], data=problem.data[-1:],
                                  mask=None if problem.mask is None else problem.mask[-1:]),
                          engine=single_engine, rtol=ENGINE_TOL, atol=ENGINE_TOL)
        assert result.forward_stats == single.forward_stats
    assert abs(result.loss - loss) <= ENGINE_GROWTH * ENGINE_TOL * abs(loss) + 1e-10
    _assert_close(result.dz0, dz0, f"{option} / {engine}: dL/dz0")
    _assert_close(result.dtheta, dtheta, f"{option} / {engine}: dL/dθ")


def test_the_augmented_gradient_is_the_first_columns_not_the_last():
    """The issue's example: dL/dz0[:, -N:] of the full state instead of [:, :N]. With N = 2, A = 2
    the two blocks do not overlap, and the augmented block's adjoint is not zero (the augmented
    components feed back into the observed ones), so the two answers differ by O(1)."""
    problem, _, _, dz0 = _reference("augmented2")
    full = gradient(problem.with_theta(problem.theta), rtol=ENGINE_TOL, atol=ENGINE_TOL).dz0
    _assert_close(full, dz0, "augmented2: dL/dz0")
    assert np.max(np.abs(dz0)) > 1e-2  # the reference is not trivially small
