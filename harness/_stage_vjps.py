"""VJPs of the model at the stages of a Runge-Kutta step: the MLP's fused form, and the generic one.

Two implementations of one interface (`value`, `vjp`, `theta_cotangents`, `carry`, `set_time`):
`StageVJPs`, the MLP's fast path below, and `ModelStageVJPs`, driven by any model's own `f` and
`vjp` (harness.models.VectorField). `stage_vjps_for` picks one; `harness._compiled.stage_vjps`
swaps in the compiled MLP kernels where they apply. The rest of this docstring is the MLP's form.

An adjoint solve carries ∂L/∂θ as a quadrature: d(∂L/∂θ)/dt = -(∂f/∂θ)ᵀa needs (∂f/∂θ)ᵀa at every
stage, yet nothing else in the solve depends on it, and a step uses it only through two weighted
sums over its stages (the update Σᵢ bᵢ kᵢ and the error estimate Σᵢ eᵢ kᵢ). So a stage's VJP here
computes only f and (∂f/∂z)ᵀa, and keeps what the θ part needs: per layer, its input x with a row
of ones appended (for the bias) and the cotangent g of its output. `theta_cotangents` later forms
Σᵢ wᵢ (∂f/∂θ)ᵀaᵢ for several weight vectors w at once, from one batched product per layer,
[dW | db] = Σᵢ wᵢ gᵢ [xᵢ; 1]ᵀ.

Why: at B = 500 the cost of a numpy call, not its arithmetic, dominates, and this replaces four small
products per stage by two per step. Keeping [x; 1] also folds every bias add into its matrix product,
W x + b = [W | b] [x; 1]. The numbers are those of `MLP.vjp` up to rounding (tests check both).

A time-dependent field's first layer reads [x; t; 1]: `set_time(t)` says which t the next
evaluations take (the adjoint systems call it once per stage), and the t row is written with x, so
each slot's record keeps its own stage's t for the θ part. (∂f/∂z)ᵀa then uses W1's first N columns
only: the adjoint needs no ∂f/∂t (see `model.py`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .models.mlp import ACTIVATIONS, MLP


class StageVJPs:
    """Stage records of VJPs of f at one θ, in `n_slots` slots.

    Parameters
    ----------
    model : MLP
    theta : ndarray, shape (P,)
    batch : int
        B, the number of states.
    n_slots : int
        How many stage records are kept at once (a Runge-Kutta step's stages).
    cotangent_sign : float
        The cotangent recorded is `cotangent_sign * a`: -1 gives an adjoint's signs,
        da/dt = -(∂f/∂z)ᵀa and d(∂L/∂θ)/dt = -(∂f/∂θ)ᵀa, without negating any output.
    """

    def __init__(self, model: MLP, theta: np.ndarray, batch: int, n_slots: int, cotangent_sign: float = 1.0):
        theta = model.check_theta(theta)
        shapes = list(zip(model.layer_widths[:-1], model.widths[1:]))  # (in, out) per layer
        to_theta, offsets = _augmented_layout(model.layer_widths)
        self._sigma = ACTIVATIONS[model.activation]
        self._decay = None if model.decay is None else model.decay[:, None]
        self._sign = float(cotangent_sign)
        self._n_state = model.state_dim
        self._time_dependent = model.time_dependent
        self._t = 0.0
        # [W | b] per layer and Wᵀ, both contiguous: np.dot with `out` then goes straight to BLAS, about
        # half the cost of np.matmul's ufunc machinery at these sizes
        augmented = np.empty(model.n_params)
        augmented[to_theta] = theta
        self._augmented = [
            augmented[offset : offset + n_out * (n_in + 1)].reshape(n_out, n_in + 1)
            for offset, (n_in, n_out) in zip(offsets, shapes)
        ]
        # the first layer's Wᵀ without its t row (if any): (∂f/∂z)ᵀa only
        self._transposed = [np.ascontiguousarray(W[:, : (self._n_state if layer == 0 else -1)].T)
                            for layer, W in enumerate(self._augmented)]
        # per layer: inputs [x; 1] (n_slots, in + 1, B), the ones row written once; output cotangents
        self._inputs, self._cotangents = [], []
        for n_in, n_out in shapes:
            # zeros, not garbage: `theta_cotangents` multiplies every slot, used or not, by its weight
            inputs = np.zeros((n_slots, n_in + 1, batch))
            inputs[:, n_in] = 1.0
            self._inputs.append(inputs)
            self._cotangents.append(np.zeros((n_slots, n_out, batch)))
        # the batched products land in one (n_slots, P) array in the [W | b] layout; `to_theta`
        # reorders its columns into θ's
        self._products = np.empty((n_slots, model.n_params))
        self._product_views = [
            self._products[:, offset : offset + n_out * (n_in + 1)].reshape(n_slots, n_out, n_in + 1)
            for offset, (n_in, n_out) in zip(offsets, shapes)
        ]
        self._to_theta = to_theta
        self._slot_of = list(range(n_slots))  # logical slot -> buffer index (see `carry`)
        self._logical_order = np.arange(n_slots)  # buffer index -> logical slot
        self.n_slots = n_slots
        # every view an evaluation writes, per buffer index, made on first use and kept: at B = 500
        # slicing costs as much as the products it feeds
        self._views = [None] * n_slots
        # the backward products from the last layer down: (Wᵀ of layer l, index of its input's cotangent)
        self._backward = [(self._transposed[l], l - 1) for l in range(len(shapes) - 1, 0, -1)]

    def _views_of(self, i: int) -> tuple:
        """Buffer i's (x rows of [x; 1], per hidden layer (W_aug, u rows of the next layer's input,
        this layer's input), the last layer's input, the cotangents per layer)."""
        views = self._views[i]
        if views is None:
            inputs = [layer_inputs[i] for layer_inputs in self._inputs]
            hidden = [(W, nxt[: W.shape[0]], this) for W, this, nxt in zip(self._augmented, inputs[:-1], inputs[1:])]
            views = self._views[i] = (inputs[0][: self._n_state], hidden, inputs[-1], [c[i] for c in self._cotangents])
        return views

    def set_time(self, t: float) -> None:
        """The t of the evaluations that follow (a time-dependent field only; others ignore t)."""
        self._t = float(t)

    def _write_input(self, i: int, x: np.ndarray):
        """x (and t, if the field is time-dependent) into buffer i's first-layer input; its views."""
        views = self._views_of(i)
        views[0][...] = x
        if self._time_dependent:
            self._inputs[0][i, self._n_state] = self._t
        return views

    def value(self, x: np.ndarray, out: np.ndarray) -> None:
        """f alone, into `out` (N, B), C-contiguous; x: (N, B). Uses slot 0 as scratch."""
        _, hidden, last_input, _ = self._write_input(0, x)
        self._hidden(hidden, with_slopes=False)
        self._output(last_input, x, out)

    def vjp(self, slot: int, x: np.ndarray, a: np.ndarray, out_f: np.ndarray | None, out_az: np.ndarray) -> None:
        """Record one VJP in `slot`; write f and (∂f/∂z)ᵀ(sign a).

        x, a : ndarray, shape (N, B)
            States and cotangents, feature-major (rows of zᵀ).
        out_f : ndarray, shape (N, B), C-contiguous, or None
            Receives f(x); None skips the last layer's product (a caller that does not need f).
        out_az : ndarray, shape (N, B), C-contiguous
            Receives (∂f/∂z)ᵀ(sign a).
        """
        _, hidden, last_input, cotangents = self._write_input(self._slot_of[slot], x)
        slopes = self._hidden(hidden, with_slopes=True)
        if out_f is not None:
            self._output(last_input, x, out_f)
        g = np.multiply(a, self._sign, out=cotangents[-1])
        for W_T, below in self._backward:
            g = np.dot(W_T, g, out=cotangents[below])
            g *= slopes[below]
        np.dot(self._transposed[0], g, out=out_az)
        if self._decay is not None:
            out_az -= self._decay * cotangents[-1]

    def _hidden(self, hidden, with_slopes: bool) -> list[np.ndarray]:
        """Fill the hidden layers' inputs [σ(u); 1] (x is in place); return their slopes σ'(u), for
        the backward products, or [] without `with_slopes`."""
        sigma = self._sigma
        slopes = []
        for W, u, layer_input in hidden:
            np.dot(W, layer_input, out=u)
            s = sigma.value(u)  # tanh and sigmoid work in place: s is u
            if with_slopes:
                slopes.append(sigma.slope(u, s))
            if s is not u:
                u[...] = s
        return slopes

    def _output(self, last_input: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
        np.dot(self._augmented[-1], last_input, out=out)
        if self._decay is not None:
            out -= self._decay * x

    def theta_cotangents(self, weights: np.ndarray) -> np.ndarray:
        """Σ_slots w[slot] (∂f/∂θ)ᵀ(sign a_slot) for each row w of `weights`.

        weights : ndarray, shape (M, n_slots), indexed by logical slot.
        Returns ndarray, shape (M, P).
        """
        for g, inputs, out in zip(self._cotangents, self._inputs, self._product_views):
            np.matmul(g, inputs.transpose(0, 2, 1), out=out)
        return (weights[:, self._logical_order] @ self._products)[:, self._to_theta]

    def carry(self, source: int, target: int) -> None:
        """Make the record in slot `source` the record of slot `target` (a first-same-as-last step's
        last stage is the next step's first), by swapping buffers instead of copying them."""
        slot_of = self._slot_of
        slot_of[source], slot_of[target] = slot_of[target], slot_of[source]
        self._logical_order[slot_of[source]] = source
        self._logical_order[slot_of[target]] = target


class ModelStageVJPs:
    """The stage records of `StageVJPs` for any model, from its own `f` and `vjp` (same arguments).

    Each `vjp` call asks the model for f, (∂f/∂z)ᵀ(sign a) and the θ part Σ_b (∂f_b/∂θ)ᵀ(sign a_b)
    at once and keeps the θ part (P,) in its slot; `theta_cotangents` is then one (M, n_slots) @
    (n_slots, P) product. The fused MLP form defers the θ part further (its per-layer products
    batched over the stages); a generic model has no layers to batch, so its VJP is whole.
    """

    def __init__(self, model, theta: np.ndarray, batch: int, n_slots: int, cotangent_sign: float = 1.0):
        self._model = model
        self._theta = model.check_theta(theta)
        self._sign = float(cotangent_sign)
        self._t = 0.0
        self._records = np.zeros((n_slots, model.n_params))  # zeros: every slot is weighted, used or not
        self._slot_of = list(range(n_slots))
        self._logical_order = np.arange(n_slots)
        self.n_slots = n_slots

    def set_time(self, t: float) -> None:
        self._t = float(t)

    def value(self, x: np.ndarray, out: np.ndarray) -> None:
        """f into `out` (N, B); x: (N, B), feature-major (the model sees (B, N) views)."""
        out[...] = self._model.f(self._t, x.T, self._theta).T

    def vjp(self, slot: int, x: np.ndarray, a: np.ndarray, out_f: np.ndarray | None, out_az: np.ndarray) -> None:
        """As `StageVJPs.vjp`: record the θ part in `slot`, write f (unless None) and (∂f/∂z)ᵀ(sign a)."""
        f, a_z, a_theta = self._model.vjp(self._t, x.T, self._theta, self._sign * a.T)
        out_az[...] = a_z.T
        if out_f is not None:
            out_f[...] = f.T
        self._records[self._slot_of[slot]] = a_theta

    def theta_cotangents(self, weights: np.ndarray) -> np.ndarray:
        """Σ_slots w[slot] (∂f/∂θ)ᵀ(sign a_slot) for each row of `weights` (M, n_slots): (M, P)."""
        return weights[:, self._logical_order] @ self._records

    carry = StageVJPs.carry  # the same slot swap


def stage_vjps_for(model, theta: np.ndarray, batch: int, n_slots: int, cotangent_sign: float = 1.0):
    """The numpy stage records for `model`: the MLP's fused `StageVJPs` for the plain MLP class (its
    layers are known), `ModelStageVJPs` (the model's own vjp) for every other model."""
    if type(model) is MLP:  # a subclass may override f or vjp: it gets the generic form
        return StageVJPs(model, theta, batch, n_slots, cotangent_sign)
    return ModelStageVJPs(model, theta, batch, n_slots, cotangent_sign)


@lru_cache(maxsize=None)
def _augmented_layout(widths: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """θ rearranged as the [W_l | b_l] matrices, row-major, one after another: the index array
    `to_theta` with θ = augmented[to_theta], and where each layer's block starts."""
    to_theta, offsets, start = [], [], 0
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        block = np.arange(start, start + n_out * (n_in + 1)).reshape(n_out, n_in + 1)
        to_theta.extend(block[:, :n_in].reshape(-1))
        to_theta.extend(block[:, n_in])
        offsets.append(start)
        start += block.size
    to_theta = np.array(to_theta)
    to_theta.flags.writeable = False
    return to_theta, tuple(offsets)
