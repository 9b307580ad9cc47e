"""The catalogue of built-in problems: the tutorial's and its variants.

Each builder draws a ground-truth model and initial states from `seed`, generates the data by solving
the ground truth with the given forward settings (as the tutorial does, so that the ground truth scores
exactly the perfect log-likelihood), and draws the model to be trained from `seed + 1`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import HarnessInputError
from .._forward import SolveOptions
from ..model import MLP
from ..solvers import solver_for
from ._ground_truth import solve_ground_truth
from ._problem import Problem
from . import _lynx_hare

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
    augment: int = 0,
) -> Problem:
    """Ground truth from `seed`, z0 ~ U[-box, box]^N (B rows), data = ground truth at `times`.

    With `augment = A`, `model` maps N + A to N + A: the ground truth is that augmented model, its
    initial states are [z0, 0], and the data are its first N components.
    """
    if batch < 1:
        raise HarnessInputError(f"batch={batch}: expected an integer >= 1")
    _check_memory(batch, model.state_dim, len(times))
    if isinstance(augment, bool) or not isinstance(augment, (int, np.integer)) or not 0 <= augment < model.state_dim:
        raise HarnessInputError(f"augment={augment!r}: expected an integer from 0 to {model.state_dim - 1}")
    n = model.state_dim - augment
    rng = np.random.default_rng(seed)
    theta_true = model.init(rng)
    z0 = np.zeros((batch, model.state_dim))
    z0[:, :n] = rng.uniform(-box, box, size=(batch, n))
    times = np.asarray(times, dtype=np.float64)
    truth = solve_ground_truth(model, theta_true, z0, t0, times, data_options)
    theta = model.init(np.random.default_rng(seed + 1))
    return Problem(model, theta, z0, t0, times, truth[..., :n], name, theta_true=theta_true,
                   augment=augment)


def augment_problem(problem: Problem, augment: int, *, seed: int = 0) -> Problem:
    """The same data fitted by an augmented Neural ODE: A zero-started dimensions appended.

    The model keeps its hidden widths, activation and time dependence and maps N + A to N + A (Λ,
    if any, is extended by zeros: the augmented dimensions do not decay); θ is drawn afresh from
    `seed` (the plain model's θ has another shape); the ground truth, if any, is dropped (it is not an
    augmented model). `augment = 0` returns `problem` itself.
    """
    if isinstance(augment, bool) or not isinstance(augment, (int, np.integer)) or augment < 0:
        raise HarnessInputError(f"augment={augment!r}: expected an integer >= 0")
    if augment == 0:
        return problem
    if problem.augment:
        raise HarnessInputError(
            f"problem {problem.name!r} is already augmented by {problem.augment}: augment a plain problem"
        )
    old, n = problem.model, problem.observed_dim
    if type(old) is not MLP:
        raise HarnessInputError(
            f"augment={augment}: augmenting needs an MLP (its widths grow by A), and {problem.name!r} has "
            f"{old.describe()}"
        )
    decay = None if old.decay is None else np.concatenate((old.decay, np.zeros(augment)))
    model = MLP((n + augment, *old.widths[1:-1], n + augment), old.activation, decay, old.time_dependent)
    theta = model.init(np.random.default_rng(seed))
    return Problem(model, theta, problem.observed_z0, problem.t0, problem.times, problem.data,
                   f"{problem.name}_augmented{augment}", augment=augment, mask=problem.mask)


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


def augmented_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """An augmented Neural ODE: MLP 3-3-3 tanh on [z, 0] with z in [-10, 10]², data its first two
    components at t1 = 10 (the ground truth is itself augmented, so a perfect fit exists)."""
    return make_problem(MLP((3, 3, 3)), seed=seed, batch=batch, data_options=data_options,
                        name="augmented", augment=1)


def time_dependent_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """A time-dependent field f(z, t) = MLP([z, t]), MLP 2-3-2 tanh (W1 is 3 x 3), observed at
    t = 2.5, 5, 7.5, 10."""
    return make_problem(
        MLP((2, 3, 2), time_dependent=True), seed=seed, batch=batch, times=(2.5, 5.0, 7.5, 10.0),
        data_options=data_options, name="time_dependent",
    )


def irregular_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """The multi-time problem with each state observed at its own subset of t = 2.5, 5, 7.5, 10:
    every (time, state) pair kept with probability 1/2 (drawn from `seed`), at least one per state."""
    problem = multi_time_problem(seed=seed, batch=batch, data_options=data_options)
    rng = np.random.default_rng([seed, 17])
    mask = rng.random(problem.data.shape[:2]) < 0.5
    unobserved = ~mask.any(axis=0)
    mask[rng.integers(0, mask.shape[0], size=batch)[unobserved], np.flatnonzero(unobserved)] = True
    return replace(problem, mask=mask, name="irregular")


def reflection_problem(seed: int = 0, batch: int = 100, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """Dupont et al.'s 1-D task: learn g(x) = -x, x ~ U[-1, 1], as the flow of an ODE to t = 1.

    An ODE's flow in one dimension preserves order (trajectories cannot cross), so no plain Neural ODE
    represents g; one augmented dimension (`augment_problem(problem, 1)`) can. MLP 1-16-1 tanh; no
    ground truth (g is no ODE flow). `data_options` is unused: the data are exact.
    """
    model = MLP((1, 16, 1))
    z0 = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(batch, 1))
    theta = model.init(np.random.default_rng(seed + 1))
    return Problem(model, theta, z0, 0.0, np.array([1.0]), -z0[None], "reflection")


def annuli_problem(seed: int = 0, batch: int = 100, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """Dupont et al.'s concentric annuli in 2-D, as a map: half the states in the disk r < 0.5, half
    in the annulus 1 < r < 1.5 (radius and angle uniform), to be sent to 4 x (the disk outwards, to
    r < 2) and x / 4 (the annulus inwards, to r < 0.375) at t = 1.

    No homeomorphism of the plane swaps a disk and an annulus around it (the annulus separates the
    disk from infinity before and after), so no plain Neural ODE fits the whole sets; finitely many
    sampled states leave gaps that a flow can squeeze through, at the price of contorted paths. One
    augmented dimension lifts the disk over the annulus. MLP 2-32-2 tanh; no ground truth.
    """
    rng = np.random.default_rng(seed)
    inner = np.arange(batch) < batch // 2
    r = np.where(inner, rng.uniform(0.0, 0.5, batch), rng.uniform(1.0, 1.5, batch))
    phi = rng.uniform(0.0, 2 * np.pi, batch)
    z0 = np.stack((r * np.cos(phi), r * np.sin(phi)), axis=1)
    data = np.where(inner[:, None], 4.0 * z0, 0.25 * z0)
    model = MLP((2, 32, 2))
    theta = model.init(np.random.default_rng(seed + 1))
    return Problem(model, theta, z0, 0.0, np.array([1.0]), data[None], "annuli")


def _positive_problem(model, name: str, seed: int, batch: int, data_options, times=(2.5, 5.0, 7.5, 10.0)) -> Problem:
    """Ground truth θ from `model.init(seed)`, z0 ~ U[0.5, 2]² (populations are positive), data the
    ground truth at `times`; θ to fit from `model.init(seed + 1)`."""
    if batch < 1:
        raise HarnessInputError(f"batch={batch}: expected an integer >= 1")
    _check_memory(batch, model.state_dim, len(times))
    rng = np.random.default_rng(seed)
    theta_true = model.init(rng)
    z0 = rng.uniform(0.5, 2.0, size=(batch, model.state_dim))
    times = np.asarray(times, dtype=np.float64)
    truth = solve_ground_truth(model, theta_true, z0, 0.0, times, data_options)
    theta = model.init(np.random.default_rng(seed + 1))
    return Problem(model, theta, z0, 0.0, times, truth, name, theta_true=theta_true)


def lotka_volterra_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """Lotka-Volterra, θ = (α, β, γ, δ) near (1, 0.5, 1, 0.5) (10 % spread), z0 ~ U[0.5, 2]², observed
    at t = 2.5, 5, 7.5, 10 (about one and a half cycles); a parametric model, P = 4."""
    from ..models import LotkaVolterra

    return _positive_problem(LotkaVolterra(), "lotka_volterra", seed, batch, data_options)


def ude_problem(seed: int = 0, batch: int = 500, data_options=TUTORIAL_DATA_OPTIONS) -> Problem:
    """The predator-prey UDE: growth α x, -γ y plus an MLP 2-8-2 tanh (last layer scaled by 0.1 at
    init), θ = [α, γ, mlp.W1, mlp.b1, mlp.W2, mlp.b2], P = 44; z0 ~ U[0.5, 2]², t = 1, 2, 3, 4. A
    random network does not hold the prey's growth e^{αt} back as predation would, so the horizon is
    shorter than Lotka-Volterra's: over t = 10 the prey grow ~e^10-fold and dL/dθ reaches ~1e10."""
    from ..models import predator_prey_ude

    return _positive_problem(predator_prey_ude(hidden=8), "ude", seed, batch, data_options,
                             times=(1.0, 2.0, 3.0, 4.0))


PROBLEMS = {
    "seed": seed_problem,
    "stiff": stiff_problem,
    "multi_time": multi_time_problem,
    "deep": deep_problem,
    "augmented": augmented_problem,
    "time_dependent": time_dependent_problem,
    "irregular": irregular_problem,
    "reflection": reflection_problem,
    "annuli": annuli_problem,
    "lotka_volterra": lotka_volterra_problem,
    "ude": ude_problem,
    "lynx_hare": _lynx_hare.lynx_hare_problem,
}


def build_problem(name: str, *, augment: int = 0, **kwargs) -> Problem:
    """A catalogue problem by name, or a HarnessInputError listing the names.

    `augment = A` fits the same data with A augmented dimensions (`augment_problem`, θ drawn from
    seed + 1).
    """
    if name not in PROBLEMS:
        raise HarnessInputError(f"unknown problem {name!r}: expected one of {sorted(PROBLEMS)}")
    problem = PROBLEMS[name](**kwargs)
    return augment_problem(problem, augment, seed=kwargs.get("seed", 0) + 1)
