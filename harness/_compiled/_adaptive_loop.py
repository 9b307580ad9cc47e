"""The whole adaptive Runge-Kutta loop of a gradient in two compiled calls: the forward solve over the
observation times, then the backward solve of BacksolveAdjoint, InterpolatingAdjoint, or a alone with
∂L/∂θ by Gauss-Legendre quadrature (QuadratureAdjoint and GaussAdjoint, mode ALONE).

This is the numpy loop of `harness.solvers._explicit_rk` (`rk_step`, `StepSizeController`, `StepBudget`,
`PlainStepper` / `QuadratureTailStepper`, `run_steps`) and the piece walk of
`harness.sensitivity._backward.adjoint_gradient`, written out statement for statement so that it takes
THE SAME STEPS: the same stage combinations (h aᵢⱼ formed first, then multiplied by Kⱼ), the same error
norm (RMS over the state and, for an adjoint, the ∂L/∂θ tail, scaled by atol + rtol max(|y|, |y_new|)),
the same step rules, which are not copied here but compiled from `harness.solvers._step_rules` (the
initial step, the controller, the budget, the clipped next step; see `_rules.py`), the same step carried
from one piece to the next. Only the order of a
few sums differs, so results agree with the numpy path to rounding (tests/test_compiled_loop.py).

The forward solve does not stop at the observation times: it steps from t0 to the last one, t_K, and
reads z(t_k) from the dense output of the accepted step that reaches t_k (its end state where t_k is
its end), as `harness._forward.solve_forward` does for explicit solvers and diffrax's SaveAt(ts).
The backward pieces still end at every observation time (the adjoint jumps there); they read the
forward dense output from whichever forward step covers t.

Each stage is the fused MLP kernel `mlp_stage`; an adjoint stage's (∂f/∂θ)ᵀ(-a) is formed right after it
in the [W | b] layout (the ∂L/∂θ tail is kept in that layout and reordered into θ's once, at the end).

In mode ALONE (the numpy `AdjointAlone`) the state is a alone and ∂L/∂θ is not part of the ODE: the
stages skip the θ products, the error norm is over a only (the numpy `PlainStepper`'s), and every
accepted step adds Σₙ (∂f/∂θ)ᵀ(z(tₙ)) a(tₙ) wₙ over Gauss-Legendre nodes tₙ of the step, with a(tₙ)
from the step's own interpolant (`_step_quadrature`). That is GaussAdjoint's `on_step`, and also
QuadratureAdjoint's sum: its nodes lie on every step of the backward dense output, whose polynomial on
a step is that step's interpolant. The two differ only in the number of nodes.

Shapes: a state is (n_blocks, N, B) feature-major, n_blocks = 1 for z alone (forward) or a alone
(InterpolatingAdjoint, ALONE), 2 for [z, a] (BacksolveAdjoint). `net` is the tuple `network_arguments` builds
(`_arguments.py`): the MLP's fixed kernel arguments and its scratch buffers.

A solve that would fail in the numpy loop (step-size underflow, a step budget that cannot suffice)
returns FAILED instead of raising: the caller re-runs the numpy path, which raises the error with its
full explanation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._activations import FASTMATH, sigmoid, softplus, tanh
from ._arguments import AT_END, ALONE, BACKSOLVE, FAILED, FORWARD, INTERPOLATING, NEED_ROOM, OK  # noqa: F401 (the loop's numbers)
from ._arguments import COLUMN_BATCH
from ._borrowed import borrowed, borrowed_four, borrowed_network, borrowed_seven, borrowed_tableau, reshaped
from ._rules import (budget_exceeded, default_max_steps, error_exponent, factor_after_accept, factor_after_reject,
                     first_check, first_step_guess, initial_step_size, next_check, next_step, projected_steps,
                     step_underflows)
from ._stage_kernels import stage_pass
from ._unit_stage import unit_stage, unit_theta_products

_OPTIONS = {"cache": True, "error_model": "numpy", "fastmath": FASTMATH}

CHUNK = 512  # entries of the state per chunk of a stage combination (`_combine`): 4 KB a row


@njit(**_OPTIONS)
def _column_stage(net, x, a, sign, out_f, out_az, want_f, want_vjp):
    """`mlp_stage` (same arguments, records and results up to rounding) one column at a time."""
    widths, act, weights, w_off, in_rows, cot_rows, decay, has_decay, inputs, cots, slopes, dummy = net
    n_layers = widths.shape[0] - 1
    n = widths[0]
    last = n_layers - 1
    for b in range(x.shape[1]):
        for i in range(n):
            inputs[i, b] = x[i, b]
        for layer in range(last):
            n_in, n_out = widths[layer], widths[layer + 1]
            w0, r_in, r_out = w_off[layer], in_rows[layer], in_rows[layer + 1]
            for j in range(n_out):
                row = w0 + j * (n_in + 1)
                u = weights[row + n_in]
                for k in range(n_in):
                    u += weights[row + k] * inputs[r_in + k, b]
                if act == 0:
                    value = tanh(u)
                    slope = 1.0 - value * value
                elif act == 1:
                    value = sigmoid(u)
                    slope = value * (1.0 - value)
                else:
                    slope = sigmoid(u)  # softplus' = σ, as the numpy path
                    value = softplus(u)
                inputs[r_out + j, b] = value
                slopes[r_out - n - 1 + j, b] = slope
        n_in, w0, r_in = widths[last], w_off[last], in_rows[last]
        if want_f:
            for j in range(n):
                row = w0 + j * (n_in + 1)
                value = weights[row + n_in]
                for k in range(n_in):
                    value += weights[row + k] * inputs[r_in + k, b]
                if has_decay:
                    value -= decay[j] * x[j, b]
                out_f[j, b] = value
        if not want_vjp:
            continue
        r_top = cot_rows[last]
        for i in range(n):
            cots[r_top + i, b] = sign * a[i, b]
        for layer in range(last, -1, -1):
            n_in, n_out = widths[layer], widths[layer + 1]
            w0, r_g = w_off[layer], cot_rows[layer]
            for k in range(n_in):
                value = 0.0
                for j in range(n_out):
                    value += weights[w0 + j * (n_in + 1) + k] * cots[r_g + j, b]
                if layer > 0:
                    cots[cot_rows[layer - 1] + k, b] = value * slopes[in_rows[layer] - n - 1 + k, b]
                else:
                    if has_decay:
                        value -= decay[k] * cots[r_top + k, b]
                    out_az[k, b] = value


@njit(inline="always", **_OPTIONS)
def _flat_records(net):
    """`net`'s (R, 1) record buffers (inputs, cotangents, slopes) as 1-D views, for `unit_stage` at B = 1."""
    inputs, cots, slopes = net[8], net[9], net[10]
    return reshaped(inputs, (inputs.shape[0],)), reshaped(cots, (cots.shape[0],)), reshaped(slopes, (slopes.shape[0],))


