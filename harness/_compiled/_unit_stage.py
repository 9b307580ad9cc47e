"""One stage of the MLP at a single column (B = 1), vectorised along each layer's units.

At B = 1 the batch loops of `_stage_kernels.mlp_stage` run once each, and the column-by-column code
(`_adaptive_loop._column_stage`) walks units one at a time: a hidden unit's tanh is a scalar chain of
about thirty dependent operations. Here every loop runs along the units of a layer, contiguous in
memory, so LLVM vectorises the activations and the products as the batch kernels vectorise them along
the batch. Measured on 2-50-2 (2-core AMD EPYC with AVX-512, load 2.8, both called from one compiled
loop in one run, medians): f 352 ns a call here against 1143 ns column by column, f with the VJP and
the θ products 760 ns against 2655 ns.

Each product takes the form whose inner loop runs along the longer side of the layer:

- "axpy" (outputs as the inner loop): out[j] = b[j], then out[j] += W[j, k] x[k] input by input,
  reading Wᵀ's row k, which `kernel_weights` stores after the [W | b] blocks; used when a layer has at
  least as many outputs as inputs (2 -> 50). The terms are added in `_column_stage`'s order.
- "dot" (inputs as the inner loop): out[j] = b[j] + Σ_k W[j, k] x[k], reading [W | b]'s row j, the sum
  in eight interleaved partial sums (`_dot`); used for the layers that narrow (50 -> 2). Only the
  order of these sums differs from `_column_stage`'s, a rounding-level difference.

The VJP's products are the same two forms with the roles of W and Wᵀ exchanged. The records land where
`mlp_stage` puts them (every layer's input [x; 1] in `inputs`, each output's cotangent in `cotangents`,
σ' in `slopes`), and `unit_theta_products` forms the θ products from them.

All arrays are 1-D (a (R, 1) buffer reshaped: the same memory), and every vectorised loop runs over a
slice from index 0: an index with a run-time offset carries numba's negative-index wrap-around select,
which keeps LLVM from vectorising the loop (measured: 50 tanh with their slopes 278 ns indexed with an
offset, 74 ns over slices).

The helpers are inlined into `unit_stage`, which `_adaptive_loop.py` calls: after editing this file
delete the cache files as `harness._compiled`'s docstring says for `_adaptive_loop.py`.
"""

from __future__ import annotations

from numba import njit

from ._activations import FASTMATH, sigmoid, softplus, tanh
from ._stage_kernels import _transposed_offset

_OPTIONS = {"cache": True, "error_model": "numpy", "fastmath": FASTMATH}


