"""`StageVJPs` with its per-stage work done by the compiled kernel of `_stage_kernels.py` (`mlp_stage`, from
the module built ahead of time or numba's just-in-time function: `harness._compiled.kernels().mlp_stage`,
which `harness._compiled.stage_vjps` passes in).

Only `value` and `vjp` change; the records land in the same buffers, in the same layout, so
`theta_cotangents` and `carry` are inherited unchanged and the numpy class stays the reference.
"""

from __future__ import annotations

import numpy as np

from .._stage_vjps import StageVJPs
from ..model import MLP
from ._arguments import network_constants


class CompiledStageVJPs(StageVJPs):
    """The same records and results as `StageVJPs` (see there for the parameters), one kernel a stage."""

    def __init__(self, model: MLP, theta: np.ndarray, batch: int, n_slots: int, cotangent_sign: float = 1.0, *,
                 stage):
        """`stage`: the compiled `mlp_stage` to call (`harness._compiled.kernels().mlp_stage`)."""
        super().__init__(model, theta, batch, n_slots, cotangent_sign)
        # the kernel's arguments before x: fixed for the life of this object
        self._fixed = network_constants(model, model.check_theta(theta))
        widths, _, _, _, input_rows, cotangent_rows, _, _ = self._fixed
        n = model.state_dim
        n_inputs, n_outputs = widths[:-1], widths[1:]
        # every layer's [x; 1] of one slot in one (R_in, B) block, every cotangent in one (R_g, B)
        # block, and the per-layer views the numpy code reads made over them
        inputs = np.zeros((n_slots, int(np.sum(n_inputs + 1)), batch))
        cotangents = np.zeros((n_slots, int(np.sum(n_outputs)), batch))
        self._inputs, self._cotangents = [], []
        for r_in, r_g, n_in, n_out in zip(input_rows, cotangent_rows, n_inputs, n_outputs):
            inputs[:, r_in + n_in] = 1.0
            self._inputs.append(inputs[:, r_in : r_in + n_in + 1])
            self._cotangents.append(cotangents[:, r_g : r_g + n_out])
        self._views = [None] * n_slots  # the numpy views of the replaced buffers are stale
        self._slot_inputs, self._slot_cotangents = list(inputs), list(cotangents)
        self._slopes = np.empty((int(np.sum(n_inputs[1:] + 1)), batch))
        self._no_cotangent = np.zeros((n, batch))
        self._stage = stage

    def _kernel(self, *arrays):
        """The stage kernel for these arrays: the compiled one takes C-contiguous arrays; a caller's strided
        view (none of the harness's solvers passes one) goes to numba's just-in-time function, which
        compiles a version for it."""
        if all(a.flags.c_contiguous for a in arrays):
            return self._stage
        from ._stage_kernels import mlp_stage

        return mlp_stage

    def value(self, x, out):
        self._kernel(x, out)(
            *self._fixed, x, self._no_cotangent, self._sign, self._slot_inputs[0], self._slot_cotangents[0],
            self._slopes, out, out, True, False,
        )

    def vjp(self, slot, x, a, out_f, out_az):
        buffer = self._slot_of[slot]
        want_f = out_f is not None
        self._kernel(x, a, out_az, out_f if want_f else out_az)(
            *self._fixed, x, a, self._sign, self._slot_inputs[buffer], self._slot_cotangents[buffer],
            self._slopes, out_f if want_f else out_az, out_az, want_f, True,
        )
