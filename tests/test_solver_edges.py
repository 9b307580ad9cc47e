"""The solvers' edges, each on a tiny closed-form problem (milliseconds per test, float64): reading
`t_eval` at repeated times, from a column or ending inside the last step; the step interpolant that
`on_step` hands out; the dense output at its nodes and just outside its span; the messages of a
blow-up; the registry's checks; the cost counters' sums; the step rules the sensitivity code takes
from here (the backward pass's first step, the binomial checkpoint schedule).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from harness.errors import HarnessInputError, SolverError
from harness.solvers import (SOLVERS, ExplicitRungeKutta, QuadratureTailSystem, SolverStats, integrate,
                             register, solver_for, stage_slots)
from harness.solvers._explicit_rk import QuadratureTailStepper
from harness.solvers._step_rules import BACKWARD_FIRST_STEP_FRACTION, backward_first_step, binomial_capped, first_part
from harness.solvers._tableaus import DORMAND_PRINCE_54, _array

EXPLICIT_RK = ("BS3", "DP5")
ALL_SOLVERS = tuple(sorted(SOLVERS))
# y' = -y, y(t) = y0 exp(-(t - t0)): every value below is checked against this
DECAY = np.array([1.0, -2.0])


def _decay(t, y):
    return -y


def _decay_jac(t, y):
    return -sp.identity(y.size, format="csc")


def _exact(t, t0=0.0):
    return DECAY * math.exp(-(t - t0))


def _rel(y, want):
    return float(np.max(np.abs(np.asarray(y) - want)) / np.max(np.abs(want)))


def _fails_if_it_hangs(seconds):
    """A context in which a call that never returns (a search loop whose count does not advance)
    raises TimeoutError after `seconds` of wall time instead of hanging the suite."""
    import contextlib
    import signal

    def stop(signum, frame):
        raise TimeoutError(f"did not return within {seconds} s")

    @contextlib.contextmanager
    def guard():
        previous = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    return guard()


# ------------------------------------------------------------------------------------- t_eval
@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_a_repeated_time_is_read_twice_and_equal(method):
    """t_eval need only be ordered (scipy's and diffrax's rule), not strictly: a time given twice is
    read twice, the same state both times, within the tolerance of the exact solution."""
    t_eval = [0.25, 0.5, 0.5, 1.0]
    traj = integrate(_decay, 0.0, 1.0, DECAY, method=method, rtol=1e-8, atol=1e-10, t_eval=t_eval)
    assert traj.y_eval.shape == (4, 2)
    np.testing.assert_array_equal(traj.y_eval[1], traj.y_eval[2])
    for t, y in zip(t_eval, traj.y_eval):
        # a few tolerances of global error (local errors below rtol, summed over < 30 steps)
        assert _rel(y, _exact(t)) < 50 * 1e-8


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_times_that_end_inside_the_last_step_are_read(method):
    """One step from 0 to 0.25 (h0 = 0.25 at loose tolerances, so it is accepted) with the only time,
    0.125, inside it and not at its end: read from the step's polynomial, as the dense output reads
    it (to rounding), and within 1e-3 of exp(-0.125) (a 3rd/4th-order interpolant over a step of
    0.25: measured 2e-4 for BS3). Backwards, several times all inside the one step."""
    with _fails_if_it_hangs(30.0):  # several times inside one step: the reading loop must advance
        traj = integrate(_decay, 0.0, 0.25, DECAY, method=method, rtol=1.0, atol=1.0, h0=0.25,
                         t_eval=[0.05, 0.125])
    assert _rel(traj.y_eval[0], _exact(0.05)) < 1e-3
    traj = integrate(_decay, 0.0, 0.25, DECAY, method=method, rtol=1.0, atol=1.0, h0=0.25, t_eval=[0.125])
    dense = integrate(_decay, 0.0, 0.25, DECAY, method=method, rtol=1.0, atol=1.0, h0=0.25, dense=True)
    assert traj.stats.n_accepted == 1 and traj.y_eval.shape == (1, 2)
    np.testing.assert_allclose(traj.y_eval[0], dense.dense(0.125), rtol=1e-14, atol=0)
    assert _rel(traj.y_eval[0], _exact(0.125)) < 1e-3
    with _fails_if_it_hangs(30.0):
        back = integrate(_decay, 0.25, 0.0, _exact(0.25), method=method, rtol=1.0, atol=1.0, h0=0.25,
                         t_eval=[0.2, 0.125, 0.05])
    assert back.stats.n_accepted == 1
    for t, y in zip((0.2, 0.125, 0.05), back.y_eval):
        assert _rel(y, _exact(t)) < 1e-3


def test_a_column_of_times_is_read_as_a_flat_list_and_checked_for_order():
    """t_eval as an (M, 1) column: the same M states as the flat list; a column out of order is
    refused like the flat list."""
    flat = integrate(_decay, 0.0, 1.0, DECAY, rtol=1e-8, atol=1e-10, t_eval=[0.3, 0.6, 1.0])
    column = integrate(_decay, 0.0, 1.0, DECAY, rtol=1e-8, atol=1e-10, t_eval=[[0.3], [0.6], [1.0]])
    np.testing.assert_array_equal(column.y_eval, flat.y_eval)
    with pytest.raises(HarnessInputError, match="ordered from t0 towards t1"):
        integrate(_decay, 0.0, 1.0, DECAY, t_eval=[[0.6], [0.3]])


def test_the_t_eval_refusals_say_what_was_expected_in_full():
    with pytest.raises(HarnessInputError) as err:
        integrate(_decay, 0.0, 1.0, DECAY, t_eval=[0.7, 0.3])
    assert str(err.value) == "t_eval=[0.7, 0.3]: expected times in (0.0, 1.0], ordered from t0 towards t1"
    with pytest.raises(HarnessInputError) as err:
        integrate(_decay, 0.0, 1.0, DECAY, method="DP8", t_eval=[0.5])
    assert str(err.value) == ("t_eval: solver 'DP8' does not read states from its dense output (those that do: "
                              "DP5, BS3); end a solve at each time instead")


# ---------------------------------------------------------------------- on_step's interpolant
@pytest.mark.parametrize("method", ALL_SOLVERS)
@pytest.mark.parametrize("t0,t1", [(0.0, 2.0), (2.0, 0.0)])
def test_on_step_hands_each_step_and_its_interpolant(method, t0, t1):
    """Every accepted step is reported once, in order, as (t, h) with t + h the next step's t, the
    last one ending on t1; its interpolant, at times inside the step, is the solution within the
    tolerance (rtol = 1e-8: the interpolant's error is of the local error's size, and the global
    error a few tolerances: 100 x rtol bounds both), and at the step's start it is the step's start
    state (to rounding)."""
    steps = []

    def record(t, h, local):
        inside = np.array([t, t + 0.25 * h, t + 0.5 * h, t + h])
        states = local(inside)
        # times in float32 are times: read in float64 arithmetic, as their float64 values
        in_float32 = inside.astype(np.float32)
        np.testing.assert_allclose(local(in_float32), local(in_float32.astype(np.float64)), rtol=1e-15, atol=0)
        steps.append((t, h, states))

    jac = _decay_jac if SOLVERS[method].implicit else None
    traj = integrate(_decay, t0, t1, DECAY, method=method, rtol=1e-8, atol=1e-12, jac=jac, on_step=record)
    assert len(steps) == traj.stats.n_accepted >= 3
    assert steps[0][0] == t0 and math.isclose(steps[-1][0] + steps[-1][1], t1, rel_tol=0, abs_tol=1e-12)
    for (t, h, _), (t_next, _, _) in zip(steps, steps[1:]):
        assert math.isclose(t + h, t_next, rel_tol=1e-14) and h * (t1 - t0) > 0
    for t, h, states in steps:
        assert states.shape == (4, 2)
        for x, y in zip((0.0, 0.25, 0.5, 1.0), states):
            assert _rel(y, _exact(t + x * h, t0)) < 100 * 1e-8
    np.testing.assert_allclose(steps[-1][2][-1], traj.y_end, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- the dense output
@pytest.mark.parametrize("method", ALL_SOLVERS)
@pytest.mark.parametrize("t0,t1", [(0.0, 2.0), (2.0, 0.0)])
def test_the_dense_output_at_its_nodes_and_just_outside_its_span(method, t0, t1):
    """`many` and the one-time call are the same function everywhere: at every node (where an
    explicit pair's polynomial gives the state the solver stepped to, exactly), at both ends, and a
    hair outside the span (times that rounding puts there are read from the end steps' polynomials,
    an extrapolation within 1e-6 of the solution at rtol = 1e-8)."""
    jac = _decay_jac if SOLVERS[method].implicit else None
    traj = integrate(_decay, t0, t1, DECAY, method=method, rtol=1e-8, atol=1e-12, jac=jac, dense=True)
    nodes = np.asarray(traj.dense.t_nodes)
    assert nodes.size >= 4 and nodes[0] == t0 and nodes[-1] == t1
    direction = 1.0 if t1 > t0 else -1.0
    outside = np.array([t0 - direction * 1e-9, t1 + direction * 1e-9])
    ts = np.concatenate((nodes, outside))
    many = traj.dense.many(ts)
    assert many.shape == (ts.size, 2)
    for t, y in zip(ts, many):
        np.testing.assert_allclose(y, traj.dense(float(t)), rtol=1e-13, atol=1e-15)
        assert _rel(y, DECAY * math.exp(-(t - t0))) < 1e-6
    if method in EXPLICIT_RK:
        # inside nodes: the state each step started from, bit for bit (x = 0 of its polynomial)
        np.testing.assert_array_equal(many[1:nodes.size - 1], np.array(traj.dense._y[1:]))
        np.testing.assert_allclose(many[nodes.size - 1], traj.y_end, rtol=1e-14, atol=0)
    # integer times are times
    np.testing.assert_array_equal(traj.dense.many([1]), traj.dense.many([1.0]))


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_the_dense_output_of_a_single_backward_step(method):
    """One step from 0.25 back to 0: the polynomial is read in the backward direction (x = (t - t0) / h
    with h < 0), within 1e-3 of the solution inside (a 3rd/4th-order interpolant over 0.25), and
    exactly the end state at t1."""
    traj = integrate(_decay, 0.25, 0.0, _exact(0.25), method=method, rtol=1.0, atol=1.0, h0=0.25, dense=True)
    assert traj.stats.n_accepted == 1
    ts = np.array([0.2, 0.125, 0.05])
    for t, y in zip(ts, traj.dense.many(ts)):
        assert _rel(y, _exact(t)) < 1e-3 and _rel(traj.dense(float(t)), _exact(t)) < 1e-3
    np.testing.assert_allclose(traj.dense(0.0), traj.y_end, rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------- failures
def test_a_blow_up_in_finite_time_names_the_size_of_the_state():
    """y' = y², y(0) = 1: y = 1 / (1 - t). The step size underflows near t = 1 with |y| huge: the
    message gives max |y| (above 1e10: the solve has followed the blow-up far)."""
    with pytest.raises(SolverError) as err:
        integrate(lambda t, y: y * y, 0.0, 2.0, np.array([1.0, 0.5]), method="DP5", rtol=1e-6, atol=1e-9)
    message = str(err.value)
    prefix = "step size fell below the spacing of floats, with max |y| = "
    assert prefix in message and message.endswith(": the solution likely blows up in finite time here")
    size = float(message.split(prefix)[1].split(":")[0])
    assert size > 1e10 and abs(err.value.t_reached - 1.0) < 1e-3


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_a_state_that_becomes_nan_is_named_so(method):
    """A right-hand side that returns NaN: every step is rejected until the step underflows, and the
    message says why (not "blows up in finite time", which would send the reader elsewhere)."""
    with pytest.raises(SolverError) as err:
        integrate(lambda t, y: np.full_like(y, np.nan), 1.0, 2.0, DECAY, method=method, h0=0.1)
    assert str(err.value) == (f"{method} failed at t = 1 (target t = 2): the state became inf or NaN: the solution "
                              "blows up here (diverged parameters? lower the learning rate)")


# ------------------------------------------------------------------------------- the registry
class _Incomplete(ExplicitRungeKutta):
    name = "Incomplete"
    tableau = DORMAND_PRINCE_54
    # no description


def test_a_solver_that_does_not_declare_its_attributes_is_refused_by_name():
    with pytest.raises(TypeError) as err:
        register(_Incomplete())
    assert str(err.value) == "solver _Incomplete does not declare ['description']"
    assert "Incomplete" not in SOLVERS


class _Bare:
    """A model with no `decay` attribute at all (the protocol makes it optional)."""


def test_a_model_without_a_decay_attribute_is_not_stiff():
    for name in SOLVERS:
        assert solver_for(_Bare(), name) is SOLVERS[name]


# ------------------------------------------------------------------ quadrature-tail systems
class _ListRecords(QuadratureTailSystem):
    """u' = -u, q' = t u (time-dependent): the records kept in a Python list, one entry per slot,
    as a system may (the slot is an integer index). Exact: u = u0 e^{-t},
    q(t) = u0 (1 - (1 + t) e^{-t})."""

    def __init__(self, n_slots):
        super().__init__(2, 2, n_slots)
        self.records = [None] * n_slots

    def stage_rhs(self, t, u, slot, out):
        self.records[slot] = t * u
        out[:] = -u

    def quadrature(self, weights):
        return np.array([sum((w * r for w, r in zip(row, self.records) if w), np.zeros(2)) for row in weights])

    def carry(self, source, target):
        self.records[target] = self.records[source]


@pytest.mark.parametrize("method", ("BS3", "DP5", "DP8"))
@pytest.mark.parametrize("h0", [None, 0.1])
def test_a_quadrature_tail_with_time_dependent_records_kept_per_slot(method, h0):
    """q = ∫ t u dt, summed per step from records kept by slot index (DP8 steps `joint_rhs`); within
    50 tolerances of the closed form (global error of < 100 steps at rtol = 1e-9)."""
    y0 = np.array([1.0, -2.0, 0.0, 0.0])
    system = _ListRecords(stage_slots(method))
    assert (system.n_head, system.n_quadrature, system.n_slots) == (2, 2, stage_slots(method))
    traj = integrate(system, 0.0, 2.0, y0, method=method, rtol=1e-9, atol=1e-12, h0=h0)
    u0 = y0[:2]
    want = np.concatenate((u0 * math.exp(-2.0), u0 * (1 - 3 * math.exp(-2.0))))
    assert _rel(traj.y_end, want) < 50 * 1e-9


def test_a_quadrature_tail_stepper_has_no_dense_output():
    stepper = QuadratureTailStepper(_ListRecords(stage_slots("DP5")), DORMAND_PRINCE_54, np.zeros(4), 1e-6, 1e-6)
    with pytest.raises(ValueError) as err:
        stepper.dense_step(0.1)
    assert str(err.value) == "a QuadratureTailSystem has no dense output: integrate its joint_rhs instead"


# ------------------------------------------------------------------------------ cost counters
def test_every_counter_adds_up_and_reads_back_by_name():
    a = SolverStats(n_rhs=10, n_jac=2, n_lu=3, n_accepted=4, n_rejected=1)
    b = SolverStats(n_rhs=5, n_jac=7, n_lu=11, n_accepted=6, n_rejected=2)
    assert (a + b).as_dict() == {"n_rhs": 15, "n_jac": 9, "n_lu": 14, "n_accepted": 10, "n_rejected": 3}
    scipy_stats = SolverStats(n_rhs=1, n_jac=1, n_lu=1, n_accepted=1, n_rejected=None)
    assert (a + scipy_stats).as_dict()["n_rejected"] is None


# ----------------------------------------------------------- rules the sensitivity code uses
def test_the_backward_pass_starts_with_the_stated_fraction_of_the_last_forward_step():
    assert BACKWARD_FIRST_STEP_FRACTION == 0.5
    assert backward_first_step(0.3) == 0.15 and backward_first_step(2.0) == 1.0


def test_binomial_capped_is_the_binomial_or_the_cap():
    for m in range(0, 40):
        for k in range(0, m + 1):
            for cap in (1, 7, 1000, 10**12):
                assert binomial_capped(m, k, cap) == min(math.comb(m, k), cap), (m, k, cap)
    assert binomial_capped(200, 100, 2**62) == 2**62  # C(200, 100) ~ 9e58 is capped, not overflowed
    # exact beyond float64's 2**53 (C(57, 28) ~ 1.6e16 and up), as int64 arithmetic is
    for m in range(50, 63):
        for k in range(0, m + 1):
            assert binomial_capped(m, k, 2**62) == min(math.comb(m, k), 2**62), (m, k)


def test_the_checkpoint_schedule_is_griewanks_binomial_one():
    """first_part(n, c): r the smallest with C(c + r, c) >= n, the part after the checkpoint
    C(c - 1 + r, c - 1) steps (at most n - 1), the first part the rest, at least 1 (written here
    with math.comb). The 1800 schedules take milliseconds; 30 s means a search that never ends."""
    with _fails_if_it_hangs(30.0):
        _check_the_schedule()


def _check_the_schedule():
    for free in range(1, 7):
        for n in range(1, 300):
            r = 0
            while math.comb(free + r, free) < n:
                r += 1
            want = max(1, n - min(n - 1, math.comb(free - 1 + r, free - 1)))
            assert first_part(n, free) == want, (n, free)
            assert 1 <= first_part(n, free) <= max(1, n - 1)


def test_the_tableaus_are_built_as_writeable_float64():
    array = _array([[1, 2], [3, 4]])
    assert array.dtype == np.float64 and array.flags.writeable and array.shape == (2, 2)
    np.testing.assert_array_equal(array, [[1.0, 2.0], [3.0, 4.0]])
    assert DORMAND_PRINCE_54.A.dtype == np.float64


# -------------------------------------------------------------------------- scipy's methods
@pytest.mark.parametrize("method", ("DP8", "RadauIIA5", "BDF"))
def test_a_first_step_beyond_a_piece_that_does_not_start_at_zero_is_clipped(method):
    """h0 = 0.5 on the piece [1, 1.1] (a later piece of a piecewise solve): clipped to the piece's
    length 0.1, and the solve is accurate (rtol = 1e-8: within 100 tolerances)."""
    jac = _decay_jac if SOLVERS[method].implicit else None
    traj = integrate(_decay, 1.0, 1.1, _exact(1.0), method=method, rtol=1e-8, atol=1e-12, jac=jac, h0=0.5)
    assert _rel(traj.y_end, _exact(1.1)) < 100 * 1e-8


@pytest.mark.parametrize("method,explicit", [("DP8", True), ("RadauIIA5", False), ("BDF", False)])
def test_a_used_up_budget_of_a_scipy_method_suggests_an_implicit_solver_only_to_an_explicit_one(method, explicit):
    jac = _decay_jac if SOLVERS[method].implicit else None
    with pytest.raises(SolverError) as err:
        integrate(_decay, 0.0, 100.0, DECAY, method=method, rtol=1e-10, atol=1e-12, jac=jac, max_steps=5)
    message = str(err.value)
    assert "step budget used up (5 steps" in message
    assert ("a stiff model under an explicit solver (use RadauIIA5 or BDF)" in message) is explicit


@pytest.mark.parametrize("method", ("DP8", "RadauIIA5", "BDF"))
def test_scipys_own_reason_for_a_failed_step_is_kept(method):
    """y' = y², y(0) = 1 blows up at t = 1: scipy's step fails and says why; the SolverError carries
    that reason, the method and where it stopped."""
    jac = (lambda t, y: sp.csc_matrix(np.diag(2.0 * y))) if SOLVERS[method].implicit else None
    with pytest.raises(SolverError) as err:
        integrate(lambda t, y: y * y, 0.0, 2.0, np.array([1.0]), method=method, rtol=1e-6, atol=1e-9, jac=jac)
    assert str(err.value).endswith(": Required step size is less than spacing between numbers.")
    assert str(err.value).startswith(f"{method} failed at t = ") and abs(err.value.t_reached - 1.0) < 1e-3


def test_a_scipy_step_that_overflows_the_state_is_named_so():
    """y' = 1e308 from y = 1e300: y = 1e300 + 1e308 t passes the largest float (1.8e308) at t = 1.8.
    BDF's step there is accepted with y = inf (its error estimate, scaled by |y| = inf, is 0): the
    solve stops with that reason at the step's end, past 1.79 and before the target 10."""
    with pytest.raises(SolverError) as err, np.errstate(over="ignore", invalid="ignore"):
        integrate(lambda t, y: np.full_like(y, 1e308), 0.0, 10.0, np.array([1e300]), method="BDF", rtol=1e-3,
                  atol=1e-3, jac=lambda t, y: sp.csc_matrix((1, 1)))
    e = err.value
    assert (e.method, e.t_target) == ("BDF", 10.0) and 1.79 < e.t_reached < 10.0
    assert str(e) == (f"BDF failed at t = {e.t_reached:.6g} (target t = 10): the state became inf or NaN: the "
                      "solution blows up here")


# ---------------------------------------------------------------------- options of a solve
@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_no_dense_output_unless_asked_for(method):
    jac = _decay_jac if SOLVERS[method].implicit else None
    traj = integrate(_decay, 0.0, 1.0, DECAY, method=method, rtol=1e-6, atol=1e-9, jac=jac)
    assert traj.dense is None and traj.y_eval is None and traj.method == method
    assert (traj.t_start, traj.t_end) == (0.0, 1.0) and traj.h_last > 0


@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_a_negative_first_step_is_its_magnitude(method):
    """h0 is a step size: a caller passing a signed step (a backward piece's) gets the same solve."""
    jac = _decay_jac if SOLVERS[method].implicit else None
    for t0, t1 in ((0.0, 1.0), (1.0, 0.0)):
        a = integrate(_decay, t0, t1, DECAY, method=method, rtol=1e-6, atol=1e-9, jac=jac, h0=0.05)
        b = integrate(_decay, t0, t1, DECAY, method=method, rtol=1e-6, atol=1e-9, jac=jac, h0=-0.05)
        np.testing.assert_array_equal(a.y_end, b.y_end)
        assert a.stats == b.stats


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_a_quadrature_tail_system_with_dense_output_or_times_is_stepped_whole(method):
    """Dense output, `on_step` and `t_eval` need the whole state's interpolant: the system is then
    stepped through `joint_rhs`, giving the joint system's solve exactly."""
    y0 = np.array([1.0, -2.0, 0.0, 0.0])
    joint = integrate(_ListRecords(1).joint_rhs, 0.0, 2.0, y0, method=method, rtol=1e-8, atol=1e-10, dense=True,
                      t_eval=[1.0, 2.0])
    for options in ({"dense": True}, {"t_eval": [1.0, 2.0]}, {"on_step": lambda t, h, local: None}):
        traj = integrate(_ListRecords(stage_slots(method)), 0.0, 2.0, y0, method=method, rtol=1e-8, atol=1e-10,
                         **options)
        np.testing.assert_array_equal(traj.y_end, joint.y_end)
        assert traj.stats == joint.stats
    traj = integrate(_ListRecords(stage_slots(method)), 0.0, 2.0, y0, method=method, rtol=1e-8, atol=1e-10,
                     dense=True, t_eval=[1.0, 2.0])
    np.testing.assert_array_equal(traj.y_eval, joint.y_eval)
    np.testing.assert_array_equal(traj.dense(1.5), joint.dense(1.5))


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_an_overflowing_solve_fails_without_numpy_warnings(method):
    """Stages overflow when a solve blows up; they are rejected and the solve fails with one
    SolverError, not a stream of numpy RuntimeWarnings (made errors here)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SolverError):
            # a rate of 1e300 tried with a first step of 1: the stages reach 1e600 and overflow
            integrate(lambda t, y: 1e300 * y, 0.0, 1.0, np.array([1.0, 3.0]), method=method, h0=1.0)


# ------------------------------------------------------- step for step against scipy's loop
def _relaxation(t, y):
    return -30.0 * (y - np.cos(t))  # time-dependent, stiffish: the second derivative dominates the first


STEP_PROBLEMS = {
    # name: (rhs, y0, t0, t1, rtol, atol)
    "relaxation forward": (_relaxation, [2.0, -1.0], 1.0, 3.0, 1e-6, 1e-9),
    "relaxation backward": (_relaxation, [2.0, -1.0], 3.0, 1.0, 1e-6, 1e-9),
    "zero start": (_relaxation, [0.0, 0.0], 1.0, 3.0, 1e-6, 1e-9),  # RMS(y0 / scale) = 0 < 1e-5
    "at rest": (lambda t, y: 0.0 * y, [1.0, 2.0], 0.0, 5.0, 1e-6, 1e-9),  # f = 0: the smallest-slope rule
    # |y0| = |f0| = 1e-5 against a scale of exactly 1 (atol = 1, rtol |y0| below half an ulp of 1): the
    # first guess's thresholds met with equality, which is not "below"
    "thresholds": (lambda t, y: -y, [1e-5], 0.0, 10.0, 1e-13, 1.0),
    # the probe step of the heuristic is long (h0 = 0.01 d0 / d1 = 10) and f is far from symmetric about
    # t0: the probe must go the solve's way (backwards here)
    "probe backward": (lambda t, y: (1e-3 + np.exp(t) - 1.0) + 0.0 * y, [1.0], 0.0, -12.0, 1e-6, 1e-6),
    # f constant and small against the scale (d1 = 0.05, d2 = 0): the step from d1's rule
    "slow drift": (lambda t, y: 1e-7 + 0.0 * y, [1.0], 0.0, 5.0, 1e-6, 1e-6),
    # f = 0 at t0 but not after (d1 = 0, d2 = 5e-4): the step from d2's rule
    "slow start": (lambda t, y: 1e-9 * t + 0.0 * y, [1.0], 0.0, 5.0, 1e-6, 1e-6),
    # d1 = 1e-15 and d2 = 0, then d1 = 0 and d2 = 1e-15, exactly (scale 1): the smallest-slope rule's
    # thresholds met with equality, which counts as small
    "d1 at its threshold": (lambda t, y: 1e-15 + 0.0 * y, [1e-4], 0.0, 5.0, 1e-13, 1.0),
    "d2 at its threshold": (lambda t, y: 1e-15 * t + 0.0 * y, [1e-4], 0.0, 5.0, 1e-13, 1.0),
}


@pytest.mark.parametrize("method", EXPLICIT_RK)
@pytest.mark.parametrize("problem", sorted(STEP_PROBLEMS))
def test_the_step_sequence_is_scipys(method, problem):
    """DP5 / BS3 are scipy's RK45 / RK23 (tableau, initial step heuristic, controller): on each problem
    the accepted steps end at the same times, with the same number of evaluations and the same end
    state, to 1e-8 relative. Not bit for bit: the error norm is summed in another order, so a step size
    may differ in its last bits, and at the stability limit (the relaxation under BS3, ~260 steps) the
    controller's feedback amplifies that to ~1e-10 (measured); a different rule changes a step by
    percents."""
    from scipy.integrate import RK23, RK45

    rhs, y0, t0, t1, rtol, atol = STEP_PROBLEMS[problem]
    y0 = np.array(y0)
    ends = []
    ours = integrate(rhs, t0, t1, y0, method=method, rtol=rtol, atol=atol, on_step=lambda t, h, _: ends.append(t + h))
    ref = {"DP5": RK45, "BS3": RK23}[method](rhs, t0, y0, t1, rtol=rtol, atol=atol)
    ref_ends = []
    while ref.status == "running":
        ref.step()
        ref_ends.append(ref.t)
    assert ref.status == "finished" and len(ends) == len(ref_ends) == ours.stats.n_accepted
    np.testing.assert_allclose(ends, ref_ends, rtol=1e-8, atol=0)
    assert ours.stats.n_rhs == ref.nfev
    np.testing.assert_allclose(ours.y_end, ref.y, rtol=1e-8, atol=1e-300)


# ----------------------------------------------------------------------- float64 throughout
def test_times_given_in_float32_are_compared_in_float64():
    """float32(0.1) = 0.10000000149... lies after t0 = 0.1: it is a valid time, read at that value
    (within 1e-9 of the solution there at rtol = 1e-10)."""
    t_eval = np.array([0.1, 0.5], dtype=np.float32)
    traj = integrate(_decay, 0.1, 1.0, _exact(0.1), rtol=1e-10, atol=1e-12, t_eval=t_eval)
    for t, y in zip(t_eval.astype(np.float64), traj.y_eval):
        assert _rel(y, _exact(float(t))) < 1e-9


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_a_float32_start_of_a_quadrature_tail_system_is_solved_in_float64(method):
    """The same solve, step for step and bit for bit, as from the float64 copy of the same numbers."""
    y0 = np.array([0.1, -0.3, 0.7, 0.0], dtype=np.float32)
    a = integrate(_ListRecords(stage_slots(method)), 0.0, 2.0, y0, method=method, rtol=1e-6, atol=1e-9)
    b = integrate(_ListRecords(stage_slots(method)), 0.0, 2.0, y0.astype(np.float64), method=method, rtol=1e-6,
                  atol=1e-9)
    assert a.stats == b.stats and a.y_end.dtype == np.float64
    np.testing.assert_array_equal(a.y_end, b.y_end)


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_a_float32_start_is_solved_in_float64(method):
    y0 = np.array([0.1, -0.3], dtype=np.float32)
    a = integrate(_relaxation, 0.0, 1.0, y0, method=method, rtol=1e-6, atol=1e-9)
    b = integrate(_relaxation, 0.0, 1.0, y0.astype(np.float64), method=method, rtol=1e-6, atol=1e-9)
    assert a.stats == b.stats and a.y_end.dtype == np.float64
    np.testing.assert_array_equal(a.y_end, b.y_end)


@pytest.mark.parametrize("method", ALL_SOLVERS)
def test_an_empty_span_returns_the_start(method):
    """t1 == t0: the state is y0 itself, and a dense output, if any, gives y0 there."""
    jac = _decay_jac if SOLVERS[method].implicit else None
    traj = integrate(_decay, 1.0, 1.0, DECAY, method=method, jac=jac, dense=True)
    np.testing.assert_array_equal(traj.y_end, DECAY)
    assert traj.dense is None or np.array_equal(traj.dense(1.0), DECAY)


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_a_step_of_ten_float_spacings_is_taken_and_one_of_nine_is_not(method):
    """At t0 = 1 the floats above are 2.2e-16 apart: a first step of 10 spacings is the smallest the
    loop takes (y' = 0: every step is accepted and grows tenfold); one of 9 fails at once, with the
    reason (the state is finite, so it is the step size, with max |y|)."""
    spacing = math.nextafter(1.0, 2.0) - 1.0
    rest = lambda t, y: 0.0 * y  # noqa: E731
    traj = integrate(rest, 1.0, 1.0 + 1e-9, DECAY, method=method, h0=10 * spacing)
    np.testing.assert_array_equal(traj.y_end, DECAY)
    assert traj.stats.n_accepted >= 2
    with pytest.raises(SolverError) as err:
        integrate(rest, 1.0, 1.0 + 1e-9, DECAY, method=method, h0=9 * spacing)
    assert err.value.t_reached == 1.0 and str(err.value).endswith(
        "step size fell below the spacing of floats, with max |y| = 2: the solution likely blows up in finite "
        "time here")


def test_the_default_tolerances_are_one_in_a_million():
    """rtol = atol = 1e-6 by default: the same solve, bit for bit, as with them given."""
    default = integrate(_relaxation, 0.0, 1.0, np.array([2.0, -1.0]))
    given = integrate(_relaxation, 0.0, 1.0, np.array([2.0, -1.0]), rtol=1e-6, atol=1e-6)
    assert default.stats == given.stats
    np.testing.assert_array_equal(default.y_end, given.y_end)


def test_the_smallest_relative_tolerance_is_a_hundred_epsilons():
    from harness.solvers import MIN_RTOL

    assert MIN_RTOL == 100 * np.finfo(np.float64).eps
    traj = integrate(_decay, 0.0, 0.1, DECAY, rtol=MIN_RTOL, atol=1e-300)  # accepted: at least 100 eps
    assert _rel(traj.y_end, _exact(0.1)) < 1e-11  # a few hundred steps of local error ~2e-14
    below = math.nextafter(MIN_RTOL, 0.0)
    with pytest.raises(HarnessInputError) as err:
        integrate(_decay, 0.0, 0.1, DECAY, rtol=below)
    assert str(err.value) == (f"rtol={below!r}: expected at least 2.22e-14 (100 x float64's machine epsilon; a "
                              "tighter relative tolerance asks for more digits than float64 holds)")


@pytest.mark.parametrize("method", EXPLICIT_RK)
def test_a_step_whose_error_norm_is_exactly_one_is_rejected(method):
    """Accepted means an error norm below 1 (scipy's rule): y' = cos 3t, first step h = 0.5, with atol
    chosen so that the step's error estimate divided by atol + rtol max(|y|, |y_new|) is 1.0 exactly
    (the step and its estimate formed as the solver forms them, by `rk_step`). That step is rejected
    and retried at 0.9 h (the factor for a norm of 1, safety 0.9 x 1^(-1/(q+1))), then accepted."""
    from harness.solvers._rk_step import StepWorkspace, rk_step

    def rhs(t, y):
        return np.cos(3.0 * t) + 0.0 * y

    tableau, y0, h, rtol = SOLVERS[method].tableau, np.array([0.0]), 0.5, 1e-6
    work = StepWorkspace(tableau, 1)
    work.Y[0], work.K[0] = y0, rhs(0.0, y0)
    y_new, error = rk_step(lambda t, y, i, out: out.__setitem__(slice(None), rhs(t, y)), 0.0, h, h, work)
    part = np.maximum(np.abs(y0), np.abs(y_new)) * rtol
    target = abs(float(error[0]))
    atol = target - float(part[0])
    while float(part[0]) + atol != target:  # the float whose sum with the rtol part is the error itself
        atol = math.nextafter(atol, math.inf if float(part[0]) + atol < target else 0.0)
    assert abs(float(error[0]) / (float(part[0]) + atol)) == 1.0
    steps = []
    traj = integrate(rhs, 0.0, 1.0, y0, method=method, rtol=rtol, atol=atol, h0=h,
                     on_step=lambda t, step, _: steps.append(step))
    assert traj.stats.n_rejected >= 1 and steps[0] == 0.9 * h


# ---------------------------------------------------------- the step budget at its exact edges
def _budget_check(t0, t1, n_steps, t, h_abs, max_steps=10_000):
    """StepBudget.check as the loops call it; returns the error message, or None if the solve may go on."""
    from harness.solvers._step_budget import StepBudget

    budget = StepBudget("DP5", False, t0, t1, 0.1, max_steps)
    try:
        budget.check(n_steps, t, h_abs)
    except SolverError as err:
        return str(err)
    return None


def test_a_projection_of_exactly_the_budget_may_go_on_and_one_beyond_may_not():
    """Patient (6400 steps done): the solve stops when n + min(remaining / h, n remaining / done) exceeds
    max_steps = 10 000, not when it equals it. The numbers are exact in binary: remaining = 3600 steps
    of 2^-10 at the current step size; then, from t0 = 1, remaining = 0.5625 at 6400 steps per unit
    time done (average rate), each time with the other estimate larger."""
    h = 2.0**-10
    assert _budget_check(0.0, 1.0 + 3600 * h, 6400, 1.0, h) is None
    message = _budget_check(0.0, 1.0 + 3600 * h + 2.0**-30, 6400, 1.0, h)  # 1e-6 steps beyond
    assert message is not None and "reaching the end would take about 1e+04 steps (budget 10000)" in message
    assert _budget_check(1.0, 2.5625, 6400, 2.0, 2.0**-20) is None
    assert _budget_check(1.0, 2.5625 + 2.0**-30, 6400, 2.0, 2.0**-20) is not None


def test_from_patient_steps_on_a_projection_beyond_the_budget_stops_the_solve():
    """At exactly PATIENT_STEPS (5000) attempts the patient rule applies: a projection of 1.5 budgets
    stops the solve (one attempt earlier, up to EARLY_MARGIN budgets are allowed)."""
    from harness.solvers._step_budget import PATIENT_STEPS

    assert PATIENT_STEPS == 5000
    # 5000 steps over [0, 1] of [0, 2]: 5000 more at the average rate, 4096 at h = 2^-12: 9096 in all
    h = 2.0**-12
    assert _budget_check(0.0, 2.0, 5000, 1.0, h, max_steps=6000) is not None  # 5000 + 4096 > 6000
    assert _budget_check(0.0, 2.0, 4999, 1.0, h, max_steps=6000) is None  # early: within 1e4 budgets
    assert _budget_check(0.0, 2.0, 5000, 1.0, h, max_steps=9096) is None  # exactly the budget


def test_no_first_step_fits_an_infinite_one_and_the_budget_is_its_floor():
    """The default budget is 100 x (span / first step) within [MIN_STEPS, MAX_STEPS]: a first step
    of inf fits 0 times (the floor), a zero or NaN one leaves the number unknown (the ceiling)."""
    from harness.solvers._step_budget import MAX_STEPS, MIN_STEPS, default_max_steps

    assert default_max_steps(10.0, math.inf) == MIN_STEPS == 10_000
    assert default_max_steps(10.0, 0.0) == default_max_steps(10.0, math.nan) == MAX_STEPS == 1_000_000


@pytest.mark.parametrize("method", EXPLICIT_RK)
@pytest.mark.parametrize("t0,t1", [(0.0, 2.0), (2.0, 0.0)])
def test_a_steps_stage_inputs_are_the_states_its_stages_were_evaluated_at(method, t0, t1):
    """`local.stage_inputs()` (s, D): the step's start state, then bit for bit the states the right-hand
    side was called with for stages 1..s-1 of that (accepted) step."""
    calls = []

    def rhs(t, y):
        calls.append(np.array(y))
        return _relaxation(t, y)

    steps = []

    def record(t, h, local):
        steps.append((len(calls), local.stage_inputs()))

    traj = integrate(rhs, t0, t1, np.array([2.0, -1.0]), method=method, rtol=1e-6, atol=1e-9, on_step=record)
    s = len(SOLVERS[method].tableau.B)
    assert len(steps) == traj.stats.n_accepted >= 3
    for n_calls, inputs in steps:
        assert inputs.shape == (s, 2)
        # the last s calls are that step's: stages 1 .. s-1 in order, then the first-same-as-last at y_new
        np.testing.assert_array_equal(inputs[1:], np.array(calls[n_calls - s:n_calls - 1]))
    np.testing.assert_array_equal(steps[0][1][0], [2.0, -1.0])
