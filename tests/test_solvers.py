"""ODE solvers (harness/solvers): accuracy against exact solutions, convergence order, dense output,
both time directions, failure reporting, input validation and cost counters. Float64 throughout.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.integrate import RK23, RK45
from scipy.linalg import block_diag, expm

from harness.errors import HarnessInputError, SolverError
from harness.model import MLP
from harness.solvers import (
    SOLVERS,
    ExplicitRungeKutta,
    QuadratureTailSystem,
    Solver,
    Tableau,
    check_solver,
    integrate,
    register,
    solver_for,
    stage_slots,
)
from harness.solvers._rk_step import StepWorkspace, rk_step
from harness.solvers._step_budget import FIRST_CHECK, MAX_STEPS, MIN_STEPS, PATIENT_STEPS, default_max_steps
from harness.solvers._step_control import MAX_FACTOR, MIN_FACTOR, SAFETY, StepSizeController

ALL_SOLVERS = sorted(SOLVERS)
# our own vectorised loop: DP5, BS3
EXPLICIT_RK = sorted(name for name, solver in SOLVERS.items() if isinstance(solver, ExplicitRungeKutta))


class Counted:
    """A right-hand side (or Jacobian) that counts its calls, to check the solvers' counters."""

    def __init__(self, fun):
        self.fun, self.calls = fun, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.fun(t, y)


