"""The Neural ODE vector field: an MLP over a batch of states, with exact derivatives.

dz/dt = f(z, θ, t) = MLP_θ(z) - Λ z,   or MLP_θ([z, t]) - Λ z for a time-dependent field

- z is a batch of B states of dimension N, shape (B, N); each row evolves independently.
- θ is one flat float64 vector. Its layout, layer by layer, is W1 (row-major, shape (H1, N)), b1 (H1,),
  W2, b2, ..., W_L (N, H_{L-1}), b_L (N,): the tutorial's layout, so that its W1 (H x N) is `W1` here.
- Λ is an optional fixed diagonal decay (the stiff variant); it is not a parameter.
- By default f does not depend on t (autonomous), but every method takes t so that solvers and
  adjoints have one calling convention. With `time_dependent=True`, t is one more input of the first
  layer (the usual concatenation [z, t]): W1 has shape (H1, N + 1), its last column multiplies t.
  The derivatives with respect to z and θ are unchanged in form; ∂f/∂t is never needed, because the
  loss depends on z at fixed observation times, not on the time grid, so the adjoint ODE has no
  ∂f/∂t term (only a time-grid sensitivity would).

Every derivative here is exact (hand-written backpropagation through the layers), because the
pure-Python adjoint is the reference that other engines are checked against. The solves evaluate
the same derivatives through `_stage_vjps.StageVJPs`, the fast path, which is tested against these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import HarnessInputError
from ._protocol import ParameterView, VectorField


@dataclass(frozen=True)
class Activation:
    """σ as two functions, so that f pays only for σ(u) and the VJP adds σ'(u).

    value(u) may overwrite u, which the caller owns (a fresh W @ x + b), to save an allocation;
    slope(u, s) gets u (possibly overwritten by value) and s = value(u), and uses only what its own
    value leaves intact.
    """

    value: Callable[[np.ndarray], np.ndarray]
    slope: Callable[[np.ndarray, np.ndarray], np.ndarray]


def _tanh_slope(u, s):
    d = s * s
    np.subtract(1.0, d, out=d)
    return d


def _sigmoid_value(u):
    u *= 0.5  # σ(u) = (1 + tanh(u / 2)) / 2: no overflow for large |u|
    np.tanh(u, out=u)
    u += 1.0
    u *= 0.5
    return u


# Smooth activations only, since adjoint error bounds assume a smooth f.
ACTIVATIONS: dict[str, Activation] = {
    "tanh": Activation(lambda u: np.tanh(u, out=u), _tanh_slope),
    "sigmoid": Activation(_sigmoid_value, lambda u, s: s * (1.0 - s)),
    "softplus": Activation(lambda u: np.logaddexp(0.0, u), lambda u, s: 0.5 * (1.0 + np.tanh(0.5 * u))),
    # f is then linear in z, f = (W2 W1 - Λ) z + W2 b1 + b2: the gradient tests' closed-form case
    "identity": Activation(lambda u: u, lambda u, s: np.ones_like(u)),
}


@dataclass(frozen=True)
class MLP(VectorField):
    """MLP vector field f(z, θ) = W_L σ(... σ(W1 z + b1) ...) + b_L - Λ z (W1 [z, t] if time-dependent).

    Parameters
    ----------
    widths : tuple of int
        (N, H1, ..., N): the state dimension, the hidden widths, and the state dimension again.
    activation : str
        One of `ACTIVATIONS` ("tanh" default).
    decay : ndarray, shape (N,), optional
        The diagonal of Λ for the stiff variant f = -Λ z + MLP(z); None means Λ = 0.
    time_dependent : bool
        If True, f(z, t, θ) = MLP([z, t]): the first layer takes N + 1 inputs, W1 has shape (H1, N + 1).
        An augmented Neural ODE is an ordinary MLP whose N counts the augmented dimensions too (see
        `harness.problems.Problem.augment`).
    """

    widths: tuple[int, ...]
    activation: str = "tanh"
    decay: np.ndarray | None = field(default=None, compare=False)
    time_dependent: bool = False

    def __post_init__(self):
        widths = tuple(int(w) for w in self.widths)
        if len(widths) < 3 or any(w < 1 for w in widths):
            raise HarnessInputError(
                f"widths={self.widths!r}: expected (N, H1, ..., N) with at least one hidden layer "
                "and every width >= 1"
            )
        if widths[0] != widths[-1]:
            raise HarnessInputError(
                f"widths={widths!r}: the output width {widths[-1]} must equal the state dimension "
                f"{widths[0]}"
            )
        if self.activation not in ACTIVATIONS:
            raise HarnessInputError(
                f"activation={self.activation!r}: expected one of {sorted(ACTIVATIONS)}"
            )
        object.__setattr__(self, "widths", widths)
        if not isinstance(self.time_dependent, (bool, np.bool_)):
            raise HarnessInputError(f"time_dependent={self.time_dependent!r}: expected True or False")
        object.__setattr__(self, "time_dependent", bool(self.time_dependent))
        if self.decay is not None:
            decay = np.array(self.decay, dtype=np.float64).reshape(-1)
            if decay.shape != (widths[0],) or not np.all(np.isfinite(decay)):
                raise HarnessInputError(
                    f"decay has shape {decay.shape}: expected {widths[0]} finite numbers "
                    "(the diagonal of Λ)"
                )
            decay.flags.writeable = False
            object.__setattr__(self, "decay", decay)
        views, start = [], 0
        for layer, (n_in, n_out) in enumerate(zip(self.layer_widths[:-1], widths[1:]), start=1):
            views.append(ParameterView(f"W{layer}", start, (n_out, n_in)))
            start += n_out * n_in
            views.append(ParameterView(f"b{layer}", start, (n_out,)))
            start += n_out
        object.__setattr__(self, "_views", tuple(views))
        # (W slice, W shape, b slice) per layer, precomputed: `_layers` runs on every evaluation.
        layer_slices = tuple((views[i].slice, views[i].shape, views[i + 1].slice) for i in range(0, len(views), 2))
        object.__setattr__(self, "_layer_slices", layer_slices)
        object.__setattr__(self, "_n_params", start)
        object.__setattr__(self, "_sigma", ACTIVATIONS[self.activation])
        object.__setattr__(self, "_layer_cache", [None])  # [(θ, its layer views)]: one slot, see `_layers`
        object.__setattr__(self, "_ones", {})  # batch size -> ones(B), for sums over the batch as matmuls

    # Written out because the generated ones cannot compare an ndarray field: decay is part of the
    # model (the stiff variant is a different vector field), so it takes part as a tuple of floats.
    def _identity(self) -> tuple:
        decay = None if self.decay is None else tuple(self.decay.tolist())
        # time_dependent changes the first layer's shape and what f reads: a different model
        return (self.widths, self.activation, decay, self.time_dependent)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self):
        return hash(self._identity())

    # ----------------------------------------------------------------------------------- layout
    @property
    def state_dim(self) -> int:
        """N, the dimension of one state."""
        return self.widths[0]

    @property
    def autonomous(self) -> bool:
        """Whether f ignores t. Fast paths that assume it (compiled kernels) fall back to numpy otherwise."""
        return not self.time_dependent

    @property
    def layer_widths(self) -> tuple[int, ...]:
        """The layers' input widths and the output width: `widths` with N + 1 first if time-dependent."""
        return (self.widths[0] + self.time_dependent, *self.widths[1:])

    @property
    def n_params(self) -> int:
        """P, the length of θ."""
        return self._n_params

    @property
    def layout(self) -> tuple[ParameterView, ...]:
        """The named pieces of θ in order: W1, b1, W2, b2, ..."""
        return self._views

    def unflatten(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Named views (no copies) of θ: {"W1": (H1, N), "b1": (H1,), ...}."""
        theta = self.check_theta(theta)
        return {v.name: theta[v.slice].reshape(v.shape) for v in self._views}

    def flatten(self, weights: dict[str, np.ndarray]) -> np.ndarray:
        """The inverse of `unflatten`: a new flat θ of shape (P,) from named arrays."""
        missing = [v.name for v in self._views if v.name not in weights]
        if missing:
            raise HarnessInputError(f"weights are missing {missing}: expected {self.parameter_names}")
        theta = np.empty(self._n_params)
        for v in self._views:
            w = np.asarray(weights[v.name], dtype=np.float64)
            if w.shape != v.shape:
                raise HarnessInputError(f"{v.name} has shape {w.shape}: expected {v.shape}")
            theta[v.slice] = w.reshape(-1)
        return self.check_theta(theta)

    @property
    def parameter_names(self) -> list[str]:
        return [v.name for v in self._views]

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Random θ as in the tutorial: W_l ~ N(0, 1/fan_in), b_l ~ N(0, 1). Shape (P,)."""
        pieces = []
        for v in self._views:
            scale = v.shape[1] ** -0.5 if v.name.startswith("W") else 1.0
            pieces.append(rng.normal(0.0, scale, size=v.shape).reshape(-1))
        return np.concatenate(pieces)

    def check_theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self._n_params,):
            raise HarnessInputError(
                f"theta has shape {theta.shape}: expected ({self._n_params},) for widths {self.widths}"
            )
        return theta

    def _layers(self, theta):
        """(W, b as a column) views into θ. A solve calls this thousands of times with the same θ, so
        the views of the last θ are kept; holding θ itself keeps `is` meaningful (and views follow
        in-place changes of θ). θ and its views are one tuple, read and replaced in one step, so that
        threads sharing the model (cells of one problem) never pair one θ with another's views."""
        cached = self._layer_cache[0]
        if cached is not None and cached[0] is theta:
            return cached[1]
        layers = [(theta[w].reshape(shape), theta[b][:, None]) for w, shape, b in self._layer_slices]
        self._layer_cache[0] = (theta, layers)
        return layers

    # ------------------------------------------------------------------------------ evaluation
    def _input(self, t, z: np.ndarray) -> np.ndarray:
        """The first layer's input, feature-major: zᵀ (N, B), or [zᵀ; t] (N + 1, B) if time-dependent.

        t is a float, or an array of shape (B,) with one time per row (a quadrature over many nodes
        evaluates them as one batch)."""
        if not self.time_dependent:
            return z.T
        x = np.empty((z.shape[1] + 1, z.shape[0]))
        x[:-1] = z.T
        x[-1] = t
        return x

    # Internally the batch is feature-major, x = zᵀ of shape (N, B): products are then (H, N) @ (N, B)
    # and biases broadcast along contiguous rows, about twice as fast in numpy as the (B, N) layout.
    # Callers that keep their states as transposed views of (N, B) arrays (see `_state_layout.py`) pay no
    # copies at all.
    def f(self, t: float, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """The vector field. z: (B, N) -> (B, N); t: float, or (B,) per row."""
        layers = self._layers(theta)
        x = self._input(t, z)
        for W, b in layers[:-1]:
            u = W @ x
            u += b
            x = self._sigma.value(u)
        W, b = layers[-1]
        out = W @ x
        out += b
        if self.decay is not None:
            out -= self.decay[:, None] * z.T
        return out.T

    def vjp(
        self, t: float, z: np.ndarray, theta: np.ndarray, a: np.ndarray, *, per_sample: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """f together with both vector-Jacobian products, from one pass through the network.

        Parameters
        ----------
        t : float or ndarray, shape (B,)
            The time, or one per row; used only by a time-dependent field.
        z, a : ndarray, shape (B, N)
            States and cotangents (the adjoint), one row per batch member.
        per_sample : bool
            If True, return the θ cotangent of each batch member separately.

        Returns
        -------
        f : ndarray, shape (B, N)
        a_z : ndarray, shape (B, N)
            Row b is (∂f/∂z_b)ᵀ a_b.
        a_theta : ndarray, shape (P,), or (B, P) if `per_sample`
            Σ_b (∂f_b/∂θ)ᵀ a_b.
        """
        layers = self._layers(theta)
        sigma = self._sigma
        xs, us = [self._input(t, z)], []  # layer inputs (N or H, B) and pre-activations
        for W, b in layers[:-1]:
            u = W @ xs[-1]
            u += b
            xs.append(sigma.value(u))
            us.append(u)
        W, b = layers[-1]
        f = W @ xs[-1]
        f += b
        batch = z.shape[0]
        if per_sample:
            a_z, a_theta = self._vjp_per_sample(layers, xs, us, a.T)
        else:
            ones = self._ones.get(batch)
            if ones is None:
                ones = self._ones[batch] = np.ones(batch)
            a_theta = np.empty(self._n_params)
            g = a.T  # (width, B): cotangent of the current layer's output
            for layer in range(len(layers) - 1, -1, -1):
                (w_slice, w_shape, b_slice), W = self._layer_slices[layer], layers[layer][0]
                # dW = g xᵀ and db = g 1, written straight into θ's layout (no concatenation)
                np.matmul(g, xs[layer].T, out=a_theta[w_slice].reshape(w_shape))
                np.matmul(g, ones, out=a_theta[b_slice])
                g = W.T @ g
                if layer > 0:
                    g *= sigma.slope(us[layer - 1], xs[layer])
            a_z = g[: self.state_dim]  # a time-dependent field's t row is ∂f/∂t, which no adjoint needs
        if self.decay is not None:
            f -= self.decay[:, None] * z.T
            a_z = a_z - self.decay[:, None] * a.T
        return f.T, a_z.T, a_theta

    def _vjp_per_sample(self, layers, xs, us, g):
        """(∂f/∂z)ᵀa (width, B) and the per-row θ cotangents (B, P)."""
        grads = []  # from the last layer backwards, as (dW (B, out, in), db (B, out))
        for layer in range(len(layers) - 1, -1, -1):
            grads.append((g.T[:, :, None] * xs[layer].T[:, None, :], g.T))
            g = layers[layer][0].T @ g
            if layer > 0:
                g = g * self._sigma.slope(us[layer - 1], xs[layer])
        g = g[: self.state_dim]
        batch = g.shape[1]
        pieces = []
        for dW, db in reversed(grads):
            pieces.append(dW.reshape(batch, -1))
            pieces.append(db.reshape(batch, -1))
        return g, np.concatenate(pieces, axis=-1)

    def jac(self, t: float, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂f/∂z for every batch member. z: (B, N) -> (B, N, N), [b, i, j] = ∂f_i/∂z_j of row b.

        The Jacobian of the whole batch is block-diagonal with these blocks (see `_state_layout.py`).
        """
        layers = self._layers(theta)
        x = self._input(t, z)
        J = None  # (B, width, N): derivative of the current layer's output w.r.t. z
        for W, b in layers[:-1]:
            u = W @ x
            u += b
            s = self._sigma.value(u)
            ds = self._sigma.slope(u, s)
            WJ = W[:, : self.state_dim] if J is None else np.einsum("ij,bjk->bik", W, J)
            J = ds.T[:, :, None] * WJ
            x = s
        J = np.einsum("ij,bjk->bik", layers[-1][0], J)
        if self.decay is not None:
            J[:, np.arange(self.state_dim), np.arange(self.state_dim)] -= self.decay
        return J

    def jac_theta(self, t: float, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂f/∂θ for every batch member. z: (B, N) -> (B, N, P), [b, i, p] = ∂f_i/∂θ_p of row b."""
        batch, n = z.shape
        out = np.empty((batch, n, self._n_params))
        for i in range(n):  # N backward passes, one per output component
            e_i = np.zeros((batch, n))
            e_i[:, i] = 1.0
            out[:, i, :] = self.vjp(t, z, theta, e_i, per_sample=True)[2]
        return out

    def describe(self) -> str:
        """A short human-readable description, e.g. 'MLP 2-3-2 tanh, Λ = diag(1, 1000)'."""
        text = f"MLP {'-'.join(map(str, self.widths))} {self.activation}"
        if self.decay is not None:
            text += ", Λ = diag(" + ", ".join(f"{d:g}" for d in self.decay) + ")"
        if self.time_dependent:
            text += ", time-dependent"
        return text

    def spec(self) -> tuple[str, dict]:
        """("harness.models:MLP", its keyword parameters): what rebuilds it (`harness.models.build_model`)."""
        return "harness.models:MLP", {
            "widths": list(self.widths), "activation": self.activation,
            "decay": None if self.decay is None else self.decay.tolist(), "time_dependent": self.time_dependent,
        }
