"""The plain baseline that `harness bench` measures against.

What a researcher would write first with numpy and scipy alone, following the tutorial: the MLP in
the batch-major layout the tutorial uses (z @ W1ᵀ + b1, rows are states) with hand-written backprop,
`solve_ivp(RK45)` forward to t1, then the backsolve adjoint, [z, a, ∂L/∂θ] solved back to t0 by
`solve_ivp(RK45)` on one flat vector. Same weights, loss, tolerances and number of evaluations as the
harness's engines; what differs is the harness's solver loop and its feature-major model kernels.
It supports one hidden layer and one observation time (the seed problem), all the benchmark needs.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.integrate import solve_ivp

from .errors import HarnessInputError, SolverError
from .sensitivity import GradientResult
from .solvers import SolverStats


def baseline_gradient(problem, theta=None, *, rtol: float = 1e-4, atol: float = 1e-4) -> GradientResult:
    """dL/dθ and dL/dz0 with scipy's RK45 forward and a straightforward backsolve adjoint."""
    if problem.times.size != 1:
        raise HarnessInputError("the baseline supports one observation time (the seed problem)")
    theta = problem.theta if theta is None else theta
    model, (batch, n) = problem.model, problem.z0.shape
    if len(model.widths) != 3 or model.activation != "tanh" or model.decay is not None:
        raise HarnessInputError("the baseline supports the tutorial's model: one hidden tanh layer, no Λ")
    bn = batch * n
    start = time.perf_counter()
    w = model.unflatten(theta)
    W1, b1, W2, b2 = w["W1"], w["b1"], w["W2"], w["b2"]

    def mlp(z):
        return np.tanh(z @ W1.T + b1) @ W2.T + b2

    def mlp_vjp(z, a):
        s = np.tanh(z @ W1.T + b1)
        g = (a @ W2) * (1.0 - s * s)
        grads = (g.T @ z, g.sum(axis=0), a.T @ s, a.sum(axis=0))
        return s @ W2.T + b2, g @ W1, np.concatenate([x.reshape(-1) for x in grads])

    def f(t, y):
        return mlp(y.reshape(batch, n)).reshape(-1)

    forward = solve_ivp(f, (problem.t0, problem.t1), problem.z0.reshape(-1), method="RK45",
                        rtol=rtol, atol=atol)
    if not forward.success:
        raise SolverError("RK45", forward.t[-1], problem.t1, forward.message)
    z1 = forward.y[:, -1].reshape(batch, n)
    loss, dL_dz = problem.loss_terms(z1[None])

    def augmented(t, y):
        z, a = y[:bn].reshape(batch, n), y[bn : 2 * bn].reshape(batch, n)
        f_, a_z, a_theta = mlp_vjp(z, a)
        return np.concatenate((f_.reshape(-1), -a_z.reshape(-1), -a_theta))

    y1 = np.concatenate((z1.reshape(-1), dL_dz[0].reshape(-1), np.zeros(model.n_params)))
    backward = solve_ivp(augmented, (problem.t1, problem.t0), y1, method="RK45", rtol=rtol, atol=atol)
    if not backward.success:
        raise SolverError("RK45", backward.t[-1], problem.t0, backward.message)
    y0 = backward.y[:, -1]
    return GradientResult(
        engine="baseline (scipy RK45 + backsolve)",
        loss=loss,
        dtheta=y0[2 * bn :].copy(),
        dz0=y0[bn : 2 * bn].reshape(batch, n).copy(),
        forward_stats=SolverStats(n_rhs=forward.nfev, n_accepted=forward.t.size - 1, n_rejected=None),
        backward_stats=SolverStats(n_rhs=backward.nfev, n_accepted=backward.t.size - 1, n_rejected=None),
        seconds=time.perf_counter() - start,
        n_datapoints=problem.n_datapoints,
    )