@njit(inline="always", **_OPTIONS)
def _network_stage(net, x, a, sign, out_f, out_az, want_f, want_vjp, recorded):
    """f(x) (with `want_f`) and (∂f/∂z)ᵀ(sign a) (with `want_vjp`), all (N, B), leaving the layer records
    in `net`'s buffers: the single-column kernel at B = 1, column by column for a few columns, else the
    fused kernel, which with `recorded` reads the layer inputs `net`'s buffer already holds for x
    (`stage_pass`; only kept for more than `COLUMN_BATCH` columns)."""
    widths, act, weights, w_off, in_rows, cot_rows, decay, has_decay, inputs, cots, slopes, dummy = net
    # The flags go on as run-time booleans: numba types a constant argument as a literal and compiles a
    # kernel once for every combination of literals its callers pass (five copies of each stage kernel,
    # minutes of the module's build); the branches they choose lie outside the kernels' inner loops.
    want_f, want_vjp, recorded = bool(want_f), bool(want_vjp), bool(recorded)
    if x.shape[1] == 1:
        n = x.shape[0]
        unit_stage(widths, act, weights, w_off, in_rows, cot_rows, decay, has_decay, reshaped(x, (n,)),
                   reshaped(a, (n,)), sign, *_flat_records(net), reshaped(out_f, (n,)), reshaped(out_az, (n,)),
                   want_f, want_vjp)
    elif x.shape[1] <= COLUMN_BATCH:
        _column_stage(net, x, a, sign, out_f, out_az, want_f, want_vjp)
    else:
        stage_pass(widths, act, weights, w_off, in_rows, cot_rows, decay, has_decay, x, a, sign, inputs, cots,
                   slopes, out_f, out_az, want_f, want_vjp, recorded)


