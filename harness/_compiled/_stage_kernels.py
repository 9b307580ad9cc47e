"""One Runge-Kutta stage of the MLP vector field as one compiled kernel over the batch.

The kernel computes what `harness._stage_vjps.StageVJPs` computes with a dozen numpy calls: f, and for
an adjoint stage (∂f/∂z)ᵀ(sign a) together with the records the θ part needs (each layer's input
[x; 1] and its output's cotangent g), written into the same buffers in the same layout, so the θ
products of a step (`StageVJPs.theta_cotangents`) and the slot bookkeeping stay the numpy ones.

Layout (feature-major, as everywhere in the harness): a layer's input is (in + 1, B) with the ones row
last; the weights are the [W | b] matrices, row-major, one after another. The batch is walked in blocks
of `BLOCK` columns so that a block's activations of every layer stay in cache; inside a block the
innermost loops run along the batch, contiguous in memory, and are vectorised by LLVM (the activations
are written out for that, see `_activations.py`).

Wide layers go to BLAS instead. A product whose matrix has at least `BLAS_MIN_PRODUCT` entries (a
32 x 32 hidden layer, 8-128-128-8's every layer) is one `np.dot` over the whole batch, which numba
hands to the BLAS scipy ships (about 45 GFLOP/s on one core of the machine the README names, against
about 14 for the loops here); a network with such a layer is then walked layer by layer over the
whole batch (`_layerwise_stage`) rather than block by block. The weights array carries each layer's
Wᵀ after the [W | b] blocks (`kernel_weights`), so the backward products are contiguous too.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._activations import FASTMATH, sigmoid, softplus, tanh

BLOCK = 256  # batch columns per block (narrow networks only): 2-3-2's stage 1.2-1.4x faster than with 64
# A layer's products go to BLAS when its weight matrix has at least this many entries (n_out x n_in).
# Measured per adjoint stage at B = 500 on the README's machine (one BLAS thread): 2-32-2 37 µs with
# BLAS against 57 µs written out, 2-64-2 70 against 110, 2-32-32-2 118 against 143; 2-16-2 about even;
# below (2-8-2, the tutorial's 2-3-2) the written-out loops, walked block by block, are faster.
BLAS_MIN_PRODUCT = 32


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _transposed_offset(widths, weight_offsets, layer):
    """Where layer `layer`'s Wᵀ starts in `kernel_weights`."""
    last = widths.shape[0] - 2
    start = weight_offsets[last] + widths[last + 1] * (widths[last] + 1)  # P
    for k in range(layer):
        start += widths[k] * widths[k + 1]
    return start


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _uses_blas(n_in, n_out):
    return n_in * n_out >= BLAS_MIN_PRODUCT


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def _any_wide(widths):
    for layer in range(widths.shape[0] - 1):
        if _uses_blas(widths[layer], widths[layer + 1]):
            return True
    return False


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _activate(code, u):
    if code == 0:
        return tanh(u)
    if code == 1:
        return sigmoid(u)
    return softplus(u)


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _accumulate(out, weights, first, stride, count, rows, row0, b0, b1):
    """out[b] += Σ_k weights[first + k stride] rows[row0 + k, b0 + b], four rows per pass: one load
    and store of `out` per four multiply-adds instead of per one (the loop is bound by loads)."""
    m = b1 - b0
    k = 0
    while k + 4 <= count:
        w0, w1 = weights[first + k * stride], weights[first + (k + 1) * stride]
        w2, w3 = weights[first + (k + 2) * stride], weights[first + (k + 3) * stride]
        s0, s1 = rows[row0 + k, b0:b1], rows[row0 + k + 1, b0:b1]
        s2, s3 = rows[row0 + k + 2, b0:b1], rows[row0 + k + 3, b0:b1]
        for b in range(m):
            out[b] += (w0 * s0[b] + w1 * s1[b]) + (w2 * s2[b] + w3 * s3[b])
        k += 4
    while k < count:
        w, src = weights[first + k * stride], rows[row0 + k, b0:b1]
        for b in range(m):
            out[b] += w * src[b]
        k += 1


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _activate_row(activation, u, slope, m):
    """u[:m] = σ(u[:m]) in place, slope[:m] = σ'(u) (σ' from σ where it can be)."""
    if activation == 0:
        for b in range(m):
            s = tanh(u[b])
            u[b] = s
            slope[b] = 1.0 - s * s
    elif activation == 1:
        for b in range(m):
            s = sigmoid(u[b])
            u[b] = s
            slope[b] = s * (1.0 - s)
    else:
        for b in range(m):
            slope[b] = sigmoid(u[b])  # softplus' = σ, as the numpy path
            u[b] = softplus(u[b])


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def _slopes_of_values(activation, values, slope, m):
    """slope[:m] = σ' from the activated values[:m] a recorded stage kept, by `_activate_row`'s own
    formulas (so bit for bit its slopes): tanh and sigmoid only, whose σ' is a function of σ."""
    if activation == 0:
        for b in range(m):
            s = values[b]
            slope[b] = 1.0 - s * s
    else:
        for b in range(m):
            s = values[b]
            slope[b] = s * (1.0 - s)


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def mlp_stage(
    widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay, has_decay,
    x, a, sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp,
):
    """f and (∂f/∂z)ᵀ(sign a) of the MLP for every column of x, in one pass.

    Parameters
    ----------
    widths : int64 array (L + 1,)
        (N, H1, ..., N).
    activation : int
        A code of `ACTIVATION_CODES`.
    weights : float64 array (P + Σ n_in n_out,)
        θ rearranged as the [W_l | b_l] matrices, row-major, one after another, then each Wᵀ
        (`kernel_weights`).
    weight_offsets, input_rows, cotangent_rows : int64 arrays (L,)
        Where layer l's [W | b] starts in `weights`, its input's first row in `inputs`, its output
        cotangent's first row in `cotangents`; the hidden layer l's slopes sit at `input_rows[l + 1] -
        N - 1` in `slopes` (the hidden inputs, without the first layer's and the ones rows).
    decay : float64 array (N,)
        The diagonal of Λ (used when `has_decay`).
    x, a : float64 arrays (N, B)
        States and cotangents (a is ignored without `want_vjp`).
    inputs : float64 array (R_in, B)
        Receives every layer's input [x; 1] (the ones rows must already be set).
    cotangents : float64 array (R_g, B)
        Receives every layer's output cotangent (only with `want_vjp`).
    slopes : float64 array (R_s, B)
        Scratch for σ'(u) of the hidden layers.
    out_f, out_az : float64 arrays (N, B)
        Receive f (with `want_f`) and (∂f/∂z)ᵀ(sign a) (with `want_vjp`).
    """
    stage_pass(widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay, has_decay, x, a,
               sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp,
               bool(False))  # a run-time False, as the loop passes its flags: one compiled copy of each kernel


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def stage_pass(
    widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay, has_decay,
    x, a, sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp, recorded,
):
    """`mlp_stage`, or with `recorded` its backward alone: `inputs` then already hold the layer inputs
    of an earlier pass at this x (tanh or sigmoid, see `recorded_activation`), so the hidden layers'
    products are not formed again; their slopes are recomputed from the recorded values."""
    if _any_wide(widths):
        _layerwise_stage(widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay,
                         has_decay, x, a, sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp,
                         recorded)
    else:
        _blocked_stage(widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay,
                       has_decay, x, a, sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp,
                       recorded)


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def _blocked_stage(
    widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay, has_decay,
    x, a, sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp, recorded,
):
    """`mlp_stage` for narrow networks: the batch in blocks of `BLOCK` columns, every layer per block."""
    n_layers = widths.shape[0] - 1
    n = widths[0]
    batch = x.shape[1]
    last = n_layers - 1
    # Every innermost loop runs from 0 over 1-D row slices of one block: LLVM vectorises that form
    # (with absolute indices b0..b1 into 2-D rows it does not).
    for b0 in range(0, batch, BLOCK):
        b1 = min(b0 + BLOCK, batch)
        m = b1 - b0
        if recorded:  # the layer inputs are this x's already: only the slopes are formed again
            for layer in range(1, n_layers):
                r_hidden = input_rows[layer]
                for j in range(widths[layer]):
                    _slopes_of_values(activation, inputs[r_hidden + j, b0:b1], slopes[r_hidden - n - 1 + j, b0:b1],
                                      m)
        else:
            for i in range(n):
                dst, src = inputs[i, b0:b1], x[i, b0:b1]
                for b in range(m):
                    dst[b] = src[b]
            # forward through the hidden layers: u = [W | b] [x; 1], then σ in place (and σ' beside it)
            for layer in range(n_layers - 1):
                n_in, n_out = widths[layer], widths[layer + 1]
                w0, r_in, r_out = weight_offsets[layer], input_rows[layer], input_rows[layer + 1]
                r_slope = r_out - n - 1
                for j in range(n_out):
                    row = w0 + j * (n_in + 1)
                    u = inputs[r_out + j, b0:b1]
                    bias = weights[row + n_in]
                    for b in range(m):
                        u[b] = bias
                    _accumulate(u, weights, row, 1, n_in, inputs, r_in, b0, b1)
                    _activate_row(activation, u, slopes[r_slope + j, b0:b1], m)
        # the output layer
        n_in = widths[last]
        w0, r_in = weight_offsets[last], input_rows[last]
        if want_f:
            for j in range(n):
                row = w0 + j * (n_in + 1)
                out = out_f[j, b0:b1]
                bias = weights[row + n_in]
                for b in range(m):
                    out[b] = bias
                _accumulate(out, weights, row, 1, n_in, inputs, r_in, b0, b1)
                if has_decay:
                    d, z = decay[j], x[j, b0:b1]
                    for b in range(m):
                        out[b] -= d * z[b]
        if not want_vjp:
            continue
        # backward: g_L = sign a, then g_{l-1} = (W_lᵀ g_l) * σ'(u_{l-1}), and (∂f/∂z)ᵀ g = W_1ᵀ g_1
        r_top = cotangent_rows[last]
        for i in range(n):
            dst, src = cotangents[r_top + i, b0:b1], a[i, b0:b1]
            for b in range(m):
                dst[b] = sign * src[b]
        for layer in range(last, -1, -1):
            n_in, n_out = widths[layer], widths[layer + 1]
            w0, r_g = weight_offsets[layer], cotangent_rows[layer]
            for k in range(n_in):
                # two copies of one loop: out as a row of `cotangents` or of `out_az`, never one
                # variable for both (numba would unify them to a strided type that does not vectorise)
                if layer > 0:
                    out = cotangents[cotangent_rows[layer - 1] + k, b0:b1]
                    for b in range(m):
                        out[b] = 0.0
                    _accumulate(out, weights, w0 + k, n_in + 1, n_out, cotangents, r_g, b0, b1)
                    slope = slopes[input_rows[layer] - n - 1 + k, b0:b1]
                    for b in range(m):
                        out[b] *= slope[b]
                else:
                    out_z = out_az[k, b0:b1]
                    for b in range(m):
                        out_z[b] = 0.0
                    _accumulate(out_z, weights, w0 + k, n_in + 1, n_out, cotangents, r_g, b0, b1)
                    if has_decay:
                        d, g = decay[k], cotangents[r_top + k, b0:b1]
                        for b in range(m):
                            out_z[b] -= d * g[b]


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def _layerwise_stage(
    widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay, has_decay,
    x, a, sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp, recorded,
):
    """`mlp_stage` for networks with a wide layer: layer by layer over the whole batch, each wide
    product one BLAS call (on the internal buffers only, which are C-contiguous; the products that
    write the caller's out_f / out_az have N rows and stay written out)."""
    n_layers = widths.shape[0] - 1
    n = widths[0]
    batch = x.shape[1]
    last = n_layers - 1
    if recorded:  # the layer inputs are this x's already: only the slopes are formed again
        for layer in range(1, n_layers):
            r_hidden = input_rows[layer]
            for j in range(widths[layer]):
                _slopes_of_values(activation, inputs[r_hidden + j], slopes[r_hidden - n - 1 + j], batch)
    else:
        for i in range(n):
            dst, src = inputs[i], x[i]
            for b in range(batch):
                dst[b] = src[b]
        for layer in range(last):
            n_in, n_out = widths[layer], widths[layer + 1]
            w0, r_in, r_out = weight_offsets[layer], input_rows[layer], input_rows[layer + 1]
            if _uses_blas(n_in, n_out):
                augmented = weights[w0 : w0 + n_out * (n_in + 1)].reshape((n_out, n_in + 1))
                np.dot(augmented, inputs[r_in : r_in + n_in + 1], inputs[r_out : r_out + n_out])
            else:
                for j in range(n_out):
                    row = w0 + j * (n_in + 1)
                    u = inputs[r_out + j]
                    bias = weights[row + n_in]
                    for b in range(batch):
                        u[b] = bias
                    _accumulate(u, weights, row, 1, n_in, inputs, r_in, 0, batch)
            for j in range(n_out):
                _activate_row(activation, inputs[r_out + j], slopes[r_out - n - 1 + j], batch)
    n_in = widths[last]
    w0, r_in = weight_offsets[last], input_rows[last]
    if want_f:
        for j in range(n):
            row = w0 + j * (n_in + 1)
            out = out_f[j]
            bias = weights[row + n_in]
            for b in range(batch):
                out[b] = bias
            _accumulate(out, weights, row, 1, n_in, inputs, r_in, 0, batch)
            if has_decay:
                d, z = decay[j], x[j]
                for b in range(batch):
                    out[b] -= d * z[b]
    if not want_vjp:
        return
    r_top = cotangent_rows[last]
    for i in range(n):
        dst, src = cotangents[r_top + i], a[i]
        for b in range(batch):
            dst[b] = sign * src[b]
    for layer in range(last, 0, -1):
        n_in, n_out = widths[layer], widths[layer + 1]
        w0, r_g, r_below = weight_offsets[layer], cotangent_rows[layer], cotangent_rows[layer - 1]
        if _uses_blas(n_in, n_out):
            t0 = _transposed_offset(widths, weight_offsets, layer)
            transposed = weights[t0 : t0 + n_in * n_out].reshape((n_in, n_out))
            np.dot(transposed, cotangents[r_g : r_g + n_out], cotangents[r_below : r_below + n_in])
        else:
            for k in range(n_in):
                out = cotangents[r_below + k]
                for b in range(batch):
                    out[b] = 0.0
                _accumulate(out, weights, w0 + k, n_in + 1, n_out, cotangents, r_g, 0, batch)
        for k in range(n_in):
            out, slope = cotangents[r_below + k], slopes[input_rows[layer] - n - 1 + k]
            for b in range(batch):
                out[b] *= slope[b]
    n_in, n_out = widths[0], widths[1]
    r_g = cotangent_rows[0]
    for k in range(n_in):
        out_z = out_az[k]
        for b in range(batch):
            out_z[b] = 0.0
        _accumulate(out_z, weights, weight_offsets[0] + k, n_in + 1, n_out, cotangents, r_g, 0, batch)
        if has_decay:
            d, g = decay[k], cotangents[r_top + k]
            for b in range(batch):
                out_z[b] -= d * g[b]