@njit(inline="always", **_OPTIONS)
def _dot(u, v, n):
    """Σ_k u[k] v[k] over k < n in eight interleaved partial sums: a single running sum is a chain of n
    dependent multiply-adds (4 cycles each), eight chains overlap and LLVM packs them into one vector."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    k = 0
    while k + 8 <= n:
        s0 += u[k] * v[k]
        s1 += u[k + 1] * v[k + 1]
        s2 += u[k + 2] * v[k + 2]
        s3 += u[k + 3] * v[k + 3]
        s4 += u[k + 4] * v[k + 4]
        s5 += u[k + 5] * v[k + 5]
        s6 += u[k + 6] * v[k + 6]
        s7 += u[k + 7] * v[k + 7]
        k += 8
    while k < n:
        s0 += u[k] * v[k]
        k += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(inline="always", **_OPTIONS)
def _affine(weights, w0, t0, n_in, n_out, src, dst):
    """dst[j] = b[j] + Σ_k W[j, k] src[k] for j < n_out, k in order (W, b: the [W | b] block at w0 of
    `weights`; Wᵀ at t0). src and dst are 1-D views (a view's loops start at 0, which LLVM vectorises;
    an index with a run-time offset carries numba's negative-index wrap-around and is not vectorised)."""
    if n_out >= n_in:
        block = weights[w0 : w0 + n_out * (n_in + 1)]
        for j in range(n_out):
            dst[j] = block[j * (n_in + 1) + n_in]
        for k in range(n_in):
            x_k, row = src[k], weights[t0 + k * n_out : t0 + (k + 1) * n_out]
            for j in range(n_out):
                dst[j] += row[j] * x_k
    else:
        for j in range(n_out):
            row = weights[w0 + j * (n_in + 1) : w0 + (j + 1) * (n_in + 1)]
            dst[j] = row[n_in] + _dot(row, src, n_in)


@njit(inline="always", **_OPTIONS)
def _transposed_product(weights, w0, t0, n_in, n_out, g, out):
    """out[k] = Σ_j W[j, k] g[j] for k < n_in, j in order: the backward product Wᵀ g (1-D views)."""
    if n_in >= n_out:
        for k in range(n_in):
            out[k] = 0.0
        for j in range(n_out):
            g_j, row = g[j], weights[w0 + j * (n_in + 1) : w0 + j * (n_in + 1) + n_in]
            for k in range(n_in):
                out[k] += row[k] * g_j
    else:
        for k in range(n_in):
            out[k] = _dot(weights[t0 + k * n_out : t0 + (k + 1) * n_out], g, n_out)


@njit(inline="always", **_OPTIONS)
def _activate(activation, values, slopes):
    """values = σ(values) in place and slopes = σ' (from σ where it can be), 1-D views of one length."""
    if activation == 0:
        for j in range(values.shape[0]):
            s = tanh(values[j])
            values[j] = s
            slopes[j] = 1.0 - s * s
    elif activation == 1:
        for j in range(values.shape[0]):
            s = sigmoid(values[j])
            values[j] = s
            slopes[j] = s * (1.0 - s)
    else:
        for j in range(values.shape[0]):
            slopes[j] = sigmoid(values[j])  # softplus' = σ, as the numpy path
            values[j] = softplus(values[j])


@njit(**_OPTIONS)
def unit_stage(widths, activation, weights, weight_offsets, input_rows, cotangent_rows, decay, has_decay,
               x, a, sign, inputs, cotangents, slopes, out_f, out_az, want_f, want_vjp):
    """`mlp_stage` (same arguments, records and results up to the order of a few sums) for one column,
    every array 1-D: x, a, out_f, out_az (N,); inputs (R_in,), cotangents (R_g,), slopes (R_s,)."""
    n_layers = widths.shape[0] - 1
    n = widths[0]
    last = n_layers - 1
    for i in range(n):
        inputs[i] = x[i]
    for layer in range(last):
        n_in, n_out = widths[layer], widths[layer + 1]
        r_in, r_out = input_rows[layer], input_rows[layer + 1]
        hidden = inputs[r_out : r_out + n_out]
        _affine(weights, weight_offsets[layer], _transposed_offset(widths, weight_offsets, layer), n_in, n_out,
                inputs[r_in : r_in + n_in], hidden)
        _activate(activation, hidden, slopes[r_out - n - 1 : r_out - n - 1 + n_out])
    n_in, r_in = widths[last], input_rows[last]
    if want_f:
        _affine(weights, weight_offsets[last], _transposed_offset(widths, weight_offsets, last), n_in, n,
                inputs[r_in : r_in + n_in], out_f)
        if has_decay:
            for i in range(n):
                out_f[i] -= decay[i] * x[i]
    if not want_vjp:
        return
    # backward: g_L = sign a, then g_{l-1} = (W_lᵀ g_l) * σ'(u_{l-1}), and (∂f/∂z)ᵀ g = W_1ᵀ g_1
    r_top = cotangent_rows[last]
    for i in range(n):
        cotangents[r_top + i] = sign * a[i]
    for layer in range(last, 0, -1):
        n_in, n_out = widths[layer], widths[layer + 1]
        r_g, r_below = cotangent_rows[layer], cotangent_rows[layer - 1]
        below = cotangents[r_below : r_below + n_in]
        _transposed_product(weights, weight_offsets[layer], _transposed_offset(widths, weight_offsets, layer),
                            n_in, n_out, cotangents[r_g : r_g + n_out], below)
        slope = slopes[input_rows[layer] - n - 1 : input_rows[layer] - n - 1 + n_in]
        for k in range(n_in):
            below[k] *= slope[k]
    r_g = cotangent_rows[0]
    _transposed_product(weights, weight_offsets[0], _transposed_offset(widths, weight_offsets, 0), n, widths[1],
                        cotangents[r_g : r_g + widths[1]], out_az)
    if has_decay:
        for k in range(n):
            out_az[k] -= decay[k] * cotangents[r_top + k]


@njit(**_OPTIONS)
def unit_theta_products(widths, weight_offsets, input_rows, cotangent_rows, inputs, cotangents, products):
    """products = the θ products g [x; 1]ᵀ of every layer in the [W | b] layout, from one column's records
    (1-D `inputs` and `cotangents`, as `unit_stage` leaves them); products (P,)."""
    for layer in range(widths.shape[0] - 1):
        n_in, n_out = widths[layer], widths[layer + 1]
        w0, r_in, r_g = weight_offsets[layer], input_rows[layer], cotangent_rows[layer]
        x, g = inputs[r_in : r_in + n_in + 1], cotangents[r_g : r_g + n_out]
        if n_in + 1 >= n_out:  # along the rows of [dW | db]
            for j in range(n_out):
                g_j, row = g[j], products[w0 + j * (n_in + 1) : w0 + (j + 1) * (n_in + 1)]
                for k in range(n_in + 1):
                    row[k] = g_j * x[k]
        else:  # along its columns (a few inputs, many outputs): one pass per input
            block = products[w0 : w0 + n_out * (n_in + 1)]
            for k in range(n_in + 1):
                x_k = x[k]
                for j in range(n_out):
                    block[j * (n_in + 1) + k] = g[j] * x_k