@njit(inline="always", **_OPTIONS)
def _value(net, x, out):
    """f(x) into out, both (N, B)."""
    _network_stage(net, x, net[11], 1.0, out, out, True, False, False)


@njit(inline="always", **_OPTIONS)
def _vjp_stage(net, x, a, out_f, out_az, want_f, recorded):
    """f(x) (with `want_f`) and -(∂f/∂z)ᵀa (`_network_stage`)."""
    _network_stage(net, x, a, -1.0, out_f, out_az, want_f, True, recorded)


@njit(inline="always", **_OPTIONS)
def _adjoint_stage(net, x, a, out_f, out_az, want_f, products, recorded, want_theta):
    """f(x) (with `want_f`) and -(∂f/∂z)ᵀa, and with `want_theta` -(∂f/∂θ)ᵀa into `products` ([W | b]
    layout); with `recorded`, from the layer inputs `net`'s buffer holds for x (see `_vjp_stage`)."""
    widths, act, weights, w_off, in_rows, cot_rows, decay, has_decay, inputs, cots, slopes, dummy = net
    _vjp_stage(net, x, a, out_f, out_az, want_f, recorded)
    if not want_theta:
        return
    batch = x.shape[1]
    if batch == 1:
        flat_inputs, flat_cots, _ = _flat_records(net)
        unit_theta_products(widths, w_off, in_rows, cot_rows, flat_inputs, flat_cots, products)
        return
    for layer in range(widths.shape[0] - 1):
        n_in, n_out = widths[layer], widths[layer + 1]
        w0, r_in, r_g = w_off[layer], in_rows[layer], cot_rows[layer]
        if batch > COLUMN_BATCH:
            # [dW | db] = g [x; 1]ᵀ as one BLAS product: measured 1.2-4x faster than a written-out
            # loop of dot products at every layer shape tried, from 3 x 3 (B = 500) to 128 x 9 and 8 x 129
            np.dot(cots[r_g : r_g + n_out], inputs[r_in : r_in + n_in + 1].T,
                   products[w0 : w0 + n_out * (n_in + 1)].reshape((n_out, n_in + 1)))
            continue
        for j in range(n_out):  # plain indexing: no row views or BLAS call to set up per product
            for k in range(n_in + 1):
                total = 0.0
                for b in range(batch):
                    total += cots[r_g + j, b] * inputs[r_in + k, b]
                products[w0 + j * (n_in + 1) + k] = total


@njit(inline="always", **_OPTIONS)
def _cotangent_stage(net, x, a, out_az):
    """-(∂f/∂z)ᵀa at x into out_az, all (N, B): `_adjoint_stage` without f and the θ products."""
    _vjp_stage(net, x, a, out_az, out_az, False, False)


@njit(**_OPTIONS)
def _dense_z(t, first, count, d_t, d_h, d_y, d_q, out):
    """z(t) (flat, N B) from the forward dense output of steps first .. first + count - 1, as
    `PiecewisePolynomial.__call__`: the step whose start is the last one <= t, clipped to those steps."""
    lo, hi = 0, count  # bisect_right over the step starts
    while lo < hi:
        mid = (lo + hi) // 2
        if t < d_t[first + mid]:
            hi = mid
        else:
            lo = mid + 1
    i = first + min(max(lo - 1, 0), count - 1)
    x = (t - d_t[i]) / d_h[i]
    degree = d_q.shape[1]
    out[:] = 0.0
    for m in range(degree):
        power, q_m = x ** (m + 1.0), d_q[i, m]  # pow, as numpy's x ** powers
        for r in range(out.shape[0]):
            out[r] += q_m[r] * power
    y = d_y[i]
    for r in range(out.shape[0]):
        out[r] += y[r]  # Σ q x^m first, then y: the numpy order