def linear_system(dim=6, seed=0):
    """dy/dt = A y with A block-diagonal of damped rotations [[-α, ω], [-ω, -α]]: exact solution
    y(t) = exp(A (t - t0)) y0, non-trivial (oscillating, decaying) in every component."""
    rng = np.random.default_rng(seed)
    alphas, omegas = rng.uniform(0.05, 0.3, dim // 2), rng.uniform(0.5, 2.0, dim // 2)
    A = block_diag(*[np.array([[-a, w], [-w, -a]]) for a, w in zip(alphas, omegas)])
    return A, rng.normal(size=dim)


def _solve_linear(A, y0, t0, t1, method, rtol, atol, **kw):
    jac = sp.csc_matrix(A)
    return integrate(lambda t, y: A @ y, t0, t1, y0, method=method, rtol=rtol, atol=atol,
                     jac=lambda t, y: jac, **kw)


def _normalised_error(y, y_true, rtol, atol):
    """max |y - y_true| / (atol + rtol ‖y_true‖∞), per time (rows of y).

    scipy's tests divide by (atol + rtol |y_true|) component by component; our solutions oscillate,
    and at a zero crossing of one component that would measure its error against atol alone while
    the step-size controller's RMS norm mixes all components. So the scale is that of the whole
    state at that time.
    """
    y, y_true = np.atleast_2d(y), np.atleast_2d(y_true)
    scale = atol + rtol * np.max(np.abs(y_true), axis=1, keepdims=True)
    return float(np.max(np.abs(y - y_true) / scale))


# Each accepted step's local error is below the tolerance (the controller accepts error_norm < 1,
# with a 0.9 safety factor); on t ∈ [0, 2] (one to two e-foldings of the damped rotations, a few
# tens of steps) the global error is the sum of the propagated local errors, a modest multiple of
# the tolerance. scipy's own tests use 5 for one short interval; 50 allows for the multistep BDF,
# whose local error estimate is of its current (variable, often low) order and accumulates over
# more, smaller steps. A wrong tableau, step-size rule or Jacobian layout would be off by orders
# of magnitude, not a factor of a few.
ERROR_CONSTANT = 50
TOLERANCES = [(1e-3, 1e-6), (1e-6, 1e-9), (1e-9, 1e-12)]
T_END = 2.0


@pytest.mark.parametrize("method,tols,direction",
                         list(itertools.product(ALL_SOLVERS, TOLERANCES, ("forward", "backward"))))
def test_linear_ode_error_within_tolerance(method, tols, direction):
    rtol, atol = tols
    A, y0 = linear_system()
    t0, t1 = (0.0, T_END) if direction == "forward" else (T_END, 0.0)  # t1 < t0: backwards
    traj = _solve_linear(A, y0, t0, t1, method, rtol, atol)
    y_true = expm(A * (t1 - t0)) @ y0
    assert traj.t_end == t1 and traj.y_end.shape == y0.shape
    assert _normalised_error(traj.y_end, y_true, rtol, atol) < ERROR_CONSTANT


@pytest.mark.parametrize("method,tols,direction",
                         list(itertools.product(ALL_SOLVERS, TOLERANCES, ("forward", "backward"))))
def test_dense_output_between_steps(method, tols, direction):
    rtol, atol = tols
    A, y0 = linear_system(seed=1)
    t0, t1 = (0.0, T_END) if direction == "forward" else (T_END, 0.0)
    traj = _solve_linear(A, y0, t0, t1, method, rtol, atol, dense=True)
    nodes = np.sort(traj.dense.t_nodes)
    assert len(nodes) >= 4  # several steps, so that there is an inside of steps to test
    # midpoints of every step, where an interpolant is furthest from its data, plus random times
    mids = 0.5 * (nodes[1:] + nodes[:-1])
    mids = mids[:: max(1, mids.size // 200)]  # at most ~200 steps' midpoints: expm is not free
    ts = np.concatenate((mids, np.random.default_rng(0).uniform(0, T_END, 50)))
    y_true = np.array([expm(A * (t - t0)) @ y0 for t in ts])
    many = traj.dense.many(ts)
    assert many.shape == (ts.size, y0.size)
    # The interpolants are one order below the step (DP5: 4, BS3: 3, DP8: 7, Radau: 3 on the
    # collocation polynomial, BDF: its current order), so between steps their error is of the size
    # of the local error, i.e. of the tolerance: the same constant as the end point applies.
    assert _normalised_error(many, y_true, rtol, atol) < ERROR_CONSTANT
    # the one-time call and the vectorised call are the same polynomial
    for k in (0, len(ts) // 2, len(ts) - 1):
        np.testing.assert_allclose(traj.dense(ts[k]), many[k], rtol=1e-13, atol=1e-15)
    # and at the end the dense solution passes through the end state (to roundoff)
    np.testing.assert_allclose(traj.dense(t1), traj.y_end, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method,direction", list(itertools.product(EXPLICIT_RK, ("forward", "backward"))))
def test_t_eval_reads_the_dense_output_without_changing_the_steps(method, direction):
    """`t_eval` is diffrax's SaveAt(ts) / scipy's t_eval: the step sequence (counts, end state, next
    step) is the one without it, bit for bit; a time inside a step is that step's polynomial (the
    dense solution's, up to the order of its sums: 1e-13 relative), and a time that is a step's end
    exactly, an interior node or t1, is that step's end state itself, bit for bit."""
    A, y0 = linear_system(seed=2)
    t0, t1 = (0.0, T_END) if direction == "forward" else (T_END, 0.0)
    plain = _solve_linear(A, y0, t0, t1, method, 1e-6, 1e-9, dense=True)
    nodes = plain.dense.t_nodes  # t0, then each accepted step's end, in the solve's direction
    assert len(nodes) >= 6
    inside = np.concatenate([np.linspace(a, b, 5)[1:-1] for a, b in zip(nodes[:-1], nodes[1:])])
    t_eval = np.concatenate((inside, nodes[1:]))
    t_eval = t_eval[np.argsort((1 if t1 > t0 else -1) * t_eval, kind="stable")]
    read = _solve_linear(A, y0, t0, t1, method, 1e-6, 1e-9, t_eval=t_eval)
    assert read.stats == plain.stats and read.h_last == plain.h_last
    np.testing.assert_array_equal(read.y_end, plain.y_end)
    assert read.y_eval.shape == (t_eval.size, y0.size)
    ends = {float(t): i for i, t in enumerate(nodes[1:])}
    for t, y in zip(t_eval, read.y_eval):
        if float(t) in ends:  # a step's end: the state the next step starts from (or y_end)
            i = ends[float(t)]
            want = plain.y_end if i == len(nodes) - 2 else plain.dense._y[i + 1]
            np.testing.assert_array_equal(y, want)
        else:
            np.testing.assert_allclose(y, plain.dense(t), rtol=1e-13, atol=1e-15)
    # and the values are the solution's, to the tolerance (the dense output's own accuracy)
    y_true = np.array([expm(A * (t - t0)) @ y0 for t in t_eval[::7]])
    assert _normalised_error(read.y_eval[::7], y_true, 1e-6, 1e-9) < ERROR_CONSTANT


@pytest.mark.parametrize("method", sorted(set(ALL_SOLVERS) - set(EXPLICIT_RK)))
def test_t_eval_is_refused_by_solvers_that_end_a_solve_at_each_time(method):
    A, y0 = linear_system()
    with pytest.raises(HarnessInputError, match=f"solver {method!r} does not read states"):
        _solve_linear(A, y0, 0.0, 1.0, method, 1e-6, 1e-6, t_eval=[0.5])


@pytest.mark.parametrize("t_eval", [[0.0, 0.5], [0.5, 1.5], [0.7, 0.3], [-0.1]])
def test_t_eval_outside_the_interval_or_unordered_is_refused(t_eval):
    A, y0 = linear_system()
    with pytest.raises(HarnessInputError, match=r"t_eval=.*expected times in \(0.0, 1.0\]"):
        _solve_linear(A, y0, 0.0, 1.0, "DP5", 1e-6, 1e-6, t_eval=t_eval)


@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_vectorised_state_matches_per_component_solves(method):
    """A D = 40 system of independent blocks solved at once is as accurate as the small one: the
    vectorised loop must not mix components (the batch layout relies on it)."""
    A, y0 = linear_system(dim=40, seed=2)
    rtol, atol = 1e-8, 1e-11
    traj = _solve_linear(A, y0, 0.0, T_END, method, rtol, atol)
    assert _normalised_error(traj.y_end, expm(A * T_END) @ y0, rtol, atol) < ERROR_CONSTANT


@pytest.mark.parametrize("method", ["RadauIIA5", "BDF"])
def test_implicit_solvers_on_stiff_linear_system(method):
    """dy/dt = -diag(1, 1000) y (the stiff problem's Λ): an explicit method would need ~1000 steps
    per unit time for stability; an implicit one takes few steps and keeps the slow mode accurate."""
    A = -np.diag([1.0, 1000.0])
    y0 = np.array([1.0, 1.0])
    rtol, atol = 1e-8, 1e-10
    traj = _solve_linear(A, y0, 0.0, 10.0, method, rtol, atol)
    assert _normalised_error(traj.y_end, np.exp(np.diag(A) * 10.0) * y0, rtol, atol) < ERROR_CONSTANT
    assert traj.stats.n_accepted < 1000  # DP5 needs > 3.3 / 1000 per step => > 3000 steps on [0, 10]


def test_explicit_rk_reproduces_scipy_step_for_step():
    """DP5 and BS3 run scipy's RK45 / RK23 tableaux and step-size control in our own loop, so on the
    same problem they must take the same steps and reach the same end state; only the order of
    floating-point operations differs (vectorised stage sums), hence agreement to ~100 eps."""
    A, y0 = linear_system()
    for method, cls in (("DP5", RK45), ("BS3", RK23)):
        for rtol, atol in TOLERANCES[:2]:
            ours = Counted(lambda t, y: A @ y)
            traj = integrate(ours, 0.0, 5.0, y0, method=method, rtol=rtol, atol=atol)
            ref = cls(lambda t, y: A @ y, 0.0, y0, 5.0, rtol=rtol, atol=atol)
            steps = 0
            while ref.status == "running":
                ref.step()
                steps += 1
            assert traj.stats.n_accepted == steps, (method, rtol)
            assert traj.stats.n_rhs == ref.nfev == ours.calls, (method, rtol)
            np.testing.assert_allclose(traj.y_end, ref.y, rtol=0, atol=100 * np.finfo(float).eps)


# ------------------------------------------------------------------ split systems (solvers/_quadrature_tail.py)
class LinearWithQuadrature(QuadratureTailSystem):
    """u' = A u, q' = g(u) = [sin(u) ; u²] (nonlinear, so that batching g's stage values is tested on
    more than a linear map): g is recorded per slot and summed in `quadrature`."""

    def __init__(self, A, n_slots):
        super().__init__(A.shape[0], 2 * A.shape[0], n_slots)
        self.A, self.recorded = A, np.zeros((n_slots, 2 * A.shape[0]))
        self.calls = 0

    def stage_rhs(self, t, u, slot, out):
        self.calls += 1
        self.recorded[slot] = np.concatenate((np.sin(u), u * u))
        out[:] = self.A @ u

    def quadrature(self, weights):
        return weights @ self.recorded

    def carry(self, source, target):
        self.recorded[target] = self.recorded[source]


@pytest.mark.parametrize("method", EXPLICIT_RK)
@pytest.mark.parametrize("h0", [None, 0.05])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_split_system_takes_the_steps_of_the_joint_system(method, h0, direction):
    """Summing the quadrature once per step is the same Runge-Kutta method on the whole state: same
    accepted and rejected steps, same evaluation count, and the same end state up to the rounding of
    reordered stage sums (each entry a sum of <= 8 terms of size ~|y|: 100 eps |y| is ample)."""
    A, u0 = linear_system()
    y0 = np.concatenate((u0, np.zeros(2 * u0.size)))
    split = LinearWithQuadrature(A, stage_slots(method))
    t1 = direction * 5.0
    ours = integrate(split, 0.0, t1, y0, method=method, rtol=1e-6, atol=1e-8, h0=h0)
    joint = Counted(LinearWithQuadrature(A, 1).joint_rhs)
    ref = integrate(joint, 0.0, t1, y0, method=method, rtol=1e-6, atol=1e-8, h0=h0)
    assert ours.stats.n_accepted == ref.stats.n_accepted > 5
    assert ours.stats.n_rejected == ref.stats.n_rejected
    assert ours.stats.n_rhs == ref.stats.n_rhs == joint.calls == split.calls
    scale = np.max(np.abs(ref.y_end))
    np.testing.assert_allclose(ours.y_end, ref.y_end, rtol=0, atol=100 * np.finfo(float).eps * scale)


@pytest.mark.parametrize("method", ["DP8", "RadauIIA5"])
def test_split_system_with_other_solvers_integrates_the_joint_rhs(method):
    """Solvers that step the whole state see `joint_rhs`: the quadrature is then an ordinary part of
    the state, and reaches its exact value within the tolerance (q = ∫ g(u) dt against a fine DP5)."""
    A, u0 = linear_system()
    y0 = np.concatenate((u0, np.zeros(2 * u0.size)))

    def jac(t, y):
        return sp.csc_matrix(np.block([[A, np.zeros((6, 12))], [_g_jac(y[:6]), np.zeros((12, 12))]]))

    got = integrate(LinearWithQuadrature(A, stage_slots(method)), 0.0, T_END, y0, method=method,
                    rtol=1e-8, atol=1e-10, jac=jac if SOLVERS[method].implicit else None)
    fine = integrate(LinearWithQuadrature(A, stage_slots("DP5")), 0.0, T_END, y0, method="DP5",
                     rtol=1e-12, atol=1e-14)
    assert _normalised_error(got.y_end, fine.y_end, 1e-8, 1e-10) < 10  # global error: a few tolerances


def _g_jac(u):
    return np.vstack((np.diag(np.cos(u)), np.diag(2 * u)))


# ------------------------------------------------------------------------------ convergence order
def _fixed_step_error(method, n_steps, A, y0, T):
    """Global error at T with n equal steps. The API has no fixed-step mode, but one call with
    h0 = t1 - t0 and enormous tolerances is exactly one step (the first trial step is h0, clipped to
    t1, and accepted because the error norm is ~1e-10 of the scale): chaining n calls is a
    fixed-step integration with the method's propagated (higher-order) solution."""
    y, t = y0.copy(), 0.0
    for k in range(n_steps):
        t_next = T * (k + 1) / n_steps
        # h0 = t_next - t exactly as the solver computes the interval, so it never exceeds it
        traj = integrate(lambda t, y: A @ y, t, t_next, y, method=method, rtol=1e10, atol=1e10,
                         h0=t_next - t)
        assert traj.stats.n_accepted == 1
        y, t = traj.y_end, t_next
    return float(np.max(np.abs(y - expm(A * T) @ y0)))


@pytest.mark.parametrize(
    "method,order,steps",
    # step counts chosen in the asymptotic range and with errors well above roundoff (>1e-12)
    [("DP5", 5, (4, 8, 16, 32, 64)), ("BS3", 3, (4, 8, 16, 32, 64)), ("DP8", 8, (2, 3, 4, 6, 8))],
)
def test_convergence_order(method, order, steps):
    """Slope of log(error) against log(h) by least squares (diffrax's check): the global error of
    an order-p method is C h^p. ±0.35 allows the O(h^{p+1}) corrections visible at the largest h,
    while a tableau error would drop the slope by at least one."""
    assert SOLVERS[method].order == order  # the declared order is the one measured here
    A, y0 = linear_system()
    T = 2.0
    hs = np.array([T / n for n in steps])
    errors = np.array([_fixed_step_error(method, n, A, y0, T) for n in steps])
    assert np.all(errors > 1e-12)  # above roundoff, so the fit sees truncation error only
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.35, slope


@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_first_step_longer_than_interval_is_accepted(method):
    """`h0` is documented as "e.g. the last one of the previous segment", and the piecewise forward
    solve (forward.py) and ForwardSensitivity pass exactly that; it is routinely longer than the
    next, shorter piece. Every method must then just take a shorter first step (scipy refuses a
    `first_step` beyond the interval with a bare ValueError, so the scipy-backed DP8 / RadauIIA5 /
    BDF clip it to |t1 - t0|)."""
    A, y0 = linear_system()
    rtol, atol = 1e-8, 1e-11
    traj = _solve_linear(A, y0, 0.0, 0.1, method, rtol, atol, h0=0.5)
    assert _normalised_error(traj.y_end, expm(A * 0.1) @ y0, rtol, atol) < ERROR_CONSTANT


@pytest.mark.parametrize("method,order", [("DP5", 4), ("BS3", 3)])
def test_dense_output_order(method, order):
    """One step of size h from the exact y(t0); the interpolant of order q (DP5: 4, BS3: 3) has local
    error C h^{q+1} inside the step. Fitted slope at the step's 1/3 point within ±0.35 of q + 1."""
    A, y0 = linear_system()
    hs = np.array([0.4, 0.2, 0.1, 0.05])
    errors = []
    for h in hs:
        traj = integrate(lambda t, y: A @ y, 0.0, h, y0, method=method, rtol=1e10, atol=1e10, h0=h,
                         dense=True)
        errors.append(np.max(np.abs(traj.dense(h / 3) - expm(A * h / 3) @ y0)))
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - (order + 1)) < 0.35, slope


def test_tableau_invariants():
    """Consistency conditions of the embedded pairs: Σ b = 1, c_i = Σ_j a_ij (row sums), the error
    weights E sum to 0 (both solutions are consistent), and A strictly lower triangular (explicit)."""
    for tab in (SOLVERS[name].tableau for name in EXPLICIT_RK):
        np.testing.assert_allclose(np.sum(tab.B), 1.0, rtol=0, atol=1e-15)
        np.testing.assert_allclose(tab.A.sum(axis=1), tab.C, rtol=0, atol=1e-15)
        np.testing.assert_allclose(np.sum(tab.E), 0.0, rtol=0, atol=1e-15)
        assert np.all(np.triu(tab.A) == 0)


@pytest.mark.parametrize("method,cls", [("DP5", RK45), ("BS3", RK23)])
def test_written_out_tableaus_are_scipys_bit_for_bit(method, cls):
    """DP5's and BS3's coefficients are written out (`_tableaus.py`, so that a gradient need not
    import scipy.integrate); they must be scipy's RK45 / RK23 arrays exactly, float for float, and of
    the same type (writeable float64: the compiled loop is specialised on it)."""
    tab = SOLVERS[method].tableau
    for name in "ABCEP":
        ours, scipys = getattr(tab, name), getattr(cls, name)
        assert ours.dtype == scipys.dtype and ours.shape == scipys.shape and ours.flags.writeable, name
        assert np.array_equal(ours, scipys), name
    assert (tab.order, tab.error_order) == (cls.order, cls.error_estimator_order)


# ----------------------------------------------------------------------------------------- stats
@pytest.mark.parametrize("method,stages", [("DP5", 6), ("BS3", 3)])
def test_explicit_rk_counters(method, stages):
    """n_rhs counts: 1 for f(t0), 1 for the initial-step heuristic (only when h0 is not given), and
    per attempted step the s - 1 new stages plus the FSAL evaluation at t_new = s evaluations,
    whether the step is accepted or rejected (solvers/_explicit_rk.py). Checked against the calls
    actually made, on a problem whose fast transient forces rejections so both kinds are counted."""
    def rhs(t, y):
        return -50.0 * (y - np.cos(t))  # stiffish: the step size hits the stability limit

    y0 = np.array([0.0, 2.0, -1.0])
    counted = Counted(rhs)
    traj = integrate(counted, 0.0, 3.0, y0, method=method, rtol=1e-4, atol=1e-7)
    s = traj.stats
    assert s.n_rejected > 0 and s.n_accepted > 0
    assert s.n_rhs == counted.calls == 1 + 1 + stages * (s.n_accepted + s.n_rejected)

    counted = Counted(rhs)
    traj = integrate(counted, 0.0, 3.0, y0, method=method, rtol=1e-4, atol=1e-7, h0=0.01)
    s = traj.stats
    assert s.n_rhs == counted.calls == 1 + stages * (s.n_accepted + s.n_rejected)


@pytest.mark.parametrize("method", ["DP8", "RadauIIA5", "BDF"])
def test_scipy_counters_match_calls(method):
    A, y0 = linear_system()
    rhs = Counted(lambda t, y: A @ y)
    jac = Counted(lambda t, y: sp.csc_matrix(A))
    traj = integrate(rhs, 0.0, T_END, y0, method=method, rtol=1e-6, atol=1e-9,
                     jac=jac if SOLVERS[method].implicit else None)
    assert traj.stats.n_rhs == rhs.calls
    assert traj.stats.n_jac == jac.calls
    assert traj.stats.n_accepted > 0 and traj.stats.n_rejected is None
    if SOLVERS[method].implicit:
        assert jac.calls >= 1 and traj.stats.n_lu >= 1


def test_stats_add_up():
    A, y0 = linear_system()
    a = _solve_linear(A, y0, 0.0, 1.0, "DP5", 1e-6, 1e-9).stats
    b = _solve_linear(A, y0, 0.0, 1.0, "RadauIIA5", 1e-6, 1e-9).stats
    total = a + b
    assert total.n_rhs == a.n_rhs + b.n_rhs and total.n_accepted == a.n_accepted + b.n_accepted
    assert total.n_rejected is None  # unknown for scipy's methods, so unknown in a sum
    assert (a + a).n_rejected == 2 * a.n_rejected


# ------------------------------------------------------------------------------- failure & input
def _blow_up(t, y):
    return y * y  # y(0) = 1: y = 1 / (1 - t), infinite at t = 1


@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_blow_up_raises_solver_error_naming_method_and_time(method):
    jac = (lambda t, y: np.array([[2.0 * y[0]]])) if SOLVERS[method].implicit else None
    with pytest.raises(SolverError) as err:
        integrate(_blow_up, 0.0, 2.0, np.array([1.0]), method=method, rtol=1e-6, atol=1e-9, jac=jac)
    e = err.value
    assert e.method == method and e.t_target == 2.0
    # The numerical solution has its own singularity, displaced from t = 1 by about its relative
    # error (1/y is integrated to within ~1e-6 relative, rtol = 1e-6); the solve must fail right
    # there, neither early (a spurious failure) nor beyond it (a solve through infinity). 1e-3 is
    # a thousand times the displacement and still rejects any failure away from the singularity.
    assert abs(e.t_reached - 1.0) < 1e-3
    assert method in str(e) and f"{e.t_reached:.6g}" in str(e)


def test_unknown_solver_lists_valid_names():
    with pytest.raises(HarnessInputError) as err:
        integrate(lambda t, y: -y, 0.0, 1.0, np.ones(2), method="RK4")
    message = str(err.value)
    assert "'RK4'" in message and all(name in message for name in SOLVERS)


@pytest.mark.parametrize("label", ["rtol", "atol"])
@pytest.mark.parametrize("value", [0.0, -1e-6, float("nan"), float("inf"), "1e-6", None])
def test_bad_tolerances_rejected(label, value):
    kwargs = {"rtol": 1e-6, "atol": 1e-6, label: value}
    with pytest.raises(HarnessInputError, match=rf"{label}="):
        integrate(lambda t, y: -y, 0.0, 1.0, np.ones(2), method="DP5", **kwargs)


@pytest.mark.parametrize("method", ["RadauIIA5", "BDF"])
def test_implicit_solver_without_jacobian_rejected(method):
    with pytest.raises(HarnessInputError, match=method):
        integrate(lambda t, y: -y, 0.0, 1.0, np.ones(2), method=method)


# ------------------------------------------------------------------------------ the registry
def test_every_registered_solver_declares_its_properties():
    """Callers decide by these attributes (implicit => Jacobian, stage_slots => quadrature tail),
    never by name, so every entry must carry them with the right types."""
    assert set(SOLVERS) == {"DP5", "BS3", "DP8", "RadauIIA5", "BDF"}
    for name, solver in SOLVERS.items():
        assert isinstance(solver, Solver) and solver.name == name
        assert check_solver(name) is solver
        assert isinstance(solver.implicit, bool)
        assert isinstance(solver.order, int) and solver.order >= 1
        assert isinstance(solver.dense_output, (int, str)) and solver.dense_output
        assert isinstance(solver.description, str) and solver.description
        assert isinstance(solver.stage_slots, int) and solver.stage_slots >= 1
        assert name in repr(solver)
    assert {n for n, s in SOLVERS.items() if s.implicit} == {"RadauIIA5", "BDF"}
    for name in EXPLICIT_RK:  # one slot per stage plus the first-same-as-last one
        solver = SOLVERS[name]
        assert solver.stage_slots == len(solver.tableau.B) + 1 == stage_slots(name)
        assert solver.dense_output == solver.tableau.P.shape[1]
    assert {n: SOLVERS[n].dense_output for n in ("DP5", "BS3")} == {"DP5": 4, "BS3": 3}
    assert all(stage_slots(n) == 1 for n in ("DP8", "RadauIIA5", "BDF"))
    # which solvers read observation times from their dense output (harness/_forward.py's rule)
    assert {n for n, s in SOLVERS.items() if s.reads_t_eval} == {"DP5", "BS3"}


class HeunEuler(ExplicitRungeKutta):
    """A solver defined outside the package: Heun's method (order 2) with Euler embedded (order 1),
    linear dense output. E = B - B_euler, padded with 0 for the FSAL stage."""

    name = "HeunEuler"
    tableau = Tableau(
        A=np.array([[0.0, 0.0], [1.0, 0.0]]), B=np.array([0.5, 0.5]), C=np.array([0.0, 1.0]),
        E=np.array([-0.5, 0.5, 0.0]), P=np.array([[0.5], [0.5], [0.0]]), order=2, error_order=1,
    )
    description = "Heun-Euler 2(1), for the registry test"


@pytest.fixture
def heun_euler():
    solver = register(HeunEuler())
    yield solver
    del SOLVERS["HeunEuler"]


def test_a_solver_is_added_by_one_registration(heun_euler):
    """One class and one `register` call: the solver is then found by name everywhere `integrate`
    and `check_solver` are used, with its declared attributes, and it is as accurate as its order."""
    assert check_solver("HeunEuler") is heun_euler and heun_euler.stage_slots == 3
    with pytest.raises(HarnessInputError, match="HeunEuler"):  # listed among the valid names
        check_solver("Heun")
    A, y0 = linear_system()
    rtol, atol = 1e-5, 1e-8
    traj = _solve_linear(A, y0, 0.0, T_END, "HeunEuler", rtol, atol, dense=True)
    assert traj.method == "HeunEuler"
    assert _normalised_error(traj.y_end, expm(A * T_END) @ y0, rtol, atol) < ERROR_CONSTANT
    np.testing.assert_allclose(traj.dense(T_END), traj.y_end, rtol=1e-12, atol=1e-14)
    # order 2 measured as in test_convergence_order
    hs = np.array([T_END / n for n in (16, 32, 64, 128)])
    errors = [_fixed_step_error("HeunEuler", n, A, y0, T_END) for n in (16, 32, 64, 128)]
    assert abs(np.polyfit(np.log(hs), np.log(errors), 1)[0] - 2) < 0.35
    # and it steps a quadrature-tail system like the joint system
    z0 = np.concatenate((y0, np.zeros(2 * y0.size)))
    split = integrate(LinearWithQuadrature(A, stage_slots("HeunEuler")), 0.0, T_END, z0, method="HeunEuler")
    joint = integrate(LinearWithQuadrature(A, 1).joint_rhs, 0.0, T_END, z0, method="HeunEuler")
    assert split.stats.n_accepted == joint.stats.n_accepted
    scale = np.max(np.abs(joint.y_end))  # reordered stage sums: rounding only, as for DP5 above
    np.testing.assert_allclose(split.y_end, joint.y_end, rtol=0, atol=100 * np.finfo(float).eps * scale)


def test_registration_is_checked(heun_euler):
    with pytest.raises(ValueError, match="already registered"):
        register(HeunEuler())
    with pytest.raises(TypeError, match="not a harness.solvers.Solver"):
        register("DP5")


def test_solver_for_gives_stiff_models_an_implicit_solver():
    """The one place that decides it: an explicit solver asked for a stiff model (decay term) is
    replaced by RadauIIA5; an implicit one is kept; a plain model keeps what was asked for."""
    plain, stiff = MLP((2, 3, 2)), MLP((2, 3, 2), decay=np.array([1.0, 1000.0]))
    for name in SOLVERS:
        assert solver_for(plain, name) is SOLVERS[name]
        expected = name if SOLVERS[name].implicit else "RadauIIA5"
        assert solver_for(stiff, name) is SOLVERS[expected]
    with pytest.raises(HarnessInputError, match="'RK4'"):
        solver_for(plain, "RK4")


# ------------------------------------------------------------- one step, and the controller
@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_rk_step_on_a_linear_ode(method):
    """One `rk_step` from the exact y(0) against y(h) = exp(A h) y(0). As scipy's tests do, the
    error is normalised by the tolerances: whenever the step's own error estimate says "accept"
    (RMS norm < 1 at rtol, atol), the propagated solution, one order higher than the embedded one
    the estimate measures, is within the tolerances too. And its local error shrinks as h^(p+1)."""
    tableau = SOLVERS[method].tableau
    A, y0 = linear_system()
    rtol, atol = 1e-4, 1e-7
    accepted, true_errors = 0, []
    hs = np.array([0.4, 0.2, 0.1, 0.05, 0.025, 0.0125])
    for h in hs:
        work = StepWorkspace(tableau, y0.size)
        work.Y[0], work.K[0] = y0, A @ y0
        y_new, error = rk_step(lambda t, y, i, out: np.matmul(A, y, out=out), 0.0, h, h, work)
        y_true = expm(A * h) @ y0
        np.testing.assert_allclose(work.K[-1], A @ y_new, rtol=1e-14, atol=1e-14)  # FSAL stage
        true_errors.append(np.max(np.abs(y_new - y_true)))
        scale = atol + rtol * np.maximum(np.abs(y0), np.abs(y_new))
        if np.sqrt(np.mean((error / scale) ** 2)) < 1:
            accepted += 1
            assert _normalised_error(y_new, y_true, rtol, atol) < 1
    assert accepted >= 1  # the smallest steps are accepted, so the check above ran
    assert min(true_errors) > 1e-14  # ~50 eps |y|, above a step's roundoff: the fit sees truncation error
    slope = np.polyfit(np.log(hs), np.log(true_errors), 1)[0]
    assert abs(slope - (tableau.order + 1)) < 0.35, slope


def test_step_size_controller_factor_rules():
    """scipy's rule: safety 0.9, exponent -1/(q+1), factor within [0.2, 10], never > 1 right after
    a rejection, and a non-finite error (an overflowing stage) shrinks h by the minimum factor."""
    assert (SAFETY, MIN_FACTOR, MAX_FACTOR) == (0.9, 0.2, 10.0)
    c = StepSizeController(error_order=4)
    assert c.exponent == -1 / 5
    assert c.after_accept(0.0, False) == 10.0  # a zero error: grow by the maximum
    assert c.after_accept(1e-12, False) == 10.0  # capped
    assert c.after_accept(0.5, False) == 0.9 * 0.5 ** (-1 / 5)  # between: the formula, > 1
    assert c.after_accept(0.5, True) == 1.0  # no growth after a rejection
    assert c.after_accept(0.99, True) == 0.9 * 0.99 ** (-1 / 5) < 1  # shrinking is still allowed
    assert c.after_reject(1.5) == 0.9 * 1.5 ** (-1 / 5)
    assert c.after_reject(1e6) == 0.2  # floored
    assert c.after_reject(float("inf")) == c.after_reject(float("nan")) == 0.2


# ------------------------------------------------------------------ step budget and fail-fast
def _fast_oscillator(omega):
    """y' = ω J y: a rotation of period 2π/ω; every method must resolve it, ~ω steps per unit time."""
    J = omega * np.array([[0.0, 1.0], [-1.0, 0.0]])
    return Counted(lambda t, y: J @ y), (lambda t, y: J)


@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_absurd_dynamics_fail_at_the_first_check_with_one_line(method):
    """Dynamics far too fast for the span: ~1e12 steps would be needed against a budget of at most
    1e6, beyond even the early margin (1e4). The solve must stop at the first projection, after
    FIRST_CHECK attempted steps, so its cost (and wall time) is bounded by a few hundred steps'
    evaluations (an implicit step costs a few Newton evaluations), not a million steps."""
    rhs, jac = _fast_oscillator(1e11)
    with pytest.raises(SolverError) as err:
        integrate(rhs, 0.0, 10.0, np.array([1.0, 0.0]), method=method, rtol=1e-6, atol=1e-9,
                  jac=jac if SOLVERS[method].implicit else None)
    message = str(err.value)
    assert "\n" not in message and "likely causes" in message and "lower the learning rate" in message
    assert f"after {FIRST_CHECK} steps" in message and err.value.method == method
    assert rhs.calls < 20 * FIRST_CHECK


@pytest.mark.parametrize("method", ["DP5", "BS3"])
def test_runaway_dynamics_fail_after_a_bounded_number_of_steps(method):
    """What a learning rate of 1e6 makes of a Neural ODE: a solve projecting ~1e8 steps (100 x the
    largest budget, within the early margin). It must stop at the first check past PATIENT_STEPS
    (6400), so it costs a bounded number of evaluations (seconds at a batch of 500), where the flat
    budget used to grind through a million steps."""
    rhs, _ = _fast_oscillator(1e7)
    with pytest.raises(SolverError, match="after 6400 steps") as err:
        integrate(rhs, 0.0, 10.0, np.array([1.0, 0.0]), method=method, rtol=1e-6, atol=1e-9)
    assert "budget 1000000" in str(err.value)
    stages = len(SOLVERS[method].tableau.B)
    assert 6400 == 2 * 32 * FIRST_CHECK > PATIENT_STEPS
    assert rhs.calls <= 2 + stages * 6400


@pytest.mark.parametrize("method", ["DP5", "BS3", "DP8"])
def test_an_end_time_beyond_reach_fails_fast(method):
    """times = [1e300] with ordinary dynamics: steps of order 1 cannot cover the span; the solve
    stops at the first projection instead of grinding through its budget."""
    rhs = Counted(lambda t, y: np.cos(t) - y)
    with pytest.raises(SolverError, match=r"time span \(1e\+300\)") as err:
        integrate(rhs, 0.0, 1e300, np.array([1.0]), method=method)
    assert err.value.t_target == 1e300 and rhs.calls < 20 * FIRST_CHECK


@pytest.mark.parametrize("method", ["RadauIIA5", "BDF"])
def test_a_slow_start_is_not_a_runaway(method):
    """An implicit solver crossing the fast transient of y' = -diag(1, 1e5) (y - cos t) from a
    far-off start at tight tolerances takes thousands of tiny steps first (its early projections
    are 10-100 times the budget), then long ones: it must finish, and accurately."""
    lam = np.array([1.0, 1e5])
    traj = integrate(lambda t, y: -lam * (y - np.cos(t)), 0.0, 10.0, np.array([5.0, 5.0]), method=method,
                     rtol=1e-10, atol=1e-12, jac=lambda t, y: np.diag(-lam))
    # exact: y = cos-forced response; for λ = 1e5 it is cos t + sin t / λ + O(1/λ²) after the transient
    exact_fast = (lam[1] ** 2 * np.cos(10.0) + lam[1] * np.sin(10.0)) / (lam[1] ** 2 + 1)
    assert abs(traj.y_end[1] - exact_fast) < 1e-6


def test_merely_stiff_solves_still_finish():
    """The projection must not stop a solve that is slow but sane: DP5 at its stability limit on
    y' = -1000 (y - cos t) needs ~3000 steps on [0, 10], within the default budget."""
    traj = integrate(lambda t, y: -1000.0 * (y - np.cos(t)), 0.0, 10.0, np.array([0.0]), method="DP5",
                     rtol=1e-6, atol=1e-9)
    assert 2000 < traj.stats.n_accepted + traj.stats.n_rejected < MIN_STEPS
    # y -> cos t + O(1e-3) after the transient (the lag of the forced decay is sin(t)/1000)
    assert abs(traj.y_end[0] - np.cos(10.0)) < 2e-3


@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_max_steps_is_honoured(method):
    A, y0 = linear_system()
    rhs = Counted(lambda t, y: A @ y)
    with pytest.raises(SolverError, match="step budget used up"):
        integrate(rhs, 0.0, 100.0, y0, method=method, rtol=1e-10, atol=1e-12, max_steps=20,
                  jac=(lambda t, y: A) if SOLVERS[method].implicit else None)
    assert rhs.calls <= 2 + 20 * 13  # at most 20 steps (DP8: 12 stages + the error stage)


@pytest.mark.parametrize("value", [0, -5, 2.5, True, "100"])
def test_bad_max_steps_rejected(value):
    with pytest.raises(HarnessInputError, match="max_steps="):
        integrate(lambda t, y: -y, 0.0, 1.0, np.ones(2), max_steps=value)


def test_default_budget_scales_with_the_problem():
    """100 times the first steps that fit in the span, within [MIN_STEPS, MAX_STEPS]."""
    assert default_max_steps(10.0, 1e-3) == 1_000_000 == MAX_STEPS
    assert default_max_steps(10.0, 0.005) == 200_000
    assert default_max_steps(10.0, 1.0) == MIN_STEPS
    assert default_max_steps(1e300, 1.0) == MAX_STEPS and default_max_steps(1.0, 0.0) == MAX_STEPS
