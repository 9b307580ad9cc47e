"""What the compiled functions are called with, built by numpy: the network's and the tableau's
fixed arguments, the scratch buffers of a solve, the stores of its steps, and the numbers the loop
returns.

Nothing here imports numba, so the drivers (`_solves.py`) run the same with the loop compiled ahead of
time (`_ahead_of_time.py`, loaded without numba) as with numba's just-in-time functions. Every array a
solve needs beyond a few numbers is allocated here rather than inside the compiled functions: numpy's
allocations are the ones Python's tracemalloc sees, so the peak
memory that `harness compare` reports stays true for the compiled loop too. The scratch comes from
`_scratch.py`, which inside a gradient (`_scratch.reusing`) reuses the last gradient's buffers on the
thread, and allocates afresh while tracemalloc traces.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .._stage_vjps import _augmented_layout
from ._scratch import allocators

if TYPE_CHECKING:
    from ..model import MLP
    from ..solvers import ExplicitRungeKutta

FORWARD, BACKSOLVE, INTERPOLATING, ALONE = 0, 1, 2, 3  # what a stage evaluates (the loop's modes)
OK, FAILED, NEED_ROOM = 0, 1, 2  # how a compiled solve ended
# an observation's x in its step (`forward_pass`'s obs_x) where the time is the step's end: z there is the
# end state y_{n+1} itself, not the dense polynomial at x = 1
AT_END = -1.0
ACTIVATION_CODES = {"tanh": 0, "sigmoid": 1, "softplus": 2}
# Up to this many columns a stage runs column by column (`_adaptive_loop._column_stage`): `mlp_stage`'s
# loops along the batch, made for SIMD over hundreds of columns, cost about 1.5 µs a stage in slicing and
# loop set-up at B = 1 (2-50-2), several times the arithmetic. A single column (B = 1) has its own
# kernel, vectorised along each layer's units instead (`_unit_stage.unit_stage`).
COLUMN_BATCH = 4


def kernel_weights(widths, theta: np.ndarray) -> np.ndarray:
    """θ as the kernels read it: the [W_l | b_l] blocks, row-major, one after another (P entries), then
    each layer's Wᵀ, (n_in, n_out) row-major, one after another.

    widths : tuple of int (L + 1,); theta : (P,). Returns (P + Σ n_in n_out,).
    """
    to_theta, offsets = _augmented_layout(tuple(widths))
    augmented = np.empty(len(to_theta))
    augmented[to_theta] = theta
    transposed = [
        augmented[o : o + n_out * (n_in + 1)].reshape(n_out, n_in + 1)[:, :n_in].T.reshape(-1)
        for o, n_in, n_out in zip(offsets, widths[:-1], widths[1:])
    ]
    return np.concatenate([augmented, *transposed])


@lru_cache(maxsize=64)
def _layout(widths: tuple[int, ...]) -> tuple:
    """The kernels' fixed integer arrays for these widths, computed once (nothing writes them; they stay
    writeable, as a read-only array would be another type to numba and compile a second loop)."""
    widths_array = np.array(widths, dtype=np.int64)
    n_inputs, n_outputs = widths_array[:-1], widths_array[1:]
    input_rows = np.concatenate(([0], np.cumsum(n_inputs + 1)[:-1])).astype(np.int64)
    cotangent_rows = np.concatenate(([0], np.cumsum(n_outputs)[:-1])).astype(np.int64)
    weight_offsets = np.concatenate(([0], np.cumsum(n_outputs * (n_inputs + 1))[:-1])).astype(np.int64)
    sizes = (int(np.sum(n_inputs + 1)), int(np.sum(n_outputs)), int(np.sum(n_inputs[1:] + 1)))
    return widths_array, input_rows, cotangent_rows, weight_offsets, input_rows + n_inputs, sizes


def network_constants(model: MLP, theta: np.ndarray) -> tuple:
    """The stage kernel's fixed network arguments for (model, θ), the first eight of `mlp_stage`'s:
    (widths, activation code, `kernel_weights`, weight_offsets, input_rows, cotangent_rows, decay (N,),
    has_decay)."""
    widths, input_rows, cotangent_rows, weight_offsets, _, _ = _layout(tuple(model.widths))
    decay = np.zeros(model.state_dim) if model.decay is None else np.array(model.decay, dtype=np.float64)
    return (widths, ACTIVATION_CODES[model.activation], kernel_weights(model.widths, theta), weight_offsets,
            input_rows, cotangent_rows, decay, model.decay is not None)


def network_arguments(model: MLP, theta: np.ndarray, batch: int) -> tuple:
    """The `net` tuple of `_adaptive_loop`: `network_constants` and the kernel's scratch buffers for
    `batch` columns (the layout of `CompiledStageVJPs`)."""
    empty, zeros = allocators()
    *_, ones_rows, (n_in_rows, n_g_rows, n_s_rows) = _layout(tuple(model.widths))
    inputs = zeros((n_in_rows, batch))
    inputs[ones_rows] = 1.0  # the ones rows of every [x; 1]
    cotangents = zeros((n_g_rows, batch))
    slopes = empty((n_s_rows, batch))
    return (*network_constants(model, theta), inputs, cotangents, slopes, zeros((model.state_dim, batch)))


_TABLEAU_ARGUMENTS: dict = {}


def tableau_arguments(solver: ExplicitRungeKutta) -> tuple:
    """(A, B, C, E, P, error order) of the solver's tableau as the loop reads them (made once per tableau)."""
    t = solver.tableau
    cached = _TABLEAU_ARGUMENTS.get(id(t))
    if cached is None or cached[0] is not t:
        arrays = (t.A, t.B, t.C, t.E, t.P)
        cached = _TABLEAU_ARGUMENTS[id(t)] = (t, (*(np.ascontiguousarray(a, dtype=np.float64) for a in arrays),
                                         int(t.error_order)))
    return cached[1]


