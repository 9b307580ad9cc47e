"""RecursiveCheckpointAdjoint's reverse sweep, compiled: reverse mode through the accepted explicit
Runge-Kutta steps of the compiled forward pass, held fixed (`harness.sensitivity._discrete`).

This is the numpy `_Stepper` / `_ReverseSweep` written out statement for statement, so that it replays
the same steps in the same order and counts the same recomputed steps and stored states:

- the forward pass (`_adaptive_loop.forward_pass`) keeps one float per accepted step, its size h, and
  for each observation time the step whose dense output produced it and its x there; its steps run
  from t0 to the last observation time in one piece, swept from z0;
- with ``checkpoints=None`` (`checkpoints < 0` here) the forward pass also kept every accepted step's
  stage inputs, so the steps are reversed from the last without evaluating f; where the network's
  layer inputs of those evaluations were kept too (`_arguments.kept_stages`: more than a few columns,
  tanh or sigmoid, within `RECORD_BYTES`), each VJP starts from them instead of forming them again
  (two of a 3 x 128 network's six wide products per VJP);
- with ``checkpoints=c`` at most c states beside z0 are held, and the others are
  recomputed by Griewank's binomial (revolve) schedule, `_ReverseSweep._reverse`'s recursion run here
  with an explicit stack: each level's first part is pushed and the second part taken at once, which
  is the recursion's order. The schedule is executed compiled rather than precomputed in Python as a
  list of actions: such a list has an entry per advance and per reversed step, so it would add memory
  linear in the number of steps to a mode whose point is memory bounded by c.

One reversed step of size h from y_n (`_Stepper.reverse`): the stage inputs Yᵢ = y_n + h Σ_{j<i} aᵢⱼ Kⱼ
(kept, or formed again: the last stage's value is read by no input and is not evaluated), k̄ᵢ = h bᵢ ȳ,
then from the last stage k̄ⱼ += h aᵢⱼ Ȳᵢ, ȳ += Ȳᵢ, θ̄ += (∂f/∂θ)ᵀ k̄ᵢ with Ȳᵢ = (∂f/∂z)ᵀ k̄ᵢ, a stage
whose k̄ is zero skipped. `_adjoint_stage` forms -(∂f/∂z)ᵀk̄ and -(∂f/∂θ)ᵀk̄ (the continuous adjoint's sign), so both are
subtracted here. θ̄ is kept in the kernels' [W | b] layout.

The observations (`_reverse_observed`): z(t_k) = y_n + h Σᵢ bᵢ(x) Kᵢ, bᵢ(x) = Σⱼ Pᵢⱼ x^(j+1), over the
stages and the last row K_s = f(y_{n+1}), for a t_k inside step n; with g_k = ∂L/∂z(t_k), reversing step n
adds h bᵢ(x) g_k to k̄ᵢ (i < s) and g_k to ȳ_n. K_s of step n is K₀ of step n + 1 (the forward loop
carries it, first same as last), so h b_s(x) g_k joins k̄₀ of step n + 1, which is reversed first; for
the last step, which has no successor, one VJP at y_N = z(t_K) takes it. A t_k at a step's end is that
step's end state: g_k joins ȳ_{n+1} before step n is reversed.

Shapes: a state is flat (N B,) in the loop's feature-major layout; every array is allocated by numpy
outside (`_arguments.sweep_workspace`), for the reason `_arguments.py` gives.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._adaptive_loop import _OPTIONS, _adjoint_stage, _combine, _value, with_inputs
from ._arguments import AT_END
from ._borrowed import borrowed, borrowed_network, borrowed_seven, borrowed_tableau, reshaped
from ._rules import first_part


@njit(**_OPTIONS)
def _replay_step(net, A, B, plane, h, z, out, K, stage):
    """out = the explicit RK step of size h from z (`_Stepper.step`), all flat (N B,); K: (s, N B)."""
    s = B.shape[0]
    _value(net, reshaped(z, plane), reshaped(K[0], plane))
    for i in range(1, s):
        _combine(z, h, A[i], i, K, stage, False)
        _value(net, reshaped(stage, plane), reshaped(K[i], plane))
    _combine(z, h, B, s, K, out, False)


@njit(**_OPTIONS)
def _advance(net, A, B, plane, hs, lo, hi, src, dst, K, stage, scratch):
    """dst = the state after steps lo .. hi - 1 (sizes hs[lo:hi]) from src (`_ReverseSweep._advance`)."""
    dst[:] = src
    for k in range(lo, hi):
        _replay_step(net, A, B, plane, hs[k], dst, scratch, K, stage)
        dst[:] = scratch


@njit(**_OPTIONS)
def _stage_vjp(net, plane, y, cotangent, z_bar, q, out_az, products, recorded):
    """z_bar += (∂f/∂z)ᵀc and q += (∂f/∂θ)ᵀc at y for the cotangent c (flat (N B,)), leaving -(∂f/∂z)ᵀc
    in out_az; with `recorded`, from the layer inputs `net`'s buffer holds for y. Not inlined: its two
    callers share one copy of `_adjoint_stage`'s inlined kernels (each copy lengthens the module's build)."""
    az = reshaped(out_az, plane)
    _adjoint_stage(net, reshaped(y, plane), reshaped(cotangent, plane), az, az, False, products, recorded, True)
    for p in range(q.shape[0]):
        q[p] -= products[p]
    for d in range(z_bar.shape[0]):
        z_bar[d] -= out_az[d]


@njit(**_OPTIONS)
def _reverse_step(net, A, B, plane, h, z, z_bar, q, K, Y, k_bar, out_az, products, k_obs, observed, kept, records,
                  n):
    """ȳ_n from ȳ_{n+1} (`z_bar`, in place) for the step of size h from z, adding the step's (∂f/∂θ)ᵀ
    cotangent into q ([W | b] layout), as `_Stepper.reverse`; with `observed`, k̄ᵢ starts with the
    observations' k_obs[i] besides h bᵢ ȳ_{n+1}. With `kept`, Y already holds the step's stage inputs
    (the forward pass kept them) and no f is evaluated; if n < len(records) (R, s, R_in, B), records[n]
    holds the layer inputs of their evaluations, from which each VJP starts. Returns the number of VJPs
    formed."""
    s = B.shape[0]
    size = z.shape[0]
    if not kept:
        Y[0, :] = z
        _value(net, reshaped(z, plane), reshaped(K[0], plane))
        for i in range(1, s):
            _combine(z, h, A[i], i, K, Y[i], False)
            if i < s - 1:  # the last stage's value enters no stage input
                _value(net, reshaped(Y[i], plane), reshaped(K[i], plane))
    recorded = 0 <= n < records.shape[0]
    for i in range(s):
        c = h * B[i]
        for d in range(size):
            k_bar[i, d] = c * z_bar[d]
        if observed:
            for d in range(size):
                k_bar[i, d] += k_obs[i, d]
    n_vjp = 0
    for i in range(s - 1, -1, -1):
        nonzero = False
        for d in range(size):
            if k_bar[i, d] != 0.0:
                nonzero = True
                break
        if not nonzero:
            continue  # a stage that nothing downstream reads (the numpy `not k_bar[i].any()`)
        _stage_vjp(with_inputs(net, records[n, i]) if recorded else net, plane, Y[i], k_bar[i], z_bar, q, out_az,
                   products, recorded)
        n_vjp += 1
        for j in range(i):
            if A[i, j] != 0.0:
                c = h * A[i, j]
                for d in range(size):
                    k_bar[j, d] -= c * out_az[d]
    return n_vjp


@njit(**_OPTIONS)
def _observations(obs_step, n):
    """(lo, hi): the observations obs_step[lo:hi] that step n produced (obs_step is nondecreasing)."""
    lo, hi = 0, obs_step.shape[0]
    while lo < hi:  # the first index with obs_step >= n
        mid = (lo + hi) // 2
        if obs_step[mid] < n:
            lo = mid + 1
        else:
            hi = mid
    end = lo
    while end < obs_step.shape[0] and obs_step[end] == n:
        end += 1
    return lo, end


@njit(**_OPTIONS)
def _dense_weight(P, i, x):
    """bᵢ(x) = Σⱼ Pᵢⱼ x^(j+1), stage i's weight in the dense output at x (`_adaptive_loop._interpolate`)."""
    weight, power = 0.0, x
    for j in range(P.shape[1]):
        weight += P[i, j] * power
        power *= x
    return weight


