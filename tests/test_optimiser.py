"""Adam (harness.training.Adam) against updates derived by hand from Kingma & Ba's formulas.

The expected numbers below are worked out from the algorithm, not from the implementation:

    m_t = β1 m_{t-1} + (1 - β1) g_t          m̂_t = m_t / (1 - β1^t)
    v_t = β2 v_{t-1} + (1 - β2) g_t²         v̂_t = v_t / (1 - β2^t)
    θ_t = θ_{t-1} - lr m̂_t / (√v̂_t + ε)

On the quadratic L(θ) = ½ Σ c_i θ_i², g = c θ. At t = 1 the bias correction makes m̂ = g and v̂ = g²
exactly, so the first step is lr g / (|g| + ε) = lr sign(g) |g| / (|g| + ε): a step of almost exactly
lr whatever the gradient's scale, which is Adam's defining property and what an implementation that
forgets a correction or the square root gets wrong. Steps 2 and 3 are written out term by term.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.training import Adam

TUTORIAL_EPS = 1e-7  # TensorFlow's Adam default, the tutorial's optimiser
KINGMA_EPS = 1e-8  # the paper's (and PyTorch's) default
CURVATURE = np.array([1.0, 10.0, 0.01])  # L = ½ Σ c θ²; scales 1, 10 and 0.01 apart
THETA0 = np.array([1.0, -2.0, 3.0])


def hand_derived_three_steps(lr, beta1, beta2, eps):
    """θ after each of Adam's first three steps on the quadratic, written out without a loop."""
    c = CURVATURE
    theta0 = THETA0.copy()
    g1 = c * theta0
    # t = 1: m̂1 = g1, v̂1 = g1² (the corrections divide out the (1 - β) factors exactly)
    theta1 = theta0 - lr * g1 / (np.abs(g1) + eps)
    g2 = c * theta1
    m2 = beta1 * (1 - beta1) * g1 + (1 - beta1) * g2
    v2 = beta2 * (1 - beta2) * g1**2 + (1 - beta2) * g2**2
    theta2 = theta1 - lr * (m2 / (1 - beta1**2)) / (np.sqrt(v2 / (1 - beta2**2)) + eps)
    g3 = c * theta2
    m3 = beta1 * m2 + (1 - beta1) * g3
    v3 = beta2 * v2 + (1 - beta2) * g3**2
    theta3 = theta2 - lr * (m3 / (1 - beta1**3)) / (np.sqrt(v3 / (1 - beta2**3)) + eps)
    return [theta1, theta2, theta3]


def run_adam(adam, steps):
    theta, path = THETA0.copy(), []
    for _ in range(steps):
        theta = adam.step(theta, CURVATURE * theta)
        path.append(theta.copy())
    return path


def test_default_epsilon_is_the_tutorials():
    assert Adam().eps == TUTORIAL_EPS
    assert (Adam().beta1, Adam().beta2) == (0.9, 0.999)


@pytest.mark.parametrize("eps", [TUTORIAL_EPS, KINGMA_EPS])
@pytest.mark.parametrize("lr", [1e-2, 0.3])
def test_first_three_steps_match_hand_derivation(lr, eps):
    expected = hand_derived_three_steps(lr, 0.9, 0.999, eps)
    got = run_adam(Adam(lr=lr, eps=eps), 3)
    for step, (g, e) in enumerate(zip(got, expected), start=1):
        # The same float64 formulas in a different order: a few ulps of |θ| ~ 3, so 1e-14 absolute.
        # A missing bias correction changes step 1 by a factor (1 - β1) = 0.1 or √(1 - β2) ~ 0.03,
        # a missing square root by orders of magnitude: both far outside.
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-14,
                                   err_msg=f"Adam step {step} (lr={lr}, eps={eps}) differs from the "
                                           "hand-derived update: check the bias corrections and √v̂")


