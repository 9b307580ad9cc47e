"""Gradient engines as configuration values, named as SciMLSensitivity names them.

An engine is passed to `harness.gradient(problem, engine=...)`; its behaviour lives in one module per
engine (`_backsolve.py`, `_interpolating.py`, `_quadrature.py`, `_gauss.py`, `_discrete.py`,
`_forward_sensitivity.py`, `_finite_differences.py`), which registers it (`_registry.register_engine`). Backward-pass
settings left as None take the forward pass's.

All adjoints solve, backwards from t_K to t0, the adjoint a(t) = ∂L/∂z(t):

    da/dt = -(∂f/∂z)ᵀ a,   a(t_k⁻) = a(t_k⁺) + ∂L/∂z(t_k),   a(t_K) = ∂L/∂z(t_K),
    dL/dθ = ∫_{t0}^{t_K} (∂f/∂θ)ᵀ a dt,   dL/dz0 = a(t0).

They differ in where z(t) comes from and how the θ integral is computed. RecursiveCheckpointAdjoint is
the other kind (discretise-then-optimise): it differentiates the solver's steps themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HarnessInputError


@dataclass(frozen=True)
class BacksolveAdjoint:
    """The tutorial's method: solve [z, a, ∂L/∂θ] from t_K back to t0, re-creating z backwards.

    Memory is O(1) in the number of steps, but integrating z backwards is unstable for stiff or
    dissipative dynamics. After the solve, the back-integrated z(t0) is compared with the true z0:

        reconstruction error = max_i |z_back(t0)_i - z0_i| / (atol + rtol |z0_i|)

    is the error in units of the requested tolerance. Forward and backward global errors of a stable
    solve are a modest multiple of the tolerance; beyond `max_reconstruction_error` (default 1e4 of
    them) the gradient is not trusted. `on_unstable="raise"` raises `UnstableBacksolveError`;
    "warn" returns the gradient with `diagnostics["unstable"] = True` (for comparison reports).
    At each observation time z is reset to the forward pass's value, as torchdiffeq does.
    """

    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None
    max_reconstruction_error: float = 1e4
    on_unstable: str = "raise"

    name = "BacksolveAdjoint"

    def __post_init__(self):
        if self.on_unstable not in ("raise", "warn"):
            raise HarnessInputError(f"on_unstable={self.on_unstable!r}: expected 'raise' or 'warn'")


@dataclass(frozen=True)
class InterpolatingAdjoint:
    """Solve [a, ∂L/∂θ] backwards, reading z(t) from the stored dense forward solution.

    `checkpointing=True` stores only `n_checkpoints` + 1 forward states (+ the observation times with
    the solvers that end a piece at each: implicit ones and DP8) and re-solves one piece of the
    forward pass at a time during the backward pass: memory bounded by the checkpoints, at the
    price of a second forward solve.
    """

    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None
    checkpointing: bool = False
    n_checkpoints: int = 10

    name = "InterpolatingAdjoint"


@dataclass(frozen=True)
class QuadratureAdjoint:
    """Solve a backwards alone (dense), then ∂L/∂θ = ∫ (∂f/∂θ)ᵀ a dt by Gauss-Legendre quadrature.

    The quadrature uses `quadrature_nodes` Gauss-Legendre points on every step of the backward solve
    (3 points integrate polynomials of degree 5 exactly, above the degree-4 dense output of DP5), with
    z from the dense forward solution and a from the dense backward solution; all nodes go through the
    network in one batched VJP, and the backward solve itself needs only (∂f/∂z)ᵀ a. The backward
    state is only B N long, which makes this the cheapest adjoint with an implicit solver.
    """

    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None
    quadrature_nodes: int = 3

    name = "QuadratureAdjoint"


@dataclass(frozen=True)
class GaussAdjoint:
    """Solve a backwards alone, accumulating ∂L/∂θ by Gauss-Legendre quadrature on each backward step.

    SciMLSensitivity's `GaussAdjoint`: on every accepted backward step, n = div(order + 1, 2)
    Gauss-Legendre nodes of the step (order: the backward solver's; DP5 and RadauIIA5 3 nodes, BS3 2,
    DP8 4), the integrand (∂f/∂θ)ᵀ a with z from the dense forward solution and a from the step's own
    interpolant, summed by a step callback (DiffEqCallbacks' integrating sum). Unlike
    QuadratureAdjoint, no dense backward solution is stored: the backward state is a alone (B N) and
    the quadrature costs one batched VJP per backward step.
    """

    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None

    name = "GaussAdjoint"


@dataclass(frozen=True)
class RecursiveCheckpointAdjoint:
    """Discretise-then-optimise: the exact gradient of the computed solution, by reverse mode through
    the accepted explicit Runge-Kutta steps (held fixed), with binomial checkpointing.

    Counterparts: diffrax's `RecursiveCheckpointAdjoint` (its default), torchdiffeq's plain `odeint`
    under backprop, SciMLSensitivity's `ReverseDiffAdjoint` (and `ZygoteAdjoint`). `checkpoints=None`
    stores every step's start state; `checkpoints=c` holds at most c of them (plus each piece's start:
    with DP5 and BS3 one piece, [t0, t_K], since the observation times are read from the steps' dense
    output and differentiated through it) and recomputes the others (Griewank's revolve), so memory
    does not grow with the number of steps.
    Explicit solvers only (DP5, BS3, DP8): implicit ones are refused with the reason.
    """

    checkpoints: int | None = None

    name = "RecursiveCheckpointAdjoint"

    def __post_init__(self):
        c = self.checkpoints
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise HarnessInputError(f"checkpoints={c!r}: expected None (store every step) or an integer >= 1")


@dataclass(frozen=True)
class ForwardSensitivity:
    """Reference: solve z with S = ∂z/∂θ (B, N, P) and ∂z/∂z0 (B, N, N) forwards, in one system.

    dS/dt = (∂f/∂z) S + ∂f/∂θ. Costs P + N times a plain solve, and has no backward pass; its error
    is controlled on z and S together, so at tight tolerance it is an independent reference.
    """

    name = "ForwardSensitivity"


@dataclass(frozen=True)
class FiniteDifferences:
    """Reference: fourth-order central differences of L, with a relative step.

    Each θ_p is perturbed by ±h, ±2h with h = step · max(1, |θ_p|). Rows of the batch do not interact,
    so each z0 component is perturbed in all rows at once (4 N solves instead of 4 B N).
    Truncation error is O(h⁴); the solver's error enters as O(tol / h).
    """

    step: float = 1e-3

    name = "FiniteDifferences"


ADJOINTS = (BacksolveAdjoint, InterpolatingAdjoint, QuadratureAdjoint, GaussAdjoint, RecursiveCheckpointAdjoint)
REFERENCES = (ForwardSensitivity, FiniteDifferences)
