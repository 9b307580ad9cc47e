"""Borrowed views: arrays without a reference count, for the compiled loop's inner calls.

numba counts references to the arrays it hands around: passing an array to a function that is not
inlined, or taking a view of it, increments a count in the array's memory-info record with an atomic
instruction and decrements it afterwards. The stage kernels take a dozen arrays and the loop takes
views of its state at every stage, while a 2-50-2 stage at B = 1 does about 0.3 µs of arithmetic:
`perf` on the 2-50-2, B = 1, 30-time gradient put 26 % of the samples on the two atomic instructions
of numba's NRT_incref / NRT_decref.

`borrowed(a)` is a view of a's memory made with `numba.carray`, which has no memory-info record, so
the reference counting of it and of every view and slice taken from it is a null test instead of an
atomic operation. The top-level compiled functions (`forward_pass`, `backward_pass`, `reverse_sweep`)
borrow their array arguments once on entry. The arguments themselves are owned by the Python caller,
which holds them for the whole call: that is what makes borrowing them safe. Arrays allocated inside
a compiled function are not borrowed (numba frees an array after its last use, which the borrowed
view would not count), and no borrowed view is returned or kept after the call. `reshaped` makes the
loop's per-stage reshapes the same way, without numba's reshape helper call.

The `borrowed*` helpers are inlined into their callers and `reshaped` is compiled into them: after
editing this file delete the cache files as `harness._compiled`'s docstring says for `_adaptive_loop.py`.
"""

from __future__ import annotations

from numba import carray, njit, types
from numba.extending import intrinsic

_OPTIONS = {"cache": True, "inline": "always"}


@intrinsic
def _data_pointer(typingctx, array):
    """The pointer to an array's first element, typed by its dtype; C-contiguous arrays only (a view of
    another layout made from this pointer would read the wrong elements), others fail to compile."""
    if not isinstance(array, types.Array) or array.layout != "C":
        return None
    sig = types.CPointer(array.dtype)(array)

    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return sig, codegen


@njit(**_OPTIONS)
def borrowed(array):
    """A view of the C-contiguous `array` without a reference count (see the module docstring)."""
    return carray(_data_pointer(array), array.shape)


@njit(**_OPTIONS)
def borrowed_network(net):
    """`net` (`_arguments.network_arguments`) with every array borrowed."""
    widths, act, weights, w_off, in_rows, cot_rows, decay, has_decay, inputs, cots, slopes, dummy = net
    return (borrowed(widths), act, borrowed(weights), borrowed(w_off), borrowed(in_rows), borrowed(cot_rows),
            borrowed(decay), has_decay, borrowed(inputs), borrowed(cots), borrowed(slopes), borrowed(dummy))


@njit(**_OPTIONS)
def borrowed_tableau(tab):
    """`tab` (`_arguments.tableau_arguments`: A, B, C, E, P, error order) with its arrays borrowed."""
    A, B, C, E, P, error_order = tab
    return borrowed(A), borrowed(B), borrowed(C), borrowed(E), borrowed(P), error_order


@njit(**_OPTIONS)
def borrowed_four(arrays):
    """A 4-tuple of arrays (a `dense_store` / `step_store`, a `quadrature_rule`) borrowed."""
    a, b, c, d = arrays
    return borrowed(a), borrowed(b), borrowed(c), borrowed(d)


@njit(**_OPTIONS)
def borrowed_six(arrays):
    """A 6-tuple of arrays (`_arguments.sweep_workspace`'s work) borrowed."""
    a, b, c, d, e, f = arrays
    return borrowed(a), borrowed(b), borrowed(c), borrowed(d), borrowed(e), borrowed(f)


@njit(**_OPTIONS)
def borrowed_seven(arrays):
    """A 7-tuple of arrays (`_arguments.workspace`) borrowed."""
    a, b, c, d, e, f, g = arrays
    return borrowed(a), borrowed(b), borrowed(c), borrowed(d), borrowed(e), borrowed(f), borrowed(g)


# called, not inlined by numba (LLVM may still inline it): numba's inlining of its error path at each of
# its call sites made the first compilation 1.5x as long (252 s of CPU against 167 s, measured)
@njit(cache=True)
def reshaped(array, shape):
    """`array.reshape(shape)` for a C-contiguous array as a borrowed view: no call to numba's reshape helper
    (about 8 % of the B = 1 gradient's samples went there, several reshapes a stage), no reference count.
    Only inside a call that holds `array`'s memory, and never to be returned (see the module docstring)."""
    size = 1
    for extent in shape:
        size *= extent
    if size != array.size:
        raise ValueError("reshaped: the new shape does not hold the array's size")
    return carray(_data_pointer(array), shape)
