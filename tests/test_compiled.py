"""The compiled fast path (harness._compiled) against the numpy reference it replaces.

Why 1e-12 relative
------------------
The compiled kernels do the same arithmetic as the numpy code in a different order (blocked sums,
fused multiply-adds) and with their own tanh. That tanh is within a few ulps of np.tanh (checked
below: at most 1e-15 relative, 1 ulp being 2.2e-16), so one stage differs from numpy's by a few
ulps times the condition of the layers, about 1e-15 relative for these networks. Over a whole
solve with the SAME step sequence (asserted through the step counts), per-step differences add up
over at most a few thousand steps and are carried by the (stable, forward and adjoint) dynamics, so
1e-12 leaves a margin of 1e2 over steps x ulps while any real error in a kernel (a wrong index,
slope or sign) is O(1e-3) or larger.

On the stiff problem (f = -Λz + MLP(z), Λ = diag(1, 1000)) each stage's rounding is ε Λ|z|, not
ε |f|, and the implicit solver's Newton iterations carry it through (I - hγJ)⁻¹ with ‖J‖ ~ max Λ:
the bound there is 1e-12 x max Λ = 1e-9 (measured: dθ 5e-16, dz0 3e-12).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled path needs numba")

import harness._compiled as compiled
from harness._compiled._activations import tanh_array
from harness._compiled._compiled_stage_vjps import CompiledStageVJPs
from harness._stage_vjps import StageVJPs
from harness.model import MLP
from harness.problems import (
    deep_problem,
    multi_time_problem,
    seed_problem,
    stiff_problem,
)
from harness.sensitivity import (
    BacksolveAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    gradient,
)

AGREEMENT = 1e-12  # relative; see the module docstring


def rel(x, ref):
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


@pytest.fixture
def numpy_path():
    """Run a block with the compiled path off, restoring the default afterwards."""
    compiled.set_enabled(False)
    yield
    compiled.set_enabled(None)


# ----------------------------------------------------------------------------------- activations
def test_tanh_matches_numpy_over_the_whole_range():
    # every binade from 1e-300 to 1, the linear range to ±30 (past the clamp at 20), and the specials
    tiny = np.geomspace(1e-300, 1.0, 200_001)
    x = np.concatenate([tiny, -tiny, np.linspace(-30, 30, 1_200_001), [0.0, -0.0, np.inf, -np.inf]])
    out = np.empty_like(x)
    tanh_array(x, out)
    ref = np.tanh(x)
    # a few ulps relative: tanh is never 0 except at 0, where both are exactly ±0
    assert np.max(np.abs(out - ref) / np.maximum(np.abs(ref), np.finfo(float).tiny)) <= 1e-15
    assert np.array_equal(np.signbit(out[-4:-2]), [False, True])  # tanh(-0.0) is -0.0
    nan = np.empty(1)
    tanh_array(np.array([np.nan]), nan)
    assert np.isnan(nan[0])  # a blown-up state must stay NaN, so the solver rejects the step


# ------------------------------------------------------------------------------------ one stage
STAGE_CASES = [
    ((2, 3, 2), "tanh", None, 500),
    ((2, 3, 2), "tanh", (1.0, 1000.0), 7),  # stiff decay; a batch smaller than one block
    ((2, 8, 8, 2), "sigmoid", None, 2 * 256 + 44),  # two blocks (`_stage_kernels.BLOCK`) and a remainder
    ((3, 5, 3), "softplus", None, 64),
    ((2, 9, 6, 5, 2), "tanh", (0.5, 2.0), 1),  # depth 4, widths not multiples of the 4-row unroll
    # layers of at least BLAS_MIN_PRODUCT weights: the layer-by-layer stage with BLAS products
    ((2, 40, 2), "tanh", None, 70),
    ((2, 6, 33, 2), "softplus", (1.0, 5.0), 9),  # BLAS and written-out products in one network, decay
    ((8, 16, 8), "sigmoid", None, 1),
]


@pytest.mark.parametrize("widths,activation,decay,batch", STAGE_CASES)
def test_stage_kernel_matches_stage_vjps(widths, activation, decay, batch):
    rng = np.random.default_rng(3)
    model = MLP(widths, activation, None if decay is None else np.array(decay))
    theta = model.init(rng)
    n_slots = 3
    ref = StageVJPs(model, theta, batch, n_slots, cotangent_sign=-1.0)
    fast = CompiledStageVJPs(model, theta, batch, n_slots, cotangent_sign=-1.0, stage=compiled.kernels().mlp_stage)
    xs = [rng.uniform(-5, 5, (widths[0], batch)) for _ in range(n_slots)]
    as_ = [rng.normal(size=(widths[0], batch)) for _ in range(n_slots)]
    results = []
    for tape in (ref, fast):
        outs = []
        for slot in range(n_slots):
            f, az = np.empty((widths[0], batch)), np.empty((widths[0], batch))
            tape.vjp(slot, xs[slot], as_[slot], f if slot != 1 else None, az)  # slot 1 without f
            outs += [f, az] if slot != 1 else [az]
        tape.carry(2, 0)  # first-same-as-last: the slot bookkeeping is shared with numpy's
        value = np.empty((widths[0], batch))
        tape.value(xs[1], value)
        weights = np.array([[1.0, 0.5, -2.0], [0.0, 1.0, 3.0]])
        outs += [value, tape.theta_cotangents(weights)]
        results.append(outs)
    for got, want in zip(results[1], results[0]):
        assert rel(got, want) <= 1e-14  # one stage: a few ulps (module docstring)


def test_stage_kernel_matches_model_vjp():
    """Against the plain backpropagation of MLP.vjp, which shares no code with either tape."""
    rng = np.random.default_rng(4)
    model = MLP((2, 16, 2), "tanh", np.array([1.0, 3.0]))
    theta = model.init(rng)
    z, a = rng.uniform(-3, 3, (40, 2)), rng.normal(size=(40, 2))
    f, a_z, a_theta = model.vjp(0.0, z, theta, a)
    tape = CompiledStageVJPs(model, theta, 40, 1, stage=compiled.kernels().mlp_stage)
    out_f, out_az = np.empty((2, 40)), np.empty((2, 40))
    tape.vjp(0, np.ascontiguousarray(z.T), np.ascontiguousarray(a.T), out_f, out_az)
    assert rel(out_f.T, f) <= 1e-14 and rel(out_az.T, a_z) <= 1e-14
    assert rel(tape.theta_cotangents(np.ones((1, 1)))[0], a_theta) <= 1e-14


# ----------------------------------------------------------------------- whole gradients, catalogue
CATALOGUE = {
    "seed": (seed_problem, 100, "DP5"),
    "multi_time": (multi_time_problem, 100, "DP5"),
    "deep": (deep_problem, 50, "DP5"),
    "stiff": (stiff_problem, 20, "RadauIIA5"),  # the implicit solver reaches the kernels through joint_rhs
}
ADJOINTS = {
    "BacksolveAdjoint": BacksolveAdjoint(),
    "InterpolatingAdjoint": InterpolatingAdjoint(),
    "InterpolatingAdjoint-checkpointed": InterpolatingAdjoint(checkpointing=True),
    "QuadratureAdjoint": QuadratureAdjoint(),
}
CASES = [(c, e) for c in CATALOGUE for e in ADJOINTS if not (c == "stiff" and e == "BacksolveAdjoint")]


@pytest.fixture(scope="module")
def problems():
    cache = {}

    def get(name):
        if name not in cache:
            build, batch, solver = CATALOGUE[name]
            cache[name] = (build(batch=batch), solver)
        return cache[name]

    return get


@pytest.mark.parametrize("case_name,engine_name", CASES)
def test_gradient_matches_numpy_path_on_the_same_steps(problems, case_name, engine_name):
    problem, solver = problems(case_name)
    engine = ADJOINTS[engine_name]
    compiled.set_enabled(True)
    try:
        fast = gradient(problem, engine=engine, solver=solver, rtol=1e-6, atol=1e-6)
        compiled.set_enabled(False)
        ref = gradient(problem, engine=engine, solver=solver, rtol=1e-6, atol=1e-6)
    finally:
        compiled.set_enabled(None)
    # the same step sequence: otherwise the comparison would measure the tolerance, not the kernels
    assert fast.forward_stats == ref.forward_stats
    assert fast.backward_stats == ref.backward_stats
    decay = problem.model.decay
    bound = AGREEMENT * (1.0 if decay is None else float(np.max(decay)))  # see the module docstring
    assert abs(fast.loss - ref.loss) <= bound * abs(ref.loss)
    assert rel(fast.dtheta, ref.dtheta) <= bound
    assert rel(fast.dz0, ref.dz0) <= bound


# ------------------------------------------------------------------------------------ the switch
def test_switch_selects_the_implementation(numpy_path):
    model, wide = MLP((2, 3, 2)), MLP((2, compiled.AUTO_MAX_WIDTH + 1, 2))
    theta = np.zeros(model.n_params)
    assert type(compiled.stage_vjps(model, theta, 4, 1)) is StageVJPs
    assert compiled.status().startswith("numpy: turned off by")
    compiled.set_enabled(True)  # forced: every width
    assert type(compiled.stage_vjps(wide, np.zeros(wide.n_params), 4, 1)) is CompiledStageVJPs
    assert compiled.status(wide).startswith("compiled (numba ")


@pytest.mark.parametrize(
    "value,narrow,wide",
    [("0", "False", "False"), ("1", "True", "True"), ("", "True", "False")],  # off, forced, automatic
)
def test_environment_variable(value, narrow, wide):
    code = (
        "import harness._compiled as c; from harness.model import MLP; "
        "m = MLP((2, 3, 2)); w = MLP((2, c.AUTO_MAX_WIDTH + 1, 2)); "
        "print(c.enabled(m)); print(c.enabled(w)); print(c.status(w))"
    )
    env = dict(os.environ, **{compiled.ENV_VARIABLE: value})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[:2] == [narrow, wide]
    if value == "0":
        assert lines[2] == "numpy: turned off by HARNESS_COMPILED=0"
    elif value == "":
        # the stage kernels are off for the wide model; the whole loop (every size) is not
        assert f"(implicit solvers, DP8, other engines): hidden width {compiled.AUTO_MAX_WIDTH + 1} > " in lines[2]
        assert "whole adaptive loop (explicit RK; Backsolve, Interpolating, Quadrature, Gauss and " \
            "RecursiveCheckpoint adjoints): used at every size" in lines[2]


def test_the_declared_activations_are_the_kernels_own():
    """`COMPILED_ACTIVATIONS` decides without importing numba which models the kernels serve; it must
    name exactly the activations the kernel implements, and other activations run numpy."""
    from harness._compiled import COMPILED_ACTIVATIONS, enabled, status
    from harness._compiled._arguments import ACTIVATION_CODES

    assert set(COMPILED_ACTIVATIONS) == set(ACTIVATION_CODES)
    linear = MLP((2, 3, 2), activation="identity")
    assert not enabled(linear) and "identity" in status(linear)


def test_numpy_reference_holds_in_its_own_thread_only_and_overlapping_blocks_leave_no_trace():
    """A comparison's cells run on threads and each makes its data inside `numpy_reference`. The block
    turns the compiled path off in its own thread only; two overlapping blocks ended in the other
    order than they began leave the mode as it was (a process-wide switch, saved and restored by
    each block, was left off by them, and every later gradient of the process ran numpy)."""
    import threading

    before = compiled._mode()
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def hold():
        with compiled.numpy_reference():
            seen["inside the block"] = compiled._mode()
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(30)
    seen["another thread meanwhile"] = compiled._mode()
    with compiled.numpy_reference():  # begun after the other thread's block, ended after it too
        release.set()
        thread.join(30)
    seen["after both"] = compiled._mode()
    assert seen == {"inside the block": ("off", "harness._compiled.numpy_reference()"),
                    "another thread meanwhile": before, "after both": before}