@njit(inline="always", **_OPTIONS)
def _stage(mode, net, shape, t, u, k_out, products, dense, zbuf, want_theta):
    """One stage at (t, u) into k_out (flat states); an adjoint's θ products into `products` (where
    `want_theta`: a stage whose weights in the step and in its error estimate are both zero, DP5's
    second, has its θ products read by nothing)."""
    u3, k3 = reshaped(u, shape), reshaped(k_out, shape)
    if mode == FORWARD:
        _value(net, u3[0], k3[0])
    elif mode == BACKSOLVE:
        _adjoint_stage(net, u3[0], u3[1], k3[0], k3[1], True, products, False, want_theta)
    else:
        first, count, d_t, d_h, d_y, d_q = dense
        _dense_z(t, first, count, d_t, d_h, d_y, d_q, zbuf)
        z = reshaped(zbuf, shape[1:])
        if mode == INTERPOLATING:
            _adjoint_stage(net, z, u3[0], k3[0], k3[0], False, products, False, want_theta)
        else:
            _cotangent_stage(net, z, u3[0], k3[0])


@njit(**_OPTIONS)
def _step_quadrature(net, shape, t, h, u, K, P, nodes, dense, z_node, discard, products, q):
    """q += Σₙ (∂f/∂θ)ᵀ(z(tₙ)) a(tₙ) wₙ ([W | b] layout) over the Gauss-Legendre nodes of the accepted
    step from (t, u) to t + h (h < 0 backwards), as `_gauss.Gauss.on_step`.

    a(tₙ) is the step's interpolant u + Σₘ Qₘ xₙᵐ, Qₘ = Σⱼ Kⱼ h Pⱼₘ (`PlainStepper.dense_step`), z(tₙ)
    the forward dense output. `nodes` = (x (M,), w (M,)) on [-1, 1] with scratch powers (M, degree)
    and a_nodes (M, N B); z_node, discard: flat (N B,) scratch; products: (P,) scratch.
    """
    x_gl, w_gl, powers, a_nodes = nodes
    first, count, d_t, d_h, d_y, d_q = dense
    n_coefficients, degree = P.shape
    n_nodes = x_gl.shape[0]
    plane = shape[1:]
    half = 0.5 * abs(h)
    mid = t + 0.5 * h
    for n in range(n_nodes):
        x = (mid + half * x_gl[n] - t) / h
        x_power = x
        for m in range(degree):
            powers[n, m] = x_power
            x_power *= x
    # each Qₘ once for all nodes: forming it is most of the interpolation's cost
    for d in range(u.shape[0]):
        for n in range(n_nodes):
            a_nodes[n, d] = 0.0
        for m in range(degree):
            coefficient = 0.0
            for j in range(n_coefficients):
                coefficient += K[j, d] * (h * P[j, m])
            for n in range(n_nodes):
                a_nodes[n, d] += coefficient * powers[n, m]
        for n in range(n_nodes):
            a_nodes[n, d] = (u[d] + a_nodes[n, d]) * (half * w_gl[n])
    for n in range(n_nodes):
        _dense_z(mid + half * x_gl[n], first, count, d_t, d_h, d_y, d_q, z_node)
        _adjoint_stage(net, z_node.reshape(plane), a_nodes[n].reshape(plane), discard.reshape(plane),
                       discard.reshape(plane), False, products, False, True)
        for p in range(q.shape[0]):
            q[p] -= products[p]  # `_adjoint_stage` forms -(∂f/∂θ)ᵀa


@njit(inline="always", **_OPTIONS)
def _combine(start, h, weights, count, K, out, from_zero):
    """out = start + Σ_{j < count} (h weights[j]) K[j] (or the sum alone, `from_zero`), the terms added
    in j order, as the numpy loop does. The state is walked in chunks of `CHUNK` entries, every term per
    chunk: each pass is contiguous (vectorised), and a chunk stays in L1 across its terms, where whole-
    state passes would stream a large batch's state through memory once per term."""
    n = out.shape[0]
    for c0 in range(0, n, CHUNK):
        m = min(CHUNK, n - c0)
        o = out[c0 : c0 + m]
        if from_zero:
            o[:] = 0.0
        else:
            src = start[c0 : c0 + m]
            for d in range(m):
                o[d] = src[d]
        for j in range(count):
            c, k_j = h * weights[j], K[j, c0 : c0 + m]
            for d in range(m):
                o[d] += c * k_j[d]


