"""`harness julia selftest`: the first command to run where Julia is installed.

Small problems (B = 8) through every route, sensitivity algorithm and solver family of the Julia
backend, plus one model that is not the MLP through the "python_vjp" route. Each row's dL/dθ *and*
dL/dz0 are compared entry by entry with the pure-Python ForwardSensitivity reference solved at
rtol = atol = 1e-11, under a bound per solver family derived the way the gradient catalogue derives
its own (tests/test_gradients.py, "solver catalogue"; each bound's reason is written beside it in
`FAMILIES`). A Julia error in a row is that row's failure, printed in one line; the rest still run.
Refusals (BacksolveAdjoint on the stiff variant, ReverseDiffAdjoint with a Newton-based solver) are
the specified, safe outcome and pass. A Julia that fails to start stops the run with one line.

`quick=True` (`--quick`) runs one row per family (GaussAdjoint on the "python_vjp" route) and the
non-MLP row. `plan` lists the rows and `expected_seconds` estimates the run time before it starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from .._distances import worst_entry
from ..errors import (
    BackendError,
    BackendUnavailableError,
    RefusedError,
    SolverError,
    UnstableBacksolveError,
)
from ..models import LotkaVolterra
from ..problems import Problem, multi_time_problem, stiff_problem
from ..sensitivity import ForwardSensitivity, declaration_of, gradient
from . import runtime
from .engines import JuliaAdjoint, JuliaForwardSensitivity
from .environment import julia_status
from .names import (
    ADJOINT_SENSEALGS,
    AUTO_SWITCHING,
    BDF,
    DISCRETE_SENSEALGS,
    EXPLICIT,
    FIRK,
    FORWARD_ROUTES,
    ROSENBROCK,
    SDIRK,
    check_julia_solver,
)

BATCH = 8
# The reference: ForwardSensitivity at 1e-11, DP8 (explicit problems) or RadauIIA5 (stiff), as the
# catalogue's solver catalogue. Its own error (<= 100 x 1e-11 by the catalogue's argument) is 1000x
# below the tightest bound here at the default tolerance.
REFERENCE_TOL = 1e-11
DEFAULT_TOL = 1e-8


@dataclass(frozen=True)
class Family:
    """A solver family: its representative Julia solver, the problem it is checked on and its bounds.

    A row passes when, for dL/dθ and for dL/dz0, max_i |g_i - r_i| / max_i |r_i| <= the bound, with
    bound = max(factor * tol, floor) (`dz0_factor` for dL/dz0 on the stiff variant).
    """

    name: str
    solver: str
    problem: str  # "multi_time" or "stiff"
    factor: float
    dz0_factor: float
    floor: float = 0.0

    def bounds(self, tol: float) -> tuple[float, float]:
        """(bound for dL/dθ, bound for dL/dz0) at rtol = atol = tol."""
        return max(self.factor * tol, self.floor), max(self.dz0_factor * tol, self.floor)


# The catalogue's argument (tests/test_gradients.py, FACTOR): an adaptive solve's global error is
# 1-10x its tolerance, the adjoint adds a second solve of the same accuracy, and 10x more leaves room
# for problem-dependent growth: 100 tol; scipy's BDF (variable order from 1) measured 1-30x: 1000 tol.
# dL/dz0 of the stiff variant: the fast mode forgets z0 (e^{-1000 t}), so dL/dz0 is small (~5e-4)
# while the backward solve controls the adjoint's fast component absolutely (atol); the catalogue
# measured 2e-6 (RadauIIA5) and 8e-5 (BDF) of max|dL/dz0| at 1e-8 and allows 10x those, i.e.
# 2e3 tol and 1e5 tol. No Julia ran where these were written: families the catalogue has not
# measured get its loosest stiff dz0 bound (1e5 tol = 1e-3 at 1e-8, still 1000x below an O(1) error).
FAMILIES = (
    # Vern9 is a high-order one-step method as the catalogue's DP8: 100 tol.
    Family(EXPLICIT, "Vern9", "multi_time", factor=100.0, dz0_factor=100.0),
    # Rodas5P: order 5 one-step, 100 tol; but a Rosenbrock method uses J in its formula, and where J
    # comes from finite differences (route finite_difference, every forward sensitivity, the adjoint
    # ODE of Interpolating/Backsolve) its ~1e-8 relative error enters the solution whatever the
    # tolerance: upstream holds Rodas4 with AutoFiniteDiff to rtol 1e-5 against KenCarp4
    # (SciMLSensitivity 7.112.3 test/Core1/forward.jl L64 and L80), hence the floor 1e-5.
    Family(ROSENBROCK, "Rodas5P", "stiff", factor=100.0, dz0_factor=1e5, floor=1e-5),
    # KenCarp4: order 4 one-step; Newton solves each stage to a fraction of tol (κ = 1/100,
    # OrdinaryDiffEqNonlinearSolve src/type.jl NLNewton), so J's accuracy changes convergence, not
    # the result: 100 tol as the catalogue's RadauIIA5 and BS3.
    Family(SDIRK, "KenCarp4", "stiff", factor=100.0, dz0_factor=1e5),
    # FBDF: variable order 1-5 starting at order 1, as scipy's BDF in the catalogue: 1000 tol.
    Family(BDF, "FBDF", "stiff", factor=1000.0, dz0_factor=1e5),
    # RadauIIA5: the catalogue's own stiff method: 100 tol, dz0 2e3 tol (its measured 2e-6 x 10).
    Family(FIRK, "RadauIIA5", "stiff", factor=100.0, dz0_factor=2e3),
    # Rosenbrock23 in the stiff phase: order 2 (a Rosenbrock-W method, OrdinaryDiffEqRosenbrock
    # src/algorithms.jl L7: finite-difference Jacobians keep its order), the lowest here, so more
    # steps accumulate error: 1000 tol as the low-order BDF.
    Family(AUTO_SWITCHING, "AutoTsit5(Rosenbrock23())", "stiff", factor=1000.0, dz0_factor=1e5),
)
NON_MLP = Family(EXPLICIT, "Vern9", "non_mlp", factor=100.0, dz0_factor=100.0)  # explicit, as above


# --------------------------------------------------------------------------- a model that is not the MLP
def non_mlp_problem(batch: int = BATCH, seed: int = 0) -> Problem:
    """Lotka-Volterra populations (`harness.models.LotkaVolterra`, written to the model protocol only:
    no MLP internals) from z0 ~ U[0.5, 1.5]², observed at four times up to t = 5: the selftest's
    model other than the MLP on the "python_vjp" route. θ = (α, β, γ, δ) around (1.5, 1, 3, 1)."""
    model = LotkaVolterra(init_theta=(1.5, 1.0, 3.0, 1.0))
    rng = np.random.default_rng(seed)
    z0 = rng.uniform(0.5, 1.5, size=(batch, 2))
    times = np.array([1.25, 2.5, 3.75, 5.0])
    theta_true = model.init(rng)
    # the data: the populations under θ_true (scipy's DOP853, which calls nothing but f)
    truth = solve_ivp(lambda t, y: model.f(t, y.reshape(batch, 2), theta_true).reshape(-1), (0.0, times[-1]),
                      z0.reshape(-1), method="DOP853", t_eval=times, rtol=1e-10, atol=1e-10)
    data = truth.y.T.reshape(len(times), batch, 2)
    return Problem(model, model.init(np.random.default_rng(seed + 1)), z0, 0.0, times, data, "lotka_volterra",
                   theta_true=theta_true)


PROBLEMS = {"multi_time": multi_time_problem, "stiff": stiff_problem, "non_mlp": non_mlp_problem}


# --------------------------------------------------------------------------- the rows
def family_engines(family: Family) -> list:
    """The rows of one family. The finite-difference route (FiniteDiff Jacobians of the Python f,
    ~2n + 2P Python calls per adjoint right-hand side) runs every adjoint and its forward sensitivity
    on the explicit family only; on the stiff families, where the implicit solver differentiates the
    whole adjoint right-hand side again, it runs GaussAdjoint (adjoint state of n, as in
    `julia_engines`), and no forward sensitivity: its augmented system (n (1 + P + n) = 544 states at
    B = 8) would get a dense finite-difference W of 545 augmented right-hand sides, each ~70 Python
    calls, at every step (about 1e7 calls, tens of minutes)."""
    solver = family.solver
    if family.problem == "non_mlp":
        # any model through the Python routes; the native route's one-line refusal is a row too
        return ([JuliaAdjoint(s, route="python_vjp", solver=solver) for s in ADJOINT_SENSEALGS]
                + [JuliaAdjoint("GaussAdjoint", route="finite_difference", solver=solver),
                   JuliaForwardSensitivity(route="python_jacobian", solver=solver),
                   JuliaAdjoint("GaussAdjoint", route="native", solver=solver)])
    stiff = check_julia_solver(solver).stiff
    engines = [JuliaAdjoint(s, route=r, solver=solver) for r in ("python_vjp", "native") for s in ADJOINT_SENSEALGS]
    engines += [JuliaAdjoint(s, route="native") for s in DISCRETE_SENSEALGS]  # solver from the options
    fd = ("GaussAdjoint",) if stiff else ADJOINT_SENSEALGS
    engines += [JuliaAdjoint(s, route="finite_difference", solver=solver) for s in fd]
    routes = [r for r in FORWARD_ROUTES if not (stiff and r == "finite_difference")]
    engines += [JuliaForwardSensitivity(route=r, solver=solver) for r in routes]
    return engines


def quick_engines(family: Family) -> list:
    """`--quick`: one row, GaussAdjoint on the exact-VJP route."""
    return [JuliaAdjoint("GaussAdjoint", route="python_vjp", solver=family.solver)]


def plan(quick: bool = False) -> list[tuple[Family, list]]:
    """[(family, its engines)] in run order: the six families, then the non-MLP model."""
    pick = quick_engines if quick else family_engines
    return [(family, pick(family)) for family in (*FAMILIES, NON_MLP)]


# Estimated costs in seconds, read off the code paths, NOT measured (no Julia ran where this was
# written; `harness julia selftest` prints the real times per row): Julia's start and package loading
# (juliacall plus SciMLSensitivity and the solver sublibraries: 10-30 s in julia_env/README.md),
# compilation of each solver family's first solves and adjoints, and per row the Python callbacks
# (~50 µs each through juliacall) or native work.
START_SECONDS = 30.0
COMPILE_SECONDS_PER_FAMILY = 20.0
ROW_SECONDS = {  # (route, implicit solver?) -> seconds; native rows also compile Zygote/ForwardDiff code
    ("python_vjp", False): 2.0, ("python_vjp", True): 5.0,
    ("finite_difference", False): 5.0, ("finite_difference", True): 40.0,
    ("python_jacobian", False): 3.0, ("python_jacobian", True): 60.0,
    ("native", False): 15.0, ("native", True): 20.0,
}
REFERENCE_SECONDS = {"multi_time": 2.0, "stiff": 8.0, "non_mlp": 1.0}  # the Python references, measured


def expected_seconds(rows: list[tuple[Family, list]]) -> float:
    """An estimate of a run of `rows` (`plan`), from the constants above."""
    total = START_SECONDS + sum(REFERENCE_SECONDS[p] for p in {family.problem for family, _ in rows})
    for family, engines in rows:
        stiff = check_julia_solver(family.solver).stiff
        total += COMPILE_SECONDS_PER_FAMILY + sum(ROW_SECONDS[(engine.route, stiff)] for engine in engines)
    return total


# --------------------------------------------------------------------------- scoring
@dataclass
class SelftestRow:
    name: str
    status: str  # "ok", "beyond bound", "refused", "failed", "unavailable"
    dtheta_error: float | None = None
    dz0_error: float | None = None
    dtheta_bound: float | None = None
    dz0_bound: float | None = None
    seconds: float | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "refused")


@dataclass
class SelftestCase:
    family: str
    solver: str
    description: str
    reference_seconds: float
    rows: list[SelftestRow] = field(default_factory=list)


def entry_error(g: np.ndarray, reference: np.ndarray) -> float:
    """max_i |g_i - r_i| / max_i |r_i|: the catalogue's per-entry measure (tests/test_gradients.py)."""
    return worst_entry(g, reference)[0]


