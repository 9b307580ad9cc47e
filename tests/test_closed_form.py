"""Every engine against a gradient known in closed form: a linear vector field.

With the identity activation the MLP 2-3-2 with decay Λ is affine in z,

    f(z) = A z + c,   A = W2 W1 - Λ,   c = W2 b1 + b2,

so z(t) = P e^{Mt} [z0; 1] with M = [[A, c], [0, 0]] and P = [I 0] (the augmented-matrix trick).
With residuals r_kb = z_b(t_k) - y_kb the loss L = ½ Σ_kb ‖r_kb‖² (+ a constant) has

    dL/dz0_b = Σ_k (e^{A t_k})ᵀ r_kb,
    dL/dM [E] = Σ_kb r_kbᵀ P L_exp(M t_k, t_k E) [z0_b; 1],

where L_exp is the Fréchet derivative of the matrix exponential (scipy.linalg.expm_frechet), taken
in the direction of each entry of A and c. The chain rule through A and c gives dL/dθ:

    dL/dW1 = W2ᵀ G_A,   dL/dW2 = G_A W1ᵀ + G_c b1ᵀ,   dL/db1 = W2ᵀ G_c,   dL/db2 = G_c.

No ODE solver is involved in the reference: it is accurate to the matrix exponential's ~1e-15.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm, expm_frechet

from harness.model import MLP
from harness.problems import Problem
from harness.sensitivity import (
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    gradient,
)

TIMES = (1.0, 3.0)  # two observations: the adjoint's jump at t = 1 is exercised too
DECAY = np.array([0.5, 1.0])
TOL = 1e-8


def linear_problem():
    model = MLP((2, 3, 2), activation="identity", decay=DECAY)
    rng = np.random.default_rng(7)
    theta = 0.5 * rng.standard_normal(model.n_params)
    z0 = rng.uniform(-2.0, 2.0, size=(5, 2))
    data = rng.uniform(-1.0, 1.0, size=(len(TIMES), 5, 2))
    return Problem(model, theta, z0, 0.0, np.array(TIMES), data, "linear")


def unpack(model, theta):
    return {view.name: theta[view.slice].reshape(view.shape) for view in model.layout}


def closed_form(problem):
    """(L without its constant, dL/dθ, dL/dz0) from the matrix exponential."""
    p = unpack(problem.model, problem.theta)
    n = problem.model.state_dim
    A = p["W2"] @ p["W1"] - np.diag(DECAY)
    c = p["W2"] @ p["b1"] + p["b2"]
    M = np.zeros((n + 1, n + 1))
    M[:n, :n], M[:n, n] = A, c
    Y0 = np.vstack([problem.z0.T, np.ones(problem.batch_size)])  # (N+1, B)
    loss, dz0, G = 0.0, np.zeros_like(problem.z0), np.zeros((n, n + 1))
    for k, t in enumerate(problem.times):
        R = (expm(M * t) @ Y0)[:n] - problem.data[k].T  # (N, B)
        loss += 0.5 * float(np.sum(R * R))
        dz0 += (expm(A * t).T @ R).T
        for i in range(n):
            for j in range(n + 1):
                E = np.zeros_like(M)
                E[i, j] = 1.0
                G[i, j] += float(np.sum(R * (expm_frechet(M * t, E * t, compute_expm=False) @ Y0)[:n]))
    G_A, G_c = G[:, :n], G[:, n]
    grads = {
        "W1": p["W2"].T @ G_A,
        "b1": p["W2"].T @ G_c,
        "W2": G_A @ p["W1"].T + np.outer(G_c, p["b1"]),
        "b2": G_c,
    }
    dtheta = np.concatenate([grads[view.name].ravel() for view in problem.model.layout])
    return loss, dtheta, dz0, A


@pytest.fixture(scope="module")
def exact():
    problem = linear_problem()
    return problem, closed_form(problem)


def growth(A, t1):
    """Bound on how much an error made early grows by t1: e^{μ(A) t1}, μ the logarithmic 2-norm."""
    mu = float(np.max(np.linalg.eigvalsh(0.5 * (A + A.T))))
    return max(1.0, float(np.exp(mu * t1)))


ENGINES = {
    "BacksolveAdjoint": BacksolveAdjoint(),
    "InterpolatingAdjoint": InterpolatingAdjoint(),
    "InterpolatingAdjoint(checkpointing)": InterpolatingAdjoint(checkpointing=True, n_checkpoints=3),
    "QuadratureAdjoint": QuadratureAdjoint(),
    "ForwardSensitivity": ForwardSensitivity(),
}


@pytest.mark.parametrize("solver", ["DP5", "RadauIIA5"])
@pytest.mark.parametrize("name", list(ENGINES))
def test_engine_matches_closed_form(exact, name, solver):
    """Bound: 100 · tol · growth. Each solve's global error is a modest multiple of tol (< 50 tol on
    linear problems, test_solvers.py); the adjoint (or the sensitivity equations) adds a second
    solve of the same accuracy, and an error made early is amplified by at most e^{μ(A) t1}. An
    O(1) mistake (a jump, a sign, a VJP) is caught by many orders of magnitude."""
    problem, (loss, dtheta, dz0, A) = exact
    result = gradient(problem, engine=ENGINES[name], solver=solver, rtol=TOL, atol=TOL)
    bound = 100 * TOL * growth(A, problem.t1)
    for label, g, r in (("dL/dθ", result.dtheta, dtheta), ("dL/dz0", result.dz0, dz0)):
        error = np.linalg.norm(g - r) / np.linalg.norm(r)
        assert error <= bound, f"{name} ({solver}) {label}: relative error {error:.2e} vs closed form > {bound:.1e}"
    constant = 0.5 * problem.model.state_dim * np.log(2 * np.pi) * problem.n_datapoints
    assert abs(result.loss - constant - loss) <= bound * loss, f"{name}: loss {result.loss} vs {loss + constant}"


def test_finite_differences_match_closed_form(exact):
    """FiniteDifferences (h = 1e-3 relative, 4-point stencil): truncation O(h⁴) ~ 1e-12 and the
    solver's error divided by h, ~ 100 tol / h = 1e-6 at tol 1e-11 in the worst case (steps that
    change between the perturbed solves); bound 1e-6 · growth."""
    problem, (_, dtheta, dz0, A) = exact
    result = gradient(problem, engine=FiniteDifferences(), solver="DP8", rtol=1e-11, atol=1e-11)
    bound = 1e-6 * growth(A, problem.t1)
    assert np.linalg.norm(result.dtheta - dtheta) / np.linalg.norm(dtheta) <= bound
    assert np.linalg.norm(result.dz0 - dz0) / np.linalg.norm(dz0) <= bound


def test_closed_form_reference_is_itself_right(exact):
    """The reference checked against a central difference of its own closed-form loss (no solver):
    step 1e-6 gives truncation ~1e-12 and rounding ~1e-16/1e-6 = 1e-10 relative; bound 1e-7."""
    problem, (_, dtheta, _, _) = exact
    h = 1e-6
    fd = np.empty_like(dtheta)
    for i in range(dtheta.size):
        plus, minus = problem.theta.copy(), problem.theta.copy()
        plus[i] += h
        minus[i] -= h
        fd[i] = (closed_form(problem.with_theta(plus))[0] - closed_form(problem.with_theta(minus))[0]) / (2 * h)
    assert np.linalg.norm(fd - dtheta) / np.linalg.norm(dtheta) <= 1e-7