@njit(**_OPTIONS)
def _add_observations(P, rows, h, lo, hi, obs_x, g, k_obs, first_row):
    """k_obs[r - first_row] += h b_r(x_k) g_k for the stage rows r in `rows` = (r0, r1) and the interior
    observations lo .. hi - 1; returns whether any was added."""
    added = False
    for k in range(lo, hi):
        if obs_x[k] == AT_END:
            continue
        for r in range(rows[0], rows[1]):
            c = h * _dense_weight(P, r, obs_x[k])
            if c != 0.0:
                row, g_k = k_obs[r - first_row], g[k]
                for d in range(row.shape[0]):
                    row[d] += c * g_k[d]
                added = True
    return added


@njit(**_OPTIONS)
def _reverse_observed(net, A, B, P, plane, hs, n, z, z_bar, q, K, Y, k_bar, out_az, products, k_obs, obs_step,
                      obs_x, g, kept, records):
    """`_reverse_step` of step n (size hs[n], from z; `kept`, `records`: as there, given n) with the cotangents of
    the observations it and its predecessor produced (see the module docstring): ȳ_{n+1} += g_k for a
    t_k at its end first, k̄ᵢ += h bᵢ(x) g_k for one inside it (i < s) and h_{n-1} b_s(x) g_k into k̄₀
    for one inside step n - 1, ȳ_n += g_k after. g: (K, N B). Returns the number of VJPs formed."""
    s = B.shape[0]
    lo, hi = _observations(obs_step, n)
    for k in range(lo, hi):
        if obs_x[k] == AT_END:
            g_k = g[k]
            for d in range(z_bar.shape[0]):
                z_bar[d] += g_k[d]
    k_obs[:] = 0.0
    zero = np.int64(0)  # not a literal 0: the call below then has the argument types of the one after it
    observed = _add_observations(P, (zero, s), hs[n], lo, hi, obs_x, g, k_obs, zero)
    if n > 0:  # step n - 1's observations through its last row, f(y_n) = this step's K₀
        before_lo, before_hi = _observations(obs_step, n - 1)
        if _add_observations(P, (s, s + 1), hs[n - 1], before_lo, before_hi, obs_x, g, k_obs, s):
            observed = True
    n_vjp = _reverse_step(net, A, B, plane, hs[n], z, z_bar, q, K, Y, k_bar, out_az, products, k_obs, observed,
                          kept, records, n)
    for k in range(lo, hi):
        if obs_x[k] != AT_END:
            g_k = g[k]
            for d in range(z_bar.shape[0]):
                z_bar[d] += g_k[d]
    return n_vjp


