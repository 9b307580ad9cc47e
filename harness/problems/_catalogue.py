"""The catalogue of built-in problems: the tutorial's and its variants.

Each builder draws a ground-truth model and initial states from `seed`, generates the data by solving
the ground truth with the given forward settings (as the tutorial does, so that the ground truth scores
exactly the perfect log-likelihood), and draws the model to be trained from `seed + 1`.
"""

from __future__ import annotations

import numpy as np

from ..errors import HarnessInputError
from .._forward import SolveOptions, solve_forward
from ..model import MLP
from ..solvers import solver_for
from ._problem import Problem

# The tutorial's settings.
TUTORIAL_DATA_OPTIONS = SolveOptions("DP5", rtol=1e-6, atol=1e-4)  # vode's default rtol, its atol
STIFF_DECAY = (1.0, 1000.0)


# Float64 arrays of one initial state's size that a gradient holds at once, at least: z0, the data
# at each time, the state, the 7 stages and error estimate of DP5, and as many for the adjoint.
ARRAYS_PER_STATE = 20


def _check_memory(batch: int, state_dim: int, n_times: int) -> None:
    """Refuse, before allocating, a batch whose arrays cannot fit in the memory available."""
    import psutil

    needed = 8 * batch * state_dim * (ARRAYS_PER_STATE + n_times)
    available = psutil.virtual_memory().available
    if needed > available:
        raise HarnessInputError(
            f"batch={batch}: needs at least {needed / 2**30:.3g} GiB of memory ({ARRAYS_PER_STATE + n_times} "
            f"float64 arrays of {batch} x {state_dim}), and {available / 2**30:.3g} GiB are available: "
            "expected a smaller batch"
        )


def make_problem(
    model: MLP,
    *,
    seed: int = 0,
    batch: int = 500,
    t0: float = 0.0,
    times=(10.0,),
    box: float = 10.0,
    data_options: SolveOptions = TUTORIAL_DATA_OPTIONS,
    name: str = "problem",
) -> Problem:
    """Ground truth from `seed`, z0 ~ U[-box, box]^N (B rows), data = ground truth at `times`."""
    if batch < 1:
        raise HarnessInputError(f"batch={batch}: expected an integer >= 1")
    _check_memory(batch, model.state_dim, len(times))
    rng = np.random.default_rng(seed)
    theta_true = model.init(rng)
    z0 = rng.uniform(-box, box, size=(batch, model.state_dim))
    times = np.asarray(times, dtype=np.float64)
    truth = solve_forward(model, theta_true, z0, t0, times, data_options)
    theta = model.init(np.random.default_rng(seed + 1))
    return Problem(model, theta, z0, t0, times, truth.z_at_times, name, theta_true=theta_true)


def seed_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """The tutorial's problem: MLP 2-3-2 tanh, 500 states on [-10, 10]², data at t1 = 10."""
    return make_problem(MLP((2, 3, 2)), seed=seed, batch=batch, data_options=data_options, name="seed")


def stiff_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """The stiff variant: f = -Λ z + MLP(z), Λ = diag(1, 1000); otherwise the seed problem."""
    model = MLP((2, 3, 2), decay=np.array(STIFF_DECAY))
    solver = solver_for(model, data_options.solver).name
    data_options = SolveOptions(solver, data_options.rtol, data_options.atol)
    return make_problem(model, seed=seed, batch=batch, data_options=data_options, name="stiff")


def multi_time_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """The seed problem observed at t = 2.5, 5, 7.5, 10 (the adjoint jumps at each)."""
    return make_problem(
        MLP((2, 3, 2)), seed=seed, batch=batch, times=(2.5, 5.0, 7.5, 10.0),
        data_options=data_options, name="multi_time",
    )


def deep_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """Two hidden layers: MLP 2-8-8-2 tanh; otherwise the seed problem."""
    return make_problem(MLP((2, 8, 8, 2)), seed=seed, batch=batch, data_options=data_options, name="deep")


PROBLEMS = {
    "seed": seed_problem,
    "stiff": stiff_problem,
    "multi_time": multi_time_problem,
    "deep": deep_problem,
}


def build_problem(name: str, **kwargs) -> Problem:
    """A catalogue problem by name, or a HarnessInputError listing the names."""
    if name not in PROBLEMS:
        raise HarnessInputError(f"unknown problem {name!r}: expected one of {sorted(PROBLEMS)}")
    return PROBLEMS[name](**kwargs)
