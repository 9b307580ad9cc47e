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
"""

from __future__ import annotations

from numba import njit

from ._activations import FASTMATH, sigmoid, softplus, tanh

ACTIVATION_CODES = {"tanh": 0, "sigmoid": 1, "softplus": 2}
BLOCK = 64  # batch columns per block: a 129-row layer input of 64 columns is 66 KB


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
    weights : float64 array (P,)
        θ rearranged as the [W_l | b_l] matrices, row-major, one after another.
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
    n_layers = widths.shape[0] - 1
    n = widths[0]
    batch = x.shape[1]
    last = n_layers - 1
    # Every innermost loop runs from 0 over 1-D row slices of one block: LLVM vectorises that form
    # (with absolute indices b0..b1 into 2-D rows it does not).
    for b0 in range(0, batch, BLOCK):
        b1 = min(b0 + BLOCK, batch)
        m = b1 - b0
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
                slope = slopes[r_slope + j, b0:b1]
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
