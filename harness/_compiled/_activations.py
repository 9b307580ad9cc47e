"""Activations written out so that LLVM vectorises them (numba, float64).

PyPI's llvmlite has no Intel SVML, so `math.tanh` / `math.exp` in a numba loop stay scalar library
calls, no faster than `np.tanh`. Here tanh is built from an expm1 written with plain arithmetic:

    expm1(y) = 2^k (expm1(r) + 1) - 1,  y = k ln2 + r,  |r| <= ln2 / 2,

expm1(r) a Taylor polynomial (truncation r^14 / 14! < 2e-17 |r| relative), 2^k made from the exponent
bits, and tanh(x) = sign(x) e / (e + 2) with e = expm1(2 |x|). That one formula is accurate near 0 (no
1 - ... cancellation: e ≈ 2x there) and for large |x| (|x| is clamped at 20, where tanh is 1.0 in
float64). Every branch is a select, so a loop over a row of activations becomes SIMD code.
`tests/test_compiled.py` checks the maximum error against `np.tanh` over the whole range.
"""

from __future__ import annotations

import math

from numba import njit, types
from numba.extending import intrinsic

# Multiply-add contraction only: no "nnan"/"ninf", because a blow-up must still produce inf or NaN
# for the solver's step rejection to see, and no reassociation, so results stay reproducible.
# Every kernel also uses error_model="numpy": Python's zero-division check would keep a loop that
# divides from being vectorised.
FASTMATH = {"contract"}

_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * _LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits
_TANH_CLAMP = 20.0  # tanh(20) = 1 - 8e-18 rounds to 1.0


@intrinsic
def _bits_as_float(typingctx, x):
    """Reinterpret an int64's bits as a float64 (no conversion)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def _float_as_bits(typingctx, x):
    """Reinterpret a float64's bits as an int64 (no conversion)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def expm1_reduced(y):
    """e^y - 1 for -40 <= y <= 40 (the range tanh and sigmoid need), branch-free."""
    shifted = y * _INV_LN2 + _SHIFTER
    k_bits = _float_as_bits(shifted)  # k in the low bits
    k = shifted - _SHIFTER
    r = (y - k * _LN2_HI) - k * _LN2_LO
    # Taylor coefficients 1/2!, ..., 1/13! by Horner: expm1(r) = r + r² p(r)
    p = 1.6059043836821613e-10
    p = p * r + 2.08767569878681e-09
    p = p * r + 2.505210838544172e-08
    p = p * r + 2.755731922398589e-07
    p = p * r + 2.7557319223985893e-06
    p = p * r + 2.48015873015873e-05
    p = p * r + 0.0001984126984126984
    p = p * r + 0.001388888888888889
    p = p * r + 0.008333333333333333
    p = p * r + 0.041666666666666664
    p = p * r + 0.16666666666666666
    p = p * r + 0.5
    em = r + r * r * p
    scale = _bits_as_float((k_bits + 1023) << 52)  # 2^k from the exponent field
    return scale * em + (scale - 1.0)


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def tanh(x):
    ax = abs(x)
    ax = _TANH_CLAMP if ax > _TANH_CLAMP else ax  # noqa: FURB136 (NaN stays NaN; min() gives 20)
    e = expm1_reduced(2.0 * ax)
    return math.copysign(e / (e + 2.0), x)


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def sigmoid(x):
    # as the numpy path: σ(u) = (1 + tanh(u / 2)) / 2, no overflow for large |u|
    return 0.5 * (1.0 + tanh(0.5 * x))


@njit(cache=True, error_model="numpy", fastmath=FASTMATH, inline="always")
def softplus(x):
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), as np.logaddexp(0, x); scalar library calls (rare activation)
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def tanh_array(x, out):
    """Elementwise tanh of a 1-D array into `out` (for tests and the arithmetic-limit benchmark)."""
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])
