"""The tutorial's own problem, number for number: its TensorFlow weights, its z0, its horizon.

`tutorial_exact_problem()` is what `harness reproduce --preset tutorial-exact` trains. It differs from
the seed problem (`seed_problem`, numpy's draws, t1 = 10) in three ways, each taken from the tutorial:

- the ground truth and the initial model are the weights TensorFlow drew for the tutorial
  (`_tutorial_draws`), mapped to the harness's θ layout by `theta_from_tutorial`;
- z0 = 20 (U - 0.5) with U numpy's first 1000 legacy uniforms after `np.random.seed(0)`, as 500
  states of 2 (the tutorial's `z0`; TensorFlow's draws do not consume numpy's generator);
- the horizon is `tutorial_horizon()` = 10.2, not 10 (see there).

The data are the ground truth's states at that horizon from a tight float64 solve (DP8, rtol = atol
= 1e-10): the flow of the ground truth itself. The tutorial's own data carry vode's error at
atol 1e-4 (about 5e-4 per state) and float32 rounding of f (about 1e-5), which no other solver
reproduces; the tight solve is the definition any run can reproduce (vode's float32 data would move
the step-0 value by 4e-4).

The optimiser is the harness's Adam (lr 1e-2, ε 1e-7, Keras's defaults). Keras adds ε to √v before
the bias correction (the ε̂ of Kingma and Ba), the harness to √v̂; with gradients summed over 500
states (|g| ≫ 1e-7) the two give the same table to four decimals, so nothing here changes Adam.
"""

from __future__ import annotations

import numpy as np

from .._forward import SolveOptions
from ..model import MLP
from ._ground_truth import solve_ground_truth
from ._problem import Problem
from ._tutorial_draws import tutorial_weights

# The tutorial's integration settings: t0 = 0, t1 = 10, num_steps = 50, 500 datapoints of 2 states.
TUTORIAL_T1 = 10.0
TUTORIAL_NUM_STEPS = 50
TUTORIAL_BATCH = 500
# A tight float64 solve of the ground truth for the data (see the module docstring).
EXACT_DATA_OPTIONS = SolveOptions("DP8", rtol=1e-10, atol=1e-10)


def tutorial_horizon(t1: float = TUTORIAL_T1, num_steps: int = TUTORIAL_NUM_STEPS) -> float:
    """The time at which the tutorial's solve loop returns its states.

    The loop calls `ode.integrate(ode.t + dt)` with dt = t1 / num_steps and returns once
    `ode.t > t1`; fifty sums of 0.2 give 9.999999999999996, just below 10, so it takes a 51st step
    and returns the states at 10.199999999999996. (Its backward loop likewise runs from 10 to -0.2;
    the dynamics do not depend on t, so that is the same as 10.2 to 0.)
    """
    dt = t1 / num_steps
    t = 0.0
    while True:
        t = t + dt  # the same float additions as ode.t + dt
        if t > t1:
            return t


def theta_from_tutorial(weights: dict[str, np.ndarray]) -> np.ndarray:
    """The tutorial's row-vector weights as the harness's θ for `MLP((2, 3, 2))`.

    The tutorial computes f(z) = tanh(z W1 + b1) W2 + b2 on row vectors z (1, 2), with W1 (2, 3) and
    W2 (3, 2); the harness computes f(z) = W2' tanh(W1' z + b1) + b2 on column vectors, with
    W1' (3, 2) and W2' (2, 3) row-major in θ. So W1' = W1ᵀ, W2' = W2ᵀ, and the biases are flattened.

    Returns
    -------
    ndarray, shape (17,), float64 (the float32 values, exactly)
    """
    w = {name: np.asarray(value, dtype=np.float64) for name, value in weights.items()}
    return np.concatenate([w["W1"].T.ravel(), w["b1"].ravel(), w["W2"].T.ravel(), w["b2"].ravel()])


def tutorial_z0() -> np.ndarray:
    """The tutorial's initial states: `20 * (np.random.uniform(size=1000) - 0.5)` after seed 0.

    Returns
    -------
    ndarray, shape (500, 2)
    """
    uniforms = np.random.RandomState(0).uniform(size=TUTORIAL_BATCH * 2)  # the legacy generator
    return (20 * (uniforms - 0.5)).reshape(TUTORIAL_BATCH, 2)


def tutorial_exact_problem(data_options: SolveOptions = EXACT_DATA_OPTIONS) -> Problem:
    """The tutorial's problem with its own draws, z0 and horizon (see the module docstring)."""
    model = MLP((2, 3, 2))
    theta_true = theta_from_tutorial(tutorial_weights("ground_truth"))
    theta_init = theta_from_tutorial(tutorial_weights("learnt_init"))
    z0 = tutorial_z0()
    times = np.array([tutorial_horizon()])
    data = solve_ground_truth(model, theta_true, z0, 0.0, times, data_options)
    return Problem(model, theta_init, z0, 0.0, times, data, "tutorial-exact", theta_true=theta_true)


# What the tutorial-exact report says under its table.
EXACT_NOTE = (
    "Both columns start from the same numbers: the weights TensorFlow drew for the tutorial (float32, "
    "stored exactly in the package), numpy's z0 and the tutorial's horizon t = 10.2 (its loop of 50 "
    "steps of 0.2 lands just below 10 and takes a 51st). What still differs is the arithmetic: the "
    "tutorial evaluates f in float32 and integrates with scipy's vode (Adams) at atol 1e-4, rtol 1e-6; "
    "the harness works in float64 with DP8 at the same tolerances and BacksolveAdjoint, and makes its "
    "data with a tight solve (rtol = atol = 1e-10). The published values are rounded to 3 decimals."
)


def exact_table(history: list[dict], reference: dict[int, float]) -> list[str]:
    """Markdown rows: step, the harness's log-likelihood per datapoint, the tutorial's, and harness - tutorial."""
    lines = ["| step | harness | tutorial | difference |", "|---:|---:|---:|---:|"]
    for record in history:
        ours, theirs = record["loglik_per_datapoint"], reference.get(record["step"])
        tail = "| |" if theirs is None else f"{theirs:.3f} | {ours - theirs:+.4f} |"
        lines.append(f"| {record['step']} | {ours:.4f} | {tail}")
    if reference and all(r["step"] in reference for r in history):
        worst = max(abs(r["loglik_per_datapoint"] - reference[r["step"]]) for r in history)
        lines += ["", f"Largest difference: {worst:.4f} (over {len(history)} rows)."]
    return lines
