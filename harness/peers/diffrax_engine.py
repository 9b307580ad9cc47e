"""diffrax adapter: the problem file's MLP in JAX (float64), gradients by diffrax's adjoints.

diffrax's vector field is `f(t, y, args)`; ours is f(t, z) with θ fixed, so θ travels as `args`.
The loss's value-and-gradient is jit-compiled once per problem shape and settings and cached, so the
comparison can time a compiled call (`warmup` below): compilation is a one-time cost, not the
gradient's.
"""

from __future__ import annotations

import functools
import math
import os
import time

import numpy as np

# A failed solve (e.g. max_steps reached by a backsolve of stiff dynamics) then returns NaN instead of
# raising through JAX's runtime, which prints a page of traceback to stderr; the NaN is reported as a
# failure below. Read by equinox when it is first imported; a user's own setting wins.
os.environ.setdefault("EQX_ON_ERROR", "nan")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # before any array is made: float64 throughout

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ..problems import load_problem  # noqa: E402
from ..solvers import SolverStats  # noqa: E402
from . import PEER_METHODS  # noqa: E402
from .common import DiffraxEngine, PeerEngine, PeerGradientResult, check_solver, check_supported  # noqa: E402

METHODS = PEER_METHODS["diffrax"]
# Explicit: the same tableaus as ours. Implicit: diffrax has no Radau IIA and no BDF, so each of
# ours maps to the L-stable implicit Runge-Kutta method of diffrax closest in order: RadauIIA5
# (order 5) -> Kvaerno5 (ESDIRK, order 5), BDF (variable order 1-5) -> KenCarp4 (ESDIRK, order 4),
# the latter run fully implicitly (its explicit term is zero).
SOLVERS = {"DP5": "Dopri5", "BS3": "Bosh3", "DP8": "Dopri8", "RadauIIA5": "Kvaerno5", "BDF": "KenCarp4"}
IMEX = {"KenCarp4"}  # solvers whose terms are MultiTerm(explicit, implicit)
MAX_STEPS = 20_000  # diffrax needs a bound; a solve that hits it fails (never truncated). The
# stiff problem with Dopri5 needs ~4000 steps forwards; a backsolve that diverges fails sooner.

_ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "softplus": lambda u: jnp.logaddexp(0.0, u)}


def engine(method: str, *, solver: str, rtol: float, atol: float) -> PeerEngine:
    check_solver("diffrax", solver, SOLVERS)
    return DiffraxEngine("diffrax", method, solver, rtol, atol)


_calls = {"n": 0}


def _count(_):
    _calls["n"] += 1


@functools.lru_cache(maxsize=32)
def _compiled(widths, activation, decay, method, solver, bsolver, counted):
    """(value_and_grad of L, forward-only step counter), compiled for one architecture and solvers.

    Tolerances are traced arguments, not constants, so that a tolerance sweep compiles once.
    With `counted`, a host callback counts f evaluations; it costs a round trip to Python per
    evaluation, so the timed gradient is a second, uncounted compilation.
    """
    sigma = _ACTIVATIONS[activation]
    decay = None if decay is None else jnp.asarray(decay)
    n_layers = len(widths) - 1

    def field(t, z, params):
        if counted:
            # counts real f evaluations at run time, inside jit and the adjoint alike
            jax.debug.callback(_count, t)
        x = z
        for layer in range(n_layers - 1):
            W, b = params[2 * layer], params[2 * layer + 1]
            x = sigma(x @ W.T + b)
        W, b = params[-2], params[-1]
        out = x @ W.T + b
        return out if decay is None else out - decay * z

    def controller(r, a):
        return diffrax.PIDController(rtol=r, atol=a)

    def terms(name):
        if name not in IMEX:
            return diffrax.ODETerm(field)
        # fully implicit, nothing in the explicit part, as our BDF treats all of f. (The split with
        # the network explicit and -Λz implicit returned NaN on the stiff problem.)
        return diffrax.MultiTerm(diffrax.ODETerm(lambda t, z, params: jnp.zeros_like(z)), diffrax.ODETerm(field))

    def solve(params, z0, t0, times, tols):
        rtol, atol, brtol, batol = tols
        if method == "BacksolveAdjoint":
            adjoint = diffrax.BacksolveAdjoint(
                solver=getattr(diffrax, bsolver)(), stepsize_controller=controller(brtol, batol)
            )
        else:
            adjoint = diffrax.RecursiveCheckpointAdjoint()
        return diffrax.diffeqsolve(
            terms(solver), getattr(diffrax, solver)(), t0=t0, t1=times[-1], dt0=None, y0=z0,
            args=params, saveat=diffrax.SaveAt(ts=times), stepsize_controller=controller(rtol, atol),
            adjoint=adjoint, max_steps=MAX_STEPS,
        )

    def loss(params, z0, t0, times, tols, data):
        z = solve(params, z0, t0, times, tols).ys  # (K, B, N)
        n = z0.shape[1]
        return 0.5 * jnp.sum((z - data) ** 2) + 0.5 * n * math.log(2 * math.pi) * data.shape[0] * data.shape[1]

    def steps(params, z0, t0, times, tols):
        stats = solve(params, z0, t0, times, tols).stats
        return stats["num_accepted_steps"], stats["num_rejected_steps"]

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), jax.jit(steps)


