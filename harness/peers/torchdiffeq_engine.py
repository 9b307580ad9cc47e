"""torchdiffeq adapter: the problem file's MLP in PyTorch (float64), gradients by odeint(_adjoint).

torchdiffeq's conventions meet ours here only: its vector field is `forward(t, z)` on a (B, N)
tensor, the same shape as ours, and its solution at [t0, t_1, ..., t_K] has shape (K + 1, B, N).
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import torch
import torchdiffeq

from ..problems import load_problem
from ..solvers import SolverStats
from . import PEER_METHODS
from .common import PeerEngine, PeerGradientResult, TorchdiffeqEngine, check_solver, check_supported

METHODS = PEER_METHODS["torchdiffeq"]
SOLVERS = {"DP5": "dopri5", "BS3": "bosh3", "DP8": "dopri8"}  # the same tableaus as ours

_ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": lambda u: torch.logaddexp(torch.zeros_like(u), u),  # exact, unlike F.softplus's cut-off
}


def engine(method: str, *, solver: str, rtol: float, atol: float) -> PeerEngine:
    check_solver("torchdiffeq", solver, SOLVERS)
    _warm_up()
    return TorchdiffeqEngine("torchdiffeq", method, solver, rtol, atol)


@functools.cache
def _warm_up() -> None:
    """One tiny adjoint solve: torch's first backward pass starts its autograd machinery (~0.4 s),
    a one-time cost that would otherwise land in whichever comparison cell runs first."""
    class Decay(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))

        def forward(self, t, z):
            return -self.p * z

    z0 = torch.ones(1, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    torchdiffeq.odeint_adjoint(Decay(), z0, t).sum().backward()


class MLPField(torch.nn.Module):
    """f(t, z) = W_L σ(... σ(W1 z + b1) ...) + b_L - Λ z on z of shape (B, N); counts its calls."""

    def __init__(self, model, theta: np.ndarray):
        super().__init__()
        weights = model.unflatten(theta)
        self.names = model.parameter_names  # W1, b1, W2, b2, ... in θ's order
        self.params = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(weights[n], dtype=torch.float64)) for n in self.names]
        )
        self.sigma = _ACTIVATIONS[model.activation]
        self.decay = None if model.decay is None else torch.tensor(model.decay, dtype=torch.float64)
        self.n_calls = 0

    def forward(self, t, z):
        self.n_calls += 1
        x = z
        pairs = list(zip(self.params[0::2], self.params[1::2]))
        for W, b in pairs[:-1]:
            x = self.sigma(x @ W.T + b)
        W, b = pairs[-1]
        out = x @ W.T + b
        if self.decay is not None:
            out = out - self.decay * z
        return out


def gradient_from_file(path, *, method: str = "odeint_adjoint", solver: str = "DP5",
                       rtol: float = 1e-6, atol: float = 1e-6, backward_solver: str | None = None,
                       backward_rtol: float | None = None, backward_atol: float | None = None,
                       timed: bool = True):
    """dL/dθ (P,) and dL/dz0 (B, N) of the problem file at `path`, by torchdiffeq.

    Timed whatever `timed` says (the flag is for diffrax: torchdiffeq compiles nothing, and timing
    its one call costs nothing).

    The loss is the harness's: L = ½ Σ_k Σ_b ‖z_b(t_k) - y_kb‖² + (N/2) log 2π · K B.
    """
    threads = torch.get_num_threads()
    # One thread: these tensors are small (B x H), and torch's thread pool spin-waits, which on a
    # busy machine makes a 0.1 s gradient take seconds. Restored afterwards: the caller's setting.
    torch.set_num_threads(1)
    try:
        return _gradient(path, method, solver, rtol, atol, backward_solver, backward_rtol, backward_atol)
    finally:
        torch.set_num_threads(threads)


def _gradient(path, method, solver, rtol, atol, backward_solver, backward_rtol, backward_atol):
    problem = load_problem(path)
    check_supported(problem, f"torchdiffeq:{method}")
    start = time.perf_counter()  # timed from tensors in hand to gradients out, like our engines
    field = MLPField(problem.model, problem.theta)
    z0 = torch.tensor(problem.z0, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([problem.t0, *problem.times], dtype=torch.float64)
    data = torch.tensor(problem.data, dtype=torch.float64)
    options = dict(method=check_solver("torchdiffeq", solver, SOLVERS), rtol=rtol, atol=atol)
    if method == "odeint_adjoint":
        z = torchdiffeq.odeint_adjoint(
            field, z0, t, **options,
            adjoint_method=check_solver("torchdiffeq", backward_solver or solver, SOLVERS),
            adjoint_rtol=backward_rtol or rtol, adjoint_atol=backward_atol or atol,
            adjoint_params=tuple(field.parameters()),
        )
    elif method == "odeint":
        z = torchdiffeq.odeint(field, z0, t, **options)
    else:
        raise ValueError(f"unknown torchdiffeq method {method!r}: expected one of {METHODS}")
    n_forward = field.n_calls
    n = problem.model.state_dim
    loss = 0.5 * torch.sum((z[1:] - data) ** 2) + 0.5 * n * math.log(2 * math.pi) * problem.n_datapoints
    loss.backward()
    # For odeint, backward re-uses the recorded graph: no new f calls, but one VJP per recorded call.
    n_backward = field.n_calls - n_forward if method == "odeint_adjoint" else n_forward
    dtheta = np.concatenate([p.grad.detach().numpy().reshape(-1) for p in field.params])
    seconds = time.perf_counter() - start
    return PeerGradientResult(
        engine=f"torchdiffeq:{method}",
        loss=float(loss.detach()),
        dtheta=dtheta,
        dz0=z0.grad.detach().numpy().copy(),
        forward_stats=SolverStats(n_rhs=n_forward, n_accepted=0, n_rejected=None),
        backward_stats=SolverStats(n_rhs=n_backward, n_accepted=0, n_rejected=None),
        n_datapoints=problem.n_datapoints,
        seconds=seconds,
        diagnostics={"backend": "torchdiffeq", "torch": torch.__version__},
    )