def score(name: str, result, reference, bounds: tuple[float, float], seconds: float) -> SelftestRow:
    """One row from a Julia result and the Python reference (both GradientResults)."""
    e_theta, e_z0 = entry_error(result.dtheta, reference.dtheta), entry_error(result.dz0, reference.dz0)
    ok = e_theta <= bounds[0] and e_z0 <= bounds[1]
    return SelftestRow(name, "ok" if ok else "beyond bound", e_theta, e_z0, bounds[0], bounds[1], seconds)


def require_julia() -> None:
    """Raise BackendUnavailableError (one line) unless the Julia backend can run here."""
    status = julia_status()
    if not status.available:
        raise BackendUnavailableError(f"the Julia backend is unavailable: {status.reason}")


def run_selftest(*, tol: float = DEFAULT_TOL, quick: bool = False, progress=None) -> list[SelftestCase]:
    """Run `plan(quick)`; raises BackendUnavailableError (one line) when Julia cannot run or fails to
    start, instead of failing every row with the same reason."""
    require_julia()
    cases, references = [], {}
    for family, engines in plan(quick):
        start = time.perf_counter()
        if family.problem not in references:  # the five stiff families share one problem and reference
            problem = PROBLEMS[family.problem](batch=BATCH)
            reference_solver = "RadauIIA5" if check_julia_solver(family.solver).stiff else "DP8"
            references[family.problem] = problem, gradient(problem, engine=ForwardSensitivity(),
                                                           solver=reference_solver, rtol=REFERENCE_TOL,
                                                           atol=REFERENCE_TOL)
        problem, reference = references[family.problem]
        case = SelftestCase(family.name, family.solver, f"{family.name} ({family.solver}) on {problem.describe()}",
                            time.perf_counter() - start)
        for engine in engines:
            case.rows.append(_row(engine, problem, family, tol, reference))
            if runtime.start_failure() is not None:  # reported once, by the row that tried
                raise BackendUnavailableError(f"Julia failed to start: {runtime.start_failure()}")
        cases.append(case)
        if progress is not None:
            progress(case)
    return cases