@njit(**_OPTIONS)
def _rms(x):
    """The root mean square of x (the numpy loop's `_rms`, summed in index order)."""
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] ** 2
    return math.sqrt(total / x.shape[0])


@njit(**_OPTIONS)
def _initial_step(net, shape, t0, y0, f0, direction, error_order, rtol, atol, y1, f1):
    """`harness.solvers._explicit_rk.initial_step` (forward solves): its arrays here, its rules shared."""
    scale = atol + np.abs(y0) * rtol
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = first_step_guess(d0, d1)
    y1[:] = y0 + h0 * direction * f0
    _value(net, y1.reshape(shape)[0], f1.reshape(shape)[0])
    d2 = _rms((f1 - f0) / scale) / h0
    return initial_step_size(h0, d1, d2, error_order)


@njit(**_OPTIONS)
def _interpolate(u, h, P, x, K, out):
    """out = the step's dense output at x: u + Σⱼ (h bⱼ(x)) Kⱼ with bⱼ(x) = Σₘ Pⱼₘ x^(m+1), over every
    row of K (the last is f at the step's end), all flat; the same polynomial as `PlainStepper.dense_step`'s
    y + Q [x, x², ...] with Q = Kᵀ (h P), summed by stage instead of by power."""
    out[:] = u
    for j in range(P.shape[0]):
        weight, power = 0.0, x
        for m in range(P.shape[1]):
            weight += P[j, m] * power
            power *= x
        c = h * weight
        if c != 0.0:
            k_j = K[j]
            for d in range(out.shape[0]):
                out[d] += c * k_j[d]


@njit(inline="always", **_OPTIONS)
def with_inputs(net, inputs):
    """`net` with `inputs` (R_in, B) as its layer-input buffer: a stage evaluated with it leaves its layer
    inputs there (a kept record, `kept_stages`), and a recorded VJP reads them from it."""
    return (net[0], net[1], net[2], net[3], net[4], net[5], net[6], net[7], inputs, net[9], net[10], net[11])


@njit(inline="always", **_OPTIONS)
def _recording(net, inputs):
    """`with_inputs(net, inputs)` for a stage that records into `inputs`, its ones rows set here: a
    record's memory is fresh, and setting the rows of every record up front would touch (and have the
    system zero) all of its pages, used or not."""
    widths, in_rows = net[0], net[4]
    for layer in range(widths.shape[0] - 1):
        ones = inputs[in_rows[layer] + widths[layer]]
        for b in range(ones.shape[0]):
            ones[b] = 1.0
    return with_inputs(net, inputs)


