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
from harness.solvers import SOLVERS, QuadratureTailSystem, integrate, stage_slots
from harness.solvers._explicit_rk import TABLEAUS

ALL_SOLVERS = sorted(SOLVERS)
EXPLICIT_RK = sorted(TABLEAUS)  # our own vectorised loop: DP5, BS3


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
    for tab in TABLEAUS.values():
        np.testing.assert_allclose(np.sum(tab.B), 1.0, rtol=0, atol=1e-15)
        np.testing.assert_allclose(tab.A.sum(axis=1), tab.C, rtol=0, atol=1e-15)
        np.testing.assert_allclose(np.sum(tab.E), 0.0, rtol=0, atol=1e-15)
        assert np.all(np.triu(tab.A) == 0)


# ----------------------------------------------------------------------------------------- stats
@pytest.mark.parametrize("method,stages", [("DP5", 6), ("BS3", 3)])
def test_explicit_rk_counters(method, stages):
    """n_rhs counts: 1 for f(t0), 1 for the initial-step heuristic (only when h0 is not given), and
    per attempted step the s - 1 new stages plus the FSAL evaluation at t_new = s evaluations,
    whether the step is accepted or rejected (explicit_rk.integrate_rk). Checked against the calls
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
