"""The model protocol: what a vector field gives the harness, and what each engine asks of it.

A model is one object describing dz/dt = f(t, z, θ) for a batch of B independent states, with its
derivatives. Every solver and gradient engine of the harness reaches the model only through the
names below (SciMLBase's `ODEFunction(f; jac, vjp, paramjac)` is the anchor: one object bundles f
with the derivatives its author can supply, and whoever needs a slot asks for it).

Required
--------
state_dim : int
    N, the dimension of one state.
n_params : int
    P, the length of the flat parameter vector θ.
f(t, z, theta) -> ndarray (B, N)
    The vector field. z: (B, N), θ: (P,); t a float, or an array (B,) with one time per row (a
    quadrature evaluates many times in one batch). Rows must not interact.
vjp(t, z, theta, a, per_sample=False) -> (f (B, N), a_z (B, N), a_theta (P,) or (B, P))
    f and both vector-Jacobian products at once: row b of a_z is (∂f/∂z_b)ᵀ a_b, and a_theta is
    Σ_b (∂f_b/∂θ)ᵀ a_b, or each row's term separately with `per_sample=True`. Every adjoint runs on
    this alone; it must be exact (check it with `harness.check_model`).

Optional, with documented defaults here
---------------------------------------
jac(t, z, theta) -> ndarray (B, N, N)
    ∂f/∂z per row, [b, i, j] = ∂f_i/∂z_j; implicit solvers and ForwardSensitivity need it. Default:
    N calls of `vjp` with unit cotangents (exact, N times a VJP's cost).
jac_theta(t, z, theta) -> ndarray (B, N, P)
    ∂f/∂θ per row; ForwardSensitivity needs it. Default: N calls of `vjp(per_sample=True)`.
    A model that cannot supply a slot sets it to None (`jac = None`): an engine that needs it then
    refuses in one line naming the slot, before anything is solved (`require`).
autonomous : bool
    Whether f ignores t (default True). Only fast paths read it.
parameter_names : list of str
    The names of θ's parts, in order; with `layout`, where each part lives. Default: "theta".
layout : tuple of ParameterView
    (name, start, shape) of each named part of θ. Default: one part per name when there are P names
    (scalars), else one part "theta" of shape (P,).
init(rng) -> ndarray (P,)
    A starting θ (the catalogue's problems draw one). Default: refused, a problem built from such a
    model passes θ itself.
check_theta(theta) -> ndarray (P,)
    θ as float64, or HarnessInputError naming the bad shape. Default: the shape check.
describe() -> str
    One short line for tables and reports. Default: the class name with N and P.
spec() -> (str, dict)
    Optional: an importable "module:callable" and plain keyword parameters that rebuild this model
    (`harness.models.build_model`); what a problem file stores for a model other than the MLP.

Subclassing `VectorField` gives the defaults; any object with the required names (duck typing) is
accepted too, and gets no defaults: what it lacks, an engine that needs it refuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import HarnessInputError


@dataclass(frozen=True)
class ParameterView:
    """Where one named part of the flat θ vector lives: θ[start : start + size], reshaped to `shape`."""

    name: str
    start: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.size)


class VectorField:
    """Base class of a model: subclass it, set `state_dim` and `n_params`, write `f` and `vjp`.

    See the module docstring for every slot, its shapes and its default. Shapes: z, a (B, N);
    θ (P,); t a float or (B,).
    """

    state_dim: int
    n_params: int
    autonomous: bool = True

    # ------------------------------------------------------------------------------- required
    def f(self, t, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """dz/dt for every row: z (B, N) -> (B, N)."""
        raise NotImplementedError(f"{type(self).__name__}.f is not written")

    def vjp(self, t, z: np.ndarray, theta: np.ndarray, a: np.ndarray, *, per_sample: bool = False):
        """(f (B, N), (∂f/∂z)ᵀa per row (B, N), Σ_b (∂f_b/∂θ)ᵀa_b (P,), or (B, P) with `per_sample`)."""
        raise NotImplementedError(f"{type(self).__name__}.vjp is not written")

    # ------------------------------------------------------------------------------- optional
    def jac(self, t, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂f/∂z per row, (B, N, N): by default from N VJPs with unit cotangents (exact)."""
        z = np.asarray(z, dtype=np.float64)
        batch, n = z.shape
        out = np.empty((batch, n, n))
        for i in range(n):  # row i of ∂f/∂z is e_iᵀ ∂f/∂z = (∂f/∂z)ᵀ e_i
            e_i = np.zeros((batch, n))
            e_i[:, i] = 1.0
            out[:, i, :] = self.vjp(t, z, theta, e_i)[1]
        return out

    def jac_theta(self, t, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∂f/∂θ per row, (B, N, P): by default from N per-row VJPs with unit cotangents (exact)."""
        z = np.asarray(z, dtype=np.float64)
        batch, n = z.shape
        out = np.empty((batch, n, self.n_params))
        for i in range(n):
            e_i = np.zeros((batch, n))
            e_i[:, i] = 1.0
            out[:, i, :] = self.vjp(t, z, theta, e_i, per_sample=True)[2]
        return out

    @property
    def parameter_names(self) -> list[str]:
        return [view.name for view in self.layout]

    @property
    def layout(self) -> tuple[ParameterView, ...]:
        return (ParameterView("theta", 0, (self.n_params,)),)

    def init(self, rng: np.random.Generator) -> np.ndarray:
        raise HarnessInputError(
            f"{self.describe()} has no init(rng): give the problem its θ ({self.n_params} numbers)"
        )

    def check_theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise HarnessInputError(
                f"theta has shape {theta.shape}: expected ({self.n_params},) for {self.describe()}"
            )
        return theta

    def describe(self) -> str:
        return f"{type(self).__name__} (N = {self.state_dim}, P = {self.n_params})"


def scalar_layout(names) -> tuple[ParameterView, ...]:
    """One scalar part per name, in order: the layout of a model whose θ is a few named numbers."""
    return tuple(ParameterView(name, i, ()) for i, name in enumerate(names))


def entry_names(model) -> list[str]:
    """A name per entry of θ from the model's layout: ["W1[0,0]", ..., "b2[1]"], or "alpha" for a
    scalar part. Models without a layout get "theta[p]"."""
    layout = getattr(model, "layout", None)
    if layout is None:
        return [f"theta[{p}]" for p in range(model.n_params)]
    names = []
    for view in layout:
        if view.shape == ():
            names.append(view.name)
            continue
        for index in np.ndindex(*view.shape):
            names.append(f"{view.name}[{','.join(map(str, index))}]")
    return names


# ----------------------------------------------------------------------------- what engines ask
REQUIRED = ("state_dim", "n_params", "f", "vjp")


def missing_slots(model, slots) -> list[str]:
    """The names among `slots` that `model` does not provide (absent, or set to None)."""
    return [name for name in slots if getattr(model, name, None) is None]


def require(model, slots, who: str) -> None:
    """Refuse, in one line naming the missing slot, a model that lacks what `who` needs.

    Called before anything is solved (by `harness.gradient`, the solvers' entry points and `train`).
    """
    missing = missing_slots(model, slots)
    if missing:
        label = _label(model)
        methods = ", ".join(f"{name}{_SIGNATURES.get(name, '')}" for name in missing)
        raise HarnessInputError(
            f"{who} needs model.{methods}, which {label} does not provide (see harness.models.VectorField)"
        )


_SIGNATURES = {
    "f": "(t, z, theta)", "vjp": "(t, z, theta, a)", "jac": "(t, z, theta) -> (B, N, N)",
    "jac_theta": "(t, z, theta) -> (B, N, P)",
}


def _label(model) -> str:
    try:
        return model.describe()
    except Exception:  # a describe of a user's model that fails must not hide the refusal
        return type(model).__name__


def check_protocol(model) -> None:
    """Refuse an object that is not a model at all (no state_dim, n_params, f or vjp), in one line."""
    require(model, REQUIRED, "the harness")