def gradient_from_file(path, *, method: str = "BacksolveAdjoint", solver: str = "DP5",
                       rtol: float = 1e-6, atol: float = 1e-6, backward_solver: str | None = None,
                       backward_rtol: float | None = None, backward_atol: float | None = None,
                       timed: bool = True):
    """dL/dθ (P,) and dL/dz0 (B, N) of the problem file at `path`, by diffrax.

    `timed=False` returns the gradient of the counted call and `seconds` NaN: the timed call is a
    second compilation (it has no evaluation counter), half the cost of a first gradient."""
    if method not in METHODS:
        raise ValueError(f"unknown diffrax method {method!r}: expected one of {METHODS}")
    problem = load_problem(path)
    check_supported(problem, f"diffrax:{method}")
    model = problem.model
    weights = model.unflatten(problem.theta)
    params = tuple(jnp.asarray(weights[n]) for n in model.parameter_names)
    decay = None if model.decay is None else tuple(float(d) for d in model.decay)
    compile_args = (
        model.widths, model.activation, decay, method, check_solver("diffrax", solver, SOLVERS),
        check_solver("diffrax", backward_solver or solver, SOLVERS),
    )
    counted_value_and_grad, steps = _compiled(*compile_args, True)
    tols = jnp.asarray([rtol, atol, backward_rtol or rtol, backward_atol or atol])
    args = (params, jnp.asarray(problem.z0), jnp.asarray(problem.t0), jnp.asarray(problem.times), tols)
    data = jnp.asarray(problem.data)
    before = _calls["n"]
    accepted, rejected = jax.block_until_ready(steps(*args))
    n_forward = _calls["n"] - before
    before = _calls["n"]
    loss, (dparams, dz0) = jax.block_until_ready(counted_value_and_grad(*args, data))
    n_total = _calls["n"] - before
    seconds = float("nan")
    if timed:
        value_and_grad = _compiled(*compile_args, False)[0]
        jax.block_until_ready(value_and_grad(*args, data))  # compiles on first use: not timed
        start = time.perf_counter()
        loss, (dparams, dz0) = jax.block_until_ready(value_and_grad(*args, data))
        seconds = time.perf_counter() - start
    if not np.isfinite(float(loss)):
        raise FloatingPointError(f"diffrax {method} returned a non-finite loss {float(loss)}")
    return PeerGradientResult(
        engine=f"diffrax:{method}",
        loss=float(loss),
        dtheta=np.concatenate([np.asarray(d).reshape(-1) for d in dparams]),
        dz0=np.array(dz0),
        forward_stats=SolverStats(n_rhs=n_forward, n_accepted=int(accepted), n_rejected=int(rejected)),
        # The gradient call repeats the forward solve: what it adds beyond it is the backward pass.
        backward_stats=SolverStats(n_rhs=max(0, n_total - n_forward), n_accepted=0, n_rejected=None),
        n_datapoints=problem.n_datapoints,
        seconds=seconds,
        diagnostics={"backend": "diffrax", "jax": jax.__version__},
    )
