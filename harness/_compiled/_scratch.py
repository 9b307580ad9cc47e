"""Scratch arrays a thread reuses from one compiled gradient to the next.

A gradient of the compiled loop allocates its scratch (the stage buffers, the stores of its steps, the
kept stages and their layer records: about 50 MB for 4-16-4 at B = 5000) and drops it on return. Arrays
that large come from the kernel (mmap) and go back to it, so every gradient touches fresh pages: a page
fault and a page the kernel zeroes for each 4 KB. That cost 11 % of a RecursiveCheckpointAdjoint
gradient of 4-16-4 at B = 5000 (perf, one core), where XLA keeps its buffers from call to call.

Inside `reusing(items)` on a thread, the allocators `allocators()` returns hand out the buffers of the
same dtype and size (or up to twice the size: the steps' room follows the steps taken) that the previous
scope on the same thread gave back, and allocate only what those cannot serve. At the scope's end its
buffers are kept for the next, up to `KEEP_BYTES`; the rest is freed. Outside a scope the allocators are
`np.empty` and `np.zeros`, and so they are in four cases inside one:
- a small solve (`ACTIVE_ITEMS`): its bookkeeping would cost more than the page faults it saves;
- a nested scope: its outer scope's arrays are still in use;
- while tracemalloc traces: the peak memory a traced call reports (`harness compare`, `harness.bench`)
  must count every array the gradient needs, as it did before any reuse;
- arrays under `SMALL_ITEMS` items.

Nothing outside a scope sees its arrays: the gradients return new arrays (`_solves.py`), and a reused
buffer's old contents are never read (an `empty` array is written before it is read, as a fresh
`np.empty`'s must be; tests/test_scratch.py fills the kept buffers with NaN between gradients and gets
the same numbers to the bit).
"""

from __future__ import annotations

import math
import threading
import tracemalloc
from contextlib import contextmanager

import numpy as np

KEEP_BYTES = 128 * 2**20  # the most a thread keeps between gradients (8-128-128-128-8's records at
# B = 5000, 95 MB a step, are reallocated each time: there the page faults are a few % of the gradient)

# Smaller arrays are left to malloc, whose heap keeps their pages (glibc's default threshold for taking
# an array from the kernel instead is 128 KB). With a threshold of 4 MB instead of this, 4-16-4 at
# B = 5000 kept only a third of the gain: its stage buffers and the sweep's are about 1 MB each.
SMALL_ITEMS = 16 * 2**10  # of 8 bytes: 128 KB
# A solve smaller than this (B times the widths summed, in 8-byte numbers) opens no scope: its few large
# arrays would cost less than the bookkeeping (2-3-2 at B = 500 was 8 % slower with a scope).
ACTIVE_ITEMS = 16 * 2**10

_local = threading.local()


def _state():
    if not hasattr(_local, "free"):
        _local.free = {}  # (dtype, size) -> the buffers of that kind the last scope gave back (1-D)
        _local.taken = None  # the buffers handed out in the open scope, or None outside one
        _local.allocations = 0
    return _local


@contextmanager
def reusing(items: int):
    """A scope whose `allocators()` reuse the last scope's buffers on this thread (see the module
    docstring); its arrays must not be used after it ends. `items`: the size of the solve in 8-byte numbers
    (B times the network's widths summed); below `ACTIVE_ITEMS` the scope leaves allocation to numpy."""
    state = _state()
    if state.taken is not None or items < ACTIVE_ITEMS or tracemalloc.is_tracing():
        yield
        return
    state.taken = []
    try:
        yield
    finally:
        taken, state.taken = state.taken, None
        kept, total = {}, 0
        for buffer in sorted(taken, key=lambda b: b.nbytes):
            if total + buffer.nbytes <= KEEP_BYTES:
                kept.setdefault((buffer.dtype, buffer.size), []).append(buffer)
                total += buffer.nbytes
        state.free = kept


def allocators():
    """(empty, zeros) for this thread now: numpy's outside an active scope or while tracemalloc traces,
    else functions with numpy's signatures (float64 or int64) that reuse the last scope's buffers."""
    if getattr(_local, "taken", None) is None or tracemalloc.is_tracing():
        return np.empty, np.zeros
    return _empty, _zeros


def _empty(shape, dtype=np.float64) -> np.ndarray:
    count = shape if type(shape) is int else math.prod(shape)
    if count < SMALL_ITEMS:
        return np.empty(shape, dtype)
    dtype = np.dtype(dtype)
    same = _local.free.get((dtype, count)) or _larger(_local.free, dtype, count)
    if same:
        buffer = same.pop()
    else:
        buffer = np.empty(count, dtype)
        _local.allocations += 1
    _local.taken.append(buffer)
    return (buffer if buffer.size == count else buffer[:count]).reshape(shape)


def _zeros(shape, dtype=np.float64) -> np.ndarray:
    array = _empty(shape, dtype)
    array.fill(0)
    return array


def _larger(free: dict, dtype, count: int) -> list | None:
    """The free buffers of the smallest size from `count` to 2 `count` (a store whose room grew or shrank
    with the steps taken; never a small array pinning a large buffer), or None."""
    sizes = [size for (kind, size), same in free.items() if kind == dtype and count < size <= 2 * count and same]
    return free[(dtype, min(sizes))] if sizes else None


def allocations() -> int:
    """How many buffers this thread's scopes have allocated so far (for tests)."""
    return _state().allocations


def free_buffers() -> list[np.ndarray]:
    """The buffers this thread keeps for its next scope (for tests)."""
    return [buffer for same in _state().free.values() for buffer in same]