@njit(**_OPTIONS)
def _piece_loop(mode, net, tab, shape, u, q, t0, t1, h_given, rtol, atol, work, dense, store, n_stored, keep,
               nodes, observed, kept):
    """Integrate one piece from t0 to t1 (`run_steps` with its stepper's `start`), u and q in place.

    u is the flat state (n_blocks N B,) of `shape` (n_blocks, N, B); q the ∂L/∂θ tail (empty forward).
    In mode ALONE q is left out of the ODE and its error norm, and summed instead on the Gauss-Legendre
    `nodes` of every accepted step (`_step_quadrature`); other modes pass empty `nodes` arrays.
    h_given > 0 is the first step (else the initial-step heuristic, forward only). With `keep`, every
    accepted step's (t, h, y, Q) (of a `step_store`: (t, h)) is appended to `store` from index
    `n_stored` (forward only); a full store stops the solve with NEED_ROOM.

    `observed` = (times (K,), z_at (K, len(u)), obs_step (K,) int64, obs_x (K,)) (forward only; the
    backward pieces pass K = 0): the observation times the solve passes are read from the dense output
    of the first accepted step whose end reaches them (`_interpolate`), or are that step's end state if
    they equal its end `t_new` exactly (then obs_x = `AT_END`); obs_step receives the step's index
    among the piece's accepted steps (0 for the first), obs_x its x = (t_k - t_n) / h.

    `kept` = (Y (M + 1, s, len(u)), records (R, s, R_in, B)) (forward only, with `keep`; empty
    otherwise; `kept_stages`): each accepted step's stage inputs, formed in place in Y[n] (the attempt
    that is accepted leaves them there; Y[n, 0] is the step's start), and for the steps n < R the
    layer inputs of each stage's evaluation in records[n] (stage s, the next step's first, in
    records[n + 1, 0]), which RecursiveCheckpointAdjoint's sweep reverses without evaluating f again.

    Returns (status, h_abs for the next piece, n_rhs, n_accepted, n_rejected, n_stored).
    """
    A, B, C, E, P, error_order = tab
    K, products, u_stage, u_new, zbuf, q_new, scratch = work
    times, z_at, obs_step, obs_x = observed
    n_times = times.shape[0]
    k_next = 0  # the next observation time to reach
    s = B.shape[0]
    size = u.shape[0]
    n_q = q.shape[0]
    d_t, d_h, d_y, d_q = store
    degree = d_q.shape[1]  # the store's: 0 for a store of step sizes only (`step_store`)
    kept_inputs, records = kept
    keep_stages = keep and kept_inputs.shape[0] > 0
    n_records = records.shape[0]
    exponent = error_exponent(error_order)
    direction = 1.0 if t1 >= t0 else -1.0
    t = t0
    _stage(mode, _recording(net, records[n_stored, 0]) if n_stored < n_records else net, shape, t, u, K[0],
           products[0], dense, zbuf, True)
    n_rhs = 1
    if h_given > 0:
        h_abs = h_given
    else:
        h_abs = _initial_step(net, shape, t0, u, K[0], direction, error_order, rtol, atol, u_stage, scratch)
        n_rhs = 2
    # StepBudget with the default max_steps
    max_steps = default_max_steps(abs(t1 - t0), h_abs)
    check_at = first_check(max_steps)
    n_accepted = n_rejected = 0
    after_rejection = False
    # ALONE: ∂L/∂θ is no part of the ODE, so neither of its error norm (the numpy `PlainStepper` of a)
    n_tail = 0 if mode == ALONE else n_q
    n_total = size + n_tail
    while direction * (t1 - t) > 0:
        n_steps = n_accepted + n_rejected
        if n_steps >= check_at:
            if budget_exceeded(n_steps, projected_steps(n_steps, t, h_abs, t0, t1), max_steps):
                return FAILED, h_abs, n_rhs, n_accepted, n_rejected, n_stored
            check_at = next_check(n_steps, max_steps)
        if step_underflows(t, h_abs, direction):
            return FAILED, h_abs, n_rhs, n_accepted, n_rejected, n_stored
        h, t_new, h_abs = next_step(t, h_abs, direction, t1)
        # rk_step: the stages, the solution, the last (first-same-as-last) stage, the error estimate
        # one `_stage` call site for stages 1 .. s (it is inlined: each site is a copy of every mode's code)
        for i in range(1, s + 1):
            if i < s:
                y_i = kept_inputs[n_stored, i] if keep_stages else u_stage
                _combine(u, h, A[i], i, K, y_i, False)
                t_i = t + C[i] * h
                # θ products a zero weight in the step and in its error estimate would discard
                want_theta = B[i] != 0.0 or E[i] != 0.0
                slot = n_stored
            else:
                _combine(u, h, B, s, K, u_new, False)
                t_i, y_i = t_new, u_new
                want_theta = True  # the next step's first stage
                slot = n_stored + 1
            stage_net = _recording(net, records[slot, i % s]) if slot < n_records else net
            _stage(mode, stage_net, shape, t_i, y_i, K[i], products[i], dense, zbuf, want_theta)
        _combine(u, h, E, s + 1, K, scratch, True)
        total = 0.0
        for d in range(size):
            err = scratch[d] / (max(abs(u[d]), abs(u_new[d])) * rtol + atol)
            total += err * err
        for p in range(n_tail):
            step = 0.0
            err = 0.0
            for j in range(s):
                if B[j] != 0.0:  # (a stage with zero weights has no θ products formed)
                    step += (h * B[j]) * products[j, p]
            for j in range(s + 1):
                if E[j] != 0.0:
                    err += (h * E[j]) * products[j, p]
            q_new[p] = q[p] + step
            err /= atol + rtol * max(abs(q[p]), abs(q_new[p]))
            total += err * err
        error_norm = math.sqrt(total / n_total)
        if error_norm < 1.0:
            factor = factor_after_accept(error_norm, exponent, after_rejection)
            after_rejection = False
            if keep:
                if n_stored == d_t.shape[0]:
                    return NEED_ROOM, h_abs, n_rhs, n_accepted, n_rejected, n_stored
                d_t[n_stored], d_h[n_stored] = t, h
                if d_y.shape[1] != 0:
                    d_y[n_stored] = u
                if keep_stages:
                    kept_inputs[n_stored, 0] = u
                for m in range(degree):
                    _combine(u, h, P[:, m], s + 1, K, d_q[n_stored, m], True)
                n_stored += 1
            # the observation times this step reaches, before u moves on (a time equal to its end
            # is its end state itself)
            while k_next < n_times and direction * (times[k_next] - t_new) <= 0:
                if times[k_next] == t_new:
                    z_at[k_next, :] = u_new
                    obs_x[k_next] = AT_END
                else:
                    x = (times[k_next] - t) / h
                    _interpolate(u, h, P, x, K, z_at[k_next])
                    obs_x[k_next] = x
                obs_step[k_next] = n_accepted
                k_next += 1
            if mode == ALONE:  # after the step's dense output, before u moves on (as `on_step`)
                _step_quadrature(net, shape, t, h, u, K, P, nodes, dense, zbuf, u_stage, products[0], q)
            else:
                q[:] = q_new
                products[0, :] = products[s]
            u[:] = u_new
            K[0, :] = K[s]
            t = t_new
            n_accepted += 1
            h_abs *= factor
        else:
            h_abs *= factor_after_reject(error_norm, exponent)
            n_rejected += 1
            after_rejection = True
    n_rhs += s * (n_accepted + n_rejected)
    return OK, h_abs, n_rhs, n_accepted, n_rejected, n_stored