@njit(**_OPTIONS)
def reverse_sweep(net, tab, z0, z_at, dL_dz, hs, obs_step, obs_x, checkpoints, slots, stack, work, z_bar, q, kept):
    """dL/dz0 and dL/dθ of the discrete loss (`recursive_checkpoint_gradient`): the forward's steps
    reversed from the last, each with the cotangents of the observations its dense output produced.

    Parameters
    ----------
    net, tab
        `network_arguments` and `tableau_arguments` (A, B and P are read: the MLP is autonomous).
    z0 : (N, B)
    z_at, dL_dz : (K, N, B)
        The forward states at the times and ∂L/∂z there.
    hs : (M,)
        The accepted step sizes of the forward pass (signed), from t0 to t_K.
    obs_step, obs_x : int64 (K,), (K,)
        Each time's step and x in it (`forward_pass`; `AT_END`: the step's end state).
    checkpoints : int
        c >= 1 for binomial checkpointing with c states, -1 to hold every step's stages.
    slots, stack, work
        `sweep_workspace(s, N B, P, M, checkpoints)`.
    kept : (Y (>= M, s, N B), records (R, s, R_in, B))
        checkpoints = -1: the forward pass's `kept_stages`, every step's stage inputs and the first R
        steps' layer inputs; else `no_kept_stages()`.
    z_bar : (N B,), zeros; receives dL/dz0 (feature-major)
    q : (P,), zeros; receives dL/dθ in the [W | b] layout

    Returns
    -------
    (n_f, n_vjp, recomputed_steps, peak_stored_states, n_steps), as the numpy engine counts them.
    """
    # the caller holds every argument for the whole call: borrow them (no reference counting, `_borrowed`)
    net, tab, work = borrowed_network(net), borrowed_tableau(tab), borrowed_seven(work)
    z0, z_at, dL_dz, hs = borrowed(z0), borrowed(z_at), borrowed(dL_dz), borrowed(hs)
    obs_step, obs_x = borrowed(obs_step), borrowed(obs_x)
    slots, stack, z_bar, q = borrowed(slots), borrowed(stack), borrowed(z_bar), borrowed(q)
    kept_inputs, records = borrowed(kept[0]), borrowed(kept[1])
    A, B, P = tab[0], tab[1], tab[4]
    n_times, n, batch = z_at.shape
    size = n * batch
    plane = (n, batch)
    K, Y, k_bar, out_az, products, scratch, k_obs = work
    g = reshaped(dL_dz, (n_times, size))
    s = B.shape[0]
    temp = slots.shape[0] - 1  # the checkpointed sweep's recomputed state
    n_f = n_vjp = recomputed = 0
    peak = 1  # the start state
    count = hs.shape[0]
    # one run-time flag for every call below (with constants numba would compile them once per value)
    stored = checkpoints < 0
    if count == 0:
        return n_f, n_vjp, recomputed, peak, count
    # the last step's observations through f(y_N), which no later step's K₀ carries: one VJP at y_N = z(t_K)
    last_lo, last_hi = _observations(obs_step, count - 1)
    k_obs[:] = 0.0
    if _add_observations(P, (s, s + 1), hs[count - 1], last_lo, last_hi, obs_x, g, k_obs, s):
        _stage_vjp(net, plane, reshaped(z_at[n_times - 1], (size,)), k_obs[0], z_bar, q, out_az, products,
                   bool(False))  # a run-time False: see `_network_stage`
        n_vjp += 1
    if stored:  # every step's stage inputs kept by the forward pass: no f is evaluated
        peak = max(peak, count)
        for k in range(count - 1, -1, -1):
            n_vjp += _reverse_observed(net, A, B, P, plane, hs, k, kept_inputs[k, 0], z_bar, q, K, kept_inputs[k],
                                       k_bar, out_az, products, k_obs, obs_step, obs_x, g, stored, records)
        return n_f, n_vjp, recomputed, peak, count
    slots[0, :] = z0.reshape(size)
    held = 1
    lo, hi, slot, free = np.int64(0), count, 0, checkpoints
    top = 0
    while True:
        while True:  # the task (lo, hi) from the state in `slot`, with `free` checkpoints
            if hi - lo == 1:
                n_vjp += _reverse_observed(net, A, B, P, plane, hs, lo, slots[slot], z_bar, q, K, Y, k_bar, out_az,
                                           products, k_obs, obs_step, obs_x, g, stored, records)
                n_f += s - 1
                break
            if free == 0:  # no checkpoint to spare: rebuild each step's state from the slot's
                for k in range(hi - 1, lo - 1, -1):
                    source = slot
                    if k > lo:
                        _advance(net, A, B, plane, hs, lo, k, slots[slot], slots[temp], K, Y[0], scratch)
                        recomputed += k - lo
                        n_f += s * (k - lo)
                        source = temp
                    n_vjp += _reverse_observed(net, A, B, P, plane, hs, k, slots[source], z_bar, q, K, Y, k_bar,
                                               out_az, products, k_obs, obs_step, obs_x, g, stored, records)
                    n_f += s - 1
                break
            mid = lo + first_part(hi - lo, free)
            _advance(net, A, B, plane, hs, lo, mid, slots[slot], slots[slot + 1], K, Y[0], scratch)
            recomputed += mid - lo
            n_f += s * (mid - lo)
            held += 1
            peak = max(peak, held)
            # the first part waits (with this slot's state) until the second is reversed
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = lo, mid, slot, free
            top += 1
            lo, slot, free = mid, slot + 1, free - 1
        if top == 0:
            break
        top -= 1
        lo, hi, slot, free = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        held -= 1  # the checkpoint of the part just reversed is released
    return n_f, n_vjp, recomputed, peak, count