def workspace(n_stages, size, n_z, n_q):
    """(K, products, u_stage, u_new, zbuf, q_new, scratch) for one solve of a flat state of `size`."""
    empty, zeros = allocators()
    s = n_stages
    return (empty((s + 1, size)), zeros((s + 1, n_q)), empty(size), empty(size), empty(n_z), empty(n_q),
            empty(size))


def quadrature_rule(x, w, degree, size):
    """`nodes` for mode ALONE: the Gauss-Legendre rule on [-1, 1] (x, w), copied (writable arrays: a
    read-only one would be another numba type, another compilation), and scratch for the nodes'
    powers x¹ .. x^degree and for a (flat, of `size`) at every node; empty x and w give the empty
    arrays of the other modes."""
    empty, _ = allocators()
    n = len(x)
    return np.array(x, dtype=np.float64), np.array(w, dtype=np.float64), empty((n, degree)), empty((n, size))


def dense_store(capacity, size, degree):
    """Room for `capacity` steps of dense output: (t (M,), h (M,), y (M, size), Q (M, degree, size)),
    Q[k, m] the coefficient of x^(m+1) on step k (degree-major, so that a step's rows are contiguous)."""
    empty, _ = allocators()
    return empty(capacity), empty(capacity), empty((capacity, size)), empty((capacity, degree, size))


def step_store(capacity):
    """Room for `capacity` steps' (t, h) alone, in `dense_store`'s layout with empty y and Q: what
    RecursiveCheckpointAdjoint keeps of its forward pass beside its stages (`kept_stages`), or alone
    with checkpoints (one float per step beside t; it replays the states from each piece's start)."""
    return dense_store(capacity, 0, 0)


# RecursiveCheckpointAdjoint's forward keeps its stages' layer inputs for as many steps as fit in this
# many bytes (`kept_stages`); the steps beyond it are reversed from their stage inputs alone, each VJP
# forming its layer inputs again. 8-128-128-128-8 at B = 500 needs 9.5 MB a step, at B = 5000 95 MB;
# diffrax's RecursiveCheckpointAdjoint peaks at 773 MB resident on the latter (this machine).
RECORD_BYTES = 512 * 2**20
# the activations whose derivative is a function of their value (tanh, sigmoid): a VJP from kept
# layer inputs forms the slopes from the values, bit for bit as the forward pass did
RECORDED_ACTIVATIONS = (ACTIVATION_CODES["tanh"], ACTIVATION_CODES["sigmoid"])


def kept_stages(capacity, n_stages, size, net, record: bool):
    """(Y (capacity + 1, s, size), records (R, s, R_in, B)) for `forward_pass`'s `kept`: room for the
    stage inputs of `capacity` accepted steps (and the attempt after the last), and with `record` the
    layer inputs of every stage of the first R = min(capacity + 1, `RECORD_BYTES` / a step's) steps
    (R = 0 without `record`), left untouched here: the loop writes the records it uses, ones rows
    included, so only their pages are ever resident. `net`: the `network_arguments` the solve uses."""
    empty, _ = allocators()
    inputs = net[8]
    per_step = n_stages * inputs.size * inputs.itemsize
    n_records = min(capacity + 1, RECORD_BYTES // per_step) if record else 0
    return empty((capacity + 1, n_stages, size)), empty((n_records, n_stages, *inputs.shape))


def no_kept_stages():
    """`forward_pass`'s `kept` that keeps nothing."""
    return np.empty((0, 0, 0)), np.empty((0, 0, 0, 0))


def sweep_workspace(n_stages, size, n_params, n_steps, checkpoints):
    """(slots, stack, (K, Y, k_bar, out_az, products, scratch, k_obs)) for `reverse_sweep`.

    slots: the held states, (n_slots, size). Stored sweep (checkpoints < 0): none used (the forward
    pass's `kept_stages` hold them). Checkpointed: the start, the checkpoints (at most one per revolve
    level, and a level takes at least one step) and the recomputed state of the last level.
    stack: the revolve levels waiting for their first part, (levels + 1, 4) int64.
    k_obs: (s, size), the cotangents a reversed step's stages receive from the observations its dense
    output produced.
    """
    empty, zeros = allocators()
    s = n_stages
    if checkpoints < 0:  # the forward pass's kept stages hold every state
        n_slots, levels = 1, 0
    else:
        levels = min(checkpoints, n_steps)
        n_slots = levels + 2
    work = (empty((s, size)), empty((s, size)), empty((s, size)), empty(size), zeros(n_params), empty(size),
            zeros((s, size)))
    return empty((n_slots, size)), zeros((levels + 1, 4), dtype=np.int64), work