@njit(**_OPTIONS)
def forward_pass(net, tab, z0, t0, times, rtol, atol, keep_dense, work, store, z_at, obs_step, obs_x, kept):
    """Solve dz/dt = f(z) from t0 to the last observation time t_K in one piece (`solve_forward`): the
    steps do not stop at the observation times in between, whose z is read from the dense output of
    the step that reaches them (`_piece_loop`'s `observed`), as diffrax's SaveAt(ts) does.

    Parameters
    ----------
    z0 : (N, B)
    times : (K,), increasing, > t0
    keep_dense : bool
        Keep every step's dense output in `store` (InterpolatingAdjoint reads z(t) from it), or with
        a `step_store` every step's (t, h) alone (RecursiveCheckpointAdjoint).
    work : `workspace(s, N B, N B, 0)`
    store : `dense_store(...)` or `step_store(...)`, filled with every accepted step (the first n_steps)
    z_at : (K, N, B), receives z at the times
    obs_step : int64 (K,), receives the index of the step that produced each time's z
    obs_x : (K,), receives each time's x in its step (`AT_END`: the step's end state itself)
    kept : `kept_stages(...)`
        With a `step_store`: receives every accepted step's stage inputs and, for as many steps as it
        has room, their evaluations' layer inputs (RecursiveCheckpointAdjoint without checkpoints);
        `no_kept_stages()` keeps nothing.

    Returns
    -------
    status (NEED_ROOM: a larger store is needed), h_last, (n_rhs, n_accepted, n_rejected), n_steps kept.
    """
    # the caller holds every argument for the whole call: borrow them (no reference counting, `_borrowed`)
    net, tab, work, store = borrowed_network(net), borrowed_tableau(tab), borrowed_seven(work), borrowed_four(store)
    z0, times, z_at = borrowed(z0), borrowed(times), borrowed(z_at)
    obs_step, obs_x = borrowed(obs_step), borrowed(obs_x)
    kept = (borrowed(kept[0]), borrowed(kept[1]))
    n, batch = z0.shape
    size = n * batch
    # `_piece_loop` is called here with the argument types `backward_pass` gives it, so that numba compiles
    # it once for both: integers typed np.int64, not the literals bare constants would be typed as
    shape = (np.int64(1), n, batch)
    n_times = times.shape[0]
    u = z0.copy().reshape(size)
    q = work[5]  # empty: no quadrature tail forward
    no_dense = (np.int64(0), np.int64(0), store[0], store[1], store[2], store[3])
    no_nodes = (q, q, work[1], work[1])  # empty: no quadrature forward
    observed = (times, reshaped(z_at, (n_times, size)), obs_step, obs_x)
    # h = -1: the initial-step heuristic
    status, h, n_rhs, n_accepted, n_rejected, n_stored = _piece_loop(
        np.int64(FORWARD), net, tab, shape, u, q, t0, times[n_times - 1], -1.0, rtol, atol, work, no_dense, store,
        0, keep_dense, no_nodes, observed, kept,
    )
    return status, h, (n_rhs, n_accepted, n_rejected), n_stored


