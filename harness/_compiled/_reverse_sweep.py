"""RecursiveCheckpointAdjoint's reverse sweep, compiled: reverse mode through the accepted explicit
Runge-Kutta steps of the compiled forward pass, held fixed (`harness.sensitivity._discrete`).

This is the numpy `_Stepper` / `_ReverseSweep` written out statement for statement, so that it replays
the same steps in the same order and counts the same recomputed steps and stored states:

- the forward pass (`_adaptive_loop.forward_pass`) keeps one float per accepted step, its size h, and
  the state at each observation time; each piece is swept from its start state (z0 or the state at
  the previous time), as the numpy engine sweeps from `Piece.y_start`;
- with ``checkpoints=None`` (`checkpoints < 0` here) a piece's states are replayed from its start and
  all held, then reversed from the last;
- with ``checkpoints=c`` at most c states beside the piece's start are held, and the others are
  recomputed by Griewank's binomial (revolve) schedule, `_ReverseSweep._reverse`'s recursion run here
  with an explicit stack: each level's first part is pushed and the second part taken at once, which
  is the recursion's order. The schedule is executed compiled rather than precomputed in Python as a
  list of actions: such a list has an entry per advance and per reversed step, so it would add memory
  linear in the number of steps to a mode whose point is memory bounded by c.

One reversed step of size h from y_n (`_Stepper.reverse`): the stage inputs Yᵢ = y_n + h Σ_{j<i} aᵢⱼ Kⱼ
(the last stage's value is read by no input and is not evaluated), k̄ᵢ = h bᵢ ȳ, then from the last
stage k̄ⱼ += h aᵢⱼ Ȳᵢ, ȳ += Ȳᵢ, θ̄ += (∂f/∂θ)ᵀ k̄ᵢ with Ȳᵢ = (∂f/∂z)ᵀ k̄ᵢ, a stage whose k̄ is zero skipped.
`_adjoint_stage` forms -(∂f/∂z)ᵀk̄ and -(∂f/∂θ)ᵀk̄ (the continuous adjoint's sign), so both are
subtracted here. θ̄ is kept in the kernels' [W | b] layout.

Shapes: a state is flat (N B,) in the loop's feature-major layout; every array is allocated by numpy
outside (`_arguments.sweep_workspace`), for the reason `_arguments.py` gives.
"""

from __future__ import annotations

from numba import njit

from ._adaptive_loop import _OPTIONS, _adjoint_stage, _combine, _value
from ._borrowed import borrowed, borrowed_network, borrowed_six, borrowed_tableau, reshaped
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
def _reverse_step(net, A, B, plane, h, z, z_bar, q, K, Y, k_bar, out_az, products):
    """ȳ_n from ȳ_{n+1} (`z_bar`, in place) for the step of size h from z, adding the step's (∂f/∂θ)ᵀ
    cotangent into q ([W | b] layout), as `_Stepper.reverse`. Returns the number of VJPs formed."""
    s = B.shape[0]
    size = z.shape[0]
    Y[0, :] = z
    _value(net, reshaped(z, plane), reshaped(K[0], plane))
    for i in range(1, s):
        _combine(z, h, A[i], i, K, Y[i], False)
        if i < s - 1:  # the last stage's value enters no stage input
            _value(net, reshaped(Y[i], plane), reshaped(K[i], plane))
    for i in range(s):
        c = h * B[i]
        for d in range(size):
            k_bar[i, d] = c * z_bar[d]
    n_vjp = 0
    az = reshaped(out_az, plane)
    for i in range(s - 1, -1, -1):
        nonzero = False
        for d in range(size):
            if k_bar[i, d] != 0.0:
                nonzero = True
                break
        if not nonzero:
            continue  # a stage that nothing downstream reads (the numpy `not k_bar[i].any()`)
        _adjoint_stage(net, reshaped(Y[i], plane), reshaped(k_bar[i], plane), az, az, False, products)
        n_vjp += 1
        for p in range(q.shape[0]):
            q[p] -= products[p]
        for d in range(size):
            z_bar[d] -= out_az[d]
        for j in range(i):
            if A[i, j] != 0.0:
                c = h * A[i, j]
                for d in range(size):
                    k_bar[j, d] -= c * out_az[d]
    return n_vjp