def _row(engine, problem, family: Family, tol: float, reference) -> SelftestRow:
    name = f"{engine.name} [{family.solver}]"
    available, reason = declaration_of(engine).availability()
    if not available:
        return SelftestRow(name, "unavailable", reason=reason or "")
    start = time.perf_counter()
    try:
        result = gradient(problem, engine=engine, solver=family.solver, rtol=tol, atol=tol)
    except (UnstableBacksolveError, RefusedError) as error:
        return SelftestRow(name, "refused", reason=str(error))
    except (SolverError, BackendError, BackendUnavailableError) as error:
        return SelftestRow(name, "failed", reason=str(error))
    return score(name, result, reference, family.bounds(tol), time.perf_counter() - start)


# --------------------------------------------------------------------------- output
def format_case(case: SelftestCase) -> str:
    lines = [f"{case.description}  [reference {case.reference_seconds:.1f} s]",
             f"  {'engine':58s} {'dθ error':>9s} {'bound':>7s} {'dz0 error':>9s} {'bound':>7s} {'time':>8s}  status"]
    for row in case.rows:
        def number(x, spec):
            return "" if x is None else format(x, spec)

        status = row.status if not row.reason else f"{row.status}: {row.reason}"
        lines.append(f"  {row.name:58s} {number(row.dtheta_error, '.1e'):>9s} {number(row.dtheta_bound, '.0e'):>7s} "
                     f"{number(row.dz0_error, '.1e'):>9s} {number(row.dz0_bound, '.0e'):>7s} "
                     f"{number(row.seconds, '.1f'):>7s}s  {status}")
    return "\n".join(lines)


def cases_to_json(cases: list[SelftestCase], tol: float) -> dict:
    rows = [{"family": c.family, "solver": c.solver, "name": r.name, "status": r.status, "ok": r.ok,
             "dtheta_error": r.dtheta_error, "dtheta_bound": r.dtheta_bound, "dz0_error": r.dz0_error,
             "dz0_bound": r.dz0_bound, "seconds": r.seconds, "reason": r.reason}
            for c in cases for r in c.rows]
    return {"tolerance": tol, "reference": f"ForwardSensitivity at rtol = atol = {REFERENCE_TOL:g}",
            "ok": all(r["ok"] for r in rows), "rows": rows}