@njit(**_OPTIONS)
def backward_pass(mode, net, tab, z_at, dL_dz, t0, times, h0, rtol, atol, store, n_steps, work, u, q, nodes):
    """The backward solve of BacksolveAdjoint (mode BACKSOLVE), InterpolatingAdjoint (INTERPOLATING) or
    a alone with quadrature (ALONE: QuadratureAdjoint, GaussAdjoint), piece by piece between the
    observation times from t_K to t0 (`adjoint_gradient`), with the adjoint's jump at every time.

    Parameters
    ----------
    z_at, dL_dz : (K, N, B)
        The forward states at the times and ∂L/∂z there.
    h0 : float
        The first backward step (`first_backward_step`).
    store, n_steps
        The forward dense output and its number of steps (`forward_pass`; INTERPOLATING and ALONE): z(t)
        on every backward piece is read from whichever forward step covers t.
    work : `workspace(s, len(u), N B, P)`
    u : (2 N B,) for [z, a] or (N B,) for a, zeros; receives the state at t0
    q : (P,), zeros; receives ∂L/∂θ in the [W | b] layout
    nodes : ((M,), (M,), (M, degree), (M, len(u)))
        ALONE: the Gauss-Legendre nodes on [-1, 1] and weights used on every accepted step, and
        scratch for their powers and for a at the nodes (`quadrature_rule`); other modes: empty arrays.

    Returns
    -------
    status, (n_rhs, n_accepted, n_rejected).
    """
    # the caller holds every argument for the whole call: borrow them (no reference counting, `_borrowed`)
    net, tab, store, work, nodes = (borrowed_network(net), borrowed_tableau(tab), borrowed_four(store),
                                    borrowed_seven(work), borrowed_four(nodes))
    z_at, dL_dz, times = borrowed(z_at), borrowed(dL_dz), borrowed(times)
    u, q = borrowed(u), borrowed(q)
    n_times, n, batch = z_at.shape
    bn = n * batch
    n_blocks = 2 if mode == BACKSOLVE else 1
    shape = (n_blocks, n, batch)
    a0 = (n_blocks - 1) * bn
    h = h0
    n_rhs = n_accepted = n_rejected = 0
    status = np.int64(OK)  # typed as the pieces return it (a bare constant types as a literal)
    d_t, d_h, d_y, d_q = store
    dense = (np.int64(0), n_steps, d_t, d_h, d_y, d_q)
    # no observation times to read backwards: empty arrays of `forward_pass`'s types
    no_times = np.empty(0)
    not_observed = (no_times, np.empty((0, 0)), np.empty(0, dtype=np.int64), no_times)
    nothing_kept = (np.empty((0, 0, 0)), np.empty((0, 0, 0, 0)))
    for k in range(n_times - 1, -1, -1):
        z_k, dL_k = z_at[k].reshape(bn), dL_dz[k].reshape(bn)
        if mode == BACKSOLVE:
            u[:bn] = z_k  # z reset to the forward value, as torchdiffeq does
        for d in range(bn):
            u[a0 + d] += dL_k[d]
        t_start = t0 if k == 0 else times[k - 1]
        status, h, rhs_k, acc_k, rej_k, _ = _piece_loop(
            mode, net, tab, shape, u, q, times[k], t_start, h, rtol, atol, work, dense, store, 0, bool(False),
            nodes, not_observed, nothing_kept,  # bool(False): a run-time boolean, as forward_pass's keep_dense
        )
        n_rhs += rhs_k
        n_accepted += acc_k
        n_rejected += rej_k
        if status != OK:
            break
    return status, (n_rhs, n_accepted, n_rejected)