@njit(**_OPTIONS)
def reverse_sweep(net, tab, z0, z_at, dL_dz, hs, piece_first, checkpoints, slots, stack, work, z_bar, q):
    """dL/dz0 and dL/dθ of the discrete loss, piece by piece from the last observation time
    (`recursive_checkpoint_gradient`), with the jump ȳ += ∂L/∂z(t_k) at each time.

    Parameters
    ----------
    net, tab
        `network_arguments` and `tableau_arguments` (only A and B are read: the MLP is autonomous).
    z0 : (N, B)
    z_at, dL_dz : (K, N, B)
        The forward states at the times and ∂L/∂z there.
    hs : (M,)
        The accepted step sizes of the forward pass (signed); piece k's are
        hs[piece_first[k] : piece_first[k + 1]].
    piece_first : int64 (K + 1,)
    checkpoints : int
        c >= 1 for binomial checkpointing with c states, -1 to hold every state of a piece.
    slots, stack, work
        `sweep_workspace(s, N B, P, longest piece's step count, checkpoints)`.
    z_bar : (N B,), zeros; receives dL/dz0 (feature-major)
    q : (P,), zeros; receives dL/dθ in the [W | b] layout

    Returns
    -------
    (n_f, n_vjp, recomputed_steps, peak_stored_states, n_steps), as the numpy engine counts them.
    """
    # the caller holds every argument for the whole call: borrow them (no reference counting, `_borrowed`)
    net, tab, work = borrowed_network(net), borrowed_tableau(tab), borrowed_six(work)
    z0, z_at, dL_dz, hs = borrowed(z0), borrowed(z_at), borrowed(dL_dz), borrowed(hs)
    piece_first = borrowed(piece_first)
    slots, stack, z_bar, q = borrowed(slots), borrowed(stack), borrowed(z_bar), borrowed(q)
    A, B = tab[0], tab[1]
    n_times, n, batch = z_at.shape
    size = n * batch
    plane = (n, batch)
    K, Y, k_bar, out_az, products, scratch = work
    s = B.shape[0]
    temp = slots.shape[0] - 1  # the checkpointed sweep's recomputed state
    n_f = n_vjp = recomputed = n_steps = 0
    peak = 1  # the piece's start state
    for piece in range(n_times - 1, -1, -1):
        jump = dL_dz[piece].reshape(size)
        for d in range(size):
            z_bar[d] += jump[d]
        if piece == 0:
            slots[0, :] = z0.reshape(size)
        else:
            slots[0, :] = z_at[piece - 1].reshape(size)
        first = piece_first[piece]
        count = piece_first[piece + 1] - first
        steps = hs[first : first + count]
        n_steps += count
        if count == 0:
            continue
        if checkpoints < 0:
            for k in range(count - 1):
                _replay_step(net, A, B, plane, steps[k], slots[k], slots[k + 1], K, scratch)
            n_f += s * (count - 1)
            peak = max(peak, count)
            for k in range(count - 1, -1, -1):
                n_vjp += _reverse_step(net, A, B, plane, steps[k], slots[k], z_bar, q, K, Y, k_bar, out_az,
                                       products)
            n_f += (s - 1) * count
            continue
        held = 1
        lo, hi, slot, free = 0, count, 0, checkpoints
        top = 0
        while True:
            while True:  # the task (lo, hi) from the state in `slot`, with `free` checkpoints
                if hi - lo == 1:
                    n_vjp += _reverse_step(net, A, B, plane, steps[lo], slots[slot], z_bar, q, K, Y, k_bar,
                                           out_az, products)
                    n_f += s - 1
                    break
                if free == 0:  # no checkpoint to spare: rebuild each step's state from the slot's
                    for k in range(hi - 1, lo - 1, -1):
                        source = slot
                        if k > lo:
                            _advance(net, A, B, plane, steps, lo, k, slots[slot], slots[temp], K, Y[0],
                                     scratch)
                            recomputed += k - lo
                            n_f += s * (k - lo)
                            source = temp
                        n_vjp += _reverse_step(net, A, B, plane, steps[k], slots[source], z_bar, q, K, Y, k_bar,
                                               out_az, products)
                        n_f += s - 1
                    break
                mid = lo + first_part(hi - lo, free)
                _advance(net, A, B, plane, steps, lo, mid, slots[slot], slots[slot + 1], K, Y[0], scratch)
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
    return n_f, n_vjp, recomputed, peak, n_steps
