"""The peak memory of one call, traced with tracemalloc while no other cell computes in this process.

Used by `harness bench` (one thread) and by the cells of `harness compare` (maybe many threads).
tracemalloc traces the whole process, not a thread. When cells run on several threads (a
`ThreadPoolExecutor`, a Dask worker with more than one thread), two things go wrong if one cell
traces while others compute:

- the other cells' arrays land in the traced cell's peak;
- `tracemalloc.stop()` races with numpy allocating without the GIL on another thread, which crashes
  CPython before 3.12.9 and 3.13.2 (python/cpython#128679). Our CI saw exactly that: a segfault in
  `MLP.vjp` on a thread of the threaded-executor test, while another thread's cell traced memory.

So allocating and tracing share a readers-writer lock: any number of threads compute cells (or
store their records) at once under `allocating()`, and `peak_memory` runs its call alone, once those
have left, holding back the ones that arrive meanwhile (a waiting tracer goes first, so a busy pool
cannot starve it). Neither is re-entrant: a thread that holds one must release it before it takes
the other.
"""

from __future__ import annotations

import contextlib
import threading
import tracemalloc


class _AllocateTraceLock:
    """Shared for allocating, exclusive for tracing; a waiting tracer bars new allocators."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._allocating = 0
        self._tracers_waiting = 0
        self._tracing = False

    @contextlib.contextmanager
    def allocating(self):
        with self._condition:
            self._condition.wait_for(lambda: not self._tracing and not self._tracers_waiting)
            self._allocating += 1
        try:
            yield
        finally:
            with self._condition:
                self._allocating -= 1
                self._condition.notify_all()

    @contextlib.contextmanager
    def tracing(self):
        with self._condition:
            self._tracers_waiting += 1
            try:
                self._condition.wait_for(lambda: not self._tracing and not self._allocating)
            finally:
                self._tracers_waiting -= 1
            self._tracing = True
        try:
            yield
        finally:
            with self._condition:
                self._tracing = False
                self._condition.notify_all()


_LOCK = _AllocateTraceLock()


def allocating():
    """Context manager: hold it while allocating outside a traced call, computing a cell or storing
    its record (several threads may hold it at once)."""
    return _LOCK.allocating()


def peak_memory(call) -> int:
    """Peak bytes allocated through Python's allocators during `call()`, above what was live before.

    `call()` runs alone among the cells of this process (see the module docstring). tracemalloc sees
    numpy's arrays (numpy reports its buffers to it) and every Python object, so for the numpy engines
    this is the gradient's working memory: stored forward solutions, the augmented state, quadrature
    nodes. It does not see native allocators (PyTorch's, XLA's, Julia's), so it is not reported for
    external engines.
    """
    with _LOCK.tracing():
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            call()
            return max(0, tracemalloc.get_traced_memory()[1] - before)
        finally:
            if started:
                tracemalloc.stop()
