"""The Python dynamics that Julia calls back: f and its exact derivatives on flat states.

Julia calls these with plain `Vector{Float64}`s (juliacall hands them over as array views that
`np.asarray` reads without a copy), `p` = θ as Julia perturbs it (finite differences perturb the
`p` they pass, so θ is always read from the argument, never from a closure), and `t` a float.
Each returns a *fresh* contiguous float64 array: Julia wraps it without a copy and copies it
into its own memory at once (HarnessJL.jl `from_python!`).

The derivatives are the model's own (`.vjp`, `.jac`, `.jac_theta` of harness's model protocol; for
the MLP the same mathematics as the pure-Python adjoint, whose explicit solves evaluate it through
`harness._stage_vjps`, tested equal to `MLP.vjp` to rounding), so a Julia adjoint with the
"python_vjp" route differs from the Python one only in the ODE solvers. Nothing here reads a
model's internals: any model with these methods goes through (`guards.ROUTE_NEEDS` says which
route calls which).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .._state_layout import block_diagonal, flat, states


def _read(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != np.float64:
        # Only a misconfigured AD path (ForwardDiff Duals) could send anything else.
        raise TypeError(f"Julia passed {name} with dtype {a.dtype}: expected float64")
    return a.reshape(-1)


def _out(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


class PythonDynamics:
    """Callbacks for one model and batch size; `calls` counts network passes per callback.

    Shapes, with n = B N and P = len(θ): `rhs(u, p, t) -> (n,)`, `vjp(λ, u, p, t) -> (n,)`,
    `vjp_p(λ, u, p, t) -> (P,)`, `jac(u, p, t) -> (n, n)`, `paramjac(u, p, t) -> (n, P)`.
    """

    def __init__(self, model, batch: int):
        self.model = model
        self.batch = batch
        self.calls: Counter = Counter()

    def _z(self, u) -> np.ndarray:
        return states(_read(u, "u"), self.batch)

    def rhs(self, u, p, t):
        self.calls["rhs"] += 1
        return _out(flat(self.model.f(float(t), self._z(u), _read(p, "p"))))

    def vjp(self, lam, u, p, t):
        self.calls["vjp"] += 1
        a = self._z(lam)
        return _out(flat(self.model.vjp(float(t), self._z(u), _read(p, "p"), a)[1]))

    def vjp_p(self, lam, u, p, t):
        self.calls["vjp_p"] += 1
        a = self._z(lam)
        return _out(self.model.vjp(float(t), self._z(u), _read(p, "p"), a)[2])

    def jac(self, u, p, t):
        self.calls["jac"] += 1
        blocks = self.model.jac(float(t), self._z(u), _read(p, "p"))
        return _out(block_diagonal(blocks).toarray())

    def paramjac(self, u, p, t):
        self.calls["paramjac"] += 1
        per_row = self.model.jac_theta(float(t), self._z(u), _read(p, "p"))  # (B, N, P)
        # Row i B + b of the flat layout is component i of sample b.
        return _out(per_row.transpose(1, 0, 2).reshape(-1, per_row.shape[2]))