def test_first_step_has_length_lr_whatever_the_gradient_scale():
    """The bias corrections make m̂1/√v̂1 = sign(g): each coordinate moves by lr·|g|/(|g| + ε).

    Without the m̂ correction the step is (1 - β1) lr = 0.1 lr; without the v̂ correction it is
    lr √(1 - β2) ~ 0.03 lr; without the square root it is lr/|g|, which depends on the scale.
    """
    lr = 1e-2
    adam = Adam(lr=lr)
    theta1 = adam.step(THETA0.copy(), CURVATURE * THETA0)
    g = np.abs(CURVATURE * THETA0)
    expected_length = lr * g / (g + TUTORIAL_EPS)
    np.testing.assert_allclose(np.abs(theta1 - THETA0), expected_length, rtol=1e-12,
                               err_msg="Adam's first step is not lr per coordinate: a bias correction "
                                       "(m̂ or v̂) or the square root on v̂ is wrong")


def test_epsilon_matters_only_for_tiny_gradients():
    """|g| = 1e-7 (= ε): the first step is lr·|g|/(|g| + ε) = lr/2 with ε = 1e-7, and ≈ lr/1.1
    with ε = 1e-8. Shows ε enters as √v̂ + ε (outside the root), as in the paper and in TensorFlow."""
    g = np.array([1e-7])
    half = Adam(lr=1.0, eps=1e-7).step(np.zeros(1), g)
    near_full = Adam(lr=1.0, eps=1e-8).step(np.zeros(1), g)
    np.testing.assert_allclose(-half, [0.5], rtol=1e-9)
    np.testing.assert_allclose(-near_full, [1 / 1.1], rtol=1e-9)


def test_moments_and_counter_are_kept_between_steps():
    adam = Adam(lr=1e-2)
    run_adam(adam, 3)
    assert adam.t == 3
    g1 = CURVATURE * THETA0
    # m after three steps is a (1 - β1)-weighted sum of the three gradients; check the first term's
    # weight through a fresh optimiser fed the same first gradient only.
    fresh = Adam(lr=1e-2)
    fresh.step(THETA0.copy(), g1)
    np.testing.assert_allclose(fresh.m, 0.1 * g1, rtol=1e-15)
    np.testing.assert_allclose(fresh.v, 0.001 * g1**2, rtol=1e-15)


def test_converges_on_a_convex_problem_at_adams_rate():
    """On L = ½ Σ c θ² far from the minimum Adam's update m̂/√v̂ is ≈ sign(g): each coordinate moves
    by ≈ lr per step, whatever its curvature c (1, 10 and 0.01 here, gradients 10 to 300 apart).
    From θ0 = (10, -20, 30), 100 steps of lr = 0.01 move each coordinate by 1, which changes |g| by
    at most 10%; since v̂ averages g² over the past, m̂/√v̂ lies between 0.9 and 1, so the distance
    moved is within [0.9, 1] x 100 lr (a plain gradient step would move the three by factors 1000
    apart). Then, from THETA0, 3000 steps bring L below 1e-4 of its start: with steps ≈ lr the
    coordinates (|θ| ≤ 3) arrive within 300 steps and the shrinking m̂ settles them within O(lr).
    """
    lr = 0.01
    far = np.array([10.0, -20.0, 30.0])
    adam, theta = Adam(lr=lr), far.copy()
    for _ in range(100):
        theta = adam.step(theta, CURVATURE * theta)
    moved = (np.abs(far) - np.abs(theta)) / (100 * lr)
    assert np.all((moved >= 0.9) & (moved <= 1.0 + 1e-9)), (
        f"Adam's steps far from the minimum are not ~lr long on every coordinate (moved {moved} x 100 lr): "
        "its normalisation m̂/√v̂ or a bias correction is wrong")
    adam, theta = Adam(lr=lr), THETA0.copy()
    for _ in range(3000):
        theta = adam.step(theta, CURVATURE * theta)
    loss0 = 0.5 * np.sum(CURVATURE * THETA0**2)
    loss = 0.5 * np.sum(CURVATURE * theta**2)
    assert loss <= 1e-4 * loss0, f"Adam did not converge on a convex quadratic: L = {loss:.3e}"
