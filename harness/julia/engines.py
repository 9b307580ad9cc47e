"""Julia gradient engines as configuration values, usable wherever harness takes an engine.

    harness.sensitivity.gradient(problem, engine=JuliaAdjoint("GaussAdjoint", route="python_vjp"))

Each engine checks its names against the whitelist when it is built (so a bad config fails before
Julia starts) and starts Julia only in `compute`. Results are `GradientResult`s like every other
engine's, so Julia rows line up with the Python ones in gradcheck and bench tables.

Routes (how f's derivatives reach SciMLSensitivity):

- "python_vjp": the model's exact VJPs (`model.vjp`) as the ODEFunction's in-place vjp/vjp_p, with
  `autodiff=false, autojacvec=false`; stiff solvers also get its analytic Jacobian (`model.jac`).
  It calls the model only through f, vjp and jac, so any model of harness's protocol goes through.
- "finite_difference": no derivative code of ours; FiniteDiff Jacobians of the Python f (about
  2n + 2P Python calls per adjoint step): an independent check of "python_vjp". Calls only f.
- "native": harness.model.MLP written in Julia (no other model has a Julia twin: refused in one
  line), differentiated by Zygote (adjoints) or ForwardDiff (forward sensitivities, implicit
  solvers); no Python in the loop. Forward sensitivities and ReverseDiffAdjoint give their implicit
  solvers finite-difference Jacobians (HarnessJL.jl `finite_difference_algorithm` says why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BackendUnavailableError, HarnessInputError, UnstableBacksolveError
from .._forward import SolveOptions
from ..model import MLP
from ..sensitivity import register_engine
from ..sensitivity._result import GradientResult
from ..solvers import SolverStats, check_tolerances
from . import runtime
from .callbacks import PythonDynamics
from .guards import (
    ADVICE,
    check_adjoint_reached_start,
    check_forward_sensitivity_size,
    check_model_for_route,
    check_reconstruction,
)
from .layout import flat_state, loss_gradient_table, states_at_times
from .names import (
    ADJOINT_SENSEALGS,
    DISCRETE_SENSEALGS,
    FORWARD_ROUTES,
    ROUTES,
    check_discrete_solver,
    check_julia_solver,
    check_route,
    check_sensealg,
    check_vjp,
    julia_solver_for,
)
from .results import (
    adjoint_result,
    check_retcode,
    finite_gradient,
    forward_sensitivity_result,
    solver_stats,
)


@dataclass(frozen=True)
class _Settings:
    solver: str
    stiff: bool
    rtol: float
    atol: float


def resolve_settings(engine, options: SolveOptions) -> _Settings:
    """The engine's own solver and tolerances where set, else the caller's (Python solver names
    map to their Julia counterparts, `names.PYTHON_TO_JULIA_SOLVER`)."""
    solver = engine.solver or julia_solver_for(options.solver)
    rtol, atol = check_tolerances(
        engine.rtol if engine.rtol is not None else options.rtol,
        engine.atol if engine.atol is not None else options.atol,
    )
    return _Settings(solver, check_julia_solver(solver).stiff, rtol, atol)


def _check_common(engine) -> None:
    if engine.solver is not None:
        check_julia_solver(engine.solver)
    for label in ("rtol", "atol"):
        value = getattr(engine, label)
        if value is not None:
            check_tolerances(value, value)
    if not (isinstance(engine.maxiters, int) and engine.maxiters >= 1):
        raise HarnessInputError(f"maxiters={engine.maxiters!r}: expected an integer >= 1")


def _native_dynamics(jl, model: MLP, batch: int):
    """The Julia MLP twin of `model` (an autonomous MLP: `guards.check_model_for_route` has refused
    anything else before Julia started)."""
    decay = np.zeros(0) if model.decay is None else np.asarray(model.decay, dtype=np.float64)
    return jl.native_dynamics(np.asarray(model.widths, dtype=np.int64), model.activation, decay, batch)


def _availability() -> tuple[bool, str | None]:
    """Whether Julia engines can run here: the installation, and no failed start in this process (a
    failed start is reported once, by the row that tried, and never retried)."""
    from .environment import julia_status

    if runtime.start_failure() is not None:
        return False, f"Julia failed to start earlier in this process: {runtime.start_failure()}"
    status = julia_status()
    if not status.available:
        return False, status.reason
    try:
        runtime.check_import_order()  # torch first: Julia will not start in this process
    except BackendUnavailableError as error:
        return False, str(error)
    return True, None


@register_engine(backend="julia", uses_harness_solvers=False, availability=_availability)
@dataclass(frozen=True)
class JuliaAdjoint:
    """A SciMLSensitivity adjoint through `adjoint_sensitivities`, with the loss at every
    observation time as `dgdu_discrete`.

    Parameters
    ----------
    sensealg : str
        "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint" or "GaussAdjoint"; on route
        "native" also "ReverseDiffAdjoint" (discretise-then-optimise, harness's
        RecursiveCheckpointAdjoint; unverified: it has not run with Julia here), with explicit and
        Rosenbrock solvers only (`names.check_discrete_solver`).
    route : str
        "python_vjp", "finite_difference" or "native" (module docstring).
    solver : str, optional
        A Julia solver from `names.JULIA_SOLVERS`, used forwards and for the adjoint ODE; default:
        the counterpart of the caller's Python solver.
    rtol, atol : float, optional
        Forward and adjoint tolerances (and QuadratureAdjoint's quadrature's); default the caller's.
    vjp : str, optional
        Julia AD back end on route "native" ("ZygoteVJP", the default there). Refused on the
        Python routes, where Julia AD would silently differentiate nothing.
    maxiters : int
        Step limit of each solve; exceeding it raises SolverError (retcode MaxIters), in the
        backward solve too.
    max_reconstruction_error : float
        BacksolveAdjoint only: the limit, in tolerances, of the error with which z solved backwards
        from the first observation time reconstructs z(t0) (as the Python BacksolveAdjoint's check);
        beyond it `compute` raises UnstableBacksolveError instead of returning the gradient.

    Any error Julia raises while computing (a MethodError, running out of memory, a Python
    exception in a callback) comes out as one BackendError line naming the engine.

    `compute` returns a GradientResult whose backward_stats.n_rhs counts the Python network
    passes (f, VJP or Jacobian) of the backward pass; SciMLSensitivity does not report the
    adjoint solve's own counters (0 on route "native").
    """

    sensealg: str = "GaussAdjoint"
    route: str = "python_vjp"
    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None
    vjp: str | None = None
    maxiters: int = 1_000_000
    max_reconstruction_error: float = 1e4

    def __post_init__(self):
        check_sensealg(self.sensealg, self.route)
        check_vjp(self.vjp, self.sensealg, self.route)
        _check_common(self)
        if self.solver is not None:
            check_discrete_solver(self.sensealg, self.solver)

    @property
    def name(self) -> str:
        return f"Julia {self.sensealg} ({ROUTES[self.route]})"

    def compute(self, problem, theta: np.ndarray, options: SolveOptions) -> GradientResult:
        """dL/dθ (P,) and dL/dz0 (B, N) of `problem` at θ."""
        s = resolve_settings(self, options)
        model, batch, theta = problem.model, problem.batch_size, problem.model.check_theta(theta)
        # refusals first, so that nothing starts Julia for a combination it cannot run
        check_discrete_solver(self.sensealg, s.solver)
        check_model_for_route(model, self.route, stiff=s.stiff, engine=self.name)
        with runtime.julia_errors(self.name):
            jl = runtime.load()
            exact = self.route == "python_vjp"
            dynamics, python = _dynamics(jl, model, batch, self.route, vjp=exact, jac=exact and s.stiff)
            tolerances = dict(abstol=s.atol, reltol=s.rtol, maxiters=self.maxiters)
            sol = jl.forward_solve(dynamics, flat_state(problem.z0), problem.t0, problem.t1, theta, s.solver,
                                   self.sensealg, **tolerances)
            retcode, counts, z_at_times, loss, dL_dz = _observed(jl, sol, jl.states_at(sol, problem.times),
                                                                 problem, s)
            if self.sensealg in DISCRETE_SENSEALGS:
                # the gradient of Julia's own discrete solve, stopped on every observation time
                du0, dp, retcode = jl.discrete_gradient(
                    dynamics, flat_state(problem.z0), problem.t0, problem.times, theta,
                    loss_gradient_table(dL_dz), s.solver, **tolerances)
                dtheta, dz0 = adjoint_result(du0, dp, batch, model.n_params)
                return _result(self.name, problem, loss, dtheta, dz0, counts, SolverStats(n_rejected=None),
                               {"solver": s.solver, "retcode": str(retcode)})
            if self.sensealg == "BacksolveAdjoint":
                self._check_backwards_reconstruction(jl, dynamics, problem, theta, z_at_times, s)
            forward_calls = dict(python.calls) if python else {}
            if python:
                python.calls.clear()
            du0, dp, reached_start, earliest = jl.adjoint_gradient(
                sol, dynamics, s.solver, self.sensealg, problem.times, loss_gradient_table(dL_dz),
                **tolerances)
            check_adjoint_reached_start(bool(reached_start), float(earliest), problem.t0, self.name)
            dtheta, dz0 = adjoint_result(du0, dp, batch, model.n_params)
        backward_calls = dict(python.calls) if python else {}
        return _result(self.name, problem, loss, dtheta, dz0, counts,
                       SolverStats(n_rhs=sum(backward_calls.values()), n_rejected=None),
                       {"solver": s.solver, "retcode": str(retcode), "python_calls_forward": forward_calls,
                        "python_calls_backward": backward_calls})

    def _check_backwards_reconstruction(self, jl, dynamics, problem, theta, z_at_times, s) -> None:
        """Solve z backwards from the first observation time after t0 to t0, with the same solver
        and tolerances, and refuse (UnstableBacksolveError) when it misses z0, as the Python
        BacksolveAdjoint does: Julia's own BacksolveAdjoint would otherwise come out failed or
        beyond its bound on dynamics that are unstable backwards (the stiff variant)."""
        later = [k for k, t in enumerate(problem.times) if t > problem.t0]
        if not later:
            return
        k = later[0]
        back = jl.forward_solve(dynamics, flat_state(z_at_times[k]), float(problem.times[k]), problem.t0,
                                theta, s.solver, "", abstol=s.atol, reltol=s.rtol, maxiters=self.maxiters)
        success, retcode, t_reached, _ = jl.solve_summary(back)
        if not bool(success):
            raise UnstableBacksolveError(
                f"{self.name}: the backward solve of z failed at t = {float(t_reached):.6g} "
                f"(retcode {retcode}); the dynamics are likely unstable backwards in time: {ADVICE}")
        z_back = states_at_times(jl.states_at(back, np.array([float(problem.t0)])), problem.batch_size)[0]
        check_reconstruction(z_back, problem.z0, s.rtol, s.atol, self.max_reconstruction_error, self.name)


@register_engine(backend="julia", uses_harness_solvers=False, availability=_availability)
@dataclass(frozen=True)
class JuliaForwardSensitivity:
    """Reference: SciMLSensitivity's ForwardSensitivity (`ODEForwardSensitivityProblem`).

    z and S = ∂z/∂[θ; z0] are solved forwards together (as w = z - z0 with z0 a parameter, since
    ForwardSensitivity differentiates only with respect to parameters). Routes:
    "python_jacobian" (the model's exact ∂f/∂z, ∂f/∂θ, `model.jac` / `model.jac_theta`, as
    jac/paramjac), "finite_difference" (FiniteDiff of the Python f) or "native" (ForwardDiff through
    the Julia MLP). Implicit solvers differentiate the augmented system by finite differences on
    every route (upstream's ForwardDiff path is broken there, HarnessJL.jl
    `finite_difference_algorithm`). Other fields as `JuliaAdjoint`.

    The augmented system has n (1 + P + n) states and SciMLSensitivity gives it no Jacobian, so
    problems beyond `guards.MAX_IMPLICIT_AUGMENTED_STATES` (implicit solvers) or
    `guards.MAX_EXPLICIT_MULTIPLY_ADDS` per right-hand side (explicit) are refused with a
    RefusedError before Julia starts.
    """

    route: str = "python_jacobian"
    solver: str | None = None
    rtol: float | None = None
    atol: float | None = None
    maxiters: int = 1_000_000

    def __post_init__(self):
        check_route(self.route, FORWARD_ROUTES)
        _check_common(self)

    @property
    def name(self) -> str:
        return f"Julia ForwardSensitivity ({FORWARD_ROUTES[self.route]})"

    def compute(self, problem, theta: np.ndarray, options: SolveOptions) -> GradientResult:
        """dL/dθ (P,) and dL/dz0 (B, N) of `problem` at θ."""
        s = resolve_settings(self, options)
        model, batch, theta = problem.model, problem.batch_size, problem.model.check_theta(theta)
        z0 = flat_state(problem.z0)
        check_model_for_route(model, self.route, stiff=s.stiff, engine=self.name)
        check_forward_sensitivity_size(z0.size, model.n_params, s.stiff, s.solver)
        with runtime.julia_errors(self.name):
            jl = runtime.load()
            exact = self.route == "python_jacobian"
            dynamics, python = _dynamics(jl, model, batch, self.route, jac=exact, paramjac=exact)
            sol = jl.forward_sensitivity_solve(dynamics, z0, problem.t0, problem.t1, theta, s.solver,
                                               abstol=s.atol, reltol=s.rtol, maxiters=self.maxiters)
            retcode, counts, _, loss, dL_dz = _observed(
                jl, sol, jl.sensitivity_states_at(sol, problem.times, z0), problem, s)
            G = loss_gradient_table(dL_dz)
            grad_q = jl.sensitivity_gradient(sol, problem.times, G)
            dtheta, dz0 = forward_sensitivity_result(grad_q, G, batch, model.n_params)
        return _result(self.name, problem, loss, dtheta, dz0, counts, SolverStats(),
                       {"solver": s.solver, "retcode": str(retcode),
                        "python_calls": dict(python.calls) if python else {}})


def _observed(jl, sol, states, problem, s: _Settings):
    """What both engines read from a finished Julia forward solve: (retcode, counts, z at the
    observation times (K, B, N), the loss, dL/dz (K, B, N)); a solve that stopped early raises.
    `states` is the solution's flat states at `problem.times`, however the solve stores them."""
    success, retcode, t_reached, counts = jl.solve_summary(sol)
    check_retcode(bool(success), str(retcode), float(t_reached), problem.t1, s.solver)
    z_at_times = states_at_times(states, problem.batch_size)
    loss, dL_dz = problem.loss_terms(z_at_times)
    return retcode, counts, z_at_times, loss, dL_dz


def _result(name, problem, loss, dtheta, dz0, counts, backward_stats, diagnostics) -> GradientResult:
    """A Julia engine's result, once its gradient is known to be finite."""
    finite_gradient(dtheta, dz0, name)
    return GradientResult(
        engine=name, loss=loss, dtheta=dtheta, dz0=dz0, forward_stats=solver_stats(counts),
        backward_stats=backward_stats, n_datapoints=problem.n_datapoints, diagnostics=diagnostics,
    )


def _dynamics(jl, model, batch: int, route: str, *, vjp=False, jac=False, paramjac=False):
    """(Julia-side dynamics, PythonDynamics or None): the native Julia MLP, or the Python model (any
    model of harness's protocol) with exactly the derivatives asked for (each is left to Julia's
    finite differences otherwise)."""
    if route == "native":
        return _native_dynamics(jl, model, batch), None
    python = PythonDynamics(model, batch)
    dynamics = jl.python_dynamics(
        python.rhs,
        python.vjp if vjp else None,
        python.vjp_p if vjp else None,
        python.jac if jac else None,
        python.paramjac if paramjac else None,
    )
    return dynamics, python


def julia_engines(*, reference: bool = True) -> list:
    """The Julia rows of gradcheck/bench: every adjoint on the exact-VJP and native routes, the
    finite-difference route once (GaussAdjoint, as its independent check), and (reference=True)
    the forward sensitivity reference, which refuses problems too large for it (RefusedError)."""
    engines = [JuliaAdjoint(s, route="python_vjp") for s in ADJOINT_SENSEALGS]
    engines.append(JuliaAdjoint("GaussAdjoint", route="finite_difference"))
    engines += [JuliaAdjoint(s, route="native") for s in ADJOINT_SENSEALGS + DISCRETE_SENSEALGS]
    if reference:
        engines.append(JuliaForwardSensitivity(route="python_jacobian"))
    return engines
